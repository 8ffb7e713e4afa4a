//! Several nodes, each a `Presence` service with its own `PgStore` (its own
//! pool and listener), on one real PostgreSQL schema and one manual clock:
//! first and last sessions racing from two stores, socket and HTTP
//! heartbeats, a listener connection that drops, notifications past
//! PostgreSQL's limit (a long scope name, details of many sessions), the
//! database's clock, flushes racing changes, a session taken over, and a
//! database emptied under a node. What every
//! store shares across two nodes on one store is the cluster suite
//! (`cluster_suite_postgres.rs`).

#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_core::{
    AppState, Delivery, LoginId, ManualClock, NodeId, Presence, PresenceConfig, ScopeId,
    SessionEnd, SessionId, SessionKind, SessionSpec, Status, Subscription, UserId,
};
use presence_sqlx::{PgConfig, PgStore};
use presence_store_tests::helpers::{
    WAIT, ev, eventually, expect_lagged, next_seen, quiet, status_becomes, test_config,
};
use serde_json::json;

/// How long a watcher listens (real time) to conclude that nothing more
/// arrives.
const QUIET: Duration = Duration::from_millis(300);

/// The tests' thresholds, with sessions that stay ONLINE for the 60 s the
/// heartbeat test runs without activity.
fn config() -> PresenceConfig {
    PresenceConfig {
        away_after: Duration::from_secs(120),
        ..test_config()
    }
}

/// One schema shared by the nodes of a test, dropped at its end.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new() -> Self {
        Self {
            url: common::postgres_url(),
            name: common::fresh_schema(),
        }
    }

    async fn store(&self) -> PgStore {
        PgStore::connect(
            PgConfig::new(self.url.clone())
                .schema(self.name.clone())
                .flush_interval(Duration::from_millis(50)),
        )
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be running at {}: {e}", self.url))
    }

    async fn node(&self, name: &str, clock: &Arc<ManualClock>) -> Presence {
        node_on(self.store().await, name, clock).await
    }
}

/// Node `name` on `store` (a test keeps the store to reach under it).
async fn node_on(store: PgStore, name: &str, clock: &Arc<ManualClock>) -> Presence {
    Presence::builder()
        .store(store)
        .clock(clock.clone())
        .config(config())
        .node(NodeId::new(name))
        .store_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("presence")
}

impl Drop for Schema {
    fn drop(&mut self) {
        common::drop_schema(self.url.clone(), self.name.clone());
    }
}

/// Watches `acme` on `node`. The node's listener is listening once the
/// service is built, so no event committed from now on is missed.
async fn watch(node: &Presence) -> Subscription {
    node.watch(&"acme".into()).await.expect("watch").0
}

/// Unlike the cluster suite's race (two nodes on one store, whose user
/// locks put the calls in a line), each node here has a store of its own:
/// the first and last sessions are decided in PostgreSQL itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_and_last_sessions_from_two_nodes_are_decided_once() {
    let (schema, clock) = (Schema::new(), Arc::new(ManualClock::default()));
    let a = schema.node("node-a", &clock).await;
    let b = schema.node("node-b", &clock).await;
    let mut on_a = watch(&a).await;
    let mut on_b = watch(&b).await;
    // Both nodes hold sessions at once, then all close at once.
    let mut tasks = Vec::new();
    for n in 0..16 {
        let presence = if n % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let tab = presence
                .open_session(SessionSpec::new("alice", format!("l{n}")).scope("acme"))
                .await
                .expect("open");
            tokio::time::sleep(Duration::from_millis(50)).await;
            tab.close().await.expect("close");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    clock.advance(Duration::from_secs(6));
    a.run_due().await.expect("sweep");
    b.run_due().await.expect("sweep");
    for events in [&mut on_a, &mut on_b] {
        assert_eq!(next_seen(events).await, ev("alice", Status::Online, 1));
        assert_eq!(next_seen(events).await, ev("alice", Status::Offline, 2));
        quiet(events, QUIET).await;
    }
}

