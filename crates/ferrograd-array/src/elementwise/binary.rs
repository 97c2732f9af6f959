//! Two-input elementwise ops with broadcasting, and their forms with a scalar on either side.

use super::kernels::{compare, logic, map_bool, zip_float, zip_number, Logic};
use super::{broadcast_pair, map_into, parallel_min, unsupported_dtype, zip_into, PARALLEL_MIN};
use crate::dtype::{dispatch_any, Element, Float};
use crate::fused::ZipFn;
use crate::math::{with_fma, with_simd};
use crate::{Array, DType};

macro_rules! binary {
    ($($(#[$doc:meta])* $name:ident, $into:ident, $scalar:ident => $f:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, other: &Array) -> Array {
                let shape = broadcast_pair(stringify!($name), self.shape(), other.shape());
                let device = crate::error::same_device(stringify!($name), &[self, other]);
                let mut out = Array::empty_on(&shape, self.dtype(), device);
                self.$into(other, &mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into `out` (the broadcast shape, same dtype).")]
            #[track_caller]
            pub fn $into(&self, other: &Array, out: &mut Array) {
                self.zip_fn_named(other, ZipFn::$f, out, stringify!($name))
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") with a scalar right operand (converted to this array's dtype).")]
            #[track_caller]
            pub fn $scalar(&self, value: f64) -> Array {
                self.$name(&Array::full(&[], value, self.dtype()))
            }
        )*}
    };
}

binary! {
    /// `a + b`.
    add, add_into, add_scalar => Add;
    /// `a - b`.
    sub, sub_into, sub_scalar => Sub;
    /// `a * b`.
    mul, mul_into, mul_scalar => Mul;
    /// `a / b` (integer division truncates; dividing an integer by zero panics).
    div, div_into, div_scalar => Div;
    /// The larger of each pair; NaN if either is NaN.
    maximum, maximum_into, maximum_scalar => Maximum;
    /// The smaller of each pair; NaN if either is NaN.
    minimum, minimum_into, minimum_scalar => Minimum;
    /// `a - trunc(a / b) b`, with the sign of `a` (C's `fmod`; an integer `b` of 0 panics).
    fmod, fmod_into, fmod_scalar => Fmod;
    /// `a - floor(a / b) b`, with the sign of `b` (Python's `%`; an integer `b` of 0
    /// panics).
    remainder, remainder_into, remainder_scalar => Remainder;
}

binary! {
    /// `a ^ b` elementwise.
    pow, pow_into, pow_tensor_scalar => Pow;
    /// `atan2(a, b)`.
    atan2, atan2_into, atan2_scalar => Atan2;
}

