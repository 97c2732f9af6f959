//! Scalar math written to vectorise: branch-free f32 `tanh` and `exp`, and the runtime switch
//! that compiles hot loops for AVX-512 or AVX2+FMA when the CPU has them.
//!
//! libm's `tanhf` is a scalar call per element (about 7 ns here); the rational form below is
//! plain arithmetic that the loop vectoriser turns into 8- or 16-wide code, within 8 ulp (5e-7 relative) of `tanh`
//! over the whole f32 range. f64 keeps libm: its users ask for accuracy first.

use std::sync::atomic::{AtomicU8, Ordering};

/// The vector instruction sets the elementwise kernels may be compiled for, from the
/// baseline up. [`simd_level`] is the one they use: the best this CPU has, or less when
/// capped with [`cap_simd_level`] (so each path can be tested on a machine that has a
/// better one); matrix products run the `gemm` crate's kernels for the same level. It reads
/// and prints as `portable`, `avx2` or `avx512`.
///
/// ```
/// use ferrograd_array::SimdLevel;
/// let level: SimdLevel = "avx2".parse().unwrap();
/// assert_eq!(level, SimdLevel::Avx2);
/// assert_eq!(level.to_string(), "avx2");
/// assert!("sse9".parse::<SimdLevel>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64): 4 f32 lanes, no fused multiply-add.
    Portable,
    /// AVX2 with FMA: 8 f32 lanes.
    Avx2,
    /// AVX-512 (F, VL, DQ, BW) with AVX2 and FMA: 16 f32 lanes.
    Avx512,
}

impl SimdLevel {
    /// Every level, from the baseline up.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512];

    /// The level's name, as it reads and prints: `portable`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no [`SimdLevel`]'s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseSimdLevelError {
    /// The name given.
    pub given: String,
}

impl std::fmt::Display for ParseSimdLevelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no SIMD level is called `{}`: the levels are portable, avx2 and avx512",
            self.given
        )
    }
}

impl std::error::Error for ParseSimdLevelError {}

impl std::str::FromStr for SimdLevel {
    type Err = ParseSimdLevelError;

    /// A level by its [`name`](SimdLevel::name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SimdLevel::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| ParseSimdLevelError { given: s.into() })
    }
}

/// The best level this CPU supports.
pub fn detected_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        let has = |f: &str| match f {
            "avx512" => {
                std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512bw")
            }
            _ => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
        };
        if has("avx2") {
            return if has("avx512") {
                SimdLevel::Avx512
            } else {
                SimdLevel::Avx2
            };
        }
    }
    SimdLevel::Portable
}

/// The level in use, the detected one under [`cap_simd_level`]'s cap (`u8::MAX`: not yet
/// known). Every elementwise op reads it, so it is one load rather than the feature tests.
static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);

/// `detected` under the cap `cap` (`None`: no cap).
fn capped(detected: SimdLevel, cap: Option<SimdLevel>) -> SimdLevel {
    cap.map_or(detected, |c| c.min(detected))
}

fn level_from(v: u8) -> SimdLevel {
    match v {
        0 => SimdLevel::Portable,
        1 => SimdLevel::Avx2,
        _ => SimdLevel::Avx512,
    }
}

/// Caps the level the kernels use, for the whole process (`None` lifts the cap): the
/// elementwise kernels and the matrix products alike (gemm's AVX2 or portable kernels then
/// run in place of the CPU's own; an `openblas` build's large products stay on OpenBLAS).
/// For tests and benchmarks of each vector path: elementwise results are identical on every
/// level except that f32 `tanh`, `exp` and `sigmoid` may differ in the last bit on
/// [`SimdLevel::Portable`], which has no fused multiply-add; matrix products agree within
/// rounding (gemm's kernels of each level block the inner dimension their own way, and its
/// portable ones multiply and add apart). Kernels running on other threads at the time may
/// see either level.
///
/// ```
/// use ferrograd_array::{cap_simd_level, simd_level, SimdLevel};
/// cap_simd_level(Some(SimdLevel::Portable));
/// assert_eq!(simd_level(), SimdLevel::Portable);
/// cap_simd_level(None);
/// ```
pub fn cap_simd_level(level: Option<SimdLevel>) {
    let level = capped(detected_simd_level(), level);
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The level the kernels use now: the detected one, or the cap when lower.
#[inline]
pub fn simd_level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        u8::MAX => {
            let level = detected_simd_level();
            // a cap set meanwhile wins
            match LEVEL.compare_exchange(u8::MAX, level as u8, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => level,
                Err(now) => level_from(now),
            }
        }
        v => level_from(v),
    }
}

