//! Every statement of the PostgreSQL store. All static: tables are named
//! unqualified and found through the connections' `search_path` (the
//! store's schema).

/// The user's record, locking the user's row until the transaction ends.
/// $1 user.
pub(crate) const LOCK_USER: &str = "\
SELECT record FROM users WHERE user_id = $1 FOR UPDATE";

/// The heartbeats of the user's sessions, locking their rows in session id
/// order (as a heartbeat flush does: two transactions that take rows in one
/// order never deadlock). $1 user.
pub(crate) const LOCK_SESSIONS: &str = "\
SELECT session_id, last_heartbeat FROM sessions
WHERE user_id = $1
ORDER BY session_id
FOR UPDATE";

/// Locks the rows of the sessions $1 in session id order, before a flush
/// writes them.
pub(crate) const LOCK_FLUSHED: &str = "\
SELECT session_id FROM sessions
WHERE session_id = ANY($1::text[])
ORDER BY session_id
FOR UPDATE";

/// A user seen for the first time (a racing insert of the same user wins
/// and this one does nothing). $1 user, $2 the empty record.
pub(crate) const CREATE_USER: &str = "\
INSERT INTO users (user_id, record) VALUES ($1, $2)
ON CONFLICT (user_id) DO NOTHING";

/// Everything one change writes, in one statement: the user's row, the
/// sessions that ended and those new or heard from, the scope memberships
/// left and joined, the change kept for the node's durable readers (if
/// any), and the notifications (sent by PostgreSQL at commit, in commit
/// order). Returns the kept change's row id (NULL: none kept) and how many
/// notifications.
///
/// $1 user; $2 record; $3 status; $4 version; $5 manual status; $6 manual
/// until; $7 last seen; $8 next deadline; $9 ended session ids; $10–$15 the
/// sessions to write (id, node, login, opened, heartbeat, expires); $16
/// scopes left; $17 scopes joined; $18 channels; $19 payloads; $20 details;
/// $21 node name, $22 incarnation, $23 the change to keep (NULL: none).
pub(crate) const WRITE_CHANGE: &str = "\
WITH
written AS (
    UPDATE users SET
        record = $2, rev = rev + 1, status = $3, version = $4,
        manual_status = $5, manual_until = $6, last_seen = $7, next_deadline = $8,
        details = $20
    WHERE user_id = $1
),
ended AS (
    DELETE FROM sessions WHERE user_id = $1 AND session_id = ANY($9::text[])
),
heard AS (
    INSERT INTO sessions (session_id, user_id, node, login, opened_at, last_heartbeat, expires_at)
    SELECT s.id, $1, s.node, s.login, s.opened, s.heartbeat, s.expires
    FROM unnest($10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[], $15::bigint[])
        AS s(id, node, login, opened, heartbeat, expires)
    ON CONFLICT (session_id) DO UPDATE SET
        node = EXCLUDED.node,
        login = EXCLUDED.login,
        opened_at = EXCLUDED.opened_at,
        last_heartbeat = GREATEST(sessions.last_heartbeat, EXCLUDED.last_heartbeat),
        expires_at = GREATEST(sessions.expires_at, EXCLUDED.expires_at)
    WHERE sessions.user_id = EXCLUDED.user_id
),
left_scopes AS (
    DELETE FROM scope_members WHERE user_id = $1 AND scope = ANY($16::text[])
),
joined_scopes AS (
    INSERT INTO scope_members (scope, user_id)
    SELECT scope, $1 FROM unnest($17::text[]) AS j(scope)
    ON CONFLICT DO NOTHING
),
kept AS (
    INSERT INTO kept_changes (node, incarnation, change)
    SELECT $21::text, $22::bigint, $23::text WHERE $23::text IS NOT NULL
    RETURNING id
)
SELECT (SELECT id FROM kept), count(pg_notify(n.channel, n.payload))
FROM unnest($18::text[], $19::text[]) AS n(channel, payload)";

/// Records of several users. $1 user ids.
pub(crate) const LOAD_MANY: &str = "\
SELECT user_id, record FROM users WHERE user_id = ANY($1::text[])";

/// The present members of a scope as observers see them. $1 scope.
///
/// `scope_members.user_id` sorts byte by byte (`COLLATE "C"`, migration
/// 0004); the join compares in the database's collation, as the users'
/// primary key is built, so that each member is found through it.
pub(crate) const SCOPE_MEMBERS: &str = "\
SELECT u.user_id, u.status, u.version, u.last_seen, u.details
FROM scope_members m JOIN users u ON u.user_id = m.user_id COLLATE \"default\"
WHERE m.scope = $1
ORDER BY m.user_id";

