//! The approval server (`hitl-gate serve`): a durable queue of requests, push wake-up of waiting
//! shims, per-rule timeouts, signed decisions and a tamper-evident audit log, on SQLite.
//!
//! The test seam is [`launch_with_listener`]: tests bind `127.0.0.1:0` themselves and hand the
//! listener over, so they know the address and drive the server with a real HTTP client.
//!
//! Two listeners share one router: TCP (agents, with bearer tokens; public endpoints; capped and
//! timed out in `conn.rs`) and the admin Unix socket `DATA_DIR/admin.sock` (mode 0600), whose
//! callers are approvers identified by SO_PEERCRED as `local:<user>`. The data dir is locked
//! for the server's life (`data_lock.rs`); the policy can be loaded again while it runs
//! (`reload.rs`).

mod agent_runs;
mod app;
pub mod audit_evidence;
pub mod audit_log;
pub mod audit_tree;
pub mod auth;
mod classify;
mod clock;
mod conn;
mod cosign;
pub mod data_lock;
mod db;
mod decide;
mod decision_store;
pub mod error;
mod extract;
pub mod history;
mod id_token;
mod intake;
mod live;
pub mod logging;
mod long_poll;
mod metrics;
mod notify;
pub mod oidc;
mod outbox;
mod outbox_store;
mod postgres;
mod quorum;
pub mod reload;
mod replicas;
mod routes;
pub mod sessions;
mod sinks;
mod slack;
pub mod store;
pub mod tls;
mod transparency;
mod tree_store;
mod views;
mod web;
mod web_settings;
mod writer;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify};

use crate::policy::Policy;
use crate::signing::Keys;
pub use app::Loader;
use app::{App, Waiters};
use auth::LocalPeer;
use store::Store;

/// The database file inside the data dir.
pub const DB_FILE: &str = "hitl-gate.db";

pub use db::{sqlite_url, Location};
/// The admin socket inside the data dir.
pub const SOCKET_FILE: &str = "admin.sock";

/// What the server needs to start.
pub struct Config {
    pub data_dir: PathBuf,
    pub policy: Policy,
    /// Serve HTTPS with this configuration instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The time every decision is made at: the system clock, except in tests (`clock.rs`).
    pub clock: Clock,
    /// How to load the policy again (`hitl-gate reload`, SIGHUP); `None`: it cannot be.
    pub reload: Option<Reload>,
}

/// How a server loads its policy again, and the signal that asks it to.
pub struct Reload {
    pub loader: Loader,
    /// SIGHUP, registered by the caller before the server starts (so an early one does not
    /// kill it); each delivery reloads.
    pub hangup: Option<tokio::signal::unix::Signal>,
}

pub use crate::api::now_ms;
pub use clock::Clock;

/// Creates the data dir (0700) or checks an existing one: a directory that group or others can
/// write would let them replace the admin socket, so it is refused.
pub fn prepare_data_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot chmod {}: {e}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "data dir {} is writable by group or others (mode {:o}); the admin socket cannot be \
             trusted there (chmod go-w)",
            dir.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// Everything `serve` prints at start, and what tests need to know.
pub struct Started {
    pub public_key: String,
    pub socket: PathBuf,
    /// Where approvers open the web UI, and how they sign in (none without `[serve.oidc]`).
    pub web_ui: Option<String>,
}

