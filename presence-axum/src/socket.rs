//! One presence socket: the upgrade checks, then a session held for as long
//! as the socket lives, speaking SPEC §6.
//!
//! The socket is split: this task reads frames, applies them and turns
//! subscription deliveries into frames; a writer task owns the sending half
//! behind a bounded queue. Fan-out never waits on a socket (subscriptions
//! are bounded and report lag), and a socket whose queue stays full for
//! `send_timeout` is dropped.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use presence_core::{
    Delivery, Error, PresenceEvent, ScopeId, SessionEnd, SessionHandle, SessionSpec, Snapshot,
    StoreError, Subscription, UserId,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::http_routes::identify;
use crate::identity::Identity;
use crate::protocol::{ClientMessage, ProtocolError, ServerMessage, decode};
use crate::reply::{error, presence_traffic, unauthenticated};
use crate::settings::Shared;
use crate::throttle::{Throttle, Verdict};

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
    if !shared.origins.permits(&parts.headers) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this origin may not open the presence socket",
        );
    }
    let Some(identity) = identify::<A, S>(&mut parts, &state).await else {
        return unauthenticated();
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return presence_traffic(rejection.into_response()),
    };
    let limits = shared.socket;
    let response = upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        .max_write_buffer_size(
            limits
                .max_write_buffer_bytes
                .max(limits.max_message_bytes * 2),
        )
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade(move |socket| {
            let tracker = shared.sockets.clone();
            tracker.track_future(serve(shared, identity, socket))
        });
    presence_traffic(response)
}

