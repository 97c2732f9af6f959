//! Each optimizer step for step against its textbook update, written here on plain f64
//! numbers.

use std::collections::BTreeMap;

use ferrograd::{DType, Tensor};
use ferrograd_nn::optim::{clip_grad_norm, AdaGrad, Adam, Optimizer, RmsProp, Sgd};

/// Runs `opt` for 5 steps on f(p) = Σ c_i p_i² (gradient 2 c p) over two leaves, and the
/// textbook `reference(step, p, g, state) -> p` on plain numbers; both must agree.
fn agree(
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
    for step in 1..=5 {
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
    // a public field assigned later is checked at the next step
    let p = vec![ferrograd::Tensor::scalar(1.0f64)];
    refused("Adam: betas.1 must be in [0, 1), got 1", || {
        let mut opt = Adam::new(0.1);
        opt.betas = (0.9, 1.0);
        opt.step(&p, &p);
    });
}
