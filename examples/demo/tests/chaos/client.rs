//! A presence client that behaves like a browser tab: it heartbeats on its
//! own, and keeps every frame it receives with the instant it arrived, so a
//! scenario can measure when something happened instead of sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{Demo, Socket};

/// What the socket did.
#[derive(Clone, Debug)]
pub(crate) enum Received {
    /// A JSON text frame (pongs are left out).
    Frame(Value),
    /// The server closed the socket (with this close code) or it broke.
    Closed(Option<u16>),
}

/// One connected client; its socket task ends when it is dropped.
pub(crate) struct Client {
    name: String,
    /// Reconnects after a close, as `presence.js` does.
    reconnects: bool,
    inbox: mpsc::UnboundedReceiver<(Instant, Received)>,
    outbox: mpsc::UnboundedSender<Value>,
    task: JoinHandle<()>,
    /// Everything received so far, oldest first.
    log: Vec<(Instant, Received)>,
    /// Where the next [`Client::wait_for`] starts looking in the log.
    cursor: usize,
}

/// The socket task's ends of the client's channels.
struct Channels {
    inbox: mpsc::UnboundedSender<(Instant, Received)>,
    outbox: mpsc::UnboundedReceiver<Value>,
}

impl Client {
    /// Connects `name` (logged in as `token`) to `demo`, once its session is
    /// open (`hello`), and heartbeats every `heartbeat`, as the browser
    /// client does; a close ends it.
    pub(crate) async fn open(demo: &Demo, name: &str, token: &str, heartbeat: Duration) -> Self {
        Self::start(demo, name, token, heartbeat, false).await
    }

    /// Like [`Client::open`], but reconnects after any close with a short
    /// backoff, as `presence.js` does.
    pub(crate) async fn open_reconnecting(
        demo: &Demo,
        name: &str,
        token: &str,
        heartbeat: Duration,
    ) -> Self {
        Self::start(demo, name, token, heartbeat, true).await
    }

    async fn start(
        demo: &Demo,
        name: &str,
        token: &str,
        heartbeat: Duration,
        reconnects: bool,
    ) -> Self {
        let socket = demo.connect(token).await;
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (outbox, outbox_rx) = mpsc::unbounded_channel::<Value>();
        let mut channels = Channels {
            inbox: inbox_tx,
            outbox: outbox_rx,
        };
        let (base, token) = (demo.base.clone(), token.to_owned());
        let task = tokio::spawn(async move {
            let mut socket = Some(socket);
            let mut attempt = 0;
            loop {
                if let Some(mut open) = socket.take() {
                    match talk(&mut open, heartbeat, &mut channels).await {
                        Talk::Heard => attempt = 0,
                        Talk::Silent => {}
                        Talk::Abandoned => return,
                    }
                }
                if !reconnects {
                    return;
                }
                // presence.js: a jittered backoff from 500 ms; fixed here.
                let backoff = Duration::from_millis(250 << attempt.min(3));
                tokio::time::sleep(backoff).await;
                attempt += 1;
                socket = connect(&base, &token).await;
            }
        });
        let mut client = Self {
            name: name.to_owned(),
            reconnects,
            inbox,
            outbox,
            task,
            log: Vec::new(),
            cursor: 0,
        };
        // The session is open once the server says hello.
        client
            .wait_for(Duration::from_secs(10), "hello", |f| f["type"] == "hello")
            .await;
        client
    }

    /// The user this client speaks for.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Moves what has arrived into the log, without waiting.
    pub(crate) fn pump(&mut self) {
        while let Ok(entry) = self.inbox.try_recv() {
            self.log.push(entry);
        }
    }

