//! The presence socket of docs/protocol.md: the upgrade checks, then one session held
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
//! Imports go one way, down this list: this module (the upgrade and its
//! [`query`]), [`connection`], [`frame`], [`calls`], [`answer`], [`close`].
//! Each uses only modules below it.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};

use self::connection::{Connection, serve};
pub(crate) use self::query::SocketQuery;
use crate::admitted::Admitted;
use crate::protocol::BATCH_FRAME_BYTES;
use crate::reply::presence_traffic;
use crate::settings::Shared;

pub(crate) mod answer;
pub(crate) mod calls;
pub(crate) mod close;
mod connection;
pub(crate) mod frame;
mod query;

pub use self::close::{CLOSE_SESSION_LAPSED, CLOSE_SESSION_REPLACED};

/// The upgrade, once [`Admitted`] (403, then 401 or 503) passed: axum's
/// own rejection of a request that is no WebSocket upgrade, or the socket
/// (its query never refuses: see [`SocketQuery`]).
pub(crate) async fn upgrade<A>(
    shared: Arc<Shared>,
    Admitted { identity, .. }: Admitted<A>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    Query(SocketQuery { batches }): Query<SocketQuery>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return presence_traffic(rejection.into_response()),
    };
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
