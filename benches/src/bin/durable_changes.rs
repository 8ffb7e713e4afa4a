//! What durable changes cost (issue 19), through the public API: the rate
//! of `Presence::set_status` with a reader of `Presence::changes()`, at
//! most once and with `durable_changes`, on the memory store, Redis and
//! PostgreSQL in the same run (rounds alternate, the median is reported);
//! how fast a reader that fell behind reads the kept changes back; and the
//! bytes a kept change takes in each store.
//!
//! `cargo run --release -p presence-benches --bin durable-changes [-- SECONDS]`
//! (default 3 s a measurement; Redis at redis://127.0.0.1:6379 under a
//! prefix of its own, PostgreSQL at postgres://postgres@127.0.0.1:5432/test
//! in a schema of its own, both removed after).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use presence_core::store::PresenceStore;
use presence_core::{
    MemoryStore, NodeId, Presence, RequestedStatus, SessionHandle, SessionSpec, UserId,
};
use presence_redis::{RedisConfig, RedisStore};
use presence_sqlx::{PgConfig, PgStore};
use presence_store_tests::redis_keys::delete_keys;

const REDIS: &str = "redis://127.0.0.1:6379";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Users whose status the callers toggle.
const USERS: usize = 1_000;
/// Concurrent callers of `set_status`.
const CALLERS: usize = 16;
/// Changes a reader falls behind by before it reads them back.
const BEHIND: u64 = 20_000;
const ROUNDS: usize = 3;

/// One backend under measurement, fresh for each service.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Backend {
    Memory,
    Redis,
    Postgres,
}

struct Fresh {
    store: Arc<dyn PresenceStore>,
    /// Redis prefix or PostgreSQL schema to remove afterwards.
    name: String,
}

async fn fresh(backend: Backend, run: &str) -> Fresh {
    let name = format!("presence_bench_durable_{}_{run}", std::process::id());
    let store: Arc<dyn PresenceStore> = match backend {
        Backend::Memory => Arc::new(MemoryStore::new()),
        Backend::Redis => Arc::new(
            RedisStore::connect(RedisConfig::new(REDIS).prefix(name.as_str()))
                .await
                .expect("Redis"),
        ),
        Backend::Postgres => Arc::new(
            PgStore::connect(PgConfig::new(POSTGRES).schema(name.as_str()))
                .await
                .expect("PostgreSQL"),
        ),
    };
    Fresh { store, name }
}

async fn remove(backend: Backend, fresh: &Fresh) {
    match backend {
        Backend::Memory => {}
        Backend::Redis => {
            delete_keys(REDIS, &fresh.name).await.expect("delete keys");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(POSTGRES).await.expect("PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {} CASCADE",
                fresh.name
            )))
            .execute(&pool)
            .await
            .expect("drop schema");
        }
    }
}

async fn service(store: Arc<dyn PresenceStore>, durable: bool) -> Presence {
    Presence::builder()
        .shared_store(store)
        .node(NodeId::new("bench"))
        .batch_interval(Duration::ZERO)
        .durable_changes(durable)
        .build()
        .await
        .expect("a service")
}

fn user(i: usize) -> UserId {
    UserId::from(format!("user-{i}"))
}

async fn open_all(presence: &Presence) -> Vec<SessionHandle> {
    let mut held = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let spec = SessionSpec::new(user(i), format!("login-{i}")).scope("acme");
        held.push(presence.open_session(spec).await.expect("open"));
    }
    held
}

