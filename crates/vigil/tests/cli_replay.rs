//! `vigil replay` and `vigil record`: drives from MCAP and from Kafka through the same
//! actors, deterministically; exact capture-time windows; files the official Python MCAP
//! reader decodes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{AMQP, KAFKA, brokers_up, delete_amqp_prefix, n, python_mcap_check, unique, vigil, vigil_json};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("replay"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A drive recorded by `vigil run --record` replays to the same recommendations every
/// time, and to the ones recorded at the time (same model).
#[test]
fn replay_of_a_recorded_run_is_deterministic_and_matches_the_recording() {
    let file = tmp("drive.mcap");
    let f = file.to_str().unwrap();
    let run = vigil_json(
        &["run", "--scenario", "pedestrian-crossing", "--seed", "7", "--fast", "--record", f, "--json"],
        &[],
    );
    let png = file.with_file_name("timeline.png");
    let first = vigil_json(&["replay", "--source", f, "--max", "--json", "--timeline-png", png.to_str().unwrap()], &[]);
    let bytes = std::fs::read(&png).expect("the timeline PNG is written");
    assert_eq!(&bytes[1..4], b"PNG");
    let second = vigil_json(&["replay", "--source", f, "--max", "--json"], &[]);
    eprintln!("run: {run}\nreplay: {first}");
    assert!(n(&first["recommendations"]) >= 1, "{first}");
    assert_eq!(first["recommendations_digest"], second["recommendations_digest"]);
    assert_eq!(first["by_action"], second["by_action"]);
    // Every recorded frame went through the actors again.
    assert_eq!(n(&first["frames"]["radar"]), n(&run["frames"]["radar"]["produced"]), "{first}");
    assert_eq!(n(&first["frames"]["camera"]), n(&run["frames"]["camera"]["produced"]), "{first}");
    // The same model recommends what it recommended at the time.
    let d = &first["diff"];
    assert_eq!(d["recorded"], run["recommendations"]["count"], "{first}");
    assert_eq!(d["changed"], 0, "{first}");
    assert_eq!(d["only_recorded"], 0, "{first}");
    // A task whose deadline passed in the live run (a busy machine: lockstep time moves
    // with the real time spent) fell back and has no recorded recommendation; the replay,
    // on a clock that waits for it, answers it. Nothing else may differ.
    let late = n(&run["tasks"]["fallback"]);
    assert_eq!(n(&d["only_replayed"]), late, "{first}");
    let g = &d["ground_truth"];
    if late == 0 {
        assert_eq!(g["recorded"], g["replayed"], "{first}");
    } else {
        assert_eq!(n(&g["replayed"]["labelled"]), n(&g["recorded"]["labelled"]) + late, "{first}");
    }
    assert!(n(&g["replayed"]["labelled"]) >= 1, "{first}");
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// Two vehicles' actors log their tasks in whatever order they run; a replay's export of
/// the same drive is the same, byte for byte, crop for crop, every time.
#[test]
fn export_of_a_two_vehicle_drive_is_the_same_on_every_replay() {
    let file = tmp("fleet.mcap");
    let f = file.to_str().unwrap();
    let run = ["run", "--scenario", "urban-dense", "--vehicles", "2", "--seed", "4", "--fast", "--duration", "8"];
    vigil_json(&[&run[..], &["--record", f, "--json"]].concat(), &[]);
    let export = |name: &str| {
        let dir = file.with_file_name(name);
        let r =
            vigil_json(&["replay", "--source", f, "--max", "--json", "--export-dataset", dir.to_str().unwrap()], &[]);
        (r, dir)
    };
    let ((a, da), (b, db)) = (export("a"), export("b"));
    assert!(n(&a["tasks"]["raised"]) >= 2 && n(&a["exported"]) > n(&a["tasks"]["raised"]), "{a}");
    assert_eq!(a["exported"], b["exported"]);
    let labels = |d: &Path| std::fs::read_to_string(d.join("labels.jsonl")).unwrap();
    assert_eq!(labels(&da), labels(&db));
    for line in labels(&da).lines() {
        let l: serde_json::Value = serde_json::from_str(line).unwrap();
        let crop = |d: &Path| std::fs::read(d.join(l["file"].as_str().unwrap())).unwrap();
        assert_eq!(crop(&da), crop(&db), "{line}");
    }
    let _ = std::fs::remove_dir_all(file.parent().unwrap());
}

/// Bad input: a missing file and an empty window are clear errors, not panics.
#[test]
fn replay_of_nothing_is_a_clear_error() {
    let out = vigil(&["replay", "--source", "/nonexistent/drive.mcap", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/drive.mcap") && err.contains("no such file"), "{err}");
    let garbage = tmp("garbage.mcap");
    std::fs::write(&garbage, b"not an mcap file").unwrap();
    let out = vigil(&["replay", "--source", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("garbage.mcap") && err.contains("not an MCAP file"), "{err}");
}

/// Writes `(channel is Vigil's, topic, log time, bytes)` as an MCAP file the way another
/// tool might: Vigil's schema on its channels, `foxglove.Log` on the others, no metadata.
fn write_mcap(path: &Path, mut msgs: Vec<(bool, String, i64, Vec<u8>)>) {
    msgs.sort_by_key(|m| m.2);
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = mcap::Writer::new(file).unwrap();
    let ours = w.add_schema("vigil.v1.Envelope", "protobuf", vigil_proto::FILE_DESCRIPTOR_SET).unwrap();
    let theirs = w.add_schema("foxglove.Log", "protobuf", b"").unwrap();
    let mut channels = std::collections::BTreeMap::new();
    for (seq, (vigil, topic, at, bytes)) in msgs.iter().enumerate() {
        let schema = if *vigil { ours } else { theirs };
        let id = *channels
            .entry((schema, topic.clone()))
            .or_insert_with(|| w.add_channel(schema, topic, "protobuf", &Default::default()).unwrap());
        let header = mcap::records::MessageHeader {
            channel_id: id,
            sequence: seq as u32,
            log_time: *at as u64,
            publish_time: *at as u64,
        };
        w.write_to_known_channel(&header, bytes).unwrap();
    }
    w.finish().unwrap();
}

/// A recording is input from outside. A message claiming a vehicle the drive does not
/// have, and one on a channel of another schema, are left out and counted; the replay
/// decides as it does without them (a foreign vehicle's frame used to hold the lockstep
/// until its 30 s limit and fail the replay). A file with no Vigil channel is an error.
#[test]
fn a_recording_is_read_only_through_its_vigil_channels_and_vehicles() {
    use vigil_proto::wire::topics;
    let clean = tmp("clean.mcap");
    let args = ["run", "--scenario", "pedestrian-crossing", "--seed", "7", "--fast", "--duration", "5", "--json"];
    vigil_json(&[&args[..], &["--record", clean.to_str().unwrap()]].concat(), &[]);
    let msgs = vigil_bus::embedded::playback::read_all(&clean).unwrap();
    let nth = |topic: &str| msgs.iter().filter(|m| m.0 == topic).nth(20).cloned().unwrap();
    let resign = |bytes: &[u8], f: &dyn Fn(&mut vigil_proto::v1::Header)| {
        let mut e = vigil_proto::decode_envelope(bytes).unwrap();
        f(e.header.as_mut().unwrap());
        prost::Message::encode_to_vec(&e)
    };
    let (_, lidar_at, lidar) = nth(topics::LIDAR);
    let intruder = resign(&lidar, &|h| h.vehicle_id = "veh-intruder".into());
    // A new radar scan (another sequence number): read as an envelope it would be fed.
    let (_, radar_at, radar) = nth(topics::RADAR);
    let extra_scan = resign(&radar, &|h| h.sequence += 1_000_000);

    let base: Vec<_> = msgs.into_iter().map(|(t, at, b)| (true, t, at, b)).collect();
    let mut crafted = base.clone();
    crafted.push((true, topics::LIDAR.to_string(), lidar_at, intruder));
    crafted.push((false, topics::RADAR.to_string(), radar_at, extra_scan.clone()));
    let (base_file, crafted_file, alien_file) =
        (clean.with_file_name("base.mcap"), clean.with_file_name("crafted.mcap"), clean.with_file_name("alien.mcap"));
    write_mcap(&base_file, base);
    write_mcap(&crafted_file, crafted);
    write_mcap(&alien_file, vec![(false, topics::RADAR.to_string(), radar_at, extra_scan)]);

    let replay = |f: &Path| vigil_json(&["replay", "--source", f.to_str().unwrap(), "--max", "--json"], &[]);
    let (want, got) = (replay(&base_file), replay(&crafted_file));
    eprintln!("base: {}\ncrafted: {}", want["read"], got["read"]);
    assert_eq!(got["read"]["foreign_vehicle"], 1, "{got}");
    assert_eq!(got["read"]["other_channels"], 1, "{got}");
    assert_eq!(want["read"]["foreign_vehicle"], 0, "{want}");
    assert_eq!(got["frames"], want["frames"], "nothing more was fed");
    assert_eq!(got["vehicles"], want["vehicles"]);
    assert_eq!(got["recommendations_digest"], want["recommendations_digest"]);

    let out = vigil(&["replay", "--source", alien_file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("alien.mcap") && err.contains("no `vigil.v1.Envelope` channel"), "{err}");
    assert!(err.contains("foxglove.Log"), "says what it found: {err}");
    let _ = std::fs::remove_dir_all(clean.parent().unwrap());
}

fn messages_in(file: &Path) -> Vec<(String, i64)> {
    vigil_bus::embedded::playback::read_all(file).unwrap().into_iter().map(|(t, at, _)| (t, at)).collect()
}

/// A 30 s drive over the real brokers: recorded from Kafka by vehicle and capture-time window
/// (exactly the frames in [T1, T2); nothing after the drive's end), replayed from Kafka
/// twice to the same digest, and the same as its MCAP export replayed; the exported
/// files open in the official Python MCAP reader.
#[test]
fn drive_over_the_brokers_replays_from_kafka_by_window() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("rkafka");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let env = [
        ("VIGIL_KAFKA_TOPIC_PREFIX", prefix.clone()),
        ("VIGIL_AMQP_PREFIX", prefix.clone()),
        ("VIGIL_FRAMES_URL", format!("file://{}/", frames.display())),
    ];
    let run = vigil_json(
        &[
            "run",
            "--scenario",
            "pedestrian-crossing",
            "--seed",
            "7",
            "--duration",
            "30",
            "--fast",
            "--kafka",
            KAFKA,
            "--amqp",
            AMQP,
            "--json",
        ],
        &env,
    );
    assert_eq!(run["mode"], "brokers", "{run}");
    let kafka = ["--kafka", KAFKA, "--vehicle", "veh-0000"];

    // The whole drive, to MCAP: every frame, camera pixels back inline.
    let whole = tmp("whole.mcap");
    let w = vigil_json(&[&["record", "--out", whole.to_str().unwrap(), "--json"][..], &kafka[..]].concat(), &env);
    let produced: u64 = ["lidar", "camera", "radar"].iter().map(|k| n(&run["frames"][k]["produced"])).sum();
    let all = messages_in(&whole);
    let telemetry = |t: &str| t.starts_with("vigil.telemetry.") && !t.ends_with("groundtruth");
    assert_eq!(all.iter().filter(|(t, _)| telemetry(t)).count() as u64, produced, "{w}");
    if let Some(py) = python_mcap_check(&whole) {
        assert_eq!(py["messages"], w["messages"], "{py}");
    }

    // A window starting mid-drive: exactly the messages captured in [T1, T2).
    let start = w["first_capture_ns"].as_i64().unwrap();
    let (t1, t2) = (start + 3_000_000_000, start + 6_500_000_000);
    let part = tmp("part.mcap");
    let (from, to) = (t1.to_string(), t2.to_string());
    let p = vigil_json(
        &[&["record", "--out", part.to_str().unwrap(), "--from", &from, "--to", &to, "--json"][..], &kafka[..]]
            .concat(),
        &env,
    );
    let want: Vec<&(String, i64)> = all.iter().filter(|(t, at)| telemetry(t) && *at >= t1 && *at < t2).collect();
    let got: Vec<(String, i64)> = messages_in(&part).into_iter().filter(|(t, _)| telemetry(t)).collect();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{p}");
    assert!(got.iter().all(|(_, at)| *at >= t1 && *at < t2), "{p}");
    // A window after the end of the drive: nothing, not the whole drive.
    let end = w["last_capture_ns"].as_i64().unwrap();
    let after = tmp("after.mcap");
    let (from, to) = ((end + 1_000_000_000).to_string(), (end + 60_000_000_000).to_string());
    let a = vigil_json(
        &[&["record", "--out", after.to_str().unwrap(), "--from", &from, "--to", &to, "--json"][..], &kafka[..]]
            .concat(),
        &env,
    );
    assert_eq!(a["frames"], 0, "{a}");

    // Replayed from Kafka twice: the same recommendations, bit for bit; the same as the
    // MCAP export replayed.
    let replay_kafka = [&["replay", "--source", "kafka", "--max", "--json"][..], &kafka[..]].concat();
    let r1 = vigil_json(&replay_kafka, &env);
    let r2 = vigil_json(&replay_kafka, &env);
    let r3 = vigil_json(&["replay", "--source", whole.to_str().unwrap(), "--max", "--json"], &env);
    eprintln!("run: {run}\nreplay: {r1}");
    assert!(n(&r1["recommendations"]) >= 1, "{r1}");
    assert_eq!(r1["recommendations_digest"], r2["recommendations_digest"]);
    assert_eq!(r1["recommendations_digest"], r3["recommendations_digest"]);
    assert_eq!(r1["drive"], r3["drive"]);
    assert_eq!(r1["diff"]["recorded"], run["recommendations"]["count"], "{r1}");
    let _ = std::fs::remove_dir_all(frames);
    let _ = std::fs::remove_dir_all(whole.parent().unwrap());
    delete_amqp_prefix(&prefix);
}

/// Two drives of one vehicle over the brokers (the same scenario epoch, so capture-time
/// windows cannot tell them apart): `vigil drives` lists both under distinct ids, and
/// replaying the first by `--drive` gives the same digest after the second drive as
/// before it (before, the second drive overwrote the first's frames in the store).
#[test]
fn drive_over_the_brokers_by_id_replays_the_same_after_a_later_drive() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("rdrives");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let env = [
        ("VIGIL_KAFKA_TOPIC_PREFIX", prefix.clone()),
        ("VIGIL_AMQP_PREFIX", prefix.clone()),
        ("VIGIL_FRAMES_URL", format!("file://{}/", frames.display())),
    ];
    let drive = |seed: &str| {
        let args = ["run", "--scenario", "stopped-vehicle", "--seed", seed, "--duration", "8", "--fast", "--json"];
        vigil_json(&[&args[..], &["--kafka", KAFKA, "--amqp", AMQP][..]].concat(), &env)
    };
    let drives = || {
        let out = vigil_json(&["drives", "--kafka", KAFKA, "--json"], &env);
        out.as_array().unwrap().clone()
    };
    let replay = |id: &str| {
        vigil_json(&["replay", "--source", "kafka", "--kafka", KAFKA, "--drive", id, "--max", "--json"], &env)
    };
    let first = drive("7");
    let listed = drives();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let id1 = listed[0]["drive"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["vehicle"], "veh-0000");
    assert_eq!(listed[0]["scenario"], "stopped-vehicle", "{listed:?}");
    assert_eq!(listed[0]["seed"], 7, "{listed:?}");
    let before = replay(&id1);
    assert!(n(&before["recommendations"]) >= 1, "{before}");
    assert_eq!(before["diff"]["recorded"], first["recommendations"]["count"], "{before}");
    assert_eq!(before["diff"]["compared"], before["diff"]["recorded"], "replayed task ids match the recorded ones");

    let _second = drive("8");
    let listed = drives();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let ids: Vec<&str> = listed.iter().map(|d| d["drive"].as_str().unwrap()).collect();
    assert_ne!(ids[0], ids[1], "{listed:?}");
    assert!(ids.contains(&id1.as_str()), "{listed:?}");
    for d in &listed {
        assert!(n(&d["messages"]["radar"]) > 0 && n(&d["messages"]["camera"]) > 0, "{d}");
        let seed = if d["drive"] == id1.as_str() { 7 } else { 8 };
        assert_eq!(d["seed"], seed, "each drive names its own seed: {d}");
    }
    let after = replay(&id1);
    assert_eq!(after["recommendations_digest"], before["recommendations_digest"], "{before}\n{after}");
    assert_eq!(after["frames"], before["frames"]);
    let other = ids.iter().find(|i| **i != id1).unwrap();
    let second = replay(other);
    assert!(n(&second["recommendations"]) >= 1, "{second}");
    let _ = std::fs::remove_dir_all(frames);
    delete_amqp_prefix(&prefix);
}

/// A window of a longer drive over the brokers is read by its offsets: what is read is
/// about the window's records, not the drive's, and it is exactly the window's messages.
#[test]
fn a_kafka_window_of_a_drive_reads_only_its_offsets() {
    let Some(_brokers) = brokers_up() else {
        return;
    };
    let prefix = unique("rwindow");
    let frames = std::env::temp_dir().join(format!("{prefix}-frames"));
    let env = [
        ("VIGIL_KAFKA_TOPIC_PREFIX", prefix.clone()),
        ("VIGIL_AMQP_PREFIX", prefix.clone()),
        ("VIGIL_FRAMES_URL", format!("file://{}/", frames.display())),
    ];
    let args = ["run", "--scenario", "clear-road", "--seed", "3", "--duration", "60", "--fast", "--json"];
    vigil_json(&[&args[..], &["--kafka", KAFKA, "--amqp", AMQP][..]].concat(), &env);
    let listed = vigil_json(&["drives", "--kafka", KAFKA, "--json"], &env);
    let id = listed[0]["drive"].as_str().unwrap().to_string();
    let by_id = ["--kafka", KAFKA, "--drive", id.as_str()];

    let whole = tmp("whole.mcap");
    let w = vigil_json(&[&["record", "--out", whole.to_str().unwrap(), "--json"][..], &by_id[..]].concat(), &env);
    let start = w["first_capture_ns"].as_i64().unwrap();
    let (t1, t2) = (start + 30_000_000_000, start + 35_000_000_000);
    let part = tmp("window.mcap");
    let (from, to) = (t1.to_string(), t2.to_string());
    let p = vigil_json(
        &[&["record", "--out", part.to_str().unwrap(), "--from", &from, "--to", &to, "--json"][..], &by_id[..]]
            .concat(),
        &env,
    );
    let in_window = messages_in(&whole).into_iter().filter(|(_, at)| (t1..t2).contains(at)).count() as u64;
    assert_eq!(n(&p["messages"]), in_window, "exactly the window's messages: {p}");
    // 5 s of a 60 s drive, read with 5 s of slack each side and the bisection's probes.
    let read = n(&p["records_read"]);
    let total = n(&w["messages"]);
    eprintln!("window: {read} records read for {in_window} in the window, of {total} in the drive");
    assert!(read * 3 < total, "{read} records read of {total} for a 5 s window: {p}");
    let _ = std::fs::remove_dir_all(frames);
    let _ = std::fs::remove_dir_all(whole.parent().unwrap());
    delete_amqp_prefix(&prefix);
}
