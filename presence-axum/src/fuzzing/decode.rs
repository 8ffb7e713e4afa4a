//! The decoder on arbitrary text: it never panics, every message it
//! accepts survives a round trip through JSON, and every refusal carries
//! one of the stable codes of docs/protocol.md#error-frames.

use chrono::{DateTime, SecondsFormat, Utc};
use presence_core::RequestedStatus;
use serde_json::{Value, json};

use crate::protocol::{ClientMessage, decode};

/// The codes a refused frame may carry (docs/protocol.md#error-frames).
pub(super) const CODES: [&str; 15] = [
    "binary_frame",
    "malformed_json",
    "unknown_type",
    "invalid_message",
    "unknown_status",
    "bad_until",
    "text_too_long",
    "bad_text",
    "bad_emoji",
    "empty_custom_status",
    "state_not_object",
    "state_too_large",
    "forbidden_scope",
    "rate_limited",
    "unavailable",
];

/// The instant the decode harness judges `until` against.
fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

/// Decodes `data` (as text, invalid UTF-8 replaced) and checks the
/// decoder's invariants; panics when one breaks.
pub fn check_decode(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let now = fixed_now();
    match decode(&text, now) {
        Ok(message) => {
            let again = encode(&message).to_string();
            assert_eq!(
                decode(&again, now),
                Ok(message),
                "an accepted message did not survive a round trip: {text:?}"
            );
        }
        Err(refused) => {
            assert!(
                CODES.contains(&refused.code()),
                "unknown error code {:?}",
                refused.code()
            );
            assert!(!refused.message().is_empty(), "an empty error message");
            assert_eq!(decode(&text, now), Err(refused), "decoding is not stable");
        }
    }
}

/// The frame a client would send for `message`.
pub(super) fn encode(message: &ClientMessage) -> Value {
    match message {
        ClientMessage::Heartbeat => json!({"type": "heartbeat"}),
        ClientMessage::Activity => json!({"type": "activity"}),
        ClientMessage::StatusChange {
            status,
            until,
            custom,
        } => {
            let mut frame = json!({"type": "status_change"});
            if let Some(status) = status {
                frame["status"] = status_name(*status).into();
            }
            if let Some(until) = until {
                frame["until"] = until.to_rfc3339_opts(SecondsFormat::AutoSi, true).into();
            }
            if let Some(custom) = custom {
                let custom = custom.as_ref();
                frame["text"] = custom.and_then(|c| c.text.as_deref()).into();
                frame["emoji"] = custom.and_then(|c| c.emoji.as_deref()).into();
            }
            frame
        }
        ClientMessage::SetState { state } => {
            let state = state
                .as_ref()
                .map_or(Value::Null, |state| Value::Object(state.to_map()));
            json!({"type": "set_state", "state": state})
        }
        ClientMessage::Privacy { hide_last_seen } => {
            json!({"type": "privacy", "hide_last_seen": hide_last_seen})
        }
        ClientMessage::Subscribe {
            scope,
            user_ids,
            counts,
        } => {
            let mut frame = json!({"type": "subscribe", "scope": scope.as_str()});
            if let Some(users) = user_ids {
                frame["user_ids"] = users.iter().map(|user| user.as_str()).collect();
            }
            if *counts {
                frame["counts"] = true.into();
            }
            frame
        }
        ClientMessage::Unsubscribe { scope } => {
            json!({"type": "unsubscribe", "scope": scope.as_str()})
        }
    }
}

pub(super) fn status_name(status: RequestedStatus) -> &'static str {
    match status {
        RequestedStatus::Online => "ONLINE",
        RequestedStatus::Away => "AWAY",
        RequestedStatus::Busy => "BUSY",
        RequestedStatus::Invisible => "INVISIBLE",
    }
}
