//! The recogniser: the committed model works, bad inputs are clear errors, training is
//! reproducible, the dataset format round-trips, and the batcher batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use vigil_core::ObstacleClass;
use vigil_sim::samples::SampleGenerator;
use vigil_vision::dataset::{self, Label};
use vigil_vision::model::{ModelConfig, Recogniser};
use vigil_vision::train::{self, TrainConfig};
use vigil_vision::{Batcher, BatcherConfig, Crop, INPUT_SIZE, VisionError, eval};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/obstacle-classifier")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-vision-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Real rendered samples from the simulator, as the CLI wires them.
fn simulate_examples(n: usize, seed: u64, augment: bool, threads: usize) -> Result<Vec<train::Example>, VisionError> {
    train::examples(n, seed, augment, threads, || {
        let mut generator = SampleGenerator::default();
        move |class, seed| {
            let f = generator.sample(class, seed);
            train::Sample { pixels: f.pixels, width: f.width, height: f.height, bbox: f.bbox }
        }
    })
}

#[test]
fn committed_model_is_accurate_on_fresh_crops() {
    let model = Recogniser::load(&shipped(), &Device::Cpu).expect("the committed model loads");
    let test = simulate_examples(300, 987_654, false, 2).unwrap();
    let fit = simulate_examples(120, 123_457, false, 2).unwrap();
    let r = eval::evaluate(&model, &fit, &test).unwrap();
    assert!(r.accuracy >= 0.90, "accuracy {} on 300 fresh crops; confusion {:?}", r.accuracy, r.confusion);
    assert!(r.baseline_accuracy < r.accuracy);
}

fn copy_model(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(shipped().join(f), to.join(f)).unwrap();
    }
}

#[test]
fn missing_or_corrupt_weights_are_clear_errors() {
    let dir = tempdir("missing");
    copy_model(&dir);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let e = Recogniser::load(&dir, &Device::Cpu).unwrap_err();
    assert!(matches!(e, VisionError::Weights { .. }), "{e}");
    assert!(e.to_string().contains("model.safetensors"), "{e}");

    std::fs::write(dir.join("model.safetensors"), b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all").unwrap();
    let e = Recogniser::load(&dir, &Device::Cpu).unwrap_err();
    assert!(matches!(e, VisionError::Weights { .. }), "{e}");

    let e = Recogniser::load(&tempdir("empty"), &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");

    // Files far bigger than any model of this family are refused before they are read
    // (sparse files: nothing is written to disk).
    let huge = tempdir("huge");
    copy_model(&huge);
    std::fs::File::options().write(true).open(huge.join("model.safetensors")).unwrap().set_len(8 << 30).unwrap();
    let e = Recogniser::load(&huge, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("over the limit"), "{e}");
    std::fs::File::options().write(true).open(huge.join("config.json")).unwrap().set_len(8 << 30).unwrap();
    let e = Recogniser::load(&huge, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("config.json") && e.to_string().contains("over the limit"), "{e}");
}

/// A dataset is someone else's files: a PNG whose header claims a huge image, a corrupt
/// PNG and a labels file with no newline are clear errors, not an allocation of what they
/// claim nor a panic.
#[test]
fn a_hostile_dataset_is_a_clear_error_not_an_allocation() {
    let dir = tempdir("hostile");
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    // A valid PNG signature and IHDR claiming 60000 × 60000 RGB (10 GB decoded).
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&60_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    std::fs::write(dir.join("crops/bomb.png"), &png).unwrap();
    std::fs::write(
        dir.join("labels.jsonl"),
        "{\"file\":\"crops/bomb.png\",\"class\":\"pedestrian\",\"source\":\"x\"}\n",
    )
    .unwrap();
    let e = dataset::read(&dir).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("bomb.png"), "{e}");
    // A corrupt one: its header cut off, then garbage.
    std::fs::write(dir.join("crops/bomb.png"), b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDRgarbage").unwrap();
    let e = dataset::read(&dir).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("bomb.png"), "{e}");
    std::fs::write(dir.join("labels.jsonl"), "x".repeat(1 << 20)).unwrap();
    let e = dataset::read(&dir).unwrap_err().to_string();
    assert!(e.contains("a line over"), "{e}");
}

/// The CRC-32 of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn config_that_does_not_match_the_weights_is_a_clear_error() {
    let dir = tempdir("mismatch");
    copy_model(&dir);
    let mut cfg = ModelConfig::load(&dir).unwrap();
    cfg.classes.swap(0, 1);
    cfg.save(&dir).unwrap();
    let e = Recogniser::load(&dir, &Device::Cpu).unwrap_err();
    assert!(matches!(e, VisionError::Mismatch { .. }) && e.to_string().contains("classes"), "{e}");

    copy_model(&dir);
    let mut cfg = ModelConfig::load(&dir).unwrap();
    cfg.architecture.channels = vec![8, 8, 8];
    cfg.save(&dir).unwrap();
    let e = Recogniser::load(&dir, &Device::Cpu).unwrap_err();
    assert!(matches!(e, VisionError::Mismatch { .. }) && e.to_string().contains("shape"), "{e}");
}

