//! [`SqliteStore`]: the [`PresenceStore`] contract in a SQLite file, for
//! one node.
//!
//! Every change is one `BEGIN IMMEDIATE` transaction on the store's single
//! writer connection: read the user's record and heartbeats, run the core's
//! state machine in Rust, write the user row, sessions and scope members
//! (and the change kept for durable readers, if asked), commit. One writer
//! makes changes one at a time; readers run beside it (WAL). There is no
//! cluster feed: a SQLite store belongs to one service in one process.

mod flush;
mod sql;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use presence_core::store::kit::{self, Flushes, KnownEpoch, LocalSessions, UserLocks};
use presence_core::store::{
    ChangeId, KeptChange, PresenceStore, StoreError, Transition, Update, UserView,
};
use presence_core::{
    Epoch, NodeId, NodeName, PresenceConfig, ScopeId, SessionId, UserId, UserPresence,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::change::{self, Change, Stored};
use crate::config::SqliteConfig;
use crate::error::store_error;
use crate::{kept, rows};

/// The embedded migrations (`migrations/sqlite`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A [`PresenceStore`] in a SQLite database file, for a single node (one
/// service in one process). Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

struct Shared {
    /// The one connection that writes.
    writer: SqlitePool,
    /// Connections that only read.
    readers: SqlitePool,
    config: SqliteConfig,
    local: LocalSessions,
    locks: UserLocks,
    /// The database file's epoch, read at connect.
    epoch: KnownEpoch,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("url", &self.shared.config.url)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database file (creating it if missing, in WAL mode), runs
    /// the migrations unless [`SqliteConfig::migrate`] is off, and starts
    /// the heartbeat flusher. Must run inside a tokio runtime.
    pub async fn connect(config: SqliteConfig) -> Result<Self, StoreError> {
        let fail = |e| store_error(e, config.acquire_timeout);
        let options = if config.url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(&config.url)
                .map_err(|e| StoreError::Backend(Box::new(e)))?
        } else {
            SqliteConnectOptions::new().filename(&config.url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(config.acquire_timeout);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(fail)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(config.max_readers.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(fail)?;
        let shared = Arc::new(Shared {
            writer,
            readers,
            config,
            local: LocalSessions::default(),
            locks: UserLocks::default(),
            epoch: KnownEpoch::new(Epoch::from("")),
        });
        let store = Self { shared };
        if store.shared.config.migrate {
            store.migrate().await?;
        }
        store.read_epoch().await?;
        kit::spawn_flusher(&store.shared, store.shared.config.flush_interval);
        Ok(store)
    }

    /// Reads the database's epoch (writing a fresh one if its data was
    /// wiped) and keeps it.
    async fn read_epoch(&self) -> Result<Epoch, StoreError> {
        sqlx::query(sql::CLAIM_EPOCH)
            .bind(Epoch::random().as_str())
            .execute(&self.shared.writer)
            .await
            .map_err(|e| self.fail(e))?;
        let epoch: String = sqlx::query_scalar(sql::EPOCH)
            .fetch_one(&self.shared.writer)
            .await
            .map_err(|e| self.fail(e))?;
        let epoch = Epoch::from(epoch);
        self.shared.epoch.observe(epoch.clone());
        Ok(epoch)
    }

    /// Brings the database's tables up to date with the embedded
    /// migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.shared.writer)
            .await
            .map_err(|e| self.fail(sqlx::Error::Migrate(Box::new(e))))
    }

    /// How many sessions this process holds (opened through it, not ended):
    /// for operators' metrics.
    pub fn held_sessions(&self) -> usize {
        self.shared.local.count()
    }

    /// Writes the heartbeats buffered so far now, rather than at the next
    /// flush interval; returns how many.
    pub async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        Flushes::flush(&*self.shared).await
    }

    fn fail(&self, error: sqlx::Error) -> StoreError {
        store_error(error, self.shared.config.acquire_timeout)
    }

    async fn read_user(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        user: &UserId,
    ) -> Result<Stored, StoreError> {
        let record: Option<String> = sqlx::query_scalar(sql::READ_USER)
            .bind(user.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.fail(e))?;
        let heartbeats: Vec<(String, i64)> = sqlx::query_as(sql::READ_HEARTBEATS)
            .bind(user.as_str())
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| self.fail(e))?;
        Stored::decode(record.as_deref(), heartbeats)
    }

    /// Writes a computed change in the transaction; the row id of the
    /// change it kept, if it kept one.
    async fn write(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        update: &Update<'_>,
        change: &Change,
    ) -> Result<Option<i64>, StoreError> {
        let fail = |e| self.fail(e);
        let user = update.user;
        let row = &change.row;
        sqlx::query(sql::WRITE_USER)
            .bind(user.as_str())
            .bind(change.record_json.as_str())
            .bind(row.status)
            .bind(row.version)
            .bind(row.manual_status)
            .bind(row.manual_until)
            .bind(row.last_seen)
            .bind(row.next_deadline)
            .bind(row.details.as_deref())
            .execute(&mut **tx)
            .await
            .map_err(fail)?;
        let lists = [
            (sql::DELETE_SESSIONS, json_list(&change.deletes)),
            (sql::LEAVE_SCOPES, json_list(&change.scopes_left)),
            (sql::JOIN_SCOPES, json_list(&change.scopes_joined)),
        ];
        for (statement, list) in lists {
            if let Some(list) = list {
                sqlx::query(statement)
                    .bind(user.as_str())
                    .bind(list)
                    .execute(&mut **tx)
                    .await
                    .map_err(fail)?;
            }
        }
        if !change.upserts.is_empty() {
            sqlx::query(sql::WRITE_SESSIONS)
                .bind(user.as_str())
                .bind(change.upserts.to_json())
                .execute(&mut **tx)
                .await
                .map_err(fail)?;
        }
        let Some(json) = &change.kept else {
            return Ok(None);
        };
        let id: i64 = sqlx::query_scalar(sql::KEEP_CHANGE)
            .bind(update.node.name.as_str())
            .bind(kept::stored_incarnation(update.node.incarnation))
            .bind(json.as_str())
            .fetch_one(&mut **tx)
            .await
            .map_err(fail)?;
        Ok(Some(id))
    }
}

