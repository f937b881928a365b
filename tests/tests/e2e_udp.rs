//! End to end: a UDP service forwards datagrams both ways, and a datagram
//! the kernel fragments arrives whole at the backend.
//!
//! Its tests take [`serial`]'s lock, like the other e2e tests that load
//! the machine or use 100 ms check timeouts: one at a time.

use kube_xdp_tests::{
    e2e_util::{Service, backend, serial, setsockopt_int, tcp_servers, vip, wait_all_up},
    observe::{counters, moved, stats},
    require_root,
    servers::UdpServer,
    topology::{CLIENT_ADDR, Cluster},
};
use std::{
    collections::HashSet,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

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
