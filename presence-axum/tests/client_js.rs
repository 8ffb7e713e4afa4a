//! The browser client's handling of batches, of snapshots in parts, of
//! users' details (custom status, devices, app state) and of counted
//! scopes, and the frames its methods send, run in node against a fake
//! WebSocket (node is installed for the `node --check` test as well).

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

/// Every new method's frames, as the socket receives them, and what each
/// refuses before sending anything.
const NEW_FRAMES: &str = r#"
const refused = (fn) => { try { fn(); return null; } catch (err) { return `${err.name}: ${err.message}`; } };
client.setStatus('busy', { until: new Date('2030-01-01T10:00:00Z'), text: ' In a meeting ', emoji: '📅' });
client.setStatus('AWAY', '2030-01-01T11:00:00Z');
client.setStatus('ONLINE');
client.setStatus(null, { text: 'Lunch' });
client.setStatus('BUSY', { until: null });
client.setCustomStatus({ text: 'Vacation', emoji: '🏖️', until: new Date('2030-01-02T00:00:00Z') });
client.setCustomStatus({ emoji: ':palm_tree:' });
client.setCustomStatus(null);
client.clearCustomStatus();
client.setState({ in_call: true });
client.setState(null);
client.hideLastSeen(true);
client.hideLastSeen(false);
client.subscribe('hall', { counts: true, userIds: ['bob'] });
client.subscribe('hall-all', { counts: true });
client.subscribe('team', ['carol']);
client.subscribe('plain');
const sentBeforeErrors = ws.sent.length;
const errors = {
  nothing: refused(() => client.setStatus(null, {})),
  unknown: refused(() => client.setStatus('HAPPY', { text: 'x' })),
  text: refused(() => client.setStatus('BUSY', { text: 42 })),
  until: refused(() => client.setCustomStatus({ text: 'x', until: 'soon' })),
  custom: refused(() => client.setCustomStatus('In a meeting')),
  stateArray: refused(() => client.setState([1])),
  stateString: refused(() => client.setState('x')),
  hide: refused(() => client.hideLastSeen('yes')),
  counts: refused(() => client.subscribe('x', { counts: 'yes' })),
  ids: refused(() => client.subscribe('x', { userIds: 'bob' })),
};
console.log(JSON.stringify({ sent: ws.sent, errors, sentByErrors: ws.sent.length - sentBeforeErrors }));
client.close();
"#;

#[test]
fn the_new_methods_send_the_frames_of_the_design_and_refuse_bad_arguments() {
    let shown = run_client("new-frames", NEW_FRAMES);
    assert_eq!(
        shown["sent"],
        serde_json::json!([
            {"type": "status_change", "status": "BUSY", "text": "In a meeting", "emoji": "📅",
             "until": "2030-01-01T10:00:00.000Z"},
            {"type": "status_change", "status": "AWAY", "until": "2030-01-01T11:00:00Z"},
            {"type": "status_change", "status": "ONLINE"},
            {"type": "status_change", "text": "Lunch"},
            {"type": "status_change", "status": "BUSY"},
            {"type": "status_change", "text": "Vacation", "emoji": "🏖️", "until": "2030-01-02T00:00:00.000Z"},
            {"type": "status_change", "text": null, "emoji": ":palm_tree:"},
            {"type": "status_change", "text": null, "emoji": null},
            {"type": "status_change", "text": null, "emoji": null},
            {"type": "set_state", "state": {"in_call": true}},
            {"type": "set_state", "state": null},
            {"type": "privacy", "hide_last_seen": true},
            {"type": "privacy", "hide_last_seen": false},
            {"type": "subscribe", "scope": "hall", "counts": true, "user_ids": ["bob"]},
            {"type": "subscribe", "scope": "hall-all", "counts": true},
            {"type": "subscribe", "scope": "team", "user_ids": ["carol"]},
            {"type": "subscribe", "scope": "plain"},
        ]),
        "the old signatures send what they did; text and emoji only when given"
    );
    assert_eq!(shown["sentByErrors"], 0, "a refused call sends nothing");
    for (call, error) in shown["errors"].as_object().expect("errors") {
        let error = error.as_str().unwrap_or_default();
        assert!(
            error.starts_with("TypeError: Presence:") || error.starts_with("RangeError: Presence:"),
            "{call}: {error}"
        );
    }
}

