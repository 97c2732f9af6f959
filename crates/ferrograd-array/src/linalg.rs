//! Matrix products on the `gemm` crate: `matmul` (with batch broadcasting), `mm`, `mv`,
//! `dot`, `outer`, `bmm`.
//!
//! `gemm` takes any row and column strides, so transposed views multiply without a copy.
//! Its kernels are column-major at heart, so a row-major `C = A B` is handed over as the
//! column-major product `Cᵀ = Bᵀ Aᵀ` over the same memory (gemm 0.19 measured the same either
//! way). What does matter is the operands' layouts against the shape: a short row-major A
//! times a column-major B (`x Wᵀ`) runs up to 2x faster as the transposed product through
//! a scratch block, a rayon split pays off only above about 8·10⁶ m·n·k, a product from
//! 10⁶ runs as two halves on two cores with a partner thread kept awake between products
//! ([`crate::partner`]), and a large product runs fastest cut into strips shared out over the
//! threads. These choices live in [`gemm_strided`], [`halves`] and [`gemm_col_major`] alone;
//! the suite bench, the `matmul/f32-halves` rows of the array bench and
//! `benches/compare-numpy-rounds.sh` show their effect.

use gemm_common::Parallelism;
use rayon::prelude::*;
use smallvec::SmallVec;

use crate::dtype::{dispatch_float, Float};
use crate::error::fail;
use crate::layout::{broadcast_shapes, broadcast_strides, fmt_shape, for_each_offsets, Shape};
use crate::Array;

/// A matrix operand: base pointer, row stride, column stride (in elements).
#[derive(Clone, Copy)]
pub(crate) struct Mat<P> {
    pub ptr: P,
    pub rs: isize,
    pub cs: isize,
}

