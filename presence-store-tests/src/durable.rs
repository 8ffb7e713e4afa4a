//! Durable changes through a real store: [`Presence::changes`] with
//! [`PresenceBuilder::durable_changes`](presence_core::PresenceBuilder::durable_changes)
//! told at least once across a killed process of a node, as a host's
//! webhook would need. Each backend's tests run
//! [`a_restarted_node_tells_the_changes_its_killed_run_left_unread`] on a
//! fresh store.

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_core::{
    Change, Changes, Clock, ManualClock, NodeId, Presence, SessionHandle, SessionSpec, Status,
};
use tokio::time::timeout;

use crate::cluster::{NODE_LEASE, QUIET, crash};
use crate::helpers::{WAIT, test_config};

async fn durable_node(
    store: &Arc<dyn PresenceStore>,
    clock: &Arc<ManualClock>,
    name: &str,
) -> Presence {
    Presence::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .node_lease(NODE_LEASE)
        .node(NodeId::new(name))
        .batch_interval(Duration::ZERO)
        .durable_changes(true)
        .build()
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

async fn open(node: &Presence, user: &str) -> SessionHandle {
    node.open_session(SessionSpec::new(user, format!("{user}-laptop")).scope("acme"))
        .await
        .unwrap_or_else(|e| panic!("open a session of {user}: {e}"))
}

/// The next change, which must come within [`WAIT`].
async fn next(changes: &mut Changes) -> Arc<Change> {
    timeout(WAIT, changes.recv())
        .await
        .unwrap_or_else(|_| panic!("no change within {WAIT:?}"))
        .expect("the service runs")
        .expect("a durable reader misses nothing")
}

/// The changes that come until none has for [`QUIET`].
async fn rest(changes: &mut Changes) -> Vec<(String, Status, u64)> {
    let mut told = Vec::new();
    while let Ok(Some(change)) = timeout(QUIET, changes.recv()).await {
        let change = change.expect("a durable reader misses nothing");
        told.push((change.user.to_string(), change.to, change.version));
    }
    told
}

/// Node A's host handles alice's and bob's changes, then the process is
/// killed while its host handles carol's (it never asked for the next).
/// The next run of node A tells carol's change, which the store kept,
/// and not alice's or bob's: once the killed run's lease ran out on a
/// store shared by a cluster (until then it might be serving still, as in
/// a rolling deploy), at once on a store of one process.
pub async fn a_restarted_node_tells_the_changes_its_killed_run_left_unread(
    store: Arc<dyn PresenceStore>,
) {
    assert!(store.keeps_changes());
    let clock = Arc::new(ManualClock::default());
    let t0 = clock.now();
    let killed = durable_node(&store, &clock, "node-a").await;
    let mut reader = killed.changes();
    let mut sessions = vec![open(&killed, "alice").await, open(&killed, "bob").await];
    let handled: Vec<String> = [next(&mut reader).await, next(&mut reader).await]
        .iter()
        .map(|change| change.user.to_string())
        .collect();
    assert_eq!(handled, vec!["alice", "bob"]);
    // The host waits for more: what it handled is acknowledged.
    assert_eq!(rest(&mut reader).await, vec![]);
    sessions.push(open(&killed, "carol").await);
    let carol = next(&mut reader).await;
    assert_eq!((carol.user.as_str(), carol.to), ("carol", Status::Online));
    assert!(carol.id.is_some(), "kept by the store");
    std::mem::forget(reader);
    crash(killed, sessions);

    let restarted = durable_node(&store, &clock, "node-a").await;
    let mut reader = restarted.changes();
    let mut told = rest(&mut reader).await;
    if store.cluster_feed().is_some() {
        assert_eq!(told, vec![], "the killed run's lease still lives");
        for second in [5, 10, 15, 16, 20] {
            clock.set(t0 + chrono::TimeDelta::seconds(second));
            restarted.run_due().await.expect("sweep");
        }
        told = rest(&mut reader).await;
    }
    let online: Vec<_> = told.iter().filter(|c| c.1 == Status::Online).collect();
    assert_eq!(
        online,
        vec![&("carol".to_owned(), Status::Online, 1)],
        "carol's change told again, the acknowledged ones not: {told:?}"
    );
    restarted.shutdown().await;
}
