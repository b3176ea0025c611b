//! The dead-letter console (`mqkit dlq serve`) in headless Chromium through
//! chromedriver, on MariaDB: the counts per queue and kind match the
//! archive, the chart and its legend, select all and paging, a filter by
//! queue and kind, one letter with its body, a `<script>` body shown as text
//! (and nothing run), replay of selected letters with its confirmation and
//! summary, the messages reaching their consumers once and the rows marked.
//! Its last page is the README's screenshot (`target/dlq-console.png`).

use std::collections::BTreeMap;

use fantoccini::Locator;

use super::console::{
    REPLAYED, SCRIPT, SCRIPT_BODY, consumers, counts, marked, seed, seen_with, until,
};
use super::web::{Browser, Served, http, screenshot_path};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_on_mariadb() {
    let backend = Backend::MySql;
    let url = backend.url();
    let db = db_of(backend).await;
    let (qa, qb, _cleanup, running) = consumers().await;
    let _db_cleanup = DbCleanup(vec![qa.clone(), qb.clone()]);
    // Creates or upgrades the table (a fresh database has none).
    let out = mqkit(&["dlq", "stats", "--archive", &url, "--queue", &qa]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let marker = common::unique("console-marker");
    let ids = seed(&db, &qa, &qb, 60, 40, &marker).await;

    let served = Served::start(&url);
    assert!(
        served
            .banner
            .starts_with("serving the dead-letter console on http://127.0.0.1:")
            && served
                .banner
                .ends_with("(archive mysql://root@127.0.0.1:3306/test)"),
        "{}",
        served.banner
    );
    let anonymous = http(served.port, "GET", "/", None, "", None).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(
        anonymous
            .head
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"mqkit\""),
        "{}",
        anonymous.head
    );
    let wrong = http(served.port, "GET", "/", Some("guest:nope"), "", None).await;
    assert_eq!(wrong.status, 401);

    let browser = Browser::start(1100, 1250).await;
    let c = browser.client();
    let base = served.base();

    // The whole archive: our queues' counts are the database's.
    c.goto(&format!("{base}/")).await.unwrap();
    c.wait().for_element(Locator::Css("#counts")).await.unwrap();
    for queue in [&qa, &qb] {
        let mut shown = BTreeMap::new();
        for row in c
            .find_all(Locator::Css(&format!("#counts tr[data-queue=\"{queue}\"]")))
            .await
            .unwrap()
        {
            let kind = row.attr("data-kind").await.unwrap().unwrap();
            let n: i64 = row
                .find(Locator::Css(".count"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .parse()
                .unwrap();
            let r: i64 = row
                .find(Locator::Css(".replayed"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .parse()
                .unwrap();
            shown.insert(kind, (n, r));
        }
        assert_eq!(shown, counts(&db, queue).await, "{queue}");
    }

    // Our letters (the marker in their error): a chart of both queues by
    // kind, 50 newest on the page, 10 older on the next.
    let ours = format!("{base}/?text={marker}");
    c.goto(&ours).await.unwrap();
    c.wait().for_element(Locator::Css("#list")).await.unwrap();
    let legend = c
        .find(Locator::Css("ul.legend"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let qa_rejected = (0..40).filter(|i| i % 3 == 0).count();
    assert!(
        legend.contains(&format!("{qa} · rejected ({qa_rejected})")),
        "{legend}"
    );
    assert!(
        !c.find_all(Locator::Css("svg.chart rect"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.find(Locator::Css("#total"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "60"
    );
    let rows = c.find_all(Locator::Css("#list tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 50);
    c.find(Locator::Css("#all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let checked = c
        .find_all(Locator::Css("input[name=id]:checked"))
        .await
        .unwrap();
    assert_eq!(
        checked.len(),
        50,
        "the select-all box (inline script) ticks every row"
    );
    c.find(Locator::Css("#all"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        c.find_all(Locator::Css("input[name=id]:checked"))
            .await
            .unwrap()
            .is_empty()
    );
    c.find(Locator::Css("#older"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the older page", async || {
        c.current_url()
            .await
            .is_ok_and(|u| u.as_str().contains("before="))
    })
    .await;
    let older = c.find_all(Locator::Css("#list tbody tr")).await.unwrap();
    assert_eq!(older.len(), 10);
    assert!(c.find_all(Locator::Css("#older")).await.unwrap().is_empty());

    // Filter by queue and kind through the form.
    c.goto(&ours).await.unwrap();
    c.wait()
        .for_element(Locator::Css("form.filter"))
        .await
        .unwrap();
    c.find(Locator::Css("input[name=queue]"))
        .await
        .unwrap()
        .send_keys(&qa)
        .await
        .unwrap();
    c.find(Locator::Css("input[name=kind]"))
        .await
        .unwrap()
        .send_keys("decode")
        .await
        .unwrap();
    c.find(Locator::Css("form.filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the filtered list", async || {
        c.current_url()
            .await
            .is_ok_and(|u| u.as_str().contains("kind=decode"))
    })
    .await;
    let decode: Vec<usize> = (0..40).filter(|i| i % 3 == 1).collect();
    let rows = c.find_all(Locator::Css("#list tbody tr")).await.unwrap();
    assert_eq!(rows.len(), decode.len());
    for row in &rows {
        let cells = row.find_all(Locator::Css("td")).await.unwrap();
        assert_eq!(cells[3].text().await.unwrap(), qa.as_str());
        assert_eq!(cells[4].text().await.unwrap(), "decode");
    }

    // One letter, from the list: its columns and body.
    let message_id = rows[0].find_all(Locator::Css("td")).await.unwrap()[6]
        .text()
        .await
        .unwrap();
    let i: usize = message_id.trim_start_matches("m-").parse().unwrap();
    rows[0]
        .find(Locator::Css("a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#fields")).await.unwrap();
    let body = c
        .find(Locator::Css("#body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(&format!("\"id\": \"{qa}/K-{i}\"")), "{body}");
    let fields = c
        .find(Locator::Css("#fields"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        fields.contains(&format!("{marker} problem {i}")) && fields.contains("decode"),
        "{fields}"
    );

    // A body with a script is text, and nothing runs.
    c.goto(&format!("{base}/letter/{}", ids[SCRIPT]))
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#body")).await.unwrap();
    let body = c
        .find(Locator::Css("#body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains(SCRIPT_BODY), "{body}");
    assert!(c.get_alert_text().await.is_err(), "an alert fired");
    assert_eq!(
        c.find_all(Locator::Css("script")).await.unwrap().len(),
        1,
        "only the console's own script is a script element"
    );
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_path("dlq-console-letter.png"), png).unwrap();

    // Replay three letters of qa and two of qb, plus one replayed before
    // (left out without "again"); confirm; the summary.
    c.goto(&ours).await.unwrap();
    c.wait().for_element(Locator::Css("#list")).await.unwrap();
    let picked = [11, 12, 13, 41, 42];
    for i in picked.iter().chain([&REPLAYED]) {
        c.find(Locator::Css(&format!(
            "#list tr[data-id=\"{}\"] input[name=id]",
            ids[*i]
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    }
    c.find(Locator::Css("#replay-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    if c.wait()
        .for_element(Locator::Css("#targets"))
        .await
        .is_err()
    {
        panic!(
            "no confirmation page: {:?} {}",
            c.current_url().await,
            c.source().await.unwrap_or_default()
        );
    }
    let target = async |q: &str, table: &str| {
        c.find(Locator::Css(&format!(
            "{table} tr[data-queue=\"{q}\"] td.n"
        )))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
    };
    assert_eq!(target(&qa, "#targets").await, "3");
    assert_eq!(target(&qb, "#targets").await, "2");
    let skipped = c
        .find(Locator::Css("#skipped"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        skipped.starts_with("1 selected letter was replayed before"),
        "{skipped}"
    );
    assert_eq!(
        marked(&db, &qa, &qb).await.len(),
        1,
        "nothing replayed before Confirm"
    );
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_path("dlq-console-confirm.png"), png).unwrap();
    c.find(Locator::Css("#confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#unroutable"))
        .await
        .unwrap();
    assert_eq!(target(&qa, "#replayed").await, "3");
    assert_eq!(target(&qb, "#replayed").await, "2");
    let unroutable = c
        .find(Locator::Css("#unroutable"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(unroutable.starts_with("0 unroutable"), "{unroutable}");
    assert!(
        c.find_all(Locator::Css("#failure, #errors"))
            .await
            .unwrap()
            .is_empty()
    );
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_path("dlq-console-result.png"), png).unwrap();

    // The messages reach their consumers, once each; the rows are marked.
    let want: Vec<String> = picked
        .iter()
        .map(|i| format!("{}/K-{i}", if *i < 40 { &qa } else { &qb }))
        .collect();
    let got = async || {
        let mut got = seen_with(&qa);
        got.extend(seen_with(&qb));
        got.sort();
        got
    };
    let mut sorted = want.clone();
    sorted.sort();
    until("the replayed messages reach the consumers", async || {
        got().await == sorted
    })
    .await;
    let mut expect: BTreeMap<i64, i64> = picked.iter().map(|i| (ids[*i], 1)).collect();
    expect.insert(ids[REPLAYED], 1);
    assert_eq!(marked(&db, &qa, &qb).await, expect);

    // Back to the list for the picture: the chart, the counts, the list.
    c.find(Locator::Css("#back"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#list")).await.unwrap();
    let png = c.screenshot().await.unwrap();
    let path = screenshot_path("dlq-console.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!(
        "console screenshot: {} ({} bytes)",
        path.display(),
        png.len()
    );
    browser.close().await;

    assert_eq!(served.stop(), Some(0), "SIGTERM stops the console cleanly");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got().await, sorted, "each message once");
    running.shutdown().await.unwrap();
}
