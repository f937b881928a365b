//! `kube-xdp import-haproxy FILE [-o OUT]`: haproxy.cfg → kube-xdp.toml,
//! with a summary on stderr of what was translated, approximated and left
//! out. Fails only when nothing usable was found.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use kube_xdp::import::{self, Options};

pub fn import_haproxy(
    file: &Path,
    output: Option<&Path>,
    vip: Option<Ipv4Addr>,
    interface: Option<String>,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let options = Options {
        vip,
        interface_given: interface.is_some(),
        interface: interface.unwrap_or_else(|| Options::default().interface),
    };
    let salt = || import::random_salt().expect("reading /dev/urandom");
    let imported = import::import(&name, &text, &options, &|v| std::env::var(v).ok(), &salt)?;
    eprint!("{}", imported.summary(&name));
    match output {
        None => print!("{}", imported.toml),
        Some(out) => {
            write_atomically(out, &imported.toml)?;
            eprintln!(
                "wrote {}: check it with `kube-xdp check-config --config {}`",
                out.display(),
                out.display()
            );
        }
    }
    Ok(())
}

/// Writes through a temporary file in the same directory, so a reader
/// (the daemon's reload) never sees half a file.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".import-tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
