//! The fused functions and the unfused kernels that compute the same thing, shared by the
//! fused-program tests and the vector-path tests.

use ferrograd_array::{Array, MapFn, ZipFn};

pub const MAPS: [MapFn; 31] = [
    MapFn::Neg,
    MapFn::Abs,
    MapFn::Sign,
    MapFn::Relu,
    MapFn::Exp,
    MapFn::Log,
    MapFn::Log1p,
    MapFn::Expm1,
    MapFn::Sin,
    MapFn::Cos,
    MapFn::Tan,
    MapFn::Sinh,
    MapFn::Cosh,
    MapFn::Asin,
    MapFn::Acos,
    MapFn::Atan,
    MapFn::Erf,
    MapFn::Tanh,
    MapFn::Sigmoid,
    MapFn::Sqrt,
    MapFn::Rsqrt,
    MapFn::Floor,
    MapFn::Ceil,
    MapFn::Round,
    MapFn::Reciprocal,
    MapFn::Square,
    MapFn::Identity,
    MapFn::Powi(3),
    MapFn::Powf(0.7),
    MapFn::Clamp(Some(-0.5), Some(0.25)),
    MapFn::Clamp(None, Some(0.1)),
];

pub const ZIPS: [ZipFn; 16] = [
    ZipFn::Add,
    ZipFn::Sub,
    ZipFn::Mul,
    ZipFn::Div,
    ZipFn::Maximum,
    ZipFn::Minimum,
    ZipFn::Pow,
    ZipFn::Atan2,
    ZipFn::TanhBackward,
    ZipFn::SigmoidBackward,
    ZipFn::Eq,
    ZipFn::Ne,
    ZipFn::Lt,
    ZipFn::Le,
    ZipFn::Gt,
    ZipFn::Ge,
];

/// The unfused kernel that computes `f`.
pub fn unfused_map(f: MapFn, x: &Array) -> Array {
    match f {
        MapFn::Neg => x.neg(),
        MapFn::Abs => x.abs(),
        MapFn::Sign => x.sign(),
        MapFn::Relu => x.relu(),
        MapFn::Exp => x.exp(),
        MapFn::Log => x.log(),
        MapFn::Log1p => x.log1p(),
        MapFn::Expm1 => x.expm1(),
        MapFn::Sin => x.sin(),
        MapFn::Cos => x.cos(),
        MapFn::Tan => x.tan(),
        MapFn::Sinh => x.sinh(),
        MapFn::Cosh => x.cosh(),
        MapFn::Asin => x.asin(),
        MapFn::Acos => x.acos(),
        MapFn::Atan => x.atan(),
        MapFn::Erf => x.erf(),
        MapFn::Tanh => x.tanh(),
        MapFn::Sigmoid => x.sigmoid(),
        MapFn::Sqrt => x.sqrt(),
        MapFn::Rsqrt => x.rsqrt(),
        MapFn::Floor => x.floor(),
        MapFn::Ceil => x.ceil(),
        MapFn::Round => x.round(),
        MapFn::Reciprocal => x.reciprocal(),
        MapFn::Square => x.square(),
        MapFn::Identity => x.pow_scalar(1.0),
        MapFn::Powi(n) => x.pow_scalar(n as f64),
        MapFn::Powf(e) => x.pow_scalar(e),
        MapFn::Clamp(lo, hi) => x.clamp(lo, hi),
    }
}

/// The unfused kernel that computes `f`, with broadcasting.
pub fn unfused_zip(f: ZipFn, x: &Array, y: &Array) -> Array {
    match f {
        ZipFn::Add => x.add(y),
        ZipFn::Sub => x.sub(y),
        ZipFn::Mul => x.mul(y),
        ZipFn::Div => x.div(y),
        ZipFn::Maximum => x.maximum(y),
        ZipFn::Minimum => x.minimum(y),
        ZipFn::Pow => x.pow(y),
        ZipFn::Atan2 => x.atan2(y),
        ZipFn::TanhBackward => x.tanh_backward(y),
        ZipFn::SigmoidBackward => x.sigmoid_backward(y),
        // comparisons as masks in the operands' dtype
        ZipFn::Eq => x.eq(y).to_dtype(x.dtype()),
        ZipFn::Ne => x.ne(y).to_dtype(x.dtype()),
        ZipFn::Lt => x.lt(y).to_dtype(x.dtype()),
        ZipFn::Le => x.le(y).to_dtype(x.dtype()),
        ZipFn::Gt => x.gt(y).to_dtype(x.dtype()),
        ZipFn::Ge => x.ge(y).to_dtype(x.dtype()),
    }
}
