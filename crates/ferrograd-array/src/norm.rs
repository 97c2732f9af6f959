//! Layer normalization as one pass per row, forward and backward: each row's mean and
//! variance in vector running sums, then the normalized, scaled and shifted row, or the
//! input's gradient from the row's two gradient sums.

use crate::dtype::{dispatch_float, Float};
use crate::error::{fail, same_dtype};
use crate::layout::fmt_shape;
use crate::math::with_simd;
use crate::par::for_blocks;
use crate::reduce::sum_of;
use crate::Array;

/// A row's mean and `r = 1 / sqrt(var + eps)` (the biased variance), `count` its length: what
/// the forward and both gradients' kernels normalize by.
#[inline(always)]
fn row_stats<T: Float>(x: &[T], count: T, eps: T) -> (T, T) {
    let mean = sum_of(x, x, |v, _| v) / count;
    let var = sum_of(x, x, |v, _| (v - mean) * (v - mean)) / count;
    (mean, (var + eps).sqrt().recip())
}

/// Normalizes each row of `m` elements of `x` into `y`, then scales by `w` and shifts by `b`.
#[inline(always)]
fn layer_norm_rows<T: Float>(x: &[T], y: &mut [T], w: &[T], b: &[T], m: usize, eps: T) {
    let count = T::from(m).expect("a row length is a float");
    for (x, y) in x.chunks_exact(m).zip(y.chunks_exact_mut(m)) {
        let (mean, r) = row_stats(x, count, eps);
        for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
            *y = (x - mean) * r * w + b;
        }
    }
}

/// The gradient of [`layer_norm_rows`]'s input: for each row of `x` and its output gradient
/// `g`, with `x̂ = (x - mean) r` and `G = g w`, `dx = r/m (m G - Σ G - x̂ Σ G x̂)`.
#[inline(always)]
fn layer_norm_backward_rows<T: Float>(x: &[T], g: &[T], dx: &mut [T], w: &[T], m: usize, eps: T) {
    let count = T::from(m).expect("a row length is a float");
    for ((x, g), dx) in x
        .chunks_exact(m)
        .zip(g.chunks_exact(m))
        .zip(dx.chunks_exact_mut(m))
    {
        let (mean, r) = row_stats(x, count, eps);
        // G = g w into dx, then Σ G and Σ G (x - mean) over it: each a vector pass (as one
        // pass with two running sums, the compiler left it scalar)
        for ((dx, &g), &w) in dx.iter_mut().zip(g).zip(w) {
            *dx = g * w;
        }
        let sum_g = sum_of(dx, dx, |v, _| v);
        let sum_gx = sum_of(dx, x, |v, x| v * (x - mean));
        // dx = r/m (m G - Σ G - (x - mean) r² Σ G (x - mean))
        let (scale, shift) = (r / count, r * r * sum_gx);
        for (dx, &x) in dx.iter_mut().zip(x) {
            *dx = scale * (count * *dx - sum_g - (x - mean) * shift);
        }
    }
}

/// Rows per part of [`Array::layer_norm_param_grads`]' sums: parts are summed in order, so the
/// result does not depend on how many threads took them.
const PARAM_GRAD_ROWS: usize = 64;

/// Adds `Σ g x̂` and `Σ g` over the rows of `x` and `g` (rows of `m`) to `dw` and `db`, `x̂`
/// the normalized row (the forward's mean and `r`).
#[inline(always)]
fn layer_norm_param_grad_rows<T: Float>(
    x: &[T],
    g: &[T],
    dw: &mut [T],
    db: &mut [T],
    m: usize,
    eps: T,
) {
    let count = T::from(m).expect("a row length is a float");
    for (x, g) in x.chunks_exact(m).zip(g.chunks_exact(m)) {
        let (mean, r) = row_stats(x, count, eps);
        for (((dw, db), &x), &g) in dw.iter_mut().zip(db.iter_mut()).zip(x).zip(g) {
            *dw += g * ((x - mean) * r);
            *db += g;
        }
    }
}

