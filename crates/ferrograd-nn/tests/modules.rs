//! The stateful Module API: backward against the functional gradient, AutoModule against
//! plain nn (the seed's scenario), modes, clone, save and load.

use ferrograd::{grad, DType, Generator, Tensor};
use ferrograd_nn::layers::{self, BatchNorm, Dropout, Linear, MseCriterion, Sequential};
use ferrograd_nn::{functionalize, AutoCriterion, AutoModule, Criterion, Module};

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + y.abs()))
}

#[test]
fn module_backward_equals_the_functional_gradient() {
    let mut rng = Generator::new(1);
    let mut net = Sequential::new()
        .add(Linear::new(5, 7, &mut rng, DType::F64))
        .add(layers::tanh())
        .add(BatchNorm::new(7, DType::F64))
        .add(layers::PReLU::new(7, DType::F64))
        .add(Linear::new(7, 3, &mut rng, DType::F64));
    let x = Tensor::new(rng.normal(&[4, 5], 0.0, 1.0, DType::F64));
    let g_out = Tensor::new(rng.normal(&[4, 3], 0.0, 1.0, DType::F64));
    // functional gradient of <net(p, x), g_out> with respect to (p, x)
    let (f, params) = functionalize(&net);
    let ((gp, gx), _) = grad(|p: &(Vec<Tensor>, Tensor)| (&f(&p.0, &p.1) * &g_out).sum())
        .call(&(params, x.clone()), ());
    // the stateful path, scale 0.5 accumulated twice = 1.0
    let y = net.forward(&x);
    assert_eq!(y.shape(), &[4, 3]);
    net.zero_grad_parameters();
    let dx = net.backward(&x, &g_out, 0.5);
    net.backward(&x, &g_out, 0.5);
    assert!(close(&dx.to_f64_vec(), &gx.to_f64_vec(), 1e-12));
    for (a, b) in net.grad_parameters().iter().zip(&gp) {
        assert!(close(&a.to_f64_vec(), &b.to_f64_vec(), 1e-12));
    }
    assert_eq!(
        net.parameter_names(),
        vec!["0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "4.weight", "4.bias"]
    );
}

#[test]
fn evaluation_mode_turns_off_dropout_and_freezes_batch_statistics() {
    let mut net = Sequential::new()
        .add(Dropout::new(0.5, false, 3))
        .add(BatchNorm::new(2, DType::F64));
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 5.0, 5.0, 8.0], &[3, 2]);
    net.forward(&x);
    net.evaluate();
    assert!(!net.is_training() && !net.children()[0].is_training());
    let a = net.forward(&x).to_f64_vec();
    let b = net.forward(&x).to_f64_vec();
    assert_eq!(
        a, b,
        "evaluation is deterministic and does not move the statistics"
    );
    net.train();
    assert!(net.children()[1].is_training());
}

