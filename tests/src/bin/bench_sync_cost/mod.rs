//! `bench datapath`'s flow-sync part: what `Settings.sync = 1` (the
//! datapath reporting each new flow and each state change in the
//! `SYNC_EVENTS` ring buffer, for the pair's other box) costs a packet,
//! beside `sync = 0`, in the same harness and run as the figures above.
//!
//! Five figures in each repetition: the established flow with sync off
//! and on (on, it must report nothing: checked), and new flows with sync
//! off and on with the ring drained between batches (never full: every
//! report committed, counted as it is drained) — off and on alternating
//! batch by batch, so that the machine's other load hits both alike —
//! then new flows with the ring full (no reader: every report fails and is
//! counted `sync_lost`, checked).

use crate::{CALLS, NEW_FLOW_BATCH, REPS, measure, median, min, new_flows, program, syn_batch};
use aya::maps::{MapData, RingBuf};
use kube_xdp_common::{
    maps::{SYNC_RING_BYTES, SyncEvent},
    program_name,
    stats::Counter,
};
use kube_xdp_tests::harness::{Harness, XDP_TX, default_settings};

fn set_sync(h: &mut Harness, on: bool) {
    let mut settings = default_settings();
    settings.sync = u32::from(on);
    h.dp.set_settings(&settings).expect("write the settings");
}

/// Empties the ring; returns how many reports it held.
fn drain(ring: &mut RingBuf<MapData>) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), size_of::<SyncEvent>(), "one report per record");
        n += 1;
    }
    n
}

/// The datapath's `sync_lost` counter (reports the full ring refused).
fn lost(h: &Harness) -> u64 {
    h.dp.global_stats()
        .expect("read the counters")
        .get(Counter::SyncLost)
}

/// (kernel ns/call, wall ns/call) samples of one figure.
#[derive(Default)]
struct Samples {
    kernel: Vec<f64>,
    wall: Vec<f64>,
}

impl Samples {
    fn push(&mut self, (kernel, wall): (f64, f64)) {
        self.kernel.push(kernel);
        self.wall.push(wall);
    }
}

/// `CALLS` calls in chunks of [`NEW_FLOW_BATCH`], sync off and on
/// alternating chunk by chunk: `chunk(h, index)` measures one (the
/// settings already written). Returns (kernel, wall) ns/call for off, on.
fn alternating(
    h: &mut Harness,
    mut chunk: impl FnMut(&mut Harness, usize) -> (f64, f64),
) -> ((f64, f64), (f64, f64)) {
    let chunks = CALLS / NEW_FLOW_BATCH;
    let (mut off, mut on) = ((0.0, 0.0), (0.0, 0.0));
    for i in 0..chunks {
        for sync in [false, true] {
            set_sync(h, sync);
            let (k, w) = chunk(h, i);
            let acc = if sync { &mut on } else { &mut off };
            acc.0 += k / chunks as f64;
            acc.1 += w / chunks as f64;
        }
    }
    (off, on)
}

