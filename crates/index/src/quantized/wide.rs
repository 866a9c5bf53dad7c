//! The integer pass's row sums in explicit AVX-512BW and AVX2
//! instructions: codes widened to 16 bits (`vpmovzxbw`), multiplied by the
//! coded weights and added in pairs (`vpmaddwd`), pairs added in 32-bit
//! lanes. The compiler's vectorisation of the portable loop
//! ([`super::row_sum`]) narrowed 32-bit lanes inside it and ran about three
//! times the instructions. Integer sums are exact (see
//! [`super::max_level`]) and the same in any order, so every level gives
//! the portable loop's result, bit for bit.

use vecseal_kmeans::kernel::SimdLevel;

use super::Sums;

/// Runs `op` at `level` (or the best available below it).
pub(super) fn run(level: SimdLevel, op: Sums<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        use pulp::Simd;
        if level >= SimdLevel::V4 {
            if let Some(simd) = pulp::x86::V4::try_new() {
                return Simd::vectorize(simd, x86::V4Sums(simd, op));
            }
        }
        if level >= SimdLevel::V3 {
            if let Some(simd) = pulp::x86::V3::try_new() {
                return Simd::vectorize(simd, x86::V3Sums(simd, op));
            }
        }
    }
    vecseal_kmeans::kernel::dispatch_at(level, op);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{__m128i, __m256i, __m512i};

    use pulp::x86::{V3, V4};
    use pulp::{Simd, WithSimd};

    use crate::quantized::Sums;

    pub(super) struct V4Sums<'a>(pub(super) V4, pub(super) Sums<'a>);
    pub(super) struct V3Sums<'a>(pub(super) V3, pub(super) Sums<'a>);

    impl WithSimd for V4Sums<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) {
            let simd = self.0;
            self.1.run(|row, k| row_sum_v4(simd, row, k));
        }
    }

    impl WithSimd for V3Sums<'_> {
        type Output = ();

        #[inline(always)]
        fn with_simd<S: Simd>(self, _simd: S) {
            let simd = self.0;
            self.1.run(|row, k| row_sum_v3(simd, row, k));
        }
    }

    /// `Σ c·k` over a row, 32 codes at a time.
    #[inline(always)]
    fn row_sum_v4(simd: V4, row: &[u8], k: &[i16]) -> i32 {
        const W: usize = 32;
        let body = row.len().min(k.len()) / W * W;
        let mut acc = simd.avx512f._mm512_setzero_si512();
        for (c, k) in row[..body].chunks_exact(W).zip(k[..body].chunks_exact(W)) {
            let c: __m256i = bytemuck::pod_read_unaligned(c);
            let k: __m512i = bytemuck::pod_read_unaligned(bytemuck::cast_slice(k));
            let c = simd.avx512bw._mm512_cvtepu8_epi16(c);
            acc = simd
                .avx512f
                ._mm512_add_epi32(acc, simd.avx512bw._mm512_madd_epi16(c, k));
        }
        let lanes: [i32; 16] = bytemuck::cast(acc);
        tail(&lanes, &row[body..], &k[body..])
    }

    /// `Σ c·k` over a row, 16 codes at a time.
    #[inline(always)]
    fn row_sum_v3(simd: V3, row: &[u8], k: &[i16]) -> i32 {
        const W: usize = 16;
        let body = row.len().min(k.len()) / W * W;
        let mut acc = simd.avx._mm256_setzero_si256();
        for (c, k) in row[..body].chunks_exact(W).zip(k[..body].chunks_exact(W)) {
            let c: __m128i = bytemuck::pod_read_unaligned(c);
            let k: __m256i = bytemuck::pod_read_unaligned(bytemuck::cast_slice(k));
            let c = simd.avx2._mm256_cvtepu8_epi16(c);
            acc = simd
                .avx2
                ._mm256_add_epi32(acc, simd.avx2._mm256_madd_epi16(c, k));
        }
        let lanes: [i32; 8] = bytemuck::cast(acc);
        tail(&lanes, &row[body..], &k[body..])
    }

    /// The lanes' sum plus the products of the rest of the row (wrapping:
    /// the whole sum fits an `i32`, so wrapped parts give it exactly).
    #[inline(always)]
    fn tail(lanes: &[i32], row: &[u8], k: &[i16]) -> i32 {
        let mut sum = lanes.iter().fold(0i32, |s, &l| s.wrapping_add(l));
        for (&c, &k) in row.iter().zip(k) {
            sum = sum.wrapping_add(i32::from(c).wrapping_mul(i32::from(k)));
        }
        sum
    }
}
