//! The demo as a child process, and a client of its API and socket.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The demo's binary, built by cargo for these tests.
pub const DEMO: &str = env!("CARGO_BIN_EXE_presence-demo");

/// A client socket of the demo.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running demo, killed when dropped.
pub struct Demo {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl Demo {
    /// Starts the demo on a free port with `env` (and no metrics unless
    /// `env` asks), once it says where it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(DEMO)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env_remove("PRESENCE_METRICS")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the demo starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the listening line");
        let base = line
            .trim()
            .strip_prefix("presence-demo listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self { child, base }
    }

    /// Sends SIGTERM (a graceful shutdown).
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Logs `name` of `org` in through the JSON API; the bearer token.
    pub async fn login(&self, name: &str, org: &str) -> String {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/api/login", self.base))
            .json(&json!({"username": name, "org": org}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Opens the presence socket with a bearer token.
    pub async fn connect(&self, token: &str) -> Socket {
        let mut request = format!("{}/ws/presence", self.base.replace("http://", "ws://"))
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade");
        socket
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next frame, a JSON text frame within 5 s.
pub async fn next_json(socket: &mut Socket) -> Value {
    let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a frame in time");
    match frame {
        Some(Ok(Message::Text(text))) => serde_json::from_str(text.as_str()).expect("json"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}
