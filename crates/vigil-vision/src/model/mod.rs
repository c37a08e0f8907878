//! The network, its config, the folded inference form and the recogniser API.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vigil_core::ObstacleClass;

use crate::preprocess::{Crop, INPUT_SIZE, MEAN, STD};
use crate::{Result, VisionError};

mod net;

pub(crate) use net::InitRng;
pub use net::{InferNet, TrainNet};

pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The biggest weights file loaded (read whole into memory); the shipped model is 96 KB.
pub const MAX_WEIGHTS_BYTES: u64 = 256 << 20;
pub const CONFIG_FILE: &str = "config.json";
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// `config.json` beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub version: String,
    pub architecture: Architecture,
    /// Output order of the classifier.
    pub classes: Vec<String>,
    pub normalisation: Normalisation,
    /// Batch norm is folded into the convolutions in the shipped weights.
    pub batch_norm_folded: bool,
    pub training: TrainingRecord,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    pub kind: String,
    pub input_size: usize,
    /// Output channels of each 3×3 conv + ReLU + 2×2 max-pool stage.
    pub channels: Vec<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingRecord {
    pub command: String,
    pub seed: u64,
    pub samples: usize,
    pub epochs: usize,
    pub data: String,
    pub final_train_loss: f32,
    pub final_validation_accuracy: f32,
    /// Parent model when fine-tuned, datasets and drives it saw (lineage).
    pub parent: Option<String>,
    pub datasets: Vec<String>,
    /// Drive ids the datasets' crops came from (`provenance.drive` of their labels).
    pub drives: Vec<String>,
}

/// The model built into the binary (`models/obstacle-classifier` when it was built): the
/// default `--model`, so Vigil runs from any directory and after `cargo install`.
pub const BUILTIN_MODEL: &str = "builtin:obstacle-classifier";
const BUILTIN_CONFIG: &str = include_str!("../../../../models/obstacle-classifier/config.json");
const BUILTIN_WEIGHTS: &[u8] = include_bytes!("../../../../models/obstacle-classifier/model.safetensors");

/// Whether `dir` names the built-in model rather than a directory.
pub fn is_builtin(dir: &Path) -> bool {
    dir == Path::new(BUILTIN_MODEL)
}

/// The text of a model's `config.json` (the built-in one's when `dir` names it).
pub fn config_text(dir: &Path) -> std::io::Result<String> {
    if is_builtin(dir) {
        return Ok(BUILTIN_CONFIG.to_string());
    }
    vigil_core::bounded::read_text(&dir.join(CONFIG_FILE), vigil_core::bounded::MAX_TEXT_BYTES)
}

/// The weights of the model in `dir` (or the built-in one's), unchecked: the start of a
/// fine-tune (`vigil train --init`).
pub fn raw_weights(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let loaded = if is_builtin(dir) {
        candle_core::safetensors::load_buffer(BUILTIN_WEIGHTS, device)
    } else {
        candle_core::safetensors::load(dir.join(WEIGHTS_FILE), device)
    };
    loaded.map_err(|e| VisionError::Weights {
        path: dir.join(WEIGHTS_FILE).display().to_string(),
        reason: format!("not a readable safetensors file: {e}"),
    })
}

/// Whether `dir` holds a model (its `config.json`), or names the built-in one.
pub fn model_exists(dir: &Path) -> bool {
    is_builtin(dir) || dir.join(CONFIG_FILE).exists()
}

impl ModelConfig {
    pub fn new(name: &str, channels: Vec<usize>) -> Self {
        Self {
            name: name.into(),
            version: "1".into(),
            architecture: Architecture { kind: "vigil-cnn".into(), input_size: INPUT_SIZE, channels },
            classes: ObstacleClass::ALL.iter().map(|c| c.name().to_string()).collect(),
            normalisation: Normalisation { mean: MEAN, std: STD },
            batch_norm_folded: true,
            training: TrainingRecord::default(),
        }
    }

    pub fn load(dir: &Path) -> Result<Self> {
        if is_builtin(dir) {
            return Self::parse(BUILTIN_CONFIG, Path::new(BUILTIN_MODEL));
        }
        let path = dir.join(CONFIG_FILE);
        let text = vigil_core::bounded::read_text(&path, vigil_core::bounded::MAX_TEXT_BYTES).map_err(|e| {
            VisionError::Model {
                dir: dir.display().to_string(),
                reason: format!(
                    "cannot read {CONFIG_FILE}: {e} (train one with `vigil train`, or leave --model out for the built-in {BUILTIN_MODEL})"
                ),
            }
        })?;
        Self::parse(&text, &path)
    }

