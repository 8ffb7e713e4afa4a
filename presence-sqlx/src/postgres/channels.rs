//! The `NOTIFY` channels of one store, and what travels on them.
//!
//! Channel names are identifiers (at most 63 bytes), so they are built from
//! short hashes rather than from the schema and node names themselves:
//! `presence_ev_<schema hash>` carries every event of the store, and
//! `presence_end_<schema hash>_<node hash>` the sessions of one node that
//! another node ended. The hash is 64-bit FNV-1a, fixed forever, so every
//! node (whatever its build) derives the same names.

use presence_core::store::kit::{EndedMessage, EventMessage};
use presence_core::{NodeId, NodeName, PresenceEvent, ScopeId, SessionEnd, SessionId};
use serde::{Deserialize, Serialize};

/// The channel names of one store (one schema).
#[derive(Clone, Debug)]
pub(crate) struct Channels {
    schema_hash: String,
    events: String,
}

impl Channels {
    pub(crate) fn new(schema: &str) -> Self {
        let schema_hash = format!("{:016x}", fnv1a(schema.as_bytes()));
        Self {
            events: format!("presence_ev_{schema_hash}"),
            schema_hash,
        }
    }

    /// Every event of the store.
    pub(crate) fn events(&self) -> &str {
        &self.events
    }

    /// Sessions of `node` ended by another node.
    pub(crate) fn ended(&self, node: &NodeName) -> String {
        format!(
            "presence_end_{}_{:016x}",
            self.schema_hash,
            fnv1a(node.as_str().as_bytes())
        )
    }
}

/// 64-bit FNV-1a: tiny, and stable across Rust versions (unlike std's
/// hashers), which a name every node must agree on needs.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The longest `NOTIFY` payload PostgreSQL accepts is 7999 bytes.
pub(crate) const MAX_PAYLOAD: usize = 7999;

/// What the events channel carries: an event, or, when the event would not
/// fit in a notification, a notice that watchers of its scope (or, when
/// even the scope's name is too long, every watcher) must resnapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum EventsMessage {
    /// One event.
    Event(EventMessage),
    /// The scope's watchers missed an event.
    Lagged {
        /// The node that made the change.
        o: String,
        /// The scope.
        lag: ScopeId,
    },
    /// Every watcher may have missed an event.
    Resync {
        /// The node that made the change.
        o: String,
        /// Always true.
        resync: bool,
    },
}

/// The payloads telling `event`: the event itself if it fits in one
/// notification, else a notice to resnapshot.
pub(crate) fn event_payload(origin: &NodeName, event: PresenceEvent) -> serde_json::Result<String> {
    let o = origin.to_string();
    let scope = event.scope.clone();
    let whole = serde_json::to_string(&EventsMessage::Event(EventMessage::new(origin, event)))?;
    if whole.len() <= MAX_PAYLOAD {
        return Ok(whole);
    }
    let lagged = serde_json::to_string(&EventsMessage::Lagged {
        o: o.clone(),
        lag: scope,
    })?;
    if lagged.len() <= MAX_PAYLOAD {
        return Ok(lagged);
    }
    serde_json::to_string(&EventsMessage::Resync { o, resync: true })
}

/// The payloads telling `sessions` ended, each within the payload limit. A
/// session id too long for any notification is left out: its holder finds
/// the session gone at its next heartbeat flush.
pub(crate) fn ended_payloads(
    sessions: &[SessionId],
    reason: SessionEnd,
    origin: &NodeId,
) -> serde_json::Result<Vec<String>> {
    let empty = EndedMessage::new(Vec::new(), reason, origin);
    let overhead = serde_json::to_string(&empty)?.len();
    let mut payloads = Vec::new();
    let mut message = empty;
    let mut size = overhead;
    for session in sessions {
        // Its JSON string, and a comma.
        let cost = serde_json::to_string(session)?.len() + 1;
        if overhead + cost > MAX_PAYLOAD {
            tracing::warn!(session = %session, "a session id too long to notify; its holder finds it gone at its next flush");
            continue;
        }
        if size + cost > MAX_PAYLOAD {
            payloads.push(serde_json::to_string(&message)?);
            message.s.clear();
            size = overhead;
        }
        message.s.push(session.clone());
        size += cost;
    }
    if !message.s.is_empty() {
        payloads.push(serde_json::to_string(&message)?);
    }
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_stable_identifiers() {
        let channels =
            Channels::new("a_schema_with_a_rather_long_name_of_sixty_three_bytes_abcdefghi");
        assert!(channels.events().starts_with("presence_ev_"));
        assert_eq!(channels.events().len(), "presence_ev_".len() + 16);
        let ended = channels.ended(&NodeName::from("node-with-a-long-name-x".repeat(4)));
        assert!(ended.len() <= 63, "{ended}");
        assert!(
            ended
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
        assert_ne!(
            channels.ended(&"node-a".into()),
            channels.ended(&"node-b".into())
        );
        assert_ne!(Channels::new("one").events(), Channels::new("two").events());
    }

    #[test]
    fn every_payload_fits_in_a_notification() {
        let long = |n: usize, c: &str| c.repeat(n);
        let event = |scope: String| PresenceEvent {
            scope: scope.into(),
            user_id: "alice".into(),
            status: presence_core::Status::Online,
            last_seen: None,
            v: 1,
            at: chrono::DateTime::from_timestamp(0, 0).expect("valid"),
            details: None,
        };
        let origin = NodeName::from("node-a");
        let short = event_payload(&origin, event("acme".into())).expect("json");
        assert!(matches!(
            serde_json::from_str(&short),
            Ok(EventsMessage::Event(_))
        ));
        let lagged = event_payload(&origin, event(long(7_900, "s"))).expect("json");
        assert!(lagged.len() <= MAX_PAYLOAD);
        let lagged_scope = match serde_json::from_str(&lagged) {
            Ok(EventsMessage::Lagged { lag, .. }) => lag,
            other => panic!("expected a lag notice, got {other:?}"),
        };
        assert_eq!(lagged_scope.as_str().len(), 7_900);
        let resync = event_payload(&origin, event(long(9_000, "s"))).expect("json");
        assert!(matches!(
            serde_json::from_str(&resync),
            Ok(EventsMessage::Resync { resync: true, .. })
        ));

        let sessions: Vec<SessionId> = (0..100)
            .map(|n| format!("{n}-{}", long(300, "x")).into())
            .collect();
        let mut with_a_monster = sessions.clone();
        with_a_monster.push(long(8_000, "y").into());
        let payloads = ended_payloads(
            &with_a_monster,
            SessionEnd::LoggedOut,
            &NodeId::new("node-b"),
        )
        .expect("json");
        let mut told = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD, "{} bytes", payload.len());
            let message: EndedMessage = serde_json::from_str(payload).expect("decodes");
            told.extend(message.s);
        }
        assert_eq!(
            told, sessions,
            "every session but the one too long, in order"
        );
    }

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
