//! Recordings are user input: any bytes, read as an MCAP recording, must give messages
//! or a typed error naming the file, never a panic or an allocation of what a damaged
//! length claims.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("vigil-fuzz-{}.mcap", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(rec) = vigil_bus::embedded::playback::Recording::open(std::slice::from_ref(&path)) {
        for m in rec.messages(None, None, None).take(10_000) {
            if m.is_err() {
                break;
            }
        }
    }
});
