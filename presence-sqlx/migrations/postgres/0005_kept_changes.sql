-- Changes kept for the nodes' durable readers (presence_core's kept
-- changes): a change asked to be kept is inserted in the transaction that
-- makes it, so it is kept exactly when it commits, and deleted once the
-- node's readers acknowledged it. `node` is the name of the node that made
-- it, `incarnation` its process (a u64 stored bit for bit as BIGINT), and
-- `change` the change as JSON (presence_core::KeptChange::encode); `id` is
-- its ChangeId. A user's changes take ids in the order they were made
-- (the user's row lock orders them).
CREATE TABLE kept_changes (
    id          BIGSERIAL PRIMARY KEY,
    node        TEXT   NOT NULL,
    incarnation BIGINT NOT NULL,
    change      TEXT   NOT NULL
);

-- A node's changes, oldest first.
CREATE INDEX kept_changes_node ON kept_changes (node, id);
