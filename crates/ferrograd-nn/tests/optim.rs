//! Each optimizer step for step against its textbook update, written here on plain f64
//! numbers.

use std::collections::BTreeMap;

use ferrograd::{DType, Tensor};
use ferrograd_nn::optim::{
    clip_grad_norm, clip_grad_value, AdaGrad, Adadelta, Adam, Adamax, Asgd, Lbfgs, LineSearch,
    NAdam, Optimizer, RAdam, RmsProp, Rprop, Schedule, Sgd,
};

/// Runs `opt` for 5 steps on f(p) = Σ c_i p_i² (gradient 2 c p) over two leaves, and the
/// textbook `reference(step, p, g, state) -> p` on plain numbers; both must agree.
fn agree(opt: impl Optimizer, reference: impl FnMut(usize, f64, f64, &mut Vec<f64>) -> f64) {
    agree_for(5, opt, reference)
}

/// [`agree`] over `steps` steps.
fn agree_for(
    steps: usize,
    mut opt: impl Optimizer,
    mut reference: impl FnMut(usize, f64, f64, &mut Vec<f64>) -> f64,
) {
    let c = [0.5, 2.0, 1.5, 3.0, 0.25];
    let start = vec![1.0, -2.0, 0.5, 3.0, -0.7];
    let mut params = (
        Tensor::from_vec(start[..2].to_vec(), &[2]),
        Tensor::from_vec(start[2..].to_vec(), &[3]),
    );
    let mut flat = start.clone();
    let mut states = vec![Vec::new(); 5];
    for step in 1..=steps {
        let grads = (
            Tensor::from_vec(vec![2.0 * c[0] * flat[0], 2.0 * c[1] * flat[1]], &[2]),
            Tensor::from_vec(
                vec![
                    2.0 * c[2] * flat[2],
                    2.0 * c[3] * flat[3],
                    2.0 * c[4] * flat[4],
                ],
                &[3],
            ),
        );
        params = opt.step(&params, &grads);
        for i in 0..5 {
            let g = 2.0 * c[i] * flat[i];
            flat[i] = reference(step, flat[i], g, &mut states[i]);
        }
        let got: Vec<f64> = params
            .0
            .to_vec::<f64>()
            .into_iter()
            .chain(params.1.to_vec::<f64>())
            .collect();
        for (a, b) in got.iter().zip(&flat) {
            assert!((a - b).abs() < 1e-12, "step {step}: {got:?} vs {flat:?}");
        }
    }
}

#[test]
fn sgd_plain_momentum_nesterov_decay() {
    agree(Sgd::new(0.1), |_, p, g, _| p - 0.1 * g);
    agree(
        Sgd::new(0.1).weight_decay(0.01).momentum(0.9),
        |step, p, g, s| {
            let g = g + 0.01 * p;
            let b = if step == 1 { g } else { 0.9 * s[0] + g };
            *s = vec![b];
            p - 0.1 * b
        },
    );
    agree(
        Sgd::new(0.1).momentum(0.9).nesterov(true),
        |step, p, g, s| {
            let b = if step == 1 { g } else { 0.9 * s[0] + g };
            *s = vec![b];
            p - 0.1 * (g + 0.9 * b)
        },
    );
    agree(Sgd::new(0.1).lr_decay(0.5), |step, p, g, _| {
        p - 0.1 / (1.0 + (step - 1) as f64 * 0.5) * g
    });
}

#[test]
fn adam_and_adamw() {
    let adam = |decoupled: bool, wd: f64| {
        move |step: usize, p: f64, g: f64, s: &mut Vec<f64>| {
            if s.is_empty() {
                *s = vec![0.0, 0.0];
            }
            let (lr, b1, b2, eps) = (0.01, 0.9, 0.999, 1e-8);
            let mut p = p;
            let g = if decoupled {
                p *= 1.0 - lr * wd;
                g
            } else {
                g + wd * p
            };
            s[0] = b1 * s[0] + (1.0 - b1) * g;
            s[1] = b2 * s[1] + (1.0 - b2) * g * g;
            let mh = s[0] / (1.0 - b1.powi(step as i32));
            let vh = s[1] / (1.0 - b2.powi(step as i32));
            p - lr * mh / (vh.sqrt() + eps)
        }
    };
    agree(Adam::new(0.01), adam(false, 0.0));
    agree(Adam::new(0.01).weight_decay(0.1), adam(false, 0.1));
    agree(Adam::adamw(0.01), adam(true, 0.01));
}

