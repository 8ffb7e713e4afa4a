-- What a user shows beyond the status (presence_core::Details as JSON: the
-- custom status, the kinds of session connected, the merged app state),
-- NULL when nothing: kept with every change, like `status`, so that a
-- scope's members are read without decoding records.
ALTER TABLE users ADD COLUMN details TEXT;

-- Pages of a scope's members run in order of user id as the services
-- compare ids (byte by byte), whatever the database's collation: the
-- primary key (scope, user_id) is rebuilt in that order, and a page is one
-- range of it.
ALTER TABLE scope_members ALTER COLUMN user_id TYPE TEXT COLLATE "C";
