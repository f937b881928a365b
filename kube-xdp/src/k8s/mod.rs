//! Services of type LoadBalancer, from the cluster (`[kubernetes]`).
//!
//! `reconcile` decides, as plain functions of the Services, Nodes and
//! the file's services (`objects` reads them, `problem` words what
//! fails): which Services are ours, the address of each (what it holds in
//! its status, else what it asks for, else the lowest free address of its
//! pools), the nodes that serve, the status to write and the problems to
//! report. `controller` watches the API with kube-rs, runs `reconcile` on
//! every change and hands the outcome to the daemon, which applies it with
//! the file's services (`planned` turns it into planned services); then
//! it writes status, finalizers and Events (`writes`). `claim` holds the
//! addresses on the interface (a single box; in a pair the pair's master
//! holds them with its other virtual addresses).
//!
//! The file's services never wait for the cluster: the controller runs
//! beside the daemon's loop, and while the API cannot be reached the
//! services it last programmed keep forwarding.

pub mod claim;
pub mod controller;
pub mod objects;
pub mod planned;
pub mod problem;
pub mod reconcile;
#[cfg(test)]
mod reconcile_tests;
mod writes;

pub use controller::{ClusterUpdate, ControllerHandle};
pub use reconcile::{ClusterService, FileService};
