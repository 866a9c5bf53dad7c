//! The k best (distance, id) pairs of a query.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// One kept pair: its distance, and where its id is in [`TopK::text`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    dist: f32,
    len: u32,
    at: usize,
}

/// The best `k` items of one query (smallest distance, then smallest id).
///
/// A max-heap of (distance, id) whose ids are kept in one string, so an
/// item that enters costs a copy of its id and no allocation: a search
/// offers thousands of candidates to thousands of these (one per query and
/// worker of a scan), and owned strings per entry were measured at about a
/// third of a batch of few-probe queries (allocation, freeing and the moves
/// of a heap of `String`s). An id that leaves stays in the string until
/// the string holds twice the live ids and [`SLACK_BYTES`] more, then the
/// string is rebuilt. Not `Debug`: it holds item ids.
pub(crate) struct TopK {
    k: usize,
    /// The worst entry first.
    heap: Vec<Entry>,
    text: String,
    /// Bytes of `text` that live entries' ids hold.
    live: usize,
}

/// Bytes of dead ids a [`TopK`] tolerates before rebuilding its string,
/// besides as many as it holds live ones.
const SLACK_BYTES: usize = 4 << 10;

/// Entries reserved at the first offer: `k`, up to this many.
const RESERVED: usize = 64;

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: Vec::new(),
            text: String::new(),
            live: 0,
        }
    }

    fn id(&self, e: Entry) -> &str {
        &self.text[e.at..e.at + e.len as usize]
    }

    /// The id of `e` as bytes: ids order as their bytes do, and comparing
    /// bytes skips the checks of a `str` slice.
    #[inline]
    fn bytes(&self, e: Entry) -> &[u8] {
        &self.text.as_bytes()[e.at..e.at + e.len as usize]
    }

    /// Whether `a` is better (nearer, then smaller id) than `b`: what
    /// [`TopK::cmp`] says, written out for the heap's loops (built on
    /// `cmp`, a batch of one-probe queries with the list cache on ran about
    /// 9 % slower in interleaved runs).
    #[inline]
    fn less(&self, a: Entry, b: Entry) -> bool {
        match a.dist.total_cmp(&b.dist) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => self.bytes(a) < self.bytes(b),
        }
    }

    /// How `a` orders against `b`: nearer first, then the smaller id.
    fn cmp(&self, a: Entry, b: Entry) -> Ordering {
        a.dist
            .total_cmp(&b.dist)
            .then_with(|| self.bytes(a).cmp(self.bytes(b)))
    }

    /// Candidates farther than this cannot enter (infinite until full).
    pub(crate) fn bound(&self) -> f32 {
        match self.heap.first() {
            Some(worst) if self.heap.len() >= self.k => worst.dist,
            _ => f32::INFINITY,
        }
    }

    /// Copies `id` into the string (rebuilt first if dead ids fill it).
    #[inline]
    fn store(&mut self, dist: f32, id: &str) -> Entry {
        if self.text.len() + id.len() > 2 * self.live + SLACK_BYTES {
            self.compact();
        }
        if self.text.capacity() == 0 {
            self.text.reserve(16 * self.k.min(RESERVED));
        }
        let at = self.text.len();
        self.text.push_str(id);
        self.live += id.len();
        Entry {
            dist,
            // Ids are at most MAX_ID_BYTES (checked on upsert); a longer one
            // would make its span out of range, a panic, never another id.
            len: u32::try_from(id.len()).unwrap_or(u32::MAX),
            at,
        }
    }

    /// Rewrites the string with only the live entries' ids.
    fn compact(&mut self) {
        let mut text = String::with_capacity(2 * self.live + SLACK_BYTES);
        for e in &mut self.heap {
            let id = &self.text[e.at..e.at + e.len as usize];
            e.at = text.len();
            text.push_str(id);
        }
        self.text = text;
    }

    /// Offers an item; its id is copied only if it enters.
    #[inline]
    pub(crate) fn offer(&mut self, dist: f32, id: &str) {
        let Some(&worst) = self.heap.first().filter(|_| self.heap.len() >= self.k) else {
            self.push(dist, id);
            return;
        };
        match dist.total_cmp(&worst.dist) {
            Ordering::Greater => return,
            Ordering::Equal if id.as_bytes() >= self.bytes(worst) => return,
            _ => {}
        }
        self.live -= worst.len as usize;
        let e = self.store(dist, id);
        self.sift_down(e);
    }

    /// Adds an item to a top that is not full (a top of `k` = 0 keeps
    /// nothing).
    fn push(&mut self, dist: f32, id: &str) {
        if self.heap.len() >= self.k {
            return;
        }
        if self.heap.capacity() == 0 {
            self.heap.reserve_exact(self.k.min(RESERVED));
        }
        let e = self.store(dist, id);
        // Up from a new leaf, moving worse parents down.
        let mut i = self.heap.len();
        self.heap.push(e);
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.less(self.heap[parent], e) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = e;
    }

    /// Puts `e` at the root in place of the worst entry and moves it down.
    #[inline]
    fn sift_down(&mut self, e: Entry) {
        let n = self.heap.len();
        let mut i = 0;
        loop {
            let left = 2 * i + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.less(self.heap[left], self.heap[right]) {
                right
            } else {
                left
            };
            if !self.less(e, self.heap[child]) {
                break;
            }
            self.heap[i] = self.heap[child];
            i = child;
        }
        self.heap[i] = e;
    }

    /// Keeps the best `k` of both.
    pub(crate) fn merge(&mut self, other: TopK) {
        if self.heap.is_empty() && self.k == other.k {
            *self = other;
            return;
        }
        for &e in &other.heap {
            self.offer(e.dist, other.id(e));
        }
    }

    /// The items, best first.
    pub(crate) fn into_hits(mut self) -> Vec<(String, f32)> {
        let mut entries = std::mem::take(&mut self.heap);
        entries.sort_unstable_by(|&a, &b| self.cmp(a, b));
        entries
            .into_iter()
            .map(|e| (self.id(e).to_owned(), e.dist))
            .collect()
    }
}

