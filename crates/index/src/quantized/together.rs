//! The integer pass of up to [`TOGETHER`] queries on one block at once,
//! for the few queries of a block below the GEMM screen (a single query,
//! a batch at few probes, the server's coalesced queries): four rows of
//! codes at a time, each loaded and widened once for the queries, each
//! load of a query's weights serving the four rows, each pair of codes
//! meeting the weights in one `vpmaddwd` (AVX-512BW; at AVX2 two rows at a
//! time). The sums are the exact integers of one query at a time (every
//! partial sum is exact in `i32`, see `max_level`), so the results are the
//! same bits at every SIMD level and in any grouping. At the scalar level
//! (and for the last rows of a block, fewer than four, and short rows in
//! groups of fewer than four queries: see [`FEW_FROM`]) the queries go one
//! at a time.
//!
//! The compiler turns one query's row sum into `vpmaddwd` pairs by itself,
//! but not four queries' sums (written as plain loops they ran 1.5–14×
//! slower than four single passes), hence the intrinsics. Measured on a
//! 768-d block of 160 rows (a timing loop, not kept; one query at a time
//! → four together, ns per row and query): AVX-512 tq8 19.8–20.0 →
//! 11.5–11.6, tq4 27.0 → 12.4–12.5; AVX2 tq8 28.8–31.7 → 22.6–22.8, tq4
//! 39.4–39.5 → 19.1–19.2. One row at a time for the four queries was no
//! faster than one query at a time (the weights' loads bound it).
//!
//! Blocks come from memory, not from the caches (a list cache of many
//! megabytes, or a block just decrypted), and the hardware prefetcher did
//! not keep up with four rows read side by side: over 600 such blocks
//! (74 MB of 768-d tq8 codes) four queries took 36.6 ns per row and query
//! against 11.5 in cache, two queries 105. So the kernels prefetch the
//! rows two groups of four ahead (`x86::AHEAD`): 15.5 and 25.7 ns (AVX2: 40.1 → 25.7
//! and 67.1 → 29.3). Groups of one to three queries have kernels too (at
//! AVX-512 in cache, tq8 ns per row and query: one 16.9 against 20.0 for
//! the plain loop, two 13.4, three 12.0).

use vecseal_kmeans::kernel::SimdLevel;

use super::CodedQuery;
use crate::precision::{Codes, Precision};

/// Queries the integer pass scores together.
pub(crate) const TOGETHER: usize = 4;

/// The fewest bytes of codes a row needs for two or three queries to go
/// through the kernel rather than one at a time, and for one query alone.
/// Short rows spend more on the kernel's per-row reductions than they
/// save: in a timing loop (in cache, AVX-512), at 64 bytes (64-d tq8) two
/// queries took 4.5 ns per row and query against 3.8 one at a time, one
/// query 5.1 against 3.8 (at 32 bytes, 64-d tq4, 9.1 against 5.7); at
/// 256 bytes one query was even (8.2 against 8.4), at 768 ahead (17.6
/// against 20.0, and out of cache the prefetch counts too).
const FEW_FROM: usize = 128;
/// The fewest bytes of codes a row needs for one query to go through the
/// kernel (see [`FEW_FROM`]).
const ONE_FROM: usize = 256;

/// [`CodedQuery::dots`] of each of `coded` (each coded against `codes`)
/// with every vector of `codes`, one query after the other into `out`
/// (`coded.len()` rows of the block's length), up to [`TOGETHER`] at a
/// time: the same bits as one query at a time. `sums` is scratch space
/// (the kernel's integer sums), kept by the caller between blocks.
pub(crate) fn dots_together(
    coded: &[CodedQuery],
    codes: &Codes<'_>,
    dim: usize,
    out: &mut Vec<f32>,
    sums: &mut Vec<i32>,
) {
    dots_together_at(SimdLevel::current(), coded, codes, dim, out, sums);
}

