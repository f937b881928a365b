//! The runner: the program under `BPF_PROG_TEST_RUN` and the model side by
//! side, each case's actions applied to both and their outcomes compared;
//! the Maglev tables written through the daemon's own API.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use kube_xdp::datapath::BackendState;
use kube_xdp_common::stats::Counter;
use kube_xdp_tests::{
    checksum,
    fuzz::mutate,
    harness::{Harness, SNAT_PORT_MAX, SNAT_PORT_MIN},
    model::{self, Model, Observed},
    packet::{BACKEND_IPS, LB_IP, arp_request},
};

use super::{Action, Case, Which, services};
use crate::input::{client_pkt, plain_seg, reply_pkt};

/// Writes pool tables through the daemon's own API (one map update per
/// table half), after checking that the harness left every service's
/// all-up table live.
pub(super) struct Pools;

impl Pools {
    pub(super) fn open(h: &mut Harness, model: &mut Model) -> Pools {
        for service in model.services().iter().map(|s| s.id).collect::<Vec<_>>() {
            assert_eq!(
                h.dp.pool_table(service).unwrap(),
                *model.table(service),
                "the all-up table"
            );
        }
        Pools
    }

    pub(super) fn set(&mut self, h: &mut Harness, service: u32, table: &[u32], _all_up: bool) {
        h.dp.set_pool_table(service, table).unwrap();
    }
}

pub(super) struct Lab {
    pub(super) h: Harness,
    pub(super) pools: Pools,
    pub(super) model: Model,
    pub(super) stats: Vec<(Counter, u64)>,
    /// Services whose backends changed in this case.
    pub(super) dirty: [bool; 3],
    pub(super) packets: u64,
    /// How often each (verdict, reason) came up.
    pub(super) outcomes: BTreeMap<String, u64>,
    pub(super) table_time: Duration,
}

impl Lab {
    pub(super) fn new() -> Lab {
        let mut h = Harness::new();
        let services = services();
        for s in &services {
            h.service(
                s.id,
                s.ports.clone(),
                s.protocol,
                s.backend_port,
                s.reset_on_down,
            );
        }
        let mut model = Model::new(services, LB_IP, SNAT_PORT_MIN..=SNAT_PORT_MAX);
        let pools = Pools::open(&mut h, &mut model);
        let stats = h.dp.global_stats().unwrap().counters;
        let mut lab = Lab {
            h,
            pools,
            model,
            stats,
            dirty: [false; 3],
            packets: 0,
            outcomes: BTreeMap::new(),
            table_time: Duration::ZERO,
        };
        // The fast writer leaves the tables Harness::rebuild would.
        for (service, downs) in [(0, &[1][..]), (1, &[0, 2]), (0, &[0, 1, 2]), (0, &[2])] {
            lab.reset();
            let changes: Vec<(u32, bool)> = downs.iter().map(|i| (*i, false)).collect();
            lab.set_backends(service, &changes);
            assert_eq!(
                lab.h.dp.pool_table(service).unwrap(),
                *lab.model.table(service),
                "service {service} with backends {downs:?} down"
            );
        }
        lab.reset();
        for service in 0..3 {
            assert_eq!(
                lab.h.dp.pool_table(service).unwrap(),
                *lab.model.table(service)
            );
        }
        lab
    }

    /// Sets backends (`index` in 0..3) of a service up or down, then its
    /// table.
    pub(super) fn set_backends(&mut self, service: u32, changes: &[(u32, bool)]) {
        let port = self.model.services()[service as usize].backend_port;
        for &(index, up) in changes {
            let id = service * 10 + index;
            let state = if up {
                BackendState::Up
            } else {
                BackendState::Down
            };
            self.h
                .set_backend(service, id, BACKEND_IPS[index as usize], port, state);
            self.model.set_backend_up(id, up);
        }
        let start = Instant::now();
        let table = self.model.table(service);
        let all_up = (0..3).all(|i| self.model.backend_up(service * 10 + i));
        self.pools.set(&mut self.h, service, &table, all_up);
        self.table_time += start.elapsed();
        self.dirty[service as usize] = true;
    }

    /// No flows, every backend up, RSTs not rate-limited yet (the model
    /// knows no clock; a case sends far fewer than the burst).
    pub(super) fn reset(&mut self) {
        self.h.clear_flows();
        self.h.refill_rsts();
        for service in 0..3u32 {
            if self.dirty[service as usize] {
                let changes: Vec<(u32, bool)> = (0..3)
                    .filter(|i| !self.model.backend_up(service * 10 + i))
                    .map(|i| (i, true))
                    .collect();
                self.set_backends(service, &changes);
                self.dirty[service as usize] = false;
            }
        }
        self.model.reset();
    }

