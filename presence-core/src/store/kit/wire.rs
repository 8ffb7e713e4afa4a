//! What the cluster feed carries between nodes, the same on every backend
//! (short field names: each message is published once per change).

use serde::{Deserialize, Serialize};

use crate::event::PresenceEvent;
use crate::ids::{NodeId, NodeName, SessionId};
use crate::session::SessionEnd;

/// An event as published: who made it, and the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// The node that made the change (kept for operators; every node,
    /// the origin too, delivers the event, and fan-out drops duplicates).
    pub o: String,
    /// The event.
    pub e: PresenceEvent,
}

impl EventMessage {
    /// `event`, made by node `origin`.
    pub fn new(origin: &NodeName, event: PresenceEvent) -> Self {
        Self {
            o: origin.to_string(),
            e: event,
        }
    }
}

/// Sessions of one node ended by another process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedMessage {
    /// The sessions.
    pub s: Vec<SessionId>,
    /// Why: `logout`, `closed`, `lapsed` or `replaced` (taken over by
    /// another node: the session lives on there).
    pub r: String,
    /// The process that ended them (`name#incarnation`): it has told its
    /// own holders, and ignores the message (another process of the same
    /// node does not).
    #[serde(default)]
    pub o: String,
}

impl EndedMessage {
    /// `sessions`, ended by process `origin` for `reason`.
    pub fn new(sessions: Vec<SessionId>, reason: SessionEnd, origin: &NodeId) -> Self {
        Self {
            s: sessions,
            r: reason_name(reason).to_owned(),
            o: origin.to_string(),
        }
    }

    /// Why the sessions ended (an unknown name reads as a lapse).
    pub fn reason(&self) -> SessionEnd {
        match self.r.as_str() {
            "logout" => SessionEnd::LoggedOut,
            "closed" => SessionEnd::Closed,
            "replaced" => SessionEnd::Replaced,
            _ => SessionEnd::Lapsed,
        }
    }
}

fn reason_name(reason: SessionEnd) -> &'static str {
    match reason {
        SessionEnd::LoggedOut => "logout",
        SessionEnd::Closed => "closed",
        SessionEnd::Replaced => "replaced",
        SessionEnd::Lapsed | SessionEnd::ShutDown => "lapsed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_a_change_sends_reads_back_as_itself() {
        let origin = NodeId::new("a");
        for reason in [
            SessionEnd::LoggedOut,
            SessionEnd::Closed,
            SessionEnd::Replaced,
            SessionEnd::Lapsed,
        ] {
            let message = EndedMessage::new(vec![SessionId::from("s")], reason, &origin);
            let json = serde_json::to_string(&message).expect("encodes");
            let back: EndedMessage = serde_json::from_str(&json).expect("decodes");
            assert_eq!(back.reason(), reason);
            assert_eq!(back.o, origin.to_string());
        }
    }

    #[test]
    fn a_message_from_an_older_node_without_its_origin_still_decodes() {
        let back: EndedMessage =
            serde_json::from_str(r#"{"s":["x"],"r":"logout"}"#).expect("decodes");
        assert_eq!(back.reason(), SessionEnd::LoggedOut);
        assert_eq!(back.o, "");
    }
}
