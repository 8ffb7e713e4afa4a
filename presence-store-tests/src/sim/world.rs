//! One simulation run: processes of the presence service on one store,
//! clients with sockets on them, true time and each process's own clock,
//! the independent model, and the checks after every step.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use presence_core::store::StoreError;
use presence_core::{
    Clock, Delivery, Error, ManualClock, NodeId, Presence, PresenceConfig, PresenceEvent,
    RequestedStatus, ScopeId, SessionEnd, SessionHandle, SessionSpec, Status, Subscription,
};

use super::backend::Deployment;
use super::client::ClientView;
use super::model::{Model, Ms, Refused, Shown, Timing};
use super::steps::{Draw, ScopePick, Step, Wish};

/// Names of the processes' nodes.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Users of a run.
pub(crate) const USERS: usize = 4;
/// Users listed per snapshot part (the real socket splits at 16 KiB; a
/// small part size makes every run join parts).
const PART: usize = 2;

/// The thresholds of every run: half a tick off the tick grid, so no
/// comparison lands on a boundary.
pub(crate) const TIMING: Timing = Timing {
    heartbeat: 2_000,
    ttl: 6_250,
    away: 20_250,
    offline: 60_250,
    linger: 3_250,
    // The lease, a third of it (at the tick) for another process to renew
    // its own and look, and a tick.
    detection: NODE_LEASE + 1_000 + TICK,
};

/// The step of time.
pub(crate) const TICK: Ms = 500;

/// Each process's lease.
const NODE_LEASE: Ms = 2_500;

/// Why a run failed: the step, and what was wrong.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The index of the step in the run's list.
    pub step: usize,
    /// The invariant broken ("view", "order", "end", "api", …).
    pub kind: &'static str,
    /// What was wrong.
    pub message: String,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// Steps run.
    pub steps: usize,
    /// Faults injected.
    pub faults: usize,
    /// Events clients received.
    pub events: usize,
    /// Client views compared with the model.
    pub checks: usize,
}

pub(crate) fn config() -> PresenceConfig {
    let ms = |ms: Ms| Duration::from_millis(ms as u64);
    PresenceConfig {
        heartbeat_interval: ms(TIMING.heartbeat),
        session_ttl: ms(TIMING.ttl),
        away_after: ms(TIMING.away),
        offline_after: ms(TIMING.offline),
        linger: ms(TIMING.linger),
        max_sessions_per_user: 64,
    }
}

struct Process {
    id: usize,
    node: NodeId,
    presence: Presence,
    clock: Arc<ManualClock>,
    /// Its wall clock minus true time.
    offset: Ms,
    feed_down_until: Option<Ms>,
}

struct Socket {
    process: usize,
    key: u64,
    handle: SessionHandle,
    events: Subscription,
    next_heartbeat: Ms,
    /// The newest version this socket delivered per scope and user (each
    /// change is told once per scope, in order).
    delivered: BTreeMap<(String, String), u64>,
}

struct Client {
    id: usize,
    user: usize,
    login: String,
    scopes: ScopePick,
    view: ClientView,
    socket: Option<Socket>,
    reconnect_at: Option<Ms>,
    reconnects: u64,
}

/// A socket the server still holds whose client is gone or reconnected
/// (half-open).
struct Orphan {
    process: usize,
    user: usize,
    key: u64,
    handle: SessionHandle,
}

pub(crate) struct World {
    seed: u64,
    deployment: Box<dyn Deployment>,
    /// True time: the store's clock.
    truth: Arc<ManualClock>,
    config: PresenceConfig,
    t0: DateTime<Utc>,
    now: Ms,
    processes: Vec<Process>,
    next_process: usize,
    clients: Vec<Client>,
    next_client: usize,
    next_session: u64,
    next_login: u64,
    orphans: Vec<Orphan>,
    /// Processes that shut down: their clients' sockets end with
    /// [`SessionEnd::ShutDown`], expected.
    deploys: Vec<(Ms, usize)>,
    model: Model,
    history: VecDeque<(Ms, Vec<Vec<Shown>>)>,
    stats: RunStats,
    step: usize,
    /// What happened, for the report of a failure.
    pub(crate) trace: Vec<String>,
}

type Checked = Result<(), Violation>;

