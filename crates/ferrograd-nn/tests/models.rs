//! Gradcheck for every model primitive, module primitive and loss, and their documented
//! behaviours (state, outputs, running statistics).

use ferrograd::{grad, gradcheck, DType, Generator, Tensor};
use ferrograd_nn::loss;
use ferrograd_nn::models::{
    self, Activation, Cell, NeuralNetworkOptions, Output, RecurrentNetwork, RecurrentState,
    SpatialNetworkOptions,
};
use ferrograd_nn::primitives::{LayerNormalization, MaskedBatchNormalization, SoftAttention};
use ferrograd_nn::util;

#[path = "../benches/shared/transformer.rs"]
mod transformer;

fn randn(rng: &mut Generator, shape: &[usize]) -> Tensor {
    Tensor::new(rng.normal(shape, 0.0, 1.0, DType::F64))
}

#[test]
fn neural_network_with_batch_norm_and_classifier() {
    let mut rng = Generator::new(1);
    let opt = NeuralNetworkOptions {
        input_features: 4,
        hidden_features: vec![6, 3],
        activations: Activation::Tanh,
        classifier: true,
        batch_normalization: true,
        dtype: DType::F64,
        ..Default::default()
    };
    let (model, params) = models::neural_network(&opt, &mut rng);
    assert_eq!(
        model.parameter_names(),
        vec!["1.weight", "1.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    );
    let x = randn(&mut rng, &[5, 2, 2]); // reshaped to [5, 4]
    let y = model.forward(&params, &x);
    assert_eq!(y.shape(), &[5, 3]);
    let report = gradcheck(
        |p: &Vec<Tensor>, x: &Tensor| model.forward(p, x).square().sum(),
        &params,
        (&x,),
        1e-6,
    );
    assert!(report.passed(), "{report}");
}

#[test]
fn neural_network_dropout_follows_the_mode() {
    let mut rng = Generator::new(2);
    let opt = NeuralNetworkOptions {
        input_features: 4,
        hidden_features: vec![50],
        dropout_probs: vec![0.5],
        dtype: DType::F64,
        ..Default::default()
    };
    let (mut model, params) = models::neural_network(&opt, &mut rng);
    let x = randn(&mut rng, &[3, 4]);
    assert_ne!(
        model.forward(&params, &x).to_f64_vec(),
        model.forward(&params, &x).to_f64_vec()
    );
    model.evaluate();
    assert_eq!(
        model.forward(&params, &x).to_f64_vec(),
        model.forward(&params, &x).to_f64_vec()
    );
}

#[test]
fn spatial_network_and_alexnet() {
    let mut rng = Generator::new(3);
    let opt = SpatialNetworkOptions {
        kernel_size: 3,
        input_features: 2,
        hidden_features: vec![3, 2],
        poolings: vec![2, 1],
        dtype: DType::F64,
        ..Default::default()
    };
    let (model, params) = models::spatial_network(&opt, &mut rng);
    let x = randn(&mut rng, &[2, 2, 6, 6]);
    assert_eq!(model.forward(&params, &x).shape(), &[2, 2, 3, 3]);
    let report = gradcheck(
        |p: &Vec<Tensor>, x: &Tensor| model.forward(p, x).tanh().sum(),
        &params,
        (&x,),
        1e-6,
    );
    assert!(report.passed(), "{report}");
    let mlp = NeuralNetworkOptions {
        hidden_features: vec![5, 4],
        dtype: DType::F64,
        ..Default::default()
    };
    let (net, params) = models::alexnet(2, 6, 6, &opt, &mlp, &mut rng);
    let y = net.forward(&params, &x);
    assert_eq!(y.shape(), &[2, 4]);
    let report = gradcheck(
        |p: &Vec<Tensor>, x: &Tensor| net.forward(p, x).log_softmax(1).sum(),
        &params,
        (&x,),
        1e-6,
    );
    assert!(report.passed(), "{report}");
}

#[test]
fn recurrent_networks_of_every_cell() {
    let cells = [
        Cell::Plain,
        Cell::Lstm,
        Cell::Gru,
        Cell::FastWeights {
            lambda: 0.9,
            eta: 0.5,
            s: 1,
        },
    ];
    for cell in cells {
        for output in [Output::Last, Output::All] {
            let mut rng = Generator::new(4);
            let (rnn, params) = RecurrentNetwork::new(cell, 3, 4, output, &mut rng, DType::F64);
            let x = randn(&mut rng, &[2, 3, 3]);
            let (y, state) = rnn.forward(&params, &x, &RecurrentState::default());
            let want: &[usize] = if output == Output::Last {
                &[2, 4]
            } else {
                &[2, 3, 4]
            };
            assert_eq!(y.shape(), want, "{cell:?}");
            assert_eq!(state.c.is_some(), cell == Cell::Lstm);
            // running two halves with the state in between equals one run of the whole
            let (_, s1) = rnn.forward(&params, &x.narrow(1, 0, 2), &RecurrentState::default());
            let (y2, _) = rnn.forward(&params, &x.narrow(1, 2, 1), &s1);
            let last = if output == Output::Last {
                y.clone()
            } else {
                y.select(1, 2)
            };
            let y2 = if output == Output::Last {
                y2
            } else {
                y2.select(1, 0)
            };
            for (a, b) in last.to_f64_vec().iter().zip(y2.to_f64_vec()) {
                assert!((a - b).abs() < 1e-12, "{cell:?}: state does not carry over");
            }
            let f = |p: &models::RecurrentParams, x: &Tensor| {
                rnn.forward(p, x, &RecurrentState::default()).0.sum()
            };
            let report = gradcheck(f, &params, (&x,), 1e-6);
            assert!(report.passed(), "{cell:?} {output:?}: {report}");
        }
    }
}

#[test]
fn module_primitives() {
    let mut rng = Generator::new(5);
    let (ln, p) = LayerNormalization::new(4, DType::F64);
    let x = randn(&mut rng, &[3, 4]);
    let y = ln.forward(&p, &x);
    for row in y.to_f64_vec().chunks(4) {
        let m: f64 = row.iter().sum::<f64>() / 4.0;
        assert!(m.abs() < 1e-12);
    }
    let report = gradcheck(
        |p: &ferrograd_nn::primitives::GainBias, x: &Tensor| ln.forward(p, x).sin().sum(),
        &p,
        (&x,),
        1e-6,
    );
    assert!(report.passed(), "{report}");

    let (mut mbn, p) = MaskedBatchNormalization::new(3, DType::F64);
    let x = randn(&mut rng, &[4, 2, 3]);
    let mask = Tensor::new(rng.bernoulli(&[4, 2, 3], 0.7, DType::Bool));
    let before = mbn.running();
    let y = mbn.forward(&p, &x, &mask);
    assert_eq!(y.shape(), &[4, 2, 3]);
    assert_ne!(
        mbn.running().0.to_f64_vec(),
        before.0.to_f64_vec(),
        "statistics move in training"
    );
    let report = gradcheck(
        |p: &ferrograd_nn::primitives::GainBias, x: &Tensor| mbn.forward(p, x, &mask).sin().sum(),
        &p,
        (&x,),
        1e-6,
    );
    assert!(report.passed(), "{report}");
    mbn.training = false;
    let held = mbn.running();
    mbn.forward(&p, &x, &mask);
    assert_eq!(
        mbn.running().0.to_f64_vec(),
        held.0.to_f64_vec(),
        "statistics hold in evaluation"
    );

    let (att, mut p) = SoftAttention::new(3, 4, 5, DType::F64);
    p.w_h = randn(&mut rng, &[3, 5]);
    let subject = randn(&mut rng, &[2, 4, 5]);
    let h = randn(&mut rng, &[2, 3]);
    let (a, focus) = att.forward(&p, &subject, &h);
    assert_eq!(
        (a.shape(), focus.shape()),
        (&[2usize, 4][..], &[2usize, 5][..])
    );
    for row in focus.to_f64_vec().chunks(5) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    let report = gradcheck(
        |p: &ferrograd_nn::primitives::AttentionParams, s: &Tensor| {
            att.forward(p, s, &h).0.square().sum()
        },
        &p,
        (&subject,),
        1e-6,
    );
    assert!(report.passed(), "{report}");
    let (a1, _) = att.forward(&p, &subject.select(0, 1), &h.select(0, 1));
    assert_eq!(a1.to_f64_vec(), a.select(0, 1).to_f64_vec());
}

#[test]
fn losses() {
    let mut rng = Generator::new(6);
    let out = randn(&mut rng, &[3, 4]);
    let target = util::one_hot(&Tensor::from_vec(vec![1i64, 3, 0], &[3]), 4, DType::F64);
    let check = |name: &str, f: &dyn Fn(&Tensor) -> Tensor| {
        let report = gradcheck(|x: &Tensor| f(x), &out, (), 1e-6);
        assert!(report.passed(), "{name}: {report}");
    };
    check("log_multinomial", &|x| {
        loss::log_multinomial(&x.log_softmax(1), &target)
    });
    check("log_bce", &|x| {
        loss::log_bce(&x.sigmoid(), &target, Some(1e-6))
    });
    check("cross_entropy", &|x| {
        loss::cross_entropy_onehot_sum(x, &target).0
    });
    check("binary_cross_entropy", &|x| {
        loss::bce_with_logits_sum(x, &target).0
    });
    check("least_squares", &|x| loss::least_squares(x, &target).0);
    let scores = Tensor::from_vec(vec![0.3f64, -0.2, 1.4, 0.1], &[4]);
    let labels = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 0.0], &[4]);
    let report = gradcheck(
        |x: &Tensor| loss::margin(x, &labels, 1.0).0,
        &scores,
        (),
        1e-6,
    );
    assert!(report.passed(), "margin: {report}");
    // cross-entropy is per row: each row's log-softmax sums to one in probability
    let (_, y_hat) = loss::cross_entropy_onehot_sum(&out, &target);
    for row in y_hat.exp().to_f64_vec().chunks(4) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    // binary cross-entropy is stable for large logits
    let big = Tensor::from_vec(vec![100.0f64, -100.0], &[2]);
    let (l, _) = loss::bce_with_logits_sum(&big, &Tensor::from_vec(vec![0.0f64, 1.0], &[2]));
    assert!((l.item::<f64>() - 200.0).abs() < 1e-9);
    // the margin loss by hand: positives {0.3, 1.4}, negatives {-0.2, 0.1}
    let want: f64 = [0.3f64, 1.4]
        .iter()
        .flat_map(|p| [-0.2f64, 0.1].map(move |n| (1.0 - (p - n)).max(0.0)))
        .sum();
    assert!((loss::margin(&scores, &labels, 1.0).0.item::<f64>() - want).abs() < 1e-12);
}

