//! Reductions over all elements or chosen dims, with `keepdim`.
//!
//! Every reduction is planned the same way: the kept dims stay in order, the reduced dims
//! move to the back, and the result is computed row by row over a contiguous buffer (no copy
//! when the reduced dims are already the innermost). Sums over leading dims (a bias gradient,
//! `sum_dim(0)`) accumulate whole rows instead, so they never transpose.
//!
//! Which way a reduction adds depends on the shape and the reduced dims alone, never on the
//! layout: a view (a slice, a transpose) is read in row-major order, copied where it must be,
//! and added as a row-major array of its shape would be, so a reduction gives the same bits
//! on a view and on its contiguous copy (optimize mode moves slices across ops and counts on
//! that).

use rayon::prelude::*;
use smallvec::SmallVec;

use crate::dtype::{dispatch_float, dispatch_number, Element, Float, Number};
use crate::elementwise::PARALLEL_MIN;
use crate::error::fail;
use crate::layout::{fmt_shape, Dim, Dims, Shape};
use crate::{Array, DType};

/// Which dims a reduction keeps and which it folds.
struct Plan {
    /// Shape of the result (size-1 dims kept when `keepdim`).
    out_shape: Shape,
    /// The input with the reduced dims moved last.
    permuted: Array,
    /// Number of result elements.
    rows: usize,
    /// Elements folded into each result element.
    row_len: usize,
    /// Reduced dims form a prefix: fold by whole rows (of the row-major order).
    leading: bool,
    /// The input read as `[outer, kept, inner]` (row major), the reduced dims
    /// leading and trailing the kept ones, both sides present (a convolution's bias
    /// gradient, the sum over `[N, _, H, W]`): each kept element folds its `outer` runs of
    /// `inner` in place, with no transposed copy.
    around: Option<(usize, usize, usize)>,
}

#[track_caller]
fn plan(a: &Array, dims: &[usize], keepdim: bool) -> Plan {
    let nd = a.ndim();
    let reduced = |d: usize| dims.contains(&d);
    let mut out_shape = Shape::new();
    let mut order: SmallVec<[usize; 6]> = SmallVec::new();
    for d in 0..nd {
        if reduced(d) {
            if keepdim {
                out_shape.push(1);
            }
        } else {
            out_shape.push(a.shape()[d]);
            order.push(d);
        }
    }
    let rows: usize = order.iter().map(|&d| a.shape()[d]).product();
    order.extend(dims.iter().copied());
    let row_len: usize = dims.iter().map(|&d| a.shape()[d]).product();
    // (by the shape and dims alone, whatever the layout: see the module docs)
    let leading = !dims.is_empty() && dims.iter().enumerate().all(|(i, &d)| i == d);
    // the kept dims one run in the middle, reduced dims on both sides
    let first = (0..nd).find(|&d| !reduced(d));
    let last = (0..nd).rev().find(|&d| !reduced(d));
    let around = match (first, last) {
        (Some(f), Some(l)) if f > 0 && l + 1 < nd => {
            let middle = (f..=l).all(|d| !reduced(d));
            let size = |r: std::ops::Range<usize>| r.map(|d| a.shape()[d]).product::<usize>();
            middle.then(|| (size(0..f), size(f..l + 1), size(l + 1..nd)))
        }
        _ => None,
    };
    Plan {
        out_shape,
        permuted: a.permute(&order),
        rows,
        row_len,
        leading,
        around,
    }
}

fn all_dims(a: &Array) -> SmallVec<[usize; 6]> {
    (0..a.ndim()).collect()
}

/// Folds each row of the plan with `f` into `out`. `f` is a `dyn` (one call per row), so
/// the loops and rayon's machinery are compiled once per element type, not per reduction.
#[track_caller]
fn rows_into<T: Element, U: Element>(
    p: &Plan,
    out: &mut Array,
    op: &str,
    f: &(dyn Fn(&[T]) -> U + Sync),
) {
    let src = p.permuted.values::<T>(op);
    let dst = out.out_slice::<U>(&p.out_shape, op);
    let n = p.row_len;
    if n == 0 {
        dst.iter_mut().for_each(|d| *d = f(&[]));
    } else if crate::par::split(p.rows * n, PARALLEL_MIN) && p.rows > 1 {
        dst.par_iter_mut()
            .zip(src.par_chunks(n))
            .for_each(|(d, row)| *d = f(row));
    } else {
        dst.iter_mut()
            .zip(src.chunks(n))
            .for_each(|(d, row)| *d = f(row));
    }
}

/// 16 lanes of a row's running result, so the loops over a contiguous row vectorise.
pub(crate) const LANES: usize = 16;

