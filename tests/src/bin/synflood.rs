//! `synflood`: a SYN-flood generator for the SYN-flood end-to-end test.
//!
//! It sends TCP SYNs that look like a Linux client's (MSS, SACK
//! permitted, timestamps, window scale) from random addresses of
//! `--src-cidr`, random ports and ISNs, to `--dst`:`--dport` at the MAC
//! `--dst-mac` (or the one the neighbour table resolves), out of
//! `--iface`, through an AF_PACKET socket, paced by a token bucket
//! (`--rate`, 0 = as fast as it goes), for at most `--duration` seconds
//! and `--count` SYNs. At the end it prints one JSON line: what it sent
//! and at what rate.
//!
//! "sent" counts the frames the kernel took; what reaches the target is
//! for the target's counters to say (a veth peer's full receive ring drops
//! frames silently).
//!
//! Network safety: it refuses every address outside 198.18.0.0/15 and
//! refuses to run outside a named network namespace (one made with `ip
//! netns add`, as the tests make theirs); a run is always bounded (at most
//! [`MAX_DURATION_S`] seconds).
//!
//! `nsenter --net=/run/netns/NS synflood --iface eth0 --dst 198.18.0.10
//! --dport 6443 --src-cidr 198.19.0.0/17 --rate 0 --duration 20`

use anyhow::{Context, bail, ensure};
use clap::Parser;
use kube_xdp_tests::synflood::{
    Cidr, Rng, TokenBucket,
    afpacket::{self, PacketSocket},
    ensure_private_netns, ensure_test_range,
    packet::{FRAME_LEN, SynFields, SynTemplate},
};
use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// The longest run, whatever is asked.
const MAX_DURATION_S: f64 = 600.0;
/// The most SYNs of one run.
const MAX_COUNT: u64 = 1_000_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "synflood",
    about = "SYN flood from 198.18.0.0/15, for tests in network namespaces"
)]
struct Args {
    /// The interface to send out of.
    #[arg(long)]
    iface: String,
    /// The destination's MAC (aa:bb:cc:dd:ee:ff); resolved from the
    /// neighbour table (by ARP if need be) when absent.
    #[arg(long)]
    dst_mac: Option<String>,
    /// Destination address (inside 198.18.0.0/15).
    #[arg(long)]
    dst: Ipv4Addr,
    /// Destination port.
    #[arg(long)]
    dport: u16,
    /// Source addresses, picked at random (inside 198.18.0.0/15).
    #[arg(long)]
    src_cidr: Cidr,
    /// SYNs a second over all threads, token-bucket paced; 0 = as fast as
    /// possible.
    #[arg(long)]
    rate: f64,
    /// Seconds to run (at most 600).
    #[arg(long)]
    duration: Option<f64>,
    /// SYNs to send (at most 1e9).
    #[arg(long)]
    count: Option<u64>,
    /// Sending threads, one socket each (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Frames per system call.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Skip the interface's queueing discipline (PACKET_QDISC_BYPASS).
    #[arg(long)]
    qdisc_bypass: bool,
    /// Seed of the random fields (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

fn parse_mac(text: &str) -> anyhow::Result<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{text:?} is not a MAC address"))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a MAC address"))
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// What one thread did.
#[derive(Default)]
struct Sent {
    /// Frames the kernel took.
    sent: u64,
    /// Frames it refused (its buffers full).
    refused: u64,
}

struct Plan {
    iface: String,
    template: SynTemplate,
    sources: Cidr,
    batch: usize,
    qdisc_bypass: bool,
}