/// The seed's AutoModule scenario: Linear 24->848, ReLU written as 0.5 (|y| + y),
/// Linear 848->24, MSE; input uniform(-5, 5), target exp(input); 1000 SGD steps at lr 0.001.
#[test]
fn auto_modules_train_like_the_plain_nn_version() {
    let mut rng = Generator::new(2024);
    let l1 = Linear::new(24, 848, &mut rng, DType::F64);
    let l2 = Linear::new(848, 24, &mut rng, DType::F64);
    let (w1, b1) = (l1.parameters()[0].clone(), l1.parameters()[1].clone());
    let initial = w1.to_f64_vec();
    let (w2, b2) = (l2.parameters()[0].clone(), l2.parameters()[1].clone());
    let mut plain = Sequential::new().add(l1).add(layers::relu()).add(l2);
    let linear_relu = |x: &Tensor, w: &Tensor, b: &Tensor| {
        let y = w.mv(x) + b;
        (y.abs() + &y) * 0.5
    };
    let linear = |x: &Tensor, w: &Tensor, b: &Tensor| w.mv(x) + b;
    let mut auto = Sequential::new()
        .add(AutoModule::new(
            "AutoLinearReLU",
            linear_relu,
            w1.clone(),
            b1.clone(),
        ))
        .add(AutoModule::new(
            "AutoLinear",
            linear,
            w2.clone(),
            b2.clone(),
        ));
    // the same in optimize mode, each module driven by its own forward and backward as the
    // seed's containers drove theirs (a container traces its children's functions instead)
    let mut c1 = AutoModule::new("AutoLinearReLU", linear_relu, w1, b1).optimize(true);
    let mut c2 = AutoModule::new("AutoLinear", linear, w2, b2).optimize(true);
    let mse = |x: &Tensor, t: &Tensor| (x - t).square().sum() * (1.0 / x.numel() as f64);
    let auto_mse = AutoCriterion::new("AutoMSE", mse);
    let compiled_mse = AutoCriterion::new("AutoMSE", mse).optimize(true);
    let plain_mse = MseCriterion::default();
    let multiplier = rng.uniform(&[24], 0.0, 1.0, DType::F64);
    for _ in 0..1000 {
        let input = Tensor::new(rng.uniform(&[24], -5.0, 5.0, DType::F64).mul(&multiplier));
        let target = input.exp();
        for (model, criterion) in [
            (&mut plain, &plain_mse as &dyn Criterion),
            (&mut auto, &auto_mse as &dyn Criterion),
        ] {
            model.zero_grad_parameters();
            let out = model.forward(&input);
            criterion.forward(&out, &target);
            let g = criterion.backward(&out, &target);
            model.backward(&input, &g, 1.0);
            model.update_parameters(0.001);
        }
        c1.zero_grad_parameters();
        c2.zero_grad_parameters();
        let h = c1.forward(&input);
        let out = c2.forward(&h);
        compiled_mse.forward(&out, &target);
        let g = compiled_mse.backward(&out, &target);
        let g = c2.backward(&h, &g, 1.0);
        c1.backward(&input, &g, 1.0);
        c1.update_parameters(0.001);
        c2.update_parameters(0.001);
    }
    let mut worst = 0.0f64;
    for (a, b) in plain.parameters().iter().zip(auto.parameters()) {
        for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(worst < 1e-6, "weights differ by {worst}");
    let compiled = [c1.parameters(), c2.parameters()].concat();
    for (a, b) in auto.parameters().iter().zip(&compiled) {
        for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!((x - y).abs() < 1e-9, "optimize mode: {x} vs {y}");
        }
    }
    for m in [&c1, &c2] {
        let (forward, backward) = m.stats().unwrap();
        assert_eq!((forward.hits, backward.hits), (999, 999));
    }
    let (forward, backward) = compiled_mse.stats().unwrap();
    assert_eq!((forward.hits, backward.hits), (999, 999));
    // and training moved the weights well beyond that tolerance
    let moved = plain.parameters()[0]
        .to_f64_vec()
        .iter()
        .zip(&initial)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(moved > 1e-2, "weights moved only {moved}");
}

#[test]
fn clones_are_independent_and_keep_their_function() {
    let double = |x: &Tensor, w: &Tensor, b: &Tensor| (x * w + b) * 2.0;
    let mut a = AutoModule::new(
        "Double",
        double,
        Tensor::ones(&[2], DType::F64),
        Tensor::zeros(&[2], DType::F64),
    );
    let mut b = a.box_clone();
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    a.set_parameters(vec![
        Tensor::full(&[2], 3.0, DType::F64),
        Tensor::zeros(&[2], DType::F64),
    ]);
    assert_eq!(a.forward(&x).to_vec::<f64>(), vec![6.0, 12.0]);
    assert_eq!(b.forward(&x).to_vec::<f64>(), vec![2.0, 4.0]);
    assert_eq!(b.name(), "Double");
}

