//! The live view: `--foxglove HOST:PORT` serves the viewer's channels
//! ([`crate::viewer`]) over the Foxglove WebSocket protocol (`foxglove.sdk.v1`, what the
//! SDK's server speaks; clients of the older `foxglove.websocket.v1`, Lichtblick among
//! them, are refused by it) while a drive runs, so Foxglove can watch it.
//!
//! The pipeline only offers envelopes ([`LiveView::offer`], through [`LiveTap`] on the
//! telemetry log). A bounded queue stands between it and the view: when the view falls
//! behind, the oldest envelope is dropped and counted, so a slow or absent viewer never
//! slows the drive. While no client is connected nothing is copied or converted. The
//! server keeps a bounded backlog per client as well and drops that client's oldest
//! messages, so one stalled client holds back neither the others nor the view. A replay
//! also takes the protocol's playback control ([`playback`]).

mod playback;

pub use playback::Playback;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use foxglove::websocket::Capability;
use foxglove::{Context, PartialMetadata, RawChannel, WebSocketServer, WebSocketServerHandle};
use serde::Serialize;
use vigil_core::Nanos;

use crate::FrameStore;
use crate::transport::{LogRecord, TelemetryLog, TransportError};
use crate::viewer::ViewerChannels;

/// Where and how the live view serves.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub addr: SocketAddr,
    /// Envelopes waiting for the view, at most (the oldest are dropped beyond).
    pub queue: usize,
    /// Messages waiting for one client, at most (that client's oldest are dropped beyond).
    pub client_backlog: usize,
    /// A replay's capture-time range and starting speed: the viewer may play, pause,
    /// change speed and seek ahead.
    pub playback: Option<PlaybackRange>,
}

/// What a replay tells the viewer it can play.
#[derive(Debug, Clone, Copy)]
pub struct PlaybackRange {
    pub start_ns: Nanos,
    pub end_ns: Nanos,
    pub speed: f64,
}

impl LiveConfig {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, queue: 256, client_backlog: 512, playback: None }
    }
}

/// Why the live view could not start.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(
        "live view on {addr}: {reason} (is another process serving on that port? pick another with --foxglove HOST:PORT)"
    )]
    Start { addr: SocketAddr, reason: String },
}

/// What the live view did, for the run report and the metrics.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct LiveStats {
    /// Envelopes offered while a client was connected.
    pub offered: u64,
    /// Envelopes dropped, the oldest first, because the view fell behind.
    pub dropped: u64,
    /// Viewer messages sent to the server's channels.
    pub messages: u64,
    /// Clients that connected (the most at once).
    pub clients_peak: u64,
}

#[derive(Debug, Default)]
struct Counters {
    offered: AtomicU64,
    dropped: AtomicU64,
    messages: AtomicU64,
    clients_peak: AtomicU64,
}

/// One envelope for the view, with the time it is shown at.
type Offer = (Nanos, Vec<u8>);

/// The running live view: a Foxglove WebSocket server and the thread that converts.
pub struct LiveView {
    offers: flume::Sender<Offer>,
    oldest: flume::Receiver<Offer>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    server: Option<WebSocketServerHandle>,
    worker: Option<std::thread::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    playback: Option<Arc<Playback>>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView").field("addr", &self.addr).field("stats", &self.stats()).finish()
    }
}

impl LiveView {
    /// Starts serving on `cfg.addr`, with the channels of `vehicles` declared before any
    /// client connects; camera frames carried by reference are drawn from `frames`.
    pub fn start(
        cfg: &LiveConfig,
        frames: Option<Arc<dyn FrameStore>>,
        vehicles: &[String],
    ) -> Result<Self, LiveError> {
        let err = |reason: String| LiveError::Start { addr: cfg.addr, reason };
        // Its own small runtime: the view must not take threads the pipeline counts on.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("vigil-live-ws")
            .enable_all()
            .build()
            .map_err(|e| err(e.to_string()))?;
        let context = Context::new();
        let server = WebSocketServer::new()
            .name("vigil")
            .context(&context)
            .bind(cfg.addr.ip().to_string(), cfg.addr.port())
            .message_backlog_size(cfg.client_backlog.max(1))
            .tokio_runtime(runtime.handle());
        let playback = cfg.playback.map(|p| (p, Playback::new(p.speed)));
        let server = match &playback {
            Some((range, control)) => server
                .capabilities([Capability::Time, Capability::PlaybackControl])
                .playback_time_range(range.start_ns.max(0) as u64, range.end_ns.max(range.start_ns).max(0) as u64)
                .listener(Arc::new(playback::Listener(control.clone()))),
            None => server,
        };
        let handle = runtime.handle().clone();
        let server = std::thread::scope(|s| s.spawn(|| handle.block_on(server.start())).join())
            .map_err(|_| err("the server's start panicked".into()))?
            .map_err(|e| err(e.to_string()))?;
        let addr = SocketAddr::new(cfg.addr.ip(), server.port());
        let (offers, rx) = flume::bounded(cfg.queue.max(1));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let viewer = match frames {
            Some(f) => ViewerChannels::with_frames(f),
            None => ViewerChannels::default(),
        };
        let mut draw = Draw { context, channels: HashMap::new(), viewer, counters: counters.clone() };
        // Declared up front, so a client learns them as it connects. A channel made while
        // a client is connected is advertised to it from this thread, and the SDK (0.30)
        // notes it as advertised only after sending: a quick client's subscribe can land
        // in between and be refused as an unknown channel.
        for v in vehicles.iter().take(crate::viewer::MAX_VEHICLES) {
            for t in crate::viewer::Topic::ALL {
                if let Some((schema, encoding)) = t.schema() {
                    draw.channel(&t.of(v), schema, encoding);
                }
            }
        }
        let (queue, halt) = (rx.clone(), stop.clone());
        let worker = std::thread::Builder::new()
            .name("vigil-live".into())
            .spawn(move || draw.run(&queue, &halt))
            .map_err(|e| err(e.to_string()))?;
        tracing::info!(%addr, "live view serving");
        Ok(Self {
            offers,
            oldest: rx,
            counters,
            stop,
            server: Some(server),
            worker: Some(worker),
            runtime: Some(runtime),
            addr,
            playback: playback.map(|(_, control)| control),
        })
    }

