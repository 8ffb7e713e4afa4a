//! The service path a host calls: `Presence::open_session`, `set_status`,
//! `close`, `snapshot`, and a watcher hearing a change, on the embedded
//! memory store, 2 tokio workers, at most 1000 calls in flight, batching
//! off unless said (the shape of issue 16's table, next to Phoenix.Tracker).
//!
//! ```text
//! cargo bench -p presence-benches --bench service            # 10k and 100k users
//! cargo bench -p presence-benches --bench service -- 100000  # one size
//! cargo bench -p presence-benches --bench service -- store 100000  # the store alone
//! ```
//!
//! Each size runs in a fresh service: track (open one session per user in
//! one scope), bytes per present user (RSS delta over the tracked users,
//! handles included), snapshot of the scope, update (a manual status per
//! user), untrack (close every session), churn (open+close cycles of 1000
//! tasks for a few seconds), and change → watcher latency, one change at a
//! time, with batching off and with the default batching (50 changes a
//! second, unevenly spaced, as a scope at the batching rate changes). The store alone
//! (`MemoryStore::apply`, no service) runs beside it for the gap, and each
//! churn and latency row has a floor measured in the same run: a cycle that
//! only mints an id and inserts and removes it in a shared map, and a bare
//! channel hop to a parked task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use dashmap::DashMap;
use hdrhistogram::Histogram;
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{
    Delivery, LoginId, MemoryStore, NodeId, Presence, PresenceConfig, RequestedStatus, ScopeId,
    SessionHandle, SessionId, SessionSpec, Subscription, UserId,
};

/// Calls in flight at once.
const IN_FLIGHT: usize = 1000;
/// How long the churn runs.
const CHURN: Duration = Duration::from_secs(3);

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "service bench: 2 tokio workers, {IN_FLIGHT} calls in flight, memory store, {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    // `store`: the store alone, in a process of its own so that its RSS
    // delta is not memory the service path freed.
    let store_only = std::env::args().any(|arg| arg == "store");
    for users in sizes {
        if !store_only {
            runtime.block_on(service_path(users));
        }
        runtime.block_on(store_path(users, store_only));
    }
    if store_only {
        return;
    }
    runtime.block_on(latency("off", Duration::ZERO, 20_000, Duration::ZERO));
    // 50 changes a second, unevenly spaced (5 ms and 35 ms gaps in turn):
    // a scope at that rate must not wait for a batch.
    runtime.block_on(latency(
        "default (20 ms)",
        Duration::from_millis(20),
        400,
        Duration::from_millis(20),
    ));
}

async fn build(batch: Duration) -> Presence {
    Presence::builder()
        .batch_interval(batch)
        .build()
        .await
        .expect("a service on the memory store")
}

fn user(i: usize) -> UserId {
    UserId::from(format!("user-{i}"))
}

/// Runs `work(i)` for every `i` in `0..n`, `IN_FLIGHT` at a time; its
/// results in order of `i`.
async fn in_flight<T, F, Fut>(n: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let tasks: Vec<_> = (0..IN_FLIGHT.min(n))
        .map(|lane| {
            let work = work.clone();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(n / IN_FLIGHT + 1);
                let mut i = lane;
                while i < n {
                    out.push((i, work(i).await));
                    i += IN_FLIGHT;
                }
                out
            })
        })
        .collect();
    let mut all: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for task in tasks {
        for (i, value) in task.await.expect("a lane") {
            all[i] = Some(value);
        }
    }
    all.into_iter()
        .map(|v| v.expect("every call ran"))
        .collect()
}

fn rate(n: usize, took: Duration) -> String {
    format!("{:.0}k/s", n as f64 / took.as_secs_f64() / 1000.0)
}

