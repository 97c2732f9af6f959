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

/// 1-d convolution (temporal convolution): `x` `[N, C, L]`, `weight` `[O, C / groups, K]`,
/// with stride, padding, dilation and groups as for [`conv2d`] (their second components).
/// Computed as a 2-d convolution of height 1, so it shares its kernels and gradients.
///
/// ```
/// use ferrograd::{Conv2dParams, DType, Tensor};
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[1, 1, 4]);
/// let w = Tensor::from_vec(vec![1.0f64, -1.0], &[1, 1, 2]);
/// let y = F::conv1d(&x, &w, None, Conv2dParams::default());
/// assert_eq!(y.to_vec::<f64>(), vec![-1.0, -1.0, -1.0]);
/// ```
#[track_caller]
pub fn conv1d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Tensor {
    if x.ndim() != 3 || weight.ndim() != 3 {
        crate::fail!(
            "conv1d: needs input [N, C, L] and weight [O, C/groups, K], got {:?} and {:?}",
            x.shape(),
            weight.shape()
        );
    }
    x.unsqueeze(2)
        .conv2d(&weight.unsqueeze(2), bias, height_one(params))
        .squeeze_dim(2)
}

/// The 2-d parameters of a 1-d convolution run as a 2-d one of height 1: the second
/// components of `params`, and stride 1, no padding, no dilation in height.
pub(crate) fn height_one(params: Conv2dParams) -> Conv2dParams {
    Conv2dParams {
        stride: (1, params.stride.1),
        padding: (0, params.padding.1),
        dilation: (1, params.dilation.1),
        groups: params.groups,
    }
}

/// How [`pad`] fills the new border.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// A constant value.
    Constant(f64),
    /// The mirror image, without repeating the edge: `[1, 2, 3]` padded by 2 on the left
    /// gives `[3, 2, 1, 2, 3]` (each pad smaller than the dim).
    Reflect,
    /// The edge value repeated.
    Replicate,
}

/// Pads the trailing dims of `x`: `pads[i] = (before, after)` for dim
/// `x.ndim() - pads.len() + i`, in dim order (PyTorch's `F.pad` lists them last dim first).
/// Differentiable to any order.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, PadMode};
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[1, 3]);
/// let r = F::pad(&x, &[(2, 1)], PadMode::Reflect);
/// assert_eq!(r.to_vec::<f64>(), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0]);
/// let c = F::pad(&x, &[(1, 0), (0, 1)], PadMode::Constant(0.0));
/// assert_eq!(c.shape(), &[2, 4]);
/// ```
#[track_caller]
pub fn pad(x: &Tensor, pads: &[(usize, usize)], mode: PadMode) -> Tensor {
    let site = ferrograd::array::Site(std::panic::Location::caller());
    if pads.len() > x.ndim() {
        panic!(
            "ferrograd: pad: {} pads for a tensor of shape {:?} (at {site})",
            pads.len(),
            x.shape()
        );
    }
    let first = x.ndim() - pads.len();
    let mut out = x.clone();
    for (i, &(before, after)) in pads.iter().enumerate() {
        let d = first + i;
        let n = out.size(d);
        if (before, after) == (0, 0) {
            continue;
        }
        let mut parts: Vec<Tensor> = Vec::with_capacity(3);
        let side = |count: usize, at_start: bool| -> Tensor {
            match mode {
                PadMode::Constant(v) => {
                    let mut shape = out.shape().to_vec();
                    shape[d] = count;
                    super::constant_like(&out, &shape, v)
                }
                PadMode::Reflect => {
                    if count >= n {
                        panic!(
                            "ferrograd: pad: a reflect pad of {count} needs dim {d} longer than {count}, got shape {:?} (at {site})",
                            out.shape()
                        );
                    }
                    let start = if at_start { 1 } else { n - 1 - count };
                    out.narrow(d, start, count).flip(d)
                }
                PadMode::Replicate => {
                    if n == 0 {
                        panic!(
                            "ferrograd: pad: cannot replicate the edge of empty dim {d} of shape {:?} (at {site})",
                            out.shape()
                        );
                    }
                    let edge = out.narrow(d, if at_start { 0 } else { n - 1 }, 1);
                    let mut shape = out.shape().to_vec();
                    shape[d] = count;
                    edge.expand(&shape)
                }
            }
        };
        if before > 0 {
            parts.push(side(before, true));
        }
        parts.push(out.clone());
        if after > 0 {
            parts.push(side(after, false));
        }
        out = Tensor::cat(&parts, d);
    }
    out
}
