//! [`MemoryStore`]: the embedded default store, on `dashmap`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

mod outbox;

use self::outbox::Outbox;
use crate::changes::{ChangeId, KeptChange};
use crate::clock::Clock;
use crate::config::PresenceConfig;
use crate::details::Details;
use crate::event::UserPresence;
use crate::ids::{Epoch, NodeId, NodeName, ScopeId, SessionId, UserId};
use crate::session::SessionEnd;
use crate::status::Status;
use crate::store::{
    Broadcast, ClusterFeed, FeedMessage, FeedSink, PresenceStore, StoreError, Transition, Update,
    UserOp, UserRecord, UserView, machine,
};

/// Shards of the deadline index: enough that two cores rarely meet on one.
const DEADLINE_SHARDS: usize = 16;

/// An in-process [`PresenceStore`], the embedded default, on `dashmap`.
/// Cheap to create; share it with `Arc<MemoryStore>` or hand it to one
/// service.
///
/// Each user has a slot with its own mutex; a change to one user locks only
/// that slot (plus short critical sections in the indexes). A heartbeat
/// takes no user lock: it finds its session's entry in the session map and
/// raises the timestamp kept there (no allocation, one shard lock word). A
/// change merges those timestamps into the record under the slot's lock,
/// and marks the sessions it lapses dead in the map under the same shard
/// lock, so a heartbeat racing a lapse either lands first (the session
/// lives) or fails.
///
/// The memory store keeps one small record per user it has ever seen (the
/// version and `last_seen` must outlive a user's sessions), so memory grows
/// with the number of distinct users, not with time.
pub struct MemoryStore {
    users: DashMap<UserId, Arc<UserSlot>>,
    sessions: DashMap<SessionId, LiveSession>,
    /// Each scope's present members, with what observers see of each: a
    /// snapshot reads one map, not every member's record.
    scopes: DashMap<ScopeId, HashMap<UserId, MemberView>>,
    nodes: DashMap<NodeName, HashSet<UserId>>,
    deadlines: DeadlineIndex,
    feed: Arc<MemoryFeed>,
    /// New with every store: versions start again with it.
    epoch: Epoch,
    /// Processes' leases: node name → incarnation → expiry.
    leases: Mutex<HashMap<NodeName, HashMap<u64, DateTime<Utc>>>>,
    /// The store's clock, if it has one ([`MemoryStore::with_clock`]).
    clock: Option<Arc<dyn Clock>>,
    /// Changes kept for durable readers.
    outbox: Outbox,
}

/// The feed of services sharing one memory store in one process: a change
/// is handed to the other nodes' sinks while its user is still locked, so
/// they see each user's changes in order.
#[derive(Default)]
struct MemoryFeed {
    nodes: RwLock<Vec<(NodeId, Arc<dyn FeedSink>)>>,
    /// How many nodes joined: with one (or none) there is no one to tell,
    /// and a change need not touch the lock's shared counter.
    joined: AtomicUsize,
}

impl fmt::Debug for MemoryFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(nodes.iter().map(|(node, _)| node))
            .finish()
    }
}

impl MemoryFeed {
    fn broadcast(&self, origin: &NodeId, transition: &Transition, op: &UserOp) {
        if self.joined.load(Ordering::Acquire) < 2 {
            return;
        }
        let nodes = self.nodes.read().unwrap_or_else(PoisonError::into_inner);
        // Every other process, another process of the origin's node too
        // (during a rolling deploy both serve).
        if nodes.iter().all(|(node, _)| node == origin) {
            return;
        }
        let broadcast = Broadcast::of(transition, op);
        for (node, sink) in nodes.iter().filter(|(node, _)| node != origin) {
            for event in &broadcast.events {
                sink.deliver(FeedMessage::Event(event.clone()));
            }
            for (holder, sessions) in &broadcast.ended {
                if *holder == node.name {
                    sink.deliver(FeedMessage::SessionsEnded {
                        sessions: sessions.clone(),
                        reason: broadcast.reason,
                    });
                }
            }
            for (holder, sessions) in &broadcast.replaced {
                if *holder == node.name {
                    sink.deliver(FeedMessage::SessionsEnded {
                        sessions: sessions.clone(),
                        reason: SessionEnd::Replaced,
                    });
                }
            }
        }
    }
}

