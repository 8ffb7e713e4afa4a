//! `presence-demo`: the seed's app with presence that works. Sign in as two
//! users of one organisation in two browsers and watch each other's dot
//! follow you across pages, go AWAY when idle, BUSY when you say so, and
//! OFFLINE when you leave.
//!
//! `cargo run --release -p presence-demo`, then open <http://127.0.0.1:3000>.
//! Configuration comes from the environment (README.md#two-commands): `LISTEN_ADDR`,
//! `PRESENCE_STORE_URL` (`memory://`, `sqlite://PATH`, `postgres://…`,
//! `redis://…`), `PRESENCE_HEARTBEAT_INTERVAL`,
//! `PRESENCE_SESSION_TTL`, `PRESENCE_AWAY_AFTER`, `PRESENCE_OFFLINE_AFTER`,
//! `PRESENCE_LINGER` (durations like `500ms`, `30s`, `5m`),
//! `PRESENCE_ALLOWED_ORIGINS` (comma-separated),
//! `PRESENCE_ACTIVITY_THROTTLE` (how often the browser reports input),
//! `PRESENCE_METRICS` (`1` serves `GET /metrics` in the Prometheus text
//! format; off by default, when `/metrics` is a 404),
//! `PRESENCE_DEMO_SECRET` (at least 16 bytes: signs the login tokens, so
//! logins survive a restart and work on every node with the same secret;
//! unset, a random secret per process, and a warning) and
//! `PRESENCE_DEMO_LOGIN_TTL` (how long a login lasts, default `7d`),
//! `PRESENCE_WEBHOOK_URL` (an `http://` URL posted to when a user goes
//! OFFLINE) and `PRESENCE_DEMO_CROWD` (`org:N`: N guests kept present in
//! `org`, which then shows counts).
//! `PRESENCE_REDIS_PREFIX` and `PRESENCE_PG_SCHEMA` name the keys and the
//! schema in a shared store.
//!
//! A logout holds everywhere: the login id is kept as revoked in the
//! configured store until its token expires (see `revocations`).

mod accounts;
mod app;
mod auth;
mod crowd;
mod logins;
mod metrics;
mod pages;
mod revocations;
mod settings;
mod tokens;
mod webhook;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use presence_axum::PresenceRoutes;
use presence_core::{NodeId, Presence};
use presence_redis::{RedisConfig, RedisStore};
use presence_sqlx::{PgConfig, PgStore, SqliteConfig, SqliteStore};

