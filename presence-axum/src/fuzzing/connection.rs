//! One socket's message handling fed an arbitrary sequence of frames, waits
//! and clock jumps, against an in-memory service on a manual clock.
//!
//! Invariants, checked after every frame: handling never panics; each
//! frame gets the answer docs/protocol.md gives it (a pong, an error with the
//! decoder's code, a snapshot of the scope asked for, nothing, or the end
//! of the connection), allowing for flood control and a lapsed session;
//! a snapshot of some users names no one else (a counted one too, while
//! its scope is large); a refused frame stores nothing; an invisible user
//! shows no details; and nothing this socket sends changes another user.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use chrono::{SecondsFormat, TimeDelta};
use presence_core::{
    Clock, ManualClock, Presence, PresenceConfig, RequestedStatus, ScopeId, SessionKind,
    SessionSpec, Status, UserId, UserPresence,
};
use serde_json::json;
use tokio::time::Instant;

use super::decode::{CODES, encode, status_name};
use crate::identity::Identity;
use crate::protocol::{ClientMessage, ProtocolError, decode};
use crate::socket::answer::Answer;
use crate::socket::calls::StoreCalls;
use crate::socket::close::{Close, Ending};
use crate::socket::frame::{FrameContext, Inbound};
use crate::throttle::{FloodLimit, SET_STATE_LIMIT, Throttle};

/// Most operations one input runs: longer inputs find little more.
const MAX_OPS: usize = 512;
/// Scopes the fuzzer picks from: the user's, one it may watch, one it may
/// not, and an invalid (empty) name.
const SCOPES: [&str; 4] = ["team", "watchable", "forbidden", ""];
/// Users the fuzzer names in `subscribe`.
const USERS: [&str; 4] = ["me", "them", "nobody", ""];

/// One step of the fuzzer's script.
#[derive(Arbitrary, Debug)]
enum Op {
    /// A frame from the client.
    Frame(Frame),
    /// Time passes, for the flood control and the service's clock alike.
    Wait { millis: u16 },
    /// Only the service's clock jumps (sessions may lapse, statuses expire).
    Jump { seconds: u16 },
    /// The service runs what is due (expiries, lapses).
    RunDue,
}

#[derive(Arbitrary, Debug)]
enum Frame {
    /// Any text.
    Raw(String),
    /// A well-formed message.
    Message(Sent),
    Binary,
    Control,
    Closed,
    TooLarge,
    Broken,
}

#[derive(Arbitrary, Debug)]
enum Sent {
    Heartbeat,
    Activity,
    Status {
        status: u8,
        until_seconds: Option<i16>,
    },
    Subscribe {
        scope: u8,
        users: Option<Vec<u8>>,
        counts: bool,
    },
    Unsubscribe {
        scope: u8,
    },
    /// A `status_change` with a custom status: a status or none, a text
    /// and an emoji from lists of good and bad ones (or absent).
    Custom {
        status: Option<u8>,
        text: Option<u8>,
        emoji: Option<u8>,
        until_seconds: Option<i16>,
    },
    SetState {
        state: u8,
    },
    Privacy {
        hide_last_seen: bool,
    },
}

/// Texts a `status_change` sends: fine, cleared, blank, too long, with a
/// control character.
const TEXTS: [Option<&str>; 6] = [
    Some("In a meeting"),
    None,
    Some("   "),
    Some(concat!(
        "0123456789012345678901234567890123456789012345678901234567890123456789",
        "01234567890123456789012345678901"
    )),
    Some("two\nlines"),
    Some(""),
];
/// Emoji a `status_change` sends: fine, a name, cleared, ASCII, two.
const EMOJI: [Option<&str>; 6] = [
    Some("📅"),
    Some(":calendar:"),
    None,
    Some("a"),
    Some("📅📅"),
    Some(":Bad Name:"),
];

/// Runs the script the fuzzer's `data` spells; panics when an invariant
/// breaks.
pub fn replay_connection(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let ops: Vec<Op> = input
        .arbitrary_iter()
        .map(|ops| ops.take(MAX_OPS).filter_map(Result::ok).collect())
        .unwrap_or_default();
    // A runtime per input: dropping it ends the tasks the service spawned
    // (a runtime kept between inputs piled up their sweepers until the
    // fuzzer ran out of memory).
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for the harness")
        .block_on(run(ops));
}

fn config() -> PresenceConfig {
    PresenceConfig {
        heartbeat_interval: Duration::from_secs(10),
        session_ttl: Duration::from_secs(30),
        away_after: Duration::from_secs(120),
        offline_after: Duration::from_secs(600),
        linger: Duration::from_secs(5),
        max_sessions_per_user: 4,
    }
}

