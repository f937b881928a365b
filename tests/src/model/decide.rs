//! What one frame should get: the service it is for, the flow it belongs
//! to (or opens), the backend Maglev picks, and the verdict, counters and
//! frame out that follow.

use std::net::Ipv4Addr;

use kube_xdp_common::{hash::flow_hash, stats::Counter};

use crate::{
    harness::{XDP_DROP, XDP_PASS, XDP_TX},
    packet::{ACK, FIN, LB_MAC, RST, SYN, backend_mac},
};

use super::expect::{decision, forward_frame, rst_answer};
use super::parse::be32;
use super::{
    Decision, Effect, FlowState, L4, MAGLEV_SIZE, Model, ModelFlow, Out, Parsed, Rewrite,
    ServiceConf, TsEdit, Tuple,
};

/// Service traffic in a frame not sent to the load balancer's own MAC (the
/// harness's interface has `LB_MAC`) is the kernel's: another host's, or a
/// group address's.
fn not_for_us(f: &[u8]) -> Option<Decision> {
    (f[0..6] != LB_MAC).then(|| {
        decision(
            XDP_PASS,
            Counter::PassNotForUs,
            "service traffic, not sent to our MAC",
        )
    })
}

impl Model {
    /// The decision for one frame (the state is not changed).
    pub(super) fn decide(&mut self, f: &[u8]) -> Decision {
        let p = match self.parse(f) {
            Ok(p) => p,
            Err(d) => return *d,
        };
        let key = p.tuple();
        if let Some(svc) = self.service_of(p.dst, key.dport, key.proto).cloned() {
            return self.decide_service(f, &p, key, &svc);
        }
        // A backend's reply?
        let Some(client) = self.reverse.get(&key).copied() else {
            return decision(XDP_PASS, Counter::PassNoService, "no service");
        };
        let Some(flow) = self
            .flows
            .get(&client)
            .filter(|flow| flow.backend_key() == key)
            .cloned()
        else {
            return decision(
                XDP_PASS,
                Counter::NoFlow,
                format!("reply of {client}, whose forward entry is gone or disagrees"),
            );
        };
        if let Some(d) = not_for_us(f) {
            return d;
        }
        if p.ttl <= 1 {
            return decision(XDP_DROP, Counter::TtlExceeded, "reply with TTL <= 1");
        }
        let mut ts = TsEdit::None;
        let mut closing = false;
        if let L4::Tcp(tcp) = &p.l4 {
            if let Some(off) = flow.ts_offset
                && tcp.flags & ACK != 0
            {
                ts = TsEdit::SubEcr(off);
            }
            closing = tcp.flags & (FIN | RST) != 0;
        }
        let rw = Rewrite {
            eth_dst: flow.client_mac,
            src: client.dst,
            dst: client.src,
            sport: Some(client.dport),
            dport: client.sport,
            ts,
        };
        Decision {
            verdict: XDP_TX,
            reason: Counter::ToClient,
            out: Out::Frame(forward_frame(f, &p, &rw)),
            effect: if closing {
                Effect::Closing(client)
            } else {
                Effect::None
            },
            note: format!("reply of {client} to the client"),
        }
    }

