//! [`PresenceRoutes`]: configures the presence routes and hands out the
//! router, the activity layer and graceful shutdown.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequestParts, Query, WebSocketUpgrade};
use axum::routing::{any, get, post};
use axum::{Extension, Router};
use presence_core::Presence;
use tokio_util::task::TaskTracker;

use crate::admitted::Admitted;
use crate::http_routes::{MembersQuery, SnapshotQuery};
use crate::identity::Identity;
use crate::layer::ActivityLayer;
use crate::origin::AllowedOrigins;
use crate::settings::{Paths, Shared, SocketSettings};
use crate::socket::SocketQuery;
use crate::{client, http_routes, socket};

/// The presence routes of one app, for the host's auth extractor `A`.
///
/// `A` is any extractor of the host (`FromRequestParts<S>`) whose value
/// converts `Into<Identity>`; when it rejects, presence answers 401 (or
/// the extractor's own answer, if it is a server error: a 503 while the
/// host cannot verify logins makes clients retry, not give up).
pub struct PresenceRoutes<A> {
    shared: Arc<Shared>,
    _auth: PhantomData<fn() -> A>,
}

impl<A> Clone for PresenceRoutes<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _auth: PhantomData,
        }
    }
}

impl<A> std::fmt::Debug for PresenceRoutes<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresenceRoutes")
            .field("paths", &self.shared.paths)
            .field("origins", &self.shared.origins)
            .field("open_sockets", &self.shared.sockets.len())
            .finish()
    }
}

impl<A> PresenceRoutes<A> {
    /// Routes for `presence` with the defaults: the socket at
    /// `/ws/presence`, the HTTP heartbeat at `POST /presence/heartbeat`, the
    /// snapshot at `GET /presence/snapshot?scope=S`, the members pages at
    /// `GET /presence/members?scope=S`, the client at
    /// `/presence/client.js` (its TypeScript definitions beside it, at
    /// `/presence/presence.d.ts`), same-origin sockets only.
    pub fn new(presence: Presence) -> Self {
        Self {
            shared: Arc::new(Shared {
                presence,
                paths: Paths::default(),
                origins: AllowedOrigins::same_origin(),
                socket: SocketSettings::default(),
                sockets: TaskTracker::new(),
            }),
            _auth: PhantomData,
        }
    }

    fn edit(mut self, change: impl FnOnce(&mut Shared)) -> Self {
        change(Arc::make_mut(&mut self.shared));
        self
    }

    /// Where the presence WebSocket is mounted.
    pub fn socket_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|shared| shared.paths.socket = path)
    }

    /// Where the HTTP heartbeat is mounted.
    pub fn heartbeat_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|shared| shared.paths.heartbeat = path)
    }

    /// Where the scope snapshot is mounted.
    pub fn snapshot_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|shared| shared.paths.snapshot = path)
    }

    /// Where a scope's members are served page by page.
    pub fn members_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|shared| shared.paths.members = path)
    }

    /// Where the JavaScript client is served. Its TypeScript definitions
    /// are served in the same directory as `presence.d.ts`.
    pub fn client_path(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.edit(|shared| shared.paths.client = path)
    }

    /// The origins, besides the server's own, whose pages may open the
    /// socket and call the HTTP heartbeat, snapshot and members routes.
    pub fn allowed_origins(self, origins: AllowedOrigins) -> Self {
        self.edit(|shared| shared.origins = origins)
    }

    /// Limits and buffers of each socket.
    pub fn socket_settings(self, settings: SocketSettings) -> Self {
        self.edit(|shared| shared.socket = settings)
    }

    /// The service behind the routes.
    pub fn presence(&self) -> &Presence {
        &self.shared.presence
    }

    /// How many presence sockets are open.
    pub fn open_sockets(&self) -> usize {
        self.shared.sockets.len()
    }

    /// The router to `merge` into the host's app. Handlers read the host's
    /// state `S` only to run its extractor `A`.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
        A: FromRequestParts<S> + Into<Identity> + 'static,
    {
        let shared = &self.shared;
        let paths = &shared.paths;
        // Every route but the client's extracts `Admitted<A>` first.
        let on_socket = {
            let shared = shared.clone();
            move |admitted: Admitted<A>,
                  upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
                  query: Query<SocketQuery>| {
                socket::upgrade(shared.clone(), admitted, upgrade, query)
            }
        };
        let on_heartbeat = {
            let shared = shared.clone();
            move |admitted: Admitted<A>, body: Body| {
                http_routes::heartbeat(shared.clone(), admitted, body)
            }
        };
        let on_snapshot = {
            let shared = shared.clone();
            move |admitted: Admitted<A>, query: Result<Query<SnapshotQuery>, QueryRejection>| {
                http_routes::snapshot(shared.clone(), admitted, query)
            }
        };
        let on_members = {
            let shared = shared.clone();
            move |admitted: Admitted<A>, query: Result<Query<MembersQuery>, QueryRejection>| {
                http_routes::members(shared.clone(), admitted, query)
            }
        };
        Router::new()
            // `any`: HTTP/2 WebSockets arrive as CONNECT, HTTP/1.1 as GET.
            .route(&paths.socket, any(on_socket))
            .route(&paths.heartbeat, post(on_heartbeat))
            .route(&paths.snapshot, get(on_snapshot))
            .route(&paths.members, get(on_members))
            // What `Admitted` checks origins against.
            .route_layer(Extension(shared.origins.clone()))
            .route(&paths.client, get(client::serve))
            .route(&client::dts_path(&paths.client), get(client::serve_dts))
    }

    /// The layer that counts the host's authenticated requests as activity
    /// (docs/rules.md#http-sessions), coalesced per login. Apply it to the whole app; the
    /// presence routes' own traffic does not count.
    pub fn activity_layer<S>(&self, state: S) -> ActivityLayer<A, S>
    where
        S: Clone + Send + Sync + 'static,
        A: FromRequestParts<S> + Into<Identity> + 'static,
    {
        ActivityLayer::new(self.shared.presence.clone(), state)
    }

    /// Graceful shutdown: ends every session of this node (each socket is
    /// closed with 1001 and its user lingers, so a reconnect to another
    /// node shows no flicker), then waits up to `within` for the sockets to
    /// finish. Call it from the host's shutdown signal.
    pub async fn shutdown(&self, within: Duration) {
        self.shared.presence.shutdown().await;
        self.shared.sockets.close();
        if tokio::time::timeout(within, self.shared.sockets.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = self.shared.sockets.len(),
                "presence sockets still open after the shutdown grace"
            );
        }
    }
}
