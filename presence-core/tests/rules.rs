//! docs/rules.md through the service, as a host app sees it: every row of the
//! §3 precedence, the §2 session rules, and what watchers receive. Time is a
//! manual clock; nothing here sleeps through a threshold.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use presence_core::store::PresenceStore;
use presence_core::{
    Clock, Delivery, Error, ManualClock, MemoryStore, NodeId, Presence, PresenceConfig,
    RequestedStatus, ScopeId, SessionEnd, SessionSpec, Status, Subscription, UserId,
};
use presence_store_tests::helpers::{drain, ev, next_event, status_of, test_config};

struct World {
    clock: Arc<ManualClock>,
    presence: Presence,
}

impl World {
    async fn new() -> Self {
        Self::on(Arc::new(MemoryStore::new()), "node-a").await
    }

    async fn on(store: Arc<dyn PresenceStore>, node: &str) -> Self {
        let clock = Arc::new(ManualClock::default());
        let presence = Presence::builder()
            .shared_store(store)
            .clock(clock.clone())
            .config(test_config())
            .node(NodeId::new(node))
            // The rules are checked by draining what is queued at once: no
            // event may wait for a batch tick (batches: see `Subscription`).
            .batch_interval(Duration::ZERO)
            .build()
            .await
            .expect("valid presence");
        Self { clock, presence }
    }

    /// Moves time on and waits until every change it causes is applied.
    async fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
        self.presence.run_due().await.expect("sweep");
    }

    async fn tab(&self, user: &str, login: &str) -> presence_core::SessionHandle {
        self.presence
            .open_session(SessionSpec::new(user, login).scope("acme"))
            .await
            .expect("open")
    }

    async fn watch(&self, scope: &str) -> Subscription {
        self.presence
            .watch(&ScopeId::from(scope))
            .await
            .expect("watch")
            .0
    }

    async fn status(&self, user: &str) -> Status {
        status_of(&self.presence, user).await
    }
}

#[tokio::test]
async fn rule_1_a_user_with_no_live_session_is_offline() {
    let w = World::new().await;
    assert_eq!(w.status("nobody").await, Status::Offline);
    let tab = w.tab("alice", "l1").await;
    std::mem::forget(tab); // a crashed client: no close, no heartbeat
    w.advance(29).await;
    assert_eq!(w.status("alice").await, Status::Online);
    w.advance(1).await; // lapsed at 30 s, lingering until 35 s
    assert_eq!(w.status("alice").await, Status::Online);
    w.advance(5).await;
    assert_eq!(w.status("alice").await, Status::Offline);
}

#[tokio::test]
async fn rule_2_no_activity_for_offline_after_is_offline_even_when_connected() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let tab = w.tab("alice", "l1").await;
    w.presence
        .set_status(&"alice".into(), RequestedStatus::Busy, None)
        .await
        .expect("busy");
    for _ in 0..60 {
        w.advance(10).await;
        tab.heartbeat().expect("heartbeat");
    }
    assert_eq!(
        drain(&mut events),
        vec![
            ev("alice", Status::Online, 1),
            ev("alice", Status::Busy, 2),
            ev("alice", Status::Offline, 3)
        ],
        "BUSY holds through idleness, but offline_after outranks it"
    );
    tab.activity().await.expect("activity");
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Busy, 4)]);
}

#[tokio::test]
async fn rule_3_invisible_users_are_offline_to_every_observer_and_send_nothing() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let tab = w.tab("alice", "l1").await;
    w.presence
        .set_status(&"alice".into(), RequestedStatus::Invisible, None)
        .await
        .expect("invisible");
    assert_eq!(
        drain(&mut events),
        vec![
            ev("alice", Status::Online, 1),
            ev("alice", Status::Offline, 2)
        ]
    );
    let seen_before = w.presence.status(&"alice".into()).await.expect("status");
    w.advance(20).await;
    tab.activity().await.expect("activity");
    let second_tab = w.tab("alice", "l2").await;
    w.advance(70).await; // idle long enough to be AWAY, were she visible
    tab.heartbeat().ok();
    drop(second_tab);
    w.advance(10).await;
    assert!(drain(&mut events).is_empty(), "nothing betrays her");
    let seen_after = w.presence.status(&"alice".into()).await.expect("status");
    assert_eq!(seen_after, seen_before, "not even last_seen moves");
    let snapshot = w.presence.snapshot(&"acme".into()).await.expect("snapshot");
    assert!(
        snapshot.users.is_empty(),
        "snapshots list no invisible user"
    );
}