/// Runs `body` compiled for AVX-512 (16 f32 lanes) or AVX2 and FMA (8 lanes) as
/// [`simd_level`] allows, instead of the SSE2 baseline's 4. AVX-512 halves the
/// compute-bound loops here (f32 tanh on 3·10⁴ elements: 10.0 -> 5.3 µs, exp 13.6 -> 7.2
/// µs). No loop is reassociated, so every path gives identical results; only f32 tanh, exp
/// and sigmoid on the baseline (no FMA) may differ from them in the last bit (see
/// [`has_fma`]).
#[inline(always)]
pub(crate) fn with_simd<R>(body: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match simd_level() {
            SimdLevel::Avx512 => {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                unsafe fn run512<R>(body: impl FnOnce() -> R) -> R {
                    body()
                }
                // SAFETY: `simd_level` reports AVX-512 only when every feature enabled for
                // `run512` was detected on this CPU.
                return unsafe { run512(body) };
            }
            SimdLevel::Avx2 => {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn run<R>(body: impl FnOnce() -> R) -> R {
                    body()
                }
                // SAFETY: `simd_level` reports AVX2 only when AVX2 and FMA were detected.
                return unsafe { run(body) };
            }
            SimdLevel::Portable => {}
        }
    }
    body()
}

/// Whether the vector paths of [`with_simd`] have fused multiply-add (x86-64 at
/// [`SimdLevel::Avx2`] or above; every aarch64). The polynomial kernels below then fuse their
/// multiply-adds: one rounding instead of two, and half the instructions (f32 tanh on 10⁵
/// elements, AVX-512: 17.1 → 10.9 µs). Without it `f32::mul_add` would be a libm call per
/// step, so those CPUs keep the unfused form. Choose once per call with [`with_fma!`].
pub(crate) fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd_level() >= SimdLevel::Avx2
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// `$e` with the const `$f` set to [`has_fma`]`()`, so a kernel generic over `const FMA:
/// bool` is picked once per call, not tested per element.
macro_rules! with_fma {
    ($f:ident => $e:expr) => {
        if $crate::math::has_fma() {
            const $f: bool = true;
            $e
        } else {
            const $f: bool = false;
            $e
        }
    };
}
pub(crate) use with_fma;

