//! Softmax and log-softmax along a dim, forward and backward, each one fused pass per row.
//!
//! The input is viewed as `[outer, n, inner]` around the dim, so no transpose is needed:
//! rows are strided by `inner` when the dim is not the last.

use rayon::prelude::*;

use crate::dtype::{dispatch_float, Float};
use crate::elementwise::PARALLEL_MIN;
use crate::error::fail;
use crate::layout::{fmt_shape, Dim};
use crate::Array;

fn split(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// Runs `row(x, y, stride)` over every line along the dim: `x` and `y` start at the line's
/// first element and step by `stride`.
fn for_lines<T: Float>(
    outer: usize,
    n: usize,
    inner: usize,
    src: &[T],
    dst: &mut [T],
    row: impl Fn(&[T], &mut [T], usize) + Sync,
) {
    let block = n * inner;
    if block == 0 {
        return;
    }
    let per_block = |(s, d): (&[T], &mut [T])| {
        for i in 0..inner {
            row(&s[i..], &mut d[i..], inner);
        }
    };
    if crate::par::split(outer * block, PARALLEL_MIN) && outer > 1 {
        src.par_chunks(block)
            .zip(dst.par_chunks_mut(block))
            .for_each(per_block);
    } else {
        src.chunks(block)
            .zip(dst.chunks_mut(block))
            .for_each(per_block);
    }
}

fn softmax_line<T: Float>(x: &[T], y: &mut [T], n: usize, st: usize, log: bool) {
    let mut m = T::neg_infinity();
    for j in 0..n {
        m = m.max(x[j * st]);
    }
    if m == T::neg_infinity() {
        m = T::zero();
    }
    let mut sum = T::zero();
    // The running sum keeps this loop scalar, so the unfused exp costs nothing more here.
    for j in 0..n {
        let e = (x[j * st] - m).exp_kernel::<false>();
        sum += e;
        if !log {
            y[j * st] = e;
        }
    }
    if log {
        // (x - m) - ln(sum) keeps the largest entry exact, unlike x - (m + ln(sum)).
        let ls = sum.ln();
        for j in 0..n {
            y[j * st] = (x[j * st] - m) - ls;
        }
    } else {
        let inv = sum.recip();
        for j in 0..n {
            y[j * st] *= inv;
        }
    }
}

impl Array {
    /// `exp(x) / sum(exp(x))` along `dim`, computed stably.
    #[track_caller]
    pub fn softmax(&self, dim: impl Dim) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.softmax_into(dim, &mut out);
        out
    }

    /// `x - log(sum(exp(x)))` along `dim`, computed stably.
    #[track_caller]
    pub fn log_softmax(&self, dim: impl Dim) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.log_softmax_into(dim, &mut out);
        out
    }

    /// [`softmax`](Array::softmax) into `out`.
    #[track_caller]
    pub fn softmax_into(&self, dim: impl Dim, out: &mut Array) {
        self.softmax_impl(dim.resolve(self.ndim(), "softmax"), false, out)
    }

    /// [`log_softmax`](Array::log_softmax) into `out`.
    #[track_caller]
    pub fn log_softmax_into(&self, dim: impl Dim, out: &mut Array) {
        self.softmax_impl(dim.resolve(self.ndim(), "log_softmax"), true, out)
    }

    #[track_caller]
    fn softmax_impl(&self, d: usize, log: bool, out: &mut Array) {
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            let op = if log { "log_softmax" } else { "softmax" };
            return crate::cuda::softmax::softmax(self, None, d, log, out, op);
        }
        let (outer, n, inner) = split(self.shape(), d);
        fn kernel<T: Float>(
            a: &Array,
            out: &mut Array,
            outer: usize,
            n: usize,
            inner: usize,
            log: bool,
        ) {
            let src = a.values::<T>("softmax");
            let dst = out.out_slice::<T>(a.shape(), "softmax_into");
            for_lines(outer, n, inner, &src, dst, |x, y, st| {
                softmax_line(x, y, n, st, log)
            });
        }
        dispatch_float!(self.dtype(), "softmax", T => kernel::<T>(self, out, outer, n, inner, log))
    }

    /// Gradient of [`softmax`](Array::softmax): `self` is the output `y`, `grad` the output
    /// gradient; returns `y * (grad - sum(grad * y))` along `dim`.
    #[track_caller]
    pub fn softmax_backward(&self, grad: &Array, dim: impl Dim) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.softmax_backward_impl(
            grad,
            dim.resolve(self.ndim(), "softmax_backward"),
            false,
            &mut out,
        );
        out
    }

    /// [`softmax_backward`](Array::softmax_backward) into `out`.
    #[track_caller]
    pub fn softmax_backward_into(&self, grad: &Array, dim: impl Dim, out: &mut Array) {
        self.softmax_backward_impl(
            grad,
            dim.resolve(self.ndim(), "softmax_backward"),
            false,
            out,
        )
    }

    /// [`log_softmax_backward`](Array::log_softmax_backward) into `out`.
    #[track_caller]
    pub fn log_softmax_backward_into(&self, grad: &Array, dim: impl Dim, out: &mut Array) {
        self.softmax_backward_impl(
            grad,
            dim.resolve(self.ndim(), "log_softmax_backward"),
            true,
            out,
        )
    }

    /// Gradient of [`log_softmax`](Array::log_softmax): `self` is the output `y`, `grad` the
    /// output gradient; returns `grad - exp(y) * sum(grad)` along `dim`.
    #[track_caller]
    pub fn log_softmax_backward(&self, grad: &Array, dim: impl Dim) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.softmax_backward_impl(
            grad,
            dim.resolve(self.ndim(), "log_softmax_backward"),
            true,
            &mut out,
        );
        out
    }

    #[track_caller]
    fn softmax_backward_impl(&self, grad: &Array, d: usize, log: bool, out: &mut Array) {
        let op = if log {
            "log_softmax_backward"
        } else {
            "softmax_backward"
        };
        if grad.shape() != self.shape() {
            fail(
                op,
                format_args!(
                    "gradient shape {} differs from output shape {}",
                    fmt_shape(grad.shape()),
                    fmt_shape(self.shape())
                ),
            )
        }
        crate::error::same_dtype(op, self.dtype(), grad.dtype());
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !grad.device().is_cpu() {
            return crate::cuda::softmax::softmax(self, Some(grad), d, log, out, op);
        }
        let (outer, n, inner) = split(self.shape(), d);
        fn kernel<T: Float>(
            y: &Array,
            g: &Array,
            outer: usize,
            n: usize,
            inner: usize,
            log: bool,
            out: &mut Array,
        ) {
            let (y_, g_) = (
                y.values::<T>("softmax_backward"),
                g.values::<T>("softmax_backward"),
            );
            let block = n * inner;
            let dx = out.out_slice::<T>(y.shape(), "softmax_backward_into");
            if block > 0 {
                let body = |((ys, gs), dxs): ((&[T], &[T]), &mut [T])| {
                    for i in 0..inner {
                        let mut acc = T::zero();
                        for j in 0..n {
                            let k = i + j * inner;
                            acc += if log { gs[k] } else { gs[k] * ys[k] };
                        }
                        for j in 0..n {
                            let k = i + j * inner;
                            dxs[k] = if log {
                                gs[k] - ys[k].exp_kernel::<false>() * acc
                            } else {
                                ys[k] * (gs[k] - acc)
                            };
                        }
                    }
                };
                if crate::par::split(outer * block, PARALLEL_MIN) && outer > 1 {
                    y_.par_chunks(block)
                        .zip(g_.par_chunks(block))
                        .zip(dx.par_chunks_mut(block))
                        .for_each(body);
                } else {
                    y_.chunks(block)
                        .zip(g_.chunks(block))
                        .zip(dx.chunks_mut(block))
                        .for_each(body);
                }
            }
        }
        dispatch_float!(self.dtype(), op, T => kernel::<T>(self, grad, outer, n, inner, log, out))
    }
}
