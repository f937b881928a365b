//! The TCP timestamp option (RFC 7323), which the datapath rewrites so
//! that a backend's TIME_WAIT socket accepts a new SYN on a re-used SNAT
//! port (see `Flow::ts_offset` in kube-xdp-common).

use aya_ebpf::{helpers::generated::bpf_xdp_load_bytes, programs::XdpContext};

use crate::parse::ptr_at;

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
