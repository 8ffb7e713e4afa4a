//! A Redis store for `presence-core` that makes several app servers one
//! presence cluster (in progress: the `presence-redis` issue fills this
//! crate; until then it only re-exports the core contract it will implement).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use presence_core::PresenceStore;
