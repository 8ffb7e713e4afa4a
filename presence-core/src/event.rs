//! What watchers and queries receive: presence events, users' presence and
//! scope snapshots.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, ScopeId, UserId};
use crate::status::Status;
use crate::store::{Transition, UserRecord};

/// One change of one user's effective status, told to one scope (docs/rules.md#events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    /// The scope this event is told in.
    pub scope: ScopeId,
    /// The user whose status changed.
    pub user_id: UserId,
    /// The new status.
    pub status: Status,
    /// The user's newest activity or session end.
    pub last_seen: Option<DateTime<Utc>>,
    /// The new version: one more than the one before.
    pub v: u64,
    /// When the change happened.
    pub at: DateTime<Utc>,
}

impl PresenceEvent {
    /// The events of a transition: a change of status is told in every
    /// scope of the user, a scope joined is told the current status, a
    /// scope left is told `OFFLINE`; nothing when observers see no change.
    pub fn for_transition(transition: &Transition) -> impl Iterator<Item = PresenceEvent> + '_ {
        let told_status: &[ScopeId] = if transition.status_changed() {
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
    /// Every member who is not `OFFLINE`, and every user asked for by name.
    pub users: Vec<UserPresence>,
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
    /// The version of `status`; events with a lower `v` are stale.
    pub v: u64,
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
        }
    }

    /// How a user nobody has seen yet looks.
    pub fn unknown(user_id: UserId) -> Self {
        Self::of(user_id, &UserRecord::default())
    }
}
