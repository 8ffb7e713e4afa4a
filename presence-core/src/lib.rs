//! Real-time user presence for Rust servers: who is `ONLINE`, `AWAY`,
//! `BUSY` or `OFFLINE`, followed across pages, tabs, devices and server
//! nodes.
//!
//! This crate is the core every adapter and store builds on. Its root is
//! what a host app uses:
//!
//! - [`Presence`], built with a [`PresenceBuilder`]: the service a host app
//!   holds: sessions ([`SessionSpec`], [`SessionHandle`]) with reference
//!   counting and a grace period against reload flicker, heartbeats,
//!   activity, manual status ([`RequestedStatus`]) with expiry, logout,
//!   queries ([`UserPresence`], [`Snapshot`]), and [`Subscription`]s to
//!   scopes with [`PresenceEvent`]s in per-user order;
//! - [`PresenceConfig`]: the thresholds, with the defaults of the spec;
//! - [`MemoryStore`]: the embedded default store (`presence-redis` and
//!   `presence-sqlx` give the others);
//! - [`Clock`]: every read of time goes through one, so tests drive a
//!   [`ManualClock`] instead of sleeping through real thresholds;
//! - the identifiers ([`UserId`], [`ScopeId`], [`LoginId`], …), cheap to
//!   clone (an `Arc<str>` inside) and made from strings or integers;
//! - [`metrics`]: the name of every metric, for the cargo feature `metrics`.
//!
//! # For store implementers
//!
//! See [`store`]: the [`PresenceStore`](store::PresenceStore) trait, the
//! records a store keeps, the state machine ([`store::machine`]) every
//! change runs through, the cluster feed between nodes, and the
//! [`store::kit`] a store on a server builds on. A host needs it only to
//! name a [`StoreError`](store::StoreError) inside [`Error::Store`], or
//! `Arc<dyn PresenceStore>` to pick a store at run time.
//!
//! # The rules, briefly
//!
//! A user is present while any session is live (heartbeat younger than
//! `session_ttl`) and for `linger` after the last one ends. A present user
//! is `OFFLINE` after `offline_after` without activity, else shows their
//! manual status (`INVISIBLE` shows `OFFLINE`), else `AWAY` after
//! `away_after` without activity, else `ONLINE`. Every change of what
//! observers see bumps the user's version `v` and is told once to every
//! scope the user is in; nothing else is told.
//!
//! # Example
//!
//! A session, a watcher of its scope, and the user going `ONLINE`, `AWAY`
//! and `OFFLINE` as a manual clock moves, without any real waiting:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use presence_core::{Delivery, ManualClock, Presence, ScopeId, SessionSpec, Status, Subscription};
//!
//! async fn next_status(events: &mut Subscription) -> Status {
//!     match events.recv().await {
//!         Some(Delivery::Event(event)) => event.status,
//!         other => panic!("expected an event, got {other:?}"),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), presence_core::Error> {
//! let clock = Arc::new(ManualClock::default());
//! let presence = Presence::builder().clock(clock.clone()).build().await?;
//!
//! // Bob watches the organisation: subscribe, then read the snapshot.
//! let acme = ScopeId::from("acme");
//! let (mut events, snapshot) = presence.watch(&acme).await?;
//! assert!(snapshot.users.is_empty());
//!
//! // Alice opens a tab.
//! let alice = presence
//!     .open_session(SessionSpec::new("alice", "login-1").scope("acme"))
//!     .await?;
//! assert_eq!(next_status(&mut events).await, Status::Online);
//!
//! // Her tab keeps sending heartbeats, but she does nothing for 5 minutes.
//! for _ in 0..10 {
//!     clock.advance(Duration::from_secs(30));
//!     alice.heartbeat()?;
//! }
//! assert_eq!(next_status(&mut events).await, Status::Away);
//!
//! // Still nothing after 30 minutes: OFFLINE, though the tab is open.
//! for _ in 0..50 {
//!     clock.advance(Duration::from_secs(30));
//!     alice.heartbeat()?;
//! }
//! assert_eq!(next_status(&mut events).await, Status::Offline);
//!
//! // She comes back.
//! alice.activity().await?;
//! assert_eq!(next_status(&mut events).await, Status::Online);
//! assert_eq!(presence.status(alice.user()).await?.v, 4);
//! # Ok(())
//! # }
//! ```
//!
//! # Sessions that end
//!
//! Dropping a [`SessionHandle`] closes its session; the user's last session
//! starts the linger, and a new session inside it cancels the `OFFLINE`. A
//! session whose heartbeats stop lapses after `session_ttl`, also with the
//! linger. [`Presence::logout`] ends one login's sessions at once with no
//! linger.
//!
//! A socket's session is held by its node: its heartbeats stay in that
//! node's memory, and the node itself lapses it when its client goes
//! silent. Each process holds a lease in the store
//! ([`PresenceBuilder::node_lease`], 15 s), renewed every third of it; a
//! process that dies stops renewing, and once its lease has run out any
//! other process ends its sessions as of that instant (then the linger).
//! A process of the same [`NodeName`] still serving beside it (a rolling
//! deploy) is left alone. A login's HTTP session, which any node may hear,
//! lives by heartbeats written to the store instead
//! ([`store::Liveness`]).
//!
//! # Scopes
//!
//! A user is seen in the scopes of their live sessions. Opening a session
//! in a new scope tells that scope (a new version); when no session is in a
//! scope any more, the user lingers there for `linger`, then that scope is
//! told `OFFLINE` while the others may still see the user.
//!
//! # Time and data loss
//!
//! Presence time is the store's clock, carried by each machine's monotonic
//! clock (see [presence time](Clock#presence-time)): nodes whose clocks differ agree, and a wall clock
//! stepped on one node changes nothing. A store that lost its data gets a
//! new [`Epoch`]: snapshots carry it, and versions of two epochs are not
//! comparable.
//!
//! # Slow subscribers
//!
//! Each subscription has a bounded queue; one that falls behind receives
//! [`Delivery::Lagged`] and should re-read a snapshot (see the
//! [lag policy](Subscription#lag-policy)).
//!
//! # Busy scopes
//!
//! A scope's event is delivered at once unless the scope is busy: changing
//! faster than [`PresenceBuilder::batch_above_rate`] (50 changes a second
//! by default, beyond a burst of 10). A busy scope's events are gathered
//! and delivered once per [`PresenceBuilder::batch_interval`] (20 ms by
//! default), in order, as one [`EventBatch`] shared by every watcher of
//! the whole scope. A subscription hands batches out event by event unless
//! it calls [`Subscription::accept_batches`]; events and batches carry an
//! [`EncodingCache`], so an adapter encodes each once for all its sockets.
//!
//! # Hooks
//!
//! [`Presence::changes`] streams every change this node makes (a
//! [`Change`]: a webhook when a user goes `OFFLINE`, an audit log); each
//! change of a cluster reaches exactly one node's streams. It is told at
//! most once, unless the host asks for
//! [`PresenceBuilder::durable_changes`]: then the store keeps each change
//! in the same atomic step that makes it until a reader has handled it, and
//! what a killed process left is told by the node's next run (see
//! [`Changes`]).
//!
//! # Observability
//!
//! The service emits `tracing` events: session opens and closes and status
//! changes at `debug`, sweeps at `debug`, node clean-up and shutdown at
//! `info`, failures at `warn`. With the cargo feature `metrics`, it also
//! records sessions, transitions, fan-out and store latency through the
//! `metrics` facade: see [`metrics`] for every name.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod changes;
mod clock;
mod config;
mod delivery;
mod details;
mod error;
mod event;
mod fanout;
mod ids;
mod memory;
pub mod metrics;
mod occupancy;
mod scope_views;
mod service;
mod session;
mod status;
pub mod store;
mod subscription;
mod timers;

