//! A store that counts the scope reads reaching it, in front of any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use presence_core::store::{ClusterFeed, PresenceStore, StoreError, Transition, Update, UserView};
use presence_core::{
    Epoch, NodeId, NodeName, PresenceConfig, ScopeId, SessionId, UserId, UserPresence,
};

/// Passes every call to `inner`, counting [`PresenceStore::scope_members`]
/// calls, and says its calls cost I/O (as a server's would), whatever
/// `inner` is: a service on it then keeps node-local scope views.
#[derive(Debug)]
pub struct CountingReads {
    inner: Arc<dyn PresenceStore>,
    scope_reads: AtomicUsize,
}

impl CountingReads {
    /// `inner`, counted.
    pub fn new(inner: Arc<dyn PresenceStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            scope_reads: AtomicUsize::new(0),
        })
    }

    /// How many scope reads reached the store so far.
    pub fn scope_reads(&self) -> usize {
        self.scope_reads.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl PresenceStore for CountingReads {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        self.inner.apply(update).await
    }

    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        self.inner.heartbeat(user, session, now, config)
    }

    fn heartbeat_delay(&self) -> Duration {
        self.inner.heartbeat_delay()
    }

    async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        self.inner.flush_heartbeats().await
    }

    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        self.inner.load_many(users).await
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        self.scope_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.scope_members(scope).await
    }

    async fn scope_members_page(
        &self,
        scope: &ScopeId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserPresence>, StoreError> {
        self.inner.scope_members_page(scope, after, limit).await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        self.inner.due(now, limit).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        self.inner.claim_due(now, limit, hold_until).await
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_deadline().await
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        self.inner.users_on_node(node).await
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.renew_lease(node, until).await
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        self.inner.end_lease(node).await
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        self.inner.expired_leases(now).await
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        self.inner.leases(name).await
    }

    async fn time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.time().await
    }

    fn epoch(&self) -> Epoch {
        self.inner.epoch()
    }

    async fn reload_epoch(&self) -> Result<Epoch, StoreError> {
        self.inner.reload_epoch().await
    }

    fn completes_without_io(&self) -> bool {
        false
    }

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        self.inner.cluster_feed()
    }
}
