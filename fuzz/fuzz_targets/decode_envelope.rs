//! Coverage-guided fuzzing of the strict envelope decoder: any bytes must give a value
//! or a typed error, never a panic. Whatever decodes must survive a re-encode and decode
//! unchanged (field order on the wire may differ: protobuf allows any order). Compact
//! camera and lidar data in it decodes or is a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vigil_proto::points::expand_lidar(data);
    let _ = vigil_proto::pixels::expand_camera(data);
    if let Ok(envelope) = vigil_proto::decode_envelope(data) {
        let again = vigil_proto::encode_envelope(&envelope);
        assert_eq!(again.len(), data.len());
        assert_eq!(vigil_proto::decode_envelope(&again).as_ref(), Ok(&envelope));
    }
});
