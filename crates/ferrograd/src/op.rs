//! The one enum of primitives. Every primitive has a forward on arrays and a gradient rule
//! (VJP) written with differentiable `Tensor` operations; the debugger, the profiler, DOT
//! output and (later) the compiler all match on this enum.
//!
//! Each family's forward, rule and user-facing methods live together in `ops/<family>.rs`;
//! this file only names the variants and dispatches.

use std::borrow::Cow;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::custom::CustomOp;
use crate::ops::{elementwise, index, linalg, nn, reduce, shape};
use crate::{Array, Tensor};

/// Gradients of a primitive's inputs, `None` where an input gets none.
pub(crate) type Grads = SmallVec<[Option<Tensor>; 3]>;

/// Computes an input's gradient only where the backward pass will use it: the engine drops
/// contributions for inputs outside the level being differentiated (constants, data), so
/// rules skip that work (`dX` of a first layer, the data side of a product).
pub(crate) fn wanted(needs: &[bool], i: usize, grad: impl FnOnce() -> Tensor) -> Option<Tensor> {
    needs.get(i).copied().unwrap_or(true).then(grad)
}

/// A primitive operation with its attributes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Op {
    /// A parameter boxed by `grad` (no inputs).
    Leaf,
    /// One-input elementwise math.
    Unary(elementwise::Unary),
    /// Elementwise math with a scalar operand.
    Scalar(elementwise::ScalarOp, f64),
    /// Clamp into `[min, max]`.
    Clamp {
        /// Lower bound.
        min: Option<f64>,
        /// Upper bound.
        max: Option<f64>,
    },
    /// Two-input elementwise math with broadcasting.
    Binary(elementwise::Binary),
    /// Comparison or logic giving bool (no gradient).
    Compare(elementwise::Compare),
    /// `cond ? a : b` (inputs: cond, a, b).
    Where,
    /// Conversion to another dtype.
    Cast(crate::DType),
    /// Reduction over dims.
    Reduce(reduce::Reduction, reduce::DimList, bool),
    /// Running sum along a dim.
    Cumsum(usize),
    /// Index (i64) of the first largest (`largest`) or smallest value along `dim`, or of the
    /// flattened tensor when `dim` is `None` (no gradient).
    ArgExtreme {
        /// Largest (argmax) or smallest (argmin).
        largest: bool,
        /// The dim, or `None` for the flattened tensor.
        dim: Option<usize>,
        /// Keep `dim` as size 1.
        keepdim: bool,
    },
    /// Matrix product of two arrays of at least 2 dims, batch dims broadcast.
    Matmul,
    /// Dim reordering.
    Permute(Vec<usize>),
    /// Same elements in a new shape.
    Reshape(crate::Shape),
    /// A row-major copy of a strided tensor.
    Contiguous,
    /// Broadcast view to a shape.
    Expand(crate::Shape),
    /// Slice along a dim.
    Narrow {
        /// The dim.
        dim: usize,
        /// First index.
        start: usize,
        /// Number of entries.
        len: usize,
    },
    /// Zeros of `size` along `dim` with the input placed at `start` (the adjoint of narrow).
    PadNarrow {
        /// The dim.
        dim: usize,
        /// Where the input goes.
        start: usize,
        /// Size of the result along `dim`.
        size: usize,
    },
    /// Reversal along dims.
    Flip(reduce::DimList),
    /// Diagonal `k` of a matrix as a vector.
    Diagonal(i64),
    /// A vector placed on diagonal `k` of a square zero matrix.
    DiagEmbed(i64),
    /// Lower (`true`) or upper triangle from diagonal `k`.
    Triangle(bool, i64),
    /// Concatenation along a dim.
    Cat(usize),
    /// Entries at indices along a dim (inputs: x, i64 index).
    IndexSelect(usize),
    /// `x` with `src` added at indices along a dim (inputs: x, index, src).
    IndexAdd(usize),
    /// Gather along a dim (inputs: x, index).
    Gather(usize),
    /// Scatter-add along a dim (inputs: x, index, src).
    ScatterAdd(usize),
    /// Scatter (overwrite) along a dim (inputs: x, index, src).
    Scatter(usize),
    /// Assignment `x[index] = v` (`accumulate`: `+=`) (inputs: x, v).
    IndexPut(crate::Index, bool),
    /// 2-d convolution (inputs: x, w, optional bias).
    Conv2d(crate::Conv2dParams),
    /// Input gradient of a convolution (inputs: output gradient, w).
    Conv2dBackwardInput(crate::Conv2dParams, crate::Shape),
    /// Weight gradient of a convolution (inputs: output gradient, x).
    Conv2dBackwardWeight(crate::Conv2dParams, crate::Shape),
    /// The position of each max-pooling window's maximum (i64 `[N, C, H', W']`, flat within
    /// each `H x W` plane; no gradient).
    MaxPool2dIndices(crate::Pool2dParams),
    /// Max pooling by precomputed window maxima (inputs: x, indices from
    /// [`Op::MaxPool2dIndices`]).
    MaxPool2d,
    /// The adjoint of [`Op::MaxPool2d`]: routes the gradient to the picked positions of an
    /// input of the given shape (inputs: gradient, indices).
    MaxPool2dBackward(crate::Shape),
    /// Average pooling (`true`: padding counts in the divisor).
    AvgPool2d(crate::Pool2dParams, bool),
    /// Gradient of average pooling (input: output gradient).
    AvgPool2dBackward(crate::Pool2dParams, bool, crate::Shape),
    /// Gradient of tanh from its output (inputs: y, output gradient): `g (1 - y²)`.
    TanhBackward,
    /// Gradient of sigmoid from its output (inputs: y, output gradient): `g y (1 - y)`.
    SigmoidBackward,
    /// Softmax along a dim.
    Softmax(usize),
    /// Log-softmax along a dim.
    LogSoftmax(usize),
    /// Softmax gradient (inputs: softmax output, output gradient).
    SoftmaxBackward(usize),
    /// Log-softmax gradient (inputs: log-softmax output, output gradient).
    LogSoftmaxBackward(usize),
    /// A user primitive with a hand-written gradient.
    Custom(Arc<dyn CustomOp>),
}

