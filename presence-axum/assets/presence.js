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
  const EVENTS = ['presence', 'snapshot', 'connected', 'disconnected', 'error', 'unauthorized'];
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
  function normalizeUser(raw) {
    if (!isObject(raw) || typeof raw.user_id !== 'string') return null;
    if (!WIRE.includes(raw.status) || typeof raw.v !== 'number' || !Number.isFinite(raw.v)) return null;
    return { user_id: raw.user_id, status: raw.status, last_seen: parseDate(raw.last_seen), v: raw.v };
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

      // scope → Map(user_id → { status, last_seen: Date|null, v }); v is null
      // once a new epoch dropped it (any news is newer)
      this._scopes = new Map();
      this._epoch = null; // the store's epoch last seen
      this._fetch = options.fetch || (typeof root.fetch === 'function' ? root.fetch.bind(root) : null);
      this._helloSeen = false; // the live socket said hello
      this._snapshotParts = new Map(); // scope → users of a snapshot still arriving in parts
      this._subs = new Map(); // scope → user_ids|undefined, re-sent after each hello
      this._unsubs = new Set(); // scopes watched from the start that the app left, re-left after each hello
      this._pendingStatus = null; // status_change frame waiting for the next hello
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

    /** { user_id, status, last_seen: Date|null, v }, or null for a user never heard of. */
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

    /** status: ONLINE (clears the manual status) | AWAY | BUSY | INVISIBLE; until: Date | RFC 3339 string. */
    setStatus(status, until) {
      const wanted = typeof status === 'string' ? status.toUpperCase() : status;
      if (!SETTABLE.includes(wanted)) throw new RangeError(`Presence: unknown status ${String(status)}`);
      const frame = { type: 'status_change', status: wanted };
      if (until !== undefined && until !== null) {
        const date = parseDate(until);
        if (!date) throw new RangeError(`Presence: invalid "until" ${String(until)}`);
        frame.until = isDate(until) ? date.toISOString() : until;
      }
      // Only the latest request matters; an older one still pending is superseded.
      this._pendingStatus = this._state === 'open' && this._send(frame) ? null : frame;
    }

    subscribe(scope, userIds) {
      if (typeof scope !== 'string' || !scope) throw new TypeError('Presence: scope must be a non-empty string');
      if (userIds !== undefined && (!Array.isArray(userIds) || !userIds.every((id) => typeof id === 'string'))) {
        throw new TypeError('Presence: userIds must be an array of strings');
      }
      const ids = userIds ? userIds.slice() : undefined;
      this._subs.set(scope, ids);
      this._unsubs.delete(scope);
      if (this._state === 'open') this._send(subscribeFrame(scope, ids));
    }

    unsubscribe(scope) {
      // A scope never subscribed explicitly is one the server watches from
      // the start: a new session would watch it again, so remember to leave it.
      if (!this._subs.delete(scope)) this._unsubs.add(scope);
      this._scopes.delete(scope);
      if (this._state === 'open') this._send({ type: 'unsubscribe', scope });
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
      const ms = frame.heartbeat_interval_ms;
      this._startHeartbeat(Number.isFinite(ms) && ms > 0 ? ms : DEFAULT_HEARTBEAT_MS);
      this._flushPending();
      this._emit('connected', frame);
    }

    // What the user asked for while disconnected, and the explicit
    // subscriptions (scopes watched from the start need none).
    _flushPending() {
      if (this._pendingStatus && this._send(this._pendingStatus)) this._pendingStatus = null;
      const now = Date.now();
      const unsent = this._lastActivityAt > this._lastActivitySentAt;
      if (unsent && now - this._lastActivityAt < this._opts.activityThrottleMs) this._sendActivity(now);
      for (const [scope, ids] of this._subs) this._send(subscribeFrame(scope, ids));
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
    _onSnapshot(frame) {
      const scope = frame.scope;
      if (typeof scope !== 'string' || !Array.isArray(frame.users)) return debug('malformed snapshot', frame);
      const earlier = this._snapshotParts.get(scope) || [];
      if (frame.more === true) {
        this._snapshotParts.set(scope, earlier.concat(frame.users));
        return undefined;
      }
      this._snapshotParts.delete(scope);
      this._seeEpoch(frame.epoch);
      const known = this._scopeUsers(scope);
      const listed = new Set();
      const users = [];
      const changed = [];
      for (const raw of earlier.concat(frame.users)) {
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
      for (const [id, current] of known) {
        if (listed.has(id) || current.status === 'OFFLINE') continue;
        this._put(scope, { user_id: id, status: 'OFFLINE', last_seen: current.last_seen, v: current.v });
        changed.push(id);
      }
      for (const id of changed) this._announce(id, scope);
      return this._emit('snapshot', { scope, users });
    }

    _onPresence(frame) {
      const update = normalizeUser(frame);
      if (!update || typeof frame.scope !== 'string') return debug('malformed presence event', frame);
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

    // Stores a scope's entry; true when anything observable changed.
    _put(scope, { user_id, status, last_seen, v }) {
      const before = combined(this._scopes, user_id);
      const old = before && { ...before };
      this._scopeUsers(scope).set(user_id, { status, last_seen, v });
      const now = combined(this._scopes, user_id);
      const time = (d) => (d ? d.getTime() : null);
      return !old || old.status !== now.status || old.v !== now.v || time(old.last_seen) !== time(now.last_seen);
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
    return { user_id: userId, status: entry.status, last_seen: lastSeen, v: entry.v };
  }

  function subscribeFrame(scope, userIds) {
    return userIds ? { type: 'subscribe', scope, user_ids: userIds } : { type: 'subscribe', scope };
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
