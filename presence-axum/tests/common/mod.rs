//! A real axum app with presence mounted, served on 127.0.0.1:0, and a real
//! WebSocket client to drive it.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use presence_axum::{Admitted, AllowedOrigins, Identity, PresenceRoutes, SocketSettings};
use presence_core::{ManualClock, Presence, PresenceBuilder, PresenceConfig, SessionKind};
use presence_store_tests::helpers::{WAIT, test_config};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What a token signs in: (user, org, session kind).
pub type Login = (String, String, Option<String>);

/// token → its login
#[derive(Clone, Default)]
pub struct Tokens(pub Arc<DashMap<String, Login>>);

#[derive(Clone)]
pub struct AppState {
    pub tokens: Tokens,
    pub presence: Presence,
}

impl FromRef<AppState> for Tokens {
    fn from_ref(state: &AppState) -> Self {
        state.tokens.clone()
    }
}

/// The test app's auth: `Authorization: Bearer TOKEN`.
pub struct BearerUser {
    pub token: String,
    pub user: String,
    pub org: String,
    /// The kind of client this login is (`mobile`, …), if the test said.
    pub kind: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for BearerUser
where
    Tokens: FromRef<S>,
{
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, StatusCode> {
        let token = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        // A host that cannot tell right now (its session store is down).
        if token == UNVERIFIABLE {
            return Err(StatusCode::SERVICE_UNAVAILABLE);
        }
        let tokens = Tokens::from_ref(state);
        let (user, org, kind) = tokens.0.get(token).ok_or(StatusCode::UNAUTHORIZED)?.clone();
        Ok(BearerUser {
            token: token.to_owned(),
            user,
            org,
            kind,
        })
    }
}

impl From<BearerUser> for Identity {
    fn from(me: BearerUser) -> Identity {
        let identity = Identity::new(me.user, me.token)
            .in_scope(me.org)
            .may_watch("lobby");
        match me.kind {
            Some(kind) => identity.kind(SessionKind::new(kind).expect("a valid kind")),
            None => identity,
        }
    }
}

/// A bearer token the test host cannot verify: it rejects it with 503.
pub const UNVERIFIABLE: &str = "unverifiable";

/// The tests' thresholds, AWAY after 120 s (what the tests of idleness
/// count on).
pub fn config() -> PresenceConfig {
    PresenceConfig {
        away_after: Duration::from_secs(120),
        ..test_config()
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    pub presence: Presence,
    pub routes: PresenceRoutes<BearerUser>,
    pub tokens: Tokens,
    pub http: reqwest::Client,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(SocketSettings::default()).await
    }

    pub async fn start_with(settings: SocketSettings) -> Self {
        Self::start_tuned(settings, |builder| builder).await
    }

    /// A server whose service the test configures further.
    pub async fn start_tuned(
        settings: SocketSettings,
        tune: impl FnOnce(PresenceBuilder) -> PresenceBuilder,
    ) -> Self {
        let clock = Arc::new(ManualClock::default());
        let presence = tune(Presence::builder().clock(clock.clone()).config(config()))
            .build()
            .await
            .expect("presence");
        let routes = PresenceRoutes::<BearerUser>::new(presence.clone())
            .allowed_origins(AllowedOrigins::same_origin().allow("https://app.example.com"))
            .socket_settings(settings);
        let tokens = Tokens::default();
        let state = AppState {
            tokens: tokens.clone(),
            presence: presence.clone(),
        };
        let app = Router::new()
            .route("/", get(|| async { "dashboard" }))
            .route("/logout", post(logout))
            .route("/me", get(me))
            .merge(routes.router())
            .layer(routes.activity_layer(state.clone()))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            addr,
            clock,
            presence,
            routes,
            tokens,
            http: reqwest::Client::new(),
        }
    }

    /// Signs `user` of `org` in and returns the bearer token of this login.
    pub fn token(&self, user: &str, org: &str) -> String {
        let token = format!("{user}-{}", uuid_like());
        self.tokens
            .0
            .insert(token.clone(), (user.to_owned(), org.to_owned(), None));
        token
    }

