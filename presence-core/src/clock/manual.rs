//! [`ManualClock`]: time that moves only when a test says so.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::watch;

use super::{Clock, Sleep, truncate_to_millis};

/// What a manual clock shows: a wall time and a monotonic one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    wall: DateTime<Utc>,
    monotonic: Duration,
}

/// A clock that only moves when told to. Sleepers wake as soon as
/// [`ManualClock::advance`] or [`ManualClock::set`] passes their deadline.
///
/// Time passing ([`ManualClock::advance`], or [`ManualClock::set`] to a
/// later time) moves both its wall time and its monotonic time; a
/// wall-clock step ([`ManualClock::step`], or [`ManualClock::set`] to an
/// earlier time) moves the wall time alone, as an operator or NTP setting
/// a real clock would.
///
/// ```
/// use std::time::Duration;
/// use presence_core::{Clock, ManualClock};
///
/// let clock = ManualClock::default();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(300));
/// assert_eq!((clock.now() - start).num_seconds(), 300);
/// clock.step(chrono::TimeDelta::seconds(60));
/// assert_eq!((clock.now() - start).num_seconds(), 360);
/// assert_eq!(clock.monotonic(), Duration::from_secs(300));
/// ```
pub struct ManualClock {
    now: watch::Sender<Reading>,
}

impl ManualClock {
    /// A manual clock showing `start` (truncated to milliseconds).
    pub fn new(start: DateTime<Utc>) -> Self {
        let (now, _) = watch::channel(Reading {
            wall: truncate_to_millis(start),
            monotonic: Duration::ZERO,
        });
        Self { now }
    }

    /// Time passes: `by` (rounded down to milliseconds) on the wall clock
    /// and the monotonic one.
    pub fn advance(&self, by: Duration) {
        let by = Duration::from_millis(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
        let delta = TimeDelta::from_std(by).unwrap_or(TimeDelta::MAX);
        self.now.send_modify(|now| {
            now.wall = truncate_to_millis(now.wall.checked_add_signed(delta).unwrap_or(now.wall));
            now.monotonic = now.monotonic.saturating_add(by);
        });
    }

    /// Sets the wall clock to `time`: time passes until then if it is
    /// later; an earlier time is a step back, as a real clock may take.
    pub fn set(&self, time: DateTime<Utc>) {
        let time = truncate_to_millis(time);
        let now = self.now.borrow().wall;
        match (time - now).to_std() {
            Ok(ahead) => self.advance(ahead),
            Err(_) => self.now.send_modify(|now| now.wall = time),
        }
    }

    /// Steps the wall clock by `by` (either way), as an operator or NTP
    /// setting a clock would: its monotonic time does not move.
    pub fn step(&self, by: TimeDelta) {
        self.now.send_modify(|now| {
            now.wall = truncate_to_millis(now.wall.checked_add_signed(by).unwrap_or(now.wall));
        });
    }

    /// Waits until `reached` holds of the reading.
    fn wait(&self, reached: impl Fn(&Reading) -> bool + Send + 'static) -> Sleep<'_> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            loop {
                if reached(&changes.borrow_and_update()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    // The clock is gone; it will never get there.
                    std::future::pending::<()>().await;
                }
            }
        })
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
        let now = *self.now.borrow();
        f.debug_struct("ManualClock")
            .field("now", &now.wall)
            .field("monotonic", &now.monotonic)
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.borrow().wall
    }

    fn monotonic(&self) -> Duration {
        self.now.borrow().monotonic
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_> {
        self.wait(move |now| now.wall >= deadline)
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        let until = self.monotonic().saturating_add(duration);
        self.wait(move |now| now.monotonic >= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_monotonic_sleeper_ignores_wall_steps() {
        let clock = Arc::new(ManualClock::default());
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        clock.step(TimeDelta::seconds(3600));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "a wall step is not time passing");
        clock.set(clock.now() - TimeDelta::seconds(7200));
        clock.advance(Duration::from_secs(10));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke when ten seconds passed")
            .unwrap();
    }
}
