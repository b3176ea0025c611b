//! The `mqkit` operator command (feature `cli`): `mqkit dlq list | show |
//! replay | purge | stats | serve`. `list` reads queue depths from the
//! RabbitMQ management HTTP API; `show`, `replay` and `purge` speak AMQP;
//! `replay --from-archive` and `stats` read the dead-letter archive
//! (`archive`); `serve` is the web console over the archive (`console`).
//!
//! Entry points: [`main`] (what `src/bin/mqkit.rs` calls), [`main_with_args`]
//! and [`run`] (parsed arguments in, exit code or [`CliError`] out).
//!
//! Exit codes: 0 done; 1 an error (one line on stderr, passwords masked);
//! 2 bad usage; 3 `replay` finished but left messages it could not route in
//! the DLQ.

mod archive;
mod console;
mod inspect;
mod list;
mod replay;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

use crate::app::config::{Config, DEFAULT_AMQP_URL, split_urls};
use crate::core::mask::mask_password;
use crate::core::publish::PublishError;

/// Default RabbitMQ management API address.
pub(crate) const DEFAULT_MGMT_URL: &str = "http://127.0.0.1:15672";

/// Inspect and repair the dead-letter queues of mqkit services.
#[derive(Debug, Parser)]
#[command(name = "mqkit", version, propagate_version = true)]
pub(crate) struct Cli {
    /// RabbitMQ URL (comma-separated cluster nodes are tried in turn).
    #[arg(
        long,
        global = true,
        env = "MQKIT_AMQP_URL",
        hide_env_values = true,
        default_value = DEFAULT_AMQP_URL,
        value_name = "URL"
    )]
    pub url: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Dead-letter queues: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

/// `mqkit dlq …`
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead-letter queues and their depths (RabbitMQ management API).
    List(ListArgs),
    /// Show the first messages of a DLQ without consuming them (depth and
    /// order stay unchanged).
    Show(ShowArgs),
    /// Send dead letters back to their original queue: each is published
    /// with a confirm, then acked from the DLQ (or, with --from-archive,
    /// marked replayed in the archive), so a crash loses nothing.
    Replay(ReplayArgs),
    /// Delete every message in a DLQ.
    Purge(PurgeArgs),
    /// Counts of archived dead letters by day, queue and kind.
    Stats(StatsArgs),
    /// A web console over the archive: dead letters by queue and kind over
    /// time, a filterable list, one letter's headers and body, and replay
    /// of the selected ones (the same code as `replay --from-archive`).
    Serve(ServeArgs),
}

/// `mqkit dlq list`
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// RabbitMQ management API (same user and password as --url).
    #[arg(long, env = "MQKIT_MGMT_URL", default_value = DEFAULT_MGMT_URL, value_name = "URL")]
    pub api_url: String,
    /// Which queue names to list (`*` any text, `?` one character, `[ab]`
    /// one of the characters).
    #[arg(long, default_value = "dlq.*", value_name = "GLOB", value_parser = list::parse_pattern)]
    pub pattern: glob::Pattern,
}

/// `mqkit dlq show`
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The dead-letter queue.
    pub queue: String,
    /// How many messages to show, from the head of the queue.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub limit: u32,
}

/// `mqkit dlq replay`
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// The dead-letter queue (not with --from-archive).
    #[arg(
        required_unless_present = "from_archive",
        conflicts_with = "from_archive"
    )]
    pub dlq: Option<String>,
    /// Replay from the dead-letter archive at this database URL
    /// (mysql://… or postgres://…) instead of a DLQ; rows are marked
    /// replayed, and rows replayed before are skipped unless --again.
    #[arg(long, value_name = "URL")]
    pub from_archive: Option<String>,
    /// With --from-archive: only dead letters of this original queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    #[command(flatten)]
    pub time: TimeArgs,
    /// With --from-archive: only the dead letter(s) with this business key
    /// (the idempotency fields as the consumer joins them, e.g. `A-17`, or
    /// the whole stored key `mqkit:idem:order:A-17`).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// With --from-archive: replay rows that were replayed before too.
    #[arg(long)]
    pub again: bool,
    /// Replay at most N messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Only messages of these error kinds (x-mqkit-error-kind, or the
    /// x-death reason for broker dead letters): decode, rejected,
    /// retries-exhausted, panic, timeout, expired, maxlen… Repeat or
    /// separate with commas. Others stay in the DLQ.
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Show what would be replayed; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replay at most N messages per second (spare a recovering service).
    #[arg(long, value_name = "N")]
    pub rate: Option<u32>,
}

