//! The main job: a two-layer MLP learns the handwritten digits shipped in `data/`, with
//! gradients from `grad` and a hand-written SGD-with-momentum step.
//!
//! `cargo run --release --example train-digits -- --help`

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use ferrograd::{grad, DType, Generator, Tensor, Tree};

/// Train an MLP on the UCI handwritten digits (8x8 images, 10 classes).
#[derive(Parser, Debug)]
struct Args {
    /// The gzip-compressed CSV (64 pixel columns, then the label).
    #[arg(long, default_value = "data/digits.csv.gz")]
    data: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Hidden units.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Examples per SGD step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Seed for the split, the initial weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Tree, Clone)]
struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

/// Mean negative log-likelihood of the labels, and the logits.
fn loss(p: &Mlp, x: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
    let h = (x.matmul(&p.w1) + &p.b1).relu();
    let logits = h.matmul(&p.w2) + &p.b2;
    let nll = -logits.log_softmax(1).gather(1, &labels.unsqueeze(1)).mean();
    (nll, logits)
}

fn load(path: &PathBuf) -> Result<(Vec<f32>, Vec<i64>), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        let values: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        if values.len() != 65 {
            return Err(format!(
                "{}:{}: expected 65 columns, found {}",
                path.display(),
                n + 1,
                values.len()
            ));
        }
        pixels.extend(values[..64].iter().map(|v| v / 16.0));
        labels.push(values[64] as i64);
    }
    Ok((pixels, labels))
}

fn accuracy(logits: &Tensor, labels: &[i64]) -> f64 {
    let predicted = logits.argmax(1, false).to_vec::<i64>();
    predicted.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

fn main() {
    let args = Args::parse();
    let (pixels, labels) = load(&args.data).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    let n = labels.len();
    let mut rng = Generator::new(args.seed);
    // Hold out 20% for testing.
    let order = rng.randperm(n).to_vec::<i64>();
    let n_test = n / 5;
    let take = |ids: &[i64]| {
        let x: Vec<f32> = ids
            .iter()
            .flat_map(|&i| {
                pixels[i as usize * 64..(i as usize + 1) * 64]
                    .iter()
                    .copied()
            })
            .collect();
        let y: Vec<i64> = ids.iter().map(|&i| labels[i as usize]).collect();
        (Tensor::from_vec(x, &[ids.len(), 64]), y)
    };
    let (x_test, y_test) = take(&order[..n_test]);
    let (x_train, y_train) = take(&order[n_test..]);
    let n_train = y_train.len();
    println!(
        "digits: {n_train} training and {n_test} test images, MLP 64-{}-10",
        args.hidden
    );

    let init = |rng: &mut Generator, fan_in: usize, shape: &[usize]| {
        Tensor::new(rng.normal(shape, 0.0, (2.0 / fan_in as f64).sqrt(), DType::F32))
    };
    let mut params = Mlp {
        w1: init(&mut rng, 64, &[64, args.hidden]),
        b1: Tensor::zeros(&[args.hidden], DType::F32),
        w2: init(&mut rng, args.hidden, &[args.hidden, 10]),
        b2: Tensor::zeros(&[10], DType::F32),
    };
    let mut velocity = params.map(&mut |t| t.zeros_like());
    let df = grad(loss);
    let start = Instant::now();
    for epoch in 1..=args.epochs {
        let perm = Tensor::new(rng.randperm(n_train));
        let mut total = 0.0;
        for start in (0..n_train).step_by(args.batch_size) {
            let len = args.batch_size.min(n_train - start);
            let ids = perm.narrow(0, start, len);
            let x = x_train.index_select(0, &ids);
            let y = Tensor::from_vec(
                ids.to_vec::<i64>()
                    .iter()
                    .map(|&i| y_train[i as usize])
                    .collect(),
                &[len],
            );
            let (g, (l, _)) = df.call(&params, (&x, &y));
            total += l.item::<f32>() as f64 * len as f64;
            // SGD with momentum: v = μ v + g; p = p - lr v
            velocity = rebuild_pairs(&velocity, &g, |v, g| &(v * args.momentum) + g);
            params = rebuild_pairs(&params, &velocity, |p, v| p - &(v * args.lr));
        }
        if epoch % 5 == 0 || epoch == args.epochs {
            let (_, logits) = loss(
                &params,
                &x_test,
                &Tensor::from_vec(y_test.clone(), &[n_test]),
            );
            println!(
                "epoch {epoch:3}: train loss {:.4}, test accuracy {:.2}%",
                total / n_train as f64,
                100.0 * accuracy(&logits, &y_test)
            );
        }
    }
    let (_, logits) = loss(
        &params,
        &x_test,
        &Tensor::from_vec(y_test.clone(), &[n_test]),
    );
    println!(
        "held-out accuracy: {:.2}% ({:.1} s)",
        100.0 * accuracy(&logits, &y_test),
        start.elapsed().as_secs_f64()
    );
}

/// Combines two trees of the same structure leaf by leaf.
fn rebuild_pairs<T: Tree>(a: &T, b: &T, f: impl Fn(&Tensor, &Tensor) -> Tensor) -> T {
    let bs = ferrograd::leaves(b);
    let mut i = 0;
    a.map(&mut |t| {
        i += 1;
        f(t, &bs[i - 1])
    })
}
