//! Puts the pieces together and serves them on one listener: the rules, the store (memory or
//! Redis), the matches, the Socket.IO gateway with its adapter, the cluster loops and the HTTP
//! endpoints.

use crate::cluster::Cluster;
use crate::cluster::feeds::Feeds;
use crate::cluster::follower::Follower;
use crate::config::Config;
use crate::gateway::{AdminUi, Gateway, HostAdapter, SocketOutbox};
use crate::http::{self, HttpState};
use crate::matches::{MatchSettings, Matches, Outbox};
use crate::modules::Modules;
use crate::redis_store::pubsub::Bus;
use crate::rules::{Rules, RulesError};
use crate::runtime::{LoadError, RulesEngine};
use crate::store::{RedisStore, Store};
use crate::transport::{Transport, TransportLayer};
use socketioxide::SocketIo;
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::CorsLayer;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the wasm engine could not start: {0}")]
    Engine(#[from] LoadError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("the Socket.IO adapter could not start: {0}")]
    Adapter(String),
    #[error("could not subscribe to this instance's inbox: {0}")]
    Feeds(#[from] crate::redis_store::pubsub::BusError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// A server running in the background, e.g. in a test.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), StartError>>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops taking players, closes every socket and waits for the server to finish.
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("the server task does not panic")
    }
}

/// Starts serving in the background and returns once the server is ready.
pub async fn start(listener: TcpListener, config: Config) -> Result<RunningServer, StartError> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(run_until(
        listener,
        config,
        async {
            let _ = stopped.await;
        },
        Some(ready_tx),
    ));
    match ready_rx.await {
        Ok(()) => Ok(RunningServer {
            addr,
            stop: Some(stop),
            task,
        }),
        // The server failed before it was ready; its task says why.
        Err(_) => Err(task
            .await
            .expect("the server task does not panic")
            .expect_err("a server that never became ready failed")),
    }
}

/// Serves until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    run_until(listener, config, shutdown, None).await
}

