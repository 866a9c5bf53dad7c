//! A bounded in-memory cache of decrypted blocks, keyed by block number.
//!
//! Block numbers are never reused (blocks are copy-on-write), so a cached
//! block is never stale. Eviction is FIFO by insertion, bounded in bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::codec::Block;

pub(crate) struct BlockCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<u64, Arc<Block>>,
    order: VecDeque<u64>,
    bytes: usize,
}

impl BlockCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn get(&self, seq: u64) -> Option<Arc<Block>> {
        self.inner.lock().map.get(&seq).cloned()
    }

    pub(crate) fn insert(&self, seq: u64, block: Arc<Block>) {
        let size = block.bytes();
        if size > self.max_bytes {
            return;
        }
        let mut g = self.inner.lock();
        if g.map.contains_key(&seq) {
            return;
        }
        while g.bytes + size > self.max_bytes {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some(b) = g.map.remove(&old) {
                g.bytes -= b.bytes();
            }
        }
        g.bytes += size;
        g.order.push_back(seq);
        g.map.insert(seq, block);
    }

    pub(crate) fn remove(&self, seq: u64) {
        let mut g = self.inner.lock();
        if let Some(b) = g.map.remove(&seq) {
            g.bytes -= b.bytes();
            g.order.retain(|s| *s != seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_byte_bound() {
        let block = || {
            let mut b = Block::default();
            b.push("a", &[0.0; 100]);
            Arc::new(b)
        };
        let one = block().bytes();
        let c = BlockCache::new(one * 3);
        for i in 0..10 {
            c.insert(i, block());
        }
        assert!(c.get(9).is_some() && c.get(7).is_some());
        assert!(c.get(0).is_none());
        assert!(c.inner.lock().bytes <= one * 3);
        c.remove(9);
        assert!(c.get(9).is_none());
    }
}
