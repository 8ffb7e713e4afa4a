//! The conformance cases. Each takes a fresh, empty store.
//!
//! Thresholds (see [`Harness::new`]): ttl 30 s, away 60 s, offline 600 s,
//! linger 5 s. Times are seconds after the harness's start.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use presence_core::store::{PresenceStore, StoreError, Transition, UserOp};
use presence_core::{
    AppState, Change, CustomStatus, Details, ManualChoice, ManualStatus, NodeId, NodeName,
    PresenceEvent, SessionId, Status, UserId, UserPresence,
};
use serde_json::{Value, json};

use crate::harness::Harness;

/// The first session takes the user from OFFLINE to ONLINE, version 1, once.
pub async fn first_session_shows_online_once(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let t = h.open("alice", "s1", 0.0).await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Offline, Status::Online, 1)
    );
    assert!(t.changed() && t.first_session && !t.last_session && t.present);
    assert_eq!(t.scopes, vec!["acme".into()]);
    assert_eq!(t.last_seen, Some(h.at(0.0)));
    let view = h.view("alice").await;
    assert_eq!((view.status, view.v), (Status::Online, 1));
}

/// A second and third tab change nothing visible; closing two of three
/// changes nothing visible either.
pub async fn more_tabs_and_closing_some_change_nothing(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    for (session, second) in [("s2", 1.0), ("s3", 2.0)] {
        let t = h.open("alice", session, second).await;
        assert!(!t.changed() && !t.first_session, "{session} changed {t:?}");
    }
    for (session, second) in [("s1", 3.0), ("s2", 4.0)] {
        let t = h.close("alice", session, second).await;
        assert!(!t.changed() && !t.last_session, "{session} changed {t:?}");
        assert_eq!(t.ended_sessions, vec![session.into()]);
    }
    let view = h.view("alice").await;
    assert_eq!((view.status, view.v), (Status::Online, 1));
}

/// The last close keeps the user ONLINE for the linger; at its end the user
/// goes OFFLINE, and last_seen is the close.
pub async fn last_close_lingers_then_goes_offline(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    let t = h.close("alice", "s1", 10.0).await;
    assert!(!t.changed() && t.last_session && t.present);
    assert_eq!(t.next_deadline, Some(h.at(15.0)));
    let t = h.refresh("alice", 14.999).await;
    assert!(!t.changed(), "still lingering: {t:?}");
    let t = h.refresh("alice", 15.0).await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Offline, 2)
    );
    assert_eq!(t.last_seen, Some(h.at(10.0)));
    assert!(!t.present && t.next_deadline.is_none());
}

/// Reloading a page: the new session inside the linger cancels the OFFLINE,
/// and nothing at all is published.
pub async fn a_new_session_inside_the_linger_cancels_the_offline(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    h.close("alice", "s1", 10.0).await;
    let t = h.open("alice", "s2", 12.0).await;
    assert!(!t.changed(), "reload must not flicker: {t:?}");
    assert!(t.first_session, "s2 is the only live session");
    let t = h.refresh("alice", 20.0).await;
    assert!(!t.changed(), "the linger was cancelled: {t:?}");
    assert_eq!(h.view("alice").await.v, 1);
}

/// Logout ends the login's sessions at once: OFFLINE now, no linger.
pub async fn logout_ends_one_login_at_once_without_linger(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    h.open("alice", "s2", 1.0).await;
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "login-1".into(),
            },
            5.0,
        )
        .await;
    assert_eq!((t.from, t.to), (Status::Online, Status::Offline));
    let ended: HashSet<_> = t.ended_sessions.iter().cloned().collect();
    assert_eq!(ended, HashSet::from(["s1".into(), "s2".into()]));
    assert!(!t.present && t.last_session);
    assert!(matches!(
        h.heartbeat("alice", "s1", 6.0),
        Err(StoreError::SessionNotFound)
    ));
}

/// Logout everywhere ends the sessions of every login and a pending linger.
pub async fn logout_everywhere_ends_every_login(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("phone", "login-1", &["acme"]), 0.0)
        .await;
    h.apply("alice", h.open_op("laptop", "login-2", &["acme"]), 1.0)
        .await;
    h.close("alice", "phone", 2.0).await;
    let t = h.apply("alice", UserOp::LogoutEverywhere, 3.0).await;
    assert_eq!((t.from, t.to), (Status::Online, Status::Offline));
    assert_eq!(t.ended_sessions, vec!["laptop".into()]);

    h.open("bob", "s1", 0.0).await;
    h.close("bob", "s1", 1.0).await;
    let t = h.apply("bob", UserOp::LogoutEverywhere, 2.0).await;
    assert_eq!(t.to, Status::Offline, "the linger is cancelled too");
}

/// Another device's logout leaves this device's sessions and linger alone.
pub async fn logout_of_another_login_keeps_a_pending_linger(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("phone", "login-1", &["acme"]), 0.0)
        .await;
    h.apply("alice", h.open_op("laptop", "login-2", &["acme"]), 0.0)
        .await;
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "login-1".into(),
            },
            1.0,
        )
        .await;
    assert!(!t.changed(), "the laptop is still online: {t:?}");
    h.close("alice", "laptop", 2.0).await;
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "login-1".into(),
            },
            3.0,
        )
        .await;
    assert!(
        !t.changed(),
        "the laptop's linger belongs to login-2: {t:?}"
    );
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "login-2".into(),
            },
            4.0,
        )
        .await;
    assert_eq!(t.to, Status::Offline, "login-2's logout cancels its linger");
}

/// Heartbeats keep a session live past the ttl; one that comes too late,
/// for an unknown session, or for another user's session fails.
pub async fn heartbeats_keep_a_session_live_and_never_revive_a_dead_one(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    h.open("bob", "b1", 0.0).await;
    for second in [20.0, 45.0, 70.0] {
        h.heartbeat("alice", "s1", second).expect("live heartbeat");
    }
    assert_eq!(h.view("alice").await.v, 1, "heartbeats publish nothing");
    let t = h.refresh("alice", 99.0).await;
    assert!(
        t.ended_sessions.is_empty(),
        "heartbeat at 70 s keeps it live"
    );
    assert!(matches!(
        h.heartbeat("alice", "s1", 100.0),
        Err(StoreError::SessionNotFound)
    ));
    assert!(matches!(
        h.heartbeat("alice", "nope", 1.0),
        Err(StoreError::SessionNotFound)
    ));
    assert!(matches!(
        h.heartbeat("alice", "b1", 1.0),
        Err(StoreError::SessionNotFound)
    ));
}

/// A session whose heartbeats stop lapses at `last heartbeat + ttl`; the
/// linger runs from then; the user is OFFLINE with last_seen at the last
/// heartbeat.
pub async fn a_silent_session_lapses_and_the_user_goes_offline(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    h.heartbeat("alice", "s1", 10.0).expect("heartbeat");
    let t = h.refresh("alice", 40.0).await;
    assert_eq!(t.ended_sessions, vec!["s1".into()]);
    assert!(
        !t.changed() && t.last_session && t.present,
        "lingering: {t:?}"
    );
    assert_eq!(t.next_deadline, Some(h.at(45.0)));
    let t = h.refresh("alice", 45.0).await;
    assert_eq!((t.from, t.to), (Status::Online, Status::Offline));
    assert_eq!(t.last_seen, Some(h.at(10.0)));

    // Found late, after the linger is long over: OFFLINE at once.
    h.open("bob", "b1", 0.0).await;
    let t = h.refresh("bob", 500.0).await;
    assert_eq!((t.to, t.ended_sessions.len()), (Status::Offline, 1));
}

/// No activity for away_after shows AWAY, for offline_after OFFLINE, even
/// with a live session; activity brings the user back ONLINE.
pub async fn idleness_turns_away_then_offline_and_activity_returns_online(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    let mut second = 0.0;
    while second < 580.0 {
        second += 20.0;
        h.heartbeat("alice", "s1", second).expect("heartbeat");
        let t = h.refresh("alice", second).await;
        let expected = if second < 60.0 {
            Status::Online
        } else {
            Status::Away
        };
        assert_eq!(t.to, expected, "at {second}s");
    }
    let t = h.refresh("alice", 600.0).await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Away, Status::Offline, 3)
    );
    let t = h
        .apply(
            "alice",
            UserOp::Activity {
                session: "s1".into(),
            },
            601.0,
        )
        .await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Offline, Status::Online, 4)
    );
    assert_eq!(t.last_seen, Some(h.at(601.0)));
}

