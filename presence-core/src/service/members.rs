//! [`Presence::members`]: a scope's members page by page, for admin pages
//! and bots (docs/rules.md#members).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::Error;
use crate::event::UserPresence;
use crate::ids::{ScopeId, UserId};
use crate::service::Presence;

/// The largest page [`Presence::members`] gives.
pub const MAX_MEMBERS_PAGE: usize = 1000;

/// What a cursor says before the user id: a cursor of another kind (or
/// version) is refused rather than misread.
const CURSOR_TAG: &str = "m1:";

/// One page of a scope's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersPage {
    /// Members who are not `OFFLINE`, in order of user id.
    pub members: Vec<UserPresence>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl Presence {
    /// Up to `limit` members of `scope` who are not `OFFLINE`, in order of
    /// user id, after `cursor` (from the page before; `None` for the
    /// first). `limit` is 1 to [`MAX_MEMBERS_PAGE`]. A member who joins or
    /// leaves between pages is listed or not; no member present on both
    /// sides of the walk is listed twice or skipped.
    pub async fn members(
        &self,
        scope: &ScopeId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, Error> {
        if !(1..=MAX_MEMBERS_PAGE).contains(&limit) {
            return Err(Error::BadLimit {
                limit,
                max: MAX_MEMBERS_PAGE,
            });
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let mut members = self
            .timed(
                "scope_members_page",
                self.inner
                    .store
                    .scope_members_page(scope, after.as_ref(), limit + 1),
            )
            .await?;
        let next_cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().map(|last| encode_cursor(&last.user_id))
        } else {
            None
        };
        Ok(MembersPage {
            members,
            next_cursor,
        })
    }
}

fn encode_cursor(after: &UserId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{after}"))
}

fn decode_cursor(cursor: &str) -> Result<UserId, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| Error::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| Error::BadCursor)?;
    let user = text.strip_prefix(CURSOR_TAG).ok_or(Error::BadCursor)?;
    if user.is_empty() {
        return Err(Error::BadCursor);
    }
    Ok(UserId::from(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_garbage_does_not() {
        let cursor = encode_cursor(&"bob/é".into());
        assert_eq!(decode_cursor(&cursor).unwrap(), UserId::from("bob/é"));
        for garbage in ["", "!!!", "bTE6", "YWxpY2U", "%%%%", "m1:bob"] {
            assert!(
                matches!(decode_cursor(garbage), Err(Error::BadCursor)),
                "{garbage}"
            );
        }
    }
}
