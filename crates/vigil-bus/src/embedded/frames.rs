//! [`FrameStore`] in memory: the last `capacity` frames, oldest evicted first. A task
//! whose frame was evicted fails to fetch it (counted by the worker), so memory stays
//! bounded however far the workers fall behind.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use vigil_proto::v1::BlobRef;

use crate::transport::{FrameStore, TransportError};

#[derive(Debug, Default)]
struct State {
    frames: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
}

#[derive(Debug)]
pub struct MemoryFrameStore {
    capacity: usize,
    state: Mutex<State>,
}

impl MemoryFrameStore {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), state: Mutex::default() }
    }
}

impl FrameStore for MemoryFrameStore {
    fn put(&self, key: &str, bytes: Vec<u8>) -> Result<BlobRef, TransportError> {
        let uri = format!("mem://{key}");
        let size = bytes.len() as u64;
        let mut s = self.state.lock().map_err(|_| TransportError::Closed)?;
        if s.frames.insert(uri.clone(), Arc::new(bytes)).is_none() {
            s.order.push_back(uri.clone());
        }
        while s.order.len() > self.capacity {
            if let Some(old) = s.order.pop_front() {
                s.frames.remove(&old);
            }
        }
        // In-process bytes cannot change under a reader, so no digest is taken.
        Ok(BlobRef { uri, size, sha256: String::new() })
    }

    fn durable(&self) -> bool {
        false
    }

    fn get(&self, uri: &str) -> Result<Arc<Vec<u8>>, TransportError> {
        let s = self.state.lock().map_err(|_| TransportError::Closed)?;
        s.frames.get(uri).cloned().ok_or_else(|| {
            TransportError::Frame(format!("`{uri}` is not in the store (evicted: the worker fell too far behind)"))
        })
    }
}