impl Op {
    /// A short name for messages, profiles and graphs.
    pub fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Op::Leaf => "leaf",
            Op::Unary(u) => u.name(),
            Op::Scalar(s, _) => s.name(),
            Op::Clamp { .. } => "clamp",
            Op::Binary(b) => b.name(),
            Op::Compare(c) => c.name(),
            Op::Where => "where",
            Op::Cast(_) => "to_dtype",
            Op::Reduce(r, _, _) => r.name(),
            Op::Cumsum(_) => "cumsum",
            Op::ArgExtreme { largest: true, .. } => "argmax",
            Op::ArgExtreme { largest: false, .. } => "argmin",
            Op::Matmul => "matmul",
            Op::Permute(_) => "permute",
            Op::Reshape(_) => "reshape",
            Op::Contiguous => "contiguous",
            Op::Expand(_) => "expand",
            Op::Narrow { .. } => "narrow",
            Op::PadNarrow { .. } => "pad_narrow",
            Op::Flip(_) => "flip",
            Op::Diagonal(_) => "diagonal",
            Op::DiagEmbed(_) => "diag_embed",
            Op::Triangle(true, _) => "tril",
            Op::Triangle(false, _) => "triu",
            Op::Cat(_) => "cat",
            Op::IndexSelect(_) => "index_select",
            Op::IndexAdd(_) => "index_add",
            Op::Gather(_) => "gather",
            Op::ScatterAdd(_) => "scatter_add",
            Op::Scatter(_) => "scatter",
            Op::IndexPut(_, false) => "index_put",
            Op::IndexPut(_, true) => "index_put_add",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dBackwardInput(..) => "conv2d_backward_input",
            Op::Conv2dBackwardWeight(..) => "conv2d_backward_weight",
            Op::MaxPool2dIndices(_) => "max_pool2d_indices",
            Op::MaxPool2d => "max_pool2d",
            Op::MaxPool2dBackward(..) => "max_pool2d_backward",
            Op::AvgPool2d(..) => "avg_pool2d",
            Op::AvgPool2dBackward(..) => "avg_pool2d_backward",
            Op::TanhBackward => "tanh_backward",
            Op::SigmoidBackward => "sigmoid_backward",
            Op::Softmax(_) => "softmax",
            Op::LogSoftmax(_) => "log_softmax",
            Op::SoftmaxBackward(_) => "softmax_backward",
            Op::LogSoftmaxBackward(_) => "log_softmax_backward",
            Op::Custom(c) => return Cow::Owned(c.name().to_string()),
        })
    }

    /// False for ops that pass no gradient to any input (comparisons, rounding, ...).
    pub fn is_differentiable(&self) -> bool {
        match self {
            Op::Compare(_) | Op::ArgExtreme { .. } | Op::MaxPool2dIndices(_) => false,
            Op::Unary(u) => u.is_differentiable(),
            Op::Cast(d) => d.is_float(),
            _ => true,
        }
    }

    /// Runs the primitive on concrete arrays.
    #[track_caller]
    pub(crate) fn forward(&self, x: &[&Array]) -> Array {
        match self {
            Op::Leaf => x[0].clone(),
            Op::Unary(u) => u.forward(x[0]),
            Op::Scalar(s, v) => s.forward(x[0], *v),
            Op::Clamp { min, max } => x[0].clamp(*min, *max),
            Op::Binary(b) => b.forward(x[0], x[1]),
            Op::Compare(c) => c.forward(x),
            Op::Where => Array::where_(x[0], x[1], x[2]),
            Op::Cast(d) => x[0].to_dtype(*d),
            Op::Reduce(r, dims, keepdim) => r.forward(x[0], dims, *keepdim),
            Op::Cumsum(d) => x[0].cumsum(*d),
            Op::ArgExtreme {
                largest,
                dim,
                keepdim,
            } => match (dim, largest) {
                (Some(d), true) => x[0].argmax(*d, *keepdim),
                (Some(d), false) => x[0].argmin(*d, *keepdim),
                (None, true) => x[0].argmax_all(),
                (None, false) => x[0].argmin_all(),
            },
            Op::Matmul => x[0].matmul(x[1]),
            Op::Permute(p) => x[0].permute(p),
            Op::Reshape(s) => x[0].reshape(s),
            Op::Contiguous => x[0].contiguous(),
            Op::Expand(s) => x[0].expand(s),
            Op::Narrow { dim, start, len } => x[0].narrow(*dim, *start, *len),
            Op::PadNarrow { dim, start, size } => shape::pad_narrow(x[0], *dim, *start, *size),
            Op::Flip(dims) => x[0].flip(dims.as_slice()),
            Op::Diagonal(k) => x[0].diagonal(*k),
            Op::DiagEmbed(k) => x[0].diag(*k),
            Op::Triangle(lower, k) => {
                if *lower {
                    x[0].tril(*k)
                } else {
                    x[0].triu(*k)
                }
            }
            Op::Cat(d) => Array::cat(&x.iter().map(|a| (*a).clone()).collect::<Vec<_>>(), *d),
            Op::IndexSelect(d) => x[0].index_select(*d, x[1]),
            Op::IndexAdd(d) => x[0].index_add(*d, x[1], x[2]),
            Op::Gather(d) => x[0].gather(*d, x[1]),
            Op::ScatterAdd(d) => x[0].scatter_add(*d, x[1], x[2]),
            Op::Scatter(d) => x[0].scatter(*d, x[1], x[2]),
            Op::IndexPut(i, false) => x[0].index_put(i, x[1]),
            Op::IndexPut(i, true) => x[0].index_put_add(i, x[1]),
            Op::Conv2d(p) => x[0].conv2d(x[1], x.get(2).copied(), *p),
            Op::Conv2dBackwardInput(p, s) => x[0].conv2d_backward_input(x[1], s, *p),
            Op::Conv2dBackwardWeight(p, s) => x[0].conv2d_backward_weight(x[1], s, *p),
            Op::MaxPool2dIndices(p) => x[0].max_pool2d(*p).1,
            Op::MaxPool2d => x[0].gather_planes(x[1]),
            Op::MaxPool2dBackward(s) => x[0].max_pool2d_backward(x[1], s),
            Op::AvgPool2d(p, inc) => x[0].avg_pool2d(*p, *inc),
            Op::AvgPool2dBackward(p, inc, s) => x[0].avg_pool2d_backward(s, *p, *inc),
            Op::TanhBackward => x[0].tanh_backward(x[1]),
            Op::SigmoidBackward => x[0].sigmoid_backward(x[1]),
            Op::Softmax(d) => x[0].softmax(*d),
            Op::LogSoftmax(d) => x[0].log_softmax(*d),
            Op::SoftmaxBackward(d) => x[0].softmax_backward(x[1], *d),
            Op::LogSoftmaxBackward(d) => x[0].log_softmax_backward(x[1], *d),
            Op::Custom(c) => c.forward(x),
        }
    }

    /// Runs the primitive into `out`, a buffer of the result's shape and dtype (from an
    /// earlier run of the same step), which a kernel reuses when nothing else holds it.
    /// `operand` is a scalar op's scalar as an array. Returns false, touching nothing, for
    /// primitives with no such form: views (which allocate no data) and a few rare ops.
    /// The result is bit for bit what [`forward`](Op::forward) returns: every allocating
    /// kernel is an allocation followed by its `*_into` form.
    #[track_caller]
    pub(crate) fn forward_into(
        &self,
        x: &[&Array],
        operand: Option<&Array>,
        out: &mut Array,
    ) -> bool {
        match self {
            Op::Unary(u) => u.forward_into(x[0], out),
            Op::Scalar(s, v) => s.forward_into(x[0], *v, operand, out),
            Op::Clamp { min, max } => x[0].clamp_into(*min, *max, out),
            Op::Binary(b) => b.forward_into(x[0], x[1], out),
            Op::Compare(c) => return c.forward_into(x, out),
            Op::Where => Array::where_into(x[0], x[1], x[2], out),
            Op::Cast(_) => x[0].to_dtype_into(out),
            Op::Reduce(r, dims, keepdim) => r.forward_into(x[0], dims, *keepdim, out),
            Op::Cumsum(d) => x[0].cumsum_into(*d, out),
            Op::Matmul => x[0].matmul_into(x[1], out),
            Op::Contiguous => x[0].contiguous_into(out),
            Op::Flip(dims) => x[0].flip_into(dims.as_slice(), out),
            Op::Triangle(true, k) => x[0].tril_into(*k, out),
            Op::Triangle(false, k) => x[0].triu_into(*k, out),
            Op::IndexSelect(d) => x[0].index_select_into(*d, x[1], out),
            Op::IndexAdd(d) => x[0].index_add_into(*d, x[1], x[2], out),
            Op::Gather(d) => x[0].gather_into(*d, x[1], out),
            Op::ScatterAdd(d) => x[0].scatter_add_into(*d, x[1], x[2], out),
            Op::Scatter(d) => x[0].scatter_into(*d, x[1], x[2], out),
            Op::IndexPut(i, false) => x[0].index_put_into(i, x[1], out),
            Op::IndexPut(i, true) => x[0].index_put_add_into(i, x[1], out),
            Op::Conv2d(p) => x[0].conv2d_into(x[1], x.get(2).copied(), *p, out),
            Op::Conv2dBackwardInput(p, s) => x[0].conv2d_backward_input_into(x[1], s, *p, out),
            Op::Conv2dBackwardWeight(p, s) => x[0].conv2d_backward_weight_into(x[1], s, *p, out),
            Op::MaxPool2d => x[0].gather_planes_into(x[1], out),
            Op::MaxPool2dBackward(s) => x[0].max_pool2d_backward_into(x[1], s, out),
            Op::AvgPool2d(p, inc) => x[0].avg_pool2d_into(*p, *inc, out),
            Op::AvgPool2dBackward(p, inc, s) => x[0].avg_pool2d_backward_into(s, *p, *inc, out),
            Op::TanhBackward => x[0].tanh_backward_into(x[1], out),
            Op::SigmoidBackward => x[0].sigmoid_backward_into(x[1], out),
            Op::Softmax(d) => x[0].softmax_into(*d, out),
            Op::LogSoftmax(d) => x[0].log_softmax_into(*d, out),
            Op::SoftmaxBackward(d) => x[0].softmax_backward_into(x[1], *d, out),
            Op::LogSoftmaxBackward(d) => x[0].log_softmax_backward_into(x[1], *d, out),
            Op::Leaf
            | Op::ArgExtreme { .. }
            | Op::Permute(_)
            | Op::Reshape(_)
            | Op::Expand(_)
            | Op::Narrow { .. }
            | Op::PadNarrow { .. }
            | Op::Diagonal(_)
            | Op::DiagEmbed(_)
            | Op::Cat(_)
            | Op::MaxPool2dIndices(_)
            | Op::Custom(_) => return false,
        }
        true
    }

    /// The gradient rule: given the inputs' inner values, the output's inner value and the
    /// output gradient, the gradient of each input. `needs[i]` is false where input `i`'s
    /// gradient would be dropped; rules may then return `None` for it without computing it.
    pub(crate) fn vjp(&self, x: &[Tensor], out: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
        match self {
            Op::Leaf => SmallVec::new(),
            Op::Unary(u) => elementwise::unary_vjp(*u, &x[0], out, g),
            Op::Scalar(s, v) => elementwise::scalar_vjp(*s, *v, &x[0], out, g),
            Op::Clamp { min, max } => elementwise::clamp_vjp(*min, *max, &x[0], g),
            Op::Binary(b) => elementwise::binary_vjp(*b, &x[0], &x[1], out, g, needs),
            Op::Compare(_) | Op::ArgExtreme { .. } | Op::MaxPool2dIndices(_) => {
                x.iter().map(|_| None).collect()
            }
            Op::Where => elementwise::where_vjp(&x[0], &x[1], &x[2], g, needs),
            Op::Cast(_) => smallvec::smallvec![Some(g.to_dtype(x[0].dtype()))],
            Op::Reduce(r, dims, keepdim) => reduce::reduce_vjp(*r, dims, *keepdim, &x[0], out, g),
            Op::Cumsum(d) => smallvec::smallvec![Some(g.flip(*d).cumsum(*d).flip(*d))],
            Op::Matmul => linalg::matmul_vjp(&x[0], &x[1], g, needs),
            Op::Permute(_)
            | Op::Reshape(_)
            | Op::Contiguous
            | Op::Expand(_)
            | Op::Narrow { .. }
            | Op::PadNarrow { .. }
            | Op::Flip(_)
            | Op::Diagonal(_)
            | Op::DiagEmbed(_)
            | Op::Triangle(..)
            | Op::Cat(_) => shape::shape_vjp(self, x, g),
            Op::IndexSelect(_)
            | Op::IndexAdd(_)
            | Op::Gather(_)
            | Op::ScatterAdd(_)
            | Op::Scatter(_)
            | Op::IndexPut(..) => index::index_vjp(self, x, g, needs),
            Op::Conv2d(_)
            | Op::Conv2dBackwardInput(..)
            | Op::Conv2dBackwardWeight(..)
            | Op::MaxPool2d
            | Op::MaxPool2dBackward(_)
            | Op::AvgPool2d(..)
            | Op::AvgPool2dBackward(..)
            | Op::TanhBackward
            | Op::SigmoidBackward
            | Op::Softmax(_)
            | Op::LogSoftmax(_)
            | Op::SoftmaxBackward(_)
            | Op::LogSoftmaxBackward(_) => nn::nn_vjp(self, x, out, g, needs),
            Op::Custom(c) => crate::custom::custom_vjp(c, x, out, g, needs),
        }
    }
}
