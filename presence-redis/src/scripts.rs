//! The Lua scripts: a change (keeping it, if asked), sweeps claiming users,
//! the epoch. They decide no status: the core's state machine computes
//! every change in Rust; a change's script only makes its write atomic and
//! checks that nothing changed since it was read.

use std::sync::LazyLock;

/// Compare-and-set of one user's change.
///
/// KEYS: record, heartbeats, due (the user's shard's). ARGV: expected revision, record JSON,
/// user, next deadline (ms, or empty for none), plan JSON:
/// `{"hb_add": [[ms, session]], "hb_rem": [session], "sadd": [key],
/// "srem": [key], "pub": [[channel, payload]], "keep": [stream,
/// incarnation, change JSON]}`, `keep` only when the change is kept (see
/// [`crate::outbox`]); its stream is the shard's too.
///
/// Returns 0 (and writes nothing) if the record's revision is not the one
/// read. Otherwise, with `keep`, appends the change to the stream first
/// (`XADD stream * i INCARNATION c CHANGE`: a stream that refuses it leaves
/// nothing written), then writes the record, its heartbeats, the deadline
/// index, the scope and node sets and publishes the events, all in one
/// step, and returns the new entry's id, or 1 when nothing is kept: see
/// [`Applied`]. A conflict keeps nothing, so a retried change is kept
/// once.
pub(crate) static APPLY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '0') ~= ARGV[1] then
  return 0
end
local plan = cjson.decode(ARGV[5])
-- Kept first: a stream that refuses it leaves nothing written.
local kept = 1
if type(plan['keep']) == 'table' then
  local keep = plan['keep']
  kept = redis.call('XADD', keep[1], '*', 'i', keep[2], 'c', keep[3])
end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'rev', tostring(tonumber(rev or '0') + 1))
for _, entry in ipairs(plan['hb_add']) do
  redis.call('ZADD', KEYS[2], 'GT', entry[1], entry[2])
end
for _, session in ipairs(plan['hb_rem']) do
  redis.call('ZREM', KEYS[2], session)
end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[3], ARGV[3])
else
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
end
for _, key in ipairs(plan['sadd']) do
  redis.call('SADD', key, ARGV[3])
end
for _, key in ipairs(plan['srem']) do
  redis.call('SREM', key, ARGV[3])
end
for _, message in ipairs(plan['pub']) do
  redis.call('PUBLISH', message[1], message[2])
end
return kept
"#,
    )
});

/// What [`APPLY`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The record changed since it was read: nothing was written.
    Conflict,
    /// The change was written, and nothing kept.
    Written,
    /// The change was written, and kept under this stream entry id.
    Kept(String),
}

impl Applied {
    /// Reads [`APPLY`]'s reply; `None` for a reply it never gives.
    pub(crate) fn of(reply: redis::Value) -> Option<Self> {
        match reply {
            redis::Value::Int(0) => Some(Self::Conflict),
            redis::Value::Int(1) => Some(Self::Written),
            redis::Value::BulkString(id) => String::from_utf8(id).ok().map(Self::Kept),
            redis::Value::SimpleString(id) => Some(Self::Kept(id)),
            _ => None,
        }
    }
}

/// Claims due users for one sweep, on a store of one shard.
///
/// KEYS: due. ARGV: now (ms), limit, hold until (ms).
///
/// Returns up to `limit` users whose deadline is at or before now, oldest
/// first, each moved to the hold in the same step: the other nodes' sweeps
/// pass them by.
pub(crate) static CLAIM_DUE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local users = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
for _, user in ipairs(users) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], user)
end
return users
"#,
    )
});

/// Claims, of the users a sweep picked (oldest first across the shards),
/// those still due, in one shard.
///
/// KEYS: the shard's due set. ARGV: now (ms), hold until (ms), then the
/// users.
///
/// Returns the users whose deadline is still at or before now, each moved
/// to the hold in the same step; a user another sweep claimed meanwhile
/// (or a change moved on) is passed by.
pub(crate) static CLAIM_USERS: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local taken = {}
local now = tonumber(ARGV[1])
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
    taken[#taken + 1] = ARGV[i]
  end
end
return taken
"#,
    )
});

/// Reads one epoch token, and which history of writes its master holds.
///
/// KEYS: an epoch token key. ARGV: a fresh token.
///
/// Writes the fresh token if there is none, and returns the token and the
/// replication id of the server running the script: the master of the
/// key's slot. A master that restarted without its data has neither the
/// token nor its replication id; a replica promoted has the token but a
/// new replication id (it may have missed writes).
pub(crate) static EPOCH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local token = redis.call('GET', KEYS[1])
local info = redis.call('INFO', 'replication')
return {token, string.match(info, 'master_replid:(%w+)') or ''}
"#,
    )
});
