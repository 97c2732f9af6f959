//! Matrix products with a unit dimension: a row vector times a matrix, a matrix times a
//! column vector, and the outer product of a column and a row.
//!
//! gemm 0.19 runs these through its general blocked path, which packs its operands for
//! register tiles that a unit dimension leaves mostly empty. A per-sample training step is
//! made of them (`x W` with one row, `δ Wᵀ` in its backward pass, `xᵀ δ` for the weight
//! gradient), so they run as vector loops here, written once per element type and compiled
//! for each vector path by [`with_simd`]. Measured on a 2-core Xeon (AVX-512), this module
//! and gemm alternately in one process, µs per product (f32; the rows of `cargo bench -p
//! ferrograd-array --bench array -- matmul/f32-vector` are these shapes):
//!
//! | product | gemm | here |
//! |---|---|---|
//! | `[1, 100]·[100, 1000]` | 14.3 | 10.4 |
//! | `[1, 1000]·[1000, 10]` | 10.1 | 5.7 |
//! | `[1, 10]·[1000, 10]ᵀ` | 21.1 | 9.2 |
//! | `[1000, 1]·[1, 10]` | 8.5 | 2.8 |
//! | `[100, 1]·[1, 1000]` | 19.8 | 15.6 |
//! | `[1, 4096]·[4096, 4096]` | 7595 | 5007 |
//!
//! Since then a row times rows shorter than 16 keeps its output in one vector window
//! ([`row_times_short_rows`]), and short columns run eight dot products side by side: on a
//! 2-core Zen 4 (AVX-512), the two builds alternated, `[1, 1000]·[1000, 10]` 2.56 → 1.46 µs,
//! `[1, 10]·[1000, 10]ᵀ` 4.51 → 2.12 µs, `[1000, 10]·[10, 1]` 3.66 → 2.18 µs.
//!
//! A row times long columns (`[1, k]·Bᵀ` with B row-major and k ≥ 16: a per-sample linear
//! layer `x Wᵀ` with W stored `[out, in]`, a matrix times a column) took gemm about 10 µs
//! for `[1000, 100]·[100]` on the Zen 4, against 4.9 µs for OpenBLAS's sgemv. Dot products
//! of 16 partial sums per column written as loops over arrays stayed on the stack or lane by
//! lane in LLVM's hands (10-60 µs in five forms), so for f32 they are explicit AVX2 vectors
//! ([`long_columns`]): on the Zen 4, alternated 3 times with gemm, quietest (`cargo bench -p
//! ferrograd-array --bench array -- f32-vector`), `[1, 100]·[1000, 100]ᵀ` 9.4 → 5.2 µs,
//! `[1000, 100]·[100, 1]` 9.4 → 5.3 µs, and `[1, 800]·[200, 800]ᵀ` (the LSTM's per-sample
//! `δ W_hᵀ`) 7.5 → 6.9 µs, where both stream B from L2. f64 and the portable path leave
//! them to gemm: the same kernel on f64 (four AVX2 vectors of partial sums per column, two
//! columns side by side) ran level with gemm there, whose f64 products of this shape
//! already stream B as fast (`matmul/f64-vector` rows, gemm against it: 9.9 against 10.4
//! µs, 18.9 against 19.2, 12.4 against 11.7).
//!
//! Each output element is one sum over the inner dimension in order (`k = 0, 1, …`), with
//! fused multiply-adds where the vector path has them (long columns: in 16 partial sums,
//! see [`long_columns`]), so the result does not depend on the element's position or on
//! the number of threads.

use crate::dtype::Float;
use crate::linalg::Mat;
use crate::math::{with_fma, with_simd};

/// Columns of the output block one row-vector product keeps in L1 while it streams the
/// right operand's rows.
const BLOCK: usize = 2048;

/// Outer products with rows shorter than this write each row as one vector of this many
/// elements (see [`outer`]): a vector loop along rows of a few elements is mostly its tail.
const SHORT_ROW: usize = 16;

/// Short columns [`row_times_short_columns`] runs side by side, one chain of multiply-adds
/// each.
const COLUMNS: usize = 8;

/// Products of a row and short columns smaller than this (n·k) are left to gemm, which is
/// faster there (its call costs less than this module's copy of the row).
const SHORT_PRODUCT: usize = 2048;

