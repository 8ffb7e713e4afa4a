//! The demo's HTML: a base layout with the header (who you are, the status
//! picker, logout) and the shipped presence client, and the pages inside.
//!
//! Every rendered user is an element with `data-user-id` holding a
//! `.status-dot` (its `data-status` is the current status) and a
//! `.last-seen`; the client keeps both live (README.md#two-commands).
//! Member rows also hold a `.member-custom` (emoji and text of the custom
//! status) and a `.member-devices` (an icon per kind of live session),
//! which `assets/demo.js` keeps live from the client's events.

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use presence_core::{Status, UserPresence};

use crate::accounts::Login;

/// One member as a page shows them.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) user_id: String,
    pub(crate) name: String,
    pub(crate) presence: Option<UserPresence>,
}

/// What every page needs besides its own content.
pub(crate) struct Frame<'a> {
    pub(crate) login: &'a Login,
    pub(crate) me: Option<&'a UserPresence>,
    pub(crate) activity_throttle: Duration,
    pub(crate) now: DateTime<Utc>,
}

/// Escapes text for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "just now", "5 minutes ago", … as the browser client words it.
pub(crate) fn relative(last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(at) = last_seen else {
        return "never".into();
    };
    let seconds = (now - at).num_seconds().max(0);
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit} ago")
        } else {
            format!("{n} {unit}s ago")
        }
    };
    match seconds {
        0..45 => "just now".into(),
        45..3_600 => plural((seconds / 60).max(1), "minute"),
        3_600..86_400 => plural(seconds / 3_600, "hour"),
        86_400..172_800 => "yesterday".into(),
        _ => plural(seconds / 86_400, "day"),
    }
}

fn status_of(presence: Option<&UserPresence>) -> Status {
    presence.map_or(Status::Offline, |p| p.status)
}

/// A user's custom status as a row shows it: `.member-emoji` and
/// `.member-text` inside `.member-custom` (hidden when there is none).
/// `assets/demo.js` renders the same markup from the client's events.
pub(crate) fn custom_status(text: Option<&str>, emoji: Option<&str>) -> String {
    let hidden = if text.is_none() && emoji.is_none() {
        " hidden"
    } else {
        ""
    };
    format!(
        r#"<span class="member-custom"{hidden}><span class="member-emoji">{emoji}</span> <span class="member-text">{text}</span></span>"#,
        emoji = escape(emoji.unwrap_or_default()),
        text = escape(text.unwrap_or_default()),
    )
}

/// The icon of a kind of session; a kind of the host's own shows its name.
pub(crate) fn device_icon(kind: &str) -> &str {
    match kind {
        "web" => "🖥️",
        "mobile" => "📱",
        "desktop" => "💻",
        other => other,
    }
}

