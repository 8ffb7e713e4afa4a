//! One presence socket's connection after the upgrade: a session held for
//! as long as the socket lives, and the loop that reads frames, runs their
//! store calls and writes what the subscription delivers.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use presence_core::store::StoreError;
use presence_core::{
    Delivery, Error, ScopeId, SessionEnd, SessionHandle, SessionSpec, Snapshot, Subscription,
};
use tokio::time::Instant;

use super::answer::Answer;
use super::calls::{StoreCalls, Watched};
use super::close::{Close, Ending};
use super::frame::{FrameContext, Inbound, watch, watched};
use crate::identity::Identity;
use crate::protocol::{
    ProtocolError, ServerMessage, batch_frames, presence_frame, snapshot_frames,
};
use crate::settings::Shared;
use crate::throttle::{SET_STATE_LIMIT, Throttle};

/// Longest wait for the client's answer to a close frame.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);

/// One turn of the connection loop.
enum Input {
    Frame(Option<Result<Message, axum::Error>>),
    /// A store call a frame asked for has ended.
    Answered(Answer),
    Delivery(Option<Delivery>),
    Ended(SessionEnd),
}

/// One upgraded presence socket and who it belongs to.
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    pub(crate) identity: Identity,
    pub(crate) socket: WebSocket,
    /// The client asked for `presence_batch` frames.
    pub(crate) batches: bool,
}

/// The socket's one task. Idle sockets are many: what this future holds
/// while waiting is kept small, and the calls that reach the store (rare,
/// large futures) are boxed.
pub(crate) async fn serve(mut connection: Box<Connection>) {
    let _open = crate::metrics::socket_opened();
    let (ending, session) = match Box::pin(connection.open_session()).await {
        Ok(mut session) => (connection.run(&mut session).await, Some(session)),
        Err(ending) => (ending, None),
    };
    crate::metrics::socket_closed(ending.code());
    // The session closes while the client gets its close frame, and the
    // socket counts as open until both are done: once a socket is gone,
    // its session is too, not still closing in a task of its own.
    let close_session = async {
        if let Some(session) = session {
            let user = session.user().clone();
            if let Err(error) = session.close().await {
                tracing::warn!(%user, %error, "closing a presence socket's session failed; it will lapse");
            }
        }
    };
    tokio::join!(Box::pin(close_session), connection.finish(ending));
}

impl Connection {
    /// Opens the socket's session, or tells why it could not.
    async fn open_session(&mut self) -> Result<SessionHandle, Ending> {
        let presence = &self.shared.presence;
        let mut spec = SessionSpec::new(self.identity.user.clone(), self.identity.login.clone())
            // Needed only to open the session: not kept for the socket's life.
            .scopes(std::mem::take(&mut self.identity.member_of));
        if let Some(kind) = self.identity.kind.take() {
            spec = spec.kind(kind);
        }
        let session = match Box::pin(presence.open_session(spec)).await {
            Ok(session) => session,
            Err(Error::ShutDown) => return Err(Close::GoingAway.into()),
            Err(Error::Store(StoreError::TooManySessions { .. })) => {
                return Err(Close::TooManySessions.into());
            }
            // The host still accepted the login's credentials, but presence
            // was told it logged out: the same close as a logout of an open
            // socket, so the client stops instead of retrying.
            Err(failure) if failure.is_logged_out() => return Err(Close::LoggedOut.into()),
            Err(failure) => {
                tracing::warn!(user = %self.identity.user, error = %failure, "opening a presence socket failed");
                return Err(Close::Unavailable.into());
            }
        };
        tracing::debug!(user = %self.identity.user, session = %session.id(), "presence socket open");
        Ok(session)
    }