    fn decide_service(
        &mut self,
        f: &[u8],
        p: &Parsed,
        client: Tuple,
        svc: &ServiceConf,
    ) -> Decision {
        if let Some(d) = not_for_us(f) {
            return d;
        }
        if p.ttl <= 1 {
            return decision(XDP_DROP, Counter::TtlExceeded, "to a service with TTL <= 1");
        }
        let tcp = match &p.l4 {
            L4::Tcp(tcp) => Some(tcp),
            L4::Udp(_) => None,
        };
        let is_syn = tcp.is_some_and(|t| t.flags & SYN != 0 && t.flags & ACK == 0);
        if let Some(flow) = self.live(&client).cloned()
            && !(is_syn && flow.state == FlowState::Closing)
        {
            let backend = self.backends[&flow.backend_id];
            if let Some(tcp) = tcp
                && !backend.up
                && svc.reset_on_down
            {
                // The specification says "answer with a RST" here and "a RST
                // is never answered" only for segments of no flow; the
                // fixtures (nat.rs) state the latter as a rule: a RST is
                // dropped, the flow closes all the same.
                if tcp.flags & RST != 0 {
                    return Decision {
                        verdict: XDP_DROP,
                        reason: Counter::BackendDownReset,
                        out: Out::Unchanged,
                        effect: Effect::Closing(client),
                        note: format!(
                            "flow {client}: backend {} is down, its RST is not answered",
                            flow.backend_id
                        ),
                    };
                }
                return Decision {
                    verdict: XDP_TX,
                    reason: Counter::BackendDownReset,
                    out: Out::Frame(rst_answer(f, p, tcp)),
                    effect: Effect::Closing(client),
                    note: format!("flow {client}: backend {} is down, reset", flow.backend_id),
                };
            }
            let ts = match (tcp, flow.ts_offset) {
                (Some(_), Some(off)) => TsEdit::AddVal(off),
                _ => TsEdit::None,
            };
            let rw = Rewrite {
                eth_dst: backend_mac(flow.backend_addr),
                src: flow.snat_addr,
                dst: flow.backend_addr,
                sport: Some(flow.snat_port),
                dport: flow.backend_port,
                ts,
            };
            let effect = match tcp {
                Some(tcp) => Effect::ClientSegment {
                    client,
                    closing: tcp.flags & (FIN | RST) != 0,
                    establish: !is_syn && flow.state == FlowState::SynSent,
                },
                None => Effect::None,
            };
            return Decision {
                verdict: XDP_TX,
                reason: Counter::ToBackend,
                out: Out::Frame(forward_frame(f, p, &rw)),
                effect,
                note: format!(
                    "flow {client} ({:?}) to backend {} snat port {}",
                    flow.state, flow.backend_id, flow.snat_port
                ),
            };
        }
        let table = self.table(svc.id);
        if let Some(tcp) = tcp
            && !is_syn
        {
            if table.is_empty() {
                return decision(XDP_DROP, Counter::NoBackend, "no flow, no backend");
            }
            if tcp.flags & RST != 0 {
                return decision(XDP_DROP, Counter::NoFlow, "RST of no flow");
            }
            return Decision {
                verdict: XDP_TX,
                reason: Counter::NoFlow,
                out: Out::Frame(rst_answer(f, p, tcp)),
                effect: Effect::None,
                note: "no flow: reset".into(),
            };
        }
        if tcp.is_some_and(|t| t.flags & (FIN | RST) != 0) {
            // A SYN with FIN or RST: no client sends one.
            return decision(XDP_DROP, Counter::Malformed, "SYN with FIN or RST");
        }
        if table.is_empty() {
            return match tcp {
                Some(tcp) => Decision {
                    verdict: XDP_TX,
                    reason: Counter::NoBackend,
                    out: Out::Frame(rst_answer(f, p, tcp)),
                    effect: Effect::None,
                    note: "SYN, no backend: reset".into(),
                },
                None => decision(XDP_DROP, Counter::NoBackend, "datagram, no backend"),
            };
        }
        let hash = flow_hash(
            u32::from_ne_bytes(client.src),
            u32::from_ne_bytes(client.dst),
            client.sport.to_be(),
            client.dport.to_be(),
            client.proto,
        );
        let backend_id = table[(hash % MAGLEV_SIZE) as usize];
        let backend = self.backends[&backend_id];
        let backend_port = backend.port.unwrap_or(client.dport);
        let ts_at = tcp.and_then(|t| t.ts_at);
        let rw = Rewrite {
            eth_dst: backend_mac(backend.addr),
            src: self.snat_addr,
            dst: backend.addr,
            sport: None,
            dport: backend_port,
            ts: if ts_at.is_some() {
                TsEdit::ChooseVal
            } else {
                TsEdit::None
            },
        };
        let flow = ModelFlow {
            service: svc.id,
            backend_id,
            backend_addr: backend.addr,
            backend_port,
            snat_addr: self.snat_addr,
            snat_port: 0,
            proto: client.proto,
            client_mac: f[6..12].try_into().unwrap(),
            state: if tcp.is_some() {
                FlowState::SynSent
            } else {
                FlowState::Udp
            },
            ts_offset: None,
        };
        Decision {
            verdict: XDP_TX,
            reason: Counter::NewFlow,
            out: Out::Frame(forward_frame(f, p, &rw)),
            effect: Effect::NewFlow {
                client,
                flow,
                port_at: p.t,
                ts: ts_at.map(|at| (at, be32(f, at))),
            },
            note: format!(
                "new flow {client} -> backend {backend_id} ({}:{backend_port})",
                Ipv4Addr::from(backend.addr)
            ),
        }
    }
}
