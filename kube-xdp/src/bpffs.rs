//! The BPF filesystem that holds the pins.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

/// `BPF_FS_MAGIC` from `include/uapi/linux/magic.h`.
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

/// Where the kernel's bpffs is conventionally mounted.
pub const BPFFS_ROOT: &str = "/sys/fs/bpf";

#[derive(Debug, thiserror::Error)]
pub enum BpffsError {
    #[error(
        "pin_path {path} is not on a BPF filesystem: choose a directory under {BPFFS_ROOT} or mount one with `mount -t bpf bpf DIR`"
    )]
    NotBpffs { path: PathBuf },
    #[error("mounting the BPF filesystem on {BPFFS_ROOT}: {0}")]
    Mount(io::Error),
    #[error("creating pin directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
}

/// Whether `path` is on a BPF filesystem (`statfs(2)`'s magic).
///
/// # Errors
///
/// When `path` cannot be looked at.
pub fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `buf` is a valid out
    // pointer for the duration of the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(buf.f_type == BPF_FS_MAGIC)
}

/// Makes sure `pin_path` exists on a bpffs, mounting one on
/// [`BPFFS_ROOT`] when that is where the path lives and nothing is mounted
/// there yet (as on a host that never ran a BPF tool).
///
/// # Errors
///
/// When the path is elsewhere than on a bpffs, or mounting or creating it
/// fails.
pub fn prepare_pin_dir(pin_path: &Path) -> Result<(), BpffsError> {
    let root = Path::new(BPFFS_ROOT);
    if pin_path.starts_with(root) && !is_bpffs(root).unwrap_or(false) {
        let src = CString::new("bpf").unwrap();
        let target = CString::new(BPFFS_ROOT).unwrap();
        // SAFETY: all pointers are valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(BpffsError::Mount(io::Error::last_os_error()));
        }
        tracing::info!("mounted the BPF filesystem on {BPFFS_ROOT}");
    }
    std::fs::create_dir_all(pin_path).map_err(|source| BpffsError::CreateDir {
        path: pin_path.to_owned(),
        source,
    })?;
    if !is_bpffs(pin_path).unwrap_or(false) {
        return Err(BpffsError::NotBpffs {
            path: pin_path.to_owned(),
        });
    }
    Ok(())
}
