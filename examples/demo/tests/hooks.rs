//! The demo's webhook (`PRESENCE_WEBHOOK_URL`), end to end: a user who
//! signs out goes OFFLINE, and the demo posts it to a local receiver once;
//! a user still signed in is not posted; the crowd
//! (`PRESENCE_DEMO_CROWD`) makes an organisation a large scope.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::{Demo, next_json};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Received = Arc<Mutex<Vec<Value>>>;

/// A receiver on 127.0.0.1:0; its URL and what it got.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/hooks/presence",
            post(
                |State(got): State<Received>, Json(body): Json<Value>| async move {
                    got.lock().expect("lock").push(body);
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/hooks/presence",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// The next frame of `kind`, skipping others (the hello, snapshots of the
/// scopes watched on connect, presence frames).
async fn next_of(socket: &mut common::Socket, kind: &str) -> Value {
    loop {
        let frame = next_json(socket).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

async fn posts_within(received: &Received, count: usize, within: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = received.lock().expect("lock").clone();
        if got.len() >= count || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_user_going_offline_is_posted_to_the_webhook_once() {
    let (url, received) = receiver().await;
    let demo = Demo::start(&[("PRESENCE_WEBHOOK_URL", url.as_str())]);
    let alice = demo.login("alice", "acme").await;
    let bob = demo.login("bob", "acme").await;
    let mut socket = demo.connect(&alice).await;
    socket
        .send(Message::text(
            json!({"type":"subscribe","scope":"acme"}).to_string(),
        ))
        .await
        .expect("send");
    next_of(&mut socket, "snapshot").await;
    assert!(
        received.lock().expect("lock").is_empty(),
        "nobody went OFFLINE yet"
    );

    // Signing out ends every session of the login at once: OFFLINE.
    let logout = reqwest::Client::new()
        .post(format!("{}/api/logout", demo.base))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    let posts = posts_within(&received, 1, Duration::from_secs(10)).await;
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["event"], "user.offline");
    assert_eq!(posts[0]["user_id"], "alice");
    assert_eq!(posts[0]["status"], "OFFLINE");
    assert!(posts[0]["last_seen"].is_string());
    assert!(posts[0]["v"].as_u64().is_some_and(|v| v >= 2));

    // Nothing more: bob is still signed in, alice went once.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(received.lock().expect("lock").len(), 1);
    drop(bob);
}

#[tokio::test]
async fn the_crowd_makes_an_organisation_a_large_scope() {
    let demo = Demo::start(&[("PRESENCE_DEMO_CROWD", "town:300")]);
    let carol = demo.login("carol", "town").await;
    let mut socket = demo.connect(&carol).await;
    socket
        .send(Message::text(
            json!({"type":"subscribe","scope":"town","counts":true,"user_ids":["carol"]})
                .to_string(),
        ))
        .await
        .expect("send");
    let mut snapshot = next_of(&mut socket, "snapshot").await;
    while snapshot["occupancy"].is_null() {
        // The org's snapshot sent on connect, before the counted one.
        snapshot = next_of(&mut socket, "snapshot").await;
    }
    let occupancy = &snapshot["occupancy"];
    let counted = ["online", "away", "busy"]
        .iter()
        .map(|key| occupancy[key].as_u64().expect("a count"))
        .sum::<u64>();
    assert!(counted >= 300, "the crowd and carol: {occupancy}");
    assert!(occupancy["busy"].as_u64().is_some_and(|busy| busy >= 30));
    let listed: Vec<&str> = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["user_id"].as_str())
        .collect();
    assert_eq!(listed, ["carol"], "only the named user is listed");
}
