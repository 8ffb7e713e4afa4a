//! Signing in and out, and the login behind a token: the signed tokens,
//! the revocations and the member directory together.

use std::sync::Arc;

use chrono::Utc;

use crate::accounts::{Accounts, Login, LoginRefused};
use crate::revocations::{OneLookup, Revocations, StoreDown};
use crate::tokens::Tokens;

/// The demo's logins; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Logins {
    tokens: Arc<Tokens>,
    revocations: Revocations,
    accounts: Accounts,
}

/// Why a token is not a login.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotSignedIn {
    /// Malformed, forged, expired or logged out.
    Unknown,
    /// The store of revocations could not say whether it logged out: it is
    /// refused for now (fail closed), with a 503, not taken for signed out.
    Unverifiable,
}

impl Logins {
    pub(crate) fn new(tokens: Tokens, revocations: Revocations) -> Self {
        Self {
            tokens: Arc::new(tokens),
            revocations,
            accounts: Accounts::default(),
        }
    }

    /// The users this node has seen.
    pub(crate) fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Signs `username` of `org` in with a new login; its token.
    pub(crate) fn sign_in(
        &self,
        username: &str,
        org: &str,
    ) -> Result<(Login, String), LoginRefused> {
        let user = self.accounts.sign_in(username, org)?;
        Ok(self.tokens.issue(user, Utc::now()))
    }

    /// The login of `token`, unless it logged out; `lookup` is the
    /// request's one revocation lookup.
    pub(crate) async fn login(
        &self,
        token: &str,
        lookup: &OneLookup,
    ) -> Result<Login, NotSignedIn> {
        let login = self
            .tokens
            .verify(token, Utc::now())
            .ok_or(NotSignedIn::Unknown)?;
        match lookup.is_revoked(&self.revocations, &login.id).await {
            // Also refused after a logout earlier in this very request,
            // which the request's lookup predates.
            Ok(false) if !self.revocations.revoked_here(&login.id) => {}
            Ok(_) => return Err(NotSignedIn::Unknown),
            Err(_) => return Err(NotSignedIn::Unverifiable),
        }
        self.accounts.seen(&login);
        Ok(login)
    }

    /// Ends `login` everywhere: refused here at once, and by every node
    /// once the store has it.
    pub(crate) async fn sign_out(&self, login: &Login) -> Result<(), StoreDown> {
        self.revocations.revoke(&login.id, login.expires).await
    }
}
