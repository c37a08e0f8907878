//! The network: the training form (conv, batch norm, ReLU stages and a linear head) and
//! the folded inference form, batch norm folded into the convolutions.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};

use vigil_core::ObstacleClass;

use super::{BN_EPS, BN_MOMENTUM, ModelConfig};

use crate::{Result, VisionError};

/// A tiny deterministic generator for weight initialisation (Candle's CPU RNG is not
/// seedable, and training must be reproducible).
#[derive(Debug, Clone)]
pub(crate) struct InitRng(u64);

impl InitRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(vigil_core::derive_seed(seed, 0x1217))
    }
    pub(crate) fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    }
    pub(crate) fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n).map(|_| (self.next_f32() * 2.0 - 1.0) * bound).collect()
    }
}

#[derive(Debug)]
struct Stage {
    w: Var,
    gamma: Var,
    beta: Var,
    running_mean: Tensor,
    running_var: Tensor,
}

/// The trainable network: conv (no bias) → batch norm → ReLU → max-pool, repeated;
/// global average pool; linear.
#[derive(Debug)]
pub struct TrainNet {
    stages: Vec<Stage>,
    fc_w: Var,
    fc_b: Var,
    pub channels: Vec<usize>,
}

impl TrainNet {
    pub fn new(channels: &[usize], seed: u64, device: &Device) -> Result<Self> {
        let mut rng = InitRng::new(seed);
        let mut stages = Vec::new();
        let mut cin = 3;
        for &cout in channels {
            let fan_in = (cin * 9) as f32;
            let w = Tensor::from_vec(rng.uniform(cout * cin * 9, (6.0 / fan_in).sqrt()), (cout, cin, 3, 3), device)?;
            stages.push(Stage {
                w: Var::from_tensor(&w)?,
                gamma: Var::from_tensor(&Tensor::ones(cout, DType::F32, device)?)?,
                beta: Var::from_tensor(&Tensor::zeros(cout, DType::F32, device)?)?,
                running_mean: Tensor::zeros(cout, DType::F32, device)?,
                running_var: Tensor::ones(cout, DType::F32, device)?,
            });
            cin = cout;
        }
        let n = ObstacleClass::ALL.len();
        let bound = (1.0 / cin as f32).sqrt();
        let fc_w = Var::from_tensor(&Tensor::from_vec(rng.uniform(n * cin, bound), (n, cin), device)?)?;
        let fc_b = Var::from_tensor(&Tensor::from_vec(rng.uniform(n, bound), n, device)?)?;
        Ok(Self { stages, fc_w, fc_b, channels: channels.to_vec() })
    }

    /// Trainable variables (for the optimiser).
    pub fn vars(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self.stages.iter().flat_map(|s| [s.w.clone(), s.gamma.clone(), s.beta.clone()]).collect();
        v.push(self.fc_w.clone());
        v.push(self.fc_b.clone());
        v
    }

    /// Logits for a (B, 3, S, S) batch. In training mode batch statistics are used and
    /// the running statistics updated.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        for s in &mut self.stages {
            let y = x.conv2d(&s.w, 1, 1, 1, 1)?;
            let c = s.gamma.dims1()?;
            let (b, _, h, w) = y.dims4()?;
            // Reductions run over the last, contiguous dimension: (B, C, H·W) → (B, C) → (C).
            let channel_mean = |t: &Tensor| -> Result<Tensor> { Ok(t.reshape((b, c, h * w))?.mean(2)?.mean(0)?) };
            let (mean, var) = if train {
                let m = channel_mean(&y)?;
                let mean = m.reshape((1, c, 1, 1))?;
                let centred = y.broadcast_sub(&mean)?;
                let v = channel_mean(&centred.sqr()?)?;
                let var = v.reshape((1, c, 1, 1))?;
                let (m, v) = (m.detach(), v.detach());
                s.running_mean = ((&s.running_mean * (1.0 - BN_MOMENTUM))? + (m * BN_MOMENTUM)?)?;
                s.running_var = ((&s.running_var * (1.0 - BN_MOMENTUM))? + (v * BN_MOMENTUM)?)?;
                (mean, var)
            } else {
                (s.running_mean.reshape((1, c, 1, 1))?, s.running_var.reshape((1, c, 1, 1))?)
            };
            let norm = y.broadcast_sub(&mean)?.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
            let y = norm
                .broadcast_mul(&s.gamma.as_tensor().reshape((1, c, 1, 1))?)?
                .broadcast_add(&s.beta.as_tensor().reshape((1, c, 1, 1))?)?;
            x = y.relu()?.max_pool2d(2)?;
        }
        let (b, c, h, w) = x.dims4()?;
        let pooled = x.reshape((b, c, h * w))?.mean(2)?;
        Ok(pooled.matmul(&self.fc_w.as_tensor().t()?)?.broadcast_add(self.fc_b.as_tensor())?)
    }

    /// Folds batch norm into the convolutions: the tensors of the inference network.
    pub fn folded(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, s) in self.stages.iter().enumerate() {
            let c = s.gamma.dims1()?;
            let inv = (&s.running_var + BN_EPS)?.sqrt()?.recip()?;
            let k = (s.gamma.as_tensor() * &inv)?;
            let w = s.w.as_tensor().broadcast_mul(&k.reshape((c, 1, 1, 1))?)?;
            let b = (s.beta.as_tensor() - (&s.running_mean * &k)?)?;
            out.insert(format!("stage{i}.weight"), w.contiguous()?);
            out.insert(format!("stage{i}.bias"), b.contiguous()?);
        }
        out.insert("fc.weight".into(), self.fc_w.as_tensor().contiguous()?);
        out.insert("fc.bias".into(), self.fc_b.as_tensor().contiguous()?);
        Ok(out)
    }

    /// Starts from a shipped (folded) model: convolutions keep their folded weights, batch
    /// norm starts as identity with the folded bias as beta.
    pub fn from_folded(tensors: &HashMap<String, Tensor>, channels: &[usize], device: &Device) -> Result<Self> {
        let mut net = Self::new(channels, 0, device)?;
        for (i, s) in net.stages.iter_mut().enumerate() {
            let get = |k: &str| {
                tensors.get(&format!("stage{i}.{k}")).cloned().ok_or_else(|| VisionError::Weights {
                    path: "parent model".into(),
                    reason: format!("missing stage{i}.{k}"),
                })
            };
            s.w.set(&get("weight")?)?;
            s.beta.set(&get("bias")?)?;
        }
        let get = |k: &str| {
            tensors
                .get(k)
                .cloned()
                .ok_or_else(|| VisionError::Weights { path: "parent model".into(), reason: format!("missing {k}") })
        };
        net.fc_w.set(&get("fc.weight")?)?;
        net.fc_b.set(&get("fc.bias")?)?;
        Ok(net)
    }
}

