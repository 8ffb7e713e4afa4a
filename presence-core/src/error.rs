//! The error of the [`crate::Presence`] service.

use chrono::{DateTime, Utc};

use crate::config::ConfigError;
use crate::store::StoreError;

/// Why a call to the presence service failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed or refused the change; see its `source()`.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configuration is invalid.
    #[error("invalid presence configuration: {0}")]
    Config(#[from] ConfigError),
    /// A manual status was asked to expire at a time already past.
    #[error("the manual status would expire at {until}, which is not in the future")]
    ExpiryInPast {
        /// The rejected expiry.
        until: DateTime<Utc>,
    },
    /// The service has been shut down.
    #[error("the presence service has shut down")]
    ShutDown,
}

impl Error {
    /// Whether the session this call named is gone (ended, lapsed, logged
    /// out): the caller should close the connection it stands for.
    pub fn is_session_gone(&self) -> bool {
        matches!(self, Error::Store(StoreError::SessionNotFound))
    }

    /// Whether the login has logged out (it opens no session).
    pub fn is_logged_out(&self) -> bool {
        matches!(self, Error::Store(StoreError::LoggedOut))
    }
}
