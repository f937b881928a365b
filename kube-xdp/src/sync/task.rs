//! The sync task: the daemon's side of flow sync, on the tokio runtime.
//!
//! - The datapath's reports (`SYNC_EVENTS`) become records, batched
//!   ([`Batcher`]) into datagrams to the peer's `sync_port`.
//! - Every [`REFRESH_EVERY`], flows active since the last refresh are sent
//!   again, so the peer's copies of long-lived flows do not idle out while
//!   they carry traffic here.
//! - Datagrams from the peer are authenticated ([`wire::decode`]), checked
//!   for freshness ([`ReplayGuard`]) and their flows installed in this
//!   box's maps and clock; what is refused is counted and changes nothing.
//! - At start (and whenever the peer's epoch is unknown) a Hello asks the
//!   peer for its whole table; the answer (a dump) is installed before the
//!   daemon lets the pair claim mastership ([`SyncNote::Ready`]). A
//!   peer's Hello (authentic, and not one answered before) is answered
//!   with ours, at most once a second.
//! - Records go to `unicast_peers`, else to the peer VRRP heard, else to
//!   the address the peer's last authentic, fresh datagram came from (a
//!   master never hears a backup's VRRP).
//! - The peer's timestamp clock, in each datagram, moves ours forward
//!   ([`SyncNote::ClockOffset`]).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::maps::{MapData, RingBuf};
use kube_xdp_common::{
    flow,
    maps::{Flow, FlowKey, SyncEvent},
};
use serde::{Deserialize, Serialize};
use tokio::{
    io::unix::AsyncFd,
    net::UdpSocket,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{info, warn};

use super::{
    SyncKey,
    batch::Batcher,
    counters::SyncCounters,
    directory::Directory,
    merge,
    replay::{HelloLimiter, Replay, ReplayGuard},
    wire::{self, Datagram, Kind, MAX_DATAGRAM_LEN, MAX_RECORDS, SyncRecord},
};
use crate::{datapath::Datapath, host::monotonic_ns, metrics::Metrics, plan::SyncPlan};

/// How often flows active since the last time are sent again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long a starting box waits for its peer's table before it lets the
/// pair go on without it (the peer is down, or not configured alike).
pub const TABLE_WAIT: Duration = Duration::from_secs(2);
/// How often the task looks at its Hellos and readiness.
const HELLO_EVERY: Duration = Duration::from_millis(250);
/// A Hello unanswered this long is sent again, with the same nonce (so a
/// dump that was slow to begin is still taken).
const HELLO_RETRY: Duration = Duration::from_secs(1);
/// A dump that sent something within this is still arriving: no new Hello,
/// and the box waits for its end before it says it is ready.
const DUMP_QUIET: Duration = Duration::from_secs(1);
/// A dump pauses a millisecond after this many datagrams, so that the
/// peer's socket buffer keeps up.
const DUMP_BURST: usize = 16;
/// A local flow of the same 5-tuple opened more than this after the
/// peer's is a newer connection (the client re-used its port): kept.
const NEWER_SLACK_NS: u64 = 100_000_000;
/// Socket buffers: a dump of a large table arrives in bursts.
const SOCKET_BUFFER: usize = 8 << 20;
/// The file `kube-xdp ha` reads the sync's status from, in `run_dir`.
pub const SYNC_FILE: &str = "sync.json";

/// What the task tells the control loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncNote {
    /// Whether the box may claim mastership as far as the sync goes, and
    /// why: yes once the peer's table is in, or when no peer was heard
    /// within [`TABLE_WAIT`] of the start, or the peer heard did not answer
    /// within [`TABLE_WAIT`]; no while a peer is heard whose table is not
    /// in yet. Sent when it changes.
    Ready(bool, String),
    /// Run the timestamp clock this far ahead of `CLOCK_MONOTONIC` (only
    /// ever more).
    ClockOffset(u64),
}

