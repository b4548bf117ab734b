//! `spool.dir` messages an operator can act on: every error opening the spool
//! names the path and the operation (issue 11); `spool verify` and `spool
//! inspect` refuse a directory that is not a spool; `check-config` checks that
//! the spool directory can be created and locked.
//!
//! Permission cases must fail for root too (CI runs as root): when the tests
//! run as root, the binary is started as `nobody` (uid 65534), so the kernel
//! really refuses; never skipped.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use presence_bridge::spool::store::{Store, StoreOptions};
use presence_bridge::spool::{FsyncPolicy, SpoolError};

const NOBODY: u32 = 65534;

fn opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        dir: dir.to_path_buf(),
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::Never,
    }
}

fn open_err(dir: &Path) -> String {
    match Store::open(opts(dir)) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// A temporary directory everyone may traverse (the binary may run as nobody).
fn tempdir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// The binary with only `PATH`, `spool.dir` and a port-free configuration,
/// run in `cwd` (so a relative default never lands in the repository).
fn bin(cwd: &Path, spool_dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_presence-bridge"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PRESENCE_BRIDGE__SPOOL__DIR", spool_dir)
        .env("PRESENCE_BRIDGE__KAFKA__BROKERS", "127.0.0.1:1")
        .env("PRESENCE_BRIDGE__HTTP__LISTEN", "127.0.0.1:0")
        .env("PRESENCE_BRIDGE__ADMIN__LISTEN", "127.0.0.1:0")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// As an unprivileged user: as root, started as nobody.
fn unprivileged(c: &mut Command) -> &mut Command {
    if is_root() {
        c.uid(NOBODY).gid(NOBODY);
    }
    c
}

/// Runs `c` to its end; a guard kills it after a minute (only against a
/// hang, e.g. a `serve` that wrongly started).
fn run(c: &mut Command) -> Output {
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Makes `0` writable again when dropped (declared after its temporary
/// directory, so dropped before it), so the test leaves nothing behind even
/// when not run as root.
struct Writable(PathBuf);

impl Drop for Writable {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

fn read_only(dir: &Path) -> Writable {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    Writable(dir.to_path_buf())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path(), e.metadata().unwrap().len())
        })
        .collect();
    v.sort();
    v
}

// ---- 1. Opening the spool: every error names the path -----------------------

#[test]
fn a_file_in_place_of_the_spool_directory_is_named() {
    let t = tempdir();
    let file = t.path().join("spool");
    std::fs::write(&file, b"x").unwrap();
    let e = open_err(&file);
    assert!(
        e.contains(&format!("{} exists and is not a directory", file.display())),
        "{e}"
    );
    assert!(e.contains("point spool.dir at a directory"), "{e}");
}

#[test]
fn a_spool_directory_under_a_regular_file_names_the_file() {
    let t = tempdir();
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("spool");
    let e = open_err(&dir);
    assert!(
        e.contains(&format!(
            "cannot create the directory {}: {} is not a directory",
            dir.display(),
            file.display()
        )),
        "{e}"
    );
}

#[test]
fn a_held_lock_names_the_lock_file_and_the_holder_pid() {
    let t = tempdir();
    let (_held, _) = Store::open(opts(t.path())).unwrap();
    let err = Store::open(opts(t.path())).err().expect("a second open");
    assert!(matches!(err, SpoolError::Locked { .. }), "{err}");
    let e = err.to_string();
    let lock = t.path().join("LOCK");
    assert!(
        e.contains(&format!(
            "another presence-bridge (pid {}) holds the lock on {}",
            std::process::id(),
            lock.display()
        )),
        "{e}"
    );
    assert!(
        e.contains("stop it, or give this bridge its own spool.dir"),
        "{e}"
    );
}

#[test]
fn a_segment_that_cannot_be_read_is_named() {
    let t = tempdir();
    drop(Store::open(opts(t.path())).unwrap());
    // Fails for root too: a directory where a segment file should be.
    let seg = t.path().join("00000000000000000042.seg");
    std::fs::create_dir(&seg).unwrap();
    let e = open_err(t.path());
    assert!(
        e.contains(&format!("reading the segment {}", seg.display())),
        "{e}"
    );
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn an_unreadable_checkpoint_is_named() {
    let t = tempdir();
    drop(Store::open(opts(t.path())).unwrap());
    let ckpt = t.path().join("checkpoint");
    std::fs::remove_file(&ckpt).unwrap();
    std::fs::create_dir(&ckpt).unwrap(); // reading it fails, also for root
    let e = open_err(t.path());
    assert!(
        e.contains(&format!("reading the checkpoint {}", ckpt.display())),
        "{e}"
    );
}

#[test]
fn a_read_only_file_system_says_so() {
    let e = SpoolError::file(
        "creating the directory",
        Path::new("/srv/spool"),
        std::io::Error::from_raw_os_error(30), // EROFS
    )
    .to_string();
    assert!(e.starts_with("creating the directory /srv/spool: "), "{e}");
    assert!(
        e.contains("read-only: put spool.dir on a writable volume"),
        "{e}"
    );
}

/// `serve` itself: the message reaches stderr with the path, for an
/// unwritable directory (as an unprivileged user: nobody when run as root).
#[test]
fn serve_names_an_unwritable_spool_directory() {
    let t = tempdir();
    let dir = t.path().join("spool");
    std::fs::create_dir(&dir).unwrap();
    let _writable = read_only(&dir);
    let out = run(unprivileged(bin(t.path(), &dir).arg("serve")));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lock = dir.join("LOCK");
    assert!(
        err.contains(&format!(
            "spool.dir: opening the spool lock {}: Permission denied",
            lock.display()
        )),
        "{err}"
    );
    assert!(err.contains("needs read and write access to"), "{err}");
    assert!(!lock.exists());
}

#[test]
fn serve_names_a_file_in_place_of_the_spool_directory() {
    let t = tempdir();
    let file = t.path().join("spool");
    std::fs::write(&file, b"x").unwrap();
    let out = run(bin(t.path(), &file).arg("serve"));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "spool.dir: {} exists and is not a directory",
            file.display()
        )),
        "{err}"
    );
}

