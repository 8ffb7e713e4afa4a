//! Heartbeats without a round trip each: the sessions this process opened,
//! as far as it knows, with the newest heartbeat of each waiting for the
//! next write. A backend thus sees at most one write per session per flush
//! interval, however often clients beat, and none for a session its node
//! holds ([`Liveness::HeldByNode`]): the node's lease vouches for it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::config::PresenceConfig;
use crate::ids::{NodeName, SessionId, UserId};
use crate::session::SessionEnd;
use crate::store::{Liveness, StoreError, Transition, Update, UserOp, UserRecord};

/// A session opened through this process, as far as it knows.
#[derive(Debug)]
struct LocalSession<K> {
    user: UserId,
    /// The node that holds it (the last to open it, in this process).
    holder: Mutex<NodeName>,
    /// What the backend needs to write this session's heartbeat, built
    /// once (a Redis key: formatting it at each flush cost as much as the
    /// write).
    key: K,
    /// Newest heartbeat, ms since the epoch.
    heartbeat_ms: AtomicI64,
    /// `session_ttl` in ms, as of the newest heartbeat.
    ttl_ms: AtomicI64,
    /// Waiting in the next batch.
    queued: AtomicBool,
    /// Its node holds it ([`Liveness::HeldByNode`]), as of the newest
    /// record this process stored: its heartbeats are not written.
    held: AtomicBool,
    /// Another node (or the store) ended it.
    gone: AtomicBool,
}

/// The sessions of this process and the heartbeats not written yet. `K`
/// is what the backend keeps per session for its write (`()` for none).
#[derive(Debug)]
pub struct LocalSessions<K = ()> {
    sessions: DashMap<SessionId, Arc<LocalSession<K>>>,
    pending: Mutex<Vec<(SessionId, Arc<LocalSession<K>>)>>,
}

impl<K> Default for LocalSessions<K> {
    fn default() -> Self {
        Self {
            sessions: DashMap::new(),
            pending: Mutex::new(Vec::new()),
        }
    }
}

/// One heartbeat to write: the newest of its session when the batch was
/// taken.
#[derive(Debug)]
pub struct PendingBeat<K = ()> {
    /// The session.
    pub session: SessionId,
    /// The heartbeat, ms since the epoch.
    pub at_ms: i64,
    /// When the session lapses without another one, ms since the epoch.
    pub expires_ms: i64,
    local: Arc<LocalSession<K>>,
}

impl<K> PendingBeat<K> {
    /// The session's user.
    pub fn user(&self) -> &UserId {
        &self.local.user
    }

