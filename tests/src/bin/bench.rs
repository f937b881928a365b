//! `cargo xtask bench`'s measurements. `bench datapath` prints the
//! datapath's cost per packet through `BPF_PROG_TEST_RUN` as Markdown,
//! and what flow sync adds to it (see `bench_sync_cost`);
//! `bench e2e` compares kube-xdp with HAProxy, nftables NAT and no load
//! balancer end to end in network namespaces (see `bench_e2e`); `bench
//! pair` the failover of a kube-xdp pair beside keepalived + HAProxy (see
//! `bench_pair`); `bench synflood` kube-xdp, HAProxy and nftables NAT
//! under a spoofed SYN flood (see `bench_synflood`).
//!
//! Every call runs once (`repeat = 1`) on the original packet: with
//! `repeat > 1` the kernel re-runs the program on the buffer it just
//! rewrote, so a NAT program would see its own output after the first
//! repetition. The verdict of every call is checked.

mod bench_control;
mod bench_cookie_cost;
mod bench_e2e;
mod bench_pair;
mod bench_sync_cost;
mod bench_synflood;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use kube_xdp_common::{maps::PROTO_UDP, program_name};
use kube_xdp_tests::{
    harness::{Harness, XDP_PASS, XDP_TX},
    packet::{ACK, LB_IP, LB_MAC, PSH, Pkt, SYN, Seen, VIP, backend_mac},
};
use std::time::Instant;

/// Calls per figure and repetition.
const CALLS: usize = 200_000;
/// Repetitions of each figure (min and median reported).
const REPS: usize = 5;
/// New flows per batch before the flow table is cleared (untimed), so SNAT
/// ports never run out.
const NEW_FLOW_BATCH: usize = 5_000;

struct Figure {
    name: &'static str,
    /// Kernel-measured ns per call, one per repetition.
    kernel_ns: Vec<f64>,
    /// Wall-clock ns per `bpf_prog_test_run` syscall, one per repetition.
    wall_ns: Vec<f64>,
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[s.len() / 2]
}

/// Runs `program` on each of `inputs` in turn (cycling) for `calls` calls;
/// every verdict must be `verdict`. Returns (kernel ns/call, wall ns/call).
fn measure(program: &Xdp, inputs: &[Vec<u8>], calls: usize, verdict: u32) -> (f64, f64) {
    let mut out = vec![0u8; 2048];
    let mut kernel = 0u128;
    let start = Instant::now();
    for i in 0..calls {
        let input = &inputs[i % inputs.len()];
        let r = program
            .test_run(TestRunOptions {
                data_in: Some(input),
                data_out: Some(&mut out),
                repeat: 1,
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        assert_eq!(r.return_value, verdict, "call {i}: unexpected verdict");
        kernel += r.duration.as_nanos();
    }
    let wall = start.elapsed().as_nanos();
    (kernel as f64 / calls as f64, wall as f64 / calls as f64)
}

/// One new-flow figure: `CALLS` SYNs, each a fresh 5-tuple, in batches of
/// [`NEW_FLOW_BATCH`]; before each batch the flow state is cleared and
/// `between` runs (neither timed). Returns (kernel ns/call, wall ns/call).
fn new_flows(h: &mut Harness, mut between: impl FnMut(&mut Harness)) -> (f64, f64) {
    let (mut kernel, mut wall) = (0.0, 0.0);
    let batches = CALLS / NEW_FLOW_BATCH;
    for b in 0..batches {
        h.clear_flows();
        between(h);
        let (k, w) = measure(
            program(h, program_name::LB),
            &syn_batch(b),
            NEW_FLOW_BATCH,
            XDP_TX,
        );
        kernel += k;
        wall += w;
    }
    (kernel / batches as f64, wall / batches as f64)
}

/// Batch `b` of [`NEW_FLOW_BATCH`] SYNs from distinct 5-tuples.
fn syn_batch(b: usize) -> Vec<Vec<u8>> {
    (0..NEW_FLOW_BATCH)
        .map(|i| {
            let mut p = Pkt::tcp(10_000 + (i % 50_000) as u16, VIP, 6443, SYN);
            p.src = [198, 19, (b % 256) as u8, (i % 200) as u8];
            p.build()
        })
        .collect()
}

fn program<'a>(h: &'a mut Harness, name: &str) -> &'a Xdp {
    let bpf = h.bpf_mut();
    let p: &mut Xdp = bpf.program_mut(name).unwrap().try_into().unwrap();
    if p.info().is_err() {
        p.load().expect("load");
    }
    bpf.program(name).unwrap().try_into().unwrap()
}

/// The harness with the benchmark's services, and one established flow
/// opened: (its SYN, the SYN as forwarded, a data segment of it, the
/// backend's reply).
fn established(h: &mut Harness) -> (Pkt, Seen, Vec<u8>, Vec<u8>) {
    h.tcp_service(0, 6443..=6443, Some(6443));
    h.service(2, 53..=53, PROTO_UDP, Some(53), false);
    let syn = Pkt::tcp(40000, VIP, 6443, SYN);
    let (v, out) = h.run(&syn.build());
    assert_eq!(v, XDP_TX);
    let fwd = Seen::parse(&out);
    let data = Pkt::tcp(40000, VIP, 6443, ACK | PSH)
        .seq_ack(1001, 1)
        .payload(&[0x41; 64])
        .build();
    let mut reply = Pkt::tcp(6443, LB_IP, fwd.ports().0, ACK | PSH)
        .from(fwd.dst, backend_mac(fwd.dst))
        .seq_ack(1, 1065)
        .ts(Some((9, fwd.ts().unwrap().0)))
        .payload(&[0x42; 64]);
    reply.dst_mac = LB_MAC;
    (syn, fwd, data, reply.build())
}

