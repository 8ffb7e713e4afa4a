//! What a user shows beyond their status (docs/rules.md#details): a custom
//! status, the kinds of device they are connected from, and the small app
//! state their sessions set. Every value here is checked when it is made,
//! so nothing a client sends can grow what a store keeps without limit.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use unicode_segmentation::UnicodeSegmentation;

use crate::status::Status;

/// Most characters (Unicode scalar values) a custom status text may hold.
pub const MAX_TEXT_CHARS: usize = 100;
/// Most bytes a custom status emoji may take (one grapheme, a long ZWJ
/// sequence included).
pub const MAX_EMOJI_BYTES: usize = 32;
/// Most bytes of a session's app state, as compact JSON.
pub const MAX_STATE_BYTES: usize = 1024;
/// Most bytes of a user's merged app state, as compact JSON: the states of
/// the sessions set last that fit.
pub const MAX_MERGED_STATE_BYTES: usize = 4 * MAX_STATE_BYTES;
/// Most characters of a session kind.
pub const MAX_KIND_CHARS: usize = 32;

/// Why a custom status, session kind or app state was refused. Each has a
/// stable [`DetailsError::code`] a client may match on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DetailsError {
    /// The text is longer than [`MAX_TEXT_CHARS`].
    #[error("the status text is longer than {limit} characters")]
    TextTooLong {
        /// The limit.
        limit: usize,
    },
    /// The text holds control characters (a line break, a NUL, …).
    #[error("the status text holds control characters")]
    BadText,
    /// Not one emoji (one grapheme, not plain ASCII) nor a `:name:`.
    #[error("the emoji must be one emoji or a :name: (letters, digits, _ + -)")]
    BadEmoji,
    /// A custom status with neither text nor emoji (clear it instead).
    #[error("a custom status needs a text or an emoji")]
    EmptyCustomStatus,
    /// A custom status asked to expire at a time already past.
    #[error("the custom status would expire at {until}, which is not in the future")]
    ExpiryInPast {
        /// The rejected expiry.
        until: DateTime<Utc>,
    },
    /// A session kind that is not 1 to 32 of `a-z 0-9 _ -`.
    #[error("a session kind is 1 to {MAX_KIND_CHARS} of a-z, 0-9, _ and -")]
    BadKind,
    /// App state that is not a JSON object.
    #[error("the session state must be a JSON object")]
    StateNotObject,
    /// App state larger than [`MAX_STATE_BYTES`] as compact JSON.
    #[error("the session state is larger than {limit} bytes")]
    StateTooLarge {
        /// The limit.
        limit: usize,
    },
}

impl DetailsError {
    /// The stable code of docs/protocol.md#error-frames.
    pub fn code(&self) -> &'static str {
        match self {
            DetailsError::TextTooLong { .. } => "text_too_long",
            DetailsError::BadText => "bad_text",
            DetailsError::BadEmoji => "bad_emoji",
            DetailsError::EmptyCustomStatus => "empty_custom_status",
            DetailsError::ExpiryInPast { .. } => "bad_until",
            DetailsError::BadKind => "bad_kind",
            DetailsError::StateNotObject => "state_not_object",
            DetailsError::StateTooLarge { .. } => "state_too_large",
        }
    }
}

