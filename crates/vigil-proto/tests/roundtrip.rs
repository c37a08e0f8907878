//! Property-based round trips for every vigil.v1 message, and the strict decoder's
//! typed errors on bad bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use vigil_proto::v1::{self, envelope::Payload};
use vigil_proto::{DecodeError, Limits, POINT_STRIDE, SCHEMA_VERSION, content_type, decode_envelope, encode_envelope};

fn s() -> impl Strategy<Value = String> {
    "[a-z0-9/_-]{0,24}"
}
fn f() -> impl Strategy<Value = f64> {
    -1e6f64..1e6
}
fn f32s() -> impl Strategy<Value = f32> {
    -1e4f32..1e4
}

fn pose() -> impl Strategy<Value = v1::Pose> {
    (f(), f(), f(), f(), f(), f()).prop_map(|(x, y, z, roll, pitch, yaw)| v1::Pose { x, y, z, roll, pitch, yaw })
}
fn blob() -> impl Strategy<Value = v1::BlobRef> {
    (s(), any::<u64>(), "[0-9a-f]{64}").prop_map(|(uri, size, sha256)| v1::BlobRef { uri, size, sha256 })
}
fn layout() -> impl Strategy<Value = v1::FrameLayout> {
    (0u32..=8192, 0u32..=8192, 0i32..3).prop_map(|(width, height, encoding)| v1::FrameLayout {
        width,
        height,
        encoding,
    })
}
fn box2d() -> impl Strategy<Value = v1::Box2d> {
    (f32s(), f32s(), f32s(), f32s()).prop_map(|(x_min, y_min, x_max, y_max)| v1::Box2d { x_min, y_min, x_max, y_max })
}
fn lidar() -> impl Strategy<Value = v1::LidarScan> {
    (proptest::option::of(pose()), 1u32..64, 1u32..2048, prop::collection::vec(any::<u8>(), 0..40)).prop_map(
        |(sensor_pose, beams, columns, seed)| {
            let n = seed.len();
            let mut points = Vec::with_capacity(n * POINT_STRIDE);
            for (i, b) in seed.iter().enumerate() {
                vigil_proto::pack_point(&mut points, *b as f32, i as f32, -(*b as f32), 0.5, i as u16);
            }
            v1::LidarScan { sensor_pose, beams, columns, point_count: n as u32, points, encoding: 0 }
        },
    )
}
fn camera() -> impl Strategy<Value = v1::CameraFrame> {
    (1u32..16, 1u32..16, proptest::option::of(pose()), any::<bool>(), blob(), (f(), f(), f(), f())).prop_map(
        |(width, height, sensor_pose, inline, blob, (fx, fy, cx, cy))| {
            let (encoding, pixels) = if inline {
                let data = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
                (v1::PixelEncoding::Rgb8, v1::camera_frame::Pixels::Data(data))
            } else {
                (v1::PixelEncoding::Png, v1::camera_frame::Pixels::Blob(blob))
            };
            v1::CameraFrame {
                width,
                height,
                encoding: encoding as i32,
                intrinsics: Some(v1::CameraIntrinsics { fx, fy, cx, cy }),
                sensor_pose,
                pixels: Some(pixels),
            }
        },
    )
}
fn radar() -> impl Strategy<Value = v1::RadarScan> {
    (
        proptest::option::of(pose()),
        prop::collection::vec((f32s(), f32s(), f32s(), f32s(), f32s()), 0..20).prop_map(|v| {
            v.into_iter()
                .map(|(range, azimuth, elevation, range_rate, rcs)| v1::RadarDetection {
                    range,
                    azimuth,
                    elevation,
                    range_rate,
                    rcs,
                })
                .collect()
        }),
    )
        .prop_map(|(sensor_pose, detections)| v1::RadarScan { sensor_pose, detections })
}
fn class() -> impl Strategy<Value = i32> {
    0i32..7
}
fn ground_truth() -> impl Strategy<Value = v1::GroundTruth> {
    let object = (
        any::<u32>(),
        class(),
        (f(), f(), f(), f(), f(), f(), f()),
        f(),
        f(),
        proptest::option::of(box2d()),
        0f32..1.0,
    )
        .prop_map(|(object_id, class, (x, y, z, length, width, height, yaw), vx, vy, camera_box, occlusion)| {
            v1::GroundTruthObject {
                object_id,
                class,
                r#box: Some(v1::Box3d { x, y, z, length, width, height, yaw }),
                vx,
                vy,
                camera_box,
                occlusion,
            }
        });
    (s(), any::<u64>(), (f(), f(), f(), f(), f()), prop::collection::vec(object, 0..8)).prop_map(
        |(frame_sensor_id, frame_sequence, (x, y, speed, acceleration, yaw), objects)| v1::GroundTruth {
            frame_sensor_id,
            frame_sequence,
            ego: Some(v1::EgoState { x, y, speed, acceleration, yaw }),
            objects,
        },
    )
}
fn task() -> impl Strategy<Value = v1::ObstacleTask> {
    let track = (any::<u32>(), f(), f(), f(), f(), f(), any::<bool>(), f(), any::<bool>(), any::<bool>()).prop_map(
        |(track_id, x, y, vx, vy, time_to_collision_s, closing, lateral_offset_m, seen_by_radar, seen_by_lidar)| {
            v1::TrackSummary {
                track_id,
                x,
                y,
                vx,
                vy,
                time_to_collision_s,
                closing,
                lateral_offset_m,
                seen_by_radar,
                seen_by_lidar,
            }
        },
    );
    (
        "[a-z0-9-]{1,36}",
        0u32..10,
        any::<i64>(),
        s(),
        any::<u64>(),
        proptest::option::of(blob()),
        proptest::option::of(box2d()),
        proptest::option::of(track),
        s(),
        (any::<bool>(), any::<bool>(), any::<u32>(), proptest::option::of(layout())),
    )
        .prop_map(
            |(
                task_id,
                priority,
                deadline_ns,
                frame_sensor_id,
                frame_sequence,
                frame_ref,
                camera_box,
                track,
                reply_to,
                (left_lane_free, right_lane_free, attempt, frame_layout),
            )| v1::ObstacleTask {
                task_id,
                priority,
                deadline_ns,
                frame_sensor_id,
                frame_sequence,
                frame_ref,
                camera_box,
                track,
                reply_to,
                left_lane_free,
                right_lane_free,
                attempt,
                frame_layout,
            },
        )
}
fn recommendation() -> impl Strategy<Value = v1::Recommendation> {
    (
        "[a-z0-9-]{1,36}",
        0i32..7,
        0f32..1.0,
        class(),
        prop::collection::vec((class(), 0f32..1.0), 0..6),
        (s(), s(), s(), s()),
        any::<i64>(),
    )
        .prop_map(
            |(
                task_id,
                action,
                confidence,
                class,
                scores,
                (model_name, model_version, device, worker_id),
                inference_ns,
            )| {
                v1::Recommendation {
                    task_id,
                    action,
                    confidence,
                    class,
                    scores: scores
                        .into_iter()
                        .map(|(class, probability)| v1::ClassScore { class, probability })
                        .collect(),
                    model_name,
                    model_version,
                    device,
                    worker_id,
                    inference_ns,
                }
            },
        )
}

