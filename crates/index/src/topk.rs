//! The k best (distance, id) pairs of a query.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;

pub(crate) struct Scored {
    pub(crate) dist: f32,
    pub(crate) id: String,
}
impl PartialEq for Scored {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == CmpOrdering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        self.dist
            .total_cmp(&o.dist)
            .then_with(|| self.id.cmp(&o.id))
    }
}

/// The best `k` items of one query (smallest distance, then smallest id).
pub(crate) struct TopK {
    pub(crate) k: usize,
    pub(crate) heap: BinaryHeap<Scored>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::new(),
        }
    }

    /// Candidates farther than this cannot enter (infinite until full).
    pub(crate) fn bound(&self) -> f32 {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.k => worst.dist,
            _ => f32::INFINITY,
        }
    }

    /// Offers an item; its id is copied only if it enters.
    pub(crate) fn offer(&mut self, dist: f32, id: &str) {
        if self.heap.len() < self.k {
            self.heap.push(Scored {
                dist,
                id: id.to_owned(),
            });
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if dist.total_cmp(&worst.dist).then_with(|| id.cmp(&worst.id)) == CmpOrdering::Less {
                // Replaced in place: the worst item's string is reused.
                worst.dist = dist;
                worst.id.clear();
                worst.id.push_str(id);
            }
        }
    }

    pub(crate) fn merge(&mut self, other: TopK) {
        for s in other.heap {
            if self.heap.len() < self.k {
                self.heap.push(s);
            } else if let Some(mut worst) = self.heap.peek_mut() {
                if s < *worst {
                    *worst = s;
                }
            }
        }
    }

    /// The items, best first.
    pub(crate) fn into_hits(self) -> Vec<(String, f32)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|s| (s.id, s.dist))
            .collect()
    }
}