/// BUSY shows BUSY however idle the user is (until offline_after), and an
/// expiring manual status clears by itself at its expiry.
pub async fn manual_status_outranks_idleness_and_expires_by_itself(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    let busy = ManualChoice {
        status: ManualStatus::Busy,
        until: Some(h.at(50.0)),
    };
    let t = h.apply("alice", UserOp::SetManual(Some(busy)), 1.0).await;
    assert_eq!((t.from, t.to), (Status::Online, Status::Busy));
    assert_eq!(
        t.next_deadline,
        Some(h.at(30.0)),
        "the session lapse comes first"
    );
    h.heartbeat("alice", "s1", 25.0).expect("heartbeat");
    let t = h.refresh("alice", 30.0).await;
    assert_eq!(t.next_deadline, Some(h.at(50.0)), "then the expiry");
    let t = h.refresh("alice", 50.0).await;
    assert_eq!((t.from, t.to), (Status::Busy, Status::Online));

    let away = ManualChoice {
        status: ManualStatus::Away,
        until: None,
    };
    let t = h.apply("alice", UserOp::SetManual(Some(away)), 51.0).await;
    assert_eq!(t.to, Status::Away);
    let t = h.apply("alice", UserOp::SetManual(None), 52.0).await;
    assert_eq!(
        t.to,
        Status::Online,
        "clearing (ONLINE) goes back to idleness rules"
    );
}

/// INVISIBLE shows OFFLINE; the user's activity while invisible changes
/// nothing observers can see, not even last_seen.
pub async fn invisible_users_show_offline_and_leak_no_activity(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    let invisible = ManualChoice {
        status: ManualStatus::Invisible,
        until: None,
    };
    let t = h
        .apply("alice", UserOp::SetManual(Some(invisible)), 1.0)
        .await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Offline, 2)
    );
    let frozen = h.view("alice").await;
    let t = h
        .apply(
            "alice",
            UserOp::Activity {
                session: "s1".into(),
            },
            20.0,
        )
        .await;
    assert!(!t.changed());
    h.open("alice", "s2", 21.0).await;
    let view = h.view("alice").await;
    assert_eq!(view, frozen, "nothing betrays an invisible user");
    assert!(h.members("acme").await.contains(&"alice".to_owned()));
    let t = h.apply("alice", UserOp::SetManual(None), 22.0).await;
    assert_eq!((t.to, t.version), (Status::Online, 3));
    assert_eq!(
        t.last_seen,
        Some(h.at(21.0)),
        "visible again, with the truth"
    );
}

/// A failed operation saves nothing.
pub async fn activity_on_an_unknown_session_fails_and_changes_nothing(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    let before = h.view_with_scopes("alice").await;
    let err = h
        .try_apply(
            "alice",
            UserOp::Activity {
                session: "other".into(),
            },
            70.0,
        )
        .await
        .expect_err("unknown session");
    assert!(matches!(err, StoreError::SessionNotFound));
    assert_eq!(h.view_with_scopes("alice").await, before);
    // The session itself lapsed at 30 s: activity on it fails too.
    let err = h
        .try_apply(
            "alice",
            UserOp::Activity {
                session: "s1".into(),
            },
            31.0,
        )
        .await
        .expect_err("lapsed session");
    assert!(matches!(err, StoreError::SessionNotFound));
}

/// Opening more than `max_sessions_per_user` fails; reopening does not.
pub async fn the_session_limit_is_enforced(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    for i in 0..h.config.max_sessions_per_user {
        h.open("alice", &format!("s{i}"), 0.0).await;
    }
    let err = h
        .try_apply("alice", h.open_op("one-more", "login-1", &["acme"]), 1.0)
        .await
        .expect_err("over the limit");
    assert!(matches!(err, StoreError::TooManySessions { limit: 128 }));
    h.open("alice", "s0", 2.0).await;
}

/// Scope members are the present users of the scope; scopes of several
/// sessions add up; an OFFLINE user leaves every scope.
pub async fn scope_members_are_present_users_of_the_scope(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("a1", "l", &["acme", "team-x"]), 0.0)
        .await;
    h.apply("bob", h.open_op("b1", "l", &["acme"]), 0.0).await;
    h.apply("carol", h.open_op("c1", "l", &["globex"]), 0.0)
        .await;
    assert_eq!(h.members("acme").await, vec!["alice", "bob"]);
    assert_eq!(h.members("team-x").await, vec!["alice"]);
    assert_eq!(h.members("globex").await, vec!["carol"]);
    let t = h.apply("bob", h.open_op("b2", "l", &["team-x"]), 1.0).await;
    assert_eq!(t.scopes.len(), 2, "bob is now in acme and team-x");
    assert_eq!(h.members("team-x").await, vec!["alice", "bob"]);
    h.apply("bob", UserOp::LogoutEverywhere, 2.0).await;
    assert_eq!(h.members("acme").await, vec!["alice"]);
    assert_eq!(h.members("team-x").await, vec!["alice"]);
    assert!(h.members("nowhere").await.is_empty());
    let bob = h.view_with_scopes("bob").await;
    assert_eq!(bob.presence.status, Status::Offline);
    assert_eq!(bob.scopes.len(), 2, "scopes are kept for queries");

    // Signing in again (a new login) in another organisation only:
    // membership starts afresh.
    let t = h
        .apply("bob", h.open_op("b3", "l2", &["globex"]), 3.0)
        .await;
    assert_eq!(t.scopes, vec!["globex".into()]);
    assert_eq!(h.members("acme").await, vec!["alice"]);
}

/// What a transition tells watchers: (scope, status, version) per event.
fn told(transition: &Transition) -> Vec<(String, Status, u64)> {
    PresenceEvent::for_transition(transition)
        .map(|event| (event.scope.to_string(), event.status, event.v))
        .collect()
}

/// A user's membership of a scope changing is a change in that scope's
/// view: a user ONLINE in `acme` who opens a session in `team-x` is told
/// there (the current status, a new version), and leaves `team-x` (told
/// `OFFLINE`) once no live session is in it and its linger has run out;
/// `acme` hears nothing of either. An invisible user's joins tell nothing.
pub async fn joining_and_leaving_a_scope_while_present_is_told_in_that_scope(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("a1", "l", &["acme"]), 0.0).await;
    let t = h
        .apply("alice", h.open_op("a2", "l", &["team-x"]), 1.0)
        .await;
    assert_eq!(told(&t), vec![("team-x".into(), Status::Online, 2)]);
    assert_eq!(h.members("team-x").await, vec!["alice"]);

    // Closing team-x's only session: team-x lingers (a reload there must
    // not flicker), and a new session inside the linger tells nothing.
    let t = h.close("alice", "a2", 2.0).await;
    assert_eq!(told(&t), vec![]);
    assert_eq!(t.next_deadline, Some(h.at(7.0)), "the linger's end");
    assert_eq!(h.members("team-x").await, vec!["alice"]);
    let t = h
        .apply("alice", h.open_op("a3", "l", &["team-x"]), 3.0)
        .await;
    assert_eq!(told(&t), vec![], "a reload inside the linger");
    h.close("alice", "a3", 4.0).await;
    assert_eq!(told(&h.refresh("alice", 8.999).await), vec![]);
    let t = h.refresh("alice", 9.0).await;
    assert_eq!(told(&t), vec![("team-x".into(), Status::Offline, 3)]);
    assert!(h.members("team-x").await.is_empty());
    assert_eq!(h.members("acme").await, vec!["alice"]);
    let alice = h.view_with_scopes("alice").await;
    assert_eq!(
        (alice.presence.status, alice.presence.v),
        (Status::Online, 3)
    );
    assert_eq!(alice.scopes, vec!["acme".into()]);

    // A session in team-x that lapses while acme's lives: team-x lingers
    // from the lapse, then is left.
    h.apply("alice", h.open_op("a4", "l", &["team-x"]), 10.0)
        .await;
    h.heartbeat("alice", "a1", 25.0).expect("a1 is live");
    let t = h.refresh("alice", 40.0).await;
    assert_eq!(t.ended_sessions, vec!["a4".into()], "a4 lapsed at 40 s");
    assert_eq!(told(&t), vec![]);
    let t = h.refresh("alice", 45.0).await;
    assert_eq!(told(&t), vec![("team-x".into(), Status::Offline, 5)]);

    // An invisible user joins and leaves silently: no event, no version.
    h.apply("bob", h.open_op("b1", "l", &["acme"]), 0.0).await;
    let invisible = ManualChoice {
        status: ManualStatus::Invisible,
        until: None,
    };
    h.apply("bob", UserOp::SetManual(Some(invisible)), 1.0)
        .await;
    let t = h.apply("bob", h.open_op("b2", "l", &["team-x"]), 2.0).await;
    assert_eq!(told(&t), vec![]);
    h.close("bob", "b2", 3.0).await;
    let t = h.refresh("bob", 8.0).await;
    assert_eq!(told(&t), vec![]);
    assert_eq!(
        h.view("bob").await.v,
        2,
        "only the turn to invisible counted"
    );
}

