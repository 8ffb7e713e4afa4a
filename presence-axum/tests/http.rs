//! The HTTP side: the activity layer, the HTTP heartbeat, the snapshot
//! route, the JavaScript client and its TypeScript definitions, and the
//! login helper.

mod common;

use std::time::Duration;

use common::{Server, change, ev};
use presence_axum::Identity;
use presence_core::Status;
use presence_store_tests::helpers::{status_becomes, status_of};
use serde_json::json;

#[tokio::test]
async fn browsing_plain_pages_keeps_a_user_online_without_a_socket() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let alice = server.token("alice", "acme");
    for _ in 0..5 {
        let page = server
            .http
            .get(server.url("/"))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
    }
    // The activity layer marks in the background.
    status_becomes(
        &server.presence,
        "alice",
        Status::Online,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    // A page every 20 s for 3 minutes: ONLINE throughout, one event in all.
    for _ in 0..9 {
        server.advance(20).await;
        bob.stay_active().await;
        server
            .http
            .get(server.url("/"))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("page");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    bob.quiet(200).await;
    // She stops browsing: the HTTP session lapses, then the linger ends.
    server.advance(20).await;
    bob.stay_active().await;
    server.advance(15).await;
    assert_eq!(change(&bob.next().await), ev("alice", "OFFLINE", 2));

    let stranger = server.http.get(server.url("/")).send().await.expect("page");
    assert_eq!(
        stranger.status(),
        200,
        "unauthenticated pages are served as before"
    );
}

#[tokio::test]
async fn the_http_heartbeat_keeps_a_socketless_client_live_but_is_not_activity() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let alice = server.token("alice", "acme");
    let beat = |body: &'static str| {
        server
            .http
            .post(server.url("/presence/heartbeat"))
            .bearer_auth(&alice)
            .header("content-type", "text/plain;charset=UTF-8") // as sendBeacon sends it
            .body(body)
            .send()
    };
    assert_eq!(beat("").await.expect("beat").status(), 204);
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    for _ in 0..11 {
        server.advance(10).await;
        bob.stay_active().await;
        assert_eq!(beat("").await.expect("beat").status(), 204);
    }
    // 120 s of heartbeats and no activity: AWAY (away_after is 120 s).
    server.advance(10).await;
    assert_eq!(change(&bob.next().await), ev("alice", "AWAY", 2));
    assert_eq!(
        beat(r#"{"activity":true}"#).await.expect("beat").status(),
        204
    );
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 3));

    let too_big = server
        .http
        .post(server.url("/presence/heartbeat"))
        .bearer_auth(&alice)
        .body("x".repeat(2048))
        .send()
        .await
        .expect("beat");
    assert_eq!(too_big.status(), 413);
    assert_eq!(beat("{nope").await.expect("beat").status(), 400);
    assert_eq!(
        beat(r#"{"activity":"yes"}"#).await.expect("beat").status(),
        400
    );
    let anonymous = server
        .http
        .post(server.url("/presence/heartbeat"))
        .send()
        .await
        .expect("beat");
    assert_eq!(anonymous.status(), 401);
    bob.quiet(200).await;
}

#[tokio::test]
async fn the_snapshot_route_answers_watchable_scopes_only() {
    let server = Server::start().await;
    let alice = server.token("alice", "acme");
    let mut socket = server.connect(&alice).await;
    socket.handshake().await;
    let get = |query: &str, token: Option<&str>| {
        let mut request = server
            .http
            .get(server.url(&format!("/presence/snapshot{query}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let response = get("?scope=acme", Some(&alice)).await.expect("snapshot");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["type"], "snapshot");
    assert_eq!(body["scope"], "acme");
    assert_eq!(body["users"][0]["user_id"], "alice");
    assert_eq!(body["users"][0]["status"], "ONLINE");

    let response = get("?scope=acme&user_ids=alice,zed", Some(&alice))
        .await
        .expect("snapshot");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body["users"][1],
        json!({"user_id": "zed", "status": "OFFLINE", "last_seen": null, "v": 0})
    );

    let response = get("?scope=globex", Some(&alice)).await.expect("snapshot");
    assert_eq!(response.status(), 403);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "forbidden_scope");
    assert!(body.get("users").is_none(), "no data");
    assert_eq!(
        get("?scope=acme", None).await.expect("snapshot").status(),
        401
    );
    assert_eq!(get("", Some(&alice)).await.expect("snapshot").status(), 400);
}

/// The snapshot route refuses what a `subscribe` frame refuses, with the
/// same error: too many users named, or a name too long. Never a silently
/// shortened answer.
#[tokio::test]
async fn the_snapshot_route_refuses_oversized_queries_like_the_socket() {
    let server = Server::start().await;
    let alice = server.token("alice", "acme");
    let too_many: Vec<String> = (0..257).map(|n| format!("u{n}")).collect();
    let long = "x".repeat(257);
    for query in [
        format!("?scope=acme&user_ids={}", too_many.join(",")),
        format!("?scope=acme&user_ids=alice,{long}"),
        format!("?scope={long}"),
    ] {
        let response = server
            .http
            .get(server.url(&format!("/presence/snapshot{query}")))
            .bearer_auth(&alice)
            .send()
            .await
            .expect("snapshot");
        assert_eq!(response.status(), 400, "{}", &query[..40]);
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["code"], "invalid_message");
        assert!(body.get("users").is_none(), "no data");
    }
    let most: Vec<String> = (0..256).map(|n| format!("u{n}")).collect();
    let response = server
        .http
        .get(server.url(&format!(
            "/presence/snapshot?scope=acme&user_ids={}",
            most.join(",")
        )))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("snapshot");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["users"].as_array().map(Vec::len), Some(256));
}

