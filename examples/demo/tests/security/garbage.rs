//! Garbage frames, seeded and repeatable: none of them is a message the
//! server may silently accept, so each must get an `error` frame or end
//! the connection with a close code.

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// The kinds of garbage [`frame`] makes.
pub(crate) const KINDS: [&str; 12] = [
    "random text",
    "random binary",
    "invalid JSON",
    "not an object",
    "wrong types",
    "unknown type",
    "bad values",
    "huge numbers",
    "deep nesting",
    "forbidden scope",
    "invalid UTF-8 text",
    "over 4 KiB",
];

/// A garbage frame of kind `KINDS[kind]`.
pub(crate) fn frame(rng: &mut fastrand::Rng, kind: usize) -> Message {
    match kind {
        0 => Message::text(random_text(rng, 1..600)),
        1 => Message::binary(random_bytes(rng, 0..600)),
        2 => Message::text(pick(rng, &INVALID_JSON).to_owned() + &random_text(rng, 0..8)),
        3 => Message::text(pick(rng, &NOT_AN_OBJECT)),
        4 => Message::text(pick(rng, &WRONG_TYPES)),
        5 => Message::text(format!(
            r#"{{"type":{}}}"#,
            serde_json::Value::from(random_text(rng, 0..40))
        )),
        6 => Message::text(pick(rng, &BAD_VALUES)),
        7 => Message::text(huge_number(rng)),
        8 => Message::text(deep_nesting(rng)),
        9 => Message::text(pick(rng, &FORBIDDEN_SCOPE)),
        10 => invalid_utf8(rng),
        _ => Message::text(format!(
            r#"{{"type":"heartbeat","pad":"{}"}}"#,
            "x".repeat(4096 + rng.usize(0..4096))
        )),
    }
}

const INVALID_JSON: [&str; 10] = [
    "",
    "{",
    r#"{"type":"heartbeat""#,
    r#"{"type":"heartbeat",}"#,
    r#"{type:"heartbeat"}"#,
    r#"{'type':'heartbeat'}"#,
    r#"{"type":"status_change","status":"BUSY"]"#,
    "\u{feff}{\"type\":\"heartbeat\"}",
    "NaN",
    r#"{"type":"subscribe","scope":"a\x"}"#,
];

const NOT_AN_OBJECT: [&str; 8] = [
    "null",
    "true",
    "42",
    r#""heartbeat""#,
    "[]",
    r#"[{"type":"heartbeat"}]"#,
    "{}",
    r#"{"kind":"heartbeat"}"#,
];

const WRONG_TYPES: [&str; 12] = [
    r#"{"type":1}"#,
    r#"{"type":null}"#,
    r#"{"type":["heartbeat"]}"#,
    r#"{"type":{"type":"heartbeat"}}"#,
    r#"{"type":"status_change","status":5}"#,
    r#"{"type":"status_change"}"#,
    r#"{"type":"status_change","status":"BUSY","until":17e8}"#,
    r#"{"type":"subscribe"}"#,
    r#"{"type":"subscribe","scope":7}"#,
    r#"{"type":"subscribe","scope":"s","user_ids":"bob"}"#,
    r#"{"type":"subscribe","scope":"s","user_ids":[1,2]}"#,
    r#"{"type":"unsubscribe","scope":null}"#,
];

const BAD_VALUES: [&str; 10] = [
    r#"{"type":"status_change","status":"OFFLINE"}"#,
    r#"{"type":"status_change","status":"busy"}"#,
    r#"{"type":"status_change","status":""}"#,
    r#"{"type":"status_change","status":"BUSY","until":"tomorrow"}"#,
    r#"{"type":"status_change","status":"BUSY","until":"2001-01-01T00:00:00Z"}"#,
    r#"{"type":"status_change","status":"BUSY","user_id":"someone-else"}"#,
    r#"{"type":"subscribe","scope":""}"#,
    r#"{"type":"unsubscribe","scope":""}"#,
    r#"{"type":"subscribe","scope":"s","extra":true}"#,
    r#"{"type":"HEARTBEAT"}"#,
];

const FORBIDDEN_SCOPE: [&str; 4] = [
    r#"{"type":"subscribe","scope":"someone-elses-org"}"#,
    r#"{"type":"subscribe","scope":"someone-elses-org","user_ids":["a"]}"#,
    r#"{"type":"subscribe","scope":"*"}"#,
    r#"{"type":"subscribe","scope":"../admin"}"#,
];

fn pick<'a>(rng: &mut fastrand::Rng, choices: &[&'a str]) -> &'a str {
    choices[rng.usize(..choices.len())]
}

fn random_text(rng: &mut fastrand::Rng, len: std::ops::Range<usize>) -> String {
    let len = rng.usize(len);
    // Mostly ASCII (JSON punctuation included), some of everything else.
    (0..len)
        .map(|_| {
            if rng.u8(..4) == 0 {
                rng.char(..)
            } else {
                rng.char(' '..='~')
            }
        })
        .collect()
}

fn random_bytes(rng: &mut fastrand::Rng, len: std::ops::Range<usize>) -> Vec<u8> {
    let mut bytes = vec![0; rng.usize(len)];
    rng.fill(&mut bytes);
    bytes
}

fn huge_number(rng: &mut fastrand::Rng) -> String {
    let digits: String = (0..rng.usize(30..3000))
        .map(|_| rng.char('0'..='9'))
        .collect();
    match rng.u8(..4) {
        0 => format!(r#"{{"type":{digits}}}"#),
        1 => format!(r#"{{"type":"status_change","status":"BUSY","until":{digits}}}"#),
        2 => format!(r#"{{"type":"subscribe","scope":"s","user_ids":[{digits}]}}"#),
        _ => format!(r#"{{"type":"status_change","status":"BUSY","until":1e{digits}}}"#),
    }
}

/// Nested arrays or objects, deeper than any parser should follow, within
/// 4 KiB.
fn deep_nesting(rng: &mut fastrand::Rng) -> String {
    let depth = rng.usize(100..1300);
    let (open, close) = if rng.bool() {
        ("[", "]")
    } else {
        (r#"{"a":"#, "}")
    };
    let inner = format!("{}1{}", open.repeat(depth), close.repeat(depth));
    let nested = format!(r#"{{"type":"subscribe","scope":{inner}}}"#);
    if nested.len() <= 4096 {
        nested
    } else {
        format!("{}{}", "[".repeat(2000), "]".repeat(2000))
    }
}

/// A text frame whose payload is not UTF-8 (a client library would not
/// send it; an attacker can).
fn invalid_utf8(rng: &mut fastrand::Rng) -> Message {
    let mut payload = random_bytes(rng, 0..200);
    payload.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    Message::Frame(Frame::message(payload, OpCode::Data(Data::Text), true))
}
