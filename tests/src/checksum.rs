//! The Internet checksum (RFC 1071) of IPv4 headers, TCP segments and UDP
//! datagrams, computed from scratch: for building fixtures, for setting
//! the checksums right after a test damaged a frame, and for checking what
//! the program sent.
//!
//! The datapath never recomputes a checksum: it updates the sum it found
//! (RFC 1624, `kube-xdp-ebpf/src/csum.rs`). A sum from here and one from
//! the program agree only if the program's arithmetic is right, so the
//! reference model may use these too without agreeing with the program by
//! construction.

/// Ethernet header length: every frame here is Ethernet/IPv4.
const ETH: usize = 14;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// The RFC 1071 checksum of `bytes` (an odd last byte padded with zero).
/// Over bytes that hold their own checksum, 0 means the checksum is right.
pub fn inet(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `segment` (a TCP segment or UDP datagram, `proto` 6 or 17) after the
/// IPv4 pseudo-header from `src` to `dst`.
fn with_pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(12 + segment.len());
    data.extend_from_slice(&src);
    data.extend_from_slice(&dst);
    data.extend_from_slice(&[0, proto]);
    data.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    data.extend_from_slice(segment);
    data
}

/// Where a TCP (6) or UDP (17) header keeps its checksum.
fn sum_offset(proto: u8) -> usize {
    if proto == PROTO_TCP { 16 } else { 6 }
}

/// The checksum a TCP segment or UDP datagram from `src` to `dst` should
/// carry (its own checksum field taken as 0). A UDP sum of 0 is sent as
/// 0xffff: 0 means "no checksum" (RFC 768).
pub fn transport(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> u16 {
    let mut data = with_pseudo_header(src, dst, proto, segment);
    let at = 12 + sum_offset(proto);
    data[at..at + 2].fill(0);
    let sum = inet(&data);
    if proto == PROTO_UDP && sum == 0 {
        0xffff
    } else {
        sum
    }
}

/// Whether the checksum a TCP segment or UDP datagram carries is right.
pub fn transport_ok(src: [u8; 4], dst: [u8; 4], proto: u8, segment: &[u8]) -> bool {
    inet(&with_pseudo_header(src, dst, proto, segment)) == 0
}

/// The IPv4 source and destination of an Ethernet/IPv4 frame.
pub fn addresses(frame: &[u8]) -> ([u8; 4], [u8; 4]) {
    (
        frame[ETH + 12..ETH + 16].try_into().unwrap(),
        frame[ETH + 16..ETH + 20].try_into().unwrap(),
    )
}

/// Recomputes the IPv4 header checksum of a frame (header at byte 14),
/// over the header length the IHL claims, within what the frame holds
/// (malformed fixtures claim impossible lengths).
pub fn set_ipv4(frame: &mut [u8]) {
    let ihl = (usize::from(frame[ETH] & 0x0f) * 4).clamp(20, frame.len() - ETH);
    frame[ETH + 10..ETH + 12].fill(0);
    let sum = inet(&frame[ETH..ETH + ihl]);
    frame[ETH + 10..ETH + 12].copy_from_slice(&sum.to_be_bytes());
}

/// Recomputes the TCP or UDP checksum of a well-formed frame after a test
/// changed it (a UDP checksum of 0 stays 0). A frame whose lengths do not
/// hold together is left alone.
pub fn set_transport(frame: &mut [u8]) {
    if frame.len() < ETH + 20 {
        return;
    }
    let ihl = usize::from(frame[ETH] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([frame[ETH + 2], frame[ETH + 3]]));
    if ihl < 20 || total < ihl || total > frame.len() - ETH {
        return;
    }
    let at = ETH + ihl;
    let plen = total - ihl;
    let len = match frame[ETH + 9] {
        PROTO_TCP if plen >= 20 => plen,
        PROTO_UDP if plen >= 8 => {
            let ulen = usize::from(u16::from_be_bytes([frame[at + 4], frame[at + 5]]));
            let sum = u16::from_be_bytes([frame[at + 6], frame[at + 7]]);
            if ulen < 8 || ulen > plen || sum == 0 {
                return;
            }
            ulen
        }
        _ => return,
    };
    let proto = frame[ETH + 9];
    let (src, dst) = addresses(frame);
    let sum = transport(src, dst, proto, &frame[at..at + len]);
    let sum_at = at + sum_offset(proto);
    frame[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
}
