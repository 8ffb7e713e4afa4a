//! Where everything lives in Redis, all under one prefix.
//!
//! Users are split into a fixed number of virtual shards
//! ([`RedisConfig::shards`](crate::RedisConfig::shards)). A user's keys (record,
//! heartbeats) and the user's share of every index (the due set, the scope
//! and node sets) start with the user's shard's base, so one change touches
//! one shard's keys only, and on a Redis Cluster one slot: it stays one
//! atomic script. The keys of the store as a whole (the epoch token, node
//! leases) and the feed's channels start with the global base, one fixed
//! slot. The changes a node keeps are shared out like the indexes: one stream
//! per shard and node name ([`Keys::changes`]), written by the script of
//! the change, in its user's shard.
//!
//! | shards | global base | shard `i`'s base |
//! |---|---|---|
//! | 1, single Redis | `PREFIX` | `PREFIX` (the layout of every earlier version) |
//! | 1, cluster | `{PREFIX}` | `{PREFIX}` (the layout of earlier versions under `cluster`) |
//! | n > 1 | `PREFIX`, or `{PREFIX}` on a cluster | `{TAG}`, the shard's hash tag (`PREFIX:i` or `PREFIX:i.k`, see [`crate::shards::tags`]) |

use presence_core::{NodeName, ScopeId, UserId};

use crate::shards::{self, Shard};

/// The key names of one store.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    /// The store's global keys and channels start with this.
    global: String,
    /// Shard `i`'s keys start with `shards[i]`.
    shards: Vec<String>,
    /// A Redis Cluster: a pipeline may only touch one slot (one shard).
    cluster: bool,
}

impl Keys {
    /// Keys under `prefix` in `shards` virtual shards (at least one); on a
    /// `cluster`, the global base is the prefix as a hash tag.
    pub(crate) fn new(prefix: &str, cluster: bool, shards: u16) -> Self {
        let global = if cluster {
            format!("{{{prefix}}}")
        } else {
            prefix.to_owned()
        };
        let shards = if shards <= 1 {
            vec![global.clone()]
        } else {
            shards::tags(prefix, shards)
                .into_iter()
                .map(|tag| format!("{{{tag}}}"))
                .collect()
        };
        Self {
            global,
            shards,
            cluster,
        }
    }

    /// How many shards the users are split into.
    pub(crate) fn shard_count(&self) -> u16 {
        u16::try_from(self.shards.len()).unwrap_or(u16::MAX)
    }

    /// Every shard, in order.
    pub(crate) fn shards(&self) -> impl Iterator<Item = Shard> + use<> {
        (0..self.shard_count()).map(Shard)
    }

    /// The shard holding `user`'s keys.
    pub(crate) fn shard_of(&self, user: &UserId) -> Shard {
        shards::shard_of(user.as_str(), self.shard_count())
    }

    fn base(&self, shard: Shard) -> &str {
        self.shards
            .get(usize::from(shard.0))
            .unwrap_or(&self.global)
    }

    /// Which pipeline a command on `shard`'s keys may share: on a cluster,
    /// one per shard (one slot each); on a single Redis, all share one.
    pub(crate) fn group_of_shard(&self, shard: Shard) -> usize {
        if self.cluster {
            usize::from(shard.0)
        } else {
            0
        }
    }

    /// [`Keys::group_of_shard`] of `user`'s shard (without hashing the id
    /// on a single Redis).
    pub(crate) fn group_of_user(&self, user: &UserId) -> usize {
        if self.cluster {
            usize::from(self.shard_of(user).0)
        } else {
            0
        }
    }

    /// Hash: `data` (the user's record, JSON) and `rev` (bumped by every
    /// write, the compare-and-set revision).
    pub(crate) fn record(&self, user: &UserId) -> String {
        format!("{}:{{{}}}:rec", self.base(self.shard_of(user)), user)
    }

    /// Sorted set: session id → newest heartbeat (ms since the epoch).
    pub(crate) fn heartbeats(&self, user: &UserId) -> String {
        format!("{}:{{{}}}:hb", self.base(self.shard_of(user)), user)
    }