/// A socket's heartbeats stay on its node (its lease vouches for it); an
/// HTTP session's, which any node may hear, reach the database in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_heartbeats_cost_the_database_nothing_and_http_ones_are_batched() {
    let (schema, clock) = (Schema::new(), Arc::new(ManualClock::default()));
    let a_store = schema.store().await;
    let a = node_on(a_store.clone(), "node-a", &clock).await;
    let b = schema.node("node-b", &clock).await;
    let mut events = watch(&b).await;
    let mut tabs = Vec::new();
    for n in 0..10 {
        tabs.push(
            a.open_session(SessionSpec::new(format!("user-{n}"), "l").scope("acme"))
                .await
                .expect("open"),
        );
    }
    let browsing: Vec<UserId> = (10..20)
        .map(|n| UserId::from(format!("user-{n}")))
        .collect();
    let scopes = [ScopeId::from("acme")];
    for user in &browsing {
        a.http_heartbeat(user, &LoginId::from(format!("{user}-l")), &scopes)
            .await
            .expect("opens the HTTP session");
    }
    for _ in 0..20 {
        next_seen(&mut events).await;
    }
    // Three rounds past the TTL; only node B sweeps the users.
    for _ in 0..6 {
        clock.advance(Duration::from_secs(10));
        for _ in 0..5 {
            for tab in &tabs {
                tab.heartbeat().expect("live");
            }
            for user in &browsing {
                let login = LoginId::from(format!("{user}-l"));
                a.http_heartbeat(user, &login, &scopes).await.expect("live");
            }
        }
        let written = a_store.flush_heartbeats().await.expect("flush");
        assert!(
            written <= browsing.len(),
            "one write per HTTP session, none per socket: {written}"
        );
        a.run_due().await.expect("node A renews its lease");
        b.run_due().await.expect("sweep on B");
    }
    quiet(&mut events, QUIET).await;
    let snapshot = b.snapshot(&"acme".into()).await.expect("snapshot");
    assert!(
        snapshot.users.iter().all(|u| u.status == Status::Online),
        "{snapshot:?}"
    );
    assert_eq!(snapshot.users.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listener_reconnects_and_resyncs_its_watchers() {
    let (schema, clock) = (Schema::new(), Arc::new(ManualClock::default()));
    let a = schema.node("node-a", &clock).await;
    let b = schema.node("node-b", &clock).await;
    let (mut events, _) = b.watch(&"acme".into()).await.expect("watch");

    // Cut node B's listener connection from the server side.
    let killer = schema.store().await;
    let application = format!("presence-feed:{}", schema.name);
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&application)
    .fetch_all(killer.pool())
    .await
    .expect("terminate");
    assert_eq!(killed.len(), 2, "one listener per node");

    expect_lagged(&mut events).await;
    let _tab = a
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    assert_eq!(next_seen(&mut events).await, ev("alice", Status::Online, 1));
}

/// The database server's clock is the cluster's (see presence time on `presence_core::Clock`):
/// it reads as this machine's, which shares it here, to within a second;
/// and a node on it (default clock) keeps to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_clock_is_presence_time() {
    let schema = Schema::new();
    let store = schema.store().await;
    let read = store
        .time()
        .await
        .expect("time")
        .expect("PostgreSQL has a clock");
    let off = (read - chrono::Utc::now()).num_milliseconds().abs();
    assert!(off < 1_000, "{off} ms off the local clock");
    let node = Presence::builder()
        .store(store)
        .node(NodeId::new("node-a"))
        .build()
        .await
        .expect("presence");
    let off = (node.clock().now() - chrono::Utc::now())
        .num_milliseconds()
        .abs();
    assert!(off < 1_000, "presence time is {off} ms off");
    node.shutdown().await;
}

/// A change whose notification would pass PostgreSQL's 8000-byte payload
/// limit (a host's long scope name here) still applies, and the watchers
/// of that scope on the other node learn of it: told to resnapshot, they
/// find the user there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_notification_would_be_too_long_applies_and_is_told() {
    let schema = Schema::new();
    let clock = Arc::new(ManualClock::default());
    let a = schema.node("node-a", &clock).await;
    let b = schema.node("node-b", &clock).await;
    let scope = presence_core::ScopeId::from("s".repeat(9_000));
    let (mut events, _) = b.watch(&scope).await.expect("watch");
    let _alice = a
        .open_session(SessionSpec::new("alice", "l").scope(scope.clone()))
        .await
        .expect("the change applies");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Delivery::Event(e))) => {
                assert_eq!((e.user_id.as_str(), e.status), ("alice", Status::Online));
                break;
            }
            Ok(Some(Delivery::Lagged)) => {
                let snapshot = b.snapshot(&scope).await.expect("snapshot");
                if snapshot.user(&"alice".into()).is_some() {
                    break;
                }
            }
            other => panic!("node B never learned of alice: {other:?}"),
        }
    }
    // Long session ids in an ended-sessions notice: a logout on B of a
    // login with many sessions on A ends every one of them there.
    let mut tabs = Vec::new();
    for n in 0..40 {
        let id = format!("{n:03}-{}", "x".repeat(300));
        tabs.push(
            a.open_session(SessionSpec::new("bob", "laptop").scope("acme").id(id))
                .await
                .expect("open"),
        );
    }
    b.logout(&"bob".into(), &"laptop".into())
        .await
        .expect("the logout applies");
    for tab in &mut tabs {
        let end = tokio::time::timeout(Duration::from_secs(5), tab.ended())
            .await
            .expect("every tab is told");
        assert_eq!(end, SessionEnd::LoggedOut);
    }
}

