//! Backend health checks with HAProxy's semantics (`interval`, `timeout`,
//! `fall`, `rise`), one tokio task per checked backend.
//!
//! - [`probe`] runs one check (TCP connect, or HTTP(S) `GET` + status);
//! - [`HealthState`] turns check results into UP/DOWN transitions;
//! - [`spawn_checker`] loops the two and reports every check on a channel,
//!   so that the daemon learns each transition with a human reason (for the
//!   log and the maps) and each probe's latency and failure (for metrics).
//!
//! The daemon fills [`CheckSpec`] from its configuration; this module does
//! not read the configuration itself.

mod check;
mod state;
#[cfg(test)]
mod testutil;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

pub use check::{Failure, probe};
pub use state::{Health, HealthState, Transition};
pub use tls::{CaFile, HealthError, tls_config};

/// What a check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Connect, then close.
    Tcp,
    /// `GET path` over plain HTTP/1.1, compare the status.
    Http,
    /// `GET path` over TLS, compare the status.
    Https,
}

/// How `https` checks trust the backend (see [`tls_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `false`: accept any certificate (HAProxy's `verify none`).
    pub verify: bool,
    /// The CAs to trust, as read from their PEM file; `None`: the system
    /// trust store.
    pub ca_file: Option<CaFile>,
    /// SNI and certificate name, also sent as `Host`; `None`: the backend's
    /// IP address.
    pub server_name: Option<String>,
}

/// One pool's health check, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub kind: CheckKind,
    /// Request path of `http`/`https` checks, e.g. `/readyz`.
    pub path: String,
    pub expect_status: u16,
    pub tls: TlsSettings,
    /// Time from the start of one check to the start of the next.
    pub interval: Duration,
    /// Bound on a whole check: connect, TLS, request and response head.
    pub timeout: Duration,
    /// Consecutive failures that take an UP backend DOWN.
    pub fall: u32,
    /// Consecutive successes that bring a DOWN backend UP.
    pub rise: u32,
}

/// The outcome of one check of one backend, sent after every check.
#[derive(Debug, Clone)]
pub struct CheckEvent<K> {
    /// The caller's name for the backend, as given to [`spawn_checker`].
    pub key: K,
    pub addr: SocketAddr,
    /// The latency of a passed check, or why it failed.
    pub result: Result<Duration, Failure>,
    /// How long the check took, passed or failed.
    pub duration: Duration,
    /// The backend's health after this check.
    pub health: Health,
    /// Set when this check changed the health.
    pub transition: Option<Transition>,
    /// HAProxy-style reason, e.g. `Layer4 connection problem, info:
    /// "connection refused", check duration: 0ms, 3/3 failures`.
    pub reason: String,
}

impl<K> CheckEvent<K> {
    pub fn latency(&self) -> Option<Duration> {
        self.result.as_ref().ok().copied()
    }

    pub fn failure(&self) -> Option<&Failure> {
        self.result.as_ref().err()
    }

    /// For a transition, HAProxy's log line: `Server k8s-api/bettley is
    /// DOWN, reason: ...`, with `server` naming the backend the way the
    /// caller wants (e.g. "service/backend").
    pub fn message(&self, server: &str) -> Option<String> {
        self.transition
            .map(|t| format!("Server {server} is {}, reason: {}", t.to, self.reason))
    }
}

/// Checks `addr` every `spec.interval` until the returned handle is aborted
/// or `events`' receiver is dropped. The first check runs at once; the
/// backend starts in state `initial` (DOWN on a fresh start, the pinned state
/// after a restart). After every check an event goes to `events`; a full
/// channel delays the next check rather than losing a transition.
pub fn spawn_checker<K: Clone + Send + Sync + 'static>(
    key: K,
    spec: Arc<CheckSpec>,
    tls: Option<Arc<rustls::ClientConfig>>,
    addr: SocketAddr,
    initial: Health,
    events: mpsc::Sender<CheckEvent<K>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = HealthState::new(initial, spec.fall, spec.rise);
        // `interval` panics on zero; the configuration should not allow it,
        // and a busy loop would be the wrong answer anyway.
        let mut ticker = tokio::time::interval(spec.interval.max(Duration::from_millis(1)));
        // Start-to-start spacing; after a slow check the next one waits a
        // full interval instead of firing a burst to catch up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                // Nobody listens any more (daemon shutting down or pool
                // removed): stop now rather than at the next send.
                () = events.closed() => return,
            }
            let started = Instant::now();
            let result = probe(&spec, tls.as_ref(), addr).await;
            let duration = started.elapsed();
            if let Err(Failure::Local(why)) = &result {
                // Not the backend's fault: no vote either way.
                tracing::warn!(%addr, "health check not run: {why}");
                continue;
            }
            let transition = state.record(result.is_ok());
            let reason = reason(&spec, &result, duration, &state, transition);
            tracing::debug!(%addr, health = %state.health(), %reason, "health check");
            let event = CheckEvent {
                key: key.clone(),
                addr,
                result,
                duration,
                health: state.health(),
                transition,
                reason,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    })
}

