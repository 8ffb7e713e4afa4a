//! For store implementers: the storage contract, and everything a backend
//! builds on. A host app needs none of this to run presence: it picks a
//! store ([`MemoryStore`](crate::MemoryStore), `presence-redis`,
//! `presence-sqlx`) and hands it to
//! [`PresenceBuilder::store`](crate::PresenceBuilder::store). It may name
//! [`StoreError`] (inside [`Error::Store`](crate::Error::Store)) and, to pick
//! a store at run time, `Arc<dyn PresenceStore>` for
//! [`PresenceBuilder::shared_store`](crate::PresenceBuilder::shared_store).
//!
//! - [`PresenceStore`]: the trait; [`Update`] is one change for it,
//!   [`Transition`] what the change did, [`StoreError`] how a call fails.
//! - The records: [`UserRecord`], what a store keeps per user (its
//!   [`SessionRecord`]s with their [`Liveness`], [`Linger`],
//!   [`ScopeLinger`]s, [`RetiredLogin`]s and what observers were last
//!   [`Shown`]); [`UserOp`], the operations that change it ([`NewSession`]
//!   opens one); [`UserView`], a user as a store reads them back.
//! - [`machine`]: the state machine every change runs through.
//! - The cluster feed between the nodes sharing a store: [`ClusterFeed`],
//!   [`FeedSink`], [`FeedMessage`], and [`Broadcast`] (what one change
//!   tells the other nodes).
//! - [`kit`]: what every store on a server shares, written once.
//!
//! # The contract
//!
//! A store keeps [`UserRecord`]s and makes each change to one user atomic;
//! it never decides a status. Its `apply` loads the user's record, runs
//! [`machine::apply`] on it, and saves the result together with the
//! indexes below, all as one atomic step for that user (a mutex, a row lock,
//! a compare-and-set on a revision). That is what decides "first session"
//! and "last session" exactly once when calls for one user race on many
//! threads or nodes.
//!
//! Indexes every store maintains with each change:
//! - **scope members**: a user is a member of each scope in
//!   [`Transition::scopes`] while [`Transition::present`] is true, and of no
//!   scope otherwise;
//! - **deadlines**: one entry per user at [`Transition::next_deadline`]
//!   (none when it is `None`), read by [`PresenceStore::due`] and taken by
//!   a sweep with [`PresenceStore::claim_due`] (which moves it to the
//!   claim's hold, so the nodes sharing the store split the due users);
//! - **nodes**: which users hold sessions opened on a node name, read by
//!   [`PresenceStore::users_on_node`] when a node restarts or its lease
//!   runs out;
//! - **leases**: each running process's lease, renewed by the process
//!   and read by all ([`PresenceStore::expired_leases`]): a session a node
//!   holds ([`Liveness::HeldByNode`]) has no deadline of its own while the
//!   lease lives.
//!
//! Every store runs the shared conformance suite (`presence-store-tests`).
//! A store whose data lives outside this process builds on [`kit`]: local
//! sessions and batched heartbeats, striped user locks and the feed's wire
//! messages, written once for every backend.
//!
//! # The cluster feed
//!
//! How the nodes sharing one store tell each other what changed. Each
//! node's service joins its store's feed ([`PresenceStore::cluster_feed`],
//! if the store has one) with a [`FeedSink`]. A change applied on one node
//! reaches the others as [`FeedMessage::Event`]s for the scopes they watch,
//! and sessions it ended that another node holds (a logout on node B of a
//! login whose socket is on node A; a lapse found by B's sweeper) reach
//! their holder as [`FeedMessage::SessionsEnded`]. A feed that may have
//! lost messages (its connection dropped) sends [`FeedMessage::Resync`]:
//! every watcher then re-reads its snapshot, and the node re-registers its
//! live sessions.
//!
//! # Kept changes
//!
//! A host that asks for
//! [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes)
//! needs a store that keeps changes ([`PresenceStore::keeps_changes`]).
//! Its `apply`, given [`Update::keep_change`], appends every change that
//! observers see ([`Transition::changed`]) to an outbox of the node making
//! it (its name, with the process's incarnation) in the same atomic step as
//! the change, written with [`KeptChange::encode`], and sets
//! [`Transition::kept`] to its [`ChangeId`]. The node's
//! [`Changes`](crate::Changes) readers acknowledge what they handled, and
//! [`PresenceStore::forget_changes`] forgets it; what a process left (it
//! crashed, or stopped before its reader caught up) is read back with
//! [`PresenceStore::kept_changes`] by the next process of that name, or by
//! the process that ends a dead one's sessions.
//!
//! Nodes deliver in per-user order using versions: an event whose `v` is
//! not newer than the last one delivered for that user and scope is dropped,
//! so duplicates and stragglers from racing nodes never reach a watcher.