/// What the client sends after each hello: a status, custom status or
/// privacy asked for while disconnected once (the latest of each), the
/// session's app state after every hello (a new socket is a new session).
const RESENT: &str = r#"
client.subscribe('hall', { counts: true, userIds: ['bob'] });
ws.onclose({ code: 1006, reason: '' });
client.setStatus('BUSY');
client.setCustomStatus({ text: 'Commuting', emoji: '🚆' });
client.setStatus('AWAY');
client.hideLastSeen(true);
client.setState({ in_call: true });
client.setState({ in_call: false, room: 'r1' });
const hello = (socket, id) =>
  socket.onmessage({ data: JSON.stringify({ type: 'hello', session_id: id, user_id: 'me', heartbeat_interval_ms: 30000 }) });
setTimeout(() => {
  hello(sockets[1], 's2');
  const first = sockets[1].sent.slice();
  sockets[1].onclose({ code: 1006, reason: '' });
  setTimeout(() => {
    hello(sockets[2], 's3');
    const second = sockets[2].sent.slice();
    client.setState(null);
    sockets[2].onclose({ code: 1006, reason: '' });
    setTimeout(() => {
      hello(sockets[3], 's4');
      console.log(JSON.stringify({ first, second, cleared: sockets[3].sent }));
      client.close();
    }, 700);
  }, 700);
}, 700);
"#;

#[test]
fn the_state_is_sent_after_every_hello_and_the_user_wide_settings_once() {
    let shown = run_client("resent", RESENT);
    let subscribe = serde_json::json!(
        {"type": "subscribe", "scope": "hall", "counts": true, "user_ids": ["bob"]}
    );
    let state = serde_json::json!({"type": "set_state", "state": {"in_call": false, "room": "r1"}});
    assert_eq!(
        shown["first"],
        serde_json::json!([
            {"type": "status_change", "text": "Commuting", "emoji": "🚆"},
            {"type": "status_change", "status": "AWAY"},
            {"type": "privacy", "hide_last_seen": true},
            state,
            subscribe,
        ]),
        "BUSY superseded by AWAY, the custom status kept; the latest state"
    );
    assert_eq!(
        shown["second"],
        serde_json::json!([state, subscribe]),
        "the status and privacy live on the server; the new session needs the state"
    );
    assert_eq!(
        shown["cleared"],
        serde_json::json!([subscribe]),
        "a cleared state is not sent"
    );
}

/// A scope watched with `counts: true` that grows large, then small, then
/// large again, and a reconnect.
const OCCUPANCY: &str = r#"
const user = (user_id, status, v) => ({ user_id, status, last_seen: null, v });
const counts = [];
const snapshots = [];
client.on('occupancy', (e) => counts.push(`${e.scope}:${e.online}/${e.away}/${e.busy}@${e.v}`));
client.on('snapshot', (e) => snapshots.push({ users: e.users.map((u) => u.user_id), occupancy: e.occupancy }));
const known = () => ['bob', 'carol', 'dave', 'erin'].map((id) => {
  const u = client.get(id);
  return u ? `${id}:${u.status}` : `${id}:-`;
});
receive({ type: 'snapshot', scope: 'acme', users: [user('erin', 'ONLINE', 2)] });
client.subscribe('hall', { counts: true, userIds: ['bob'] });
receive({ type: 'snapshot', scope: 'hall', users: [
  user('bob', 'ONLINE', 1), user('carol', 'AWAY', 4), user('dave', 'BUSY', 2), user('erin', 'ONLINE', 2),
] });
const small = known();
receive({ type: 'occupancy', scope: 'hall', online: 250, away: 3, busy: 1, v: 5 });
const counted = known();
receive({ type: 'presence', scope: 'hall', user_id: 'carol', status: 'ONLINE', last_seen: null, v: 5 });
receive({ type: 'presence', scope: 'hall', user_id: 'bob', status: 'BUSY', last_seen: null, v: 2 });
receive({ type: 'occupancy', scope: 'hall', online: 1, away: 1, busy: 1, v: 4 });
receive({ type: 'occupancy', scope: 'hall', online: 2, away: 2, busy: 2, v: 5 });
receive({ type: 'occupancy', scope: 'hall', online: 251, away: 3, busy: 1, v: 6 });
receive({ type: 'occupancy', scope: 'hall', online: -1, away: 3, busy: 1, v: 7 });
const whileCounted = known();
const last = client.occupancy('hall');
receive({ type: 'snapshot', scope: 'hall', users: [user('bob', 'BUSY', 2), user('carol', 'ONLINE', 5)] });
const back = known();
const afterPlain = client.occupancy('hall');
receive({ type: 'snapshot', scope: 'hall', users: [user('bob', 'BUSY', 2)],
  occupancy: { online: 300, away: 0, busy: 0, v: 9 } });
