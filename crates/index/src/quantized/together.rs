//! The integer pass of [`TOGETHER`] queries on one block at once, for the
//! few queries of a block below the GEMM screen (a batch at few probes,
//! or the server's coalesced queries): four rows of codes at a time, each
//! loaded and widened once for the four queries, each load of a query's
//! weights serving the four rows, each pair of codes meeting the weights
//! in one `vpmaddwd` (AVX-512BW; at AVX2 two rows at a time). The sums
//! are the exact integers of one query at a time (every partial sum is
//! exact in `i32`, see `max_level`), so the results are the same bits at
//! every SIMD level and in any grouping. At the scalar level (and for the
//! rows and queries left over from groups of four) the queries go one at
//! a time.
//!
//! The compiler turns one query's row sum into `vpmaddwd` pairs by itself,
//! but not four queries' sums (written as plain loops they ran 1.5–14×
//! slower than four single passes), hence the intrinsics. Measured on a
//! 768-d block of 160 rows (a timing loop, not kept; one query at a time
//! → four together, ns per row and query): AVX-512 tq8 19.8–20.0 →
//! 11.5–11.6, tq4 27.0 → 12.4–12.5; AVX2 tq8 28.8–31.7 → 22.6–22.8, tq4
//! 39.4–39.5 → 19.1–19.2. One row at a time for the four queries was no
//! faster than one query at a time (the weights' loads bound it).

use vecseal_kmeans::kernel::SimdLevel;

use super::CodedQuery;
use crate::precision::{Codes, Precision};

/// Queries the integer pass scores together.
pub(crate) const TOGETHER: usize = 4;

/// [`CodedQuery::dots`] of each of `coded` (each coded against `codes`)
/// with every vector of `codes`, one query after the other into `out`
/// (`coded.len()` rows of the block's length), [`TOGETHER`] at a time: the
/// same bits as one query at a time.
pub(crate) fn dots_together(
    coded: &[CodedQuery],
    codes: &Codes<'_>,
    dim: usize,
    out: &mut Vec<f32>,
) {
    dots_together_at(SimdLevel::current(), coded, codes, dim, out);
}

/// [`dots_together`] at `level` (or the best available below it).
pub(crate) fn dots_together_at(
    level: SimdLevel,
    coded: &[CodedQuery],
    codes: &Codes<'_>,
    dim: usize,
    out: &mut Vec<f32>,
) {
    let cb = codes.precision.code_bytes(dim);
    let n = codes.bytes.len() / cb.max(1);
    out.clear();
    out.resize(n * coded.len(), 0.0);
    if n == 0 {
        return;
    }
    // Whole groups of four queries over whole groups of four rows go to
    // the kernel; the rest one query at a time.
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
    let mut sums = Vec::new();
    for (group, out) in coded.chunks(TOGETHER).zip(out.chunks_mut(TOGETHER * n)) {
        let four = <&[CodedQuery; TOGETHER]>::try_from(group).ok();
        if let Some(four) = four.filter(|f| four_at_once(level, f, &head, cb, &mut sums)) {
            for (r, row) in sums.iter().enumerate() {
                for (j, (q, &sum)) in four.iter().zip(row).enumerate() {
                    out[j * n + r] = q.finish(sum);
                }
            }
            for (q, out) in four.iter().zip(out.chunks_exact_mut(n)) {
                q.dots_into(level, &rest, cb, &mut out[quads..]);
            }
            continue;
        }
        for (q, out) in group.iter().zip(out.chunks_exact_mut(n)) {
            q.dots_into(level, codes, cb, out);
        }
    }
}

/// The four queries' sums with every row of `codes` (a multiple of four
/// rows) into `sums` (one array per row); `false` where no kernel at or
/// below `level` applies.
fn four_at_once(
    level: SimdLevel,
    coded: &[CodedQuery; TOGETHER],
    codes: &Codes<'_>,
    cb: usize,
    sums: &mut Vec<[i32; TOGETHER]>,
) -> bool {
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
    sums.resize(codes.bytes.len() / cb, [0; TOGETHER]);
    let ks: [&[i16]; TOGETHER] = [&coded[0].k, &coded[1].k, &coded[2].k, &coded[3].k];
    x86::run(
        level,
        Rows {
            tq4,
            codes: codes.bytes,
            cb,
            ks,
        },
        sums,
    )
}

/// What the kernels read: rows of `cb` bytes (8-bit codes, or two 4-bit
/// codes a byte, the weights then `[even dimensions | odd dimensions]`)
/// and four queries' weights.
struct Rows<'a> {
    tq4: bool,
    codes: &'a [u8],
    cb: usize,
    ks: [&'a [i16]; TOGETHER],
}

