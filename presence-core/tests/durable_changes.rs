//! docs/rules.md#hooks with `durable_changes`: `Presence::changes()` told at
//! least once, across a crash and a restart of a node, by the survivor of a
//! dead node, and to a reader that fell behind. Processes share one memory
//! store (which keeps changes for as long as this test process lives), as
//! processes of a cluster share theirs; time is a manual clock.

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_core::{
    CHANGES_CAPACITY, Change, Changes, Error, ManualClock, MemoryStore, NodeId, Presence,
    RequestedStatus, SessionSpec, Status,
};
use presence_store_tests::counting::CountingReads;
use presence_store_tests::helpers::test_config;

async fn process(store: &Arc<dyn PresenceStore>, clock: &Arc<ManualClock>, node: &str) -> Presence {
    Presence::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .node(NodeId::new(node))
        .batch_interval(Duration::ZERO)
        .durable_changes(true)
        .build()
        .await
        .expect("a process")
}

async fn open(presence: &Presence, user: &str) {
    let session = presence
        .open_session(SessionSpec::new(user, format!("{user}-login")).scope("acme"))
        .await
        .expect("open");
    // Held open until its process goes.
    std::mem::forget(session);
}

/// The next change, if one comes soon.
async fn next(changes: &mut Changes) -> Option<Arc<Change>> {
    tokio::time::timeout(Duration::from_millis(200), changes.recv())
        .await
        .ok()
        .flatten()
        .map(|change| change.expect("a durable reader misses nothing"))
}

/// Every change that comes soon, as (user, to, version).
async fn drain(changes: &mut Changes) -> Vec<(String, Status, u64)> {
    let mut seen = Vec::new();
    while let Some(change) = next(changes).await {
        seen.push((change.user.to_string(), change.to, change.version));
    }
    seen
}

/// Moves time on in steps, each process sweeping (and tending leases).
async fn pass(clock: &ManualClock, seconds: u64, processes: &[&Presence]) {
    for _ in 0..seconds {
        clock.advance(Duration::from_secs(1));
        for presence in processes {
            presence.run_due().await.expect("sweep");
        }
    }
}

#[tokio::test]
async fn a_restarted_node_tells_what_its_crashed_run_left_unacknowledged() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let first = process(&store, &clock, "node-a").await;
    let mut reader = first.changes();
    for user in ["alice", "bob", "carol"] {
        open(&first, user).await;
    }
    let handled = drain(&mut reader).await;
    assert_eq!(
        handled,
        vec![
            ("alice".into(), Status::Online, 1),
            ("bob".into(), Status::Online, 1),
            ("carol".into(), Status::Online, 1),
        ]
    );
    // The host is handling dave's change when the process is killed: it
    // never asked for the next one, so dave's is not acknowledged.
    open(&first, "dave").await;
    let dave = next(&mut reader).await.expect("dave's change");
    assert!(dave.id.is_some(), "kept by the store");
    std::mem::forget(reader);
    drop(first);

    let second = process(&store, &clock, "node-a").await;
    let mut reader = second.changes();
    // Until the killed run's lease (15 s) runs out it may still be serving
    // (a rolling deploy): its changes are its own to tell.
    assert_eq!(drain(&mut reader).await, vec![]);
    pass(&clock, 21, &[&second]).await;
    let told = drain(&mut reader).await;
    let online: Vec<_> = told.iter().filter(|c| c.1 == Status::Online).collect();
    assert_eq!(
        online,
        vec![&("dave".to_owned(), Status::Online, 1)],
        "dave's change is told again, the acknowledged ones are not: {told:?}"
    );
    let mut offline: Vec<_> = told
        .iter()
        .filter(|c| c.1 == Status::Offline)
        .map(|c| c.0.as_str())
        .collect();
    offline.sort();
    assert_eq!(
        offline,
        vec!["alice", "bob", "carol", "dave"],
        "and the new run tells the sessions it ended"
    );
}

