//! Functional layers with hand-written forward and backward kernels.
//!
//! Each enters autodiff as one custom primitive ([`ferrograd::CustomOp`]): its forward runs
//! a fused array kernel, its backward is the textbook gradient written with `Tensor`
//! operations, so it is fast at first order and can still be differentiated again. Each is
//! tested against the autodiff of the same math and against finite differences.

mod activation;
mod conv;
mod dropout;
mod linear;
mod loss;
mod norm;

use std::sync::Arc;

use ferrograd::{CustomOp, Tensor};

pub use activation::{log_softmax, relu, sigmoid, softmax, tanh, threshold};
pub use conv::{avg_pool2d, conv2d, max_pool2d};
pub use dropout::{dropout, spatial_dropout};
pub use linear::{bmm_pair, embedding, linear};
pub use loss::{bce, class_nll, cross_entropy, mse, parallel_criterion, CriterionFn};
pub use norm::{batch_norm, layer_norm, RunningStats};

/// Applies a custom op to its inputs.
#[track_caller]
pub(crate) fn call(op: impl CustomOp, inputs: &[&Tensor]) -> Tensor {
    Tensor::custom(Arc::new(op), inputs)
}
