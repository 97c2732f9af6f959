//! The exponential's loops written out for AVX-512, bit for bit [`exp_f32`]`::<true>` (and
//! [`exp_f64`]`::<true>`).
//!
//! [`exp_f32`] is scalar code the compiler vectorises; its `2^n` is two exact power-of-two
//! factors built from integer bits (nine vector operations), because a single factor cannot
//! reach the subnormal results from `e^-87.3` down. AVX-512 has `vscalefps`, which
//! multiplies by `2^n` rounding once, as the second factor's product rounds, but the
//! vectoriser never emits it. Here the same reduction and polynomial run as explicit vectors
//! with one `vscalefps`: on the 2-core Xeon (model 207), 2^17 elements in L2, one thread,
//! 30 → 21 µs. Every one of the 2^32 f32 inputs gave the same bits as [`exp_f32`] (NaN for
//! NaN) when this was written; the unit tests below check a sample of three million. f64's
//! exponential ([`exp_f64`]) gets the same treatment (`vscalefpd`), checked on two million
//! inputs.
//!
//! The callers ([`Float::exp_shifted_fast`](crate::dtype::Float::exp_shifted_fast),
//! [`Float::sigmoid_fast`](crate::dtype::Float::sigmoid_fast)) take this path only at
//! [`SimdLevel::Avx512`](crate::SimdLevel::Avx512), so a cap below it runs the vectorised
//! scalar code as before.
//!
//! [`exp_f32`]: crate::math::exp_f32
//! [`exp_f64`]: crate::math::exp_f64

use std::arch::x86_64::*;

use crate::math::{EXP_F32_P, EXP_F64_C, LN2_F32, LN2_F64, LOG_F32_P};

/// `e^z` of 16 lanes, [`exp_f32`](crate::math::exp_f32)`::<true>`'s arithmetic, with the
/// lanes where `z < floor` 0 (`floor` at least -104, where `exp_f32` gives 0 from).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(z: __m512, floor: __m512) -> __m512 {
    // The constants of `exp_parts` (math.rs), in its order of operations.
    let gone = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(z, floor);
    // clamp to 89 keeping NaN (vminps returns its second operand when either is NaN); the
    // gone lanes compute at 0
    let c = _mm512_mask_mov_ps(
        _mm512_min_ps(_mm512_set1_ps(89.0), z),
        gone,
        _mm512_setzero_ps(),
    );
    let rounder = _mm512_set1_ps(12_582_912.0);
    let t = _mm512_fmadd_ps(c, _mm512_set1_ps(std::f32::consts::LOG2_E), rounder);
    let n = _mm512_sub_ps(t, rounder);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_F32.0), c);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_F32.1), r);
    let mut p = _mm512_set1_ps(EXP_F32_P[0]);
    for &k in &EXP_F32_P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(k));
    }
    // p·2^n rounded once: the two-factor product's bits, overflow to +inf included
    _mm512_mask_mov_ps(_mm512_scalef_ps(p, n), gone, _mm512_setzero_ps())
}

/// `f` over `len` elements from `src` into `dst` (the same place or apart), 16 lanes at a
/// time, the tail by masked loads and stores.
///
/// # Safety
/// `src` is readable and `dst` writable for `len` f32s, and they are the same place or do
/// not overlap.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn lanes(dst: *mut f32, src: *const f32, len: usize, f: impl Fn(__m512) -> __m512) {
    let whole = len - len % 16;
    let mut i = 0;
    while i < whole {
        // SAFETY: elements i..i + 16 are in bounds (the caller's promise); a lane is read
        // before it is written, so the same place works too.
        unsafe { _mm512_storeu_ps(dst.add(i), f(_mm512_loadu_ps(src.add(i)))) };
        i += 16;
    }
    if whole < len {
        let mask: __mmask16 = (1 << (len - whole)) - 1;
        // SAFETY: the mask selects the `len - whole` (< 16) elements left, in bounds;
        // masked-off lanes are neither read nor written.
        unsafe {
            let x = _mm512_maskz_loadu_ps(mask, src.add(whole));
            _mm512_mask_storeu_ps(dst.add(whole), mask, f(x));
        }
    }
}

/// `dst[i] = e^(src[i] - shift)` (`src` `None`: `dst`'s own elements), 0 where the
/// difference is below `floor` (at least -104): [`exp_f32`](crate::math::exp_f32)`::<true>`
/// of the difference, bit for bit.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_shifted(dst: &mut [f32], src: Option<&[f32]>, shift: f32, floor: f32) {
    let len = dst.len();
    let src = src.map_or(dst.as_ptr(), |s| {
        assert_eq!(s.len(), len, "exp_shifted: lengths");
        s.as_ptr()
    });
    let (shift, floor) = (_mm512_set1_ps(shift), _mm512_set1_ps(floor));
    // SAFETY: `src` is `dst` or a slice of its length (checked), which `&mut` keeps apart.
    unsafe {
        lanes(dst.as_mut_ptr(), src, len, |x| {
            exp16(_mm512_sub_ps(x, shift), floor)
        })
    };
}

