//! docs/rules.md#large-scopes through the service: a watcher who asks for
//! counts of a large scope gets counts at most once per interval and the
//! events of the users it named; a small scope stays per-user; a scope that
//! shrinks sends its counting watchers back to the members.

use std::sync::Arc;
use std::time::Duration;

use presence_core::{
    Delivery, ManualClock, MemoryStore, NodeId, Occupancy, Presence, RequestedStatus, ScopeId,
    SessionHandle, SessionSpec, Status, Subscription,
};
use presence_store_tests::helpers::test_config;

const TICK: Duration = Duration::from_millis(20);

async fn service() -> (Presence, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    let presence = Presence::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .config(test_config())
        .node(NodeId::new("node-a"))
        .batch_interval(Duration::ZERO)
        .large_scope_threshold(5)
        .occupancy_interval(TICK)
        .build()
        .await
        .expect("valid presence");
    (presence, clock)
}

async fn members(presence: &Presence, scope: &str, count: usize) -> Vec<SessionHandle> {
    let mut sessions = Vec::new();
    for n in 0..count {
        let spec = SessionSpec::new(format!("user-{n}"), format!("login-{n}")).scope(scope);
        sessions.push(presence.open_session(spec).await.expect("open"));
    }
    sessions
}

/// What reaches `watcher` within a few ticks, in order.
async fn deliveries(watcher: &mut Subscription) -> Vec<Delivery> {
    let mut seen = Vec::new();
    while let Ok(Some(delivery)) = tokio::time::timeout(TICK * 5, watcher.recv()).await {
        seen.push(delivery);
    }
    seen
}

fn counts(seen: &[Delivery]) -> Vec<Occupancy> {
    seen.iter()
        .filter_map(|d| match d {
            Delivery::Occupancy(counts) => Some((**counts).clone()),
            _ => None,
        })
        .collect()
}

fn event_users(seen: &[Delivery]) -> Vec<String> {
    seen.iter()
        .flat_map(|d| d.events().iter().map(|e| e.user_id.to_string()))
        .collect()
}

#[tokio::test]
async fn a_large_scope_sends_counts_and_the_named_users_events() {
    let (presence, _clock) = service().await;
    let hall = ScopeId::from("hall");
    let _sessions = members(&presence, "hall", 10).await;
    let (mut counting, snapshot) = presence
        .watch_counts(&hall, &["user-0".into()])
        .await
        .expect("watch");
    let (mut whole, _) = presence.watch(&hall).await.expect("watch");

    let occupancy = snapshot
        .occupancy
        .clone()
        .expect("counts for a large scope");
    assert_eq!(
        (occupancy.online, occupancy.away, occupancy.busy),
        (10, 0, 0)
    );
    let listed: Vec<String> = snapshot
        .users
        .iter()
        .map(|u| u.user_id.to_string())
        .collect();
    assert_eq!(listed, ["user-0"], "only the named users are listed");

    for n in 3..6 {
        presence
            .set_status(&format!("user-{n}").into(), RequestedStatus::Busy, None)
            .await
            .expect("busy");
    }
    presence
        .set_status(&"user-0".into(), RequestedStatus::Away, None)
        .await
        .expect("away");

    let seen = deliveries(&mut counting).await;
    assert_eq!(event_users(&seen), ["user-0"], "no unnamed member's event");
    let sent = counts(&seen);
    assert!(
        (1..=2).contains(&sent.len()),
        "at most once per tick, only when changed: {sent:?}"
    );
    let last = sent.last().expect("counts");
    assert_eq!((last.online, last.away, last.busy), (6, 1, 3));
    assert!(last.v > occupancy.v);
    assert_eq!(
        event_users(&deliveries(&mut whole).await).len(),
        4,
        "a whole watcher sees all"
    );

    // Nothing changes: no more counts.
    assert!(deliveries(&mut counting).await.is_empty());
}

#[tokio::test]
async fn a_small_scope_watched_as_counts_sends_every_event() {
    let (presence, _clock) = service().await;
    let room = ScopeId::from("room");
    let _sessions = members(&presence, "room", 3).await;
    let (mut counting, snapshot) = presence.watch_counts(&room, &[]).await.expect("watch");
    assert_eq!(snapshot.occupancy, None);
    assert_eq!(snapshot.users.len(), 3);
    presence
        .set_status(&"user-1".into(), RequestedStatus::Busy, None)
        .await
        .expect("busy");
    let seen = deliveries(&mut counting).await;
    assert_eq!(event_users(&seen), ["user-1"]);
    assert!(counts(&seen).is_empty());
}

#[tokio::test]
async fn a_scope_that_grows_large_switches_to_counts_and_back_when_it_shrinks() {
    let (presence, clock) = service().await;
    let hall = ScopeId::from("hall");
    let mut sessions = members(&presence, "hall", 3).await;
    let (mut counting, snapshot) = presence.watch_counts(&hall, &[]).await.expect("watch");
    assert_eq!(snapshot.occupancy, None);

    for n in 3..8 {
        let spec = SessionSpec::new(format!("user-{n}"), format!("login-{n}")).scope("hall");
        sessions.push(presence.open_session(spec).await.expect("open"));
    }
    let seen = deliveries(&mut counting).await;
    let sent = counts(&seen);
    let large = sent.last().expect("counts once large");
    assert_eq!(large.online, 8);

    // Down to three (not above 3/4 of the threshold): back to members.
    for session in sessions.drain(3..) {
        session.close().await.expect("close");
    }
    clock.advance(Duration::from_secs(5));
    presence.run_due().await.expect("sweep");
    let seen = deliveries(&mut counting).await;
    assert!(
        seen.contains(&Delivery::Lagged),
        "told to read the members again: {seen:?}"
    );
    let again = presence
        .counted_snapshot(&hall, &[])
        .await
        .expect("snapshot");
    assert_eq!(again.occupancy, None);
    assert_eq!(again.users.len(), 3);
    assert!(again.users.iter().all(|u| u.status == Status::Online));
}
