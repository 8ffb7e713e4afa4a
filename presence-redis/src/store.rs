//! [`RedisStore`]: the [`PresenceStore`] contract on Redis.
//!
//! A change reads the user's record (and heartbeats) in one round trip,
//! runs the core's state machine on it in Rust, then writes the result with
//! one compare-and-set script that checks the record's revision, writes the
//! record and every index, and publishes the events, atomically. If another
//! node changed the user in between, the change is computed again from the
//! fresh record. The first and last session of a user are thereby decided
//! exactly once, whichever nodes race.
//!
//! A user's keys and index entries live in the user's shard (see
//! [`crate::keys`]), so the script touches one shard; reads that span users
//! read every shard (see [`crate::pipelines`]) and merge. So does the
//! change a node keeps for its durable readers (see [`crate::outbox`]): the
//! script appends it to the stream of the user's shard.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use presence_core::store::kit::{
    self, EndedMessage, EventMessage, Flushes, HeartbeatWriter, KnownEpoch, LocalSessions,
    PendingBeat, UserLocks, merge_heartbeats,
};
use presence_core::store::{
    Broadcast, ChangeId, ClusterFeed, KeptChange, PresenceStore, StoreError, Transition, Update,
    UserOp, UserRecord, UserView, machine,
};
use presence_core::{
    Epoch, NodeId, NodeName, PresenceConfig, ScopeId, SessionEnd, SessionId, UserId, UserPresence,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::json;

use crate::config::RedisConfig;
use crate::connection::Connection;
use crate::epoch::{self, read_epoch};
use crate::error::store_error;
use crate::feed::RedisFeed;
use crate::keys::Keys;
use crate::outbox::{self, Outbox};
use crate::pipelines::query_grouped;
use crate::scripts::{self, Applied};
use crate::shards::{MAX_SHARDS, Shard};
use crate::topology::FeedNodes;

/// A [`PresenceStore`] on Redis; several services (nodes) pointed at one
/// Redis and prefix are one presence cluster. Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    connection: Connection,
    keys: Keys,
    config: RedisConfig,
    /// This process's sessions; each keeps its user's heartbeat key.
    local: Arc<LocalSessions<Box<str>>>,
    feed: Arc<RedisFeed>,
    user_locks: UserLocks,
    /// The epoch this store last read (see [`read_epoch`]).
    epoch: KnownEpoch,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.shared.config.url)
            .field("prefix", &self.shared.config.prefix)
            .finish_non_exhaustive()
    }
}

/// A user's record as read, with the revision the write must find.
struct Loaded {
    record: UserRecord,
    revision: String,
}

