//! The TCP timestamp option (RFC 7323), which the datapath rewrites so
//! that a backend's TIME_WAIT socket accepts a new SYN on a re-used SNAT
//! port (see `Flow::ts_offset` in kube-xdp-common).

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};

use crate::{SCAN, parse::ptr_at};

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_TIMESTAMP: u8 = 8;
const TCPOLEN_TIMESTAMP: u8 = 10;
/// The most option bytes a TCP header holds, rounded up to a power of two
/// so that masking an index keeps it inside the buffer.
const MAX_OPTIONS: usize = 64;
/// Options (NOPs included) looked at before giving up on finding a
/// timestamp: SYNs of Linux, macOS and Windows carry it within the first
/// six; a bound keeps the verifier's work small.
const MAX_OPTION_STEPS: usize = 8;
/// NOP, NOP, TIMESTAMP, 10: how Linux and most stacks lay out the option
/// on every segment after the SYN.
const ALIGNED_TS: [u8; 4] = [TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, TCPOLEN_TIMESTAMP];

/// The frame offset of the TSval field (TSecr follows it), if the segment
/// carries a timestamp option at an even offset. An odd offset would need a
/// byte-shifted checksum update; no common stack emits one, and such a
/// segment is treated as having no timestamp.
#[inline(always)]
pub fn find_timestamp(ctx: &XdpContext, l4: usize, tcp_len: usize) -> Option<usize> {
    if tcp_len >= 32 {
        let head: *const [u8; 4] = ptr_at(ctx, l4 + 20)?;
        // SAFETY: `ptr_at` checked the bounds.
        if unsafe { *head } == ALIGNED_TS {
            return Some(l4 + 24);
        }
    }
    // Anything else: copy the options out (one helper call, one bounds
    // check) and walk them on the stack.
    if tcp_len <= 20 {
        return None;
    }
    // Written so the verifier sees 1 ≤ len ≤ 64 (a zero-sized copy is
    // refused); equal to tcp_len - 20, which parsing bounded to 1..=40.
    let len = ((tcp_len - 21) & (MAX_OPTIONS - 1)) + 1;
    let mut opts = [0u8; MAX_OPTIONS];
    // SAFETY: `opts` has room for `len` ≤ MAX_OPTIONS bytes.
    let rc = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            (l4 + 20) as u32,
            opts.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if rc != 0 {
        return None;
    }
    let mut off = 0usize;
    for _ in 0..MAX_OPTION_STEPS {
        if off + 1 >= len {
            return None;
        }
        let kind = opts[off & (MAX_OPTIONS - 1)];
        if kind == TCPOPT_EOL {
            return None;
        }
        if kind == TCPOPT_NOP {
            off += 1;
            continue;
        }
        let opt_len = usize::from(opts[(off + 1) & (MAX_OPTIONS - 1)]);
        if kind == TCPOPT_TIMESTAMP {
            let whole = opt_len == usize::from(TCPOLEN_TIMESTAMP) && off + opt_len <= len;
            return (whole && off.is_multiple_of(2)).then_some(l4 + 20 + off + 2);
        }
        if opt_len < 2 {
            return None;
        }
        off += opt_len;
    }
    None
}

const TCPOPT_MSS: u8 = 2;
const TCPOPT_WSCALE: u8 = 3;
const TCPOPT_SACK_PERM: u8 = 4;
const TCPOPT_SACK: u8 = 5;
/// Options (NOPs included) looked at by [`scan`]: macOS's SYN has eight.
const MAX_SCAN_STEPS: usize = 12;

/// What a segment's options say, as far as the SYN-cookie paths need it.
#[derive(Clone, Copy, Default)]
pub struct Options {
    /// The MSS option's value, host order; 0: none.
    pub mss: u16,
    /// The window scale option's shift, if present.
    pub wscale: Option<u8>,
    /// SACK permitted.
    pub sack_perm: bool,
    /// The frame offset of the TSval field (TSecr follows), if present at
    /// an even offset.
    pub ts: Option<usize>,
    /// The frame offset of the first SACK block and the number of blocks
    /// (1-4), if a SACK option is present at an even offset.
    pub sack: Option<(usize, usize)>,
}

