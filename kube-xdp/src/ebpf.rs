//! The embedded eBPF object and how it is loaded.

use aya::{Ebpf, EbpfLoader};
use kube_xdp_common::map_name;
use std::path::Path;

/// The object built by `cargo xtask build-ebpf`, embedded at build time
/// (empty when it was missing then).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kube-xdp.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "this kube-xdp binary was built without its eBPF object: run `cargo xtask build-ebpf`, then rebuild kube-xdp (`cargo build -p kube-xdp`)"
    )]
    MissingObject,
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
}

/// The eBPF object's bytes.
///
/// # Errors
///
/// [`EbpfError::MissingObject`] when the binary was built before the object.
pub fn object() -> Result<&'static [u8], EbpfError> {
    if OBJECT.is_empty() {
        Err(EbpfError::MissingObject)
    } else {
        Ok(OBJECT)
    }
}

fn loader(flow_table_size: u32) -> EbpfLoader<'static> {
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_name::FLOWS, flow_table_size)
        .map_max_entries(map_name::REVERSE, flow_table_size);
    loader
}

/// Loads the object into the kernel, re-using the maps pinned in `pin_dir`
/// (a directory on a bpffs) and pinning there the ones that are not yet.
///
/// # Errors
///
/// When the object is missing or the kernel refuses a map or program.
pub fn load_pinned(pin_dir: &Path, flow_table_size: u32) -> Result<Ebpf, EbpfError> {
    let object = object()?;
    let mut loader = loader(flow_table_size);
    for name in map_name::PINNED {
        loader.map_pin_path(name, pin_dir.join(name));
    }
    Ok(loader.load(object)?)
}

/// Loads the object with private maps that nothing else sees (datapath
/// tests, benchmarks).
///
/// # Errors
///
/// When the object is missing or the kernel refuses a map or program.
pub fn load_private(flow_table_size: u32) -> Result<Ebpf, EbpfError> {
    Ok(loader(flow_table_size).load(object()?)?)
}
