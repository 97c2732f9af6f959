//! One-input elementwise ops.

use super::{map_into, PARALLEL_MIN, PARALLEL_MIN_TRANSCENDENTAL};
use crate::dtype::{dispatch_float, dispatch_number, Float, Number};
use crate::Array;

/// Float-only unary ops: the threading threshold, then `name`, `name_into`, and the
/// per-element expression.
macro_rules! float_unary {
    ($parallel_min:expr; $($(#[$doc:meta])* $name:ident, $into:ident => |$x:ident| $body:expr;)*) => {
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
                fn kernel<T: Float, const FMA: bool>($x: T) -> T { $body }
                crate::math::with_fma!(F => dispatch_float!(self.dtype(), stringify!($name), T => map_into::<T, T>(self, out, stringify!($name), $parallel_min, kernel::<T, F>)))
            }
        )*}
    };
}

/// Unary ops defined for f32, f64 and i64.
macro_rules! number_unary {
    ($($(#[$doc:meta])* $name:ident, $into:ident => |$x:ident| $body:expr;)*) => {
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
                fn kernel<T: Number>($x: T) -> T { $body }
                dispatch_number!(self.dtype(), stringify!($name), T => map_into::<T, T>(self, out, stringify!($name), PARALLEL_MIN, kernel::<T>))
            }
        )*}
    };
}

number_unary! {
    /// `-x`.
    neg, neg_into => |x| -x;
    /// `|x|`.
    abs, abs_into => |x| if x < T::zero() { -x } else { x };
    /// -1, 0 or 1 by the sign of `x` (NaN stays NaN).
    sign, sign_into => |x| if x > T::zero() { T::one() } else if x < T::zero() { -T::one() } else { x };
    /// `max(x, 0)` (NaN stays NaN).
    relu, relu_into => |x| if x < T::zero() { T::zero() } else { x };
}

float_unary! { PARALLEL_MIN_TRANSCENDENTAL;
    /// `e^x`.
    exp, exp_into => |x| x.exp_kernel::<FMA>();
    /// Natural logarithm.
    log, log_into => |x| x.ln();
    /// `ln(1 + x)`, accurate near 0.
    log1p, log1p_into => |x| x.ln_1p();
    /// `e^x - 1`, accurate near 0.
    expm1, expm1_into => |x| x.exp_m1();
    /// Sine.
    sin, sin_into => |x| x.sin();
    /// Cosine.
    cos, cos_into => |x| x.cos();
    /// Tangent.
    tan, tan_into => |x| x.tan();
    /// Hyperbolic sine.
    sinh, sinh_into => |x| x.sinh();
    /// Hyperbolic cosine.
    cosh, cosh_into => |x| x.cosh();
    /// Arcsine (NaN outside `[-1, 1]`).
    asin, asin_into => |x| x.asin();
    /// Arccosine (NaN outside `[-1, 1]`).
    acos, acos_into => |x| x.acos();
    /// Arctangent.
    atan, atan_into => |x| x.atan();
    /// Hyperbolic tangent.
    tanh, tanh_into => |x| x.tanh_kernel::<FMA>();
    /// The logistic function `1 / (1 + e^-x)`, computed without overflow for large `|x|`.
    sigmoid, sigmoid_into => |x| x.sigmoid_kernel::<FMA>();
}

float_unary! { PARALLEL_MIN;
    /// Square root.
    sqrt, sqrt_into => |x| x.sqrt();
    /// `1 / sqrt(x)`.
    rsqrt, rsqrt_into => |x| x.sqrt().recip();
    /// Round toward negative infinity.
    floor, floor_into => |x| x.floor();
    /// Round toward positive infinity.
    ceil, ceil_into => |x| x.ceil();
    /// Round to the nearest integer, halves to even (as PyTorch and NumPy do).
    round, round_into => |x| {
        let r = x.round();
        if (x - x.trunc()).abs() == T::from(0.5).unwrap() && (r / T::from(2.0).unwrap()).fract() != T::zero() {
            r - x.signum()
        } else {
            r
        }
    };
    /// `1 / x`.
    reciprocal, reciprocal_into => |x| x.recip();
    /// `x * x`.
    square, square_into => |x| x * x;
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
            let lo = min.map(<T as crate::Element>::from_f64);
            let hi = max.map(<T as crate::Element>::from_f64);
            map_into::<T, T>(self, out, "clamp", PARALLEL_MIN, move |x| {
                let x = match lo { Some(l) if x < l => l, _ => x };
                match hi { Some(h) if x > h => h, _ => x }
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
        dispatch_float!(self.dtype(), "pow_scalar", T => {
            let e = <T as crate::Element>::from_f64(exponent);
            if exponent == 2.0 {
                map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, |x| x * x)
            } else if exponent == 1.0 {
                map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, |x| x)
            } else if exponent.fract() == 0.0 && exponent.abs() <= 64.0 {
                let n = exponent as i32;
                map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, move |x| x.powi(n))
            } else {
                map_into::<T, T>(self, out, "pow_scalar", PARALLEL_MIN, move |x| x.powf(e))
            }
        })
    }
}
