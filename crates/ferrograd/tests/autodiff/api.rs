use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ferrograd::{grad, leaf_names, vjp, DType, Generator, Tensor, Tree};

use crate::common::*;

#[derive(Tree, Clone)]
struct Layer {
    w: Tensor,
    b: Tensor,
}

#[derive(Tree, Clone)]
struct Net<T> {
    layers: Vec<Layer>,
    extra: T,
    #[tree(skip)]
    name: &'static str,
}

#[derive(Tree, Clone)]
struct Pair(Tensor, Option<Tensor>);

#[test]
fn derived_trees_name_their_leaves_and_come_back_in_the_same_type() {
    let mut rng = Generator::new(1);
    let layer = |rng: &mut Generator| Layer {
        w: rand(rng, &[2, 2], -1.0, 1.0),
        b: rand(rng, &[2], -1.0, 1.0),
    };
    let net = Net {
        layers: vec![layer(&mut rng), layer(&mut rng)],
        extra: Pair(rand(&mut rng, &[2], -1.0, 1.0), None),
        name: "mlp",
    };
    assert_eq!(
        leaf_names(&net),
        vec![
            "layers.0.w",
            "layers.0.b",
            "layers.1.w",
            "layers.1.b",
            "extra.0"
        ]
    );
    // f = Σ_layers sum(w) * 2 + sum(b) * 3 + sum(extra.0²): each gradient is known in closed form
    let f = |p: &Net<Pair>| {
        let mut total = (&p.extra.0 * &p.extra.0).sum();
        for l in &p.layers {
            total = total + l.w.sum() * 2.0 + l.b.sum() * 3.0;
        }
        total
    };
    let (g, _) = grad(f).call(&net, ());
    assert_eq!(g.name, "mlp");
    for l in &g.layers {
        assert_eq!(l.w.to_f64_vec(), vec![2.0; 4]);
        assert_eq!(l.b.to_f64_vec(), vec![3.0; 2]);
    }
    assert_close(&g.extra.0, &net.extra.0.mul_scalar(2.0).to_f64_vec(), 1e-12);
    assert!(g.extra.1.is_none());
}

