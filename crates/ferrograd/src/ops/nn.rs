//! Neural-network primitives: convolution (with its two gradients as primitives, so second
//! derivatives work), average pooling (and its adjoint), max pooling (through `gather`), and
//! fused softmax / log-softmax with fused backward primitives.

use smallvec::smallvec;

use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::{Array, Conv2dParams, Dim, Pool2dParams, Shape, Tensor};

/// Neural-network primitives: each variant's name, forward, forward into a buffer and
/// gradient rule are below, one exhaustive match each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NnOp {
    /// 2-d convolution (inputs: x, w, optional bias).
    Conv2d(Conv2dParams),
    /// Input gradient of a convolution (inputs: output gradient, w).
    Conv2dBackwardInput(Conv2dParams, Shape),
    /// Weight gradient of a convolution (inputs: output gradient, x).
    Conv2dBackwardWeight(Conv2dParams, Shape),
    /// The position of each max-pooling window's maximum (i64 `[N, C, H', W']`, flat within
    /// each `H x W` plane; no gradient).
    MaxPool2dIndices(Pool2dParams),
    /// Max pooling by precomputed window maxima (inputs: x, indices from
    /// [`NnOp::MaxPool2dIndices`]).
    MaxPool2d,
    /// The adjoint of [`NnOp::MaxPool2d`]: routes the gradient to the picked positions of an
    /// input of the given shape (inputs: gradient, indices).
    MaxPool2dBackward(Shape),
    /// Average pooling (`true`: padding counts in the divisor).
    AvgPool2d(Pool2dParams, bool),
    /// Gradient of average pooling (input: output gradient).
    AvgPool2dBackward(Pool2dParams, bool, Shape),
    /// Gradient of tanh from its output (inputs: y, output gradient): `g (1 - y²)`.
    TanhBackward,
    /// Gradient of sigmoid from its output (inputs: y, output gradient): `g y (1 - y)`.
    SigmoidBackward,
    /// Gradient of GELU from its input (inputs: x, output gradient): `g (Φ(x) + x φ(x))`.
    GeluBackward,
    /// Softmax along a dim.
    Softmax(usize),
    /// Attention's weights along the last dim of scores `[..., l, s]`: the softmax of `scale
    /// · x`, with the causal mask (`true`) row `i`'s over its first `i + 1` entries and the
    /// rest 0, weights below the smallest normal float 0 (the scale's bits, so the op
    /// compares and hashes exactly).
    AttentionSoftmax(u64, bool),
    /// Its gradient (inputs: its output, output gradient): `scale · y (g - Σ g y)` along the
    /// last dim, results of magnitude below the smallest normal float 0 (the scale's bits).
    AttentionSoftmaxBackward(u64),
    /// Log-softmax along a dim.
    LogSoftmax(usize),
    /// Softmax gradient (inputs: softmax output, output gradient).
    SoftmaxBackward(usize),
    /// Log-softmax gradient (inputs: log-softmax output, output gradient).
    LogSoftmaxBackward(usize),
}

impl From<NnOp> for Op {
    fn from(op: NnOp) -> Op {
        Op::Nn(op)
    }
}

