//! What the integration tests share: where PostgreSQL is, fresh schemas and
//! files, and a store wrapper that cleans up after its test.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use presence_core::store::{
    ChangeId, ClusterFeed, KeptChange, PresenceStore, StoreError, Transition, Update, UserView,
};
use presence_core::{
    Epoch, NodeId, NodeName, PresenceConfig, ScopeId, SessionId, UserId, UserPresence,
};

/// The test database: `PRESENCE_TEST_POSTGRES_URL`, or the local server
/// with trust authentication.
pub(crate) fn postgres_url() -> String {
    std::env::var("PRESENCE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test uses.
pub(crate) fn fresh_schema() -> String {
    format!("presence_test_{}", uuid::Uuid::new_v4().simple())
}

/// A database file path no other test uses, in the temporary directory.
pub(crate) fn fresh_sqlite_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "presence-test-{}.db",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Drops a test schema (best effort), from a thread and runtime of its own
/// so that it can run inside `Drop`.
#[cfg(feature = "postgres")]
pub(crate) fn drop_schema(url: String, schema: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&url).await.ok()?;
            let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut connection)
                .await
                .ok()
        })
    })
    .join();
    if !matches!(dropped, Ok(Some(_))) {
        eprintln!("could not drop a test schema (left for later)");
    }
}

/// Removes a test database file and its WAL companions (best effort).
pub(crate) fn remove_sqlite_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

type Cleanup = Box<dyn FnOnce() + Send>;

/// A store that runs `cleanup` once it is dropped (after the store itself).
pub(crate) struct CleanedUp {
    store: Option<Arc<dyn PresenceStore>>,
    cleanup: Mutex<Option<Cleanup>>,
}

impl CleanedUp {
    pub(crate) fn new(
        store: Arc<dyn PresenceStore>,
        cleanup: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self {
            store: Some(store),
            cleanup: Mutex::new(Some(Box::new(cleanup))),
        }
    }

    fn store(&self) -> &dyn PresenceStore {
        self.store.as_deref().expect("the store lives until drop")
    }
}

impl Drop for CleanedUp {
    fn drop(&mut self) {
        drop(self.store.take());
        let cleanup = self
            .cleanup
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(cleanup) = cleanup {
            cleanup();
        }
    }
}

impl std::fmt::Debug for CleanedUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.store.fmt(f)
    }
}

#[async_trait]
impl PresenceStore for CleanedUp {
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

    // Forwarded, or the trait's default would answer instead of the store's
    // own query.
    async fn scope_members_page(
        &self,
        scope: &ScopeId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserPresence>, StoreError> {
        self.store().scope_members_page(scope, after, limit).await
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
        self.store().time().await
    }

    fn epoch(&self) -> Epoch {
        self.store().epoch()
    }

    async fn reload_epoch(&self) -> Result<Epoch, StoreError> {
        self.store().reload_epoch().await
    }

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        self.store().cluster_feed()
    }

    fn keeps_changes(&self) -> bool {
        self.store().keeps_changes()
    }

    async fn kept_changes(
        &self,
        name: &NodeName,
        except: &[u64],
        limit: usize,
    ) -> Result<Vec<KeptChange>, StoreError> {
        self.store().kept_changes(name, except, limit).await
    }

    async fn forget_changes(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        self.store().forget_changes(name, ids).await
    }
}
