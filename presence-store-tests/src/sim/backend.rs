//! What the simulation needs of a store: a deployment it can hand to each
//! process, and the faults of that store.

use std::sync::Arc;

use async_trait::async_trait;
use presence_core::store::PresenceStore;
use presence_core::{ManualClock, NodeId};

use super::steps::Faults;

/// A kind of store the simulation runs on.
#[async_trait]
pub trait Backend: Send + Sync {
    /// A short name for reports (`memory`, `redis`, `postgres`).
    fn name(&self) -> &'static str;
    /// The faults this store can take.
    fn faults(&self) -> Faults;
    /// A fresh, empty deployment for one run, whose store keeps to `truth`
    /// as its clock where it can (a remote store under test keeps its own,
    /// and the run's processes then start on it without skew).
    async fn deploy(&self, truth: Arc<ManualClock>) -> Box<dyn Deployment>;
}

/// One run's store, shared by every process of the run.
#[async_trait]
pub trait Deployment: Send + Sync {
    /// The store a new process uses (the memory store: the one shared
    /// store; a remote store: a new connection to the same data).
    async fn store_for_process(&self) -> Arc<dyn PresenceStore>;
    /// The store forgets everything, as a server restarted empty would
    /// (its feed connections drop and come back).
    async fn lose_data(&self);
    /// The feed connection of process `node` drops.
    async fn drop_feed(&self, node: &NodeId);
    /// The feed connection of process `node` comes back (a no-op for a
    /// feed that reconnects by itself).
    async fn restore_feed(&self, node: &NodeId);
    /// Whether a dropped feed reconnects by itself (at once, as far as the
    /// simulation's clock is concerned).
    fn feed_reconnects_by_itself(&self) -> bool;
    /// Whether the store's clock is the run's true time (then processes
    /// keep to it from their own, skewed clocks, as in production); a real
    /// server keeps real time, so its processes run on the true time
    /// directly, and clock faults are not injected.
    fn keeps_true_time(&self) -> bool;
    /// Waits until what the processes did has landed: feed deliveries,
    /// spawned work.
    async fn settle(&self);
    /// Writes every process's buffered heartbeats now.
    async fn flush(&self);
    /// Removes what the run left (keys, schemas).
    async fn tear_down(&self);
}
