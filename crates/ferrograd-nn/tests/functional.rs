//! Each functional layer's hand-written gradient against (a) the autodiff of the same math
//! written with core ops and (b) finite differences, first and second order where the math
//! allows.

mod common;

use ferrograd::{grad, gradcheck, gradgradcheck, DType, Generator, Tensor};
use ferrograd_nn::functional as F;
use ferrograd_nn::layers;
use ferrograd_nn::Module;

fn rand(rng: &mut Generator, shape: &[usize]) -> Tensor {
    Tensor::new(rng.uniform(shape, -1.0, 1.0, DType::F64))
}

/// Checks `layer` (hand-written) against `reference` (core ops) and finite differences.
#[track_caller]
fn check(
    name: &str,
    shapes: &[&[usize]],
    second: bool,
    layer: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
) {
    let mut rng = Generator::new(name.len() as u64 * 7919);
    let params: Vec<Tensor> = shapes.iter().map(|s| rand(&mut rng, s)).collect();
    let out = layer(&params);
    let want = reference(&params);
    assert_eq!(out.shape(), want.shape(), "{name}: shape");
    for (a, b) in out.to_f64_vec().iter().zip(want.to_f64_vec()) {
        assert!((a - b).abs() < 1e-10, "{name}: forward {a} vs {b}");
    }
    let proj = rand(&mut rng, out.shape());
    let f = |p: &Vec<Tensor>| (&layer(p) * &proj).sum();
    let r = |p: &Vec<Tensor>| (&reference(p) * &proj).sum();
    let (g_layer, _) = grad(f).call(&params, ());
    let (g_ref, _) = grad(r).call(&params, ());
    for (i, (a, b)) in g_layer.iter().zip(&g_ref).enumerate() {
        for (x, y) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
            assert!(
                (x - y).abs() < 1e-9,
                "{name}: gradient of input {i}: {x} vs autodiff {y}"
            );
        }
    }
    let report = gradcheck(f, &params, (), 1e-6);
    assert!(report.passed(), "{name}: {report}");
    if second {
        let report = gradgradcheck(f, &params, (), 1e-5);
        assert!(report.passed(), "{name} (second order): {report}");
    }
}

#[test]
fn linear() {
    check(
        "linear",
        &[&[4, 3], &[5, 3], &[5]],
        true,
        |p| F::linear(&p[0], &p[1], Some(&p[2])),
        |p| p[0].matmul(&p[1].t()) + &p[2],
    );
    check(
        "linear no bias",
        &[&[4, 3], &[5, 3]],
        true,
        |p| F::linear(&p[0], &p[1], None),
        |p| p[0].matmul(&p[1].t()),
    );
    check(
        "linear vector",
        &[&[3], &[5, 3], &[5]],
        true,
        |p| F::linear(&p[0], &p[1], Some(&p[2])),
        |p| p[1].mv(&p[0]) + &p[2],
    );
    check(
        "linear 3-d",
        &[&[2, 4, 3], &[5, 3], &[5]],
        true,
        |p| F::linear(&p[0], &p[1], Some(&p[2])),
        |p| p[0].matmul(&p[1].t()) + &p[2],
    );
    // no input features (a layer after a convolution whose output is empty): the bias
    // alone, as in PyTorch; the gradients' shapes follow (it divided by the 0 features)
    check(
        "linear from no features",
        &[&[2, 4, 0], &[5, 0], &[5]],
        true,
        |p| F::linear(&p[0], &p[1], Some(&p[2])),
        |p| p[0].matmul(&p[1].t()) + &p[2],
    );
}

#[test]
fn activations() {
    check(
        "tanh",
        &[&[3, 4]],
        true,
        |p| F::tanh(&p[0]),
        |p| p[0].tanh(),
    );
    check(
        "sigmoid",
        &[&[3, 4]],
        true,
        |p| F::sigmoid(&p[0]),
        |p| p[0].sigmoid(),
    );
    check(
        "relu",
        &[&[3, 4]],
        true,
        |p| F::relu(&(&p[0] + 0.05)),
        |p| (&p[0] + 0.05).relu(),
    );
    check(
        "threshold",
        &[&[3, 4]],
        true,
        |p| F::threshold(&p[0], 0.1, -2.0),
        |p| {
            let keep = p[0].gt_scalar(0.1);
            Tensor::where_cond(&keep, &p[0], &Tensor::full(&[], -2.0, DType::F64))
        },
    );
    check(
        "softmax",
        &[&[3, 4]],
        true,
        |p| F::softmax(&p[0], 1),
        |p| p[0].softmax(1),
    );
    check(
        "log_softmax",
        &[&[3, 4]],
        true,
        |p| F::log_softmax(&p[0], 0),
        |p| p[0].log_softmax(0),
    );
    // PReLU: one learned slope per channel (dim 1), or one for all
    check(
        "prelu",
        &[&[2, 3, 4], &[3]],
        true,
        |p| F::prelu(&p[0], &p[1]),
        |p| {
            let slope = p[1].reshape(&[3, 1]).expand(&[2, 3, 4]);
            &p[0].relu() - &(&(-&p[0]).relu() * &slope)
        },
    );
    check(
        "prelu_shared",
        &[&[5, 2], &[1]],
        true,
        |p| F::prelu(&p[0], &p[1]),
        |p| &p[0].relu() - &(&(-&p[0]).relu() * &p[1]),
    );
    let (message, _) = panic_at(|| {
        drop(F::prelu(
            &Tensor::zeros(&[2, 3], DType::F64),
            &Tensor::zeros(&[4], DType::F64),
        ))
    });
    assert!(
        message.contains("prelu") && message.contains("[3]"),
        "{message}"
    );
    // the activation modules compute their functions
    let x = rand(&mut Generator::new(9), &[4, 5]);
    type A = (ferrograd_nn::layers::Function, fn(&Tensor) -> Tensor);
    let modules: [A; 8] = [
        (layers::gelu(false), |x| F::gelu(x, false)),
        (layers::gelu(true), Tensor::gelu_tanh),
        (layers::silu(), Tensor::silu),
        (layers::elu(0.3), |x| x.elu(0.3)),
        (layers::selu(), Tensor::selu),
        (layers::leaky_relu(0.2), |x| x.leaky_relu(0.2)),
        (layers::softplus(2.0, 10.0), |x| x.softplus(2.0, 10.0)),
        (layers::log_sigmoid(), Tensor::logsigmoid),
    ];
    for (mut m, f) in modules {
        assert_eq!(m.forward(&x).to_vec::<f64>(), f(&x).to_vec::<f64>());
    }
}

