//! [`PgStore`]: the [`PresenceStore`] contract on PostgreSQL.
//!
//! A change is one transaction: lock the user's row (`SELECT … FOR
//! UPDATE`, creating the row first for a new user), read the heartbeats of
//! their sessions, run the core's state machine in Rust, and write the
//! result (user row, sessions, scope members, the change kept for durable
//! readers, notifications) in one statement before `COMMIT`. The row lock
//! makes each user's changes one at a time across every node, so the first
//! and last session of a user are decided exactly once.

mod channels;
mod feed;
mod flush;
mod sql;

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use presence_core::store::kit::{self, Flushes, KnownEpoch, LocalSessions, UserLocks};
use presence_core::store::{
    Broadcast, ChangeId, ClusterFeed, KeptChange, PresenceStore, StoreError, Transition, Update,
    UserRecord, UserView,
};
use presence_core::{
    Epoch, NodeId, NodeName, PresenceConfig, ScopeId, SessionEnd, SessionId, UserId, UserPresence,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use crate::change::{self, Change, Stored};
use crate::config::PgConfig;
use crate::error::store_error;
use crate::{kept, rows};

use channels::{Channels, ended_payloads, event_payload};
use feed::PgFeed;

/// The embedded migrations (`migrations/postgres`).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A [`PresenceStore`] on PostgreSQL; several services (nodes) pointed at
/// one database and schema are one presence cluster. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    config: PgConfig,
    local: Arc<LocalSessions>,
    feed: Arc<PgFeed>,
    channels: Channels,
    locks: UserLocks,
    /// The epoch this store last read (see [`PgStore::read_epoch`]).
    epoch: KnownEpoch,
}

impl Shared {
    /// Reads the store's epoch (writing a fresh one if its data was wiped)
    /// and keeps it; whether it changed since this store last read it.
    pub(crate) async fn read_epoch(&self) -> Result<(Epoch, bool), StoreError> {
        let epoch: String = sqlx::query_scalar(sql::EPOCH)
            .bind(Epoch::random().as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| store_error(e, self.config.acquire_timeout))?;
        let epoch = Epoch::from(epoch);
        let changed = self.epoch.observe(epoch.clone());
        Ok((epoch, changed))
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.shared.config.schema)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects (failing if PostgreSQL cannot be reached within
    /// [`PgConfig::acquire_timeout`]), creates the schema and runs the
    /// migrations unless [`PgConfig::migrate`] is off, and starts the
    /// heartbeat flusher. Must run inside a tokio runtime.
    pub async fn connect(config: PgConfig) -> Result<Self, StoreError> {
        check_schema(&config.schema)?;
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Backend(Box::new(e)))?
            .options([("search_path", config.schema.as_str())]);
        // Operators see whose connections these are in `pg_stat_activity`.
        let pool_options = options
            .clone()
            .application_name(&format!("presence:{}", config.schema));
        let feed_options = options.application_name(&format!("presence-feed:{}", config.schema));
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(pool_options)
            .await
            .map_err(|e| store_error(e, config.acquire_timeout))?;
        let channels = Channels::new(&config.schema);
        let local = Arc::new(LocalSessions::default());
        let feed = Arc::new(PgFeed::new(
            feed_options,
            config.acquire_timeout,
            channels.clone(),
            local.clone(),
        ));
        let shared = Arc::new(Shared {
            pool,
            config,
            local,
            feed,
            channels,
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

    /// Creates the schema if it is missing and brings its tables up to date
    /// with the embedded migrations. Safe to run from several nodes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        // The schema name was checked: lower-case letters, digits and `_`.
        let create = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            self.shared.config.schema
        );
        if let Err(error) = sqlx::query(AssertSqlSafe(create))
            .execute(&self.shared.pool)
            .await
        {
            // Another node created it at the same instant.
            let raced = error
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "23505" || code == "42P06");
            if !raced {
                return Err(self.fail(error));
            }
        }
        // On the pool, not a connection held here: the future stays `Send`
        // (a host may connect inside `tokio::spawn`).
        MIGRATOR
            .run(&self.shared.pool)
            .await
            .map_err(|e| self.fail(sqlx::Error::Migrate(Box::new(e))))
    }

    /// How many sessions this process holds (opened through it, not ended):
    /// for operators' metrics.
    pub fn held_sessions(&self) -> usize {
        self.shared.local.count()
    }

