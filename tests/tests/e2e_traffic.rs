//! End to end: traffic of every kind through the VIP — HTTPS `/readyz`
//! checks deciding who gets new connections, garbage frames at the VIP,
//! a UDP service with a fragmented datagram, and 30 s of back-to-back
//! short connections (SNAT port reuse against the backends' TIME_WAIT).
//! What a client observes, plus the kernel's own counters.
//!
//! The tests of this file take a lock so that they run one at a time:
//! two of them load the machine (30 s of connections as fast as they go,
//! thousands of raw frames), and the others use 100 ms check timeouts
//! that a 2-core machine under that load could miss.

use kube_xdp_tests::{
    daemon::cli,
    e2e_util::{
        Service, alive, backend, backend_list, connect_many, daemon_pid, states, states_by_name,
        try_connect, vip, wait_all_up, wait_for, wait_out_of_pool, wait_state,
    },
    fuzz::{GARBAGE_KINDS, GarbageAim, Rng, garbage_frame},
    netns::Netns,
    require_root,
    servers::{TcpServer, UdpServer, whoami},
    tls_server::{ReadyzServer, SelfSigned},
    topology::{CLIENT_ADDR, Cluster, VIP},
};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// One test of this file at a time (see the module comment).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One TCP server per backend on `port`, named `cpI`.
fn tcp_servers(c: &Cluster, port: u16) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| TcpServer::start(&c.backends[i], backend(i, port), &format!("cp{i}")).unwrap())
        .collect()
}

