//! The XDP program under `BPF_PROG_TEST_RUN`, with its maps behind the
//! daemon's own programming API — but for the flow table, which fixtures
//! also write as it is (a state the datapath reaches only with time or
//! under overload), through handles of their own: the daemon never writes
//! a flow, so its API has no way to.

use aya::{
    Ebpf, Pod,
    maps::{HashMap, Map, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{TestRun, TestRunOptions, Xdp},
};
use kube_xdp::datapath::{BackendSpec, BackendState, Datapath, ServiceSpec, be_addr};
use kube_xdp_common::{
    map_name,
    maps::{
        Flow, FlowKey, MAX_SNAT_ADDRESSES, PROTO_TCP, ReverseFlow, RstBudget, SYN_COOKIES_AUTO,
        Settings,
    },
    program_name,
};
use std::{net::Ipv4Addr, os::fd::AsFd};

use crate::{
    packet::{self, Pkt, SYN, Seen, VIP, backend_mac},
    require_root,
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// Flow table size for tests: small, so loading is quick.
pub const TEST_FLOW_TABLE: u32 = 16_384;
pub const SNAT_PORT_MIN: u16 = 20_000;
pub const SNAT_PORT_MAX: u16 = 29_999;

pub const SECOND: u64 = 1_000_000_000;

/// The interface `BPF_PROG_TEST_RUN` runs an XDP program on when no
/// context is given: the loopback device of the caller's namespace
/// (`bpf_prog_test_run_xdp` in `net/bpf/test_run.c`), whose ifindex is
/// `LOOPBACK_IFINDEX`, 1, in every namespace. The harness records it in
/// `INTERFACES` with [`packet::LB_MAC`], as the daemon records the
/// interfaces it attaches to, so the fixtures' frames are addressed to us.
pub const INGRESS_IFINDEX: u32 = 1;

/// The settings the fixtures run with (DESIGN's default timeouts).
pub fn default_settings() -> Settings {
    let mut snat_addrs = [0; MAX_SNAT_ADDRESSES];
    snat_addrs[0] = be_addr(packet::LB_IP.into());
    Settings {
        snat_addrs,
        snat_count: 1,
        snat_port_min: SNAT_PORT_MIN,
        snat_port_max: SNAT_PORT_MAX,
        tcp_established_ns: 24 * 3600 * SECOND,
        tcp_closing_ns: 10 * SECOND,
        tcp_syn_ns: 60 * SECOND,
        udp_ns: 120 * SECOND,
        udp_unanswered_ns: 30 * SECOND,
        tcp_time_wait_ns: 60 * SECOND,
        sync: 0,
        _pad: 0,
        ts_clock_offset_ns: 0,
        cookie_key: COOKIE_KEY,
        // The daemon's defaults but for the half-open limit: none
        // (`half_open_cost_ns` 0), so fixtures open as many flows as they
        // like; the SYN-flood fixtures set their own limit.
        syn_cookies: SYN_COOKIES_AUTO,
        cookie_mss: 1460,
        cookie_wscale: 7,
        ..Settings::default()
    }
}

/// Pins the calling thread to CPU 0: `BPF_PROG_TEST_RUN` runs on the
/// caller's CPU, and per-CPU state (the half-open budgets) must stay one
/// CPU's across a fixture's calls.
pub fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is valid; the calls take valid pointers.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pin the thread to CPU 0"
        );
    }
}

/// The SYN-cookie key of the fixtures' settings.
pub const COOKIE_KEY: [u64; 2] = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];

pub struct Harness {
    pub dp: Datapath,
    bpf: Ebpf,
    /// The flow table's two maps, beside `dp`'s handles.
    flows: HashMap<MapData, FlowKey, Flow>,
    reverse: HashMap<MapData, FlowKey, ReverseFlow>,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// Loads the program (the verifier must accept it) with private maps
    /// and the default settings, and no service.
    pub fn new() -> Self {
        Self::with_flow_table(TEST_FLOW_TABLE)
    }

    /// [`Harness::new`] with a flow table of `flows` entries.
    pub fn with_flow_table(flows: u32) -> Self {
        require_root();
        let mut bpf = kube_xdp::ebpf::load_private(flows).expect("load the eBPF object");
        kube_xdp::ebpf::load_programs(&mut bpf).expect("the verifier accepts the programs");
        // Before `Datapath` takes the maps out of the object.
        let flows = second_handle(&bpf, map_name::FLOWS);
        let reverse = second_handle(&bpf, map_name::REVERSE);
        let mut dp = Datapath::from_ebpf(&mut bpf).expect("open the maps");
        dp.set_settings(&default_settings()).unwrap();
        dp.set_interface(INGRESS_IFINDEX, packet::LB_MAC)
            .expect("record the test run's ingress interface");
        Harness {
            dp,
            bpf,
            flows,
            reverse,
        }
    }

