//! Node-local scope views: what this node's watchers of a scope see,
//! kept in memory from the events the node hears, so that the sockets
//! watching one scope read its members from the store once between them,
//! not once each.
//!
//! A view exists while its scope is watched on this node (the hub's entry
//! for it, and with it the cluster feed's subscription, lives as long).
//! Its first snapshot reads the store; concurrent snapshots wait for that
//! one read (single flight). Every event the node hears for the scope,
//! from its own changes or from the feed, updates the view, newest `v`
//! per user winning, so events that race the read are neither lost nor
//! undone. When events may have been missed (the feed lagged or dropped,
//! the store lost its data), the view is read again at its next snapshot;
//! a view read under another store epoch is never served.
//!
//! A member's `last_seen` in a view is the one their last event carried, as
//! the node's live watchers have it; a store read may show a newer one
//! (activity moves `last_seen` without a new version).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;

use crate::event::PresenceEvent;
use crate::event::UserPresence;
use crate::ids::{Epoch, ScopeId, UserId};
use crate::status::Status;
use crate::store::StoreError;

/// The views of the scopes this node watches.
#[derive(Default)]
pub(crate) struct ScopeViews {
    views: DashMap<ScopeId, Arc<ScopeView>>,
}

#[derive(Default)]
struct ScopeView {
    state: Mutex<ViewState>,
    /// Held by the one snapshot that reads the store; the others wait.
    reading: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct ViewState {
    /// Every user this view has heard of, `OFFLINE` ones included (so a
    /// late, older event cannot bring back a user who left).
    members: HashMap<UserId, UserPresence>,
    /// The epoch of the read the view is built on; `None` until a read
    /// completed, and after events may have been missed.
    read_under: Option<Epoch>,
    /// Grows whenever events may have been missed: a read that began
    /// before cannot make the view current.
    generation: u64,
}

impl ScopeView {
    fn state(&self) -> MutexGuard<'_, ViewState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ViewState {
    fn note(&mut self, member: UserPresence) {
        match self.members.get_mut(&member.user_id) {
            Some(known) if known.v >= member.v => {}
            Some(known) => *known = member,
            None => {
                self.members.insert(member.user_id.clone(), member);
            }
        }
    }

    /// Events may have been missed: the view is not current, and a read
    /// already under way cannot make it so.
    fn missed_events(&mut self) {
        self.read_under = None;
        self.generation += 1;
    }

    fn current(&self, epoch: &Epoch) -> bool {
        self.read_under.as_ref() == Some(epoch)
    }

    fn present(&self) -> Vec<UserPresence> {
        self.members
            .values()
            .filter(|member| member.status != Status::Offline)
            .cloned()
            .collect()
    }
}

impl ScopeViews {
    /// Counts an event this node heard into its scope's view, if any.
    pub(crate) fn note(&self, event: &PresenceEvent) {
        if let Some(view) = self.views.get(&event.scope) {
            view.state().note(UserPresence {
                user_id: event.user_id.clone(),
                status: event.status,
                last_seen: event.last_seen,
                v: event.v,
                details: event.details.clone(),
            });
        }
    }

    /// The members of `scope` who are not `OFFLINE`, from its view when the
    /// view is current under `epoch` (the store's now), else from `read`
    /// (the store), which then becomes the view.
    pub(crate) async fn snapshot<F, Fut>(
        &self,
        scope: &ScopeId,
        epoch: impl Fn() -> Epoch,
        read: F,
    ) -> Result<Vec<UserPresence>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<UserPresence>, StoreError>>,
    {
        let view = self.views.entry(scope.clone()).or_default().clone();
        {
            let state = view.state();
            if state.current(&epoch()) {
                return Ok(state.present());
            }
        }
        let _reading = view.reading.lock().await;
        let generation = {
            let mut state = view.state();
            if state.current(&epoch()) {
                return Ok(state.present());
            }
            // Read afresh: who left meanwhile is not in the read, and
            // events heard from now on are kept and merged.
            state.members.clear();
            state.generation
        };
        let epoch_before = epoch();
        let members = read().await?;
        let mut state = view.state();
        for member in members {
            state.note(member);
        }
        // Current only if nothing was missed during the read, and the
        // epoch did not change under it.
        if state.generation == generation && epoch() == epoch_before {
            state.read_under = Some(epoch_before);
        }
        Ok(state.present())
    }

    /// Events of `scope` may have been missed: its view is read again at
    /// its next snapshot.
    pub(crate) fn stale(&self, scope: &ScopeId) {
        if let Some(view) = self.views.get(scope) {
            view.state().missed_events();
        }
    }

