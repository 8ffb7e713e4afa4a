//! One presence socket: the upgrade checks, then a session held for as long
//! as the socket lives, speaking SPEC §6.
//!
//! One task per socket: it reads frames and answers them, runs the store
//! calls they ask for beside its reading (see [`calls`]: a slow
//! store never holds up a heartbeat), and writes what the subscription
//! delivers, straight to the socket. Fan-out never waits on
//! a socket (subscriptions are bounded and report lag); a socket whose write
//! does not complete within `send_timeout` (a peer that stopped reading) is
//! dropped. Each event's frame, and each batch's, is encoded once and shared
//! by every socket that sends it.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use presence_core::{
    Delivery, Error, ScopeId, SessionEnd, SessionHandle, SessionSpec, Snapshot, StoreError,
    Subscription, UserId,
};
use tokio::time::Instant;

pub(crate) mod calls;
pub(crate) mod frame;

use self::calls::StoreCalls;
use self::frame::{Ending, Handling, Inbound, Reply, Step, watch};
use crate::http_routes::identify;
use crate::identity::Identity;
use crate::protocol::{
    BATCH_FRAME_BYTES, ProtocolError, ServerMessage, batch_frames, presence_frame, snapshot_frames,
};
use crate::reply::{forbidden_origin, presence_traffic};
use crate::settings::Shared;
use crate::throttle::Throttle;

/// Close code for a session whose heartbeats lapsed (the client should
/// reconnect).
pub const CLOSE_SESSION_LAPSED: u16 = 4000;
/// Close code for a socket whose session a newer one took over.
pub const CLOSE_SESSION_REPLACED: u16 = 4001;

/// The upgrade: origin (403), identity (401), then the socket.
pub(crate) async fn upgrade<A, S>(shared: Arc<Shared>, state: S, request: Request) -> Response
where
    A: FromRequestParts<S> + Into<Identity>,
    S: Send + Sync,
{
    let (mut parts, _) = request.into_parts();
    if !shared.origins.permits(&parts) {
        return forbidden_origin();
    }
    let identity = match identify::<A, S>(&mut parts, &state).await {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return presence_traffic(rejection.into_response()),
    };
    let batches = asks_for_batches(parts.uri.query());
    let limits = shared.socket;
    let response = upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        // Room for the largest frame the server writes, and some.
        .max_write_buffer_size(
            limits
                .max_write_buffer_bytes
                .max(limits.max_message_bytes * 2)
                .max(BATCH_FRAME_BYTES * 2),
        )
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade({
            // The callback is kept in the upgrade task's future for the
            // socket's whole life: it holds a pointer, not the identity.
            let parts = Box::new((shared, identity, batches));
            move |socket| {
                let (shared, identity, batches) = *parts;
                let tracker = shared.sockets.clone();
                let connection = Box::new(Connection {
                    shared,
                    identity,
                    socket,
                    batches,
                });
                tracker.track_future(serve(connection))
            }
        });
    presence_traffic(response)
}

/// Whether the socket's URL asks for `presence_batch` frames: `batch=1` (or
/// `batch=true`) in its query.
fn asks_for_batches(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|pair| matches!(pair, "batch=1" | "batch=true"))
}

/// One turn of the connection loop.
enum Input {
    Frame(Option<Result<Message, axum::Error>>),
    /// A store call a frame asked for has ended.
    Called(Step),
    Delivery(Option<Delivery>),
    Ended(SessionEnd),
}

/// The socket's one task. Idle sockets are many: what this future holds
/// while waiting is kept small, and the calls that reach the store (rare,
/// large futures) are boxed.
async fn serve(mut connection: Box<Connection>) {
    let _open = presence_core::metrics::socket_opened();
    let (ending, session) = match Box::pin(connection.open_session()).await {
        Ok(mut session) => (connection.run(&mut session).await, Some(session)),
        Err(ending) => (ending, None),
    };
    presence_core::metrics::socket_closed(match &ending {
        Ending::Close(code, _) => Some(*code),
        Ending::Gone => None,
    });
    // The session closes while the client gets its close frame, and the
    // socket counts as open until both are done: once a socket is gone,
    // its session is too, not still closing in a task of its own.
    let close_session = async {
        if let Some(session) = session {
            let user = session.user().clone();
            if let Err(error) = session.close().await {
                tracing::warn!(%user, %error, "closing a presence socket's session failed; it will lapse");
            }
        }
    };
    tokio::join!(Box::pin(close_session), connection.finish(ending));
}

