//! `cargo xtask demo`: kube-xdp in front of three stand-in API servers, in
//! throw-away network namespaces; traffic, the inspection commands, a
//! backend failure and the failover, then everything is removed.

use kube_xdp_tests::{
    daemon::cli,
    e2e_util::{EchoConn, Pinger},
    pair::{PairBox, PairCluster, SNAT_ADDR},
    require_root,
    servers::{TcpServer, whoami},
    tls_server::{ReadyzServer, SelfSigned},
    topology::{CLIENT_ADDR, Cluster, LB_ADDR, VIP, backend_addr},
};
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

const BACKENDS: usize = 3;
/// `stats_listen = "8404"`: the stats page on the LB's loopback.
const STATS: &str = "127.0.0.1:8404";
const STATS_URL: &str = "http://127.0.0.1:8404/stats";

fn config() -> String {
    let mut s = format!(
        r#"[[service]]
name = "kube-apiserver"
vip = "{VIP}"
port = 6443
on_backend_down = "keep"

[service.health_check]
kind = "https"            # like kubeadm's HAProxy example: GET /readyz over TLS, verify none
path = "/readyz"
port = 8443               # the stand-ins serve /readyz on 8443
tls_verify = false
interval = "500ms"
timeout = "300ms"
fall = 3
rise = 2
"#
    );
    for i in 0..BACKENDS {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"apiserver-{i}\"\naddress = \"{}\"\n",
            backend_addr(i)
        ));
    }
    s
}

