//! Two-input elementwise ops with broadcasting, and their forms with a scalar on either side.

use super::{broadcast_pair, zip_into};
use crate::dtype::{dispatch_any, dispatch_float, dispatch_number, Float, Number};
use crate::fused::ZipFn;
use crate::{Array, DType};

macro_rules! binary {
    ($dispatch:ident, $bound:ident, $eval:ident; $($(#[$doc:meta])* $name:ident, $into:ident, $scalar:ident => $f:ident;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, other: &Array) -> Array {
                let shape = broadcast_pair(stringify!($name), self.shape(), other.shape());
                let mut out = Array::empty(&shape, self.dtype());
                self.$into(other, &mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into `out` (the broadcast shape, same dtype).")]
            #[track_caller]
            pub fn $into(&self, other: &Array, out: &mut Array) {
                fn kernel<T: $bound>(x: T, y: T) -> T { ZipFn::$f.$eval(x, y) }
                $dispatch!(self.dtype(), stringify!($name), T => zip_into::<T, T>(self, other, out, stringify!($name), kernel::<T>))
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") with a scalar right operand (converted to this array's dtype).")]
            #[track_caller]
            pub fn $scalar(&self, value: f64) -> Array {
                self.$name(&Array::full(&[], value, self.dtype()))
            }
        )*}
    };
}

binary! { dispatch_number, Number, eval_number;
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

binary! { dispatch_float, Float, eval;
    /// `a ^ b` elementwise.
    pow, pow_into, pow_tensor_scalar => Pow;
    /// `atan2(a, b)`.
    atan2, atan2_into, atan2_scalar => Atan2;
}

impl Array {
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
    ($($(#[$doc:meta])* $name:ident, $into:ident, $scalar:ident => $cmp:tt;)*) => {
        impl Array {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, other: &Array) -> Array {
                let shape = broadcast_pair(stringify!($name), self.shape(), other.shape());
                let mut out = Array::empty(&shape, DType::Bool);
                self.$into(other, &mut out);
                out
            }

            #[doc = concat!("[`", stringify!($name), "`](Array::", stringify!($name), ") into a bool `out` of the broadcast shape.")]
            #[track_caller]
            pub fn $into(&self, other: &Array, out: &mut Array) {
                dispatch_any!(self.dtype(), T => zip_into::<T, bool>(self, other, out, stringify!($name), |x, y| x $cmp y))
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
    eq, eq_into, eq_scalar => ==;
    /// `a != b`, as bool.
    ne, ne_into, ne_scalar => !=;
    /// `a < b`, as bool.
    lt, lt_into, lt_scalar => <;
    /// `a <= b`, as bool.
    le, le_into, le_scalar => <=;
    /// `a > b`, as bool.
    gt, gt_into, gt_scalar => >;
    /// `a >= b`, as bool.
    ge, ge_into, ge_scalar => >=;
}

impl Array {
    /// Elementwise AND of two bool arrays.
    #[track_caller]
    pub fn logical_and(&self, other: &Array) -> Array {
        self.bool_binary(other, "logical_and", |x, y| x && y)
    }

    /// Elementwise OR of two bool arrays.
    #[track_caller]
    pub fn logical_or(&self, other: &Array) -> Array {
        self.bool_binary(other, "logical_or", |x, y| x || y)
    }

    /// Elementwise NOT of a bool array.
    #[track_caller]
    pub fn logical_not(&self) -> Array {
        self.expect_bool("logical_not");
        let mut out = Array::empty(self.shape(), DType::Bool);
        super::map_into::<bool, bool>(self, &mut out, "logical_not", super::PARALLEL_MIN, |x| !x);
        out
    }

    #[track_caller]
    fn bool_binary(&self, other: &Array, op: &str, f: fn(bool, bool) -> bool) -> Array {
        self.expect_bool(op);
        other.expect_bool(op);
        let shape = broadcast_pair(op, self.shape(), other.shape());
        let mut out = Array::empty(&shape, DType::Bool);
        zip_into::<bool, bool>(self, other, &mut out, op, f);
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

impl Array {
    /// The gradient of `tanh` from its output: `grad * (1 - y²)` in one pass (`self` is `y`).
    #[track_caller]
    pub fn tanh_backward(&self, grad: &Array) -> Array {
        let mut out = Array::empty(
            &broadcast_pair("tanh_backward", self.shape(), grad.shape()),
            self.dtype(),
        );
        self.tanh_backward_into(grad, &mut out);
        out
    }

    /// [`tanh_backward`](Array::tanh_backward) into `out`.
    #[track_caller]
    pub fn tanh_backward_into(&self, grad: &Array, out: &mut Array) {
        fn kernel<T: Float>(y: T, g: T) -> T {
            ZipFn::TanhBackward.eval(y, g)
        }
        dispatch_float!(self.dtype(), "tanh_backward", T => zip_into::<T, T>(self, grad, out, "tanh_backward", kernel::<T>))
    }

    /// The gradient of `sigmoid` from its output: `grad * y (1 - y)` in one pass.
    #[track_caller]
    pub fn sigmoid_backward(&self, grad: &Array) -> Array {
        let mut out = Array::empty(
            &broadcast_pair("sigmoid_backward", self.shape(), grad.shape()),
            self.dtype(),
        );
        self.sigmoid_backward_into(grad, &mut out);
        out
    }

    /// [`sigmoid_backward`](Array::sigmoid_backward) into `out`.
    #[track_caller]
    pub fn sigmoid_backward_into(&self, grad: &Array, out: &mut Array) {
        fn kernel<T: Float>(y: T, g: T) -> T {
            ZipFn::SigmoidBackward.eval(y, g)
        }
        dispatch_float!(self.dtype(), "sigmoid_backward", T => zip_into::<T, T>(self, grad, out, "sigmoid_backward", kernel::<T>))
    }
}
