//! docs/rules.md#details through the service, as a host app sees it: custom
//! status, session kinds and app state, hidden last seen, INVISIBLE leaking
//! none of it, members pages, and the changes() hook. Time is a manual
//! clock; nothing here sleeps through a threshold.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use presence_core::{
    AppState, Clock, CustomStatus, Delivery, DetailsError, Error, ManualClock, MemoryStore, NodeId,
    Presence, PresenceEvent, RequestedStatus, ScopeId, SessionHandle, SessionKind, SessionSpec,
    Status, Subscription, UserId, UserPresence,
};
use presence_store_tests::helpers::test_config;
use serde_json::json;

struct World {
    clock: Arc<ManualClock>,
    presence: Presence,
}

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::default());
        let presence = Presence::builder()
            .store(MemoryStore::new())
            .clock(clock.clone())
            .config(test_config())
            .node(NodeId::new("node-a"))
            .batch_interval(Duration::ZERO)
            .build()
            .await
            .expect("valid presence");
        Self { clock, presence }
    }

    async fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
        self.presence.run_due().await.expect("sweep");
    }

    /// Moves time on in heartbeat steps, the `live` sessions beating.
    async fn pass(&self, seconds: u64, live: &[&SessionHandle]) {
        let mut left = seconds;
        while left > 0 {
            let step = left.min(10);
            self.advance(step).await;
            for session in live {
                session.heartbeat().expect("live");
            }
            left -= step;
        }
    }

    async fn open(&self, user: &str, login: &str, kind: Option<SessionKind>) -> SessionHandle {
        let mut spec = SessionSpec::new(user, login).scope("acme");
        if let Some(kind) = kind {
            spec = spec.kind(kind);
        }
        self.presence.open_session(spec).await.expect("open")
    }

    async fn watch(&self) -> Subscription {
        self.presence.watch(&"acme".into()).await.expect("watch").0
    }

    async fn read(&self, user: &str) -> UserPresence {
        self.presence.status(&user.into()).await.expect("status")
    }
}

/// Every event queued now.
fn events(watcher: &mut Subscription) -> Vec<PresenceEvent> {
    let mut seen = Vec::new();
    while let Some(delivery) = watcher.try_recv() {
        assert_ne!(delivery, Delivery::Lagged);
        seen.extend(delivery.events().iter().map(|e| e.event().clone()));
    }
    seen
}

fn custom(text: &str, emoji: &str) -> CustomStatus {
    CustomStatus::new(Some(text.into()), Some(emoji.into()), None).expect("valid")
}

#[tokio::test]
async fn changing_only_the_text_is_one_event_with_the_next_version() {
    let w = World::new().await;
    let _tab = w.open("alice", "l1", None).await;
    let mut bob = w.watch().await;
    let before = w.read("alice").await;

    w.presence
        .set_custom_status(&"alice".into(), Some(custom("In a meeting", "📅")))
        .await
        .expect("set");
    w.presence
        .set_custom_status(&"alice".into(), Some(custom("Lunch", "📅")))
        .await
        .expect("set");

    let seen = events(&mut bob);
    assert_eq!(seen.len(), 2, "one event per change: {seen:?}");
    for (n, event) in seen.iter().enumerate() {
        assert_eq!(event.status, Status::Online, "never OFFLINE in between");
        assert_eq!(event.v, before.v + 1 + n as u64);
    }
    let shown = seen[1].details.as_ref().and_then(|d| d.custom.clone());
    assert_eq!(shown.and_then(|c| c.text).as_deref(), Some("Lunch"));

    // The same again changes nothing anyone sees.
    w.presence
        .set_custom_status(&"alice".into(), Some(custom("Lunch", "📅")))
        .await
        .expect("set");
    assert!(events(&mut bob).is_empty());
}

#[tokio::test]
async fn status_and_text_together_are_one_change_and_clear_together() {
    let w = World::new().await;
    let tab = w.open("alice", "l1", None).await;
    let mut bob = w.watch().await;
    let hour = w.clock.now() + TimeDelta::minutes(5);

    w.presence
        .set_status_and_custom(
            &"alice".into(),
            RequestedStatus::Busy,
            Some(hour),
            Some(custom("In a meeting", "📅")),
        )
        .await
        .expect("set");
    let seen = events(&mut bob);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].status, Status::Busy);
    let meeting = seen[0].details.as_ref().and_then(|d| d.custom.clone());
    assert_eq!(meeting.and_then(|c| c.until), Some(hour));

    w.pass(299, &[&tab]).await;
    assert!(events(&mut bob).is_empty());
    w.pass(1, &[&tab]).await;
    let seen = events(&mut bob);
    assert_eq!(seen.len(), 1, "both clear in one change: {seen:?}");
    // Idle for five minutes: idleness decides again.
    assert_eq!(seen[0].status, Status::Away);
    assert_eq!(seen[0].details, None);
}

