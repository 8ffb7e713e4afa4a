//! [`SyncedClock`]: presence time, the store's clock carried by this
//! machine's monotonic clock (see [presence time](crate::Clock#presence-time)).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{Clock, Sleep, truncate_to_millis};

/// Presence time: the reference time minus the local monotonic reading it
/// was taken at, in ns, so that now = offset + monotonic. One atomic, read
/// on every change by every worker: a lock here was a shared cache line
/// every change wrote.
pub(crate) struct SyncedClock {
    local: Arc<dyn Clock>,
    offset_ns: AtomicI64,
}

/// `at - monotonic`, in ns (saturating: presence time is within a few
/// centuries of the Unix epoch).
fn offset_ns(at: DateTime<Utc>, monotonic: Duration) -> i64 {
    let at_ns = at.timestamp_nanos_opt().unwrap_or(if at.timestamp() < 0 {
        i64::MIN
    } else {
        i64::MAX
    });
    at_ns.saturating_sub(i64::try_from(monotonic.as_nanos()).unwrap_or(i64::MAX))
}

impl fmt::Debug for SyncedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncedClock")
            .field("local", &self.local)
            .field("now", &self.now())
            .finish()
    }
}

impl SyncedClock {
    /// Starts at the local clock's wall time, until [`SyncedClock::sync`].
    pub(crate) fn new(local: Arc<dyn Clock>) -> Self {
        let offset = offset_ns(local.now(), local.monotonic());
        Self {
            local,
            offset_ns: AtomicI64::new(offset),
        }
    }

    pub(crate) fn local_monotonic(&self) -> Duration {
        self.local.monotonic()
    }

    /// The reference read `reference` between the local monotonic readings
    /// `sent` and now: from now on, the reference is taken to have been
    /// read halfway.
    pub(crate) fn sync(&self, reference: DateTime<Utc>, sent: Duration) {
        let received = self.local.monotonic();
        let half_trip = received.saturating_sub(sent) / 2;
        let at = reference + TimeDelta::from_std(half_trip).unwrap_or(TimeDelta::zero());
        let moved = self.now() - at;
        if moved.num_milliseconds().abs() > 1_000 {
            tracing::warn!(
                by_ms = moved.num_milliseconds(),
                "presence time moved to the store's clock"
            );
        }
        self.offset_ns
            .store(offset_ns(at, received), Ordering::Relaxed);
    }
}

impl Clock for SyncedClock {
    fn now(&self) -> DateTime<Utc> {
        let monotonic = i64::try_from(self.local.monotonic().as_nanos()).unwrap_or(i64::MAX);
        let now_ns = self
            .offset_ns
            .load(Ordering::Relaxed)
            .saturating_add(monotonic);
        truncate_to_millis(DateTime::from_timestamp_nanos(now_ns))
    }

    fn monotonic(&self) -> Duration {
        self.local.monotonic()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            // Re-check after waking: a sync may have moved the time.
            loop {
                let Ok(left) = (deadline - self.now()).to_std() else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                self.local.sleep(left).await;
            }
        })
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        self.local.sleep(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn it_carries_the_reference_by_monotonic_time_and_ignores_wall_steps() {
        let local = Arc::new(ManualClock::default());
        let clock = SyncedClock::new(local.clone());
        let reference = local.now() + TimeDelta::seconds(5);
        let sent = clock.local_monotonic();
        local.advance(Duration::from_millis(20));
        clock.sync(reference, sent);
        assert_eq!(clock.now(), reference + TimeDelta::milliseconds(10));
        local.advance(Duration::from_secs(30));
        local.step(TimeDelta::seconds(60));
        assert_eq!(
            clock.now(),
            reference + TimeDelta::milliseconds(30_010),
            "30 s passed; the local wall step changed nothing"
        );
    }
}
