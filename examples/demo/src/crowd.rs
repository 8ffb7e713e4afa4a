//! The demo's crowd (`PRESENCE_DEMO_CROWD=org:N`): N guests of one
//! organisation kept present by this process, so that the organisation is
//! a large scope and its channel pages show counts instead of rows
//! (docs/rules.md#large-scopes). Every tenth guest is BUSY, every seventh
//! idles into AWAY; the rest stay ONLINE.

use std::time::Duration;

use presence_core::{Presence, RequestedStatus, SessionKind, SessionSpec};

/// Opens the crowd's sessions and keeps them live (and most of them
/// active) until the service shuts down.
pub(crate) async fn spawn(
    presence: &Presence,
    org: &str,
    size: usize,
) -> Result<(), presence_core::Error> {
    let mut guests = Vec::with_capacity(size);
    for n in 0..size {
        let user = format!("{org}-guest-{n:03}");
        let spec = SessionSpec::new(user.as_str(), format!("crowd-{user}"))
            .scope(org)
            .kind(SessionKind::web());
        let session = presence.open_session(spec).await?;
        if n % 10 == 9 {
            presence
                .set_status(&user.as_str().into(), RequestedStatus::Busy, None)
                .await?;
        }
        guests.push((n, session));
    }
    let config = presence.config();
    let every = config
        .heartbeat_interval
        .min(config.away_after / 3)
        .max(Duration::from_millis(50));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            for (n, session) in &guests {
                let beat = if n % 7 == 6 {
                    session.heartbeat()
                } else {
                    session.activity().await
                };
                if let Err(error) = beat {
                    if matches!(error, presence_core::Error::ShutDown) {
                        return;
                    }
                    tracing::debug!(%error, "a crowd guest's session ended");
                }
            }
        }
    });
    Ok(())
}
