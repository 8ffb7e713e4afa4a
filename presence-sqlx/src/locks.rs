//! Striped per-user locks of this process.
//!
//! The database makes each change atomic (a row lock, a single writer);
//! these locks only keep this process's changes to one user in a line, so
//! that many tasks racing on one user wait here instead of each holding a
//! pooled connection while it waits for the row.

use std::hash::BuildHasher;

use presence_core::UserId;
use tokio::sync::{Mutex, MutexGuard};

/// How many locks the users share.
const STRIPES: usize = 1024;

pub(crate) struct UserLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl UserLocks {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }

    /// Waits for `user`'s turn.
    pub(crate) async fn lock(&self, user: &UserId) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(user) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}
