//! What a soak found, and the process memory it read.

use std::fmt;

/// Operations the soak's driver completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Sessions opened.
    pub opens: u64,
    /// Sessions closed cleanly.
    pub closes: u64,
    /// Activity calls.
    pub activities: u64,
    /// Heartbeats.
    pub heartbeats: u64,
    /// Manual status changes (`BUSY`, `AWAY`, `INVISIBLE`, clear).
    pub manual_changes: u64,
    /// Logouts of one login.
    pub logouts: u64,
    /// Sessions left to lapse, as if their client had crashed.
    pub abandons: u64,
    /// Calls the service refused although the model expected them to work.
    pub errors: u64,
}

impl OpCounts {
    pub(crate) fn add(&mut self, other: &OpCounts) {
        self.opens += other.opens;
        self.closes += other.closes;
        self.activities += other.activities;
        self.heartbeats += other.heartbeats;
        self.manual_changes += other.manual_changes;
        self.logouts += other.logouts;
        self.abandons += other.abandons;
        self.errors += other.errors;
    }
}

/// The outcome of [`super::run`]. Every field named as a violation must be
/// zero for a sound service; [`SoakReport::violations`] adds them up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoakReport {
    /// Users driven.
    pub users: usize,
    /// Scopes they were spread over (all watched by the recorder).
    pub scopes: usize,
    /// Most sessions driven at once.
    pub peak_sessions: usize,
    /// Real seconds the churn phase lasted.
    pub seconds: f64,
    /// Opens plus closes per real second during the churn phase.
    pub churn_per_second: f64,
    /// Operations done, the initial fill and the churn together.
    pub ops: OpCounts,
    /// Events the recorder received.
    pub events: u64,
    /// Times the recorder lagged and re-read (not a violation: the
    /// documented lag policy; its gaps are excused).
    pub lags: u64,
    /// Of `lags`, those before the first event.
    pub lags_before_events: u64,
    /// Events dropped after a lag as not newer than the re-read (not a
    /// violation: the lag policy).
    pub stale_after_lag: u64,
    /// Users shown `ONLINE`, `AWAY` or `BUSY` at the end with no live
    /// session, after every linger ran out. Violation.
    pub ghosts: u64,
    /// Users the model says are `OFFLINE` whose last recorded event (or the
    /// service's status) says otherwise. Violation.
    pub missing_offline: u64,
    /// Users compared with the model during the run (a sample each tick,
    /// of those whose status the model can tell).
    pub checked_during_run: u64,
    /// Of those, users whose status differed from the model's. Violation.
    pub mismatches_during_run: u64,
    /// Of the mismatches, users shown present with no live session (and
    /// no linger pending): ghosts during the run.
    pub ghosts_during_run: u64,
    /// Users whose final status differs from the model's. Violation.
    pub status_mismatches: u64,
    /// A user's event repeated in a scope (same `v`). Violation.
    pub duplicates: u64,
    /// A user's event older than one already received in the scope.
    /// Violation.
    pub out_of_order: u64,
    /// Versions skipped in a scope outside a lag: lost events. Violation.
    pub gaps: u64,
    /// (user, scope) pairs whose last recorded event is not the user's
    /// final status and version: the last change never arrived. Violation.
    pub stale_last_events: u64,
    /// Events about a user in a scope the user is not in. Violation.
    pub foreign_scope_events: u64,
    /// Scopes whose snapshot disagrees with the users' statuses. Violation.
    pub snapshot_mismatches: u64,
    /// Final statuses: `ONLINE`, `AWAY`, `BUSY`, `OFFLINE`.
    pub final_statuses: [u64; 4],
    /// Resident memory of the process.
    pub rss: Rss,
    /// A few examples of what went wrong.
    pub examples: Vec<String>,
}

impl SoakReport {
    /// Asserts what a CI-size run (1000 sessions, 300 opens+closes per
    /// second, 4 s) must show: no violation, and that the run did what it
    /// claims (churn, and every kind of change).
    pub fn assert_ci_run(&self) {
        assert_eq!(self.violations(), 0, "{self}");
        assert!(self.ops.opens >= 1_500 && self.ops.closes >= 400, "{self}");
        assert!(self.ops.logouts > 0 && self.ops.abandons > 0, "{self}");
        assert!(self.ops.manual_changes > 0 && self.events > 1_000, "{self}");
        assert!(self.final_statuses[3] < self.users as u64, "{self}");
        assert!(self.checked_during_run > 1_000, "{self}");
    }

    /// The sum of every violation count, op errors included.
    pub fn violations(&self) -> u64 {
        self.ghosts
            + self.missing_offline
            + self.status_mismatches
            + self.mismatches_during_run
            + self.duplicates
            + self.out_of_order
            + self.gaps
            + self.stale_last_events
            + self.foreign_scope_events
            + self.snapshot_mismatches
            + self.ops.errors
    }
}

/// Resident memory of the process at points of the run, in KiB (`VmRSS`
/// of `/proc/self/status`; `None` where there is none). Growth from
/// `filled` to `end` is what the churn itself cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rss {
    /// Before the service was built.
    pub start: Option<u64>,
    /// Once the initial sessions were open, before the churn.
    pub filled: Option<u64>,
    /// The highest seen, read once per tick.
    pub peak: Option<u64>,
    /// After the churn and the settling, before anything was dropped.
    pub end: Option<u64>,
}

/// Resident memory of this process in KiB, if the platform says.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ops = &self.ops;
        writeln!(
            f,
            "users {} in {} scopes, peak sessions {}, churn {:.1} s at {:.0} opens+closes/s",
            self.users, self.scopes, self.peak_sessions, self.seconds, self.churn_per_second
        )?;
        writeln!(
            f,
            "ops: {} opens, {} closes, {} activities, {} heartbeats, {} manual changes, {} logouts, {} crashed, {} errors",
            ops.opens,
            ops.closes,
            ops.activities,
            ops.heartbeats,
            ops.manual_changes,
            ops.logouts,
            ops.abandons,
            ops.errors
        )?;
        writeln!(
            f,
            "events recorded: {} ({} lags, {} of them before the first event; {} stale after a lag)",
            self.events, self.lags, self.lags_before_events, self.stale_after_lag
        )?;
        writeln!(
            f,
            "during the run: {} users checked against the model, {} mismatches ({} ghosts)",
            self.checked_during_run, self.mismatches_during_run, self.ghosts_during_run
        )?;
        let [online, away, busy, offline] = self.final_statuses;
        writeln!(
            f,
            "final: {online} ONLINE, {away} AWAY, {busy} BUSY, {offline} OFFLINE"
        )?;
        writeln!(
            f,
            "ghosts {}, missing OFFLINE {}, status mismatches {}, duplicates {}, out of order {}, gaps {}, stale last events {}, foreign-scope events {}, snapshot mismatches {}",
            self.ghosts,
            self.missing_offline,
            self.status_mismatches,
            self.duplicates,
            self.out_of_order,
            self.gaps,
            self.stale_last_events,
            self.foreign_scope_events,
            self.snapshot_mismatches
        )?;
        let rss = &self.rss;
        writeln!(
            f,
            "RSS start {}, after the fill {}, peak {}, end {}",
            mib(rss.start),
            mib(rss.filled),
            mib(rss.peak),
            mib(rss.end)
        )?;
        for example in &self.examples {
            writeln!(f, "  e.g. {example}")?;
        }
        Ok(())
    }
}
