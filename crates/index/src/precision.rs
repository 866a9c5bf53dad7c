//! Storage precisions of search vectors: float32, or compressed codes
//! (float16, 8- and 4-bit scalar quantization) that a first pass scans
//! and an exact rerank corrects.
//!
//! A compressed block holds, per dimension, an offset `lo` and a `step`
//! (8/4-bit codes) learned from the exact vectors it was written with, and
//! one code per coordinate: `x ≈ lo + step·c`, `c ∈ 0..=L` (`L` = 255 or
//! 15). A block's range covers every vector in it: a write that brings a
//! vector outside it widens the range (with a margin of an eighth of the
//! new span on each side that grew) and re-codes the block's other codes
//! from their decoded values, so each widening adds at most half a new
//! step of error to those; training writes every block again from the
//! exact vectors, with ranges fitted to them. Float16 needs no range:
//! coordinates round to the nearest float16, saturating at ±65504.
//!
//! Decoding runs in kernels compiled for each SIMD level and dispatched at
//! run time ([`vecseal_kmeans::kernel::dispatch`]); every level computes
//! the same bits (one multiply and one add per coordinate, never fused;
//! float16 widens exactly, with `vcvtph2ps` at the AVX-512 level: see
//! `half`), so the candidates a query reranks do not depend on the CPU.

use std::fmt;
use std::str::FromStr;

use pulp::{Simd, WithSimd};
use vecseal_kmeans::kernel::{self, SimdLevel, Sum};

use crate::{Error, Result};

mod half;
pub(crate) use half::encode_f16;

/// How the search vectors of an index are stored; fixed at creation.
///
/// Item records always keep the exact float32 vector; with a compressed
/// precision the search blocks hold codes, queries scan them and rescore
/// the best `top_k × rerank_mult` candidates exactly from the items (see
/// [`QueryOptions::rerank_mult`](crate::QueryOptions::rerank_mult)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// 4 bytes per coordinate; scans are exact, no rerank (the default).
    #[default]
    Float32,
    /// 2 bytes per coordinate (IEEE half precision, saturating).
    Float16,
    /// 1 byte per coordinate (8-bit scalar quantization).
    Tq8,
    /// Half a byte per coordinate (4-bit scalar quantization).
    Tq4,
}

impl Precision {
    /// Every precision.
    pub const ALL: [Precision; 4] = [
        Precision::Float32,
        Precision::Float16,
        Precision::Tq8,
        Precision::Tq4,
    ];

    /// `float32`, `float16`, `tq8` or `tq4`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Float16 => "float16",
            Precision::Tq8 => "tq8",
            Precision::Tq4 => "tq4",
        }
    }

    /// Whether search blocks hold codes (and queries rerank).
    pub fn is_compressed(self) -> bool {
        self != Precision::Float32
    }

    /// Bytes of codes per vector of `dim` coordinates (4·dim for float32).
    pub fn code_bytes(self, dim: usize) -> usize {
        match self {
            Precision::Float32 => 4 * dim,
            Precision::Float16 => 2 * dim,
            Precision::Tq8 => dim,
            Precision::Tq4 => dim.div_ceil(2),
        }
    }

    /// The stored code of the precision.
    pub(crate) fn code(self) -> u8 {
        match self {
            Precision::Float32 => 0,
            Precision::Float16 => 1,
            Precision::Tq8 => 2,
            Precision::Tq4 => 3,
        }
    }

    /// The precision of a stored code.
    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == c)
    }

    /// The highest code value of a quantized precision (`L`), 0 otherwise.
    pub(crate) fn levels(self) -> u32 {
        match self {
            Precision::Tq8 => 255,
            Precision::Tq4 => 15,
            _ => 0,
        }
    }

    /// The default rerank multiplier: candidates rescored per result.
    /// Chosen by measurement (docs/BENCHMARKS.md): the smallest tried that
    /// keeps recall@10 within 0.005 of float32's on GloVe-6B-50d (100 000
    /// vectors, default n_probes): float16 at 1 (tq8 at 1 lost 0.011, tq4
    /// at 1 lost 0.18; tq8 at 2 and tq4 at 8 lost nothing).
    pub fn default_rerank_mult(self) -> usize {
        match self {
            Precision::Float32 | Precision::Float16 => 1,
            Precision::Tq8 => 2,
            Precision::Tq4 => 8,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    /// Parses a name of [`Precision::name`] (case-insensitive);
    /// `tq12` and `tq6` are refused as not supported.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(p) = Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
        {
            return Ok(p);
        }
        let unsupported = ["tq12", "tq6"].iter().any(|n| n.eq_ignore_ascii_case(s));
        Err(Error::InvalidParameter {
            name: "storage precision",
            value: s.to_owned(),
            expected: if unsupported {
                "float32, float16, tq8 or tq4 (tq12 and tq6 are not supported)"
            } else {
                "float32, float16, tq8 or tq4"
            },
        })
    }
}