/// Codes the queries of `group` (at most [`TOGETHER`]) one after the
/// other with `code(slot, query)`, each into the next free slot: the
/// queries coded, in slot order, and how many; those `code` refuses go to
/// `refused`.
pub(crate) fn code_group(
    group: &[u32],
    refused: &mut Vec<u32>,
    mut code: impl FnMut(usize, u32) -> bool,
) -> ([u32; TOGETHER], usize) {
    let mut coded = [0u32; TOGETHER];
    let mut m = 0;
    for &qi in group {
        if code(m, qi) {
            coded[m] = qi;
            m += 1;
        } else {
            refused.push(qi);
        }
    }
    (coded, m)
}

/// [`dots_together`] at `level` (or the best available below it).
pub(crate) fn dots_together_at(
    level: SimdLevel,
    coded: &[CodedQuery],
    codes: &Codes<'_>,
    dim: usize,
    out: &mut Vec<f32>,
    sums: &mut Vec<i32>,
) {
    let cb = codes.precision.code_bytes(dim);
    let n = codes.bytes.len() / cb.max(1);
    out.clear();
    out.resize(n * coded.len(), 0.0);
    if n == 0 {
        return;
    }
    // Whole groups of four rows go to the kernel, the queries up to four
    // at a time; the last rows (fewer than four) one query at a time.
    let quads = n / 4 * 4;
    let (head, rest) = codes.bytes.split_at(quads * cb);
    let (head, rest) = (
        Codes {
            bytes: head,
            ..*codes
        },
        Codes {
            bytes: rest,
            ..*codes
        },
    );
    for (group, out) in coded.chunks(TOGETHER).zip(out.chunks_mut(TOGETHER * n)) {
        let done = match group.len() {
            4 => at_once::<4>(level, group, &head, cb, sums),
            3 if cb >= FEW_FROM => at_once::<3>(level, group, &head, cb, sums),
            2 if cb >= FEW_FROM => at_once::<2>(level, group, &head, cb, sums),
            1 if cb >= ONE_FROM => at_once::<1>(level, group, &head, cb, sums),
            _ => false,
        };
        if done {
            let q = group.len();
            for (r, row) in sums.chunks_exact(q).enumerate() {
                for (j, (c, &sum)) in group.iter().zip(row).enumerate() {
                    out[j * n + r] = c.finish(sum);
                }
            }
            for (c, out) in group.iter().zip(out.chunks_exact_mut(n)) {
                c.dots_into(level, &rest, cb, &mut out[quads..]);
            }
            continue;
        }
        for (c, out) in group.iter().zip(out.chunks_exact_mut(n)) {
            c.dots_into(level, codes, cb, out);
        }
    }
}

/// The sums of the `Q` queries of `group` with every row of `codes` (a
/// multiple of four rows) into `sums` (`Q` per row, row after row);
/// `false` where `group` is not `Q` queries or no kernel at or below
/// `level` applies.
fn at_once<const Q: usize>(
    level: SimdLevel,
    group: &[CodedQuery],
    codes: &Codes<'_>,
    cb: usize,
    sums: &mut Vec<i32>,
) -> bool {
    let Ok(coded) = <&[CodedQuery; Q]>::try_from(group) else {
        return false;
    };
    let tq4 = match codes.precision {
        Precision::Tq8 => false,
        Precision::Tq4 => true,
        _ => return false,
    };
    let len = if tq4 { 2 * cb } else { cb };
    if cb == 0 || coded.iter().any(|q| q.k.len() != len) {
        return false;
    }
    sums.clear();
    sums.resize(codes.bytes.len() / cb * Q, 0);
    let ks: [&[i16]; Q] = std::array::from_fn(|j| &coded[j].k[..]);
    x86::run(
        level,
        Rows {
            tq4,
            codes: codes.bytes,
            cb,
            ks,
        },
        sums.as_chunks_mut::<Q>().0,
    )
}