use crate::app::AppState;
use crate::auth::CurrentLogin;
use crate::logins::Logins;
use crate::revocations::{RedisRevocations, Revocations, SqlRevocations};
use crate::settings::{SecretBytes, Settings, StoreUrl};
use crate::tokens::{Secret, Tokens};

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "presence_demo=info,presence_core=info,presence_axum=info".into()
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = match Settings::from_env(|name| std::env::var(name).ok()) {
        Ok(settings) => settings,
        Err(bad) => {
            eprintln!("presence-demo: bad configuration: {bad}");
            return ExitCode::from(2);
        }
    };
    match run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("presence-demo: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.listen))?;
    let address = listener.local_addr()?;
    // Installed before the service exists, so nothing it records is lost.
    let metrics = if settings.metrics {
        Some(metrics::install().map_err(|e| format!("cannot record metrics: {e}"))?)
    } else {
        None
    };
    // A stable name per address: a demo restarted on the same address
    // clears the sessions its previous run left in a shared store.
    let node = NodeId::new(
        std::env::var("PRESENCE_NODE_NAME").unwrap_or_else(|_| format!("demo-{address}")),
    );
    let tokens = Tokens::new(&login_secret(settings.secret)?, settings.login_ttl);
    let builder = Presence::builder()
        .config(settings.presence)
        .node(node)
        .node_lease(settings.node_lease)
        // The webhook's changes are kept in the store until it has read
        // them: what a killed run left is posted by the next.
        .durable_changes(settings.webhook_url.is_some());
    // Stores that buffer heartbeats write them out on the way down.
    let mut flush: Option<FlushHeartbeats> = None;
    // Logouts are kept beside presence's state.
    let revocations: Revocations;
    let presence = match &settings.store {
        StoreUrl::Memory => {
            revocations = Revocations::memory();
            builder.build().await?
        }
        StoreUrl::Redis(url) => {
            let prefix =
                std::env::var("PRESENCE_REDIS_PREFIX").unwrap_or_else(|_| "presence-demo".into());
            let store = RedisStore::connect(RedisConfig::new(url.as_str()).prefix(prefix.as_str()))
                .await
                .map_err(|e| format!("cannot use Redis at {url}: {e}"))?;
            revocations = Revocations::redis(
                RedisRevocations::connect(url, &prefix)
                    .await
                    .map_err(|e| format!("cannot keep logouts in Redis at {url}: {e}"))?,
            );
            flush = Some(Box::new({
                let store = store.clone();
                move || Box::pin(async move { store.flush_heartbeats().await.map(drop) })
            }));
            builder.store(store).build().await?
        }
        StoreUrl::Sqlite(url) => {
            let store = SqliteStore::connect(SqliteConfig::new(url.as_str()))
                .await
                .map_err(|e| format!("cannot use SQLite at {url}: {e}"))?;
            revocations = Revocations::sql(
                SqlRevocations::sqlite(url)
                    .await
                    .map_err(|e| format!("cannot keep logouts in SQLite at {url}: {e}"))?,
            );
            flush = Some(Box::new({
                let store = store.clone();
                move || Box::pin(async move { store.flush_heartbeats().await.map(drop) })
            }));
            builder.store(store).build().await?
        }
        StoreUrl::Postgres(url) => {
            let schema = std::env::var("PRESENCE_PG_SCHEMA").unwrap_or_else(|_| "presence".into());
            let store = PgStore::connect(PgConfig::new(url.as_str()).schema(schema))
                .await
                .map_err(|e| format!("cannot use PostgreSQL at {url}: {e}"))?;
            // Presence's pool: the table goes into presence's schema.
            revocations = Revocations::sql(
                SqlRevocations::postgres(store.pool().clone())
                    .await
                    .map_err(|e| format!("cannot keep logouts in PostgreSQL at {url}: {e}"))?,
            );
            flush = Some(Box::new({
                let store = store.clone();
                move || Box::pin(async move { store.flush_heartbeats().await.map(drop) })
            }));
            builder.store(store).build().await?
        }
    };
    if let Some(url) = settings.webhook_url.clone() {
        webhook::spawn(&presence, url);
    }
    if let Some((org, size)) = &settings.crowd {
        crowd::spawn(&presence, org, *size)
            .await
            .map_err(|e| format!("cannot seat the crowd of {org}: {e}"))?;
    }
    let routes = PresenceRoutes::<CurrentLogin>::new(presence.clone())
        .snapshot_path("/api/presence")
        .allowed_origins(settings.allowed_origins.clone());
    let state = AppState {
        logins: Logins::new(tokens, revocations),
        presence,
        activity_throttle: settings.activity_throttle,
        origins: settings.allowed_origins.clone(),
    };
    let mut app = app::router(state, &routes);
    if let Some(handle) = metrics {
        app = metrics::route(app, handle);
    }
    // Tests read this line to learn the port.
    println!("presence-demo listening on http://{address}");
    std::io::stdout().flush()?;
    let shutdown = async move {
        stop_signal().await;
        tracing::info!("shutting down: closing presence sockets");
        routes.shutdown(Duration::from_secs(5)).await;
        if let Some(flush) = flush
            && let Err(error) = flush().await
        {
            tracing::warn!(%error, "writing the last heartbeats failed");
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// The configured secret, or a random one (and a warning: its logins end
/// with this process and hold on no other node).
fn login_secret(configured: Option<SecretBytes>) -> Result<Secret, String> {
    if let Some(bytes) = configured {
        return Ok(Secret::new(bytes.into_bytes()));
    }
    tracing::warn!(
        "PRESENCE_DEMO_SECRET is not set: login tokens are signed with a random secret of this \
         process; logins will not survive a restart nor work across nodes \
         (set PRESENCE_DEMO_SECRET, at least 16 bytes, the same on every node)"
    );
    Secret::random().map_err(|e| format!("cannot make a random secret: {e}"))
}

/// Writes a store's buffered heartbeats.
type FlushHeartbeats = Box<
    dyn FnOnce() -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<(), presence_core::store::StoreError>>
                    + Send,
            >,
        > + Send,
>;

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
