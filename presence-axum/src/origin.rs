//! Which browser pages may open the presence socket and call the HTTP
//! routes: the defence against cross-site WebSocket hijacking and request
//! forgery.

use std::sync::Arc;

use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;

/// The origins allowed to use presence (the socket and the HTTP routes),
/// besides the server's own (same-origin is always allowed).
///
/// A request without an `Origin` header is not from a browser page (a
/// native client, a test) and is allowed: such a client cannot ride on a
/// victim's cookies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    /// Shared: the routes hand a copy to every request they check.
    origins: Arc<[String]>,
}

impl AllowedOrigins {
    /// Only the server's own origin.
    pub fn same_origin() -> Self {
        Self::default()
    }

    /// Also allows `origin` (e.g. `https://app.example.com`; compared without
    /// a trailing slash, case-insensitively).
    pub fn allow(mut self, origin: impl AsRef<str>) -> Self {
        let mut origins = self.origins.to_vec();
        origins.push(normalise(origin.as_ref()));
        self.origins = origins.into();
        self
    }

    /// Whether a request (its head) may use presence.
    pub fn permits(&self, request: &Parts) -> bool {
        let headers = &request.headers;
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
        // Same origin: the Origin's host and port are those the request
        // was sent to: its `Host` header (HTTP/1.1), or the authority of
        // its URI (HTTP/2 and 3 send `:authority`, and no `Host`). (The
        // scheme is not compared: behind a TLS-terminating proxy the
        // server cannot see it.)
        let Some(authority) = origin.split_once("://").map(|(_, rest)| rest) else {
            return false;
        };
        let host = match headers.get(HOST) {
            Some(host) => host.to_str().ok(),
            None => request.uri.authority().map(|a| a.as_str()),
        };
        host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use axum::http::{Request, Version};

    use super::*;

    /// An HTTP/1.1 request to `host`, from a page of `origin`.
    fn request(origin: Option<&'static str>, host: &'static str) -> Parts {
        let mut request = Request::get("/ws/presence").header(HOST, host);
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request.body(()).expect("request").into_parts().0
    }

    /// An HTTP/2 request to `authority` (no `Host` header), from a page of
    /// `origin`.
    fn h2_request(origin: &'static str, authority: &'static str) -> Parts {
        Request::get(format!("https://{authority}/ws/presence"))
            .version(Version::HTTP_2)
            .header(ORIGIN, origin)
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    #[test]
    fn same_origin_and_listed_origins_pass_others_do_not() {
        let allowed = AllowedOrigins::same_origin().allow("https://App.example.com/");
        assert!(allowed.permits(&request(Some("http://127.0.0.1:3000"), "127.0.0.1:3000")));
        assert!(allowed.permits(&request(Some("https://app.example.com"), "127.0.0.1:3000")));
        assert!(
            allowed.permits(&request(None, "127.0.0.1:3000")),
            "not a browser"
        );
        assert!(!allowed.permits(&request(Some("https://evil.example"), "127.0.0.1:3000")));
        assert!(!allowed.permits(&request(Some("http://127.0.0.1:3001"), "127.0.0.1:3000")));
        assert!(!allowed.permits(&request(Some("null"), "127.0.0.1:3000")));
    }

    #[test]
    fn same_origin_over_http2_is_judged_by_the_authority() {
        let allowed = AllowedOrigins::same_origin();
        assert!(allowed.permits(&h2_request("https://app.example.com", "app.example.com")));
        assert!(!allowed.permits(&h2_request("https://evil.example", "app.example.com")));
        assert!(!allowed.permits(&h2_request(
            "https://app.example.com:8443",
            "app.example.com"
        )));
    }
}
