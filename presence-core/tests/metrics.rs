//! What the service records with the `metrics` feature, read back from
//! `metrics-util`'s debugging recorder installed for the test's thread
//! (each test runs on its own current-thread runtime, so tests do not see
//! each other's metrics).

#![cfg(feature = "metrics")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use metrics::{LocalRecorderGuard, Unit, counter, gauge, histogram};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use presence_core::UserPresence;
use presence_core::metrics as names;
use presence_core::store::{PresenceStore, StoreError, Transition, Update, UserView};
use presence_core::{
    Delivery, Epoch, Error, ManualClock, MemoryStore, NodeId, NodeName, Presence, PresenceConfig,
    ScopeId, SessionId, SessionSpec, UserId,
};

/// Every value recorded, by `name` or `name{label=value}`. A snapshot of
/// the debugging recorder drains it, so the readings add up here (the
/// gauge only ever moves by increments and decrements).
#[derive(Default)]
struct TestRecorder(DebuggingRecorder, RefCell<HashMap<String, Vec<f64>>>);

impl TestRecorder {
    fn install(&self) -> LocalRecorderGuard<'_> {
        metrics::set_default_local_recorder(&self.0)
    }

    fn samples(&self, id: &str) -> Vec<f64> {
        let mut totals = self.1.borrow_mut();
        for (key, _, _, value) in self.0.snapshotter().snapshot().into_vec() {
            let labels: Vec<_> = (key.key().labels())
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            let id = match labels.is_empty() {
                true => key.key().name().to_owned(),
                false => format!("{}{{{}}}", key.key().name(), labels.join(",")),
            };
            let values = totals.entry(id).or_default();
            match value {
                DebugValue::Counter(count) => values.push(count as f64),
                DebugValue::Gauge(delta) => values.push(delta.into_inner()),
                DebugValue::Histogram(samples) => values.extend(samples.iter().map(|x| x.0)),
            }
        }
        totals.get(id).cloned().unwrap_or_default()
    }

    fn counter(&self, id: &str) -> u64 {
        self.samples(id).iter().sum::<f64>() as u64
    }

    fn gauge(&self, id: &str) -> f64 {
        self.samples(id).iter().sum()
    }
}

fn config() -> PresenceConfig {
    PresenceConfig {
        linger: Duration::from_secs(5),
        ..PresenceConfig::default()
    }
}

async fn presence_on(store: impl PresenceStore, clock: Arc<ManualClock>) -> Presence {
    Presence::builder()
        .store(store)
        .clock(clock)
        .config(config())
        .batch_interval(Duration::ZERO)
        .build()
        .await
        .expect("presence")
}

#[tokio::test]
async fn two_tabs_opened_and_closed_move_the_sessions_gauge_and_count_one_arrival_and_one_departure()
 {
    let recorder = TestRecorder::default();
    let _local = recorder.install();
    let clock = Arc::new(ManualClock::default());
    let presence = presence_on(MemoryStore::new(), clock.clone()).await;
    let online = "presence_transitions_total{status=ONLINE}";
    let offline = "presence_transitions_total{status=OFFLINE}";

    let spec = || SessionSpec::new("alice", "login-1").scope("acme");
    let first = presence.open_session(spec()).await.expect("first tab");
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 1.0);
    assert_eq!(recorder.counter(online), 1);
    let second = presence.open_session(spec()).await.expect("second tab");
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 2.0);
    assert_eq!(recorder.counter(online), 1, "a second tab changes nothing");
    assert_eq!(recorder.counter(names::USER_ARRIVALS), 1);
    assert_eq!(recorder.counter(names::EVENTS_PUBLISHED), 1, "one scope");
    assert_eq!(
        recorder
            .samples("presence_store_call_seconds{op=open}")
            .len(),
        2
    );

    first.close().await.expect("close one tab");
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 1.0);
    second.close().await.expect("close the other");
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 0.0);
    assert_eq!(recorder.counter(offline), 0, "the user lingers");
    assert_eq!(recorder.counter(names::USER_DEPARTURES), 0);

    clock.advance(Duration::from_secs(6));
    presence.run_due().await.expect("sweep");
    assert_eq!(recorder.counter(offline), 1, "OFFLINE once the linger ends");
    assert_eq!(recorder.counter(online), 1);
    assert_eq!(recorder.counter(names::USER_DEPARTURES), 1);
    assert_eq!(recorder.counter(names::EVENTS_PUBLISHED), 2);
    assert!(
        !recorder
            .samples("presence_store_call_seconds{op=refresh}")
            .is_empty()
    );
    assert!(
        recorder
            .samples("presence_store_call_seconds{op=close}")
            .iter()
            .all(|seconds| *seconds >= 0.0)
    );
}

