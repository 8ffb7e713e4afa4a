//! How a presence socket ends: every close frame the server sends, its code
//! and its reason, written here once (`docs/protocol.md` lists the same
//! closes, and `tests/protocol_doc.rs` reads them from this file).

use axum::extract::ws::close_code;
use presence_core::SessionEnd;

/// Close code for a session whose heartbeats lapsed (the client should
/// reconnect).
pub const CLOSE_SESSION_LAPSED: u16 = 4000;
/// Close code for a socket whose session a newer one took over.
pub const CLOSE_SESSION_REPLACED: u16 = 4001;

/// A close frame the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Close {
    /// The service is shutting down (1001).
    GoingAway,
    /// The login logged out (1000).
    LoggedOut,
    /// The session was closed through the service (1000).
    SessionClosed,
    /// The session's heartbeats lapsed ([`CLOSE_SESSION_LAPSED`]).
    SessionLapsed,
    /// A newer session took this one's place ([`CLOSE_SESSION_REPLACED`]).
    SessionReplaced,
    /// The user already holds the most sessions allowed (1008).
    TooManySessions,
    /// Flood control gave up on the client (1008).
    TooManyMessages,
    /// The session could not be opened: the store is down (1011).
    Unavailable,
    /// A frame over the size limit (1009).
    FrameTooLarge,
    /// A text frame that is not UTF-8 (1007).
    NotUtf8,
    /// Another breach of the WebSocket protocol, RFC 6455 (1002).
    ProtocolViolation,
}

impl Close {
    /// The close code and the reason sent with it.
    pub(crate) fn code_and_reason(self) -> (u16, &'static str) {
        match self {
            Close::GoingAway => (close_code::AWAY, "server going away"),
            Close::LoggedOut => (close_code::NORMAL, "logged out"),
            Close::SessionClosed => (close_code::NORMAL, "session closed"),
            Close::SessionLapsed => (CLOSE_SESSION_LAPSED, "session lapsed"),
            Close::SessionReplaced => (CLOSE_SESSION_REPLACED, "session replaced"),
            Close::TooManySessions => (close_code::POLICY, "too many sessions"),
            Close::TooManyMessages => (close_code::POLICY, "too many messages"),
            Close::Unavailable => (close_code::ERROR, "presence unavailable"),
            Close::FrameTooLarge => (close_code::SIZE, "frame too large"),
            Close::NotUtf8 => (close_code::INVALID, "text frame is not UTF-8"),
            Close::ProtocolViolation => (close_code::PROTOCOL, "websocket protocol error"),
        }
    }

    /// The close telling the client how its session ended.
    pub(crate) fn for_session_end(end: SessionEnd) -> Self {
        match end {
            SessionEnd::LoggedOut => Close::LoggedOut,
            SessionEnd::Closed => Close::SessionClosed,
            SessionEnd::ShutDown => Close::GoingAway,
            SessionEnd::Lapsed => Close::SessionLapsed,
            SessionEnd::Replaced => Close::SessionReplaced,
        }
    }
}

/// Why this side ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Send this close frame.
    Close(Close),
    /// The client left, or the socket broke: nothing more to send.
    Gone,
}

impl Ending {
    /// The close code this side sends, if it sends one.
    pub(crate) fn code(self) -> Option<u16> {
        match self {
            Ending::Close(close) => Some(close.code_and_reason().0),
            Ending::Gone => None,
        }
    }
}

impl From<Close> for Ending {
    fn from(close: Close) -> Self {
        Ending::Close(close)
    }
}
