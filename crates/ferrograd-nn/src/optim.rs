//! Optimizers over parameter trees: SGD (momentum, Nesterov, weight decay, learning-rate
//! decay), Adam, AdamW, Adamax, NAdam, RAdam, AdaGrad, Adadelta, RMSprop, Rprop, ASGD and
//! L-BFGS (with a strong-Wolfe line search), each with its state
//! kept per leaf and saveable as a tree; learning-rate schedules; and gradient-norm
//! clipping.
//!
//! Every update follows the textbook (PyTorch's documented) algorithm step for step.

use std::collections::BTreeMap;

use ferrograd::{leaves, rebuild, Tensor, Tree};

/// What every optimizer offers.
pub trait Optimizer {
    /// The parameters after one step with `grads` (same tree type).
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P;

    /// The state (moments, step count) by name, for checkpoints.
    fn state(&self) -> BTreeMap<String, Tensor>;

    /// Restores a state saved with [`state`](Optimizer::state).
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>);

    /// The learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate (what a [`Schedule`] does each epoch).
    fn set_lr(&mut self, lr: f64);
}

/// `lr` and `set_lr` for an optimizer with a public `lr` field.
macro_rules! lr_field {
    () => {
        fn lr(&self) -> f64 {
            self.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.lr = lr;
        }
    };
}

/// Per-leaf buffers, created as zeros at the first step.
#[derive(Clone, Debug, Default)]
struct Buffers(Vec<Tensor>);

impl Buffers {
    /// Zeros like `params` at the first step; after it, `params` must be the ones the
    /// buffers were made for (an optimizer stepping another tree broadcast its buffers
    /// into the new params, or refused inside an update).
    #[track_caller]
    fn ensure(&mut self, optimizer: &str, params: &[Tensor]) {
        if self.0.is_empty() {
            self.0 = params.iter().map(|p| p.zeros_like()).collect();
            return;
        }
        let shapes = |ts: &[Tensor]| ts.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>();
        if shapes(&self.0) != shapes(params) {
            crate::fail!(
                "{optimizer}: its state was made for parameters of shapes {:?}, this step's are \
                 {:?} (one optimizer per parameter tree)",
                shapes(&self.0),
                shapes(params)
            );
        }
    }

    fn save(&self, name: &str, out: &mut BTreeMap<String, Tensor>) {
        for (i, t) in self.0.iter().enumerate() {
            out.insert(format!("{name}.{i}"), t.clone());
        }
    }

    fn load(&mut self, name: &str, state: &BTreeMap<String, Tensor>) {
        let prefix = format!("{name}.");
        let mut v: Vec<(usize, Tensor)> = state
            .iter()
            .filter_map(|(k, t)| {
                k.strip_prefix(&prefix)
                    .and_then(|i| i.parse().ok())
                    .map(|i| (i, t.clone()))
            })
            .collect();
        v.sort_by_key(|(i, _)| *i);
        self.0 = v.into_iter().map(|(_, t)| t).collect();
    }
}

/// Adam's moments and step count, shared by the Adam family: `m ← β₁ m + (1 - β₁) g`,
/// `v ← β₂ v + (1 - β₂) g²`, saved as PyTorch names them.
#[derive(Clone, Debug, Default)]
struct Moments {
    steps: u64,
    m: Buffers,
    v: Buffers,
}

impl Moments {
    /// Starts a step over `params`: the buffers exist, the count is up; returns it.
    #[track_caller]
    fn begin(&mut self, optimizer: &str, params: &[Tensor]) -> u64 {
        self.m.ensure(optimizer, params);
        self.v.ensure(optimizer, params);
        self.steps += 1;
        self.steps
    }

    /// Updates leaf `i`'s moments with `g`; returns `(m, v)`.
    fn update(&mut self, i: usize, g: &Tensor, (b1, b2): (f64, f64)) -> (Tensor, Tensor) {
        let m = &(&self.m.0[i] * b1) + &(g * (1.0 - b1));
        let v = &(&self.v.0[i] * b2) + &(&g.square() * (1.0 - b2));
        self.m.0[i] = m.clone();
        self.v.0[i] = v.clone();
        (m, v)
    }

    fn save(&self, out: &mut BTreeMap<String, Tensor>) {
        out.insert("step".into(), Tensor::scalar(self.steps as i64));
        self.m.save("exp_avg", out);
        self.v.save("exp_avg_sq", out);
    }

    fn load(&mut self, state: &BTreeMap<String, Tensor>) {
        self.steps = state.get("step").map_or(0, |t| t.item::<i64>() as u64);
        self.m.load("exp_avg", state);
        self.v.load("exp_avg_sq", state);
    }
}

/// Checks an Adam-family optimizer's `lr`, `betas`, `eps` and `others`.
#[track_caller]
fn check_adam(optimizer: &str, lr: f64, betas: (f64, f64), eps: f64, others: &[(&str, f64)]) {
    check(optimizer, "lr", lr, false);
    check(optimizer, "betas.0", betas.0, true);
    check(optimizer, "betas.1", betas.1, true);
    check(optimizer, "eps", eps, false);
    for &(name, v) in others {
        check(optimizer, name, v, false);
    }
}

/// Panics, naming the optimizer, the hyper-parameter and the caller's line, unless `value`
/// is finite and at least 0 (below 1 too when `below_one`): PyTorch's checks, which refuse a
/// NaN learning rate before it turns every parameter into NaN.
#[track_caller]
fn check(optimizer: &str, name: &str, value: f64, below_one: bool) {
    let ok = value.is_finite() && value >= 0.0 && (!below_one || value < 1.0);
    if !ok {
        let range = if below_one {
            "in [0, 1)"
        } else {
            "finite and >= 0"
        };
        crate::fail!("{optimizer}: {name} must be {range}, got {value}");
    }
}

fn detached<P: Tree>(tree: &P) -> Vec<Tensor> {
    leaves(tree).iter().map(Tensor::detach).collect()
}

/// The leaves of `params` and `grads`, detached, after checking that each gradient has its
/// parameter's shape and dtype (a `[3, 1]` gradient for a `[3]` parameter broadcast the
/// update into a `[3, 3]` parameter, silently).
#[track_caller]
fn paired<P: Tree>(optimizer: &str, params: &P, grads: &P) -> (Vec<Tensor>, Vec<Tensor>) {
    let (ps, gs) = (detached(params), detached(grads));
    if ps.len() != gs.len() {
        crate::fail!(
            "{optimizer}: {} parameters and {} gradients",
            ps.len(),
            gs.len()
        );
    }
    for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
        if p.shape() != g.shape() || p.dtype() != g.dtype() {
            crate::fail!(
                "{optimizer}: gradient {i} is {:?} {}, its parameter {:?} {}",
                g.shape(),
                g.dtype(),
                p.shape(),
                p.dtype()
            );
        }
    }
    (ps, gs)
}

/// Stochastic gradient descent: `g ← g + λ p`; with momentum `b ← μ b + (1 - dampening) g`
/// (`b = g` at the first step), then `g ← g + μ b` (Nesterov) or `g ← b`; finally
/// `p ← p - lr / (1 + t · decay) · g`.
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
    /// Dampening of the momentum term.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// L2 weight decay λ.
    pub weight_decay: f64,
    /// Learning-rate decay (Torch's `learningRateDecay`).
    pub lr_decay: f64,
    steps: u64,
    momentum_buffers: Buffers,
}

