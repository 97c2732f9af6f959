//! Activations: tanh, relu, sigmoid, threshold, softmax and log-softmax; GELU, SiLU, ELU,
//! SELU, leaky ReLU, PReLU, softplus and log-sigmoid (compositions of core ops, see
//! `Tensor::gelu` and the rest, which fuse into one pass in optimize mode).
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

/// GELU, exact (`x Φ(x)`), or its tanh approximation when `tanh` (PyTorch's
/// `approximate="tanh"`).
#[track_caller]
pub fn gelu(x: &Tensor, tanh: bool) -> Tensor {
    if tanh {
        x.gelu_tanh()
    } else {
        x.gelu()
    }
}

/// SiLU (swish): `x σ(x)`.
#[track_caller]
pub fn silu(x: &Tensor) -> Tensor {
    x.silu()
}

/// ELU: `x` where `x > 0`, else `alpha (e^x - 1)`.
#[track_caller]
pub fn elu(x: &Tensor, alpha: f64) -> Tensor {
    x.elu(alpha)
}

/// SELU: ELU scaled, with PyTorch's constants.
#[track_caller]
pub fn selu(x: &Tensor) -> Tensor {
    x.selu()
}

/// Leaky ReLU: `x` where `x > 0`, else `negative_slope · x`.
#[track_caller]
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Tensor {
    x.leaky_relu(negative_slope)
}

/// PReLU: leaky ReLU with a learned slope, one per channel (`weight` of shape `[C]` for an
/// input `[N, C, ...]`) or one for all (`weight` of shape `[1]`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![-1.0f64, 2.0, -3.0, 4.0], &[2, 2]);
/// let slope = Tensor::from_vec(vec![0.25f64, 0.5], &[2]);
/// assert_eq!(F::prelu(&x, &slope).to_vec::<f64>(), vec![-0.25, 2.0, -0.75, 4.0]);
/// ```
#[track_caller]
pub fn prelu(x: &Tensor, weight: &Tensor) -> Tensor {
    let c = weight.numel();
    let channels = if x.ndim() >= 2 { x.size(1) } else { 1 };
    if weight.ndim() != 1 || (c != 1 && c != channels) {
        crate::fail!(
            "prelu: the weight has shape {:?}; it needs [1] or [C] = [{channels}] \
             for an input of shape {:?}",
            weight.shape(),
            x.shape(),
        );
    }
    // [C] -> [C, 1, ...] so it lines up with dim 1
    let mut shape = vec![c];
    shape.extend(std::iter::repeat_n(1, x.ndim().saturating_sub(2)));
    let w = weight.reshape(&shape);
    Tensor::where_cond(&x.gt_scalar(0.0), x, &(x * &w))
}

/// Softplus: `ln(1 + e^(βx)) / β`, linear where `βx > threshold`.
#[track_caller]
pub fn softplus(x: &Tensor, beta: f64, threshold: f64) -> Tensor {
    x.softplus(beta, threshold)
}

/// `ln σ(x)`.
#[track_caller]
pub fn logsigmoid(x: &Tensor) -> Tensor {
    x.logsigmoid()
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