impl Array {
    /// Layer normalization over the trailing dims whose shape `weight` and `bias` have:
    /// each row of those dims becomes `(x - mean) / sqrt(var + eps) · weight + bias`, with
    /// the biased variance (PyTorch's `F.layer_norm`). One pass per row on the CPU; on a
    /// GPU the same from its reductions and elementwise ops.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![1.0f64, 3.0, 10.0, 30.0], &[2, 2]);
    /// let (w, b) = (Array::from_vec(vec![1.0f64, 2.0], &[2]), Array::from_vec(vec![0.0f64, 1.0], &[2]));
    /// assert_eq!(x.layer_norm(&w, &b, 0.0).to_vec::<f64>(), vec![-1.0, 3.0, -1.0, 3.0]);
    /// ```
    ///
    /// Panics unless `weight` and `bias` have the shape of `self`'s trailing dims and its
    /// float dtype.
    #[track_caller]
    pub fn layer_norm(&self, weight: &Array, bias: &Array, eps: f64) -> Array {
        let op = "layer_norm";
        let k = weight.ndim();
        if bias.shape() != weight.shape() || !self.shape().ends_with(weight.shape()) {
            fail(
                op,
                format_args!(
                    "weight {} and bias {} must have the shape of the trailing dims of {}",
                    fmt_shape(weight.shape()),
                    fmt_shape(bias.shape()),
                    fmt_shape(self.shape())
                ),
            )
        }
        same_dtype(op, self.dtype(), weight.dtype());
        same_dtype(op, self.dtype(), bias.dtype());
        if !self.device().is_cpu() || !weight.device().is_cpu() || !bias.device().is_cpu() {
            let (xhat, _) = self.normalized_rows(k, eps);
            return xhat.mul(weight).add(bias);
        }
        let m = weight.numel();
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        fn kernel<T: Float>(x: &Array, w: &Array, b: &Array, m: usize, eps: f64, out: &mut Array) {
            let (x_, w_, b_) = (
                x.values::<T>("layer_norm"),
                w.values::<T>("layer_norm"),
                b.values::<T>("layer_norm"),
            );
            let y = out.out_slice::<T>(x.shape(), "layer_norm");
            let eps = T::from(eps).expect("eps is a float");
            // (rows of no elements: `for_blocks` runs nothing)
            for_blocks(m, y, &|start, y| {
                let x = &x_[start..start + y.len()];
                with_simd(
                    #[inline(always)]
                    || layer_norm_rows(x, y, &w_, &b_, m, eps),
                )
            });
        }
        dispatch_float!(self.dtype(), op, T => kernel::<T>(self, weight, bias, m, eps, &mut out));
        out
    }

    /// The gradient of [`layer_norm`](Array::layer_norm)'s input `self` given its `weight` and
    /// the output gradient `grad` (of `self`'s shape): per row of the normalized dims, with
    /// `x̂` the normalized row, `r` its `1 / sqrt(var + eps)`, `m` its length and `G = grad ·
    /// weight`, `r/m (m G - Σ G - x̂ Σ G x̂)`. One pass per row on the CPU; on a GPU the same
    /// from its reductions and elementwise ops. (The weight's and bias's gradients are sums
    /// over rows of `grad · x̂` and `grad`.)
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// // a row of two normalizes to (-1, 1) whatever its values: no gradient reaches it
    /// let x = Array::from_vec(vec![1.0f64, 3.0], &[1, 2]);
    /// let w = Array::from_vec(vec![1.0f64, 1.0], &[2]);
    /// let dx = x.layer_norm_backward(&w, &Array::from_vec(vec![0.5f64, -2.0], &[1, 2]), 0.0);
    /// assert_eq!(dx.to_vec::<f64>(), vec![0.0, 0.0]);
    /// ```
    ///
    /// Panics unless `weight` has the shape of `self`'s trailing dims, `grad` `self`'s shape,
    /// and both its float dtype.
    #[track_caller]
    pub fn layer_norm_backward(&self, weight: &Array, grad: &Array, eps: f64) -> Array {
        let op = "layer_norm_backward";
        let k = weight.ndim();
        if grad.shape() != self.shape() || !self.shape().ends_with(weight.shape()) {
            fail(
                op,
                format_args!(
                    "weight {} must have the shape of the trailing dims of {}, and the \
                     gradient {} its shape",
                    fmt_shape(weight.shape()),
                    fmt_shape(self.shape()),
                    fmt_shape(grad.shape())
                ),
            )
        }
        same_dtype(op, self.dtype(), weight.dtype());
        same_dtype(op, self.dtype(), grad.dtype());
        let m = weight.numel();
        if !self.device().is_cpu() || !weight.device().is_cpu() || !grad.device().is_cpu() {
            let (xhat, invstd) = self.normalized_rows(k, eps);
            let d: Vec<usize> = (self.ndim() - k..self.ndim()).collect();
            let d = d.as_slice();
            let dxhat = grad.mul(weight);
            let a = dxhat.sum_dim(d, true);
            let b = dxhat.mul(&xhat).sum_dim(d, true);
            let inner = dxhat.mul_scalar(m as f64).sub(&a).sub(&xhat.mul(&b));
            return invstd.mul_scalar(1.0 / m as f64).mul(&inner);
        }
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        fn kernel<T: Float>(x: &Array, w: &Array, g: &Array, m: usize, eps: f64, out: &mut Array) {
            let op = "layer_norm_backward";
            let (x_, w_, g_) = (x.values::<T>(op), w.values::<T>(op), g.values::<T>(op));
            let dx = out.out_slice::<T>(x.shape(), op);
            let eps = T::from(eps).expect("eps is a float");
            for_blocks(m, dx, &|start, dx| {
                let (x, g) = (&x_[start..start + dx.len()], &g_[start..start + dx.len()]);
                with_simd(
                    #[inline(always)]
                    || layer_norm_backward_rows(x, g, dx, &w_, m, eps),
                )
            });
        }
        dispatch_float!(self.dtype(), op, T => kernel::<T>(self, weight, grad, m, eps, &mut out));
        out
    }