/// The largest details (the merged app state of many sessions, bounded at
/// 4 KiB: the newest states that fit) reach the other node intact: an
/// event carries them while it fits a notification, and one that does not
/// tells the watchers to resnapshot and read them back from the `details`
/// column, as every read on that node does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_too_long_for_a_notification_reach_the_other_node_intact() {
    let schema = Schema::new();
    let clock = Arc::new(ManualClock::default());
    let a = schema.node("node-a", &clock).await;
    let b = schema.node("node-b", &clock).await;
    let mut events = watch(&b).await;
    let alice = UserId::from("alice");
    let mut tabs = Vec::new();
    for _ in 0..16 {
        let spec = SessionSpec::new("alice", "laptop")
            .scope("acme")
            .kind(SessionKind::web());
        tabs.push(a.open_session(spec).await.expect("open"));
    }
    let mut shown = None;
    for (n, tab) in tabs.iter().enumerate() {
        let state = json!({ format!("tab{n:02}"): "x".repeat(1_000) });
        let state = AppState::new(state).expect("at most 1 KiB");
        let set = a.set_session_state(&alice, tab.id(), Some(state)).await;
        shown = Some(set.expect("the change applies"));
    }
    let shown = shown.expect("set");
    let merged = shown
        .details
        .as_deref()
        .and_then(|details| details.state.as_ref())
        .map_or(0, |state| state.to_map().len());
    assert_eq!(merged, 4, "the newest tabs' keys that fit in 4 KiB");
    let size = serde_json::to_string(&shown.details).expect("json").len();
    assert!(size > 4_000, "{size} bytes of details");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let on_b = loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Delivery::Lagged)) => {
                let snapshot = b.snapshot(&"acme".into()).await.expect("snapshot");
                match snapshot.user(&alice) {
                    Some(seen) if seen.v == shown.v => break seen.clone(),
                    _ => {}
                }
            }
            Ok(Some(delivery)) => {
                if let Some(last) = delivery.events().iter().find(|e| e.v == shown.v) {
                    break presence_core::UserPresence {
                        user_id: last.user_id.clone(),
                        status: last.status,
                        last_seen: last.last_seen,
                        v: last.v,
                        details: last.details.clone(),
                    };
                }
            }
            other => panic!("node B never learned alice's last state: {other:?}"),
        }
    };
    assert_eq!(on_b, shown, "the details intact");
    assert_eq!(b.status(&alice).await.expect("status"), shown);
    let page = b.members(&"acme".into(), None, 10).await.expect("page");
    assert_eq!(page.members, vec![shown]);
}

