//! The SYN-flood defence as the daemon sees it: the cookie key it gives
//! the datapath, the cookies' clock, and a watch of the datapath's
//! counters that says in the log when the defence switches on and off.
//! Plain Rust: the control loop feeds it counter samples and clocks.

use std::time::{Duration, Instant};

use crate::config::SynCookies;
use crate::sync::SyncKey;

/// How long without a SYN over the half-open limit before the defence is
/// called off.
pub const QUIET_FOR: Duration = Duration::from_secs(10);

/// How far the realtime clock may drift from the cookies' clock as last
/// written before the settings are written again: far below the cookie
/// period (2^36 ns, ~68.7 s), far above the jitter of one reading.
pub const CLOCK_SLACK_NS: u64 = 10_000_000;

/// The cookies' SipHash key: derived from the pair's `sync` key when flow
/// sync is on (both boxes then check each other's cookies after a
/// failover); otherwise the one the pinned settings hold from an earlier
/// run (`pinned`, all zero when none), so a restart does not void the
/// cookies in flight; otherwise `random`.
pub fn cookie_key(
    sync: Option<&SyncKey>,
    pinned: [u64; 2],
    random: impl FnOnce() -> [u64; 2],
) -> [u64; 2] {
    match sync {
        Some(key) => key.cookie_key(),
        None if pinned != [0, 0] => pinned,
        None => random(),
    }
}

/// 16 bytes from the system's CSPRNG (`getrandom`).
///
/// # Panics
///
/// When the kernel has no randomness to give (never on Linux 3.17+).
pub fn random_key() -> [u64; 2] {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("getrandom(2) fills 16 bytes");
    let (a, b) = bytes.split_at(8);
    [
        u64::from_le_bytes(a.try_into().expect("8 bytes")),
        u64::from_le_bytes(b.try_into().expect("8 bytes")),
    ]
}

/// Whether the cookies' clock as last written (`written`) has drifted
/// from the realtime offset now (`now`) enough to write it again (NTP
/// stepped or slewed the realtime clock).
pub fn clock_moved(written: u64, now: u64) -> bool {
    written.abs_diff(now) > CLOCK_SLACK_NS
}

/// The datapath's counters of the defence at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: Instant,
    /// `syn_cookie_sent`.
    pub cookies_sent: u64,
    /// `half_open_limited`: SYNs dropped over the limit (`never`).
    pub half_open_limited: u64,
}

/// The defence switching.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// SYNs over the half-open limit since the last sample, at these rates.
    On {
        cookies_per_second: f64,
        dropped_per_second: f64,
    },
    /// None for [`QUIET_FOR`].
    Off,
}

/// On while SYNs over the half-open limit are answered with cookies or
/// dropped, and until [`QUIET_FOR`] has passed without any; fed counter
/// samples about once a second.
#[derive(Debug, Default)]
pub struct Defence {
    last: Option<Sample>,
    /// When the counters last moved.
    active: Option<Instant>,
    on: bool,
}

impl Defence {
    /// Whether the defence is on.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Takes `sample`; says when the defence switched. The first sample
    /// only sets the baseline (the pinned counters carry an earlier run's
    /// counts); counters that went back (the maps were made anew) count
    /// as no change.
    pub fn observe(&mut self, sample: Sample) -> Option<Change> {
        let prev = self.last.replace(sample)?;
        let cookies = sample.cookies_sent.saturating_sub(prev.cookies_sent);
        let dropped = sample
            .half_open_limited
            .saturating_sub(prev.half_open_limited);
        if cookies + dropped > 0 {
            self.active = Some(sample.at);
            if self.on {
                return None;
            }
            self.on = true;
            let seconds = sample
                .at
                .saturating_duration_since(prev.at)
                .as_secs_f64()
                .max(1e-3);
            return Some(Change::On {
                cookies_per_second: cookies as f64 / seconds,
                dropped_per_second: dropped as f64 / seconds,
            });
        }
        let quiet = self
            .active
            .is_none_or(|t| sample.at.saturating_duration_since(t) >= QUIET_FOR);
        if self.on && quiet {
            self.on = false;
            return Some(Change::Off);
        }
        None
    }
}

/// The log line of `change` under `mode` with `half_open_limit`.
pub fn message(change: Change, mode: SynCookies, half_open_limit: u32) -> String {
    match change {
        Change::On {
            cookies_per_second,
            dropped_per_second,
        } => {
            let rate = (cookies_per_second + dropped_per_second).round();
            match mode {
                SynCookies::Never => format!(
                    "SYN flood defence on: dropping SYNs ({rate}/s over the half-open limit of \
                     {half_open_limit}; syn_cookies = \"never\")"
                ),
                SynCookies::Auto | SynCookies::Always => format!(
                    "SYN flood defence on: answering SYNs with cookies ({rate}/s over the \
                     half-open limit of {half_open_limit})"
                ),
            }
        }
        Change::Off => format!(
            "SYN flood defence off: no SYN over the half-open limit of {half_open_limit} for {} s",
            QUIET_FOR.as_secs()
        ),
    }
}