/// Starts the server on `listener` and runs it until `shutdown` completes. `on_start` is called
/// once everything is listening.
pub async fn launch_with_listener<F>(
    config: Config,
    listener: TcpListener,
    shutdown: F,
    on_start: impl FnOnce(&Started) + Send,
) -> Result<(), String>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    prepare_data_dir(&config.data_dir)?;
    // Held until this function returns: a second server on this data dir stops here.
    let _lock = data_lock::DataDirLock::acquire(&config.data_dir)?;
    let keys = Arc::new(Keys::load_or_create(&config.data_dir)?);
    let serve = config.policy.serve().clone();
    let live = live::Live::build(config.policy)?;
    let location = db::location(&serve, &config.data_dir.join(DB_FILE))?;
    let witnesses = cosign::load(&serve.witnesses)?;
    let mut store = Store::open(&location, keys.clone(), serve.checkpoint_every)
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    if let Some(origin) = &serve.log_origin {
        crate::audit::note::VKey::of(&keys, origin, crate::audit::note::ALG_ED25519)
            .map_err(|e| format!("[serve] log_origin: {e}"))?;
        store.set_log_origin(origin);
    }
    if let db::Location::Postgres(url) = &location {
        postgres::check_signing_key(url, &keys.public_hex()).await?;
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (loader, hangup) = match config.reload {
        Some(r) => (Some(r.loader), r.hangup),
        None => (None, None),
    };
    let web = web_settings::Web::from_config(&serve, &config.clock)?;
    let notify_wake = Arc::new(Notify::new());
    store.set_outbox(live.outbox(notify_wake.clone(), web.is_some()));
    let app = Arc::new(App {
        store,
        live: std::sync::RwLock::new(Arc::new(live)),
        loader,
        notify_wake,
        keys,
        waiters: Waiters::default(),
        metrics: metrics::Metrics::default(),
        reaper: Notify::new(),
        shutdown: stop_rx.clone(),
        body_limit: serve.body_limit_bytes,
        events: tokio::sync::broadcast::channel(1024).0,
        web,
        clock: config.clock,
        exports: Arc::new(tokio::sync::Semaphore::new(1)),
    });
    if !serve.allow_local_approvers && app.web.is_none() {
        return Err(
            "[serve] allow_local_approvers = false and no [serve.oidc]: nobody could decide".into(),
        );
    }

    // Expire what became overdue while the server was down, before anyone can decide it.
    decide::expire_due(&app).await;

    let socket = config.data_dir.join(SOCKET_FILE);
    let _ = std::fs::remove_file(&socket);
    let uds = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot bind {}: {e}", socket.display()))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", socket.display()))?;

    let router = routes::router(app.clone());
    let started = Started {
        public_key: app.keys.public_hex(),
        socket: socket.clone(),
        web_ui: app.web.as_ref().map(|w| {
            format!(
                "{}/ui (sign-in: {}){}",
                w.public_url,
                w.oidc.config().issuer,
                if w.secure {
                    ""
                } else {
                    "; plain HTTP on loopback, for development: the session cookie is not \
                     Secure and has no __Host- prefix"
                }
            )
        }),
    };
    on_start(&started);

    // PostgreSQL: this replica hears of the others' changes, and runs the reaper when it holds
    // the lock.
    let (listener_task, leadership) = match &location {
        db::Location::Postgres(url) => {
            let _ = app.metrics.replica.set(format!(
                "{}:{}",
                crate::shim::prepared::hostname(),
                std::process::id()
            ));
            (
                Some(tokio::spawn(replicas::listener(app.clone(), url.clone()))),
                Some(replicas::Leadership::new(url.clone())),
            )
        }
        db::Location::Sqlite(_) => (None, None),
    };
    let clock = tokio::spawn(app.clock.clone().watch());
    let reaper = tokio::spawn(decide::reaper(app.clone(), leadership));
    let notifier = tokio::spawn(notify::worker(app.clone()));
    let reloader = hangup.map(|h| tokio::spawn(reload::on_signal(app.clone(), h)));
    let checkpointer = tokio::spawn(decide::checkpointer(
        app.clone(),
        serve.checkpoint_interval.0,
    ));
    let cosigner = (!witnesses.is_empty())
        .then(|| tokio::spawn(cosign::cosigner(app.clone(), witnesses.clone())));
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: waiting clients are answered 503 shutting_down and retry");
        let _ = stop_tx.send(true);
    });

    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let uds_server = axum::serve(
        uds,
        router
            .clone()
            .into_make_service_with_connect_info::<LocalPeer>(),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()));
    let limits = conn::Limits {
        max_connections: conn::connection_cap(serve.max_connections),
        header_read_timeout: serve.header_read_timeout.0,
    };
    let acceptor = config.tls.map(tokio_rustls::TlsAcceptor::from);
    let tcp = conn::serve(
        listener,
        acceptor,
        router,
        limits,
        stop_rx.clone(),
        app.clone(),
    );
    let ((), b) = tokio::join!(tcp, uds_server);
    reaper.abort();
    checkpointer.abort();
    if let Some(c) = cosigner {
        c.abort();
    }
    clock.abort();
    if let Some(l) = listener_task {
        l.abort();
    }
    notifier.abort();
    if let Some(r) = reloader {
        r.abort();
    }
    let _ = std::fs::remove_file(&socket);
    // A last checkpoint so the head at shutdown is signed, and taken to the witnesses.
    let _ = app.store.checkpoint(app.clock.now_ms()).await;
    cosign::push_once(&app, &witnesses, std::time::Duration::from_secs(5)).await;
    b.map_err(|e| format!("server error: {e}"))
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, UnixListener>>
    for LocalPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, UnixListener>) -> Self {
        LocalPeer(
            stream
                .io()
                .peer_cred()
                .ok()
                .map(|c| format!("local:{}", auth::username(c.uid()))),
        )
    }
}
