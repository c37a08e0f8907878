//! The on-vehicle sensor bus over zenoh.
//!
//! Zenoh runs its own multi-thread tokio runtime and must not be opened, awaited or
//! dropped on an actix arbiter thread. [`ZenohBus`] therefore owns the `Session` on a
//! dedicated thread with its own runtime; callers talk to it through bounded channels
//! (backpressure, never unbounded memory), from plain threads or from any async code.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use zenoh::qos::CongestionControl;

/// Zenoh session settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ZenohConfig {
    /// "peer" (default) or "client".
    pub mode: String,
    /// Endpoints to listen on, e.g. `tcp/127.0.0.1:7447`. None given: a peer listens on
    /// loopback only ([`DEFAULT_LISTEN`]), never on every interface, so no other machine
    /// can reach the bus unless told to.
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    pub connect: Vec<String>,
    /// Multicast scouting finds peers on the LAN; off by default (explicit endpoints).
    pub multicast_scouting: bool,
    /// Depth of the publish queue between callers and the session.
    pub queue_depth: usize,
    /// The biggest sample taken off the bus, bytes: zenoh drops bigger messages while
    /// reassembling them (before they are copied or queued), and a subscriber drops and
    /// counts any bigger sample it still sees.
    pub max_sample_bytes: usize,
    /// A zenoh JSON5 configuration file taken as the base (zenoh's own format): mutual
    /// TLS under `transport/link/tls`, `access_control` rules by certificate common name,
    /// anything else zenoh reads. The settings above go on top; its `listen/endpoints`
    /// stay when `listen` is empty.
    pub config_file: Option<std::path::PathBuf>,
}

/// Where a peer listens when no endpoint is given: loopback, any free port.
pub const DEFAULT_LISTEN: &str = "tcp/127.0.0.1:0";

/// The default [`ZenohConfig::max_sample_bytes`]: 64 MiB, room for a raw 4096 × 4096
/// camera frame (the biggest the simulator makes), far below zenoh's own 1 GiB.
pub const DEFAULT_MAX_SAMPLE_BYTES: usize = 64 << 20;