/// `e^z` of 8 f64 lanes, [`exp_f64`](crate::math::exp_f64)`::<true>`'s arithmetic with one
/// `vscalefpd` for its two factors, the lanes where `z < floor` 0 (`floor` at least -746).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp8(z: __m512d, floor: __m512d) -> __m512d {
    let gone = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(z, floor);
    let c = _mm512_mask_mov_pd(
        _mm512_min_pd(_mm512_set1_pd(710.0), z),
        gone,
        _mm512_setzero_pd(),
    );
    let rounder = _mm512_set1_pd(6_755_399_441_055_744.0);
    let t = _mm512_fmadd_pd(c, _mm512_set1_pd(std::f64::consts::LOG2_E), rounder);
    let n = _mm512_sub_pd(t, rounder);
    let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_F64.0), c);
    let r = _mm512_fnmadd_pd(n, _mm512_set1_pd(LN2_F64.1), r);
    let mut p = _mm512_set1_pd(EXP_F64_C[0]);
    for &k in &EXP_F64_C[1..] {
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(k));
    }
    _mm512_mask_mov_pd(_mm512_scalef_pd(p, n), gone, _mm512_setzero_pd())
}

/// [`lanes`] for f64, 8 lanes at a time.
///
/// # Safety
/// As [`lanes`], for f64s.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn lanes_f64(dst: *mut f64, src: *const f64, len: usize, f: impl Fn(__m512d) -> __m512d) {
    let whole = len - len % 8;
    let mut i = 0;
    while i < whole {
        // SAFETY: as in `lanes`.
        unsafe { _mm512_storeu_pd(dst.add(i), f(_mm512_loadu_pd(src.add(i)))) };
        i += 8;
    }
    if whole < len {
        let mask: __mmask8 = (1 << (len - whole)) - 1;
        // SAFETY: as in `lanes`.
        unsafe {
            let x = _mm512_maskz_loadu_pd(mask, src.add(whole));
            _mm512_mask_storeu_pd(dst.add(whole), mask, f(x));
        }
    }
}

/// [`exp_shifted`] for f64: [`exp_f64`](crate::math::exp_f64)`::<true>` of the difference,
/// 0 below `floor` (at least -746), bit for bit.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_shifted_f64(dst: &mut [f64], src: Option<&[f64]>, shift: f64, floor: f64) {
    let len = dst.len();
    let src = src.map_or(dst.as_ptr(), |s| {
        assert_eq!(s.len(), len, "exp_shifted_f64: lengths");
        s.as_ptr()
    });
    let (shift, floor) = (_mm512_set1_pd(shift), _mm512_set1_pd(floor));
    // SAFETY: as in `exp_shifted`.
    unsafe {
        lanes_f64(dst.as_mut_ptr(), src, len, |x| {
            exp8(_mm512_sub_pd(x, shift), floor)
        })
    };
}

/// `ln x` of 16 lanes, [`log_f32`](crate::math::log_f32)`::<true>`'s arithmetic with its
/// reduction by `vgetmantps` and `vgetexpps`: the mantissa in `[1, 2)` (halved, and the
/// exponent raised, from `√2` up, to give `log_f32`'s `[√½, √2)`) and the exponent as a
/// float, subnormals included, where `log_f32` scales subnormals and works on the bits.
#[inline]
#[target_feature(enable = "avx512f")]
fn log16(x: __m512) -> __m512 {
    let m = _mm512_getmant_ps::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_ZERO>(x);
    let e = _mm512_getexp_ps(x);
    // √2 rounded to f32, log_f32's bound
    let big = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(m, _mm512_set1_ps(f32::from_bits(0x3fb5_04f3)));
    let m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5));
    let e = _mm512_mask_add_ps(e, big, e, _mm512_set1_ps(1.0));
    let f = _mm512_sub_ps(m, _mm512_set1_ps(1.0));
    let z = _mm512_mul_ps(f, f);
    let mut p = _mm512_set1_ps(LOG_F32_P[8]);
    for &k in LOG_F32_P[..8].iter().rev() {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(k));
    }
    let y = _mm512_mul_ps(_mm512_mul_ps(p, f), z);
    let y = _mm512_fmadd_ps(e, _mm512_set1_ps(LN2_F32.1), y);
    let y = _mm512_fmadd_ps(z, _mm512_set1_ps(-0.5), y);
    let ln = _mm512_fmadd_ps(e, _mm512_set1_ps(LN2_F32.0), _mm512_add_ps(f, y));
    // a vector of positive finite floats (its bits less one below 0x7f7fffff, unsigned:
    // neither 0 nor negative, infinite or NaN) needs no special value: two operations and
    // a branch where the six below cost 12% of a call (2^18 elements, one thread, the
    // 2-core Xeon of model 207: 68.6 -> 60.4 µs)
    let special = _mm512_cmp_epu32_mask::<_MM_CMPINT_NLT>(
        _mm512_sub_epi32(_mm512_castps_si512(x), _mm512_set1_epi32(1)),
        _mm512_set1_epi32(0x7f7f_ffff),
    );
    if special == 0 {
        return ln;
    }
    // log_f32's special values, in its order: 0, then below 0 or NaN, then +inf
    let zero = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_setzero_ps());
    let nan = _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(x, _mm512_setzero_ps());
    let inf = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(x, _mm512_set1_ps(f32::INFINITY));
    let ln = _mm512_mask_mov_ps(ln, inf, x);
    let ln = _mm512_mask_mov_ps(ln, nan, _mm512_set1_ps(f32::NAN));
    _mm512_mask_mov_ps(ln, zero, _mm512_set1_ps(f32::NEG_INFINITY))
}