mod feed;
pub mod kit;
pub mod machine;
mod record;

pub use feed::{Broadcast, ClusterFeed, FeedMessage, FeedSink};
pub use record::{
    Linger, Liveness, NewSession, RetiredLogin, ScopeLinger, SessionRecord, Shown, UserOp,
    UserRecord, UserView,
};

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use self::machine::OpError;
pub use crate::changes::{ChangeId, KeptChange};
use crate::config::PresenceConfig;
use crate::details::Details;
use crate::event::UserPresence;
use crate::ids::{Epoch, NodeId, NodeName, ScopeId, SessionId, UserId};
use crate::status::Status;

/// A boxed error from a backend, kept as the `source()` of a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What one atomic change did to one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The user.
    pub user: UserId,
    /// The status observers saw before.
    pub from: Status,
    /// The status observers see now.
    pub to: Status,
    /// The version of `to` (grew by one if `from != to`).
    pub version: u64,
    /// `last_seen` as observers may know it (none for a user who hides it).
    pub last_seen: Option<DateTime<Utc>>,
    /// What observers see beyond the status ([`Details`]); none while
    /// `OFFLINE`.
    pub details: Option<Arc<Details>>,
    /// Whether what observers see besides the status changed: the details
    /// or whether `last_seen` is hidden (told as an update: one event with
    /// a new version, in every scope of the user).
    pub updated: bool,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// The scopes the user is seen in ([`UserRecord::scopes`]): told
    /// about a change of status.
    pub scopes: Vec<ScopeId>,
    /// Scopes the user joined with this change while watchers could see
    /// them: told the current status even if it did not change.
    pub joined_scopes: Vec<ScopeId>,
    /// Scopes the user left with this change (no live session there any
    /// more, and its linger over) while watchers could see them: told
    /// `OFFLINE`.
    pub left_scopes: Vec<ScopeId>,
    /// Whether the user still has a session or a pending linger.
    pub present: bool,
    /// This change opened the user's first live session.
    pub first_session: bool,
    /// This change ended the user's last live session.
    pub last_session: bool,
    /// Sessions this change ended (closed, logged out, lapsed, cleared).
    pub ended_sessions: Vec<SessionId>,
    /// The node holding each of `ended_sessions`, in the same order.
    pub ended_nodes: Vec<NodeName>,
    /// Sessions reopened on another node by this change, with the node that
    /// held them before (it must let go: its handle is replaced).
    pub moved_sessions: Vec<(SessionId, NodeName)>,
    /// When time alone will change this user next, if ever.
    pub next_deadline: Option<DateTime<Utc>>,
    /// Where the store keeps this change for the node's durable readers
    /// (when [`Update::keep_change`] asked and [`Transition::changed`]);
    /// the state machine leaves it `None`.
    pub kept: Option<ChangeId>,
}

impl Transition {
    /// Whether observers must be told: the shown status changed, or the
    /// user joined or left a scope in sight of its watchers. The version
    /// grew by one exactly when this is true.
    pub fn changed(&self) -> bool {
        self.status_changed()
            || self.updated
            || !self.joined_scopes.is_empty()
            || !self.left_scopes.is_empty()
    }

    /// Whether the status observers see changed.
    pub fn status_changed(&self) -> bool {
        self.from != self.to
    }
}

