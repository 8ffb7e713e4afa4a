//! The soak's independent model of one user: written from docs/rules.md (sessions, effective status), not
//! from `presence_core::store::machine`, so the two can disagree.
//!
//! It answers one question, what a user should show once every pending
//! linger has run out, which is all the soak compares. Where the rules are
//! silent it follows what the crate documents: activity also proves its
//! session live ([`presence_core::store::UserOp::Activity`]); idleness counts from
//! the user's newest activity in any session
//! ([`presence_core::store::UserRecord::last_activity`]); a manual status outlives
//! the user's sessions until cleared or expired.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use presence_core::{LoginId, PresenceConfig, RequestedStatus, SessionId, Status};

/// A manual choice and its expiry, as the driver made it.
#[derive(Clone, Copy, Debug)]
struct Manual {
    status: Status,
    until: Option<DateTime<Utc>>,
}

/// One session as the model sees it.
#[derive(Clone, Debug)]
struct ModelSession {
    login: LoginId,
    /// It is live strictly before this instant (newest proof of life plus
    /// `session_ttl`).
    live_until: DateTime<Utc>,
}

/// What the model knows of one user.
#[derive(Clone, Debug, Default)]
pub(crate) struct UserModel {
    sessions: HashMap<SessionId, ModelSession>,
    manual: Option<Manual>,
    last_activity: Option<DateTime<Utc>>,
    /// The newest close or logout that ended a session.
    last_end: Option<DateTime<Utc>>,
}

fn after(time: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    time + chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX)
}

impl UserModel {
    /// A session opened at `now`: live, and activity (docs/rules.md#effective-status).
    pub(crate) fn open(
        &mut self,
        id: SessionId,
        login: LoginId,
        now: DateTime<Utc>,
        ttl: Duration,
    ) {
        let live_until = after(now, ttl);
        self.sessions.insert(id, ModelSession { login, live_until });
        self.last_activity = Some(now);
    }

    /// A heartbeat: liveness only.
    pub(crate) fn heartbeat(&mut self, id: &SessionId, now: DateTime<Utc>, ttl: Duration) {
        if let Some(session) = self.live_session(id, now) {
            session.live_until = after(now, ttl);
        }
    }

    /// Activity in a live session: liveness and activity.
    pub(crate) fn activity(&mut self, id: &SessionId, now: DateTime<Utc>, ttl: Duration) {
        if let Some(session) = self.live_session(id, now) {
            session.live_until = after(now, ttl);
            self.last_activity = Some(now);
        }
    }

    /// A clean close.
    pub(crate) fn close(&mut self, id: &SessionId, now: DateTime<Utc>) {
        if self.sessions.remove(id).is_some() {
            self.last_end = Some(now);
        }
    }

    /// A logout ends every session of the login at once.
    pub(crate) fn logout(&mut self, login: &LoginId, now: DateTime<Utc>) {
        let before = self.sessions.len();
        self.sessions.retain(|_, session| session.login != *login);
        if self.sessions.len() < before {
            self.last_end = Some(now);
        }
    }

    /// `ONLINE` clears the manual status; the others hold until `until`.
    pub(crate) fn set_manual(&mut self, requested: RequestedStatus, until: Option<DateTime<Utc>>) {
        let status = match requested {
            RequestedStatus::Online => None,
            RequestedStatus::Away => Some(Status::Away),
            RequestedStatus::Busy => Some(Status::Busy),
            // What observers see of an invisible user.
            RequestedStatus::Invisible => Some(Status::Offline),
        };
        self.manual = status.map(|status| Manual { status, until });
    }

    /// Forgets sessions that have lapsed by `now` (none can come back),
    /// keeping when the last of them ended.
    pub(crate) fn forget_lapsed(&mut self, now: DateTime<Utc>) {
        let mut ended = self.last_end;
        self.sessions.retain(|_, session| {
            let live = session.live_until > now;
            if !live {
                ended = ended.max(Some(session.live_until));
            }
            live
        });
        self.last_end = ended;
    }

    /// Whether any session is live at `now`.
    pub(crate) fn has_live_session(&self, now: DateTime<Utc>) -> bool {
        self.sessions.values().any(|s| s.live_until > now)
    }