#[test]
fn wrong_crop_size_is_a_clear_error() {
    let model = Recogniser::load(&shipped(), &Device::Cpu).unwrap();
    let good = Crop(vec![0.0; 3 * INPUT_SIZE * INPUT_SIZE]);
    let bad = Crop(vec![0.0; 3 * 32 * 32]);
    let e = model.classify(&[good.clone(), bad.clone()]).unwrap_err();
    assert!(matches!(e, VisionError::CropSize { index: 1, .. }), "{e}");
    // Split across threads, the index still counts in the caller's batch.
    let model = model.with_batch_threads(2).unwrap();
    let mut batch = vec![good; 6];
    batch[4] = bad;
    let e = model.classify(&batch).unwrap_err();
    assert!(matches!(e, VisionError::CropSize { index: 4, .. }), "{e}");
}

#[test]
fn a_batch_cut_into_passes_over_threads_gives_the_same_answers_in_order() {
    let model = Recogniser::load(&shipped(), &Device::Cpu).unwrap();
    let crops: Vec<Crop> = simulate_examples(11, 8, false, 2).unwrap().into_iter().map(|e| e.crop).collect();
    let one = model.clone().with_batch_threads(1).unwrap().classify(&crops).unwrap();
    let whole = model.clone().with_batch_threads(1).unwrap().with_crops_per_pass(usize::MAX);
    let whole = whole.classify(&crops).unwrap();
    for (threads, per_pass) in [(1, 1), (2, 1), (2, 4), (3, usize::MAX), (4, 2), (16, 1)] {
        let cut = model.clone().with_batch_threads(threads).unwrap().with_crops_per_pass(per_pass);
        let split = cut.classify(&crops).unwrap();
        assert_eq!(split.len(), crops.len());
        for (i, ((a, b), w)) in split.iter().zip(&one).zip(&whole).enumerate() {
            for other in [b, w] {
                assert_eq!(a.class, other.class, "crop {i}, {threads} threads, {per_pass} per pass");
                let worst =
                    a.probabilities.iter().zip(&other.probabilities).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
                assert!(
                    worst < 1e-4,
                    "crop {i}, {threads} threads, {per_pass} per pass: probabilities differ by {worst}"
                );
            }
        }
    }
    assert!(model.with_batch_threads(3).unwrap().classify(&[]).unwrap().is_empty());
}

fn tiny_config(seed: u64) -> TrainConfig {
    TrainConfig { channels: vec![8, 16], epochs: 2, batch_size: 32, seed, ..TrainConfig::default() }
}

