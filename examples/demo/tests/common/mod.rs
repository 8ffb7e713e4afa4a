//! The demo as a child process, and a client of its API and socket.
//!
//! Every demo a test starts signs its logins with the test's own random
//! `PRESENCE_DEMO_SECRET` ([`test_secret`]), so the demos of one test are
//! one cluster for logins too; a test may set its own, or remove it.

#![allow(dead_code, unreachable_pub)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The demo's binary, built by cargo for these tests.
pub const DEMO: &str = env!("CARGO_BIN_EXE_presence-demo");

thread_local! {
    /// The test's secret: libtest runs each test on a thread of its own,
    /// and tests start their demos from that thread.
    static SECRET: String = (0..40).map(|_| fastrand::alphanumeric()).collect();
}

/// The random `PRESENCE_DEMO_SECRET` of the running test.
pub fn test_secret() -> String {
    SECRET.with(Clone::clone)
}

/// The demo on a free port with the test's secret, then `env` (and no
/// metrics unless `env` asks); stdout piped for [`Demo::spawn`].
pub fn demo_command(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(DEMO);
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env_remove("PRESENCE_METRICS")
        .env("PRESENCE_DEMO_SECRET", test_secret())
        .envs(env.iter().copied())
        .stdout(Stdio::piped());
    command
}

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
    /// Starts the demo ([`demo_command`] with `env`), once it says where
    /// it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut command = demo_command(env);
        command.stderr(Stdio::null());
        Self::spawn(command)
    }

    /// Starts `command` (its stdout piped), once it says where it listens.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command.spawn().expect("the demo starts");
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

    /// SIGTERM, and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.child.wait().expect("wait")
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
