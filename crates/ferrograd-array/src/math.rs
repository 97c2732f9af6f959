//! Scalar math written to vectorise: branch-free f32 `tanh` and `exp`, and the runtime switch
//! that compiles hot loops for AVX-512 or AVX2+FMA when the CPU has them.
//!
//! libm's `tanhf` is a scalar call per element (about 7 ns here); the rational form below is
//! plain arithmetic that the loop vectoriser turns into 8- or 16-wide code, within 8 ulp (5e-7 relative) of `tanh`
//! over the whole f32 range. f64 keeps libm where a vector form would cost accuracy; its
//! exponential, `tanh`, logarithm, `expm1` and `log1p` are vectorised too ([`exp_f64`],
//! [`tanh_f64`], [`log_f64`], [`expm1_f64`], [`log1p_kahan`]: within 1, 2, 1, 1 and 2 ulp of
//! libm's).

use std::sync::atomic::{AtomicU8, Ordering};

use crate::Float;

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
/// µs). No loop is reassociated, so every path gives identical results; only the f32
/// polynomial kernels (exp, log, tanh, sigmoid, sin, cos, erf, GELU) on the baseline (no
/// FMA) may differ from them in the last bits (see [`has_fma`]).
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

/// `ln 2` in two f32 parts (Cephes'): `n·LN2_F32.0` is exact for the `n` of an f32 exponent,
/// the second part the rest. Shared by the f32 kernels here and their AVX-512 forms
/// (`exp512.rs`), which must round as they do.
pub(crate) const LN2_F32: (f32, f32) = (0.693_359_4, -2.121_944_4e-4);
/// `ln 2` in fdlibm's two f64 parts: the first with 32 trailing zero bits, so `n·LN2_F64.0`
/// is exact for the `n` of an f64 exponent.
pub(crate) const LN2_F64: (f64, f64) = (
    f64::from_bits(0x3fe6_2e42_fee0_0000),
    f64::from_bits(0x3dea_39ef_3579_3c76),
);
/// [`exp_f32`]'s polynomial for `e^r` (Cephes' `expf`), highest coefficient first, then its
/// last two, 1 and 1, in Horner's rule.
pub(crate) const EXP_F32_P: [f32; 8] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
    1.0,
    1.0,
];
/// [`exp_f64`]'s polynomial: `1/k!` for k = 13 down to 2, highest first, then 1 and 1.
pub(crate) const EXP_F64_C: [f64; 14] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];
/// [`log_f32`]'s `P(f)` (Cephes' `logf`), constant term first.
pub(crate) const LOG_F32_P: [f32; 9] = [
    3.333_333e-1,
    -2.499_999_4e-1,
    2.000_071_4e-1,
    -1.666_805_8e-1,
    1.424_932_3e-1,
    -1.242_014_1e-1,
    1.167_699_9e-1,
    -1.151_461e-1,
    7.037_683_6e-2,
];

/// `exp` for f32 by range reduction `x = n ln 2 + r` (|r| <= ln 2 / 2) and a degree-6
/// polynomial for `e^r` (Cephes' `expf` coefficients), with `2^n` applied as two exact
/// power-of-two factors so the whole range from denormals to overflow comes out right.
/// Branch-free, so loops over it vectorise; within 2 ulp of the exact value. `FMA` fuses the
/// polynomial's steps (see [`has_fma`]).
#[inline(always)]
pub(crate) fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    exp_parts::<FMA, false>(x, 0.0)
}

/// `e^(hi + lo)`, [`exp_f32`]'s algorithm on an argument given as two parts (`LO`; without it
/// `lo` is ignored): `n ln 2` comes off `hi` exactly before `lo` joins the reduced argument,
/// so an exponent held as `hi + lo` to more than f32's precision keeps it (e^(-x²) for x
/// near 9 is 1e-35 and a rounding of x² would cost it 40 ulp). With `LO`, `hi` is at most 0,
/// `|lo|` at most 1/16, and results are 0 from `hi = -87` (e^-87 is 1.6e-38, near the
/// bottom of f32's normal range): `2^n` then stays normal, and scaling by it is one
/// addition to the exponent field.
#[inline(always)]
fn exp_parts<const FMA: bool, const LO: bool>(hi: f32, lo: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = LN2_F32.0;
    const LN2_LO: f32 = LN2_F32.1;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits, so `n` needs
    // no float-to-int conversion (which kept this loop from vectorising).
    const ROUNDER: f32 = 12_582_912.0;
    let m = madd::<FMA>;
    // Below -104, e^x rounds to 0: those lanes compute at 0 and are zeroed at the end, as
    // the scaling's underflow to 0 costs a microcode assist per vector on Intel cores (a
    // causal attention's -inf-masked softmax rows ran 4.5x slower than unmasked ones).
    // Beyond 89 e^x is +inf; NaN passes through the clamp (and then through `p`, whatever
    // `n`'s bits hold).
    let gone = hi < if LO { -87.0 } else { -104.0 };
    let c = match (gone, LO) {
        (true, _) => 0.0,
        (false, true) => hi,
        (false, false) => hi.clamp(-104.0, 89.0),
    };
    let t = m(if LO { c + lo } else { c }, LOG2E, ROUNDER);
    let n = t - ROUNDER;
    // n ln2_hi is exact (n has at most 8 bits, ln2_hi 9) and so is c less it (Sterbenz)
    let r = m(-n, LN2_HI, c);
    let r = m(-n, LN2_LO, if LO { r + lo } else { r });
    // Horner's rule through the last two coefficients (1 and 1): one operation fewer than
    // Cephes' `r + r²·P(r) + 1`, and closer (worst 0.89 ulp where that was 1.02, every f32
    // from -104 to 89 checked against f64)
    let mut p = EXP_F32_P[0];
    for &k in &EXP_F32_P[1..] {
        p = m(p, r, k);
    }
    // (wrapping: in a lane that is gone, `lo` and so `t` may be anything)
    let n = (t.to_bits() as i32).wrapping_sub(ROUNDER.to_bits() as i32);
    let y = if LO {
        // n in [-126, 0]: 2^n is normal and p 2^n too
        f32::from_bits((p.to_bits() as i32).wrapping_add(n << 23) as u32)
    } else {
        let half = n >> 1;
        let scale = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
        p * scale(half) * scale(n - half)
    };
    if gone {
        0.0
    } else {
        y
    }
}

/// `e^x - 1` for f32, accurate near 0 (where `exp(x) - 1` cancels): [`exp_f32`]'s reduction
/// `x = n ln 2 + r`, `e^r - 1 = r + r² P(r)` with its polynomial `P` (so `n = 0`, `|x|` up
/// to `ln 2 / 2`, gives that sum alone), then `2^n (e^r - 1) + (2^n - 1)` as two fused
/// steps, `2^n r + (2^n - 1)` and then `2^n r² P(r)`; `2^n - 1` is exact up to `n = 24` and
/// rounds to `2^n` past it, where `e^x` swamps the 1. Branch-free, so loops over it
/// vectorise (ELU, SELU and CELU take one per element; libm's `expm1f` is a call per
/// element). Within 1.3 ulp of the exact value (every 29th float checked against f64); `-1`
/// from `x = -17.4`, `+inf` past `ln(f32::MAX)`, `expm1(-0) = -0`, NaN for NaN.
#[inline(always)]
pub(crate) fn expm1_f32<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUNDER: f32 = 12_582_912.0;
    let m = madd::<FMA>;
    // from -87.3 the result is -1 and 2^n stays normal (n >= -126); at 89 it is +inf;
    // NaN passes through the clamp
    let c = x.clamp(-87.3, 89.0);
    let t = m(c, LOG2E, ROUNDER);
    let n = t - ROUNDER;
    let r = m(-n, LN2_F32.0, c);
    let r = m(-n, LN2_F32.1, r);
    let mut p = EXP_F32_P[0];
    for &k in &EXP_F32_P[1..6] {
        p = m(p, r, k);
    }
    // e^r - 1 = r + lo, kept as the two parts until `2^n` scales them: `2^n r + (2^n - 1)`
    // rounds once, and where it cancels (n = 1, r near -ln 2 / 2) a rounded `e^r - 1`
    // would have cost twice its half ulp
    let lo = r * r * p;
    // 2^n for n up to 127; n = 128 (x within ln 2 / 2 of overflow) doubles afterwards,
    // exactly (the product is at most 2^127 there)
    let top = n > 127.0;
    let bits = (n.min(127.0) + ROUNDER).to_bits() as i32 - ROUNDER.to_bits() as i32;
    let s = f32::from_bits(((bits + 127) << 23) as u32);
    let y = m(s, lo, m(s, r, s - 1.0));
    if x == 0.0 {
        x
    } else if top {
        y * 2.0
    } else {
        y
    }
}

/// `exp` for f64, [`exp_f32`]'s algorithm at double precision: `x = n ln 2 + r` with `ln 2`
/// in fdlibm's two parts (the first with 32 trailing zero bits, so `n ln2_hi` is exact), `e^r`
/// by the Taylor polynomial of degree 13 (its remainder below 2^-58 on `|r| <= ln 2 / 2`),
/// and `2^n` as two normal power-of-two factors, so results from the subnormal range to
/// overflow come out right. Branch-free, so loops over it vectorise (libm's `exp` is a call
/// per element: 5x slower on one AVX-512 core); within 1 ulp of glibc's `exp` (fused) at 84
/// million random points over the whole range and in its subranges.
#[inline(always)]
pub(crate) fn exp_f64<const FMA: bool>(x: f64) -> f64 {
    exp_f64_parts::<FMA, false>(x, 0.0)
}

/// `e^(hi + lo)`, [`exp_f64`]'s algorithm on an argument given as two parts (`LO`; without
/// it `lo` is ignored), as [`exp_parts`] for f32: `n ln 2` comes off `hi` exactly before `lo`
/// joins the reduced argument. With `LO`, `|lo|` is at most 1.
#[inline(always)]
fn exp_f64_parts<const FMA: bool, const LO: bool>(hi: f64, lo: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    let (ln2_hi, ln2_lo) = LN2_F64;
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    // below -746 e^x rounds to 0: those lanes compute at 0 and are zeroed at the end (as in
    // `exp_parts`, no underflow assist); beyond 710 it is +inf; NaN passes through the clamp
    let gone = hi < -746.0;
    let c = if gone { 0.0 } else { hi.clamp(-746.0, 710.0) };
    let t = m(if LO { c + lo } else { c }, LOG2E, ROUNDER);
    let n = t - ROUNDER;
    let r = m(-n, ln2_hi, c);
    let r = m(-n, ln2_lo, if LO { r + lo } else { r });
    let mut p = EXP_F64_C[0];
    for &k in &EXP_F64_C[1..] {
        p = m(p, r, k);
    }
    // 2^n = 2^h 2^(n - h), h = floor(n / 2), each factor's exponent field from the low bits
    // of a rounder sum shifted up (the rounder's own bits shift out); all 64-bit operations
    // AVX2 has (it has no 64-bit arithmetic shift)
    let h = (n * 0.5 - 0.25) + ROUNDER;
    let bias = 1023u64 << 52;
    let s1 = f64::from_bits((h.to_bits() << 52).wrapping_add(bias));
    let s2 = f64::from_bits(
        (t.to_bits() << 52)
            .wrapping_sub(h.to_bits() << 52)
            .wrapping_add(bias),
    );
    let y = p * s1 * s2;
    if gone {
        0.0
    } else {
        y
    }
}

/// `e^x - 1` for f64, [`expm1_f32`]'s algorithm on [`exp_f64`]'s reduction and polynomial
/// (Taylor's to degree 13, less its constant term), `2^n (e^r - 1) + (2^n - 1)` in the same
/// two fused steps. Branch-free, so loops over it vectorise (libm's `expm1` is a call per
/// element); within 1 ulp of glibc's `expm1` at 500,000 points over its range, both forms;
/// `-1` from `x = -37.5`, `+inf` past `ln(f64::MAX)`, `expm1(-0) = -0`, NaN for NaN.
#[inline(always)]
pub(crate) fn expm1_f64<const FMA: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    // from -708 the result is -1 and 2^n stays normal (n >= -1021); at 710 it is +inf
    let c = x.clamp(-708.0, 710.0);
    let t = m(c, LOG2E, ROUNDER);
    let n = t - ROUNDER;
    let r = m(-n, LN2_F64.0, c);
    let r = m(-n, LN2_F64.1, r);
    let mut p = EXP_F64_C[0];
    for &k in &EXP_F64_C[1..12] {
        p = m(p, r, k);
    }
    // e^r - 1 = r + lo, scaled part by part (see `expm1_f32`)
    let lo = r * r * p;
    // 2^n for n up to 1023, its exponent field from the low bits of a rounder sum shifted
    // up (as in `exp_f64`); n = 1024 doubles afterwards, exactly
    let top = n > 1023.0;
    let field = (n.min(1023.0) + ROUNDER).to_bits() << 52;
    let s = f64::from_bits(field.wrapping_add(1023 << 52));
    let y = m(s, lo, m(s, r, s - 1.0));
    if x == 0.0 {
        x
    } else if top {
        y * 2.0
    } else {
        y
    }
}

/// `a = 2^k (1 + f)` for a positive normal f64, with `1 + f` in `[√½, √2)`: `(f, k)`, `f`
/// exact. Branch-free from the bits, by logical shifts of a positive value (AVX2 has no
/// 64-bit arithmetic shift) and `k` as a float through 2^52's bits (nor a 64-bit integer
/// conversion); a zero, subnormal, negative, infinite or NaN `a` gives nonsense, which the
/// callers replace.
#[inline(always)]
fn split_near_one(a: f64) -> (f64, f64) {
    // 2^52: its bits or'ed with an integer below 2^52 hold that integer plus 2^52
    const TWO52: f64 = 4_503_599_627_370_496.0;
    // k + 1023 (√½'s bits are 0x3fe6a09e667f3bcd)
    let bits = a.to_bits();
    let biased = bits
        .wrapping_sub(0x3fe6_a09e_667f_3bcd)
        .wrapping_add(1023 << 52)
        >> 52;
    let f = f64::from_bits(bits.wrapping_sub(biased.wrapping_sub(1023) << 52)) - 1.0;
    (f, f64::from_bits(biased | TWO52.to_bits()) - TWO52 - 1023.0)
}

/// `log2 a` of a positive normal f64, for the f32 kernels that take a logarithm in f64
/// ([`pow_f32`], [`erfinv_f32`]): within about `2^-44` relatively (their results' half ulp
/// is `2^-24`), and bound neither by f64's division nor by a long polynomial, as
/// [`log_f64`] is.
///
/// `a = 2^k m` with `m` in `[√½, √2)` from the bits, `log2 m = 2 log2(e) atanh(s)`,
/// `s = (m - 1)/(m + 1)` (`|s| <= 0.172`), by its Taylor series to `s^15` (the rest below
/// `2^-44` relatively); the division is an f32 reciprocal refined by one Newton step in f64
/// (about `2^-47`). `0` gives `-∞`, `+∞` itself, a negative `a` or NaN NaN; a subnormal `a`
/// is the caller's to exclude (every nonzero f32 is a normal f64).
#[inline(always)]
fn log2_for_f32<const FMA: bool>(a: f64) -> f64 {
    // 2 log2(e)/(2j + 1), j = 0..8
    const LOG2_ATANH: [f64; 8] = {
        let mut c = [0.0; 8];
        let mut j = 0;
        while j < 8 {
            c[j] = 2.0 * std::f64::consts::LOG2_E / (2 * j + 1) as f64;
            j += 1;
        }
        c
    };
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let (f, k) = split_near_one(a);
    // s = f / (2 + f): the reciprocal of d = 2 + f (exact) from f32's, one Newton step
    let d = 2.0 + f;
    let q = (1.0 / d as f32) as f64;
    let q = m(q, m(-d, q, 1.0), q);
    let s = f * q;
    let z = s * s;
    let mut poly = LOG2_ATANH[7];
    for &c in LOG2_ATANH[..7].iter().rev() {
        poly = m(poly, z, c);
    }
    let log2 = m(s, poly, k);
    if a == 0.0 {
        f64::NEG_INFINITY
    } else if a == f64::INFINITY {
        a
    } else if a < 0.0 || a.is_nan() {
        f64::NAN
    } else {
        log2
    }
}

/// `2^(p log2 |x|)` for f32 `x` and `p`, in f64 to about `2^-44` relatively (the f32
/// result's half ulp is `2^-24`), rounded once to f32: [`pow_f32`]'s magnitude.
///
/// The logarithm is [`log2_for_f32`]; then `y = p log2 |x|`, `n` the integer nearest `y`
/// and `2^(y - n)` by the Taylor series of `e^(r ln 2)` to degree 11 (`|r| <= 1/2`, the
/// rest below `2^-47`), scaled by `2^n` built in the exponent field (`y` clamped to
/// `[-160, 130]` first, where the f32 result is 0 or infinite already). On one Zen 4 core
/// this is 1.3x the speed of `e^(p ln |x|)` on [`log_f64`] and [`exp_f64`], whose accuracy
/// (1 ulp of f64) f32 cannot use.
#[inline(always)]
fn pow_magnitude_f32<const FMA: bool>(x: f32, p: f32) -> f32 {
    // (ln 2)^j / j!, j = 0..12
    const EXP2_TAYLOR: [f64; 12] = {
        let mut c = [1.0; 12];
        let mut j = 1;
        while j < 12 {
            c[j] = c[j - 1] * std::f64::consts::LN_2 / j as f64;
            j += 1;
        }
        c
    };
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let log2 = log2_for_f32::<FMA>((x as f64).abs());
    // 2^y: NaN passes through the clamp and the polynomial
    let y = (p as f64 * log2).clamp(-160.0, 130.0);
    let t = y + ROUNDER;
    let r = y - (t - ROUNDER);
    let mut e = EXP2_TAYLOR[11];
    for &c in EXP2_TAYLOR[..11].iter().rev() {
        e = m(e, r, c);
    }
    let scale = f64::from_bits((t.to_bits() << 52).wrapping_add(1023 << 52));
    (e * scale) as f32
}

/// `x^p` for f32 as C's `powf` defines it, the magnitude `2^(p log2 |x|)` in f64
/// ([`pow_magnitude_f32`]: within `2^-44` relatively before its rounding to f32, so within
/// 1 ulp of the exact value and nearly always the correctly rounded one), the sign and NaN
/// from `p`'s parity: a negative `x` to an odd integer power is negative, to a non-integer
/// finite one NaN. Branch-free, so loops over it vectorise (libm's `powf` is a call per
/// element; a scalar `p` is classified once, outside the loop). `x^±0 = 1`, `1^p = 1` (NaN
/// `p` included), `(-1)^±inf = 1`, and the zeros and infinities as C's.
#[inline(always)]
pub(crate) fn pow_f32<const FMA: bool>(x: f32, p: f32) -> f32 {
    let magnitude = pow_magnitude_f32::<FMA>(x, p);
    let integer = p.fract() == 0.0;
    let odd = integer && (p * 0.5).fract() != 0.0;
    let y = if x.is_sign_negative() && odd {
        -magnitude
    } else {
        magnitude
    };
    if p == 0.0 || x == 1.0 || (x == -1.0 && p.is_infinite()) {
        1.0
    } else if x < 0.0 && x > f32::NEG_INFINITY && p.is_finite() && !integer {
        f32::NAN
    } else {
        y
    }
}

/// `x^(1/2)` as C's `pow` defines it: `sqrt(x)` (correctly rounded), but `+0` at `-0` and
/// `+∞` at `-∞`, where `sqrt` gives `-0` and NaN (NaN for other negative `x`, as both).
/// [`pow_scalar`](crate::Array::pow_scalar) takes it for the exponent 0.5: a square root,
/// where `e^(p ln x)` took 17x as long (f32, one AVX-512 core).
#[inline(always)]
pub(crate) fn pow_half<T: Float>(x: T) -> T {
    // (-0 + 0 is +0; the sum leaves every other root as it is)
    let y = x.sqrt() + T::zero();
    if x == T::neg_infinity() {
        T::infinity()
    } else {
        y
    }
}

