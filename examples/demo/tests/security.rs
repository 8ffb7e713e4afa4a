//! The security suite: the demo as a black box, attacked the way a client
//! it does not trust would (docs/protocol.md, README.md#two-commands). Who may connect and watch what is
//! here; the socket's limits (frame size, flood, garbage) are in
//! `security/limits.rs`, bad HTTP heartbeats in `security/http_bodies.rs`.
//! Each test starts its own demo on the memory store. Figures are printed as `security figure:` lines
//! (`cargo test -p presence-demo --test security -- --nocapture`).

mod common;

#[path = "security/barrage.rs"]
mod barrage;
#[path = "security/client.rs"]
mod client;
#[path = "security/garbage.rs"]
mod garbage;
#[path = "security/http_bodies.rs"]
mod http_bodies;
#[path = "security/limits.rs"]
mod limits;

use std::time::Duration;

use client::{Answer, answer, open, presence_api, refused, round_trip, status_in, upgrade};
use common::{Demo, next_json};
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// `POST /presence/heartbeat` with these headers: the status.
async fn heartbeat_status(demo: &Demo, headers: &[(&str, &str)]) -> u16 {
    let mut request = reqwest::Client::new().post(format!("{}/presence/heartbeat", demo.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("an answer").status().as_u16()
}

/// `GET /api/presence?scope=…` with these headers: the status and body.
async fn snapshot_with(demo: &Demo, scope: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request =
        reqwest::Client::new().get(format!("{}/api/presence?scope={scope}", demo.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test]
async fn no_credentials_or_forged_ones_get_401_everywhere() {
    let demo = Demo::start(&[]);
    let token = demo.login("Alice", "acme").await;
    let gone = demo.login("Gone", "acme").await;
    let logout = reqwest::Client::new()
        .post(format!("{}/api/logout", demo.base))
        .bearer_auth(&gone)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);

    // The last character changed (to one it is not).
    let last = if token.ends_with('0') { "1" } else { "0" };
    let altered = format!("{}{last}", &token[..token.len() - 1]);
    let bearer = |t: &str| format!("Bearer {t}");
    let cookie = |t: &str| format!("presence_demo_login={t}");
    let credentials: Vec<Vec<(&str, String)>> = vec![
        vec![],
        vec![("authorization", bearer("forged"))],
        vec![("authorization", bearer(&altered))],
        vec![("authorization", bearer(&gone))],
        vec![("authorization", "Bearer ".into())],
        vec![("authorization", format!("Basic {token}"))],
        vec![("authorization", token.clone())],
        vec![("cookie", cookie("forged"))],
        vec![("cookie", cookie(&gone))],
        vec![("cookie", format!("other_cookie={token}"))],
    ];
    for headers in &credentials {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let refused = upgrade(&demo, &headers).await.err();
        assert_eq!(refused, Some(401), "upgrade with {headers:?}");
        assert_eq!(
            heartbeat_status(&demo, &headers).await,
            401,
            "heartbeat with {headers:?}"
        );
        let (status, body) = snapshot_with(&demo, "acme", &headers).await;
        assert_eq!(status, 401, "snapshot with {headers:?}");
        assert!(!body.contains("alice"), "no data: {body}");
    }

    // The same requests with real credentials pass.
    let real = bearer(&token);
    let headers = [("authorization", real.as_str())];
    assert!(upgrade(&demo, &headers).await.is_ok());
    assert_eq!(heartbeat_status(&demo, &headers).await, 204);
    assert_eq!(snapshot_with(&demo, "acme", &headers).await.0, 200);
    let real = cookie(&token);
    assert!(upgrade(&demo, &[("cookie", real.as_str())]).await.is_ok());
}

#[tokio::test]
async fn foreign_origins_get_403_own_and_listed_ones_pass() {
    let demo = Demo::start(&[("PRESENCE_ALLOWED_ORIGINS", "https://app.example.com")]);
    let token = demo.login("Alice", "acme").await;
    let port = demo.base.rsplit(':').next().expect("a port").to_owned();
    let bearer = format!("Bearer {token}");
    let cookie = format!("presence_demo_login={token}");
    let foreign = [
        "https://evil.example".to_owned(),
        "null".to_owned(),
        "http://127.0.0.1:1".to_owned(),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}.evil.example"),
        "https://app.example.com.evil.example".to_owned(),
        "https://evil.example/https://app.example.com".to_owned(),
        "http://app.example.com:443".to_owned(),
    ];
    for origin in &foreign {
        for credential in [
            ("authorization", bearer.as_str()),
            ("cookie", cookie.as_str()),
        ] {
            let refused = upgrade(&demo, &[credential, ("origin", origin)])
                .await
                .err();
            assert_eq!(refused, Some(403), "origin {origin} with {}", credential.0);
        }
        // Without credentials the origin is refused first, telling nothing.
        let refused = upgrade(&demo, &[("origin", origin)]).await.err();
        assert_eq!(refused, Some(403), "origin {origin} without credentials");
    }
    let allowed = [
        demo.base.clone(),
        format!("{}/", demo.base),
        "https://app.example.com".to_owned(),
        "HTTPS://App.Example.com/".to_owned(),
    ];
    for origin in &allowed {
        for credential in [
            ("authorization", bearer.as_str()),
            ("cookie", cookie.as_str()),
        ] {
            let mut socket = upgrade(&demo, &[credential, ("origin", origin)])
                .await
                .unwrap_or_else(|status| panic!("origin {origin} refused with {status}"));
            assert_eq!(next_json(&mut socket).await["type"], "hello", "{origin}");
        }
    }
}

/// `POST path` with these headers and body (form or JSON), redirects not
/// followed: the status and whether it set a cookie.
async fn post_with(
    demo: &Demo,
    path: &str,
    headers: &[(&str, &str)],
    body: &[(&str, &str)],
    json: bool,
) -> (u16, bool) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let mut request = client.post(format!("{}{path}", demo.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body: std::collections::HashMap<&str, &str> = body.iter().copied().collect();
    request = if json {
        request.json(&body)
    } else {
        request.form(&body)
    };
    let response = request.send().await.expect("an answer");
    let sets_cookie = response.headers().contains_key("set-cookie");
    (response.status().as_u16(), sets_cookie)
}

#[tokio::test]
async fn foreign_pages_cannot_log_a_visitor_in_or_out() {
    let demo = Demo::start(&[]);
    let token = demo.login("Alice", "acme").await;
    let mut socket = demo.connect(&token).await;
    for expected in ["hello", "snapshot"] {
        assert_eq!(next_json(&mut socket).await["type"], expected);
    }
    let cookie = format!("presence_demo_login={token}");
    let bearer = format!("Bearer {token}");
    let evil = ("origin", "https://evil.example");
    let credentials = [("username", "alice"), ("org", "acme")];

    let refused = [
        post_with(&demo, "/logout", &[("cookie", &cookie), evil], &[], false).await,
        post_with(
            &demo,
            "/api/logout",
            &[("authorization", &bearer), evil],
            &[],
            true,
        )
        .await,
        post_with(&demo, "/login", &[evil], &credentials, false).await,
        post_with(&demo, "/api/login", &[evil], &credentials, true).await,
    ];
    assert_eq!(refused, [(403, false); 4]);
    // Alice is still signed in and her socket still open.
    let headers = [("authorization", bearer.as_str())];
    assert_eq!(heartbeat_status(&demo, &headers).await, 204);
    socket
        .send(Message::Text(r#"{"type":"heartbeat"}"#.into()))
        .await
        .expect("send");
    assert_eq!(next_json(&mut socket).await["type"], "pong");

    // Her own page logs her out.
    let own = ("origin", demo.base.as_str());
    let (status, _) = post_with(&demo, "/logout", &[("cookie", &cookie), own], &[], false).await;
    assert_eq!(status, 303);
    assert_eq!(heartbeat_status(&demo, &headers).await, 401);
    let (status, sets_cookie) = post_with(&demo, "/login", &[own], &credentials, false).await;
    assert_eq!((status, sets_cookie), (303, true));
}

#[tokio::test]
async fn one_org_never_sees_another() {
    let demo = Demo::start(&[]);
    let alice = demo.login("Alice", "acme").await;
    let boris = demo.login("Boris", "globex").await;
    let mut watcher = open(&demo, &alice).await;

    for attempt in [
        r#"{"type":"subscribe","scope":"globex"}"#,
        r#"{"type":"subscribe","scope":"globex","user_ids":["boris"]}"#,
        r#"{"type":"subscribe","scope":"GLOBEX"}"#,
        r#"{"type":"subscribe","scope":"globex ","user_ids":["boris"]}"#,
    ] {
        assert_eq!(
            refused(&mut watcher, attempt).await,
            "forbidden_scope",
            "{attempt}"
        );
    }
    // Naming another org's user in one's own scope shows them as a stranger.
    watcher
        .send(Message::text(
            r#"{"type":"subscribe","scope":"acme","user_ids":["boris","nobody-at-all"]}"#,
        ))
        .await
        .expect("sent");
    let Answer::Frame(snapshot) = answer(&mut watcher).await else {
        panic!("expected a snapshot");
    };
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    let entry = |user: &str| -> Value {
        let mut found = snapshot["users"]
            .as_array()
            .and_then(|users| users.iter().find(|u| u["user_id"] == user))
            .cloned()
            .unwrap_or_else(|| panic!("{user} in {snapshot}"));
        found["user_id"] = Value::Null;
        found
    };
    assert_eq!(
        entry("boris"),
        entry("nobody-at-all"),
        "boris is ONLINE in globex"
    );
    assert_eq!(entry("boris")["status"], "OFFLINE");

    // Boris changes status every way he can; Alice hears nothing of it.
    let mut boris_socket = open(&demo, &boris).await;
    for status in ["BUSY", "AWAY", "INVISIBLE", "ONLINE"] {
        boris_socket
            .send(Message::text(format!(
                r#"{{"type":"status_change","status":"{status}"}}"#
            )))
            .await
            .expect("sent");
    }
    // Boris sees his own changes, so they have been published.
    let mut seen = 0;
    while seen < 4 {
        seen += usize::from(next_json(&mut boris_socket).await["type"] == "presence");
    }
    let logout = reqwest::Client::new()
        .post(format!("{}/api/logout", demo.base))
        .bearer_auth(&boris)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    // Whatever reached Alice by now, she reads before her pong.
    let mut heard = Vec::new();
    tokio::time::sleep(Duration::from_millis(200)).await;
    watcher
        .send(Message::text(r#"{"type":"heartbeat"}"#))
        .await
        .expect("sent");
    loop {
        let frame = next_json(&mut watcher).await;
        if frame["type"] == "pong" {
            break;
        }
        heard.push(frame);
    }
    let leaked: Vec<&Value> = heard
        .iter()
        .filter(|f| f.to_string().contains("boris") || f.to_string().contains("globex"))
        .collect();
    assert!(leaked.is_empty(), "alice heard {leaked:?}");

    let (status, body) = presence_api(&demo, &alice, "scope=globex").await;
    assert_eq!((status, body.contains("boris")), (403, false), "{body}");
    let (status, body) = presence_api(&demo, &alice, "scope=globex&user_ids=boris").await;
    assert_eq!((status, body.contains("boris")), (403, false), "{body}");
    let stranger = status_in(&demo, &alice, "acme", "boris").await;
    assert_eq!(stranger["status"], "OFFLINE", "{stranger}");
    assert_eq!(stranger["last_seen"], Value::Null, "{stranger}");
}

#[tokio::test]
async fn status_change_moves_only_the_sender() {
    let demo = Demo::start(&[]);
    let alice = demo.login("Alice", "acme").await;
    let carol = demo.login("Carol", "acme").await;
    let mut carol_socket = open(&demo, &carol).await;
    let mut alice_socket = open(&demo, &alice).await;
    // Both are ONLINE since their logins: opening sockets changed no status.

    for (abuse, code) in [
        (
            r#"{"type":"status_change","status":"BUSY","user_id":"carol"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"status_change","status":"BUSY","user":"carol"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"status_change","status":"AWAY","scope":"acme","user_id":"carol"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"status_change","status":"INVISIBLE","session_id":"x","login":"y"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"status_change","status":"OFFLINE","user_id":"carol"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"status_change","status":"OFFLINE"}"#,
            "unknown_status",
        ),
        (
            r#"{"type":"status_change","status":"BUSY","until":"1999-01-01T00:00:00Z"}"#,
            "bad_until",
        ),
    ] {
        assert_eq!(refused(&mut alice_socket, abuse).await, code, "{abuse}");
    }
    let hijack = reqwest::Client::new()
        .post(format!("{}/presence/heartbeat", demo.base))
        .bearer_auth(&alice)
        .body(r#"{"activity":true,"user_id":"carol"}"#)
        .send()
        .await
        .expect("an answer");
    assert_eq!(hijack.status(), 400);

    // Nothing changed: neither Carol nor Alice herself.
    assert_eq!(
        status_in(&demo, &alice, "acme", "carol").await["status"],
        "ONLINE"
    );
    assert_eq!(
        status_in(&demo, &carol, "acme", "alice").await["status"],
        "ONLINE"
    );
    // Alice's own change works, and is the first change Carol hears of
    // but the devices the two sockets showed (an update: still ONLINE).
    alice_socket
        .send(Message::text(r#"{"type":"status_change","status":"BUSY"}"#))
        .await
        .expect("sent");
    let event = loop {
        let event = next_json(&mut carol_socket).await;
        if event["status"] != "ONLINE" || event["devices"]["web"] != "ONLINE" {
            break event;
        }
    };
    assert_eq!(
        (&event["type"], &event["user_id"], &event["status"]),
        (&"presence".into(), &"alice".into(), &"BUSY".into()),
        "{event}"
    );
    assert_eq!(
        status_in(&demo, &alice, "acme", "carol").await["status"],
        "ONLINE"
    );
    round_trip(&mut carol_socket).await;
}
