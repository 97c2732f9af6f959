//! Data-parallel training of the digits MLP (or CNN) with `ferrograd-dist`: every rank trains
//! on its share of each batch and the gradients are averaged across ranks while the backward
//! pass runs. Ranks are threads of this process by default, or MPI processes:
//!
//! ```sh
//! cargo run --release -p ferrograd-dist --example train-digits-ddp -- --ranks 2
//! cargo build --release -p ferrograd-dist --features mpi --example train-digits-ddp
//! mpirun -np 2 target/release/examples/train-digits-ddp --mpi          # add --model cnn
//! ```
//!
//! `--help` lists the options. With the same global batch, N ranks reach the accuracy of one.

mod common;

use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use ferrograd::{grad, Conv2dParams, DType, Generator, Pool2dParams, Tensor};
use ferrograd_dist::{Communicator, DataParallel, ShardedSampler, ThreadGroup};
use ferrograd_nn::data::Dataset;
use ferrograd_nn::functional as F;
use ferrograd_nn::optim::{Adam, Optimizer, Sgd};

/// Train on handwritten digits on several ranks.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// The model.
    #[arg(long, value_enum, default_value_t = Model::Mlp)]
    model: Model,
    /// Ranks, as threads of this process (ignored with --mpi: mpirun's -np decides).
    #[arg(long, default_value_t = 2, value_parser = common::at_least_one)]
    ranks: usize,
    /// Run as one rank of an MPI job (needs the `mpi` feature and mpirun).
    #[arg(long)]
    mpi: bool,
    /// Passes over the training set (default: 30 for the MLP, 15 for the CNN).
    #[arg(long, value_parser = common::at_least_one)]
    epochs: Option<usize>,
    /// Examples per step, over all ranks together.
    #[arg(long, default_value_t = 32, value_parser = common::at_least_one)]
    batch_size: usize,
    /// Gradient bucket size in KiB.
    #[arg(long, default_value_t = 25 * 1024, value_parser = common::at_least_one)]
    bucket_kib: usize,
    /// Seed for the split, the weights and the shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A short run (3 epochs), for CI.
    #[arg(long)]
    quick: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
enum Model {
    /// Two linear layers, 128 hidden units, SGD with momentum.
    Mlp,
    /// A 3x3 convolution with 16 maps, max-pooling and a linear layer, Adam.
    Cnn,
}