#[test]
fn utilities() {
    let labels = Tensor::from_vec(vec![2i64, 0], &[2]);
    assert_eq!(
        util::one_hot(&labels, 3, DType::F32).to_vec::<f32>(),
        vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
    );
    // [B, T] labels give [B, T, C]
    let labels = Tensor::from_vec(vec![1i64, 0, 2, 2, 1, 0], &[2, 3]);
    let y = util::one_hot(&labels, 3, DType::F64);
    assert_eq!(y.shape(), &[2, 3, 3]);
    assert_eq!(y.argmax(2, false).to_vec::<i64>(), labels.to_vec::<i64>());
    let tree = (
        Tensor::zeros(&[2], DType::F32),
        Tensor::zeros(&[1], DType::I64),
    );
    let cast = util::cast(&tree, DType::F64);
    assert_eq!((cast.0.dtype(), cast.1.dtype()), (DType::F64, DType::I64));
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    let lse = util::log_sum_exp(&x).to_f64_vec();
    assert!((lse[0] - (1f64.exp() + 2f64.exp()).ln()).abs() < 1e-12);
    assert_eq!(util::log_softmax(&x).shape(), &[2, 2]);
    let table = Tensor::from_vec(vec![0.0f64, 1.0, 10.0, 11.0], &[2, 2]);
    assert_eq!(
        util::lookup(&table, &Tensor::from_vec(vec![1i64, 1, 0], &[3])).to_f64_vec(),
        vec![10.0, 11.0, 10.0, 11.0, 0.0, 1.0]
    );
}