#[test]
fn adagrad_and_rmsprop() {
    agree(AdaGrad::new(0.1), |_, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0];
        }
        s[0] += g * g;
        p - 0.1 * g / (s[0].sqrt() + 1e-10)
    });
    agree(RmsProp::new(0.01), |_, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0];
        }
        s[0] = 0.99 * s[0] + 0.01 * g * g;
        p - 0.01 * g / (s[0].sqrt() + 1e-8)
    });
}

#[test]
fn adamax_adadelta_and_rprop() {
    agree(Adamax::new(0.002), |step, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0, 0.0];
        }
        s[0] = 0.9 * s[0] + 0.1 * g;
        s[1] = (0.999 * s[1]).max(g.abs() + 1e-8);
        p - 0.002 / (1.0 - 0.9f64.powi(step as i32)) * s[0] / s[1]
    });
    agree(Adadelta::new(1.0), |_, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0, 0.0];
        }
        s[0] = 0.9 * s[0] + 0.1 * g * g;
        let delta = (s[1] + 1e-6).sqrt() / (s[0] + 1e-6).sqrt() * g;
        s[1] = 0.9 * s[1] + 0.1 * delta * delta;
        p - delta
    });
    // Rprop: the steps grow while the sign holds and shrink (skipping the update) on a flip;
    // a large learning rate makes the quadratic's gradients flip
    for lr in [0.01, 0.9] {
        agree(Rprop::new(lr), move |_, p, g, s| {
            if s.is_empty() {
                *s = vec![0.0, lr];
            }
            let agree = g * s[0];
            let factor = if agree > 0.0 {
                1.2
            } else if agree < 0.0 {
                0.5
            } else {
                1.0
            };
            s[1] = (s[1] * factor).clamp(1e-6, 50.0);
            let g = if agree < 0.0 { 0.0 } else { g };
            s[0] = g;
            p - g.signum() * if g == 0.0 { 0.0 } else { s[1] }
        });
    }
}

#[test]
fn optimizer_options_amsgrad_centered_momentum_and_decay() {
    agree(Adam::new(0.01).amsgrad(true), |step, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0; 3];
        }
        s[0] = 0.9 * s[0] + 0.1 * g;
        s[1] = 0.999 * s[1] + 0.001 * g * g;
        s[2] = s[2].max(s[1]);
        let mh = s[0] / (1.0 - 0.9f64.powi(step as i32));
        let vh = s[2] / (1.0 - 0.999f64.powi(step as i32));
        p - 0.01 * mh / (vh.sqrt() + 1e-8)
    });
    let mut rms = RmsProp::new(0.01).momentum(0.9).centered(true);
    rms.weight_decay = 0.1;
    agree(rms, |_, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0; 3];
        }
        let g = g + 0.1 * p;
        s[0] = 0.99 * s[0] + 0.01 * g * g;
        s[1] = 0.99 * s[1] + 0.01 * g;
        let avg = (s[0] - s[1] * s[1]).sqrt() + 1e-8;
        s[2] = 0.9 * s[2] + g / avg;
        p - 0.01 * s[2]
    });
    let mut ada = AdaGrad::new(0.1);
    ada.weight_decay = 0.5;
    agree(ada, |_, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0];
        }
        let g = g + 0.5 * p;
        s[0] += g * g;
        p - 0.1 * g / (s[0].sqrt() + 1e-10)
    });
    let g = (
        Tensor::from_vec(vec![0.5f64, -3.0, 2.0], &[3]),
        Tensor::from_vec(vec![7i64], &[1]),
    );
    let clipped = clip_grad_value(&g, 1.0);
    assert_eq!(clipped.0.to_vec::<f64>(), vec![0.5, -1.0, 1.0]);
    assert_eq!(clipped.1.to_vec::<i64>(), vec![7]);
}

