//! `vigil eval`, `vigil train` and their errors, as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .expect("run vigil")
}

#[test]
fn eval_reports_accuracy_per_class_and_a_weak_colour_baseline() {
    let out =
        vigil(&["eval", "--model", "models/obstacle-classifier", "--samples", "300", "--seed", "31337", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["model", "samples", "seed", "accuracy", "per_class", "confusion", "baseline_accuracy", "device"] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["samples"], 300);
    assert!(v["accuracy"].as_f64().unwrap() >= 0.9, "{v}");
    assert!(v["baseline_accuracy"].as_f64().unwrap() < 0.6, "{v}");
    for class in ["pedestrian", "cyclist", "vehicle", "debris", "animal", "none"] {
        let c = &v["per_class"][class];
        assert!(c["precision"].is_number() && c["recall"].is_number(), "{class}: {c}");
    }
    assert_eq!(v["confusion"].as_array().unwrap().len(), 6);
}

#[test]
fn vision_commands_fail_clearly_on_bad_input() {
    let out = vigil(&["eval", "--model", "/no/such/model", "--samples", "10"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/no/such/model") && err.contains("config.json"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = vigil(&["train", "--samples", "10", "--out", "/tmp/never"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--samples must be at least 60"), "{err}");
    let out = vigil(&["train", "--dataset", "/no/such/dataset", "--out", "/tmp/never"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("labels.jsonl"), "{err}");
}