/// `kube-xdp stats --json` from the LB namespace.
fn stats(c: &Cluster) -> serde_json::Value {
    let out = cli(
        &c.lb,
        &["stats", "--json", "--config", c.config.to_str().unwrap()],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "kube-xdp stats failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-xdp stats --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The global counters of a `stats --json` answer.
fn counters(v: &serde_json::Value) -> BTreeMap<String, u64> {
    v["counters"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// The counters that moved between two readings, as "name +delta".
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| format!("{k} +{d}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Absolute values of kernel SNMP counters in a namespace (`nstat -a -z
/// -s`: absolute, zeros too, history file left alone). Names the kernel
/// does not have are absent from the answer.
fn nstat(ns: &Netns, names: &[&str]) -> HashMap<String, u64> {
    let mut args = vec!["-a", "-z", "-s"];
    args.extend_from_slice(names);
    let out = ns.exec("nstat", &args).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>, name: &str) -> u64 {
    after
        .get(name)
        .copied()
        .unwrap_or(0)
        .saturating_sub(before.get(name).copied().unwrap_or(0))
}

/// A link's MAC address in a namespace (`ip -j link show`).
fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns.ip(&["-j", "link", "show", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v[0]["address"].as_str().unwrap().to_owned();
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    bytes
        .try_into()
        .unwrap_or_else(|_| panic!("not a MAC: {text}"))
}

fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: a valid fd and a pointer to a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

// ─── 7. HTTPS /readyz checks ─────────────────────────────────────────────

/// The apiserver service, checked with `GET /readyz` over TLS on 8443.
fn readyz_service(backends: usize) -> Service {
    Service::apiserver(backends)
        .check("kind", "\"https\"")
        .check("path", "\"/readyz\"")
        .check("port", "8443")
        .check("interval", "\"200ms\"")
        .check("timeout", "\"100ms\"")
        .check("fall", "2")
        .check("rise", "2")
}

/// A stand-in API server per backend: TCP :6443 answering its name and
/// HTTPS /readyz on :8443.
fn apiservers_with_readyz(c: &Cluster, cert: &SelfSigned) -> (Vec<TcpServer>, Vec<ReadyzServer>) {
    let api = tcp_servers(c, 6443);
    let readyz = (0..c.backends.len())
        .map(|i| ReadyzServer::start(&c.backends[i], backend(i, 8443), cert).unwrap())
        .collect();
    (api, readyz)
}

#[test]
fn https_readyz_500_marks_a_backend_down_while_its_port_stays_open() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(3).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let (_api, readyz) = apiservers_with_readyz(&c, &cert);
    c.write_config(&readyz_service(3).check("tls_verify", "false").toml())
        .unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let timeout = Duration::from_secs(3);
    let seen = connect_many(&c, vip(6443), 30, timeout)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert!(seen.contains_key("cp1"), "cp1 serves at first: {seen:?}");

    // cp1's /readyz answers 500 (an apiserver shutting down, or with
    // etcd gone): its :6443 stays open.
    let start = Instant::now();
    readyz[1].ready.store(false, Ordering::Relaxed);
    let took = wait_state(&c, "cp1", "DOWN", Duration::from_secs(5));
    wait_out_of_pool(&c, "cp1", Duration::from_secs(5));
    eprintln!(
        "cp1 DOWN {took:?} after /readyz turned 500, out of the table after {:?}",
        start.elapsed()
    );
    let s = states_by_name(&c);
    assert_eq!(
        (s["cp0"].as_str(), s["cp1"].as_str(), s["cp2"].as_str()),
        ("UP", "DOWN", "UP"),
        "only cp1 is DOWN"
    );
    // The port itself is open: a direct connection from the client works.
    let direct = c
        .client
        .run(move || Ok(whoami(backend(1, 6443), Duration::from_secs(3))?))
        .unwrap_or_else(|e| panic!("cp1:6443 should still accept: {e:#}"));
    assert_eq!(direct, "cp1");
    let seen = connect_many(&c, vip(6443), 30, timeout).unwrap_or_else(|e| {
        panic!(
            "a new connection failed with cp1 DOWN: {e:#}\n{}",
            daemon.log()
        )
    });
    assert_eq!(seen.values().sum::<usize>(), 30);
    assert!(
        !seen.contains_key("cp1"),
        "the backend whose /readyz fails got new connections: {seen:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("cp1") && log.contains("DOWN"),
        "the daemon logs cp1's state change:\n{log}"
    );

    // /readyz answers 200 again: cp1 comes back.
    readyz[1].ready.store(true, Ordering::Relaxed);
    let took = wait_state(&c, "cp1", "UP", Duration::from_secs(5));
    eprintln!("cp1 UP {took:?} after /readyz turned 200");
    // Wait until the table holds it again before counting.
    let back = wait_for(Duration::from_secs(5), || {
        backend_list(&c)
            .iter()
            .any(|b| b["name"] == "cp1" && b["share"].as_f64().is_some_and(|s| s > 0.0))
    });
    assert!(
        back.is_some(),
        "cp1 back in the table: {:?}",
        backend_list(&c)
    );
    let seen = connect_many(&c, vip(6443), 60, timeout)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 60);
    assert!(
        seen.get("cp1").copied().unwrap_or(0) >= 1,
        "cp1 gets connections again: {seen:?}"
    );
}

#[test]
fn https_check_verifying_the_ca_file_and_server_name_brings_backends_up() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(3).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let (_api, _readyz) = apiservers_with_readyz(&c, &cert);
    let ca = c.dir.path().join("ca.crt");
    std::fs::write(&ca, &cert.pem).unwrap();
    c.write_config(
        &readyz_service(3)
            .check("tls_verify", "true")
            .check("ca_file", &format!("\"{}\"", ca.display()))
            .check("server_name", "\"kubernetes\"")
            .toml(),
    )
    .unwrap();
    let daemon = c.start_daemon().unwrap();
    let mut last = Vec::new();
    let took = wait_for(Duration::from_secs(10), || {
        last = states(&c);
        last.len() == 3 && last.iter().all(|s| s == "UP")
    });
    assert!(
        took.is_some(),
        "backends not all UP with a verified certificate: {last:?}\n{}",
        daemon.log()
    );
    let seen = connect_many(&c, vip(6443), 30, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 30);
}

#[test]
fn https_check_with_a_server_name_the_certificate_lacks_keeps_backends_down() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(2).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let (_api, _readyz) = apiservers_with_readyz(&c, &cert);
    let ca = c.dir.path().join("ca.crt");
    std::fs::write(&ca, &cert.pem).unwrap();
    c.write_config(
        &readyz_service(2)
            .check("tls_verify", "true")
            .check("ca_file", &format!("\"{}\"", ca.display()))
            .check("server_name", "\"not-kubernetes.example\"")
            .toml(),
    )
    .unwrap();
    let daemon = c.start_daemon().unwrap();
    // 2 s is ten check intervals: rise = 2 would have passed long ago.
    let up = wait_for(Duration::from_secs(2), || {
        states(&c).iter().any(|s| s == "UP")
    });
    assert!(
        up.is_none(),
        "a backend came UP though its certificate does not name the server_name: {:?}\n{}",
        states(&c),
        daemon.log()
    );
    // No usable backend: a client is refused at once, not left hanging.
    let (r, took) = try_connect(&c, vip(6443), Duration::from_secs(3));
    assert!(
        r.as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused),
        "connection with every backend DOWN: {r:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
}

// ─── 8. Garbage at the VIP ───────────────────────────────────────────────

/// An AF_PACKET socket that sends frames out of `dev` in the calling
/// thread's namespace (it receives nothing: protocol 0).
fn packet_socket(dev: &str) -> anyhow::Result<OwnedFd> {
    // SAFETY: plain socket call; the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    anyhow::ensure!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(dev)?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(ifindex != 0, "no interface {dev}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid fd and a sockaddr_ll of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(
        r == 0,
        "binding to {dev}: {}",
        std::io::Error::last_os_error()
    );
    Ok(fd)
}

#[test]
fn garbage_at_the_vip_leaves_the_daemon_alive_and_connections_working() {
    require_root();
    let _serial = serial();
    const FRAMES: usize = 5_000;
    const SEED: u64 = 0x6b75_6265_2d78_6470; // "kube-xdp"
    let c = Cluster::new(3).unwrap();
    let _api = tcp_servers(&c, 6443);
    let _dns: Vec<UdpServer> = (0..3)
        .map(|i| UdpServer::start(&c.backends[i], backend(i, 5353), &format!("cp{i}")).unwrap())
        .collect();
    // TCP 6443 and a UDP service on 5353 (checked on 6443), so that both
    // transport parsers see the garbage.
    let mut dns = Service::apiserver(3).with("protocol = \"udp\"");
    dns.name = "dns".into();
    dns.ports = "port = 5353".into();
    dns = dns.check("port", "6443");
    c.write_config(&format!("{}\n{}", Service::apiserver(3).toml(), dns.toml()))
        .unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let pid = daemon_pid(&c).expect("the daemon writes its pid file");
    assert!(alive(pid));
    connect_many(&c, vip(6443), 5, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));

    let aim = GarbageAim {
        lb_mac: mac_of(&c.lb, "eth0"),
        client_mac: mac_of(&c.client, "eth0"),
        client: CLIENT_ADDR.parse::<Ipv4Addr>().unwrap().octets(),
        vip: VIP.parse::<Ipv4Addr>().unwrap().octets(),
        tcp_port: 6443,
        udp_port: 5353,
    };
    let backend_names = [
        "IpInHdrErrors",
        "IpExtInCsumErrors",
        "TcpInCsumErrors",
        "UdpInCsumErrors",
    ];
    let backends_before: Vec<_> = c
        .backends
        .iter()
        .map(|b| nstat(b, &backend_names))
        .collect();
    let before = counters(&stats(&c));

    let start = Instant::now();
    let (sent, refused, per_kind) = c
        .client
        .run(move || {
            let fd = packet_socket("eth0")?;
            let mut rng = Rng(SEED);
            let (mut sent, mut refused) = (0usize, 0usize);
            let mut per_kind = [0usize; GARBAGE_KINDS.len()];
            for i in 0..FRAMES {
                let kind = rng.below(GARBAGE_KINDS.len() as u64) as usize;
                let frame = garbage_frame(&mut rng, kind, &aim);
                // SAFETY: a valid fd and buffer of that length.
                let r =
                    unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                if r == frame.len() as isize {
                    sent += 1;
                    per_kind[kind] += 1;
                } else {
                    refused += 1;
                }
                // Bursts of 250, so the veth queue does not just drop them.
                if i % 250 == 249 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok((sent, refused, per_kind))
        })
        .unwrap();
    eprintln!(
        "sent {sent} garbage frames (seed {SEED:#x}) in {:?}; {refused} refused by the local kernel",
        start.elapsed()
    );
    for (kind, n) in GARBAGE_KINDS.iter().zip(per_kind) {
        eprintln!("  {n:>5} {kind}");
    }
    assert!(sent >= FRAMES * 9 / 10, "most frames were sent: {sent}");
    // Let the last frames (and the replies they caused) pass.
    std::thread::sleep(Duration::from_millis(500));

    assert!(
        alive(pid),
        "the daemon died under garbage:\n{}",
        daemon.log()
    );
    let after = counters(&stats(&c));
    eprintln!("datapath counters moved: {}", moved(&before, &after));
    let malformed = after["malformed"] - before["malformed"];
    assert!(
        malformed > 0,
        "the malformed counter did not move: {}",
        moved(&before, &after)
    );
    for (i, b) in c.backends.iter().enumerate() {
        let now = nstat(b, &backend_names);
        let d: Vec<String> = backend_names
            .iter()
            .map(|n| format!("{n} +{}", delta(&backends_before[i], &now, n)))
            .collect();
        eprintln!("backend cp{i} kernel: {}", d.join(", "));
    }

    // Health checks still run, and clients still get through.
    assert_eq!(states(&c), ["UP", "UP", "UP"], "{}", daemon.log());
    let seen = connect_many(&c, vip(6443), 30, Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!(
            "a connection failed after the garbage: {e:#}\n{}",
            daemon.log()
        )
    });
    assert_eq!(seen.values().sum::<usize>(), 30);
    let replies = c
        .client
        .run(|| {
            let sock = UdpSocket::bind(format!("{CLIENT_ADDR}:0"))?;
            sock.set_read_timeout(Some(Duration::from_secs(2)))?;
            let mut buf = [0u8; 128];
            let mut replies = Vec::new();
            for _ in 0..5 {
                sock.send_to(b"after the garbage", vip(5353))?;
                let (n, from) = sock.recv_from(&mut buf)?;
                replies.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            }
            Ok(replies)
        })
        .unwrap_or_else(|e| panic!("UDP after the garbage: {e:#}\n{}", daemon.log()));
    for (text, from) in &replies {
        assert_eq!(*from, vip(5353), "{replies:?}");
        assert!(text.ends_with(" 17"), "{replies:?}");
    }
    assert!(alive(pid), "the daemon is still alive at the end");
    let log = daemon.log();
    assert!(!log.contains("panicked"), "{log}");
}

