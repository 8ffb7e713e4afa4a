//! One WebSocket client of the load: connect (from a loopback source
//! address of its own range, so 100k sockets do not exhaust one address's
//! ephemeral ports), authenticate with a bearer token, then read frames,
//! beat, and — for a trigger — change status on command. What it measures
//! goes to the run's `Shared`.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Interval;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::shared::Shared;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a connect may take, from the TCP handshake to the last frame
/// it waits for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Sockets per loopback source address (each has ~28k ephemeral ports).
const SOCKETS_PER_SOURCE: usize = 10_000;

/// The next source slot (see `open_tcp`).
static NEXT_SOURCE_SLOT: AtomicUsize = AtomicUsize::new(0);
/// A random first source address per process: runs one after another do
/// not share addresses (and the ports left in TIME_WAIT on them).
static SOURCE_BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// What a client does with the events it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Records the latency of events of triggering users.
    Watcher,
    /// Sends status changes on command; learns its base `v`.
    Trigger,
    /// Only holds its socket (idle sockets, joiners).
    Quiet,
}

/// A command for a trigger client.
pub(crate) enum Command {
    /// Send `status_change` to this status; it is change `slot`.
    Status(&'static str, usize),
}

/// How every client of a run connects and behaves.
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub(crate) server: SocketAddr,
    pub(crate) batch: bool,
    /// Heartbeat period (each client starts at a random offset in it).
    pub(crate) heartbeat: Option<Duration>,
    /// Activity period.
    pub(crate) activity: Option<Duration>,
    /// Whether the server sends a snapshot after hello (presence does, the
    /// bare baselines do not).
    pub(crate) snapshots: bool,
}

/// Why a connect failed, sorted for the report.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// EMFILE/ENFILE in this process: the open-files limit.
    FdLimit,
    Timeout,
    Other(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::FdLimit => f.write_str("open-files limit of the client process (EMFILE)"),
            ConnectError::Timeout => {
                f.write_str("timed out (server at its open-files limit or overloaded?)")
            }
            ConnectError::Other(why) => f.write_str(why),
        }
    }
}

fn sort_io(error: std::io::Error) -> ConnectError {
    match error.raw_os_error() {
        Some(24 | 23) => ConnectError::FdLimit,
        _ => ConnectError::Other(error.to_string()),
    }
}

/// An open, authenticated socket whose hello arrived.
pub(crate) struct Connected {
    ws: Ws,
    user: String,
    /// Snapshots the server owes after the connect (counted, not lag).
    owed_snapshots: u64,
}

/// Connects with `token`; waits for hello (and, for a trigger on a
/// presence server, the snapshot that gives its base `v`); sends
/// `subscribe` with `interest` when given.
pub(crate) async fn connect(
    config: &ClientConfig,
    token: &str,
    role: Role,
    interest: Option<(&str, &[String])>,
    shared: &Shared,
) -> Result<Connected, ConnectError> {
    let handshake = async {
        let stream = open_tcp(config.server).await?;
        let mut ws = upgrade(config, token, stream).await?;
        let user = read_hello(&mut ws, shared).await?;
        let mut owed_snapshots = u64::from(config.snapshots);
        if role == Role::Trigger && config.snapshots {
            read_base_v(&mut ws, &user, shared).await?;
            owed_snapshots = 0;
        }
        if let Some((scope, users)) = interest {
            let subscribe =
                serde_json::json!({"type": "subscribe", "scope": scope, "user_ids": users});
            ws.send(Message::Text(subscribe.to_string().into()))
                .await
                .map_err(|e| ConnectError::Other(e.to_string()))?;
            owed_snapshots += 1;
        }
        Ok(Connected {
            ws,
            user,
            owed_snapshots,
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

/// A TCP connection to `server` from the next loopback source slot.
async fn open_tcp(server: SocketAddr) -> Result<TcpStream, ConnectError> {
    // Every connection of this process gets the next slot, so a later run
    // does not meet the ports an earlier one left in TIME_WAIT.
    let slot = NEXT_SOURCE_SLOT.fetch_add(1, Relaxed);
    let base = *SOURCE_BASE.get_or_init(|| fastrand::usize(..250));
    let source = u8::try_from(2 + (base + slot / SOCKETS_PER_SOURCE) % 250).unwrap_or(2);
    let socket = TcpSocket::new_v4().map_err(sort_io)?;
    socket.set_reuseaddr(true).map_err(sort_io)?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)))
        .map_err(sort_io)?;
    let stream = socket.connect(server).await.map_err(sort_io)?;
    stream.set_nodelay(true).map_err(sort_io)?;
    Ok(stream)
}

/// The WebSocket upgrade of `stream`, authenticated with `token`.
async fn upgrade(
    config: &ClientConfig,
    token: &str,
    stream: TcpStream,
) -> Result<Ws, ConnectError> {
    let path = if config.batch {
        "/ws/presence?batch=1"
    } else {
        "/ws/presence"
    };
    let mut request = format!("ws://{}{path}", config.server)
        .into_client_request()
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| ConnectError::Other("bad token".into()))?,
    );
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(None)
        .max_frame_size(None);
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(ws_config),
    )
    .await
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Io(io) => sort_io(io),
        other => ConnectError::Other(other.to_string()),
    })?;
    Ok(ws)
}

