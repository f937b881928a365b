//! Internet checksums (RFC 1071) and their incremental update (RFC 1624).
//!
//! Every value is summed as it stands in the packet (network byte order
//! read as native integers): the one's-complement sum is independent of
//! byte order, so no swaps are needed as long as both sides of an update
//! use the same order.

/// Folds a 32-bit one's-complement accumulator to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The sum of a 32-bit field's two 16-bit halves.
#[inline(always)]
pub fn sum32(v: u32) -> u32 {
    (v & 0xffff) + (v >> 16)
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`, for a change of the summed
/// words from `old` to `new` (each a sum of 16-bit words, unfolded).
#[inline(always)]
pub fn update(check: u16, old: u32, new: u32) -> u16 {
    // ~m over several words is (n * 0xffff - m); fold(old) keeps it in range.
    let mut sum = u32::from(!check);
    sum += u32::from(!fold(old));
    sum += u32::from(fold(new));
    !fold(sum)
}

/// A UDP checksum after an update: 0 means "no checksum" (RFC 768), so a
/// datagram sent without one keeps 0, and a computed 0 is sent as 0xffff.
#[inline(always)]
pub fn udp_update(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    match update(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// The one's-complement sum (unfolded) of `bytes` as 16-bit words in the
/// packet's order; an even length.
#[inline(always)]
pub fn sum_bytes(bytes: &[u8]) -> u32 {
    let mut sum = 0u32;
    let mut i = 0;
    while i + 1 < bytes.len() {
        sum += u32::from(u16::from_ne_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    sum
}