/// `x^(-1/2)` as C's `pow` defines it, with fused multiply-adds: `y = 1/sqrt(x)` (two
/// roundings, within 1.5 ulp) refined by one Newton step on `x y² = 1` whose residual is
/// exact to far below an ulp (`x y` as a rounded product and its exact rest by a fused
/// multiply-add; `x y ≈ sqrt(x)` neither overflows nor underflows where `y²` would), so
/// the result is the correctly rounded one but for arguments within about `2^-40` ulp of a
/// rounding boundary. `+∞` at `±0`, `+0` at `+∞` and at `-∞` (where `1/sqrt` gives NaN),
/// NaN for other negative `x` and for NaN. Both types; the unfused forms are in
/// [`Float::pow_neg_half_kernel`].
#[inline(always)]
pub(crate) fn pow_neg_half<T: Float>(x: T) -> T {
    let one = T::one();
    let y = one / (x.sqrt() + T::zero());
    let p = x * y;
    let p_rest = x.mul_add(y, -p);
    // x y² - 1, and y (1 - e/2): the rest of (1 + e)^(-1/2) is below e², far below an ulp
    let e = p.mul_add(y, -one) + p_rest * y;
    let refined = (y * T::from(-0.5).expect("-1/2 is a float")).mul_add(e, y);
    if x > T::zero() && x < T::infinity() {
        refined
    } else if x == T::neg_infinity() {
        T::zero()
    } else {
        y
    }
}

/// `x^e` for a scalar exponent `e`, as [`MapFn::Powf`](crate::MapFn::Powf) computes it:
/// [`pow_half`] and [`Float::pow_neg_half_kernel`] for `±1/2`, [`Float::pow_kernel`]
/// otherwise.
#[inline(always)]
pub(crate) fn pow_scalar<T: Float, const FMA: bool>(x: T, e: f64) -> T {
    if e == 0.5 {
        pow_half(x)
    } else if e == -0.5 {
        x.pow_neg_half_kernel::<FMA>()
    } else {
        x.pow_kernel::<FMA>(<T as crate::Element>::from_f64(e))
    }
}

/// `π` and `π/2` for f32 in two parts (the first rounded to f32, the second the rest), so that
/// `π - r` and `π/2 - r` keep the constant's precision where `r` is small.
const PI_F32: (f32, f32) = (std::f32::consts::PI, -8.742_278e-8);
const FRAC_PI_2_F32: (f32, f32) = (std::f32::consts::FRAC_PI_2, -4.371_139e-8);

/// `atan` for f32 (Cephes' `atanf`), branch-free: `|x|` past `tan(3π/8)` as `π/2 + atan(-1/|x|)`,
/// past `tan(π/8)` as `π/4 + atan((|x| - 1)/(|x| + 1))` (one division either way, by 1
/// below), then a degree-9 odd polynomial; the sign copied from `x`. Within 3 ulp of the
/// exact value (2.1 at worst where the reductions meet; checked against f64); `±π/2` at `±∞`, NaN for NaN. libm's `atanf` is a call
/// per element.
#[inline(always)]
pub(crate) fn atan_f32<const FMA: bool>(x: f32) -> f32 {
    let m = madd::<FMA>;
    let a = x.abs();
    let (big, mid) = (a > 2.414_213_6, a > 0.414_213_57);
    let num = if big {
        -1.0
    } else if mid {
        a - 1.0
    } else {
        a
    };
    let den = if big {
        a
    } else if mid {
        a + 1.0
    } else {
        1.0
    };
    let t = num / den;
    let base = if big {
        FRAC_PI_2_F32
    } else if mid {
        (std::f32::consts::FRAC_PI_4, -2.185_569_4e-8)
    } else {
        (0.0, 0.0)
    };
    let z = t * t;
    let p = m(
        m(m(8.053_744_6e-2, z, -1.387_768_5e-1), z, 1.997_771_1e-1),
        z,
        -3.333_295e-1,
    );
    let r = m(p * z, t, t);
    ((r + base.1) + base.0).copysign(x)
}

/// `atan2(y, x)` for f32 as C's `atan2f` defines it, branch-free: [`atan_f32`] of
/// `min(|x|, |y|) / max(|x|, |y|)` (in `[0, 1]`; 0 for two zeros, 1 for two infinities),
/// taken from `π/2` where `|y|` is the larger and from `π` where `x` is negative (or `-0`),
/// the sign copied from `y`. Within 3 ulp of the exact value; libm's is a call per element.
#[inline(always)]
pub(crate) fn atan2_f32<const FMA: bool>(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let swap = ay > ax;
    let (num, den) = if swap { (ax, ay) } else { (ay, ax) };
    let q = if num == 0.0 {
        0.0
    } else if num == f32::INFINITY {
        1.0
    } else {
        num / den
    };
    let r = atan_f32::<FMA>(q);
    // π/2 - r, π - r, or π - (π/2 - r) = π/2 + r: one two-part constant each
    let negative = x.is_sign_negative();
    let (hi, lo) = if swap {
        FRAC_PI_2_F32
    } else if negative {
        PI_F32
    } else {
        (0.0, 0.0)
    };
    let r = (hi + if swap == negative { r } else { -r }) + lo;
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        r.copysign(y)
    }
}

/// Cephes' `asinf` on its reduced argument: `asin(s)` for `s` in `[0, 0.5]` (with `z = s²`)
/// or, past it, for `s = sqrt(z)`, `z = (1 - |x|)/2`: `s + s z P(z)`.
#[inline(always)]
fn asin_reduced<const FMA: bool>(z: f32, s: f32) -> f32 {
    let m = madd::<FMA>;
    let p = m(
        m(
            m(m(4.216_32e-2, z, 2.418_131_2e-2), z, 4.547_002_5e-2),
            z,
            7.495_300_5e-2,
        ),
        z,
        1.666_675_2e-1,
    );
    m(p * z, s, s)
}

/// `asin` (`ACOS` false) or `acos` for f32 (Cephes' `asinf` and `acosf`), branch-free: past
/// `|x| = 0.5` through `asin(sqrt((1 - |x|)/2))`, which halves the angle from the end of the
/// range, with `π/2` and `π` in two parts. Within 2 ulp of the exact value; NaN beyond
/// `[-1, 1]` and for NaN. libm's are a call per element.
#[inline(always)]
pub(crate) fn asin_or_acos_f32<const FMA: bool, const ACOS: bool>(x: f32) -> f32 {
    let a = x.abs();
    let big = a > 0.5;
    let z = if big { 0.5 * (1.0 - a) } else { a * a };
    let s = if big { z.sqrt() } else { a };
    let p = asin_reduced::<FMA>(z, s);
    if ACOS {
        let twice = p + p;
        if !big {
            (FRAC_PI_2_F32.0 - p.copysign(x)) + FRAC_PI_2_F32.1
        } else if x > 0.0 {
            twice
        } else {
            (PI_F32.0 - twice) + PI_F32.1
        }
    } else {
        let r = if big {
            (FRAC_PI_2_F32.0 - (p + p)) + FRAC_PI_2_F32.1
        } else {
            p
        };
        r.copysign(x)
    }
}

/// `sinh` for f32 in f64 on [`expm1_f64`]: `(e + e/(e + 1))/2` with `e = e^|x| - 1`, which
/// keeps its precision near 0, rounded to f32 (within 1 ulp), the sign copied from `x`.
/// `|x|` is clamped at 100 first, where the result is +∞ in f32 either way (NaN passes).
#[inline(always)]
pub(crate) fn sinh_f32<const FMA: bool>(x: f32) -> f32 {
    let e = expm1_f64::<FMA>((x.abs() as f64).clamp(0.0, 100.0));
    ((0.5 * (e + e / (e + 1.0))) as f32).copysign(x)
}

/// `cosh` for f32 in f64 on [`exp_f64`]: `(e + 1/e)/2` with `e = e^|x|`, rounded to f32
/// (within 1 ulp); `|x|` clamped at 100 as in [`sinh_f32`].
#[inline(always)]
pub(crate) fn cosh_f32<const FMA: bool>(x: f32) -> f32 {
    let e = exp_f64::<FMA>((x.abs() as f64).clamp(0.0, 100.0));
    (0.5 * (e + 1.0 / e)) as f32
}

/// `π/2` in fdlibm's two f64 parts (the first rounded, the second the rest).
const FRAC_PI_2_F64: (f64, f64) = (
    f64::from_bits(0x3ff9_21fb_5444_2d18),
    f64::from_bits(0x3c91_a626_3314_5c07),
);

/// `atan` for f64 by fdlibm's algorithm, branch-free: `|x|` reduced by one division to
/// `t` near 0 against `atan(1/2)`, `atan(1)`, `atan(3/2)` or `π/2` (each in two parts, the
/// lane's pair picked by selects), then fdlibm's polynomial of degree 22; the sign copied
/// from `x`. Within 1 ulp of glibc's; `±π/2` at `±∞`, NaN for NaN. libm's `atan` is a call
/// per element.
#[inline(always)]
pub(crate) fn atan_f64<const FMA: bool>(x: f64) -> f64 {
    const A: [f64; 11] = [
        f64::from_bits(0x3fd5_5555_5555_550d),
        f64::from_bits(0xbfc9_9999_9998_ebc4),
        f64::from_bits(0x3fc2_4924_9200_83ff),
        f64::from_bits(0xbfbc_71c6_fe23_1671),
        f64::from_bits(0x3fb7_45cd_c54c_206e),
        f64::from_bits(0xbfb3_b0f2_af74_9a6d),
        f64::from_bits(0x3fb1_0d66_a0d0_3d51),
        f64::from_bits(0xbfad_de2d_52de_fd9a),
        f64::from_bits(0x3fa9_7b4b_2476_0deb),
        f64::from_bits(0xbfa2_b444_2c6a_6c2f),
        f64::from_bits(0x3f90_ad3a_e322_da11),
    ];
    // atan(1/2), atan(1), atan(3/2), atan(∞) in two parts
    const HALF: (f64, f64) = (
        f64::from_bits(0x3fdd_ac67_0561_bb4f),
        f64::from_bits(0x3c7a_2b7f_222f_65e2),
    );
    const ONE: (f64, f64) = (
        f64::from_bits(0x3fe9_21fb_5444_2d18),
        f64::from_bits(0x3c81_a626_3314_5c07),
    );
    const THREE_HALVES: (f64, f64) = (
        f64::from_bits(0x3fef_730b_d281_f69b),
        f64::from_bits(0x3c70_0788_7af0_cbbd),
    );
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let a = x.abs();
    // [0, 7/16): t = a; [7/16, 11/16): (2a - 1)/(2 + a); [11/16, 19/16): (a - 1)/(a + 1);
    // [19/16, 39/16): (a - 1.5)/(1 + 1.5a); beyond: -1/a
    let (num, den, base) = if a < 0.4375 {
        (a, 1.0, (0.0, 0.0))
    } else if a < 0.6875 {
        (m(2.0, a, -1.0), 2.0 + a, HALF)
    } else if a < 1.1875 {
        (a - 1.0, a + 1.0, ONE)
    } else if a < 2.4375 {
        (a - 1.5, m(1.5, a, 1.0), THREE_HALVES)
    } else {
        (-1.0, a, FRAC_PI_2_F64)
    };
    let t = num / den;
    let z = t * t;
    let w = z * z;
    let odd = z * m(
        w,
        m(w, m(w, m(w, m(w, A[10], A[8]), A[6]), A[4]), A[2]),
        A[0],
    );
    let even = w * m(w, m(w, m(w, m(w, A[9], A[7]), A[5]), A[3]), A[1]);
    // base + t - t (odd + even), as fdlibm: hi - ((t (s1 + s2) - lo) - t)
    let r = base.0 - ((t * (odd + even) - base.1) - t);
    r.copysign(x)
}

/// `atan2(y, x)` for f64 as C's `atan2` defines it, branch-free, as [`atan2_f32`]: [`atan_f64`]
/// of `min(|x|, |y|) / max(|x|, |y|)`, taken from `π/2` where `|y|` is the larger and from
/// `π` where `x` is negative (or `-0`), each in two parts, the sign copied from `y`. Within 2
/// ulp of glibc's; libm's is a call per element.
#[inline(always)]
pub(crate) fn atan2_f64<const FMA: bool>(y: f64, x: f64) -> f64 {
    const PI: (f64, f64) = (
        f64::from_bits(0x4009_21fb_5444_2d18),
        f64::from_bits(0x3ca1_a626_3314_5c07),
    );
    let (ax, ay) = (x.abs(), y.abs());
    let swap = ay > ax;
    let (num, den) = if swap { (ax, ay) } else { (ay, ax) };
    let q = if num == 0.0 {
        0.0
    } else if num == f64::INFINITY {
        1.0
    } else {
        num / den
    };
    let r = atan_f64::<FMA>(q);
    let negative = x.is_sign_negative();
    let (hi, lo) = if swap {
        FRAC_PI_2_F64
    } else if negative {
        PI
    } else {
        (0.0, 0.0)
    };
    let r = (hi + if swap == negative { r } else { -r }) + lo;
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        r.copysign(y)
    }
}

/// fdlibm's rational `z R(z)` of `asin` and `acos` (`asin(s) = s + s z R(z)` with `z = s²`,
/// on `[0, 1/4]`) as its numerator and denominator.
#[inline(always)]
fn asin_rational<const FMA: bool>(z: f64) -> (f64, f64) {
    const P: [f64; 6] = [
        f64::from_bits(0x3fc5_5555_5555_5555),
        f64::from_bits(0xbfd4_d612_03eb_6f7d),
        f64::from_bits(0x3fc9_c155_0e88_4455),
        f64::from_bits(0xbfa4_8228_b568_8f3b),
        f64::from_bits(0x3f49_efe0_7501_b288),
        f64::from_bits(0x3f02_3de1_0dfd_f709),
    ];
    const Q: [f64; 4] = [
        f64::from_bits(0xc003_3a27_1c8a_2d4b),
        f64::from_bits(0x4000_2ae5_9c59_8ac8),
        f64::from_bits(0xbfe6_066c_1b8d_0159),
        f64::from_bits(0x3fb3_b8c5_b12e_9282),
    ];
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let p = z * m(
        z,
        m(z, m(z, m(z, m(z, P[5], P[4]), P[3]), P[2]), P[1]),
        P[0],
    );
    let q = m(z, m(z, m(z, m(z, Q[3], Q[2]), Q[1]), Q[0]), 1.0);
    (p, q)
}

/// `asin` (`ACOS` false) or `acos` for f64 by fdlibm's algorithms, branch-free: below `|x| =
/// 1/2` [`asin_rational`] of `x²`; past it through `asin(sqrt((1 - |x|)/2))`, with the square
/// root `s` split in two where the result needs it (a head with its low 32 bits zero and
/// `(z - head²)/(s + head)`, which keeps `2s` exact enough near `|x| = 1/2`) and `π/2`, `π/4`
/// and `π` in two parts. The rational's quotient and the split's share one division (`1/(q
/// d)`: its rounding reaches the result damped by the size of those terms). Within 1 ulp of
/// glibc's; NaN beyond `[-1, 1]` and for NaN. libm's are a call per element.
#[inline(always)]
pub(crate) fn asin_or_acos_f64<const FMA: bool, const ACOS: bool>(x: f64) -> f64 {
    let (pio2_hi, pio2_lo) = FRAC_PI_2_F64;
    let a = x.abs();
    let small = a < 0.5;
    let z = if small { a * a } else { 0.5 * (1.0 - a) };
    let (p, q) = asin_rational::<FMA>(z);
    let s = z.sqrt();
    let head = f64::from_bits(s.to_bits() & 0xffff_ffff_0000_0000);
    // (at z = 0, |x| = 1 or 0, the split's tail is 0 over 1)
    let d = if z == 0.0 { 1.0 } else { s + head };
    let inverse = 1.0 / (q * d);
    let r = p * d * inverse;
    let tail = (z - head * head) * q * inverse;
    if ACOS {
        let near = pio2_hi - (x - (pio2_lo - x * r));
        let negative = std::f64::consts::PI - 2.0 * (s + (r * s - pio2_lo));
        let positive = 2.0 * (head + (r * s + tail));
        if small {
            near
        } else if x < 0.0 {
            negative
        } else {
            positive
        }
    } else {
        let near = a + a * r;
        let far = pio2_hi - (2.0 * (s + s * r) - pio2_lo);
        let pio4_hi = 0.5 * pio2_hi;
        let mid = pio4_hi - ((2.0 * s * r - (pio2_lo - 2.0 * tail)) - (pio4_hi - 2.0 * head));
        let y = if small {
            near
        } else if a >= f64::from_bits(0x3fef_3333_0000_0000) {
            far
        } else {
            mid
        };
        y.copysign(x)
    }
}

/// `e^|x| / 2` where `|x|` is past 709 (and `e^|x|` may overflow where half of it does
/// not) from `e^(|x| - ln2_hi)`, `e` of it (`|x| - ln2_hi` is exact there): the rest of
/// `ln 2` as a factor `1 - ln2_lo` (a product, so that `+inf` stays `+inf`).
#[inline(always)]
fn half_exp_far(e: f64) -> f64 {
    e * (1.0 - LN2_F64.1)
}

/// `sinh` for f64 on [`expm1_f64`]: `(e + e/(e + 1))/2` with `e = e^|x| - 1` (fdlibm's form:
/// `2e - e²/(e + 1)` below 1, where it keeps its precision, and `e^|x|/2` far from 0), and
/// past 709 `e^(|x| - ln 2)` ([`half_exp_far`]), so results up to the overflow threshold
/// come out; the sign copied from `x`. Branch-free, within 2 ulp of glibc's below 709 and 3
/// in the last 1.5 before the overflow.
#[inline(always)]
pub(crate) fn sinh_f64<const FMA: bool>(x: f64) -> f64 {
    let a = x.abs();
    let far = a > 709.0;
    let e = expm1_f64::<FMA>(if far { a - LN2_F64.0 } else { a });
    let w = e + 1.0;
    let y = if far {
        half_exp_far(w)
    } else if a < 1.0 {
        0.5 * (2.0 * e - e * e / w)
    } else {
        0.5 * (e + e / w)
    };
    y.copysign(x)
}

/// `cosh` for f64 on [`exp_f64`]'s algorithm: `(e + 1/e)/2` with `e = e^|x|`, and past 709
/// `e^(|x| - ln 2)` with `ln 2` in two parts, so results up to the overflow threshold come
/// out. Branch-free, within 2 ulp of glibc's.
#[inline(always)]
pub(crate) fn cosh_f64<const FMA: bool>(x: f64) -> f64 {
    let a = x.abs();
    let far = a > 709.0;
    let (hi, lo) = if far {
        (a - LN2_F64.0, -LN2_F64.1)
    } else {
        (a, 0.0)
    };
    let e = exp_f64_parts::<FMA, true>(hi, lo);
    if far {
        e
    } else {
        0.5 * (e + 1.0 / e)
    }
}

/// `erfinv` for f32, branch-free in f64: `erfinv(y) = y g(w)` with `w = -ln((1 - y)(1 + y))`
/// (the product exact in f64, so `w` keeps its precision as `|y|` nears 1; the logarithm
/// [`log2_for_f32`]'s, within `2^-44`), `g` a polynomial of degree 11 in `w - 2.5` on
/// `w <= 5` (`|y|` up to 0.9966) and of degree 13 in `w` beyond (to the f32 nearest 1,
/// `w = 15.9`), both Chebyshev fits by mpmath's `chebyfit` to `erfinv(y)/y` (within
/// 6.4e-10; `docs/fits/erfinv.py` makes them); rounded to f32, within 0.51 ulp of the exact
/// value at every 997th float of `[-1, 1]`. ±∞ at ±1, NaN beyond and for NaN. Both
/// polynomials run for every lane and the lane's is selected (the slice loops run
/// [`erfinv_f32_near`] where no argument of a run needs the second).
#[inline(always)]
pub(crate) fn erfinv_f32<const FMA: bool>(y: f32) -> f32 {
    erfinv_f32_parts::<FMA, false>(y)
}

/// Below this magnitude [`erfinv_f32`] takes its central polynomial (`w` is 4.994 there,
/// the tail's begins at 5), so [`erfinv_f32_near`] gives its values.
pub(crate) const ERFINV_F32_NEAR_END: f32 = 0.9966;

/// [`erfinv_f32`] below [`ERFINV_F32_NEAR_END`] in magnitude, bit for bit, without the tail's
/// polynomial: the loops over `[-1, 1]` run it over the runs of arguments that need no tail
/// (`near_by_runs`), the 14 multiply-adds a lane of the branch-free form pays for nothing
/// there.
#[inline(always)]
pub(crate) fn erfinv_f32_near<const FMA: bool>(y: f32) -> f32 {
    erfinv_f32_parts::<FMA, true>(y)
}

