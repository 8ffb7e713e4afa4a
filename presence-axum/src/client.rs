//! The browser client, `assets/presence.js`, served as one static file.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::reply::presence_traffic;

/// The JavaScript client, for hosts that serve it themselves.
pub const CLIENT_JS: &str = include_str!("../assets/presence.js");

static ETAG_VALUE: LazyLock<HeaderValue> = LazyLock::new(|| {
    let mut hasher = DefaultHasher::new();
    CLIENT_JS.hash(&mut hasher);
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
        .unwrap_or(HeaderValue::from_static("\"presence\""))
});

/// Serves the client: JavaScript content type, cached for an hour and
/// revalidated by ETag (a new release changes the tag).
pub(crate) async fn serve(headers: HeaderMap) -> Response {
    let etag = ETAG_VALUE.clone();
    let fresh = headers
        .get(IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        presence_traffic(StatusCode::NOT_MODIFIED)
    } else {
        presence_traffic(CLIENT_JS)
    };
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600, must-revalidate"),
    );
    headers.insert(ETAG, etag);
    response
}
