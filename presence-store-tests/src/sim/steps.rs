//! The steps of a simulation run, drawn from its seed.
//!
//! Every step names what it acts on by a small index taken modulo what
//! exists when it runs (the third client, the second process), so a step
//! list with steps removed (a shrunk failure) still runs and means much the
//! same thing.

use std::fmt;

/// Which faults a run may inject, beyond what clients do and time passing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// A process dies without a word (`kill -9`) and may start again.
    pub kill: bool,
    /// A process shuts down gracefully; a new process of a node starts
    /// while the old one still serves (a rolling deploy on one host).
    pub deploy: bool,
    /// The store forgets everything (restarted empty, flushed).
    pub data_loss: bool,
    /// A process's cluster feed drops and comes back.
    pub feed: bool,
    /// Process clocks that differ, and wall-clock steps.
    pub clocks: bool,
}

impl Faults {
    /// Every fault.
    pub const ALL: Faults = Faults {
        kill: true,
        deploy: true,
        data_loss: true,
        feed: true,
        clocks: true,
    };
}

/// The scopes a new session is seen in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopePick {
    /// `acme` only.
    Acme,
    /// `acme` and `team-x`.
    Both,
    /// `team-x` only.
    TeamX,
}

impl ScopePick {
    /// The scope names.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            ScopePick::Acme => &["acme"],
            ScopePick::Both => &["acme", "team-x"],
            ScopePick::TeamX => &["team-x"],
        }
    }
}

/// A manual status a client may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wish {
    /// Clears the manual status.
    Online,
    /// Manual AWAY.
    Away,
    /// Manual BUSY.
    Busy,
    /// Manual INVISIBLE.
    Invisible,
}

/// One step of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A user opens a tab: under a new login, or one of the user's live
    /// logins; on one of the running processes.
    Open {
        /// The user (modulo the users of the run).
        user: u8,
        /// A new login, or an existing one (modulo the user's logins).
        login: Option<u8>,
        /// Where the session is seen.
        scopes: ScopePick,
        /// The process (modulo those running).
        process: u8,
    },
    /// A tab closes cleanly.
    Close {
        /// The client (modulo those alive).
        client: u8,
    },
    /// A tab reloads: its socket closes and a new one opens `ms` later.
    Reload {
        /// The client.
        client: u8,
        /// The gap, in ms.
        ms: u16,
    },
    /// The user does something in a tab.
    Activity {
        /// The client.
        client: u8,
    },
    /// The user picks a manual status, for `until_s` seconds or until
    /// changed.
    Status {
        /// The client.
        client: u8,
        /// The status.
        wish: Wish,
        /// Expiry in seconds from now (plus a quarter second, off the tick
        /// grid).
        until_s: Option<u8>,
    },
    /// The client's login logs out (every tab of it closes).
    Logout {
        /// The client whose login logs out.
        client: u8,
    },
    /// The client's network dies silently: the server still holds its
    /// socket (half-open) but hears nothing; the client notices after a
    /// heartbeat interval and reconnects.
    GoDark {
        /// The client.
        client: u8,
    },
    /// Time passes, tick by tick.
    Advance {
        /// How long, in ms.
        ms: u32,
    },
    /// A process dies without a word (its sockets die with it).
    Kill {
        /// The process (modulo those running).
        process: u8,
    },
    /// A new process of node `node` starts (beside the running one, if
    /// any: the first half of a rolling deploy).
    Start {
        /// The node name's index (`node-a`, `node-b`, `node-c`).
        node: u8,
    },
    /// A rolling deploy of the node of a running process: a new process of
    /// the same name starts, and the old one shuts down gracefully a
    /// second later.
    RollingDeploy {
        /// The process being replaced.
        process: u8,
    },
    /// A process shuts down gracefully.
    Shutdown {
        /// The process.
        process: u8,
    },
    /// A process's cluster feed drops, and comes back after `ms`.
    FeedDrop {
        /// The process.
        process: u8,
        /// For how long (for a store whose feed reconnects by itself, it
        /// comes back when it can).
        ms: u16,
    },
    /// The store loses every piece of data.
    DataLoss,
    /// The whole deployment restarts on an empty store: every process
    /// shuts down gracefully, the store is lost, new processes start.
    RestartAll,
    /// A process's wall clock is set `offset_ms` away from true time.
    Skew {
        /// The process.
        process: u8,
        /// Its new offset from true time.
        offset_ms: i16,
    },
    /// A process's wall clock steps forward by a minute.
    WallStep {
        /// The process.
        process: u8,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A small seeded generator (SplitMix64): the same seed draws the same
/// steps on every machine and Rust version.
#[derive(Clone, Debug)]
pub struct Draw(u64);

impl Draw {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `bound` (which must be positive).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.bits() % bound
    }

    fn byte(&mut self) -> u8 {
        self.bits() as u8
    }
}

/// The steps of a run of `count` steps from `seed`, with the faults allowed.
pub fn plan(seed: u64, count: usize, faults: Faults) -> Vec<Step> {
    let mut draw = Draw::new(seed);
    (0..count).map(|_| step(&mut draw, faults)).collect()
}

fn step(draw: &mut Draw, faults: Faults) -> Step {
    loop {
        let roll = draw.below(1000);
        let step = match roll {
            0..=279 => Step::Advance {
                ms: 250 + draw.below(4_000) as u32,
            },
            280..=419 => Step::Open {
                user: draw.byte(),
                login: (draw.below(3) != 0).then(|| draw.byte()),
                scopes: match draw.below(3) {
                    0 => ScopePick::Acme,
                    1 => ScopePick::Both,
                    _ => ScopePick::TeamX,
                },
                process: draw.byte(),
            },
            420..=479 => Step::Close {
                client: draw.byte(),
            },
            480..=549 => Step::Reload {
                client: draw.byte(),
                ms: 100 + draw.below(2_500) as u16,
            },
            550..=649 => Step::Activity {
                client: draw.byte(),
            },
            650..=709 => Step::Status {
                client: draw.byte(),
                wish: match draw.below(4) {
                    0 => Wish::Online,
                    1 => Wish::Away,
                    2 => Wish::Busy,
                    _ => Wish::Invisible,
                },
                until_s: (draw.below(2) == 0).then(|| 1 + (draw.below(20) as u8)),
            },
            710..=739 => Step::Logout {
                client: draw.byte(),
            },
            740..=784 => Step::GoDark {
                client: draw.byte(),
            },
            785..=809 if faults.kill => Step::Kill {
                process: draw.byte(),
            },
            810..=834 if faults.kill || faults.deploy => Step::Start { node: draw.byte() },
            835..=859 if faults.deploy => Step::RollingDeploy {
                process: draw.byte(),
            },
            860..=874 if faults.deploy => Step::Shutdown {
                process: draw.byte(),
            },
            875..=914 if faults.feed => Step::FeedDrop {
                process: draw.byte(),
                ms: 200 + draw.below(12_000) as u16,
            },
            915..=929 if faults.data_loss => Step::DataLoss,
            930..=944 if faults.data_loss && faults.deploy => Step::RestartAll,
            945..=984 if faults.clocks => Step::Skew {
                process: draw.byte(),
                offset_ms: (draw.below(10_001) as i16) - 5_000,
            },
            985..=999 if faults.clocks => Step::WallStep {
                process: draw.byte(),
            },
            _ => continue,
        };
        return step;
    }
}