/// What the kernels read: rows of `cb` bytes (8-bit codes, or two 4-bit
/// codes a byte, the weights then `[even dimensions | odd dimensions]`)
/// and `Q` queries' weights.
struct Rows<'a, const Q: usize> {
    tq4: bool,
    codes: &'a [u8],
    cb: usize,
    ks: [&'a [i16]; Q],
}

impl<'a, const Q: usize> Rows<'a, Q> {
    /// Each query's weights in arrays of `W` over the first `body` codes of
    /// a row: of the 8-bit codes or the low nibbles, and of the high
    /// nibbles (none at 8 bits).
    #[inline(always)]
    fn weights<const W: usize>(&self, body: usize) -> Weights<'a, W, Q> {
        let (ks, cb) = (self.ks, self.cb);
        Weights {
            low: std::array::from_fn(|j| ks[j][..body].as_chunks::<W>().0),
            high: std::array::from_fn(|j| {
                let k = ks[j];
                k[cb.min(k.len())..(cb + body).min(k.len())]
                    .as_chunks::<W>()
                    .0
            }),
        }
    }

    /// The first `body` bytes of row `t` of `group` in arrays of `W`.
    #[inline(always)]
    fn row<'g, const W: usize>(&self, group: &'g [u8], t: usize, body: usize) -> &'g [[u8; W]] {
        group[t * self.cb..t * self.cb + body].as_chunks::<W>().0
    }

    /// The `Q` sums of bytes `from..` of `row`, one byte at a time (the
    /// tail a vector kernel leaves).
    #[inline(always)]
    fn tail(&self, row: &[u8], from: usize, sums: &mut [i32; Q]) {
        for (d, &c) in row.iter().enumerate().skip(from) {
            for (s, k) in sums.iter_mut().zip(self.ks) {
                let add = if self.tq4 {
                    i32::from(c & 15) * i32::from(k[d])
                        + i32::from(c >> 4) * i32::from(k[self.cb + d])
                } else {
                    i32::from(c) * i32::from(k[d])
                };
                *s = s.wrapping_add(add);
            }
        }
    }
}

