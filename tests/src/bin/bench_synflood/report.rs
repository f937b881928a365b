//! The Markdown report of `bench synflood`.

use super::{
    LONG_LIVED, Plan, Run, WARM_UP,
    clients::{ANSWER_TIMEOUT, CLIENT_EVERY, CONNECT_TIMEOUT, PING_EVERY},
    setup::FLOOD_SOURCES,
};
use crate::bench_e2e::lbs::Lb;
use std::time::Duration;

pub fn rate_name(rate: u32) -> String {
    if rate == 0 {
        "a flat-out flood".into()
    } else {
        format!("{} SYNs/s", thousands(rate.into()))
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn time(d: Option<Duration>) -> String {
    match d {
        None => "failed".into(),
        Some(d) if d >= Duration::from_secs(1) => format!("{:.2} s", d.as_secs_f64()),
        Some(d) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn per_s(n: u64, secs: f64) -> String {
    thousands((n as f64 / secs.max(1e-3)).round() as u64)
}

/// The LB's CPU over the window, in % of one core: (total, queue, process).
fn lb_cpu(run: &Run) -> (f64, f64, Option<f64>) {
    let w = run.window.as_secs_f64().max(1e-3);
    let q = 100.0 * run.queue_cpu_s / w;
    let p = run.process_cpu_s.map(|p| 100.0 * p / w);
    (q + p.unwrap_or(0.0), q, p)
}

fn machine_busy(run: &Run) -> f64 {
    let m = &run.machine;
    100.0 - 100.0 * m.idle as f64 / m.total.max(1) as f64
}

fn survived(run: &Run) -> usize {
    run.long_lived
        .iter()
        .filter(|l| l.failure.is_none() && l.ok > 0)
        .count()
}

/// One line for the progress log.
pub fn summary(run: &Run) -> String {
    let (cpu, _, _) = lb_cpu(run);
    format!(
        "flood {} sent/s ({}), {} reached the LB/s, {} queue drops/s; real client {}/{} ({}), connect p50 {} p99 {}, whole p99 {}; long-lived {}/{}; LB CPU {cpu:.0} % of a core; machine busy {:.0} %; {}",
        per_s(run.flood.sent, run.flood.elapsed_s),
        run.flood.sent,
        per_s(run.reached, run.flood.elapsed_s),
        per_s(run.queue_drops, run.flood.elapsed_s),
        run.tally.ok,
        run.tally.attempts,
        pct(run.tally.success()),
        time(run.tally.connect_quantile(0.5)),
        time(run.tally.connect_quantile(0.99)),
        time(run.tally.whole_quantile(0.99)),
        survived(run),
        run.long_lived.len(),
        machine_busy(run),
        run.notes.join("; ")
    )
}

/// kube-xdp's success rate against HAProxy's at each rate both ran.
fn verdict(plan: &Plan, runs: &[Run]) -> String {
    let find = |lb: Lb, rate: u32| runs.iter().find(|r| r.lb == lb && r.rate == rate);
    let mut parts = Vec::new();
    let mut all = true;
    for &rate in &plan.rates {
        let (Some(k), Some(h)) = (find(Lb::KubeXdp, rate), find(Lb::Haproxy, rate)) else {
            continue;
        };
        let at_or_above = k.tally.success() >= h.tally.success();
        all &= at_or_above;
        parts.push(format!(
            "{}: {} vs {}",
            rate_name(rate),
            pct(k.tally.success()),
            pct(h.tally.success())
        ));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "kube-xdp's real-client success rate {} HAProxy's under every flood measured ({}).",
        if all {
            "is at or above"
        } else {
            "is NOT at or above"
        },
        parts.join("; ")
    )
}

pub fn report(plan: &Plan, runs: &[Run], failures: &[String], load: &str, took: Duration) {
    println!("### SYN floods: real clients through a spoofed SYN flood\n");
    if std::env::var_os("BENCH_SYNFLOOD_QUICK").is_some() || plan.secs != 60 {
        println!(
            "**A shortened run ({} s floods): not the section's full measurement.**\n",
            plan.secs
        );
    }
    println!(
        "The end-to-end section's topology and load balancers (the same configurations: kube-xdp with the daemon's defaults \
         but its service, HAProxy 2.6 in TCP mode, nftables DNAT/SNAT; 3 nginx backends), with a flood host on the segment \
         running `synflood` at VIP:80: SYNs that look like Linux clients' (MSS, SACK, timestamps, window scale) from random \
         addresses of {FLOOD_SOURCES} and random ports, at 10,000 and 50,000 SYNs/s (paced) and flat out (`--rate 0`: as \
         fast as {} go{}, several times what any LB's receive queue here takes; one thread leaves the other core \
         to the LB, backends and clients), {} s per flood, a fresh topology for every run, every load balancer at one rate before the \
         next rate. The LB routes the spoofed sources to the flood host, as a deployed LB's default route would: its kernel \
         answers spoofed SYNs (HAProxy's SYN-ACKs and SYN cookies, those of the backends behind nftables) as it would on a \
         network, and the flood host drops them (it does not forward). From {} s into each flood to {} s before its end, the \
         real client opens a connection every {} ms from the client host, each on its own thread: connect ({} s bound), \
         `GET /` with `Connection: close`, the response read to the server's close ({} s bound); a success is a 200 naming \
         a backend. {LONG_LIVED} long-lived keep-alive connections, opened before the flood, send a request every {} ms \
         ({} s bound each); one survives when every request of the run was answered.\n",
        if plan.threads == 1 {
            "one sending thread".to_owned()
        } else {
            format!("{} sending threads", plan.threads)
        },
        if plan.threads == 1 { "es" } else { "" },
        plan.secs,
        WARM_UP.as_secs(),
        WARM_UP.as_secs(),
        CLIENT_EVERY.as_millis(),
        CONNECT_TIMEOUT.as_secs(),
        ANSWER_TIMEOUT.as_secs(),
        PING_EVERY.as_millis(),
        ANSWER_TIMEOUT.as_secs(),
    );
    println!(
        "What reaches the LB: the frames its interface received during the flood, less those the client and backends sent \
         (all of theirs go to the LB), per second of the flood; the queue drops are frames the LB's receive queue (one \
         queue of 256 frames, a veth's) had no room for — the flood's and the real traffic's alike, before any load \
         balancer sees them. \
         LB CPU, in % of one core over the real client's window: the LB's receive queue is given its own kernel thread for \
         every row (GRO on its veth, which gives it a NAPI queue as a NIC has, and threaded NAPI); that thread runs \
         everything the LB's kernel does with a frame it receives — kube-xdp's XDP program, nftables' conntrack and NAT \
         and forwarding, HAProxy's kernel TCP stack with its SYN-ACKs and SYN cookies — and its CPU time \
         (`/proc/PID/schedstat`) is added to that of the LB's process (HAProxy's threads; kube-xdp's control-plane \
         daemon; nftables has none). Not in it: timers (the kernel's SYN-ACK retransmits, conntrack's garbage \
         collection), the backends' work (behind nftables they answer the flood themselves) and the bridge's. \
         Machine busy: both cores, everything (the generator, the bridge, backends, clients), from `/proc/stat`.\n"
    );
    println!(
        "| load balancer | flood asked | SYNs sent /s | reached the LB /s | queue drops /s | real connections ok | success | connect p50 | connect p99 | whole connection p99 | long-lived surviving | LB CPU (% of a core) | of which receive queue | machine busy (2 cores) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &rate in &plan.rates {
        for run in runs.iter().filter(|r| r.rate == rate) {
            let (cpu, queue, _) = lb_cpu(run);
            println!(
                "| {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} / {} | {cpu:.0} % | {queue:.0} % | {:.0} % |",
                run.lb.name(),
                if rate == 0 {
                    "flat out".to_owned()
                } else {
                    thousands(rate.into())
                },
                per_s(run.flood.sent, run.flood.elapsed_s),
                per_s(run.reached, run.flood.elapsed_s),
                per_s(run.queue_drops, run.flood.elapsed_s),
                run.tally.ok,
                run.tally.attempts,
                pct(run.tally.success()),
                time(run.tally.connect_quantile(0.5)),
                time(run.tally.connect_quantile(0.99)),
                time(run.tally.whole_quantile(0.99)),
                survived(run),
                run.long_lived.len(),
                machine_busy(run),
            );
        }
    }
    let v = verdict(plan, runs);
    if !v.is_empty() {
        println!("\n{v}");
    }
    println!(
        "\nConnect p50/p99 are over every attempt, one that never connected counting as longer than any that did \
         (\"failed\"); the whole connection's p99 (connect to the response's end) likewise counts a failed one as longer \
         than any success. A SYN cookie answered with a zero window (kube-xdp's) completes the client's connect before \
         any backend is reached, so its wait shows in the whole connection's time, not in the connect's. A success that \
         took over a second waited for a retransmission (the kernel's first SYN retransmit comes after 1 s).\n"
    );
    println!("#### Every SYN-flood run\n");
    println!(
        "| load balancer | flood asked | generator threads | machine busy just before | long-lived: requests answered, slowest | what moved |"
    );
    println!("|---|---|---:|---:|---|---|");
    for &rate in &plan.rates {
        for run in runs.iter().filter(|r| r.rate == rate) {
            let answered: u64 = run.long_lived.iter().map(|l| l.ok).sum();
            let slowest = run
                .long_lived
                .iter()
                .map(|l| l.longest)
                .max()
                .unwrap_or_default();
            println!(
                "| {} | {} | {} | {:.0} % | {answered}, {} | {} |",
                run.lb.name(),
                rate_name(rate),
                run.flood.threads,
                run.busy_before_pct,
                time(Some(slowest)),
                if run.notes.is_empty() {
                    "none".into()
                } else {
                    run.notes.join("; ")
                }
            );
        }
    }
    println!();
    if !failures.is_empty() {
        println!("Runs that could not be measured:\n");
        for f in failures {
            println!("- {f}");
        }
        println!();
    }
    println!(
        "The SYN-flood part took {:.0} s. Load average (1, 5, 15 min): {load}. \n",
        took.as_secs_f64()
    );
}