/// The per-dimension range of a quantized block: `x ≈ lo + step·c`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Range {
    pub(crate) lo: Vec<f32>,
    pub(crate) step: Vec<f32>,
}

impl Range {
    /// The tightest range of `levels` steps over the rows of `vectors`.
    pub(crate) fn fit(vectors: &[f32], dim: usize, levels: u32) -> Self {
        let (lo, hi) = hull(vectors, dim);
        Self::between(&lo, &hi, levels)
    }

    /// `levels` steps from `lo` to at least `hi`; bounds beyond the finite
    /// floats are cut to them, and the step is computed in f64, so that a
    /// range over huge coordinates still has a finite step.
    fn between(lo: &[f32], hi: &[f32], levels: u32) -> Self {
        let lo: Vec<f32> = lo.iter().map(|l| l.max(-f32::MAX)).collect();
        let step = lo
            .iter()
            .zip(hi)
            .map(|(&l, &h)| {
                let h = h.min(f32::MAX);
                let s = ((f64::from(h) - f64::from(l)) / f64::from(levels)) as f32;
                // Rounding may leave `lo + L·step` just below `hi`: the
                // next float up covers it.
                if l + s * (levels as f32) < h {
                    next_up(s)
                } else {
                    s
                }
            })
            .collect();
        Self { lo, step }
    }

    fn hi(&self, i: usize, levels: u32) -> f32 {
        self.lo[i] + self.step[i] * levels as f32
    }

    /// Whether every row of `vectors` is inside the range.
    pub(crate) fn covers(&self, vectors: &[f32], dim: usize, levels: u32) -> bool {
        vectors.chunks_exact(dim).all(|v| {
            v.iter()
                .enumerate()
                .all(|(i, &x)| x >= self.lo[i] && x <= self.hi(i, levels))
        })
    }

    /// The range widened to cover `vectors` too, with a margin of an eighth
    /// of the new span on each side that grew.
    pub(crate) fn widened(&self, vectors: &[f32], dim: usize, levels: u32) -> Self {
        let (mut lo, mut hi) = hull(vectors, dim);
        for i in 0..dim {
            let (old_lo, old_hi) = (self.lo[i], self.hi(i, levels));
            let span = hi[i].max(old_hi) - lo[i].min(old_lo);
            lo[i] = if lo[i] < old_lo {
                lo[i] - span / 8.0
            } else {
                old_lo
            };
            hi[i] = if hi[i] > old_hi {
                hi[i] + span / 8.0
            } else {
                old_hi
            };
        }
        Self::between(&lo, &hi, levels)
    }

    /// Appends the codes of the rows of `vectors` to `out`.
    pub(crate) fn encode(&self, p: Precision, vectors: &[f32], dim: usize, out: &mut Vec<u8>) {
        let levels = p.levels();
        let code = |i: usize, x: f32| -> u8 {
            let s = self.step[i];
            if s > 0.0 {
                ((x - self.lo[i]) / s).round().clamp(0.0, levels as f32) as u8
            } else {
                0
            }
        };
        for v in vectors.chunks_exact(dim) {
            match p {
                Precision::Tq8 => out.extend(v.iter().enumerate().map(|(i, &x)| code(i, x))),
                Precision::Tq4 => out.extend(v.chunks(2).enumerate().map(|(j, pair)| {
                    let high = pair.get(1).map_or(0, |&x| code(2 * j + 1, x));
                    code(2 * j, pair[0]) | high << 4
                })),
                _ => unreachable!("only quantized precisions have a range"),
            }
        }
    }
}

/// The smallest f32 above a non-negative finite `x`.
fn next_up(x: f32) -> f32 {
    f32::from_bits(x.to_bits() + 1)
}

/// Per-dimension minimum and maximum of the rows of `vectors`.
fn hull(vectors: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut lo = vec![f32::INFINITY; dim];
    let mut hi = vec![f32::NEG_INFINITY; dim];
    for v in vectors.chunks_exact(dim) {
        for (i, &x) in v.iter().enumerate() {
            lo[i] = lo[i].min(x);
            hi[i] = hi[i].max(x);
        }
    }
    for (l, h) in lo.iter_mut().zip(&mut hi) {
        if l > h {
            (*l, *h) = (0.0, 0.0);
        }
    }
    (lo, hi)
}

