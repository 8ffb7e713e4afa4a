//! What the service records with the `metrics` feature, read back from a
//! small recorder installed for the test's thread (each test runs on its
//! own current-thread runtime, so tests do not see each other's metrics).

#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use presence_core::UserPresence;
use presence_core::metrics as names;
use presence_core::store::{PresenceStore, StoreError, Transition, Update, UserView};
use presence_core::{
    Delivery, Epoch, Error, ManualClock, MemoryStore, NodeId, NodeName, Presence, PresenceConfig,
    ScopeId, SessionId, SessionSpec, UserId,
};

/// Every metric registered, by `name` or `name{label=value,…}`.
#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<Samples>>>,
    units: Mutex<HashMap<String, Option<Unit>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().expect("samples").push(value);
    }
}

fn id(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

impl TestRecorder {
    fn counter(&self, id: &str) -> u64 {
        self.counters
            .lock()
            .expect("counters")
            .get(id)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    fn gauge(&self, id: &str) -> f64 {
        self.gauges
            .lock()
            .expect("gauges")
            .get(id)
            .map_or(0.0, |g| f64::from_bits(g.load(Ordering::Acquire)))
    }

    fn samples(&self, id: &str) -> Vec<f64> {
        self.histograms
            .lock()
            .expect("histograms")
            .get(id)
            .map(|h| h.0.lock().expect("samples").clone())
            .unwrap_or_default()
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        self.units
            .lock()
            .expect("units")
            .insert(key.as_str().to_owned(), unit);
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().expect("counters");
        Counter::from_arc(counters.entry(id(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.gauges.lock().expect("gauges");
        Gauge::from_arc(gauges.entry(id(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().expect("histograms");
        Histogram::from_arc(histograms.entry(id(key)).or_default().clone())
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
    let _local = metrics::set_default_local_recorder(&recorder);
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
    let _local = metrics::set_default_local_recorder(&recorder);
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
    let _local = metrics::set_default_local_recorder(&recorder);
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
    let _local = metrics::set_default_local_recorder(&recorder);
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
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, names::describe);
    let units = recorder.units.lock().expect("units");
    let expected = [
        (names::SESSIONS_LIVE, Unit::Count),
        (names::USER_ARRIVALS, Unit::Count),
        (names::USER_DEPARTURES, Unit::Count),
        (names::TRANSITIONS, Unit::Count),
        (names::EVENTS_PUBLISHED, Unit::Count),
        (names::EVENTS_DELIVERED, Unit::Count),
        (names::EVENTS_DROPPED, Unit::Count),
        (names::SUBSCRIBERS_LAGGED, Unit::Count),
        (names::FANOUT_LAG, Unit::Seconds),
        (names::STORE_CALL, Unit::Seconds),
        (names::STORE_ERRORS, Unit::Count),
    ];
    assert_eq!(units.len(), expected.len());
    for (name, unit) in expected {
        assert_eq!(units.get(name), Some(&Some(unit)), "{name}");
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
    let _local = metrics::set_default_local_recorder(&recorder);
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