    /// The address served (the port chosen when asked for 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.server.as_ref().map_or(0, |s| s.client_count())
    }

    /// Whether a client is connected (what is offered is drawn).
    pub fn watching(&self) -> bool {
        self.clients() > 0
    }

    /// Offers one envelope to the view; never blocks. Nothing is done while no client
    /// is connected; when the queue is full its oldest envelope is dropped.
    pub fn offer(&self, time: Nanos, envelope: &[u8]) {
        let clients = self.clients() as u64;
        if clients == 0 {
            return;
        }
        self.counters.clients_peak.fetch_max(clients, Ordering::Relaxed);
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
        let mut item = (time, envelope.to_vec());
        loop {
            match self.offers.try_send(item) {
                Ok(()) => return,
                Err(flume::TrySendError::Full(back)) => {
                    if self.oldest.try_recv().is_ok() {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    item = back;
                }
                Err(flume::TrySendError::Disconnected(_)) => return,
            }
        }
    }

    /// The viewer's control of a replay's pace, when serving one.
    pub fn playback(&self) -> Option<Arc<Playback>> {
        self.playback.clone()
    }

    /// Tells the viewer the replay is at capture time `t` (its timeline follows).
    pub fn at(&self, t: Nanos) {
        if let (Some(s), Some(_)) = (&self.server, &self.playback) {
            s.broadcast_time(t.max(0) as u64);
        }
    }

    /// Tells the viewer the replay has ended.
    pub fn ended(&self) {
        if let (Some(s), Some(p)) = (&self.server, &self.playback) {
            s.broadcast_playback_state(p.state(true));
        }
    }

    pub fn stats(&self) -> LiveStats {
        let c = &self.counters;
        LiveStats {
            offered: c.offered.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            messages: c.messages.load(Ordering::Relaxed),
            clients_peak: c.clients_peak.load(Ordering::Relaxed),
        }
    }

    /// Stops the server and the converting thread; returns what the view did.
    pub fn stop(mut self) -> LiveStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        if let Some(s) = self.server.take() {
            // The handle's wait must not run inside the runtime it waits on.
            let _ = s.stop();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The converting thread's state: the viewer conversion and the server's channels.
struct Draw {
    context: Arc<Context>,
    channels: HashMap<String, Arc<RawChannel>>,
    viewer: ViewerChannels,
    counters: Arc<Counters>,
}

impl Draw {
    fn channel(&mut self, topic: &str, schema: foxglove::Schema, encoding: &str) -> Option<Arc<RawChannel>> {
        let c = self.context.channel_builder(topic).schema(schema).message_encoding(encoding).build_raw().ok()?;
        self.channels.insert(topic.to_string(), c.clone());
        Some(c)
    }

    fn run(&mut self, queue: &flume::Receiver<Offer>, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let Ok((time, envelope)) = queue.recv_timeout(Duration::from_millis(100)) else { continue };
            for m in self.viewer.convert(&envelope) {
                let channel = match self.channels.get(&m.topic) {
                    Some(c) => c.clone(),
                    None => {
                        let Some(c) = self.channel(&m.topic, m.schema, m.encoding) else { continue };
                        c
                    }
                };
                channel.log_with_meta(&m.bytes, PartialMetadata::with_log_time(time.max(0) as u64));
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The telemetry log with the live view watching: every record goes to the log and is
/// offered to the view.
#[derive(Debug)]
pub struct LiveTap {
    log: Arc<dyn TelemetryLog>,
    view: Arc<LiveView>,
}

impl LiveTap {
    pub fn new(log: Arc<dyn TelemetryLog>, view: Arc<LiveView>) -> Self {
        Self { log, view }
    }
}

impl TelemetryLog for LiveTap {
    fn append(&self, record: LogRecord<'_>) -> Result<(), TransportError> {
        self.log.append(record)?;
        self.view.offer(record.capture_ns, record.envelope);
        Ok(())
    }

    fn close(&self) -> Result<BTreeMap<String, u64>, TransportError> {
        self.log.close()
    }
}
