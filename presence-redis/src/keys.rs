//! Where everything lives in Redis, all under one prefix.
//!
//! A user's keys share the hash tag `{user}`, so a future cluster mode keeps
//! each user's record and heartbeats in one slot.

use presence_core::{NodeName, ScopeId, UserId};

/// The key names of one store.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`; with `one_slot`, the prefix is a hash tag that
    /// puts every key in one cluster slot.
    pub(crate) fn new(prefix: &str, one_slot: bool) -> Self {
        let prefix = if one_slot {
            format!("{{{prefix}}}")
        } else {
            prefix.to_owned()
        };
        Self { prefix }
    }

    /// Hash: `data` (the user's record, JSON) and `rev` (bumped by every
    /// write, the compare-and-set revision).
    pub(crate) fn record(&self, user: &UserId) -> String {
        format!("{}:{{{}}}:rec", self.prefix, user)
    }

    /// Sorted set: session id → newest heartbeat (ms since the epoch).
    pub(crate) fn heartbeats(&self, user: &UserId) -> String {
        format!("{}:{{{}}}:hb", self.prefix, user)
    }

    /// String: a token the first node writes. Gone or changed means Redis
    /// lost its data (restarted empty, or flushed) since a node read it.
    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// Sorted set: user → the next instant time alone changes them (ms).
    pub(crate) fn due(&self) -> String {
        format!("{}:due", self.prefix)
    }

    /// Set: the users present in a scope.
    pub(crate) fn scope(&self, scope: &ScopeId) -> String {
        format!("{}:scope:{}", self.prefix, scope)
    }

    /// Set: the users holding sessions on a node.
    pub(crate) fn node(&self, node: &NodeName) -> String {
        format!("{}:node:{}", self.prefix, node)
    }

    /// Sorted set: every process's lease, `incarnation:name` → expiry
    /// (ms), for finding the ones that ran out across node names.
    pub(crate) fn all_leases(&self) -> String {
        format!("{}:leases", self.prefix)
    }

    /// Hash: incarnation (decimal) → lease expiry (ms) of a node's
    /// processes.
    pub(crate) fn leases(&self, node: &NodeName) -> String {
        format!("{}:lease:{}", self.prefix, node)
    }

    /// Channel: the events of a scope.
    pub(crate) fn scope_channel(&self, scope: &ScopeId) -> String {
        format!("{}:ev:{}", self.prefix, scope)
    }

    /// The scope of a scope channel's name.
    pub(crate) fn scope_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":ev:")
    }

    /// Channel: sessions of a node that other nodes ended.
    pub(crate) fn node_channel(&self, node: &NodeName) -> String {
        format!("{}:end:{}", self.prefix, node)
    }

    /// The node of a node channel's name.
    pub(crate) fn node_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":end:")
    }
}
