//! What the sockets record with the `metrics` feature, read back from
//! `metrics-util`'s debugging recorder installed for the test's thread
//! (each test runs on its own current-thread runtime, server included, so
//! tests do not see each other's metrics).

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use common::Server;
use metrics::{Unit, counter, gauge, histogram};
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use presence_axum::metrics as names;

/// The totals and sample counts read so far, by `name` or `name{label=value}`
/// (a snapshot drains the recorder; the gauge only moves by steps).
struct Readings(Snapshotter, RefCell<HashMap<String, (f64, usize)>>);

impl Readings {
    fn read(&self, id: &str) -> (f64, usize) {
        let mut readings = self.1.borrow_mut();
        for (key, _, _, value) in self.0.snapshot().into_vec() {
            let (name, labels) = (key.key().name(), key.key().labels());
            let labels: Vec<_> = labels
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let id = if labels.is_empty() {
                name.to_owned()
            } else {
                format!("{name}{{{}}}", labels.join(","))
            };
            let (total, samples) = readings.entry(id).or_default();
            let (sum, count) = match value {
                DebugValue::Counter(n) => (n as f64, 0),
                DebugValue::Gauge(step) => (step.0, 0),
                DebugValue::Histogram(xs) => (xs.iter().map(|x| x.0).sum(), xs.len()),
            };
            (*total, *samples) = (*total + sum, *samples + count);
        }
        readings.get(id).copied().unwrap_or_default()
    }

    fn counter(&self, id: &str) -> u64 {
        self.read(id).0 as u64
    }

    fn gauge(&self, id: &str) -> f64 {
        self.read(id).0
    }

    fn samples(&self, id: &str) -> usize {
        self.read(id).1
    }

    /// Waits (the server runs on this thread too) until `gauge` reads
    /// `value`.
    async fn gauge_reaches(&self, gauge: &str, value: f64) {
        for _ in 0..100 {
            if self.gauge(gauge) == value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{gauge} never read {value}: {}", self.gauge(gauge));
    }
}

#[tokio::test]
async fn sockets_count_opens_frames_error_frames_closes_and_write_lag() {
    let debugging = DebuggingRecorder::new();
    let recorder = Readings(debugging.snapshotter(), RefCell::default());
    let _local = metrics::set_default_local_recorder(&debugging);
    let server = Server::start().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    assert_eq!(recorder.gauge(names::SOCKETS_OPEN), 2.0);

    // Bob's arrival, written to alice's socket.
    alice.expect("presence").await;
    alice.send_text("{not json").await;
    assert_eq!(alice.error_code().await, "malformed_json");
    assert!(recorder.counter(names::SOCKET_FRAMES_RECEIVED) >= 1);
    assert_eq!(
        recorder.counter("presence_socket_error_frames_total{code=malformed_json}"),
        1
    );
    assert!(recorder.samples("presence_fanout_lag_seconds{stage=socket}") >= 1);

    // Over the 4 KiB limit: the server closes with 1009.
    bob.send_text(&"x".repeat(5000)).await;
    assert_eq!(bob.closed().await.0, 1009);
    alice.ws.close(None).await.expect("close");
    recorder.gauge_reaches(names::SOCKETS_OPEN, 0.0).await;
    assert_eq!(
        recorder.counter("presence_socket_closes_total{code=1009}"),
        1
    );
    assert_eq!(
        recorder.counter("presence_socket_closes_total{code=none}"),
        1,
        "alice closed first"
    );
}

#[test]
fn describe_gives_every_socket_metric_its_unit_and_leaves_the_core_to_the_core() {
    use presence_core::metrics as core;
    let recorder = DebuggingRecorder::new();
    let expected = [
        (names::SOCKETS_OPEN, MetricKind::Gauge, Unit::Count),
        (
            names::SOCKET_FRAMES_RECEIVED,
            MetricKind::Counter,
            Unit::Count,
        ),
        (names::SOCKET_ERROR_FRAMES, MetricKind::Counter, Unit::Count),
        (names::SOCKET_CLOSES, MetricKind::Counter, Unit::Count),
    ];
    let core = [
        core::SESSIONS_LIVE,
        core::USER_ARRIVALS,
        core::USER_DEPARTURES,
        core::TRANSITIONS,
        core::EVENTS_PUBLISHED,
        core::EVENTS_DELIVERED,
        core::EVENTS_DROPPED,
        core::SUBSCRIBERS_LAGGED,
        core::FANOUT_LAG,
        core::STORE_CALL,
        core::STORE_ERRORS,
    ];
    // Only a registered metric shows its unit in a snapshot: register the
    // socket's names and the core's, each as every kind.
    let every = expected.iter().map(|(name, ..)| *name).chain(core);
    metrics::with_local_recorder(&recorder, || {
        names::describe();
        every.for_each(|name| drop((counter!(name), gauge!(name), histogram!(name))));
    });
    let mut units = HashMap::new();
    for (key, unit, ..) in recorder.snapshotter().snapshot().into_vec() {
        if let Some(unit) = unit {
            units.insert((key.key().name().to_owned(), key.kind()), unit);
        }
    }
    assert_eq!(units.len(), expected.len(), "{units:?}");
    for (name, kind, unit) in expected {
        assert_eq!(units.get(&(name.to_owned(), kind)), Some(&unit), "{name}");
        assert!(name.starts_with("presence_"), "{name}");
        assert!(
            name.ends_with("_total") || name == names::SOCKETS_OPEN,
            "{name} names its unit"
        );
    }
}
