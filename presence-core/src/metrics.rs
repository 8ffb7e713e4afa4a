//! Metrics for operators, through the [`metrics`](https://docs.rs/metrics)
//! facade: every metric the core records, named and described here and
//! nowhere else (the sockets' own are in `presence_axum::metrics`).
//!
//! Recording is behind the cargo feature `metrics` (off by default). With
//! it off, every function of this module is empty and compiles to nothing;
//! the names and [`describe`] are there either way, so a host needs no
//! `cfg` of its own. With it on, presence records into whatever recorder
//! the host installed (a Prometheus exporter, say); with none installed,
//! the facade drops everything at the cost of a few loads. Call
//! [`describe`] once after installing the recorder, so the exporter knows
//! each metric's unit and help text (it describes the core's metrics only).
//!
//! `presence-axum`'s feature `metrics` turns this one on. Its sockets
//! record metrics of their own, named and described in
//! `presence_axum::metrics`, and the `stage="socket"` samples of
//! [`FANOUT_LAG`] through [`written_to_socket`].
//!
//! # The metrics
//!
//! | name | kind | labels | what it counts |
//! | --- | --- | --- | --- |
//! | `presence_sessions_live` | gauge | | sessions held open through this process's service: each [`crate::SessionHandle`] (a socket, a device) from its open until it closes, lapses, is logged out or the service shuts down. The HTTP sessions of [`crate::Presence::mark_http_activity`] live only in the store and are not counted. |
//! | `presence_user_arrivals_total` | counter | | changes applied by this node that took a user from `OFFLINE` (as observers see it: `INVISIBLE` is `OFFLINE`) to `ONLINE`, `AWAY` or `BUSY` |
//! | `presence_user_departures_total` | counter | | changes applied by this node that took a user to `OFFLINE` |
//! | `presence_transitions_total` | counter | `status` | changes of a user's shown status applied by this node, by the new status (`ONLINE`, `AWAY`, `BUSY`, `OFFLINE`) |
//! | `presence_events_published_total` | counter | | events published by this node: one per scope of each change it applied |
//! | `presence_events_delivered_total` | counter | | events put in a subscriber's queue on this node, once per subscriber (each event of a batch counts), including events other nodes published |
//! | `presence_events_dropped_total` | counter | | events not queued because the subscriber's queue was full |
//! | `presence_subscribers_lagged_total` | counter | | times a subscriber's full queue made it lag (it is told [`crate::Delivery::Lagged`] and re-reads a snapshot) |
//! | `presence_fanout_lag_seconds` | histogram | `stage` | time from an event's `at` to `stage="queue"`: its hand-over to the subscriber queues (one sample per event per hand-over, not per subscriber); `stage="socket"`: the completed write of its frame to a presence socket (one sample per event per socket, recorded by `presence-axum`) |
//! | `presence_store_call_seconds` | histogram | `op` | latency of each call the service makes on its [`crate::store::PresenceStore`] (so every backend is measured alike), the store timeout included |
//! | `presence_store_errors_total` | counter | `op` | store calls that failed: unavailable, timed out, corrupt data or another backend error (a refused change, such as a session not found, is not an error of the store) |
//!
//! Values of the label `op`: `open`, `restore`, `activity`, `close`,
//! `logout`, `logout_everywhere`, `set_status`, `clear_node`, `refresh`
//! (the changes, each one atomic `apply` of the store), `heartbeat`,
//! `load_many` (statuses and user-list snapshots), `scope_members` (scope
//! snapshots), `due` and `next_deadline` (the sweeper), `users_on_node`
//! (start and shutdown) and `feed_join` (joining the cluster feed); and
//! `heartbeat_flush` for stores that write heartbeats in batches and report
//! each write through [`heartbeat_flush`].
//!
//! # In a cluster
//!
//! Each change is applied by exactly one node (the one the request reached,
//! or whose sweeper found it due), so counters of changes summed over the
//! nodes count every change once: `sum(rate(presence_transitions_total[5m]))
//! by (status)` is the cluster's transitions per second. There is no gauge
//! of users online: a user may arrive through one node and lapse through
//! another's sweeper, so a per-node gauge would drift up on one and below
//! zero on the other. On a single node with the embedded store (which
//! starts empty with the process),
//! `presence_user_arrivals_total - presence_user_departures_total` is the
//! number of users not `OFFLINE`; in a cluster, or with a persistent store
//! that outlives the process, count them with a snapshot of each scope.
//!
//! Lags are measured against the system clock, from the `at` of the node
//! that made the change: across nodes they include the clocks' skew (and
//! with a [`crate::ManualClock`], they mean nothing).

