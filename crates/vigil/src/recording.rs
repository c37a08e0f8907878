//! The recording options `vigil run`, `vigil sim` and `vigil record` share.

use clap::Args;
use vigil_bus::embedded::recorder::{CameraStorage, ChunkCompression, LidarStorage, RecordOptions};

/// How a recording is written.
#[derive(Debug, Clone, Args)]
pub struct RecordingArgs {
    /// MCAP chunk compression: zstd, lz4 or none.
    #[arg(long, default_value = "zstd", value_parser = parse_compression)]
    compression: ChunkCompression,
    /// How camera frames are stored: lossless (compact, a replay sees the bytes the
    /// vehicle saw), raw (RGB8 as it came), or near-lossless:N (every sample within N
    /// levels, smaller; a replay may decide differently).
    #[arg(long, default_value = "lossless", value_parser = parse_camera)]
    camera: CameraStorage,
    /// How lidar sweeps are stored: lossless (compact, a replay sees the points the
    /// vehicle saw) or raw (packed points as they came).
    #[arg(long, default_value = "lossless", value_parser = parse_lidar)]
    lidar: LidarStorage,
    /// Split the recording into parts of about this size (e.g. 512MiB, 2GB); the
    /// recording is then a directory of parts.
    #[arg(long, value_parser = parse_size)]
    split_size: Option<u64>,
    /// Split the recording into parts spanning this much capture time (e.g. 60s, 5min).
    #[arg(long, value_parser = parse_duration)]
    split_duration: Option<std::time::Duration>,
    /// Leave out the `foxglove.*` channels (point cloud, camera JPEG at 2 Hz, ground-truth
    /// boxes, recommendations as log lines) that Foxglove and Lichtblick draw.
    #[arg(long)]
    no_viewer_channels: bool,
}

fn parse_camera(s: &str) -> Result<CameraStorage, String> {
    s.parse()
}

fn parse_lidar(s: &str) -> Result<LidarStorage, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<ChunkCompression, String> {
    s.parse()
}

/// `123`, `64KB`, `512MiB`, `2G`: decimal (k, M, G) or binary (KiB, MiB, GiB) units.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size (e.g. 512MiB, 2GB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        u => return Err(format!("`{u}` in `{s}` is not a size unit (B, kB, MB, GB, KiB, MiB, GiB)")),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("`{s}` is not a positive size"));
    }
    Ok(bytes as u64)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration (e.g. 60s, 5min): {e}"))
}

impl RecordingArgs {
    pub fn options(&self) -> RecordOptions {
        RecordOptions {
            compression: self.compression,
            camera: self.camera,
            lidar: self.lidar,
            split_bytes: self.split_size,
            split_ns: self.split_duration.map(|d| d.as_nanos().min(i64::MAX as u128) as i64),
            viewer: !self.no_viewer_channels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units_and_bad_ones_say_why() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("64kB").unwrap(), 64_000);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        assert!(parse_size("ten").unwrap_err().contains("not a size"));
        assert!(parse_size("10 parsecs").unwrap_err().contains("not a size unit"));
        assert!(parse_size("0").is_err());
    }
}
