//! P3 of issue 7 and the Redis store's bench: heartbeats and transitions per
//! second through `RedisStore`, beside `redis-benchmark -t set` with the
//! same client count and pipeline depth, run in the same process run so
//! the ratio compares like with like on a noisy machine.
//!
//! `cargo run --release -p presence-benches --bin redis-throughput [-- URL]`
//! (needs `redis-benchmark` on the PATH and a Redis, default
//! redis://127.0.0.1:6379; writes only under a random prefix).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{NodeId, PresenceConfig, SessionId, UserId};
use presence_redis::{RedisConfig, RedisStore};

const SESSIONS: usize = 10_000;
const HEARTBEAT_ROUNDS: usize = 20;
/// Heartbeats go to Redis in pipelines of 1000 (the store's batch).
const PIPELINE: usize = 1000;
const TRANSITION_CLIENTS: usize = 16;
const TRANSITION_PAIRS: usize = 2_000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let (host, port) = host_port(&url);
    let prefix = format!("presence-bench-{}", std::process::id());
    let store = Arc::new(RedisStore::connect(RedisConfig::new(url.as_str()).prefix(prefix)).await?);
    let config = PresenceConfig::default();
    let node = NodeId::new("bench");
    let t0: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).ok_or("time")?;

    // Heartbeats: SESSIONS open sessions, every one beating each round;
    // each round is written as SESSIONS/PIPELINE pipelines of PIPELINE.
    let keys: Vec<(UserId, SessionId)> = (0..SESSIONS)
        .map(|i| {
            (
                UserId::from(format!("u{i}")),
                SessionId::from(format!("s{i}")),
            )
        })
        .collect();
    for (user, session) in &keys {
        let op = open(session);
        store
            .apply(Update {
                user,
                op: &op,
                now: t0,
                node: &node,
                config: &config,
                keep_change: false,
            })
            .await?;
    }
    let started = Instant::now();
    // Where the time goes: answering the heartbeats in memory, or flushing.
    let mut in_memory = std::time::Duration::ZERO;
    for round in 1..=HEARTBEAT_ROUNDS {
        let now = t0 + TimeDelta::seconds(round as i64);
        let beating = Instant::now();
        for (user, session) in &keys {
            store.heartbeat(user, session, now, &config)?;
        }
        in_memory += beating.elapsed();
        store.flush_heartbeats().await?;
    }
    let heartbeat_time = started.elapsed();
    let heartbeats = (SESSIONS * HEARTBEAT_ROUNDS) as f64 / heartbeat_time.as_secs_f64();
    let in_memory_share = in_memory.as_secs_f64() / heartbeat_time.as_secs_f64();
    let set_pipelined = redis_benchmark(&host, port, 1, PIPELINE, 2_000_000)?;

    // Transitions: clients each opening and closing sessions of their own
    // users (every change a read + compare-and-set).
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..TRANSITION_CLIENTS {
        let (store, node, config) = (store.clone(), node.clone(), config);
        tasks.push(tokio::spawn(async move {
            for n in 0..TRANSITION_PAIRS {
                let user = UserId::from(format!("t{client}-{}", n % 100));
                let session = SessionId::from(format!("t{client}-{n}"));
                let at = t0 + TimeDelta::milliseconds(n as i64);
                for op in [
                    open(&session),
                    UserOp::Close {
                        session: session.clone(),
                        held_by: None,
                    },
                ] {
                    let update = Update {
                        user: &user,
                        op: &op,
                        now: at,
                        node: &node,
                        config: &config,
                        keep_change: false,
                    };
                    store.apply(update).await.expect("valid change");
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let transitions =
        (TRANSITION_CLIENTS * TRANSITION_PAIRS * 2) as f64 / started.elapsed().as_secs_f64();
    let set_unpipelined = redis_benchmark(&host, port, TRANSITION_CLIENTS, 1, 200_000)?;

    println!(
        "heartbeats through RedisStore: {heartbeats:>10.0}/s  (1 client, {PIPELINE} per round trip)"
    );
    println!(
        "  of which answering heartbeats in memory: {:.0}%, flushing: {:.0}%",
        in_memory_share * 100.0,
        (1.0 - in_memory_share) * 100.0
    );
    println!("redis-benchmark SET -c 1 -P {PIPELINE}: {set_pipelined:>10.0}/s");
    println!("ratio heartbeats / SET: {:.2}x", heartbeats / set_pipelined);
    println!(
        "transitions through RedisStore: {transitions:>10.0}/s  ({TRANSITION_CLIENTS} clients, read + CAS script each)"
    );
    println!("redis-benchmark SET -c {TRANSITION_CLIENTS} -P 1: {set_unpipelined:>10.0}/s");
    println!(
        "ratio transitions / SET: {:.2}x",
        transitions / set_unpipelined
    );
    Ok(())
}

fn open(session: &SessionId) -> UserOp {
    UserOp::Open(NewSession {
        id: session.clone(),
        login: "login".into(),
        node: NodeId::new("bench"),
        scopes: vec!["org".into()],
        metadata: BTreeMap::new(),
        liveness: Default::default(),
        kind: None,
    })
}

fn host_port(url: &str) -> (String, u16) {
    let rest = url.trim_start_matches("redis://");
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    match authority.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(6379)),
        None => (authority.to_owned(), 6379),
    }
}

/// SET requests per second as redis-benchmark measures them.
fn redis_benchmark(
    host: &str,
    port: u16,
    clients: usize,
    pipeline: usize,
    requests: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let output = Command::new("redis-benchmark")
        .args([
            "-h",
            host,
            "-p",
            &port.to_string(),
            "-t",
            "set",
            "-q",
            "-r",
            "10000",
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-P",
            &pipeline.to_string(),
            "-n",
            &requests.to_string(),
        ])
        .output()
        .map_err(|e| format!("redis-benchmark is needed on the PATH: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "SET: 123456.78 requests per second, p50=..."
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("SET:"))
        .ok_or("no SET line")?;
    let per_second = line
        .rsplit("SET:")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("unexpected redis-benchmark output")?
        .parse::<f64>()?;
    Ok(per_second)
}
