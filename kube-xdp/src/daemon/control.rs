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

/// Writes `contents` atomically (a reader never sees half a file).
fn write_atomic(path: &Path, contents: &str) -> Result<(), ControlError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|e| file_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}

pub fn write_pid(run_dir: &Path) -> Result<(), ControlError> {
    std::fs::create_dir_all(run_dir).map_err(|e| file_err(run_dir, e))?;
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
    let text = serde_json::to_string_pretty(status).map_err(|e| file_err(run_dir, e))?;
    std::fs::create_dir_all(run_dir).map_err(|e| file_err(run_dir, e))?;
    write_atomic(&run_dir.join(HA_FILE), &text)
}

pub fn read_status(run_dir: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(run_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn read_pid(run_dir: &Path) -> Result<i32, ControlError> {
    let path = run_dir.join(PID_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|_| ControlError::NotRunning(path.clone()))?;
    text.trim().parse().map_err(|e| file_err(&path, e))
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
