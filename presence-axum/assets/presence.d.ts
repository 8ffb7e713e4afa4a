/*
 * presence.d.ts: TypeScript definitions for presence.js, the browser client
 * of presence-axum (served next to it: /presence/presence.d.ts by default).
 *
 * presence.js is a plain script, not a module: it defines the global
 * `Presence` (and, with data-autoconnect, `window.presence`). Reference
 * this file from a script, or list it in tsconfig's "files":
 *
 *   /// <reference path="./presence.d.ts" />
 *   const client: Presence.Client = Presence.connect({ path: '/ws/presence' });
 *   client.on('presence', ({ user_id, status, custom }) => { ... });
 *
 * Needs the DOM library (lib "dom", tsc's default).
 */

declare namespace Presence {
  /** A status as watchers see it. */
  type Status = 'ONLINE' | 'AWAY' | 'BUSY' | 'OFFLINE';

  /** A status the user may ask for (INVISIBLE shows OFFLINE to everyone). */
  type SettableStatus = 'ONLINE' | 'AWAY' | 'BUSY' | 'INVISIBLE';

  /** Status names are upper-cased by the client: 'busy' is BUSY. */
  type SettableStatusName = SettableStatus | Lowercase<SettableStatus>;

  /** 'connecting' (socket opening, no hello yet), 'open' (hello received),
   *  'closed', or 'unauthorized' (the server refused this page's login;
   *  stopped for good). */
  type ConnectionState = 'connecting' | 'open' | 'closed' | 'unauthorized';

  /** A time: a Date, or an RFC 3339 string (sent as given). */
  type Time = Date | string;

  type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

  /** App state: a JSON object (the server refuses one over 1 KiB as compact JSON). */
  type AppState = { [key: string]: JsonValue };

  /** A user's custom status: text, emoji or both. */
  interface CustomStatus {
    text: string | null;
    /** One emoji, or a `:name:`. */
    emoji: string | null;
    /** When it clears by itself; null: never. */
    until: Date | null;
  }

  /** Session kind → status of the user's live sessions of that kind
   *  ('web', 'mobile', 'desktop', or the host's own kinds). */
  type Devices = { [kind: string]: Status };

  /** A user's whole presence, as the client shows it (a copy). */
  interface UserPresence {
    user_id: string;
    status: Status;
    /** null: never seen, or hidden by the user. */
    last_seen: Date | null;
    /** The user's version; null once a new store epoch dropped it. */
    v: number | null;
    /** null: none. */
    custom: CustomStatus | null;
    /** null: no live session (or OFFLINE). */
    devices: Devices | null;
    /** The user's sessions' app state, merged; null: none. */
    state: AppState | null;
  }

  /** A 'presence' event, and the detail of the document's 'presence:change'. */
  interface PresenceEvent extends Readonly<UserPresence> {
    /** The scope whose news changed what the user shows. */
    readonly scope: string;
  }

  /** The counts of a large (counted) scope. */
  interface Occupancy {
    readonly scope: string;
    readonly online: number;
    readonly away: number;
    readonly busy: number;
    /** Grows per scope on one socket; older counts are dropped. */
    readonly v: number;
  }

  interface SnapshotEvent {
    scope: string;
    /** The users the snapshot lists (a counted scope's: only the named users). */
    users: UserPresence[];
    /** The counts when the scope is counted; null for a plain snapshot
     *  (the scope is small: every member is listed). */
    occupancy: Occupancy | null;
  }

  /** The server's hello frame. */
  interface Hello {
    type: 'hello';
    session_id: string;
    user_id: string;
    heartbeat_interval_ms?: number;
    epoch?: string;
    [field: string]: unknown;
  }

  interface DisconnectedEvent {
    code: number;
    reason: string;
    willReconnect: boolean;
  }

  /** An error frame: a stable code (docs/protocol.md) and a message. */
  interface ServerError {
    code: string;
    message: string;
  }

  interface UnauthorizedEvent {
    /** The HTTP status the server refused the login with. */
    status: 401 | 403;
  }

