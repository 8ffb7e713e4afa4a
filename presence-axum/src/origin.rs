//! Which browser pages may open the presence socket and call the HTTP
//! routes: the defence against cross-site WebSocket hijacking and request
//! forgery.

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

/// The origins allowed to use presence (the socket and the HTTP routes),
/// besides the server's own (same-origin is always allowed).
///
/// A request without an `Origin` header is not from a browser page (a
/// native client, a test) and is allowed: such a client cannot ride on a
/// victim's cookies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    origins: Vec<String>,
}

impl AllowedOrigins {
    /// Only the server's own origin.
    pub fn same_origin() -> Self {
        Self::default()
    }

    /// Also allows `origin` (e.g. `https://app.example.com`; compared without
    /// a trailing slash, case-insensitively).
    pub fn allow(mut self, origin: impl AsRef<str>) -> Self {
        self.origins.push(normalise(origin.as_ref()));
        self
    }

    /// Whether a request with these headers may use presence.
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = normalise(origin);
        if self.origins.contains(&origin) {
            return true;
        }
        // Same origin: the Origin's host and port are the Host the request
        // was sent to. (The scheme is not compared: behind a TLS-terminating
        // proxy the server cannot see it.)
        let Some(authority) = origin.split_once("://").map(|(_, rest)| rest) else {
            return false;
        };
        headers
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .is_some_and(|host| host.eq_ignore_ascii_case(authority))
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    #[test]
    fn same_origin_and_listed_origins_pass_others_do_not() {
        let allowed = AllowedOrigins::same_origin().allow("https://App.example.com/");
        assert!(allowed.permits(&headers(Some("http://127.0.0.1:3000"), "127.0.0.1:3000")));
        assert!(allowed.permits(&headers(Some("https://app.example.com"), "127.0.0.1:3000")));
        assert!(
            allowed.permits(&headers(None, "127.0.0.1:3000")),
            "not a browser"
        );
        assert!(!allowed.permits(&headers(Some("https://evil.example"), "127.0.0.1:3000")));
        assert!(!allowed.permits(&headers(Some("http://127.0.0.1:3001"), "127.0.0.1:3000")));
        assert!(!allowed.permits(&headers(Some("null"), "127.0.0.1:3000")));
    }
}
