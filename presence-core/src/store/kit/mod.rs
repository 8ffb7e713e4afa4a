//! What a store whose data lives outside this process needs, written once.
//!
//! `MemoryStore` needs none of this. A store on a server (Redis, a
//! database) shares these parts, as `presence-redis` and `presence-sqlx`
//! do, and keeps only its I/O:
//!
//! - [`LocalSessions`]: the sessions this process opened, answering
//!   [`PresenceStore::heartbeat`](super::PresenceStore::heartbeat) from
//!   memory and buffering the newest heartbeat of each for the next write;
//! - [`flush`] and [`spawn_flusher`]: writing those heartbeats in batches,
//!   putting a failed batch back, and telling a session the store no longer
//!   holds from a store that lost its data ([`HeartbeatWriter`]);
//! - [`merge_heartbeats`]: a record read back with its stored heartbeats;
//! - [`KnownEpoch`]: the epoch last read, to tell a backend that lost its
//!   data;
//! - [`UserLocks`]: this process's changes to one user in a line, so racing
//!   tasks wait in memory rather than on the backend;
//! - [`EventMessage`] and [`EndedMessage`]: what the cluster feed carries
//!   between nodes, one wire format for every backend.
//!
//! A minimal flush, for a backend whose write reports the sessions it no
//! longer holds:
//!
//! ```
//! use presence_core::store::kit::{HeartbeatWriter, LocalSessions, PendingBeat, flush};
//! use presence_core::SessionId;
//! use presence_core::store::StoreError;
//!
//! struct Backend;
//!
//! impl HeartbeatWriter for Backend {
//!     async fn write(&self, batch: &[PendingBeat]) -> Result<Vec<SessionId>, StoreError> {
//!         // UPDATE sessions SET heartbeat = … for each beat; the ids it
//!         // found no row for are gone.
//!         Ok(Vec::new())
//!     }
//!     async fn lost_its_data(&self) -> Result<bool, StoreError> {
//!         Ok(false)
//!     }
//!     fn resync(&self) {}
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), StoreError> {
//! let local: LocalSessions = LocalSessions::default();
//! assert_eq!(flush(&local, &Backend, 1000).await?, 0);
//! # Ok(())
//! # }
//! ```

mod flusher;
mod known_epoch;
mod local_sessions;
mod merge;
mod user_locks;
mod wire;

pub use flusher::{Flushes, HeartbeatWriter, flush, spawn_flusher};
pub use known_epoch::KnownEpoch;
pub use local_sessions::{LocalSessions, PendingBeat};
pub use merge::merge_heartbeats;
pub use user_locks::UserLocks;
pub use wire::{EndedMessage, EventMessage};