    /// What the backend keeps for this session's write.
    pub fn key(&self) -> &K {
        &self.local.key
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl<K> LocalSessions<K> {
    /// A session node `holder` of this process opened (or refreshed), heard
    /// from at `at`; `key` makes what its writes need, once.
    pub fn opened(
        &self,
        user: &UserId,
        session: &SessionId,
        holder: &NodeName,
        at: DateTime<Utc>,
        config: &PresenceConfig,
        key: impl FnOnce() -> K,
    ) {
        let entry = self
            .sessions
            .entry(session.clone())
            .or_insert_with(|| {
                Arc::new(LocalSession {
                    user: user.clone(),
                    holder: Mutex::new(holder.clone()),
                    key: key(),
                    heartbeat_ms: AtomicI64::new(i64::MIN),
                    ttl_ms: AtomicI64::new(millis(config.session_ttl)),
                    queued: AtomicBool::new(false),
                    held: AtomicBool::new(false),
                    gone: AtomicBool::new(false),
                })
            })
            .clone();
        entry
            .heartbeat_ms
            .fetch_max(at.timestamp_millis(), Ordering::AcqRel);
        entry.gone.store(false, Ordering::Release);
        *entry.holder.lock().unwrap_or_else(|e| e.into_inner()) = holder.clone();
    }

    /// Keeps this process's view in line with a change it stored: ended
    /// sessions are forgotten, an opened or restored one is remembered, and
    /// the local sessions in `record` (the new record) were heard from at
    /// least as recently as it says (activity proves liveness too).
    pub fn after_change(
        &self,
        update: &Update<'_>,
        transition: &Transition,
        record: &UserRecord,
        key: impl FnOnce() -> K,
    ) {
        // Ended first: a lapsed session reopened under its id stays known.
        for session in &transition.ended_sessions {
            self.ended(session);
        }
        let opened = match update.op {
            UserOp::Open(new) => Some((&new.id, update.now)),
            // Never fresher than the holder heard it.
            UserOp::Restore {
                session,
                last_heartbeat,
            } => Some((&session.id, *last_heartbeat)),
            _ => None,
        };
        if let Some((session, heard_at)) = opened {
            let holder = &update.node.name;
            self.opened(update.user, session, holder, heard_at, update.config, key);
        }
        self.saw(record);
    }

    fn saw(&self, record: &UserRecord) {
        for session in &record.sessions {
            if let Some(local) = self.sessions.get(&session.id) {
                local
                    .heartbeat_ms
                    .fetch_max(session.last_heartbeat.timestamp_millis(), Ordering::AcqRel);
                let held = session.liveness == Liveness::HeldByNode;
                local.held.store(held, Ordering::Release);
            }
        }
    }

    /// Gives each session of `record` this process's newest heartbeat, if
    /// it is fresher than the record's (it may not be written yet).
    pub fn freshen(&self, record: &mut UserRecord) {
        for session in &mut record.sessions {
            if let Some(at) = self.newest_heartbeat(&session.id)
                && at > session.last_heartbeat
            {
                session.last_heartbeat = at;
            }
        }
    }

    /// Another process told this one (through the cluster feed) that it
    /// ended `sessions` of node `holder` for `reason`: a replaced session
    /// lives on elsewhere and is forgotten unless another node of this
    /// process holds it now; any other is gone.
    pub fn ended_elsewhere(&self, sessions: &[SessionId], reason: SessionEnd, holder: &NodeName) {
        for session in sessions {
            if reason == SessionEnd::Replaced {
                self.taken_from(session, holder);
            } else {
                self.ended(session);
            }
        }
    }

    /// Node `from` lost the session to a node elsewhere (a client resumed
    /// it there): forgotten, unless another node of this process holds it
    /// now.
    pub fn taken_from(&self, session: &SessionId, from: &NodeName) {
        self.sessions.remove_if(session, |_, local| {
            *local.holder.lock().unwrap_or_else(|e| e.into_inner()) == *from
        });
    }

    /// How many sessions this process holds.
    pub fn count(&self) -> usize {
        self.sessions.len()
    }

    /// The session ended (closed here, or ended by another node).
    pub fn ended(&self, session: &SessionId) {
        if let Some((_, local)) = self.sessions.remove(session) {
            local.gone.store(true, Ordering::Release);
        }
    }

    /// Whether this process holds `session`, live as far as it knows: not
    /// ended, and its node holds it or a heartbeat is younger than the TTL
    /// at `now`.
    pub fn holds(&self, session: &SessionId, now: DateTime<Utc>, config: &PresenceConfig) -> bool {
        let ttl_ms = millis(config.session_ttl);
        self.sessions.get(session).is_some_and(|local| {
            !local.gone.load(Ordering::Acquire)
                && (local.held.load(Ordering::Acquire)
                    || local
                        .heartbeat_ms
                        .load(Ordering::Acquire)
                        .saturating_add(ttl_ms)
                        > now.timestamp_millis())
        })
    }

    /// The newest heartbeat this process has for `session`.
    pub fn newest_heartbeat(&self, session: &SessionId) -> Option<DateTime<Utc>> {
        let local = self.sessions.get(session)?;
        DateTime::<Utc>::from_timestamp_millis(local.heartbeat_ms.load(Ordering::Acquire))
    }

    /// Records a heartbeat in memory, for the next write (none for a
    /// session its node holds); fails when this process holds no such live
    /// session (a heartbeat never revives one).
    pub fn beat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        let local = self
            .sessions
            .get(session)
            .map(|entry| entry.clone())
            .ok_or(StoreError::SessionNotFound)?;
        let ttl_ms = millis(config.session_ttl);
        let now_ms = now.timestamp_millis();
        let last = local.heartbeat_ms.load(Ordering::Acquire);
        if local.user != *user
            || local.gone.load(Ordering::Acquire)
            || last.saturating_add(ttl_ms) <= now_ms
        {
            return Err(StoreError::SessionNotFound);
        }
        local.ttl_ms.store(ttl_ms, Ordering::Release);
        local.heartbeat_ms.fetch_max(now_ms, Ordering::AcqRel);
        if !local.held.load(Ordering::Acquire) {
            self.queue(session, local);
        }
        Ok(())
    }

    fn queue(&self, session: &SessionId, local: Arc<LocalSession<K>>) {
        if !local.queued.swap(true, Ordering::AcqRel) {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((session.clone(), local));
        }
    }

    /// Everything waiting to be written.
    pub fn take_pending(&self) -> Vec<PendingBeat<K>> {
        let queued = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        queued
            .into_iter()
            .map(|(session, local)| {
                local.queued.store(false, Ordering::Release);
                let at_ms = local.heartbeat_ms.load(Ordering::Acquire);
                PendingBeat {
                    session,
                    at_ms,
                    expires_ms: at_ms.saturating_add(local.ttl_ms.load(Ordering::Acquire)),
                    local,
                }
            })
            .collect()
    }

    /// Puts back heartbeats whose write failed, for the next flush (unless
    /// a newer heartbeat queued the session again meanwhile; those of
    /// sessions that ended meanwhile are dropped).
    pub fn requeue(&self, beats: &[PendingBeat<K>]) {
        for beat in beats {
            let local = self.sessions.get(&beat.session).map(|entry| entry.clone());
            if let Some(local) = local {
                self.queue(&beat.session, local);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PresenceConfig {
        PresenceConfig {
            session_ttl: Duration::from_secs(30),
            ..PresenceConfig::default()
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).expect("valid")
    }

    #[test]
    fn many_beats_of_one_session_make_one_pending_write_of_the_newest() {
        let local: LocalSessions = LocalSessions::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        local.opened(&user, &session, &"n".into(), at(0), &config(), || ());
        for ms in [1_000, 2_000, 3_000] {
            local
                .beat(&user, &session, at(ms), &config())
                .expect("live");
        }
        let pending = local.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].at_ms, pending[0].expires_ms), (3_000, 33_000));
        assert!(local.take_pending().is_empty());
        local.requeue(&pending);
        assert_eq!(local.take_pending().len(), 1);
    }

    #[test]
    fn a_session_its_node_holds_writes_no_heartbeat() {
        let local: LocalSessions = LocalSessions::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        local.opened(&user, &session, &"n".into(), at(0), &config(), || ());
        let mut record = UserRecord::default();
        record.sessions.push(crate::store::SessionRecord {
            id: session.clone(),
            login: "l".into(),
            node: crate::ids::NodeId::new("n"),
            scopes: Vec::new(),
            metadata: Default::default(),
            opened_at: at(0),
            last_heartbeat: at(0),
            liveness: Liveness::HeldByNode,
            kind: None,
            last_activity: None,
            state: None,
        });
        local.saw(&record);
        local
            .beat(&user, &session, at(1_000), &config())
            .expect("live");
        assert!(local.take_pending().is_empty());
        // Held: live past its TTL as far as this process knows.
        assert!(local.holds(&session, at(60_000), &config()));
        // Let go of (a lapse): its heartbeats are written again.
        record.sessions[0].liveness = Liveness::Heartbeats;
        local.saw(&record);
        local
            .beat(&user, &session, at(2_000), &config())
            .expect("live");
        assert_eq!(local.take_pending().len(), 1);
        assert!(!local.holds(&session, at(60_000), &config()));
    }

    #[test]
    fn a_lapsed_ended_or_foreign_session_refuses_heartbeats() {
        let local: LocalSessions = LocalSessions::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        local.opened(&user, &session, &"n".into(), at(0), &config(), || ());
        assert!(local.beat(&"v".into(), &session, at(1), &config()).is_err());
        assert!(local.beat(&user, &session, at(30_000), &config()).is_err());
        local.ended(&session);
        assert!(local.beat(&user, &session, at(1), &config()).is_err());
    }

    #[test]
    fn a_session_replaced_elsewhere_is_kept_by_the_node_of_this_process_that_took_it() {
        let local: LocalSessions = LocalSessions::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        local.opened(&user, &session, &"b".into(), at(0), &config(), || ());
        // Node a lost it to node b, both in this process: b keeps it.
        local.ended_elsewhere(
            std::slice::from_ref(&session),
            SessionEnd::Replaced,
            &"a".into(),
        );
        assert_eq!(local.count(), 1);
        local.ended_elsewhere(
            std::slice::from_ref(&session),
            SessionEnd::Replaced,
            &"b".into(),
        );
        assert_eq!(local.count(), 0);
    }
}
