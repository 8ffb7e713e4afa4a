//! The sweeper: fires time-driven transitions (away, offline, lapse, linger
//! end, manual expiry) from the store's deadline index.
//!
//! Every user has at most one deadline in the store, the earliest instant at
//! which time alone may change them. The sweeper asks the store for the due
//! ones, refreshes each, and sleeps until the next deadline (or at most one
//! `sweep_interval`, to notice deadlines other nodes set in a shared store).
//! A sweep costs work proportional to the due deadlines, never a scan of all
//! users. Heartbeats never touch the index: a session's lapse deadline may
//! fire early, find the session refreshed, and move on.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::service::{Inner, Presence};
use crate::store::machine::later;

/// How the service and its sweeper task talk.
pub(crate) struct SweeperControl {
    wake: Notify,
    /// When the sweeper plans to wake next, in Unix milliseconds;
    /// `i64::MAX` while it is sweeping, so that every new deadline wakes it.
    planned: AtomicI64,
    stop: watch::Sender<bool>,
}

impl SweeperControl {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            wake: Notify::new(),
            planned: AtomicI64::new(i64::MAX),
            stop: watch::channel(false).0,
        })
    }

    /// Makes sure the sweeper wakes by `deadline`.
    pub(crate) fn schedule(&self, deadline: DateTime<Utc>) {
        if deadline.timestamp_millis() < self.planned.load(Ordering::Acquire) {
            self.wake.notify_one();
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Starts the sweeper of a service. It holds only a weak reference while it
/// sleeps, and ends when the service is dropped or shut down.
pub(crate) fn spawn(
    inner: Weak<Inner>,
    control: Arc<SweeperControl>,
    clock: Arc<dyn Clock>,
    interval: Duration,
) {
    let mut stop = control.stop.subscribe();
    tokio::spawn(async move {
        loop {
            if *stop.borrow() {
                return;
            }
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let presence = Presence::from_inner(inner);
            control.planned.store(i64::MAX, Ordering::Release);
            let now = clock.now();
            let wake_at = match presence.sweep(now).await {
                Ok(next) => {
                    let bound = later(now, interval);
                    next.map_or(bound, |next| next.min(bound))
                }
                Err(error) => {
                    tracing::warn!(%error, "presence sweep failed; retrying");
                    later(now, interval.min(Duration::from_secs(1)))
                }
            };
            drop(presence);
            control
                .planned
                .store(wake_at.timestamp_millis(), Ordering::Release);
            tokio::select! {
                _ = clock.sleep_until(wake_at) => {}
                _ = control.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
    });
}
