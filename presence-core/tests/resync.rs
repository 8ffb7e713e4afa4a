//! What a node does when its cluster feed drops and comes back, or the store
//! loses its data: the regression tests of issue 15's defects 1 and 4.

use std::sync::Arc;
use std::time::Duration;

use presence_core::{ManualClock, NodeId, Presence, SessionSpec, Status};
use presence_store_tests::helpers::{WAIT, eventually, test_config};
use presence_store_tests::sim::{Deployment, FaultyMemory};

async fn node(store: &Arc<FaultyMemory>, clock: &Arc<ManualClock>, name: &str) -> Presence {
    Presence::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .node(NodeId::new(name))
        .batch_interval(Duration::ZERO)
        .build()
        .await
        .expect("a node")
}

async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// A half-open socket (its heartbeats stopped at 10 s) must lapse at 40 s
/// and its user go OFFLINE after the linger, whatever the feed does: a
/// feed that drops and comes back at 20 s must not refresh the session's
/// heartbeat to "now".
#[tokio::test]
async fn a_feed_reconnect_does_not_refresh_a_half_open_sockets_heartbeat() {
    let store = FaultyMemory::new();
    let clock = Arc::new(ManualClock::default());
    let a = node(&store, &clock, "node-a").await;
    let b = node(&store, &clock, "node-b").await;
    let half_open = a
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await
        .expect("open");
    clock.advance(Duration::from_secs(10));
    half_open.heartbeat().expect("alive at 10 s");
    clock.advance(Duration::from_secs(10));
    store.drop_feed(a.node()).await;
    clock.advance(Duration::from_secs(1));
    store.restore_feed(a.node()).await;
    settle().await;
    clock.advance(Duration::from_secs(24));
    // Node A holds the socket's session: its sweep lapses it.
    a.run_due().await.expect("sweep at 45 s");
    let alice = b.status(&"alice".into()).await.expect("status");
    assert_eq!(
        alice.status,
        Status::Offline,
        "lapsed at 40 s (10 s + ttl), OFFLINE after the 5 s linger"
    );
    drop(half_open);
}

/// A store that loses its data starts versions again: its epoch changes,
/// every snapshot says the new one, watchers are told to resnapshot, and
/// the sessions the node holds are registered again (from version 1). A
/// feed that merely drops and comes back keeps the epoch.
#[tokio::test]
async fn a_store_that_loses_its_data_has_a_new_epoch_that_snapshots_tell() {
    let store = FaultyMemory::new();
    let clock = Arc::new(ManualClock::default());
    let a = node(&store, &clock, "node-a").await;
    let alice = a
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await
        .expect("open");
    a.set_status(&"alice".into(), presence_core::RequestedStatus::Busy, None)
        .await
        .expect("busy");
    let (mut events, before) = a.watch(&"acme".into()).await.expect("watch");
    assert_eq!(before.epoch, a.epoch());
    assert_eq!(before.user(&"alice".into()).map(|u| u.v), Some(2));

    store.drop_feed(a.node()).await;
    store.restore_feed(a.node()).await;
    settle().await;
    assert_eq!(a.epoch(), before.epoch, "nothing was lost but messages");
    assert_eq!(events.try_recv(), Some(presence_core::Delivery::Lagged));

    store.lose_data().await;
    settle().await;
    assert_ne!(a.epoch(), before.epoch, "versions started again");
    assert_eq!(events.try_recv(), Some(presence_core::Delivery::Lagged));
    let after = a.snapshot(&"acme".into()).await.expect("snapshot");
    assert_eq!(after.epoch, a.epoch());
    let entry = after.user(&"alice".into()).expect("alice registered again");
    assert_eq!(
        (entry.status, entry.v),
        (Status::Online, 1),
        "the store forgot her BUSY and her versions: a client must take this whole"
    );
    alice.heartbeat().expect("her socket lives on");
}

/// A socket's heartbeats never reach the store, so they cannot tell its
/// node that another node ended the session. A logout on node B while node
/// A's feed was down (the word lost) is found when the feed comes back:
/// node A checks the sessions it holds against the store and ends them.
#[tokio::test]
async fn a_session_ended_elsewhere_while_the_feed_was_down_is_ended_on_its_return() {
    let store = FaultyMemory::new();
    let clock = Arc::new(ManualClock::default());
    let a = node(&store, &clock, "node-a").await;
    let b = node(&store, &clock, "node-b").await;
    let tab = a
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await
        .expect("open");
    let kept = a
        .open_session(SessionSpec::new("bob", "desk").scope("acme"))
        .await
        .expect("open");
    store.drop_feed(a.node()).await;
    b.logout(&"alice".into(), &"laptop".into())
        .await
        .expect("logout on node B");
    settle().await;
    assert!(tab.heartbeat().is_ok(), "node A has not heard yet");
    store.restore_feed(a.node()).await;
    eventually("node A finds the session ended", WAIT, || {
        tab.has_ended().is_some()
    })
    .await;
    assert!(tab.heartbeat().is_err(), "the tab's session is gone");
    assert!(kept.has_ended().is_none(), "bob's session is untouched");
    kept.heartbeat().expect("bob is live");
}
