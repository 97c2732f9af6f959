//! Autodiff overhead, direct mode and optimize mode: `cargo bench -p ferrograd --bench
//! autodiff`.
//!
//! Two programs, each run several passes with the quietest pass reported, direct and
//! compiled alternating pass by pass:
//! - a forward+backward chain of 100 elementwise ops on a 10-element tensor, reported per
//!   primitive;
//! - the seed's `logistic` step: W 10x100 and b 10 for one sample, log-softmax, NLL of the
//!   label, and an SGD update;
//! - a Hessian-vector product of the suite's mlp batched loss (32 x 100 -> 1000 -> 10, tanh,
//!   NLL): direct `hvp` against `compile(|p| hvp(..))`.
//!
//! `benches/pytorch_autodiff.py` runs the same programs in PyTorch eager;
//! `benches/compare-pytorch.sh` alternates the two. `-- --simd avx2` (or `portable`) caps
//! every kernel at that level, matrix products included.

#[path = "../../../benches/alternate.rs"]
mod alternate;
#[path = "../../../benches/simd_arg.rs"]
mod simd_arg;

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrograd::{grad, simd_level, DType, Generator, Tensor, Tree};

/// 100 elementwise primitives: 25 rounds of (sin, * 1.01, tanh, + 0.1).
fn chain(x: &Tensor) -> Tensor {
    let mut t = x.clone();
    for _ in 0..25 {
        t = t.sin();
        t = &t * 1.01;
        t = t.tanh();
        t = &t + 0.1;
    }
    t.sum()
}

#[derive(Tree, Clone)]
struct Logistic {
    w: Tensor,
    b: Tensor,
}

fn logistic(p: &Logistic, x: &Tensor, y: &usize) -> Tensor {
    let y_hat = (p.w.mv(x) + &p.b).log_softmax(0);
    -y_hat.narrow(0, *y, 1).sum()
}

/// The suite's mlp batched loss.
#[allow(clippy::ptr_arg)] // a Vec is the parameter tree
fn mlp(p: &Vec<Tensor>, x: &Tensor, y: &Tensor) -> Tensor {
    let h = (x.matmul(&p[0]) + &p[1]).tanh();
    let out = (h.matmul(&p[2]) + &p[3]).log_softmax(1);
    -out.gather(1, &y.unsqueeze(1)).mean()
}

fn main() {
    ferrograd::cap_simd_level(simd_arg::simd_arg().map(|(_, level)| level));
    let passes = 7;
    let mut rng = Generator::new(0);

    let x = Tensor::new(rng.normal(&[10], 0.0, 1.0, DType::F32));
    let dchain = grad(chain);
    let dchain_c = grad(chain).optimize(true);
    let capture = Instant::now();
    dchain_c.call(&x, ());
    let chain_capture = capture.elapsed();
    let (t_chain, t_chain_c) = alternate::best_pair(
        passes,
        2000,
        201,
        |_| {
            black_box(dchain.call(&x, ()));
        },
        |_| {
            black_box(dchain_c.call(&x, ()));
        },
    );

    let params = Logistic {
        w: Tensor::new(rng.normal(&[10, 100], 0.0, 0.1, DType::F32)),
        b: Tensor::zeros(&[10], DType::F32),
    };
    let xs: Vec<Tensor> = (0..100)
        .map(|_| Tensor::new(rng.normal(&[100], 0.0, 1.0, DType::F32)))
        .collect();
    // the label is a plain number argument, so part of the signature: ten plans
    let dlogistic = grad(logistic);
    let dlogistic_c = grad(logistic).optimize(true).cache_size(16);
    let capture = Instant::now();
    dlogistic_c.call(&params, (&xs[0], &0usize));
    let logistic_capture = capture.elapsed();
    let params = std::cell::RefCell::new(params);
    let step = |df: &ferrograd::Grad<_>, i: &mut usize| {
        let p = params.borrow().clone();
        let (g, _) = df.call(&p, (&xs[*i % 100], &(*i % 10)));
        *params.borrow_mut() = Logistic {
            w: &p.w - &(&g.w * 0.01),
            b: &p.b - &(&g.b * 0.01),
        };
        *i += 1;
    };
    let (mut i, mut j) = (0, 0);
    let (t_logistic, t_logistic_c) = alternate::best_pair(
        passes,
        2000,
        201,
        |_| step(&dlogistic, &mut i),
        |_| step(&dlogistic_c, &mut j),
    );
    let stats = dlogistic_c.stats();
    assert_eq!(stats.fallbacks, 0, "{stats:?}");

    let normal = |rng: &mut Generator, shape: &[usize], std: f64| {
        Tensor::new(rng.normal(shape, 0.0, std, DType::F32))
    };
    let p = vec![
        normal(&mut rng, &[100, 1000], 0.03),
        normal(&mut rng, &[1000], 0.03),
        normal(&mut rng, &[1000, 10], 0.03),
        normal(&mut rng, &[10], 0.03),
    ];
    let v: Vec<Tensor> = p.iter().map(|t| normal(&mut rng, t.shape(), 1.0)).collect();
    let (x, y) = (
        normal(&mut rng, &[32, 100], 1.0),
        Tensor::randint(&mut rng, 0, 10, &[32]),
    );
    let hv = |p: &Vec<Tensor>, v: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
        ferrograd::hvp(mlp, p, (x, y), v)
    };
    let hv_c = ferrograd::compile(hv);
    let capture = Instant::now();
    hv_c.call(&p, (&v, &x, &y));
    let hvp_capture = capture.elapsed();
    let (t_hvp, t_hvp_c) = alternate::best_pair(
        passes,
        200,
        20,
        |_| {
            black_box(hv(&p, &v, &x, &y));
        },
        |_| {
            black_box(hv_c.call(&p, (&v, &x, &y)));
        },
    );

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{:<46} {:>12} {:>12} {:>8}",
        format!("ferrograd (f32, {}, quietest pass)", simd_level()),
        "direct",
        "optimize",
        "ratio"
    );
    let row = |name: &str, direct: f64, compiled: f64| {
        println!(
            "{name:<46} {direct:>9.3} µs {compiled:>9.3} µs {:>7.2}x",
            direct / compiled
        );
    };
    row(
        "chain of 100 elementwise ops, per primitive",
        us(t_chain) / 100.0,
        us(t_chain_c) / 100.0,
    );
    row(
        "chain of 100 elementwise ops, whole step",
        us(t_chain),
        us(t_chain_c),
    );
    row(
        "logistic step (10x100, 1 sample, + SGD)",
        us(t_logistic),
        us(t_logistic_c),
    );
    row(
        "Hessian-vector product, mlp batched loss",
        us(t_hvp),
        us(t_hvp_c),
    );
    println!(
        "capture per signature: chain {:.2} ms, logistic {:.2} ms, hvp {:.2} ms",
        chain_capture.as_secs_f64() * 1e3,
        logistic_capture.as_secs_f64() * 1e3,
        hvp_capture.as_secs_f64() * 1e3
    );
}