#[tokio::test]
async fn rule_4_manual_busy_and_away_show_as_chosen_and_expire_by_themselves() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let tab = w.tab("alice", "l1").await;
    let until = w.clock.now() + TimeDelta::seconds(25);
    let shown = w
        .presence
        .set_status(&"alice".into(), RequestedStatus::Busy, Some(until))
        .await
        .expect("busy");
    assert_eq!((shown.status, shown.v), (Status::Busy, 2));
    w.advance(24).await;
    tab.heartbeat().expect("heartbeat");
    w.advance(1).await;
    w.presence
        .set_status(&"alice".into(), RequestedStatus::Away, None)
        .await
        .expect("away");
    w.presence
        .set_status(&"alice".into(), RequestedStatus::Online, None)
        .await
        .expect("online clears it");
    assert_eq!(
        drain(&mut events),
        vec![
            ev("alice", Status::Online, 1),
            ev("alice", Status::Busy, 2),
            ev("alice", Status::Online, 3),
            ev("alice", Status::Away, 4),
            ev("alice", Status::Online, 5),
        ]
    );
    let past = w.clock.now() - TimeDelta::seconds(1);
    let err = w
        .presence
        .set_status(&"alice".into(), RequestedStatus::Busy, Some(past))
        .await
        .expect_err("expiry in the past");
    assert!(matches!(err, Error::ExpiryInPast { .. }));
    assert_eq!(w.status("alice").await, Status::Online, "nothing changed");
}

#[tokio::test]
async fn rules_5_and_6_idle_users_turn_away_and_activity_brings_them_back() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let tab = w.tab("alice", "l1").await;
    w.advance(20).await;
    tab.heartbeat().expect("heartbeat");
    w.advance(20).await;
    tab.heartbeat().expect("heartbeat");
    w.advance(19).await;
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Online, 1)]);
    w.advance(1).await;
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Away, 2)]);
    tab.activity().await.expect("activity");
    tab.activity()
        .await
        .expect("repeated activity publishes nothing");
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Online, 3)]);
}

#[tokio::test]
async fn closing_one_of_several_tabs_changes_nothing_and_the_last_one_lingers() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let first = w.tab("alice", "l1").await;
    let second = w.tab("alice", "l1").await;
    let third = w.tab("alice", "l1").await;
    drop(first); // closes in the background, promptly
    tokio::task::yield_now().await;
    second.close().await.expect("close");
    w.advance(4).await;
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Online, 1)]);
    third.close().await.expect("close");
    w.advance(4).await;
    assert!(drain(&mut events).is_empty(), "lingering");
    w.advance(1).await;
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Offline, 2)]);
}

#[tokio::test]
async fn a_reload_inside_the_linger_shows_no_flicker() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let page = w.tab("alice", "l1").await;
    drop(page);
    tokio::task::yield_now().await; // the dropped handle closes on the runtime
    w.advance(3).await;
    let next_page = w.tab("alice", "l1").await;
    w.advance(30).await;
    next_page.heartbeat().ok();
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Online, 1)]);
}

#[tokio::test]
async fn logout_ends_that_logins_sessions_at_once_and_tells_their_holders() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let mut laptop = w.tab("alice", "laptop-login").await;
    let phone = w.tab("alice", "phone-login").await;
    let ended = w
        .presence
        .logout(&"alice".into(), &"laptop-login".into())
        .await
        .expect("logout");
    assert_eq!(ended, vec![laptop.id().clone()]);
    assert_eq!(laptop.ended().await, SessionEnd::LoggedOut);
    assert!(laptop.heartbeat().expect_err("gone").is_session_gone());
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Online, 1)]);
    drop(phone);
    tokio::task::yield_now().await;
    w.presence
        .logout(&"alice".into(), &"phone-login".into())
        .await
        .expect("logout");
    assert_eq!(
        drain(&mut events),
        vec![ev("alice", Status::Offline, 2)],
        "logout cancels that login's linger: OFFLINE at once"
    );
}

