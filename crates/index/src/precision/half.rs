//! Float16 codes: rounding to them, and widening them back to `f32` for
//! the decode and for a query's sums, with the CPU's conversion
//! (`vcvtph2ps`) where the AVX-512 level is in use, else in portable
//! code. Widening a float16 is exact either way, so both give the same
//! bits.

use pulp::{Simd, WithSimd};
use vecseal_kmeans::kernel::{dispatch_at, SimdLevel};

/// Coordinates widened at a time.
const LANES: usize = 16;

/// The float16 nearest to `x` (ties to even), as bits; beyond the largest
/// finite float16 (65504) it saturates there.
pub(crate) fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = x.abs();
    if a < f32::from_bits(0x3880_0000) {
        // Below 2⁻¹⁴: a subnormal float16, m·2⁻²⁴ (exact scaling, then
        // ties to even; 1024 is the smallest normal, bits 0x0400).
        return sign | (a * 16_777_216.0).round_ties_even() as u16;
    }
    let b = a.to_bits();
    let mut h = (b >> 13) - ((127 - 15) << 10);
    let rest = b & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    sign | h.min(0x7bff) as u16
}

/// The value of float16 bits (finite: [`f16_bits`] writes no other).
#[inline(always)]
pub(crate) fn f16_value(h: u16) -> f32 {
    // The magnitude's bits in f32 position, rescaled by 2¹¹² (exact, also
    // for subnormals), and the sign.
    let mag = f32::from_bits(u32::from(h & 0x7fff) << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(mag.to_bits() | u32::from(h & 0x8000) << 16)
}

/// Appends the float16 codes of `vectors` to `out` (2 bytes per
/// coordinate, little-endian).
pub(crate) fn encode_f16(vectors: &[f32], out: &mut Vec<u8>) {
    out.reserve(vectors.len() * 2);
    for &x in vectors {
        out.extend_from_slice(&f16_bits(x).to_le_bytes());
    }
}

/// Sixteen float16 codes (32 bytes, little-endian) widened to `f32`.
trait Widen: Copy {
    fn lanes(self, codes: &[u8; 2 * LANES]) -> [f32; LANES];

    /// Widens every code of `codes` into `out`.
    #[inline(always)]
    fn all(self, codes: &[u8], out: &mut [f32]) {
        let (groups, _) = codes.as_chunks::<{ 2 * LANES }>();
        let (outs, _) = out.as_chunks_mut::<LANES>();
        let body = groups.len().min(outs.len());
        for (o, c) in outs.iter_mut().zip(groups) {
            *o = self.lanes(c);
        }
        Portable.all(&codes[body * 2 * LANES..], &mut out[body * LANES..]);
    }
}

/// [`f16_value`] lane by lane: bit operations and one multiply, which
/// the compiler vectorises at every level.
#[derive(Clone, Copy)]
struct Portable;

impl Widen for Portable {
    #[inline(always)]
    fn lanes(self, codes: &[u8; 2 * LANES]) -> [f32; LANES] {
        let mut out = [0f32; LANES];
        for (o, c) in out.iter_mut().zip(codes.as_chunks::<2>().0) {
            *o = f16_value(u16::from_le_bytes(*c));
        }
        out
    }

    /// One code at a time (the compiler vectorises this loop; through
    /// [`Widen::lanes`] it did not at the AVX2 level).
    #[inline(always)]
    fn all(self, codes: &[u8], out: &mut [f32]) {
        for (o, c) in out.iter_mut().zip(codes.as_chunks::<2>().0) {
            *o = f16_value(u16::from_le_bytes(*c));
        }
    }
}

/// AVX-512F's `vcvtph2ps`: one instruction for sixteen. In a timing loop
/// over a 768-d block of 158 vectors, a query's sums took 7.0–7.6 µs
/// with it against 16.1 with the portable widening, the block's decode
/// 10.9 against 14.6.
#[cfg(target_arch = "x86_64")]
impl Widen for pulp::x86::V4 {
    #[inline(always)]
    fn lanes(self, codes: &[u8; 2 * LANES]) -> [f32; LANES] {
        let h = bytemuck::cast::<[u8; 2 * LANES], core::arch::x86_64::__m256i>(*codes);
        bytemuck::cast(self.avx512f._mm512_cvtph_ps(h))
    }
}

/// Runs `op` with the widening for `level`: the CPU's where `level` is
/// AVX-512 and the CPU has it, else the portable one, in the kernel of
/// the level. A macro, because the op's type depends on the widening's.
macro_rules! with_widen {
    ($level:expr, |$w:ident| $op:expr) => {{
        let level: SimdLevel = $level;
        #[cfg(target_arch = "x86_64")]
        let v4 = if level >= SimdLevel::V4 {
            pulp::x86::V4::try_new()
        } else {
            None
        };
        #[cfg(not(target_arch = "x86_64"))]
        let v4: Option<Portable> = None;
        match v4 {
            Some($w) => dispatch_at(SimdLevel::V4, $op),
            None => {
                let $w = Portable;
                dispatch_at(level, $op)
            }
        }
    }};
}

/// Widens float16 `codes` (2 bytes a coordinate) into `out`, one value
/// per code, at `level`.
pub(super) fn decode(level: SimdLevel, codes: &[u8], out: &mut [f32]) {
    with_widen!(level, |w| Decode {
        widen: w,
        codes,
        out
    })
}

/// `Σ q·x`, or `Σ (q − x)²` with `squared`, of `q` with every vector of
/// float16 `codes` into `out` (one per vector), in the canonical order
/// of [`vecseal_kmeans::kernel`], at `level`.
pub(super) fn sums(level: SimdLevel, codes: &[u8], q: &[f32], squared: bool, out: &mut [f32]) {
    if squared {
        with_widen!(level, |w| Sums::<_, true> {
            widen: w,
            bytes: codes,
            q,
            out
        })
    } else {
        with_widen!(level, |w| Sums::<_, false> {
            widen: w,
            bytes: codes,
            q,
            out
        })
    }
}

/// The whole groups of [`LANES`] codes among the first `body` of `row`.
#[inline(always)]
fn groups(row: &[u8], body: usize) -> &[[u8; 2 * LANES]] {
    row[..2 * body].as_chunks().0
}

/// [`decode`] in the kernel of the level in use.
struct Decode<'a, 'b, W> {
    widen: W,
    codes: &'a [u8],
    out: &'b mut [f32],
}

impl<W: Widen> WithSimd for Decode<'_, '_, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Decode { widen, codes, out } = self;
        widen.all(codes, out);
    }
}

