//! The stream of changes a node's host reads, and where the service tells
//! them.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, broadcast, watch};

use crate::changes::backlog::Backlog;
use crate::changes::{CHANGES_CAPACITY, Change, ChangeId, Missed};
use crate::ids::NodeName;
use crate::store::Transition;

/// Acknowledgements a reader gathers before it writes them to the store
/// (it also writes them whenever it would wait).
const ACK_BATCH: usize = 256;

/// Acknowledgements kept while the store cannot take them; beyond this the
/// oldest are dropped (those changes are told again after a restart).
const MAX_UNWRITTEN_ACKS: usize = 16 * 1024;

/// How long a reader waits before trying a store that failed again.
const RETRY: Duration = Duration::from_secs(1);

/// Where the service tells its changes; costs nothing while nobody reads.
pub(crate) struct ChangeFeed {
    sender: broadcast::Sender<Arc<Change>>,
    backlog: Option<Arc<Backlog>>,
}

impl ChangeFeed {
    /// Changes told at most once.
    pub(crate) fn new() -> Self {
        Self {
            sender: broadcast::channel(CHANGES_CAPACITY).0,
            backlog: None,
        }
    }

    /// Changes the store keeps until readers acknowledge them.
    pub(crate) fn durable(backlog: Backlog) -> Self {
        Self {
            backlog: Some(Arc::new(backlog)),
            ..Self::new()
        }
    }

    /// Whether the store keeps each change for this node's readers.
    pub(crate) fn is_durable(&self) -> bool {
        self.backlog.is_some()
    }

    pub(crate) fn tell(&self, transition: &Transition) {
        if transition.changed() && self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Arc::new(Change::of(transition)));
        }
    }

    /// Tells node `name`'s kept changes again (a process of it left them).
    pub(crate) fn tell_again(&self, name: NodeName) {
        if let Some(backlog) = &self.backlog {
            backlog.add(name);
        }
    }

    pub(crate) fn subscribe(&self) -> Changes {
        if let Some(backlog) = &self.backlog {
            // Changes made while no reader listened were kept, not told.
            backlog.add(backlog.node().clone());
        }
        Changes {
            live: self.sender.subscribe(),
            durable: self.backlog.as_ref().map(|backlog| Durable {
                added: backlog.watch(),
                backlog: backlog.clone(),
                page: Vec::new().into_iter(),
                turn: None,
                handed: None,
                acks: Vec::new(),
                retry_at: None,
                told_early: ToldEarly::default(),
            }),
        }
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
/// By default delivery is at most once: changes made while no stream
/// existed, or missed by a reader more than [`CHANGES_CAPACITY`] behind
/// (told as [`Missed`]), or not yet read when the process stops, are not
/// told again.
///
/// With [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes),
/// delivery is at least once: the store keeps each change, in the same
/// atomic step that makes it, until a reader acknowledges it, and asking
/// for the next change acknowledges the one before. A new reader is told
/// first what this node kept and nobody acknowledged (changes made while
/// no reader listened included). What a process leaves
/// unacknowledged (it crashed, or stopped before its reader caught up) is
/// told by the next process of the same node name when it starts, or, if
/// none comes, by the process that ends the dead one's sessions; a reader
/// that falls behind reads what it missed from the store instead of
/// getting [`Missed`]. A change may then be told twice: deduplicate on
/// ([`Change::user`], [`Change::version`]) where that matters.
pub struct Changes {
    live: broadcast::Receiver<Arc<Change>>,
    durable: Option<Durable>,
}

/// A durable reader's share of the work: the page of kept changes it is
/// telling and what it has to acknowledge.
struct Durable {
    backlog: Arc<Backlog>,
    added: watch::Receiver<u64>,
    page: std::vec::IntoIter<(NodeName, Arc<Change>)>,
    /// Held while this reader tells a page of kept changes.
    turn: Option<OwnedMutexGuard<()>>,
    /// The change handed out last: acknowledged when the next is asked for.
    handed: Option<(NodeName, ChangeId)>,
    acks: Vec<(NodeName, ChangeId)>,
    /// The store failed: leave it alone until then.
    retry_at: Option<tokio::time::Instant>,
    /// This process's own changes told from the store, so their live copy
    /// is passed by (oldest first, to bound it).
    told_early: ToldEarly,
}

/// This process's changes a reader told from the store before their live
/// copy arrived.
#[derive(Default)]
struct ToldEarly {
    ids: HashSet<ChangeId>,
    order: VecDeque<ChangeId>,
}

impl ToldEarly {
    fn insert(&mut self, id: ChangeId) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        // A live copy lost to lag never comes: forget the oldest.
        while self.order.len() > CHANGES_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }

    /// Whether `change` was told already (and forgets it).
    fn take(&mut self, change: &Change) -> bool {
        !self.ids.is_empty() && change.id.as_ref().is_some_and(|id| self.ids.remove(id))
    }
}

