//! The HTTP side of presence: a heartbeat for clients that cannot hold a
//! socket (and for `navigator.sendBeacon`), a scope snapshot, and a scope's
//! members page by page.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use presence_core::{Error, MAX_MEMBERS_PAGE, UserPresence};
use serde::{Deserialize, Serialize};

use crate::admitted::Admitted;
use crate::protocol::{ServerMessage, scope_name, user_entries, watched_users};
use crate::reply::{Refusal, presence_traffic};
use crate::settings::Shared;

/// Largest HTTP heartbeat body.
const MAX_HEARTBEAT_BODY: usize = 1024;

/// The optional body of an HTTP heartbeat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatBody {
    /// The user also did something (counts as activity).
    #[serde(default)]
    activity: bool,
}

/// `POST` heartbeat: keeps the login's HTTP session live (no activity
/// unless the body says `{"activity":true}`). Any content type is accepted,
/// so `navigator.sendBeacon` works; the body is empty or that JSON object.
pub(crate) async fn heartbeat<A>(
    shared: Arc<Shared>,
    Admitted { identity, .. }: Admitted<A>,
    body: Body,
) -> Result<Response, Refusal> {
    let body = read_body(body).await?;
    let presence = &shared.presence;
    let (user, login, scopes) = (&identity.user, &identity.login, &identity.member_of);
    let result = if body.activity {
        presence
            .mark_http_activity(user, login, scopes)
            .await
            .map(drop)
    } else {
        presence.http_heartbeat(user, login, scopes).await
    };
    match result {
        Ok(()) => Ok(presence_traffic(StatusCode::NO_CONTENT)),
        Err(failure) => {
            tracing::warn!(%user, error = %failure, "HTTP heartbeat failed");
            Err(Refusal::unavailable())
        }
    }
}

async fn read_body(body: Body) -> Result<HeartbeatBody, Refusal> {
    let bytes = axum::body::to_bytes(body, MAX_HEARTBEAT_BODY)
        .await
        .map_err(|failure| {
            if over_the_limit(&failure) {
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "a heartbeat body is at most 1 KiB",
                )
            } else {
                // A broken upload (a bad chunk, a connection cut short).
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    format!("the body could not be read: {failure}"),
                )
            }
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(HeartbeatBody::default());
    }
    let refused = |why: String| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("expected {{\"activity\": true|false}}: {why}"),
        )
    };
    // An object only: serde would also read a struct from an array.
    match serde_json::from_slice(&bytes).map_err(|e| refused(e.to_string()))? {
        serde_json::Value::Object(fields) => {
            HeartbeatBody::deserialize(serde_json::Value::Object(fields))
                .map_err(|e| refused(e.to_string()))
        }
        _ => Err(refused("not a JSON object".into())),
    }
}

/// Whether reading a body failed on the size limit (not on a broken upload).
fn over_the_limit(failure: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(error) = cause {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// The query of the snapshot route.
#[derive(Debug, Deserialize)]
pub(crate) struct SnapshotQuery {
    scope: Option<String>,
    /// Comma-separated user ids: only these users.
    user_ids: Option<String>,
}

/// `GET ?scope=S[&user_ids=a,b]`: the snapshot frame of docs/protocol.md as JSON,
/// for a scope the user may watch (403 otherwise, with no data).
pub(crate) async fn snapshot<A>(
    shared: Arc<Shared>,
    Admitted { identity, .. }: Admitted<A>,
    query: Result<Query<SnapshotQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let Query(query) = query.map_err(|rejection| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            rejection.body_text(),
        )
    })?;
    // The limits of a `subscribe` frame, with the same error.
    let asked = query.scope.map(scope_name).transpose().and_then(|scope| {
        let users = query
            .user_ids
            .map(|ids| {
                watched_users(
                    ids.split(',')
                        .filter(|id| !id.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            })
            .transpose()?;
        Ok((scope, users))
    });
    let (scope, users) = match asked {
        Ok((Some(scope), users)) => (scope, users),
        Ok((None, _)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "scope is required",
            ));
        }
        Err(refused) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                refused.code(),
                refused.message(),
            ));
        }
    };
    if !identity.can_watch(&scope) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden_scope",
            "you may not watch this scope",
        ));
    }
    let snapshot = match &users {
        Some(users) => shared.presence.snapshot_of(&scope, users).await,
        None => shared.presence.snapshot(&scope).await,
    };
    match snapshot {
        Ok(snapshot) => {
            let json = ServerMessage::snapshot(&snapshot).to_json();
            Ok(presence_traffic((
                [
                    (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                json,
            )))
        }
        Err(failure) => {
            tracing::warn!(%scope, error = %failure, "snapshot failed");
            Err(Refusal::unavailable())
        }
    }
}

/// A members page when the query names no `limit`.
pub(crate) const DEFAULT_MEMBERS_LIMIT: usize = 100;

/// The query of the members route: its pairs, as given. Only `scope`,
/// `cursor` and `limit` are read (the last of each, when repeated); other
/// pairs are ignored, as the host's own parameters may ride along (a
/// token its extractor reads).
pub(crate) type MembersQuery = Vec<(String, String)>;

/// A members page as JSON.
#[derive(Serialize)]
struct MembersReply<'a> {
    #[serde(serialize_with = "user_entries")]
    members: &'a [UserPresence],
    next_cursor: Option<&'a str>,
}