// ─── 9. UDP service, fragments ───────────────────────────────────────────

/// Sends `len` bytes to VIP:5353 and returns the reply and its source.
fn udp_ask(sock: &UdpSocket, len: usize) -> std::io::Result<(String, SocketAddr)> {
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    sock.send_to(&payload, vip(5353))?;
    let mut buf = [0u8; 256];
    let (n, from) = sock.recv_from(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

/// A client UDP socket on an ephemeral port that lets the kernel fragment
/// datagrams larger than the MTU (`IP_PMTUDISC_DONT`).
fn udp_client() -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(format!("{CLIENT_ADDR}:0"))?;
    setsockopt_int(
        sock.as_raw_fd(),
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DONT,
    )?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(sock)
}

#[test]
fn udp_service_forwards_datagrams_and_a_fragmented_one_arrives_whole() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(3).unwrap();
    let _health = tcp_servers(&c, 8080);
    let _dns: Vec<UdpServer> = (0..3)
        .map(|i| UdpServer::start(&c.backends[i], backend(i, 5353), &format!("cp{i}")).unwrap())
        .collect();
    let mut service = Service::apiserver(3)
        .with("protocol = \"udp\"")
        .check("port", "8080");
    service.name = "dns".into();
    service.ports = "port = 5353".into();
    c.write_config(&service.toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let before = counters(&stats(&c));

    // 12 client sockets, 5 datagrams each: every reply comes from
    // VIP:5353, every socket (a flow) sticks to one backend, and the
    // sockets spread over more than one.
    let per_socket = c
        .client
        .run(|| {
            let mut per_socket = Vec::new();
            for s in 0..12 {
                let sock = udp_client()?;
                let mut names = Vec::new();
                for d in 0..5 {
                    let len = 10 + 100 * d;
                    let (text, from) = udp_ask(&sock, len).map_err(|e| {
                        anyhow::anyhow!("socket {s} datagram {d} ({len} bytes): {e}")
                    })?;
                    anyhow::ensure!(
                        from == vip(5353),
                        "the reply came from {from}, not the VIP: {text:?}"
                    );
                    let (name, n) = text
                        .split_once(' ')
                        .ok_or_else(|| anyhow::anyhow!("reply {text:?}"))?;
                    anyhow::ensure!(n == len.to_string(), "reply {text:?} for {len} bytes");
                    names.push(name.to_owned());
                }
                per_socket.push(names);
            }
            Ok(per_socket)
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    for names in &per_socket {
        assert!(
            names.iter().all(|n| *n == names[0]),
            "a flow changed backend: {per_socket:?}"
        );
    }
    let backends: HashSet<&String> = per_socket.iter().map(|n| &n[0]).collect();
    assert!(backends.len() >= 2, "flows spread: {per_socket:?}");

    // One datagram larger than the MTU (1500): the client's kernel sends
    // it in fragments, the backend must get all of them, translated, and
    // reassemble 4000 bytes. Once on a flow that already exists, once as
    // the first datagram of a new flow; once more with 20,000 bytes.
    let big = c
        .client
        .run(|| {
            let mut out = Vec::new();
            let sock = udp_client()?;
            let (first, _) = udp_ask(&sock, 100).map_err(|e| anyhow::anyhow!("100 bytes: {e}"))?;
            let (text, from) =
                udp_ask(&sock, 4000).map_err(|e| anyhow::anyhow!("4000 bytes, known flow: {e}"))?;
            out.push((first.clone(), text, from));
            let fresh = udp_client()?;
            let (text, from) =
                udp_ask(&fresh, 4000).map_err(|e| anyhow::anyhow!("4000 bytes, new flow: {e}"))?;
            out.push((String::new(), text, from));
            let (text, from) = udp_ask(&fresh, 20_000)
                .map_err(|e| anyhow::anyhow!("20000 bytes, new flow: {e}"))?;
            out.push((String::new(), text, from));
            Ok(out)
        })
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\ncounters moved: {}\n{}",
                moved(&before, &counters(&stats(&c))),
                daemon.log()
            )
        });
    eprintln!("large datagrams: {big:?}");
    let (first, text, from) = &big[0];
    assert_eq!(*from, vip(5353));
    let name = first.split(' ').next().unwrap();
    assert_eq!(*text, format!("{name} 4000"), "the same backend, whole");
    assert_eq!(big[1].2, vip(5353));
    assert!(big[1].1.ends_with(" 4000"), "{big:?}");
    assert_eq!(big[2].2, vip(5353));
    assert!(big[2].1.ends_with(" 20000"), "{big:?}");
    let after = counters(&stats(&c));
    eprintln!("datapath counters moved: {}", moved(&before, &after));
    // 4000 bytes are 3 fragments (2 after the first), 20000 are 14.
    let later = after["fragment_translated"] - before["fragment_translated"];
    assert!(later >= 2 + 2 + 13, "later fragments translated: {later}");
    assert_eq!(after["fragment_orphan"], before["fragment_orphan"]);
}

