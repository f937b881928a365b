//! The UP/DOWN state machine of one backend, with HAProxy's `fall`/`rise`
//! semantics: `fall` consecutive failed checks take an UP backend DOWN,
//! `rise` consecutive passed checks bring a DOWN backend UP.
//!
//! Only *consecutive* results count: a success while UP clears the run of
//! failures, a failure while DOWN clears the run of successes. (HAProxy's own
//! counter walks up and down a single scale, so there a flapping backend can
//! drift towards a change; the design asks for strict runs, which is also
//! the behaviour its documentation describes.)

use std::fmt;

/// Whether a backend may take new flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Upper case as in HAProxy's log lines ("Server x/y is DOWN").
        f.write_str(match self {
            Self::Up => "UP",
            Self::Down => "DOWN",
        })
    }
}

/// A change of state, returned by [`HealthState::record`] on the check that
/// completed the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The new state.
    pub to: Health,
    /// The length of the run that caused the change (always `needed`; kept
    /// so that the message needs nothing but this value).
    pub run: u32,
    /// The run length the configuration asks for (`fall` or `rise`).
    pub needed: u32,
}

impl Transition {
    /// "3/3 failures" or "2/2 successes".
    pub fn counts(&self) -> String {
        format!("{}/{} {}", self.run, self.needed, run_noun(self.to))
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} after {}", self.to, self.counts())
    }
}

/// The kind of result that counts towards a change *into* `to`.
fn run_noun(to: Health) -> &'static str {
    match to {
        Health::Down => "failures",
        Health::Up => "successes",
    }
}

/// One backend's health and the current run of results that disagree with it.
#[derive(Debug, Clone)]
pub struct HealthState {
    health: Health,
    fall: u32,
    rise: u32,
    /// Consecutive results contradicting `health` (failures while UP,
    /// successes while DOWN). Results agreeing with `health` reset it.
    run: u32,
}

impl HealthState {
    /// `fall` and `rise` of 0 are treated as 1: the configuration rejects 0,
    /// and "change on the first contradicting result" is the only sensible
    /// reading should one slip through.
    pub fn new(initial: Health, fall: u32, rise: u32) -> Self {
        Self {
            health: initial,
            fall: fall.max(1),
            rise: rise.max(1),
            run: 0,
        }
    }

    pub fn health(&self) -> Health {
        self.health
    }

    /// Consecutive results so far towards leaving the current state.
    pub fn run(&self) -> u32 {
        self.run
    }

    /// The run length that leaves the current state (`fall` while UP, `rise`
    /// while DOWN).
    pub fn needed(&self) -> u32 {
        match self.health {
            Health::Up => self.fall,
            Health::Down => self.rise,
        }
    }

    /// "1/3 failures" while UP, "1/2 successes" while DOWN: the progress
    /// towards a change, for log lines of checks that changed nothing.
    pub fn progress(&self) -> String {
        let towards = match self.health {
            Health::Up => Health::Down,
            Health::Down => Health::Up,
        };
        format!("{}/{} {}", self.run, self.needed(), run_noun(towards))
    }