/// The sums of [`sums`]: float16 codes decoded in registers and
/// summed with a query in the canonical order of
/// [`vecseal_kmeans::kernel`] (16 fused accumulators, the tree `l + 8,
/// l + 4, l + 2, l + 1`, then the tail term by term, unfused).
struct Sums<'a, 'b, W, const SQUARED: bool> {
    widen: W,
    bytes: &'a [u8],
    q: &'a [f32],
    out: &'b mut [f32],
}

impl<W: Widen, const SQUARED: bool> WithSimd for Sums<'_, '_, W, SQUARED> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Sums {
            widen,
            bytes,
            q,
            out,
        } = self;
        let dim = q.len();
        let body = dim / LANES * LANES;
        let x = |c: &[u8], i: usize| f16_value(u16::from_le_bytes([c[2 * i], c[2 * i + 1]]));
        #[inline(always)]
        fn term<const SQUARED: bool>(q: f32, x: f32, a: f32) -> f32 {
            if SQUARED {
                let t = q - x;
                t.mul_add(t, a)
            } else {
                q.mul_add(x, a)
            }
        }
        // The canonical reduction and tail of one row.
        let finish = |mut acc: [f32; LANES], row: &[u8]| -> f32 {
            let mut w = LANES;
            while w > 1 {
                w /= 2;
                for l in 0..w {
                    acc[l] += acc[l + w];
                }
            }
            let mut sum = acc[0];
            for (i, &q) in q.iter().enumerate().skip(body) {
                let x = x(row, i);
                sum += if SQUARED { (q - x) * (q - x) } else { q * x };
            }
            sum
        };
        // Four rows at a time: four independent chains of fused
        // multiply-adds (one row alone waits on each one's latency).
        let rows = 2 * dim;
        let mut quads = bytes.chunks_exact(4 * rows);
        let mut outs = out.chunks_exact_mut(4);
        for (quad, o) in (&mut quads).zip(&mut outs) {
            let (r0, rest) = quad.split_at(rows);
            let (r1, rest) = rest.split_at(rows);
            let (r2, r3) = rest.split_at(rows);
            let (mut a0, mut a1, mut a2, mut a3) =
                ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
            let (g0, g1, g2, g3) = (
                groups(r0, body),
                groups(r1, body),
                groups(r2, body),
                groups(r3, body),
            );
            for (k, q) in q[..body].chunks_exact(LANES).enumerate() {
                let (x0, x1, x2, x3) = (
                    widen.lanes(&g0[k]),
                    widen.lanes(&g1[k]),
                    widen.lanes(&g2[k]),
                    widen.lanes(&g3[k]),
                );
                for l in 0..LANES {
                    a0[l] = term::<SQUARED>(q[l], x0[l], a0[l]);
                    a1[l] = term::<SQUARED>(q[l], x1[l], a1[l]);
                    a2[l] = term::<SQUARED>(q[l], x2[l], a2[l]);
                    a3[l] = term::<SQUARED>(q[l], x3[l], a3[l]);
                }
            }
            o[0] = finish(a0, r0);
            o[1] = finish(a1, r1);
            o[2] = finish(a2, r2);
            o[3] = finish(a3, r3);
        }
        for (row, o) in quads
            .remainder()
            .chunks_exact(rows)
            .zip(outs.into_remainder())
        {
            let mut acc = [0f32; LANES];
            for (c, q) in groups(row, body).iter().zip(q[..body].chunks_exact(LANES)) {
                let x = widen.lanes(c);
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = term::<SQUARED>(q[l], x[l], *a);
                }
            }
            *o = finish(acc, row);
        }
    }
}

