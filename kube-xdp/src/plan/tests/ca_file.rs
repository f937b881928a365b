//! `ca_file` is read and judged when the plan is built (`check-config`,
//! `run`, a reload): never a file that could hang or exhaust the daemon,
//! never one without a certificate the checks could use; and its contents
//! are part of the check, so a reload with a rotated CA restarts the
//! checkers with it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use super::{FakeHost, assert_env, env, plan};
use crate::config::tests::{backend, service};

/// An https check of service "api" trusting `path`, with one backend.
fn with_ca(path: &Path) -> String {
    service(
        "",
        &format!(
            "[service.health_check]\nkind = \"https\"\nca_file = \"{}\"\n\n{}",
            path.display(),
            backend("name = \"a\"\naddress = \"10.4.0.11\"")
        ),
    )
}

/// The one error of a plan trusting `path`, after checking that it is
/// at `ca_file`'s line and key. The plan is built in a thread: a file that
/// blocks its reader fails the test instead of hanging it.
#[track_caller]
fn ca_error(path: &Path) -> String {
    let text = with_ca(path);
    let (tx, rx) = mpsc::channel();
    let job = text.clone();
    std::thread::spawn(move || {
        let _ = tx.send(env(&job, &FakeHost::lb()));
    });
    let report = rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("building the plan hung on ca_file {}", path.display()));
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        &text,
        "ca_file",
        "ca_file",
        &path.display().to_string(),
    );
    errors[0].to_string()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kxdp-ca")
        .tempdir()
        .unwrap()
}

fn pem() -> String {
    rcgen::generate_simple_self_signed(vec!["kubernetes".to_owned()])
        .unwrap()
        .cert
        .pem()
}

#[test]
fn a_fifo_as_ca_file_is_refused_without_waiting_for_a_writer() {
    let dir = tempdir();
    let fifo = dir.path().join("ca.crt");
    let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let shown = ca_error(&fifo);
    assert!(shown.contains("a FIFO, not a regular file"), "{shown}");
}

#[test]
fn dev_zero_as_ca_file_is_refused_without_reading_it() {
    let shown = ca_error(Path::new("/dev/zero"));
    assert!(
        shown.contains("a character device, not a regular file"),
        "{shown}"
    );
}

#[test]
fn a_directory_as_ca_file_is_refused() {
    let dir = tempdir();
    let shown = ca_error(dir.path());
    assert!(shown.contains("a directory, not a regular file"), "{shown}");
}

#[test]
fn a_ca_file_larger_than_1_mib_is_refused() {
    let dir = tempdir();
    let big = dir.path().join("ca.crt");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(2 << 20).unwrap();
    let shown = ca_error(&big);
    assert!(shown.contains("larger than 1 MiB"), "{shown}");
}

#[test]
fn a_ca_file_without_a_usable_certificate_is_refused() {
    let dir = tempdir();
    let file = dir.path().join("ca.crt");
    for (contents, says) in [
        ("this is not PEM\n", "no certificate"),
        (
            "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZQ==\n-----END PRIVATE KEY-----\n",
            "no certificate",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n",
            "certificate #1 is not a usable CA",
        ),
    ] {
        std::fs::write(&file, contents).unwrap();
        let shown = ca_error(&file);
        assert!(shown.contains(says), "{contents:?}: {shown}");
    }
}

#[test]
fn a_readable_pem_ca_file_passes() {
    let dir = tempdir();
    let file: PathBuf = dir.path().join("ca.crt");
    std::fs::write(&file, pem()).unwrap();
    let report = env(&with_ca(&file), &FakeHost::lb());
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn a_rotated_ca_file_changes_the_checkers_and_an_unchanged_one_does_not() {
    let dir = tempdir();
    let file = dir.path().join("ca.crt");
    let text = with_ca(&file);
    std::fs::write(&file, pem()).unwrap();
    let before = plan(&text, &FakeHost::lb()).checkers();
    assert_eq!(before.len(), 1);
    assert_eq!(
        plan(&text, &FakeHost::lb()).checkers(),
        before,
        "the same file asks for the same checkers (no restart)"
    );
    // The CA is rotated in place, same path: a reload must restart the
    // checkers with the new CA.
    std::fs::write(&file, pem()).unwrap();
    let after = plan(&text, &FakeHost::lb()).checkers();
    assert_ne!(
        after, before,
        "a reload would keep checking with the old CA"
    );
}
