//! Camera pixels stored compactly: `PIXEL_ENCODING_RGB8_ZSTD`, lossless by default.
//!
//! A camera image is mostly smooth shading plus sensor noise that the three channels
//! share. Each sample is predicted from its left, upper and upper-left neighbours (the
//! median edge detector of LOCO-I / JPEG-LS); red and blue add green's own prediction
//! error at the same pixel (the noise they share), and the residuals go to zstd. The
//! data's first byte is the bound on each sample's error: 0 is lossless and decoding
//! gives back the very bytes the vehicle saw; `n > 0` is JPEG-LS's near-lossless mode,
//! every sample within `n` levels of the original (residuals quantised in steps of
//! `2n + 1`, predicted from the reconstruction so errors do not add up).

use crate::v1::{self, envelope::Payload};

/// Why compact pixels could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PixelError {
    #[error("compact pixels: {0} (the recording or frame store holds a damaged camera frame)")]
    Corrupt(String),
    #[error("compact pixels: a {width}x{height} image is over the {limit}-byte limit")]
    TooLarge { width: u32, height: u32, limit: usize },
}

/// The zstd level frames are written at: residuals are mostly literals, so higher
/// levels buy little and cost time on the vehicle.
pub const ZSTD_LEVEL: i32 = 1;

/// Largest decoded image accepted (bytes): the decode limits' 8192² would be 200 MB.
pub const MAX_DECODED_BYTES: usize = 64 << 20;

/// Largest near-lossless bound accepted.
pub const MAX_NEAR: u8 = 16;

/// The median edge detector: the median of `a` (left), `b` (up) and `a + b - c`
/// (c: up-left), without branches (noise makes them unpredictable).
#[inline(always)]
fn med(a: u8, b: u8, c: u8) -> u8 {
    let (a, b, c) = (a as i32, b as i32, c as i32);
    (a + b - c).clamp(a.min(b), a.max(b)) as u8
}

/// Codes or decodes images row by row. A sample is predicted from the reconstructed row
/// above and the reconstructed samples to its left; red's and blue's predictions add
/// green's prediction error at the same pixel (the noise the channels share).
#[derive(Clone, Copy)]
struct Coder {
    near: i32,
}

/// Planes in coding order (green, red, blue), each `w × h`.
type Planes = [Vec<u8>; 3];

impl Coder {
    #[inline(always)]
    fn reconstruct<const LOSSLESS: bool>(self, base: i32, r: u8) -> u8 {
        if LOSSLESS {
            (base as u8).wrapping_add(r)
        } else {
            (base + (r as i8) as i32 * (2 * self.near + 1)).clamp(0, 255) as u8
        }
    }

    #[inline(always)]
    fn residual<const LOSSLESS: bool>(self, base: i32, x: u8) -> u8 {
        if LOSSLESS {
            x.wrapping_sub(base as u8)
        } else {
            let e = x as i32 - base;
            let step = 2 * self.near + 1;
            let q = if e >= 0 { (e + self.near) / step } else { -((self.near - e) / step) };
            q as i8 as u8
        }
    }

    /// One row of the three planes, interleaved so their three chains of dependent
    /// samples run side by side. `ENCODE`: codes `rows` into `res` (and leaves the
    /// reconstruction in `rows`); else decodes `res` into `rows`. `ups`: the rows above
    /// (empty on the first row).
    #[inline(always)]
    fn rows<const ENCODE: bool, const LOSSLESS: bool>(
        self,
        rows: [&mut [u8]; 3],
        ups: [&[u8]; 3],
        res: [&mut [u8]; 3],
    ) {
        let [g, r, b] = rows;
        let w = g.len();
        let (r, b) = (&mut r[..w], &mut b[..w]);
        let [rg, rr, rb] = res;
        let (rg, rr, rb) = (&mut rg[..w], &mut rr[..w], &mut rb[..w]);
        let first = ups[0].len() < w;
        let mut left = [0u8; 3];
        for x in 0..w {
            let pred = |k: usize, left: u8| -> i32 {
                (match (x, first) {
                    (0, true) => 0,
                    (_, true) => left,
                    (0, false) => ups[k][0],
                    _ => med(left, ups[k][x], ups[k][x - 1]),
                }) as i32
            };
            let pg = pred(0, left[0]);
            if ENCODE {
                rg[x] = self.residual::<LOSSLESS>(pg, g[x]);
            }
            let gv = self.reconstruct::<LOSSLESS>(pg, rg[x]);
            g[x] = gv;
            left[0] = gv;
            let shared = gv as i32 - pg;
            let base = (pred(1, left[1]) + shared).clamp(0, 255);
            if ENCODE {
                rr[x] = self.residual::<LOSSLESS>(base, r[x]);
            }
            left[1] = self.reconstruct::<LOSSLESS>(base, rr[x]);
            r[x] = left[1];
            let base = (pred(2, left[2]) + shared).clamp(0, 255);
            if ENCODE {
                rb[x] = self.residual::<LOSSLESS>(base, b[x]);
            }
            left[2] = self.reconstruct::<LOSSLESS>(base, rb[x]);
            b[x] = left[2];
        }
    }