impl Default for ZenohConfig {
    fn default() -> Self {
        Self {
            mode: "peer".into(),
            listen: Vec::new(),
            connect: Vec::new(),
            multicast_scouting: false,
            queue_depth: 256,
            max_sample_bytes: DEFAULT_MAX_SAMPLE_BYTES,
            config_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid zenoh configuration `{key}`: {message}")]
    Config { key: &'static str, message: String },
    #[error("cannot open the zenoh session: {0} (check the listen/connect endpoints)")]
    Open(String),
    #[error("zenoh operation failed: {0}")]
    Zenoh(String),
    #[error("the zenoh bus thread has stopped")]
    Closed,
    #[error("timed out after {0:?} waiting for {1} zenoh peer(s)")]
    PeerTimeout(Duration, usize),
    #[error("cannot start the zenoh runtime thread: {0}")]
    Thread(String),
}

/// A message received from the bus.
#[derive(Debug, Clone)]
pub struct BusSample {
    pub key: String,
    pub payload: Vec<u8>,
}

enum Command {
    Put { key: String, payload: Vec<u8> },
    Subscribe { key_expr: String, tx: mpsc::Sender<BusSample>, done: oneshot::Sender<Result<(), BusError>> },
    Peers { done: oneshot::Sender<usize> },
    Flush { done: oneshot::Sender<()> },
}

/// Handle to a zenoh session living on its own runtime thread. Cloning the publisher
/// side is cheap ([`ZenohBus::publisher`]); dropping the bus closes the session on its
/// own thread.
#[derive(Debug)]
pub struct ZenohBus {
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    /// Samples over `max_sample_bytes` that reached a subscriber and were dropped.
    oversize: Arc<AtomicU64>,
}

/// A cloneable sender of puts onto the bus.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Command>,
}

impl Publisher {
    /// Publishes from a plain thread, waiting while the queue is full.
    /// Must not be called from inside an async runtime; use [`Publisher::put`] there.
    pub fn put_blocking(&self, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.tx.blocking_send(Command::Put { key: key.to_string(), payload }).map_err(|_| BusError::Closed)
    }

    pub async fn put(&self, key: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.tx.send(Command::Put { key: key.to_string(), payload }).await.map_err(|_| BusError::Closed)
    }
}

/// The zenoh configuration file's own settings, read with a size bound.
fn base_config(path: Option<&std::path::Path>) -> Result<zenoh::Config, BusError> {
    let Some(path) = path else { return Ok(zenoh::Config::default()) };
    let bad = |message: String| BusError::Config {
        key: "config_file",
        message: format!(
            "{}: {message} (a zenoh JSON5 configuration, see zenoh's DEFAULT_CONFIG.json5)",
            path.display()
        ),
    };
    let text =
        vigil_core::bounded::read_text(path, vigil_core::bounded::MAX_TEXT_BYTES).map_err(|e| bad(e.to_string()))?;
    zenoh::Config::from_json5(&text).map_err(|e| bad(e.to_string()))
}

fn zenoh_config(cfg: &ZenohConfig) -> Result<zenoh::Config, BusError> {
    let mut z = base_config(cfg.config_file.as_deref())?;
    let told_to_listen =
        z.get_json("listen/endpoints").ok() != zenoh::Config::default().get_json("listen/endpoints").ok();
    let set = |z: &mut zenoh::Config, key: &'static str, value: String| {
        z.insert_json5(key, &value).map_err(|e| BusError::Config { key, message: e.to_string() })
    };
    if cfg.mode != "peer" && cfg.mode != "client" {
        return Err(BusError::Config {
            key: "mode",
            message: format!("must be \"peer\" or \"client\", found {:?}", cfg.mode),
        });
    }
    let list = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    set(&mut z, "mode", format!("{:?}", cfg.mode))?;
    set(&mut z, "scouting/multicast/enabled", cfg.multicast_scouting.to_string())?;
    if !cfg.listen.is_empty() {
        set(&mut z, "listen/endpoints", list(&cfg.listen))?;
    } else if cfg.mode == "peer" && !told_to_listen {
        set(&mut z, "listen/endpoints", list(&[DEFAULT_LISTEN.to_string()]))?;
    }
    if cfg.max_sample_bytes == 0 {
        return Err(BusError::Config { key: "max_sample_bytes", message: "must be at least 1".into() });
    }
    set(&mut z, "transport/link/rx/max_message_size", cfg.max_sample_bytes.to_string())?;
    if !cfg.connect.is_empty() {
        set(&mut z, "connect/endpoints", list(&cfg.connect))?;
    }
    Ok(z)
}

impl ZenohConfig {
    /// Checks the settings and the zenoh file (its syntax and zenoh's own schema) without
    /// opening a session: certificates and keys are read only when the session opens.
    pub fn check(&self) -> Result<(), BusError> {
        zenoh_config(self).map(drop)
    }
}

impl ZenohBus {
    /// Opens the session on a dedicated thread and waits until it is ready.
    pub fn open(cfg: &ZenohConfig) -> Result<Self, BusError> {
        let zcfg = zenoh_config(cfg)?;
        let (tx, rx) = mpsc::channel(cfg.queue_depth.max(1));
        let oversize = Arc::new(AtomicU64::new(0));
        let limit = Limit { max: cfg.max_sample_bytes, dropped: oversize.clone() };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vigil-zenoh".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BusError::Thread(e.to_string())));
                        return;
                    }
                };
                rt.block_on(serve(zcfg, limit, rx, ready_tx));
            })
            .map_err(|e| BusError::Thread(e.to_string()))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self { tx: Some(tx), thread: Some(thread), oversize }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(BusError::Closed)
            }
        }
    }

    fn sender(&self) -> Result<&mpsc::Sender<Command>, BusError> {
        self.tx.as_ref().ok_or(BusError::Closed)
    }

    pub fn publisher(&self) -> Result<Publisher, BusError> {
        Ok(Publisher { tx: self.sender()?.clone() })
    }

    /// Subscribes to a key expression; samples arrive in order on the returned channel,
    /// which holds at most `capacity` (the bus waits when it is full: nothing is dropped).
    /// Blocks until zenoh has declared the subscriber: call it from a plain thread, never
    /// from inside an async runtime (actix arbiters included), where blocking panics.
    pub fn subscribe(&self, key_expr: &str, capacity: usize) -> Result<mpsc::Receiver<BusSample>, BusError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let (done, wait) = oneshot::channel();
        self.sender()?
            .blocking_send(Command::Subscribe { key_expr: key_expr.to_string(), tx, done })
            .map_err(|_| BusError::Closed)?;
        wait.blocking_recv().map_err(|_| BusError::Closed)??;
        Ok(rx)
    }

    /// Number of zenoh peers currently connected.
    pub fn peer_count(&self) -> Result<usize, BusError> {
        let (done, wait) = oneshot::channel();
        self.sender()?.blocking_send(Command::Peers { done }).map_err(|_| BusError::Closed)?;
        wait.blocking_recv().map_err(|_| BusError::Closed)
    }

    /// Samples dropped by a subscriber for being over `max_sample_bytes`.
    pub fn oversize_dropped(&self) -> u64 {
        self.oversize.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` peers are connected.
    pub fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<(), BusError> {
        let start = std::time::Instant::now();
        while self.peer_count()? < n {
            if start.elapsed() > timeout {
                return Err(BusError::PeerTimeout(timeout, n));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Waits until every put queued before this call has been handed to zenoh.
    pub fn flush(&self) -> Result<(), BusError> {
        let (done, wait) = oneshot::channel();
        self.sender()?.blocking_send(Command::Flush { done }).map_err(|_| BusError::Closed)?;
        wait.blocking_recv().map_err(|_| BusError::Closed)
    }

    /// Flushes and closes the session on its own thread.
    pub fn close(mut self) -> Result<(), BusError> {
        let flushed = self.flush();
        self.shutdown();
        flushed
    }

    fn shutdown(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ZenohBus {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The per-sample size limit a subscriber enforces, and its count of drops.
#[derive(Clone)]
struct Limit {
    max: usize,
    dropped: Arc<AtomicU64>,
}

async fn serve(
    cfg: zenoh::Config,
    limit: Limit,
    mut rx: mpsc::Receiver<Command>,
    ready: std::sync::mpsc::Sender<Result<(), BusError>>,
) {
    let session = match zenoh::open(cfg).await {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(BusError::Open(e.to_string())));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut publishers: HashMap<String, zenoh::pubsub::Publisher<'static>> = HashMap::new();
    let mut forwarders = Vec::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Put { key, payload } => {
                if !publishers.contains_key(&key) {
                    match session.declare_publisher(key.clone()).congestion_control(CongestionControl::Block).await {
                        Ok(p) => {
                            publishers.insert(key.clone(), p);
                        }
                        Err(e) => {
                            tracing::error!(%key, error = %e, "cannot declare zenoh publisher");
                            continue;
                        }
                    }
                }
                if let Some(p) = publishers.get(&key)
                    && let Err(e) = p.put(payload).await
                {
                    tracing::error!(%key, error = %e, "zenoh put failed");
                }
            }
            Command::Subscribe { key_expr, tx, done } => match session.declare_subscriber(key_expr.clone()).await {
                Ok(sub) => {
                    let limit = limit.clone();
                    forwarders.push(tokio::spawn(async move {
                        while let Ok(sample) = sub.recv_async().await {
                            if sample.payload().len() > limit.max {
                                limit.dropped.fetch_add(1, Ordering::Relaxed);
                                let (key, len) = (sample.key_expr().as_str(), sample.payload().len());
                                tracing::warn!(%key, bytes = len, max = limit.max, "oversized sample dropped");
                                continue;
                            }
                            let msg = BusSample {
                                key: sample.key_expr().as_str().to_string(),
                                payload: sample.payload().to_bytes().into_owned(),
                            };
                            if tx.send(msg).await.is_err() {
                                break;
                            }
                        }
                    }));
                    let _ = done.send(Ok(()));
                }
                Err(e) => {
                    let _ = done.send(Err(BusError::Zenoh(format!("subscribe {key_expr}: {e}"))));
                }
            },
            Command::Peers { done } => {
                let n = session.info().peers_zid().await.count();
                let _ = done.send(n);
            }
            Command::Flush { done } => {
                let _ = done.send(());
            }
        }
    }
    for f in forwarders {
        f.abort();
    }
    drop(publishers);
    if let Err(e) = session.close().await {
        tracing::warn!(error = %e, "zenoh session close failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_listens_on_loopback_unless_told_otherwise() {
        let z = zenoh_config(&ZenohConfig::default()).unwrap();
        let listen = z.get_json("listen/endpoints").unwrap();
        assert!(listen.contains("127.0.0.1") && !listen.contains("[::]"), "{listen}");
        let told = ZenohConfig { listen: vec!["tcp/0.0.0.0:7447".into()], ..ZenohConfig::default() };
        assert!(zenoh_config(&told).unwrap().get_json("listen/endpoints").unwrap().contains("0.0.0.0"));
        let max = z.get_json("transport/link/rx/max_message_size").unwrap();
        assert_eq!(max, DEFAULT_MAX_SAMPLE_BYTES.to_string());
    }

    /// A peer sends a sample over the limit between two within it: the subscriber takes
    /// the two, drops and counts the big one, and keeps going.
    #[test]
    fn a_sample_over_the_limit_is_dropped_and_counted() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = format!("tcp/127.0.0.1:{port}");
        let small = ZenohConfig { listen: vec![endpoint.clone()], max_sample_bytes: 1024, ..ZenohConfig::default() };
        let sub = ZenohBus::open(&small).unwrap();
        let mut rx = sub.subscribe("vigil/test/**", 16).unwrap();
        let pub_bus = ZenohBus::open(&ZenohConfig { connect: vec![endpoint], ..ZenohConfig::default() }).unwrap();
        pub_bus.wait_for_peers(1, Duration::from_secs(10)).unwrap();
        let p = pub_bus.publisher().unwrap();
        // Until the subscription has propagated, samples may not arrive: repeat the first.
        let start = std::time::Instant::now();
        let first = loop {
            p.put_blocking("vigil/test/a", vec![1; 100]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(s) = rx.try_recv() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no sample arrived");
        };
        assert_eq!(first.payload.len(), 100);
        p.put_blocking("vigil/test/b", vec![2; 4096]).unwrap();
        p.put_blocking("vigil/test/c", vec![3; 1024]).unwrap();
        pub_bus.flush().unwrap();
        let start = std::time::Instant::now();
        let next = loop {
            match rx.try_recv() {
                Ok(s) if s.key == "vigil/test/a" => continue,
                Ok(s) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("no sample after the big one: {e}"),
            }
        };
        assert_eq!((next.key.as_str(), next.payload.len()), ("vigil/test/c", 1024), "the big one never arrives");
        assert_eq!(sub.oversize_dropped(), 1);
    }
}
