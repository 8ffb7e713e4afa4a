//! The presence socket of SPEC §6: the upgrade checks, then one session held
//! for as long as the socket lives.
//!
//! One task per socket ([`connection`]): it reads frames and answers them
//! ([`frame`]), runs the store calls they ask for beside its reading
//! ([`calls`]: a slow store never holds up a heartbeat), and writes what
//! the subscription delivers, straight to the socket. Fan-out never waits
//! on a socket (subscriptions are bounded and report lag); a socket whose
//! write does not complete within `send_timeout` (a peer that stopped
//! reading) is dropped. Each event's frame, and each batch's, is encoded
//! once and shared by every socket that sends it.
//!
//! Imports go one way, down this list: this module (the upgrade),
//! [`connection`], [`frame`], [`calls`], [`answer`], [`close`]. Each uses
//! only modules below it.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};

use self::connection::{Connection, serve};
use crate::http_routes::identify;
use crate::identity::Identity;
use crate::protocol::BATCH_FRAME_BYTES;
use crate::reply::{forbidden_origin, presence_traffic};
use crate::settings::Shared;

pub(crate) mod answer;
pub(crate) mod calls;
pub(crate) mod close;
mod connection;
pub(crate) mod frame;

pub use self::close::{CLOSE_SESSION_LAPSED, CLOSE_SESSION_REPLACED};

/// The upgrade: origin (403), identity (401), then the socket.
pub(crate) async fn upgrade<A, S>(shared: Arc<Shared>, state: S, request: Request) -> Response
where
    A: FromRequestParts<S> + Into<Identity>,
    S: Send + Sync,
{
    let (mut parts, _) = request.into_parts();
    if !shared.origins.permits(&parts) {
        return forbidden_origin();
    }
    let identity = match identify::<A, S>(&mut parts, &state).await {
        Ok(identity) => identity,
        Err(refusal) => return refusal,
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return presence_traffic(rejection.into_response()),
    };
    let batches = asks_for_batches(parts.uri.query());
    let limits = shared.socket;
    let response = upgrade
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        // Room for the largest frame the server writes, and some.
        .max_write_buffer_size(
            limits
                .max_write_buffer_bytes
                .max(limits.max_message_bytes * 2)
                .max(BATCH_FRAME_BYTES * 2),
        )
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .on_upgrade({
            // The callback is kept in the upgrade task's future for the
            // socket's whole life: it holds a pointer, not the identity.
            let parts = Box::new((shared, identity, batches));
            move |socket| {
                let (shared, identity, batches) = *parts;
                let tracker = shared.sockets.clone();
                let connection = Box::new(Connection {
                    shared,
                    identity,
                    socket,
                    batches,
                });
                tracker.track_future(serve(connection))
            }
        });
    presence_traffic(response)
}

/// Whether the socket's URL asks for `presence_batch` frames: `batch=1` (or
/// `batch=true`) in its query.
fn asks_for_batches(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|pair| matches!(pair, "batch=1" | "batch=true"))
}