/// `C = A B` (`C += A B` when `accumulate`) for an m×k A and a
/// k×n B when one of m, n, k is 1 and the layouts let a vector loop run along contiguous
/// memory; returns `false`, having written nothing, when it leaves the product to gemm.
///
/// # Safety
/// As for `gemm_strided`: every pointer with its strides addresses valid elements for the
/// sizes given, and C overlaps neither A nor B.
pub(crate) unsafe fn product<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: Mat<*mut T>,
    a: Mat<*const T>,
    b: Mat<*const T>,
    accumulate: bool,
) -> bool {
    if k == 1 {
        if c.cs != 1 || b.cs != 1 {
            return false;
        }
        // SAFETY: the caller's operands, as received.
        unsafe { outer(m, n, c, a, b, accumulate) };
        return true;
    }
    if m != 1 && n != 1 {
        return false;
    }
    // a row vector times a matrix: Cᵀ = Bᵀ Aᵀ when C is a column
    let (n, c, a, b) = if m == 1 {
        (n, c, a, b)
    } else {
        (m, c.t(), b.t(), a.t())
    };
    if c.cs != 1 {
        return false;
    }
    // SAFETY: C's n elements are contiguous (checked) and exclusively the caller's.
    let out = unsafe { std::slice::from_raw_parts_mut(c.ptr, n) };
    let mut run = |x: &[T]| {
        if b.cs == 1 && n < SHORT_ROW {
            // SAFETY: B's rows are contiguous runs of n elements, `b.rs` apart.
            unsafe { row_times_short_rows(out, x, b, k, accumulate) };
            true
        } else if b.cs == 1 {
            // SAFETY: B's rows are contiguous runs of n elements.
            unsafe { row_times_rows(out, x, b, accumulate) };
            true
        } else if b.rs == 1 && k < SHORT_ROW && n * k >= SHORT_PRODUCT {
            // SAFETY: B's columns are contiguous runs of k elements.
            unsafe { row_times_short_columns(out, x, b, accumulate) };
            true
        } else if b.rs == 1 && k >= SHORT_ROW {
            // SAFETY: B's columns are contiguous runs of k elements.
            unsafe { row_times_long_columns(out, x, b, accumulate) }
        } else {
            false
        }
    };
    if a.cs == 1 {
        // SAFETY: A's k elements are contiguous.
        run(unsafe { std::slice::from_raw_parts(a.ptr, k) })
    } else {
        T::with_scratch(k, |x| {
            for (i, x) in x.iter_mut().enumerate() {
                // SAFETY: element i < k of the row vector A.
                *x = unsafe { *a.ptr.offset(i as isize * a.cs) };
            }
            run(x)
        })
    }
}

/// `c[j] = Σ_i x[i] B[i, j]` (`c[j] + Σ_i ...` when `accumulate`, added in the same order),
/// B's rows contiguous: the rows streamed through an output block held in L1, four at a
/// time.
///
/// # Safety
/// B has `x.len()` rows of at least `c.len()` contiguous elements, `b.rs` apart.
unsafe fn row_times_rows<T: Float>(c: &mut [T], x: &[T], b: Mat<*const T>, accumulate: bool) {
    with_fma!(FMA => with_simd(
        #[inline(always)]
        // SAFETY: as the caller vouches.
        || unsafe { rows_kernel::<T, FMA>(c, x, b, accumulate) },
    ))
}

/// [`row_times_rows`] for rows shorter than [`SHORT_ROW`] (`[1, 1000]·[1000, 10]`, an
/// output layer's product on one sample): the output held in one window of `SHORT_ROW`
/// lanes, each row of B multiplied into it whole. Rows back to back (`b.rs == n`) are read
/// as a window from their start, whose overhang into the next rows lands in lanes that are
/// never written out; the last rows, whose window would pass B's end, and rows further
/// apart are copied into a zeroed window first. Each lane adds its rows in order, as
/// [`row_times_rows`] does.
///
/// # Safety
/// B has `k` rows of `c.len()` contiguous elements, `b.rs` apart.
unsafe fn row_times_short_rows<T: Float>(
    c: &mut [T],
    x: &[T],
    b: Mat<*const T>,
    k: usize,
    accumulate: bool,
) {
    let n = c.len();
    debug_assert!(n < SHORT_ROW && x.len() == k);
    // rows whose window from their start stays inside B (none unless back to back)
    let windows = if b.rs == n as isize && k * n >= SHORT_ROW {
        (k * n - SHORT_ROW) / n + 1
    } else {
        0
    };
    with_fma!(FMA => with_simd(
        #[inline(always)]
        || {
            let mut acc = [T::zero(); SHORT_ROW];
            if accumulate {
                acc[..n].copy_from_slice(c);
            }
            for (i, &xi) in x.iter().enumerate().take(windows) {
                // SAFETY: row i's window: `i * n + SHORT_ROW <= k * n` elements of B
                // (back to back rows, `windows` above).
                let w = unsafe { &*b.ptr.add(i * n).cast::<[T; SHORT_ROW]>() };
                for (a, &w) in acc.iter_mut().zip(w) {
                    *a = madd::<T, FMA>(xi, w, *a);
                }
            }
            let mut w = [T::zero(); SHORT_ROW];
            for (i, &xi) in x.iter().enumerate().skip(windows) {
                // SAFETY: row i of B, as the caller vouches.
                w[..n].copy_from_slice(unsafe { row(b, i, 0, n) });
                for (a, &w) in acc.iter_mut().zip(&w) {
                    *a = madd::<T, FMA>(xi, w, *a);
                }
            }
            c.copy_from_slice(&acc[..n]);
        },
    ))
}

