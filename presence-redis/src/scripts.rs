//! The Lua script of a change. It decides no status: the core's state machine
//! computes every change in Rust; the script only makes its write atomic
//! and check that nothing changed since it was read.

use std::sync::LazyLock;

/// Compare-and-set of one user's change.
///
/// KEYS: record, heartbeats, due. ARGV: expected revision, record JSON,
/// user, next deadline (ms, or empty for none), plan JSON:
/// `{"hb_add": [[ms, session]], "hb_rem": [session], "sadd": [key],
/// "srem": [key], "pub": [[channel, payload]]}`.
///
/// Returns 0 (and writes nothing) if the record's revision is not the one
/// read; 1 once the record, its heartbeats, the deadline index, the scope
/// and node sets are written and the events published, all in one step.
pub(crate) static APPLY: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local rev = redis.call('HGET', KEYS[1], 'rev')
if (rev or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'rev', tostring(tonumber(rev or '0') + 1))
local plan = cjson.decode(ARGV[5])
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
return 1
"#,
    )
});

/// Claims due users for one sweep.
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
