//! One frame a presence socket's client sends, and what the server answers
//! it with: flood control, decoding, and the change the message asks of
//! the service, ending in an [`Answer`] at once or a store call queued (see
//! [`super::calls`]).
//!
//! Kept free of the socket itself so that it can be driven without one
//! (the fuzz harness feeds it frames by the million).

use axum::extract::ws::Message;
use presence_core::{Presence, ScopeId, SessionHandle, Subscription};
use tokio::time::Instant;

use super::answer::Answer;
use super::calls::{StoreCall, StoreCalls, TooManyCalls, Watched};
use super::close::{Close, Ending};
use crate::identity::Identity;
use crate::protocol::{ClientMessage, ProtocolError, decode};
use crate::throttle::{Throttle, Verdict};

/// A frame as the server judges it.
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
    /// that is not UTF-8, a reserved opcode or a stray continuation.
    Violation(Close),
    /// The socket broke.
    Broken,
}

impl<'a> Inbound<'a> {
    /// What one read of the socket brought.
    pub(crate) fn of(read: &'a Option<Result<Message, axum::Error>>) -> Self {
        match read {
            None | Some(Ok(Message::Close(_))) => Inbound::Closed,
            Some(Err(failure)) if is_too_big(failure) => Inbound::TooLarge,
            Some(Err(failure)) => violation(failure).map_or(Inbound::Broken, Inbound::Violation),
            Some(Ok(Message::Text(text))) => Inbound::Text(text.as_str()),
            Some(Ok(Message::Binary(_))) => Inbound::Binary,
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Inbound::Control,
        }
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
fn violation(failure: &axum::Error) -> Option<Close> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(error) = source {
        match error.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Utf8(_)) => return Some(Close::NotUtf8),
            Some(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                | tungstenite::error::ProtocolError::SendAfterClosing
                | tungstenite::error::ProtocolError::ReceivedAfterClosing,
            )) => return None,
            Some(tungstenite::Error::Protocol(_)) => return Some(Close::ProtocolViolation),
            Some(_) => return None,
            None => source = error.source(),
        }
    }
    None
}

/// What a client frame may act on: the socket's service, identity,
/// session, subscription, store calls, flood control and the limit of
/// `set_state` ([`crate::throttle::SET_STATE_LIMIT`]).
pub(crate) struct FrameContext<'a> {
    pub(crate) presence: &'a Presence,
    pub(crate) identity: &'a Identity,
    pub(crate) session: &'a SessionHandle,
    pub(crate) subscription: &'a mut Subscription,
    pub(crate) calls: &'a mut StoreCalls,
    pub(crate) throttle: &'a mut Throttle,
    pub(crate) state_limit: &'a mut Throttle,
}

impl FrameContext<'_> {
    /// Answers one frame received at `now`. A frame that needs the store
    /// queues a call and is answered when that call ends (here: nothing);
    /// the rest are answered at once.
    pub(crate) fn answer(&mut self, frame: Inbound<'_>, now: Instant) -> Answer {
        match frame {
            Inbound::Closed | Inbound::Broken => return Answer::End(Ending::Gone),
            Inbound::TooLarge => return Answer::close(Close::FrameTooLarge),
            Inbound::Violation(close) => return Answer::close(close),
            Inbound::Text(_) | Inbound::Binary | Inbound::Control => {}
        }
        crate::metrics::frame_received();
        match self.throttle.check(now) {
            Verdict::Accept => {}
            Verdict::Throttle => return Answer::Error(ProtocolError::RateLimited),
            Verdict::Close => return Answer::close(Close::TooManyMessages),
        }
        let text = match frame {
            Inbound::Text(text) => text,
            Inbound::Binary => return Answer::Error(ProtocolError::BinaryFrame),
            Inbound::Control
            | Inbound::Closed
            | Inbound::TooLarge
            | Inbound::Violation(_)
            | Inbound::Broken => return Answer::Nothing,
        };
        match decode(text, self.presence.clock().now()) {
            Ok(message) => self.apply(message, now),
            Err(refused) => Answer::Error(refused),
        }
    }

    fn apply(&mut self, message: ClientMessage, now: Instant) -> Answer {
        let call = match message {
            ClientMessage::Heartbeat => {
                return match self.session.heartbeat() {
                    Ok(()) => Answer::Pong,
                    Err(failure) => Answer::failed(&self.identity.user, failure),
                };
            }
            ClientMessage::Activity => StoreCall::Activity,
            ClientMessage::StatusChange {
                status,
                until,
                custom,
            } => StoreCall::Status {
                status,
                until,
                custom,
            },
            ClientMessage::SetState { state } => {
                // Its own limit, beside the flood limit: app state is the
                // one change a client may want to send often.
                if !self.state_limit.allows(now) {
                    return Answer::Error(ProtocolError::RateLimited);
                }
                StoreCall::State(state)
            }
            ClientMessage::Privacy { hide_last_seen } => StoreCall::Privacy { hide_last_seen },
            ClientMessage::Subscribe {
                scope,
                user_ids,
                counts,
            } => {
                if !self.identity.can_watch(&scope) {
                    return Answer::Error(ProtocolError::ForbiddenScope(scope));
                }
                let watched = match (counts, user_ids) {
                    (true, named) => Watched::Counts(named.unwrap_or_default()),
                    (false, Some(users)) => Watched::Users(users),
                    (false, None) => Watched::Scope,
                };
                let snapshot = StoreCall::Snapshot {
                    scope: scope.clone(),
                    watch: watched.clone(),
                };
                if self.calls.push(snapshot).is_err() {
                    // Refused: nothing watched, so no change of a scope the
                    // client has no snapshot of.
                    return Answer::Error(ProtocolError::RateLimited);
                }
                // Watched before the queued snapshot can run (this task runs
                // it), so no change falls between the two.
                watch(self.subscription, &scope, watched);
                return Answer::Nothing;
            }
            ClientMessage::Unsubscribe { scope } => {
                self.subscription.unwatch(&scope);
                self.calls.forget_snapshots_of(&scope);
                return Answer::Nothing;
            }
        };
        match self.calls.push(call) {
            Ok(()) => Answer::Nothing,
            Err(TooManyCalls) => Answer::Error(ProtocolError::RateLimited),
        }
    }
}

/// Watches a scope, some of its users, or its counts.
pub(crate) fn watch(subscription: &mut Subscription, scope: &ScopeId, watched: Watched) {
    match watched {
        Watched::Scope => subscription.watch_scope(scope.clone()),
        Watched::Users(users) => subscription.watch_users(scope.clone(), users),
        Watched::Counts(named) => subscription.watch_counts(scope.clone(), named),
    }
}

/// What `subscription` watches in `scope` (a whole-scope watch when it
/// watches nothing there): what a fresh snapshot of it lists.
pub(crate) fn watched(subscription: &Subscription, scope: &ScopeId) -> Watched {
    if let Some(named) = subscription.counted_named(scope) {
        Watched::Counts(named.to_vec())
    } else if let Some(users) = subscription.watched_users(scope) {
        Watched::Users(users.to_vec())
    } else {
        Watched::Scope
    }
}
