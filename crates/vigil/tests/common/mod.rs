//! Helpers shared by the CLI integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/mcap_check.py` (the official Python `mcap` reader, installed by
/// scripts/python-tools.sh) on `file` and returns its JSON summary. Outside CI a missing
/// reader is a note and `None`; under `CI=true` it fails the test.
pub fn python_mcap_check(file: &Path) -> Option<serde_json::Value> {
    let python = std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| {
        let venv = root().join(".venv-tools/bin/python");
        if venv.exists() { venv.display().to_string() } else { "python3".into() }
    });
    let check = Command::new(&python).arg(root().join("tests/mcap_check.py")).arg(file).output();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match check {
        Ok(o) if o.status.success() => Some(serde_json::from_slice(&o.stdout).unwrap()),
        Ok(o) if !ci && String::from_utf8_lossy(&o.stderr).contains("No module named") => {
            eprintln!("note: python mcap reader not installed; run scripts/python-tools.sh (CI does)");
            None
        }
        Ok(o) => panic!("python mcap check failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if !ci => {
            eprintln!("note: cannot run {python}: {e}");
            None
        }
        Err(e) => panic!("cannot run {python}: {e}"),
    }
}