#[tokio::test]
async fn a_half_open_session_lapses_its_holder_is_told_and_the_user_goes_offline() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let mut silent = w.tab("alice", "l1").await;
    w.advance(30).await;
    assert_eq!(silent.has_ended(), Some(SessionEnd::Lapsed));
    assert_eq!(silent.ended().await, SessionEnd::Lapsed);
    w.advance(5).await;
    assert_eq!(
        drain(&mut events),
        vec![
            ev("alice", Status::Online, 1),
            ev("alice", Status::Offline, 2)
        ]
    );
    let last_seen = w.presence.status(&"alice".into()).await.expect("status");
    assert_eq!(
        last_seen.last_seen,
        Some(w.clock.now() - TimeDelta::seconds(35))
    );
}

#[tokio::test]
async fn the_sweeper_fires_deadlines_by_itself() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let _tab = w.tab("alice", "l1").await;
    assert_eq!(next_event(&mut events).await.status, Status::Online);
    // No run_due here: the background sweeper wakes on the clock alone.
    w.clock.advance(Duration::from_secs(35));
    assert_eq!(next_event(&mut events).await.status, Status::Offline);
}

#[tokio::test]
async fn watchers_of_other_scopes_and_other_users_hear_nothing() {
    let w = World::new().await;
    let mut globex = w.watch("globex").await;
    let mut only_bob = w.presence.subscribe();
    only_bob.watch_users("acme".into(), [UserId::from("bob")]);
    let _alice = w.tab("alice", "l1").await;
    let _bob = w.tab("bob", "l2").await;
    assert!(
        drain(&mut globex).is_empty(),
        "acme's users never reach globex"
    );
    assert_eq!(drain(&mut only_bob), vec![ev("bob", Status::Online, 1)]);

    let snapshot = w
        .presence
        .snapshot_of(&"globex".into(), &["alice".into()])
        .await
        .expect("snapshot");
    assert_eq!(snapshot.users[0].status, Status::Offline);
    assert_eq!(snapshot.users[0].v, 0, "nothing of acme leaks into globex");
    assert_eq!(snapshot.users[0].last_seen, None);
}

#[tokio::test]
async fn subscribe_then_snapshot_misses_nothing() {
    let w = World::new().await;
    let _alice = w.tab("alice", "l1").await;
    let (mut events, snapshot) = w.presence.watch(&"acme".into()).await.expect("watch");
    let alice = snapshot.user(&"alice".into()).expect("alice listed");
    assert_eq!((alice.status, alice.v), (Status::Online, 1));
    w.advance(60).await;
    let event = next_event(&mut events).await;
    assert!(event.v > alice.v);
    assert_eq!(
        event.status,
        Status::Offline,
        "her session lapsed meanwhile"
    );
}

#[tokio::test]
async fn a_lagging_subscriber_is_told_and_others_are_not_slowed() {
    let clock = Arc::new(ManualClock::default());
    let presence = Presence::builder()
        .clock(clock.clone())
        .config(test_config())
        .subscriber_capacity(2)
        // One queue slot per event, as batches would hold several.
        .batch_interval(Duration::ZERO)
        .build()
        .await
        .expect("presence");
    let (mut slow, _) = presence.watch(&"acme".into()).await.expect("watch");
    let mut tabs = Vec::new();
    for user in ["a", "b", "c", "d"] {
        tabs.push(
            presence
                .open_session(SessionSpec::new(user, "l").scope("acme"))
                .await
                .expect("open"),
        );
        let (mut fresh, _) = presence.watch(&"acme".into()).await.expect("watch");
        let _ = fresh.try_recv();
    }
    assert_eq!(slow.recv().await, Some(Delivery::Lagged));
    assert!(slow.try_recv().is_none(), "superseded events are dropped");
    assert!(presence.fanout_stats().dropped >= 2);
    let snapshot = presence.snapshot(&"acme".into()).await.expect("resnapshot");
    assert_eq!(snapshot.users.len(), 4);
}

