//! The claim-check frame store over the `object_store` crate: a local directory by
//! default (`file:///var/tmp/vigil-frames`), any S3-compatible store by URL with the
//! `s3` feature. Every URI it hands out carries the sha256 of the object it names in its
//! fragment (`…/frame.rgb#sha256=<hex>`), and every fetch verifies it before anything
//! else reads the bytes. A camera frame is stored packed (`vigil_proto::pixels`); its
//! reference's `size` and `sha256` are the pixels', checked by whoever unpacks them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use url::Url;
use vigil_bus::{FrameStore, TransportError};

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes before the packed pixels in an object of `pixels::pack_image`: the magic, then
/// width and height (u32 LE).
const PACKED_HEADER: usize = 12;

/// Width and height of a packed image object; `None` when it is not one.
fn packed_layout(object: &[u8]) -> Option<(u32, u32)> {
    let head = object.get(..PACKED_HEADER)?;
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    (head[..4] == vigil_proto::pixels::PACKED_MAGIC[..]).then(|| (word(4), word(8)))
}

/// The largest object a fetch reads (a stored frame; 8K RGB8 raw is 100 MB).
pub const MAX_FRAME_BYTES: u64 = 128 << 20;

/// A [`FrameStore`] over an [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectFrameStore {
    store: Arc<dyn ObjectStore>,
    base: Url,
    prefix: Path,
    rt: Handle,
    /// Objects and bytes put, shared by clones (the run report's `frames`).
    stored: Arc<(AtomicU64, AtomicU64)>,
}

fn err(what: impl std::fmt::Display) -> TransportError {
    TransportError::Frame(what.to_string())
}

impl ObjectFrameStore {
    /// Opens the store at `url` (`file:///abs/dir` or, with the `s3` feature,
    /// `s3://bucket/prefix`). A local directory is created if missing. `rt` runs the
    /// store's I/O; the synchronous [`FrameStore`] calls wait on it.
    pub fn open(url: &str, rt: Handle) -> Result<Self, TransportError> {
        let base = Url::parse(url)
            .map_err(|e| err(format!("`{url}` is not a URL ({e}); use file:///absolute/dir or s3://bucket/prefix")))?;
        if base.scheme() == "file" {
            let dir = base.to_file_path().map_err(|_| err(format!("`{url}`: not an absolute file path")))?;
            std::fs::create_dir_all(&dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let (store, prefix) = object_store::parse_url(&base)
            .map_err(|e| err(format!("cannot open frame store `{url}`: {e} (S3 URLs need the `s3` feature)")))?;
        Ok(Self { store: Arc::from(store), base, prefix, rt, stored: Arc::default() })
    }

    fn location(&self, key: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn uri_for(&self, location: &Path, sha: &str) -> String {
        let mut u = self.base.clone();
        // file:///dir/key and s3://bucket/prefix/key alike: the location is the path.
        u.set_path(&format!("/{location}"));
        u.set_fragment(Some(&format!("sha256={sha}")));
        u.to_string()
    }

    fn wait<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T, TransportError>> + Send + 'static,
    ) -> Result<T, TransportError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| err("the frame store's runtime stopped"))?
    }

    /// Objects and bytes stored through this store (and its clones) so far.
    pub fn stored(&self) -> (u64, u64) {
        (self.stored.0.load(Ordering::Relaxed), self.stored.1.load(Ordering::Relaxed))
    }

    /// Stores `bytes` and returns `(uri, sha256)`.
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(String, String), TransportError> {
        let sha = sha256_hex(&bytes);
        self.put_object(key, bytes, sha.clone()).map(|uri| (uri, sha))
    }

    /// Stores `bytes`, whose sha256 is `sha`; returns the URI.
    fn put_object(&self, key: &str, bytes: Vec<u8>, sha: String) -> Result<String, TransportError> {
        let size = bytes.len() as u64;
        let location = self.location(key);
        let uri = self.uri_for(&location, &sha);
        let store = self.store.clone();
        self.wait(async move {
            store
                .put(&location, PutPayload::from(bytes))
                .await
                .map_err(|e| err(format!("put {location}: {e}")))
                .map(|_| ())
        })?;
        self.stored.0.fetch_add(1, Ordering::Relaxed);
        self.stored.1.fetch_add(size, Ordering::Relaxed);
        Ok(uri)
    }