/// Measures and prints the table. `established` is a data segment of the
/// flow `syn` opens (opened again at each repetition: the new-flow figures
/// clear the table).
pub fn sync_cost(h: &mut Harness, established: &[u8], syn: &[u8]) {
    let mut ring = h.sync_events();
    let est = vec![established.to_vec()];
    let lb = program_name::LB;
    let (mut est_off, mut est_on) = (Samples::default(), Samples::default());
    let (mut new_off, mut new_drained, mut new_full) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut ring_capacity = Vec::new();
    let mut committed = 0usize;
    let mut refused = 0u64;
    let mut est_reports = 0usize;
    for _ in 0..REPS {
        h.clear_flows();
        let (verdict, _) = h.run(syn);
        assert_eq!(verdict, XDP_TX, "the established flow opened again");
        drain(&mut ring);
        let lost_before = lost(h);
        let (off, on) = alternating(h, |h, _| {
            measure(program(h, lb), &est, NEW_FLOW_BATCH, XDP_TX)
        });
        est_off.push(off);
        est_on.push(on);
        est_reports += drain(&mut ring);
        assert_eq!(lost(h), lost_before, "an established packet was reported");

        // New flows, the flow state cleared and the ring drained before
        // each batch (untimed): the ring never fills.
        let mut got = 0;
        let (off, on) = alternating(h, |h, i| {
            h.clear_flows();
            got += drain(&mut ring);
            measure(program(h, lb), &syn_batch(i), NEW_FLOW_BATCH, XDP_TX)
        });
        got += drain(&mut ring);
        new_off.push(off);
        new_drained.push(on);
        assert_eq!(
            got, CALLS,
            "one report per new flow with sync = 1, none with 0"
        );
        assert_eq!(
            lost(h),
            lost_before,
            "a report was lost with the ring drained"
        );
        committed += got;
        set_sync(h, true);

        // Full: new flows without a reader until the ring refuses one,
        // then the figure; every report of it must be refused.
        let lost_before = lost(h);
        for b in 0.. {
            if lost(h) > lost_before {
                break;
            }
            assert!(b < 100, "the ring never filled");
            h.clear_flows();
            measure(program(h, lb), &syn_batch(b), NEW_FLOW_BATCH, XDP_TX);
        }
        let lost_before = lost(h);
        new_full.push(new_flows(h, |_| {}));
        let refused_now = lost(h) - lost_before;
        assert_eq!(
            refused_now, CALLS as u64,
            "with the ring full every report is refused"
        );
        refused += refused_now;
        ring_capacity.push(drain(&mut ring));
    }
    set_sync(h, false);
    h.clear_flows();

    let capacity = ring_capacity.iter().min().copied().unwrap_or(0);
    println!("### Flow sync's cost to the datapath (BPF_PROG_TEST_RUN)\n");
    println!(
        "The same harness, program and calls as above ({CALLS} calls per figure, `repeat = 1`, every verdict checked), with \
         `Settings.sync` switched between chunks of {NEW_FLOW_BATCH} calls: off and on alternate chunk by chunk within a \
         figure, so that the machine's other load hits both alike; {REPS} repetitions. With `sync = 1` \
         the datapath writes a {}-byte report into the `SYNC_EVENTS` ring buffer ({} MiB: {capacity} reports when full, counted \
         by draining it) for each new flow and each change of a flow's state, never per packet. The daemon drains the ring as it \
         fills (woken through epoll); here a reader cannot run beside the calls without taking a core from them, so \"ring \
         drained\" empties it between batches of {NEW_FLOW_BATCH} new flows (not timed): it never fills, every report is \
         committed (the drained reports counted: {committed} = one per new flow, `sync_lost` unchanged). \"Ring full\": no \
         reader, the ring filled first; every report of the figure is refused and counted `sync_lost` ({refused} = every \
         call, checked) — what the datapath pays when the daemon falls behind; it cannot alternate with `sync = 0` (filling \
         the ring takes {capacity} reports), it runs after the alternating figures in each repetition, so its Δ is the \
         noisier one. The established flow with `sync = 1`: \
         {est_reports} reports in {} calls (checked).\n",
        size_of::<SyncEvent>(),
        SYNC_RING_BYTES >> 20,
        REPS * CALLS
    );
    println!(
        "| path | `sync` | kernel ns/call min | median | Δ vs `sync = 0` min | Δ median | × `sync = 0` (min) | wall ns/call median |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let row = |path: &str, setting: &str, s: &Samples, base: &Samples| {
        let (lo, base_lo) = (min(&s.kernel), min(&base.kernel));
        let (med, base_med) = (median(&s.kernel), median(&base.kernel));
        let delta = |a: f64, b: f64| {
            if std::ptr::eq(s, base) {
                "–".to_owned()
            } else {
                format!("{:+.0}", a - b)
            }
        };
        println!(
            "| {path} | {setting} | {lo:.0} | {med:.0} | {} | {} | {:.2} | {:.0} |",
            delta(lo, base_lo),
            delta(med, base_med),
            lo / base_lo,
            median(&s.wall)
        );
    };
    row(
        "established flow (client → backend)",
        "0",
        &est_off,
        &est_off,
    );
    row(
        "established flow (client → backend)",
        "1",
        &est_on,
        &est_off,
    );
    row("new flow", "0", &new_off, &new_off);
    row("new flow", "1, ring drained", &new_drained, &new_off);
    row(
        "new flow",
        "1, ring full (reports refused)",
        &new_full,
        &new_off,
    );
    println!();
}
