//! What the server answers one client frame with, at once or when the
//! store call the frame asked for ends: nothing, one frame, or the end of
//! the connection.

use presence_core::{Error, Snapshot, UserId};

use super::close::{Close, Ending};
use crate::protocol::ProtocolError;

/// The server's answer to one client frame (or to one of its store calls).
#[derive(Debug)]
pub(crate) enum Answer {
    /// Nothing to send.
    Nothing,
    /// `pong`, to a `heartbeat`.
    Pong,
    /// An `error` frame: the message was refused and changed nothing.
    Error(ProtocolError),
    /// A scope's snapshot, after a `subscribe` (or unasked, on connect and
    /// after a lag).
    Snapshot(Snapshot),
    /// The connection ends.
    End(Ending),
}

impl Answer {
    /// The end of the connection with `close`.
    pub(crate) fn close(close: Close) -> Self {
        Answer::End(Ending::Close(close))
    }

    /// The answer to a change of `user`'s that the service refused or
    /// could not make.
    pub(crate) fn failed(user: &UserId, failure: Error) -> Self {
        match failure {
            // The session lapsed under us: the client should reconnect.
            failure if failure.is_session_gone() => Answer::close(Close::SessionLapsed),
            Error::ShutDown => Answer::close(Close::GoingAway),
            // Checked when decoded; refused here only when the clock moved
            // past an expiry in between.
            Error::Details(refused) => Answer::Error(ProtocolError::Details(refused)),
            Error::ExpiryInPast { until } => Answer::Error(ProtocolError::BadUntil(format!(
                "{until} is not in the future"
            ))),
            failure => {
                tracing::warn!(%user, error = %failure, "a presence change failed");
                Answer::Error(ProtocolError::Unavailable)
            }
        }
    }
}
