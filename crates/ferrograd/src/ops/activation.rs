//! Activation functions as compositions of primitives: their gradients (of any order) are
//! inferred, and in optimize mode each one fuses into a single pass over memory. GELU is a
//! primitive of its own, one pass each way in direct mode too: as five elementwise ops it
//! took a sixth of a small transformer's training step.
//!
//! Each follows PyTorch's definition, including the value of the gradient at the kinks
//! (0 for `elu` and `leaky_relu` is on the negative side, as there), and stays finite where
//! a textbook formula would overflow (`softplus` of large inputs, `elu` of large ones).

use std::f64::consts::{FRAC_2_SQRT_PI, SQRT_2};

use super::elementwise::Unary;
use crate::op::Op;
use crate::tensor::apply;
use crate::Tensor;

/// SELU's constants (Klambauer et al., 2017), as PyTorch spells them.
const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

impl Tensor {
    /// GELU, exact: `x Φ(x)`, `Φ` the standard normal distribution, in one pass; `Φ` comes
    /// from `erfc`, so the negative tail keeps its digits where PyTorch's formula `x (1 +
    /// erf(x / √2)) / 2` cancels (from x = -5.5 in f32 it is 0): within 8 ulp in f32 down to
    /// f32's normal range. Its gradient, `Φ(x) + x φ(x)`, is one pass too
    /// ([`gelu_backward`](Tensor::gelu_backward)), differentiable again.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let y = Tensor::from_vec(vec![-1.0f64, 0.0, 1.0], &[3]).gelu().to_vec::<f64>();
    /// assert!((y[0] + 0.15865525393145707).abs() < 1e-15 && y[1] == 0.0);
    /// assert!((y[2] - 0.8413447460685429).abs() < 1e-15);
    /// ```
    #[track_caller]
    pub fn gelu(&self) -> Tensor {
        apply(Op::Unary(Unary::Gelu), &[self])
    }

    /// GELU's tanh approximation (PyTorch's `approximate="tanh"`):
    /// `x (1 + tanh(√(2/π) (x + 0.044715 x³))) / 2`.
    #[track_caller]
    pub fn gelu_tanh(&self) -> Tensor {
        // √(2/π) = 2/√π / √2
        let inner = (self + &(self.pow_scalar(3.0) * 0.044715)) * (FRAC_2_SQRT_PI / SQRT_2);
        self * &(inner.tanh() + 1.0) * 0.5
    }

    /// SiLU (swish): `x σ(x)`.
    #[track_caller]
    pub fn silu(&self) -> Tensor {
        self * &self.sigmoid()
    }

    /// ELU: `x` where `x > 0`, else `alpha (e^x - 1)` (gradient `alpha e^x` at and below 0).
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let x = Tensor::from_vec(vec![-1.0f64, 0.0, 2.0], &[3]);
    /// assert_eq!(x.elu(1.0).to_vec::<f64>(), vec![(-1.0f64).exp_m1(), 0.0, 2.0]);
    /// let (g, _) = grad(|x: &Tensor| x.elu(0.5).sum()).call(&x, ());
    /// assert_eq!(g.to_vec::<f64>(), vec![0.5 * (-1.0f64).exp(), 0.5, 1.0]);
    /// ```
    #[track_caller]
    pub fn elu(&self, alpha: f64) -> Tensor {
        // e^x - 1 of the clamped input: the branch not taken stays finite, and so does its
        // (zero) gradient
        let negative = self.clamp(None, Some(0.0)).expm1() * alpha;
        Tensor::where_cond(&self.gt_scalar(0.0), self, &negative)
    }

    /// SELU: `scale · elu(x, alpha)` with PyTorch's constants (alpha ≈ 1.6733, scale ≈
    /// 1.0507).
    #[track_caller]
    pub fn selu(&self) -> Tensor {
        self.elu(SELU_ALPHA) * SELU_SCALE
    }

    /// Leaky ReLU: `x` where `x > 0`, else `negative_slope · x` (PyTorch's default slope is
    /// 0.01).
    #[track_caller]
    pub fn leaky_relu(&self, negative_slope: f64) -> Tensor {
        Tensor::where_cond(&self.gt_scalar(0.0), self, &(self * negative_slope))
    }

    /// Softplus: `ln(1 + e^(βx)) / β`, and `x` itself where `βx > threshold` (PyTorch's
    /// defaults: β = 1, threshold = 20). Computed without overflow for any input.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let y = Tensor::from_vec(vec![-800.0f64, 0.0, 800.0], &[3]).softplus(1.0, 20.0);
    /// assert_eq!(y.to_vec::<f64>(), vec![0.0, 2.0f64.ln(), 800.0]);
    /// ```
    #[track_caller]
    pub fn softplus(&self, beta: f64, threshold: f64) -> Tensor {
        let z = self * beta;
        // ln(1 + e^z) = ln(1 + e^z) for z <= 0, z + ln(1 + e^-z) above: each branch on its
        // clamped input, so neither overflows, nor does the gradient of the one not taken
        let low = z.clamp(None, Some(0.0)).exp().log1p();
        let high = &z + &(-z.clamp(Some(0.0), None)).exp().log1p();
        let soft = Tensor::where_cond(&z.gt_scalar(0.0), &high, &low) / beta;
        Tensor::where_cond(&z.gt_scalar(threshold), self, &soft)
    }

    /// `ln σ(x) = -softplus(-x)`, without overflow.
    #[track_caller]
    pub fn logsigmoid(&self) -> Tensor {
        -(-self).softplus(1.0, f64::INFINITY)
    }
}
