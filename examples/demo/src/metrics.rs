//! `GET /metrics`: presence's metrics in the Prometheus text format, when
//! `PRESENCE_METRICS=1` (without it the route does not exist: 404).
//!
//! The recorder is `metrics-exporter-prometheus` without its HTTP listener
//! or push gateway: it only keeps the metrics and renders them, and this
//! app serves them on its own port. Latencies (`…_seconds`) are rendered as
//! histograms with the buckets below, so they add up across nodes. The
//! names are those of `presence_core::metrics` and, for the sockets,
//! `presence_axum::metrics`.

use std::time::Duration;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Upper bounds of the latency buckets, in seconds: from half a
/// millisecond (a memory store's call) to ten seconds (past the store
/// timeout).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into the buckets between scrapes,
/// so memory stays bounded when nobody scrapes.
const UPKEEP: Duration = Duration::from_secs(5);

/// The Prometheus text format's content type.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the Prometheus recorder as the process's metrics recorder,
/// describes presence's metrics, and starts its upkeep. Call it once,
/// within the runtime, before the presence service is built.
pub(crate) fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    presence_core::metrics::describe();
    presence_axum::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `app` with `GET /metrics` rendering `handle`'s metrics. Added outside
/// the activity layer: a scrape is nobody's activity.
pub(crate) fn route(app: Router, handle: PrometheusHandle) -> Router {
    app.route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move { ([(CONTENT_TYPE, TEXT_FORMAT)], handle.render()).into_response() }
        }),
    )
}
