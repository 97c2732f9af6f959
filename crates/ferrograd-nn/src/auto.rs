//! AutoModule and AutoCriterion: a Module built from a differentiable function and its
//! weight and bias, and a criterion built from a differentiable function. They behave like
//! any Module (forward, backward with scale, clone, save, load); each instance keeps its own
//! function.

use std::sync::Arc;

use ferrograd::{compile, grad, Compiled, Grad, Stats, Tensor};

use crate::module::{self, Criterion, Module, ModuleState};

type ModuleFn = Arc<dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor + Send + Sync>;
type CriterionFn = Arc<dyn Fn(&Tensor, &Tensor) -> Tensor + Send + Sync>;

/// `(input, weight, bias)`: what an optimized module's function is compiled over.
type ModuleInputs = (Tensor, Tensor, Tensor);
type ModuleBody = Box<dyn Fn(&ModuleInputs) -> Tensor + Send + Sync>;
type CriterionBody = Box<dyn Fn(&Tensor, &Tensor) -> Tensor + Send + Sync>;

/// The compiled forward and backward of an optimized [`AutoModule`] or [`AutoCriterion`]
/// (the seed's pair of `autograd` functions: one with the forward only, one with the
/// gradient).
struct Optimized<B> {
    forward: Compiled<B>,
    backward: Grad<B>,
}

impl<B> Optimized<B> {
    fn stats(&self) -> (Stats, Stats) {
        (self.forward.stats(), self.backward.stats())
    }
}

/// A module computing `f(input, weight, bias)`, differentiated automatically.
#[derive(Clone)]
pub struct AutoModule {
    state: ModuleState,
    name: String,
    f: ModuleFn,
    optimized: Option<Arc<Optimized<ModuleBody>>>,
}

impl AutoModule {
    /// The module named `name` computing `f(input, weight, bias)` from the given parameters.
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// use ferrograd_nn::{AutoModule, Module};
    /// let linear = |x: &Tensor, w: &Tensor, b: &Tensor| w.mv(x) + b;
    /// let mut m = AutoModule::new("AutoLinear", linear, Tensor::ones(&[2, 3], DType::F64), Tensor::zeros(&[2], DType::F64));
    /// let x = Tensor::ones(&[3], DType::F64);
    /// assert_eq!(m.forward(&x).to_vec::<f64>(), vec![3.0, 3.0]);
    /// let dx = m.backward(&x, &Tensor::ones(&[2], DType::F64), 1.0);
    /// assert_eq!(dx.to_vec::<f64>(), vec![2.0, 2.0, 2.0]);
    /// ```
    pub fn new(
        name: &str,
        f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor + Send + Sync + 'static,
        weight: Tensor,
        bias: Tensor,
    ) -> AutoModule {
        AutoModule {
            state: ModuleState::new(vec![("weight", weight), ("bias", bias)]),
            name: name.to_string(),
            f: Arc::new(f),
            optimized: None,
        }
    }

    /// Optimize mode (default off): `forward` and `backward` each run the function compiled
    /// per input signature ([`ferrograd::compile`] and [`Grad::optimize`]), so after the
    /// first call of each shape they replay a plan instead of tracing. As in the seed,
    /// `backward` computes the forward again inside the compiled gradient rather than
    /// keeping the trace of `forward`: a step pays the forward twice, so this pays off for
    /// modules of small ops (where tracing dominates), not for matmul-bound ones. The
    /// function must be pure in its three arguments: tensors it captures are constants of
    /// the plan.
    ///
    /// This applies where the module's own `forward` and `backward` run. A container
    /// ([`Sequential`](crate::layers::Sequential)) traces its children's functions as one
    /// graph, so there the module runs in direct mode; to compile a whole model,
    /// differentiate [`functionalize`](crate::functionalize)`(&model)` with
    /// `grad(..).optimize(true)`.
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// use ferrograd_nn::{AutoModule, Module};
    /// let linear = |x: &Tensor, w: &Tensor, b: &Tensor| w.mv(x) + b;
    /// let mut m = AutoModule::new("AutoLinear", linear, Tensor::ones(&[2, 3], DType::F64), Tensor::zeros(&[2], DType::F64))
    ///     .optimize(true);
    /// let x = Tensor::ones(&[3], DType::F64);
    /// for _ in 0..3 {
    ///     assert_eq!(m.forward(&x).to_vec::<f64>(), vec![3.0, 3.0]);
    ///     let dx = m.backward(&x, &Tensor::ones(&[2], DType::F64), 1.0);
    ///     assert_eq!(dx.to_vec::<f64>(), vec![2.0, 2.0, 2.0]);
    /// }
    /// let (forward, backward) = m.stats().unwrap();
    /// assert_eq!((forward.hits, backward.hits), (2, 2));
    /// ```
    pub fn optimize(mut self, on: bool) -> AutoModule {
        self.optimized = on.then(|| {
            let body = |f: ModuleFn| -> ModuleBody { Box::new(move |p| f(&p.0, &p.1, &p.2)) };
            Arc::new(Optimized {
                forward: compile(body(self.f.clone())),
                backward: grad(body(self.f.clone()))
                    .with_forward(false)
                    .partial_grad(true)
                    .optimize(true),
            })
        });
        self
    }