async fn run(ops: Vec<Op>) {
    let clock = Arc::new(ManualClock::default());
    let presence = Presence::builder()
        .clock(clock.clone())
        .config(config())
        // "watchable" is large (two members): a counted watch of it gets
        // counts.
        .large_scope_threshold(1)
        .build()
        .await
        .expect("an in-memory service");
    let identity = Identity::new("me", "me-login")
        .in_scope("team")
        .may_watch("watchable");
    let them = UserId::from("them");
    presence
        .set_status(&them, RequestedStatus::Busy, None)
        .await
        .expect("another user's status");
    let mut crowd = Vec::new();
    for user in ["them", "nobody"] {
        let spec = SessionSpec::new(user, format!("{user}-login")).scope("watchable");
        crowd.push(presence.open_session(spec).await.expect("a session"));
    }
    let session = presence
        .open_session(
            SessionSpec::new("me", "me-login")
                .scope("team")
                .kind(SessionKind::web()),
        )
        .await
        .expect("a session");
    let mut subscription = presence.subscribe();
    let mut calls = StoreCalls::new(
        presence.clone(),
        session.user().clone(),
        session.id().clone(),
    );
    let mut throttle = Throttle::new(FloodLimit::default());
    let mut state_limit = Throttle::new(SET_STATE_LIMIT);
    let mut now = Instant::now();
    for op in ops {
        let frame = match op {
            Op::Frame(frame) => frame,
            Op::Wait { millis } => {
                let by = Duration::from_millis(millis.into());
                now += by;
                clock.advance(by);
                continue;
            }
            Op::Jump { seconds } => {
                clock.advance(Duration::from_secs(seconds.into()));
                continue;
            }
            Op::RunDue => {
                let _ = presence.run_due().await;
                continue;
            }
        };
        let text = match &frame {
            Frame::Raw(text) => Some(text.clone()),
            Frame::Message(sent) => Some(render(sent, clock.now())),
            _ => None,
        };
        let inbound = match (&frame, &text) {
            (_, Some(text)) => Inbound::Text(text),
            (Frame::Binary, None) => Inbound::Binary,
            (Frame::Control, None) => Inbound::Control,
            (Frame::Closed, None) => Inbound::Closed,
            (Frame::TooLarge, None) => Inbound::TooLarge,
            _ => Inbound::Broken,
        };
        let expected = text.as_deref().map(|text| decode(text, clock.now()));
        let them_before = status(&presence, &them).await;
        let me_before = status(&presence, session.user()).await;
        let mut context = FrameContext {
            presence: &presence,
            identity: &identity,
            session: &session,
            subscription: &mut subscription,
            calls: &mut calls,
            throttle: &mut throttle,
            state_limit: &mut state_limit,
        };
        let answer = match context.answer(inbound, now) {
            // A frame queues at most one call; here it runs at once.
            Answer::Nothing if calls.is_busy() => calls.next_answer().await,
            answer => answer,
        };
        assert!(!calls.is_busy(), "one frame queued more than one call");
        assert_eq!(
            status(&presence, &them).await,
            them_before,
            "a frame of another user changed them: {frame:?}"
        );
        check(&identity, inbound, expected, &answer);
        let me_after = status(&presence, session.user()).await;
        if matches!(answer, Answer::Error(_)) {
            assert_eq!(me_after, me_before, "a refused frame changed me: {frame:?}");
        }
        if let Some(me) = me_after.filter(|me| me.status == Status::Offline) {
            assert_eq!(me.details, None, "an OFFLINE user shows details");
        }
        while subscription.try_recv().is_some() {}
        if matches!(answer, Answer::End(_)) || session.has_ended().is_some() {
            break;
        }
    }
    drop(crowd);
    presence.shutdown().await;
}

async fn status(presence: &Presence, user: &UserId) -> Option<UserPresence> {
    presence.status(user).await.ok()
}

