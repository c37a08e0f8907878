//! Lidar points stored compactly: `POINT_ENCODING_XYZIR_ZSTD`, lossless.
//!
//! A sweep's floats are noisy in their low mantissa bits but close to those of the same
//! beam one column before. Each field of a point is stored as the difference of its bit
//! pattern from the last point of the same ring (zigzag, so small steps either way have
//! zero high bytes), the fields split into byte planes (rings first, so a decoder knows
//! each point's ring before its floats), and the planes compressed with zstd. Decoding
//! gives back the very bytes the sensor packed.

use std::borrow::Cow;

use crate::v1::{self, envelope::Payload};
use crate::{POINT_STRIDE, unpack_points};

/// Why compact points could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PointError {
    #[error("compact lidar points: {0} (the recording holds a damaged lidar sweep)")]
    Corrupt(String),
    #[error("lidar points: encoding {0} is not one this build reads")]
    Unknown(i32),
}

/// The zstd level sweeps are written at.
pub const ZSTD_LEVEL: i32 = 3;

/// Float fields per point (x, y, z, intensity), then the ring.
const FLOATS: usize = 4;

#[inline(always)]
fn zigzag(d: u32) -> u32 {
    let d = d as i32;
    ((d << 1) ^ (d >> 31)) as u32
}

#[inline(always)]
fn unzigzag(z: u32) -> u32 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

fn ring_table(rings: impl Iterator<Item = u16>) -> Vec<[u32; FLOATS]> {
    let top = rings.max().map_or(0, |r| r as usize + 1);
    vec![[0; FLOATS]; top]
}

/// Encodes packed points (`POINT_STRIDE` bytes each; a trailing partial point is not
/// expected and is left out by the caller's validation).
pub fn encode_points(points: &[u8]) -> Vec<u8> {
    let n = points.len() / POINT_STRIDE;
    let mut planes = vec![0u8; n * POINT_STRIDE];
    let mut last = ring_table(unpack_points(points).map(|p| p.4));
    let mut last_ring = 0u16;
    for (i, p) in points.chunks_exact(POINT_STRIDE).enumerate() {
        let ring = u16::from_le_bytes([p[16], p[17]]);
        let dr = ring.wrapping_sub(last_ring).to_le_bytes();
        last_ring = ring;
        planes[i] = dr[0];
        planes[n + i] = dr[1];
        let prev = &mut last[ring as usize];
        for (f, prev) in prev.iter_mut().enumerate() {
            let v = u32::from_le_bytes([p[f * 4], p[f * 4 + 1], p[f * 4 + 2], p[f * 4 + 3]]);
            let z = zigzag(v.wrapping_sub(*prev)).to_le_bytes();
            *prev = v;
            for (b, byte) in z.iter().enumerate() {
                planes[(2 + f * 4 + b) * n + i] = *byte;
            }
        }
    }
    // Compressing an in-memory buffer cannot fail.
    zstd::bulk::compress(&planes, ZSTD_LEVEL).unwrap_or(planes)
}

/// Decodes what [`encode_points`] wrote for `count` points.
pub fn decode_points(data: &[u8], count: usize) -> Result<Vec<u8>, PointError> {
    let size = count.checked_mul(POINT_STRIDE).ok_or_else(|| PointError::Corrupt("too many points".into()))?;
    let planes = zstd::bulk::decompress(data, size).map_err(|e| PointError::Corrupt(e.to_string()))?;
    if planes.len() != size {
        return Err(PointError::Corrupt(format!("{} bytes of planes, {count} points need {size}", planes.len())));
    }
    let n = count;
    let mut rings = Vec::with_capacity(n);
    let mut ring = 0u16;
    for i in 0..n {
        ring = ring.wrapping_add(u16::from_le_bytes([planes[i], planes[n + i]]));
        rings.push(ring);
    }
    let mut last = ring_table(rings.iter().copied());
    let mut out = Vec::with_capacity(size);
    for (i, &ring) in rings.iter().enumerate() {
        let prev = &mut last[ring as usize];
        for (f, prev) in prev.iter_mut().enumerate() {
            let at = |b: usize| planes[(2 + f * 4 + b) * n + i];
            let z = u32::from_le_bytes([at(0), at(1), at(2), at(3)]);
            *prev = prev.wrapping_add(unzigzag(z));
            out.extend_from_slice(&prev.to_le_bytes());
        }
        out.extend_from_slice(&ring.to_le_bytes());
    }
    Ok(out)
}

/// A scan's points in the packed layout, decoded when stored compactly.
pub fn raw_points(scan: &v1::LidarScan) -> Result<Cow<'_, [u8]>, PointError> {
    match v1::PointEncoding::try_from(scan.encoding) {
        Ok(v1::PointEncoding::Xyzir) => Ok(Cow::Borrowed(&scan.points)),
        Ok(v1::PointEncoding::XyzirZstd) => decode_points(&scan.points, scan.point_count as usize).map(Cow::Owned),
        Err(_) => Err(PointError::Unknown(scan.encoding)),
    }
}

/// Whether an encoded envelope carries a lidar sweep, from its header alone.
pub fn is_lidar(envelope: &[u8]) -> bool {
    crate::header_of(envelope).is_some_and(|h| h.content_type.ends_with("type=vigil.v1.LidarScan"))
}

