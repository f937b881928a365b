//! The Markdown report of `bench e2e`.

use super::{
    Plan, Row, Short,
    lbs::{BACKENDS, Lb},
};
use std::{collections::BTreeMap, time::Duration};

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// iperf3 runs of each stream count per round (see `BULK_RUNS_PER_ROUND`).
const BULK: usize = super::BULK_RUNS_PER_ROUND;

fn ms(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// CPU seconds per 100k requests.
fn per_100k(seconds: f64, requests: u64) -> f64 {
    seconds / requests.max(1) as f64 * 100_000.0
}

pub fn report(
    plan: &Plan,
    lbs: &[Lb],
    rows: &BTreeMap<usize, Row>,
    ipvs_skip: Option<&str>,
    load: &str,
    took: Duration,
) {
    let direct = rows
        .get(&0)
        .filter(|r| !r.shorts.is_empty())
        .map(|r| median(&r.shorts.iter().map(|s| s.wrk.rps).collect::<Vec<_>>()));
    let ratio = |v: f64| direct.map_or("–".into(), |d| format!("{:.2}", v / d));

    let Plan {
        short_secs,
        keepalive_secs,
        iperf_secs,
        reps,
    } = *plan;
    println!("### End to end (namespaces, wrk → nginx, iperf3)\n");
    if std::env::var_os("BENCH_E2E_QUICK").is_some() {
        println!(
            "**Quick mode (`BENCH_E2E_QUICK`): shortened runs, for trying the harness out only.**\n"
        );
    }
    println!(
        "A client, the load balancer and {BACKENDS} nginx backends (one process each, `return 200`) in network namespaces joined by a bridge, \
         all on this machine's cores; an XDP_PASS program with threaded NAPI on the LB's bridge port and TX checksum offload off for every row. \
         The topology is rebuilt for every measurement (the backends' TIME_WAIT sockets from one load balancer would slow the next), \
         and the rounds are interleaved: every load balancer once, then again. \
         \"Direct\" is the client to backend 0 alone, without a load balancer; \
         \"through a kernel router hop\" is the same, but the client and backend 0 route to each other through the LB host (IP forwarding, no NAT, no XDP on its interface): the cost of any box in the path in this topology, the ceiling for every load balancer below (short connections only); \
         the others spread over the {BACKENDS} backends. \
         HAProxy {}: `mode tcp`, `balance roundrobin`, `option tcp-check`, `check fall 3 rise 2 inter 2s` (kubeadm's HA guide). \
         nftables: `dnat to numgen inc mod {BACKENDS} map {{…}}` in prerouting, `snat to` the LB's address in postrouting (kube-proxy's nftables datapath). \
         kube-xdp: one service VIP:80 over the backends, TCP checks, the default `snat_ports` (10000-32767: 22,768 ports per backend). \
         The client (wrk, iperf3) has `net.ipv4.tcp_tw_reuse = 1`: without it, where the client closes first (through HAProxy) its own TIME_WAIT sockets make every connect() scan the port range, and the client, not the load balancer, is what gets measured.\n",
        haproxy_version()
    );
    println!(
        "Threaded NAPI on the LB's bridge port: the XDP_PASS program there (which XDP_TX on the LB's veth needs) puts that veth in NAPI mode. \
         In softirq mode its poll runs on whichever CPU scheduled it and the bridge queues each frame on that CPU's backlog for the destination host, \
         so when the poll moves between CPUs two segments of one flow can sit in two CPUs' backlogs and arrive out of order. \
         Measured on this machine kind (5 s runs, interleaved), it hit every load-balanced row and never the direct one: \
         through kube-xdp the client counted TcpExt:TCPOFOQueue +2,200 to +3,400 per ~150k connections and the backends as many spurious TcpExt:TCPFastRetrans, \
         through nftables +1,200 to +1,600; with `/sys/class/net/plb/threaded = 1` both were 0 in all 8 runs, \
         req/s unchanged within the noise (direct median 49.9k softirq vs 49.2k threaded over 6 runs each, kube-xdp 29.7k vs 30.3k, nftables 29.4k vs 29.4k over 4) \
         and kube-xdp's p99 4.4–4.6 ms → 2.9–3.2 ms. \
         RPS over both CPUs on every host's veth fixed the reordering too, but its cross-CPU interrupts cost the direct row 28 % (49.4k → 35.7k req/s) and nftables 22 %, so it is not used.\n"
    );
    let host = super::host::settings();
    if host != ["threaded"] {
        println!(
            "**Host settings replaced (`BENCH_E2E_HOST`): {}.**\n",
            if host.is_empty() {
                "none (softirq NAPI)".to_owned()
            } else {
                host.join(", ")
            }
        );
    }
    if let Ok(rows) = std::env::var("BENCH_E2E_ROWS") {
        println!("**Only the rows `BENCH_E2E_ROWS={rows}`.**\n");
    }
    if let Some(why) = ipvs_skip {
        println!("IPVS NAT: skipped: {why}.\n");
    }

    println!(
        "#### Short connections (`wrk -t2 -c64 -d{short_secs}s -H 'Connection: close' --latency`, {reps} runs each, the router hop one)\n"
    );
    println!(
        "| load balancer | req/s median | min | × direct | p50 | p99 | socket errors (c/r/w/t) | non-2xx | client SYN retransmits | LB process CPU-s /100k req | machine softirq CPU-s /100k req | machine sys+softirq CPU-s /100k req |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, lb) in lbs.iter().enumerate() {
        let Some(r) = rows.get(&i).filter(|r| !r.shorts.is_empty()) else {
            println!("| {} | failed | | | | | | | | | | |", lb.name());
            continue;
        };
        let rps: Vec<f64> = r.shorts.iter().map(|s| s.wrk.rps).collect();
        let med = |f: &dyn Fn(&Short) -> f64| median(&r.shorts.iter().map(f).collect::<Vec<_>>());
        let sum = |f: &dyn Fn(&Short) -> u64| r.shorts.iter().map(f).sum::<u64>();
        let lb_proc = if r.shorts.iter().all(|s| s.lb_process_s.is_some()) {
            format!(
                "{:.3}",
                med(&|s| per_100k(s.lb_process_s.unwrap(), s.wrk.requests))
            )
        } else {
            "–".into()
        };
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {}/{}/{}/{} | {} | {} | {lb_proc} | {:.3} | {:.3} |",
            lb.name(),
            median(&rps),
            min(&rps),
            ratio(median(&rps)),
            ms(med(&|s| s.wrk.p50_us)),
            ms(med(&|s| s.wrk.p99_us)),
            sum(&|s| s.wrk.connect_errors),
            sum(&|s| s.wrk.read_errors),
            sum(&|s| s.wrk.write_errors),
            sum(&|s| s.wrk.timeouts),
            sum(&|s| s.wrk.non_2xx),
            r.shorts.iter().map(|s| s.syn_retrans).sum::<i64>(),
            med(&|s| per_100k(s.softirq_s, s.wrk.requests)),
            med(&|s| per_100k(s.softirq_s + s.system_s, s.wrk.requests)),
        );
    }
    println!(
        "\nErrors, non-2xx and SYN retransmits are summed over the runs; the rest are medians. \
         wrk starts a request's latency clock when it writes the request, after the handshake: \
         a delayed connection (a retransmitted SYN) shows in the rate and in the SYN retransmits, not in p50/p99. \
         CPU: the LB process is HAProxy itself, or kube-xdp's control-plane daemon (the datapath runs in softirq); \
         the kernel paths (kube-xdp's XDP program, nftables/conntrack) run in softirq, which `/proc/stat` counts for the whole machine — \
         client, backends and load balancer share it, so compare each row with the direct row.\n"
    );

    live_section(lbs, rows);

    println!("#### Keep-alive (`wrk -t2 -c64 -d{keepalive_secs}s --latency`, one run)\n");
    println!("| load balancer | req/s | × direct | p50 | p99 | socket errors (c/r/w/t) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let direct_ka = rows
        .get(&0)
        .and_then(|r| r.keepalive.as_ref())
        .map(|w| w.rps);
    for (i, lb) in lbs.iter().enumerate().filter(|(_, lb)| **lb != Lb::Router) {
        match rows.get(&i).and_then(|r| r.keepalive.as_ref()) {
            Some(w) => println!(
                "| {} | {:.0} | {} | {} | {} | {}/{}/{}/{} |",
                lb.name(),
                w.rps,
                direct_ka.map_or("–".into(), |d| format!("{:.2}", w.rps / d)),
                ms(w.p50_us),
                ms(w.p99_us),
                w.connect_errors,
                w.read_errors,
                w.write_errors,
                w.timeouts
            ),
            None => println!("| {} | failed | | | | |", lb.name()),
        }
    }

    println!(
        "\n#### Bulk throughput (`iperf3 -t {iperf_secs}` to backend 0, receiver's rate; {} runs of each per load balancer, interleaved: {BULK} in each round)\n",
        BULK * reps
    );
    println!(
        "| load balancer | 1 stream Gbit/s median | min – max | × HAProxy | 4 streams Gbit/s median | min – max | × HAProxy |"
    );
    println!("|---|---:|---|---:|---:|---|---:|");
    let haproxy = lbs
        .iter()
        .position(|lb| *lb == Lb::Haproxy)
        .and_then(|i| rows.get(&i));
    let gbit = |v: &[f64]| {
        if v.is_empty() {
            ("failed".to_owned(), String::new())
        } else {
            (
                format!("{:.2}", median(v) / 1e9),
                format!("{:.2} – {:.2}", min(v) / 1e9, max(v) / 1e9),
            )
        }
    };
    let versus = |v: &[f64], h: Option<&Vec<f64>>| match h {
        Some(h) if !v.is_empty() && !h.is_empty() => format!("{:.2}", median(v) / median(h)),
        _ => "–".into(),
    };
    for (i, lb) in lbs.iter().enumerate().filter(|(_, lb)| **lb != Lb::Router) {
        let Some(r) = rows.get(&i) else {
            println!("| {} | failed | | | failed | | |", lb.name());
            continue;
        };
        let (m1, s1) = gbit(&r.iperf1);
        let (m4, s4) = gbit(&r.iperf4);
        println!(
            "| {} | {m1} | {s1} | {} | {m4} | {s4} | {} |",
            lb.name(),
            versus(&r.iperf1, haproxy.map(|h| &h.iperf1)),
            versus(&r.iperf4, haproxy.map(|h| &h.iperf4)),
        );
    }
    let rx: Vec<String> = lbs
        .iter()
        .enumerate()
        .filter_map(|(i, lb)| {
            let r = rows.get(&i)?;
            let per = |n: u32| {
                let v: Vec<f64> = r
                    .bulk_bytes_per_rx
                    .iter()
                    .filter(|(s, _)| *s == n)
                    .map(|(_, b)| *b)
                    .collect();
                (!v.is_empty()).then(|| format!("{:.0}", median(&v)))
            };
            Some(format!("{} {} / {}", lb.name(), per(1)?, per(4)?))
        })
        .collect();
    if !rx.is_empty() {
        println!(
            "\nBytes per packet the LB's interface received during the runs (medians, 1 / 4 streams; a GRO segment counts as one): {}.",
            rx.join("; ")
        );
    }
    if let Some(r) = lbs
        .iter()
        .position(|lb| *lb == Lb::KubeXdp)
        .and_then(|i| rows.get(&i))
        .filter(|r| !r.bulk_bytes_per_run.is_empty())
    {
        let per = |n: u32| {
            median(
                &r.bulk_bytes_per_run
                    .iter()
                    .filter(|(s, _)| *s == n)
                    .map(|(_, b)| *b)
                    .collect::<Vec<_>>(),
            )
        };
        println!(
            "\nWhat bounds kube-xdp here: one run of its XDP program and one transmit per frame, both ways: \
             {:.0} bytes received per run of `kube_xdp` with 1 stream, {:.0} with 4 (medians, from the kernel's accounting during the runs: the data's frames and the ACKs coming back). \
             Every load balancer's interface receives MTU-sized frames (above); HAProxy, which ends the client's TCP connection, sends the data on in GSO segments of up to 64 KB (one pass of its stack for many frames) and sends its own ACKs; \
             nftables forwards frame by frame, as kube-xdp does, through the kernel's stack.",
            per(1),
            per(4)
        );
    }

    println!("\n#### Every short-connection run\n");
    println!(
        "| load balancer | round | req/s | requests | client connections | machine busy just before | machine idle during | counters that moved |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for (i, lb) in lbs.iter().enumerate() {
        let Some(r) = rows.get(&i) else { continue };
        for (n, s) in r.shorts.iter().enumerate() {
            println!(
                "| {} | {} | {:.0} | {} | {} | {:.0} % | {:.0} % | {} |",
                lb.name(),
                n + 1,
                s.wrk.rps,
                s.wrk.requests,
                s.active_opens,
                s.busy_before_pct,
                s.idle_pct,
                if s.notes.is_empty() {
                    "none".into()
                } else {
                    s.notes.join("; ")
                }
            );
        }
    }
    let failures: Vec<String> = lbs
        .iter()
        .enumerate()
        .flat_map(|(i, lb)| {
            rows.get(&i)
                .into_iter()
                .flat_map(|r| r.failures.iter())
                .map(move |f| format!("- {}: {f}", lb.name()))
        })
        .collect();
    if !failures.is_empty() {
        println!("\nFailed measurements:\n\n{}", failures.join("\n"));
    }
    let checked: Vec<String> = lbs
        .iter()
        .enumerate()
        .filter_map(|(i, lb)| {
            let r = rows.get(&i)?;
            (!r.notes.is_empty()).then(|| format!("{} {}", lb.name(), r.notes.join(", ")))
        })
        .collect();
    println!(
        "\nBefore measuring, each load balancer was checked to reach its backends: {}.",
        checked.join("; ")
    );
    println!(
        "\nThe end-to-end part took {:.0} s. Load average (1, 5, 15 min): {load}. \
         \"Machine busy just before\" is the CPU share in use during the idle second before each run: \
         other work on this shared machine, which the figures above include.",
        took.as_secs_f64()
    );
}

/// "2.6.12" from `haproxy -v`, or nothing.
fn haproxy_version() -> String {
    std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .map(|v| v.split('-').next().unwrap_or(v).to_owned())
        })
        .unwrap_or_default()
}

