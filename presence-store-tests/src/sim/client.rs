//! What one browser tab shows: the rules of the shipped client
//! (`presence.js`), ported so the simulation judges what a user would see.
//!
//! The client keeps one entry per user (status and version) across
//! reconnects. A snapshot is authoritative for its scope: the users it
//! lists are applied unless the entry already holds a newer version, and
//! users known in the scope but missing from it are shown `OFFLINE`. A
//! snapshot may arrive in parts (all but the last marked "more"), applied
//! together. An event is applied only if its version is newer than the
//! entry's. A store epoch other than the one the client last saw drops
//! every version it holds: the next snapshot is taken whole.

use std::collections::{BTreeMap, BTreeSet};

use presence_core::{Status, UserPresence};

/// One user as the client shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    status: Status,
    /// `None` once an epoch change dropped it: any news is newer.
    v: Option<u64>,
}

/// The state of one tab's presence client.
#[derive(Clone, Debug, Default)]
pub struct ClientView {
    users: BTreeMap<String, Entry>,
    members: BTreeMap<String, BTreeSet<String>>,
    epoch: Option<String>,
    parts: BTreeMap<String, Vec<UserPresence>>,
}

impl ClientView {
    /// What the client shows for `user` (never heard of: `OFFLINE`).
    pub fn status(&self, user: &str) -> Status {
        self.users
            .get(user)
            .map_or(Status::Offline, |entry| entry.status)
    }

    /// A new socket said hello; `epoch` is the store's (`None` for a server
    /// that does not tell one).
    pub fn hello(&mut self, epoch: Option<&str>) {
        self.parts.clear();
        self.see_epoch(epoch);
    }

    fn see_epoch(&mut self, epoch: Option<&str>) {
        let Some(epoch) = epoch else { return };
        if self.epoch.as_deref() == Some(epoch) {
            return;
        }
        if self.epoch.is_some() {
            for entry in self.users.values_mut() {
                entry.v = None;
            }
        }
        self.epoch = Some(epoch.to_owned());
    }

    /// One part of a snapshot of `scope`; the last part (`more == false`)
    /// applies them all.
    pub fn snapshot_part(
        &mut self,
        scope: &str,
        users: &[UserPresence],
        more: bool,
        epoch: Option<&str>,
    ) {
        let mut gathered = self.parts.remove(scope).unwrap_or_default();
        gathered.extend_from_slice(users);
        if more {
            self.parts.insert(scope.to_owned(), gathered);
            return;
        }
        self.see_epoch(epoch);
        let mut listed = BTreeSet::new();
        for user in &gathered {
            let id = user.user_id.to_string();
            listed.insert(id.clone());
            self.members
                .entry(scope.to_owned())
                .or_default()
                .insert(id.clone());
            let newer = self
                .users
                .get(&id)
                .is_none_or(|entry| entry.v.is_none_or(|v| user.v >= v));
            if newer {
                self.users.insert(
                    id,
                    Entry {
                        status: user.status,
                        v: Some(user.v),
                    },
                );
            }
        }
        let known = self.members.get(scope).cloned().unwrap_or_default();
        for id in known {
            if listed.contains(&id) {
                continue;
            }
            if let Some(entry) = self.users.get_mut(&id) {
                entry.status = Status::Offline;
            }
        }
    }

    /// One event; false when it was stale (not applied).
    pub fn event(&mut self, scope: &str, user: &str, status: Status, v: u64) -> bool {
        if self
            .users
            .get(user)
            .is_some_and(|entry| entry.v.is_some_and(|known| v <= known))
        {
            return false;
        }
        self.members
            .entry(scope.to_owned())
            .or_default()
            .insert(user.to_owned());
        self.users
            .insert(user.to_owned(), Entry { status, v: Some(v) });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, status: Status, v: u64) -> UserPresence {
        UserPresence {
            user_id: id.into(),
            status,
            last_seen: None,
            v,
        }
    }

    #[test]
    fn stale_events_and_older_snapshot_entries_are_dropped() {
        let mut view = ClientView::default();
        view.snapshot_part("acme", &[user("a", Status::Online, 3)], false, None);
        assert!(!view.event("acme", "a", Status::Away, 3));
        assert!(view.event("acme", "a", Status::Away, 4));
        view.snapshot_part("acme", &[user("a", Status::Online, 2)], false, None);
        assert_eq!(view.status("a"), Status::Away);
    }

    #[test]
    fn a_new_epoch_drops_versions_and_takes_the_snapshot_whole() {
        let mut view = ClientView::default();
        view.hello(Some("e1"));
        view.snapshot_part("acme", &[user("a", Status::Online, 9)], false, Some("e1"));
        view.hello(Some("e2"));
        view.snapshot_part("acme", &[user("a", Status::Busy, 1)], false, Some("e2"));
        assert_eq!(view.status("a"), Status::Busy);
        assert!(view.event("acme", "a", Status::Away, 2));
    }

    #[test]
    fn parts_apply_together_and_missing_members_go_offline() {
        let mut view = ClientView::default();
        view.snapshot_part(
            "acme",
            &[user("a", Status::Online, 1), user("b", Status::Online, 1)],
            false,
            None,
        );
        view.snapshot_part("acme", &[user("a", Status::Online, 1)], true, None);
        assert_eq!(
            view.status("b"),
            Status::Online,
            "not applied before the last part"
        );
        view.snapshot_part("acme", &[], false, None);
        assert_eq!(view.status("b"), Status::Offline);
    }
}
