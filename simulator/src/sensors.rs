//! Sensor configurations (CARLA-like defaults, every field overridable from a scenario).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSuite {
    pub lidar: LidarConfig,
    pub camera: CameraConfig,
    pub radar: RadarConfig,
}

/// Mount position in the vehicle frame (x forward, y left, z up; metres from the
/// centre of the vehicle footprint, on the ground).
pub type Mount = [f64; 3];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LidarConfig {
    pub enabled: bool,
    pub name: String,
    pub rate_hz: f64,
    pub beams: u32,
    pub columns: u32,
    pub range_m: f64,
    pub upper_fov_deg: f64,
    pub lower_fov_deg: f64,
    pub range_noise_m: f64,
    /// Probability that a return is lost.
    pub dropout: f64,
    pub mount: Mount,
}

impl Default for LidarConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "top".into(),
            rate_hz: 10.0,
            beams: 32,
            columns: 1024,
            range_m: 100.0,
            upper_fov_deg: 10.0,
            lower_fov_deg: -30.0,
            range_noise_m: 0.02,
            dropout: 0.02,
            mount: [0.0, 0.0, 1.9],
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CameraConfig {
    pub enabled: bool,
    pub name: String,
    pub rate_hz: f64,
    pub width: u32,
    pub height: u32,
    /// Horizontal field of view; the focal length follows (square pixels).
    pub hfov_deg: f64,
    pub mount: Mount,
}

impl Default for CameraConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "front".into(),
            rate_hz: 20.0,
            width: 640,
            height: 360,
            hfov_deg: 60.0,
            mount: [1.6, 0.0, 1.4],
        }
    }
}

impl CameraConfig {
    /// Focal length in pixels.
    pub fn focal(&self) -> f64 {
        self.width as f64 / 2.0 / (self.hfov_deg.to_radians() / 2.0).tan()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RadarConfig {
    pub enabled: bool,
    pub name: String,
    pub rate_hz: f64,
    pub range_m: f64,
    pub hfov_deg: f64,
    pub vfov_deg: f64,
    pub range_noise_m: f64,
    pub azimuth_noise_deg: f64,
    pub range_rate_noise_mps: f64,
    /// Probability that an object in view gives no detection in a scan.
    pub miss_probability: f64,
    pub mount: Mount,
}

impl Default for RadarConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            name: "front".into(),
            rate_hz: 20.0,
            range_m: 150.0,
            hfov_deg: 90.0,
            vfov_deg: 20.0,
            range_noise_m: 0.25,
            azimuth_noise_deg: 0.6,
            range_rate_noise_mps: 0.12,
            miss_probability: 0.05,
            mount: [2.2, 0.0, 0.6],
        }
    }
}

fn check(ok: bool, field: &str, problem: String) -> Result<(), (String, String)> {
    if ok { Ok(()) } else { Err((field.to_string(), problem)) }
}

impl SensorSuite {
    /// Checks ranges; errors as (field path, problem).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let l = &self.lidar;
        let rate = |f: &str, r: f64| {
            check(r.is_finite() && r > 0.0 && r <= 1000.0, f, format!("must be in (0, 1000] Hz, found {r}"))
        };
        rate("lidar.rate_hz", l.rate_hz)?;
        check((1..=256).contains(&l.beams), "lidar.beams", format!("must be 1..=256, found {}", l.beams))?;
        check((8..=8192).contains(&l.columns), "lidar.columns", format!("must be 8..=8192, found {}", l.columns))?;
        check(
            l.range_m > 0.0 && l.range_m <= 1000.0,
            "lidar.range_m",
            format!("must be in (0, 1000], found {}", l.range_m),
        )?;
        check(
            l.lower_fov_deg < l.upper_fov_deg && l.lower_fov_deg >= -89.0 && l.upper_fov_deg <= 89.0,
            "lidar.lower_fov_deg",
            format!("needs -89 <= lower < upper <= 89, found {} .. {}", l.lower_fov_deg, l.upper_fov_deg),
        )?;
        check((0.0..1.0).contains(&l.dropout), "lidar.dropout", format!("must be in [0, 1), found {}", l.dropout))?;
        check(l.range_noise_m >= 0.0, "lidar.range_noise_m", format!("must be >= 0, found {}", l.range_noise_m))?;
        let c = &self.camera;
        rate("camera.rate_hz", c.rate_hz)?;
        check((16..=4096).contains(&c.width), "camera.width", format!("must be 16..=4096, found {}", c.width))?;
        check((16..=4096).contains(&c.height), "camera.height", format!("must be 16..=4096, found {}", c.height))?;
        check(
            c.hfov_deg > 10.0 && c.hfov_deg < 170.0,
            "camera.hfov_deg",
            format!("must be in (10, 170), found {}", c.hfov_deg),
        )?;
        check(c.mount[2] > 0.1, "camera.mount", format!("camera height must be above 0.1 m, found {}", c.mount[2]))?;
        let r = &self.radar;
        rate("radar.rate_hz", r.rate_hz)?;
        check(
            r.range_m > 0.0 && r.range_m <= 1000.0,
            "radar.range_m",
            format!("must be in (0, 1000], found {}", r.range_m),
        )?;
        check(
            r.hfov_deg > 0.0 && r.hfov_deg <= 180.0,
            "radar.hfov_deg",
            format!("must be in (0, 180], found {}", r.hfov_deg),
        )?;
        check(
            (0.0..1.0).contains(&r.miss_probability),
            "radar.miss_probability",
            format!("must be in [0, 1), found {}", r.miss_probability),
        )?;
        Ok(())
    }
}