    /// Runs one packet; returns the verdict and the packet out.
    pub fn run(&self, input: &[u8]) -> (u32, Vec<u8>) {
        let program: &Xdp = self
            .bpf
            .program(program_name::LB)
            .unwrap()
            .try_into()
            .unwrap();
        let mut out = vec![0u8; input.len() + 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        (result.return_value, out)
    }

    /// The loaded object, for programs beside the load balancer.
    pub fn bpf_mut(&mut self) -> &mut Ebpf {
        &mut self.bpf
    }

    /// Adds service `id` on VIP:ports (TCP) with the given backends (ids
    /// `first_backend..`), all up, resolved, and in the pool's table.
    pub fn tcp_service(
        &mut self,
        id: u32,
        ports: std::ops::RangeInclusive<u16>,
        port: Option<u16>,
    ) {
        self.service(id, ports, PROTO_TCP, port, false);
    }

    /// Adds a service with the three fixture backends (ids `id*10 + 0..3`).
    pub fn service(
        &mut self,
        id: u32,
        ports: std::ops::RangeInclusive<u16>,
        protocol: u8,
        backend_port: Option<u16>,
        reset_on_down: bool,
    ) {
        let spec = ServiceSpec {
            vip: packet::VIP.into(),
            ports,
            protocol,
            reset_on_down,
        };
        self.dp.set_service(id, &spec).unwrap();
        for (i, addr) in packet::BACKEND_IPS.iter().enumerate() {
            self.set_backend(
                id,
                id * 10 + i as u32,
                *addr,
                backend_port,
                BackendState::Up,
            );
        }
        self.rebuild(id);
    }

    pub fn set_backend(
        &mut self,
        service_id: u32,
        id: u32,
        addr: [u8; 4],
        port: Option<u16>,
        state: BackendState,
    ) {
        let spec = BackendSpec {
            service_id,
            addr: Ipv4Addr::from(addr),
            port,
            state,
            mac: Some(packet::backend_mac(addr)),
            ifindex: 0,
        };
        self.dp.set_backend(id, &spec).unwrap();
    }

    /// Rebuilds service `id`'s Maglev table from its up backends.
    pub fn rebuild(&mut self, service_id: u32) {
        let mut usable = Vec::new();
        for id in service_id * 10..service_id * 10 + 10 {
            if let Some(b) = self.dp.backend(id).unwrap()
                && b.service_id == service_id
                && b.state == BackendState::Up
            {
                usable.push(kube_xdp::maglev::MaglevBackend {
                    id,
                    addr: b.addr,
                    port: b.port.unwrap_or(0),
                    weight: 1,
                });
            }
        }
        let table = kube_xdp::maglev::build_table(&usable, 65_537);
        self.dp.set_pool_table(service_id, &table).unwrap();
    }

    /// Writes a forward flow entry as it is.
    pub fn set_flow(&mut self, key: &FlowKey, flow: &Flow) {
        self.flows.insert(key, flow, 0).expect("write a flow entry");
    }

    /// Writes a reverse flow entry as it is.
    pub fn set_reverse(&mut self, key: &FlowKey, reverse: &ReverseFlow) {
        self.reverse
            .insert(key, reverse, 0)
            .expect("write a reverse flow entry");
    }

    /// The flow-sync ring buffer (taken out of the object: call once).
    pub fn sync_events(&mut self) -> RingBuf<MapData> {
        let map = self
            .bpf
            .take_map(map_name::SYNC_EVENTS)
            .expect("the object has the sync ring buffer");
        RingBuf::try_from(map).expect("a ring buffer")
    }

    /// Fills every CPU's RST bucket again (as a newly loaded program has
    /// it), for tests that send more refusals than the rate limit lets
    /// through over their whole run but few per case.
    pub fn refill_rsts(&mut self) {
        let map = self
            .bpf
            .map_mut(map_name::RST_BUDGET)
            .expect("the object has the RST bucket");
        let mut buckets: PerCpuArray<_, RstBudget> =
            PerCpuArray::try_from(map).expect("a per-CPU array");
        let cpus = aya::util::nr_cpus().expect("the number of CPUs");
        let full = PerCpuValues::try_from(vec![RstBudget::default(); cpus]).unwrap();
        buckets.set(0, full, 0).expect("refill the RST buckets");
    }

    /// Empties the flow table (both directions).
    pub fn clear_flows(&mut self) {
        let keys: Vec<FlowKey> = self.flows.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            let _ = self.flows.remove(&key);
        }
        let keys: Vec<FlowKey> = self.reverse.keys().filter_map(|k| k.ok()).collect();
        for key in keys {
            let _ = self.reverse.remove(&key);
        }
    }
}

/// A handle of our own on the (LRU) hash map `name` of a loaded object,
/// through a duplicate of its fd.
fn second_handle<V: Pod>(bpf: &Ebpf, name: &'static str) -> HashMap<MapData, FlowKey, V> {
    let data = match bpf.map(name) {
        Some(Map::LruHashMap(data) | Map::HashMap(data)) => data,
        _ => panic!("the eBPF object has no hash map {name}"),
    };
    let fd = data.fd().as_fd().try_clone_to_owned().expect("dup");
    let map = Map::from_map_data(MapData::from_fd(fd).expect(name)).expect(name);
    HashMap::try_from(map).expect(name)
}

// ---- shorthands of the NAT fixtures (`tests/tests/nat*.rs`) ----

/// The apiserver service: VIP:6443 over the three fixture backends.
pub fn apiserver() -> Harness {
    let mut h = Harness::new();
    h.tcp_service(0, 6443..=6443, Some(6443));
    h
}

/// Sends `pkt`, expects `XDP_TX`, returns what left.
pub fn tx(h: &Harness, pkt: &Pkt) -> Seen {
    let (verdict, out) = h.run(&pkt.build());
    assert_eq!(verdict, XDP_TX, "verdict for {pkt:?}");
    Seen::parse(&out)
}

/// Opens a flow from client port `sport`; returns the SYN as the backend
/// got it.
pub fn open(h: &Harness, sport: u16) -> Seen {
    tx(h, &Pkt::tcp(sport, VIP, 6443, SYN))
}

/// The backend a packet went to, after checking that its MAC and address
/// agree.
pub fn backend_of(seen: &Seen) -> [u8; 4] {
    assert_eq!(seen.dst_mac, backend_mac(seen.dst), "MAC and address agree");
    seen.dst
}
