//! What the sockets record with the `metrics` feature, read back from a
//! small recorder installed for the test's thread (each test runs on its
//! own current-thread runtime, server included, so tests do not see each
//! other's metrics).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use presence_axum::metrics as names;

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

    fn samples(&self, id: &str) -> usize {
        self.histograms
            .lock()
            .expect("histograms")
            .get(id)
            .map_or(0, |h| h.0.lock().expect("samples").len())
    }

    fn describe(&self, key: KeyName, unit: Option<Unit>) {
        self.units
            .lock()
            .expect("units")
            .insert(key.as_str().to_owned(), unit);
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

#[tokio::test]
async fn sockets_count_opens_frames_error_frames_closes_and_write_lag() {
    let recorder = TestRecorder::default();
    let _local = metrics::set_default_local_recorder(&recorder);
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
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, names::describe);
    let units = recorder.units.lock().expect("units");
    let expected = [
        (names::SOCKETS_OPEN, Unit::Count),
        (names::SOCKET_FRAMES_RECEIVED, Unit::Count),
        (names::SOCKET_ERROR_FRAMES, Unit::Count),
        (names::SOCKET_CLOSES, Unit::Count),
    ];
    assert_eq!(units.len(), expected.len(), "{units:?}");
    for (name, unit) in expected {
        assert_eq!(units.get(name), Some(&Some(unit)), "{name}");
        assert!(name.starts_with("presence_"), "{name}");
        assert!(
            name.ends_with("_total") || name == names::SOCKETS_OPEN,
            "{name} names its unit"
        );
    }
}