impl NnOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            NnOp::Conv2d(_) => "conv2d",
            NnOp::Conv2dBackwardInput(..) => "conv2d_backward_input",
            NnOp::Conv2dBackwardWeight(..) => "conv2d_backward_weight",
            NnOp::MaxPool2dIndices(_) => "max_pool2d_indices",
            NnOp::MaxPool2d => "max_pool2d",
            NnOp::MaxPool2dBackward(..) => "max_pool2d_backward",
            NnOp::AvgPool2d(..) => "avg_pool2d",
            NnOp::AvgPool2dBackward(..) => "avg_pool2d_backward",
            NnOp::TanhBackward => "tanh_backward",
            NnOp::SigmoidBackward => "sigmoid_backward",
            NnOp::GeluBackward => "gelu_backward",
            NnOp::Softmax(_) => "softmax",
            NnOp::AttentionSoftmax(..) => "attention_softmax",
            NnOp::AttentionSoftmaxBackward(_) => "attention_softmax_backward",
            NnOp::LogSoftmax(_) => "log_softmax",
            NnOp::SoftmaxBackward(_) => "softmax_backward",
            NnOp::LogSoftmaxBackward(_) => "log_softmax_backward",
        }
    }

    /// False for the index computations, which pass no gradient.
    pub(crate) fn is_differentiable(&self) -> bool {
        !matches!(self, NnOp::MaxPool2dIndices(_))
    }

    #[track_caller]
    pub(crate) fn forward(&self, x: &[&Array]) -> Array {
        match self {
            NnOp::Conv2d(p) => x[0].conv2d(x[1], x.get(2).copied(), *p),
            NnOp::Conv2dBackwardInput(p, s) => x[0].conv2d_backward_input(x[1], s, *p),
            NnOp::Conv2dBackwardWeight(p, s) => x[0].conv2d_backward_weight(x[1], s, *p),
            NnOp::MaxPool2dIndices(p) => x[0].max_pool2d_indices(*p),
            NnOp::MaxPool2d => x[0].gather_planes(x[1]),
            NnOp::MaxPool2dBackward(s) => x[0].max_pool2d_backward(x[1], s),
            NnOp::AvgPool2d(p, inc) => x[0].avg_pool2d(*p, *inc),
            NnOp::AvgPool2dBackward(p, inc, s) => x[0].avg_pool2d_backward(s, *p, *inc),
            NnOp::TanhBackward => x[0].tanh_backward(x[1]),
            NnOp::SigmoidBackward => x[0].sigmoid_backward(x[1]),
            NnOp::GeluBackward => x[0].gelu_backward(x[1]),
            NnOp::Softmax(d) => x[0].softmax(*d),
            NnOp::AttentionSoftmax(scale, causal) => {
                x[0].attention_softmax(f64::from_bits(*scale), *causal)
            }
            NnOp::AttentionSoftmaxBackward(scale) => {
                x[0].attention_softmax_backward(x[1], f64::from_bits(*scale))
            }
            NnOp::LogSoftmax(d) => x[0].log_softmax(*d),
            NnOp::SoftmaxBackward(d) => x[0].softmax_backward(x[1], *d),
            NnOp::LogSoftmaxBackward(d) => x[0].log_softmax_backward(x[1], *d),
        }
    }

    /// See [`Op::forward_into`].
    #[track_caller]
    pub(crate) fn forward_into(&self, x: &[&Array], out: &mut Array) -> bool {
        match self {
            NnOp::Conv2d(p) => x[0].conv2d_into(x[1], x.get(2).copied(), *p, out),
            NnOp::Conv2dBackwardInput(p, s) => x[0].conv2d_backward_input_into(x[1], s, *p, out),
            NnOp::Conv2dBackwardWeight(p, s) => x[0].conv2d_backward_weight_into(x[1], s, *p, out),
            NnOp::MaxPool2dIndices(p) => x[0].max_pool2d_indices_into(*p, out),
            NnOp::MaxPool2d => x[0].gather_planes_into(x[1], out),
            NnOp::MaxPool2dBackward(s) => x[0].max_pool2d_backward_into(x[1], s, out),
            NnOp::AvgPool2d(p, inc) => x[0].avg_pool2d_into(*p, *inc, out),
            NnOp::AvgPool2dBackward(p, inc, s) => x[0].avg_pool2d_backward_into(s, *p, *inc, out),
            NnOp::TanhBackward => x[0].tanh_backward_into(x[1], out),
            NnOp::SigmoidBackward => x[0].sigmoid_backward_into(x[1], out),
            NnOp::GeluBackward => x[0].gelu_backward_into(x[1], out),
            NnOp::Softmax(d) => x[0].softmax_into(*d, out),
            NnOp::AttentionSoftmax(scale, causal) => {
                x[0].attention_softmax_into(f64::from_bits(*scale), *causal, out)
            }
            NnOp::AttentionSoftmaxBackward(scale) => {
                x[0].attention_softmax_backward_into(x[1], f64::from_bits(*scale), out)
            }
            NnOp::LogSoftmax(d) => x[0].log_softmax_into(*d, out),
            NnOp::SoftmaxBackward(d) => x[0].softmax_backward_into(x[1], *d, out),
            NnOp::LogSoftmaxBackward(d) => x[0].log_softmax_backward_into(x[1], *d, out),
        }
        true
    }

    pub(crate) fn vjp(&self, x: &[Tensor], out: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
        match self {
            NnOp::MaxPool2dIndices(_) => smallvec![None],
            NnOp::Conv2d(p) => {
                let dx = wanted(needs, 0, || {
                    apply(
                        NnOp::Conv2dBackwardInput(*p, x[0].shape().into()),
                        &[g, &x[1]],
                    )
                });
                let dw = wanted(needs, 1, || {
                    apply(
                        NnOp::Conv2dBackwardWeight(*p, x[1].shape().into()),
                        &[g, &x[0]],
                    )
                });
                let mut grads: Grads = smallvec![dx, dw];
                if x.len() == 3 {
                    grads.push(wanted(needs, 2, || g.sum_dim([0, 2, 3], false)));
                }
                grads
            }
            // dx = convT(dy, w): <H, convT(dy, w)> = <conv(H, w), dy>
            NnOp::Conv2dBackwardInput(p, _) => {
                let (dy, w) = (&x[0], &x[1]);
                smallvec![
                    wanted(needs, 0, || apply(NnOp::Conv2d(*p), &[g, w])),
                    wanted(needs, 1, || {
                        apply(NnOp::Conv2dBackwardWeight(*p, w.shape().into()), &[dy, g])
                    }),
                ]
            }
            // dw = W(dy, x): <H, W(dy, x)> = <conv(x, H), dy>
            NnOp::Conv2dBackwardWeight(p, _) => {
                let (dy, xin) = (&x[0], &x[1]);
                smallvec![
                    wanted(needs, 0, || apply(NnOp::Conv2d(*p), &[xin, g])),
                    wanted(needs, 1, || {
                        apply(NnOp::Conv2dBackwardInput(*p, xin.shape().into()), &[dy, g])
                    }),
                ]
            }
            NnOp::MaxPool2d => smallvec![
                Some(apply(
                    NnOp::MaxPool2dBackward(x[0].shape().into()),
                    &[g, &x[1]]
                )),
                None
            ],
            // routing a gradient is linear: its adjoint picks the same positions
            NnOp::MaxPool2dBackward(_) => {
                smallvec![Some(apply(NnOp::MaxPool2d, &[g, &x[1]])), None]
            }
            NnOp::AvgPool2d(p, inc) => smallvec![Some(apply(
                NnOp::AvgPool2dBackward(*p, *inc, x[0].shape().into()),
                &[g]
            ))],
            // average pooling's backward is its adjoint, and the adjoint of that is the pooling
            NnOp::AvgPool2dBackward(p, inc, _) => {
                smallvec![Some(apply(NnOp::AvgPool2d(*p, *inc), &[g]))]
            }
            // r = g (1 - y²): dr/dy = -2 g y H, dr/dg = (1 - y²) H
            NnOp::TanhBackward => {
                let (y, dy) = (&x[0], &x[1]);
                smallvec![
                    wanted(needs, 0, || -(&(&(dy * y) * g) * 2.0)),
                    wanted(needs, 1, || apply(NnOp::TanhBackward, &[y, g])),
                ]
            }
            // r = g y (1 - y): dr/dy = g (1 - 2y) H, dr/dg = y (1 - y) H
            NnOp::SigmoidBackward => {
                let (y, dy) = (&x[0], &x[1]);
                smallvec![
                    wanted(needs, 0, || &(dy * &(y * -2.0).add_scalar(1.0)) * g),
                    wanted(needs, 1, || apply(NnOp::SigmoidBackward, &[y, g])),
                ]
            }
            // r = dy (Φ(x) + x φ(x)): dr/dx = dy φ(x) (2 - x²) H (φ' = -x φ), dr/d dy = gelu'(x) H
            // (either input may be broadcast: each gradient is summed back to its shape)
            NnOp::GeluBackward => {
                let (x, dy) = (&x[0], &x[1]);
                smallvec![
                    wanted(needs, 0, || {
                        let pdf = (x.square() * -0.5).exp() * super::INV_SQRT_2PI;
                        let dx = &(&(dy * g) * &pdf) * &x.square().rsub_scalar(2.0);
                        super::unbroadcast(&dx, x.shape())
                    }),
                    wanted(needs, 1, || {
                        super::unbroadcast(&apply(NnOp::GeluBackward, &[x, g]), dy.shape())
                    }),
                ]
            }
            NnOp::Softmax(d) => smallvec![Some(apply(NnOp::SoftmaxBackward(*d), &[out, g]))],
            // softmax's gradient of the scaled scores (0 at the masked entries, where y is 0),
            // times the scale
            NnOp::AttentionSoftmax(scale, _) => {
                smallvec![Some(apply(
                    NnOp::AttentionSoftmaxBackward(*scale),
                    &[out, g]
                ))]
            }
            // SoftmaxBackward's, times the scale (the flush of tiny results passes the
            // gradient of the values it rounds, as a rounding does)
            NnOp::AttentionSoftmaxBackward(scale) => {
                let (y, dy) = (&x[0], &x[1]);
                let d_y = softmax_backward_grad_y(y, dy, g, y.ndim() - 1) * f64::from_bits(*scale);
                let d_dy = apply(NnOp::AttentionSoftmaxBackward(*scale), &[y, g]);
                smallvec![Some(d_y), Some(d_dy)]
            }
            NnOp::LogSoftmax(d) => smallvec![Some(apply(NnOp::LogSoftmaxBackward(*d), &[out, g]))],
            // r = y (dy - s), s = Σ dy y. With t = Σ H y: dr/dy = H (dy - s) - dy t, dr/d dy = y (H - t)
            NnOp::SoftmaxBackward(d) => {
                let (y, dy) = (&x[0], &x[1]);
                let d_y = softmax_backward_grad_y(y, dy, g, *d);
                let d_dy = apply(NnOp::SoftmaxBackward(*d), &[y, g]);
                smallvec![Some(d_y), Some(d_dy)]
            }
            // r = dy - e^y S, S = Σ dy. dr/dy = -H e^y S, dr/d dy = H - Σ H e^y
            NnOp::LogSoftmaxBackward(d) => {
                let (y, dy) = (&x[0], &x[1]);
                let e = y.exp();
                let s = dy.sum_dim(*d, true);
                let d_y = -(&(g * &e) * &s);
                let d_dy = g - &(g * &e).sum_dim(*d, true);
                smallvec![Some(d_y), Some(d_dy)]
            }
        }
    }
}

