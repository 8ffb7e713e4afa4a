//! The browser client's handling of batches and of snapshots in parts, run
//! in node against a fake WebSocket (node is installed for the
//! `node --check` test as well).

use std::process::Command;

/// Loads the client (the path is its argument) behind a fake WebSocket;
/// each test's script follows it.
const PRELUDE: &str = r#"
console.debug = () => {};
const sockets = [];
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() {}
}
const root = { WebSocket: FakeSocket, location: { href: 'https://app.example/page' } };
globalThis.window = root;
require(process.argv[2]);
const client = root.Presence.connect({});
const ws = sockets[0];
const receive = (frame) => ws.onmessage({ data: JSON.stringify(frame) });
receive({ type: 'hello', session_id: 's', user_id: 'me', heartbeat_interval_ms: 30000 });
"#;

/// Feeds the client a batch and prints what it shows as JSON.
const BATCHES: &str = r#"
receive({ type: 'snapshot', scope: 'acme', users: [{ user_id: 'bob', status: 'ONLINE', last_seen: null, v: 3 }] });
const seen = [];
client.on('presence', (e) => seen.push(`${e.user_id}:${e.status}:${e.v}`));
receive({ type: 'presence_batch', scope: 'acme', events: [
  { user_id: 'bob', status: 'AWAY', last_seen: '2026-01-01T00:00:00Z', v: 4 },
  { user_id: 'alice', status: 'ONLINE', last_seen: '2026-01-01T00:00:01Z', v: 1 },
  { user_id: 'bob', status: 'BUSY', last_seen: '2026-01-01T00:00:02Z', v: 2 },
  { user_id: 'bob', status: 'OFFLINE', last_seen: '2026-01-01T00:00:03Z', v: 5 },
] });
const plain = root.Presence.connect({ batch: false, url: 'wss://elsewhere.example/ws/presence' });
console.log(JSON.stringify({
  url: ws.url,
  plainUrl: sockets[1].url,
  seen,
  bob: client.get('bob').status,
  alice: client.get('alice').status,
}));
client.close(); plain.close();
"#;

/// Runs the prelude and `script` in node; what the script prints, as JSON.
fn run_client(name: &str, script: &str) -> serde_json::Value {
    run_node(name, &format!("{PRELUDE}{script}"))
}