impl Sgd {
    /// Plain SGD at `lr`.
    #[track_caller]
    pub fn new(lr: f64) -> Sgd {
        check("Sgd", "lr", lr, false);
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            lr_decay: 0.0,
            steps: 0,
            momentum_buffers: Buffers::default(),
        }
    }

    /// Sets the momentum.
    #[track_caller]
    pub fn momentum(mut self, momentum: f64) -> Sgd {
        check("Sgd", "momentum", momentum, false);
        self.momentum = momentum;
        self
    }

    /// Turns on Nesterov momentum.
    pub fn nesterov(mut self, on: bool) -> Sgd {
        self.nesterov = on;
        self
    }

    /// Sets the L2 weight decay.
    #[track_caller]
    pub fn weight_decay(mut self, weight_decay: f64) -> Sgd {
        check("Sgd", "weight_decay", weight_decay, false);
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the learning-rate decay.
    #[track_caller]
    pub fn lr_decay(mut self, lr_decay: f64) -> Sgd {
        check("Sgd", "lr_decay", lr_decay, false);
        self.lr_decay = lr_decay;
        self
    }
}

impl Optimizer for Sgd {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        // the fields are public: check what may have been assigned since
        for (name, v) in [
            ("lr", self.lr),
            ("momentum", self.momentum),
            ("dampening", self.dampening),
            ("weight_decay", self.weight_decay),
            ("lr_decay", self.lr_decay),
        ] {
            check("Sgd", name, v, false);
        }
        let (ps, gs) = paired("Sgd", params, grads);
        let first = self.momentum_buffers.0.is_empty();
        self.momentum_buffers.ensure("Sgd", &ps);
        let lr = self.lr / (1.0 + self.steps as f64 * self.lr_decay);
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let mut g = if self.weight_decay != 0.0 {
                g + &(p * self.weight_decay)
            } else {
                g.clone()
            };
            if self.momentum != 0.0 {
                let b = if first {
                    g.clone()
                } else {
                    &(&self.momentum_buffers.0[i] * self.momentum) + &(&g * (1.0 - self.dampening))
                };
                g = if self.nesterov {
                    &g + &(&b * self.momentum)
                } else {
                    b.clone()
                };
                self.momentum_buffers.0[i] = b;
            }
            out.push(p - &(&g * lr));
        }
        self.steps += 1;
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        s.insert("step".into(), Tensor::scalar(self.steps as i64));
        self.momentum_buffers.save("momentum", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.steps = state.get("step").map_or(0, |t| t.item::<i64>() as u64);
        self.momentum_buffers.load("momentum", state);
    }
}

/// Adam (`decoupled = false`, L2 decay added to the gradient) and AdamW (`decoupled = true`,
/// `p ← p - lr λ p` before the Adam step): `m ← β₁ m + (1 - β₁) g`, `v ← β₂ v + (1 - β₂) g²`,
/// `p ← p - lr m̂ / (sqrt(v̂) + ε)` with bias-corrected `m̂ = m / (1 - β₁ᵗ)`, `v̂ = v / (1 - β₂ᵗ)`.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
    /// AMSGrad: divide by the largest `v` so far instead of the current one.
    pub amsgrad: bool,
    moments: Moments,
    v_max: Buffers,
}

impl Adam {
    /// Adam with PyTorch's defaults (β = (0.9, 0.999), ε = 1e-8).
    #[track_caller]
    pub fn new(lr: f64) -> Adam {
        check("Adam", "lr", lr, false);
        Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
            moments: Moments::default(),
            v_max: Buffers::default(),
        }
    }

    /// Turns AMSGrad on or off.
    pub fn amsgrad(mut self, on: bool) -> Adam {
        self.amsgrad = on;
        self
    }

    /// AdamW with PyTorch's defaults (weight decay 0.01).
    #[track_caller]
    pub fn adamw(lr: f64) -> Adam {
        Adam {
            weight_decay: 0.01,
            decoupled: true,
            ..Adam::new(lr)
        }
    }

    /// Sets the weight decay.
    #[track_caller]
    pub fn weight_decay(mut self, weight_decay: f64) -> Adam {
        check("Adam", "weight_decay", weight_decay, false);
        self.weight_decay = weight_decay;
        self
    }
}

impl Optimizer for Adam {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        let decay = [("weight_decay", self.weight_decay)];
        check_adam("Adam", self.lr, self.betas, self.eps, &decay);
        let (ps, gs) = paired("Adam", params, grads);
        let t = self.moments.begin("Adam", &ps) as i32;
        if self.amsgrad {
            self.v_max.ensure("Adam", &ps);
        }
        let (b1, b2) = self.betas;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let mut p = p.clone();
            let g = if self.decoupled {
                p = &p * (1.0 - self.lr * self.weight_decay);
                g.clone()
            } else if self.weight_decay != 0.0 {
                g + &(&p * self.weight_decay)
            } else {
                g.clone()
            };
            let (m, v) = self.moments.update(i, &g, self.betas);
            let denominator = if self.amsgrad {
                let v_max = self.v_max.0[i].maximum(&v);
                self.v_max.0[i] = v_max.clone();
                v_max
            } else {
                v.clone()
            };
            let update = &(&m * (1.0 / c1)) / &(&(&denominator * (1.0 / c2)).sqrt() + self.eps);
            out.push(&p - &(&update * self.lr));
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.moments.save(&mut s);
        self.v_max.save("max_exp_avg_sq", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.moments.load(state);
        self.v_max.load("max_exp_avg_sq", state);
    }
}

/// AdaGrad: `s ← s + g²`, `p ← p - lr / (1 + (t - 1) decay) · g / (sqrt(s) + ε)`.
#[derive(Clone, Debug)]
pub struct AdaGrad {
    /// Learning rate.
    pub lr: f64,
    /// Learning-rate decay.
    pub lr_decay: f64,
    /// ε (PyTorch's default 1e-10).
    pub eps: f64,
    /// Weight decay λ (adds `λ p` to the gradient).
    pub weight_decay: f64,
    steps: u64,
    sums: Buffers,
}

impl AdaGrad {
    /// AdaGrad at `lr`.
    #[track_caller]
    pub fn new(lr: f64) -> AdaGrad {
        check("AdaGrad", "lr", lr, false);
        AdaGrad {
            lr,
            lr_decay: 0.0,
            eps: 1e-10,
            weight_decay: 0.0,
            steps: 0,
            sums: Buffers::default(),
        }
    }
}

impl Optimizer for AdaGrad {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        for (name, v) in [
            ("lr", self.lr),
            ("lr_decay", self.lr_decay),
            ("eps", self.eps),
            ("weight_decay", self.weight_decay),
        ] {
            check("AdaGrad", name, v, false);
        }
        let (ps, gs) = paired("AdaGrad", params, grads);
        self.sums.ensure("AdaGrad", &ps);
        self.steps += 1;
        let lr = self.lr / (1.0 + (self.steps - 1) as f64 * self.lr_decay);
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let g = &decayed(g, p, self.weight_decay);
            let s = &self.sums.0[i] + &g.square();
            out.push(p - &(&(g / &(&s.sqrt() + self.eps)) * lr));
            self.sums.0[i] = s;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        s.insert("step".into(), Tensor::scalar(self.steps as i64));
        self.sums.save("sum", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.steps = state.get("step").map_or(0, |t| t.item::<i64>() as u64);
        self.sums.load("sum", state);
    }
}