    /// What observers should see at `now`, assuming no linger is pending
    /// (the soak asks only after every linger ran out). docs/rules.md#precedence, in order.
    pub(crate) fn expected_status(&self, now: DateTime<Utc>, config: &PresenceConfig) -> Status {
        if !self.has_live_session(now) {
            return Status::Offline;
        }
        let idle = self
            .last_activity
            .map_or(Duration::ZERO, |at| (now - at).to_std().unwrap_or_default());
        if idle > config.offline_after {
            return Status::Offline;
        }
        if let Some(manual) = self.manual
            && manual.until.is_none_or(|until| until > now)
        {
            return manual.status;
        }
        if idle > config.away_after {
            Status::Away
        } else {
            Status::Online
        }
    }

    /// What observers should see at `now`, when the model can tell without
    /// modelling the linger: always while a session is live; otherwise once
    /// every session end (close, logout or lapse) is older than `linger`
    /// plus `margin`. `None` while a linger may still be pending.
    pub(crate) fn settled_status(
        &self,
        now: DateTime<Utc>,
        config: &PresenceConfig,
        margin: Duration,
    ) -> Option<Status> {
        if self.has_live_session(now) {
            return Some(self.expected_status(now, config));
        }
        let lapsed = self.sessions.values().map(|s| s.live_until).max();
        match self.last_end.max(lapsed) {
            Some(ended) if after(ended, config.linger + margin) > now => None,
            _ => Some(Status::Offline),
        }
    }

    fn live_session(&mut self, id: &SessionId, now: DateTime<Utc>) -> Option<&mut ModelSession> {
        self.sessions.get_mut(id).filter(|s| s.live_until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PresenceConfig {
        PresenceConfig {
            heartbeat_interval: Duration::from_millis(1000),
            session_ttl: Duration::from_millis(2550),
            away_after: Duration::from_millis(3050),
            offline_after: Duration::from_millis(6050),
            linger: Duration::from_millis(1050),
            ..PresenceConfig::default()
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_767_225_600_000 + ms).unwrap_or_default()
    }

    #[test]
    fn a_user_goes_away_then_offline_by_idleness_while_heartbeating() {
        let config = config();
        let mut user = UserModel::default();
        user.open("s".into(), "l".into(), at(0), config.session_ttl);
        assert_eq!(user.expected_status(at(100), &config), Status::Online);
        for ms in (1000..7000).step_by(1000) {
            user.heartbeat(&"s".into(), at(ms), config.session_ttl);
        }
        assert_eq!(user.expected_status(at(3100), &config), Status::Away);
        assert_eq!(user.expected_status(at(6100), &config), Status::Offline);
        user.activity(&"s".into(), at(6200), config.session_ttl);
        assert_eq!(user.expected_status(at(6300), &config), Status::Online);
    }

    #[test]
    fn manual_status_holds_until_expiry_and_invisible_shows_offline() {
        let config = config();
        let mut user = UserModel::default();
        user.open("s".into(), "l".into(), at(0), config.session_ttl);
        user.set_manual(RequestedStatus::Busy, Some(at(1050)));
        assert_eq!(user.expected_status(at(1000), &config), Status::Busy);
        assert_eq!(user.expected_status(at(1100), &config), Status::Online);
        user.set_manual(RequestedStatus::Invisible, None);
        assert_eq!(user.expected_status(at(1100), &config), Status::Offline);
        user.set_manual(RequestedStatus::Online, None);
        assert_eq!(user.expected_status(at(1100), &config), Status::Online);
    }

    #[test]
    fn sessions_end_by_close_logout_or_lapse() {
        let config = config();
        let mut user = UserModel::default();
        user.open("a".into(), "l1".into(), at(0), config.session_ttl);
        user.open("b".into(), "l1".into(), at(0), config.session_ttl);
        user.open("c".into(), "l2".into(), at(0), config.session_ttl);
        user.close(&"a".into(), at(0));
        user.logout(&"l1".into(), at(0));
        assert!(user.has_live_session(at(2500)));
        assert!(!user.has_live_session(at(2600)));
        assert_eq!(user.expected_status(at(2600), &config), Status::Offline);
        // Lapsed at 2550: a linger may be pending until 3600.
        let margin = Duration::from_millis(100);
        assert_eq!(user.settled_status(at(3500), &config, margin), None);
        assert_eq!(
            user.settled_status(at(3800), &config, margin),
            Some(Status::Offline)
        );
        user.forget_lapsed(at(3000));
        assert_eq!(user.settled_status(at(3500), &config, margin), None);
        assert_eq!(user.expected_status(at(3800), &config), Status::Offline);
        // A lapsed session is not revived by activity.
        user.activity(&"c".into(), at(2700), config.session_ttl);
        assert!(!user.has_live_session(at(2700)));
    }
}