/// `a·b + c`, fused (rounded once) when `FMA`.
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `tanh` for f32 as a [13/6] rational minimax fit on `[-7.9, 7.9]` (clamped there, and ±1
/// exactly from |x| = 9, where `tanh` rounds to ±1 in f32); tiny inputs return `x` exactly.
/// NaN stays NaN. `FMA` fuses the polynomials' steps (see [`has_fma`]).
#[inline(always)]
pub(crate) fn tanh_f32<const FMA: bool>(x: f32) -> f32 {
    // Coefficients of the odd numerator and even denominator of the minimax fit.
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let m = madd::<FMA>;
    let c = x.clamp(-7.905_311, 7.905_311);
    let x2 = c * c;
    let p = m(
        m(m(m(m(m(A13, x2, A11), x2, A9), x2, A7), x2, A5), x2, A3),
        x2,
        A1,
    ) * c;
    let q = m(m(m(B6, x2, B4), x2, B2), x2, B0);
    if x.abs() < 4e-4 {
        x
    } else if x.abs() >= 9.0 {
        // Past 9, tanh rounds to ±1 in f32; the fit, clamped at 7.9, ends a few ulp short.
        1f32.copysign(x)
    } else {
        p / q
    }
}

/// `exp` for f32 by range reduction `x = n ln 2 + r` (|r| <= ln 2 / 2) and a degree-6
/// polynomial for `e^r` (Cephes' `expf` coefficients), with `2^n` applied as two exact
/// power-of-two factors so the whole range from denormals to overflow comes out right.
/// Branch-free, so loops over it vectorise; within 2 ulp of the exact value. `FMA` fuses the
/// polynomial's steps (see [`has_fma`]).
#[inline(always)]
pub(crate) fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P0: f32 = 1.987_569_1e-4;
    const P1: f32 = 1.398_2e-3;
    const P2: f32 = 8.333_452e-3;
    const P3: f32 = 4.166_579_6e-2;
    const P4: f32 = 1.666_666_5e-1;
    const P5: f32 = 0.5;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits, so `n` needs
    // no float-to-int conversion (which kept this loop from vectorising).
    const ROUNDER: f32 = 12_582_912.0;
    // Beyond these e^x is +inf or rounds to 0 in f32; NaN passes through the clamp (and
    // then through `p`, whatever `n`'s bits hold).
    let m = madd::<FMA>;
    // Below -104, e^x rounds to 0: those lanes compute at 0 and are zeroed at the end, as
    // the scaling's underflow to 0 costs a microcode assist per vector on Intel cores (a
    // causal attention's -inf-masked softmax rows ran 4.5x slower than unmasked ones).
    let gone = x < -104.0;
    let c = if gone { 0.0 } else { x.clamp(-104.0, 89.0) };
    let t = c * LOG2E + ROUNDER;
    let n = t - ROUNDER;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = m(
        m(m(m(m(m(P0, r, P1), r, P2), r, P3), r, P4), r, P5) * r,
        r,
        r,
    ) + 1.0;
    let n = t.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let half = n >> 1;
    let scale = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let y = p * scale(half) * scale(n - half);
    if gone {
        0.0
    } else {
        y
    }
}

