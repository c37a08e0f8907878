//! The bulk plane: telemetry leaves the vehicle through a store-and-forward spool.
//!
//! ```text
//! Ingest, Dispatcher, Handler ─ToLog▶ Spooler ─Forward(batch)▶ Forwarder ─append▶ TelemetryLog
//!                                      │  ▲                        │
//!                                      ▼  │ (memory, then disk)    └─Forwarded▶ Spooler
//!                                   spool directory
//! ```
//!
//! The urgent path only sends a message. The spooler keeps records in memory up to a
//! bound, then appends them to segment files on disk (size-bounded; past it a record is
//! dropped and counted). The forwarder appends one batch at a time to the log and asks
//! for the next when it is done, so a log that is slow or down holds back only the
//! forwarder: records pile up in memory, then on disk, and leave in order when the log is
//! back. Order: while anything is on disk every new record goes to disk too, and memory
//! is always emptied before disk, so records leave in the order they came.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use vigil_bus::{LogRecord, TelemetryLog, TransportError};
use vigil_core::{Nanos, RunId, VehicleId};

use crate::node::NodeStats;

mod disk;
use disk::DiskQueue;

/// One record for the telemetry log, handed off by the urgent path without waiting.
#[derive(Debug, Clone)]
pub struct ToLog {
    pub topic: &'static str,
    pub capture_ns: Nanos,
    pub publish_ns: Nanos,
    pub envelope: Arc<Vec<u8>>,
}

impl Message for ToLog {
    type Result = ();
}

/// Where and how much telemetry a node holds while the log is slow or down.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// Bytes held in memory before records go to disk.
    pub memory_bytes: u64,
    /// Segment files go under `<dir>/<vehicle>/<run>/`; `None`: memory only, and past
    /// the memory bound a record is dropped (counted).
    pub dir: Option<PathBuf>,
    /// Bytes held on disk before records are dropped (counted).
    pub disk_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { memory_bytes: 256 << 20, dir: None, disk_bytes: 8 << 30 }
    }
}

/// Records and bytes the forwarder is handed at once.
const BATCH_RECORDS: usize = 256;
const BATCH_BYTES: u64 = 8 << 20;
/// How long the forwarder waits before trying a log that pushed back again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

fn inc(a: &AtomicU64) {
    a.fetch_add(1, Ordering::SeqCst);
}

/// The handle the actors push telemetry through: a message send, nothing more.
#[derive(Debug, Clone)]
pub struct TelemetrySpool {
    addr: Addr<Spooler>,
    stats: Arc<NodeStats>,
}

impl TelemetrySpool {
    pub fn push(&self, r: ToLog) {
        let len = r.envelope.len() as u64;
        let held = self.stats.telemetry_queued_bytes.fetch_add(len, Ordering::SeqCst) + len;
        self.stats.telemetry_peak_bytes.fetch_max(held, Ordering::SeqCst);
        inc(&self.stats.telemetry_queued);
        self.addr.do_send(r);
    }
}

/// Starts a node's spooler on `spool` and its forwarder on `forward` (where a log that
/// blocks can hold up nothing but other forwarders).
pub fn start_spool(
    cfg: SpoolConfig,
    vehicle: &VehicleId,
    run: &RunId,
    log: Arc<dyn TelemetryLog>,
    stats: Arc<NodeStats>,
    spool: &ArbiterHandle,
    forward: &ArbiterHandle,
) -> TelemetrySpool {
    let forwarder = Forwarder {
        vehicle: vehicle.clone(),
        run: run.clone(),
        log,
        stats: stats.clone(),
        spooler: None,
        pending: VecDeque::new(),
    };
    let forwarder = Forwarder::start_in_arbiter(forward, move |_| forwarder);
    // The process id too: embedded runs reuse their seed's run id.
    let dir = cfg
        .dir
        .as_ref()
        .map(|d| d.join(vehicle.0.replace(['/', '\\'], "_")).join(format!("{}.{}", run.as_str(), std::process::id())));
    let s = Spooler {
        memory: VecDeque::new(),
        memory_bytes: 0,
        disk: dir.map(|d| DiskQueue::new(d, cfg.disk_bytes)),
        cfg,
        forwarder,
        in_flight: false,
        stats: stats.clone(),
        warned_full: false,
    };
    TelemetrySpool { addr: Spooler::start_in_arbiter(spool, move |_| s), stats }
}

