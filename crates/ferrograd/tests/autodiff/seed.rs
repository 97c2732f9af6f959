//! The seed README's examples, in Rust.

use ferrograd::{grad, gradcheck, hessian, DType, Generator, Tensor, Tree};

use crate::common::*;

#[derive(Tree, Clone)]
struct Params {
    w: Vec<Tensor>,
    b: Vec<Tensor>,
}

/// The README's network: two tanh layers and a multinomial logistic loss.
fn neural_net(p: &Params, x: &Tensor, y: &Tensor) -> Tensor {
    let h1 = (x.matmul(&p.w[0]) + &p.b[0]).tanh();
    let h2 = (h1.matmul(&p.w[1]) + &p.b[1]).tanh();
    let y_hat = &h2 - h2.exp().sum().log();
    -(y_hat * y).sum()
}

fn params(rng: &mut Generator, dtype: DType) -> Params {
    let n = |rng: &mut Generator, s: &[usize]| Tensor::new(rng.normal(s, 0.0, 0.1, dtype));
    Params {
        w: vec![n(rng, &[100, 50]), n(rng, &[50, 10])],
        b: vec![n(rng, &[50]), n(rng, &[10])],
    }
}

#[test]
fn the_neural_network_example_has_correct_gradients() {
    let mut rng = Generator::new(42);
    let p = params(&mut rng, DType::F64);
    let x = Tensor::new(rng.randn(&[1, 100], DType::F64));
    let y = Tensor::zeros(&[1, 10], DType::F64).index_fill(&ferrograd::Index::Single(0), 0.0);
    let mut yv = vec![0.0; 10];
    yv[2] = 1.0;
    let y = &y + &Tensor::from_vec(yv, &[1, 10]);
    let report = gradcheck(neural_net, &p, (&x, &y), 1e-6);
    assert!(report.passed(), "{report}");
    // the gradient tree mirrors the parameters
    let (g, loss) = grad(neural_net).call(&p, (&x, &y));
    assert_eq!(g.w[0].shape(), &[100, 50]);
    assert_eq!(g.b[1].shape(), &[10]);
    assert!(loss.item::<f64>() > 0.0);
}

#[test]
fn sgd_on_the_neural_network_lowers_the_loss() {
    let mut rng = Generator::new(7);
    let mut p = params(&mut rng, DType::F32);
    let x = Tensor::new(rng.randn(&[1, 100], DType::F32));
    let mut yv = vec![0.0f32; 10];
    yv[2] = 1.0;
    let y = Tensor::from_vec(yv, &[1, 10]);
    let df = grad(neural_net);
    let (_, first) = df.call(&p, (&x, &y));
    for _ in 0..50 {
        let (g, _) = df.call(&p, (&x, &y));
        p = Params {
            w: p.w
                .iter()
                .zip(&g.w)
                .map(|(w, gw)| w - &(gw * 0.05))
                .collect(),
            b: p.b
                .iter()
                .zip(&g.b)
                .map(|(b, gb)| b - &(gb * 0.05))
                .collect(),
        };
    }
    let (_, last) = df.call(&p, (&x, &y));
    assert!(
        last.item::<f32>() < 0.5 * first.item::<f32>(),
        "loss {} -> {}",
        first.item::<f32>(),
        last.item::<f32>()
    );
}

#[test]
fn gradients_of_gradients() {
    // The README: ddf(params) differentiates a function of innerFn's gradient.
    // inner(x) = Σ sin(x_i) x_j: grads are cos(x_i) Σx + Σ sin(x); the outer function sums
    // them, so its gradient is the row sums of inner's Hessian.
    let inner = |x: &Tensor| (x.sin().sum() * x.sum()).sum();
    let ddf = |x: &Tensor| grad(inner).call(x, ()).0.sum();
    let x = Tensor::from_vec(vec![0.3f64, -1.2, 2.0], &[3]);
    let (gg, _) = grad(ddf).call(&x, ());
    let h = hessian(inner, &x).sum_dim(1, false);
    assert_close(&gg, &h.to_f64_vec(), 1e-12);
    // closed form: H_ij = cos x_i + cos x_j + δ_ij (-sin x_i Σx)
    let xs = x.to_f64_vec();
    let s: f64 = xs.iter().sum();
    let want: Vec<f64> = (0..3)
        .map(|i| {
            (0..3)
                .map(|j| xs[i].cos() + xs[j].cos() - if i == j { xs[i].sin() * s } else { 0.0 })
                .sum()
        })
        .collect();
    assert_close(&gg, &want, 1e-12);
}

#[test]
fn a_gradient_of_zero_is_zero() {
    // the seed's SimpleGradGrad: the gradient of a linear function's gradient is 0
    let inner = |x: &Tensor| (x * 3.0).sum();
    let outer = |x: &Tensor| grad(inner).call(x, ()).0.sum();
    let (g, _) = grad(outer).call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    assert_eq!(g.to_f64_vec(), vec![0.0, 0.0]);
}
