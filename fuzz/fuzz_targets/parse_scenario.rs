//! Scenario files are user input: any text must give a validated scenario or a typed
//! error naming the field, never a panic; a scenario that parses must build a simulator
//! and run its first steps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(scenario) = vigil_sim::Scenario::from_toml(text, "fuzz") {
        let mut sim = vigil_sim::VehicleSim::new(&scenario, 0, 1, 0);
        let mut out = Vec::new();
        for _ in 0..3 {
            if sim.step(&mut out).is_none() {
                break;
            }
        }
    }
});
