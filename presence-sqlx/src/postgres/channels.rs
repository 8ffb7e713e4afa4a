//! The `NOTIFY` channels of one store, and what travels on them.
//!
//! Channel names are identifiers (at most 63 bytes), so they are built from
//! short hashes rather than from the schema and node names themselves:
//! `presence_ev_<schema hash>` carries every event of the store, and
//! `presence_end_<schema hash>_<node hash>` the sessions of one node that
//! another node ended. The hash is 64-bit FNV-1a, fixed forever, so every
//! node (whatever its build) derives the same names.

use presence_core::{NodeName, PresenceEvent, SessionEnd, SessionId};
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

/// An event as notified: who made it, and the event.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EventMessage {
    /// The node that made the change (it already told its own watchers).
    pub(crate) o: String,
    pub(crate) e: PresenceEvent,
}

/// Sessions of one node ended by another.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EndedMessage {
    pub(crate) s: Vec<SessionId>,
    /// `logout`, `closed`, `lapsed` or `replaced` (taken over by another
    /// node: the session lives on there).
    pub(crate) r: String,
    /// The process that ended them (`name#incarnation`): it has told its
    /// own holders, and ignores the message (another process of the same
    /// node does not).
    #[serde(default)]
    pub(crate) o: String,
}

/// Sessions per ended-sessions notification: a `NOTIFY` payload must stay
/// under 8000 bytes.
pub(crate) const ENDED_PER_MESSAGE: usize = 32;

pub(crate) fn reason_name(reason: SessionEnd) -> &'static str {
    match reason {
        SessionEnd::LoggedOut => "logout",
        SessionEnd::Closed => "closed",
        SessionEnd::Replaced => "replaced",
        _ => "lapsed",
    }
}

pub(crate) fn reason_of(name: &str) -> SessionEnd {
    match name {
        "logout" => SessionEnd::LoggedOut,
        "closed" => SessionEnd::Closed,
        "replaced" => SessionEnd::Replaced,
        _ => SessionEnd::Lapsed,
    }
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
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