/// A user's live sessions as a row shows them: one `.device` per kind in
/// `.member-devices`, with `data-kind` and `data-status`.
pub(crate) fn devices(devices: &[(&str, Status)]) -> String {
    let mut html = String::from(r#"<span class="member-devices">"#);
    for (kind, status) in devices {
        let _ = write!(
            html,
            r#"<span class="device" data-kind="{kind}" data-status="{status}" title="{kind}: {status}">{icon}</span>"#,
            kind = escape(kind),
            status = status.as_str(),
            icon = escape(device_icon(kind)),
        );
    }
    html.push_str("</span>");
    html
}

/// One user's row, with the custom status and devices as the server
/// knows them (the client repaints them from its snapshot and events).
pub(crate) fn member_row(member: &Member, now: DateTime<Utc>) -> String {
    let status = status_of(member.presence.as_ref());
    let details = member.presence.as_ref().and_then(|p| p.details.as_deref());
    let custom = details.and_then(|d| d.custom.as_ref());
    let kinds: Vec<(&str, Status)> = details
        .map(|d| d.devices.iter().map(|(k, s)| (k.as_str(), *s)).collect())
        .unwrap_or_default();
    let last_seen = member.presence.as_ref().and_then(|p| p.last_seen);
    let stamp = last_seen.map_or(String::new(), |at| {
        let iso = at.to_rfc3339();
        format!(r#" data-last-seen="{iso}" title="{iso}""#)
    });
    format!(
        r#"<li class="member" data-user-id="{id}"><span class="status-dot status-{class}" data-status="{status}"></span> <span class="name">{name}</span> {custom} {devices} <span class="last-seen"{stamp}>{ago}</span></li>"#,
        id = escape(&member.user_id),
        class = status.as_str().to_ascii_lowercase(),
        name = escape(&member.name),
        custom = custom_status(
            custom.and_then(|c| c.text.as_deref()),
            custom.and_then(|c| c.emoji.as_deref())
        ),
        devices = devices(&kinds),
        ago = relative(last_seen, now),
    )
}

fn member_list(id: &str, live: &str, members: &[Member], now: DateTime<Utc>) -> String {
    let mut html = format!(r#"<ul id="{id}" class="members" data-live-members="{live}">"#);
    for member in members {
        html.push_str(&member_row(member, now));
    }
    html.push_str("</ul>");
    html
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{display:flex;gap:1.2em;align-items:center;padding:.6em 1.2em;background:#24292f;color:#fff;flex-wrap:wrap}
header a{color:#fff}
main{padding:1.2em;max-width:48em}
.members{list-style:none;padding:0}
.member{padding:.35em 0;border-bottom:1px solid #eee}
.status-dot{display:inline-block;width:.7em;height:.7em;border-radius:50%;background:#aaa;vertical-align:middle}
.status-dot[data-status="ONLINE"]{background:#2da44e}
.status-dot[data-status="AWAY"]{background:#d4a72c}
.status-dot[data-status="BUSY"]{background:#cf222e}
.status-dot[data-status="OFFLINE"]{background:#aaa}
.status-dot[data-status="UNKNOWN"]{background:transparent;border:1px dashed #999;box-sizing:border-box;opacity:.6}
.last-seen{color:#777;font-size:.85em}
.member-custom{color:#444;font-size:.9em}
.member-devices .device{font-size:.85em;margin-right:.15em}
.member-devices .device[data-status="AWAY"]{opacity:.55}
#custom-form input#custom-text{width:14em}
#custom-form input#custom-emoji{width:3em;text-align:center}
.emoji-choice{border:0;background:transparent;cursor:pointer;font-size:1.05em;padding:0 .1em}
#occupancy{font-weight:600}
form.inline{display:inline}
"#;

/// The base layout: header, content, and the presence client.
pub(crate) fn layout(frame: &Frame<'_>, title: &str, content: &str) -> String {
    let login = frame.login;
    let me_status = status_of(frame.me);
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · presence demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
<header>
  <strong>presence demo</strong>
  <nav><a id="nav-dashboard" href="/">Dashboard</a> · <a id="nav-members" href="/members">Members</a> · <a id="nav-channel-general" href="/channels/general">#general</a> · <a id="nav-channel-random" href="/channels/random">#random</a> · <a id="nav-channel-town-hall" href="/channels/{town_hall}">#{town_hall}</a></nav>
  <span id="me" data-user-id="{user}"><span class="status-dot" data-status="{me_status}"></span> {name} @ {org} {me_custom}</span>
  <span id="status-form">
    <select id="status-picker" aria-label="status">
      <option value="ONLINE">Online</option><option value="AWAY">Away</option>
      <option value="BUSY">Busy</option><option value="INVISIBLE">Invisible</option>
    </select>
    <span id="custom-form">
      <input id="custom-emoji" aria-label="status emoji" placeholder="🙂" maxlength="66" autocomplete="off">
      <span id="emoji-choices">{emoji_choices}</span>
      <input id="custom-text" aria-label="status text" placeholder="What's your status?" maxlength="100" autocomplete="off">
    </span>
    <label>clear after <select id="clear-after" aria-label="clear after">
      <option value="30m">30 minutes</option><option value="1h">1 hour</option>
      <option value="4h">4 hours</option><option value="today">Today</option>
      <option value="never" selected>Never</option>
    </select></label>
    <label><input type="checkbox" id="status-for-hour"> for 1 hour</label>
    <button id="status-apply" type="button">Set</button>
    <button id="custom-clear" type="button">Clear status</button>
  </span>
  <form id="logout-form" class="inline" method="post" action="/logout"><button id="logout" type="submit">Log out</button></form>
</header>
<main>
<h1>{title}</h1>
{content}
</main>
<script src="/presence/client.js" data-autoconnect data-activity-throttle-ms="{throttle}"></script>
<script src="/static/demo.js"></script>
</body></html>"#,
        title = escape(title),
        user = escape(&login.user),
        name = escape(&login.display_name),
        org = escape(&login.org),
        me_custom = custom_status(None, None),
        emoji_choices = emoji_choices(),
        town_hall = TOWN_HALL,
        throttle = frame.activity_throttle.as_millis(),
    );
    html
}

/// The emojis the status picker offers with one click.
const EMOJI_CHOICES: [(&str, &str); 7] = [
    ("📅", "in a meeting"),
    ("🏖️", "on vacation"),
    ("🤒", "out sick"),
    ("🎧", "focusing"),
    ("🍔", "lunch"),
    ("🚆", "commuting"),
    ("🏠", "working remotely"),
];

fn emoji_choices() -> String {
    EMOJI_CHOICES
        .iter()
        .map(|(emoji, title)| {
            format!(
                r#"<button type="button" class="emoji-choice" data-emoji="{emoji}" title="{title}">{emoji}</button>"#
            )
        })
        .collect()
}

/// The channel whose page shows the counts of a large scope.
pub(crate) const TOWN_HALL: &str = "town-hall";

/// The presence scope a channel page watches with `counts: true`, if any:
/// the town hall's is the whole organisation (large with
/// `PRESENCE_DEMO_CROWD`); the other channels show its presence as rows.
pub(crate) fn counted_scope<'a>(channel: &str, org: &'a str) -> Option<&'a str> {
    (channel == TOWN_HALL).then_some(org)
}

/// "N online · N away · N busy" of a counted scope, hidden until the
/// first `occupancy` event fills it (and while the scope is small).
fn occupancy(scope: &str) -> String {
    format!(
        r#"<p id="occupancy" data-scope="{scope}" hidden><span data-count="online">0</span> online · <span data-count="away">0</span> away · <span data-count="busy">0</span> busy</p>"#,
        scope = escape(scope),
    )
}

/// `/`: who is around right now.
pub(crate) fn dashboard(frame: &Frame<'_>, online: &[Member]) -> String {
    let content = format!(
        r#"<p>Welcome, {name}. Open this app in another browser, sign in as someone else of <b>{org}</b>, and watch the dots.</p>
<h2>Around now</h2>{list}"#,
        name = escape(&frame.login.display_name),
        org = escape(&frame.login.org),
        list = member_list("online", "online", online, frame.now),
    );
    layout(frame, "Dashboard", &content)
}

/// `/members`: every member of the organisation.
pub(crate) fn members(frame: &Frame<'_>, members: &[Member]) -> String {
    let content = format!(
        r#"<p>Everyone in <b>{org}</b>.</p>{list}"#,
        org = escape(&frame.login.org),
        list = member_list("members", "all", members, frame.now),
    );
    layout(frame, "Members", &content)
}

/// `/channels/{name}`: a chat room; presence is the organisation's, not the
/// room's, so leaving the room changes nothing.
pub(crate) fn channel(frame: &Frame<'_>, channel: &str, members: &[Member]) -> String {
    let content = format!(
        r#"<p>This is #{name}. Messages are not part of the demo; presence is.</p>
{counts}<h2>Members</h2>{list}"#,
        name = escape(channel),
        counts = counted_scope(channel, &frame.login.org).map_or(String::new(), occupancy),
        list = member_list("channel-members", "all", members, frame.now),
    );
    layout(frame, &format!("#{channel}"), &content)
}

/// `/login`.
pub(crate) fn login(error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!(r#"<p class="error" role="alert">{}</p>"#, escape(e))
    });
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · presence demo</title>
<style>{STYLE}</style></head>
<body><main>
<h1>Sign in</h1>
{error}
<form id="login-form" method="post" action="/login">
  <p><label>Username <input name="username" required maxlength="32" autofocus></label></p>
  <p><label>Organisation <input name="org" required maxlength="32" value="acme"></label></p>
  <p><button type="submit">Sign in</button></p>
</form>
<p>No password: the demo is about presence, not auth.</p>
</main></body></html>"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_the_dom_contract_and_escape_names() {
        let now = Utc::now();
        let member = Member {
            user_id: "a\"b".into(),
            name: "<b>".into(),
            presence: Some(UserPresence {
                user_id: "a\"b".into(),
                status: Status::Away,
                last_seen: Some(now - chrono::TimeDelta::minutes(5)),
                v: 2,
                details: None,
            }),
        };
        let row = member_row(&member, now);
        assert!(row.contains(r#"data-user-id="a&quot;b""#), "{row}");
        assert!(
            row.contains(r#"class="status-dot status-away" data-status="AWAY""#),
            "{row}"
        );
        assert!(row.contains("&lt;b&gt;"), "{row}");
        assert!(row.contains(">5 minutes ago</span>"), "{row}");
        assert!(
            row.contains(r#"<span class="member-custom" hidden>"#),
            "{row}"
        );
        assert!(
            row.contains(r#"<span class="member-devices"></span>"#),
            "{row}"
        );
    }

    #[test]
    fn custom_status_and_devices_are_escaped_and_marked_for_the_script() {
        let custom = custom_status(Some("In a <meeting>"), Some("📅"));
        assert_eq!(
            custom,
            r#"<span class="member-custom"><span class="member-emoji">📅</span> <span class="member-text">In a &lt;meeting&gt;</span></span>"#
        );
        let shown = devices(&[
            ("web", Status::Online),
            ("mobile", Status::Away),
            ("tv\"", Status::Busy),
        ]);
        assert!(
            shown.contains(
                r#"data-kind="mobile" data-status="AWAY" title="mobile: AWAY">📱</span>"#
            ),
            "{shown}"
        );
        assert!(shown.contains(r#"data-kind="web""#), "{shown}");
        assert!(
            shown.contains(
                r#"data-kind="tv&quot;" data-status="BUSY" title="tv&quot;: BUSY">tv&quot;</span>"#
            ),
            "{shown}"
        );
    }

    #[test]
    fn only_the_town_hall_counts() {
        assert_eq!(counted_scope("town-hall", "acme"), Some("acme"));
        assert_eq!(counted_scope("general", "acme"), None);
        assert!(
            occupancy("town-hall")
                .starts_with(r#"<p id="occupancy" data-scope="town-hall" hidden>"#)
        );
    }

    #[test]
    fn relative_times_read_like_the_client() {
        let now = Utc::now();
        let ago = |s: i64| relative(Some(now - chrono::TimeDelta::seconds(s)), now);
        assert_eq!(relative(None, now), "never");
        assert_eq!(ago(3), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(7_200), "2 hours ago");
        assert_eq!(ago(90_000), "yesterday");
        assert_eq!(ago(300_000), "3 days ago");
    }
}