    /// A model's `config.json` text, checked against what this build runs.
    fn parse(text: &str, path: &Path) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_str(text).map_err(|e| VisionError::Mismatch {
            path: path.display().to_string(),
            reason: format!("malformed: {e}"),
        })?;
        let classes: Vec<String> = ObstacleClass::ALL.iter().map(|c| c.name().to_string()).collect();
        if cfg.classes != classes {
            return Err(VisionError::Mismatch {
                path: path.display().to_string(),
                reason: format!("classes {:?} differ from Vigil's {:?}", cfg.classes, classes),
            });
        }
        if cfg.architecture.input_size != INPUT_SIZE {
            return Err(VisionError::Mismatch {
                path: path.display().to_string(),
                reason: format!("input_size {} but this build crops {INPUT_SIZE}", cfg.architecture.input_size),
            });
        }
        if cfg.architecture.channels.is_empty() || !cfg.batch_norm_folded {
            return Err(VisionError::Mismatch {
                path: path.display().to_string(),
                reason: "needs at least one conv stage and folded batch norm".into(),
            });
        }
        Ok(cfg)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| VisionError::Io(e.to_string()))?;
        std::fs::write(dir.join(CONFIG_FILE), text + "\n").map_err(|e| VisionError::Io(e.to_string()))
    }
}

/// One classification.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: ObstacleClass,
    pub confidence: f32,
    /// Probabilities in `ObstacleClass::ALL` order.
    pub probabilities: Vec<f32>,
}

/// Picks the device: CUDA when built with `--features cuda` and a GPU is present, else CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
        tracing::warn!("built with CUDA but no GPU is usable; running on CPU");
    }
    Device::Cpu
}

/// Human-readable device name, as carried in recommendations.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda:0".into(),
        Device::Metal(_) => "metal:0".into(),
    }
}