async fn run_until(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready_signal: Option<oneshot::Sender<()>>,
) -> Result<(), StartError> {
    let engine = RulesEngine::new(config.runtime.clone())?;
    let rules = Rules::new(engine);
    let local = rules.load_folder(&config.rules_dir)?;

    let store = Arc::new(connect_store(&config).await);
    let modules = Modules::new(rules.clone(), store.clone());
    // The fleet's active versions win over this instance's files.
    if let Err(error) = modules.share_local(local).await {
        tracing::warn!(%error, "could not share this instance's rules modules");
    }
    rules.require(&config.game, &config.rules_dir)?;
    let watcher = match modules.watch(&config.rules_dir) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            // Uploads still work; only the file path is off.
            tracing::warn!(%error, folder = %config.rules_dir.display(), "not watching the rules folder");
            None
        }
    };
    // On a Redis Cluster the store's prefix carries the fleet's hash tag, so that the adapter's
    // channels live in the same slot as everything else (see `redis_store`).
    let (bus, channel_prefix) = match &*store {
        Store::Redis(redis) => (redis.bus(), redis.prefix().to_string()),
        Store::Memory(_) => (Bus::new(), config.redis_prefix.clone()),
    };
    let admin_ui = AdminUi::new(config.admin_token.clone(), bus.clone(), &channel_prefix);
    let adapter = RedisAdapterCtr::new_with_driver(
        bus,
        RedisAdapterConfig::new()
            .with_prefix(format!("{channel_prefix}socket.io"))
            .with_stream_buffer(65_536),
    );
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(config.socket_buffer)
        .max_payload(config.transport_max_payload)
        // Engine.IO's `max_payload` bounds polling requests only; a websocket message is bounded
        // here, and a frame too, so that a large one is refused from its header, unread.
        .ws_max_message_size(config.transport_max_payload as usize)
        .ws_max_frame_size(config.transport_max_payload as usize)
        // Game events are small (a few hundred bytes): a 256-byte read chunk instead of the
        // default 4 KiB saves 3.8 KiB per idle websocket; a larger frame is read in several.
        .ws_read_buffer_size(256)
        .with_adapter::<HostAdapter>(adapter)
        .build_layer();
    let (feeds, feeds_task) = Feeds::new(&store);
    let outbox = Arc::new(SocketOutbox::new(
        io.clone(),
        feeds,
        config.instance_id.clone(),
    ));
    let matches = Matches::new(
        store.clone(),
        modules.clone(),
        outbox.clone() as Arc<dyn Outbox>,
        MatchSettings {
            game: config.game.clone(),
            round_timeout: config.round_timeout,
            reconnect_grace: config.reconnect_grace,
            match_fill: config.match_fill,
            bots: config.bots.clone(),
            match_log: config.match_log,
            instance_id: config.instance_id.clone(),
        },
    );
    let gateway = Gateway::new(
        io.clone(),
        store.clone(),
        matches.clone(),
        outbox,
        config.client_limits.clone(),
        config.instance_id.clone(),
        admin_ui,
    );
    gateway.attach().await.map_err(StartError::Adapter)?;

    let cluster = Cluster {
        store: store.clone(),
        gateway: gateway.clone(),
        matches: matches.clone(),
        modules: modules.clone(),
        instance_id: config.instance_id.clone(),
        heartbeat_ttl: config.heartbeat_ttl,
        finished_game_retention: config.finished_game_retention,
        tidy_interval: config.tidy_interval,
        started_at: crate::model::now_ms(),
    };
    // Registered before taking players: matchmaking only pairs players of live instances.
    if let Err(error) = cluster.register().await {
        tracing::warn!(%error, "could not register in the instance registry yet");
    }
    let transport = Transport::new("/socket.io", config.transport_max_payload as usize, {
        let gateway = gateway.clone();
        Arc::new(move |namespace: &str, sid: &str| gateway.is_connected(namespace, sid))
    });
    let follower = match feeds_task {
        Some(task) => {
            let instance = &config.instance_id;
            let follower = Follower::start(task, instance, matches.clone(), gateway.clone());
            Some(follower.await.map_err(StartError::Feeds)?)
        }
        None => None,
    };
    let background = [
        tokio::spawn(transport.clone().sweep()),
        tokio::spawn(cluster.clone().heartbeat()),
        tokio::spawn(async move {
            if let Some(follower) = follower {
                follower.run().await
            }
        }),
        tokio::spawn(cluster.clone().follow_module_events()),
        tokio::spawn(cluster.clone().sweep()),
        tokio::spawn(cluster.clone().tidy_rooms()),
        tokio::spawn(gateway.clone().serve_admin_ui()),
    ];

    let ready = Arc::new(AtomicBool::new(true));
    let app = http::router(HttpState {
        store: store.clone(),
        matches,
        modules,
        gateway: gateway.clone(),
        admin_token: config.admin_token.clone(),
        instance_id: config.instance_id.clone(),
        ready: ready.clone(),
        max_module_bytes: config.runtime.module_bytes,
        started_at: cluster.started_at,
        metrics: config.metrics.then(crate::metrics::install).flatten(),
        web_dir: config.web_dir.clone(),
    })
    .layer(layer)
    .layer(TransportLayer(transport.clone()))
    .layer(axum::middleware::map_request(detach_request_parts))
    .layer(CorsLayer::permissive());

    tracing::info!(
        addr = %listener.local_addr()?,
        instance = config.instance_id,
        game = config.game,
        mode = if store.is_shared() { "shared through Redis" } else { "standalone, in memory" },
        "serving"
    );
    if let Some(signal) = ready_signal {
        let _ = signal.send(());
    }
    let (closing_transport, drain_delay) = (transport.clone(), config.drain_delay);
    let closing = async move {
        shutdown.await;
        ready.store(false, Ordering::Relaxed);
        closing_transport.refuse_new_sessions();
        if !drain_delay.is_zero() {
            // Out of the balancer's rotation before the players are let go: they reconnect
            // through it, to another instance.
            tracing::info!(
                ?drain_delay,
                "shutting down: no new players; keeping these a moment"
            );
            tokio::time::sleep(drain_delay).await;
        }
        tracing::info!("shutting down: handing players over and closing every socket");
        // Let every socket go first (mappings, queue entries, a reconnection grace in each
        // match), so players can resume on another instance without waiting for the reaper.
        gateway.drain().await;
        cluster.deregister().await;
        io.close().await;
    };
    let served = crate::listener::serve(
        listener,
        app,
        config.connection_limits.clone().fitted(),
        closing,
        Duration::from_secs(5),
    )
    .await;
    for task in background {
        task.abort();
    }
    drop(watcher);
    served.map_err(StartError::Io)
}