/// `Q` queries' weights in arrays of `W` (see [`Rows::weights`]).
struct Weights<'a, const W: usize, const Q: usize> {
    low: [&'a [[i16; W]]; Q],
    high: [&'a [[i16; W]]; Q],
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{__m128i, __m256i, __m512i};

    use pulp::x86::{V3, V4};
    use pulp::{Simd, WithSimd};
    use vecseal_kmeans::kernel::SimdLevel;

    use super::Rows;

    /// Runs the best kernel at or below `level`; `false` if none applies.
    pub(super) fn run<const Q: usize>(
        level: SimdLevel,
        rows: Rows<'_, Q>,
        sums: &mut [[i32; Q]],
    ) -> bool {
        if level >= SimdLevel::V4 {
            if let Some(simd) = V4::try_new() {
                Simd::vectorize(simd, Wide { simd, rows, sums });
                return true;
            }
        }
        if level >= SimdLevel::V3 {
            if let Some(simd) = V3::try_new() {
                Simd::vectorize(simd, Narrow { simd, rows, sums });
                return true;
            }
        }
        false
    }

    /// How many groups of four rows ahead the kernels prefetch (2, 4 and 8
    /// measured the same within the spread; without it, 2.4–4× slower on
    /// blocks from memory, see the module docs).
    const AHEAD: usize = 2;

    /// 32 codes of each of 4 rows at a time in 512-bit registers.
    struct Wide<'a, const Q: usize> {
        simd: V4,
        rows: Rows<'a, Q>,
        sums: &'a mut [[i32; Q]],
    }

    impl<const Q: usize> WithSimd for Wide<'_, Q> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) {
            let Wide { simd, rows, sums } = self;
            let (f, bw) = (simd.avx512f, simd.avx512bw);
            let cb = rows.cb;
            let body = cb / 32 * 32;
            let nibble = f._mm512_set1_epi16(15);
            let w = rows.weights::<32>(body);
            // Four rows at a time: each load of a query's weights serves
            // four rows (the loads, not the multiplies, bound one row).
            for (quad, out) in rows
                .codes
                .chunks_exact(4 * cb)
                .zip(sums.chunks_exact_mut(4))
            {
                let r: [&[[u8; 32]]; 4] = std::array::from_fn(|t| rows.row(quad, t, body));
                let m = r[0].len();
                let r = r.map(|c| &c[..m]);
                let (even, odd) = (w.low.map(|k| &k[..m]), w.high.map(|k| &k[..m.min(k.len())]));
                let mut acc = [[f._mm512_setzero_si512(); Q]; 4];
                // Prefetching never faults: past the block's end is fine.
                let ahead = quad.as_ptr().wrapping_add(AHEAD * 4 * cb);
                for i in 0..m {
                    let at = ahead.wrapping_add(i * 128).cast::<i8>();
                    simd.sse
                        ._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at);
                    simd.sse
                        ._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at.wrapping_add(64));
                    let mut c = [f._mm512_setzero_si512(); 4];
                    for t in 0..4 {
                        c[t] =
                            bw._mm512_cvtepu8_epi16(bytemuck::cast::<[u8; 32], __m256i>(r[t][i]));
                    }
                    if rows.tq4 {
                        let mut hi = [f._mm512_setzero_si512(); 4];
                        for t in 0..4 {
                            hi[t] = bw._mm512_srli_epi16::<4>(c[t]);
                            c[t] = f._mm512_and_si512(c[t], nibble);
                        }
                        for j in 0..Q {
                            let e = bytemuck::cast::<[i16; 32], __m512i>(even[j][i]);
                            let o = bytemuck::cast::<[i16; 32], __m512i>(odd[j][i]);
                            for t in 0..4 {
                                let p = f._mm512_add_epi32(
                                    bw._mm512_madd_epi16(c[t], e),
                                    bw._mm512_madd_epi16(hi[t], o),
                                );
                                acc[t][j] = f._mm512_add_epi32(acc[t][j], p);
                            }
                        }
                    } else {
                        for j in 0..Q {
                            let w = bytemuck::cast::<[i16; 32], __m512i>(even[j][i]);
                            for t in 0..4 {
                                acc[t][j] =
                                    f._mm512_add_epi32(acc[t][j], bw._mm512_madd_epi16(c[t], w));
                            }
                        }
                    }
                }
                for (t, out) in out.iter_mut().enumerate() {
                    let mut each = [0i32; Q];
                    for (s, a) in each.iter_mut().zip(acc[t]) {
                        *s = f._mm512_reduce_add_epi32(a);
                    }
                    rows.tail(&quad[t * cb..(t + 1) * cb], body, &mut each);
                    *out = each;
                }
            }
        }
    }

    /// 16 codes of each of 2 rows at a time in 256-bit registers (AVX2 has
    /// 16 of them: four rows' accumulators would spill).
    struct Narrow<'a, const Q: usize> {
        simd: V3,
        rows: Rows<'a, Q>,
        sums: &'a mut [[i32; Q]],
    }

    impl<const Q: usize> WithSimd for Narrow<'_, Q> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, _: S) {
            let Narrow { simd, rows, sums } = self;
            let (avx, avx2, sse2) = (simd.avx, simd.avx2, simd.sse2);
            let cb = rows.cb;
            let body = cb / 16 * 16;
            let nibble = avx._mm256_set1_epi16(15);
            let w = rows.weights::<16>(body);
            let pairs = rows.codes.chunks_exact(2 * cb);
            for (pair, out) in pairs.zip(sums.chunks_exact_mut(2)) {
                let r: [&[[u8; 16]]; 2] = std::array::from_fn(|t| rows.row(pair, t, body));
                let m = r[0].len();
                let r = r.map(|c| &c[..m]);
                let (even, odd) = (w.low.map(|k| &k[..m]), w.high.map(|k| &k[..m.min(k.len())]));
                let mut acc = [[avx._mm256_setzero_si256(); Q]; 2];
                // The same distance ahead as the wide kernel, a pair's
                // worth of rows before the pair's loop, one prefetch every
                // 32 bytes (one per 64-byte line instead was slower over
                // blocks from memory: one query 79-81 against 47-51 ns per
                // row in a timing loop; not understood).
                let ahead = pair.as_ptr().wrapping_add(AHEAD * 4 * cb);
                for i in 0..m {
                    let at = ahead.wrapping_add(i * 32).cast::<i8>();
                    simd.sse
                        ._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(at);
                }
                let widen = |i: usize| -> [__m256i; 2] {
                    std::array::from_fn(|t| {
                        avx2._mm256_cvtepu8_epi16(bytemuck::cast::<[u8; 16], __m128i>(r[t][i]))
                    })
                };
                // Two loops, not one with a branch inside: with the branch
                // the accumulators of two queries spilled (slower than one
                // query at a time).
                if rows.tq4 {
                    for i in 0..m {
                        let mut c = widen(i);
                        let mut hi = [avx._mm256_setzero_si256(); 2];
                        for t in 0..2 {
                            hi[t] = avx2._mm256_srli_epi16::<4>(c[t]);
                            c[t] = avx2._mm256_and_si256(c[t], nibble);
                        }
                        for j in 0..Q {
                            let e = bytemuck::cast::<[i16; 16], __m256i>(even[j][i]);
                            let o = bytemuck::cast::<[i16; 16], __m256i>(odd[j][i]);
                            for t in 0..2 {
                                let p = avx2._mm256_add_epi32(
                                    avx2._mm256_madd_epi16(c[t], e),
                                    avx2._mm256_madd_epi16(hi[t], o),
                                );
                                acc[t][j] = avx2._mm256_add_epi32(acc[t][j], p);
                            }
                        }
                    }
                } else {
                    // `i` indexes both rows and every query's weights.
                    #[allow(clippy::needless_range_loop)]
                    for i in 0..m {
                        let c = widen(i);
                        for j in 0..Q {
                            let w = bytemuck::cast::<[i16; 16], __m256i>(even[j][i]);
                            for t in 0..2 {
                                let p = avx2._mm256_madd_epi16(c[t], w);
                                acc[t][j] = avx2._mm256_add_epi32(acc[t][j], p);
                            }
                        }
                    }
                }
                for (t, out) in out.iter_mut().enumerate() {
                    // Up to four queries' lanes summed together (zeros
                    // for the missing ones): each 128-bit half ends as
                    // the four partial sums.
                    let zero = avx._mm256_setzero_si256();
                    let [a0, a1, a2, a3] = std::array::from_fn(|j| acc[t].get(j).copied());
                    let a = |x: Option<__m256i>| x.unwrap_or(zero);
                    let h = avx2._mm256_hadd_epi32(
                        avx2._mm256_hadd_epi32(a(a0), a(a1)),
                        avx2._mm256_hadd_epi32(a(a2), a(a3)),
                    );
                    let low = avx._mm256_castsi256_si128(h);
                    let high = avx2._mm256_extracti128_si256::<1>(h);
                    let four: [i32; 4] = bytemuck::cast(sse2._mm_add_epi32(low, high));
                    let mut each: [i32; Q] = std::array::from_fn(|j| four[j]);
                    rows.tail(&pair[t * cb..(t + 1) * cb], body, &mut each);
                    *out = each;
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use vecseal_kmeans::kernel::SimdLevel;

    use super::Rows;

    /// No vector kernel here: the queries go one at a time.
    pub(super) fn run<const Q: usize>(_: SimdLevel, _: Rows<'_, Q>, _: &mut [[i32; Q]]) -> bool {
        false
    }
}
