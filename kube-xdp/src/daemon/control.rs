//! How `kube-xdp reload` talks to a running daemon: a pid file and a
//! status file in `run_dir`. The CLI sends SIGHUP and waits for the status
//! file's generation to move on.

use serde::{Deserialize, Serialize};

use crate::{
    ha::pair::{HA_FILE, HaStatus},
    view::{NAMES_FILE, Names},
};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub const PID_FILE: &str = "kube-xdp.pid";
pub const STATUS_FILE: &str = "reload-status.json";

/// The outcome of the last (re)load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Bumped by every load and reload attempt.
    pub generation: u64,
    pub ok: bool,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no kube-xdp daemon is running ({0} not found): start it with `kube-xdp run`")]
    NotRunning(PathBuf),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("daemon (pid {0}) is gone: {1}")]
    Gone(i32, std::io::Error),
    #[error("the daemon did not answer the reload within {0:?}")]
    Timeout(Duration),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> ControlError {
    ControlError::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Writes `contents` atomically (a reader never sees half a file), and
/// never through a link someone planted: the temporary file is new (it
/// fails if anything, a symlink included, is at its name) and opened with
/// `O_NOFOLLOW`, and `rename(2)` replaces a link at `path` rather than
/// following it.
fn write_atomic(path: &Path, contents: &str) -> Result<(), ControlError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| file_err(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

/// Refuses a `run_dir` that anyone but root can write: whoever can write
/// there can replace the pid file and aim `kube-xdp reload` elsewhere.
///
/// # Errors
///
/// [`ControlError::File`] saying why.
pub fn check_run_dir(run_dir: &Path) -> Result<(), ControlError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(run_dir).map_err(|e| file_err(run_dir, e))?;
    if !meta.is_dir() {
        return Err(file_err(run_dir, "is not a directory"));
    }
    if crate::host::others_can_write(&meta) {
        return Err(file_err(
            run_dir,
            format!(
                "run_dir must be a directory only root can write (owner uid {}, mode {:o}): \
                 use a directory of its own, e.g. /run/kube-xdp",
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

pub fn write_pid(run_dir: &Path) -> Result<(), ControlError> {
    std::fs::create_dir_all(run_dir).map_err(|e| file_err(run_dir, e))?;
    check_run_dir(run_dir)?;
    write_atomic(
        &run_dir.join(PID_FILE),
        &format!("{}\n", std::process::id()),
    )
}

pub fn remove_pid(run_dir: &Path) {
    let _ = std::fs::remove_file(run_dir.join(PID_FILE));
}

pub fn write_status(run_dir: &Path, status: &Status) -> Result<(), ControlError> {
    let text = serde_json::to_string(status).map_err(|e| file_err(run_dir, e))?;
    write_atomic(&run_dir.join(STATUS_FILE), &text)
}

/// Publishes the names of what is programmed (see [`Names`]).
pub fn write_names(run_dir: &Path, names: &Names) -> Result<(), ControlError> {
    std::fs::create_dir_all(run_dir).map_err(|e| file_err(run_dir, e))?;
    write_atomic(&run_dir.join(NAMES_FILE), &names.to_json())
}

/// Publishes the pair's status (see [`HaStatus`]).
pub fn write_ha(run_dir: &Path, status: &HaStatus) -> Result<(), ControlError> {
    write_json(run_dir, HA_FILE, status)
}

/// Writes `value` as `run_dir/name`, atomically.
pub fn write_json(
    run_dir: &Path,
    name: &str,
    value: &impl serde::Serialize,
) -> Result<(), ControlError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| file_err(run_dir, e))?;
    std::fs::create_dir_all(run_dir).map_err(|e| file_err(run_dir, e))?;
    write_atomic(&run_dir.join(name), &text)
}

pub fn read_status(run_dir: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(run_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The daemon's pid, checked to be a running `kube-xdp run`: a stale pid
/// file (the daemon crashed, the pid went to another process) or one
/// holding 0 or a negative number (which `kill(2)` would take for a
/// process group) is refused, never signalled.
fn read_pid(run_dir: &Path) -> Result<i32, ControlError> {
    let path = run_dir.join(PID_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|_| ControlError::NotRunning(path.clone()))?;
    let pid: i32 = text.trim().parse().map_err(|e| file_err(&path, e))?;
    if pid <= 0 {
        return Err(file_err(&path, format!("holds {pid}, not a process id")));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program = args
        .first()
        .map(|a| Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(a)));
    let is_daemon = program.is_some_and(|p| p.file_name().is_some_and(|n| n == "kube-xdp"))
        && args.iter().any(|a| *a == b"run");
    if !is_daemon {
        return Err(file_err(
            &path,
            format!(
                "names pid {pid}, which is not a running `kube-xdp run` (a stale pid file?): \
                 not signalling it; start the daemon, or remove the file"
            ),
        ));
    }
    Ok(pid)
}

/// The pid of the `kube-xdp run` whose pid file is in `run_dir`, if one
/// runs (a stale pid file names none).
pub fn running_daemon(run_dir: &Path) -> Option<i32> {
    read_pid(run_dir).ok()
}

/// Asks the daemon to reload and waits (at most `wait`) for its verdict.
///
/// # Errors
///
/// When no daemon runs, or it does not answer in time.
pub fn request_reload(run_dir: &Path, wait: Duration) -> Result<Status, ControlError> {
    let pid = read_pid(run_dir)?;
    let before = read_status(run_dir).map_or(0, |s| s.generation);
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(ControlError::Gone(pid, std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(status) = read_status(run_dir)
            && status.generation > before
        {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(ControlError::Timeout(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("kxdp-control")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn a_pid_file_naming_no_daemon_is_never_signalled() {
        let d = dir();
        // Our own pid: alive, but a test binary, not `kube-xdp run`.
        for pid in ["0", "-1", "-4242", &std::process::id().to_string()] {
            std::fs::write(d.path().join(PID_FILE), pid).unwrap();
            let err = request_reload(d.path(), Duration::from_millis(50)).unwrap_err();
            assert!(matches!(err, ControlError::File { .. }), "pid {pid}: {err}");
        }
        // Still here: nothing was signalled.
    }

    #[test]
    fn files_are_written_without_following_a_planted_link() {
        let d = dir();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join(PID_FILE)).unwrap();
        std::os::unix::fs::symlink(
            &victim,
            d.path()
                .join(format!(".{PID_FILE}.{}.tmp", std::process::id())),
        )
        .unwrap();
        write_atomic(&d.path().join(PID_FILE), "1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(d.path().join(PID_FILE)).unwrap();
        assert!(meta.is_file(), "the pid file is a file of its own now");
    }

    #[test]
    fn a_run_dir_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let d = dir();
        assert!(check_run_dir(d.path()).is_ok());
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let err = check_run_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("only root can write"), "{err}");
        assert!(check_run_dir(Path::new("/tmp")).is_err());
    }
}
