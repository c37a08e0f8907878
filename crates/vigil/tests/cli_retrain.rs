//! Replay into retraining: a degraded model replayed over recorded drives, compared with
//! the shipped one on the drives' own ground-truth crops (`vigil eval` with two models),
//! and a model fine-tuned on an exported dataset records its lineage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{n, root, unique, vigil_json};

const SHIPPED: &str = "models/obstacle-classifier";
/// 450 simulator crops (5 % of the shipped model's 9000), same recipe otherwise.
const DEGRADED: &str = "models/obstacle-classifier-5pct";
/// The degraded model fine-tuned by scripts/retrain-drill.sh on crops exported from
/// other drives (training seeds 10-15), with simulator crops mixed in.
const RETRAINED: &str = "models/obstacle-classifier-retrained";

/// The drive ids in a dataset's provenance.
fn drives_of(dataset: &str) -> std::collections::BTreeSet<String> {
    let labels = std::fs::read_to_string(format!("{dataset}/labels.jsonl")).unwrap();
    labels
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["provenance"]["drive"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Obstacle crops a model called `none` (rows: truth, columns: predicted).
fn missed_obstacles(eval: &serde_json::Value) -> u64 {
    let classes: Vec<&str> = eval["classes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let none = classes.iter().position(|c| *c == "none").unwrap();
    let confusion = eval["confusion"].as_array().unwrap();
    (0..classes.len()).filter(|&r| r != none).map(|r| n(&confusion[r][none])).sum()
}

#[test]
fn degraded_model_replayed_over_drives_gets_more_wrong_and_retraining_records_lineage() {
    let dir = std::env::temp_dir().join(unique("retrain"));
    std::fs::create_dir_all(&dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    // Three recorded drives; the shipped model's replay exports their crops (tasks and
    // ground-truth objects), labelled from ground truth.
    let mut wrong = [0u64; 2];
    let mut changed = 0;
    let mut datasets = Vec::new();
    for scenario in ["animal-crossing", "urban-dense", "pedestrian-crossing"] {
        let drive = p(&format!("{scenario}.mcap"));
        vigil_json(&["run", "--scenario", scenario, "--seed", "2", "--fast", "--record", &drive, "--json"], &[]);
        let ds = p(&format!("ds-{scenario}"));
        for (i, model) in [SHIPPED, DEGRADED].into_iter().enumerate() {
            let mut args =
                vec!["replay", "--source", &drive, "--scenario", scenario, "--max", "--model", model, "--json"];
            if i == 0 {
                args.extend(["--export-dataset", ds.as_str()]);
            }
            let r = vigil_json(&args, &[]);
            let g = &r["diff"]["ground_truth"]["replayed"];
            // Obstacles not recognised as what they are (called `none` or another class).
            wrong[i] += n(&g["labelled"]) - n(&g["correct"]);
            if i == 0 {
                assert!(n(&r["exported"]) > n(&r["tasks"]["raised"]), "objects exported too: {r}");
            } else {
                changed += n(&r["diff"]["changed"]);
            }
        }
        datasets.push(ds);
    }
    eprintln!(
        "tasks recognised wrongly: shipped {}, degraded {}; recommendations changed {changed}",
        wrong[0], wrong[1]
    );
    assert!(wrong[1] > wrong[0], "the degraded model should get more of the drives' obstacles wrong: {wrong:?}");
    assert!(changed > 0, "the degraded model should change some recommendations");

    // Both models on the same held-out crops, side by side.
    let png = p("compare.png");
    let mut args = vec!["eval", "--model", SHIPPED, "--model", DEGRADED, "--json", "--confusion-png", &png];
    for d in &datasets {
        args.extend(["--dataset", d.as_str()]);
    }
    let cmp = vigil_json(&args, &[]);
    let (shipped, degraded) = (&cmp["models"][0], &cmp["models"][1]);
    eprintln!(
        "held-out drive crops: {} — shipped {} ({} obstacles called none), degraded {} ({})",
        cmp["samples"],
        shipped["accuracy"],
        missed_obstacles(shipped),
        degraded["accuracy"],
        missed_obstacles(degraded)
    );
    assert_eq!(shipped["samples"], degraded["samples"]);
    assert!(n(&cmp["samples"]) >= 100, "{cmp}");
    assert!(cmp["accuracy_delta"].as_f64().unwrap() < 0.0, "{cmp}");
    assert!(missed_obstacles(degraded) > missed_obstacles(shipped), "{cmp}");
    assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");

    // Each recorded drive has its own id, though all start at the scenario epoch.
    let held_out: Vec<String> = datasets.iter().flat_map(|d| drives_of(d)).collect();
    assert_eq!(held_out.len(), 3, "one drive id per drive, all distinct: {held_out:?}");
    assert_eq!(held_out.iter().collect::<std::collections::BTreeSet<_>>().len(), 3, "{held_out:?}");

    // The drill's retrained model, trained on other drives (its lineage says which): back to
    // >= 0.95 on these held-out drives' crops and on fresh simulator crops of a seed no model
    // trained on, where the degraded model it started from is far below.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::root().join(RETRAINED).join("config.json")).unwrap()).unwrap();
    assert!(cfg["training"]["parent"].as_str().unwrap().ends_with(DEGRADED), "{cfg}");
    let trained_on: Vec<&str> =
        cfg["training"]["drives"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
    assert!(trained_on.len() >= 20, "the drill trains on many drives: {trained_on:?}");
    assert!(held_out.iter().all(|d| !trained_on.contains(&d.as_str())), "held-out drives were trained on");
    let mut args = vec!["eval", "--model", DEGRADED, "--model", RETRAINED, "--json"];
    for d in &datasets {
        args.extend(["--dataset", d.as_str()]);
    }
    let drives = vigil_json(&args, &[]);
    let sim = vigil_json(
        &["eval", "--model", DEGRADED, "--model", RETRAINED, "--samples", "1200", "--seed", "1000", "--json"],
        &[],
    );
    eprintln!(
        "retrained: held-out drive crops {} (degraded {}), simulator crops {} (degraded {})",
        drives["models"][1]["accuracy"],
        drives["models"][0]["accuracy"],
        sim["models"][1]["accuracy"],
        sim["models"][0]["accuracy"]
    );
    for cmp in [&drives, &sim] {
        let (before, after) =
            (cmp["models"][0]["accuracy"].as_f64().unwrap(), cmp["models"][1]["accuracy"].as_f64().unwrap());
        assert!(after >= 0.95, "retrained accuracy {after} < 0.95 on held-out data: {cmp}");
        assert!(after > before, "{cmp}");
    }

    // Fine-tuning on an exported dataset records its lineage: parent, datasets, drives.
    let out = p("tuned");
    let t = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(root())
        .args(["train", "--init", DEGRADED, "--dataset", &datasets[0], "--epochs", "1", "--out", &out])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tuned/config.json")).unwrap()).unwrap();
    let lineage = &cfg["training"];
    assert_eq!(lineage["parent"], DEGRADED, "{cfg}");
    assert_eq!(lineage["datasets"][0], datasets[0].as_str(), "{cfg}");
    let drives = lineage["drives"].as_array().unwrap();
    assert_eq!(drives.len(), 1, "{cfg}");
    assert!(drives[0].as_str().unwrap().starts_with("veh-0000@"), "{cfg}");
    let _ = std::fs::remove_dir_all(&dir);
}
