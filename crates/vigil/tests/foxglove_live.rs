//! `vigil run --foxglove`: a Foxglove WebSocket client, speaking `foxglove.sdk.v1` as its
//! spec words it (JSON control messages, binary message data), watches a drive live and
//! decodes what a viewer draws.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use foxglove::schemas::{
    CameraCalibration, CompressedImage, FrameTransforms, ImageAnnotations, Log, PointCloud, SceneUpdate,
};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

/// One advertised channel: topic, schema name, message encoding.
#[derive(Debug, Clone)]
struct Channel {
    topic: String,
    schema: String,
    encoding: String,
}

/// What the client decoded, per schema, and the topics it saw them on.
#[derive(Debug, Default)]
struct Seen {
    decoded: BTreeMap<String, u64>,
    topics: BTreeMap<String, String>,
    problems: Vec<String>,
}

impl Seen {
    fn count(&self, schema: &str) -> u64 {
        self.decoded.get(schema).copied().unwrap_or(0)
    }

    fn complete(&self) -> bool {
        ["foxglove.PointCloud", "foxglove.CompressedImage", "foxglove.SceneUpdate", "foxglove.Log"]
            .iter()
            .all(|s| self.count(s) > 0)
            && self.decoded.keys().any(|k| k == "foxglove.ImageAnnotations")
    }

    /// Decodes one message and checks it is what a viewer can draw.
    fn decode(&mut self, c: &Channel, data: &[u8]) {
        let ok: Result<(), String> = match c.schema.as_str() {
            "foxglove.PointCloud" => PointCloud::decode(data).map_err(|e| e.to_string()).and_then(|p| {
                let stride = p.point_stride as usize;
                let names: Vec<_> = p.fields.iter().map(|f| f.name.as_str()).collect();
                (stride > 0 && !p.data.is_empty() && p.data.len() % stride == 0 && names.starts_with(&["x", "y", "z"]))
                    .then_some(())
                    .ok_or(format!("point cloud: stride {stride}, {} bytes, fields {names:?}", p.data.len()))
            }),
            "foxglove.CompressedImage" => CompressedImage::decode(data).map_err(|e| e.to_string()).and_then(|i| {
                (i.format == "jpeg" && i.data.starts_with(&[0xFF, 0xD8]) && i.data.ends_with(&[0xFF, 0xD9]))
                    .then_some(())
                    .ok_or(format!("image: format {}, {} bytes, not a whole JPEG", i.format, i.data.len()))
            }),
            "foxglove.SceneUpdate" => SceneUpdate::decode(data).map_err(|e| e.to_string()).and_then(|s| {
                s.entities
                    .iter()
                    .all(|e| !e.cubes.is_empty() && !e.frame_id.is_empty())
                    .then_some(())
                    .ok_or("scene entity without a cube or a frame".to_string())
            }),
            "foxglove.Log" => Log::decode(data).map_err(|e| e.to_string()).and_then(|l| {
                ["BRAKE", "SLOW_DOWN", "STEER", "CONTINUE"]
                    .iter()
                    .any(|a| l.message.contains(a))
                    .then_some(())
                    .ok_or(format!("log names no action: {}", l.message))
            }),
            "foxglove.ImageAnnotations" => ImageAnnotations::decode(data).map(|_| ()).map_err(|e| e.to_string()),
            "foxglove.FrameTransforms" => FrameTransforms::decode(data)
                .map_err(|e| e.to_string())
                .and_then(|t| (!t.transforms.is_empty()).then_some(()).ok_or("no transform".to_string())),
            "foxglove.CameraCalibration" => CameraCalibration::decode(data).map_err(|e| e.to_string()).and_then(|k| {
                (k.k.len() == 9 && k.p.len() == 12 && k.width > 0).then_some(()).ok_or(format!("calibration {k:?}"))
            }),
            "vigil.viewer.Plot" => serde_json::from_slice::<serde_json::Value>(data)
                .map_err(|e| e.to_string())
                .and_then(|v| v["severity"].as_u64().map(|_| ()).ok_or(format!("plot without severity: {v}"))),
            other => Err(format!("unexpected schema {other}")),
        };
        match ok {
            Ok(()) => {
                *self.decoded.entry(c.schema.clone()).or_insert(0) += 1;
                self.topics.insert(c.schema.clone(), c.topic.clone());
            }
            Err(e) => self.problems.push(format!("{}: {e}", c.topic)),
        }
    }
}

/// Starts `vigil run … --foxglove 0`, returns the child and the address it serves.
fn start_run(extra: &[&str]) -> (std::process::Child, String) {
    start_vigil(&[&["run", "--json", "--foxglove", "0"], extra].concat())
}

