//! The read side of [`Presence`]: statuses, scope snapshots and
//! subscriptions.

use crate::error::Error;
use crate::event::Snapshot;
use crate::event::UserPresence;
use crate::fanout::Subscription;
use crate::ids::{Epoch, ScopeId, UserId};
use crate::service::Presence;
use crate::status::Status;

impl Presence {
    /// One user as observers see them.
    pub async fn status(&self, user: &UserId) -> Result<UserPresence, Error> {
        let mut views = self
            .timed(
                "load_many",
                self.inner.store.load_many(std::slice::from_ref(user)),
            )
            .await?;
        Ok(views
            .pop()
            .map_or_else(|| UserPresence::unknown(user.clone()), |view| view.presence))
    }

    /// Several users as observers see them, in the order asked.
    pub async fn statuses(&self, users: &[UserId]) -> Result<Vec<UserPresence>, Error> {
        let views = self
            .timed("load_many", self.inner.store.load_many(users))
            .await?;
        Ok(views.into_iter().map(|view| view.presence).collect())
    }

    /// Every member of `scope` who is not `OFFLINE`.
    ///
    /// When the store's calls cost I/O and `scope` is watched on this node,
    /// the answer comes from the node's view of the scope, kept from the
    /// events the node hears: the sockets watching one scope read it from
    /// the store once between them (concurrent first snapshots share that
    /// read), and again only after the feed may have lost events or the
    /// store's epoch changed. A member's `last_seen` is then the one their
    /// last event carried.
    pub async fn snapshot(&self, scope: &ScopeId) -> Result<Snapshot, Error> {
        let read = || self.timed("scope_members", self.inner.store.scope_members(scope));
        let members = match self.inner.hub.views_for(scope) {
            Some(views) => {
                views
                    .snapshot(scope, || self.inner.store.epoch(), read)
                    .await?
            }
            None => read().await?,
        };
        Ok(Snapshot {
            scope: scope.clone(),
            users: members
                .into_iter()
                .filter(|member| member.status != Status::Offline)
                .collect(),
            occupancy: None,
            // Read after the members: a snapshot is never labelled with an
            // epoch older than its data.
            epoch: self.epoch(),
        })
    }

    /// The named users of `scope`, each listed (a user not known to be in
    /// the scope shows as `OFFLINE`, version 0, with nothing more revealed).
    pub async fn snapshot_of(&self, scope: &ScopeId, users: &[UserId]) -> Result<Snapshot, Error> {
        let views = self
            .timed("load_many", self.inner.store.load_many(users))
            .await?;
        Ok(Snapshot {
            scope: scope.clone(),
            users: views
                .into_iter()
                .map(|view| {
                    if view.scopes.contains(scope) {
                        view.presence
                    } else {
                        UserPresence::unknown(view.presence.user_id)
                    }
                })
                .collect(),
            occupancy: None,
            epoch: self.epoch(),
        })
    }

    /// The store's epoch (see [`Epoch`]): versions of another epoch are not
    /// comparable with this one's.
    pub fn epoch(&self) -> Epoch {
        self.inner.store.epoch()
    }

    /// A subscription that watches nothing yet; add scopes with
    /// [`Subscription::watch_scope`] and [`Subscription::watch_users`].
    pub fn subscribe(&self) -> Subscription {
        self.inner.hub.subscribe()
    }

    /// Watches a whole scope: subscribes first, then reads the snapshot, so
    /// no change falls between the two (drop events whose `v` is not newer
    /// than the snapshot's).
    pub async fn watch(&self, scope: &ScopeId) -> Result<(Subscription, Snapshot), Error> {
        let mut subscription = self.subscribe();
        subscription.watch_scope(scope.clone());
        let snapshot = self.snapshot(scope).await?;
        Ok((subscription, snapshot))
    }

    /// Watches only the named users of a scope, like [`Presence::watch`].
    pub async fn watch_users(
        &self,
        scope: &ScopeId,
        users: &[UserId],
    ) -> Result<(Subscription, Snapshot), Error> {
        let mut subscription = self.subscribe();
        subscription.watch_users(scope.clone(), users.iter().cloned());
        let snapshot = self.snapshot_of(scope, users).await?;
        Ok((subscription, snapshot))
    }
}
