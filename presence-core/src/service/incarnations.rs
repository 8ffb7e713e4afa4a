//! The processes of one node: each holds a lease in the store while it
//! runs, so that a process of the same node started beside it (a rolling
//! deploy on one host) leaves its sessions alone, while one started after
//! it died clears what it left.
//!
//! A process renews its lease (valid for [`PresenceBuilder::node_lease`],
//! 15 s by default) every third of it as it sweeps, and ends it when it
//! shuts down, after ending its own sessions (and only those: the sessions
//! of a new process of the same node stay). A starting process ends the
//! sessions of every other incarnation of its node that holds no live
//! lease, and watches the leases of the others: once one runs out (that
//! process died), it ends that incarnation's sessions too. So a node that
//! dies and comes back leaves no ghost for longer than its lease. On a
//! store without a cluster feed (one process only, as SQLite), every other
//! incarnation is gone and is cleared at start.
//!
//! [`PresenceBuilder::node_lease`]: crate::PresenceBuilder::node_lease

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::machine::later;
use crate::record::UserOp;
use crate::service::Presence;
use crate::store::StoreError;

/// When this process last renewed its lease.
#[derive(Debug, Default)]
pub(crate) struct LeaseState {
    renewed_at: Option<DateTime<Utc>>,
}

impl Presence {
    /// At start: takes this process's lease, then ends what dead
    /// incarnations of this node left.
    pub(super) async fn take_lease(&self) -> Result<(), Error> {
        let now = self.inner.clock.now();
        self.renew_lease(now).await?;
        self.clear_dead_siblings(now, true).await
    }

    /// As the sweeper runs: renews the lease every third of its length, and
    /// ends the sessions of a sibling process whose lease ran out. A failure
    /// is logged; the next sweep tries again.
    pub(super) async fn tend_lease(&self, now: DateTime<Utc>) {
        let due = {
            let state = self.lease_state();
            state
                .renewed_at
                .is_none_or(|at| later(at, self.inner.lease / 3) <= now)
        };
        if !due {
            return;
        }
        if let Err(error) = self.renew_lease(now).await {
            tracing::warn!(node = %self.inner.node, %error, "renewing the node's lease failed");
            return;
        }
        if let Err(error) = self.clear_dead_siblings(now, false).await {
            tracing::warn!(node = %self.inner.node, %error, "clearing a dead process's sessions failed");
        }
    }

    /// Renews the lease now (the store lost it with its data).
    pub(super) async fn retake_lease(&self) {
        let now = self.inner.clock.now();
        if let Err(error) = self.renew_lease(now).await {
            tracing::warn!(node = %self.inner.node, %error, "taking the node's lease again failed");
        }
    }

    fn lease_state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.inner
            .lease_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    async fn renew_lease(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        let until = later(now, self.inner.lease);
        self.timed(
            "renew_lease",
            self.inner.store.renew_lease(&self.inner.node, until),
        )
        .await?;
        self.lease_state().renewed_at = Some(now);
        Ok(())
    }

    /// Reads the leases of this node's processes and ends the sessions of
    /// every other incarnation without a live one: at start, any such
    /// incarnation (one may have died before leases existed); later, only
    /// when a lease ran out (its process died; nobody has cleared it yet).
    /// The dead incarnations' leases are then forgotten.
    async fn clear_dead_siblings(&self, now: DateTime<Utc>, starting: bool) -> Result<(), Error> {
        let me = &self.inner.node;
        let leases = self
            .timed("leases", self.inner.store.leases(&me.name))
            .await?;
        // A store without a cluster feed serves one process: any other
        // incarnation is gone, whatever its lease says.
        let shared = self.inner.store.cluster_feed().is_some();
        let (alive, dead): (Vec<_>, Vec<_>) = leases
            .into_iter()
            .filter(|(incarnation, _)| *incarnation != me.incarnation)
            .partition(|(_, until)| shared && *until > now);
        if !starting && dead.is_empty() {
            return Ok(());
        }
        let alive: Vec<u64> = alive
            .into_iter()
            .map(|(incarnation, _)| incarnation)
            .collect();
        let cleared = self
            .end_sessions_on_node(UserOp::ClearNode {
                node: me.clone(),
                alive,
            })
            .await?;
        if cleared > 0 {
            tracing::info!(node = %me, users = cleared, "ended the sessions dead processes of this node left");
        }
        for (incarnation, _) in dead {
            let mut dead_node = me.clone();
            dead_node.incarnation = incarnation;
            self.timed("end_lease", self.inner.store.end_lease(&dead_node))
                .await?;
        }
        Ok(())
    }

    /// At shutdown: ends this process's own sessions (their users linger,
    /// so clients that reconnect elsewhere cause no flicker) and its lease.
    pub(super) async fn end_own_sessions(&self) {
        let op = UserOp::EndIncarnation {
            node: self.inner.node.clone(),
        };
        if let Err(error) = self.end_sessions_on_node(op).await {
            tracing::warn!(%error, "could not end this process's sessions at shutdown; they will lapse");
        }
        let ended = self
            .timed("end_lease", self.inner.store.end_lease(&self.inner.node))
            .await;
        if let Err(error) = ended {
            tracing::warn!(%error, "could not end this process's lease; it runs out by itself");
        }
    }

    /// Applies `op` to every user holding sessions on this node's name;
    /// how many users it was applied to. One unreadable record does not
    /// stop the others (its sessions lapse by themselves).
    async fn end_sessions_on_node(&self, op: UserOp) -> Result<usize, Error> {
        let users = self
            .timed(
                "users_on_node",
                self.inner.store.users_on_node(&self.inner.node.name),
            )
            .await?;
        for user in &users {
            match self.change_unchecked(user, op.clone()).await {
                Ok(_) => {}
                Err(Error::Store(
                    error @ (StoreError::Unavailable(_) | StoreError::Timeout(_)),
                )) => return Err(Error::Store(error)),
                Err(error) => {
                    tracing::warn!(%user, %error, "ending a node's sessions failed for one user")
                }
            }
        }
        Ok(users.len())
    }
}
