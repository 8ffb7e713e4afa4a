-- What a user shows beyond the status (presence_core::Details as JSON: the
-- custom status, the kinds of session connected, the merged app state),
-- NULL when nothing: kept with every change, like `status`, so that a
-- scope's members are read without decoding records. (SQLite compares
-- text byte by byte: pages of a scope's members run in the services'
-- order of user ids on the primary key (scope, user_id) as it is.)
ALTER TABLE users ADD COLUMN details TEXT;
