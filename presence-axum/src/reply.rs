//! HTTP answers shared by the presence routes: JSON errors with stable
//! codes, and the mark that keeps presence traffic from counting as
//! activity.

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

/// A JSON error `{"code", "message"}` marked as presence traffic.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    presence_traffic((status, Json(json!({ "code": code, "message": message }))))
}

pub(crate) fn unauthenticated() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "sign in to use presence",
    )
}

pub(crate) fn unavailable() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "presence is unavailable right now; try again",
    )
}

/// The request came from a page of an origin not allowed (the socket's
/// upgrade rule of SPEC §6, applied to the HTTP routes as well).
pub(crate) fn forbidden_origin() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden_origin",
        "this origin may not use presence",
    )
}
