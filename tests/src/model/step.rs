//! One packet through the model: its prediction compared with what the
//! program did, then its effect on the flow table.

use std::fmt::Write as _;

use crate::{harness::XDP_TX, packet::Seen};

use super::expect::verdict_counter;
use super::parse::{be16, be32};
use super::report::{describe, frame_diff, verdict_name};
use super::{Effect, FlowState, Model, ModelFlow, Observed, Out};

impl Model {
    /// Checks the program's handling of `frame` against the model's and,
    /// when they agree, moves the model on. Returns what the model
    /// predicted (a line for logs), or every disagreement.
    pub fn step(&mut self, frame: &[u8], obs: &Observed) -> Result<String, String> {
        let d = self.decide(frame);
        let mut errors = Vec::new();
        let summary = format!(
            "{} {}: {}",
            verdict_name(d.verdict),
            d.reason.name(),
            d.note
        );
        if obs.verdict != d.verdict {
            errors.push(format!(
                "verdict: expected {} got {}",
                verdict_name(d.verdict),
                verdict_name(obs.verdict)
            ));
        }
        let wanted = [verdict_counter(d.verdict), d.reason];
        for (counter, grew) in obs.counters {
            let expected = u64::from(wanted.contains(counter));
            if *grew != expected {
                errors.push(format!(
                    "counter {}: expected +{expected} got +{grew}",
                    counter.name()
                ));
            }
        }
        let mut new_flow_port = None;
        let mut new_flow_ts = None;
        match &d.out {
            Out::Unchanged => {
                if let Some(diff) = frame_diff(frame, obs.out) {
                    errors.push(format!("output: expected the frame unchanged\n{diff}"));
                }
            }
            Out::Frame(expect) if obs.verdict == XDP_TX => {
                if let Effect::NewFlow {
                    flow, port_at, ts, ..
                } = &d.effect
                    && obs.out.len() >= port_at + 2
                {
                    let port = be16(obs.out, *port_at);
                    if let Err(e) = self.check_snat_port(flow, port) {
                        errors.push(e);
                    }
                    new_flow_port = Some(port);
                    if let Some((at, tsval)) = ts
                        && obs.out.len() >= at + 4
                    {
                        new_flow_ts = Some(be32(obs.out, *at).wrapping_sub(*tsval));
                    }
                }
                let expected = expect.filled(obs.out);
                if let Some(diff) = frame_diff(&expected, obs.out) {
                    errors.push(format!("output frame differs\n{diff}"));
                }
                if expect.checksums_valid {
                    let out = obs.out.to_vec();
                    if let Err(panic) = std::panic::catch_unwind(move || Seen::parse(&out)) {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        errors.push(format!("Seen::parse rejects the output: {why}"));
                    }
                }
            }
            Out::Frame(expect) => {
                errors.push(format!(
                    "output: expected the frame {}",
                    describe(&expect.bytes)
                ));
            }
        }
        if !errors.is_empty() {
            return Err(format!(
                "model: {summary}\n  {}\n  program: {} out {}",
                errors.join("\n  "),
                verdict_name(obs.verdict),
                describe(obs.out)
            ));
        }
        let mut summary = summary;
        match d.effect {
            Effect::None => {}
            Effect::ClientSegment {
                client,
                closing,
                establish,
            } => {
                let flow = self.flows.get_mut(&client).unwrap();
                if closing {
                    flow.state = FlowState::Closing;
                } else if establish {
                    flow.state = FlowState::Established;
                }
            }
            Effect::Closing(client) => {
                self.flows.get_mut(&client).unwrap().state = FlowState::Closing;
            }
            Effect::NewFlow {
                client, mut flow, ..
            } => {
                flow.snat_port = new_flow_port.expect("a TX frame with ports");
                flow.ts_offset = new_flow_ts;
                let _ = write!(summary, ", SNAT port {}", flow.snat_port);
                if let Some(off) = flow.ts_offset {
                    let _ = write!(summary, ", TS offset {off}");
                }
                self.reverse.insert(flow.backend_key(), client);
                self.flows.insert(client, flow);
            }
        }
        Ok(summary)
    }

    /// The SNAT port of a new flow: in range, and no other open flow to
    /// the same backend address and port uses it.
    fn check_snat_port(&self, new: &ModelFlow, port: u16) -> Result<(), String> {
        if !self.snat_ports.contains(&port) {
            return Err(format!("SNAT port {port} outside {:?}", self.snat_ports));
        }
        for (client, flow) in &self.flows {
            if flow.state != FlowState::Closing
                && flow.backend_addr == new.backend_addr
                && flow.backend_port == new.backend_port
                && flow.proto == new.proto
                && flow.snat_addr == new.snat_addr
                && flow.snat_port == port
                && self.live(client).is_some()
            {
                return Err(format!(
                    "SNAT port {port} is already used by the open flow {client} to the same backend"
                ));
            }
        }
        Ok(())
    }
}