/// RMSprop: `v ← α v + (1 - α) g²`, `p ← p - lr g / (sqrt(v) + ε)`.
#[derive(Clone, Debug)]
pub struct RmsProp {
    /// Learning rate.
    pub lr: f64,
    /// Smoothing α (PyTorch's default 0.99).
    pub alpha: f64,
    /// ε (PyTorch's default 1e-8).
    pub eps: f64,
    /// Weight decay λ (adds `λ p` to the gradient).
    pub weight_decay: f64,
    /// Momentum μ on the scaled step (0: none).
    pub momentum: f64,
    /// Centered: divide by an estimate of the gradient's standard deviation
    /// (`v - mean(g)²`) instead of its root mean square.
    pub centered: bool,
    squares: Buffers,
    means: Buffers,
    velocity: Buffers,
}

impl RmsProp {
    /// RMSprop at `lr`.
    #[track_caller]
    pub fn new(lr: f64) -> RmsProp {
        check("RmsProp", "lr", lr, false);
        RmsProp {
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            squares: Buffers::default(),
            means: Buffers::default(),
            velocity: Buffers::default(),
        }
    }

    /// Sets the momentum.
    #[track_caller]
    pub fn momentum(mut self, momentum: f64) -> RmsProp {
        check("RmsProp", "momentum", momentum, false);
        self.momentum = momentum;
        self
    }

    /// Turns the centered variant on or off.
    pub fn centered(mut self, on: bool) -> RmsProp {
        self.centered = on;
        self
    }
}

impl Optimizer for RmsProp {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        check("RmsProp", "lr", self.lr, false);
        check("RmsProp", "alpha", self.alpha, false);
        check("RmsProp", "eps", self.eps, false);
        check("RmsProp", "weight_decay", self.weight_decay, false);
        check("RmsProp", "momentum", self.momentum, false);
        let (ps, gs) = paired("RmsProp", params, grads);
        self.squares.ensure("RmsProp", &ps);
        if self.centered {
            self.means.ensure("RmsProp", &ps);
        }
        if self.momentum > 0.0 {
            self.velocity.ensure("RmsProp", &ps);
        }
        let a = self.alpha;
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let g = &decayed(g, p, self.weight_decay);
            let v = &(&self.squares.0[i] * a) + &(&g.square() * (1.0 - a));
            let spread = if self.centered {
                let mean = &(&self.means.0[i] * a) + &(g * (1.0 - a));
                let spread = &v - &mean.square();
                self.means.0[i] = mean;
                spread
            } else {
                v.clone()
            };
            let scaled = g / &(&spread.sqrt() + self.eps);
            let step = if self.momentum > 0.0 {
                let b = &(&self.velocity.0[i] * self.momentum) + &scaled;
                self.velocity.0[i] = b.clone();
                b
            } else {
                scaled
            };
            out.push(p - &(&step * self.lr));
            self.squares.0[i] = v;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.squares.save("square_avg", &mut s);
        self.means.save("grad_avg", &mut s);
        self.velocity.save("momentum_buffer", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.squares.load("square_avg", state);
        self.means.load("grad_avg", state);
        self.velocity.load("momentum_buffer", state);
    }
}

/// Adamax (Adam with the infinity norm): `m ← β₁ m + (1 - β₁) g`,
/// `u ← max(β₂ u, |g| + ε)`, `p ← p - lr / (1 - β₁ᵗ) · m / u` (PyTorch's defaults: lr 0.002,
/// β = (0.9, 0.999), ε = 1e-8; weight decay adds `λ p` to the gradient).
#[derive(Clone, Debug)]
pub struct Adamax {
    /// Learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    steps: u64,
    m: Buffers,
    u: Buffers,
}

impl Adamax {
    /// Adamax at `lr` with PyTorch's other defaults.
    #[track_caller]
    pub fn new(lr: f64) -> Adamax {
        check("Adamax", "lr", lr, false);
        Adamax {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            steps: 0,
            m: Buffers::default(),
            u: Buffers::default(),
        }
    }
}

impl Optimizer for Adamax {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        let decay = [("weight_decay", self.weight_decay)];
        check_adam("Adamax", self.lr, self.betas, self.eps, &decay);
        let (ps, gs) = paired("Adamax", params, grads);
        self.m.ensure("Adamax", &ps);
        self.u.ensure("Adamax", &ps);
        self.steps += 1;
        let (b1, b2) = self.betas;
        let clr = self.lr / (1.0 - b1.powi(self.steps as i32));
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let g = decayed(g, p, self.weight_decay);
            let m = &(&self.m.0[i] * b1) + &(&g * (1.0 - b1));
            let u = (&self.u.0[i] * b2).maximum(&(g.abs() + self.eps));
            out.push(p - &(&(&m / &u) * clr));
            self.m.0[i] = m;
            self.u.0[i] = u;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        s.insert("step".into(), Tensor::scalar(self.steps as i64));
        self.m.save("exp_avg", &mut s);
        self.u.save("exp_inf", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.steps = state.get("step").map_or(0, |t| t.item::<i64>() as u64);
        self.m.load("exp_avg", state);
        self.u.load("exp_inf", state);
    }
}

/// NAdam (Adam with Nesterov momentum, Dozat), as PyTorch: momentum decay ψ = 0.004
/// schedules `μₜ = β₁ (1 - ½ · 0.96^(t ψ))`; with `m`, `v` as Adam's and
/// `d = sqrt(v / (1 - β₂ᵗ)) + ε`, `p ← p - lr (1 - μₜ) / (1 - Πμ) · g / d
/// - lr μₜ₊₁ / (1 - Πμ · μₜ₊₁) · m / d` (defaults lr 0.002, β = (0.9, 0.999), ε = 1e-8).
#[derive(Clone, Debug)]
pub struct NAdam {
    /// Learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// ψ.
    pub momentum_decay: f64,
    mu_product: f64,
    moments: Moments,
}

impl NAdam {
    /// NAdam at `lr` with PyTorch's other defaults.
    #[track_caller]
    pub fn new(lr: f64) -> NAdam {
        check("NAdam", "lr", lr, false);
        NAdam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            momentum_decay: 0.004,
            mu_product: 1.0,
            moments: Moments::default(),
        }
    }
}

impl Optimizer for NAdam {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        let decay = [("momentum_decay", self.momentum_decay)];
        check_adam("NAdam", self.lr, self.betas, self.eps, &decay);
        let (ps, gs) = paired("NAdam", params, grads);
        let step = self.moments.begin("NAdam", &ps);
        let (b1, b2) = self.betas;
        let t = step as f64;
        let mu = b1 * (1.0 - 0.5 * 0.96f64.powf(t * self.momentum_decay));
        let mu_next = b1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * self.momentum_decay));
        self.mu_product *= mu;
        let c2 = 1.0 - b2.powi(step as i32);
        let k_g = self.lr * (1.0 - mu) / (1.0 - self.mu_product);
        let k_m = self.lr * mu_next / (1.0 - self.mu_product * mu_next);
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let (m, v) = self.moments.update(i, g, self.betas);
            let d = &(&v * (1.0 / c2)).sqrt() + self.eps;
            out.push(&(p - &(&(g / &d) * k_g)) - &(&(&m / &d) * k_m));
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.moments.save(&mut s);
        s.insert("mu_product".into(), Tensor::scalar(self.mu_product));
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.moments.load(state);
        self.mu_product = state.get("mu_product").map_or(1.0, |t| t.item::<f64>());
    }
}