impl Array {
    /// `f` of every pair of elements, with broadcasting: the op [`ZipFn`] names
    /// (`a.zip_fn(&b, ZipFn::Add)` is `a.add(&b)`), for code that holds functions as data.
    /// A comparison gives 1 or 0 in the operands' dtype (a mask a fused program can
    /// multiply by); the comparison ops (`eq`, `lt`, ...) give bool. Integer arrays take the
    /// functions also defined for integers.
    ///
    /// ```
    /// use ferrograd_array::{Array, ZipFn};
    /// let a = Array::from_vec(vec![1.0f64, 5.0], &[2]);
    /// let b = Array::from_vec(vec![3.0f64], &[1]);
    /// assert_eq!(a.zip_fn(&b, ZipFn::Lt).to_vec::<f64>(), vec![1.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn zip_fn(&self, other: &Array, f: ZipFn) -> Array {
        let shape = broadcast_pair("zip_fn", self.shape(), other.shape());
        let device = crate::error::same_device("zip_fn", &[self, other]);
        let mut out = Array::empty_on(&shape, self.dtype(), device);
        self.zip_fn_into(other, f, &mut out);
        out
    }

    /// [`zip_fn`](Array::zip_fn) into `out` (the broadcast shape, same dtype).
    #[track_caller]
    pub fn zip_fn_into(&self, other: &Array, f: ZipFn, out: &mut Array) {
        self.zip_fn_named(other, f, out, "zip_fn")
    }

    /// `f` over every pair into `out`, errors naming `op`: one kernel per dtype and vector
    /// path serves every function (see `kernels.rs`).
    #[track_caller]
    pub(crate) fn zip_fn_named(&self, other: &Array, f: ZipFn, out: &mut Array, op: &str) {
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !other.device().is_cpu() {
            return crate::cuda::elementwise::zip(self, other, f, out, op, false);
        }
        #[track_caller]
        fn float<T: Float>(a: &Array, b: &Array, f: ZipFn, out: &mut Array, op: &str) {
            let parallel_min = parallel_min(f.is_transcendental());
            with_fma!(F => zip_into::<T, T>(a, b, out, op, parallel_min, &|d, x, y| {
                with_simd(
                    #[inline(always)]
                    || zip_float::<T, F>(f, d, x, y),
                )
            }))
        }
        match self.dtype() {
            DType::F32 => float::<f32>(self, other, f, out, op),
            DType::F64 => float::<f64>(self, other, f, out, op),
            DType::I64 if f.is_number() => {
                if matches!(f, ZipFn::Div | ZipFn::Fmod | ZipFn::Remainder) {
                    // (refused here, naming the op and the caller's line, not inside a kernel
                    // on a worker thread)
                    let zero = match other.contiguous_slice::<i64>(op) {
                        Some(y) => y.contains(&0),
                        None => other.to_vec::<i64>().contains(&0),
                    };
                    if zero {
                        crate::error::fail(
                            op,
                            format_args!(
                                "integer division by zero (an {} divisor holds 0)",
                                other.dtype()
                            ),
                        );
                    }
                }
                zip_into::<i64, i64>(self, other, out, op, PARALLEL_MIN, &|d, x, y| {
                    with_simd(
                        #[inline(always)]
                        || zip_number(f, d, x, y),
                    )
                })
            }
            other => unsupported_dtype(op, other, f.is_number()),
        }
    }

    /// The comparison `f` of every pair, as bool, into `out`.
    #[track_caller]
    fn compare_into(&self, other: &Array, f: ZipFn, out: &mut Array, op: &str) {
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !other.device().is_cpu() {
            return crate::cuda::elementwise::zip(self, other, f, out, op, true);
        }
        #[track_caller]
        fn typed<T: Element>(a: &Array, b: &Array, f: ZipFn, out: &mut Array, op: &str) {
            zip_into::<T, bool>(a, b, out, op, PARALLEL_MIN, &|d, x, y| {
                with_simd(
                    #[inline(always)]
                    || compare(f, d, x, y),
                )
            })
        }
        dispatch_any!(self.dtype(), T => typed::<T>(self, other, f, out, op))
    }

    /// `value - self`.
    #[track_caller]
    pub fn rsub_scalar(&self, value: f64) -> Array {
        Array::full(&[], value, self.dtype()).sub(self)
    }

    /// `value / self`.
    #[track_caller]
    pub fn rdiv_scalar(&self, value: f64) -> Array {
        Array::full(&[], value, self.dtype()).div(self)
    }

    /// `value ^ self`.
    #[track_caller]
    pub fn rpow_scalar(&self, value: f64) -> Array {
        Array::full(&[], value, self.dtype()).pow(self)
    }
}

macro_rules! compare {
    ($($(#[$doc:meta])* $name:ident, $into:ident, $scalar:ident => $cmp:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, other: &Array) -> Array {
                let shape = broadcast_pair(stringify!($name), self.shape(), other.shape());
                let device = crate::error::same_device(stringify!($name), &[self, other]);
                let mut out = Array::empty_on(&shape, DType::Bool, device);
                self.$into(other, &mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into a bool `out` of the broadcast shape.")]
            #[track_caller]
            pub fn $into(&self, other: &Array, out: &mut Array) {
                self.compare_into(other, ZipFn::$cmp, out, stringify!($name))
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") against a scalar (converted to this array's dtype).")]
            #[track_caller]
            pub fn $scalar(&self, value: f64) -> Array {
                self.$name(&Array::full(&[], value, self.dtype()))
            }
        )*}
    };
}

compare! {
    /// `a == b`, as bool.
    eq, eq_into, eq_scalar => Eq;
    /// `a != b`, as bool.
    ne, ne_into, ne_scalar => Ne;
    /// `a < b`, as bool.
    lt, lt_into, lt_scalar => Lt;
    /// `a <= b`, as bool.
    le, le_into, le_scalar => Le;
    /// `a > b`, as bool.
    gt, gt_into, gt_scalar => Gt;
    /// `a >= b`, as bool.
    ge, ge_into, ge_scalar => Ge;
}

