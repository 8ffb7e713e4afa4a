-- Each running process of a node holds a lease, renewed while it runs and
-- deleted when it shuts down: a new process of the same node (a rolling
-- deploy) leaves the sessions of one whose lease lives alone, and ends
-- those of one whose lease ran out. `incarnation` is a u64 in decimal.
CREATE TABLE node_leases (
    node        TEXT   NOT NULL,
    incarnation TEXT   NOT NULL,
    until       BIGINT NOT NULL,  -- ms since the Unix epoch
    PRIMARY KEY (node, incarnation)
);
