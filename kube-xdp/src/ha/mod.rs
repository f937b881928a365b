//! The load-balancer pair: VRRP version 3 (RFC 5798) between two boxes,
//! interoperable with keepalived. The packet codec ([`vrrp`]) and the
//! state machine ([`machine`]) are pure; the sockets, the addresses and
//! the gratuitous ARPs are separate.

pub mod machine;
pub mod net;
pub mod pair;
pub mod vrrp;
