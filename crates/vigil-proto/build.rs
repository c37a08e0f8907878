//! Compiles `proto/vigil/v1/*.proto` with protox (pure Rust, no protoc needed) and prost.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files =
        ["envelope.proto", "sensors.proto", "tasks.proto", "groundtruth.proto"].map(|f| root.join("vigil/v1").join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptor set is embedded so recorders (MCAP) can ship the schema with the data.
    std::fs::write(out.join("vigil_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
