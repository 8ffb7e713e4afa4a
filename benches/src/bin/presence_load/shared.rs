//! What every client of one run shares: the send instants of the triggers
//! and the latency and frame tallies of the watchers.
//!
//! Latency is measured on this tool's clock only: a trigger (a status
//! change, or a joiner's login) stores the instant it was sent in a slot
//! keyed by (user, v); a watcher that receives the matching event records
//! now − sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use hdrhistogram::Histogram;

/// Latency histograms are kept per phase: the tenth of the schedule the
/// trigger belonged to, so lag growth over a run shows.
pub(crate) const PHASES: usize = 10;

/// The send instants of one triggering user's changes.
pub(crate) struct TriggerSlots {
    /// The user's `v` before its first change (learned from its snapshot);
    /// change k has v = base + 1 + k.
    base_v: AtomicU64,
    /// Match any `v` (a joiner: one ONLINE event, slot 0).
    any_v: bool,
    /// Nanoseconds since the epoch at which change k was sent (0: not yet).
    sent: Box<[AtomicU64]>,
    /// A fixed phase (joiners), else slot × PHASES / slots.
    phase: Option<usize>,
}

impl TriggerSlots {
    pub(crate) fn changes(count: usize) -> Self {
        Self {
            base_v: AtomicU64::new(0),
            any_v: false,
            sent: (0..count).map(|_| AtomicU64::new(0)).collect(),
            phase: None,
        }
    }

    pub(crate) fn joiner(phase: usize) -> Self {
        Self {
            base_v: AtomicU64::new(0),
            any_v: true,
            sent: vec![AtomicU64::new(0)].into_boxed_slice(),
            phase: Some(phase.min(PHASES - 1)),
        }
    }
}

/// What every client of one run shares.
pub(crate) struct Shared {
    /// The zero of this run's clock (`now_ns`).
    epoch: Instant,
    /// Triggering users by user id (built before the run, read-only then).
    triggers: HashMap<String, TriggerSlots>,
    pub(crate) latency: Vec<Mutex<Histogram<u64>>>,
    pub(crate) delivered: AtomicU64,
    /// Events of a triggering user that match no sent change.
    pub(crate) unmatched: AtomicU64,
    /// Events of users that trigger nothing (watchers' own logins, …).
    pub(crate) other_events: AtomicU64,
    pub(crate) frames: AtomicU64,
    pub(crate) batches: AtomicU64,
    /// Snapshots after the ones a connect or subscribe asked for: the
    /// server's answer to a lagging subscriber.
    pub(crate) resnapshots: AtomicU64,
    pub(crate) error_frames: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) last_delivery_ns: AtomicU64,
    /// Why sockets closed, counted.
    pub(crate) close_reasons: Mutex<HashMap<String, u64>>,
}

/// A latency histogram: 1 µs .. 10 min, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

impl Shared {
    pub(crate) fn new(triggers: HashMap<String, TriggerSlots>) -> Self {
        Self {
            epoch: Instant::now(),
            triggers,
            latency: (0..PHASES).map(|_| Mutex::new(histogram())).collect(),
            delivered: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            resnapshots: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            close_reasons: Mutex::default(),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Marks slot `slot` of `user` as sent now.
    pub(crate) fn mark_sent(&self, user: &str, slot: usize) {
        if let Some(slots) = self.triggers.get(user)
            && let Some(cell) = slots.sent.get(slot)
        {
            cell.store(self.now_ns().max(1), Relaxed);
        }
    }

    /// Records the `v` of a triggering `user` before its first change.
    pub(crate) fn set_base_v(&self, user: &str, v: u64) {
        if let Some(slots) = self.triggers.get(user) {
            slots.base_v.store(v, Relaxed);
        }
    }

    /// All phases merged.
    pub(crate) fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for phase in &self.latency {
            let phase = phase.lock().unwrap_or_else(|e| e.into_inner());
            let _ = all.add(&*phase);
        }
        all
    }

    /// Counts a socket that closed, and why.
    pub(crate) fn note_close(&self, reason: String) {
        self.closed.fetch_add(1, Relaxed);
        let mut reasons = self.close_reasons.lock().unwrap_or_else(|e| e.into_inner());
        *reasons.entry(reason).or_insert(0) += 1;
    }

    /// A watcher received `user`'s event: records its latency when it
    /// matches a sent change, else counts it.
    pub(crate) fn on_event(&self, user: &str, status: &str, v: u64) {
        let Some(slots) = self.triggers.get(user) else {
            self.other_events.fetch_add(1, Relaxed);
            return;
        };
        let slot = if slots.any_v {
            if status != "ONLINE" {
                self.unmatched.fetch_add(1, Relaxed);
                return;
            }
            0
        } else {
            match v.checked_sub(slots.base_v.load(Relaxed) + 1) {
                Some(slot) => usize::try_from(slot).unwrap_or(usize::MAX),
                None => {
                    self.unmatched.fetch_add(1, Relaxed);
                    return;
                }
            }
        };
        let sent = slots.sent.get(slot).map_or(0, |cell| cell.load(Relaxed));
        if sent == 0 {
            self.unmatched.fetch_add(1, Relaxed);
            return;
        }
        let now = self.now_ns();
        let micros = (now.saturating_sub(sent) / 1000).max(1);
        let phase = slots
            .phase
            .unwrap_or_else(|| slot * PHASES / slots.sent.len().max(1));
        {
            let mut histogram = self.latency[phase.min(PHASES - 1)]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            histogram.saturating_record(micros);
        }
        self.delivered.fetch_add(1, Relaxed);
        self.last_delivery_ns.fetch_max(now, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_trigger(slots: TriggerSlots) -> Shared {
        Shared::new(HashMap::from([("t".to_owned(), slots)]))
    }

    #[test]
    fn a_change_is_matched_by_its_v_after_the_base() {
        let shared = one_trigger(TriggerSlots::changes(3));
        shared.set_base_v("t", 7);
        shared.mark_sent("t", 1);
        shared.on_event("t", "BUSY", 9);
        assert_eq!(shared.delivered.load(Relaxed), 1);
        // v 8 is change 0, never sent; v 11 is past the schedule.
        shared.on_event("t", "BUSY", 8);
        shared.on_event("t", "BUSY", 11);
        shared.on_event("t", "BUSY", 3);
        assert_eq!(shared.unmatched.load(Relaxed), 3);
        assert_eq!(shared.merged().len(), 1);
    }

    #[test]
    fn a_joiner_matches_its_online_event_only() {
        let shared = one_trigger(TriggerSlots::joiner(4));
        shared.mark_sent("t", 0);
        shared.on_event("t", "AWAY", 1);
        shared.on_event("t", "ONLINE", 42);
        shared.on_event("someone-else", "ONLINE", 1);
        assert_eq!(shared.delivered.load(Relaxed), 1);
        assert_eq!(shared.unmatched.load(Relaxed), 1);
        assert_eq!(shared.other_events.load(Relaxed), 1);
        let phase = shared.latency[4].lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(phase.len(), 1);
    }
}
