-- Each running process of a node holds a lease, renewed while it runs and
-- deleted when it shuts down (see the PostgreSQL migration). `incarnation`
-- is a u64 in decimal.
CREATE TABLE node_leases (
    node        TEXT    NOT NULL,
    incarnation TEXT    NOT NULL,
    until       INTEGER NOT NULL,  -- ms since the Unix epoch
    PRIMARY KEY (node, incarnation)
);
