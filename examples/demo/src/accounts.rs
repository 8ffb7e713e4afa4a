//! Users and the member directory, in memory: the demo is not an auth
//! system, but its logins are real (two browsers of one user are two
//! logins). A login itself lives in its signed token (`tokens`), so any
//! node can read it; the directory holds the users this node has seen,
//! signed in here or arriving with a token signed elsewhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A signed-in browser or API client, as its token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Login {
    /// The login id: random, never the token. Presence stores and
    /// publishes it; revocations are kept by it.
    pub(crate) id: String,
    /// The user id: the username, lowercased.
    pub(crate) user: String,
    /// The name as typed at login.
    pub(crate) display_name: String,
    /// The user's organisation (the presence scope).
    pub(crate) org: String,
    /// When its token stops being valid.
    pub(crate) expires: DateTime<Utc>,
}

/// A user allowed to sign in: who, and of which organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct User {
    /// The user id: the username, lowercased.
    pub(crate) id: String,
    /// The name as typed at login.
    pub(crate) display_name: String,
    pub(crate) org: String,
}

/// Why a login was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LoginRefused {
    BadUsername,
    BadOrg,
    /// Usernames are unique: this one belongs to another organisation.
    OtherOrg(String),
}

impl std::fmt::Display for LoginRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoginRefused::BadUsername => {
                f.write_str("a username is 1 to 32 letters, digits, '-' or '_'")
            }
            LoginRefused::BadOrg => {
                f.write_str("an organisation is 1 to 32 letters, digits, '-' or '_'")
            }
            LoginRefused::OtherOrg(org) => write!(f, "this username belongs to {org}"),
        }
    }
}

/// The users this node has seen.
#[derive(Clone, Debug, Default)]
pub(crate) struct Accounts {
    /// user id → (display name, org)
    users: Arc<Mutex<BTreeMap<String, (String, String)>>>,
}

impl Accounts {
    /// Checks that `username` of `org` may sign in, and records the user.
    pub(crate) fn sign_in(&self, username: &str, org: &str) -> Result<User, LoginRefused> {
        let username = username.trim();
        let org = org.trim().to_ascii_lowercase();
        if !is_name(username) {
            return Err(LoginRefused::BadUsername);
        }
        if !is_name(&org) {
            return Err(LoginRefused::BadOrg);
        }
        let id = user_id(username);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let (_, known_org) = users
            .entry(id.clone())
            .or_insert_with(|| (username.to_owned(), org.clone()));
        if *known_org != org {
            return Err(LoginRefused::OtherOrg(known_org.clone()));
        }
        Ok(User {
            id,
            display_name: username.to_owned(),
            org,
        })
    }

    /// Records the user of a valid login signed in on another node (or
    /// before a restart), so the member directory shows them here too.
    /// A user already known keeps their entry.
    pub(crate) fn seen(&self, login: &Login) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if !users.contains_key(&login.user) {
            users.insert(
                login.user.clone(),
                (login.display_name.clone(), login.org.clone()),
            );
        }
    }

    /// Every user of `org`, as (user id, display name), by user id.
    pub(crate) fn members(&self, org: &str) -> Vec<(String, String)> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .filter(|(_, (_, user_org))| user_org == org)
            .map(|(id, (name, _))| (id.clone(), name.clone()))
            .collect()
    }
}

/// The user id of a username: the same on every node and across restarts.
pub(crate) fn user_id(username: &str) -> String {
    username.trim().to_ascii_lowercase()
}

fn is_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sign_ins_of_one_user_are_one_member() {
        let accounts = Accounts::default();
        let first = accounts.sign_in("Alice", "Acme").expect("login");
        let second = accounts.sign_in("alice", "acme").expect("login");
        assert_eq!((first.id.as_str(), first.org.as_str()), ("alice", "acme"));
        assert_eq!(second.id, "alice");
        assert_eq!(
            accounts.members("acme"),
            vec![("alice".into(), "Alice".into())]
        );
    }

    #[test]
    fn usernames_are_unique_and_checked() {
        let accounts = Accounts::default();
        accounts.sign_in("alice", "acme").expect("login");
        assert_eq!(
            accounts.sign_in("ALICE", "globex"),
            Err(LoginRefused::OtherOrg("acme".into()))
        );
        assert_eq!(accounts.sign_in("", "acme"), Err(LoginRefused::BadUsername));
        assert_eq!(
            accounts.sign_in("a b", "acme"),
            Err(LoginRefused::BadUsername)
        );
        assert_eq!(
            accounts.sign_in("bob", "<script>"),
            Err(LoginRefused::BadOrg)
        );
    }

    #[test]
    fn users_seen_with_a_token_join_the_directory() {
        let accounts = Accounts::default();
        let login = Login {
            id: "l1".into(),
            user: "carol".into(),
            display_name: "Carol".into(),
            org: "acme".into(),
            expires: Utc::now(),
        };
        accounts.seen(&login);
        accounts.seen(&login);
        assert_eq!(
            accounts.members("acme"),
            vec![("carol".into(), "Carol".into())]
        );
        // The username is taken here now, as if Carol had signed in here.
        assert_eq!(
            accounts.sign_in("carol", "globex"),
            Err(LoginRefused::OtherOrg("acme".into()))
        );
    }
}