    /// Waits, at most `within`, for a frame that `matches`, among those
    /// after the last one a wait returned; the instant it arrived. Panics
    /// on a close or a timeout.
    pub(crate) async fn wait_for(
        &mut self,
        within: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Instant {
        self.wait_for_frame(within, what, matches).await.0
    }

    /// [`Client::wait_for`], with the frame that matched.
    pub(crate) async fn wait_for_frame(
        &mut self,
        within: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> (Instant, Value) {
        self.pump();
        let first = self.cursor;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some((at, received)) = self.log.get(self.cursor) {
                self.cursor += 1;
                match received {
                    Received::Frame(frame) if matches(frame) => return (*at, frame.clone()),
                    Received::Frame(_) => {}
                    Received::Closed(_) if self.reconnects => {}
                    Received::Closed(code) => {
                        panic!("{}: closed ({code:?}) while waiting for {what}", self.name)
                    }
                }
            }
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(entry)) => self.log.push(entry),
                Ok(None) => panic!("{}: socket task ended while waiting for {what}", self.name),
                Err(_) => panic!(
                    "{}: no {what} within {within:?}; received since the last wait {:?}",
                    self.name,
                    self.log[first..]
                        .iter()
                        .map(|(_, received)| received)
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// A handle that sends client messages, for a task of its own.
    pub(crate) fn sender(&self) -> impl Fn(Value) + Send + 'static {
        let outbox = self.outbox.clone();
        move |message| {
            let _ = outbox.send(message);
        }
    }

    /// Collects frames for `period`.
    pub(crate) async fn listen(&mut self, period: Duration) {
        let deadline = tokio::time::Instant::now() + period;
        while let Ok(Some(entry)) = tokio::time::timeout_at(deadline, self.inbox.recv()).await {
            self.log.push(entry);
        }
    }

    /// Frames received at or after `since`.
    pub(crate) fn frames_since(&self, since: Instant) -> impl Iterator<Item = &Value> {
        self.log
            .iter()
            .filter_map(move |(at, received)| match received {
                Received::Frame(frame) if *at >= since => Some(frame),
                _ => None,
            })
    }

    /// How the socket ended, if it did.
    pub(crate) fn closed(&mut self) -> Option<Option<u16>> {
        self.closes().first().copied()
    }

    /// Every close so far (a reconnecting client may have several).
    pub(crate) fn closes(&mut self) -> Vec<Option<u16>> {
        self.pump();
        self.log
            .iter()
            .filter_map(|(_, received)| match received {
                Received::Closed(code) => Some(*code),
                Received::Frame(_) => None,
            })
            .collect()
    }

    /// What a client following docs/protocol.md shows for `scope`: each snapshot
    /// replaces the picture, an event counts only if its `v` is newer than
    /// what is shown. Users missing from the picture are OFFLINE.
    pub(crate) fn view(&self, scope: &str) -> HashMap<String, (String, u64)> {
        let mut shown: HashMap<String, (String, u64)> = HashMap::new();
        for (_, received) in &self.log {
            let Received::Frame(frame) = received else {
                continue;
            };
            if frame["scope"] != scope {
                continue;
            }
            match frame["type"].as_str() {
                Some("snapshot") => {
                    shown.clear();
                    for user in frame["users"].as_array().into_iter().flatten() {
                        shown.insert(user_of(user), (status_of(user), version_of(user)));
                    }
                }
                Some("presence") => {
                    let user = user_of(frame);
                    let newer = shown.get(&user).is_none_or(|(_, v)| version_of(frame) > *v);
                    if newer {
                        shown.insert(user, (status_of(frame), version_of(frame)));
                    }
                }
                _ => {}
            }
        }
        shown
    }

    /// `user`'s status in [`Client::view`] of `scope`.
    pub(crate) fn shows(&self, scope: &str, user: &str) -> String {
        self.view(scope)
            .remove(user)
            .map_or_else(|| "OFFLINE".to_owned(), |(status, _)| status)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one connection ended.
enum Talk {
    /// Closed after at least one frame.
    Heard,
    /// Closed before any frame.
    Silent,
    /// The [`Client`] is gone.
    Abandoned,
}

/// Heartbeats, sends what the client queues and logs what arrives, until
/// the socket closes.
async fn talk(socket: &mut Socket, heartbeat: Duration, channels: &mut Channels) -> Talk {
    let mut beat = tokio::time::interval(heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = false;
    loop {
        let outgoing = tokio::select! {
            _ = beat.tick() => json!({"type": "heartbeat"}),
            Some(message) = channels.outbox.recv() => message,
            frame = socket.next() => {
                let received = match frame {
                    Some(Ok(Message::Text(text))) => {
                        heard = true;
                        let value: Value =
                            serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if value["type"] == "pong" {
                            continue;
                        }
                        Received::Frame(value)
                    }
                    Some(Ok(Message::Close(frame))) => {
                        Received::Closed(frame.map(|f| u16::from(f.code)))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Received::Closed(None),
                };
                let closed = matches!(received, Received::Closed(_));
                if channels.inbox.send((Instant::now(), received)).is_err() {
                    return Talk::Abandoned;
                }
                if closed {
                    return if heard { Talk::Heard } else { Talk::Silent };
                }
                continue;
            }
        };
        // A failed write shows up as the next read's end.
        let _ = socket
            .send(Message::Text(outgoing.to_string().into()))
            .await;
    }
}

/// Opens the presence socket of the demo at `base` (`http://…`).
async fn connect(base: &str, token: &str) -> Option<Socket> {
    let mut request = format!("{}/ws/presence", base.replace("http://", "ws://"))
        .into_client_request()
        .ok()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    let (socket, _) = tokio_tungstenite::connect_async(request).await.ok()?;
    Some(socket)
}

fn user_of(frame: &Value) -> String {
    frame["user_id"].as_str().unwrap_or_default().to_owned()
}

fn status_of(frame: &Value) -> String {
    frame["status"].as_str().unwrap_or_default().to_owned()
}

fn version_of(frame: &Value) -> u64 {
    frame["v"].as_u64().unwrap_or_default()
}

/// A `presence` frame saying `user` is now `status`.
pub(crate) fn says(frame: &Value, user: &str, status: &str) -> bool {
    frame["type"] == "presence" && frame["user_id"] == user && frame["status"] == status
}

/// Whether a frame is a `presence` event about `user`.
pub(crate) fn mentions(frame: &Value, user: &str) -> bool {
    frame["type"] == "presence" && frame["user_id"] == user
}
