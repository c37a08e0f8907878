//! `vigil train`, `vigil eval` and `vigil bench vision`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use vigil_core::derive_seed;
use vigil_sim::samples::SampleGenerator;
use vigil_vision::model::{ModelConfig, Recogniser, TrainingRecord, default_device};
use vigil_vision::train::{self, Example, TrainConfig};
use vigil_vision::{dataset, eval, plot};

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed}<{eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Labelled crops from the simulator's sample renderer, one renderer per core.
pub(crate) fn simulated_examples(n: usize, seed: u64, augment: bool) -> vigil_vision::Result<Vec<Example>> {
    train::examples(n, seed, augment, threads(), || {
        let mut generator = SampleGenerator::default();
        move |class, seed| {
            let f = generator.sample(class, seed);
            train::Sample { pixels: f.pixels, width: f.width, height: f.height, bbox: f.bbox }
        }
    })
}

fn simulate(n: usize, seed: u64, augment: bool, what: &str) -> anyhow::Result<Vec<Example>> {
    let bar = progress(n as u64, what);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let out = simulated_examples(n, seed, augment)?;
    bar.finish_and_clear();
    Ok(out)
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled crops to simulate (classes balanced). 12000 when training on the
    /// simulator alone; with --dataset none unless given, and then they are mixed in with
    /// the dataset's crops (rehearsal: a fine-tune on drive crops alone forgets what the
    /// drives do not show).
    #[arg(long)]
    samples: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Where to write model.safetensors, config.json and training-curves.png.
    #[arg(long, default_value = "models/obstacle-classifier")]
    out: PathBuf,
    /// Train on a dataset directory (labels.jsonl + crops/) instead of the simulator.
    #[arg(long)]
    dataset: Vec<PathBuf>,
    /// Fine-tune from this model instead of starting from scratch.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Output channels of the conv stages.
    #[arg(long, value_delimiter = ',', default_values_t = [16usize, 32, 64])]
    channels: Vec<usize>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Model name recorded in config.json.
    #[arg(long, default_value = "obstacle-classifier")]
    name: String,
}

/// The examples to train on (datasets, then simulated crops) and their description.
fn training_data(args: &TrainArgs, samples: usize) -> anyhow::Result<(Vec<Example>, String)> {
    let mut examples = Vec::new();
    let mut data = Vec::new();
    for d in &args.dataset {
        let crops = dataset::read(d)?;
        data.push(format!("dataset {} ({} crops)", d.display(), crops.len()));
        examples.extend(crops);
    }
    if samples > 0 {
        examples.extend(simulate(samples, args.seed, true, "simulate")?);
        data.push(format!("simulator crops, {samples} samples, seed {}", args.seed));
    }
    Ok((examples, data.join(" + ")))
}

/// The weights of the `--init` model, checked against `--channels`.
fn parent_weights(
    args: &TrainArgs,
    device: &candle_core::Device,
) -> anyhow::Result<Option<std::collections::HashMap<String, candle_core::Tensor>>> {
    let Some(dir) = &args.init else { return Ok(None) };
    let cfg = ModelConfig::load(dir)?;
    if cfg.architecture.channels != args.channels {
        bail!(
            "--init model has channels {:?}; pass --channels {}",
            cfg.architecture.channels,
            cfg.architecture.channels.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
        );
    }
    Ok(Some(vigil_vision::model::raw_weights(dir, device)?))
}

/// Lineage: the drives behind the datasets (from their labels' provenance).
fn lineage(datasets: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut drives = Vec::new();
    for d in datasets {
        drives.extend(dataset::drives(d)?);
    }
    drives.sort();
    drives.dedup();
    Ok(drives)
}

pub fn train(args: TrainArgs) -> anyhow::Result<()> {
    if args.epochs == 0 || args.batch_size < 2 {
        bail!("--epochs must be at least 1 and --batch-size at least 2");
    }
    if args.channels.is_empty() || args.channels.iter().any(|&c| c == 0 || c > 512) {
        bail!("--channels must list 1..=512 per stage, got {:?}", args.channels);
    }
    let device = default_device();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let started = Instant::now();
    let samples = args.samples.unwrap_or(if args.dataset.is_empty() { 12_000 } else { 0 });
    if (args.dataset.is_empty() || samples > 0) && samples < 60 {
        bail!("--samples must be at least 60 (10 per class), got {samples}");
    }
    let (examples, data) = training_data(&args, samples)?;
    let parent = parent_weights(&args, &device)?;
    let cfg = TrainConfig {
        channels: args.channels.clone(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let steps = examples.len().div_ceil(args.batch_size) as u64 * args.epochs as u64;
    let bar = progress(steps, "train");
    let trained = train::train(
        &examples,
        &cfg,
        parent.as_ref(),
        &device,
        |done, _| bar.set_position(done as u64),
        |s| {
            let line = format!(
                "epoch {:>2}: train loss {:.4} acc {:.4} | validation loss {:.4} acc {:.4}",
                s.epoch, s.train_loss, s.train_accuracy, s.validation_loss, s.validation_accuracy
            );
            // A hidden bar (no terminal) swallows println: print the line plainly then.
            if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
        },
    )?;
    bar.finish_and_clear();
    let last = trained.history.last().copied();
    let mut config = ModelConfig::new(&args.name, args.channels.clone());
    config.training = TrainingRecord {
        command,
        seed: args.seed,
        samples: examples.len(),
        epochs: args.epochs,
        data,
        final_train_loss: last.map_or(0.0, |s| s.train_loss),
        final_validation_accuracy: last.map_or(0.0, |s| s.validation_accuracy),
        parent: args.init.as_ref().map(|p| p.display().to_string()),
        datasets: args.dataset.iter().map(|p| p.display().to_string()).collect(),
        drives: lineage(&args.dataset)?,
    };
    train::save(&args.out, &config, &trained.tensors)?;
    plot::training_curves(&trained.history, &args.out.join("training-curves.png"))?;
    std::fs::write(args.out.join("training-history.json"), serde_json::to_string_pretty(&trained.history)? + "\n")?;
    eprintln!(
        "wrote {} ({} samples, {} epochs, {:.0} s, validation accuracy {:.4})",
        args.out.display(),
        examples.len(),
        args.epochs,
        started.elapsed().as_secs_f64(),
        config.training.final_validation_accuracy
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model to evaluate; give it twice to compare two models on the same data.
    #[arg(long, default_values_os_t = [PathBuf::from(vigil_vision::model::BUILTIN_MODEL)], num_args = 1)]
    model: Vec<PathBuf>,
    /// Crops to simulate when no --dataset is given.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Seed of the evaluation scenes (use one the model was not trained on).
    #[arg(long, default_value_t = 1000)]
    seed: u64,
    /// Held-out labelled crops (a dataset directory, e.g. from `vigil replay
    /// --export-dataset` over drives no model was trained on) instead of simulated ones.
    #[arg(long)]
    dataset: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
    /// Also write the confusion matrix (side by side for two models) as a PNG here.
    #[arg(long)]
    confusion_png: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct EvalJson {
    model: String,
    model_version: String,
    model_dir: String,
    /// The model's parent, datasets and drives (from its config.json).
    lineage: Lineage,
    device: String,
    /// "simulator" or the dataset directories.
    data: String,
    samples: usize,
    seed: u64,
    accuracy: f32,
    baseline_accuracy: f32,
    per_class: std::collections::BTreeMap<String, eval::ClassScores>,
    classes: Vec<String>,
    confusion: Vec<Vec<usize>>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Lineage {
    parent: Option<String>,
    datasets: Vec<String>,
    drives: Vec<String>,
}

/// Two models on the same data.
#[derive(Debug, Serialize)]
struct Comparison {
    data: String,
    samples: usize,
    models: Vec<EvalJson>,
    /// Second model's accuracy minus the first's.
    accuracy_delta: f32,
}

/// The confusion matrices of the evaluated models side by side.
fn confusion_png(outs: &[EvalJson], path: &Path) -> anyhow::Result<()> {
    let titles: Vec<String> = outs
        .iter()
        .map(|o| {
            format!(
                "{} {:.3}",
                Path::new(&o.model_dir)
                    .file_name()
                    .map_or(o.model.clone(), |n| n.to_string_lossy().into())
                    .to_uppercase(),
                o.accuracy
            )
        })
        .collect();
    let panels: Vec<(&str, &[Vec<usize>])> =
        titles.iter().zip(outs).map(|(t, o)| (t.as_str(), o.confusion.as_slice())).collect();
    plot::confusion_matrices(&panels, &outs[0].classes, path)?;
    Ok(())
}

fn print_evals(outs: &[EvalJson]) {
    for o in outs {
        println!(
            "{} ({}) on {} crops ({}): accuracy {:.4}, colour baseline {:.4}",
            o.model,
            o.model_dir,
            o.samples,
            if o.data == "simulator" { format!("simulator, seed {}", o.seed) } else { o.data.clone() },
            o.accuracy,
            o.baseline_accuracy
        );
        for (c, s) in &o.per_class {
            println!("  {c:<11} precision {:.3} recall {:.3} ({} crops)", s.precision, s.recall, s.support);
        }
    }
}

pub fn eval(args: EvalArgs) -> anyhow::Result<()> {
    if args.model.is_empty() || args.model.len() > 2 {
        bail!("--model: give one model, or two to compare, got {}", args.model.len());
    }
    if args.dataset.is_empty() && args.samples < 6 {
        bail!("--samples must be at least 6 (one per class), got {}", args.samples);
    }
    let started = Instant::now();
    let device = default_device();
    // Load every model first: a bad directory fails before any work.
    let models = args
        .model
        .iter()
        .map(|dir| Recogniser::load(dir, &device).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (test, data) = if args.dataset.is_empty() {
        (simulate(args.samples, args.seed, false, "simulate")?, "simulator".to_string())
    } else {
        let mut all = Vec::new();
        for d in &args.dataset {
            all.extend(dataset::read(d)?);
        }
        (all, args.dataset.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(","))
    };
    let fit = simulate((test.len() / 2).max(600), derive_seed(args.seed, 99), false, "baseline")?;
    let mut outs = Vec::new();
    for (dir, model) in args.model.iter().zip(&models) {
        let r = eval::evaluate(model, &fit, &test)?;
        let t = &model.config.training;
        outs.push(EvalJson {
            model: model.config.name.clone(),
            model_version: model.config.version.clone(),
            model_dir: dir.display().to_string(),
            lineage: Lineage { parent: t.parent.clone(), datasets: t.datasets.clone(), drives: t.drives.clone() },
            device: model.device_name(),
            data: data.clone(),
            samples: r.samples,
            seed: args.seed,
            accuracy: r.accuracy,
            baseline_accuracy: r.baseline_accuracy,
            per_class: r.per_class,
            classes: r.classes,
            confusion: r.confusion,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if let Some(p) = &args.confusion_png {
        confusion_png(&outs, p)?;
    }
    if !args.json {
        print_evals(&outs);
    }
    if outs.len() == 2 {
        let delta = outs[1].accuracy - outs[0].accuracy;
        if args.json {
            let c = Comparison { data, samples: outs[0].samples, accuracy_delta: delta, models: outs };
            println!("{}", serde_json::to_string(&c)?);
        } else {
            println!("accuracy delta (second - first): {delta:+.4}");
        }
    } else if args.json {
        println!("{}", serde_json::to_string(&outs[0])?);
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct VisionBenchArgs {
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// Batch sizes to measure; the first is the baseline.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32])]
    batches: Vec<usize>,
    /// Minimum seconds of measurement per batch size.
    #[arg(long, default_value_t = 1.5)]
    seconds: f64,
    /// Threads a batch is split across (default: every core on a CPU, one on a GPU).
    #[arg(long)]
    threads: Option<usize>,
    /// The most crops one forward pass takes (default: 1 on a CPU, the batch on a GPU).
    #[arg(long)]
    crops_per_pass: Option<usize>,
    /// Fail when the largest batch gives less than this multiple of the baseline's crops/s.
    #[arg(long, default_value_t = 3.0)]
    min_speedup: f64,
    #[arg(long)]
    json: bool,
}

pub fn bench(args: VisionBenchArgs) -> anyhow::Result<()> {
    if args.batches.is_empty() || args.batches.contains(&0) {
        bail!("--batches needs positive sizes, got {:?}", args.batches);
    }
    let device = default_device();
    let mut model = Recogniser::load(&args.model, &device)?;
    if let Some(t) = args.threads {
        if t == 0 {
            bail!("--threads needs at least 1");
        }
        model = model.with_batch_threads(t)?;
    }
    if let Some(n) = args.crops_per_pass {
        if n == 0 {
            bail!("--crops-per-pass needs at least 1");
        }
        model = model.with_crops_per_pass(n);
    }
    let max = args.batches.iter().copied().max().unwrap_or(1);
    let pool: Vec<_> = simulated_examples(max.max(12), 4242, false)?.into_iter().map(|e| e.crop).collect();
    let report =
        vigil_bench::vision::vision_bench(&model, &pool, &args.batches, args.seconds, args.min_speedup, threads())?;
    let (speedup, pass) = (report.points.last().map_or(1.0, |p| p.speedup_vs_first), report.pass);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} on {} ({} core(s)): each batch cut into passes of at most {} crop(s) over {} thread(s)",
            report.model,
            report.device,
            report.cores,
            report.crops_per_pass.map_or("all".to_string(), |n| n.to_string()),
            report.threads
        );
        println!("{:>6} {:>12} {:>9} {:>9} {:>9}", "batch", "crops/s", "p50 ms", "p99 ms", "speedup");
        for p in &report.points {
            println!(
                "{:>6} {:>12.1} {:>9.3} {:>9.3} {:>9.2}",
                p.batch, p.crops_per_second, p.p50_ms, p.p99_ms, p.speedup_vs_first
            );
        }
    }
    if !pass {
        let mut why = String::new();
        if report.device == "cpu" && args.min_speedup > report.cores as f64 {
            why = format!(
                " (on a CPU a batch gains only by spreading its crops over the cores, so at most {}x here; `--threads 1` shows a batch on one core gives 1.0x)",
                report.cores
            );
        }
        bail!("batching gave {speedup:.2}x the baseline's crops/s, below the {:.1}x target{why}", args.min_speedup);
    }
    Ok(())
}
