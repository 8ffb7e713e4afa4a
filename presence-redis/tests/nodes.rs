//! Several nodes, each with its own `RedisStore` (its own connections and
//! pub/sub listener), on one real Redis; and a Redis that dies and returns.
//! What every store shares across two nodes on one store is the cluster
//! suite (`cluster_suite.rs`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use presence_core::store::StoreError;
use presence_core::{ManualClock, NodeId, Presence, SessionEnd, SessionSpec, Status, Subscription};
use presence_redis::{RedisConfig, RedisStore};
use presence_store_tests::helpers::{
    WAIT, ev, eventually, expect_lagged, next_seen, quiet, status_becomes, test_config,
};
use presence_store_tests::redis_keys::delete_keys;

/// How long a watcher listens (real time) to conclude that nothing more
/// arrives.
const QUIET: Duration = Duration::from_millis(300);

fn redis_url() -> String {
    std::env::var("PRESENCE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn prefix() -> String {
    format!("presence-test-{}", uuid::Uuid::new_v4().simple())
}

async fn node(url: &str, prefix: &str, name: &str, clock: &Arc<ManualClock>) -> Presence {
    let store = RedisStore::connect(
        RedisConfig::new(url)
            .prefix(prefix)
            .flush_interval(Duration::from_millis(50)),
    )
    .await
    .unwrap_or_else(|e| panic!("Redis must be running at {url}: {e}"));
    Presence::builder()
        .store(store)
        .clock(clock.clone())
        .config(test_config())
        .node(NodeId::new(name))
        .store_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("presence")
}

/// Watches `acme` on `node`, once the node's feed listens to it (the feed
/// tells the watchers to resnapshot when its subscription takes effect).
async fn watch(node: &Presence) -> Subscription {
    let (mut events, _) = node.watch(&"acme".into()).await.expect("watch");
    expect_lagged(&mut events).await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_dies_leaves_no_ghost_and_a_logout_elsewhere_closes_its_sockets() {
    let (url, prefix, clock) = (redis_url(), prefix(), Arc::new(ManualClock::default()));
    let dying = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;
    let mut events = watch(&b).await;
    std::mem::forget(
        dying
            .open_session(SessionSpec::new("alice", "l1").scope("acme"))
            .await
            .expect("open"),
    );
    assert_eq!(next_seen(&mut events).await, ev("alice", Status::Online, 1));
    drop(dying); // killed: nothing closed, nothing said

    let c = node(&url, &prefix, "node-c", &clock).await;
    let mut carol_on_c = c
        .open_session(SessionSpec::new("carol", "phone").scope("acme"))
        .await
        .expect("open");
    assert_eq!(next_seen(&mut events).await, ev("carol", Status::Online, 1));
    for _ in 0..3 {
        clock.advance(Duration::from_secs(10));
        carol_on_c.heartbeat().expect("carol is alive");
        // Node C writes heartbeats every 50 ms (real time).
        tokio::time::sleep(Duration::from_millis(150)).await;
        b.run_due().await.expect("sweep");
    }
    clock.advance(Duration::from_secs(5));
    b.run_due().await.expect("sweep");
    assert_eq!(
        next_seen(&mut events).await,
        ev("alice", Status::Offline, 2),
        "no ghost"
    );
    quiet(&mut events, QUIET).await; // carol, heartbeating on node C, stays

    b.logout(&"carol".into(), &"phone".into())
        .await
        .expect("logout");
    let ended = tokio::time::timeout(Duration::from_secs(5), carol_on_c.ended())
        .await
        .expect("told in time");
    assert_eq!(ended, SessionEnd::LoggedOut);
    assert_eq!(
        next_seen(&mut events).await,
        ev("carol", Status::Offline, 2)
    );
}

/// Unlike the cluster suite's race (two nodes on one store, whose user
/// locks put the calls in a line), each node here has a store of its own:
/// the first and last sessions are decided in Redis itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_and_last_sessions_from_two_nodes_are_decided_once() {
    let (url, prefix, clock) = (redis_url(), prefix(), Arc::new(ManualClock::default()));
    let a = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;
    let mut events = watch(&a).await;
    // Both nodes hold a session at once, then both close at once.
    let mut tasks = Vec::new();
    for (n, presence) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let tab = presence
                .open_session(SessionSpec::new("alice", format!("l{n}")).scope("acme"))
                .await
                .expect("open");
            tokio::time::sleep(Duration::from_millis(50)).await;
            tab.close().await.expect("close");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    clock.advance(Duration::from_secs(6));
    a.run_due().await.expect("sweep");
    b.run_due().await.expect("sweep");
    assert_eq!(next_seen(&mut events).await, ev("alice", Status::Online, 1));
    assert_eq!(
        next_seen(&mut events).await,
        ev("alice", Status::Offline, 2)
    );
    quiet(&mut events, QUIET).await;
}

/// A `redis-server` of the test's own, on a free port.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        Self { child, port }
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        Self::start_on(port)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ready(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_dies_and_returns_empty_presence_converges_without_a_panic() {
    let redis = OwnRedis::start();
    redis.ready().await;
    let (url, prefix, clock) = (redis.url(), prefix(), Arc::new(ManualClock::default()));
    let a = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;
    let mut events = watch(&b).await;
    let alice = a
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    assert_eq!(next_seen(&mut events).await, ev("alice", Status::Online, 1));

    let port = redis.port;
    drop(redis); // killed
    let started = std::time::Instant::now();
    let failure = a
        .set_status(&"alice".into(), presence_core::RequestedStatus::Busy, None)
        .await
        .expect_err("Redis is down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no hang: {:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            failure,
            presence_core::Error::Store(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ),
        "a typed error: {failure:?}"
    );
    alice
        .heartbeat()
        .expect("heartbeats are served from memory meanwhile");

    let redis = OwnRedis::start_on(port); // back, and empty
    redis.ready().await;
    // The feed reconnects, watchers resnapshot and node A registers alice again.
    status_becomes(&b, "alice", Status::Online, Duration::from_secs(10)).await;
    let converged = started.elapsed();
    alice.heartbeat().expect("alive");
    // Closed before the clock moves: the linger then ends within the 6 s.
    alice.close().await.expect("closed");
    clock.advance(Duration::from_secs(6));
    b.run_due().await.expect("sweep");
    // No ghost after the restart.
    status_becomes(&b, "alice", Status::Offline, WAIT).await;
    eprintln!("converged {converged:?} after Redis was killed");
}

/// Deletes every key under `prefix`, as a Redis that restarted empty (or
/// failed over to an empty replica) would have lost them, while the
/// nodes' connections and pub/sub stay up.
async fn lose_data(url: &str, prefix: &str) {
    let deleted = delete_keys(url, prefix).await.expect("Redis");
    assert!(deleted > 0, "the nodes wrote under {prefix}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_redis_forgot_are_registered_again_not_ended() {
    let (url, prefix, clock) = (redis_url(), prefix(), Arc::new(ManualClock::default()));
    let a = node(&url, &prefix, "node-a", &clock).await;
    let b = node(&url, &prefix, "node-b", &clock).await;
    let alice = a
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    tokio::time::sleep(Duration::from_millis(200)).await;

    lose_data(&url, &prefix).await;
    // Activity first, before any flush: not "session gone" either.
    if let Err(failure) = alice.activity().await {
        assert!(
            !failure.is_session_gone(),
            "a session Redis forgot is not ended: {failure:?}"
        );
    }
    // The next flushes find alice's heartbeats gone.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        alice
            .heartbeat()
            .expect("a session Redis forgot is not ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Alice is registered again.
    status_becomes(&b, "alice", Status::Online, WAIT).await;
    alice.heartbeat().expect("still live");
    drop(alice);
    drop((a, b));
    lose_data(&url, &prefix).await;
}

/// Redis's clock is the cluster's (see presence time on `presence_core::Clock`): it reads as
/// this machine's, which shares it here, to within a second; and a node on
/// it (default clock) keeps to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_clock_is_presence_time() {
    use presence_core::store::PresenceStore;
    let (url, prefix) = (redis_url(), prefix());
    let store = RedisStore::connect(RedisConfig::new(&url).prefix(&prefix))
        .await
        .expect("Redis must be running");
    let read = store
        .time()
        .await
        .expect("TIME")
        .expect("Redis has a clock");
    let off = (read - chrono::Utc::now()).num_milliseconds().abs();
    assert!(off < 1_000, "{off} ms off the local clock");
    let node = Presence::builder()
        .store(store)
        .node(NodeId::new("node-a"))
        .build()
        .await
        .expect("presence");
    let off = (node.clock().now() - chrono::Utc::now())
        .num_milliseconds()
        .abs();
    assert!(off < 1_000, "presence time is {off} ms off");
    node.shutdown().await;
    delete_keys(&url, &prefix).await.expect("clean up");
}

/// Buffered heartbeats reach Redis up to a flush interval late: a flush
/// interval that would let sessions lapse in Redis between two heartbeats
/// is refused when the service is built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_interval_that_lets_sessions_lapse_is_refused() {
    let (url, prefix) = (redis_url(), prefix());
    let store = RedisStore::connect(
        RedisConfig::new(&url)
            .prefix(&prefix)
            .flush_interval(Duration::from_secs(20)),
    )
    .await
    .expect("Redis must be running");
    let refused = Presence::builder()
        .store(store)
        .config(test_config())
        .build()
        .await
        .expect_err("10 s heartbeats + a 20 s flush reach a 30 s ttl");
    let message = refused.to_string();
    assert!(message.contains("flush_interval"), "{message}");
    delete_keys(&url, &prefix).await.expect("clean up");
}

/// A session a client resumed on another node (same session id) leaves
/// nothing behind in the process that held it before: its old holder is
/// told, and forgets the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_taken_over_by_another_node_is_forgotten_where_it_was() {
    let (url, prefix) = (redis_url(), prefix());
    let store = |url: String, prefix: String| async move {
        RedisStore::connect(
            RedisConfig::new(&url)
                .prefix(&prefix)
                .flush_interval(Duration::from_millis(50)),
        )
        .await
        .expect("Redis must be running")
    };
    let (store_a, store_b) = (
        store(url.clone(), prefix.clone()).await,
        store(url.clone(), prefix.clone()).await,
    );
    let clock = Arc::new(ManualClock::default());
    let on = |store: RedisStore, name: &'static str| {
        let clock = clock.clone();
        async move {
            Presence::builder()
                .store(store)
                .clock(clock)
                .config(test_config())
                .node(NodeId::new(name))
                .build()
                .await
                .expect("presence")
        }
    };
    let a = on(store_a.clone(), "node-a").await;
    let b = on(store_b.clone(), "node-b").await;
    let spec = SessionSpec::new("alice", "laptop")
        .scope("acme")
        .id("tab-1");
    let mut old = a.open_session(spec.clone()).await.expect("open on A");
    assert_eq!(store_a.held_sessions(), 1);
    let resumed = b.open_session(spec).await.expect("resume on B");
    let end = tokio::time::timeout(Duration::from_secs(5), old.ended())
        .await
        .expect("A is told");
    assert_eq!(end, SessionEnd::Replaced);
    eventually(
        "node A lets go of the session node B took over",
        WAIT,
        || store_a.held_sessions() == 0,
    )
    .await;
    assert_eq!(store_b.held_sessions(), 1);
    resumed.heartbeat().expect("live on B");
    delete_keys(&url, &prefix).await.expect("clean up");
}