// ─── 10. Sustained short connections ─────────────────────────────────────

/// Who closes a short connection first, and so holds its TIME_WAIT.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Closer {
    /// The client reads the name and closes; the server closes on EOF.
    Client,
    /// The server writes its name and closes at once (like an HTTP server
    /// answering `Connection: close`); the client reads to EOF.
    Server,
}

/// A single-threaded short-connection server: writes its name and a
/// newline on accept, then closes as `closer` says. Stopped on drop.
struct ShortServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ShortServer {
    fn start(ns: &Netns, addr: SocketAddr, name: &str, closer: Closer) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let line = format!("{name}\n").into_bytes();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            let _ = tx.send(());
            let mut open: Vec<TcpStream> = Vec::new();
            let mut buf = [0u8; 256];
            while !flag.load(Ordering::Relaxed) {
                let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
                    .chain(open.iter().map(AsRawFd::as_raw_fd))
                    .map(|fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: a valid array of pollfd of that length.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
                // Connections that said something or closed: read; at EOF
                // (or an error) close them.
                let mut keep = Vec::with_capacity(open.len());
                for (mut stream, pfd) in open.drain(..).zip(&fds[1..]) {
                    if pfd.revents == 0 {
                        keep.push(stream);
                        continue;
                    }
                    match stream.read(&mut buf) {
                        Ok(0) => {}
                        Ok(_) => keep.push(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => keep.push(stream),
                        Err(_) => {}
                    }
                }
                open = keep;
                if fds[0].revents != 0 {
                    for _ in 0..1024 {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                let _ = stream.set_nonblocking(true);
                                if stream.write_all(&line).is_err() {
                                    continue;
                                }
                                if closer == Closer::Client {
                                    open.push(stream);
                                }
                                // Closer::Server: dropped here, FIN at once.
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("short server on {addr} did not start"))?;
        Ok(ShortServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ShortServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blocking TCP connection from `src` (its port chosen at connect time,
/// so ports in TIME_WAIT towards other destinations stay usable), with
/// `timeout` on the connect.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket call; the fd is owned at once by the stream.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid fd and a timeval of that size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sockaddr = |a: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr(src, 0);
    // SAFETY: a valid fd and a sockaddr_in of that size.
    if unsafe { libc::bind(fd, (&raw const local).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let remote = sockaddr(*dst.ip(), dst.port());
    // SAFETY: as above. A blocking connect honours SO_SNDTIMEO.
    if unsafe { libc::connect(fd, (&raw const remote).cast(), len) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "connect timed out",
            ));
        }
        return Err(e);
    }
    Ok(stream)
}

/// One short connection: connect, read the name line, close as `closer`
/// says. Returns the name.
fn short_connection(src: Ipv4Addr, dst: SocketAddrV4, closer: Closer) -> std::io::Result<String> {
    let timeout = Duration::from_secs(3);
    let mut stream = connect_from(src, dst, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while !buf[..got].contains(&b'\n') {
        if got == buf.len() {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "no newline"));
        }
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed before naming itself",
            ));
        }
        got += n;
    }
    if closer == Closer::Server {
        // Read to the server's FIN, so that the server closed first.
        let mut rest = [0u8; 16];
        if stream.read(&mut rest)? != 0 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "more than the name",
            ));
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    Ok(line.trim().to_owned())
}

