//! Helpers shared by the configuration tests: environment pairs, a temporary
//! TOML file, and loading that must succeed or fail.
#![allow(dead_code)]

use presence_bridge::config::{load, Settings};

pub fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A temporary TOML file, removed when the returned path is dropped.
pub fn file(contents: &str) -> tempfile::TempPath {
    let mut f = tempfile::Builder::new()
        .prefix("presence-bridge-")
        .suffix(".toml")
        .tempfile()
        .unwrap();
    std::io::Write::write_all(&mut f, contents.as_bytes()).unwrap();
    f.into_temp_path()
}

pub fn ok(file_text: Option<&str>, vars: &[(&str, &str)]) -> Settings {
    let path = file_text.map(file);
    load(path.as_deref(), env(vars)).unwrap_or_else(|e| panic!("{file_text:?} {vars:?}: {e}"))
}

pub fn err(file_text: Option<&str>, vars: &[(&str, &str)]) -> String {
    let path = file_text.map(file);
    match load(path.as_deref(), env(vars)) {
        Ok(_) => panic!("expected an error for {file_text:?} {vars:?}"),
        Err(e) => e.to_string(),
    }
}

/// The binary with an empty environment (but `PATH`), run here.
pub fn bin() -> std::process::Command {
    crate::common::process::command(std::path::Path::new("."))
}

/// Runs `check-config` with `vars`; it must succeed. Returns the printed
/// configuration, parsed and as text.
pub fn check_config(vars: &[(&str, &str)]) -> (serde_json::Value, String) {
    let out = bin()
        .arg("check-config")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    (serde_json::from_str(&stdout).unwrap(), stdout)
}

/// What a run of the binary printed.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `--config file` (if any), `args` and `vars`, in `cwd`.
pub fn run(
    cwd: &std::path::Path,
    config: Option<&std::path::Path>,
    args: &[&str],
    vars: &[(&str, &str)],
) -> Run {
    let mut c = bin();
    c.current_dir(cwd);
    if let Some(path) = config {
        c.arg("--config").arg(path);
    }
    let out = c
        .args(args)
        .envs(vars.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
