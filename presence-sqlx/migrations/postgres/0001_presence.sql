-- Presence state, in the schema the application chose (the store sets
-- search_path to it). Times are milliseconds since the Unix epoch, from the
-- services' clocks.

-- One row per user ever seen. `record` (presence_core::UserRecord as JSON)
-- is the source of truth; every change rewrites the other columns with it,
-- for operators and for queries.
CREATE TABLE users (
    user_id       TEXT    PRIMARY KEY,
    record        TEXT    NOT NULL,
    rev           BIGINT  NOT NULL DEFAULT 0,         -- bumped by every write
    status        TEXT    NOT NULL DEFAULT 'OFFLINE', -- what observers see
    version       BIGINT  NOT NULL DEFAULT 0,         -- the status's version `v`
    manual_status TEXT,                               -- AWAY, BUSY or INVISIBLE
    manual_until  BIGINT,                             -- when the manual status clears
    last_seen     BIGINT,                             -- as observers may know it
    next_deadline BIGINT                              -- when time alone changes the user
);

-- The sweeper's question: who is due now?
CREATE INDEX users_next_deadline ON users (next_deadline, user_id)
    WHERE next_deadline IS NOT NULL;

-- One row per open session. Heartbeats update `last_heartbeat` and
-- `expires_at` only; neither is indexed, so those updates stay HOT (no index
-- writes), and the fill factor leaves room on each page for them.
CREATE TABLE sessions (
    session_id     TEXT   PRIMARY KEY,
    user_id        TEXT   NOT NULL,
    node           TEXT   NOT NULL,  -- the node name holding it
    login          TEXT   NOT NULL,
    opened_at      BIGINT NOT NULL,
    last_heartbeat BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL   -- last_heartbeat + session_ttl
) WITH (fillfactor = 70);

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_node ON sessions (node);

-- The present users of each scope (with a session or a pending linger).
CREATE TABLE scope_members (
    scope   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (scope, user_id)
);
