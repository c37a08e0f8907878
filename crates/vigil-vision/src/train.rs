//! Training: labelled crops from rendered samples (or a dataset directory), AdamW, batch
//! norm folded at the end.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use vigil_core::{ObstacleClass, derive_seed};

use crate::model::{InitRng, ModelConfig, Recogniser, TrainNet};
use crate::preprocess::{Crop, crop};
use crate::{Result, VisionError};

/// A labelled crop with a training weight.
#[derive(Debug, Clone)]
pub struct Example {
    pub crop: Crop,
    pub class: ObstacleClass,
    pub weight: f32,
}

/// A frame showing one labelled object: RGB8 pixels and the object's box (normalised
/// x0, y0, x1, y1).
#[derive(Debug, Clone)]
pub struct Sample {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub bbox: [f32; 4],
}

/// Crops `n` labelled examples (classes balanced, round-robin) from frames a source
/// renders: `source` makes one renderer per thread, and a renderer draws an object of a
/// class for a seed (the simulator's `SampleGenerator`, wired by the caller: vision does
/// not link the simulator). `augment` adds box jitter (shift and scale), as a detector's
/// boxes would have. Reproducible from `seed` whatever `threads` is.
pub fn examples<S, R>(n: usize, seed: u64, augment: bool, threads: usize, source: S) -> Result<Vec<Example>>
where
    S: Fn() -> R + Sync,
    R: FnMut(ObstacleClass, u64) -> Sample,
{
    let threads = threads.clamp(1, 16);
    let per_thread = n.div_ceil(threads).max(1);
    let mut out: Vec<Option<Result<Example>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(per_thread).enumerate() {
            let source = &source;
            scope.spawn(move || {
                let mut render = source();
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let i = t * per_thread + k;
                    let class = ObstacleClass::ALL[i % ObstacleClass::ALL.len()];
                    let s = derive_seed(seed, i as u64);
                    *slot = Some(example(render(class, s), class, s, augment));
                }
            });
        }
    });
    out.into_iter().map(|e| e.unwrap_or_else(|| Err(VisionError::Io("sample not generated".into())))).collect()
}

fn example(f: Sample, class: ObstacleClass, seed: u64, augment: bool) -> Result<Example> {
    let mut rng = InitRng::new(seed);
    let (shift, scale) = if augment {
        ([(rng.next_f32() - 0.5) * 0.16, (rng.next_f32() - 0.5) * 0.16], 0.9 + rng.next_f32() * 0.25)
    } else {
        ([0.0, 0.0], 1.0)
    };
    crop(&f.pixels, f.width, f.height, f.bbox, shift, scale).map(|crop| Example { crop, class, weight: 1.0 })
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub channels: Vec<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// Fraction held out for validation.
    pub validation: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            channels: vec![16, 32, 64],
            epochs: 10,
            batch_size: 64,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            seed: 0,
            validation: 0.1,
        }
    }
}

/// Figures of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f32,
    pub train_accuracy: f32,
    pub validation_loss: f32,
    pub validation_accuracy: f32,
}

/// The outcome of training: the folded weights and the curves.
#[derive(Debug)]
pub struct Trained {
    pub tensors: HashMap<String, Tensor>,
    pub history: Vec<EpochStats>,
}

fn batch(examples: &[Example], idx: &[usize], device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
    let crops: Vec<Crop> = idx.iter().map(|&i| examples[i].crop.clone()).collect();
    let x = Recogniser::batch_tensor(&crops, device)?;
    let y =
        Tensor::from_vec(idx.iter().map(|&i| examples[i].class.index() as u32).collect::<Vec<_>>(), idx.len(), device)?;
    let w = Tensor::from_vec(idx.iter().map(|&i| examples[i].weight).collect::<Vec<_>>(), idx.len(), device)?;
    Ok((x, y, w))
}

/// Weighted cross-entropy and the number of correct predictions.
fn loss_and_correct(logits: &Tensor, y: &Tensor, w: &Tensor) -> Result<(Tensor, f32)> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let loss = ((picked * w)?.sum_all()? / w.sum_all()?.to_scalar::<f32>()? as f64)?.neg()?;
    let correct = logits.argmax(D::Minus1)?.eq(y)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok((loss, correct))
}