    /// Where a URI of this store points, or why it is refused: a frame reference comes
    /// from a queue or a log, so it may name anything. It must be of this store (scheme,
    /// host, under its prefix), carry the sha256 of what it names, and spell its path
    /// plainly (no escapes: `%2F` or `%2E%2E` could climb out of the prefix once a
    /// local store decodes them; the store never writes one).
    fn confined(&self, uri: &str) -> Result<(Path, String), TransportError> {
        let u = Url::parse(uri).map_err(|e| refused(format!("bad frame URI `{uri}`: {e}")))?;
        let foreign = || refused(format!("frame URI `{uri}` is outside this frame store ({}); refused", self.base));
        if u.scheme() != self.base.scheme() || u.host_str() != self.base.host_str() {
            return Err(foreign());
        }
        if u.path().contains(['%', '\\']) {
            return Err(refused(format!("frame URI `{uri}` has an escaped path; refused")));
        }
        let location = Path::parse(u.path().trim_start_matches('/')).map_err(|e| refused(format!("`{uri}`: {e}")))?;
        if !location.prefix_matches(&self.prefix) || location == self.prefix {
            return Err(foreign());
        }
        let Some(sha) = u.fragment().and_then(|f| f.strip_prefix("sha256=")).filter(|h| h.len() == 64) else {
            return Err(refused(format!(
                "frame URI `{uri}` carries no `#sha256=<64 hex>`; every frame is checked against its hash"
            )));
        };
        Ok((location, sha.to_ascii_lowercase()))
    }

    /// The object a URI names (see [`Self::confined`]), at most [`MAX_FRAME_BYTES`], as
    /// stored, its sha256 verified.
    pub fn get_object(&self, uri: &str) -> Result<Vec<u8>, TransportError> {
        let (location, want) = self.confined(uri)?;
        let store = self.store.clone();
        let loc = location.clone();
        let bytes = self.wait(async move {
            let meta = store.head(&loc).await.map_err(|e| err(format!("get {loc}: {e}")))?;
            if meta.size > MAX_FRAME_BYTES {
                return Err(refused(format!(
                    "frame `{loc}` holds {} bytes, over the limit of {MAX_FRAME_BYTES}; refused",
                    meta.size
                )));
            }
            let got = store.get(&loc).await.map_err(|e| err(format!("get {loc}: {e}")))?;
            got.bytes().await.map_err(|e| err(format!("read {loc}: {e}")))
        })?;
        let have = sha256_hex(&bytes);
        if have != want {
            return Err(refused(format!(
                "frame `{location}` is corrupt: sha256 {have}, expected {want} (the object was changed after it was stored)"
            )));
        }
        Ok(bytes.to_vec())
    }

    /// The bytes a URI names, verified; a packed image comes back as its pixels.
    pub fn get_bytes(&self, uri: &str) -> Result<Vec<u8>, TransportError> {
        let bytes = self.get_object(uri)?;
        match vigil_proto::pixels::unpack_image(&bytes) {
            Ok(Some(pixels)) => Ok(pixels),
            Ok(None) => Ok(bytes),
            Err(e) => Err(err(format!("frame `{uri}` is corrupt: {e}"))),
        }
    }
}

/// A frame reference that no retry can make good (outside the store, unhashed, too big,
/// not what its hash says): whoever holds the task dead-letters it at once.
fn refused(reason: String) -> TransportError {
    TransportError::Invalid { what: "frame reference".into(), reason }
}

/// What a retention sweep of the frame store found and removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Objects looked at, and their bytes.
    pub objects: u64,
    pub bytes: u64,
    /// Objects older than the cut-off (removed unless a dry run), and their bytes.
    pub expired: u64,
    pub expired_bytes: u64,
    pub dry_run: bool,
}