/// `--since` / `--until`: when the dead letters failed.
#[derive(Debug, Args)]
pub(crate) struct TimeArgs {
    /// Only dead letters that failed at or after this time: RFC 3339
    /// (`2026-12-01T08:00:00Z`), `YYYY-MM-DD[ HH:MM[:SS]]` in UTC, or a
    /// duration ago (`2h`, `3d`). Archive only.
    #[arg(long, value_name = "TIME", value_parser = archive::parse_time)]
    pub since: Option<String>,
    /// Only dead letters that failed before this time (same forms as
    /// --since). Archive only.
    #[arg(long, value_name = "TIME", value_parser = archive::parse_time)]
    pub until: Option<String>,
}

/// `mqkit dlq stats`
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The dead-letter archive (mysql://… or postgres://…).
    #[arg(
        long,
        env = "MQKIT_DLQ_ARCHIVE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub archive: String,
    /// Only dead letters of this original queue.
    #[arg(long, value_name = "QUEUE")]
    pub queue: Option<String>,
    /// Only these error kinds (repeat or separate with commas).
    #[arg(long, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,
    #[command(flatten)]
    pub time: TimeArgs,
}

/// `mqkit dlq serve`
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The dead-letter archive (mysql://… or postgres://…).
    #[arg(
        long,
        env = "MQKIT_DLQ_ARCHIVE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub archive: String,
    /// Where to listen, IP:PORT (port 0: any free port; the line printed at
    /// startup names it).
    #[arg(long, default_value = "127.0.0.1:8088", value_name = "ADDR")]
    pub addr: SocketAddr,
    /// Serve without a login (only with --addr on 127.0.0.1). Otherwise
    /// every request needs the user and password of --url (HTTP basic auth).
    #[arg(long)]
    pub no_auth: bool,
}

/// `mqkit dlq purge`
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The dead-letter queue.
    pub queue: String,
    /// Really delete the messages (required).
    #[arg(long)]
    pub yes: bool,
}

