//! Gradients of gradients: a Hessian-vector product of a small network's loss, computed by
//! differentiating its gradient, and checked against finite differences of the gradient.
//!
//! `cargo run --release --example gradients-of-gradients -- --help`

use clap::Parser;
use ferrograd::{grad, hvp, DType, Generator, Tensor};

/// Compute a Hessian-vector product two ways.
#[derive(Parser, Debug)]
struct Args {
    /// Hidden units of the network.
    #[arg(long, default_value_t = 8)]
    hidden: usize,
    /// Seed for the weights, data and direction.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let worst = run(Args::parse());
    if worst > 1e-6 {
        eprintln!("error: the Hessian-vector product disagrees with finite differences");
        std::process::exit(1);
    }
}

/// Computes the product both ways; returns the largest relative difference.
fn run(args: Args) -> f64 {
    let mut rng = Generator::new(args.seed);
    let mut r = |shape: &[usize]| Tensor::new(rng.normal(shape, 0.0, 0.5, DType::F64));
    let params = vec![r(&[5, args.hidden]), r(&[args.hidden, 1])];
    let x = r(&[16, 5]);
    let y = r(&[16, 1]);
    // L(w) = mean((tanh(x W1) W2 - y)²)
    let loss = |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
        (x.matmul(&p[0]).tanh().matmul(&p[1]) - y).square().mean()
    };
    let v = vec![r(&[5, args.hidden]), r(&[args.hidden, 1])];

    // H v by differentiating <∇L, v>
    let hv = hvp(loss, &params, (&x, &y), &v);

    // finite differences of the gradient along v: (∇L(w + εv) - ∇L(w - εv)) / 2ε
    let eps = 1e-5;
    let shifted = |sign: f64| -> Vec<Tensor> {
        let p: Vec<Tensor> = params
            .iter()
            .zip(&v)
            .map(|(w, d)| w + &(d * (sign * eps)))
            .collect();
        grad(loss).call(&p, (&x, &y)).0
    };
    let (plus, minus) = (shifted(1.0), shifted(-1.0));
    let mut worst = 0.0f64;
    for ((h, a), b) in hv.iter().zip(&plus).zip(&minus) {
        let fd = (a - b) / (2.0 * eps);
        for (p, q) in h.to_f64_vec().iter().zip(fd.to_f64_vec()) {
            worst = worst.max((p - q).abs() / q.abs().max(1.0));
        }
    }
    println!(
        "Hessian-vector product over {} weights: first entries {:?}",
        params.iter().map(Tensor::numel).sum::<usize>(),
        &hv[1].to_f64_vec()[..3]
    );
    println!("largest relative difference from finite differences: {worst:.2e}");
    worst
}

#[test]
fn the_product_matches_finite_differences() {
    assert!(run(Args::parse_from(["gradients-of-gradients"])) < 1e-6);
}