#[tokio::test]
async fn sessions_the_server_ends_leave_the_gauge_once() {
    let recorder = TestRecorder::default();
    let _local = recorder.install();
    let presence = presence_on(MemoryStore::new(), Arc::default()).await;

    let laptop = presence
        .open_session(SessionSpec::new("alice", "login-1").scope("acme"))
        .await
        .expect("open");
    let phone = presence
        .open_session(SessionSpec::new("alice", "login-2").scope("acme"))
        .await
        .expect("open");
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 2.0);
    presence
        .logout(laptop.user(), laptop.login())
        .await
        .expect("logout");
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 1.0);
    // The handle of a session the server ended closes nothing more.
    drop(laptop);
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 1.0);

    presence.shutdown().await;
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 0.0);
    drop(phone);
    tokio::task::yield_now().await;
    assert_eq!(recorder.gauge(names::SESSIONS_LIVE), 0.0);
}

#[tokio::test]
async fn a_full_subscriber_queue_counts_its_drops_and_one_lag() {
    let recorder = TestRecorder::default();
    let _local = recorder.install();
    let presence = Presence::builder()
        .subscriber_capacity(1)
        .batch_interval(Duration::ZERO)
        .build()
        .await
        .expect("presence");
    let (mut slow, _) = presence.watch(&ScopeId::from("acme")).await.expect("watch");

    let mut sessions = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let spec = SessionSpec::new(user, format!("{user}-login")).scope("acme");
        sessions.push(presence.open_session(spec).await.expect("open"));
    }
    assert_eq!(recorder.counter(names::EVENTS_PUBLISHED), 3);
    assert_eq!(recorder.counter(names::EVENTS_DELIVERED), 1);
    assert_eq!(recorder.counter(names::EVENTS_DROPPED), 2);
    assert_eq!(recorder.counter(names::SUBSCRIBERS_LAGGED), 1);
    let lags = recorder.samples("presence_fanout_lag_seconds{stage=queue}");
    assert!(!lags.is_empty(), "the hand-over to the queues is timed");
    assert!(lags.iter().all(|seconds| *seconds >= 0.0));
    assert_eq!(slow.recv().await, Some(Delivery::Lagged));
    // Counted with the service's own numbers too.
    let stats = presence.fanout_stats();
    assert_eq!((stats.delivered, stats.dropped), (1, 2));
}

/// A memory store whose reads fail as if the backend were away.
#[derive(Debug)]
struct ReadsFail(MemoryStore);

#[async_trait]
impl PresenceStore for ReadsFail {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        self.0.apply(update).await
    }

    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        self.0.heartbeat(user, session, now, config)
    }

    async fn load_many(&self, _: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        Err(StoreError::Unavailable("connection refused".into()))
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        self.0.scope_members(scope).await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        self.0.due(now, limit).await
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.0.next_deadline().await
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        self.0.users_on_node(node).await
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.0.renew_lease(node, until).await
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        self.0.end_lease(node).await
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        self.0.expired_leases(now).await
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        self.0.leases(name).await
    }

    fn epoch(&self) -> Epoch {
        self.0.epoch()
    }
}

