//! One socket's message handling fed an arbitrary sequence of frames, waits
//! and clock jumps, against an in-memory service on a manual clock.
//!
//! Invariants, checked after every frame: handling never panics; each
//! frame gets the answer SPEC §6 gives it (a pong, an error with the
//! decoder's code, a snapshot of the scope asked for, nothing, or the end
//! of the connection), allowing for flood control and a lapsed session;
//! a snapshot of some users names no one else; and nothing this socket
//! sends changes another user.

use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use axum::extract::ws::close_code;
use chrono::{SecondsFormat, TimeDelta};
use presence_core::{
    Clock, ManualClock, Presence, PresenceConfig, RequestedStatus, ScopeId, SessionSpec, UserId,
    UserPresence,
};
use serde_json::json;
use tokio::time::Instant;

use super::decode::{CODES, encode, status_name};
use crate::identity::Identity;
use crate::protocol::{ClientMessage, ProtocolError, decode};
use crate::socket::CLOSE_SESSION_LAPSED;
use crate::socket::calls::StoreCalls;
use crate::socket::frame::{Ending, Handling, Inbound, Reply, Step};
use crate::throttle::{FloodLimit, Throttle};

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
    },
    Unsubscribe {
        scope: u8,
    },
}

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
    let session = presence
        .open_session(SessionSpec::new("me", "me-login").scope("team"))
        .await
        .expect("a session");
    let mut subscription = presence.subscribe();
    let mut calls = StoreCalls::new(
        presence.clone(),
        session.user().clone(),
        session.id().clone(),
    );
    let mut throttle = Throttle::new(FloodLimit::default());
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
        let mut handling = Handling {
            presence: &presence,
            identity: &identity,
            session: &session,
            subscription: &mut subscription,
            calls: &mut calls,
        };
        let step = match handling.on_frame(&mut throttle, inbound, now) {
            // A frame queues at most one call; here it runs at once.
            Ok(None) if calls.is_busy() => calls.next().await,
            step => step,
        };
        assert!(!calls.is_busy(), "one frame queued more than one call");
        assert_eq!(
            status(&presence, &them).await,
            them_before,
            "a frame of another user changed them: {frame:?}"
        );
        check(&identity, inbound, expected, &step);
        while subscription.try_recv().is_some() {}
        if step.is_err() || session.has_ended().is_some() {
            break;
        }
    }
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
                    status,
                    until: None,
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
        Sent::Subscribe { scope, users } => {
            return json!({
                "type": "subscribe",
                "scope": pick(&SCOPES, *scope),
                "user_ids": users
                    .as_ref()
                    .map(|users| users.iter().map(|user| pick(&USERS, *user)).collect::<Vec<_>>()),
            })
            .to_string();
        }
        Sent::Unsubscribe { scope } => ClientMessage::Unsubscribe {
            scope: ScopeId::from(pick(&SCOPES, *scope)),
        },
    };
    encode(&message).to_string()
}

fn pick(names: &[&'static str], index: u8) -> &'static str {
    names[usize::from(index) % names.len()]
}

/// Whether `step` is what SPEC §6 answers `inbound` with (`expected`: how
/// the decoder judged its text).
fn check(
    identity: &Identity,
    inbound: Inbound<'_>,
    expected: Option<Result<ClientMessage, ProtocolError>>,
    step: &Step,
) {
    // Flood control may drop any data frame, or close the socket.
    let throttled = matches!(
        step,
        Ok(Some(Reply::Error(ProtocolError::RateLimited)))
            | Err(Ending::Close(close_code::POLICY, _))
    );
    let fine = match inbound {
        Inbound::Closed | Inbound::Broken => matches!(step, Err(Ending::Gone)),
        Inbound::TooLarge => matches!(step, Err(Ending::Close(close_code::SIZE, _))),
        Inbound::Violation { code, .. } => {
            matches!(step, Err(Ending::Close(sent, _)) if *sent == code)
        }
        Inbound::Control => throttled || matches!(step, Ok(None)),
        Inbound::Binary => {
            throttled || matches!(step, Ok(Some(Reply::Error(ProtocolError::BinaryFrame))))
        }
        Inbound::Text(_) => match &expected {
            None => false,
            Some(Err(refused)) => {
                throttled || matches!(step, Ok(Some(Reply::Error(sent))) if sent == refused)
            }
            Some(Ok(message)) => throttled || answers(identity, message, step),
        },
    };
    assert!(
        fine,
        "{inbound:?} (decoded {expected:?}) was answered {step:?}"
    );
    if let Ok(Some(Reply::Error(refused))) = step {
        assert!(CODES.contains(&refused.code()));
    }
}

/// Whether `step` answers a well-formed `message`.
fn answers(identity: &Identity, message: &ClientMessage, step: &Step) -> bool {
    let lapsed = matches!(step, Err(Ending::Close(CLOSE_SESSION_LAPSED, _)));
    match message {
        ClientMessage::Heartbeat => lapsed || matches!(step, Ok(Some(Reply::Pong))),
        ClientMessage::Activity | ClientMessage::StatusChange { .. } => {
            lapsed || matches!(step, Ok(None))
        }
        ClientMessage::Unsubscribe { .. } => matches!(step, Ok(None)),
        ClientMessage::Subscribe { scope, user_ids } => {
            if !identity.can_watch(scope) {
                return matches!(step, Ok(Some(Reply::Error(ProtocolError::ForbiddenScope(s)))) if s == scope);
            }
            let Ok(Some(Reply::Snapshot(snapshot))) = step else {
                return false;
            };
            snapshot.scope == *scope
                && user_ids.as_ref().is_none_or(|asked| {
                    snapshot
                        .users
                        .iter()
                        .all(|user| asked.contains(&user.user_id))
                })
        }
    }
}