#[test]
fn modules_save_and_load_parameters_and_buffers() {
    let dir = std::env::temp_dir().join(format!("ferrograd-nn-modules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.safetensors");
    let mut rng = Generator::new(5);
    let mut net = Sequential::new()
        .add(Linear::new(3, 4, &mut rng, DType::F32))
        .add(BatchNorm::new(4, DType::F32));
    net.forward(&Tensor::new(rng.normal(&[8, 3], 1.0, 2.0, DType::F32))); // moves the running stats
    net.save(&path).unwrap();
    let mut other = Sequential::new()
        .add(Linear::new(3, 4, &mut rng, DType::F32))
        .add(BatchNorm::new(4, DType::F32));
    other.load(&path).unwrap();
    for (a, b) in net.parameters().iter().zip(other.parameters()) {
        assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
    }
    assert_eq!(
        net.buffers()[0].1.to_vec::<f32>(),
        other.buffers()[0].1.to_vec::<f32>()
    );
    net.evaluate();
    other.evaluate();
    let x = Tensor::new(rng.normal(&[2, 3], 0.0, 1.0, DType::F32));
    assert_eq!(
        net.forward(&x).to_vec::<f32>(),
        other.forward(&x).to_vec::<f32>()
    );
    // a module of another shape refuses the file with a typed error
    let mut wrong = Sequential::new()
        .add(Linear::new(3, 5, &mut rng, DType::F32))
        .add(BatchNorm::new(5, DType::F32));
    let err = wrong.load(&path).unwrap_err().to_string();
    assert!(
        err.contains("0.weight") && err.contains("[4, 3]") && err.contains("[5, 3]"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A user's own module: y = a ⊙ x² + b, written once as `forward_with`.
#[derive(Clone)]
struct Quadratic {
    state: ferrograd_nn::ModuleState,
}

impl Module for Quadratic {
    fn name(&self) -> String {
        "Quadratic".into()
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        &p[0] * &x.square() + &p[1]
    }
    fn state(&self) -> &ferrograd_nn::ModuleState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut ferrograd_nn::ModuleState {
        &mut self.state
    }
    fn box_clone(&self) -> Box<dyn Module> {
        Box::new(self.clone())
    }
}

#[test]
fn a_users_module_gets_backward_and_functionalize_for_free() {
    let a = Tensor::from_vec(vec![2.0f64, 3.0], &[2]);
    let b = Tensor::from_vec(vec![0.5f64, 0.5], &[2]);
    let mut m = Quadratic {
        state: ferrograd_nn::ModuleState::new(vec![("a", a), ("b", b)]),
    };
    let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2]);
    assert_eq!(m.forward(&x).to_f64_vec(), vec![2.5, 12.5]);
    // dy/dx = 2 a x, dy/da = x², dy/db = 1
    let dx = m.backward(&x, &Tensor::ones(&[2], DType::F64), 1.0);
    assert_eq!(dx.to_f64_vec(), vec![4.0, -12.0]);
    assert_eq!(m.grad_parameters()[0].to_f64_vec(), vec![1.0, 4.0]);
    assert_eq!(m.grad_parameters()[1].to_f64_vec(), vec![1.0, 1.0]);
    let (f, params) = functionalize(&m);
    let (g, _) = grad(|p: &Vec<Tensor>| f(p, &x).sum()).call(&params, ());
    assert_eq!(g[0].to_f64_vec(), vec![1.0, 4.0]);
    // inside a Sequential with built-in layers
    let mut rng = Generator::new(9);
    let mut net = Sequential::new()
        .add(m)
        .add(Linear::new(2, 1, &mut rng, DType::F64));
    assert_eq!(net.forward(&x).shape(), &[1]);
}

#[test]
fn criteria_functionalize_and_scale_by_the_incoming_gradient() {
    let mse = ferrograd_nn::functionalize_criterion(std::sync::Arc::new(MseCriterion::default()));
    let p = Tensor::from_vec(vec![1.0f64, 3.0], &[2]);
    let t = Tensor::from_vec(vec![0.0f64, 0.0], &[2]);
    // d/dp [3 * mse(p, t)] = 3 * 2 (p - t) / 2
    let (g, _) = grad(|p: &Tensor| mse(p, &t) * 3.0).call(&p, ());
    assert_eq!(g.to_f64_vec(), vec![3.0, 9.0]);
    // the criterion's own backward is the unscaled gradient, its forward the value
    assert_eq!(
        MseCriterion::default().backward(&p, &t).to_f64_vec(),
        vec![1.0, 3.0]
    );
    assert_eq!(MseCriterion::default().forward(&p, &t).item::<f64>(), 5.0);
    let pc = layers::ParallelCriterion::new()
        .add(MseCriterion::default(), 0.5)
        .add(MseCriterion::default(), 2.0);
    let both = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0], &[4, 1]);
    let zeros = Tensor::zeros(&[4, 1], DType::F64);
    // 0.5 * mean(1, 9) + 2 * mean(4, 4)
    assert_eq!(
        pc.forward(&both, &zeros).item::<f64>(),
        0.5 * 5.0 + 2.0 * 4.0
    );
}

