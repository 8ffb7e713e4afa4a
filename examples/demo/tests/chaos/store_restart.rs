//! The store dies under load and comes back on the same port.
//!
//! Five users heartbeat and report activity through one demo, a sixth
//! watches. While the store is away the demo stays up and says so in typed
//! ways: `GET /api/presence` answers 503 `unavailable`, an `activity` gets
//! an `error` frame `unavailable`, and a new socket's upgrade is refused
//! with 503 (each login is checked against the logouts kept in the store;
//! one that cannot be checked is neither let in nor taken for signed out:
//! the client retries); the sockets already open stay open (heartbeats are
//! answered from memory). Once the store is back, everyone connected is
//! ONLINE again within 5 s, over HTTP and on the watcher's socket, and new
//! logins work.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::Client;
use crate::nodes::{
    HEARTBEAT, Node, ORG, SWEEP, scope_statuses, status_in, thresholds, until_shown,
};
use crate::servers::OwnStore;

/// The promise: presence is right again this soon after the store returns.
const RECOVERY: Duration = Duration::from_secs(5);
/// Longest wait for the first typed error once the store is gone.
const NOTICED: Duration = Duration::from_secs(5);

/// How a run is played.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// `PRESENCE_SESSION_TTL`.
    pub(crate) session_ttl: Duration,
    /// How often each user reports activity (the load).
    pub(crate) activity_every: Duration,
    /// How long the store stays away.
    pub(crate) outage: Duration,
    /// Clients reconnect after a close, as `presence.js` does; otherwise
    /// every socket must stay open through the outage.
    pub(crate) reconnect: bool,
}

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Figures {
    /// From the store's death to the first 503 of `GET /api/presence`.
    pub(crate) first_503: Duration,
    /// How long the store was away (at least the plan's outage: the typed
    /// errors of a slow store take their time).
    pub(crate) outage: Duration,
    /// From the store's return to everyone ONLINE over HTTP.
    pub(crate) recovered_http: Duration,
    /// From the store's return to everyone ONLINE on the watcher's socket.
    pub(crate) recovered_socket: Duration,
    /// The close codes the server sent the users' sockets.
    pub(crate) closes: Vec<Option<u16>>,
}

impl Figures {
    pub(crate) fn print(&self, store: &str, plan: Plan) {
        eprintln!(
            "chaos figure: {store} restart ({plan:?}): first 503 after {:?}; away for {:?}; \
             everyone ONLINE again {:?} (HTTP) and {:?} (watcher socket) after the store \
             returned; sockets closed: {:?}",
            self.first_503, self.outage, self.recovered_http, self.recovered_socket, self.closes
        );
    }
}

/// Runs the scenario on a demo started with `store` (its URL and prefix or
/// schema), which `own` can stop and start.
pub(crate) async fn store_restart_under_load(
    own: &mut impl OwnStore,
    store: &[(&'static str, String)],
    plan: Plan,
) -> Figures {
    let mut env: Vec<(&str, String)> = store.to_vec();
    env.extend(thresholds(plan.session_ttl));
    env.push(("PRESENCE_NODE_NAME", "chaos-store".into()));
    let mut node = Node::start(&env);
    let demo = &node.demo;

    let wes = demo.login("wes", ORG).await;
    let open = async |name: &str, token: &str| {
        if plan.reconnect {
            Client::open_reconnecting(demo, name, token, HEARTBEAT).await
        } else {
            Client::open(demo, name, token, HEARTBEAT).await
        }
    };
    let mut watcher = open("wes", &wes).await;
    let users = ["u1", "u2", "u3", "u4", "u5"];
    let mut clients = Vec::new();
    for user in users {
        let token = demo.login(user, ORG).await;
        clients.push(open(user, &token).await);
    }
    let everyone: Vec<(&str, &str)> = users
        .iter()
        .chain(&["wes"])
        .map(|u| (*u, "ONLINE"))
        .collect();
    until_shown(demo, &wes, Duration::from_secs(10), &everyone).await;
    // The load: every user reports activity, for the whole scenario.
    let load = tokio::spawn({
        let senders: Vec<_> = clients.iter().map(Client::sender).collect();
        async move {
            let mut tick = tokio::time::interval(plan.activity_every);
            loop {
                tick.tick().await;
                for send in &senders {
                    send(json!({"type": "activity"}));
                }
            }
        }
    });

    let died = Instant::now();
    own.stop();
    let first_503 = loop {
        match scope_statuses(demo, &wes).await {
            Ok(_) => {}
            Err((503, body)) => {
                assert_eq!(body["code"], "unavailable", "{body}");
                break died.elapsed();
            }
            Err(other) => panic!("while the store is away: {other:?}"),
        }
        assert!(died.elapsed() < NOTICED, "no 503 while the store is away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let refused = clients[0]
        .wait_for(NOTICED, "an error frame", |f| {
            f["type"] == "error" && f["code"] == "unavailable"
        })
        .await;
    assert!(
        refused >= died,
        "an error frame {:?} before the outage: {:?}",
        died - refused,
        clients[0]
            .frames_since(died - Duration::from_secs(30))
            .filter(|f| f["type"] == "error")
            .collect::<Vec<_>>()
    );
    // A new login still signs in (its token is signed, not stored), but
    // it cannot be checked against the logouts: its socket is refused for
    // now (503, so the client retries).
    let late = demo.login("late", ORG).await;
    assert_eq!(
        upgrade_status(demo, &late).await,
        Some(503),
        "a login that cannot be checked is refused for now"
    );
    tokio::time::sleep(plan.outage.saturating_sub(died.elapsed())).await;
    node.assert_alive_and_sane();

    own.start();
    let returned = Instant::now();
    let outage = returned - died;
    let recovered_http = until_shown(&node.demo, &wes, RECOVERY, &everyone).await;
    let deadline = returned + RECOVERY;
    let recovered_socket = loop {
        watcher.pump();
        if users.iter().all(|u| watcher.shows(ORG, u) == "ONLINE") {
            break returned.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the watcher's socket never showed everyone again: {:?}",
            watcher.view(ORG)
        );
        watcher.listen(Duration::from_millis(50)).await;
    };
    load.abort();
    let closes: Vec<Option<u16>> = clients.iter_mut().flat_map(Client::closes).collect();
    if !plan.reconnect {
        assert_eq!(closes, [], "every socket stayed open");
    }

    // New logins work again.
    let new = node.demo.login("new", ORG).await;
    let mut newcomer = Client::open(&node.demo, "new", &new, HEARTBEAT).await;
    newcomer
        .wait_for(Duration::from_secs(5), "a snapshot", |f| {
            f["type"] == "snapshot"
        })
        .await;
    until_shown(&node.demo, &wes, RECOVERY, &[("new", "ONLINE")]).await;
    // Still so after a sweep over the heartbeats the outage held back.
    watcher.listen(SWEEP).await;
    let statuses = scope_statuses(&node.demo, &wes).await.expect("served");
    for user in users.iter().chain(&["wes", "new"]) {
        assert_eq!(status_in(&statuses, user), "ONLINE", "{user}: {statuses:?}");
    }
    node.assert_alive_and_sane();
    Figures {
        first_503,
        outage,
        recovered_http,
        recovered_socket,
        closes,
    }
}

/// The HTTP status that refused the upgrade of `token`'s socket; `None`
/// when it opened.
async fn upgrade_status(demo: &crate::common::Demo, token: &str) -> Option<u16> {
    let mut request = format!("{}/ws/presence", demo.base.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => None,
        Err(WsError::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("the upgrade failed: {other}"),
    }
}