/// A status the user wrote: a short text, an emoji, or both, until an
/// optional expiry (docs/rules.md#custom-status). It shows beside the
/// status while the user is not `OFFLINE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CustomStatus {
    /// The text, at most [`MAX_TEXT_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// One emoji (a grapheme) or a `:name:`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    /// When it clears by itself; `None` keeps it until changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl CustomStatus {
    /// A checked custom status. The text is trimmed (an empty one is no
    /// text); at least a text or an emoji is needed.
    ///
    /// ```
    /// use presence_core::CustomStatus;
    ///
    /// let meeting = CustomStatus::new(Some("In a meeting".into()), Some("📅".into()), None).unwrap();
    /// assert_eq!(meeting.emoji.as_deref(), Some("📅"));
    /// assert!(CustomStatus::new(None, Some("a".into()), None).is_err());
    /// assert!(CustomStatus::new(Some("x".repeat(101)), None, None).is_err());
    /// ```
    pub fn new(
        text: Option<String>,
        emoji: Option<String>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Self, DetailsError> {
        let text = match text {
            Some(text) => check_text(&text)?,
            None => None,
        };
        let emoji = match emoji {
            Some(emoji) if emoji.is_empty() => None,
            Some(emoji) => Some(check_emoji(emoji)?),
            None => None,
        };
        if text.is_none() && emoji.is_none() {
            return Err(DetailsError::EmptyCustomStatus);
        }
        Ok(Self { text, emoji, until })
    }

    /// Whether it still shows at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

fn check_text(text: &str) -> Result<Option<String>, DetailsError> {
    let text = text.trim();
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(DetailsError::TextTooLong {
            limit: MAX_TEXT_CHARS,
        });
    }
    if text.chars().any(char::is_control) {
        return Err(DetailsError::BadText);
    }
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

fn check_emoji(emoji: String) -> Result<String, DetailsError> {
    if let Some(name) = emoji
        .strip_prefix(':')
        .and_then(|rest| rest.strip_suffix(':'))
    {
        let fits = (1..=64).contains(&name.len())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'+' | b'-')
            });
        return if fits {
            Ok(emoji)
        } else {
            Err(DetailsError::BadEmoji)
        };
    }
    let one_grapheme = emoji.graphemes(true).count() == 1;
    let fits = one_grapheme
        && emoji.len() <= MAX_EMOJI_BYTES
        && !emoji.is_ascii()
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control());
    if fits {
        Ok(emoji)
    } else {
        Err(DetailsError::BadEmoji)
    }
}

/// What kind of client a session is (`web`, `mobile`, `desktop`, or the
/// host's own word): watchers see a status per kind. The host sets it when
/// it opens the session; a client never picks it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionKind(String);

impl SessionKind {
    /// A browser tab.
    pub fn web() -> Self {
        Self("web".into())
    }

    /// A phone or tablet app (or a phone's browser).
    pub fn mobile() -> Self {
        Self("mobile".into())
    }

    /// A desktop app.
    pub fn desktop() -> Self {
        Self("desktop".into())
    }

    /// A kind of the host's own: 1 to 32 of `a-z`, `0-9`, `_`, `-`.
    pub fn new(kind: impl Into<String>) -> Result<Self, DetailsError> {
        let kind = kind.into();
        let fits = (1..=MAX_KIND_CHARS).contains(&kind.len())
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if fits {
            Ok(Self(kind))
        } else {
            Err(DetailsError::BadKind)
        }
    }

    /// The kind's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SessionKind {
    type Error = DetailsError;

    fn try_from(kind: String) -> Result<Self, Self::Error> {
        SessionKind::new(kind)
    }
}

impl From<SessionKind> for String {
    fn from(kind: SessionKind) -> Self {
        kind.0
    }
}

impl fmt::Display for SessionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session's app state: a JSON object of at most [`MAX_STATE_BYTES`]
/// (compact), such as `{"in_call":true}`. Watchers see the states of a
/// user's sessions merged (also an `AppState`, of at most
/// [`MAX_MERGED_STATE_BYTES`]). Kept as its compact JSON text: a few
/// bytes more than the JSON, not a tree of maps.
#[derive(Clone, Debug)]
pub struct AppState(Box<RawValue>);

impl AppState {
    /// Checks `value`: a JSON object no larger than [`MAX_STATE_BYTES`].
    ///
    /// ```
    /// use presence_core::AppState;
    /// use serde_json::json;
    ///
    /// assert!(AppState::new(json!({"in_call": true})).is_ok());
    /// assert!(AppState::new(json!([1, 2])).is_err());
    /// assert!(AppState::new(json!({"x": "y".repeat(2000)})).is_err());
    /// ```
    pub fn new(value: Value) -> Result<Self, DetailsError> {
        Self::within(value, MAX_STATE_BYTES)
    }

