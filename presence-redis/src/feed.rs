//! The cluster feed on Redis pub/sub.
//!
//! A transition's events are published on per-scope channels and the
//! sessions it ended on a per-node channel, by the same script that writes
//! the change (so each change is published once, in per-user order). A
//! node subscribes only to the scopes its local watchers use and to its own
//! node channel. When the pub/sub connection drops, the feed reconnects and
//! tells every node to resync: watchers re-read snapshots, live sessions
//! are registered again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use presence_core::store::kit::{EndedMessage, EventMessage, LocalSessions};
use presence_core::store::{ClusterFeed, FeedMessage, FeedSink, StoreError};
use presence_core::{NodeId, NodeName, ScopeId};
use tokio::sync::mpsc;

use crate::keys::Keys;
use crate::topology::FeedNodes;

/// The nodes of this process that joined, and what they watch.
#[derive(Default)]
struct Joined {
    nodes: Vec<(NodeId, Arc<dyn FeedSink>)>,
    /// scope → nodes of this process watching it
    watching: HashMap<ScopeId, Vec<NodeName>>,
}

enum Command {
    Subscribe(String),
    Unsubscribe(String),
}

/// The Redis feed of one store.
pub(crate) struct RedisFeed {
    /// Where it may listen (taken by the listener task when it starts).
    nodes: Mutex<Option<FeedNodes>>,
    keys: Keys,
    local: Arc<LocalSessions<Box<str>>>,
    joined: Arc<Mutex<Joined>>,
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl std::fmt::Debug for RedisFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisFeed").finish_non_exhaustive()
    }
}

impl RedisFeed {
    pub(crate) fn new(nodes: FeedNodes, keys: Keys, local: Arc<LocalSessions<Box<str>>>) -> Self {
        Self {
            nodes: Mutex::new(Some(nodes)),
            keys,
            local,
            joined: Arc::default(),
            commands: Mutex::new(None),
        }
    }

    /// Tells every node of this process to resync (the store found that
    /// Redis lost its data, perhaps before the pub/sub connection noticed).
    pub(crate) fn resync(&self) {
        tell_all(&self.joined, FeedMessage::Resync);
    }

    fn send(&self, command: Command) {
        if let Some(commands) = &*self.commands.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = commands.send(command);
        }
    }

    /// Starts the listener task once (on the first join).
    fn start(&self) {
        let mut commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        if commands.is_some() {
            return;
        }
        let Some(nodes) = self.nodes.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        *commands = Some(sender);
        let listener = Listener {
            nodes,
            keys: self.keys.clone(),
            local: self.local.clone(),
            joined: self.joined.clone(),
        };
        tokio::spawn(listener.run(receiver));
    }
}

#[async_trait]
impl ClusterFeed for RedisFeed {
    async fn join(&self, node: &NodeId, sink: Arc<dyn FeedSink>) -> Result<(), StoreError> {
        {
            let mut joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
            joined.nodes.retain(|(n, _)| n != node);
            joined.nodes.push((node.clone(), sink));
        }
        self.start();
        self.send(Command::Subscribe(self.keys.node_channel(&node.name)));
        Ok(())
    }

    fn leave(&self, node: &NodeId) {
        let mut joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        joined.nodes.retain(|(n, _)| n != node);
        for nodes in joined.watching.values_mut() {
            nodes.retain(|name| *name != node.name);
        }
    }

    fn watch(&self, node: &NodeId, scope: &ScopeId) {
        let first = {
            let mut joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
            let nodes = joined.watching.entry(scope.clone()).or_default();
            let first = nodes.is_empty();
            if !nodes.contains(&node.name) {
                nodes.push(node.name.clone());
            }
            first
        };
        if first {
            self.send(Command::Subscribe(self.keys.scope_channel(scope)));
        }
    }

    fn unwatch(&self, node: &NodeId, scope: &ScopeId) {
        let last = {
            let mut joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
            let Some(nodes) = joined.watching.get_mut(scope) else {
                return;
            };
            nodes.retain(|name| *name != node.name);
            let last = nodes.is_empty();
            if last {
                joined.watching.remove(scope);
            }
            last
        };
        if last {
            self.send(Command::Unsubscribe(self.keys.scope_channel(scope)));
        }
    }
}

/// The task that holds the pub/sub connection.
struct Listener {
    nodes: FeedNodes,
    keys: Keys,
    local: Arc<LocalSessions<Box<str>>>,
    joined: Arc<Mutex<Joined>>,
}