/// A logout leaves a scope only where no other login keeps the user:
/// here the laptop's login lingers in `team-x` (its tab there closed)
/// while the phone's login reconnects in `acme` and logs out. Watchers of
/// `team-x` keep seeing the user until the laptop's linger ends (found by
/// the simulation: seed 1266 of a 2000-seed campaign).
pub async fn a_logout_keeps_the_scopes_another_login_lingers_in(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.apply(
        "alice",
        h.open_op("laptop", "l-laptop", &["acme", "team-x"]),
        0.0,
    )
    .await;
    h.apply("alice", h.open_op("phone", "l-phone", &["acme"]), 0.0)
        .await;
    // The laptop closes (team-x lingers), then the phone: the user lingers.
    h.close("alice", "laptop", 1.0).await;
    h.close("alice", "phone", 1.0).await;
    // The phone reconnects, then logs out.
    h.apply("alice", h.open_op("phone-2", "l-phone", &["acme"]), 2.0)
        .await;
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "l-phone".into(),
            },
            3.0,
        )
        .await;
    assert_eq!(
        told(&t),
        vec![("acme".into(), Status::Offline, 2)],
        "acme is left; team-x is not: {t:?}"
    );
    assert_eq!(h.members("team-x").await, vec!["alice"]);
    assert!(h.members("acme").await.is_empty());
    let t = h.refresh("alice", 6.0).await;
    assert_eq!(told(&t), vec![("team-x".into(), Status::Offline, 3)]);
    assert!(h.members("team-x").await.is_empty());
}

/// A logout ends what its login alone keeps, even while another login's
/// linger keeps the user present: here the phone's tab in `acme` closes
/// (acme lingers for the phone), then the laptop's last tab (the user
/// lingers for the laptop), then the phone logs out. Watchers of `acme`
/// see the user leave at once; `team-x` keeps the laptop's linger (found
/// by the simulation: seed 1066 of a 2000-seed campaign).
pub async fn a_logout_leaves_the_scopes_only_its_login_lingers_in(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("laptop", "l-laptop", &["team-x"]), 0.0)
        .await;
    h.apply(
        "alice",
        h.open_op("phone", "l-phone", &["acme", "team-x"]),
        0.0,
    )
    .await;
    h.close("alice", "phone", 1.0).await;
    h.close("alice", "laptop", 1.5).await;
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "l-phone".into(),
            },
            2.0,
        )
        .await;
    assert_eq!(
        told(&t),
        vec![("acme".into(), Status::Offline, 3)],
        "acme is left; team-x is not: {t:?}"
    );
    assert!(h.members("acme").await.is_empty());
    assert_eq!(h.members("team-x").await, vec!["alice"]);
    let t = h.refresh("alice", 7.0).await;
    assert_eq!(told(&t), vec![("team-x".into(), Status::Offline, 4)]);
    assert!(h.members("team-x").await.is_empty());
}

/// A scope linger keeps the login whose session left the scope, also
/// when the user's linger is taken over by a reconnect: here the laptop's
/// tab in `team-x` closes (team-x lingers for the laptop), then the
/// phone's last tab, which reconnects in `acme`; the laptop then logs out,
/// and `team-x`, which only the laptop kept, is left at once (found by the
/// simulation: seed 1193 of a 2000-seed campaign).
pub async fn a_reconnect_keeps_each_scope_lingering_for_its_own_login(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("laptop", "l-laptop", &["team-x"]), 0.0)
        .await;
    h.apply("alice", h.open_op("phone", "l-phone", &["acme"]), 0.0)
        .await;
    h.close("alice", "laptop", 1.0).await;
    h.close("alice", "phone", 1.5).await;
    h.apply("alice", h.open_op("phone-2", "l-phone", &["acme"]), 2.0)
        .await;
    let t = h
        .apply(
            "alice",
            UserOp::Logout {
                login: "l-laptop".into(),
            },
            2.5,
        )
        .await;
    assert_eq!(
        told(&t),
        vec![("team-x".into(), Status::Offline, 3)],
        "team-x is left; acme is not: {t:?}"
    );
    assert!(h.members("team-x").await.is_empty());
    assert_eq!(h.members("acme").await, vec!["alice"]);
}

/// A session that lapsed but was not swept yet, reopened under its id (a
/// client resuming it), is live again, heartbeats included: the change
/// that reopens it also ends its lapsed self, and the store must not lose
/// the reopened session's heartbeats with it.
pub async fn reopening_a_lapsed_session_before_the_sweep_keeps_it_live(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    // Lapsed at 30 s; nothing has swept it.
    let t = h.open("alice", "s1", 31.0).await;
    assert_eq!(t.to, Status::Online);
    h.heartbeat("alice", "s1", 32.0)
        .expect("the reopened session is live");
    h.store.flush_heartbeats().await.expect("flush");
    h.heartbeat("alice", "s1", 40.0)
        .expect("still live once its heartbeats are written");
    h.store.flush_heartbeats().await.expect("flush");
    let t = h.refresh("alice", 65.0).await;
    assert!(t.ended_sessions.is_empty(), "live until 70 s: {t:?}");
    assert_eq!(h.view("alice").await.status, Status::Online);
}

/// Users never seen read as OFFLINE, version 0, and load_many keeps order.
pub async fn unknown_users_read_as_offline_version_zero(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("bob", "b1", 0.0).await;
    let views = h
        .store
        .load_many(&["ghost".into(), "bob".into(), "ghost2".into()])
        .await
        .expect("load_many");
    let ids: Vec<_> = views
        .iter()
        .map(|v| v.presence.user_id.to_string())
        .collect();
    assert_eq!(ids, vec!["ghost", "bob", "ghost2"]);
    assert_eq!(
        (views[0].presence.status, views[0].presence.v),
        (Status::Offline, 0)
    );
    assert!(views[0].scopes.is_empty());
    assert_eq!(views[1].presence.status, Status::Online);
}

/// Each present user has one deadline; `due` returns it once it passes and
/// a refresh moves it on; an OFFLINE user has none.
pub async fn deadlines_are_indexed_and_move_on_after_refresh(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    assert_eq!(h.store.next_deadline().await.expect("next"), None);
    let t = h.open("alice", "s1", 0.0).await;
    assert_eq!(t.next_deadline, Some(h.at(30.0)));
    h.open("bob", "b1", 10.0).await;
    assert_eq!(
        h.store.next_deadline().await.expect("next"),
        Some(h.at(30.0))
    );
    assert!(h.due(29.999).await.is_empty());
    assert_eq!(h.due(30.0).await, vec!["alice"]);
    assert_eq!(h.due(40.0).await, vec!["alice", "bob"], "oldest first");
    let limited = h.store.due(h.at(40.0), 1).await.expect("due");
    assert_eq!(limited, vec![UserId::from("alice")]);
    h.heartbeat("alice", "s1", 25.0).expect("heartbeat");
    let t = h.refresh("alice", 30.0).await;
    assert_eq!(t.next_deadline, Some(h.at(55.0)));
    assert_eq!(h.due(30.0).await, Vec::<String>::new());
    h.apply("alice", UserOp::LogoutEverywhere, 31.0).await;
    h.apply("bob", UserOp::LogoutEverywhere, 31.0).await;
    assert_eq!(h.store.next_deadline().await.expect("next"), None);
    assert!(h.due(10_000.0).await.is_empty());
}

