//! `kube-xdp check-config`: validate the file, build its plan on this
//! host, then print the plan or every error. `kube-xdp run` builds the
//! same plan: what this prints is what it applies, and what this refuses
//! it refuses.

use crate::Common;
use kube_xdp::{host::RealHost, plan::Plan};

pub fn check_config(common: &Common) -> anyhow::Result<()> {
    let plan = Plan::load(&common.config, &RealHost)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", plan.summary());
    println!("configuration OK");
    Ok(())
}