#[cfg(test)]
mod tests {
    use vecseal_kmeans::kernel::SimdLevel;

    use super::{decode, f16_value, sums, LANES};

    /// Every float16 that [`super::f16_bits`] writes (all but infinities
    /// and NaNs) widens to the same `f32` bits at every level, in the
    /// body of whole groups and in the tail, as [`f16_value`] gives it.
    #[test]
    fn every_float16_widens_to_the_same_bits_at_every_level() {
        let finite: Vec<u16> = (0..=u16::MAX).filter(|h| h & 0x7c00 != 0x7c00).collect();
        let codes: Vec<u8> = finite.iter().flat_map(|h| h.to_le_bytes()).collect();
        let want: Vec<u32> = finite.iter().map(|&h| f16_value(h).to_bits()).collect();
        assert_eq!(finite.len() % LANES, 0, "only the cut below leaves a tail");
        for level in SimdLevel::ALL {
            // Cut seven codes short, so that a tail is widened too.
            for cut in [0, 7] {
                let n = finite.len() - cut;
                let mut out = vec![f32::NAN; n];
                decode(level, &codes[..2 * n], &mut out);
                let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                assert!(got == want[..n], "{level}, {n} codes");
            }
        }
    }

    /// A query's sums over codes of every kind of float16 (subnormals,
    /// both zeros, the largest) are the same at every level.
    #[test]
    fn sums_over_every_kind_of_float16_agree_at_every_level() {
        let dim = 3 * LANES + 5;
        let kinds = [
            0x0000u16, 0x8000, 0x0001, 0x83ff, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0xfbff,
        ];
        let codes: Vec<u8> = (0..6 * dim)
            .flat_map(|i| kinds[(i * 7 + i / dim) % kinds.len()].to_le_bytes())
            .collect();
        let q: Vec<f32> = (0..dim).map(|j| (j as f32 - 20.0) * 0.37).collect();
        for squared in [false, true] {
            let run = |level| {
                let mut out = vec![0f32; 6];
                sums(level, &codes, &q, squared, &mut out);
                out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            let want = run(SimdLevel::Scalar);
            for level in SimdLevel::ALL {
                assert_eq!(run(level), want, "{level}, squared {squared}");
            }
        }
    }
}
