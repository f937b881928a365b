//! Flow sync between the boxes of a pair: the pure parts. The datapath
//! reports new flows and state changes; the daemon batches them
//! ([`batch`]) into authenticated datagrams ([`wire`]) to the peer's
//! `[ha] sync_port`, which takes only fresh ones ([`replay`]) and installs
//! their flows in its own maps and clock. A box that starts asks its peer
//! for the whole table (a Hello) and gets it as a dump. Everything here is
//! plain Rust with no socket or timer: the daemon's sync task drives it
//! with its clock and counts what happened ([`counters`]).

pub mod batch;
pub mod counters;
pub mod key;
pub mod replay;
pub mod wire;

pub use key::SyncKey;
