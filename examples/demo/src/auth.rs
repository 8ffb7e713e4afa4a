//! The demo's auth extractors: the login cookie (browsers) or a bearer
//! token (API clients), both a signed token (`tokens`), turned into a
//! presence [`Identity`] whose login id is the token's random login id,
//! never the token; and the check that a login or logout was posted from a
//! page the app trusts.
//!
//! Every check of a login asks the store of revocations whether it logged
//! out, once per request ([`one_lookup_per_request`]); when the store
//! cannot answer, the login counts as signed out (fail closed).

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use presence_axum::{AllowedOrigins, Identity};
use presence_core::SessionKind;
use serde_json::json;

use crate::accounts::Login;
use crate::logins::{Logins, NotSignedIn};
use crate::revocations::OneLookup;

/// The name of the login cookie.
pub(crate) const LOGIN_COOKIE: &str = "presence_demo_login";

/// The signed-in login of a request, and the kind of client it came from
/// (its User-Agent: `mobile` for a phone's browser, else `web`). Rejects
/// with 401, or with 503 when the logouts cannot be checked (presence's
/// own routes answer that 503 too, so clients retry rather than take
/// themselves for signed out).
#[derive(Clone, Debug)]
pub(crate) struct CurrentLogin(pub(crate) Login, pub(crate) Option<SessionKind>);

impl<S: Send + Sync> FromRequestParts<S> for CurrentLogin
where
    Logins: FromRef<S>,
{
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, StatusCode> {
        let token = credential(parts).ok_or(StatusCode::UNAUTHORIZED)?;
        // Without the layer (never in the app) the lookup is this check's own.
        let lookup = parts
            .extensions
            .get::<OneLookup>()
            .cloned()
            .unwrap_or_default();
        match Logins::from_ref(state).login(&token, &lookup).await {
            Ok(login) => Ok(CurrentLogin(login, Some(device_of(parts)))),
            Err(NotSignedIn::Unknown) => Err(StatusCode::UNAUTHORIZED),
            Err(NotSignedIn::Unverifiable) => Err(StatusCode::SERVICE_UNAVAILABLE),
        }
    }
}

/// Middleware: gives the request its [`OneLookup`], before presence's
/// activity layer copies the request, so that copy shares it.
pub(crate) async fn one_lookup_per_request(mut request: Request) -> Request {
    request.extensions_mut().insert(OneLookup::default());
    request
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
        if AllowedOrigins::from_ref(state).permits(parts) {
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
    fn from(CurrentLogin(login, kind): CurrentLogin) -> Identity {
        // Seen in and watching the user's organisation, nothing else. The
        // login id is stored and published by presence: the token's random
        // id, which opens nothing.
        let identity = Identity::new(login.user, login.id).in_scope(login.org);
        match kind {
            Some(kind) => identity.kind(kind),
            None => identity,
        }
    }
}

/// The kind of client a request comes from, as its User-Agent says: a
/// phone's browser ("Mobi", as browsers mark their mobile builds) is
/// `mobile`, anything else `web`.
pub(crate) fn device_of(parts: &Parts) -> SessionKind {
    let agent = parts
        .headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if agent.contains("Mobi") {
        SessionKind::mobile()
    } else {
        SessionKind::web()
    }
}

/// The token: the bearer token, else the login cookie.
pub(crate) fn credential(parts: &Parts) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::Request;

    use super::*;
    use crate::revocations::Revocations;
    use crate::tokens::{Secret, Tokens};

    fn logins() -> Logins {
        let secret = Secret::new("the secret of these tests");
        Logins::new(
            Tokens::new(&secret, Duration::from_secs(3_600)),
            Revocations::memory(),
        )
    }

    fn parts(header: (&str, &str)) -> Parts {
        let (parts, ()) = Request::builder()
            .header(header.0, header.1)
            .body(())
            .expect("a request")
            .into_parts();
        parts
    }

    async fn current(logins: &Logins, header: (&str, &str)) -> Result<Login, StatusCode> {
        CurrentLogin::from_request_parts(&mut parts(header), logins)
            .await
            .map(|CurrentLogin(login, _)| login)
    }

    #[test]
    fn a_phone_browser_is_a_mobile_session_and_anything_else_web() {
        let parts = |agent: &str| {
            axum::http::Request::builder()
                .header("user-agent", agent)
                .body(())
                .expect("request")
                .into_parts()
                .0
        };
        let phone = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36";
        assert_eq!(device_of(&parts(phone)), SessionKind::mobile());
        let laptop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";
        assert_eq!(device_of(&parts(laptop)), SessionKind::web());
        assert_eq!(device_of(&parts("")), SessionKind::web());
    }

    #[tokio::test]
    async fn the_presence_login_id_is_not_the_token() {
        let logins = logins();
        let (_, token) = logins.sign_in("Alice", "acme").expect("signed in");
        let bearer = format!("Bearer {token}");
        let login = current(&logins, ("authorization", &bearer))
            .await
            .expect("a login");
        let identity = Identity::from(CurrentLogin(login.clone(), None));
        let published = identity.login.to_string();
        assert_eq!(published, login.id);
        assert_ne!(published, token);
        assert!(!published.contains(&token), "{published}");
        let (_, signature) = token.split_once('.').expect("signed");
        assert!(!published.contains(signature), "{published}");
        assert!(!token.ends_with(&published), "{published}");
        assert_eq!(identity.user.to_string(), "alice");
    }

    #[tokio::test]
    async fn a_cookie_or_a_bearer_token_is_a_login_until_it_logs_out() {
        let logins = logins();
        let (login, token) = logins.sign_in("Alice", "acme").expect("signed in");
        let cookie = format!("other=1; {LOGIN_COOKIE}={token}");
        assert_eq!(
            current(&logins, ("cookie", &cookie)).await,
            Ok(login.clone())
        );
        logins.sign_out(&login).await.expect("memory");
        assert_eq!(
            current(&logins, ("cookie", &cookie)).await,
            Err(StatusCode::UNAUTHORIZED)
        );
    }

    #[tokio::test]
    async fn tampered_expired_and_garbage_tokens_get_401() {
        let logins = logins();
        let (_, token) = logins.sign_in("Alice", "acme").expect("signed in");
        let last = if token.ends_with('A') { 'B' } else { 'A' };
        let tampered = format!("{}{last}", &token[..token.len() - 1]);
        let expired = {
            let secret = Secret::new("the secret of these tests");
            let tokens = Tokens::new(&secret, Duration::from_secs(60));
            let user = crate::accounts::User {
                id: "alice".into(),
                display_name: "Alice".into(),
                org: "acme".into(),
            };
            tokens
                .issue(user, chrono::Utc::now() - chrono::TimeDelta::hours(1))
                .1
        };
        for bad in [
            tampered.as_str(),
            expired.as_str(),
            "garbage",
            "",
            "a.b",
            "%%%.%%%",
        ] {
            let bearer = format!("Bearer {bad}");
            assert_eq!(
                current(&logins, ("authorization", &bearer)).await,
                Err(StatusCode::UNAUTHORIZED),
                "{bad:?}"
            );
        }
    }
}