    /// Writes the heartbeats buffered so far now, rather than at the next
    /// flush interval (e.g. before a graceful shutdown, or to measure);
    /// returns how many.
    pub async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        Flushes::flush(&*self.shared).await
    }

    /// Reads the store's epoch (writing a fresh one if its data was wiped)
    /// and keeps it.
    async fn read_epoch(&self) -> Result<Epoch, StoreError> {
        self.shared.read_epoch().await.map(|(epoch, _)| epoch)
    }

    /// The connection pool, for operators' queries on the same database.
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    fn fail(&self, error: sqlx::Error) -> StoreError {
        store_error(error, self.shared.config.acquire_timeout)
    }

    /// Locks the user's row (creating it for a new user) and their session
    /// rows (in session id order), and reads them.
    async fn lock_user(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        user: &UserId,
    ) -> Result<Stored, StoreError> {
        let mut record = self.read_locked(tx, user).await?;
        if record.is_none() {
            let empty =
                serde_json::to_string(&UserRecord::default()).map_err(StoreError::corrupt)?;
            sqlx::query(sql::CREATE_USER)
                .bind(user.as_str())
                .bind(empty)
                .execute(&mut **tx)
                .await
                .map_err(|e| self.fail(e))?;
            record = self.read_locked(tx, user).await?;
        }
        let Some(record) = record else {
            return Err(StoreError::Backend("the user's row vanished".into()));
        };
        let heartbeats: Vec<(String, i64)> = sqlx::query_as(sql::LOCK_SESSIONS)
            .bind(user.as_str())
            .fetch_all(&mut **tx)
            .await
            .map_err(|e| self.fail(e))?;
        Stored::decode(Some(&record), heartbeats)
    }

    async fn read_locked(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        user: &UserId,
    ) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar(sql::LOCK_USER)
            .bind(user.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Writes a computed change in the locked transaction; the row id of
    /// the change it kept, if it kept one.
    async fn write(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        update: &Update<'_>,
        change: &Change,
    ) -> Result<Option<i64>, StoreError> {
        let (channels, payloads) = self.notifications(update, &change.transition)?;
        let row = &change.row;
        let sessions = &change.upserts;
        let (kept, _notified): (Option<i64>, i64) = sqlx::query_as(sql::WRITE_CHANGE)
            .bind(update.user.as_str())
            .bind(change.record_json.as_str())
            .bind(row.status)
            .bind(row.version)
            .bind(row.manual_status)
            .bind(row.manual_until)
            .bind(row.last_seen)
            .bind(row.next_deadline)
            .bind(&change.deletes)
            .bind(&sessions.ids)
            .bind(&sessions.nodes)
            .bind(&sessions.logins)
            .bind(&sessions.opened_ms)
            .bind(&sessions.heartbeat_ms)
            .bind(&sessions.expires_ms)
            .bind(&change.scopes_left)
            .bind(&change.scopes_joined)
            .bind(channels)
            .bind(payloads)
            .bind(row.details.as_deref())
            .bind(update.node.name.as_str())
            .bind(kept::stored_incarnation(update.node.incarnation))
            .bind(change.kept.as_deref())
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(kept)
    }

    /// What the other nodes must hear of a change: its events, on the
    /// store's event channel, and the sessions it ended or took over, on
    /// each holder's channel (the node making the change tells its own
    /// sessions itself).
    fn notifications(
        &self,
        update: &Update<'_>,
        transition: &Transition,
    ) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let broadcast = Broadcast::of(transition, update.op);
        let mut channels = Vec::new();
        let mut payloads = Vec::new();
        for event in broadcast.events {
            channels.push(self.shared.channels.events().to_owned());
            payloads.push(event_payload(&update.node.name, event).map_err(StoreError::corrupt)?);
        }
        let ended = broadcast.ended.iter().map(|e| (e, broadcast.reason));
        let replaced = broadcast.replaced.iter().map(|e| (e, SessionEnd::Replaced));
        for ((holder, sessions), reason) in ended.chain(replaced) {
            let told =
                ended_payloads(sessions, reason, update.node).map_err(StoreError::corrupt)?;
            for payload in told {
                channels.push(self.shared.channels.ended(holder));
                payloads.push(payload);
            }
        }
        Ok((channels, payloads))
    }
}

/// Keeps the schema name to what needs no quoting anywhere (`search_path`,
/// identifiers).
fn check_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Backend(
            format!(
                "schema {schema:?} must be lower-case ASCII letters, digits and `_`, \
                 start with a letter or `_`, and be at most 63 bytes"
            )
            .into(),
        ))
    }
}

fn at_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

#[async_trait]
impl PresenceStore for PgStore {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        // This process's changes to one user wait here, not on the row.
        let _turn = self.shared.locks.lock(update.user).await;
        let mut tx = self.shared.pool.begin().await.map_err(|e| self.fail(e))?;
        let stored = self.lock_user(&mut tx, update.user).await?;
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
        let rows: Vec<(String, String)> = sqlx::query_as(sql::LOAD_MANY)
            .bind(ids)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows::views_in_order(users, rows)
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        let rows: Vec<rows::MemberRow> = sqlx::query_as(sql::SCOPE_MEMBERS)
            .bind(scope.as_str())
            .fetch_all(&self.shared.pool)
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
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows::members(rows)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<String> = sqlx::query_scalar(sql::DUE)
            .bind(now.timestamp_millis())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.pool)
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
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(users.into_iter().map(UserId::from).collect())
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let first: Option<i64> = sqlx::query_scalar(sql::NEXT_DEADLINE)
            .fetch_one(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(first.and_then(at_ms))
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        let users: Vec<String> = sqlx::query_scalar(sql::USERS_ON_NODE)
            .bind(node.as_str())
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(users.into_iter().map(UserId::from).collect())
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(sql::RENEW_LEASE)
            .bind(node.name.as_str())
            .bind(node.incarnation.to_string())
            .bind(until.timestamp_millis())
            .execute(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        sqlx::query(sql::END_LEASE)
            .bind(node.name.as_str())
            .bind(node.incarnation.to_string())
            .execute(&self.shared.pool)
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
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows::node_leases(rows)
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql::LEASES)
            .bind(name.as_str())
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        rows::leases(rows)
    }

    async fn time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: i64 = sqlx::query_scalar(sql::NOW)
            .fetch_one(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(at_ms(ms))
    }

    fn epoch(&self) -> Epoch {
        self.shared.epoch.get()
    }

    async fn reload_epoch(&self) -> Result<Epoch, StoreError> {
        self.read_epoch().await
    }

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        Some(self.shared.feed.clone())
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
        let rows: Vec<kept::KeptRow> = sqlx::query_as(sql::KEPT_CHANGES)
            .bind(name.as_str())
            .bind(kept::stored_incarnations(except))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.pool)
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
            .bind(ids)
            .execute(&self.shared.pool)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }
}
