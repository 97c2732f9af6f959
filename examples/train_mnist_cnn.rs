//! A convolutional network on handwritten digits (the seed's `train-mnist-cnn`): convolution
//! and pooling with hand-written gradient kernels, a linear classifier, Adam.
//!
//! `cargo run --release --example train-mnist-cnn -- --help`

mod common;

use std::path::PathBuf;

use clap::Parser;
use ferrograd::{Conv2dParams, DType, Generator, Pool2dParams, Tensor};
use ferrograd_nn::functional as F;
use ferrograd_nn::optim::Adam;

/// Train a CNN on handwritten digits.
#[derive(Parser, Debug)]
struct Args {
    /// A folder with the four MNIST IDX files (default: the digits shipped in data/).
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 15, value_parser = common::at_least_one)]
    epochs: usize,
    /// Feature maps of the convolution.
    #[arg(long, default_value_t = 16, value_parser = common::at_least_one)]
    channels: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 32, value_parser = common::at_least_one)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.003, value_parser = common::positive)]
    lr: f64,
    /// Seed for the split, the weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the curves go (SVG; default: target/plots/ in the workspace).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A short run (2 epochs, no progress bar), for CI.
    #[arg(long)]
    quick: bool,
    /// Where to train: cpu, cuda or cuda:N (a GPU needs the `cuda` feature:
    /// `--features ferrograd/cuda`).
    #[arg(long, default_value = "cpu", value_parser = common::device)]
    device: ferrograd::Device,
}

fn main() {
    common::install_panic_hook();
    run(Args::parse());
}

/// Trains as `args` say; returns the final held-out accuracy.
fn run(args: Args) -> f64 {
    let plot = common::plot_path(args.plot.as_deref(), "train-mnist-cnn");
    let (train, test) = common::load(args.mnist.as_deref(), args.seed, args.batch_size);
    let (h, w) = (train.inputs.size(2), train.inputs.size(3));
    let c = args.channels;
    let conv = Conv2dParams {
        padding: (1, 1),
        ..Default::default()
    };
    let pool = Pool2dParams::square(2);
    let features = c * (h / 2) * (w / 2);
    println!("{} training and {} test images of {h}x{w}; conv 3x3x{c}, relu, max-pool 2, linear {features} -> 10", train.len(), test.len());
    let mut rng = Generator::new(args.seed);
    let mut init = |shape: &[usize], fan_in: usize| {
        Tensor::new(rng.normal(shape, 0.0, (2.0 / fan_in as f64).sqrt(), DType::F32))
    };
    let params = vec![
        init(&[c, 1, 3, 3], 9),
        Tensor::zeros(&[c], DType::F32),
        init(&[10, features], features),
        Tensor::zeros(&[10], DType::F32),
    ];
    let model = move |p: &Vec<Tensor>, x: &Tensor| {
        let y = F::max_pool2d(&F::relu(&F::conv2d(x, &p[0], Some(&p[1]), conv)), pool);
        F::linear(&y.flatten(1, -1), &p[2], Some(&p[3]))
    };
    let loss = move |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| F::cross_entropy(&model(p, x), y);
    let run = common::Run {
        title: "CNN on handwritten digits",
        plot: &plot,
        epochs: if args.quick { 2 } else { args.epochs },
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
        &mut Adam::new(args.lr),
        loss,
        model,
    )
}

#[test]
fn a_quick_run_learns() {
    let accuracy = common::run_with_temporary_plot("train-mnist-cnn", &["--quick"], |argv| {
        run(Args::parse_from(argv))
    });
    assert!(accuracy >= 0.85, "held-out accuracy {accuracy}");
}
