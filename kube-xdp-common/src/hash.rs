//! The flow hash: which Maglev slot a new flow lands in. Shared by the
//! datapath and the reference model (the only logic they may share besides
//! the Maglev table itself).

/// `fmix32` from MurmurHash3: a cheap, well-mixing finaliser.
#[inline(always)]
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of a client 5-tuple, every field as it stands in the packet
/// (network byte order, read as native integers).
#[inline(always)]
pub const fn flow_hash(src: u32, dst: u32, sport: u16, dport: u16, protocol: u8) -> u32 {
    let mut h = fmix32(src ^ 0x9e37_79b9);
    h = fmix32(h ^ dst);
    h = fmix32(h ^ ((sport as u32) << 16 | dport as u32));
    fmix32(h ^ protocol as u32)
}
