//! One WebSocket client of the load: connect (from a loopback source
//! address of its own range, so 100k sockets do not exhaust one address's
//! ephemeral ports), authenticate with a bearer token, then read frames,
//! beat, and — for a trigger — change status on command.
//!
//! Latency is measured on this tool's clock only: a trigger (a status
//! change, or a joiner's login) stores the instant it was sent in a slot
//! keyed by (user, v); a watcher that receives the matching event records
//! now − sent.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Sockets per loopback source address (each has ~28k ephemeral ports).
const SOCKETS_PER_SOURCE: usize = 10_000;

/// The next source slot (see `connect`).
static NEXT_SOURCE_SLOT: AtomicUsize = AtomicUsize::new(0);
/// A random first source address per process: runs one after another do
/// not share addresses (and the ports left in TIME_WAIT on them).
static SOURCE_BASE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Latency histograms are kept per phase: the tenth of the schedule the
/// trigger belonged to, so lag growth over a run shows.
pub(crate) const PHASES: usize = 10;

/// The send instants of one triggering user's changes.
pub(crate) struct TriggerSlots {
    /// The user's `v` before its first change (learned from its snapshot);
    /// change k has v = base + 1 + k.
    base_v: AtomicU64,
    /// Match any `v` (a joiner: one ONLINE event, slot 0).
    any_v: bool,
    /// Nanoseconds since the epoch at which change k was sent (0: not yet).
    sent: Box<[AtomicU64]>,
    /// A fixed phase (joiners), else slot × PHASES / slots.
    phase: Option<usize>,
}

impl TriggerSlots {
    pub(crate) fn changes(count: usize) -> Self {
        Self {
            base_v: AtomicU64::new(0),
            any_v: false,
            sent: (0..count).map(|_| AtomicU64::new(0)).collect(),
            phase: None,
        }
    }

    pub(crate) fn joiner(phase: usize) -> Self {
        Self {
            base_v: AtomicU64::new(0),
            any_v: true,
            sent: vec![AtomicU64::new(0)].into_boxed_slice(),
            phase: Some(phase.min(PHASES - 1)),
        }
    }
}

/// What every client of one run shares.
pub(crate) struct Shared {
    pub(crate) epoch: Instant,
    /// Triggering users by user id (built before the run, read-only then).
    pub(crate) triggers: HashMap<String, TriggerSlots>,
    pub(crate) latency: Vec<Mutex<Histogram<u64>>>,
    pub(crate) delivered: AtomicU64,
    /// Events of a triggering user that match no sent change.
    pub(crate) unmatched: AtomicU64,
    /// Events of users that trigger nothing (watchers' own logins, …).
    pub(crate) other_events: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) batches: AtomicU64,
    /// Snapshots after the ones a connect or subscribe asked for: the
    /// server's answer to a lagging subscriber.
    pub(crate) resnapshots: AtomicU64,
    pub(crate) error_frames: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) last_delivery_ns: AtomicU64,
    /// Why sockets closed, counted.
    pub(crate) close_reasons: Mutex<HashMap<String, u64>>,
}

impl Shared {
    pub(crate) fn new(triggers: HashMap<String, TriggerSlots>) -> Self {
        Self {
            epoch: Instant::now(),
            triggers,
            latency: (0..PHASES)
                .map(|_| {
                    // 1 µs .. 10 min, 3 significant digits.
                    Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"))
                })
                .collect(),
            delivered: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            resnapshots: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            close_reasons: Mutex::default(),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Marks slot `slot` of `user` as sent now.
    pub(crate) fn mark_sent(&self, user: &str, slot: usize) {
        if let Some(slots) = self.triggers.get(user)
            && let Some(cell) = slots.sent.get(slot)
        {
            cell.store(self.now_ns().max(1), Relaxed);
        }
    }

    /// All phases merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for phase in &self.latency {
            let phase = phase.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&*phase);
        }
        all
    }

    fn note_close(&self, reason: String) {
        self.closed.fetch_add(1, Relaxed);
        let mut reasons = self.close_reasons.lock().unwrap_or_else(|e| e.into_inner());
        *reasons.entry(reason).or_insert(0) += 1;
    }

    fn on_event(&self, user: &str, status: &str, v: u64) {
        let Some(slots) = self.triggers.get(user) else {
            self.other_events.fetch_add(1, Relaxed);
            return;
        };
        let slot = if slots.any_v {
            if status != "ONLINE" {
                self.unmatched.fetch_add(1, Relaxed);
                return;
            }
            0
        } else {
            match v.checked_sub(slots.base_v.load(Relaxed) + 1) {
                Some(slot) => usize::try_from(slot).unwrap_or(usize::MAX),
                None => {
                    self.unmatched.fetch_add(1, Relaxed);
                    return;
                }
            }
        };
        let sent = slots.sent.get(slot).map_or(0, |cell| cell.load(Relaxed));
        if sent == 0 {
            self.unmatched.fetch_add(1, Relaxed);
            return;
        }
        let now = self.now_ns();
        let micros = (now.saturating_sub(sent) / 1000).max(1);
        let phase = slots
            .phase
            .unwrap_or_else(|| slot * PHASES / slots.sent.len().max(1));
        {
            let mut histogram = self.latency[phase.min(PHASES - 1)]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            histogram.saturating_record(micros);
        }
        self.delivered.fetch_add(1, Relaxed);
        self.last_delivery_ns.fetch_max(now, Relaxed);
    }
}

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