/// RAdam (rectified Adam, Liu et al.), as PyTorch: with `ρ∞ = 2 / (1 - β₂) - 1` and
/// `ρₜ = ρ∞ - 2 t β₂ᵗ / (1 - β₂ᵗ)`, a plain momentum step `lr m̂` while `ρₜ ≤ 5`, then the
/// Adam step scaled by `r = sqrt((ρₜ - 4)(ρₜ - 2) ρ∞ / ((ρ∞ - 4)(ρ∞ - 2) ρₜ))`:
/// `p ← p - lr m̂ r sqrt(1 - β₂ᵗ) / (sqrt(v) + ε)` (defaults lr 0.001, β = (0.9, 0.999),
/// ε = 1e-8).
#[derive(Clone, Debug)]
pub struct RAdam {
    /// Learning rate.
    pub lr: f64,
    /// β₁, β₂.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    moments: Moments,
}

impl RAdam {
    /// RAdam at `lr` with PyTorch's other defaults.
    #[track_caller]
    pub fn new(lr: f64) -> RAdam {
        check("RAdam", "lr", lr, false);
        RAdam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            moments: Moments::default(),
        }
    }
}

impl Optimizer for RAdam {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        check_adam("RAdam", self.lr, self.betas, self.eps, &[]);
        let (ps, gs) = paired("RAdam", params, grads);
        let t = self.moments.begin("RAdam", &ps) as i32;
        let (b1, b2) = self.betas;
        let (c1, b2t) = (1.0 - b1.powi(t), b2.powi(t));
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho = rho_inf - 2.0 * t as f64 * b2t / (1.0 - b2t);
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let (m, v) = self.moments.update(i, g, self.betas);
            let m_hat = &m * (1.0 / c1);
            let step = if rho > 5.0 {
                let r = ((rho - 4.0) * (rho - 2.0) * rho_inf
                    / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
                    .sqrt();
                &(&m_hat * (r * (1.0 - b2t).sqrt())) / &(&v.sqrt() + self.eps)
            } else {
                m_hat
            };
            out.push(p - &(&step * self.lr));
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.moments.save(&mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.moments.load(state);
    }
}

/// `g + λ p`, or `g` when `λ` is 0.
fn decayed(g: &Tensor, p: &Tensor, weight_decay: f64) -> Tensor {
    if weight_decay == 0.0 {
        g.clone()
    } else {
        g + &(p * weight_decay)
    }
}

/// Adadelta: `v ← ρ v + (1 - ρ) g²`, `Δ = sqrt(u + ε) / sqrt(v + ε) · g`,
/// `u ← ρ u + (1 - ρ) Δ²`, `p ← p - lr Δ` (PyTorch's defaults: lr 1, ρ 0.9, ε 1e-6).
#[derive(Clone, Debug)]
pub struct Adadelta {
    /// Learning rate (a scale on Δ; 1 in the paper).
    pub lr: f64,
    /// ρ.
    pub rho: f64,
    /// ε.
    pub eps: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    squares: Buffers,
    deltas: Buffers,
}

impl Adadelta {
    /// Adadelta at `lr` with PyTorch's other defaults.
    #[track_caller]
    pub fn new(lr: f64) -> Adadelta {
        check("Adadelta", "lr", lr, false);
        Adadelta {
            lr,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            squares: Buffers::default(),
            deltas: Buffers::default(),
        }
    }
}

impl Optimizer for Adadelta {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        check("Adadelta", "lr", self.lr, false);
        check("Adadelta", "rho", self.rho, false);
        check("Adadelta", "eps", self.eps, false);
        check("Adadelta", "weight_decay", self.weight_decay, false);
        let (ps, gs) = paired("Adadelta", params, grads);
        self.squares.ensure("Adadelta", &ps);
        self.deltas.ensure("Adadelta", &ps);
        let rho = self.rho;
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let g = decayed(g, p, self.weight_decay);
            let v = &(&self.squares.0[i] * rho) + &(&g.square() * (1.0 - rho));
            let delta = &(&(&self.deltas.0[i] + self.eps).sqrt() / &(&v + self.eps).sqrt()) * &g;
            let u = &(&self.deltas.0[i] * rho) + &(&delta.square() * (1.0 - rho));
            out.push(p - &(&delta * self.lr));
            self.squares.0[i] = v;
            self.deltas.0[i] = u;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.squares.save("square_avg", &mut s);
        self.deltas.save("acc_delta", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.squares.load("square_avg", state);
        self.deltas.load("acc_delta", state);
    }
}

/// Rprop (resilient backpropagation, full-batch training): each element keeps its own step
/// size, multiplied by η₊ (1.2) while the gradient keeps its sign and by η₋ (0.5) when it
/// flips (clamped to [1e-6, 50]); a flip also skips that element's update once; then
/// `p ← p - sign(g) · step` (PyTorch's algorithm; the steps start at `lr`).
#[derive(Clone, Debug)]
pub struct Rprop {
    /// Learning rate: the initial step size.
    pub lr: f64,
    /// η₋, η₊.
    pub etas: (f64, f64),
    /// The smallest and largest step size.
    pub step_sizes: (f64, f64),
    previous: Buffers,
    steps: Buffers,
}

impl Rprop {
    /// Rprop starting with steps of `lr` (PyTorch's default 0.01).
    #[track_caller]
    pub fn new(lr: f64) -> Rprop {
        check("Rprop", "lr", lr, false);
        Rprop {
            lr,
            etas: (0.5, 1.2),
            step_sizes: (1e-6, 50.0),
            previous: Buffers::default(),
            steps: Buffers::default(),
        }
    }
}

impl Optimizer for Rprop {
    lr_field!();

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        check("Rprop", "lr", self.lr, false);
        let (minus, plus) = self.etas;
        let (low, high) = self.step_sizes;
        let ok = 0.0 < minus && minus < 1.0 && plus > 1.0 && 0.0 <= low && low <= high;
        if !ok {
            crate::fail!(
                "Rprop: needs 0 < etas.0 < 1 < etas.1 and 0 <= step_sizes.0 <= \
                 step_sizes.1, got {:?} and {:?}",
                self.etas,
                self.step_sizes
            );
        }
        let (ps, gs) = paired("Rprop", params, grads);
        if self.steps.0.len() != ps.len() {
            self.previous.ensure("Rprop", &ps);
            self.steps.0 = ps.iter().map(|p| &p.zeros_like() + self.lr).collect();
        }
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let agree = g * &self.previous.0[i];
            let (same, flipped) = (agree.gt_scalar(0.0), agree.lt_scalar(0.0));
            let step = &self.steps.0[i];
            let ones = step.ones_like();
            let factor = Tensor::where_cond(
                &same,
                &(&ones * plus),
                &Tensor::where_cond(&flipped, &(&ones * minus), &ones),
            );
            let step = (step * &factor).clamp(Some(low), Some(high));
            let g = Tensor::where_cond(&flipped, &g.zeros_like(), g);
            out.push(p - &(&g.sign() * &step));
            self.previous.0[i] = g;
            self.steps.0[i] = step;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.previous.save("prev", &mut s);
        self.steps.save("step_size", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.previous.load("prev", state);
        self.steps.load("step_size", state);
    }
}

/// Parameter groups (PyTorch's `param_groups`): each leaf of the parameter tree goes to
/// the first group whose predicate accepts its name (as [`ferrograd::leaf_names`] spells
/// it), and each group is one optimizer of the same kind with its own hyper-parameters;
/// leaves no group accepts are left as they are. The learning rate of the whole is the
/// first group's: [`set_lr`](Optimizer::set_lr) (what a [`Schedule`] calls) sets it and
/// keeps every other group's ratio to it, as PyTorch's schedulers scale each group's base
/// rate by the same factor.
///
/// ```
/// use ferrograd::{DType, Tensor};
/// use ferrograd_nn::optim::{Groups, Optimizer, Sgd};
/// #[derive(Clone, ferrograd::Tree)]
/// struct Params { weight: Tensor, bias: Tensor }
/// let p = Params { weight: Tensor::ones(&[2], DType::F64), bias: Tensor::ones(&[2], DType::F64) };
/// // weight decay on the weights only, and a slower rate for the biases
/// let mut opt = Groups::new()
///     .group(|name| name.ends_with("bias"), Sgd::new(0.05))
///     .group(|_| true, Sgd::new(0.1).weight_decay(0.5));
/// let p = opt.step(&p, &p.clone());
/// assert_eq!(p.bias.to_vec::<f64>(), vec![0.95, 0.95]);
/// assert_eq!(p.weight.to_vec::<f64>(), vec![0.85, 0.85]); // 1 - 0.1 (1 + 0.5)
/// ```
pub struct Groups<O: Optimizer> {
    /// (which leaves, their optimizer, its base rate)
    groups: Vec<(Accepts, O, f64)>,
}

/// A group's test on leaf names.
type Accepts = Box<dyn Fn(&str) -> bool + Send + Sync>;

impl<O: Optimizer> Default for Groups<O> {
    fn default() -> Groups<O> {
        Groups { groups: Vec::new() }
    }
}

impl<O: Optimizer> Groups<O> {
    /// No groups yet.
    pub fn new() -> Groups<O> {
        Groups::default()
    }

