//! One-input elementwise ops.

use super::kernels::{map_float, map_number};
use super::{map_into, parallel_min, unsupported_dtype};
use crate::dtype::Float;
use crate::fused::MapFn;
use crate::math::{with_fma, with_simd};
use crate::{Array, DType};

/// Unary ops: `name`, `name_into`, and the [`MapFn`] they apply.
macro_rules! unary {
    ($($(#[$doc:meta])* $name:ident, $into:ident => $f:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self) -> Array {
                let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
                self.$into(&mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into `out` (same shape and dtype).")]
            #[track_caller]
            pub fn $into(&self, out: &mut Array) {
                self.map_fn_named(MapFn::$f, out, stringify!($name))
            }
        )*}
    };
}

impl Array {
    /// `f` applied to every element: the op [`MapFn`] names (`x.map_fn(MapFn::Exp)` is
    /// `x.exp()`), for code that holds functions as data, as the optimize mode does.
    /// Integer arrays take the functions also defined for integers (`Neg`, `Abs`, `Sign`,
    /// `Relu`, `Clamp`).
    ///
    /// ```
    /// use ferrograd_array::{Array, MapFn};
    /// let x = Array::from_vec(vec![-1.5f32, 0.0, 2.0], &[3]);
    /// assert!(x.map_fn(MapFn::Tanh).bit_eq(&x.tanh()));
    /// ```
    #[track_caller]
    pub fn map_fn(&self, f: MapFn) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.map_fn_into(f, &mut out);
        out
    }

    /// [`map_fn`](Array::map_fn) into `out` (same shape and dtype).
    #[track_caller]
    pub fn map_fn_into(&self, f: MapFn, out: &mut Array) {
        self.map_fn_named(f, out, "map_fn")
    }

    /// `f` over every element into `out`, errors naming `op`: one kernel per dtype and
    /// vector path serves every function (see `kernels.rs`).
    #[track_caller]
    pub(crate) fn map_fn_named(&self, f: MapFn, out: &mut Array, op: &str) {
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            return crate::cuda::elementwise::map(self, f, out, op);
        }
        #[track_caller]
        fn float<T: Float>(a: &Array, f: MapFn, out: &mut Array, op: &str, parallel_min: usize) {
            with_fma!(F => map_into::<T, T>(a, out, op, parallel_min, &|d, s| {
                with_simd(
                    #[inline(always)]
                    || map_float::<T, F>(f, d, s),
                )
            }))
        }
        let parallel_min = parallel_min(f.is_transcendental());
        match self.dtype() {
            DType::F32 => float::<f32>(self, f, out, op, parallel_min),
            DType::F64 => float::<f64>(self, f, out, op, parallel_min),
            DType::I64 if f.is_number() => {
                map_into::<i64, i64>(self, out, op, parallel_min, &|d, s| {
                    with_simd(
                        #[inline(always)]
                        || map_number(f, d, s),
                    )
                })
            }
            other => unsupported_dtype(op, other, f.is_number()),
        }
    }
}

unary! {
    /// `-x`.
    neg, neg_into => Neg;
    /// `|x|`.
    abs, abs_into => Abs;
    /// -1, 0 or 1 by the sign of `x` (NaN stays NaN).
    sign, sign_into => Sign;
    /// `max(x, 0)` (NaN stays NaN).
    relu, relu_into => Relu;
}

unary! {
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
    /// GELU, exact: `x Φ(x)` in one pass, `Φ` the standard normal distribution from
    /// `erfc(-x/√2)/2`, so the negative tail keeps its digits where `x (1 + erf(x/√2)) / 2`
    /// cancels to nothing (from x = -5.5 in f32): within 8 ulp in f32 while the result is
    /// normal (from x = -13.2 on it flushes towards 0), 1e-10 relatively in f64 (its
    /// gradient: [`gelu_backward`](Array::gelu_backward)).
    gelu, gelu_into => Gelu;
}

unary! {
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
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.clamp_into(min, max, &mut out);
        out
    }

    /// [`clamp`](Array::clamp) into `out`.
    #[track_caller]
    pub fn clamp_into(&self, min: Option<f64>, max: Option<f64>, out: &mut Array) {
        self.map_fn_named(MapFn::Clamp(min, max), out, "clamp")
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
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.polygamma_into(n, &mut out);
        out
    }

    /// [`polygamma`](Array::polygamma) into `out`.
    #[track_caller]
    pub fn polygamma_into(&self, n: u32, out: &mut Array) {
        self.map_fn_named(MapFn::Polygamma(n), out, "polygamma")
    }

    /// `x ^ exponent` for a scalar exponent, with C's `pow` at the edges (signs, zeros,
    /// infinities, NaN). An integer exponent up to 64 in magnitude is repeated squaring, the
    /// products of Rust's `powi` in its order (2 is `x * x`, 1 is `x`; each product rounds, so
    /// a large power can be a few ulp from the exact value); 0.5 is the square root
    /// (correctly rounded) and -0.5 its reciprocal (correctly rounded but within a rounding
    /// error's width of a boundary; f64 within 1.5 ulp on CPUs without fused multiply-adds);
    /// any other exponent is `e^(p ln|x|)` in f64 rounded to f32 (within 1 ulp) for f32, and
    /// libm's `pow` for f64.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![4.0f32, 2.0, -0.0], &[3]);
    /// assert_eq!(x.pow_scalar(0.5).to_f64_vec(), [2.0, 2f32.sqrt() as f64, 0.0]);
    /// assert_eq!(x.pow_scalar(-0.5).to_f64_vec()[0], 0.5);
    /// assert_eq!(x.pow_scalar(3.0).to_f64_vec()[..2], [64.0, 8.0]);
    /// ```
    #[track_caller]
    pub fn pow_scalar(&self, exponent: f64) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.pow_scalar_into(exponent, &mut out);
        out
    }

    /// [`pow_scalar`](Array::pow_scalar) into `out`.
    #[track_caller]
    pub fn pow_scalar_into(&self, exponent: f64, out: &mut Array) {
        self.map_fn_named(MapFn::pow_scalar(exponent), out, "pow_scalar")
    }
}