fn envelope(payload: impl Strategy<Value = Payload>) -> impl Strategy<Value = v1::Envelope> {
    ("[a-z0-9-]{1,16}", s(), any::<u64>(), any::<i64>(), any::<i64>(), s(), payload).prop_map(
        |(vehicle_id, sensor_id, sequence, capture_time_ns, publish_time_ns, correlation_id, payload)| {
            let header = v1::Header {
                schema_version: SCHEMA_VERSION,
                vehicle_id,
                sensor_id,
                sequence,
                capture_time_ns,
                publish_time_ns,
                correlation_id,
                content_type: content_type(&payload).to_string(),
            };
            v1::Envelope { header: Some(header), payload: Some(payload) }
        },
    )
}

fn round_trip(env: &v1::Envelope) {
    let bytes = encode_envelope(env);
    let back = decode_envelope(&bytes).expect("a valid envelope decodes");
    assert_eq!(&back, env);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn lidar_round_trips(env in envelope(lidar().prop_map(Payload::Lidar))) { round_trip(&env) }
    #[test]
    fn camera_round_trips(env in envelope(camera().prop_map(Payload::Camera))) { round_trip(&env) }
    #[test]
    fn radar_round_trips(env in envelope(radar().prop_map(Payload::Radar))) { round_trip(&env) }
    #[test]
    fn ground_truth_round_trips(env in envelope(ground_truth().prop_map(Payload::GroundTruth))) { round_trip(&env) }
    #[test]
    fn task_round_trips(env in envelope(task().prop_map(Payload::ObstacleTask))) { round_trip(&env) }
    #[test]
    fn recommendation_round_trips(env in envelope(recommendation().prop_map(Payload::Recommendation))) { round_trip(&env) }

    /// Any prefix of a valid envelope is either rejected with a typed error or (rarely,
    /// when the cut falls on a field boundary) decodes to something valid; never a panic.
    #[test]
    fn truncation_never_panics(env in envelope(radar().prop_map(Payload::Radar)), cut in 0usize..4096) {
        let bytes = encode_envelope(&env);
        let cut = cut.min(bytes.len());
        let _ = decode_envelope(&bytes[..cut]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_envelope(&bytes);
    }

    /// Compact lidar points: any planes zstd holds decode to `n` points; other bytes are
    /// a typed error.
    #[test]
    fn arbitrary_compact_points_never_panic(planes in prop::collection::vec(any::<u8>(), 0..720), n in 0usize..64) {
        let _ = vigil_proto::points::decode_points(&planes, n);
        let packed = zstd::bulk::compress(&planes, 1).unwrap();
        let back = vigil_proto::points::decode_points(&packed, planes.len() / vigil_proto::POINT_STRIDE);
        prop_assert_eq!(back.map(|p| p.len()).ok(), (planes.len() % vigil_proto::POINT_STRIDE == 0).then_some(planes.len()));
    }
}

fn sample() -> v1::Envelope {
    let payload = Payload::Radar(v1::RadarScan {
        sensor_pose: None,
        detections: vec![v1::RadarDetection { range: 10.0, azimuth: 0.1, elevation: 0.0, range_rate: -3.0, rcs: 5.0 }],
    });
    v1::Envelope {
        header: Some(v1::Header {
            schema_version: SCHEMA_VERSION,
            vehicle_id: "veh-0000".into(),
            sensor_id: "radar/front".into(),
            sequence: 3,
            capture_time_ns: 1,
            publish_time_ns: 2,
            correlation_id: "c".into(),
            content_type: content_type(&payload).into(),
        }),
        payload: Some(payload),
    }
}

#[test]
fn wrong_schema_version_is_a_typed_error() {
    let mut env = sample();
    env.header.as_mut().unwrap().schema_version = 2;
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert_eq!(err, DecodeError::SchemaVersion { found: 2, expected: 1 });
    assert!(err.to_string().contains("upgrade"), "{err}");
}

#[test]
fn truncated_bytes_are_malformed() {
    let bytes = encode_envelope(&sample());
    let err = decode_envelope(&bytes[..bytes.len() - 3]).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode_envelope(&sample());
    // A repeated header field: valid protobuf that merges, but not what was sent.
    bytes.extend_from_slice(&[0x0a, 0x02, 0x08, 0x01]);
    let err = decode_envelope(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::TrailingBytes { .. }), "{err:?}");
}

