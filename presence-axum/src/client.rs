//! The browser client, `assets/presence.js`, and its TypeScript
//! definitions, `assets/presence.d.ts`, each served as one static file.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::reply::presence_traffic;

/// The JavaScript client, for hosts that serve it themselves.
pub const CLIENT_JS: &str = include_str!("../assets/presence.js");

/// The client's TypeScript definitions (`presence.d.ts`), for hosts that
/// serve them themselves.
pub const CLIENT_DTS: &str = include_str!("../assets/presence.d.ts");

/// The definitions' file name, served in the client's directory.
const DTS_FILE: &str = "presence.d.ts";

static JS_ETAG: LazyLock<HeaderValue> = LazyLock::new(|| etag_of(CLIENT_JS));
static DTS_ETAG: LazyLock<HeaderValue> = LazyLock::new(|| etag_of(CLIENT_DTS));

fn etag_of(file: &str) -> HeaderValue {
    let mut hasher = DefaultHasher::new();
    file.hash(&mut hasher);
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
        .unwrap_or(HeaderValue::from_static("\"presence\""))
}

/// Where the definitions are served: `presence.d.ts` in the directory of
/// the client's path (`/presence/client.js` → `/presence/presence.d.ts`).
pub(crate) fn dts_path(client_path: &str) -> String {
    let directory = client_path
        .rfind('/')
        .map_or("/", |end| &client_path[..=end]);
    format!("{directory}{DTS_FILE}")
}

/// Serves the client: JavaScript content type, cached for an hour and
/// revalidated by ETag (a new release changes the tag).
pub(crate) async fn serve(headers: HeaderMap) -> Response {
    serve_file(
        &headers,
        CLIENT_JS,
        &JS_ETAG,
        "text/javascript; charset=utf-8",
    )
}

/// Serves the definitions as the client: TypeScript content type, the
/// same caching.
pub(crate) async fn serve_dts(headers: HeaderMap) -> Response {
    serve_file(
        &headers,
        CLIENT_DTS,
        &DTS_ETAG,
        "application/typescript; charset=utf-8",
    )
}

fn serve_file(
    headers: &HeaderMap,
    file: &'static str,
    etag: &HeaderValue,
    content_type: &'static str,
) -> Response {
    let fresh = headers
        .get(IF_NONE_MATCH)
        .is_some_and(|tags| tags.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        presence_traffic(StatusCode::NOT_MODIFIED)
    } else {
        presence_traffic(file)
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600, must-revalidate"),
    );
    headers.insert(ETAG, etag.clone());
    response
}

#[cfg(test)]
mod tests {
    use super::dts_path;

    #[test]
    fn the_definitions_are_served_in_the_clients_directory() {
        assert_eq!(dts_path("/presence/client.js"), "/presence/presence.d.ts");
        assert_eq!(
            dts_path("/static/js/presence.js"),
            "/static/js/presence.d.ts"
        );
        assert_eq!(dts_path("/client.js"), "/presence.d.ts");
        assert_eq!(dts_path("client.js"), "/presence.d.ts");
    }
}
