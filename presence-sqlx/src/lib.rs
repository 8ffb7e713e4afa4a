//! PostgreSQL and SQLite stores for presence, on `sqlx`.
//!
//! - [`PgStore`] (feature `postgres`): point several app servers at one
//!   PostgreSQL database and schema and they are one presence cluster. A
//!   user connected to any node is seen from every node, and a node that
//!   dies leaves no ghost.
//! - [`SqliteStore`] (feature `sqlite`): presence that survives restarts in
//!   a database file, for a **single node** (one service in one process: it
//!   has no cluster feed, and its one writer connection is per process).
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use presence_core::{NodeId, Presence};
//! use presence_sqlx::{PgConfig, PgStore};
//!
//! let store = PgStore::connect(
//!     PgConfig::new("postgres://app@db.internal/app").schema("presence"),
//! )
//! .await?;
//! let presence = Presence::builder()
//!     .store(store)
//!     // A stable name per server: a restarted server clears what it left.
//!     .node(NodeId::new("web-1"))
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use presence_sqlx::{SqliteConfig, SqliteStore};
//!
//! let store = SqliteStore::connect(SqliteConfig::new("sqlite://presence.db")).await?;
//! let presence = presence_core::Presence::builder().store(store).build().await?;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! - **Atomic changes, logic in core.** A change is one transaction: lock
//!   the user's row (PostgreSQL: `SELECT … FOR UPDATE`, after an
//!   `INSERT … ON CONFLICT DO NOTHING` for a user never seen; SQLite:
//!   `BEGIN IMMEDIATE` on the store's single writer connection), read the
//!   heartbeats of the user's sessions, add this process's unflushed ones,
//!   run [`presence_core::store::machine::apply`] in Rust, then write the user row,
//!   the sessions (new ones inserted, ended ones deleted), the scope
//!   membership diff, the change kept for durable readers (if asked) and,
//!   on PostgreSQL, the `pg_notify` calls, and commit.
//!   No status logic lives in SQL. The row lock makes one user's changes
//!   one at a time across all nodes, so "first session" and "last session"
//!   are decided exactly once. In-process striped locks keep many tasks
//!   racing on one user from each holding a pooled connection while they
//!   wait.
//! - **Cheap heartbeats.** `heartbeat` never touches the database: the
//!   store answers it from memory (this process knows the sessions it
//!   opened) and a background task writes the newest heartbeat of every
//!   session in one statement per flush interval (default 1 s; PostgreSQL:
//!   `UPDATE … FROM unnest($1, $2, $3)`, SQLite: `UPDATE … FROM
//!   json_each(?1)`), so the database sees at most one write per session per
//!   interval. The update only moves a heartbeat forward and never revives a
//!   deleted session; a session found gone (another node ended it) is
//!   marked so, and its next heartbeat fails. [`PgStore::flush_heartbeats`]
//!   and [`SqliteStore::flush_heartbeats`] write at once (before a graceful
//!   shutdown, or to measure).
//! - **Liveness.** Every change stores the user's next deadline (a session
//!   lapsing, the linger ending, away, offline, a manual status expiring);
//!   the sweeper of any live node takes the due users from an index on it
//!   (`next_deadline <= now … LIMIT`) and refreshes them, so a node killed
//!   with `kill -9` has its users OFFLINE after `session_ttl` plus the
//!   linger and one sweep. A restarted node finds the sessions its previous
//!   incarnation left through the sessions table's node index and clears
//!   them. `last_seen` lives in the record, in the database: it survives
//!   restarts.
//! - **Cross-node events (PostgreSQL).** A change's transaction notifies
//!   its events on the store's channel and the sessions it ended on their
//!   holder's channel; PostgreSQL delivers them at commit, in commit order,
//!   so each user's events arrive in order. Each node listens on its own
//!   connection (see *The cluster feed* below).
//! - **Kept changes.** Both stores keep changes for durable readers
//!   ([`PresenceStore::keeps_changes`]): a change asked to be kept
//!   (`Update::keep_change`) that observers see is inserted into
//!   `kept_changes` in the change's own transaction, so it is kept exactly
//!   when the change commits, and its row id is its `ChangeId`. A node's
//!   changes are read back oldest first and deleted once acknowledged.
//! - **Database down.** Calls fail with a typed
//!   [`presence_core::store::StoreError`]: `Timeout` when no connection comes
//!   within the acquire timeout (default 2 s; a refused connection is
//!   retried until then), `Unavailable` when a connection breaks. Nothing
//!   panics or hangs, heartbeats keep being answered from memory (and are
//!   kept for the next flush), and the pool reconnects by itself when the
//!   database returns.
//!
//! # The cluster feed (PostgreSQL)
//!
//! Channel names are derived from a short hash (64-bit FNV-1a) of the
//! schema, so they fit PostgreSQL's 63-byte identifiers:
//! `presence_ev_<schema hash>` carries every event as
//! `{"o": origin node, "e": event}`, and `presence_end_<schema hash>_<node
//! hash>` the sessions of one node ended elsewhere as `{"s": [ids], "r":
//! reason}`. Each joined node has a listener connection of its own (outside
//! the pool) on both channels; joining returns once the `LISTEN`s took
//! effect, so a started service hears every change committed after. It
//! delivers the events of the scopes the node watches, except the node's
//! own (already told locally). When the connection drops, the listener
//! reconnects and sends `FeedMessage::Resync`: watchers re-read their
//! snapshots and the node registers its live sessions again.
//!
//! # Schema
//!
//! On PostgreSQL the tables live in the schema of [`PgConfig::schema`]
//! (default `presence`), created if missing and set as each connection's
//! `search_path`; on SQLite, in the database file (give the store a file of
//! its own). Both are created by embedded migrations
//! (`migrations/postgres`, `migrations/sqlite`), run by `connect` unless
//! told otherwise, and also by `migrate()`. Times are milliseconds since
//! the Unix epoch.
//!
//! | table | columns | indexes |
//! | --- | --- | --- |
//! | `users` | `user_id` (key), `record` (the user's `UserRecord` as JSON), `rev` (bumped by every write), `status`, `version`, `manual_status`, `manual_until`, `last_seen`, `next_deadline`, `details` | `next_deadline` (partial: not null) |
//! | `sessions` | `session_id` (key), `user_id`, `node`, `login`, `opened_at`, `last_heartbeat`, `expires_at` | `user_id`, `node` |
//! | `scope_members` | `scope`, `user_id` (key: both; on PostgreSQL `user_id` is `COLLATE "C"`) | |
//! | `kept_changes` | `id` (key, growing; the change's `ChangeId`), `node` (the name of the node that made it), `incarnation` (its process: the u64's bits as a 64-bit integer), `change` (the change as JSON) | `(node, id)` |
//!
//! The JSON record is the source of truth; every change rewrites the other
//! `users` columns with it, for operators' queries (and the store reads
//! them for scope snapshots, which then need no JSON). `last_seen` there is
//! what observers may see (frozen while the user shows OFFLINE, so an
//! invisible user's activity never leaks; none for a user who hides it),
//! and `details` what they see beyond the status (`presence_core::Details`
//! as JSON: custom status, kinds of session, merged app state; NULL when
//! there is none, always while the user shows OFFLINE). A page of a scope's
//! members (`Presence::members`) is one range of `scope_members`' key, in
//! byte order of user id as the services compare ids, whatever the
//! database's collation. `sessions.last_heartbeat` is
//! deliberately not indexed, and the table keeps free space on each page
//! (`fillfactor = 70`), so that heartbeat updates are HOT updates (no
//! index writes).
//!
//! # Clocks
//!
//! Every time comes from the services' clocks (the [`presence_core::Clock`]
//! each `Presence` reads), not from the database's: keep node clocks in
//! sync (NTP). A skew between nodes shortens or lengthens lapses by as
//! much.
//!
//! # Features
//!
//! `postgres` and `sqlite` (both off by default) each enable one store and
//! the matching `sqlx` driver (SQLite bundled). No TLS is compiled in:
//! connect to PostgreSQL over a trusted network or a local socket.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod change;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod config;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod error;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod kept;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod rows;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use config::PgConfig;
#[cfg(feature = "sqlite")]
pub use config::SqliteConfig;
#[cfg(feature = "postgres")]
pub use postgres::PgStore;
pub use presence_core::store::PresenceStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The README's example (both stores), compiled as a doctest.
#[cfg(all(doctest, feature = "postgres", feature = "sqlite"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