/// `dst[i] = ln src[i]`: [`log_f32`](crate::math::log_f32)`::<true>` bit for bit.
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn log(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "log: lengths");
    // SAFETY: two slices of one length, apart (one is `&mut`).
    unsafe { lanes(dst.as_mut_ptr(), src.as_ptr(), dst.len(), |x| log16(x)) };
}

/// `dst[i] = σ(src[i])`: `f32`'s `sigmoid_kernel::<true>` bit for bit (`e = e^-|x|`, then
/// `1/(1 + e)`, times `e` where `x < 0`).
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn sigmoid(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "sigmoid: lengths");
    let floor = _mm512_set1_ps(-104.0);
    let one = _mm512_set1_ps(1.0);
    let f = |x| {
        // -|x|: the sign bit set
        let minus_abs = _mm512_castsi512_ps(_mm512_or_epi32(
            _mm512_castps_si512(x),
            _mm512_set1_epi32(i32::MIN),
        ));
        let e = exp16(minus_abs, floor);
        let s = _mm512_div_ps(one, _mm512_add_ps(one, e));
        let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
        _mm512_mask_mul_ps(s, negative, e, s)
    };
    // SAFETY: two slices of one length, apart (one is `&mut`).
    unsafe { lanes(dst.as_mut_ptr(), src.as_ptr(), dst.len(), f) };
}

#[cfg(test)]
mod tests {
    use crate::math::exp_f32;
    use crate::SimdLevel;

    fn avx512() -> bool {
        crate::math::detected_simd_level() == SimdLevel::Avx512
    }

