//! Dynamic batching: gather up to `max_batch` crops or wait at most `max_wait` after the
//! first, whichever comes first, then classify them in one forward pass on a dedicated
//! thread (CPU-bound inference stays off async and actor threads).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::{Prediction, Recogniser};
use crate::preprocess::Crop;
use crate::{Result, VisionError};

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// Requests that may wait in the queue (backpressure beyond it).
    pub queue: usize,
    /// Inference threads, each forming its own batches from the shared queue. On a CPU
    /// one crop already fills a core, so two single crops on two threads answer sooner
    /// than one batch of two; on a GPU one thread batching is what pays.
    pub threads: usize,
    /// Whether crops go through this batcher at all (see [`Serving`]).
    pub serving: Serving,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self { max_batch: 16, max_wait: Duration::from_micros(2000), queue: 256, threads: 1, serving: Serving::Auto }
    }
}

/// Where a worker's forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serving {
    /// `Inline` on a CPU, `Batched` on a GPU.
    #[default]
    Auto,
    /// Each worker runs the forward pass itself, on its own thread. On a CPU one crop
    /// already fills a core, so a batch buys nothing and the hop to a batching thread
    /// and back is pure latency.
    Inline,
    /// Crops from every worker go to one [`Batcher`]: on a GPU, batches are what pays.
    Batched,
}

impl BatcherConfig {
    /// Whether the forward pass runs inline (in each worker) on `device`.
    pub fn inline_on(&self, device: &candle_core::Device) -> bool {
        match self.serving {
            Serving::Inline => true,
            Serving::Batched => false,
            Serving::Auto => device.is_cpu(),
        }
    }
}

/// Where an answer goes: a blocking caller or an async one.
#[derive(Debug)]
enum Reply {
    Sync(mpsc::SyncSender<Result<Prediction>>),
    Async(tokio::sync::oneshot::Sender<Result<Prediction>>),
}

impl Reply {
    fn send(self, r: Result<Prediction>) {
        match self {
            Reply::Sync(tx) => {
                let _ = tx.send(r);
            }
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// Counters of the batching thread.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub batches: AtomicU64,
    pub crops: AtomicU64,
}

#[derive(Debug)]
pub struct Batcher {
    tx: Option<mpsc::SyncSender<(Crop, Reply)>>,
    threads: Vec<JoinHandle<()>>,
    pub stats: Arc<BatchStats>,
}

impl Batcher {
    pub fn spawn(model: Recogniser, cfg: BatcherConfig) -> Result<Self> {
        Self::spawn_with_delay(model, cfg, Duration::ZERO)
    }

    /// Like [`spawn`](Self::spawn), adding `delay` to every batch (drills: a slower model).
    pub fn spawn_with_delay(model: Recogniser, cfg: BatcherConfig, delay: Duration) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<(Crop, Reply)>(cfg.queue.max(1));
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let stats = Arc::new(BatchStats::default());
        let mut threads = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let (model, rx, s) = (model.clone(), rx.clone(), stats.clone());
            let t = std::thread::Builder::new()
                .name(format!("vigil-vision-batcher-{i}"))
                .spawn(move || run(model, cfg, delay, rx, s))
                .map_err(|e| VisionError::Io(format!("cannot start the batching thread: {e}")))?;
            threads.push(t);
        }
        Ok(Self { tx: Some(tx), threads, stats })
    }

    /// Queues a crop; the answer arrives on the returned channel.
    pub fn submit(&self, crop: Crop) -> Result<mpsc::Receiver<Result<Prediction>>> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(crop, Reply::Sync(reply))?;
        Ok(rx)
    }

    /// Queues a crop from async code; await the returned receiver for the answer. Waits
    /// (blocking briefly) only when the batcher's queue is full.
    pub fn submit_async(&self, crop: Crop) -> Result<tokio::sync::oneshot::Receiver<Result<Prediction>>> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(crop, Reply::Async(reply))?;
        Ok(rx)
    }

    fn send(&self, crop: Crop, reply: Reply) -> Result<()> {
        self.tx.as_ref().ok_or(VisionError::BatcherClosed)?.send((crop, reply)).map_err(|_| VisionError::BatcherClosed)
    }

    /// Classifies one crop, batched with whatever else arrives meanwhile.
    pub fn classify(&self, crop: Crop) -> Result<Prediction> {
        self.submit(crop)?.recv().map_err(|_| VisionError::BatcherClosed)?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

type Shared = Arc<std::sync::Mutex<mpsc::Receiver<(Crop, Reply)>>>;

/// Gathers one batch: the first request (waiting for it), then more up to `max_batch`
/// within `max_wait`. The queue stays locked while gathering, so threads take turns.
fn gather(rx: &Shared, cfg: &BatcherConfig) -> Option<Vec<(Crop, Reply)>> {
    let rx = rx.lock().ok()?;
    let first = rx.recv().ok()?;
    let deadline = Instant::now() + cfg.max_wait;
    let mut pending = vec![first];
    while pending.len() < cfg.max_batch.max(1) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => pending.push(r),
            Err(_) => break,
        }
    }
    Some(pending)
}

fn run(model: Recogniser, cfg: BatcherConfig, delay: Duration, rx: Shared, stats: Arc<BatchStats>) {
    // Warm up: the first forward pass on a thread allocates its buffers (~14 ms
    // measured); pay it, on every thread a batch is split across, before the first
    // real crop arrives.
    let size = model.config.architecture.input_size;
    let _ = model.classify(&vec![Crop(vec![0.0; 3 * size * size]); model.batch_threads()]);
    while let Some(pending) = gather(&rx, &cfg) {
        let (crops, replies): (Vec<Crop>, Vec<Reply>) = pending.into_iter().unzip();
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.crops.fetch_add(crops.len() as u64, Ordering::Relaxed);
        match model.classify(&crops) {
            Ok(preds) => {
                for (p, r) in preds.into_iter().zip(replies) {
                    r.send(Ok(p));
                }
            }
            Err(e) => {
                // Answer every waiter; a bad crop fails its whole batch, so retry singly.
                let msg = e.to_string();
                for (c, r) in crops.into_iter().zip(replies) {
                    let one = model.classify(std::slice::from_ref(&c)).and_then(|mut v| {
                        v.pop().ok_or_else(|| VisionError::Io(format!("empty result after batch error: {msg}")))
                    });
                    r.send(one);
                }
            }
        }
    }
}