#[test]
fn criteria() {
    check(
        "mse",
        &[&[3, 4], &[3, 4]],
        true,
        |p| F::mse(&p[0], &p[1]),
        |p| (&p[0] - &p[1]).square().mean(),
    );
    let target = Tensor::from_vec(vec![2i64, 0, 3], &[3]);
    check(
        "class_nll",
        &[&[3, 4]],
        true,
        |p| F::class_nll(&p[0], &target),
        |p| -p[0].gather(1, &target.unsqueeze(1)).mean(),
    );
    check(
        "cross_entropy",
        &[&[3, 4]],
        true,
        |p| F::cross_entropy(&p[0], &target),
        |p| -p[0].log_softmax(1).gather(1, &target.unsqueeze(1)).mean(),
    );
    check(
        "bce",
        &[&[3, 4], &[3, 4]],
        true,
        |p| F::bce(&p[0].sigmoid(), &(&p[1] * 0.5 + 0.5)),
        |p| {
            let (q, t) = (p[0].sigmoid(), &p[1] * 0.5 + 0.5);
            -(&t * &q.log() + &t.rsub_scalar(1.0) * &q.rsub_scalar(1.0).log()).mean()
        },
    );
    check(
        "bce_with_logits",
        &[&[3, 4], &[3, 4]],
        true,
        |p| F::bce_with_logits(&p[0], &(&p[1] * 0.5 + 0.5)),
        |p| F::bce(&p[0].sigmoid(), &(&p[1] * 0.5 + 0.5)),
    );
    // saturated predictions: each log clamped at -100, as PyTorch does, gradients finite
    let p = Tensor::from_vec(vec![0.0f64, 1.0, 0.5, 1.0], &[4]);
    let t = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 1.0], &[4]);
    let want = (100.0 + 100.0 + 2.0f64.ln() + 0.0) / 4.0;
    assert!((F::bce(&p, &t).item::<f64>() - want).abs() < 1e-12);
    let (g, _) = grad(|p: &Tensor, t: &Tensor| F::bce(p, t)).call(&p, (&t,));
    assert!(g.to_vec::<f64>().iter().all(|v| v.is_finite()), "{g}");
    check(
        "parallel",
        &[&[3, 4], &[3, 4], &[2, 2], &[2, 2]],
        true,
        |p| {
            F::parallel_criterion(&[
                (0.3, &F::mse, &p[0], &p[1]),
                (2.0, &|a: &Tensor, b: &Tensor| F::mse(a, b), &p[2], &p[3]),
            ])
        },
        |p| (&p[0] - &p[1]).square().mean() * 0.3 + (&p[2] - &p[3]).square().mean() * 2.0,
    );
}

#[test]
fn normalization() {
    check(
        "batch_norm 1d",
        &[&[5, 3], &[3], &[3]],
        true,
        |p| F::batch_norm(&p[0], Some(&p[1]), Some(&p[2]), None, true, 1e-5),
        |p| {
            let m = p[0].mean_dim(0, true);
            let v = p[0].var_dim(0, 0, true);
            &(&(&p[0] - &m) / &(&v + 1e-5).sqrt()) * &p[1] + &p[2]
        },
    );
    check(
        "batch_norm 2d",
        &[&[2, 3, 2, 2], &[3], &[3]],
        true,
        |p| F::batch_norm(&p[0], Some(&p[1]), Some(&p[2]), None, true, 1e-5),
        |p| {
            let m = p[0].mean_dim([0, 2, 3], true);
            let v = p[0].var_dim([0, 2, 3], 0, true);
            &(&(&p[0] - &m) / &(&v + 1e-5).sqrt()) * &p[1].reshape(&[1, 3, 1, 1])
                + &p[2].reshape(&[1, 3, 1, 1])
        },
    );
    check(
        "layer_norm",
        &[&[4, 5], &[5], &[5]],
        true,
        |p| F::layer_norm(&p[0], p[1].shape(), Some(&p[1]), Some(&p[2]), 1e-5),
        |p| {
            let m = p[0].mean_dim(1, true);
            let v = p[0].var_dim(1, 0, true);
            &(&(&p[0] - &m) / &(&v + 1e-5).sqrt()) * &p[1] + &p[2]
        },
    );
    // without the affine part, over the last two dims
    check(
        "layer_norm_plain",
        &[&[2, 3, 4]],
        true,
        |p| F::layer_norm(&p[0], &[3, 4], None, None, 1e-5),
        |p| {
            let m = p[0].mean_dim(&[1, 2][..], true);
            let v = p[0].var_dim(&[1, 2][..], 0, true);
            &(&p[0] - &m) / &(&v + 1e-5).sqrt()
        },
    );
}

/// One training step's loss through batch norm with running statistics `stats`.
fn batch_norm_loss(stats: &F::RunningStats) -> impl Fn(&Vec<Tensor>, &Tensor) -> Tensor + '_ {
    move |p: &Vec<Tensor>, x: &Tensor| {
        F::batch_norm(x, Some(&p[0]), Some(&p[1]), Some(stats), true, 1e-5)
            .tanh()
            .sum()
    }
}