#[test]
fn std_collections_are_trees() {
    // f = Σ over every leaf of sum(leaf * k) with a different k per leaf
    let x = |v: f64| Tensor::from_vec(vec![v, v], &[2]);
    let mut bt = BTreeMap::new();
    bt.insert("b".to_string(), x(1.0));
    bt.insert("a".to_string(), x(2.0));
    let mut hm: HashMap<String, Tensor> = HashMap::new();
    hm.insert("z".into(), x(3.0));
    hm.insert("y".into(), x(4.0));
    let params = (bt, hm, [x(5.0), x(6.0)], vec![Some(x(7.0)), None]);
    assert_eq!(
        leaf_names(&params),
        vec!["0.a", "0.b", "1.y", "1.z", "2.0", "2.1", "3.0"]
    );
    // names too long for the stack buffer they are built in
    let long = "k".repeat(150);
    let mut deep = BTreeMap::new();
    deep.insert(long.clone(), vec![x(1.0), x(2.0)]);
    let mut outer = BTreeMap::new();
    outer.insert("m".repeat(100), deep);
    let names = leaf_names(&outer);
    let stem = format!("{}.{long}", "m".repeat(100));
    assert_eq!(names, vec![format!("{stem}.0"), format!("{stem}.1")]);
    type P = (
        BTreeMap<String, Tensor>,
        HashMap<String, Tensor>,
        [Tensor; 2],
        Vec<Option<Tensor>>,
    );
    let f = |p: &P| {
        let mut total = Tensor::scalar(0.0f64);
        for (i, leaf) in ferrograd::leaves(p).iter().enumerate() {
            total = total + (leaf * (i as f64 + 1.0)).sum();
        }
        total
    };
    let (g, _) = grad(f).call(&params, ());
    let got: Vec<f64> = ferrograd::leaves(&g)
        .iter()
        .map(|t| t.to_f64_vec()[0])
        .collect();
    assert_eq!(got, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(g.1["z"].to_f64_vec(), vec![4.0, 4.0]);
}

#[test]
fn only_the_first_argument_is_differentiated_and_several_inputs_work() {
    // f(w; x, y) = sum((w * x - y)²): df/dw = 2 x (w x - y)
    let f = |w: &Tensor, x: &Tensor, y: &Tensor| (w * x - y).square().sum();
    let w = Tensor::from_vec(vec![0.5f64, -1.0], &[2]);
    let x = Tensor::from_vec(vec![2.0f64, 3.0], &[2]);
    let y = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
    let df = grad(f);
    let (g, loss) = df.call(&w, (&x, &y));
    assert_close(
        &g,
        &[2.0 * 2.0 * (1.0 - 1.0), 2.0 * 3.0 * (-3.0 - 1.0)],
        1e-12,
    );
    assert_close(&loss, &[0.0 + 16.0], 1e-12);
    assert!(!loss.is_traced(), "outputs come back untraced");
    // the same builder again, other inputs
    let (g, _) = df.call(&w, (&y, &x));
    assert_close(
        &g,
        &[2.0 * 1.0 * (0.5 - 2.0), 2.0 * 1.0 * (-1.0 - 3.0)],
        1e-12,
    );
}

#[test]
fn unused_and_integer_leaves_get_zero_gradients() {
    let p = (
        Tensor::from_vec(vec![1.0f64], &[1]),
        Tensor::from_vec(vec![2.0f64, 3.0], &[2]),
        Tensor::from_vec(vec![4i64], &[1]),
    );
    let (g, _) = grad(|p: &(Tensor, Tensor, Tensor)| p.0.sum() * 3.0).call(&p, ());
    assert_eq!(g.0.to_f64_vec(), vec![3.0]);
    assert_eq!(g.1.to_f64_vec(), vec![0.0, 0.0]);
    assert_eq!(g.2.dtype(), DType::I64);
    assert_eq!(g.2.to_vec::<i64>(), vec![0]);
    // a loss that does not depend on the parameters at all
    let (g, loss) = grad(|_: &Tensor| Tensor::scalar(5.0f64)).call(&p.0, ());
    assert_eq!(g.to_f64_vec(), vec![0.0]);
    assert_eq!(loss.item::<f64>(), 5.0);
}

#[test]
fn auxiliary_outputs_come_back_untouched() {
    // returns (loss, (prediction, a count))
    let f = |w: &Tensor, x: &Tensor| {
        let pred = w * x;
        (pred.sum(), (pred.clone(), 42usize))
    };
    let w = Tensor::from_vec(vec![2.0f64, 3.0], &[2]);
    let x = Tensor::from_vec(vec![5.0f64, 7.0], &[2]);
    let (g, (loss, (pred, n))) = grad(f).call(&w, (&x,));
    assert_eq!(g.to_f64_vec(), vec![5.0, 7.0]);
    assert_eq!(loss.item::<f64>(), 31.0);
    assert_eq!(pred.to_f64_vec(), vec![10.0, 21.0]);
    assert!(!pred.is_traced());
    assert_eq!(n, 42);
}

#[test]
fn forward_and_gradient_flags_and_partial_gradients() {
    let f = |w: &Tensor| w.square();
    let w = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let seed = Tensor::from_vec(vec![10.0f64, 100.0], &[2]);
    // partial_grad: a tensor output with its gradient given; d(w²) = 2w ⊙ seed
    let out = grad(f).partial_grad(true).run(&w, (), Some(&seed));
    assert_eq!(out.grads.unwrap().to_f64_vec(), vec![20.0, 400.0]);
    assert_eq!(out.output.unwrap().to_f64_vec(), vec![1.0, 4.0]);
    let out = grad(f)
        .partial_grad(true)
        .with_forward(false)
        .run(&w, (), Some(&seed));
    assert!(out.output.is_none());
    assert!(out.grads.is_some());
    let out = grad(f).with_gradients(false).run(&w, (), None);
    assert!(out.grads.is_none());
    assert_eq!(out.output.unwrap().to_f64_vec(), vec![1.0, 4.0]);
    let (g, y) = vjp(f, &w, (), &seed);
    assert_eq!(g.to_f64_vec(), vec![20.0, 400.0]);
    assert_eq!(y.to_f64_vec(), vec![1.0, 4.0]);
}

#[test]
fn graphs_are_dynamic() {
    // The loop count and the branch depend on the input's values, differently each call.
    let f = |x: &Tensor| {
        let mut y = x.clone();
        let steps = x.sum().item::<f64>().abs().ceil() as usize;
        for _ in 0..steps {
            y = if y.sum().item::<f64>() > 0.0 {
                &y * 0.5
            } else {
                &y * &y
            };
        }
        y.sum()
    };
    // x = [1, 1]: two halvings, d/dx = 0.25
    let (g, _) = grad(f).call(&Tensor::from_vec(vec![1.0f64, 1.0], &[2]), ());
    assert_close(&g, &[0.25, 0.25], 1e-12);
    // x = [-1, -1]: two steps, first squares (sum < 0) then halves: y = x² / 2, dy = x
    let (g, _) = grad(f).call(&Tensor::from_vec(vec![-1.0f64, -1.0], &[2]), ());
    assert_close(&g, &[-1.0, -1.0], 1e-12);
}

#[test]
fn closures_over_tensors() {
    let scale = Tensor::from_vec(vec![3.0f64, 4.0], &[2]);
    let f = move |w: &Tensor| (w * &scale).sum();
    let (g, _) = grad(f).call(&Tensor::from_vec(vec![1.0f64, 1.0], &[2]), ());
    assert_eq!(g.to_f64_vec(), vec![3.0, 4.0]);
}

#[test]
fn gradients_keep_the_parameters_dtype() {
    let f = |w: &Tensor| w.tanh().sum();
    let w32 = Tensor::from_vec(vec![0.5f32, -0.25], &[2]);
    let (g32, _) = grad(f).call(&w32, ());
    assert_eq!(g32.dtype(), DType::F32);
    let (g64, _) = grad(f).call(&w32.to_dtype(DType::F64), ());
    for (a, b) in g32.to_f64_vec().iter().zip(g64.to_f64_vec()) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn profiler_counts_forward_and_backward() {
    let f = |w: &Tensor| (w.exp() * 2.0).sum();
    let df = grad(f).profile(true);
    for _ in 0..3 {
        df.call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    }
    let totals = df.with_profile(|p| (p.calls(), p.totals())).unwrap();
    assert_eq!(totals.0, 3);
    let exp = totals.1.iter().find(|r| r.0 == "exp").expect("exp row");
    assert_eq!(
        (exp.1, exp.3),
        (3, 3),
        "3 forward and 3 backward calls of exp"
    );
    let report = df.profile_report();
    assert!(
        report.contains("exp") && report.contains("tests/autodiff/api.rs:"),
        "{report}"
    );
}

#[test]
fn flat_argmax_and_allclose() {
    let x = Tensor::from_vec(vec![1.0f64, 7.0, -3.0, 7.0], &[2, 2]);
    assert_eq!(x.argmax_all().item::<i64>(), 1);
    assert_eq!(x.argmin_all().item::<i64>(), 2);
    assert!(x.allclose(&(&x + 1e-12), 1e-9, 0.0));
    assert!(!x.allclose(&(&x + 1e-3), 1e-9, 0.0));
}

/// The two-layer net the gradient-hook tests differentiate: leaves w1, b1, w2, b2, an unused
/// matrix and an integer leaf.
fn hooked_net() -> (Vec<Layer>, Tensor, Tensor) {
    let mut g = Generator::new(5);
    let layer = |g: &mut Generator, i, o| Layer {
        w: Tensor::randn(g, &[i, o], DType::F64),
        b: Tensor::randn(g, &[o], DType::F64),
    };
    (
        vec![layer(&mut g, 4, 3), layer(&mut g, 3, 2)],
        Tensor::randn(&mut g, &[2, 2], DType::F64),
        Tensor::from_vec(vec![1i64, 2], &[2]),
    )
}

/// What the hook tests log: a gradient reported, or the backward pass crossing the marker
/// between the two layers.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Grad(usize),
    Marker,
}

/// The identity, whose array-level backward logs `Event::Marker` when it runs: in direct
/// mode and in a replay alike.
#[derive(Debug)]
struct Marker(Arc<Mutex<Vec<Event>>>);

impl ferrograd::CustomOp for Marker {
    fn name(&self) -> &str {
        "marker"
    }
    fn forward(&self, x: &[&ferrograd::Array]) -> ferrograd::Array {
        x[0].copy()
    }
    fn backward_array(
        &self,
        _: &[&ferrograd::Array],
        _: &ferrograd::Array,
        g: &ferrograd::Array,
        _: &[bool],
    ) -> Vec<Option<ferrograd::Array>> {
        self.0.lock().unwrap().push(Event::Marker);
        vec![Some(g.copy())]
    }
}

/// Runs the net with an `on_gradient` hook `calls` times, returning the last call's
/// gradients and what the hook and the marker logged in it, in order.
fn hooked_call(optimize: bool, calls: usize) -> (Vec<Tensor>, Vec<Event>, Vec<Tensor>) {
    let params = hooked_net();
    let x = Tensor::randn(&mut Generator::new(6), &[5, 4], DType::F64);
    let log = Arc::new(Mutex::new(Vec::new()));
    let marker = Arc::new(Marker(log.clone()));
    let loss = move |p: &(Vec<Layer>, Tensor, Tensor), x: &Tensor| {
        let h = (&x.matmul(&p.0[0].w) + &p.0[0].b).tanh();
        let h = Tensor::custom(marker.clone(), &[&h]);
        (&h.matmul(&p.0[1].w) + &p.0[1].b).square().sum()
    };
    let told = Arc::new(Mutex::new(Vec::new()));
    let (sink, events) = (told.clone(), log.clone());
    let g = grad(loss).optimize(optimize).on_gradient(move |i, g| {
        sink.lock().unwrap().push(g.clone());
        events.lock().unwrap().push(Event::Grad(i));
    });
    let mut grads = Vec::new();
    for _ in 0..calls {
        told.lock().unwrap().clear();
        log.lock().unwrap().clear();
        grads = ferrograd::leaves(&g.call(&params, (&x,)).0);
    }
    let events = log.lock().unwrap().clone();
    let told = told.lock().unwrap().clone();
    (grads, events, told)
}

/// Checks the hook's log: each leaf once, with the gradient the call returned; the second
/// layer's before the marker, the first layer's after it.
fn check_hook_log(grads: &[Tensor], events: &[Event], told: &[Tensor], what: &str) {
    let order: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            Event::Grad(i) => Some(*i),
            Event::Marker => None,
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..6).collect::<Vec<_>>(), "{what}: {events:?}");
    let at = |e: &Event| events.iter().position(|x| x == e).unwrap();
    let marker = at(&Event::Marker);
    for i in [2, 3] {
        assert!(at(&Event::Grad(i)) < marker, "{what}: {events:?}");
    }
    for i in [0, 1] {
        assert!(at(&Event::Grad(i)) > marker, "{what}: {events:?}");
    }
    let values = |t: &Tensor| t.to_dtype(DType::F64).to_vec::<f64>();
    for (&i, g) in order.iter().zip(told) {
        assert_eq!(values(g), values(&grads[i]), "{what}: leaf {i}");
    }
}