    /// Adds a group: the leaves whose names `accepts` (and no earlier group took), stepped
    /// by `optimizer`.
    pub fn group(
        mut self,
        accepts: impl Fn(&str) -> bool + Send + Sync + 'static,
        optimizer: O,
    ) -> Groups<O> {
        let base = optimizer.lr();
        self.groups.push((Box::new(accepts), optimizer, base));
        self
    }

    /// Group `i`'s optimizer (to read or change its hyper-parameters).
    pub fn get_mut(&mut self, i: usize) -> &mut O {
        &mut self.groups[i].1
    }

    /// The group of each leaf name, or `None`.
    fn assign(&self, names: &[String]) -> Vec<Option<usize>> {
        names
            .iter()
            .map(|n| self.groups.iter().position(|(accepts, _, _)| accepts(n)))
            .collect()
    }
}

impl<O: Optimizer> Optimizer for Groups<O> {
    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        let names = ferrograd::leaf_names(params);
        let (ps, gs) = (leaves(params), leaves(grads));
        let owner = self.assign(&names);
        let mut out = ps.clone();
        for (g, (_, opt, _)) in self.groups.iter_mut().enumerate() {
            let mine: Vec<usize> = (0..ps.len()).filter(|&i| owner[i] == Some(g)).collect();
            if mine.is_empty() {
                continue;
            }
            let sub_p: Vec<Tensor> = mine.iter().map(|&i| ps[i].clone()).collect();
            let sub_g: Vec<Tensor> = mine.iter().map(|&i| gs[i].clone()).collect();
            for (i, t) in mine.iter().zip(opt.step(&sub_p, &sub_g)) {
                out[*i] = t;
            }
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        for (g, (_, opt, _)) in self.groups.iter().enumerate() {
            for (k, v) in opt.state() {
                s.insert(format!("group{g}.{k}"), v);
            }
        }
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        for (g, (_, opt, _)) in self.groups.iter_mut().enumerate() {
            let prefix = format!("group{g}.");
            let mine: BTreeMap<String, Tensor> = state
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
                .collect();
            opt.load_state(&mine);
        }
    }

    /// The first group's rate (0 with no groups).
    fn lr(&self) -> f64 {
        self.groups.first().map_or(0.0, |(_, o, _)| o.lr())
    }

    /// Sets the first group's rate to `lr` and every other group's to its base rate times
    /// the same factor.
    fn set_lr(&mut self, lr: f64) {
        let Some(first) = self.groups.first().map(|(_, _, base)| *base) else {
            return;
        };
        for (_, opt, base) in &mut self.groups {
            let scaled = if first == 0.0 { lr } else { *base * lr / first };
            opt.set_lr(scaled);
        }
    }
}

/// Averaged SGD (Polyak and Juditsky), as PyTorch's ASGD: `g ← g + λ_wd p`,
/// `p ← p (1 - λ η) - η g`, then the running average `a ← a + μ (p - a)` (`a = p` while
/// `μ = 1`), with `η = lr / (1 + λ lr t)^α` and `μ = 1 / max(1, t - t₀)` updated after each
/// step `t` (defaults λ = 1e-4, α = 0.75, t₀ = 1e6). The averaged parameters, usually the
/// ones to evaluate, are [`averaged`](Asgd::averaged).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::optim::{Asgd, Optimizer};
/// let mut opt = Asgd::new(0.1);
/// let mut x = Tensor::from_vec(vec![1.0f64], &[1]);
/// for _ in 0..10 {
///     let g = &x * 2.0; // d x² / dx
///     x = opt.step(&x, &g);
/// }
/// assert!(x.item::<f64>().abs() < 0.2);
/// let evaluate = opt.averaged(&x); // the averaged parameters (= x until step t₀)
/// assert_eq!(evaluate.item::<f64>(), x.item::<f64>());
/// ```
#[derive(Clone, Debug)]
pub struct Asgd {
    /// Learning rate.
    pub lr: f64,
    /// Decay term λ.
    pub lambd: f64,
    /// Power α of the step-size schedule.
    pub alpha: f64,
    /// The step at which averaging starts, t₀.
    pub t0: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    steps: u64,
    eta: f64,
    mu: f64,
    averages: Buffers,
}

impl Asgd {
    /// ASGD at `lr` with PyTorch's other defaults.
    #[track_caller]
    pub fn new(lr: f64) -> Asgd {
        check("Asgd", "lr", lr, false);
        Asgd {
            lr,
            lambd: 1e-4,
            alpha: 0.75,
            t0: 1e6,
            weight_decay: 0.0,
            steps: 0,
            eta: lr,
            mu: 1.0,
            averages: Buffers::default(),
        }
    }

