//! The closed loop over every hazardous built-in scenario and 20 seeds: with perception
//! the ego never collides, without it it always does; on the clear road Vigil never
//! brakes hard. Runs in `fast` pacing (lockstep, real latencies).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use vigil_pipeline::{RunConfig, RunReport, run};
use vigil_sim::Scenario;

fn model_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/obstacle-classifier")
}

fn go(name: &str, seed: u64, perception: bool) -> RunReport {
    let mut cfg = RunConfig::new(Scenario::builtin(name).unwrap(), seed, model_dir());
    cfg.fast = true;
    cfg.perception = perception;
    let r = run(cfg).unwrap();
    assert_eq!(r.lost, 0, "{name} seed {seed}");
    let t = &r.tasks;
    assert_eq!(t.raised, t.completed + t.fallback, "{name} seed {seed}: {t:?}");
    assert_eq!(t.published + t.refused, t.raised, "{name} seed {seed}: {t:?}");
    assert_eq!(t.published, t.acked + t.expired + t.dead_lettered, "{name} seed {seed}: {t:?}");
    r
}

fn hazardous(name: &str) {
    let mut failures = Vec::new();
    for seed in 1..=20 {
        let on = go(name, seed, true);
        if on.outcome.collision {
            failures.push(format!("seed {seed}: collision with perception on ({:?})", on.recommendations.by_action));
        }
        if on.scans_held > 0 {
            failures.push(format!("seed {seed}: {} true scans held as stamped far from the others", on.scans_held));
        }
        let off = go(name, seed, false);
        if !off.outcome.collision {
            failures.push(format!("seed {seed}: no collision with perception off: not a hazard"));
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
}

#[test]
fn pedestrian_crossing() {
    hazardous("pedestrian-crossing");
}

#[test]
fn stopped_vehicle() {
    hazardous("stopped-vehicle");
}

#[test]
fn debris() {
    hazardous("debris");
}

#[test]
fn animal_crossing() {
    hazardous("animal-crossing");
}

#[test]
fn cyclist_merge() {
    hazardous("cyclist-merge");
}

#[test]
fn urban_dense() {
    hazardous("urban-dense");
}

#[test]
fn clear_road_never_brakes_hard() {
    for seed in 1..=20 {
        let r = go("clear-road", seed, true);
        assert!(!r.outcome.collision, "seed {seed}");
        assert_eq!(r.recommendations.by_action["BRAKE_HARD"], 0, "seed {seed}: {:?}", r.recommendations);
    }
}
