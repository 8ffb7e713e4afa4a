//! The cluster feed (see [the store's docs](super#the-cluster-feed)).

use std::sync::Arc;

use async_trait::async_trait;

use crate::event::PresenceEvent;
use crate::ids::{NodeId, NodeName, ScopeId, SessionId};
use crate::session::SessionEnd;
use crate::store::{StoreError, Transition, UserOp};

/// What a feed tells one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedMessage {
    /// A change told in a scope (made by another node).
    Event(PresenceEvent),
    /// Sessions this node holds were ended by another node.
    SessionsEnded {
        /// The sessions.
        sessions: Vec<SessionId>,
        /// Why they ended.
        reason: SessionEnd,
    },
    /// Events of this scope may have been missed (the feed has only just
    /// started listening to it): its watchers re-read their snapshot.
    ScopeLagged(ScopeId),
    /// Messages may have been lost: watchers must re-read their snapshots,
    /// and the node re-registers its live sessions (the store may have lost
    /// them too).
    Resync,
}

/// Where a feed delivers a node's messages. Must not block: it is called
/// with the user's change still in progress, to keep per-user order.
pub trait FeedSink: Send + Sync {
    /// Takes one message.
    fn deliver(&self, message: FeedMessage);
}

/// A store's channel between the nodes that share it.
#[async_trait]
pub trait ClusterFeed: Send + Sync + std::fmt::Debug {
    /// Starts delivering `node`'s messages to `sink`.
    async fn join(&self, node: &NodeId, sink: Arc<dyn FeedSink>) -> Result<(), StoreError>;

    /// Stops delivering to `node` (it is shutting down).
    fn leave(&self, node: &NodeId);

    /// `node` now has local watchers of `scope`: deliver its events there.
    /// Feeds that deliver every event to every node may ignore this.
    fn watch(&self, node: &NodeId, scope: &ScopeId);

    /// `node` has no local watcher of `scope` any more.
    fn unwatch(&self, node: &NodeId, scope: &ScopeId);
}

/// What one transition tells the other nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Broadcast {
    /// One event per scope of the user, if observers must be told.
    pub events: Vec<PresenceEvent>,
    /// The sessions the change ended, grouped by the node holding them.
    pub ended: Vec<(NodeName, Vec<SessionId>)>,
    /// Why they ended.
    pub reason: SessionEnd,
    /// Sessions another node took over, grouped by their previous holder
    /// (told [`SessionEnd::Replaced`]).
    pub replaced: Vec<(NodeName, Vec<SessionId>)>,
}

impl Broadcast {
    /// What `transition`, the result of `op`, tells the cluster.
    pub fn of(transition: &Transition, op: &UserOp) -> Self {
        let events = PresenceEvent::for_transition(transition).collect();
        // A session that lapsed unswept and is reopened under its id by
        // this very change lives on: its holder is not told it ended.
        let reopened = match op {
            UserOp::Open(new)
            | UserOp::Restore {
                session: new,
                last_heartbeat: _,
            } => Some(&new.id),
            _ => None,
        };
        let ended = by_node(
            transition
                .ended_sessions
                .iter()
                .zip(&transition.ended_nodes)
                .filter(|(session, _)| Some(*session) != reopened),
        );
        let replaced = by_node(transition.moved_sessions.iter().map(|(s, n)| (s, n)));
        Self {
            events,
            ended,
            reason: SessionEnd::for_op(op),
            replaced,
        }
    }

    /// Whether there is nothing to tell.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.ended.is_empty() && self.replaced.is_empty()
    }
}

fn by_node<'a>(
    sessions: impl Iterator<Item = (&'a SessionId, &'a NodeName)>,
) -> Vec<(NodeName, Vec<SessionId>)> {
    let mut grouped: Vec<(NodeName, Vec<SessionId>)> = Vec::new();
    for (session, node) in sessions {
        match grouped.iter_mut().find(|(name, _)| name == node) {
            Some((_, sessions)) => sessions.push(session.clone()),
            None => grouped.push((node.clone(), vec![session.clone()])),
        }
    }
    grouped
}