#[test]
fn on_gradient_reports_each_gradient_once_as_soon_as_it_is_final() {
    let (grads, events, told) = hooked_call(false, 1);
    check_hook_log(&grads, &events, &told, "direct");
    // the unused matrix and the integer leaf come when the pass ends, with zeros
    assert_eq!(events[5..], [Event::Grad(4), Event::Grad(5)]);
    assert!(told[4].to_vec::<f64>().iter().all(|&v| v == 0.0));
    assert_eq!(told[5].dtype(), DType::I64);
}

#[test]
fn on_gradient_reports_during_a_replay_of_optimize_mode() {
    let (direct, ..) = hooked_call(false, 1);
    // the first call captures (direct mode), the next ones replay
    for calls in [1, 3] {
        let (grads, events, told) = hooked_call(true, calls);
        check_hook_log(&grads, &events, &told, &format!("optimize, {calls} calls"));
        for (g, d) in grads.iter().zip(&direct) {
            assert_close(
                &g.to_dtype(DType::F64),
                &d.to_dtype(DType::F64).to_vec::<f64>(),
                1e-12,
            );
        }
    }
}

#[test]
fn on_gradient_of_a_nested_grad_reports_only_its_own_parameters() {
    let told = Arc::new(Mutex::new(Vec::new()));
    let sink = told.clone();
    let inner = grad(|x: &Tensor| (x * x * x).sum()).on_gradient(move |i, g| {
        sink.lock().unwrap().push((i, g.shape().to_vec()));
    });
    // d/dx Σ (3x²) = 6x
    let (dx, _) = grad(|x: &Tensor| inner.call(x, ()).0.sum())
        .optimize(false)
        .call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    assert_eq!(dx.to_vec::<f64>(), vec![6.0, 12.0]);
    assert_eq!(*told.lock().unwrap(), vec![(0, vec![2])]);
}

