/*
 * presence.js: the browser client for presence-axum's WebSocket endpoint.
 *
 * Plain ES2020, no build step, no dependencies. Either
 *
 *   <script src="/presence/client.js" data-autoconnect></script>   (instance: window.presence)
 *   optional attributes: data-path="/ws/presence", data-activity-throttle-ms="15000"
 *
 * or
 *
 *   const client = Presence.connect({ path: '/ws/presence' });
 *   client.on('presence', ({ user_id, status }) => { ... });
 *   client.subscribe('team:42');
 *   client.setStatus('BUSY', new Date(Date.now() + 60 * 60 * 1000));
 *   client.setStatus('BUSY', { until: inAnHour, text: 'In a meeting', emoji: '📅' });
 *   client.setState({ in_call: true });        // this session's app state (null clears)
 *   client.subscribe('town-hall', { counts: true, userIds: ['bob'] });
 *   client.on('occupancy', ({ scope, online, away, busy }) => { ... });
 *
 * Each user's entry (get(), all(), 'presence' events) is their whole
 * presence: status, last_seen (null when never seen, or hidden by the
 * user), v, and the details beside the status, null when absent: custom
 * ({ text, emoji, until }), devices ({ web: 'ONLINE', mobile: 'AWAY' }: the
 * kinds of their live sessions) and state (their sessions' app state,
 * merged). A frame without a detail means the user has none any more.
 *
 * Manual status, custom status and hideLastSeen() belong to the user and
 * live on the server: one asked for while disconnected is sent after the
 * next hello, and never again. App state belongs to the session, and each
 * socket is a new session: the last setState() is sent after every hello.
 *
 * Large scopes: subscribe(scope, { counts: true }) asks the server for
 * occupancy frames ({ online, away, busy } counts) once the scope has more
 * members than it sends one by one. While a scope is counted the client
 * keeps only the named users' entries of it (userIds, and those its
 * snapshot lists) and emits 'occupancy'; a plain snapshot of the scope
 * later (it got small) brings every member back.
 *
 * DOM contract (applied only to users whose status this client has learned;
 * everything else keeps what the server rendered):
 *
 *   <li data-user-id="u1">
 *     <span class="status-dot"></span>   data-status="ONLINE|AWAY|BUSY|OFFLINE" and
 *                                        exactly one of status-online|away|busy|offline;
 *                                        UNKNOWN (status-unknown, with a title) once the
 *                                        server refused this page's login (see below)
 *     <time class="last-seen"></time>    text "just now" / "5 minutes ago" / ... / "never",
 *                                        title and data-last-seen = ISO time (removed when unknown)
 *   </li>
 *
 * The client asks the server for presence_batch frames (?batch=1 on the
 * socket URL; pass { batch: false } to get plain presence frames only): a
 * busy scope's changes then arrive several to a frame, applied in order
 * with the same version checks as single events.
 *
 * Versions and epochs: each change of a user comes with a version v, and a
 * frame older than what the client shows is dropped. A store that lost its
 * data starts versions again under a new epoch (in hello and every
 * snapshot): the client then drops the versions it holds and takes the
 * next snapshot whole. A user is tracked per scope: one who left a scope
 * (told OFFLINE there) still shows as they are in another scope watched.
 *
 * Refused: a socket closed before its hello is asked again over HTTP; a
 * 401 or 403 (the login is unknown to this server, e.g. after a restart)
 * stops the client for good: it emits 'unauthorized' ({ status }), its
 * state becomes 'unauthorized', every status dot on the page shows
 * UNKNOWN and every last-seen is emptied, since nothing it shows can be
 * trusted any more.
 *
 * A .status-dot or .last-seen belongs to its nearest [data-user-id] ancestor
 * (or itself), so nested cards for different users do not overwrite each other.
 * Call client.refresh() after rendering new [data-user-id] nodes.
 */
