//! Multinomial logistic regression on handwritten digits (the seed's `train-mnist-logistic`),
//! written with plain tensor operations: autodiff infers every gradient.
//!
//! `cargo run --release --example train-mnist-logistic -- --help`

mod common;

use std::path::PathBuf;

use clap::Parser;
use ferrograd::{DType, Tensor, Tree};
use ferrograd_nn::optim::Sgd;

/// Train a logistic-regression classifier on handwritten digits.
#[derive(Parser, Debug)]
struct Args {
    /// A folder with the four MNIST IDX files (default: the digits shipped in data/).
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 20, value_parser = common::at_least_one)]
    epochs: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 16, value_parser = common::at_least_one)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5, value_parser = common::positive)]
    lr: f64,
    /// Seed for the split and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the curves go (SVG; default: target/plots/ in the workspace).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A short run (3 epochs, no progress bar), for CI.
    #[arg(long)]
    quick: bool,
    /// Where to train: cpu, cuda or cuda:N (a GPU needs the `cuda` feature:
    /// `--features ferrograd/cuda`).
    #[arg(long, default_value = "cpu", value_parser = common::device)]
    device: ferrograd::Device,
}

#[derive(Tree, Clone)]
struct Logistic {
    w: Tensor,
    b: Tensor,
}

fn logits(p: &Logistic, x: &Tensor) -> Tensor {
    x.flatten(1, -1).matmul(&p.w) + &p.b
}

/// Mean negative log-likelihood: `-mean(log_softmax(x W + b)[label])`.
fn loss(p: &Logistic, x: &Tensor, y: &Tensor) -> Tensor {
    -logits(p, x)
        .log_softmax(1)
        .gather(1, &y.unsqueeze(1))
        .mean()
}

fn main() {
    common::install_panic_hook();
    run(Args::parse());
}

/// Trains as `args` say; returns the final held-out accuracy.
fn run(args: Args) -> f64 {
    let plot = common::plot_path(args.plot.as_deref(), "train-mnist-logistic");
    let (train, test) = common::load(args.mnist.as_deref(), args.seed, args.batch_size);
    let features = train.inputs.numel() / train.len();
    println!(
        "{} training and {} test images; logistic regression {features} -> 10",
        train.len(),
        test.len()
    );
    let params = Logistic {
        w: Tensor::zeros(&[features, 10], DType::F32),
        b: Tensor::zeros(&[10], DType::F32),
    };
    let run = common::Run {
        title: "logistic regression on handwritten digits",
        plot: &plot,
        epochs: if args.quick { 3 } else { args.epochs },
        batch_size: args.batch_size,
        seed: args.seed,
        quiet: args.quick,
        device: args.device,
    };
    common::fit(
        &run,
        &train,
        &test,
        params,
        &mut Sgd::new(args.lr),
        loss,
        logits,
    )
}

#[test]
fn a_quick_run_learns() {
    let accuracy = common::run_with_temporary_plot("train-mnist-logistic", &["--quick"], |argv| {
        run(Args::parse_from(argv))
    });
    assert!(accuracy >= 0.85, "held-out accuracy {accuracy}");
}