async fn service_path(users: usize) {
    let presence = build(Duration::ZERO).await;
    let scope = ScopeId::from("org");
    println!("\n== Presence, {users} users in one scope");

    let rss_before = rss_bytes();
    let started = Instant::now();
    let handles: Vec<SessionHandle> = in_flight(users, {
        let presence = presence.clone();
        move |i| {
            let presence = presence.clone();
            async move {
                presence
                    .open_session(
                        SessionSpec::new(user(i), format!("login-{i}"))
                            .scope("org")
                            .id(format!("s-{i}")),
                    )
                    .await
                    .expect("open")
            }
        }
    })
    .await;
    let took = started.elapsed();
    let rss_after = rss_bytes();
    println!("track (open_session):   {} ({took:.2?})", rate(users, took));
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!(
            "bytes per present user: {} (RSS {:.1} MiB → {:.1} MiB)",
            after.saturating_sub(before) / users as u64,
            before as f64 / 1048576.0,
            after as f64 / 1048576.0
        );
    }

    let mut times = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        let snapshot = presence.snapshot(&scope).await.expect("snapshot");
        times.push(started.elapsed());
        assert_eq!(snapshot.users.len(), users);
    }
    times.sort();
    println!(
        "snapshot of the scope:  median {:.2?} (min {:.2?})",
        times[times.len() / 2],
        times[0]
    );

    let started = Instant::now();
    in_flight(users, {
        let presence = presence.clone();
        move |i| {
            let presence = presence.clone();
            async move {
                presence
                    .set_status(&user(i), RequestedStatus::Busy, None)
                    .await
                    .expect("set_status");
            }
        }
    })
    .await;
    let took = started.elapsed();
    println!("update (set_status):    {} ({took:.2?})", rate(users, took));

    let handles: Arc<Vec<std::sync::Mutex<Option<SessionHandle>>>> = Arc::new(
        handles
            .into_iter()
            .map(|h| std::sync::Mutex::new(Some(h)))
            .collect(),
    );
    let started = Instant::now();
    in_flight(users, {
        let handles = handles.clone();
        move |i| {
            let handle = handles[i].lock().expect("a slot").take();
            async move {
                handle.expect("a handle").close().await.expect("close");
            }
        }
    })
    .await;
    let took = started.elapsed();
    println!("untrack (close):        {} ({took:.2?})", rate(users, took));

    let per_second = churn({
        let presence = presence.clone();
        move |lane| {
            let presence = presence.clone();
            let user = UserId::from(format!("churn-{lane}"));
            let login = LoginId::from(format!("churn-login-{lane}"));
            move || {
                let presence = presence.clone();
                let spec = SessionSpec::new(user.clone(), login.clone()).scope("org");
                async move {
                    let handle = presence.open_session(spec).await.expect("open");
                    handle.close().await.expect("close");
                }
            }
        }
    })
    .await;
    println!("churn (open+close, {IN_FLIGHT} in flight): {per_second:.0}k cycles/s");

    // Baselines in the same run, through the same lanes: the store's own
    // open and close, and the least a cycle can do (mint a session id,
    // insert it into a shared map, remove it), which is the harness's and
    // the scheduler's ceiling on this machine.
    let store = Arc::new(MemoryStore::new());
    let config = Arc::new(PresenceConfig::default());
    let node = NodeId::new("bench");
    let per_second = churn(move |lane| {
        let store = store.clone();
        let config = config.clone();
        let node = node.clone();
        let user = UserId::from(format!("churn-{lane}"));
        let login = LoginId::from(format!("churn-login-{lane}"));
        move || {
            let store = store.clone();
            let config = config.clone();
            let node = node.clone();
            let user = user.clone();
            let id = SessionId::random();
            let open = UserOp::Open(NewSession {
                id: id.clone(),
                login: login.clone(),
                node: node.clone(),
                scopes: vec![ScopeId::from("org")],
                metadata: Default::default(),
                liveness: Default::default(),
                kind: None,
            });
            async move {
                let close = UserOp::Close {
                    session: id,
                    held_by: None,
                };
                for op in [&open, &close] {
                    store
                        .apply(Update {
                            user: &user,
                            op,
                            now: Utc::now(),
                            node: &node,
                            config: &config,
                            keep_change: false,
                        })
                        .await
                        .expect("apply");
                }
            }
        }
    })
    .await;
    println!("  store alone (MemoryStore::apply open + close): {per_second:.0}k cycles/s");
    let map: Arc<DashMap<SessionId, UserId>> = Arc::new(DashMap::new());
    let per_second = churn(move |lane| {
        let map = map.clone();
        let user = UserId::from(format!("churn-{lane}"));
        move || {
            let map = map.clone();
            let user = user.clone();
            async move {
                let id = SessionId::random();
                map.insert(id.clone(), user);
                map.remove(&id);
            }
        }
    })
    .await;
    println!("  floor (mint an id, insert, remove in a shared map): {per_second:.0}k cycles/s");
}

/// Open+close cycles for `CHURN`, `IN_FLIGHT` lanes each running its own
/// cycle (`lane(i)` makes lane `i`'s) back to back; thousands of cycles a
/// second.
async fn churn<L, C, Fut>(lane: L) -> f64
where
    L: Fn(usize) -> C + Send + Sync + Clone + 'static,
    C: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let deadline = Instant::now() + CHURN;
    let started = Instant::now();
    let cycles: Vec<u64> = in_flight(IN_FLIGHT, move |i| {
        let cycle = lane(i);
        async move {
            let mut cycles = 0;
            while Instant::now() < deadline {
                cycle().await;
                cycles += 1;
            }
            cycles
        }
    })
    .await;
    let total: u64 = cycles.iter().sum();
    total as f64 / started.elapsed().as_secs_f64() / 1000.0
}

