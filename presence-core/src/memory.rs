//! [`MemoryStore`]: the embedded default store, on `dashmap`.
//!
//! Each user has a slot with its own mutex; a change to one user locks only
//! that slot (plus short critical sections in the indexes). A heartbeat
//! takes no lock at all: it finds its session in the session map and raises
//! the session's atomic timestamp (no allocation, nothing write-locked). A
//! change merges those timestamps into the record under the slot's lock,
//! and marks the sessions it lapses dead with a compare-and-set, so a
//! heartbeat racing a lapse either lands first (the session lives) or fails.
//!
//! The memory store keeps one small record per user it has ever seen (the
//! version and `last_seen` must outlive a user's sessions), so memory grows
//! with the number of distinct users, not with time.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::config::PresenceConfig;
use crate::feed::{Broadcast, ClusterFeed, FeedMessage, FeedSink};
use crate::ids::{NodeId, NodeName, ScopeId, SessionId, UserId};
use crate::machine;
use crate::record::{UserOp, UserPresence, UserRecord, UserView};
use crate::session::SessionEnd;
use crate::store::{PresenceStore, StoreError, Transition, Update};

/// Shards of the deadline index: enough that two cores rarely meet on one.
const DEADLINE_SHARDS: usize = 16;

/// An in-process [`PresenceStore`]. Cheap to create; share it with
/// `Arc<MemoryStore>` or hand it to one service.
pub struct MemoryStore {
    users: DashMap<UserId, Arc<UserSlot>>,
    sessions: DashMap<SessionId, LiveSession>,
    scopes: DashMap<ScopeId, HashSet<UserId>>,
    nodes: DashMap<NodeName, HashSet<UserId>>,
    deadlines: DeadlineIndex,
    feed: Arc<MemoryFeed>,
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
        if nodes.iter().all(|(node, _)| node.name == origin.name) {
            return;
        }
        let broadcast = Broadcast::of(transition, op);
        for (node, sink) in nodes.iter().filter(|(node, _)| node.name != origin.name) {
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
        nodes.retain(|(joined, _)| joined.name != node.name);
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

/// A session's entry in the session map: its user's slot, and its newest
/// heartbeat in ms since the epoch ([`DEAD`] once it has ended).
struct LiveSession {
    slot: Arc<UserSlot>,
    heartbeat: Arc<AtomicI64>,
}

/// The heartbeat of a session that ended: above every real time, so a
/// heartbeat's `fetch_max` leaves it dead.
const DEAD: i64 = i64::MAX;

#[derive(Default)]
struct SlotState {
    record: UserRecord,
    /// What this user has in the indexes now.
    deadline: Option<DateTime<Utc>>,
    indexed_scopes: Vec<ScopeId>,
    indexed_nodes: Vec<NodeName>,
    /// The heartbeat cell of each session of `record`.
    beats: Vec<(SessionId, Arc<AtomicI64>)>,
}

impl SlotState {
    /// Brings the record's heartbeats up to date with the cells, and marks
    /// dead (by compare-and-set) every session lapsed at `now`: a heartbeat
    /// that slips in first keeps its session alive instead.
    fn merge_heartbeats(&mut self, now: DateTime<Utc>, config: &PresenceConfig) {
        let ttl = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let now_ms = now.timestamp_millis();
        for (id, cell) in &self.beats {
            let Some(session) = self.record.sessions.iter_mut().find(|s| s.id == *id) else {
                continue;
            };
            let stored = session.last_heartbeat.timestamp_millis();
            let mut seen = cell.load(Ordering::Acquire);
            let newest = loop {
                if seen == DEAD {
                    break stored;
                }
                let newest = seen.max(stored);
                if newest.saturating_add(ttl) > now_ms {
                    break newest;
                }
                match cell.compare_exchange(seen, DEAD, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break newest,
                    Err(fresher) => seen = fresher,
                }
            };
            if newest > stored
                && let Some(at) = DateTime::<Utc>::from_timestamp_millis(newest)
            {
                session.last_heartbeat = at;
            }
        }
    }
}

impl UserSlot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // A panic elsewhere cannot leave a record half-written: records are
        // replaced whole by the machine, so a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            users: DashMap::new(),
            sessions: DashMap::new(),
            scopes: DashMap::new(),
            nodes: DashMap::new(),
            deadlines: DeadlineIndex::new(),
            feed: Arc::default(),
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
            if let Some((_, gone)) = self
                .sessions
                .remove_if(ended, |_, live| Arc::ptr_eq(&live.slot, slot))
            {
                gone.heartbeat.store(DEAD, Ordering::Release);
            }
            // A session reopened under its id gets a fresh cell below.
            state.beats.retain(|(id, _)| id != ended);
        }
        let record = &state.record;
        state
            .beats
            .retain(|(id, _)| record.sessions.iter().any(|s| s.id == *id));
        for session in &record.sessions {
            let at = session.last_heartbeat.timestamp_millis();
            match state.beats.iter().find(|(id, _)| *id == session.id) {
                // Opened again, or activity: the session proved live now.
                Some((_, cell)) => {
                    cell.fetch_max(at, Ordering::AcqRel);
                }
                None => {
                    let cell = Arc::new(AtomicI64::new(at));
                    self.sessions.insert(
                        session.id.clone(),
                        LiveSession {
                            slot: slot.clone(),
                            heartbeat: cell.clone(),
                        },
                    );
                    state.beats.push((session.id.clone(), cell));
                }
            }
        }