    /// The averaged parameters `a`, in the tree shape of `like` (the parameters themselves
    /// before the first step).
    pub fn averaged<P: Tree>(&self, like: &P) -> P {
        if self.averages.0.is_empty() {
            return rebuild(like, detached(like));
        }
        rebuild(like, self.averages.0.clone())
    }
}

impl Optimizer for Asgd {
    fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the base rate; the step size η follows from the next step on.
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        for (name, v) in [
            ("lr", self.lr),
            ("lambd", self.lambd),
            ("alpha", self.alpha),
            ("t0", self.t0),
            ("weight_decay", self.weight_decay),
        ] {
            check("Asgd", name, v, false);
        }
        let (ps, gs) = paired("Asgd", params, grads);
        self.averages.ensure("Asgd", &ps);
        self.steps += 1;
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let g = decayed(g, p, self.weight_decay);
            let p = &(p * (1.0 - self.lambd * self.eta)) - &(&g * self.eta);
            self.averages.0[i] = if self.mu != 1.0 {
                let a = &self.averages.0[i];
                a + &(&(&p - a) * self.mu)
            } else {
                p.clone()
            };
            out.push(p);
        }
        let t = self.steps as f64;
        self.eta = self.lr / (1.0 + self.lambd * self.lr * t).powf(self.alpha);
        self.mu = 1.0 / (t - self.t0).max(1.0);
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        s.insert("step".into(), Tensor::scalar(self.steps as i64));
        s.insert("eta".into(), Tensor::scalar(self.eta));
        s.insert("mu".into(), Tensor::scalar(self.mu));
        self.averages.save("ax", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.steps = state.get("step").map_or(0, |t| t.item::<i64>() as u64);
        self.eta = state.get("eta").map_or(self.lr, |t| t.item::<f64>());
        self.mu = state.get("mu").map_or(1.0, |t| t.item::<f64>());
        self.averages.load("ax", state);
    }
}

/// How [`Lbfgs`] picks the step length along each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineSearch {
    /// A fixed step of `lr` (the first one scaled by `min(1, 1 / ‖g‖₁)`).
    Fixed,
    /// A line search satisfying the strong Wolfe conditions (Nocedal and Wright,
    /// algorithms 3.5 and 3.6, with cubic interpolation), as PyTorch's `"strong_wolfe"`.
    StrongWolfe,
}

/// L-BFGS, as PyTorch's `LBFGS`: each [`minimize`](Lbfgs::minimize) call runs up to
/// `max_iter` iterations (`max_eval` evaluations of the function), each taking the
/// two-loop-recursion direction from the last `history_size` curvature pairs and a step
/// from the [`LineSearch`]; it stops early when the gradient's largest entry is at most
/// `tolerance_grad` or a step changes the parameters or the loss by at most
/// `tolerance_change`. The history carries over between calls. Needs the function itself,
/// not one gradient, so it is not an [`Optimizer`]: pass a closure returning the loss and
/// its gradients (`grad(f).call(..)` gives both).
///
/// ```
/// use ferrograd::{grad, Tensor};
/// use ferrograd_nn::optim::{Lbfgs, LineSearch};
/// // minimize (x - 3)² + (y + 1)²
/// let f = |p: &Tensor| (p - &Tensor::from_vec(vec![3.0f64, -1.0], &[2])).square().sum();
/// let mut opt = Lbfgs::new(1.0).line_search(LineSearch::StrongWolfe);
/// let p = opt.minimize(&Tensor::zeros(&[2], ferrograd::DType::F64), |p| {
///     let (g, loss) = grad(f).call(p, ());
///     (loss.item::<f64>(), g)
/// });
/// assert!((p.to_vec::<f64>()[0] - 3.0).abs() < 1e-6 && (p.to_vec::<f64>()[1] + 1.0).abs() < 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct Lbfgs {
    /// Learning rate (the initial step length).
    pub lr: f64,
    /// Iterations per call (PyTorch's default 20).
    pub max_iter: usize,
    /// Function evaluations per call (default `max_iter · 5 / 4`).
    pub max_eval: usize,
    /// Stop when `max |g| <= tolerance_grad` (1e-7).
    pub tolerance_grad: f64,
    /// Stop when a step moves the parameters or the loss by at most this (1e-9).
    pub tolerance_change: f64,
    /// Curvature pairs kept (100).
    pub history_size: usize,
    /// The step-length rule (default [`LineSearch::Fixed`], as PyTorch).
    pub line_search: LineSearch,
    state: LbfgsState,
}

/// What L-BFGS carries between calls.
#[derive(Clone, Debug, Default)]
struct LbfgsState {
    iterations: usize,
    evaluations: usize,
    direction: Vec<f64>,
    step: f64,
    old_steps: Vec<Vec<f64>>, // s_k
    old_diffs: Vec<Vec<f64>>, // y_k
    rhos: Vec<f64>,           // 1 / (y_k · s_k)
    hessian_scale: f64,       // H_diag
    previous_grad: Vec<f64>,
    previous_loss: f64,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn axpy(alpha: f64, x: &[f64], y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(xi, yi)| yi + alpha * xi).collect()
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

impl Lbfgs {
    /// L-BFGS at `lr` with PyTorch's other defaults.
    #[track_caller]
    pub fn new(lr: f64) -> Lbfgs {
        check("Lbfgs", "lr", lr, false);
        Lbfgs {
            lr,
            max_iter: 20,
            max_eval: 25,
            tolerance_grad: 1e-7,
            tolerance_change: 1e-9,
            history_size: 100,
            line_search: LineSearch::Fixed,
            state: LbfgsState::default(),
        }
    }

    /// Sets the step-length rule.
    pub fn line_search(mut self, rule: LineSearch) -> Lbfgs {
        self.line_search = rule;
        self
    }

    /// Sets the iterations per call (and the evaluations to `max_iter · 5 / 4`).
    pub fn max_iter(mut self, max_iter: usize) -> Lbfgs {
        self.max_iter = max_iter;
        self.max_eval = max_iter * 5 / 4;
        self
    }

    /// The number of iterations run over all calls.
    pub fn iterations(&self) -> usize {
        self.state.iterations
    }

    /// The number of function evaluations over all calls.
    pub fn evaluations(&self) -> usize {
        self.state.evaluations
    }

