//! Presence for any axum app: the presence WebSocket of docs/protocol.md, an HTTP
//! heartbeat and snapshot, a tower layer that counts page requests as
//! activity, and the browser client, all mounted in a few lines.
//!
//! # Mounting it
//!
//! The host keeps its own auth. It gives presence an extractor (any
//! `FromRequestParts<S>` type) whose value converts into an [`Identity`]:
//! who the user is, which login, which scopes the user is seen in and may
//! watch. When the extractor rejects, presence answers 401, or passes on
//! the extractor's own answer if it is a server error (a 503 while the host
//! cannot verify logins: clients retry instead of giving up).
//!
//! Every presence route starts with the extractor [`Admitted`]: the page's
//! origin ([`AllowedOrigins`], 403), then the host's extractor (401 or
//! 503), each refusal a JSON [`Refusal`]. A host may put it on its own
//! routes too.
//!
//! ```
//! use axum::extract::{FromRef, FromRequestParts};
//! use axum::http::{StatusCode, request::Parts};
//! use axum::{Router, routing::get};
//! use presence_axum::{AllowedOrigins, Identity, PresenceRoutes};
//! use presence_core::Presence;
//!
//! /// The host's state, with its own sessions.
//! #[derive(Clone)]
//! struct AppState {
//!     logins: Logins,
//! }
//!
//! /// Cookie value → (user, org); a real app keeps this in its session store.
//! #[derive(Clone, Default)]
//! struct Logins(std::sync::Arc<dashmap::DashMap<String, (String, String)>>);
//!
//! impl FromRef<AppState> for Logins {
//!     fn from_ref(state: &AppState) -> Self {
//!         state.logins.clone()
//!     }
//! }
//!
//! /// The signed-in user, from the `sid` cookie.
//! struct CurrentUser {
//!     login: String,
//!     user: String,
//!     org: String,
//! }
//!
//! impl<S: Send + Sync> FromRequestParts<S> for CurrentUser
//! where
//!     Logins: FromRef<S>,
//! {
//!     type Rejection = StatusCode;
//!
//!     async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, StatusCode> {
//!         let cookies = parts.headers.get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
//!         let sid = cookies
//!             .split(';')
//!             .find_map(|c| c.trim().strip_prefix("sid="))
//!             .ok_or(StatusCode::UNAUTHORIZED)?;
//!         let logins = Logins::from_ref(state);
//!         let entry = logins.0.get(sid).ok_or(StatusCode::UNAUTHORIZED)?;
//!         let (user, org) = entry.value().clone();
//!         Ok(CurrentUser { login: sid.to_owned(), user, org })
//!     }
//! }
//!
//! impl From<CurrentUser> for Identity {
//!     fn from(me: CurrentUser) -> Identity {
//!         // Seen in, and watching, the user's organisation.
//!         Identity::new(me.user, me.login).in_scope(me.org)
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let presence = Presence::builder().build().await?;
//! let routes = PresenceRoutes::<CurrentUser>::new(presence)
//!     .allowed_origins(AllowedOrigins::same_origin().allow("https://app.example.com"));
//! let state = AppState { logins: Logins::default() };
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "dashboard" }))
//!     .merge(routes.router())
//!     .layer(routes.activity_layer(state.clone()))
//!     .with_state(state);
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = {
//!     let routes = routes.clone();
//!     async move {
//!         # let signal = std::future::ready(());
//!         signal.await; // e.g. tokio::signal::ctrl_c()
//!         routes.shutdown(std::time::Duration::from_secs(5)).await; // 1001 to every socket
//!     }
//! };
//! axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A bearer token works the same way: the extractor reads
//! `Authorization: Bearer …` instead of the cookie, and the token is the
//! login id:
//!
//! ```
//! # use axum::http::{StatusCode, request::Parts};
//! # use axum::extract::FromRequestParts;
//! # use presence_axum::Identity;
//! struct TokenUser { token: String, user: String, org: String }
//!
//! impl<S: Send + Sync> FromRequestParts<S> for TokenUser {
//!     type Rejection = StatusCode;
//!
//!     async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
//!         let token = parts
//!             .headers
//!             .get("authorization")
//!             .and_then(|v| v.to_str().ok())
//!             .and_then(|v| v.strip_prefix("Bearer "))
//!             .ok_or(StatusCode::UNAUTHORIZED)?;
//!         // Look the token up in the app's token store here.
//!         let (user, org) = lookup(token).ok_or(StatusCode::UNAUTHORIZED)?;
//!         Ok(TokenUser { token: token.to_owned(), user, org })
//!     }
//! }
//! # fn lookup(_: &str) -> Option<(String, String)> { None }
//!
//! impl From<TokenUser> for Identity {
//!     fn from(me: TokenUser) -> Identity {
//!         Identity::new(me.user, me.token).in_scope(me.org)
//!     }
//! }
//! ```
//!
//! Browsers cannot set headers on a WebSocket, so a token client passes it
//! the way the host's extractor expects (a cookie, or a query parameter the
//! extractor reads).
//!
//! # Login and logout
//!
//! The host's login handler calls [`login()`] (the user is `ONLINE` at once);
//! its logout handler forgets the login, then calls [`logout()`]: that
//! login's sessions end with no linger and its sockets close with 1000.
//!
//! # The socket
//!
//! One session per socket. The server sends `hello`, then a `snapshot` of
//! each scope in [`Identity::watch_on_connect`], then `presence` events of
//! watched scopes; it answers `heartbeat` with `pong` and applies
//! `activity`, `status_change` (manual and custom status, the caller's own
//! user only), `set_state` (the socket's own session's app state, rate
//! limited), `privacy` (hide last seen) and `subscribe`/`unsubscribe`
//! (scopes in [`Identity::may_watch`] only; `counts` for `occupancy` frames
//! while a scope is large). The host names the kind of client a socket is
//! with [`Identity::kind`] (watchers see `devices`). `GET
//! /presence/members` lists a scope page by page. Bad
//! messages get an `error` frame with a stable code
//! ([`ProtocolError::code`]) and change nothing. Closes: 1009 for a frame
//! over [`SocketSettings::max_message_bytes`] (4 KiB); 1008 after a flood
//! ([`FloodLimit`]); [`CLOSE_SESSION_LAPSED`] when heartbeats lapse
//! (`session_ttl`); 1000 "logged out" on logout; 1001 on shutdown.
//!
//! Each socket is one task: it applies the client's frames and writes what
//! its subscription delivers. Fan-out never waits for a socket: a
//! subscriber that falls behind is told it lagged and the socket sends
//! fresh snapshots; a socket whose write does not complete within
//! [`SocketSettings::send_timeout`] (a client that stopped reading) is
//! dropped. An event's frame is encoded once and shared by every socket
//! that sends it.
//!
//! # Batches
//!
//! The events of a busy scope reach the socket in batches (see
//! `presence_core::Subscription`: a quiet scope's event is sent at once, a scope
//! that changes faster than the batch interval has its events gathered and
//! sent once per interval). A client that opens the socket with `?batch=1`
//! on its URL (`/ws/presence?batch=1`) receives each batch as
//! `presence_batch` frames:
//! `{"type":"presence_batch","scope":"S","events":[{"user_id":"…","status":"AWAY","last_seen":"…","v":8},…]}`,
//! each entry what a `presence` frame would say, in order; a large batch
//! comes as several such frames. Any other client receives plain
//! `presence` frames, back to back, exactly as docs/protocol.md#batches describes. The
//! shipped client asks for batches.
//!
//! # The browser client
//!
//! `GET /presence/client.js` serves [`CLIENT_JS`]: include it with
//! `<script src="/presence/client.js" data-autoconnect></script>` and every
//! element `[data-user-id="ID"] .status-dot` gets a live `data-status`,
//! every `.last-seen` a live relative time. Its TypeScript definitions,
//! [`CLIENT_DTS`], are served beside it: `GET /presence/presence.d.ts`.
//!
//! # Metrics
//!
//! With the cargo feature `metrics` (off by default; it turns on
//! `presence-core`'s), the sockets record how many are open, the frames
//! received, the `error` frames sent, the closes by code and the lag from
//! each event to its write, next to the core's metrics. The sockets'
//! names are in [`metrics`], the core's in `presence_core::metrics`; call
//! both `describe` functions once the recorder is installed.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod admitted;
mod client;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http_routes;
mod identity;
mod layer;
mod login;
pub mod metrics;
mod origin;
mod protocol;
mod reply;
mod routes;
mod settings;
mod socket;
mod throttle;

pub use admitted::Admitted;
pub use client::{CLIENT_DTS, CLIENT_JS};
pub use identity::Identity;
pub use layer::{ActivityLayer, ActivityService};
pub use login::{login, logout};
pub use origin::AllowedOrigins;
pub use protocol::{ClientMessage, ProtocolError, ServerMessage, decode};
pub use reply::Refusal;
pub use routes::PresenceRoutes;
pub use settings::SocketSettings;
pub use socket::{CLOSE_SESSION_LAPSED, CLOSE_SESSION_REPLACED};
pub use throttle::FloodLimit;

/// The README's example, compiled (and run unless `no_run`) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
