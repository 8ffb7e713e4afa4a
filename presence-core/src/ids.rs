//! Identifiers: cheap-to-clone string newtypes for users, scopes, sessions,
//! logins and nodes.
//!
//! Each is an `Arc<str>` inside, so cloning one into an event or an index
//! costs a reference-count increment, not an allocation. They convert from
//! strings and from integers, because host apps key users either way.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Creates the identifier from anything string-like.
            pub fn new(value: impl Into<Arc<str>>) -> Self {
                Self(value.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.into())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value.into())
            }
        }

        impl From<&String> for $name {
            fn from(value: &String) -> Self {
                Self(value.as_str().into())
            }
        }

        impl From<Arc<str>> for $name {
            fn from(value: Arc<str>) -> Self {
                Self(value)
            }
        }

        string_id!(@ints $name: u64, u32, i64, i32, usize);

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }
    };
    (@ints $name:ident: $($int:ty),*) => {
        $(
            impl From<$int> for $name {
                fn from(value: $int) -> Self {
                    Self(value.to_string().into())
                }
            }
        )*
    };
}

string_id!(
    /// Who a user is, as the host app names them (a database id, a username).
    UserId
);
string_id!(
    /// A group of users who see each other: an organisation, a team, a room.
    ScopeId
);
string_id!(
    /// One live connection of one user: a socket, a device, an HTTP client.
    SessionId
);
string_id!(
    /// One login of a user (a cookie session, a bearer token). A user signed
    /// in on two browsers has two logins; logout ends the sessions of one.
    LoginId
);
string_id!(
    /// The stable name of a server node (e.g. its host name). Together with
    /// an incarnation it forms a [`NodeId`].
    NodeName
);

string_id!(
    /// A store's epoch: an opaque string that changes whenever the users'
    /// versions may have started again (a new memory store, a store that
    /// lost its data, a new schema). Versions of two epochs are not
    /// comparable: a client that sees a new epoch drops the versions it
    /// holds and takes the next snapshot whole.
    Epoch
);

impl Epoch {
    /// A fresh, random epoch.
    pub fn random() -> Self {
        Self::from(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl SessionId {
    /// A fresh, unguessable session id.
    pub fn random() -> Self {
        Self::from(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The session that stands for the plain HTTP requests of one login, so
    /// a user browsing pages without any socket is present (docs/rules.md#http-sessions).
    pub fn for_http_login(login: &LoginId) -> Self {
        Self::from(format!("http:{login}"))
    }
}

/// One run of one server node: its stable name and an incarnation that is
/// new on every start, so a restarted node can recognise and clear what its
/// previous run left in a shared store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// The stable name, the same across restarts.
    pub name: NodeName,
    /// Different on every start of the node.
    pub incarnation: u64,
}

impl NodeId {
    /// A node id with the given name and a fresh random incarnation.
    pub fn new(name: impl Into<NodeName>) -> Self {
        let incarnation = uuid::Uuid::new_v4().as_u64_pair().0;
        Self {
            name: name.into(),
            incarnation,
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:x}", self.name, self.incarnation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_convert_from_strings_and_integers_alike() {
        assert_eq!(UserId::from(42_u64), UserId::from("42"));
        assert_eq!(UserId::from(-7_i64).as_str(), "-7");
        assert_eq!(ScopeId::from(String::from("acme")).to_string(), "acme");
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let json = serde_json::to_string(&UserId::from("u1")).unwrap();
        assert_eq!(json, "\"u1\"");
        let back: UserId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, UserId::from("u1"));
    }

    #[test]
    fn random_session_ids_differ_and_restarted_nodes_get_new_incarnations() {
        assert_ne!(SessionId::random(), SessionId::random());
        assert_ne!(NodeId::new("a").incarnation, NodeId::new("a").incarnation);
    }
}
