//! Commands spread over shards, sent in as few round trips as the
//! deployment allows: one pipeline on a single Redis; on a Redis Cluster,
//! where a pipeline must stay within one slot, one pipeline per shard, all
//! in flight at once.

use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use redis::{Pipeline, Value};

use crate::connection::Connection;

/// Sends a pipeline per group: for every item, `add` appends its
/// `per_item` commands to the pipeline of the item's group (`group_of`;
/// see [`crate::keys::Keys::group_of_user`]). Returns every reply in item
/// order, `per_item` per item, whatever the groups.
pub(crate) async fn query_grouped<I>(
    connection: &Connection,
    items: &[I],
    group_of: impl Fn(&I) -> usize,
    per_item: usize,
    add: impl Fn(&mut Pipeline, &I),
) -> redis::RedisResult<Vec<Value>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<usize> = items.iter().map(&group_of).collect();
    if groups.iter().all(|group| *group == groups[0]) {
        // One group (always, on a single Redis): no reordering.
        let mut pipe = Pipeline::with_capacity(items.len() * per_item);
        for item in items {
            add(&mut pipe, item);
        }
        return pipe.query_async(&mut connection.clone()).await;
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (index, group) in groups.into_iter().enumerate() {
        members.entry(group).or_default().push(index);
    }
    let replies = try_join_all(members.values().map(|indexes| {
        let mut pipe = Pipeline::with_capacity(indexes.len() * per_item);
        for &index in indexes {
            add(&mut pipe, &items[index]);
        }
        let mut connection = connection.clone();
        async move { pipe.query_async::<Vec<Value>>(&mut connection).await }
    }))
    .await?;
    let mut ordered: Vec<Value> = vec![Value::Nil; items.len() * per_item];
    for (indexes, replies) in members.values().zip(replies) {
        if replies.len() != indexes.len() * per_item {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "a pipeline's reply count differs from its commands",
            )));
        }
        let mut replies = replies.into_iter();
        for &index in indexes {
            for slot in &mut ordered[index * per_item..(index + 1) * per_item] {
                *slot = replies.next().unwrap_or(Value::Nil);
            }
        }
    }
    Ok(ordered)
}