impl<P> Mat<P> {
    /// The transpose: the same elements with the strides swapped.
    pub(crate) fn t(self) -> Mat<P> {
        Mat {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

/// Raw pointers made shareable across the threads of one batched product; each thread
/// writes a disjoint output matrix.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used to hand disjoint output regions (and read-only inputs) to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

/// Products at least this large (m·n·k) let `gemm` use every core. Measured with
/// `gemm` 0.19 on 2 cores: below about 8·10⁶ (200³; the training shapes 32x100x1000 and
/// 100x32x1000 are 3.2·10⁶) its rayon split costs more than it saves, by up to 1.5x, and
/// more again inside a training step where the other core's cache is cold; above it it
/// saves 1.3-1.9x. Smaller products from [`PAIR_FLOPS`] go to [`halves`] instead, whose
/// partner is already awake; so do larger ones on a 2-thread pool, where two halves beat
/// gemm's split (64x500x300: 201 → 111 µs, 128x512x512: 412 → 321 µs, 512x1000x1000: 6.4 →
/// 5.1 ms, same run).
const PARALLEL_FLOPS: usize = 8 << 20;

/// `C = A B` (or `C += A B` when `accumulate`), A m×k, B k×n, all strided.
///
/// # Safety
/// Every pointer with its strides must address valid elements for the given sizes, and C
/// must not overlap A or B.
#[allow(clippy::too_many_arguments)] // m, n, k and three strided operands: gemm's own shape
pub(crate) unsafe fn gemm_strided<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: Mat<*mut T>,
    a: Mat<*const T>,
    b: Mat<*const T>,
    accumulate: bool,
    parallel: bool,
) {
    // SAFETY: the caller's operands, as received.
    unsafe { gemm_scaled(m, n, k, c, a, b, accumulate, T::one(), parallel) }
}

/// `C = s·A B` (or `C += s·A B` when `accumulate`), A m×k, B k×n, all strided: the scale
/// is applied by the matrix kernel to each element's finished sum (gemm's `beta`, BLAS's
/// `alpha`), so a scaled product costs no pass of its own.
///
/// # Safety
/// As for [`gemm_strided`].
#[allow(clippy::too_many_arguments)] // m, n, k and three strided operands: gemm's own shape
pub(crate) unsafe fn gemm_scaled<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: Mat<*mut T>,
    a: Mat<*const T>,
    b: Mat<*const T>,
    accumulate: bool,
    scale: T,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    // (the thin kernels take no scale)
    // SAFETY: the caller's operands, as received.
    if scale == T::one() && unsafe { crate::thin::product(m, n, k, c, a, b, accumulate) } {
        return;
    }
    // SAFETY: the caller's operands, as received.
    #[cfg(feature = "openblas")]
    if parallel && unsafe { crate::blas::product(m, n, k, c, a, b, accumulate, scale) } {
        return;
    }
    if a.cs == 1 && b.rs == 1 && b.cs != 1 && m > 1 && m < n && k >= 64 {
        // A row-major times a column-major B (`x Wᵀ` with W stored [out, in], or `G Wᵀ` in a
        // backward pass) with a short A. gemm 0.19 runs the transposed problem Cᵀ = Bᵀ Aᵀ,
        // whose left operand is then the long one, 1.3-2.2x faster on the training shapes
        // (32x100·100x1000: 43 -> 27 µs; 32x800·800x300: 108 -> 69 µs), so compute that into
        // a scratch block and transpose it into C. With a short inner dim (k < 64) the
        // transpose costs more than it saves (100x32·32x1000: 31 -> 48 µs).
        let mut scratch = crate::storage::Buffer::for_overwrite(T::DTYPE, m * n);
        let t = T::slice_mut(&mut scratch).expect("scratch of T");
        let (tp, cp) = (SendPtr(t.as_mut_ptr()), SendPtr(c.ptr));
        // Rows `first..first + rows` of the n×m scratch (columns of C) into C.
        let put = |first: usize, rows: usize| {
            let (tp, cp) = (tp, cp);
            for i in 0..m {
                for j in first..first + rows {
                    // SAFETY: (j, i) is inside the n×m scratch and (i, j) inside C, which
                    // the caller owns exclusively; each call puts its own columns of C.
                    unsafe {
                        let v = *tp.0.add(j * m + i);
                        let d = cp.0.offset(i as isize * c.rs + j as isize * c.cs);
                        *d = if accumulate { *d + v } else { v };
                    }
                }
            }
        };
        // (through the one pointer `put` reads the scratch by)
        let tmat = Mat {
            ptr: tp.0,
            rs: m as isize,
            cs: 1,
        };
        // (a BLAS build keeps the library's product)
        if parallel && !cfg!(feature = "openblas") && in_halves(n, m, k) {
            // Each core puts the columns of C it computed, reading its half of the scratch
            // where it wrote it (one core transposing all of it read half from the other
            // core's cache: 4.4 µs a call of the lstm batched row's 32x800·800x200).
            // SAFETY: Bᵀ and Aᵀ are the caller's operands read through swapped strides,
            // which address the same valid elements; the scratch is exclusive.
            unsafe { halves(n, m, k, tmat, b.t(), a.t(), false, scale, true, &put) };
        } else {
            // SAFETY: `t` is an exclusive n×m buffer; Bᵀ and Aᵀ are the caller's operands
            // read through swapped strides, which address the same valid elements.
            unsafe { gemm_scaled(n, m, k, tmat, b.t(), a.t(), false, scale, parallel) };
            if c.cs == 1 && c.rs == n as isize && !accumulate {
                // SAFETY: C is a contiguous m×n block the caller owns exclusively.
                let dst = unsafe { std::slice::from_raw_parts_mut(c.ptr, m * n) };
                transpose::transpose(t, dst, m, n);
            } else {
                put(0, n);
            }
        }
        return;
    }
    if parallel && in_halves(m, n, k) {
        // SAFETY: the caller's operands, as received.
        unsafe { halves(m, n, k, c, a, b, accumulate, scale, m >= n, &|_, _| {}) };
        return;
    }
    let par = if parallel && crate::par::split(m * n * k, PARALLEL_FLOPS) {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    let (alpha, beta) = (if accumulate { T::one() } else { T::zero() }, scale);
    if c.cs == 1 || n == 1 {
        // Row-major output: compute the column-major Cᵀ = Bᵀ Aᵀ.
        gemm_col_major(n, m, k, c.t(), accumulate, b.t(), a.t(), (alpha, beta), par)
    } else {
        gemm_col_major(m, n, k, c, accumulate, a, b, (alpha, beta), par)
    }
}

/// Whether a product is run as two halves, one on each of two cores (see [`halves`]): from
/// [`PAIR_FLOPS`] (m·n·k) with a dimension of the output at least 128 long, below the large
/// products that [`gemm_col_major`] cuts into strips; past [`PARALLEL_FLOPS`] only on a
/// 2-thread pool (with more threads gemm's own split uses them all).
fn in_halves(m: usize, n: usize, k: usize) -> bool {
    let work = m * n * k;
    let threads = rayon::current_num_threads();
    threads > 1
        && work >= PAIR_FLOPS
        && m.max(n) >= 128
        && !(m >= 1024 && n >= 1024 && k >= 1024)
        && (work < PARALLEL_FLOPS || threads == 2)
}

/// Products at least this large (m·n·k) are worth [`halves`] on two cores: on the 2-core
/// Xeon (f32, the calling thread alone → halves, µs, quietest of 3 alternated runs),
/// 32x128x256 26.0 → 19.2, 32x200x800 119 → 62, 32x800x200 120 → 84, 100x32x1000 58 → 46,
/// where a rayon split's wake-ups cost more than it saved.
const PAIR_FLOPS: usize = 1 << 20;

/// Rows of C each half of a product gets at least when [`halves`] splits C's rows.
const HALF_ROWS: usize = 16;

/// `C = A B` (or `+=`) as two products of half of C's rows each (`by_rows`) or half of its
/// columns, one handed to the partner core ([`crate::partner::pair`]), each through
/// single-threaded gemm. Each
/// element is the same sum in the same order as in one call (gemm's depth blocking depends
/// on k alone), so the result does not depend on the split (the test
/// `products_split_in_halves_equal_the_one_thread_product_bit_for_bit` holds it to that).
/// `then(first, rows)` runs after each half's product, on the core that computed those rows
/// (of C, or of Cᵀ when the columns are split), to read them where they were written.
///
/// # Safety
/// As for [`gemm_strided`].
#[allow(clippy::too_many_arguments)] // gemm's own shape: three strided operands
unsafe fn halves<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    c: Mat<*mut T>,
    a: Mat<*const T>,
    b: Mat<*const T>,
    accumulate: bool,
    scale: T,
    by_rows: bool,
    then: &(dyn Fn(usize, usize) + Sync),
) {
    // split C's rows, or its columns as the rows of Cᵀ = Bᵀ Aᵀ
    let (m, n, c, a, b) = if by_rows {
        (m, n, c, a, b)
    } else {
        (n, m, c.t(), b.t(), a.t())
    };
    // at the multiple of the kernel's 16 rows nearest the middle (200 rows: 96 and 104,
    // not 112 and 88)
    let top = (m + HALF_ROWS) / (2 * HALF_ROWS) * HALF_ROWS;
    let (cp, ap, bp) = (
        SendPtr(c.ptr),
        SendPtr(a.ptr as *mut T),
        SendPtr(b.ptr as *mut T),
    );
    let rows = |first: usize, rows: usize| {
        let (cp, ap, bp) = (cp, ap, bp);
        // SAFETY: rows first..first + rows of C and A lie inside the caller's operands (the
        // caller vouches for all m rows); the two calls write disjoint rows of C.
        unsafe {
            gemm_scaled(
                rows,
                n,
                k,
                Mat {
                    ptr: cp.0.offset(first as isize * c.rs),
                    ..c
                },
                Mat {
                    ptr: (ap.0 as *const T).offset(first as isize * a.rs),
                    ..a
                },
                Mat {
                    ptr: bp.0 as *const T,
                    ..b
                },
                accumulate,
                scale,
                false,
            )
        }
        then(first, rows);
    };
    crate::partner::pair(&mut || rows(top, m - top), &mut || rows(0, top));
}

/// The deepest product [`Array::matmul_acc_into`] adds inside the matrix kernel. gemm 0.19's
/// blocked kernel sums a whole depth block in registers before it reads its output, so up
/// to one block the accumulated result is rounded exactly as `out + a @ b`, and its depth-1
/// path multiplies, then adds. Deeper products (gemm's blocks are hundreds deep on every x86
/// it tunes for), depth 2 (its `gevv` path adds each product into the output in turn) and
/// matrix-vector products (which add as they go) are computed apart and added; the test
/// `accumulating_products_equal_adding_the_product_bit_for_bit` holds gemm to this.
const ACC_MAX_DEPTH: usize = 128;

/// Rows of D per strip, at most, when a large threaded product is cut into strips.
const STRIP_ROWS: usize = 512;

/// gemm's kernel for `T` on `D = alpha D + beta L R` (L m×k, R k×n, in gemm's column-major terms).
///
/// A large threaded product (m, n, k ≥ 1024) is cut into strips of at most [`STRIP_ROWS`]
/// rows of D, as many per thread, and each thread runs its strips through single-threaded
/// gemm. gemm 0.19 packs an L of at most 2·mc rows once per depth block, where one call over a
/// long m packs it per row block; and one serial call per strip has none of the per-depth-block
/// handovers between threads of a threaded call. Each strip repacks R, which the cache-sized
/// strips absorb. Measured on 2 cores (AVX-512, f32), calls of each kind interleaved in one
/// process, median ms one call → strips: 2048³ 39.1 → 37.1, 2048x2048x4096 79.4 → 75.2 (m, k,
/// n as here), 1024³ 4.60 → 4.48, 2048x1024x1100 10.4 → 10.4 (ragged strips balanced over the
/// threads). That brought 2048³ level with NumPy's OpenBLAS (`benches/compare-numpy-rounds.sh`).
///
/// # Safety
/// As for [`gemm_strided`], with the operands in gemm's column-major orientation.
#[allow(clippy::too_many_arguments)] // gemm's own shape: three strided operands
unsafe fn gemm_col_major<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    d: Mat<*mut T>,
    read_dst: bool,
    l: Mat<*const T>,
    r: Mat<*const T>,
    (alpha, beta): (T, T),
    par: Parallelism,
) {
    if !(matches!(par, Parallelism::Rayon(_)) && m >= 1024 && n >= 1024 && k >= 1024) {
        // SAFETY: the caller's operands, as received.
        unsafe {
            T::gemm_fn()(
                m, n, k, d.ptr, d.cs, d.rs, read_dst, l.ptr, l.cs, l.rs, r.ptr, r.cs, r.rs, alpha,
                beta, false, false, false, par,
            )
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let strips = threads * m.div_ceil(threads * STRIP_ROWS);
    let rows = m.div_ceil(strips).next_multiple_of(16);
    let (dp, lp, rp) = (
        SendPtr(d.ptr),
        SendPtr(l.ptr as *mut T),
        SendPtr(r.ptr as *mut T),
    );
    (0..m.div_ceil(rows))
        .into_par_iter()
        .with_max_len(1)
        .for_each(|s| {
            let (dp, lp, rp) = (dp, lp, rp);
            let i = (s * rows) as isize;
            // SAFETY: rows i..i + rows of D and L lie inside the caller's operands (the caller
            // vouches for all m rows); distinct strips write disjoint rows of D.
            unsafe {
                gemm_col_major(
                    rows.min(m - s * rows),
                    n,
                    k,
                    Mat {
                        ptr: dp.0.offset(i * d.rs),
                        ..d
                    },
                    read_dst,
                    Mat {
                        ptr: (lp.0 as *const T).offset(i * l.rs),
                        ..l
                    },
                    Mat {
                        ptr: rp.0 as *const T,
                        ..r
                    },
                    (alpha, beta),
                    Parallelism::None,
                )
            }
        });
}

/// The operands as matrices gemm takes: a 1-d left operand as a row, a 1-d right one as a
/// column (see [`gemm_ready`]).
fn gemm_operands(a: &Array, b: &Array) -> (Array, Array) {
    let (a, b) = as_matrices(a, b);
    (gemm_ready(&a), gemm_ready(&b))
}

/// A 1-d left operand of a product as a row, a 1-d right one as a column (views); every
/// device's product starts from these.
pub(crate) fn as_matrices(a: &Array, b: &Array) -> (Array, Array) {
    let a = if a.ndim() == 1 {
        a.unsqueeze(0usize)
    } else {
        a.clone()
    };
    let b = if b.ndim() == 1 {
        b.unsqueeze(1usize)
    } else {
        b.clone()
    };
    (a, b)
}

/// An operand whose matrix dims have no unit stride (say, a broadcast inside the matrix) is
/// copied so `gemm` always sees a plain row- or column-major matrix.
fn gemm_ready(a: &Array) -> Array {
    let nd = a.ndim();
    let (r, c) = (a.strides()[nd - 2], a.strides()[nd - 1]);
    let (nr, nc) = (a.shape()[nd - 2], a.shape()[nd - 1]);
    if (c == 1 || nc <= 1) || (r == 1 || nr <= 1) {
        a.clone()
    } else {
        a.contiguous()
    }
}

impl Array {
    /// Matrix product with PyTorch's rules: 1-d·1-d is a dot product, 2-d·2-d a matrix
    /// product, a 1-d operand is a row (left) or column (right) vector that is dropped from
    /// the result, and leading dims broadcast as batch dims.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// let b = Array::from_vec(vec![1.0f32, 1.0], &[2]);
    /// assert_eq!(a.matmul(&b).to_vec::<f32>(), vec![3.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn matmul(&self, other: &Array) -> Array {
        let shape = matmul_shape(self, other, "matmul");
        let device = crate::error::same_device("matmul", &[self, other]);
        let mut out = Array::empty_on(&shape, self.dtype(), device);
        self.matmul_into(other, &mut out);
        out
    }

    /// [`matmul`](Array::matmul) into `out`.
    #[track_caller]
    pub fn matmul_into(&self, other: &Array, out: &mut Array) {
        let shape = matmul_shape(self, other, "matmul");
        crate::error::same_dtype("matmul", self.dtype(), other.dtype());
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !other.device().is_cpu() {
            return crate::cuda::linalg::matmul(self, other, &shape, out, "matmul");
        }
        let (a, b) = gemm_operands(self, other);
        dispatch_float!(self.dtype(), "matmul", T => batched::<T>(&a, &b, &shape, out, false, 1.0))
    }

    /// `out + self @ other`, computed into `out` (which must have the product's shape and
    /// dtype). For matrix products up to 128 deep (a recurrent network's weight gradients,
    /// one time step at a time) the matrix kernel adds the product into `out` as it
    /// finishes each block, with no temporary and no second pass; other products (and any
    /// on a device) are computed apart and added. Either way each element is
    /// rounded as in `out.add(&self.matmul(other))`: the same result bit for bit. `out` is
    /// copied first when it is a view or shared.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0], &[2, 1]);
    /// let b = Array::from_vec(vec![3.0f64, 4.0], &[1, 2]);
    /// let mut acc = Array::from_vec(vec![0.5f64; 4], &[2, 2]);
    /// a.matmul_acc_into(&b, &mut acc);
    /// assert_eq!(acc.to_vec::<f64>(), vec![3.5, 4.5, 6.5, 8.5]);
    /// ```
    #[track_caller]
    pub fn matmul_acc_into(&self, other: &Array, out: &mut Array) {
        let shape = accumulated_shape(self, other, out, "matmul_acc_into");
        let (m, n) = (
            if self.ndim() >= 2 {
                self.shape()[self.ndim() - 2]
            } else {
                1
            },
            if other.ndim() >= 2 {
                other.shape()[other.ndim() - 1]
            } else {
                1
            },
        );
        let k = self.shape()[self.ndim() - 1];
        if k == 2 || k > ACC_MAX_DEPTH || m < 2 || n < 2 {
            // gemm's paths that add into the output as they go: sums rounded differently
            let product = self.matmul(other);
            let sum = out.add(&product);
            *out = sum;
            return;
        }
        self.add_product_into(other, 1.0, out, &shape)
    }

    /// `out += self @ other` at any size, the matrix kernel adding the product into `out` as
    /// it goes (on a device: computed apart and added): no temporary and no second pass,
    /// but not rounded as `out + self @ other` (the kernel adds each depth block's partial
    /// sums into `out` in turn, a reordered sum within n · ε · Σ|aᵢ bᵢ| of it).
    /// [`matmul_acc_into`](Array::matmul_acc_into) is the exact one. `out` is copied first
    /// when it is a view or shared.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0], &[1, 2]);
    /// let b = Array::from_vec(vec![3.0f64, 4.0], &[2, 1]);
    /// let mut acc = Array::from_vec(vec![0.5f64], &[1, 1]);
    /// a.matmul_add_into(&b, &mut acc);
    /// assert_eq!(acc.to_vec::<f64>(), vec![11.5]);
    /// ```
    #[track_caller]
    pub fn matmul_add_into(&self, other: &Array, out: &mut Array) {
        let shape = accumulated_shape(self, other, out, "matmul_add_into");
        self.add_product_into(other, 1.0, out, &shape)
    }

    /// `out += scale · (self @ other)`, the scale applied by the matrix kernel to each
    /// element's finished sum (no pass of its own), and the result added into `out` as in
    /// [`matmul_add_into`](Array::matmul_add_into): each element within a few units in the
    /// last place of `|out| + |scale| · Σ|aᵢ bᵢ|` of the exact value. An SGD step's
    /// `w - lr · (xᵀ @ dy)` is `xᵀ.matmul_add_scaled_into(&dy, -lr, &mut w)`, the
    /// gradient never written out. On a device, the product is computed apart, scaled and
    /// added. `out` is copied first when it is a view or shared.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0], &[1, 2]);
    /// let b = Array::from_vec(vec![3.0f64, 4.0], &[2, 1]);
    /// let mut w = Array::from_vec(vec![0.5f64], &[1, 1]);
    /// a.matmul_add_scaled_into(&b, -0.5, &mut w);
    /// assert_eq!(w.to_vec::<f64>(), vec![-5.0]);
    /// ```
    #[track_caller]
    pub fn matmul_add_scaled_into(&self, other: &Array, scale: f64, out: &mut Array) {
        let shape = accumulated_shape(self, other, out, "matmul_add_scaled_into");
        self.add_product_into(other, scale, out, &shape)
    }

    /// `out[first_row..first_row + m] += self @ other` for matrices `self: [m, k]`, `other:
    /// [k, n]` and `out: [rows, n]`, the product added into those rows of `out` inside the
    /// matrix kernel as [`matmul_add_into`](Array::matmul_add_into) adds it (summed in the
    /// kernel's order), the other rows kept. A recurrent network's per-step `h @ W_h` is
    /// added so into its step's rows of the input projections of every step. `out` is made
    /// the only handle on a contiguous buffer first (copied when it is a view or shared).
    /// Host arrays only. Split in halves on two cores, it splits the rows (the batch), as
    /// the elementwise ops that read them split them, so each core reads what it wrote.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0], &[1, 2]);
    /// let b = Array::from_vec(vec![3.0f64, 4.0], &[2, 1]);
    /// let mut out = Array::from_vec(vec![0.5f64, 0.5, 0.5], &[3, 1]);
    /// a.matmul_add_into_rows(&b, &mut out, 1);
    /// assert_eq!(out.to_vec::<f64>(), vec![0.5, 11.5, 0.5]);
    /// ```
    #[track_caller]
    pub fn matmul_add_into_rows(&self, other: &Array, out: &mut Array, first_row: usize) {
        let op = "matmul_add_into_rows";
        let fits = self.ndim() == 2
            && other.ndim() == 2
            && out.ndim() == 2
            && self.shape()[1] == other.shape()[0]
            && out.shape()[1] == other.shape()[1]
            && first_row + self.shape()[0] <= out.shape()[0];
        if !fits {
            fail(
                op,
                format_args!(
                    "adds a product of {} and {} into rows from {first_row} of {}: it needs \
                     two matrices whose product fits there",
                    fmt_shape(self.shape()),
                    fmt_shape(other.shape()),
                    fmt_shape(out.shape())
                ),
            )
        }
        crate::error::same_dtype(op, self.dtype(), other.dtype());
        crate::error::same_dtype(op, self.dtype(), out.dtype());
        if !self.device().is_cpu() || !other.device().is_cpu() || !out.device().is_cpu() {
            fail(op, "takes host arrays only")
        }
        out.make_unique();
        let (a, b) = gemm_operands(self, other);
        let (m, k, n) = (a.shape()[0], a.shape()[1], b.shape()[1]);
        dispatch_float!(self.dtype(), op, T => {
            if m == 0 || n == 0 {
                // nothing to add into (and an empty operand's view may start past its
                // storage's end)
                return;
            }
            if k == 0 {
                // an empty sum is +0 (and `x + 0` turns -0 into +0, as the unfused add would)
                let dst = &mut out.unique_slice_mut::<T>()[first_row * n..(first_row + m) * n];
                dst.iter_mut().for_each(|d| *d += 0.0);
                return;
            }
            let pa = a.storage_slice::<T>(op)[a.offset()..].as_ptr();
            let pb = b.storage_slice::<T>(op)[b.offset()..].as_ptr();
            let dst = &mut out.unique_slice_mut::<T>()[first_row * n..(first_row + m) * n];
            let (c, a, b) = (
                Mat { ptr: dst.as_mut_ptr(), rs: n as isize, cs: 1 },
                Mat { ptr: pa, rs: a.strides()[0], cs: a.strides()[1] },
                Mat { ptr: pb, rs: b.strides()[0], cs: b.strides()[1] },
            );
            // The step's elementwise ops that read these rows run in halves of whole rows
            // (batch rows): split the product so too, and each core reads the rows it wrote
            // (the lstm batched row compiled, 2-core Xeon: 7.8 -> 7.5 ms).
            // SAFETY: A and B address their own elements through their layouts; the
            // destination is the m·n contiguous elements of rows first_row.. of `out`, which
            // `make_unique` made this array's own (so it overlaps neither operand).
            unsafe {
                // (a BLAS build keeps the library's product, as `matmul_add_into` does)
                if !cfg!(feature = "openblas") && m >= 2 * HALF_ROWS && in_halves(m, n, k) {
                    halves(m, n, k, c, a, b, true, 1.0, true, &|_, _| {})
                } else {
                    gemm_strided(m, n, k, c, a, b, true, true)
                }
            }
        })
    }

    /// `out += scale · (self @ other)` in the kernel, the operands checked (`shape`: the
    /// product's). On a device, the product is computed apart, scaled and added.
    #[track_caller]
    fn add_product_into(&self, other: &Array, scale: f64, out: &mut Array, shape: &[usize]) {
        if !self.device().is_cpu() || !other.device().is_cpu() || !out.device().is_cpu() {
            let product = self.matmul(other);
            let product = if scale == 1.0 {
                product
            } else {
                product.mul_scalar(scale)
            };
            *out = out.add(&product);
            return;
        }
        out.make_unique();
        let (a, b) = gemm_operands(self, other);
        dispatch_float!(self.dtype(), "matmul_add_into", T => batched::<T>(&a, &b, shape, out, true, scale))
    }

    /// Product of two matrices.
    #[track_caller]
    pub fn mm(&self, other: &Array) -> Array {
        if self.ndim() != 2 || other.ndim() != 2 {
            fail(
                "mm",
                format_args!(
                    "expects two matrices, got shapes {} and {}",
                    fmt_shape(self.shape()),
                    fmt_shape(other.shape())
                ),
            )
        }
        self.matmul(other)
    }

    /// Matrix times vector.
    #[track_caller]
    pub fn mv(&self, vector: &Array) -> Array {
        if self.ndim() != 2 || vector.ndim() != 1 {
            fail(
                "mv",
                format_args!(
                    "expects a matrix and a vector, got shapes {} and {}",
                    fmt_shape(self.shape()),
                    fmt_shape(vector.shape())
                ),
            )
        }
        self.matmul(vector)
    }

    /// Inner product of two vectors, as a 0-d array.
    #[track_caller]
    pub fn dot(&self, other: &Array) -> Array {
        if self.ndim() != 1 || other.ndim() != 1 || self.numel() != other.numel() {
            fail(
                "dot",
                format_args!(
                    "expects two vectors of one length, got shapes {} and {}",
                    fmt_shape(self.shape()),
                    fmt_shape(other.shape())
                ),
            )
        }
        self.mul(other).sum()
    }

    /// Outer product of two vectors: `out[i, j] = a[i] * b[j]`.
    #[track_caller]
    pub fn outer(&self, other: &Array) -> Array {
        if self.ndim() != 1 || other.ndim() != 1 {
            fail(
                "outer",
                format_args!(
                    "expects two vectors, got shapes {} and {}",
                    fmt_shape(self.shape()),
                    fmt_shape(other.shape())
                ),
            )
        }
        self.unsqueeze(1usize).mul(&other.unsqueeze(0usize))
    }

    /// Batched matrix product of two 3-d arrays with equal batch sizes.
    #[track_caller]
    pub fn bmm(&self, other: &Array) -> Array {
        if self.ndim() != 3 || other.ndim() != 3 || self.shape()[0] != other.shape()[0] {
            fail(
                "bmm",
                format_args!(
                    "expects two 3-d arrays with one batch size, got shapes {} and {}",
                    fmt_shape(self.shape()),
                    fmt_shape(other.shape())
                ),
            )
        }
        self.matmul(other)
    }
}

#[track_caller]
fn matmul_shape(a: &Array, b: &Array, op: &str) -> Shape {
    if a.ndim() == 0 || b.ndim() == 0 {
        fail(
            op,
            format_args!(
                "both operands need at least 1 dim, got shapes {} and {}",
                fmt_shape(a.shape()),
                fmt_shape(b.shape())
            ),
        )
    }
    let ka = a.shape()[a.ndim() - 1];
    let kb = if b.ndim() == 1 {
        b.shape()[0]
    } else {
        b.shape()[b.ndim() - 2]
    };
    if ka != kb {
        fail(
            op,
            format_args!(
                "shapes {} and {} cannot be multiplied (inner dims {ka} and {kb} differ)",
                fmt_shape(a.shape()),
                fmt_shape(b.shape())
            ),
        )
    }
    let batch_a = &a.shape()[..a.ndim().saturating_sub(2)];
    let batch_b = &b.shape()[..b.ndim().saturating_sub(2)];
    let Some(mut shape) = broadcast_shapes(batch_a, batch_b) else {
        fail(
            op,
            format_args!(
                "shapes {} and {} cannot be multiplied (batch dims {} and {} do not broadcast)",
                fmt_shape(a.shape()),
                fmt_shape(b.shape()),
                fmt_shape(batch_a),
                fmt_shape(batch_b)
            ),
        )
    };
    if a.ndim() >= 2 {
        shape.push(a.shape()[a.ndim() - 2]);
    }
    if b.ndim() >= 2 {
        shape.push(b.shape()[b.ndim() - 1]);
    }
    shape
}

/// The shape of `a @ b`, which `out` must have, of one dtype with them.
#[track_caller]
fn accumulated_shape(a: &Array, b: &Array, out: &Array, op: &str) -> Shape {
    let shape = matmul_shape(a, b, op);
    crate::error::same_dtype(op, a.dtype(), b.dtype());
    crate::error::same_dtype(op, a.dtype(), out.dtype());
    if out.shape() != shape.as_slice() {
        fail(
            op,
            format_args!(
                "the accumulator has shape {}, the product {}",
                fmt_shape(out.shape()),
                fmt_shape(&shape)
            ),
        )
    }
    shape
}

/// The stride of the dims `(size, stride)` read as one dim, in order (outermost first), if
/// they are one: each dim of more than one element steps over all of the next ones.
fn one_strided_dim(
    sizes: impl Iterator<Item = usize>,
    strides: impl Iterator<Item = isize>,
) -> Option<isize> {
    let mut merged: Option<(usize, isize)> = None;
    for (size, stride) in sizes.zip(strides).filter(|&(size, _)| size != 1) {
        merged = match merged {
            None => Some((size, stride)),
            Some((outer, outer_stride)) if outer_stride == stride * size as isize => {
                Some((outer * size, stride))
            }
            Some(_) => return None,
        };
    }
    Some(merged.map_or(0, |(_, stride)| stride))
}

/// `out = scale · a @ b` (`out +=` when `accumulate`) for `a: [..., m, k]`, `b: [..., k, n]`
/// (both at least 2-d), batch dims broadcast; `out_shape` is the user-facing shape (vector
/// dims already dropped).
#[track_caller]
fn batched<T: Float>(
    a: &Array,
    b: &Array,
    out_shape: &[usize],
    out: &mut Array,
    accumulate: bool,
    scale: f64,
) {
    let scale = T::from_f64(scale);
    let (m, k) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
    let n = b.shape()[b.ndim() - 1];
    let batch_a = &a.shape()[..a.ndim() - 2];
    let batch_b = &b.shape()[..b.ndim() - 2];
    let batch: Shape = broadcast_shapes(batch_a, batch_b).expect("checked by matmul_shape");
    let sa = broadcast_strides(batch_a, &a.strides()[..a.ndim() - 2], &batch);
    let sb = broadcast_strides(batch_b, &b.strides()[..b.ndim() - 2], &batch);
    let (ars, acs) = (a.strides()[a.ndim() - 2], a.strides()[a.ndim() - 1]);
    let (brs, bcs) = (b.strides()[b.ndim() - 2], b.strides()[b.ndim() - 1]);
    let pa = a.storage_slice::<T>("matmul").as_ptr();
    let pb = b.storage_slice::<T>("matmul").as_ptr();
    let dst = out.out_slice::<T>(out_shape, "matmul_into");
    if k == 0 {
        // an empty sum is +0 (and `x + 0` turns -0 into +0, as the unfused add would)
        dst.iter_mut().for_each(|d| {
            *d = if accumulate {
                *d + T::zero()
            } else {
                T::zero()
            }
        });
        return;
    }
    // One right matrix for every batch (`x W` with x `[B, T, k]`, a linear layer over a
    // sequence), and the left's batches stacked rows of one strided matrix: one tall product
    // `[B·m, k] @ [k, n]`, not B products that each pack the same right matrix (a transformer's
    // `[16, 64, 128] @ [128, 128]` took 16 calls).
    let batches: usize = batch.iter().product();
    if batches > 1 && sb.iter().all(|&st| st == 0) {
        let rows = one_strided_dim(
            batch.iter().copied().chain([m]),
            sa.iter().copied().chain([ars]),
        );
        // (rows broadcast over the batch, stride 0, stay separate products)
        if let Some(rs) = rows.filter(|&rs| rs != 0) {
            let (pa, pb) = (pa.wrapping_add(a.offset()), pb.wrapping_add(b.offset()));
            // SAFETY: the stacked rows are `a`'s own elements (its batch dims and rows form one
            // dim of stride `rs`), `b` is read as for every batch, and `dst` holds the
            // `batches · m` rows of `n` back to back, freshly owned.
            unsafe {
                gemm_scaled(
                    batches * m,
                    n,
                    k,
                    Mat {
                        ptr: dst.as_mut_ptr(),
                        rs: n as isize,
                        cs: 1,
                    },
                    Mat {
                        ptr: pa,
                        rs,
                        cs: acs,
                    },
                    Mat {
                        ptr: pb,
                        rs: brs,
                        cs: bcs,
                    },
                    accumulate,
                    scale,
                    true,
                )
            };
            return;
        }
    }
    let pc = SendPtr(dst.as_mut_ptr());
    let mut pairs: SmallVec<[(usize, usize); 8]> = SmallVec::new();
    for_each_offsets(&batch, [&sa, &sb], [a.offset(), b.offset()], |[oa, ob]| {
        pairs.push((oa, ob))
    });
    let (pa, pb) = (SendPtr(pa as *mut T), SendPtr(pb as *mut T));
    let run = |(i, &(oa, ob)): (usize, &(usize, usize)), parallel: bool| {
        let (pa, pb, pc) = (pa, pb, pc);
        // SAFETY: offsets come from the arrays' own layouts, so every addressed element lies
        // inside their storage; output matrix `i` is the disjoint range [i*m*n, (i+1)*m*n) of
        // `dst`, which is freshly owned and never aliases an input.
        unsafe {
            gemm_scaled(
                m,
                n,
                k,
                Mat {
                    ptr: pc.0.add(i * m * n),
                    rs: n as isize,
                    cs: 1,
                },
                Mat {
                    ptr: pa.0.add(oa) as *const T,
                    rs: ars,
                    cs: acs,
                },
                Mat {
                    ptr: pb.0.add(ob) as *const T,
                    rs: brs,
                    cs: bcs,
                },
                accumulate,
                scale,
                parallel,
            )
        }
    };
    if pairs.len() > 1
        && m * n * k < PARALLEL_FLOPS
        && crate::par::split(pairs.len() * m * n * k, PARALLEL_FLOPS)
    {
        pairs.par_iter().enumerate().for_each(|p| run(p, false));
    } else {
        pairs.iter().enumerate().for_each(|p| run(p, true));
    }
}
