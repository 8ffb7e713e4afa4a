//! The memory store with the faults of a real deployment: data that can be
//! lost and a cluster feed that can drop, for the simulation.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use presence_core::store::{
    ClusterFeed, FeedMessage, FeedSink, PresenceStore, StoreError, Transition, Update, UserView,
};
use presence_core::{
    Clock, Epoch, MemoryStore, NodeId, NodeName, PresenceConfig, ScopeId, SessionId, UserId,
    UserPresence,
};

use super::backend::Deployment;

/// A [`MemoryStore`] that can lose its data, behind a feed each process's
/// connection to which can drop.
pub struct FaultyMemory {
    inner: RwLock<Arc<MemoryStore>>,
    feed: Arc<GatedFeed>,
    /// The store's clock (true time), which outlives its data.
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for FaultyMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyMemory").finish_non_exhaustive()
    }
}

impl FaultyMemory {
    /// An empty store with a clock of its own (see
    /// [`MemoryStore::with_clock`]).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Arc<Self> {
        let store = Self::new();
        let inner = store.store();
        Arc::new(Self {
            inner: RwLock::new(inner),
            feed: store.feed.clone(),
            clock: Some(clock),
        })
    }

    /// An empty store.
    pub fn new() -> Arc<Self> {
        let inner = Arc::new(MemoryStore::new());
        Arc::new(Self {
            feed: Arc::new(GatedFeed {
                inner: Mutex::new(inner.cluster_feed().expect("the memory store has a feed")),
                gates: Mutex::new(Vec::new()),
            }),
            inner: RwLock::new(inner),
            clock: None,
        })
    }

    fn store(&self) -> Arc<MemoryStore> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A process's connection to the feed: messages pass while it is open.
struct Gate {
    node: NodeId,
    sink: Arc<dyn FeedSink>,
    open: AtomicBool,
}

impl FeedSink for Gate {
    fn deliver(&self, message: FeedMessage) {
        if self.open.load(Ordering::Acquire) {
            self.sink.deliver(message);
        }
    }
}

struct GatedFeed {
    inner: Mutex<Arc<dyn ClusterFeed>>,
    gates: Mutex<Vec<Arc<Gate>>>,
}

impl fmt::Debug for GatedFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatedFeed").finish_non_exhaustive()
    }
}

impl GatedFeed {
    fn inner(&self) -> Arc<dyn ClusterFeed> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn gates(&self) -> Vec<Arc<Gate>> {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl ClusterFeed for GatedFeed {
    async fn join(&self, node: &NodeId, sink: Arc<dyn FeedSink>) -> Result<(), StoreError> {
        let gate = Arc::new(Gate {
            node: node.clone(),
            sink,
            open: AtomicBool::new(true),
        });
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gate.clone());
        self.inner().join(node, gate).await
    }

    fn leave(&self, node: &NodeId) {
        self.gates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|gate| gate.node != *node);
        self.inner().leave(node);
    }

    fn watch(&self, node: &NodeId, scope: &ScopeId) {
        self.inner().watch(node, scope);
    }

    fn unwatch(&self, node: &NodeId, scope: &ScopeId) {
        self.inner().unwatch(node, scope);
    }
}

#[async_trait]
impl PresenceStore for FaultyMemory {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        self.store().apply(update).await
    }

    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        self.store().heartbeat(user, session, now, config)
    }

    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        self.store().load_many(users).await
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        self.store().scope_members(scope).await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        self.store().due(now, limit).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        self.store().claim_due(now, limit, hold_until).await
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store().next_deadline().await
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        self.store().users_on_node(node).await
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.store().renew_lease(node, until).await
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        self.store().end_lease(node).await
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        self.store().expired_leases(now).await
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        self.store().leases(name).await
    }

    fn heartbeat_delay(&self) -> std::time::Duration {
        self.store().heartbeat_delay()
    }

    async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        self.store().flush_heartbeats().await
    }

    async fn time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.clock.as_ref().map(|clock| clock.now()))
    }

    fn epoch(&self) -> Epoch {
        self.store().epoch()
    }

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        Some(self.feed.clone())
    }
}

#[async_trait]
impl Deployment for Arc<FaultyMemory> {
    async fn store_for_process(&self) -> Arc<dyn PresenceStore> {
        self.clone()
    }

    async fn lose_data(&self) {
        let fresh = Arc::new(MemoryStore::new());
        let feed = fresh.cluster_feed().expect("the memory store has a feed");
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        *self
            .feed
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = feed.clone();
        // As a restarted server drops every feed connection: each process
        // reconnects, and is told it may have missed everything.
        for gate in self.feed.gates() {
            let _ = feed.join(&gate.node, gate.clone()).await;
            gate.sink.deliver(FeedMessage::Resync);
        }
    }

    async fn drop_feed(&self, node: &NodeId) {
        for gate in self.feed.gates() {
            if gate.node == *node {
                gate.open.store(false, Ordering::Release);
            }
        }
    }

    async fn restore_feed(&self, node: &NodeId) {
        for gate in self.feed.gates() {
            if gate.node == *node && !gate.open.swap(true, Ordering::AcqRel) {
                gate.sink.deliver(FeedMessage::Resync);
            }
        }
    }

    fn feed_reconnects_by_itself(&self) -> bool {
        false
    }

    fn keeps_true_time(&self) -> bool {
        self.clock.is_some()
    }

    async fn settle(&self) {
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
    }

    async fn flush(&self) {}

    async fn tear_down(&self) {}
}