#[test]
fn reshape_infers_minus_one_and_expand_keeps_sizes() {
    let x = Tensor::from_vec((0..24).map(f64::from).collect(), &[2, 3, 4]);
    assert_eq!(x.reshape(&[-1, 4]).shape(), &[6, 4]);
    assert_eq!(x.reshape(&[4, -1]).shape(), &[4, 6]);
    let sizes: Vec<i64> = vec![2, -1, 2];
    assert_eq!(x.reshape(&sizes).shape(), &[2, 6, 2]);
    assert_eq!(x.view(&[-1]).shape(), &[24]);
    let n = 3usize;
    assert_eq!(x.reshape(&[2, n, 4]).to_vec::<f64>(), x.to_vec::<f64>());
    assert_eq!(x.reshape(x.shape()).shape(), &[2, 3, 4]);
    let empty = Tensor::zeros(&[0, 3], DType::F64);
    assert_eq!(empty.reshape(&[3, 0]).shape(), &[3, 0]);
    for (bad, why) in [
        (vec![-1i64, -1], "only one size may be -1"),
        (
            vec![5, -1],
            "the other sizes do not divide the element count",
        ),
        (vec![5, 5], "the element counts differ"),
        (vec![-2, 12], "sizes must be non-negative"),
    ] {
        let msg = crate::common::panic_message(|| {
            x.reshape(&bad);
        });
        assert!(
            msg.contains("reshape") && msg.contains("[2, 3, 4]") && msg.contains(why),
            "{msg}"
        );
        assert!(msg.contains("api.rs"), "{msg}");
    }
    let col = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3, 1]);
    let e = col.expand(&[2, -1, 4]);
    assert_eq!(e.shape(), &[2, 3, 4]);
    assert_eq!(e.sum().item::<f64>(), 6.0 * 8.0);
    let msg = crate::common::panic_message(|| {
        col.expand(&[-1, 3, 1]);
    });
    assert!(
        msg.contains("expand") && msg.contains("only valid for existing dims"),
        "{msg}"
    );
    // the gradient of a reshape with an inferred size
    let (g, _) = grad(|x: &Tensor| x.reshape(&[-1, 2]).square().sum()).call(&x, ());
    assert_eq!(g.to_vec::<f64>(), (&x * 2.0).to_vec::<f64>());
}

