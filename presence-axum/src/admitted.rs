//! [`Admitted`]: the checks every presence route runs first, the page's
//! origin and then the host's own auth.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::IntoResponse;

use crate::identity::Identity;
use crate::origin::AllowedOrigins;
use crate::reply::Refusal;

/// An extractor for a request presence admits: from a page of an allowed
/// origin (else 403 `forbidden_origin`), signed in as the host's extractor
/// `A` says (else 401 `unauthenticated`; or 503 `unavailable` when `A`
/// rejects with a server error, such as a session store that is down, so
/// that clients retry rather than take themselves for signed out). A
/// refusal is a [`Refusal`]: a JSON error marked as presence traffic.
///
/// The routes of [`crate::PresenceRoutes::router`] extract it before
/// anything else. Their origins are those of
/// [`crate::PresenceRoutes::allowed_origins`]; on a route of the host's own,
/// the origins are an [`AllowedOrigins`] the host adds as a request
/// extension (`axum::Extension(origins)`), or else the server's own only.
pub struct Admitted<A> {
    /// Who the request belongs to, as `A` says.
    pub identity: Identity,
    _auth: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for Admitted<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("identity", &self.identity)
            .finish()
    }
}

impl<A, S> FromRequestParts<S> for Admitted<A>
where
    A: FromRequestParts<S> + Into<Identity>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        // Before the host's auth: cookie auth would otherwise let another
        // site's page act as its visitor.
        let permitted = match parts.extensions.get::<AllowedOrigins>() {
            Some(origins) => origins.permits(parts),
            None => AllowedOrigins::same_origin().permits(parts),
        };
        if !permitted {
            return Err(Refusal::forbidden_origin());
        }
        match A::from_request_parts(parts, state).await {
            Ok(who) => Ok(Admitted {
                identity: who.into(),
                _auth: PhantomData,
            }),
            Err(rejection) => {
                if rejection.into_response().status().is_server_error() {
                    Err(Refusal::unavailable())
                } else {
                    Err(Refusal::unauthenticated())
                }
            }
        }
    }
}