/// [`erfinv_f32`], and with `NEAR` its central polynomial alone.
#[inline(always)]
fn erfinv_f32_parts<const FMA: bool, const NEAR: bool>(y: f32) -> f32 {
    const CENTRAL: [f64; 12] = [
        1.234_657_711_450_257_3e-10,
        4.340_626_803_853_993e-10,
        -1.086_176_127_159_434_3e-8,
        1.650_364_404_121_373e-8,
        4.786_897_084_558_858e-7,
        -3.426_266_209_734_268e-6,
        -4.996_000_110_143_956e-6,
        2.182_641_252_155_226e-4,
        -1.252_707_957_355_770_2e-3,
        -4.177_325_080_457_763e-3,
        2.466_402_767_485_842_4e-1,
        1.501_409_351_748_176_4,
    ];
    // in (w - 10.5)/5.5, on [5, 16]
    const TAIL: [f64; 14] = [
        6.596_081_880_115_07e-6,
        -8.154_851_530_608_231e-6,
        -2.516_214_827_508_302e-5,
        7.812_905_989_160_265e-5,
        -1.438_562_637_837_963_3e-4,
        2.546_379_041_133_44e-4,
        -3.232_094_868_728_001e-4,
        9.242_770_715_680_237e-6,
        1.557_814_442_523_82e-3,
        -6.980_838_107_490_776e-3,
        2.587_047_027_820_715_5e-2,
        -1.077_605_558_696_355_8e-1,
        8.530_428_652_194_476e-1,
        3.074_205_818_675_587_4,
    ];
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let x = y as f64;
    // (the product is exact: 1 ± x have at most 26 significant bits)
    let w = -std::f64::consts::LN_2 * log2_for_f32::<FMA>((1.0 - x) * (1.0 + x));
    let (t, u) = (w - 2.5, (w - 10.5) * (1.0 / 5.5));
    let p = CENTRAL[1..].iter().fold(CENTRAL[0], |p, &c| m(p, t, c));
    if NEAR {
        return (x * p) as f32;
    }
    let q = TAIL[1..].iter().fold(TAIL[0], |q, &c| m(q, u, c));
    let g = if w > 5.0 { q } else { p };
    if x.abs() == 1.0 {
        f32::INFINITY.copysign(y)
    } else {
        (x * g) as f32
    }
}

/// `erfinv` for f64, branch-free: `erfinv(y) = y g(w)` with `w = -ln(1 - y²)` (`1 - y²` in one
/// rounding where the FMA is, `(1 - |y|)(1 + |y|)` without it), `g` a polynomial in `w` on
/// `w <= 5` and in `sqrt(w)` on `[sqrt(5), 4]` and `[4, 6.05]` (to the double nearest 1),
/// Chebyshev fits by mpmath's `chebyfit` to `erfinv(y)/y` (within 2e-17 relative;
/// `docs/fits/erfinv.py` makes them), all three run for every lane and the lane's
/// selected. Within 2 ulp of a Newton iteration run to convergence; ±∞ at ±1, NaN beyond and
/// for NaN. (It was two Newton steps on libm's `erf` per element, which fell short within
/// 10⁻¹⁵ of ±1: `erfinv(1 - 2⁻⁵³)` came out as 5.364 instead of 5.864.)
#[inline(always)]
pub(crate) fn erfinv_f64<const FMA: bool>(y: f64) -> f64 {
    const CENTRAL: [f64; 22] = [
        1.645_337_994_308_72e-19,
        -6.099_820_601_275_317e-18,
        6.239_476_950_097_626e-17,
        7.591_865_313_668_958e-16,
        -2.876_680_644_422_554_4e-14,
        3.762_202_492_325_931_6e-13,
        -2.743_958_959_962_668e-12,
        1.136_376_504_855_499_2e-11,
        -2.461_865_708_877_179e-11,
        7.874_706_110_196_18e-11,
        -7.142_978_556_657_569e-10,
        1.050_590_330_945_806_4e-9,
        2.243_548_568_035_313e-8,
        -3.696_314_839_908_195e-8,
        -1.012_786_493_770_541_7e-6,
        2.020_107_908_432_359_3e-6,
        4.661_139_727_165_089e-5,
        -0.000_128_043_283_831_464_13,
        -0.002_335_101_643_153_923_4,
        0.011_549_342_038_391_792,
        0.232_013_666_534_650_72,
        0.886_226_925_452_758,
    ];
    const NEAR_MID: f64 = 3.118_033_988_749_895;
    const NEAR: [f64; 24] = [
        5.829_375_443_953_242e-10,
        -2.648_920_137_259_788e-9,
        1.690_519_309_041_930_2e-9,
        1.395_525_742_335_875e-8,
        -4.326_198_570_742_473e-8,
        3.778_719_026_719_509e-8,
        1.255_241_020_578_311e-7,
        -5.497_606_067_374_262e-7,
        8.122_724_208_143_61e-7,
        8.073_657_441_867_704e-7,
        -6.355_419_175_551_091e-6,
        1.197_718_841_940_059_1e-5,
        1.207_330_551_492_043_8e-6,
        -5.898_380_737_644_838_6e-5,
        0.000_140_209_570_931_587_08,
        -9.821_471_957_139_408e-5,
        -0.000_323_431_391_923_831_9,
        0.001_276_570_549_039_191_4,
        -0.002_572_906_916_295_173_2,
        0.003_883_109_161_184_944_3,
        -0.005_407_969_829_338_587,
        0.007_159_778_431_452_518,
        1.003_619_723_653_773_4,
        2.951_328_578_343_118,
    ];
    const FAR_MID: f64 = 5.025;
    const FAR: [f64; 20] = [
        5.490_944_936_009_027e-12,
        -1.794_611_220_853_724_2e-11,
        7.887_541_674_517_65e-12,
        7.540_850_985_811_657e-11,
        -3.550_768_899_538_186e-10,
        1.176_102_754_508_885_2e-9,
        -3.094_773_503_525_342_8e-9,
        6.747_241_648_928_505e-9,
        -1.303_411_693_117_034e-8,
        2.514_108_797_821_782e-8,
        -6.081_443_482_201_059e-8,
        2.146_276_941_634_971_7e-7,
        -9.486_829_589_198_793e-7,
        4.356_195_054_525_655e-6,
        -1.901_569_959_377_637_6e-5,
        7.357_695_156_533_326e-5,
        -0.000_207_552_202_121_668_53,
        -0.000_154_564_644_031_391_44,
        1.010_293_130_428_678_6,
        4.875_163_823_000_273,
    ];
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let a = y.abs();
    let p = if FMA {
        (-a).mul_add(a, 1.0)
    } else {
        (1.0 - a) * (1.0 + a)
    };
    let w = -log_f64::<FMA>(p);
    let s = w.sqrt();
    let horner = |cs: &[f64], t: f64| cs[1..].iter().fold(cs[0], |v, &c| m(v, t, c));
    let central = horner(&CENTRAL, w);
    let near = horner(&NEAR, s - NEAR_MID);
    let far = horner(&FAR, s - FAR_MID);
    let g = if w <= 5.0 {
        central
    } else if s <= 4.0 {
        near
    } else {
        far
    };
    if a == 1.0 {
        f64::INFINITY.copysign(y)
    } else {
        y * g
    }
}

/// `x` less the nearest even integer (exact), in `[-1, 1]`: `sin(π x)` and `cos(π x)` of it
/// are those of `x`, with no rounding of a large `π x`.
#[inline(always)]
fn less_nearest_even(x: f64) -> f64 {
    // 1.5·2^52: adding it rounds to an integer (the halves here: |x/2| below 2^52 matters,
    // beyond it x is an even integer and the difference 0 either way)
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let half = x * 0.5;
    let n = if half.abs() < 4.5e15 {
        (half + ROUNDER) - ROUNDER
    } else {
        half
    };
    x - 2.0 * n
}

/// `ln |Γ(x)|` (`DIGAMMA` false) or the digamma function `ψ(x)` for f32, in f64 and rounded
/// to f32, branch-free: below 0 by reflection (`ln |Γ(x)| = ln(π / |sin πx|) - ln Γ(1 - x)`,
/// `ψ(x) = ψ(1 - x) - π cot(πx)`, the sine and cosine of `π` times `x` less its nearest even
/// integer, on [`sin_cos_parts_f64`]); below 16 shifted up by 8 (`Γ(y + 8) = Γ(y) y (y + 1)
/// ... (y + 7)`, the product's logarithm, or its logarithmic derivative `P'/P`, subtracted);
/// then Stirling's series, four terms for `ln Γ` and six for `ψ` past 8, whose f64 rounding
/// leaves the f32 result within 2 ulp (absolutely within 1e-7 near their zeros, at 1 and 2
/// for `ln Γ` (0 exactly there) and 1.4616 for `ψ`). `ln Γ` is +∞ at 0, the negative
/// integers and ±∞;
/// `ψ(±0) = ∓∞`, NaN at the negative integers and -∞. libm's `lgamma` and a scalar loop
/// for `ψ` were a call per element.
#[inline(always)]
pub(crate) fn lgamma_or_digamma_f32<const FMA: bool, const DIGAMMA: bool>(x: f32) -> f32 {
    lgamma_or_digamma_parts::<FMA, DIGAMMA, true>(x)
}

/// `dst[i] = lgamma_or_digamma_f32(src[i])`, bit for bit: a run of 16 with no negative
/// argument (nor NaN) skips the reflection's sine and cosine, which a branch-free loop pays
/// for every element (so every run of positive arguments does).
#[inline(always)]
pub(crate) fn lgamma_or_digamma_f32_slice<const FMA: bool, const DIGAMMA: bool>(
    dst: &mut [f32],
    src: &[f32],
) {
    let n = dst.len().min(src.len());
    let mut d = dst[..n].chunks_exact_mut(16);
    let mut s = src[..n].chunks_exact(16);
    for (d, s) in (&mut d).zip(&mut s) {
        if s.iter().all(|&x| x >= 0.0) {
            for (d, &x) in d.iter_mut().zip(s) {
                *d = lgamma_or_digamma_parts::<FMA, DIGAMMA, false>(x);
            }
        } else {
            for (d, &x) in d.iter_mut().zip(s) {
                *d = lgamma_or_digamma_parts::<FMA, DIGAMMA, true>(x);
            }
        }
    }
    for (d, &x) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = lgamma_or_digamma_parts::<FMA, DIGAMMA, true>(x);
    }
}

/// [`lgamma_or_digamma_f32`], with the reflection (`REFLECT`) or for arguments of at least
/// 0 only (the same operations for those, so the same bits). Between 0 and 0.5 the shift by
/// 8 needs no reflection: its product of positive factors keeps f64's precision, and the
/// difference `ln Γ(y + 8) - ln P` cancels at most 14-fold there (`ln Γ` is at least 0.57).
#[inline(always)]
fn lgamma_or_digamma_parts<const FMA: bool, const DIGAMMA: bool, const REFLECT: bool>(
    x: f32,
) -> f32 {
    use std::f64::consts::PI;
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let xd = x as f64;
    let reflect = REFLECT && xd < 0.0;
    let y = if reflect { 1.0 - xd } else { xd };
    let shift = y < 16.0;
    let z = if shift { y + 8.0 } else { y };
    // Π (y + k) and its derivative, by the product rule one factor at a time
    let (mut prod, mut deriv) = (1.0, 0.0);
    for k in 0..8 {
        let f = y + k as f64;
        deriv = m(deriv, f, prod);
        prod *= f;
    }
    let w = 1.0 / z;
    let w2 = w * w;
    let ln_z = log_f64::<FMA>(z);
    // sin(πx) and cos(πx) for the reflection, from x less its nearest even integer
    let (sin, cos, pole) = if REFLECT {
        let r = less_nearest_even(xd);
        let (sin, cos, q) = sin_cos_parts_f64::<FMA>(PI * r);
        (
            quadrant_f64(sin, cos, q),
            quadrant_f64(sin, cos, q.wrapping_add(1)),
            reflect && r == r.round(),
        )
    } else {
        (1.0, 1.0, false)
    };
    let out = if DIGAMMA {
        let series = w2
            * m(
                -w2,
                m(
                    -w2,
                    m(-w2, m(-w2, 1.0 / 132.0, 1.0 / 240.0), 1.0 / 252.0),
                    1.0 / 120.0,
                ),
                1.0 / 12.0,
            );
        let asymptotic = m(-0.5, w, ln_z) - series;
        let value = if shift {
            asymptotic - deriv / prod
        } else {
            asymptotic
        };
        if x == 0.0 {
            -(1.0f64.copysign(xd)) * f64::INFINITY
        } else if pole || x == f32::NEG_INFINITY {
            f64::NAN
        } else if reflect {
            value - PI * cos / sin
        } else {
            value
        }
    } else {
        // ½ ln 2π
        const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;
        let series = w * m(
            -w2,
            m(-w2, m(-w2, 1.0 / 1680.0, 1.0 / 1260.0), 1.0 / 360.0),
            1.0 / 12.0,
        );
        let stirling = m(z - 0.5, ln_z, HALF_LN_2PI - z) + series;
        // the shift's product and the reflection's π/|sin πx| under one logarithm
        let shifted = if shift { prod } else { 1.0 };
        let ln = log_f64::<FMA>(if reflect {
            PI * shifted / sin.abs()
        } else {
            shifted
        });
        if pole || x.is_infinite() {
            f64::INFINITY
        } else if x == 1.0 || x == 2.0 {
            // exactly, where the shift's logarithms leave 1e-12
            0.0
        } else if reflect {
            ln - stirling
        } else {
            stirling - ln
        }
    };
    if x.is_nan() {
        x
    } else {
        out as f32
    }
}

/// fdlibm's (`s_erf.c`) rational fits for `erfc` from 1.25 (where [`erf_or_erfc_f64`] takes
/// over from 2.5), one per range of `|x|`: on `[1.25, 1/0.35)` and `[1/0.35, 28)` `R(s)/S(s)`
/// with `s = 1/x²` and `erfc(|x|) = e^(-x² - 0.5625 + R/S) / |x|`. Numerators (8
/// coefficients) and denominators (less their constant 1; 8) padded with zeros, constant
/// term first.
const ERF_F64_N: [[f64; 8]; 2] = [
    [
        -9.864_944_034_847_148e-3,
        -6.938_585_727_071_818e-1,
        -1.055_862_622_532_329_1e1,
        -6.237_533_245_032_600_6e1,
        -1.623_966_694_625_734_7e2,
        -1.846_050_929_067_110_4e2,
        -8.128_743_550_630_66e1,
        -9.814_329_344_169_145,
    ],
    [
        -9.864_942_924_700_1e-3,
        -7.992_832_376_805_23e-1,
        -1.775_795_491_775_475_2e1,
        -1.606_363_848_558_219_2e2,
        -6.375_664_433_683_896e2,
        -1.025_095_131_611_077_2e3,
        -4.835_191_916_086_514e2,
        0.0,
    ],
];
/// [`ERF_F64_N`]'s denominators, `1 + s·(these)`.
const ERF_F64_D: [[f64; 8]; 2] = [
    [
        1.965_127_166_743_925_7e1,
        1.376_577_541_435_190_4e2,
        4.345_658_774_752_292_3e2,
        6.453_872_717_332_679e2,
        4.290_081_400_275_678_3e2,
        1.086_350_055_417_794_4e2,
        6.570_249_770_319_282,
        -6.042_441_521_485_81e-2,
    ],
    [
        3.033_806_074_348_246e1,
        3.257_925_129_965_739e2,
        1.536_729_586_084_437e3,
        3.199_858_219_508_595_5e3,
        2.553_050_406_433_164_4e3,
        4.745_285_412_069_553_7e2,
        -2.244_095_244_658_582e1,
        0.0,
    ],
];

/// `erf(x)` (`ERFC` false) or `erfc(x)` for f64 from 2.5 in magnitude (below it
/// [`erf_near_f64`] and [`erfc_near_f64`]) by fdlibm's algorithm (`s_erf.c`), branch-free so
/// loops over it vectorise: each lane picks its range's coefficients ([`ERF_F64_N`]) by
/// selects and evaluates one rational function, then one exponential of
/// `-x² - 0.5625 + R/S` held in two parts (`x²` as `z² + (x - z)(x + z)`, `z` `|x|` with its
/// low 32 bits cleared, so `z²` is exact), divided by `|x|`. Two divisions where fdlibm has
/// three: its rationals in `1/x²` are evaluated as rationals in `x²`, reversed. libm's are
/// a call per element (2.7x slower on `[1024, 512]` on two AVX-512 cores). `erf` within 1
/// ulp of fdlibm's (the `libm` crate's), `erfc` within 3 (relatively, wherever it is
/// normal); ±1 and 0 or 2 at the ends, NaN for NaN.
#[inline(always)]
fn erf_or_erfc_f64<const FMA: bool, const ERFC: bool>(x: f64) -> f64 {
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let a = x.abs();
    // the ranges' end as fdlibm compares it (1/0.35 by its high word); a select on this
    // mask, not an index (which the compiler turns into table lookups, gathers in a loop)
    let near = a < f64::from_bits(0x4006_db6d_0000_0000);
    // the coefficient of `s^k` in the numerator or (`den`) the denominator of the lane's range
    let pick = |k: usize, den: bool| {
        let at = |r: usize| match den {
            // (the denominator's constant 1)
            true if k == 0 => 1.0,
            true => ERF_F64_D[r][k - 1],
            false => ERF_F64_N[r][k],
        };
        if near {
            at(0)
        } else {
            at(1)
        }
    };
    // (NaN stays NaN; past 28 erfc is 0 and erf ±1 in f64) the rational in s = 1/x² is
    // evaluated as one in v = x², both polynomials reversed and multiplied by v^8 (the
    // numerator's lowest power then v), which spares the division 1/x²
    let far = a.clamp(1.25, 28.0);
    let v = far * far;
    let mut num = pick(0, false);
    let mut den = pick(0, true);
    for j in 1..9 {
        if j < 8 {
            num = m(num, v, pick(j, false));
        }
        den = m(den, v, pick(j, true));
    }
    let q = num * v / den;
    // erfc(|x|): e^(-z² - 0.5625) e^((z - |x|)(z + |x|) + R/S) / |x| as one exponential of
    // the two parts
    let z = f64::from_bits(far.to_bits() & 0xffff_ffff_0000_0000);
    let tail = exp_f64_parts::<FMA, true>(-z * z - 0.5625, m(z - far, z + far, q)) / far;
    let negative = x < 0.0;
    if x.is_nan() {
        x
    } else if ERFC {
        if negative {
            2.0 - tail
        } else {
            tail
        }
    } else {
        (1.0 - tail).copysign(x)
    }
}

// erf and erfc below 2.5 for f64 ([`erf_near_f64`], [`erfc_near_f64`]), by
// `docs/fits/erf.py`: the worst errors of erf's arithmetic there, 0.747 ulp below 0.84375
// and 0.824 ulp above it, over 20000 random arguments each (the fits themselves are within
// 2e-19); erfc's logarithm within 1.1e-16 absolutely (fitted within 9.2e-19)
const ERF_MID_POINT: f64 = 1.671875;
const ERF_MID_LO: f64 = 4.569977166994984e-17;
const ERF_NEAR: [f64; 12] = [
    -8.879702704985848e-10,
    1.4205594850504056e-08,
    -1.630309508468887e-07,
    1.6457914349746103e-06,
    -1.4925463570287675e-05,
    0.00012055327421282683,
    -0.000854832691425112,
    0.005223977624080742,
    -0.026866170645031,
    0.11283791670954745,
    -0.3761263890318375,
    0.1283791670955126,
];
const ERF_MID: [f64; 23] = [
    7.878420086372296e-10,
    -1.5192226417943142e-09,
    -9.290665671128786e-09,
    3.364036911223447e-08,
    4.317469873117682e-08,
    -4.155799447591022e-07,
    3.2140938444465334e-07,
    3.195412749937195e-06,
    -8.476692094860715e-06,
    -1.0547341466818845e-05,
    8.338413821820287e-05,
    -7.729093394625036e-05,
    -0.00040819227981740973,
    0.0012306073108711841,
    -1.851774847344009e-05,
    -0.006293455468413111,
    0.012361932166438048,
    0.0016313865581077064,
    -0.0497665886265328,
    0.10550006528630067,
    -0.11527461659620056,
    0.06894930338464332,
    0.9819401274673468,
];

