//! What the tests of every crate share: the thresholds they run with
//! ([`test_config`]), and waiting for what a [`Subscription`] or a service
//! tells, each wait with a deadline so a missing event fails the test
//! instead of hanging it.
//!
//! A watcher may be told to resnapshot ([`Delivery::Lagged`]) when a feed
//! starts listening to its scope or comes back after a drop: such a notice
//! carries no event, so [`next_event`] and [`quiet`] pass over it, while
//! [`drain`], which reads what one node queued at once, fails on it.
//!
//! ```
//! use presence_core::{ManualClock, Presence, SessionSpec, Status};
//! use presence_store_tests::helpers::{ev, next_seen, test_config};
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let presence = Presence::builder()
//!     .clock(Arc::new(ManualClock::default()))
//!     .config(test_config())
//!     .build()
//!     .await
//!     .expect("presence");
//! let (mut events, _) = presence.watch(&"acme".into()).await.expect("watch");
//! let _tab = presence
//!     .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
//!     .await
//!     .expect("open");
//! assert_eq!(next_seen(&mut events).await, ev("alice", Status::Online, 1));
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use presence_core::{
    Delivery, Presence, PresenceConfig, PresenceEvent, SharedEvent, Status, Subscription, UserId,
};
use tokio::time::{Instant, sleep, timeout};

/// Longest a test waits (real time) for a delivery it expects.
pub const WAIT: Duration = Duration::from_secs(5);

/// An event as tests compare it: user, status, version.
pub type Seen = (String, Status, u64);

/// The thresholds the tests run with: heartbeat 10 s, ttl 30 s, away
/// 60 s, offline 600 s, linger 5 s, at most 128 sessions per user. A test
/// that needs another threshold changes that one field:
/// `PresenceConfig { session_ttl: …, ..test_config() }`.
pub fn test_config() -> PresenceConfig {
    PresenceConfig {
        heartbeat_interval: Duration::from_secs(10),
        session_ttl: Duration::from_secs(30),
        away_after: Duration::from_secs(60),
        offline_after: Duration::from_secs(600),
        linger: Duration::from_secs(5),
        max_sessions_per_user: 128,
    }
}

/// An expected event: `user` told `status` at version `v`.
pub fn ev(user: &str, status: Status, v: u64) -> Seen {
    (user.to_owned(), status, v)
}

/// `event` as tests compare it.
pub fn seen(event: &PresenceEvent) -> Seen {
    (event.user_id.to_string(), event.status, event.v)
}

/// The next delivery within `within`, or `None` if none came. Panics if
/// the subscription ended.
pub async fn recv_timeout(events: &mut Subscription, within: Duration) -> Option<Delivery> {
    match timeout(within, events.recv()).await {
        Ok(Some(delivery)) => Some(delivery),
        Ok(None) => panic!("the subscription ended"),
        Err(_) => None,
    }
}

/// The next event within `within`, passing over lag notices. Panics if
/// none came, or on a batch (a subscription that accepts batches reads
/// them itself).
pub async fn next_event_within(events: &mut Subscription, within: Duration) -> Arc<SharedEvent> {
    let deadline = Instant::now() + within;
    loop {
        match recv_timeout(events, deadline.saturating_duration_since(Instant::now())).await {
            Some(Delivery::Event(event)) => return event,
            Some(Delivery::Lagged) => continue,
            None => panic!("expected an event within {within:?}, got none"),
            Some(other) => panic!("expected an event, got {other:?}"),
        }
    }
}

/// The next event within [`WAIT`], passing over lag notices.
pub async fn next_event(events: &mut Subscription) -> Arc<SharedEvent> {
    next_event_within(events, WAIT).await
}

/// The next event within `within` (lag notices passed over), as tests
/// compare it.
pub async fn next_seen_within(events: &mut Subscription, within: Duration) -> Seen {
    let event = next_event_within(events, within).await;
    seen(&event)
}

/// The next event within [`WAIT`] (lag notices passed over), as tests
/// compare it.
pub async fn next_seen(events: &mut Subscription) -> Seen {
    next_seen_within(events, WAIT).await
}

/// Nothing but lag notices for `within` of real time.
pub async fn quiet(events: &mut Subscription, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match recv_timeout(events, deadline.saturating_duration_since(Instant::now())).await {
            None => return,
            Some(Delivery::Lagged) => continue,
            Some(other) => panic!("expected nothing, got {other:?}"),
        }
    }
}

/// The next delivery, within [`WAIT`], is a lag notice: a feed told the
/// watcher to resnapshot (its subscription took effect, or it came back).
pub async fn expect_lagged(events: &mut Subscription) {
    match recv_timeout(events, WAIT).await {
        Some(Delivery::Lagged) => {}
        other => panic!("expected a resnapshot notice within {WAIT:?}, got {other:?}"),
    }
}

/// Every event queued now, in order (a batch's one by one). Panics on a
/// lag notice: events were lost.
pub fn drain(events: &mut Subscription) -> Vec<Seen> {
    let mut queued = Vec::new();
    while let Some(delivery) = events.try_recv() {
        assert_ne!(delivery, Delivery::Lagged, "unexpected lag");
        queued.extend(delivery.events().iter().map(|event| seen(event)));
    }
    queued
}

/// How `presence` reads `user` now. Panics if the read fails.
pub async fn status_of(presence: &Presence, user: &str) -> Status {
    presence
        .status(&user.into())
        .await
        .unwrap_or_else(|e| panic!("the status of {user}: {e}"))
        .status
}

/// Waits until `check` holds, for at most `within` (real time), looking
/// every 20 ms.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "never within {within:?}: {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `presence` reads `user` as `expected`, for at most `within`
/// (real time). A read that fails meanwhile (a store coming back) is read
/// again.
pub async fn status_becomes(presence: &Presence, user: &str, expected: Status, within: Duration) {
    let (user, deadline) = (UserId::from(user), Instant::now() + within);
    loop {
        let read = presence.status(&user).await;
        if matches!(&read, Ok(found) if found.status == expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{user} never read {expected:?} within {within:?}: {read:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}
