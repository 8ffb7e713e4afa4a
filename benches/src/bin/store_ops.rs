//! Issue 17's cost model, measured: store operations per second at steady
//! state, with N idle sessions (sockets heartbeating on schedule, nobody
//! changing anything) held by two nodes sharing one store. The goal is a
//! cost that grows with nodes and changes, not with sessions.
//!
//! ```text
//! cargo run --release -p presence-benches --bin store-ops -- redis 10000
//! cargo run --release -p presence-benches --bin store-ops -- postgres 10000
//! ```
//!
//! Redis: a `redis-server` of its own (port 6391, nothing else talks to
//! it), read through `INFO commandstats` before and after the window
//! (commands a script runs are counted too). PostgreSQL: a schema of its
//! own in `postgres://postgres@127.0.0.1:5432/test`, read through
//! `pg_stat_user_tables` (rows inserted, updated and deleted in the
//! schema's tables) and `pg_stat_database` (commits). Timing: heartbeat
//! every 2 s, `session_ttl` 6 s, heartbeats flushed every second, nobody
//! turns AWAY during the run; 12 s of warm-up, then a 20 s window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_core::store::PresenceStore;
use presence_core::{NodeId, Presence, PresenceConfig, SessionHandle, SessionSpec};
use presence_redis::{RedisConfig, RedisStore};
use presence_sqlx::{PgConfig, PgStore};

const REDIS_PORT: u16 = 6391;
const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const WARM_UP: Duration = Duration::from_secs(12);
const WINDOW: Duration = Duration::from_secs(20);
const HEARTBEAT: Duration = Duration::from_secs(2);

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "redis".into());
    let sessions: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    println!(
        "store-ops: {backend}, {sessions} idle sessions on 2 nodes, heartbeat {HEARTBEAT:?}, window {WINDOW:?}"
    );
    match backend.as_str() {
        "redis" => redis(sessions).await,
        "postgres" => postgres(sessions).await,
        other => Err(format!("unknown backend {other:?} (redis or postgres)").into()),
    }
}

fn config() -> PresenceConfig {
    PresenceConfig {
        heartbeat_interval: HEARTBEAT,
        session_ttl: Duration::from_secs(6),
        away_after: Duration::from_secs(600),
        offline_after: Duration::from_secs(3600),
        linger: Duration::from_secs(1),
        max_sessions_per_user: 8,
    }
}

async fn node(store: Arc<dyn PresenceStore>, name: &str) -> Result<Presence, Error> {
    Ok(Presence::builder()
        .shared_store(store)
        .config(config())
        .node(NodeId::new(name))
        .build()
        .await?)
}

/// Opens `sessions` sessions, half on each node, and heartbeats each one
/// every [`HEARTBEAT`] (spread evenly) until the returned task is aborted.
async fn idle_sessions(
    nodes: &[Presence; 2],
    sessions: usize,
) -> Result<tokio::task::JoinHandle<()>, Error> {
    let mut handles: Vec<SessionHandle> = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let spec = SessionSpec::new(format!("u{i}"), format!("login-{i}"))
            .scope(format!("org-{}", i % 100));
        handles.push(nodes[i % 2].open_session(spec).await?);
    }
    Ok(tokio::spawn(async move {
        const SLICES: usize = 20;
        let mut tick = tokio::time::interval(HEARTBEAT / SLICES as u32);
        let mut slice = 0;
        loop {
            tick.tick().await;
            for handle in handles.iter().skip(slice).step_by(SLICES) {
                let _ = handle.heartbeat();
            }
            slice = (slice + 1) % SLICES;
        }
    }))
}

/// Runs the warm-up, then reads `counters` before and after the window;
/// prints each counter's rate and returns the total per second.
async fn measure<F, Fut>(label: &str, counters: F) -> Result<f64, Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<BTreeMap<String, u64>, Error>>,
{
    tokio::time::sleep(WARM_UP).await;
    let before = counters().await?;
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let after = counters().await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut total = 0.0;
    let mut rates: Vec<(String, f64)> = after
        .iter()
        .map(|(name, value)| {
            let delta = value.saturating_sub(before.get(name).copied().unwrap_or(0));
            (name.clone(), delta as f64 / seconds)
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect();
    rates.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, rate) in &rates {
        println!("  {name}: {rate:.1}/s");
        total += rate;
    }
    println!("{label}: {total:.1}/s in all");
    Ok(total)
}

async fn redis(sessions: usize) -> Result<(), Error> {
    let mut server = tokio::process::Command::new("redis-server")
        .args(["--port", &REDIS_PORT.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let url = format!("redis://127.0.0.1:{REDIS_PORT}");
    let client = redis::Client::open(url.as_str())?;
    let mut info = None;
    for _ in 0..50 {
        if let Ok(connection) = client.get_multiplexed_async_connection().await {
            info = Some(connection);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info = info.ok_or("the bench's redis-server did not start")?;
    let mut stores: Vec<Arc<dyn PresenceStore>> = Vec::new();
    for _ in 0..2 {
        let config = RedisConfig::new(url.as_str()).flush_interval(Duration::from_secs(1));
        stores.push(Arc::new(RedisStore::connect(config).await?));
    }
    let nodes = [
        node(stores[0].clone(), "node-a").await?,
        node(stores[1].clone(), "node-b").await?,
    ];
    let beating = idle_sessions(&nodes, sessions).await?;
    let counters = || {
        let mut info = info.clone();
        async move {
            let text: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut info)
                .await?;
            Ok(commandstats(&text))
        }
    };
    let total = measure("Redis commands", counters).await?;
    println!(
        "per session per heartbeat interval: {:.3} commands",
        total * HEARTBEAT.as_secs_f64() / sessions as f64
    );
    beating.abort();
    server.kill().await?;
    Ok(())
}

/// `cmdstat_zadd:calls=12,usec=…` lines as command → calls (the INFO
/// command itself left out).
fn commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            (name != "info").then(|| (name.to_owned(), calls))
        })
        .collect()
}

async fn postgres(sessions: usize) -> Result<(), Error> {
    let schema = format!("store_ops_{}", std::process::id());
    let mut stores: Vec<Arc<dyn PresenceStore>> = Vec::new();
    for _ in 0..2 {
        let config = PgConfig::new(PG_URL)
            .schema(schema.clone())
            .flush_interval(Duration::from_secs(1));
        stores.push(Arc::new(PgStore::connect(config).await?));
    }
    let nodes = [
        node(stores[0].clone(), "node-a").await?,
        node(stores[1].clone(), "node-b").await?,
    ];
    let beating = idle_sessions(&nodes, sessions).await?;
    let pool = sqlx::PgPool::connect(PG_URL).await?;
    let counters = || {
        let pool = pool.clone();
        let schema = schema.clone();
        async move {
            let mut counters = BTreeMap::new();
            let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables \
                 WHERE schemaname = $1",
            )
            .bind(&schema)
            .fetch_all(&pool)
            .await?;
            for (table, inserted, updated, deleted) in rows {
                let written = inserted + updated + deleted;
                counters.insert(format!("rows written in {table}"), written.max(0) as u64);
            }
            let commits: i64 = sqlx::query_scalar(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
            )
            .fetch_one(&pool)
            .await?;
            counters.insert("commits (the whole database)".into(), commits.max(0) as u64);
            Ok(counters)
        }
    };
    let total = measure("PostgreSQL rows written and commits", counters).await?;
    println!(
        "per session per heartbeat interval: {:.3}",
        total * HEARTBEAT.as_secs_f64() / sessions as f64
    );
    beating.abort();
    for node in &nodes {
        node.shutdown().await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await?;
    Ok(())
}