#[test]
fn auto_modules_save_and_load() {
    let dir = std::env::temp_dir().join(format!("ferrograd-nn-auto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("auto.safetensors");
    let f = |x: &Tensor, w: &Tensor, b: &Tensor| w.mv(x) + b;
    let a = AutoModule::new(
        "AutoLinear",
        f,
        Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]),
        Tensor::from_vec(vec![5.0f32, 6.0], &[2]),
    );
    a.save(&path).unwrap();
    let mut b = AutoModule::new(
        "AutoLinear",
        f,
        Tensor::zeros(&[2, 2], DType::F32),
        Tensor::zeros(&[2], DType::F32),
    );
    b.load(&path).unwrap();
    let x = Tensor::from_vec(vec![1.0f32, 1.0], &[2]);
    assert_eq!(b.forward(&x).to_vec::<f32>(), vec![8.0, 13.0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every test above again, with every `grad` in optimize mode and each replay checked bit
/// for bit against direct mode.
#[test]
fn the_suite_passes_in_optimize_check_mode() {
    ferrograd::rerun_tests_in_check_mode("the_suite_passes_in_optimize_check_mode");
}

/// A net with batch normalization and dropout, built the same way from the same seeds.
fn stateful_net() -> Sequential {
    let mut rng = Generator::new(4);
    let mut net = Sequential::new();
    for i in 0..4 {
        net = net
            .add(Linear::new(6, 6, &mut rng, DType::F64))
            .add(BatchNorm::new(6, DType::F64))
            .add(layers::tanh())
            .add(Dropout::new(0.3, false, 10 + i));
    }
    net.add(Linear::new(6, 2, &mut rng, DType::F64))
}

#[test]
fn checkpointed_segments_give_the_same_steps_with_dropout_and_batch_norm() {
    let plain = stateful_net();
    let checkpointed = stateful_net().checkpoint_sequential(3);
    assert_eq!(checkpointed.children().len(), 3);
    assert_eq!(checkpointed.parameters().len(), plain.parameters().len());
    assert!(
        checkpointed.parameter_names()[0].starts_with("0.0."),
        "{:?}",
        checkpointed.parameter_names()
    );
    // in optimize mode too: the statistics and the generators make it run in direct mode
    let optimized = stateful_net().checkpoint_sequential(2);
    let x = Tensor::new(Generator::new(5).normal(&[8, 6], 0.0, 1.0, DType::F64));
    let step = |net: &Sequential, optimize: bool| {
        let loss = |p: &Vec<Tensor>, x: &Tensor| net.forward_with(p, x).square().mean();
        grad(loss).optimize(optimize).call(&net.parameters(), (&x,))
    };
    // three steps: the masks (drawn again by each recomputation) and the running statistics
    // (updated once per forward, not again when recomputed) stay in step
    let compiled = grad(|p: &Vec<Tensor>, x: &Tensor| optimized.forward_with(p, x).square().mean())
        .optimize(true);
    for _ in 0..3 {
        let (want, l0) = step(&plain, false);
        let results = [
            step(&checkpointed, false),
            compiled.call(&optimized.parameters(), (&x,)),
        ];
        for (got, l) in results {
            assert_eq!(l.item::<f64>(), l0.item::<f64>());
            for (a, b) in got.iter().zip(&want) {
                assert_eq!(a.to_vec::<f64>(), b.to_vec::<f64>());
            }
        }
    }
    assert_eq!(compiled.stats().hits, 0, "{:?}", compiled.stats());
    let (a, b) = (plain.buffers(), checkpointed.buffers());
    assert_eq!(a.len(), 8);
    for ((_, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x.to_vec::<f64>(), y.to_vec::<f64>());
    }
}

#[test]
fn multihead_attention_layer_is_the_functional_attention_and_learns() {
    use ferrograd_nn::functional::{self as F, AttentionMask, AttentionParams};
    let mut rng = Generator::new(9);
    let layer = layers::MultiheadAttention::new(8, 2, true, &mut rng, DType::F64);
    assert_eq!(layer.parameter_names().len(), 8);
    let x = Tensor::new(rng.normal(&[2, 5, 8], 0.0, 1.0, DType::F64));
    let p = layer.parameters();
    let params = AttentionParams {
        in_weights: [&p[0], &p[1], &p[2]],
        in_biases: Some([&p[3], &p[4], &p[5]]),
        out_weight: &p[6],
        out_bias: Some(&p[7]),
    };
    let want = F::multi_head_attention(&x, &x, &x, &params, 2, AttentionMask::Causal);
    assert_eq!(
        layer.forward_with(&p, &x).to_vec::<f64>(),
        want.to_vec::<f64>()
    );
    // causal: the first position's output depends only on the first input
    let mut y = x.to_vec::<f64>();
    y[8..40].iter_mut().for_each(|v| *v += 1.0);
    let changed = Tensor::from_vec(y, &[2, 5, 8]);
    let (a, b) = (layer.forward_with(&p, &x), layer.forward_with(&p, &changed));
    assert_eq!(
        a.narrow(1, 0, 1).to_vec::<f64>(),
        b.narrow(1, 0, 1).to_vec::<f64>()
    );
    // a few Adam steps copy the input through attention
    let loss = |p: &Vec<Tensor>, x: &Tensor| (&layer.forward_with(p, x) - x).square().mean();
    let mut opt = ferrograd_nn::optim::Adam::new(0.05);
    let mut params = p.clone();
    let first = loss(&params, &x).item::<f64>();
    for _ in 0..30 {
        let (g, _) = grad(loss).call(&params, (&x,));
        params = ferrograd_nn::optim::Optimizer::step(&mut opt, &params, &g);
    }
    let last = loss(&params, &x).item::<f64>();
    assert!(last < first / 2.0, "{first} -> {last}");
}

/// An error inside a module's layer is raised on the layer's line, in the library: its
/// message names the layer and the user's `forward` or `backward` call.
#[test]
fn an_error_inside_a_layer_names_the_layer_and_the_users_call() {
    let message = |f: &mut dyn FnMut()| {
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let mut rng = Generator::new(0);
    let mut net = Sequential::new()
        .add(Linear::new(3, 4, &mut rng, DType::F64))
        .add(layers::tanh())
        .add(Linear::new(5, 2, &mut rng, DType::F64));
    let x = Tensor::zeros(&[2, 3], DType::F64);
    let line = line!() + 1;
    let m = message(&mut || drop(net.forward(&x)));
    assert!(m.contains("linear: input [2, 4] has 4 features"), "{m}");
    assert!(
        m.contains(&format!(
            ", in layer 2 of a Sequential, in forward called at {}:{line}:",
            file!()
        )),
        "{m}"
    );
    // through `functionalize` and `grad`: the layer still named
    let (f, p) = functionalize(&net);
    let m =
        message(&mut || drop(grad(|p: &Vec<Tensor>, x: &Tensor| f(p, x).sum()).call(&p, (&x,))));
    assert!(m.contains(", in layer 2 of a Sequential"), "{m}");
    // a wrong output gradient: the user's line, once
    let mut one = Linear::new(3, 4, &mut rng, DType::F64);
    one.forward(&x);
    let line = line!() + 1;
    let m = message(&mut || drop(one.backward(&x, &Tensor::zeros(&[2, 7], DType::F64), 1.0)));
    assert!(
        m.contains("the output gradient has shape [2, 7], the output has [2, 4]"),
        "{m}"
    );
    assert!(m.contains(&format!("(at {}:{line}:", file!())), "{m}");
    assert!(!m.contains("in backward called at"), "{m}");
    // a criterion's error: the user's call
    let mse = MseCriterion::default();
    let line = line!() + 1;
    let m = message(&mut || drop(mse.forward(&x, &Tensor::zeros(&[3], DType::F64))));
    assert!(m.contains(&format!("{}:{line}:", file!())), "{m}");
}
