//! gemm's AVX2 and portable kernels, selectable on any CPU, so that
//! [`cap_simd_level`](crate::cap_simd_level) caps the matrix products as it caps the
//! elementwise kernels.
//!
//! gemm 0.19 picks its kernels once per process from the CPU's features (AVX-512 when the
//! `x86-v4` feature is on and the CPU has it, else AVX2 with FMA, else portable code) and
//! offers no way to ask for a lower one. Its kernels and its blocked driver are public,
//! though: the functions here join them as gemm's own dispatch joins them for a CPU of
//! that level, so a capped process multiplies with exactly the code an AVX2-only (or a
//! baseline x86-64) machine runs, and its products can be tested and timed on an AVX-512
//! machine. Uncapped, every product keeps gemm's own pick ([`Float::gemm_fn`]). (An
//! `openblas` build's large products run on OpenBLAS whatever the cap: its own
//! `OPENBLAS_CORETYPE` picks its kernels.)
//!
//! [`Float::gemm_fn`]: crate::dtype::Float::gemm_fn

use crate::dtype::GemmFn;
use crate::math::{detected_simd_level, simd_level, SimdLevel};
use gemm_common::simd::MixedSimd;

/// One of gemm's kernel sets behind its blocked driver, as gemm's own dispatch builds it
/// for a CPU of that level: `$lanes` elements per vector, `$simd` the instruction set the
/// driver's packing runs under, `$kernels` the module of micro-kernels.
macro_rules! gemm_path {
    ($name:ident, $ty:ty, $lanes:expr, $simd:ty, $kernels:path) => {
        #[allow(clippy::too_many_arguments)] // gemm's own signature
        unsafe fn $name(
            m: usize,
            n: usize,
            k: usize,
            dst: *mut $ty,
            dst_cs: isize,
            dst_rs: isize,
            read_dst: bool,
            lhs: *const $ty,
            lhs_cs: isize,
            lhs_rs: isize,
            rhs: *const $ty,
            rhs_cs: isize,
            rhs_rs: isize,
            alpha: $ty,
            beta: $ty,
            conj_dst: bool,
            conj_lhs: bool,
            conj_rhs: bool,
            parallelism: gemm_common::Parallelism,
        ) {
            use $kernels as kernels;
            const N: usize = $lanes;
            let simd = <$simd as MixedSimd<$ty, $ty, $ty, $ty>>::try_new()
                .expect("`pick` checked that the CPU has this instruction set");
            // SAFETY: the caller's operands, as received (the contract of gemm's own
            // `gemm_basic`, which is this same call).
            unsafe {
                gemm_common::gemm::gemm_basic_generic::<
                    _,
                    $ty,
                    N,
                    { kernels::MR_DIV_N * N },
                    { kernels::NR },
                    { kernels::MR_DIV_N },
                    { kernels::H_M },
                    { kernels::H_N },
                >(
                    simd,
                    m,
                    n,
                    k,
                    dst,
                    dst_cs,
                    dst_rs,
                    read_dst,
                    lhs,
                    lhs_cs,
                    lhs_rs,
                    rhs,
                    rhs_cs,
                    rhs_rs,
                    alpha,
                    beta,
                    conj_dst,
                    conj_lhs,
                    conj_rhs,
                    |a, b, c| a * b + c,
                    &kernels::UKR,
                    &kernels::H_UKR,
                    false,
                    parallelism,
                )
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
gemm_path!(
    f32_avx2,
    f32,
    8,
    gemm_common::simd::V3,
    gemm_f32::microkernel::fma::f32
);
#[cfg(target_arch = "x86_64")]
gemm_path!(
    f64_avx2,
    f64,
    4,
    gemm_common::simd::V3,
    gemm_f64::microkernel::fma::f64
);
gemm_path!(
    f32_portable,
    f32,
    1,
    gemm_common::simd::Scalar,
    gemm_f32::microkernel::scalar::f32
);
gemm_path!(
    f64_portable,
    f64,
    1,
    gemm_common::simd::Scalar,
    gemm_f64::microkernel::scalar::f64
);

/// The kernels for the level in use: gemm's own pick when the level is the CPU's, else the
/// capped level's (see the module's comment). gemm's AVX2 driver runs under pulp's `V3`
/// (x86-64-v3: AVX2 and FMA with BMI1/2, F16C, LZCNT and MOVBE), which an AVX-512 CPU has
/// but a machine that masks some of them (a virtual one) may not: there gemm's own pick runs.
fn pick<T>(own: fn() -> GemmFn<T>, avx2: GemmFn<T>, portable: GemmFn<T>) -> GemmFn<T> {
    static DETECTED: std::sync::OnceLock<(SimdLevel, bool)> = std::sync::OnceLock::new();
    let (detected, v3) = *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let v3 = gemm_common::simd::V3::try_new().is_some();
        #[cfg(not(target_arch = "x86_64"))]
        let v3 = false;
        (detected_simd_level(), v3)
    });
    match simd_level() {
        level if level == detected => own(),
        SimdLevel::Avx2 if v3 => avx2,
        SimdLevel::Avx2 => own(),
        _ => portable,
    }
}

/// gemm's f32 kernels for the level in use.
pub(crate) fn f32_kernels() -> GemmFn<f32> {
    #[cfg(target_arch = "x86_64")]
    let avx2: GemmFn<f32> = f32_avx2;
    // (a level below the CPU's is never AVX2 off x86-64)
    #[cfg(not(target_arch = "x86_64"))]
    let avx2: GemmFn<f32> = f32_portable;
    pick(gemm_f32::gemm::f32::get_gemm_fn, avx2, f32_portable)
}

/// gemm's f64 kernels for the level in use.
pub(crate) fn f64_kernels() -> GemmFn<f64> {
    #[cfg(target_arch = "x86_64")]
    let avx2: GemmFn<f64> = f64_avx2;
    #[cfg(not(target_arch = "x86_64"))]
    let avx2: GemmFn<f64> = f64_portable;
    pick(gemm_f64::gemm::f64::get_gemm_fn, avx2, f64_portable)
}
