//! The demo's webhook (`PRESENCE_WEBHOOK_URL`): a `POST` of JSON to the
//! host's URL each time a user goes `OFFLINE`, fed by
//! `Presence::changes()` with durable changes: the store keeps each change
//! until this reader has asked for the next, so an `OFFLINE` a killed run
//! had not posted is posted by the next run of the node (or by the node
//! that ends the dead one's sessions). An example of a server-side hook: a
//! real app would queue, sign and retry; this one posts once, with a
//! timeout, and logs a failure.

use std::time::Duration;

use presence_core::{Change, Presence};
use serde_json::json;

/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the receiver gets when a user goes `OFFLINE`.
pub(crate) fn offline_body(change: &Change) -> serde_json::Value {
    json!({
        "event": "user.offline",
        "user_id": change.user.as_str(),
        "status": change.to.as_str(),
        "last_seen": change.last_seen,
        "v": change.version,
        "at": change.at,
    })
}

/// Posts every `OFFLINE` this node makes to `url`, until the service is
/// gone. Posts go one at a time, in the order of the changes.
pub(crate) fn spawn(presence: &Presence, url: String) {
    let mut changes = presence.changes();
    let client = reqwest::Client::new();
    tokio::spawn(async move {
        while let Some(next) = changes.recv().await {
            let change = match next {
                Ok(change) => change,
                Err(missed) => {
                    tracing::warn!(count = missed.count, "webhook fell behind; changes missed");
                    continue;
                }
            };
            if !change.went_offline() {
                continue;
            }
            let sent = client
                .post(&url)
                .timeout(POST_TIMEOUT)
                .json(&offline_body(&change))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status);
            if let Err(error) = sent {
                tracing::warn!(user = %change.user, %error, "webhook post failed");
            }
        }
    });
}