use std::sync::Arc;

#[cfg(feature = "metrics")]
use ::metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::fanout::SharedEvent;
#[cfg(feature = "metrics")]
use crate::status::Status;
use crate::store::{StoreError, Transition, UserOp};

/// Gauge: sessions held open through this process's service.
pub const SESSIONS_LIVE: &str = "presence_sessions_live";
/// Counter: changes that took a user from `OFFLINE` to shown present.
pub const USER_ARRIVALS: &str = "presence_user_arrivals_total";
/// Counter: changes that took a user to `OFFLINE`.
pub const USER_DEPARTURES: &str = "presence_user_departures_total";
/// Counter, label `status`: changes of shown status, by the new status.
pub const TRANSITIONS: &str = "presence_transitions_total";
/// Counter: events published (one per scope of each change).
pub const EVENTS_PUBLISHED: &str = "presence_events_published_total";
/// Counter: events put in subscriber queues.
pub const EVENTS_DELIVERED: &str = "presence_events_delivered_total";
/// Counter: events dropped on a full subscriber queue.
pub const EVENTS_DROPPED: &str = "presence_events_dropped_total";
/// Counter: subscribers that lagged because their queue was full.
pub const SUBSCRIBERS_LAGGED: &str = "presence_subscribers_lagged_total";
/// Histogram, label `stage` (`queue`, `socket`): from an event's `at` to
/// its delivery, in seconds.
pub const FANOUT_LAG: &str = "presence_fanout_lag_seconds";
/// Histogram, label `op`: latency of the service's store calls, in seconds.
pub const STORE_CALL: &str = "presence_store_call_seconds";
/// Counter, label `op`: store calls that failed.
pub const STORE_ERRORS: &str = "presence_store_errors_total";

/// Tells the installed recorder the unit and help text of every metric
/// above. Call it once, after installing the recorder; it does nothing
/// without the `metrics` feature.
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        describe_gauge!(
            SESSIONS_LIVE,
            Unit::Count,
            "Sessions held open through this process's presence service."
        );
        describe_counter!(
            USER_ARRIVALS,
            Unit::Count,
            "Changes applied by this node that took a user from OFFLINE to ONLINE, AWAY or BUSY."
        );
        describe_counter!(
            USER_DEPARTURES,
            Unit::Count,
            "Changes applied by this node that took a user to OFFLINE."
        );
        describe_counter!(
            TRANSITIONS,
            Unit::Count,
            "Changes of a user's shown status applied by this node, by new status."
        );
        describe_counter!(
            EVENTS_PUBLISHED,
            Unit::Count,
            "Presence events published by this node (one per scope of each change)."
        );
        describe_counter!(
            EVENTS_DELIVERED,
            Unit::Count,
            "Presence events put in a subscriber's queue on this node."
        );
        describe_counter!(
            EVENTS_DROPPED,
            Unit::Count,
            "Presence events dropped because a subscriber's queue was full."
        );
        describe_counter!(
            SUBSCRIBERS_LAGGED,
            Unit::Count,
            "Times a subscriber's full queue made it lag and re-read a snapshot."
        );
        describe_histogram!(
            FANOUT_LAG,
            Unit::Seconds,
            "Time from a presence event to its hand-over to subscriber queues (stage=queue) or its write to a socket (stage=socket)."
        );
        describe_histogram!(
            STORE_CALL,
            Unit::Seconds,
            "Latency of the presence service's store calls, by operation."
        );
        describe_counter!(
            STORE_ERRORS,
            Unit::Count,
            "Presence store calls that failed (unavailable, timeout, corrupt, backend), by operation."
        );
    }
}

