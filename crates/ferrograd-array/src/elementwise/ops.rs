//! `std::ops` operators for `Array` and `&Array`, with `f64` scalars on either side.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::Array;

macro_rules! operator {
    ($trait:ident, $method:ident, $array_fn:ident, $scalar_fn:ident, $rscalar_fn:ident) => {
        impl $trait<&Array> for &Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: &Array) -> Array {
                Array::$array_fn(&self, rhs)
            }
        }
        impl $trait<Array> for Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: Array) -> Array {
                Array::$array_fn(&self, &rhs)
            }
        }
        impl $trait<&Array> for Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: &Array) -> Array {
                Array::$array_fn(&self, rhs)
            }
        }
        impl $trait<Array> for &Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: Array) -> Array {
                Array::$array_fn(&self, &rhs)
            }
        }
        impl $trait<f64> for &Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: f64) -> Array {
                Array::$scalar_fn(&self, rhs)
            }
        }
        impl $trait<f64> for Array {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: f64) -> Array {
                Array::$scalar_fn(&self, rhs)
            }
        }
        impl $trait<&Array> for f64 {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: &Array) -> Array {
                Array::$rscalar_fn(&rhs, self)
            }
        }
        impl $trait<Array> for f64 {
            type Output = Array;
            #[track_caller]
            fn $method(self, rhs: Array) -> Array {
                Array::$rscalar_fn(&rhs, self)
            }
        }
    };
}

operator!(Add, add, add, add_scalar, add_scalar);
operator!(Sub, sub, sub, sub_scalar, rsub_scalar);
operator!(Mul, mul, mul, mul_scalar, mul_scalar);
operator!(Div, div, div, div_scalar, rdiv_scalar);

impl Neg for &Array {
    type Output = Array;
    #[track_caller]
    fn neg(self) -> Array {
        Array::neg(self)
    }
}

impl Neg for Array {
    type Output = Array;
    #[track_caller]
    fn neg(self) -> Array {
        Array::neg(&self)
    }
}
