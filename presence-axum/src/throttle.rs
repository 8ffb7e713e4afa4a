//! Flood control for one socket: a token bucket, then a close.

use tokio::time::Instant;

/// How many messages a client may send.
///
/// A socket holds a bucket of `burst` tokens refilled at `per_second`; each
/// message takes one. A message that finds the bucket empty is dropped and
/// answered with a `rate_limited` error (throttled); once a client has had
/// `burst` messages dropped without the bucket refilling in between (a
/// sustained flood), the socket is closed with 1008.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloodLimit {
    /// Sustained messages per second (default 20).
    pub per_second: f64,
    /// Messages allowed at once above the rate (default 40).
    pub burst: u32,
}

impl Default for FloodLimit {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40,
        }
    }
}

/// How often one socket may set its session's app state (`set_state`):
/// bursts of 5, then one a second. Over it, the message is answered
/// `rate_limited` and the socket stays open (this bucket never closes it;
/// the flood limit above still counts every message).
pub(crate) const SET_STATE_LIMIT: FloodLimit = FloodLimit {
    per_second: 1.0,
    burst: 5,
};

/// What to do with one incoming message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    /// Drop it and say so.
    Throttle,
    /// Close the socket with 1008.
    Close,
}

/// The bucket of one socket.
#[derive(Debug)]
pub(crate) struct Throttle {
    limit: FloodLimit,
    tokens: f64,
    refilled_at: Instant,
    dropped: u32,
}

impl Throttle {
    pub(crate) fn new(limit: FloodLimit) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: Instant::now(),
            dropped: 0,
        }
    }

    /// Whether one more message fits the bucket at `now` (never a close:
    /// for limits of one kind of message, such as [`SET_STATE_LIMIT`]).
    pub(crate) fn allows(&mut self, now: Instant) -> bool {
        self.check(now) == Verdict::Accept
    }

    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.refilled_at = now;
        let capacity = f64::from(self.limit.burst.max(1));
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.limit.per_second).min(capacity);
        if self.tokens >= capacity {
            // A full bucket means the client calmed down.
            self.dropped = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        self.dropped += 1;
        if self.dropped >= self.limit.burst.max(1) {
            Verdict::Close
        } else {
            Verdict::Throttle
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_passes_a_flood_is_throttled_then_closed() {
        let start = Instant::now();
        let mut throttle = Throttle::new(FloodLimit::default());
        for _ in 0..40 {
            assert_eq!(throttle.check(start), Verdict::Accept);
        }
        for _ in 0..39 {
            assert_eq!(throttle.check(start), Verdict::Throttle);
        }
        assert_eq!(throttle.check(start), Verdict::Close);
    }

    #[test]
    fn a_steady_client_at_the_rate_is_never_throttled() {
        let start = Instant::now();
        let mut throttle = Throttle::new(FloodLimit::default());
        for n in 0..10_000u32 {
            let at = start + Duration::from_millis(50) * n;
            assert_eq!(throttle.check(at), Verdict::Accept, "message {n}");
        }
    }

    #[test]
    fn set_state_gets_five_at_once_then_one_a_second() {
        let start = Instant::now();
        let mut throttle = Throttle::new(SET_STATE_LIMIT);
        for n in 0..5 {
            assert!(throttle.allows(start), "state {n} of the burst");
        }
        for _ in 0..100 {
            assert!(!throttle.allows(start), "refused, never closed");
        }
        assert!(!throttle.allows(start + Duration::from_millis(900)));
        assert!(throttle.allows(start + Duration::from_millis(1000)));
        assert!(!throttle.allows(start + Duration::from_millis(1000)));
    }

    #[test]
    fn calming_down_forgives_earlier_drops() {
        let start = Instant::now();
        let mut throttle = Throttle::new(FloodLimit::default());
        for _ in 0..70 {
            throttle.check(start);
        }
        let later = start + Duration::from_secs(3);
        assert_eq!(throttle.check(later), Verdict::Accept);
        for _ in 0..39 {
            throttle.check(later);
        }
        assert_eq!(
            throttle.check(later),
            Verdict::Throttle,
            "the count starts again"
        );
    }
}
