//! [`RedisConfig`]: where the store connects and how it behaves.

use std::time::Duration;

/// How a [`crate::RedisStore`] connects and batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db` (with `user:password@` if needed).
    pub url: String,
    /// Every key and channel starts with this (default `presence`); nothing
    /// is written outside it.
    pub prefix: String,
    /// How often buffered heartbeats are written, in one round trip
    /// (default 1 s). Keep it well below `session_ttl - heartbeat_interval`:
    /// a heartbeat reaches Redis at most this late.
    pub flush_interval: Duration,
    /// Longest wait for one Redis reply (default 2 s).
    pub response_timeout: Duration,
    /// Longest wait for a connection (default 2 s).
    pub connection_timeout: Duration,
    /// How many times a change is retried when another node changed the
    /// same user between its read and its write (default 32).
    pub max_attempts: u32,
    /// Connect to a Redis Cluster whose seed nodes are `url` and these
    /// (feature `cluster`; see [`RedisConfig::cluster`]).
    #[cfg(feature = "cluster")]
    pub cluster_nodes: Option<Vec<String>>,
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "presence".into(),
            flush_interval: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            connection_timeout: Duration::from_secs(2),
            max_attempts: 32,
            #[cfg(feature = "cluster")]
            cluster_nodes: None,
        }
    }

    /// A Redis Cluster with these seed nodes (`redis://host:port` each).
    ///
    /// Every key of the store carries the prefix as its hash tag, so all
    /// presence keys live in one slot: each change stays one atomic script,
    /// and the cluster brings failover rather than sharding of presence.
    /// The cluster feed listens on one node at a time (a cluster-wide
    /// `PUBLISH` reaches every node): a seed at first; when that node dies,
    /// the next seed or any node the cluster reported (`CLUSTER NODES`),
    /// and then every watcher resnapshots.
    #[cfg(feature = "cluster")]
    pub fn cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::new(nodes.first().cloned().unwrap_or_default());
        config.cluster_nodes = Some(nodes);
        config
    }

    /// Uses `prefix` for every key and channel.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Writes buffered heartbeats this often.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }
}
