//! [`App`], the builder behind [`run`]: configuration, the idempotency
//! store, shared state, which consumers to run, and the checks done before
//! anything connects; [`App::start`] wires the layers together and returns
//! a [`Running`] handle.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use super::addon::{AddonInput, TxConsumer};
use super::config::{Config, split_urls};
use super::error::Error;
use super::registry::registered;
use super::running::{HttpServer, Running};
use super::{addon, http, logging, overrides, telemetry};
use crate::amqp::publisher::BrokerPublisher;
use crate::amqp::supervisor::{ConnectionState, ConsumerStatus, Supervisor};
use crate::core::consumer::Consumer;
use crate::core::idempotency::{IdempotencyStore, MemoryStore, RedisStore};
use crate::core::inbox::DatabaseKind;
use crate::core::pipeline::{Deps, ErasedPipeline, Pipeline};
use crate::core::publish::Publisher;
use crate::core::spec::ConsumerSpec;
use crate::core::state::{StateMap, StateType};

type Build = Box<dyn FnOnce(ConsumerSpec, &Deps) -> Arc<dyn ErasedPipeline> + Send>;

/// A consumer added to the app, not built yet.
struct Planned {
    /// The handler's name (for the missing-state error).
    name: &'static str,
    spec: ConsumerSpec,
    needs: Vec<StateType>,
    /// The database of its `Tx` parameter, if any.
    tx: Option<DatabaseKind>,
    build: Build,
}

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
///     .http_addr("127.0.0.1:9464")
///     .consumer_with(on_order {}, |spec| spec.prefetch = 50)
///     .run()
///     .await
/// # }
/// ```
pub struct App {
    config: Config,
    store: Option<Arc<dyn IdempotencyStore>>,
    state: StateMap,
    /// Values add-ons keep on the app (the transactional database pool).
    extras: StateMap,
    consumers: Vec<Planned>,
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
                    .map(|c| c.spec.queue.as_ref())
                    .collect::<Vec<_>>(),
            )
            .field("state", &self.state)
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
            state: StateMap::default(),
            extras: StateMap::default(),
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

    /// Serves `/livez`, `/healthz`, `/readyz` and `/metrics` on `addr`
    /// (`MQKIT_HTTP_ADDR`), e.g. `"127.0.0.1:9464"` or `"0.0.0.0:9464"`.
    pub fn http_addr(mut self, addr: &str) -> Self {
        self.config.http_addr = Some(addr.to_owned());
        self
    }

    /// Gives handlers a shared value of type `T` (a database pool, an HTTP
    /// client, settings), which a `mqkit::State<T>` parameter receives;
    /// call once per type. A consumer whose handler takes a state type that
    /// was not given fails [`start`](Self::start) before anything connects.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// Adjusts the settings in place (for add-ons' builder methods).
    #[cfg_attr(not(feature = "tx"), allow(dead_code))]
    pub(crate) fn with_config(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// Keeps a value for an add-on (what `App::database` gives).
    #[cfg_attr(not(feature = "tx"), allow(dead_code))]
    pub(crate) fn extra<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extras.insert(value);
        self
    }

    /// Adds every `#[consumer]` linked into this binary.
    pub fn registered(mut self) -> Self {
        for r in registered() {
            let build = r.build;
            self.consumers.push(Planned {
                name: r.name(),
                spec: r.spec(),
                needs: r.state_types(),
                tx: r.transaction(),
                build: Box::new(build),
            });
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
        self.consumers.push(Planned {
            name: consumer.name(),
            spec,
            needs: consumer.state_types(),
            tx: consumer.transaction(),
            build: Box::new(move |spec, deps: &Deps| {
                Arc::new(Pipeline::new(consumer, spec, deps.clone())) as Arc<dyn ErasedPipeline>
            }),
        });
        self
    }

    /// Starts the service and runs it until SIGINT or SIGTERM, then shuts
    /// down gracefully. A second signal exits the process at once. Installs
    /// the default log output first unless the application set its own
    /// `tracing` subscriber (see [`run`]).
    pub async fn run(self) -> Result<(), Error> {
        self.run_until(std::future::pending()).await
    }

    /// [`App::run`] that also shuts down gracefully when `shutdown`
    /// completes (for services that embed mqkit beside their own server).
    /// SIGINT and SIGTERM still work.
    ///
    /// ```no_run
    /// # #[derive(serde::Deserialize)] struct OrderEvent { order_id: String }
    /// # #[mqkit::consumer(queue = "order")]
    /// # async fn on_order(evt: OrderEvent) -> Result<(), mqkit::HandlerError> { Ok(()) }
    /// # async fn f() -> Result<(), mqkit::Error> {
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// # drop(stop);
    /// mqkit::App::from_env()?
    ///     .run_until(async { let _ = stopped.await; })
    ///     .await
    /// # }
    /// ```
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), Error> {
        logging::init_default();
        let result = self.start().await?.until(shutdown).await;
        logging::flush();
        result
    }

    /// Checks everything that needs no network (settings, overrides, state,
    /// the HTTP address), then connects (within the startup timeout),
    /// declares every consumer's topology and starts consuming in the
    /// background. The [`Running`] handle does not watch signals until
    /// [`Running::until_signal`] or [`Running::until`] is called.
    pub async fn start(mut self) -> Result<Running, Error> {
        if self.consumers.is_empty() {
            return Err(Error::NoConsumers);
        }
        let mut specs: Vec<ConsumerSpec> = self.consumers.iter().map(|c| c.spec.clone()).collect();
        overrides::apply(&self.config.consumer_overrides, &mut specs)?;
        let mut queues: Vec<&str> = Vec::new();
        for (planned, spec) in self.consumers.iter_mut().zip(&specs) {
            spec.validate()?;
            if queues.contains(&spec.queue.as_ref()) {
                return Err(Error::DuplicateQueue(spec.queue.to_string()));
            }
            queues.push(spec.queue.as_ref());
            if let Some(missing) = planned.needs.iter().find(|t| !self.state.contains(**t)) {
                return Err(Error::MissingState {
                    handler: planned.name.to_owned(),
                    type_name: missing.name(),
                });
            }
            planned.spec = spec.clone();
        }
        // Add-on settings (dead letters, the transactional database) fail
        // startup before the broker is connected.
        let transactional: Vec<TxConsumer> = self
            .consumers
            .iter()
            .filter_map(|c| {
                c.tx.map(|kind| TxConsumer {
                    handler: c.name,
                    spec: c.spec.clone(),
                    kind,
                })
            })
            .collect();
        let addons = addon::prepare(&AddonInput {
            config: &self.config,
            specs: &specs,
            transactional: &transactional,
            extras: &self.extras,
        })
        .await?;
        let inbox = addons.iter().find_map(|a| a.inbox.clone());
        if let (Some(c), None) = (transactional.first(), &inbox) {
            return Err(Error::NoDatabase {
                handler: c.handler.to_owned(),
                kind: c.kind,
                example: match c.kind {
                    DatabaseKind::MySql => "mysql://user:password@host:3306/database",
                    _ => "postgres://user:password@host:5432/database",
                },
            });
        }
        // Only consumers with idempotency fields that are not transactional
        // use the store.
        let uses_store = self
            .consumers
            .iter()
            .any(|c| c.tx.is_none() && !c.spec.idempotency.is_empty());
        let http = match &self.config.http_addr {
            Some(addr) => Some(http::bind(addr).await?),
            None => None,
        };
        let metrics = http.as_ref().map(|_| telemetry::prometheus());
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
                if uses_store {
                    warn!(
                        "MQKIT_REDIS_URL is not set: idempotency records live in this process only, so duplicates across instances or restarts are not caught"
                    );
                }
                Arc::new(MemoryStore::new())
            }
        };
        let broker = BrokerPublisher::new();
        let publisher = Publisher::new(broker.clone());
        let deps = Deps {
            store,
            publisher: publisher.clone(),
            state: Arc::new(self.state),
            inbox,
        };
        let statuses: Vec<Arc<ConsumerStatus>> = specs
            .iter()
            .map(|s| Arc::new(ConsumerStatus::new(&s.queue)))
            .collect();
        let pipelines = self
            .consumers
            .into_iter()
            .map(|c| (c.build)(c.spec, &deps))
            .collect();
        let (state, state_rx) = watch::channel(ConnectionState::Connecting);
        let shutdown = tokio_util::sync::CancellationToken::new();
        // Probes answer from now on: /livez at once, /readyz 503 until every
        // consumer is consuming.
        let http = http.map(|listener| {
            HttpServer::spawn(
                listener.local_addr().ok(),
                http::serve(
                    listener,
                    http::Probe {
                        connection: state_rx.clone(),
                        consumers: statuses.clone(),
                        shutdown: shutdown.clone(),
                        metrics: metrics.flatten(),
                    },
                ),
            )
        });
        // Add-ons' session tasks (the archiver's DLQ consumers) run on the
        // service's connection; their background work runs beside the
        // supervisor.
        // Cancelled once the service has ended (not when shutdown begins):
        // the outbox relay sends what the last handlers commit.
        let addon_stop = tokio_util::sync::CancellationToken::new();
        let mut extra = Vec::new();
        let mut background = Vec::new();
        let mut before_close = Vec::new();
        for prepared in addons {
            let started = (prepared.start)(addon_stop.clone(), publisher.clone());
            extra.extend(started.session_tasks);
            background.push(started.background);
            before_close.extend(started.before_close);
        }
        let supervisor = Supervisor {
            connect: self.config.connect_options(),
            startup_timeout: self.config.startup_timeout,
            shutdown_grace: self.config.shutdown_grace,
            pipelines,
            statuses,
            extra,
            before_close,
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
        Ok(Running::new(shutdown, task, publisher, state_rx, http))
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
///
/// Unless the application already set a `tracing` subscriber, this installs
/// one that writes to stderr, filtered by `RUST_LOG` (default `info`),
/// without colours when stderr is not a terminal.
pub async fn run() -> Result<(), Error> {
    logging::init_default();
    App::from_env()?.run().await
}
