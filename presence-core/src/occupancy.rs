//! Large scopes as counts (docs/rules.md#large-scopes): a watcher who asks
//! for counts of a scope with more members than a threshold gets an
//! [`Occupancy`] at most once per interval instead of each member's
//! events; the users it names keep their own events.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::UserPresence;
use crate::ids::ScopeId;
use crate::status::Status;

/// How many members of a scope show each status, as one node counted them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occupancy {
    /// The scope.
    pub scope: ScopeId,
    /// Members `ONLINE`.
    pub online: u64,
    /// Members `AWAY`.
    pub away: u64,
    /// Members `BUSY`.
    pub busy: u64,
    /// Grows with each count this node sends for the scope: a count with
    /// a lower `v` than one already shown is stale. (Counted per node: a
    /// watcher compares only the counts of its own connection.)
    pub v: u64,
}

impl Occupancy {
    /// Counts the members not `OFFLINE`.
    pub(crate) fn count(scope: &ScopeId, members: &[UserPresence]) -> Self {
        let mut counts = Self {
            scope: scope.clone(),
            online: 0,
            away: 0,
            busy: 0,
            v: 0,
        };
        for member in members {
            match member.status {
                Status::Online => counts.online += 1,
                Status::Away => counts.away += 1,
                Status::Busy => counts.busy += 1,
                Status::Offline => {}
            }
        }
        counts
    }

    /// Members counted: those not `OFFLINE`.
    pub fn total(&self) -> u64 {
        self.online + self.away + self.busy
    }

    pub(crate) fn same_counts(&self, other: &Occupancy) -> bool {
        (self.online, self.away, self.busy) == (other.online, other.away, other.busy)
    }
}

/// When a scope counts as large, and how often counts go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LargeScopes {
    /// A scope with more members than this (not `OFFLINE`) is large; it
    /// is small again at three quarters of it, so a scope at the edge does
    /// not switch with every join and leave.
    pub threshold: usize,
    /// Counts go out at most once per interval, and only when they changed.
    pub interval: Duration,
}

impl Default for LargeScopes {
    fn default() -> Self {
        Self {
            threshold: 200,
            interval: Duration::from_secs(1),
        }
    }
}

impl LargeScopes {
    /// Whether a scope of `members` is large, given whether it was.
    pub(crate) fn is_large(&self, members: u64, was_large: bool) -> bool {
        let threshold = self.threshold as u64;
        if was_large {
            members > threshold * 3 / 4
        } else {
            members > threshold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_turns_large_above_the_threshold_and_small_well_below_it() {
        let large = LargeScopes {
            threshold: 200,
            interval: Duration::from_secs(1),
        };
        assert!(!large.is_large(200, false));
        assert!(large.is_large(201, false));
        assert!(large.is_large(151, true));
        assert!(!large.is_large(150, true));
    }
}
