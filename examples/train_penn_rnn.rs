//! A word-level recurrent language model (the seed's `train-penn-rnn`): embeddings, an LSTM,
//! GRU or fast-weights recurrent network, and a softmax over the vocabulary, trained by
//! truncated backpropagation through time with the state carried across chunks. Reports
//! perplexity on train, valid and test. Default data: the tiny synthetic corpus in
//! `data/tiny-ptb/`; `--data DIR` takes the real Penn Treebank files.
//!
//! `cargo run --release --example train-penn-rnn -- --help`

mod common;

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use ferrograd::{grad, DType, Generator, Tensor, Tree};
use ferrograd_nn::data::{self, Level};
use ferrograd_nn::functional as F;
use ferrograd_nn::models::{Cell, Output, RecurrentNetwork, RecurrentParams, RecurrentState};
use ferrograd_nn::optim::{clip_grad_norm, Adam, Optimizer};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    Lstm,
    Gru,
    FastWeights,
}

/// Train a recurrent language model.
#[derive(Parser, Debug)]
struct Args {
    /// A folder with ptb.train.txt, ptb.valid.txt and ptb.test.txt.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The recurrent cell.
    #[arg(long, value_enum, default_value_t = Model::Lstm)]
    model: Model,
    /// Character-level instead of word-level tokens.
    #[arg(long)]
    chars: bool,
    /// Passes over the training text.
    #[arg(long, default_value_t = 4, value_parser = common::at_least_one)]
    epochs: usize,
    /// Embedding and hidden size.
    #[arg(long, default_value_t = 64, value_parser = common::at_least_one)]
    hidden: usize,
    /// Parallel streams.
    #[arg(long, default_value_t = 16, value_parser = common::at_least_one)]
    batch_size: usize,
    /// Steps of backpropagation through time.
    #[arg(long, default_value_t = 20, value_parser = common::at_least_one)]
    bptt: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.01, value_parser = common::positive)]
    lr: f64,
    /// Seed for the weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the curves go (SVG; default: target/plots/ in the workspace).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// A short run (1 epoch over part of the text, no progress bar), for CI.
    #[arg(long)]
    quick: bool,
}

#[derive(Tree, Clone)]
struct Params {
    embedding: Tensor,
    rnn: RecurrentParams,
    out_w: Tensor,
    out_b: Tensor,
}

/// Mean cross-entropy of predicting each next token of `chunk` ([B, T+1]) from the ones
/// before, starting from `state`; returns it with the final state.
fn loss(
    p: &Params,
    chunk: &Tensor,
    state: &RecurrentState,
    rnn: &RecurrentNetwork,
) -> (Tensor, RecurrentState) {
    let steps = chunk.size(1) - 1;
    let inputs = F::embedding(&chunk.narrow(1, 0, steps), &p.embedding, None);
    let (h, state) = rnn.forward(&p.rnn, &inputs, state);
    let logits = F::linear(
        &h.reshape(&[h.size(0) * steps, h.size(2)]),
        &p.out_w,
        Some(&p.out_b),
    );
    let targets = chunk
        .narrow(1, 1, steps)
        .contiguous()
        .reshape(&[chunk.size(0) * steps]);
    (F::cross_entropy(&logits, &targets), state)
}

/// Perplexity of a token stream.
fn perplexity(p: &Params, stream: &Tensor, rnn: &RecurrentNetwork, args: &Args) -> f64 {
    let batch = data::batchify(
        stream,
        args.batch_size.min(stream.numel() / (args.bptt + 1)).max(1),
    );
    let (mut total, mut count, mut state) = (0.0, 0usize, RecurrentState::default());
    let mut t = 0;
    while t + 1 < batch.size(1) {
        let len = args.bptt.min(batch.size(1) - 1 - t);
        let (l, s) = loss(p, &batch.narrow(1, t, len + 1), &state, rnn);
        total += l.item_f64() * len as f64;
        count += len;
        state = s;
        t += len;
    }
    (total / count.max(1) as f64).exp()
}

fn detach(s: &RecurrentState) -> RecurrentState {
    s.map(&mut |t| t.detach())
}

fn main() {
    common::install_panic_hook();
    run(Args::parse());
}

