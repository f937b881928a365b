//! `bench control` and `bench scale`: the control plane's costs, and the
//! datapath's per-packet cost as the flow table fills. `bench daemon`
//! (in `daemon`): reload and failover times through the real daemon.

mod daemon;
pub use daemon::daemon;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use kube_xdp::{
    datapath::{BackendSpec, BackendState, ServiceSpec},
    maglev::{DEFAULT_TABLE_SIZE, MaglevBackend, build_table},
};
use kube_xdp_common::{maps::PROTO_TCP, program_name};
use kube_xdp_tests::{
    harness::{Harness, XDP_TX},
    packet::{ACK, CLIENT_IP, PSH, Pkt, SYN, Seen, VIP, backend_mac},
};
use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

fn min_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Maglev builds and a 2768-port NodePort service programmed from scratch.
pub fn control() {
    println!("### Control plane\n");
    println!("Maglev table build (weighted, table size {DEFAULT_TABLE_SIZE}), 7 repetitions:\n");
    println!("| backends | min | median |");
    println!("|---:|---:|---:|");
    for n in [3u32, 100, 1000] {
        let backends: Vec<MaglevBackend> = (0..n)
            .map(|i| MaglevBackend {
                id: i,
                addr: Ipv4Addr::from(0xc612_0000 + i + 11),
                port: 6443,
                weight: 1 + i % 3,
            })
            .collect();
        let times = (0..7)
            .map(|_| {
                let t = Instant::now();
                let table = build_table(&backends, DEFAULT_TABLE_SIZE);
                assert_eq!(table.len(), DEFAULT_TABLE_SIZE as usize);
                t.elapsed()
            })
            .collect();
        let (lo, med) = min_median(times);
        println!("| {n} | {} | {} |", ms(lo), ms(med));
    }

    // The map writes a reload of a NodePort service makes: 2768 service
    // entries (one per port), its backends, and its pool's table.
    let mut h = Harness::new();
    let times = (0..5)
        .map(|round| {
            let id = 1 + round % 2;
            let spec = ServiceSpec {
                vip: VIP.into(),
                ports: 30000..=32767,
                protocol: PROTO_TCP,
                reset_on_down: false,
            };
            let t = Instant::now();
            h.dp.set_service(id, &spec).unwrap();
            let mut usable = Vec::new();
            for b in 0..10u32 {
                let addr = Ipv4Addr::new(198, 18, 1, 10 + b as u8);
                let bid = id * 10 + b;
                h.dp.set_backend(
                    bid,
                    &BackendSpec {
                        service_id: id,
                        addr,
                        port: None,
                        state: BackendState::Up,
                        mac: Some(backend_mac(addr.octets())),
                        ifindex: 0,
                    },
                )
                .unwrap();
                usable.push(MaglevBackend {
                    id: bid,
                    addr,
                    port: 0,
                    weight: 1,
                });
            }
            h.dp.set_pool_table(id, &build_table(&usable, DEFAULT_TABLE_SIZE))
                .unwrap();
            let took = t.elapsed();
            h.dp.remove_service(&spec).unwrap();
            took
        })
        .collect();
    let (lo, med) = min_median(times);
    println!(
        "\nApplying a NodePort service `ports = \"30000-32767\"` (2768 service entries, 10 backends, its Maglev table) to the maps: min {}, median {} (5 repetitions). The same reload through the running daemon, and failover times, are in the next section.\n",
        ms(lo),
        ms(med)
    );
}

/// Established-flow cost with the flow table 1 %, 50 % and 100 % full.
pub fn scale() {
    const TABLE: u32 = 262_144;
    let mut h = Harness::with_flow_table(TABLE);
    h.tcp_service(0, 6443..=6443, Some(6443));
    let mut settings = kube_xdp_tests::harness::default_settings();
    // Enough ports for every generated flow: four SNAT addresses.
    for (i, a) in settings.snat_addrs.iter_mut().enumerate() {
        *a = u32::from_ne_bytes([198, 18, 0, 2 + i as u8]);
    }
    settings.snat_count = 4;
    settings.snat_port_min = 1024;
    settings.snat_port_max = 65535;
    h.dp.set_settings(&settings).unwrap();
    let program: &Xdp = h
        .bpf_mut()
        .program(program_name::LB)
        .unwrap()
        .try_into()
        .unwrap();
    let mut out = vec![0u8; 2048];
    let mut out2 = vec![0u8; 2048];
    let run = |input: &[u8], out: &mut Vec<u8>| -> (u32, u128) {
        let r = program
            .test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(out),
                repeat: 1,
                ..Default::default()
            })
            .unwrap();
        (r.return_value, r.duration.as_nanos())
    };
    let mut run = |input: &[u8]| run(input, &mut out2);
    let probe = Pkt::tcp(40000, VIP, 6443, SYN).build();
    assert_eq!(run(&probe).0, XDP_TX);
    let data = Pkt::tcp(40000, VIP, 6443, ACK | PSH)
        .seq_ack(1001, 1)
        .payload(&[0x41; 64])
        .build();
    println!("### Scale: the flow table filling up\n");
    println!(
        "A flow table of {TABLE} entries filled with generated flows (SYNs from distinct clients through the program itself), then the established-flow path measured as above (200,000 calls, `repeat = 1`, kernel ns/call):\n"
    );
    println!("| flows in the table | fill | established ns/call min | median |");
    println!("|---:|---:|---:|---:|");
    let mut filled = 1u32;
    for pct in [1u32, 50, 100] {
        let target = TABLE / 100 * pct;
        let mut template = Pkt::tcp(0, VIP, 6443, SYN);
        while filled < target {
            let i = filled;
            template.src = [198, 19, (i >> 16) as u8, (i >> 8) as u8];
            template.transport = kube_xdp_tests::packet::Transport::Tcp {
                sport: 1024 + (i & 0xff) as u16 * 200 + (i >> 24) as u16,
                dport: 6443,
                seq: 1,
                ack: 0,
                flags: SYN,
                ts: Some((1, 0)),
            };
            let (v, _) = run(&template.build());
            assert_eq!(v, XDP_TX, "flow {i} opened");
            filled += 1;
        }
        // The probe flow may have been evicted (LRU) near 100 %: open it
        // again, and check the measured packet really goes to a backend.
        assert_eq!(run(&probe).0, XDP_TX);
        let check = program
            .test_run(TestRunOptions {
                data_in: Some(&data),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .unwrap();
        let seen = Seen::parse(&out[..check.data_size_out as usize]);
        assert_ne!(
            seen.dst, CLIENT_IP,
            "forwarded to a backend, not answered with a RST"
        );
        let mut samples = Vec::new();
        for _ in 0..5 {
            let mut total = 0u128;
            for _ in 0..200_000 {
                let (v, ns) = run(&data);
                assert_eq!(v, XDP_TX);
                total += ns;
            }
            samples.push(total as f64 / 200_000.0);
        }
        samples.sort_by(f64::total_cmp);
        println!(
            "| {filled} | {pct} % | {:.0} | {:.0} |",
            samples[0],
            samples[samples.len() / 2]
        );
    }
    println!(
        "\nThe maps' memory at the default `flow_table_size` (1,048,576), as `bpftool map show` reports it (`bytes_memlock`): flows 128 MiB, reverse flows 96 MiB, Maglev tables 32 MiB, the rest ≈ 2.5 MiB — about 258 MiB.\n"
    );
}