/// `erf` for f32: FreeBSD's `erff` (Sun's fdlibm, as libm's, its coefficients by their
/// bits) made branch-free so loops over
/// it vectorise: every lane computes its value on each of the three ranges, `|x| < 0.84375`
/// (`x + x P(x²)/Q(x²)`), `|x| < 1.25` (a rational function of `|x| - 1` beside
/// `erf(1)`'s neighbour) and `|x| < 6` (`1 - erfc`, `erfc` as `e^(-z² - 0.5625) e^((z -
/// |x|)(z + |x|) + R/S) / |x|` with `z` the leading 11 bits of `|x|`, so `z²` is exact),
/// and keeps its own; from 6 on erf is ±1. The two exponentials are [`exp_f32`]. Within 1
/// ulp of the exact value, as libm's scalar `erff` (0.79-0.85 ulp at worst on a fine grid
/// of [-7, 7], both forms); NaN stays NaN, ±∞ gives ±1.
//
// The algorithm and coefficients are from FreeBSD's s_erff.c, which carries this notice:
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved. Developed at SunPro, a
// Sun Microsystems, Inc. business. Permission to use, copy, modify, and distribute this
// software is freely granted, provided that this notice is preserved.
#[inline(always)]
pub(crate) fn erf_f32<const FMA: bool>(x: f32) -> f32 {
    // erf(1) rounded: the middle range's values are offsets from it
    const ERX: f32 = f32::from_bits(0x3f58560b);
    // |x| < 0.84375: erf(x) = x + x P(x²)/Q(x²)
    const PP: [f32; 5] = [
        f32::from_bits(0x3e0375d4),
        f32::from_bits(0xbea66beb),
        f32::from_bits(0xbce9528f),
        f32::from_bits(0xbbbd1489),
        f32::from_bits(0xb7c756b1),
    ];
    const QQ: [f32; 6] = [
        1.0,
        f32::from_bits(0x3ecbbbce),
        f32::from_bits(0x3d852a63),
        f32::from_bits(0x3ba68116),
        f32::from_bits(0x390aee49),
        f32::from_bits(0xb684e21a),
    ];
    // |x| < 1.25: erf(x) = ERX + P(s)/Q(s), s = |x| - 1
    const PA: [f32; 7] = [
        f32::from_bits(0xbb1acdc6),
        f32::from_bits(0x3ed46805),
        f32::from_bits(0xbebe9208),
        f32::from_bits(0x3ea2fe54),
        f32::from_bits(0xbde31cc2),
        f32::from_bits(0x3d1151b3),
        f32::from_bits(0xbb0df9c0),
    ];
    const QA: [f32; 7] = [
        1.0,
        f32::from_bits(0x3dd9f331),
        f32::from_bits(0x3f0a5785),
        f32::from_bits(0x3d931ae7),
        f32::from_bits(0x3e013307),
        f32::from_bits(0x3c5f6e13),
        f32::from_bits(0x3c445aa3),
    ];
    // erfc's R(s)/S(s), s = 1/x², on [1.25, 1/0.35) and on [1/0.35, 28)
    const RA: [f32; 8] = [
        f32::from_bits(0xbc21a093),
        f32::from_bits(0xbf31a0b7),
        f32::from_bits(0xc128f022),
        f32::from_bits(0xc2798057),
        f32::from_bits(0xc322658c),
        f32::from_bits(0xc3389ae7),
        f32::from_bits(0xc2a2932b),
        f32::from_bits(0xc11d077e),
    ];
    const SA: [f32; 9] = [
        1.0,
        f32::from_bits(0x419d35ce),
        f32::from_bits(0x4309a863),
        f32::from_bits(0x43d9486f),
        f32::from_bits(0x442158c9),
        f32::from_bits(0x43d6810b),
        f32::from_bits(0x42d9451f),
        f32::from_bits(0x40d23f7c),
        f32::from_bits(0xbd777f97),
    ];
    const RB: [f32; 8] = [
        f32::from_bits(0xbc21a092),
        f32::from_bits(0xbf4c9dd4),
        f32::from_bits(0xc18e104b),
        f32::from_bits(0xc320a2ea),
        f32::from_bits(0xc41f6441),
        f32::from_bits(0xc480230b),
        f32::from_bits(0xc3f1c275),
        0.0,
    ];
    const SB: [f32; 9] = [
        1.0,
        f32::from_bits(0x41f2b459),
        f32::from_bits(0x43a2e571),
        f32::from_bits(0x44c01759),
        f32::from_bits(0x4547fdbb),
        f32::from_bits(0x451f90ce),
        f32::from_bits(0x43ed43a7),
        f32::from_bits(0xc1b38712),
        0.0,
    ];
    // Horner's rule over `c` (constant term first)
    #[inline(always)]
    fn poly<const FMA: bool, const N: usize>(c: [f32; N], t: f32) -> f32 {
        let mut acc = c[N - 1];
        for k in (0..N - 1).rev() {
            acc = madd::<FMA>(acc, t, c[k]);
        }
        acc
    }
    let a = x.abs();
    let (z, s) = (x * x, a - 1.0);
    // the tail at |x| clamped into its range, so no lane overflows or divides by zero
    let t = a.clamp(1.25, 6.0);
    let v = 1.0 / t;
    let u = v * v;
    let (r, q) = if t < 1.0 / 0.35 {
        (poly::<FMA, 8>(RA, u), poly::<FMA, 9>(SA, u))
    } else {
        (poly::<FMA, 8>(RB, u), poly::<FMA, 9>(SB, u))
    };
    // one division serves every range: each lane divides its own range's pair
    let (num, den) = if a < 0.843_75 {
        (poly::<FMA, 5>(PP, z), poly::<FMA, 6>(QQ, z))
    } else if a < 1.25 {
        (poly::<FMA, 7>(PA, s), poly::<FMA, 7>(QA, s))
    } else {
        (r, q)
    };
    let ratio = num / den;
    let small = madd::<FMA>(x, ratio, x);
    let middle = ERX + ratio;
    let w = f32::from_bits(t.to_bits() & 0xffff_e000);
    let erfc = exp_f32::<FMA>(-w * w - 0.5625) * exp_f32::<FMA>((w - t) * (w + t) + ratio) * v;
    let tail = if a < 6.0 { 1.0 - erfc } else { 1.0 };
    let magnitude = if a < 1.25 { middle } else { tail };
    let far = magnitude.copysign(x);
    // (a NaN fails every comparison and takes `small`, which is NaN)
    if a < 0.843_75 || a.is_nan() {
        small
    } else {
        far
    }
}