/// The line logged when `syn_cookies = "always"` comes into force.
pub const ALWAYS_MESSAGE: &str = "SYN cookies always on (syn_cookies = \"always\"): every SYN to a \
    service is answered with a cookie, no half-open flow is kept";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, secs: u64, cookies: u64, limited: u64) -> Sample {
        Sample {
            at: t0 + Duration::from_secs(secs),
            cookies_sent: cookies,
            half_open_limited: limited,
        }
    }

    #[test]
    fn the_defence_goes_on_when_cookies_rise_and_off_after_ten_quiet_seconds() {
        let t0 = Instant::now();
        let mut d = Defence::default();
        // An earlier run's counts are the baseline, not a flood.
        assert_eq!(d.observe(at(t0, 0, 5_000, 0)), None);
        assert_eq!(d.observe(at(t0, 1, 5_000, 0)), None);
        assert!(!d.is_on());
        assert_eq!(
            d.observe(at(t0, 3, 9_000, 0)),
            Some(Change::On {
                cookies_per_second: 2_000.0,
                dropped_per_second: 0.0
            })
        );
        assert!(d.is_on());
        // Still rising: said once.
        assert_eq!(d.observe(at(t0, 4, 12_000, 0)), None);
        // Quiet since t0 + 4: off at t0 + 14, not before.
        for s in 5..14 {
            assert_eq!(d.observe(at(t0, s, 12_000, 0)), None, "at {s}");
            assert!(d.is_on());
        }
        assert_eq!(d.observe(at(t0, 14, 12_000, 0)), Some(Change::Off));
        assert!(!d.is_on());
        assert_eq!(d.observe(at(t0, 15, 12_000, 0)), None);
        // A short burst again: on, and a cookie within the quiet time
        // keeps it on.
        assert!(matches!(
            d.observe(at(t0, 16, 12_001, 0)),
            Some(Change::On { .. })
        ));
        assert_eq!(d.observe(at(t0, 25, 12_002, 0)), None);
        assert_eq!(d.observe(at(t0, 34, 12_002, 0)), None);
        assert_eq!(d.observe(at(t0, 35, 12_002, 0)), Some(Change::Off));
    }

    #[test]
    fn dropped_syns_switch_it_too_and_counters_that_go_back_do_not() {
        let t0 = Instant::now();
        let mut d = Defence::default();
        d.observe(at(t0, 0, 0, 100));
        assert_eq!(
            d.observe(at(t0, 2, 0, 700)),
            Some(Change::On {
                cookies_per_second: 0.0,
                dropped_per_second: 300.0
            })
        );
        let mut d = Defence::default();
        d.observe(at(t0, 0, 1_000, 1_000));
        // The maps were made anew (kube-xdp detach, then a start).
        assert_eq!(d.observe(at(t0, 1, 3, 0)), None);
        assert!(!d.is_on());
        // From the new baseline on, it counts again.
        assert!(d.observe(at(t0, 2, 4, 0)).is_some());
    }

    #[test]
    fn the_log_lines_say_what_happens_to_a_syn() {
        let on = Change::On {
            cookies_per_second: 1_234.4,
            dropped_per_second: 0.0,
        };
        assert_eq!(
            message(on, SynCookies::Auto, 8192),
            "SYN flood defence on: answering SYNs with cookies (1234/s over the half-open limit of 8192)"
        );
        let dropped = Change::On {
            cookies_per_second: 0.0,
            dropped_per_second: 50.0,
        };
        assert_eq!(
            message(dropped, SynCookies::Never, 100),
            "SYN flood defence on: dropping SYNs (50/s over the half-open limit of 100; syn_cookies = \"never\")"
        );
        assert_eq!(
            message(Change::Off, SynCookies::Auto, 8192),
            "SYN flood defence off: no SYN over the half-open limit of 8192 for 10 s"
        );
    }

    #[test]
    fn the_cookies_clock_is_rewritten_only_when_it_moved() {
        assert!(!clock_moved(1_000_000_000, 1_000_000_000 + CLOCK_SLACK_NS));
        assert!(clock_moved(1_000_000_000, 1_000_000_001 + CLOCK_SLACK_NS));
        assert!(clock_moved(
            1_000_000_000 + CLOCK_SLACK_NS + 1,
            1_000_000_000
        ));
    }

    #[test]
    fn the_cookie_key_is_the_pairs_else_the_pinned_one_else_random() {
        let sync = SyncKey::new(b"0123456789abcdef0123");
        let fresh = || [7, 8];
        assert_eq!(cookie_key(Some(&sync), [1, 2], fresh), sync.cookie_key());
        assert_eq!(cookie_key(Some(&sync), [0, 0], fresh), sync.cookie_key());
        assert_eq!(cookie_key(None, [1, 2], fresh), [1, 2]);
        assert_eq!(cookie_key(None, [0, 0], fresh), [7, 8]);
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(random_key(), random_key());
    }
}