    /// `value` if it is an object of at most `limit` bytes of JSON.
    fn within(value: Value, limit: usize) -> Result<Self, DetailsError> {
        let Value::Object(map) = value else {
            return Err(DetailsError::StateNotObject);
        };
        Self::of_map(&map, limit)
    }

    /// `map` as a state, if it takes at most `limit` bytes of JSON.
    pub(crate) fn of_map(map: &Map<String, Value>, limit: usize) -> Result<Self, DetailsError> {
        let json = serde_json::to_string(map).map_err(|_| DetailsError::StateNotObject)?;
        if json.len() > limit {
            return Err(DetailsError::StateTooLarge { limit });
        }
        RawValue::from_string(json)
            .map(Self)
            .map_err(|_| DetailsError::StateNotObject)
    }

    /// The object, parsed.
    pub fn to_map(&self) -> Map<String, Value> {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }

    /// The object as compact JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    /// Adds this state's keys that `merged` lacks (it holds newer
    /// states), if they take at most `room` more bytes of JSON; the bytes
    /// added, or `None` (nothing added) when they do not fit.
    pub(crate) fn merge_under(
        &self,
        merged: &mut Map<String, Value>,
        room: usize,
    ) -> Option<usize> {
        let new: Vec<(String, Value)> = self
            .to_map()
            .into_iter()
            .filter(|(key, _)| !merged.contains_key(key))
            .collect();
        let grown: usize = new
            .iter()
            .map(|(key, value)| {
                // "key":value, — quotes, colon and comma around the two.
                let value = serde_json::to_vec(value).map_or(usize::MAX / 4, |v| v.len());
                serde_json::to_vec(key).map_or(usize::MAX / 4, |k| k.len()) + value + 2
            })
            .sum();
        if grown > room {
            return None;
        }
        merged.extend(new);
        Some(grown)
    }
}

impl PartialEq for AppState {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Eq for AppState {}

impl Serialize for AppState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AppState {
    /// A stored state: an object, of at most [`MAX_MERGED_STATE_BYTES`]
    /// (a merged one is stored with what observers were shown).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        AppState::within(value, MAX_MERGED_STATE_BYTES).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<Value> for AppState {
    type Error = DetailsError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        AppState::new(value)
    }
}

impl From<AppState> for Value {
    fn from(state: AppState) -> Self {
        Value::Object(state.to_map())
    }
}

/// The kinds of a user's live sessions, each with its status: a JSON
/// object on the wire (`{"mobile":"AWAY","web":"ONLINE"}`), a short list
/// sorted by kind in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices(Vec<(SessionKind, Status)>);

impl Devices {
    /// Each kind and its status, in order of kind.
    pub fn iter(&self) -> std::slice::Iter<'_, (SessionKind, Status)> {
        self.0.iter()
    }

    /// The status of one kind, if a session of it is live.
    pub fn get(&self, kind: &str) -> Option<Status> {
        self.0
            .iter()
            .find(|(known, _)| known.as_str() == kind)
            .map(|(_, status)| *status)
    }

    /// How many kinds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no session has a kind.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a session of `kind` showing `status`: a kind shows its most
    /// present session ([`Status::max_by_rank`]).
    pub(crate) fn note(&mut self, kind: &SessionKind, status: Status) {
        match self.0.binary_search_by(|(known, _)| known.cmp(kind)) {
            Ok(at) => self.0[at].1 = self.0[at].1.max_by_rank(status),
            Err(at) => self.0.insert(at, (kind.clone(), status)),
        }
    }
}

impl FromIterator<(SessionKind, Status)> for Devices {
    fn from_iter<I: IntoIterator<Item = (SessionKind, Status)>>(kinds: I) -> Self {
        let mut devices = Devices::default();
        for (kind, status) in kinds {
            devices.note(&kind, status);
        }
        devices
    }
}