/// Threads a batch is split across by default: every core on a CPU (one crop already
/// fills a core, so a batch pays by spreading its crops over the cores), one on a GPU
/// (the device is what runs the batch in parallel).
pub fn default_batch_threads(device: &Device) -> usize {
    if device.is_cpu() { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { 1 }
}

/// Crops per forward pass by default: one on a CPU, where a pass over one crop costs the
/// least per crop (measured 0.35 ms at 1, 0.37 at 2 and 4, 0.45-0.48 at 8 and 32: a
/// bigger pass only moves more activations through the caches), the whole batch on a GPU.
pub fn default_crops_per_pass(device: &Device) -> usize {
    if device.is_cpu() { 1 } else { usize::MAX }
}

/// A loaded model, ready to classify crops. Load once, share by reference.
#[derive(Debug, Clone)]
pub struct Recogniser {
    pub config: ModelConfig,
    net: InferNet,
    device: Device,
    /// The threads a batch's forward passes are spread over (see
    /// [`default_batch_threads`]); `None`: the caller's thread only. They live as long as
    /// the model: a thread's first forward pass allocates its matmul buffers (~14 ms), so
    /// a thread per batch would pay that every time.
    split: Option<Arc<rayon::ThreadPool>>,
    /// The most crops one forward pass takes (see [`default_crops_per_pass`]).
    per_pass: usize,
}

fn split_pool(threads: usize) -> Result<Option<Arc<rayon::ThreadPool>>> {
    if threads <= 1 {
        return Ok(None);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("vigil-vision-split-{i}"))
        .build()
        .map_err(|e| VisionError::Io(format!("cannot start {threads} inference threads: {e}")))?;
    Ok(Some(Arc::new(pool)))
}

impl Recogniser {
    /// Loads `config.json` and `model.safetensors` from `dir` onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config = ModelConfig::load(dir)?;
        if is_builtin(dir) {
            let tensors = candle_core::safetensors::load_buffer(BUILTIN_WEIGHTS, device).map_err(|e| {
                VisionError::Weights { path: BUILTIN_MODEL.into(), reason: format!("the built-in weights: {e}") }
            })?;
            let net = InferNet::from_tensors(&tensors, &config, BUILTIN_MODEL)?;
            return Self::with_net(config, net, device);
        }
        let path = dir.join(WEIGHTS_FILE);
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(VisionError::Weights {
                path: shown,
                reason: "file not found (train with `vigil train`)".into(),
            });
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_WEIGHTS_BYTES {
            return Err(VisionError::Weights {
                path: shown,
                reason: format!(
                    "{size} bytes, over the limit of {MAX_WEIGHTS_BYTES} for this model family (a wrong file?)"
                ),
            });
        }
        let tensors = candle_core::safetensors::load(&path, device).map_err(|e| VisionError::Weights {
            path: shown.clone(),
            reason: format!("not a readable safetensors file: {e}"),
        })?;
        let net = InferNet::from_tensors(&tensors, &config, &shown)?;
        Self::with_net(config, net, device)
    }

    /// Builds a recogniser from in-memory folded tensors (after training).
    pub fn from_parts(config: ModelConfig, tensors: &HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let net = InferNet::from_tensors(tensors, &config, "in-memory model")?;
        Self::with_net(config, net, device)
    }

    /// The device's defaults for cutting and spreading batches.
    fn with_net(config: ModelConfig, net: InferNet, device: &Device) -> Result<Self> {
        Ok(Self {
            config,
            net,
            device: device.clone(),
            split: split_pool(default_batch_threads(device))?,
            per_pass: default_crops_per_pass(device),
        })
    }

    /// Splits each batch across at most `threads` threads (1: none).
    pub fn with_batch_threads(mut self, threads: usize) -> Result<Self> {
        self.split = split_pool(threads)?;
        Ok(self)
    }

    /// Threads a batch is split across.
    pub fn batch_threads(&self) -> usize {
        self.split.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Runs at most `crops` crops in one forward pass (at least one).
    pub fn with_crops_per_pass(mut self, crops: usize) -> Self {
        self.per_pass = crops.max(1);
        self
    }

    /// The most crops one forward pass takes.
    pub fn crops_per_pass(&self) -> usize {
        self.per_pass
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn device_name(&self) -> String {
        device_name(&self.device)
    }

    /// Checks every crop's size; the error names the first bad crop's index in `crops`.
    fn check_sizes(crops: &[Crop]) -> Result<()> {
        let per = 3 * INPUT_SIZE * INPUT_SIZE;
        match crops.iter().position(|c| c.0.len() != per) {
            Some(index) => {
                Err(VisionError::CropSize { index, found: crops[index].0.len(), expected: per, size: INPUT_SIZE })
            }
            None => Ok(()),
        }
    }

    /// Stacks crops into a (B, 3, S, S) tensor, checking each crop's size.
    pub fn batch_tensor(crops: &[Crop], device: &Device) -> Result<Tensor> {
        Self::check_sizes(crops)?;
        let mut data = Vec::with_capacity(crops.len() * 3 * INPUT_SIZE * INPUT_SIZE);
        for c in crops {
            data.extend_from_slice(&c.0);
        }
        Ok(Tensor::from_vec(data, (crops.len(), 3, INPUT_SIZE, INPUT_SIZE), device)?)
    }

    /// Logits from both the batched path and the conv2d reference (for tests).
    pub fn logits_both(&self, crops: &[Crop]) -> Result<(Tensor, Tensor)> {
        let x = Self::batch_tensor(crops, &self.device)?;
        Ok((self.net.forward(&x)?, self.net.forward_reference(&x)?))
    }

    /// Classifies a batch of crops, answers in the crops' order. The batch runs as forward
    /// passes of at most [`crops_per_pass`](Self::crops_per_pass) crops, spread over
    /// [`batch_threads`](Self::batch_threads) threads; a crop's result does not depend on
    /// how the batch was cut (each crop is computed on its own rows).
    pub fn classify(&self, crops: &[Crop]) -> Result<Vec<Prediction>> {
        use rayon::prelude::*;
        Self::check_sizes(crops)?;
        // Every thread gets work, however large a pass may be.
        let per_pass = self.per_pass.min(crops.len().div_ceil(self.batch_threads())).max(1);
        let parts: Vec<Result<Vec<Prediction>>> = match &self.split {
            Some(pool) if crops.len() > per_pass => {
                pool.install(|| crops.par_chunks(per_pass).map(|c| self.classify_here(c)).collect())
            }
            _ => crops.chunks(per_pass).map(|c| self.classify_here(c)).collect(),
        };
        let mut out = Vec::with_capacity(crops.len());
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }

    /// One forward pass over `crops` on the calling thread.
    fn classify_here(&self, crops: &[Crop]) -> Result<Vec<Prediction>> {
        if crops.is_empty() {
            return Ok(Vec::new());
        }
        let x = Self::batch_tensor(crops, &self.device)?;
        let probs = candle_nn::ops::softmax_last_dim(&self.net.forward(&x)?)?.to_device(&Device::Cpu)?;
        let rows: Vec<Vec<f32>> = probs.to_vec2()?;
        Ok(rows
            .into_iter()
            .map(|p| {
                let (best, confidence) =
                    p.iter().copied().enumerate().fold((0, f32::MIN), |a, (i, v)| if v > a.1 { (i, v) } else { a });
                Prediction {
                    class: ObstacleClass::ALL[best.min(ObstacleClass::ALL.len() - 1)],
                    confidence,
                    probabilities: p,
                }
            })
            .collect())
    }
}
