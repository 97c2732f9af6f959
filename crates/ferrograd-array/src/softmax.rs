//! Softmax and log-softmax along a dim, forward and backward, each one fused pass per row.
//!
//! The input is viewed as `[outer, n, inner]` around the dim, so no transpose is needed:
//! rows are strided by `inner` when the dim is not the last.

use crate::dtype::{dispatch_float, Float};
use crate::error::fail;
use crate::layout::{fmt_shape, Dim};
use crate::math::{with_fma, with_simd};
use crate::par::for_blocks;
use crate::reduce::{sum_of, LANES};
use crate::Array;

fn split(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// The largest element of `x` (NaN ignored, as `max`), `-inf` for an empty row. (Which of
/// `0.0` and `-0.0` when both are largest is unspecified: `x - max` is the same either way.)
#[inline(always)]
fn max_of<T: Float>(x: &[T]) -> T {
    let larger = |a: T, b: T| if b > a { b } else { a };
    let mut acc = [T::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = larger(acc[l], c[l]);
        }
    }
    // the lanes in halves (max is exact, so any order gives the same value), not in a
    // chain of 16 dependent steps, which also compiled to a loop over the lanes in memory
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] = larger(acc[l], acc[l + width]);
        }
        width /= 2;
    }
    rest.iter().fold(acc[0], |m, &v| larger(m, v))
}

/// Softmax (or log-softmax) of each of `x`'s blocks `[n, inner]` along `n` into `y`. A
/// contiguous row (`inner` 1) runs as vector passes over it (its maximum, the exponentials,
/// their sum in [`LANES`] running sums, the scaling); lines strided by `inner` run side by
/// side, the vectors along `inner`, each line's sum in order.
#[inline(always)]
fn softmax_blocks<T: Float, const FMA: bool>(
    x: &[T],
    y: &mut [T],
    n: usize,
    inner: usize,
    log: bool,
) {
    let finite = |m: T| if m == T::neg_infinity() { T::zero() } else { m };
    if inner == 1 {
        for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
            let m = finite(max_of(x));
            if !T::exp_shifted_fast::<FMA>(y, Some(x), m, None) {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - m).exp_kernel::<FMA>();
                }
            }
            let sum = sum_of(y, y, |e, _| e);
            if log {
                // (x - m) - ln(sum) keeps the largest entry exact, unlike x - (m + ln(sum)).
                let ls = sum.ln();
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - m) - ls;
                }
            } else {
                let inv = sum.recip();
                for y in y.iter_mut() {
                    *y *= inv;
                }
            }
        }
        return;
    }
    let block = n * inner;
    let mut m = vec![T::zero(); inner];
    let mut sum = vec![T::zero(); inner];
    for (x, y) in x.chunks_exact(block).zip(y.chunks_exact_mut(block)) {
        m.fill(T::neg_infinity());
        for row in x.chunks_exact(inner) {
            for (m, &v) in m.iter_mut().zip(row) {
                *m = if v > *m { v } else { *m };
            }
        }
        m.iter_mut().for_each(|v| *v = finite(*v));
        sum.fill(T::zero());
        for (xr, yr) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
            for (((y, &x), &m), s) in yr.iter_mut().zip(xr).zip(&m).zip(sum.iter_mut()) {
                let e = (x - m).exp_kernel::<FMA>();
                *s += e;
                *y = e;
            }
        }
        if log {
            sum.iter_mut().for_each(|s| *s = s.ln());
            for (xr, yr) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
                for (((y, &x), &m), &ls) in yr.iter_mut().zip(xr).zip(&m).zip(&sum) {
                    *y = (x - m) - ls;
                }
            }
        } else {
            sum.iter_mut().for_each(|s| *s = s.recip());
            for yr in y.chunks_exact_mut(inner) {
                for (y, &inv) in yr.iter_mut().zip(&sum) {
                    *y *= inv;
                }
            }
        }
    }
}