/// Why a store call failed. Backend errors are kept as the `source()`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The session is not open (it ended, lapsed, or never existed).
    #[error("session not found (ended, lapsed or never opened)")]
    SessionNotFound,
    /// The user already holds the most sessions allowed.
    #[error("too many sessions for one user (the limit is {limit})")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The login logged out (within `session_ttl`): it opens no session.
    #[error("this login has logged out")]
    LoggedOut,
    /// The backend cannot be reached (connection refused, reset, closed).
    #[error("the presence store is unavailable")]
    Unavailable(#[source] BoxError),
    /// The backend did not answer in time.
    #[error("the presence store did not answer within {0:?}")]
    Timeout(Duration),
    /// Stored data could not be decoded.
    #[error("stored presence data is corrupt")]
    Corrupt(#[source] BoxError),
    /// Any other backend failure.
    #[error("the presence store failed")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Stored data that did not decode (a record, a message), as
    /// [`StoreError::Corrupt`].
    pub fn corrupt(error: impl Into<BoxError>) -> Self {
        StoreError::Corrupt(error.into())
    }
}

impl From<OpError> for StoreError {
    fn from(error: OpError) -> Self {
        match error {
            OpError::SessionNotFound => StoreError::SessionNotFound,
            OpError::TooManySessions { limit } => StoreError::TooManySessions { limit },
            OpError::LoggedOut => StoreError::LoggedOut,
        }
    }
}

/// One change for [`PresenceStore::apply`].
#[derive(Clone, Copy)]
pub struct Update<'a> {
    /// The user to change.
    pub user: &'a UserId,
    /// The change.
    pub op: &'a UserOp,
    /// The time of the change, from the service's clock.
    pub now: DateTime<Utc>,
    /// The node making the change (its feed does not echo it back).
    pub node: &'a NodeId,
    /// The rules to apply it with.
    pub config: &'a PresenceConfig,
    /// Whether to keep the change in the node's outbox, in the same atomic
    /// step, when it changed what observers see (see [kept changes](crate::store#kept-changes)):
    /// the service asks it with
    /// [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes).
    pub keep_change: bool,
}

impl fmt::Debug for Update<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Update")
            .field("user", self.user)
            .field("op", self.op)
            .field("now", &self.now)
            .field("node", self.node)
            .field("keep_change", &self.keep_change)
            .finish()
    }
}

