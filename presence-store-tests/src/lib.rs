//! The conformance suite every `PresenceStore` must pass (placeholder).
#![deny(missing_docs)]