impl ObjectFrameStore {
    /// Removes every object last modified before `cutoff_ms` (ms since the epoch): the
    /// frames of drives whose log records Kafka's retention has removed.
    pub fn sweep(&self, cutoff_ms: i64, dry_run: bool) -> Result<SweepReport, TransportError> {
        use futures_util::TryStreamExt as _;
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        self.wait(async move {
            let mut report = SweepReport { dry_run, ..SweepReport::default() };
            let mut listing = store.list(Some(&prefix));
            while let Some(meta) = listing.try_next().await.map_err(|e| err(format!("list {prefix}: {e}")))? {
                report.objects += 1;
                report.bytes += meta.size;
                if meta.last_modified.timestamp_millis() >= cutoff_ms {
                    continue;
                }
                report.expired += 1;
                report.expired_bytes += meta.size;
                if !dry_run {
                    store.delete(&meta.location).await.map_err(|e| err(format!("delete {}: {e}", meta.location)))?;
                }
            }
            Ok(report)
        })
    }

    /// The envelope with a claim-checked camera frame's pixels fetched (sha256 verified)
    /// and put back inline, packed ones as RGB8_ZSTD; other envelopes unchanged.
    pub fn inline_claim_checked(&self, envelope: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let mut env = match vigil_proto::decode_envelope(&envelope) {
            Ok(e) => e,
            Err(_) => return Ok(envelope),
        };
        let Some(vigil_proto::v1::envelope::Payload::Camera(cam)) = env.payload.as_mut() else {
            return Ok(envelope);
        };
        let Some(vigil_proto::v1::camera_frame::Pixels::Blob(blob)) = cam.pixels.as_ref() else {
            return Ok(envelope);
        };
        let object = self.get_object(&blob.uri)?;
        let (w, h) = (u64::from(cam.width), u64::from(cam.height));
        // A packed frame goes inline still packed (RGB8_ZSTD): whoever reads the pixels
        // decodes them, and most never do (a replay crops only the tasks' frames).
        let (encoding, data) = match packed_layout(&object) {
            Some((pw, ph)) if (u64::from(pw), u64::from(ph)) == (w, h) && w * h * 3 == blob.size => {
                (vigil_proto::v1::PixelEncoding::Rgb8Zstd, object[PACKED_HEADER..].to_vec())
            }
            Some((pw, ph)) => {
                return Err(err(format!(
                    "frame `{}` is {pw}x{ph}, its camera frame says {w}x{h} and {} bytes",
                    blob.uri, blob.size
                )));
            }
            None if object.len() as u64 == blob.size => (vigil_proto::v1::PixelEncoding::Rgb8, object),
            None => {
                return Err(err(format!(
                    "frame `{}` has {} bytes, its reference says {}",
                    blob.uri,
                    object.len(),
                    blob.size
                )));
            }
        };
        cam.encoding = encoding as i32;
        cam.pixels = Some(vigil_proto::v1::camera_frame::Pixels::Data(data));
        Ok(vigil_proto::encode_envelope(&env))
    }
}

impl FrameStore for ObjectFrameStore {
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<vigil_proto::v1::BlobRef, TransportError> {
        let size = bytes.len() as u64;
        self.put_bytes(key, bytes).map(|(uri, sha256)| vigil_proto::v1::BlobRef { uri, size, sha256 })
    }

    /// Packed losslessly (`vigil_proto::pixels::pack_image`): about half the raw size.
    /// The URI's hash is the object's (checked on every fetch, before decoding); the
    /// reference's size and sha256 are the pixels'.
    fn put_rgb8(
        &self,
        key: &str,
        pixels: Vec<u8>,
        width: u32,
        height: u32,
    ) -> Result<vigil_proto::v1::BlobRef, TransportError> {
        let (size, sha256) = (pixels.len() as u64, sha256_hex(&pixels));
        let packed = vigil_proto::pixels::pack_image(&pixels, width, height);
        let object_sha = sha256_hex(&packed);
        let uri = self.put_object(key, packed, object_sha)?;
        Ok(vigil_proto::v1::BlobRef { uri, size, sha256 })
    }

    fn durable(&self) -> bool {
        true
    }

    fn get(&self, uri: &str) -> Result<Arc<Vec<u8>>, TransportError> {
        self.get_bytes(uri).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
    }