impl Serialize for Devices {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (kind, status) in &self.0 {
            map.serialize_entry(kind.as_str(), status)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Devices {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let kinds = std::collections::BTreeMap::<SessionKind, Status>::deserialize(deserializer)?;
        Ok(kinds.into_iter().collect())
    }
}

/// What observers see of a user beyond the status (docs/rules.md#details).
/// Empty for a user who shows `OFFLINE`, invisible ones included: none of it
/// leaks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Details {
    /// The user's custom status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomStatus>,
    /// Each kind of session connected, with its status: `ONLINE` or `AWAY`
    /// from that kind's own activity, or the user's manual `BUSY`/`AWAY`.
    #[serde(default, skip_serializing_if = "Devices::is_empty")]
    pub devices: Devices,
    /// The app states of the user's sessions merged: where two set one
    /// key, the one set last wins; at most [`MAX_MERGED_STATE_BYTES`]
    /// (the states set last that fit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AppState>,
}

impl Details {
    /// Whether there is nothing to show.
    pub fn is_empty(&self) -> bool {
        self.custom.is_none() && self.devices.is_empty() && self.state.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_of_a_hundred_characters_fits_and_one_more_does_not() {
        let hundred: String = "é".repeat(100);
        assert!(CustomStatus::new(Some(hundred.clone()), None, None).is_ok());
        assert_eq!(
            CustomStatus::new(Some(hundred + "é"), None, None),
            Err(DetailsError::TextTooLong { limit: 100 })
        );
        assert_eq!(
            CustomStatus::new(Some("two\nlines".into()), None, None),
            Err(DetailsError::BadText)
        );
        assert_eq!(
            CustomStatus::new(Some("   ".into()), None, None),
            Err(DetailsError::EmptyCustomStatus)
        );
    }

    #[test]
    fn an_emoji_is_one_grapheme_or_a_name() {
        for good in ["📅", "👩‍👩‍👧‍👦", "🏖️", "🇫🇷", ":calendar:", ":+1:"]
        {
            assert!(
                CustomStatus::new(None, Some(good.into()), None).is_ok(),
                "{good}"
            );
        }
        for bad in ["a", "📅📅", ":Cal:", "::", " 📅", "x📅", ":a b:"] {
            assert_eq!(
                CustomStatus::new(None, Some(bad.into()), None),
                Err(DetailsError::BadEmoji),
                "{bad}"
            );
        }
        let combining = format!("e{}", "\u{301}".repeat(40));
        assert_eq!(
            CustomStatus::new(None, Some(combining), None),
            Err(DetailsError::BadEmoji)
        );
    }

    #[test]
    fn state_is_a_small_object() {
        assert_eq!(
            AppState::new(json!("in_call")),
            Err(DetailsError::StateNotObject)
        );
        let big = json!({"k": "v".repeat(MAX_STATE_BYTES)});
        assert_eq!(
            AppState::new(big),
            Err(DetailsError::StateTooLarge { limit: 1024 })
        );
        // Newest first: the newer "page" stays.
        let mut merged = Map::new();
        let newer = AppState::new(json!({"page": "b"})).unwrap();
        let older = AppState::new(json!({"in_call": true, "page": "a"})).unwrap();
        let first = newer.merge_under(&mut merged, 100).unwrap();
        let second = older.merge_under(&mut merged, 100 - first).unwrap();
        assert_eq!(
            Value::Object(merged.clone()),
            json!({"in_call": true, "page": "b"})
        );
        assert_eq!(
            serde_json::to_vec(&merged).unwrap().len(),
            2 + first + second - 1,
            "the bytes counted are the JSON's (less the last comma)"
        );
        let big = AppState::new(json!({"x": "y".repeat(50)})).unwrap();
        assert_eq!(big.merge_under(&mut merged, 10), None);
        assert!(!merged.contains_key("x"));
    }

    #[test]
    fn kinds_are_short_lower_case_words() {
        assert_eq!(SessionKind::new("watch").unwrap().as_str(), "watch");
        assert_eq!(SessionKind::new("Web"), Err(DetailsError::BadKind));
        assert_eq!(SessionKind::new(""), Err(DetailsError::BadKind));
        assert!(serde_json::from_str::<SessionKind>("\"a b\"").is_err());
    }
}
