//! Matrix products on the system's OpenBLAS (the `openblas` feature; off by default, when
//! every product runs on the pure-Rust `gemm` crate).
//!
//! The feature is for machines where OpenBLAS's kernels beat gemm's: on a 2-core AVX2 Zen 3
//! an f32 product at 2048² ran 1.26x slower on gemm than on NumPy's OpenBLAS. On the 2-core
//! AVX-512 Zen 4 of the README's figures gemm is level with Debian's OpenBLAS 0.3.21 on
//! large squares and level or faster on the suite's steps (`benches/compare-openblas.sh`
//! measures both on any machine), so the default stays.
//!
//! Only products of at least [`BLAS_MIN_FLOPS`] that a caller runs on its own thread come
//! here (see [`product`]). Smaller ones stay on gemm, whose kernels and two-core halves ran
//! them faster than OpenBLAS did on both machines measured (OpenBLAS wakes its threads for
//! each); so do products inside a parallel region (one per sample of a convolution, per
//! matrix of a batch), so OpenBLAS's threads never run inside rayon's. OpenBLAS uses as many threads as
//! `RAYON_NUM_THREADS` says when that is set (so `RAYON_NUM_THREADS=1` still keeps every
//! product on the calling thread), else its own default, which `OPENBLAS_NUM_THREADS`
//! sets.

use std::ffi::c_int;
use std::sync::Once;

use cblas_sys::{cblas_dgemm, cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};

use crate::dtype::Float;
use crate::linalg::Mat;
use crate::DType;

#[link(name = "openblas")]
extern "C" {
    fn openblas_set_num_threads(threads: c_int);
}

/// Products of at least this many multiply-adds (m·n·k) run on OpenBLAS: the size from
/// which gemm hands a product to all its threads (`linalg::PARALLEL_FLOPS`), and where the
/// gap to OpenBLAS on an AVX2 machine was measured (2048³). Below it, on the 2-core Zen 4
/// (`benches/compare-openblas.sh`), OpenBLAS 0.3.21 took 1.2-3x gemm's time: 128³ 37-69 µs
/// against 22 µs, the LSTM's 32x200·200x800 67-90 against 54 µs.
pub(crate) const BLAS_MIN_FLOPS: usize = 8 << 20;

/// A BLAS operand of `rows` × `cols` elements with strides `rs`, `cs`, in row-major terms:
/// as stored (row-major with leading dimension `rs`) or as the transpose of a row-major
/// matrix (column-major with leading dimension `cs`). None for any other layout (broadcast
/// rows, negative or interleaved strides), which gemm handles instead.
fn operand(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<(CBLAS_TRANSPOSE, c_int)> {
    let ld = |stride: isize, least: usize| {
        let least = least.max(1);
        let ld = if stride >= least as isize {
            stride as usize
        } else {
            least
        };
        c_int::try_from(ld).ok()
    };
    if cs == 1 && (rows == 1 || rs >= cols as isize) {
        Some((CBLAS_TRANSPOSE::CblasNoTrans, ld(rs, cols)?))
    } else if rs == 1 && (cols == 1 || cs >= rows as isize) {
        Some((CBLAS_TRANSPOSE::CblasTrans, ld(cs, rows)?))
    } else {
        None
    }
}

/// `C = s·A B` (or `C += s·A B` when `accumulate`) on OpenBLAS, A m×k, B k×n, all strided, when
/// the product is at least [`BLAS_MIN_FLOPS`] and the layouts suit BLAS (each operand has a
/// unit stride, C one along a dim of its own); false, with nothing written, otherwise. With `accumulate` the product of a depth
/// of at most a few hundred is added to C after it is summed, so `matmul_acc_into` rounds
/// as `out + a @ b` here as it does on gemm.
///
/// # Safety
/// As for [`crate::linalg::gemm_strided`]: every pointer with its strides must address valid
/// elements for the given sizes, and C must not overlap A or B.
#[allow(clippy::too_many_arguments)] // gemm_strided's own shape
pub(crate) unsafe fn product<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: Mat<*mut T>,
    a: Mat<*const T>,
    b: Mat<*const T>,
    accumulate: bool,
    scale: T,
) -> bool {
    if k == 0 || m * n * k < BLAS_MIN_FLOPS {
        return false;
    }
    // C must be row-major; a column-major C is the row-major Cᵀ = Bᵀ Aᵀ.
    let (m, n, c, a, b) = if c.cs == 1 && (m == 1 || c.rs >= n as isize) {
        (m, n, c, a, b)
    } else if c.rs == 1 && (n == 1 || c.cs >= m as isize) {
        (n, m, c.t(), b.t(), a.t())
    } else {
        return false;
    };
    let (Some((ta, lda)), Some((tb, ldb)), Some((_, ldc))) = (
        operand(m, k, a.rs, a.cs),
        operand(k, n, b.rs, b.cs),
        operand(m, n, c.rs, c.cs),
    ) else {
        return false;
    };
    let (Ok(mi), Ok(ni), Ok(ki)) = (c_int::try_from(m), c_int::try_from(n), c_int::try_from(k))
    else {
        return false;
    };
    static THREADS: Once = Once::new();
    THREADS.call_once(|| {
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<c_int>().ok())
            .filter(|&t| t > 0);
        if let Some(threads) = threads {
            // SAFETY: OpenBLAS's own setter, called once before any product of ours.
            unsafe { openblas_set_num_threads(threads) };
        }
    });
    // The routine of T's element type, called on the checked operands.
    macro_rules! gemm {
        ($routine:ident, $t:ty) => {
            // SAFETY: the caller vouches for the operands; `operand` checked that each is
            // the row-major matrix (or transpose) that the dims and leading dimensions
            // describe, and T is `$t` (its dtype says so).
            unsafe {
                $routine(
                    CBLAS_LAYOUT::CblasRowMajor,
                    ta,
                    tb,
                    mi,
                    ni,
                    ki,
                    scale.to_f64() as $t,
                    a.ptr as *const $t,
                    lda,
                    b.ptr as *const $t,
                    ldb,
                    if accumulate { 1.0 } else { 0.0 },
                    c.ptr as *mut $t,
                    ldc,
                )
            }
        };
    }
    match T::DTYPE {
        DType::F32 => gemm!(cblas_sgemm, f32),
        DType::F64 => gemm!(cblas_dgemm, f64),
        _ => return false,
    }
    true
}