/// The established-flow and reply-path figures (kernel ns per call, the
/// minimum of [`REPS`]), measured as `bench datapath` does: `bench e2e`
/// puts them beside the same program's cost in live traffic.
pub(crate) fn established_testrun_ns() -> (f64, f64) {
    let mut h = Harness::new();
    let (_, _, data, reply) = established(&mut h);
    let mut figure = |input: &Vec<u8>| {
        let inputs = vec![input.clone()];
        let ns: Vec<f64> = (0..REPS)
            .map(|_| measure(program(&mut h, program_name::LB), &inputs, CALLS, XDP_TX).0)
            .collect();
        min(&ns)
    };
    (figure(&data), figure(&reply))
}

fn datapath() {
    let mut h = Harness::new();
    // One established flow and its reply path.
    let (syn, fwd, data, reply) = established(&mut h);
    let pass = Pkt::tcp(40000, LB_IP, 22, ACK).seq_ack(1, 1).build();

    let mut figures: Vec<Figure> = Vec::new();
    let mut push = |name, samples: Vec<(f64, f64)>| {
        figures.push(Figure {
            name,
            kernel_ns: samples.iter().map(|s| s.0).collect(),
            wall_ns: samples.iter().map(|s| s.1).collect(),
        })
    };

    let floor_input = vec![data.clone()];
    let floor: Vec<_> = (0..REPS)
        .map(|_| {
            measure(
                program(&mut h, program_name::FLOOR),
                &floor_input,
                CALLS,
                XDP_TX,
            )
        })
        .collect();
    push("floor (swap MACs, XDP_TX)", floor);
    let lb_runs = |h: &mut Harness, input: &Vec<u8>, verdict| -> Vec<(f64, f64)> {
        let inputs = vec![input.clone()];
        (0..REPS)
            .map(|_| measure(program(h, program_name::LB), &inputs, CALLS, verdict))
            .collect()
    };
    push(
        "established flow (client → backend)",
        lb_runs(&mut h, &data, XDP_TX),
    );
    push(
        "reply path (backend → client)",
        lb_runs(&mut h, &reply, XDP_TX),
    );
    push(
        "pass-through (no service)",
        lb_runs(&mut h, &pass, XDP_PASS),
    );

    // New flows: a fresh 5-tuple each call; the flow state is cleared
    // between batches (not timed).
    let new_flow: Vec<_> = (0..REPS).map(|_| new_flows(&mut h, |_| {})).collect();
    push("new flow (Maglev pick, SNAT port, flow insert)", new_flow);

    let info = program(&mut h, program_name::LB).info().unwrap();
    let floor_min = min(&figures[0].kernel_ns);
    println!("### Datapath cost per packet (BPF_PROG_TEST_RUN)\n");
    println!(
        "{CALLS} calls per figure, `repeat = 1` on the original packet each call, every verdict checked; {REPS} repetitions. \
         Kernel = the duration the kernel reports per call; wall = per `bpf_prog_test_run` syscall.\n"
    );
    println!("| path | kernel ns/call min | median | × floor (min) | wall ns/call median |");
    println!("|---|---:|---:|---:|---:|");
    for f in &figures {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} |",
            f.name,
            min(&f.kernel_ns),
            median(&f.kernel_ns),
            min(&f.kernel_ns) / floor_min,
            median(&f.wall_ns)
        );
    }
    println!(
        "\nLoad-balancer program: {} instructions verified, {} bytes translated, {} bytes JITed.",
        info.verified_instruction_count().unwrap_or(0),
        info.size_translated().unwrap_or(0),
        info.size_jitted()
    );
    println!();
    // The new-flow figure cleared the flow table: the established flow
    // again (the same SYN: the same backend and SNAT port), or its data
    // segment would measure RSTs, then the RST limit's drops.
    h.clear_flows();
    let (v, out) = h.run(&syn.build());
    assert_eq!(v, XDP_TX);
    let again = Seen::parse(&out);
    assert_eq!(
        (again.dst, again.ports()),
        (fwd.dst, fwd.ports()),
        "the same backend and SNAT port again"
    );
    bench_sync_cost::sync_cost(&mut h, &data, &syn.build());
    bench_cookie_cost::cookie_cost(&mut h);
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("datapath") => datapath(),
        Some("e2e") => bench_e2e::main(),
        Some("control") => bench_control::control(),
        Some("scale") => bench_control::scale(),
        Some("daemon") => bench_control::daemon(),
        Some("pair") => bench_pair::main(),
        Some("synflood") => bench_synflood::main(),
        other => {
            eprintln!(
                "usage: bench datapath|e2e|control|scale|daemon|pair|synflood (got {other:?})"
            );
            std::process::exit(2);
        }
    }
}