/// What one client thread saw.
#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: u64,
    /// Connections that took more than 900 ms (a SYN retransmit waits 1 s).
    slow: u64,
    max: Duration,
    errors: Vec<String>,
    names: HashMap<String, u64>,
}

const CLIENT_THREADS: usize = 3;
const RUN: Duration = Duration::from_secs(30);

/// The client's source address of thread `i`: extra addresses of the
/// client host (198.18.0.101 and up), so that the client's own TIME_WAIT
/// sockets (when it closes first) do not run it out of ports.
fn client_source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 101 + i as u8)
}

/// Counts a namespace's TIME_WAIT sockets (`/proc/net/sockstat`'s `tw`).
fn time_wait(ns: &Netns) -> u64 {
    let out = ns.exec("cat", &["/proc/net/sockstat"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "tw")?;
            words.get(i + 1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Drop and error counters of every link on the path: the LB's eth0 and
/// the bridge's ports (`ethtool -S`: veth queues, XDP), as "NS/DEV name".
fn link_drops(c: &Cluster) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut read = |ns: &Netns, dev: &str| {
        let Ok(o) = ns.exec("ethtool", &["-S", dev]) else {
            return;
        };
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            let Some((k, v)) = line.trim().split_once(':') else {
                continue;
            };
            if (k.contains("drop") || k.contains("error"))
                && let Ok(v) = v.trim().parse::<u64>()
            {
                out.insert(format!("{dev} {k}"), v);
            }
        }
    };
    read(&c.lb, "eth0");
    read(&c.client, "eth0");
    for (i, b) in c.backends.iter().enumerate() {
        read(b, "eth0");
        read(&c.bridge, &format!("pb{i}"));
    }
    read(&c.bridge, "plb");
    read(&c.bridge, "pclient");
    out
}

/// Packets the host dropped because a CPU's input backlog was full
/// (`/proc/net/softnet_stat`, second column, summed over CPUs). Veth
/// peers without XDP deliver through that backlog, so this is where the
/// namespace topology loses packets under load; it counts for every
/// namespace of the host.
fn softnet_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

/// `ss -Htan state time-wait` in a namespace: the number of lines.
fn ss_time_wait(ns: &Netns) -> usize {
    let out = ns
        .exec("ss", &["-H", "-t", "-a", "-n", "state", "time-wait"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Writes the configuration like [`Cluster::write_config`], with `daemon`
/// (more `[daemon]` lines) instead of the harness's `snat_ports`.
fn write_config_with(c: &Cluster, daemon: &str, services: &str) {
    std::fs::write(
        &c.config,
        format!(
            "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\n{daemon}\n\n{services}",
            c.pins.path().display(),
            c.run_dir.display()
        ),
    )
    .unwrap();
}

/// Health checks that a 2-core machine at full load does not fail: a
/// 100 ms timeout is missed when the host's input backlog drops a check's
/// SYN (its retransmit comes 1 s later), and a flapping check is not
/// what the load tests are about.
fn patient_checks(service: Service) -> Service {
    service
        .check("interval", "\"2s\"")
        .check("timeout", "\"1500ms\"")
        .check("fall", "3")
}

/// The daemon's log lines about backends going DOWN.
fn down_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" is DOWN")).collect()
}

/// Gives the client the source addresses of `threads` load threads and a
/// wide port range, and makes one connection from each.
fn prepare_client(c: &Cluster, threads: usize, closer: Closer) -> anyhow::Result<()> {
    for i in 0..threads {
        c.client.ip(&[
            "addr",
            "add",
            &format!("{}/32", client_source(i)),
            "dev",
            "eth0",
        ])?;
    }
    c.client
        .sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
    let dst = SocketAddrV4::new(VIP.parse().unwrap(), 6443);
    for i in 0..threads {
        let src = client_source(i);
        c.client
            .run(move || Ok(short_connection(src, dst, closer)?))
            .map_err(|e| anyhow::anyhow!("warm-up from {src}: {e:#}"))?;
    }
    Ok(())
}

/// `threads` client threads making short connections to VIP:6443 for
/// `run`, as fast as they go or, with `rate`, paced to that many
/// connections per second in all. Returns what each saw and how long it
/// took.
fn short_connection_load(
    c: &Cluster,
    closer: Closer,
    threads: usize,
    run: Duration,
    rate: Option<f64>,
) -> (Vec<Tally>, Duration) {
    let dst = SocketAddrV4::new(VIP.parse().unwrap(), 6443);
    let start = Instant::now();
    let deadline = start + run;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let src = client_source(i);
            c.client.spawn(move || {
                let mut t = Tally::default();
                // Bounded by the deadline, and in count.
                for k in 0..5_000_000u64 {
                    if let Some(rate) = rate {
                        // Connection k of this thread is due at
                        // (k × threads + i) / rate.
                        let due = start
                            + Duration::from_secs_f64(
                                (k as f64 * threads as f64 + i as f64) / rate,
                            );
                        if due >= deadline {
                            break;
                        }
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    let began = Instant::now();
                    let r = short_connection(src, dst, closer);
                    let took = began.elapsed();
                    t.max = t.max.max(took);
                    if took > Duration::from_millis(900) {
                        t.slow += 1;
                    }
                    match r {
                        Ok(name) => {
                            t.ok += 1;
                            *t.names.entry(name).or_default() += 1;
                        }
                        Err(e) => {
                            t.failed += 1;
                            if t.errors.len() < 10 {
                                t.errors.push(format!(
                                    "{src} after {:?}: {e} ({:?}, took {took:?})",
                                    start.elapsed(),
                                    e.kind()
                                ));
                            }
                        }
                    }
                }
                Ok(t)
            })
        })
        .collect();
    let tallies = handles
        .into_iter()
        .map(|t| t.join().expect("client thread panicked").unwrap())
        .collect();
    (tallies, start.elapsed())
}