#[test]
fn batch_norm_replays_in_optimize_mode_with_its_running_statistics() {
    // the same training steps compiled and in direct mode, each with its own statistics,
    // agree bit for bit on the loss, the gradients and the statistics; evaluation then reads
    // the statistics as they are at each call
    let (compiled_stats, direct_stats) = (
        F::RunningStats::new(3, 0.1, DType::F64),
        F::RunningStats::new(3, 0.1, DType::F64),
    );
    let compiled = grad(batch_norm_loss(&compiled_stats)).optimize(true);
    let direct = grad(batch_norm_loss(&direct_stats));
    let mut rng = Generator::new(5);
    let p = vec![
        Tensor::new(rng.normal(&[3], 1.0, 0.1, DType::F64)),
        Tensor::new(rng.normal(&[3], 0.0, 0.1, DType::F64)),
    ];
    let bits = |t: &Tensor| {
        t.to_f64_vec()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    for _ in 0..4 {
        let x = Tensor::new(rng.normal(&[6, 3], 2.0, 3.0, DType::F64));
        let (g1, l1) = compiled.call(&p, (&x,));
        let (g2, l2) = direct.call(&p, (&x,));
        assert_eq!(bits(&l1), bits(&l2));
        assert_eq!(bits(&g1[0]), bits(&g2[0]));
        assert_eq!(bits(&g1[1]), bits(&g2[1]));
        let (a, b) = (compiled_stats.get(), direct_stats.get());
        assert_eq!(a.0.to_vec::<f64>(), b.0.to_vec::<f64>(), "running means");
        assert_eq!(
            a.1.to_vec::<f64>(),
            b.1.to_vec::<f64>(),
            "running variances"
        );
    }
    let s = compiled.stats();
    assert_eq!((s.captures, s.hits, s.fallbacks), (1, 3, 0), "{s:?}");
    // evaluation: a compiled function reads the statistics of the moment
    let eval =
        grad(|x: &Tensor| F::batch_norm(x, None, None, Some(&compiled_stats), false, 1e-5).sum())
            .with_gradients(false)
            .optimize(true);
    let x = Tensor::new(rng.normal(&[4, 3], 2.0, 3.0, DType::F64));
    let before = eval.run(&x, (), None).output.unwrap();
    compiled_stats.set(
        ferrograd::Array::zeros(&[3], DType::F64),
        ferrograd::Array::ones(&[3], DType::F64),
    );
    let after = eval.run(&x, (), None).output.unwrap();
    let want = F::batch_norm(&x, None, None, Some(&compiled_stats), false, 1e-5).sum();
    assert_eq!(bits(&after), bits(&want));
    assert_ne!(bits(&before), bits(&after));
    assert_eq!(eval.stats().hits, 1);
}

#[test]
fn running_statistics_move_in_training_and_hold_in_evaluation() {
    let stats = F::RunningStats::new(2, 0.5, DType::F64);
    let x = Tensor::from_vec(vec![1.0f64, 10.0, 3.0, 20.0], &[2, 2]);
    F::batch_norm(&x, None, None, Some(&stats), true, 1e-5);
    let (m, v) = stats.get();
    // batch means [2, 15], unbiased variances [2, 50]; running = 0.5 old + 0.5 batch
    assert_eq!(m.to_vec::<f64>(), vec![1.0, 7.5]);
    assert_eq!(v.to_vec::<f64>(), vec![1.5, 25.5]);
    let y = F::batch_norm(&x, None, None, Some(&stats), false, 0.0);
    assert_eq!(
        stats.get().0.to_vec::<f64>(),
        vec![1.0, 7.5],
        "evaluation leaves the statistics alone"
    );
    let want: Vec<f64> = [
        (1.0 - 1.0) / 1.5f64.sqrt(),
        (10.0 - 7.5) / 25.5f64.sqrt(),
        (3.0 - 1.0) / 1.5f64.sqrt(),
        (20.0 - 7.5) / 25.5f64.sqrt(),
    ]
    .to_vec();
    for (a, b) in y.to_f64_vec().iter().zip(want) {
        assert!((a - b).abs() < 1e-12);
    }
    // in evaluation the gradient is the fixed affine map's
    let (g, _) = grad(|x: &Tensor| F::batch_norm(x, None, None, Some(&stats), false, 0.0).sum())
        .call(&x, ());
    let want = [
        1.0 / 1.5f64.sqrt(),
        1.0 / 25.5f64.sqrt(),
        1.0 / 1.5f64.sqrt(),
        1.0 / 25.5f64.sqrt(),
    ];
    for (a, b) in g.to_f64_vec().iter().zip(want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn dropout_scales_kept_units_and_is_the_identity_in_evaluation() {
    let mut rng = Generator::new(3);
    let x = Tensor::ones(&[1000], DType::F64);
    let y = F::dropout(&x, 0.25, true, &mut rng).to_f64_vec();
    assert!(y
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12));
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / 1000.0;
    assert!((kept - 0.75).abs() < 0.05, "kept {kept}");
    assert_eq!(
        F::dropout(&x, 0.25, false, &mut rng).to_f64_vec(),
        x.to_f64_vec()
    );
    // the gradient is the same mask
    let (g, out) = grad(|x: &Tensor| {
        let y = F::dropout(x, 0.25, true, &mut Generator::new(3));
        (y.sum(), y)
    })
    .call(&x, ());
    assert_eq!(g.to_f64_vec(), out.1.to_f64_vec());
    // spatial: whole channels together
    let z = F::spatial_dropout(
        &Tensor::ones(&[4, 8, 3, 3], DType::F64),
        0.5,
        true,
        &mut rng,
    );
    for plane in z.to_f64_vec().chunks(9) {
        assert!(plane.iter().all(|&v| v == plane[0]));
    }
    // p = 1 drops everything, with a zero gradient
    let x = Tensor::ones(&[3, 2], DType::F64);
    assert_eq!(
        F::dropout(&x, 1.0, true, &mut rng).to_vec::<f64>(),
        vec![0.0; 6]
    );
    let (g, _) = grad(|x: &Tensor, rng: &mut Generator| F::dropout(x, 1.0, true, rng).sum())
        .call(&x, (&mut rng,));
    assert_eq!(g.to_vec::<f64>(), vec![0.0; 6]);
}

#[test]
fn embedding_and_pair_products() {
    let idx = Tensor::from_vec(vec![2i64, 0, 2, 1], &[2, 2]);
    check(
        "embedding",
        &[&[3, 4]],
        true,
        |p| F::embedding(&idx, &p[0], None),
        |p| {
            let rows: Vec<Tensor> = idx
                .to_vec::<i64>()
                .iter()
                .map(|&i| p[0].select(0, i as usize))
                .collect();
            Tensor::stack(&rows, 0).reshape(&[2, 2, 4])
        },
    );
    check(
        "bmm_pair",
        &[&[2, 4, 3], &[2, 4, 5]],
        true,
        |p| F::bmm_pair(&p[0], &p[1], true, false),
        |p| p[0].transpose(1, 2).matmul(&p[1]),
    );
}

#[test]
fn convolution_and_pooling() {
    use ferrograd::{Conv2dParams, Pool2dParams};
    // the hand-written im2col kernels against a convolution written as shifted products
    // of the input (autodiff of the same math) and finite differences
    let p = Conv2dParams {
        padding: (1, 0),
        ..Default::default()
    };
    check(
        "conv2d",
        &[&[2, 2, 4, 3], &[3, 2, 2, 2], &[3]],
        true,
        |q| F::conv2d(&q[0], &q[1], Some(&q[2]), p),
        |q| {
            let x = Tensor::cat(
                &[
                    Tensor::zeros(&[2, 2, 1, 3], DType::F64),
                    q[0].clone(),
                    Tensor::zeros(&[2, 2, 1, 3], DType::F64),
                ],
                2,
            );
            let (oh, ow) = (5, 2);
            let mut out = q[2].reshape(&[1, 3, 1, 1]).expand(&[2, 3, oh, ow]);
            for i in 0..2 {
                for j in 0..2 {
                    let patch = x.narrow(2, i, oh).narrow(3, j, ow); // [2, 2, oh, ow]
                    let w = q[1].narrow(2, i, 1).narrow(3, j, 1).reshape(&[3, 2]); // [O, C]
                    let term = patch
                        .permute(&[0, 2, 3, 1])
                        .matmul(&w.t())
                        .permute(&[0, 3, 1, 2]);
                    out = out + term;
                }
            }
            out
        },
    );
    let q = Pool2dParams::square(2);
    check(
        "max_pool2d",
        &[&[1, 2, 4, 4]],
        true,
        |p| F::max_pool2d(&p[0], q),
        |p| {
            let a = p[0].narrow(2, 0, 4).reshape(&[1, 2, 2, 2, 2, 2]);
            a.amax_dim([3, 5], false)
        },
    );
    check(
        "avg_pool2d",
        &[&[1, 2, 4, 4]],
        true,
        |p| F::avg_pool2d(&p[0], q, true),
        |p| p[0].reshape(&[1, 2, 2, 2, 2, 2]).mean_dim([3, 5], false),
    );
}

/// Every test above again, with every `grad` in optimize mode and each replay checked bit
/// for bit against direct mode.
#[test]
fn the_suite_passes_in_optimize_check_mode() {
    ferrograd::rerun_tests_in_check_mode("the_suite_passes_in_optimize_check_mode");
}

#[test]
fn activations_and_losses_are_core_primitives_that_optimize_mode_sees() {
    // no opaque custom step: each activation and loss appears in the plan as the core
    // primitives it is made of (the hand-written layers, linear here, stay one step)
    let target = Tensor::from_vec(vec![2i64, 0, 3], &[3]);
    let f = |p: &Vec<Tensor>, t: &Tensor| {
        let h = F::linear(&p[0], &p[1], None);
        let h = F::threshold(&F::sigmoid(&F::relu(&F::tanh(&h))), 0.1, 0.0);
        let q = F::softmax(&h, 1);
        F::cross_entropy(&h, t)
            + F::class_nll(&F::log_softmax(&h, 1), t)
            + F::mse(&q, &q.detach())
            + F::bce(&q, &q.detach())
    };
    let mut rng = Generator::new(3);
    let params = vec![rand(&mut rng, &[3, 5]), rand(&mut rng, &[4, 5])];
    let df = grad(f).optimize(true);
    let (g1, _) = df.call(&params, (&target,));
    let (g2, _) = df.call(&params, (&target,));
    let (want, _) = grad(f).call(&params, (&target,));
    for ((a, b), c) in g1.iter().zip(&g2).zip(&want) {
        assert_eq!(a.to_f64_vec(), c.to_f64_vec());
        assert_eq!(b.to_f64_vec(), c.to_f64_vec());
    }
    assert_eq!(df.stats().hits, 1);
    let plan = df.plan_text();
    for op in [
        "tanh",
        "relu",
        "sigmoid",
        "softmax",
        "log_softmax",
        "gather",
        "clamp",
    ] {
        assert!(plan.contains(op), "{op} missing from the plan:\n{plan}");
    }
    let custom: Vec<&str> = plan.lines().filter(|l| l.contains("nn.")).collect();
    assert!(custom.is_empty(), "opaque steps: {custom:?}");
    assert!(plan.contains("linear"), "{plan}");
}

/// The panic message of `f`, and the file and line it reports (the panic hook's location).
fn panic_at(f: impl FnOnce()) -> (String, String) {
    use std::sync::{Arc, Mutex};
    let at = Arc::new(Mutex::new(String::new()));
    let seen = at.clone();
    let previous = std::panic::take_hook();
    let this_thread = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        // other tests may panic on their threads meanwhile
        if std::thread::current().id() != this_thread {
            return;
        }
        if let Some(l) = info.location() {
            *seen.lock().unwrap() = format!("{}:{}", l.file(), l.line());
        }
    }));
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_err();
    std::panic::set_hook(previous);
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    let at = at.lock().unwrap().clone();
    (message, at)
}

