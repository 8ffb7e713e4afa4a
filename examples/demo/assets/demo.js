// The demo's own page script: the status picker in the header, and live
// rows for members who sign in for the first time after the page loaded.
// Presence itself (dots, "last seen", heartbeats) is the shipped client's.
(function () {
  'use strict';

  function client() {
    return window.presence;
  }

  function row(userId) {
    const li = document.createElement('li');
    li.className = 'member';
    li.setAttribute('data-user-id', userId);
    const dot = document.createElement('span');
    dot.className = 'status-dot';
    dot.setAttribute('data-status', 'OFFLINE');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = userId;
    const lastSeen = document.createElement('span');
    lastSeen.className = 'last-seen';
    lastSeen.textContent = 'never';
    li.append(dot, ' ', name, ' ', lastSeen);
    return li;
  }

  // A member we have no row for: add one, then let the client paint it.
  document.addEventListener('presence:change', (event) => {
    const detail = event.detail || {};
    if (typeof detail.user_id !== 'string') return;
    let added = false;
    document.querySelectorAll('ul[data-live-members]').forEach((list) => {
      const selector = '[data-user-id="' + CSS.escape(detail.user_id) + '"]';
      if (list.querySelector(selector)) return;
      if (list.getAttribute('data-live-members') === 'online' && detail.status === 'OFFLINE') return;
      list.appendChild(row(detail.user_id));
      added = true;
    });
    if (added && client()) client().refresh();
  });

  function applyStatus() {
    const picker = document.getElementById('status-picker');
    const forHour = document.getElementById('status-for-hour');
    if (!picker || !client()) return;
    const status = picker.value;
    const until = forHour && forHour.checked && status !== 'ONLINE'
      ? new Date(Date.now() + 3600 * 1000)
      : undefined;
    client().setStatus(status, until);
  }

  function wire() {
    const apply = document.getElementById('status-apply');
    if (apply) apply.addEventListener('click', applyStatus);
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', wire);
  } else {
    wire();
  }
})();