fn main() {
    common::install_panic_hook();
    let args = Args::parse();
    if args.mpi {
        run_mpi(args);
    } else {
        let results = ThreadGroup::new(args.ranks).run(|comm| train(&args, Arc::new(comm)));
        for (rank, r) in results.into_iter().enumerate() {
            if let Err(e) = r {
                eprintln!("error: rank {rank} {e}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(feature = "mpi")]
fn run_mpi(args: Args) {
    let comm = ferrograd_dist::MpiCommunicator::init()
        .unwrap_or_else(|e| common::usage_error(format!("cannot start MPI: {e}")));
    train(&args, Arc::new(comm));
}

#[cfg(not(feature = "mpi"))]
fn run_mpi(_: Args) {
    common::usage_error(
        "this build has no MPI: build with `--features mpi` (see the README), or use --ranks N",
    );
}

type Params = Vec<Tensor>;
/// A model's forward function.
type Forward = Box<dyn Fn(&Params, &Tensor) -> Tensor + Send + Sync>;
/// An optimizer's step.
type Step = Box<dyn FnMut(&Params, &Params) -> Params>;

/// The model's parameters and its function, for images `[N, 1, 8, 8]`.
fn model(which: Model, seed: u64) -> (Params, Forward) {
    let mut rng = Generator::new(seed);
    let mut init = |shape: &[usize], fan_in: usize| {
        Tensor::new(rng.normal(shape, 0.0, (2.0 / fan_in as f64).sqrt(), DType::F32))
    };
    match which {
        Model::Mlp => (
            vec![
                init(&[128, 64], 64),
                Tensor::zeros(&[128], DType::F32),
                init(&[10, 128], 128),
                Tensor::zeros(&[10], DType::F32),
            ],
            Box::new(|p: &Params, x: &Tensor| {
                let h = F::relu(&F::linear(&x.flatten(1, -1), &p[0], Some(&p[1])));
                F::linear(&h, &p[2], Some(&p[3]))
            }),
        ),
        Model::Cnn => {
            let conv = Conv2dParams {
                padding: (1, 1),
                ..Default::default()
            };
            let pool = Pool2dParams::square(2);
            (
                vec![
                    init(&[16, 1, 3, 3], 9),
                    Tensor::zeros(&[16], DType::F32),
                    init(&[10, 16 * 4 * 4], 16 * 4 * 4),
                    Tensor::zeros(&[10], DType::F32),
                ],
                Box::new(move |p: &Params, x: &Tensor| {
                    let y = F::max_pool2d(&F::relu(&F::conv2d(x, &p[0], Some(&p[1]), conv)), pool);
                    F::linear(&y.flatten(1, -1), &p[2], Some(&p[3]))
                }),
            )
        }
    }
}

/// One rank's training; returns the final held-out accuracy (the same on every rank).
fn train(args: &Args, comm: Arc<dyn Communicator>) -> f64 {
    let (rank, size) = (comm.rank(), comm.size());
    let say = |s: String| {
        if rank == 0 {
            println!("{s}");
        }
    };
    if !args.batch_size.is_multiple_of(size) {
        common::usage_error(format!(
            "--batch-size {} does not split over {size} ranks",
            args.batch_size
        ));
    }
    let local_batch = args.batch_size / size;
    let (train, test): (Dataset, Dataset) = common::load(None, args.seed, args.batch_size);
    let epochs = match (args.quick, args.epochs, args.model) {
        (true, ..) => 3,
        (false, Some(e), _) => e,
        (false, None, Model::Mlp) => 30,
        (false, None, Model::Cnn) => 15,
    };
    // every rank draws its own initial weights; DataParallel starts them all from rank 0's
    let (mut params, forward) = model(args.model, args.seed + rank as u64);
    let ddp = DataParallel::with_bucket_bytes(comm.clone(), &mut params, args.bucket_kib << 10)
        .unwrap_or_else(|e| panic!("{e}"));
    let loss = |p: &Params, x: &Tensor, y: &Tensor| F::cross_entropy(&forward(p, x), y);
    let step = ddp.wrap(grad(loss));
    let mut opt: Step = match args.model {
        Model::Mlp => {
            let mut o = Sgd::new(0.1).momentum(0.9);
            Box::new(move |p, g| o.step(p, g))
        }
        Model::Cnn => {
            let mut o = Adam::new(0.003);
            Box::new(move |p, g| o.step(p, g))
        }
    };
    let sampler = ShardedSampler::new(train.len(), rank, size).shuffle(Some(args.seed));
    say(format!(
        "{:?} on {} training and {} test digits, {size} rank(s) x {local_batch} examples per step, {} bucket(s)",
        args.model,
        train.len(),
        test.len(),
        ddp.buckets()
    ));
    let start = Instant::now();
    let mut seen = 0usize;
    for epoch in 0..epochs {
        let shard = sampler.shard(&train, epoch as u64);
        let mut total = 0.0;
        let mut steps = 0;
        for (x, y) in shard.batches(local_batch, None) {
            let (local, l) = step.call(&params, (&x, &y));
            let g = ddp.finish(&local).unwrap_or_else(|e| panic!("{e}"));
            params = opt(&params, &g);
            total += l.item_f64();
            steps += 1;
            seen += x.size(0) * size;
        }
        let mean = Tensor::scalar(total / steps.max(1) as f64);
        let mean = ddp
            .average(&mean)
            .unwrap_or_else(|e| panic!("{e}"))
            .item_f64();
        if !args.quick || epoch + 1 == epochs {
            say(format!("epoch {:>2}: loss {mean:.4}", epoch + 1));
        }
    }
    let took = start.elapsed();
    let accuracy = common::accuracy(&forward(&params, &test.inputs), &test.labels);
    let stats = ddp.stats();
    say(format!(
        "held-out accuracy {:.2}%; {:.0} examples/s over all ranks; all-reduce {:.1?} in all, {:.0}% of it hidden behind the backward pass",
        100.0 * accuracy,
        seen as f64 / took.as_secs_f64(),
        stats.communicated,
        100.0 * stats.hidden_share()
    ));
    accuracy
}

#[test]
fn two_ranks_reach_the_accuracy_of_one() {
    let args = Args::parse_from(["train-digits-ddp", "--quick"]);
    let accuracy = ThreadGroup::new(2).run(|comm| train(&args, Arc::new(comm)));
    for a in accuracy {
        let a = a.unwrap();
        assert!(a >= 0.9, "held-out accuracy {a}");
    }
}