/// The first page of a scope's members not shown `OFFLINE`, in order of
/// user id (byte by byte: a range of the primary key). $1 scope, $2 limit.
pub(crate) const SCOPE_MEMBERS_PAGE: &str = "\
SELECT u.user_id, u.status, u.version, u.last_seen, u.details
FROM scope_members m JOIN users u ON u.user_id = m.user_id COLLATE \"default\"
WHERE m.scope = $1 AND u.status <> 'OFFLINE'
ORDER BY m.user_id
LIMIT $2";

/// A later page of a scope's members not shown `OFFLINE`: those after
/// user $2, in order of user id. $1 scope, $2 the last user of the page
/// before, $3 limit.
pub(crate) const SCOPE_MEMBERS_PAGE_AFTER: &str = "\
SELECT u.user_id, u.status, u.version, u.last_seen, u.details
FROM scope_members m JOIN users u ON u.user_id = m.user_id COLLATE \"default\"
WHERE m.scope = $1 AND m.user_id > $2 AND u.status <> 'OFFLINE'
ORDER BY m.user_id
LIMIT $3";

/// Users due at $1 (ms), oldest deadline first, at most $2.
pub(crate) const DUE: &str = "\
SELECT user_id FROM users
WHERE next_deadline <= $1
ORDER BY next_deadline, user_id
LIMIT $2";

/// Claims due users for one sweep, moving their deadline to the hold;
/// rows a change holds locked are skipped (the change moves their deadline
/// itself). $1 now, $2 limit, $3 hold until.
pub(crate) const CLAIM_DUE: &str = "\
UPDATE users SET next_deadline = $3
WHERE user_id IN (
    SELECT user_id FROM users
    WHERE next_deadline <= $1
    ORDER BY next_deadline, user_id
    LIMIT $2
    FOR UPDATE SKIP LOCKED)
RETURNING user_id";

/// The earliest deadline.
pub(crate) const NEXT_DEADLINE: &str = "SELECT min(next_deadline) FROM users";

/// Users holding sessions on node $1.
pub(crate) const USERS_ON_NODE: &str = "\
SELECT DISTINCT user_id FROM sessions WHERE node = $1";

/// A batch of heartbeats: never moves one back, never revives an ended
/// session (its row is gone). Returns the sessions written. $1 ids, $2
/// heartbeats, $3 expiries.
pub(crate) const FLUSH_HEARTBEATS: &str = "\
UPDATE sessions SET last_heartbeat = v.heartbeat, expires_at = v.expires
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS v(id, heartbeat, expires)
WHERE sessions.session_id = v.id AND sessions.last_heartbeat < v.heartbeat
RETURNING sessions.session_id";

/// Which of the sessions $1 still exist.
pub(crate) const EXISTING_SESSIONS: &str = "\
SELECT session_id FROM sessions WHERE session_id = ANY($1::text[])";

/// The store's epoch, written first if the row is missing (its data was
/// wiped). $1 a fresh epoch.
pub(crate) const EPOCH: &str = "\
WITH fresh AS (
    INSERT INTO meta (key, value) VALUES ('epoch', $1)
    ON CONFLICT (key) DO NOTHING
    RETURNING value
)
SELECT value FROM fresh
UNION ALL
SELECT value FROM meta WHERE key = 'epoch'
LIMIT 1";

/// Renews (or takes) a process's lease. $1 node, $2 incarnation, $3 until.
pub(crate) const RENEW_LEASE: &str = "\
INSERT INTO node_leases (node, incarnation, until) VALUES ($1, $2, $3)
ON CONFLICT (node, incarnation) DO UPDATE SET until = excluded.until";

/// Ends a process's lease. $1 node, $2 incarnation.
pub(crate) const END_LEASE: &str = "\
DELETE FROM node_leases WHERE node = $1 AND incarnation = $2";

/// The processes whose lease ran out by $1 (ms); the table holds a row per
/// running process, so it is read whole.
pub(crate) const EXPIRED_LEASES: &str = "\
SELECT node, incarnation, until FROM node_leases WHERE until <= $1";

/// The leases of a node's processes. $1 node.
pub(crate) const LEASES: &str = "\
SELECT incarnation, until FROM node_leases WHERE node = $1";

/// Up to $3 changes kept for node $1 by its processes but those in $2,
/// oldest first.
pub(crate) const KEPT_CHANGES: &str = "\
SELECT id, incarnation, change FROM kept_changes
WHERE node = $1 AND incarnation <> ALL($2::bigint[])
ORDER BY id
LIMIT $3";

/// Forgets the changes $2 (row ids) kept for node $1.
pub(crate) const FORGET_CHANGES: &str = "\
DELETE FROM kept_changes WHERE node = $1 AND id = ANY($2::bigint[])";

/// The database server's clock, in ms since the Unix epoch.
pub(crate) const NOW: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";
