//! PostgreSQL and SQLite stores for `presence-core` (in progress: the
//! `presence-sqlx` issue fills this crate; until then it only re-exports the
//! core contract it will implement).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use presence_core::PresenceStore;