/// The envelope with its packed lidar points stored compactly; `None` when it is not a
/// lidar envelope with packed points (nothing to do) or cannot be read.
pub fn compact_lidar(envelope: &[u8]) -> Option<Vec<u8>> {
    if !is_lidar(envelope) {
        return None;
    }
    let mut env = crate::decode_envelope(envelope).ok()?;
    let Some(Payload::Lidar(scan)) = env.payload.as_mut() else { return None };
    if scan.encoding != v1::PointEncoding::Xyzir as i32 {
        return None;
    }
    scan.points = encode_points(&scan.points);
    scan.encoding = v1::PointEncoding::XyzirZstd as i32;
    Some(crate::encode_envelope(&env))
}

/// The envelope with compact points decoded back to the packed layout (byte for byte the
/// envelope [`compact_lidar`] was given); `Ok(None)` when there is nothing to expand.
pub fn expand_lidar(envelope: &[u8]) -> Result<Option<Vec<u8>>, PointError> {
    if !is_lidar(envelope) {
        return Ok(None);
    }
    let Ok(mut env) = crate::decode_envelope(envelope) else { return Ok(None) };
    let Some(Payload::Lidar(scan)) = env.payload.as_mut() else { return Ok(None) };
    if scan.encoding != v1::PointEncoding::XyzirZstd as i32 {
        return Ok(None);
    }
    scan.points = decode_points(&scan.points, scan.point_count as usize)?;
    scan.encoding = v1::PointEncoding::Xyzir as i32;
    Ok(Some(crate::encode_envelope(&env)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack_point;

    /// A sweep shaped like a spinning lidar's: columns of rings, ranges with noise.
    fn sweep(columns: u32, rings: u16, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        let mut noise = || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2001) as f32 / 1000.0 - 1.0
        };
        let mut out = Vec::new();
        for c in 0..columns {
            let az = c as f32 / columns as f32 * std::f32::consts::TAU;
            for ring in 0..rings {
                if (c + ring as u32) % 7 == 3 {
                    continue;
                }
                let el = -0.3 + ring as f32 * 0.02;
                let r = 12.0 + 3.0 * (az * 3.0).sin() + noise() * 0.03;
                let i = (0.4 + noise() * 0.05).clamp(0.0, 1.0);
                pack_point(&mut out, r * el.cos() * az.cos(), r * el.cos() * az.sin(), r * el.sin(), i, ring);
            }
        }
        out
    }

    #[test]
    fn round_trips_exactly_and_beats_zstd_alone() {
        for (c, r) in [(0, 0), (1, 1), (3, 2), (1024, 32)] {
            let pts = sweep(c, r, c + 1);
            let enc = encode_points(&pts);
            assert_eq!(decode_points(&enc, pts.len() / POINT_STRIDE).unwrap(), pts, "{c}x{r}");
            if c > 100 {
                let plain = zstd::bulk::compress(&pts, ZSTD_LEVEL).unwrap().len();
                assert!(enc.len() * 10 < plain * 9, "{c}x{r}: {} against zstd alone {plain}", enc.len());
            }
        }
    }

    #[test]
    fn odd_floats_and_any_ring_order_round_trip() {
        let mut pts = Vec::new();
        for (k, v) in [f32::NAN, f32::INFINITY, -0.0, f32::MIN_POSITIVE, f32::MAX, -3.5].into_iter().enumerate() {
            pack_point(&mut pts, v, -v, v * 2.0, v, [65535u16, 0, 7, 65535, 3, 0][k]);
        }
        assert_eq!(decode_points(&encode_points(&pts), 6).unwrap(), pts);
    }

    #[test]
    fn damaged_or_mislabelled_data_is_an_error_not_a_panic() {
        let pts = sweep(64, 16, 3);
        let n = pts.len() / POINT_STRIDE;
        let enc = encode_points(&pts);
        assert!(matches!(decode_points(&enc[..enc.len() / 2], n), Err(PointError::Corrupt(_))));
        assert!(matches!(decode_points(&enc, n - 1), Err(PointError::Corrupt(_))));
        assert!(matches!(decode_points(&enc, n + 1), Err(PointError::Corrupt(_))));
        assert!(matches!(decode_points(b"not zstd", n), Err(PointError::Corrupt(_))));
        assert!(matches!(decode_points(&enc, usize::MAX), Err(PointError::Corrupt(_))));
    }

    #[test]
    fn envelopes_round_trip_and_other_envelopes_are_left_alone() {
        let pts = sweep(32, 8, 5);
        let payload = Payload::Lidar(v1::LidarScan {
            point_count: (pts.len() / POINT_STRIDE) as u32,
            points: pts,
            ..Default::default()
        });
        let header = v1::Header {
            schema_version: crate::SCHEMA_VERSION,
            vehicle_id: "vehicle-1".into(),
            content_type: crate::content_type(&payload).into(),
            ..Default::default()
        };
        let env = v1::Envelope { header: Some(header), payload: Some(payload) };
        let bytes = crate::encode_envelope(&env);
        let compact = compact_lidar(&bytes).unwrap();
        assert!(compact.len() < bytes.len());
        let decoded = crate::decode_envelope(&compact).unwrap();
        let Some(Payload::Lidar(scan)) = &decoded.payload else { panic!("not lidar") };
        assert_eq!(raw_points(scan).unwrap().len(), scan.point_count as usize * POINT_STRIDE);
        assert_eq!(compact_lidar(&compact), None, "already compact");
        assert_eq!(expand_lidar(&compact).unwrap(), Some(bytes.clone()));
        assert_eq!(expand_lidar(&bytes).unwrap(), None);
    }
}