/// Longest wait for the client's answer to a close frame.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

struct Connection {
    shared: Arc<Shared>,
    identity: Identity,
    socket: WebSocket,
    /// The client asked for `presence_batch` frames.
    batches: bool,
}

impl Connection {
    /// Opens the socket's session, or tells why it could not.
    async fn open_session(&mut self) -> Result<SessionHandle, Ending> {
        let presence = &self.shared.presence;
        let spec = SessionSpec::new(self.identity.user.clone(), self.identity.login.clone())
            // Needed only to open the session: not kept for the socket's life.
            .scopes(std::mem::take(&mut self.identity.member_of));
        let session = match Box::pin(presence.open_session(spec)).await {
            Ok(session) => session,
            Err(Error::ShutDown) => {
                return Err(Ending::Close(close_code::AWAY, "server going away"));
            }
            Err(Error::Store(StoreError::TooManySessions { .. })) => {
                return Err(Ending::Close(close_code::POLICY, "too many sessions"));
            }
            // The host still accepted the login's credentials, but presence
            // was told it logged out: the same close as a logout of an open
            // socket, so the client stops instead of retrying.
            Err(failure) if failure.is_logged_out() => {
                return Err(Ending::Close(close_code::NORMAL, "logged out"));
            }
            Err(failure) => {
                tracing::warn!(user = %self.identity.user, error = %failure, "opening a presence socket failed");
                return Err(Ending::Close(close_code::ERROR, "presence unavailable"));
            }
        };
        tracing::debug!(user = %self.identity.user, session = %session.id(), "presence socket open");
        Ok(session)
    }

    /// Serves the open session's socket until it ends: `hello`, then
    /// frames, store calls and deliveries.
    async fn run(&mut self, session: &mut SessionHandle) -> Ending {
        let presence = self.shared.presence.clone();
        let epoch = presence.epoch();
        let hello = ServerMessage::Hello {
            session_id: session.id().as_str(),
            user_id: &self.identity.user,
            heartbeat_interval_ms: millis(presence.config().heartbeat_interval),
            epoch: &epoch,
        }
        .to_json();
        if let Err(ending) = self.send_text(hello).await {
            return ending;
        }
        let mut subscription = presence.subscribe();
        // A batch is written as one write whatever the client asked for:
        // several `presence` frames back to back, or `presence_batch` ones.
        subscription.accept_batches();
        let mut calls = StoreCalls::new(
            presence.clone(),
            session.user().clone(),
            session.id().clone(),
        );
        // Watched at once; their snapshots come first of all the calls.
        let mut on_connect = std::mem::take(&mut self.identity.watch_on_connect);
        on_connect.retain(|scope| self.identity.can_watch(scope));
        for scope in &on_connect {
            watch(&mut subscription, scope, None);
        }
        calls.push_snapshots(on_connect.into_iter().map(|scope| (scope, None)));
        let mut throttle = Throttle::new(self.shared.socket.flood);
        let ending = self
            .serve_frames(session, &mut subscription, &mut calls, &mut throttle)
            .await;
        // A store call is not cut off halfway; it ends within the store's
        // timeout.
        Box::pin(calls.settle()).await;
        ending
    }