impl RedisStore {
    /// Connects (failing at once if Redis cannot be reached) and starts the
    /// heartbeat flusher. Must run inside a tokio runtime.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        if !(1..=MAX_SHARDS).contains(&config.shards) {
            return Err(StoreError::Backend(
                format!(
                    "RedisConfig::shards is {}; it must be 1 to {MAX_SHARDS}",
                    config.shards
                )
                .into(),
            ));
        }
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let (connection, cluster) = open_connection(&client, &config).await?;
        let keys = Keys::new(&config.prefix, cluster, config.shards);
        let local = Arc::new(LocalSessions::default());
        let feed = Arc::new(RedisFeed::new(
            FeedNodes::new(feed_seeds(&config), cluster),
            keys.clone(),
            local.clone(),
        ));
        let epoch = read_epoch(&connection, &keys)
            .await
            .map_err(|e| store_error(e, config.response_timeout))?;
        let shared = Arc::new(Shared {
            connection,
            keys,
            config,
            local,
            feed,
            user_locks: UserLocks::default(),
            epoch: KnownEpoch::new(epoch),
        });
        kit::spawn_flusher(&shared, shared.config.flush_interval);
        if let Some(interval) = shared.config.epoch_check_interval {
            epoch::spawn_check(&shared, interval);
        }
        Ok(Self { shared })
    }

    /// A change found no such session. If this node holds it live, it is
    /// not taken for gone at once: either Redis lost its data (the resync
    /// registers the session again) or another node ended it, which the
    /// feed or the next heartbeat flush tells this node shortly. Until
    /// then, a typed outage the client can retry.
    async fn not_found(&self, update: &Update<'_>) -> Result<Transition, StoreError> {
        let held_here = match update.op {
            UserOp::Activity { session } => {
                self.shared.local.holds(session, update.now, update.config)
            }
            _ => false,
        };
        if !held_here {
            return Err(StoreError::SessionNotFound);
        }
        if self.shared.lost_its_data().await? {
            tracing::warn!(
                "Redis lost its presence data (restarted empty?); registering live sessions again"
            );
            self.shared.feed.resync();
        }
        Err(StoreError::Unavailable(
            "the session is live here but not in Redis (yet)".into(),
        ))
    }

    fn connection(&self) -> Connection {
        self.shared.connection.clone()
    }

    /// How many sessions this process holds (opened through it, not ended):
    /// for operators' metrics.
    pub fn held_sessions(&self) -> usize {
        self.shared.local.count()
    }

    /// Writes the heartbeats buffered so far now, rather than at the next
    /// flush interval (e.g. before a graceful shutdown); returns how many.
    pub async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        self.shared.flush().await
    }

    fn fail(&self, error: redis::RedisError) -> StoreError {
        store_error(error, self.shared.config.response_timeout)
    }

    /// The changes kept for this store's nodes.
    fn outbox(&self) -> Outbox<'_> {
        Outbox {
            connection: &self.shared.connection,
            keys: &self.shared.keys,
            timeout: self.shared.config.response_timeout,
        }
    }

    /// Runs the command `command` builds for each shard, all at once (one
    /// pipeline on a single Redis); each shard's reply, in shard order.
    async fn per_shard<T: redis::FromRedisValue>(
        &self,
        command: impl Fn(Shard) -> redis::Cmd,
    ) -> Result<Vec<T>, StoreError> {
        let keys = &self.shared.keys;
        let shards: Vec<Shard> = keys.shards().collect();
        let replies = query_grouped(
            &self.shared.connection,
            &shards,
            |shard| keys.group_of_shard(*shard),
            1,
            |pipe, shard| {
                pipe.add_command(command(*shard));
            },
        )
        .await
        .map_err(|e| self.fail(e))?;
        replies
            .into_iter()
            .map(|reply| {
                redis::from_redis_value(reply).map_err(|e| StoreError::Corrupt(Box::new(e)))
            })
            .collect()
    }

    /// Up to `limit` users due at `now` with their deadlines (ms), oldest
    /// first across the shards: each shard's oldest `limit`, merged.
    async fn due_with_deadlines(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let keys = &self.shared.keys;
        let per_shard: Vec<Vec<(String, i64)>> = self
            .per_shard(|shard| {
                let mut range = redis::cmd("ZRANGE");
                range
                    .arg(keys.due(shard))
                    .arg("-inf")
                    .arg(now.timestamp_millis())
                    .arg("BYSCORE")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .arg("WITHSCORES");
                range
            })
            .await?;
        let mut due: Vec<(String, i64)> = per_shard.into_iter().flatten().collect();
        // As Redis orders one sorted set: by deadline, then by member.
        due.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        due.truncate(limit);
        Ok(due)
    }

    /// Reads users' records with their heartbeats merged in.
    async fn load(&self, users: &[UserId]) -> Result<Vec<Loaded>, StoreError> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.shared.keys;
        let replies = query_grouped(
            &self.shared.connection,
            users,
            |user| keys.group_of_user(user),
            2,
            |pipe, user| {
                pipe.cmd("HMGET")
                    .arg(keys.record(user))
                    .arg("data")
                    .arg("rev");
                pipe.cmd("ZRANGE")
                    .arg(keys.heartbeats(user))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES");
            },
        )
        .await
        .map_err(|e| self.fail(e))?;
        let unexpected = |e: redis::ParsingError| StoreError::Corrupt(Box::new(e));
        replies
            .chunks(2)
            .map(|pair| {
                let [fields, heartbeats] = pair else {
                    return Err(StoreError::Backend("a reply is missing".into()));
                };
                let fields: Vec<Option<String>> =
                    redis::from_redis_value_ref(fields).map_err(unexpected)?;
                let heartbeats: Vec<(String, i64)> =
                    redis::from_redis_value_ref(heartbeats).map_err(unexpected)?;
                let mut fields = fields.into_iter();
                let data = fields.next().flatten();
                let revision = fields.next().flatten().unwrap_or_else(|| "0".into());
                let mut record: UserRecord = match data {
                    Some(json) => serde_json::from_str(&json).map_err(StoreError::corrupt)?,
                    None => UserRecord::default(),
                };
                merge_heartbeats(
                    &mut record,
                    heartbeats.iter().map(|(id, ms)| (id.as_str(), *ms)),
                );
                Ok(Loaded { record, revision })
            })
            .collect()
    }

    /// One attempt: read, compute, compare-and-set. `None` on a conflict.
    async fn try_apply(&self, update: &Update<'_>) -> Result<Option<Transition>, StoreError> {
        let keys = &self.shared.keys;
        let user = update.user;
        let shard = keys.shard_of(user);
        let loaded = self
            .load(std::slice::from_ref(user))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Backend("no reply for the user's record".into()))?;
        let mut record = loaded.record;
        // Heartbeats of this process not written yet count too.
        self.shared.local.freshen(&mut record);
        let before = Indexed::of(&record, keys, shard);
        let mut transition =
            machine::apply(user, &mut record, update.op, update.now, update.config)?;
        let after = Indexed::of_after(&record, &transition, keys, shard);

        let mut hb_add = Vec::new();
        for session in &record.sessions {
            hb_add.push(json!([
                session.last_heartbeat.timestamp_millis(),
                session.id
            ]));
        }
        let broadcast = Broadcast::of(&transition, update.op);
        let mut publish = Vec::new();
        for event in &broadcast.events {
            let message = EventMessage::new(&update.node.name, event.clone());
            let payload = serde_json::to_string(&message).map_err(StoreError::corrupt)?;
            publish.push(json!([keys.scope_channel(&event.scope), payload]));
        }
        let ended = broadcast.ended.iter().map(|e| (e, broadcast.reason));
        let replaced = broadcast.replaced.iter().map(|e| (e, SessionEnd::Replaced));
        for ((holder, sessions), reason) in ended.chain(replaced) {
            let message = EndedMessage::new(sessions.clone(), reason, update.node);
            let payload = serde_json::to_string(&message).map_err(StoreError::corrupt)?;
            publish.push(json!([keys.node_channel(holder), payload]));
        }
        let mut plan = json!({
            "hb_add": hb_add,
            // A lapsed session reopened under its id ends and lives on: its
            // heartbeat entry (just written above) stays.
            "hb_rem": transition
                .ended_sessions
                .iter()
                .filter(|ended| !record.sessions.iter().any(|s| s.id == **ended))
                .collect::<Vec<_>>(),
            "sadd": after.keys.iter().filter(|k| !before.keys.contains(k)).collect::<Vec<_>>(),
            "srem": before.keys.iter().filter(|k| !after.keys.contains(k)).collect::<Vec<_>>(),
            "pub": publish,
        });
        if let Some(keep) = outbox::keep_plan(keys, shard, update, &transition)? {
            plan["keep"] = keep;
        }
        let data = serde_json::to_string(&record).map_err(StoreError::corrupt)?;
        let deadline = transition
            .next_deadline
            .map_or(String::new(), |at| at.timestamp_millis().to_string());
        let reply: redis::Value = scripts::APPLY
            .key(keys.record(user))
            .key(keys.heartbeats(user))
            .key(keys.due(shard))
            .arg(&loaded.revision)
            .arg(data)
            .arg(user.as_str())
            .arg(deadline)
            .arg(plan.to_string())
            .invoke_async(&mut self.connection())
            .await
            .map_err(|e| self.fail(e))?;
        match Applied::of(reply) {
            Some(Applied::Conflict) => return Ok(None),
            Some(Applied::Written) => {}
            Some(Applied::Kept(entry)) => transition.kept = Some(outbox::change_id(shard, &entry)),
            None => {
                return Err(StoreError::Backend(
                    "the change script gave an unknown reply".into(),
                ));
            }
        }
        self.shared
            .local
            .after_change(update, &transition, &record, || {
                keys.heartbeats(user).into_boxed_str()
            });
        Ok(Some(transition))
    }
}

