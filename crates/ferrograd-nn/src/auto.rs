//! AutoModule and AutoCriterion: a Module built from a differentiable function and its
//! weight and bias, and a criterion built from a differentiable function. They behave like
//! any Module (forward, backward with scale, clone, save, load); each instance keeps its own
//! function.

use std::sync::Arc;

use ferrograd::Tensor;

use crate::module::{Criterion, Module, ModuleState};

type ModuleFn = Arc<dyn Fn(&Tensor, &Tensor, &Tensor) -> Tensor + Send + Sync>;
type CriterionFn = Arc<dyn Fn(&Tensor, &Tensor) -> Tensor + Send + Sync>;

/// A module computing `f(input, weight, bias)`, differentiated automatically.
#[derive(Clone)]
pub struct AutoModule {
    state: ModuleState,
    name: String,
    f: ModuleFn,
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
        }
    }
}

impl Module for AutoModule {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        (self.f)(x, &p[0], &p[1])
    }
    crate::layers::module_boilerplate!();
}

/// A criterion computing `f(input, target)`, differentiated automatically.
#[derive(Clone)]
pub struct AutoCriterion {
    name: String,
    f: CriterionFn,
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
        }
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
}
