//! The console's request handlers: read the parameters ([`params`]), ask
//! the archive, render a page ([`pages`]). Every failure is a page that
//! says what went wrong (400 a bad parameter, 404 no such letter, 503 the
//! database, 502 the broker), passwords masked.
//!
//! [`params`]: super::params
//! [`pages`]: super::pages

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use super::pages::{self, Confirm, Index};
use super::params::{ListQuery, ReplayForm, Scope};
use crate::addons::cli::archive::{ReplayRequest, replay_rows};
use crate::addons::cli::{CliError, connect};
use crate::addons::dlq::store::{Filter, StatsRow};
use crate::amqp::publisher::BrokerPublisher;
use crate::core::publish::Publisher;

/// Letters per page of the list.
const PAGE_SIZE: usize = 50;

/// Why a request failed, as the page that says so.
pub(super) enum Failure {
    BadRequest(String),
    NotFound(String),
    Database(String),
    Broker(String),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Failure::Database(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The archive cannot be read",
                m,
            ),
            Failure::Broker(m) => (StatusCode::BAD_GATEWAY, "RabbitMQ is not reachable", m),
        };
        pages::error(status, title, &message)
    }
}

impl Console {
    fn database(&self, e: &sqlx::Error) -> Failure {
        Failure::Database(
            CliError::Archive {
                url: self.archive.clone(),
                problem: self.scrubber.scrub(e),
            }
            .to_string(),
        )
    }

    async fn stats(&self, filter: &Filter) -> Result<Vec<StatsRow>, Failure> {
        self.db.stats(filter).await.map_err(|e| self.database(&e))
    }
}

/// `GET /`: chart, counts, filter form and a page of the list.
pub(super) async fn index(
    State(console): State<Arc<Console>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Failure> {
    let query =
        ListQuery::parse(query.as_deref().unwrap_or_default()).map_err(Failure::BadRequest)?;
    let filter = query.filter.filter().map_err(Failure::BadRequest)?;
    let stats = console.stats(&filter).await?;
    let mut rows = console
        .db
        .newest(
            &filter,
            query.before.unwrap_or(i64::MAX),
            PAGE_SIZE as i64 + 1,
        )
        .await
        .map_err(|e| console.database(&e))?;
    let older = if rows.len() > PAGE_SIZE {
        rows.truncate(PAGE_SIZE);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let pinned = query.filter.resolved(&filter);
    let content = pages::index(&Index {
        archive: &console.archive,
        query: &query,
        pinned: &pinned,
        stats: &stats,
        rows: &rows,
        older,
    });
    Ok(pages::page(StatusCode::OK, "Dead letters", content))
}

/// `GET /letter/{id}`.
pub(super) async fn letter(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    let missing = || {
        Failure::NotFound(format!(
            "There is no dead letter {id} in the archive (deleted by retention, or a wrong link?)."
        ))
    };
    let Ok(number) = id.parse::<i64>() else {
        return Err(missing());
    };
    let row = console
        .db
        .fetch(number)
        .await
        .map_err(|e| console.database(&e))?
        .ok_or_else(missing)?;
    Ok(pages::page(
        StatusCode::OK,
        &format!("Dead letter {number}"),
        pages::letter(&row),
    ))
}

/// `POST /replay`: the confirmation page, or with `confirm` the replay.
pub(super) async fn replay(
    State(console): State<Arc<Console>>,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = ReplayForm::parse(&body).map_err(Failure::BadRequest)?;
    let filter = form.filter().map_err(Failure::BadRequest)?;
    if !form.confirm {
        return confirmation(&console, &form, &filter).await;
    }
    let _one_at_a_time = console.replaying.lock().await;
    let connection = connect(&console.amqp_url)
        .await
        .map_err(|e| Failure::Broker(e.to_string()))?;
    let broker = BrokerPublisher::new();
    broker.attach(connection.clone()).await;
    let publisher = Publisher::new(broker.clone());
    let request = ReplayRequest {
        filter,
        limit: form.count,
        dry_run: false,
        rate: None,
    };
    let scrub = |e: &sqlx::Error| console.scrubber.scrub(e);
    let mut errors = Vec::new();
    let outcome = replay_rows(&console.db, &publisher, &request, &scrub, |row, result| {
        if let Err(why) = result {
            errors.push(format!(
                "letter {} (message {}): {why}",
                row.id, row.message_id
            ));
        }
    })
    .await;
    broker.detach().await;
    if connection.status().connected() {
        let _ = connection.close(200, "OK".into()).await;
    }
    let (report, failure) = match outcome {
        Ok(report) => (report, None),
        Err((report, failure)) => (report, Some(failure.to_string())),
    };
    let title = format!("Replayed {}", report.moved_total);
    let content = pages::result(&report, &errors, failure.as_deref(), &form.filter);
    let status = if failure.is_some() {
        StatusCode::BAD_GATEWAY
    } else {
        StatusCode::OK
    };
    Ok(pages::page(status, &title, content))
}

async fn confirmation(
    console: &Console,
    form: &ReplayForm,
    filter: &Filter,
) -> Result<Response, Failure> {
    let per_queue = by_queue(&console.stats(filter).await?);
    let skipped = if filter.include_replayed {
        0
    } else {
        let all = Filter {
            include_replayed: true,
            ..filter.clone()
        };
        let everything: i64 = by_queue(&console.stats(&all).await?).values().sum();
        everything - per_queue.values().sum::<i64>()
    };
    // `since=2h` typed by hand means the same instant on Confirm.
    let pinned = match form.scope {
        Scope::Matching => form
            .filter
            .resolved(&form.filter.filter().map_err(Failure::BadRequest)?),
        Scope::Selected => form.filter.clone(),
    };
    let content = pages::confirm(&Confirm {
        form,
        pinned: &pinned,
        per_queue: &per_queue,
        skipped,
    });
    Ok(pages::page(StatusCode::OK, "Replay?", content))
}

fn by_queue(stats: &[StatsRow]) -> BTreeMap<String, i64> {
    let mut per_queue = BTreeMap::new();
    for r in stats {
        *per_queue.entry(r.queue.clone()).or_default() += r.count;
    }
    per_queue
}

/// `GET /replay` (a reload of a result page): back to the list.
pub(super) async fn to_index() -> Redirect {
    Redirect::to("/")
}

/// Any other path.
pub(super) async fn not_found() -> Response {
    Failure::NotFound("There is no such page here; the console has / and /letter/{id}.".to_owned())
        .into_response()
}