    /// Serves the open session's socket until it ends: `hello`, then
    /// frames, store calls and deliveries.
    async fn run(&mut self, session: &mut SessionHandle) -> Ending {
        let presence = self.shared.presence.clone();
        let epoch = presence.epoch();
        let hello = ServerMessage::Hello {
            session_id: session.id().as_str(),
            user_id: &self.identity.user,
            heartbeat_interval_ms: millis(presence.config().heartbeat_interval),
            epoch: &epoch,
        }
        .to_json();
        if let Err(ending) = self.send_text(hello).await {
            return ending;
        }
        let mut subscription = presence.subscribe();
        // A batch is written as one write whatever the client asked for:
        // several `presence` frames back to back, or `presence_batch` ones.
        subscription.accept_batches();
        let mut calls = StoreCalls::new(
            presence.clone(),
            session.user().clone(),
            session.id().clone(),
        );
        // Watched at once; their snapshots come first of all the calls.
        let mut on_connect = std::mem::take(&mut self.identity.watch_on_connect);
        on_connect.retain(|scope| self.identity.can_watch(scope));
        for scope in &on_connect {
            watch(&mut subscription, scope, Watched::Scope);
        }
        calls.push_snapshots(on_connect.into_iter().map(|scope| (scope, Watched::Scope)));
        let mut throttles = Throttles {
            flood: Throttle::new(self.shared.socket.flood),
            state: Throttle::new(SET_STATE_LIMIT),
        };
        let ending = self
            .serve_frames(session, &mut subscription, &mut calls, &mut throttles)
            .await;
        Box::pin(calls.settle()).await;
        ending
    }

    /// Frames, store calls, deliveries and the session's end, until the
    /// connection ends. Frames keep being read (and heartbeats answered)
    /// while a store call runs.
    async fn serve_frames(
        &mut self,
        session: &mut SessionHandle,
        subscription: &mut Subscription,
        calls: &mut StoreCalls,
        throttles: &mut Throttles,
    ) -> Ending {
        loop {
            let input = tokio::select! {
                frame = self.socket.recv() => Input::Frame(frame),
                answer = calls.next_answer(), if calls.is_busy() => Input::Answered(answer),
                // A subscribe's snapshot goes out before the scope's changes.
                delivery = subscription.recv(), if !calls.holds_snapshot() => Input::Delivery(delivery),
                end = session.ended() => Input::Ended(end),
            };
            let turn = match input {
                Input::Frame(frame) => {
                    let answer = self.answer(frame, session, subscription, calls, throttles);
                    Box::pin(self.send(answer)).await
                }
                Input::Answered(answer) => Box::pin(self.send(answer)).await,
                // Events were lost (or a counted scope turned small): every
                // watched scope is snapshotted again, as it is watched.
                Input::Delivery(Some(Delivery::Lagged)) => {
                    calls.push_snapshots(every_watch(subscription));
                    Ok(())
                }
                Input::Delivery(Some(delivery)) => self.send_delivery(&delivery).await,
                // Fan-out ended: the service is going away.
                Input::Delivery(None) => Err(Close::GoingAway.into()),
                Input::Ended(end) => Err(Close::for_session_end(end).into()),
            };
            if let Err(ending) = turn {
                tracing::debug!(user = %self.identity.user, session = %session.id(), ?ending, "presence socket closing");
                return ending;
            }
        }
    }

    /// Answers a frame the client sent. Takes the frame, so that it is not
    /// held while the answer is written.
    fn answer(
        &self,
        frame: Option<Result<Message, axum::Error>>,
        session: &SessionHandle,
        subscription: &mut Subscription,
        calls: &mut StoreCalls,
        throttles: &mut Throttles,
    ) -> Answer {
        let mut context = FrameContext {
            presence: &self.shared.presence,
            identity: &self.identity,
            session,
            subscription,
            calls,
            throttle: &mut throttles.flood,
            state_limit: &mut throttles.state,
        };
        context.answer(Inbound::of(&frame), Instant::now())
    }

    /// Sends a frame's (or a store call's) answer, if it has one; passes
    /// an ending on.
    async fn send(&mut self, answer: Answer) -> Result<(), Ending> {
        match answer {
            Answer::Nothing => Ok(()),
            Answer::Pong => self.send_json(&ServerMessage::Pong).await,
            Answer::Error(refused) => self.send_error(&refused).await,
            Answer::Snapshot(snapshot) => self.send_snapshot(&snapshot).await,
            Answer::End(ending) => Err(ending),
        }
    }