    /// Events of every scope may have been missed.
    pub(crate) fn all_stale(&self) {
        for view in self.views.iter() {
            view.state().missed_events();
        }
    }

    /// Nobody on this node watches `scope` any more (nor will the feed
    /// tell it of the scope): its view goes.
    pub(crate) fn forget(&self, scope: &ScopeId) {
        self.views.remove(scope);
    }

    /// How many scopes have a view.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.views.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn member(user: &str, status: Status, v: u64) -> UserPresence {
        UserPresence {
            user_id: user.into(),
            status,
            last_seen: None,
            v,
            details: None,
        }
    }

    fn event(user: &str, status: Status, v: u64) -> PresenceEvent {
        PresenceEvent {
            scope: "acme".into(),
            user_id: user.into(),
            status,
            last_seen: None,
            v,
            at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            details: None,
        }
    }

    fn names(mut members: Vec<UserPresence>) -> Vec<(String, u64)> {
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        members
            .into_iter()
            .map(|m| (m.user_id.to_string(), m.v))
            .collect()
    }

    #[tokio::test]
    async fn a_view_is_read_once_then_kept_by_events() {
        let views = ScopeViews::default();
        let scope = ScopeId::from("acme");
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(vec![member("alice", Status::Online, 3)])
        };
        let epoch = || Epoch::from("e1");
        views.snapshot(&scope, epoch, read).await.expect("read");
        views.note(&event("bob", Status::Away, 1));
        views.note(&event("alice", Status::Offline, 4));
        views.note(&event("alice", Status::Online, 2)); // late and stale
        let seen = views.snapshot(&scope, epoch, read).await.expect("view");
        assert_eq!(names(seen), [("bob".to_owned(), 1)]);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stale_view_or_a_new_epoch_is_read_again_and_who_left_meanwhile_is_gone() {
        let views = ScopeViews::default();
        let scope = ScopeId::from("acme");
        let first = || async {
            Ok(vec![
                member("alice", Status::Online, 3),
                member("bob", Status::Online, 1),
            ])
        };
        views
            .snapshot(&scope, || Epoch::from("e1"), first)
            .await
            .expect("read");
        // Bob's leave was missed; the feed says so.
        views.stale(&scope);
        let second = || async { Ok(vec![member("alice", Status::Online, 3)]) };
        let seen = views
            .snapshot(&scope, || Epoch::from("e1"), second)
            .await
            .expect("read");
        assert_eq!(names(seen), [("alice".to_owned(), 3)]);
        // The store lost its data: versions start again, the view is read
        // again though nothing said it was stale.
        let third = || async { Ok(vec![member("carol", Status::Busy, 1)]) };
        let seen = views
            .snapshot(&scope, || Epoch::from("e2"), third)
            .await
            .expect("read");
        assert_eq!(names(seen), [("carol".to_owned(), 1)]);
    }

    #[tokio::test]
    async fn events_that_race_the_read_are_kept_and_a_read_that_missed_events_is_not_trusted() {
        let views = Arc::new(ScopeViews::default());
        let scope = ScopeId::from("acme");
        let read = {
            let views = views.clone();
            move || async move {
                // While the store is read: alice changes (v 4), and the
                // feed says events were missed.
                views.note(&event("alice", Status::Busy, 4));
                views.stale(&"acme".into());
                Ok(vec![member("alice", Status::Online, 3)])
            }
        };
        let seen = views
            .snapshot(&scope, || Epoch::from("e1"), read)
            .await
            .expect("read");
        assert_eq!(names(seen), [("alice".to_owned(), 4)]);
        let reads = AtomicUsize::new(0);
        views
            .snapshot(
                &scope,
                || Epoch::from("e1"),
                || async {
                    reads.fetch_add(1, Ordering::SeqCst);
                    Ok(Vec::new())
                },
            )
            .await
            .expect("read");
        assert_eq!(reads.load(Ordering::SeqCst), 1, "read again");
        views.forget(&scope);
        assert_eq!(views.len(), 0);
    }

    #[tokio::test]
    async fn concurrent_snapshots_share_one_read() {
        let views = Arc::new(ScopeViews::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut waiting = Vec::new();
        for _ in 0..20 {
            let views = views.clone();
            let reads = reads.clone();
            let mut released = released.clone();
            waiting.push(tokio::spawn(async move {
                views
                    .snapshot(
                        &"acme".into(),
                        || Epoch::from("e1"),
                        || async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|go| *go).await;
                            Ok(vec![member("alice", Status::Online, 1)])
                        },
                    )
                    .await
            }));
        }
        tokio::task::yield_now().await;
        release.send(true).expect("waiters");
        for task in waiting {
            assert_eq!(task.await.expect("ran").expect("read").len(), 1);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }
}