// ---- 2. spool verify / inspect refuse what is not a spool -------------------

fn not_a_spool(dir: &Path, why: &str) {
    let cwd = tempdir();
    for cmd in ["verify", "inspect"] {
        let out = run(bin(cwd.path(), dir).args(["spool", cmd]));
        let (err, text) = (stderr(&out), stdout(&out));
        assert_eq!(out.status.code(), Some(2), "spool {cmd}: {err}{text}");
        assert!(
            err.contains(&format!(
                "spool.dir: {} is not a spool: {why}",
                dir.display()
            )),
            "spool {cmd}: {err}"
        );
        assert!(!text.contains("checksums ok"), "spool {cmd}: {text}");
        assert!(text.is_empty(), "spool {cmd}: {text}");
    }
}

#[test]
fn verify_and_inspect_refuse_a_directory_of_other_files() {
    let t = tempdir();
    std::fs::write(t.path().join("passwd"), b"root:x:0:0\n").unwrap();
    std::fs::create_dir(t.path().join("ssl")).unwrap();
    not_a_spool(t.path(), "it holds none of a spool's files");
}

#[test]
fn verify_and_inspect_refuse_etc() {
    not_a_spool(Path::new("/etc"), "it holds none of a spool's files");
}

#[test]
fn verify_and_inspect_refuse_an_empty_directory() {
    let t = tempdir();
    not_a_spool(t.path(), "it is an empty directory");
}

#[test]
fn verify_and_inspect_refuse_a_missing_path() {
    let t = tempdir();
    not_a_spool(&t.path().join("nothing"), "it does not exist");
}

#[test]
fn a_fresh_spool_verifies_ok_and_a_spool_without_its_lock_too() {
    let t = tempdir();
    drop(Store::open(opts(t.path())).unwrap());
    let names: Vec<String> = listing(t.path())
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["00000000000000000001.seg", "LOCK", "checkpoint"],
        "what a fresh spool holds"
    );
    let check = |why: &str| {
        let out = run(bin(t.path(), t.path()).args(["spool", "verify"]));
        assert_eq!(out.status.code(), Some(0), "{why}: {}", stderr(&out));
        assert!(stdout(&out).contains("all checksums ok"), "{why}");
        let out = run(bin(t.path(), t.path()).args(["spool", "inspect"]));
        assert_eq!(out.status.code(), Some(0), "{why}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["pending_events"], 0, "{why}");
    };
    check("fresh");
    // Segments copied elsewhere for a look, without LOCK and checkpoint.
    std::fs::remove_file(t.path().join("LOCK")).unwrap();
    std::fs::remove_file(t.path().join("checkpoint")).unwrap();
    check("segments only");
}
