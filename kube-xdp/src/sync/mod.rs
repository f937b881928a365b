//! Flow sync between the boxes of a pair. The datapath
//! reports new flows and state changes; the daemon batches them
//! ([`batch`]) into authenticated datagrams ([`wire`]) to the peer's
//! `[ha] sync_port`, which takes only fresh ones ([`replay`]) and installs
//! their flows in its own maps and clock ([`merge`]: with the same flow
//! held here). A box that starts asks its peer
//! for the whole table (a Hello) and gets it as a dump. Everything but
//! [`task`] is plain Rust with no socket or timer: the task drives it with
//! its clock and counts what happened ([`counters`]); [`directory`] turns
//! the peer's flows into this box's ids.

pub mod batch;
pub mod counters;
pub mod directory;
pub mod key;
pub mod merge;
pub mod replay;
pub mod task;
pub mod wire;

pub use key::SyncKey;