/// Reads the first frame, which must be `hello`; its user id.
async fn read_hello(ws: &mut Ws, shared: &Shared) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                shared.frames.fetch_add(1, Relaxed);
                let frame: Frame<'_> = serde_json::from_str(text.as_str())
                    .map_err(|e| ConnectError::Other(format!("bad first frame: {e}")))?;
                if frame.kind == "hello" {
                    return Ok(frame.user_id.unwrap_or_default().to_owned());
                }
                return Err(ConnectError::Other(format!(
                    "first frame not hello: {}",
                    clip(&text)
                )));
            }
            Some(Ok(Message::Close(close))) => {
                return Err(ConnectError::Other(format!(
                    "closed before hello: {close:?}"
                )));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ConnectError::Other(e.to_string())),
            None => return Err(ConnectError::Other("closed before hello".into())),
        }
    }
}

/// Reads up to the snapshot of the trigger's scope and stores `user`'s
/// entry in it as the base `v` of its changes.
async fn read_base_v(ws: &mut Ws, user: &str, shared: &Shared) -> Result<(), ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                shared.frames.fetch_add(1, Relaxed);
                let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
                    continue;
                };
                if frame.kind == "snapshot" {
                    let v = frame
                        .users
                        .iter()
                        .flatten()
                        .find(|u| u.user_id == user)
                        .map_or(0, |u| u.v);
                    shared.set_base_v(user, v);
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            _ => return Err(ConnectError::Other("closed before its snapshot".into())),
        }
    }
}

fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    user_id: Option<&'a str>,
    #[serde(default, borrow)]
    status: Option<&'a str>,
    #[serde(default)]
    v: Option<u64>,
    #[serde(default, borrow)]
    users: Option<Vec<SnapshotUser<'a>>>,
    #[serde(default, borrow)]
    events: Option<Vec<BatchEvent<'a>>>,
}

#[derive(Deserialize)]
struct SnapshotUser<'a> {
    #[serde(borrow)]
    user_id: &'a str,
    #[serde(default)]
    v: u64,
}

#[derive(Deserialize)]
struct BatchEvent<'a> {
    #[serde(borrow)]
    user_id: &'a str,
    #[serde(borrow)]
    status: &'a str,
    #[serde(default)]
    v: u64,
}

/// Runs a connected client until its socket ends or the task is aborted.
pub(crate) async fn run(
    connected: Connected,
    role: Role,
    config: ClientConfig,
    shared: Arc<Shared>,
    mut commands: Option<mpsc::Receiver<Command>>,
) {
    let Connected {
        mut ws,
        user,
        mut owed_snapshots,
    } = connected;
    let start = tokio::time::Instant::now();
    let mut beat = config.heartbeat.map(|period| staggered(start, period));
    let mut act = config.activity.map(|period| staggered(start, period));
    loop {
        let beat_tick = tick(&mut beat);
        let act_tick = tick(&mut act);
        let command = async {
            match &mut commands {
                Some(commands) => commands.recv().await,
                None => std::future::pending().await,
            }
        };
        let outgoing: Option<String> = tokio::select! {
            frame = ws.next() => {
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        on_text(text.as_str(), role, &shared, &mut owed_snapshots);
                        None
                    }
                    Some(Ok(Message::Close(close))) => {
                        let reason = close.map_or_else(|| "close without code".to_owned(), |c| format!("close {} {}", u16::from(c.code), c.reason));
                        shared.note_close(reason);
                        return;
                    }
                    Some(Ok(_)) => None,
                    Some(Err(e)) => {
                        shared.note_close(format!("error: {e}"));
                        return;
                    }
                    None => {
                        shared.note_close("ended".into());
                        return;
                    }
                }
            }
            _ = beat_tick => Some(r#"{"type":"heartbeat"}"#.to_owned()),
            _ = act_tick => Some(r#"{"type":"activity"}"#.to_owned()),
            command = command => match command {
                Some(Command::Status(status, slot)) => {
                    shared.mark_sent(&user, slot);
                    Some(format!(r#"{{"type":"status_change","status":"{status}"}}"#))
                }
                None => {
                    commands = None;
                    None
                }
            },
        };
        if let Some(text) = outgoing
            && let Err(e) = ws.send(Message::Text(text.into())).await
        {
            shared.note_close(format!("send error: {e}"));
            return;
        }
    }
}

/// An interval of `period` that starts at a random offset within a period
/// after `start`, so the clients of a run do not all send at once.
fn staggered(start: tokio::time::Instant, period: Duration) -> Interval {
    let offset = period.mul_f64(fastrand::f64());
    tokio::time::interval_at(start + offset, period)
}

/// The next tick of `interval`; never, without one.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn on_text(text: &str, role: Role, shared: &Shared, owed_snapshots: &mut u64) {
    shared.frames.fetch_add(1, Relaxed);
    if text.starts_with(r#"{"type":"snapshot""#) {
        if *owed_snapshots > 0 {
            *owed_snapshots -= 1;
        } else {
            shared.resnapshots.fetch_add(1, Relaxed);
        }
        return;
    }
    if text.starts_with(r#"{"type":"pong""#) {
        return;
    }
    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
        shared.error_frames.fetch_add(1, Relaxed);
        return;
    };
    match frame.kind {
        "presence" if role == Role::Watcher => {
            shared.on_event(
                frame.user_id.unwrap_or_default(),
                frame.status.unwrap_or_default(),
                frame.v.unwrap_or(0),
            );
        }
        "presence_batch" => {
            shared.batches.fetch_add(1, Relaxed);
            if role == Role::Watcher {
                for event in frame.events.iter().flatten() {
                    shared.on_event(event.user_id, event.status, event.v);
                }
            }
        }
        "error" => {
            shared.error_frames.fetch_add(1, Relaxed);
        }
        _ => {}
    }
}
