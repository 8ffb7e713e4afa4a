//! The store's epoch over every master holding presence keys, and the
//! periodic check that notices a master that lost data when no call fails.
//!
//! Each slot the store writes (the global one, and each shard's) has an
//! epoch token: the first node to read it writes it. The epoch combines
//! each token with the replication id of the master serving its slot, so
//! it changes when any of them restarted without its data (the token is
//! gone) or failed over to a replica (a new replication id: the replica
//! may have missed writes), even when the others are fine.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::try_join_all;
use presence_core::store::kit::HeartbeatWriter;
use presence_core::{Epoch, SessionId};

use crate::connection::Connection;
use crate::keys::Keys;
use crate::scripts;
use crate::shards::fnv1a;

/// Reads the epoch: each token (see [`Keys::epoch_tokens`]) and its
/// master's replication id, all at once. With one token, `TOKEN.REPLID`,
/// as before shards; with several, the global token and a digest of all.
pub(crate) async fn read_epoch(connection: &Connection, keys: &Keys) -> redis::RedisResult<Epoch> {
    let fresh = SessionId::random();
    let parts: Vec<(String, String)> = try_join_all(keys.epoch_tokens().into_iter().map(|key| {
        let mut connection = connection.clone();
        let fresh = fresh.as_str().to_owned();
        async move {
            scripts::EPOCH
                .key(key)
                .arg(fresh)
                .invoke_async::<(String, String)>(&mut connection)
                .await
        }
    }))
    .await?;
    Ok(Epoch::from(combine(&parts)))
}

/// One epoch string of every (token, replication id).
fn combine(parts: &[(String, String)]) -> String {
    match parts {
        [] => String::new(),
        [(token, id)] if id.is_empty() => token.clone(),
        [(token, id)] => format!("{token}.{id}"),
        [(first, _), ..] => {
            let all: String = parts
                .iter()
                .map(|(token, id)| format!("{token}:{id};"))
                .collect();
            format!("{first}.{:016x}", fnv1a(all.as_bytes()))
        }
    }
}

/// Reads the epoch every `interval` until the store is dropped, and
/// resyncs the feed when it changed: on a cluster, one master can fail
/// over or restart empty while the feed's node stays up, so no reconnect
/// would tell.
pub(crate) fn spawn_check<S>(store: &Arc<S>, interval: Duration)
where
    S: HeartbeatWriter<Box<str>> + 'static,
{
    tokio::spawn(check(Arc::downgrade(store), interval));
}

async fn check<S>(store: Weak<S>, interval: Duration)
where
    S: HeartbeatWriter<Box<str>> + 'static,
{
    let interval = interval.max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        match store.lost_its_data().await {
            Ok(true) => {
                tracing::warn!(
                    "a Redis master lost presence data (failed over, or restarted empty); resyncing"
                );
                store.resync();
            }
            Ok(false) => {}
            Err(error) => tracing::debug!(%error, "reading the presence store's epoch failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(of: &[(&str, &str)]) -> Vec<(String, String)> {
        of.iter()
            .map(|(t, i)| ((*t).to_owned(), (*i).to_owned()))
            .collect()
    }

    #[test]
    fn one_token_reads_as_before_shards() {
        assert_eq!(combine(&parts(&[("tok", "replid")])), "tok.replid");
        assert_eq!(combine(&parts(&[("tok", "")])), "tok");
    }

    #[test]
    fn any_shards_token_or_master_changes_the_epoch() {
        let before = combine(&parts(&[("g", "m1"), ("s0", "m1"), ("s1", "m2")]));
        assert!(before.starts_with("g."));
        for after in [
            [("g", "m1"), ("s0", "m1"), ("s1", "m3")],
            [("g", "m1"), ("s0b", "m1"), ("s1", "m2")],
        ] {
            assert_ne!(combine(&parts(&after)), before);
        }
        assert_eq!(
            combine(&parts(&[("g", "m1"), ("s0", "m1"), ("s1", "m2")])),
            before
        );
    }
}
