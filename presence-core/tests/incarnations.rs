//! Two processes of one node overlapping, as in a rolling deploy on one
//! host: the regression tests of issue 15's defect 6.

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_core::{ManualClock, MemoryStore, NodeId, Presence, SessionEnd, SessionSpec, Status};
use presence_store_tests::helpers::{status_of, test_config};

async fn process(store: &Arc<dyn PresenceStore>, clock: &Arc<ManualClock>) -> Presence {
    Presence::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .node(NodeId::new("node-a"))
        .batch_interval(Duration::ZERO)
        .build()
        .await
        .expect("a process")
}

/// A new process of `node-a` starts while the old one serves; then the old
/// one shuts down gracefully. Neither ends the other's sessions: the old
/// one's users stay until it shuts down (then linger, and reconnect), the
/// new one's stay for good.
#[tokio::test]
async fn overlapping_processes_of_one_node_leave_each_others_sessions_alone() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let old = process(&store, &clock).await;
    let mut alice = old
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("alice on the old process");

    let new = process(&store, &clock).await;
    let bob = new
        .open_session(SessionSpec::new("bob", "l2").scope("acme"))
        .await
        .expect("bob on the new process");
    for _ in 0..4 {
        clock.advance(Duration::from_secs(5));
        alice
            .heartbeat()
            .expect("the new process left alice's session alone");
        bob.heartbeat().expect("bob's session is live");
        old.run_due().await.expect("sweep");
        new.run_due().await.expect("sweep");
    }
    assert_eq!(status_of(&new, "alice").await, Status::Online);

    old.shutdown().await;
    assert_eq!(alice.ended().await, SessionEnd::ShutDown);
    for _ in 0..4 {
        clock.advance(Duration::from_secs(5));
        bob.heartbeat()
            .expect("the old process's shutdown left bob's session alone");
        new.run_due().await.expect("sweep");
    }
    assert_eq!(bob.has_ended(), None);
    assert_eq!(status_of(&new, "bob").await, Status::Online);
    assert_eq!(
        status_of(&new, "alice").await,
        Status::Offline,
        "alice lingered, then went (her client did not come back)"
    );
}