#[test]
fn nadam_and_radam() {
    agree(NAdam::new(0.002), |step, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0, 0.0, 1.0];
        }
        let (b1, b2, t) = (0.9f64, 0.999f64, step as f64);
        let mu = b1 * (1.0 - 0.5 * 0.96f64.powf(t * 0.004));
        let mu_next = b1 * (1.0 - 0.5 * 0.96f64.powf((t + 1.0) * 0.004));
        s[2] *= mu;
        s[0] = b1 * s[0] + (1.0 - b1) * g;
        s[1] = b2 * s[1] + (1.0 - b2) * g * g;
        let d = (s[1] / (1.0 - b2.powi(step as i32))).sqrt() + 1e-8;
        p - 0.002 * (1.0 - mu) / (1.0 - s[2]) * g / d
            - 0.002 * mu_next / (1.0 - s[2] * mu_next) * s[0] / d
    });
    // 8 steps: the first five are plain momentum steps (ρₜ ≤ 5), then rectified
    agree_for(8, RAdam::new(0.001), |step, p, g, s| {
        if s.is_empty() {
            *s = vec![0.0, 0.0];
        }
        let (b1, b2, t) = (0.9f64, 0.999f64, step as i32);
        s[0] = b1 * s[0] + (1.0 - b1) * g;
        s[1] = b2 * s[1] + (1.0 - b2) * g * g;
        let m_hat = s[0] / (1.0 - b1.powi(t));
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho = rho_inf - 2.0 * t as f64 * b2.powi(t) / (1.0 - b2.powi(t));
        if rho > 5.0 {
            let r = ((rho - 4.0) * (rho - 2.0) * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
                .sqrt();
            p - 0.001 * m_hat * r * (1.0 - b2.powi(t)).sqrt() / (s[1].sqrt() + 1e-8)
        } else {
            p - 0.001 * m_hat
        }
    });
}

#[test]
fn schedules_follow_pytorchs_closed_forms() {
    let base = 0.1;
    let step = Schedule::Step {
        every: 3,
        gamma: 0.1,
    };
    let got: Vec<f64> = (0..7).map(|t| step.lr(base, t)).collect();
    let want = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001];
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{got:?}");
    }
    assert!((Schedule::Exponential { gamma: 0.9 }.lr(base, 2) - 0.081).abs() < 1e-15);
    let cosine = Schedule::Cosine {
        period: 10,
        min: 0.001,
    };
    assert_eq!(cosine.lr(base, 0), base);
    assert!((cosine.lr(base, 5) - (0.001 + 0.099 / 2.0)).abs() < 1e-15);
    assert_eq!(cosine.lr(base, 10), 0.001);
    assert_eq!(cosine.lr(base, 25), 0.001);
    let warmup = Schedule::Warmup {
        epochs: 4,
        start: 0.25,
    };
    let got: Vec<f64> = (0..6).map(|t| warmup.lr(base, t)).collect();
    let want = [0.025, 0.04375, 0.0625, 0.08125, 0.1, 0.1];
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-15, "{got:?}");
    }
    let mut opt = Adam::new(0.1);
    opt.set_lr(Schedule::Constant.lr(0.5, 3));
    assert_eq!(opt.lr(), 0.5);
    // PyTorch 2.15's OneCycleLR(max_lr=0.1, total_steps=10, pct_start=0.3), step by step
    let torch = [
        0.004,
        0.052,
        0.1,
        0.09504846320134738,
        0.0811745653949763,
        0.06112620219362893,
        0.03887419780637107,
        0.0188258346050237,
        0.004951936798652629,
        4e-07,
    ];
    let one_cycle = Schedule::OneCycle {
        total: 10,
        rise: 0.3,
    };
    for (t, want) in torch.iter().enumerate() {
        let got = one_cycle.lr(0.1, t as u64);
        assert!((got - want).abs() < 1e-12, "step {t}: {got} vs {want}");
    }
}

