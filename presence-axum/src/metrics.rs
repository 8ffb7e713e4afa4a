//! The presence sockets' metrics, through the
//! [`metrics`](https://docs.rs/metrics) facade: named and described here,
//! next to the core's in `presence_core::metrics`.
//!
//! Recording is behind this crate's cargo feature `metrics` (off by
//! default; it turns on `presence-core`'s as well). With it off, the sockets
//! record nothing; the names and [`describe`] are there either way, so a
//! host needs no `cfg` of its own. With it on, the sockets record into
//! whatever recorder the host installed. Call [`describe`] once after
//! installing the recorder, and `presence_core::metrics::describe` too:
//! each describes its own crate's metrics.
//!
//! # The metrics
//!
//! | name | kind | labels | what it counts |
//! | --- | --- | --- | --- |
//! | `presence_sockets_open` | gauge | | presence WebSockets open on this process |
//! | `presence_socket_frames_received_total` | counter | | frames read from presence sockets (text, binary, ping and pong) |
//! | `presence_socket_error_frames_total` | counter | `code` | `error` frames sent, by their protocol code (`malformed_json`, `rate_limited`, …) |
//! | `presence_socket_closes_total` | counter | `code` | presence sockets that ended, by the close code the server sent (`1000`, `1001`, `1002`, `1007`, `1008`, `1009`, `1011`, `4000`, `4001`, or `other`), or `none` when the client closed first or the connection broke |
//!
//! The sockets also record the `stage="socket"` samples of the core's
//! `presence_fanout_lag_seconds`: the time from an event to the completed
//! write of its frame, one sample per event per socket. That histogram is
//! the core's (named and described there, with its `stage="queue"`).

use std::sync::Arc;

#[cfg(feature = "metrics")]
use ::metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use presence_core::SharedEvent;

/// Gauge: presence sockets open.
pub const SOCKETS_OPEN: &str = "presence_sockets_open";
/// Counter: frames read from presence sockets.
pub const SOCKET_FRAMES_RECEIVED: &str = "presence_socket_frames_received_total";
/// Counter, label `code`: `error` frames sent, by protocol code.
pub const SOCKET_ERROR_FRAMES: &str = "presence_socket_error_frames_total";
/// Counter, label `code`: presence sockets ended, by close code.
pub const SOCKET_CLOSES: &str = "presence_socket_closes_total";

/// Tells the installed recorder the unit and help text of every metric
/// above (not the core's: `presence_core::metrics::describe` does those).
/// Call it once, after installing the recorder; it does nothing without
/// the `metrics` feature.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        describe_gauge!(SOCKETS_OPEN, Unit::Count, "Presence WebSockets open.");
        describe_counter!(
            SOCKET_FRAMES_RECEIVED,
            Unit::Count,
            "Frames read from presence WebSockets."
        );
        describe_counter!(
            SOCKET_ERROR_FRAMES,
            Unit::Count,
            "Error frames sent on presence WebSockets, by protocol error code."
        );
        describe_counter!(
            SOCKET_CLOSES,
            Unit::Count,
            "Presence WebSockets ended, by the close code the server sent (none: the client left)."
        );
    }
}

/// An open presence socket, counted in [`SOCKETS_OPEN`] until it is
/// dropped.
#[must_use = "the socket counts as open only while this is held"]
pub(crate) struct OpenSocket {
    _private: (),
}

/// Counts a presence socket as open until the returned guard is dropped.
#[inline]
pub(crate) fn socket_opened() -> OpenSocket {
    #[cfg(feature = "metrics")]
    gauge!(SOCKETS_OPEN).increment(1.0);
    OpenSocket { _private: () }
}

impl Drop for OpenSocket {
    #[inline]
    fn drop(&mut self) {
        #[cfg(feature = "metrics")]
        gauge!(SOCKETS_OPEN).decrement(1.0);
    }
}

/// A presence socket ended: `Some(code)` with the close code the server
/// sent, `None` when the client closed first or the connection broke.
#[inline]
pub(crate) fn socket_closed(code: Option<u16>) {
    #[cfg(feature = "metrics")]
    {
        // Static label values: no allocation per close, and a bounded set
        // of series.
        let code = match code {
            None => "none",
            Some(1000) => "1000",
            Some(1001) => "1001",
            Some(1002) => "1002",
            Some(1003) => "1003",
            Some(1007) => "1007",
            Some(1008) => "1008",
            Some(1009) => "1009",
            Some(1011) => "1011",
            Some(4000) => "4000",
            Some(4001) => "4001",
            Some(_) => "other",
        };
        counter!(SOCKET_CLOSES, "code" => code).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = code;
}

/// A frame was read from a presence socket.
#[inline]
pub(crate) fn frame_received() {
    #[cfg(feature = "metrics")]
    counter!(SOCKET_FRAMES_RECEIVED).increment(1);
}

/// An `error` frame with protocol code `code` was sent.
#[inline]
pub(crate) fn error_frame_sent(code: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(SOCKET_ERROR_FRAMES, "code" => code).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = code;
}

/// The frames of `events` were written to a presence socket just now:
/// the `stage="socket"` samples of the core's fan-out lag.
#[inline]
pub(crate) fn written(events: &[Arc<SharedEvent>]) {
    presence_core::metrics::written_to_socket(events);
}
