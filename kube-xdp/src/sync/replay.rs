//! Whether an authentic datagram from the peer is fresh: the peer's epoch
//! and an anti-replay window over its sequence numbers (RFC 4303 §3.4.3,
//! IPsec's), so that a recorded datagram played again installs nothing.
//!
//! Each box numbers its datagrams from 1 within its epoch, its start time
//! in ns since the Unix epoch: a restarted peer has a higher epoch (unless
//! its clock went back) and starts counting again.

use std::time::{Duration, Instant};

use thiserror::Error;

use super::wire::{Datagram, Kind};

/// Sequence numbers the window remembers below the highest seen.
pub const WINDOW: u64 = 64;

/// Why an authentic datagram is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Replay {
    /// From an epoch before the peer's current one: an earlier run of the
    /// peer, recorded and played again (or the peer's clock went back: it
    /// is taken again once a dump answers our Hello).
    #[error("epoch {epoch} is older than the peer's current {current}")]
    OldEpoch {
        /// The datagram's epoch.
        epoch: u64,
        /// The peer's epoch as we know it.
        current: u64,
    },
    /// Seen already, or older than the window.
    #[error("sequence number {seq} already seen or too old")]
    Replayed {
        /// The datagram's sequence number.
        seq: u64,
    },
    /// We do not know the peer's epoch yet, and this is not the dump that
    /// answers our Hello: keep sending Hellos.
    #[error("the peer's epoch is not known yet (no dump answered our Hello)")]
    UnknownPeer,
}

/// The peer's epoch, the highest sequence number taken from it and which
/// of the [`WINDOW`] below were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayGuard {
    /// The peer's current epoch; `None` until a dump answers our Hello.
    epoch: Option<u64>,
    /// The highest epoch ever taken: after the peer's clock went back,
    /// an epoch between the current one and this is a recording, not a
    /// restart.
    ceiling: u64,
    /// The highest sequence number taken in `epoch`.
    highest: u64,
    /// Bit `i`: `highest - i` was taken.
    window: u64,
    /// The nonce of our outstanding Hello.
    hello_nonce: Option<u64>,
}

impl ReplayGuard {
    /// A guard that knows nothing of the peer (this box just started).
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    /// The peer's epoch as far as we know.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// We sent a Hello with `nonce`: a Dump or DumpEnd carrying it is the
    /// peer's answer, and sets its epoch (even a lower one: the nonce
    /// proves it is not a recording).
    pub fn expect_dump(&mut self, nonce: u64) {
        self.hello_nonce = Some(nonce);
    }

    /// Whether `(epoch, seq, kind, nonce)` of an authentic datagram is
    /// fresh. Changes nothing: [`ReplayGuard::accept`] takes it.
    ///
    /// A Hello is always fine to answer (the answer is our table, harmless
    /// to send again; the caller rate-limits with [`HelloLimiter`]).
    ///
    /// # Errors
    ///
    /// [`Replay`] saying why the datagram is not fresh.
    pub fn check(&self, epoch: u64, seq: u64, kind: Kind, nonce: u64) -> Result<(), Replay> {
        if kind == Kind::Hello {
            return Ok(());
        }
        if seq == 0 {
            // Numbering starts at 1.
            return Err(Replay::Replayed { seq });
        }
        let answers_us = kind.is_dump() && self.hello_nonce == Some(nonce);
        let Some(current) = self.epoch else {
            return if answers_us {
                Ok(())
            } else {
                Err(Replay::UnknownPeer)
            };
        };
        if epoch == current {
            return self.in_window(seq);
        }
        if answers_us || epoch > self.ceiling {
            return Ok(());
        }
        Err(Replay::OldEpoch { epoch, current })
    }

    /// Takes a datagram that [`ReplayGuard::check`] passed (and whose tag
    /// was verified): a new epoch replaces the old, and `seq` is marked
    /// seen. A Hello moves the peer to a newer epoch (it restarted) but
    /// never sets the first one.
    pub fn accept(&mut self, epoch: u64, seq: u64, kind: Kind, nonce: u64) {
        // A Hello is answered whatever it is; it speaks for the peer's
        // epoch and window only as far as a Flows datagram would.
        let as_kind = if kind == Kind::Hello {
            Kind::Flows
        } else {
            kind
        };
        if self.check(epoch, seq, as_kind, nonce).is_err() {
            return;
        }
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            self.ceiling = self.ceiling.max(epoch);
            self.highest = seq;
            self.window = 1;
            return;
        }
        if seq > self.highest {
            let shift = seq - self.highest;
            self.window = if shift >= WINDOW {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.highest = seq;
        } else {
            self.window |= 1 << (self.highest - seq);
        }
    }

    /// [`ReplayGuard::check`], then [`ReplayGuard::accept`]: for a
    /// datagram [`super::wire::decode`] returned.
    ///
    /// # Errors
    ///
    /// As `check`.
    pub fn admit(&mut self, d: &Datagram) -> Result<(), Replay> {
        self.check(d.epoch, d.seq, d.kind, d.nonce)?;
        self.accept(d.epoch, d.seq, d.kind, d.nonce);
        Ok(())
    }

    /// `seq` in the current epoch: new, or in the window and not seen.
    fn in_window(&self, seq: u64) -> Result<(), Replay> {
        if seq > self.highest {
            return Ok(());
        }
        let behind = self.highest - seq;
        if behind >= WINDOW || self.window & (1 << behind) != 0 {
            return Err(Replay::Replayed { seq });
        }
        Ok(())
    }
}

/// At most one dump started per interval, however many Hellos arrive
/// (an authentic Hello played again must not make us send our table in a
/// loop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloLimiter {
    interval: Duration,
    last: Option<Instant>,
}

impl Default for HelloLimiter {
    /// One dump a second.
    fn default() -> HelloLimiter {
        HelloLimiter::new(Duration::from_secs(1))
    }
}

impl HelloLimiter {
    /// At most one dump per `interval`.
    pub fn new(interval: Duration) -> HelloLimiter {
        HelloLimiter {
            interval,
            last: None,
        }
    }

    /// Whether a Hello heard at `now` may start a dump (and if so, the
    /// interval starts again).
    pub fn allow(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