#[test]
fn reduce_on_plateau_follows_pytorch() {
    use ferrograd_nn::optim::ReduceOnPlateau;
    // PyTorch 2.15's ReduceLROnPlateau(factor=0.5, patience=2, cooldown=1) on this sequence
    let metrics = [
        1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.5, 0.6, 0.7, 0.8,
    ];
    let torch = [
        0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025, 0.025, 0.0125,
    ];
    let mut opt = Sgd::new(0.1);
    let mut plateau = ReduceOnPlateau::new(0.5, 2);
    plateau.cooldown = 1;
    for (m, want) in metrics.iter().zip(torch) {
        plateau.step(*m, &mut opt);
        assert!(
            (opt.lr() - want).abs() < 1e-15,
            "after {m}: {} vs {want}",
            opt.lr()
        );
    }
}

#[test]
fn optimizer_state_round_trips() {
    let p = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let g = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
    let mut a = Adam::new(0.1);
    let p1 = a.step(&p, &g);
    let state: BTreeMap<String, Tensor> = a.state();
    assert_eq!(state["step"].item::<i64>(), 1);
    let mut b = Adam::new(0.1);
    b.load_state(&state);
    assert_eq!(
        a.step(&p1, &g).to_vec::<f64>(),
        b.step(&p1, &g).to_vec::<f64>()
    );
    // the others: two steps, save, then one more step from the saved state
    fn round_trip<O: Optimizer + Clone>(fresh: O, p: &Tensor, g: &Tensor) {
        let mut a = fresh.clone();
        let p1 = a.step(p, g);
        let p2 = a.step(&p1, &(g * -0.5));
        let mut b = fresh;
        b.load_state(&a.state());
        assert_eq!(
            a.step(&p2, g).to_vec::<f64>(),
            b.step(&p2, g).to_vec::<f64>()
        );
    }
    round_trip(Adamax::new(0.1), &p, &g);
    round_trip(Adadelta::new(1.0), &p, &g);
    round_trip(Rprop::new(0.1), &p, &g);
    round_trip(AdaGrad::new(0.1), &p, &g);
    round_trip(RmsProp::new(0.1).centered(true).momentum(0.5), &p, &g);
    round_trip(Adam::new(0.1).amsgrad(true), &p, &g);
    round_trip(NAdam::new(0.1), &p, &g);
    round_trip(RAdam::new(0.1), &p, &g);
    round_trip(Sgd::new(0.1).momentum(0.9), &p, &g);
    let mut asgd = Asgd::new(0.1);
    asgd.t0 = 1.0;
    round_trip(asgd, &p, &g);
}

#[test]
fn asgd_steps_and_averages_as_documented() {
    // t0 = 2 so that averaging starts within the run (mu = 1 / max(1, t - t0)); f = x²
    let (lr, lambd, alpha, t0, decay) = (0.1, 1e-2, 0.75, 2.0, 0.05);
    let mut opt = Asgd::new(lr);
    opt.lambd = lambd;
    opt.t0 = t0;
    opt.weight_decay = decay;
    let (mut eta, mut mu) = (lr, 1.0);
    let mut x = Tensor::from_vec(vec![1.5f64], &[1]);
    assert_eq!(opt.averaged(&x).to_vec::<f64>(), vec![1.5]);
    let (mut plain, mut avg) = (1.5f64, 0.0f64);
    for t in 1..=8 {
        let grads = Tensor::from_vec(vec![2.0 * x.to_vec::<f64>()[0]], &[1]);
        x = opt.step(&x, &grads);
        let g = 2.0 * plain + decay * plain;
        plain = plain * (1.0 - lambd * eta) - eta * g;
        avg = if mu == 1.0 {
            plain
        } else {
            avg + mu * (plain - avg)
        };
        eta = lr / (1.0 + lambd * lr * t as f64).powf(alpha);
        mu = 1.0 / (t as f64 - t0).max(1.0);
        assert!((x.to_vec::<f64>()[0] - plain).abs() < 1e-14, "step {t}");
        let a = opt.averaged(&x).to_vec::<f64>()[0];
        assert!((a - avg).abs() < 1e-14, "step {t}: average {a} vs {avg}");
    }
    // after t0 the average differs from the iterate
    assert!((opt.averaged(&x).to_vec::<f64>()[0] - plain).abs() > 1e-6);
}

