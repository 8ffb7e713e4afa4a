//! Chaos, scripted and repeatable, on loopback: real demo processes killed
//! with SIGKILL, the stores under them killed and restarted, and a socket
//! left half-open. Short thresholds (`session_ttl` 2–5 s, heartbeats every
//! 500 ms, linger 300 ms) keep each scenario to seconds; times are
//! measured, not slept through, and printed as `chaos figure:` lines
//! (`cargo test -p presence-demo --test chaos -- --nocapture`).
//!
//! Uses the shared PostgreSQL (127.0.0.1:5432, a schema of its own) and
//! Redis (127.0.0.1:6379, a key prefix of its own), a `redis-server` it
//! starts on a free port, and a PostgreSQL cluster it creates with
//! `initdb`/`pg_ctl` in a temporary directory.

mod common;

#[path = "chaos/client.rs"]
mod client;
#[path = "chaos/half_open.rs"]
mod half_open;
#[path = "chaos/node_death.rs"]
mod node_death;
#[path = "chaos/nodes.rs"]
mod nodes;
#[path = "chaos/servers.rs"]
mod servers;
#[path = "chaos/store_restart.rs"]
mod store_restart;

use std::time::Duration;

use servers::{
    OwnPostgres, OwnRedis, OwnStore, Prefix, Schema, shared_postgres_url, shared_redis_url,
};
use store_restart::Plan;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_redis_node_leaves_no_ghost_and_no_flicker() {
    let url = shared_redis_url();
    let prefix = Prefix::fresh(&url);
    let store = [
        ("PRESENCE_STORE_URL", url.clone()),
        ("PRESENCE_REDIS_PREFIX", prefix.name.clone()),
    ];
    let figures = node_death::kill_one_of_two_nodes(&store).await;
    figures.print("redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_postgres_node_leaves_no_ghost_and_no_flicker() {
    let url = shared_postgres_url();
    let schema = Schema::fresh(&url);
    let store = [
        ("PRESENCE_STORE_URL", url.clone()),
        ("PRESENCE_PG_SCHEMA", schema.name.clone()),
    ];
    let figures = node_death::kill_one_of_two_nodes(&store).await;
    figures.print("postgres");
}

/// The load of the store scenarios: activity every 2 s per user, and a
/// `session_ttl` above the stores' own timeouts (2 s) plus a heartbeat.
/// The outage ends just after the Redis feed's reconnect attempt at 3.1 s,
/// so its next one (5.1 s) comes after a heartbeat flush: the order in
/// which an empty Redis hurts most.
const UNDER_LOAD: Plan = Plan {
    session_ttl: Duration::from_secs(5),
    activity_every: Duration::from_secs(2),
    outage: Duration::from_millis(3200),
    reconnect: false,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_load_typed_errors_then_recovery_within_5s() {
    // Redis comes back empty: every socket must stay open through it (the
    // store registers its live sessions again rather than ending them).
    on_own_redis(UNDER_LOAD).await.print("redis", UNDER_LOAD);
}

async fn on_own_redis(plan: Plan) -> store_restart::Figures {
    let mut redis = OwnRedis::start_new();
    let store = [
        ("PRESENCE_STORE_URL", redis.url()),
        ("PRESENCE_REDIS_PREFIX", "presence-chaos".to_owned()),
    ];
    store_restart::store_restart_under_load(&mut redis, &store, plan).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_typed_errors_then_recovery_within_5s() {
    on_own_postgres(UNDER_LOAD)
        .await
        .print("postgres", UNDER_LOAD);
}

/// While PostgreSQL is down, store calls wait out the pool's timeout (2 s).
/// A client reporting activity faster than that must not lapse: its socket
/// answers heartbeats while the activity waits on the store (this once
/// closed such sessions with 4000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_does_not_lapse_sessions_that_heartbeat() {
    let plan = Plan {
        session_ttl: Duration::from_secs(3),
        activity_every: Duration::from_millis(250),
        ..UNDER_LOAD
    };
    on_own_postgres(plan).await.print("postgres", plan);
}

async fn on_own_postgres(plan: Plan) -> store_restart::Figures {
    let mut postgres = OwnPostgres::start_new();
    let store = [
        ("PRESENCE_STORE_URL", postgres.url()),
        ("PRESENCE_PG_SCHEMA", "presence_chaos".to_owned()),
    ];
    store_restart::store_restart_under_load(&mut postgres, &store, plan).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_socket_is_closed_and_its_user_offline_after_session_ttl() {
    let figures = half_open::half_open_socket_is_closed().await;
    figures.print();
}