/// A heartbeat flush and a change to the same user lock the user's session
/// rows: both take them in the same order (by session id), so they never
/// deadlock. Here a node's flushes race its own changes (activity, which
/// rewrites the sessions heard from) and another node's, on one user with
/// many HTTP sessions (whose heartbeats the database keeps);
/// PostgreSQL would abort one side of a deadlock with 40P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushes_and_changes_on_one_user_never_deadlock() {
    let schema = Schema::new();
    let clock = Arc::new(ManualClock::default());
    let store_a = schema.store().await;
    let a = node_on(store_a.clone(), "node-a", &clock).await;
    let b = schema.node("node-b", &clock).await;
    let alice = UserId::from("alice");
    let scopes = [ScopeId::from("acme")];
    let mut logins = Vec::new();
    for n in 0..36 {
        // Ids whose order differs from the order they were opened in.
        let login = LoginId::from(format!("login-{:02}", (n * 7) % 36));
        a.http_heartbeat(&alice, &login, &scopes)
            .await
            .expect("open");
        logins.push(login);
    }
    // Closing some reorders the user's record (and frees table space), so
    // the record's order, the table's and the flush queue's all differ.
    let mut kept = Vec::new();
    for (n, login) in logins.into_iter().enumerate() {
        if n % 3 == 0 {
            a.close_session(&alice, &SessionId::for_http_login(&login))
                .await
                .expect("close");
        } else {
            kept.push(login);
        }
    }
    let logins = Arc::new(kept);
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let mut work = tokio::task::JoinSet::new();
    {
        let (store, logins, clock, a) = (store_a.clone(), logins.clone(), clock.clone(), a.clone());
        let alice = alice.clone();
        work.spawn(async move {
            let mut failures = Vec::new();
            while tokio::time::Instant::now() < until {
                // Time passes (every heartbeat is news to the database).
                clock.advance(Duration::from_millis(5));
                // Queued for the flush in the reverse of the record's order.
                for login in logins.iter().rev() {
                    let _ = a.heartbeat(&alice, &SessionId::for_http_login(login));
                }
                if let Err(e) = store.flush_heartbeats().await {
                    failures.push(format!("flush: {e:?}"));
                }
            }
            failures
        });
    }
    for worker in 0..3 {
        let (logins, b, alice) = (logins.clone(), b.clone(), alice.clone());
        work.spawn(async move {
            let mut failures = Vec::new();
            let mut n = worker;
            while tokio::time::Instant::now() < until {
                n += 1;
                let session = SessionId::for_http_login(&logins[n % logins.len()]);
                if let Err(e) = b.activity(&alice, &session).await {
                    failures.push(format!("activity: {e:?}"));
                }
                if let Err(e) = b.run_due().await {
                    failures.push(format!("sweep: {e:?}"));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = work.join_next().await {
        failures.extend(done.expect("a worker"));
    }
    assert!(
        failures.is_empty(),
        "{} failures, the first: {:?}",
        failures.len(),
        failures.first()
    );
}

/// A session a client resumed on another node (same session id) leaves
/// nothing behind in the process that held it before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_taken_over_by_another_node_is_forgotten_where_it_was() {
    let schema = Schema::new();
    let clock = Arc::new(ManualClock::default());
    let (store_a, store_b) = (schema.store().await, schema.store().await);
    let a = node_on(store_a.clone(), "node-a", &clock).await;
    let b = node_on(store_b.clone(), "node-b", &clock).await;
    let spec = SessionSpec::new("alice", "laptop")
        .scope("acme")
        .id("tab-1");
    let mut old = a.open_session(spec.clone()).await.expect("open on A");
    assert_eq!(store_a.held_sessions(), 1);
    let resumed = b.open_session(spec).await.expect("resume on B");
    let end = tokio::time::timeout(Duration::from_secs(5), old.ended())
        .await
        .expect("A is told");
    assert_eq!(end, SessionEnd::Replaced);
    eventually(
        "node A lets go of the session node B took over",
        WAIT,
        || store_a.held_sessions() == 0,
    )
    .await;
    assert_eq!(store_b.held_sessions(), 1);
    resumed.heartbeat().expect("live on B");
}

/// A database that loses its data while every connection stays up (its
/// tables emptied): the next heartbeat flush finds the sessions gone, and
/// must take that for a data loss (a new epoch: the node registers its
/// sessions again), not for sessions ended (every socket closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_emptied_under_a_running_node_is_a_data_loss_not_an_end() {
    let schema = Schema::new();
    let clock = Arc::new(ManualClock::default());
    let store = schema.store().await;
    let a = node_on(store.clone(), "node-a", &clock).await;
    let alice = a
        .open_session(SessionSpec::new("alice", "l").scope("acme"))
        .await
        .expect("open");
    let epoch = a.epoch();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "TRUNCATE \"{0}\".users, \"{0}\".sessions, \"{0}\".scope_members, \"{0}\".meta",
        schema.name
    )))
    .execute(store.pool())
    .await
    .expect("truncate");
    clock.advance(Duration::from_secs(5));
    alice.heartbeat().expect("beats are answered from memory");
    store.flush_heartbeats().await.expect("flush");
    // Alice is registered again.
    status_becomes(&a, "alice", Status::Online, WAIT).await;
    assert_ne!(a.epoch(), epoch, "a new epoch");
    clock.advance(Duration::from_secs(5));
    alice
        .heartbeat()
        .expect("her socket was not taken for ended");
    assert_eq!(alice.has_ended(), None);
}
