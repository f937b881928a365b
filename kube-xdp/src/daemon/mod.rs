//! The daemon: lifecycle, pins, reload, health, next hops.

pub mod attach;
pub mod neighbour;
pub mod state;