const ERFC_MID_LOG: [f64; 18] = [
    -3.1655654550963695e-11,
    1.5532133690445718e-10,
    -4.3508226689647086e-10,
    6.429448002861862e-10,
    2.324042546952525e-09,
    -2.570876196980712e-08,
    1.3604892647031438e-07,
    -5.088267967559465e-07,
    1.2453318389994068e-06,
    8.140968765163473e-08,
    -2.4038473983533858e-05,
    0.00018760911432203018,
    -0.0010489669782761022,
    0.005017907637222005,
    -0.022044670528182205,
    0.0950476903897631,
    -0.4740678312155647,
    -0.21889677338583388,
];

/// Where f64 `erf` and `erfc` change from `x + x R(x²)` ([`erf_near_r`]) to their middle
/// forms (fdlibm's first range's end).
const ERF_SMALL_END: f64 = 0.843_75;

/// `R(t)` of [`ERF_NEAR`] at `t = x²`, shared by [`erf_near_f64`] and [`erfc_near_f64`].
#[inline(always)]
fn erf_near_r<const FMA: bool>(t: f64) -> f64 {
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let mut r = ERF_NEAR[0];
    for &c in &ERF_NEAR[1..] {
        r = m(r, t, c);
    }
    r
}

/// Where f64 `erf` leaves [`erf_near_f64`] for fdlibm's form ([`erf_or_erfc_f64`]).
pub(crate) const ERF_NEAR_END: f64 = 2.5;

/// `erf(x)` for f64 below 2.5 in magnitude, by two polynomials and no division: below
/// 0.84375 `x + x R(x²)` ([`ERF_NEAR`]), then `erf(|x|)` itself in `|x| - 1.671875`
/// ([`ERF_MID`], its constant term in two parts so that its rounding joins the sum last),
/// signed. Within 0.83 ulp of the exact value (`docs/fits/erf.py`); every lane computes both
/// and keeps its own. fdlibm's form takes two divisions and an exponential per element: a
/// run of arguments below 2.5 (nine in ten runs of eight of `N(0, 1)`'s) computes this alone
/// ([`near_by_runs`](crate::elementwise::kernels::near_by_runs)).
#[inline(always)]
pub(crate) fn erf_near_f64<const FMA: bool>(x: f64) -> f64 {
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let r = erf_near_r::<FMA>(x * x);
    let a = x.abs();
    let u = a - ERF_MID_POINT;
    let mut v = ERF_MID[0];
    for &c in &ERF_MID[1..ERF_MID.len() - 1] {
        v = m(v, u, c);
    }
    let mid = m(u, v, ERF_MID_LO) + ERF_MID[ERF_MID.len() - 1];
    if a < ERF_SMALL_END {
        m(x, r, x)
    } else {
        mid.copysign(x)
    }
}

/// `erfc(x)` for f64 below 2.5 in magnitude, with no division: below 0.84375 `1 - (x + x
/// R(x²))` on [`erf_near_f64`]'s `R` (from 1/4, `1/2 - ((x - 1/2) + x R)`, as fdlibm, where
/// the difference keeps more bits), then `erfc(|x|) = e^(-x² - 1 + L(|x|))` with `L =
/// ln(e^(x²) erfc(x)) + 1` a polynomial in `|x| - 1.671875` ([`ERFC_MID_LOG`], within
/// 1.1e-16 absolutely) and `x²` held in two parts (as [`erf_or_erfc_f64`] does), so erfc
/// keeps its relative accuracy down to 4e-4 at 2.5; `2 - erfc(|x|)` for negative `x`. Every
/// lane computes both forms and keeps its own.
#[inline(always)]
pub(crate) fn erfc_near_f64<const FMA: bool>(x: f64) -> f64 {
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let r = erf_near_r::<FMA>(x * x);
    let small = if x < 0.25 {
        1.0 - m(x, r, x)
    } else {
        0.5 - m(x, r, x - 0.5)
    };
    let a = x.abs();
    let u = a - ERF_MID_POINT;
    let mut l = ERFC_MID_LOG[0];
    for &c in &ERFC_MID_LOG[1..] {
        l = m(l, u, c);
    }
    // -x² - 1 = -z² - 1 + (z - a)(z + a), the first part exact (z has 21 significant bits)
    let z = f64::from_bits(a.to_bits() & 0xffff_ffff_0000_0000);
    let tail = exp_f64_parts::<FMA, true>(m(-z, z, -1.0), m(z - a, z + a, l));
    if a < ERF_SMALL_END {
        small
    } else if x < 0.0 {
        2.0 - tail
    } else {
        tail
    }
}

/// The error function for f64: [`erf_near_f64`] below 2.5 in magnitude, fdlibm's form
/// ([`erf_or_erfc_f64`]) from there (within 1 ulp of its exact value; ±1 from 5.93, NaN for
/// NaN). Branch-free: each lane computes both; a run of arguments below 2.5 computes the
/// first alone ([`near_by_runs`](crate::elementwise::kernels::near_by_runs)).
#[inline(always)]
pub(crate) fn erf_f64<const FMA: bool>(x: f64) -> f64 {
    let near = erf_near_f64::<FMA>(x);
    let far = erf_or_erfc_f64::<FMA, false>(x);
    // (NaN fails the comparison and takes fdlibm's form, which keeps it)
    if x.abs() < ERF_NEAR_END {
        near
    } else {
        far
    }
}

/// The complementary error function for f64: [`erfc_near_f64`] below 2.5 in magnitude,
/// fdlibm's form ([`erf_or_erfc_f64`]) from there (within 3 ulp of libm's, relatively, down
/// to the subnormal results from 26.55, 4 without fused multiply-adds; 0 from 27.3, 2 from
/// -6, NaN for NaN). Branch-free: each lane computes both.
#[inline(always)]
pub(crate) fn erfc_f64<const FMA: bool>(x: f64) -> f64 {
    let near = erfc_near_f64::<FMA>(x);
    let far = erf_or_erfc_f64::<FMA, true>(x);
    if x.abs() < ERF_NEAR_END {
        near
    } else {
        far
    }
}

/// `tanh` for f64 (Cephes' `tanh`), branch-free so loops over it vectorise: below 0.625 in
/// magnitude `x + x³ P(x²)/Q(x²)` (a [2/3] rational fit), from there `1 - 2/(e^(2|x|) + 1)`
/// on [`exp_f64`] (its cancellation bounded there, the result being at least 0.55), the
/// sign copied from `x` (so `tanh(-0) = -0`; ±1 from |x| = 19.1, NaN for NaN). Within 2 ulp
/// of glibc's `tanh` (fused); libm's is a call per element, 7x slower on one AVX-512 core.
#[inline(always)]
pub(crate) fn tanh_f64<const FMA: bool>(x: f64) -> f64 {
    const P: [f64; 3] = [
        -1.614_687_684_417_084_5e3,
        -9.928_772_310_019_185e1,
        -9.643_991_794_250_522e-1,
    ];
    const Q: [f64; 4] = [
        4.844_063_053_251_255e3,
        2.235_488_390_601_004_6e3,
        1.128_116_784_916_329_3e2,
        1.0,
    ];
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let a = x.abs();
    let z = a * a;
    let p = m(m(P[2], z, P[1]), z, P[0]);
    let q = m(m(m(Q[3], z, Q[2]), z, Q[1]), z, Q[0]);
    let small = m(a * z, p / q, a);
    let large = 1.0 - 2.0 / (exp_f64::<FMA>(2.0 * a) + 1.0);
    (if a < 0.625 { small } else { large }).copysign(x)
}

/// The natural logarithm for f64 (fdlibm's `log`), branch-free so loops over it vectorise:
/// `x = 2^k (1 + f)` with `1 + f` in `[√½, √2)` (a subnormal `x` scaled by `2^54` first),
/// `s = f/(2 + f)` and `ln(1 + f) = f - f²/2 + s (f²/2 + R(s²))` with fdlibm's degree-7 `R`
/// in two interleaved halves; `k ln 2` in two parts. Within 1 ulp of glibc's `log` (fused),
/// `ln 0 = -inf`, NaN below 0 and for NaN, `ln inf = inf`. libm's is a call per element;
/// this one is bound by its division (3.8x libm's speed on one AVX-512 core, 2x on AVX2).
#[inline(always)]
pub(crate) fn log_f64<const FMA: bool>(x: f64) -> f64 {
    const LG: [f64; 7] = [
        6.666_666_666_666_735e-1,
        3.999_999_999_940_942e-1,
        2.857_142_874_366_239e-1,
        2.222_219_843_214_978_4e-1,
        1.818_357_216_161_805e-1,
        1.531_383_769_920_937_3e-1,
        1.479_819_860_511_658_6e-1,
    ];
    let (ln2_hi, ln2_lo) = LN2_F64;
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let subnormal = x < f64::MIN_POSITIVE;
    let scaled = if subnormal {
        x * 18_014_398_509_481_984.0
    } else {
        x
    };
    // (a negative x or NaN makes nonsense here, replaced at the end)
    let (f, k) = split_near_one(scaled);
    let k = k - if subnormal { 54.0 } else { 0.0 };
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let r = z * m(m(m(LG[6], w, LG[4]), w, LG[2]), w, LG[0]) + w * m(m(LG[5], w, LG[3]), w, LG[1]);
    let hfsq = 0.5 * f * f;
    let ln = k * ln2_hi - ((hfsq - m(s, hfsq + r, k * ln2_lo)) - f);
    if x == 0.0 {
        f64::NEG_INFINITY
    } else if x < 0.0 || x.is_nan() {
        f64::NAN
    } else if x == f64::INFINITY {
        x
    } else {
        ln
    }
}

/// The natural logarithm for f32 (Cephes' `logf`), branch-free so loops over it vectorise:
/// `x = 2^e m` with `m` in `[√½, √2)` (a subnormal `x` scaled by `2^23` first), and
/// `ln x = e ln 2 + ln(1 + f)`, `f = m - 1`, where `ln(1 + f) = f - f²/2 + f³ P(f)` with a
/// degree-8 `P`; `e ln 2` in two parts so that it adds exactly. Within 0.83 ulp of the exact
/// value over every positive f32 (fused; checked against f64); `ln 0 = -inf`, `ln x = NaN`
/// below 0 and for NaN, `ln inf = inf`. libm's `logf` is a call per element, which kept
/// `log` 12x slower than PyTorch's on `[1024, 512]`.
#[inline(always)]
pub(crate) fn log_f32<const FMA: bool>(x: f32) -> f32 {
    let m = madd::<FMA>;
    let subnormal = x < f32::MIN_POSITIVE;
    let scaled = if subnormal { x * 8_388_608.0 } else { x };
    // the exponent that puts the mantissa in [√½, √2): √½'s bits are 0x3f3504f3
    // (wrapping: a negative x or NaN makes nonsense here, replaced at the end)
    let bits = scaled.to_bits() as i32;
    let e = bits.wrapping_sub(0x3f35_04f3) >> 23;
    let f = f32::from_bits(bits.wrapping_sub(e << 23) as u32) - 1.0;
    let e = e as f32 - if subnormal { 23.0 } else { 0.0 };
    let z = f * f;
    let y = poly::<FMA, 9>(LOG_F32_P, f) * f * z;
    let y = m(e, LN2_F32.1, y);
    let y = m(z, -0.5, y);
    let ln = m(e, LN2_F32.0, f + y);
    if x == 0.0 {
        f32::NEG_INFINITY
    } else if x < 0.0 || x.is_nan() {
        f32::NAN
    } else if x == f32::INFINITY {
        x
    } else {
        ln
    }
}

/// `ln(1 + x)` by Kahan's form on the type's vectorised logarithm ([`log_f32`],
/// [`log_f64`]): with `u = 1 + x` rounded, `ln(u) · x / (u - 1)` (the quotient undoes `u`'s
/// rounding), and `x` itself where `u` rounds to one. Branch-free, so loops over it vectorise
/// (softplus, log-sigmoid and BCE on logits take two per element; libm's `log1pf` and
/// `log1p` are a call per element). f32 within 3 ulp of the exact value (checked against
/// f64), f64 within 2 ulp of glibc's `log1p`; `-1` gives `-inf`, below it NaN, `+inf` itself.
#[inline(always)]
pub(crate) fn log1p_kahan<T: crate::dtype::Float, const FMA: bool>(x: T) -> T {
    let u = T::one() + x;
    let ln = u.log_kernel::<FMA>() * (x / (u - T::one()));
    if u == T::one() || x == T::infinity() {
        x
    } else {
        ln
    }
}

/// Horner's rule over `c` (constant term first).
#[inline(always)]
fn poly<const FMA: bool, const N: usize>(c: [f32; N], t: f32) -> f32 {
    let mut acc = c[N - 1];
    for k in (0..N - 1).rev() {
        acc = madd::<FMA>(acc, t, c[k]);
    }
    acc
}

/// `erfc(a)` of `a = |x| s` as its two factors `(t H(t), e^(-a²))`, with `s` 1 or, for the
/// normal distribution (`NORMAL`), `1/√2` (then `e^(-a²)` is `e^(-x²/2)`, the normal
/// density's exponential, and the first factor is halved: `Φ(-|x|)`'s). `t = 1/(1 + p a)` and `H` a polynomial fitted (by iterated
/// weighted least squares towards minimax, for relative error, then rounded to f32 one
/// coefficient at a time, refitting the rest) to `erfc(a) e^(a²) / t`: for erf of degree 8
/// on `a` in `[0, 4]`, for the normal distribution of degree 10 on `[0, 9.4]` (each off by a
/// fraction of an ulp; their comments say how much). `e^(-a²)` takes `x²` in two parts, its
/// rounding and the rest (by a fused multiply-add, or without one as `w² + (x - w)(x + w)`,
/// `w` the leading 12 bits of `x` so `w²` is exact), so the product keeps a few ulp where
/// `e^(-a²)` is 1e-35. Where `e^(-a²)` is below f32's normal range (`a` past 9.3, and ±∞)
/// it is 0, `t H(t)` finite; NaN gives NaN.
#[inline(always)]
fn erfc_factors<const FMA: bool, const NORMAL: bool>(x: f32) -> (f32, f32) {
    const P: f32 = 0.46;
    // for erf, on a in [0, 4] (past it erf is ±1 in f32): off by 2e-9
    const H: [f32; 9] = [
        1.0,
        -1.452_997_8,
        0.819_883_76,
        0.090_605_125,
        -0.206_010_94,
        -0.050_467_364,
        0.002_494_207_4,
        0.107_139_61,
        -0.051_369_857,
    ];
    // for the normal distribution, p 0.46/√2 as rounded to f32 and a in [0, 9.4], in powers
    // of 1/2 - t (which rounds less in Horner's rule than 1 - t there): off by 2e-8
    const P_NORMAL: f32 = P * std::f32::consts::FRAC_1_SQRT_2;
    const H_NORMAL: [f32; 11] = [
        0.476_020_25,
        -0.674_961_3,
        0.633_862_6,
        -0.296_871_72,
        -0.078_718_44,
        0.159_631_25,
        0.015_498_065,
        -0.094_999_42,
        -0.016_387_781,
        0.061_119_072,
        0.032_643_24,
    ];
    let t = 1.0 / madd::<FMA>(x.abs(), if NORMAL { P_NORMAL } else { P }, 1.0);
    // the distribution's 1/2 (`Φ(-a) = erfc(a/√2)/2`) folded in: every coefficient halved,
    // exactly, and so the polynomial, bit for bit
    const HALF_H_NORMAL: [f32; 11] = {
        let mut h = H_NORMAL;
        let mut k = 0;
        while k < h.len() {
            h[k] *= 0.5;
            k += 1;
        }
        h
    };
    let h = if NORMAL {
        poly::<FMA, 11>(HALF_H_NORMAL, 0.5 - t)
    } else {
        poly::<FMA, 9>(H, 1.0 - t)
    };
    // -a² = -s² x² in two parts: with a fused multiply-add its rounding and the exact rest
    // (three operations; a GELU 12% faster than by the split below, one AVX-512 thread), and
    // without, -s² w² - s² (x - w)(x + w), the first part exact (s² is 1 or 1/2)
    let sx = if NORMAL { x * -0.5 } else { -x };
    let (hi, lo) = if FMA {
        let hi = x * sx;
        (hi, x.mul_add(sx, -hi))
    } else {
        let w = f32::from_bits(x.to_bits() & 0xffff_f000);
        let sw = if NORMAL { w * -0.5 } else { -w };
        (w * sw, (x - w) * (sx + sw))
    };
    (t * h, exp_parts::<FMA, true>(hi, lo))
}

/// `erf` for f32: below 1 in magnitude `x + x R(x²)`, `R` a degree-6 polynomial fitted as
/// [`erfc_factors`]' `H` (to `erf(x)/x - 1`, off by 1.5e-9 relatively), and beyond it
/// `1 - erfc(|x|)` from [`erfc_factors`], signed; from 4 on erf is ±1 in f32. Branch-free, so
/// loops over it vectorise: each lane computes both forms and keeps its own. Within 1.5 ulp
/// of the exact value (libm's scalar `erff`, Sun's rational forms with two exponentials, is
/// within 1 and ran 3.5x slower vectorised); NaN stays NaN, ±∞ gives ±1.
#[inline(always)]
pub(crate) fn erf_f32<const FMA: bool>(x: f32) -> f32 {
    const R: [f32; 7] = [
        0.128_379_17,
        -0.376_126_26,
        0.112_835_79,
        -0.026_853_347,
        0.005_187_162,
        -0.000_799_785_3,
        7.806_903e-5,
    ];
    let a = x.abs();
    let small = madd::<FMA>(x, poly::<FMA, 7>(R, x * x), x);
    let (th, e) = erfc_factors::<FMA, false>(a);
    let far = (1.0 - th * e).copysign(x);
    // (a NaN fails the comparison and takes `small`, which is NaN)
    if a >= 1.0 {
        far
    } else {
        small
    }
}

/// `Φ(x)`, the standard normal distribution, and `e^(-x²/2)` (its density times `√(2π)`),
/// for f32: `Φ(-|x|) = erfc(|x|/√2)/2` from [`erfc_factors`], within a few ulp relatively
/// down to f32's normal range (where `(1 + erf(x/√2))/2` cancels to nothing: it is 0 from
/// x = -5.5 on), 0 below it (from x = -13.2), and `Φ(|x|) = 1 - Φ(-|x|)`.
#[inline(always)]
fn normal_f32<const FMA: bool>(x: f32) -> (f32, f32) {
    // (`th` holds erfc's 1/2 already)
    let (th, e) = erfc_factors::<FMA, true>(x);
    let below = th * e;
    (if x < 0.0 { below } else { 1.0 - below }, e)
}

/// GELU for f32, `x Φ(x)` from [`normal_f32`]: within a few ulp of the exact value
/// everywhere, the negative tail included; -∞ gives -0, +∞ gives +∞, NaN stays NaN.
#[inline(always)]
pub(crate) fn gelu_f32<const FMA: bool>(x: f32) -> f32 {
    let (cdf, _) = normal_f32::<FMA>(x);
    // past -14.5 the product is -0 (where -∞ · 0 would be NaN)
    (if x < -14.5 { -14.5 } else { x }) * cdf
}

/// GELU's gradient for f32, `g (Φ(x) + x φ(x))`, from one [`normal_f32`]: `Φ` and `φ` share
/// the exponential.
#[inline(always)]
pub(crate) fn gelu_backward_f32<const FMA: bool>(x: f32, g: f32) -> f32 {
    let (cdf, e) = normal_f32::<FMA>(x);
    let inv_sqrt_2pi = crate::fused::INV_SQRT_2PI as f32;
    g * madd::<FMA>(x.clamp(-14.5, 14.5) * e, inv_sqrt_2pi, cdf)
}

/// Past this magnitude f32's `sin`, `cos` and `tan` are f64 libm's rounded to f32: below it
/// their reduction ([`reduce_pio2_f32`]) holds `j π/2` exactly (`j` below 2²⁰).
pub(crate) const SIN_COS_F32_LIMIT: f32 = 1.6e6;

