//! The heartbeat hot path of `MemoryStore` (P1 of issue 7): a heartbeat
//! allocates nothing and changes nothing observers can see. One test in
//! this binary: dhat's allocation counts are process-wide.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{MemoryStore, NodeId, PresenceConfig, SessionId, UserId};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const USERS: usize = 100;

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).expect("valid instant")
}

#[test]
fn heartbeats_allocate_nothing_and_change_nothing_visible() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let config = PresenceConfig::default();
    let store = MemoryStore::new();
    let node = NodeId::new("test");
    let keys: Vec<(UserId, SessionId)> = (0..USERS)
        .map(|i| {
            (
                UserId::from(format!("user-{i}")),
                SessionId::from(format!("s-{i}")),
            )
        })
        .collect();
    for (user, session) in &keys {
        let op = UserOp::Open(NewSession {
            id: session.clone(),
            login: "login".into(),
            node: node.clone(),
            scopes: vec!["org".into()],
            metadata: BTreeMap::new(),
            liveness: Default::default(),
            kind: None,
        });
        let update = Update {
            user,
            op: &op,
            now: start(),
            node: &node,
            config: &config,
            keep_change: false,
        };
        runtime.block_on(store.apply(update)).expect("open");
    }
    let users: Vec<UserId> = keys.iter().map(|(user, _)| user.clone()).collect();
    let before = runtime.block_on(store.load_many(&users)).expect("load");

    let profiler = dhat::Profiler::builder().testing().build();
    let allocated = dhat::HeapStats::get().total_blocks;
    // Ten rounds a second apart, then one at the same instant as the last
    // (nothing newer to keep).
    for round in 1..=10 {
        let now = start() + Duration::seconds(round);
        for (user, session) in &keys {
            store
                .heartbeat(user, session, now, &config)
                .expect("a live session");
        }
    }
    let same_instant = start() + Duration::seconds(10);
    for (user, session) in &keys {
        store
            .heartbeat(user, session, same_instant, &config)
            .expect("a live session");
    }
    let heartbeat_allocations = dhat::HeapStats::get().total_blocks - allocated;
    drop(profiler);
    assert_eq!(
        heartbeat_allocations,
        0,
        "{heartbeat_allocations} allocations in {} heartbeats",
        USERS * 11
    );

    let after = runtime.block_on(store.load_many(&users)).expect("load");
    assert_eq!(
        before, after,
        "a heartbeat is liveness, not activity: no status, last_seen or version changes"
    );
    // The kept heartbeats are real: a TTL after the open, the sessions are
    // still live because of them.
    let ttl = Duration::from_std(config.session_ttl).expect("ttl");
    let later = same_instant + ttl - Duration::seconds(1);
    assert!(later > start() + ttl);
    for (user, session) in &keys {
        store
            .heartbeat(user, session, later, &config)
            .expect("kept alive by the earlier heartbeats");
    }
}
