//! What one browser tab shows: the rules of the shipped client
//! (`presence.js`), ported so the simulation judges what a user would see.
//!
//! The client keeps, per scope it watches, each user's entry (status and
//! version), across reconnects. A user shows the status of their newest
//! entry that is not `OFFLINE` in any scope, else `OFFLINE`: a user who
//! left one scope is still shown as they are in another.
//!
//! A snapshot is authoritative for its scope: a listed user's entry is
//! replaced unless it already holds a newer version; a listed user with
//! version 0 is not in the scope (the server reveals nothing more), and
//! users known in the scope but missing from it are `OFFLINE` there. A
//! snapshot may arrive in parts (all but the last marked "more"), applied
//! together. An event replaces its scope's entry only if its version is
//! newer. A store epoch other than the one the client last saw drops every
//! version it holds: the next snapshot is taken whole.

use std::collections::BTreeMap;

use presence_core::{Status, UserPresence};

/// One user as one scope shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    status: Status,
    /// `None` once an epoch change dropped it: any news is newer.
    v: Option<u64>,
}

impl Entry {
    fn older_than(&self, v: u64) -> bool {
        self.v.is_none_or(|known| known < v)
    }
}

/// The state of one tab's presence client.
#[derive(Clone, Debug, Default)]
pub struct ClientView {
    /// scope → user → entry
    scopes: BTreeMap<String, BTreeMap<String, Entry>>,
    epoch: Option<String>,
    parts: BTreeMap<String, Vec<UserPresence>>,
}

impl ClientView {
    /// What the client shows for `user` (never heard of: `OFFLINE`).
    pub fn status(&self, user: &str) -> Status {
        self.scopes
            .values()
            .filter_map(|users| users.get(user))
            .filter(|entry| entry.status != Status::Offline)
            .max_by_key(|entry| entry.v)
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
            for entry in self
                .scopes
                .values_mut()
                .flat_map(|users| users.values_mut())
            {
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
        let known = self.scopes.entry(scope.to_owned()).or_default();
        let mut listed = Vec::new();
        for user in &gathered {
            let id = user.user_id.to_string();
            listed.push(id.clone());
            if user.v == 0 {
                // Not in the scope: nothing about the user is shown here.
                if let Some(entry) = known.get_mut(&id) {
                    entry.status = Status::Offline;
                }
                continue;
            }
            if known
                .get(&id)
                .is_none_or(|entry| entry.older_than(user.v) || entry.v == Some(user.v))
            {
                known.insert(
                    id,
                    Entry {
                        status: user.status,
                        v: Some(user.v),
                    },
                );
            }
        }
        for (id, entry) in known.iter_mut() {
            if !listed.contains(id) {
                entry.status = Status::Offline;
            }
        }
    }

    /// One event; false when it was stale (not applied).
    pub fn event(&mut self, scope: &str, user: &str, status: Status, v: u64) -> bool {
        let known = self.scopes.entry(scope.to_owned()).or_default();
        if known.get(user).is_some_and(|entry| !entry.older_than(v)) {
            return false;
        }
        known.insert(user.to_owned(), Entry { status, v: Some(v) });
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
            details: None,
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

    #[test]
    fn a_user_who_left_one_scope_shows_as_they_are_in_another() {
        let mut view = ClientView::default();
        view.snapshot_part("acme", &[user("a", Status::Online, 1)], false, None);
        assert!(
            view.event("team-x", "a", Status::Online, 2),
            "joined team-x"
        );
        assert!(view.event("team-x", "a", Status::Offline, 3), "left team-x");
        assert_eq!(view.status("a"), Status::Online);
        assert!(view.event("acme", "a", Status::Away, 4));
        assert_eq!(view.status("a"), Status::Away);
        view.snapshot_part("team-x", &[user("a", Status::Offline, 0)], false, None);
        assert_eq!(
            view.status("a"),
            Status::Away,
            "not in team-x: nothing said"
        );
        assert!(view.event("acme", "a", Status::Offline, 5));
        assert_eq!(view.status("a"), Status::Offline);
    }
}
