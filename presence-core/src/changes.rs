//! [`Changes`]: the host's hook on every change of presence this node
//! makes (docs/rules.md#hooks), for webhooks, audit logs and analytics.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::details::Details;
use crate::ids::{ScopeId, UserId};
use crate::status::Status;
use crate::store::Transition;

/// How many changes a [`Changes`] stream holds for a reader that falls
/// behind before it misses some.
pub const CHANGES_CAPACITY: usize = 4096;

/// One change of what observers see of one user, as this node made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
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
    fn of(transition: &Transition) -> Self {
        Self {
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

/// Where the service tells its changes; costs nothing while nobody reads.
pub(crate) struct ChangeFeed(broadcast::Sender<Arc<Change>>);

impl ChangeFeed {
    pub(crate) fn new() -> Self {
        Self(broadcast::channel(CHANGES_CAPACITY).0)
    }

    pub(crate) fn tell(&self, transition: &Transition) {
        if transition.changed() && self.0.receiver_count() > 0 {
            let _ = self.0.send(Arc::new(Change::of(transition)));
        }
    }

    pub(crate) fn subscribe(&self) -> Changes {
        Changes(self.0.subscribe())
    }
}

/// Every change this node makes, from [`crate::Presence::changes`].
///
/// Each change is made by exactly one node of a cluster (the node where
/// the session closed, the status was set, or whose sweep claimed the
/// user), so a change reaches exactly one node's streams: read `changes()`
/// on every node to see each change once. A node's dead sessions are
/// ended by a surviving node, and reported there.
///
/// Delivery is at most once: changes made while no stream existed, or
/// missed by a reader more than [`CHANGES_CAPACITY`] behind (told as
/// [`Missed`]), or not yet read when the process stops, are not told
/// again.
pub struct Changes(broadcast::Receiver<Arc<Change>>);

impl Changes {
    /// The next change; `Err(Missed)` if this reader fell behind; `None`
    /// once the service is gone.
    pub async fn recv(&mut self) -> Option<Result<Arc<Change>, Missed>> {
        match self.0.recv().await {
            Ok(change) => Some(Ok(change)),
            Err(broadcast::error::RecvError::Lagged(count)) => Some(Err(Missed { count })),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("queued", &self.0.len())
            .finish()
    }
}