/// Runs `script` in node with the client's path as its argument; what it
/// prints, as JSON.
fn run_node(name: &str, script: &str) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("presence-client-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let client = dir.join("client.js");
    let harness = dir.join("harness.js");
    std::fs::write(&client, presence_axum::CLIENT_JS).expect("write client");
    std::fs::write(&harness, script).expect("write harness");
    let run = Command::new("node")
        .arg(&harness)
        .arg(&client)
        .output()
        .expect("node is installed (.ci/run installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "the harness failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("the harness prints JSON")
}

#[test]
fn the_client_asks_for_batches_and_applies_them_in_order_dropping_stale_entries() {
    let shown = run_client("batch", BATCHES);
    assert_eq!(shown["url"], "wss://app.example/ws/presence?batch=1");
    assert_eq!(
        shown["plainUrl"], "wss://elsewhere.example/ws/presence",
        "batch: false opts out"
    );
    assert_eq!(
        shown["seen"],
        serde_json::json!(["bob:AWAY:4", "alice:ONLINE:1", "bob:OFFLINE:5"]),
        "in order, bob's v2 (older than the snapshot's v3) dropped"
    );
    assert_eq!(shown["bob"], "OFFLINE");
    assert_eq!(shown["alice"], "ONLINE");
}

/// Feeds the client a snapshot in two parts and prints what it shows after
/// each.
const SNAPSHOT_PARTS: &str = r#"
const user = (user_id, v) => ({ user_id, status: 'ONLINE', last_seen: null, v });
receive({ type: 'snapshot', scope: 'acme', users: [user('carol', 1)] });
const snapshots = [];
client.on('snapshot', (e) => snapshots.push(e.users.map((u) => u.user_id)));
receive({ type: 'snapshot', scope: 'acme', users: [user('alice', 2)], more: true });
const afterFirstPart = { alice: client.get('alice'), carol: client.get('carol').status, snapshots: snapshots.length };
receive({ type: 'snapshot', scope: 'acme', users: [user('bob', 3)] });
console.log(JSON.stringify({
  afterFirstPart,
  alice: client.get('alice').status,
  bob: client.get('bob').status,
  carol: client.get('carol').status,
  snapshots,
}));
client.close();
"#;

#[test]
fn a_snapshot_in_parts_is_applied_whole_when_its_last_part_arrives() {
    let shown = run_client("snapshot-parts", SNAPSHOT_PARTS);
    assert_eq!(
        shown["afterFirstPart"],
        serde_json::json!({"alice": null, "carol": "ONLINE", "snapshots": 0}),
        "nothing applied before the last part (alice unknown yet, carol kept)"
    );
    assert_eq!(shown["alice"], "ONLINE");
    assert_eq!(shown["bob"], "ONLINE");
    assert_eq!(
        shown["carol"], "OFFLINE",
        "listed in neither part: OFFLINE once the snapshot is whole"
    );
    assert_eq!(shown["snapshots"], serde_json::json!([["alice", "bob"]]));
}

/// A reconnect to a store that lost its data: the new epoch in `hello`
/// drops every version the client held, so the fresh snapshot (versions
/// from 1) is taken whole and later events apply.
const NEW_EPOCH: &str = r#"
const user = (user_id, status, v) => ({ user_id, status, last_seen: null, v });
receive({ type: 'snapshot', scope: 'acme', epoch: 'e1', users: [user('bob', 'ONLINE', 9)] });
ws.onclose({ code: 1006, reason: '' });
setTimeout(() => {
  const again = sockets[1];
  const send = (frame) => again.onmessage({ data: JSON.stringify(frame) });
  send({ type: 'hello', session_id: 's2', user_id: 'me', heartbeat_interval_ms: 30000, epoch: 'e2' });
  send({ type: 'snapshot', scope: 'acme', epoch: 'e2', users: [user('bob', 'BUSY', 1)] });
  const afterSnapshot = client.get('bob').status;
  send({ type: 'presence', scope: 'acme', user_id: 'bob', status: 'AWAY', last_seen: null, v: 2 });
  console.log(JSON.stringify({ afterSnapshot, afterEvent: client.get('bob').status, v: client.get('bob').v }));
  client.close();
}, 700);
"#;

#[test]
fn a_new_epoch_drops_the_versions_held_and_the_snapshot_is_taken_whole() {
    let shown = run_client("epoch", NEW_EPOCH);
    assert_eq!(shown["afterSnapshot"], "BUSY", "v1 of a new epoch is news");
    assert_eq!(shown["afterEvent"], "AWAY");
    assert_eq!(shown["v"], 2);
}

/// A user seen in two scopes who leaves one: the client still shows them as
/// they are in the other.
const SCOPE_LEFT: &str = r#"
const user = (user_id, status, v) => ({ user_id, status, last_seen: null, v });
receive({ type: 'snapshot', scope: 'acme', epoch: 'e1', users: [user('bob', 'ONLINE', 1)] });
receive({ type: 'snapshot', scope: 'team-x', epoch: 'e1', users: [] });
receive({ type: 'presence', scope: 'team-x', user_id: 'bob', status: 'ONLINE', last_seen: null, v: 2 });
receive({ type: 'presence', scope: 'team-x', user_id: 'bob', status: 'OFFLINE', last_seen: null, v: 3 });
const afterLeaving = client.get('bob').status;
receive({ type: 'presence', scope: 'acme', user_id: 'bob', status: 'AWAY', last_seen: null, v: 4 });
const away = client.get('bob').status;
receive({ type: 'snapshot', scope: 'team-x', epoch: 'e1', users: [user('bob', 'OFFLINE', 0)] });
console.log(JSON.stringify({ afterLeaving, away, afterSnapshot: client.get('bob').status }));
client.close();
"#;

#[test]
fn a_user_who_leaves_one_scope_shows_as_they_are_in_another() {
    let shown = run_client("scope-left", SCOPE_LEFT);
    assert_eq!(shown["afterLeaving"], "ONLINE", "still in acme");
    assert_eq!(shown["away"], "AWAY");
    assert_eq!(
        shown["afterSnapshot"], "AWAY",
        "not in team-x (v0) says nothing about acme"
    );
}

/// A socket refused before `hello` (its login is unknown after a server
/// restart): the client asks the same URL over HTTP, learns 401, stops
/// reconnecting, tells `unauthorized` and greys every dot it painted (and
/// any the page asks it to paint after).
const UNAUTHORIZED: &str = r#"
console.debug = () => {};
const sockets = [];
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 1; sockets.push(this); }
  send() {}
  close() {}
}
function element(attributes) {
  const el = {
    attributes: { ...attributes },
    classes: new Set(),
    getAttribute(name) { return name in this.attributes ? this.attributes[name] : null; },
    hasAttribute(name) { return name in this.attributes; },
    setAttribute(name, value) { this.attributes[name] = String(value); },
    removeAttribute(name) { delete this.attributes[name]; },
    classList: null,
    closest() { return host; },
    querySelectorAll(selector) { return selector === '.status-dot' ? [dot] : []; },
  };
  el.classList = { add: (c) => el.classes.add(c), remove: (c) => el.classes.delete(c) };
  return el;
}
const host = element({ 'data-user-id': 'bob' });
const dot = element({});
const document = {
  readyState: 'complete',
  hidden: false,
  addEventListener() {},
  removeEventListener() {},
  querySelectorAll(selector) { return selector.startsWith('[data-user-id') ? [host] : []; },
};
const probes = [];
const fetch = (url, init) => { probes.push({ url, credentials: init && init.credentials }); return Promise.resolve({ status: 401 }); };
const root = { WebSocket: FakeSocket, location: { href: 'https://app.example/page' }, fetch };
globalThis.window = root;
require(process.argv[2]);
const client = root.Presence.connect({ document, backoffBaseMs: 10 });
const events = [];
client.on('unauthorized', (e) => events.push(e.status));
// A first connection worked: bob's dot was painted.
sockets[0].onmessage({ data: JSON.stringify({ type: 'hello', session_id: 's', user_id: 'me', heartbeat_interval_ms: 30000, epoch: 'e1' }) });
sockets[0].onmessage({ data: JSON.stringify({ type: 'snapshot', scope: 'acme', epoch: 'e1', users: [{ user_id: 'bob', status: 'ONLINE', last_seen: null, v: 1 }] }) });
const painted = dot.getAttribute('data-status');
// The server restarts (1001), then refuses the next upgrade (no hello).
sockets[0].onclose({ code: 1001, reason: 'server going away' });
setTimeout(() => {
  const refused = sockets.length;
  sockets[sockets.length - 1].onclose({ code: 1006, reason: '' });
  setTimeout(() => {
    const greyed = dot.getAttribute('data-status');
    // The page renders new nodes and asks the client to paint them.
    client.refresh();
    console.log(JSON.stringify({
      painted,
      greyed,
      events,
      probes,
      sockets: sockets.length,
      refused,
      state: client.state,
      dot: dot.getAttribute('data-status'),
      unknownClass: dot.classes.has('status-unknown'),
      title: dot.getAttribute('title'),
    }));
    client.close();
  }, 400);
}, 400);
"#;

#[test]
fn a_refused_socket_stops_reconnecting_and_greys_the_dots() {
    let shown = run_node("unauthorized", UNAUTHORIZED);
    assert_eq!(shown["painted"], "ONLINE");
    assert_eq!(shown["refused"], 2, "one reconnect after the 1001");
    assert_eq!(
        shown["probes"],
        serde_json::json!([{"url": "https://app.example/ws/presence?batch=1", "credentials": "include"}]),
        "the refused socket's URL, asked over HTTP with the cookies the socket sent"
    );
    assert_eq!(shown["events"], serde_json::json!([401]));
    assert_eq!(shown["sockets"], 2, "no reconnect after a 401");
    assert_eq!(shown["state"], "unauthorized");
    assert_eq!(shown["greyed"], "UNKNOWN");
    assert_eq!(
        shown["dot"], "UNKNOWN",
        "a refresh() after the refusal paints no stale status"
    );
    assert_eq!(shown["unknownClass"], true);
    assert!(
        shown["title"]
            .as_str()
            .is_some_and(|t| t.contains("connection")),
        "{}",
        shown["title"]
    );
}
