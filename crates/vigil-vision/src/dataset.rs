//! The dataset directory format, shared by `vigil train --dataset` and replay export.
//!
//! ```text
//! DIR/labels.jsonl   one JSON object per crop (see `Label`)
//! DIR/crops/*.png    RGB crops; 48×48 is native, other sizes are resampled
//! ```

use std::io::{BufRead, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use vigil_core::ObstacleClass;

use crate::preprocess::{Crop, INPUT_SIZE, crop, from_rgb8, to_rgb8};
use crate::train::Example;
use crate::{Result, VisionError};

/// One line of `labels.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// Path of the crop, relative to the dataset directory.
    pub file: String,
    /// pedestrian, cyclist, vehicle, debris, animal or none.
    pub class: String,
    /// Where the label comes from: "simulator", "ground_truth" or "recommendation".
    pub source: String,
    /// Training weight (e.g. > 1 for misses and deadline breaches).
    #[serde(default = "one")]
    pub weight: f32,
    /// Free-form flags: "miss", "deadline_breach", "false_alarm", …
    #[serde(default)]
    pub flags: Vec<String>,
    /// Provenance: drive, vehicle, frame, seed, scenario…
    #[serde(default)]
    pub provenance: serde_json::Map<String, serde_json::Value>,
}

fn one() -> f32 {
    1.0
}

fn ds_err(path: &Path, reason: impl Into<String>) -> VisionError {
    VisionError::Dataset { path: path.display().to_string(), reason: reason.into() }
}

/// Writes crops and their labels (file names are assigned: crops/NNNNNN.png).
pub fn write(dir: &Path, items: &[(Crop, Label)]) -> Result<()> {
    let mut w = DatasetWriter::create(dir)?;
    for (c, label) in items {
        w.push(c, label)?;
    }
    w.finish().map(|_| ())
}

/// A dataset written one crop at a time, so a writer holds no crop it has written.
#[derive(Debug)]
pub struct DatasetWriter {
    dir: std::path::PathBuf,
    labels: std::io::BufWriter<std::fs::File>,
    written: usize,
}

impl DatasetWriter {
    /// Creates `dir/crops/` and `dir/labels.jsonl` (replacing a labels file there).
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("crops")).map_err(|e| ds_err(dir, e.to_string()))?;
        let labels = std::fs::File::create(dir.join("labels.jsonl")).map_err(|e| ds_err(dir, e.to_string()))?;
        Ok(Self { dir: dir.to_path_buf(), labels: std::io::BufWriter::new(labels), written: 0 })
    }

    /// Writes one crop as the next `crops/NNNNNN.png` and its label line.
    pub fn push(&mut self, c: &Crop, label: &Label) -> Result<()> {
        let file = format!("crops/{:06}.png", self.written);
        let path = self.dir.join(&file);
        let f = std::fs::File::create(&path).map_err(|e| ds_err(&path, e.to_string()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), INPUT_SIZE as u32, INPUT_SIZE as u32);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().map_err(|e| ds_err(&path, e.to_string()))?;
        w.write_image_data(&to_rgb8(c)).map_err(|e| ds_err(&path, e.to_string()))?;
        w.finish().map_err(|e| ds_err(&path, e.to_string()))?;
        let line = Label { file, ..label.clone() };
        let json = serde_json::to_string(&line).map_err(|e| ds_err(&self.dir, e.to_string()))?;
        writeln!(self.labels, "{json}").map_err(|e| ds_err(&self.dir, e.to_string()))?;
        self.written += 1;
        Ok(())
    }

    /// Flushes the labels; returns how many crops were written.
    pub fn finish(mut self) -> Result<usize> {
        self.labels.flush().map_err(|e| ds_err(&self.dir, e.to_string()))?;
        Ok(self.written)
    }
}

/// The biggest decoded crop image, bytes (a crop is 64 × 64 or a little more).
const MAX_PNG_BYTES: usize = 16 << 20;
/// The longest line of `labels.jsonl`, bytes.
const MAX_LABEL_LINE: usize = 64 << 10;

