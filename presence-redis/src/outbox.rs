//! Kept changes (see [kept changes](presence_core::store#kept-changes)):
//! the changes a node's durable readers have not acknowledged yet.
//!
//! A change is kept by the script that makes it ([`crate::scripts::APPLY`]),
//! in the stream of its user's shard for the node's name
//! ([`Keys::changes`]): the same slot as the user's record, so keeping it
//! is part of the change's atomic step, and a change retried after a
//! compare-and-set conflict is kept once. Its [`ChangeId`] is the shard and
//! the stream entry's id, `SHARD-MS-SEQ`: forgetting it knows the stream.
//! Reading a node's changes reads every shard's stream and merges them by
//! the entries' times; a user's changes, all in one stream, stay in the
//! order they were made.

use std::collections::BTreeMap;
use std::time::Duration;

use presence_core::NodeName;
use presence_core::store::{ChangeId, KeptChange, StoreError, Transition, Update};
use serde_json::json;

use crate::connection::Connection;
use crate::error::store_error;
use crate::keys::Keys;
use crate::pipelines::query_grouped;
use crate::shards::Shard;

/// The stream field holding the incarnation of the process that kept a
/// change (decimal).
const INCARNATION: &str = "i";

/// The stream field holding the change, as [`KeptChange::encode`] wrote it.
const CHANGE: &str = "c";

/// The fewest entries one read of a stream asks for: a reader leaving out
/// most processes' changes still reads in few round trips.
const MIN_PAGE: usize = 100;

/// The most entries one read of a stream asks for.
const MAX_PAGE: usize = 1000;

/// What [`crate::scripts::APPLY`]'s plan says to keep of `transition`
/// (its `keep`: the stream, the incarnation, the change as JSON), when
/// `update` asked to keep it and observers see it.
pub(crate) fn keep_plan(
    keys: &Keys,
    shard: Shard,
    update: &Update<'_>,
    transition: &Transition,
) -> Result<Option<serde_json::Value>, StoreError> {
    if !update.keep_change || !transition.changed() {
        return Ok(None);
    }
    let change = KeptChange::encode(transition)?;
    Ok(Some(json!([
        keys.changes(shard, &update.node.name),
        update.node.incarnation.to_string(),
        change
    ])))
}

/// The id of the change kept in `shard`'s stream under `entry`.
pub(crate) fn change_id(shard: Shard, entry: &str) -> ChangeId {
    ChangeId::new(format!("{}-{entry}", shard.0))
}

/// A node name's kept changes in one store: read and forgotten.
pub(crate) struct Outbox<'a> {
    /// Where the streams are.
    pub(crate) connection: &'a Connection,
    /// Their names.
    pub(crate) keys: &'a Keys,
    /// How long Redis may take to answer (for a timeout's error).
    pub(crate) timeout: Duration,
}

