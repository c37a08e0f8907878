//! A second zenoh session receives every frame of a short published run, in order,
//! with no gap in sequence numbers, and every message decodes strictly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use vigil_bus::{ZenohBus, ZenohConfig};

mod common;
use common::free_port;

#[test]
fn subscriber_receives_every_frame_in_order() {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port());
    let bus = ZenohBus::open(&ZenohConfig { listen: vec![endpoint.clone()], ..ZenohConfig::default() })
        .expect("open subscriber session");
    let mut rx = bus.subscribe("vigil/**", 4096).expect("subscribe");
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "sim",
            "--scenario",
            "pedestrian-crossing",
            "--seed",
            "5",
            "--duration",
            "1.5",
            "--vehicles",
            "2",
            "--publish",
            "--json",
            "--connect",
            &endpoint,
            "--wait-peers",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn vigil sim --publish");

    // Collect while the publisher runs: 2 vehicles × 1.5 s × (10 + 20 + 20) Hz × 2 (with ground truth).
    let expected_total = 2 * (15 + 30 + 30) * 2;
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut received = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received < expected_total && Instant::now() < deadline {
        match rx.try_recv() {
            Ok(sample) => {
                let env = vigil_proto::decode_envelope(&sample.payload).expect("strict decode of a published frame");
                let h = env.header.expect("header");
                assert!(sample.key.starts_with(&format!("vigil/{}/", h.vehicle_id)), "{}", sample.key);
                by_key.entry(sample.key).or_default().push(h.sequence);
                received += 1;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let out = child.wait_with_output().expect("publisher exits");
    assert!(out.status.success(), "publisher failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["frames"]["lidar"], 30);
    assert_eq!(received, expected_total, "every published message arrives");
    let keys: Vec<&String> = by_key.keys().collect();
    for vehicle in ["veh-0000", "veh-0001"] {
        for kind in ["sensor/lidar/top", "sensor/camera/front", "sensor/radar/front", "groundtruth"] {
            let key = format!("vigil/{vehicle}/{kind}");
            let seqs = by_key.get(&key).unwrap_or_else(|| panic!("nothing on {key}; got {keys:?}"));
            let expected: Vec<u64> = (0..seqs.len() as u64).collect();
            assert_eq!(seqs, &expected, "{key}: in order, no gaps");
        }
    }
    assert_eq!(by_key["vigil/veh-0000/sensor/lidar/top"].len(), 15);
    assert_eq!(by_key["vigil/veh-0001/sensor/camera/front"].len(), 30);
}
