//! The VRRPv3 state machine of one virtual router (RFC 5798 §6.4), pure:
//! events and the time in, actions out; the caller owns the sockets,
//! the addresses and the clock. Beside the RFC's Initialize, Backup and
//! Master it has keepalived's FAULT: a box that cannot serve (its program
//! is not attached, a tracked service has no usable backend) holds no
//! address and stays out of the election until it can.

use std::{
    collections::VecDeque,
    fmt,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use super::vrrp::Advert;

/// How many transitions are remembered for `kube-xdp ha`.
const HISTORY: usize = 10;
/// Gratuitous ARPs are sent again this long after taking over (as
/// keepalived's `garp_master_delay`), then every [`ANNOUNCE_EVERY`].
const ANNOUNCE_AGAIN: Duration = Duration::from_secs(5);
/// Periodic refresh of the neighbours' ARP caches while master.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Init,
    Backup,
    Master,
    Fault,
}

impl State {
    pub const ALL: [State; 4] = [State::Init, State::Backup, State::Master, State::Fault];

    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The configuration of the virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub vrid: u8,
    /// 1..=254.
    pub priority: u8,
    pub interval: Duration,
    pub preempt: bool,
    /// The address advertisements come from (ties go to the higher).
    pub local: Ipv4Addr,
}

/// What happens to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority.
    Send(u8),
    /// Take the virtual addresses and announce them (gratuitous ARPs).
    Claim,
    /// Announce them again.
    Announce,
    /// Give them up.
    Release,
}

/// One change of state, for the log and `kube-xdp ha`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: String,
    pub at: Instant,
}

/// A router heard on the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: Ipv4Addr,
    pub priority: u8,
    pub interval: Duration,
    pub heard: Instant,
}

#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    since: Instant,
    ready: bool,
    /// The master's interval, learned from its advertisements.
    master_interval: Duration,
    master_down_at: Option<Instant>,
    advert_at: Option<Instant>,
    announce_at: Option<Instant>,
    peers: Vec<Peer>,
    history: VecDeque<Transition>,
}