/// The text of a well-formed message.
fn render(sent: &Sent, now: chrono::DateTime<chrono::Utc>) -> String {
    let message = match sent {
        Sent::Heartbeat => ClientMessage::Heartbeat,
        Sent::Activity => ClientMessage::Activity,
        Sent::Status {
            status,
            until_seconds,
        } => {
            let statuses = [
                RequestedStatus::Online,
                RequestedStatus::Away,
                RequestedStatus::Busy,
                RequestedStatus::Invisible,
            ];
            let status = statuses[usize::from(*status) % statuses.len()];
            // `until` may be in the past: the decoder must refuse it.
            let Some(seconds) = until_seconds else {
                return encode(&ClientMessage::StatusChange {
                    status: Some(status),
                    until: None,
                    custom: None,
                })
                .to_string();
            };
            let until = now + TimeDelta::seconds(i64::from(*seconds));
            return json!({
                "type": "status_change",
                "status": status_name(status),
                "until": until.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .to_string();
        }
        Sent::Subscribe {
            scope,
            users,
            counts,
        } => {
            return json!({
                "type": "subscribe",
                "scope": pick(&SCOPES, *scope),
                "user_ids": users
                    .as_ref()
                    .map(|users| users.iter().map(|user| pick(&USERS, *user)).collect::<Vec<_>>()),
                "counts": counts,
            })
            .to_string();
        }
        Sent::Custom {
            status,
            text,
            emoji,
            until_seconds,
        } => {
            let mut frame = json!({"type": "status_change"});
            if let Some(status) = status {
                frame["status"] = pick(&["ONLINE", "AWAY", "BUSY", "INVISIBLE"], *status).into();
            }
            if let Some(text) = text {
                frame["text"] = pick(&TEXTS, *text).into();
            }
            if let Some(emoji) = emoji {
                frame["emoji"] = pick(&EMOJI, *emoji).into();
            }
            if let Some(seconds) = until_seconds {
                let until = now + TimeDelta::seconds(i64::from(*seconds));
                frame["until"] = until.to_rfc3339_opts(SecondsFormat::Millis, true).into();
            }
            return frame.to_string();
        }
        Sent::SetState { state } => {
            let states = [
                json!({"in_call": true}),
                json!(null),
                json!(["in_call"]),
                json!({"big": "x".repeat(1100)}),
                json!({"page": "a", "n": 1}),
            ];
            return json!({"type": "set_state", "state": pick(&states, *state)}).to_string();
        }
        Sent::Privacy { hide_last_seen } => ClientMessage::Privacy {
            hide_last_seen: *hide_last_seen,
        },
        Sent::Unsubscribe { scope } => ClientMessage::Unsubscribe {
            scope: ScopeId::from(pick(&SCOPES, *scope)),
        },
    };
    encode(&message).to_string()
}

fn pick<T: Clone>(names: &[T], index: u8) -> T {
    names[usize::from(index) % names.len()].clone()
}

/// Whether `answer` is what docs/protocol.md answers `inbound` with (`expected`:
/// how the decoder judged its text).
fn check(
    identity: &Identity,
    inbound: Inbound<'_>,
    expected: Option<Result<ClientMessage, ProtocolError>>,
    answer: &Answer,
) {
    // Flood control may drop any data frame, or close the socket.
    let throttled = matches!(
        answer,
        Answer::Error(ProtocolError::RateLimited)
            | Answer::End(Ending::Close(Close::TooManyMessages))
    );
    let fine = match inbound {
        Inbound::Closed | Inbound::Broken => matches!(answer, Answer::End(Ending::Gone)),
        Inbound::TooLarge => matches!(answer, Answer::End(Ending::Close(Close::FrameTooLarge))),
        Inbound::Violation(close) => {
            matches!(answer, Answer::End(Ending::Close(sent)) if *sent == close)
        }
        Inbound::Control => throttled || matches!(answer, Answer::Nothing),
        Inbound::Binary => throttled || matches!(answer, Answer::Error(ProtocolError::BinaryFrame)),
        Inbound::Text(_) => match &expected {
            None => false,
            Some(Err(refused)) => {
                throttled || matches!(answer, Answer::Error(sent) if sent == refused)
            }
            Some(Ok(message)) => throttled || answers(identity, message, answer),
        },
    };
    assert!(
        fine,
        "{inbound:?} (decoded {expected:?}) was answered {answer:?}"
    );
    if let Answer::Error(refused) = answer {
        assert!(CODES.contains(&refused.code()));
    }
}

/// Whether `answer` answers a well-formed `message`.
fn answers(identity: &Identity, message: &ClientMessage, answer: &Answer) -> bool {
    let lapsed = matches!(answer, Answer::End(Ending::Close(Close::SessionLapsed)));
    match message {
        ClientMessage::Heartbeat => lapsed || matches!(answer, Answer::Pong),
        ClientMessage::Activity
        | ClientMessage::StatusChange { .. }
        | ClientMessage::SetState { .. }
        | ClientMessage::Privacy { .. } => lapsed || matches!(answer, Answer::Nothing),
        ClientMessage::Unsubscribe { .. } => matches!(answer, Answer::Nothing),
        ClientMessage::Subscribe {
            scope,
            user_ids,
            counts,
        } => {
            if !identity.can_watch(scope) {
                return matches!(answer, Answer::Error(ProtocolError::ForbiddenScope(s)) if s == scope);
            }
            let Answer::Snapshot(snapshot) = answer else {
                return false;
            };
            // A counted scope lists every member while small, the named
            // users only while large.
            let named: &[UserId] = user_ids.as_deref().unwrap_or_default();
            let only_named = if *counts {
                snapshot.occupancy.is_some()
            } else {
                user_ids.is_some()
            };
            snapshot.scope == *scope
                && (*counts || snapshot.occupancy.is_none())
                && (!only_named
                    || snapshot
                        .users
                        .iter()
                        .all(|user| named.contains(&user.user_id)))
        }
    }
}
