//! `vigil bench live-view`: a drive without the live view (the baseline), with a Foxglove
//! client that reads everything, and with one that subscribes to every channel and then
//! stops reading (stalled), in the same invocation: detect→recommend pooled over the
//! repeats per row. Gate: the stalled row's p99 within a ratio of the baseline's. The
//! drives run in lockstep by default (reproducible tasks; the view is fed faster than
//! real time, the harder case), paced with `--paced`.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
use vigil_pipeline::report::percentile;
use vigil_sim::Scenario;

#[derive(Debug, Args)]
pub(super) struct LiveBenchArgs {
    #[arg(long, default_value = "urban-dense")]
    scenario: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds of each drive.
    #[arg(long, default_value_t = 15.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2)]
    vehicles: usize,
    /// Pace the drives to real time instead of lockstep.
    #[arg(long)]
    paced: bool,
    /// Drives per row, interleaved (after one warm-up drive).
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    #[arg(long, default_value = vigil_vision::model::BUILTIN_MODEL)]
    model: std::path::PathBuf,
    /// Fail when the stalled row's p99 exceeds the baseline's times this, plus --slack-ms.
    #[arg(long, default_value_t = 1.5)]
    max_p99_ratio: f64,
    #[arg(long, default_value_t = 5.0)]
    slack_ms: f64,
    #[arg(long)]
    json: bool,
}

/// How a row's client behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
enum Viewer {
    /// No live view at all: the baseline.
    #[default]
    Off,
    /// A client that reads every message.
    Reading,
    /// A client that subscribes to everything, reads for a second, then never again.
    Stalled,
}

/// Messages a stalled client reads before it stops.
const STALL_AFTER: u64 = 100;

#[derive(Debug, Default, Clone, Serialize)]
struct ClientCounts {
    connected: bool,
    messages: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Row {
    viewer: Viewer,
    drives: usize,
    tasks: usize,
    /// Tasks that fell back (no answer by their deadline).
    fallback: u64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// The server side: messages the live view sent to its channels, records it dropped.
    view_messages: u64,
    view_dropped: u64,
    /// The client side: messages and bytes it read.
    client: ClientCounts,
}

#[derive(Debug, Serialize)]
struct LiveBench {
    scenario: String,
    seed: u64,
    seconds: f64,
    rows: Vec<Row>,
    stalled_over_off_p99: f64,
    pass: bool,
}

pub(super) fn live_view(a: LiveBenchArgs) -> anyhow::Result<()> {
    if a.repeats == 0 || !(a.seconds > 0.0 && a.seconds <= 600.0) {
        bail!("--repeats must be at least 1 and --seconds within (0, 600]");
    }
    let scenario = Scenario::load(&a.scenario)?;
    let mut samples: Vec<Sampled> = [Viewer::Off, Viewer::Reading, Viewer::Stalled]
        .into_iter()
        .map(|viewer| Sampled { viewer, ..Sampled::default() })
        .collect();
    // The first drive of a process pays for warming caches and the allocator: not counted.
    drive(&a, &scenario, Viewer::Off)?;
    for rep in 0..a.repeats {
        for row in samples.iter_mut() {
            let (report, counts) = drive(&a, &scenario, row.viewer)?;
            eprintln!(
                "  drive {} with viewer {:?}: {} tasks, p99 {:.2} ms",
                rep + 1,
                row.viewer,
                report.latency_samples_ms.len(),
                report.latency_ms.detect_to_recommend.p99
            );
            row.add(&report, &counts);
        }
    }
    let rows: Vec<Row> = samples.into_iter().map(|s| s.row(a.repeats)).collect();
    let (off, stalled) = (&rows[0], &rows[2]);
    let ratio = stalled.p99_ms / off.p99_ms.max(1e-9);
    let stalled_stalled = stalled.client.connected && stalled.client.messages < stalled.view_messages;
    let pass = stalled.p99_ms <= off.p99_ms * a.max_p99_ratio + a.slack_ms
        && stalled.fallback <= off.fallback
        && stalled_stalled
        && off.tasks > 0;
    let b = LiveBench {
        scenario: scenario.name.clone(),
        seed: a.seed,
        seconds: a.seconds,
        rows,
        stalled_over_off_p99: ratio,
        pass,
    };
    print(&b, &a)?;
    if !stalled_stalled {
        bail!("the stalled client did not connect, or read everything the view sent: nothing was stalled");
    }
    if !b.pass {
        bail!(
            "a stalled live-view client changed the drive: p99 {:.2} ms against {:.2} ms without a view (limit ×{} + {} ms), {} fallbacks against {}",
            b.rows[2].p99_ms,
            b.rows[0].p99_ms,
            a.max_p99_ratio,
            a.slack_ms,
            b.rows[2].fallback,
            b.rows[0].fallback
        );
    }
    Ok(())
}

/// One row's drives pooled.
#[derive(Debug, Default)]
struct Sampled {
    viewer: Viewer,
    latencies: Vec<f64>,
    fallback: u64,
    view_messages: u64,
    view_dropped: u64,
    client: ClientCounts,
}

impl Sampled {
    fn add(&mut self, r: &vigil_pipeline::RunReport, c: &ClientCounts) {
        self.latencies.extend(r.latency_samples_ms.iter().copied());
        self.fallback += r.tasks.fallback;
        if let Some(l) = r.live_view {
            self.view_messages += l.messages;
            self.view_dropped += l.dropped;
        }
        self.client.connected |= c.connected;
        self.client.messages += c.messages;
        self.client.bytes += c.bytes;
    }

