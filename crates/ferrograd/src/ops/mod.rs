//! Primitive families: for each, the `Tensor` methods users call, the forward on arrays and
//! the gradient rule, side by side.

mod activation;
pub(crate) mod at;
pub(crate) mod decomp;
pub(crate) mod elementwise;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod nn;
pub(crate) mod reduce;
pub(crate) mod shape;

use crate::{Array, Tensor};

/// `1/√(2π)`, the standard normal density's factor.
pub(crate) const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Sums a broadcast gradient back to the shape of the input it came from.
pub(crate) fn unbroadcast(g: &Tensor, shape: &[usize]) -> Tensor {
    if g.shape() == shape {
        return g.clone();
    }
    let lead = g.ndim() - shape.len();
    let mut dims: Vec<usize> = (0..lead).collect();
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && g.shape()[lead + i] != 1 {
            dims.push(lead + i);
        }
    }
    let summed = if dims.is_empty() {
        g.clone()
    } else {
        g.sum_dim(dims, true)
    };
    summed.reshape(shape)
}

/// The number of true elements of a bool `mask`, counted with tensor ops and read once: in
/// optimize mode the guard is on the count alone, so a check that holds for valid data
/// (no index out of range, no negative weight) holds for any valid data.
#[track_caller]
pub(crate) fn count_true(mask: &Tensor) -> i64 {
    mask.to_dtype(crate::DType::I64).sum().item::<i64>()
}

/// A 0-d tensor holding `value` in the dtype of `like`.
pub(crate) fn scalar_like(value: f64, like: &Tensor) -> Tensor {
    Tensor::new(Array::full(&[], value, like.dtype()))
}

/// A constant built on the host (an index, a mask, a table, a seed) on `like`'s device:
/// the op that meets both refuses operands on two devices. A no-op on the CPU.
#[track_caller]
pub(crate) fn on_device_of(constant: Array, like: &Tensor) -> Tensor {
    let device = like.device();
    match constant.to_device(device) {
        Ok(a) => Tensor::new(a),
        Err(e) => panic!(
            "ferrograd: moving a constant to {device}: {e} (at {})",
            ferrograd_array::Site(std::panic::Location::caller())
        ),
    }
}

/// Zeros with the shape, dtype and device of `like` (a constant).
pub(crate) fn zeros_like(like: &Tensor) -> Tensor {
    like.zeros_like()
}

/// A bool mask as a 0/1 float tensor of `like`'s dtype (computed by an op, so a capture
/// records it; masks carry no gradient).
pub(crate) fn mask_as(mask: &Tensor, like: &Tensor) -> Tensor {
    mask.to_dtype(like.dtype())
}