const countedSnapshot = known();
ws.onclose({ code: 1006, reason: '' });
setTimeout(() => {
  const again = sockets[1];
  const send = (frame) => again.onmessage({ data: JSON.stringify(frame) });
  send({ type: 'hello', session_id: 's2', user_id: 'me', heartbeat_interval_ms: 30000 });
  send({ type: 'occupancy', scope: 'hall', online: 299, away: 1, busy: 0, v: 1 });
  const end = client.occupancy('hall');
  client.unsubscribe('hall');
  console.log(JSON.stringify({
    small, counted, whileCounted, last, back, afterPlain, countedSnapshot, counts, snapshots, end,
    unsubscribed: client.occupancy('hall'),
  }));
  client.close();
}, 700);
"#;

#[test]
fn occupancy_counts_a_large_scope_keeping_only_the_named_users_and_drops_stale_counts() {
    let shown = run_client("occupancy", OCCUPANCY);
    assert_eq!(
        shown["small"],
        serde_json::json!(["bob:ONLINE", "carol:AWAY", "dave:BUSY", "erin:ONLINE"])
    );
    assert_eq!(
        shown["counted"],
        serde_json::json!(["bob:ONLINE", "carol:-", "dave:-", "erin:ONLINE"]),
        "counted: only bob (named) is kept; forgotten, not OFFLINE; erin still shows from acme"
    );
    assert_eq!(
        shown["whileCounted"],
        serde_json::json!(["bob:BUSY", "carol:-", "dave:-", "erin:ONLINE"]),
        "a named user's events apply, another's are dropped"
    );
    assert_eq!(
        shown["counts"],
        serde_json::json!([
            "hall:250/3/1@5",
            "hall:251/3/1@6",
            "hall:300/0/0@9",
            "hall:299/1/0@1",
        ]),
        "v4 and v5 (not newer) and a malformed frame dropped; a new socket counts from the start"
    );
    assert_eq!(
        shown["last"],
        serde_json::json!({"scope": "hall", "online": 251, "away": 3, "busy": 1, "v": 6})
    );
    assert_eq!(
        shown["back"],
        serde_json::json!(["bob:BUSY", "carol:ONLINE", "dave:-", "erin:ONLINE"]),
        "a plain snapshot brings the members back"
    );
    assert_eq!(shown["afterPlain"], serde_json::Value::Null);
    assert_eq!(
        shown["countedSnapshot"],
        serde_json::json!(["bob:BUSY", "carol:-", "dave:-", "erin:ONLINE"]),
        "a snapshot with occupancy counts the scope too"
    );
    assert_eq!(
        shown["snapshots"][3],
        serde_json::json!({"users": ["bob"], "occupancy":
            {"scope": "hall", "online": 300, "away": 0, "busy": 0, "v": 9}})
    );
    assert_eq!(shown["snapshots"][2]["occupancy"], serde_json::Value::Null);
    assert_eq!(shown["end"]["v"], 1);
    assert_eq!(shown["unsubscribed"], serde_json::Value::Null);
}

