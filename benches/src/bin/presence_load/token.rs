//! The stand-in auth of the servers this tool starts itself (the bare
//! baselines and `--server lib`): `POST /api/login` takes
//! `{"username","org"}` and answers the token `user|org`, which the socket
//! presents as `Authorization: Bearer user|org`. A load tool's auth, not an
//! app's.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

/// The body of `POST /api/login`.
#[derive(serde::Deserialize)]
pub(crate) struct Credentials {
    pub(crate) username: String,
    pub(crate) org: String,
}

impl Credentials {
    /// The login body, or `None` when it is not one.
    pub(crate) fn parse(body: &str) -> Option<Self> {
        serde_json::from_str(body).ok()
    }

    /// The login's answer: the token and the user id.
    pub(crate) fn token_response(&self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"token":"{}|{}","user_id":"{}"}}"#,
                self.username, self.org, self.username
            ),
        )
            .into_response()
    }
}

/// The (user, org) of an `Authorization: Bearer user|org` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<(&str, &str)> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| t.split_once('|'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_user_and_org() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ann|acme".parse().unwrap());
        assert_eq!(bearer(&headers), Some(("ann", "acme")));
        headers.insert(header::AUTHORIZATION, "Bearer ann".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn a_login_body_needs_both_fields() {
        assert!(Credentials::parse(r#"{"username":"ann"}"#).is_none());
        let c = Credentials::parse(r#"{"username":"ann","org":"acme"}"#).expect("parses");
        assert_eq!((c.username.as_str(), c.org.as_str()), ("ann", "acme"));
    }
}
