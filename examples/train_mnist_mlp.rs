//! The main job: a two-layer MLP learns handwritten digits (the UCI digits shipped in
//! `data/`, or MNIST with `--mnist DIR`), with gradients from `grad` through nn layers that
//! have hand-written gradients, and SGD with momentum.
//!
//! `cargo run --release --example train-mnist-mlp -- --help`

mod common;

use std::path::PathBuf;

use clap::Parser;
use ferrograd::{DType, Generator, Tensor};
use ferrograd_nn::functional as F;
use ferrograd_nn::optim::Sgd;

/// Train an MLP on handwritten digits.
#[derive(Parser, Debug)]
struct Args {
    /// A folder with the four MNIST IDX files (default: the digits shipped in data/).
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 30, value_parser = common::at_least_one)]
    epochs: usize,
    /// Hidden units.
    #[arg(long, default_value_t = 128, value_parser = common::at_least_one)]
    hidden: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 32, value_parser = common::at_least_one)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1, value_parser = common::positive)]
    lr: f64,
    /// Seed for the split, the weights and the shuffling.
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

/// Parameters: two linear layers in nn's layout (`W: [out, in]`).
type Params = Vec<Tensor>;

fn model(p: &Params, x: &Tensor) -> Tensor {
    let x = x.flatten(1, -1);
    let h = F::relu(&F::linear(&x, &p[0], Some(&p[1])));
    F::linear(&h, &p[2], Some(&p[3]))
}

fn loss(p: &Params, x: &Tensor, y: &Tensor) -> Tensor {
    F::cross_entropy(&model(p, x), y)
}

fn main() {
    common::install_panic_hook();
    run(Args::parse());
}

/// Trains as `args` say; returns the final held-out accuracy.
fn run(args: Args) -> f64 {
    let plot = common::plot_path(args.plot.as_deref(), "train-mnist-mlp");
    let epochs = if args.quick { 3 } else { args.epochs };
    let (train, test) = common::load(args.mnist.as_deref(), args.seed, args.batch_size);
    let features = train.inputs.numel() / train.len();
    println!(
        "{} training and {} test images of {} pixels; MLP {features}-{}-10",
        train.len(),
        test.len(),
        features,
        args.hidden
    );

    let mut rng = Generator::new(args.seed);
    let mut init = |shape: &[usize], fan_in: usize| {
        Tensor::new(rng.normal(shape, 0.0, (2.0 / fan_in as f64).sqrt(), DType::F32))
    };
    let params: Params = vec![
        init(&[args.hidden, features], features),
        Tensor::zeros(&[args.hidden], DType::F32),
        init(&[10, args.hidden], args.hidden),
        Tensor::zeros(&[10], DType::F32),
    ];
    let mut opt = Sgd::new(args.lr).momentum(0.9);
    let run = common::Run {
        title: "MLP on handwritten digits",
        plot: &plot,
        epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        quiet: args.quick,
        device: args.device,
    };
    common::fit(&run, &train, &test, params, &mut opt, loss, model)
}

#[test]
fn the_main_job_reaches_95_percent_on_the_shipped_digits() {
    let accuracy =
        common::run_with_temporary_plot("train-mnist-mlp", &[], |argv| run(Args::parse_from(argv)));
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy}");
}
