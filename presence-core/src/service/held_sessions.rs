//! The sessions this process holds ([`Liveness::HeldByNode`]): a socket's
//! session, which only its node hears. Their heartbeats stay in this
//! process's memory and cost the store nothing; this process ends each one
//! whose client went silent for `session_ttl` itself, as a lapse at the
//! instant it lapsed ([`UserOp::Lapse`]). The store never lapses them by
//! time, so a user who is merely present costs no sweep. While this process
//! runs its lease vouches for them; once it dies, the lease runs out and
//! any other node ends them (see `incarnations`).
//!
//! A session whose handle went away without its close reaching the store
//! (the store was down, or no runtime was left to close it on) is handed
//! back to the store the same way: it lapses by its last heartbeat, as a
//! crashed client's does.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::ids::{SessionId, UserId};
use crate::service::Presence;
use crate::session::SessionEnd;
use crate::store::{StoreError, UserOp, machine::later};

/// A held session this process lets go of: the store is told it lapses by
/// its last heartbeat.
#[derive(Debug)]
pub(super) struct Released {
    user: UserId,
    session: SessionId,
    heard: DateTime<Utc>,
}

fn at_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

impl Presence {
    /// A heartbeat of a session this process holds, answered from memory:
    /// `None` when it holds no such session of `user` (the store answers).
    /// A session silent for `session_ttl` is refused and let go of: a
    /// heartbeat never revives a lapsed session.
    pub(super) fn beat_held(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
    ) -> Option<Result<(), Error>> {
        let local = self.inner.local_sessions.get(session)?;
        if local.user != *user {
            return None;
        }
        let heard = local.heard_ms.load(Ordering::Relaxed);
        if later(at_ms(heard)?, self.inner.config.session_ttl) > now {
            local.heard(now);
            return Some(Ok(()));
        }
        drop(local);
        self.release(session, None, SessionEnd::Lapsed);
        Some(Err(StoreError::SessionNotFound.into()))
    }

    /// Lets go of a held session whose close did not reach the store, or
    /// could not be sent: the store is told at the next sweep that it
    /// lapses by its last heartbeat. Nothing happens when a newer handle of
    /// the session holds it now (`generation` is not its own).
    pub(crate) fn abandon_local(&self, session: &SessionId, generation: u64) {
        if let Some((id, local)) = self.stop_holding(session, Some(generation), None) {
            self.queue_release(id, &local);
        }
    }

    /// Stops holding `session`, tells its holder `reason`, and queues its
    /// release for the next sweep (woken at once). With `generation`, only
    /// if that handle still holds it.
    fn release(&self, session: &SessionId, generation: Option<u64>, reason: SessionEnd) {
        if let Some((id, local)) = self.stop_holding(session, generation, Some(reason)) {
            self.queue_release(id, &local);
        }
    }

    /// Forgets `session` (only `generation`'s handle of it, if given) and
    /// tells its holder `reason`, if any; what was held.
    fn stop_holding(
        &self,
        session: &SessionId,
        generation: Option<u64>,
        reason: Option<SessionEnd>,
    ) -> Option<(SessionId, super::LocalSession)> {
        let removed = self.inner.local_sessions.remove_if(session, |_, local| {
            generation.is_none_or(|generation| local.generation == generation)
        })?;
        crate::metrics::session_closed();
        if let Some(reason) = reason {
            removed.1.ended.send(reason);
        }
        Some(removed)
    }

    fn queue_release(&self, session: SessionId, local: &super::LocalSession) {
        let heard =
            at_ms(local.heard_ms.load(Ordering::Relaxed)).unwrap_or_else(|| self.inner.clock.now());
        self.released().push(Released {
            user: local.user.clone(),
            session,
            heard,
        });
        self.inner.sweeper.schedule(self.inner.clock.now());
    }

    fn released(&self) -> std::sync::MutexGuard<'_, Vec<Released>> {
        self.inner
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A session opened at `at`: the next reap must not come after it could
    /// lapse.
    pub(super) fn held_from(&self, at: DateTime<Utc>) {
        let lapse = later(at, self.inner.config.session_ttl).timestamp_millis();
        self.inner.next_reap_ms.fetch_min(lapse, Ordering::AcqRel);
    }

