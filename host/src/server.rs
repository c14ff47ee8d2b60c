//! Puts the pieces together and serves them on one listener: the rules, the store, the matches,
//! the Socket.IO gateway and the HTTP endpoints.

use crate::config::Config;
use crate::gateway::{Gateway, SocketOutbox};
use crate::http::{self, HttpState};
use crate::matches::{MatchSettings, Matches, Outbox};
use crate::model::now_ms;
use crate::rules::{Rules, RulesError};
use crate::runtime::{LoadError, RulesEngine};
use crate::store::Store;
use socketioxide::SocketIo;
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
    rules.load_folder(&config.rules_dir)?;
    rules.require(&config.game, &config.rules_dir)?;

    let store = Arc::new(Store::default());
    let (layer, io) = SocketIo::builder()
        .max_buffer_size(config.socket_buffer)
        .max_payload(config.transport_max_payload)
        .build_layer();
    let outbox: Arc<dyn Outbox> = Arc::new(SocketOutbox::new(io.clone()));
    let matches = Matches::new(
        store.clone(),
        rules,
        outbox.clone(),
        MatchSettings {
            game: config.game.clone(),
            round_timeout: config.round_timeout,
            reconnect_grace: config.reconnect_grace,
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
    );
    gateway.attach();

    let ready = Arc::new(AtomicBool::new(true));
    let app = http::router(HttpState {
        store: store.clone(),
        matches,
        gateway,
        admin_token: config.admin_token.clone(),
        instance_id: config.instance_id.clone(),
        ready: ready.clone(),
    })
    .layer(layer)
    .layer(CorsLayer::permissive());

    let sweeper = tokio::spawn(sweep(store.clone(), config.finished_game_retention));
    tracing::info!(
        addr = %listener.local_addr()?,
        instance = config.instance_id,
        game = config.game,
        "serving (standalone, in memory)"
    );
    if let Some(signal) = ready_signal {
        let _ = signal.send(());
    }
    let closing = async move {
        shutdown.await;
        tracing::info!("shutting down: closing every socket");
        ready.store(false, Ordering::Relaxed);
        io.close().await;
    };
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(closing)
    .await;
    sweeper.abort();
    served.map_err(StartError::Io)
}

/// Forgets the sessions of players who stayed away past their grace period, and finished games
/// nobody has looked at for `retention`.
async fn sweep(store: Arc<Store>, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = now_ms();
        for session in store.expire_sessions(now) {
            tracing::debug!(player = session.player_id, "session expired");
        }
        let pruned = store.prune_finished(now.saturating_sub(retention.as_millis() as u64));
        if pruned > 0 {
            tracing::debug!(pruned, "finished games forgotten");
        }
    }
}
