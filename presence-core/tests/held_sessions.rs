//! Sessions a node holds (sockets): the node, not the store, lapses them,
//! and a handle that goes away without its close reaching the store still
//! lapses on time rather than stay forever.

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_core::{Clock, ManualClock, MemoryStore, Presence, SessionSpec, Status};
use presence_store_tests::helpers::test_config;

async fn service(clock: &Arc<ManualClock>) -> (Presence, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let presence = Presence::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .build()
        .await
        .expect("presence");
    (presence, store)
}

/// A handle dropped where no runtime can close its session: the node lets
/// go of it, and it lapses a TTL after its last heartbeat, then lingers.
#[tokio::test]
async fn a_handle_dropped_without_a_close_lapses_from_its_last_heartbeat() {
    let clock = Arc::new(ManualClock::default());
    let (presence, _store) = service(&clock).await;
    let tab = presence
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await
        .expect("open");
    clock.advance(Duration::from_secs(10));
    tab.heartbeat().expect("live at 10 s");
    std::thread::spawn(move || drop(tab))
        .join()
        .expect("dropped off the runtime");
    presence.run_due().await.expect("sweep");
    let alice = presence.status(&"alice".into()).await.expect("status");
    assert_eq!(alice.status, Status::Online, "live until 40 s");
    clock.advance(Duration::from_secs(34));
    presence.run_due().await.expect("sweep at 44 s");
    let alice = presence.status(&"alice".into()).await.expect("status");
    assert_eq!(alice.status, Status::Online, "lingering from 40 s");
    clock.advance(Duration::from_secs(1));
    presence.run_due().await.expect("sweep at 45 s");
    let alice = presence.status(&"alice".into()).await.expect("status");
    assert_eq!(
        (alice.status, alice.last_seen),
        (
            Status::Offline,
            Some(clock.now() - chrono::TimeDelta::seconds(35))
        ),
        "OFFLINE after the linger, last seen at the last heartbeat (10 s)"
    );
}

/// A socket's heartbeats are answered from the node's memory: the store's
/// deadline for the user is their AWAY, not a lapse every TTL.
#[tokio::test]
async fn a_present_users_only_deadline_is_a_real_change() {
    let clock = Arc::new(ManualClock::default());
    let (presence, store) = service(&clock).await;
    let t0 = clock.now();
    let tab = presence
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await
        .expect("open");
    assert_eq!(
        store.next_deadline().await.expect("deadline"),
        Some(t0 + chrono::TimeDelta::seconds(60)),
        "AWAY at 60 s; no lapse at 30 s"
    );
    for _ in 0..5 {
        clock.advance(Duration::from_secs(10));
        tab.heartbeat().expect("live");
        presence.run_due().await.expect("sweep");
    }
    let alice = presence.status(&"alice".into()).await.expect("status");
    assert_eq!((alice.status, alice.v), (Status::Online, 1), "never lapsed");
}
