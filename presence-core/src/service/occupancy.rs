//! Counting large scopes for their watchers who asked for counts
//! (docs/rules.md#large-scopes): once per interval, each such scope that
//! heard an event is counted from its members.

use std::sync::Weak;
use std::time::Duration;

use crate::error::Error;
use crate::event::{Snapshot, UserPresence};
use crate::fanout::{Counted, Subscription};
use crate::ids::{ScopeId, UserId};
use crate::occupancy::Occupancy;
use crate::service::{Inner, Presence};

/// Starts the task that counts the changed scopes watched as counts; it
/// ends with the service.
pub(super) fn spawn(inner: Weak<Inner>, every: Duration) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(inner) = inner.upgrade() else { return };
            if inner.is_shut_down() {
                return;
            }
            let presence = Presence::from_inner(inner);
            for scope in presence.inner.hub.scopes_to_count() {
                if let Err(error) = presence.counted_snapshot(&scope, &[]).await {
                    tracing::debug!(%scope, %error, "counting a large scope failed");
                    // Counted again at the next tick.
                    presence.inner.hub.count_again(&scope);
                }
            }
        }
    });
}

impl Presence {
    /// Watches a scope as counts while it is large: subscribes first, then
    /// reads the snapshot, as [`Presence::watch`]. While the scope has more
    /// members than the large-scope threshold
    /// ([`crate::PresenceBuilder::large_scope_threshold`]), the snapshot
    /// holds its [`Occupancy`] and the `named` users, and the subscription
    /// gets counts at most once per interval plus the named users' events;
    /// while it is small, it is a whole-scope watch.
    pub async fn watch_counts(
        &self,
        scope: &ScopeId,
        named: &[UserId],
    ) -> Result<(Subscription, Snapshot), Error> {
        let mut subscription = self.subscribe();
        subscription.watch_counts(scope.clone(), named.iter().cloned());
        let snapshot = self.counted_snapshot(scope, named).await?;
        Ok((subscription, snapshot))
    }

    /// The snapshot of a scope watched as counts: every member while it is
    /// small; its counts and the `named` users while it is large.
    pub async fn counted_snapshot(
        &self,
        scope: &ScopeId,
        named: &[UserId],
    ) -> Result<Snapshot, Error> {
        let mut snapshot = self.snapshot(scope).await?;
        let counts = Occupancy::count(scope, &snapshot.users);
        if let Counted::Large(occupancy) = self.inner.hub.note_counts(scope, counts) {
            let members = std::mem::take(&mut snapshot.users);
            snapshot.users = named
                .iter()
                .map(|user| {
                    members
                        .iter()
                        .find(|member| member.user_id == *user)
                        .cloned()
                        .unwrap_or_else(|| UserPresence::unknown(user.clone()))
                })
                .collect();
            snapshot.occupancy = Some(occupancy);
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::{Delivery, ManualClock, Presence, SessionSpec, Subscription};

    async fn next(watcher: &mut Subscription) -> Delivery {
        tokio::time::timeout(Duration::from_secs(2), watcher.recv())
            .await
            .expect("a delivery in time")
            .expect("open")
    }

    /// A scope that turns small and then large again with the very counts
    /// it had before still tells its counting watchers: they show members
    /// since it turned small, and must learn to show counts again.
    #[tokio::test]
    async fn a_scope_large_again_with_the_same_counts_sends_them_again() {
        let presence = Presence::builder()
            .clock(Arc::new(ManualClock::default()))
            .large_scope_threshold(5)
            .occupancy_interval(Duration::from_millis(10))
            .build()
            .await
            .unwrap();
        let open = |n: usize, login: &str| {
            let spec = SessionSpec::new(format!("m{n}"), format!("{login}{n}")).scope("hall");
            presence.open_session(spec)
        };
        let mut sessions = Vec::new();
        for n in 0..10 {
            sessions.push(open(n, "l").await.unwrap());
        }
        let (mut watcher, snapshot) = presence.watch_counts(&"hall".into(), &[]).await.unwrap();
        let first = snapshot.occupancy.expect("large");
        assert_eq!((first.online, first.v), (10, 1));
        assert!(matches!(next(&mut watcher).await, Delivery::Occupancy(c) if c.v == 1));

        // Small: told to read the members anew.
        for n in 3..10 {
            presence
                .logout(&format!("m{n}").into(), &format!("l{n}").into())
                .await
                .unwrap();
        }
        loop {
            if next(&mut watcher).await == Delivery::Lagged {
                break;
            }
        }
        let snapshot = presence
            .counted_snapshot(&"hall".into(), &[])
            .await
            .unwrap();
        assert_eq!((snapshot.occupancy, snapshot.users.len()), (None, 3));

        // Large again, with the counts it had.
        for n in 3..10 {
            sessions.push(open(n, "again").await.unwrap());
        }
        loop {
            match next(&mut watcher).await {
                Delivery::Occupancy(counts) => {
                    assert_eq!((counts.online, counts.v), (10, 2), "a newer count");
                    break;
                }
                Delivery::Event(_) | Delivery::Batch(_) => {}
                Delivery::Lagged => panic!("lagged again"),
            }
        }
        drop(sessions);
    }
}