/// The reason text of a check, in HAProxy's words where it has some:
/// `Layer7 check passed, code: 200, check duration: 3ms, 2/2 successes`.
fn reason(
    spec: &CheckSpec,
    result: &Result<Duration, Failure>,
    duration: Duration,
    state: &HealthState,
    transition: Option<Transition>,
) -> String {
    let what = match (result, spec.kind) {
        (Ok(_), CheckKind::Tcp) => "Layer4 check passed".to_owned(),
        (Ok(_), _) => format!("Layer7 check passed, code: {}", spec.expect_status),
        (Err(failure), _) => format!("{}, info: \"{failure}\"", failure.layer()),
    };
    let counts = match transition {
        Some(t) => t.counts(),
        None => state.progress(),
    };
    format!(
        "{what}, check duration: {}ms, {counts}",
        duration.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::testutil::{OK, Server, free_port, http_spec};
    use super::*;

    /// Waits (at most 5 s) for the next event that changes the health.
    async fn next_transition(
        rx: &mut mpsc::Receiver<CheckEvent<&'static str>>,
    ) -> CheckEvent<&'static str> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let event = rx.recv().await.expect("checker stopped");
                if event.transition.is_some() {
                    return event;
                }
            }
        })
        .await
        .expect("no transition within 5s")
    }

    fn fast_spec() -> Arc<CheckSpec> {
        Arc::new(CheckSpec {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(500),
            fall: 2,
            rise: 2,
            ..http_spec()
        })
    }

    #[tokio::test]
    async fn checker_goes_down_and_up_with_the_server() {
        let server = Server::http(OK).await;
        let addr = server.addr;
        let (tx, mut rx) = mpsc::channel(16);
        let checker = spawn_checker("bettley", fast_spec(), None, addr, Health::Up, tx);

        let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.key, "bettley");
        assert!(first.latency().is_some(), "{first:?}");
        assert_eq!((first.health, first.transition), (Health::Up, None));
        assert!(
            first.reason.starts_with("Layer7 check passed, code: 200"),
            "{}",
            first.reason
        );

        server.stop().await;
        let down = next_transition(&mut rx).await;
        assert_eq!(down.health, Health::Down);
        assert_eq!(down.failure(), Some(&Failure::Refused));
        let t = down.transition.unwrap();
        assert_eq!((t.to, t.run, t.needed), (Health::Down, 2, 2));
        let message = down.message("k8s-api/bettley").unwrap();
        assert!(
            message.starts_with(
                "Server k8s-api/bettley is DOWN, reason: Layer4 connection problem, \
                 info: \"connection refused\", check duration: "
            ),
            "{message}"
        );
        assert!(message.ends_with(", 2/2 failures"), "{message}");

        let _server = Server::http_on(addr, OK).await;
        let up = next_transition(&mut rx).await;
        assert_eq!(up.health, Health::Up);
        assert!(up.reason.ends_with(", 2/2 successes"), "{}", up.reason);
        assert!(up.latency().is_some());

        // Dropping the receiver ends the task.
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), checker)
            .await
            .expect("checker did not stop after the channel closed")
            .unwrap();
    }

    #[tokio::test]
    async fn checker_reports_progress_before_a_change() {
        let (tx, mut rx) = mpsc::channel(16);
        let spec = Arc::new(CheckSpec {
            fall: 3,
            ..(*fast_spec()).clone()
        });
        let checker = spawn_checker(7u64, spec, None, free_port(), Health::Up, tx);
        let recv = async {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap()
        };
        let first = recv.await;
        assert_eq!((first.health, first.transition), (Health::Up, None));
        assert!(first.reason.ends_with(", 1/3 failures"), "{}", first.reason);
        assert_eq!(first.failure().map(Failure::label), Some("refused"));
        checker.abort();
        assert!(checker.await.unwrap_err().is_cancelled());
    }

    #[tokio::test]
    async fn checker_starting_down_needs_rise_successes() {
        let server = Server::http(OK).await;
        let (tx, mut rx) = mpsc::channel(16);
        let checker = spawn_checker("x", fast_spec(), None, server.addr, Health::Down, tx);
        let mut events = Vec::new();
        let up = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let event = rx.recv().await.unwrap();
                if event.transition.is_some() {
                    return event;
                }
                events.push(event);
            }
        })
        .await
        .unwrap();
        // Exactly one success before the second one brings it up.
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].health, Health::Down);
        assert!(
            events[0].reason.ends_with(", 1/2 successes"),
            "{}",
            events[0].reason
        );
        assert_eq!(up.health, Health::Up);
        checker.abort();
    }
}