    /// Every 4099th f32 bit pattern (all signs, exponents and NaNs), every 257th from -104.5
    /// to 89.5 (where results are neither 0 nor infinite), and the edges.
    fn sample() -> Vec<f32> {
        let mut xs: Vec<f32> = (0..u32::MAX / 4099)
            .map(|i| f32::from_bits(i * 4099))
            .collect();
        let (low, high) = ((-104.5f32).to_bits(), 89.5f32.to_bits());
        xs.extend((0..high / 257).map(|i| f32::from_bits(i * 257)));
        xs.extend((1u32 << 31..low).step_by(257).map(f32::from_bits));
        xs.extend([
            0.0, -0.0, 89.0, 88.72283, 88.722_84, -104.0, -103.97, -87.33655,
        ]);
        xs.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN,
            f32::MAX,
        ]);
        xs
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn exp_is_the_scalar_kernel_bit_for_bit() {
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let xs = sample();
        let mut got = vec![0.0; xs.len()];
        for (shift, floor) in [(0.0, -104.0), (1.5, -104.0), (-3.0, f32::MIN_POSITIVE.ln())] {
            // odd lengths, so the masked tail runs
            for len in [xs.len(), 7, 16, 33] {
                // SAFETY: the CPU has AVX-512 (checked above).
                unsafe { super::exp_shifted(&mut got[..len], Some(&xs[..len]), shift, floor) };
                let want = |x: f32| {
                    let z = x - shift;
                    if z < floor {
                        0.0
                    } else {
                        exp_f32::<true>(z)
                    }
                };
                for (&x, &y) in xs.iter().zip(&got[..len]) {
                    assert!(
                        same(y, want(x)),
                        "exp({x:e} - {shift}) = {:e}, got {y:e}",
                        want(x)
                    );
                }
                // in place
                got[..len].copy_from_slice(&xs[..len]);
                // SAFETY: as above.
                unsafe { super::exp_shifted(&mut got[..len], None, shift, floor) };
                for (&x, &y) in xs.iter().zip(&got[..len]) {
                    assert!(
                        same(y, want(x)),
                        "in place: exp({x:e} - {shift}), got {y:e}"
                    );
                }
            }
        }
    }

    /// All 2^32 inputs: `cargo test --release -p ferrograd-array --lib -- --ignored
    /// every_f32` (about two minutes).
    #[test]
    #[ignore = "minutes in the test profile; run in release"]
    fn exp_and_log_are_the_scalar_kernels_on_every_f32() {
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let mut xs = vec![0.0; 1 << 24];
        let mut got = vec![0.0; 1 << 24];
        for chunk in 0u32..256 {
            for (i, x) in xs.iter_mut().enumerate() {
                *x = f32::from_bits(chunk << 24 | i as u32);
            }
            // SAFETY: the CPU has AVX-512 (checked above).
            unsafe { super::exp_shifted(&mut got, Some(&xs), 0.0, -104.0) };
            for (&x, &y) in xs.iter().zip(&got) {
                assert!(same(y, exp_f32::<true>(x)), "exp({x:e}): got {y:e}");
            }
            // SAFETY: as above.
            unsafe { super::log(&mut got, &xs) };
            for (&x, &y) in xs.iter().zip(&got) {
                let want = crate::math::log_f32::<true>(x);
                assert!(same(y, want), "ln({x:e}): got {y:e}");
            }
        }
    }

    #[test]
    fn log_is_the_scalar_kernel_bit_for_bit() {
        use crate::math::log_f32;
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        // every 4099th bit pattern, every 257th positive float (subnormals included), edges
        let mut xs: Vec<f32> = (0..u32::MAX / 4099)
            .map(|i| f32::from_bits(i * 4099))
            .collect();
        xs.extend((1..0x7f80_0000u32).step_by(257).map(f32::from_bits));
        xs.extend([
            0.0,
            -0.0,
            1.0,
            f32::from_bits(1),
            f32::MIN_POSITIVE,
            f32::MAX,
        ]);
        xs.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -1.0,
            std::f32::consts::SQRT_2,
        ]);
        let mut got = vec![0.0; xs.len()];
        for len in [xs.len(), 7, 16, 33] {
            // SAFETY: the CPU has AVX-512 (checked above).
            unsafe { super::log(&mut got[..len], &xs[..len]) };
            for (&x, &y) in xs.iter().zip(&got[..len]) {
                let want = log_f32::<true>(x);
                assert!(same(y, want), "ln({x:e}) = {want:e}, got {y:e}");
            }
        }
    }

    #[test]
    fn f64_exp_is_the_scalar_kernel_bit_for_bit() {
        use crate::math::exp_f64;
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        // bit patterns spread over every sign and exponent, a dense sweep of the range where
        // results are neither 0 nor infinite, and the edges
        let mut xs: Vec<f64> = (0..1u64 << 20)
            .map(|i| f64::from_bits(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        xs.extend(
            (0..1 << 20).map(|i| -746.0 + 1456.0 * (i as f64 * 0.618_033_988_749_895).fract()),
        );
        xs.extend([
            0.0,
            -0.0,
            709.782_712_893_384,
            709.79,
            710.0,
            -745.2,
            -746.0,
            -708.5,
        ]);
        xs.extend([
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN,
            f64::MAX,
        ]);
        let mut got = vec![0.0; xs.len()];
        for (shift, floor) in [(0.0, -746.0), (1.5, -746.0), (-3.0, f64::MIN_POSITIVE.ln())] {
            for len in [xs.len(), 7, 8, 17] {
                // SAFETY: the CPU has AVX-512 (checked above).
                unsafe { super::exp_shifted_f64(&mut got[..len], Some(&xs[..len]), shift, floor) };
                for (&x, &y) in xs.iter().zip(&got[..len]) {
                    let z = x - shift;
                    let want = if z < floor { 0.0 } else { exp_f64::<true>(z) };
                    let same = y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan());
                    assert!(same, "exp({z:e}) = {want:e}, got {y:e}");
                }
            }
        }
    }

    #[test]
    fn sigmoid_is_the_scalar_kernel_bit_for_bit() {
        use crate::dtype::Float;
        if !avx512() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let xs = sample();
        let mut got = vec![0.0; xs.len()];
        // SAFETY: the CPU has AVX-512 (checked above).
        unsafe { super::sigmoid(&mut got, &xs) };
        for (&x, &y) in xs.iter().zip(&got) {
            let want = x.sigmoid_kernel::<true>();
            assert!(same(y, want), "σ({x:e}) = {want:e}, got {y:e}");
        }
    }
}