/// A process's member in [`Keys::all_leases`]: the incarnation first, as
/// a node name may hold a colon.
fn lease_member(node: &NodeId) -> String {
    format!("{}:{}", node.incarnation, node.name)
}

/// Where the feed may listen first: the URL, and a cluster's other seeds.
fn feed_seeds(config: &RedisConfig) -> Vec<String> {
    #[cfg_attr(not(feature = "cluster"), allow(unused_mut))]
    let mut seeds = vec![config.url.clone()];
    #[cfg(feature = "cluster")]
    for node in config.cluster_nodes.iter().flatten() {
        if !seeds.contains(node) {
            seeds.push(node.clone());
        }
    }
    seeds
}

/// Connects to a single Redis, or to a cluster; says whether it is a
/// cluster (a pipeline then stays within one slot).
async fn open_connection(
    client: &redis::Client,
    config: &RedisConfig,
) -> Result<(Connection, bool), StoreError> {
    let timeout = config.response_timeout;
    #[cfg(feature = "cluster")]
    if let Some(nodes) = &config.cluster_nodes {
        let cluster = redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str))
            .response_timeout(config.response_timeout)
            .connection_timeout(config.connection_timeout)
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let connection = cluster
            .get_async_connection()
            .await
            .map_err(|e| store_error(e, timeout))?;
        return Ok((Connection::Cluster(connection), true));
    }
    let manager_config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(config.response_timeout))
        .set_connection_timeout(Some(config.connection_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let connection = ConnectionManager::new_with_config(client.clone(), manager_config)
        .await
        .map_err(|e| store_error(e, timeout))?;
    Ok((Connection::Single(connection), false))
}

/// The scope and node sets (the user's shard's share of each) a record
/// puts its user in.
struct Indexed {
    keys: Vec<String>,
}

impl Indexed {
    /// Before a change: the record as stored says where its user is.
    fn of(record: &UserRecord, keys: &Keys, shard: Shard) -> Self {
        let present = record.is_present();
        Self::build(record, present, keys, shard)
    }

    fn of_after(record: &UserRecord, transition: &Transition, keys: &Keys, shard: Shard) -> Self {
        Self::build(record, transition.present, keys, shard)
    }

    fn build(record: &UserRecord, present: bool, keys: &Keys, shard: Shard) -> Self {
        let mut all: Vec<String> = Vec::new();
        if present {
            all.extend(record.scopes.iter().map(|scope| keys.scope(shard, scope)));
        }
        for session in &record.sessions {
            let key = keys.node(shard, &session.node.name);
            if !all.contains(&key) {
                all.push(key);
            }
        }
        Self { keys: all }
    }
}

/// Heartbeats per pipeline: big enough to amortise the round trip, small
/// enough not to stall Redis.
const HEARTBEAT_BATCH: usize = 1000;

impl Flushes for Shared {
    async fn flush(&self) -> Result<usize, StoreError> {
        kit::flush(&self.local, self, HEARTBEAT_BATCH).await
    }
}

impl HeartbeatWriter<Box<str>> for Shared {
    /// One pipeline of `ZADD XX GT`, then, for the beats it did not change,
    /// which of them Redis no longer holds.
    async fn write(&self, batch: &[PendingBeat<Box<str>>]) -> Result<Vec<SessionId>, StoreError> {
        let fail = |e| store_error(e, self.config.response_timeout);
        let unexpected = |e: redis::ParsingError| StoreError::Corrupt(Box::new(e));
        let group_of = |beat: &&PendingBeat<Box<str>>| self.keys.group_of_user(beat.user());
        // XX: never revives an ended session; GT: never moves one back.
        let batch: Vec<&PendingBeat<Box<str>>> = batch.iter().collect();
        let changed = query_grouped(&self.connection, &batch, group_of, 1, |pipe, beat| {
            pipe.cmd("ZADD")
                .arg(&**beat.key())
                .arg("XX")
                .arg("GT")
                .arg("CH")
                .arg(beat.at_ms)
                .arg(beat.session.as_str());
        })
        .await
        .map_err(fail)?;
        let changed: Vec<i64> =
            redis::from_redis_value(redis::Value::Array(changed)).map_err(unexpected)?;
        // Unchanged: gone, or a heartbeat no newer than the stored one.
        let unchanged: Vec<&PendingBeat<Box<str>>> = batch
            .iter()
            .zip(&changed)
            .filter(|(_, changed)| **changed == 0)
            .map(|(beat, _)| *beat)
            .collect();
        if unchanged.is_empty() {
            return Ok(Vec::new());
        }
        let scores = query_grouped(&self.connection, &unchanged, group_of, 1, |pipe, beat| {
            pipe.cmd("ZSCORE")
                .arg(&**beat.key())
                .arg(beat.session.as_str());
        })
        .await
        .map_err(fail)?;
        let scores: Vec<Option<f64>> =
            redis::from_redis_value(redis::Value::Array(scores)).map_err(unexpected)?;
        Ok(unchanged
            .into_iter()
            .zip(scores)
            .filter(|(_, score)| score.is_none())
            .map(|(beat, _)| beat.session.clone())
            .collect())
    }

    async fn lost_its_data(&self) -> Result<bool, StoreError> {
        Shared::lost_its_data(self).await
    }

    fn resync(&self) {
        self.feed.resync();
    }
}

impl Shared {
    /// Reads the epoch again; whether Redis lost its data since this store
    /// last looked (the epoch changed).
    async fn lost_its_data(&self) -> Result<bool, StoreError> {
        Ok(self.epoch.observe(self.read_epoch().await?))
    }

    async fn read_epoch(&self) -> Result<Epoch, StoreError> {
        read_epoch(&self.connection, &self.keys)
            .await
            .map_err(|e| store_error(e, self.config.response_timeout))
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        // One change per user at a time from this process: compare-and-set
        // conflicts are left to changes from other nodes.
        let _turn = self.shared.user_locks.lock(update.user).await;
        for attempt in 0..self.shared.config.max_attempts.max(1) {
            let applied = match self.try_apply(&update).await {
                Err(StoreError::SessionNotFound) => return self.not_found(&update).await,
                applied => applied?,
            };
            if let Some(transition) = applied {
                return Ok(transition);
            }
            // Another node changed this user meanwhile: compute again.
            if attempt > 1 {
                let jitter = u64::from(update.now.timestamp_subsec_nanos() % 7);
                tokio::time::sleep(Duration::from_millis(u64::from(attempt) + jitter)).await;
            }
        }
        Err(StoreError::Backend(
            format!(
                "user {} changed by other nodes {} times in a row",
                update.user, self.shared.config.max_attempts
            )
            .into(),
        ))
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

    fn heartbeat_delay(&self) -> Duration {
        self.shared.config.flush_interval
    }

    async fn flush_heartbeats(&self) -> Result<usize, StoreError> {
        Self::flush_heartbeats(self).await
    }

    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        let loaded = self.load(users).await?;
        Ok(users
            .iter()
            .zip(loaded)
            .map(|(user, loaded)| UserView::of(user.clone(), &loaded.record))
            .collect())
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        let keys = &self.shared.keys;
        let members: Vec<Vec<String>> = self
            .per_shard(|shard| {
                let mut smembers = redis::cmd("SMEMBERS");
                smembers.arg(keys.scope(shard, scope));
                smembers
            })
            .await?;
        let mut users: Vec<UserId> = members.into_iter().flatten().map(UserId::from).collect();
        users.sort();
        Ok(self
            .load_many(&users)
            .await?
            .into_iter()
            .map(|view| view.presence)
            .collect())
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        let due = self.due_with_deadlines(now, limit).await?;
        Ok(due
            .into_iter()
            .map(|(user, _)| UserId::from(user))
            .collect())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        hold_until: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        let keys = &self.shared.keys;
        if keys.shard_count() == 1 {
            // One shard: find and claim in one script, one round trip.
            let users: Vec<String> = scripts::CLAIM_DUE
                .key(keys.due(Shard(0)))
                .arg(now.timestamp_millis())
                .arg(limit)
                .arg(hold_until.timestamp_millis())
                .invoke_async(&mut self.connection())
                .await
                .map_err(|e| self.fail(e))?;
            return Ok(users.into_iter().map(UserId::from).collect());
        }
        // The oldest across the shards, then each shard claims its own
        // among them (still due) atomically.
        let picked = self.due_with_deadlines(now, limit).await?;
        let mut by_shard: BTreeMap<Shard, Vec<&str>> = BTreeMap::new();
        for (user, _) in &picked {
            by_shard
                .entry(keys.shard_of(&UserId::from(user.as_str())))
                .or_default()
                .push(user);
        }
        let taken: Vec<Vec<String>> = try_join_all(by_shard.into_iter().map(|(shard, users)| {
            let mut connection = self.connection();
            let mut claim = scripts::CLAIM_USERS.key(keys.due(shard));
            claim
                .arg(now.timestamp_millis())
                .arg(hold_until.timestamp_millis())
                .arg(users);
            async move { claim.invoke_async::<Vec<String>>(&mut connection).await }
        }))
        .await
        .map_err(|e| self.fail(e))?;
        let taken: HashSet<String> = taken.into_iter().flatten().collect();
        Ok(picked
            .into_iter()
            .filter(|(user, _)| taken.contains(user))
            .map(|(user, _)| UserId::from(user))
            .collect())
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let keys = &self.shared.keys;
        let firsts: Vec<Vec<(String, i64)>> = self
            .per_shard(|shard| {
                let mut first = redis::cmd("ZRANGE");
                first.arg(keys.due(shard)).arg(0).arg(0).arg("WITHSCORES");
                first
            })
            .await?;
        Ok(firsts
            .into_iter()
            .flatten()
            .map(|(_, ms)| ms)
            .min()
            .and_then(DateTime::<Utc>::from_timestamp_millis))
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        let keys = &self.shared.keys;
        let users: Vec<Vec<String>> = self
            .per_shard(|shard| {
                let mut smembers = redis::cmd("SMEMBERS");
                smembers.arg(keys.node(shard, node));
                smembers
            })
            .await?;
        Ok(users.into_iter().flatten().map(UserId::from).collect())
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        let keys = &self.shared.keys;
        redis::pipe()
            .atomic()
            .cmd("HSET")
            .arg(keys.leases(&node.name))
            .arg(node.incarnation.to_string())
            .arg(until.timestamp_millis())
            .ignore()
            .cmd("ZADD")
            .arg(keys.all_leases())
            .arg(until.timestamp_millis())
            .arg(lease_member(node))
            .ignore()
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(|e| self.fail(e))
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        let keys = &self.shared.keys;
        redis::pipe()
            .atomic()
            .cmd("HDEL")
            .arg(keys.leases(&node.name))
            .arg(node.incarnation.to_string())
            .ignore()
            .cmd("ZREM")
            .arg(keys.all_leases())
            .arg(lease_member(node))
            .ignore()
            .query_async::<()>(&mut self.connection())
            .await
            .map_err(|e| self.fail(e))
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        let members: Vec<(String, i64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.shared.keys.all_leases())
            .arg("-inf")
            .arg(now.timestamp_millis())
            .arg("WITHSCORES")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| self.fail(e))?;
        members
            .iter()
            .map(|(member, until)| {
                let (incarnation, name) = member
                    .split_once(':')
                    .ok_or_else(|| StoreError::corrupt("a lease without a node name"))?;
                let node = NodeId {
                    name: NodeName::from(name),
                    incarnation: incarnation.parse().map_err(StoreError::corrupt)?,
                };
                let until = DateTime::<Utc>::from_timestamp_millis(*until)
                    .ok_or_else(|| StoreError::corrupt("a lease's expiry is out of range"))?;
                Ok((node, until))
            })
            .collect()
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        let leases: Vec<(String, i64)> = redis::cmd("HGETALL")
            .arg(self.shared.keys.leases(name))
            .query_async(&mut self.connection())
            .await
            .map_err(|e| self.fail(e))?;
        leases
            .into_iter()
            .map(|(incarnation, until)| {
                let incarnation = incarnation
                    .parse::<u64>()
                    .map_err(|e| StoreError::Corrupt(Box::new(e)))?;
                let until = DateTime::<Utc>::from_timestamp_millis(until).ok_or_else(|| {
                    StoreError::Corrupt("a lease's expiry is out of range".into())
                })?;
                Ok((incarnation, until))
            })
            .collect()
    }

    async fn time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let (seconds, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.connection())
            .await
            .map_err(|e| self.fail(e))?;
        let at =
            DateTime::<Utc>::from_timestamp(seconds, u32::try_from(micros * 1000).unwrap_or(0))
                .ok_or_else(|| StoreError::Backend("Redis TIME is out of range".into()))?;
        Ok(Some(at))
    }

    fn epoch(&self) -> Epoch {
        self.shared.epoch.get()
    }

    async fn reload_epoch(&self) -> Result<Epoch, StoreError> {
        self.shared.lost_its_data().await?;
        Ok(self.epoch())
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
        self.outbox().read(name, except, limit).await
    }

    async fn forget_changes(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        self.outbox().forget(name, ids).await
    }

    fn cluster_feed(&self) -> Option<Arc<dyn ClusterFeed>> {
        Some(self.shared.feed.clone())
    }
}
