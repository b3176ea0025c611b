//! [`App`], the builder behind [`run`]: configuration, the idempotency
//! store, which consumers to run, signal handling and graceful shutdown.
//! [`Running`] is the handle of a started app (tests, embedding).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::addon;
use super::config::{Config, split_urls};
use super::error::Error;
use super::registry::registered;
use crate::amqp::publisher::BrokerPublisher;
use crate::amqp::supervisor::{ConnectionState, Supervisor};
use crate::core::consumer::Consumer;
use crate::core::idempotency::{IdempotencyStore, MemoryStore, RedisStore};
use crate::core::pipeline::{Deps, ErasedPipeline, Pipeline};
use crate::core::publish::Publisher;
use crate::core::spec::ConsumerSpec;

type Build = Box<dyn FnOnce(&Deps) -> Arc<dyn ErasedPipeline> + Send>;

/// Builds and runs a service. [`run`] is `App::from_env()?.run()`.
///
/// ```no_run
/// # #[derive(serde::Deserialize)] struct OrderEvent { order_id: String }
/// #[mqkit::consumer(queue = "order", idempotency = "order_id")]
/// async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> { Ok(()) }
///
/// # async fn f() -> Result<(), mqkit::Error> {
/// mqkit::App::new()
///     .amqp_url("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .redis_url("redis://127.0.0.1:6379")
///     .consumer_with(on_order {}, |spec| spec.prefetch = 50)
///     .run()
///     .await
/// # }
/// ```
pub struct App {
    config: Config,
    store: Option<Arc<dyn IdempotencyStore>>,
    consumers: Vec<(ConsumerSpec, Build)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config)
            .field(
                "queues",
                &self
                    .consumers
                    .iter()
                    .map(|(s, _)| s.queue.as_ref())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// An app with default settings and no consumers.
    pub fn new() -> Self {
        App {
            config: Config::default(),
            store: None,
            consumers: Vec::new(),
        }
    }

    /// Settings from the environment and every `#[consumer]` in the binary.
    pub fn from_env() -> Result<Self, Error> {
        Ok(App::new().config(Config::from_env()?).registered())
    }

    /// Replaces all settings.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Broker URL(s), comma-separated for cluster nodes tried in turn.
    pub fn amqp_url(mut self, urls: &str) -> Self {
        self.config.amqp_urls = split_urls(urls);
        self
    }

    /// Keeps idempotency records in Redis at `url`.
    pub fn redis_url(mut self, url: &str) -> Self {
        self.config.redis_url = Some(url.to_owned());
        self
    }

    /// Uses this idempotency store (overrides the Redis URL).
    pub fn store(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// AMQP heartbeat interval (whole seconds, at least 1).
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.config.heartbeat = heartbeat.max(Duration::from_secs(1));
        self
    }

    /// How long in-flight handlers may run on after a shutdown signal.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// How long startup keeps trying to reach the broker.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.config.startup_timeout = timeout;
        self
    }

    /// Adds every `#[consumer]` linked into this binary.
    pub fn registered(mut self) -> Self {
        for r in registered() {
            let build = r.build;
            let spec = r.spec();
            let for_build = spec.clone();
            self.consumers
                .push((spec, Box::new(move |deps: &Deps| build(for_build, deps))));
        }
        self
    }

    /// Adds a consumer with its own spec.
    pub fn consumer<C: Consumer>(self, consumer: C) -> Self {
        self.consumer_with(consumer, |_| {})
    }

    /// Adds a consumer after adjusting its spec (e.g. a unique queue name
    /// in tests, a larger prefetch in production).
    pub fn consumer_with<C: Consumer>(
        mut self,
        consumer: C,
        adjust: impl FnOnce(&mut ConsumerSpec),
    ) -> Self {
        let mut spec = consumer.spec();
        adjust(&mut spec);
        let for_build = spec.clone();
        self.consumers.push((
            spec,
            Box::new(move |deps: &Deps| {
                Arc::new(Pipeline::new(consumer, for_build, deps.clone()))
                    as Arc<dyn ErasedPipeline>
            }),
        ));
        self
    }

    /// Starts the service and runs it until SIGINT or SIGTERM, then shuts
    /// down gracefully. A second signal exits the process at once.
    pub async fn run(self) -> Result<(), Error> {
        let running = self.start().await?;
        let shutdown = running.shutdown.clone();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            info!("shutdown signal received; stopping consumers and draining in-flight handlers");
            shutdown.cancel();
            wait_for_signal().await;
            warn!("second shutdown signal; exiting now");
            std::process::exit(130);
        });
        let result = running.wait().await;
        signals.abort();
        result
    }

    /// Connects (within the startup timeout), declares every consumer's
    /// topology and starts consuming in the background.
    pub async fn start(self) -> Result<Running, Error> {
        if self.consumers.is_empty() {
            return Err(Error::NoConsumers);
        }
        let mut queues: Vec<&str> = Vec::new();
        for (spec, _) in &self.consumers {
            spec.validate()?;
            if queues.contains(&spec.queue.as_ref()) {
                return Err(Error::DuplicateQueue(spec.queue.to_string()));
            }
            queues.push(spec.queue.as_ref());
        }
        // Add-on settings (dead letters) fail startup before anything connects.
        let specs: Vec<ConsumerSpec> = self.consumers.iter().map(|(s, _)| s.clone()).collect();
        let addons = addon::prepare(&self.config, &specs)?;
        let store = match (self.store, &self.config.redis_url) {
            (Some(store), _) => store,
            (None, Some(url)) => {
                let redis = RedisStore::new(url)?;
                if let Err(e) = redis.ping().await {
                    warn!(error = %e, "Redis is not reachable yet; deliveries are requeued (handlers not called) until it is");
                }
                Arc::new(redis)
            }
            (None, None) => {
                warn!(
                    "MQKIT_REDIS_URL is not set: idempotency records live in this process only, so duplicates across instances or restarts are not caught"
                );
                Arc::new(MemoryStore::new())
            }
        };
        let broker = BrokerPublisher::new();
        let publisher = Publisher::new(broker.clone());
        let deps = Deps {
            store,
            publisher: publisher.clone(),
        };
        let pipelines = self
            .consumers
            .into_iter()
            .map(|(_, build)| build(&deps))
            .collect();
        let (state, state_rx) = watch::channel(ConnectionState::Connecting);
        let shutdown = CancellationToken::new();
        // Add-ons' session tasks (the archiver's DLQ consumers) run on the
        // service's connection; their background work runs beside the
        // supervisor.
        let addon_stop = shutdown.child_token();
        let mut extra = Vec::new();
        let mut background = Vec::new();
        for start in addons {
            let started = start(addon_stop.clone());
            extra.extend(started.session_tasks);
            background.push(started.background);
        }
        let supervisor = Supervisor {
            connect: self.config.connect_options(),
            startup_timeout: self.config.startup_timeout,
            shutdown_grace: self.config.shutdown_grace,
            pipelines,
            extra,
            publisher: broker,
            state,
            shutdown: shutdown.clone(),
        };
        let connection = supervisor.startup().await?;
        let service = async move { supervisor.run(connection).await.map_err(Error::from) };
        let mut task = tokio::spawn(addon::beside(service, background, addon_stop));
        // Return once every consumer is consuming, or with the error that
        // stopped them (e.g. access refused on a queue).
        let mut ready = state_rx.clone();
        tokio::select! {
            connected = ready.wait_for(|s| *s == ConnectionState::Connected) => {
                if connected.is_err() {
                    return Err(Error::Supervisor("stopped during startup".to_owned()));
                }
            }
            ended = &mut task => {
                return match ended {
                    Ok(Ok(())) => Err(Error::Supervisor("stopped during startup".to_owned())),
                    Ok(Err(e)) => Err(e),
                    Err(e) => Err(Error::Supervisor(e.to_string())),
                };
            }
        }
        Ok(Running {
            shutdown,
            task,
            publisher,
            state: state_rx,
        })
    }
}

/// A started app.
#[derive(Debug)]
pub struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
    publisher: Publisher,
    state: watch::Receiver<ConnectionState>,
}

impl Running {
    /// The process's publisher (confirm-mode channel).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// The connection state right now.
    pub fn state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// A receiver that sees every connection state change (for readiness).
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// Whether the broker connection is up and consumers are running.
    pub fn is_ready(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// A token that shuts the app down when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Requests a graceful shutdown and waits for it.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the app stops (after a shutdown request, or a fatal error).
    pub async fn wait(self) -> Result<(), Error> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(Error::Supervisor(e.to_string())),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs every `#[consumer]` in this binary with configuration from the
/// environment, until SIGINT or SIGTERM.
///
/// ```no_run
/// #[tokio::main]
/// async fn main() -> Result<(), mqkit::Error> {
///     mqkit::run().await
/// }
/// ```
pub async fn run() -> Result<(), Error> {
    App::from_env()?.run().await
}
