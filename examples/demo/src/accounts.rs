//! Users and their logins, in memory: the demo is not an auth system, but
//! its logins are real (two browsers of one user are two logins).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

/// A signed-in browser or API client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Login {
    /// The login id: the cookie value or bearer token.
    pub(crate) id: String,
    /// The user id: the username, lowercased.
    pub(crate) user: String,
    /// The name as typed at login.
    pub(crate) display_name: String,
    /// The user's organisation (the presence scope).
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

/// The users who have ever signed in, and the live logins.
#[derive(Clone, Debug, Default)]
pub(crate) struct Accounts {
    /// user id → (display name, org)
    users: Arc<Mutex<BTreeMap<String, (String, String)>>>,
    logins: Arc<DashMap<String, Login>>,
}

impl Accounts {
    /// Signs `username` of `org` in with a new login.
    pub(crate) fn sign_in(&self, username: &str, org: &str) -> Result<Login, LoginRefused> {
        let username = username.trim();
        let org = org.trim().to_ascii_lowercase();
        if !is_name(username) {
            return Err(LoginRefused::BadUsername);
        }
        if !is_name(&org) {
            return Err(LoginRefused::BadOrg);
        }
        let user = user_id(username);
        {
            let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            let (_, known_org) = users
                .entry(user.clone())
                .or_insert_with(|| (username.to_owned(), org.clone()));
            if *known_org != org {
                return Err(LoginRefused::OtherOrg(known_org.clone()));
            }
        }
        let login = Login {
            id: uuid::Uuid::new_v4().simple().to_string(),
            user,
            display_name: username.to_owned(),
            org,
        };
        self.logins.insert(login.id.clone(), login.clone());
        Ok(login)
    }

    /// The login behind a cookie or token.
    pub(crate) fn login(&self, id: &str) -> Option<Login> {
        self.logins.get(id).map(|login| login.clone())
    }

    /// Forgets a login; returns it if it was live.
    pub(crate) fn sign_out(&self, id: &str) -> Option<Login> {
        self.logins.remove(id).map(|(_, login)| login)
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
    fn two_browsers_of_one_user_are_two_logins_of_one_user() {
        let accounts = Accounts::default();
        let first = accounts.sign_in("Alice", "Acme").expect("login");
        let second = accounts.sign_in("alice", "acme").expect("login");
        assert_ne!(first.id, second.id);
        assert_eq!((first.user.as_str(), first.org.as_str()), ("alice", "acme"));
        assert_eq!(second.user, "alice");
        assert_eq!(
            accounts.members("acme"),
            vec![("alice".into(), "Alice".into())]
        );
        assert_eq!(accounts.sign_out(&first.id), Some(first.clone()));
        assert_eq!(accounts.login(&first.id), None);
        assert_eq!(accounts.login(&second.id), Some(second));
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
}