/// The smallest bound that any of the top-k sets of one query has reached
/// during a parallel scan (each worker keeps its own set, merged at the
/// end). A set's bound is the distance of its `k`-th best, so a candidate
/// farther than the smallest of them is worse than `k` items some set
/// holds and cannot be in the merged top-k: each worker passes over it
/// without offering it. The result does not change; the offers fall to
/// about those of one set (measured: about 90 to about 60 per query at 4
/// of 629 lists).
#[derive(Debug)]
pub(crate) struct SharedBound(AtomicU32);

impl SharedBound {
    pub(crate) fn new() -> Self {
        Self(AtomicU32::new(ordered(f32::INFINITY)))
    }

    fn get(&self) -> f32 {
        from_ordered(self.0.load(Relaxed))
    }

    fn lower(&self, v: f32) {
        self.0.fetch_min(ordered(v), Relaxed);
    }
}

/// `v`'s bits, mapped so that unsigned order is [`f32::total_cmp`]'s.
fn ordered(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

fn from_ordered(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
}

/// A worker's top-k set of one query, with the query's [`SharedBound`],
/// for one row of candidates (a block's vectors): the shared bound is read
/// when the row starts and lowered, if this set got below it, when the row
/// ends (a locked update per offer was measured at about a fifth of the
/// scan's own time).
pub(crate) struct Top<'a> {
    top: &'a mut TopK,
    shared: &'a SharedBound,
    /// The shared bound when the row started.
    seen: f32,
}

impl<'a> Top<'a> {
    pub(crate) fn new(top: &'a mut TopK, shared: &'a SharedBound) -> Self {
        let seen = shared.get();
        Self { top, shared, seen }
    }

    /// Candidates farther than this cannot enter the query's merged top-k.
    pub(crate) fn bound(&self) -> f32 {
        let own = self.top.bound();
        if self.seen.total_cmp(&own).is_lt() {
            self.seen
        } else {
            own
        }
    }

