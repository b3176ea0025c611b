//! `mqkit dlq serve`: the web console over the dead-letter archive. It owns
//! the HTTP server (axum), its routes and the replay it starts; the pages
//! are server-rendered HTML with maud (every value escaped), an inline SVG
//! chart, and one small inline script (the "select all" box). No external
//! asset, no build step.
//!
//! Entry point: [`serve`]. Routes:
//!
//! - `GET /`: the chart of dead letters per day by queue and kind, the
//!   counts per queue and kind, the filter form and a page of the matching
//!   letters, newest first (`before` = the id cursor for older ones);
//! - `GET /letter/{id}`: one letter, every column, headers, body;
//! - `POST /replay`: the confirmation page (how many letters, to which
//!   queues), and with `confirm` the replay itself, through
//!   [`replay_rows`](super::archive::replay_rows) as `mqkit dlq replay
//!   --from-archive` runs it, over a fresh AMQP connection to `--url`.
//!
//! Every request needs the user and password of `--url` (HTTP basic auth,
//! [`guard`]) unless `--no-auth`, which is refused unless the address is a
//! loopback one; a POST with a foreign `Origin` is refused. Errors are pages
//! with the message (passwords masked), never a bare 500.

mod body;
mod chart;
mod guard;
mod handlers;
mod pages;
mod params;

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use super::archive::{Scrubber, open_archive};
use super::{CliError, ServeArgs, shown};
use crate::addons::dlq::store::ArchiveDb;
use crate::app::running::wait_for_signal;
use guard::Credentials;

/// What every handler shares.
struct Console {
    db: ArchiveDb,
    scrubber: Scrubber,
    /// The archive URL, password masked.
    archive: String,
    /// `--url` (for the replay's connection).
    amqp_url: String,
    /// `None` with `--no-auth`.
    credentials: Option<Credentials>,
    /// One replay at a time: a second Confirm waits, then skips the rows
    /// the first one marked.
    replaying: tokio::sync::Mutex<()>,
}

/// Runs the console until SIGINT or SIGTERM.
pub(super) async fn serve(amqp_url: &str, args: &ServeArgs) -> Result<ExitCode, CliError> {
    if args.no_auth && !args.addr.ip().is_loopback() {
        return Err(CliError::Usage(format!(
            "--no-auth is allowed only with --addr on 127.0.0.1 (a loopback address), not {}: anyone who can reach it could replay dead letters. Drop --no-auth to require the user and password of --url",
            args.addr
        )));
    }
    let credentials = if args.no_auth {
        None
    } else {
        Some(Credentials::from_amqp_url(amqp_url)?)
    };
    let (db, scrubber) = open_archive(&args.archive).await?;
    let listener = match TcpListener::bind(args.addr).await {
        Ok(listener) => listener,
        Err(source) => {
            db.close().await;
            return Err(CliError::Listen {
                addr: args.addr,
                source,
            });
        }
    };
    let local = listener.local_addr().unwrap_or(args.addr);
    let console = Arc::new(Console {
        db: db.clone(),
        scrubber,
        archive: shown(&args.archive),
        amqp_url: amqp_url.to_owned(),
        credentials,
        replaying: tokio::sync::Mutex::new(()),
    });
    let login = if args.no_auth {
        "; no login (--no-auth)"
    } else {
        ""
    };
    println!(
        "serving the dead-letter console on http://{local} (archive {}{login})",
        console.archive
    );
    let result = axum::serve(listener, router(console))
        .with_graceful_shutdown(wait_for_signal())
        .await;
    db.close().await;
    match result {
        Ok(()) => {
            eprintln!("the dead-letter console on http://{local} stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(source) => Err(CliError::Listen {
            addr: local,
            source,
        }),
    }
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(handlers::index))
        .route("/letter/{id}", get(handlers::letter))
        .route("/replay", post(handlers::replay).get(handlers::to_index))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            guard::guard,
        ))
        .with_state(console)
}
