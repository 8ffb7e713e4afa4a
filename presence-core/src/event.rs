//! What watchers and queries receive: presence events, users' presence and
//! scope snapshots.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::details::Details;
use crate::ids::{Epoch, ScopeId, UserId};
use crate::occupancy::Occupancy;
use crate::status::Status;
use crate::store::{Transition, UserRecord};

/// One change of what observers see of one user, told to one scope
/// (docs/rules.md#events): the user's whole presence after it, not a diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The scope this event is told in.
    pub scope: ScopeId,
    /// The user whose presence changed.
    pub user_id: UserId,
    /// The status now.
    pub status: Status,
    /// The user's newest activity or session end (none if hidden).
    pub last_seen: Option<DateTime<Utc>>,
    /// The new version: one more than the one before.
    pub v: u64,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// What the user shows beyond the status, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Arc<Details>>,
}

impl PresenceEvent {
    /// The events of a transition: a change of status or details is told
    /// in every scope of the user, a scope joined is told the current
    /// presence, a scope left is told `OFFLINE`; nothing when observers see
    /// no change.
    pub fn for_transition(transition: &Transition) -> impl Iterator<Item = PresenceEvent> + '_ {
        let told_status: &[ScopeId] = if transition.status_changed() || transition.updated {
            &transition.scopes
        } else {
            &transition.joined_scopes
        };
        let event = move |scope: &ScopeId, status: Status| PresenceEvent {
            scope: scope.clone(),
            user_id: transition.user.clone(),
            status,
            last_seen: transition.last_seen,
            v: transition.version,
            at: transition.at,
            details: if status == Status::Offline {
                None
            } else {
                transition.details.clone()
            },
        };
        told_status
            .iter()
            .map(move |scope| event(scope, transition.to))
            .chain(
                transition
                    .left_scopes
                    .iter()
                    .map(move |scope| event(scope, Status::Offline)),
            )
    }
}

/// The users of one scope as observers see them at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The scope.
    pub scope: ScopeId,
    /// Every member who is not `OFFLINE`, and every user asked for by name;
    /// only the named users when the scope is shown as counts.
    pub users: Vec<UserPresence>,
    /// The scope's counts, when it is large and watched as counts
    /// ([`crate::Presence::watch_counts`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupancy: Option<Occupancy>,
    /// The store's epoch: versions of another epoch are not comparable with
    /// these (see [`Epoch`]).
    pub epoch: Epoch,
}

impl Snapshot {
    /// The entry of one user, if the snapshot lists them.
    pub fn user(&self, user: &UserId) -> Option<&UserPresence> {
        self.users.iter().find(|entry| entry.user_id == *user)
    }
}

/// A user's presence as observers see it: the unit of snapshots and
/// queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    /// The user.
    pub user_id: UserId,
    /// Their effective status.
    pub status: Status,
    /// Their newest activity or session end, as far as observers may know.
    pub last_seen: Option<DateTime<Utc>>,
    /// The version of what observers see; events with a lower `v` are
    /// stale.
    pub v: u64,
    /// What the user shows beyond the status, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Arc<Details>>,
}

impl UserPresence {
    /// What observers may see of `record`: its shown status and version, and
    /// `last_seen` frozen while the user shows `OFFLINE` (so an invisible
    /// user's activity never leaks).
    pub fn of(user_id: UserId, record: &UserRecord) -> Self {
        Self {
            user_id,
            status: record.shown.status,
            last_seen: record.observed_last_seen(),
            v: record.shown.version,
            details: record.shown.details.clone(),
        }
    }

    /// How a user nobody has seen yet looks.
    pub fn unknown(user_id: UserId) -> Self {
        Self::of(user_id, &UserRecord::default())
    }
}
