//! `vigil safety`: a generated cell and the same cell written as a scenario file and
//! added with `--scenario` are one drive; the report, table and pictures come out; the
//! gates fail the command when asked to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::{vigil, vigil_json};

fn cell<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no cell {id}: {report}"))
}

#[test]
fn a_written_cell_run_as_a_scenario_file_behaves_like_the_generated_cell() {
    let dir = std::env::temp_dir().join(format!("vigil-safety-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = vigil(&["safety", "--cells", "ccrs-100-50kmh", "--write-scenarios", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.join("ccrs-100-50kmh.toml");
    assert!(file.exists(), "the cell's scenario file");

    let png = dir.join("matrix.png");
    let detection = dir.join("detection.png");
    let r = vigil_json(
        &[
            "safety",
            "--cells",
            "ccrs-100-50kmh",
            "--scenario",
            file.to_str().unwrap(),
            "--seeds",
            "2",
            "--json",
            "--png",
            png.to_str().unwrap(),
            "--detection-png",
            detection.to_str().unwrap(),
        ],
        &[],
    );
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{r}");
    let generated = &cells[0];
    let added = &cells[1];
    assert_eq!(generated["source"], "generated");
    assert!(added["source"].as_str().unwrap().ends_with("ccrs-100-50kmh.toml"), "{added}");
    for key in ["collisions", "control_collisions", "seeds", "stops", "hazardous", "speed_kmh"] {
        assert_eq!(generated[key], added[key], "{key}: {generated} vs {added}");
    }
    // The control hits the stopped car every time: the cell tests something.
    assert_eq!(generated["control_collisions"], 2, "{generated}");
    let (a, b) = (generated["first_detection_m"].as_f64().unwrap(), added["first_detection_m"].as_f64().unwrap());
    assert!((a - b).abs() < 2.0, "first detection {a} vs {b}");
    for p in [&png, &detection] {
        let bytes = std::fs::read(p).unwrap();
        assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 2000, "{}", p.display());
    }
    assert_eq!(cell(&r, "ccrs-100-50kmh")["family"], serde_json::json!({"ccr-stationary": 100}));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gate_that_fails_fails_the_command_and_says_which() {
    // A nuisance file with a car stopped in the ego lane: braking for it is right, but a
    // nuisance cell must not stop, so the gate fails.
    let dir = std::env::temp_dir().join(format!("vigil-safety-gate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-nuisance.toml");
    std::fs::write(
        &file,
        "name = \"not-a-nuisance\"\ndescription = \"A stopped car in the lane.\"\nduration_s = 8.0\n[ego]\nspeed_mps = 11.0\n[[obstacles]]\nclass = \"vehicle\"\nstart = [45.0, 0.0]\n",
    )
    .unwrap();
    let out = vigil(&["safety", "--cells", "none", "--nuisance", file.to_str().unwrap(), "--seeds", "1", "--gate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("gate: not-a-nuisance:") && stdout.contains("stops with nothing in the path"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("safety gate(s) failed"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let out = vigil(&["safety", "--cells", "no-such-cell"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("selects no cell"), "{out:?}");
    let out = vigil(&["safety", "--seeds", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seeds must be"), "{out:?}");
}
