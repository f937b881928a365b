//! The model's state: services, backend health, the Maglev tables and the
//! flow table, and what the differential test reads of them.

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    ops::RangeInclusive,
    rc::Rc,
};

use kube_xdp::maglev::{MaglevBackend, build_table};

use crate::packet::BACKEND_IPS;

use super::{BackendConf, MAGLEV_SIZE, Model, ModelFlow, ServiceConf, Tuple};

impl Model {
    /// The model of a datapath holding `services` (each with the three
    /// fixture backends, all up), SNAT-ing to `snat_addr`:`snat_ports`.
    pub fn new(
        services: Vec<ServiceConf>,
        snat_addr: [u8; 4],
        snat_ports: RangeInclusive<u16>,
    ) -> Model {
        let mut model = Model {
            services,
            backends: BTreeMap::new(),
            tables: HashMap::new(),
            flows: BTreeMap::new(),
            reverse: BTreeMap::new(),
            snat_addr,
            snat_ports,
        };
        model.reset();
        model
    }

    /// No flows; every backend up.
    pub fn reset(&mut self) {
        self.flows.clear();
        self.reverse.clear();
        self.backends.clear();
        for s in &self.services {
            for (i, addr) in BACKEND_IPS.iter().enumerate() {
                self.backends.insert(
                    s.id * 10 + i as u32,
                    BackendConf {
                        service: s.id,
                        addr: *addr,
                        port: s.backend_port,
                        up: true,
                    },
                );
            }
        }
    }

    pub fn services(&self) -> &[ServiceConf] {
        &self.services
    }

    pub fn set_backend_up(&mut self, id: u32, up: bool) {
        self.backends.get_mut(&id).expect("a fixture backend").up = up;
    }

    pub fn backend_up(&self, id: u32) -> bool {
        self.backends[&id].up
    }

    /// The Maglev table of a service over its up backends, as
    /// `Harness::rebuild` builds it (empty: no usable backend).
    pub fn table(&mut self, service: u32) -> Rc<Vec<u32>> {
        let usable: Vec<MaglevBackend> = self
            .backends
            .iter()
            .filter(|(_, b)| b.service == service && b.up)
            .map(|(id, b)| MaglevBackend {
                id: *id,
                addr: Ipv4Addr::from(b.addr),
                port: b.port.unwrap_or(0),
                weight: 1,
            })
            .collect();
        let mask = usable
            .iter()
            .fold(0u32, |m, b| m | 1 << (b.id - service * 10));
        self.tables
            .entry((service, mask))
            .or_insert_with(|| Rc::new(build_table(&usable, MAGLEV_SIZE)))
            .clone()
    }

    /// The backend-side 5-tuples the model knows (live or not), for
    /// building replies.
    pub fn reply_keys(&self) -> Vec<Tuple> {
        self.reverse.keys().copied().collect()
    }

    pub fn flows(&self) -> &BTreeMap<Tuple, ModelFlow> {
        &self.flows
    }

    /// The flow of client 5-tuple `c`, if live: present and its reverse
    /// mapping still points back to it.
    pub fn live(&self, c: &Tuple) -> Option<&ModelFlow> {
        let flow = self.flows.get(c)?;
        (self.reverse.get(&flow.backend_key()) == Some(c)).then_some(flow)
    }

    pub(super) fn is_vip(&self, a: [u8; 4]) -> bool {
        self.services.iter().any(|s| s.vip == a)
    }

    pub(super) fn service_of(&self, dst: [u8; 4], dport: u16, proto: u8) -> Option<&ServiceConf> {
        self.services
            .iter()
            .find(|s| s.vip == dst && s.protocol == proto && s.ports.contains(&dport))
    }
}