/// The codes of a compressed block, borrowed.
#[derive(Clone, Copy)]
pub(crate) struct Codes<'a> {
    pub(crate) precision: Precision,
    /// The range (empty for float16).
    pub(crate) lo: &'a [f32],
    pub(crate) step: &'a [f32],
    /// `n · precision.code_bytes(dim)` bytes.
    pub(crate) bytes: &'a [u8],
}

impl Codes<'_> {
    /// Decodes every vector into `out` (row-major, `dim` columns), in the
    /// kernel of the SIMD level in use.
    pub(crate) fn decode_into(&self, dim: usize, out: &mut Vec<f32>) {
        self.decode_at(SimdLevel::current(), dim, out);
    }

    /// [`Codes::decode_into`] at `level` (or the best available below it).
    pub(crate) fn decode_at(&self, level: SimdLevel, dim: usize, out: &mut Vec<f32>) {
        out.clear();
        let len = self.decode_front(level, dim, out);
        out.truncate(len);
    }

    /// Decodes every vector into the front of `buf` and returns them:
    /// `buf` only grows, so a buffer reused for blocks of every size is
    /// not zeroed again before each decode (that was about a tenth of a
    /// compressed query).
    pub(crate) fn decode_in<'b>(&self, dim: usize, buf: &'b mut Vec<f32>) -> &'b [f32] {
        let len = self.decode_front(SimdLevel::current(), dim, buf);
        &buf[..len]
    }

    /// The squared norm of every decoded vector, `kernel::sum` of it with
    /// itself (the canonical order: the same bits at every SIMD level),
    /// decoded 16 KiB at a time.
    pub(crate) fn squared_norms(&self, dim: usize) -> Vec<f32> {
        let cb = self.precision.code_bytes(dim).max(1);
        let n = self.bytes.len() / cb;
        let piece = ((16 << 10) / (4 * dim.max(1))).max(1);
        let mut out = Vec::with_capacity(n);
        let mut buf = Vec::new();
        for first in (0..n).step_by(piece) {
            let end = (first + piece).min(n);
            let part = Codes {
                bytes: &self.bytes[first * cb..end * cb],
                ..*self
            };
            for x in part.decode_in(dim, &mut buf).chunks_exact(dim.max(1)) {
                out.push(kernel::sum(Sum::Dot, x, x));
            }
        }
        out
    }

    /// The sums of query `q` with every vector of these float16 codes, as
    /// [`vecseal_kmeans::kernel::sum`] gives them over the decoded vectors
    /// (the same bits), without a decoded copy: `Σ q·x`, or `Σ (q − x)²`
    /// with `squared`.
    pub(crate) fn f16_sums(&self, q: &[f32], squared: bool, out: &mut Vec<f32>) {
        self.f16_sums_at(SimdLevel::current(), q, squared, out);
    }

    /// [`Codes::f16_sums`] at `level` (or the best available below it).
    pub(crate) fn f16_sums_at(
        &self,
        level: SimdLevel,
        q: &[f32],
        squared: bool,
        out: &mut Vec<f32>,
    ) {
        debug_assert_eq!(self.precision, Precision::Float16);
        let n = self.bytes.len() / (2 * q.len()).max(1);
        out.clear();
        out.resize(n, 0.0);
        if !q.is_empty() {
            half::sums(level, self.bytes, q, squared, out);
        }
    }

    /// Decodes into `buf[..len]` (growing `buf` to `len` first if it is
    /// shorter; the decode writes every value there); returns `len`.
    fn decode_front(&self, level: SimdLevel, dim: usize, buf: &mut Vec<f32>) -> usize {
        let n = self.bytes.len() / self.precision.code_bytes(dim).max(1);
        let len = n * dim;
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        let out = &mut buf[..len];
        if self.precision == Precision::Float16 {
            half::decode(level, self.bytes, out);
        } else {
            let codes = *self;
            vecseal_kmeans::kernel::dispatch_at(level, Decode { codes, dim, out });
        }
        len
    }
}

struct Decode<'a, 'b> {
    codes: Codes<'a>,
    dim: usize,
    out: &'b mut [f32],
}

impl WithSimd for Decode<'_, '_> {
    type Output = ();

