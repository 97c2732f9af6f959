//! The seed's benchmark suite: each workload run as (a) the hand-written nn Module path
//! (`forward`/`backward`/`update_parameters`), (b) autodiff direct mode (`grad` of plain
//! tensor code), (c) the same `grad` in optimize mode (captured on the first step, replayed
//! after) with the SGD update run op by op, as PyTorch eager runs it, and (d) the whole step,
//! gradient and update, compiled with `compile`, as `jax.jit` compiles it; printing time per
//! step, the ratio ag/nn, the speed-ups of (c) and (d) over direct mode, and the capture
//! times. Direct mode, (c) and (d) alternate pass by pass.
//!
//! `cargo bench -p ferrograd-nn --bench suite` (`-- --quick` for fewer steps, `-- --only lstm`
//! for the rows whose names contain "lstm", `-- --simd avx2` or `-- --simd portable` to cap
//! the vector path every kernel, matrix products included, may use: an AVX2-only machine's
//! code on this one).
//! `benches/pytorch_suite.py` runs the same workloads in PyTorch eager;
//! `benches/compare-peers.sh` alternates them (with JAX too).

#[path = "../../../benches/alternate.rs"]
mod alternate;
#[path = "../../../benches/simd_arg.rs"]
mod simd_arg;

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrograd::{
    compile, grad, simd_level, Conv2dParams, DType, Generator, Grad, Pool2dParams, Tensor,
};
use ferrograd_nn::functional as F;
use ferrograd_nn::layers::{self, ClassNllCriterion, Conv2d, Linear, MseCriterion, Sequential};
use ferrograd_nn::models::{Cell, Output, RecurrentNetwork, RecurrentState};
use ferrograd_nn::{AutoCriterion, AutoModule, Criterion, Module};

const F32: DType = DType::F32;

/// The quietest of `passes` timings of `steps` calls of `step`, per call.
fn best(passes: usize, steps: usize, mut step: impl FnMut(usize)) -> Duration {
    for i in 0..steps.min(3) {
        step(i);
    }
    (0..passes)
        .map(|_| {
            let t = Instant::now();
            for i in 0..steps {
                step(i);
            }
            t.elapsed() / steps as u32
        })
        .min()
        .expect("passes > 0")
}

/// One SGD step of an nn model on (x, y) through the Module API.
fn nn_step(model: &mut Sequential, criterion: &dyn Criterion, x: &Tensor, y: &Tensor) {
    model.zero_grad_parameters();
    let out = model.forward(x);
    black_box(criterion.forward(&out, y));
    let g = criterion.backward(&out, y);
    model.backward(x, &g, 1.0);
    model.update_parameters(0.01);
}

fn sgd(params: &[Tensor], grads: &[Tensor]) -> Vec<Tensor> {
    params
        .iter()
        .zip(grads)
        .map(|(p, g)| p - &(g * 0.01))
        .collect()
}

fn randn(rng: &mut Generator, shape: &[usize]) -> Tensor {
    Tensor::new(rng.normal(shape, 0.0, 1.0, F32))
}

fn labels(rng: &mut Generator, n: usize) -> Tensor {
    Tensor::new(rng.uniform(&[n], 0.0, 10.0, DType::I64))
}

/// A step time and the capture time of its first (compiling) call.
type Compiled = Option<(Duration, Duration)>;

