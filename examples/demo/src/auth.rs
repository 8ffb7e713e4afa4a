//! The demo's auth extractors: the login cookie (browsers) or a bearer
//! token (API clients), turned into a presence [`Identity`]; and the check
//! that a login or logout was posted from a page the app trusts.

use axum::Json;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use presence_axum::{AllowedOrigins, Identity};
use serde_json::json;

use crate::accounts::{Accounts, Login};

/// The name of the login cookie.
pub(crate) const LOGIN_COOKIE: &str = "presence_demo_login";

/// The signed-in login of a request; rejects with 401.
#[derive(Clone, Debug)]
pub(crate) struct CurrentLogin(pub(crate) Login);

impl<S: Send + Sync> FromRequestParts<S> for CurrentLogin
where
    Accounts: FromRef<S>,
{
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, StatusCode> {
        let accounts = Accounts::from_ref(state);
        login_id(parts)
            .and_then(|id| accounts.login(&id))
            .map(CurrentLogin)
            .ok_or(StatusCode::UNAUTHORIZED)
    }
}

/// A request from a page of an origin allowed to use presence (or from no
/// page at all); rejects another site's page with 403 `forbidden_origin`.
/// Logins and logouts take it: a foreign page could otherwise sign a
/// visitor in or out (and change their presence) behind their back.
pub(crate) struct TrustedOrigin;

impl<S: Send + Sync> FromRequestParts<S> for TrustedOrigin
where
    AllowedOrigins: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        if AllowedOrigins::from_ref(state).permits(&parts.headers) {
            return Ok(TrustedOrigin);
        }
        Err((
            StatusCode::FORBIDDEN,
            Json(json!({ "code": "forbidden_origin", "message": "this origin may not post here" })),
        )
            .into_response())
    }
}

impl From<CurrentLogin> for Identity {
    fn from(CurrentLogin(login): CurrentLogin) -> Identity {
        // Seen in and watching the user's organisation, nothing else.
        Identity::new(login.user, login.id).in_scope(login.org)
    }
}

/// The bearer token, else the login cookie.
pub(crate) fn login_id(parts: &Parts) -> Option<String> {
    if let Some(token) = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
    }
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == LOGIN_COOKIE).then(|| value.to_owned())
        })
}