/// Starts `vigil args` (which serves a live view), returns the child and the address.
fn start_vigil(args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(common::root())
        .args(args)
        .env("VIGIL_LOG", "warn,foxglove=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigil run");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.strip_prefix("live view: ws://") {
                Some(rest) => {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
                None => eprintln!("vigil: {line}"),
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(60)).expect("vigil run announced no live view");
    (child, addr)
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str) -> Ws {
    let mut request = format!("ws://{addr}").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("foxglove.sdk.v1"));
    let (ws, response) = tokio_tungstenite::connect_async(request).await.expect("connect to the live view");
    assert_eq!(response.headers().get("Sec-WebSocket-Protocol").unwrap(), "foxglove.sdk.v1");
    ws
}

/// Subscribes to every channel of an `advertise` message.
async fn subscribe_all(ws: &mut Ws, v: &serde_json::Value, next: &mut u32) {
    let Some(channels) = v["channels"].as_array().filter(|_| v["op"] == "advertise") else { return };
    let subs: Vec<_> = channels
        .iter()
        .map(|c| {
            *next += 1;
            serde_json::json!({"id": *next, "channelId": c["id"]})
        })
        .collect();
    let m = serde_json::json!({"op": "subscribe", "subscriptions": subs});
    ws.send(Message::Text(m.to_string().into())).await.unwrap();
}

