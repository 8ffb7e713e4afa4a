//! The demo as an attacker reaches it: upgrades with chosen headers, HTTP
//! requests with chosen credentials, and what the server did after one
//! frame.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::common::{Demo, Socket, next_json};

/// Longest wait for the server's answer to one frame.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// The socket's URL.
pub(crate) fn socket_url(demo: &Demo) -> String {
    format!("{}/ws/presence", demo.base.replace("http://", "ws://"))
}

/// Opens the socket with exactly these extra headers: the socket, or the
/// HTTP status the upgrade was refused with.
pub(crate) async fn upgrade(demo: &Demo, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    let mut request = socket_url(demo).into_client_request().expect("a request");
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            value.parse().expect("a header value"),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("the upgrade failed below HTTP: {other}"),
    }
}

/// Opens the socket of `token`, past its `hello` and the snapshot of the
/// user's organisation.
pub(crate) async fn open(demo: &Demo, token: &str) -> Socket {
    let mut socket = demo.connect(token).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello");
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");
    socket
}

/// What the server did after a frame.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A text frame (other than a `presence` event).
    Frame(Value),
    /// A close frame with this code.
    Closed(u16),
    /// The connection ended without a close code.
    Dropped,
    /// Nothing within [`ANSWER_WITHIN`].
    Silent,
}

/// The server's next answer, skipping `presence` events (they answer
/// nothing the client sent).
pub(crate) async fn answer(socket: &mut Socket) -> Answer {
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, socket.next()).await else {
            return Answer::Silent;
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                let value: Value =
                    serde_json::from_str(text.as_str()).expect("JSON from the server");
                if value["type"] != "presence" {
                    return Answer::Frame(value);
                }
            }
            Some(Ok(Message::Close(Some(close)))) => return Answer::Closed(close.code.into()),
            Some(Ok(Message::Close(None)) | Err(_)) | None => return Answer::Dropped,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => panic!("the server sent {other:?}"),
        }
    }
}

/// The code `socket` is closed with, skipping whatever comes before the
/// close.
pub(crate) async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match answer(socket).await {
            Answer::Frame(_) => {}
            Answer::Closed(code) => return Some(code),
            Answer::Dropped | Answer::Silent => return None,
        }
    }
}

/// Sends `text` and expects an `error` frame: its code.
pub(crate) async fn refused(socket: &mut Socket, text: &str) -> String {
    socket
        .send(Message::text(text))
        .await
        .expect("the frame is sent");
    match answer(socket).await {
        Answer::Frame(frame) if frame["type"] == "error" => {
            frame["code"].as_str().expect("a code").to_owned()
        }
        other => panic!("{text}: expected an error frame, got {other:?}"),
    }
}

/// A heartbeat's round trip.
pub(crate) async fn round_trip(socket: &mut Socket) -> Duration {
    let sent = Instant::now();
    socket
        .send(Message::text(r#"{"type":"heartbeat"}"#))
        .await
        .expect("the heartbeat is sent");
    match answer(socket).await {
        Answer::Frame(frame) if frame["type"] == "pong" => sent.elapsed(),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// `GET /api/presence?{query}` as `token`: the status and the body's text.
pub(crate) async fn presence_api(demo: &Demo, token: &str, query: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/presence?{query}", demo.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("the presence API answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// `user`'s entry in the snapshot of `scope` as `token` sees it.
pub(crate) async fn status_in(demo: &Demo, token: &str, scope: &str, user: &str) -> Value {
    let (status, body) = presence_api(demo, token, &format!("scope={scope}&user_ids={user}")).await;
    assert_eq!(status, 200, "{body}");
    let snapshot: Value = serde_json::from_str(&body).expect("JSON");
    snapshot["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["user_id"] == user))
        .cloned()
        .unwrap_or_else(|| panic!("{user} missing from {snapshot}"))
}

/// The server is still whole: a new login, socket and heartbeat work, the
/// presence API answers, and the process lives.
pub(crate) async fn assert_healthy(demo: &mut Demo, name: &str) {
    assert!(
        demo.child.try_wait().expect("the demo's state").is_none(),
        "the demo exited"
    );
    let token = demo.login(name, "health").await;
    let mut socket = open(demo, &token).await;
    round_trip(&mut socket).await;
    let (status, body) = presence_api(demo, &token, "scope=health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&name.to_ascii_lowercase()), "{body}");
}
