//! The chart of the console's first page: dead letters per day (UTC),
//! one bar per day stacked by queue and kind, as inline SVG with a legend
//! ([`chart`]). Built from [`ArchiveDb::stats`](crate::addons::dlq::store::ArchiveDb::stats)
//! rows, so it counts what the table beside it counts.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use maud::{Markup, html};

use crate::addons::dlq::store::StatsRow;

/// At most this many days, the latest.
const MAX_DAYS: i64 = 92;
/// Series beyond these many (the largest) are drawn as one, "other".
const MAX_SERIES: usize = 8;
const COLORS: [&str; MAX_SERIES + 1] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f",
];

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 200.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 28.0;

/// One stacked series of the chart: a queue and kind, or the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Series {
    /// `queue · kind`, or `other`.
    pub(super) label: String,
    pub(super) color: &'static str,
    pub(super) total: i64,
}

/// The series (largest first) and each day's counts per series, from the
/// first to the last day the rows name (days without letters included; at
/// most the last [`MAX_DAYS`]).
pub(super) fn layout(rows: &[StatsRow]) -> (Vec<Series>, Vec<(String, Vec<i64>)>) {
    let mut totals: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for r in rows {
        *totals.entry((&r.queue, &r.kind)).or_default() += r.count;
    }
    let mut ranked: Vec<_> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let overflow = ranked.len() > MAX_SERIES + 1;
    let named = if overflow { MAX_SERIES } else { ranked.len() };
    let mut series: Vec<Series> = ranked[..named]
        .iter()
        .enumerate()
        .map(|(i, ((q, k), n))| Series {
            label: format!("{q} · {k}"),
            color: COLORS[i],
            total: *n,
        })
        .collect();
    if overflow {
        series.push(Series {
            label: "other".to_owned(),
            color: COLORS[MAX_SERIES],
            total: ranked[named..].iter().map(|(_, n)| n).sum(),
        });
    }
    let index_of = |q: &str, k: &str| {
        ranked[..named]
            .iter()
            .position(|((rq, rk), _)| *rq == q && *rk == k)
            .unwrap_or(named)
    };
    let days: Vec<i64> = rows.iter().filter_map(|r| day_number(&r.day)).collect();
    let (Some(first), Some(last)) = (days.iter().min(), days.iter().max()) else {
        return (series, Vec::new());
    };
    let first = (*first).max(last - MAX_DAYS + 1);
    let mut grid: Vec<(String, Vec<i64>)> = (first..=*last)
        .map(|d| (day_text(d), vec![0; series.len()]))
        .collect();
    for r in rows {
        let Some(d) = day_number(&r.day).filter(|d| *d >= first) else {
            continue;
        };
        if let Some((_, counts)) = usize::try_from(d - first)
            .ok()
            .and_then(|i| grid.get_mut(i))
        {
            counts[index_of(&r.queue, &r.kind)] += r.count;
        }
    }
    (series, grid)
}

