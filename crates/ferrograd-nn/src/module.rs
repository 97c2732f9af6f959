//! The stateful Module API that Torch's nn users know: `forward`, `backward(input,
//! grad_output, scale)` that returns the input gradient and accumulates parameter gradients,
//! `parameters`/`grad_parameters`, `zero_grad_parameters`, `train`/`evaluate`, clone, save
//! and load; and criteria with `forward(input, target)` and `backward(input, target)`.
//!
//! A module is defined by one function, [`Module::forward_with`], of its parameters and an
//! input. Everything stateful is built on it: `forward` traces it, `backward` runs the traced
//! graph backwards (through the layers' hand-written gradients), and
//! [`functionalize`] hands it to `grad` as a plain function.

use std::panic::Location;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ferrograd::array::{enter, Context};

use ferrograd::{record, Array, Generator, Tensor, Traced};

use crate::checkpoint::{self, CheckpointError};

/// The bookkeeping every module carries: parameters, accumulated gradients, mode, and the
/// trace of the last `forward` (reused by `backward` on the same input).
#[derive(Clone, Default)]
pub struct ModuleState {
    /// The parameters, in `forward_with` order.
    pub params: Vec<Tensor>,
    /// Their names (`weight`, `bias`, ...).
    pub names: Vec<String>,
    /// Accumulated gradients, one per parameter.
    pub grads: Vec<Tensor>,
    /// Training (true) or evaluation mode.
    pub training: bool,
    last: Option<Arc<LastForward>>,
    /// `grads` are all zero (set by `zero_grad_parameters` without touching memory; the next
    /// `backward` writes instead of adding).
    zeroed: bool,
}

struct LastForward {
    input: Tensor,
    traced: Traced<(Vec<Tensor>, Tensor), Tensor>,
}

impl ModuleState {
    /// A state with named parameters, zero gradients, in training mode.
    pub fn new(named: Vec<(&str, Tensor)>) -> ModuleState {
        let (names, params) = named.into_iter().map(|(n, t)| (n.to_string(), t)).unzip();
        ModuleState {
            params,
            names,
            grads: Vec::new(),
            training: true,
            last: None,
            zeroed: true,
        }
    }

    /// Adds `scale` times `param_grads` (one per parameter) into the accumulated gradients.
    pub fn accumulate(&mut self, param_grads: Vec<Tensor>, scale: f64) {
        let scaled = |g: Tensor| if scale == 1.0 { g } else { &g * scale };
        if self.zeroed {
            self.grads = param_grads.into_iter().map(scaled).collect();
            self.zeroed = false;
        } else {
            for (acc, g) in self.grads.iter_mut().zip(param_grads) {
                *acc = &*acc + &scaled(g);
            }
        }
    }

    /// Replaces the parameters, forgetting the last trace (it was of the old ones).
    pub fn replace_params(&mut self, params: Vec<Tensor>) {
        self.params = params;
        self.last = None;
    }
}

/// A layer or container with parameters, usable the Torch nn way and, through
/// [`functionalize`], inside `grad`.
pub trait Module: Send + Sync {
    /// A short name (`Linear(3 -> 4)`).
    fn name(&self) -> String;

    /// The function the module computes, given its parameters (in [`parameters`](Module::parameters)
    /// order) and an input. Differentiable in both.
    fn forward_with(&self, params: &[Tensor], input: &Tensor) -> Tensor;

    /// The module's bookkeeping.
    fn state(&self) -> &ModuleState;

    /// The module's bookkeeping, mutably.
    fn state_mut(&mut self) -> &mut ModuleState;

    /// A boxed copy (parameters are copied handles: cheap, and updates replace them).
    fn box_clone(&self) -> Box<dyn Module>;

    /// Called when the mode changes (containers pass it on to their children).
    fn on_mode(&mut self, _training: bool) {}

    /// Named non-parameter state saved with the module (batch-norm running statistics).
    fn buffers(&self) -> Vec<(String, Array)> {
        Vec::new()
    }

    /// Restores the buffers of [`buffers`](Module::buffers).
    fn set_buffers(&mut self, _buffers: &[(String, Array)]) {}