/// The inference network: folded conv + bias → ReLU → max-pool, repeated; mean; linear.
///
/// Inference runs channels-last: each 3×3 convolution is 9 shifted views of the padded
/// input, each multiplied by its tap's (C_in, C_out) slice of the weights and summed, over
/// every pixel of the batch at once. One crop already makes these products large (48×48
/// pixels), so on a CPU a bigger batch does not make them faster per crop; what a batch
/// buys there is being split across cores ([`Recogniser::classify`]).
#[derive(Debug, Clone)]
pub struct InferNet {
    stages: Vec<(Tensor, Tensor)>,
    /// Per stage: weights as a (9·C_in, C_out) matrix for the patch matmul.
    mats: Vec<Tensor>,
    fc_w: Tensor,
    fc_b: Tensor,
}

impl InferNet {
    pub(super) fn from_tensors(tensors: &HashMap<String, Tensor>, cfg: &ModelConfig, path: &str) -> Result<Self> {
        let mismatch = |reason: String| VisionError::Mismatch { path: path.to_string(), reason };
        let get = |k: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors.get(k).ok_or_else(|| mismatch(format!("weights lack `{k}`")))?;
            if t.dims() != shape {
                return Err(mismatch(format!("`{k}` has shape {:?}, config needs {shape:?}", t.dims())));
            }
            Ok(t.to_dtype(DType::F32)?)
        };
        let mut stages = Vec::new();
        let mut cin = 3;
        for (i, &cout) in cfg.architecture.channels.iter().enumerate() {
            stages.push((
                get(&format!("stage{i}.weight"), &[cout, cin, 3, 3])?,
                get(&format!("stage{i}.bias"), &[cout])?,
            ));
            cin = cout;
        }
        let n = cfg.classes.len();
        let extra = tensors.len() - (2 * stages.len() + 2);
        if extra != 0 {
            return Err(mismatch(format!("weights hold {extra} tensor(s) the config does not describe")));
        }
        let mats = stages
            .iter()
            .map(|(w, _)| {
                let (cout, cin, _, _) = w.dims4()?;
                Ok(w.permute((2, 3, 1, 0))?.reshape((9 * cin, cout))?.contiguous()?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { fc_w: get("fc.weight", &[n, cin])?, fc_b: get("fc.bias", &[n])?, stages, mats })
    }

    /// Logits for a (B, 3, S, S) batch (channels-last internally).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.permute((0, 2, 3, 1))?.contiguous()?; // (B, H, W, C)
        for ((_, bias), mat) in self.stages.iter().zip(&self.mats) {
            let (b, h, w, c) = x.dims4()?;
            let padded = x.pad_with_zeros(1, 1, 1)?.pad_with_zeros(2, 1, 1)?;
            let cout = mat.dim(1)?;
            // Σ over the 9 taps of (shifted view as a B·H·W × C matrix) · (C × C_out).
            let mut acc: Option<Tensor> = None;
            for kh in 0..3 {
                for kw in 0..3 {
                    let tap = padded.narrow(1, kh, h)?.narrow(2, kw, w)?.contiguous()?.reshape((b * h * w, c))?;
                    let k = (kh * 3 + kw) * c;
                    let part = tap.matmul(&mat.narrow(0, k, c)?)?;
                    acc = Some(match acc {
                        Some(a) => (a + part)?,
                        None => part,
                    });
                }
            }
            let acc = acc.ok_or_else(|| VisionError::Io("empty convolution".into()))?;
            let y = acc.broadcast_add(bias)?.relu()?; // (B·H·W, C_out)
            // 2×2 max-pool, channels-last.
            let y = y.reshape((b * h / 2, 2, w / 2, 2 * cout))?;
            let y = y.narrow(1, 0, 1)?.maximum(&y.narrow(1, 1, 1)?)?.reshape((b * h / 2 * w / 2, 2, cout))?;
            x = y.narrow(1, 0, 1)?.maximum(&y.narrow(1, 1, 1)?)?.reshape((b, h / 2, w / 2, cout))?;
        }
        let (b, h, w, c) = x.dims4()?;
        let pooled = x.reshape((b, h * w, c))?.transpose(1, 2)?.contiguous()?.mean(2)?;
        Ok(pooled.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)?)
    }

    /// The same network computed channels-first with Candle's conv2d (the reference).
    pub fn forward_reference(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (w, b) in &self.stages {
            let c = b.dims1()?;
            x = x.conv2d(w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((1, c, 1, 1))?)?.relu()?.max_pool2d(2)?;
        }
        let (b, c, h, w) = x.dims4()?;
        let pooled = x.reshape((b, c, h * w))?.mean(2)?;
        Ok(pooled.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)?)
    }
}