/// `Σ f(x[j], y[j])` in [`LANES`] running sums.
#[inline(always)]
pub(crate) fn sum_of<T: Float>(x: &[T], y: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = x.chunks_exact(LANES).zip(y.chunks_exact(LANES));
    let rest = x.len() - x.len() % LANES;
    for (a, b) in chunks {
        for l in 0..LANES {
            acc[l] += f(a[l], b[l]);
        }
    }
    let mut s = T::zero();
    for v in acc {
        s += v;
    }
    for j in rest..x.len() {
        s += f(x[j], y[j]);
    }
    s
}

/// Sum with 16 independent accumulators, so the loop vectorises despite float
/// non-associativity (and rounds better than a serial sum).
pub(crate) fn sum_row<T: Number>(x: &[T]) -> T {
    let mut acc = [T::zero(); 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] = acc[i].wrapping_add(c[i]);
        }
    }
    let mut s = T::zero();
    for a in acc {
        s = s.wrapping_add(a);
    }
    for &r in rest {
        s = s.wrapping_add(r);
    }
    s
}

fn prod_row<T: Number>(x: &[T]) -> T {
    x.iter().fold(T::one(), |a, &b| a.wrapping_mul(b))
}

/// First index of the largest (`better = >`) or smallest (`<`) value; NaN wins and stops.
fn arg_extreme<T: Number>(x: &[T], better: fn(T, T) -> bool) -> (T, i64) {
    let mut best = x[0];
    let mut at = 0;
    if best.is_nan_value() {
        return (best, 0);
    }
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v.is_nan_value() {
            return (v, i as i64);
        }
        if better(v, best) {
            best = v;
            at = i;
        }
    }
    (best, at as i64)
}

fn logsumexp_row<T: Float>(x: &[T]) -> T {
    let m = x.iter().fold(
        T::neg_infinity(),
        |a, &b| if b > a || b.is_nan() { b } else { a },
    );
    if !m.is_finite() {
        // All -inf gives -inf; +inf or NaN propagate.
        return if x.is_empty() { T::neg_infinity() } else { m };
    }
    // A serial sum, not vectorised, so the unfused exp costs nothing more here.
    let s = x
        .iter()
        .fold(T::zero(), |a, &v| a + (v - m).exp_kernel::<false>());
    m + s.ln()
}

fn var_row<T: Float>(x: &[T], correction: usize) -> T {
    let n = T::from(x.len()).unwrap();
    let mean = sum_row(x) / n;
    let ss = x
        .iter()
        .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean));
    let dof = x.len() as f64 - correction as f64;
    ss / T::from(dof.max(0.0)).unwrap()
}

fn norm_row<T: Float>(x: &[T], p: f64) -> T {
    if p == 2.0 {
        x.iter().fold(T::zero(), |a, &v| a + v * v).sqrt()
    } else if p == 1.0 {
        x.iter().fold(T::zero(), |a, &v| a + v.abs())
    } else if p == f64::INFINITY {
        x.iter().fold(T::zero(), |a, &v| a.max(v.abs()))
    } else if p == 0.0 {
        T::from(x.iter().filter(|v| !v.is_zero()).count()).unwrap()
    } else {
        let pt = T::from(p).unwrap();
        x.iter()
            .fold(T::zero(), |a, &v| a + v.abs().powf(pt))
            .powf(pt.recip())
    }
}

/// Defines `name()` (all elements, 0-d result), `name_dim(dims, keepdim)` and
/// `name_dim_into(dims, keepdim, out)` from a row kernel.
/// Which reductions have a dedicated path in `reduce_rows`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sum,
    Mean,
    /// max or min: undefined on zero elements
    Extreme,
    Other,
}

/// Column sums of the contiguous rows `src` (rows of `columns` elements), the columns from
/// `first` on into `part`: each the sum of its column's rows in order (divided by `count` for
/// a mean), so the same sums on every vector path and however the columns are split.
fn column_sums<T: Number>(
    src: &[T],
    columns: usize,
    first: usize,
    part: &mut [T],
    count: Option<T>,
) {
    part.iter_mut().for_each(|d| *d = T::zero());
    crate::math::with_simd(|| {
        for row in src.chunks(columns) {
            for (d, &s) in part.iter_mut().zip(&row[first..]) {
                *d = d.wrapping_add(s);
            }
        }
    });
    if let Some(n) = count {
        part.iter_mut().for_each(|d| *d = *d / n);
    }
}

/// Panics unless `a` is 2-D and each block of `rows` rows from a row of `firsts` lies in it.
#[track_caller]
fn check_blocks(a: &Array, firsts: &[usize], rows: usize, op: &str) {
    if a.ndim() != 2 {
        fail(
            op,
            format_args!("takes a 2-D array, got shape {}", fmt_shape(a.shape())),
        )
    }
    let n = a.shape()[0];
    if let Some(&f) = firsts
        .iter()
        .find(|&&f| f.checked_add(rows).is_none_or(|e| e > n))
    {
        fail(
            op,
            format_args!(
                "a block of {rows} rows from row {f} does not fit in shape {}",
                fmt_shape(a.shape())
            ),
        )
    }
}

