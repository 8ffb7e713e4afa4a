//! The error of the [`crate::Presence`] service.

use chrono::{DateTime, Utc};

use crate::config::ConfigError;
use crate::details::DetailsError;
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
    /// A custom status, session kind or app state was refused; its
    /// [`DetailsError::code`] is stable.
    #[error(transparent)]
    Details(#[from] DetailsError),
    /// A members cursor that this service did not hand out.
    #[error("the cursor is not one a members page gave")]
    BadCursor,
    /// A page size outside `1..=max`.
    #[error("limit {limit} is not between 1 and {max}")]
    BadLimit {
        /// The limit asked for.
        limit: usize,
        /// The largest page.
        max: usize,
    },
    /// [`PresenceBuilder::durable_changes`](crate::PresenceBuilder::durable_changes)
    /// was asked of a store that cannot keep changes.
    #[error("the store cannot keep changes, so they cannot be told at least once")]
    ChangesNotKept,
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
