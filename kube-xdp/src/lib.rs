//! kube-xdp: an XDP layer-4 load balancer for Kubernetes control planes and
//! NodePorts. This library holds everything but the command line, so the
//! end-to-end tests and the benchmarks drive the same code as the binary.

pub mod bpffs;
pub mod config;
pub mod daemon;
pub mod datapath;
pub mod ebpf;
pub mod ha;
pub mod health;
pub mod host;
mod http_server;
mod human;
pub mod import;
pub mod k8s;
pub mod maglev;
pub mod metrics;
pub mod plan;
pub mod stats_page;
pub mod sync;
pub mod view;