/// Attention's weights over each matrix `[l, s]` of `x` (contiguous, row-major): each row's
/// softmax of `scale · x`, with `CAUSAL` row `i`'s over its first `min(i + 1, s)` entries and
/// the rest 0. The same arithmetic as `mul_scalar`, a mask of `-inf` and [`softmax_blocks`]
/// (the same maximum, exponentials, lane sums over the whole row with the masked entries 0,
/// and scaling), so the same bits, with no exponential for a masked entry, and weights below
/// the smallest normal float 0: an exponent below `ln` of it takes the exponential's `-inf`
/// path, which makes no subnormal number on the way, and a weight the scaling leaves below
/// it is zeroed.
#[inline(always)]
fn attention_softmax_blocks<T: Float, const FMA: bool, const CAUSAL: bool>(
    x: &[T],
    y: &mut [T],
    l: usize,
    s: usize,
    scale: T,
) {
    let finite = |m: T| if m == T::neg_infinity() { T::zero() } else { m };
    let ln_tiny = T::min_positive_value().ln();
    for (x, y) in x.chunks_exact(l * s).zip(y.chunks_exact_mut(l * s)) {
        for (i, (x, y)) in x.chunks_exact(s).zip(y.chunks_exact_mut(s)).enumerate() {
            let valid = if CAUSAL { (i + 1).min(s) } else { s };
            // The maximum and the exponentials run on whole vectors, to the kept entries'
            // last one, whose masked entries are -inf as in the composition (a row's vector
            // tail, element by element, cost more than the exponentials it saved).
            let whole = valid.next_multiple_of(LANES).min(s);
            let (kept, masked) = y.split_at_mut(whole);
            for (y, &x) in kept.iter_mut().zip(x) {
                *y = x * scale;
            }
            kept[valid..].fill(T::neg_infinity());
            let m = finite(max_of(kept));
            if !T::exp_shifted_fast::<FMA>(kept, None, m, Some(ln_tiny)) {
                for y in kept.iter_mut() {
                    let z = *y - m;
                    *y = (if z < ln_tiny { T::neg_infinity() } else { z }).exp_kernel::<FMA>();
                }
            }
            masked.fill(T::zero());
            let inv = sum_of(y, y, |e, _| e).recip();
            for y in y.iter_mut() {
                *y = flush(*y * inv);
            }
        }
    }
}

/// [`attention_softmax_blocks`]' gradient over each row of `s`: `scale · y (g - Σ g y)`
/// (softmax's, then the scaling, rounded as the two ops round them), results of magnitude
/// below the smallest normal float 0.
#[inline(always)]
fn attention_softmax_backward_blocks<T: Float>(y: &[T], g: &[T], dx: &mut [T], s: usize, scale: T) {
    for ((y, g), dx) in y
        .chunks_exact(s)
        .zip(g.chunks_exact(s))
        .zip(dx.chunks_exact_mut(s))
    {
        softmax_grad_row(y, g, dx, |d| flush(d * scale));
    }
}

/// One row of softmax's gradient, `finish(y (g - Σ g y))`, into `dx`.
#[inline(always)]
fn softmax_grad_row<T: Float>(y: &[T], g: &[T], dx: &mut [T], finish: impl Fn(T) -> T) {
    let acc = sum_of(g, y, |g, y| g * y);
    for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
        *dx = finish(y * (g - acc));
    }
}

/// `v`, or 0 where its magnitude is below the smallest normal float (NaN kept): the
/// attention softmax's flush, in its kernels.
#[inline(always)]
fn flush<T: Float>(v: T) -> T {
    if v.abs() < T::min_positive_value() {
        T::zero()
    } else {
        v
    }
}

/// `a` with its entries of magnitude below the smallest normal float 0 (NaN kept): [`flush`]
/// composed of array ops, for devices without the kernels.
fn flush_subnormals(a: &Array, op: &str) -> Array {
    let tiny = match a.dtype() {
        crate::DType::F32 => f64::from(f32::MIN_POSITIVE),
        _ => f64::MIN_POSITIVE,
    };
    let zero = Array::full(&[], 0.0, a.dtype())
        .to_device(a.device())
        .unwrap_or_else(|e| fail(op, e));
    a.abs().lt_scalar(tiny).where_cond(&zero, a)
}