/// A sweep's claim hides the users it took from every other sweep until
/// its hold (nodes split the due work); the claimant's refresh moves a
/// user on, and a user whose claimant never refreshed it (it died) is due
/// again at the hold.
pub async fn a_claimed_user_is_passed_by_until_its_hold(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    h.open("bob", "b1", 10.0).await;
    let claim = |now: f64, hold: f64| {
        let h = &h;
        async move {
            let mut users: Vec<String> = h
                .store
                .claim_due(h.at(now), 1000, h.at(hold))
                .await
                .expect("claim_due")
                .into_iter()
                .map(|user| user.to_string())
                .collect();
            users.sort();
            users
        }
    };
    assert_eq!(claim(35.0, 45.0).await, ["alice"], "bob is not due yet");
    assert!(
        claim(36.0, 46.0).await.is_empty(),
        "alice is claimed by the first sweep"
    );
    assert_eq!(h.due(44.0).await, ["bob"], "alice is hidden until 45");
    assert_eq!(
        h.store.next_deadline().await.expect("next"),
        Some(h.at(40.0))
    );
    assert_eq!(
        claim(45.0, 55.0).await,
        ["alice", "bob"],
        "the hold ran out"
    );
    // The claimant refreshes alice: her session lapsed at 30, her linger
    // ended at 35, and nothing will change her again.
    let t = h.refresh("alice", 45.0).await;
    assert_eq!((t.to, t.next_deadline), (Status::Offline, None));
    assert_eq!(h.due(60.0).await, ["bob"]);
}

/// Sweeps racing to claim the same due users take each user once between
/// them.
pub async fn racing_sweeps_claim_each_due_user_once(store: Arc<dyn PresenceStore>) {
    let h = Arc::new(Harness::new(store));
    let users: Vec<String> = (0..40).map(|i| format!("user-{i:02}")).collect();
    for user in &users {
        h.open(user, &format!("{user}-s"), 0.0).await;
    }
    let sweeps: Vec<_> = (0..8)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let batch = h
                        .store
                        .claim_due(h.at(31.0), 3, h.at(60.0))
                        .await
                        .expect("claim_due");
                    if batch.is_empty() {
                        return claimed;
                    }
                    claimed.extend(batch.into_iter().map(|user| user.to_string()));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for sweep in sweeps {
        claimed.extend(sweep.await.expect("a sweep"));
    }
    claimed.sort();
    assert_eq!(claimed, users, "every due user, each once");
}

/// Sessions left by an earlier incarnation of a node are found by name and
/// cleared; the current incarnation's and other nodes' sessions stay.
pub async fn a_restarted_node_clears_its_previous_incarnation(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let old = NodeId {
        name: "node-a".into(),
        incarnation: 1,
    };
    let new = NodeId {
        name: "node-a".into(),
        incarnation: 2,
    };
    let other = NodeId {
        name: "node-b".into(),
        incarnation: 1,
    };
    h.apply("alice", h.open_op_on(&old, "a-old", "l", &["acme"]), 0.0)
        .await;
    h.apply("bob", h.open_op_on(&old, "b-old", "l", &["acme"]), 0.0)
        .await;
    h.apply("bob", h.open_op_on(&other, "b-other", "l", &["acme"]), 0.0)
        .await;
    h.apply("carol", h.open_op_on(&new, "c-new", "l", &["acme"]), 0.0)
        .await;
    let mut on_a = h
        .store
        .users_on_node(&"node-a".into())
        .await
        .expect("users");
    on_a.sort();
    assert_eq!(on_a, vec!["alice".into(), "bob".into(), "carol".into()]);
    let clear = UserOp::ClearNode {
        node: new.clone(),
        alive: Vec::new(),
    };
    for user in ["alice", "bob", "carol"] {
        h.apply(user, clear.clone(), 1.0).await;
    }
    let mut on_a = h
        .store
        .users_on_node(&"node-a".into())
        .await
        .expect("users");
    on_a.sort();
    assert_eq!(on_a, vec!["carol".into()]);
    assert!(h.heartbeat("alice", "a-old", 2.0).is_err());
    h.heartbeat("bob", "b-other", 2.0)
        .expect("node-b's session stays");
    h.heartbeat("carol", "c-new", 2.0)
        .expect("the new run's session stays");
    // Alice lingers like anyone whose connection dropped, then goes.
    assert_eq!(h.refresh("alice", 6.0).await.to, Status::Offline);

    // A process of node-a still alive beside the new one (a rolling
    // deploy) keeps its sessions; shutting down, a process ends its own
    // sessions and no other's.
    let overlapping = NodeId {
        name: "node-a".into(),
        incarnation: 3,
    };
    h.apply(
        "dave",
        h.open_op_on(&overlapping, "d-3", "l", &["acme"]),
        7.0,
    )
    .await;
    let keep_3 = UserOp::ClearNode {
        node: new.clone(),
        alive: vec![3],
    };
    let t = h.apply("dave", keep_3, 8.0).await;
    assert!(t.ended_sessions.is_empty(), "incarnation 3 is alive: {t:?}");
    let t = h
        .apply(
            "carol",
            UserOp::EndIncarnation {
                node: overlapping.clone(),
                at: None,
            },
            9.0,
        )
        .await;
    assert!(t.ended_sessions.is_empty(), "carol is on incarnation 2");
    let t = h
        .apply(
            "dave",
            UserOp::EndIncarnation {
                node: overlapping,
                at: None,
            },
            9.0,
        )
        .await;
    assert_eq!(t.ended_sessions, vec!["d-3".into()]);
    assert!(!t.changed(), "dave lingers");
    h.heartbeat("carol", "c-new", 9.0)
        .expect("incarnation 2's session stays");
}

/// Processes' leases are kept per incarnation, renewed, listed by node name
/// (expired ones too: the store does not judge them) and ended.
pub async fn node_leases_are_kept_per_incarnation(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let node = |name: &str, incarnation| NodeId {
        name: name.into(),
        incarnation,
    };
    let name = NodeName::from("node-a");
    assert!(h.store.leases(&name).await.expect("leases").is_empty());
    h.store
        .renew_lease(&node("node-a", 1), h.at(10.0))
        .await
        .expect("renew");
    h.store
        .renew_lease(&node("node-a", u64::MAX), h.at(20.0))
        .await
        .expect("renew");
    h.store
        .renew_lease(&node("node-b", 1), h.at(5.0))
        .await
        .expect("renew");
    let mut leases = h.store.leases(&name).await.expect("leases");
    leases.sort();
    assert_eq!(leases, vec![(1, h.at(10.0)), (u64::MAX, h.at(20.0))]);
    h.store
        .renew_lease(&node("node-a", 1), h.at(30.0))
        .await
        .expect("renew again");
    h.store
        .end_lease(&node("node-a", u64::MAX))
        .await
        .expect("end");
    assert_eq!(
        h.store.leases(&name).await.expect("leases"),
        vec![(1, h.at(30.0))]
    );
    assert_eq!(
        h.store.leases(&"node-b".into()).await.expect("leases"),
        vec![(1, h.at(5.0))]
    );
}

/// The leases that ran out are found across node names, with the instant
/// each ran out, until they are ended.
pub async fn expired_leases_are_found_across_node_names(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let node = |name: &str, incarnation| NodeId {
        name: name.into(),
        incarnation,
    };
    for (process, until) in [
        (node("node-a", 1), 10.0),
        (node("node:b", u64::MAX), 20.0),
        (node("node-c", 3), 30.0),
    ] {
        h.store
            .renew_lease(&process, h.at(until))
            .await
            .expect("renew");
    }
    let expired = |seconds: f64| {
        let h = h.clone();
        async move {
            let mut found = h.store.expired_leases(h.at(seconds)).await.expect("read");
            found.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name));
            found
        }
    };
    assert!(expired(9.9).await.is_empty(), "no lease ran out yet");
    assert_eq!(
        expired(20.0).await,
        vec![
            (node("node-a", 1), h.at(10.0)),
            (node("node:b", u64::MAX), h.at(20.0)),
        ],
        "a lease runs out at its expiry; a colon in a name is kept"
    );
    h.store
        .renew_lease(&node("node-a", 1), h.at(40.0))
        .await
        .expect("renewed late");
    h.store
        .end_lease(&node("node:b", u64::MAX))
        .await
        .expect("end");
    assert_eq!(expired(30.0).await, vec![(node("node-c", 3), h.at(30.0))]);
}