#[test]
fn training_is_reproducible() {
    let examples = simulate_examples(240, 5, true, 2).unwrap();
    let again = simulate_examples(240, 5, true, 1).unwrap();
    assert!(examples.iter().zip(&again).all(|(a, b)| a.crop == b.crop && a.class == b.class));
    let a = train::train(&examples, &tiny_config(3), None, &Device::Cpu, |_, _| {}, |_| {}).unwrap();
    let b = train::train(&examples, &tiny_config(3), None, &Device::Cpu, |_, _| {}, |_| {}).unwrap();
    // Candle's CPU kernels gave bit-identical results here; allow 1e-5 for other CPUs.
    for (x, y) in a.history.iter().zip(&b.history) {
        assert!((x.train_loss - y.train_loss).abs() < 1e-5, "{x:?} vs {y:?}");
        assert!((x.validation_accuracy - y.validation_accuracy).abs() < 1e-5, "{x:?} vs {y:?}");
    }
    let c = train::train(&examples, &tiny_config(4), None, &Device::Cpu, |_, _| {}, |_| {}).unwrap();
    assert_ne!(a.history[0].train_loss, c.history[0].train_loss, "another seed, another run");
}

#[test]
fn dataset_directory_round_trips_and_trains() {
    let dir = tempdir("dataset");
    let examples = simulate_examples(60, 11, false, 2).unwrap();
    let items: Vec<(Crop, Label)> = examples
        .iter()
        .map(|e| {
            let label = Label {
                file: String::new(),
                class: e.class.name().into(),
                source: "simulator".into(),
                weight: 1.0,
                flags: vec![],
                provenance: Default::default(),
            };
            (e.crop.clone(), label)
        })
        .collect();
    dataset::write(&dir, &items).unwrap();
    let back = dataset::read(&dir).unwrap();
    assert_eq!(back.len(), 60);
    for (a, b) in examples.iter().zip(&back) {
        assert_eq!(a.class, b.class);
        // PNG stores 8-bit colour: the round trip is exact to a quantisation step.
        let max = a.crop.0.iter().zip(&b.crop.0).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max < 0.02, "max difference {max}");
    }
    let trained = train::train(&back, &tiny_config(1), None, &Device::Cpu, |_, _| {}, |_| {}).unwrap();
    assert_eq!(trained.history.len(), 2);

    // A bad line names the line.
    let labels = dir.join("labels.jsonl");
    let mut text = std::fs::read_to_string(&labels).unwrap();
    text.push_str("{\"file\":\"crops/000000.png\",\"class\":\"truck\",\"source\":\"simulator\"}\n");
    std::fs::write(&labels, text).unwrap();
    let e = dataset::read(&dir).unwrap_err().to_string();
    assert!(e.contains("line 61") && e.contains("truck"), "{e}");
}

#[test]
fn batcher_gathers_concurrent_requests() {
    let model = Recogniser::load(&shipped(), &Device::Cpu).unwrap();
    let crops: Vec<Crop> = simulate_examples(12, 3, false, 2).unwrap().into_iter().map(|e| e.crop).collect();
    let direct = model.classify(&crops).unwrap();
    let batcher = Arc::new(
        Batcher::spawn(
            model,
            BatcherConfig {
                max_batch: 8,
                max_wait: Duration::from_millis(50),
                queue: 64,
                threads: 1,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let receivers: Vec<_> = crops.iter().map(|c| batcher.submit(c.clone()).unwrap()).collect();
    let answers: Vec<_> = receivers.into_iter().map(|r| r.recv().unwrap().unwrap()).collect();
    for (a, d) in answers.iter().zip(&direct) {
        assert_eq!(a.class, d.class);
        assert!((a.confidence - d.confidence).abs() < 1e-4);
    }
    let batches = batcher.stats.batches.load(std::sync::atomic::Ordering::Relaxed);
    assert!(batches <= 3, "12 queued crops with max_batch 8 ran in {batches} batches");
    // A lone request is answered after at most max_wait plus inference.
    let t = std::time::Instant::now();
    let p = batcher.classify(crops[0].clone()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(ObstacleClass::ALL.contains(&p.class));
}

#[test]
fn batched_channels_last_path_matches_conv2d_reference() {
    let model = Recogniser::load(&shipped(), &Device::Cpu).unwrap();
    let crops: Vec<Crop> = simulate_examples(7, 21, false, 2).unwrap().into_iter().map(|e| e.crop).collect();
    let (fast, reference) = model.logits_both(&crops).unwrap();
    let diff = (fast - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let diff: f32 = diff.to_scalar().unwrap();
    assert!(diff < 1e-3, "max logit difference {diff}");
}
