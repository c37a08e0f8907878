//! Cutting a model input out of a camera frame.

use crate::{Result, VisionError};

/// Side of the square model input, pixels.
pub const INPUT_SIZE: usize = 48;
/// Context around the box: the crop side is this multiple of the box's longer side.
pub const CONTEXT: f32 = 1.2;
/// Per-channel normalisation applied after scaling to 0..1.
pub const MEAN: [f32; 3] = [0.45, 0.46, 0.47];
pub const STD: [f32; 3] = [0.25, 0.25, 0.26];

/// A model input: 3 × INPUT_SIZE × INPUT_SIZE normalised floats, channel-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop(pub Vec<f32>);

/// Cuts a square crop centred on `bbox` (x_min, y_min, x_max, y_max) from an RGB8 frame,
/// with context, resampled bilinearly to INPUT_SIZE², edge pixels repeated outside the
/// frame. `shift` moves the centre and `scale` the side (augmentation; 0 and 1 for none).
pub fn crop(pixels: &[u8], width: u32, height: u32, bbox: [f32; 4], shift: [f32; 2], scale: f32) -> Result<Crop> {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || pixels.len() != w * h * 3 {
        return Err(VisionError::Io(format!(
            "frame of {width}x{height} needs {} rgb8 bytes, got {}",
            w * h * 3,
            pixels.len()
        )));
    }
    if !bbox.iter().all(|v| v.is_finite()) || bbox[2] <= bbox[0] || bbox[3] <= bbox[1] {
        return Err(VisionError::Io(format!("box {bbox:?} is empty or not finite")));
    }
    let side = (bbox[2] - bbox[0]).max(bbox[3] - bbox[1]) * CONTEXT * scale;
    let cx = (bbox[0] + bbox[2]) / 2.0 + shift[0] * side;
    let cy = (bbox[1] + bbox[3]) / 2.0 + shift[1] * side;
    let step = side / INPUT_SIZE as f32;
    let n = INPUT_SIZE * INPUT_SIZE;
    let mut out = vec![0f32; 3 * n];
    let px = |x: usize, y: usize, c: usize| pixels[(y * w + x) * 3 + c] as f32;
    for j in 0..INPUT_SIZE {
        let sy = (cy - side / 2.0 + (j as f32 + 0.5) * step - 0.5).clamp(0.0, (h - 1) as f32);
        let (y0, fy) = (sy as usize, sy.fract());
        let y1 = (y0 + 1).min(h - 1);
        for i in 0..INPUT_SIZE {
            let sx = (cx - side / 2.0 + (i as f32 + 0.5) * step - 0.5).clamp(0.0, (w - 1) as f32);
            let (x0, fx) = (sx as usize, sx.fract());
            let x1 = (x0 + 1).min(w - 1);
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                let bottom = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                let v = (top * (1.0 - fy) + bottom * fy) / 255.0;
                out[c * n + j * INPUT_SIZE + i] = (v - MEAN[c]) / STD[c];
            }
        }
    }
    Ok(Crop(out))
}

/// The crop back as RGB8 pixels (for dataset export and pictures).
pub fn to_rgb8(crop: &Crop) -> Vec<u8> {
    let n = INPUT_SIZE * INPUT_SIZE;
    let mut out = vec![0u8; 3 * n];
    for p in 0..n {
        for c in 0..3 {
            let v = crop.0.get(c * n + p).copied().unwrap_or(0.0) * STD[c] + MEAN[c];
            out[p * 3 + c] = (v * 255.0).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// An RGB8 image of INPUT_SIZE² pixels back as a model input.
pub fn from_rgb8(rgb: &[u8]) -> Result<Crop> {
    let n = INPUT_SIZE * INPUT_SIZE;
    if rgb.len() != 3 * n {
        return Err(VisionError::CropSize { index: 0, found: rgb.len() / 3, expected: n, size: INPUT_SIZE });
    }
    let mut out = vec![0f32; 3 * n];
    for p in 0..n {
        for c in 0..3 {
            out[c * n + p] = (rgb[p * 3 + c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Ok(Crop(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_of_uniform_frame_is_uniform_and_round_trips() {
        let (w, h) = (64u32, 40u32);
        let pixels = vec![128u8; (w * h * 3) as usize];
        let c = crop(&pixels, w, h, [10.0, 10.0, 30.0, 30.0], [0.0, 0.0], 1.0).unwrap();
        assert_eq!(c.0.len(), 3 * INPUT_SIZE * INPUT_SIZE);
        let rgb = to_rgb8(&c);
        assert!(rgb.iter().all(|&v| v == 128));
        assert_eq!(from_rgb8(&rgb).unwrap().0.len(), c.0.len());
    }

    #[test]
    fn bad_frames_and_boxes_are_errors() {
        assert!(crop(&[0; 10], 64, 40, [0.0, 0.0, 5.0, 5.0], [0.0, 0.0], 1.0).is_err());
        let pixels = vec![0u8; 64 * 40 * 3];
        assert!(crop(&pixels, 64, 40, [5.0, 5.0, 5.0, 9.0], [0.0, 0.0], 1.0).is_err());
        assert!(crop(&pixels, 64, 40, [f32::NAN, 5.0, 6.0, 9.0], [0.0, 0.0], 1.0).is_err());
    }
}