/// The store alone, as the older benches measure it: one `apply` per
/// open and per close, same concurrency.
async fn store_path(users: usize, measure_memory: bool) {
    let store = Arc::new(MemoryStore::new());
    let config = Arc::new(PresenceConfig::default());
    let node = NodeId::new("bench");
    let apply = {
        let store = store.clone();
        let config = config.clone();
        let node = node.clone();
        move |i: usize, open: bool| {
            let store = store.clone();
            let config = config.clone();
            let node = node.clone();
            async move {
                let user = user(i);
                let op = if open {
                    UserOp::Open(NewSession {
                        id: SessionId::from(format!("s-{i}")),
                        login: LoginId::from(format!("login-{i}")),
                        node: node.clone(),
                        scopes: vec![ScopeId::from("org")],
                        metadata: Default::default(),
                        liveness: Default::default(),
                        kind: None,
                    })
                } else {
                    UserOp::Close {
                        session: SessionId::from(format!("s-{i}")),
                        held_by: None,
                    }
                };
                store
                    .apply(Update {
                        user: &user,
                        op: &op,
                        now: Utc::now(),
                        node: &node,
                        config: &config,
                        keep_change: false,
                    })
                    .await
                    .expect("apply");
            }
        }
    };
    let rss_before = rss_bytes();
    let started = Instant::now();
    in_flight(users, {
        let apply = apply.clone();
        move |i| apply(i, true)
    })
    .await;
    let opened = started.elapsed();
    let rss_after = rss_bytes();
    let started = Instant::now();
    let scope = store
        .scope_members(&ScopeId::from("org"))
        .await
        .expect("members");
    let snapshot = started.elapsed();
    assert_eq!(scope.len(), users);
    let started = Instant::now();
    in_flight(users, move |i| apply(i, false)).await;
    let closed = started.elapsed();
    println!(
        "store alone (MemoryStore::apply): open {}, close {}, scope_members {snapshot:.2?}",
        rate(users, opened),
        rate(users, closed)
    );
    if let (true, Some(before), Some(after)) = (measure_memory, rss_before, rss_after) {
        println!(
            "store alone, bytes per present user: {}",
            after.saturating_sub(before) / users as u64
        );
    }
}

/// One change at a time: a user's status flips, and the time until a
/// watcher of the scope, in a task of its own as a socket's is, hears it.
async fn latency(label: &str, batch: Duration, samples: usize, pace: Duration) {
    let presence = build(batch).await;
    let scope = ScopeId::from("org");
    let _bob = presence
        .open_session(SessionSpec::new("bob", "bob-login").scope("org"))
        .await
        .expect("open");
    let (mut watcher, _) = presence.watch(&scope).await.expect("watch");
    watcher.accept_batches();
    drain(&mut watcher).await;
    let (heard, mut heard_at) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        while let Some(delivery) = watcher.recv().await {
            match delivery {
                Delivery::Event(_) | Delivery::Batch(_) => {
                    if heard.send(Instant::now()).is_err() {
                        return;
                    }
                }
                Delivery::Lagged => panic!("the watcher lagged"),
                Delivery::Occupancy(_) => panic!("counts for a whole-scope watch"),
            }
        }
    });
    let bob = UserId::from("bob");
    let mut histogram = Histogram::<u64>::new(3).expect("a histogram");
    for i in 0..samples {
        let status = if i % 2 == 0 {
            RequestedStatus::Busy
        } else {
            RequestedStatus::Online
        };
        let started = Instant::now();
        presence
            .set_status(&bob, status, None)
            .await
            .expect("set_status");
        let at = heard_at.recv().await.expect("the watcher heard it");
        histogram
            .record(at.saturating_duration_since(started).as_nanos() as u64)
            .expect("in range");
        pause(i, pace, started).await;
    }
    listener.abort();
    let floor = hop_floor(samples, pace).await;
    println!(
        "\nchange → local watcher, batching {label}, {samples} changes{}: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        if pace.is_zero() {
            String::new()
        } else {
            format!(" {:.0} a second, unevenly spaced", 1.0 / pace.as_secs_f64())
        },
        histogram.value_at_quantile(0.5) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0
    );
    println!(
        "  floor (one channel hop to another task, same pacing): p50 {:.1} µs, p99 {:.1} µs",
        floor.value_at_quantile(0.5) as f64 / 1000.0,
        floor.value_at_quantile(0.99) as f64 / 1000.0
    );
}

/// With a `pace`, waits out the gap after change `i` (started at
/// `started`): gaps of a quarter and of 1¾ of the pace in turn, so the
/// changes come at the pace on average but unevenly spaced.
async fn pause(i: usize, pace: Duration, started: Instant) {
    if !pace.is_zero() {
        let gap = if i.is_multiple_of(2) {
            pace / 4
        } else {
            pace * 7 / 4
        };
        tokio::time::sleep(gap.saturating_sub(started.elapsed())).await;
    }
}

/// The least a change heard by a watcher in its own task can take on this
/// machine: one unbounded channel send to a task parked on it, and that
/// task's wake, measured as the latency above is.
async fn hop_floor(samples: usize, pace: Duration) -> Histogram<u64> {
    let (send, mut receive) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let (heard, mut heard_at) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        while receive.recv().await.is_some() {
            if heard.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let mut histogram = Histogram::<u64>::new(3).expect("a histogram");
    for i in 0..samples {
        let started = Instant::now();
        send.send(started).expect("the listener runs");
        let at = heard_at.recv().await.expect("the listener heard it");
        histogram
            .record(at.saturating_duration_since(started).as_nanos() as u64)
            .expect("in range");
        pause(i, pace, started).await;
    }
    listener.abort();
    histogram
}

async fn drain(watcher: &mut Subscription) {
    while tokio::time::timeout(Duration::from_millis(50), watcher.recv())
        .await
        .is_ok()
    {}
}

/// This process's resident set, from `/proc/self/status`.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