#[test]
fn layers_check_their_arguments_at_the_callers_line() {
    let x = Tensor::zeros(&[4, 3], DType::F64);
    let here = line!() + 1;
    let (message, at) = panic_at(|| drop(F::linear(&x, &Tensor::zeros(&[5, 2], DType::F64), None)));
    assert!(
        message.contains(
            "linear: input [4, 3] has 3 features, weight [5, 2] must be [out_features, 3]"
        ),
        "{message}"
    );
    assert_eq!(at, format!("{}:{here}", file!()));
    let w = Tensor::zeros(&[5, 3], DType::F64);
    let (message, _) = panic_at(|| {
        drop(F::linear(&x, &w, Some(&Tensor::zeros(&[3], DType::F64))));
    });
    assert!(message.contains("bias [3] must be [5]"), "{message}");
    let here = line!() + 2;
    let (message, at) = panic_at(|| {
        drop(F::batch_norm(
            &x,
            Some(&Tensor::ones(&[5], DType::F64)),
            None,
            None,
            true,
            1e-5,
        ));
    });
    assert!(
        message.contains("batch_norm: weight [5] must be [3] for input [4, 3]"),
        "{message}"
    );
    assert_eq!(at, format!("{}:{here}", file!()));
    let stats = F::RunningStats::new(2, 0.1, DType::F64);
    let (message, _) = panic_at(|| drop(F::batch_norm(&x, None, None, Some(&stats), false, 1e-5)));
    assert!(
        message.contains("running statistics of shape [2]"),
        "{message}"
    );
    // the arguments swapped: refused, naming PyTorch's order
    let (message, _) = panic_at(|| drop(F::embedding(&w, &Tensor::zeros(&[2], DType::F64), None)));
    assert!(
        message.contains("embedding: needs i64 indices and weight [vocabulary, dim]"),
        "{message}"
    );
}

/// Asserts `call` panics with a message holding `needle` and naming its own line (the line
/// of this macro's call, or one of the next few where formatting breaks the call).
macro_rules! refused_here {
    ($needle:expr, $call:expr) => {{
        let line = line!();
        let message = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop($call)))
            .expect_err("a panic")
            .downcast::<String>()
            .map(|m| *m)
            .unwrap_or_default();
        assert!(message.contains($needle), "{message}");
        let prefix = format!("(at {}:", file!());
        let at: Option<u32> = (message.split(&prefix).nth(1))
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok());
        assert!(
            at.is_some_and(|at| (line..line + 6).contains(&at)),
            "{message:?} does not name the line of the call ({line})"
        );
    }};
}

#[test]
fn every_layer_and_loss_names_the_callers_line_when_it_refuses() {
    use F::Reduce;
    let f64s = |shape: &[usize]| Tensor::zeros(shape, DType::F64);
    let (p, t) = (f64s(&[4, 1]), f64s(&[4]));
    let shapes = "differ in shape";
    refused_here!(shapes, F::mse(&p, &t));
    refused_here!(shapes, F::bce(&p.sigmoid(), &t));
    refused_here!(shapes, F::bce_with_logits(&p, &t));
    // a target of another shape than the inputs ranked every pair silently
    refused_here!(
        "margin_ranking_loss: input1 [4, 1] and target [4] differ in shape",
        F::margin_ranking_loss(&p, &p, &t, 1.0, Reduce::Mean)
    );
    refused_here!(
        "cosine_embedding_loss: target [3] must have one label per pair",
        F::cosine_embedding_loss(&p, &p, &f64s(&[3]), 0.0, Reduce::Mean)
    );
    let logits = f64s(&[4, 3]);
    refused_here!("i64 class indices", F::cross_entropy(&logits, &t));
    let out_of_range = Tensor::from_vec(vec![0i64, 1, 2, 3], &[4]);
    refused_here!(
        "class index 3 is out of range for 3 classes",
        F::class_nll(&logits, &out_of_range)
    );
    let mut rng = Generator::new(0);
    refused_here!(
        "p must be in [0, 1]",
        F::dropout(&logits, 1.5, true, &mut rng)
    );
    refused_here!(
        "prelu: the weight has shape [2]",
        F::prelu(&logits, &f64s(&[2]))
    );
    refused_here!(
        "normalized shape [4]",
        F::layer_norm(&logits, &[4], None, None, 1e-5)
    );
    refused_here!(
        "padding_idx 9",
        F::embedding(&out_of_range, &logits, Some(9))
    );
    refused_here!(
        "batch_norm: evaluation mode needs running statistics",
        F::batch_norm(&logits, None, None, None, false, 1e-5)
    );
    refused_here!("needs at least one criterion", F::parallel_criterion(&[]));
    // the affine's shapes were checked in a closure, which named the library's line
    let (image, wrong) = (f64s(&[2, 4, 3]), f64s(&[3]));
    refused_here!(
        "group_norm: weight and bias must be [C] = [4], got [3]",
        F::group_norm(&image, 2, Some(&wrong), None, 1e-5)
    );
    refused_here!(
        "instance_norm: weight and bias must be [C] = [4], got [3]",
        F::instance_norm(&image, None, Some(&wrong), 1e-5)
    );
    refused_here!(
        "group_norm: needs [N, C, ...] with C divisible by 3 groups, got [2, 4, 3]",
        F::group_norm(&image, 3, None, None, 1e-5)
    );
    refused_here!(
        "rms_norm: normalized shape [4]",
        F::rms_norm(&image, &[4], None, 1e-5)
    );
    refused_here!(
        "multi_margin_loss: p must be 1 or 2, got 3",
        F::multi_margin_loss(
            &logits,
            &Tensor::from_vec(vec![0i64, 1, 2, 0], &[4]),
            3,
            1.0,
            None,
            Reduce::Mean
        )
    );
}

