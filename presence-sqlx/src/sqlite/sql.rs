//! Every statement of the SQLite store. Lists travel as JSON arrays,
//! unpacked by `json_each`.

/// The user's record. ?1 user.
pub(crate) const READ_USER: &str = "SELECT record FROM users WHERE user_id = ?1";

/// The heartbeats of the user's sessions. ?1 user.
pub(crate) const READ_HEARTBEATS: &str = "\
SELECT session_id, last_heartbeat FROM sessions WHERE user_id = ?1";

/// The user's row, created or rewritten. ?1 user; ?2 record; ?3 status; ?4
/// version; ?5 manual status; ?6 manual until; ?7 last seen; ?8 next
/// deadline; ?9 details.
pub(crate) const WRITE_USER: &str = "\
INSERT INTO users
    (user_id, record, rev, status, version, manual_status, manual_until, last_seen, next_deadline,
     details)
VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (user_id) DO UPDATE SET
    record = excluded.record, rev = users.rev + 1, status = excluded.status,
    version = excluded.version, manual_status = excluded.manual_status,
    manual_until = excluded.manual_until, last_seen = excluded.last_seen,
    next_deadline = excluded.next_deadline, details = excluded.details";

/// Sessions that ended. ?1 user, ?2 JSON array of session ids.
pub(crate) const DELETE_SESSIONS: &str = "\
DELETE FROM sessions
WHERE user_id = ?1 AND session_id IN (SELECT value FROM json_each(?2))";

/// Sessions new or heard from. ?1 user, ?2 JSON array of `[id, node,
/// login, opened, heartbeat, expires]`.
pub(crate) const WRITE_SESSIONS: &str = "\
INSERT INTO sessions (session_id, user_id, node, login, opened_at, last_heartbeat, expires_at)
SELECT json_extract(value, '$[0]'), ?1, json_extract(value, '$[1]'),
       json_extract(value, '$[2]'), json_extract(value, '$[3]'),
       json_extract(value, '$[4]'), json_extract(value, '$[5]')
FROM json_each(?2) WHERE true
ON CONFLICT (session_id) DO UPDATE SET
    node = excluded.node,
    login = excluded.login,
    opened_at = excluded.opened_at,
    last_heartbeat = max(sessions.last_heartbeat, excluded.last_heartbeat),
    expires_at = max(sessions.expires_at, excluded.expires_at)
WHERE sessions.user_id = excluded.user_id";

/// Scopes the user left. ?1 user, ?2 JSON array of scopes.
pub(crate) const LEAVE_SCOPES: &str = "\
DELETE FROM scope_members
WHERE user_id = ?1 AND scope IN (SELECT value FROM json_each(?2))";

/// Scopes the user joined. ?1 user, ?2 JSON array of scopes.
pub(crate) const JOIN_SCOPES: &str = "\
INSERT INTO scope_members (scope, user_id)
SELECT value, ?1 FROM json_each(?2) WHERE true
ON CONFLICT DO NOTHING";

/// Records of several users. ?1 JSON array of user ids.
pub(crate) const LOAD_MANY: &str = "\
SELECT user_id, record FROM users WHERE user_id IN (SELECT value FROM json_each(?1))";

/// The present members of a scope as observers see them. ?1 scope.
pub(crate) const SCOPE_MEMBERS: &str = "\
SELECT u.user_id, u.status, u.version, u.last_seen, u.details
FROM scope_members m JOIN users u ON u.user_id = m.user_id
WHERE m.scope = ?1
ORDER BY m.user_id";

/// The first page of a scope's members not shown `OFFLINE`, in order of
/// user id (SQLite compares text byte by byte: a range of the primary
/// key). ?1 scope, ?2 limit.
pub(crate) const SCOPE_MEMBERS_PAGE: &str = "\
SELECT u.user_id, u.status, u.version, u.last_seen, u.details
FROM scope_members m JOIN users u ON u.user_id = m.user_id
WHERE m.scope = ?1 AND u.status <> 'OFFLINE'
ORDER BY m.user_id
LIMIT ?2";

/// A later page of a scope's members not shown `OFFLINE`: those after
/// user ?2, in order of user id. ?1 scope, ?2 the last user of the page
/// before, ?3 limit.
pub(crate) const SCOPE_MEMBERS_PAGE_AFTER: &str = "\
SELECT u.user_id, u.status, u.version, u.last_seen, u.details
FROM scope_members m JOIN users u ON u.user_id = m.user_id
WHERE m.scope = ?1 AND m.user_id > ?2 AND u.status <> 'OFFLINE'
ORDER BY m.user_id
LIMIT ?3";

