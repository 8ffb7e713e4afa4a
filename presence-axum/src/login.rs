//! What a host's login and logout handlers call.

use presence_core::{Error, Presence, SessionId};

use crate::identity::Identity;

/// Call from the login handler once the user is signed in: the user is
/// `ONLINE` at once, from every node's point of view, before any page or
/// socket of the new login exists.
pub async fn login(presence: &Presence, identity: &Identity) -> Result<(), Error> {
    presence
        .mark_http_activity(&identity.user, &identity.login, &identity.member_of)
        .await
        .map(drop)
}

/// Call from the logout handler, after the host has forgotten the login:
/// every session of that login ends at once, with no linger, and its
/// presence sockets on this node are closed (code 1000, "logged out"). The
/// user is `OFFLINE` unless another login still holds a live session.
/// Returns the sessions that ended.
pub async fn logout(presence: &Presence, identity: &Identity) -> Result<Vec<SessionId>, Error> {
    presence.logout(&identity.user, &identity.login).await
}