impl World {
    pub(crate) async fn start(
        seed: u64,
        truth: Arc<ManualClock>,
        deployment: Box<dyn Deployment>,
    ) -> Result<Self, Violation> {
        let t0 = truth.now();
        let mut world = Self {
            seed,
            deployment,
            truth,
            config: config(),
            t0,
            now: 0,
            processes: Vec::new(),
            next_process: 0,
            clients: Vec::new(),
            next_client: 0,
            next_session: 0,
            next_login: 0,
            orphans: Vec::new(),
            deploys: Vec::new(),
            model: Model::new(TIMING, USERS),
            history: VecDeque::new(),
            stats: RunStats::default(),
            step: 0,
            trace: Vec::new(),
        };
        world.start_process(NODES[0]).await?;
        world.start_process(NODES[1]).await?;
        Ok(world)
    }

    pub(crate) fn stats(&self) -> RunStats {
        self.stats
    }

    pub(crate) async fn tear_down(mut self) {
        let processes = std::mem::take(&mut self.processes);
        for process in processes {
            process.presence.shutdown().await;
        }
        self.clients.clear();
        self.orphans.clear();
        self.deployment.settle().await;
        self.deployment.tear_down().await;
    }

    fn violation(&self, kind: &'static str, message: String) -> Violation {
        Violation {
            step: self.step,
            kind,
            message: format!("at t={}ms: {message}", self.now),
        }
    }

    fn note(&mut self, what: String) {
        self.trace.push(format!("t={:>6}ms {what}", self.now));
    }

    /// A number in `low..high` for `what`, from the seed: the same run
    /// draws the same delays.
    fn jitter(&self, what: u64, low: Ms, high: Ms) -> Ms {
        let mut draw = Draw::new(self.seed ^ what.wrapping_mul(0x2545_f491_4f6c_dd1d));
        low + draw.below((high - low).max(1) as u64) as Ms
    }

    fn time(&self, ms: Ms) -> DateTime<Utc> {
        self.t0 + TimeDelta::milliseconds(ms)
    }

    fn process_index(&self, id: usize) -> Option<usize> {
        self.processes.iter().position(|p| p.id == id)
    }

    async fn start_process(&mut self, name: &str) -> Checked {
        let id = self.next_process;
        self.next_process += 1;
        let node = NodeId::new(name);
        // A machine whose clock is off true time by as much as the last
        // process's was (a new process on a skewed host is skewed too).
        let offset = self.processes.last().map_or(0, |p| p.offset);
        let clock = Arc::new(ManualClock::new(self.time(self.now + offset)));
        let store = self.deployment.store_for_process().await;
        // Its own machine's clock, kept to the store's as in production
        // (a real server's clock is not the run's: then the run's time).
        let builder = Presence::builder().shared_store(store);
        let builder = if self.deployment.keeps_true_time() {
            builder.local_clock(clock.clone())
        } else {
            builder.clock(clock.clone())
        };
        let presence = builder
            .config(self.config)
            .node(node.clone())
            // Deliveries are judged as soon as the step settles.
            .batch_interval(Duration::ZERO)
            // A dead process's sessions must end by their lapse (the
            // model's rule): its lease and the third of it that others
            // take to notice fit in a TTL less a heartbeat interval.
            .node_lease(Duration::from_millis(NODE_LEASE as u64))
            .build()
            .await
            .map_err(|e| self.violation("api", format!("{name} did not start: {e}")))?;
        self.note(format!("process {id} ({node}) started"));
        self.processes.push(Process {
            id,
            node,
            presence,
            clock,
            offset,
            feed_down_until: None,
        });
        Ok(())
    }

    /// Runs one step, then settles and checks.
    pub(crate) async fn run(&mut self, index: usize, step: Step) -> Checked {
        self.step = index;
        self.stats.steps += 1;
        self.note(format!("step {index}: {step}"));
        match step {
            Step::Advance { ms } => return self.advance(Ms::from(ms)).await,
            Step::Open {
                user,
                login,
                scopes,
                process,
            } => self.open(user, login, scopes, process).await?,
            Step::Close { client } => self.close(client).await?,
            Step::Reload { client, ms } => self.reload(client, ms).await?,
            Step::Activity { client } => self.activity(client).await?,
            Step::Status {
                client,
                wish,
                until_s,
            } => self.status(client, wish, until_s).await?,
            Step::Logout { client } => self.logout(client).await?,
            Step::GoDark { client } => self.go_dark(client),
            Step::Kill { process } => self.kill(process).await,
            Step::Start { node } => {
                self.stats.faults += 1;
                self.start_process(NODES[usize::from(node) % NODES.len()])
                    .await?;
            }
            Step::RollingDeploy { process } => self.rolling_deploy(process).await?,
            Step::Shutdown { process } => {
                if let Some(id) = self.pick_process(process) {
                    self.stats.faults += 1;
                    self.shutdown(id).await;
                }
            }
            Step::FeedDrop { process, ms } => self.drop_feed(process, ms).await,
            Step::DataLoss => self.lose_data().await,
            Step::RestartAll => self.restart_all().await?,
            Step::Skew { process, offset_ms } => {
                self.set_offset(process, |_| Ms::from(offset_ms));
            }
            Step::WallStep { process } => {
                self.set_offset(process, |offset| offset + 60_000);
            }
        }
        self.settle_and_check().await
    }