/// Connects, subscribes to every channel advertised, decodes until all kinds are seen
/// (or `limit`).
async fn watch(addr: &str, limit: Duration) -> Seen {
    let mut ws = connect(addr).await;
    let mut channels: HashMap<u64, Channel> = HashMap::new();
    let mut subscriptions: HashMap<u32, u64> = HashMap::new();
    let mut seen = Seen::default();
    let until = Instant::now() + limit;
    while !seen.complete() && Instant::now() < until {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(1), ws.next()).await else { continue };
        match msg {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["op"] != "advertise" {
                    continue;
                }
                let mut subscribe = Vec::new();
                for c in v["channels"].as_array().unwrap() {
                    let id = c["id"].as_u64().unwrap();
                    let channel = Channel {
                        topic: c["topic"].as_str().unwrap().into(),
                        schema: c["schemaName"].as_str().unwrap().into(),
                        encoding: c["encoding"].as_str().unwrap().into(),
                    };
                    assert!(["protobuf", "json"].contains(&channel.encoding.as_str()), "{channel:?}");
                    let sub = subscriptions.len() as u32 + 1;
                    subscriptions.insert(sub, id);
                    channels.insert(id, channel);
                    subscribe.push(serde_json::json!({"id": sub, "channelId": id}));
                }
                let m = serde_json::json!({"op": "subscribe", "subscriptions": subscribe});
                ws.send(Message::Text(m.to_string().into())).await.unwrap();
            }
            Message::Binary(b) => {
                // Message data: opcode 1, subscription id (u32 LE), log time (u64 LE), payload.
                if b.len() < 13 || b[0] != 1 {
                    continue;
                }
                let sub = u32::from_le_bytes(b[1..5].try_into().unwrap());
                let channel =
                    subscriptions.get(&sub).and_then(|id| channels.get(id)).expect("data for no subscription");
                seen.decode(channel, &b[13..]);
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    seen
}

#[test]
fn a_foxglove_client_watches_a_run_live_and_decodes_what_it_draws() {
    let (child, addr) = start_run(&["--scenario", "pedestrian-crossing", "--seed", "1"]);
    assert!(addr.starts_with("127.0.0.1:"), "a bare port is served on loopback: {addr}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // The SDK's server speaks foxglove.sdk.v1 only: a client of the older
    // foxglove.websocket.v1 (the npm @foxglove/ws-protocol client, Lichtblick) is refused.
    let mut legacy = format!("ws://{addr}").into_client_request().unwrap();
    legacy.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("foxglove.websocket.v1"));
    let refused = runtime.block_on(tokio_tungstenite::connect_async(legacy));
    assert!(refused.is_err_and(|e| e.to_string().contains("400")), "a foxglove.websocket.v1 client was let in");
    let seen = runtime.block_on(watch(&addr, Duration::from_secs(60)));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "vigil run failed: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("decoded {:?} on {:?}", seen.decoded, seen.topics);
    assert!(seen.problems.is_empty(), "{:?}", seen.problems);
    assert!(seen.complete(), "not every kind decoded: {:?}", seen.decoded);
    assert_eq!(seen.topics["foxglove.PointCloud"], "/veh-0000/lidar");
    assert_eq!(seen.topics["foxglove.CompressedImage"], "/veh-0000/camera");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let live = &report["live_view"];
    assert!(common::n(&live["offered"]) > 0 && common::n(&live["messages"]) > 0, "{live}");
    assert!(common::n(&live["clients_peak"]) >= 1, "{live}");
}

/// A playback control request (client binary opcode 3).
fn control(pause: bool, speed: f32, seek: Option<u64>, id: &str) -> Message {
    let mut b = vec![3u8, u8::from(pause)];
    b.extend(speed.to_le_bytes());
    b.push(u8::from(seek.is_some()));
    b.extend(seek.unwrap_or(0).to_le_bytes());
    b.extend((id.len() as u32).to_le_bytes());
    b.extend(id.as_bytes());
    Message::Binary(b.into())
}

/// What a replay's live view sent: message data (log time) or a playback state
/// (status, current time, did it seek, request id).
enum Event {
    Data(u64),
    State(u8, u64, bool, String),
}

async fn next_event(ws: &mut Ws, next_sub: &mut u32) -> Option<Event> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next()).await.ok()??.ok()?;
        match msg {
            Message::Text(t) => subscribe_all(ws, &serde_json::from_str(&t).unwrap(), next_sub).await,
            Message::Binary(b) if b.len() >= 13 && b[0] == 1 => {
                return Some(Event::Data(u64::from_le_bytes(b[5..13].try_into().unwrap())));
            }
            Message::Binary(b) if b.len() >= 19 && b[0] == 5 => {
                let len = u32::from_le_bytes(b[15..19].try_into().unwrap()) as usize;
                let id = String::from_utf8_lossy(&b[19..19 + len]).to_string();
                return Some(Event::State(b[1], u64::from_le_bytes(b[2..10].try_into().unwrap()), b[14] == 1, id));
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Reads until the playback state answering `id`; returns it, and the log times of the
/// data read on the way.
async fn answer(ws: &mut Ws, next_sub: &mut u32, id: &str) -> ((u8, u64, bool), Vec<u64>) {
    let mut data = Vec::new();
    while let Some(e) = next_event(ws, next_sub).await {
        match e {
            Event::Data(t) => data.push(t),
            Event::State(status, at, seek, rid) if rid == id => return ((status, at, seek), data),
            Event::State(..) => {}
        }
    }
    panic!("no answer to playback request {id}");
}

#[test]
fn a_viewer_pauses_a_replay_and_seeks_it_ahead_but_not_back() {
    let dir = std::env::temp_dir().join(format!("vigil-live-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("drive.mcap");
    let f_arg = f.display().to_string();
    let rec = common::vigil(&["run", "--scenario", "pedestrian-crossing", "--seed", "2", "--fast", "--record", &f_arg]);
    assert!(rec.status.success(), "{}", String::from_utf8_lossy(&rec.stderr));
    let (child, addr) = start_vigil(&["replay", "--source", &f_arg, "--foxglove", "0", "--json"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (mut ws, mut next_sub) = (connect(&addr).await, 0u32);
        while !matches!(next_event(&mut ws, &mut next_sub).await, Some(Event::Data(_))) {}
        // Paused: nothing newer than where it stopped arrives while it stays paused.
        ws.send(control(true, 1.0, None, "pause")).await.unwrap();
        let ((status, at, _), _) = answer(&mut ws, &mut next_sub, "pause").await;
        assert_eq!(status, 1, "paused");
        let newer = tokio::time::timeout(Duration::from_millis(1500), async {
            while let Some(e) = next_event(&mut ws, &mut next_sub).await {
                if let Event::Data(t) = e
                    && t > at
                {
                    return Some(t);
                }
            }
            None
        })
        .await;
        assert!(newer.is_err(), "the replay went on while paused: {newer:?}");
        // Ahead by 5 s at twice the speed: the instants between are skipped.
        let target = at + 5_000_000_000;
        ws.send(control(false, 2.0, Some(target), "ahead")).await.unwrap();
        let ((status, _, sought), _) = answer(&mut ws, &mut next_sub, "ahead").await;
        assert_eq!((status, sought), (0, true), "playing, and sought ahead");
        let mut after = Vec::new();
        while after.len() < 50 {
            match next_event(&mut ws, &mut next_sub).await {
                Some(Event::Data(t)) => after.push(t),
                Some(_) => {}
                None => break,
            }
        }
        let skipped: Vec<_> = after.iter().filter(|t| **t > at + 500_000_000 && **t < target).collect();
        assert!(skipped.is_empty(), "instants inside the skipped span were drawn: {skipped:?}");
        assert!(after.iter().any(|t| *t >= target), "nothing from after the seek target");
        // Back is refused: the pipeline has already seen it.
        ws.send(control(false, 2.0, Some(at), "back")).await.unwrap();
        let ((_, now, sought), _) = answer(&mut ws, &mut next_sub, "back").await;
        assert!(!sought && now >= target, "a seek back moved the replay");
        // Paused again, then gone: the replay must not wait for a viewer that left.
        ws.send(control(true, 2.0, None, "leave")).await.unwrap();
        let ((status, _, _), _) = answer(&mut ws, &mut next_sub, "leave").await;
        assert_eq!(status, 1, "paused");
        let _ = ws.close(None).await;
    });
    let until = Instant::now() + Duration::from_secs(60);
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the replay stayed paused after its viewer left");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = common::vigil(&["run", "--scenario", "clear-road", "--fast", "--duration", "1", "--foxglove", &port]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("live view on 127.0.0.1:") && err.contains("--foxglove"), "{err}");
    let out = common::vigil(&["run", "--scenario", "clear-road", "--foxglove", "localhost"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("[HOST:]PORT"), "{err}");
}
