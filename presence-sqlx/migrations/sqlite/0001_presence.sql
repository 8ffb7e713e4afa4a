-- Presence state in a SQLite file. Times are milliseconds since the Unix
-- epoch, from the service's clock.

-- One row per user ever seen. `record` (presence_core::UserRecord as JSON)
-- is the source of truth; every change rewrites the other columns with it,
-- for operators and for queries.
CREATE TABLE users (
    user_id       TEXT    PRIMARY KEY NOT NULL,
    record        TEXT    NOT NULL,
    rev           INTEGER NOT NULL DEFAULT 0,         -- bumped by every write
    status        TEXT    NOT NULL DEFAULT 'OFFLINE', -- what observers see
    version       INTEGER NOT NULL DEFAULT 0,         -- the status's version `v`
    manual_status TEXT,                               -- AWAY, BUSY or INVISIBLE
    manual_until  INTEGER,                            -- when the manual status clears
    last_seen     INTEGER,                            -- as observers may know it
    next_deadline INTEGER                             -- when time alone changes the user
);

-- The sweeper's question: who is due now?
CREATE INDEX users_next_deadline ON users (next_deadline, user_id)
    WHERE next_deadline IS NOT NULL;

-- One row per open session; heartbeats update the unindexed
-- `last_heartbeat` and `expires_at`.
CREATE TABLE sessions (
    session_id     TEXT    PRIMARY KEY NOT NULL,
    user_id        TEXT    NOT NULL,
    node           TEXT    NOT NULL,  -- the node name holding it
    login          TEXT    NOT NULL,
    opened_at      INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL   -- last_heartbeat + session_ttl
);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_node ON sessions (node);

-- The present users of each scope (with a session or a pending linger).
CREATE TABLE scope_members (
    scope   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (scope, user_id)
) WITHOUT ROWID;