/// Rosenbrock's function (1 - a)² + 100 (b - a²)² and its gradient.
fn rosenbrock(p: &Tensor) -> (f64, Tensor) {
    let v = p.to_vec::<f64>();
    let (a, b) = (v[0], v[1]);
    let loss = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
    let g = vec![
        -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
        200.0 * (b - a * a),
    ];
    (loss, Tensor::from_vec(g, &[2]))
}

#[test]
fn lbfgs_first_step_is_scaled_steepest_descent() {
    // one iteration from x0: x1 = x0 - min(1, 1/|g|_1) lr g (PyTorch's first step)
    let x0 = Tensor::from_vec(vec![-1.5f64, 2.0], &[2]);
    let (_, g) = rosenbrock(&x0);
    let g = g.to_vec::<f64>();
    let scale = (1.0 / (g[0].abs() + g[1].abs())).min(1.0) * 0.5;
    let mut opt = Lbfgs::new(0.5).max_iter(1);
    let x1 = opt.minimize(&x0, rosenbrock).to_vec::<f64>();
    assert!((x1[0] - (-1.5 - scale * g[0])).abs() < 1e-15);
    assert!((x1[1] - (2.0 - scale * g[1])).abs() < 1e-15);
    assert_eq!(opt.evaluations(), 1);
}

#[test]
fn lbfgs_minimizes_rosenbrock_and_quadratics() {
    // strong Wolfe: from (-1.5, 2) to the minimum (1, 1), decreasing at every call
    // (tolerances tighter than PyTorch's defaults, which stop at about 2e-6 from (1, 1))
    let mut opt = Lbfgs::new(1.0).line_search(LineSearch::StrongWolfe);
    opt.tolerance_change = 1e-15;
    opt.tolerance_grad = 1e-10;
    let mut x = Tensor::from_vec(vec![-1.5f64, 2.0], &[2]);
    let mut last = rosenbrock(&x).0;
    for _ in 0..10 {
        x = opt.minimize(&x, rosenbrock);
        let now = rosenbrock(&x).0;
        assert!(now <= last, "{now} > {last}");
        last = now;
    }
    let v = x.to_vec::<f64>();
    assert!(
        (v[0] - 1.0).abs() < 1e-6 && (v[1] - 1.0).abs() < 1e-6,
        "{v:?}"
    );
    assert!(opt.iterations() < 100, "{} iterations", opt.iterations());
    // a 5-d quadratic over a tree of two leaves: the fixed step converges too
    let c = [1.0, 2.0, 3.0, 4.0, 5.0];
    let quadratic = |p: &(Tensor, Tensor)| {
        let v: Vec<f64> =
            p.0.to_vec::<f64>()
                .into_iter()
                .chain(p.1.to_vec::<f64>())
                .collect();
        let loss: f64 = v.iter().zip(c).map(|(x, c)| c * (x - 1.0).powi(2)).sum();
        let g: Vec<f64> = v.iter().zip(c).map(|(x, c)| 2.0 * c * (x - 1.0)).collect();
        (
            loss,
            (
                Tensor::from_vec(g[..2].to_vec(), &[2]),
                Tensor::from_vec(g[2..].to_vec(), &[3]),
            ),
        )
    };
    for rule in [LineSearch::Fixed, LineSearch::StrongWolfe] {
        let mut opt = Lbfgs::new(0.1).line_search(rule).max_iter(200);
        opt.tolerance_change = 1e-15;
        let start = (
            Tensor::zeros(&[2], DType::F64),
            Tensor::from_vec(vec![3.0f64, -2.0, 0.5], &[3]),
        );
        let end = opt.minimize(&start, quadratic);
        assert!(quadratic(&end).0 < 1e-12, "{rule:?}: {}", quadratic(&end).0);
    }
}

#[test]
fn gradient_norm_clipping() {
    let g = (
        Tensor::from_vec(vec![3.0f64], &[1]),
        Tensor::from_vec(vec![4.0f64], &[1]),
    );
    let (clipped, norm) = clip_grad_norm(&g, 1.0);
    assert_eq!(norm, 5.0);
    assert!(
        (clipped.0.item::<f64>() - 0.6).abs() < 1e-6
            && (clipped.1.item::<f64>() - 0.8).abs() < 1e-6
    );
    let (same, _) = clip_grad_norm(&g, 10.0);
    assert_eq!(same.1.item::<f64>(), 4.0);
    let _ = DType::F64;
}