/// `x = j π/2 + r` for f32 `x` below [`SIN_COS_F32_LIMIT`], in f64: `π/2` in two parts, the
/// first with 33 significant bits so that `j` times it is exact. Returns `r` (`|r| <= π/4`,
/// good to far more bits than f32 needs) and `j` in the low bits of the last.
#[inline(always)]
fn reduce_pio2_f32(x: f32) -> (f64, u32) {
    const TWO_OVER_PI: f64 = std::f64::consts::FRAC_2_PI;
    const PIO2_HI: f64 = 1.570_796_326_734_125_6;
    const PIO2_LO: f64 = 6.077_100_506_506_192e-11;
    // 1.5·2⁵²: adding it rounds to an integer held in the low mantissa bits
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let xd = x as f64;
    let t = xd * TWO_OVER_PI + ROUNDER;
    let j = t - ROUNDER;
    ((xd - j * PIO2_HI) - j * PIO2_LO, t.to_bits() as u32)
}

/// `sin` and `cos` for f32 below [`SIN_COS_F32_LIMIT`]: [`reduce_pio2_f32`], then Cephes'
/// `sinf`/`cosf` minimax polynomials on `|r| <= π/4` in f32, and the quadrant `j mod 4` picks
/// and signs one of them. Branch-free, so loops over it vectorise (the f64 steps use the
/// wide lanes too); within 2 ulp of the exact value. NaN and ±∞ give NaN; beyond the limit
/// a value the caller replaces. `FMA` fuses the polynomials' steps.
///
/// Returns both polynomials at `r` and the quadrant `j` (in its low bits); [`quadrant`] makes
/// `sin` of them, and `cos` from the next quadrant (`cos(x) = sin(x + π/2)`), so `sin` and
/// `cos` of one argument share everything but that last pick ([`sin_and_cos_f32`]).
#[inline(always)]
fn sin_cos_parts<const FMA: bool>(x: f32) -> (f32, f32, u32) {
    const S1: f32 = -1.666_665_5e-1;
    const S2: f32 = 8.332_161e-3;
    const S3: f32 = -1.951_529_6e-4;
    const C1: f32 = 4.166_664_6e-2;
    const C2: f32 = -1.388_731_6e-3;
    const C3: f32 = 2.443_315_7e-5;
    let m = madd::<FMA>;
    let (r, j) = reduce_pio2_f32(x);
    let r = r as f32;
    let z = r * r;
    // (r itself at ±0, so that sin(-0) = -0; a select, which still vectorises)
    let sin_r = if r == 0.0 {
        r
    } else {
        m(m(m(S3, z, S2), z, S1) * z, r, r)
    };
    let cos_r = m(m(m(m(C3, z, C2), z, C1), z * z, -0.5 * z), 1.0, 1.0);
    (sin_r, cos_r, j)
}

/// `sin` of quadrant `q` from the polynomials of [`sin_cos_parts`].
#[inline(always)]
fn quadrant(sin_r: f32, cos_r: f32, q: u32) -> f32 {
    let v = if q & 1 == 0 { sin_r } else { cos_r };
    let sign = (q & 2) << 30; // the sign bit for quadrants 2 and 3
    f32::from_bits(v.to_bits() ^ sign)
}

/// `sin` (`COS` false) or `cos` for f32 below [`SIN_COS_F32_LIMIT`] (see [`sin_cos_parts`]).
#[inline(always)]
pub(crate) fn sin_or_cos_f32_near<const FMA: bool, const COS: bool>(x: f32) -> f32 {
    let (s, c, q) = sin_cos_parts::<FMA>(x);
    quadrant(s, c, if COS { q.wrapping_add(1) } else { q })
}

/// `(sin(x), cos(x))` for f32 below [`SIN_COS_F32_LIMIT`] from one reduction: the two
/// [`sin_or_cos_f32_near`] bit for bit, for about the work of one of them.
#[inline(always)]
pub(crate) fn sin_and_cos_f32_near<const FMA: bool>(x: f32) -> (f32, f32) {
    let (s, c, q) = sin_cos_parts::<FMA>(x);
    (quadrant(s, c, q), quadrant(s, c, q.wrapping_add(1)))
}

/// `sin` for f32: [`sin_or_cos_f32_near`] below [`SIN_COS_F32_LIMIT`], f64 libm's rounded
/// to f32 beyond (loops take [`trig_f32_slice`], which vectorises).
#[inline(always)]
pub(crate) fn sin_f32<const FMA: bool>(x: f32) -> f32 {
    if x.abs() > SIN_COS_F32_LIMIT {
        (x as f64).sin() as f32
    } else {
        sin_or_cos_f32_near::<FMA, false>(x)
    }
}

/// `cos` for f32, as [`sin_f32`].
#[inline(always)]
pub(crate) fn cos_f32<const FMA: bool>(x: f32) -> f32 {
    if x.abs() > SIN_COS_F32_LIMIT {
        (x as f64).cos() as f32
    } else {
        sin_or_cos_f32_near::<FMA, true>(x)
    }
}

/// `(sin(x), cos(x))` for f32: [`sin_f32`] and [`cos_f32`] bit for bit.
#[inline(always)]
pub(crate) fn sin_and_cos_f32<const FMA: bool>(x: f32) -> (f32, f32) {
    if x.abs() > SIN_COS_F32_LIMIT {
        ((x as f64).sin() as f32, (x as f64).cos() as f32)
    } else {
        sin_and_cos_f32_near::<FMA>(x)
    }
}

/// `tan` for f32 below [`SIN_COS_F32_LIMIT`], branch-free: [`reduce_pio2_f32`], then the
/// Taylor polynomials of `sin r` and `cos r` in f64 (to degrees 13 and 12: below 2⁻⁴⁰
/// relative on `|r| <= π/4`) and one f64 division, `sin/cos` or, in odd quadrants,
/// `-cos/sin`, rounded to f32: within an ulp of the exact value, nearly always the correctly
/// rounded one. NaN and ±∞ give NaN; beyond the limit a value the caller replaces.
#[inline(always)]
pub(crate) fn tan_f32_near<const FMA: bool>(x: f32) -> f32 {
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let (r, j) = reduce_pio2_f32(x);
    let z = r * r;
    // 1/k! for k = 13, 11, ..., 3 and k = 12, 10, ..., 2 (alternating signs)
    let sin = r * m(
        z,
        m(
            z,
            m(
                z,
                m(
                    z,
                    m(
                        z,
                        m(z, 1.0 / 6_227_020_800.0, -1.0 / 39_916_800.0),
                        1.0 / 362_880.0,
                    ),
                    -1.0 / 5_040.0,
                ),
                1.0 / 120.0,
            ),
            -1.0 / 6.0,
        ),
        1.0,
    );
    let cos = m(
        z,
        m(
            z,
            m(
                z,
                m(
                    z,
                    m(
                        z,
                        m(z, 1.0 / 479_001_600.0, -1.0 / 3_628_800.0),
                        1.0 / 40_320.0,
                    ),
                    -1.0 / 720.0,
                ),
                1.0 / 24.0,
            ),
            -0.5,
        ),
        1.0,
    );
    let (num, den) = if j & 1 == 1 { (-cos, sin) } else { (sin, cos) };
    (num / den) as f32
}

/// `tan` for f32: [`tan_f32_near`] below [`SIN_COS_F32_LIMIT`], f64 libm's rounded to f32
/// beyond, as [`sin_f32`].
#[inline(always)]
pub(crate) fn tan_f32<const FMA: bool>(x: f32) -> f32 {
    if x.abs() > SIN_COS_F32_LIMIT {
        (x as f64).tan() as f32
    } else {
        tan_f32_near::<FMA>(x)
    }
}

/// `dst[i] = f(src[i])` for f32 (see [`near_then_far`](crate::elementwise::kernels::near_then_far)): [`sin_f32`], [`cos_f32`] or
/// [`tan_f32`] bit for bit.
#[inline(always)]
pub(crate) fn trig_f32_slice<const FMA: bool>(f: Trig, dst: &mut [f32], src: &[f32]) {
    use crate::elementwise::kernels::near_then_far;
    let limit = SIN_COS_F32_LIMIT;
    let far_sin = |x: f32| (x as f64).sin() as f32;
    let far_cos = |x: f32| (x as f64).cos() as f32;
    let far_tan = |x: f32| (x as f64).tan() as f32;
    match f {
        Trig::Sin => near_then_far(dst, src, limit, sin_or_cos_f32_near::<FMA, false>, far_sin),
        Trig::Cos => near_then_far(dst, src, limit, sin_or_cos_f32_near::<FMA, true>, far_cos),
        Trig::Tan => near_then_far(dst, src, limit, tan_f32_near::<FMA>, far_tan),
    }
}

/// Past this magnitude [`sin_f64`] and [`cos_f64`] are libm's: their reduction holds `n π/2`
/// exactly for `n` below 2^20 (fdlibm's medium case).
pub(crate) const SIN_COS_F64_LIMIT: f64 = 1.6e6;

/// `sin` and `cos` for f64 below [`SIN_COS_F64_LIMIT`] by fdlibm's algorithm, branch-free:
/// `x = n π/2 + (y0 + y1)` with `π/2` in three 33-bit parts and a tail (fdlibm's medium
/// reduction with all three of its rounds, good to 151 bits wherever `x` falls, in
/// [`reduce_pio2_f64`]), then fdlibm's `__kernel_sin` and `__kernel_cos` polynomials on
/// `y0 + y1` (`|y0| <= π/4`). Returns both and `n` in the low bits of the last.
#[inline(always)]
fn sin_cos_parts_f64<const FMA: bool>(x: f64) -> (f64, f64, u64) {
    const S: [f64; 6] = [
        f64::from_bits(0xbfc5_5555_5555_5549),
        f64::from_bits(0x3f81_1111_1110_f8a6),
        f64::from_bits(0xbf2a_01a0_19c1_61d5),
        f64::from_bits(0x3ec7_1de3_57b1_fe7d),
        f64::from_bits(0xbe5a_e5e6_8a2b_9ceb),
        f64::from_bits(0x3de5_d93a_5acf_d57c),
    ];
    const C: [f64; 6] = [
        f64::from_bits(0x3fa5_5555_5555_554c),
        f64::from_bits(0xbf56_c16c_16c1_5177),
        f64::from_bits(0x3efa_01a0_19cb_1590),
        f64::from_bits(0xbe92_7e4f_809c_52ad),
        f64::from_bits(0x3e21_ee9e_bdb4_b1c4),
        f64::from_bits(0xbda8_fae9_be88_38d4),
    ];
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let (y0, y1, n) = reduce_pio2_f64(x);
    let z = y0 * y0;
    let zz = z * z;
    let rs = m(z * zz, m(z, S[5], S[4]), m(z, m(z, S[3], S[2]), S[1]));
    let v = z * y0;
    let sin = y0 - ((z * m(-v, rs, 0.5 * y1) - y1) - v * S[0]);
    let rc = m(
        zz * zz,
        m(z, m(z, C[5], C[4]), C[3]),
        z * m(z, m(z, C[2], C[1]), C[0]),
    );
    let hz = 0.5 * z;
    let one_less = 1.0 - hz;
    let cos = one_less + (((1.0 - one_less) - hz) + m(z, rc, -(y0 * y1)));
    (sin, cos, n)
}

/// `x = n π/2 + (y0 + y1)` for `|x|` below [`SIN_COS_F64_LIMIT`], `|y0| <= π/4` and `y1`
/// its tail: fdlibm's medium reduction, `π/2` in three 33-bit parts and a tail, all three of
/// its rounds always run (good to 151 bits wherever `x` falls), branch-free. Returns `y0`,
/// `y1` and `n` in the low bits of the last.
#[inline(always)]
fn reduce_pio2_f64(x: f64) -> (f64, f64, u64) {
    const INV_PIO2: f64 = std::f64::consts::FRAC_2_PI;
    const P1: f64 = f64::from_bits(0x3ff9_21fb_5440_0000);
    const P2: f64 = f64::from_bits(0x3dd0_b461_1a60_0000);
    const P3: f64 = f64::from_bits(0x3ba3_198a_2e00_0000);
    const P3T: f64 = f64::from_bits(0x397b_839a_2520_49c1);
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let t = x * INV_PIO2 + ROUNDER;
    let n = t - ROUNDER;
    // x - n P1 is exact (n P1 has at most 53 bits and is within a factor 2 of x); each
    // further round takes off the next part (n times it is exact) and keeps the rounding
    // of the subtraction, which the last part's tail joins: x - n π/2 = r - w
    let mut r = x - n * P1;
    let mut rounding = 0.0;
    for part in [P2, P3] {
        let before = r;
        let nw = n * part;
        r = before - nw;
        rounding += (before - r) - nw;
    }
    let w = n * P3T - rounding;
    let y0 = r - w;
    let y1 = (r - y0) - w;
    (y0, y1, t.to_bits())
}

/// `sin` of quadrant `q` from the kernels of [`sin_cos_parts_f64`].
#[inline(always)]
fn quadrant_f64(sin_r: f64, cos_r: f64, q: u64) -> f64 {
    let v = if q & 1 == 0 { sin_r } else { cos_r };
    f64::from_bits(v.to_bits() ^ ((q & 2) << 62))
}

/// `sin` (`COS` false) or `cos` for f64 below [`SIN_COS_F64_LIMIT`] (see
/// [`sin_cos_parts_f64`]); beyond it, and for ±∞, a value the caller replaces.
#[inline(always)]
pub(crate) fn sin_or_cos_f64_near<const FMA: bool, const COS: bool>(x: f64) -> f64 {
    let (s, c, q) = sin_cos_parts_f64::<FMA>(x);
    quadrant_f64(s, c, if COS { q.wrapping_add(1) } else { q })
}

/// `sin` for f64: fdlibm's algorithm branch-free below [`SIN_COS_F64_LIMIT`] (within 1 ulp of
/// glibc's), libm's beyond. Loops take the branch-free form for every element and then
/// libm's for the few beyond ([`trig_f64_slice`]), so they vectorise.
#[inline(always)]
pub(crate) fn sin_f64<const FMA: bool>(x: f64) -> f64 {
    if x.abs() > SIN_COS_F64_LIMIT {
        x.sin()
    } else {
        sin_or_cos_f64_near::<FMA, false>(x)
    }
}

/// `cos` for f64, as [`sin_f64`].
#[inline(always)]
pub(crate) fn cos_f64<const FMA: bool>(x: f64) -> f64 {
    if x.abs() > SIN_COS_F64_LIMIT {
        x.cos()
    } else {
        sin_or_cos_f64_near::<FMA, true>(x)
    }
}

/// `tan` for f64 below [`SIN_COS_F64_LIMIT`], branch-free: [`reduce_pio2_f64`], then fdlibm's
/// `__kernel_tan` on `y0 + y1` (its odd polynomial of degree 27 below 0.6744, `tan(π/4 - y)`
/// past it, `-1/tan` in odd quadrants, corrected to keep its precision), with one division
/// whose operands each case selects. Within 1 ulp of glibc's; beyond the limit, and for ±∞,
/// a value the caller replaces.
#[inline(always)]
pub(crate) fn tan_f64_near<const FMA: bool>(x: f64) -> f64 {
    const T: [f64; 13] = [
        f64::from_bits(0x3fd5_5555_5555_5563),
        f64::from_bits(0x3fc1_1111_1110_fe7a),
        f64::from_bits(0x3fab_a1ba_1bb3_41fe),
        f64::from_bits(0x3f96_64f4_8406_d637),
        f64::from_bits(0x3f82_26e3_e96e_8493),
        f64::from_bits(0x3f6d_6d22_c956_0328),
        f64::from_bits(0x3f57_dbc8_fee0_8315),
        f64::from_bits(0x3f43_44d8_f2f2_6501),
        f64::from_bits(0x3f30_26f7_1a8d_1068),
        f64::from_bits(0x3f14_7e88_a037_92a6),
        f64::from_bits(0x3f12_b80f_32f0_a7e9),
        f64::from_bits(0xbef3_75cb_db60_5373),
        f64::from_bits(0x3efb_2a70_74bf_7ad4),
    ];
    const PIO4: (f64, f64) = (
        f64::from_bits(0x3fe9_21fb_5444_2d18),
        f64::from_bits(0x3c81_a626_3314_5c07),
    );
    const HI_WORD: u64 = 0xffff_ffff_0000_0000;
    let m = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let (y0, y1, n) = reduce_pio2_f64(x);
    let odd = n & 1 == 1;
    // past 0.6744, tan(y) = tan(π/4 - y') with y' = π/4 - |y| (y0 + y1 folded into one)
    let far = y0.abs() >= f64::from_bits(0x3fe5_9428_0000_0000);
    let (a, b) = if y0 < 0.0 { (-y0, -y1) } else { (y0, y1) };
    let (u, v) = if far {
        ((PIO4.0 - a) + (PIO4.1 - b), 0.0)
    } else {
        (y0, y1)
    };
    let z = u * u;
    let w = z * z;
    let odd_terms = m(
        w,
        m(w, m(w, m(w, m(w, T[11], T[9]), T[7]), T[5]), T[3]),
        T[1],
    );
    let even_terms = z * m(
        w,
        m(w, m(w, m(w, m(w, T[12], T[10]), T[8]), T[6]), T[4]),
        T[2],
    );
    let s = z * u;
    let r = m(s, T[0], v + z * m(s, odd_terms + even_terms, v));
    let w = u + r;
    // far: sign (k - 2 (u - (w² / (w + k) - r))), k = ±1 for even and odd quadrants; near
    // and odd: -1/w with its rounding corrected; near and even: w itself
    let k = if odd { -1.0 } else { 1.0 };
    let (num, den) = if far { (w * w, w + k) } else { (-1.0, w) };
    let q = num / den;
    let folded = (k - 2.0 * (u - (q - r))) * if y0 < 0.0 { -1.0 } else { 1.0 };
    let wh = f64::from_bits(w.to_bits() & HI_WORD);
    let th = f64::from_bits(q.to_bits() & HI_WORD);
    let tail = r - (wh - u);
    let reciprocal = m(q, m(th, tail, m(th, wh, 1.0)), th);
    let y = if far {
        folded
    } else if odd {
        reciprocal
    } else {
        w
    };
    if x == 0.0 {
        x
    } else {
        y
    }
}

/// `tan` for f64: [`tan_f64_near`] below [`SIN_COS_F64_LIMIT`] (within 1 ulp of glibc's),
/// libm's beyond, as [`sin_f64`].
#[inline(always)]
pub(crate) fn tan_f64<const FMA: bool>(x: f64) -> f64 {
    if x.abs() > SIN_COS_F64_LIMIT {
        x.tan()
    } else {
        tan_f64_near::<FMA>(x)
    }
}

/// Which trigonometric function a slice form computes ([`Float::trig_fast`]).
///
/// [`Float::trig_fast`]: crate::dtype::Float::trig_fast
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trig {
    /// `sin`
    Sin,
    /// `cos`
    Cos,
    /// `tan`
    Tan,
}