/// Where presence state lives. Object-safe: services hold an
/// `Arc<dyn PresenceStore>`.
#[async_trait]
pub trait PresenceStore: Send + Sync + fmt::Debug + 'static {
    /// Applies `update.op` to the user's record with
    /// [`machine::apply`], atomically for that user, saves the record
    /// and the indexes (scope members, deadline, nodes) in the same atomic
    /// step, and returns the transition. On `Err` nothing is saved.
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError>;

    /// Records a heartbeat of a live session at `now`. It never changes a
    /// status, so it must be cheap and must not block: backends that write
    /// remotely may buffer it and write in batches.
    ///
    /// Fails with [`StoreError::SessionNotFound`] when the session is not
    /// open or has already lapsed (its last heartbeat is `session_ttl` old):
    /// a heartbeat never revives a dead session.
    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError>;

    /// How late a heartbeat may reach the store (a store that buffers them
    /// writes them once per flush interval): the service refuses to start
    /// when `heartbeat_interval` plus this is not shorter than
    /// `session_ttl`, since sessions would lapse in the store between two
    /// heartbeats.
    fn heartbeat_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// Writes the heartbeats this process has buffered now, rather than at
    /// the next flush (before a graceful stop, or in tests); how many. A
    /// store that writes each heartbeat at once has none.
    async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Reads several users as observers see them, with their scopes, in the
    /// order asked. A user the store has never seen is `OFFLINE` with
    /// version 0 and no scope.
    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError>;

    /// Reads every member of a scope: each user with a session or a pending
    /// linger whose scopes include it, as observers see them.
    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError>;

    /// Up to `limit` members of a scope who are not `OFFLINE`, in order of
    /// user id, each greater than `after` when given: a page of
    /// [`crate::Presence::members`].
    ///
    /// The default reads every member with
    /// [`PresenceStore::scope_members`] and keeps the page; a store that
    /// can read a range of a scope in order overrides it.
    async fn scope_members_page(
        &self,
        scope: &ScopeId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserPresence>, StoreError> {
        let mut members: Vec<UserPresence> = self
            .scope_members(scope)
            .await?
            .into_iter()
            .filter(|member| member.status != Status::Offline)
            .filter(|member| after.is_none_or(|after| member.user_id > *after))
            .collect();
        members.sort_unstable_by(|a, b| a.user_id.cmp(&b.user_id));
        members.truncate(limit);
        Ok(members)
    }

    /// Up to `limit` users whose next deadline is at or before `now`, oldest
    /// first. Applying [`UserOp::Refresh`] to each moves its deadline on.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError>;

    /// Takes up to `limit` users due at `now` for this process's sweep, as
    /// [`PresenceStore::due`] finds them, and moves each one's deadline to
    /// `hold_until`, atomically: the sweeps of the other nodes sharing the
    /// store pass them by, so nodes split the due work instead of each
    /// refreshing every user. The [`UserOp::Refresh`] that follows moves the
    /// deadline on; a process that dies mid-sweep leaves its users due
    /// again at `hold_until`. A user whose deadline moved since it fell due
    /// (another sweep claimed it, or a change) is not taken.
    ///
    /// The default is [`PresenceStore::due`] with no claim, which is right
    /// for a store only one process uses (one sweeper).
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        let _ = hold_until;
        self.due(now, limit).await
    }

    /// The earliest deadline of any user, if one is set.
    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// The users that hold sessions opened by any incarnation of `node`.
    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError>;

    /// Records that process `node` is alive until `until` (its lease). A
    /// process renews its lease while it runs and ends it when it shuts
    /// down, so a new process of the same node can tell a predecessor that
    /// still serves (a rolling deploy) from one that died.
    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError>;

    /// Forgets process `node`'s lease (it shut down, or another process
    /// cleared what it left).
    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError>;

    /// The leases of every process of node `name`: incarnation and
    /// expiry, expired ones included.
    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError>;

    /// Every process's lease that ran out at or before `now`, of any node
    /// name, with the instant it ran out (expired leases nobody has ended
    /// yet): those processes died, and the nodes sharing the store end
    /// their sessions.
    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError>;

    /// The store's clock, read now: every process of a cluster keeps to it
    /// (see [presence time](crate::Clock#presence-time)). `None` for a store without a clock of its
    /// own (one process only): the process's own clock is used.
    async fn time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(None)
    }

    /// The store's epoch as this process last knew it (cheap: no I/O). It
    /// must change whenever the users' versions may have started again:
    /// the store lost its data (restarted empty, flushed, evicted, failed
    /// over to a replica that had not seen every write), or is new.
    fn epoch(&self) -> Epoch;

    /// Reads the epoch from the backend again and returns it: a node calls
    /// it when its feed came back, to learn whether the store lost its data
    /// meanwhile. A store whose data lives in this process returns
    /// [`PresenceStore::epoch`].
    async fn reload_epoch(&self) -> Result<Epoch, StoreError> {
        Ok(self.epoch())
    }

    /// Whether every call completes without waiting on I/O (a store in this
    /// process's memory): the service then arms no timeout around its
    /// calls. Default `false`.
    fn completes_without_io(&self) -> bool {
        false
    }

    /// Whether the store keeps changes for durable readers: its `apply`
    /// honours [`Update::keep_change`], and [`PresenceStore::kept_changes`]
    /// and [`PresenceStore::forget_changes`] read and forget them (see
    /// [kept changes](crate::store#kept-changes)). Default `false`: the service then refuses
    /// [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes).
    fn keeps_changes(&self) -> bool {
        false
    }

    /// Up to `limit` changes kept for node `name` by any of its processes
    /// but those in `except`, oldest first (each user's in the order they
    /// were made).
    async fn kept_changes(
        &self,
        name: &NodeName,
        except: &[u64],
        limit: usize,
    ) -> Result<Vec<KeptChange>, StoreError> {
        let _ = (name, except, limit);
        Ok(Vec::new())
    }

    /// Forgets changes kept for node `name` (readers acknowledged them).
    /// An id already forgotten is passed by.
    async fn forget_changes(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        let _ = (name, ids);
        Ok(())
    }

    /// The feed between the nodes sharing this store (see [the cluster feed](crate::store#the-cluster-feed)),
    /// if several services may share it.
    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        None
    }
}
