//! Changes a store keeps until they are acknowledged, for store
//! implementers (see [kept changes](crate::store#kept-changes)).

use std::fmt;
use std::sync::Arc;

use crate::changes::Change;
use crate::store::{StoreError, Transition};

/// Where a store keeps one change until it is acknowledged: opaque text
/// the store chose (a row id, a stream entry's id), meaningful to that
/// store only.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChangeId(Arc<str>);

impl ChangeId {
    /// An id as the store wrote it.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as the store wrote it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChangeId({:?})", &*self.0)
    }
}

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One change a store keeps, as
/// [`PresenceStore::kept_changes`](crate::store::PresenceStore::kept_changes)
/// reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptChange {
    /// The process of the node that made it.
    pub incarnation: u64,
    /// The change, its [`Change::id`] set.
    pub change: Change,
}

impl KeptChange {
    /// What a store writes for `transition`: the change as JSON.
    pub fn encode(transition: &Transition) -> Result<String, StoreError> {
        serde_json::to_string(&Change::of(transition)).map_err(StoreError::corrupt)
    }

    /// A change as [`KeptChange::encode`] wrote it, kept under `id` by
    /// process `incarnation`.
    pub fn decode(id: ChangeId, incarnation: u64, json: &str) -> Result<Self, StoreError> {
        let mut change: Change = serde_json::from_str(json).map_err(StoreError::corrupt)?;
        change.id = Some(id);
        Ok(Self {
            incarnation,
            change,
        })
    }
}