    /// The quiet end of a run: time passes with nothing else happening,
    /// then every client's view must equal a fresh snapshot.
    pub(crate) async fn finish(&mut self, index: usize) -> Checked {
        self.step = index;
        self.note("quiet: faults heal, time passes with no step".into());
        for process in &mut self.processes {
            if process.feed_down_until.is_some() {
                process.feed_down_until = Some(self.now);
            }
        }
        self.advance(TIMING.ttl + TIMING.linger + 4 * TICK).await?;
        self.check_against_snapshots().await
    }

    fn pick_process(&self, hint: u8) -> Option<usize> {
        (!self.processes.is_empty())
            .then(|| self.processes[usize::from(hint) % self.processes.len()].id)
    }

    fn pick_client(&self, hint: u8) -> Option<usize> {
        (!self.clients.is_empty()).then(|| usize::from(hint) % self.clients.len())
    }

    async fn advance(&mut self, ms: Ms) -> Checked {
        let end = self.now + ms;
        while self.now < end {
            let step = TICK.min(end - self.now);
            self.tick(step).await?;
        }
        Ok(())
    }

    async fn tick(&mut self, by: Ms) -> Checked {
        self.now += by;
        let passing = Duration::from_millis(by as u64);
        self.truth.advance(passing);
        for process in &self.processes {
            process.clock.advance(passing);
        }
        self.run_scheduled().await?;
        self.heartbeats()?;
        self.deployment.flush().await;
        for process in &self.processes {
            if let Err(error) = process.presence.run_due().await {
                return Err(self.violation(
                    "api",
                    format!("a sweep on {} failed: {error}", process.node),
                ));
            }
        }
        self.settle_and_check().await
    }

    async fn settle_and_check(&mut self) -> Checked {
        self.deployment.settle().await;
        self.drain().await?;
        self.check_views()
    }

    /// Feeds that come back, deploys that finish, clients that reconnect.
    async fn run_scheduled(&mut self) -> Checked {
        let restored: Vec<NodeId> = self
            .processes
            .iter_mut()
            .filter(|p| p.feed_down_until.is_some_and(|until| until <= self.now))
            .map(|p| {
                p.feed_down_until = None;
                p.node.clone()
            })
            .collect();
        for node in restored {
            self.note(format!("feed of {node} back"));
            self.deployment.restore_feed(&node).await;
        }
        let finishing: Vec<usize> = self
            .deploys
            .iter()
            .filter(|(at, _)| *at <= self.now)
            .map(|(_, id)| *id)
            .collect();
        self.deploys.retain(|(at, _)| *at > self.now);
        for id in finishing {
            self.shutdown(id).await;
        }
        let due: Vec<usize> = self
            .clients
            .iter()
            .filter(|c| c.socket.is_none() && c.reconnect_at.is_some_and(|at| at <= self.now))
            .map(|c| c.id)
            .collect();
        for id in due {
            let hint = self.jitter(id as u64 ^ 0xc0ffee ^ self.now as u64, 0, 256) as u8;
            self.connect(id, hint).await?;
        }
        Ok(())
    }

    fn client_index(&self, id: usize) -> Option<usize> {
        self.clients.iter().position(|c| c.id == id)
    }