/// One workload's `grad` of plain tensor code in direct and in optimize mode, and its whole
/// step compiled: the capture times (the first compiled calls), then `steps` SGD steps of
/// each, alternating pass by pass, each updating its own copy of the parameters — with
/// `step` (a `grad` and the update) or `whole` (the compiled step, called with its parameters
/// donated, `call_donating`: the update writes them in place, as PyTorch's in-place SGD
/// does and `jax.jit` with `donate_argnums` does in `benches/jax_suite.py`). Returns the direct step
/// time, then optimize mode's and the compiled step's step and capture times.
fn direct_and_optimized<P: Clone, F: Clone>(
    passes: usize,
    steps: usize,
    f: F,
    params: P,
    step: impl Fn(&Grad<F>, &P, usize) -> P,
    whole: impl Fn(P, usize) -> P,
) -> (Duration, Compiled, Compiled) {
    let (df, dq) = (grad(f.clone()), grad(f).optimize(true));
    let (mut p, mut q) = (params.clone(), params.clone());
    // (the compiled step takes its parameters by value: `call_donating`)
    let mut r = Some(params);
    let t = Instant::now();
    black_box(step(&dq, &q, 0));
    let capture = t.elapsed();
    let t = Instant::now();
    r = Some(black_box(whole(r.take().expect("parameters"), 0)));
    let capture_whole = t.elapsed();
    let times = alternate::best_each(
        passes,
        steps,
        steps.min(3),
        &mut [
            &mut |i| p = step(&df, &p, i),
            &mut |i| q = step(&dq, &q, i),
            &mut |i| r = Some(whole(r.take().expect("parameters"), i)),
        ],
    );
    (
        times[0],
        Some((times[1], capture)),
        Some((times[2], capture_whole)),
    )
}

struct Row {
    name: &'static str,
    nn: Duration,
    ag: Duration,
    /// Optimize mode's step time and capture time.
    opt: Compiled,
    /// The compiled whole step's time and capture time.
    whole: Compiled,
}

fn mlp_nn(rng: &mut Generator, inputs: usize, hidden: usize) -> Sequential {
    Sequential::new()
        .add(Linear::new(inputs, hidden, rng, F32))
        .add(layers::tanh())
        .add(Linear::new(hidden, 10, rng, F32))
        .add(layers::log_softmax())
}

/// Plain-tensor MLP as the seed's autodiff version writes it (`x W + b`, W: [in, out]),
/// NLL by gather.
#[allow(clippy::ptr_arg)] // grad differentiates its first argument as a tree: a Vec
fn mlp_ag(p: &Vec<Tensor>, x: &Tensor, y: &Tensor) -> Tensor {
    let h = (x.matmul(&p[0]) + &p[1]).tanh();
    let out = (h.matmul(&p[2]) + &p[3]).log_softmax(1);
    -out.gather(1, &y.reshape(&[y.numel(), 1])).mean()
}

