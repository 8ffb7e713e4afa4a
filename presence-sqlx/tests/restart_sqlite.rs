//! A node on a SQLite file stops with users connected and starts again on
//! the same file under the same node name: no ghost stays ONLINE (the new
//! run clears what the old one left), and versions and `last_seen` survive.

#![cfg(feature = "sqlite")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use presence_core::store::PresenceStore;
use presence_core::{Clock, ManualClock, NodeId, Presence, SessionSpec, Status};
use presence_sqlx::{SqliteConfig, SqliteStore};
use presence_store_tests::helpers::{next_event, test_config};

async fn start(url: &str, clock: &Arc<ManualClock>) -> (SqliteStore, Presence) {
    let store = SqliteStore::connect(SqliteConfig::new(url))
        .await
        .expect("open the file");
    let presence = Presence::builder()
        .store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .node(NodeId::new("web-1"))
        .build()
        .await
        .expect("presence");
    (store, presence)
}

fn now(clock: &ManualClock) -> DateTime<Utc> {
    clock.now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_leaves_no_ghost_and_keeps_last_seen() {
    let path = common::fresh_sqlite_path();
    let url = format!("sqlite://{}", path.display());
    let clock = Arc::new(ManualClock::default());

    let (store, first_run) = start(&url, &clock).await;
    // Bob came and went before the stop.
    let bob = first_run
        .open_session(SessionSpec::new("bob", "b").scope("acme"))
        .await
        .expect("open");
    clock.advance(Duration::from_secs(20));
    let bob_left = now(&clock);
    first_run
        .logout(&"bob".into(), &"b".into())
        .await
        .expect("logout");
    drop(bob);
    // Alice is connected, beating and active, when the node stops.
    let alice = first_run
        .open_session(SessionSpec::new("alice", "a").scope("acme"))
        .await
        .expect("open");
    clock.advance(Duration::from_secs(10));
    alice.heartbeat().expect("live");
    alice.activity().await.expect("activity");
    let alice_active = now(&clock);
    store.flush_heartbeats().await.expect("flush");

    // The stop: nothing is closed (the handle is dropped where no runtime
    // runs), and the service and store go.
    std::thread::spawn(move || drop(alice))
        .join()
        .expect("drop the handle");
    drop(first_run);
    drop(store);

    clock.advance(Duration::from_secs(10));
    let restarted_at = now(&clock);
    let store = SqliteStore::connect(SqliteConfig::new(&url))
        .await
        .expect("reopen the file");
    let stored = store
        .load_many(&["alice".into(), "bob".into()])
        .await
        .expect("load");
    assert_eq!(
        (stored[0].presence.status, stored[0].presence.v),
        (Status::Online, 1),
        "alice as the stop left her"
    );
    assert_eq!(stored[0].presence.last_seen, Some(alice_active));
    assert_eq!(
        (
            stored[1].presence.status,
            stored[1].presence.v,
            stored[1].presence.last_seen
        ),
        (Status::Offline, 2, Some(bob_left)),
        "bob's last_seen survived the restart"
    );
    drop(store);

    let (store, second_run) = start(&url, &clock).await;
    let (mut events, _) = second_run.watch(&"acme".into()).await.expect("watch");
    assert!(
        store
            .users_on_node(&"web-1".into())
            .await
            .expect("users on node")
            .is_empty(),
        "the new run cleared the old run's sessions"
    );
    // Her dropped connection lingers like any other, then she goes.
    clock.advance(Duration::from_secs(5));
    second_run.run_due().await.expect("sweep");
    let event = next_event(&mut events).await;
    assert_eq!(
        (event.user_id.as_str(), event.status, event.v),
        ("alice", Status::Offline, 2),
        "no ghost"
    );
    assert_eq!(
        event.last_seen,
        Some(restarted_at),
        "seen until the restart cleared her session"
    );
    let bob = second_run.status(&"bob".into()).await.expect("status");
    assert_eq!(
        (bob.status, bob.v, bob.last_seen),
        (Status::Offline, 2, Some(bob_left))
    );
    let alice = second_run.status(&"alice".into()).await.expect("status");
    assert_eq!((alice.status, alice.v), (Status::Offline, 2));

    drop(second_run);
    drop(store);
    common::remove_sqlite_files(&path);
}

/// With durable changes, the next run on the same file tells the change
/// the killed run's host had not finished with, at once (one process per
/// file: the earlier run is gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_tells_the_changes_its_killed_run_left_unread() {
    let path = common::fresh_sqlite_path();
    let store = SqliteStore::connect(SqliteConfig::new(format!("sqlite://{}", path.display())))
        .await
        .expect("open the file");
    presence_store_tests::durable::a_restarted_node_tells_the_changes_its_killed_run_left_unread(
        Arc::new(store),
    )
    .await;
}
