//! `kube-xdp check-config`: validate, then print the plan or the errors.

use crate::Common;
use kube_xdp::config::Config;

pub fn check_config(common: &Common) -> anyhow::Result<()> {
    let config = Config::load(&common.config)?;
    let report = config.check_environment();
    for w in report.warnings() {
        eprintln!("warning: {w}");
    }
    let errors: Vec<String> = report.errors().map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        anyhow::bail!("{}", errors.join("\n"));
    }
    print!("{}", config.summary());
    println!("configuration OK");
    Ok(())
}