#[tokio::test]
async fn http_activity_keeps_a_user_online_without_a_socket_and_coalesces() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let (user, login) = (UserId::from("alice"), "cookie-1".into());
    let scopes = [ScopeId::from("acme")];
    assert!(
        w.presence
            .mark_http_activity(&user, &login, &scopes)
            .await
            .expect("mark")
    );
    assert!(
        !w.presence
            .mark_http_activity(&user, &login, &scopes)
            .await
            .expect("mark"),
        "a burst of page loads costs one store write"
    );
    for _ in 0..10 {
        w.advance(20).await;
        w.presence
            .mark_http_activity(&user, &login, &scopes)
            .await
            .expect("mark");
    }
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Online, 1)]);
    w.advance(35).await; // no more requests: the HTTP session lapses
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Offline, 2)]);
}

#[tokio::test]
async fn a_node_that_dies_leaves_no_ghost_and_its_restart_clears_its_sessions() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let crashed = World::on(store.clone(), "node-a").await;
    let survivor = World::on(store.clone(), "node-b").await;
    let mut events = survivor.watch("acme").await;
    std::mem::forget(crashed.tab("alice", "l1").await);
    std::mem::forget(crashed.tab("bob", "l2").await);
    drop(crashed.presence); // killed: nothing closed, nothing said
    let carol = survivor.tab("carol", "l3").await;
    assert_eq!(
        survivor.status("alice").await,
        Status::Online,
        "one store, one presence"
    );
    let mut online: Vec<_> = drain(&mut events).into_iter().map(|e| e.0).collect();
    online.sort();
    assert_eq!(
        online,
        vec!["alice", "bob", "carol"],
        "changes made on the other node arrive"
    );

    // Alice's lapses are found by the surviving node's sweeper.
    survivor.advance(20).await;
    carol.heartbeat().expect("carol's client is alive");
    survivor.advance(15).await;
    let mut offline: Vec<_> = drain(&mut events).into_iter().map(|e| e.0).collect();
    offline.sort();
    assert_eq!(offline, vec!["alice", "bob"]);

    // A restarted node-a clears what its earlier run left once that run's
    // lease (15 s) has run out, seen at its next look (every third of a
    // lease): until then it cannot tell a run that died from one still
    // serving beside it (a rolling deploy). Well before dave's session
    // would have lapsed (30 s, then the linger).
    let leftover = World::on(store.clone(), "node-a").await;
    std::mem::forget(leftover.tab("dave", "l4").await);
    drop(leftover.presence);
    let restarted = World::on(store.clone(), "node-a").await;
    restarted.advance(14).await;
    assert_eq!(restarted.status("dave").await, Status::Online);
    restarted.advance(7).await;
    restarted.advance(5).await;
    assert_eq!(restarted.status("dave").await, Status::Offline);
    assert_eq!(restarted.status("carol").await, Status::Online);
}

#[tokio::test]
async fn graceful_shutdown_tells_session_holders_and_users_linger() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let leaving = World::on(store.clone(), "node-a").await;
    let staying = World::on(store, "node-b").await;
    let mut events = staying.watch("acme").await;
    let mut tab = leaving.tab("alice", "l1").await;
    leaving.presence.shutdown().await;
    assert_eq!(tab.ended().await, SessionEnd::ShutDown);
    assert!(matches!(
        leaving
            .presence
            .open_session(SessionSpec::new("x", "l"))
            .await,
        Err(Error::ShutDown)
    ));
    // The client reconnects to the other node inside the linger: no flicker.
    let _moved = staying.tab("alice", "l1").await;
    staying.advance(10).await;
    assert_eq!(
        drain(&mut events),
        vec![ev("alice", Status::Online, 1)],
        "no OFFLINE blip"
    );
    let alice = staying
        .presence
        .status(&"alice".into())
        .await
        .expect("status");
    assert_eq!((alice.status, alice.v), (Status::Online, 1));
}

#[tokio::test]
async fn a_bad_configuration_is_an_error_not_a_panic() {
    let config = PresenceConfig {
        away_after: Duration::from_secs(3600),
        ..PresenceConfig::default()
    };
    let err = Presence::builder()
        .config(config)
        .build()
        .await
        .expect_err("away after offline");
    assert!(matches!(err, Error::Config(_)));
    assert!(err.to_string().contains("away_after"));
}