    /// Frames, store calls, deliveries and the session's end, until the
    /// connection ends. Frames keep being read (and heartbeats answered)
    /// while a store call runs.
    async fn serve_frames(
        &mut self,
        session: &mut SessionHandle,
        subscription: &mut Subscription,
        calls: &mut StoreCalls,
        throttle: &mut Throttle,
    ) -> Ending {
        loop {
            let input = tokio::select! {
                frame = self.socket.recv() => Input::Frame(frame),
                step = calls.next(), if calls.is_busy() => Input::Called(step),
                // A subscribe's snapshot goes out before the scope's changes.
                delivery = subscription.recv(), if !calls.holds_snapshot() => Input::Delivery(delivery),
                end = session.ended() => Input::Ended(end),
            };
            let step = match input {
                Input::Frame(frame) => {
                    Box::pin(self.on_frame(frame, session, subscription, calls, throttle)).await
                }
                Input::Called(step) => Box::pin(self.answer(step)).await,
                // Events were lost: every watched scope is snapshotted again.
                Input::Delivery(Some(Delivery::Lagged)) => {
                    calls.push_snapshots(watched(subscription));
                    Ok(())
                }
                Input::Delivery(Some(delivery)) => self.send_delivery(&delivery).await,
                Input::Delivery(None) => Err(Ending::Close(close_code::AWAY, "server going away")),
                Input::Ended(end) => Err(ending_for(end)),
            };
            if let Err(ending) = step {
                tracing::debug!(user = %self.identity.user, session = %session.id(), ?ending, "presence socket closing");
                return ending;
            }
        }
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
        session: &SessionHandle,
        subscription: &mut Subscription,
        calls: &mut StoreCalls,
        throttle: &mut Throttle,
    ) -> Result<(), Ending> {
        let inbound = match &frame {
            None | Some(Ok(Message::Close(_))) => Inbound::Closed,
            Some(Err(failure)) if is_too_big(failure) => Inbound::TooLarge,
            Some(Err(failure)) => violation(failure).unwrap_or(Inbound::Broken),
            Some(Ok(Message::Text(text))) => Inbound::Text(text.as_str()),
            Some(Ok(Message::Binary(_))) => Inbound::Binary,
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Control,
        };
        let mut handling = Handling {
            presence: &self.shared.presence,
            identity: &self.identity,
            session,
            subscription,
            calls,
        };
        let step = handling.on_frame(throttle, inbound, Instant::now());
        self.answer(step).await
    }

    /// Sends a frame's (or a store call's) reply, if any; passes an ending
    /// on.
    async fn answer(&mut self, step: Step) -> Result<(), Ending> {
        match step? {
            Some(reply) => self.send_reply(reply).await,
            None => Ok(()),
        }
    }

    async fn send_reply(&mut self, reply: Reply) -> Result<(), Ending> {
        match reply {
            Reply::Pong => self.send_json(&ServerMessage::Pong).await,
            Reply::Error(refused) => self.send_error(&refused).await,
            Reply::Snapshot(snapshot) => self.send_snapshot(&snapshot).await,
        }
    }

    /// An event or a batch: its shared frames, written back to back and
    /// flushed once.
    async fn send_delivery(&mut self, delivery: &Delivery) -> Result<(), Ending> {
        let frames: Vec<Utf8Bytes> = match delivery {
            Delivery::Batch(batch) if self.batches => batch_frames(batch).to_vec(),
            delivery => delivery
                .events()
                .iter()
                .map(|event| presence_frame(event))
                .collect(),
        };
        let socket = &mut self.socket;
        let write = async move {
            for frame in frames {
                socket.feed(Message::Text(frame)).await?;
            }
            socket.flush().await
        };
        // Boxed, like every write: the socket's future stays the size of
        // its idle wait.
        let written = Box::pin(timed_write(&self.shared, &self.identity, write)).await;
        if written.is_ok() {
            presence_core::metrics::written_to_socket(delivery.events());
        }
        written
    }

    /// A snapshot, in as many frames as it needs (see [`snapshot_frames`]),
    /// written back to back and flushed once.
    async fn send_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Ending> {
        let frames = snapshot_frames(snapshot);
        let socket = &mut self.socket;
        let write = async move {
            for frame in frames {
                socket.feed(Message::Text(frame.into())).await?;
            }
            socket.flush().await
        };
        Box::pin(timed_write(&self.shared, &self.identity, write)).await
    }

