//! [`PgConfig`] and [`SqliteConfig`]: where a store connects and how it
//! behaves.

use std::time::Duration;

/// How often buffered heartbeats are written by default.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The longest wait for a pooled connection by default.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a [`crate::PgStore`] connects, where its tables live, and how it
/// batches.
#[cfg(feature = "postgres")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// The schema holding the store's tables (default `presence`): created
    /// if missing, and set as the connections' `search_path`. Lower-case
    /// ASCII letters, digits and `_`, starting with a letter or `_`, at
    /// most 63 bytes. Nodes on one database and schema are one cluster;
    /// another schema is another, independent store.
    pub schema: String,
    /// How often buffered heartbeats are written, all in one statement
    /// (default 1 s). Keep it well below `session_ttl - heartbeat_interval`:
    /// a heartbeat reaches the database at most this late.
    pub flush_interval: Duration,
    /// Longest wait for a pooled connection (default 2 s); past it a call
    /// fails with [`presence_core::store::StoreError::Timeout`].
    pub acquire_timeout: Duration,
    /// Most connections in the pool (default 10), besides the one each
    /// joined node's listener holds.
    pub max_connections: u32,
    /// Run the embedded migrations on connect (default `true`).
    pub migrate: bool,
}

#[cfg(feature = "postgres")]
impl PgConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: "presence".into(),
            flush_interval: FLUSH_INTERVAL,
            acquire_timeout: ACQUIRE_TIMEOUT,
            max_connections: 10,
            migrate: true,
        }
    }

    /// Keeps the tables in `schema`.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Writes buffered heartbeats this often.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Waits at most this long for a pooled connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Pools at most this many connections.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Whether `connect` runs the migrations (call
    /// [`crate::PgStore::migrate`] yourself otherwise).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}

/// How a [`crate::SqliteStore`] opens its database file.
#[cfg(feature = "sqlite")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteConfig {
    /// `sqlite://PATH` (created if missing), or a bare path.
    pub url: String,
    /// How often buffered heartbeats are written, all in one statement
    /// (default 1 s).
    pub flush_interval: Duration,
    /// Longest wait for a pooled connection, and for SQLite's own locks
    /// (default 2 s).
    pub acquire_timeout: Duration,
    /// Connections that only read (default 4); there is always exactly one
    /// writer connection.
    pub max_readers: u32,
    /// Run the embedded migrations on connect (default `true`).
    pub migrate: bool,
}

#[cfg(feature = "sqlite")]
impl SqliteConfig {
    /// The defaults for `url` (`sqlite://PATH` or a bare path).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            flush_interval: FLUSH_INTERVAL,
            acquire_timeout: ACQUIRE_TIMEOUT,
            max_readers: 4,
            migrate: true,
        }
    }

    /// Writes buffered heartbeats this often.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Waits at most this long for a connection or a lock.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether `connect` runs the migrations (call
    /// [`crate::SqliteStore::migrate`] yourself otherwise).
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }
}