#[test]
fn hyper_parameters_out_of_range_are_refused_where_they_are_set() {
    #[track_caller]
    fn refused(what: &str, f: impl FnOnce()) {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
        let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains(what), "{message}");
    }
    refused("Sgd: lr must be finite and >= 0, got NaN", || {
        Sgd::new(f64::NAN);
    });
    refused("Sgd: momentum must be finite and >= 0, got -0.5", || {
        Sgd::new(0.1).momentum(-0.5);
    });
    refused("Adam: lr must be finite and >= 0, got inf", || {
        Adam::new(f64::INFINITY);
    });
    refused("AdaGrad: lr", || {
        AdaGrad::new(-1.0);
    });
    refused("RmsProp: lr", || {
        RmsProp::new(f64::NAN);
    });
    refused("Adamax: lr", || {
        Adamax::new(f64::NAN);
    });
    refused("Adadelta: lr", || {
        Adadelta::new(-1.0);
    });
    refused("Rprop: lr", || {
        Rprop::new(f64::INFINITY);
    });
    // a public field assigned later is checked at the next step
    let p = vec![ferrograd::Tensor::scalar(1.0f64)];
    refused("Adam: betas.1 must be in [0, 1), got 1", || {
        let mut opt = Adam::new(0.1);
        opt.betas = (0.9, 1.0);
        opt.step(&p, &p);
    });
    refused("Rprop: needs 0 < etas.0 < 1 < etas.1", || {
        let mut opt = Rprop::new(0.1);
        opt.etas = (1.5, 1.2);
        opt.step(&p, &p);
    });
}

#[test]
fn parameter_groups_step_each_group_with_its_own_settings() {
    use ferrograd_nn::optim::Groups;
    let params: BTreeMap<String, Tensor> = [
        ("encoder.weight", vec![1.0f64, -2.0]),
        ("encoder.bias", vec![0.5]),
        ("head.weight", vec![3.0, 1.0]),
        ("frozen", vec![7.0]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Tensor::from_vec(v.clone(), &[v.len()])))
    .collect();
    let grads: BTreeMap<String, Tensor> =
        params.iter().map(|(k, v)| (k.clone(), v * 2.0)).collect();
    let mut opt = Groups::new()
        .group(|n| n.ends_with("bias"), Adam::new(0.01))
        .group(|n| n.starts_with("encoder"), Adam::new(0.001))
        .group(|n| n.starts_with("head"), Adam::new(0.1));
    // each leaf equals what its group's optimizer alone does to it
    let mut alone = [Adam::new(0.01), Adam::new(0.001), Adam::new(0.1)];
    let mut p = params.clone();
    let mut singles: Vec<Tensor> = ["encoder.bias", "encoder.weight", "head.weight"]
        .iter()
        .map(|k| params[*k].clone())
        .collect();
    for _ in 0..3 {
        let g: BTreeMap<String, Tensor> = p.iter().map(|(k, v)| (k.clone(), v * 2.0)).collect();
        p = opt.step(&p, &g);
        for (i, s) in singles.iter_mut().enumerate() {
            *s = alone[i].step(&vec![s.clone()], &vec![&*s * 2.0]).remove(0);
        }
    }
    for (k, s) in ["encoder.bias", "encoder.weight", "head.weight"]
        .iter()
        .zip(&singles)
    {
        assert_eq!(p[*k].to_vec::<f64>(), s.to_vec::<f64>(), "{k}");
    }
    assert_eq!(p["frozen"].to_vec::<f64>(), vec![7.0]); // in no group
                                                        // the schedule's rate drives the first group, the others keep their ratios
    opt.set_lr(0.02);
    assert_eq!(opt.lr(), 0.02);
    assert!((opt.get_mut(1).lr - 0.002).abs() < 1e-15 && (opt.get_mut(2).lr - 0.2).abs() < 1e-15);
    // state round-trips per group
    let saved = opt.state();
    assert!(saved.contains_key("group2.step"));
    let mut fresh = Groups::new()
        .group(|n| n.ends_with("bias"), Adam::new(0.02))
        .group(|n| n.starts_with("encoder"), Adam::new(0.002))
        .group(|n| n.starts_with("head"), Adam::new(0.2));
    fresh.load_state(&saved);
    let a = opt.step(&p, &grads);
    let b = fresh.step(&p, &grads);
    for k in a.keys() {
        assert_eq!(a[k].to_vec::<f64>(), b[k].to_vec::<f64>(), "{k}");
    }
}