impl Array {
    /// Elementwise AND of two bool arrays.
    #[track_caller]
    pub fn logical_and(&self, other: &Array) -> Array {
        self.bool_binary(other, "logical_and", Logic::And)
    }

    /// Elementwise OR of two bool arrays.
    #[track_caller]
    pub fn logical_or(&self, other: &Array) -> Array {
        self.bool_binary(other, "logical_or", Logic::Or)
    }

    /// Elementwise NOT of a bool array.
    #[track_caller]
    pub fn logical_not(&self) -> Array {
        self.expect_bool("logical_not");
        let mut out = Array::empty(self.shape(), DType::Bool);
        map_into::<bool, bool>(self, &mut out, "logical_not", PARALLEL_MIN, &map_bool);
        out
    }

    #[track_caller]
    fn bool_binary(&self, other: &Array, op: &str, f: Logic) -> Array {
        self.expect_bool(op);
        other.expect_bool(op);
        let shape = broadcast_pair(op, self.shape(), other.shape());
        let mut out = Array::empty(&shape, DType::Bool);
        zip_into::<bool, bool>(self, other, &mut out, op, PARALLEL_MIN, &|d, x, y| {
            logic(f, d, x, y)
        });
        out
    }

    #[track_caller]
    pub(crate) fn expect_bool(&self, op: &str) {
        if self.dtype() != DType::Bool {
            crate::error::dtype_fail(op, self.dtype(), "bool")
        }
    }

    /// True when every pair of elements is within `atol + rtol * |other|` (NaNs never match).
    /// Shapes must broadcast.
    #[track_caller]
    pub fn allclose(&self, other: &Array, rtol: f64, atol: f64) -> bool {
        let shape = broadcast_pair("allclose", self.shape(), other.shape());
        let (a, b) = (
            self.expand(&shape).to_f64_vec(),
            other.expand(&shape).to_f64_vec(),
        );
        a.iter()
            .zip(&b)
            .all(|(x, y)| (x - y).abs() <= atol + rtol * y.abs())
    }
}

/// The activations' gradients: each a two-input function of the forward's output or input
/// (`self`) and the output gradient, one pass over the pair, broadcast.
macro_rules! backward {
    ($($(#[$doc:meta])* $name:ident, $into:ident => $f:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, grad: &Array) -> Array {
                let op = stringify!($name);
                let mut out = Array::empty_on(
                    &broadcast_pair(op, self.shape(), grad.shape()),
                    self.dtype(),
                    crate::error::same_device(op, &[self, grad]),
                );
                self.$into(grad, &mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into `out`.")]
            #[track_caller]
            pub fn $into(&self, grad: &Array, out: &mut Array) {
                self.zip_fn_named(grad, ZipFn::$f, out, stringify!($name))
            }
        )*}
    };
}

backward! {
    /// The gradient of `tanh` from its output: `grad * (1 - y²)` in one pass (`self` is `y`).
    tanh_backward, tanh_backward_into => TanhBackward;
    /// The gradient of `sigmoid` from its output: `grad * y (1 - y)` in one pass.
    sigmoid_backward, sigmoid_backward_into => SigmoidBackward;
    /// The gradient of [`gelu`](Array::gelu) from its input: `grad (Φ(x) + x φ(x))` in one
    /// pass (`self` is `x`; `Φ` and `φ` the standard normal's distribution and density).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![-1.0f64, 0.0, 2.0], &[3]);
    /// let g = x.gelu_backward(&Array::from_vec(vec![1.0f64, 2.0, 1.0], &[3])).to_vec::<f64>();
    /// // Φ(0) = 1/2, times 2; Φ(-1) - φ(-1); Φ(2) + 2 φ(2)
    /// assert!((g[0] + 0.083315470587686).abs() < 1e-14 && g[1] == 1.0);
    /// assert!((g[2] - 1.085231801078197).abs() < 1e-14);
    /// ```
    gelu_backward, gelu_backward_into => GeluBackward;
}
