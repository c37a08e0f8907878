//! `vigil-vision`: the obstacle recogniser.
//!
//! A small CNN (plain 3×3 convolutions, no depthwise or grouped ones; batch norm folded
//! into the convolutions for inference) classifies a camera crop into pedestrian,
//! cyclist, vehicle, debris, animal or none. This crate owns the model, its config and
//! weights format, crop pre-processing, dynamic batching, training on simulator crops
//! (or a dataset directory) and evaluation. It must not touch transports or actors.

pub mod batcher;
pub mod dataset;
pub mod eval;
pub mod model;
pub mod plot;
pub mod preprocess;
pub mod train;

pub use batcher::{Batcher, BatcherConfig};
pub use model::{ModelConfig, Prediction, Recogniser};
pub use preprocess::{Crop, INPUT_SIZE};

/// Everything that can go wrong in vision, with what and where.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("model directory {dir}: {reason}")]
    Model { dir: String, reason: String },
    #[error("weights file {path} cannot be used: {reason}")]
    Weights { path: String, reason: String },
    #[error("config {path} does not match the weights: {reason}")]
    Mismatch { path: String, reason: String },
    #[error(
        "crop {index} has {found} values, the model takes {expected} (3×{size}×{size}); cut crops with preprocess::crop"
    )]
    CropSize { index: usize, found: usize, expected: usize, size: usize },
    #[error("dataset {path}: {reason}")]
    Dataset { path: String, reason: String },
    #[error("{0}")]
    Io(String),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("the batching thread has stopped")]
    BatcherClosed,
}

pub type Result<T> = std::result::Result<T, VisionError>;