#[async_trait]
impl ClusterFeed for MemoryFeed {
    async fn join(&self, node: &NodeId, sink: Arc<dyn FeedSink>) -> Result<(), StoreError> {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|(joined, _)| joined != node);
        nodes.push((node.clone(), sink));
        self.joined.store(nodes.len(), Ordering::Release);
        Ok(())
    }

    fn leave(&self, node: &NodeId) {
        let mut nodes = self.nodes.write().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|(joined, _)| joined != node);
        self.joined.store(nodes.len(), Ordering::Release);
    }

    // Every node gets every event; its hub keeps those it watches.
    fn watch(&self, _: &NodeId, _: &ScopeId) {}

    fn unwatch(&self, _: &NodeId, _: &ScopeId) {}
}

struct UserSlot {
    user: UserId,
    state: Mutex<SlotState>,
}

/// A session's entry in the session map: its user, and its newest heartbeat
/// in ms since the epoch ([`DEAD`] once it has lapsed).
///
/// Both live inline in the map, so a heartbeat reads one map entry and
/// follows no pointer. The heartbeat is a plain integer: every access holds
/// the entry's shard locked exclusively (`get_mut`), which makes a
/// heartbeat's check-then-store atomic with a change marking the session
/// dead, without a compare-and-swap loop.
struct LiveSession {
    user: UserId,
    heartbeat_ms: i64,
}

/// The heartbeat of a session that lapsed: below every real time, so a
/// heartbeat's liveness check alone refuses it.
const DEAD: i64 = i64::MIN;

#[derive(Default)]
struct SlotState {
    record: UserRecord,
    /// What this user has in the indexes now.
    deadline: Option<DateTime<Utc>>,
    indexed_scopes: Vec<ScopeId>,
    /// What the scope index holds of this user.
    indexed_shown: Option<MemberView>,
    indexed_nodes: Vec<NodeName>,
    /// The sessions of `record` this user has in the session map.
    live: Vec<SessionId>,
}