/// A session its node holds never lapses by time, and sets no deadline of
/// its own: a user who is merely present costs no sweep. When its holder
/// lets go of it ([`UserOp::Lapse`]), it lapses a TTL after the heartbeat
/// the holder heard last, lingering from then; when the holder's lease
/// runs out, [`UserOp::EndIncarnation`] ends it as of that instant.
pub async fn a_held_session_lapses_only_when_its_holder_says(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let t = h
        .apply("alice", h.open_held_op("a-tab", "login-1", &["acme"]), 0.0)
        .await;
    assert_eq!(
        t.next_deadline,
        Some(h.at(60.0)),
        "away, not a lapse at 30 s"
    );
    let t = h.refresh("alice", 59.0).await;
    assert_eq!((t.to, t.ended_sessions.len()), (Status::Online, 0));
    let lapse = UserOp::Lapse {
        sessions: vec![(SessionId::from("a-tab"), h.at(50.0))],
        held_by: h.node.clone(),
    };
    let t = h.apply("alice", lapse, 59.0).await;
    assert!(t.ended_sessions.is_empty(), "heard at 50 s: lapses at 80 s");
    assert_eq!(t.next_deadline, Some(h.at(60.0)));
    let t = h.refresh("alice", 81.0).await;
    assert_eq!(t.ended_sessions, vec![SessionId::from("a-tab")]);
    assert_eq!(t.to, Status::Away, "lingering from 80 s, idle since 0 s");
    let t = h.refresh("alice", 85.0).await;
    assert_eq!((t.to, t.last_seen), (Status::Offline, Some(h.at(50.0))));

    // Another node's word is not the holder's: nothing happens.
    h.apply("bob", h.open_held_op("b-tab", "login-1", &["acme"]), 100.0)
        .await;
    let foreign = UserOp::Lapse {
        sessions: vec![(SessionId::from("b-tab"), h.at(100.0))],
        held_by: NodeId {
            name: "node-b".into(),
            incarnation: 9,
        },
    };
    let t = h.apply("bob", foreign, 200.0).await;
    assert!(t.ended_sessions.is_empty() && t.present);
    let dead = UserOp::EndIncarnation {
        node: h.node.clone(),
        at: Some(h.at(150.0)),
    };
    let t = h.apply("bob", dead, 200.0).await;
    assert_eq!(t.ended_sessions, vec![SessionId::from("b-tab")]);
    assert_eq!(
        (t.to, t.last_seen),
        (Status::Offline, Some(h.at(150.0))),
        "ended at 150 s, when its holder's lease ran out: its linger is over"
    );
}

/// A user's version keeps growing across offline and online again.
pub async fn versions_survive_going_offline_and_coming_back(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let mut expected = 0;
    for round in 0..3 {
        let start = f64::from(round) * 100.0;
        let t = h.open("alice", "s1", start).await;
        expected += 1;
        assert_eq!((t.to, t.version), (Status::Online, expected));
        let t = h
            .apply(
                "alice",
                UserOp::Logout {
                    login: "login-1".into(),
                },
                start + 1.0,
            )
            .await;
        expected += 1;
        assert_eq!((t.to, t.version), (Status::Offline, expected));
    }
    assert_eq!(h.view("alice").await.v, 6);
}

/// 128 tasks open sessions of one user at once: exactly one sees the first
/// session and one ONLINE; then all close at once (no linger) and exactly
/// one sees the last session and one OFFLINE.
pub async fn concurrent_first_and_last_sessions_are_decided_once(store: Arc<dyn PresenceStore>) {
    let mut h = Harness::new(store);
    h.config.linger = std::time::Duration::ZERO;
    let tasks = 128;
    let opens = run_concurrently(&h, tasks, |h, i| async move {
        h.open("alice", &format!("s{i}"), 0.0).await
    })
    .await;
    assert_eq!(opens.iter().filter(|t| t.first_session).count(), 1);
    assert_eq!(opens.iter().filter(|t| t.changed()).count(), 1);
    let closes = run_concurrently(&h, tasks, |h, i| async move {
        h.close("alice", &format!("s{i}"), 1.0).await
    })
    .await;
    assert_eq!(closes.iter().filter(|t| t.last_session).count(), 1);
    let offline: Vec<_> = closes.iter().filter(|t| t.changed()).collect();
    assert_eq!(offline.len(), 1);
    assert_eq!((offline[0].to, offline[0].version), (Status::Offline, 2));
}

/// Many tasks each open and close their own session of one user, racing:
/// every ONLINE is matched by an OFFLINE, versions have no gaps or repeats,
/// and the user ends OFFLINE with no session left.
pub async fn concurrent_open_close_pairs_leave_no_ghost(store: Arc<dyn PresenceStore>) {
    let mut h = Harness::new(store);
    h.config.linger = std::time::Duration::ZERO;
    let transitions = run_concurrently(&h, 128, |h, i| async move {
        let session = format!("s{i}");
        let open = h.open("alice", &session, 0.0).await;
        let close = h.close("alice", &session, 0.0).await;
        vec![open, close]
    })
    .await;
    let mut changes: Vec<_> = transitions
        .into_iter()
        .flatten()
        .filter(|t| t.changed())
        .collect();
    changes.sort_by_key(|t| t.version);
    for (index, change) in changes.iter().enumerate() {
        assert_eq!(change.version, index as u64 + 1, "versions have no gaps");
        let expected = if index % 2 == 0 {
            Status::Online
        } else {
            Status::Offline
        };
        assert_eq!(change.to, expected, "ONLINE and OFFLINE alternate");
    }
    assert_eq!(changes.len() % 2, 0, "every ONLINE has its OFFLINE");
    let view = h.view("alice").await;
    assert_eq!(
        (view.status, view.v),
        (Status::Offline, changes.len() as u64)
    );
    assert!(h.members("acme").await.is_empty(), "no ghost member");
}

async fn run_concurrently<F, Fut, T>(h: &Harness, tasks: usize, task: F) -> Vec<T>
where
    F: Fn(Harness, usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let work = task(h.clone(), i);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("task panicked"));
    }
    results
}

/// A login that logged out opens nothing for `session_ttl`: a socket or
/// request that raced the logout (on any node) cannot bring the user back.
pub async fn a_logged_out_login_cannot_open_again_for_a_ttl(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("a1", "laptop", &["acme"]), 0.0)
        .await;
    h.apply(
        "alice",
        UserOp::Logout {
            login: "laptop".into(),
        },
        1.0,
    )
    .await;
    let late = h
        .try_apply("alice", h.open_op("a2", "laptop", &["acme"]), 2.0)
        .await;
    assert!(
        matches!(late, Err(StoreError::LoggedOut)),
        "a late open of the logged-out login: {late:?}"
    );
    assert_eq!(h.view("alice").await.status, Status::Offline);
    let other = h
        .apply("alice", h.open_op("a3", "phone", &["acme"]), 2.0)
        .await;
    assert_eq!(other.to, Status::Online, "another login is welcome");
    h.apply("alice", UserOp::LogoutEverywhere, 3.0).await;
    let after_ttl = h
        .apply("alice", h.open_op("a4", "laptop", &["acme"]), 40.0)
        .await;
    assert_eq!(
        after_ttl.to,
        Status::Online,
        "after a TTL the login id is forgotten"
    );
}

