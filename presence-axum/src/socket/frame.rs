//! What one presence socket does with each frame its client sends, apart
//! from the socket itself: flood control, decoding, and the change each
//! message asks of the service, ending in at most one reply, a store call
//! queued (see [`super::calls`]) or the end of the connection.
//!
//! Kept free of the transport so that it can be driven without a socket
//! (the fuzz harness feeds it frames by the million).

use axum::extract::ws::close_code;
use presence_core::{Error, Presence, ScopeId, SessionHandle, Snapshot, Subscription, UserId};
use tokio::time::Instant;

use super::CLOSE_SESSION_LAPSED;
use super::calls::{StoreCall, StoreCalls, TooManyCalls};
use crate::identity::Identity;
use crate::protocol::{ClientMessage, ProtocolError, decode};
use crate::throttle::{Throttle, Verdict};

/// A frame as the message handling sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Inbound<'a> {
    /// A text frame.
    Text(&'a str),
    /// A binary frame (refused: the protocol is JSON text).
    Binary,
    /// A ping or a pong (the WebSocket library answers pings itself).
    Control,
    /// The client closed the connection, or the stream ended.
    Closed,
    /// The client sent more than the frame limit.
    TooLarge,
    /// The client broke the WebSocket protocol (RFC 6455): a text frame
    /// that is not UTF-8 (close code 1007), a reserved opcode or a stray
    /// continuation (1002).
    Violation {
        /// The close code to send.
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
    /// The socket broke.
    Broken,
}

/// The one frame the server answers a client frame with.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The answer to `heartbeat`.
    Pong,
    /// A refused message.
    Error(ProtocolError),
    /// A scope's snapshot, after a `subscribe`.
    Snapshot(Snapshot),
}

/// Why this side ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Send this close frame.
    Close(u16, &'static str),
    /// The client left, or the socket broke: nothing more to send.
    Gone,
}

/// What one frame leads to: nothing, one reply, or the end.
pub(crate) type Step = Result<Option<Reply>, Ending>;

/// What a socket's frames act on: its service, user, session,
/// subscription and store calls.
pub(crate) struct Handling<'a> {
    pub(crate) presence: &'a Presence,
    pub(crate) identity: &'a Identity,
    pub(crate) session: &'a SessionHandle,
    pub(crate) subscription: &'a mut Subscription,
    pub(crate) calls: &'a mut StoreCalls,
}

impl Handling<'_> {
    /// Handles one frame received at `now`; `throttle` is the socket's flood
    /// control. A frame that needs the store queues a call in `calls` and
    /// is answered when that call ends; the rest are answered at once.
    pub(crate) fn on_frame(
        &mut self,
        throttle: &mut Throttle,
        frame: Inbound<'_>,
        now: Instant,
    ) -> Step {
        match frame {
            Inbound::Closed | Inbound::Broken => return Err(Ending::Gone),
            Inbound::TooLarge => return Err(Ending::Close(close_code::SIZE, "frame too large")),
            Inbound::Violation { code, reason } => return Err(Ending::Close(code, reason)),
            Inbound::Text(_) | Inbound::Binary | Inbound::Control => {}
        }
        presence_core::metrics::frame_received();
        match throttle.check(now) {
            Verdict::Accept => {}
            Verdict::Throttle => return Ok(Some(Reply::Error(ProtocolError::RateLimited))),
            Verdict::Close => return Err(Ending::Close(close_code::POLICY, "too many messages")),
        }
        let text = match frame {
            Inbound::Text(text) => text,
            Inbound::Binary => return Ok(Some(Reply::Error(ProtocolError::BinaryFrame))),
            Inbound::Control
            | Inbound::Closed
            | Inbound::TooLarge
            | Inbound::Violation { .. }
            | Inbound::Broken => {
                return Ok(None);
            }
        };
        match decode(text, self.presence.clock().now()) {
            Ok(message) => self.apply(message),
            Err(refused) => Ok(Some(Reply::Error(refused))),
        }
    }

    fn apply(&mut self, message: ClientMessage) -> Step {
        let call = match message {
            ClientMessage::Heartbeat => {
                return match self.session.heartbeat() {
                    Ok(()) => Ok(Some(Reply::Pong)),
                    Err(failure) => settle_failure(&self.identity.user, failure),
                };
            }
            ClientMessage::Activity => StoreCall::Activity,
            ClientMessage::StatusChange { status, until } => StoreCall::Status { status, until },
            ClientMessage::Subscribe { scope, user_ids } => {
                if !self.identity.can_watch(&scope) {
                    return Ok(Some(Reply::Error(ProtocolError::ForbiddenScope(scope))));
                }
                let snapshot = StoreCall::Snapshot {
                    scope: scope.clone(),
                    users: user_ids.clone(),
                };
                if self.calls.push(snapshot).is_err() {
                    // Refused: nothing watched, so no change of a scope the
                    // client has no snapshot of.
                    return Ok(Some(Reply::Error(ProtocolError::RateLimited)));
                }
                // Watched before the queued snapshot can run (this task runs
                // it), so no change falls between the two.
                watch(self.subscription, &scope, user_ids.as_deref());
                return Ok(None);
            }
            ClientMessage::Unsubscribe { scope } => {
                self.subscription.unwatch(&scope);
                self.calls.forget_snapshots_of(&scope);
                return Ok(None);
            }
        };
        match self.calls.push(call) {
            Ok(()) => Ok(None),
            Err(TooManyCalls) => Ok(Some(Reply::Error(ProtocolError::RateLimited))),
        }
    }
}

/// The answer to a change the service refused or could not make.
pub(crate) fn settle_failure(user: &UserId, failure: Error) -> Step {
    match failure {
        // The session lapsed under us: the client should reconnect.
        failure if failure.is_session_gone() => {
            Err(Ending::Close(CLOSE_SESSION_LAPSED, "session lapsed"))
        }
        Error::ShutDown => Err(Ending::Close(close_code::AWAY, "server going away")),
        failure => {
            tracing::warn!(%user, error = %failure, "a presence change failed");
            Ok(Some(Reply::Error(ProtocolError::Unavailable)))
        }
    }
}

/// Watches a scope, or some of its users.
pub(crate) fn watch(subscription: &mut Subscription, scope: &ScopeId, users: Option<&[UserId]>) {
    match users {
        Some(users) => subscription.watch_users(scope.clone(), users.iter().cloned()),
        None => subscription.watch_scope(scope.clone()),
    }
}

/// A scope's snapshot (or that of some of its users), as a reply.
pub(crate) async fn snapshot(
    presence: &Presence,
    scope: ScopeId,
    users: Option<&[UserId]>,
) -> Reply {
    let snapshot = match users {
        Some(users) => presence.snapshot_of(&scope, users).await,
        None => presence.snapshot(&scope).await,
    };
    match snapshot {
        Ok(snapshot) => Reply::Snapshot(snapshot),
        Err(failure) => {
            tracing::warn!(%scope, error = %failure, "a snapshot failed");
            Reply::Error(ProtocolError::Unavailable)
        }
    }
}
