//! What a node's durable [`Changes`](crate::Changes) readers still have to
//! tell from the store's outbox: the changes a process of this node left
//! unacknowledged (read again at start), those of a dead process whose
//! sessions this one ended, and this process's own after a reader fell
//! behind.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::changes::{ChangeId, KeptChange};
use crate::clock::Clock;
use crate::ids::{NodeId, NodeName};
use crate::store::{PresenceStore, StoreError};

/// How many kept changes a reader reads from the store at once.
pub(crate) const PAGE: usize = 256;

/// A node whose kept changes are to be told again, up to a cutoff: later
/// ones are this process's own, told as they happen.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Source {
    name: NodeName,
    cutoff: DateTime<Utc>,
}

/// A page of kept changes from one node's outbox.
pub(crate) struct Page {
    pub(crate) name: NodeName,
    pub(crate) changes: Vec<KeptChange>,
}

/// The outboxes this process's readers still have to drain.
pub(crate) struct Backlog {
    store: Arc<dyn PresenceStore>,
    clock: Arc<dyn Clock>,
    node: NodeId,
    timeout: Duration,
    sources: Mutex<VecDeque<Source>>,
    /// Bumped whenever a source is added, to wake idle readers.
    added: watch::Sender<u64>,
    /// Held by the reader draining a page, so two readers of this process
    /// never tell the same kept change.
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
}

impl Backlog {
    pub(crate) fn new(
        store: Arc<dyn PresenceStore>,
        clock: Arc<dyn Clock>,
        node: NodeId,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            node,
            timeout,
            sources: Mutex::default(),
            added: watch::channel(0).0,
            turn: Arc::default(),
        }
    }

    /// This process's node.
    pub(crate) fn node(&self) -> &NodeName {
        &self.node.name
    }

    /// Whether `kept` of node `name` was made by this process: it is told
    /// live too.
    pub(crate) fn is_own(&self, name: &NodeName, kept: &KeptChange) -> bool {
        *name == self.node.name && kept.incarnation == self.node.incarnation
    }

    /// Tells node `name`'s kept changes again, those made until now.
    pub(crate) fn add(&self, name: NodeName) {
        let cutoff = self.clock.now();
        {
            let mut sources = self.sources();
            if let Some(queued) = sources.iter_mut().find(|source| source.name == name) {
                queued.cutoff = queued.cutoff.max(cutoff);
            } else {
                sources.push_back(Source { name, cutoff });
            }
        }
        self.added.send_modify(|generation| *generation += 1);
    }

    /// Whether some outbox is still to be drained.
    pub(crate) fn is_pending(&self) -> bool {
        !self.sources().is_empty()
    }

    /// Wakes when a source is added.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.added.subscribe()
    }

    /// The next page of the first outbox still to drain, its changes up to
    /// the cutoff; `None` when none is left. An outbox with nothing left up
    /// to its cutoff is done.
    pub(crate) async fn next_page(&self) -> Result<Option<Page>, StoreError> {
        loop {
            let Some(source) = self.sources().front().cloned() else {
                return Ok(None);
            };
            let except = self.live_others(&source.name).await?;
            let kept = self
                .timed(self.store.kept_changes(&source.name, &except, PAGE))
                .await?;
            let changes: Vec<KeptChange> = kept
                .into_iter()
                .filter(|kept| kept.change.at <= source.cutoff)
                .collect();
            if !changes.is_empty() {
                return Ok(Some(Page {
                    name: source.name,
                    changes,
                }));
            }
            let mut sources = self.sources();
            if sources.front() == Some(&source) {
                sources.pop_front();
            }
        }
    }

    /// Forgets what readers acknowledged.
    pub(crate) async fn forget(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        self.timed(self.store.forget_changes(name, ids)).await
    }

    /// The processes of node `name` other than this one that still hold a
    /// live lease: they tell their own changes.
    async fn live_others(&self, name: &NodeName) -> Result<Vec<u64>, StoreError> {
        // A store without a cluster feed serves one process: every other
        // incarnation is gone, whatever its lease says.
        if self.store.cluster_feed().is_none() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let leases = self.timed(self.store.leases(name)).await?;
        Ok(leases
            .into_iter()
            .filter(|(incarnation, until)| {
                *until > now && !(*name == self.node.name && *incarnation == self.node.incarnation)
            })
            .map(|(incarnation, _)| incarnation)
            .collect())
    }

    async fn timed<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.store.completes_without_io() {
            return call.await;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    fn sources(&self) -> MutexGuard<'_, VecDeque<Source>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }
}
