//! The VRRP version 3 advertisement for IPv4 (RFC 5798 §5): encoding and
//! decoding, pure. The IP header is the socket's business; what this
//! module needs of it (source, destination, TTL) is passed in.
//!
//! ```text
//!  0                   1                   2                   3
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! |                       IPv4 Address(es)                        |
//! ```

use std::{net::Ipv4Addr, time::Duration};

/// IP protocol number of VRRP.
pub const IPPROTO_VRRP: u8 = 112;
/// The multicast group advertisements go to (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL an advertisement may carry (§5.1.1.3).
pub const TTL: u8 = 255;
const VERSION: u8 = 3;
const TYPE_ADVERTISEMENT: u8 = 1;
const HEADER_LEN: usize = 8;
/// The largest interval the 12-bit centisecond field holds: 40.95 s.
pub const MAX_INTERVAL: Duration = Duration::from_millis(40_950);
/// The smallest: one centisecond.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// An advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub vrid: u8,
    /// 0: the master stops (§6.4.3); 255: the address owner.
    pub priority: u8,
    /// The sender's advertisement interval.
    pub interval: Duration,
    pub addresses: Vec<Ipv4Addr>,
}

/// Why a packet was ignored (each is counted, none changes the state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("shorter than a VRRP header")]
    Truncated,
    #[error("VRRP version {0}, not 3")]
    Version(u8),
    #[error("VRRP type {0}, not an advertisement")]
    Type(u8),
    #[error("TTL {0}, not 255: not from this link")]
    Ttl(u8),
    #[error("bad checksum")]
    Checksum,
    #[error("address count {count} does not match the length {len}")]
    Length { count: u8, len: usize },
    #[error("advertisement interval 0")]
    Interval,
    #[error("virtual router id {0}, not ours")]
    Vrid(u8),
    #[error("not from a configured unicast peer")]
    Peer,
}

impl Rejected {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejected::Truncated => "truncated",
            Rejected::Version(_) => "version",
            Rejected::Type(_) => "type",
            Rejected::Ttl(_) => "ttl",
            Rejected::Checksum => "checksum",
            Rejected::Length { .. } => "length",
            Rejected::Interval => "interval",
            Rejected::Vrid(_) => "vrid",
            Rejected::Peer => "peer",
        }
    }
}

/// The Internet checksum (RFC 1071) over the IPv4 pseudo-header (source,
/// destination, zero, protocol, length) and the message.
fn checksum(src: Ipv4Addr, dst: Ipv4Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, IPPROTO_VRRP]);
    add(&(message.len() as u16).to_be_bytes());
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn centiseconds(interval: Duration) -> u16 {
    let cs = interval.as_millis() / 10;
    cs.clamp(1, 0x0fff) as u16
}

impl Advert {
    /// The message from `src` to `dst` (the group or a unicast peer), its
    /// checksum over the pseudo-header of exactly those addresses.
    pub fn encode(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * self.addresses.len());
        out.push(VERSION << 4 | TYPE_ADVERTISEMENT);
        out.push(self.vrid);
        out.push(self.priority);
        out.push(self.addresses.len().min(255) as u8);
        out.extend_from_slice(&centiseconds(self.interval).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        for a in self.addresses.iter().take(255) {
            out.extend_from_slice(&a.octets());
        }
        let sum = checksum(src, dst, &out);
        out[6..8].copy_from_slice(&sum.to_be_bytes());
        out
    }

    /// Reads an advertisement received from `src` for `dst` with `ttl`.
    /// The checksum is accepted over the pseudo-header with `dst`, and
    /// also with the multicast group for a unicast one: keepalived before
    /// 2.0 put the group there whatever the destination (its
    /// `old_unicast_checksum`).
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub fn decode(
        message: &[u8],
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ttl: u8,
    ) -> Result<Advert, Rejected> {
        if message.len() < HEADER_LEN {
            return Err(Rejected::Truncated);
        }
        let version = message[0] >> 4;
        if version != VERSION {
            return Err(Rejected::Version(version));
        }
        let kind = message[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(Rejected::Type(kind));
        }
        if ttl != TTL {
            return Err(Rejected::Ttl(ttl));
        }
        let count = message[3];
        let len = HEADER_LEN + 4 * usize::from(count);
        if message.len() < len {
            return Err(Rejected::Length {
                count,
                len: message.len(),
            });
        }
        // The checksum covers the message as sent; bytes past it (padding)
        // are not VRRP's.
        let body = &message[..len];
        if checksum(src, dst, body) != 0 && checksum(src, MULTICAST_GROUP, body) != 0 {
            return Err(Rejected::Checksum);
        }
        let cs = u16::from_be_bytes([message[4], message[5]]) & 0x0fff;
        if cs == 0 {
            return Err(Rejected::Interval);
        }
        let addresses = body[HEADER_LEN..]
            .chunks(4)
            .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            .collect();
        Ok(Advert {
            vrid: message[1],
            priority: message[2],
            interval: Duration::from_millis(u64::from(cs) * 10),
            addresses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn advert() -> Advert {
        Advert {
            vrid: 51,
            priority: 150,
            interval: Duration::from_millis(100),
            addresses: vec![Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 0, 9)],
        }
    }

    #[test]
    fn encodes_the_rfc_layout() {
        let bytes = advert().encode(SRC, MULTICAST_GROUP);
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..6], &[0x31, 51, 150, 2, 0x00, 10]);
        assert_eq!(&bytes[8..12], &[198, 18, 0, 10]);
        // A correct checksum sums to zero with it in place.
        assert_eq!(checksum(SRC, MULTICAST_GROUP, &bytes), 0);
    }

