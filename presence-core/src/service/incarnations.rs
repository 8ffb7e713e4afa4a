//! The processes of the cluster: each holds a lease in the store while it
//! runs. The lease vouches for the sessions the process holds
//! ([`Liveness::HeldByNode`]): the store never lapses them by time, so an
//! idle cluster writes one lease per process per interval rather than a
//! heartbeat per session. A process of the same node started beside
//! another (a rolling deploy on one host) leaves its sessions alone, while
//! one started after it died clears what it left.
//!
//! A process renews its lease (valid for [`PresenceBuilder::node_lease`],
//! 15 s by default) every third of it as it sweeps, and ends it when it
//! shuts down, after ending its own sessions (and only those: the sessions
//! of a new process of the same node stay). A starting process ends the
//! sessions of every other incarnation of its node that holds no live
//! lease. As they sweep, all processes watch every lease: once one runs out
//! (that process died, or could not reach the store for a whole lease), any
//! of them ends that incarnation's sessions, as of then, and forgets the
//! lease. So a dead process leaves no ghost for longer than its lease and
//! a third. On a store without a cluster feed (one process only, as
//! SQLite), every other incarnation is gone and is cleared at start.
//!
//! Leases are judged by presence time, which every process of a cluster
//! keeps to the store's clock (see [presence time](crate::Clock#presence-time)).
//!
//! Renewing the lease also reads the store's epoch: a store that lost its
//! data without dropping the feed is noticed within a third of a lease, and
//! this process registers its sessions again.
//!
//! [`PresenceBuilder::node_lease`]: crate::PresenceBuilder::node_lease
//! [`Liveness::HeldByNode`]: crate::store::Liveness::HeldByNode

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::ids::NodeName;
use crate::service::Presence;
use crate::store::{StoreError, UserOp, machine::later};

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
        self.clear_dead_processes(now).await?;
        self.clear_dead_siblings(now).await?;
        // What earlier processes of this node kept and nobody acknowledged
        // is told first.
        self.inner.changes.tell_again(self.inner.node.name.clone());
        Ok(())
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
        self.check_epoch().await;
        if let Err(error) = self.clear_dead_processes(now).await {
            tracing::warn!(node = %self.inner.node, %error, "clearing a dead process's sessions failed");
        }
    }

    /// Ends the sessions of every process whose lease ran out by `now`, of
    /// any node, as of the instant it ran out, and forgets the lease. Several processes may do this for
    /// one dead process at once: ending an incarnation's sessions is
    /// idempotent.
    async fn clear_dead_processes(&self, now: DateTime<Utc>) -> Result<(), Error> {
        let expired = self
            .timed("expired_leases", self.inner.store.expired_leases(now))
            .await?;
        for (dead, until) in expired {
            if dead == self.inner.node {
                // Renewed a moment ago: another process's judgment.
                continue;
            }
            // What it kept and nobody acknowledged is told here, before
            // what ending its sessions changes.
            self.inner.changes.tell_again(dead.name.clone());
            let op = UserOp::EndIncarnation {
                node: dead.clone(),
                at: Some(until),
            };
            let users = self.end_sessions_on(&dead.name, op).await?;
            if users > 0 {
                tracing::info!(node = %dead, users, "ended the sessions of a process whose lease ran out");
            }
            self.timed("end_lease", self.inner.store.end_lease(&dead))
                .await?;
        }
        Ok(())
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

    /// At start: reads the leases of this node's processes and ends the
    /// sessions of every other incarnation without a live one (one may have
    /// died before leases existed), then forgets the dead ones' leases.
    async fn clear_dead_siblings(&self, now: DateTime<Utc>) -> Result<(), Error> {
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
        let alive: Vec<u64> = alive
            .into_iter()
            .map(|(incarnation, _)| incarnation)
            .collect();
        let clear = UserOp::ClearNode {
            node: me.clone(),
            alive,
        };
        let cleared = self.end_sessions_on(&me.name, clear).await?;
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
            at: None,
        };
        if let Err(error) = self.end_sessions_on(&self.inner.node.name, op).await {
            tracing::warn!(%error, "could not end this process's sessions at shutdown; they will lapse");
        }
        let ended = self
            .timed("end_lease", self.inner.store.end_lease(&self.inner.node))
            .await;
        if let Err(error) = ended {
            tracing::warn!(%error, "could not end this process's lease; it runs out by itself");
        }
    }

    /// Applies `op` to every user holding sessions on node `name`; how
    /// many users it was applied to. One unreadable record does not stop
    /// the others.
    async fn end_sessions_on(&self, name: &NodeName, op: UserOp) -> Result<usize, Error> {
        let users = self
            .timed("users_on_node", self.inner.store.users_on_node(name))
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