/// The gradient of each block `[n, inner]` along `n`: `y (g - Σ g y)` for softmax, `g -
/// exp(y) Σ g` for log-softmax (`y` the forward's output), laid out as in
/// [`softmax_blocks`].
#[inline(always)]
fn softmax_backward_blocks<T: Float, const FMA: bool>(
    y: &[T],
    g: &[T],
    dx: &mut [T],
    n: usize,
    inner: usize,
    log: bool,
) {
    if inner == 1 {
        for ((y, g), dx) in y
            .chunks_exact(n)
            .zip(g.chunks_exact(n))
            .zip(dx.chunks_exact_mut(n))
        {
            if log {
                let acc = sum_of(g, g, |g, _| g);
                for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                    *dx = g - y.exp_kernel::<FMA>() * acc;
                }
            } else {
                softmax_grad_row(y, g, dx, |d| d);
            }
        }
        return;
    }
    let block = n * inner;
    let mut acc = vec![T::zero(); inner];
    for ((y, g), dx) in y
        .chunks_exact(block)
        .zip(g.chunks_exact(block))
        .zip(dx.chunks_exact_mut(block))
    {
        acc.fill(T::zero());
        for (yr, gr) in y.chunks_exact(inner).zip(g.chunks_exact(inner)) {
            for ((a, &y), &g) in acc.iter_mut().zip(yr).zip(gr) {
                *a += if log { g } else { g * y };
            }
        }
        for ((yr, gr), dr) in y
            .chunks_exact(inner)
            .zip(g.chunks_exact(inner))
            .zip(dx.chunks_exact_mut(inner))
        {
            for (((dx, &y), &g), &a) in dr.iter_mut().zip(yr).zip(gr).zip(&acc) {
                *dx = if log {
                    g - y.exp_kernel::<FMA>() * a
                } else {
                    y * (g - a)
                };
            }
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
            debug_assert_eq!(dst.len(), outer * n * inner);
            for_blocks(n * inner, dst, &|start, y| {
                let x = &src[start..start + y.len()];
                with_fma!(FMA => with_simd(
                    #[inline(always)]
                    || softmax_blocks::<T, FMA>(x, y, n, inner, log),
                ))
            });
        }
        dispatch_float!(self.dtype(), "softmax", T => kernel::<T>(self, out, outer, n, inner, log))
    }

    /// Attention's weights from its scores `self` `[..., l, s]`: the softmax of `scale ·
    /// self` along the last dim; with `causal`, row `i` of the last two dims over its first
    /// `min(i + 1, s)` entries only (query `i` sees keys `0..=i`), the rest 0. The same
    /// values, bit for bit, as `mul_scalar(scale)` (with `causal`, the masked entries then
    /// set to `-inf`) and [`softmax`](Array::softmax) along the last dim, in one pass per
    /// row that computes no exponential for a masked entry, except that a weight below the
    /// smallest normal float (1.2·10⁻³⁸ in f32, 2.2·10⁻³⁰⁸ in f64) is 0, as PyTorch's
    /// `scaled_dot_product_attention` makes it on the CPU. Such a weight moves no output of
    /// the attention by more than itself times a value, and as a subnormal number it costs
    /// the products it enters 5-50x on x86 cores (a microcode assist per vector; a sharp
    /// attention's rows hold many: `e^-90`). Its gradient is
    /// [`attention_softmax_backward`](Array::attention_softmax_backward).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let scores = Array::from_vec(vec![5.0f64, 9.0, 1.0, 1.0], &[2, 2]);
    /// let causal = scores.attention_softmax(0.5, true);
    /// assert_eq!(causal.to_vec::<f64>(), vec![1.0, 0.0, 0.5, 0.5]);
    /// // 2 more in the first row's scaled scores: e^2 times the weight
    /// let all = scores.attention_softmax(0.5, false).to_vec::<f64>();
    /// assert!((all[1] / all[0] - 2f64.exp()).abs() < 1e-12);
    /// ```
    ///
    /// Panics unless `self` is a float array of at least one dim (two with `causal`).
    #[track_caller]
    pub fn attention_softmax(&self, scale: f64, causal: bool) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.attention_softmax_into(scale, causal, &mut out);
        out
    }

    /// [`attention_softmax`](Array::attention_softmax) into `out`.
    #[track_caller]
    pub fn attention_softmax_into(&self, scale: f64, causal: bool, out: &mut Array) {
        let op = "attention_softmax";
        if self.ndim() < 1 + usize::from(causal) {
            fail(
                op,
                format_args!(
                    "needs scores [..., {}s], got {}",
                    if causal { "l, " } else { "" },
                    fmt_shape(self.shape())
                ),
            )
        }
        // (without the mask, each row is a matrix of one)
        let (l, s) = (if causal { self.size(-2) } else { 1 }, self.size(-1));
        if !self.device().is_cpu() {
            let mut scores = self.mul_scalar(scale);
            if causal {
                let allowed = Array::ones(&[l, s], self.dtype())
                    .to_device(self.device())
                    .unwrap_or_else(|e| fail(op, e))
                    .tril(0)
                    .gt_scalar(0.0);
                let masked = Array::full(&[], f64::NEG_INFINITY, self.dtype())
                    .to_device(self.device())
                    .unwrap_or_else(|e| fail(op, e));
                scores = allowed.where_cond(&scores, &masked);
            }
            return flush_subnormals(&scores.softmax(-1), op).contiguous_into(out);
        }
        fn kernel<T: Float, const CAUSAL: bool>(
            a: &Array,
            out: &mut Array,
            l: usize,
            s: usize,
            scale: f64,
        ) {
            let op = "attention_softmax";
            let src = a.values::<T>(op);
            let dst = out.out_slice::<T>(a.shape(), op);
            let scale = T::from(scale).expect("the scale is a float");
            for_blocks(l * s, dst, &|start, y| {
                let x = &src[start..start + y.len()];
                with_fma!(FMA => with_simd(
                    #[inline(always)]
                    || attention_softmax_blocks::<T, FMA, CAUSAL>(x, y, l, s, scale),
                ))
            });
        }
        if causal {
            dispatch_float!(self.dtype(), op, T => kernel::<T, true>(self, out, l, s, scale))
        } else {
            dispatch_float!(self.dtype(), op, T => kernel::<T, false>(self, out, l, s, scale))
        }
    }

    /// Gradient of [`attention_softmax`](Array::attention_softmax), with or without the
    /// causal mask (a masked weight is 0, and so is its gradient): `self` is its output `y`,
    /// `grad` the output gradient; returns `scale · y (grad - Σ grad y)` along the last dim,
    /// the same values, bit for bit, as [`softmax_backward`](Array::softmax_backward) then
    /// `mul_scalar(scale)`, in one pass, except that results of magnitude below the
    /// smallest normal float are 0 (as the forward's weights: see there).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let y = Array::from_vec(vec![1.0f64, 0.0, 0.25, 0.75], &[2, 2]);
    /// let g = Array::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let dx = y.attention_softmax_backward(&g, 2.0);
    /// assert_eq!(dx.to_vec::<f64>(), vec![0.0, 0.0, -0.375, 0.375]);
    /// ```
    ///
    /// Panics unless `self` and `grad` are float arrays of one shape and dtype, of at least
    /// one dim.
    #[track_caller]
    pub fn attention_softmax_backward(&self, grad: &Array, scale: f64) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.attention_softmax_backward_into(grad, scale, &mut out);
        out
    }

    /// [`attention_softmax_backward`](Array::attention_softmax_backward) into `out`.
    #[track_caller]
    pub fn attention_softmax_backward_into(&self, grad: &Array, scale: f64, out: &mut Array) {
        let op = "attention_softmax_backward";
        if self.ndim() < 1 || grad.shape() != self.shape() {
            fail(
                op,
                format_args!(
                    "needs weights [..., s] and a gradient of their shape, got {} and {}",
                    fmt_shape(self.shape()),
                    fmt_shape(grad.shape())
                ),
            )
        }
        crate::error::same_dtype(op, self.dtype(), grad.dtype());
        if !self.device().is_cpu() || !grad.device().is_cpu() {
            let dx = self.softmax_backward(grad, -1).mul_scalar(scale);
            return flush_subnormals(&dx, op).contiguous_into(out);
        }
        let s = self.size(-1);
        fn kernel<T: Float>(y: &Array, g: &Array, out: &mut Array, s: usize, scale: f64) {
            let op = "attention_softmax_backward";
            let (y_, g_) = (y.values::<T>(op), g.values::<T>(op));
            let dx = out.out_slice::<T>(y.shape(), op);
            let scale = T::from(scale).expect("the scale is a float");
            for_blocks(s, dx, &|start, dx| {
                let (y, g) = (&y_[start..start + dx.len()], &g_[start..start + dx.len()]);
                with_simd(
                    #[inline(always)]
                    || attention_softmax_backward_blocks::<T>(y, g, dx, s, scale),
                )
            });
        }
        dispatch_float!(self.dtype(), op, T => kernel::<T>(self, grad, out, s, scale))
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
            let dx = out.out_slice::<T>(y.shape(), "softmax_backward_into");
            debug_assert_eq!(dx.len(), outer * n * inner);
            for_blocks(n * inner, dx, &|start, dx| {
                let (y, g) = (&y_[start..start + dx.len()], &g_[start..start + dx.len()]);
                with_fma!(FMA => with_simd(
                    #[inline(always)]
                    || softmax_backward_blocks::<T, FMA>(y, g, dx, n, inner, log),
                ))
            });
        }
        dispatch_float!(self.dtype(), op, T => kernel::<T>(self, grad, outer, n, inner, log, out))
    }
}
