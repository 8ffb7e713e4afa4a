//! PostgreSQL goes away and comes back. The test cannot stop the shared
//! server, so node A reaches it through a TCP proxy of the test's own,
//! which it stops (every connection cut, new ones refused) and starts
//! again on the same port.

#![cfg(feature = "postgres")]

mod common;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_core::store::{PresenceStore, StoreError};
use presence_core::{
    Error, LoginId, ManualClock, NodeId, Presence, RequestedStatus, SessionId, SessionSpec, Status,
    UserId,
};
use presence_sqlx::{PgConfig, PgStore};
use presence_store_tests::helpers::{ev, next_seen_within};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Forwards 127.0.0.1:`port` to `target` until dropped.
struct Proxy {
    accepting: JoinHandle<()>,
}

impl Proxy {
    fn start(port: u16, target: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .expect("bind the proxy");
        let listener = socket.listen(64).expect("listen");
        let accepting = tokio::spawn(async move {
            // Dropped with this task: every forwarded connection is cut.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { accepting }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// The test database's address, and its URL with the address replaced by
/// the proxy's.
fn through_proxy(url: &str, port: u16) -> (SocketAddr, String) {
    let options = sqlx::postgres::PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
    let host = match options.get_host() {
        "localhost" => "127.0.0.1",
        host => host,
    };
    let target = format!("{host}:{}", options.get_port())
        .parse()
        .expect("the test database at an IP address");
    let (scheme, rest) = url.split_once("://").expect("scheme");
    let (credentials, after) = match rest.split_once('@') {
        Some((credentials, after)) => (format!("{credentials}@"), after),
        None => (String::new(), rest),
    };
    let path = after.find(['/', '?']).map_or("", |at| &after[at..]);
    (
        target,
        format!("{scheme}://{credentials}127.0.0.1:{port}{path}"),
    )
}

/// How long node B may take to tell a change (node A's connections come
/// and go).
const TOLD: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_goes_away_typed_errors_no_hang_and_recovery() {
    let (url, schema) = (common::postgres_url(), common::fresh_schema());
    let port = free_port();
    let (target, proxied) = through_proxy(&url, port);
    let proxy = Proxy::start(port, target);
    let clock = Arc::new(ManualClock::default());

    let store_a = PgStore::connect(
        PgConfig::new(proxied)
            .schema(schema.clone())
            .acquire_timeout(Duration::from_secs(1))
            .flush_interval(Duration::from_millis(50)),
    )
    .await
    .expect("connect through the proxy");
    let a = Presence::builder()
        .store(store_a.clone())
        .clock(clock.clone())
        .node(NodeId::new("node-a"))
        .store_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("node A");
    let b = Presence::builder()
        .store(
            PgStore::connect(PgConfig::new(url.clone()).schema(schema.clone()))
                .await
                .expect("connect directly"),
        )
        .clock(clock.clone())
        .node(NodeId::new("node-b"))
        .build()
        .await
        .expect("node B");
    let (mut on_b, _) = b.watch(&"acme".into()).await.expect("watch");
    let alice = a
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    assert_eq!(
        next_seen_within(&mut on_b, TOLD).await,
        ev("alice", Status::Online, 1)
    );
    // Bob browses without a socket: his HTTP session's heartbeats are the
    // ones written to the database (alice's stay on node A).
    let (bob, bob_login) = (UserId::from("bob"), LoginId::from("bob-l"));
    let bob_session = SessionId::for_http_login(&bob_login);
    a.mark_http_activity(&bob, &bob_login, &["acme".into()])
        .await
        .expect("bob's HTTP session");
    assert_eq!(
        next_seen_within(&mut on_b, TOLD).await,
        ev("bob", Status::Online, 1)
    );

    drop(proxy); // the database is gone, for node A
    let started = Instant::now();
    let failure = a
        .set_status(&"alice".into(), RequestedStatus::Busy, None)
        .await
        .expect_err("the database is unreachable");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(5), "no hang: {waited:?}");
    assert!(
        matches!(
            failure,
            Error::Store(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ),
        "a typed error: {failure:?}"
    );
    alice
        .heartbeat()
        .expect("heartbeats are answered from memory meanwhile");
    a.heartbeat(&bob, &bob_session)
        .expect("an HTTP session's too, for the next flush");
    let flushed = store_a.flush_heartbeats().await;
    assert!(
        matches!(
            flushed,
            Err(StoreError::Unavailable(_) | StoreError::Timeout(_))
        ),
        "{flushed:?}"
    );

    let _proxy = Proxy::start(port, target); // back
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match a
            .set_status(&"alice".into(), RequestedStatus::Busy, None)
            .await
        {
            Ok(_) => break,
            Err(error) => {
                assert!(Instant::now() < deadline, "never recovered: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let recovered = started.elapsed();
    assert_eq!(
        next_seen_within(&mut on_b, TOLD).await,
        ev("alice", Status::Busy, 2)
    );
    alice.heartbeat().expect("still live");
    a.heartbeat(&bob, &bob_session).expect("still live");
    store_a
        .flush_heartbeats()
        .await
        .expect("heartbeats are written again");
    eprintln!("node A failed in {waited:?} and recovered {recovered:?} after the outage began");

    drop((alice, a, b, store_a));
    common::drop_schema(url, schema);
}

/// A durable reader whose store goes away keeps what it acknowledged and
/// writes it once the store is back: nothing it handled is told again,
/// nothing it did not handle is lost, and it never panics or stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_reader_writes_its_acknowledgements_once_postgres_is_back() {
    let (url, schema) = (common::postgres_url(), common::fresh_schema());
    let port = free_port();
    let (target, proxied) = through_proxy(&url, port);
    let proxy = Proxy::start(port, target);
    let store = PgStore::connect(
        PgConfig::new(proxied)
            .schema(schema.clone())
            .acquire_timeout(Duration::from_secs(1)),
    )
    .await
    .expect("connect through the proxy");
    let a = Presence::builder()
        .store(store.clone())
        .node(NodeId::new("node-a"))
        .store_timeout(Duration::from_secs(2))
        .durable_changes(true)
        .build()
        .await
        .expect("node A");
    let mut changes = a.changes();
    let _alice = a
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    let told = tokio::time::timeout(TOLD, changes.recv())
        .await
        .expect("told")
        .expect("running")
        .expect("not missed");
    assert_eq!(told.user.as_str(), "alice");

    drop(proxy); // the database is gone
    // Asking for the next change acknowledges alice's; writing that fails.
    let quiet = tokio::time::timeout(Duration::from_millis(500), changes.recv()).await;
    assert!(quiet.is_err(), "nothing new: {quiet:?}");
    let _proxy = Proxy::start(port, target); // back
    // The reader writes what it kept within a retry (1 s) of asking again.
    let quiet = tokio::time::timeout(Duration::from_secs(3), changes.recv()).await;
    assert!(quiet.is_err(), "nothing new: {quiet:?}");
    let direct = PgStore::connect(PgConfig::new(url.clone()).schema(schema.clone()))
        .await
        .expect("connect directly");
    let left = direct
        .kept_changes(&"node-a".into(), &[], 10)
        .await
        .expect("read");
    assert!(left.is_empty(), "alice's change was acknowledged: {left:?}");

    a.set_status(&"alice".into(), RequestedStatus::Busy, None)
        .await
        .expect("the database is back");
    let busy = tokio::time::timeout(TOLD, changes.recv())
        .await
        .expect("told")
        .expect("running")
        .expect("not missed");
    assert_eq!((busy.user.as_str(), busy.to), ("alice", Status::Busy));

    drop((changes, a, store, direct));
    common::drop_schema(url, schema);
}