/// A session was registered with this node's service.
#[inline]
pub(crate) fn session_opened() {
    #[cfg(feature = "metrics")]
    gauge!(SESSIONS_LIVE).increment(1.0);
}

/// One session left this node's service.
#[inline]
pub(crate) fn session_closed() {
    #[cfg(feature = "metrics")]
    gauge!(SESSIONS_LIVE).decrement(1.0);
}

/// The service went away with `count()` sessions still registered.
#[inline]
pub(crate) fn sessions_dropped(count: impl FnOnce() -> usize) {
    #[cfg(feature = "metrics")]
    {
        let count = count();
        if count > 0 {
            gauge!(SESSIONS_LIVE).decrement(count as f64);
        }
    }
    #[cfg(not(feature = "metrics"))]
    drop(count);
}

/// A change this node applied.
#[inline]
pub(crate) fn transition(transition: &Transition) {
    #[cfg(feature = "metrics")]
    {
        if !transition.changed() {
            return;
        }
        let events = crate::event::PresenceEvent::for_transition(transition).count() as u64;
        counter!(EVENTS_PUBLISHED).increment(events);
        if !transition.status_changed() {
            return;
        }
        match transition.to {
            Status::Online => counter!(TRANSITIONS, "status" => "ONLINE").increment(1),
            Status::Away => counter!(TRANSITIONS, "status" => "AWAY").increment(1),
            Status::Busy => counter!(TRANSITIONS, "status" => "BUSY").increment(1),
            Status::Offline => counter!(TRANSITIONS, "status" => "OFFLINE").increment(1),
        }
        if transition.from == Status::Offline {
            counter!(USER_ARRIVALS).increment(1);
        } else if transition.to == Status::Offline {
            counter!(USER_DEPARTURES).increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = transition;
}

/// What fan-out did in one hand-over.
#[inline]
pub(crate) fn fanout(delivered: u64, dropped: u64) {
    #[cfg(feature = "metrics")]
    {
        if delivered > 0 {
            counter!(EVENTS_DELIVERED).increment(delivered);
        }
        if dropped > 0 {
            counter!(EVENTS_DROPPED).increment(dropped);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (delivered, dropped);
}

/// A subscriber's full queue made it lag.
#[inline]
pub(crate) fn subscriber_lagged() {
    #[cfg(feature = "metrics")]
    counter!(SUBSCRIBERS_LAGGED).increment(1);
}

/// `events` are being handed to subscriber queues now.
#[inline]
pub(crate) fn queued(events: &[Arc<SharedEvent>]) {
    #[cfg(feature = "metrics")]
    if !events.is_empty() {
        lag(&histogram!(FANOUT_LAG, "stage" => "queue"), events);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = events;
}

/// Records, for each event, the time since its `at`.
#[cfg(feature = "metrics")]
fn lag(histogram: &::metrics::Histogram, events: &[Arc<SharedEvent>]) {
    let now = chrono::Utc::now();
    for event in events {
        // An event stamped ahead of this clock (skew) counts as no lag.
        let seconds = (now - event.at)
            .to_std()
            .map_or(0.0, |lag| lag.as_secs_f64());
        histogram.record(seconds);
    }
}

/// The `op` label of a store change.
#[inline]
pub(crate) fn apply_op(op: &UserOp) -> &'static str {
    #[cfg(feature = "metrics")]
    {
        match op {
            UserOp::Open(_) => "open",
            UserOp::Restore { .. } => "restore",
            UserOp::Activity { .. } => "activity",
            UserOp::Close { .. } => "close",
            UserOp::Logout { .. } => "logout",
            UserOp::LogoutEverywhere => "logout_everywhere",
            UserOp::SetManual(_) => "set_status",
            UserOp::SetCustom(_) => "set_custom",
            UserOp::SetStatus { .. } => "set_status_and_custom",
            UserOp::SetState { .. } => "set_state",
            UserOp::HideLastSeen(_) => "hide_last_seen",
            UserOp::ClearNode { .. } => "clear_node",
            UserOp::EndIncarnation { .. } => "end_incarnation",
            UserOp::Lapse { .. } => "lapse",
            UserOp::Refresh => "refresh",
        }
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = op;
        ""
    }
}

/// One store call being timed; [`StoreCall::finish`] records it.
#[must_use]
pub(crate) struct StoreCall {
    #[cfg(feature = "metrics")]
    op: &'static str,
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

/// Starts timing a store call labelled `op`.
#[inline]
pub(crate) fn store_call(op: &'static str) -> StoreCall {
    #[cfg(feature = "metrics")]
    {
        StoreCall {
            op,
            started: std::time::Instant::now(),
        }
    }
    #[cfg(not(feature = "metrics"))]
    {
        let _ = op;
        StoreCall {}
    }
}

impl StoreCall {
    /// Records the call's latency, and its failure if the store failed.
    #[inline]
    pub(crate) fn finish<T>(self, result: &Result<T, StoreError>) {
        #[cfg(feature = "metrics")]
        {
            let seconds = self.started.elapsed().as_secs_f64();
            match op_labels(self.op) {
                // A key of static parts: no allocation per call, recorder
                // or not.
                Some(labels) => {
                    let key = ::metrics::Key::from_static_parts(STORE_CALL, labels);
                    ::metrics::with_recorder(|recorder| {
                        recorder.register_histogram(&key, &STORE_CALL_METADATA)
                    })
                    .record(seconds);
                }
                None => histogram!(STORE_CALL, "op" => self.op).record(seconds),
            }
            if let Err(
                StoreError::Unavailable(_)
                | StoreError::Timeout(_)
                | StoreError::Corrupt(_)
                | StoreError::Backend(_),
            ) = result
            {
                counter!(STORE_ERRORS, "op" => self.op).increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = result;
    }
}

/// Where [`STORE_CALL`] is recorded from, as its macro would say.
#[cfg(feature = "metrics")]
static STORE_CALL_METADATA: ::metrics::Metadata<'static> =
    ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));

/// The `op` label of the store calls the service times, as static parts
/// (`None` for another name: it is then built per call).
#[cfg(feature = "metrics")]
fn op_labels(op: &str) -> Option<&'static [::metrics::Label]> {
    macro_rules! labels {
        ($($name:literal),* $(,)?) => {
            match op {
                $($name => {
                    static LABELS: [::metrics::Label; 1] =
                        [::metrics::Label::from_static_parts("op", $name)];
                    Some(&LABELS)
                })*
                _ => None,
            }
        };
    }
    labels!(
        "heartbeat",
        "open",
        "restore",
        "activity",
        "close",
        "logout",
        "logout_everywhere",
        "set_status",
        "clear_node",
        "end_incarnation",
        "refresh",
        "load_many",
        "scope_members",
        "due",
        "next_deadline",
        "leases",
        "end_lease",
        "feed_join",
        "reload_epoch",
    )
}

/// A store wrote its buffered heartbeats in one call that took `elapsed`
/// (`failed` if the backend refused it), recorded as the store call
/// `heartbeat_flush`. For stores that batch heartbeats: the service never
/// waits on those writes, so it cannot time them itself.
#[inline]
pub fn heartbeat_flush(elapsed: std::time::Duration, failed: bool) {
    #[cfg(feature = "metrics")]
    {
        histogram!(STORE_CALL, "op" => "heartbeat_flush").record(elapsed.as_secs_f64());
        if failed {
            counter!(STORE_ERRORS, "op" => "heartbeat_flush").increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (elapsed, failed);
}

/// The frames of `events` were written to a presence socket just now. For
/// adapters.
#[inline]
pub fn written_to_socket(events: &[Arc<SharedEvent>]) {
    #[cfg(feature = "metrics")]
    if !events.is_empty() {
        lag(&histogram!(FANOUT_LAG, "stage" => "socket"), events);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = events;
}
