//! `bench datapath`'s SYN-cookie part (issue #18): what a SYN answered
//! with a cookie, a client's ACK of a cookie (checked, the flow opened,
//! the SYN sent to the backend), and a cookie flow's translated packets
//! cost, beside a SYN that opens a flow and an ordinary established flow
//! with `syn_cookies = "never"` and no half-open limit, in the same harness
//! and run. The cookie paths run in a second program entered by tail call
//! (`kube_xdp_cookie`): every figure is the load balancer's program as
//! attached, tail call included.

use crate::{CALLS, NEW_FLOW_BATCH, REPS, measure, median, min, program};
use kube_xdp_common::{
    maps::{SYN_COOKIES_ALWAYS, SYN_COOKIES_NEVER, Settings},
    program_name,
    stats::Counter,
};
use kube_xdp_tests::{
    harness::{Harness, XDP_TX, default_settings},
    packet::{ACK, CLIENT_MAC, LB_IP, LB_MAC, PSH, Pkt, SYN, Seen, Transport, VIP, backend_mac},
};

fn source_port(p: &Pkt) -> u16 {
    match p.transport {
        Transport::Tcp { sport, .. } | Transport::Udp { sport, .. } => sport,
    }
}

fn set_cookies(h: &mut Harness, mode: u32) {
    let settings = Settings {
        syn_cookies: mode,
        ..default_settings()
    };
    h.dp.set_settings(&settings).expect("write the settings");
}

/// SYNs of batch `b` from distinct 5-tuples (198.19.0.0/16).
fn syns(b: usize) -> Vec<Pkt> {
    (0..NEW_FLOW_BATCH)
        .map(|i| {
            let mut p = Pkt::tcp(10_000 + (i % 50_000) as u16, VIP, 6443, SYN);
            p.src = [198, 19, (b % 256) as u8, (i % 200) as u8];
            p.src_mac = CLIENT_MAC;
            p
        })
        .collect()
}

/// The client's ACK of each SYN's cookie (the SYN-ACKs got untimed).
fn cookie_acks(h: &Harness, syns: &[Pkt]) -> Vec<Vec<u8>> {
    syns.iter()
        .map(|syn| {
            let (verdict, out) = h.run(&syn.build());
            assert_eq!(verdict, XDP_TX, "a cookie SYN-ACK");
            let syn_ack = Seen::parse(&out);
            let (seq, our_tsval) = match syn_ack.transport {
                Transport::Tcp { seq, ts, .. } => (seq, ts.unwrap().0),
                _ => unreachable!(),
            };
            let mut ack = syn.clone();
            ack.transport = Pkt::tcp(0, VIP, 6443, ACK).transport;
            if let Transport::Tcp {
                sport,
                seq: s,
                ack: a,
                ts,
                ..
            } = &mut ack.transport
            {
                *sport = source_port(syn);
                *s = 1001;
                *a = seq.wrapping_add(1);
                *ts = Some((100_010, our_tsval));
            }
            ack.build()
        })
        .collect()
}