/// The chart and its legend.
pub(super) fn chart(rows: &[StatsRow]) -> Markup {
    let (series, days) = layout(rows);
    if days.is_empty() {
        return html! { p.muted { "No dead letters match, so there is nothing to chart." } };
    }
    let max = days
        .iter()
        .map(|(_, c)| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / days.len() as f64;
    let bar = (slot * 0.8).max(1.0);
    let y = |n: i64| TOP + plot_h - plot_h * n as f64 / top as f64;
    let label_every = days.len().div_ceil(12);
    // Each day's segments, bottom up: (series, count, y of its top, height).
    let stacks: Vec<Vec<(&Series, i64, f64, f64)>> = days
        .iter()
        .map(|(_, counts)| {
            let mut below = 0;
            series
                .iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(s, n)| {
                    let segment = (s, *n, y(below + n), y(below) - y(below + n));
                    below += n;
                    segment
                })
                .collect()
        })
        .collect();
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-label="Dead letters per day, stacked by queue and kind" {
            @for tick in [0, top / 2, top] {
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y(tick))) y2=(fmt(y(tick))) stroke="#ddd" {}
                text x=(LEFT - 6.0) y=(fmt(y(tick) + 4.0)) text-anchor="end" font-size="11" fill="#555" { (tick) }
            }
            @for (i, ((day, counts), stack)) in days.iter().zip(&stacks).enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
                @let total: i64 = counts.iter().sum();
                g {
                    title { (day) ": " (total) " dead letter" @if total != 1 { "s" } }
                    @for (s, n, top_y, height) in stack {
                        rect x=(fmt(x)) y=(fmt(*top_y)) width=(fmt(bar)) height=(fmt(*height)) fill=(s.color) {
                            title { (day) " · " (s.label) ": " (n) }
                        }
                    }
                    @if total > 0 && slot >= 18.0 {
                        text x=(fmt(x + bar / 2.0)) y=(fmt(y(total) - 3.0)) text-anchor="middle"
                            font-size="10" fill="#333" { (total) }
                    }
                }
                @if i % label_every == 0 || i + 1 == days.len() {
                    text x=(fmt(x + bar / 2.0)) y=(HEIGHT - 10.0) text-anchor="middle" font-size="11" fill="#555" {
                        (day.get(5..).unwrap_or(day))
                    }
                }
            }
        }
        ul.legend {
            @for s in &series {
                li {
                    svg width="12" height="12" { rect width="12" height="12" fill=(s.color) {} }
                    " " (s.label) " (" (s.total) ")"
                }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `n` (at least 1).
fn nice_ceiling(n: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= n || v == i64::MAX {
                return v;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
fn day_number(day: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(&format!("{day} 00:00:00")).ok()?;
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs / 86_400).ok()
}

fn day_text(day: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(day).unwrap_or(0) * 86_400);
    humantime::format_rfc3339(at)
        .to_string()
        .get(..10)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: &str, queue: &str, kind: &str, count: i64) -> StatsRow {
        StatsRow {
            queue: queue.into(),
            kind: kind.into(),
            day: day.into(),
            count,
            replayed: 0,
        }
    }

    #[test]
    fn days_run_without_gaps_and_series_are_ranked() {
        let rows = [
            row("2026-11-28", "order", "decode", 2),
            row("2026-11-30", "order", "decode", 1),
            row("2026-11-30", "pay", "rejected", 5),
        ];
        let (series, days) = layout(&rows);
        assert_eq!(
            series
                .iter()
                .map(|s| (s.label.as_str(), s.total))
                .collect::<Vec<_>>(),
            [("pay · rejected", 5), ("order · decode", 3)]
        );
        assert_eq!(
            days,
            [
                ("2026-11-28".to_owned(), vec![0, 2]),
                ("2026-11-29".to_owned(), vec![0, 0]),
                ("2026-11-30".to_owned(), vec![5, 1]),
            ]
        );
        let svg = chart(&rows).into_string();
        assert!(svg.contains("2026-11-30 · pay · rejected: 5"), "{svg}");
        assert!(svg.contains("order · decode (3)"), "{svg}");
    }

    #[test]
    fn many_series_fold_into_other_and_labels_are_escaped() {
        let rows: Vec<StatsRow> = (0..12)
            .map(|i| row("2026-12-01", &format!("q<{i}>"), "decode", 20 - i))
            .collect();
        let (series, _) = layout(&rows);
        assert_eq!(series.len(), MAX_SERIES + 1);
        assert_eq!(series[MAX_SERIES].label, "other");
        assert_eq!(
            series[MAX_SERIES].total,
            (8..12).map(|i| 20 - i).sum::<i64>()
        );
        let svg = chart(&rows).into_string();
        assert!(svg.contains("q&lt;0&gt;") && !svg.contains("q<0>"), "{svg}");
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(120), 200);
    }
}