#[tokio::test]
async fn a_custom_status_expiring_in_the_past_or_malformed_is_refused_and_nothing_changes() {
    let w = World::new().await;
    let _tab = w.open("alice", "l1", None).await;
    let before = w.read("alice").await;
    let past = CustomStatus {
        until: Some(w.clock.now()),
        ..custom("late", "⏰")
    };
    let error = w
        .presence
        .set_custom_status(&"alice".into(), Some(past))
        .await
        .expect_err("refused");
    assert!(matches!(
        error,
        Error::Details(DetailsError::ExpiryInPast { .. })
    ));
    assert_eq!(
        CustomStatus::new(Some("x".repeat(101)), None, None).map_err(|e| e.code()),
        Err("text_too_long")
    );
    assert_eq!(w.read("alice").await, before);
}

#[tokio::test]
async fn each_kind_of_device_shows_its_own_status() {
    let w = World::new().await;
    let web = w.open("alice", "l1", Some(SessionKind::web())).await;
    let phone = w.open("alice", "l2", Some(SessionKind::mobile())).await;
    let devices = |p: &UserPresence| {
        p.details
            .as_ref()
            .map(|d| {
                d.devices
                    .iter()
                    .map(|(k, s)| (k.to_string(), *s))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let alice = w.read("alice").await;
    assert_eq!(
        devices(&alice),
        [
            ("mobile".into(), Status::Online),
            ("web".into(), Status::Online)
        ]
    );

    // Busy on the web, idle on the phone: the phone turns AWAY at 60 s.
    w.pass(30, &[&web, &phone]).await;
    web.activity().await.expect("activity");
    w.pass(30, &[&web, &phone]).await;
    let alice = w.read("alice").await;
    assert_eq!(alice.status, Status::Online);
    assert_eq!(
        devices(&alice),
        [
            ("mobile".into(), Status::Away),
            ("web".into(), Status::Online)
        ]
    );

    web.close().await.expect("close");
    let alice = w.read("alice").await;
    assert_eq!(devices(&alice), [("mobile".into(), Status::Away)]);
}

#[tokio::test]
async fn session_states_merge_with_the_newest_winning_and_end_with_their_session() {
    let w = World::new().await;
    let web = w.open("alice", "l1", Some(SessionKind::web())).await;
    let phone = w.open("alice", "l2", Some(SessionKind::mobile())).await;
    let state = |value| Some(AppState::new(value).expect("valid"));
    let alice = UserId::from("alice");
    w.presence
        .set_session_state(
            &alice,
            web.id(),
            state(json!({"page": "inbox", "typing": false})),
        )
        .await
        .expect("set");
    w.advance(1).await;
    w.presence
        .set_session_state(
            &alice,
            phone.id(),
            state(json!({"in_call": true, "page": "call"})),
        )
        .await
        .expect("set");
    let merged = |p: UserPresence| {
        serde_json::Value::Object(
            p.details
                .and_then(|d| d.state.as_ref().map(AppState::to_map))
                .unwrap_or_default(),
        )
    };
    assert_eq!(
        merged(w.read("alice").await),
        json!({"page": "call", "typing": false, "in_call": true})
    );

    phone.close().await.expect("close");
    assert_eq!(
        merged(w.read("alice").await),
        json!({"page": "inbox", "typing": false})
    );

    let gone = presence_core::SessionId::from("never-opened");
    let error = w
        .presence
        .set_session_state(&alice, &gone, state(json!({"x": 1})))
        .await
        .expect_err("no such session");
    assert!(error.is_session_gone());
}

#[tokio::test]
async fn the_merged_state_stays_bounded_however_many_sessions_set_one() {
    let w = World::new().await;
    let alice = UserId::from("alice");
    let mut tabs = Vec::new();
    for n in 0..20 {
        let tab = w.open("alice", &format!("l{n}"), None).await;
        let big = json!({ format!("k{n}"): "v".repeat(900) });
        w.presence
            .set_session_state(&alice, tab.id(), Some(AppState::new(big).expect("fits")))
            .await
            .expect("set");
        w.advance(1).await;
        tabs.push(tab);
    }
    let state = w.read("alice").await.details.and_then(|d| d.state.clone());
    let state = state.expect("a state").to_map();
    let bytes = serde_json::to_vec(&state).expect("json").len();
    assert!(bytes <= presence_core::MAX_MERGED_STATE_BYTES, "{bytes}");
    assert!(state.contains_key("k19"), "the newest is kept");
    assert!(!state.contains_key("k0"), "the oldest is left out");
}

#[tokio::test]
async fn a_user_who_hides_last_seen_shows_none_and_watchers_are_told() {
    let w = World::new().await;
    let tab = w.open("alice", "l1", None).await;
    let mut bob = w.watch().await;
    assert!(w.read("alice").await.last_seen.is_some());

    w.presence
        .set_last_seen_hidden(&"alice".into(), true)
        .await
        .expect("hide");
    let seen = events(&mut bob);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].last_seen, None);

    tab.close().await.expect("close");
    w.advance(5).await;
    let gone = events(&mut bob);
    assert_eq!(gone.last().map(|e| e.status), Some(Status::Offline));
    assert!(gone.iter().all(|e| e.last_seen.is_none()), "{gone:?}");
    assert_eq!(w.read("alice").await.last_seen, None);

    w.presence
        .set_last_seen_hidden(&"alice".into(), false)
        .await
        .expect("show");
    assert!(w.read("alice").await.last_seen.is_some());
}

#[tokio::test]
async fn an_invisible_user_leaks_no_text_device_or_state() {
    let w = World::new().await;
    let tab = w.open("alice", "l1", Some(SessionKind::mobile())).await;
    let alice = UserId::from("alice");
    w.presence
        .set_status(&alice, RequestedStatus::Invisible, None)
        .await
        .expect("invisible");
    let mut bob = w.watch().await;
    let before = w.read("alice").await;

    w.presence
        .set_custom_status(&alice, Some(custom("secret", "🤫")))
        .await
        .expect("set");
    w.presence
        .set_session_state(
            &alice,
            tab.id(),
            Some(AppState::new(json!({"in_call": true})).unwrap()),
        )
        .await
        .expect("set");
    w.pass(61, &[&tab]).await;

    assert!(
        events(&mut bob).is_empty(),
        "no event betrays an invisible user"
    );
    let read = w.read("alice").await;
    assert_eq!(read, before, "nothing of it is readable either");
    assert_eq!(read.details, None);
    let members = w
        .presence
        .members(&"acme".into(), None, 10)
        .await
        .expect("members");
    assert!(members.members.is_empty());

    // Visible again: what was set shows at once.
    w.presence
        .set_status(&alice, RequestedStatus::Online, None)
        .await
        .expect("visible");
    let seen = events(&mut bob);
    let details = seen[0].details.clone().expect("details");
    assert_eq!(
        details.custom.clone().and_then(|c| c.text).as_deref(),
        Some("secret")
    );
    assert!(details.state.is_some());
}

#[tokio::test]
async fn members_come_in_pages_in_user_order() {
    let w = World::new().await;
    let mut tabs = Vec::new();
    for n in (0..25).rev() {
        tabs.push(
            w.open(&format!("user-{n:02}"), &format!("l{n}"), None)
                .await,
        );
    }
    let acme = ScopeId::from("acme");
    let mut cursor: Option<String> = None;
    let mut walked = Vec::new();
    loop {
        let page = w
            .presence
            .members(&acme, cursor.as_deref(), 10)
            .await
            .expect("page");
        assert!(page.members.len() <= 10);
        walked.extend(page.members.iter().map(|m| m.user_id.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|n| format!("user-{n:02}")).collect();
    assert_eq!(walked, expected);

    for limit in [0, 1001, 1_000_000] {
        assert!(matches!(
            w.presence.members(&acme, None, limit).await,
            Err(Error::BadLimit { .. })
        ));
    }
    for garbage in ["garbage", "", "%%", "bTE6"] {
        assert!(matches!(
            w.presence.members(&acme, Some(garbage), 10).await,
            Err(Error::BadCursor)
        ));
    }
    let empty = w
        .presence
        .members(&"nowhere".into(), None, 10)
        .await
        .expect("empty");
    assert!(empty.members.is_empty() && empty.next_cursor.is_none());
}

#[tokio::test]
async fn changes_tells_the_host_every_change_this_node_makes() {
    let w = World::new().await;
    let mut changes = w.presence.changes();
    let tab = w.open("alice", "l1", None).await;
    let first = changes.recv().await.expect("open").expect("not missed");
    assert_eq!((first.from, first.to), (Status::Offline, Status::Online));
    assert!(first.first_session);

    w.presence
        .set_custom_status(&"alice".into(), Some(custom("Lunch", "🍔")))
        .await
        .expect("set");
    let update = changes.recv().await.expect("update").expect("not missed");
    assert_eq!((update.from, update.to), (Status::Online, Status::Online));
    assert_eq!(update.version, first.version + 1);

    // A change the sweeper makes (the linger ending) is told too.
    tab.close().await.expect("close");
    w.advance(5).await;
    let mut offline = None;
    while let Ok(Some(change)) =
        tokio::time::timeout(Duration::from_millis(100), changes.recv()).await
    {
        let change = change.expect("not missed");
        if change.went_offline() {
            offline = Some(change);
        }
    }
    let offline = offline.expect("told when alice went OFFLINE");
    assert!(offline.last_session || offline.from != Status::Offline);
    assert!(offline.last_seen.is_some());
}
