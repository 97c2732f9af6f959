//! Initializers: the bounds and spreads PyTorch's formulas give, measured on large draws.

use ferrograd::{DType, Generator, Tensor};
use ferrograd_nn::init::{
    fans, gain, kaiming_normal, kaiming_uniform, trunc_normal, xavier_normal, xavier_uniform, Fan,
    Nonlinearity,
};

fn stats(t: &Tensor) -> (f64, f64, f64) {
    let v = t.to_f64_vec();
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    (mean, var.sqrt(), max)
}

#[test]
fn fans_and_gains_follow_pytorch() {
    assert_eq!(fans(&[10, 20]), (20, 10));
    assert_eq!(fans(&[16, 8, 3, 3]), (72, 144));
    assert_eq!(gain(Nonlinearity::Linear), 1.0);
    assert_eq!(gain(Nonlinearity::Tanh), 5.0 / 3.0);
    assert_eq!(gain(Nonlinearity::Relu), 2f64.sqrt());
    assert!((gain(Nonlinearity::LeakyRelu(0.2)) - (2.0 / 1.04f64).sqrt()).abs() < 1e-15);
    assert_eq!(gain(Nonlinearity::Selu), 0.75);
    let msg = std::panic::catch_unwind(|| fans(&[5]))
        .unwrap_err()
        .downcast_ref::<String>()
        .cloned()
        .unwrap();
    assert!(
        msg.contains("at least 2 dims, got shape [5]") && msg.contains("init.rs"),
        "{msg}"
    );
}

#[test]
fn uniform_and_normal_initializers_have_their_spread() {
    let mut g = Generator::new(1);
    let shape = [256, 128, 3, 3]; // fan_in 1152, fan_out 2304
    let close = |got: f64, want: f64, what: &str| {
        assert!((got / want - 1.0).abs() < 0.02, "{what}: {got} vs {want}");
    };

    let w = xavier_uniform(&mut g, &shape, 1.0, DType::F32);
    let bound = (6.0f64 / 3456.0).sqrt();
    let (mean, std, max) = stats(&w);
    assert!(max <= bound && max > 0.99 * bound && mean.abs() < 1e-3);
    close(std, bound / 3f64.sqrt(), "xavier_uniform");

    let (_, std, _) = stats(&xavier_normal(&mut g, &shape, 2.0, DType::F64));
    close(std, 2.0 * (2.0f64 / 3456.0).sqrt(), "xavier_normal");

    let w = kaiming_uniform(&mut g, &shape, Nonlinearity::Relu, Fan::In, DType::F32);
    let bound = 2f64.sqrt() * (3.0f64 / 1152.0).sqrt();
    let (_, std, max) = stats(&w);
    assert!(max <= bound && max > 0.99 * bound);
    close(std, bound / 3f64.sqrt(), "kaiming_uniform");

    let w = kaiming_normal(&mut g, &shape, Nonlinearity::Relu, Fan::Out, DType::F32);
    close(
        stats(&w).1,
        (2.0f64 / 2304.0).sqrt(),
        "kaiming_normal fan out",
    );
    assert_eq!(w.shape(), &shape);
}

#[test]
fn truncated_normal_stays_inside_and_refuses_an_unreachable_interval() {
    let w = trunc_normal(
        &mut Generator::new(2),
        &[200, 500],
        0.5,
        1.0,
        (-1.0, 2.0),
        DType::F32,
    );
    let v = w.to_vec::<f32>();
    assert_eq!(v.len(), 100_000);
    assert!(v.iter().all(|x| (-1.0..=2.0).contains(x)));
    let (mean, std, _) = stats(&w);
    // Normal(0.5, 1) cut at ±1.5σ: mean 0.5, std √(1 - 2·1.5·φ(1.5) / (Φ(1.5) - Φ(-1.5))) = 0.7427
    assert!((mean - 0.5).abs() < 0.01, "{mean}");
    assert!((std - 0.7427).abs() < 0.005, "{std}");
    let msg = std::panic::catch_unwind(|| {
        trunc_normal(
            &mut Generator::new(0),
            &[3],
            0.0,
            1.0,
            (5.0, 6.0),
            DType::F32,
        )
    })
    .unwrap_err()
    .downcast_ref::<String>()
    .cloned()
    .unwrap();
    assert!(
        msg.contains("[5, 6] must be an interval that Normal(0, 1) reaches"),
        "{msg}"
    );
}

#[test]
fn orthogonal_rows_or_columns_are_orthonormal() {
    let mut rng = Generator::new(21);
    for (shape, gain) in [
        (vec![4usize, 6], 1.0),
        (vec![6, 4], 2.0),
        (vec![3, 2, 2, 2], 0.5),
    ] {
        let w = ferrograd_nn::init::orthogonal(&mut rng, &shape, gain, DType::F64);
        assert_eq!(w.shape(), shape.as_slice());
        let m = w.reshape(&[shape[0], shape[1..].iter().product::<usize>()]);
        let (r, c) = (m.size(0), m.size(1));
        let gram = if r <= c {
            m.matmul(&m.t())
        } else {
            m.t().matmul(&m)
        };
        let eye = Tensor::eye(r.min(c), DType::F64) * (gain * gain);
        assert!(
            (&gram - &eye).abs().max().item::<f64>() < 1e-12,
            "{shape:?}"
        );
    }
    // f32 too, and different draws differ
    let a = ferrograd_nn::init::orthogonal(&mut rng, &[5, 5], 1.0, DType::F32);
    let b = ferrograd_nn::init::orthogonal(&mut rng, &[5, 5], 1.0, DType::F32);
    assert_eq!(a.dtype(), DType::F32);
    assert!((&a - &b).abs().max().item::<f32>() > 1e-3);
}