/// Why a command failed. Each message is one line and says what to check.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// No broker accepted the connection (or the login).
    #[error(
        "cannot connect to RabbitMQ: {0}. Check that RabbitMQ is running and the host, port, user, password and vhost in --url / MQKIT_AMQP_URL"
    )]
    Connect(String),
    /// `--url` does not parse.
    #[error("invalid --url / MQKIT_AMQP_URL {url}: {problem}")]
    BadUrl {
        /// The URL, password masked.
        url: String,
        /// The parser's complaint.
        problem: String,
    },
    /// The queue does not exist.
    #[error(
        "queue `{queue}` does not exist in vhost `{vhost}`; `mqkit dlq list` shows the dead-letter queues"
    )]
    NoQueue {
        /// The queue.
        queue: String,
        /// The vhost of --url.
        vhost: String,
    },
    /// An AMQP operation failed.
    #[error("{what} on queue `{queue}` failed: {source}")]
    Amqp {
        /// The operation.
        what: &'static str,
        /// The queue.
        queue: String,
        /// lapin's error.
        source: lapin::Error,
    },
    /// A replayed message could not be published for a reason other than
    /// routing; replay stops, the message stays in the DLQ.
    #[error(
        "replay stopped: publishing to `{target}` failed: {source}. The message stays in the DLQ; run the command again when the broker is healthy"
    )]
    Publish {
        /// The original queue.
        target: String,
        /// The publish error.
        source: PublishError,
    },
    /// `purge` without `--yes`.
    #[error(
        "refusing to purge `{queue}` ({depth} message{}) without --yes",
        if *.depth == 1 { "" } else { "s" }
    )]
    PurgeNeedsYes {
        /// The queue.
        queue: String,
        /// Its depth.
        depth: u32,
    },
    /// The dead-letter archive could not be read or updated.
    #[error(
        "dead-letter archive {url}: {problem}. Check that the database is running and the URL's host, port, user, password and database"
    )]
    Archive {
        /// The archive URL, password masked.
        url: String,
        /// What went wrong (password scrubbed).
        problem: String,
    },
    /// Options that do not go together.
    #[error("{0}")]
    Usage(String),
    /// The console cannot listen on its address.
    #[error(
        "cannot listen on {addr}: {source}. Is another process using it? Choose another with --addr IP:PORT (port 0 picks a free one)"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The bind error.
        source: std::io::Error,
    },
    /// The management API failed.
    #[error("RabbitMQ management API at {api}: {problem}")]
    Management {
        /// The API URL, password masked.
        api: String,
        /// What went wrong and what to check.
        problem: String,
    },
}

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Runs a command line (`args[0]` is the program name): parses it, runs
/// the command on a single-threaded runtime, prints an error as one line.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e @ CliError::Usage(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {}", one_line(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command; the report goes to stdout, progress to stderr.
pub(crate) async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let Command::Dlq(command) = cli.command;
    match &command {
        DlqCommand::List(args) => return list::list(&cli.url, args).await,
        DlqCommand::Stats(args) => return archive::stats(args).await,
        DlqCommand::Serve(args) => return console::serve(&cli.url, args).await,
        DlqCommand::Replay(args) if args.from_archive.is_none() => {
            let archive_only = [
                ("--queue", args.queue.is_some()),
                ("--key", args.key.is_some()),
                ("--again", args.again),
                ("--since", args.time.since.is_some()),
                ("--until", args.time.until.is_some()),
            ];
            if let Some((flag, _)) = archive_only.iter().find(|(_, set)| *set) {
                return Err(CliError::Usage(format!(
                    "{flag} selects archived dead letters: add --from-archive URL (a DLQ replay takes --kind and --limit)"
                )));
            }
        }
        _ => {}
    }
    let connection = connect(&cli.url).await?;
    let vhost = vhost_of(&cli.url);
    let result = match &command {
        DlqCommand::List(_) | DlqCommand::Stats(_) | DlqCommand::Serve(_) => Ok(ExitCode::SUCCESS),
        DlqCommand::Show(args) => inspect::show(&connection, &vhost, args).await,
        DlqCommand::Purge(args) => inspect::purge(&connection, &vhost, args).await,
        DlqCommand::Replay(args) => match (&args.from_archive, &args.dlq) {
            (Some(url), _) => archive::replay(&connection, url, args).await,
            (None, Some(dlq)) => replay::replay(&connection, &vhost, dlq, args).await,
            (None, None) => Err(CliError::Usage(
                "replay needs a DLQ name or --from-archive URL".to_owned(),
            )),
        },
    };
    if connection.status().connected() {
        let _ = connection.close(200, "OK".into()).await;
    }
    result
}

async fn connect(urls: &str) -> Result<Arc<Connection>, CliError> {
    let config = Config {
        amqp_urls: split_urls(urls),
        connection_name: "mqkit-cli".to_owned(),
        ..Config::default()
    };
    if config.amqp_urls.is_empty() {
        return Err(CliError::BadUrl {
            url: String::new(),
            problem: "it is empty".to_owned(),
        });
    }
    crate::amqp::connection::connect_any(&config.connect_options())
        .await
        // lapin's texts end in a period; the message adds its own sentence.
        .map_err(|cause| CliError::Connect(cause.trim_end_matches('.').to_owned()))
}

/// The vhost of the first URL, for messages (`/` when it does not parse).
fn vhost_of(urls: &str) -> String {
    split_urls(urls)
        .first()
        .and_then(|u| u.parse::<lapin::uri::AMQPUri>().ok())
        .map(|u| u.vhost)
        .unwrap_or_else(|| "/".to_owned())
}