    /// The random generators the module draws from (dropout's), so that a
    /// [`Checkpointed`](crate::layers::Checkpointed) recomputation can draw the same numbers
    /// again. Containers return their children's.
    fn generators(&self) -> Vec<Arc<Mutex<Generator>>> {
        Vec::new()
    }

    /// The output for `input` (and the trace that `backward` reuses).
    #[track_caller]
    fn forward(&mut self, input: &Tensor) -> Tensor {
        traced_forward(self, input)
    }

    /// The gradient with respect to `input` of `<output, grad_output>`; adds `scale` times
    /// the parameter gradients into [`grad_parameters`](Module::grad_parameters). Reuses the
    /// last `forward` when it saw this same input tensor, else runs the forward again.
    #[track_caller]
    fn backward(&mut self, input: &Tensor, grad_output: &Tensor, scale: f64) -> Tensor {
        traced_backward(self, input, grad_output, scale)
    }

    /// The parameters.
    fn parameters(&self) -> Vec<Tensor> {
        self.state().params.clone()
    }

    /// Their names, in order.
    fn parameter_names(&self) -> Vec<String> {
        self.state().names.clone()
    }

    /// Replaces the parameters (same count and shapes).
    #[track_caller]
    fn set_parameters(&mut self, params: Vec<Tensor>) {
        let state = self.state_mut();
        if params.len() != state.params.len()
            || params
                .iter()
                .zip(&state.params)
                .any(|(a, b)| a.shape() != b.shape())
        {
            crate::fail!(
                "set_parameters: expected {} tensors of shapes {:?}",
                state.params.len(),
                state
                    .params
                    .iter()
                    .map(|p| p.shape().to_vec())
                    .collect::<Vec<_>>()
            );
        }
        state.replace_params(params);
    }

    /// The accumulated parameter gradients.
    fn grad_parameters(&self) -> Vec<Tensor> {
        let state = self.state();
        if state.zeroed {
            state.params.iter().map(|p| p.zeros_like()).collect()
        } else {
            state.grads.clone()
        }
    }

    /// Sets the accumulated gradients to zero.
    fn zero_grad_parameters(&mut self) {
        self.state_mut().zeroed = true;
    }

    /// One plain SGD step: `p -= lr * grad` (Torch's `updateParameters`), through
    /// [`set_parameters`](Module::set_parameters) (so containers pass it on).
    fn update_parameters(&mut self, lr: f64) {
        let state = self.state();
        let new = state
            .params
            .iter()
            .zip(&state.grads)
            .map(|(p, g)| p - &(g * lr))
            .collect();
        self.set_parameters(new);
    }

    /// Training mode (dropout active, batch statistics).
    fn train(&mut self) {
        self.state_mut().training = true;
        self.on_mode(true);
    }

    /// Evaluation mode (dropout off, running statistics).
    fn evaluate(&mut self) {
        self.state_mut().training = false;
        self.on_mode(false);
    }

    /// True in training mode.
    fn is_training(&self) -> bool {
        self.state().training
    }

    /// Saves the parameters and buffers as safetensors.
    fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let mut named: Vec<(String, Array)> = self
            .parameter_names()
            .into_iter()
            .zip(self.parameters())
            .map(|(n, t)| (n, t.value().clone()))
            .collect();
        named.extend(self.buffers());
        checkpoint::save_arrays(&named, path)
    }

    /// Loads parameters and buffers saved by [`save`](Module::save), checking names, shapes
    /// and dtypes.
    fn load(&mut self, path: &Path) -> Result<(), CheckpointError> {
        let mut stored = checkpoint::load_arrays(path)?;
        let mut params = Vec::new();
        for (name, p) in self.parameter_names().into_iter().zip(self.parameters()) {
            params.push(Tensor::new(checkpoint::take_checked(
                &mut stored,
                path,
                &name,
                p.shape(),
                p.dtype(),
            )?));
        }
        let mut buffers = Vec::new();
        for (name, b) in self.buffers() {
            let a = checkpoint::take_checked(&mut stored, path, &name, b.shape(), b.dtype())?;
            buffers.push((name, a));
        }
        checkpoint::ensure_consumed(stored, path)?;
        self.set_parameters(params);
        self.set_buffers(&buffers);
        Ok(())
    }
}

