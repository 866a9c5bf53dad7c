//! Test support shared by vecseal's crates (a dev-dependency, and the
//! benchmark harness's): fixed keys, seeded data sets and item ids, so
//! that every crate's tests build their inputs the same way and a change
//! to a generator is made once; and [`store::Watched`], a store that tells
//! a test of its reads and writes.
//!
//! Everything here is deterministic in its seed; nothing reads the clock
//! or the OS's randomness.
//!
//! ```
//! let a = vecseal_testkit::clustered(100, 8, 4, 7);
//! assert_eq!(a, vecseal_testkit::clustered(100, 8, 4, 7));
//! assert_eq!((a.len(), a[0].len()), (100, 8));
//! assert_eq!(vecseal_testkit::ids(2), ["item-0", "item-1"]);
//! ```
#![deny(missing_docs)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vecseal_envelope::SecretKey;

pub mod store;

/// The 32-byte key whose every byte is `b`: distinct test keys by number.
pub fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes(&[b; 32]).unwrap_or_else(|e| panic!("{e}"))
}

/// A seeded generator, for tests that draw their own values.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` vectors of dimension `d`, each a random one of `centers` seeded
/// centres in `[-10, 10)ᵈ` plus uniform noise in `[-1, 1)` per component.
pub fn clustered(n: usize, d: usize, centers: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rng(seed);
    let cs: Vec<Vec<f32>> = (0..centers)
        .map(|_| (0..d).map(|_| rng.gen_range(-10.0..10.0)).collect())
        .collect();
    (0..n)
        .map(|_| {
            cs[rng.gen_range(0..centers)]
                .iter()
                .map(|v| v + rng.gen_range(-1.0f32..1.0))
                .collect()
        })
        .collect()
}

/// `n` vectors of dimension `d`, uniform in `[-0.5, 0.5)ᵈ`.
pub fn uniform(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rng(seed);
    (0..n)
        .map(|_| (0..d).map(|_| rng.gen_range(-0.5f32..0.5)).collect())
        .collect()
}

/// A standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Planted clusters with known labels: `centers` means in `[-100, 100)ᵈ`,
/// `n_per` points around each (Gaussian, standard deviation `spread`), in
/// cluster order. Returns the points row-major and each point's cluster.
pub fn planted(
    n_per: usize,
    centers: usize,
    d: usize,
    spread: f32,
    seed: u64,
) -> (Vec<f32>, Vec<usize>) {
    let mut rng = rng(seed);
    let means: Vec<Vec<f32>> = (0..centers)
        .map(|_| (0..d).map(|_| rng.gen_range(-100.0..100.0)).collect())
        .collect();
    let mut data = Vec::with_capacity(n_per * centers * d);
    let mut truth = Vec::with_capacity(n_per * centers);
    for (c, m) in means.iter().enumerate() {
        for _ in 0..n_per {
            data.extend(m.iter().map(|v| v + spread * gaussian(&mut rng)));
            truth.push(c);
        }
    }
    (data, truth)
}

/// Item ids `item-0`, `item-1`, …
pub fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item-{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_seeded_and_shaped() {
        assert_eq!(uniform(5, 3, 1), uniform(5, 3, 1));
        assert_ne!(uniform(5, 3, 1), uniform(5, 3, 2));
        assert!(uniform(50, 4, 3)
            .iter()
            .flatten()
            .all(|x| (-0.5..0.5).contains(x)));
        let (data, truth) = planted(10, 3, 2, 0.5, 9);
        assert_eq!((data.len(), truth.len()), (60, 30));
        assert_eq!(truth[0..10], [0; 10]);
        assert_eq!(truth[20..30], [2; 10]);
        assert!(key(1).ct_eq(&key(1)) && !key(1).ct_eq(&key(2)));
        // Two centres, noise below 1 per component: every point has
        // another within 2 per component (its cluster), and the points
        // fall into exactly two such groups.
        let c = clustered(200, 6, 2, 5);
        let near = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 2.0);
        assert!((0..c.len()).all(|i| (0..c.len()).any(|j| j != i && near(&c[i], &c[j]))));
        let groups = (0..c.len())
            .filter(|&i| (0..i).all(|j| !near(&c[i], &c[j])))
            .count();
        assert_eq!(groups, 2);
    }
}

pub mod alloc {
    //! A global allocator that counts live heap bytes and their peak, for
    //! tests that bound the memory of an operation. Install it in a test
    //! binary of its own (it counts for the whole process, so run one test
    //! there):
    //!
    //! ```ignore
    //! #[global_allocator]
    //! static ALLOC: vecseal_testkit::alloc::Counting = vecseal_testkit::alloc::Counting;
    //! let grew = vecseal_testkit::alloc::peak_growth(|| work());
    //! ```
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    /// The system allocator, counting.
    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to the system allocator;
    // the counters do not affect what is returned.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller upholds `alloc`'s contract, which is
            // `System.alloc`'s.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            // SAFETY: `ptr` was allocated by `alloc` above with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// Runs `f` and returns its result with how far the heap grew above
    /// where it was when `f` started, at its peak (0 unless [`Counting`]
    /// is the global allocator).
    pub fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = LIVE.load(Ordering::SeqCst);
        PEAK.store(base, Ordering::SeqCst);
        let out = f();
        (out, PEAK.load(Ordering::SeqCst).saturating_sub(base))
    }
}