#[tokio::test]
async fn store_failures_are_counted_by_operation_and_refusals_are_not() {
    let recorder = TestRecorder::default();
    let _local = recorder.install();
    let presence = presence_on(ReadsFail(MemoryStore::new()), Arc::default()).await;

    let error = presence.status(&UserId::from("alice")).await;
    assert!(matches!(
        error,
        Err(Error::Store(StoreError::Unavailable(_)))
    ));
    assert_eq!(
        recorder.counter("presence_store_errors_total{op=load_many}"),
        1
    );
    assert_eq!(
        recorder
            .samples("presence_store_call_seconds{op=load_many}")
            .len(),
        1
    );

    // A heartbeat of a session that is not open is refused, not failed.
    let refused = presence.heartbeat(&UserId::from("alice"), &SessionId::from("gone"));
    assert!(refused.is_err());
    assert_eq!(
        recorder
            .samples("presence_store_call_seconds{op=heartbeat}")
            .len(),
        1
    );
    assert_eq!(
        recorder.counter("presence_store_errors_total{op=heartbeat}"),
        0
    );
    let snapshot = presence.snapshot(&ScopeId::from("acme")).await;
    assert!(snapshot.is_ok());
    assert_eq!(
        recorder
            .samples("presence_store_call_seconds{op=scope_members}")
            .len(),
        1
    );
}

#[test]
fn describe_gives_every_metric_its_unit() {
    use MetricKind::{Counter, Gauge, Histogram};
    let expected = [
        (names::SESSIONS_LIVE, Gauge, Unit::Count),
        (names::USER_ARRIVALS, Counter, Unit::Count),
        (names::USER_DEPARTURES, Counter, Unit::Count),
        (names::TRANSITIONS, Counter, Unit::Count),
        (names::EVENTS_PUBLISHED, Counter, Unit::Count),
        (names::EVENTS_DELIVERED, Counter, Unit::Count),
        (names::EVENTS_DROPPED, Counter, Unit::Count),
        (names::SUBSCRIBERS_LAGGED, Counter, Unit::Count),
        (names::FANOUT_LAG, Histogram, Unit::Seconds),
        (names::STORE_CALL, Histogram, Unit::Seconds),
        (names::STORE_ERRORS, Counter, Unit::Count),
    ];
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        names::describe();
        // A snapshot shows the unit of a registered metric only: each
        // name, as each kind.
        for (name, _, _) in expected {
            let _ = (counter!(name), gauge!(name), histogram!(name));
        }
    });
    let units: HashMap<_, _> = (recorder.snapshotter().snapshot().into_vec().into_iter())
        .filter_map(|(key, unit, _, _)| Some(((key.kind(), key.key().name().to_owned()), unit?)))
        .collect();
    assert_eq!(units.len(), expected.len(), "{units:?}");
    for (name, kind, unit) in expected {
        assert_eq!(units.get(&(kind, name.to_owned())), Some(&unit), "{name}");
        assert!(name.starts_with("presence_"), "{name}");
        let suffixed = name.ends_with("_total") || name.ends_with("_seconds");
        assert!(
            suffixed || name == names::SESSIONS_LIVE,
            "{name} names its unit"
        );
    }
}

#[tokio::test]
async fn heartbeat_flushes_reported_by_a_store_are_timed_and_failures_counted() {
    let recorder = TestRecorder::default();
    let _local = recorder.install();
    names::heartbeat_flush(Duration::from_millis(3), false);
    names::heartbeat_flush(Duration::from_millis(7), true);
    assert_eq!(
        recorder.samples("presence_store_call_seconds{op=heartbeat_flush}"),
        vec![0.003, 0.007]
    );
    assert_eq!(
        recorder.counter("presence_store_errors_total{op=heartbeat_flush}"),
        1
    );
}