    #[test]
    fn images_are_stored_packed_and_come_back_as_pixels() {
        let rt = rt();
        let dir = std::env::temp_dir().join(format!("vigil-store-packed-{}", std::process::id()));
        let url = Url::from_directory_path(&dir).expect("abs").to_string();
        let store = ObjectFrameStore::open(&url, rt.handle().clone()).expect("open");
        let pixels: Vec<u8> = (0..64 * 48 * 3).map(|i| ((i / 3) % 64 + (i % 3) * 10) as u8).collect();
        let blob = store.put_rgb8("veh-1/run/camera/1.rgb", pixels.clone(), 64, 48).expect("put");
        assert_eq!(blob.size, pixels.len() as u64);
        assert_eq!(blob.sha256, sha256_hex(&pixels));
        let on_disk = std::fs::read(dir.join("veh-1/run/camera/1.rgb")).expect("object");
        assert!(on_disk.starts_with(vigil_proto::pixels::PACKED_MAGIC) && on_disk.len() < pixels.len() / 2);
        assert_eq!(*store.get(&blob.uri).expect("get"), pixels);
        // Inlined back into its camera frame still packed; it decodes to the pixels.
        use vigil_proto::v1::{self, camera_frame::Pixels, envelope::Payload};
        let cam = |pixels, encoding: v1::PixelEncoding| {
            let payload = Payload::Camera(v1::CameraFrame {
                width: 64,
                height: 48,
                encoding: encoding as i32,
                pixels: Some(pixels),
                ..Default::default()
            });
            let header = vigil_proto::wire::header("veh-1", "cam", &payload);
            v1::Envelope { header: Some(header), payload: Some(payload) }
        };
        let checked = vigil_proto::encode_envelope(&cam(Pixels::Blob(blob.clone()), v1::PixelEncoding::Rgb8));
        let inlined = vigil_proto::decode_envelope(&store.inline_claim_checked(checked).expect("inline")).expect("env");
        let Some(Payload::Camera(c)) = inlined.payload else { panic!("camera") };
        assert_eq!(c.encoding, v1::PixelEncoding::Rgb8Zstd as i32);
        let Some(Pixels::Data(packed)) = c.pixels else { panic!("inline") };
        assert_eq!(vigil_proto::pixels::decode_rgb8(&packed, 64, 48).expect("decode"), pixels);
        // A reference whose frame says another size is refused.
        let mut wrong = blob.clone();
        wrong.size += 3;
        let checked = vigil_proto::encode_envelope(&cam(Pixels::Blob(wrong), v1::PixelEncoding::Rgb8));
        let e = store.inline_claim_checked(checked).expect_err("size");
        assert!(e.to_string().contains("64x48"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_sweep_removes_only_objects_older_than_the_cutoff() {
        let rt = rt();
        let dir = std::env::temp_dir().join(format!("vigil-store-sweep-{}", std::process::id()));
        let url = Url::from_directory_path(&dir).expect("abs").to_string();
        let store = ObjectFrameStore::open(&url, rt.handle().clone()).expect("open");
        let old = store.put("veh-1/a/camera/1.rgb", vec![1; 100]).expect("put").uri;
        let new = store.put("veh-1/b/camera/1.rgb", vec![2; 50]).expect("put").uri;
        let day = std::time::Duration::from_secs(86_400);
        let ten_days_ago = std::time::SystemTime::now() - 10 * day;
        std::fs::File::options()
            .write(true)
            .open(dir.join("veh-1/a/camera/1.rgb"))
            .and_then(|f| f.set_modified(ten_days_ago))
            .expect("age the object");
        let cutoff = (std::time::SystemTime::now() - 7 * day)
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        let dry = store.sweep(cutoff, true).expect("dry run");
        assert_eq!((dry.objects, dry.expired, dry.expired_bytes), (2, 1, 100));
        assert!(store.get(&old).is_ok(), "a dry run removes nothing");
        let done = store.sweep(cutoff, false).expect("sweep");
        assert_eq!((done.expired, done.expired_bytes), (1, 100));
        assert!(store.get(&old).is_err(), "the expired frame is gone");
        assert!(store.get(&new).is_ok(), "the recent frame stays");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn round_trip_and_corruption_is_caught() {
        let rt = rt();
        let dir = std::env::temp_dir().join(format!("vigil-store-{}", std::process::id()));
        let url = Url::from_directory_path(&dir).expect("abs").to_string();
        let store = ObjectFrameStore::open(&url, rt.handle().clone()).expect("open");
        let uri = store.put("veh-1/camera/7.bin", vec![1, 2, 3]).expect("put").uri;
        assert!(uri.contains("#sha256="), "{uri}");
        assert_eq!(*store.get(&uri).expect("get"), vec![1, 2, 3]);
        // Change the object behind the store's back: the fetch must refuse it.
        let path = dir.join("veh-1/camera/7.bin");
        std::fs::write(&path, [9, 9, 9]).expect("overwrite");
        let e = store.get(&uri).expect_err("corrupt");
        assert!(e.to_string().contains("corrupt"), "{e}");
        // A URI from elsewhere is refused with the reason.
        let e = store.get("mem://frames/1").expect_err("foreign");
        assert!(e.to_string().contains("outside this frame store"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A frame reference comes from a queue or a log: one naming a system file, a path
    /// beside or above the store, an escaped path, no hash or an oversize object is
    /// refused with the reason, and nothing outside the store is read.
    #[test]
    fn references_outside_the_store_or_without_a_hash_are_refused() {
        let rt = rt();
        let root = std::env::temp_dir().join(format!("vigil-store-confine-{}", std::process::id()));
        let dir = root.join("frames");
        let store = ObjectFrameStore::open(Url::from_directory_path(&dir).expect("abs").as_str(), rt.handle().clone())
            .expect("open");
        let beside = root.join("frames-beside");
        std::fs::create_dir_all(&beside).expect("dir");
        std::fs::write(beside.join("f.rgb"), [1, 2, 3]).expect("write");
        let hash = |b: &[u8]| format!("#sha256={}", sha256_hex(b));
        let passwd = std::fs::read("/etc/passwd").unwrap_or_default();
        let d = dir.display();
        let refused = [
            (format!("file:///etc/passwd{}", hash(&passwd)), "outside this frame store"),
            (format!("file://{d}/../frames-beside/f.rgb{}", hash(&[1, 2, 3])), "outside this frame store"),
            (format!("file://{}/f.rgb{}", beside.display(), hash(&[1, 2, 3])), "outside this frame store"),
            (format!("file://{d}/..%2Fframes-beside%2Ff.rgb{}", hash(&[1, 2, 3])), "escaped path"),
            (format!("file://{d}/%2E%2E/frames-beside/f.rgb{}", hash(&[1, 2, 3])), "outside this frame store"),
            (format!("file://{d}{}", hash(&[])), "outside this frame store"),
        ];
        for (uri, why) in &refused {
            let e = store.get(uri).expect_err(uri);
            assert!(e.to_string().contains(why), "{uri}: {e}");
            // No retry can make it good: a worker dead-letters it at once.
            assert!(matches!(e, TransportError::Invalid { .. }), "{uri}: {e:?}");
        }
        // In the store but with no hash, or a malformed one: refused.
        let uri = store.put("veh-1/run/cam/1.rgb", vec![4, 5, 6]).expect("put").uri;
        let bare = uri.split('#').next().expect("uri").to_string();
        for u in [bare.clone(), format!("{bare}#sha256=abc")] {
            let e = store.get(&u).expect_err("no hash");
            assert!(e.to_string().contains("carries no `#sha256="), "{e}");
        }
        // An object over the size limit is not read (a sparse file: no disk used).
        let big = store.put("veh-1/run/cam/2.rgb", vec![0]).expect("put").uri;
        let f = std::fs::File::options().write(true).open(dir.join("veh-1/run/cam/2.rgb")).expect("open");
        f.set_len(MAX_FRAME_BYTES + 1).expect("grow");
        let e = store.get(&big).expect_err("oversize");
        assert!(e.to_string().contains("over the limit"), "{e}");
        assert!(matches!(e, TransportError::Invalid { .. }), "{e:?}");
        assert_eq!(*store.get(&uri).expect("a good reference still reads"), vec![4, 5, 6]);
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn bad_url_says_how_to_fix() {
        let rt = rt();
        let e = ObjectFrameStore::open("not a url", rt.handle().clone()).expect_err("bad");
        assert!(e.to_string().contains("file:///"), "{e}");
    }
}
