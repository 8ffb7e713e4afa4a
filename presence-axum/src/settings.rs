//! [`SocketSettings`] and the state every route and socket shares.

use std::time::Duration;

use presence_core::Presence;
use tokio_util::task::TaskTracker;

use crate::origin::AllowedOrigins;
use crate::throttle::FloodLimit;

/// Limits and buffers of one presence socket. The defaults suit presence:
/// small frames, small buffers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SocketSettings {
    /// Largest frame or message a client may send; bigger closes the socket
    /// with 1009 (default 4 KiB).
    pub max_message_bytes: usize,
    /// Flood control (default 20 messages/s, bursts of 40).
    pub flood: FloodLimit,
    /// Initial read buffer (default 4 KiB; tungstenite's own is 128 KiB).
    pub read_buffer_bytes: usize,
    /// Bytes buffered before a write reaches the socket (default 0: every
    /// frame is written at once).
    pub write_buffer_bytes: usize,
    /// Most bytes buffered while the socket cannot take more (default
    /// 64 KiB).
    pub max_write_buffer_bytes: usize,
    /// How long one write to the socket may take before the client is
    /// judged too slow and the socket is dropped (default 10 s). Fan-out to
    /// others never waits on a socket: a subscriber that falls behind is
    /// told it lagged and gets fresh snapshots.
    pub send_timeout: Duration,
}

impl Default for SocketSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024,
            flood: FloodLimit::default(),
            read_buffer_bytes: 4 * 1024,
            write_buffer_bytes: 0,
            max_write_buffer_bytes: 64 * 1024,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// Paths of the presence routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Paths {
    pub(crate) socket: String,
    pub(crate) heartbeat: String,
    pub(crate) snapshot: String,
    pub(crate) members: String,
    pub(crate) client: String,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            socket: "/ws/presence".into(),
            heartbeat: "/presence/heartbeat".into(),
            snapshot: "/presence/snapshot".into(),
            members: "/presence/members".into(),
            client: "/presence/client.js".into(),
        }
    }
}

/// What the routes, the sockets and the layer share.
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub(crate) presence: Presence,
    pub(crate) paths: Paths,
    pub(crate) origins: AllowedOrigins,
    pub(crate) socket: SocketSettings,
    /// Every live socket task, so shutdown can wait for their 1001s.
    pub(crate) sockets: TaskTracker,
}