    /// The gradients of [`layer_norm`](Array::layer_norm)'s weight and bias, given its input
    /// `self` and the output gradient `grad` (of `self`'s shape): `(Σ grad · x̂, Σ grad)` over
    /// the rows, each of shape `normalized_shape` (`self`'s trailing dims), `x̂` the
    /// normalized rows. One pass over the rows on the CPU (in parts of 64 rows, summed in
    /// order, so the result does not depend on the number of threads); on a GPU the same
    /// from its reductions and elementwise ops.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![1.0f64, 3.0, 10.0, 30.0], &[2, 2]);
    /// let g = Array::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let (dw, db) = x.layer_norm_param_grads(&g, &[2], 0.0);
    /// // both rows normalize to (-1, 1)
    /// assert_eq!(dw.to_vec::<f64>(), vec![-4.0, 6.0]);
    /// assert_eq!(db.to_vec::<f64>(), vec![4.0, 6.0]);
    /// ```
    ///
    /// Panics unless `normalized_shape` is `self`'s trailing dims, `grad` has `self`'s shape,
    /// and both its float dtype.
    #[track_caller]
    pub fn layer_norm_param_grads(
        &self,
        grad: &Array,
        normalized_shape: &[usize],
        eps: f64,
    ) -> (Array, Array) {
        let op = "layer_norm_param_grads";
        let k = normalized_shape.len();
        if grad.shape() != self.shape() || k == 0 || !self.shape().ends_with(normalized_shape) {
            fail(
                op,
                format_args!(
                    "the normalized shape {} must be the trailing dims of {}, and the \
                     gradient {} its shape",
                    fmt_shape(normalized_shape),
                    fmt_shape(self.shape()),
                    fmt_shape(grad.shape())
                ),
            )
        }
        same_dtype(op, self.dtype(), grad.dtype());
        if !self.device().is_cpu() || !grad.device().is_cpu() {
            let (xhat, _) = self.normalized_rows(k, eps);
            let rows: Vec<usize> = (0..self.ndim() - k).collect();
            let over_rows = |a: Array| match rows.is_empty() {
                true => a,
                false => a.sum_dim(rows.as_slice(), false),
            };
            return (over_rows(grad.mul(&xhat)), over_rows(grad.clone()));
        }
        fn kernel<T: Float>(x: &Array, g: &Array, shape: &[usize], eps: f64) -> (Array, Array) {
            let op = "layer_norm_param_grads";
            let m: usize = shape.iter().product();
            if m == 0 {
                return (Array::zeros(shape, T::DTYPE), Array::zeros(shape, T::DTYPE));
            }
            let (x_, g_) = (x.values::<T>(op), g.values::<T>(op));
            let eps = T::from(eps).expect("eps is a float");
            let part = PARAM_GRAD_ROWS * m;
            // each part's two sums side by side, [dw | db]
            let mut parts = vec![T::zero(); x_.len().div_ceil(part) * 2 * m];
            let parallel =
                crate::par::split(x_.len(), crate::elementwise::PARALLEL_MIN_TRANSCENDENTAL);
            crate::par::chunks(&mut parts, 2 * m, parallel, &|i, sums| {
                let rows = i * part..((i + 1) * part).min(x_.len());
                let (dw, db) = sums.split_at_mut(m);
                with_simd(
                    #[inline(always)]
                    || {
                        layer_norm_param_grad_rows(
                            &x_[rows.clone()],
                            &g_[rows.clone()],
                            dw,
                            db,
                            m,
                            eps,
                        )
                    },
                )
            });
            let (mut dw, mut db) = (vec![T::zero(); m], vec![T::zero(); m]);
            for sums in parts.chunks_exact(2 * m) {
                for (a, &b) in dw.iter_mut().chain(db.iter_mut()).zip(sums) {
                    *a += b;
                }
            }
            (Array::from_vec(dw, shape), Array::from_vec(db, shape))
        }
        dispatch_float!(self.dtype(), op, T => kernel::<T>(self, grad, normalized_shape, eps))
    }

    /// The rows of the trailing `k` dims normalized, `(x - mean) r`, and each row's `r = 1 /
    /// sqrt(var + eps)`, from the reductions and elementwise ops (a GPU's layer norm).
    fn normalized_rows(&self, k: usize, eps: f64) -> (Array, Array) {
        let dims: Vec<usize> = (self.ndim() - k..self.ndim()).collect();
        let d = dims.as_slice();
        let mean = self.mean_dim(d, true);
        let invstd = self.var_dim(d, 0, true).add_scalar(eps).rsqrt();
        (self.sub(&mean).mul(&invstd), invstd)
    }
}
