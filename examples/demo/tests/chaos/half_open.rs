//! A half-open socket: `hal` upgrades, reads `hello`, then neither reads,
//! writes nor closes (a laptop lid shut, a NAT that forgot the flow). The
//! server must not believe in it: `hal` goes OFFLINE for the watcher after
//! `session_ttl` + linger (+ a sweep), and the server closes the socket
//! with 4000 and lets go of it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{Client, says};
use crate::common::Demo;
use crate::nodes::{HEARTBEAT, LINGER, Node, ORG, SWEEP, thresholds};

const SESSION_TTL: Duration = Duration::from_secs(2);
/// Scheduling slack on a busy 2-core CI machine.
const SLACK: Duration = Duration::from_millis(1500);
/// The server's wait for a close reply that never comes.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// What one run measured, from the moment `hal` fell silent.
#[derive(Debug)]
pub(crate) struct Figures {
    /// Until the watcher saw `hal` OFFLINE.
    pub(crate) offline: Duration,
    /// Until the server gave up the socket (`presence_sockets_open` fell).
    pub(crate) released: Duration,
}

impl Figures {
    pub(crate) fn print(&self) {
        eprintln!(
            "chaos figure: half-open socket (session_ttl {SESSION_TTL:?}, linger {LINGER:?}): \
             OFFLINE after \
             {:?}, socket released after {:?}",
            self.offline, self.released
        );
    }
}

/// Runs the scenario on the memory store: the adapter, not the store, is
/// what must notice.
pub(crate) async fn half_open_socket_is_closed() -> Figures {
    let mut env = thresholds(SESSION_TTL);
    env.push(("PRESENCE_METRICS", "1".into()));
    let mut node = Node::start(&env);
    let demo = &node.demo;
    let wes = demo.login("wes", ORG).await;
    let mut watcher = Client::open(demo, "wes", &wes, HEARTBEAT).await;

    let hal = demo.login("hal", ORG).await;
    let mut silent_socket = connect_raw(demo, &hal).await;
    let hello = tokio::time::timeout(Duration::from_secs(5), silent_socket.next())
        .await
        .expect("hello in time");
    assert!(
        matches!(&hello, Some(Ok(Message::Text(text))) if text.contains("\"hello\"")),
        "{hello:?}"
    );
    let silent = Instant::now();
    watcher
        .wait_for(Duration::from_secs(5), "hal ONLINE", |f| {
            let listed = f["users"]
                .as_array()
                .is_some_and(|users| users.iter().any(|u| u["user_id"] == "hal"));
            says(f, "hal", "ONLINE") || (f["type"] == "snapshot" && listed)
        })
        .await;

    let at = watcher
        .wait_for(SESSION_TTL + LINGER + SWEEP + SLACK, "hal OFFLINE", |f| {
            says(f, "hal", "OFFLINE")
        })
        .await;
    let offline = at - silent;
    assert!(
        offline + Duration::from_millis(200) >= SESSION_TTL,
        "OFFLINE only once the session lapsed, not after {offline:?}"
    );
    let decided = scrape_until(demo, "presence_socket_closes_total{code=\"4000\"}", 1.0).await;
    assert!(decided, "the server closed hal's socket with 4000");
    let released_ok = scrape_until(demo, "presence_sockets_open", 1.0).await;
    assert!(released_ok, "the server let go of hal's socket");
    let released = silent.elapsed();
    assert!(
        released <= SESSION_TTL + LINGER + SWEEP + CLOSE_HANDSHAKE + SLACK,
        "released after {released:?}"
    );

    // What the connection holds now: the close frame (4000), then the end.
    let tcp = silent_socket.get_mut();
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut bytes)).await;
    // A reset is a close too; only a timeout means the server held on.
    assert!(read.is_ok(), "the server closed the TCP connection");
    let close_4000 = [0x88, 0x0F, 0xA0];
    assert!(
        bytes
            .windows(4)
            .any(|w| w[0] == close_4000[0] && w[2..] == close_4000[1..]),
        "a close frame with code 4000 among the last {} bytes",
        bytes.len()
    );
    assert_eq!(watcher.closed(), None, "the watcher stays connected");
    node.assert_alive_and_sane();
    Figures { offline, released }
}

/// A socket over a plain TCP stream the test can later read raw.
async fn connect_raw(
    demo: &Demo,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let address = demo.base.trim_start_matches("http://").to_owned();
    let mut request = format!("ws://{address}/ws/presence")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let tcp = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let (socket, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("upgrade");
    socket
}

/// Scrapes `/metrics` until `metric` reads `value`; whether it did within 10 s.
async fn scrape_until(demo: &Demo, metric: &str, value: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let scrape = reqwest::get(format!("{}/metrics", demo.base))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("text");
        let sample = scrape.lines().find_map(|line| {
            let rest = line.strip_prefix(metric)?.strip_prefix(' ')?;
            rest.trim().parse::<f64>().ok()
        });
        if sample == Some(value) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