/// Registering a session again after the store lost its data proves it
/// live but is not activity: an idle user stays AWAY; a record the store
/// lost comes back ONLINE. The registration carries the session's real
/// last heartbeat: it never makes a session look fresher than it is, and a
/// session whose heartbeat has lapsed meanwhile stays dead.
pub async fn restoring_a_session_is_not_activity(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let opened = h.open_op("a1", "laptop", &["acme"]);
    let UserOp::Open(session) = opened.clone() else {
        unreachable!("open_op opens");
    };
    h.apply("alice", opened, 0.0).await;
    for seconds in [25.0, 50.0] {
        h.heartbeat("alice", "a1", seconds).expect("alive");
    }
    let away = h.apply("alice", UserOp::Refresh, 61.0).await;
    assert_eq!(away.to, Status::Away);
    let restore = UserOp::Restore {
        session,
        last_heartbeat: h.at(50.0),
    };
    let restored = h.apply("alice", restore, 62.0).await;
    assert_eq!((restored.from, restored.to), (Status::Away, Status::Away));
    let t = h.refresh("alice", 79.999).await;
    assert!(t.ended_sessions.is_empty(), "live until 80 s: {t:?}");
    let t = h.refresh("alice", 80.0).await;
    assert_eq!(
        t.ended_sessions,
        vec!["a1".into()],
        "the restore did not refresh the heartbeat"
    );

    let UserOp::Open(bobs) = h.open_op("b1", "phone", &["acme"]) else {
        unreachable!("open_op opens");
    };
    let lost = UserOp::Restore {
        session: bobs.clone(),
        last_heartbeat: h.at(55.0),
    };
    let lost = h.apply("bob", lost, 62.0).await;
    assert_eq!(
        lost.to,
        Status::Online,
        "nothing known of bob: present from now"
    );
    assert_eq!(
        lost.next_deadline,
        Some(h.at(85.0)),
        "lapses 30 s after 55 s"
    );

    let UserOp::Open(carols) = h.open_op("c1", "tablet", &["acme"]) else {
        unreachable!("open_op opens");
    };
    let dead = UserOp::Restore {
        session: carols,
        last_heartbeat: h.at(32.0),
    };
    assert!(
        matches!(
            h.try_apply("carol", dead, 62.0).await,
            Err(StoreError::SessionNotFound)
        ),
        "a session silent for a TTL is not brought back"
    );
    assert_eq!(h.view("carol").await.status, Status::Offline);
}

/// A custom status, checked.
fn custom(text: &str, emoji: &str, until: Option<DateTime<Utc>>) -> CustomStatus {
    CustomStatus::new(Some(text.into()), Some(emoji.into()), until).expect("a valid custom status")
}

/// The custom status shown in `details`.
fn custom_in(details: &Option<Arc<Details>>) -> Option<&CustomStatus> {
    details
        .as_deref()
        .and_then(|details| details.custom.as_ref())
}

/// The kinds of session shown in `details`, with their statuses, in order
/// of kind.
fn devices_in(details: &Option<Arc<Details>>) -> Vec<(String, Status)> {
    details.as_deref().map_or_else(Vec::new, |details| {
        details
            .devices
            .iter()
            .map(|(kind, status)| (kind.to_string(), *status))
            .collect()
    })
}

/// The merged app state shown in `details`.
fn state_in(details: &Option<Arc<Details>>) -> Option<Value> {
    details
        .as_deref()
        .and_then(|details| details.state.clone())
        .map(Value::from)
}

/// The operation that sets (or clears) a session's app state.
fn set_state(session: &str, state: Option<Value>) -> UserOp {
    UserOp::SetState {
        session: session.into(),
        state: state.map(|state| AppState::new(state).expect("a valid app state")),
    }
}

/// `user` as [`PresenceStore::scope_members`] reads them in `scope`.
async fn member(h: &Harness, scope: &str, user: &str) -> Option<UserPresence> {
    h.store
        .scope_members(&scope.into())
        .await
        .expect("scope_members")
        .into_iter()
        .find(|member| member.user_id.as_str() == user)
}

/// `user` as `load_many` reads them, checked against what
/// `scope_members` reads of them in `scope`: every read agrees.
async fn seen(h: &Harness, user: &str, scope: &str) -> UserPresence {
    let view = h.view(user).await;
    assert_eq!(
        member(h, scope, user).await.as_ref(),
        Some(&view),
        "scope_members and load_many agree on {user}"
    );
    view
}

/// A custom status reads back as it was set, through `load_many` and
/// `scope_members` alike. Changing only its text is an update: the version
/// grows by exactly one, the status stays, and each scope of the user is
/// told once, never `OFFLINE` in between. The same custom status set again
/// tells nothing.
pub async fn a_custom_status_reads_back_and_a_new_text_is_one_update(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.apply("alice", h.open_op("s1", "l", &["acme", "team-x"]), 0.0)
        .await;
    let meeting = custom("En réunion – 会議", "👩‍💻", None);
    let t = h
        .apply("alice", UserOp::SetCustom(Some(meeting.clone())), 1.0)
        .await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Online, 2)
    );
    assert!(t.updated && t.changed() && !t.status_changed(), "{t:?}");
    assert_eq!(custom_in(&t.details), Some(&meeting));
    let view = seen(&h, "alice", "acme").await;
    assert_eq!((view.status, view.v), (Status::Online, 2));
    assert_eq!(
        custom_in(&view.details),
        Some(&meeting),
        "same text and emoji"
    );

    let lunch = custom("Lunch", "👩‍💻", None);
    let t = h
        .apply("alice", UserOp::SetCustom(Some(lunch.clone())), 2.0)
        .await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Online, 3),
        "one more version, the status kept"
    );
    assert!(t.updated, "{t:?}");
    let events: Vec<PresenceEvent> = PresenceEvent::for_transition(&t).collect();
    let mut told: Vec<(String, Status, u64)> = events
        .iter()
        .map(|event| (event.scope.to_string(), event.status, event.v))
        .collect();
    told.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        told,
        vec![
            ("acme".to_owned(), Status::Online, 3),
            ("team-x".to_owned(), Status::Online, 3),
        ],
        "one event per scope, no leave and join"
    );
    for event in &events {
        assert_eq!(custom_in(&event.details), Some(&lunch));
    }
    let view = seen(&h, "alice", "team-x").await;
    assert_eq!(view.v, 3);
    assert_eq!(custom_in(&view.details), Some(&lunch));

    let t = h.apply("alice", UserOp::SetCustom(Some(lunch)), 3.0).await;
    assert!(!t.changed() && t.version == 3, "nothing new to tell: {t:?}");
}

/// A custom status with an expiry is a deadline: the user is due then,
/// and the refresh at that instant clears it with one more version (the
/// status unchanged).
pub async fn a_custom_status_clears_by_itself_at_its_expiry(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    let back_soon = custom("Back soon", "☕", Some(h.at(20.0)));
    let t = h
        .apply("alice", UserOp::SetCustom(Some(back_soon.clone())), 1.0)
        .await;
    assert_eq!(t.version, 2);
    assert_eq!(
        t.next_deadline,
        Some(h.at(20.0)),
        "the expiry comes before the lapse at 30 s"
    );
    assert_eq!(custom_in(&h.view("alice").await.details), Some(&back_soon));
    assert_eq!(
        h.store.next_deadline().await.expect("next"),
        Some(h.at(20.0))
    );
    assert!(h.due(19.999).await.is_empty());
    assert_eq!(h.due(20.0).await, vec!["alice"]);
    let t = h.refresh("alice", 19.999).await;
    assert!(!t.changed(), "not yet: {t:?}");
    let t = h.refresh("alice", 20.0).await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Online, 3)
    );
    assert!(t.updated && t.details.is_none(), "cleared: {t:?}");
    assert_eq!(t.next_deadline, Some(h.at(30.0)));
    let view = seen(&h, "alice", "acme").await;
    assert_eq!((view.v, view.details), (3, None));
}