    fn row(mut self, drives: usize) -> Row {
        let s = &mut self.latencies;
        s.sort_by(f64::total_cmp);
        Row {
            viewer: self.viewer,
            drives,
            tasks: s.len(),
            fallback: self.fallback,
            p50_ms: percentile(s, 0.50),
            p95_ms: percentile(s, 0.95),
            p99_ms: percentile(s, 0.99),
            max_ms: s.last().copied().unwrap_or(0.0),
            view_messages: self.view_messages,
            view_dropped: self.view_dropped,
            client: self.client,
        }
    }
}

fn print(b: &LiveBench, a: &LiveBenchArgs) -> anyhow::Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(b)?);
        return Ok(());
    }
    let pace = if a.paced { "paced" } else { "lockstep" };
    println!(
        "live view, {} seed {}, {} vehicle(s), {} s {pace} × {} per row (detect→recommend, ms)",
        b.scenario, b.seed, a.vehicles, b.seconds, a.repeats
    );
    println!(
        "  {:<9} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>8} {:>12}",
        "viewer", "tasks", "fallback", "p50", "p95", "p99", "max", "view msgs", "dropped", "client read"
    );
    for r in &b.rows {
        println!(
            "  {:<9} {:>6} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>10} {:>8} {:>12}",
            format!("{:?}", r.viewer).to_lowercase(),
            r.tasks,
            r.fallback,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.view_messages,
            r.view_dropped,
            r.client.messages
        );
    }
    println!("  stalled / off p99: {:.2} ({})", b.stalled_over_off_p99, if b.pass { "pass" } else { "FAIL" });
    Ok(())
}

/// One paced drive with `viewer` watching; the run's report and what the client read.
fn drive(
    a: &LiveBenchArgs,
    scenario: &Scenario,
    viewer: Viewer,
) -> anyhow::Result<(vigil_pipeline::RunReport, ClientCounts)> {
    let mut cfg = vigil_pipeline::RunConfig::new(scenario.clone(), a.seed, a.model.clone());
    cfg.duration_ns = Some((a.seconds * 1e9).round() as i64);
    cfg.vehicles = a.vehicles.clamp(1, 64);
    cfg.fast = !a.paced;
    let stop = Arc::new(AtomicBool::new(false));
    let client = if viewer == Viewer::Off {
        None
    } else {
        let addr = free_port()?;
        cfg.live = Some(vigil_bus::live::LiveConfig::new(addr));
        let stop = stop.clone();
        Some(std::thread::spawn(move || watch(addr, viewer == Viewer::Stalled, &stop)))
    };
    let report = vigil_pipeline::run(cfg).context("the drive failed");
    stop.store(true, Ordering::Relaxed);
    let counts = client.map(|c| c.join().unwrap_or_default()).unwrap_or_default();
    Ok((report?, counts))
}

fn free_port() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port on loopback")?;
    Ok(l.local_addr()?)
}

/// A Foxglove client: connects (retrying while the run starts), subscribes to every
/// channel advertised, reads; a stalled one stops reading after [`STALL_AFTER`] messages
/// and holds the connection open until the drive ends.
fn watch(addr: SocketAddr, stall: bool, stop: &AtomicBool) -> ClientCounts {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return ClientCounts::default();
    };
    rt.block_on(async {
        let mut counts = ClientCounts::default();
        let Ok(mut request) = format!("ws://{addr}").into_client_request() else { return counts };
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("foxglove.sdk.v1"));
        let mut ws = loop {
            if stop.load(Ordering::Relaxed) {
                return counts;
            }
            match tokio_tungstenite::connect_async(request.clone()).await {
                Ok((ws, _)) => break ws,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        counts.connected = true;
        let mut next_sub = 1u32;
        while !stop.load(Ordering::Relaxed) {
            if stall && counts.messages >= STALL_AFTER {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(100), ws.next()).await else { continue };
            match m {
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    let Some(channels) = v["channels"].as_array().filter(|_| v["op"] == "advertise") else { continue };
                    let subs: Vec<_> = channels
                        .iter()
                        .map(|c| {
                            next_sub += 1;
                            serde_json::json!({"id": next_sub, "channelId": c["id"]})
                        })
                        .collect();
                    let m = serde_json::json!({"op": "subscribe", "subscriptions": subs});
                    let _ = ws.send(Message::Text(m.to_string().into())).await;
                }
                Message::Binary(b) => {
                    counts.messages += 1;
                    counts.bytes += b.len() as u64;
                }
                _ => {}
            }
        }
        counts
    })
}