    // Plain loops, inlined into the level's `target_feature` context,
    // where they vectorise; no fused operations, so every level rounds
    // the same.
    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Decode { codes, dim, out } = self;
        let cb = codes.precision.code_bytes(dim);
        match codes.precision {
            Precision::Tq8 => {
                for (row, c) in out.chunks_exact_mut(dim).zip(codes.bytes.chunks_exact(cb)) {
                    for (((o, &c), &l), &s) in row.iter_mut().zip(c).zip(codes.lo).zip(codes.step) {
                        *o = l + s * f32::from(c);
                    }
                }
            }
            Precision::Tq4 => {
                for (row, c) in out.chunks_exact_mut(dim).zip(codes.bytes.chunks_exact(cb)) {
                    let (pairs, last) = row.split_at_mut(dim & !1);
                    for ((o, &c), (l, s)) in pairs
                        .chunks_exact_mut(2)
                        .zip(c)
                        .zip(codes.lo.chunks_exact(2).zip(codes.step.chunks_exact(2)))
                    {
                        o[0] = l[0] + s[0] * f32::from(c & 15);
                        o[1] = l[1] + s[1] * f32::from(c >> 4);
                    }
                    if let Some(o) = last.first_mut() {
                        let i = dim - 1;
                        *o = codes.lo[i] + codes.step[i] * f32::from(c[cb - 1] & 15);
                    }
                }
            }
            Precision::Float16 => unreachable!("float16 is widened by `half::decode`"),
            Precision::Float32 => unreachable!("float32 blocks hold no codes"),
        }
    }
}

/// A compressed block under edit: its coded vectors (the first ids of
/// the block) and the exact vectors pushed since (the rest), coded when
/// the block is sealed ([`Pending::finish`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Pending {
    /// The range of the coded vectors (none yet: a fresh block, or float16).
    pub(crate) range: Option<Range>,
    pub(crate) codes: Vec<u8>,
    pub(crate) exact: Vec<f32>,
}

impl Pending {
    pub(crate) fn of(codes: &Codes<'_>) -> Self {
        Self {
            // A block read from the store has a range; a new one has none.
            range: (!codes.lo.is_empty()).then(|| Range {
                lo: codes.lo.to_vec(),
                step: codes.step.to_vec(),
            }),
            codes: codes.bytes.to_vec(),
            exact: Vec::new(),
        }
    }

    /// How many vectors are coded.
    pub(crate) fn coded(&self, p: Precision, dim: usize) -> usize {
        self.codes.len() / p.code_bytes(dim).max(1)
    }

    /// Removes vector `i` of `len`: the last vector of its part (coded or
    /// exact) takes its place. Returns the position that moved.
    pub(crate) fn swap_remove(&mut self, p: Precision, dim: usize, i: usize, len: usize) -> usize {
        let coded = self.coded(p, dim);
        if i < coded {
            let cb = p.code_bytes(dim);
            let last = coded - 1;
            self.codes.copy_within(last * cb..(last + 1) * cb, i * cb);
            self.codes.truncate(last * cb);
            return last;
        }
        let (j, last) = (i - coded, len - 1 - coded);
        self.exact
            .copy_within(last * dim..(last + 1) * dim, j * dim);
        self.exact.truncate(last * dim);
        len - 1
    }

    /// The block's range and every code, the exact vectors coded: in the
    /// range when it covers them, else in a widened one (the other codes
    /// re-coded from their values), or in one fitted to them (a fresh block).
    pub(crate) fn finish(&self, p: Precision, dim: usize) -> (Option<Range>, Vec<u8>) {
        let mut codes = Vec::with_capacity(self.codes.len() + p.code_bytes(self.exact.len()));
        if p == Precision::Float16 {
            codes.extend_from_slice(&self.codes);
            encode_f16(&self.exact, &mut codes);
            return (None, codes);
        }
        let levels = p.levels();
        let range = match &self.range {
            None => Range::fit(&self.exact, dim, levels),
            Some(r) if r.covers(&self.exact, dim, levels) => r.clone(),
            Some(r) => {
                let wide = r.widened(&self.exact, dim, levels);
                let mut old = Vec::new();
                let coded = Codes {
                    precision: p,
                    lo: &r.lo,
                    step: &r.step,
                    bytes: &self.codes,
                };
                coded.decode_into(dim, &mut old);
                wide.encode(p, &old, dim, &mut codes);
                wide.encode(p, &self.exact, dim, &mut codes);
                return (Some(wide), codes);
            }
        };
        codes.extend_from_slice(&self.codes);
        range.encode(p, &self.exact, dim, &mut codes);
        (Some(range), codes)
    }
}

#[cfg(test)]
mod tests;
