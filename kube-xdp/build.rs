//! Embeds the eBPF object built by `cargo xtask build-ebpf`.
//!
//! The object is built separately (nightly, `bpfel-unknown-none`) so that
//! the daemon, clippy and the unit tests build with stable alone. When the
//! object is missing an empty placeholder is embedded and the binary says
//! what to run.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=KUBE_XDP_EBPF_OBJECT");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    let object = match env::var_os("KUBE_XDP_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
            let target = env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| manifest.join("..").join("target"));
            target.join("bpfel-unknown-none/release/kube-xdp-ebpf")
        }
    };
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("kube-xdp.bpf.o");
    match fs::read(&object) {
        Ok(bytes) => fs::write(&out, bytes).unwrap(),
        Err(_) => {
            println!(
                "cargo:warning=eBPF object {} not found: the binary will not load until you run `cargo xtask build-ebpf` and rebuild",
                object.display()
            );
            fs::write(&out, []).unwrap();
        }
    }
}
