//! User primitives with hand-written gradients.
//!
//! A [`CustomOp`] computes its forward on arrays. Its gradient is either
//! [`backward`](CustomOp::backward), written with `Tensor` operations (and then itself
//! differentiable, to any order), or [`backward_array`](CustomOp::backward_array), a fast
//! hand-written kernel on arrays that supports first derivatives only: asking for a second
//! derivative through it panics with a message saying so, never a silent zero.

use std::sync::Arc;

use crate::op::{Grads, Op};
use crate::tensor::apply;
use crate::{Array, Tensor};

/// A primitive with a hand-written gradient.
///
/// ```
/// use std::sync::Arc;
/// use ferrograd::{grad, Array, CustomOp, Tensor};
///
/// /// y = x³ with its derivative written by hand.
/// #[derive(Debug)]
/// struct Cube;
/// impl CustomOp for Cube {
///     fn name(&self) -> &str { "cube" }
///     fn forward(&self, x: &[&Array]) -> Array { x[0].pow_scalar(3.0) }
///     fn backward(&self, x: &[Tensor], _out: &Tensor, g: &Tensor, _needs: &[bool])
///         -> Vec<Option<Tensor>>
///     {
///         vec![Some(g * &x[0].square() * 3.0)]
///     }
/// }
///
/// let cube = Arc::new(Cube);
/// let f = move |x: &Tensor| Tensor::custom(cube.clone(), &[x]).sum();
/// let (dx, _) = grad(f).call(&Tensor::from_vec(vec![2.0f64], &[1]), ());
/// assert_eq!(dx.to_vec::<f64>(), vec![12.0]);
/// ```
pub trait CustomOp: std::fmt::Debug + Send + Sync + 'static {
    /// The name shown in profiles, graphs and messages.
    fn name(&self) -> &str;

    /// The forward computation on concrete arrays.
    fn forward(&self, inputs: &[&Array]) -> Array;

    /// The gradient of each input given the inputs, the output and the output gradient, in
    /// differentiable `Tensor` operations (`None`: no gradient for that input). The default
    /// calls [`backward_array`](CustomOp::backward_array).
    ///
    /// `needs[i]` says whether input `i`'s gradient is used (PyTorch's
    /// `ctx.needs_input_grad`): it is false for inputs that are data or constants to this
    /// derivative, whose gradient would be dropped. Returning `None` there skips the work
    /// (say, the input gradient of a first layer); returning a gradient anyway is correct.
    fn backward(
        &self,
        inputs: &[Tensor],
        output: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        if inputs.iter().chain([output, grad]).any(Tensor::is_traced) {
            panic!(
                "ferrograd: custom op `{}` has an array-level backward, so it cannot be \
                 differentiated twice; implement CustomOp::backward with Tensor operations to \
                 allow higher-order gradients",
                self.name()
            );
        }
        let arrays: Vec<&Array> = inputs.iter().map(Tensor::data).collect();
        let grads: Vec<Option<Tensor>> = self
            .backward_array(&arrays, output.data(), grad.data(), needs)
            .into_iter()
            .map(|g| g.map(Tensor::new))
            .collect();
        if crate::compile::capture::active() {
            crate::compile::capture::record_custom_backward(inputs, output, grad, needs, &grads);
        }
        grads
    }

    /// The tensor whose value the op's output is, when the op's forward recorded its own
    /// steps into a capture (a checkpoint's function); `None` for ordinary ops, whose
    /// forward a plan calls as one step.
    #[doc(hidden)]
    fn recorded_as(&self) -> Option<Tensor> {
        None
    }

    /// A hand-written gradient kernel on arrays (first derivatives only). Implement this or
    /// [`backward`](CustomOp::backward). `needs` is as for `backward`.
    fn backward_array(
        &self,
        inputs: &[&Array],
        output: &Array,
        grad: &Array,
        needs: &[bool],
    ) -> Vec<Option<Array>> {
        let _ = (inputs, output, grad, needs);
        panic!(
            "ferrograd: custom op `{}` implements neither backward nor backward_array",
            self.name()
        )
    }
}

pub(crate) fn custom_vjp(
    op: &Arc<dyn CustomOp>,
    x: &[Tensor],
    out: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Grads {
    // A capture records an array-level backward as one opaque step that calls it again.
    let _current = crate::compile::capture::custom_op_scope(op);
    let grads = op.backward(x, out, g, needs);
    if grads.len() != x.len() {
        panic!(
            "ferrograd: custom op `{}` returned {} gradients for {} inputs",
            op.name(),
            grads.len(),
            x.len()
        );
    }
    for (i, (gi, xi)) in grads.iter().zip(x).enumerate() {
        if let Some(gi) = gi {
            if gi.shape() != xi.shape() {
                panic!(
                    "ferrograd: custom op `{}` returned a gradient of shape {:?} for input {i} of shape {:?}",
                    op.name(),
                    gi.shape(),
                    xi.shape()
                );
            }
        }
    }
    grads.into_iter().collect()
}

impl Tensor {
    /// Applies a user primitive to `inputs`.
    #[track_caller]
    pub fn custom(op: Arc<dyn CustomOp>, inputs: &[&Tensor]) -> Tensor {
        apply(Op::Custom(op), inputs)
    }
}
