//! Functional layers: the seed's nn modules as functions of tensors.
//!
//! Two kinds, mixed freely in one function. `linear`, `batch_norm` and `layer_norm` have
//! hand-written gradients: each enters autodiff as one custom primitive
//! ([`ferrograd::CustomOp`]) whose forward runs fused array kernels and whose backward is the
//! textbook gradient written with `Tensor` operations, so it can still be differentiated
//! again (optimize mode runs them as opaque steps). Activations, losses, convolution,
//! pooling and dropout are core primitives or compositions of them, whose gradients are
//! inferred (the fused ones, softmax, tanh, convolution, have fused backward primitives), so
//! optimize mode sees inside them. Each is tested against the autodiff of the same math and
//! against finite differences.

mod activation;
mod attention;
mod conv;
mod dropout;
mod linear;
mod loss;
mod norm;
mod resample;

use std::sync::Arc;

use ferrograd::{CustomOp, DType, Tensor};

pub use activation::{
    elu, gelu, leaky_relu, log_softmax, logsigmoid, prelu, relu, selu, sigmoid, silu, softmax,
    softplus, tanh, threshold,
};
pub use attention::{
    multi_head_attention, scaled_dot_product_attention, AttentionMask, AttentionParams,
};
pub use conv::{avg_pool2d, conv1d, conv2d, max_pool2d, pad, PadMode};
pub use dropout::{dropout, spatial_dropout};
pub use linear::{bmm_pair, embedding, linear};
pub(crate) use loss::bce_with_logits_terms;
pub use loss::{
    bce, bce_with_logits, binary_cross_entropy, binary_cross_entropy_with_logits, class_nll,
    cosine_embedding_loss, cross_entropy, cross_entropy_with, ctc_loss, hinge_embedding_loss,
    hinge_loss, huber_loss, kl_div, l1_loss, margin_ranking_loss, mse, mse_loss, multi_margin_loss,
    multilabel_soft_margin_loss, nll_loss, parallel_criterion, smooth_l1_loss, soft_margin_loss,
    CriterionFn, CrossEntropy, Reduce,
};
pub use norm::{
    batch_norm, cosine_similarity, group_norm, instance_norm, layer_norm, normalize, rms_norm,
    RunningStats,
};
pub use resample::{
    adaptive_avg_pool, adaptive_max_pool, conv_transpose1d, conv_transpose2d, fold, interpolate,
    max_pool2d_with, unfold, Interpolation, Sliding,
};

/// The shape of `t` `[..., k]` as a matrix `[rows, k]` (the leading dims' product: `k` may
/// be 0, as when a layer has no input features, so not `numel / k`).
pub(crate) fn as_rows(t: &Tensor) -> [usize; 2] {
    let (k, lead) = t.shape().split_last().expect("at least 1 dim");
    [lead.iter().product(), *k]
}

/// `value` filled into `shape`, in `like`'s dtype and on its device: a constant a function
/// builds from its input must live where the input does (a CPU constant beside a GPU input
/// is refused by the op that meets both). A constant of the function, so no gradient.
#[track_caller]
pub(crate) fn constant_like(like: &Tensor, shape: &[usize], value: f64) -> Tensor {
    let one = ferrograd::array::Array::full(&[], value, like.dtype());
    match one.to_device(like.device()) {
        Ok(one) => Tensor::new(one.expand(shape).contiguous()),
        Err(e) => crate::fail!("{e}"),
    }
}

/// `t`, a constant built on the host (an index, a mask), moved to `like`'s device (a no-op
/// on the CPU).
#[track_caller]
pub(crate) fn on_device_of(t: Tensor, like: &Tensor) -> Tensor {
    match t.to_device(like.device()) {
        Ok(t) => t,
        Err(e) => crate::fail!("{e}"),
    }
}

/// Applies a custom op to its inputs.
#[track_caller]
pub(crate) fn call(op: impl CustomOp, inputs: &[&Tensor]) -> Tensor {
    Tensor::custom(Arc::new(op), inputs)
}

/// Panics with `what`'s message when an i64 index tensor holds a value outside `0..n`. The
/// check counts the bad entries with tensor ops and reads only the count, so in optimize
/// mode it is one guard that holds whenever the data is valid (reading every index would
/// make the plan depend on the indices).
#[track_caller]
pub(crate) fn check_index_range(op: &str, what: &str, index: &Tensor, n: usize) {
    let index = index.to_dtype(DType::I64);
    let bad = index.lt_scalar(0.0).logical_or(&index.ge_scalar(n as f64));
    if bad.to_dtype(DType::I64).sum().item::<i64>() > 0 {
        let first = index
            .to_vec::<i64>()
            .into_iter()
            .find(|&c| c < 0 || c >= n as i64)
            .unwrap_or_default();
        crate::fail!("{op}: {what} {first} is out of range for {n} classes");
    }
}