    /// Signs `user` of `org` in on a client of `kind` (`web`, `mobile`…):
    /// the sockets of this login open sessions of that kind.
    pub fn token_of_kind(&self, user: &str, org: &str, kind: &str) -> String {
        let token = format!("{user}-{kind}-{}", uuid_like());
        self.tokens.0.insert(
            token.clone(),
            (user.to_owned(), org.to_owned(), Some(kind.to_owned())),
        );
        token
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn connect(&self, token: &str) -> Client {
        self.try_connect(Some(token), None)
            .await
            .expect("the upgrade is accepted")
    }

    /// A socket opened with `?batch=1`: busy scopes come as
    /// `presence_batch` frames.
    pub async fn connect_batched(&self, token: &str) -> Client {
        self.try_connect_to("/ws/presence?batch=1", Some(token), None)
            .await
            .expect("the upgrade is accepted")
    }

    pub async fn try_connect(
        &self,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        self.try_connect_to("/ws/presence", token, origin).await
    }

    pub async fn try_connect_to(
        &self,
        path: &str,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        let mut request = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .expect("request");
        if let Some(token) = token {
            request.headers_mut().insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().expect("header"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Client { ws })
    }

    /// Moves the presence clock on and applies what falls due.
    pub async fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
        self.presence.run_due().await.expect("sweep");
    }
}

/// Opens a session of alice in acme (v1, ONLINE), then flips her status
/// `flips` times as fast as the service goes: a busy scope. Returns her
/// last version.
pub async fn busy_alice(server: &Server, flips: u64) -> (presence_core::SessionHandle, u64) {
    let alice = presence_core::UserId::from("alice");
    let tab = server
        .presence
        .open_session(presence_core::SessionSpec::new("alice", "l").scope("acme"))
        .await
        .expect("open");
    for n in 0..flips {
        let status = if n % 2 == 0 {
            presence_core::RequestedStatus::Busy
        } else {
            presence_core::RequestedStatus::Online
        };
        server
            .presence
            .set_status(&alice, status, None)
            .await
            .expect("set");
    }
    (tab, flips + 1)
}

/// A route of the app's own behind presence's checks: who is signed in.
async fn me(Admitted { identity, .. }: Admitted<BearerUser>) -> String {
    identity.user.to_string()
}

/// The app's logout handler: forget the login, then tell presence.
async fn logout(
    axum::extract::State(state): axum::extract::State<AppState>,
    me: BearerUser,
) -> StatusCode {
    state.tokens.0.remove(&me.token);
    let identity: Identity = me.into();
    presence_axum::logout(&state.presence, &identity)
        .await
        .expect("logout");
    StatusCode::NO_CONTENT
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next JSON frame.
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).expect("JSON from the server");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Frames until one for which `done` holds; returns them all, that
    /// one last.
    pub async fn until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let last = done(&frame);
            frames.push(frame);
            if last {
                return frames;
            }
        }
    }

    /// The next frame, which must be of `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let frame = self.next().await;
        assert_eq!(frame["type"], kind, "unexpected frame {frame}");
        frame
    }

    /// Reads `hello` and the snapshot of the user's org.
    pub async fn handshake(&mut self) -> (Value, Value) {
        let hello = self.expect("hello").await;
        let snapshot = self.expect("snapshot").await;
        (hello, snapshot)
    }

    /// The next error frame's code.
    pub async fn error_code(&mut self) -> String {
        let frame = self.expect("error").await;
        frame["code"].as_str().expect("a code").to_owned()
    }

    /// Asserts that nothing arrives for a while.
    pub async fn quiet(&mut self, millis: u64) {
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(millis), self.ws.next()).await
        {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Heartbeat round trip: proves the connection still usable.
    pub async fn ping(&mut self) {
        self.send(serde_json::json!({"type": "heartbeat"})).await;
        self.expect("pong").await;
    }

    /// Heartbeat round trip past the `presence` and `occupancy` frames
    /// that may come first (a user watching their own scope).
    pub async fn pong(&mut self) {
        self.send(serde_json::json!({"type": "heartbeat"})).await;
        for frame in self.until(|frame| frame["type"] == "pong").await {
            assert!(
                matches!(
                    frame["type"].as_str(),
                    Some("pong" | "presence" | "occupancy")
                ),
                "unexpected frame {frame}"
            );
        }
    }

    /// Activity and a heartbeat round trip: a watcher that stays ONLINE.
    pub async fn stay_active(&mut self) {
        self.send(serde_json::json!({"type": "activity"})).await;
        self.ping().await;
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close in time");
            match frame {
                Some(Ok(Message::Close(Some(close)))) => {
                    return (u16::from(close.code), close.reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

/// A presence frame's (user, status, v).
pub fn change(frame: &Value) -> (String, String, u64) {
    assert_eq!(frame["type"], "presence", "unexpected frame {frame}");
    (
        frame["user_id"].as_str().expect("user").to_owned(),
        frame["status"].as_str().expect("status").to_owned(),
        frame["v"].as_u64().expect("v"),
    )
}

/// The (user, status, v) of every change a `presence` or `presence_batch`
/// frame carries, in order.
pub fn changes(frame: &Value) -> Vec<(String, String, u64)> {
    match frame["type"].as_str() {
        Some("presence") => vec![change(frame)],
        Some("presence_batch") => frame["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|entry| {
                (
                    entry["user_id"].as_str().expect("user").to_owned(),
                    entry["status"].as_str().expect("status").to_owned(),
                    entry["v"].as_u64().expect("v"),
                )
            })
            .collect(),
        _ => panic!("expected a presence or presence_batch frame, got {frame}"),
    }
}

pub fn ev(user: &str, status: &str, v: u64) -> (String, String, u64) {
    (user.to_owned(), status.to_owned(), v)
}
