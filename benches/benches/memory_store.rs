//! P1 and P2 of issue 7 on the memory store: the heartbeat hot path against
//! a raw `DashMap` get + atomic store on the same keys, and open+close
//! transitions on one and two threads (and on two threads with a store
//! each, the ceiling two threads can reach on this machine).
//!
//! `cargo bench -p presence-benches --bench memory_store`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{MemoryStore, NodeId, PresenceConfig, SessionId, UserId};

/// Users in the heartbeat benches; enough that the maps do not fit in L1.
const USERS: usize = 10_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid instant")
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

/// The node of every change (made once: a node id draws a random
/// incarnation).
fn node() -> &'static NodeId {
    static NODE: std::sync::OnceLock<NodeId> = std::sync::OnceLock::new();
    NODE.get_or_init(|| NodeId::new("bench"))
}

fn apply(
    runtime: &tokio::runtime::Runtime,
    store: &MemoryStore,
    user: &UserId,
    op: &UserOp,
    at: DateTime<Utc>,
    config: &PresenceConfig,
) {
    let update = Update {
        user,
        op,
        now: at,
        node: node(),
        config,
        keep_change: false,
    };
    runtime
        .block_on(store.apply(update))
        .expect("the bench's ops are valid");
}

fn heartbeat(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let config = PresenceConfig::default();
    let store = MemoryStore::new();
    let keys: Vec<(UserId, SessionId)> = (0..USERS)
        .map(|i| {
            (
                UserId::from(i as u64),
                SessionId::from(format!("session-{i}")),
            )
        })
        .collect();
    for (user, session) in &keys {
        apply(&runtime, &store, user, &open(session), now(), &config);
    }
    let baseline: DashMap<SessionId, AtomicI64> = keys
        .iter()
        .map(|(_, session)| (session.clone(), AtomicI64::new(0)))
        .collect();

    let mut group = c.benchmark_group("heartbeat");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("baseline: DashMap get + atomic store", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let (_, session) = &keys[i];
            let slot = baseline.get(black_box(session)).expect("present");
            slot.store(black_box(now().timestamp_millis()), Ordering::Relaxed);
        })
    });
    let mut i = 0usize;
    group.bench_function("MemoryStore::heartbeat", |b| {
        b.iter(|| {
            i = (i + 1) % USERS;
            let (user, session) = &keys[i];
            store
                .heartbeat(black_box(user), black_box(session), now(), &config)
                .expect("live session");
        })
    });
    group.finish();
}

/// Opens and closes `pairs` sessions from one thread, each its user's only
/// one: every open decides "first session" and every close "last session"
/// (starting the linger the user's next open cancels).
fn open_close_pairs(
    store: &MemoryStore,
    config: &PresenceConfig,
    thread: usize,
    pairs: u64,
) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let users: Vec<UserId> = (0..1_000)
        .map(|i| UserId::from(format!("t{thread}-u{i}")))
        .collect();
    let sessions: Vec<SessionId> = (0..1_000)
        .map(|i| SessionId::from(format!("t{thread}-s{i}")))
        .collect();
    let opens: Vec<UserOp> = sessions.iter().map(open).collect();
    let closes: Vec<UserOp> = sessions
        .iter()
        .map(|session| UserOp::Close {
            session: session.clone(),
            held_by: None,
        })
        .collect();
    let started = Instant::now();
    for n in 0..pairs as usize {
        let k = n % users.len();
        apply(&runtime, store, &users[k], &opens[k], now(), config);
        apply(&runtime, store, &users[k], &closes[k], now(), config);
    }
    started.elapsed()
}

fn transitions(c: &mut Criterion) {
    let config = PresenceConfig::default();
    let mut group = c.benchmark_group("open+close");
    group.throughput(Throughput::Elements(1));
    // The last row is the machine's ceiling for the second: two threads on
    // a store each share nothing, so what the shared store falls short of
    // it is contention, not a busy machine.
    let runs = [
        ("1 thread(s)", 1usize, 1usize),
        ("2 thread(s)", 2, 1),
        ("2 thread(s), a store each", 2, 2),
    ];
    for (name, threads, stores) in runs {
        let stores: Vec<MemoryStore> = (0..stores).map(|_| MemoryStore::new()).collect();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let elapsed: Vec<Duration> = std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..threads)
                        .map(|t| {
                            let store = &stores[t % stores.len()];
                            let config = &config;
                            scope.spawn(move || open_close_pairs(store, config, t, per_thread))
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|w| w.join().expect("worker"))
                        .collect()
                });
                // The threads ran side by side: `iters` pairs took the wall
                // time of the slowest (scaled for the rounding up).
                let slowest = elapsed.into_iter().max().unwrap_or_default();
                slowest.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, heartbeat, transitions);
criterion_main!(benches);
