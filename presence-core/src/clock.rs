//! Where time comes from: the system clock in production, a manual clock in
//! tests, so no test ever sleeps through a real five-minute threshold.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of the current time, and a way to wait for a later one.
///
/// Everything in this workspace reads time through a `Clock`, never from the
/// system directly. Times are whole milliseconds, the precision every store
/// keeps.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, truncated to whole milliseconds.
    fn now(&self) -> DateTime<Utc>;

    /// Completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;
}

/// Truncates a time to whole milliseconds.
pub fn truncate_to_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// The wall clock of the machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_to_millis(Utc::now())
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        Box::pin(async move {
            // Re-check after waking: the wall clock may have been adjusted.
            loop {
                let left = deadline - self.now();
                if left <= TimeDelta::zero() {
                    return;
                }
                let left = left.to_std().unwrap_or(Duration::from_secs(1));
                tokio::time::sleep(left).await;
            }
        })
    }
}

/// A clock that only moves when told to. Sleepers wake as soon as
/// [`ManualClock::advance`] or [`ManualClock::set`] passes their deadline.
///
/// ```
/// use std::time::Duration;
/// use presence_core::{Clock, ManualClock};
///
/// let clock = ManualClock::default();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(300));
/// assert_eq!((clock.now() - start).num_seconds(), 300);
/// ```
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    /// A manual clock showing `start` (truncated to milliseconds).
    pub fn new(start: DateTime<Utc>) -> Self {
        let (now, _) = watch::channel(truncate_to_millis(start));
        Self { now }
    }

    /// Moves the clock forward by `by` (rounded down to milliseconds).
    pub fn advance(&self, by: Duration) {
        let by = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        self.now.send_modify(|now| {
            *now = truncate_to_millis(now.checked_add_signed(by).unwrap_or(*now));
        });
    }

    /// Sets the clock to `time`; it may move backwards, like a real clock.
    pub fn set(&self, time: DateTime<Utc>) {
        self.now.send_replace(truncate_to_millis(time));
    }
}

impl Default for ManualClock {
    /// A manual clock at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*self.now.borrow())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *changes.borrow_and_update() >= deadline {
                    return;
                }
                if changes.changed().await.is_err() {
                    // The clock is gone; it will never reach the deadline.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_sleeper_on_the_manual_clock_wakes_when_time_passes_its_deadline() {
        let clock = Arc::new(ManualClock::default());
        let deadline = clock.now() + TimeDelta::seconds(60);
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(deadline).await })
        };
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("sleeper woke")
            .unwrap();
    }

    #[test]
    fn clocks_read_whole_milliseconds() {
        let t = SystemClock.now();
        assert_eq!(t.timestamp_subsec_nanos() % 1_000_000, 0);
        let manual = ManualClock::default();
        manual.advance(Duration::from_micros(1_500));
        assert_eq!(manual.now().timestamp_subsec_millis(), 1);
    }
}
