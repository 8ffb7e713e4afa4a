//! Thresholds and limits, with the defaults of docs/rules.md#defaults and their validation.

use std::time::Duration;

/// The timing rules of presence. Build one from [`Default`] and adjust the
/// fields; [`PresenceConfig::validate`] (called by the service builder)
/// rejects combinations that cannot work.
///
/// ```
/// use std::time::Duration;
/// use presence_core::PresenceConfig;
///
/// let config = PresenceConfig {
///     away_after: Duration::from_secs(120),
///     ..PresenceConfig::default()
/// };
/// assert!(config.validate().is_ok());
///
/// let broken = PresenceConfig { away_after: Duration::from_secs(3600), ..config };
/// assert!(broken.validate().is_err()); // away after offline makes no sense
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresenceConfig {
    /// How often clients should send a heartbeat (default 30 s). Told to
    /// clients in the `hello` frame.
    pub heartbeat_interval: Duration,
    /// A session without a heartbeat for this long is dead (default 75 s).
    pub session_ttl: Duration,
    /// No activity for this long shows the user `AWAY` (default 5 min).
    pub away_after: Duration,
    /// No activity for this long shows the user `OFFLINE` even while
    /// connected (default 30 min).
    pub offline_after: Duration,
    /// Grace period after a user's last session ends, so reloads never
    /// flicker `OFFLINE` (default 10 s). Zero disables it.
    pub linger: Duration,
    /// Most sessions one user may hold at once (default 256); more is an
    /// error rather than unbounded growth.
    pub max_sessions_per_user: usize,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(30),
            session_ttl: Duration::from_secs(75),
            away_after: Duration::from_secs(5 * 60),
            offline_after: Duration::from_secs(30 * 60),
            linger: Duration::from_secs(10),
            max_sessions_per_user: 256,
        }
    }
}

/// Longest threshold accepted: far beyond any sensible setting, short
/// enough that time arithmetic can never overflow.
const MAX_THRESHOLD: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why a [`PresenceConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// A duration is beyond ten years.
    #[error("{0} is too long (the limit is ten years)")]
    TooLong(&'static str),
    /// Two thresholds are in the wrong order.
    #[error("{shorter} ({shorter_value:?}) must be shorter than {longer} ({longer_value:?})")]
    Order {
        /// The name of the threshold that must be shorter.
        shorter: &'static str,
        /// Its value.
        shorter_value: Duration,
        /// The name of the threshold that must be longer.
        longer: &'static str,
        /// Its value.
        longer_value: Duration,
    },
    /// `max_sessions_per_user` is zero.
    #[error("max_sessions_per_user must be at least 1")]
    NoSessionsAllowed,
}

impl PresenceConfig {
    /// Checks that the thresholds can work together: all positive (linger
    /// may be zero), `session_ttl > heartbeat_interval` (one late heartbeat
    /// must not kill a session) and `away_after < offline_after`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let named = [
            ("heartbeat_interval", self.heartbeat_interval),
            ("session_ttl", self.session_ttl),
            ("away_after", self.away_after),
            ("offline_after", self.offline_after),
            ("linger", self.linger),
        ];
        for (name, value) in named {
            if value.is_zero() && name != "linger" {
                return Err(ConfigError::Zero(name));
            }
            if value > MAX_THRESHOLD {
                return Err(ConfigError::TooLong(name));
            }
        }
        if self.session_ttl <= self.heartbeat_interval {
            return Err(ConfigError::Order {
                shorter: "heartbeat_interval",
                shorter_value: self.heartbeat_interval,
                longer: "session_ttl",
                longer_value: self.session_ttl,
            });
        }
        if self.away_after >= self.offline_after {
            return Err(ConfigError::Order {
                shorter: "away_after",
                shorter_value: self.away_after,
                longer: "offline_after",
                longer_value: self.offline_after,
            });
        }
        if self.max_sessions_per_user == 0 {
            return Err(ConfigError::NoSessionsAllowed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_those_of_the_spec_and_valid() {
        let config = PresenceConfig::default();
        assert_eq!(config.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(config.session_ttl, Duration::from_secs(75));
        assert_eq!(config.away_after, Duration::from_secs(300));
        assert_eq!(config.offline_after, Duration::from_secs(1800));
        assert_eq!(config.linger, Duration::from_secs(10));
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn a_ttl_not_longer_than_the_heartbeat_interval_is_rejected() {
        let config = PresenceConfig {
            session_ttl: Duration::from_secs(30),
            ..PresenceConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Order {
                longer: "session_ttl",
                ..
            }
        ));
        assert!(err.to_string().contains("heartbeat_interval"));
    }

    #[test]
    fn zero_and_absurd_durations_are_rejected_but_zero_linger_is_fine() {
        let zero_away = PresenceConfig {
            away_after: Duration::ZERO,
            ..PresenceConfig::default()
        };
        assert_eq!(zero_away.validate(), Err(ConfigError::Zero("away_after")));
        let huge = PresenceConfig {
            offline_after: Duration::MAX,
            ..PresenceConfig::default()
        };
        assert_eq!(huge.validate(), Err(ConfigError::TooLong("offline_after")));
        let no_linger = PresenceConfig {
            linger: Duration::ZERO,
            ..PresenceConfig::default()
        };
        assert_eq!(no_linger.validate(), Ok(()));
        let no_sessions = PresenceConfig {
            max_sessions_per_user: 0,
            ..PresenceConfig::default()
        };
        assert_eq!(no_sessions.validate(), Err(ConfigError::NoSessionsAllowed));
    }
}