#[test]
fn batch_norm_refuses_one_value_per_channel_in_training_and_skips_an_empty_batch() {
    // one value per channel: the batch variance is 0 and the output all zeros, silently;
    // PyTorch refuses it, and so do we, at the caller's line (evaluation is fine)
    let stats = F::RunningStats::new(3, 0.1, DType::F64);
    for shape in [&[1usize, 3][..], &[1, 3, 1], &[1, 3, 1, 1]] {
        let x = Tensor::ones(shape, DType::F64);
        let here = line!() + 2;
        let (message, at) =
            panic_at(|| drop(F::batch_norm(&x, None, None, Some(&stats), true, 1e-5)));
        assert!(
            message.contains(&format!(
                "batch_norm: needs more than one value per channel in training, got input {shape:?}"
            )),
            "{message}"
        );
        assert_eq!(at, format!("{}:{here}", file!()));
        let y = F::batch_norm(&x, None, None, Some(&stats), false, 0.0);
        assert_eq!(y.to_vec::<f64>(), vec![1.0; 3]);
    }
    assert_eq!(stats.get().0.to_vec::<f64>(), vec![0.0; 3], "nothing moved");
    // an empty batch: an empty output, and the running statistics stay as they were (its
    // mean is NaN: they became NaN)
    let x = Tensor::zeros(&[0, 3], DType::F64);
    let y = F::batch_norm(&x, None, None, Some(&stats), true, 1e-5);
    assert_eq!(y.shape(), &[0, 3]);
    let (mean, var) = stats.get();
    assert_eq!(
        (mean.to_vec::<f64>(), var.to_vec::<f64>()),
        (vec![0.0; 3], vec![1.0; 3])
    );
    // no channels: empty, with empty gradients (it divided by the 0 channels)
    let x = Tensor::zeros(&[4, 0, 2], DType::F64);
    let (g, y) =
        grad(|x: &Tensor| F::batch_norm(x, None, None, None, true, 1e-5).sum()).call(&x, ());
    assert_eq!((g.shape(), y.item::<f64>()), (&[4, 0, 2][..], 0.0));
}

#[test]
fn empty_inputs_give_what_pytorch_gives() {
    // no channels: an empty output (instance norm asked for 0 groups and refused)
    let x = Tensor::zeros(&[2, 0, 3, 3], DType::F64);
    assert_eq!(
        F::instance_norm(&x, None, None, 1e-5).shape(),
        &[2, 0, 3, 3]
    );
    let none = Tensor::zeros(&[0], DType::F64);
    let y = F::instance_norm(&x, Some(&none), Some(&none), 1e-5);
    assert_eq!(y.shape(), &[2, 0, 3, 3]);
    // an empty batch's `batchmean` is 0/0, NaN, as its mean is (it gave 0)
    let e = Tensor::zeros(&[0, 4], DType::F64);
    let kl = F::kl_div(&e, &e, F::Reduce::BatchMean, false);
    assert!(kl.item::<f64>().is_nan(), "{kl:?}");
    assert!(F::mse_loss(&e, &e, F::Reduce::Mean).item::<f64>().is_nan());
    assert_eq!(F::mse_loss(&e, &e, F::Reduce::Sum).item::<f64>(), 0.0);
}

#[test]
fn regression_and_divergence_losses_with_every_reduction() {
    use F::Reduce;
    let mut rng = Generator::new(31);
    let p = rand(&mut rng, &[3, 4]);
    let t = rand(&mut rng, &[3, 4]);
    let (pv, tv) = (p.to_f64_vec(), t.to_f64_vec());
    type Term = fn(f64, f64) -> f64;
    let smooth: Term = |p, t| {
        let d = (p - t).abs();
        if d < 0.3 {
            0.5 * d * d / 0.3
        } else {
            d - 0.15
        }
    };
    let huber: Term = |p, t| {
        let d = (p - t).abs();
        if d <= 0.3 {
            0.5 * d * d
        } else {
            0.3 * (d - 0.15)
        }
    };
    type Loss = fn(&Tensor, &Tensor, Reduce) -> Tensor;
    let cases: [(&str, Loss, Term); 4] = [
        ("l1", |p, t, r| F::l1_loss(p, t, r), |p, t| (p - t).abs()),
        (
            "mse",
            |p, t, r| F::mse_loss(p, t, r),
            |p, t| (p - t) * (p - t),
        ),
        (
            "smooth_l1",
            |p, t, r| F::smooth_l1_loss(p, t, 0.3, r),
            smooth,
        ),
        ("huber", |p, t, r| F::huber_loss(p, t, 0.3, r), huber),
    ];
    for (name, loss, term) in cases {
        let want: Vec<f64> = pv.iter().zip(&tv).map(|(&a, &b)| term(a, b)).collect();
        let none = loss(&p, &t, Reduce::None);
        assert_eq!(none.shape(), &[3, 4]);
        for (a, b) in none.to_f64_vec().iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{name}: {a} vs {b}");
        }
        let sum: f64 = want.iter().sum();
        assert!(
            (loss(&p, &t, Reduce::Sum).item::<f64>() - sum).abs() < 1e-12,
            "{name}"
        );
        assert!((loss(&p, &t, Reduce::Mean).item::<f64>() - sum / 12.0).abs() < 1e-12);
        assert!((loss(&p, &t, Reduce::BatchMean).item::<f64>() - sum / 3.0).abs() < 1e-12);
        let f = |q: &Vec<Tensor>| loss(&q[0], &q[1], Reduce::Sum);
        let params = vec![p.clone(), t.clone()];
        assert!(gradcheck(f, &params, (), 1e-6).passed(), "{name}");
        assert!(
            gradgradcheck(f, &params, (), 1e-5).passed(),
            "{name} second order"
        );
    }
    // kl: log-probabilities against probabilities with a zero, and with log targets
    let q = rand(&mut rng, &[2, 3]).log_softmax(1);
    let target = Tensor::from_vec(vec![0.2f64, 0.0, 0.8, 0.5, 0.25, 0.25], &[2, 3]);
    let (qv, tv) = (q.to_f64_vec(), target.to_f64_vec());
    let want: f64 = qv
        .iter()
        .zip(&tv)
        .map(|(&q, &t)| if t > 0.0 { t * (t.ln() - q) } else { 0.0 })
        .sum::<f64>()
        / 2.0;
    let kl = F::kl_div(&q, &target, Reduce::BatchMean, false).item::<f64>();
    assert!((kl - want).abs() < 1e-12, "{kl} vs {want}");
    let kl_log = F::kl_div(
        &q,
        &target.clamp(Some(1e-300), None).log(),
        Reduce::BatchMean,
        true,
    );
    assert!((kl_log.item::<f64>() - want).abs() < 1e-12);
    let f = |x: &Vec<Tensor>| F::kl_div(&x[0], &target, Reduce::Sum, false);
    assert!(gradcheck(f, &vec![q.clone()], (), 1e-6).passed());
    let (g, _) = grad(|t: &Tensor| F::kl_div(&q, t, Reduce::Sum, false)).call(&target, ());
    assert!(
        g.to_f64_vec().iter().all(|v| v.is_finite()),
        "no NaN where t = 0"
    );
    let msg = panic_at(|| {
        F::huber_loss(&p, &t, -1.0, Reduce::Mean);
    })
    .0;
    assert!(
        msg.contains("huber_loss: delta must be finite and >= 0, got -1"),
        "{msg}"
    );
}

