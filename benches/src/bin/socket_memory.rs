//! Memory of idle presence sockets (P5 of issue 7): the server's RSS growth
//! per socket with N idle presence WebSockets open, against a bare axum
//! WebSocket that only holds the socket with the same buffer settings, both
//! measured in the same run.
//!
//! `cargo run --release -p presence-benches --bin socket-memory -- 5000`
//!
//! Each server runs in a child process (this binary with `--serve KIND`), so
//! the clients' own memory is not counted.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::any;
use futures_util::StreamExt;
use presence_axum::{Identity, PresenceRoutes, SocketSettings};
use presence_core::Presence;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(kind) = args
        .iter()
        .position(|a| a == "--serve")
        .and_then(|i| args.get(i + 1))
    {
        return serve(kind).await;
    }
    let sockets: usize = args.get(1).map(|n| n.parse()).transpose()?.unwrap_or(5_000);
    println!("{sockets} idle sockets per server");
    let bare = measure("bare", sockets).await?;
    let presence = measure("presence", sockets).await?;
    println!(
        "per socket: bare {:.1} KiB, presence {:.1} KiB, presence/bare {:.2}x",
        bare / 1024.0,
        presence / 1024.0,
        presence / bare
    );
    Ok(())
}

/// Bytes of server RSS per open socket.
async fn measure(kind: &str, sockets: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--serve", kind])
        .stdout(Stdio::piped())
        .spawn()?;
    let addr = {
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        line.trim().to_owned()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes(&child)?;
    let mut clients = Vec::with_capacity(sockets);
    for n in 0..sockets {
        let mut request = format!("ws://{addr}/ws/presence").into_client_request()?;
        request
            .headers_mut()
            .insert("x-user", format!("user-{n}").parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        if kind == "presence" {
            // hello and the snapshot of the user's own scope
            for _ in 0..2 {
                socket.next().await.ok_or("closed early")??;
            }
        }
        clients.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_bytes(&child)?;
    let per_socket = (after.saturating_sub(before)) as f64 / sockets as f64;
    println!(
        "{kind:>8}: RSS {:.1} MiB -> {:.1} MiB with {sockets} sockets: {:.1} KiB/socket",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per_socket / 1024.0
    );
    drop(clients);
    child.kill()?;
    child.wait()?;
    Ok(per_socket)
}

fn rss_bytes(child: &Child) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("no VmRSS")?
        .parse::<u64>()?;
    Ok(kib * 1024)
}

async fn serve(kind: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    let app = match kind {
        "bare" => bare_app(),
        _ => presence_app().await?,
    };
    axum::serve(listener, app).await?;
    Ok(())
}

/// Holds the socket and nothing else, with presence's buffer settings.
fn bare_app() -> Router {
    let settings = SocketSettings::default();
    Router::new().route(
        "/ws/presence",
        any(move |upgrade: WebSocketUpgrade| async move {
            upgrade
                .read_buffer_size(settings.read_buffer_bytes)
                .write_buffer_size(settings.write_buffer_bytes)
                .max_write_buffer_size(settings.max_write_buffer_bytes)
                .max_message_size(settings.max_message_bytes)
                .max_frame_size(settings.max_message_bytes)
                .on_upgrade(hold)
        }),
    )
}

async fn hold(mut socket: WebSocket) {
    while let Some(Ok(_)) = socket.recv().await {}
}

/// Trusts an `x-user` header: a load tool, not an app.
struct HeaderUser(String);

impl<S: Send + Sync> FromRequestParts<S> for HeaderUser {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, StatusCode> {
        let user = parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .ok_or(StatusCode::UNAUTHORIZED)?;
        Ok(HeaderUser(user.to_owned()))
    }
}

impl From<HeaderUser> for Identity {
    fn from(HeaderUser(user): HeaderUser) -> Identity {
        // A scope of one: idle sockets, no fan-out between them.
        Identity::new(user.clone(), user.clone()).in_scope(user)
    }
}

async fn presence_app() -> Result<Router, Box<dyn std::error::Error>> {
    let presence = Presence::builder().build().await?;
    Ok(PresenceRoutes::<HeaderUser>::new(presence).router())
}