/// nn-layout parameters ([out, in] weights) in the seed's autodiff layout ([in, out]).
fn in_out(p: Vec<Tensor>) -> Vec<Tensor> {
    p.into_iter()
        .map(|t| if t.ndim() == 2 { t.t().contiguous() } else { t })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only lstm`: the rows whose names contain "lstm"
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    let want = |name: &str| only.as_ref().is_none_or(|o| name.contains(o.as_str()));
    ferrograd::cap_simd_level(simd_arg::simd_arg().map(|(_, level)| level));
    let (passes, scale) = if quick { (1, 10) } else { (5, 1) };
    let mut rng = Generator::new(0);
    let mut rows = Vec::new();

    // logistic: per sample, 100 -> 10
    if want("logistic") {
        let xs: Vec<Tensor> = (0..100).map(|_| randn(&mut rng, &[1, 100])).collect();
        let ys: Vec<Tensor> = (0..100).map(|_| labels(&mut rng, 1)).collect();
        let mut model = Sequential::new()
            .add(Linear::new(100, 10, &mut rng, F32))
            .add(layers::log_softmax());
        let nn = best(passes, 1000 / scale, |i| {
            nn_step(
                &mut model,
                &ClassNllCriterion::default(),
                &xs[i % 100],
                &ys[i % 100],
            )
        });
        let p = vec![randn(&mut rng, &[100, 10]) * 0.1, Tensor::zeros(&[10], F32)];
        let f = |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            -(x.matmul(&p[0]) + &p[1])
                .log_softmax(1)
                .gather(1, &y.reshape(&[1, 1]))
                .sum()
        };
        let whole = compile(move |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            sgd(p, &grad(f).call(p, (x, y)).0)
        });
        let (ag, opt, whole) = direct_and_optimized(
            passes,
            1000 / scale,
            f,
            p,
            |df, p, i| sgd(p, &df.call(p, (&xs[i % 100], &ys[i % 100])).0),
            |p, i| whole.call_donating(p, (&xs[i % 100], &ys[i % 100])),
        );
        rows.push(Row {
            name: "logistic",
            nn,
            ag,
            opt,
            whole,
        });
    }
    // mlp: per sample, 100 -> 1000 -> 10
    if want("mlp") {
        let xs: Vec<Tensor> = (0..100).map(|_| randn(&mut rng, &[1, 100])).collect();
        let ys: Vec<Tensor> = (0..100).map(|_| labels(&mut rng, 1)).collect();
        let mut model = mlp_nn(&mut rng, 100, 1000);
        let p = in_out(model.parameters());
        let nn = best(passes, 400 / scale, |i| {
            nn_step(
                &mut model,
                &ClassNllCriterion::default(),
                &xs[i % 100],
                &ys[i % 100],
            )
        });
        let whole = compile(|p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            sgd(p, &grad(mlp_ag).call(p, (x, y)).0)
        });
        let (ag, opt, whole) = direct_and_optimized(
            passes,
            400 / scale,
            mlp_ag,
            p,
            |df, p, i| sgd(p, &df.call(p, (&xs[i % 100], &ys[i % 100])).0),
            |p, i| whole.call_donating(p, (&xs[i % 100], &ys[i % 100])),
        );
        rows.push(Row {
            name: "mlp",
            nn,
            ag,
            opt,
            whole,
        });
    }
    // mlp batched (32 x 100 -> 1000 -> 10) and wide batched (32 x 1000 -> 1000 -> 10)
    for (name, inputs) in [("mlp batched", 100usize), ("mlp wide batched", 1000)] {
        if !want(name) {
            continue;
        }
        let x = randn(&mut rng, &[32, inputs]);
        let y = labels(&mut rng, 32);
        let mut model = mlp_nn(&mut rng, inputs, 1000);
        let p = in_out(model.parameters());
        let nn = best(passes, 200 / scale, |_| {
            nn_step(&mut model, &ClassNllCriterion::default(), &x, &y)
        });
        let whole = compile(|p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            sgd(p, &grad(mlp_ag).call(p, (x, y)).0)
        });
        let (ag, opt, whole) = direct_and_optimized(
            passes,
            200 / scale,
            mlp_ag,
            p,
            |df, p, _| sgd(p, &df.call(p, (&x, &y)).0),
            |p, _| whole.call_donating(p, (&x, &y)),
        );
        rows.push(Row {
            name,
            nn,
            ag,
            opt,
            whole,
        });
    }
    // cnn batched: 32 x 3 x 64 x 64; conv 3->16 5x5, tanh, pool 2, conv 16->32 5x5, tanh, pool 2, linear 5408 -> 10
    if want("cnn batched") {
        let x = randn(&mut rng, &[32, 3, 64, 64]);
        let y = labels(&mut rng, 32);
        let c = Conv2dParams::default();
        let pool = Pool2dParams::square(2);
        let mut model = Sequential::new()
            .add(Conv2d::new(3, 16, (5, 5), c, &mut rng, F32))
            .add(layers::tanh())
            .add(layers::max_pool2d(pool))
            .add(Conv2d::new(16, 32, (5, 5), c, &mut rng, F32))
            .add(layers::tanh())
            .add(layers::max_pool2d(pool))
            .add(layers::reshape(&[5408]))
            .add(Linear::new(5408, 10, &mut rng, F32))
            .add(layers::log_softmax());
        let mut p = in_out(model.parameters()[4..].to_vec());
        p.splice(0..0, model.parameters()[..4].to_vec());
        let p = p;
        let nn = best(passes, 10 / scale.min(5), |_| {
            nn_step(&mut model, &ClassNllCriterion::default(), &x, &y)
        });
        let f = move |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            let h = x.conv2d(&p[0], Some(&p[1]), c).tanh().max_pool2d(pool).0;
            let h = h.conv2d(&p[2], Some(&p[3]), c).tanh().max_pool2d(pool).0;
            let out = (h.reshape(&[32, 5408]).matmul(&p[4]) + &p[5]).log_softmax(1);
            -out.gather(1, &y.unsqueeze(1)).mean()
        };
        let whole = compile(move |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            sgd(p, &grad(f).call(p, (x, y)).0)
        });
        let (ag, opt, whole) = direct_and_optimized(
            passes,
            10 / scale.min(5),
            f,
            p,
            |df, p, _| sgd(p, &df.call(p, (&x, &y)).0),
            |p, _| whole.call_donating(p, (&x, &y)),
        );
        rows.push(Row {
            name: "cnn batched",
            nn,
            ag,
            opt,
            whole,
        });
    }
    // lstm: 33 steps of 100 features, LSTM 100 -> 200 (last), linear 200 -> 10; batch 1 and 32
    for (name, batch) in [("lstm", 1usize), ("lstm batched", 32)] {
        if !want(name) {
            continue;
        }
        let x = randn(&mut rng, &[batch, 33, 100]);
        let y = labels(&mut rng, batch);
        let (rnn, rp) = RecurrentNetwork::new(Cell::Lstm, 100, 200, Output::Last, &mut rng, F32);
        let head = Linear::new(200, 10, &mut rng, F32).parameters();
        // (a) functional layers with hand-written gradients
        let mut p = (rp.clone(), head.clone());
        let df = grad(
            |p: &(ferrograd_nn::models::RecurrentParams, Vec<Tensor>), x: &Tensor, y: &Tensor| {
                let (h, _) = rnn.forward(&p.0, x, &RecurrentState::default());
                F::class_nll(
                    &F::log_softmax(&F::linear(&h, &p.1[0], Some(&p.1[1])), 1),
                    y,
                )
            },
        );
        let steps = if batch == 1 { 40 } else { 10 } / scale.min(5);
        let nn = best(passes, steps, |_| {
            let (g, _) = df.call(&p, (&x, &y));
            p = (
                ferrograd::rebuild(
                    &p.0,
                    sgd(&ferrograd::leaves(&p.0), &ferrograd::leaves(&g.0)),
                ),
                sgd(&p.1, &g.1),
            );
        });
        // (b) plain tensor code
        let q = (
            rp.w.clone(),
            rp.b.clone(),
            head[0].t().contiguous(),
            head[1].clone(),
        );
        let lstm = |q: &(Tensor, Tensor, Tensor, Tensor), x: &Tensor, y: &Tensor| {
            let (b, hsz) = (x.size(0), 200);
            let (mut h, mut c) = (Tensor::zeros(&[b, hsz], F32), Tensor::zeros(&[b, hsz], F32));
            for t in 0..x.size(1) {
                let gates = (Tensor::cat(&[x.select(1, t), h.clone()], 1).matmul(&q.0) + &q.1)
                    .reshape(&[b, 4, hsz]);
                let ifo = gates.narrow(1, 0, 3).sigmoid();
                c = &ifo.select(1, 1) * &c + &ifo.select(1, 0) * &gates.select(1, 3).tanh();
                h = &ifo.select(1, 2) * &c.tanh();
            }
            let out = (h.matmul(&q.2) + &q.3).log_softmax(1);
            -out.gather(1, &y.unsqueeze(1)).mean()
        };
        let update = |q: &(Tensor, Tensor, Tensor, Tensor),
                      g: &(Tensor, Tensor, Tensor, Tensor)| {
            (
                &q.0 - &(&g.0 * 0.01),
                &q.1 - &(&g.1 * 0.01),
                &q.2 - &(&g.2 * 0.01),
                &q.3 - &(&g.3 * 0.01),
            )
        };
        let whole = compile(
            move |q: &(Tensor, Tensor, Tensor, Tensor), x: &Tensor, y: &Tensor| {
                update(q, &grad(lstm).call(q, (x, y)).0)
            },
        );
        let (ag, opt, whole) = direct_and_optimized(
            passes,
            steps,
            lstm,
            q,
            |df, q, _| update(q, &df.call(q, (&x, &y)).0),
            |q, _| whole.call_donating(q, (&x, &y)),
        );
        rows.push(Row {
            name,
            nn,
            ag,
            opt,
            whole,
        });
    }
    // AutoModule batched: 32 x 100, Linear 100 -> 1000, ReLU, Linear 1000 -> 100, MSE
    if want("AutoModule batched") {
        let mult = Tensor::new(rng.uniform(&[100], 0.0, 1.0, F32));
        let x = &Tensor::new(rng.uniform(&[32, 100], -5.0, 5.0, F32)) * &mult;
        let y = (&x * 0.1).exp();
        let l1 = Linear::new(100, 1000, &mut rng, F32);
        let l2 = Linear::new(1000, 100, &mut rng, F32);
        let (w1, b1, w2, b2) = (
            l1.parameters()[0].clone(),
            l1.parameters()[1].clone(),
            l2.parameters()[0].clone(),
            l2.parameters()[1].clone(),
        );
        let mut plain = Sequential::new().add(l1).add(layers::relu()).add(l2);
        let nn = best(passes, 100 / scale, |_| {
            nn_step(&mut plain, &MseCriterion::default(), &x, &y)
        });
        let linear_relu = |x: &Tensor, w: &Tensor, b: &Tensor| {
            let h = x.matmul(&w.t()) + b;
            (h.abs() + &h) * 0.5
        };
        let linear = |x: &Tensor, w: &Tensor, b: &Tensor| x.matmul(&w.t()) + b;
        let mut auto = Sequential::new()
            .add(AutoModule::new("AutoLinearReLU", linear_relu, w1, b1))
            .add(AutoModule::new("AutoLinear", linear, w2, b2));
        let mse = |x: &Tensor, t: &Tensor| (x - t).square().mean();
        let (model, params) = ferrograd_nn::functionalize(&auto);
        let criterion = AutoCriterion::new("AutoMSE", mse);
        let ag = best(passes, 100 / scale, |_| {
            nn_step(&mut auto, &criterion, &x, &y)
        });
        // optimize mode compiles the whole model: its function, differentiated
        let f = move |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| mse(&model(p, x), y);
        let g = f.clone();
        let whole = compile(move |p: &Vec<Tensor>, x: &Tensor, y: &Tensor| {
            sgd(p, &grad(g.clone()).call(p, (x, y)).0)
        });
        let (_, opt, whole) = direct_and_optimized(
            passes,
            100 / scale,
            f,
            params,
            |df, p, _| sgd(p, &df.call(p, (&x, &y)).0),
            |p, _| whole.call_donating(p, (&x, &y)),
        );
        rows.push(Row {
            name: "AutoModule batched",
            nn,
            ag,
            opt,
            whole,
        });
    }

    println!(
        "{:<22} {:>14} {:>14} {:>8} {:>14} {:>9} {:>10} {:>14} {:>9} {:>10}",
        format!("ferrograd (f32, {})", simd_level()),
        "nn / step",
        "ag / step",
        "ag/nn",
        "opt / step",
        "ag/opt",
        "capture",
        "step compiled",
        "ag/step",
        "capture"
    );
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    for r in rows {
        let columns = |t: Compiled| match t {
            Some((o, c)) => format!(
                "{:>11.1} µs {:>8.2}x {:>7.1} ms",
                us(o),
                r.ag.as_secs_f64() / o.as_secs_f64(),
                c.as_secs_f64() * 1e3
            ),
            None => format!("{:>14} {:>9} {:>10}", "-", "-", "-"),
        };
        println!(
            "{:<22} {:>11.1} µs {:>11.1} µs {:>7.2}x {} {}",
            r.name,
            us(r.nn),
            us(r.ag),
            r.ag.as_secs_f64() / r.nn.as_secs_f64(),
            columns(r.opt),
            columns(r.whole)
        );
    }
}