#[tokio::test]
async fn the_client_is_served_as_cacheable_javascript_that_parses() {
    let server = Server::start().await;
    let response = server
        .http
        .get(server.url("/presence/client.js"))
        .send()
        .await
        .expect("client");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("max-age")
    );
    let etag = response.headers()["etag"].clone();
    let body = response.text().await.expect("body");
    assert_eq!(body, presence_axum::CLIENT_JS);

    let again = server
        .http
        .get(server.url("/presence/client.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("client");
    assert_eq!(again.status(), 304);

    let file = std::env::temp_dir().join(format!("presence-client-{}.js", std::process::id()));
    std::fs::write(&file, &body).expect("write");
    let check = std::process::Command::new("node")
        .arg("--check")
        .arg(&file)
        .output()
        .expect("node is installed (.ci/run installs it)");
    let _ = std::fs::remove_file(&file);
    assert!(
        check.status.success(),
        "the client does not parse: {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn the_type_definitions_are_served_beside_the_client_like_it() {
    let server = Server::start().await;
    let response = server
        .http
        .get(server.url("/presence/presence.d.ts"))
        .send()
        .await
        .expect("definitions");
    assert_eq!(response.status(), 200, "no login needed, as for the client");
    assert_eq!(
        response.headers()["content-type"],
        "application/typescript; charset=utf-8"
    );
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=3600, must-revalidate"
    );
    let etag = response.headers()["etag"].clone();
    let body = response.text().await.expect("body");
    assert_eq!(body, presence_axum::CLIENT_DTS);
    assert!(body.contains("interface Client"), "{body}");

    let client = server
        .http
        .get(server.url("/presence/client.js"))
        .send()
        .await
        .expect("client");
    assert_eq!(
        client.headers()["cache-control"],
        "public, max-age=3600, must-revalidate",
        "the same caching as the client"
    );
    assert_ne!(client.headers()["etag"], etag, "each file has its own tag");

    let again = server
        .http
        .get(server.url("/presence/presence.d.ts"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("definitions");
    assert_eq!(again.status(), 304);

    // A client moved elsewhere takes its definitions along.
    let routes = presence_axum::PresenceRoutes::<common::BearerUser>::new(server.presence.clone())
        .client_path("/static/js/presence.js");
    let app = routes.router().with_state(common::AppState {
        tokens: server.tokens.clone(),
        presence: server.presence.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    for (path, status) in [
        ("/static/js/presence.js", 200),
        ("/static/js/presence.d.ts", 200),
        ("/presence/presence.d.ts", 404),
    ] {
        let response = server
            .http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .expect("moved client");
        assert_eq!(response.status(), status, "{path}");
    }
}

#[tokio::test]
async fn login_shows_the_user_online_at_once() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let identity = Identity::new("alice", "fresh-login").in_scope("acme");
    presence_axum::login(&server.presence, &identity)
        .await
        .expect("login");
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    presence_axum::logout(&server.presence, &identity)
        .await
        .expect("logout");
    assert_eq!(change(&bob.next().await), ev("alice", "OFFLINE", 2));
}

#[tokio::test]
async fn a_page_of_another_site_cannot_use_the_http_routes() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let alice = server.token("alice", "acme");
    let beat = |origin: &'static str| {
        server
            .http
            .post(server.url("/presence/heartbeat"))
            .bearer_auth(&alice)
            .header("origin", origin)
            .body(r#"{"activity":true}"#)
            .send()
    };
    let refused = beat("https://evil.example").await.expect("beat");
    assert_eq!(refused.status(), 403);
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["code"], "forbidden_origin");
    bob.quiet(200).await;
    assert_eq!(status_of(&server.presence, "alice").await, Status::Offline);

    let snapshot = server
        .http
        .get(server.url("/presence/snapshot?scope=acme"))
        .bearer_auth(&alice)
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("snapshot");
    assert_eq!(snapshot.status(), 403);
    let body: serde_json::Value = snapshot.json().await.expect("json");
    assert!(body.get("users").is_none(), "no data");

    // An origin the app lists, like its own pages, may.
    let allowed = beat("https://app.example.com").await.expect("beat");
    assert_eq!(allowed.status(), 204);
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
}

/// A host that cannot verify a login right now (its session store is down)
/// rejects with 503: presence passes that on instead of a 401, on the
/// socket's URL and the HTTP routes alike, so the client retries rather
/// than taking itself for signed out. An unknown login is still a 401.
#[tokio::test]
async fn a_host_that_cannot_verify_a_login_gets_its_503_passed_on() {
    let server = Server::start().await;
    for (token, expected) in [(common::UNVERIFIABLE, 503), ("nobody", 401)] {
        let socket = server
            .http
            .get(server.url("/ws/presence"))
            .bearer_auth(token)
            .send()
            .await
            .expect("probe");
        assert_eq!(socket.status(), expected, "the socket's URL for {token}");
        let beat = server
            .http
            .post(server.url("/presence/heartbeat"))
            .bearer_auth(token)
            .send()
            .await
            .expect("beat");
        assert_eq!(beat.status(), expected, "the heartbeat for {token}");
        let snapshot = server
            .http
            .get(server.url("/presence/snapshot?scope=acme"))
            .bearer_auth(token)
            .send()
            .await
            .expect("snapshot");
        assert_eq!(snapshot.status(), expected, "the snapshot for {token}");
        let body: serde_json::Value = snapshot.json().await.expect("a JSON error");
        let code = if expected == 503 {
            "unavailable"
        } else {
            "unauthenticated"
        };
        assert_eq!(body["code"], code);
    }
}

/// `Admitted` on a route of the host's own: the same refusals as presence's
/// routes, and only the server's own origin, as the host gave its route no
/// `AllowedOrigins`.
#[tokio::test]
async fn a_host_route_behind_admitted_is_refused_like_the_presence_routes() {
    let server = Server::start().await;
    let alice = server.token("alice", "acme");
    let me = |token: &str, origin: Option<&str>| {
        let mut request = server.http.get(server.url("/me")).bearer_auth(token);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let answer = me(&alice, None).await.expect("me");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("text"), "alice");
    let own_origin = format!("http://{}", server.addr);
    assert_eq!(
        me(&alice, Some(&own_origin)).await.expect("me").status(),
        200
    );
    for (token, origin, status, code) in [
        ("nobody", None, 401, "unauthenticated"),
        (common::UNVERIFIABLE, None, 503, "unavailable"),
        (
            alice.as_str(),
            Some("https://evil.example"),
            403,
            "forbidden_origin",
        ),
        // Allowed on presence's routes, not on this one.
        (
            alice.as_str(),
            Some("https://app.example.com"),
            403,
            "forbidden_origin",
        ),
    ] {
        let refused = me(token, origin).await.expect("me");
        assert_eq!(refused.status(), status, "{token} from {origin:?}");
        let body: serde_json::Value = refused.json().await.expect("a JSON error");
        assert_eq!(body["code"], code, "{token} from {origin:?}");
    }
}

/// `GET /presence/members?{query}` as `token`: the status and the JSON
/// body.
async fn members(server: &Server, token: &str, query: &str) -> (u16, serde_json::Value) {
    let response = server
        .http
        .get(server.url(&format!("/presence/members{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("members");
    let status = response.status().as_u16();
    if status == 200 {
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(response.headers()["content-type"], "application/json");
    }
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn the_members_route_walks_a_scope_in_pages_in_order() {
    let server = Server::start().await;
    let mut sessions = Vec::new();
    // Opened out of order; listed by user id.
    for n in (0..25).rev() {
        let spec =
            presence_core::SessionSpec::new(format!("u{n:02}"), format!("l{n}")).scope("lobby");
        sessions.push(server.presence.open_session(spec).await.expect("open"));
    }
    let hidden = presence_core::SessionSpec::new("u99", "l99").scope("lobby");
    sessions.push(server.presence.open_session(hidden).await.expect("open"));
    let u99 = presence_core::UserId::from("u99");
    server
        .presence
        .set_status(&u99, presence_core::RequestedStatus::Invisible, None)
        .await
        .expect("invisible");
    let meeting =
        presence_core::CustomStatus::new(Some("In a meeting".into()), Some("📅".into()), None)
            .expect("custom");
    server
        .presence
        .set_custom_status(&"u07".into(), Some(meeting))
        .await
        .expect("custom");
    let bob = server.token("bob", "acme");

    let (mut listed, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let query = match &cursor {
            Some(cursor) => format!("?scope=lobby&limit=10&cursor={cursor}"),
            None => "?scope=lobby&limit=10".to_owned(),
        };
        let (status, page) = members(&server, &bob, &query).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let entries = page["members"].as_array().expect("members");
        assert!(entries.len() <= 10);
        for entry in entries {
            let user = entry["user_id"].as_str().expect("user_id").to_owned();
            if user == "u07" {
                assert_eq!(
                    entry["custom"],
                    json!({"text": "In a meeting", "emoji": "📅"}),
                    "as in a snapshot"
                );
                assert_eq!(entry["v"], 2);
            }
            assert_eq!(entry["status"], "ONLINE");
            listed.push(user);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert_eq!(page["next_cursor"], json!(null));
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|n| format!("u{n:02}")).collect();
    assert_eq!(
        listed, expected,
        "each member once, in order; u99 (invisible) never"
    );

    // The default limit is 100; an empty cursor is the first page; other
    // pairs are ignored.
    let (status, page) = members(&server, &bob, "?scope=lobby&cursor=&token=x&sort=desc").await;
    assert_eq!(status, 200);
    assert_eq!(page["members"].as_array().map(Vec::len), Some(25));
    assert_eq!(page["next_cursor"], json!(null));
    // A page of one, then the cursor still reads after that member.
    let (_, first) = members(&server, &bob, "?scope=lobby&limit=1").await;
    assert_eq!(first["members"][0]["user_id"], "u00");
    let next = first["next_cursor"].as_str().expect("a cursor");
    let (_, second) = members(
        &server,
        &bob,
        &format!("?scope=lobby&limit=1000&cursor={next}"),
    )
    .await;
    assert_eq!(second["members"][0]["user_id"], "u01");
    assert_eq!(second["members"].as_array().map(Vec::len), Some(24));
    drop(sessions);
}

#[tokio::test]
async fn the_members_route_refuses_bad_limits_cursors_and_scopes_with_stable_codes() {
    let server = Server::start().await;
    let spec = presence_core::SessionSpec::new("u1", "l1").scope("lobby");
    let _session = server.presence.open_session(spec).await.expect("open");
    let bob = server.token("bob", "acme");
    for (query, status, code) in [
        ("?scope=lobby&limit=0", 400, "bad_limit"),
        ("?scope=lobby&limit=1001", 400, "bad_limit"),
        ("?scope=lobby&limit=1000000", 400, "bad_limit"),
        (
            "?scope=lobby&limit=99999999999999999999999",
            400,
            "bad_limit",
        ),
        ("?scope=lobby&limit=-1", 400, "bad_limit"),
        ("?scope=lobby&limit=ten", 400, "bad_limit"),
        ("?scope=lobby&limit=", 400, "bad_limit"),
        ("?scope=lobby&cursor=garbage!!", 400, "bad_cursor"),
        ("?scope=lobby&cursor=bTE6", 400, "bad_cursor"),
        ("?scope=lobby&cursor=YWxpY2U", 400, "bad_cursor"),
        ("?scope=lobby&cursor=%00%FF", 400, "bad_cursor"),
        ("", 400, "invalid_message"),
        ("?limit=10", 400, "invalid_message"),
        ("?scope=", 400, "invalid_message"),
        ("?scope=globex", 403, "forbidden_scope"),
        ("?scope=globex&cursor=garbage", 403, "forbidden_scope"),
    ] {
        let (got, body) = members(&server, &bob, query).await;
        assert_eq!(
            (got, body["code"].as_str()),
            (status, Some(code)),
            "{query}: {body}"
        );
        assert!(body.get("members").is_none(), "no data for {query}");
    }
    let response = server
        .http
        .get(server.url("/presence/members?scope=lobby"))
        .send()
        .await
        .expect("members");
    assert_eq!(response.status(), 401);
    let (status, page) = members(&server, &bob, "?scope=lobby").await;
    assert_eq!(status, 200, "still answers: {page}");
    assert_eq!(page["members"][0]["user_id"], "u1");
}
