//! The BPF filesystem that holds the pins.

use std::{
    ffi::CString,
    io,
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt as _, MetadataExt as _},
    },
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
    #[error(
        "pin directory {path}: {why}: whoever can write there can plant maps or links the daemon would adopt. \
         Make it root's and private (chown root:root {path} && chmod 0700 {path}), or remove it if nothing is \
         pinned there (`kube-xdp detach`) and let kube-xdp create it"
    )]
    Unsafe { path: PathBuf, why: String },
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
        // Root's only: a bpffs root is world-writable with the sticky bit
        // by default (1777), where anyone could pre-create our directory.
        let options = CString::new("mode=0700").unwrap();
        // SAFETY: all pointers are valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                src.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(BpffsError::Mount(io::Error::last_os_error()));
        }
        tracing::info!("mounted the BPF filesystem on {BPFFS_ROOT} (mode 0700)");
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(pin_path)
        .map_err(|source| BpffsError::CreateDir {
            path: pin_path.to_owned(),
            source,
        })?;
    if !is_bpffs(pin_path).unwrap_or(false) {
        return Err(BpffsError::NotBpffs {
            path: pin_path.to_owned(),
        });
    }
    check_pin_dir(pin_path)
}

/// The pin directory must be trusted before its pins are: a real
/// directory (not a symbolic link), owned by root or by us, that neither
/// group nor others can write; and each directory above it owned by root
/// or us and, where others can write it, sticky (as a bpffs root's 1777 is),
/// so that nobody else can rename ours away and put theirs in its place.
///
/// # Errors
///
/// [`BpffsError::Unsafe`] saying what is wrong.
pub fn check_pin_dir(pin_path: &Path) -> Result<(), BpffsError> {
    let unsafe_because = |why: String| BpffsError::Unsafe {
        path: pin_path.to_owned(),
        why,
    };
    let meta = std::fs::symlink_metadata(pin_path)
        .map_err(|e| unsafe_because(format!("cannot look at it: {e}")))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_because("it is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_because("it is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let owner_ok = |uid: u32| uid == 0 || uid == me;
    if !owner_ok(meta.uid()) {
        return Err(unsafe_because(format!(
            "it belongs to uid {}, not to root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "its mode {:04o} lets {} write in it",
            meta.mode() & 0o7777,
            if meta.mode() & 0o002 != 0 {
                "anyone"
            } else {
                "its group"
            }
        )));
    }
    for dir in pin_path.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if !owner_ok(meta.uid()) {
            return Err(unsafe_because(format!(
                "{} above it belongs to uid {}, not to root",
                dir.display(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
            return Err(unsafe_because(format!(
                "{} above it has mode {:04o}: others can write there without the sticky bit",
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn refused(path: &Path) -> String {
        match check_pin_dir(path) {
            Ok(()) => panic!("{} was accepted as a pin directory", path.display()),
            Err(e) => e.to_string(),
        }
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_pin_directory_others_can_write_or_replace_is_refused() {
        let top = tempfile::Builder::new()
            .prefix("kxdp-pindir")
            .tempdir()
            .unwrap();
        let pins = top.path().join("kube-xdp");
        std::fs::create_dir(&pins).unwrap();
        chmod(&pins, 0o700);
        check_pin_dir(&pins).unwrap();

        chmod(&pins, 0o777);
        let said = refused(&pins);
        assert!(
            said.contains("its mode 0777 lets anyone write in it"),
            "{said}"
        );
        assert!(
            said.starts_with(&format!("pin directory {}:", pins.display())),
            "{said}"
        );
        chmod(&pins, 0o770);
        assert!(refused(&pins).contains("lets its group write"));
        chmod(&pins, 0o700);

        // Pre-created by someone else (uid 65534, nobody).
        std::os::unix::fs::chown(&pins, Some(65534), None).unwrap();
        assert!(refused(&pins).contains("it belongs to uid 65534, not to root"));
        std::os::unix::fs::chown(&pins, Some(0), None).unwrap();

        // A link planted at its name, to a directory that would pass.
        let link = top.path().join("link");
        std::os::unix::fs::symlink(&pins, &link).unwrap();
        assert!(refused(&link).contains("it is a symbolic link"));

        // A directory above it that others can write, without the sticky
        // bit: they could rename ours away.
        chmod(top.path(), 0o777);
        let said = refused(&pins);
        assert!(
            said.contains(&format!(
                "{} above it has mode 0777: others can write there without the sticky bit",
                top.path().display()
            )),
            "{said}"
        );
        // With the sticky bit (a bpffs root's 1777) it is fine.
        chmod(top.path(), 0o1777);
        check_pin_dir(&pins).unwrap();
        chmod(top.path(), 0o700);
    }
}
