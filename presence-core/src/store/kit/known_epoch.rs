//! The store's epoch as this process last read it.

use std::sync::Mutex;

use crate::ids::Epoch;

/// The epoch a store last read from its backend: what
/// [`PresenceStore::epoch`](crate::store::PresenceStore::epoch) answers
/// without I/O, and what a fresh reading is compared with to tell that the
/// backend lost its data.
#[derive(Debug)]
pub struct KnownEpoch(Mutex<Epoch>);

impl KnownEpoch {
    /// Starts from `epoch` (read at connect).
    pub fn new(epoch: Epoch) -> Self {
        Self(Mutex::new(epoch))
    }

    /// The epoch last read.
    pub fn get(&self) -> Epoch {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `read`, a fresh reading; whether it differs from the one
    /// before (the backend lost its data, or is new).
    pub fn observe(&self, read: Epoch) -> bool {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *known != read;
        *known = read;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_reading_counts_as_a_change() {
        let known = KnownEpoch::new(Epoch::from("a"));
        assert!(!known.observe(Epoch::from("a")));
        assert!(known.observe(Epoch::from("b")));
        assert_eq!(known.get(), Epoch::from("b"));
        assert!(!known.observe(Epoch::from("b")));
    }
}