/// `GET /stats.json` from the LB namespace: its status line and the
/// backends it shows UP.
fn stats_json(c: &Cluster) -> anyhow::Result<String> {
    c.lb.run(|| {
        let mut s = TcpStream::connect_timeout(&STATS.parse()?, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "GET /stats.json HTTP/1.1\r\nHost: {STATS}\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head.lines().next().unwrap_or("").to_owned();
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let t = &json["totals"];
        Ok(format!(
            "{status}; {} of {} backends UP, {} new flows, HA {}",
            t["backends_up"], t["backends_total"], t["new_flows"], json["ha"]["state"]
        ))
    })
}

fn section(title: &str) {
    println!("\n━━ {title}");
}

fn show(c: &Cluster, args: &[&str]) -> anyhow::Result<()> {
    let config = c.config.to_str().unwrap();
    println!("\n$ kube-xdp {} --config {config}", args.join(" "));
    let mut full = args.to_vec();
    full.extend(["--config", config]);
    let out = cli(&c.lb, &full)?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn states(c: &Cluster) -> anyhow::Result<Vec<String>> {
    let out = cli(
        &c.lb,
        &["backends", "--json", "--config", c.config.to_str().unwrap()],
    )?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v[0]["backends"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    format!(
                        "{}={}",
                        b["name"].as_str().unwrap_or("?"),
                        b["state"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// `n` short connections from the client; how many reached each backend.
fn traffic(c: &Cluster, n: usize) -> anyhow::Result<(BTreeMap<String, usize>, usize)> {
    let vip: SocketAddr = format!("{VIP}:6443").parse()?;
    c.client.run(move || {
        let mut seen = BTreeMap::new();
        let mut failed = 0;
        for _ in 0..n {
            match whoami(vip, Duration::from_secs(2)) {
                Ok(name) => *seen.entry(name).or_insert(0) += 1,
                Err(_) => failed += 1,
            }
        }
        Ok((seen, failed))
    })
}

fn main() -> anyhow::Result<()> {
    require_root();
    println!(
        "kube-xdp demo: an XDP load balancer in front of three API servers, in network namespaces"
    );
    let c = Cluster::new(BACKENDS)?;

    section("Topology (one L2 segment, like a one-armed HAProxy box)");
    println!("  client        {CLIENT_ADDR}");
    println!(
        "  load balancer {LB_ADDR}, VIP {VIP} (a /32 on its eth0, as keepalived would put it)"
    );
    for i in 0..BACKENDS {
        println!(
            "  apiserver-{i}   {}  (TCP :6443 answers its name; HTTPS /readyz on :8443)",
            backend_addr(i)
        );
    }

    let cert = SelfSigned::new(&["kubernetes"])?;
    let mut apis = Vec::new();
    let mut readyz = Vec::new();
    for i in 0..BACKENDS {
        let a = backend_addr(i);
        apis.push(TcpServer::start(
            &c.backends[i],
            format!("{a}:6443").parse()?,
            &format!("apiserver-{i}"),
        )?);
        readyz.push(ReadyzServer::start(
            &c.backends[i],
            format!("{a}:8443").parse()?,
            &cert,
        )?);
    }

    section("Configuration");
    // The topology's [daemon] table, plus the stats page.
    std::fs::write(
        &c.config,
        format!(
            "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\n\
             snat_ports = \"20000-29999\"\nstats_listen = \"8404\"     # the stats page, on loopback\n\n{}",
            c.pins.path().display(),
            c.run_dir.display(),
            config()
        ),
    )?;
    print!("{}", std::fs::read_to_string(&c.config)?);
    show(&c, &["check-config"])?;

    section("Start the daemon");
    println!("$ kube-xdp run --config {}", c.config.display());
    let mut daemon = c.start_daemon()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    loop {
        let s = states(&c)?;
        if s.len() == BACKENDS && s.iter().all(|s| s.ends_with("=UP")) {
            println!(
                "health checks passed (rise 2 × 500 ms): all backends UP after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "backends did not come UP: {s:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    print!("{}", daemon.log());

    section("90 short connections from the client to the VIP");
    let (seen, failed) = traffic(&c, 90)?;
    for (name, n) in &seen {
        println!("  {name:<14} {n:>3} connections");
    }
    println!("  failed         {failed:>3}");
    show(&c, &["backends"])?;
    show(&c, &["stats"])?;

    section("A long-lived connection (like a kubectl watch), then `kube-xdp flows`");
    let vip: SocketAddr = format!("{VIP}:6443").parse()?;
    let watch = c.client.spawn(move || {
        let s = std::net::TcpStream::connect_timeout(&vip, Duration::from_secs(2))?;
        std::thread::sleep(Duration::from_secs(2));
        drop(s);
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let config = c.config.to_str().unwrap();
    println!("\n$ kube-xdp flows --config {config} | grep -e PROTO -e ESTABLISHED");
    let out = cli(&c.lb, &["flows", "--config", config])?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text
        .lines()
        .filter(|l| l.starts_with("PROTO") || l.contains("ESTABLISHED"))
    {
        println!("{line}");
    }
    println!(
        "({}; the short connections above linger as CLOSING for tcp_closing = 10s)",
        text.lines().last().unwrap_or("")
    );
    let _ = watch.join();

    section("apiserver-1 dies (its listeners close)");
    apis[1].stop();
    readyz[1].stop();
    let died = Instant::now();
    let deadline = died + Duration::from_secs(20);
    loop {
        let s = states(&c)?;
        if s.iter().any(|s| s == "apiserver-1=DOWN") {
            println!(
                "marked DOWN {:.1}s after it died (fall 3 × interval 500 ms); the daemon logged:",
                died.elapsed().as_secs_f64()
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "apiserver-1 not marked DOWN: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for line in daemon
        .log()
        .lines()
        .filter(|l| l.contains("apiserver-1 is"))
    {
        println!("  {line}");
    }
    let (seen, failed) = traffic(&c, 60)?;
    println!("60 new connections after the failover:");
    for (name, n) in &seen {
        println!("  {name:<14} {n:>3} connections");
    }
    println!("  failed         {failed:>3}");
    show(&c, &["backends"])?;

    section("Stats page");
    println!(
        "{STATS_URL} in the LB namespace (while the demo runs: \
         nsenter --net=/run/netns/{} chromium --headless --no-sandbox --dump-dom {STATS_URL})",
        c.lb.name()
    );
    let status = stats_json(&c)?;
    println!("GET /stats.json: {status}");

    section("Clean up");
    daemon.stop()?;
    println!(
        "daemon stopped (SIGTERM): the program stays attached and keeps forwarding until detach"
    );
    show(&c, &["detach"])?;
    drop(apis);
    drop(readyz);
    drop(c);
    println!("namespaces, links and pins removed.");
    println!(
        "On a load balancer with this configuration the stats page is at {STATS_URL} \
         (stats_listen = \"8404\"; see docs/observability.md#stats-page)."
    );

    pair()?;
    import_haproxy()?;
    println!("\nDone.");
    Ok(())
}

/// `kube-xdp ha` of one box of the pair, printed.
fn show_ha(p: &PairCluster, which: &PairBox, name: &str) -> anyhow::Result<()> {
    println!("$ kube-xdp ha   # on {name} ({})", which.addr);
    let out = cli(p.ns(which), &["ha", "--config", which.config_str()])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Waits (at most 10 s) for a box's state.
fn await_state(p: &PairCluster, which: &PairBox, state: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while p.state(which) != state {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "{} did not become {state}",
            which.addr
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(start.elapsed())
}

/// The pair: two kube-xdp boxes, VRRPv3 between them, flow sync; the
/// master dies and a long-lived connection carries on through the other.
fn pair() -> anyhow::Result<()> {
    section(
        "A pair of load balancers: the VIP fails over (VRRPv3, like keepalived) and connections survive (flow sync)",
    );
    let p = PairCluster::new(2)?;
    let servers: Vec<TcpServer> = (0..2)
        .map(|i| {
            let a = backend_addr(i);
            TcpServer::start(
                &p.c.backends[i],
                format!("{a}:6443").parse()?,
                &format!("apiserver-{i}"),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let service = format!(
        "[[service]]\nname = \"kube-apiserver\"\nvip = \"{VIP}\"\nport = 6443\n\n\
         [service.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nrise = 1\n\n\
         [[service.backend]]\nname = \"apiserver-0\"\naddress = \"{}\"\n\n\
         [[service.backend]]\nname = \"apiserver-1\"\naddress = \"{}\"\n",
        backend_addr(0),
        backend_addr(1)
    );
    let key = p.c.dir.path().join("sync.key");
    std::fs::write(&key, "ZGVtby1vbmx5LWtleS1tYWtlLXlvdXItb3duLTAxMjM0\n")?;
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let ha = |priority: u8| {
        format!(
            "virtual_router_id = 51\npriority = {priority}\nadvert_interval = \"100ms\"\nsync_key_file = \"{}\"",
            key.display()
        )
    };
    p.a.write_config(&ha(150), &service);
    p.b.write_config(&ha(100), &service);
    println!(
        "lb-a {} [ha] priority 150, lb-b {} priority 100; virtual_router_id 51, advert_interval 100ms, snat_address {SNAT_ADDR}, sync_key_file (flow sync on udp 9438)",
        p.a.addr, p.b.addr
    );
    let mut a = p.start(&p.a)?;
    let b = p.start(&p.b)?;
    await_state(&p, &p.a, "MASTER")?;
    await_state(&p, &p.b, "BACKUP")?;
    std::thread::sleep(Duration::from_millis(300));
    // A long-lived connection (like `kubectl logs -f`) through lb-a: a
    // line every 50 ms, echoed.
    let conn = EchoConn::open(&p.c, format!("{VIP}:6443").parse()?)?;
    let server = conn.name.clone();
    let mut pinger = Pinger::start(conn, Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(500));
    show_ha(&p, &p.a, "lb-a")?;
    show_ha(&p, &p.b, "lb-b")?;
    println!(
        "a long-lived connection client → {VIP}:6443 → {server} through lb-a: {} lines echoed",
        pinger.ok()
    );
    println!("\n$ kill -9 <lb-a's daemon>; ip link set eth0 down   # on lb-a: the box is gone");
    a.signal(libc::SIGKILL);
    p.c.lb.ip(&["link", "set", "eth0", "down"])?;
    let before = pinger.ok();
    let took = await_state(&p, &p.b, "MASTER")?;
    println!(
        "lb-b is MASTER after {} ms (Master_Down 361 ms)",
        took.as_millis()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (echoed, failure) = pinger.finish();
    match failure {
        None => println!(
            "the long-lived connection carried on through lb-b: {} more lines echoed, none lost \
             (lb-b had lb-a's flow from the sync)",
            echoed - before
        ),
        Some(f) => println!("the long-lived connection broke: {f}"),
    }
    show_ha(&p, &p.b, "lb-b")?;
    let _ = a.stop();
    drop(b);
    drop(servers);
    drop(p);
    println!("the pair's namespaces, links and pins removed.");
    Ok(())
}

/// The migration's first step: the kubeadm guide's haproxy.cfg (its
/// variables filled in) as kube-xdp.toml, with the summary of what was
/// translated, approximated and left out.
fn import_haproxy() -> anyhow::Result<()> {
    section("From HAProxy: import the kubeadm guide's haproxy.cfg");
    let cfg =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/haproxy/kubeadm-guide.cfg");
    let env = std::fs::read_to_string(cfg.with_extension("env"))?;
    let vars: Vec<(&str, &str)> = env.lines().filter_map(|l| l.split_once('=')).collect();
    println!(
        "$ {} kube-xdp import-haproxy {} --vip 198.18.0.10",
        vars.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        cfg.display()
    );
    let out = std::process::Command::new(kube_xdp_tests::daemon::binary())
        .args([
            "import-haproxy",
            cfg.to_str().unwrap(),
            "--vip",
            "198.18.0.10",
        ])
        .envs(vars)
        .output()?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
    anyhow::ensure!(out.status.success(), "import-haproxy failed");
    Ok(())
}
