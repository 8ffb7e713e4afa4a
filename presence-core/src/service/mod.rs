//! [`Presence`]: the service a host app holds. It opens sessions, applies
//! changes through the store, publishes events and runs the sweeper.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use tokio::sync::{Mutex, MutexGuard};

use crate::changes::backlog::Backlog;
use crate::changes::{ChangeFeed, Changes};
use crate::clock::Clock;
use crate::config::{ConfigError, PresenceConfig};
use crate::details::SessionKind;
use crate::error::Error;
use crate::event::UserPresence;
use crate::fanout::{Batching, FanoutStats, Hub};
use crate::ids::{LoginId, NodeId, ScopeId, SessionId, UserId};
use crate::metrics;
use crate::occupancy::LargeScopes;
use crate::session::{EndSignal, SessionEnd, SessionHandle, SessionSpec};
use crate::status::{ManualChoice, RequestedStatus};
use crate::store::{
    FeedMessage, FeedSink, Liveness, NewSession, PresenceStore, StoreError, Transition, Update,
    UserOp, kit::KnownEpoch, machine::later,
};

mod details;
mod held_sessions;
mod incarnations;
mod members;
mod occupancy;
mod queries;
mod time;

pub use members::{MAX_MEMBERS_PAGE, MembersPage};

use crate::timers::{self, SweeperControl};
pub(crate) use time::Time;

/// Stripes of the per-user lock that keeps one user's events in order.
const USER_LOCK_STRIPES: usize = 1024;
/// Users refreshed per store call in a sweep.
const SWEEP_BATCH: usize = 512;
/// Batches one sweep processes before it yields to the next round.
const MAX_SWEEP_BATCHES: usize = 64;
/// How long the users a sweep claimed are hidden from the other nodes'
/// sweeps: longer than refreshing a batch takes on a remote store (about a
/// millisecond each); a user whose refresh failed is retried after it.
const SWEEP_CLAIM: Duration = Duration::from_secs(5);

/// The presence service. Cheap to clone; every clone is the same service.
///
/// Build one with [`Presence::builder`]. See the crate docs for a complete
/// example.
#[derive(Clone)]
pub struct Presence {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    store: Arc<dyn PresenceStore>,
    clock: Arc<dyn Clock>,
    config: PresenceConfig,
    node: NodeId,
    hub: Arc<Hub>,
    /// One user's changes and their publication happen under one stripe,
    /// so events leave in the order the store applied them.
    user_locks: Box<[Mutex<()>]>,
    lock_hasher: std::collections::hash_map::RandomState,
    /// Sessions opened through this service, to tell their holders when the
    /// server ends them.
    local_sessions: DashMap<SessionId, LocalSession>,
    /// Tells apart two handles of one session id (a reopen replaces the
    /// older one).
    handle_generations: AtomicU64,
    http_marks: DashMap<LoginId, DateTime<Utc>>,
    http_coalesce: Duration,
    store_timeout: Duration,
    sweeper: Arc<SweeperControl>,
    shut_down: AtomicBool,
    /// The store's epoch as this node last saw it: a resync that finds
    /// another one means the store lost its data.
    epoch: KnownEpoch,
    /// How long this process's lease lasts once renewed.
    lease: Duration,
    lease_state: std::sync::Mutex<incarnations::LeaseState>,
    /// Held by the one sweep of this process running: a sweep claims the
    /// users it refreshes from the others (see
    /// [`PresenceStore::claim_due`]), so a second sweep here waits for the
    /// first rather than pass its users by.
    sweeping: tokio::sync::Mutex<()>,
    /// Held sessions let go of, for the store to lapse by their last
    /// heartbeat (see `held_sessions`).
    released: std::sync::Mutex<Vec<held_sessions::Released>>,
    /// When a held session may lapse next (Unix ms): the sweep scans them
    /// only from then on.
    next_reap_ms: AtomicI64,
    /// The host's hook on the changes this node makes.
    changes: ChangeFeed,
}

