//! The least any lossless storage of a drive's camera could take.
//!
//! A camera frame is a scene plus sensor noise, and lossless storage must keep the
//! noise. The simulator draws the same drive twice, once with the sensor noise off, so
//! each frame's noise is known exactly: its entropy (per pixel, the three channels
//! together) is the floor for any coder that takes the noise as independent from pixel
//! to pixel, as a real sensor's is. The same frames are coded as Vigil stores them
//! (`vigil_proto::pixels`, lossless) to say how far above the floor that is.

use std::collections::HashMap;

use serde::Serialize;
use vigil_sim::Scenario;
use vigil_sim::sim::VehicleSim;

use crate::BenchError;

/// Camera bits per sample: Vigil's lossless coding and the noise floor.
#[derive(Debug, Clone, Serialize)]
pub struct CameraFloor {
    pub frames: u64,
    /// The world's sensor-noise amplitude for this seed.
    pub noise_amplitude: f64,
    pub raw_bits: f64,
    pub lossless_bits: f64,
    pub floor_bits: f64,
    /// Raw camera bytes per vehicle-second.
    pub raw_bytes_per_s: f64,
}

fn entropy_bits(hist: &HashMap<u32, u64>) -> f64 {
    let total = hist.values().sum::<u64>() as f64;
    hist.values().map(|&c| c as f64 / total).map(|p| -p * p.log2()).sum()
}

fn camera_frames(sim: &mut VehicleSim, want: usize) -> Vec<(u32, u32, Vec<u8>)> {
    let (mut frames, mut out) = (Vec::new(), Vec::new());
    while frames.len() < want && sim.step(&mut out).is_some() {
        for m in out.drain(..) {
            if let Some(vigil_proto::v1::envelope::Payload::Camera(c)) = m.envelope.payload
                && let Some(vigil_proto::v1::camera_frame::Pixels::Data(px)) = c.pixels
            {
                frames.push((c.width, c.height, px));
            }
        }
    }
    frames
}

/// The first `frames` camera frames of the drive, with and without sensor noise.
pub fn camera_floor(scenario: &Scenario, seed: u64, frames: usize) -> Result<CameraFloor, BenchError> {
    let cam = &scenario.sensors.camera;
    let duration_ns = ((frames as f64 + 1.0) / cam.rate_hz * 1e9) as i64;
    let mut clean = scenario.clone();
    clean.environment.camera_noise = [0.0, 0.0];
    let mut noisy_sim = VehicleSim::new(scenario, 0, seed, duration_ns);
    let noise_amplitude = noisy_sim.world.camera_noise;
    let noisy = camera_frames(&mut noisy_sim, frames);
    let quiet = camera_frames(&mut VehicleSim::new(&clean, 0, seed, duration_ns), frames);
    if noisy.is_empty() || noisy.len() != quiet.len() {
        return Err(BenchError::Setup(format!("the drive gave {} camera frames, not {frames}", noisy.len())));
    }
    let (mut hist, mut samples, mut coded) = (HashMap::new(), 0u64, 0u64);
    for ((w, h, a), (_, _, b)) in noisy.iter().zip(&quiet) {
        for (p, q) in a.chunks_exact(3).zip(b.chunks_exact(3)) {
            let d = |k: usize| (p[k] as i32 - q[k] as i32 + 256) as u32;
            *hist.entry(d(0) << 18 | d(1) << 9 | d(2)).or_insert(0u64) += 1;
        }
        samples += a.len() as u64;
        coded += vigil_proto::pixels::encode_rgb8(a, *w, *h, 0).len() as u64;
    }
    let pixels = samples / 3;
    Ok(CameraFloor {
        frames: noisy.len() as u64,
        noise_amplitude,
        raw_bits: 8.0,
        lossless_bits: coded as f64 * 8.0 / samples as f64,
        floor_bits: entropy_bits(&hist) * pixels as f64 / samples as f64,
        raw_bytes_per_s: cam.width as f64 * cam.height as f64 * 3.0 * cam.rate_hz,
    })
}