impl Machine {
    /// A router that waits to be ready (INIT).
    pub fn new(params: Params, now: Instant) -> Self {
        Machine {
            master_interval: params.interval,
            params,
            state: State::Init,
            since: now,
            ready: false,
            master_down_at: None,
            advert_at: None,
            announce_at: None,
            peers: Vec::new(),
            history: VecDeque::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The priority advertised now: the configured one, 0 when not
    /// taking part.
    pub fn effective_priority(&self) -> u8 {
        match self.state {
            State::Backup | State::Master => self.params.priority,
            State::Init | State::Fault => 0,
        }
    }

    /// The routers heard, the latest first.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The last transitions, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Transition> {
        self.history.iter()
    }

    /// The master's interval as learned (ours while master).
    pub fn master_interval(&self) -> Duration {
        self.master_interval
    }

    /// `Skew_Time` (RFC 5798 §6.1): lower priorities wait longer.
    pub fn skew(&self) -> Duration {
        self.master_interval * (256 - u32::from(self.params.priority)) / 256
    }

    /// `Master_Down_Interval`: 3 × the master's interval + the skew.
    pub fn master_down_interval(&self) -> Duration {
        self.master_interval * 3 + self.skew()
    }

    /// When the next timer fires, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.master_down_at, self.advert_at, self.announce_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn enter(&mut self, to: State, reason: String, now: Instant) {
        if to == self.state {
            return;
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(Transition {
            from: self.state,
            to,
            reason,
            at: now,
        });
        self.state = to;
        self.since = now;
    }

    fn become_backup(&mut self, reason: String, now: Instant) {
        self.advert_at = None;
        self.announce_at = None;
        self.master_down_at = Some(now + self.master_down_interval());
        self.enter(State::Backup, reason, now);
    }

    fn become_master(&mut self, reason: String, now: Instant, out: &mut Vec<Action>) {
        self.master_interval = self.params.interval;
        self.master_down_at = None;
        self.advert_at = Some(now + self.params.interval);
        self.announce_at = Some(now + ANNOUNCE_AGAIN);
        out.push(Action::Send(self.params.priority));
        out.push(Action::Claim);
        self.enter(State::Master, reason, now);
    }

    /// Leaves the election: a master hands over at once (priority 0) and
    /// gives its addresses up.
    fn leave(&mut self, to: State, reason: String, now: Instant, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::Send(0));
            out.push(Action::Release);
        }
        self.master_down_at = None;
        self.advert_at = None;
        self.announce_at = None;
        self.master_interval = self.params.interval;
        self.enter(to, reason, now);
    }

    /// Whether the box can serve changed (program attached, tracked
    /// services with a usable backend). `why` says what is wrong, or what
    /// came right.
    pub fn set_ready(&mut self, ready: bool, why: &str, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.ready = ready;
        match (self.state, ready) {
            (State::Init | State::Fault, true) => self.become_backup(why.to_owned(), now),
            (State::Backup | State::Master, false) => {
                self.leave(State::Fault, why.to_owned(), now, &mut out)
            }
            _ => {}
        }
        out
    }

    /// A graceful stop: a master resigns with priority 0 so that the
    /// backup takes over after its skew time, not Master_Down.
    pub fn shutdown(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.leave(State::Init, "shutting down".into(), now, &mut out);
        out
    }

    /// Timers that are due at `now`.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        match self.state {
            State::Backup if due(self.master_down_at) => {
                let reason = format!(
                    "no advertisement from a master for {} ms (Master_Down_Interval)",
                    self.master_down_interval().as_millis()
                );
                self.become_master(reason, now, &mut out);
            }
            State::Master => {
                if due(self.advert_at) {
                    out.push(Action::Send(self.params.priority));
                    self.advert_at = Some(now + self.params.interval);
                }
                if due(self.announce_at) {
                    out.push(Action::Announce);
                    self.announce_at = Some(now + ANNOUNCE_EVERY);
                }
            }
            _ => {}
        }
        out
    }

    fn heard(&mut self, from: Ipv4Addr, advert: &Advert, now: Instant) {
        self.peers.retain(|p| p.addr != from);
        self.peers.insert(
            0,
            Peer {
                addr: from,
                priority: advert.priority,
                interval: advert.interval,
                heard: now,
            },
        );
        self.peers.truncate(8);
    }

    /// An advertisement for our virtual router from `from` (already
    /// checked: version, TTL, checksum, VRID).
    pub fn advert(&mut self, from: Ipv4Addr, advert: &Advert, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if from == self.params.local {
            return out;
        }
        self.heard(from, advert, now);
        let ours = self.params.priority;
        match self.state {
            State::Backup => {
                if advert.priority == 0 {
                    // The master resigned: take over after the skew only.
                    self.master_down_at = Some(now + self.skew());
                } else if !self.params.preempt || advert.priority >= ours {
                    self.master_interval = advert.interval;
                    self.master_down_at = Some(now + self.master_down_interval());
                }
                // Else preempt: a lower master is ignored, and its VIPs are
                // taken when Master_Down fires.
            }
            State::Master => {
                let wins = advert.priority > ours
                    || (advert.priority == ours && u32::from(from) > u32::from(self.params.local));
                if advert.priority == 0 {
                    out.push(Action::Send(ours));
                    self.advert_at = Some(now + self.params.interval);
                } else if wins {
                    self.master_interval = advert.interval;
                    out.push(Action::Release);
                    self.become_backup(
                        format!(
                            "advertisement from {from} with priority {} (ours {ours})",
                            advert.priority
                        ),
                        now,
                    );
                } else {
                    // Two masters: assert ourselves at once, and refresh
                    // the neighbours' caches the other may have taken.
                    out.push(Action::Send(ours));
                    out.push(Action::Announce);
                    self.advert_at = Some(now + self.params.interval);
                }
            }
            State::Init | State::Fault => {}
        }
        out
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
