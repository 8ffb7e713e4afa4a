//! Throws garbage at the socket, one frame at a time, and tallies what the
//! server did with each: an `error` frame, a close with a code, a drop of
//! the connection without a code, or nothing (a silent drop).

use std::collections::BTreeMap;
use std::fmt;

use futures_util::{SinkExt, StreamExt};

use crate::client::{Answer, answer, open};
use crate::common::{Demo, Socket};
use crate::garbage::{self, KINDS};

/// Frames sent on one connection before a fresh one is opened: within the
/// flood limit's burst (40), so throttling is not what is measured.
pub(crate) const FRAMES_PER_CONNECTION: usize = 30;

/// What the server did with the frames one client sent.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Frames sent.
    pub(crate) sent: usize,
    /// Connections opened.
    pub(crate) connections: usize,
    /// `error` frames, by code.
    pub(crate) errors: BTreeMap<String, usize>,
    /// Closes, by code.
    pub(crate) closes: BTreeMap<u16, usize>,
    /// Connections ended without a close code, by the kind of frame that
    /// ended them.
    pub(crate) dropped: BTreeMap<&'static str, usize>,
    /// Frames answered by nothing at all, by kind.
    pub(crate) silent: BTreeMap<&'static str, usize>,
    /// Answers other than `error` frames (none is expected), by kind.
    pub(crate) other: BTreeMap<&'static str, usize>,
}

impl Tally {
    /// Adds another client's tally to this one.
    pub(crate) fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.connections += other.connections;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, n) in other.closes {
            *self.closes.entry(code).or_default() += n;
        }
        for (map, theirs) in [
            (&mut self.dropped, other.dropped),
            (&mut self.silent, other.silent),
            (&mut self.other, other.other),
        ] {
            for (kind, n) in theirs {
                *map.entry(kind).or_default() += n;
            }
        }
    }

    /// Frames answered by an `error` frame.
    pub(crate) fn error_frames(&self) -> usize {
        self.errors.values().sum()
    }

    /// Frames answered by a close with a code.
    pub(crate) fn closed(&self) -> usize {
        self.closes.values().sum()
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} garbage frames over {} connections: {} error frames {:?}, {} closes {:?}, \
             dropped without a code {:?}, unanswered {:?}, other answers {:?}",
            self.sent,
            self.connections,
            self.error_frames(),
            self.errors,
            self.closed(),
            self.closes,
            self.dropped,
            self.silent,
            self.other,
        )
    }
}

/// Sends `frames` garbage frames as `token`, seeded by `seed`, one at a
/// time, each awaited.
pub(crate) async fn throw(demo: &Demo, token: &str, seed: u64, frames: usize) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut tally = Tally::default();
    let mut socket: Option<Socket> = None;
    let mut on_this_connection = 0;
    for n in 0..frames {
        if on_this_connection == FRAMES_PER_CONNECTION
            && let Some(done) = socket.take()
        {
            say_goodbye(done).await;
        }
        let current = match &mut socket {
            Some(current) => current,
            None => {
                tally.connections += 1;
                on_this_connection = 0;
                socket.insert(open(demo, token).await)
            }
        };
        // Every kind in turn, from a different start for each client.
        let kind = (n + usize::try_from(seed).unwrap_or(0)) % KINDS.len();
        tally.sent += 1;
        on_this_connection += 1;
        // A failed send means the server already hung up: its answer, if
        // any, is the close that follows.
        let _ = current.send(garbage::frame(&mut rng, kind)).await;
        let name = KINDS[kind];
        let ended = match answer(current).await {
            Answer::Frame(frame) if frame["type"] == "error" => {
                let code = frame["code"].as_str().unwrap_or("(no code)").to_owned();
                *tally.errors.entry(code).or_default() += 1;
                false
            }
            Answer::Frame(_) => {
                *tally.other.entry(name).or_default() += 1;
                false
            }
            Answer::Closed(code) => {
                *tally.closes.entry(code).or_default() += 1;
                true
            }
            Answer::Dropped => {
                *tally.dropped.entry(name).or_default() += 1;
                true
            }
            Answer::Silent => {
                *tally.silent.entry(name).or_default() += 1;
                true
            }
        };
        if ended {
            socket = None;
        }
    }
    if let Some(done) = socket {
        say_goodbye(done).await;
    }
    tally
}

/// Closes a socket cleanly and waits for the server's close.
async fn say_goodbye(mut socket: Socket) {
    let _ = socket.close(None).await;
    let _ = tokio::time::timeout(crate::client::ANSWER_WITHIN, async {
        while let Some(Ok(_)) = socket.next().await {}
    })
    .await;
}