/// A non-empty list as a JSON array.
fn json_list(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| serde_json::Value::from(items.to_vec()).to_string())
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        let _turn = self.shared.locks.lock(update.user).await;
        let mut tx = self
            .shared
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.fail(e))?;
        let stored = self.read_user(&mut tx, update.user).await?;
        // On an error the transaction rolls back as it is dropped.
        let mut change = change::compute(stored, &self.shared.local, &update)?;
        let kept = self.write(&mut tx, &update, &change).await?;
        tx.commit().await.map_err(|e| self.fail(e))?;
        change.transition.kept = kept.map(kept::change_id);
        self.shared
            .local
            .after_change(&update, &change.transition, &change.record, || ());
        Ok(change.transition)
    }

    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        self.shared.local.beat(user, session, now, config)
    }

    fn heartbeat_delay(&self) -> std::time::Duration {
        self.shared.config.flush_interval
    }

    async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        Self::flush_heartbeats(self).await
    }

    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
        let ids = serde_json::Value::from(ids).to_string();
        let rows: Vec<(String, String)> = sqlx::query_as(sql::LOAD_MANY)
            .bind(ids)
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        rows::views_in_order(users, rows)
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        let rows: Vec<rows::MemberRow> = sqlx::query_as(sql::SCOPE_MEMBERS)
            .bind(scope.as_str())
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        rows::members(rows)
    }

    /// One ordered range of the scope's primary key, joined with the
    /// users' rows (not every member read and sorted, as the default does).
    async fn scope_members_page(
        &self,
        scope: &ScopeId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserPresence>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let query = match after {
            None => sqlx::query_as(sql::SCOPE_MEMBERS_PAGE)
                .bind(scope.as_str())
                .bind(limit),
            Some(after) => sqlx::query_as(sql::SCOPE_MEMBERS_PAGE_AFTER)
                .bind(scope.as_str())
                .bind(after.as_str())
                .bind(limit),
        };
        let rows: Vec<rows::MemberRow> = query
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        rows::members(rows)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<String> = sqlx::query_scalar(sql::DUE)
            .bind(now.timestamp_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(users.into_iter().map(UserId::from).collect())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<String> = sqlx::query_scalar(sql::CLAIM_DUE)
            .bind(now.timestamp_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(hold_until.timestamp_millis())
            .fetch_all(&self.shared.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(users.into_iter().map(UserId::from).collect())
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let first: Option<i64> = sqlx::query_scalar(sql::NEXT_DEADLINE)
            .fetch_one(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(first.and_then(DateTime::<Utc>::from_timestamp_millis))
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<String> = sqlx::query_scalar(sql::USERS_ON_NODE)
            .bind(node.as_str())
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(users.into_iter().map(UserId::from).collect())
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(sql::RENEW_LEASE)
            .bind(node.name.as_str())
            .bind(node.incarnation.to_string())
            .bind(until.timestamp_millis())
            .execute(&self.shared.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        sqlx::query(sql::END_LEASE)
            .bind(node.name.as_str())
            .bind(node.incarnation.to_string())
            .execute(&self.shared.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(sql::EXPIRED_LEASES)
            .bind(now.timestamp_millis())
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        rows::node_leases(rows)
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::LEASES)
            .bind(name.as_str())
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        rows::leases(rows)
    }

    fn epoch(&self) -> Epoch {
        self.shared.epoch.get()
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
        let except = serde_json::Value::from(kept::stored_incarnations(except)).to_string();
        let rows: Vec<kept::KeptRow> = sqlx::query_as(sql::KEPT_CHANGES)
            .bind(name.as_str())
            .bind(except)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.readers)
            .await
            .map_err(|e| self.fail(e))?;
        kept::decode(rows)
    }

    async fn forget_changes(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        let ids = kept::row_ids(ids)?;
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(sql::FORGET_CHANGES)
            .bind(name.as_str())
            .bind(serde_json::Value::from(ids).to_string())
            .execute(&self.shared.writer)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }
}
