//! Where time comes from: the system clock in production, a manual clock in
//! tests (see [`Clock`], and its section on presence time).

mod manual;
mod synced;

pub use manual::ManualClock;
pub(crate) use synced::SyncedClock;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// A boxed future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of the current time, and a way to wait for a later one.
///
/// Everything in this workspace reads time through a `Clock`, never from the
/// system directly: the system clock in production, a [`ManualClock`] in
/// tests, so no test ever sleeps through a real five-minute threshold.
/// Times are whole milliseconds, the precision every store keeps.
///
/// # Presence time
///
/// Every decision presence makes compares times stamped by different
/// processes: a heartbeat stamped by one node is judged lapsed by another,
/// an activity stamped here turns a user AWAY there. So every process uses
/// one time, the **store's clock**: it reads it when it starts and every
/// [`PresenceBuilder::clock_sync_interval`] (10 s by default), halving the
/// round trip, and carries it between reads with its own *monotonic*
/// clock. Nodes whose wall clocks differ by seconds agree to within a
/// round trip; a wall clock stepped on one node (by an operator, a VM
/// resumed, NTP) changes nothing, since the monotonic clock does not step.
/// A store without a clock of its own (the memory store, SQLite: one
/// process) gives the process's wall clock when it started, carried the
/// same way. Keep the store's servers' clocks in sync with NTP; the nodes'
/// need not be.
///
/// A host that passes its own clock ([`PresenceBuilder::clock`]) gets
/// exactly that time, unsynchronised (tests drive a [`ManualClock`] so);
/// [`PresenceBuilder::local_clock`] replaces only the machine's clock under
/// the synchronisation.
///
/// [`PresenceBuilder::clock_sync_interval`]: crate::PresenceBuilder::clock_sync_interval
/// [`PresenceBuilder::clock`]: crate::PresenceBuilder::clock
/// [`PresenceBuilder::local_clock`]: crate::PresenceBuilder::local_clock
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, truncated to whole milliseconds.
    fn now(&self) -> DateTime<Utc>;

    /// Time elapsed since an arbitrary origin of this clock, at the pace of
    /// real time: unlike [`Clock::now`], it never steps (a wall clock set by
    /// hand or by NTP moves `now`, not this).
    fn monotonic(&self) -> Duration;

    /// Completes once [`Clock::now`] has reached `deadline`.
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep<'_>;

    /// Completes once [`Clock::monotonic`] has moved on by `duration`.
    fn sleep(&self, duration: Duration) -> Sleep<'_>;
}

/// Truncates a time to whole milliseconds.
pub(crate) fn truncate_to_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

/// The wall clock of the machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_to_millis(Utc::now())
    }

    fn monotonic(&self) -> Duration {
        // tokio's instant, so a test runtime with paused time moves it as
        // it moves the sleeps.
        static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(tokio::time::Instant::now).elapsed()
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(duration))
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
