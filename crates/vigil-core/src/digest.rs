//! A streaming 128-bit fingerprint (XXH3-128) over message bytes, used to prove that two
//! runs produced the same bytes. Not cryptographic: sha256 is used where integrity matters.

use xxhash_rust::xxh3::Xxh3;

/// Order-sensitive digest over a sequence of byte strings.
#[derive(Clone)]
pub struct Digest {
    hasher: Xxh3,
    count: u64,
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Digest").field("count", &self.count).finish()
    }
}

impl Default for Digest {
    fn default() -> Self {
        Self::new()
    }
}

impl Digest {
    pub fn new() -> Self {
        Self { hasher: Xxh3::new(), count: 0 }
    }

    /// Adds one message; its length is hashed too, so boundaries matter.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(&(bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self.count += 1;
    }

    /// Number of messages added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// 32 lower-case hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.hasher.digest128())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_order_and_boundaries() {
        let mut a = Digest::new();
        a.update(b"ab");
        a.update(b"c");
        let mut b = Digest::new();
        b.update(b"a");
        b.update(b"bc");
        let mut c = Digest::new();
        c.update(b"ab");
        c.update(b"c");
        assert_ne!(a.hex(), b.hex());
        assert_eq!(a.hex(), c.hex());
        assert_eq!(a.count(), 2);
    }
}
