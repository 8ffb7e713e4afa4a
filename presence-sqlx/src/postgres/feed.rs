//! The cluster feed on PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! A change's notifications are sent by its own transaction
//! (`pg_notify`), so PostgreSQL delivers them at commit, in commit order:
//! each user's changes arrive in the order they happened, and a change
//! that rolled back tells nothing.
//!
//! Each node that joins gets a listener of its own: one connection, outside
//! the pool, listening to the store's event channel and to the node's
//! ended-sessions channel. `join` returns once both `LISTEN`s took effect,
//! so a service that has started hears every change committed after. The
//! listener delivers an event to its node when the node watches the
//! event's scope and did not make the change itself. When the connection
//! drops, the listener reconnects (with backoff) and tells its node to
//! resync: watchers re-read their snapshots, and the node registers its
//! live sessions again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use presence_core::store::kit::{EndedMessage, LocalSessions};
use presence_core::store::{ClusterFeed, FeedMessage, FeedSink, StoreError};
use presence_core::{NodeId, NodeName, ScopeId};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::task::JoinHandle;

use super::channels::{Channels, EventsMessage};
use crate::error::store_error;

/// The longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The feed of one store.
pub(crate) struct PgFeed {
    options: PgConnectOptions,
    acquire_timeout: Duration,
    channels: Channels,
    local: Arc<LocalSessions>,
    state: Arc<Mutex<State>>,
}

/// The nodes of this process that joined, and what they watch.
#[derive(Default)]
struct State {
    nodes: Vec<Joined>,
    /// scope → the nodes of this process watching it
    watching: HashMap<ScopeId, Vec<NodeName>>,
}

struct Joined {
    node: NodeId,
    sink: Arc<dyn FeedSink>,
    listener: JoinHandle<()>,
}

impl std::fmt::Debug for PgFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgFeed")
            .field("events", &self.channels.events())
            .finish_non_exhaustive()
    }
}

impl PgFeed {
    pub(crate) fn new(
        options: PgConnectOptions,
        acquire_timeout: Duration,
        channels: Channels,
        local: Arc<LocalSessions>,
    ) -> Self {
        Self {
            options,
            acquire_timeout,
            channels,
            local,
            state: Arc::default(),
        }
    }