    /// Runs up to `max_iter` iterations from `params` on the function `f` (the loss and the
    /// gradients, a tree like `params`); returns the parameters reached.
    #[track_caller]
    pub fn minimize<P: Tree>(&mut self, params: &P, mut f: impl FnMut(&P) -> (f64, P)) -> P {
        check("Lbfgs", "lr", self.lr, false);
        let template = detached(params);
        let flatten =
            |tree: &P| -> Vec<f64> { leaves(tree).iter().flat_map(|t| t.to_f64_vec()).collect() };
        let unflatten = |flat: &[f64]| -> P {
            let mut at = 0;
            let parts = template
                .iter()
                .map(|t| {
                    let n = t.numel();
                    let values = ferrograd::Array::from_vec(flat[at..at + n].to_vec(), t.shape())
                        .to_dtype(t.dtype());
                    at += n;
                    Tensor::new(values)
                })
                .collect();
            rebuild(params, parts)
        };
        let mut evaluate = |x: &[f64]| -> (f64, Vec<f64>) {
            let (loss, g) = f(&unflatten(x));
            (loss, flatten(&g))
        };
        let mut x = flatten(params);
        let (mut loss, mut g) = evaluate(&x);
        let st = &mut self.state;
        st.evaluations += 1;
        let mut evals = 1;
        if max_abs(&g) <= self.tolerance_grad {
            return unflatten(&x);
        }
        let mut n_iter = 0;
        while n_iter < self.max_iter {
            n_iter += 1;
            st.iterations += 1;
            // the direction: steepest descent first, then the two-loop recursion
            if st.iterations == 1 {
                st.direction = g.iter().map(|v| -v).collect();
                st.hessian_scale = 1.0;
                st.old_steps.clear();
                st.old_diffs.clear();
                st.rhos.clear();
            } else {
                let y = axpy(-1.0, &st.previous_grad, &g);
                let s: Vec<f64> = st.direction.iter().map(|d| d * st.step).collect();
                let ys = dot(&y, &s);
                if ys > 1e-10 {
                    if st.old_steps.len() == self.history_size {
                        st.old_steps.remove(0);
                        st.old_diffs.remove(0);
                        st.rhos.remove(0);
                    }
                    st.hessian_scale = ys / dot(&y, &y);
                    st.old_steps.push(s);
                    st.old_diffs.push(y);
                    st.rhos.push(1.0 / ys);
                }
                let k = st.old_steps.len();
                let mut q: Vec<f64> = g.iter().map(|v| -v).collect();
                let mut alphas = vec![0.0; k];
                for i in (0..k).rev() {
                    alphas[i] = dot(&st.old_steps[i], &q) * st.rhos[i];
                    q = axpy(-alphas[i], &st.old_diffs[i], &q);
                }
                let mut r: Vec<f64> = q.iter().map(|v| v * st.hessian_scale).collect();
                for (i, alpha) in alphas.iter().enumerate() {
                    let beta = dot(&st.old_diffs[i], &r) * st.rhos[i];
                    r = axpy(alpha - beta, &st.old_steps[i], &r);
                }
                st.direction = r;
            }
            st.previous_grad = g.clone();
            st.previous_loss = loss;
            // the step length
            st.step = if st.iterations == 1 {
                (1.0 / g.iter().map(|v| v.abs()).sum::<f64>()).min(1.0) * self.lr
            } else {
                self.lr
            };
            let gtd = dot(&g, &st.direction);
            if gtd > -self.tolerance_change {
                break; // not a descent direction any more
            }
            let mut used = 0;
            match self.line_search {
                LineSearch::Fixed => {
                    x = axpy(st.step, &st.direction, &x);
                    if n_iter != self.max_iter {
                        (loss, g) = evaluate(&x);
                        used = 1;
                    }
                }
                LineSearch::StrongWolfe => {
                    let (new_loss, new_g, t, n) = strong_wolfe(
                        &mut evaluate,
                        &x,
                        st.step,
                        &st.direction,
                        loss,
                        &g,
                        gtd,
                        self.tolerance_change,
                    );
                    x = axpy(t, &st.direction, &x);
                    st.step = t;
                    (loss, g) = (new_loss, new_g);
                    used = n;
                }
            }
            evals += used;
            st.evaluations += used;
            if n_iter == self.max_iter || evals >= self.max_eval {
                break;
            }
            if max_abs(&g) <= self.tolerance_grad {
                break;
            }
            if max_abs(&st.direction) * st.step.abs() <= self.tolerance_change {
                break;
            }
            if (loss - st.previous_loss).abs() < self.tolerance_change {
                break;
            }
        }
        unflatten(&x)
    }
}

/// The minimizer of the cubic through `(x1, f1)`, `(x2, f2)` with slopes `g1`, `g2`, kept
/// inside `bounds` (their midpoint if the cubic has no minimum).
fn cubic_interpolate(
    (x1, f1, g1): (f64, f64, f64),
    (x2, f2, g2): (f64, f64, f64),
    bounds: Option<(f64, f64)>,
) -> f64 {
    let (lo, hi) = bounds.unwrap_or(if x1 <= x2 { (x1, x2) } else { (x2, x1) });
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let min_pos = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        min_pos.max(lo).min(hi)
    } else {
        (lo + hi) / 2.0
    }
}

/// A step `t` along `d` from `x` satisfying the strong Wolfe conditions (c₁ = 1e-4,
/// c₂ = 0.9): bracketing, then zooming with cubic interpolation (at most 25 evaluations).
/// Returns the loss and gradient there, `t`, and the evaluations used.
#[allow(clippy::too_many_arguments)] // the line search's own state, as the algorithm names it
fn strong_wolfe(
    evaluate: &mut impl FnMut(&[f64]) -> (f64, Vec<f64>),
    x: &[f64],
    t: f64,
    d: &[f64],
    f: f64,
    g: &[f64],
    gtd: f64,
    tolerance_change: f64,
) -> (f64, Vec<f64>, f64, usize) {
    let (c1, c2, max_ls) = (1e-4, 0.9, 25);
    let d_norm = max_abs(d);
    let mut t = t;
    let (mut f_new, mut g_new) = evaluate(&axpy(t, d, x));
    let mut evals = 1;
    let mut gtd_new = dot(&g_new, d);
    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (0.0, f, g.to_vec(), gtd);
    let mut done = false;
    let mut ls_iter = 0;
    // bracket: [(t, f, g, gtd); 2]
    let mut bracket: Vec<(f64, f64, Vec<f64>, f64)>;
    loop {
        if f_new > f + c1 * t * gtd || (ls_iter > 1 && f_new >= f_prev) {
            bracket = vec![
                (t_prev, f_prev, g_prev.clone(), gtd_prev),
                (t, f_new, g_new.clone(), gtd_new),
            ];
            break;
        }
        if gtd_new.abs() <= -c2 * gtd {
            bracket = vec![(t, f_new, g_new.clone(), gtd_new)];
            done = true;
            break;
        }
        if gtd_new >= 0.0 {
            bracket = vec![
                (t_prev, f_prev, g_prev.clone(), gtd_prev),
                (t, f_new, g_new.clone(), gtd_new),
            ];
            break;
        }
        // extrapolate
        let min_step = t + 0.01 * (t - t_prev);
        let max_step = t * 10.0;
        let next = cubic_interpolate(
            (t_prev, f_prev, gtd_prev),
            (t, f_new, gtd_new),
            Some((min_step, max_step)),
        );
        t_prev = t;
        f_prev = f_new;
        g_prev = g_new.clone();
        gtd_prev = gtd_new;
        t = next;
        (f_new, g_new) = evaluate(&axpy(t, d, x));
        evals += 1;
        gtd_new = dot(&g_new, d);
        ls_iter += 1;
        if ls_iter == max_ls {
            bracket = vec![
                (0.0, f, g.to_vec(), gtd),
                (t, f_new, g_new.clone(), gtd_new),
            ];
            break;
        }
    }
    // zoom
    let mut insufficient_progress = false;
    let (mut low, mut high) = if bracket.len() == 2 && bracket[0].1 > bracket[1].1 {
        (1, 0)
    } else {
        (0, 1)
    };
    while !done && ls_iter < max_ls && bracket.len() == 2 {
        if (bracket[1].0 - bracket[0].0).abs() * d_norm < tolerance_change {
            break;
        }
        let mut t_new = cubic_interpolate(
            (bracket[0].0, bracket[0].1, bracket[0].3),
            (bracket[1].0, bracket[1].1, bracket[1].3),
            None,
        );
        // keep away from the ends of the bracket
        let (b_lo, b_hi) = (
            bracket[0].0.min(bracket[1].0),
            bracket[0].0.max(bracket[1].0),
        );
        let eps = 0.1 * (b_hi - b_lo);
        if (b_hi - t_new).min(t_new - b_lo) < eps {
            if insufficient_progress || t_new >= b_hi || t_new <= b_lo {
                t_new = if (t_new - b_hi).abs() < (t_new - b_lo).abs() {
                    b_hi - eps
                } else {
                    b_lo + eps
                };
                insufficient_progress = false;
            } else {
                insufficient_progress = true;
            }
        } else {
            insufficient_progress = false;
        }
        t = t_new;
        (f_new, g_new) = evaluate(&axpy(t, d, x));
        evals += 1;
        gtd_new = dot(&g_new, d);
        ls_iter += 1;
        if f_new > f + c1 * t * gtd || f_new >= bracket[low].1 {
            bracket[high] = (t, f_new, g_new.clone(), gtd_new);
            if bracket[0].1 <= bracket[1].1 {
                (low, high) = (0, 1);
            } else {
                (low, high) = (1, 0);
            }
        } else {
            if gtd_new.abs() <= -c2 * gtd {
                done = true;
            } else if gtd_new * (bracket[high].0 - bracket[low].0) >= 0.0 {
                bracket[high] = bracket[low].clone();
            }
            bracket[low] = (t, f_new, g_new.clone(), gtd_new);
        }
    }
    let best = bracket.swap_remove(if bracket.len() == 1 { 0 } else { low });
    (best.1, best.2, best.0, evals)
}