/// `scan`'s working memory: the options copied out, and what was found so
/// far. In a per-CPU map, not on the stack: the verifier does not track
/// what a map value holds, so the paths through the walk (an option found
/// or not, at each step) do not multiply its states.
#[repr(C)]
pub struct Scan {
    opts: [u8; MAX_OPTIONS],
    mss: u32,
    /// 0xff: none.
    wscale: u32,
    sack_perm: u32,
    /// Offset into the options of the TSval (≥ 2); 0: none.
    ts: u32,
    /// Offset into the options of the first SACK block (≥ 2); 0: none.
    sack_at: u32,
    sack_blocks: u32,
}

/// Walks the options of the TCP header at `l4` (`tcp_len` bytes long).
/// Options at odd offsets that would be rewritten (timestamps, SACK
/// blocks) are reported as absent, as in [`find_timestamp`].
#[inline(always)]
pub fn scan(ctx: &XdpContext, l4: usize, tcp_len: usize) -> Options {
    let mut found = Options::default();
    if tcp_len <= 20 {
        return found;
    }
    let Some(w) = SCAN.get_ptr_mut(0) else {
        return found;
    };
    let len = ((tcp_len - 21) & (MAX_OPTIONS - 1)) + 1;
    // SAFETY: this CPU's slot, touched only by this CPU while the program
    // runs; `opts` has room for `len` ≤ MAX_OPTIONS bytes.
    unsafe {
        (*w).mss = 0;
        (*w).wscale = 0xff;
        (*w).sack_perm = 0;
        (*w).ts = 0;
        (*w).sack_at = 0;
        (*w).sack_blocks = 0;
        let rc = bpf_xdp_load_bytes(
            ctx.ctx,
            (l4 + 20) as u32,
            (*w).opts.as_mut_ptr().cast(),
            len as u32,
        );
        if rc != 0 {
            return found;
        }
        let mut off = 0usize;
        for _ in 0..MAX_SCAN_STEPS {
            if off >= len {
                break;
            }
            let kind = (*w).opts[off & (MAX_OPTIONS - 1)];
            if kind == TCPOPT_EOL {
                break;
            }
            if kind == TCPOPT_NOP {
                off += 1;
                continue;
            }
            if off + 1 >= len {
                break;
            }
            let opt_len = usize::from((*w).opts[(off + 1) & (MAX_OPTIONS - 1)]);
            if opt_len < 2 || off + opt_len > len {
                break;
            }
            let b2 = (*w).opts[(off + 2) & (MAX_OPTIONS - 1)];
            let b3 = (*w).opts[(off + 3) & (MAX_OPTIONS - 1)];
            let even = off.is_multiple_of(2);
            if kind == TCPOPT_MSS && opt_len == 4 {
                (*w).mss = u32::from(u16::from_be_bytes([b2, b3]));
            } else if kind == TCPOPT_WSCALE && opt_len == 3 {
                (*w).wscale = u32::from(b2);
            } else if kind == TCPOPT_SACK_PERM && opt_len == 2 {
                (*w).sack_perm = 1;
            } else if kind == TCPOPT_TIMESTAMP && opt_len == 10 && even {
                (*w).ts = (off + 2) as u32;
            } else if kind == TCPOPT_SACK && even && (opt_len - 2) % 8 == 0 {
                (*w).sack_at = (off + 2) as u32;
                (*w).sack_blocks = ((opt_len - 2) / 8) as u32;
            }
            off += opt_len;
        }
        found.mss = (*w).mss as u16;
        found.wscale = ((*w).wscale != 0xff).then_some((*w).wscale as u8);
        found.sack_perm = (*w).sack_perm != 0;
        // Masked: the verifier knows nothing of what a map value holds, and
        // an offset into the packet must be bounded (both are < 67).
        let ts = (*w).ts as usize & 0x7f;
        found.ts = (ts != 0).then_some(l4 + 20 + ts);
        let sack_at = (*w).sack_at as usize & 0x7f;
        found.sack = (sack_at != 0).then_some((l4 + 20 + sack_at, (*w).sack_blocks as usize & 7));
    }
    found
}