/// Copies a Socket.IO request's URI and headers out of hyper's read buffer. engineioxide keeps
/// each socket's request parts for the socket's whole life (`Socket::req_parts`), and the URI and
/// headers hyper parses are slices of the buffer it read the request into: without the copy,
/// every socket holds that whole buffer (16 KiB) to keep a few hundred bytes.
async fn detach_request_parts(mut request: axum::extract::Request) -> axum::extract::Request {
    use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
    if !request.uri().path().starts_with("/socket.io") {
        return request;
    }
    let mut headers = HeaderMap::with_capacity(request.headers().len());
    for (name, value) in request.headers() {
        // Standard names are static; other names, and every value, are copied.
        let copied_name = HeaderName::from_bytes(name.as_str().as_bytes());
        let copied_value = HeaderValue::from_bytes(value.as_bytes());
        headers.append(
            copied_name.unwrap_or_else(|_| name.clone()),
            copied_value.unwrap_or_else(|_| value.clone()),
        );
    }
    *request.headers_mut() = headers;
    if let Ok(uri) = request.uri().to_string().parse::<Uri>() {
        // The router keeps its own copy of the URI too.
        if let Some(original) = request
            .extensions_mut()
            .get_mut::<axum::extract::OriginalUri>()
        {
            original.0 = uri.clone();
        }
        *request.uri_mut() = uri;
    }
    request
}

/// The store `config` asks for: memory without `REDIS_URL` or `REDIS_CLUSTER_NODES`, else Redis, waited for as long as
/// it takes. An instance of a fleet that went on alone because Redis was away when it started
/// would be an island for its whole life: its players' sessions, queues and matches unknown to
/// the others (the chaos run found players who resumed there told their session was unknown).
/// Until Redis answers nothing is served, so a balancer's health check sends it nobody.
async fn connect_store(config: &Config) -> Store {
    let Some(target) = &config.redis else {
        return Store::default();
    };
    let mut wait = Duration::from_millis(100);
    loop {
        let (prefix, patience) = (&config.redis_prefix, config.redis_response_timeout);
        match RedisStore::connect_with(target, prefix, Duration::from_secs(2), patience).await {
            Ok(redis) => return Store::Redis(redis),
            Err(error) => {
                tracing::warn!(%error, retry_in = ?wait, "Redis does not answer: waiting for it before serving");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, Bytes};
    use axum::extract::{OriginalUri, Request};
    use axum::http::{HeaderValue, Uri};

    #[tokio::test]
    async fn socket_io_requests_let_go_of_the_buffer_they_were_read_into() {
        // As hyper parses a request: the URI and header values are slices of one buffer.
        let read = Bytes::from(b"/socket.io/?EIO=4&transport=websocket example.org".to_vec());
        let uri = Uri::from_maybe_shared(read.slice(..37)).unwrap();
        let host = HeaderValue::from_maybe_shared(read.slice(38..)).unwrap();
        let mut request = Request::builder()
            .uri(uri.clone())
            .header("host", host)
            .header(
                "x-player",
                HeaderValue::from_maybe_shared(read.slice(38..45)).unwrap(),
            )
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(OriginalUri(uri));
        assert!(!read.is_unique());

        let request = detach_request_parts(request).await;
        assert!(
            read.is_unique(),
            "nothing in the request points into the buffer"
        );
        assert_eq!(request.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(request.headers()["host"], "example.org");
        assert_eq!(request.headers()["x-player"], "example");
        let original = request.extensions().get::<OriginalUri>().unwrap();
        assert_eq!(original.0, "/socket.io/?EIO=4&transport=websocket");
    }
}