// ---------------------------------------------------------------- spooler

/// Holds what the forwarder has not taken yet: memory first, then disk.
pub struct Spooler {
    cfg: SpoolConfig,
    memory: VecDeque<ToLog>,
    /// Bytes in `memory` and in the batch the forwarder holds.
    memory_bytes: u64,
    disk: Option<DiskQueue>,
    forwarder: Addr<Forwarder>,
    in_flight: bool,
    stats: Arc<NodeStats>,
    warned_full: bool,
}

impl std::fmt::Debug for Spooler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spooler").field("memory", &self.memory.len()).field("memory_bytes", &self.memory_bytes).finish()
    }
}

impl Actor for Spooler {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        self.forwarder.do_send(Hello(ctx.address()));
    }
    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(d) = &mut self.disk {
            d.remove_all();
        }
    }
}

/// The forwarder appended `bytes` of its batch; `done`: all of it (it may take the next).
#[derive(Debug)]
struct Forwarded {
    bytes: u64,
    done: bool,
}

impl Message for Forwarded {
    type Result = ();
}

impl Handler<ToLog> for Spooler {
    type Result = ();
    fn handle(&mut self, r: ToLog, _: &mut Self::Context) {
        let len = r.envelope.len() as u64;
        let on_disk = self.disk.as_ref().is_some_and(|d| d.records > 0);
        if !on_disk && self.memory_bytes + len <= self.cfg.memory_bytes {
            self.memory_bytes += len;
            self.memory.push_back(r);
        } else {
            self.spill(r);
        }
        self.pump();
    }
}

impl Handler<Forwarded> for Spooler {
    type Result = ();
    fn handle(&mut self, m: Forwarded, _: &mut Self::Context) {
        self.memory_bytes -= m.bytes.min(self.memory_bytes);
        if m.done {
            self.in_flight = false;
            self.pump();
        }
    }
}

impl Spooler {
    /// Past the memory bound: to disk, or dropped (counted) when there is no room.
    fn spill(&mut self, r: ToLog) {
        let len = r.envelope.len() as u64;
        let why = match &mut self.disk {
            None => "the memory spool is full and no spool directory is set".to_string(),
            Some(d) => match d.push(&r) {
                Ok(true) => {
                    self.stats.telemetry_queued_bytes.fetch_sub(len, Ordering::SeqCst);
                    inc(&self.stats.telemetry_spilled);
                    self.stats.telemetry_disk_bytes.store(d.bytes, Ordering::SeqCst);
                    self.stats.telemetry_peak_disk_bytes.fetch_max(d.bytes, Ordering::SeqCst);
                    return;
                }
                Ok(false) => format!("the disk spool holds its limit of {} MB", self.cfg.disk_bytes >> 20),
                Err(e) => format!("writing the disk spool under {}: {e}", d.dir.display()),
            },
        };
        self.stats.telemetry_queued_bytes.fetch_sub(len, Ordering::SeqCst);
        self.stats.telemetry_queued.fetch_sub(1, Ordering::SeqCst);
        inc(&self.stats.telemetry_dropped);
        self.stats.progress.moved();
        // One warning per spell of drops, not one per record.
        if !self.warned_full {
            self.warned_full = true;
            tracing::warn!(topic = r.topic, reason = %why, "telemetry spool full; records dropped and counted");
        }
    }

