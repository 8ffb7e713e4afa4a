//! `GET /metrics` of the demo as a process: Prometheus text with
//! `PRESENCE_METRICS=1`, that follows a presence socket from open to close,
//! and a 404 without it.

mod common;

use std::time::Duration;

use common::{Demo, next_json};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// Scrapes of a demo started with `PRESENCE_METRICS=1`.
trait Scrape {
    async fn metrics(&self) -> reqwest::Response;
    async fn scrape_until(&self, metric: &str, value: f64) -> String;
}

impl Scrape for Demo {
    async fn metrics(&self) -> reqwest::Response {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("GET /metrics")
    }

    /// The scrape, once `metric` (a name with its labels) reads `value`.
    async fn scrape_until(&self, metric: &str, value: f64) -> String {
        let mut last = String::new();
        for _ in 0..100 {
            last = self.metrics().await.text().await.expect("text");
            if sample(&last, metric) == Some(value) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{metric} never read {value}:\n{last}");
    }
}

/// The value of one sample line, `metric value`, of a scrape.
fn sample(scrape: &str, metric: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(metric)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_when_enabled() {
    let demo = Demo::start(&[("PRESENCE_METRICS", "1")]);
    let token = demo.login("alice", "acme").await;
    let mut socket = demo.connect(&token).await;
    for expected in ["hello", "snapshot"] {
        assert_eq!(next_json(&mut socket).await["type"], expected);
    }
    socket
        .send(Message::Text("not json".into()))
        .await
        .expect("send");

    let response = demo.metrics().await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let scrape = demo
        .scrape_until(
            "presence_socket_error_frames_total{code=\"malformed_json\"}",
            1.0,
        )
        .await;
    assert_eq!(
        sample(&scrape, "presence_sessions_live"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "presence_sockets_open"),
        Some(1.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "presence_transitions_total{status=\"ONLINE\"}"),
        Some(1.0),
        "{scrape}"
    );
    assert!(
        sample(&scrape, "presence_socket_frames_received_total").is_some_and(|n| n >= 1.0),
        "{scrape}"
    );
    assert!(
        scrape.contains("# HELP presence_sessions_live "),
        "described: {scrape}"
    );
    assert!(
        scrape.contains("# HELP presence_sockets_open "),
        "the sockets' metrics are described too: {scrape}"
    );
    assert!(
        scrape.contains("# TYPE presence_store_call_seconds histogram"),
        "latencies are histograms: {scrape}"
    );
    assert!(
        sample(&scrape, "presence_store_call_seconds_count{op=\"open\"}").is_some_and(|n| n >= 1.0),
        "{scrape}"
    );

    socket.close(None).await.expect("close");
    drop(socket);
    let scrape = demo.scrape_until("presence_sockets_open", 0.0).await;
    assert_eq!(
        sample(&scrape, "presence_sessions_live"),
        Some(0.0),
        "{scrape}"
    );
    assert_eq!(
        sample(&scrape, "presence_socket_closes_total{code=\"none\"}"),
        Some(1.0),
        "the client closed first: {scrape}"
    );
}

#[tokio::test]
async fn metrics_are_a_404_unless_enabled() {
    let demo = Demo::start(&[]);
    assert_eq!(demo.metrics().await.status(), 404);
}