#[test]
fn multinomial_draws_follow_the_weights() {
    let mut rng = Generator::new(11);
    let n = 40_000;
    // with replacement: frequencies near the normalized weights (5 standard errors)
    let w = Tensor::from_vec(vec![1.0f64, 0.0, 3.0, 6.0], &[4]);
    let k = w.multinomial(&mut rng, n, true).to_vec::<i64>();
    let p = [0.1, 0.0, 0.3, 0.6];
    for (c, &pc) in p.iter().enumerate() {
        let f = k.iter().filter(|&&v| v == c as i64).count() as f64 / n as f64;
        let se = (pc * (1.0 - pc) / n as f64).sqrt();
        assert!((f - pc).abs() <= 5.0 * se + 1e-12, "class {c}: {f} vs {pc}");
    }
    // without replacement: distinct classes; the first pick follows p, the pair (i, j)
    // has probability p_i p_j / (1 - p_i)
    let rows = Tensor::stack(&vec![w.clone(); 4000], 0);
    let picks = rows.multinomial(&mut rng, 2, false).to_vec::<i64>();
    let pairs: Vec<(i64, i64)> = picks.chunks(2).map(|c| (c[0], c[1])).collect();
    assert!(pairs.iter().all(|(a, b)| a != b && *a != 1 && *b != 1));
    let first_of_3 = pairs.iter().filter(|(a, _)| *a == 3).count() as f64 / 4000.0;
    assert!((first_of_3 - 0.6).abs() < 5.0 * (0.24f64 / 4000.0).sqrt());
    let pair_23 = pairs.iter().filter(|&&(a, b)| (a, b) == (2, 3)).count() as f64 / 4000.0;
    let want = 0.3 * 0.6 / 0.7;
    assert!((pair_23 - want).abs() < 5.0 * (want * (1.0 - want) / 4000.0).sqrt());
    // errors
    let msg = crate::common::panic_message(|| {
        w.multinomial(&mut rng, 4, false);
    });
    assert!(msg.contains("fewer classes of positive weight"), "{msg}");
    let msg = crate::common::panic_message(|| {
        Tensor::from_vec(vec![1.0f64, -1.0], &[2]).multinomial(&mut rng, 1, true);
    });
    assert!(
        msg.contains("non-negative") && msg.contains("api.rs"),
        "{msg}"
    );
}