/// A step's gradients must be its params' shapes and dtypes, and an optimizer's state its
/// params': a `[3, 1]` gradient for a `[3]` parameter broadcast the update into a `[3, 3]`
/// parameter, silently, and an optimizer stepping another tree broadcast its buffers or
/// refused inside its update.
#[test]
fn a_gradient_or_state_that_does_not_fit_its_params_is_refused_at_the_callers_line() {
    fn message(f: impl FnOnce() -> Vec<Tensor>) -> String {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }
    let p = vec![Tensor::zeros(&[3], DType::F64)];
    let column = vec![Tensor::ones(&[3, 1], DType::F64)];
    let other_dtype = vec![Tensor::ones(&[3], DType::F32)];
    let here = format!("(at {}:", file!());
    type Step = fn(&Vec<Tensor>, &Vec<Tensor>) -> Vec<Tensor>;
    let steps: [(&str, Step); 10] = [
        ("Sgd", |p, g| Sgd::new(0.1).momentum(0.9).step(p, g)),
        ("Adam", |p, g| Adam::new(0.1).step(p, g)),
        ("AdaGrad", |p, g| AdaGrad::new(0.1).step(p, g)),
        ("RmsProp", |p, g| RmsProp::new(0.1).step(p, g)),
        ("Adamax", |p, g| Adamax::new(0.1).step(p, g)),
        ("NAdam", |p, g| NAdam::new(0.1).step(p, g)),
        ("RAdam", |p, g| RAdam::new(0.1).step(p, g)),
        ("Adadelta", |p, g| Adadelta::new(0.1).step(p, g)),
        ("Rprop", |p, g| Rprop::new(0.1).step(p, g)),
        ("Asgd", |p, g| Asgd::new(0.1).step(p, g)),
    ];
    for (name, step) in steps {
        let m = message(|| step(&p, &column));
        assert!(
            m.contains(&format!(
                "{name}: gradient 0 is [3, 1] f64, its parameter [3] f64"
            )),
            "{m}"
        );
        assert!(m.contains(&here), "{m}");
        let m = message(|| step(&p, &other_dtype));
        assert!(
            m.contains("gradient 0 is [3] f32, its parameter [3] f64"),
            "{m}"
        );
        let m = message(|| step(&p, &vec![]));
        assert!(
            m.contains(&format!("{name}: 1 parameters and 0 gradients")),
            "{m}"
        );
    }
    let mut adam = Adam::new(0.1);
    adam.step(&p, &vec![Tensor::ones(&[3], DType::F64)]);
    let q = vec![Tensor::zeros(&[4], DType::F64)];
    let m = message(|| adam.step(&q, &vec![Tensor::ones(&[4], DType::F64)]));
    assert!(
        m.contains(
            "Adam: its state was made for parameters of shapes [[3]], this step's are [[4]]"
        ),
        "{m}"
    );
    assert!(m.contains(&here), "{m}");
}