    /// Feeds one check result; returns the transition if this result
    /// completed a run.
    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        let agrees = match self.health {
            Health::Up => ok,
            Health::Down => !ok,
        };
        if agrees {
            self.run = 0;
            return None;
        }
        self.run += 1;
        let needed = self.needed();
        if self.run < needed {
            return None;
        }
        let transition = Transition {
            to: if ok { Health::Up } else { Health::Down },
            run: self.run,
            needed,
        };
        self.health = transition.to;
        self.run = 0;
        Some(transition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `results` ('+' pass, '-' fail) and returns the index and target
    /// of every transition.
    fn run(state: &mut HealthState, results: &str) -> Vec<(usize, Health)> {
        results
            .chars()
            .enumerate()
            .filter_map(|(i, c)| state.record(c == '+').map(|t| (i, t.to)))
            .collect()
    }

    #[test]
    fn down_after_exactly_fall_failures() {
        let mut s = HealthState::new(Health::Up, 3, 2);
        assert_eq!(s.record(false), None);
        assert_eq!(s.record(false), None);
        assert_eq!(s.health(), Health::Up);
        let t = s.record(false).expect("third failure takes it down");
        assert_eq!(
            t,
            Transition {
                to: Health::Down,
                run: 3,
                needed: 3
            }
        );
        assert_eq!(s.health(), Health::Down);
        // Further failures change nothing.
        assert_eq!(s.record(false), None);
    }

    #[test]
    fn up_after_exactly_rise_successes() {
        let mut s = HealthState::new(Health::Down, 3, 2);
        assert_eq!(s.record(true), None);
        assert_eq!(s.health(), Health::Down);
        let t = s.record(true).expect("second success brings it up");
        assert_eq!((t.to, t.run, t.needed), (Health::Up, 2, 2));
        assert_eq!(s.health(), Health::Up);
        assert_eq!(s.record(true), None);
    }

    #[test]
    fn interleaved_success_resets_the_failure_run() {
        let mut s = HealthState::new(Health::Up, 3, 2);
        assert_eq!(run(&mut s, "--+--+--+"), vec![]);
        assert_eq!(s.health(), Health::Up);
        assert_eq!(run(&mut s, "---"), vec![(2, Health::Down)]);
    }

    #[test]
    fn interleaved_failure_resets_the_success_run() {
        let mut s = HealthState::new(Health::Down, 3, 3);
        assert_eq!(run(&mut s, "++-++-++-"), vec![]);
        assert_eq!(s.health(), Health::Down);
        assert_eq!(run(&mut s, "+++"), vec![(2, Health::Up)]);
    }

    #[test]
    fn initial_state_decides_what_counts() {
        // A fresh backend trusted UP needs `fall` failures; one held DOWN
        // needs `rise` successes and ignores failures.
        let mut up = HealthState::new(Health::Up, 2, 2);
        assert_eq!(run(&mut up, "++++--"), vec![(5, Health::Down)]);
        let mut down = HealthState::new(Health::Down, 2, 2);
        assert_eq!(run(&mut down, "----++"), vec![(5, Health::Up)]);
    }

    #[test]
    fn fall_one_rise_one_flip_on_every_change() {
        let mut s = HealthState::new(Health::Up, 1, 1);
        assert_eq!(
            run(&mut s, "+-+--++"),
            vec![
                (1, Health::Down),
                (2, Health::Up),
                (3, Health::Down),
                (5, Health::Up)
            ]
        );
    }

    #[test]
    fn zero_counts_behave_as_one() {
        let mut s = HealthState::new(Health::Up, 0, 0);
        assert_eq!(run(&mut s, "-+"), vec![(0, Health::Down), (1, Health::Up)]);
    }

    #[test]
    fn full_cycle_resets_the_run_after_each_change() {
        let mut s = HealthState::new(Health::Up, 3, 2);
        // Down on the 3rd failure; the following success starts a new run,
        // so up only on the 5th result, down again 3 failures later.
        assert_eq!(
            run(&mut s, "---++---"),
            vec![(2, Health::Down), (4, Health::Up), (7, Health::Down)]
        );
    }

    #[test]
    fn reason_text() {
        let mut s = HealthState::new(Health::Up, 3, 2);
        assert_eq!(s.progress(), "0/3 failures");
        s.record(false);
        assert_eq!(s.progress(), "1/3 failures");
        s.record(false);
        let down = s.record(false).unwrap();
        assert_eq!(down.counts(), "3/3 failures");
        assert_eq!(down.to_string(), "DOWN after 3/3 failures");
        assert_eq!(s.progress(), "0/2 successes");
        s.record(true);
        assert_eq!(s.progress(), "1/2 successes");
        let up = s.record(true).unwrap();
        assert_eq!(up.to_string(), "UP after 2/2 successes");
        assert_eq!(Health::Down.to_string(), "DOWN");
    }
}