pub fn cookie_cost(h: &mut Harness) {
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();

    // Stateless SYN-ACKs: the same SYNs can be answered again and again.
    set_cookies(h, SYN_COOKIES_ALWAYS);
    h.clear_flows();
    let inputs: Vec<Vec<u8>> = syns(0).iter().map(Pkt::build).collect();
    let answered: Vec<f64> = (0..REPS)
        .map(|_| measure(program(h, program_name::LB), &inputs, CALLS, XDP_TX).0)
        .collect();
    assert_eq!(
        h.dp.flows().expect("read the flows").len(),
        0,
        "a cookie SYN-ACK keeps nothing"
    );
    rows.push(("SYN answered with a cookie SYN-ACK", answered));

    // ACKs of cookies: each opens a flow; batches with the state cleared
    // and the ACKs made between them (untimed).
    let mut acked = Vec::new();
    let mut opened = Vec::new();
    for _ in 0..REPS {
        let (mut kernel, mut calls) = (0.0, 0usize);
        for b in 0..CALLS / NEW_FLOW_BATCH / 4 {
            h.clear_flows();
            let acks = cookie_acks(h, &syns(b + 1));
            let (k, _) = measure(program(h, program_name::LB), &acks, acks.len(), XDP_TX);
            kernel += k;
            calls += 1;
        }
        acked.push(kernel / calls as f64);
        // Against it, in the same repetition: SYNs that open a flow.
        set_cookies(h, SYN_COOKIES_NEVER);
        let (mut kernel, mut calls) = (0.0, 0usize);
        for b in 0..CALLS / NEW_FLOW_BATCH / 4 {
            h.clear_flows();
            let inputs: Vec<Vec<u8>> = syns(b + 1).iter().map(Pkt::build).collect();
            let (k, _) = measure(program(h, program_name::LB), &inputs, inputs.len(), XDP_TX);
            kernel += k;
            calls += 1;
        }
        opened.push(kernel / calls as f64);
        set_cookies(h, SYN_COOKIES_ALWAYS);
    }
    let valid =
        h.dp.global_stats()
            .expect("read the counters")
            .get(Counter::CookieValid);
    assert!(valid > 0, "the ACKs opened cookie flows");
    rows.push((
        "client's ACK of a cookie (checked, flow opened, SYN to the backend)",
        acked,
    ));
    rows.push(("SYN that opens a flow (no cookie), for comparison", opened));

    // One cookie flow, answered by its backend; then its packets.
    h.clear_flows();
    let syn = syns(300)[0].clone();
    let ack = cookie_acks(h, std::slice::from_ref(&syn)).remove(0);
    let (verdict, out) = h.run(&ack);
    assert_eq!(verdict, XDP_TX);
    let to_backend = Seen::parse(&out);
    let (backend, snat_port) = (to_backend.dst, to_backend.ports().0);
    let mut syn_ack = Pkt::tcp(6443, LB_IP, snat_port, SYN | ACK)
        .from(backend, backend_mac(backend))
        .seq_ack(777_000, 1001)
        .ts(Some((5_555, to_backend.ts().unwrap().0)));
    syn_ack.dst_mac = LB_MAC;
    let (verdict, _) = h.run(&syn_ack.build());
    assert_eq!(verdict, XDP_TX, "the backend's SYN-ACK opens the window");
    let mut data = syn.clone();
    data.transport = Pkt::tcp(0, VIP, 6443, ACK | PSH).transport;
    if let Transport::Tcp {
        sport, seq, ack, ..
    } = &mut data.transport
    {
        *sport = source_port(&syn);
        *seq = 1001;
        *ack = 5000;
    }
    let data = data.payload(&[0x41; 64]).build();
    let mut reply = Pkt::tcp(6443, LB_IP, snat_port, ACK | PSH)
        .from(backend, backend_mac(backend))
        .seq_ack(777_001, 1065)
        .ts(Some((5_600, to_backend.ts().unwrap().0)))
        .payload(&[0x42; 64]);
    reply.dst_mac = LB_MAC;
    let reply = reply.build();
    let runs = |h: &mut Harness, input: &Vec<u8>| -> Vec<f64> {
        let inputs = vec![input.clone()];
        (0..REPS)
            .map(|_| measure(program(h, program_name::LB), &inputs, CALLS, XDP_TX).0)
            .collect()
    };
    rows.push(("cookie flow, client → backend (translated)", runs(h, &data)));
    rows.push((
        "cookie flow, backend → client (translated)",
        runs(h, &reply),
    ));
    set_cookies(h, SYN_COOKIES_NEVER);

    println!("### SYN cookies: cost per packet (BPF_PROG_TEST_RUN)\n");
    println!(
        "The cookie paths as the attached program runs them (the load balancer's program and its tail call into `kube_xdp_cookie`), \
         {CALLS} calls per figure except the ACKs ({} per repetition, each opening a flow); {REPS} repetitions; kernel ns per call. \
         With `syn_cookies = \"never\"` and no half-open limit the established path has no cookie code in it but one flag test \
         (the figures above).\n",
        CALLS / 4
    );
    println!("| path | kernel ns/call min | median |");
    println!("|---|---:|---:|");
    for (name, ns) in &rows {
        println!("| {name} | {:.0} | {:.0} |", min(ns), median(ns));
    }
    println!();
}