impl UserSlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic elsewhere cannot leave a record half-written: records are
        // replaced whole by the machine, so a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryStore {
    /// Brings the record's heartbeats up to date with the session map, and
    /// marks dead every session lapsed at `now`. Under the entry's exclusive
    /// lock: a heartbeat either landed first (the session lives) or will
    /// find it dead.
    fn merge_heartbeats(
        &self,
        user: &UserId,
        state: &mut SlotState,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) {
        let ttl = ttl_ms(config);
        let now_ms = now.timestamp_millis();
        for id in &state.live {
            let Some(session) = state.record.sessions.iter_mut().find(|s| s.id == *id) else {
                continue;
            };
            let Some(mut live) = self.sessions.get_mut(id) else {
                continue;
            };
            if live.user != *user || live.heartbeat_ms == DEAD {
                continue;
            }
            let stored = session.last_heartbeat.timestamp_millis();
            let newest = live.heartbeat_ms.max(stored);
            // Strictly: whole ms lose the record's sub-ms part, and a
            // session the machine still finds live must not be dead here
            // (one it finds lapsed is removed from the map all the same).
            // A session its node holds lapses only when the node says so.
            if session.liveness.is_heartbeats() && newest.saturating_add(ttl) < now_ms {
                live.heartbeat_ms = DEAD;
            }
            drop(live);
            if newest > stored
                && let Some(at) = DateTime::<Utc>::from_timestamp_millis(newest)
            {
                session.last_heartbeat = at;
            }
        }
    }

    /// An empty store.
    pub fn new() -> Self {
        Self {
            users: DashMap::new(),
            sessions: DashMap::new(),
            scopes: DashMap::new(),
            nodes: DashMap::new(),
            deadlines: DeadlineIndex::new(),
            feed: Arc::default(),
            epoch: Epoch::random(),
            leases: Mutex::default(),
            clock: None,
            outbox: Outbox::default(),
        }
    }

    /// An empty store with a clock of its own, which every service on it
    /// keeps to (see [presence time](crate::Clock#presence-time)): for several services in one
    /// process whose own clocks differ, as a simulation of a cluster has.
    /// A plain [`MemoryStore::new`] has none: each service keeps its own.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock: Some(clock),
            ..Self::new()
        }
    }

    fn slot(&self, user: &UserId) -> Arc<UserSlot> {
        if let Some(slot) = self.users.get(user) {
            return slot.clone();
        }
        self.users
            .entry(user.clone())
            .or_insert_with(|| {
                Arc::new(UserSlot {
                    user: user.clone(),
                    state: Mutex::new(SlotState::default()),
                })
            })
            .clone()
    }

    fn record_of<T>(&self, user: &UserId, read: impl FnOnce(&UserRecord) -> T) -> T {
        match self.users.get(user).map(|slot| slot.clone()) {
            Some(slot) => read(&slot.lock().record),
            None => read(&UserRecord::default()),
        }
    }

    /// Brings the indexes in line with the user's new record. Runs under the
    /// user's lock, so the indexes change atomically with the record as far
    /// as this user is concerned.
    fn reindex(&self, slot: &Arc<UserSlot>, state: &mut SlotState, transition: &Transition) {
        for ended in &transition.ended_sessions {
            self.sessions
                .remove_if(ended, |_, live| live.user == slot.user);
            // A session reopened under its id gets a fresh entry below.
            state.live.retain(|id| id != ended);
        }
        let record = &state.record;
        state
            .live
            .retain(|id| record.sessions.iter().any(|s| s.id == *id));
        for session in &record.sessions {
            let at = session.last_heartbeat.timestamp_millis();
            if state.live.contains(&session.id) {
                // Opened again, or activity: the session proved live now
                // (a dead one stays dead: only its end removes it).
                if let Some(mut live) = self.sessions.get_mut(&session.id)
                    && live.user == slot.user
                    && live.heartbeat_ms != DEAD
                {
                    live.heartbeat_ms = live.heartbeat_ms.max(at);
                }
            } else {
                self.sessions.insert(
                    session.id.clone(),
                    LiveSession {
                        user: slot.user.clone(),
                        heartbeat_ms: at,
                    },
                );
                // Exact growth: one or two sessions per user is the rule.
                state.live.reserve_exact(1);
                state.live.push(session.id.clone());
            }
        }

        let wanted_scopes: &[ScopeId] = if transition.present {
            &record.scopes
        } else {
            &[]
        };
        let shown = MemberView::of(record);
        sync_scope_index(
            &self.scopes,
            &slot.user,
            &mut state.indexed_scopes,
            wanted_scopes,
            state.indexed_shown.as_ref() != Some(&shown),
            &shown,
        );
        state.indexed_shown = Some(shown);

        // Usually every session of a user is on one node: no list to build.
        let several: Vec<NodeName>;
        let wanted_nodes: &[NodeName] = match record.sessions.first() {
            None => &[],
            Some(first)
                if record
                    .sessions
                    .iter()
                    .all(|s| s.node.name == first.node.name) =>
            {
                std::slice::from_ref(&first.node.name)
            }
            Some(_) => {
                let mut nodes: Vec<NodeName> = Vec::new();
                for session in &record.sessions {
                    if !nodes.contains(&session.node.name) {
                        nodes.push(session.node.name.clone());
                    }
                }
                several = nodes;
                &several
            }
        };
        sync_node_index(
            &self.nodes,
            &slot.user,
            &mut state.indexed_nodes,
            wanted_nodes,
        );

        if state.deadline != transition.next_deadline {
            self.deadlines
                .replace(&slot.user, state.deadline, transition.next_deadline);
            state.deadline = transition.next_deadline;
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("users", &self.users.len())
            .field("sessions", &self.sessions.len())
            .field("scopes", &self.scopes.len())
            .finish()
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        let slot = self.slot(update.user);
        let mut state = slot.lock();
        self.merge_heartbeats(&slot.user, &mut state, update.now, update.config);
        let mut transition = machine::apply(
            update.user,
            &mut state.record,
            update.op,
            update.now,
            update.config,
        )?;
        if update.keep_change && transition.changed() {
            self.outbox.keep(update.node, &mut transition);
        }
        self.reindex(&slot, &mut state, &transition);
        self.feed.broadcast(update.node, &transition, update.op);
        Ok(transition)
    }

    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        // Exclusive, so nothing marks the session dead between the check and
        // the store; it costs one atomic like a shared lock would.
        let mut live = self
            .sessions
            .get_mut(session)
            .ok_or(StoreError::SessionNotFound)?;
        let now_ms = now.timestamp_millis();
        let seen = live.heartbeat_ms;
        // DEAD is below every time, so a lapsed session fails here too.
        if live.user != *user || seen.saturating_add(ttl_ms(config)) <= now_ms {
            return Err(StoreError::SessionNotFound);
        }
        // Nothing to write for a heartbeat no newer than the stored one.
        if now_ms > seen {
            live.heartbeat_ms = now_ms;
        }
        Ok(())
    }

    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        Ok(users
            .iter()
            .map(|user| self.record_of(user, |record| UserView::of(user.clone(), record)))
            .collect())
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        Ok(match self.scopes.get(scope) {
            Some(members) => members
                .iter()
                .map(|(user, shown)| shown.presence(user))
                .collect(),
            None => Vec::new(),
        })
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        Ok(self.deadlines.due(now, limit))
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        let mut claimed = Vec::new();
        for user in self.deadlines.due(now, limit) {
            let Some(slot) = self.users.get(&user).map(|slot| slot.clone()) else {
                continue;
            };
            let mut state = slot.lock();
            // Under the user's lock: another sweep may have claimed it, or a
            // change moved its deadline, since the index was read.
            if let Some(deadline) = state.deadline
                && deadline <= now
            {
                self.deadlines
                    .replace(&slot.user, Some(deadline), Some(hold_until));
                state.deadline = Some(hold_until);
                claimed.push(user);
            }
        }
        Ok(claimed)
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.deadlines.earliest())
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        Ok(self
            .nodes
            .get(node)
            .map(|users| users.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases
            .entry(node.name.clone())
            .or_default()
            .insert(node.incarnation, until);
        Ok(())
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(incarnations) = leases.get_mut(&node.name) {
            incarnations.remove(&node.incarnation);
            if incarnations.is_empty() {
                leases.remove(&node.name);
            }
        }
        Ok(())
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let mut expired: Vec<(NodeId, DateTime<Utc>)> = leases
            .iter()
            .flat_map(|(name, incarnations)| {
                incarnations.iter().filter(|(_, until)| **until <= now).map(
                    |(incarnation, until)| {
                        let node = NodeId {
                            name: name.clone(),
                            incarnation: *incarnation,
                        };
                        (node, *until)
                    },
                )
            })
            .collect();
        expired.sort_unstable_by(|(a, _), (b, _)| {
            (&a.name, a.incarnation).cmp(&(&b.name, b.incarnation))
        });
        Ok(expired)
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<(u64, DateTime<Utc>)> = leases
            .get(name)
            .map(|incarnations| incarnations.iter().map(|(i, u)| (*i, *u)).collect())
            .unwrap_or_default();
        found.sort_unstable();
        Ok(found)
    }

    async fn time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.clock.as_ref().map(|clock| clock.now()))
    }

    fn epoch(&self) -> Epoch {
        self.epoch.clone()
    }

    fn completes_without_io(&self) -> bool {
        true
    }

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        Some(self.feed.clone())
    }

    fn keeps_changes(&self) -> bool {
        true
    }

    async fn kept_changes(
        &self,
        name: &NodeName,
        except: &[u64],
        limit: usize,
    ) -> Result<Vec<KeptChange>, StoreError> {
        Ok(self.outbox.read(name, except, limit))
    }

    async fn forget_changes(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        self.outbox.forget(name, ids)
    }
}