impl Changes {
    /// The next change; `Err(Missed)` if this reader fell behind (never
    /// with durable changes); `None` once the service is gone.
    ///
    /// With durable changes, calling it again acknowledges the change it
    /// returned last.
    pub async fn recv(&mut self) -> Option<Result<Arc<Change>, Missed>> {
        match &mut self.durable {
            None => match self.live.recv().await {
                Ok(change) => Some(Ok(change)),
                Err(broadcast::error::RecvError::Lagged(count)) => Some(Err(Missed { count })),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            Some(durable) => durable.recv(&mut self.live).await.map(Ok),
        }
    }

    /// With durable changes, writes this reader's acknowledgements to the
    /// store now (they are otherwise written in batches, and whenever the
    /// reader waits), the last change returned included. A host calls it
    /// before it stops reading; without it, what was not written is told
    /// again after a restart.
    pub async fn acknowledge(&mut self) {
        if let Some(durable) = &mut self.durable {
            durable.take_handed();
            durable.write_acks().await;
        }
    }
}

impl Durable {
    async fn recv(&mut self, live: &mut broadcast::Receiver<Arc<Change>>) -> Option<Arc<Change>> {
        self.take_handed();
        loop {
            if let Some((name, change)) = self.page.next() {
                return Some(self.hand(name, change));
            }
            if self.turn.is_some() {
                // Written before the next reader may read the outbox again.
                if !self.write_acks().await {
                    self.wait_for_retry().await;
                    continue;
                }
                self.turn = None;
            }
            // Kept changes are older than live ones: told first.
            if self.backlog.is_pending() && self.may_try() && self.read_page().await {
                continue;
            }
            match live.try_recv() {
                Ok(change) if self.told_early.take(&change) => continue,
                Ok(change) => {
                    if self.acks.len() >= ACK_BATCH {
                        self.write_acks().await;
                    }
                    let name = self.backlog.node().clone();
                    return Some(self.hand(name, change));
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    // What went past is in the store: read it from there.
                    self.backlog.add(self.backlog.node().clone());
                    continue;
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    self.write_acks().await;
                    return None;
                }
                Err(broadcast::error::TryRecvError::Empty) => {}
            }
            // Nothing to tell now: write what was acknowledged, then wait.
            self.write_acks().await;
            let retry = self.backlog.is_pending() || !self.acks.is_empty();
            tokio::select! {
                received = live.recv() => match received {
                    Ok(change) if self.told_early.take(&change) => {}
                    Ok(change) => {
                        let name = self.backlog.node().clone();
                        return Some(self.hand(name, change));
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.backlog.add(self.backlog.node().clone());
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.write_acks().await;
                        return None;
                    }
                },
                _ = self.added.changed() => {}
                () = tokio::time::sleep(RETRY), if retry => {}
            }
        }
    }

    /// Takes this process's turn at the outboxes and reads a page; whether
    /// it got one.
    async fn read_page(&mut self) -> bool {
        let Ok(turn) = self.backlog.turn.clone().try_lock_owned() else {
            // Another reader of this process is telling a page.
            return false;
        };
        if !self.write_acks().await {
            return false;
        }
        match self.backlog.next_page().await {
            Ok(Some(page)) => {
                let name = page.name;
                let mut changes = Vec::with_capacity(page.changes.len());
                for kept in page.changes {
                    if self.backlog.is_own(&name, &kept)
                        && let Some(id) = &kept.change.id
                    {
                        self.told_early.insert(id.clone());
                    }
                    changes.push((name.clone(), Arc::new(kept.change)));
                }
                self.page = changes.into_iter();
                self.turn = Some(turn);
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "reading kept presence changes failed; trying again");
                self.failed();
                false
            }
        }
    }

    fn hand(&mut self, name: NodeName, change: Arc<Change>) -> Arc<Change> {
        self.handed = change.id.clone().map(|id| (name, id));
        change
    }

    fn take_handed(&mut self) {
        if let Some(handed) = self.handed.take() {
            self.acks.push(handed);
        }
    }

    /// Writes the acknowledgements gathered; whether they are all written.
    async fn write_acks(&mut self) -> bool {
        if self.acks.is_empty() {
            return true;
        }
        if !self.may_try() {
            return false;
        }
        self.acks.sort_unstable();
        self.acks.dedup();
        while let Some((name, _)) = self.acks.first() {
            let name = name.clone();
            let split = self.acks.partition_point(|(n, _)| *n == name);
            let ids: Vec<ChangeId> = self.acks[..split]
                .iter()
                .map(|(_, id)| id.clone())
                .collect();
            if let Err(error) = self.backlog.forget(&name, &ids).await {
                tracing::warn!(%error, "acknowledging presence changes failed; trying again");
                self.failed();
                if self.acks.len() > MAX_UNWRITTEN_ACKS {
                    let over = self.acks.len() - MAX_UNWRITTEN_ACKS;
                    self.acks.drain(..over);
                }
                return false;
            }
            self.acks.drain(..split);
        }
        true
    }

    fn may_try(&self) -> bool {
        self.retry_at
            .is_none_or(|at| tokio::time::Instant::now() >= at)
    }

    fn failed(&mut self) {
        self.retry_at = Some(tokio::time::Instant::now() + RETRY);
    }

    async fn wait_for_retry(&mut self) {
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at).await;
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Best effort: what is not written is told again after a restart.
        // The change handed out last was not acknowledged: it stays kept.
        if self.acks.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backlog = self.backlog.clone();
        let mut acks = std::mem::take(&mut self.acks);
        runtime.spawn(async move {
            acks.sort_unstable();
            for (name, ids) in group(acks) {
                if let Err(error) = backlog.forget(&name, &ids).await {
                    tracing::warn!(%error, "acknowledging presence changes failed");
                }
            }
        });
    }
}

/// Acknowledgements by node, from a sorted list.
fn group(acks: Vec<(NodeName, ChangeId)>) -> Vec<(NodeName, Vec<ChangeId>)> {
    let mut groups: Vec<(NodeName, Vec<ChangeId>)> = Vec::new();
    for (name, id) in acks {
        match groups.last_mut() {
            Some((last, ids)) if *last == name => ids.push(id),
            _ => groups.push((name, vec![id])),
        }
    }
    groups
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("queued", &self.live.len())
            .field("durable", &self.durable.is_some())
            .finish()
    }
}
