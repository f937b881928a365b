//! The daemon: lifecycle, pins, reload, health, next hops.

pub mod attach;
pub mod control;
pub mod desired;
pub mod host;
pub mod inspect;
pub mod neighbour;
pub mod run;
pub mod state;
