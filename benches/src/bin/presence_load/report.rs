//! What a run reports: latency summaries, the client counters, a few
//! server metrics, and the `RESULT {json}` line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::http;
use crate::shared::Shared;

/// Prints a scenario's machine-readable result.
pub(crate) fn emit(result: &Value) {
    println!("RESULT {result}");
}

pub(crate) fn pass(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// `field` of the presence run over the baseline's, when both ran.
pub(crate) fn ratio(rows: &[Value], field: &str) -> Option<f64> {
    match rows {
        [presence, baseline] => Some(presence[field].as_f64()? / baseline[field].as_f64()?),
        _ => None,
    }
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p95_ms": ms(h.value_at_quantile(0.95)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "mean_ms": h.mean() / 1000.0,
    })
}

fn latency_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no deliveries".into();
    }
    format!(
        "p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} ms",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

/// p50 and p99 per tenth of the schedule: lag growth over the run.
fn phases_json(shared: &Shared) -> Value {
    Value::Array(
        shared
            .latency
            .iter()
            .map(|h| {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                if h.is_empty() {
                    json!(null)
                } else {
                    json!([ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99))])
                }
            })
            .collect(),
    )
}

/// The delivery figures of a run whose triggers started at `start_ns` on
/// the clients' clock: counts, rate and latency.
pub(crate) fn deliveries(shared: &Shared, start_ns: u64, expected: u64) -> Map<String, Value> {
    let delivered = shared.delivered.load(Relaxed);
    let span_s = shared
        .last_delivery_ns
        .load(Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    let histogram = shared.merged();
    let figures = json!({
        "expected": expected,
        "delivered": delivered,
        "span_s": span_s,
        "deliveries_per_s": if span_s > 0.0 { delivered as f64 / span_s } else { 0.0 },
        "latency": latency_json(&histogram),
        "latency_text": latency_text(&histogram),
        "phases_p50_p99_ms": phases_json(shared),
    });
    match figures {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `row` (an object) with `fields` added.
pub(crate) fn with_fields(mut row: Value, fields: Map<String, Value>) -> Value {
    if let Value::Object(map) = &mut row {
        map.extend(fields);
    }
    row
}

/// The clients' frame and socket counters.
pub(crate) fn counters_json(shared: &Shared) -> Value {
    let reasons = shared
        .close_reasons
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json!({
        "frames": shared.frames.load(Relaxed),
        "batches": shared.batches.load(Relaxed),
        "unmatched_events": shared.unmatched.load(Relaxed),
        "other_events": shared.other_events.load(Relaxed),
        "resnapshots_after_lag": shared.resnapshots.load(Relaxed),
        "error_frames": shared.error_frames.load(Relaxed),
        "sockets_closed": shared.closed.load(Relaxed),
        "close_reasons": reasons,
    })
}

/// A few figures from `GET /metrics`, when the server has it.
pub(crate) async fn metrics(addr: SocketAddr) -> Value {
    match http::scrape(addr).await {
        None => json!(null),
        Some(samples) => {
            let picked: BTreeMap<String, f64> = samples
                .into_iter()
                .filter(|(name, _)| !name.contains("_bucket"))
                .take(40)
                .collect();
            json!(picked)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_ratio_needs_both_runs() {
        let presence = json!({"kib_per_socket": 12.0});
        let bare = json!({"kib_per_socket": 4.0});
        assert_eq!(
            ratio(&[presence.clone(), bare], "kib_per_socket"),
            Some(3.0)
        );
        assert_eq!(ratio(&[presence], "kib_per_socket"), None);
    }

    #[test]
    fn no_deliveries_reads_as_such() {
        let shared = Shared::new(HashMap::new());
        let figures = deliveries(&shared, 0, 10);
        assert_eq!(figures["expected"], 10);
        assert_eq!(figures["delivered"], 0);
        assert_eq!(figures["latency"], Value::Null);
        assert_eq!(figures["latency_text"], "no deliveries");
        let row = with_fields(json!({"server": "presence"}), figures);
        assert_eq!(row["server"], "presence");
        assert_eq!(row["deliveries_per_s"], 0.0);
    }
}