#[test]
fn oversize_fields_are_rejected() {
    let mut env = sample();
    env.header.as_mut().unwrap().vehicle_id = "v".repeat(10_000);
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert!(matches!(err, DecodeError::Oversize { field: "header.vehicle_id", .. }), "{err:?}");

    let mut env = sample();
    if let Some(Payload::Radar(r)) = env.payload.as_mut() {
        r.detections = vec![v1::RadarDetection::default(); 5000];
    }
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert!(matches!(err, DecodeError::Oversize { field: "radar.detections", .. }), "{err:?}");

    let bytes = encode_envelope(&sample());
    let limits = Limits { max_message_bytes: 8, ..Limits::default() };
    let err = vigil_proto::decode_envelope_with(&bytes, &limits).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }), "{err:?}");
}

#[test]
fn non_finite_numbers_are_rejected() {
    let mut env = sample();
    if let Some(Payload::Radar(r)) = env.payload.as_mut() {
        r.detections[0].range = f32::NAN;
    }
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "radar.detections", .. }), "{err:?}");
    let mut points = Vec::new();
    vigil_proto::pack_point(&mut points, 1.0, f32::INFINITY, 0.0, 0.1, 0);
    let mut env = sample();
    env.payload = Some(Payload::Lidar(v1::LidarScan { point_count: 1, points, ..Default::default() }));
    env.header.as_mut().unwrap().content_type = content_type(env.payload.as_ref().unwrap()).into();
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "lidar.points", .. }), "{err:?}");
}

#[test]
fn inconsistent_payloads_are_rejected() {
    let mut env = sample();
    env.payload = Some(Payload::Lidar(v1::LidarScan { point_count: 2, points: vec![0; 5], ..Default::default() }));
    env.header.as_mut().unwrap().content_type = content_type(env.payload.as_ref().unwrap()).into();
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "lidar.points", .. }), "{err:?}");

    let mut env = sample();
    env.header.as_mut().unwrap().content_type = "text/plain".into();
    let err = decode_envelope(&encode_envelope(&env)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidField { field: "header.content_type", .. }), "{err:?}");

    let mut env = sample();
    env.header = None;
    assert_eq!(decode_envelope(&encode_envelope(&env)).unwrap_err(), DecodeError::MissingHeader);
    let mut env = sample();
    env.payload = None;
    assert_eq!(decode_envelope(&encode_envelope(&env)).unwrap_err(), DecodeError::MissingPayload);
}