/// Row `i` of B from column `j0`, `len` long.
///
/// # Safety
/// Those elements lie inside B.
#[inline(always)]
unsafe fn row<'a, T>(b: Mat<*const T>, i: usize, j0: usize, len: usize) -> &'a [T] {
    // SAFETY: as the caller vouches.
    unsafe { std::slice::from_raw_parts(b.ptr.offset(i as isize * b.rs + j0 as isize), len) }
}

/// [`row_times_rows`] on one vector path.
///
/// # Safety
/// As for [`row_times_rows`].
#[inline(always)]
unsafe fn rows_kernel<T: Float, const FMA: bool>(
    c: &mut [T],
    x: &[T],
    b: Mat<*const T>,
    accumulate: bool,
) {
    for (blk, c) in c.chunks_mut(BLOCK).enumerate() {
        let (j0, len) = (blk * BLOCK, c.len());
        if !accumulate {
            c.fill(T::zero());
        }
        let mut i = 0;
        while i + 4 <= x.len() {
            // SAFETY: rows i..i + 4 of B, columns j0..j0 + len, as the caller vouches.
            let (r0, r1, r2, r3) = unsafe {
                (
                    row(b, i, j0, len),
                    row(b, i + 1, j0, len),
                    row(b, i + 2, j0, len),
                    row(b, i + 3, j0, len),
                )
            };
            let (x0, x1, x2, x3) = (x[i], x[i + 1], x[i + 2], x[i + 3]);
            for j in 0..len {
                let s = madd::<T, FMA>(x0, r0[j], c[j]);
                let s = madd::<T, FMA>(x1, r1[j], s);
                let s = madd::<T, FMA>(x2, r2[j], s);
                c[j] = madd::<T, FMA>(x3, r3[j], s);
            }
            i += 4;
        }
        for (i, &xi) in x.iter().enumerate().skip(i) {
            // SAFETY: row i of B, as above.
            let r = unsafe { row(b, i, j0, len) };
            for (c, &r) in c.iter_mut().zip(r) {
                *c = madd::<T, FMA>(xi, r, *c);
            }
        }
    }
}

/// `c[j] = x · B[:, j]` (`c[j] + x · B[:, j]` when `accumulate`), B's columns contiguous
/// and short: one dot product per column, in order, the columns' chains overlapping in the
/// out-of-order core. (Over long columns gemm is as fast, and faster at 4096² where it
/// blocks for the cache.)
///
/// # Safety
/// B has `c.len()` columns of at least `x.len()` contiguous elements, `b.cs` apart.
unsafe fn row_times_short_columns<T: Float>(
    c: &mut [T],
    x: &[T],
    b: Mat<*const T>,
    accumulate: bool,
) {
    with_fma!(FMA => with_simd(
        #[inline(always)]
        || {
            // SAFETY: column j of B, as the caller vouches.
            let col = |j: usize| unsafe { b.ptr.offset(j as isize * b.cs) };
            // eight columns at a time: eight independent chains of multiply-adds
            let done = c.len() - c.len() % COLUMNS;
            for (blk, c) in c.chunks_exact_mut(COLUMNS).enumerate() {
                let cols: [*const T; COLUMNS] = std::array::from_fn(|l| col(blk * COLUMNS + l));
                let mut s: [T; COLUMNS] = match accumulate {
                    true => std::array::from_fn(|l| c[l]),
                    false => [T::zero(); COLUMNS],
                };
                for (i, &xi) in x.iter().enumerate() {
                    // SAFETY: element i < k of each column, as the caller vouches.
                    for (s, &col) in s.iter_mut().zip(&cols) {
                        // (a volatile read stays a scalar load: the vectoriser otherwise
                        // gathers the eight columns' elements, 3x slower than this on a
                        // Zen 4)
                        *s = madd::<T, FMA>(xi, unsafe { col.add(i).read_volatile() }, *s);
                    }
                }
                c.copy_from_slice(&s);
            }
            for (j, c) in c.iter_mut().enumerate().skip(done) {
                // SAFETY: column j of B, as the caller vouches.
                let col = unsafe { std::slice::from_raw_parts(col(j), x.len()) };
                let start = if accumulate { *c } else { T::zero() };
                *c = x.iter().zip(col).fold(start, |s, (&x, &y)| madd::<T, FMA>(x, y, s));
            }
        },
    ))
}