/// Trains as `args` say; returns (initial, final) validation perplexity and the vocabulary size.
fn run(args: Args) -> (f64, f64, usize) {
    let plot = common::plot_path(args.plot.as_deref(), "train-penn-rnn");
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| common::data_dir().join("tiny-ptb"));
    let corpus = data::load_ptb(&dir, if args.chars { Level::Char } else { Level::Word })
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1);
        });
    for (name, stream) in [("validation", &corpus.valid), ("test", &corpus.test)] {
        if stream.numel() < 2 {
            common::usage_error(format!(
                "the {name} text has {} token(s): a perplexity needs at least 2",
                stream.numel()
            ));
        }
    }
    let vocab = corpus.vocabulary.len();
    let cell = match args.model {
        Model::Lstm => Cell::Lstm,
        Model::Gru => Cell::Gru,
        Model::FastWeights => Cell::FastWeights {
            lambda: 0.9,
            eta: 0.5,
            s: 1,
        },
    };
    println!(
        "{} training tokens, vocabulary {vocab}, {:?} with {} units",
        corpus.train.numel(),
        args.model,
        args.hidden
    );
    let mut rng = Generator::new(args.seed);
    let (rnn, rnn_params) = RecurrentNetwork::new(
        cell,
        args.hidden,
        args.hidden,
        Output::All,
        &mut rng,
        DType::F32,
    );
    let bound = 1.0 / (args.hidden as f64).sqrt();
    let mut params = Params {
        embedding: Tensor::new(rng.normal(&[vocab, args.hidden], 0.0, 0.1, DType::F32)),
        rnn: rnn_params,
        out_w: Tensor::new(rng.uniform(&[vocab, args.hidden], -bound, bound, DType::F32)),
        out_b: Tensor::zeros(&[vocab], DType::F32),
    };
    let before = perplexity(&params, &corpus.valid, &rnn, &args);
    if corpus.train.numel() < 2 * args.batch_size {
        common::usage_error(format!(
            "the training text has {} tokens: too few for {} streams (--batch-size) of at least 2",
            corpus.train.numel(),
            args.batch_size
        ));
    }
    let train = data::batchify(&corpus.train, args.batch_size);
    let columns = if args.quick {
        train.size(1).min(args.bptt * 30 + 1)
    } else {
        train.size(1)
    };
    let epochs = if args.quick { 1 } else { args.epochs };
    let chunks = (columns - 1).div_ceil(args.bptt);
    let mut opt = Adam::new(args.lr);
    let df = grad(|p: &Params, chunk: &Tensor, state: &RecurrentState| loss(p, chunk, state, &rnn));
    let (mut train_ppl, mut valid_ppl) = (Vec::new(), Vec::new());
    let bar = common::progress((epochs * chunks) as u64, args.quick);
    let start = Instant::now();
    for epoch in 1..=epochs {
        let (mut state, mut total, mut count) = (RecurrentState::default(), 0.0, 0usize);
        let mut t = 0;
        while t + 1 < columns {
            let len = args.bptt.min(columns - 1 - t);
            let (g, (l, next)) = df.call(&params, (&train.narrow(1, t, len + 1), &state));
            let (g, _) = clip_grad_norm(&g, 5.0);
            params = opt.step(&params, &g);
            state = detach(&next);
            total += l.item_f64() * len as f64;
            count += len;
            t += len;
            bar.inc(1);
        }
        train_ppl.push((total / count as f64).exp());
        valid_ppl.push(perplexity(&params, &corpus.valid, &rnn, &args));
        bar.set_message(format!(
            "train ppl {:.2}, valid ppl {:.2}",
            train_ppl.last().unwrap(),
            valid_ppl.last().unwrap()
        ));
        if !common::interactive(args.quick) {
            println!(
                "epoch {epoch:3}: train perplexity {:.2}, valid perplexity {:.2} ({:.1} s)",
                train_ppl.last().unwrap(),
                valid_ppl.last().unwrap(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish();
    let test = perplexity(&params, &corpus.test, &rnn, &args);
    if let Err(e) = common::plot(
        &plot,
        "recurrent language model",
        &[common::Panel {
            y: "perplexity",
            series: &[("train", &train_ppl), ("valid", &valid_ppl)],
        }],
    ) {
        eprintln!("warning: could not write {}: {e}", plot.display());
    }
    let valid = *valid_ppl.last().expect("at least one epoch");
    println!(
        "perplexity: train {:.2}, valid {valid:.2} (from {before:.2}), test {test:.2} after {} ({:.1} s); curves in {}",
        train_ppl.last().unwrap(),
        common::epochs(epochs),
        start.elapsed().as_secs_f64(),
        plot.display()
    );
    (before, valid, vocab)
}

#[test]
fn a_quick_run_lowers_perplexity_well_below_the_vocabulary() {
    let (before, after, vocab) =
        common::run_with_temporary_plot("train-penn-rnn", &["--quick"], |argv| {
            run(Args::parse_from(argv))
        });
    assert!(
        before > 0.8 * vocab as f64,
        "an untrained model is near uniform: {before} for {vocab} words"
    );
    assert!(after < 0.5 * before, "perplexity {before} -> {after}");
}