/// `GET ?scope=S[&cursor=C][&limit=N]`: up to `limit` (default 100, at
/// most 1000) members of a scope the user may watch who are not
/// `OFFLINE`, in order of user id, each as in a snapshot, and the cursor
/// of the next page (`null` on the last).
pub(crate) async fn members<A>(
    shared: Arc<Shared>,
    Admitted { identity, .. }: Admitted<A>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let Query(pairs) = query.map_err(|rejection| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_message",
            rejection.body_text(),
        )
    })?;
    let last = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let scope = match last("scope").map(|scope| scope_name(scope.to_owned())) {
        Some(Ok(scope)) => scope,
        Some(Err(refused)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                refused.code(),
                refused.message(),
            ));
        }
        None => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_message",
                "scope is required",
            ));
        }
    };
    let limit = match last("limit") {
        None => DEFAULT_MEMBERS_LIMIT,
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_MEMBERS_PAGE).contains(limit))
            .ok_or_else(bad_limit)?,
    };
    // An empty cursor is the first page, as no cursor is.
    let cursor = last("cursor").filter(|cursor| !cursor.is_empty());
    if !identity.can_watch(&scope) {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "forbidden_scope",
            "you may not watch this scope",
        ));
    }
    match shared.presence.members(&scope, cursor, limit).await {
        Ok(page) => {
            let reply = MembersReply {
                members: &page.members,
                next_cursor: page.next_cursor.as_deref(),
            };
            // Serialising these plain structs cannot fail.
            let json = serde_json::to_string(&reply).unwrap_or_default();
            Ok(presence_traffic((
                [
                    (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                json,
            )))
        }
        Err(Error::BadCursor) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_cursor",
            "the cursor is not one a members page gave",
        )),
        Err(Error::BadLimit { .. }) => Err(bad_limit()),
        Err(failure) => {
            tracing::warn!(%scope, error = %failure, "members page failed");
            Err(Refusal::unavailable())
        }
    }
}

fn bad_limit() -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "bad_limit",
        format!("limit must be a whole number from 1 to {MAX_MEMBERS_PAGE}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refusal(body: Body) -> (StatusCode, &'static str) {
        match read_body(body).await {
            Ok(_) => panic!("expected a refusal"),
            Err(refusal) => (refusal.status(), refusal.code()),
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_413_and_a_broken_one_400() {
        let big = Body::from(vec![b' '; MAX_HEARTBEAT_BODY + 1]);
        assert_eq!(
            refusal(big).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
        );
        let broken = Body::from_stream(futures_util::stream::iter([
            Ok(axum::body::Bytes::from_static(b"{\"activity\"")),
            Err(std::io::Error::other("the connection was cut")),
        ]));
        assert_eq!(
            refusal(broken).await,
            (StatusCode::BAD_REQUEST, "unreadable_body")
        );
        assert!(read_body(Body::from("{\"activity\": true}")).await.is_ok());
    }

    #[tokio::test]
    async fn a_body_that_is_not_one_json_object_is_400() {
        for body in [
            "[true]",
            "[]",
            "true",
            "\"activity\"",
            "{\"activity\": 1}",
            "{\"x\": 1}",
        ] {
            assert_eq!(
                refusal(Body::from(body)).await,
                (StatusCode::BAD_REQUEST, "malformed_json"),
                "{body}"
            );
        }
    }
}