/// `c[j] = x · B[:, j]` (`c[j] + x · B[:, j]` when `accumulate`: the product, then the
/// add), B's columns contiguous and at least [`SHORT_ROW`] long, for f32 on the AVX2 and
/// AVX-512 paths (see [`long_columns`]); `false`, having written nothing, for the others,
/// which gemm runs.
///
/// # Safety
/// B has `c.len()` columns of `x.len()` contiguous elements, `b.cs` apart.
unsafe fn row_times_long_columns<T: Float>(
    c: &mut [T],
    x: &[T],
    b: Mat<*const T>,
    accumulate: bool,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if T::DTYPE == crate::DType::F32 && crate::math::simd_level() != crate::SimdLevel::Portable {
        // SAFETY: T is f32 (its dtype), so these are the caller's slices as f32
        let (c, x) = unsafe {
            (
                std::slice::from_raw_parts_mut(c.as_mut_ptr().cast::<f32>(), c.len()),
                std::slice::from_raw_parts(x.as_ptr().cast::<f32>(), x.len()),
            )
        };
        // SAFETY: AVX2 and FMA were detected (AVX-512's level has them); B as the caller
        // vouches
        unsafe { long_columns::avx2(c, x, b.ptr.cast::<f32>(), b.cs, accumulate) };
        return true;
    }
    let _ = (c, x, b, accumulate);
    false
}

/// `C[i, j] = a[i] b[j]` (`+=` when `accumulate`: the product rounded, then added), C's and
/// B's rows contiguous.
///
/// # Safety
/// A has m rows (`a.rs` apart), B one row of n contiguous elements, C m rows of n contiguous
/// elements `c.rs` apart.
unsafe fn outer<T: Float>(
    m: usize,
    n: usize,
    c: Mat<*mut T>,
    a: Mat<*const T>,
    b: Mat<*const T>,
    accumulate: bool,
) {
    // SAFETY: B's row, as the caller vouches.
    let b = unsafe { std::slice::from_raw_parts(b.ptr, n) };
    if n < SHORT_ROW && !accumulate && c.rs == n as isize && m * n >= SHORT_ROW {
        // Short rows, back to back: each row is written as one window of SHORT_ROW elements
        // from its start, the overhang (into the next rows) overwritten by those rows in
        // turn; the last rows, whose window would pass the end, one element at a time.
        // SAFETY: C is m contiguous rows of n (checked), the caller's alone.
        let flat = unsafe { std::slice::from_raw_parts_mut(c.ptr, m * n) };
        let mut pattern = [T::zero(); SHORT_ROW];
        pattern[..n].copy_from_slice(b);
        let windows = (m * n - SHORT_ROW) / n + 1;
        with_simd(
            #[inline(always)]
            || {
                for i in 0..windows {
                    // SAFETY: row i of A.
                    let s = unsafe { *a.ptr.offset(i as isize * a.rs) };
                    let w: &mut [T; SHORT_ROW] = (&mut flat[i * n..i * n + SHORT_ROW])
                        .try_into()
                        .expect("a window of SHORT_ROW");
                    *w = std::array::from_fn(|j| s * pattern[j]);
                }
            },
        );
        for i in windows..m {
            // SAFETY: row i of A.
            let s = unsafe { *a.ptr.offset(i as isize * a.rs) };
            for (w, &p) in flat[i * n..(i + 1) * n].iter_mut().zip(b) {
                *w = s * p;
            }
        }
        return;
    }
    with_simd(
        #[inline(always)]
        || {
            for i in 0..m {
                // SAFETY: row i of A and of C, as the caller vouches; C's rows are disjoint.
                let (s, c) = unsafe {
                    (
                        *a.ptr.offset(i as isize * a.rs),
                        std::slice::from_raw_parts_mut(c.ptr.offset(i as isize * c.rs), n),
                    )
                };
                if accumulate {
                    for (c, &b) in c.iter_mut().zip(b) {
                        *c += s * b;
                    }
                } else {
                    for (c, &b) in c.iter_mut().zip(b) {
                        *c = s * b;
                    }
                }
            }
        },
    )
}

