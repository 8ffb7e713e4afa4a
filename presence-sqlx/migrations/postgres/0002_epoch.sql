-- Facts about the store itself. `epoch` is new with every schema (and with
-- every store whose data was wiped): users' versions start again with it,
-- so clients holding versions of another epoch drop them.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (key, value)
VALUES ('epoch', md5(random()::text || clock_timestamp()::text));