    /// Offers an item to this set.
    pub(crate) fn offer(&mut self, dist: f32, id: &str) {
        self.top.offer(dist, id);
    }

    /// How many items the set keeps.
    pub(crate) fn k(&self) -> usize {
        self.top.k
    }
}

impl Drop for Top<'_> {
    fn drop(&mut self) {
        let own = self.top.bound();
        if own < f32::INFINITY && own.total_cmp(&self.seen).is_lt() {
            self.shared.lower(own);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The best `k` of `items` by (distance, id), by sorting them all.
    fn expected(items: &[(f32, String)], k: usize) -> Vec<(String, f32)> {
        let mut all: Vec<(f32, String)> = items.to_vec();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        all.dedup();
        all.into_iter().take(k).map(|(d, id)| (id, d)).collect()
    }

    fn items() -> impl Strategy<Value = Vec<(f32, String)>> {
        // Few distinct distances and short ids, so ties are common; long
        // ids too, so the string is rebuilt.
        prop::collection::vec(
            (0u8..8, "[a-c]{1,3}|[a-z]{300,1100}").prop_map(|(d, id)| (f32::from(d), id)),
            0..300,
        )
    }

    /// Distinct ids: a search offers each item at most once per query.
    fn distinct(items: Vec<(f32, String)>) -> Vec<(f32, String)> {
        let mut seen = std::collections::HashSet::new();
        items
            .into_iter()
            .filter(|(_, id)| seen.insert(id.clone()))
            .collect()
    }

    proptest! {
        #[test]
        fn keeps_the_best_k_by_distance_then_id(items in items(), k in 0usize..20) {
            let items = distinct(items);
            let mut top = TopK::new(k);
            for (d, id) in &items {
                top.offer(*d, id);
            }
            prop_assert!(top.text.len() <= 2 * top.live + SLACK_BYTES + 1100);
            prop_assert_eq!(top.into_hits(), expected(&items, k));
        }

        #[test]
        fn merged_pieces_equal_one_top(items in items(), k in 0usize..20, cut in 0usize..300) {
            let items = distinct(items);
            let cut = cut.min(items.len());
            let (mut a, mut b) = (TopK::new(k), TopK::new(k));
            for (d, id) in &items[..cut] {
                a.offer(*d, id);
            }
            for (d, id) in &items[cut..] {
                b.offer(*d, id);
            }
            let mut empty = TopK::new(k);
            empty.merge(a);
            empty.merge(b);
            prop_assert_eq!(empty.into_hits(), expected(&items, k));
        }
    }

    #[test]
    fn a_shared_bound_orders_as_total_cmp() {
        let values = [
            f32::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-30,
            2.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for a in values {
            assert_eq!(from_ordered(ordered(a)).to_bits(), a.to_bits());
            for b in values {
                assert_eq!(ordered(a).cmp(&ordered(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
        let shared = SharedBound::new();
        let (mut one, mut two) = (TopK::new(2), TopK::new(2));
        let mut a = Top::new(&mut one, &shared);
        a.offer(1.0, "a");
        a.offer(5.0, "b");
        assert_eq!(a.bound(), 5.0);
        // Shared when the first set's row ends: the other set is not
        // full, but the first one's bound holds for it.
        drop(a);
        let b = Top::new(&mut two, &shared);
        assert_eq!(b.bound(), 5.0);
    }

    #[test]
    fn bound_is_infinite_until_full_then_the_worst_kept() {
        let mut top = TopK::new(2);
        top.offer(3.0, "a");
        assert_eq!(top.bound(), f32::INFINITY);
        top.offer(1.0, "b");
        assert_eq!(top.bound(), 3.0);
        top.offer(2.0, "c");
        assert_eq!(top.bound(), 2.0);
        assert_eq!(top.into_hits(), vec![("b".into(), 1.0), ("c".into(), 2.0)]);
    }
}
