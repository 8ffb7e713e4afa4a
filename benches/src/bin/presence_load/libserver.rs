//! `--server lib`: the presence library's own routes (presence-core and
//! presence-axum, exactly as the demo mounts them, with the library's
//! default socket settings) behind a minimal login API and bearer auth: no
//! pages, no cookies, and a store picked per node, so `--nodes 2` can share
//! one Redis. `PRESENCE_LOAD_MAX_WRITE_BUFFER` overrides the socket's
//! `max_write_buffer_bytes` (default 64 KiB; before snapshots were sent in
//! parts, a scope of more than ~750 online users needed more).
//!
//! `POST /api/login` marks the user ONLINE (as the demo's does) and answers
//! a token `user|org`; the socket takes `Authorization: Bearer user|org`.
//! The store is `PRESENCE_STORE_URL` (`memory://` or `redis://…`, with
//! `PRESENCE_REDIS_PREFIX`).

use std::io::Write;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use presence_axum::{Identity, PresenceRoutes, SocketSettings};
use presence_core::{NodeId, Presence};
use presence_redis::{RedisConfig, RedisStore};

use crate::Error;
use crate::token::{self, Credentials};

/// The bearer token `user|org` (see `token`).
struct Bearer {
    user: String,
    org: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let (user, org) = token::bearer(&parts.headers).ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(Bearer {
            user: user.to_owned(),
            org: org.to_owned(),
        })
    }
}

impl From<Bearer> for Identity {
    fn from(Bearer { user, org }: Bearer) -> Identity {
        // As the demo: seen in and watching the user's organisation.
        Identity::new(user.clone(), format!("{user}|{org}")).in_scope(org)
    }
}

/// Runs until killed; prints its address first.
pub(crate) async fn serve() -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let builder = Presence::builder().node(NodeId::new(format!("load-{addr}")));
    let store = std::env::var("PRESENCE_STORE_URL").unwrap_or_else(|_| "memory://".into());
    let presence = if store.starts_with("redis") {
        let prefix =
            std::env::var("PRESENCE_REDIS_PREFIX").unwrap_or_else(|_| "presence-load".into());
        let redis = RedisStore::connect(RedisConfig::new(store.as_str()).prefix(prefix)).await?;
        builder.store(redis).build().await?
    } else {
        builder.build().await?
    };
    let mut settings = SocketSettings::default();
    if let Some(bytes) = std::env::var("PRESENCE_LOAD_MAX_WRITE_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings.max_write_buffer_bytes = bytes;
    }
    let routes = PresenceRoutes::<Bearer>::new(presence.clone()).socket_settings(settings);
    let app = Router::new()
        .route("/api/login", post(login))
        .with_state(presence)
        .merge(routes.router());
    println!("presence-load lib listening on http://{addr}");
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn login(State(presence): State<Presence>, body: String) -> Response {
    let Some(credentials) = Credentials::parse(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let identity: Identity = Bearer {
        user: credentials.username.clone(),
        org: credentials.org.clone(),
    }
    .into();
    if presence_axum::login(&presence, &identity).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    credentials.token_response()
}
