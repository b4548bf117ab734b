//! `spool.dir` messages an operator can act on: every error opening the spool
//! names the path and the operation (issue 11); `spool verify` and `spool
//! inspect` refuse a directory that is not a spool; `check-config` checks that
//! the spool directory can be created and locked.
//!
//! Permission cases must fail for root too (CI runs as root): when the tests
//! run as root, the binary is started as `nobody` (uid 65534), so the kernel
//! really refuses; never skipped.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use presence_bridge::spool::store::{Store, StoreOptions};
use presence_bridge::spool::SpoolError;

const NOBODY: u32 = 65534;

fn opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        max_bytes: 64 * 1024 * 1024,
        ..presence_bridge::spool::testkit::options(dir)
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
    bin_at(
        Path::new(env!("CARGO_BIN_EXE_presence-bridge")),
        cwd,
        spool_dir,
    )
}

fn bin_at(program: &Path, cwd: &Path, spool_dir: &Path) -> Command {
    let mut c = Command::new(program);
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

/// Held while a copy of the binary is written and while a child is started:
/// a child forked while the copy is still open for writing would hold it
/// open, and starting the copy would then fail ("text file busy").
static FORK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Closes `store`, then waits for the children being started: one forked
/// (by another test) while the store's lock file was open holds the lock
/// until it execs, and `run` holds [`FORK`] until then. After this nothing
/// holds the lock, so the spool can be opened again.
fn close_spool(store: Store) {
    drop(store);
    drop(FORK.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Creates a spool in `dir` and closes it ([`close_spool`]).
fn create_spool(dir: &Path) {
    close_spool(Store::open(opts(dir)).unwrap().0);
}

/// [`bin`] as an unprivileged user: as root, started as nobody, from a copy
/// of the binary in `cwd` (a [`tempdir`] everyone may traverse): the build
/// directory may be private to root (a clone in a `mktemp -d` directory).
fn unprivileged(cwd: &Path, spool_dir: &Path) -> Command {
    if !is_root() {
        return bin(cwd, spool_dir);
    }
    let copy = cwd.join("presence-bridge");
    {
        let _fork = FORK.lock().unwrap_or_else(|p| p.into_inner());
        std::fs::copy(env!("CARGO_BIN_EXE_presence-bridge"), &copy).unwrap();
    }
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = bin_at(&copy, cwd, spool_dir);
    c.uid(NOBODY).gid(NOBODY);
    c
}

/// Runs `c` to its end; a guard kills it after a minute (only against a
/// hang, e.g. a `serve` that wrongly started).
fn run(c: &mut Command) -> Output {
    let mut child = {
        let _fork = FORK.lock().unwrap_or_else(|p| p.into_inner());
        c.spawn().unwrap()
    };
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
    create_spool(t.path());
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
    create_spool(t.path());
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
fn a_first_segment_that_cannot_be_created_names_the_directory() {
    let t = tempdir();
    // Fails for root too: a directory where the new segment's temporary file goes.
    std::fs::create_dir(t.path().join("00000000000000000001.seg.tmp")).unwrap();
    let e = open_err(t.path());
    assert!(
        e.contains(&format!(
            "creating the first segment in {}: ",
            t.path().display()
        )),
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
    let out = run(unprivileged(t.path(), &dir).arg("serve"));
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
    // The operator's to fix: a configuration error (exit 2), said on a plain
    // stderr line as well as in the log.
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "presence-bridge: configuration error: spool.dir: {} exists and is not a directory",
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
    create_spool(t.path());
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

// ---- 3. check-config checks the spool directory -----------------------------

fn check_config(cwd: &Path, dir: &Path) -> Output {
    run(bin(cwd, dir).arg("check-config"))
}

fn assert_config_error(out: &Output, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "presence-bridge: configuration error: spool.dir: {expected}"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", stdout(out));
}

#[test]
fn check_config_fails_for_a_file_in_place_of_the_directory() {
    let t = tempdir();
    let file = t.path().join("spool");
    std::fs::write(&file, b"x").unwrap();
    let out = check_config(t.path(), &file);
    assert_config_error(
        &out,
        &format!("{} exists and is not a directory", file.display()),
    );
}

#[test]
fn check_config_fails_for_a_directory_under_a_file() {
    let t = tempdir();
    let file = t.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("a").join("spool");
    let out = check_config(t.path(), &dir);
    assert_config_error(
        &out,
        &format!(
            "cannot create the directory {}: {} is not a directory",
            dir.display(),
            file.display()
        ),
    );
}

#[test]
fn check_config_fails_when_the_directory_cannot_be_created() {
    let t = tempdir();
    let parent = t.path().join("ro");
    std::fs::create_dir(&parent).unwrap();
    let _writable = read_only(&parent);
    let dir = parent.join("spool").join("x");
    let out = run(unprivileged(t.path(), &dir).arg("check-config"));
    assert_config_error(
        &out,
        &format!(
            "creating the directory {}: Permission denied",
            dir.display()
        ),
    );
    assert!(!parent.join("spool").exists());
}

#[test]
fn check_config_fails_when_the_directory_is_not_writable() {
    let t = tempdir();
    let dir = t.path().join("spool");
    create_spool(&dir);
    let _writable = read_only(&dir);
    let before = listing(&dir);
    let out = run(unprivileged(t.path(), &dir).arg("check-config"));
    assert_config_error(
        &out,
        &format!("creating a file in {}: Permission denied", dir.display()),
    );
    assert_eq!(listing(&dir), before);
}

#[test]
fn check_config_passes_a_missing_directory_it_could_create_and_leaves_nothing() {
    let t = tempdir();
    let dir = t.path().join("data").join("spool");
    let out = check_config(t.path(), &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "note: spool.dir {} does not exist yet; `serve` creates it",
            dir.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(listing(t.path()).is_empty(), "{:?}", listing(t.path()));
}

#[test]
fn check_config_warns_beside_a_running_bridge_and_leaves_its_lock() {
    let t = tempdir();
    let dir = t.path().join("spool");
    let (held, _) = Store::open(opts(&dir)).unwrap();
    let before = listing(&dir);
    let lock_text = std::fs::read_to_string(dir.join("LOCK")).unwrap();
    let out = check_config(t.path(), &dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "warning: spool.dir {}: a running presence-bridge (pid {}) holds its lock",
            dir.display(),
            std::process::id()
        )),
        "{err}"
    );
    // Undisturbed: same files, same holder, and the lock still held.
    assert_eq!(listing(&dir), before);
    assert_eq!(
        std::fs::read_to_string(dir.join("LOCK")).unwrap(),
        lock_text
    );
    assert!(matches!(
        Store::open(opts(&dir)),
        Err(SpoolError::Locked { .. })
    ));
    close_spool(held);
    // A stopped bridge's spool: no warning, nothing changed, lock free.
    let before = listing(&dir);
    let out = check_config(t.path(), &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("spool.dir"), "{}", stderr(&out));
    assert_eq!(listing(&dir), before);
    Store::open(opts(&dir)).unwrap();
}