    /// String: a token the first node writes. Gone or changed means Redis
    /// lost its data (restarted empty, or flushed) since a node read it.
    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.global)
    }

    /// The same token for each shard's slot (with one shard, only the
    /// global one): the epoch covers every master holding presence keys.
    pub(crate) fn epoch_tokens(&self) -> Vec<String> {
        let mut tokens = vec![self.epoch()];
        if self.shards.len() > 1 {
            tokens.extend(self.shards.iter().map(|base| format!("{base}:epoch")));
        }
        tokens
    }

    /// Sorted set: the shard's users → the next instant time alone changes
    /// them (ms).
    pub(crate) fn due(&self, shard: Shard) -> String {
        format!("{}:due", self.base(shard))
    }

    /// Set: the shard's users present in a scope.
    pub(crate) fn scope(&self, shard: Shard, scope: &ScopeId) -> String {
        format!("{}:scope:{}", self.base(shard), scope)
    }

    /// Set: the shard's users holding sessions on a node.
    pub(crate) fn node(&self, shard: Shard, node: &NodeName) -> String {
        format!("{}:node:{}", self.base(shard), node)
    }

    /// Stream: the changes kept for a node name by the changes of the
    /// shard's users (see [`crate::outbox`]), oldest first; each entry's
    /// fields are `i` (the process's incarnation, decimal) and `c` (the
    /// change, JSON).
    pub(crate) fn changes(&self, shard: Shard, node: &NodeName) -> String {
        format!("{}:changes:{}", self.base(shard), node)
    }

    /// Sorted set: every process's lease, `incarnation:name` → expiry
    /// (ms), for finding the ones that ran out across node names.
    pub(crate) fn all_leases(&self) -> String {
        format!("{}:leases", self.global)
    }

    /// Hash: incarnation (decimal) → lease expiry (ms) of a node's
    /// processes.
    pub(crate) fn leases(&self, node: &NodeName) -> String {
        format!("{}:lease:{}", self.global, node)
    }

    /// Channel: the events of a scope.
    pub(crate) fn scope_channel(&self, scope: &ScopeId) -> String {
        format!("{}:ev:{}", self.global, scope)
    }

    /// The scope of a scope channel's name.
    pub(crate) fn scope_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.global.as_str())?
            .strip_prefix(":ev:")
    }

    /// Channel: sessions of a node that other nodes ended.
    pub(crate) fn node_channel(&self, node: &NodeName) -> String {
        format!("{}:end:{}", self.global, node)
    }

    /// The node of a node channel's name.
    pub(crate) fn node_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.global.as_str())?
            .strip_prefix(":end:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shard_keeps_the_layout_of_earlier_versions() {
        let user = UserId::from("alice");
        let single = Keys::new("app", false, 1);
        assert_eq!(single.record(&user), "app:{alice}:rec");
        assert_eq!(single.due(Shard(0)), "app:due");
        assert_eq!(single.scope(Shard(0), &"acme".into()), "app:scope:acme");
        assert_eq!(single.epoch_tokens(), vec!["app:epoch".to_owned()]);
        let cluster = Keys::new("app", true, 1);
        assert_eq!(cluster.record(&user), "{app}:{alice}:rec");
        assert_eq!(cluster.node(Shard(0), &"web-1".into()), "{app}:node:web-1");
        assert_eq!(
            cluster.changes(Shard(0), &"web-1".into()),
            "{app}:changes:web-1"
        );
        assert_eq!(cluster.leases(&"web-1".into()), "{app}:lease:web-1");
    }

    #[test]
    fn a_users_keys_and_index_shares_carry_its_shards_tag() {
        let keys = Keys::new("app", true, 16);
        let user = UserId::from("alice");
        let shard = keys.shard_of(&user);
        let tag = |key: &str| {
            let open = key.find('{').expect("a tag");
            let close = key[open..].find('}').expect("closed") + open;
            key[open + 1..close].to_owned()
        };
        let tags = [
            tag(&keys.record(&user)),
            tag(&keys.heartbeats(&user)),
            tag(&keys.due(shard)),
            tag(&keys.scope(shard, &"acme".into())),
            tag(&keys.node(shard, &"web-1".into())),
            tag(&keys.changes(shard, &"web-1".into())),
        ];
        assert!(tags.iter().all(|t| *t == tags[0]), "{tags:?}");
        assert!(tags[0].starts_with(&format!("app:{}", shard.0)));
        // Global keys and channels stay in the prefix's slot.
        assert_eq!(tag(&keys.epoch()), "app");
        assert_eq!(tag(&keys.leases(&"web-1".into())), "app");
        assert_eq!(keys.epoch_tokens().len(), 17);
        assert_eq!(keys.group_of_user(&user), usize::from(shard.0));
        assert_eq!(Keys::new("app", false, 16).group_of_user(&user), 0);
    }
}
