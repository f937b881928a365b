//! Header fields read and written in place, as they stand in the packet
//! (network byte order read as native integers: the checksum arithmetic in
//! `csum` works on that form, so nothing is swapped). Each access is
//! bounds-checked on its own, as the verifier wants.

use aya_ebpf::programs::XdpContext;

use crate::parse::ptr_at;

/// The 16-bit field at `offset`.
#[inline(always)]
pub fn read16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    let p: *const [u8; 2] = ptr_at(ctx, offset)?;
    // SAFETY: `ptr_at` checked the bounds.
    Some(u16::from_ne_bytes(unsafe { *p }))
}

/// Sets the 16-bit field at `offset`.
#[inline(always)]
pub fn write16(ctx: &XdpContext, offset: usize, value: u16) -> Option<()> {
    let p: *mut [u8; 2] = ptr_at(ctx, offset)?;
    // SAFETY: `ptr_at` checked the bounds; XDP frames are writable.
    unsafe { *p = value.to_ne_bytes() };
    Some(())
}

/// The 32-bit field at `offset`.
#[inline(always)]
pub fn read32(ctx: &XdpContext, offset: usize) -> Option<u32> {
    let p: *const [u8; 4] = ptr_at(ctx, offset)?;
    // SAFETY: `ptr_at` checked the bounds.
    Some(u32::from_ne_bytes(unsafe { *p }))
}

/// Sets the 32-bit field at `offset`.
#[inline(always)]
pub fn write32(ctx: &XdpContext, offset: usize, value: u32) -> Option<()> {
    let p: *mut [u8; 4] = ptr_at(ctx, offset)?;
    // SAFETY: `ptr_at` checked the bounds; XDP frames are writable.
    unsafe { *p = value.to_ne_bytes() };
    Some(())
}

/// Sets the IPv4 address at `offset` (a header's source or destination)
/// to `addr`, which is kept in network byte order like every address in
/// the maps.
#[inline(always)]
pub fn write_addr(ctx: &XdpContext, offset: usize, addr: u32) -> Option<()> {
    write32(ctx, offset, addr)
}