/// The holder of a session opened through this service: a
/// [`Liveness::HeldByNode`] session, whose heartbeats this service keeps.
struct LocalSession {
    generation: u64,
    ended: Arc<EndSignal>,
    /// How it was opened, to register it again after the store lost its
    /// data: its id is the map's key and its node this service's, so
    /// only the rest is kept (the map has an entry per socket).
    user: UserId,
    login: LoginId,
    scopes: Box<[ScopeId]>,
    metadata: BTreeMap<String, String>,
    kind: Option<SessionKind>,
    /// Its newest heartbeat or activity as this node heard it, in ms since
    /// the Unix epoch: it lapses a `session_ttl` later, and a registration
    /// after a data loss says it, so a half-open socket still lapses on
    /// time.
    heard_ms: AtomicI64,
    /// Its open reached the store: from then on, a store without it means
    /// another node ended it.
    confirmed: AtomicBool,
    /// Its holder is closing it: registering it again after a data loss
    /// would bring it back.
    closing: AtomicBool,
}

impl LocalSession {
    fn heard(&self, at: DateTime<Utc>) {
        self.heard_ms
            .fetch_max(at.timestamp_millis(), Ordering::Relaxed);
    }
}

impl Drop for LocalSession {
    fn drop(&mut self) {
        // Like a dropped channel sender: a holder still waiting hears that
        // the service is gone, unless it was told a reason first.
        self.ended.abandon();
    }
}

impl Inner {
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    pub(crate) fn store(&self) -> &Arc<dyn PresenceStore> {
        &self.store
    }

    pub(crate) fn store_timeout(&self) -> Duration {
        self.store_timeout
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sweeper.stop();
        self.hub.close();
        if let Some(feed) = self.store.cluster_feed() {
            feed.leave(&self.node);
        }
        metrics::sessions_dropped(|| self.local_sessions.len());
    }
}

/// Where the store's cluster feed delivers this node's messages.
struct NodeSink {
    inner: std::sync::Weak<Inner>,
}

impl FeedSink for NodeSink {
    fn deliver(&self, message: FeedMessage) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let presence = Presence::from_inner(inner);
        match message {
            FeedMessage::Event(event) => presence.inner.hub.deliver(event),
            FeedMessage::SessionsEnded { sessions, reason } => {
                for session in &sessions {
                    presence.end_local(session, reason);
                }
            }
            FeedMessage::ScopeLagged(scope) => presence.inner.hub.resync_scope(&scope),
            FeedMessage::Resync => {
                // Messages were lost: watchers resnapshot at once; whether
                // the store lost its data too, the epoch tells.
                presence.inner.hub.resync(false);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { presence.after_resync().await });
                }
            }
        }
    }
}

/// What a [`crate::PresenceBuilder`] settled on.
pub(crate) struct Settings {
    pub(crate) store: Arc<dyn PresenceStore>,
    pub(crate) time: Time,
    pub(crate) config: PresenceConfig,
    pub(crate) node: NodeId,
    pub(crate) subscriber_capacity: usize,
    pub(crate) batching: Batching,
    pub(crate) large_scopes: LargeScopes,
    pub(crate) sweep_interval: Duration,
    pub(crate) http_coalesce: Duration,
    pub(crate) store_timeout: Duration,
    pub(crate) lease: Duration,
    pub(crate) durable_changes: bool,
}