    /// In optimize mode, what the compiled forward and backward have done so far.
    pub fn stats(&self) -> Option<(Stats, Stats)> {
        self.optimized.as_ref().map(|o| o.stats())
    }

    fn inputs(&self, input: &Tensor) -> ModuleInputs {
        let p = &self.state.params;
        (input.clone(), p[0].clone(), p[1].clone())
    }
}

impl Module for AutoModule {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        (self.f)(x, &p[0], &p[1])
    }
    #[track_caller]
    fn forward(&mut self, input: &Tensor) -> Tensor {
        match &self.optimized {
            Some(o) => o.forward.call(&self.inputs(input), ()),
            None => module::traced_forward(self, input),
        }
    }
    #[track_caller]
    fn backward(&mut self, input: &Tensor, grad_output: &Tensor, scale: f64) -> Tensor {
        let Some(o) = self.optimized.clone() else {
            return module::traced_backward(self, input, grad_output, scale);
        };
        let (dx, dw, db) = o
            .backward
            .run(&self.inputs(input), (), Some(grad_output))
            .grads
            .expect("gradients on");
        self.state.accumulate(vec![dw, db], scale);
        dx
    }
    crate::layers::module_boilerplate!();
}

/// A criterion computing `f(input, target)`, differentiated automatically.
#[derive(Clone)]
pub struct AutoCriterion {
    name: String,
    f: CriterionFn,
    optimized: Option<Arc<Optimized<CriterionBody>>>,
}

impl AutoCriterion {
    /// The criterion named `name` computing `f(input, target)`.
    pub fn new(
        name: &str,
        f: impl Fn(&Tensor, &Tensor) -> Tensor + Send + Sync + 'static,
    ) -> AutoCriterion {
        AutoCriterion {
            name: name.to_string(),
            f: Arc::new(f),
            optimized: None,
        }
    }

    /// Optimize mode (default off): `forward` and `backward` run the loss compiled per
    /// input signature, replaying a plan after the first call of each shape (see
    /// [`AutoModule::optimize`]).
    pub fn optimize(mut self, on: bool) -> AutoCriterion {
        self.optimized = on.then(|| {
            let body = |f: CriterionFn| -> CriterionBody { Box::new(move |x, t| f(x, t)) };
            Arc::new(Optimized {
                forward: compile(body(self.f.clone())),
                backward: grad(body(self.f.clone()))
                    .with_forward(false)
                    .optimize(true),
            })
        });
        self
    }

    /// In optimize mode, what the compiled loss and gradient have done so far.
    pub fn stats(&self) -> Option<(Stats, Stats)> {
        self.optimized.as_ref().map(|o| o.stats())
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Criterion for AutoCriterion {
    fn loss(&self, input: &Tensor, target: &Tensor) -> Tensor {
        (self.f)(input, target)
    }
    #[track_caller]
    fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        match &self.optimized {
            Some(o) => o.forward.call(&input.detach(), (&target.detach(),)),
            None => self.loss(&input.detach(), &target.detach()),
        }
    }
    #[track_caller]
    fn backward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        match &self.optimized {
            Some(o) => o
                .backward
                .run(&input.detach(), (&target.detach(),), None)
                .grads
                .expect("gradients on"),
            None => module::traced_criterion_backward(self, input, target),
        }
    }
}