#[tokio::test]
async fn what_a_reader_acknowledged_before_a_graceful_stop_is_not_told_again() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let first = process(&store, &clock, "node-a").await;
    let mut reader = first.changes();
    open(&first, "alice").await;
    assert_eq!(drain(&mut reader).await.len(), 1);
    open(&first, "bob").await;
    let bob = next(&mut reader).await.expect("bob");
    assert_eq!(bob.user.as_str(), "bob");
    reader.acknowledge().await;
    first.shutdown().await;
    let at_shutdown = drain(&mut reader).await;
    reader.acknowledge().await;
    drop(reader);

    let second = process(&store, &clock, "node-a").await;
    let mut reader = second.changes();
    assert_eq!(
        drain(&mut reader).await,
        vec![],
        "everything was acknowledged (at shutdown: {at_shutdown:?})"
    );
}

#[tokio::test]
async fn a_dead_nodes_unacknowledged_changes_are_told_by_the_node_that_ends_its_sessions() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let dead = process(&store, &clock, "node-a").await;
    let survivor = process(&store, &clock, "node-b").await;
    let mut reader = survivor.changes();
    open(&dead, "alice").await;
    // node-a dies before its host read anything, and never comes back.
    drop(dead);
    assert_eq!(drain(&mut reader).await, vec![], "not node-b's change");
    pass(&clock, 21, &[&survivor]).await;
    let told = drain(&mut reader).await;
    assert_eq!(
        told,
        vec![
            ("alice".into(), Status::Online, 1),
            ("alice".into(), Status::Offline, 2),
        ],
        "node-a's change, then node-b's own ending of alice's session"
    );
    assert_eq!(drain(&mut reader).await, vec![], "told once");
}

#[tokio::test]
async fn a_reader_that_falls_behind_reads_what_it_missed_from_the_store() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let presence = process(&store, &clock, "node-a").await;
    let mut reader = presence.changes();
    open(&presence, "alice").await;
    let changes = CHANGES_CAPACITY + 500;
    for i in 0..changes {
        let status = if i.is_multiple_of(2) {
            RequestedStatus::Busy
        } else {
            RequestedStatus::Online
        };
        presence
            .set_status(&"alice".into(), status, None)
            .await
            .expect("set");
    }
    let mut versions: Vec<u64> = drain(&mut reader).await.into_iter().map(|c| c.2).collect();
    versions.sort_unstable();
    versions.dedup();
    let all: Vec<u64> = (1..=changes as u64 + 1).collect();
    assert_eq!(versions, all, "every change told, none missed");
    assert_eq!(
        store
            .kept_changes(&"node-a".into(), &[], 10)
            .await
            .expect("read")
            .len(),
        0,
        "all acknowledged once the reader waits"
    );
}

#[tokio::test]
async fn without_durable_changes_the_store_keeps_nothing_and_a_late_reader_misses() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let presence = Presence::builder()
        .shared_store(store.clone())
        .node(NodeId::new("node-a"))
        .build()
        .await
        .expect("a process");
    let mut reader = presence.changes();
    open(&presence, "alice").await;
    let change = reader.recv().await.expect("open").expect("not missed");
    assert_eq!(change.id, None);
    assert!(
        store
            .kept_changes(&"node-a".into(), &[], 10)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn durable_changes_need_a_store_that_keeps_them() {
    let store = CountingReads::new(Arc::new(MemoryStore::new()));
    assert!(!store.keeps_changes());
    let built = Presence::builder()
        .shared_store(store)
        .durable_changes(true)
        .build()
        .await;
    assert!(matches!(built, Err(Error::ChangesNotKept)), "{built:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_restart_scenario_on_the_memory_store() {
    presence_store_tests::durable::a_restarted_node_tells_the_changes_its_killed_run_left_unread(
        Arc::new(MemoryStore::new()),
    )
    .await;
}

#[tokio::test]
async fn changes_made_before_the_first_reader_are_told_to_it() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let presence = process(&store, &clock, "node-a").await;
    open(&presence, "alice").await;
    let mut reader = presence.changes();
    open(&presence, "bob").await;
    assert_eq!(
        drain(&mut reader).await,
        vec![
            ("alice".into(), Status::Online, 1),
            ("bob".into(), Status::Online, 1),
        ],
        "alice's change, made before anyone read, then bob's, each once"
    );
}