    /// An event, a batch or a large scope's counts: its frames (shared,
    /// for events and batches), written back to back and flushed once.
    async fn send_delivery(&mut self, delivery: &Delivery) -> Result<(), Ending> {
        let frames: Vec<Utf8Bytes> = match delivery {
            Delivery::Batch(batch) if self.batches => batch_frames(batch).to_vec(),
            Delivery::Occupancy(counts) => {
                vec![Utf8Bytes::from(ServerMessage::occupancy(counts).to_json())]
            }
            delivery => delivery
                .events()
                .iter()
                .map(|event| presence_frame(event))
                .collect(),
        };
        let socket = &mut self.socket;
        let write = async move {
            for frame in frames {
                socket.feed(Message::Text(frame)).await?;
            }
            socket.flush().await
        };
        // Boxed, like every write: the socket's future stays the size of
        // its idle wait.
        let written = Box::pin(timed_write(&self.shared, &self.identity, write)).await;
        if written.is_ok() {
            crate::metrics::written(delivery.events());
        }
        written
    }

    /// A snapshot, in as many frames as it needs (see [`snapshot_frames`]),
    /// written back to back and flushed once.
    async fn send_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), Ending> {
        let frames = snapshot_frames(snapshot);
        let socket = &mut self.socket;
        let write = async move {
            for frame in frames {
                socket.feed(Message::Text(frame.into())).await?;
            }
            socket.flush().await
        };
        Box::pin(timed_write(&self.shared, &self.identity, write)).await
    }

    async fn send_error(&mut self, refused: &ProtocolError) -> Result<(), Ending> {
        let message = refused.message();
        let frame = ServerMessage::Error {
            code: refused.code(),
            message: &message,
        };
        crate::metrics::error_frame_sent(refused.code());
        self.send_json(&frame).await
    }

    async fn send_json(&mut self, message: &ServerMessage<'_>) -> Result<(), Ending> {
        self.send_text(message.to_json()).await
    }

    async fn send_text(&mut self, text: String) -> Result<(), Ending> {
        let write = self.socket.send(Message::Text(text.into()));
        Box::pin(timed_write(&self.shared, &self.identity, write)).await
    }

    /// Ends the connection: the close frame and the closing handshake when
    /// this side closes, within the send timeout in any case.
    async fn finish(&mut self, ending: Ending) {
        let send_timeout = self.shared.socket.send_timeout;
        if let Ending::Close(close) = ending {
            let (code, reason) = close.code_and_reason();
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let sent =
                tokio::time::timeout(send_timeout, self.socket.send(Message::Close(Some(frame))))
                    .await;
            if matches!(sent, Ok(Ok(()))) {
                // The closing handshake: read what the client still had in
                // flight until its close reply, so the connection ends
                // cleanly instead of being reset under the client's last
                // frames.
                let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
                    while let Some(Ok(frame)) = self.socket.recv().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
        }
        // Flushes the reply to a client's close. A peer that stopped
        // reading has had its send timeout already: it gets little more.
        let last_flush = send_timeout.min(CLOSE_HANDSHAKE);
        let _ = tokio::time::timeout(last_flush, SinkExt::close(&mut self.socket)).await;
    }
}

/// A write that must complete within the send timeout: a peer that stopped
/// reading is dropped, not waited for.
async fn timed_write(
    shared: &Shared,
    identity: &Identity,
    write: impl Future<Output = Result<(), axum::Error>>,
) -> Result<(), Ending> {
    match tokio::time::timeout(shared.socket.send_timeout, write).await {
        Ok(Ok(())) => Ok(()),
        // The socket broke.
        Ok(Err(_)) => Err(Ending::Gone),
        Err(_) => {
            tracing::debug!(user = %identity.user, "presence socket too slow; dropping it");
            Err(Ending::Gone)
        }
    }
}

/// The socket's two token buckets: every frame's, and `set_state`'s.
struct Throttles {
    flood: Throttle,
    state: Throttle,
}

/// Every scope `subscription` watches, with how it watches it.
fn every_watch(subscription: &Subscription) -> Vec<(ScopeId, Watched)> {
    subscription
        .scopes()
        .map(|scope| (scope.clone(), watched(subscription, scope)))
        .collect()
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