#[test]
fn batch_normalized_lstm() {
    let mut rng = Generator::new(7);
    let (mut rnn, params) =
        RecurrentNetwork::lstm_with_batch_norm(3, 4, Output::All, 2, &mut rng, DType::F64);
    let x = randn(&mut rng, &[5, 3, 3]);
    let (y, state) = rnn.forward(&params, &x, &RecurrentState::default());
    assert_eq!(y.shape(), &[5, 3, 4]);
    assert!(state.c.is_some());
    let f = |p: &models::RecurrentParams, x: &Tensor| {
        rnn.forward(p, x, &RecurrentState::default()).0.sin().sum()
    };
    let report = gradcheck(f, &params, (&x,), 1e-6);
    assert!(report.passed(), "{report}");
    // evaluation uses (and keeps) the running statistics: deterministic across calls
    rnn.training = false;
    let a = rnn
        .forward(&params, &x, &RecurrentState::default())
        .0
        .to_f64_vec();
    let b = rnn
        .forward(&params, &x, &RecurrentState::default())
        .0
        .to_f64_vec();
    assert_eq!(a, b);
}

/// The message of `f`'s panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("a panic");
    err.downcast::<String>().map(|m| *m).unwrap_or_default()
}

/// A state carried over from a batch of another size, or the parameters of another
/// network, are refused by name at the caller's line (they failed inside a `cat` or a
/// `matmul`, naming neither); a batch-normalized LSTM's parameters without their
/// normalization are refused (they ran an LSTM without it).
#[test]
fn recurrent_networks_refuse_a_state_or_params_that_do_not_fit() {
    let mut rng = Generator::new(8);
    let x4 = randn(&mut rng, &[4, 3, 2]);
    let x2 = randn(&mut rng, &[2, 3, 2]);
    let here = format!("(at {}:", file!());
    for (cell, k) in [(Cell::Plain, 1), (Cell::Lstm, 4), (Cell::Gru, 2)] {
        let (net, params) = RecurrentNetwork::new(cell, 2, 5, Output::Last, &mut rng, DType::F64);
        let (_, state) = net.forward(&params, &x4, &RecurrentState::default());
        let message = panic_message(|| drop(net.forward(&params, &x2, &state)));
        assert!(
            message.contains("RecurrentNetwork: state.h must be [2, 5] for a batch of 2")
                && message.contains("got [4, 5]")
                && message.contains(&here),
            "{cell:?}: {message}"
        );
        let (wide, _) = RecurrentNetwork::new(cell, 2, 6, Output::Last, &mut rng, DType::F64);
        let message = panic_message(|| drop(wide.forward(&params, &x4, &Default::default())));
        assert!(
            message.contains(&format!("params.w must be [8, {}]", 6 * k))
                && message.contains(&format!("got [7, {}]", 5 * k))
                && message.contains(&here),
            "{cell:?}: {message}"
        );
    }
    let (gru, mut params) =
        RecurrentNetwork::new(Cell::Gru, 2, 5, Output::Last, &mut rng, DType::F64);
    params.v = None;
    let message = panic_message(|| drop(gru.forward(&params, &x4, &Default::default())));
    assert!(
        message.contains(
            "params.v must be [7, 5] for a GRU of 2 input and 5 hidden features, got none"
        ),
        "{message}"
    );
    let (normed, params) =
        RecurrentNetwork::lstm_with_batch_norm(2, 5, Output::Last, 2, &mut rng, DType::F64);
    let (plain, mut bare) =
        RecurrentNetwork::new(Cell::Lstm, 2, 5, Output::Last, &mut rng, DType::F64);
    let message = panic_message(|| drop(plain.forward(&params, &x4, &Default::default())));
    assert!(
        message
            .contains("params.batch_norm is given for an LSTM, which has no batch normalization"),
        "{message}"
    );
    bare.batch_norm = None;
    let message = panic_message(|| drop(normed.forward(&bare, &x4, &Default::default())));
    assert!(
        message.contains("params.batch_norm.gate_gain must be [20] for a batch-normalized LSTM"),
        "{message}"
    );
}