/// Each kind of session shows a status of its own: two kinds, web and
/// mobile, both `ONLINE`; with activity only on the web, the mobile one
/// turns `AWAY` `away_after` after its own last activity (the user is due
/// then) while the user stays `ONLINE`; closing it removes its kind.
pub async fn each_kind_of_session_shows_its_own_status(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let t = h
        .apply("alice", h.open_kind_op("w", "web", "l", &["acme"]), 0.0)
        .await;
    assert_eq!(devices_in(&t.details), [("web".into(), Status::Online)]);
    let t = h
        .apply("alice", h.open_kind_op("m", "mobile", "l", &["acme"]), 1.0)
        .await;
    assert_eq!((t.to, t.version), (Status::Online, 2));
    assert!(t.updated, "a kind more is an update: {t:?}");
    let both = [
        ("mobile".to_owned(), Status::Online),
        ("web".to_owned(), Status::Online),
    ];
    assert_eq!(devices_in(&t.details), both);
    assert_eq!(devices_in(&seen(&h, "alice", "acme").await.details), both);

    for session in ["w", "m"] {
        h.heartbeat("alice", session, 25.0).expect("heartbeat");
    }
    h.heartbeat("alice", "m", 50.0).expect("heartbeat");
    let activity = UserOp::Activity {
        session: "w".into(),
    };
    let t = h.apply("alice", activity, 50.0).await;
    assert!(!t.changed(), "{t:?}");
    assert_eq!(
        t.next_deadline,
        Some(h.at(61.0)),
        "the mobile session turns away 60 s after it opened"
    );
    assert!(h.due(60.999).await.is_empty());
    assert_eq!(h.due(61.0).await, vec!["alice"]);
    let t = h.refresh("alice", 61.0).await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Online, 3)
    );
    let apart = [
        ("mobile".to_owned(), Status::Away),
        ("web".to_owned(), Status::Online),
    ];
    assert_eq!(devices_in(&t.details), apart);
    assert_eq!(devices_in(&seen(&h, "alice", "acme").await.details), apart);

    let t = h.close("alice", "m", 62.0).await;
    assert_eq!((t.to, t.version), (Status::Online, 4));
    assert_eq!(t.ended_sessions, vec!["m".into()]);
    let web = [("web".to_owned(), Status::Online)];
    assert_eq!(devices_in(&t.details), web);
    assert_eq!(devices_in(&seen(&h, "alice", "acme").await.details), web);
}

/// Sessions' app states show merged, the one set last winning a key; a
/// session's new state replaces its old one; clearing removes it; setting
/// the state of a session that is not open fails and stores nothing.
pub async fn session_state_merges_newest_first_and_clears(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    h.open("alice", "s2", 0.5).await;
    let steps = [
        (
            set_state("s1", Some(json!({"in_call": true, "page": "a"}))),
            json!({"in_call": true, "page": "a"}),
        ),
        (
            set_state("s2", Some(json!({"page": "b"}))),
            json!({"in_call": true, "page": "b"}),
        ),
        (
            set_state("s1", Some(json!({"in_call": true, "page": "c"}))),
            json!({"in_call": true, "page": "c"}),
        ),
        (set_state("s1", None), json!({"page": "b"})),
    ];
    for (n, (op, merged)) in steps.into_iter().enumerate() {
        let t = h.apply("alice", op, 1.0 + n as f64).await;
        let version = 2 + n as u64;
        assert_eq!((t.to, t.version), (Status::Online, version), "step {n}");
        assert!(t.updated, "step {n}: {t:?}");
        assert_eq!(state_in(&t.details), Some(merged.clone()), "step {n}");
        let view = seen(&h, "alice", "acme").await;
        assert_eq!(
            (view.v, state_in(&view.details)),
            (version, Some(merged)),
            "step {n}"
        );
    }

    let before = h.view_with_scopes("alice").await;
    let err = h
        .try_apply("alice", set_state("ghost", Some(json!({"x": 1}))), 6.0)
        .await
        .expect_err("no such session");
    assert!(matches!(err, StoreError::SessionNotFound), "{err:?}");
    assert_eq!(h.view_with_scopes("alice").await, before, "nothing stored");

    let t = h.apply("alice", set_state("s2", None), 7.0).await;
    assert_eq!((t.version, t.details), (6, None), "no state left");
    assert_eq!(seen(&h, "alice", "acme").await.details, None);
}

/// A user who hides when they were last seen shows `last_seen` none to
/// every read and event (one more version); their activity meanwhile
/// tells nothing; showing it again brings back the truth.
pub async fn hiding_last_seen_hides_it_from_every_read(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    h.open("alice", "s1", 0.0).await;
    assert_eq!(h.view("alice").await.last_seen, Some(h.at(0.0)));
    let t = h.apply("alice", UserOp::HideLastSeen(true), 1.0).await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Online, 2)
    );
    assert!(t.updated && t.last_seen.is_none(), "{t:?}");
    let events: Vec<PresenceEvent> = PresenceEvent::for_transition(&t).collect();
    assert_eq!(events.len(), 1);
    assert!(events.iter().all(|event| event.last_seen.is_none()));
    let view = seen(&h, "alice", "acme").await;
    assert_eq!((view.v, view.last_seen), (2, None));

    let t = h.apply("alice", UserOp::HideLastSeen(true), 2.0).await;
    assert!(!t.changed(), "hidden already: {t:?}");
    let activity = UserOp::Activity {
        session: "s1".into(),
    };
    let t = h.apply("alice", activity, 3.0).await;
    assert!(!t.changed() && t.last_seen.is_none(), "{t:?}");
    assert_eq!(seen(&h, "alice", "acme").await.last_seen, None);

    let t = h.apply("alice", UserOp::HideLastSeen(false), 4.0).await;
    assert_eq!((t.version, t.last_seen), (3, Some(h.at(3.0))));
    let view = seen(&h, "alice", "acme").await;
    assert_eq!((view.v, view.last_seen), (3, Some(h.at(3.0))));
}

/// An invisible user leaks none of the new fields: the custom status,
/// kinds and app state they set (before or while invisible) show in no
/// read, transition or event, `last_seen` stays frozen, and pages of the
/// scope leave them out. Visible again, all of it shows.
pub async fn an_invisible_user_shows_no_custom_status_devices_or_state(
    store: Arc<dyn PresenceStore>,
) {
    let h = Harness::new(store);
    h.apply("alice", h.open_kind_op("w", "web", "l", &["acme"]), 0.0)
        .await;
    h.apply(
        "alice",
        UserOp::SetCustom(Some(custom("Focus", "🎧", None))),
        1.0,
    )
    .await;
    h.apply("alice", set_state("w", Some(json!({"in_call": true}))), 2.0)
        .await;
    let invisible = ManualChoice {
        status: ManualStatus::Invisible,
        until: None,
    };
    let t = h
        .apply("alice", UserOp::SetManual(Some(invisible)), 3.0)
        .await;
    assert_eq!(
        (t.from, t.to, t.version),
        (Status::Online, Status::Offline, 4)
    );
    assert_eq!(t.details, None);
    for event in PresenceEvent::for_transition(&t) {
        assert_eq!((event.status, event.details), (Status::Offline, None));
    }
    let frozen = seen(&h, "alice", "acme").await;
    assert_eq!(
        (frozen.status, frozen.last_seen, frozen.details.clone()),
        (Status::Offline, Some(h.at(0.0)), None)
    );

    let meanwhile = [
        (
            UserOp::Activity {
                session: "w".into(),
            },
            10.0,
        ),
        (
            UserOp::SetCustom(Some(custom("Hiding", ":see_no_evil:", None))),
            11.0,
        ),
        (set_state("w", Some(json!({"in_call": false}))), 12.0),
        (h.open_kind_op("m", "mobile", "l", &["acme"]), 13.0),
    ];
    for (op, second) in meanwhile {
        let t = h.apply("alice", op.clone(), second).await;
        assert!(!t.changed() && t.details.is_none(), "{op:?}: {t:?}");
        assert_eq!(PresenceEvent::for_transition(&t).count(), 0, "{op:?}");
    }
    assert_eq!(seen(&h, "alice", "acme").await, frozen, "nothing leaks");
    assert!(h.members_page("acme", None, 10).await.is_empty());

    let t = h.apply("alice", UserOp::SetManual(None), 14.0).await;
    assert_eq!(
        (t.from, t.to, t.version, t.last_seen),
        (Status::Offline, Status::Online, 5, Some(h.at(13.0)))
    );
    assert_eq!(
        custom_in(&t.details),
        Some(&custom("Hiding", ":see_no_evil:", None))
    );
    assert_eq!(
        devices_in(&t.details),
        [
            ("mobile".to_owned(), Status::Online),
            ("web".to_owned(), Status::Online)
        ]
    );
    assert_eq!(state_in(&t.details), Some(json!({"in_call": false})));
    assert_eq!(seen(&h, "alice", "acme").await.details, t.details);
}

