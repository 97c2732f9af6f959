//! Layer normalization's forward as one pass per row: each row's mean and variance in
//! vector running sums, then the normalized, scaled and shifted row.

use crate::dtype::{dispatch_float, Float};
use crate::error::{fail, same_dtype};
use crate::layout::fmt_shape;
use crate::math::with_simd;
use crate::par::for_blocks;
use crate::reduce::sum_of;
use crate::Array;

/// Normalizes each row of `m` elements of `x` into `y`, then scales by `w` and shifts by `b`.
#[inline(always)]
fn layer_norm_rows<T: Float>(x: &[T], y: &mut [T], w: &[T], b: &[T], m: usize, eps: T) {
    let count = T::from(m).expect("a row length is a float");
    for (x, y) in x.chunks_exact(m).zip(y.chunks_exact_mut(m)) {
        let mean = sum_of(x, x, |v, _| v) / count;
        let var = sum_of(x, x, |v, _| (v - mean) * (v - mean)) / count;
        let r = (var + eps).sqrt().recip();
        for (((y, &x), &w), &b) in y.iter_mut().zip(x).zip(w).zip(b) {
            *y = (x - mean) * r * w + b;
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
        if bias.shape() != weight.shape()
            || k > self.ndim()
            || self.shape()[self.ndim() - k..] != *weight.shape()
        {
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
            let dims: Vec<usize> = (self.ndim() - k..self.ndim()).collect();
            let d = dims.as_slice();
            let mean = self.mean_dim(d, true);
            let invstd = self.var_dim(d, 0, true).add_scalar(eps).rsqrt();
            return self.sub(&mean).mul(&invstd).mul(weight).add(bias);
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
}