/// `a·b + c`, rounded once when `FMA`.
#[inline(always)]
fn madd<T: Float, const FMA: bool>(a: T, b: T, c: T) -> T {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Dot products of a row with long contiguous columns on explicit vectors (f32): the
/// vectoriser, given the same loops over arrays of 16 partial sums, kept them on the stack
/// or lane by lane and ran slower than gemm (five forms tried); here they are vector
/// registers. Four columns run side by side, each in 16 partial sums (two AVX2 vectors):
/// lane `l` adds the elements `l, l + 16, …` in order with fused multiply-adds, the
/// elements after the last whole window go to lanes `0, 1, …`, and the lanes are added in
/// halves (8 + 8, 4 + 4, 2 + 2, 1 + 1). So a column's result does not depend on the columns
/// beside it. The AVX-512 path runs the same AVX2 code (the same bits): the AVX-512
/// intrinsics need Rust 1.89, past the workspace's `rust-version`, and on the Zen 4, which
/// runs a 512-bit vector as two 256-bit halves, a 512-bit form was no faster.
#[cfg(target_arch = "x86_64")]
mod long_columns {
    use std::arch::x86_64::*;

    /// Columns run side by side.
    const GROUP: usize = 4;
    /// Partial sums per column.
    const LANES: usize = 16;

    /// Sixteen partial sums as two halves (`lo` lanes 0-7, `hi` 8-15) added in halves.
    ///
    /// # Safety
    /// AVX is available.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn add_halves(lo: __m256, hi: __m256) -> f32 {
        let v8 = _mm256_add_ps(lo, hi);
        let v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
        let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
        _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)))
    }

    /// The columns of `c`'s group starting at `j`: `GROUP` pointers, the last repeated
    /// when fewer are left (their sums computed and not written).
    fn group(b: *const f32, cs: isize, j: usize, n: usize) -> [*const f32; GROUP] {
        std::array::from_fn(|g| b.wrapping_offset((j + g.min(n - 1)) as isize * cs))
    }

    /// `c[j] (+)= x · B[:, j]` on AVX2 with FMA.
    ///
    /// # Safety
    /// AVX2 and FMA are available; B has `c.len()` columns of `x.len()` contiguous elements,
    /// `cs` apart.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(c: &mut [f32], x: &[f32], b: *const f32, cs: isize, acc: bool) {
        let whole = x.len() - x.len() % LANES;
        for j in (0..c.len()).step_by(GROUP) {
            let n = (c.len() - j).min(GROUP);
            let cols = group(b, cs, j, n);
            let mut sums = [[_mm256_setzero_ps(); 2]; GROUP];
            for i in (0..whole).step_by(LANES) {
                // SAFETY: elements i..i + 16 <= x.len() of x and of each column
                unsafe {
                    let x0 = _mm256_loadu_ps(x.as_ptr().add(i));
                    let x1 = _mm256_loadu_ps(x.as_ptr().add(i + 8));
                    for (s, &col) in sums.iter_mut().zip(&cols) {
                        s[0] = _mm256_fmadd_ps(x0, _mm256_loadu_ps(col.add(i)), s[0]);
                        s[1] = _mm256_fmadd_ps(x1, _mm256_loadu_ps(col.add(i + 8)), s[1]);
                    }
                }
            }
            // The elements after the last whole window, into the first lanes. The other lanes
            // load zeros and add 0·0 = +0 to their sum, which leaves it as it is: a sum that
            // starts at +0 and adds products is never -0 (x + -x rounds to +0).
            let left = (x.len() - whole) as i32;
            let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mlo = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);
            let mhi = _mm256_cmpgt_epi32(_mm256_set1_epi32(left - 8), lane);
            for g in 0..n {
                // SAFETY: the tail's elements of x and of the column (masked loads read
                // nothing past them)
                let d = unsafe {
                    let at = |p: *const f32, m| _mm256_maskload_ps(p.add(whole), m);
                    let half = |s: __m256, p: *const f32, q: *const f32, m: __m256i| {
                        _mm256_fmadd_ps(at(p, m), at(q, m), s)
                    };
                    let (xp, cp) = (x.as_ptr(), cols[g]);
                    let lo = half(sums[g][0], xp, cp, mlo);
                    let hi = half(sums[g][1], xp.add(8), cp.add(8), mhi);
                    add_halves(lo, hi)
                };
                c[j + g] = if acc { c[j + g] + d } else { d };
            }
        }
    }
}
