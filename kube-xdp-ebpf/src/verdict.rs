//! What every stage answers with: the XDP action and the reason it is
//! counted under (see `stats::count`).

use kube_xdp_common::stats::Counter;

/// An `xdp_action` value and the counter that says why.
pub type Verdict = (u32, Counter);