impl Listener {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut connected_before = false;
        let mut backoff = Duration::from_millis(100);
        loop {
            // The next node: after its node died, the feed tries the others
            // (a cluster's PUBLISH reaches every node), and backs off only
            // once every one has failed.
            let (url, round_done) = self.nodes.next();
            let connected = match redis::Client::open(url.as_str()) {
                Ok(client) => client
                    .get_async_pubsub()
                    .await
                    .map(|pubsub| (client, pubsub)),
                Err(error) => Err(error),
            };
            let pubsub = match connected {
                Ok((client, pubsub)) => {
                    self.nodes.connected(&client, &url).await;
                    pubsub
                }
                Err(error) => {
                    tracing::debug!(%error, url, "presence feed: a Redis node is unreachable; trying the next");
                    if round_done {
                        if self.sleep_or_stop(&mut commands, backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            let (mut sink, mut stream) = pubsub.split();
            let channels = self.channels();
            if !channels.is_empty() && sink.subscribe(&channels).await.is_err() {
                continue;
            }
            if connected_before {
                tracing::info!("presence feed reconnected; resyncing");
                self.tell_all(FeedMessage::Resync);
            }
            connected_before = true;
            loop {
                tokio::select! {
                    message = stream.next() => match message {
                        Some(message) => self.dispatch(&message),
                        None => break,
                    },
                    command = commands.recv() => match command {
                        Some(Command::Subscribe(channel)) => {
                            if sink.subscribe(&channel).await.is_err() { break; }
                            // Events published before the subscription
                            // took effect were missed: resnapshot.
                            if let Some(scope) = self.keys.scope_of_channel(&channel) {
                                self.tell_all(FeedMessage::ScopeLagged(ScopeId::from(scope)));
                            }
                        }
                        Some(Command::Unsubscribe(channel)) => {
                            if sink.unsubscribe(&channel).await.is_err() { break; }
                        }
                        None => return,
                    },
                }
            }
            tracing::warn!("presence feed: pub/sub connection lost; reconnecting");
        }
    }

    /// Waits, draining commands (the subscription is rebuilt from state on
    /// reconnect); true when the feed is gone.
    async fn sleep_or_stop(
        &self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        delay: Duration,
    ) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return false,
                command = commands.recv() => if command.is_none() { return true },
            }
        }
    }

    fn channels(&self) -> Vec<String> {
        let joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
        joined
            .nodes
            .iter()
            .map(|(node, _)| self.keys.node_channel(&node.name))
            .chain(
                joined
                    .watching
                    .keys()
                    .map(|scope| self.keys.scope_channel(scope)),
            )
            .collect()
    }

    fn tell_all(&self, message: FeedMessage) {
        tell_all(&self.joined, message);
    }

    fn dispatch(&self, message: &redis::Msg) {
        let channel = message.get_channel_name();
        let payload: &[u8] = message.get_payload_bytes();
        if let Some(scope) = self.keys.scope_of_channel(channel) {
            let Ok(published) = serde_json::from_slice::<EventMessage>(payload) else {
                tracing::warn!(channel, "presence feed: undecodable event dropped");
                return;
            };
            let sinks: Vec<Arc<dyn FeedSink>> = {
                let joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
                let Some(watching) = joined.watching.get(&ScopeId::from(scope)) else {
                    return;
                };
                // The origin node gets its own event too: if its write's
                // reply was lost (a timeout), this is how its watchers
                // learn of it; fan-out drops the duplicate otherwise.
                joined
                    .nodes
                    .iter()
                    .filter(|(node, _)| watching.contains(&node.name))
                    .map(|(_, sink)| sink.clone())
                    .collect()
            };
            for sink in sinks {
                sink.deliver(FeedMessage::Event(published.e.clone()));
            }
        } else if let Some(node) = self.keys.node_of_channel(channel) {
            let Ok(ended) = serde_json::from_slice::<EndedMessage>(payload) else {
                tracing::warn!(channel, "presence feed: undecodable message dropped");
                return;
            };
            let (sinks, from_here) = {
                let joined = self.joined.lock().unwrap_or_else(|e| e.into_inner());
                let from_here = joined.nodes.iter().any(|(n, _)| n.to_string() == ended.o);
                // The process that made the change told its own holders.
                let sinks: Vec<Arc<dyn FeedSink>> = joined
                    .nodes
                    .iter()
                    .filter(|(n, _)| n.name.as_str() == node && n.to_string() != ended.o)
                    .map(|(_, sink)| sink.clone())
                    .collect();
                (sinks, from_here)
            };
            // A replaced session lives on, held elsewhere (perhaps by
            // another node of this very process); and what this process
            // ended, it has forgotten already (a late echo must not end a
            // session reopened since).
            let reason = ended.reason();
            if !from_here {
                self.local
                    .ended_elsewhere(&ended.s, reason, &NodeName::from(node));
            }
            for sink in sinks {
                sink.deliver(FeedMessage::SessionsEnded {
                    sessions: ended.s.clone(),
                    reason,
                });
            }
        }
    }
}

/// Delivers `message` to every node of this process that joined.
fn tell_all(joined: &Mutex<Joined>, message: FeedMessage) {
    let sinks: Vec<Arc<dyn FeedSink>> = {
        let joined = joined.lock().unwrap_or_else(|e| e.into_inner());
        joined.nodes.iter().map(|(_, sink)| sink.clone()).collect()
    };
    for sink in sinks {
        sink.deliver(message.clone());
    }
}
