//! The baselines: a bare axum WebSocket server with presence's buffer
//! settings (the same as socket-memory's bare server) that speaks just
//! enough of the protocol for the same clients to drive it:
//!
//! - `POST /api/login` answers a token that is the user and org;
//! - `/ws/presence` with `Authorization: Bearer` sends `hello`, answers
//!   `heartbeat` with `pong`, and otherwise only holds the socket (`bare`);
//! - `broadcast` also turns each `status_change` into a presence frame of
//!   the same shape and size as presence's, sent to every socket through
//!   one tokio `broadcast` channel: fan-out with no presence logic at all.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use chrono::{SecondsFormat, Utc};
use presence_axum::SocketSettings;
use tokio::sync::broadcast;

use crate::Error;
use crate::token::{self, Credentials};

#[derive(Clone)]
struct Bare {
    fan_out: bool,
    frames: broadcast::Sender<Utf8Bytes>,
    versions: Arc<Mutex<HashMap<String, u64>>>,
}

/// Runs the baseline server until killed; prints its address first.
pub(crate) async fn serve(kind: &str) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let state = Bare {
        fan_out: kind == "broadcast",
        frames: broadcast::channel(4096).0,
        versions: Arc::default(),
    };
    let app = Router::new()
        .route("/api/login", post(login))
        .route("/ws/presence", any(upgrade))
        .with_state(state);
    println!(
        "presence-load {kind} listening on http://{}",
        listener.local_addr()?
    );
    std::io::stdout().flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn login(body: String) -> Response {
    match Credentials::parse(&body) {
        Some(credentials) => credentials.token_response(),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

async fn upgrade(
    State(state): State<Bare>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some((user, org)) = token::bearer(&headers).map(|(u, o)| (u.to_owned(), o.to_owned()))
    else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let settings = SocketSettings::default();
    upgrade
        .read_buffer_size(settings.read_buffer_bytes)
        .write_buffer_size(settings.write_buffer_bytes)
        .max_write_buffer_size(
            settings
                .max_write_buffer_bytes
                .max(settings.max_message_bytes * 2),
        )
        .max_message_size(settings.max_message_bytes)
        .max_frame_size(settings.max_message_bytes)
        .on_upgrade(move |socket| hold(state, user, org, socket))
}

async fn hold(state: Bare, user: String, org: String, mut socket: WebSocket) {
    let hello = format!(
        r#"{{"type":"hello","session_id":"bare-{user}","user_id":"{user}","heartbeat_interval_ms":30000,"epoch":"bare"}}"#
    );
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let mut frames = state.fan_out.then(|| state.frames.subscribe());
    loop {
        let delivery = async {
            match &mut frames {
                Some(frames) => Some(frames.recv().await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = socket.recv() => {
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                if text.as_str().contains(r#""type":"heartbeat""#) {
                    if socket.send(Message::Text(Utf8Bytes::from_static(r#"{"type":"pong"}"#))).await.is_err() {
                        return;
                    }
                } else if state.fan_out
                    && let Some(status) = status_of(text.as_str())
                {
                    let v = {
                        let mut versions = state.versions.lock().unwrap_or_else(|e| e.into_inner());
                        let v = versions.entry(user.clone()).or_insert(0);
                        *v += 1;
                        *v
                    };
                    let last_seen = Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true);
                    let frame = format!(
                        r#"{{"type":"presence","scope":"{org}","user_id":"{user}","status":"{status}","last_seen":"{last_seen}","v":{v}}}"#
                    );
                    let _ = state.frames.send(frame.into());
                }
            }
            Some(delivery) = delivery => match delivery {
                Ok(frame) => {
                    if socket.send(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// The status of a `status_change` message.
fn status_of(text: &str) -> Option<&str> {
    if !text.contains(r#""type":"status_change""#) {
        return None;
    }
    let (_, rest) = text.split_once(r#""status":""#)?;
    rest.split_once('"').map(|(status, _)| status)
}
