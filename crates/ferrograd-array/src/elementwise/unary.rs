//! One-input elementwise ops.

use super::{map_into, PARALLEL_MIN, PARALLEL_MIN_TRANSCENDENTAL};
use crate::dtype::{dispatch_float, dispatch_number, Element, Float, Number};
use crate::fused::{clamp_value, MapFn};
use crate::Array;

/// Float-only unary ops: the threading threshold, then `name`, `name_into`, and the
/// per-element expression.
macro_rules! float_unary {
    ($parallel_min:expr; $($(#[$doc:meta])* $name:ident, $into:ident => $f:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self) -> Array {
                let mut out = Array::empty(self.shape(), self.dtype());
                self.$into(&mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into `out` (same shape and dtype).")]
            #[track_caller]
            pub fn $into(&self, out: &mut Array) {
                // `FMA`: whether the polynomial kernels may fuse (see `math::has_fma`).
                fn kernel<T: Float, const FMA: bool>(x: T) -> T { MapFn::$f.eval::<T, FMA>(x) }
                crate::math::with_fma!(F => dispatch_float!(self.dtype(), stringify!($name), T => map_into::<T, T>(self, out, stringify!($name), $parallel_min, kernel::<T, F>)))
            }
        )*}
    };
}

/// Unary ops defined for f32, f64 and i64.
macro_rules! number_unary {
    ($($(#[$doc:meta])* $name:ident, $into:ident => $f:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self) -> Array {
                let mut out = Array::empty(self.shape(), self.dtype());
                self.$into(&mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into `out` (same shape and dtype).")]
            #[track_caller]
            pub fn $into(&self, out: &mut Array) {
                fn kernel<T: Number>(x: T) -> T { MapFn::$f.eval_number(x) }
                dispatch_number!(self.dtype(), stringify!($name), T => map_into::<T, T>(self, out, stringify!($name), PARALLEL_MIN, kernel::<T>))
            }
        )*}
    };
}

number_unary! {
    /// `-x`.
    neg, neg_into => Neg;
    /// `|x|`.
    abs, abs_into => Abs;
    /// -1, 0 or 1 by the sign of `x` (NaN stays NaN).
    sign, sign_into => Sign;
    /// `max(x, 0)` (NaN stays NaN).
    relu, relu_into => Relu;
}

float_unary! { PARALLEL_MIN_TRANSCENDENTAL;
    /// `e^x`.
    exp, exp_into => Exp;
    /// Natural logarithm.
    log, log_into => Log;
    /// `ln(1 + x)`, accurate near 0.
    log1p, log1p_into => Log1p;
    /// `e^x - 1`, accurate near 0.
    expm1, expm1_into => Expm1;
    /// Sine.
    sin, sin_into => Sin;
    /// Cosine.
    cos, cos_into => Cos;
    /// Tangent.
    tan, tan_into => Tan;
    /// Hyperbolic sine.
    sinh, sinh_into => Sinh;
    /// Hyperbolic cosine.
    cosh, cosh_into => Cosh;
    /// Arcsine (NaN outside `[-1, 1]`).
    asin, asin_into => Asin;
    /// Arccosine (NaN outside `[-1, 1]`).
    acos, acos_into => Acos;
    /// Arctangent.
    atan, atan_into => Atan;
    /// The error function, `2/√π ∫₀ˣ e^(-t²) dt`.
    erf, erf_into => Erf;
    /// The inverse error function on `(-1, 1)` (±∞ at ±1, NaN outside).
    erfinv, erfinv_into => Erfinv;
    /// `ln |Γ(x)|` (+∞ at 0 and the negative integers).
    lgamma, lgamma_into => Lgamma;
    /// The digamma function `Γ'(x) / Γ(x)` (-∞ at 0, NaN at the negative integers).
    digamma, digamma_into => Digamma;
    /// Hyperbolic tangent.
    tanh, tanh_into => Tanh;
    /// The logistic function `1 / (1 + e^-x)`, computed without overflow for large `|x|`.
    sigmoid, sigmoid_into => Sigmoid;
}

float_unary! { PARALLEL_MIN;
    /// Square root.
    sqrt, sqrt_into => Sqrt;
    /// `1 / sqrt(x)`.
    rsqrt, rsqrt_into => Rsqrt;
    /// Round toward negative infinity.
    floor, floor_into => Floor;
    /// Round toward positive infinity.
    ceil, ceil_into => Ceil;
    /// Round to the nearest integer, halves to even (as PyTorch and NumPy do).
    round, round_into => Round;
    /// Round toward zero.
    trunc, trunc_into => Trunc;
    /// `1 / x`.
    reciprocal, reciprocal_into => Reciprocal;
    /// `x * x`.
    square, square_into => Square;
}

impl Array {
    /// Clamps into `[min, max]`; either bound may be absent. NaN stays NaN.
    #[track_caller]
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Array {
        let mut out = Array::empty(self.shape(), self.dtype());
        self.clamp_into(min, max, &mut out);
        out
    }

    /// [`clamp`](Array::clamp) into `out`.
    #[track_caller]
    pub fn clamp_into(&self, min: Option<f64>, max: Option<f64>, out: &mut Array) {
        dispatch_number!(self.dtype(), "clamp", T => {
            let (lo, hi) = (min.map(T::from_f64), max.map(T::from_f64));
            map_into::<T, T>(self, out, "clamp", PARALLEL_MIN, move |x| clamp_value(x, lo, hi))
        })
    }

    /// The polygamma function `ψ⁽ⁿ⁾(x)`, the `n`-th derivative of digamma (`n = 0` is
    /// digamma itself).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![1.0f64], &[1]);
    /// let trigamma = x.polygamma(1).to_vec::<f64>()[0]; // π²/6
    /// assert!((trigamma - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-14);
    /// ```
    #[track_caller]
    pub fn polygamma(&self, n: u32) -> Array {
        let mut out = Array::empty(self.shape(), self.dtype());
        self.polygamma_into(n, &mut out);
        out
    }

    /// [`polygamma`](Array::polygamma) into `out`.
    #[track_caller]
    pub fn polygamma_into(&self, n: u32, out: &mut Array) {
        dispatch_float!(self.dtype(), "polygamma", T => {
            map_into::<T, T>(self, out, "polygamma", PARALLEL_MIN_TRANSCENDENTAL, move |x| {
                MapFn::Polygamma(n).eval::<T, false>(x)
            })
        })
    }

    /// `x ^ exponent` for a scalar exponent.
    #[track_caller]
    pub fn pow_scalar(&self, exponent: f64) -> Array {
        let mut out = Array::empty(self.shape(), self.dtype());
        self.pow_scalar_into(exponent, &mut out);
        out
    }

    /// [`pow_scalar`](Array::pow_scalar) into `out`.
    #[track_caller]
    pub fn pow_scalar_into(&self, exponent: f64, out: &mut Array) {
        dispatch_float!(self.dtype(), "pow_scalar", T => match MapFn::pow_scalar(exponent) {
            MapFn::Square => map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, |x| MapFn::Square.eval::<T, false>(x)),
            MapFn::Identity => map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, |x| x),
            MapFn::Powi(n) => map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, move |x| x.powi(n)),
            f => map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, move |x| f.eval::<T, false>(x)),
        })
    }
}
