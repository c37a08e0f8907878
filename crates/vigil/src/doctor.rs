//! `vigil doctor`: checks what a Vigil process needs before it is started for real (the
//! config, the brokers, the frame store, the model, the device, the clock, the zenoh
//! file) and says, for each problem, what is wrong and how to fix it. Exits non-zero on
//! any problem.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use vigil_brokers::doctor::{self, Finding};
use vigil_brokers::store::ObjectFrameStore;

use crate::process::BrokerArgs;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// Check only what an embedded `vigil run` needs (no brokers).
    #[arg(long)]
    embedded: bool,
    /// The model to load.
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: PathBuf,
    /// A zenoh JSON5 configuration to check (as --zenoh-config takes it).
    #[arg(long, value_name = "FILE")]
    zenoh_config: Option<PathBuf>,
    /// One JSON array of the findings.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let mut found = vec![model(&args.model), device(), clock()];
    if let Some(file) = &args.zenoh_config {
        let cfg = vigil_bus::ZenohConfig { config_file: Some(file.clone()), ..vigil_bus::ZenohConfig::default() };
        found.push(match cfg.check() {
            Ok(()) => Finding::pass("zenoh", format!("{} is a zenoh configuration", file.display())),
            Err(e) => Finding::fail("zenoh", e.to_string(), "fix the file (zenoh's JSON5 format; see deploy/zenoh/)"),
        });
    }
    if !args.embedded {
        found.extend(brokers(&args.brokers));
    }
    if args.json {
        println!("{}", serde_json::to_string(&found)?);
    } else {
        for f in &found {
            println!("{} {:<12} {}", if f.ok { "ok  " } else { "FAIL" }, f.check, f.detail);
            if let Some(fix) = &f.fix {
                println!("     {:<12} fix: {fix}", "");
            }
        }
    }
    let failed: Vec<&str> = found.iter().filter(|f| !f.ok).map(|f| f.check).collect();
    if !failed.is_empty() {
        bail!("vigil doctor found problems with: {}", failed.join(", "));
    }
    Ok(())
}

/// The config, then Kafka, RabbitMQ and the frame store with it.
fn brokers(args: &BrokerArgs) -> Vec<Finding> {
    let cfg = match args.load() {
        Ok(c) => c,
        Err(e) => {
            let fix = "fix the file or variable it names (vigil.example.toml documents every key)";
            return vec![Finding::fail("config", format!("{e:#}"), fix)];
        }
    };
    let mut found = vec![Finding::pass("config", "broker settings load (file, then VIGIL_* variables, then flags)")];
    found.push(doctor::kafka(&cfg.kafka));
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            found.push(Finding::fail("runtime", e.to_string(), "the machine is out of threads or memory"));
            return found;
        }
    };
    found.push(rt.block_on(doctor::amqp(&cfg.amqp)));
    found.push(match ObjectFrameStore::open(&cfg.frames.url, rt.handle().clone()) {
        Ok(store) => doctor::frames(&store, &cfg.frames.url),
        Err(e) => Finding::fail(
            "frame store",
            e.to_string(),
            "the store must be reachable and writable by this user: check [frames] url / VIGIL_FRAMES_URL",
        ),
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    found
}

fn model(dir: &std::path::Path) -> Finding {
    let device = vigil_vision::model::default_device();
    match vigil_vision::model::Recogniser::load(dir, &device) {
        Ok(m) => Finding::pass(
            "model",
            format!(
                "{} v{} from {} ({} classes)",
                m.config.name,
                m.config.version,
                dir.display(),
                m.config.classes.len()
            ),
        ),
        Err(e) => Finding::fail(
            "model",
            e.to_string(),
            format!(
                "pass --model DIR holding config.json and model.safetensors, or leave it out for the built-in {}",
                vigil_vision::model::BUILTIN_MODEL
            ),
        ),
    }
}

fn device() -> Finding {
    let device = vigil_vision::model::default_device();
    let name = vigil_vision::model::device_name(&device);
    let cuda_built = cfg!(feature = "cuda");
    match (cuda_built, device.is_cuda()) {
        (true, false) => Finding::fail(
            "device",
            "built with CUDA but no GPU answered: inference runs on the CPU",
            "check `nvidia-smi` and the driver, or run a CPU build",
        ),
        _ => Finding::pass("device", format!("inference on {name}")),
    }
}

/// The wall clock stamps every frame: a vehicle computer whose clock was never set
/// (1970, or years behind) stamps nonsense that the brokers keep.
fn clock() -> Finding {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // 2025-01-01T00:00:00Z: no real drive is older than this build.
    const EARLIEST: u64 = 1_735_689_600;
    if now < EARLIEST {
        return Finding::fail(
            "clock",
            format!("the wall clock reads {now} s after 1970, before 2025"),
            "set and keep the clock in sync (chrony or systemd-timesyncd, PTP on a vehicle)",
        );
    }
    Finding::pass("clock", format!("wall clock at {now} s after 1970"))
}
