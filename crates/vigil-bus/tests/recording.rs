//! Recordings written and read back: compressed chunks, compact camera frames that come
//! back byte for byte, parts split by size or duration read as one, and bad input told
//! apart by file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use vigil_bus::embedded::playback::{Recording, read_all};
use vigil_bus::embedded::recorder::{
    CameraStorage, ChunkCompression, LidarStorage, McapRecorder, RecordOptions, part_path,
};
use vigil_bus::topics;
use vigil_proto::v1::{self, envelope::Payload};
use vigil_proto::wire::{Stream, header};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-recording-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn stamped(sensor: &str, sequence: u64, t: i64, payload: &Payload) -> v1::Header {
    v1::Header { sequence, capture_time_ns: t, publish_time_ns: t, ..header("veh-0000", sensor, payload) }
}

/// A noisy 64×48 camera frame, a radar scan and a lidar sweep per 50 ms instant, `n`
/// instants.
fn drive(n: u64) -> Vec<(&'static str, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut s = 0x9e37_79b9u32;
    for i in 0..n {
        let t = 1_767_225_600_000_000_000 + i as i64 * 50_000_000;
        let pixels: Vec<u8> = (0..64 * 48 * 3)
            .map(|k| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((k / 3 % 64) as u32 * 3 + (s & 7)) as u8
            })
            .collect();
        let cam = v1::CameraFrame {
            width: 64,
            height: 48,
            encoding: v1::PixelEncoding::Rgb8 as i32,
            pixels: Some(v1::camera_frame::Pixels::Data(pixels)),
            ..Default::default()
        };
        let payload = Payload::Camera(cam);
        let env = v1::Envelope { header: Some(stamped("camera_front", i, t, &payload)), payload: Some(payload) };
        out.push((topics::CAMERA, t, vigil_proto::encode_envelope(&env)));
        let radar = Payload::Radar(v1::RadarScan::default());
        let env = v1::Envelope { header: Some(stamped("radar_front", i, t, &radar)), payload: Some(radar) };
        out.push((Stream::Radar.topic(), t, vigil_proto::encode_envelope(&env)));
        let mut points = Vec::new();
        for k in 0..256u16 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let r = 10.0 + (k / 16) as f32 + (s % 100) as f32 * 1e-3;
            vigil_proto::pack_point(&mut points, r, k as f32 * 0.1, -1.5, 0.3, k % 16);
        }
        let lidar = Payload::Lidar(v1::LidarScan { point_count: 256, points, ..Default::default() });
        let env = v1::Envelope { header: Some(stamped("lidar_top", i, t, &lidar)), payload: Some(lidar) };
        out.push((Stream::Lidar.topic(), t, vigil_proto::encode_envelope(&env)));
    }
    out
}

fn record(path: &Path, opts: RecordOptions, msgs: &[(&str, i64, Vec<u8>)]) -> u32 {
    let mut rec = McapRecorder::with_options(path, opts).unwrap();
    for (topic, t, bytes) in msgs {
        rec.write(topic, *t, *t, bytes).unwrap();
    }
    let parts = rec.parts();
    rec.finish().unwrap();
    parts
}

