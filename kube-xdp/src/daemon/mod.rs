//! The daemon: lifecycle, pins, the control loop (apply a plan, all or
//! nothing), health checks, next hops.

pub mod attach;
mod background;
pub mod cluster;
pub mod control;
mod control_loop;
pub mod run;
pub mod state;
pub mod syn_flood;