    /// Every row of the planes; `res` holds the residuals plane after plane.
    fn planes<const ENCODE: bool>(self, planes: &mut Planes, res: &mut [u8], w: usize, h: usize) {
        let n = w * h;
        if n == 0 {
            return;
        }
        let [p0, p1, p2] = planes;
        let (res0, rest) = res.split_at_mut(n);
        let (res1, res2) = rest.split_at_mut(n);
        for y in 0..h {
            let (d0, c0) = p0.split_at_mut(y * w);
            let (d1, c1) = p1.split_at_mut(y * w);
            let (d2, c2) = p2.split_at_mut(y * w);
            let from = if y == 0 { y * w } else { (y - 1) * w };
            let ups = [&d0[from..], &d1[from..], &d2[from..]];
            let rows = [&mut c0[..w], &mut c1[..w], &mut c2[..w]];
            let span = y * w..(y + 1) * w;
            let res = [&mut res0[span.clone()], &mut res1[span.clone()], &mut res2[span]];
            if self.near == 0 {
                self.rows::<ENCODE, true>(rows, ups, res);
            } else {
                self.rows::<ENCODE, false>(rows, ups, res);
            }
        }
    }
}

/// Channel planes in coding order: green, red, blue.
const ORDER: [usize; 3] = [1, 0, 2];

fn split_planes(rgb: &[u8], n: usize) -> Planes {
    let mut planes = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for (k, c) in ORDER.iter().enumerate() {
            planes[k][i] = px[*c];
        }
    }
    planes
}

/// Encodes a `width`×`height` RGB8 image (row-major, no padding), every sample within
/// `near` levels of the original (0: exactly).
pub fn encode_rgb8(rgb: &[u8], width: u32, height: u32, near: u8) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let n = w * h;
    debug_assert_eq!(rgb.len(), n * 3);
    let near = near.min(MAX_NEAR);
    let mut planes = split_planes(rgb, n);
    let mut res = vec![0u8; n * 3];
    Coder { near: near as i32 }.planes::<true>(&mut planes, &mut res, w, h);
    let mut data = vec![near];
    // Compressing an in-memory buffer cannot fail.
    data.extend(zstd::bulk::compress(&res, ZSTD_LEVEL).unwrap_or(res));
    data
}

/// Decodes what [`encode_rgb8`] wrote back to the RGB8 image.
pub fn decode_rgb8(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, PixelError> {
    let (w, h) = (width as usize, height as usize);
    let n = w.checked_mul(h).filter(|n| n.saturating_mul(3) <= MAX_DECODED_BYTES);
    let Some(n) = n else {
        return Err(PixelError::TooLarge { width, height, limit: MAX_DECODED_BYTES });
    };
    let Some((&near, body)) = data.split_first() else { return Err(PixelError::Corrupt("no data".into())) };
    if near > MAX_NEAR {
        return Err(PixelError::Corrupt(format!("error bound {near} is over {MAX_NEAR}")));
    }
    let mut res = zstd::bulk::decompress(body, n * 3).map_err(|e| PixelError::Corrupt(e.to_string()))?;
    if res.len() != n * 3 {
        return Err(PixelError::Corrupt(format!("{} bytes of residuals, {width}x{height} needs {}", res.len(), n * 3)));
    }
    let mut planes = [vec![0u8; n], vec![0u8; n], vec![0u8; n]];
    Coder { near: near as i32 }.planes::<false>(&mut planes, &mut res, w, h);
    let mut rgb = vec![0u8; n * 3];
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        for (k, c) in ORDER.iter().enumerate() {
            px[*c] = planes[k][i];
        }
    }
    Ok(rgb)
}

/// The first bytes of an RGB8 image packed for a store by [`pack_image`].
pub const PACKED_MAGIC: &[u8; 4] = b"VGZ1";