/// `dst[i] = f(src[i])` for f64 (see [`near_then_far`](crate::elementwise::kernels::near_then_far)): [`sin_f64`], [`cos_f64`] or
/// [`tan_f64`] bit for bit.
#[inline(always)]
pub(crate) fn trig_f64_slice<const FMA: bool>(f: Trig, dst: &mut [f64], src: &[f64]) {
    use crate::elementwise::kernels::near_then_far;
    let limit = SIN_COS_F64_LIMIT;
    match f {
        Trig::Sin => near_then_far(dst, src, limit, sin_or_cos_f64_near::<FMA, false>, f64::sin),
        Trig::Cos => near_then_far(dst, src, limit, sin_or_cos_f64_near::<FMA, true>, f64::cos),
        Trig::Tan => near_then_far(dst, src, limit, tan_f64_near::<FMA>, f64::tan),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A named form of a kernel.
    type Form = (&'static str, fn(f32) -> f32);
    /// Both forms: unfused (CPUs without FMA) and fused.
    const TANH: [Form; 2] = [("unfused", tanh_f32::<false>), ("fused", tanh_f32::<true>)];
    const EXP: [Form; 2] = [("unfused", exp_f32::<false>), ("fused", exp_f32::<true>)];

    /// Marsaglia's xorshift64 from `seed` (not 0): the tests' random bit patterns.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// The same bits, or both NaN (of any payload).
    fn same_bits<T: Float>(got: T, want: T) -> bool {
        (got == want && got.is_sign_negative() == want.is_sign_negative())
            || (got.is_nan() && want.is_nan())
    }

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

    /// Distance in units of `b`'s last place (subnormal ones below the normal range).
    fn ulps_f64(a: f64, b: f64) -> f64 {
        if a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) {
            return 0.0;
        }
        if !a.is_finite() || !b.is_finite() {
            return f64::INFINITY;
        }
        let e = b.abs();
        let ulp = if e < f64::MIN_POSITIVE {
            f64::from_bits(1)
        } else {
            f64::from_bits(e.to_bits() + 1) - e
        };
        (a - b).abs() / ulp
    }

    /// `n` points spread over `[lo, hi]` (by the golden ratio, so no two runs align).
    fn spread(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f64> {
        (0..n).map(move |i| lo + (hi - lo) * (i as f64 * 0.618_033_988_749_895).fract())
    }

    #[test]
    fn exp_f64_is_within_1_ulp_of_libm_from_underflow_to_overflow() {
        type Form64 = (&'static str, fn(f64) -> f64);
        const EXP: [Form64; 2] = [("unfused", exp_f64::<false>), ("fused", exp_f64::<true>)];
        for ((form, exp), bound) in EXP.into_iter().zip([2.0, 1.0]) {
            // the whole range (subnormal results and the last finite ones included), near 0
            let ranges = [
                (-746.0, 710.0),
                (-745.2, -700.0),
                (700.0, 709.8),
                (-1e-6, 1e-6),
            ];
            for (lo, hi) in ranges {
                for x in spread(lo, hi, 100_001) {
                    let u = ulps_f64(exp(x), x.exp());
                    assert!(u <= bound, "{form}: exp({x:e}) is {u} ulp from libm's");
                }
            }
            // 1 exactly, the first infinite value and the first 0s
            for x in [0.0, -0.0, 709.79, -745.2, -746.0, -1e300] {
                assert_eq!(exp(x).to_bits(), x.exp().to_bits(), "{form}: exp({x:e})");
            }
            let u = ulps_f64(exp(709.782_712_893_384), 1.797_693_134_862_273_2e308);
            assert!(u <= bound, "{form}: exp(ln(max)) is {u} ulp off");
            assert_eq!(exp(f64::INFINITY), f64::INFINITY, "{form}");
            assert_eq!(exp(f64::NEG_INFINITY), 0.0, "{form}");
            assert!(exp(f64::NAN).is_nan(), "{form}");
        }
    }

    #[test]
    fn sigmoid_f64_is_within_3_ulp_of_the_formula_on_libm() {
        use crate::dtype::Float;
        type Form64 = (&'static str, fn(f64) -> f64);
        let libm = |x: f64| {
            let e = (-x.abs()).exp();
            if x >= 0.0 {
                1.0 / (1.0 + e)
            } else {
                e / (1.0 + e)
            }
        };
        let forms: [Form64; 2] = [
            ("unfused", |x| x.sigmoid_kernel::<false>()),
            ("fused", |x| x.sigmoid_kernel::<true>()),
        ];
        for ((form, sigmoid), bound) in forms.into_iter().zip([4.0, 3.0]) {
            for (lo, hi) in [(-40.0, 40.0), (-746.0, 746.0), (-1e-6, 1e-6)] {
                for x in spread(lo, hi, 100_001) {
                    let u = ulps_f64(sigmoid(x), libm(x));
                    assert!(u <= bound, "{form}: sigmoid({x:e}) is {u} ulp off");
                }
            }
            assert_eq!(sigmoid(f64::INFINITY), 1.0, "{form}");
            assert_eq!(sigmoid(f64::NEG_INFINITY), 0.0, "{form}");
            assert!(sigmoid(f64::NAN).is_nan(), "{form}");
        }
    }

    #[test]
    fn tanh_f64_is_within_2_ulp_of_libm() {
        type Form64 = (&'static str, fn(f64) -> f64);
        const TANH: [Form64; 2] = [("unfused", tanh_f64::<false>), ("fused", tanh_f64::<true>)];
        for ((form, tanh), bound) in TANH.into_iter().zip([4.0, 2.0]) {
            // both forms and the edge between them (0.625), tiny inputs, the approach to ±1
            let ranges = [
                (-25.0, 25.0),
                (-1.0, 1.0),
                (0.6, 0.65),
                (-1e-5, 1e-5),
                (18.0, 20.0),
            ];
            for (lo, hi) in ranges {
                for x in spread(lo, hi, 100_001) {
                    let u = ulps_f64(tanh(x), x.tanh());
                    assert!(u <= bound, "{form}: tanh({x:e}) is {u} ulp from libm's");
                }
            }
            for x in [
                0.0,
                -0.0,
                1e-300,
                -1e-300,
                19.1,
                -400.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ] {
                assert_eq!(tanh(x).to_bits(), x.tanh().to_bits(), "{form}: tanh({x:e})");
            }
            assert!(tanh(f64::NAN).is_nan(), "{form}");
        }
    }

    #[test]
    fn log_f64_is_within_1_ulp_of_libm_over_the_positive_floats() {
        type Form64 = (&'static str, fn(f64) -> f64);
        const LOG: [Form64; 2] = [("unfused", log_f64::<false>), ("fused", log_f64::<true>)];
        for ((form, log), bound) in LOG.into_iter().zip([2.0, 1.0]) {
            // spread over every exponent (subnormals included), and near 1, where ln cancels
            let every =
                (0..=200_000u64).map(|i| f64::from_bits(i * (0x7fef_ffff_ffff_ffff / 200_000)));
            let near_one =
                (0..=100_000).map(|i| 0.98 + 0.04 * (i as f64 * 0.618_033_988_749_895).fract());
            for x in every.chain(near_one).filter(|&x| x > 0.0) {
                let u = ulps_f64(log(x), x.ln());
                assert!(u <= bound, "{form}: ln({x:e}) is {u} ulp from libm's");
            }
            for x in [
                1.0,
                2.0,
                f64::from_bits(1),
                f64::MAX,
                f64::INFINITY,
                0.0,
                -0.0,
            ] {
                assert_eq!(log(x).to_bits(), x.ln().to_bits(), "{form}: ln({x:e})");
            }
            for x in [-1e-300, -1.0, f64::NEG_INFINITY, f64::NAN] {
                assert!(log(x).is_nan(), "{form}: ln({x})");
            }
        }
    }

    #[test]
    fn log1p_f32_is_within_3_ulp_of_the_exact_value() {
        let forms: [Form; 2] = [
            ("unfused", log1p_kahan::<f32, false>),
            ("fused", log1p_kahan::<f32, true>),
        ];
        for ((form, log1p), bound) in forms.into_iter().zip([99.0, 99.0]) {
            // every 61st float above -1 (positive ones to the top, tiny ones of both signs)
            let negative = (0x8000_0001..0xbf80_0000u32).step_by(61);
            for b in (1..0x7f80_0000u32).step_by(61).chain(negative) {
                let x = f32::from_bits(b);
                let u = ulps(log1p(x), (x as f64).ln_1p());
                assert!(u <= bound, "{form}: log1p({x:e}) is {u} ulp off");
            }
            assert_eq!(log1p(0.0).to_bits(), 0.0f32.to_bits(), "{form}");
            assert_eq!(log1p(-0.0).to_bits(), (-0.0f32).to_bits(), "{form}");
            assert_eq!(log1p(-1.0), f32::NEG_INFINITY, "{form}");
            assert_eq!(log1p(f32::INFINITY), f32::INFINITY, "{form}");
            for x in [-1.5, f32::NEG_INFINITY, f32::NAN] {
                assert!(log1p(x).is_nan(), "{form}: log1p({x})");
            }
        }
    }

    #[test]
    fn expm1_f32_is_within_1_5_ulp_of_the_exact_value() {
        let forms: [Form; 2] = [
            ("unfused", expm1_f32::<false>),
            ("fused", expm1_f32::<true>),
        ];
        for ((form, expm1), bound) in forms.into_iter().zip([1.5, 1.5]) {
            // every 29th float from -87.4 (where the result is -1) to the largest finite
            // result (ln f32::MAX is 0x42b17217's float), tiny ones of both signs included
            let negative = (0x8000_0001..0xc2ae_cccdu32).step_by(29);
            for b in (1..=0x42b1_7217u32).step_by(29).chain(negative) {
                let x = f32::from_bits(b);
                let u = ulps(expm1(x), (x as f64).exp_m1());
                assert!(u <= bound, "{form}: expm1({x:e}) is {u} ulp off");
            }
            let largest = f32::from_bits(0x42b1_7217);
            assert!(expm1(largest).is_finite(), "{form}: expm1({largest})");
            assert_eq!(expm1(0.0).to_bits(), 0.0f32.to_bits(), "{form}");
            assert_eq!(expm1(-0.0).to_bits(), (-0.0f32).to_bits(), "{form}");
            assert_eq!(expm1(1e-40).to_bits(), 1e-40f32.to_bits(), "{form}");
            for (x, want) in [
                (f32::from_bits(0x42b1_7218), f32::INFINITY),
                (89.0, f32::INFINITY),
                (1e30, f32::INFINITY),
                (f32::INFINITY, f32::INFINITY),
                (-17.5, -1.0),
                (-100.0, -1.0),
                (f32::NEG_INFINITY, -1.0),
            ] {
                assert_eq!(expm1(x), want, "{form}: expm1({x:e})");
            }
            assert!(expm1(f32::NAN).is_nan(), "{form}");
        }
    }

    #[test]
    fn expm1_f64_is_within_1_5_ulp_of_libm() {
        type Form64 = (&'static str, fn(f64) -> f64);
        const EXPM1: [Form64; 2] = [
            ("unfused", expm1_f64::<false>),
            ("fused", expm1_f64::<true>),
        ];
        for ((form, expm1), bound) in EXPM1.into_iter().zip([1.5, 1.5]) {
            // the whole range, the last finite results, near 0 and where 2^n - 1 is exact
            let ranges = [
                (-750.0, 709.78),
                (700.0, 709.782),
                (-40.0, 40.0),
                (-1.0, 1.0),
                (-1e-6, 1e-6),
            ];
            for (lo, hi) in ranges {
                for x in spread(lo, hi, 100_001) {
                    let u = ulps_f64(expm1(x), x.exp_m1());
                    assert!(u <= bound, "{form}: expm1({x:e}) is {u} ulp from libm's");
                }
            }
            let u = ulps_f64(expm1(709.782_712_893_384), 1.797_693_134_862_273_2e308);
            assert!(u <= bound, "{form}: expm1(ln(max)) is {u} ulp off");
            for x in [0.0, -0.0, 1e-310, -1e-310, 709.79, 1e300, -38.0, -1e300] {
                assert_eq!(
                    expm1(x).to_bits(),
                    x.exp_m1().to_bits(),
                    "{form}: expm1({x:e})"
                );
            }
            assert_eq!(expm1(f64::INFINITY), f64::INFINITY, "{form}");
            assert_eq!(expm1(f64::NEG_INFINITY), -1.0, "{form}");
            assert!(expm1(f64::NAN).is_nan(), "{form}");
        }
    }

    #[test]
    fn inverse_trigonometric_and_hyperbolic_f64_are_within_2_ulp_of_libm() {
        type Kernel = (&'static str, fn(f64) -> f64, fn(f64) -> f64, f64);
        for fma in [false, true] {
            let kernels: [Kernel; 5] = if fma {
                [
                    ("atan", atan_f64::<true>, f64::atan, 1.0),
                    ("asin", asin_or_acos_f64::<true, false>, f64::asin, 1.0),
                    ("acos", asin_or_acos_f64::<true, true>, f64::acos, 1.0),
                    ("sinh", sinh_f64::<true>, f64::sinh, 2.0),
                    ("cosh", cosh_f64::<true>, f64::cosh, 2.0),
                ]
            } else {
                [
                    ("atan", atan_f64::<false>, f64::atan, 1.0),
                    ("asin", asin_or_acos_f64::<false, false>, f64::asin, 1.0),
                    ("acos", asin_or_acos_f64::<false, true>, f64::acos, 1.0),
                    ("sinh", sinh_f64::<false>, f64::sinh, 2.0),
                    ("cosh", cosh_f64::<false>, f64::cosh, 2.0),
                ]
            };
            for (name, f, libm, bound) in kernels {
                // each reduction's interval and their edges, [-1, 1] densely, near 0, the
                // last finite sinh and cosh, and far out
                let ranges = [
                    (-1.0, 1.0),
                    (-0.51, 0.51),
                    (0.97, 1.0),
                    (-3.0, 3.0),
                    (-30.0, 30.0),
                    (-1e-6, 1e-6),
                    (700.0, 710.6),
                    (-1e10, 1e10),
                ];
                let points = ranges
                    .into_iter()
                    .flat_map(|(lo, hi)| spread(lo, hi, 50_001));
                let edges = [
                    0.4375, 0.6875, 1.1875, 2.4375, 0.5, 0.975, 1.0, 709.0, 1e300,
                ];
                let edges = edges.into_iter().flat_map(|e: f64| {
                    let (up, down) = (
                        f64::from_bits(e.to_bits() + 1),
                        f64::from_bits(e.to_bits() - 1),
                    );
                    [e, up, down, -e, -up, -down]
                });
                for x in points.chain(edges) {
                    let u = ulps_f64(f(x), libm(x));
                    // (sinh: 3 in the last 1.5 before its overflow)
                    let bound = if name == "sinh" && x.abs() > 709.0 {
                        3.0
                    } else {
                        bound
                    };
                    assert!(
                        u <= bound,
                        "{name} (fma {fma}): at {x:e} {u} ulp from libm's"
                    );
                }
                // (and ±1 for asin and acos, where they are ±π/2, 0 and π)
                let ends = if matches!(name, "asin" | "acos") {
                    [1.0, -1.0]
                } else {
                    [0.0, 0.0]
                };
                for x in [
                    0.0,
                    -0.0,
                    1e-300,
                    5e-324,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    f64::NAN,
                ]
                .into_iter()
                .chain(ends)
                {
                    let (got, want) = (f(x), libm(x));
                    assert!(
                        same_bits(got, want),
                        "{name} (fma {fma}): at {x:e} {got:e}, libm's {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn atan2_f64_is_within_2_ulp_of_libm_and_cs_at_the_edges() {
        for (fma, atan2) in [
            (false, atan2_f64::<false> as fn(f64, f64) -> f64),
            (true, atan2_f64::<true>),
        ] {
            // pairs of every 2⁵³/1500th double (both signs), and of nearby values
            let wide: Vec<f64> = (0..1500u64)
                .map(|i| f64::from_bits(i * (0x7ff0_0000_0000_0000 / 1500)))
                .flat_map(|x| [x, -x])
                .collect();
            let near: Vec<f64> = spread(-4.0, 4.0, 1500).collect();
            for some in [&wide, &near] {
                for (i, &y) in some.iter().enumerate() {
                    for &x in some.iter().skip(i % 3).step_by(3) {
                        let u = ulps_f64(atan2(y, x), y.atan2(x));
                        assert!(u <= 2.0, "fma {fma}: atan2({y:e}, {x:e}) is {u} ulp off");
                    }
                }
            }
            let edges = [
                0.0f64,
                -0.0,
                1.0,
                -1.0,
                1e-310,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
            ];
            for &y in &edges {
                for &x in &edges {
                    let (got, want) = (atan2(y, x), y.atan2(x));
                    assert!(
                        same_bits(got, want),
                        "fma {fma}: atan2({y}, {x}) is {got:e}, libm's {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn tan_f64_is_within_1_ulp_of_libm_and_its_slice_form_bit_for_bit() {
        for (fma, tan, slice) in [
            (
                false,
                tan_f64::<false> as fn(f64) -> f64,
                trig_f64_slice::<false> as fn(Trig, &mut [f64], &[f64]),
            ),
            (true, tan_f64::<true>, trig_f64_slice::<true>),
        ] {
            // moderate and large arguments up to the limit and past it, each side of
            // 0.6744 (where the kernel folds), and the doubles nearest multiples of π/2
            let ranges = [
                (-4.0, 4.0),
                (0.6, 0.9),
                (-100.0, 100.0),
                (-1.6e6, 1.6e6),
                (1e6, 1e9),
                (-1e-6, 1e-6),
            ];
            let points = ranges
                .into_iter()
                .flat_map(|(lo, hi)| spread(lo, hi, 100_001));
            let near_multiples = (1..20_000u64).flat_map(|k| {
                let x = k as f64 * std::f64::consts::FRAC_PI_4;
                [
                    x,
                    f64::from_bits(x.to_bits() + 1),
                    f64::from_bits(x.to_bits() - 1),
                    -x,
                ]
            });
            let specials = [0.674, 0.6744, 0.675, 1_411_962.0, 1e-300, 5e-324];
            let points: Vec<f64> = points.chain(near_multiples).chain(specials).collect();
            for &x in &points {
                let u = ulps_f64(tan(x), x.tan());
                assert!(u <= 1.0, "fma {fma}: tan({x:e}) is {u} ulp from libm's");
            }
            assert_eq!(tan(-0.0).to_bits(), (-0.0f64).to_bits(), "fma {fma}");
            for x in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
                assert!(tan(x).is_nan(), "fma {fma}: tan({x})");
            }
            let mut got = vec![0.0; points.len()];
            for f in [Trig::Sin, Trig::Cos, Trig::Tan] {
                slice(f, &mut got, &points);
                let one = [sin_f64::<true>, cos_f64::<true>, tan_f64::<true>];
                let one = if fma {
                    one
                } else {
                    [sin_f64::<false>, cos_f64::<false>, tan_f64::<false>]
                }[f as usize];
                for (&g, &x) in got.iter().zip(&points) {
                    assert_eq!(g.to_bits(), one(x).to_bits(), "fma {fma}: {f:?}({x:e})");
                }
            }
        }
    }

    #[test]
    fn tan_f32_is_within_1_ulp_of_the_exact_value_everywhere() {
        for (fma, tan, slice) in [
            (
                false,
                tan_f32::<false> as fn(f32) -> f32,
                trig_f32_slice::<false> as fn(Trig, &mut [f32], &[f32]),
            ),
            (true, tan_f32::<true>, trig_f32_slice::<true>),
        ] {
            // every 997th float (most of them past the limit), densely where the quadrants
            // change, and the floats nearest multiples of π/2
            let dense = (0..=400_000).map(|i| -7.0 + i as f32 * 3.5e-5);
            let near_multiples = (1..100_000u32).flat_map(|k| {
                let x = (k as f64 * std::f64::consts::FRAC_PI_2) as f32;
                [
                    x,
                    f32::from_bits(x.to_bits() + 1),
                    f32::from_bits(x.to_bits() - 1),
                    -x,
                ]
            });
            let points: Vec<f32> = every_float(997)
                .chain(dense)
                .chain(near_multiples)
                .collect();
            for &x in &points {
                let want = (x as f64).tan();
                let u = ulps(tan(x), want);
                assert!(u <= 1.0, "fma {fma}: tan({x:e}) is {u} ulp off");
            }
            assert_eq!(tan(-0.0).to_bits(), (-0.0f32).to_bits(), "fma {fma}");
            for x in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                assert!(tan(x).is_nan(), "fma {fma}: tan({x})");
            }
            let mut got = vec![0.0; points.len()];
            slice(Trig::Tan, &mut got, &points);
            for (&g, &x) in got.iter().zip(&points) {
                assert_eq!(g.to_bits(), tan(x).to_bits(), "fma {fma}: tan({x:e})");
            }
        }
    }

    #[test]
    fn sin_and_cos_f32_past_the_reduction_s_limit_are_f64_s_rounded() {
        // sin(1e30) once came out as +inf: the reduction's integer overflowed its rounder
        let points: Vec<f32> = every_float(997)
            .chain([
                1.6e6,
                1.600_001e6,
                1e7,
                1.234e9,
                1e30,
                3e38,
                -7.7e20,
                f32::MAX,
            ])
            .collect();
        for fma in [false, true] {
            let kernels: [fn(f32) -> f32; 2] = if fma {
                [sin_f32::<true>, cos_f32::<true>]
            } else {
                [sin_f32::<false>, cos_f32::<false>]
            };
            let slice = if fma {
                trig_f32_slice::<true>
            } else {
                trig_f32_slice::<false>
            };
            let mut got = vec![0.0; points.len()];
            for (f, one, exact) in [
                (Trig::Sin, kernels[0], f64::sin as fn(f64) -> f64),
                (Trig::Cos, kernels[1], f64::cos),
            ] {
                slice(f, &mut got, &points);
                for (&g, &x) in got.iter().zip(&points) {
                    assert_eq!(g.to_bits(), one(x).to_bits(), "fma {fma}: {f:?}({x:e})");
                    if x.abs() > SIN_COS_F32_LIMIT {
                        assert_eq!(g, exact(x as f64) as f32, "fma {fma}: {f:?}({x:e})");
                    }
                }
            }
            for &x in &points {
                let both = if fma {
                    sin_and_cos_f32::<true>(x)
                } else {
                    sin_and_cos_f32::<false>(x)
                };
                assert_eq!(
                    (both.0.to_bits(), both.1.to_bits()),
                    (kernels[0](x).to_bits(), kernels[1](x).to_bits()),
                    "fma {fma}: sin and cos of {x:e}"
                );
            }
        }
    }

    #[test]
    fn erfinv_f32_is_within_1_ulp_of_the_exact_value() {
        for (fma, erfinv) in [
            (false, erfinv_f32::<false> as fn(f32) -> f32),
            (true, erfinv_f32::<true>),
        ] {
            // every 997th float in [-1, 1] (both signs: all magnitudes up to 1), the floats
            // nearest 1, and where the two polynomials meet (|y| = 0.99663)
            let near_one = (1..5000u32).map(|k| f32::from_bits(1f32.to_bits() - k));
            let meet = (0..2000u32).map(|k| f32::from_bits(0.9966f32.to_bits() + k));
            let all = (0..=1f32.to_bits()).step_by(997).map(f32::from_bits);
            for y in all.chain(near_one).chain(meet) {
                for y in [y, -y] {
                    let want = crate::special::erfinv(y as f64);
                    let got = erfinv(y);
                    if want.is_infinite() {
                        assert_eq!(got as f64, want, "fma {fma}: erfinv({y:e})");
                        continue;
                    }
                    let u = ulps(got, want);
                    assert!(u <= 1.0, "fma {fma}: erfinv({y:e}) is {u} ulp off");
                }
            }
            assert_eq!(erfinv(-0.0).to_bits(), (-0.0f32).to_bits(), "fma {fma}");
            for y in [1.5f32, -1.000_000_1, f32::INFINITY, f32::NAN] {
                assert!(erfinv(y).is_nan(), "fma {fma}: erfinv({y})");
            }
        }
    }

    #[test]
    fn erfinv_f64_is_within_2_ulp_of_the_newton_iteration() {
        // (`special::erfinv`: two Newton steps on libm's erf, or erfc in the tails)
        for (fma, erfinv) in [
            (false, erfinv_f64::<false> as fn(f64) -> f64),
            (true, erfinv_f64::<true>),
        ] {
            // spread over [-1, 1], densely near ±1 and where the pieces meet, and the
            // doubles nearest 1
            let ranges = [
                (-1.0, 1.0),
                (0.99, 1.0),
                (0.996, 0.997),
                (0.9999998, 0.9999999),
            ];
            let near_one = (1..2000u64).map(|k| f64::from_bits(1f64.to_bits() - k));
            let far =
                (0..2000u64).map(|k| 1.0 - f64::from_bits(k * (0x3cb0_0000_0000_0000 / 2000)));
            let points = ranges
                .into_iter()
                .flat_map(|(lo, hi)| spread(lo, hi, 100_001))
                .chain(near_one)
                .chain(far);
            for y in points {
                for y in [y, -y] {
                    let want = crate::special::erfinv(y);
                    let got = erfinv(y);
                    if want.is_infinite() {
                        assert_eq!(got, want, "fma {fma}: erfinv({y:e})");
                        continue;
                    }
                    let u = ulps_f64(got, want);
                    assert!(u <= 2.0, "fma {fma}: erfinv({y:e}) is {u} ulp off");
                }
            }
            assert_eq!(erfinv(-0.0).to_bits(), (-0.0f64).to_bits(), "fma {fma}");
            let tiny = 1e-300 * (std::f64::consts::PI.sqrt() / 2.0);
            assert!(
                ulps_f64(erfinv(1e-300), tiny) <= 1.0,
                "fma {fma}: erfinv(1e-300)"
            );
            for y in [1.5, -1.000_000_1, f64::INFINITY, f64::NAN] {
                assert!(erfinv(y).is_nan(), "fma {fma}: erfinv({y})");
            }
        }
    }

    #[test]
    fn log1p_f64_is_within_2_ulp_of_libm() {
        type Form64 = (&'static str, fn(f64) -> f64);
        const LOG1P: [Form64; 2] = [
            ("unfused", log1p_kahan::<f64, false>),
            ("fused", log1p_kahan::<f64, true>),
        ];
        for ((form, log1p), bound) in LOG1P.into_iter().zip([2.0, 2.0]) {
            // spread over every exponent of both signs above -1 (tiny ones included), and
            // near 0 and -1
            let positive =
                (0..=200_000u64).map(|i| f64::from_bits(i * (0x7fef_ffff_ffff_ffff / 200_000)));
            let negative =
                (1..200_000u64).map(|i| -f64::from_bits(i * (0x3ff0_0000_0000_0000 / 200_000)));
            let near = (0..=100_000).flat_map(|i| {
                let f = (i as f64 * 0.618_033_988_749_895).fract();
                [-0.1 + 0.2 * f, -1.0 + 1e-3 * f]
            });
            for x in positive.chain(negative).chain(near).filter(|&x| x > -1.0) {
                let u = ulps_f64(log1p(x), x.ln_1p());
                assert!(u <= bound, "{form}: log1p({x:e}) is {u} ulp from libm's");
            }
            for x in [0.0, -0.0, 1e-310, -1e-310, f64::MAX, f64::INFINITY, -1.0] {
                assert_eq!(
                    log1p(x).to_bits(),
                    x.ln_1p().to_bits(),
                    "{form}: log1p({x:e})"
                );
            }
            for x in [-1.5, f64::NEG_INFINITY, f64::NAN] {
                assert!(log1p(x).is_nan(), "{form}: log1p({x})");
            }
        }
    }

    #[test]
    fn f64_erf_and_gelu_by_runs_are_the_element_kernels_bit_for_bit() {
        use crate::dtype::Float;
        use crate::{MapFn, ZipFn};
        fn same(a: f64, b: f64) -> bool {
            a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
        }
        fn check<const FMA: bool>(xs: &[f64], g: &[f64]) {
            let mut got = vec![0.0; xs.len()];
            // odd lengths, so whole runs, mixed ones and the remainder all run
            for len in [xs.len(), 7, 8, 9, 17, 4_003] {
                let (xs, g, got) = (&xs[..len], &g[..len], &mut got[..len]);
                assert!(f64::map_by_runs::<FMA>(MapFn::Erf, got, xs));
                for (&x, &y) in xs.iter().zip(got.iter()) {
                    assert!(same(y, x.erf_kernel::<FMA>()), "FMA {FMA}: erf({x:e})");
                }
                assert!(f64::map_by_runs::<FMA>(MapFn::Gelu, got, xs));
                for (&x, &y) in xs.iter().zip(got.iter()) {
                    assert!(same(y, x.gelu_kernel::<FMA>()), "FMA {FMA}: gelu({x:e})");
                }
                assert!(f64::zip_by_runs::<FMA>(ZipFn::GeluBackward, got, xs, g));
                for ((&x, &g), &y) in xs.iter().zip(g).zip(got.iter()) {
                    let want = x.gelu_backward_kernel::<FMA>(g);
                    assert!(same(y, want), "FMA {FMA}: gelu'({x:e}) {g:e}");
                }
            }
        }
        // runs below erf's 2.5 and GELU's 3.5 (which skip fdlibm's form), runs mixing them
        // with larger arguments, the ends, infinities and NaN
        let mut xs: Vec<f64> = spread(-2.49, 2.49, 4_000).collect();
        xs.extend(spread(-3.49, 3.49, 4_000));
        xs.extend(spread(-5.0, 5.0, 4_000));
        xs.extend([
            2.5,
            -2.5,
            2.499_999_999_999_999_6,
            0.843_75,
            0.0,
            -0.0,
            6.0,
            -30.0,
        ]);
        xs.extend([
            3.5,
            -3.5,
            -3.499_999_999_999_999_6,
            1e-300,
            -0.843_749_999,
            -50.0,
        ]);
        xs.extend([f64::INFINITY, f64::NEG_INFINITY, f64::NAN]);
        let g: Vec<f64> = spread(-2.0, 2.0, xs.len()).collect();
        check::<true>(&xs, &g);
        check::<false>(&xs, &g);
    }

    #[test]
    fn f32_erfinv_by_runs_is_the_element_kernel_bit_for_bit() {
        use crate::dtype::Float;
        fn check<const FMA: bool>(ys: &[f32]) {
            let mut got = vec![0.0; ys.len()];
            // odd lengths, so whole runs, mixed ones and the remainder all run
            for len in [ys.len(), 7, 8, 9, 17, 4_003] {
                let (ys, got) = (&ys[..len], &mut got[..len]);
                assert!(f32::map_by_runs::<FMA>(crate::MapFn::Erfinv, got, ys));
                for (&y, &v) in ys.iter().zip(got.iter()) {
                    let want = y.erfinv_kernel::<FMA>();
                    assert!(
                        same_bits(v, want),
                        "FMA {FMA}: erfinv({y:e}) {v:e} {want:e}"
                    );
                }
            }
        }
        // runs below the tail's 0.9966 (which skip its polynomial), runs mixing them with
        // larger arguments, the floats either side of the limit, ±1, beyond, NaN
        let mut ys: Vec<f32> = (0..4_000)
            .map(|i| -0.996 + 1.992 * i as f32 / 3_999.0)
            .collect();
        ys.extend((0..4_000).map(|i| -1.0 + 2.0 * i as f32 / 3_999.0));
        let limit = ERFINV_F32_NEAR_END;
        for k in 0..64 {
            let above = f32::from_bits(limit.to_bits() + k);
            let below = f32::from_bits(limit.to_bits() - k);
            ys.extend([above, -above, below, -below]);
        }
        ys.extend([0.0, -0.0, 1.0, -1.0, 1.5, -2.0, f32::INFINITY, f32::NAN]);
        check::<true>(&ys);
        check::<false>(&ys);
        // and the limit is where the central polynomial still applies: w below 5
        for y in [limit, f32::from_bits(limit.to_bits() - 1)] {
            let x = y as f64;
            assert!(-((1.0 - x) * (1.0 + x)).ln() < 5.0, "{y}");
        }
    }

    #[test]
    fn erf_and_erfc_f64_are_within_1_and_3_or_4_ulp_of_libm() {
        type Form64 = (&'static str, fn(f64) -> f64);
        const ERF: [Form64; 2] = [("unfused", erf_f64::<false>), ("fused", erf_f64::<true>)];
        const ERFC: [Form64; 2] = [("unfused", erfc_f64::<false>), ("fused", erfc_f64::<true>)];
        // each range and its ends (0.84375, 1.25, 1/0.35, 6, 28), erfc's subnormal results
        // (from 26.55), and tiny arguments of both signs
        let ranges = [
            (-7.0, 7.0),
            (0.8, 1.3),
            (2.8, 2.9),
            (5.9, 6.1),
            (-1.0, 1.0),
            (6.0, 28.0),
        ];
        let over_ranges = ranges
            .into_iter()
            .flat_map(|(lo, hi)| spread(lo, hi, 100_001));
        let tiny = (0..2_000u64).flat_map(|i| {
            let x = f64::from_bits(i * (0x3fb0_0000_0000_0000 / 2_000));
            [x, -x]
        });
        let points: Vec<f64> = over_ranges.chain(tiny).collect();
        for ((form, erf), bound) in ERF.into_iter().zip([1.0, 1.0]) {
            for &x in &points {
                let u = ulps_f64(erf(x), libm::erf(x));
                assert!(u <= bound, "{form}: erf({x:e}) is {u} ulp from libm's");
            }
            for x in [0.0, -0.0, 6.0, -30.0, f64::INFINITY, f64::NEG_INFINITY] {
                assert_eq!(
                    erf(x).to_bits(),
                    libm::erf(x).to_bits(),
                    "{form}: erf({x:e})"
                );
            }
            assert!(erf(f64::NAN).is_nan(), "{form}");
        }
        // (unfused, `1/2 - ((x - 1/2) + x R(x²))` from 0.25 to 0.84375 rounds its product and
        // the polynomial's steps apart: 4 ulp near 0.84, where the fused form keeps 2)
        for ((form, erfc), bound) in ERFC.into_iter().zip([4.0, 3.0]) {
            for &x in &points {
                let (got, want) = (erfc(x), libm::erfc(x));
                // relatively where the result is normal, in the subnormals' steps below
                let u = ulps_f64(got, want);
                assert!(u <= bound, "{form}: erfc({x:e}) is {u} ulp from libm's");
            }
            for x in [0.0, -0.0, 28.0, -6.0, f64::INFINITY, f64::NEG_INFINITY] {
                assert_eq!(
                    erfc(x).to_bits(),
                    libm::erfc(x).to_bits(),
                    "{form}: erfc({x:e})"
                );
            }
            assert!(erfc(f64::NAN).is_nan(), "{form}");
        }
    }

    /// `x m² - 1`'s sign, exactly, for `x = X 2^ax` and `m = M 2^bm` (`X < 2^53`, `M <
    /// 2^55`): `X M²`, up to 163 bits, as `A 2^64 + B` against `2^-(ax + 2 bm)`.
    fn x_m_squared_against_one(x: (u64, i32), m: (u64, i32)) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let m2 = (m.0 as u128) * (m.0 as u128);
        let low = (m2 & u64::MAX as u128) * x.0 as u128;
        let a = (m2 >> 64) * x.0 as u128 + (low >> 64);
        let b = low & u64::MAX as u128;
        let k = -(x.1 + 2 * m.1);
        if k < 0 {
            return Ordering::Greater;
        }
        let k = k as u32;
        if k >= 64 {
            if k - 64 >= 127 {
                return Ordering::Less;
            }
            match a.cmp(&(1u128 << (k - 64))) {
                Ordering::Equal if b > 0 => Ordering::Greater,
                other => other,
            }
        } else if a > 0 {
            Ordering::Greater
        } else {
            b.cmp(&(1u128 << k))
        }
    }

    /// A positive finite float as `(significand, exponent)`, `bits` bits of significand
    /// (24 for f32, 53 for f64).
    fn parts(v: f64, bits: u32) -> (u64, i32) {
        let (mantissa_bits, bias) = if bits == 24 { (23, 127) } else { (52, 1023) };
        let raw = if bits == 24 {
            (v as f32).to_bits() as u64
        } else {
            v.to_bits()
        };
        let field = (raw >> mantissa_bits) as i32;
        let fraction = raw & ((1u64 << mantissa_bits) - 1);
        if field == 0 {
            (fraction, 1 - bias - mantissa_bits)
        } else {
            (fraction | 1 << mantissa_bits, field - bias - mantissa_bits)
        }
    }

    /// Whether `y` is `x^(-1/2)` correctly rounded to a float of `bits` bits (`x`, `y`
    /// positive, finite and exact in that type; `y` normal): the exact value lies between
    /// the midpoints to `y`'s neighbours, `x m_hi² >= 1 >= x m_lo²`.
    fn is_rounded_rsqrt(x: f64, y: f64, bits: u32) -> bool {
        use std::cmp::Ordering;
        let xp = parts(x, bits);
        let (my, ey) = parts(y, bits);
        let hi = (2 * my + 1, ey - 1);
        // at the bottom of a binade the neighbour below is half an ulp nearer
        let lo = if my == 1 << (bits - 1) {
            (4 * my - 1, ey - 2)
        } else {
            (2 * my - 1, ey - 1)
        };
        x_m_squared_against_one(xp, hi) != Ordering::Less
            && x_m_squared_against_one(xp, lo) != Ordering::Greater
    }

    #[test]
    fn the_exact_rsqrt_check_tells_the_rounded_value_from_its_neighbours() {
        // 1/sqrt(4) = 0.5 exactly, 1/sqrt(2) = 0.70710678118654752440...
        assert!(is_rounded_rsqrt(4.0, 0.5, 53));
        assert!(!is_rounded_rsqrt(
            4.0,
            f64::from_bits(0.5f64.to_bits() + 1),
            53
        ));
        let r2 = std::f64::consts::FRAC_1_SQRT_2;
        assert!(is_rounded_rsqrt(2.0, r2, 53));
        assert!(!is_rounded_rsqrt(2.0, f64::from_bits(r2.to_bits() + 1), 53));
        assert!(!is_rounded_rsqrt(2.0, f64::from_bits(r2.to_bits() - 1), 53));
        let r2 = std::f32::consts::FRAC_1_SQRT_2;
        assert!(is_rounded_rsqrt(2.0, r2 as f64, 24));
        assert!(!is_rounded_rsqrt(
            2.0,
            f32::from_bits(r2.to_bits() + 1) as f64,
            24
        ));
        // the smallest subnormal: 2^-1074 -> 2^537, 2^-149 -> 2^74.5
        assert!(is_rounded_rsqrt(f64::from_bits(1), 2f64.powi(537), 53));
        let y = (2f64.powf(74.5)) as f32;
        assert!(is_rounded_rsqrt(f32::from_bits(1) as f64, y as f64, 24));
    }

    #[test]
    fn pow_neg_half_is_the_rounded_value_and_cs_at_the_edges() {
        use crate::Float as _;
        type Forms32 = [(&'static str, fn(f32) -> f32); 2];
        type Forms64 = [(&'static str, fn(f64) -> f64); 2];
        let f32_forms: Forms32 = [
            ("unfused", f32::pow_neg_half_kernel::<false>),
            ("fused", f32::pow_neg_half_kernel::<true>),
        ];
        let f64_forms: Forms64 = [
            ("unfused", f64::pow_neg_half_kernel::<false>),
            ("fused", f64::pow_neg_half_kernel::<true>),
        ];
        // a neighbour of y (one step up or down) that is the rounded value, if y is not
        let near = |x: f64, y: f64, bits: u32, up: f64, down: f64| {
            is_rounded_rsqrt(x, y, bits)
                || is_rounded_rsqrt(x, up, bits)
                || is_rounded_rsqrt(x, down, bits)
        };
        // f32: every 997th positive float, subnormals to the largest
        for (form, f) in f32_forms {
            let (mut total, mut rounded) = (0u32, 0u32);
            for b in (1..0x7f80_0000u32).step_by(997) {
                let x = f32::from_bits(b);
                let y = f(x);
                let (up, down) = (
                    f32::from_bits(y.to_bits() + 1),
                    f32::from_bits(y.to_bits() - 1),
                );
                let ok = is_rounded_rsqrt(x as f64, y as f64, 24);
                assert!(
                    ok || near(x as f64, y as f64, 24, up as f64, down as f64),
                    "{form}: {x:e}^-0.5 is {y:e}, more than one step from the rounded value"
                );
                total += 1;
                rounded += ok as u32;
            }
            // one step off only within a rounding error's width of a rounding boundary
            assert!(
                total - rounded <= total / 100_000,
                "{form}: {} of {total} f32 results not correctly rounded",
                total - rounded
            );
        }
        // f64: random positive finite floats over the whole range and near 1
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        for (form, f) in f64_forms {
            for i in 0..300_000u32 {
                let bits = if i % 3 == 0 {
                    (next() >> 30) + 0x3fe0_0000_0000_0000
                } else {
                    next() % 0x7ff0_0000_0000_0000
                };
                let x = f64::from_bits(bits.max(1));
                let y = f(x);
                let (up, down) = (
                    f64::from_bits(y.to_bits() + 1),
                    f64::from_bits(y.to_bits() - 1),
                );
                if form == "fused" {
                    assert!(
                        is_rounded_rsqrt(x, y, 53),
                        "{form}: {x:e}^-0.5 is {y:e}, not rounded"
                    );
                } else {
                    assert!(near(x, y, 53, up, down), "{form}: {x:e}^-0.5 is {y:e}");
                }
            }
        }
        // the special values as C's pow
        let specials = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -1e-40,
            -1e-310,
            f64::NAN,
        ];
        for x in specials {
            for (form, f) in f32_forms {
                let (got, want) = (f(x as f32), (x as f32).powf(-0.5));
                assert!(same_bits(got, want), "{form}: {x}^-0.5 = {got}, C's {want}");
            }
            for (form, f) in f64_forms {
                let (got, want) = (f(x), x.powf(-0.5));
                assert!(same_bits(got, want), "{form}: {x}^-0.5 = {got}, C's {want}");
            }
        }
    }

    #[test]
    fn pow_half_is_sqrt_but_at_the_edges_c_s_pow() {
        for b in (0..0x7f80_0000u32).step_by(99_991) {
            let x = f32::from_bits(b);
            assert_eq!(pow_half(x).to_bits(), x.sqrt().to_bits(), "{x:e}");
            assert_eq!(
                pow_half(x as f64).to_bits(),
                (x as f64).sqrt().to_bits(),
                "{x:e}"
            );
        }
        for x in [
            0.0f64,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -1e-310,
            f64::NAN,
        ] {
            let (got, want) = (pow_half(x), x.powf(0.5));
            assert!(same_bits(got, want), "{x}^0.5 = {got}, C's {want}");
            let (got, want) = (pow_half(x as f32), (x as f32).powf(0.5));
            assert!(same_bits(got, want), "{x}^0.5 = {got}, C's {want}");
        }
    }

    #[test]
    fn powi_by_chunks_is_powi_bit_for_bit() {
        use crate::elementwise::kernels::powi_loop;
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        // bases from tiny to huge, both signs, and the special values; 101 of them, so the
        // last chunk is partial
        let mut x64: Vec<f64> = (0..90)
            .map(|i| {
                let m = (next() >> 11) as f64 / (1u64 << 53) as f64 + 0.5;
                let v = m * 2f64.powi(i % 30 - 15);
                if i % 2 == 0 {
                    v
                } else {
                    -v
                }
            })
            .collect();
        x64.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-310,
            1e300,
            3.0,
            -7.5,
        ]);
        let x32: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        for n in (-70..=70).chain([i32::MAX, i32::MIN, i32::MIN + 1, 1 << 20]) {
            let mut d32 = vec![0.0f32; x32.len()];
            powi_loop(&mut d32, &x32, n);
            let mut d64 = vec![0.0f64; x64.len()];
            powi_loop(&mut d64, &x64, n);
            // (the exponent through black_box: powi's call, as for an exponent known only at
            // run time)
            let m = std::hint::black_box(n);
            for i in 0..x32.len() {
                let (got, want) = (d32[i], x32[i].powi(m));
                assert!(
                    same_bits(got, want),
                    "f32 {:e}^{n}: {got:e} against {want:e}",
                    x32[i]
                );
                let (got, want) = (d64[i], x64[i].powi(m));
                assert!(
                    same_bits(got, want),
                    "f64 {:e}^{n}: {got:e} against {want:e}",
                    x64[i]
                );
            }
        }
    }

    #[test]
    fn pow_f32_is_within_1_ulp_of_the_exact_value_and_cs_at_the_edges() {
        type Pow = fn(f32, f32) -> f32;
        let forms: [(&str, Pow); 2] = [("unfused", pow_f32::<false>), ("fused", pow_f32::<true>)];
        for (form, pow) in forms {
            // positive bases over the whole range against f64's pow, for exponents of both
            // signs, small and large, integer and not
            // and nearly always the correctly rounded one: f64's pow rounded to f32 (which
            // is itself wrong, rounded twice, about once in 2^29); the magnitude's 2^-44
            // makes about one in 2^20 differ (38 of 2·10^8 when this was written)
            let (mut rounded_otherwise, mut n) = (0usize, 0usize);
            for p in [0.5f32, -0.5, 0.7, -1.3, 2.5, 3.0, 7.25, -65.0, 100.0, 1e-3] {
                for b in (1..0x7f80_0000u32).step_by(997) {
                    let x = f32::from_bits(b);
                    let want = (x as f64).powf(p as f64);
                    if want > f32::MAX as f64 || want < f32::MIN_POSITIVE as f64 {
                        continue;
                    }
                    let got = pow(x, p);
                    let u = ulps(got, want);
                    assert!(u <= 1.0, "{form}: {x:e}^{p} is {u} ulp off");
                    n += 1;
                    rounded_otherwise += usize::from(got != want as f32);
                }
            }
            assert!(
                rounded_otherwise * 100_000 <= n,
                "{form}: {rounded_otherwise} of {n} not the correctly rounded power"
            );
            // negative bases: the sign from an odd integer power, NaN for a non-integer one
            assert_eq!(pow(-2.0, 3.0), -8.0, "{form}");
            assert_eq!(pow(-2.0, 66.0), 2f32.powi(66), "{form}");
            assert_eq!(pow(-2.0, -65.0), -(2f32.powi(-65)), "{form}");
            assert!(pow(-2.0, 0.5).is_nan(), "{form}");
            // every special case against libm's powf
            let specials = [
                0.0f32,
                -0.0,
                1.0,
                -1.0,
                0.5,
                -0.5,
                2.0,
                -2.0,
                1e-40,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
            ];
            let exponents = [
                0.0f32,
                -0.0,
                0.5,
                -0.5,
                1.5,
                3.0,
                -3.0,
                2.0,
                -2.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
            ];
            for &x in &specials {
                for &p in &exponents {
                    let (got, want) = (pow(x, p), x.powf(p));
                    assert!(
                        same_bits(got, want),
                        "{form}: {x:e}^{p} is {got:e}, libm's {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn sin_and_cos_f64_are_within_1_ulp_of_libm() {
        // (the slice forms: `tan_f64_is_within_1_ulp_of_libm_and_its_slice_form_bit_for_bit`)
        type Forms = (&'static str, [fn(f64) -> f64; 2]);
        let forms: [Forms; 2] = [
            ("unfused", [sin_f64::<false>, cos_f64::<false>]),
            ("fused", [sin_f64::<true>, cos_f64::<true>]),
        ];
        // small, moderate and large arguments up to the limit and past it, and the
        // multiples of π/2 nearest to some doubles (where the reduction cancels most)
        let ranges = [
            (-4.0, 4.0),
            (-100.0, 100.0),
            (-1.6e6, 1.6e6),
            (1e6, 1e9),
            (-1e-6, 1e-6),
        ];
        let over_ranges = ranges
            .into_iter()
            .flat_map(|(lo, hi)| spread(lo, hi, 100_001));
        let near_multiples = (1..20_000u64).flat_map(|k| {
            let x = k as f64 * std::f64::consts::FRAC_PI_2;
            [
                x,
                f64::from_bits(x.to_bits() + 1),
                f64::from_bits(x.to_bits() - 1),
                -x,
            ]
        });
        // 6381956970095103·2^797, the double nearest a multiple of π/2 (beyond the limit),
        // and one below it with a tiny remainder
        let specials = [5.319_372_648_326_541e249, 1_411_962.0, 0.0, -0.0, 1e-300];
        let points: Vec<f64> = over_ranges.chain(near_multiples).chain(specials).collect();
        for (form, [sin, cos]) in forms {
            for &x in &points {
                let u = ulps_f64(sin(x), x.sin());
                assert!(u <= 1.0, "{form}: sin({x:e}) is {u} ulp from libm's");
                let u = ulps_f64(cos(x), x.cos());
                assert!(u <= 1.0, "{form}: cos({x:e}) is {u} ulp from libm's");
            }
            assert_eq!(sin(-0.0).to_bits(), (-0.0f64).to_bits(), "{form}");
            for x in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
                assert!(
                    sin(x).is_nan() && cos(x).is_nan(),
                    "{form}: sin, cos of {x}"
                );
            }
        }
    }

    /// Every `step`th f32 bit pattern of both signs, NaNs left out.
    fn every_float(step: usize) -> impl Iterator<Item = f32> {
        (0..0x7f80_0000u32)
            .step_by(step)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
    }

    #[test]
    fn inverse_trigonometric_and_hyperbolic_f32_are_within_3_ulp_of_the_exact_value() {
        type Kernel = (&'static str, fn(f32) -> f32, fn(f64) -> f64, f64);
        for fma in [false, true] {
            let kernels: [Kernel; 5] = if fma {
                [
                    ("atan", atan_f32::<true>, f64::atan, 3.0),
                    ("asin", asin_or_acos_f32::<true, false>, f64::asin, 2.0),
                    ("acos", asin_or_acos_f32::<true, true>, f64::acos, 2.0),
                    ("sinh", sinh_f32::<true>, f64::sinh, 1.0),
                    ("cosh", cosh_f32::<true>, f64::cosh, 1.0),
                ]
            } else {
                [
                    ("atan", atan_f32::<false>, f64::atan, 3.0),
                    ("asin", asin_or_acos_f32::<false, false>, f64::asin, 2.0),
                    ("acos", asin_or_acos_f32::<false, true>, f64::acos, 2.0),
                    ("sinh", sinh_f32::<false>, f64::sinh, 1.0),
                    ("cosh", cosh_f32::<false>, f64::cosh, 1.0),
                ]
            };
            for (name, f, exact, bound) in kernels {
                // every 997th float, and densely in [-1, 1] where asin and acos live
                let dense = (0..=400_000).map(|i| -1.0 + i as f32 * 5e-6);
                for x in every_float(997).chain(dense) {
                    let want = exact(x as f64);
                    if want.is_nan() || want.abs() > f32::MAX as f64 {
                        let got = f(x);
                        assert!(
                            got.is_nan() == want.is_nan() && (got.is_nan() || got.is_infinite()),
                            "{name} (fma {fma}): at {x:e} {got:e}, exactly {want:e}"
                        );
                        continue;
                    }
                    let u = ulps(f(x), want);
                    assert!(u <= bound, "{name} (fma {fma}): {x:e} is {u} ulp off");
                }
                for x in [
                    0.0f32,
                    -0.0,
                    1.0,
                    -1.0,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::NAN,
                ] {
                    let (got, want) = (f(x), exact(x as f64) as f32);
                    assert!(
                        same_bits(got, want),
                        "{name} (fma {fma}): at {x} {got:e}, libm's {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn atan2_f32_is_within_3_ulp_of_the_exact_value_and_cs_at_the_edges() {
        for (fma, atan2) in [
            (false, atan2_f32::<false> as fn(f32, f32) -> f32),
            (true, atan2_f32::<true>),
        ] {
            // pairs of every 1048583rd float, both signs, against f64's
            let some: Vec<f32> = every_float(1_048_583).collect();
            let mut count = 0;
            for (i, &y) in some.iter().enumerate() {
                for &x in some.iter().skip(i % 7).step_by(7) {
                    let want = (y as f64).atan2(x as f64);
                    let u = ulps(atan2(y, x), want);
                    assert!(u <= 3.0, "fma {fma}: atan2({y:e}, {x:e}) is {u} ulp off");
                    count += 1;
                }
            }
            assert!(count > 2_000_000, "{count} pairs");
            // zeros, infinities and NaN against libm's atan2f, bit for bit
            let edges = [
                0.0f32,
                -0.0,
                1.0,
                -1.0,
                1e-40,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
            ];
            for &y in &edges {
                for &x in &edges {
                    let (got, want) = (atan2(y, x), y.atan2(x));
                    assert!(
                        same_bits(got, want),
                        "fma {fma}: atan2({y}, {x}) is {got:e}, libm's {want:e}"
                    );
                }
            }
        }
    }

    #[test]
    fn lgamma_and_digamma_f32_are_within_2_ulp_of_f64s() {
        type Kernel = (&'static str, fn(f32) -> f32, fn(f64) -> f64);
        let kernels: [Kernel; 4] = [
            (
                "lgamma unfused",
                lgamma_or_digamma_f32::<false, false>,
                libm::lgamma,
            ),
            (
                "lgamma fused",
                lgamma_or_digamma_f32::<true, false>,
                libm::lgamma,
            ),
            (
                "digamma unfused",
                lgamma_or_digamma_f32::<false, true>,
                crate::special::digamma,
            ),
            (
                "digamma fused",
                lgamma_or_digamma_f32::<true, true>,
                crate::special::digamma,
            ),
        ];
        // every 211th float of both signs, and densely from -20 to 20 (the shifts, the
        // reflection, the zeros at 1, 2 and 1.4616, the poles)
        let dense = (0..=400_000).map(|i| -20.0 + i as f32 * 1e-4);
        let points: Vec<f32> = every_float(1009).chain(dense).collect();
        for (name, f, exact) in kernels {
            for &x in &points {
                let want = exact(x as f64);
                let got = f(x);
                if !want.is_finite() || want.abs() > f32::MAX as f64 {
                    assert!(
                        got.is_nan() == want.is_nan() && (got.is_nan() || got.is_infinite()),
                        "{name}: at {x:e} {got:e}, f64's {want:e}"
                    );
                    continue;
                }
                // near a pole the f64 reference's own argument reduction differs
                if x < 0.0 && (x - x.round()).abs() < 1e-3 {
                    continue;
                }
                let u = ulps(got, want);
                let close = (got as f64 - want).abs() <= 1e-7;
                assert!(
                    u <= 2.0 || close,
                    "{name}: {x:e} is {u} ulp off ({got:e} vs {want:e})"
                );
            }
            for x in [
                1.0f32,
                2.0,
                0.5,
                10.0,
                1e30,
                -2.5,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                -3.0,
                f32::NAN,
            ] {
                let (got, want) = (f(x), exact(x as f64) as f32);
                let same = same_bits(got, want);
                let near = ulps(got, want as f64) <= 2.0;
                assert!(same || near, "{name}: at {x} {got:e}, f64's {want:e}");
            }
        }
        // the slice form, which skips the reflection for runs that need none, is the element
        // form bit for bit (runs of 16 from -2 to 2, negative, mixed and not, the zeros, NaN
        // and infinities among them, then some from the sweep past 10, and a tail)
        type Slice = fn(&mut [f32], &[f32]);
        type Element = fn(f32) -> f32;
        let slices: [(Slice, Element); 4] = [
            (
                lgamma_or_digamma_f32_slice::<false, false>,
                lgamma_or_digamma_f32::<false, false>,
            ),
            (
                lgamma_or_digamma_f32_slice::<true, false>,
                lgamma_or_digamma_f32::<true, false>,
            ),
            (
                lgamma_or_digamma_f32_slice::<false, true>,
                lgamma_or_digamma_f32::<false, true>,
            ),
            (
                lgamma_or_digamma_f32_slice::<true, true>,
                lgamma_or_digamma_f32::<true, true>,
            ),
        ];
        let some: Vec<f32> = (0..40_003)
            .map(|i| -2.0 + i as f32 * 1e-4)
            .chain([
                0.0,
                -0.0,
                f32::NAN,
                -3.0,
                1e-40,
                f32::INFINITY,
                f32::NEG_INFINITY,
            ])
            .chain(points[points.len() - 20_011..].iter().copied())
            .collect();
        let some = &some[..];
        let mut dst = vec![0.0; some.len()];
        for (slice, f) in slices {
            slice(&mut dst, some);
            for (&x, &d) in some.iter().zip(&dst) {
                assert_eq!(d.to_bits(), f(x).to_bits(), "slice at {x:e}");
            }
        }
    }

    #[test]
    fn log_f32_is_within_1_ulp_of_the_exact_value_over_the_positive_floats() {
        const LOG: [Form; 2] = [("unfused", log_f32::<false>), ("fused", log_f32::<true>)];
        for ((form, log), bound) in LOG.into_iter().zip([2.0, 1.0]) {
            // every 97th positive float, subnormals included, and around 1, where ln cancels
            let around_one = (0x3f70_0000..0x3f88_0000).step_by(7);
            for b in (1..0x7f80_0000u32).step_by(97).chain(around_one) {
                let x = f32::from_bits(b);
                let u = ulps(log(x), (x as f64).ln());
                assert!(u <= bound, "{form}: ln({x:e}) is {} ulp off", u);
            }
            assert_eq!(log(1.0), 0.0, "{form}");
            assert_eq!(log(0.0), f32::NEG_INFINITY, "{form}");
            assert_eq!(log(-0.0), f32::NEG_INFINITY, "{form}");
            assert_eq!(log(f32::INFINITY), f32::INFINITY, "{form}");
            for x in [-1e-30, -1.0, f32::NEG_INFINITY, f32::NAN] {
                assert!(log(x).is_nan(), "{form}: ln({x})");
            }
        }
    }

    #[test]
    fn erf_f32_is_within_1_5_ulp_of_the_exact_value() {
        const ERF: [Form; 2] = [("unfused", erf_f32::<false>), ("fused", erf_f32::<true>)];
        for (form, erf) in ERF {
            // both forms and the edge between them (1), past the point erf rounds to ±1
            // (3.92), and the tiny and denormal inputs
            for (lo, hi, step) in [(-7.0, 7.0, 1.7e-5), (-1e-3, 1e-3, 3.1e-9)] {
                let worst = worst_ulps(erf, libm::erf, lo, hi, step);
                assert!(
                    worst <= 1.5,
                    "{form}: worst error {worst} ulp on [{lo}, {hi}]"
                );
            }
            for x in [
                0.0f32, -0.0, 1e-40, -1e-40, 1e-30, 1.0, -1.0, 3.92, 4.0, 1e30,
            ] {
                assert!(ulps(erf(x), libm::erf(x as f64)) <= 1.5, "{form}: erf({x})");
                assert_eq!(
                    erf(x).is_sign_negative(),
                    x.is_sign_negative(),
                    "{form}: erf({x})"
                );
            }
            assert!(erf(f32::NAN).is_nan(), "{form}");
            assert_eq!(erf(f32::INFINITY), 1.0, "{form}");
            assert_eq!(erf(f32::NEG_INFINITY), -1.0, "{form}");
        }
    }

    /// GELU, `x Φ(x)`, exactly (in f64, `Φ` from libm's `erfc`, which keeps the negative tail).
    fn gelu_exact(x: f64) -> f64 {
        0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
    }

    #[test]
    fn gelu_f32_is_within_8_ulp_of_the_exact_value_down_to_the_normal_range() {
        const GELU: [Form; 2] = [("unfused", gelu_f32::<false>), ("fused", gelu_f32::<true>)];
        for (form, gelu) in GELU {
            // the centre finely, then out to where x Φ(x) leaves f32's normal range (-13)
            // and where Φ rounds to 1 (past 5.5)
            for (lo, hi, step) in [(-3.0, 3.0, 1.3e-6), (-13.0, 14.0, 1.1e-5)] {
                let worst = worst_ulps(gelu, gelu_exact, lo, hi, step);
                assert!(
                    worst <= 8.0,
                    "{form}: worst error {worst} ulp on [{lo}, {hi}]"
                );
            }
            // below it, results flush towards 0: off by less than the smallest normal
            let mut x = -15.0f32;
            while x < -13.0 {
                let (got, want) = (gelu(x) as f64, gelu_exact(x as f64));
                assert!(
                    (got - want).abs() < f32::MIN_POSITIVE as f64 && got <= 0.0,
                    "{form}: gelu({x}) = {got}, want {want}"
                );
                x += 1.3e-4;
            }
            // where (1 + erf(x/√2))/2 has cancelled to nothing, Φ keeps its digits
            assert!(ulps(gelu(-6.0), gelu_exact(-6.0)) <= 8.0, "{form}");
            assert!(gelu(f32::NAN).is_nan(), "{form}");
            assert_eq!(gelu(f32::INFINITY), f32::INFINITY, "{form}");
            for x in [f32::NEG_INFINITY, -20.0, -0.0] {
                assert_eq!(gelu(x).to_bits(), (-0.0f32).to_bits(), "{form}: gelu({x})");
            }
            assert_eq!(gelu(0.0).to_bits(), 0, "{form}");
        }
    }

    #[test]
    fn gelu_backward_f32_is_within_8_ulp_of_its_terms() {
        type Backward = (&'static str, fn(f32, f32) -> f32);
        const BACKWARD: [Backward; 2] = [
            ("unfused", gelu_backward_f32::<false>),
            ("fused", gelu_backward_f32::<true>),
        ];
        let ulp = f32::EPSILON as f64 / 2.0;
        for (form, backward) in BACKWARD {
            let mut x = -13.0f32;
            while x < 14.0 {
                let x64 = x as f64;
                let cdf = gelu_exact(x64) / x64;
                let density = x64 * (-x64 * x64 / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
                // the gradient crosses 0 near -0.75: measure against its terms' size
                let got = backward(x, 1.5) as f64;
                let want = 1.5 * (cdf + density);
                let scale = 1.5 * (cdf.abs() + density.abs());
                assert!(
                    (got - want).abs() <= 8.0 * ulp * scale + 1e-44,
                    "{form}: gelu_backward({x}) = {got}, want {want}"
                );
                x += 1.1e-5;
            }
            assert!(backward(f32::NAN, 1.0).is_nan(), "{form}");
            assert!(backward(1.0, f32::NAN).is_nan(), "{form}");
            assert_eq!(backward(f32::INFINITY, 2.0), 2.0, "{form}");
            assert_eq!(backward(f32::NEG_INFINITY, 2.0), 0.0, "{form}");
            assert_eq!(backward(0.0, 2.0), 1.0, "{form}");
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
