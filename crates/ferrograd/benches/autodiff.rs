//! Direct-mode autodiff overhead: `cargo bench -p ferrograd --bench autodiff`.
//!
//! Two programs, each run several passes with the quietest pass reported:
//! - a forward+backward chain of 100 elementwise ops on a 10-element tensor, reported per
//!   primitive;
//! - the seed's `logistic` step: W 10x100 and b 10 for one sample, log-softmax, NLL of the
//!   label, and an SGD update.
//!
//! `benches/pytorch_autodiff.py` runs the same programs in PyTorch eager;
//! `benches/compare-pytorch.sh` alternates the two.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrograd::{grad, DType, Generator, Tensor, Tree};

/// The quietest of `passes` timings of `iters` runs of `f`, per run.
fn best(passes: usize, iters: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    (0..passes)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters as u32
        })
        .min()
        .expect("at least one pass")
}

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

fn main() {
    let passes = 7;
    let mut rng = Generator::new(0);

    let x = Tensor::new(rng.normal(&[10], 0.0, 1.0, DType::F32));
    let dchain = grad(chain);
    let t_chain = best(passes, 2000, || {
        black_box(dchain.call(&x, ()));
    });

    let mut params = Logistic {
        w: Tensor::new(rng.normal(&[10, 100], 0.0, 0.1, DType::F32)),
        b: Tensor::zeros(&[10], DType::F32),
    };
    let xs: Vec<Tensor> = (0..100)
        .map(|_| Tensor::new(rng.normal(&[100], 0.0, 1.0, DType::F32)))
        .collect();
    let dlogistic = grad(logistic);
    let mut i = 0;
    let t_logistic = best(passes, 2000, || {
        let (g, _) = dlogistic.call(&params, (&xs[i % 100], &(i % 10)));
        params = Logistic {
            w: &params.w - &(&g.w * 0.01),
            b: &params.b - &(&g.b * 0.01),
        };
        i += 1;
    });

    println!(
        "{:<46} {:>12}",
        "ferrograd direct mode (f32, quietest pass)", "time"
    );
    println!(
        "{:<46} {:>9.3} µs",
        "chain of 100 elementwise ops, per primitive",
        t_chain.as_secs_f64() * 1e6 / 100.0
    );
    println!(
        "{:<46} {:>9.3} µs",
        "chain of 100 elementwise ops, whole step",
        t_chain.as_secs_f64() * 1e6
    );
    println!(
        "{:<46} {:>9.3} µs",
        "logistic step (10x100, 1 sample, + SGD)",
        t_logistic.as_secs_f64() * 1e6
    );
}