    /// Opens a socket for client `id` on a running process.
    async fn connect(&mut self, id: usize, process_hint: u8) -> Checked {
        let Some(at) = self.client_index(id) else {
            return Ok(());
        };
        let Some(process_id) = self.pick_process(process_hint) else {
            self.clients[at].reconnect_at = Some(self.now + TICK);
            return Ok(());
        };
        let process = &self.processes[self.process_index(process_id).expect("running")];
        let presence = process.presence.clone();
        let client = &self.clients[at];
        let (user, login, scopes) = (client.user, client.login.clone(), client.scopes.scopes());
        let key = self.next_session;
        self.next_session += 1;
        let spec = SessionSpec::new(user_name(user), login.clone())
            .scopes(scopes.iter().copied())
            .id(format!("s{key}"));
        let opened = presence.open_session(spec).await;
        let handle = match opened {
            Ok(handle) => handle,
            Err(Error::Store(StoreError::LoggedOut)) => {
                if !self.model.is_retired(user, &login, self.now) {
                    return Err(self.violation(
                        "api",
                        format!("{} refused {login} as logged out; it is not", process.node),
                    ));
                }
                // The host refuses a logged-out login: the tab stops.
                self.clients.remove(at);
                return Ok(());
            }
            Err(Error::ShutDown) => {
                self.clients[at].reconnect_at = Some(self.now + TICK);
                return Ok(());
            }
            Err(error) => {
                return Err(self.violation(
                    "api",
                    format!(
                        "opening a session of {} on {} failed: {error}",
                        user_name(user),
                        process.node
                    ),
                ));
            }
        };
        if let Err(refused) = self.model.open(user, key, &login, scopes, self.now) {
            return Err(self.violation(
                "api",
                format!(
                    "{} opened a session of {login}, which the model refuses: {refused:?}",
                    process.node
                ),
            ));
        }
        let mut events = presence.subscribe();
        events.accept_batches();
        for scope in scopes {
            events.watch_scope(ScopeId::from(*scope));
        }
        let client = &mut self.clients[at];
        client.view.hello(Some(presence.epoch().as_str()));
        let socket = Socket {
            process: process_id,
            key,
            handle,
            events,
            next_heartbeat: self.now + TIMING.heartbeat,
            delivered: BTreeMap::new(),
        };
        let name = format!(
            "client {} ({}, {login}) on process {process_id}",
            client.id,
            user_name(user)
        );
        snapshot_into(&presence, &mut client.view, scopes)
            .await
            .map_err(|e| self.violation("api", format!("a snapshot for {name} failed: {e}")))?;
        let client = &mut self.clients[at];
        client.socket = Some(socket);
        client.reconnect_at = None;
        self.note(format!("{name} connected with session s{key}"));
        Ok(())
    }

    async fn open(
        &mut self,
        user: u8,
        login: Option<u8>,
        scopes: ScopePick,
        process: u8,
    ) -> Checked {
        let user = usize::from(user) % USERS;
        let logins: Vec<String> = {
            let mut logins: Vec<String> = self
                .clients
                .iter()
                .filter(|c| c.user == user)
                .map(|c| c.login.clone())
                .collect();
            logins.dedup();
            logins
        };
        let login = match login {
            Some(pick) if !logins.is_empty() => logins[usize::from(pick) % logins.len()].clone(),
            _ => {
                self.next_login += 1;
                format!("{}-login{}", user_name(user), self.next_login)
            }
        };
        let id = self.next_client;
        self.next_client += 1;
        self.clients.push(Client {
            id,
            user,
            login,
            scopes,
            view: ClientView::default(),
            socket: None,
            reconnect_at: None,
            reconnects: 0,
        });
        self.connect(id, process).await
    }

    async fn close(&mut self, hint: u8) -> Checked {
        let Some(at) = self.pick_client(hint) else {
            return Ok(());
        };
        let client = self.clients.remove(at);
        if let Some(socket) = client.socket {
            self.close_socket(client.user, socket).await?;
        }
        Ok(())
    }

    async fn close_socket(&mut self, user: usize, socket: Socket) -> Checked {
        let key = socket.key;
        drop(socket.events);
        let ended = socket.handle.has_ended();
        match socket.handle.close().await {
            Ok(()) => {}
            Err(error) if error.is_session_gone() => {}
            Err(error) => {
                return Err(
                    self.violation("api", format!("closing session s{key} failed: {error}"))
                );
            }
        }
        if ended.is_none() {
            self.model.close(user, key, self.now);
        }
        Ok(())
    }

    async fn reload(&mut self, hint: u8, gap: u16) -> Checked {
        let Some(at) = self.pick_client(hint) else {
            return Ok(());
        };
        let user = self.clients[at].user;
        let socket = self.clients[at].socket.take();
        // A new page: a new client, with nothing known yet.
        self.clients[at].view = ClientView::default();
        self.clients[at].reconnect_at = Some(self.now + Ms::from(gap));
        if let Some(socket) = socket {
            self.close_socket(user, socket).await?;
        }
        Ok(())
    }

