//! WebSocket and HTTP routes for `presence-core` on any axum app (in
//! progress: the `presence-axum` issue fills this crate; until then it only
//! re-exports the service it will mount).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use presence_core::Presence;