/// `session_ttl` in ms, saturating.
fn ttl_ms(config: &PresenceConfig) -> i64 {
    i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Makes `user` a member of exactly the nodes in `wanted`, given that it is
/// a member of those in `indexed` now. Node names are few and come back: a
/// node's set outlives its users (kept empty), or every user's first and
/// last session would rebuild it, and its map entry, when the node has no
/// one else.
fn sync_node_index(
    index: &DashMap<NodeName, HashSet<UserId>>,
    user: &UserId,
    indexed: &mut Vec<NodeName>,
    wanted: &[NodeName],
) {
    indexed.retain(|node| {
        if wanted.contains(node) {
            return true;
        }
        if let Some(mut members) = index.get_mut(node) {
            members.remove(user);
        }
        false
    });
    for node in wanted {
        if !indexed.contains(node) {
            index.entry(node.clone()).or_default().insert(user.clone());
            indexed.reserve_exact(1);
            indexed.push(node.clone());
        }
    }
}

/// What observers see of a scope member, as the scope index keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MemberView {
    status: Status,
    last_seen: Option<DateTime<Utc>>,
    v: u64,
    details: Option<Arc<Details>>,
}

impl MemberView {
    fn of(record: &UserRecord) -> Self {
        Self {
            status: record.shown.status,
            last_seen: record.observed_last_seen(),
            v: record.shown.version,
            details: record.shown.details.clone(),
        }
    }