#[test]
fn padding_in_every_mode() {
    use F::PadMode;
    let mut rng = Generator::new(41);
    let x = rand(&mut rng, &[2, 3, 4]);
    let v = x.to_f64_vec();
    // reference: the source index of each padded position, per mode
    let source = |i: isize, n: isize, mode: PadMode| -> Option<isize> {
        match mode {
            PadMode::Constant(_) => (0..n).contains(&i).then_some(i),
            PadMode::Reflect => Some(if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            }),
            PadMode::Replicate => Some(i.clamp(0, n - 1)),
        }
    };
    let pads = [(1usize, 2usize), (2, 1)];
    for mode in [
        PadMode::Constant(-5.0),
        PadMode::Reflect,
        PadMode::Replicate,
    ] {
        let y = F::pad(&x, &pads, mode);
        assert_eq!(y.shape(), &[2, 6, 7], "{mode:?}");
        let got = y.to_f64_vec();
        for b in 0..2 {
            for r in 0..6 {
                for c in 0..7 {
                    let (i, j) = (r as isize - 1, c as isize - 2);
                    let want = match (source(i, 3, mode), source(j, 4, mode)) {
                        (Some(i), Some(j)) => v[b * 12 + i as usize * 4 + j as usize],
                        _ => -5.0,
                    };
                    assert_eq!(got[b * 42 + r * 7 + c], want, "{mode:?} at {b},{r},{c}");
                }
            }
        }
        let proj = rand(&mut rng, &[2, 6, 7]);
        let f = |p: &Vec<Tensor>| (&F::pad(&p[0], &pads, mode) * &proj).sum();
        assert!(
            gradcheck(f, &vec![x.clone()], (), 1e-6).passed(),
            "{mode:?}"
        );
        assert!(
            gradgradcheck(f, &vec![x.clone()], (), 1e-5).passed(),
            "{mode:?}"
        );
    }
    let msg = panic_at(|| {
        F::pad(&x, &[(4, 0)], PadMode::Reflect);
    })
    .0;
    assert!(
        msg.contains("a reflect pad of 4 needs dim 2 longer than 4"),
        "{msg}"
    );
}

#[test]
fn conv1d_against_a_direct_sum() {
    let mut rng = Generator::new(43);
    let (n, c, l, o, k) = (2, 3, 9, 4, 3);
    let x = rand(&mut rng, &[n, c, l]);
    let w = rand(&mut rng, &[o, c, k]);
    let b = rand(&mut rng, &[o]);
    let params = ferrograd::Conv2dParams {
        stride: (1, 2),
        padding: (0, 1),
        dilation: (1, 2),
        groups: 1,
    };
    let y = F::conv1d(&x, &w, Some(&b), params);
    let out_len = (l + 2 - 2 * (k - 1) - 1) / 2 + 1;
    assert_eq!(y.shape(), &[n, o, out_len]);
    let (xv, wv, bv, yv) = (
        x.to_f64_vec(),
        w.to_f64_vec(),
        b.to_f64_vec(),
        y.to_f64_vec(),
    );
    for s in 0..n {
        for q in 0..o {
            for t in 0..out_len {
                let mut want = bv[q];
                for ch in 0..c {
                    for tap in 0..k {
                        let at = (t * 2 + tap * 2) as isize - 1;
                        if (0..l as isize).contains(&at) {
                            want += xv[(s * c + ch) * l + at as usize] * wv[(q * c + ch) * k + tap];
                        }
                    }
                }
                let got = yv[(s * o + q) * out_len + t];
                assert!((got - want).abs() < 1e-12, "{got} vs {want}");
            }
        }
    }
    let f = |p: &Vec<Tensor>| F::conv1d(&p[0], &p[1], Some(&p[2]), params).square().sum();
    assert!(gradcheck(f, &vec![x, w, b], (), 1e-6).passed());
}

#[test]
fn cross_entropy_options_match_pytorch() {
    use F::{CrossEntropy, Reduce};
    // logits [3, 4, 2] = 2 sin(0.7 i); targets [3, 2] with one ignored; weights per class
    let x = Tensor::from_vec(
        (0..24).map(|i| (i as f64 * 0.7).sin() * 2.0).collect(),
        &[3, 4, 2],
    );
    let t = Tensor::from_vec(vec![0i64, 3, -100, 1, 2, 2], &[3, 2]);
    let w = Tensor::from_vec(vec![0.5f64, 1.0, 2.0, 1.5], &[4]);
    // PyTorch 2.15: F.cross_entropy(x, t, weight, ignore_index=-100, label_smoothing, reduction)
    let torch: [(Reduce, bool, f64, &[f64]); 12] = [
        (Reduce::Mean, false, 0.0, &[1.5814838851028408]),
        (Reduce::Mean, true, 0.0, &[1.404355733067839]),
        (Reduce::Mean, false, 0.1, &[1.6358595059017467]),
        (Reduce::Mean, true, 0.1, &[1.4485395880182257]),
        (Reduce::Sum, false, 0.0, &[7.907419425514203]),
        (Reduce::Sum, true, 0.0, &[9.830490131474873]),
        (Reduce::Sum, false, 0.1, &[8.179297529508732]),
        (Reduce::Sum, true, 0.1, &[10.139777116127581]),
        (
            Reduce::None,
            false,
            0.0,
            &[
                2.3327542180459746,
                4.255779372548905,
                0.0,
                0.3573277062101189,
                0.35051292582562443,
                0.6110452028835809,
            ],
        ),
        (
            Reduce::None,
            true,
            0.0,
            &[
                1.1663771090229873,
                6.383669058823358,
                0.0,
                0.3573277062101189,
                0.7010258516512489,
                1.2220904057671618,
            ],
        ),
        (
            Reduce::None,
            false,
            0.1,
            &[
                2.310311112659436,
                4.050579289345408,
                0.0,
                0.5327421161485674,
                0.5312258454390788,
                0.7544391659162429,
            ],
        ),
        (
            Reduce::None,
            true,
            0.1,
            &[
                1.323930556792441,
                6.081157779555953,
                0.0,
                0.5975415438916032,
                0.8233928996803559,
                1.3137543362072295,
            ],
        ),
    ];
    for (reduction, weighted, eps, want) in torch {
        let options = CrossEntropy {
            weight: weighted.then_some(&w),
            ignore_index: Some(-100),
            label_smoothing: eps,
            reduction,
        };
        let got = F::cross_entropy_with(&x, &t, options).to_f64_vec();
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!(
                (a - b).abs() < 1e-12,
                "{reduction:?} {weighted} {eps}: {a} vs {b}"
            );
        }
        let f = |p: &Vec<Tensor>| F::cross_entropy_with(&p[0], &t, options).sum();
        assert!(gradcheck(f, &vec![x.clone()], (), 1e-6).passed());
    }
    // the defaults are cross_entropy
    let x2 = x.select(2, 0);
    let t2 = Tensor::from_vec(vec![1i64, 0, 3], &[3]);
    let a = F::cross_entropy_with(&x2, &t2, CrossEntropy::default()).item::<f64>();
    assert!((a - F::cross_entropy(&x2, &t2).item::<f64>()).abs() < 1e-15);
    let msg = panic_at(|| {
        F::cross_entropy_with(&x, &t2, CrossEntropy::default());
    })
    .0;
    assert!(
        msg.contains(
            "needs logits [N, C, ...] and i64 class indices [N, ...], got [3, 4, 2] and [3]"
        ),
        "{msg}"
    );
}

