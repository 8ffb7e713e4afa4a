//! [`Presence`]'s calls on what a user shows beyond the status
//! (docs/rules.md#details): custom status, a session's app state, and
//! whether last seen is hidden. Each is one change: one event with a new
//! version, in every scope of the user.

use chrono::{DateTime, Utc};

use crate::details::{AppState, CustomStatus, DetailsError};
use crate::error::Error;
use crate::event::UserPresence;
use crate::ids::{SessionId, UserId};
use crate::service::{Presence, presence_of};
use crate::status::{ManualChoice, RequestedStatus};
use crate::store::UserOp;

impl Presence {
    /// Sets (`Some`) or clears (`None`) the user's custom status, keeping
    /// the manual status. Watchers get one event (an update; the status
    /// may not change).
    ///
    /// ```
    /// # async fn example(presence: presence_core::Presence) -> Result<(), presence_core::Error> {
    /// use presence_core::CustomStatus;
    ///
    /// let meeting = CustomStatus::new(Some("In a meeting".into()), Some("📅".into()), None)?;
    /// presence.set_custom_status(&"alice".into(), Some(meeting)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_custom_status(
        &self,
        user: &UserId,
        custom: Option<CustomStatus>,
    ) -> Result<UserPresence, Error> {
        if let Some(custom) = &custom {
            self.check_expiry(custom.until)?;
        }
        let transition = self.change(user, UserOp::SetCustom(custom)).await?;
        Ok(presence_of(&transition))
    }

    /// Sets the manual status (as [`Presence::set_status`]) and the custom
    /// status together, as one change: watchers get one event. `until`
    /// clears both.
    pub async fn set_status_and_custom(
        &self,
        user: &UserId,
        status: RequestedStatus,
        until: Option<DateTime<Utc>>,
        custom: Option<CustomStatus>,
    ) -> Result<UserPresence, Error> {
        self.check_expiry(until)?;
        let manual = status.manual().map(|status| ManualChoice { status, until });
        let custom = custom.map(|custom| CustomStatus { until, ..custom });
        let transition = self
            .change(user, UserOp::SetStatus { manual, custom })
            .await?;
        Ok(presence_of(&transition))
    }

    /// Sets (`Some`) or clears (`None`) one session's app state. Watchers
    /// see the states of the user's sessions merged (the one set last wins
    /// a key). Fails with [`Error::is_session_gone`] when the session is
    /// not open.
    pub async fn set_session_state(
        &self,
        user: &UserId,
        session: &SessionId,
        state: Option<AppState>,
    ) -> Result<UserPresence, Error> {
        let op = UserOp::SetState {
            session: session.clone(),
            state,
        };
        let transition = self.change(user, op).await?;
        Ok(presence_of(&transition))
    }

    /// Hides (`true`) or shows when the user was last seen: while hidden,
    /// every observer gets `last_seen: None`.
    pub async fn set_last_seen_hidden(
        &self,
        user: &UserId,
        hidden: bool,
    ) -> Result<UserPresence, Error> {
        let transition = self.change(user, UserOp::HideLastSeen(hidden)).await?;
        Ok(presence_of(&transition))
    }

    fn check_expiry(&self, until: Option<DateTime<Utc>>) -> Result<(), Error> {
        match until {
            Some(until) if until <= self.inner.clock.now() => {
                Err(DetailsError::ExpiryInPast { until }.into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::{AppState, ManualClock, Presence, SessionSpec};

    /// Two sessions set one key at the same instant (a manual clock, a
    /// clock of coarse steps): the one set last still wins it.
    #[tokio::test]
    async fn the_state_set_last_wins_a_key_at_the_same_instant() {
        let presence = Presence::builder()
            .clock(Arc::new(ManualClock::default()))
            .build()
            .await
            .unwrap();
        let alice = "alice".into();
        let mut sessions = Vec::new();
        for n in 0..8 {
            let spec = SessionSpec::new("alice", format!("login-{n}")).scope("acme");
            sessions.push(presence.open_session(spec).await.unwrap());
        }
        for (n, session) in sessions.iter().enumerate() {
            let state = AppState::new(json!({"page": n})).unwrap();
            let seen = presence
                .set_session_state(&alice, session.id(), Some(state))
                .await
                .unwrap();
            let merged = seen
                .details
                .and_then(|details| details.state.as_ref().map(AppState::to_map));
            assert_eq!(merged, json!({"page": n}).as_object().cloned(), "set {n}");
        }
    }
}