  interface EventMap {
    presence: PresenceEvent;
    snapshot: SnapshotEvent;
    occupancy: Occupancy;
    connected: Hello;
    disconnected: DisconnectedEvent;
    error: ServerError;
    unauthorized: UnauthorizedEvent;
  }

  type EventName = keyof EventMap;

  interface Options {
    /** Socket path on the page's host (default '/ws/presence'). */
    path?: string;
    /** A full ws:// or wss:// URL, or a path; wins over `path`. */
    url?: string;
    /** Least time between two activity frames (default 15000). */
    activityThrottleMs?: number;
    /** Reconnect backoff: base and cap (defaults 500 and 30000). */
    backoffBaseMs?: number;
    backoffCapMs?: number;
    /** How often relative "last seen" times are re-rendered (default 30000). */
    lastSeenRefreshMs?: number;
    /** A socket without hello after this long is dropped (default 15000). */
    connectTimeoutMs?: number;
    /** Ask for presence_batch frames (default true). */
    batch?: boolean;
    /** The document to render into (default: the global one). */
    document?: Document;
    /** The WebSocket implementation (default: the global one). */
    WebSocket?: typeof WebSocket;
    /** Used to probe a socket refused before hello (default: the global fetch). */
    fetch?: typeof fetch;
  }

  interface StatusOptions {
    /** When the manual status and the custom status clear by themselves. */
    until?: Time | null;
    /** Given (even null): sets the custom status in the same change; what is
     *  not given is none, and text and emoji both null clear it. */
    text?: string | null;
    emoji?: string | null;
  }

  interface CustomStatusInput {
    text?: string | null;
    emoji?: string | null;
    until?: Time | null;
  }

  interface SubscribeOptions {
    /** Only these users of the scope (kept at any size). */
    userIds?: readonly string[];
    /** Ask for occupancy counts instead of every member once the scope is large. */
    counts?: boolean;
  }

  interface Client {
    readonly state: ConnectionState;
    /** From hello; null before the first one. */
    readonly userId: string | null;
    readonly sessionId: string | null;

    on<K extends EventName>(name: K, fn: (detail: EventMap[K]) => void): this;
    /** off(name, fn) removes one listener; off(name) removes all of them. */
    off<K extends EventName>(name: K, fn?: (detail: EventMap[K]) => void): this;

    /** null for a user never heard of. */
    get(userId: string): UserPresence | null;
    /** A new Map user_id → the user's presence. */
    all(): Map<string, UserPresence>;

    /** ONLINE clears the manual status; until: when it clears by itself. */
    setStatus(status: SettableStatusName, until?: Time | null): void;
    /** status null or undefined: only the custom status changes (text or emoji required). */
    setStatus(status: SettableStatusName | null | undefined, options: StatusOptions): void;
    /** Sets the custom status, the manual status staying; null (or neither text nor emoji) clears it. */
    setCustomStatus(custom: CustomStatusInput | null | undefined): void;
    clearCustomStatus(): void;
    /** This session's app state (null clears it), sent again after each reconnect. */
    setState(state: AppState | null): void;
    /** Hides (true) or shows (false) this user's last seen to everyone. */
    hideLastSeen(hidden: boolean): void;

    subscribe(scope: string, userIds?: readonly string[]): void;
    subscribe(scope: string, options: SubscribeOptions): void;
    unsubscribe(scope: string): void;
    /** The last counts of a counted scope, or null when it is not counted. */
    occupancy(scope: string): Occupancy | null;

    /** Re-renders every [data-user-id] element of a user this client knows. */
    refresh(): void;
    /** Stops for good: closes the socket, never reconnects, removes listeners and timers. */
    close(): void;
  }

  interface Static {
    connect(options?: Options): Client;
    /** "just now", "N minutes ago", "N hours ago", "yesterday", "N days ago", or "never". */
    relativeTime(lastSeen: Time | null | undefined, now?: number): string;
  }
}

declare const Presence: Presence.Static;

interface Window {
  readonly Presence: Presence.Static;
  /** The client a <script data-autoconnect> tag started. */
  presence?: Presence.Client;
}

interface DocumentEventMap {
  'presence:change': CustomEvent<Presence.PresenceEvent>;
}
