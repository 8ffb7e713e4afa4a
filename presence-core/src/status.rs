//! Statuses: what observers see, and what a user may choose.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The effective status observers see (docs/rules.md#statuses), with its wire name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Connected and recently active.
    Online,
    /// Connected but idle, or chose to be away.
    Away,
    /// Connected and chose not to be disturbed.
    Busy,
    /// Not connected, idle for too long, or invisible.
    Offline,
}

impl Status {
    /// The wire name: `"ONLINE"`, `"AWAY"`, `"BUSY"` or `"OFFLINE"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "ONLINE",
            Status::Away => "AWAY",
            Status::Busy => "BUSY",
            Status::Offline => "OFFLINE",
        }
    }
}

impl Status {
    /// The more present of two statuses of one user's devices: `ONLINE`
    /// over `BUSY` over `AWAY` over `OFFLINE`.
    pub(crate) fn max_by_rank(self, other: Status) -> Status {
        let rank = |status: Status| match status {
            Status::Online => 3,
            Status::Busy => 2,
            Status::Away => 1,
            Status::Offline => 0,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status the user chose by hand. It outranks idleness (docs/rules.md#precedence) until it
/// is cleared or expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManualStatus {
    /// Shown as `AWAY` while connected.
    Away,
    /// Shown as `BUSY` while connected.
    Busy,
    /// Connected, but every observer sees `OFFLINE` and no event betrays it.
    Invisible,
}

/// A manual status and the instant it clears by itself, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ManualChoice {
    /// What the user chose.
    pub status: ManualStatus,
    /// When the choice clears by itself; `None` keeps it until changed.
    pub until: Option<DateTime<Utc>>,
}

impl ManualChoice {
    /// Whether the choice still holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

/// What a client may ask for in a status change (docs/protocol.md#client-messages): `ONLINE` clears
/// the manual status, the others set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RequestedStatus {
    /// Clear the manual status; idleness decides again.
    Online,
    /// Appear away.
    Away,
    /// Appear busy.
    Busy,
    /// Appear offline while connected.
    Invisible,
}

impl RequestedStatus {
    /// The manual status this request sets, or `None` for `ONLINE`.
    pub fn manual(self) -> Option<ManualStatus> {
        match self {
            RequestedStatus::Online => None,
            RequestedStatus::Away => Some(ManualStatus::Away),
            RequestedStatus::Busy => Some(ManualStatus::Busy),
            RequestedStatus::Invisible => Some(ManualStatus::Invisible),
        }
    }
}

/// A status name that is not one of `ONLINE`, `AWAY`, `BUSY`, `INVISIBLE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}: expected ONLINE, AWAY, BUSY or INVISIBLE")]
pub struct UnknownStatus(pub String);

impl FromStr for RequestedStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ONLINE" => Ok(RequestedStatus::Online),
            "AWAY" => Ok(RequestedStatus::Away),
            "BUSY" => Ok(RequestedStatus::Busy),
            "INVISIBLE" => Ok(RequestedStatus::Invisible),
            other => Err(UnknownStatus(other.chars().take(32).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_use_the_upper_case_wire_names() {
        assert_eq!(
            serde_json::to_string(&Status::Online).unwrap(),
            "\"ONLINE\""
        );
        assert_eq!(
            serde_json::to_string(&Status::Offline).unwrap(),
            "\"OFFLINE\""
        );
        let busy: Status = serde_json::from_str("\"BUSY\"").unwrap();
        assert_eq!(busy, Status::Busy);
        assert!(serde_json::from_str::<Status>("\"online\"").is_err());
    }

    #[test]
    fn requested_statuses_parse_and_reject_unknown_names() {
        assert_eq!("INVISIBLE".parse(), Ok(RequestedStatus::Invisible));
        assert_eq!(RequestedStatus::Online.manual(), None);
        let err = "SLEEPING".parse::<RequestedStatus>().unwrap_err();
        assert!(err.to_string().contains("SLEEPING"));
    }

    #[test]
    fn a_manual_choice_holds_until_its_expiry() {
        let t = DateTime::from_timestamp(1_000, 0).unwrap();
        let choice = ManualChoice {
            status: ManualStatus::Busy,
            until: Some(t),
        };
        assert!(choice.holds_at(t - chrono::TimeDelta::seconds(1)));
        assert!(!choice.holds_at(t));
    }
}