    /// Lets go of every held session silent for `session_ttl` at `now`, and
    /// tells the store of each released session that it lapses by its last
    /// heartbeat. Returns the earliest instant another held session may
    /// lapse. Scans the held sessions only when one may have lapsed.
    pub(super) async fn reap_held(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let ttl = self.inner.config.session_ttl;
        if self.inner.next_reap_ms.load(Ordering::Acquire) <= now.timestamp_millis() {
            self.inner.next_reap_ms.store(i64::MAX, Ordering::Release);
            let mut silent = Vec::new();
            let mut next = i64::MAX;
            for local in self.inner.local_sessions.iter() {
                let heard = local.heard_ms.load(Ordering::Relaxed);
                let lapse = at_ms(heard).map_or(now, |heard| later(heard, ttl));
                if lapse <= now {
                    silent.push((local.key().clone(), local.generation));
                } else {
                    next = next.min(lapse.timestamp_millis());
                }
            }
            self.inner.next_reap_ms.fetch_min(next, Ordering::AcqRel);
            for (session, generation) in silent {
                self.release(&session, Some(generation), SessionEnd::Lapsed);
            }
        }
        self.tell_store_of_releases().await?;
        let next = self.inner.next_reap_ms.load(Ordering::Acquire);
        Ok((next != i64::MAX).then(|| at_ms(next)).flatten())
    }

    /// Applies [`UserOp::Lapse`] to every released session, one change per
    /// user. A store that is away keeps the rest for the next sweep.
    async fn tell_store_of_releases(&self) -> Result<(), Error> {
        let mut released = std::mem::take(&mut *self.released());
        // A newer handle holds the session again (its client came back):
        // it is not let go of.
        released.retain(|release| !self.inner.local_sessions.contains_key(&release.session));
        released.sort_by(|a, b| a.user.cmp(&b.user));
        let mut at = 0;
        while at < released.len() {
            let user = released[at].user.clone();
            let end = at + released[at..].iter().take_while(|r| r.user == user).count();
            let lapse = UserOp::Lapse {
                sessions: released[at..end]
                    .iter()
                    .map(|r| (r.session.clone(), r.heard))
                    .collect(),
                held_by: self.inner.node.clone(),
            };
            match self.change_unchecked(&user, lapse).await {
                Ok(_) => {}
                Err(Error::Store(
                    error @ (StoreError::Unavailable(_) | StoreError::Timeout(_)),
                )) => {
                    self.released().extend(released.drain(at..));
                    return Err(Error::Store(error));
                }
                Err(error) => {
                    tracing::warn!(%user, %error, "releasing held sessions failed");
                }
            }
            at = end;
        }
        Ok(())
    }

    /// Checks the sessions this process holds against the store, after the
    /// feed lost messages: one that another node ended meanwhile (a logout
    /// elsewhere, or taken for dead) is told so here. Its heartbeats never
    /// reach the store, so nothing else would tell. Only sessions whose
    /// open reached the store before the read are judged.
    pub(super) async fn verify_held(&self) {
        let mut held: Vec<(UserId, SessionId, u64)> = self
            .inner
            .local_sessions
            .iter()
            .filter(|local| local.confirmed.load(Ordering::Acquire))
            .map(|local| (local.user.clone(), local.key().clone(), local.generation))
            .collect();
        held.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut users: Vec<UserId> = held.iter().map(|(user, _, _)| user.clone()).collect();
        users.dedup();
        for chunk in users.chunks(VERIFY_BATCH) {
            let views = match self
                .timed("load_many", self.inner.store.load_many(chunk))
                .await
            {
                Ok(views) => views,
                Err(error) => {
                    tracing::warn!(%error, "checking the held sessions against the store failed");
                    return;
                }
            };
            for view in views {
                let user = &view.presence.user_id;
                let first = held.partition_point(|(u, _, _)| u < user);
                for (_, session, generation) in
                    held[first..].iter().take_while(|(u, _, _)| u == user)
                {
                    let holder = view.sessions.iter().find(|(id, _)| id == session);
                    let reason = match holder {
                        Some((_, node)) if *node == self.inner.node => continue,
                        Some(_) => SessionEnd::Replaced,
                        None => SessionEnd::Lapsed,
                    };
                    self.stop_holding(session, Some(*generation), Some(reason));
                }
            }
        }
    }
}

/// Users read per store call when checking the held sessions.
const VERIFY_BATCH: usize = 512;