impl Presence {
    /// Validates the settings, clears the sessions an earlier incarnation
    /// of this node left in the store, and starts the sweeper.
    pub(crate) async fn start(settings: Settings) -> Result<Presence, Error> {
        settings.config.validate()?;
        check_timing(&settings)?;
        let time = settings
            .time
            .start(&settings.store, settings.store_timeout)
            .await?;
        if settings.durable_changes && !settings.store.keeps_changes() {
            return Err(Error::ChangesNotKept);
        }
        let sweeper = SweeperControl::new();
        let epoch = settings.store.epoch();
        // Scope views spare a store whose reads cost I/O one scope read per
        // watcher; the memory store keeps a scope index of its own.
        let keep_views = !settings.store.completes_without_io();
        let changes = if settings.durable_changes {
            ChangeFeed::durable(Backlog::new(
                settings.store.clone(),
                time.clock.clone(),
                settings.node.clone(),
                settings.store_timeout,
            ))
        } else {
            ChangeFeed::new()
        };
        let inner = Arc::new(Inner {
            store: settings.store,
            clock: time.clock.clone(),
            config: settings.config,
            node: settings.node,
            hub: Hub::new(
                settings.subscriber_capacity,
                settings.batching,
                settings.large_scopes,
                keep_views,
            ),
            user_locks: (0..USER_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            lock_hasher: Default::default(),
            local_sessions: DashMap::new(),
            handle_generations: AtomicU64::new(0),
            http_marks: DashMap::new(),
            http_coalesce: settings.http_coalesce,
            store_timeout: settings.store_timeout,
            sweeper: sweeper.clone(),
            shut_down: AtomicBool::new(false),
            epoch: KnownEpoch::new(epoch),
            lease: settings.lease,
            lease_state: std::sync::Mutex::default(),
            sweeping: tokio::sync::Mutex::new(()),
            released: std::sync::Mutex::default(),
            next_reap_ms: AtomicI64::new(i64::MAX),
            changes,
        });
        let presence = Presence { inner };
        time.keep_in_step(Arc::downgrade(&presence.inner));
        if let Some(feed) = presence.inner.store.cluster_feed() {
            presence
                .inner
                .hub
                .attach_feed(feed.clone(), presence.inner.node.clone());
            let sink = Arc::new(NodeSink {
                inner: Arc::downgrade(&presence.inner),
            });
            presence
                .timed("feed_join", feed.join(&presence.inner.node, sink))
                .await?;
        }
        presence.take_lease().await?;
        occupancy::spawn(
            Arc::downgrade(&presence.inner),
            settings.large_scopes.interval,
        );
        timers::spawn(
            Arc::downgrade(&presence.inner),
            sweeper,
            presence.inner.clock.clone(),
            settings.sweep_interval.max(Duration::from_millis(1)),
        );
        Ok(presence)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &PresenceConfig {
        &self.inner.config
    }

    /// This node's identity.
    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// The clock the service reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// What fan-out has delivered and dropped so far.
    pub fn fanout_stats(&self) -> FanoutStats {
        self.inner.hub.stats()
    }

    /// Opens a session. The user is `ONLINE` from now (unless a manual
    /// status says otherwise); drop the handle, or call
    /// [`SessionHandle::close`], when the connection ends.
    pub async fn open_session(&self, spec: SessionSpec) -> Result<SessionHandle, Error> {
        let id = spec.id.unwrap_or_else(SessionId::random);
        let ended = Arc::new(EndSignal::default());
        let generation = self
            .inner
            .handle_generations
            .fetch_add(1, Ordering::Relaxed);
        let opened = NewSession {
            id: id.clone(),
            login: spec.login.clone(),
            node: self.inner.node.clone(),
            scopes: spec.scopes,
            metadata: spec.metadata,
            liveness: Liveness::HeldByNode,
            kind: spec.kind,
        };
        let now = self.inner.clock.now();
        let local = LocalSession {
            generation,
            ended: ended.clone(),
            user: spec.user.clone(),
            login: opened.login.clone(),
            scopes: opened.scopes.as_slice().into(),
            metadata: opened.metadata.clone(),
            kind: opened.kind.clone(),
            heard_ms: AtomicI64::new(now.timestamp_millis()),
            confirmed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        };
        self.held_from(now);
        // Registered first, so an end that races the open is not missed.
        let replaced = self.inner.local_sessions.insert(id.clone(), local);
        if replaced.is_none() {
            metrics::session_opened();
        }
        let op = UserOp::Open(opened);
        if let Err(error) = self.change(&spec.user, op).await {
            if may_have_applied(&error) {
                // The store may hold the session all the same: handed back,
                // it lapses a TTL from now rather than stay for good.
                self.abandon_local(&id, generation);
            } else {
                self.forget_local(&id, generation);
            }
            if let Some(older) = replaced
                && let dashmap::Entry::Vacant(slot) = self.inner.local_sessions.entry(id)
            {
                slot.insert(older);
                metrics::session_opened();
            }
            return Err(error);
        }
        if let Some(local) = self.inner.local_sessions.get(&id)
            && local.generation == generation
        {
            local.confirmed.store(true, Ordering::Release);
        }
        if let Some(older) = replaced {
            // The session now belongs to the new handle: the old one must
            // not close it when dropped.
            older.ended.send(SessionEnd::Replaced);
        }
        tracing::debug!(user = %spec.user, session = %id, "session opened");
        Ok(SessionHandle {
            presence: self.clone(),
            user: spec.user,
            id,
            login: spec.login,
            generation,
            ended,
            open: true,
        })
    }

    /// Proves a session live. Never changes what observers see, so it costs
    /// no lock beyond the user's record and publishes nothing; a session
    /// this node holds (opened with [`Presence::open_session`] here) costs
    /// the store nothing at all.
    pub fn heartbeat(&self, user: &UserId, session: &SessionId) -> Result<(), Error> {
        let now = self.inner.clock.now();
        if let Some(held) = self.beat_held(user, session, now) {
            return held;
        }
        let call = metrics::store_call("heartbeat");
        let result = self
            .inner
            .store
            .heartbeat(user, session, now, &self.inner.config);
        call.finish(&result);
        Ok(result?)
    }

    /// Notes that this node heard from its local session at `at`.
    fn heard_from(&self, session: &SessionId, at: DateTime<Utc>) {
        if let Some(local) = self.inner.local_sessions.get(session) {
            local.heard(at);
        }
    }

    /// The user did something in this session (docs/rules.md#activity).
    pub async fn activity(&self, user: &UserId, session: &SessionId) -> Result<(), Error> {
        let activity = UserOp::Activity {
            session: session.clone(),
        };
        match self.change(user, activity).await {
            Err(error) if error.is_session_gone() => {
                // Not another user's session of the same id.
                let of_user = |local: &LocalSession| local.user == *user;
                if self
                    .inner
                    .local_sessions
                    .get(session)
                    .is_some_and(|l| of_user(&l))
                {
                    self.end_local(session, SessionEnd::Lapsed);
                }
                Err(error)
            }
            Ok(transition) => {
                self.heard_from(session, transition.at);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Closes a session (its user lingers if it was the last one).
    pub async fn close_session(&self, user: &UserId, session: &SessionId) -> Result<(), Error> {
        let close = UserOp::Close {
            session: session.clone(),
            held_by: None,
        };
        self.change_unchecked(user, close).await.map(drop)
    }

    /// Closes a session this node opened, unless another node has taken it
    /// over since (a client that resumed it there).
    pub(crate) async fn close_own_session(
        &self,
        user: &UserId,
        session: &SessionId,
    ) -> Result<(), Error> {
        if let Some(local) = self.inner.local_sessions.get(session) {
            local.closing.store(true, Ordering::Release);
        }
        let close = UserOp::Close {
            session: session.clone(),
            held_by: Some(self.inner.node.name.clone()),
        };
        self.change_unchecked(user, close).await.map(drop)
    }

    /// Marks an authenticated HTTP request as activity: the login's HTTP
    /// session is opened or refreshed, so a user browsing plain pages is
    /// present without any socket (docs/rules.md#http-sessions). Calls for one login within the
    /// coalescing window cost the store nothing (they prove the session
    /// live in memory, as a heartbeat); returns whether this one reached
    /// the store. A login logged out within `session_ttl` is never marked, so a
    /// request that raced its logout cannot bring the user back.
    pub async fn mark_http_activity(
        &self,
        user: &UserId,
        login: &LoginId,
        scopes: &[ScopeId],
    ) -> Result<bool, Error> {
        let now = self.inner.clock.now();
        let coalesced = self
            .inner
            .http_marks
            .get(login)
            .is_some_and(|mark| now < later(*mark, self.inner.http_coalesce));
        // Inside the window the activity costs the store nothing, but the
        // request still proves the login's HTTP session live (in memory):
        // a session_ttl shorter than the window must not lapse it.
        if coalesced
            && self
                .heartbeat(user, &SessionId::for_http_login(login))
                .is_ok()
        {
            return Ok(false);
        }
        self.inner.http_marks.insert(login.clone(), now);
        let open = UserOp::Open(NewSession {
            id: SessionId::for_http_login(login),
            login: login.clone(),
            node: self.inner.node.clone(),
            scopes: scopes.to_vec(),
            metadata: BTreeMap::from([("kind".to_owned(), "http".to_owned())]),
            // Any node may hear the login's next request.
            liveness: Liveness::Heartbeats,
            // Requests are not a device: the login's sockets are.
            kind: None,
        });
        match self.change(user, open).await {
            Ok(_) => Ok(true),
            // The logout (on any node) came first: the request that raced
            // it does not bring the login back.
            Err(error) if error.is_logged_out() => Ok(false),
            Err(error) => {
                self.inner.http_marks.remove(login);
                Err(error)
            }
        }
    }

    /// Proves the login's HTTP session live without counting it as
    /// activity: the heartbeat of a client that cannot hold a socket. When
    /// the session is not open (the first call, or it lapsed), it is
    /// opened, and opening counts as activity (docs/rules.md#activity).
    pub async fn http_heartbeat(
        &self,
        user: &UserId,
        login: &LoginId,
        scopes: &[ScopeId],
    ) -> Result<(), Error> {
        match self.heartbeat(user, &SessionId::for_http_login(login)) {
            Err(error) if error.is_session_gone() => {
                self.inner.http_marks.remove(login);
                self.mark_http_activity(user, login, scopes).await.map(drop)
            }
            other => other,
        }
    }

    /// Sets the user's manual status: `ONLINE` clears it; `AWAY`, `BUSY`
    /// and `INVISIBLE` hold until `until` (if given) or until changed.
    pub async fn set_status(
        &self,
        user: &UserId,
        status: RequestedStatus,
        until: Option<DateTime<Utc>>,
    ) -> Result<UserPresence, Error> {
        let choice = match status.manual() {
            None => None,
            Some(manual) => {
                if let Some(until) = until
                    && until <= self.inner.clock.now()
                {
                    return Err(Error::ExpiryInPast { until });
                }
                Some(ManualChoice {
                    status: manual,
                    until,
                })
            }
        };
        let transition = self.change(user, UserOp::SetManual(choice)).await?;
        Ok(presence_of(&transition))
    }

    /// Every change of presence this node makes from now on, for the
    /// host's hooks (a webhook when a user goes `OFFLINE`, an audit log):
    /// see [`Changes`] for which node tells which change.
    pub fn changes(&self) -> Changes {
        self.inner.changes.subscribe()
    }

    /// Logs one login out: its sessions end at once, with no linger; the
    /// user is `OFFLINE` unless another login still holds a session.
    /// Returns the sessions that ended.
    pub async fn logout(&self, user: &UserId, login: &LoginId) -> Result<Vec<SessionId>, Error> {
        self.inner.http_marks.remove(login);
        let logout = UserOp::Logout {
            login: login.clone(),
        };
        let transition = self.change_unchecked(user, logout).await?;
        Ok(transition.ended_sessions)
    }

    /// Logs every login of the user out at once.
    pub async fn logout_everywhere(&self, user: &UserId) -> Result<Vec<SessionId>, Error> {
        let transition = self
            .change_unchecked(user, UserOp::LogoutEverywhere)
            .await?;
        Ok(transition.ended_sessions)
    }

    /// Applies, now, every time-driven change that is due (the sweeper does
    /// this by itself; tests and hosts that drive time call it to know the
    /// changes are done). Returns how many users' shown status changed.
    pub async fn run_due(&self) -> Result<usize, Error> {
        let now = self.inner.clock.now();
        self.tend_lease(now).await;
        self.reap_held(now).await?;
        self.refresh_due(now).await
    }

    /// Shuts the service down gracefully: closes every session opened
    /// through it (their users linger, so clients that reconnect to another
    /// node cause no flicker), tells their holders, stops the sweeper and
    /// ends every subscription.
    pub async fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let sessions: Vec<SessionId> = self
            .inner
            .local_sessions
            .iter()
            .map(|entry| entry.key().clone())
            .collect();
        tracing::info!(node = %self.inner.node, sessions = sessions.len(), "presence shutting down");
        for session in sessions {
            let Some((_, local)) = self.inner.local_sessions.remove(&session) else {
                continue;
            };
            metrics::session_closed();
            local.ended.send(SessionEnd::ShutDown);
        }
        self.end_own_sessions().await;
        self.inner.sweeper.stop();
        self.inner.hub.close();
        if let Some(feed) = self.inner.store.cluster_feed() {
            feed.leave(&self.inner.node);
        }
    }

    /// After the feed came back: if the store's epoch changed, it lost its
    /// data: every watcher forgets the versions it was told and
    /// resnapshots, and this node registers its live sessions again. If
    /// not, nothing was lost but messages (the watchers resnapshotted
    /// already), and nothing is registered: a session another node ended
    /// meanwhile (a logout) stays ended.
    async fn after_resync(&self) {
        // The store may still be coming back (a connection that reconnects
        // on first use fails that use): a few tries, spaced out.
        let mut pause = Duration::from_millis(50);
        let epoch = loop {
            match self
                .timed("reload_epoch", self.inner.store.reload_epoch())
                .await
            {
                Ok(epoch) => break epoch,
                Err(error) if pause > Duration::from_secs(3) || self.inner.is_shut_down() => {
                    // The store says when it can: it sends another resync.
                    tracing::warn!(%error, "reading the store's epoch after a resync failed");
                    return;
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        };
        if !self.after_epoch(epoch).await {
            // Nothing was lost but messages: among them, perhaps, that
            // another node ended a session held here.
            self.verify_held().await;
        }
    }

    /// Reads the store's epoch and acts on a new one (see
    /// [`Presence::after_epoch`]); a failure is logged, the next try is
    /// at the next lease renewal.
    pub(super) async fn check_epoch(&self) {
        match self
            .timed("reload_epoch", self.inner.store.reload_epoch())
            .await
        {
            Ok(epoch) => {
                self.after_epoch(epoch).await;
            }
            Err(error) => tracing::warn!(%error, "reading the store's epoch failed"),
        }
    }

    /// If `epoch` is new, the store lost its data: every watcher forgets
    /// the versions it was told and resnapshots, and this node takes its
    /// lease and registers its live sessions again. Whether it was new.
    async fn after_epoch(&self, epoch: crate::ids::Epoch) -> bool {
        let changed = self.inner.epoch.observe(epoch.clone());
        if changed {
            tracing::warn!(node = %self.inner.node, %epoch, "the presence store lost its data (a new epoch); registering live sessions again");
            self.inner.hub.resync(true);
            // The lease was lost too: without it, other processes would
            // take this one for dead.
            self.retake_lease().await;
            self.register_local_sessions().await;
        }
        changed
    }

    /// Registers again every session this node holds, with the newest
    /// heartbeat this node heard of each (never a fresher one): after the
    /// store lost its data. A session whose heartbeat has lapsed meanwhile
    /// stays dead, and its holder is told so.
    async fn register_local_sessions(&self) {
        let sessions: Vec<(UserId, NewSession, i64, u64)> = self
            .inner
            .local_sessions
            .iter()
            .map(|entry| {
                let heard = entry.heard_ms.load(Ordering::Relaxed);
                let session = NewSession {
                    id: entry.key().clone(),
                    login: entry.login.clone(),
                    node: self.inner.node.clone(),
                    scopes: entry.scopes.to_vec(),
                    metadata: entry.metadata.clone(),
                    liveness: Liveness::HeldByNode,
                    kind: entry.kind.clone(),
                };
                (entry.user.clone(), session, heard, entry.generation)
            })
            .collect();
        let count = sessions.len();
        for (user, session, heard_ms, generation) in sessions {
            if self.inner.is_shut_down() {
                return;
            }
            let id = session.id.clone();
            let last_heartbeat = DateTime::<Utc>::from_timestamp_millis(heard_ms)
                .unwrap_or_else(|| self.inner.clock.now());
            let restore = UserOp::Restore {
                session,
                last_heartbeat,
            };
            // Under the user's lock, so that a close either came first (and
            // the session stays closed) or comes after the registration.
            let _guard = self.lock_user(&user).await;
            let still_held = self.inner.local_sessions.get(&id).is_some_and(|local| {
                local.generation == generation && !local.closing.load(Ordering::Acquire)
            });
            if !still_held {
                continue;
            }
            match self.change_locked(&user, restore).await {
                Ok(_) => {}
                Err(error) if error.is_session_gone() => self.end_local(&id, SessionEnd::Lapsed),
                Err(error) if error.is_logged_out() => self.end_local(&id, SessionEnd::LoggedOut),
                Err(error) => {
                    tracing::warn!(%user, %error, "registering a live session again failed");
                }
            }
        }
        tracing::info!(node = %self.inner.node, sessions = count, "live sessions registered again after a resync");
    }

    /// One sweep at `now`: refreshes every due user and returns the next
    /// deadline.
    pub(crate) async fn sweep(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Error> {
        self.tend_lease(now).await;
        let next_lapse = self.reap_held(now).await?;
        self.refresh_due(now).await?;
        self.prune_http_marks(now);
        let next = self
            .timed("next_deadline", self.inner.store.next_deadline())
            .await?;
        Ok(next.into_iter().chain(next_lapse).min())
    }

    /// Refreshes every user whose deadline is at or before `now`; returns
    /// how many changed what observers see.
    async fn refresh_due(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let _sweeping = self.inner.sweeping.lock().await;
        let (mut refreshed, mut changed) = (0, 0);
        // Bounded, so a clock set backwards mid-sweep cannot spin forever;
        // what is left is due at once and swept next round.
        for _ in 0..MAX_SWEEP_BATCHES {
            let due = self
                .timed(
                    "due",
                    self.inner
                        .store
                        .claim_due(now, SWEEP_BATCH, later(now, SWEEP_CLAIM)),
                )
                .await?;
            let mut failed = 0;
            for user in &due {
                match self.change_unchecked(user, UserOp::Refresh).await {
                    Ok(transition) if transition.changed() => changed += 1,
                    Ok(_) => {}
                    // The store itself is away: the next round retries.
                    Err(Error::Store(
                        error @ (StoreError::Unavailable(_) | StoreError::Timeout(_)),
                    )) => return Err(Error::Store(error)),
                    // One user's record cannot be refreshed (corrupt, say):
                    // the others must not wait on it.
                    Err(error) => {
                        failed += 1;
                        tracing::warn!(%user, %error, "refreshing a due user failed; skipped this round");
                    }
                }
            }
            refreshed += due.len();
            if due.len() < SWEEP_BATCH || failed > 0 {
                break;
            }
        }
        if refreshed > 0 {
            tracing::debug!(refreshed, changed, "presence sweep");
        }
        Ok(changed)
    }

    /// Applies one change to one user, unless the service has shut down.
    async fn change(&self, user: &UserId, op: UserOp) -> Result<Transition, Error> {
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(Error::ShutDown);
        }
        self.change_unchecked(user, op).await
    }

    /// Applies one change to one user and publishes it, under the user's
    /// lock so that their events leave in order.
    async fn change_unchecked(&self, user: &UserId, op: UserOp) -> Result<Transition, Error> {
        let _guard = self.lock_user(user).await;
        self.change_locked(user, op).await
    }

    /// [`Presence::change_unchecked`] for a caller that holds the user's
    /// lock.
    async fn change_locked(&self, user: &UserId, op: UserOp) -> Result<Transition, Error> {
        let now = self.inner.clock.now();
        let update = Update {
            user,
            op: &op,
            now,
            node: &self.inner.node,
            config: &self.inner.config,
            keep_change: self.inner.changes.is_durable(),
        };
        let transition = self
            .timed(metrics::apply_op(&op), self.inner.store.apply(update))
            .await?;
        metrics::transition(&transition);
        if transition.changed() {
            tracing::debug!(
                %user, from = %transition.from, to = %transition.to, v = transition.version,
                "presence changed"
            );
        }
        self.inner.hub.publish(&transition);
        self.inner.changes.tell(&transition);
        let reason = SessionEnd::for_op(&op);
        // A session reopened under the id of one that lapsed unswept lives
        // on: its new holder is not told it ended.
        let reopened = match &op {
            UserOp::Open(new) => Some(&new.id),
            _ => None,
        };
        for session in &transition.ended_sessions {
            if Some(session) != reopened {
                self.end_local(session, reason);
            }
        }
        if let Some(deadline) = transition.next_deadline {
            self.inner.sweeper.schedule(deadline);
        }
        Ok(transition)
    }

    async fn lock_user(&self, user: &UserId) -> MutexGuard<'_, ()> {
        let stripe = self.inner.lock_hasher.hash_one(user) as usize % self.inner.user_locks.len();
        self.inner.user_locks[stripe].lock().await
    }

    /// A store call, bounded by the store timeout and measured as `op`
    /// (see [`crate::metrics`]).
    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let measured = metrics::store_call(op);
        // A store in memory cannot hang on I/O: no timer to arm per call.
        let result = if self.inner.store.completes_without_io() {
            call.await
        } else {
            match tokio::time::timeout(self.inner.store_timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Timeout(self.inner.store_timeout)),
            }
        };
        measured.finish(&result);
        result
    }

    /// Tells the local holder of `session`, if any, that the server ended it.
    fn end_local(&self, session: &SessionId, reason: SessionEnd) {
        if let Some((_, local)) = self.inner.local_sessions.remove(session) {
            metrics::session_closed();
            local.ended.send(reason);
        }
    }

    /// Drops the registration of one handle, unless a newer handle of the
    /// same session id has taken its place.
    pub(crate) fn forget_local(&self, session: &SessionId, generation: u64) {
        let forgotten = self
            .inner
            .local_sessions
            .remove_if(session, |_, local| local.generation == generation);
        if forgotten.is_some() {
            metrics::session_closed();
        }
    }

    fn prune_http_marks(&self, now: DateTime<Utc>) {
        let window = self.inner.http_coalesce;
        self.inner
            .http_marks
            .retain(|_, mark| now < later(*mark, window));
    }
}

/// What the thresholds alone cannot check: the store's heartbeat delay and
/// the HTTP coalescing window against them.
fn check_timing(settings: &Settings) -> Result<(), ConfigError> {
    let config = &settings.config;
    let late = config.heartbeat_interval + settings.store.heartbeat_delay();
    if late >= config.session_ttl {
        // A heartbeat may reach the store this late: sessions would lapse
        // in the store between two of them.
        return Err(ConfigError::Order {
            shorter: "heartbeat_interval + the store's flush_interval",
            shorter_value: late,
            longer: "session_ttl",
            longer_value: config.session_ttl,
        });
    }
    for (longer, longer_value) in [
        ("session_ttl", config.session_ttl),
        ("away_after", config.away_after),
    ] {
        if settings.http_coalesce >= longer_value {
            return Err(ConfigError::Order {
                shorter: "http_activity_coalesce",
                shorter_value: settings.http_coalesce,
                longer,
                longer_value,
            });
        }
    }
    Ok(())
}

/// Whether a failed change may have reached the store all the same (it
/// timed out or failed in flight), rather than been refused.
fn may_have_applied(error: &Error) -> bool {
    matches!(
        error,
        Error::Store(StoreError::Unavailable(_) | StoreError::Timeout(_) | StoreError::Backend(_))
    )
}

pub(crate) fn presence_of(transition: &Transition) -> UserPresence {
    UserPresence {
        user_id: transition.user.clone(),
        status: transition.to,
        last_seen: transition.last_seen,
        v: transition.version,
        details: transition.details.clone(),
    }
}

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presence")
            .field("node", &self.inner.node)
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish()
    }
}