impl Outbox<'_> {
    /// Up to `limit` changes kept for `name` by its processes but those in
    /// `except`, oldest first: each shard's stream is read until it has
    /// `limit` of them or ends, then the shards are merged.
    pub(crate) async fn read(
        &self,
        name: &NodeName,
        except: &[u64],
        limit: usize,
    ) -> Result<Vec<KeptChange>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let page = limit.clamp(MIN_PAGE, MAX_PAGE);
        let mut cursors: Vec<Cursor> = self.keys.shards().map(Cursor::new).collect();
        loop {
            let reading: Vec<&mut Cursor> = cursors
                .iter_mut()
                .filter(|cursor| cursor.wants_more(limit))
                .collect();
            if reading.is_empty() {
                break;
            }
            self.read_pages(name, reading, page, except).await?;
        }
        let mut found: Vec<Entry> = cursors.into_iter().flat_map(|c| c.found).collect();
        found.sort_by_key(|entry| (entry.ms, entry.shard, entry.seq));
        found.truncate(limit);
        found.into_iter().map(Entry::decode).collect()
    }

    /// Reads the next page of each of `cursors`' streams (one round trip
    /// per pipeline), and moves each cursor on.
    async fn read_pages(
        &self,
        name: &NodeName,
        cursors: Vec<&mut Cursor>,
        page: usize,
        except: &[u64],
    ) -> Result<(), StoreError> {
        let starts: Vec<(Shard, String)> = cursors
            .iter()
            .map(|cursor| (cursor.shard, cursor.start()))
            .collect();
        let replies = query_grouped(
            self.connection,
            &starts,
            |(shard, _)| self.keys.group_of_shard(*shard),
            1,
            |pipe, (shard, start)| {
                pipe.cmd("XRANGE")
                    .arg(self.keys.changes(*shard, name))
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(page);
            },
        )
        .await
        .map_err(|e| store_error(e, self.timeout))?;
        for (cursor, reply) in cursors.into_iter().zip(replies) {
            let entries: Vec<(String, Vec<String>)> =
                redis::from_redis_value(reply).map_err(corrupt)?;
            cursor.take(entries, page, except)?;
        }
        Ok(())
    }

    /// Deletes the changes `ids` from `name`'s streams (one `XDEL` per
    /// shard, pipelined); an id already gone is passed by. Every id is
    /// checked before any is deleted.
    pub(crate) async fn forget(&self, name: &NodeName, ids: &[ChangeId]) -> Result<(), StoreError> {
        let mut by_shard: BTreeMap<Shard, Vec<&str>> = BTreeMap::new();
        for id in ids {
            let (shard, entry) = parse_change_id(id, self.keys.shard_count())?;
            by_shard.entry(shard).or_default().push(entry);
        }
        let by_shard: Vec<(Shard, Vec<&str>)> = by_shard.into_iter().collect();
        query_grouped(
            self.connection,
            &by_shard,
            |(shard, _)| self.keys.group_of_shard(*shard),
            1,
            |pipe, (shard, entries)| {
                pipe.cmd("XDEL")
                    .arg(self.keys.changes(*shard, name))
                    .arg(entries);
            },
        )
        .await
        .map_err(|e| store_error(e, self.timeout))?;
        Ok(())
    }
}

/// How far one shard's stream has been read, and what it had.
struct Cursor {
    /// The stream's shard.
    shard: Shard,
    /// The id of the last entry read, if any.
    after: Option<String>,
    /// Whether the stream may hold more entries.
    more: bool,
    /// The entries read of the processes asked for.
    found: Vec<Entry>,
}

impl Cursor {
    /// Nothing of `shard`'s stream read yet.
    fn new(shard: Shard) -> Self {
        Self {
            shard,
            after: None,
            more: true,
            found: Vec::new(),
        }
    }

    /// Whether to read on: the stream may hold more, and fewer than
    /// `limit` of the entries asked for were found.
    fn wants_more(&self, limit: usize) -> bool {
        self.more && self.found.len() < limit
    }

    /// Where the next `XRANGE` starts: the first entry, or just after the
    /// last one read.
    fn start(&self) -> String {
        self.after
            .as_ref()
            .map_or_else(|| "-".to_owned(), |id| format!("({id}"))
    }

    /// Takes a page of at most `page` entries: keeps those of processes
    /// not in `except`; a short page ends the stream.
    fn take(
        &mut self,
        entries: Vec<(String, Vec<String>)>,
        page: usize,
        except: &[u64],
    ) -> Result<(), StoreError> {
        self.more = entries.len() >= page;
        for (id, fields) in entries {
            let entry = Entry::read(self.shard, &id, fields)?;
            self.after = Some(id);
            if !except.contains(&entry.incarnation) {
                self.found.push(entry);
            }
        }
        Ok(())
    }
}

/// One kept change as a stream holds it, not decoded yet.
struct Entry {
    /// The stream's shard.
    shard: Shard,
    /// The entry id's time (ms).
    ms: u64,
    /// The entry id's sequence number within `ms`.
    seq: u64,
    /// The entry's id in its stream.
    id: String,
    /// The process that kept it.
    incarnation: u64,
    /// The change, as [`KeptChange::encode`] wrote it.
    json: String,
}