(function (root) {
  'use strict';

  if (!root) return;

  // Statuses a user may ask for, and the statuses observers see on the wire.
  const SETTABLE = ['ONLINE', 'AWAY', 'BUSY', 'INVISIBLE'];
  const WIRE = ['ONLINE', 'AWAY', 'BUSY', 'OFFLINE'];
  const UNKNOWN = 'UNKNOWN'; // shown once the server refused this page's login
  const STATUS_CLASSES = WIRE.concat([UNKNOWN]).map((s) => 'status-' + s.toLowerCase());
  const UNKNOWN_TITLE = 'Presence unknown: the connection was lost (sign in again to see it)';
  const EVENTS = ['presence', 'snapshot', 'occupancy', 'connected', 'disconnected', 'error', 'unauthorized'];
  const ACTIVITY_EVENTS = ['mousemove', 'mousedown', 'keydown', 'scroll', 'touchstart', 'wheel', 'focus'];

  const DEFAULTS = {
    path: '/ws/presence',
    activityThrottleMs: 15000,
    backoffBaseMs: 500,
    backoffCapMs: 30000,
    lastSeenRefreshMs: 30000,
    // A socket that never says hello (black-holed proxy, stuck upgrade) would
    // otherwise sit in 'connecting' for as long as the browser's TCP timeout.
    connectTimeoutMs: 15000,
    // Ask for presence_batch frames: a busy scope's changes several to a frame.
    batch: true,
  };
  const DEFAULT_HEARTBEAT_MS = 30000;
  // Upper bound of the jittered delay when the page comes back (visible/online).
  const PROMPT_RECONNECT_MS = 1000;
  // Smallest backoff exponent per close code. A server shutdown (1001) drops
  // every client at once, so even the first retry is spread over several
  // seconds; a client closed for flooding (1008) waits longer still.
  const BACKOFF_FLOOR = { 1001: 4, 1008: 5 };
  const MAX_ATTEMPT = 30; // keeps 2 ** attempt finite
  const WS_OPEN = 1; // WebSocket.OPEN, spelled out so constructor overrides need not define it

  // ---------------------------------------------------------------- helpers

  function debug(...args) {
    if (typeof console !== 'undefined' && console.debug) console.debug('[presence]', ...args);
  }

  function isObject(value) {
    return value !== null && typeof value === 'object' && !Array.isArray(value);
  }

  // Returns the frame object, or null for anything that is not a JSON object with a string type.
  function parseFrame(data) {
    if (typeof data !== 'string') return null;
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (_) {
      return null;
    }
    return isObject(frame) && typeof frame.type === 'string' ? frame : null;
  }

  // A brand check rather than instanceof: a Date from another frame is still a Date.
  function isDate(value) {
    return Object.prototype.toString.call(value) === '[object Date]';
  }

  function parseDate(value) {
    if (isDate(value)) return isNaN(value.getTime()) ? null : new Date(value.getTime());
    if (typeof value !== 'string') return null;
    const date = new Date(value);
    return isNaN(date.getTime()) ? null : date;
  }

  // A user entry from a snapshot or presence frame, or null when malformed.
  // Details the frame lacks (or that are malformed) are null: none.
  function normalizeUser(raw) {
    if (!isObject(raw) || typeof raw.user_id !== 'string') return null;
    if (!WIRE.includes(raw.status) || typeof raw.v !== 'number' || !Number.isFinite(raw.v)) return null;
    return {
      user_id: raw.user_id,
      status: raw.status,
      last_seen: parseDate(raw.last_seen),
      v: raw.v,
      custom: normalizeCustom(raw.custom),
      devices: normalizeDevices(raw.devices),
      state: isObject(raw.state) && Object.keys(raw.state).length > 0 ? raw.state : null,
    };
  }

  function nonEmptyString(value) {
    return typeof value === 'string' && value !== '' ? value : null;
  }

  // { text, emoji, until: Date|null } with text or emoji, else null.
  function normalizeCustom(raw) {
    if (!isObject(raw)) return null;
    const text = nonEmptyString(raw.text);
    const emoji = nonEmptyString(raw.emoji);
    if (text === null && emoji === null) return null;
    return { text, emoji, until: parseDate(raw.until) };
  }

  // kind → status of the user's live sessions, or null when none.
  function normalizeDevices(raw) {
    if (!isObject(raw)) return null;
    const devices = {};
    for (const [kind, status] of Object.entries(raw)) if (kind && WIRE.includes(status)) devices[kind] = status;
    return Object.keys(devices).length > 0 ? devices : null;
  }

  // { online, away, busy, v } from an occupancy frame or a snapshot's
  // occupancy, or null when malformed.
  function normalizeOccupancy(raw) {
    if (!isObject(raw)) return null;
    const count = (n) => Number.isInteger(n) && n >= 0;
    if (!count(raw.online) || !count(raw.away) || !count(raw.busy)) return null;
    if (typeof raw.v !== 'number' || !Number.isFinite(raw.v)) return null;
    return { online: raw.online, away: raw.away, busy: raw.busy, v: raw.v };
  }

  // What tells two entries' details apart (custom.until serializes as ISO).
  function detailsKey(entry) {
    return JSON.stringify([entry.custom, entry.devices, entry.state]);
  }

  // Whether a user shows anything else once their entry is `now` instead of `old`.
  function differs(old, now) {
    const time = (d) => (d ? d.getTime() : null);
    return (
      !old ||
      !now ||
      old.status !== now.status ||
      old.v !== now.v ||
      time(old.last_seen) !== time(now.last_seen) ||
      detailsKey(old) !== detailsKey(now)
    );
  }

  // Custom status text or emoji as sent: a string (trimmed; empty is none), or null.
  function customField(value, name) {
    if (value === null) return null;
    if (typeof value !== 'string') throw new TypeError(`Presence: ${name} must be a string or null`);
    return value.trim() === '' ? null : value.trim();
  }

  // An RFC 3339 string for a status_change's until (a string is sent as given).
  function untilField(until) {
    const date = parseDate(until);
    if (!date) throw new RangeError(`Presence: invalid "until" ${String(until)}`);
    return isDate(until) ? date.toISOString() : until;
  }

  // The parts of the user's status a status_change frame sets.
  function statusParts(frame) {
    const parts = [];
    if ('status' in frame) parts.push('status');
    if ('text' in frame || 'emoji' in frame) parts.push('custom');
    return parts;
  }

  // Pending status_change frames, oldest first, without those whose every
  // part a later one sets again: only the latest request of each matters.
  function supersede(frames) {
    const covered = new Set();
    const kept = [];
    for (let i = frames.length - 1; i >= 0; i -= 1) {
      const parts = statusParts(frames[i]);
      if (parts.some((part) => !covered.has(part))) kept.unshift(frames[i]);
      for (const part of parts) covered.add(part);
    }
    return kept;
  }

  function plural(n, unit) {
    return n === 1 ? `1 ${unit} ago` : `${n} ${unit}s ago`;
  }

  // "just now", "N minutes ago", "N hours ago", "yesterday", "N days ago", or "never".
  function relativeTime(lastSeen, now = Date.now()) {
    const date = parseDate(lastSeen);
    if (!date) return 'never';
    // Clamped at zero: a client clock behind the server's must not say "in 2 minutes".
    const seconds = Math.max(0, (now - date.getTime()) / 1000);
    if (seconds < 45) return 'just now';
    const minutes = Math.max(1, Math.floor(seconds / 60));
    if (minutes < 60) return plural(minutes, 'minute');
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return plural(hours, 'hour');
    const days = Math.floor(hours / 24);
    return days === 1 ? 'yesterday' : `${days} days ago`;
  }

  // Quotes a value for an attribute selector; user ids are opaque strings.
  function cssString(value) {
    const escaped = value
      .replace(/[\\"]/g, '\\$&')
      .replace(/[\u0000-\u001f\u007f]/g, (c) => '\\' + c.charCodeAt(0).toString(16) + ' ');
    return `"${escaped}"`;
  }

  function pick(options, key) {
    return options[key] === undefined || options[key] === null ? DEFAULTS[key] : options[key];
  }

  // ws:/wss: URL from an explicit url, a path, or the default path, on the page's host;
  // with batch=1 in its query when the client takes presence_batch frames.
  function resolveUrl(options, location, batch) {
    const raw = options.url || options.path || DEFAULTS.path;
    if (/^wss?:\/\//i.test(raw) || !location || typeof URL !== 'function') return withBatch(raw, batch);
    const url = new URL(raw, location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    return withBatch(url.href, batch);
  }

  function withBatch(url, batch) {
    if (!batch || /[?&]batch=/.test(url)) return url;
    const hash = url.indexOf('#');
    const base = hash < 0 ? url : url.slice(0, hash);
    return base + (base.includes('?') ? '&' : '?') + 'batch=1';
  }

  function whenReady(doc, fn) {
    if (doc && doc.readyState === 'loading') doc.addEventListener('DOMContentLoaded', fn, { once: true });
    else fn();
  }

  // -------------------------------------------------------------- rendering

  // Elements matching selector in host (host included) whose nearest
  // [data-user-id] is host itself: a nested card keeps its own user's dot.
  function owned(host, selector) {
    const found = Array.from(host.querySelectorAll(selector));
    if (host.matches && host.matches(selector)) found.unshift(host);
    return found.filter((el) => !el.closest || el.closest('[data-user-id]') === host);
  }

  // Writes only what differs, so 30-second refreshes do not churn observers.
  function setAttr(el, name, value) {
    if (value === null) {
      if (el.hasAttribute(name)) el.removeAttribute(name);
    } else if (el.getAttribute(name) !== value) {
      el.setAttribute(name, value);
    }
  }

  function paintDot(el, status) {
    setAttr(el, 'data-status', status);
    const wanted = 'status-' + status.toLowerCase();
    for (const cls of STATUS_CLASSES) if (cls !== wanted) el.classList.remove(cls);
    el.classList.add(wanted);
  }

  function paintLastSeen(el, lastSeen, now) {
    const text = relativeTime(lastSeen, now);
    if (el.textContent !== text) el.textContent = text;
    const iso = lastSeen ? lastSeen.toISOString() : null;
    setAttr(el, 'title', iso);
    setAttr(el, 'data-last-seen', iso);
  }

  // The HTTP twin of a socket URL: asked when a socket closes before its
  // hello, to learn whether the server refused the login.
  function probeUrl(socketUrl) {
    return socketUrl.replace(/^ws(s?):/i, 'http$1:');
  }

  // The entry a user shows: their newest one that is not OFFLINE in any
  // scope, else their newest one (for last seen), else null.
  function combined(scopes, userId) {
    let best = null;
    for (const users of scopes.values()) {
      const entry = users.get(userId);
      if (!entry) continue;
      const online = entry.status !== 'OFFLINE';
      const bestOnline = best && best.status !== 'OFFLINE';
      if (!best || (online && !bestOnline) || (online === bestOnline && (entry.v || 0) > (best.v || 0))) best = entry;
    }
    return best;
  }

  // A user whose status this client cannot know (its login was refused).
  function renderUnknown(host) {
    for (const dot of owned(host, '.status-dot')) {
      paintDot(dot, UNKNOWN);
      setAttr(dot, 'title', UNKNOWN_TITLE);
    }
    // "Last seen" is unknown too (and would never be refreshed again).
    for (const el of owned(host, '.last-seen')) {
      if (el.textContent !== '') el.textContent = '';
      setAttr(el, 'title', null);
      setAttr(el, 'data-last-seen', null);
    }
  }

  function renderHost(host, entry, now) {
    for (const dot of owned(host, '.status-dot')) paintDot(dot, entry.status);
    for (const el of owned(host, '.last-seen')) paintLastSeen(el, entry.last_seen, now);
  }

  // ----------------------------------------------------------------- client

  class PresenceClient {
    constructor(options = {}) {
      this._doc = options.document || root.document || null;
      this._win = (this._doc && this._doc.defaultView) || (root.addEventListener ? root : null);
      this._WebSocket = options.WebSocket || root.WebSocket;
      if (typeof this._WebSocket !== 'function') throw new Error('Presence: no WebSocket implementation');
      const location = (this._doc && this._doc.location) || root.location || null;
      this._opts = {};
      for (const key of Object.keys(DEFAULTS)) this._opts[key] = pick(options, key);
      this._url = resolveUrl(options, location, this._opts.batch);

      this._ws = null; // the one live socket; handlers of any other socket are ignored
      this._state = 'closed';
      this._stopped = false;
      this._hello = null;
      this._attempt = 0;
      this._timers = { reconnect: null, heartbeat: null, hello: null, refresh: null };
      this._reconnectAt = 0;
      this._awaitingPong = false;

      // scope → Map(user_id → { status, last_seen: Date|null, v, custom,
      // devices, state }); v is null once a new epoch dropped it (any news
      // is newer)
      this._scopes = new Map();
      // counted scope → { counts: { online, away, busy, v }|null, named: Set
      // of the user ids kept, v: the last occupancy v of this socket or null }
      this._counted = new Map();
      this._epoch = null; // the store's epoch last seen
      this._fetch = options.fetch || (typeof root.fetch === 'function' ? root.fetch.bind(root) : null);
      this._helloSeen = false; // the live socket said hello
      this._snapshotParts = new Map(); // scope → { users, occupancy } of a snapshot still arriving in parts
      this._subs = new Map(); // scope → { ids: user_ids|undefined, counts }, re-sent after each hello
      this._unsubs = new Set(); // scopes watched from the start that the app left, re-left after each hello
      this._pendingStatus = []; // status_change frames waiting for the next hello, oldest first
      this._pendingPrivacy = null; // privacy frame waiting for the next hello
      this._appState = null; // the session's app state, sent after each hello (a new socket is a new session)
      this._lastActivityAt = 0;
      this._lastActivitySentAt = 0;
      this._listeners = new Map();
      this._domListeners = [];

      this._listen();
      this._timers.refresh = setInterval(() => this._tick(), this._opts.lastSeenRefreshMs);
      this._open();
    }

    /** 'connecting' (socket opening, no hello yet), 'open' (hello received), 'closed',
     *  or 'unauthorized' (the server refused this page's login; stopped for good). */
    get state() {
      return this._state;
    }

    get userId() {
      return this._hello ? this._hello.user_id : null;
    }

    get sessionId() {
      return this._hello ? this._hello.session_id : null;
    }

    on(name, fn) {
      if (!EVENTS.includes(name)) throw new Error(`Presence: unknown event "${name}"`);
      if (typeof fn !== 'function') throw new TypeError('Presence: listener must be a function');
      if (!this._listeners.has(name)) this._listeners.set(name, new Set());
      this._listeners.get(name).add(fn);
      return this;
    }

    /** off(name, fn) removes one listener; off(name) removes all of them. */
    off(name, fn) {
      const set = this._listeners.get(name);
      if (set && fn) set.delete(fn);
      else if (set) set.clear();
      return this;
    }

    /** { user_id, status, last_seen: Date|null, v, custom, devices, state } (details null
     *  when absent), or null for a user never heard of. */
    get(userId) {
      const entry = combined(this._scopes, userId);
      return entry ? view(userId, entry) : null;
    }

    /** A new Map user_id → the same shape as get(). */
    all() {
      const copy = new Map();
      for (const users of this._scopes.values()) {
        for (const id of users.keys()) if (!copy.has(id)) copy.set(id, view(id, combined(this._scopes, id)));
      }
      return copy;
    }

    /** setStatus(status, until) or setStatus(status, { until, text, emoji }).
     *  status: ONLINE (clears the manual status) | AWAY | BUSY | INVISIBLE, or null to
     *  leave it as it is and set only the custom status; until: Date | RFC 3339 string,
     *  when the manual status and the custom status clear by themselves. text or emoji
     *  given (even null) sets the custom status in the same change: what is not given
     *  is none, and both null clears it. */
    setStatus(status, options) {
      const opts = isObject(options) && !isDate(options) ? options : { until: options };
      const frame = { type: 'status_change' };
      if (status !== undefined && status !== null) {
        const wanted = typeof status === 'string' ? status.toUpperCase() : status;
        if (!SETTABLE.includes(wanted)) throw new RangeError(`Presence: unknown status ${String(status)}`);
        frame.status = wanted;
      }
      if (opts.text !== undefined) frame.text = customField(opts.text, 'text');
      if (opts.emoji !== undefined) frame.emoji = customField(opts.emoji, 'emoji');
      if (statusParts(frame).length === 0) {
        throw new RangeError(`Presence: unknown status ${String(status)} (and no text or emoji)`);
      }
      if (opts.until !== undefined && opts.until !== null) frame.until = untilField(opts.until);
      this._changeStatus(frame);
    }

    /** Sets the custom status ({ text, emoji, until }: text, emoji or both; until: Date |
     *  RFC 3339 string); the manual status stays. null, or neither text nor emoji, clears it. */
    setCustomStatus(custom) {
      if (custom === undefined || custom === null) return this.clearCustomStatus();
      if (!isObject(custom)) throw new TypeError('Presence: custom status must be { text, emoji, until } or null');
      const text = custom.text === undefined ? null : customField(custom.text, 'text');
      const emoji = custom.emoji === undefined ? null : customField(custom.emoji, 'emoji');
      if (text === null && emoji === null) return this.clearCustomStatus();
      const frame = { type: 'status_change', text, emoji };
      if (custom.until !== undefined && custom.until !== null) frame.until = untilField(custom.until);
      return this._changeStatus(frame);
    }

    /** Clears the custom status; the manual status stays. */
    clearCustomStatus() {
      this._changeStatus({ type: 'status_change', text: null, emoji: null });
    }

    /** Sets this session's app state (a JSON object, small: the server refuses over 1 KiB
     *  and rate-limits), seen by watchers merged with the user's other sessions; null clears
     *  it. Kept and sent again after each reconnect, since a new socket is a new session. */
    setState(state) {
      if (state !== null && !isObject(state)) throw new TypeError('Presence: state must be a plain object or null');
      // A copy as JSON: later edits of the caller's object change nothing.
      const copy = state === null ? null : JSON.parse(JSON.stringify(state));
      this._appState = copy;
      if (this._state === 'open') this._send({ type: 'set_state', state: copy });
    }

    /** Hides (true) or shows (false) this user's last seen to everyone: watchers get null. */
    hideLastSeen(hidden) {
      if (typeof hidden !== 'boolean') throw new TypeError('Presence: hideLastSeen takes a boolean');
      const frame = { type: 'privacy', hide_last_seen: hidden };
      // Only the latest request matters; an older one still pending is superseded.
      this._pendingPrivacy = this._state === 'open' && this._send(frame) ? null : frame;
    }

    /** subscribe(scope), subscribe(scope, userIds) or subscribe(scope, { counts, userIds }):
     *  watches a whole scope or only the named users in it; counts: true asks for occupancy
     *  counts instead of every member once the scope is large. */
    subscribe(scope, options) {
      if (typeof scope !== 'string' || !scope) throw new TypeError('Presence: scope must be a non-empty string');
      const opts = options === undefined || Array.isArray(options) ? { userIds: options } : options;
      if (!isObject(opts)) throw new TypeError('Presence: subscribe takes userIds or { counts, userIds }');
      const userIds = opts.userIds;
      if (userIds !== undefined && (!Array.isArray(userIds) || !userIds.every((id) => typeof id === 'string'))) {
        throw new TypeError('Presence: userIds must be an array of strings');
      }
      if (opts.counts !== undefined && typeof opts.counts !== 'boolean') {
        throw new TypeError('Presence: counts must be a boolean');
      }
      const ids = userIds ? userIds.slice() : undefined;
      const counts = opts.counts === true;
      this._subs.set(scope, { ids, counts });
      this._unsubs.delete(scope);
      const counted = this._counted.get(scope);
      if (counted) counted.named = new Set(ids || []);
      if (this._state === 'open') this._send(subscribeFrame(scope, ids, counts));
    }

    unsubscribe(scope) {
      // A scope never subscribed explicitly is one the server watches from
      // the start: a new session would watch it again, so remember to leave it.
      if (!this._subs.delete(scope)) this._unsubs.add(scope);
      this._scopes.delete(scope);
      this._counted.delete(scope);
      if (this._state === 'open') this._send({ type: 'unsubscribe', scope });
    }

    /** The last counts of a counted scope, { scope, online, away, busy, v }, or null
     *  when the scope is not counted (not watched, small, or not asked with counts). */
    occupancy(scope) {
      const counted = this._counted.get(scope);
      return counted && counted.counts ? { scope, ...counted.counts } : null;
    }

    /** Re-renders every [data-user-id] element of a user this client knows. */
    refresh() {
      const doc = this._doc;
      if (!doc || !doc.querySelectorAll) return;
      const now = Date.now();
      for (const host of doc.querySelectorAll('[data-user-id]')) {
        // Refused for good: what this client knew is stale, so unknown.
        if (this._state === 'unauthorized') {
          renderUnknown(host);
          continue;
        }
        const entry = combined(this._scopes, host.getAttribute('data-user-id'));
        if (entry) renderHost(host, entry, now);
      }
    }

    /** Stops for good: closes the socket, never reconnects, removes listeners and timers. */
    close() {
      if (this._stopped) return;
      const ws = this._ws;
      this._shutdown();
      if (!ws) return;
      this._onClose(1000, 'client closed');
      try {
        ws.close(1000, 'client closed');
      } catch (_) {
        /* already closing */
      }
    }

    // --------------------------------------------------------- connection

    _open() {
      if (this._stopped || this._ws) return;
      let ws;
      try {
        ws = new this._WebSocket(this._url);
      } catch (err) {
        debug('cannot open socket', err);
        this._scheduleReconnect(0);
        return;
      }
      this._ws = ws;
      this._state = 'connecting';
      this._helloSeen = false;
      // Each handler checks it still belongs to the live socket, so a socket
      // replaced by a reconnect can never start timers or apply frames.
      ws.onmessage = (ev) => ws === this._ws && this._onMessage(ev.data);
      ws.onclose = (ev) => ws === this._ws && this._onClose(ev.code, ev.reason || '');
      ws.onerror = () => ws === this._ws && debug('socket error');
      this._timers.hello = setTimeout(() => this._drop('no hello'), this._opts.connectTimeoutMs);
    }

    // Gives up on the live socket without waiting for a close event that a
    // dead network may take minutes to deliver.
    _drop(reason) {
      const ws = this._ws;
      if (!ws) return;
      debug('dropping connection:', reason);
      this._onClose(1006, reason);
      try {
        ws.close();
      } catch (_) {
        /* already closing */
      }
    }

    _onClose(code, reason) {
      const ws = this._ws;
      this._ws = null;
      if (ws) ws.onmessage = ws.onclose = ws.onerror = null;
      this._snapshotParts.clear(); // the next socket sends its snapshots whole
      clearInterval(this._timers.heartbeat);
      clearTimeout(this._timers.hello);
      this._timers.heartbeat = this._timers.hello = null;
      this._state = 'closed';
      const loggedOut = code === 1000 && reason === 'logged out';
      if (loggedOut) this._shutdown();
      debug('disconnected', code, reason);
      this._emit('disconnected', { code, reason, willReconnect: !this._stopped });
      // After the emit: a listener may have called close().
      if (!this._helloSeen && !this._stopped && this._fetch) this._probe(code);
      else this._scheduleReconnect(BACKOFF_FLOOR[code] || 0);
    }

    // A socket closed before its hello: the browser hides the upgrade's
    // HTTP status, so ask the same URL over HTTP. 401/403: the login is
    // refused for good; anything else: try the socket again. With the
    // cookies the socket sent, even to another origin (there, a server
    // without CORS fails the probe, and the client just reconnects).
    _probe(code) {
      let asked;
      try {
        asked = this._fetch(probeUrl(this._url), { credentials: 'include', cache: 'no-store' });
      } catch (err) {
        asked = Promise.reject(err);
      }
      Promise.resolve(asked).then(
        (response) => {
          if (this._stopped || this._ws) return;
          const status = response && response.status;
          if (status === 401 || status === 403) this._unauthorized(status);
          else this._scheduleReconnect(BACKOFF_FLOOR[code] || 0);
        },
        () => {
          if (!this._stopped && !this._ws) this._scheduleReconnect(BACKOFF_FLOOR[code] || 0);
        },
      );
    }

    _unauthorized(status) {
      debug('the server refused this login:', status);
      this._shutdown();
      this._state = 'unauthorized';
      this.refresh();
      this._emit('unauthorized', { status });
    }

    // Full jitter: uniform in [0, min(cap, base * 2^attempt)], so a restarted
    // server sees its clients spread out rather than all in the same second.
    _scheduleReconnect(floor) {
      if (this._stopped) return;
      const attempt = Math.min(Math.max(this._attempt, floor), MAX_ATTEMPT);
      const ceiling = Math.min(this._opts.backoffCapMs, this._opts.backoffBaseMs * 2 ** attempt);
      this._attempt = attempt + 1;
      this._reconnectIn(Math.random() * ceiling);
    }

    _reconnectIn(delay) {
      clearTimeout(this._timers.reconnect);
      this._reconnectAt = Date.now() + delay;
      this._timers.reconnect = setTimeout(() => {
        this._timers.reconnect = null;
        this._open();
      }, delay);
    }

    // The page came back (visible / online): retry soon instead of waiting
    // out a long backoff, still jittered so a network blip is not a stampede.
    _reconnectSoon() {
      if (this._stopped || this._ws) return;
      const delay = Math.random() * PROMPT_RECONNECT_MS;
      if (this._timers.reconnect && this._reconnectAt - Date.now() <= delay) return;
      this._reconnectIn(delay);
    }

    // A status_change asked for by the app: sent now if the socket is open,
    // else after the next hello, behind any still pending that it does not supersede.
    _changeStatus(frame) {
      this._pendingStatus = supersede(this._pendingStatus.concat([frame]));
      if (this._state === 'open') this._sendStatus();
    }

    // Sends the pending status_change frames in order, keeping those not sent.
    _sendStatus() {
      while (this._pendingStatus.length > 0 && this._send(this._pendingStatus[0])) this._pendingStatus.shift();
    }

    _send(frame) {
      const ws = this._ws;
      if (!ws || ws.readyState !== WS_OPEN) return false;
      try {
        ws.send(JSON.stringify(frame));
        return true;
      } catch (err) {
        debug('send failed', err);
        return false;
      }
    }

    // ----------------------------------------------------------- heartbeat

    _startHeartbeat(interval) {
      clearInterval(this._timers.heartbeat); // one timer per client, whatever happened before
      this._awaitingPong = false;
      this._timers.heartbeat = setInterval(() => this._beat(), interval);
    }

    // A whole interval without any frame from the server means the
    // connection is dead even if the browser has not noticed yet.
    _beat() {
      if (this._awaitingPong) {
        this._drop('heartbeat timeout');
        return;
      }
      this._awaitingPong = true;
      this._send({ type: 'heartbeat' });
    }

    // ------------------------------------------------------------- frames

    _onMessage(data) {
      this._awaitingPong = false; // any frame proves the connection is alive
      const frame = parseFrame(data);
      if (!frame) {
        debug('ignoring frame', data);
        return;
      }
      switch (frame.type) {
        case 'hello':
          return this._onHello(frame);
        case 'snapshot':
          return this._onSnapshot(frame);
        case 'presence':
          return this._onPresence(frame);
        case 'presence_batch':
          return this._onPresenceBatch(frame);
        case 'occupancy':
          return this._onOccupancy(frame);
        case 'pong':
          return undefined;
        case 'error':
          debug('server error', frame.code, frame.message);
          return this._emit('error', { code: frame.code, message: frame.message });
        default:
          return debug('ignoring frame type', frame.type);
      }
    }

    _onHello(frame) {
      clearTimeout(this._timers.hello);
      this._timers.hello = null;
      this._attempt = 0;
      this._hello = frame;
      this._helloSeen = true;
      this._state = 'open';
      this._seeEpoch(frame.epoch);
      // Occupancy versions count per socket: this one's first is news.
      for (const counted of this._counted.values()) counted.v = null;
      const ms = frame.heartbeat_interval_ms;
      this._startHeartbeat(Number.isFinite(ms) && ms > 0 ? ms : DEFAULT_HEARTBEAT_MS);
      this._flushPending();
      this._emit('connected', frame);
    }

    // What the user asked for while disconnected, and the explicit
    // subscriptions (scopes watched from the start need none).
    _flushPending() {
      this._sendStatus();
      if (this._pendingPrivacy && this._send(this._pendingPrivacy)) this._pendingPrivacy = null;
      // This socket's session starts without the app state the last one had.
      if (this._appState !== null) this._send({ type: 'set_state', state: this._appState });
      const now = Date.now();
      const unsent = this._lastActivityAt > this._lastActivitySentAt;
      if (unsent && now - this._lastActivityAt < this._opts.activityThrottleMs) this._sendActivity(now);
      for (const [scope, { ids, counts }] of this._subs) this._send(subscribeFrame(scope, ids, counts));
      for (const scope of this._unsubs) this._send({ type: 'unsubscribe', scope });
    }

    // A store that lost its data starts versions again under a new epoch:
    // every version held is dropped, so the next snapshot is taken whole.
    _seeEpoch(epoch) {
      if (typeof epoch !== 'string' || epoch === this._epoch) return;
      if (this._epoch !== null) {
        for (const users of this._scopes.values()) for (const entry of users.values()) entry.v = null;
      }
      this._epoch = epoch;
    }

    _scopeUsers(scope) {
      if (!this._scopes.has(scope)) this._scopes.set(scope, new Map());
      return this._scopes.get(scope);
    }

    // The snapshot is authoritative for its scope at that moment: users it
    // lists are applied (unless an event already brought a newer v), a user
    // listed with v 0 is not in the scope, and users known in the scope but
    // missing from it are OFFLINE there now.
    // A large snapshot arrives in parts, all but the last marked `more`:
    // the parts are applied together when the last one arrives.
    // A snapshot with occupancy is of a counted scope: it lists only the
    // named users, and the users it does not list are forgotten there (not
    // OFFLINE). A plain one ends counting: the scope's members come back.
    _onSnapshot(frame) {
      const scope = frame.scope;
      if (typeof scope !== 'string' || !Array.isArray(frame.users)) return debug('malformed snapshot', frame);
      const earlier = this._snapshotParts.get(scope) || { users: [], occupancy: null };
      const occupancy = frame.occupancy !== undefined ? normalizeOccupancy(frame.occupancy) : earlier.occupancy;
      if (frame.occupancy !== undefined && !occupancy) debug('malformed snapshot occupancy', frame.occupancy);
      if (frame.more === true) {
        this._snapshotParts.set(scope, { users: earlier.users.concat(frame.users), occupancy });
        return undefined;
      }
      this._snapshotParts.delete(scope);
      this._seeEpoch(frame.epoch);
      const counted = occupancy ? this._countScope(scope) : null;
      if (!occupancy) this._counted.delete(scope);
      const known = this._scopeUsers(scope);
      const listed = new Set();
      const users = [];
      const changed = [];
      for (const raw of earlier.users.concat(frame.users)) {
        const update = normalizeUser(raw);
        if (!update) continue;
        users.push(update);
        listed.add(update.user_id);
        const current = known.get(update.user_id);
        if (update.v === 0 && current) {
          // Not in the scope: nothing about the user is said here.
          if (this._put(scope, { ...current, status: 'OFFLINE' })) changed.push(update.user_id);
          continue;
        }
        if (current && current.v !== null && update.v < current.v) continue;
        if (this._put(scope, update)) changed.push(update.user_id);
      }
      if (counted) {
        for (const id of listed) counted.named.add(id);
        this._keepNamed(scope, counted.named);
      } else {
        for (const [id, current] of known) {
          if (listed.has(id) || current.status === 'OFFLINE') continue;
          this._put(scope, { user_id: id, status: 'OFFLINE', last_seen: current.last_seen, v: current.v });
          changed.push(id);
        }
      }
      for (const id of changed) this._announce(id, scope);
      const shown = users.map((user) => view(user.user_id, user));
      this._emit('snapshot', { scope, users: shown, occupancy: occupancy ? { scope, ...occupancy } : null });
      if (counted) this._onCounts(scope, occupancy);
      return undefined;
    }

    // An occupancy frame: the counts of a large scope, and from now on only
    // the named users' entries of it (see _onSnapshot).
    _onOccupancy(frame) {
      const counts = normalizeOccupancy(frame);
      if (!counts || typeof frame.scope !== 'string') return debug('malformed occupancy', frame);
      const entering = !this._counted.has(frame.scope);
      const counted = this._countScope(frame.scope);
      if (entering) this._keepNamed(frame.scope, counted.named);
      return this._onCounts(frame.scope, counts);
    }

    // The scope's counting state, counting from now if it was not yet.
    _countScope(scope) {
      if (!this._counted.has(scope)) {
        const sub = this._subs.get(scope);
        this._counted.set(scope, { counts: null, named: new Set((sub && sub.ids) || []), v: null });
      }
      return this._counted.get(scope);
    }

    // New counts of a counted scope, unless this socket already told newer ones.
    _onCounts(scope, counts) {
      const counted = this._counted.get(scope);
      if (counted.v !== null && counts.v <= counted.v) return debug('stale occupancy', scope, counts.v);
      counted.v = counts.v;
      counted.counts = counts;
      return this._emit('occupancy', Object.freeze({ scope, ...counts }));
    }

    // Forgets the scope's entries of users not named: a counted scope
    // tells nothing more about them (what another scope says still shows).
    _keepNamed(scope, named) {
      const users = this._scopes.get(scope);
      if (!users) return;
      for (const id of Array.from(users.keys())) {
        if (named.has(id)) continue;
        const before = combined(this._scopes, id);
        users.delete(id);
        const now = combined(this._scopes, id);
        if (now && differs(before, now)) this._announce(id, scope);
      }
    }

    _onPresence(frame) {
      const update = normalizeUser(frame);
      if (!update || typeof frame.scope !== 'string') return debug('malformed presence event', frame);
      const counted = this._counted.get(frame.scope);
      if (counted && !counted.named.has(update.user_id)) return debug('not named in a counted scope', frame);
      const current = this._scopeUsers(frame.scope).get(update.user_id);
      if (current && current.v !== null && update.v <= current.v) return undefined; // stale or duplicate
      this._put(frame.scope, update);
      return this._announce(update.user_id, frame.scope);
    }

    // Several changes of one scope, oldest first: each applied as its own
    // presence frame would be, so stale entries are dropped the same way.
    _onPresenceBatch(frame) {
      if (typeof frame.scope !== 'string' || !Array.isArray(frame.events)) return debug('malformed batch', frame);
      for (const raw of frame.events) {
        if (isObject(raw)) this._onPresence({ ...raw, type: 'presence', scope: frame.scope });
        else debug('malformed batch entry', raw);
      }
      return undefined;
    }

    // Stores a scope's entry; true when anything observable changed. A
    // user shown OFFLINE has no details (an invisible user leaks nothing).
    _put(scope, { user_id, status, last_seen, v, custom = null, devices = null, state = null }) {
      const before = combined(this._scopes, user_id);
      const old = before && { ...before };
      const entry = status === 'OFFLINE'
        ? { status, last_seen, v, custom: null, devices: null, state: null }
        : { status, last_seen, v, custom, devices, state };
      this._scopeUsers(scope).set(user_id, entry);
      return differs(old, combined(this._scopes, user_id));
    }

    // Renders the user's elements and tells listeners and the document.
    _announce(userId, scope) {
      const entry = combined(this._scopes, userId);
      this._render(userId, entry);
      const detail = Object.freeze({ ...view(userId, entry), scope });
      this._emit('presence', detail);
      const doc = this._doc;
      const CustomEventCtor = (this._win && this._win.CustomEvent) || root.CustomEvent;
      if (doc && doc.dispatchEvent && typeof CustomEventCtor === 'function') {
        doc.dispatchEvent(new CustomEventCtor('presence:change', { detail }));
      }
    }

    _render(userId, entry) {
      const doc = this._doc;
      if (!doc || !doc.querySelectorAll) return;
      const now = Date.now();
      for (const host of doc.querySelectorAll(`[data-user-id=${cssString(userId)}]`)) renderHost(host, entry, now);
    }

    // Relative times go stale; a hidden page is refreshed when it comes back.
    _tick() {
      if (this._doc && this._doc.hidden) return;
      this.refresh();
    }

    _emit(name, detail) {
      const set = this._listeners.get(name);
      if (!set) return;
      for (const fn of Array.from(set)) {
        try {
          fn(detail);
        } catch (err) {
          // Reported like an uncaught error, without breaking the client or other listeners.
          setTimeout(() => {
            throw err;
          }, 0);
        }
      }
    }

    // ------------------------------------------------------------ activity

    _noteActivity() {
      const now = Date.now();
      this._lastActivityAt = now;
      if (this._state !== 'open') return; // flushed after the next hello
      if (now - this._lastActivitySentAt < this._opts.activityThrottleMs) return;
      this._sendActivity(now);
    }

    _sendActivity(now) {
      if (this._send({ type: 'activity' })) this._lastActivitySentAt = now;
    }

    _listen() {
      const activity = () => this._noteActivity();
      if (this._win) {
        // Capture sees events that never bubble (scroll of inner elements, focus);
        // passive keeps scrolling and touch handling off the main-thread path.
        for (const type of ACTIVITY_EVENTS) this._addListener(this._win, type, activity, { passive: true, capture: true });
        this._addListener(this._win, 'online', () => this._reconnectSoon());
        // A page left for another (or kept in the back/forward cache) must
        // end its session now, not when its heartbeats are missed.
        this._addListener(this._win, 'pagehide', () => {
          const ws = this._ws;
          if (!ws) return;
          this._onClose(1000, 'page hidden');
          try {
            ws.close(1000, 'page hidden');
          } catch (_) {
            /* already closing */
          }
        });
        this._addListener(this._win, 'pageshow', (event) => {
          if (event.persisted) this._reconnectSoon();
        });
      }
      const doc = this._doc;
      if (!doc || !doc.addEventListener) return;
      this._addListener(doc, 'visibilitychange', () => {
        if (doc.visibilityState !== 'visible') return;
        this._noteActivity();
        this._reconnectSoon();
        this.refresh();
      });
      if (doc.readyState === 'loading') this._addListener(doc, 'DOMContentLoaded', () => this.refresh(), { once: true });
    }

    _addListener(target, type, fn, options) {
      target.addEventListener(type, fn, options);
      this._domListeners.push([target, type, fn, options]);
    }

    _shutdown() {
      this._stopped = true;
      for (const key of Object.keys(this._timers)) {
        clearTimeout(this._timers[key]);
        clearInterval(this._timers[key]);
        this._timers[key] = null;
      }
      for (const [target, type, fn, options] of this._domListeners) target.removeEventListener(type, fn, options);
      this._domListeners = [];
    }
  }

  // A copy for callers, so they cannot edit the client's state by accident.
  function view(userId, entry) {
    const lastSeen = entry.last_seen ? new Date(entry.last_seen.getTime()) : null;
    const custom = entry.custom && {
      text: entry.custom.text,
      emoji: entry.custom.emoji,
      until: entry.custom.until ? new Date(entry.custom.until.getTime()) : null,
    };
    return {
      user_id: userId,
      status: entry.status,
      last_seen: lastSeen,
      v: entry.v,
      custom: custom || null,
      devices: entry.devices ? { ...entry.devices } : null,
      state: entry.state ? JSON.parse(JSON.stringify(entry.state)) : null,
    };
  }

  function subscribeFrame(scope, userIds, counts) {
    const frame = { type: 'subscribe', scope };
    if (counts) frame.counts = true;
    if (userIds) frame.user_ids = userIds;
    return frame;
  }

  // ----------------------------------------------------------------- export

  const Presence = Object.freeze({
    connect: (options) => new PresenceClient(options),
    relativeTime,
  });
  root.Presence = Presence;

  // document.currentScript is only set while this script first runs.
  const script = root.document && root.document.currentScript;
  if (script && script.hasAttribute && script.hasAttribute('data-autoconnect')) {
    // Options may ride on the tag: data-path, data-activity-throttle-ms.
    const options = {};
    const path = script.getAttribute('data-path');
    if (path) options.path = path;
    const throttle = Number(script.getAttribute('data-activity-throttle-ms'));
    if (throttle > 0) options.activityThrottleMs = throttle;
    whenReady(root.document, () => {
      if (!root.presence) root.presence = Presence.connect(options);
    });
  }
})(typeof window !== 'undefined' ? window : undefined);
