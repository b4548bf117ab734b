//! The real binary: its command line with a clean environment, a guard that
//! kills it when the test ends, readiness and exit waits that only guard a
//! hang, and plain HTTP/1.1 to it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::TOKEN;

/// How long a wait for the binary may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// The binary under test: the test build, or the one named by
/// `PRESENCE_BRIDGE_TEST_BIN` (CI passes the release build).
pub fn binary() -> String {
    std::env::var("PRESENCE_BRIDGE_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_presence-bridge").to_owned())
}

/// The binary with an empty environment but `PATH`, run in `dir` (so a
/// relative default such as `data/spool` lands there). Standard streams
/// are left as `Command` has them (`output()` captures them).
pub fn command(dir: &std::path::Path) -> Command {
    let mut c = Command::new(binary());
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

/// [`command`] listening on `http` and `admin`, with the test token, its
/// output discarded (pipe what a test reads).
pub fn serving(dir: &std::path::Path, http: SocketAddr, admin: SocketAddr) -> Command {
    let mut c = command(dir);
    c.env("PRESENCE_BRIDGE__HTTP__LISTEN", http.to_string())
        .env("PRESENCE_BRIDGE__ADMIN__LISTEN", admin.to_string())
        .env("PRESENCE_BRIDGE__AUTH__TOKENS", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A running binary, killed (and reaped) when dropped.
pub struct Proc {
    pub child: Child,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn spawn(cmd: &mut Command, http: SocketAddr, admin: SocketAddr) -> Self {
        Self {
            child: cmd.spawn().expect("the binary starts"),
            http,
            admin,
        }
    }

    /// Polls `/readyz` until 200 and returns its body; panics if the
    /// process exits first. Blocking: call it from a blocking context or a
    /// multi-thread runtime.
    pub fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the binary exited before it was ready: {status}");
            }
            if let Some((200, body)) = request(self.admin, "GET", "/readyz", "") {
                return body;
            }
            assert!(Instant::now() < deadline, "the binary never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (e.g. `"TERM"`, `"HUP"`) with the shell's own `kill`
    /// (no procps needed on a minimal CI image).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit: the binary hangs");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reaped.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// All the binary wrote to its piped stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .expect("stderr was piped")
            .read_to_string(&mut log)
            .unwrap();
        log
    }

    /// POSTs `body` to the presence webhook with the test token.
    pub fn post(&self, body: &str) -> Option<(u16, String)> {
        request(
            self.http,
            "POST",
            &format!("/webhooks/zapi/presence?token={TOKEN}"),
            body,
        )
    }
}

/// One HTTP/1.1 request (JSON body, connection closed after it); the status
/// and the body, or `None` when the connection fails.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(HANG)).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    Some((status, out.split("\r\n\r\n").nth(1)?.to_owned()))
}