/// Custom status, devices and app state from snapshots, events and
/// batches: each frame is the whole presence.
const DETAILS: &str = r#"
const seen = [];
client.on('presence', (e) => seen.push({ user: e.user_id, status: e.status, v: e.v, custom: e.custom, devices: e.devices, state: e.state }));
const custom = { text: 'In a meeting', emoji: '📅', until: '2030-01-01T10:00:00Z' };
receive({ type: 'snapshot', scope: 'acme', users: [
  { user_id: 'alice', status: 'BUSY', last_seen: null, v: 3, custom, devices: { web: 'ONLINE', mobile: 'AWAY' }, state: { in_call: true } },
  { user_id: 'bob', status: 'ONLINE', last_seen: '2026-01-01T00:00:00Z', v: 1 },
] });
const fromSnapshot = client.get('alice');
receive({ type: 'presence', scope: 'acme', user_id: 'alice', status: 'BUSY', last_seen: null, v: 4,
  custom: { text: 'Lunch', emoji: '🍔' }, devices: { web: 'ONLINE', mobile: 'AWAY' }, state: { in_call: true } });
receive({ type: 'presence', scope: 'acme', user_id: 'alice', status: 'BUSY', last_seen: null, v: 5, devices: { web: 'ONLINE' } });
const cleared = client.get('alice');
receive({ type: 'presence_batch', scope: 'acme', events: [
  { user_id: 'bob', status: 'AWAY', last_seen: null, v: 2, custom: { text: '', emoji: null },
    devices: { web: 'SLEEPY', desktop: 'AWAY' }, state: [1] },
  { user_id: 'bob', status: 'AWAY', last_seen: null, v: 3, custom: { emoji: ':palm_tree:' }, state: { room: 'r1' } },
] });
const bob = client.get('bob');
bob.state.room = 'edited';
bob.custom.emoji = 'x';
const bobAgain = client.get('bob');
receive({ type: 'presence', scope: 'acme', user_id: 'bob', status: 'OFFLINE', last_seen: '2026-01-01T01:00:00Z', v: 4,
  custom: { text: 'leak' }, devices: { web: 'ONLINE' } });
receive({ type: 'presence', scope: 'acme', user_id: 'alice', status: 'BUSY', last_seen: null, v: 4, custom: { text: 'old' } });
console.log(JSON.stringify({ fromSnapshot, seen, cleared, bob, bobAgain, offline: client.get('bob'), alice: client.get('alice') }));
client.close();
"#;

#[test]
fn custom_status_devices_and_state_are_kept_and_a_frame_without_them_clears_them() {
    let shown = run_client("details", DETAILS);
    assert_eq!(
        shown["fromSnapshot"],
        serde_json::json!({
            "user_id": "alice", "status": "BUSY", "last_seen": null, "v": 3,
            "custom": {"text": "In a meeting", "emoji": "📅", "until": "2030-01-01T10:00:00.000Z"},
            "devices": {"web": "ONLINE", "mobile": "AWAY"},
            "state": {"in_call": true},
        })
    );
    let seen = shown["seen"].as_array().expect("events");
    let summary: Vec<String> = seen
        .iter()
        .map(|e| format!("{}:{}:{}", e["user"], e["status"], e["v"]))
        .collect();
    assert_eq!(
        summary,
        [
            r#""alice":"BUSY":3"#,
            r#""bob":"ONLINE":1"#,
            r#""alice":"BUSY":4"#,
            r#""alice":"BUSY":5"#,
            r#""bob":"AWAY":2"#,
            r#""bob":"AWAY":3"#,
            r#""bob":"OFFLINE":4"#,
        ],
        "a change of the text alone is one event; the stale v4 of alice none"
    );
    assert_eq!(
        seen[2]["custom"],
        serde_json::json!({"text": "Lunch", "emoji": "🍔", "until": null})
    );
    assert_eq!(
        shown["cleared"],
        serde_json::json!({
            "user_id": "alice", "status": "BUSY", "last_seen": null, "v": 5,
            "custom": null, "devices": {"web": "ONLINE"}, "state": null,
        }),
        "absent from the frame: cleared"
    );
    assert_eq!(
        (&seen[4]["custom"], &seen[4]["devices"], &seen[4]["state"]),
        (
            &serde_json::Value::Null,
            &serde_json::json!({"desktop": "AWAY"}),
            &serde_json::Value::Null
        ),
        "malformed details are dropped, not shown"
    );
    assert_eq!(
        (&shown["bobAgain"]["custom"], &shown["bobAgain"]["state"]),
        (
            &serde_json::json!({"text": null, "emoji": ":palm_tree:", "until": null}),
            &serde_json::json!({"room": "r1"})
        ),
        "get() hands out copies"
    );
    assert_eq!(
        shown["offline"],
        serde_json::json!({
            "user_id": "bob", "status": "OFFLINE", "last_seen": "2026-01-01T01:00:00.000Z", "v": 4,
            "custom": null, "devices": null, "state": null,
        }),
        "OFFLINE shows no details"
    );
    assert_eq!(shown["alice"]["v"], 5);
}

