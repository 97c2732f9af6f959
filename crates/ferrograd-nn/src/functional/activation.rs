//! Activations with hand-written gradients: tanh, relu, sigmoid, threshold, softmax and
//! log-softmax.

use ferrograd::{Array, CustomOp, Dim, Tensor};

use super::call;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tanh,
    Relu,
    Sigmoid,
    Threshold { threshold: f64, value: f64 },
    Softmax(usize),
    LogSoftmax(usize),
}

#[derive(Debug)]
struct Activation(Kind);

impl CustomOp for Activation {
    fn name(&self) -> &str {
        match self.0 {
            Kind::Tanh => "nn.tanh",
            Kind::Relu => "nn.relu",
            Kind::Sigmoid => "nn.sigmoid",
            Kind::Threshold { .. } => "nn.threshold",
            Kind::Softmax(_) => "nn.softmax",
            Kind::LogSoftmax(_) => "nn.log_softmax",
        }
    }

    fn forward(&self, x: &[&Array]) -> Array {
        match self.0 {
            Kind::Tanh => x[0].tanh(),
            Kind::Relu => x[0].relu(),
            Kind::Sigmoid => x[0].sigmoid(),
            Kind::Threshold { threshold, value } => {
                x[0].masked_fill(&x[0].le_scalar(threshold), value)
            }
            Kind::Softmax(d) => x[0].softmax(d),
            Kind::LogSoftmax(d) => x[0].log_softmax(d),
        }
    }

    fn backward(
        &self,
        x: &[Tensor],
        y: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let dx = match self.0 {
            // 1 - tanh², one fused pass
            Kind::Tanh => y.tanh_backward(g),
            // [x > 0]
            Kind::Relu => g * &x[0].gt_scalar(0.0).to_dtype(g.dtype()),
            // σ (1 - σ), one fused pass
            Kind::Sigmoid => y.sigmoid_backward(g),
            // [x > threshold]
            Kind::Threshold { threshold, .. } => g * &x[0].gt_scalar(threshold).to_dtype(g.dtype()),
            // y (g - Σ g y)
            Kind::Softmax(d) => y * &(g - &(g * y).sum_dim(d, true)),
            // g - e^y Σ g
            Kind::LogSoftmax(d) => g - &(y.exp() * g.sum_dim(d, true)),
        };
        vec![Some(dx)]
    }
}

/// Hyperbolic tangent.
#[track_caller]
pub fn tanh(x: &Tensor) -> Tensor {
    call(Activation(Kind::Tanh), &[x])
}

/// `max(x, 0)`.
#[track_caller]
pub fn relu(x: &Tensor) -> Tensor {
    call(Activation(Kind::Relu), &[x])
}

/// The logistic function.
#[track_caller]
pub fn sigmoid(x: &Tensor) -> Tensor {
    call(Activation(Kind::Sigmoid), &[x])
}

/// `x` where `x > threshold`, else `value` (the seed's `nn.Threshold`).
#[track_caller]
pub fn threshold(x: &Tensor, threshold: f64, value: f64) -> Tensor {
    call(Activation(Kind::Threshold { threshold, value }), &[x])
}

/// Softmax along `dim`.
#[track_caller]
pub fn softmax(x: &Tensor, dim: impl Dim) -> Tensor {
    let d = dim.resolve(x.ndim(), "softmax");
    call(Activation(Kind::Softmax(d)), &[x])
}

/// Log-softmax along `dim`.
#[track_caller]
pub fn log_softmax(x: &Tensor, dim: impl Dim) -> Tensor {
    let d = dim.resolve(x.ndim(), "log_softmax");
    call(Activation(Kind::LogSoftmax(d)), &[x])
}
