//! `vigil frames gc`: keeps the claim-check frame store in step with Kafka's retention.

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::process::BrokerArgs;

#[derive(Debug, Args)]
pub struct FramesArgs {
    #[command(subcommand)]
    what: FramesWhat,
}

#[derive(Debug, Subcommand)]
enum FramesWhat {
    /// Remove the camera frames older than Kafka's retention (the config's
    /// [kafka] retention_ms) or --older-than: the frames of log records Kafka has removed.
    /// Run it from cron or a systemd timer as often as the retention asks.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
struct GcArgs {
    #[command(flatten)]
    brokers: BrokerArgs,
    /// The frame store (default: [frames] url of the config).
    #[arg(long)]
    frames: Option<String>,
    /// Remove frames older than this (e.g. 7d, 36h); default: Kafka's retention.
    #[arg(long, value_parser = humantime::parse_duration)]
    older_than: Option<std::time::Duration>,
    /// Count what would go; remove nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(args: FramesArgs) -> anyhow::Result<()> {
    let FramesWhat::Gc(a) = args.what;
    let b = a.brokers.load()?;
    let url = a.frames.clone().unwrap_or(b.frames.url.clone());
    let age = match a.older_than {
        Some(d) => d,
        None if b.kafka.retention_ms > 0 => std::time::Duration::from_millis(b.kafka.retention_ms as u64),
        None => anyhow::bail!(
            "Kafka's retention is unlimited ([kafka] retention_ms {}), so no frame expires with it: give --older-than",
            b.kafka.retention_ms
        ),
    };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let cutoff = now_ms - age.as_millis().min(i64::MAX as u128) as i64;
    // The store's calls wait on its runtime, which runs on a worker thread of its own.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let store = vigil_brokers::store::ObjectFrameStore::open(&url, rt.handle().clone())?;
    let r = store.sweep(cutoff, a.dry_run).with_context(|| format!("sweeping the frame store {url}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{url}: {} frames ({:.1} MB); {} older than {} {} ({:.1} MB)",
            r.objects,
            r.bytes as f64 / 1e6,
            r.expired,
            humantime::format_duration(age),
            if r.dry_run { "would go" } else { "removed" },
            r.expired_bytes as f64 / 1e6
        );
    }
    Ok(())
}
