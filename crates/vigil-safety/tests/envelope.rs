//! The perception envelope over real drives: debris at 130 km/h is seen by the radar
//! watch far enough out to stop, and a nuisance road with parked cars and oncoming traffic
//! makes nothing brake.

use std::path::Path;

use vigil_safety::cells::{Family, cell};
use vigil_safety::report::stopping_distance_m;
use vigil_safety::run::{Job, RunSettings, run};

fn settings(seeds: u64) -> RunSettings {
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/obstacle-classifier");
    RunSettings { seeds, model_dir, threads: 2 }
}

#[test]
fn debris_at_130_kmh_is_seen_by_the_radar_before_the_stopping_distance() {
    let job = Job::generated(cell(Family::HighwayDebris, 130)).unwrap();
    let runs = run(&[job], &settings(3), &|_, _| {}).unwrap();
    let stop = stopping_distance_m(130.0);
    for d in &runs[0].on {
        assert!(!d.collision, "seed {}: {d:?}", d.seed);
        assert!(d.cautions > 0, "seed {}: the radar watch acted first: {d:?}", d.seed);
        let seen = d.first_detection_m.expect("a detection");
        assert!(seen > stop, "seed {}: seen at {seen:.0} m, stopping takes {stop:.0} m", d.seed);
    }
    assert!(runs[0].off.iter().all(|d| d.collision), "the control collides");
}

#[test]
fn parked_cars_and_oncoming_traffic_brake_nothing() {
    let jobs: Vec<Job> = [cell(Family::ParkedCars, 30), cell(Family::OncomingTraffic, 80)]
        .into_iter()
        .map(|c| Job::generated(c).unwrap())
        .collect();
    for r in run(&jobs, &settings(3), &|_, _| {}).unwrap() {
        for d in &r.on {
            assert_eq!(
                (d.brake, d.brake_hard, d.fallback_brakes, d.stopped),
                (0, 0, 0, false),
                "{} seed {}",
                r.id,
                d.seed
            );
        }
    }
}
