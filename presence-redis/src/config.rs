//! [`RedisConfig`]: where the store connects, how it splits users into
//! shards, and how it behaves.
//!
//! Shards: 1 on a single Redis (nothing to spread, and one pipeline per
//! read as before), 16 on a Redis Cluster (each shard a slot of its own,
//! spread evenly over the masters; a change stays in one slot). See
//! [`RedisConfig::shards`].

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
    /// How many virtual shards the users are split into (default 1; 16 for
    /// [`RedisConfig::cluster`]; at most 1024). See [`RedisConfig::shards`].
    pub shards: u16,
    /// How often the store reads its epoch again by itself, so that a
    /// Redis that lost data is noticed even when no call fails (default
    /// none; 2 s for [`RedisConfig::cluster`], where one master can fail
    /// over while the feed listens on another).
    pub epoch_check_interval: Option<Duration>,
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
            shards: 1,
            epoch_check_interval: None,
            #[cfg(feature = "cluster")]
            cluster_nodes: None,
        }
    }

    /// A Redis Cluster with these seed nodes (`redis://host:port` each).
    ///
    /// Users are split into 16 shards (see [`RedisConfig::shards`]), each
    /// shard's keys in a slot of its own, the slots spread evenly: the
    /// cluster's masters share the work, and each change stays one atomic
    /// script on one master. The epoch is read every 2 s
    /// ([`RedisConfig::epoch_check_interval`]): a master that failed over
    /// or restarted empty is noticed even when the feed's node is fine.
    /// The cluster feed listens on one node at a time (a cluster-wide
    /// `PUBLISH` reaches every node): a seed at first; when that node dies,
    /// the next seed or any node the cluster reported (`CLUSTER NODES`),
    /// and then every watcher resnapshots.
    #[cfg(feature = "cluster")]
    pub fn cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::new(nodes.first().cloned().unwrap_or_default());
        config.cluster_nodes = Some(nodes);
        config.shards = 16;
        config.epoch_check_interval = Some(Duration::from_secs(2));
        config
    }

    /// Splits the users into `shards` virtual shards (1 to 1024).
    ///
    /// A user's shard is a fixed hash of the user id (the same on every
    /// node and version). The user's record and heartbeats, and the user's
    /// share of each scope's members, of the deadline index and of the node
    /// sets, live under the shard's hash tag, so a change is still one
    /// atomic script, on one slot of a cluster. Reads that span users (a
    /// scope's members, due users, a node's users) read each shard once,
    /// concurrently on a cluster, and merge.
    ///
    /// On a Redis Cluster, more shards than masters spread the load (16
    /// spread evenly over 2, 4 or 8 masters, and within one shard of even
    /// over 3); every shard adds a command to those reads. On a single
    /// Redis, 1 (the default) keeps the key layout of earlier versions.
    /// Every node sharing a store must use the same number: changing it
    /// moves users to other keys, and what was stored under the old number
    /// is not read.
    pub fn shards(mut self, shards: u16) -> Self {
        self.shards = shards;
        self
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
