//! `vigil bench vision`: recogniser throughput and latency per batch size, against batch
//! 1 in the same run.

use std::time::Instant;

use serde::Serialize;
use vigil_vision::model::Recogniser;
use vigil_vision::preprocess::Crop;

use crate::BenchError;

/// One batch size.
#[derive(Debug, Clone, Serialize)]
pub struct BatchPoint {
    pub batch: usize,
    pub crops_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub iterations: usize,
    /// Crops per second against the first batch size's.
    pub speedup_vs_first: f64,
}

/// The vision bench's report.
#[derive(Debug, Clone, Serialize)]
pub struct VisionBench {
    pub model: String,
    pub device: String,
    /// Threads each batch was split across, and the cores this machine offers.
    pub threads: usize,
    pub cores: usize,
    /// The most crops one forward pass took; `null`: the whole batch.
    pub crops_per_pass: Option<usize>,
    pub points: Vec<BatchPoint>,
    pub min_speedup: f64,
    /// The last batch size reached `min_speedup`.
    pub pass: bool,
}

/// Rounds over the batch sizes; each size's best is reported.
const ROUNDS: usize = 3;

/// One batch size for at least `seconds` (and 20 passes), after 3 warm-up passes.
fn measure(model: &Recogniser, pool: &[Crop], b: usize, seconds: f64) -> Result<BatchPoint, BenchError> {
    let crops: Vec<_> = pool.iter().cycle().take(b).cloned().collect();
    for _ in 0..3 {
        model.classify(&crops)?;
    }
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || lat.len() < 20 {
        let t = Instant::now();
        std::hint::black_box(model.classify(&crops)?);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let total = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(BatchPoint {
        batch: b,
        crops_per_second: (b * lat.len()) as f64 / total,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        iterations: lat.len(),
        speedup_vs_first: 1.0,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Classifies batches of each size cut from `pool` for at least `seconds` each (and 20
/// iterations), after 3 warm-up passes; the sizes in turn, three rounds, the best round
/// of each size kept (a neighbour on a 2-core machine only ever slows a round, and the
/// batched sizes, which use every core, the most).
pub fn vision_bench(
    model: &Recogniser,
    pool: &[Crop],
    batches: &[usize],
    seconds: f64,
    min_speedup: f64,
    cores: usize,
) -> Result<VisionBench, BenchError> {
    let mut best: Vec<Option<BatchPoint>> = vec![None; batches.len()];
    for _round in 0..ROUNDS {
        for (i, &b) in batches.iter().enumerate() {
            let p = measure(model, pool, b, seconds)?;
            if best[i].as_ref().is_none_or(|q| p.crops_per_second > q.crops_per_second) {
                best[i] = Some(p);
            }
        }
    }
    let mut points: Vec<BatchPoint> = best.into_iter().flatten().collect();
    let first = points.first().map_or(1.0, |p| p.crops_per_second);
    for p in &mut points {
        p.speedup_vs_first = p.crops_per_second / first;
    }
    let speedup = points.last().map_or(1.0, |p| p.speedup_vs_first);
    Ok(VisionBench {
        model: model.config.name.clone(),
        device: model.device_name(),
        threads: model.batch_threads(),
        cores,
        crops_per_pass: Some(model.crops_per_pass()).filter(|&n| n != usize::MAX),
        points,
        min_speedup,
        pass: speedup >= min_speedup,
    })
}