/// `CALLERS` tasks toggle their users' status for `seconds`; how many
/// changes were made.
async fn toggle_for(presence: &Presence, seconds: f64) -> u64 {
    let made = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (presence, made) = (presence.clone(), made.clone());
        callers.push(tokio::spawn(async move {
            let mut round = 0usize;
            while Instant::now() < until {
                for i in (caller..USERS).step_by(CALLERS) {
                    let status = if round.is_multiple_of(2) {
                        RequestedStatus::Busy
                    } else {
                        RequestedStatus::Online
                    };
                    presence
                        .set_status(&user(i), status, None)
                        .await
                        .expect("set");
                    made.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        }));
    }
    for caller in callers {
        caller.await.expect("caller");
    }
    made.load(Ordering::Relaxed)
}

/// Changes a second with a reader keeping up.
async fn rate(backend: Backend, durable: bool, seconds: f64, run: &str) -> f64 {
    let fresh = fresh(backend, run).await;
    let presence = service(fresh.store.clone(), durable).await;
    let mut changes = presence.changes();
    let reader = tokio::spawn(async move {
        let mut told = 0u64;
        while let Some(change) = changes.recv().await {
            if change.is_ok() {
                told += 1;
            }
        }
        told
    });
    let held = open_all(&presence).await;
    let started = Instant::now();
    let made = toggle_for(&presence, seconds).await;
    let elapsed = started.elapsed().as_secs_f64();
    drop(held);
    presence.shutdown().await;
    drop(presence);
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
    remove(backend, &fresh).await;
    made as f64 / elapsed
}

/// A reader `BEHIND` changes behind: how fast it reads them back (changes
/// a second), and the bytes each kept change took in the store.
async fn catch_up(backend: Backend, run: &str) -> (f64, Option<f64>) {
    let fresh = fresh(backend, run).await;
    let presence = service(fresh.store.clone(), true).await;
    let mut changes = presence.changes();
    let held = open_all(&presence).await;
    let mut made = USERS as u64;
    let mut round = 0usize;
    while made < BEHIND {
        for i in 0..USERS {
            let status = if round.is_multiple_of(2) {
                RequestedStatus::Busy
            } else {
                RequestedStatus::Online
            };
            presence
                .set_status(&user(i), status, None)
                .await
                .expect("set");
        }
        made += USERS as u64;
        round += 1;
    }
    let bytes = kept_bytes(backend, &fresh).await.map(|b| b / made as f64);
    let started = Instant::now();
    let mut told = 0u64;
    while told < made {
        match tokio::time::timeout(Duration::from_secs(10), changes.recv()).await {
            Ok(Some(Ok(_))) => told += 1,
            _ => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    changes.acknowledge().await;
    drop(held);
    presence.shutdown().await;
    remove(backend, &fresh).await;
    (told as f64 / elapsed, bytes)
}

/// What the store holds for its kept changes, in bytes.
async fn kept_bytes(backend: Backend, fresh: &Fresh) -> Option<f64> {
    match backend {
        Backend::Memory => None,
        Backend::Redis => {
            let client = redis::Client::open(REDIS).ok()?;
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("*{}*:changes:*", fresh.name))
                .query_async(&mut connection)
                .await
                .ok()?;
            let mut total = 0u64;
            for key in keys {
                let used: Option<u64> = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                total += used.unwrap_or(0);
            }
            Some(total as f64)
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(POSTGRES).await.ok()?;
            let row: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT pg_total_relation_size('{}.kept_changes')",
                fresh.name
            )))
            .fetch_one(&pool)
            .await
            .ok()?;
            Some(row.0 as f64)
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    println!(
        "durable changes: {USERS} users, {CALLERS} callers of set_status, a reader of changes(); \
         {seconds} s a measurement, median of {ROUNDS} alternating rounds"
    );
    println!(
        "| store | at most once (changes/s) | durable (changes/s) | durable / at most once | reader {BEHIND} behind reads back (changes/s) | bytes a kept change |"
    );
    println!("|---|---|---|---|---|---|");
    for backend in [Backend::Memory, Backend::Redis, Backend::Postgres] {
        let (mut plain, mut durable) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            plain.push(rate(backend, false, seconds, &format!("p{round}")).await);
            durable.push(rate(backend, true, seconds, &format!("d{round}")).await);
        }
        let (plain, durable) = (median(plain), median(durable));
        let (read_back, bytes) = catch_up(backend, "c").await;
        println!(
            "| {backend:?} | {plain:.0} | {durable:.0} | {:.2}× | {read_back:.0} | {} |",
            durable / plain,
            bytes.map_or("-".to_owned(), |b| format!("{b:.0}"))
        );
    }
}
