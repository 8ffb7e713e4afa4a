// The demo's own page script: the status picker in the header (status,
// custom status text and emoji, "clear after"), live rows for members who
// sign in for the first time after the page loaded, their custom status
// and device icons, and the counts of a large channel.
// Presence itself (dots, "last seen", heartbeats) is the shipped client's.
(function () {
  'use strict';

  // Icons of the session kinds; a kind of the host's own shows its name.
  const DEVICE_ICONS = { web: '🖥️', mobile: '📱', desktop: '💻' };
  const DEVICE_ORDER = ['web', 'mobile', 'desktop'];
  const CLEAR_AFTER_MS = { '30m': 30 * 60 * 1000, '1h': 60 * 60 * 1000, '4h': 4 * 60 * 60 * 1000 };

  function client() {
    return window.presence;
  }

  function span(className, text) {
    const el = document.createElement('span');
    el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // The markup of pages.rs's member_row, custom_status and devices.
  function row(userId) {
    const li = document.createElement('li');
    li.className = 'member';
    li.setAttribute('data-user-id', userId);
    const dot = span('status-dot');
    dot.setAttribute('data-status', 'OFFLINE');
    const custom = span('member-custom');
    custom.hidden = true;
    custom.append(span('member-emoji'), ' ', span('member-text'));
    li.append(dot, ' ', span('name', userId), ' ', custom, ' ', span('member-devices'), ' ', span('last-seen', 'never'));
    return li;
  }

  function hostsOf(userId) {
    return document.querySelectorAll('[data-user-id="' + CSS.escape(userId) + '"]');
  }

  // A user's custom status and devices, from the client's view of them.
  function paintDetails(userId, shown) {
    const custom = (shown && shown.custom) || null;
    const devices = (shown && shown.devices) || {};
    const kinds = Object.keys(devices).sort((a, b) => {
      const rank = (k) => (DEVICE_ORDER.includes(k) ? DEVICE_ORDER.indexOf(k) : DEVICE_ORDER.length);
      return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
    });
    hostsOf(userId).forEach((host) => {
      host.querySelectorAll('.member-custom').forEach((el) => {
        const emoji = el.querySelector('.member-emoji');
        const text = el.querySelector('.member-text');
        if (emoji) emoji.textContent = custom && custom.emoji ? custom.emoji : '';
        if (text) text.textContent = custom && custom.text ? custom.text : '';
        el.hidden = !custom;
        if (custom && custom.until) el.setAttribute('data-until', custom.until.toISOString());
        else el.removeAttribute('data-until');
        if (custom && custom.until) el.title = 'until ' + custom.until.toLocaleString();
        else el.removeAttribute('title');
      });
      host.querySelectorAll('.member-devices').forEach((el) => {
        const icons = kinds.map((kind) => {
          const icon = span('device', DEVICE_ICONS[kind] || kind);
          icon.setAttribute('data-kind', kind);
          icon.setAttribute('data-status', devices[kind]);
          icon.title = kind + ': ' + devices[kind];
          return icon;
        });
        el.replaceChildren(...icons);
      });
    });
  }

  // A member we have no row for: add one, then let the client paint it.
  document.addEventListener('presence:change', (event) => {
    const detail = event.detail || {};
    if (typeof detail.user_id !== 'string') return;
    let added = false;
    // A page of counts (the town hall) adds no row per member.
    const counted = !!byId('occupancy');
    document.querySelectorAll('ul[data-live-members]').forEach((list) => {
      if (counted) return;
      const selector = '[data-user-id="' + CSS.escape(detail.user_id) + '"]';
      if (list.querySelector(selector)) return;
      if (list.getAttribute('data-live-members') === 'online' && detail.status === 'OFFLINE') return;
      list.appendChild(row(detail.user_id));
      added = true;
    });
    if (added && client()) client().refresh();
    paintDetails(detail.user_id, detail);
    if (client() && detail.user_id === client().userId) fillCustomForm(detail.custom);
  });

  // ---------------------------------------------------------- the picker

  let customEdited = false; // the text or emoji was typed since the last Set

  function byId(id) {
    return document.getElementById(id);
  }

  // Shows the user's custom status in the picker, unless they are editing it.
  function fillCustomForm(custom) {
    const text = byId('custom-text');
    const emoji = byId('custom-emoji');
    if (!text || !emoji || customEdited) return;
    text.value = custom && custom.text ? custom.text : '';
    emoji.value = custom && custom.emoji ? custom.emoji : '';
  }

  // The "clear after" choice as a time, or undefined for never.
  function clearAfter(choice) {
    if (CLEAR_AFTER_MS[choice]) return new Date(Date.now() + CLEAR_AFTER_MS[choice]);
    if (choice === 'today') {
      const midnight = new Date();
      midnight.setHours(24, 0, 0, 0);
      return midnight;
    }
    return undefined;
  }

  function sameCustom(a, b) {
    const text = (c) => (c && c.text) || null;
    const emoji = (c) => (c && c.emoji) || null;
    return text(a) === text(b) && emoji(a) === emoji(b);
  }

  // Sends the picked status; the custom status rides along when one is
  // set or it changed (so a plain status change sends what it always did).
  function applyStatus() {
    const picker = byId('status-picker');
    if (!picker || !client()) return;
    const status = picker.value;
    const textInput = byId('custom-text');
    const emojiInput = byId('custom-emoji');
    const text = textInput ? textInput.value.trim() : '';
    const emoji = emojiInput ? emojiInput.value.trim() : '';
    const custom = text || emoji ? { text: text || null, emoji: emoji || null } : null;
    const mine = client().userId ? client().get(client().userId) : null;
    const options = {};
    const until = clearAfter(byId('clear-after') ? byId('clear-after').value : 'never');
    if (until && (status !== 'ONLINE' || custom)) options.until = until;
    if (custom || !sameCustom(mine && mine.custom, custom)) {
      options.text = custom ? custom.text : null;
      options.emoji = custom ? custom.emoji : null;
    }
    client().setStatus(status, options);
    customEdited = false;
  }

  function clearCustom() {
    if (!client()) return;
    byId('custom-text').value = '';
    byId('custom-emoji').value = '';
    client().clearCustomStatus();
    customEdited = false;
  }

  // "for 1 hour" is a shortcut of "clear after": each shows the other.
  function syncForHour(fromCheckbox) {
    const forHour = byId('status-for-hour');
    const select = byId('clear-after');
    if (!forHour || !select) return;
    if (fromCheckbox) select.value = forHour.checked ? '1h' : 'never';
    else forHour.checked = select.value === '1h';
  }

  // ------------------------------------------------------------- counts

  // A channel with a large scope: watch it with counts and show them.
  function watchCounts() {
    const panel = byId('occupancy');
    const scope = panel && panel.getAttribute('data-scope');
    if (!scope) return;
    if (!client()) {
      window.addEventListener('load', () => client() && watchCounts(), { once: true });
      return;
    }
    const show = (counts) => {
      for (const key of ['online', 'away', 'busy']) {
        const el = panel.querySelector('[data-count="' + key + '"]');
        if (el) el.textContent = String(counts[key]);
        panel.setAttribute('data-' + key, String(counts[key]));
      }
      panel.setAttribute('data-v', String(counts.v));
      panel.hidden = false;
    };
    client().on('occupancy', (counts) => {
      if (counts.scope === scope) show(counts);
    });
    // A plain snapshot: the scope is small, its members come one by one.
    client().on('snapshot', (snapshot) => {
      if (snapshot.scope === scope && !snapshot.occupancy) panel.hidden = true;
    });
    client().subscribe(scope, { counts: true });
  }

  function wire() {
    const apply = byId('status-apply');
    if (apply) apply.addEventListener('click', applyStatus);
    const clear = byId('custom-clear');
    if (clear) clear.addEventListener('click', clearCustom);
    const forHour = byId('status-for-hour');
    if (forHour) forHour.addEventListener('change', () => syncForHour(true));
    const select = byId('clear-after');
    if (select) select.addEventListener('change', () => syncForHour(false));
    for (const id of ['custom-text', 'custom-emoji']) {
      const input = byId(id);
      if (input) input.addEventListener('input', () => (customEdited = true));
    }
    document.querySelectorAll('.emoji-choice').forEach((button) => {
      button.addEventListener('click', () => {
        byId('custom-emoji').value = button.getAttribute('data-emoji') || '';
        customEdited = true;
      });
    });
    // Rows the server rendered, for users the client already knows.
    if (client()) {
      for (const [id, shown] of client().all()) paintDetails(id, shown);
      if (client().userId) fillCustomForm((client().get(client().userId) || {}).custom);
    }
    watchCounts();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', wire);
  } else {
    wire();
  }
})();
