//! A Redis store for presence: point several app servers at one Redis and
//! they are one presence cluster. A user connected to any node is seen from
//! every node, and a node that dies leaves no ghost.
//!
//! ```no_run
//! use presence_core::{NodeId, Presence};
//! use presence_redis::{RedisConfig, RedisStore};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379").prefix("myapp")).await?;
//! let presence = Presence::builder()
//!     .store(store)
//!     // A stable name per server: a restarted server clears what it left.
//!     .node(NodeId::new("web-1"))
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **Atomic changes, logic in core.** A change reads the user's record,
//!   runs [`presence_core::store::machine::apply`] on it in Rust, and writes the
//!   result with one Lua script that first checks the record's revision
//!   (compare-and-set) and then writes the record, the deadline index, the
//!   scope and node sets, and publishes the events, in one atomic step. A
//!   conflict (another node changed the user meanwhile) recomputes from the
//!   fresh record. No status logic lives in Lua.
//! - **Cheap heartbeats.** A heartbeat is answered from memory (this process
//!   knows the sessions it opened) and written in one batch per
//!   [`RedisConfig::flush_interval`] as pipelined `ZADD … XX GT CH`
//!   commands, a thousand per round trip: no script per heartbeat, and `XX`
//!   never revives a session another node ended. A session another node ended is found gone at the next
//!   batch (or told at once through the feed), and its next heartbeat fails.
//! - **Liveness.** Heartbeats are scores in a per-user sorted set; every
//!   user's next deadline (lapse, linger end, away, offline, manual expiry)
//!   is a score in a sorted set (one per shard). Any live node's sweeper
//!   takes the due users from it, so a node killed with `kill -9` has its users
//!   OFFLINE after `session_ttl` plus the linger and one sweep; only the node
//!   whose compare-and-set wins publishes each change. A restarted node
//!   clears what its previous incarnation left (through the node's user
//!   set). No SCAN or KEYS anywhere; no keyspace notifications.
//! - **Cross-node events.** Changes are published on one channel per scope
//!   (`PREFIX:ev:SCOPE`); a node subscribes only to the scopes its local
//!   watchers use, drops its own echoes and stale versions, and delivers in
//!   per-user order. Sessions ended by another node (a logout there) are
//!   told to their holder on `PREFIX:end:NODE`. When the pub/sub connection
//!   drops and returns, every watcher gets a fresh snapshot and the node
//!   registers its live sessions again (Redis may have restarted empty).
//! - **Kept changes.** With
//!   [`PresenceBuilder::durable_changes`](presence_core::PresenceBuilder::durable_changes),
//!   the change's script also appends each change observers see to a
//!   stream of the node's name (`XADD`), in the same atomic step and only
//!   when its compare-and-set wins: a change is kept once, however often it
//!   was computed again. Readers acknowledge with `XDEL`; a node's next
//!   process reads what its predecessor left with `XRANGE`.
//! - **Redis down.** Calls fail with a typed [`presence_core::store::StoreError`]
//!   within [`RedisConfig::response_timeout`]; the connection manager
//!   reconnects by itself.
//!
//! # Keys
//!
//! Everything lives under [`RedisConfig::prefix`]: `PREFIX:{USER}:rec`
//! (hash: record JSON and revision), `PREFIX:{USER}:hb` (sorted set:
//! session → heartbeat ms), `PREFIX:due` (sorted set: user → next deadline
//! ms), `PREFIX:scope:SCOPE` and `PREFIX:node:NODE` (sets of users),
//! `PREFIX:changes:NODE` (stream: the changes kept for a node's durable
//! readers, see below), `PREFIX:lease:NODE` (hash: a node's processes'
//! leases) and `PREFIX:epoch` (a token; with the server's replication id,
//! the store's epoch). Times
//! are presence time, which is Redis's clock (`TIME`) as every node keeps to
//! it: keep the Redis servers' clocks in sync (NTP); the nodes' need not be.
//!
//! With [`RedisConfig::shards`] above 1, users are split into that many
//! virtual shards by a fixed hash of their id: a user's record and
//! heartbeats, and its share of the due set, of the scope and node sets and
//! of the kept changes, live under the shard's hash tag (`{PREFIX:7}:{USER}:rec`,
//! `{PREFIX:7}:due`, `{PREFIX:7}:scope:SCOPE`, …), and each shard has an
//! epoch token of its own. The change script touches the scope and node
//! sets without declaring them as keys, which a standalone Redis allows,
//! and which a Redis Cluster allows within one slot: one shard's.
//!
//! For Redis Cluster, enable the `cluster` feature and use
//! [`RedisConfig::cluster`]: 16 shards by default, each in a slot of its
//! own, spread evenly over the masters, so the masters share the changes
//! and each change stays one atomic script. Reads across users (a scope's
//! members, due users, a node's users) read each shard once, concurrently,
//! and merge. The leases, the global epoch token and the feed's channels
//! stay under `{PREFIX}`, one fixed slot. The epoch covers every shard's
//! master: one that fails over or restarts empty is noticed (see
//! [`RedisConfig::epoch_check_interval`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod config;
mod connection;
mod epoch;
mod error;
mod feed;
mod keys;
mod outbox;
mod pipelines;
mod scripts;
mod shards;
mod store;
mod topology;

pub use config::RedisConfig;
pub use store::RedisStore;

/// The README's example, compiled (and run unless `no_run`) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
