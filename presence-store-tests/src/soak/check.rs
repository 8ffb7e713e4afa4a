//! The end of a soak: waiting for the recorder, then comparing the
//! service's final state, its snapshots and the recorded events with the
//! model.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use presence_core::{Error, Presence, ScopeId, Status, UserId};
use tokio::time::Instant;

use super::SoakReport;
use super::recorder::{Recorder, Recording};
use super::shard::{Population, Shard};

/// Waits until the recorder has every event fan-out delivered, and nothing
/// more arrives for a while (at most ten seconds).
pub(crate) async fn wait_for_recorder(presence: &Presence, recorder: &Recorder) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let received = recorder.received();
        if received == last && received >= presence.fanout_stats().delivered {
            return;
        }
        last = received;
    }
}

fn status_index(status: Status) -> usize {
    match status {
        Status::Online => 0,
        Status::Away => 1,
        Status::Busy => 2,
        Status::Offline => 3,
    }
}

/// Final statuses against the model, ghosts, and scope snapshots.
pub(crate) async fn compare(
    presence: &Presence,
    population: &Population,
    shards: &[Shard],
    end: DateTime<Utc>,
) -> Result<SoakReport, Error> {
    let mut report = SoakReport {
        users: population.users.len(),
        ..SoakReport::default()
    };
    let mut shown = Vec::with_capacity(population.users.len());
    for chunk in population.users.chunks(1000) {
        shown.extend(presence.statuses(chunk).await?);
    }
    let config = presence.config();
    for (index, model) in shards.iter().flat_map(Shard::models) {
        let Some(actual) = shown.get(index) else {
            continue;
        };
        let expected = model.expected_status(end, config);
        report.final_statuses[status_index(actual.status)] += 1;
        if actual.status != Status::Offline && !model.has_live_session(end) {
            report.ghosts += 1;
            report
                .examples
                .push(format!("ghost: {} shown {}", actual.user_id, actual.status));
        }
        if expected == Status::Offline && actual.status != Status::Offline {
            report.missing_offline += 1;
        }
        if actual.status != expected {
            report.status_mismatches += 1;
            report.examples.push(format!(
                "{} shown {} (v {}), model says {expected}",
                actual.user_id, actual.status, actual.v
            ));
        }
    }
    let mut members: HashMap<&ScopeId, Vec<&UserId>> = HashMap::new();
    for ((user, scopes), now) in population.users.iter().zip(&population.scopes).zip(&shown) {
        let present = now.status != Status::Offline;
        for scope in scopes {
            let list = members.entry(scope).or_default();
            if present {
                list.push(user);
            }
        }
    }
    for (scope, mut expected) in members {
        let snapshot = presence.snapshot(scope).await?;
        let mut listed: Vec<&UserId> = snapshot.users.iter().map(|p| &p.user_id).collect();
        listed.sort_unstable();
        expected.sort_unstable();
        if listed != expected {
            report.snapshot_mismatches += 1;
            report.examples.push(format!(
                "snapshot of {scope} lists {} users, expected {}",
                listed.len(),
                expected.len()
            ));
        }
    }
    report.examples.truncate(20);
    Ok(report)
}

/// The recorder's counts, and its last event per user and scope against
/// the final state.
pub(crate) async fn check_recording(
    report: &mut SoakReport,
    recording: &Recording,
    population: &Population,
    shards: &[Shard],
    end: DateTime<Utc>,
    presence: &Presence,
) -> Result<(), Error> {
    report.events = recording.events;
    report.lags = recording.lags;
    report.lags_before_events = recording.lags_before_events;
    report.stale_after_lag = recording.stale_after_lag;
    report.duplicates = recording.duplicates;
    report.out_of_order = recording.out_of_order;
    report.gaps = recording.gaps;
    report.foreign_scope_events = recording.foreign_scope;
    report.examples.extend(recording.examples.iter().cloned());
    let config = presence.config();
    let mut shown = Vec::with_capacity(population.users.len());
    for chunk in population.users.chunks(1000) {
        shown.extend(presence.statuses(chunk).await?);
    }
    for (index, model) in shards.iter().flat_map(Shard::models) {
        let Some(actual) = shown.get(index) else {
            continue;
        };
        let says_offline = model.expected_status(end, config) == Status::Offline;
        let mut counted_missing = false;
        for scope in &population.scopes[index] {
            let last = recording.last.get(&(actual.user_id.clone(), scope.clone()));
            let (status, v) = last.map_or((Status::Offline, 0), |l| (l.status, l.v));
            if v != actual.v || status != actual.status {
                report.stale_last_events += 1;
                if report.examples.len() < 30 {
                    report.examples.push(format!(
                        "{} in {scope}: last event {status} v {v}, service {} v {}",
                        actual.user_id, actual.status, actual.v
                    ));
                }
            }
            // Counted once per user, and not twice with `compare`'s count.
            if says_offline
                && status != Status::Offline
                && !counted_missing
                && actual.status == Status::Offline
            {
                report.missing_offline += 1;
                counted_missing = true;
            }
        }
    }
    Ok(())
}
