//! `vigil eval`, `vigil train` and their errors, as a user runs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::vigil;

/// `vigil eval --json` of the shipped model on `samples` fresh crops from `seed`.
fn eval_json(samples: &str, seed: &str) -> serde_json::Value {
    let out = vigil(&["eval", "--model", "models/obstacle-classifier", "--samples", samples, "--seed", seed, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn eval_reports_accuracy_per_class_and_a_weak_colour_baseline() {
    let v = eval_json("300", "31337");
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

/// The vision issue's bar, as its command states it: 2000 fresh crops from a seed not used
/// in training (the shipped model was trained on seed 1), accuracy at least 0.95, every
/// class's recall at least 0.90, the colour-only baseline below 0.6.
#[test]
fn shipped_model_meets_the_accuracy_bar_on_2000_fresh_crops() {
    let v = eval_json("2000", "4242");
    assert_eq!(v["samples"], 2000);
    assert!(v["accuracy"].as_f64().unwrap() >= 0.95, "{v}");
    assert!(v["baseline_accuracy"].as_f64().unwrap() < 0.6, "{v}");
    for class in ["pedestrian", "cyclist", "vehicle", "debris", "animal", "none"] {
        let recall = v["per_class"][class]["recall"].as_f64().unwrap();
        assert!(recall >= 0.90, "{class} recall {recall}: {v}");
    }
    eprintln!("eval of 2000 crops: accuracy {}, {:.1} s", v["accuracy"], v["seconds"].as_f64().unwrap_or(0.0));
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