/// The XDP programs' cost in live traffic during the short-connection runs,
/// beside kube-xdp's `BPF_PROG_TEST_RUN` figures, and its flow table.
fn live_section(lbs: &[Lb], rows: &BTreeMap<usize, Row>) {
    println!(
        "#### The XDP programs in live traffic (the kernel's accounting during the short-connection runs)\n"
    );
    println!(
        "`BPF_ENABLE_STATS` (what `sysctl kernel.bpf_stats_enabled=1` turns on) during each short-connection run: every run of a program adds its time, \
         so ns per run is what one packet costs the program in this traffic (new flows, handshakes, data, closes, both directions), measured by the kernel. \
         `kube_xdp_pass` is the XDP_PASS program on the LB's bridge port (every row has it), which does nothing: the accounting's own cost and a cold start. \
         The floor program (swap MACs, XDP_TX) cannot stand in the LB's place in live traffic, so it has no row. \
         TestRun: kube-xdp's established-flow (client → backend) and reply-path figures through `BPF_PROG_TEST_RUN` as in the datapath part, measured just after each run. \
         Medians over the runs. The accounting counts every program of these names on the machine: run the bench alone.\n"
    );
    println!(
        "| load balancer | program | runs per run | ns per run | TestRun established ns | TestRun reply ns | live ÷ TestRun established |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (i, lb) in lbs.iter().enumerate() {
        let Some(r) = rows.get(&i).filter(|r| !r.shorts.is_empty()) else {
            continue;
        };
        let mut names: Vec<&String> = r.shorts.iter().flat_map(|s| s.live.keys()).collect();
        names.sort();
        names.dedup();
        let est: Vec<f64> = r
            .shorts
            .iter()
            .filter_map(|s| s.testrun_ns.map(|t| t.0))
            .collect();
        let rep: Vec<f64> = r
            .shorts
            .iter()
            .filter_map(|s| s.testrun_ns.map(|t| t.1))
            .collect();
        for name in names {
            let runs: Vec<f64> = r
                .shorts
                .iter()
                .filter_map(|s| s.live.get(name).map(|p| p.runs as f64))
                .collect();
            let ns: Vec<f64> = r
                .shorts
                .iter()
                .filter_map(|s| s.live.get(name).and_then(|p| p.ns_per_run()))
                .collect();
            let (est_s, rep_s, ratio) = if name == "kube_xdp" && !est.is_empty() {
                (
                    format!("{:.0}", median(&est)),
                    format!("{:.0}", median(&rep)),
                    format!("{:.2}", median(&ns) / median(&est)),
                )
            } else {
                ("".into(), "".into(), "".into())
            };
            println!(
                "| {} | `{name}` | {:.0} | {:.0} | {est_s} | {rep_s} | {ratio} |",
                lb.name(),
                median(&runs),
                median(&ns),
            );
        }
    }
    let tables: Vec<String> = lbs
        .iter()
        .enumerate()
        .filter_map(|(i, lb)| {
            let r = rows.get(&i)?;
            let runs: Vec<String> = r
                .shorts
                .iter()
                .filter_map(|s| s.occupancy.as_ref())
                .map(|o| {
                    let states: Vec<String> = o
                        .by_state
                        .iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(name, n)| format!("{name} {n}"))
                        .collect();
                    format!(
                        "{} entries of {} ({} live: {})",
                        o.entries,
                        o.capacity,
                        o.live,
                        states.join(", ")
                    )
                })
                .collect();
            (!runs.is_empty()).then(|| format!("{}: {}", lb.name(), runs.join("; ")))
        })
        .collect();
    if !tables.is_empty() {
        println!(
            "\nThe flow table at the end of each short-connection run (closing flows stay `tcp_closing`, so this is the table the run's packets were looked up in): {}.\n",
            tables.join("; ")
        );
    } else {
        println!();
    }
}