/// `sin` and `cos` for f32: `x = j π/2 + r` reduced in f64 (two-part π/2, exact to well
/// past |x| = 10⁶), then Cephes' `sinf`/`cosf` minimax polynomials on `|r| <= π/4` in f32,
/// and the quadrant `j mod 4` picks and signs one of them. Branch-free, so loops over it
/// vectorise (the f64 steps use the wide lanes too); within 2 ulp of the exact value.
/// NaN and ±∞ give NaN. `FMA` fuses the polynomials' steps.
///
/// Returns both polynomials at `r` and the quadrant `j` (in its low bits); [`quadrant`] makes
/// `sin` of them, and `cos` from the next quadrant (`cos(x) = sin(x + π/2)`), so `sin` and
/// `cos` of one argument share everything but that last pick ([`sin_and_cos_f32`]).
#[inline(always)]
fn sin_cos_parts<const FMA: bool>(x: f32) -> (f32, f32, u32) {
    const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
    // π/2 = HI + LO, HI with 33 significant bits so that j·HI is exact for |j| < 2²⁰
    const PIO2_HI: f64 = 1.570_796_326_734_125_6;
    const PIO2_LO: f64 = 6.077_100_506_506_192e-11;
    // 1.5·2⁵²: adding it rounds to an integer held in the low mantissa bits
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    const S1: f32 = -1.666_665_5e-1;
    const S2: f32 = 8.332_161e-3;
    const S3: f32 = -1.951_529_6e-4;
    const C1: f32 = 4.166_664_6e-2;
    const C2: f32 = -1.388_731_6e-3;
    const C3: f32 = 2.443_315_7e-5;
    let m = madd::<FMA>;
    let xd = x as f64;
    let t = xd * TWO_OVER_PI + ROUNDER;
    let j = t - ROUNDER;
    let r = ((xd - j * PIO2_HI) - j * PIO2_LO) as f32;
    let z = r * r;
    // (r itself at ±0, so that sin(-0) = -0; a select, which still vectorises)
    let sin_r = if r == 0.0 {
        r
    } else {
        m(m(m(S3, z, S2), z, S1) * z, r, r)
    };
    let cos_r = m(m(m(m(C3, z, C2), z, C1), z * z, -0.5 * z), 1.0, 1.0);
    (sin_r, cos_r, t.to_bits() as u32)
}

/// `sin` of quadrant `q` from the polynomials of [`sin_cos_parts`].
#[inline(always)]
fn quadrant(sin_r: f32, cos_r: f32, q: u32) -> f32 {
    let v = if q & 1 == 0 { sin_r } else { cos_r };
    let sign = (q & 2) << 30; // the sign bit for quadrants 2 and 3
    f32::from_bits(v.to_bits() ^ sign)
}

/// `sin` for f32 (see [`sin_cos_parts`]).
#[inline(always)]
pub(crate) fn sin_f32<const FMA: bool>(x: f32) -> f32 {
    let (s, c, q) = sin_cos_parts::<FMA>(x);
    quadrant(s, c, q)
}

/// `cos` for f32 (see [`sin_cos_parts`]).
#[inline(always)]
pub(crate) fn cos_f32<const FMA: bool>(x: f32) -> f32 {
    let (s, c, q) = sin_cos_parts::<FMA>(x);
    quadrant(s, c, q.wrapping_add(1))
}