/// Connects client `index` with `token`; waits for hello (and, for a
/// trigger on a presence server, the snapshot that gives its base `v`);
/// sends `subscribe` with `interest` when given.
pub(crate) async fn connect(
    config: &ClientConfig,
    index: usize,
    token: &str,
    role: Role,
    interest: Option<(&str, &[String])>,
    shared: &Shared,
) -> Result<Connected, ConnectError> {
    tokio::time::timeout(
        Duration::from_secs(20),
        connect_inner(config, index, token, role, interest, shared),
    )
    .await
    .map_err(|_| ConnectError::Timeout)?
}

async fn connect_inner(
    config: &ClientConfig,
    index: usize,
    token: &str,
    role: Role,
    interest: Option<(&str, &[String])>,
    shared: &Shared,
) -> Result<Connected, ConnectError> {
    // Every connection of this process gets the next slot, so a later run
    // does not meet the ports an earlier one left in TIME_WAIT.
    let _ = index;
    let slot = NEXT_SOURCE_SLOT.fetch_add(1, Relaxed);
    let base = *SOURCE_BASE.get_or_init(|| fastrand::usize(..250));
    let source = u8::try_from(2 + (base + slot / SOCKETS_PER_SOURCE) % 250).unwrap_or(2);
    let socket = TcpSocket::new_v4().map_err(sort_io)?;
    socket.set_reuseaddr(true).map_err(sort_io)?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, source), 0)))
        .map_err(sort_io)?;
    let stream = socket.connect(config.server).await.map_err(sort_io)?;
    stream.set_nodelay(true).map_err(sort_io)?;
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
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(
        request,
        MaybeTlsStream::Plain(stream),
        Some(ws_config),
    )
    .await
    .map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Io(io) => sort_io(io),
        other => ConnectError::Other(other.to_string()),
    })?;
    let user = loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                shared.frames.fetch_add(1, Relaxed);
                let frame: Frame<'_> = serde_json::from_str(text.as_str())
                    .map_err(|e| ConnectError::Other(format!("bad first frame: {e}")))?;
                if frame.kind == "hello" {
                    break frame.user_id.unwrap_or_default().to_owned();
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
    };
    let mut owed_snapshots = u64::from(config.snapshots);
    if role == Role::Trigger && config.snapshots {
        // The base v: this user's entry in the snapshot of its scope.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    shared.frames.fetch_add(1, Relaxed);
                    let Ok(frame) = serde_json::from_str::<Frame<'_>>(text.as_str()) else {
                        continue;
                    };
                    if frame.kind == "snapshot" {
                        owed_snapshots = 0;
                        let v = frame
                            .users
                            .iter()
                            .flatten()
                            .find(|u| u.user_id == user)
                            .map_or(0, |u| u.v);
                        if let Some(slots) = shared.triggers.get(&user) {
                            slots.base_v.store(v, Relaxed);
                        }
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err(ConnectError::Other("closed before its snapshot".into())),
            }
        }
    }
    if let Some((scope, users)) = interest {
        let subscribe = serde_json::json!({"type": "subscribe", "scope": scope, "user_ids": users});
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
    shared: std::sync::Arc<Shared>,
    mut commands: Option<mpsc::Receiver<Command>>,
) {
    let Connected {
        mut ws,
        user,
        mut owed_snapshots,
    } = connected;
    let start = tokio::time::Instant::now();
    let mut beat = config.heartbeat.map(|period| {
        let offset = period.mul_f64(fastrand::f64());
        tokio::time::interval_at(start + offset, period)
    });
    let mut act = config.activity.map(|period| {
        let offset = period.mul_f64(fastrand::f64());
        tokio::time::interval_at(start + offset, period)
    });
    loop {
        let beat_tick = async {
            match &mut beat {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
        let act_tick = async {
            match &mut act {
                Some(interval) => interval.tick().await,
                None => std::future::pending().await,
            }
        };
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