    /// Hands the forwarder its next batch when it has none: memory first, then disk.
    fn pump(&mut self) {
        if self.in_flight {
            return;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < BATCH_RECORDS && bytes < BATCH_BYTES {
            if let Some(r) = self.memory.pop_front() {
                bytes += r.envelope.len() as u64;
                batch.push(r);
                continue;
            }
            let Some(d) = &mut self.disk else { break };
            match d.pop() {
                Ok(Some(r)) => {
                    let len = r.envelope.len() as u64;
                    self.memory_bytes += len;
                    self.stats.telemetry_queued_bytes.fetch_add(len, Ordering::SeqCst);
                    self.stats.telemetry_disk_bytes.store(d.bytes, Ordering::SeqCst);
                    bytes += len;
                    batch.push(r);
                }
                Ok(None) => break,
                Err(e) => {
                    // What is left on disk cannot be read back: count it as dropped.
                    let lost = d.records;
                    tracing::error!(error = %e, dir = %d.dir.display(), lost, "telemetry spool unreadable; its records are dropped and counted");
                    self.stats.telemetry_dropped.fetch_add(lost, Ordering::SeqCst);
                    self.stats.telemetry_queued.fetch_sub(lost, Ordering::SeqCst);
                    self.stats.progress.moved();
                    d.remove_all();
                    self.stats.telemetry_disk_bytes.store(0, Ordering::SeqCst);
                    break;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        if self.memory.is_empty() && self.disk.as_ref().is_none_or(|d| d.records == 0) {
            self.warned_full = false;
        }
        self.in_flight = true;
        self.forwarder.do_send(Forward(batch));
    }
}

// ---------------------------------------------------------------- forwarder

#[derive(Debug)]
struct Hello(Addr<Spooler>);

impl Message for Hello {
    type Result = ();
}

#[derive(Debug)]
struct Forward(Vec<ToLog>);

impl Message for Forward {
    type Result = ();
}

#[derive(Debug)]
struct Retry;

impl Message for Retry {
    type Result = ();
}

/// Appends batches to the log, in order. A log that pushes back (its buffer full: the
/// broker slow or down) is tried again after a pause; nothing is lost while it waits.
pub struct Forwarder {
    vehicle: VehicleId,
    run: RunId,
    log: Arc<dyn TelemetryLog>,
    stats: Arc<NodeStats>,
    spooler: Option<Addr<Spooler>>,
    pending: VecDeque<ToLog>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("pending", &self.pending.len()).finish()
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;
}

impl Handler<Hello> for Forwarder {
    type Result = ();
    fn handle(&mut self, m: Hello, _: &mut Self::Context) {
        self.spooler = Some(m.0);
    }
}

impl Handler<Forward> for Forwarder {
    type Result = ();
    fn handle(&mut self, m: Forward, ctx: &mut Self::Context) {
        self.pending.extend(m.0);
        self.work(ctx);
    }
}

impl Handler<Retry> for Forwarder {
    type Result = ();
    fn handle(&mut self, _: Retry, ctx: &mut Self::Context) {
        self.work(ctx);
    }
}

impl Forwarder {
    fn work(&mut self, ctx: &mut Context<Self>) {
        let mut bytes = 0;
        while let Some(r) = self.pending.front() {
            let record = LogRecord {
                topic: r.topic,
                key: &self.vehicle.0,
                run: self.run.as_str(),
                capture_ns: r.capture_ns,
                publish_ns: r.publish_ns,
                envelope: &r.envelope,
            };
            match self.log.append(record) {
                Ok(()) => {}
                Err(TransportError::Backlog { .. }) => {
                    inc(&self.stats.telemetry_log_waits);
                    self.tell(bytes, false);
                    ctx.notify_later(Retry, RETRY_AFTER);
                    return;
                }
                Err(e) => {
                    inc(&self.stats.log_errors);
                    tracing::error!(error = %e, "telemetry log append failed; record lost and counted");
                }
            }
            let len = r.envelope.len() as u64;
            bytes += len;
            self.stats.telemetry_queued.fetch_sub(1, Ordering::SeqCst);
            self.stats.telemetry_queued_bytes.fetch_sub(len, Ordering::SeqCst);
            self.pending.pop_front();
        }
        self.tell(bytes, true);
    }

    fn tell(&self, bytes: u64, done: bool) {
        self.stats.progress.moved();
        if let Some(s) = &self.spooler {
            s.do_send(Forwarded { bytes, done });
        }
    }
}

/// The default spool directory: `$VIGIL_SPOOL_DIR`, else `vigil-spool` in the system's
/// temporary directory.
pub fn default_spool_dir() -> PathBuf {
    std::env::var_os("VIGIL_SPOOL_DIR").map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("vigil-spool"))
}

/// Whether `dir` can hold a spool (created if missing): checked at start, so a bad
/// directory is an error before the drive rather than drops during it.
pub fn check_spool_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("spool directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("spool directory {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

#[cfg(test)]
mod tests;
