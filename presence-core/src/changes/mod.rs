//! [`Changes`]: the host's hook on every change of presence this node
//! makes (docs/rules.md#hooks), for webhooks, audit logs and analytics.
//!
//! - [`Change`]: one change of what observers see of one user.
//! - [`Changes`]: the stream of them; at most once by default, at least
//!   once across restarts with
//!   [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes)
//!   on a store that keeps them ([`kept`]).

pub(crate) mod backlog;
pub(crate) mod kept;
mod stream;

pub use kept::{ChangeId, KeptChange};
pub(crate) use stream::ChangeFeed;
pub use stream::Changes;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::details::Details;
use crate::ids::{ScopeId, UserId};
use crate::status::Status;
use crate::store::Transition;

/// How many changes a [`Changes`] stream holds for a reader that falls
/// behind before it misses some.
pub const CHANGES_CAPACITY: usize = 4096;

/// One change of what observers see of one user, as this node made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Where the store keeps this change until it is acknowledged (with
    /// [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes));
    /// `None` otherwise.
    #[serde(skip)]
    pub id: Option<ChangeId>,
    /// The user.
    pub user: UserId,
    /// The status observers saw before.
    pub from: Status,
    /// The status observers see now.
    pub to: Status,
    /// The version after the change.
    pub version: u64,
    /// `last_seen` as observers may know it.
    pub last_seen: Option<DateTime<Utc>>,
    /// What the user shows beyond the status now.
    pub details: Option<Arc<Details>>,
    /// The scopes the user is seen in.
    pub scopes: Vec<ScopeId>,
    /// When it happened (presence time).
    pub at: DateTime<Utc>,
    /// The change opened the user's first session.
    pub first_session: bool,
    /// The change ended the user's last session.
    pub last_session: bool,
}

impl Change {
    /// What `transition` changed, as the host's hook tells it.
    pub fn of(transition: &Transition) -> Self {
        Self {
            id: transition.kept.clone(),
            user: transition.user.clone(),
            from: transition.from,
            to: transition.to,
            version: transition.version,
            last_seen: transition.last_seen,
            details: transition.details.clone(),
            scopes: transition.scopes.clone(),
            at: transition.at,
            first_session: transition.first_session,
            last_session: transition.last_session,
        }
    }

    /// Whether the user went `OFFLINE` with this change.
    pub fn went_offline(&self) -> bool {
        self.from != Status::Offline && self.to == Status::Offline
    }
}

/// A reader fell behind and `count` changes went past it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{count} presence changes were missed")]
pub struct Missed {
    /// How many.
    pub count: u64,
}