/// Trains on `examples`. `parent` (folded tensors of a shipped model) fine-tunes instead
/// of starting from scratch. Calls `on_batch(done, total)` and `on_epoch(stats)`.
pub fn train(
    examples: &[Example],
    cfg: &TrainConfig,
    parent: Option<&HashMap<String, Tensor>>,
    device: &Device,
    mut on_batch: impl FnMut(usize, usize),
    mut on_epoch: impl FnMut(&EpochStats),
) -> Result<Trained> {
    if examples.len() < 12 {
        return Err(VisionError::Dataset {
            path: "training set".into(),
            reason: format!("{} examples are too few to train on", examples.len()),
        });
    }
    let mut net = match parent {
        Some(t) => TrainNet::from_folded(t, &cfg.channels, device)?,
        None => TrainNet::new(&cfg.channels, cfg.seed, device)?,
    };
    let mut rng = InitRng::new(derive_seed(cfg.seed, 77));
    // Deterministic split and shuffles.
    let mut order: Vec<usize> = (0..examples.len()).collect();
    shuffle(&mut order, &mut rng);
    let n_val = ((examples.len() as f32 * cfg.validation) as usize).max(6).min(examples.len() / 2);
    let (val, train_idx) = order.split_at(n_val);
    let (val, mut train_idx) = (val.to_vec(), train_idx.to_vec());
    let params = ParamsAdamW { lr: cfg.learning_rate, weight_decay: cfg.weight_decay, ..ParamsAdamW::default() };
    let mut opt = AdamW::new(net.vars(), params)?;
    let batches = train_idx.len().div_ceil(cfg.batch_size);
    let total = batches * cfg.epochs;
    let mut history = Vec::new();
    for epoch in 0..cfg.epochs {
        // Cosine decay of the learning rate.
        let lr = cfg.learning_rate * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / cfg.epochs as f64).cos());
        opt.set_learning_rate(lr.max(cfg.learning_rate * 0.02));
        shuffle(&mut train_idx, &mut rng);
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0f32, 0usize);
        for (b, idx) in train_idx.chunks(cfg.batch_size).enumerate() {
            if idx.len() < 2 {
                continue;
            }
            let (x, y, w) = batch(examples, idx, device)?;
            let logits = net.forward(&x, true)?;
            let (loss, c) = loss_and_correct(&logits, &y, &w)?;
            opt.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
            correct += c;
            seen += idx.len();
            on_batch(epoch * batches + b + 1, total);
        }
        let (vl, va) = evaluate(&mut net, examples, &val, device)?;
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: (loss_sum / seen.max(1) as f64) as f32,
            train_accuracy: correct / seen.max(1) as f32,
            validation_loss: vl,
            validation_accuracy: va,
        };
        on_epoch(&stats);
        history.push(stats);
    }
    Ok(Trained { tensors: net.folded()?, history })
}

fn evaluate(net: &mut TrainNet, examples: &[Example], idx: &[usize], device: &Device) -> Result<(f32, f32)> {
    let (mut loss_sum, mut correct) = (0f64, 0f32);
    for chunk in idx.chunks(128) {
        let (x, y, w) = batch(examples, chunk, device)?;
        let logits = net.forward(&x, false)?;
        let (loss, c) = loss_and_correct(&logits, &y, &w)?;
        loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        correct += c;
    }
    Ok(((loss_sum / idx.len().max(1) as f64) as f32, correct / idx.len().max(1) as f32))
}

fn shuffle(v: &mut [usize], rng: &mut InitRng) {
    for i in (1..v.len()).rev() {
        let j = ((rng.next_f32() * (i + 1) as f32) as usize).min(i);
        v.swap(i, j);
    }
}

/// Writes weights and config to `dir`.
pub fn save(dir: &std::path::Path, config: &ModelConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| VisionError::Io(format!("cannot create {}: {e}", dir.display())))?;
    candle_core::safetensors::save(tensors, dir.join(crate::model::WEIGHTS_FILE))?;
    config.save(dir)
}