        let wanted_scopes: &[ScopeId] = if transition.present {
            &record.scopes
        } else {
            &[]
        };
        sync_index(
            &self.scopes,
            &slot.user,
            &mut state.indexed_scopes,
            wanted_scopes,
        );

        let mut wanted_nodes: Vec<NodeName> = Vec::new();
        for session in &record.sessions {
            if !wanted_nodes.contains(&session.node.name) {
                wanted_nodes.push(session.node.name.clone());
            }
        }
        sync_index(
            &self.nodes,
            &slot.user,
            &mut state.indexed_nodes,
            &wanted_nodes,
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
        state.merge_heartbeats(update.now, update.config);
        let transition = machine::apply(
            update.user,
            &mut state.record,
            update.op,
            update.now,
            update.config,
        )?;
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
        let live = self
            .sessions
            .get(session)
            .ok_or(StoreError::SessionNotFound)?;
        if live.slot.user != *user {
            return Err(StoreError::SessionNotFound);
        }
        let ttl = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let now_ms = now.timestamp_millis();
        let cell = &live.heartbeat;
        let seen = cell.load(Ordering::Acquire);
        if seen == DEAD || seen.saturating_add(ttl) <= now_ms {
            return Err(StoreError::SessionNotFound);
        }
        // A change that lapsed the session meanwhile set it to DEAD, which
        // `fetch_max` keeps: the heartbeat came too late.
        if cell.fetch_max(now_ms, Ordering::AcqRel) == DEAD {
            return Err(StoreError::SessionNotFound);
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
        let members: Vec<UserId> = match self.scopes.get(scope) {
            Some(members) => members.iter().cloned().collect(),
            None => return Ok(Vec::new()),
        };
        Ok(members
            .iter()
            .map(|user| self.record_of(user, |record| UserPresence::of(user.clone(), record)))
            .collect())
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        Ok(self.deadlines.due(now, limit))
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

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        Some(self.feed.clone())
    }
}

/// Makes `user` a member of exactly the keys in `wanted`, given that it is a
/// member of those in `indexed` now; empty sets are dropped so the index
/// does not grow with keys nobody uses any more.
fn sync_index<K: Eq + Hash + Clone>(
    index: &DashMap<K, HashSet<UserId>>,
    user: &UserId,
    indexed: &mut Vec<K>,
    wanted: &[K],
) {
    indexed.retain(|key| {
        if wanted.contains(key) {
            return true;
        }
        if let Some(mut members) = index.get_mut(key) {
            members.remove(user);
        }
        index.remove_if(key, |_, members| members.is_empty());
        false
    });
    for key in wanted {
        if !indexed.contains(key) {
            index.entry(key.clone()).or_default().insert(user.clone());
            indexed.push(key.clone());
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