pub use builder::PresenceBuilder;
pub use changes::{CHANGES_CAPACITY, Change, ChangeId, Changes, Missed};
pub use clock::{Clock, ManualClock, Sleep, SystemClock};
pub use config::{ConfigError, PresenceConfig};
pub use details::{
    AppState, CustomStatus, Details, DetailsError, Devices, MAX_EMOJI_BYTES, MAX_KIND_CHARS,
    MAX_MERGED_STATE_BYTES, MAX_STATE_BYTES, MAX_TEXT_CHARS, SessionKind,
};
pub use error::Error;
pub use event::{PresenceEvent, Snapshot, UserPresence};
pub use fanout::{
    Batching, Delivery, EncodingCache, EventBatch, FanoutStats, MAX_BATCH_EVENTS, SharedEvent,
    Subscription,
};
pub use ids::{Epoch, LoginId, NodeId, NodeName, ScopeId, SessionId, UserId};
pub use memory::MemoryStore;
pub use occupancy::{LargeScopes, Occupancy};
pub use service::{MAX_MEMBERS_PAGE, MembersPage, Presence};
pub use session::{SessionEnd, SessionHandle, SessionSpec};
pub use status::{ManualChoice, ManualStatus, RequestedStatus, Status, UnknownStatus};

/// The README's example, compiled (and run unless `no_run`) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
