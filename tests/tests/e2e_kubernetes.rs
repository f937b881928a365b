//! End to end: Services of type LoadBalancer from a Kubernetes API
//! (the kmock emulator in the LB's namespace, plain http on loopback),
//! forwarded by the real daemon to node namespaces serving NodePorts.
//!
//! One story, in order (each step needs the state the last one left):
//! the API unreachable at start (the file's service answers all the
//! same), the API comes up, a Service appears (its VIP answers on each
//! port: the time it took is printed, not asserted; its status carries
//! the address), a second Service
//! asks for the taken address (an Event, no address), a node turns
//! NotReady (it leaves the backends), the daemon restarts (the same
//! addresses), the first Service is deleted (its VIP stops answering,
//! the address goes to the second), the emulator stops (forwarding goes
//! on), `[kubernetes]` is removed (the next start gives the address up).

use kube_xdp_tests::{
    daemon::cli,
    e2e_util::{
        Service, backends,
        kubernetes::{
            POOL_FIRST, events_of, ingress_ip, kubernetes_section, node, node_servers, service,
            tcp_name, udp_answer,
        },
        reload, serial, vip, wait_for,
    },
    http::request,
    kube_api::Emulator,
    pair::{PairBox, PairCluster},
    require_root,
    servers::whoami,
    topology::{Cluster, backend_addr},
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The daemon's metrics, on the LB's loopback.
const METRICS: &str = "127.0.0.1:19437";
/// The emulator's port on the LB's loopback: fixed, below the local port
/// range (32768-60999) like [`METRICS`], so that no connection's own
/// ephemeral port (the daemon's client retrying it before the emulator
/// listens could connect to itself) can take it.
const API_PORT: u16 = 19438;

/// The value of the metric `name` (a gauge without labels), if scraped.
fn metric(c: &Cluster, name: &str) -> Option<f64> {
    let (_, body) = request(&c.lb, METRICS, "GET", "/metrics", &[]);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The kube-xdp services (from `backends --json`) that came from the
/// cluster, by name.
fn cluster_services(c: &Cluster) -> Vec<Value> {
    backends(c)
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.get("origin").is_some())
        .collect()
}

/// Names of the backends of `service` that take new flows.
fn usable(c: &Cluster, service: &str) -> Vec<String> {
    let mut names: Vec<String> = cluster_services(c)
        .iter()
        .filter(|s| s["name"] == service)
        .flat_map(|s| s["backends"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["state"] == "UP")
        .map(|b| b["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

/// Two Ready nodes, `node-0` and `node-1`, on backends 0 and 1.
fn post_ready_nodes(api: &Emulator) {
    for i in 0..2 {
        api.ok(
            "POST",
            "/api/v1/nodes",
            Some(&node(&format!("node-{i}"), &backend_addr(i), true)),
        )
        .unwrap();
    }
}

fn lb_has_address(c: &Cluster, ip: &str) -> bool {
    let out =
        c.lb.ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
            .unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/32 "))
}

#[test]
fn services_of_type_load_balancer_are_forwarded_to_the_nodeports() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(2).unwrap();
    let _servers = node_servers(&c);

    // The API's port; nothing listens on it yet.
    let port = API_PORT;
    let kubeconfig = c.dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        Emulator::kubeconfig(std::net::Ipv4Addr::LOCALHOST, port),
    )
    .unwrap();
    std::fs::write(
        &c.config,
        format!(
            r#"[daemon]
interfaces = ["eth0"]
pin_path = "{}"
run_dir = "{}"
snat_ports = "20000-29999"
metrics_listen = "{METRICS}"

[[service]]
name = "kube-apiserver"
vip = "198.18.0.10"
port = 6443

[service.health_check]
interval = "200ms"
timeout = "100ms"
rise = 1
init_state = "up"

[[service.backend]]
name = "cp0"
address = "{}"

[[service.backend]]
name = "cp1"
address = "{}"

{}
"#,
            c.pins.path().display(),
            c.run_dir.display(),
            backend_addr(0),
            backend_addr(1),
            kubernetes_section(&kubeconfig)
        ),
    )
    .unwrap();
    let mut daemon = c.start_daemon().unwrap();

    // 1. The API does not answer: the file's service does.
    let apiserver = vip(6443);
    let reached = wait_for(Duration::from_secs(5), || {
        c.client
            .run(move || Ok(whoami(apiserver, Duration::from_millis(300))?))
            .is_ok_and(|n| n.starts_with("apiserver-"))
    });
    assert!(
        reached.is_some(),
        "the file's service answers without the cluster:\n{}",
        daemon.log()
    );
    assert!(
        wait_for(Duration::from_secs(5), || daemon
            .log()
            .contains("kubernetes: the API does not answer"))
        .is_some(),
        "the log says the cluster is unreachable:\n{}",
        daemon.log()
    );

    assert_eq!(metric(&c, "kube_xdp_kubernetes_connected"), Some(0.0));

    // 2. The API comes up, with two Ready nodes.
    let mut api = Emulator::start(&c.lb, c.dir.path(), port).unwrap();
    post_ready_nodes(&api);
    let connected = wait_for(Duration::from_secs(40), || {
        daemon.log().contains("kubernetes: the API answers")
    });
    assert!(
        connected.is_some(),
        "the controller connects:\n{}\n{}",
        daemon.log(),
        api.log()
    );

    // 3. A Service appears: its VIP answers on each port (how soon is
    //    printed, not asserted: this machine's load is not the daemon's).
    let created = Instant::now();
    api.ok(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("web", None)),
    )
    .unwrap();
    let answered = wait_for(Duration::from_secs(10), || {
        tcp_name(&c, POOL_FIRST).is_ok_and(|n| n.starts_with("node-"))
            && udp_answer(&c, POOL_FIRST).is_ok_and(|a| a.starts_with("node-"))
    });
    let took = created.elapsed();
    assert!(
        answered.is_some(),
        "{POOL_FIRST} answers on 80/TCP and 53/UDP (not after {took:?}):\n{}\n{}",
        daemon.log(),
        api.log()
    );
    eprintln!("the Service's VIP answered on both ports {took:?} after its creation");
    if std::env::var_os("KXDP_SHOW_LOG").is_some() {
        eprintln!("{}", daemon.log());
    }
    // The status is written once the services are programmed.
    let written = wait_for(Duration::from_secs(2), || {
        api.ok("GET", "/api/v1/namespaces/default/services/web", None)
            .is_ok_and(|s| ingress_ip(&s).is_some())
    });
    assert!(
        written.is_some(),
        "the status is written:\n{}",
        daemon.log()
    );
    eprintln!(
        "its status carried the address {:?} after its creation",
        created.elapsed()
    );
    let web = api
        .ok("GET", "/api/v1/namespaces/default/services/web", None)
        .unwrap();
    assert_eq!(
        ingress_ip(&web).as_deref(),
        Some(POOL_FIRST),
        "status: {web}"
    );
    assert_eq!(web["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    assert_eq!(
        web["status"]["loadBalancer"]["ingress"][0]["ports"],
        json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
    );
    assert_eq!(
        web["metadata"]["finalizers"],
        json!(["kube-xdp.io/load-balancer"])
    );
    assert!(
        lb_has_address(&c, POOL_FIRST),
        "the LB holds {POOL_FIRST}/32"
    );
    // Both nodes serve.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        if let Ok(n) = tcp_name(&c, POOL_FIRST) {
            seen.insert(n);
        }
    }
    assert_eq!(seen.len(), 2, "both nodes take connections: {seen:?}");
    let text = cli(&c.lb, &["backends", "--config", c.config.to_str().unwrap()]).unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("from the cluster: Service default/web"),
        "{text}"
    );
    assert!(
        text.contains("default/web:80/tcp") && text.contains("default/web:53/udp"),
        "{text}"
    );
    let added = wait_for(Duration::from_secs(3), || {
        events_of(&api, "web")
            .iter()
            .any(|e| e["reason"] == "AddressAssigned")
    });
    assert!(
        added.is_some(),
        "a Normal Event says which address: {:?}",
        events_of(&api, "web")
    );

    assert_eq!(metric(&c, "kube_xdp_kubernetes_connected"), Some(1.0));
    assert_eq!(metric(&c, "kube_xdp_kubernetes_services"), Some(2.0));
    assert_eq!(metric(&c, "kube_xdp_kubernetes_addresses"), Some(1.0));

    // A reload of the file keeps the cluster's services (and their flows).
    let (ok, said) = reload(&c);
    assert!(ok, "reload: {said}");
    assert_eq!(cluster_services(&c).len(), 2, "after the reload");
    assert!(tcp_name(&c, POOL_FIRST).is_ok_and(|n| n.starts_with("node-")));

    // 4. A second Service asks for the taken address: an Event, no address.
    api.ok(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("second", Some(POOL_FIRST))),
    )
    .unwrap();
    let warned = wait_for(Duration::from_secs(3), || {
        events_of(&api, "second")
            .iter()
            .any(|e| e["reason"] == "AddressTaken" && e["type"] == "Warning")
    });
    assert!(
        warned.is_some(),
        "an AddressTaken Event: {:?}\n{}",
        events_of(&api, "second"),
        daemon.log()
    );
    let note = events_of(&api, "second")[0]["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        note.contains("already taken by Service default/web"),
        "{note}"
    );
    let second = api
        .ok("GET", "/api/v1/namespaces/default/services/second", None)
        .unwrap();
    assert_eq!(ingress_ip(&second), None, "no address: {second}");
    assert_eq!(
        metric(&c, "kube_xdp_kubernetes_unserved_services"),
        Some(1.0)
    );
    assert!(
        daemon
            .log()
            .contains("Service default/second gets no address"),
        "{}",
        daemon.log()
    );

    // 5. A node turns NotReady: it leaves the backends.
    assert_eq!(usable(&c, "default/web:80/tcp"), vec!["node-0", "node-1"]);
    api.ok(
        "PATCH",
        "/api/v1/nodes/node-1/status",
        Some(&json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})),
    )
    .unwrap();
    let left = wait_for(Duration::from_secs(3), || {
        usable(&c, "default/web:80/tcp") == vec!["node-0"]
    });
    assert!(left.is_some(), "node-1 leaves: {:?}", cluster_services(&c));
    for _ in 0..10 {
        assert_eq!(tcp_name(&c, POOL_FIRST).unwrap(), "node-0");
    }

    // 6. The daemon restarts: the same addresses.
    daemon.stop().unwrap();
    let mut daemon = c.start_daemon().unwrap();
    let back = wait_for(Duration::from_secs(10), || {
        daemon.log().contains("kubernetes: the API answers")
            && usable(&c, "default/web:80/tcp") == vec!["node-0"]
    });
    assert!(back.is_some(), "restarted:\n{}", daemon.log());
    assert_eq!(tcp_name(&c, POOL_FIRST).unwrap(), "node-0");
    let web = api
        .ok("GET", "/api/v1/namespaces/default/services/web", None)
        .unwrap();
    assert_eq!(ingress_ip(&web).as_deref(), Some(POOL_FIRST));
    let second = api
        .ok("GET", "/api/v1/namespaces/default/services/second", None)
        .unwrap();
    assert_eq!(ingress_ip(&second), None);

    // 7. The Service is deleted: its VIP stops answering, the address is
    //    free again (the second Service, which asked for it, gets it).
    api.ok("DELETE", "/api/v1/namespaces/default/services/web", None)
        .unwrap();
    let gone = wait_for(Duration::from_secs(3), || {
        api.request("GET", "/api/v1/namespaces/default/services/web", None)
            .is_ok_and(|(status, _)| status == 404)
    });
    assert!(
        gone.is_some(),
        "the finalizer is removed and the Service goes:\n{}",
        daemon.log()
    );
    let taken_over = wait_for(Duration::from_secs(3), || {
        api.ok("GET", "/api/v1/namespaces/default/services/second", None)
            .is_ok_and(|s| ingress_ip(&s).as_deref() == Some(POOL_FIRST))
    });
    assert!(
        taken_over.is_some(),
        "the freed address goes to the Service that asked for it:\n{}",
        daemon.log()
    );
    let names: Vec<Value> = cluster_services(&c)
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("default/second:80/tcp"),
            json!("default/second:53/udp")
        ],
        "only the second's"
    );
    // Once more without any Service holding it: the VIP stops answering.
    api.ok("DELETE", "/api/v1/namespaces/default/services/second", None)
        .unwrap();
    let silent = wait_for(Duration::from_secs(3), || {
        cluster_services(&c).is_empty() && !lb_has_address(&c, POOL_FIRST)
    });
    assert!(silent.is_some(), "released:\n{}", daemon.log());
    assert!(
        tcp_name(&c, POOL_FIRST).is_err(),
        "{POOL_FIRST} no longer answers"
    );

    // 8. The emulator stops: what was programmed keeps forwarding.
    api.ok(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("third", None)),
    )
    .unwrap();
    let third = wait_for(Duration::from_secs(3), || tcp_name(&c, POOL_FIRST).is_ok());
    assert!(
        third.is_some(),
        "the third Service gets the lowest free address:\n{}",
        daemon.log()
    );
    api.stop();
    let noticed = wait_for(Duration::from_secs(10), || {
        daemon
            .log()
            .matches("kubernetes: the API does not answer")
            .count()
            >= 1
            && daemon.log().rfind("the API does not answer")
                > daemon.log().rfind("the API answers;")
    });
    assert!(
        noticed.is_some(),
        "the log says the cluster went away:\n{}",
        daemon.log()
    );
    for _ in 0..10 {
        assert_eq!(
            tcp_name(&c, POOL_FIRST).unwrap(),
            "node-0",
            "still forwarding"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&c, "kube_xdp_kubernetes_connected"), Some(0.0));
    assert_eq!(
        metric(&c, "kube_xdp_kubernetes_services"),
        Some(2.0),
        "still programmed"
    );
    assert!(udp_answer(&c, POOL_FIRST).is_ok_and(|a| a.starts_with("node-0")));
    assert!(
        c.client
            .run(move || Ok(whoami(apiserver, Duration::from_millis(300))?))
            .is_ok()
    );
    daemon.stop().unwrap();

    // 9. [kubernetes] is removed from the file: the next start gives up
    //    the Service address kube-xdp added, and forgets it.
    let text = std::fs::read_to_string(&c.config).unwrap();
    let without = &text[..text.find("[kubernetes]").unwrap()];
    std::fs::write(&c.config, without).unwrap();
    assert!(lb_has_address(&c, POOL_FIRST), "still held while stopped");
    let mut daemon = c.start_daemon().unwrap();
    let released = wait_for(Duration::from_secs(10), || {
        !lb_has_address(&c, POOL_FIRST) && !c.run_dir.join("kubernetes-addresses.json").exists()
    });
    assert!(
        released.is_some(),
        "the address is given up without [kubernetes]:\n{}",
        daemon.log()
    );
    assert!(cluster_services(&c).is_empty());
    assert!(
        c.client
            .run(move || Ok(whoami(apiserver, Duration::from_millis(300))?))
            .is_ok(),
        "the file's service still answers"
    );
    daemon.stop().unwrap();
}