/// [`Module::forward`]'s default: traces `forward_with` and keeps the trace for `backward`.
#[track_caller]
pub(crate) fn traced_forward<M: Module + ?Sized>(module: &mut M, input: &Tensor) -> Tensor {
    let params = module.state().params.clone();
    // (an error inside a layer is raised on the layer's line: its message names the user's)
    let called = Context::Call {
        what: "forward",
        at: Location::caller(),
    };
    let _called = enter(called);
    let traced = record(&(params, input.clone()), |(p, x)| module.forward_with(p, x));
    let out = traced.output();
    module.state_mut().last = Some(Arc::new(LastForward {
        input: input.clone(),
        traced,
    }));
    out
}

/// [`Module::backward`]'s default: walks the last trace back (tracing again for another
/// input).
#[track_caller]
pub(crate) fn traced_backward<M: Module + ?Sized>(
    module: &mut M,
    input: &Tensor,
    grad_output: &Tensor,
    scale: f64,
) -> Tensor {
    let last = match &module.state().last {
        Some(l) if l.input.same(input) => l.clone(),
        _ => {
            module.forward(input);
            module
                .state()
                .last
                .clone()
                .expect("forward stores its trace")
        }
    };
    let called = Context::Call {
        what: "backward",
        at: Location::caller(),
    };
    let _called = enter(called);
    let (param_grads, input_grad) = last.traced.backward(grad_output);
    module.state_mut().accumulate(param_grads, scale);
    input_grad
}

impl Clone for Box<dyn Module> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

/// A module as a plain function of (parameters, input), for use inside `grad`, with its
/// current parameters: the seed's transfer-learning path.
///
/// ```
/// use ferrograd::{grad, DType, Generator, Tensor};
/// use ferrograd_nn::{functionalize, layers::Linear};
/// let mut rng = Generator::new(0);
/// let (f, params) = functionalize(&Linear::new(3, 2, &mut rng, DType::F64));
/// let x = Tensor::ones(&[4, 3], DType::F64);
/// let (g, _) = grad(|p: &Vec<Tensor>, x: &Tensor| f(p, x).sum()).call(&params, (&x,));
/// assert_eq!(g[1].to_vec::<f64>(), vec![4.0, 4.0]); // d/db of a sum over 4 rows
/// ```
pub fn functionalize(
    module: &dyn Module,
) -> (
    impl Fn(&Vec<Tensor>, &Tensor) -> Tensor + Send + Sync + Clone,
    Vec<Tensor>,
) {
    let m: Arc<dyn Module> = Arc::from(module.box_clone());
    let params = m.parameters();
    (
        move |p: &Vec<Tensor>, x: &Tensor| m.forward_with(p, x),
        params,
    )
}

/// A loss between an input and a target, the Torch nn way.
pub trait Criterion: Send + Sync {
    /// The differentiable loss.
    fn loss(&self, input: &Tensor, target: &Tensor) -> Tensor;

    /// The loss value.
    #[track_caller]
    fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        let called = Context::Call {
            what: "forward",
            at: Location::caller(),
        };
        let _called = enter(called);
        self.loss(&input.detach(), &target.detach())
    }

    /// The gradient of the loss with respect to `input`.
    #[track_caller]
    fn backward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        traced_criterion_backward(self, input, target)
    }
}

/// [`Criterion::backward`]'s default: traces the loss and walks it back.
#[track_caller]
pub(crate) fn traced_criterion_backward<C: Criterion + ?Sized>(
    criterion: &C,
    input: &Tensor,
    target: &Tensor,
) -> Tensor {
    let target = target.detach();
    let called = Context::Call {
        what: "backward",
        at: Location::caller(),
    };
    let _called = enter(called);
    let traced = record(&input.detach(), |x| criterion.loss(x, &target));
    let seed = traced.output().ones_like();
    traced.backward(&seed)
}

/// A criterion as a plain function of (prediction, target) for use inside `grad`; the
/// incoming gradient scales it as autodiff does.
pub fn functionalize_criterion(
    criterion: Arc<dyn Criterion>,
) -> impl Fn(&Tensor, &Tensor) -> Tensor + Send + Sync + Clone {
    move |p: &Tensor, t: &Tensor| criterion.loss(p, t)
}
