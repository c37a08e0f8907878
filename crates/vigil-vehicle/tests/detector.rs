//! The detector on simulator frames: it finds the obstacles that threaten the ego path,
//! with a plausible time to collision and a camera box on the object, and raises
//! nothing from radar clutter on a clear road.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use vigil_proto::v1::envelope::Payload;
use vigil_sim::{Scenario, Stream, VehicleSim};
use vigil_vehicle::detector::{CameraGeometry, detect};

/// Runs a scenario without control and returns (time s, candidates, ground truth objects in path).
fn run(
    name: &str,
    seed: u64,
    seconds: f64,
) -> Vec<(f64, Vec<vigil_vehicle::detector::Candidate>, Vec<vigil_proto::v1::GroundTruthObject>)> {
    let s = Scenario::builtin(name).unwrap();
    let mut sim = VehicleSim::new(&s, 0, seed, (seconds * 1e9) as i64);
    let start = sim.start_ns();
    let mut batch = Vec::new();
    let (mut lidar, mut camera) = (None, None);
    let mut out = Vec::new();
    while sim.step(&mut batch).is_some() {
        for m in batch.drain(..) {
            match m.envelope.payload {
                Some(Payload::Lidar(l)) => lidar = Some(l),
                Some(Payload::Camera(c)) => camera = CameraGeometry::from_frame(&c),
                Some(Payload::Radar(r)) => {
                    if let Some(l) = &lidar {
                        out.push((
                            (m.capture_ns - start) as f64 * 1e-9,
                            detect(&vigil_vehicle::detector::radar_objects(&r), l, camera.as_ref()),
                            Vec::new(),
                        ));
                    }
                }
                // Each frame's ground truth follows it: attach the radar scan's.
                Some(Payload::GroundTruth(gt))
                    if m.kind == Stream::GroundTruth && gt.frame_sensor_id.starts_with("radar") =>
                {
                    if let Some(last) = out.last_mut() {
                        last.2 = gt.objects;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

#[test]
fn stopped_vehicle_is_a_threat_with_true_time_to_collision() {
    let frames = run("stopped-vehicle", 3, 3.0);
    let (mut eligible, mut found) = (0, 0);
    for (t, cands, truth) in &frames {
        let Some(car) = truth.iter().find(|o| o.r#box.as_ref().is_some_and(|b| b.y.abs() < 1.0 && b.x > 0.0)) else {
            continue;
        };
        let b = car.r#box.as_ref().unwrap();
        if b.x > 60.0 {
            continue;
        }
        eligible += 1;
        // A single scan can miss (radar miss probability 5 %); tracking bridges that.
        let Some(threat) = cands.iter().find(|c| c.threat) else { continue };
        found += 1;
        let true_ttc = (b.x - b.length / 2.0) / 16.7;
        assert!(
            (threat.time_to_collision_s - true_ttc).abs() < 0.8,
            "t={t}: ttc {} vs {true_ttc}",
            threat.time_to_collision_s
        );
        assert!(threat.camera_box.is_some(), "t={t}: the car is in view");
    }
    assert!(eligible > 10, "checked {eligible} scans");
    assert!(found as f64 >= 0.9 * eligible as f64, "threat in {found} of {eligible} scans");
}

#[test]
fn pedestrian_in_the_lane_is_detected_before_it_is_too_late() {
    let frames = run("pedestrian-crossing", 7, 4.0);
    let first = frames.iter().find(|(_, c, _)| c.iter().any(|c| c.threat && c.lateral_offset_m.abs() < 2.0));
    let (t, cands, _) = first.expect("the crossing pedestrian becomes a threat");
    let threat = cands.iter().find(|c| c.threat).unwrap();
    // Still stoppable: farther than the braking distance at 8 m/s² plus a 100 ms budget.
    let v: f64 = 13.9;
    let needed = v * v / (2.0 * 8.0) + 0.1 * v;
    assert!(threat.x > needed, "seen at t={t} at {:.1} m, braking needs {needed:.1} m", threat.x);
}

#[test]
fn clutter_on_a_clear_road_raises_no_threat() {
    let frames = run("clear-road", 5, 6.0);
    let threats: usize = frames.iter().map(|(_, c, _)| c.iter().filter(|c| c.threat).count()).sum();
    let scans = frames.len();
    assert!(scans > 100);
    assert_eq!(threats, 0, "no threats on a clear road with heavy clutter");
}