/// Every test above again, with every `grad` in optimize mode and each replay checked bit
/// for bit against direct mode.
#[test]
fn the_suite_passes_in_optimize_check_mode() {
    ferrograd::rerun_tests_in_check_mode("the_suite_passes_in_optimize_check_mode");
}

#[test]
fn masked_batch_normalization_replays_in_optimize_mode_with_moving_statistics() {
    // two layers with their own statistics: one trained by replays, one in direct mode; the
    // losses, gradients and statistics agree bit for bit at every step
    let (compiled_layer, p) = MaskedBatchNormalization::new(3, DType::F64);
    let (direct_layer, _) = MaskedBatchNormalization::new(3, DType::F64);
    fn loss(
        layer: &MaskedBatchNormalization,
    ) -> impl Fn(&ferrograd_nn::primitives::GainBias, &Tensor, &Tensor) -> Tensor + '_ {
        move |p, x, mask| layer.forward(p, x, mask).sin().sum()
    }
    let compiled = grad(loss(&compiled_layer)).optimize(true);
    let direct = grad(loss(&direct_layer));
    let mut rng = Generator::new(17);
    let bits = |t: &Tensor| {
        t.to_f64_vec()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    for _ in 0..4 {
        let x = randn(&mut rng, &[4, 2, 3]);
        let mask = Tensor::new(rng.bernoulli(&[4, 2, 3], 0.7, DType::Bool));
        let (g1, l1) = compiled.call(&p, (&x, &mask));
        let (g2, l2) = direct.call(&p, (&x, &mask));
        assert_eq!(bits(&l1), bits(&l2));
        assert_eq!(bits(&g1.gain), bits(&g2.gain));
        assert_eq!(bits(&g1.bias), bits(&g2.bias));
        let (a, b) = (compiled_layer.running(), direct_layer.running());
        assert_eq!(bits(&a.0), bits(&b.0), "running means");
        assert_eq!(bits(&a.1), bits(&b.1), "running deviations");
    }
    let s = compiled.stats();
    assert_eq!((s.captures, s.hits, s.fallbacks), (1, 3, 0), "{s:?}");
}

