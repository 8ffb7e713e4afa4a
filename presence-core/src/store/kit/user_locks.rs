//! Striped per-user locks of this process.
//!
//! The backend makes each change atomic (a row lock, a compare-and-set);
//! these locks only keep this process's changes to one user in a line, so
//! that many tasks racing on one user wait here instead of each holding a
//! pooled connection, or retrying a compare-and-set, while they wait.

use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};

use crate::ids::UserId;

/// How many locks the users share.
const STRIPES: usize = 1024;

/// Striped per-user locks.
#[derive(Debug)]
pub struct UserLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for UserLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl UserLocks {
    /// Waits for `user`'s turn.
    pub async fn lock(&self, user: &UserId) -> MutexGuard<'_, ()> {
        let stripe = self.hasher.hash_one(user) as usize % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}
