//! RSTs are rate-limited per CPU (#19 item 10): segments that would each be
//! answered with a RST — from spoofed sources, say — get at most
//! `RST_BURST` answers at once and `RST_RATE_PER_CPU` a second after that;
//! the rest are dropped and counted `rst_limited`.

use std::time::{Duration, Instant};

use kube_xdp_common::{
    maps::{RST_BURST, RST_RATE_PER_CPU},
    stats::Counter,
};
use kube_xdp_tests::{
    harness::{XDP_DROP, XDP_TX, apiserver},
    packet::{ACK, CLIENT_IP, Pkt, RST, Seen, VIP},
};

/// Keeps the calling thread (the test's) on the CPU it runs on: the
/// buckets are per CPU, and `BPF_PROG_TEST_RUN` runs the program on the
/// caller's CPU.
fn stay_on_this_cpu() {
    // SAFETY: plain libc calls on a zeroed `cpu_set_t` of our own.
    unsafe {
        let cpu = libc::sched_getcpu();
        assert!(cpu >= 0, "sched_getcpu");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        let r = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(r, 0, "sched_setaffinity");
    }
}

#[test]
fn rsts_beyond_the_burst_are_dropped_and_counted() {
    stay_on_this_cpu();
    let h = apiserver();
    // More than the burst plus what the bucket can gain while they are
    // sent (a call takes microseconds; even at 300 µs, 2,000 more calls
    // gain only 600).
    let extra = 2_000u64;
    let (mut answered, mut dropped) = (0u64, 0u64);
    let start = Instant::now();
    for i in 0..RST_BURST + extra {
        // Segments of no flow from spoofed addresses.
        let mut pkt = Pkt::tcp(1024 + (i % 60_000) as u16, VIP, 6443, ACK);
        pkt.src = [198, 19, (i >> 8) as u8, i as u8];
        let (verdict, out) = h.run(&pkt.build());
        match verdict {
            XDP_TX => {
                let rst = Seen::parse(&out);
                assert_eq!(rst.tcp_flags(), RST, "segment {i}");
                assert_eq!(rst.dst, pkt.src);
                answered += 1;
            }
            XDP_DROP => dropped += 1,
            v => panic!("segment {i}: verdict {v}"),
        }
        if i < RST_BURST {
            assert_eq!(verdict, XDP_TX, "segment {i} is within the burst");
        }
    }
    let elapsed = start.elapsed();
    // What the bucket gained meanwhile, with a coarse clock tick or two.
    let gained = (elapsed.as_secs_f64() * RST_RATE_PER_CPU as f64) as u64 + 10;
    assert!(
        answered <= RST_BURST + gained,
        "{answered} RSTs in {elapsed:?}: the burst and the rate allow {}",
        RST_BURST + gained
    );
    assert!(dropped > 0, "some segments beyond the burst were dropped");
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::NoFlow), answered);
    assert_eq!(stats.get(Counter::RstLimited), dropped);
    assert_eq!(stats.get(Counter::VerdictTx), answered);
    assert_eq!(stats.get(Counter::VerdictDrop), dropped);

    // The bucket fills again with time: 50 ms give about 50 RSTs.
    std::thread::sleep(Duration::from_millis(60));
    let (verdict, out) = h.run(&Pkt::tcp(50000, VIP, 6443, ACK).build());
    assert_eq!(verdict, XDP_TX, "a RST again after a pause");
    assert_eq!(Seen::parse(&out).dst, CLIENT_IP);
}
