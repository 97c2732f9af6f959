//! Activations: tanh, relu, sigmoid, threshold, softmax and log-softmax.
//!
//! Each is the core primitive (or a composition of them), whose gradient rule is itself a
//! fused primitive (`tanh_backward`, `softmax_backward`, ...): the same fused kernels as a
//! hand-written layer, and optimize mode sees inside them.

use ferrograd::{Dim, Tensor};

/// Hyperbolic tangent.
#[track_caller]
pub fn tanh(x: &Tensor) -> Tensor {
    x.tanh()
}

/// `max(x, 0)`.
#[track_caller]
pub fn relu(x: &Tensor) -> Tensor {
    x.relu()
}

/// The logistic function.
#[track_caller]
pub fn sigmoid(x: &Tensor) -> Tensor {
    x.sigmoid()
}

/// `x` where `x > threshold`, else `value` (the seed's `nn.Threshold`).
#[track_caller]
pub fn threshold(x: &Tensor, threshold: f64, value: f64) -> Tensor {
    x.masked_fill(&x.le_scalar(threshold), value)
}

/// Softmax along `dim`.
#[track_caller]
pub fn softmax(x: &Tensor, dim: impl Dim) -> Tensor {
    x.softmax(dim)
}

/// Log-softmax along `dim`.
#[track_caller]
pub fn log_softmax(x: &Tensor, dim: impl Dim) -> Tensor {
    x.log_softmax(dim)
}
