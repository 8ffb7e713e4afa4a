// Type-checked with presence-axum/assets/presence.d.ts by .ci/typecheck
// (tsc --noEmit --strict): every call of the client's API, and what the
// definitions must refuse (each @ts-expect-error line must be an error).
/// <reference path="../../assets/presence.d.ts" />

const client: Presence.Client = Presence.connect({
  path: '/ws/presence',
  activityThrottleMs: 15000,
  batch: true,
  document,
  WebSocket,
  fetch,
});
const started: Presence.Client | undefined = window.presence;
const connection: Presence.ConnectionState = client.state;
const me: string | null = client.userId ?? client.sessionId;

client
  .on('presence', (event) => {
    const scope: string = event.scope;
    const text: string | null = event.custom ? event.custom.text : null;
    const until: Date | null = event.custom?.until ?? null;
    const mobile: Presence.Status | undefined = event.devices?.mobile;
    const inCall = event.state?.in_call === true;
    const lastSeen: string = Presence.relativeTime(event.last_seen);
    console.log(scope, event.user_id, event.status, event.v, text, until, mobile, inCall, lastSeen);
  })
  .on('snapshot', ({ scope, users, occupancy }) => {
    console.log(scope, users.length, occupancy ? occupancy.online : users.filter((u) => u.status !== 'OFFLINE').length);
  })
  .on('occupancy', ({ scope, online, away, busy, v }) => console.log(scope, online + away + busy, v))
  .on('connected', (hello) => console.log(hello.session_id, hello.user_id, hello.epoch))
  .on('disconnected', ({ code, reason, willReconnect }) => console.log(code, reason, willReconnect))
  .on('error', ({ code, message }) => console.log(code, message))
  .on('unauthorized', ({ status }) => console.log(status === 401 || status === 403));
client.off('presence');

document.addEventListener('presence:change', (event) => {
  const status: Presence.Status = event.detail.status;
  console.log(status, event.detail.scope);
});

const bob: Presence.UserPresence | null = client.get('bob');
const everyone: Map<string, Presence.UserPresence> = client.all();
console.log(connection, me, started, bob, everyone.size, Presence.relativeTime('2026-01-01T00:00:00Z', Date.now()));

const inAnHour = new Date(Date.now() + 3600 * 1000);
client.setStatus('BUSY');
client.setStatus('busy', inAnHour);
client.setStatus('AWAY', '2030-01-01T10:00:00Z');
client.setStatus('INVISIBLE', null);
client.setStatus('BUSY', { until: inAnHour, text: 'In a meeting', emoji: '📅' });
client.setStatus(null, { text: 'Lunch', emoji: '🍔' });
client.setCustomStatus({ text: 'Vacation', emoji: '🏖️', until: inAnHour });
client.setCustomStatus({ emoji: ':palm_tree:' });
client.setCustomStatus(null);
client.clearCustomStatus();
client.setState({ in_call: true, room: { id: 7, tags: ['a', null] } });
client.setState(null);
client.hideLastSeen(true);
client.subscribe('team-x');
client.subscribe('acme', ['bob', 'carol']);
client.subscribe('town-hall', { counts: true, userIds: ['bob'] });
client.subscribe('town-hall', { counts: true });
const counts: Presence.Occupancy | null = client.occupancy('town-hall');
console.log(counts?.online);
client.unsubscribe('team-x');
client.refresh();
client.close();

// @ts-expect-error: OFFLINE is not a status one asks for
client.setStatus('OFFLINE');
// @ts-expect-error: an unknown status
client.setStatus('HAPPY', { text: 'x' });
// @ts-expect-error: text is a string or null
client.setStatus('BUSY', { text: 42 });
// @ts-expect-error: app state is an object
client.setState([1, 2]);
// @ts-expect-error: app state is JSON
client.setState({ at: new Date() });
// @ts-expect-error: hideLastSeen takes a boolean
client.hideLastSeen('yes');
// @ts-expect-error: counts is a boolean
client.subscribe('x', { counts: 'yes' });
// @ts-expect-error: an unknown event
client.on('presence:change', () => {});
// @ts-expect-error: occupancy counts are read-only
client.occupancy('x')!.online = 3;