fn sustained_short_connections(closer: Closer) {
    require_root();
    let _serial = serial();
    let c = Cluster::new(3).unwrap();
    let _servers: Vec<ShortServer> = (0..3)
        .map(|i| {
            ShortServer::start(&c.backends[i], backend(i, 6443), &format!("cp{i}"), closer).unwrap()
        })
        .collect();
    // The product's default snat_ports (10000-32767: 22,768 ports per
    // backend), not the harness's 10,000: this test is about TIME_WAIT,
    // not about the SNAT capacity (see
    // `new_connections_at_70_percent_of_the_stated_snat_capacity_are_never_refused`).
    write_config_with(&c, "", &patient_checks(Service::apiserver(3)).toml());
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    prepare_client(&c, CLIENT_THREADS, closer)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));

    let client_names = [
        "TcpExtTCPSynRetrans",
        "TcpRetransSegs",
        "TcpActiveOpens",
        "TcpAttemptFails",
        "TcpOutRsts",
        "TcpExtTW",
    ];
    let backend_names = [
        "TcpExtPAWSTimewait",
        "TcpExtPAWSEstab",
        "TcpExtTWRecycled",
        "TcpExtTWKilled",
        "TcpExtTW",
        "TcpPassiveOpens",
        "TcpExtTCPTimeWaitOverflow",
        "TcpExtTCPChallengeACK",
        "TcpExtTCPSYNChallenge",
        "TcpExtTCPACKSkippedTimeWait",
        "TcpExtTCPSynRetrans",
        "TcpEstabResets",
        "TcpOutRsts",
        "TcpRetransSegs",
    ];
    let links_before = link_drops(&c);
    let softnet_before = softnet_drops();
    let client_before = nstat(&c.client, &client_names);
    let backends_before: Vec<_> = c
        .backends
        .iter()
        .map(|b| nstat(b, &backend_names))
        .collect();
    let dp_before = counters(&stats(&c));

    // Sample the backends' TIME_WAIT sockets while the run lasts.
    let done = Arc::new(AtomicBool::new(false));
    let max_tw: Arc<Vec<AtomicU64>> = Arc::new((0..3).map(|_| AtomicU64::new(0)).collect());
    let sampler = {
        let paths: Vec<std::path::PathBuf> = c.backends.iter().map(Netns::path).collect();
        let (done, max_tw) = (done.clone(), max_tw.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + RUN + Duration::from_secs(20);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                for (i, path) in paths.iter().enumerate() {
                    let out = std::process::Command::new("nsenter")
                        .arg(format!("--net={}", path.display()))
                        .args(["--", "cat", "/proc/net/sockstat"])
                        .output();
                    let tw = out
                        .ok()
                        .and_then(|o| {
                            let text = String::from_utf8_lossy(&o.stdout).into_owned();
                            let line = text.lines().find(|l| l.starts_with("TCP:"))?.to_owned();
                            let words: Vec<&str> = line.split_whitespace().collect();
                            let p = words.iter().position(|w| *w == "tw")?;
                            words.get(p + 1)?.parse::<u64>().ok()
                        })
                        .unwrap_or(0);
                    max_tw[i].fetch_max(tw, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };

    let (tallies, elapsed) = short_connection_load(&c, closer, CLIENT_THREADS, RUN, None);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();

    let client_after = nstat(&c.client, &client_names);
    let backends_after: Vec<_> = c
        .backends
        .iter()
        .map(|b| nstat(b, &backend_names))
        .collect();
    let dp_after = counters(&stats(&c));
    let links_after = link_drops(&c);
    let softnet = softnet_drops().saturating_sub(softnet_before);
    let tw_now: Vec<usize> = c.backends.iter().map(ss_time_wait).collect();
    let client_tw = time_wait(&c.client);

    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let failed: u64 = tallies.iter().map(|t| t.failed).sum();
    let slow: u64 = tallies.iter().map(|t| t.slow).sum();
    let max = tallies.iter().map(|t| t.max).max().unwrap_or_default();
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    for t in &tallies {
        for (n, k) in &t.names {
            *names.entry(n.clone()).or_default() += k;
        }
    }
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    let syn_retrans = delta(&client_before, &client_after, "TcpExtTCPSynRetrans");
    let retrans = delta(&client_before, &client_after, "TcpRetransSegs");
    eprintln!(
        "{closer:?} closes first: {ok} connections in {elapsed:.1?} from {CLIENT_THREADS} threads = {:.0}/s; \
         {failed} failed, {slow} over 900 ms, slowest {max:?}; per backend {names:?}",
        ok as f64 / elapsed.as_secs_f64()
    );
    eprintln!(
        "client kernel: TcpExtTCPSynRetrans +{syn_retrans}, TcpRetransSegs +{retrans}, \
         TcpActiveOpens +{}, TcpAttemptFails +{}; client TIME_WAIT now {client_tw}",
        delta(&client_before, &client_after, "TcpActiveOpens"),
        delta(&client_before, &client_after, "TcpAttemptFails"),
    );
    for i in 0..3 {
        let d: Vec<String> = backend_names
            .iter()
            .filter(|n| backends_after[i].contains_key(**n))
            .map(|n| format!("{n} +{}", delta(&backends_before[i], &backends_after[i], n)))
            .collect();
        eprintln!(
            "backend cp{i}: TIME_WAIT max {} during the run, {} at the end (ss); {}",
            max_tw[i].load(Ordering::Relaxed),
            tw_now[i],
            d.join(", ")
        );
    }
    eprintln!("datapath counters moved: {}", moved(&dp_before, &dp_after));
    let log = daemon.log();
    eprintln!("health-check DOWN events: {:?}", down_lines(&log));
    eprintln!(
        "drops on the path: veth/bridge counters {{{}}}; the host's input backlogs \
         (softnet_stat, every namespace: other tests' traffic too) +{softnet}",
        moved(&links_before, &links_after)
    );

    assert!(
        errors.is_empty() && failed == 0,
        "{failed} of {} connections failed: {errors:#?}\ndatapath: {}\nDOWN events: {:#?}",
        ok + failed,
        moved(&dp_before, &dp_after),
        down_lines(&log)
    );
    assert_eq!(
        syn_retrans,
        0,
        "the client retransmitted SYNs ({slow} connections over 900 ms); datapath: {}; \
         host backlog drops +{softnet}",
        moved(&dp_before, &dp_after)
    );
    assert!(names.len() == 3, "all three backends served: {names:?}");
    if closer == Closer::Server {
        // The case this test is for: the backends held TIME_WAIT sockets
        // for SNAT ports that kube-xdp handed out again.
        let held: u64 = (0..3).map(|i| max_tw[i].load(Ordering::Relaxed)).sum();
        assert!(
            held as usize + tw_now.iter().sum::<usize>() > 0,
            "the backends held no TIME_WAIT socket: the test did not test reuse"
        );
    }
}

#[test]
fn sustained_short_connections_have_no_failures_and_no_syn_retransmits() {
    sustained_short_connections(Closer::Client);
}

#[test]
fn sustained_short_connections_closed_by_the_backends_have_no_syn_retransmits_despite_their_time_wait()
 {
    sustained_short_connections(Closer::Server);
}

/// The README states the SNAT capacity: a port is free again one second
/// after its flow closed, and a SYN tries 32 ports at random, so `snat_ports`
/// ports serve about half as many new connections per second per backend.
/// Here 2,000 ports and one backend, and 700 new connections per second for
/// 12 s (70 % of the stated 1,000/s, well within what this machine does):
/// none may be refused.
#[test]
fn new_connections_at_70_percent_of_the_stated_snat_capacity_are_never_refused() {
    require_root();
    let _serial = serial();
    const PORTS: u32 = 2_000;
    const STATED: f64 = PORTS as f64 * 0.5;
    const RATE: f64 = STATED * 0.7;
    let c = Cluster::new(1).unwrap();
    let _server =
        ShortServer::start(&c.backends[0], backend(0, 6443), "cp0", Closer::Server).unwrap();
    write_config_with(
        &c,
        &format!("snat_ports = \"20000-{}\"", 20_000 + PORTS - 1),
        &patient_checks(Service::apiserver(1)).toml(),
    );
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 1);
    prepare_client(&c, 2, Closer::Server).unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    let before = counters(&stats(&c));
    let (tallies, elapsed) =
        short_connection_load(&c, Closer::Server, 2, Duration::from_secs(12), Some(RATE));
    let after = counters(&stats(&c));
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let failed: u64 = tallies.iter().map(|t| t.failed).sum();
    let rate = (ok + failed) as f64 / elapsed.as_secs_f64();
    let exhausted = after["snat_exhausted"] - before["snat_exhausted"];
    eprintln!(
        "{PORTS} SNAT ports, one backend: {} connections in {elapsed:.1?} = {rate:.0}/s \
         ({:.0} % of the stated {STATED}/s); {failed} failed, snat_exhausted +{exhausted}; \
         datapath: {}",
        ok + failed,
        100.0 * rate / STATED,
        moved(&before, &after)
    );
    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    assert!(
        rate > RATE * 0.9,
        "the client did not reach the rate ({rate:.0}/s): the machine is too loaded to test this"
    );
    assert_eq!(
        exhausted, 0,
        "new connections refused for want of a SNAT port at {rate:.0}/s on {PORTS} ports: {errors:#?}"
    );
    assert_eq!(failed, 0, "{errors:#?}");
}