#[tokio::test]
async fn reopening_a_session_id_hands_it_to_the_new_handle() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let spec = || {
        SessionSpec::new("alice", "l1")
            .scope("acme")
            .id("resumed-tab")
    };
    let mut old = w.presence.open_session(spec()).await.expect("open");
    let new = w.presence.open_session(spec()).await.expect("reopen");
    assert_eq!(old.ended().await, SessionEnd::Replaced);
    drop(old);
    tokio::task::yield_now().await;
    w.advance(20).await;
    new.heartbeat()
        .expect("the session is still open for the new handle");
    assert_eq!(new.has_ended(), None);
    drop(new);
    tokio::task::yield_now().await;
    w.advance(5).await;
    assert_eq!(
        drain(&mut events),
        vec![
            ev("alice", Status::Online, 1),
            ev("alice", Status::Offline, 2)
        ]
    );
}

#[tokio::test]
async fn an_http_heartbeat_keeps_a_socketless_client_present_but_lets_it_go_away() {
    let w = World::new().await;
    let mut events = w.watch("acme").await;
    let (user, login) = (UserId::from("alice"), "beacon-1".into());
    let scopes = [ScopeId::from("acme")];
    w.presence
        .http_heartbeat(&user, &login, &scopes)
        .await
        .expect("opens");
    for _ in 0..13 {
        w.advance(25).await;
        w.presence
            .http_heartbeat(&user, &login, &scopes)
            .await
            .expect("beat");
    }
    // 325 s of heartbeats and no activity: present, but AWAY.
    assert_eq!(
        drain(&mut events),
        vec![ev("alice", Status::Online, 1), ev("alice", Status::Away, 2)]
    );
    w.advance(35).await;
    assert_eq!(drain(&mut events), vec![ev("alice", Status::Offline, 3)]);
}

#[tokio::test]
async fn an_http_mark_that_arrives_after_logout_does_not_bring_the_login_back() {
    let w = World::new().await;
    let (user, login) = (UserId::from("alice"), "cookie-1".into());
    let scopes = [ScopeId::from("acme")];
    w.presence
        .mark_http_activity(&user, &login, &scopes)
        .await
        .expect("mark");
    w.presence.logout(&user, &login).await.expect("logout");
    assert!(
        !w.presence
            .mark_http_activity(&user, &login, &scopes)
            .await
            .expect("late mark")
    );
    assert_eq!(w.status("alice").await, Status::Offline);
}

#[tokio::test]
async fn a_logout_on_one_node_ends_the_sessions_held_by_another() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let a = World::on(store.clone(), "node-a").await;
    let b = World::on(store, "node-b").await;
    let mut events = b.watch("acme").await;
    let mut socket_on_a = a.tab("alice", "laptop").await;
    let _phone_on_b = b.tab("alice", "phone").await;
    b.presence
        .logout(&"alice".into(), &"laptop".into())
        .await
        .expect("logout");
    assert_eq!(socket_on_a.ended().await, SessionEnd::LoggedOut);
    b.presence
        .logout(&"alice".into(), &"phone".into())
        .await
        .expect("logout");
    assert_eq!(
        drain(&mut events),
        vec![
            ev("alice", Status::Online, 1),
            ev("alice", Status::Offline, 2)
        ]
    );
}

#[tokio::test]
async fn reopening_a_lapsed_session_id_before_the_sweep_gives_a_live_handle() {
    let w = World::new().await;
    let spec = || SessionSpec::new("alice", "l1").scope("acme").id("tab-1");
    std::mem::forget(w.presence.open_session(spec()).await.expect("open"));
    // Lapsed at 30 s; nothing has swept it yet (this task has not yielded).
    w.clock.advance(Duration::from_secs(31));
    let fresh = w.presence.open_session(spec()).await.expect("reopen");
    assert_eq!(
        fresh.has_ended(),
        None,
        "the new handle is not told the old one lapsed"
    );
    fresh.heartbeat().expect("the reopened session is live");
    drop(fresh);
    tokio::task::yield_now().await;
    w.advance(5).await;
    assert_eq!(
        w.status("alice").await,
        Status::Offline,
        "closing the handle closed it"
    );
}