#[test]
fn the_margin_loss_replays_for_any_targets() {
    // the pairs are masked, not selected, so new targets need no new capture
    let f = |x: &Tensor, labels: &Tensor| loss::margin(x, labels, 1.0).0;
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(8);
    let x = randn(&mut rng, &[6]);
    for _ in 0..5 {
        let labels = Tensor::new(rng.bernoulli(&[6], 0.5, DType::F64));
        let (g1, l1) = df.call(&x, (&labels,));
        let (g2, l2) = grad(f).call(&x, (&labels,));
        assert_eq!(l1.to_f64_vec(), l2.to_f64_vec());
        assert_eq!(g1.to_f64_vec(), g2.to_f64_vec());
    }
    let s = df.stats();
    assert_eq!((s.captures, s.hits), (1, 4), "{s:?}");
}

/// A two-layer pre-norm transformer decoder (token and position embeddings, causal
/// multi-head attention, a GELU MLP, layer norms, a linear head and cross-entropy) trained
/// by eight AdamW steps in f64 from deterministic parameters: each step's loss and the sum
/// of |gradient| over every parameter agree with PyTorch's (`benches/pytorch_transformer.py`
/// builds the same model and prints them), in direct mode and in optimize mode.
#[test]
fn a_small_transformer_trained_with_adamw_tracks_pytorch() {
    use ferrograd_nn::optim::{Adam, Optimizer};
    let gpt = transformer::Gpt {
        vocab: 11,
        width: 16,
        len: 8,
        batch: 4,
        heads: 2,
        layers: 2,
        dtype: DType::F64,
    };
    let model = move |p: &Vec<Tensor>, idx: &Tensor, tgt: &Tensor| gpt.loss(p, idx, tgt);
    let (idx, tgt) = gpt.tokens();
    // (loss, Σ|gradient|) at each step, from benches/pytorch_transformer.py
    let torch = [
        (2.3835705146973902, 34.58968048639795),
        (2.1584555672910017, 19.687892804652826),
        (2.0439442664734475, 22.77084011011717),
        (1.9801399148087637, 23.66344744403397),
        (1.8962438409419689, 21.396999878234794),
        (1.806127153328905, 15.344648664823907),
        (1.7392217352581847, 14.998546522999227),
        (1.6862739308450012, 18.457685463149822),
    ];
    for optimize in [false, true] {
        let df = grad(model).optimize(optimize);
        let mut p = gpt.parameters();
        let mut adamw = Adam::adamw(0.01).weight_decay(0.1);
        for (step, (loss, gsum)) in torch.into_iter().enumerate() {
            let (g, got) = df.call(&p, (&idx, &tgt));
            let got = (
                got.item::<f64>(),
                g.iter().map(|t| t.abs().sum().item::<f64>()).sum::<f64>(),
            );
            assert!(
                (got.0 - loss).abs() <= 1e-12 * loss && (got.1 - gsum).abs() <= 1e-11 * gsum,
                "optimize {optimize}, step {step}: (loss, Σ|g|) {got:?}, PyTorch ({loss}, {gsum})"
            );
            p = adamw.step(&p, &g);
        }
    }
}
