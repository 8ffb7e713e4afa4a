//! `docs/protocol.md` is what users read: every error code and every close
//! (code and reason) the server can send must be in it, and every code its
//! table of error frames lists must be one the server sends. The codes are
//! read from the sources themselves, so a new one fails this test until it
//! is documented, and a code the server no longer sends fails it until it
//! leaves the table.

use presence_axum::{CLOSE_SESSION_LAPSED, CLOSE_SESSION_REPLACED, ProtocolError};
use presence_core::DetailsError;

const DOC: &str = include_str!("../../docs/protocol.md");
const SOURCES: [(&str, &str); 11] = [
    ("socket/mod.rs", include_str!("../src/socket/mod.rs")),
    ("socket/query.rs", include_str!("../src/socket/query.rs")),
    (
        "socket/connection.rs",
        include_str!("../src/socket/connection.rs"),
    ),
    ("socket/frame.rs", include_str!("../src/socket/frame.rs")),
    ("socket/calls.rs", include_str!("../src/socket/calls.rs")),
    ("socket/answer.rs", include_str!("../src/socket/answer.rs")),
    ("socket/close.rs", include_str!("../src/socket/close.rs")),
    ("admitted.rs", include_str!("../src/admitted.rs")),
    ("http_routes.rs", include_str!("../src/http_routes.rs")),
    ("reply.rs", include_str!("../src/reply.rs")),
    ("protocol.rs", include_str!("../src/protocol.rs")),
];

/// The first string literal in `text`.
fn first_literal(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let end = start + text[start..].find('"')?;
    Some(&text[start..end])
}

fn close_number(constant: &str) -> u16 {
    match constant {
        "close_code::NORMAL" => 1000,
        "close_code::AWAY" => 1001,
        "close_code::PROTOCOL" => 1002,
        "close_code::INVALID" => 1007,
        "close_code::POLICY" => 1008,
        "close_code::SIZE" => 1009,
        "close_code::ERROR" => 1011,
        "CLOSE_SESSION_LAPSED" => CLOSE_SESSION_LAPSED,
        "CLOSE_SESSION_REPLACED" => CLOSE_SESSION_REPLACED,
        other => panic!("a close code this test does not know: {other}"),
    }
}

/// Every `(code, reason)` a close in the sources sends: the pairs
/// `(CONSTANT, "reason")` of the table in `socket/close.rs`.
fn closes() -> Vec<(u16, String, &'static str)> {
    let mut found = Vec::new();
    for (file, source) in SOURCES {
        for opening in ["(close_code::", "(CLOSE_"] {
            for (at, _) in source.match_indices(opening) {
                let Some((constant, rest)) = source[at + 1..].split_once(',') else {
                    continue;
                };
                if !rest.trim_start().starts_with('"') {
                    continue; // not a (code, reason) pair
                }
                let reason = first_literal(rest).expect("a reason");
                found.push((close_number(constant.trim()), reason.to_owned(), file));
            }
        }
    }
    found
}

/// Closes are built in `socket/close.rs` alone, so the scan above sees
/// them all: no other source names a close code.
#[test]
fn every_close_is_built_in_close_rs() {
    for (file, source) in SOURCES {
        if file == "socket/close.rs" {
            continue;
        }
        assert!(
            !source.contains("close_code::"),
            "{file} names a close code: build the close in socket/close.rs"
        );
        for line in source
            .lines()
            .filter(|line| line.contains("CLOSE_SESSION_"))
        {
            assert!(
                line.trim_start().starts_with("pub use") || line.trim_start().starts_with("use"),
                "{file} uses a close code: build the close in socket/close.rs: {line}"
            );
        }
    }
}

/// Every error code of an HTTP JSON error or an `error` frame.
fn error_codes() -> Vec<String> {
    let every_frame_error = [
        ProtocolError::BinaryFrame,
        ProtocolError::MalformedJson(String::new()),
        ProtocolError::UnknownType(String::new()),
        ProtocolError::InvalidMessage(String::new()),
        ProtocolError::UnknownStatus(String::new()),
        ProtocolError::BadUntil(String::new()),
        ProtocolError::Details(DetailsError::TextTooLong { limit: 100 }),
        ProtocolError::Details(DetailsError::BadText),
        ProtocolError::Details(DetailsError::BadEmoji),
        ProtocolError::Details(DetailsError::EmptyCustomStatus),
        ProtocolError::Details(DetailsError::ExpiryInPast {
            until: chrono::DateTime::UNIX_EPOCH,
        }),
        ProtocolError::Details(DetailsError::StateNotObject),
        ProtocolError::Details(DetailsError::StateTooLarge { limit: 1024 }),
        ProtocolError::ForbiddenScope("s".into()),
        ProtocolError::RateLimited,
        ProtocolError::Unavailable,
    ];
    let mut codes: Vec<String> = every_frame_error
        .iter()
        .map(|e| e.code().to_owned())
        .collect();
    for (_, source) in SOURCES {
        // `code: "…"` fields, and the literal after a status in `error(…)`.
        for (at, _) in source.match_indices("code: \"") {
            codes.extend(first_literal(&source[at..]).map(str::to_owned));
        }
        for (at, _) in source.match_indices("StatusCode::") {
            let rest = &source[at..];
            let line_end = rest.find('\n').unwrap_or(rest.len());
            let next = &rest[line_end..];
            let candidate = first_literal(&rest[..line_end]).or_else(|| {
                next.trim_start()
                    .starts_with('"')
                    .then(|| first_literal(next))
                    .flatten()
            });
            if let Some(code) = candidate
                && !code.is_empty()
                && code.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                codes.push(code.to_owned());
            }
        }
    }
    codes.sort();
    codes.dedup();
    codes
}

#[test]
fn every_error_code_is_documented() {
    let codes = error_codes();
    assert!(codes.len() >= 12, "the scan found too few codes: {codes:?}");
    for code in codes {
        assert!(
            DOC.contains(&format!("`{code}`")),
            "docs/protocol.md does not document the error code `{code}`"
        );
    }
}

/// The codes of the table in the section `## Error frames`.
fn documented_frame_codes() -> Vec<&'static str> {
    let start = DOC
        .find("\n## Error frames")
        .expect("the error frames section");
    let section = &DOC[start + 1..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |at| at + 3);
    section[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(code, _)| code))
        .filter(|code| *code != "code")
        .collect()
}

#[test]
fn every_documented_frame_code_is_one_the_server_sends() {
    let codes = error_codes();
    let documented = documented_frame_codes();
    assert!(
        documented.len() >= 15,
        "the scan found too few documented codes: {documented:?}"
    );
    for code in documented {
        assert!(
            codes.iter().any(|sent| sent == code),
            "docs/protocol.md lists the error code `{code}`, which the server never sends"
        );
    }
}

#[test]
fn every_close_code_and_reason_is_documented() {
    let closes = closes();
    assert!(
        closes.len() >= 11,
        "the scan found too few closes: {closes:?}"
    );
    for (code, reason, file) in closes {
        assert!(
            DOC.contains(&code.to_string()),
            "docs/protocol.md does not document close code {code} (from {file})"
        );
        assert!(
            DOC.contains(&reason),
            "docs/protocol.md does not document the close reason {reason:?} (from {file})"
        );
    }
}