    async fn activity(&mut self, hint: u8) -> Checked {
        let Some(at) = self.pick_client(hint) else {
            return Ok(());
        };
        let client = &self.clients[at];
        let Some(socket) = &client.socket else {
            return Ok(());
        };
        let (user, key) = (client.user, socket.key);
        let served = socket.handle.activity().await;
        let modelled = self.model.activity(user, key, self.now);
        match (served, modelled) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(error), Err(Refused::Gone)) if error.is_session_gone() => Ok(()),
            (served, modelled) => Err(self.violation(
                "api",
                format!("activity of s{key}: the server said {served:?}, the model {modelled:?}"),
            )),
        }
    }

    async fn status(&mut self, hint: u8, wish: Wish, until_s: Option<u8>) -> Checked {
        let Some(at) = self.pick_client(hint) else {
            return Ok(());
        };
        let client = &self.clients[at];
        let Some(socket) = &client.socket else {
            return Ok(());
        };
        let user = client.user;
        let presence = self.presence_of(socket.process);
        let until = until_s.map(|s| self.now + Ms::from(s) * 1000 + 250);
        let requested = match wish {
            Wish::Online => RequestedStatus::Online,
            Wish::Away => RequestedStatus::Away,
            Wish::Busy => RequestedStatus::Busy,
            Wish::Invisible => RequestedStatus::Invisible,
        };
        let wished_until = until.map(|ms| self.time(ms));
        match presence
            .set_status(&user_name(user).into(), requested, wished_until)
            .await
        {
            Ok(_) => {
                self.model.set_manual(user, wish, until, self.now);
                Ok(())
            }
            // A process whose clock runs ahead may find the expiry past.
            Err(Error::ExpiryInPast { .. }) => Ok(()),
            Err(error) => Err(self.violation("api", format!("set_status failed: {error}"))),
        }
    }

    fn presence_of(&self, process: usize) -> Presence {
        self.processes[self.process_index(process).expect("a running process")]
            .presence
            .clone()
    }

    async fn logout(&mut self, hint: u8) -> Checked {
        let Some(at) = self.pick_client(hint) else {
            return Ok(());
        };
        let Some(process) = self.pick_process(hint) else {
            return Ok(());
        };
        let (user, login) = (self.clients[at].user, self.clients[at].login.clone());
        let presence = self.presence_of(process);
        if let Err(error) = presence
            .logout(&user_name(user).into(), &login.as_str().into())
            .await
        {
            return Err(self.violation("api", format!("logout of {login} failed: {error}")));
        }
        self.model.logout(user, &login, self.now);
        // The host forgets the login: its tabs are signed out for good.
        self.clients.retain(|c| c.login != login);
        Ok(())
    }

    fn go_dark(&mut self, hint: u8) {
        let Some(at) = self.pick_client(hint) else {
            return;
        };
        let reconnect =
            self.now + TIMING.heartbeat + self.jitter(0xda2c ^ self.now as u64, 100, 1_500);
        let client = &mut self.clients[at];
        let Some(socket) = client.socket.take() else {
            return;
        };
        client.reconnect_at = Some(reconnect);
        let (user, id) = (client.user, client.id);
        self.orphans.push(Orphan {
            process: socket.process,
            user,
            key: socket.key,
            handle: socket.handle,
        });
        self.note(format!(
            "client {id}'s network died (session s{} half-open)",
            socket.key
        ));
    }

    async fn kill(&mut self, hint: u8) {
        let Some(id) = self.pick_process(hint) else {
            return;
        };
        self.stats.faults += 1;
        let index = self.process_index(id).expect("running");
        let process = self.processes.remove(index);
        let mut handles = Vec::new();
        let mut doomed = Vec::new();
        for client in &mut self.clients {
            if client.socket.as_ref().is_some_and(|s| s.process == id) {
                let socket = client.socket.take().expect("checked");
                doomed.push((client.user, socket.key));
                handles.push(socket.handle);
                // The client hears nothing more and gives up after a
                // heartbeat interval.
                client.reconnect_at = Some(self.now + TIMING.heartbeat + 300);
            }
        }
        let (gone, kept): (Vec<Orphan>, Vec<Orphan>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|o| o.process == id);
        self.orphans = kept;
        for orphan in gone {
            doomed.push((orphan.user, orphan.key));
            handles.push(orphan.handle);
        }
        self.model.doom(&doomed, self.now);
        self.note(format!("process {id} ({}) killed", process.node));
        crash(process.presence, handles);
    }

    /// Shuts process `id` down gracefully.
    async fn shutdown(&mut self, id: usize) {
        let Some(index) = self.process_index(id) else {
            return;
        };
        let process = self.processes.remove(index);
        let mut closing = Vec::new();
        for client in &mut self.clients {
            if client.socket.as_ref().is_some_and(|s| s.process == id) {
                let socket = client.socket.take().expect("checked");
                closing.push((client.user, socket.key));
                // Told 1001: clients spread their reconnects.
                client.reconnect_at = None;
                drop(socket.events);
                drop(socket.handle);
            }
        }
        let (gone, kept): (Vec<Orphan>, Vec<Orphan>) = std::mem::take(&mut self.orphans)
            .into_iter()
            .partition(|o| o.process == id);
        self.orphans = kept;
        for orphan in gone {
            closing.push((orphan.user, orphan.key));
            drop(orphan.handle);
        }
        for client in &mut self.clients {
            if client.socket.is_none() && client.reconnect_at.is_none() {
                client.reconnects += 1;
            }
        }
        let waiting: Vec<usize> = self
            .clients
            .iter()
            .filter(|c| c.socket.is_none() && c.reconnect_at.is_none())
            .map(|c| c.id)
            .collect();
        for client in waiting {
            let delay = self.jitter(client as u64 ^ 0x1001 ^ self.now as u64, 200, 4_000);
            let at = self.client_index(client).expect("listed");
            self.clients[at].reconnect_at = Some(self.now + delay);
        }
        closing.retain(|(user, key)| !self.model.is_doomed(*user, *key));
        self.model.close_together(&closing, self.now);
        self.note(format!("process {id} ({}) shutting down", process.node));
        process.presence.shutdown().await;
        self.deployment.settle().await;
    }

    async fn rolling_deploy(&mut self, hint: u8) -> Checked {
        let Some(id) = self.pick_process(hint) else {
            return Ok(());
        };
        self.stats.faults += 1;
        let name = self.processes[self.process_index(id).expect("running")]
            .node
            .name
            .to_string();
        self.start_process(&name).await?;
        self.deploys.push((self.now + 1_000, id));
        Ok(())
    }

    async fn drop_feed(&mut self, hint: u8, ms: u16) {
        let Some(id) = self.pick_process(hint) else {
            return;
        };
        self.stats.faults += 1;
        let index = self.process_index(id).expect("running");
        let node = self.processes[index].node.clone();
        self.deployment.drop_feed(&node).await;
        if !self.deployment.feed_reconnects_by_itself() {
            self.processes[index].feed_down_until = Some(self.now + Ms::from(ms));
        }
    }

    /// The sessions the running processes hold.
    fn held(&self) -> Vec<(usize, u64)> {
        let sockets = self
            .clients
            .iter()
            .filter_map(|c| c.socket.as_ref().map(|s| (c.user, s.key)));
        let orphans = self.orphans.iter().map(|o| (o.user, o.key));
        sockets.chain(orphans).collect()
    }

    async fn lose_data(&mut self) {
        self.stats.faults += 1;
        let held = self.held();
        self.deployment.lose_data().await;
        self.model.lose_data(&held, self.now);
        self.deployment.settle().await;
        self.registered_again(&held).await;
    }

    /// Waits (real time, on a real server) until the running processes have
    /// registered again every session they hold that is still live: their
    /// users are present in the store again.
    async fn registered_again(&self, held: &[(usize, u64)]) {
        let Some(process) = self.processes.first() else {
            return;
        };
        let mut users: Vec<usize> = held
            .iter()
            .filter(|(user, key)| self.model.is_live(*user, *key, self.now))
            .map(|(user, _)| *user)
            .collect();
        users.sort_unstable();
        users.dedup();
        let started = std::time::Instant::now();
        for user in users {
            loop {
                let status = process.presence.status(&user_name(user).into()).await;
                if status.is_ok_and(|p| p.status != Status::Offline)
                    || started.elapsed() > Duration::from_secs(5)
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.deployment.settle().await;
    }

    async fn restart_all(&mut self) -> Checked {
        self.stats.faults += 1;
        let running: Vec<(usize, String)> = self
            .processes
            .iter()
            .map(|p| (p.id, p.node.name.to_string()))
            .collect();
        for (id, _) in &running {
            self.shutdown(*id).await;
        }
        self.deployment.lose_data().await;
        self.model.lose_data(&[], self.now);
        let mut names: Vec<String> = running.into_iter().map(|(_, name)| name).collect();
        names.dedup();
        if names.is_empty() {
            names.push(NODES[0].into());
        }
        for name in names {
            self.start_process(&name).await?;
        }
        Ok(())
    }

    fn set_offset(&mut self, hint: u8, offset: impl FnOnce(Ms) -> Ms) {
        let Some(id) = self.pick_process(hint) else {
            return;
        };
        self.stats.faults += 1;
        let index = self.process_index(id).expect("running");
        let process = &mut self.processes[index];
        let before = process.offset;
        process.offset = offset(before);
        // The machine's wall clock steps; time does not pass faster.
        process
            .clock
            .step(TimeDelta::milliseconds(process.offset - before));
    }

    /// Every connected client sends the heartbeats that are due.
    fn heartbeats(&mut self) -> Checked {
        let now = self.now;
        let mut failures = Vec::new();
        for client in &mut self.clients {
            let Some(socket) = &mut client.socket else {
                continue;
            };
            if socket.next_heartbeat > now {
                continue;
            }
            socket.next_heartbeat = now + TIMING.heartbeat;
            let served = socket.handle.heartbeat();
            let modelled = self.model.heartbeat(client.user, socket.key, now);
            match (served, modelled) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(_)) if error.is_session_gone() => {}
                (served, modelled) => failures.push(format!(
                    "heartbeat of s{} ({}): the server said {served:?}, the model {modelled:?}",
                    socket.key,
                    user_name(client.user)
                )),
            }
        }
        match failures.into_iter().next() {
            Some(failure) => Err(self.violation("end", failure)),
            None => Ok(()),
        }
    }

    /// Hands every socket what its subscription delivered, and notices the
    /// sessions the server ended.
    async fn drain(&mut self) -> Checked {
        for at in 0..self.clients.len() {
            let Some(process) = self.clients[at].socket.as_ref().map(|s| s.process) else {
                continue;
            };
            let presence = match self.process_index(process) {
                Some(index) => self.processes[index].presence.clone(),
                None => continue,
            };
            let scopes = self.clients[at].scopes.scopes();
            loop {
                let client = &mut self.clients[at];
                let socket = client.socket.as_mut().expect("checked");
                let Some(delivery) = socket.events.try_recv() else {
                    break;
                };
                let events: Vec<PresenceEvent> = match delivery {
                    Delivery::Lagged => {
                        socket.delivered.clear();
                        if let Err(error) = snapshot_into(&presence, &mut client.view, scopes).await
                        {
                            return Err(
                                self.violation("api", format!("a resnapshot failed: {error}"))
                            );
                        }
                        continue;
                    }
                    delivery => delivery
                        .events()
                        .iter()
                        .map(|e| e.event().clone())
                        .collect(),
                };
                for event in events {
                    self.stats.events += 1;
                    let client = &mut self.clients[at];
                    let socket = client.socket.as_mut().expect("checked");
                    let user = event.user_id.to_string();
                    let stream = (event.scope.to_string(), user.clone());
                    if let Some(last) = socket.delivered.get(&stream)
                        && event.v <= *last
                    {
                        let message = format!(
                            "client {} got {user} {} v{} in {} after v{last}: a duplicate or out of order",
                            client.id, event.status, event.v, event.scope
                        );
                        return Err(self.violation("order", message));
                    }
                    socket.delivered.insert(stream, event.v);
                    client
                        .view
                        .event(event.scope.as_str(), &user, event.status, event.v);
                }
            }
            let client = &self.clients[at];
            let socket = client.socket.as_ref().expect("checked");
            if let Some(end) = socket.handle.has_ended() {
                self.socket_ended(at, end)?;
            }
        }
        let mut ended = Vec::new();
        for (index, orphan) in self.orphans.iter().enumerate() {
            if let Some(end) = orphan.handle.has_ended() {
                ended.push((index, end));
            }
        }
        for (index, end) in ended.into_iter().rev() {
            let orphan = self.orphans.remove(index);
            self.judge_end(orphan.user, orphan.key, end)?;
        }
        Ok(())
    }

    /// Whether the server may end session `key` for `end` now.
    fn judge_end(&self, user: usize, key: u64, end: SessionEnd) -> Checked {
        let live = self.model.is_live(user, key, self.now) && !self.model.is_doomed(user, key);
        match end {
            SessionEnd::Lapsed | SessionEnd::LoggedOut if live => Err(self.violation(
                "end",
                format!(
                    "the server ended s{key} of {} ({end:?}) while it is live (heartbeats on time)",
                    user_name(user)
                ),
            )),
            SessionEnd::Lapsed | SessionEnd::LoggedOut => Ok(()),
            other => Err(self.violation(
                "end",
                format!(
                    "the server ended s{key} of {} unasked ({other:?})",
                    user_name(user)
                ),
            )),
        }
    }

    fn socket_ended(&mut self, at: usize, end: SessionEnd) -> Checked {
        let client = &mut self.clients[at];
        let socket = client.socket.take().expect("checked");
        let (user, key, id) = (client.user, socket.key, client.id);
        client.reconnects += 1;
        let reconnects = client.reconnects;
        self.judge_end(user, key, end)?;
        self.note(format!("client {id}'s session s{key} ended: {end:?}"));
        if end == SessionEnd::LoggedOut {
            self.clients.remove(at);
            return Ok(());
        }
        let delay = self.jitter((id as u64) << 20 ^ reconnects, 100, 1_500);
        self.clients[at].reconnect_at = Some(self.now + delay);
        Ok(())
    }

    /// Every client that is connected to a process hearing its feed shows
    /// what the model says (at some instant of the last tick).
    fn check_views(&mut self) -> Checked {
        let shown = self.model.shown(self.now);
        self.history.push_back((self.now, shown));
        while self.history.len() > 2 && self.history[1].0 <= self.now - TICK {
            self.history.pop_front();
        }
        for client in &self.clients {
            let Some(socket) = &client.socket else {
                continue;
            };
            let Some(process) = self
                .process_index(socket.process)
                .map(|i| &self.processes[i])
            else {
                continue;
            };
            if process.feed_down_until.is_some() {
                continue;
            }
            let watched = client.scopes.scopes();
            for user in 0..USERS {
                self.stats.checks += 1;
                let status = client.view.status(&user_name(user));
                let allowed: Vec<Status> = self
                    .history
                    .iter()
                    .flat_map(|(_, shown)| shown[user].iter().map(|s| s.to(watched)))
                    .collect();
                if !allowed.contains(&status) {
                    return Err(self.violation(
                        "view",
                        format!(
                            "client {} ({} in {watched:?}, on {}) shows {} {status}; the model says {allowed:?}",
                            client.id,
                            user_name(client.user),
                            process.node,
                            user_name(user),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// After a quiet spell, every connected client's view equals what a
    /// fresh snapshot of its scopes says.
    async fn check_against_snapshots(&mut self) -> Checked {
        for client in &self.clients {
            let Some(socket) = &client.socket else {
                continue;
            };
            let Some(index) = self.process_index(socket.process) else {
                continue;
            };
            let presence = self.processes[index].presence.clone();
            let mut fresh: BTreeMap<String, Status> = BTreeMap::new();
            for scope in client.scopes.scopes() {
                let snapshot = presence
                    .snapshot(&ScopeId::from(*scope))
                    .await
                    .map_err(|e| self.violation("api", format!("snapshot failed: {e}")))?;
                for user in snapshot.users {
                    fresh.insert(user.user_id.to_string(), user.status);
                }
            }
            for user in 0..USERS {
                let name = user_name(user);
                let expected = fresh.get(&name).copied().unwrap_or(Status::Offline);
                let status = client.view.status(&name);
                if status != expected {
                    return Err(self.violation(
                        "quiet",
                        format!(
                            "after a quiet spell client {} ({} in {:?}) shows {name} {status}; a fresh snapshot says {expected}",
                            client.id,
                            user_name(client.user),
                            client.scopes.scopes()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn user_name(user: usize) -> String {
    format!("u{user}")
}

/// Reads a snapshot of each of `scopes` and hands it to the client in parts.
async fn snapshot_into(
    presence: &Presence,
    view: &mut ClientView,
    scopes: &[&'static str],
) -> Result<(), Error> {
    for scope in scopes {
        let snapshot = presence.snapshot(&ScopeId::from(*scope)).await?;
        let epoch = Some(snapshot.epoch.as_str());
        let parts: Vec<_> = snapshot.users.chunks(PART).collect();
        if parts.is_empty() {
            view.snapshot_part(scope, &[], false, epoch);
        }
        for (index, part) in parts.iter().enumerate() {
            view.snapshot_part(scope, part, index + 1 < parts.len(), epoch);
        }
    }
    Ok(())
}

/// Kills a process as a crash would: its sockets' handles are dropped where
/// no runtime can close their sessions, then the service itself.
fn crash(presence: Presence, handles: Vec<SessionHandle>) {
    std::thread::spawn(move || drop(handles))
        .join()
        .expect("drop the handles of the crashed process");
    drop(presence);
}