#[test]
fn group_instance_rms_norms_and_normalize_match_pytorch() {
    let x = Tensor::from_vec(
        (0..24)
            .map(|i| (i as f64 * 0.37).sin() * 2.0 + 0.3)
            .collect(),
        &[2, 4, 3],
    );
    let w = Tensor::from_vec(vec![0.5f64, 1.0, 2.0, 1.5], &[4]);
    let b = Tensor::from_vec(vec![0.1f64, -0.2, 0.0, 0.3], &[4]);
    let close = |got: &Tensor, want: &[f64], what: &str| {
        for (a, b) in got.to_f64_vec().iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
        }
        assert_eq!(got.numel(), want.len(), "{what}");
    };
    // PyTorch 2.15's F.group_norm, instance_norm, rms_norm, normalize, cosine_similarity
    close(
        &F::group_norm(&x, 2, Some(&w), Some(&b), 1e-5),
        &[
            -0.7969840646041616,
            -0.2965210269205297,
            0.13620668639086514,
            0.4852628187015934,
            0.7625599864199935,
            0.666774005146065,
            2.841946099587973,
            1.8730225467997004,
            0.6519248389350192,
            -0.19205788325616777,
            -1.1054636746475424,
            -1.8276485560883091,
            -0.3373886304764705,
            -0.38150407323673524,
            -0.24054942711918828,
            -0.26720448445540596,
            0.5955872398339933,
            1.5905015062862005,
            -3.8843289756096095,
            -0.9660848630980262,
            1.0903945185655266,
            1.8050807493403365,
            1.544270152266756,
            0.3706635884994943,
        ],
        "group_norm",
    );
    close(
        &F::instance_norm(&x, Some(&w), Some(&b), 1e-5),
        &[
            -0.5266283940173769,
            0.12960608611702604,
            0.6970223079003509,
            -1.5289731450243778,
            0.880663595972637,
            0.04830954905175091,
            2.350238504954137,
            0.18761625929426115,
            -2.537854764248399,
            2.2043400699470617,
            0.15713999758661495,
            -1.4614800675336763,
            -0.049161860448182555,
            -0.4235855420352233,
            0.7727474024834033,
            -1.3946833749810648,
            -0.2580204878357499,
            1.0527038628168144,
            -2.5780006300034395,
            0.28146954729154805,
            2.2965310827118905,
            1.6584224384703725,
            1.031443027117154,
            -1.789865465587526,
        ],
        "instance_norm",
    );
    let g = Tensor::from_vec(vec![1.0f64, 2.0, 0.5], &[3]);
    close(
        &F::rms_norm(&x, &[3], Some(&g), 1e-6),
        &[
            0.2646552920359241,
            1.8053564207569661,
            0.7271738599120958,
            0.9491378653659183,
            2.0801382150363033,
            0.5043294920563649,
            1.357037620670584,
            1.9326788405010222,
            0.23697862744029488,
            -0.08563238914475962,
            -1.7442858114058146,
            -0.7469989778933239,
            -1.0145293925647405,
            -2.1091822110481058,
            -0.46329432983733165,
            -1.5507630190212573,
            -1.2260215616790227,
            0.23417149248203523,
            0.6256981484281801,
            2.0036059689433463,
            0.6334215643832151,
            1.071692755255508,
            2.0740240037547863,
            0.44047703996540766,
        ],
        "rms_norm",
    );
    close(
        &F::normalize(&x, 2.0, 1, 1e-12),
        &[
            0.10571344750193046,
            0.34703505945104823,
            0.5269361764112783,
            0.7369627540765027,
            0.7772651139169922,
            0.7103963289232805,
            0.6670979957091305,
            0.45721259284865823,
            0.21133772663963646,
            -0.02628364971029903,
            -0.2576475405277908,
            -0.4159467359412487,
            -0.5128881281711349,
            -0.5167929591318898,
            -0.46378590611671605,
            -0.3275142396594113,
            -0.12549526347986403,
            0.0979312559024458,
            0.3267072826103529,
            0.5070499426760418,
            0.6549216377305491,
            0.7231476628537122,
            0.678289268577977,
            0.5885488516998411,
        ],
        "normalize",
    );
    let (a, c) = (x.select(0, 0), x.select(0, 1).flip(0));
    close(
        &F::cosine_similarity(&a, &c, 1, 1e-8),
        &[
            0.8336440336218951,
            0.9712105585810705,
            -0.82494969328278,
            0.7969847770571137,
        ],
        "cosine_similarity",
    );
    let zero = Tensor::zeros(&[2, 3], DType::F64);
    close(
        &F::cosine_similarity(&zero, &c.narrow(0, 0, 2), 1, 1e-8),
        &[0.0, 0.0],
        "cosine of zero",
    );
    // gradients, to second order
    let params = vec![x.clone(), w.clone(), b.clone()];
    let f = |p: &Vec<Tensor>| {
        let y = F::group_norm(&p[0], 2, Some(&p[1]), Some(&p[2]), 1e-5);
        let z = F::rms_norm(&p[0], &[3], None, 1e-6);
        (&y.square().sum() + &z.sin().sum()) + F::normalize(&p[0], 2.0, -1, 1e-12).sum()
    };
    assert!(gradcheck(f, &params, (), 1e-6).passed());
    assert!(gradgradcheck(f, &params, (), 1e-5).passed());
}