    fn presence(&self, user: &UserId) -> UserPresence {
        UserPresence {
            user_id: user.clone(),
            status: self.status,
            last_seen: self.last_seen,
            v: self.v,
            details: self.details.clone(),
        }
    }
}

/// Makes `user` a member of exactly the scopes in `wanted`, seen as
/// `shown`, given that it is a member of those in `indexed` now (seen as
/// before unless `changed`). Empty scopes are dropped.
fn sync_scope_index(
    index: &DashMap<ScopeId, HashMap<UserId, MemberView>>,
    user: &UserId,
    indexed: &mut Vec<ScopeId>,
    wanted: &[ScopeId],
    changed: bool,
    shown: &MemberView,
) {
    indexed.retain(|scope| {
        if wanted.contains(scope) {
            if changed && let Some(mut members) = index.get_mut(scope) {
                members.insert(user.clone(), shown.clone());
            }
            return true;
        }
        if let Some(mut members) = index.get_mut(scope) {
            members.remove(user);
        }
        index.remove_if(scope, |_, members| members.is_empty());
        false
    });
    for scope in wanted {
        if !indexed.contains(scope) {
            index
                .entry(scope.clone())
                .or_default()
                .insert(user.clone(), shown.clone());
            indexed.reserve_exact(1);
            indexed.push(scope.clone());
        }
    }
}

type DeadlineShard = BTreeSet<(DateTime<Utc>, UserId)>;

/// Users ordered by their next deadline, sharded by user so that changes to
/// different users rarely contend. A sweep reads only the due entries.
struct DeadlineIndex {
    hasher: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<DeadlineShard>>,
}

impl DeadlineIndex {
    fn new() -> Self {
        Self {
            hasher: Default::default(),
            shards: (0..DEADLINE_SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, user: &UserId) -> MutexGuard<'_, DeadlineShard> {
        let index = self.hasher.hash_one(user) as usize % self.shards.len();
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn replace(&self, user: &UserId, old: Option<DateTime<Utc>>, new: Option<DateTime<Utc>>) {
        let mut shard = self.shard(user);
        if let Some(old) = old {
            shard.remove(&(old, user.clone()));
        }
        if let Some(new) = new {
            shard.insert((new, user.clone()));
        }
    }

    fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<UserId> {
        let mut due: Vec<(DateTime<Utc>, UserId)> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            due.extend(
                shard
                    .iter()
                    .take_while(|(deadline, _)| *deadline <= now)
                    .take(limit)
                    .cloned(),
            );
        }
        due.sort_unstable();
        due.truncate(limit);
        due.into_iter().map(|(_, user)| user).collect()
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.shards
            .iter()
            .filter_map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.first().map(|(deadline, _)| *deadline)
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::store::NewSession;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("valid instant")
    }

    async fn change(
        store: &MemoryStore,
        op: &UserOp,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = NodeId::new("n");
        let update = Update {
            user: &UserId::from("u"),
            op,
            now,
            node: &node,
            config: &PresenceConfig::default(),
            keep_change: false,
        };
        store.apply(update).await.map(|_| ())
    }

    // A change that finds the session lapsed marks it dead even when the
    // change itself fails: a late heartbeat (stamped before the lapse)
    // must not bring it back.
    #[tokio::test]
    async fn a_session_found_lapsed_stays_dead_for_late_heartbeats() {
        let store = MemoryStore::new();
        let config = PresenceConfig::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        let open = UserOp::Open(NewSession {
            id: session.clone(),
            login: "l".into(),
            node: NodeId::new("n"),
            scopes: vec!["org".into()],
            metadata: BTreeMap::new(),
            liveness: Default::default(),
            kind: None,
        });
        change(&store, &open, at(0)).await.expect("opens");
        store
            .heartbeat(&user, &session, at(1_000), &config)
            .expect("live");
        // An older heartbeat is accepted and changes nothing.
        store
            .heartbeat(&user, &session, at(500), &config)
            .expect("live");
        let ttl = i64::try_from(Duration::as_millis(&config.session_ttl)).expect("small");
        let activity = UserOp::Activity {
            session: session.clone(),
        };
        let late = at(1_000 + ttl + 1);
        assert!(change(&store, &activity, late).await.is_err());
        assert!(
            store
                .heartbeat(&user, &session, at(1_000 + ttl - 1), &config)
                .is_err()
        );
        assert!(
            store
                .heartbeat(&UserId::from("other"), &session, at(1_001), &config)
                .is_err()
        );
    }
}