/// What `kube-xdp ha` shows of the sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    pub port: u16,
    /// Where records go; `None` until the peer is known.
    pub peer: Option<Ipv4Addr>,
    /// The peer's table was received since this daemon started.
    pub table_received: bool,
    /// Flows in that table.
    pub table_flows: u64,
    pub sent_datagrams: u64,
    pub sent_records: u64,
    pub received_datagrams: u64,
    pub installed_records: u64,
    /// Authentic records not installed, by why (unknown service, ...).
    pub skipped_records: BTreeMap<String, u64>,
    /// Datagrams refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Records sent while no peer was known.
    pub unsent_records: u64,
    pub clock_offset_ns: u64,
}

impl SyncStatus {
    /// The status in `run_dir`, if a pair with sync runs there.
    pub fn load(run_dir: &std::path::Path) -> Option<SyncStatus> {
        let text = std::fs::read_to_string(run_dir.join(SYNC_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// What the task starts with.
pub struct SyncSetup {
    pub plan: SyncPlan,
    /// The box's own address on the pair's interface: bound there.
    pub local: Ipv4Addr,
    /// `[ha] unicast_peers`: where records go; empty: the peer VRRP heard.
    pub unicast_peers: Vec<Ipv4Addr>,
    pub pin_path: PathBuf,
    pub run_dir: PathBuf,
    pub ring: RingBuf<MapData>,
    pub directory: watch::Receiver<Arc<Directory>>,
    /// The peer the pair's VRRP heard last.
    pub heard_peer: watch::Receiver<Option<Ipv4Addr>>,
    /// The timestamp clock's offset in force.
    pub clock_offset_ns: u64,
    pub metrics: Arc<Metrics>,
}

/// The running task.
pub struct SyncHandle {
    task: JoinHandle<()>,
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens the socket and the maps and starts the task.
///
/// # Errors
///
/// When the port cannot be bound or the pinned maps opened.
pub async fn spawn(setup: SyncSetup, notes: mpsc::Sender<SyncNote>) -> anyhow::Result<SyncHandle> {
    let socket = bind(setup.local, setup.plan.port)?;
    let dp = Datapath::open_pinned(&setup.pin_path)?;
    // SAFETY: the ring buffer owns its map's fd, which stays open and the
    // same until the `AsyncFd` (which owns the ring buffer) is dropped.
    let ring =
        unsafe { AsyncFd::register_with_interest(setup.ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("watching the flow reports: {}", e.into_parts().1))?;
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let status = SyncStatus {
        port: setup.plan.port,
        clock_offset_ns: setup.clock_offset_ns,
        ..SyncStatus::default()
    };
    let counters = Arc::new(Mutex::new(SyncCounters::default()));
    let out = Outbox {
        socket: Arc::new(socket),
        key: setup.plan.key.clone(),
        epoch,
        port: setup.plan.port,
        seq: Arc::new(AtomicU64::new(0)),
        clock_offset_ns: Arc::new(AtomicU64::new(setup.clock_offset_ns)),
        counters: Arc::clone(&counters),
    };
    let mut task = Task {
        out,
        unicast_peers: setup.unicast_peers,
        dp,
        pin_path: setup.pin_path,
        run_dir: setup.run_dir,
        ring,
        directory: setup.directory,
        heard_peer: setup.heard_peer,
        learned_peer: None,
        last_hello: None,
        guard: ReplayGuard::new(),
        hellos: HelloLimiter::default(),
        hello_sent: None,
        want_hello: false,
        dump_seen_at: None,
        hello_nonce: None,
        dump_nonce: None,
        batcher: Batcher::default(),
        counters,
        status,
        published: None,
        started: Instant::now(),
        peer_heard_at: None,
        ready_sent: None,
        last_refresh_ns: monotonic_ns(),
        notes,
        metrics: setup.metrics,
    };
    info!(
        port = task.out.port,
        "flow sync listening; asking the peer for its table"
    );
    let task = tokio::spawn(async move { task.run().await });
    Ok(SyncHandle { task })
}

fn bind(local: Ipv4Addr, port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps them at rmem_max / wmem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(local, port)).into())?;
    UdpSocket::from_std(socket.into())
}

/// What sends our datagrams — the loop's, and the dumps' and refreshes'
/// from their own tasks: one numbering of our epoch, one clock, one count.
#[derive(Clone)]
struct Outbox {
    socket: Arc<UdpSocket>,
    key: SyncKey,
    /// Ours: the start time, ns since the Unix epoch.
    epoch: u64,
    port: u16,
    /// Datagrams sent in our epoch.
    seq: Arc<AtomicU64>,
    /// How far our timestamp clock runs ahead of `CLOCK_MONOTONIC`.
    clock_offset_ns: Arc<AtomicU64>,
    counters: Arc<Mutex<SyncCounters>>,
}

impl Outbox {
    /// Our timestamp clock now.
    fn clock_ns(&self) -> u64 {
        monotonic_ns().wrapping_add(self.clock_offset_ns.load(Ordering::Relaxed))
    }

    /// Sends `records` as a `kind` datagram to `to`'s sync port.
    async fn send(
        &self,
        kind: Kind,
        nonce: u64,
        records: &[SyncRecord],
        to: Ipv4Addr,
    ) -> std::io::Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = wire::encode(
            kind,
            self.epoch,
            seq,
            nonce,
            self.clock_ns(),
            records,
            &self.key,
        );
        debug_assert!(bytes.len() <= MAX_DATAGRAM_LEN);
        self.socket
            .send_to(&bytes, SocketAddrV4::new(to, self.port))
            .await?;
        lock(&self.counters).sent(records.len());
        Ok(())
    }
}

/// The counters, whoever held them last (they are plain numbers).
fn lock(counters: &Mutex<SyncCounters>) -> std::sync::MutexGuard<'_, SyncCounters> {
    counters.lock().unwrap_or_else(|e| e.into_inner())
}

struct Task {
    /// What sends our datagrams (shared with the dump and refresh tasks).
    out: Outbox,
    unicast_peers: Vec<Ipv4Addr>,
    dp: Datapath,
    pin_path: PathBuf,
    run_dir: PathBuf,
    ring: AsyncFd<RingBuf<MapData>>,
    directory: watch::Receiver<Arc<Directory>>,
    heard_peer: watch::Receiver<Option<Ipv4Addr>>,
    /// Where the peer's last authentic, fresh datagram came from.
    learned_peer: Option<Ipv4Addr>,
    /// The newest Hello answered, (epoch, seq): one not newer is a
    /// recording.
    last_hello: Option<(u64, u64)>,
    guard: ReplayGuard,
    hellos: HelloLimiter,
    /// When our last Hello went out.
    hello_sent: Option<Instant>,
    /// Ask the peer (again): its epoch is unknown or may have moved.
    want_hello: bool,
    /// When a datagram of a dump answering us last came in.
    dump_seen_at: Option<Instant>,
    /// The nonce of our outstanding Hello (kept for its retries).
    hello_nonce: Option<u64>,
    /// The nonce of the dump last received (`table_flows` counts its
    /// flows).
    dump_nonce: Option<u64>,
    batcher: Batcher,
    /// Shared with the dump and refresh tasks, which count what they send.
    counters: Arc<Mutex<SyncCounters>>,
    status: SyncStatus,
    /// What `sync.json` last said.
    published: Option<SyncStatus>,
    started: Instant,
    /// When VRRP first heard the peer.
    peer_heard_at: Option<Instant>,
    /// What was last said with [`SyncNote::Ready`].
    ready_sent: Option<bool>,
    /// `CLOCK_MONOTONIC` of the last refresh walk.
    last_refresh_ns: u64,
    notes: mpsc::Sender<SyncNote>,
    metrics: Arc<Metrics>,
}

impl Task {
    async fn run(&mut self) {
        let mut buf = vec![0u8; 65_536];
        let mut tick = tokio::time::interval(HELLO_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut refresh = tokio::time::interval(REFRESH_EVERY);
        refresh.reset();
        loop {
            let deadline = self.batcher.deadline();
            tokio::select! {
                ready = self.ring.readable_mut() => match ready {
                    Ok(mut guard) => {
                        let events = drain(guard.get_inner_mut());
                        guard.clear_ready();
                        self.on_events(&events).await;
                    }
                    Err(e) => {
                        warn!("reading the datapath's flow reports: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = sleep_until(deadline), if deadline.is_some() => self.flush().await,
                got = self.out.socket.recv_from(&mut buf) => match got {
                    Ok((len, from)) => self.on_datagram(&buf[..len], from).await,
                    Err(e) => {
                        warn!("receiving flow sync: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = tick.tick() => self.on_tick().await,
                // A peer heard at last: ask for its table at once.
                Ok(()) = self.heard_peer.changed() => self.on_tick().await,
                _ = refresh.tick() => self.refresh(),
            }
        }
    }

    /// Where records and Hellos go: the configured peer, else the one
    /// VRRP heard (a backup hears its master), else the one whose
    /// authentic datagrams come in (a master hears no backup's VRRP).
    fn peer(&self) -> Option<Ipv4Addr> {
        self.unicast_peers
            .first()
            .copied()
            .or(*self.heard_peer.borrow())
            .or(self.learned_peer)
    }

    async fn send(&mut self, kind: Kind, nonce: u64, records: &[SyncRecord], to: Ipv4Addr) {
        if let Err(e) = self.out.send(kind, nonce, records, to).await {
            warn!(peer = %to, "sending flow sync: {e}");
        }
    }

    async fn on_events(&mut self, events: &[SyncEvent]) {
        if events.is_empty() {
            return;
        }
        let now = monotonic_ns();
        let at = Instant::now();
        let directory = Arc::clone(&self.directory.borrow());
        for e in events {
            let record =
                SyncRecord::from_flow(&e.client, &e.flow, directory.position(e.flow.ifindex), now);
            if let Some(full) = self.batcher.push(record, at) {
                self.send_records(&full).await;
            }
        }
    }

    async fn flush(&mut self) {
        let records = self.batcher.take();
        self.send_records(&records).await;
    }

    async fn send_records(&mut self, records: &[SyncRecord]) {
        if records.is_empty() {
            return;
        }
        match self.peer() {
            Some(peer) => self.send(Kind::Flows, 0, records, peer).await,
            None => self.status.unsent_records += records.len() as u64,
        }
    }

    /// Flows seen since the last refresh, sent again, from a task of its
    /// own (the walk of a large table takes a while; this loop must keep
    /// draining the ring buffer and the socket meanwhile).
    fn refresh(&mut self) {
        let Some(peer) = self.peer() else {
            return;
        };
        let since = self.last_refresh_ns;
        self.last_refresh_ns = monotonic_ns();
        self.send_table(peer, Some(since), None);
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let want_table = self.guard.epoch().is_none() || self.want_hello;
        let dump_arriving = self
            .dump_seen_at
            .is_some_and(|at| now.duration_since(at) < DUMP_QUIET);
        if want_table
            && !dump_arriving
            && self
                .hello_sent
                .is_none_or(|sent| now.duration_since(sent) >= HELLO_RETRY)
            && let Some(peer) = self.peer()
        {
            let nonce = *self.hello_nonce.get_or_insert_with(random_u64);
            self.guard.expect_dump(nonce);
            self.hello_sent = Some(now);
            self.send(Kind::Hello, nonce, &[], peer).await;
        }
        if self.peer_heard_at.is_none() && self.heard_peer.borrow().is_some() {
            self.peer_heard_at = Some(now);
        }
        let wait = TABLE_WAIT.as_millis();
        let (ready, why) = match self.peer_heard_at {
            _ if self.status.table_received => (true, "the peer's flow table is in".to_owned()),
            _ if dump_arriving => (false, "the peer's flow table is arriving".to_owned()),
            Some(heard) if now.duration_since(heard) >= TABLE_WAIT => (
                true,
                format!(
                    "the peer sent no flow table within {wait} ms of being heard: going on with this box's own"
                ),
            ),
            Some(_) => (false, "waiting for the peer's flow table".to_owned()),
            None if now.duration_since(self.started) >= TABLE_WAIT => (
                true,
                format!("no peer heard within {wait} ms: going on with this box's own flow table"),
            ),
            None => (false, "waiting for the peer's flow table".to_owned()),
        };
        self.ready(ready, why).await;
        self.publish();
    }

    async fn ready(&mut self, ready: bool, why: String) {
        if self.ready_sent == Some(ready) {
            return;
        }
        self.ready_sent = Some(ready);
        info!("{why}");
        let _ = self.notes.send(SyncNote::Ready(ready, why)).await;
    }

    async fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        lock(&self.counters).received_datagrams += 1;
        let d = match wire::decode(bytes, &self.out.key) {
            Ok(d) => d,
            Err(e) => return lock(&self.counters).reject(&e),
        };
        let SocketAddr::V4(from) = from else {
            return;
        };
        if d.epoch == self.out.epoch {
            // Our own datagram, sent back to us: never the peer's.
            return lock(&self.counters).reject(&Replay::Replayed { seq: d.seq });
        }
        let admitted = self.guard.admit(&d);
        if d.kind == Kind::Hello {
            return self.on_hello(&d, *from.ip(), admitted.err()).await;
        }
        if let Err(why) = admitted {
            lock(&self.counters).reject(&why);
            if matches!(why, Replay::UnknownPeer | Replay::OldEpoch { .. }) {
                // The peer's epoch may have moved (or gone back with its
                // clock): learn it the only safe way, by asking. The guard
                // keeps what it knows meanwhile, so a recording played
                // again disturbs nothing but costs the peer a dump (one a
                // second at most).
                self.want_hello = true;
            }
            return;
        }
        self.learned_peer = Some(*from.ip());
        self.follow_clock(d.clock_ns).await;
        let installed = self.install(&d.records);
        if d.kind.is_dump() {
            if self.dump_nonce != Some(d.nonce) {
                // A new answer: count its flows afresh.
                self.dump_nonce = Some(d.nonce);
                self.status.table_flows = 0;
            }
            self.status.table_flows += installed;
            // Our Hello is answered: the guard took the peer's epoch.
            self.want_hello = false;
            self.dump_seen_at = Some(Instant::now());
            if d.kind == Kind::DumpEnd {
                self.status.table_received = true;
                self.hello_nonce = None;
                // The answered nonce must not let a recording of this dump
                // back in later: the guard expects one nobody has.
                self.guard.expect_dump(random_u64());
                let why = format!(
                    "flow table from the peer {} installed: {} flows",
                    from.ip(),
                    self.status.table_flows
                );
                self.ready(true, why).await;
                self.publish();
            }
        }
    }

    async fn on_hello(&mut self, d: &Datagram, from: Ipv4Addr, refused: Option<Replay>) {
        // Unknown (we just started, or it did): fine, a Hello is how the
        // peer tells its new epoch. Older than the one we know: a
        // recording.
        if let Some(why) = &refused
            && !matches!(why, Replay::UnknownPeer)
        {
            return lock(&self.counters).reject(why);
        }
        // A Hello played again (this one, or any before the newest we
        // answered) is refused.
        if self.last_hello.is_some_and(|last| (d.epoch, d.seq) <= last) {
            return lock(&self.counters).reject(&Replay::Replayed { seq: d.seq });
        }
        // Where a peer is known, the table goes to it only.
        let known = self
            .unicast_peers
            .first()
            .copied()
            .or(*self.heard_peer.borrow());
        if known.is_some_and(|peer| peer != from) && !self.unicast_peers.contains(&from) {
            info!(%from, "a flow-sync Hello from an address that is not the peer's: not answered");
            return;
        }
        // One dump a second for Hellos of one run of the peer's; a peer
        // that restarted (a new epoch) is answered at once.
        let restarted = self.last_hello.is_none_or(|(epoch, _)| epoch != d.epoch);
        if !self.hellos.allow(Instant::now()) && !restarted {
            return;
        }
        self.last_hello = Some((d.epoch, d.seq));
        self.learned_peer = Some(from);
        self.follow_clock(d.clock_ns).await;
        // The peer (re)started: learn its epoch too, by asking.
        if self.guard.epoch() != Some(d.epoch) {
            self.want_hello = true;
        }
        self.send_table(from, None, Some(d.nonce));
    }

    /// Sends our live flows to `to` from a task of its own: those seen
    /// since `since` as Flows datagrams (a refresh), or all of them as a
    /// dump answering the Hello `nonce`.
    fn send_table(&mut self, to: Ipv4Addr, since: Option<u64>, nonce: Option<u64>) {
        let pin_path = self.pin_path.clone();
        let directory = Arc::clone(&self.directory.borrow());
        let out = self.out.clone();
        tokio::spawn(async move {
            let what = if nonce.is_some() { "dump" } else { "refresh" };
            let (_, flows) = match read_live_flows(&pin_path).await {
                Ok(read) => read,
                Err(e) => return warn!("reading the flow table for the peer's {what}: {e:#}"),
            };
            let flows: Vec<_> = flows
                .into_iter()
                .filter(|(_, f)| since.is_none_or(|since| f.last_seen_ns >= since))
                .collect();
            if nonce.is_none() && flows.is_empty() {
                return;
            }
            let mut chunks: Vec<&[(FlowKey, Flow)]> = flows.chunks(MAX_RECORDS).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            let last = chunks.len() - 1;
            for (i, chunk) in chunks.into_iter().enumerate() {
                let kind = match nonce {
                    None => Kind::Flows,
                    Some(_) if i == last => Kind::DumpEnd,
                    Some(_) => Kind::Dump,
                };
                // Ages as of the send, not of the walk.
                let now = monotonic_ns();
                let records: Vec<SyncRecord> = chunk
                    .iter()
                    .map(|(k, f)| SyncRecord::from_flow(k, f, directory.position(f.ifindex), now))
                    .collect();
                if let Err(e) = out.send(kind, nonce.unwrap_or(0), &records, to).await {
                    return warn!(peer = %to, "sending the flow table ({what}): {e}");
                }
                if (i + 1) % DUMP_BURST == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            if nonce.is_some() {
                info!(peer = %to, flows = flows.len(), "sent the flow table to the peer");
            }
        });
    }

    /// Moves our timestamp clock up to the peer's `clock_ns` (never back).
    async fn follow_clock(&mut self, peer_clock_ns: u64) {
        if peer_clock_ns <= self.out.clock_ns().saturating_add(1_000_000) {
            return;
        }
        let offset = peer_clock_ns.saturating_sub(monotonic_ns());
        self.out.clock_offset_ns.store(offset, Ordering::Relaxed);
        self.status.clock_offset_ns = offset;
        let _ = self.notes.send(SyncNote::ClockOffset(offset)).await;
    }

    /// Installs the peer's flows; returns how many went in.
    fn install(&mut self, records: &[SyncRecord]) -> u64 {
        let directory = Arc::clone(&self.directory.borrow());
        let settings = match self.dp.settings() {
            Ok(settings) => settings,
            Err(e) => {
                warn!("reading the datapath settings to install the peer's flows: {e}");
                return 0;
            }
        };
        let now = monotonic_ns();
        let mut installed = 0;
        for record in records {
            let outcome = directory
                .resolve(record)
                .map_err(|why| why.label())
                .and_then(|(service_id, backend_id, ifindex)| {
                    let (key, flow) = record.to_flow(now, backend_id, service_id, ifindex);
                    self.merge(&settings, &key, flow, now)
                        .map(|flow| (key, flow))
                });
            let skipped = match outcome {
                Ok((key, flow)) => match self.dp.install_flow(&key, &flow) {
                    Ok(()) => {
                        installed += 1;
                        continue;
                    }
                    Err(e) => {
                        warn!("installing a flow from the peer: {e}");
                        "map_error"
                    }
                },
                Err(why) => why,
            };
            *self
                .status
                .skipped_records
                .entry(skipped.to_owned())
                .or_default() += 1;
        }
        lock(&self.counters).installed_records += installed;
        installed
    }

    /// The peer's `flow` of `key` as it is to be installed here, given
    /// what this box holds: the same flow (same ports, opened within
    /// [`NEWER_SLACK_NS`] of each other) merges ([`merge::same_flow`]); a
    /// newer local flow of the same 5-tuple, or a live local flow holding
    /// the same SNAT port, is kept, and the record skipped (why, as a
    /// label).
    fn merge(
        &self,
        settings: &kube_xdp_common::maps::Settings,
        key: &FlowKey,
        flow: Flow,
        now: u64,
    ) -> Result<Flow, &'static str> {
        let rkey = flow::reverse_key(key, &flow);
        if let Ok(Some(local)) = self.dp.flow(key) {
            let newer_there = flow.created_ns > local.created_ns.saturating_add(NEWER_SLACK_NS);
            if flow::forward_agrees(&local, &rkey) && !newer_there {
                return Ok(merge::same_flow(flow, &local));
            }
            if local.created_ns > flow.created_ns.saturating_add(NEWER_SLACK_NS) {
                return Err("newer_here");
            }
        }
        if let Ok(Some(owner)) = self.dp.reverse(&rkey)
            && owner.client != *key
            && let Ok(Some(theirs)) = self.dp.flow(&owner.client)
            && flow::live(settings, &owner.client, &theirs, Some(&owner), now)
        {
            return Err("port_taken_here");
        }
        Ok(flow)
    }

    /// Writes `sync.json` and the metrics when something changed.
    fn publish(&mut self) {
        let c = lock(&self.counters).clone();
        self.status.peer = self.peer();
        self.status.sent_datagrams = c.sent_datagrams;
        self.status.sent_records = c.sent_records;
        self.status.received_datagrams = c.received_datagrams;
        self.status.installed_records = c.installed_records;
        self.status.rejected = c
            .rejections()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (r.name().to_owned(), n))
            .collect();
        if self.published.as_ref() == Some(&self.status) {
            return;
        }
        self.metrics.set_sync(&self.status);
        if let Err(e) = crate::daemon::control::write_json(&self.run_dir, SYNC_FILE, &self.status) {
            warn!("writing {SYNC_FILE}: {e}");
        }
        self.published = Some(self.status.clone());
    }
}

/// The live flows pinned at `pin_path`, read on a blocking thread: a walk
/// of a large table takes a while, and the runtime's workers also run the
/// pair's VRRP, whose advertisements must not wait for it.
async fn read_live_flows(
    pin_path: &std::path::Path,
) -> anyhow::Result<(u64, Vec<(FlowKey, Flow)>)> {
    let pin_path = pin_path.to_owned();
    tokio::task::spawn_blocking(move || {
        let dp = Datapath::open_pinned(&pin_path)?;
        Ok(crate::view::live_flows(&dp)?)
    })
    .await?
}

/// The events waiting in the ring buffer.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<SyncEvent> {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() == size_of::<SyncEvent>() {
            // SAFETY: `SyncEvent` is plain old data of exactly that size.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SyncEvent>()) });
        }
    }
    events
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn random_u64() -> u64 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // Unreachable on Linux (getrandom); a clock-based nonce still
        // differs from every earlier one.
        return monotonic_ns();
    }
    u64::from_ne_bytes(bytes)
}