/// The result shape of reducing `shape` over `dims`.
fn reduced_shape(shape: &[usize], dims: &[usize], keepdim: bool) -> Shape {
    shape
        .iter()
        .enumerate()
        .filter_map(|(d, &n)| {
            if !dims.contains(&d) {
                Some(n)
            } else if keepdim {
                Some(1)
            } else {
                None
            }
        })
        .collect()
}

macro_rules! reduction {
    ($($(#[$doc:meta])* $dispatch:ident, $bound:ident, $kind:ident, $all:ident, $dim:ident, $into:ident => $row:expr;)*) => {
        impl Array {$(
            $(#[$doc])*
            /// This form reduces every element to a 0-d array.
            #[track_caller]
            pub fn $all(&self) -> Array {
                if self.dtype() != DType::Bool && self.numel() > 0 && self.numel() < PARALLEL_MIN && self.device().is_cpu() {
                    // Small contiguous input: one row, no plan.
                    fn row<T: $bound>(x: &[T]) -> T {
                        let f: fn(&[T]) -> T = $row;
                        f(x)
                    }
                    if let Some(r) = $dispatch!(self.dtype(), stringify!($all), T => self.contiguous_slice::<T>(stringify!($all)).map(|s| Array::scalar(row::<T>(s)))) {
                        return r;
                    }
                }
                let dims = all_dims(self);
                self.$dim(dims.as_slice(), false)
            }

            $(#[$doc])*
            /// This form reduces the given dims, keeping them as size 1 when `keepdim`.
            #[track_caller]
            pub fn $dim(&self, dims: impl Dims, keepdim: bool) -> Array {
                let dims = dims.resolve_all(self.ndim(), stringify!($dim));
                let dtype = if self.dtype() == DType::Bool { DType::I64 } else { self.dtype() };
                let mut out = Array::empty_on(&reduced_shape(self.shape(), &dims, keepdim), dtype, self.device());
                self.$into(dims.as_slice(), keepdim, &mut out);
                out
            }

            #[doc = concat!("[`", stringify!($dim), "`](Array::", stringify!($dim), ") into `out`.")]
            #[track_caller]
            pub fn $into(&self, dims: impl Dims, keepdim: bool, out: &mut Array) {
                let op = stringify!($dim);
                let dims = dims.resolve_all(self.ndim(), op);
                #[cfg(feature = "cuda")]
                if !self.device().is_cpu() {
                    return crate::cuda::reduce::reduce(self, &dims, keepdim, out, op);
                }
                fn row<T: $bound>(x: &[T]) -> T {
                    let f: fn(&[T]) -> T = $row;
                    f(x)
                }
                let small = self.numel() > 0 && self.numel() < PARALLEL_MIN;
                if small && self.dtype() != DType::Bool && dims.len() == self.ndim() {
                    // Every element of a small contiguous input into one: one row, no plan
                    // (a loss's sum in a compiled step spent most of its time planning).
                    let shape = reduced_shape(self.shape(), &dims, keepdim);
                    let done = $dispatch!(self.dtype(), op, T => match self.contiguous_slice::<T>(op) {
                        Some(x) => {
                            out.out_slice::<T>(&shape, op)[0] = row::<T>(x);
                            true
                        }
                        None => false,
                    });
                    if done {
                        return;
                    }
                }
                let a = self.numeric(op);
                let p = plan(&a, &dims, keepdim);
                $dispatch!(a.dtype(), op, T => a.reduce_rows::<T>(&p, out, Kind::$kind, op, row::<T>))
            }
        )*}
    };
}

reduction! {
    /// Sum of elements (0 for none).
    dispatch_number, Number, Sum, sum, sum_dim, sum_dim_into => sum_row;
    /// Product of elements (1 for none).
    dispatch_number, Number, Other, prod, prod_dim, prod_dim_into => prod_row;
    /// Mean of elements (NaN for none).
    dispatch_float, Float, Mean, mean, mean_dim, mean_dim_into => |x| sum_row(x) / T::from(x.len()).unwrap();
    /// Largest element (NaN if any is NaN), values only; see [`max_dim`](Array::max_dim) for indices.
    dispatch_number, Number, Extreme, amax, amax_dim, amax_dim_into => |x| arg_extreme(x, |a, b| a > b).0;
    /// Smallest element (NaN if any is NaN), values only; see [`min_dim`](Array::min_dim) for indices.
    dispatch_number, Number, Extreme, amin, amin_dim, amin_dim_into => |x| arg_extreme(x, |a, b| a < b).0;
    /// `log(sum(exp(x)))`, computed stably.
    dispatch_float, Float, Other, logsumexp, logsumexp_dim, logsumexp_dim_into => logsumexp_row;
}

impl Array {
    /// Bool arrays reduce as i64 counts; everything else as itself.
    fn numeric(&self, _op: &str) -> Array {
        if self.dtype() == DType::Bool {
            self.to_dtype(DType::I64)
        } else {
            self.clone()
        }
    }

    #[track_caller]
    fn reduce_rows<T: Number>(
        &self,
        p: &Plan,
        out: &mut Array,
        kind: Kind,
        op: &str,
        row: fn(&[T]) -> T,
    ) {
        if p.row_len == 0 && kind == Kind::Extreme {
            fail(
                op,
                format_args!(
                    "cannot take the max or min of zero elements (shape {}, an empty dim reduced)",
                    fmt_shape(self.shape())
                ),
            )
        }
        let (is_sum, is_mean) = (kind == Kind::Sum, kind == Kind::Mean);
        if is_sum && p.rows == 1 && p.row_len >= PARALLEL_MIN {
            // runs of 2¹⁵ summed apart (on the threads when there are several), then their
            // sums: grouped alike on any pool, so the bits do not depend on it
            let src = self.values::<T>(op);
            let dst = out.out_slice::<T>(&p.out_shape, op);
            let parts: Vec<T> = if crate::par::split(p.row_len, PARALLEL_MIN) {
                src.par_chunks(1 << 15).map(sum_row).collect()
            } else {
                src.chunks(1 << 15).map(sum_row).collect()
            };
            dst[0] = sum_row(&parts);
            return;
        }
        // Whole-row accumulation pays off once a row is a few vectors wide.
        if (is_sum || is_mean) && p.leading && p.rows >= 16 && p.row_len > 0 {
            let count = is_mean.then(|| T::from(p.row_len).expect("a count"));
            if !self.is_contiguous() && p.permuted.is_contiguous() {
                // each column contiguous in memory (a transposed view): the same sums, in
                // the same order, with no transposed copy; 16 columns side by side, so the
                // adds are 16 independent chains, not one
                let src = p.permuted.values::<T>(op);
                let dst = out.out_slice::<T>(&p.out_shape, op);
                let n = p.row_len;
                let block = |(b, d): (usize, &mut [T])| {
                    let mut acc = [T::zero(); 16];
                    let columns = src[b * 16 * n..][..d.len() * n].chunks_exact(n);
                    if d.len() == 16 {
                        let c: [&[T]; 16] = std::array::from_fn(|j| &src[(b * 16 + j) * n..][..n]);
                        // (indexed: the 16 loads and adds unroll; zipped, 2048² ran 1.7x slower)
                        #[allow(clippy::needless_range_loop)]
                        for i in 0..n {
                            for j in 0..16 {
                                acc[j] = acc[j].wrapping_add(c[j][i]);
                            }
                        }
                    } else {
                        for (a, column) in acc.iter_mut().zip(columns) {
                            *a = column.iter().fold(T::zero(), |s, &v| s.wrapping_add(v));
                        }
                    }
                    for (d, a) in d.iter_mut().zip(acc) {
                        *d = count.map_or(a, |c| a / c);
                    }
                };
                if crate::par::split(src.len(), PARALLEL_MIN) && dst.len() > 16 {
                    dst.par_chunks_mut(16).enumerate().for_each(block);
                } else {
                    dst.chunks_mut(16).enumerate().for_each(block);
                }
                return;
            }
            // Column sums of a [row_len, rows] buffer in row-major order: add whole rows.
            let src = self.values::<T>(op);
            let dst = out.out_slice::<T>(&p.out_shape, op);
            let columns = p.rows;
            let sums =
                |first: usize, part: &mut [T]| column_sums(&src, columns, first, part, count);
            // A bias gradient's rows were mostly written in halves of rows on two cores:
            // halves of the columns read half of them there, not all. (Not when both halves
            // would run here: each walks every row, so that is slower than one walk.)
            if crate::par::split(src.len(), crate::elementwise::PAIR_MIN) && crate::partner::awake()
            {
                crate::partner::halves_if_awake(dst, 16, &sums);
            } else {
                sums(0, dst);
            }
            return;
        }
        if let (true, Some((outer, kept, inner))) = (is_sum || is_mean, p.around) {
            // Each kept element: the sum of its `outer` runs of `inner` contiguous elements,
            // each run folded as a row; threads take kept elements.
            let n = T::from(outer * inner).expect("a count");
            // the runs of `x` from run `first` on, every `step`-th
            let runs = |x: &[T], first: usize, step: usize| {
                let mut s = T::zero();
                for o in 0..outer {
                    s = s.wrapping_add(sum_row(&x[(o * step + first) * inner..][..inner]));
                }
                if is_mean {
                    s / n
                } else {
                    s
                }
            };
            if !self.is_contiguous() && p.permuted.is_contiguous() {
                // each kept element's runs one after another in memory: the same sums
                return rows_into(p, out, op, &|x: &[T]| runs(x, 0, 1));
            }
            let src = self.values::<T>(op);
            let dst = out.out_slice::<T>(&p.out_shape, op);
            let fold = |k: usize, d: &mut T| *d = runs(&src, k, kept);
            if crate::par::split(outer * kept * inner, PARALLEL_MIN) && kept > 1 {
                dst.par_iter_mut().enumerate().for_each(|(k, d)| fold(k, d));
            } else {
                dst.iter_mut().enumerate().for_each(|(k, d)| fold(k, d));
            }
            return;
        }
        rows_into(p, out, op, &row);
    }

    /// The sums of blocks of `rows` rows of a 2-D array, the `k`-th block from row
    /// `firsts[k]`: a `[firsts.len(), columns]` array whose row `k` is
    /// `self.narrow(0, firsts[k], rows).sum_dim(0, false)`, or `mean_dim` when `mean`, bit for
    /// bit. One pass over the blocks, split over the cores by blocks, where one reduction per
    /// block would be a call and a handover to the other core each: a compiled plan sums a
    /// recurrent network's per-step bias gradients this way, from the stack of its gate
    /// gradients, after the backward pass.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec((0..12).map(|v| v as f32).collect(), &[6, 2]);
    /// let sums = x.row_block_sums(&[0, 3], 3, false);
    /// assert_eq!(sums.to_vec::<f32>(), [6.0, 9.0, 24.0, 27.0]);
    /// assert!(sums.narrow(0, 1, 1).reshape(&[2]).bit_eq(&x.narrow(0, 3, 3).sum_dim(0, false)));
    /// ```
    ///
    /// Panics unless `self` is 2-D and every block lies inside it.
    #[track_caller]
    pub fn row_block_sums(&self, firsts: &[usize], rows: usize, mean: bool) -> Array {
        let op = "row_block_sums";
        check_blocks(self, firsts, rows, op);
        let dtype = if self.dtype() == DType::Bool {
            DType::I64
        } else {
            self.dtype()
        };
        let shape = [firsts.len(), self.shape()[1]];
        let mut out = Array::empty_on(&shape, dtype, self.device());
        self.row_block_sums_into(firsts, rows, mean, &mut out);
        out
    }

    /// [`row_block_sums`](Array::row_block_sums) into `out`.
    #[track_caller]
    pub fn row_block_sums_into(&self, firsts: &[usize], rows: usize, mean: bool, out: &mut Array) {
        let op = "row_block_sums";
        check_blocks(self, firsts, rows, op);
        let columns = self.shape()[1];
        // The blocks' own reductions' whole-row path (`reduce_rows`), where it applies: a
        // contiguous host array, at least 16 columns, whole rows; else those reductions.
        let fast = self.device().is_cpu()
            && self.is_contiguous()
            && self.dtype() != DType::Bool
            && (!mean || self.dtype().is_float())
            && columns >= 16
            && rows > 0;
        if !fast {
            let blocks: Vec<Array> = (firsts.iter())
                .map(|&f| match mean {
                    true => self.narrow(0, f, rows).mean_dim(0, true),
                    false => self.narrow(0, f, rows).sum_dim(0, true),
                })
                .collect();
            *out = match blocks.is_empty() {
                true => Array::empty_on(&[0, columns], out.dtype(), self.device()),
                false => Array::cat(&blocks, 0),
            };
            return;
        }
        dispatch_number!(self.dtype(), op, T => self.block_sums::<T>(firsts, rows, mean, out))
    }

    /// [`row_block_sums_into`](Array::row_block_sums_into) of a contiguous host array of at
    /// least 16 columns, by whole rows.
    fn block_sums<T: Number>(&self, firsts: &[usize], rows: usize, mean: bool, out: &mut Array) {
        let op = "row_block_sums";
        let columns = self.shape()[1];
        let src = self.values::<T>(op);
        let dst = out.out_slice::<T>(&[firsts.len(), columns], op);
        let count = mean.then(|| T::from(rows).expect("a count"));
        // output rows from element `start` on (whole rows)
        let blocks = |start: usize, part: &mut [T]| {
            for (k, sums) in part.chunks_mut(columns).enumerate() {
                let first = firsts[start / columns + k] * columns;
                column_sums(&src[first..first + rows * columns], columns, 0, sums, count);
            }
        };
        let work = firsts.len() * rows * columns;
        // (two halves on two cores, with the partner awake between a training step's
        // products, rather than a pool job that wakes workers and waits for them)
        let pair = crate::partner::awake() && rayon::current_num_threads() == 2;
        if crate::par::split(work, PARALLEL_MIN) && !pair {
            (dst.par_chunks_mut(columns).enumerate())
                .for_each(|(k, sums)| blocks(k * columns, sums));
        } else if crate::par::split(work, crate::elementwise::PAIR_MIN) {
            crate::partner::halves_if_awake(dst, columns, &blocks);
        } else {
            blocks(0, dst);
        }
    }

    /// The largest value along `dim` and its first index (NaN counts as largest).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f32, 5.0, 5.0, 2.0], &[2, 2]);
    /// let (v, i) = a.max_dim(1, false);
    /// assert_eq!(v.to_vec::<f32>(), vec![5.0, 5.0]);
    /// assert_eq!(i.to_vec::<i64>(), vec![1, 0]);
    /// ```
    #[track_caller]
    pub fn max_dim(&self, dim: impl Dim, keepdim: bool) -> (Array, Array) {
        self.extreme_dim(dim, keepdim, "max_dim", true)
    }

    /// The smallest value along `dim` and its first index (NaN counts as smallest).
    #[track_caller]
    pub fn min_dim(&self, dim: impl Dim, keepdim: bool) -> (Array, Array) {
        self.extreme_dim(dim, keepdim, "min_dim", false)
    }

    /// Index of the first largest value along `dim`.
    #[track_caller]
    pub fn argmax(&self, dim: impl Dim, keepdim: bool) -> Array {
        self.extreme_dim(dim, keepdim, "argmax", true).1
    }

    /// Index of the first smallest value along `dim`.
    #[track_caller]
    pub fn argmin(&self, dim: impl Dim, keepdim: bool) -> Array {
        self.extreme_dim(dim, keepdim, "argmin", false).1
    }

    /// Index of the first largest value of the flattened array, as a 0-d i64 array.
    #[track_caller]
    pub fn argmax_all(&self) -> Array {
        self.reshape(&[self.numel()]).argmax(0usize, false)
    }

    /// Index of the first smallest value of the flattened array, as a 0-d i64 array.
    #[track_caller]
    pub fn argmin_all(&self) -> Array {
        self.reshape(&[self.numel()]).argmin(0usize, false)
    }

    /// Largest element as a 0-d array (same as [`amax`](Array::amax)).
    #[track_caller]
    pub fn max(&self) -> Array {
        self.amax()
    }

    /// Smallest element as a 0-d array (same as [`amin`](Array::amin)).
    #[track_caller]
    pub fn min(&self) -> Array {
        self.amin()
    }

    #[track_caller]
    fn extreme_dim(&self, dim: impl Dim, keepdim: bool, op: &str, largest: bool) -> (Array, Array) {
        let d = dim.resolve(self.ndim().max(1), op);
        let a = if self.ndim() == 0 {
            self.reshape(&[1])
        } else {
            self.numeric(op)
        };
        #[cfg(feature = "cuda")]
        if !a.device().is_cpu() {
            let mut shape = a.shape().to_vec();
            if keepdim {
                shape[d] = 1;
            } else {
                shape.remove(d);
            }
            let mut values = Array::empty_on(&shape, a.dtype(), a.device());
            let mut indices = Array::empty_on(&shape, DType::I64, a.device());
            let (v, i) = (Some(&mut values), &mut indices);
            crate::cuda::reduce::extreme(&a, d, keepdim, largest, v, i, op);
            return (values, indices);
        }
        let p = plan(&a, &[d], keepdim);
        if p.row_len == 0 {
            fail(
                op,
                format_args!(
                    "cannot reduce an empty dim {d} (shape {})",
                    fmt_shape(self.shape())
                ),
            )
        }
        let mut values = Array::empty_on(&p.out_shape, a.dtype(), a.device());
        let mut indices = Array::empty_on(&p.out_shape, DType::I64, a.device());
        a.extreme_into_plan(&p, largest, &mut values, &mut indices, op);
        (values, indices)
    }

    /// [`max_dim`](Array::max_dim) into `values` and `indices` (i64).
    #[track_caller]
    pub fn max_dim_into(
        &self,
        dim: impl Dim,
        keepdim: bool,
        values: &mut Array,
        indices: &mut Array,
    ) {
        let d = dim.resolve(self.ndim(), "max_dim");
        let a = self.numeric("max_dim");
        #[cfg(feature = "cuda")]
        if !a.device().is_cpu() {
            let op = "max_dim_into";
            return crate::cuda::reduce::extreme(&a, d, keepdim, true, Some(values), indices, op);
        }
        let p = plan(&a, &[d], keepdim);
        a.extreme_into_plan(&p, true, values, indices, "max_dim_into");
    }

    #[track_caller]
    /// The largest (or smallest) value of each row of the plan and its first index.
    fn extreme_into_plan(
        &self,
        p: &Plan,
        largest: bool,
        values: &mut Array,
        indices: &mut Array,
        op: &str,
    ) {
        fn kernel<T: Number>(
            p: &Plan,
            largest: bool,
            values: &mut Array,
            indices: &mut Array,
            op: &str,
        ) {
            let src = p.permuted.values::<T>(op);
            let vs = values.out_slice::<T>(&p.out_shape, op);
            let is = indices.out_slice::<i64>(&p.out_shape, op);
            let cmp = if largest {
                (|a: T, b: T| a > b) as fn(T, T) -> bool
            } else {
                |a: T, b: T| a < b
            };
            for ((v, i), row) in vs.iter_mut().zip(is.iter_mut()).zip(src.chunks(p.row_len)) {
                (*v, *i) = arg_extreme(row, cmp);
            }
        }
        dispatch_number!(self.dtype(), op, T => kernel::<T>(p, largest, values, indices, op))
    }

    /// Variance over `dims` with `correction` subtracted from the count (1 gives the unbiased
    /// estimate, PyTorch's default; 0 the population variance).
    #[track_caller]
    pub fn var_dim(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Array {
        let dims = dims.resolve_all(self.ndim(), "var_dim");
        let p = plan(self, &dims, keepdim);
        let mut out = Array::empty_on(&p.out_shape, self.dtype(), self.device());
        self.var_dim_into(dims.as_slice(), correction, keepdim, &mut out);
        out
    }

    /// [`var_dim`](Array::var_dim) into `out`.
    #[track_caller]
    pub fn var_dim_into(&self, dims: impl Dims, correction: usize, keepdim: bool, out: &mut Array) {
        let dims = dims.resolve_all(self.ndim(), "var_dim");
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            // centred sum of squares, from the device's mean and sum kernels
            let n: usize = dims.iter().map(|&d| self.shape()[d]).product();
            let centred = self.sub(&self.mean_dim(dims.as_slice(), true));
            let ss = centred.square().sum_dim(dims.as_slice(), keepdim);
            let dof = (n as f64 - correction as f64).max(0.0);
            let scale = Array::full(&[], 1.0 / dof, self.dtype());
            return ss.mul_into(&scale, out);
        }
        let p = plan(self, &dims, keepdim);
        dispatch_float!(self.dtype(), "var_dim", T => rows_into::<T, T>(&p, out, "var_dim", &|x| var_row(x, correction)))
    }

    /// Variance of all elements (see [`var_dim`](Array::var_dim)).
    #[track_caller]
    pub fn var(&self, correction: usize) -> Array {
        self.var_dim(all_dims(self).as_slice(), correction, false)
    }

    /// Standard deviation over `dims` (square root of [`var_dim`](Array::var_dim)).
    #[track_caller]
    pub fn std_dim(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Array {
        self.var_dim(dims, correction, keepdim).sqrt()
    }

    /// Standard deviation of all elements.
    #[track_caller]
    pub fn std(&self, correction: usize) -> Array {
        self.var(correction).sqrt()
    }

    /// The `p`-norm over `dims` (`p` may be 0, 1, 2, any positive value, or infinity).
    #[track_caller]
    pub fn norm_dim(&self, p: f64, dims: impl Dims, keepdim: bool) -> Array {
        let dims = dims.resolve_all(self.ndim(), "norm_dim");
        let pl = plan(self, &dims, keepdim);
        let mut out = Array::empty_on(&pl.out_shape, self.dtype(), self.device());
        self.norm_dim_into(p, dims.as_slice(), keepdim, &mut out);
        out
    }

    /// [`norm_dim`](Array::norm_dim) into `out`.
    #[track_caller]
    pub fn norm_dim_into(&self, p: f64, dims: impl Dims, keepdim: bool, out: &mut Array) {
        if p.is_nan() || p < 0.0 {
            fail("norm", format_args!("p must be >= 0, got {p}"))
        }
        let dims = dims.resolve_all(self.ndim(), "norm_dim");
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            return crate::cuda::reduce::norm(self, p, &dims, keepdim, out);
        }
        let pl = plan(self, &dims, keepdim);
        dispatch_float!(self.dtype(), "norm", T => rows_into::<T, T>(&pl, out, "norm", &|x| norm_row(x, p)))
    }

    /// The `p`-norm of all elements (2 is the Euclidean norm).
    #[track_caller]
    pub fn norm(&self, p: f64) -> Array {
        self.norm_dim(p, all_dims(self).as_slice(), false)
    }

    /// Running sum along `dim`.
    #[track_caller]
    pub fn cumsum(&self, dim: impl Dim) -> Array {
        let a = self.numeric("cumsum");
        let mut out = Array::empty_on(a.shape(), a.dtype(), a.device());
        a.cumsum_into(dim, &mut out);
        out
    }

    /// [`cumsum`](Array::cumsum) into `out`.
    #[track_caller]
    pub fn cumsum_into(&self, dim: impl Dim, out: &mut Array) {
        self.scan_into(dim, false, "cumsum", out)
    }

    /// Running product along `dim`.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(a.cumprod(1usize).to_vec::<f64>(), vec![1.0, 2.0, 3.0, 12.0]);
    /// ```
    #[track_caller]
    pub fn cumprod(&self, dim: impl Dim) -> Array {
        let a = self.numeric("cumprod");
        let mut out = Array::empty_on(a.shape(), a.dtype(), a.device());
        a.cumprod_into(dim, &mut out);
        out
    }

    /// [`cumprod`](Array::cumprod) into `out`.
    #[track_caller]
    pub fn cumprod_into(&self, dim: impl Dim, out: &mut Array) {
        self.scan_into(dim, true, "cumprod", out)
    }

    /// A running sum, or product, along `dim` into `out`.
    #[track_caller]
    fn scan_into(&self, dim: impl Dim, product: bool, op: &str, out: &mut Array) {
        if self.ndim() == 0 {
            return self.contiguous_into(out);
        }
        let d = dim.resolve(self.ndim(), op);
        let a = self.numeric(op);
        #[cfg(feature = "cuda")]
        if !a.device().is_cpu() {
            return crate::cuda::reduce::scan(&a, d, product, out, op);
        }
        // Move `dim` last, scan contiguous rows, then move it back.
        let mut order: Vec<usize> = (0..a.ndim()).filter(|&i| i != d).collect();
        order.push(d);
        let moved = a.permute(&order);
        let mut inverse = vec![0; order.len()];
        for (i, &o) in order.iter().enumerate() {
            inverse[o] = i;
        }
        fn scan<T: Number>(moved: &Array, inverse: &[usize], product: bool, out: &mut Array) {
            let src = moved.values::<T>("scan");
            let n = *moved.shape().last().unwrap();
            let mut scanned = vec![T::zero(); src.len()];
            if n > 0 {
                for (dst, row) in scanned.chunks_mut(n).zip(src.chunks(n)) {
                    if product {
                        let mut acc = T::one();
                        for (d, &v) in dst.iter_mut().zip(row) {
                            acc = acc.wrapping_mul(v);
                            *d = acc;
                        }
                    } else {
                        let mut acc = T::zero();
                        for (d, &v) in dst.iter_mut().zip(row) {
                            acc = acc.wrapping_add(v);
                            *d = acc;
                        }
                    }
                }
            }
            Array::from_vec(scanned, moved.shape())
                .permute(inverse)
                .contiguous_into(out);
        }
        dispatch_number!(a.dtype(), op, T => scan::<T>(&moved, &inverse, product, out))
    }
}

/// The indices that sort each row of `values` (rows of `row` elements), stably: equal
/// elements keep their order; NaN sorts after every number (PyTorch's order).
fn argsort_rows<T: Copy + PartialOrd>(values: &[T], row: usize, descending: bool) -> Vec<i64> {
    #[allow(clippy::eq_op)] // x != x is the NaN test for every T here
    let order = |a: &T, b: &T| match (a != a, b != b) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        (false, false) => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    };
    let mut out = Vec::with_capacity(values.len());
    let mut idx: Vec<usize> = Vec::with_capacity(row);
    for r in values.chunks(row) {
        idx.clear();
        idx.extend(0..row);
        if descending {
            idx.sort_by(|&i, &j| order(&r[j], &r[i]));
        } else {
            idx.sort_by(|&i, &j| order(&r[i], &r[j]));
        }
        out.extend(idx.iter().map(|&i| i as i64));
    }
    out
}

impl Array {
    /// The indices (i64, same shape) that sort the array along `dim`, ascending or
    /// `descending`; stable (equal elements keep their order), NaN last.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![3.0f32, 1.0, 2.0, 1.0], &[4]);
    /// assert_eq!(a.argsort(0usize, false).to_vec::<i64>(), vec![1, 3, 2, 0]);
    /// assert_eq!(a.argsort(0usize, true).to_vec::<i64>(), vec![0, 2, 1, 3]);
    /// ```
    #[track_caller]
    pub fn argsort(&self, dim: impl Dim, descending: bool) -> Array {
        if self.ndim() == 0 {
            return Array::from_vec(vec![0i64], &[])
                .to_device(self.device())
                .unwrap_or_else(|e| crate::error::fail("argsort", e));
        }
        let d = dim.resolve(self.ndim(), "argsort");
        if !self.device().is_cpu() {
            #[cfg(feature = "cuda")]
            return crate::cuda::reduce::argsort(self, d, descending, "argsort");
            #[cfg(not(feature = "cuda"))]
            crate::error::no_kernel_on("argsort", self.device())
        }
        let last = self.ndim() - 1;
        let moved = self.transpose(d, last).contiguous();
        let row = moved.shape()[last];
        if moved.numel() == 0 {
            return Array::from_vec(Vec::<i64>::new(), self.shape());
        }
        let idx = match moved.dtype() {
            DType::F32 => argsort_rows(&moved.to_vec::<f32>(), row, descending),
            DType::F64 => argsort_rows(&moved.to_vec::<f64>(), row, descending),
            DType::I64 => argsort_rows(&moved.to_vec::<i64>(), row, descending),
            DType::Bool => argsort_rows(&moved.to_vec::<bool>(), row, descending),
        };
        Array::from_vec(idx, moved.shape())
            .transpose(d, last)
            .contiguous()
    }
}
