-- Changes kept for the node's durable readers, until they acknowledge them
-- (see the PostgreSQL migration). `incarnation` is a u64 stored bit for
-- bit as a 64-bit integer. AUTOINCREMENT: an id is never used again, so a
-- late acknowledgement cannot forget a newer change.
CREATE TABLE kept_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node        TEXT    NOT NULL,
    incarnation INTEGER NOT NULL,
    change      TEXT    NOT NULL
);

-- A node's changes, oldest first.
CREATE INDEX kept_changes_node ON kept_changes (node, id);