/// Eight steps of each optimizer (with its less common options) on
/// f(p) = Σ c p² + 0.1 Σ p³ from the same start, against torch.optim in PyTorch 2.15: the
/// parameters it printed after the eighth step, quoted. (The textbook references above are
/// our reading of PyTorch's docs; this checks the reading against PyTorch itself.)
#[test]
fn eight_steps_land_where_torch_optim_lands() {
    let f = |p: &Tensor| {
        let c = Tensor::from_vec(vec![0.5f64, 2.0, 1.5, 3.0, 0.25], &[5]);
        (&(&c * &p.square()) + &(p.pow_scalar(3.0) * 0.1)).sum()
    };
    fn run(opt: &mut impl Optimizer, f: &dyn Fn(&Tensor) -> Tensor) -> Vec<f64> {
        let mut p = Tensor::from_vec(vec![1.0f64, -2.0, 0.5, 3.0, -0.7], &[5]);
        for _ in 0..8 {
            let (g, _) = ferrograd::grad(f).call(&p, ());
            p = opt.step(&p, &g);
        }
        p.to_vec::<f64>()
    }
    let check = |name: &str, got: Vec<f64>, torch: [f64; 5]| {
        for (g, t) in got.iter().zip(torch) {
            assert!(
                (g - t).abs() <= 1e-12 * t.abs().max(1.0),
                "{name}: {got:?} vs {torch:?}"
            );
        }
    };
    let mut sgd = Sgd::new(0.05)
        .momentum(0.9)
        .nesterov(true)
        .weight_decay(0.01);
    check(
        "sgd nesterov, decay",
        run(&mut sgd, &f),
        [
            -0.20896666790263066,
            0.35824054065520905,
            -0.17232459183922078,
            0.24377424531408937,
            -0.3653502142863585,
        ],
    );
    let mut adam = Adam::new(0.05).amsgrad(true).weight_decay(0.01);
    check(
        "adam amsgrad, decay",
        run(&mut adam, &f),
        [
            0.6076832246930357,
            -1.6021009579116214,
            0.11887296911037443,
            2.601811358376323,
            -0.30472223199868054,
        ],
    );
    let mut adamw = Adam::adamw(0.05).amsgrad(true);
    check(
        "adamw amsgrad",
        run(&mut adamw, &f),
        [
            0.6044913489902721,
            -1.5948588090278755,
            0.1176967638905713,
            2.5905898055086443,
            -0.3025220237450141,
        ],
    );
    let mut adagrad = AdaGrad::new(0.1);
    (adagrad.lr_decay, adagrad.weight_decay) = (0.1, 0.01);
    check(
        "adagrad lr decay, decay",
        run(&mut adagrad, &f),
        [
            0.6756011389581977,
            -1.655585651093087,
            0.2033533820809014,
            2.654306232605593,
            -0.36596948488819797,
        ],
    );
    let mut rms = RmsProp::new(0.01).centered(true).momentum(0.9);
    check(
        "rmsprop centered, momentum",
        run(&mut rms, &f),
        [
            -0.3492188818019403,
            -0.35134749344429733,
            -0.36798253410996024,
            1.3131465366687898,
            0.41418741105484,
        ],
    );
    let mut adamax = Adamax::new(0.05);
    adamax.weight_decay = 0.01;
    check(
        "adamax decay",
        run(&mut adamax, &f),
        [
            0.6433764064366112,
            -1.6149398598773046,
            0.1737460256633285,
            2.613161908768059,
            -0.3254524664565935,
        ],
    );
    check(
        "nadam",
        run(&mut NAdam::new(0.05), &f),
        [
            0.7010431788813426,
            -1.6867183226109752,
            0.22012465806124099,
            2.6858466386214785,
            -0.39273810292580524,
        ],
    );
    check(
        "radam",
        run(&mut RAdam::new(0.05), &f),
        [
            0.6970283720209423,
            -0.5602712539215695,
            0.16748574291990512,
            -0.4156050023330326,
            -0.6446347696527518,
        ],
    );
    let mut adadelta = Adadelta::new(1.0);
    adadelta.weight_decay = 0.01;
    check(
        "adadelta decay",
        run(&mut adadelta, &f),
        [
            0.9734998584552782,
            -1.973333312731888,
            0.4736779643072359,
            2.973325862690507,
            -0.6733451564186766,
        ],
    );
    check(
        "rprop",
        run(&mut Rprop::new(0.01), &f),
        [
            0.8350091520000001,
            -1.8350091519999998,
            0.335009152,
            2.835009152,
            -0.5350091520000001,
        ],
    );
    check(
        "asgd",
        run(&mut Asgd::new(0.01), &f),
        [
            0.9015698025206146,
            -1.508053104834162,
            0.3875426592476188,
            1.7206546846901192,
            -0.6838016375324362,
        ],
    );
}