fn run_thread(
    plan: &Plan,
    mut rng: Rng,
    quota: u64,
    rate: f64,
    deadline: Instant,
    stop: &AtomicBool,
) -> anyhow::Result<Sent> {
    let socket = PacketSocket::open(&plan.iface, plan.qdisc_bypass)?;
    let mut next_syn = |out: &mut [u8]| {
        let a = rng.next_u64();
        let b = rng.next_u64();
        let fields = SynFields {
            src: plan.sources.random_host(a as u32),
            // Linux's ephemeral ports and above.
            sport: 32_768 + ((a >> 32) as u16 % 28_232),
            isn: b as u32,
            ip_id: (a >> 48) as u16,
            tsval: (b >> 32) as u32,
        };
        plan.template.write(out, &fields);
    };
    // Up to 20 ms' worth saved up (at least a batch): a thread that fell
    // behind for a moment catches up instead of losing the tokens.
    let mut bucket = TokenBucket::new(rate, (rate / 50.0).max(plan.batch as f64));
    let mut done = Sent::default();
    let mut frames = vec![[0u8; FRAME_LEN]; plan.batch];
    let mut now = Instant::now();
    while done.sent < quota && now < deadline && !stop.load(Ordering::Relaxed) {
        let want = plan.batch.min((quota - done.sent) as usize);
        let n = match bucket.take(want, now) {
            Ok(n) => n,
            Err(wait) => {
                std::thread::sleep(wait.min(deadline.saturating_duration_since(now)));
                now = Instant::now();
                continue;
            }
        };
        for f in &mut frames[..n] {
            next_syn(f);
        }
        let took = socket.send_batch(&mut frames[..n]).context("sendmmsg")?;
        done.sent += took as u64;
        done.refused += (n - took) as u64;
        if took < n {
            // The socket's buffer is full: let the kernel drain it.
            std::thread::yield_now();
        }
        now = Instant::now();
    }
    Ok(done)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_test_range(args.dst, args.src_cidr)?;
    ensure_private_netns()?;
    if args.duration.is_none() && args.count.is_none() {
        bail!("refusing an unbounded run: give --duration SECONDS and/or --count SYNS");
    }
    let duration = args.duration.unwrap_or(MAX_DURATION_S);
    ensure!(
        duration > 0.0 && duration <= MAX_DURATION_S,
        "--duration must be in (0, {MAX_DURATION_S}] seconds"
    );
    let count = args.count.unwrap_or(MAX_COUNT);
    ensure!(
        count > 0 && count <= MAX_COUNT,
        "--count must be in [1, {MAX_COUNT}]"
    );
    ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be 0 (as fast as possible) or a positive number of SYNs a second"
    );
    ensure!(
        (1..=1024).contains(&args.batch),
        "--batch must be 1 to 1024"
    );
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, 64);
    let src_mac = afpacket::mac_address(&args.iface)?;
    let dst_mac = match &args.dst_mac {
        Some(text) => parse_mac(text)?,
        None => afpacket::resolve(args.dst, &args.iface, Duration::from_secs(3))?,
    };
    let plan = Arc::new(Plan {
        iface: args.iface.clone(),
        template: SynTemplate::new(src_mac, dst_mac, args.dst, args.dport),
        sources: args.src_cidr,
        batch: args.batch,
        qdisc_bypass: args.qdisc_bypass,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(duration);
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let quota = count / threads as u64 + u64::from((i as u64) < count % threads as u64);
            let rng = match args.seed {
                Some(seed) => Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
                None => Rng::seeded(i as u64),
            };
            let rate = args.rate / threads as f64;
            let (plan, stop) = (plan.clone(), stop.clone());
            std::thread::spawn(move || {
                let r = run_thread(&plan, rng, quota, rate, deadline, &stop);
                if r.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let mut total = Sent::default();
    let mut first_error = None;
    for w in workers {
        match w
            .join()
            .map_err(|_| anyhow::anyhow!("a sending thread panicked"))?
        {
            Ok(s) => {
                total.sent += s.sent;
                total.refused += s.refused;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        return Err(e);
    }
    let report = serde_json::json!({
        "sent": total.sent,
        "refused": total.refused,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "rate": (total.sent as f64 / elapsed).round(),
        "threads": threads,
        "batch": args.batch,
        "qdisc_bypass": args.qdisc_bypass,
        "iface": args.iface,
        "dst": args.dst.to_string(),
        "dport": args.dport,
        "dst_mac": mac_text(dst_mac),
        "src_cidr": args.src_cidr.to_string(),
    });
    println!("{report}");
    Ok(())
}