impl<'a> Rows<'a> {
    /// Each query's weights in arrays of `W` over the first `body` codes of
    /// a row: of the 8-bit codes or the low nibbles, and of the high
    /// nibbles (none at 8 bits).
    #[inline(always)]
    fn weights<const W: usize>(&self, body: usize) -> Weights<'a, W> {
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

    /// The four sums of bytes `from..` of `row`, one byte at a time (the
    /// tail a vector kernel leaves).
    #[inline(always)]
    fn tail(&self, row: &[u8], from: usize, sums: &mut [i32; TOGETHER]) {
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

/// Four queries' weights in arrays of `W` (see [`Rows::weights`]).
struct Weights<'a, const W: usize> {
    low: [&'a [[i16; W]]; TOGETHER],
    high: [&'a [[i16; W]]; TOGETHER],
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{__m128i, __m256i, __m512i};

    use pulp::x86::{V3, V4};
    use pulp::{Simd, WithSimd};
    use vecseal_kmeans::kernel::SimdLevel;

    use super::{Rows, TOGETHER};

    /// Runs the best kernel at or below `level`; `false` if none applies.
    pub(super) fn run(level: SimdLevel, rows: Rows<'_>, sums: &mut [[i32; TOGETHER]]) -> bool {
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

    /// 32 codes of each of 4 rows at a time in 512-bit registers.
    struct Wide<'a> {
        simd: V4,
        rows: Rows<'a>,
        sums: &'a mut [[i32; TOGETHER]],
    }

    impl WithSimd for Wide<'_> {
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
                let mut acc = [[f._mm512_setzero_si512(); TOGETHER]; 4];
                for i in 0..m {
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
                        for j in 0..TOGETHER {
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
                        for j in 0..TOGETHER {
                            let w = bytemuck::cast::<[i16; 32], __m512i>(even[j][i]);
                            for t in 0..4 {
                                acc[t][j] =
                                    f._mm512_add_epi32(acc[t][j], bw._mm512_madd_epi16(c[t], w));
                            }
                        }
                    }
                }
                for (t, out) in out.iter_mut().enumerate() {
                    let mut four = [0i32; TOGETHER];
                    for (s, a) in four.iter_mut().zip(acc[t]) {
                        *s = f._mm512_reduce_add_epi32(a);
                    }
                    rows.tail(&quad[t * cb..(t + 1) * cb], body, &mut four);
                    *out = four;
                }
            }
        }
    }

    /// 16 codes of each of 2 rows at a time in 256-bit registers (AVX2 has
    /// 16 of them: four rows' accumulators would spill).
    struct Narrow<'a> {
        simd: V3,
        rows: Rows<'a>,
        sums: &'a mut [[i32; TOGETHER]],
    }

    impl WithSimd for Narrow<'_> {
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
                let mut acc = [[avx._mm256_setzero_si256(); TOGETHER]; 2];
                for i in 0..m {
                    let mut c = [avx._mm256_setzero_si256(); 2];
                    for t in 0..2 {
                        let bytes = bytemuck::cast::<[u8; 16], __m128i>(r[t][i]);
                        c[t] = avx2._mm256_cvtepu8_epi16(bytes);
                    }
                    if rows.tq4 {
                        let mut hi = [avx._mm256_setzero_si256(); 2];
                        for t in 0..2 {
                            hi[t] = avx2._mm256_srli_epi16::<4>(c[t]);
                            c[t] = avx2._mm256_and_si256(c[t], nibble);
                        }
                        for j in 0..TOGETHER {
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
                    } else {
                        for j in 0..TOGETHER {
                            let w = bytemuck::cast::<[i16; 16], __m256i>(even[j][i]);
                            for t in 0..2 {
                                let p = avx2._mm256_madd_epi16(c[t], w);
                                acc[t][j] = avx2._mm256_add_epi32(acc[t][j], p);
                            }
                        }
                    }
                }
                for (t, out) in out.iter_mut().enumerate() {
                    // The four queries' lanes summed together: each
                    // 128-bit half ends as the four partial sums.
                    let [a0, a1, a2, a3] = acc[t];
                    let h = avx2._mm256_hadd_epi32(
                        avx2._mm256_hadd_epi32(a0, a1),
                        avx2._mm256_hadd_epi32(a2, a3),
                    );
                    let low = avx._mm256_castsi256_si128(h);
                    let high = avx2._mm256_extracti128_si256::<1>(h);
                    let mut four: [i32; TOGETHER] = bytemuck::cast(sse2._mm_add_epi32(low, high));
                    rows.tail(&pair[t * cb..(t + 1) * cb], body, &mut four);
                    *out = four;
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use vecseal_kmeans::kernel::SimdLevel;

    use super::{Rows, TOGETHER};

    /// No vector kernel here: the queries go one at a time.
    pub(super) fn run(_: SimdLevel, _: Rows<'_>, _: &mut [[i32; TOGETHER]]) -> bool {
        false
    }
}
