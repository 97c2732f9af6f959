//! Optimizers over parameter trees: SGD (momentum, Nesterov, weight decay, learning-rate
//! decay), Adam, AdamW, AdaGrad and RMSprop, each with its state kept per leaf and saveable
//! as a tree; and gradient-norm clipping.
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
    steps: u64,
    m: Buffers,
    v: Buffers,
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
            steps: 0,
            m: Buffers::default(),
            v: Buffers::default(),
        }
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
    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        for (name, v, below_one) in [
            ("lr", self.lr, false),
            ("betas.0", self.betas.0, true),
            ("betas.1", self.betas.1, true),
            ("eps", self.eps, false),
            ("weight_decay", self.weight_decay, false),
        ] {
            check("Adam", name, v, below_one);
        }
        let (ps, gs) = (detached(params), detached(grads));
        self.m.ensure(&ps);
        self.v.ensure(&ps);
        self.steps += 1;
        let (b1, b2) = self.betas;
        let t = self.steps as i32;
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
            let m = &(&self.m.0[i] * b1) + &(&g * (1.0 - b1));
            let v = &(&self.v.0[i] * b2) + &(&g.square() * (1.0 - b2));
            let update = &(&m * (1.0 / c1)) / &(&(&v * (1.0 / c2)).sqrt() + self.eps);
            out.push(&p - &(&update * self.lr));
            self.m.0[i] = m;
            self.v.0[i] = v;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        s.insert("step".into(), Tensor::scalar(self.steps as i64));
        self.m.save("exp_avg", &mut s);
        self.v.save("exp_avg_sq", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.steps = state.get("step").map_or(0, |t| t.item::<i64>() as u64);
        self.m.load("exp_avg", state);
        self.v.load("exp_avg_sq", state);
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
            steps: 0,
            sums: Buffers::default(),
        }
    }
}

impl Optimizer for AdaGrad {
    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        for (name, v) in [
            ("lr", self.lr),
            ("lr_decay", self.lr_decay),
            ("eps", self.eps),
        ] {
            check("AdaGrad", name, v, false);
        }
        let (ps, gs) = (detached(params), detached(grads));
        self.sums.ensure(&ps);
        self.steps += 1;
        let lr = self.lr / (1.0 + (self.steps - 1) as f64 * self.lr_decay);
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
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
    squares: Buffers,
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
            squares: Buffers::default(),
        }
    }
}

impl Optimizer for RmsProp {
    #[track_caller]
    fn step<P: Tree>(&mut self, params: &P, grads: &P) -> P {
        check("RmsProp", "lr", self.lr, false);
        check("RmsProp", "alpha", self.alpha, false);
        check("RmsProp", "eps", self.eps, false);
        let (ps, gs) = (detached(params), detached(grads));
        self.squares.ensure(&ps);
        let mut out = Vec::with_capacity(ps.len());
        for (i, (p, g)) in ps.iter().zip(&gs).enumerate() {
            let v = &(&self.squares.0[i] * self.alpha) + &(&g.square() * (1.0 - self.alpha));
            out.push(p - &(&(g / &(&v.sqrt() + self.eps)) * self.lr));
            self.squares.0[i] = v;
        }
        rebuild(params, out)
    }

    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        self.squares.save("square_avg", &mut s);
        s
    }

    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) {
        self.squares.load("square_avg", state);
    }
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