/// Why this side ends the connection.
#[derive(Debug)]
enum Ending {
    /// Send this close frame.
    Close(u16, &'static str),
    /// The client left, or the socket broke: nothing more to send.
    Gone,
}

/// One turn of the connection loop.
enum Input {
    Frame(Option<Result<Message, axum::Error>>),
    Delivery(Option<Delivery>),
    Ended(SessionEnd),
}

async fn serve(shared: Arc<Shared>, identity: Identity, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let (outgoing, queue) = mpsc::channel(shared.socket.outgoing_queue.max(1));
    let mut writer = tokio::spawn(write_frames(sink, queue));
    let mut connection = Connection {
        shared,
        identity,
        outgoing,
        throttle: None,
    };
    let mut stream = stream;
    let ending = connection.run(&mut stream).await;
    if let Ending::Close(code, reason) = ending {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        };
        // The queue may be full of a slow client's frames: give up after
        // the send timeout, the socket is dropped either way.
        let _ = tokio::time::timeout(
            connection.shared.socket.send_timeout,
            connection.outgoing.send(Message::Close(Some(frame))),
        )
        .await;
        // The closing handshake: read what the client still had in flight
        // until its close reply, so the connection ends cleanly instead of
        // being reset under the client's last frames.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    let send_timeout = connection.shared.socket.send_timeout;
    drop(connection);
    // A peer that stopped reading keeps the writer waiting on a flush that
    // never ends: give it the send timeout, then drop the connection.
    if tokio::time::timeout(send_timeout, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Longest wait for the client's answer to a close frame.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

/// Owns the sending half; ends after a close frame or when the queue ends.
async fn write_frames(mut sink: SplitSink<WebSocket, Message>, mut queue: mpsc::Receiver<Message>) {
    while let Some(message) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    let _ = sink.close().await;
}

struct Connection {
    shared: Arc<Shared>,
    identity: Identity,
    outgoing: mpsc::Sender<Message>,
    throttle: Option<Throttle>,
}

impl Connection {
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>) -> Ending {
        let presence = self.shared.presence.clone();
        let spec = SessionSpec::new(self.identity.user.clone(), self.identity.login.clone())
            .scopes(self.identity.member_of.iter().cloned())
            .metadata("transport", "websocket");
        let mut session = match presence.open_session(spec).await {
            Ok(session) => session,
            Err(Error::ShutDown) => return Ending::Close(close_code::AWAY, "server going away"),
            Err(Error::Store(StoreError::TooManySessions { .. })) => {
                return Ending::Close(close_code::POLICY, "too many sessions");
            }
            Err(failure) => {
                tracing::warn!(user = %self.identity.user, error = %failure, "opening a presence socket failed");
                return Ending::Close(close_code::ERROR, "presence unavailable");
            }
        };
        tracing::debug!(user = %self.identity.user, session = %session.id(), "presence socket open");
        let hello = ServerMessage::Hello {
            session_id: session.id().as_str(),
            user_id: &self.identity.user,
            heartbeat_interval_ms: millis(presence.config().heartbeat_interval),
        };
        if let Err(ending) = self.send_json(&hello).await {
            return ending;
        }
        let mut subscription = presence.subscribe();
        for scope in self.identity.watch_on_connect.clone() {
            if self.identity.can_watch(&scope)
                && let Err(ending) = self.subscribe(&mut subscription, scope, None).await
            {
                return ending;
            }
        }
        self.throttle = Some(Throttle::new(self.shared.socket.flood));
        loop {
            let input = tokio::select! {
                frame = stream.next() => Input::Frame(frame),
                delivery = subscription.recv() => Input::Delivery(delivery),
                end = session.ended() => Input::Ended(end),
            };
            let step = match input {
                Input::Frame(frame) => self.on_frame(frame, &session, &mut subscription).await,
                Input::Delivery(Some(Delivery::Event(event))) => self.send_event(&event).await,
                Input::Delivery(Some(Delivery::Lagged)) => self.resnapshot(&subscription).await,
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
    ) -> Result<(), Ending> {
        let message = match frame {
            None | Some(Ok(Message::Close(_))) => return Err(Ending::Gone),
            Some(Err(failure)) if is_too_big(&failure) => {
                return Err(Ending::Close(close_code::SIZE, "frame too large"));
            }
            Some(Err(_)) => return Err(Ending::Gone),
            Some(Ok(message)) => message,
        };
        if let Some(throttle) = &mut self.throttle {
            match throttle.check(Instant::now()) {
                Verdict::Accept => {}
                Verdict::Throttle => return self.send_error(&ProtocolError::RateLimited).await,
                Verdict::Close => {
                    return Err(Ending::Close(close_code::POLICY, "too many messages"));
                }
            }
        }
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => return self.send_error(&ProtocolError::BinaryFrame).await,
            // tungstenite answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => return Ok(()),
        };
        let now = self.shared.presence.clock().now();
        match decode(text.as_str(), now) {
            Ok(message) => self.apply(message, session, subscription).await,
            Err(refused) => self.send_error(&refused).await,
        }
    }

    async fn apply(
        &mut self,
        message: ClientMessage,
        session: &SessionHandle,
        subscription: &mut Subscription,
    ) -> Result<(), Ending> {
        let presence = &self.shared.presence;
        let result = match message {
            ClientMessage::Heartbeat => match session.heartbeat() {
                Ok(()) => return self.send_json(&ServerMessage::Pong).await,
                Err(failure) => Err(failure),
            },
            ClientMessage::Activity => session.activity().await,
            ClientMessage::StatusChange { status, until } => presence
                .set_status(&self.identity.user, status, until)
                .await
                .map(drop),
            ClientMessage::Subscribe { scope, user_ids } => {
                if !self.identity.can_watch(&scope) {
                    return self.send_error(&ProtocolError::ForbiddenScope(scope)).await;
                }
                return self.subscribe(subscription, scope, user_ids).await;
            }
            ClientMessage::Unsubscribe { scope } => {
                subscription.unwatch(&scope);
                Ok(())
            }
        };
        match result {
            Ok(()) => Ok(()),
            // The session lapsed under us: the client should reconnect.
            Err(failure) if failure.is_session_gone() => {
                Err(Ending::Close(CLOSE_SESSION_LAPSED, "session lapsed"))
            }
            Err(Error::ShutDown) => Err(Ending::Close(close_code::AWAY, "server going away")),
            Err(failure) => {
                tracing::warn!(user = %self.identity.user, error = %failure, "a presence change failed");
                self.send_error(&ProtocolError::Unavailable).await
            }
        }
    }

    /// Watches a scope (or some of its users) and sends its snapshot:
    /// subscribed first, so no change falls between the two.
    async fn subscribe(
        &mut self,
        subscription: &mut Subscription,
        scope: ScopeId,
        users: Option<Vec<UserId>>,
    ) -> Result<(), Ending> {
        let presence = &self.shared.presence;
        let snapshot = match users {
            Some(users) => {
                subscription.watch_users(scope.clone(), users.iter().cloned());
                presence.snapshot_of(&scope, &users).await
            }
            None => {
                subscription.watch_scope(scope.clone());
                presence.snapshot(&scope).await
            }
        };
        match snapshot {
            Ok(snapshot) => self.send_snapshot(&snapshot).await,
            Err(failure) => {
                tracing::warn!(%scope, error = %failure, "a snapshot failed");
                self.send_error(&ProtocolError::Unavailable).await
            }
        }
    }

    /// After a lag: a fresh snapshot of every watched scope.
    async fn resnapshot(&mut self, subscription: &Subscription) -> Result<(), Ending> {
        let scopes: Vec<(ScopeId, Option<Vec<UserId>>)> = subscription
            .scopes()
            .map(|scope| {
                let users = subscription.watched_users(scope).map(<[UserId]>::to_vec);
                (scope.clone(), users)
            })
            .collect();
        for (scope, users) in scopes {
            let presence = &self.shared.presence;
            let snapshot = match &users {
                Some(users) => presence.snapshot_of(&scope, users).await,
                None => presence.snapshot(&scope).await,
            };
            match snapshot {
                Ok(snapshot) => self.send_snapshot(&snapshot).await?,
                Err(_) => self.send_error(&ProtocolError::Unavailable).await?,
            }
        }
        Ok(())
    }

    async fn send_event(&self, event: &PresenceEvent) -> Result<(), Ending> {
        self.send_json(&ServerMessage::presence(event)).await
    }

    async fn send_snapshot(&self, snapshot: &Snapshot) -> Result<(), Ending> {
        self.send_json(&ServerMessage::snapshot(snapshot)).await
    }

    async fn send_error(&self, refused: &ProtocolError) -> Result<(), Ending> {
        let message = refused.message();
        let frame = ServerMessage::Error {
            code: refused.code(),
            message: &message,
        };
        self.send_json(&frame).await
    }

    async fn send_json(&self, message: &ServerMessage<'_>) -> Result<(), Ending> {
        let frame = Message::Text(message.to_json().into());
        match tokio::time::timeout(self.shared.socket.send_timeout, self.outgoing.send(frame)).await
        {
            Ok(Ok(())) => Ok(()),
            // The writer is gone: the socket broke.
            Ok(Err(_)) => Err(Ending::Gone),
            Err(_) => {
                tracing::debug!(user = %self.identity.user, "presence socket too slow; dropping it");
                Err(Ending::Gone)
            }
        }
    }
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

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