/// An RGB8 image packed to stand alone (a frame-store object): [`PACKED_MAGIC`], width
/// and height (u32 LE), then [`encode_rgb8`]'s bytes.
pub fn pack_image(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let body = encode_rgb8(rgb, width, height, 0);
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(PACKED_MAGIC);
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The RGB8 pixels of a [`pack_image`] object; `Ok(None)` when `bytes` are not one.
pub fn unpack_image(bytes: &[u8]) -> Result<Option<Vec<u8>>, PixelError> {
    if bytes.len() < 12 || &bytes[..4] != PACKED_MAGIC {
        return Ok(None);
    }
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    decode_rgb8(&bytes[12..], word(4), word(8)).map(Some)
}

/// Whether an encoded envelope carries a camera frame, from its header alone.
pub fn is_camera(envelope: &[u8]) -> bool {
    crate::header_of(envelope).is_some_and(|h| h.content_type.ends_with("type=vigil.v1.CameraFrame"))
}

/// The envelope with its inline RGB8 camera pixels encoded compactly; `None` when it is
/// not a camera envelope with inline RGB8 pixels (nothing to do) or cannot be read.
pub fn compact_camera(envelope: &[u8], near: u8) -> Option<Vec<u8>> {
    if !is_camera(envelope) {
        return None;
    }
    let mut env = crate::decode_envelope(envelope).ok()?;
    let Some(Payload::Camera(cam)) = env.payload.as_mut() else { return None };
    if cam.encoding != v1::PixelEncoding::Rgb8 as i32 {
        return None;
    }
    let Some(v1::camera_frame::Pixels::Data(px)) = cam.pixels.as_ref() else { return None };
    let packed = encode_rgb8(px, cam.width, cam.height, near);
    cam.pixels = Some(v1::camera_frame::Pixels::Data(packed));
    cam.encoding = v1::PixelEncoding::Rgb8Zstd as i32;
    Some(crate::encode_envelope(&env))
}

/// The envelope with compact camera pixels decoded back to RGB8 (losslessly compacted:
/// byte for byte the envelope [`compact_camera`] was given); `Ok(None)` when there is nothing to expand.
pub fn expand_camera(envelope: &[u8]) -> Result<Option<Vec<u8>>, PixelError> {
    if !is_camera(envelope) {
        return Ok(None);
    }
    let Ok(mut env) = crate::decode_envelope(envelope) else { return Ok(None) };
    let Some(Payload::Camera(cam)) = env.payload.as_mut() else { return Ok(None) };
    if cam.encoding != v1::PixelEncoding::Rgb8Zstd as i32 {
        return Ok(None);
    }
    let Some(v1::camera_frame::Pixels::Data(px)) = cam.pixels.as_ref() else { return Ok(None) };
    let rgb = decode_rgb8(px, cam.width, cam.height)?;
    cam.pixels = Some(v1::camera_frame::Pixels::Data(rgb));
    cam.encoding = v1::PixelEncoding::Rgb8 as i32;
    Ok(Some(crate::encode_envelope(&env)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                let n = (next() % 9) as i32 - 4;
                let base = [(x * 255 / w) as i32, (y * 255 / h) as i32, 128];
                base.map(|c| (c + n).clamp(0, 255) as u8)
            })
            .collect()
    }

    #[test]
    fn round_trips_exactly_and_is_smaller_than_raw() {
        for (w, h) in [(1, 1), (1, 7), (7, 1), (64, 36), (640, 360)] {
            let img = image(w, h, w + h);
            let enc = encode_rgb8(&img, w, h, 0);
            assert_eq!(decode_rgb8(&enc, w, h).unwrap(), img, "{w}x{h}");
            if w * h > 1000 {
                assert!(enc.len() * 2 < img.len(), "{w}x{h}: {} of {}", enc.len(), img.len());
            }
        }
    }

    #[test]
    fn near_lossless_keeps_every_sample_within_its_bound_and_is_smaller() {
        let img = image(640, 360, 5);
        let lossless = encode_rgb8(&img, 640, 360, 0).len();
        for near in [1u8, 2, 4] {
            let enc = encode_rgb8(&img, 640, 360, near);
            let back = decode_rgb8(&enc, 640, 360).unwrap();
            let worst = img.iter().zip(&back).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
            assert!(worst <= near as i32, "near {near}: a sample off by {worst}");
            assert!(enc.len() < lossless, "near {near}: {} bytes, lossless {lossless}", enc.len());
        }
    }

    #[test]
    fn packed_images_stand_alone_and_other_bytes_are_left_alone() {
        let img = image(40, 30, 9);
        let packed = pack_image(&img, 40, 30);
        assert_eq!(unpack_image(&packed).unwrap(), Some(img.clone()));
        assert_eq!(unpack_image(&img).unwrap(), None);
        assert!(unpack_image(&packed[..packed.len() - 3]).is_err());
    }

    #[test]
    fn damaged_or_mislabelled_data_is_an_error_not_a_panic() {
        let img = image(32, 16, 3);
        let enc = encode_rgb8(&img, 32, 16, 0);
        assert!(matches!(decode_rgb8(&enc[..enc.len() / 2], 32, 16), Err(PixelError::Corrupt(_))));
        assert!(matches!(decode_rgb8(&enc, 32, 8), Err(PixelError::Corrupt(_))));
        assert!(matches!(decode_rgb8(&enc, 64, 16), Err(PixelError::Corrupt(_))));
        assert!(matches!(decode_rgb8(b"not zstd", 32, 16), Err(PixelError::Corrupt(_))));
        assert!(matches!(decode_rgb8(&enc, 8192, 8192), Err(PixelError::TooLarge { .. })));
    }
}
