//! The backends' servers: one nginx per backend, iperf3 in backend 0.

use super::lbs::{HTTP_PORT, IPERF_PORT};
use super::procs::{Proc, wait_until};
use kube_xdp_tests::{
    netns::Netns,
    topology::{Cluster, backend_addr},
};
use std::{path::Path, time::Duration};

/// nginx for backend `i`: one process (no master), `return 200
/// "backend-I\n"`, no access log, every path in `dir`.
pub(super) fn nginx_config(i: usize, dir: &Path) -> String {
    let d = dir.display();
    let temp: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {d}/nginx-b{i}-{t};\n"))
        .collect();
    format!(
        "worker_processes 1;
master_process off;
pid {d}/nginx-b{i}.pid;
error_log {d}/nginx-b{i}.err warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
{temp}    keepalive_requests 1000000;
    default_type text/plain;
    server {{
        listen {}:{HTTP_PORT};
        location / {{
            return 200 \"backend-{i}\\n\";
        }}
    }}
}}
",
        backend_addr(i)
    )
}

/// The backends' web servers (and iperf3 in backend 0), listening.
pub(crate) fn start_servers(c: &Cluster, dir: &Path, iperf: bool) -> anyhow::Result<Vec<Proc>> {
    let mut procs = Vec::new();
    for (i, ns) in c.backends.iter().enumerate() {
        let cfg = dir.join(format!("nginx-b{i}.conf"));
        std::fs::write(&cfg, nginx_config(i, dir))?;
        let err = dir.join(format!("nginx-b{i}.err"));
        procs.push(Proc::spawn(
            ns,
            &format!("nginx in backend {i}"),
            "nginx",
            &[
                "-c",
                cfg.to_str().unwrap(),
                "-e",
                err.to_str().unwrap(),
                "-g",
                "daemon off;",
            ],
            &dir.join(format!("nginx-b{i}.log")),
        )?);
    }
    if iperf {
        let b0 = backend_addr(0);
        let port = IPERF_PORT.to_string();
        procs.push(Proc::spawn(
            &c.backends[0],
            "iperf3 server",
            "iperf3",
            &["-s", "-B", &b0, "-p", &port],
            &dir.join("iperf3-server.log"),
        )?);
    }
    let mut waits: Vec<(&Netns, u16)> = c.backends.iter().map(|ns| (ns, HTTP_PORT)).collect();
    if iperf {
        waits.push((&c.backends[0], IPERF_PORT));
    }
    for (ns, port) in waits {
        if !wait_until(Duration::from_secs(5), || super::procs::listening(ns, port)) {
            for p in &mut procs {
                p.check_alive()?;
            }
            anyhow::bail!("nothing listens on :{port} in {} within 5 s", ns.name());
        }
    }
    Ok(procs)
}