fn read(sources: &[PathBuf]) -> Vec<(String, i64, Vec<u8>)> {
    let rec = Recording::open(sources).unwrap();
    rec.messages(None, None, None)
        .map(|m| m.map(|m| (m.topic.to_string(), m.log_ns, m.envelope)))
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn compressed_compact_recordings_give_back_the_bytes_recorded_and_are_smaller() {
    let d = dir("compact");
    let msgs = drive(40);
    let raw = d.join("raw.mcap");
    record(
        &raw,
        RecordOptions {
            compression: ChunkCompression::None,
            camera: CameraStorage::Raw,
            lidar: LidarStorage::Raw,
            ..Default::default()
        },
        &msgs,
    );
    for compression in [ChunkCompression::Zstd, ChunkCompression::Lz4] {
        let file = d.join(format!("{compression:?}.mcap"));
        record(&file, RecordOptions { compression, ..Default::default() }, &msgs);
        let back = read_all(&file).unwrap();
        assert_eq!(back.len(), msgs.len());
        for ((topic, t, bytes), (t2, at, b2)) in msgs.iter().zip(&back) {
            assert_eq!((*topic, *t), (t2.as_str(), *at));
            assert!(bytes == b2, "{compression:?}: a message came back changed");
        }
        let (small, big) = (std::fs::metadata(&file).unwrap().len(), std::fs::metadata(&raw).unwrap().len());
        assert!(small * 3 < big * 2, "{compression:?}: {small} bytes against {big} raw");
    }
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_recording_split_by_duration_or_size_reads_back_as_one_drive() {
    let d = dir("split");
    let msgs = drive(200); // 10 s
    let by_time = d.join("by-time");
    let parts = record(&by_time, RecordOptions { split_ns: Some(2_000_000_000), ..Default::default() }, &msgs);
    assert_eq!(parts, 5, "10 s in parts of 2 s");
    assert!(part_path(&by_time, 4).exists());
    let whole = read(std::slice::from_ref(&by_time));
    assert_eq!(whole.len(), msgs.len());
    assert!(whole.windows(2).all(|w| w[0].1 <= w[1].1), "capture order across parts");
    // The parts given one by one, in any order, are the same drive.
    let mut files: Vec<PathBuf> = (0..parts).rev().map(|i| part_path(&by_time, i)).collect();
    files.swap(0, 2);
    assert_eq!(read(&files).len(), msgs.len());
    let rec = Recording::open(std::slice::from_ref(&by_time)).unwrap();
    let vehicles = rec.vehicles().unwrap();
    assert_eq!(vehicles.keys().collect::<Vec<_>>(), ["veh-0000"]);
    // A window reads only its part of the drive.
    let from = msgs[60].1;
    let to = msgs[120].1;
    let window: Vec<_> = rec.messages(None, Some(from), Some(to)).map(|m| m.unwrap().log_ns).collect();
    assert_eq!(window.len(), 60, "instants 20..40, three messages each");
    assert!(window.iter().all(|t| (from..to).contains(t)));

    let by_size = d.join("by-size");
    let parts = record(
        &by_size,
        RecordOptions {
            split_bytes: Some(1 << 20),
            camera: CameraStorage::Raw,
            lidar: LidarStorage::Raw,
            compression: ChunkCompression::None,
            ..Default::default()
        },
        &msgs,
    );
    assert!(parts >= 2, "about 2 MB raw in parts of 1 MiB: {parts}");
    assert_eq!(read(&[by_size]).len(), msgs.len());
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn bad_recordings_are_refused_naming_the_file() {
    let d = dir("bad");
    let msgs = drive(200);
    let split = d.join("split");
    record(&split, RecordOptions { split_ns: Some(2_000_000_000), ..Default::default() }, &msgs);

    // A part missing from the middle, and the last one missing.
    let third = part_path(&split, 2);
    let kept = std::fs::read(&third).unwrap();
    std::fs::remove_file(&third).unwrap();
    let e = Recording::open(std::slice::from_ref(&split)).unwrap_err().to_string();
    assert!(e.contains("split_00002.mcap") && e.contains("part 2") && e.contains("missing"), "{e}");
    std::fs::write(&third, &kept).unwrap();
    let last = part_path(&split, 4);
    let last_bytes = std::fs::read(&last).unwrap();
    std::fs::remove_file(&last).unwrap();
    let e = Recording::open(std::slice::from_ref(&split)).unwrap_err().to_string();
    assert!(e.contains("split_00004.mcap") && e.contains("missing"), "{e}");

    // A part cut short (a crash while recording).
    std::fs::write(&last, &last_bytes[..last_bytes.len() / 2]).unwrap();
    let e = Recording::open(std::slice::from_ref(&split)).unwrap_err().to_string();
    assert!(e.contains("split_00004.mcap") && e.contains("truncated"), "{e}");

    // Not an MCAP file at all.
    let text = d.join("notes.mcap");
    std::fs::write(&text, "these are not the frames you are looking for").unwrap();
    let e = Recording::open(&[text]).unwrap_err().to_string();
    assert!(e.contains("notes.mcap") && e.contains("not an MCAP file"), "{e}");

    // Nothing there.
    let e = Recording::open(&[d.join("nowhere.mcap")]).unwrap_err().to_string();
    assert!(e.contains("nowhere.mcap") && e.contains("no such file"), "{e}");
    let _ = std::fs::remove_dir_all(d);
}

/// The offset of the first record with `op` in an MCAP file (after the magic).
fn first_record(bytes: &[u8], op: u8) -> usize {
    let mut i = 8;
    while i + 9 <= bytes.len() {
        if bytes[i] == op {
            return i;
        }
        i += 9 + u64::from_le_bytes(bytes[i + 1..i + 9].try_into().unwrap()) as usize;
    }
    panic!("no record {op:#x}");
}

/// Lengths a recording declares in its summary's chunk index (which the reader seeks
/// by: a chunk's length, compressed and uncompressed size) are checked before anything is
/// allocated: a file claiming a terabyte is a clear error naming it, never an abort or a
/// terabyte of memory.
#[test]
fn a_recording_that_declares_huge_lengths_is_an_error_not_an_allocation() {
    let d = dir("huge");
    let good = d.join("good.mcap");
    record(&good, RecordOptions::default(), &drive(20));
    let bytes = std::fs::read(&good).unwrap();
    let c = first_record(&bytes, 0x08) + 9;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let after_map = c + 36 + u32_at(c + 32) + 8;
    let compressed_at = after_map + 4 + u32_at(after_map);
    let tera = (1u64 << 40).to_le_bytes();
    let cases =
        [("chunk length", c + 24), ("compressed size", compressed_at), ("uncompressed size", compressed_at + 8)];
    let (all, mut refused) = (read(std::slice::from_ref(&good)).len(), 0);
    for (what, at) in cases {
        let mut crafted = bytes.clone();
        crafted[at..at + 8].copy_from_slice(&tera);
        let file = d.join("huge.mcap");
        std::fs::write(&file, &crafted).unwrap();
        let read = Recording::open(std::slice::from_ref(&file))
            .and_then(|r| r.messages(None, None, None).map(|m| m.map(|_| ())).collect::<Result<Vec<()>, _>>());
        match read {
            Err(e) => {
                assert!(e.to_string().contains("huge.mcap"), "{what}: {e}");
                refused += 1;
            }
            // A length the reader does not go by is harmless, as long as all comes back.
            Ok(got) => assert_eq!(got.len(), all, "{what}: read, so whole"),
        }
    }
    assert_eq!(refused, 2, "the sizes the reader allocates by are checked");
    let _ = std::fs::remove_dir_all(d);
}

/// A replay never reads attachments: one whose record and summary index claim a terabyte
/// of data leaves every message readable and is never allocated.
#[test]
fn an_attachment_claiming_a_terabyte_is_never_read() {
    use vigil_bus::embedded::recorder::SCHEMA_NAME;
    let d = dir("attachment");
    let file = d.join("attached.mcap");
    let msgs: Vec<_> = drive(10).into_iter().filter(|(t, _, _)| *t == topics::RADAR).collect();
    let mut w = mcap::Writer::new(std::io::BufWriter::new(std::fs::File::create(&file).unwrap())).unwrap();
    let schema = w.add_schema(SCHEMA_NAME, "protobuf", vigil_proto::FILE_DESCRIPTOR_SET).unwrap();
    let channel = w.add_channel(schema, topics::RADAR, "protobuf", &Default::default()).unwrap();
    for (seq, (_, t, bytes)) in msgs.iter().enumerate() {
        let h = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: seq as u32,
            log_time: *t as u64,
            publish_time: *t as u64,
        };
        w.write_to_known_channel(&h, bytes).unwrap();
    }
    let data = [7u8; 16];
    let attachment = mcap::Attachment {
        log_time: 0,
        create_time: 0,
        name: "notes.bin".into(),
        media_type: "application/octet-stream".into(),
        data: std::borrow::Cow::Borrowed(&data),
    };
    w.attach(&attachment).unwrap();
    w.finish().unwrap();
    drop(w);
    let mut bytes = std::fs::read(&file).unwrap();
    let tera = (1u64 << 40).to_le_bytes();
    // Attachment: log time, create time, name, media type, then the data's length.
    let a = first_record(&bytes, 0x09) + 9;
    let str_len = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let name_end = a + 16 + 4 + str_len(a + 16);
    let data_len_at = name_end + 4 + str_len(name_end);
    assert_eq!(u64::from_le_bytes(bytes[data_len_at..data_len_at + 8].try_into().unwrap()), 16);
    bytes[data_len_at..data_len_at + 8].copy_from_slice(&tera);
    // Its index in the summary: offset, then the record's length and, after two times,
    // the data size.
    let i = first_record(&bytes, 0x0a) + 9;
    bytes[i + 8..i + 16].copy_from_slice(&tera);
    bytes[i + 32..i + 40].copy_from_slice(&tera);
    std::fs::write(&file, &bytes).unwrap();
    let got = read(std::slice::from_ref(&file));
    assert_eq!(got.len(), msgs.len(), "every message reads back");
    let _ = std::fs::remove_dir_all(d);
}
