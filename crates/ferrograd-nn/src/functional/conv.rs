//! Convolution and pooling. These are primitives of the core (`NnOp::Conv2d`, `NnOp::AvgPool2d`,
//! max pooling through `gather`) whose gradients are hand-written im2col/col2im and
//! scatter kernels in the array layer, themselves primitives, so second derivatives work.
//! They are re-exported here so every layer of the seed's nn has a functional form in one
//! place.

use ferrograd::{Conv2dParams, Pool2dParams, Tensor};

/// 2-d convolution of `[N, C, H, W]` with `[O, C/groups, kH, kW]` and optional bias `[O]`.
#[track_caller]
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Tensor {
    x.conv2d(weight, bias, params)
}

/// Max pooling (values; the gradient goes to each window's first maximum).
#[track_caller]
pub fn max_pool2d(x: &Tensor, params: Pool2dParams) -> Tensor {
    x.max_pool2d(params).0
}

/// Average pooling.
#[track_caller]
pub fn avg_pool2d(x: &Tensor, params: Pool2dParams, count_include_pad: bool) -> Tensor {
    x.avg_pool2d(params, count_include_pad)
}