    async fn send_error(&mut self, refused: &ProtocolError) -> Result<(), Ending> {
        let message = refused.message();
        let frame = ServerMessage::Error {
            code: refused.code(),
            message: &message,
        };
        presence_core::metrics::error_frame_sent(refused.code());
        self.send_json(&frame).await
    }

    async fn send_json(&mut self, message: &ServerMessage<'_>) -> Result<(), Ending> {
        self.send_text(message.to_json()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Ending> {
        let write = self.socket.send(Message::Text(text.into()));
        Box::pin(timed_write(&self.shared, &self.identity, write)).await
    }

    /// Ends the connection: the close frame and the closing handshake when
    /// this side closes, within the send timeout in any case.
    async fn finish(&mut self, ending: Ending) {
        let send_timeout = self.shared.socket.send_timeout;
        if let Ending::Close(code, reason) = ending {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let sent =
                tokio::time::timeout(send_timeout, self.socket.send(Message::Close(Some(frame))))
                    .await;
            if matches!(sent, Ok(Ok(()))) {
                // The closing handshake: read what the client still had in
                // flight until its close reply, so the connection ends
                // cleanly instead of being reset under the client's last
                // frames.
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                    while let Some(Ok(frame)) = self.socket.recv().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        // Flushes the reply to a client's close. A peer that stopped
        // reading has had its send timeout already: it gets little more.
        let last_flush = send_timeout.min(CLOSE_HANDSHAKE);
        let _ = tokio::time::timeout(last_flush, SinkExt::close(&mut self.socket)).await;
    }
}

/// A write that must complete within the send timeout: a peer that stopped
/// reading is dropped, not waited for.
async fn timed_write(
    shared: &Shared,
    identity: &Identity,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), Ending> {
    match tokio::time::timeout(shared.socket.send_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        // The socket broke.
        Ok(Err(_)) => Err(Ending::Gone),
        Err(_) => {
            tracing::debug!(user = %identity.user, "presence socket too slow; dropping it");
            Err(Ending::Gone)
        }
    }
}

/// Every scope `subscription` watches, with the users it is limited to.
fn watched(subscription: &Subscription) -> Vec<(ScopeId, Option<Vec<UserId>>)> {
    subscription
        .scopes()
        .map(|scope| {
            let users = subscription.watched_users(scope).map(<[UserId]>::to_vec);
            (scope.clone(), users)
        })
        .collect()
}

fn ending_for(end: SessionEnd) -> Ending {
    match end {
        SessionEnd::LoggedOut => Ending::Close(close_code::NORMAL, "logged out"),
        SessionEnd::Closed => Ending::Close(close_code::NORMAL, "session closed"),
        SessionEnd::ShutDown => Ending::Close(close_code::AWAY, "server going away"),
        SessionEnd::Lapsed => Ending::Close(CLOSE_SESSION_LAPSED, "session lapsed"),
        SessionEnd::Replaced => Ending::Close(CLOSE_SESSION_REPLACED, "session replaced"),
    }
}

/// Whether a read failed because the client sent more than the limit.
fn is_too_big(failure: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(error) = source {
        if let Some(tungstenite::Error::Capacity(_)) = error.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The close a read failure calls for when the client broke RFC 6455
/// (rather than the connection breaking).
fn violation(failure: &axum::Error) -> Option<Inbound<'static>> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(error) = source {
        match error.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Utf8(_)) => {
                return Some(Inbound::Violation {
                    code: close_code::INVALID,
                    reason: "text frame is not UTF-8",
                });
            }
            Some(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                | tungstenite::error::ProtocolError::SendAfterClosing
                | tungstenite::error::ProtocolError::ReceivedAfterClosing,
            )) => return None,
            Some(tungstenite::Error::Protocol(_)) => {
                return Some(Inbound::Violation {
                    code: close_code::PROTOCOL,
                    reason: "websocket protocol error",
                });
            }
            Some(_) => return None,
            None => source = error.source(),
        }
    }
    None
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
