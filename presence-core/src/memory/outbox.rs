//! The memory store's kept changes (see [kept changes](crate::store#kept-changes)):
//! they outlive a service rebuilt on the same store in one process, not
//! the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::changes::{Change, ChangeId, KeptChange};
use crate::ids::{NodeId, NodeName};
use crate::store::{StoreError, Transition};

/// Each node name's kept changes, by a number that grows with each.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    kept: Mutex<OutboxState>,
}

#[derive(Debug, Default)]
struct OutboxState {
    next: u64,
    nodes: HashMap<NodeName, BTreeMap<u64, (u64, Change)>>,
}

impl Outbox {
    /// Keeps what `transition` changed for `node`; sets its id.
    pub(super) fn keep(&self, node: &NodeId, transition: &mut Transition) {
        let mut state = self.state();
        state.next += 1;
        let number = state.next;
        let id = ChangeId::new(number.to_string());
        transition.kept = Some(id);
        let change = Change::of(transition);
        state
            .nodes
            .entry(node.name.clone())
            .or_default()
            .insert(number, (node.incarnation, change));
    }

    pub(super) fn read(&self, name: &NodeName, except: &[u64], limit: usize) -> Vec<KeptChange> {
        let state = self.state();
        let Some(kept) = state.nodes.get(name) else {
            return Vec::new();
        };
        kept.values()
            .filter(|(incarnation, _)| !except.contains(incarnation))
            .take(limit)
            .map(|(incarnation, change)| KeptChange {
                incarnation: *incarnation,
                change: change.clone(),
            })
            .collect()
    }

    pub(super) fn forget(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        let mut state = self.state();
        let Some(kept) = state.nodes.get_mut(name) else {
            return Ok(());
        };
        for id in ids {
            let number: u64 = id.as_str().parse().map_err(|_| {
                StoreError::Backend(format!("{id:?} is not a memory store's change id").into())
            })?;
            kept.remove(&number);
        }
        if kept.is_empty() {
            state.nodes.remove(name);
        }
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, OutboxState> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