/// `(sin(x), cos(x))` for f32 from one reduction: [`sin_f32`] and [`cos_f32`] bit for bit,
/// for about the work of one of them.
#[inline(always)]
pub(crate) fn sin_and_cos_f32<const FMA: bool>(x: f32) -> (f32, f32) {
    let (s, c, q) = sin_cos_parts::<FMA>(x);
    (quadrant(s, c, q), quadrant(s, c, q.wrapping_add(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named form of a kernel.
    type Form = (&'static str, fn(f32) -> f32);
    /// Both forms: unfused (CPUs without FMA) and fused.
    const TANH: [Form; 2] = [("unfused", tanh_f32::<false>), ("fused", tanh_f32::<true>)];
    const EXP: [Form; 2] = [("unfused", exp_f32::<false>), ("fused", exp_f32::<true>)];

    /// Distance in units in the last place of f32 at the exact value (denormals included).
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let next = f32::from_bits(w.abs().to_bits() + 1);
        (got as f64 - want).abs() / ((next - w.abs()) as f64)
    }

    /// The worst error in ulp of `f` against `exact` on `lo, lo + step, ...` below `hi`.
    fn worst_ulps(f: fn(f32) -> f32, exact: fn(f64) -> f64, lo: f32, hi: f32, step: f32) -> f64 {
        let mut worst = 0.0f64;
        let mut x = lo;
        while x < hi {
            worst = worst.max(ulps(f(x), exact(x as f64)));
            x += step;
        }
        worst
    }

    #[test]
    fn tanh_f32_is_within_a_few_ulp_of_libm_everywhere() {
        for (form, tanh) in TANH {
            let worst = worst_ulps(tanh, f64::tanh, -12.0, 12.0, 1.3e-4);
            assert!(worst <= 8.0, "{form}: worst error {worst} ulp");
            assert!(tanh(f32::NAN).is_nan(), "{form}");
            assert_eq!(tanh(f32::INFINITY), 1.0, "{form}");
            assert_eq!(tanh(-9.5), -1.0, "{form}");
            assert_eq!(tanh(1e-30), 1e-30, "{form}");
        }
    }

    #[test]
    fn erf_f32_is_within_1_ulp_of_the_exact_value() {
        const ERF: [Form; 2] = [("unfused", erf_f32::<false>), ("fused", erf_f32::<true>)];
        for (form, erf) in ERF {
            // every range and its edges (0.84375, 1.25, 1/0.35, 6), and the tiny and
            // denormal inputs
            for (lo, hi, step) in [(-7.0, 7.0, 1.7e-5), (-1e-3, 1e-3, 3.1e-9)] {
                let worst = worst_ulps(erf, libm::erf, lo, hi, step);
                assert!(
                    worst <= 1.0,
                    "{form}: worst error {worst} ulp on [{lo}, {hi}]"
                );
            }
            for x in [
                0.0f32,
                -0.0,
                1e-40,
                -1e-40,
                1e-30,
                0.843_75,
                1.25,
                1.0 / 0.35,
                6.0,
            ] {
                assert!(ulps(erf(x), libm::erf(x as f64)) <= 1.0, "{form}: erf({x})");
                assert_eq!(
                    erf(x).is_sign_negative(),
                    x.is_sign_negative(),
                    "{form}: erf({x})"
                );
            }
            assert!(erf(f32::NAN).is_nan(), "{form}");
            assert_eq!(erf(f32::INFINITY), 1.0, "{form}");
            assert_eq!(erf(f32::NEG_INFINITY), -1.0, "{form}");
            assert_eq!(erf(1e30), 1.0, "{form}");
        }
    }

    #[test]
    fn sin_and_cos_f32_are_within_2_ulp_of_the_exact_values() {
        const SIN: [Form; 2] = [("unfused", sin_f32::<false>), ("fused", sin_f32::<true>)];
        const COS: [Form; 2] = [("unfused", cos_f32::<false>), ("fused", cos_f32::<true>)];
        for ((form, sin), (_, cos)) in SIN.into_iter().zip(COS) {
            for (lo, hi, step) in [(-10.0, 10.0, 3.1e-4), (-1e4, 1e4, 0.37), (-1e6, 1e6, 61.3)] {
                // ulp at the result's magnitude, with a floor at 2⁻²⁴ absolute near zeros
                let close = |got: f32, want: f64| {
                    (got as f64 - want).abs()
                        <= 2.0 * (want.abs() * f64::EPSILON * 2f64.powi(29)).max(2f64.powi(-24))
                };
                let mut x = lo;
                while x < hi {
                    let (s, c) = (sin(x), cos(x));
                    assert!(
                        close(s, (x as f64).sin()),
                        "{form}: sin({x}) = {s}, want {}",
                        (x as f64).sin()
                    );
                    assert!(
                        close(c, (x as f64).cos()),
                        "{form}: cos({x}) = {c}, want {}",
                        (x as f64).cos()
                    );
                    x += step;
                }
            }
            let worst = worst_ulps(sin, f64::sin, 0.05, 3.0, 1.1e-4);
            assert!(worst <= 2.0, "{form}: sin worst {worst} ulp");
            let worst = worst_ulps(cos, f64::cos, -1.5, 1.5, 1.1e-4);
            assert!(worst <= 2.0, "{form}: cos worst {worst} ulp");
            assert_eq!((sin(0.0), cos(0.0)), (0.0, 1.0), "{form}");
            assert!(sin(-0.0).is_sign_negative(), "{form}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                assert!(sin(bad).is_nan() && cos(bad).is_nan(), "{form}: {bad}");
            }
        }
    }

    #[test]
    fn sin_and_cos_together_are_sin_and_cos_alone_bit_for_bit() {
        /// A form's name, its `sin`, its `cos` and the two together.
        type Forms = (
            &'static str,
            fn(f32) -> f32,
            fn(f32) -> f32,
            fn(f32) -> (f32, f32),
        );
        let forms: [Forms; 2] = [
            (
                "unfused",
                sin_f32::<false>,
                cos_f32::<false>,
                sin_and_cos_f32::<false>,
            ),
            (
                "fused",
                sin_f32::<true>,
                cos_f32::<true>,
                sin_and_cos_f32::<true>,
            ),
        ];
        let special = [
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-30,
            -7e5,
        ];
        let grid = (-40_000..40_000).map(|k| k as f32 * 2.7e-3);
        let wide = (-20_000..20_000).map(|k| k as f32 * 51.3);
        for x in special.into_iter().chain(grid).chain(wide) {
            for (form, sin, cos, both) in forms {
                let (s, c) = both(x);
                assert_eq!(
                    (sin(x).to_bits(), cos(x).to_bits()),
                    (s.to_bits(), c.to_bits()),
                    "{form}: x = {x}"
                );
            }
        }
    }

    #[test]
    fn exp_f32_is_within_2_ulp_of_the_exact_value_from_underflow_to_overflow() {
        for (form, exp) in EXP {
            let worst = worst_ulps(exp, f64::exp, -103.0, 88.7, 1.7e-3);
            assert!(worst <= 2.0, "{form}: worst error {worst} ulp");
            assert_eq!(exp(0.0), 1.0, "{form}");
            assert_eq!(exp(89.0), f32::INFINITY, "{form}");
            assert_eq!(exp(f32::INFINITY), f32::INFINITY, "{form}");
            assert_eq!(exp(-200.0), 0.0, "{form}");
            assert_eq!(exp(f32::NEG_INFINITY), 0.0, "{form}");
            // around the cut at -104 (the smallest denormal is e^-103.28; e^-104 rounds to 0)
            for x in [-103.2f32, -103.28, -103.5, -103.97, -104.0, -104.01, -1e30] {
                let want = (x as f64).exp() as f32;
                assert_eq!(exp(x).to_bits(), want.to_bits(), "{form}: exp({x})");
            }
            assert!(exp(f32::NAN).is_nan(), "{form}");
        }
    }
}
