//! HTTP answers shared by the presence routes: [`Refusal`], a JSON error
//! with a stable code, and the mark that keeps presence traffic from
//! counting as activity.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Set on the responses of presence's own routes: the activity layer does
/// not count them as user activity (a heartbeat proves liveness only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NotActivity;

/// Marks a response as presence traffic.
pub(crate) fn presence_traffic(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(NotActivity);
    response
}

/// A refused presence request: an HTTP status, and a JSON body
/// `{"code": "…", "message": "…"}` whose code is stable (`docs/protocol.md`
/// lists every one). The rejection of [`crate::Admitted`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: Cow<'static, str>,
}

impl Refusal {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The host's extractor rejected the request (401).
    pub(crate) fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in to use presence",
        )
    }

    /// Presence, or the host's auth, cannot answer right now (503): the
    /// client should retry.
    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "presence is unavailable right now; try again",
        )
    }

    /// The request came from a page of an origin not allowed (403: the
    /// socket's upgrade rule of docs/protocol.md, applied to the HTTP routes as
    /// well).
    pub(crate) fn forbidden_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this origin may not use presence",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code (`unauthenticated`, `forbidden_origin`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for Refusal {
    /// The JSON error, marked as presence traffic.
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code, "message": self.message });
        presence_traffic((self.status, Json(body)))
    }
}