/// `backends --json` of one box of a pair: its services from the cluster.
fn box_cluster_services(p: &PairCluster, which: &PairBox) -> Vec<Value> {
    let out = cli(
        p.ns(which),
        &["backends", "--json", "--config", which.config_str()],
    )
    .unwrap();
    let all: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    all.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.get("origin").is_some())
        .collect()
}

#[test]
fn in_a_pair_the_master_holds_the_addresses_and_writes_to_the_cluster() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = node_servers(&p.c);
    // The API on the segment, where both boxes reach it.
    let api_ns = p.c.add_host("api", "papi", "198.18.0.50/24").unwrap();
    let api =
        Emulator::start_on(&api_ns, p.c.dir.path(), "198.18.0.50".parse().unwrap(), 0).unwrap();
    let kubeconfig = p.c.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Emulator::kubeconfig(api.host, api.port)).unwrap();
    let services = format!(
        "{}\n{}",
        Service::apiserver(2).toml(),
        kubernetes_section(&kubeconfig)
    );
    let ha = |priority: u8| {
        format!("virtual_router_id = 51\npriority = {priority}\nadvert_interval = \"100ms\"\n")
    };
    p.a.write_config(&ha(150), &services);
    p.b.write_config(&ha(100), &services);
    let da = p.start(&p.a).unwrap();
    let db = p.start(&p.b).unwrap();
    let logs = || format!("A:\n{}\nB:\n{}\nAPI:\n{}", da.log(), db.log(), api.log());
    p.wait_state(&p.a, "MASTER", Duration::from_secs(10), &logs);
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(5), &logs);

    post_ready_nodes(&api);
    api.ok(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("web", None)),
    )
    .unwrap();
    let answered = wait_for(Duration::from_secs(5), || {
        tcp_name(&p.c, POOL_FIRST).is_ok_and(|n| n.starts_with("node-"))
    });
    assert!(
        answered.is_some(),
        "the VIP answers through the master:\n{}",
        logs()
    );
    assert!(
        p.holds(&p.a, POOL_FIRST),
        "the master holds {POOL_FIRST}:\n{}",
        logs()
    );
    assert!(
        !p.holds(&p.b, POOL_FIRST),
        "the backup does not:\n{}",
        logs()
    );
    let written = wait_for(Duration::from_secs(3), || {
        api.ok("GET", "/api/v1/namespaces/default/services/web", None)
            .is_ok_and(|s| ingress_ip(&s).as_deref() == Some(POOL_FIRST))
    });
    assert!(written.is_some(), "the status is written:\n{}", logs());
    assert!(
        da.log().contains("kubernetes: this box writes"),
        "{}",
        logs()
    );
    // B was the backup before the Nodes and the Service came, so it
    // wrote nothing. Its log may still say "this box writes" from its
    // very start (MASTER for an instant, before A's first advertisement):
    // what counts is its last word, and that the cluster shows one
    // writer (one AddressAssigned Event: both boxes report the same
    // hostname, so reportingInstance cannot tell them apart).
    let forwards = wait_for(Duration::from_secs(3), || {
        let log = db.log();
        log.rfind("this box decides the same and forwards")
            > log.rfind("kubernetes: this box writes")
    });
    assert!(forwards.is_some(), "B does not write:\n{}", logs());
    let assigned = |api: &Emulator| {
        events_of(api, "web")
            .iter()
            .filter(|e| e["reason"] == "AddressAssigned")
            .count()
    };
    let announced = wait_for(Duration::from_secs(3), || assigned(&api) >= 1);
    assert!(announced.is_some(), "A's Event:\n{}", logs());
    assert_eq!(
        assigned(&api),
        1,
        "one box wrote: {:?}\n{}",
        events_of(&api, "web"),
        logs()
    );
    // The backup programmed the same services, ready to take over.
    let same = wait_for(Duration::from_secs(3), || {
        let names = |v: Vec<Value>| -> Vec<Value> { v.iter().map(|s| s["name"].clone()).collect() };
        let b = names(box_cluster_services(&p, &p.b));
        !b.is_empty() && b == names(box_cluster_services(&p, &p.a))
    });
    assert!(
        same.is_some(),
        "both boxes program the Service:\n{}",
        logs()
    );

    // The master stops: the backup holds the address, forwards, and writes.
    // SIGTERM: it resigns and gives its addresses up.
    da.signal(libc::SIGTERM);
    p.wait_state(&p.b, "MASTER", Duration::from_secs(5), &logs);
    let moved = wait_for(Duration::from_secs(3), || {
        p.holds(&p.b, POOL_FIRST)
            && tcp_name(&p.c, POOL_FIRST).is_ok_and(|n| n.starts_with("node-"))
    });
    assert!(
        moved.is_some(),
        "the address moved with the mastership:\n{}",
        logs()
    );
    assert!(
        !p.holds(&p.a, POOL_FIRST),
        "the old master gave it up:\n{}",
        logs()
    );
    api.ok(
        "POST",
        "/api/v1/namespaces/default/services",
        Some(&service("second", None)),
    )
    .unwrap();
    let second = "198.18.0.101";
    let served = wait_for(Duration::from_secs(3), || {
        api.ok("GET", "/api/v1/namespaces/default/services/second", None)
            .is_ok_and(|s| ingress_ip(&s).as_deref() == Some(second))
            && tcp_name(&p.c, second).is_ok()
    });
    assert!(
        served.is_some(),
        "the new master writes the status:\n{}",
        logs()
    );
    assert!(
        db.log().contains("kubernetes: this box writes"),
        "{}",
        logs()
    );

    // The old master comes back and takes over again (preempt): it holds
    // both addresses, the backup gives them up.
    drop(da);
    let da = p.start(&p.a).unwrap();
    let logs = || format!("A:\n{}\nB:\n{}\nAPI:\n{}", da.log(), db.log(), api.log());
    p.wait_state(&p.a, "MASTER", Duration::from_secs(10), &logs);
    let back = wait_for(Duration::from_secs(5), || {
        p.holds(&p.a, POOL_FIRST)
            && p.holds(&p.a, second)
            && !p.holds(&p.b, POOL_FIRST)
            && !p.holds(&p.b, second)
            && tcp_name(&p.c, POOL_FIRST).is_ok()
            && tcp_name(&p.c, second).is_ok()
    });
    assert!(
        back.is_some(),
        "the returning master holds the addresses:\n{}",
        logs()
    );
}