/// Wraps an AMQP error on `queue` with the operation that failed.
fn amqp_error(queue: &str) -> impl Fn(&'static str, lapin::Error) -> CliError + '_ {
    move |what, source| CliError::Amqp {
        what,
        queue: queue.to_owned(),
        source,
    }
}

/// The depth of an existing `queue` and a fresh channel to work on it.
async fn open_queue(
    connection: &Connection,
    vhost: &str,
    queue: &str,
) -> Result<(u32, lapin::Channel), CliError> {
    let depth = queue_depth(connection, vhost, queue).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| amqp_error(queue)("opening a channel", e))?;
    Ok((depth, channel))
}

/// The queue's depth; [`CliError::NoQueue`] if it does not exist.
async fn queue_depth(connection: &Connection, vhost: &str, queue: &str) -> Result<u32, CliError> {
    let amqp = amqp_error(queue);
    let name = lapin::types::ShortString::try_new(queue).map_err(|_| CliError::NoQueue {
        queue: queue.to_owned(),
        vhost: vhost.to_owned(),
    })?;
    // A passive declare of a missing queue closes its channel: use a spare one.
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| amqp("opening a channel", e))?;
    let declared = channel
        .queue_declare(
            name,
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    match declared {
        Ok(q) => Ok(q.message_count()),
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404 => Err(CliError::NoQueue {
                queue: queue.to_owned(),
                vhost: vhost.to_owned(),
            }),
            _ => Err(amqp("checking the queue", e)),
        },
    }
}

/// Newlines out, so every error is one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A URL for messages, password masked.
fn shown(url: &str) -> String {
    mask_password(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn url_works_before_and_after_the_subcommand() {
        for args in [
            &["mqkit", "--url", "amqp://a:b@h/%2f", "dlq", "show", "q"][..],
            &["mqkit", "dlq", "show", "q", "--url", "amqp://a:b@h/%2f"][..],
            &["mqkit", "dlq", "--url", "amqp://a:b@h/%2f", "show", "q"][..],
        ] {
            let cli = Cli::try_parse_from(args).map_err(|e| e.to_string());
            assert_eq!(
                cli.map(|c| c.url).as_deref(),
                Ok("amqp://a:b@h/%2f"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn kinds_split_on_commas_and_repeat() {
        let cli = Cli::try_parse_from([
            "mqkit",
            "dlq",
            "replay",
            "q",
            "--kind",
            "decode,rejected",
            "--kind",
            "panic",
        ]);
        match cli.map(|c| c.command) {
            Ok(Command::Dlq(DlqCommand::Replay(r))) => {
                assert_eq!(r.kind, ["decode", "rejected", "panic"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_takes_a_dlq_or_an_archive_and_archive_filters_only_with_one() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map_err(|e| e.kind());
        assert!(parse(&["mqkit", "dlq", "replay", "dlq.q"]).is_ok());
        assert!(parse(&["mqkit", "dlq", "replay", "--from-archive", "mysql://h/db"]).is_ok());
        assert!(parse(&["mqkit", "dlq", "replay"]).is_err());
        let both = [
            "mqkit",
            "dlq",
            "replay",
            "dlq.q",
            "--from-archive",
            "mysql://h/db",
        ];
        assert!(parse(&both).is_err());
        let bad_time = [
            "mqkit",
            "dlq",
            "replay",
            "--from-archive",
            "mysql://h/db",
            "--since",
            "someday",
        ];
        assert!(parse(&bad_time).is_err());
        // Archive filters on a DLQ replay parse, and are refused before
        // anything connects.
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            panic!("no runtime");
        };
        for flag in [
            &["--queue", "q"][..],
            &["--key", "k"],
            &["--again"],
            &["--since", "2h"],
            &["--until", "1d"],
        ] {
            let mut args = vec!["mqkit", "dlq", "replay", "dlq.q"];
            args.extend_from_slice(flag);
            let refused = match Cli::try_parse_from(&args) {
                Ok(cli) => rt.block_on(run(cli)).err().map(|e| e.to_string()),
                Err(e) => Some(format!("did not parse: {e}")),
            };
            assert!(
                refused.as_deref().is_some_and(|e| e.starts_with(flag[0]) && e.contains("add --from-archive URL")),
                "{flag:?}: {refused:?}"
            );
        }
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(vhost_of("amqp://u:p@h:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://u:p@h:5672/prod"), "prod");
    }
}