/// The members of `interface <name> {` in presence.d.ts: each line's
/// leading identifier (after `readonly`), methods and properties alike.
fn declared(interface: &str) -> std::collections::BTreeSet<String> {
    let dts = include_str!("../assets/presence.d.ts");
    let start = dts
        .find(&format!("  interface {interface} {{\n"))
        .unwrap_or_else(|| panic!("presence.d.ts has no interface {interface}"));
    let body = &dts[start..];
    let end = body.find("\n  }\n").expect("the interface ends");
    body[..end]
        .lines()
        .skip(1)
        .map(|line| line.trim().trim_start_matches("readonly "))
        .filter_map(|line| {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let rest = &line[name.len()..];
            (!name.is_empty() && (rest.starts_with(['(', '<', ':']) || rest.starts_with("?:")))
                .then_some(name)
        })
        .collect()
}

/// The events presence.js's `on` accepts: its `EVENTS` list.
fn client_events() -> std::collections::BTreeSet<String> {
    let js = presence_axum::CLIENT_JS;
    let start = js.find("const EVENTS = [").expect("EVENTS") + "const EVENTS = ".len();
    let end = start + js[start..].find(']').expect("the list ends") + 1;
    serde_json::from_str::<Vec<String>>(&js[start..end].replace('\'', "\""))
        .expect("a list of names")
        .into_iter()
        .collect()
}

/// What the client defines: its public methods and getters, whether `on`
/// takes the events of its EVENTS list (and refuses another), and what
/// `Presence` holds.
const SURFACE: &str = r#"
const proto = Object.getPrototypeOf(client);
const members = Object.getOwnPropertyNames(proto).filter((name) => name !== 'constructor' && !name.startsWith('_'));
const accepted = (name) => { try { client.on(name, () => {}); return true; } catch (_) { return false; } };
console.log(JSON.stringify({
  members: members.sort(),
  events: JSON.parse(process.env.EVENTS).every(accepted),
  bogus: accepted('presence:change'),
  statics: Object.keys(root.Presence).sort(),
}));
client.close();
"#;

#[test]
fn the_type_definitions_name_the_whole_client_api_and_nothing_else() {
    let events = client_events();
    let dir = std::env::temp_dir().join(format!("presence-client-surface-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let client = dir.join("client.js");
    let harness = dir.join("harness.js");
    std::fs::write(&client, presence_axum::CLIENT_JS).expect("write client");
    std::fs::write(&harness, format!("{PRELUDE}{SURFACE}")).expect("write harness");
    let run = Command::new("node")
        .arg(&harness)
        .arg(&client)
        .env("EVENTS", serde_json::to_string(&events).expect("json"))
        .output()
        .expect("node is installed (.ci/run installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "the harness failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    let names = |key: &str| -> Vec<String> {
        shown[key]
            .as_array()
            .expect(key)
            .iter()
            .map(|n| n.as_str().expect("a name").to_owned())
            .collect()
    };
    assert_eq!(
        names("members"),
        declared("Client").into_iter().collect::<Vec<_>>(),
        "interface Client in presence.d.ts and the client's methods and getters"
    );
    assert_eq!(
        declared("EventMap"),
        events,
        "interface EventMap in presence.d.ts and EVENTS in presence.js"
    );
    assert_eq!(shown["events"], true, "on() takes every event of EVENTS");
    assert_eq!(shown["bogus"], false, "on() refuses an unknown event");
    assert_eq!(
        names("statics"),
        declared("Static").into_iter().collect::<Vec<_>>()
    );
}