#[test]
fn attention_matches_pytorch() {
    use F::{AttentionMask, AttentionParams};
    let det = |shape: &[usize], a: f64, b: f64| {
        let n: usize = shape.iter().product();
        Tensor::from_vec((0..n).map(|i| (i as f64 * a + b).sin()).collect(), shape)
    };
    let q = det(&[2, 3, 4], 0.31, 0.0);
    let k = det(&[2, 5, 4], 0.23, 1.0);
    let v = det(&[2, 5, 3], 0.17, 2.0);
    let close = |got: &Tensor, want: &[f64], what: &str| {
        assert_eq!(got.numel(), want.len(), "{what}");
        for (a, b) in got.to_f64_vec().iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{what}: {a} vs {b}");
        }
    };
    // PyTorch 2.15's F.scaled_dot_product_attention and nn.MultiheadAttention
    let sdpa = |mask, scale| F::scaled_dot_product_attention(&q, &k, &v, mask, scale, None);
    close(
        &sdpa(AttentionMask::None, None),
        &[
            0.45662359015986487,
            0.3362338055654169,
            0.20615024361074713,
            0.6737709413655867,
            0.559096838724137,
            0.4283037135820153,
            0.2557927521210612,
            0.12619447370524478,
            -0.00704205021694429,
            -0.41458204119283315,
            -0.3317613252255689,
            -0.2393757755912655,
            -0.5153228157076455,
            -0.4425997207225381,
            -0.3571162694574732,
            -0.5702560221439922,
            -0.4613214709121594,
            -0.33908680661468027,
        ],
        "none",
    );
    close(
        &sdpa(AttentionMask::Causal, None),
        &[
            0.9092974268256817,
            0.825784993105608,
            0.7184647930691263,
            0.7776854426993665,
            0.6687708213792414,
            0.540575225510584,
            0.5626765873204249,
            0.4314799134166733,
            0.2878434724614341,
            -0.9868438585032366,
            -0.9999710363300245,
            -0.9842685830120413,
            -0.9762700578094031,
            -0.9702886344217626,
            -0.9363333373737346,
            -0.8251633275548265,
            -0.7422346626794891,
            -0.6379070264634947,
        ],
        "causal",
    );
    let allowed = Tensor::from_vec(
        vec![
            true, false, true, true, false, false, true, true, false, true, true, true, false,
            false, true,
        ],
        &[3, 5],
    );
    close(
        &sdpa(AttentionMask::Allowed(&allowed), None),
        &[
            0.5592592435539352,
            0.447026143896812,
            0.3219050721161035,
            0.457845373239019,
            0.3100497759567503,
            0.15331529909437183,
            0.44912097169887305,
            0.3378696171602017,
            0.21687732405044688,
            -0.8162585163551662,
            -0.7827999200873917,
            -0.7267728371971433,
            -0.15054805142757513,
            -0.01879023848761885,
            0.11350930578758539,
            -0.673857948603781,
            -0.6068289509777445,
            -0.522304791802966,
        ],
        "bool mask",
    );
    let additive = det(&[3, 5], 0.5, 0.0);
    close(
        &sdpa(AttentionMask::Additive(&additive), Some(0.7)),
        &[
            0.39926226406551124,
            0.2730644599302377,
            0.13899408011774578,
            0.8011915974122038,
            0.6989463929939246,
            0.5765502382301871,
            -0.018807752110533787,
            -0.14924792930259279,
            -0.2753852191163272,
            -0.1640959060996064,
            -0.053420284375287175,
            0.05879546905108668,
            -0.8393094075706881,
            -0.8221533909714074,
            -0.7812943088382311,
            -0.39289821892738575,
            -0.2602978166205678,
            -0.12019290691471414,
        ],
        "additive mask",
    );
    // multi-head: torch's in_proj_weight [3E, E] holds W_q, W_k, W_v in that order
    let in_w = det(&[12, 4], 0.13, 0.0);
    let in_b = det(&[12], 0.41, 0.0);
    let (ws, bs): (Vec<Tensor>, Vec<Tensor>) = (0..3)
        .map(|i| (in_w.narrow(0, 4 * i, 4), in_b.narrow(0, 4 * i, 4)))
        .unzip();
    let (out_w, out_b) = (det(&[4, 4], 0.29, 0.0), det(&[4], 0.53, 0.0));
    let params = AttentionParams {
        in_weights: [&ws[0], &ws[1], &ws[2]],
        in_biases: Some([&bs[0], &bs[1], &bs[2]]),
        out_weight: &out_w,
        out_bias: Some(&out_b),
    };
    let y = F::multi_head_attention(&q, &k, &k, &params, 2, AttentionMask::None);
    close(
        &y,
        &[
            0.14618818030891267,
            -3.892644469287142,
            -2.7865652121378948,
            2.475690089086943,
            0.1251053191244551,
            -4.268443461833222,
            -3.065625136622843,
            2.628609763793084,
            0.6003823720005881,
            -0.5321894742687471,
            -0.556834371226358,
            0.8960744234930825,
            -3.5146058656792913,
            -3.9829438704738718,
            0.802108593099156,
            5.432188107425641,
            -3.539862294362631,
            -4.532090023791739,
            0.38877348890005137,
            5.651212168747581,
            -1.5053114612171314,
            -6.116602960010301,
            -2.9112946448207935,
            4.6000297939087,
        ],
        "multi-head",
    );
    // gradients through the causal attention, to second order
    let f = |p: &Vec<Tensor>| {
        F::scaled_dot_product_attention(&p[0], &p[1], &p[2], AttentionMask::Causal, None, None)
            .square()
            .sum()
    };
    let small = vec![q.narrow(1, 0, 2), k.narrow(1, 0, 3), v.narrow(1, 0, 3)];
    assert!(gradcheck(f, &small, (), 1e-6).passed());
    assert!(gradgradcheck(f, &small, (), 1e-5).passed());
}

/// A weight without a bias (or a bias without a weight) is the affine map with the other at
/// its identity, as PyTorch takes it (this was refused: "give both weight and bias").
#[test]
fn batch_norm_takes_a_weight_or_a_bias_alone() {
    let x = Tensor::from_vec((0..12).map(|i| (i * 7 % 5) as f64 - 1.5).collect(), &[4, 3]);
    let w = Tensor::from_vec(vec![1.5f64, -0.5, 2.0], &[3]);
    let b = Tensor::from_vec(vec![0.25f64, 0.0, -1.0], &[3]);
    let (ones, zeros) = (
        Tensor::ones(&[3], DType::F64),
        Tensor::zeros(&[3], DType::F64),
    );
    let bn = |w: Option<&Tensor>, b: Option<&Tensor>| F::batch_norm(&x, w, b, None, true, 1e-5);
    assert!(bn(Some(&w), None).allclose(&bn(Some(&w), Some(&zeros)), 0.0, 0.0));
    assert!(bn(None, Some(&b)).allclose(&bn(Some(&ones), Some(&b)), 0.0, 0.0));
    let (g, _) = ferrograd::grad(|w: &Tensor| {
        (F::batch_norm(&x, Some(w), None, None, true, 1e-5) * &x).sum()
    })
    .call(&w, ());
    let (want, _) = ferrograd::grad(|w: &Tensor| {
        (F::batch_norm(&x, Some(w), Some(&zeros), None, true, 1e-5) * &x).sum()
    })
    .call(&w, ());
    assert!(g.allclose(&want, 0.0, 0.0));
}

/// nn functions whose bodies build constants (default affine parameters, the causal mask, a
/// pad's fill, CTC's and multi_margin's tables) on a GPU input, against the CPU: value and
/// gradient, on the GPU. Without a GPU only the CPU runs (the comparison says it skipped).
#[test]
fn devices_functions_that_build_constants_run_where_their_input_is() {
    use ferrograd::Device;
    use ferrograd_nn::functional::{AttentionMask, PadMode, Reduce};
    let f = |x: &Tensor| {
        let image = x.reshape(&[2, 3, 2, 4]);
        let ln = F::layer_norm(&image, &[2, 4], None, None, 1e-5)
            .square()
            .sum();
        let bn = F::batch_norm(
            &image,
            Some(&x.narrow(1, 0, 3).select(0, 0)),
            None,
            None,
            true,
            1e-5,
        )
        .tanh()
        .sum();
        let seq = x.reshape(&[2, 4, 6]);
        let att =
            F::scaled_dot_product_attention(&seq, &seq, &seq, AttentionMask::Causal, None, None)
                .sum();
        let padded = F::pad(&image, &[(1, 2)], PadMode::Constant(0.5))
            .square()
            .sum();
        let logits = x.reshape(&[6, 8]);
        let classes = Tensor::from_vec(vec![1i64, 0, 7, 3, 3, 5], &[6])
            .to_device(x.device())
            .unwrap();
        let margin = F::multi_margin_loss(&logits, &classes, 1, 1.0, None, Reduce::Mean);
        let lp = x.reshape(&[4, 2, 6]).log_softmax(2);
        let targets = Tensor::from_vec(vec![1i64, 2, 3, 3], &[2, 2])
            .to_device(x.device())
            .unwrap();
        let ctc = F::ctc_loss(&lp, &targets, &[4, 4], &[2, 1], 0, Reduce::Mean, false);
        ln * 0.1 + bn + att * 0.1 + padded * 0.01 + margin + ctc
    };
    let x = Tensor::from_vec(
        (0..48).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.2).collect(),
        &[6, 8],
    );
    let (want, want_value) = grad(f).call(&x, ());
    assert!(want_value.item::<f64>().is_finite());
    for device in common::gpus("(the CPU ran the same function above)") {
        let (got, value) = grad(f).call(&x.to_device(device).unwrap(), ());
        for (g, w) in [(&got, &want), (&value, &want_value)] {
            assert_eq!(g.device(), device);
            let g = g.to_device(Device::Cpu).unwrap();
            assert!(g.allclose(w, 1e-9, 1e-9), "{g:?} vs {w:?}");
        }
    }
}