    #[test]
    fn round_trips_to_the_group_and_to_a_unicast_peer() {
        for dst in [MULTICAST_GROUP, Ipv4Addr::new(198, 18, 0, 3)] {
            let bytes = advert().encode(SRC, dst);
            assert_eq!(Advert::decode(&bytes, SRC, dst, 255), Ok(advert()));
        }
    }

    #[test]
    fn a_unicast_advert_summed_over_the_group_is_accepted() {
        let peer = Ipv4Addr::new(198, 18, 0, 3);
        let bytes = advert().encode(SRC, MULTICAST_GROUP);
        assert_eq!(Advert::decode(&bytes, SRC, peer, 255), Ok(advert()));
    }

    #[test]
    fn an_advert_as_keepalived_sends_it_by_default_decodes() {
        // vrrp_version 3, VRID 51, priority 100, advert_int 1 (100 cs),
        // one address, from 198.18.0.3 to the group.
        let mut bytes = vec![0x31, 51, 100, 1, 0x00, 100, 0, 0, 198, 18, 0, 10];
        let sum = checksum(Ipv4Addr::new(198, 18, 0, 3), MULTICAST_GROUP, &bytes);
        bytes[6..8].copy_from_slice(&sum.to_be_bytes());
        let a = Advert::decode(&bytes, Ipv4Addr::new(198, 18, 0, 3), MULTICAST_GROUP, 255).unwrap();
        assert_eq!(a.interval, Duration::from_secs(1));
        assert_eq!(a.priority, 100);
    }

    #[test]
    fn bad_packets_are_rejected_for_their_reason() {
        let good = advert().encode(SRC, MULTICAST_GROUP);
        let decode = |b: &[u8], ttl| Advert::decode(b, SRC, MULTICAST_GROUP, ttl);
        assert_eq!(decode(&good[..7], 255), Err(Rejected::Truncated));
        assert_eq!(decode(&good, 254), Err(Rejected::Ttl(254)));
        let mut v2 = good.clone();
        v2[0] = 0x21;
        assert_eq!(decode(&v2, 255), Err(Rejected::Version(2)));
        let mut kind = good.clone();
        kind[0] = 0x32;
        assert_eq!(decode(&kind, 255), Err(Rejected::Type(2)));
        let mut flipped = good.clone();
        flipped[2] ^= 1;
        assert_eq!(decode(&flipped, 255), Err(Rejected::Checksum));
        assert_eq!(
            decode(&good[..12], 255),
            Err(Rejected::Length { count: 2, len: 12 })
        );
        let zero = Advert {
            interval: Duration::ZERO,
            ..advert()
        };
        // Encoding clamps to one centisecond; a peer's zero is refused.
        assert_eq!(
            decode(&zero.encode(SRC, MULTICAST_GROUP), 255)
                .unwrap()
                .interval,
            MIN_INTERVAL
        );
        let mut raw = good.clone();
        raw[4] = 0;
        raw[5] = 0;
        raw[6..8].copy_from_slice(&[0, 0]);
        let sum = checksum(SRC, MULTICAST_GROUP, &raw);
        raw[6..8].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(decode(&raw, 255), Err(Rejected::Interval));
    }

    #[test]
    fn intervals_are_centiseconds_in_twelve_bits() {
        let long = Advert {
            interval: Duration::from_secs(100),
            ..advert()
        };
        let bytes = long.encode(SRC, MULTICAST_GROUP);
        let back = Advert::decode(&bytes, SRC, MULTICAST_GROUP, 255).unwrap();
        assert_eq!(back.interval, MAX_INTERVAL);
    }
}
