//! Neural-network primitives: convolution (with its two gradients as primitives, so second
//! derivatives work), average pooling (and its adjoint), max pooling (through `gather`), and
//! fused softmax / log-softmax with fused backward primitives.

use smallvec::smallvec;

use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::{Conv2dParams, Dim, Pool2dParams, Tensor};

pub(crate) fn nn_vjp(op: &Op, x: &[Tensor], out: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
    match op {
        Op::Conv2d(p) => {
            let dx = wanted(needs, 0, || {
                apply(
                    Op::Conv2dBackwardInput(*p, x[0].shape().into()),
                    &[g, &x[1]],
                )
            });
            let dw = wanted(needs, 1, || {
                apply(
                    Op::Conv2dBackwardWeight(*p, x[1].shape().into()),
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
        Op::Conv2dBackwardInput(p, _) => {
            let (dy, w) = (&x[0], &x[1]);
            smallvec![
                wanted(needs, 0, || apply(Op::Conv2d(*p), &[g, w])),
                wanted(needs, 1, || {
                    apply(Op::Conv2dBackwardWeight(*p, w.shape().into()), &[dy, g])
                }),
            ]
        }
        // dw = W(dy, x): <H, W(dy, x)> = <conv(x, H), dy>
        Op::Conv2dBackwardWeight(p, _) => {
            let (dy, xin) = (&x[0], &x[1]);
            smallvec![
                wanted(needs, 0, || apply(Op::Conv2d(*p), &[xin, g])),
                wanted(needs, 1, || {
                    apply(Op::Conv2dBackwardInput(*p, xin.shape().into()), &[dy, g])
                }),
            ]
        }
        Op::MaxPool2d => smallvec![
            Some(apply(
                Op::MaxPool2dBackward(x[0].shape().into()),
                &[g, &x[1]]
            )),
            None
        ],
        // routing a gradient is linear: its adjoint picks the same positions
        Op::MaxPool2dBackward(_) => smallvec![Some(apply(Op::MaxPool2d, &[g, &x[1]])), None],
        Op::AvgPool2d(p, inc) => smallvec![Some(apply(
            Op::AvgPool2dBackward(*p, *inc, x[0].shape().into()),
            &[g]
        ))],
        // average pooling's backward is its adjoint, and the adjoint of that is the pooling
        Op::AvgPool2dBackward(p, inc, _) => smallvec![Some(apply(Op::AvgPool2d(*p, *inc), &[g]))],
        // r = g (1 - y²): dr/dy = -2 g y H, dr/dg = (1 - y²) H
        Op::TanhBackward => {
            let (y, dy) = (&x[0], &x[1]);
            smallvec![
                wanted(needs, 0, || -(&(&(dy * y) * g) * 2.0)),
                wanted(needs, 1, || apply(Op::TanhBackward, &[y, g])),
            ]
        }
        // r = g y (1 - y): dr/dy = g (1 - 2y) H, dr/dg = y (1 - y) H
        Op::SigmoidBackward => {
            let (y, dy) = (&x[0], &x[1]);
            smallvec![
                wanted(needs, 0, || &(dy * &(y * -2.0).add_scalar(1.0)) * g),
                wanted(needs, 1, || apply(Op::SigmoidBackward, &[y, g])),
            ]
        }
        Op::Softmax(d) => smallvec![Some(apply(Op::SoftmaxBackward(*d), &[out, g]))],
        Op::LogSoftmax(d) => smallvec![Some(apply(Op::LogSoftmaxBackward(*d), &[out, g]))],
        // r = y (dy - s), s = Σ dy y. With t = Σ H y: dr/dy = H (dy - s) - dy t, dr/d dy = y (H - t)
        Op::SoftmaxBackward(d) => {
            let (y, dy) = (&x[0], &x[1]);
            let s = (dy * y).sum_dim(*d, true);
            let t = (g * y).sum_dim(*d, true);
            let d_y = &(g * &(dy - &s)) - &(dy * &t);
            let d_dy = apply(Op::SoftmaxBackward(*d), &[y, g]);
            smallvec![Some(d_y), Some(d_dy)]
        }
        // r = dy - e^y S, S = Σ dy. dr/dy = -H e^y S, dr/d dy = H - Σ H e^y
        Op::LogSoftmaxBackward(d) => {
            let (y, dy) = (&x[0], &x[1]);
            let e = y.exp();
            let s = dy.sum_dim(*d, true);
            let d_y = -(&(g * &e) * &s);
            let d_dy = g - &(g * &e).sum_dim(*d, true);
            smallvec![Some(d_y), Some(d_dy)]
        }
        _ => unreachable!("not an nn op: {op:?}"),
    }
}

impl Tensor {
    /// 2-d convolution of `self: [N, C, H, W]` with `weight: [O, C/groups, kH, kW]` and an
    /// optional `bias: [O]`.
    #[track_caller]
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Tensor {
        match bias {
            Some(b) => apply(Op::Conv2d(params), &[self, weight, b]),
            None => apply(Op::Conv2d(params), &[self, weight]),
        }
    }

    /// Max pooling: the pooled values and the i64 index of each maximum within its `H x W`
    /// plane. The gradient goes to the chosen elements.
    #[track_caller]
    pub fn max_pool2d(&self, params: Pool2dParams) -> (Tensor, Tensor) {
        let idx = apply(Op::MaxPool2dIndices(params), &[self]);
        (apply(Op::MaxPool2d, &[self, &idx]), idx)
    }

    /// Average pooling (`count_include_pad`: padding counts as zeros in the divisor).
    #[track_caller]
    pub fn avg_pool2d(&self, params: Pool2dParams, count_include_pad: bool) -> Tensor {
        apply(Op::AvgPool2d(params, count_include_pad), &[self])
    }

    /// Softmax along `dim`.
    #[track_caller]
    pub fn softmax(&self, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "softmax");
        apply(Op::Softmax(d), &[self])
    }

    /// Log-softmax along `dim`.
    #[track_caller]
    pub fn log_softmax(&self, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "log_softmax");
        apply(Op::LogSoftmax(d), &[self])
    }
}
