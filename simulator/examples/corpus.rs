//! Writes a few real simulator messages (small sensors) into a directory, as a seed
//! corpus for the envelope decoder fuzzer.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: corpus DIR")?;
    std::fs::create_dir_all(&dir)?;
    let text = r#"
name = "fuzz-seed"
description = "tiny sensors"
[[obstacles]]
class = "pedestrian"
start = [20.0, -3.0]
path = [[20.0, 3.0]]
speed_mps = 1.0
[sensors.lidar]
beams = 2
columns = 16
[sensors.camera]
width = 16
height = 16
"#;
    let scenario = vigil_sim::Scenario::from_toml(text, "corpus")?;
    let mut sim = vigil_sim::VehicleSim::new(&scenario, 0, 1, 200_000_000);
    let mut batch = Vec::new();
    while sim.step(&mut batch).is_some() {}
    for (i, m) in batch.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:03}"), m.encode())?;
    }
    Ok(())
}
