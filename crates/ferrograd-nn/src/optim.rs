//! Optimizers over parameter trees: SGD (momentum, Nesterov, weight decay, learning-rate
//! decay), Adam, AdamW, Adamax, AdaGrad, Adadelta, RMSprop and Rprop, each with its state
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
    fn ensure(&mut self, params: &[Tensor]) {
        if self.0.len() != params.len() {
            self.0 = params.iter().map(|p| p.zeros_like()).collect();
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
    fn begin(&mut self, params: &[Tensor]) -> u64 {
        self.m.ensure(params);
        self.v.ensure(params);
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
        panic!("ferrograd: {optimizer}: {name} must be {range}, got {value}");
    }
}

fn detached<P: Tree>(tree: &P) -> Vec<Tensor> {
    leaves(tree).iter().map(Tensor::detach).collect()
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
        let (ps, gs) = (detached(params), detached(grads));
        let first = self.momentum_buffers.0.is_empty();
        self.momentum_buffers.ensure(&ps);
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
        let (ps, gs) = (detached(params), detached(grads));
        let t = self.moments.begin(&ps) as i32;
        if self.amsgrad {
            self.v_max.ensure(&ps);
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
        let (ps, gs) = (detached(params), detached(grads));
        self.sums.ensure(&ps);
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
        let (ps, gs) = (detached(params), detached(grads));
        self.squares.ensure(&ps);
        if self.centered {
            self.means.ensure(&ps);
        }
        if self.momentum > 0.0 {
            self.velocity.ensure(&ps);
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
        let (ps, gs) = (detached(params), detached(grads));
        self.m.ensure(&ps);
        self.u.ensure(&ps);
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
        let (ps, gs) = (detached(params), detached(grads));
        let step = self.moments.begin(&ps);
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
        let (ps, gs) = (detached(params), detached(grads));
        let t = self.moments.begin(&ps) as i32;
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
        let (ps, gs) = (detached(params), detached(grads));
        self.squares.ensure(&ps);
        self.deltas.ensure(&ps);
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
            panic!(
                "ferrograd: Rprop: needs 0 < etas.0 < 1 < etas.1 and 0 <= step_sizes.0 <= \
                 step_sizes.1, got {:?} and {:?}",
                self.etas, self.step_sizes
            );
        }
        let (ps, gs) = (detached(params), detached(grads));
        if self.steps.0.len() != ps.len() {
            self.previous.ensure(&ps);
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