/// A learning rate by epoch (or step), PyTorch's schedulers as closed forms: set it with
/// [`Optimizer::set_lr`] before each epoch.
///
/// ```
/// use ferrograd_nn::optim::{Optimizer, Schedule, Sgd};
/// let mut opt = Sgd::new(0.1);
/// let schedule = Schedule::Step { every: 10, gamma: 0.5 };
/// for epoch in 0..30 {
///     opt.set_lr(schedule.lr(0.1, epoch));
///     // ... an epoch of opt.step(..)
/// }
/// assert_eq!(opt.lr(), 0.025);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// `base · γ^⌊t / every⌋` (StepLR).
    Step {
        /// Epochs between decays.
        every: u64,
        /// The factor.
        gamma: f64,
    },
    /// `base · γ^t` (ExponentialLR).
    Exponential {
        /// The factor per epoch.
        gamma: f64,
    },
    /// `η_min + (base - η_min) (1 + cos(π t / T)) / 2` for `t ≤ T`, then `η_min`
    /// (CosineAnnealingLR without restarts).
    Cosine {
        /// T, the epochs of the half cosine.
        period: u64,
        /// η_min.
        min: f64,
    },
    /// Linear from `start · base` to `base` over the first `epochs`, then `base` (LinearLR,
    /// the usual warm-up).
    Warmup {
        /// The epochs of the ramp.
        epochs: u64,
        /// The starting fraction of the base rate.
        start: f64,
    },
    /// The one-cycle policy (OneCycleLR with cosine annealing, by step): from `base / 25` up
    /// to `base` over the first `rise` share of `total` steps, then down to `base / 25e4`.
    OneCycle {
        /// The number of steps of the whole cycle.
        total: u64,
        /// The share of the steps that rise (PyTorch's `pct_start`, 0.3).
        rise: f64,
    },
}

impl Schedule {
    /// The learning rate at epoch `t` (from 0) for a base rate `base`.
    pub fn lr(&self, base: f64, t: u64) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((t / every.max(1)) as i32),
            Schedule::Exponential { gamma } => base * gamma.powi(t as i32),
            Schedule::Cosine { period, min } => {
                let t = t.min(period) as f64;
                min + (base - min) * (1.0 + (std::f64::consts::PI * t / period.max(1) as f64).cos())
                    / 2.0
            }
            Schedule::Warmup { epochs, start } => {
                if t >= epochs {
                    base
                } else {
                    base * (start + (1.0 - start) * t as f64 / epochs as f64)
                }
            }
            Schedule::OneCycle { total, rise } => {
                let (initial, last) = (base / 25.0, base / 25.0 / 1e4);
                let peak = (rise * total as f64 - 1.0).max(0.0);
                let end = total.saturating_sub(1) as f64;
                let anneal = |from: f64, to: f64, share: f64| {
                    to + (from - to) / 2.0 * (1.0 + (std::f64::consts::PI * share).cos())
                };
                let t = (t as f64).min(end);
                if t <= peak {
                    anneal(initial, base, if peak > 0.0 { t / peak } else { 1.0 })
                } else {
                    anneal(base, last, (t - peak) / (end - peak).max(1.0))
                }
            }
        }
    }
}

/// Lowers the learning rate by `factor` when a metric has not improved for `patience`
/// epochs (PyTorch's `ReduceLROnPlateau` in `min` mode with a relative threshold):
/// call [`step`](ReduceOnPlateau::step) with each epoch's validation loss.
///
/// ```
/// use ferrograd_nn::optim::{Optimizer, ReduceOnPlateau, Sgd};
/// let mut opt = Sgd::new(0.1);
/// let mut plateau = ReduceOnPlateau::new(0.5, 2);
/// for loss in [1.0, 0.9, 0.95, 0.91, 0.92] {
///     plateau.step(loss, &mut opt);
/// }
/// assert_eq!(opt.lr(), 0.05); // three epochs without beating 0.9
/// ```
#[derive(Clone, Debug)]
pub struct ReduceOnPlateau {
    /// The factor the rate is multiplied by.
    pub factor: f64,
    /// Epochs without improvement before a reduction.
    pub patience: u64,
    /// The relative improvement that counts (PyTorch's 1e-4).
    pub threshold: f64,
    /// Epochs to wait after a reduction before counting again.
    pub cooldown: u64,
    /// The smallest rate.
    pub min_lr: f64,
    best: f64,
    bad: u64,
    cooling: u64,
}

impl ReduceOnPlateau {
    /// Multiplies the rate by `factor` after `patience` epochs without improvement.
    #[track_caller]
    pub fn new(factor: f64, patience: u64) -> ReduceOnPlateau {
        check("ReduceOnPlateau", "factor", factor, true);
        ReduceOnPlateau {
            factor,
            patience,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            best: f64::INFINITY,
            bad: 0,
            cooling: 0,
        }
    }

    /// Records an epoch's `metric` (lower is better), reducing `opt`'s rate when due.
    /// Returns whether it did.
    pub fn step(&mut self, metric: f64, opt: &mut impl Optimizer) -> bool {
        if metric < self.best * (1.0 - self.threshold) {
            self.best = metric;
            self.bad = 0;
        } else {
            self.bad += 1;
        }
        if self.cooling > 0 {
            self.cooling -= 1;
            self.bad = 0;
        }
        if self.bad > self.patience {
            let lr = (opt.lr() * self.factor).max(self.min_lr);
            let reduced = lr < opt.lr();
            opt.set_lr(lr);
            self.cooling = self.cooldown;
            self.bad = 0;
            return reduced;
        }
        false
    }
}

/// Clamps every gradient element into `[-clip, clip]` (PyTorch's `clip_grad_value_`).
#[track_caller]
pub fn clip_grad_value<P: Tree>(grads: &P, clip: f64) -> P {
    check("clip_grad_value", "clip", clip, false);
    rebuild(
        grads,
        detached(grads)
            .iter()
            .map(|g| {
                if g.dtype().is_float() {
                    g.clamp(Some(-clip), Some(clip))
                } else {
                    g.clone()
                }
            })
            .collect(),
    )
}

/// Scales the gradients so their global 2-norm is at most `max_norm`; returns them and the
/// norm before clipping.
pub fn clip_grad_norm<P: Tree>(grads: &P, max_norm: f64) -> (P, f64) {
    let gs = detached(grads);
    let total = gs
        .iter()
        .map(|g| {
            g.value()
                .to_dtype(ferrograd::DType::F64)
                .square()
                .sum()
                .item::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    if total <= max_norm || total == 0.0 {
        return (rebuild(grads, gs), total);
    }
    let k = max_norm / (total + 1e-6);
    (rebuild(grads, gs.iter().map(|g| g * k).collect()), total)
}