/// Users due at ?1 (ms), oldest deadline first, at most ?2.
pub(crate) const DUE: &str = "\
SELECT user_id FROM users
WHERE next_deadline <= ?1
ORDER BY next_deadline, user_id
LIMIT ?2";

/// Claims due users for one sweep, moving their deadline to the hold (one
/// writer: atomic). ?1 now, ?2 limit, ?3 hold until.
pub(crate) const CLAIM_DUE: &str = "\
UPDATE users SET next_deadline = ?3
WHERE user_id IN (
    SELECT user_id FROM users
    WHERE next_deadline <= ?1
    ORDER BY next_deadline, user_id
    LIMIT ?2)
RETURNING user_id";

/// The earliest deadline.
pub(crate) const NEXT_DEADLINE: &str = "SELECT min(next_deadline) FROM users";

/// Users holding sessions on node ?1.
pub(crate) const USERS_ON_NODE: &str = "\
SELECT DISTINCT user_id FROM sessions WHERE node = ?1";

/// A batch of heartbeats: never moves one back, never revives an ended
/// session (its row is gone). Returns the sessions written. ?1 JSON array
/// of `[id, heartbeat, expires]`.
pub(crate) const FLUSH_HEARTBEATS: &str = "\
UPDATE sessions SET last_heartbeat = v.heartbeat, expires_at = v.expires
FROM (SELECT json_extract(value, '$[0]') AS id,
             json_extract(value, '$[1]') AS heartbeat,
             json_extract(value, '$[2]') AS expires
      FROM json_each(?1)) AS v
WHERE sessions.session_id = v.id AND sessions.last_heartbeat < v.heartbeat
RETURNING session_id";

/// Which of the sessions ?1 (JSON array) still exist.
pub(crate) const EXISTING_SESSIONS: &str = "\
SELECT session_id FROM sessions WHERE session_id IN (SELECT value FROM json_each(?1))";

/// Writes a fresh epoch ?1 if the row is missing (the data was wiped).
pub(crate) const CLAIM_EPOCH: &str = "\
INSERT INTO meta (key, value) VALUES ('epoch', ?1) ON CONFLICT (key) DO NOTHING";

/// The store's epoch.
pub(crate) const EPOCH: &str = "SELECT value FROM meta WHERE key = 'epoch'";

/// Renews (or takes) a process's lease. ?1 node, ?2 incarnation, ?3 until.
pub(crate) const RENEW_LEASE: &str = "\
INSERT INTO node_leases (node, incarnation, until) VALUES (?1, ?2, ?3)
ON CONFLICT (node, incarnation) DO UPDATE SET until = excluded.until";

/// Ends a process's lease. ?1 node, ?2 incarnation.
pub(crate) const END_LEASE: &str = "\
DELETE FROM node_leases WHERE node = ?1 AND incarnation = ?2";

/// The processes whose lease ran out by ?1 (ms); the table holds a row per
/// running process, so it is read whole.
pub(crate) const EXPIRED_LEASES: &str = "\
SELECT node, incarnation, until FROM node_leases WHERE until <= ?1";

/// The leases of a node's processes. ?1 node.
pub(crate) const LEASES: &str = "\
SELECT incarnation, until FROM node_leases WHERE node = ?1";

/// Keeps a change for the node's durable readers; returns its row id. ?1
/// node name, ?2 incarnation, ?3 the change as JSON.
pub(crate) const KEEP_CHANGE: &str = "\
INSERT INTO kept_changes (node, incarnation, change) VALUES (?1, ?2, ?3)
RETURNING id";

/// Up to ?3 changes kept for node ?1 by its processes but those in ?2 (a
/// JSON array of incarnations), oldest first.
pub(crate) const KEPT_CHANGES: &str = "\
SELECT id, incarnation, change FROM kept_changes
WHERE node = ?1 AND incarnation NOT IN (SELECT value FROM json_each(?2))
ORDER BY id
LIMIT ?3";

/// Forgets the changes kept for node ?1 whose row ids are in ?2 (a JSON
/// array).
pub(crate) const FORGET_CHANGES: &str = "\
DELETE FROM kept_changes WHERE node = ?1 AND id IN (SELECT value FROM json_each(?2))";
