//! An autoencoder on handwritten digits (the seed's `train-mnist-autoencoder`): the images
//! squeeze through a small code and come back; the loss is the binary cross-entropy of the
//! reconstruction. Reports the held-out reconstruction error.
//!
//! `cargo run --release --example train-mnist-autoencoder -- --help`

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use ferrograd::{grad, DType, Generator, Tensor};
use ferrograd_nn::functional as F;
use ferrograd_nn::optim::{Adam, Optimizer};

/// Train an autoencoder on handwritten digits.
#[derive(Parser, Debug)]
struct Args {
    /// A folder with the four MNIST IDX files (default: the digits shipped in data/).
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 30, value_parser = common::at_least_one)]
    epochs: usize,
    /// Size of the code.
    #[arg(long, default_value_t = 8, value_parser = common::at_least_one)]
    code: usize,
    /// Hidden units on each side of the code.
    #[arg(long, default_value_t = 32, value_parser = common::at_least_one)]
    hidden: usize,
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
    /// A short run (3 epochs, no progress bar), for CI.
    #[arg(long)]
    quick: bool,
}

/// Encoder and decoder: four linear layers in nn's layout.
fn reconstruct(p: &[Tensor], x: &Tensor) -> Tensor {
    let h = F::tanh(&F::linear(x, &p[0], Some(&p[1])));
    let code = F::tanh(&F::linear(&h, &p[2], Some(&p[3])));
    let h = F::tanh(&F::linear(&code, &p[4], Some(&p[5])));
    F::sigmoid(&F::linear(&h, &p[6], Some(&p[7])))
}

#[allow(clippy::ptr_arg)] // grad differentiates its first argument as a tree: a Vec
fn loss(p: &Vec<Tensor>, x: &Tensor) -> Tensor {
    F::bce(&reconstruct(p, x), x)
}

fn main() {
    common::install_panic_hook();
    run(Args::parse());
}

/// Trains as `args` say; returns the held-out loss before and after training.
fn run(args: Args) -> (f64, f64) {
    let plot = common::plot_path(args.plot.as_deref(), "train-mnist-autoencoder");
    let epochs = if args.quick { 3 } else { args.epochs };
    let (train, test) = common::load(args.mnist.as_deref(), args.seed, args.batch_size);
    let pixels = train.inputs.numel() / train.len();
    let flat = |x: &Tensor| x.reshape(&[x.size(0), pixels]);
    let test_x = flat(&test.inputs);
    println!(
        "{} training and {} test images; autoencoder {pixels}-{h}-{c}-{h}-{pixels}",
        train.len(),
        test.len(),
        h = args.hidden,
        c = args.code
    );
    let mut rng = Generator::new(args.seed);
    let sizes = [
        (pixels, args.hidden),
        (args.hidden, args.code),
        (args.code, args.hidden),
        (args.hidden, pixels),
    ];
    let mut params = Vec::new();
    for (inputs, outputs) in sizes {
        params.push(Tensor::new(rng.normal(
            &[outputs, inputs],
            0.0,
            (1.0 / inputs as f64).sqrt(),
            DType::F32,
        )));
        params.push(Tensor::zeros(&[outputs], DType::F32));
    }
    let before = loss(&params, &test_x).item_f64();
    let mut opt = Adam::new(args.lr);
    let df = grad(loss);
    let (mut train_losses, mut test_losses) = (Vec::new(), Vec::new());
    let bar = common::progress(
        (epochs * train.len().div_ceil(args.batch_size)) as u64,
        args.quick,
    );
    let start = Instant::now();
    for epoch in 1..=epochs {
        let mut total = 0.0;
        for (x, _) in train.batches(args.batch_size, Some(args.seed + epoch as u64)) {
            let (g, l) = df.call(&params, (&flat(&x),));
            total += l.item_f64() * x.size(0) as f64;
            params = opt.step(&params, &g);
            bar.inc(1);
        }
        train_losses.push(total / train.len() as f64);
        test_losses.push(loss(&params, &test_x).item_f64());
        bar.set_message(format!(
            "train {:.4}, test {:.4}",
            train_losses[epoch - 1],
            test_losses[epoch - 1]
        ));
        if !common::interactive(args.quick) {
            println!(
                "epoch {epoch:3}: train loss {:.4}, test loss {:.4} ({:.1} s)",
                train_losses[epoch - 1],
                test_losses[epoch - 1],
                start.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish();
    if let Err(e) = common::plot(
        &plot,
        "autoencoder on handwritten digits",
        &[common::Panel {
            y: "binary cross-entropy per pixel",
            series: &[("train", &train_losses), ("test", &test_losses)],
        }],
    ) {
        eprintln!("warning: could not write {}: {e}", plot.display());
    }
    let after = test_losses.last().copied().unwrap_or(before);
    println!(
        "held-out reconstruction loss (binary cross-entropy per pixel): {before:.4} before, {after:.4} after {} ({:.1} s); curves in {}",
        common::epochs(epochs),
        start.elapsed().as_secs_f64(),
        plot.display()
    );
    (before, after)
}

#[test]
fn a_quick_run_reconstructs_better() {
    let (before, after) =
        common::run_with_temporary_plot("train-mnist-autoencoder", &["--quick"], |argv| {
            run(Args::parse_from(argv))
        });
    assert!(after < 0.8 * before, "loss {before} -> {after}");
}