    /// Runs one frame through the program and the model.
    pub(super) fn packet(&mut self, frame: &[u8]) -> Result<String, String> {
        let (verdict, out) = self.h.run(frame);
        self.packets += 1;
        let stats = self.h.dp.global_stats().unwrap().counters;
        let grew: Vec<(Counter, u64)> = stats
            .iter()
            .zip(&self.stats)
            .map(|((c, now), (_, before))| (*c, now - before))
            .collect();
        self.stats = stats;
        self.model.step(
            frame,
            &Observed {
                verdict,
                out: &out,
                counters: &grew,
            },
        )
    }

    pub(super) fn run_case(&mut self, case: &Case) -> Result<(), String> {
        self.reset();
        let mut log = String::new();
        for (n, action) in case.actions.iter().enumerate() {
            let (pkt, mutation) = match action {
                Action::Backend { which, up } => {
                    let (service, indices) = match which {
                        Which::One { service, index } => (*service, vec![*index]),
                        Which::All { service } => (*service, vec![0, 1, 2]),
                        Which::OfFlow(flow) => {
                            let flows: Vec<_> = self.model.flows().values().collect();
                            if flows.is_empty() {
                                (0, vec![0])
                            } else {
                                let f = flow.get(&flows);
                                (f.service, vec![f.backend_id - f.service * 10])
                            }
                        }
                    };
                    let changes: Vec<(u32, bool)> = indices.iter().map(|i| (*i, *up)).collect();
                    self.set_backends(service, &changes);
                    let ids: Vec<u32> = indices.iter().map(|i| service * 10 + i).collect();
                    let _ = writeln!(
                        log,
                        "#{n} backends {ids:?} of service {service} {}",
                        if *up { "UP" } else { "DOWN" }
                    );
                    continue;
                }
                Action::Client { endpoint, seg } => {
                    let ep = endpoint.get(&case.endpoints);
                    (client_pkt(ep, seg), seg.mutation.clone())
                }
                Action::Stray { endpoint, seg } => {
                    (client_pkt(endpoint, seg), seg.mutation.clone())
                }
                Action::Reply {
                    flow,
                    seg,
                    wrong_port,
                } => {
                    let keys = self.model.reply_keys();
                    if keys.is_empty() {
                        // No flow to reply on (`wrong_port` replies cover
                        // replies of no flow).
                        let _ = writeln!(log, "#{n} reply: no flow yet, skipped");
                        continue;
                    }
                    let mut key = *flow.get(&keys);
                    if *wrong_port {
                        key.dport ^= 0x8000;
                    }
                    (reply_pkt(&key, seg), seg.mutation.clone())
                }
                Action::NotIpv4 {
                    ethertype,
                    endpoint,
                } => {
                    let ep = endpoint.get(&case.endpoints);
                    let frame = match ethertype {
                        None => arp_request(ep.target.resolve().0),
                        Some(t) => {
                            let mut f = client_pkt(ep, &plain_seg()).build();
                            if matches!(t, 0x8100 | 0x88a8) {
                                // A VLAN tag (TCI 0x0064), then IPv4.
                                f.splice(12..12, [0, 0, 0, 0x64]);
                            }
                            f[12..14].copy_from_slice(&t.to_be_bytes());
                            f
                        }
                    };
                    let _ = writeln!(log, "#{n} {action:?}\n    {}", model::hex(&frame));
                    let result = self.packet(&frame);
                    self.note(&mut log, result)?;
                    continue;
                }
                Action::OtherProtocol { endpoint, proto } => {
                    let ep = endpoint.get(&case.endpoints);
                    let mut f = client_pkt(ep, &plain_seg()).build();
                    f[23] = *proto;
                    checksum::set_ipv4(&mut f);
                    let _ = writeln!(log, "#{n} {action:?}\n    {}", model::hex(&f));
                    let result = self.packet(&f);
                    self.note(&mut log, result)?;
                    continue;
                }
            };
            let mut frame = pkt.build();
            if let Some(m) = &mutation {
                mutate(&mut frame, m);
            }
            let _ = writeln!(
                log,
                "#{n} {pkt:?}{}\n    {}",
                mutation.map_or(String::new(), |m| format!(" mutated by {m:?}")),
                model::hex(&frame)
            );
            let result = self.packet(&frame);
            self.note(&mut log, result)?;
        }
        Ok(())
    }

    pub(super) fn note(
        &mut self,
        log: &mut String,
        result: Result<String, String>,
    ) -> Result<(), String> {
        match result {
            Ok(line) => {
                let outcome = line.split(':').next().unwrap_or_default().to_string();
                *self.outcomes.entry(outcome).or_default() += 1;
                let _ = writeln!(log, "    -> {line}");
                Ok(())
            }
            Err(e) => Err(format!(
                "{log}FIRST DISAGREEMENT at the last packet above:\n{e}"
            )),
        }
    }
}