/// Pages of a scope's members: in order of user id (as Rust compares
/// strings: byte by byte), each after the cursor (which need not be a
/// member), at most the limit; members shown `OFFLINE` (invisible) and
/// users no longer present are left out; an empty scope has none. Each
/// entry is what the other reads give.
pub async fn members_pages_run_in_user_id_order(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store);
    let users = ["zed", "alice", "Bob", "éva", "carol", "al", "dave"];
    for (n, user) in users.into_iter().enumerate() {
        let open = h.open_op(&format!("{user}-1"), "l", &["acme"]);
        h.apply(user, open, n as f64 / 10.0).await;
    }
    let busy = ManualChoice {
        status: ManualStatus::Busy,
        until: None,
    };
    h.apply("dave", UserOp::SetManual(Some(busy)), 1.0).await;
    h.apply(
        "alice",
        UserOp::SetCustom(Some(custom("Here", "👋", None))),
        1.0,
    )
    .await;
    h.apply("frank", h.open_op("f1", "l", &["acme"]), 1.0).await;
    let invisible = ManualChoice {
        status: ManualStatus::Invisible,
        until: None,
    };
    h.apply("frank", UserOp::SetManual(Some(invisible)), 1.1)
        .await;
    h.apply("gina", h.open_op("g1", "l", &["acme"]), 1.2).await;
    h.apply("gina", UserOp::LogoutEverywhere, 1.3).await;
    h.apply("hal", h.open_op("h1", "l", &["globex"]), 1.4).await;

    let ids = |page: &[UserPresence]| -> Vec<String> {
        page.iter()
            .map(|member| member.user_id.to_string())
            .collect()
    };
    let all = h.members_page("acme", None, 100).await;
    assert_eq!(
        ids(&all),
        ["Bob", "al", "alice", "carol", "dave", "zed", "éva"],
        "byte order"
    );
    let members = h
        .store
        .scope_members(&"acme".into())
        .await
        .expect("scope_members");
    for entry in &all {
        assert_eq!(
            members.iter().find(|m| m.user_id == entry.user_id),
            Some(entry)
        );
    }
    let dave = all.iter().find(|m| m.user_id.as_str() == "dave");
    assert_eq!(dave.map(|m| m.status), Some(Status::Busy));
    let alice = all.iter().find(|m| m.user_id.as_str() == "alice");
    assert!(alice.is_some_and(|m| custom_in(&m.details).is_some()));

    let pages = [
        (None, 3, vec!["Bob", "al", "alice"]),
        (Some("alice"), 3, vec!["carol", "dave", "zed"]),
        (Some("zed"), 3, vec!["éva"]),
        (Some("éva"), 3, vec![]),
        (Some("b"), 2, vec!["carol", "dave"]),
        (Some("Bob"), 1, vec!["al"]),
        (Some("alicf"), 1, vec!["carol"]),
    ];
    for (after, limit, expected) in pages {
        let page = h.members_page("acme", after, limit).await;
        assert_eq!(ids(&page), expected, "after {after:?}, {limit} at most");
    }
    assert_eq!(ids(&h.members_page("globex", None, 10).await), ["hal"]);
    assert!(h.members_page("nowhere", None, 10).await.is_empty());
}

/// Every change observers see, applied with `keep_change`, is kept for its
/// node name with the process that made it, until forgotten; a change that
/// shows nothing, a change not asked to be kept, and a failed one keep
/// nothing. What is read back is the change as it was made.
pub async fn changes_are_kept_for_their_node_until_forgotten(store: Arc<dyn PresenceStore>) {
    assert!(
        store.keeps_changes(),
        "every store of this workspace keeps changes"
    );
    let h = Harness::new(store.clone());
    let first_run = h.node.clone();
    let second_run = NodeId {
        name: "node-a".into(),
        incarnation: 2,
    };
    let other_node = NodeId {
        name: "node-b".into(),
        incarnation: 1,
    };
    let online = h
        .apply_kept(&first_run, "alice", h.open_op("s1", "l1", &["acme"]), 0.0)
        .await;
    let second_tab = h
        .apply_kept(&first_run, "alice", h.open_op("s2", "l1", &["acme"]), 1.0)
        .await;
    assert!(
        !second_tab.changed() && second_tab.kept.is_none(),
        "nothing to tell"
    );
    assert!(h.open("bob", "s3", 2.0).await.kept.is_none(), "not asked");
    let carol = h
        .apply_kept(
            &second_run,
            "carol",
            h.open_op_on(&second_run, "s4", "l4", &["acme"]),
            3.0,
        )
        .await;
    let dave = h
        .apply_kept(
            &other_node,
            "dave",
            h.open_op_on(&other_node, "s5", "l5", &["acme"]),
            4.0,
        )
        .await;
    let busy = h
        .apply_kept(
            &first_run,
            "alice",
            UserOp::SetManual(Some(ManualChoice {
                status: ManualStatus::Busy,
                until: None,
            })),
            5.0,
        )
        .await;
    let unknown = UserOp::Activity {
        session: "nope".into(),
    };
    assert!(
        h.try_apply_as(&first_run, true, "alice", unknown, 6.0)
            .await
            .is_err(),
        "a failed change"
    );

    let kept = store
        .kept_changes(&"node-a".into(), &[], 100)
        .await
        .expect("read");
    let read: Vec<(String, u64, u64)> = kept
        .iter()
        .map(|k| (k.change.user.to_string(), k.change.version, k.incarnation))
        .collect();
    let mut sorted = read.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("alice".into(), 1, 1),
            ("alice".into(), 2, 1),
            ("carol".into(), 1, 2)
        ],
        "node-a's changes, of both its processes"
    );
    let alice: Vec<u64> = read
        .iter()
        .filter(|r| r.0 == "alice")
        .map(|r| r.1)
        .collect();
    assert_eq!(alice, vec![1, 2], "a user's changes in the order made");
    let kept_online = kept
        .iter()
        .find(|k| k.change.user.as_str() == "alice" && k.change.version == 1)
        .expect("alice online");
    assert_eq!(
        kept_online.change,
        Change::of(&online),
        "the change as made"
    );
    assert_eq!(kept_online.change.id, online.kept);
    assert!(kept_online.change.first_session && kept_online.change.scopes == vec!["acme".into()]);
    let kept_busy = kept
        .iter()
        .find(|k| k.change.version == 2)
        .expect("alice busy");
    assert_eq!(
        (kept_busy.change.from, kept_busy.change.to),
        (Status::Online, Status::Busy)
    );
    assert_eq!(kept_busy.change.at, h.at(5.0));

    let others = store
        .kept_changes(&"node-a".into(), &[1], 100)
        .await
        .expect("read");
    assert_eq!(
        others
            .iter()
            .map(|k| k.change.user.as_str())
            .collect::<Vec<_>>(),
        vec!["carol"],
        "all but the processes left out"
    );
    let one = store
        .kept_changes(&"node-a".into(), &[], 1)
        .await
        .expect("read");
    assert_eq!(one.len(), 1, "at most the limit");
    let node_b = store
        .kept_changes(&"node-b".into(), &[], 100)
        .await
        .expect("read");
    assert_eq!(node_b.len(), 1);
    assert_eq!(node_b[0].change, Change::of(&dave));

    let forget = [
        online.kept.clone().expect("kept"),
        carol.kept.clone().expect("kept"),
    ];
    store
        .forget_changes(&"node-a".into(), &forget)
        .await
        .expect("forget");
    store
        .forget_changes(&"node-a".into(), &forget)
        .await
        .expect("forgetting twice passes by");
    let left = store
        .kept_changes(&"node-a".into(), &[], 100)
        .await
        .expect("read");
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0].change.id, busy.kept,
        "only the change not forgotten"
    );
    assert_eq!(
        store
            .kept_changes(&"node-b".into(), &[], 100)
            .await
            .expect("read")
            .len(),
        1,
        "another node's changes stay"
    );
}

/// 64 tasks open sessions of one user at once, each asking to keep its
/// change: the one change observers see (the first session) is kept once,
/// however often a store retried.
pub async fn a_change_raced_by_many_is_kept_once(store: Arc<dyn PresenceStore>) {
    let h = Harness::new(store.clone());
    let opens = run_concurrently(&h, 64, |h, i| async move {
        let node = h.node.clone();
        h.apply_kept(
            &node,
            "alice",
            h.open_op(&format!("s{i}"), "l1", &["acme"]),
            0.0,
        )
        .await
    })
    .await;
    assert_eq!(opens.iter().filter(|t| t.kept.is_some()).count(), 1);
    let kept = store
        .kept_changes(&"node-a".into(), &[], 100)
        .await
        .expect("read");
    assert_eq!(kept.len(), 1, "kept once: {kept:?}");
    assert_eq!(kept[0].change.version, 1);
}