/// The lines of a labels file, each at most [`MAX_LABEL_LINE`] bytes: a file with no
/// newline is an error at that bound, not a read of the whole file into one string.
fn label_lines(r: impl BufRead) -> impl Iterator<Item = std::io::Result<String>> {
    let mut r = r;
    std::iter::from_fn(move || {
        let mut buf = Vec::new();
        match (&mut r).take(MAX_LABEL_LINE as u64 + 1).read_until(b'\n', &mut buf) {
            Ok(0) => None,
            Ok(_) if buf.len() > MAX_LABEL_LINE => Some(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line over {MAX_LABEL_LINE} bytes (one JSON object per line)"),
            ))),
            Ok(_) => Some(String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))),
            Err(e) => Some(Err(e)),
        }
    })
}

fn read_png(path: &Path) -> Result<(Vec<u8>, u32, u32)> {
    let f = std::fs::File::open(path).map_err(|e| ds_err(path, e.to_string()))?;
    // A crop is small; a PNG header may claim any size, so the decoder is bounded.
    let mut dec = png::Decoder::new_with_limits(std::io::BufReader::new(f), png::Limits { bytes: MAX_PNG_BYTES });
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(|e| ds_err(path, format!("not a PNG: {e}")))?;
    let size = reader.output_buffer_size().unwrap_or(usize::MAX);
    if size > MAX_PNG_BYTES {
        let (w, h) = (reader.info().width, reader.info().height);
        return Err(ds_err(path, format!("a {w} x {h} image, over the limit of {MAX_PNG_BYTES} bytes for a crop")));
    }
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| ds_err(path, format!("corrupt PNG: {e}")))?;
    let (w, h) = (info.width, info.height);
    let px = w as usize * h as usize;
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf[..px * 3].to_vec(),
        png::ColorType::Rgba => buf[..px * 4].chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf[..px].iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf[..px * 2].chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        other => return Err(ds_err(path, format!("unsupported PNG colour type {other:?}"))),
    };
    Ok((rgb, w, h))
}

/// The distinct drive ids in a dataset's `provenance.drive` fields, sorted (lineage).
pub fn drives(dir: &Path) -> Result<Vec<String>> {
    let labels_path = dir.join("labels.jsonl");
    let f = std::fs::File::open(&labels_path).map_err(|e| ds_err(&labels_path, e.to_string()))?;
    let mut out = std::collections::BTreeSet::new();
    for (n, line) in label_lines(std::io::BufReader::new(f)).enumerate() {
        let line = line.map_err(|e| ds_err(&labels_path, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let label: Label =
            serde_json::from_str(&line).map_err(|e| ds_err(&labels_path, format!("line {}: {e}", n + 1)))?;
        if let Some(d) = label.provenance.get("drive").and_then(|d| d.as_str()) {
            out.insert(d.to_string());
        }
    }
    Ok(out.into_iter().collect())
}

/// Reads a dataset directory into training examples.
pub fn read(dir: &Path) -> Result<Vec<Example>> {
    let labels_path = dir.join("labels.jsonl");
    let f = std::fs::File::open(&labels_path)
        .map_err(|e| ds_err(&labels_path, format!("{e} (a dataset is DIR/labels.jsonl plus DIR/crops/*.png)")))?;
    let mut out = Vec::new();
    for (n, line) in label_lines(std::io::BufReader::new(f)).enumerate() {
        let line = line.map_err(|e| ds_err(&labels_path, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |reason: String| ds_err(&labels_path, format!("line {}: {reason}", n + 1));
        let label: Label = serde_json::from_str(&line).map_err(|e| at(e.to_string()))?;
        let class =
            ObstacleClass::from_name(&label.class).ok_or_else(|| at(format!("unknown class {:?}", label.class)))?;
        if !(label.weight.is_finite() && label.weight > 0.0) {
            return Err(at(format!("weight must be positive, found {}", label.weight)));
        }
        let (rgb, w, h) = read_png(&dir.join(&label.file)).map_err(|e| at(e.to_string()))?;
        let crop = if w as usize == INPUT_SIZE && h as usize == INPUT_SIZE {
            from_rgb8(&rgb)?
        } else {
            // Resample the whole image (no extra context).
            let s = 1.0 / crate::preprocess::CONTEXT;
            let side = w.max(h) as f32;
            let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
            crop(&rgb, w, h, [cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0], [0.0, 0.0], s)?
        };
        out.push(Example { crop, class, weight: label.weight });
    }
    if out.is_empty() {
        return Err(ds_err(&labels_path, "holds no labelled crops"));
    }
    Ok(out)
}
