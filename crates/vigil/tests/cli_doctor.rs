//! `vigil doctor` against the real brokers: it passes when everything is in place, and
//! each broken piece (Kafka down, RabbitMQ down, wrong credentials, a missing model, an
//! unwritable frame store) fails exactly its own check, with how to fix it, and a
//! non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{AMQP, KAFKA, brokers_up, free_port, root, unique};

/// The findings by check name, and whether the process succeeded.
fn doctor(args: &[&str], frames: &str) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root())
        .args(["doctor", "--json"])
        .args(args)
        .env("VIGIL_FRAMES_URL", frames)
        .env("VIGIL_AMQP_PREFIX", unique("doctor"))
        .output()
        .expect("run vigil doctor");
    let found: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), found, String::from_utf8_lossy(&out.stderr).to_string())
}

fn failed(found: &serde_json::Value) -> Vec<String> {
    found
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .map(|f| f["check"].as_str().unwrap().to_string())
        .collect()
}

fn fix_of<'a>(found: &'a serde_json::Value, check: &str) -> &'a str {
    found.as_array().unwrap().iter().find(|f| f["check"] == check).and_then(|f| f["fix"].as_str()).unwrap_or("")
}

#[test]
fn doctor_passes_with_everything_in_place_and_names_each_broken_piece() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let dir = std::env::temp_dir().join(unique("doctor"));
    std::fs::create_dir_all(&dir).unwrap();
    let frames = format!("file://{}/frames/", dir.display());
    let good = ["--kafka", KAFKA, "--amqp", AMQP];

    let (ok, found, err) = doctor(&good, &frames);
    assert!(ok && failed(&found).is_empty(), "{found} {err}");
    let checks: Vec<&str> = found.as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    for c in ["model", "device", "clock", "config", "kafka", "rabbitmq", "frame store"] {
        assert!(checks.contains(&c), "{c} checked: {checks:?}");
    }

    let closed = format!("127.0.0.1:{}", free_port());
    let not_a_dir = dir.join("a-file");
    std::fs::write(&not_a_dir, "not a directory").unwrap();
    let cases: [(&str, Vec<String>, String, &str); 5] = [
        ("kafka", vec!["--kafka".into(), closed.clone(), "--amqp".into(), AMQP.into()], frames.clone(), "running"),
        (
            "rabbitmq",
            vec!["--kafka".into(), KAFKA.into(), "--amqp".into(), format!("amqp://guest:guest@{closed}/%2f")],
            frames.clone(),
            "running",
        ),
        (
            "rabbitmq",
            vec![
                "--kafka".into(),
                KAFKA.into(),
                "--amqp".into(),
                "amqp://guest:not-the-password@127.0.0.1:5672/%2f".into(),
            ],
            frames.clone(),
            "password",
        ),
        (
            "model",
            [&good[..], &["--model", "/nonexistent/model"]].concat().iter().map(|s| s.to_string()).collect(),
            frames.clone(),
            "--model",
        ),
        (
            "frame store",
            good.iter().map(|s| s.to_string()).collect(),
            format!("file://{}/frames/", not_a_dir.display()),
            "writable",
        ),
    ];
    for (check, args, frames, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, found, err) = doctor(&args, &frames);
        assert!(!ok, "{check} broken must fail: {found}");
        assert_eq!(failed(&found), [check], "only {check} fails: {found}");
        assert!(fix_of(&found, check).contains(says), "{check}'s fix says {says}: {found}");
        assert!(err.contains(check), "the error names {check}: {err}");
        assert!(!format!("{found}{err}").contains("not-the-password"), "no password printed");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