    /// Tells every node of this process to resync (the store found that the
    /// database lost its data, though no connection dropped).
    pub(crate) fn resync(&self) {
        let sinks: Vec<Arc<dyn FeedSink>> = self
            .state()
            .nodes
            .iter()
            .map(|joined| joined.sink.clone())
            .collect();
        for sink in sinks {
            sink.deliver(FeedMessage::Resync);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PgFeed {
    fn drop(&mut self) {
        for joined in &self.state().nodes {
            joined.listener.abort();
        }
    }
}

#[async_trait]
impl ClusterFeed for PgFeed {
    async fn join(&self, node: &NodeId, sink: Arc<dyn FeedSink>) -> Result<(), StoreError> {
        let sink_for_resync = sink.clone();
        let listening = Listening {
            options: self.options.clone(),
            acquire_timeout: self.acquire_timeout,
            channels: vec![
                self.channels.events().to_owned(),
                self.channels.ended(&node.name),
            ],
            events_channel: self.channels.events().to_owned(),
            node: node.name.clone(),
            node_id: node.to_string(),
            sink,
            local: self.local.clone(),
            state: Arc::downgrade(&self.state),
        };
        let listener = listening
            .connect()
            .await
            .map_err(|e| store_error(e, self.acquire_timeout))?;
        let task = tokio::spawn(listening.run(listener));
        let mut state = self.state();
        state.nodes.retain(|joined| {
            let replaced = joined.node == *node;
            if replaced {
                joined.listener.abort();
            }
            !replaced
        });
        state.nodes.push(Joined {
            node: node.clone(),
            sink: sink_for_resync,
            listener: task,
        });
        Ok(())
    }

    fn leave(&self, node: &NodeId) {
        let mut state = self.state();
        state.nodes.retain(|joined| {
            let leaving = joined.node == *node;
            if leaving {
                joined.listener.abort();
            }
            !leaving
        });
        let still_joined = state
            .nodes
            .iter()
            .any(|joined| joined.node.name == node.name);
        if !still_joined {
            for nodes in state.watching.values_mut() {
                nodes.retain(|name| *name != node.name);
            }
            state.watching.retain(|_, nodes| !nodes.is_empty());
        }
    }

    // The listener already hears every event of the store: watching only
    // decides which of them reach the node, so it takes effect at once.
    fn watch(&self, node: &NodeId, scope: &ScopeId) {
        let mut state = self.state();
        let nodes = state.watching.entry(scope.clone()).or_default();
        if !nodes.contains(&node.name) {
            nodes.push(node.name.clone());
        }
    }

    fn unwatch(&self, node: &NodeId, scope: &ScopeId) {
        let mut state = self.state();
        if let Some(nodes) = state.watching.get_mut(scope) {
            nodes.retain(|name| *name != node.name);
            if nodes.is_empty() {
                state.watching.remove(scope);
            }
        }
    }
}

/// One node's listener task.
struct Listening {
    options: PgConnectOptions,
    acquire_timeout: Duration,
    channels: Vec<String>,
    events_channel: String,
    node: NodeName,
    /// This process, as ended-sessions messages name their origin.
    node_id: String,
    sink: Arc<dyn FeedSink>,
    local: Arc<LocalSessions>,
    state: std::sync::Weak<Mutex<State>>,
}

impl Listening {
    /// A fresh connection listening to the node's channels.
    async fn connect(&self) -> Result<PgListener, sqlx::Error> {
        // A pool of its own, so the listener never takes a connection from
        // the store's pool, and a broken connection is never reused.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(self.acquire_timeout)
            .connect_lazy_with(self.options.clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        listener
            .listen_all(self.channels.iter().map(String::as_str))
            .await?;
        Ok(listener)
    }

    async fn run(self, mut listener: PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    self.dispatch(notification.channel(), notification.payload());
                }
                Ok(None) => {
                    tracing::warn!(node = %self.node, "presence feed: connection lost; reconnecting");
                    listener = self.reconnect().await;
                }
                Err(error) => {
                    tracing::warn!(node = %self.node, %error, "presence feed: listener failed; reconnecting");
                    listener = self.reconnect().await;
                }
            }
        }
    }

    /// Connects again, however long it takes, then tells the node that
    /// notifications may have been lost meanwhile.
    async fn reconnect(&self) -> PgListener {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.connect().await {
                Ok(listener) => {
                    tracing::info!(node = %self.node, "presence feed reconnected; resyncing");
                    self.sink.deliver(FeedMessage::Resync);
                    return listener;
                }
                Err(error) => {
                    tracing::debug!(node = %self.node, %error, "presence feed: database unreachable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn dispatch(&self, channel: &str, payload: &str) {
        if channel == self.events_channel {
            let Ok(message) = serde_json::from_str::<EventsMessage>(payload) else {
                tracing::warn!(channel, "presence feed: undecodable event dropped");
                return;
            };
            // The origin node takes its own events too: if its commit's
            // reply was lost (a timeout), this is how its watchers learn of
            // the change; fan-out drops the duplicate otherwise.
            match message {
                EventsMessage::Event(message) if self.watches(&message.e.scope) => {
                    self.sink.deliver(FeedMessage::Event(message.e));
                }
                EventsMessage::Lagged { lag, .. } if self.watches(&lag) => {
                    self.sink.deliver(FeedMessage::ScopeLagged(lag));
                }
                EventsMessage::Resync { .. } => self.sink.deliver(FeedMessage::Resync),
                _ => {}
            }
        } else {
            let Ok(ended) = serde_json::from_str::<EndedMessage>(payload) else {
                tracing::warn!(channel, "presence feed: undecodable message dropped");
                return;
            };
            // This process made the change and told its holders already.
            if ended.o == self.node_id {
                return;
            }
            // A replaced session lives on, held elsewhere (perhaps by
            // another node of this very process).
            let reason = ended.reason();
            self.local.ended_elsewhere(&ended.s, reason, &self.node);
            self.sink.deliver(FeedMessage::SessionsEnded {
                sessions: ended.s,
                reason,
            });
        }
    }

    fn watches(&self, scope: &ScopeId) -> bool {
        let Some(state) = self.state.upgrade() else {
            return false;
        };
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .watching
            .get(scope)
            .is_some_and(|nodes| nodes.contains(&self.node))
    }
}