/// The gradient with respect to softmax's output `y` of its gradient `r = y (dy - s)`, `s =
/// Σ dy y` along `d`, under the output gradient `g`: `g (dy - s) - dy t`, `t = Σ g y`.
fn softmax_backward_grad_y(y: &Tensor, dy: &Tensor, g: &Tensor, d: usize) -> Tensor {
    let s = (dy * y).sum_dim(d, true);
    let t = (g * y).sum_dim(d, true);
    &(g * &(dy - &s)) - &(dy * &t)
}

impl Tensor {
    /// 2-d convolution of `self: [N, C, H, W]` with `weight: [O, C/groups, kH, kW]` and an
    /// optional `bias: [O]`.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Tensor {
        match bias {
            Some(b) => apply(NnOp::Conv2d(params), &[self, weight, b]),
            None => apply(NnOp::Conv2d(params), &[self, weight]),
        }
    }

    /// Transposed 2-d convolution (PyTorch's `conv_transpose2d`; the adjoint of
    /// [`conv2d`](Tensor::conv2d), "deconvolution"): `self` `[N, C_in, H, W]`, `weight`
    /// `[C_in, C_out / groups, kH, kW]`, optional `bias` `[C_out]`; the output is
    /// `[N, C_out, H', W']` with `H' = (H - 1) stride - 2 padding + dilation (kH - 1) +
    /// output_padding + 1`. It runs the convolution's input-gradient kernel, so its own
    /// gradients are convolutions and every order works.
    ///
    /// ```
    /// use ferrograd::{Conv2dParams, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 1, 1, 2]);
    /// let w = Tensor::from_vec(vec![1.0f64, 10.0], &[1, 1, 1, 2]);
    /// let y = x.conv_transpose2d(&w, None, Conv2dParams::default(), (0, 0));
    /// assert_eq!(y.to_vec::<f64>(), vec![1.0, 12.0, 20.0]);
    /// ```
    #[track_caller]
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        params: Conv2dParams,
        output_padding: (usize, usize),
    ) -> Tensor {
        let site = ferrograd_array::Site(std::panic::Location::caller());
        if self.ndim() != 4 || weight.ndim() != 4 || weight.shape()[0] != self.shape()[1] {
            panic!(
                "ferrograd: conv_transpose2d: needs input [N, C_in, H, W] and weight \
                 [C_in, C_out/groups, kH, kW], got {:?} and {:?} (at {site})",
                self.shape(),
                weight.shape()
            );
        }
        let (s, p, d) = (params.stride, params.padding, params.dilation);
        if output_padding.0 >= s.0.max(d.0) || output_padding.1 >= s.1.max(d.1) {
            panic!(
                "ferrograd: conv_transpose2d: output_padding {output_padding:?} must be smaller \
                 than the stride {s:?} or the dilation {d:?} (at {site})"
            );
        }
        let (k, x) = (weight.shape(), self.shape());
        let size = |n: usize, s: usize, p: usize, d: usize, k: usize, o: usize| {
            ((n - 1) * s + d * (k - 1) + o + 1).checked_sub(2 * p)
        };
        let (Some(h), Some(w)) = (
            size(x[2], s.0, p.0, d.0, k[2], output_padding.0),
            size(x[3], s.1, p.1, d.1, k[3], output_padding.1),
        ) else {
            panic!(
                "ferrograd: conv_transpose2d: padding {p:?} leaves no output for input {:?} \
                 and kernel {:?} (at {site})",
                self.shape(),
                weight.shape()
            );
        };
        let shape: Shape = [x[0], k[1] * params.groups, h, w].as_slice().into();
        let y = apply(NnOp::Conv2dBackwardInput(params, shape), &[self, weight]);
        match bias {
            Some(b) => &y + &b.reshape(&[1, b.numel(), 1, 1]),
            None => y,
        }
    }

    /// Max pooling: the pooled values and the i64 index of each maximum within its `H x W`
    /// plane. The gradient goes to the chosen elements.
    #[track_caller]
    pub fn max_pool2d(&self, params: Pool2dParams) -> (Tensor, Tensor) {
        let idx = apply(NnOp::MaxPool2dIndices(params), &[self]);
        (apply(NnOp::MaxPool2d, &[self, &idx]), idx)
    }

    /// Average pooling (`count_include_pad`: padding counts as zeros in the divisor).
    #[track_caller]
    pub fn avg_pool2d(&self, params: Pool2dParams, count_include_pad: bool) -> Tensor {
        apply(NnOp::AvgPool2d(params, count_include_pad), &[self])
    }

    /// Softmax along `dim`.
    #[track_caller]
    pub fn softmax(&self, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "softmax");
        apply(NnOp::Softmax(d), &[self])
    }

    /// Attention's weights from its scores `self` `[..., l, s]`: the softmax of `scale ·
    /// self` along the last dim; with `causal`, each row `i` of the last two dims over its
    /// first `min(i + 1, s)` entries (query `i` sees keys `0..=i`), the rest 0. The same
    /// values as scaling (with `causal`, masking with `-inf`) and
    /// [`softmax`](Tensor::softmax), in one pass per row (and one back), except that
    /// weights below the smallest normal float (1.2·10⁻³⁸ in f32) and gradients of smaller
    /// magnitude are 0, as in PyTorch's `scaled_dot_product_attention` on the CPU: as
    /// subnormal numbers they would change no result by more than that and cost the
    /// products they enter 5-50x (see `ferrograd_array::Array::attention_softmax`).
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let scores = Tensor::from_vec(vec![5.0f64, 9.0, 1.0, 1.0], &[2, 2]);
    /// let weights = scores.attention_softmax(0.5, true);
    /// assert_eq!(weights.to_vec::<f64>(), vec![1.0, 0.0, 0.5, 0.5]);
    /// // the masked score gets no gradient; the row of one entry has none to get
    /// let w = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let f = |s: &Tensor| (s.attention_softmax(0.5, true) * &w).sum();
    /// let (g, _) = grad(f).call(&scores, ());
    /// assert_eq!(g.to_vec::<f64>(), vec![0.0, 0.0, -0.125, 0.125]);
    /// ```
    #[track_caller]
    pub fn attention_softmax(&self, scale: f64, causal: bool) -> Tensor {
        apply(NnOp::AttentionSoftmax(scale.to_bits(), causal), &[self])
    }

    /// Log-softmax along `dim`.
    #[track_caller]
    pub fn log_softmax(&self, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "log_softmax");
        apply(NnOp::LogSoftmax(d), &[self])
    }
}