impl Entry {
    /// Entry `id` of `shard`'s stream, with its fields (name, value, …).
    fn read(shard: Shard, id: &str, fields: Vec<String>) -> Result<Self, StoreError> {
        let (ms, seq) = parse_entry_id(id)
            .ok_or_else(|| corrupt(format!("{id:?} is not a stream entry's id")))?;
        let mut incarnation = None;
        let mut json = None;
        let mut fields = fields.into_iter();
        while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
            match field.as_str() {
                INCARNATION => incarnation = Some(value),
                CHANGE => json = Some(value),
                _ => {}
            }
        }
        let (Some(incarnation), Some(json)) = (incarnation, json) else {
            return Err(corrupt(format!("kept change {id} lacks a field")));
        };
        Ok(Self {
            shard,
            ms,
            seq,
            id: id.to_owned(),
            incarnation: incarnation.parse().map_err(corrupt)?,
            json,
        })
    }

    /// The change as [`PresenceStore::kept_changes`](presence_core::store::PresenceStore::kept_changes) reads it.
    fn decode(self) -> Result<KeptChange, StoreError> {
        KeptChange::decode(
            change_id(self.shard, &self.id),
            self.incarnation,
            &self.json,
        )
    }
}

/// A stream entry's id, `MS-SEQ`, as its two numbers.
fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The shard and stream entry of a [`change_id`], in a store of
/// `shard_count` shards.
fn parse_change_id(id: &ChangeId, shard_count: u16) -> Result<(Shard, &str), StoreError> {
    let malformed =
        || StoreError::Backend(format!("{id:?} is not a Redis store's change id").into());
    let (shard, entry) = id.as_str().split_once('-').ok_or_else(malformed)?;
    let shard: u16 = shard.parse().map_err(|_| malformed())?;
    if shard >= shard_count || parse_entry_id(entry).is_none() {
        return Err(malformed());
    }
    Ok((Shard(shard), entry))
}

/// Stored data that did not decode, as [`StoreError::Corrupt`].
fn corrupt(error: impl Into<presence_core::store::BoxError>) -> StoreError {
    StoreError::corrupt(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_id_names_its_shard_and_entry() {
        let id = change_id(Shard(3), "1733400000000-0");
        assert_eq!(id.as_str(), "3-1733400000000-0");
        assert_eq!(
            parse_change_id(&id, 4).expect("well formed"),
            (Shard(3), "1733400000000-0")
        );
        assert_eq!(
            parse_entry_id("1733400000000-7"),
            Some((1_733_400_000_000, 7))
        );
    }

    #[test]
    fn a_malformed_change_id_is_an_error() {
        for id in [
            "",
            "3",
            "3-",
            "x-1-0",
            "-1-0",
            "4-1-0",
            "3-1",
            "3-1-x",
            "3-1-0-0",
            "70000-1-0",
        ] {
            assert!(
                matches!(
                    parse_change_id(&ChangeId::new(id), 4),
                    Err(StoreError::Backend(_))
                ),
                "{id:?}"
            );
        }
    }

    #[test]
    fn a_page_keeps_the_processes_asked_for_and_a_short_one_ends_the_stream() {
        let entry = |id: &str, incarnation: &str| {
            (
                id.to_owned(),
                vec!["i".into(), incarnation.into(), "c".into(), "{}".into()],
            )
        };
        let mut cursor = Cursor::new(Shard(1));
        cursor
            .take(vec![entry("5-0", "1"), entry("5-1", "2")], 2, &[1])
            .expect("page");
        assert!(cursor.more && cursor.wants_more(2));
        assert_eq!(cursor.start(), "(5-1");
        assert_eq!(cursor.found.len(), 1);
        assert_eq!(cursor.found[0].incarnation, 2);
        cursor.take(vec![entry("6-0", "3")], 2, &[1]).expect("page");
        assert!(!cursor.more && !cursor.wants_more(5));
        let lacking = Cursor::new(Shard(0)).take(vec![("1-0".into(), vec![])], 2, &[]);
        assert!(matches!(lacking, Err(StoreError::Corrupt(_))));
    }
}
