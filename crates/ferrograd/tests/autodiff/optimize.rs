//! Optimize mode: a replay returns exactly what direct mode returns (bit for bit), or the
//! function is captured again; the cache, the guards, the fallbacks and their warnings.

use std::sync::{Arc, Mutex};

use ferrograd::{compile, grad, hvp, Array, CustomOp, DType, Generator, Index, Tensor, Tree};

use crate::common::{panic_message, rand};

/// Bitwise equality of two tensors.
fn same(a: &Tensor, b: &Tensor) -> bool {
    a.shape() == b.shape()
        && a.dtype() == b.dtype()
        && a.to_f64_vec()
            .iter()
            .zip(b.to_f64_vec())
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[track_caller]
fn assert_same_trees<T: Tree>(a: &T, b: &T) {
    let (la, lb) = (ferrograd::leaves(a), ferrograd::leaves(b));
    assert_eq!(la.len(), lb.len());
    for (i, (x, y)) in la.iter().zip(&lb).enumerate() {
        assert!(same(x, y), "leaf {i}: compiled {x} vs direct {y}");
    }
}

#[derive(Tree, Clone)]
struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
}

fn mlp(p: &Mlp, x: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
    let h = (x.matmul(&p.w1) + &p.b1).relu();
    let out = h.matmul(&p.w2).log_softmax(1);
    let loss = -(&out * y).sum() * (1.0 / x.size(0) as f64);
    (loss, out)
}

fn mlp_params(rng: &mut Generator) -> Mlp {
    Mlp {
        w1: rand(rng, &[4, 8], -1.0, 1.0),
        b1: rand(rng, &[8], -0.5, 0.5),
        w2: rand(rng, &[8, 3], -1.0, 1.0),
    }
}

fn one_hot_rows(rng: &mut Generator, n: usize) -> Tensor {
    let labels = rng.uniform(&[n], 0.0, 3.0, DType::I64).to_vec::<i64>();
    let mut v = vec![0.0; n * 3];
    for (i, l) in labels.iter().enumerate() {
        v[i * 3 + *l as usize] = 1.0;
    }
    Tensor::from_vec(v, &[n, 3])
}

#[test]
fn replays_equal_direct_mode_bitwise_with_new_data_each_call() {
    let mut rng = Generator::new(1);
    let compiled = grad(mlp).optimize(true);
    let direct = grad(mlp);
    let mut p = mlp_params(&mut rng);
    for step in 0..6 {
        let x = rand(&mut rng, &[5, 4], -2.0, 2.0);
        let y = one_hot_rows(&mut rng, 5);
        let (g1, (l1, o1)) = compiled.call(&p, (&x, &y));
        let (g2, (l2, o2)) = direct.call(&p, (&x, &y));
        assert_same_trees(&g1, &g2);
        assert!(same(&l1, &l2) && same(&o1, &o2), "step {step}");
        p = Mlp {
            w1: &p.w1 - &(&g1.w1 * 0.1),
            b1: &p.b1 - &(&g1.b1 * 0.1),
            w2: &p.w2 - &(&g1.w2 * 0.1),
        };
    }
    let s = compiled.stats();
    assert_eq!(
        (s.calls, s.captures, s.hits, s.fallbacks),
        (6, 1, 5, 0),
        "{s:?}"
    );
}

#[test]
fn a_new_shape_is_a_new_signature() {
    let mut rng = Generator::new(2);
    let compiled = grad(mlp).optimize(true);
    let p = mlp_params(&mut rng);
    for n in [5, 7, 5, 7, 9] {
        let x = rand(&mut rng, &[n, 4], -2.0, 2.0);
        let y = one_hot_rows(&mut rng, n);
        let (g, _) = compiled.call(&p, (&x, &y));
        let (want, _) = grad(mlp).call(&p, (&x, &y));
        assert_same_trees(&g, &want);
    }
    let s = compiled.stats();
    assert_eq!((s.captures, s.hits, s.plans), (3, 2, 3), "{s:?}");
}

/// The seed's LessThan test, which its optimize mode had to skip: a branch on a value read
/// from the data, alternating every call.
#[test]
fn a_branch_on_a_read_value_takes_the_right_path_every_call() {
    // f = Σx² when Σx < 0, else Σ 3x; df/dx = 2x or 3
    let f = |x: &Tensor| {
        if x.sum().item::<f64>() < 0.0 {
            x.square().sum()
        } else {
            (x * 3.0).sum()
        }
    };
    let df = grad(f).optimize(true);
    for i in 0..10 {
        let sign = if i % 2 == 0 { -1.0 } else { 1.0 };
        let x = Tensor::from_vec(vec![sign * 1.5, sign * 0.5 + i as f64 * 0.01], &[2]);
        let (dx, y) = df.call(&x, ());
        let v = x.to_vec::<f64>();
        let (want_dx, want_y) = if v[0] + v[1] < 0.0 {
            (vec![2.0 * v[0], 2.0 * v[1]], v[0] * v[0] + v[1] * v[1])
        } else {
            (vec![3.0, 3.0], 3.0 * (v[0] + v[1]))
        };
        assert_eq!(dx.to_vec::<f64>(), want_dx, "call {i}");
        assert!((y.item::<f64>() - want_y).abs() < 1e-12, "call {i}");
    }
    let s = df.stats();
    // the read value differs on every call, so each call misses once; but both branches are
    // right, and nothing was ever stale
    assert_eq!(s.calls, 10);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("tests/autodiff/optimize.rs")),
        "{s:?}"
    );
}

/// Two reads, the second of a value computed after the first read's branch: every one of
/// the four paths is captured once and then replayed. A miss at the second guard inside a
/// branch that an earlier miss added compared the new recording with that branch's
/// renumbered values, found them different and ran the signature in direct mode for good.
#[test]
fn a_guard_inside_a_branch_added_by_a_miss_takes_new_variants() {
    let f = |x: &Tensor| {
        let y = if x.select(0, 0).lt_scalar(0.0).item::<bool>() {
            x.square()
        } else {
            x * 3.0
        };
        if y.select(0, 1).lt_scalar(1.0).item::<bool>() {
            y.sum()
        } else {
            y.exp().sum()
        }
    };
    let df = grad(f).optimize(true).fusion(false);
    // (x₀ < 0, y₁ < 1): (no, no), (yes, no), (yes, yes), (no, yes), then each again
    let xs = [[1.0, 1.0], [-1.0, 2.0], [-1.0, 0.5], [1.0, 0.1]];
    for round in 0..2 {
        for (i, x) in xs.iter().enumerate() {
            let x = Tensor::from_vec(x.to_vec(), &[2]);
            let (dx, y) = df.call(&x, ());
            let (want_dx, want_y) = grad(f).call(&x, ());
            assert!(
                same(&dx, &want_dx) && same(&y, &want_y),
                "round {round}, path {i}: {dx} vs {want_dx}"
            );
        }
    }
    let s = df.stats();
    assert_eq!(
        (
            s.captures,
            s.guard_failures,
            s.hits,
            s.fallbacks,
            s.variants
        ),
        (4, 3, 4, 0, 4),
        "{s:?}"
    );
    assert!(s.warnings.is_empty(), "{s:?}");
}

/// A decision tree three reads deep, each read of a value the branch before computed,
/// visited in a random order with new data each call: every call gives direct mode's bits,
/// each of the paths is captured once (a miss at any depth files a new variant) and nothing
/// falls back to direct mode.
#[test]
fn every_path_of_a_three_deep_decision_tree_is_captured_once() {
    // returns the value after each level too: outputs defined on every stretch of a path
    let f = |x: &Tensor| {
        let mut y = x.clone();
        let mut levels = Vec::new();
        for level in 0..3 {
            // both branches keep each element's sign, so the path is x's signs
            y = if y.select(0, level).lt_scalar(0.0).item::<bool>() {
                y.sinh()
            } else {
                &y * &y.abs() + &y
            };
            levels.push(y.clone());
        }
        (y.tanh().sum(), levels)
    };
    let df = grad(f).optimize(true).fusion(false);
    let mut rng = Generator::new(41);
    let mut paths = std::collections::HashSet::new();
    for call in 0..48 {
        let magnitude = rand(&mut rng, &[4], 0.2, 1.0).to_vec::<f64>();
        let signs = rng.uniform(&[3], 0.0, 2.0, DType::I64).to_vec::<i64>();
        paths.insert(signs.clone());
        let v: Vec<f64> = (0..4)
            .map(|i| magnitude[i] * if i < 3 && signs[i] == 1 { -1.0 } else { 1.0 })
            .collect();
        let x = Tensor::from_vec(v, &[4]);
        let (dx, (y, levels)) = df.call(&x, ());
        let (want_dx, (want_y, want_levels)) = grad(f).call(&x, ());
        assert!(
            same(&dx, &want_dx) && same(&y, &want_y),
            "call {call}, path {signs:?}"
        );
        assert_same_trees(&levels, &want_levels);
    }
    let s = df.stats();
    assert_eq!(paths.len(), 8, "the draws visit every path");
    assert_eq!(
        (s.captures, s.guard_failures, s.fallbacks, s.variants),
        (8, 7, 0, 8),
        "{s:?}"
    );
    assert!(s.warnings.is_empty(), "{s:?}");
    // more paths than the cache holds: direct mode, saying why and where
    let small = grad(f).optimize(true).cache_size(4);
    for bits in 0..8 {
        let sign = |i: usize| if bits >> i & 1 == 1 { -0.5 } else { 0.5 };
        let x = Tensor::from_vec(vec![sign(0), sign(1), sign(2), 0.5], &[4]);
        let (dx, _) = small.call(&x, ());
        assert!(same(&dx, &grad(f).call(&x, ()).0));
    }
    let s = small.stats();
    assert!(
        s.warnings.len() == 1
            && s.warnings[0]
                .contains("gave this signature 5 variants of its plan, more than cache_size (4)")
            && s.warnings[0].contains("tests/autodiff/optimize.rs")
            && s.warnings[0].contains("a branch with more outcomes needs a larger cache_size"),
        "{s:?}"
    );
}

/// A loop whose number of iterations depends on the data (halve until the norm is below
/// 1): each count is a path of reads, each longer one a miss inside the branch the shorter
/// one added. All counts replay, each the bits of direct mode.
#[test]
fn a_loop_that_runs_until_the_data_says_stop_replays_every_count() {
    let f = |w: &Tensor, x: &Tensor| {
        let mut y = x.matmul(w);
        let mut n = 0;
        while y.square().sum().gt_scalar(1.0).item::<bool>() && n < 20 {
            y = (&y * 0.5).tanh() + &y * 0.25;
            n += 1;
        }
        (y.sum(), Tensor::scalar(n as f64))
    };
    let df = grad(f).optimize(true).fusion(false).cache_size(16);
    let mut rng = Generator::new(9);
    let w = rand(&mut rng, &[3, 2], -1.0, 1.0);
    let mut counts = std::collections::BTreeSet::new();
    for i in 0..60 {
        let x = &rand(&mut rng, &[4, 3], -1.0, 1.0) * (0.3 + (i % 7) as f64);
        let (g, (loss, n)) = df.call(&w, (&x,));
        let (want_g, (want_loss, want_n)) = grad(f).call(&w, (&x,));
        assert!(
            same(&g, &want_g) && same(&loss, &want_loss) && same(&n, &want_n),
            "call {i}"
        );
        counts.insert(want_n.item::<f64>() as u32);
    }
    let s = df.stats();
    assert!(counts.len() >= 5, "iteration counts {counts:?}");
    assert_eq!(
        (s.captures as usize, s.variants, s.fallbacks),
        (counts.len(), counts.len(), 0),
        "{s:?}"
    );
    assert!(s.warnings.is_empty(), "{s:?}");
}

#[test]
fn a_read_that_repeats_is_a_guard_that_holds() {
    // the branch depends on the sign only: a comparison read as bool
    let f = |x: &Tensor| {
        let positive = x.sum().gt_scalar(0.0).item::<bool>();
        if positive {
            x.exp().sum()
        } else {
            x.sin().sum()
        }
    };
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(3);
    for i in 0..12 {
        let sign = if i % 3 == 0 { -1.0 } else { 1.0 };
        let x = &rand(&mut rng, &[4], 0.1, 1.0) * sign;
        let (dx, _) = df.call(&x, ());
        let want = if sign > 0.0 { x.exp() } else { x.cos() };
        assert!(same(&dx, &want), "call {i}: {dx} vs {want}");
    }
    let s = df.stats();
    assert_eq!(
        (s.captures, s.guard_failures, s.variants),
        (2, 1, 2),
        "{s:?}"
    );
    assert_eq!(s.hits, 10);
    let text = df.plan_text();
    assert!(
        text.contains("guard") && text.contains("optimize.rs"),
        "{text}"
    );
}

#[test]
fn changing_shapes_past_the_cache_size_warn_once_and_fall_back() {
    let f = |x: &Tensor| x.tanh().sum();
    let df = grad(f).optimize(true).cache_size(3);
    for n in 1..=10 {
        let x = Tensor::ones(&[n], DType::F64);
        let (dx, _) = df.call(&x, ());
        assert!(same(&dx, &grad(f).call(&x, ()).0));
    }
    let s = df.stats();
    assert_eq!(s.warnings.len(), 1, "{s:?}");
    assert!(
        s.warnings[0].contains("more than 3 different input signatures")
            && s.warnings[0].contains("params [")
            && s.warnings[0].contains("became"),
        "{}",
        s.warnings[0]
    );
    // three plans, three evictions, then direct mode for the remaining four calls
    assert_eq!((s.captures, s.fallbacks), (6, 4), "{s:?}");
}

#[test]
fn a_plain_number_argument_is_part_of_the_signature() {
    let f = |x: &Tensor, k: &usize| x.narrow(0, *k, 1).sum();
    let df = grad(f).optimize(true);
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    for k in [0usize, 2, 0, 1, 2] {
        let (dx, _) = df.call(&x, (&k,));
        let mut want = vec![0.0; 3];
        want[k] = 1.0;
        assert_eq!(dx.to_vec::<f64>(), want);
    }
    assert_eq!(df.stats().captures, 3);
}

#[test]
fn verify_catches_a_tensor_read_through_a_mutex() {
    let scale = Arc::new(Mutex::new(Tensor::scalar(2.0f64)));
    let hidden = Arc::clone(&scale);
    let f = move |x: &Tensor| (x * &*hidden.lock().unwrap()).sum();
    let df = grad(f).optimize(true).verify(1);
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    df.call(&x, ());
    df.call(&x, ());
    *scale.lock().unwrap() = Tensor::scalar(5.0f64);
    let message = panic_message(|| {
        df.call(&x, ());
    });
    assert!(
        message.contains("verify found") && message.contains("differs from direct mode"),
        "{message}"
    );
}

#[test]
fn random_draws_run_in_direct_mode_with_a_warning() {
    // dropout-like: a mask drawn from a generator passed in
    let f = |x: &Tensor, rng: &mut Generator| {
        let keep = Tensor::new(rng.bernoulli(x.shape(), 0.5, DType::F64));
        (x * &keep).sum()
    };
    let df = grad(f).optimize(true);
    let (mut a, mut b) = (Generator::new(9), Generator::new(9));
    let x = Tensor::from_vec(vec![1.0f64; 16], &[16]);
    for _ in 0..4 {
        let (g1, _) = df.call(&x, (&mut a,));
        let (g2, _) = grad(f).call(&x, (&mut b,));
        assert!(same(&g1, &g2), "same seed, same masks");
    }
    let s = df.stats();
    assert_eq!((s.captures, s.hits), (1, 0), "{s:?}");
    assert!(
        s.warnings[0].contains("draws random numbers"),
        "{:?}",
        s.warnings
    );
}

#[test]
fn a_side_effect_makes_the_signature_run_in_direct_mode() {
    let count = Arc::new(Mutex::new(0));
    let c = Arc::clone(&count);
    let f = move |x: &Tensor| {
        *c.lock().unwrap() += 1;
        ferrograd::side_effect("counts calls");
        x.sum()
    };
    let df = grad(f).optimize(true);
    for _ in 0..3 {
        df.call(&Tensor::ones(&[2], DType::F64), ());
    }
    assert_eq!(*count.lock().unwrap(), 3, "the function ran every time");
    assert!(df.stats().warnings[0].contains("counts calls"));
}

#[test]
fn a_tensor_rebuilt_from_computed_data_is_refused_not_frozen() {
    // rebuilding a tensor from the array of a computed value, outside any op, would freeze
    // it into the plan
    let f = |x: &Tensor| {
        let y = x.exp();
        let frozen = Tensor::new(y.value().clone());
        (x * &frozen).sum()
    };
    let df = grad(f).optimize(true);
    for v in [1.0f64, 2.0, 3.0] {
        let x = Tensor::from_vec(vec![v], &[1]);
        let (dx, _) = df.call(&x, ());
        assert_eq!(dx.to_vec::<f64>(), vec![v.exp()]);
    }
    assert!(
        df.stats().warnings[0].contains("outside any op"),
        "{:?}",
        df.stats()
    );
    // rebuilt and returned: the message says so and names the call's line, no library line
    let g = |x: &Tensor| Tensor::new(x.exp().value().clone());
    let fg = grad(g).optimize(true).with_gradients(false);
    let mut line = 0;
    for v in [1.0f64, 2.0, 3.0] {
        let x = Tensor::from_vec(vec![v], &[1]);
        line = line!() + 1;
        let out = fg.run(&x, (), None);
        assert_eq!(out.output.unwrap().to_vec::<f64>(), vec![v.exp()]);
    }
    let warning = &fg.stats().warnings[0];
    assert!(
        warning.contains("outside any op and returned")
            && warning.contains(&format!("optimize.rs:{line}"))
            && !warning.contains("src/compile"),
        "{warning}"
    );
}

#[test]
fn with_forward_with_gradients_and_partial_grad_replay() {
    let f = |w: &Tensor, x: &Tensor| (x.matmul(w)).tanh();
    let mut rng = Generator::new(4);
    let w = rand(&mut rng, &[3, 2], -1.0, 1.0);
    let vjp_c = grad(f)
        .optimize(true)
        .partial_grad(true)
        .with_forward(false);
    let fwd_c = grad(f).optimize(true).with_gradients(false);
    for _ in 0..3 {
        let x = rand(&mut rng, &[4, 3], -1.0, 1.0);
        let seed = rand(&mut rng, &[4, 2], -1.0, 1.0);
        let got = vjp_c.run(&w, (&x,), Some(&seed));
        let want = grad(f).partial_grad(true).run(&w, (&x,), Some(&seed));
        assert!(got.output.is_none());
        assert!(same(
            got.grads.as_ref().unwrap(),
            want.grads.as_ref().unwrap()
        ));
        let out = fwd_c.run(&w, (&x,), None);
        assert!(out.grads.is_none());
        assert!(same(out.output.as_ref().unwrap(), &f(&w, &x)));
    }
    assert_eq!(vjp_c.stats().hits, 2);
    assert_eq!(fwd_c.stats().hits, 2);
}

#[test]
fn auxiliary_numbers_read_from_data_stay_right() {
    // the aux output holds a value read from the data: a guard keeps it right
    let f = |x: &Tensor| {
        let loss = x.square().sum();
        let big = x.amax().gt_scalar(1.0).item::<bool>();
        (loss, (x.clone(), big))
    };
    let df = grad(f).optimize(true);
    for v in [0.5f64, 2.0, 0.25, 3.0] {
        let x = Tensor::from_vec(vec![v, -v], &[2]);
        let (dx, (loss, (xx, big))) = df.call(&x, ());
        assert_eq!(dx.to_vec::<f64>(), vec![2.0 * v, -2.0 * v]);
        assert_eq!(loss.item::<f64>(), 2.0 * v * v);
        assert!(same(&xx, &x));
        assert_eq!(big, v > 1.0);
    }
    assert_eq!(df.stats().variants, 2);
}

#[test]
fn grad_of_a_compiled_gradient_and_a_compiled_hvp_are_right() {
    // f = Σ x³: ∇f = 3x², H v = 6 x v
    let f = |x: &Tensor| x.pow_scalar(3.0).sum();
    let df = grad(f).optimize(true);
    // an outer grad traces the inner compiled call's inputs: it runs in direct mode
    let outer = grad(|x: &Tensor| df.call(x, ()).0.sum());
    let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2]);
    assert_eq!(outer.call(&x, ()).0.to_vec::<f64>(), vec![6.0, -12.0]);
    assert!(df.stats().fallbacks >= 1);
    // a compiled function whose body takes a Hessian-vector product
    let chvp = compile(|x: &Tensor, v: &Tensor| hvp(f, x, (), v));
    let v = Tensor::from_vec(vec![0.5f64, 2.0], &[2]);
    for s in [1.0f64, 2.0, 3.0] {
        let xs = &x * s;
        let got = chvp.call(&xs, (&v,));
        let xv = xs.to_vec::<f64>();
        assert_eq!(
            got.to_vec::<f64>(),
            vec![6.0 * xv[0] * 0.5, 6.0 * xv[1] * 2.0]
        );
    }
    assert_eq!(chvp.stats().hits, 2);
}

#[test]
fn compiled_gradients_pass_gradcheck_at_orders_one_and_two() {
    // compiled gradient vs central differences of the compiled function; compiled Hessian-
    // vector product vs central differences of the compiled gradient
    let f = |x: &Tensor| (x.sin() * x.exp()).sum() + x.square().prod();
    let value = compile(f);
    let gradient = compile(|x: &Tensor| grad(f).call(x, ()).0);
    let hessian_v = compile(|x: &Tensor, v: &Tensor| hvp(f, x, (), v));
    let mut rng = Generator::new(5);
    let h = 1e-5;
    for _ in 0..3 {
        let x = rand(&mut rng, &[3], -1.0, 1.0);
        let v = rand(&mut rng, &[3], -1.0, 1.0);
        let g = gradient.call(&x, ()).to_vec::<f64>();
        let hv = hessian_v.call(&x, (&v,)).to_vec::<f64>();
        for i in 0..3 {
            let mut e = vec![0.0; 3];
            e[i] = h;
            let e = Tensor::from_vec(e, &[3]);
            let fd = (value.call(&(&x + &e), ()).item::<f64>()
                - value.call(&(&x - &e), ()).item::<f64>())
                / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-6 * (1.0 + g[i].abs()),
                "∂{i}: {fd} vs {}",
                g[i]
            );
        }
        let xp = &x + &(&v * h);
        let xm = &x - &(&v * h);
        let fd = (&gradient.call(&xp, ()) - &gradient.call(&xm, ())) / (2.0 * h);
        for (a, b) in fd.to_vec::<f64>().iter().zip(&hv) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "Hv: {a} vs {b}");
        }
    }
    assert!(value.stats().hits >= 15 && gradient.stats().hits >= 8 && hessian_v.stats().hits >= 2);
}

#[test]
fn the_debugger_names_the_op_and_line_in_a_replay() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let f = |x: &Tensor| x.log().sum();
    let df = grad(f)
        .optimize(true)
        .debug_hook(move |e| seen.lock().unwrap().push(e.message()));
    df.call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    assert!(events.lock().unwrap().is_empty());
    // the second call is a replay; log(-1) is nan
    df.call(&Tensor::from_vec(vec![1.0f64, -1.0], &[2]), ());
    assert_eq!(df.stats().hits, 1);
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|m| m.contains("nan in the forward of log")
                && m.contains("tests/autodiff/optimize.rs")),
        "{events:?}"
    );
}

#[test]
fn the_profiler_counts_replayed_ops_as_direct_mode_does() {
    let f = |w: &Tensor| (w.exp() * 2.0).sum();
    let df = grad(f).optimize(true).profile(true);
    for _ in 0..3 {
        df.call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    }
    let (calls, totals) = df.with_profile(|p| (p.calls(), p.totals())).unwrap();
    assert_eq!(calls, 3);
    let exp = totals.iter().find(|r| r.0 == "exp").expect("exp row");
    assert_eq!(
        (exp.1, exp.3),
        (3, 3),
        "3 forward and 3 backward entries of exp"
    );
}

#[test]
fn a_signature_function_splits_or_skips() {
    let f = |x: &Tensor| x.square().sum();
    // None for odd-sized inputs: those run in direct mode
    let df = grad(f)
        .optimize(true)
        .signature_fn(|p, _| (p[0].numel() % 2 == 0).then_some(7));
    for n in [2, 3, 2, 3] {
        let x = Tensor::ones(&[n], DType::F64);
        assert_eq!(df.call(&x, ()).0.to_vec::<f64>(), vec![2.0; n]);
    }
    let s = df.stats();
    assert_eq!((s.captures, s.hits, s.fallbacks), (1, 1, 2), "{s:?}");
}

/// y = x³ with an array-level backward (3x² g): an opaque step in the plan.
#[derive(Debug)]
struct Cube;

impl CustomOp for Cube {
    fn name(&self) -> &str {
        "cube"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        x[0].pow_scalar(3.0)
    }
    fn backward_array(
        &self,
        x: &[&Array],
        _out: &Array,
        g: &Array,
        _needs: &[bool],
    ) -> Vec<Option<Array>> {
        vec![Some(g.mul(&x[0].square()).mul_scalar(3.0))]
    }
}

#[test]
fn a_custom_op_with_an_array_backward_replays() {
    let cube: Arc<dyn CustomOp> = Arc::new(Cube);
    let f = move |x: &Tensor| Tensor::custom(Arc::clone(&cube), &[&x.sin()]).sum();
    let df = grad(f.clone()).optimize(true);
    let mut rng = Generator::new(6);
    for _ in 0..4 {
        let x = rand(&mut rng, &[5], -2.0, 2.0);
        assert!(same(&df.call(&x, ()).0, &grad(f.clone()).call(&x, ()).0));
    }
    assert_eq!(df.stats().hits, 3);
    assert!(
        df.plan_text().contains("cube.backward"),
        "{}",
        df.plan_text()
    );
}

/// Doubles its input and logs its name each time it runs: an op with an effect.
#[derive(Debug)]
struct Logged {
    name: &'static str,
    log: Arc<Mutex<Vec<&'static str>>>,
}

impl CustomOp for Logged {
    fn name(&self) -> &str {
        self.name
    }
    fn forward(&self, x: &[&Array]) -> Array {
        self.log.lock().unwrap().push(self.name);
        x[0].mul_scalar(2.0)
    }
    fn backward_array(&self, _: &[&Array], _: &Array, g: &Array, _: &[bool]) -> Vec<Option<Array>> {
        vec![Some(g.mul_scalar(2.0))]
    }
}

/// A user's op may have effects, so it keeps its place among the others: one reading a
/// value of an open fused run ends the run rather than waiting for it (which would let a
/// later user op run first), and a replay logs in the order direct mode does.
#[test]
fn user_ops_keep_their_order_when_they_read_a_fused_run() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let op = |name| -> Arc<dyn CustomOp> {
        Arc::new(Logged {
            name,
            log: Arc::clone(&log),
        })
    };
    let (a, b) = (op("a"), op("b"));
    let f = move |x: &Tensor| {
        let y = (x.exp() * 2.0).tanh();
        let ya = Tensor::custom(Arc::clone(&a), &[&y]);
        let xb = Tensor::custom(Arc::clone(&b), &[x]);
        (ya + xb + y.sin()).sum()
    };
    let df = grad(f.clone()).optimize(true);
    let mut rng = Generator::new(8);
    for _ in 0..3 {
        let x = rand(&mut rng, &[6], -1.0, 1.0);
        log.lock().unwrap().clear();
        let (g, l) = df.call(&x, ());
        let replayed = std::mem::take(&mut *log.lock().unwrap());
        let (want_g, want_l) = grad(f.clone()).call(&x, ());
        let direct = std::mem::take(&mut *log.lock().unwrap());
        assert!(same(&g, &want_g) && same(&l, &want_l));
        // (check mode runs each call twice, replayed and direct)
        assert_eq!(replayed, direct);
        assert!(
            !direct.is_empty() && direct.chunks(2).all(|c| c == ["a", "b"]),
            "{direct:?}"
        );
    }
    assert_eq!(df.stats().hits, 2);
}

#[test]
fn masks_and_indices_follow_the_data() {
    // every rule here built its mask from raw arrays before: relu, clamp, maximum, amax
    // ties, prod zeros, max_dim's argmax, scatter winners and max-pool indices
    let f = |x: &Tensor| {
        let a = x.relu().sum() + x.clamp(Some(-0.3), Some(0.4)).sum();
        let b = x.maximum(&x.flip(0)).sum() + x.amax_dim(1, false).sum();
        let c = x.relu().prod_dim(1, false).sum() + x.max_dim(1, false).0.sum();
        let idx = Tensor::from_vec(vec![0i64, 0, 1, 1, 2, 2], &[2, 3]);
        let s = x.narrow(0, 0, 2).scatter(1, &idx, &x.narrow(0, 1, 2)).sum();
        let pooled = x
            .reshape(&[1, 1, 4, 3])
            .max_pool2d(ferrograd::Pool2dParams::square(2))
            .0;
        let assigned = x
            .index_put(&Index::Single(1), &x.select(0, 2))
            .square()
            .sum();
        a + b + c + s + pooled.sum() + assigned
    };
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(7);
    for i in 0..8 {
        // integers make ties and exact zeros likely
        let x = Tensor::new(
            rng.uniform(&[4, 3], -2.0, 3.0, DType::I64)
                .to_dtype(DType::F64),
        ) * 0.5;
        let (g, y) = df.call(&x, ());
        let (want, want_y) = grad(f).call(&x, ());
        assert!(
            same(&g, &want) && same(&y, &want_y),
            "call {i}: {g} vs {want}"
        );
    }
    assert_eq!(df.stats().hits, 7);
}

#[test]
fn tensors_returned_by_a_replay_are_never_overwritten_by_later_calls() {
    // the aux output is a view (a transpose) of an intermediate whose buffer a replay
    // would write into again
    let f = |w: &Tensor, x: &Tensor| {
        let h = x.matmul(w).tanh();
        (h.square().sum(), h.t())
    };
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(8);
    let w = rand(&mut rng, &[3, 2], -1.0, 1.0);
    let mut kept = Vec::new();
    for _ in 0..5 {
        let x = rand(&mut rng, &[4, 3], -1.0, 1.0);
        let (g, (loss, ht)) = df.call(&w, (&x,));
        let copies = (g.to_f64_vec(), loss.to_f64_vec(), ht.to_f64_vec());
        kept.push(((g, loss, ht), copies));
    }
    assert_eq!(df.stats().hits, 4);
    for (i, ((g, loss, ht), (cg, cl, ch))) in kept.iter().enumerate() {
        assert_eq!(&g.to_f64_vec(), cg, "call {i}: gradient changed");
        assert_eq!(&loss.to_f64_vec(), cl, "call {i}: loss changed");
        assert_eq!(&ht.to_f64_vec(), ch, "call {i}: view changed");
    }
}

#[test]
fn a_replay_draws_fresh_random_numbers_from_the_generator_argument() {
    // dropout: a mask drawn from the generator passed in; the same seed gives the same
    // masks in direct and compiled mode, and the generator ends in the same state
    let f = |x: &Tensor, rng: &mut Generator| {
        let keep = Tensor::rand_bernoulli(rng, x.shape(), 0.5, DType::F64) * 2.0;
        (x * &keep).sum()
    };
    let df = grad(f).optimize(true);
    let (mut a, mut b) = (Generator::new(9), Generator::new(9));
    let x = Tensor::from_vec((0..16).map(|i| i as f64).collect(), &[16]);
    let mut masks = std::collections::BTreeSet::new();
    for _ in 0..5 {
        let (g1, _) = df.call(&x, (&mut a,));
        let (g2, _) = grad(f).call(&x, (&mut b,));
        assert!(same(&g1, &g2), "{g1} vs {g2}");
        masks.insert(
            g1.to_vec::<f64>()
                .iter()
                .map(|v| *v as u8)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(df.stats().hits, 4, "{:?}", df.stats());
    assert!(masks.len() >= 4, "every call draws a new mask: {masks:?}");
    let next = |g: &mut Generator| g.uniform(&[3], 0.0, 1.0, DType::F64).to_vec::<f64>();
    assert_eq!(
        next(&mut a),
        next(&mut b),
        "the generators end in the same state"
    );
}

#[test]
fn a_guard_that_misses_after_a_draw_redraws_from_the_same_state() {
    // the draw comes before a branch on the data; a replay that misses at the branch has
    // drawn already, and the capture after it must start from the generator's state before
    let f = |x: &Tensor, rng: &mut Generator| {
        let noise = Tensor::rand_normal(rng, x.shape(), 0.0, 1.0, DType::F64);
        let y = x + &noise;
        if x.sum().gt_scalar(0.0).item::<bool>() {
            y.square().sum()
        } else {
            y.sin().sum()
        }
    };
    let df = grad(f).optimize(true);
    let (mut a, mut b) = (Generator::new(4), Generator::new(4));
    for i in 0..6 {
        let sign = if i % 3 == 1 { -1.0 } else { 1.0 };
        let x = Tensor::from_vec(vec![sign * 0.5, sign * 1.5], &[2]);
        let (g1, y1) = df.call(&x, (&mut a,));
        let (g2, y2) = grad(f).call(&x, (&mut b,));
        assert!(same(&g1, &g2) && same(&y1, &y2), "call {i}");
    }
    let s = df.stats();
    assert_eq!((s.guard_failures, s.variants), (1, 2), "{s:?}");
}

#[test]
fn state_reads_and_writes_appear_in_the_plan() {
    let total = ferrograd::State::new(Tensor::scalar(0.0f64));
    let f = |x: &Tensor| {
        total.set(&total.get() + &x.sum().detach());
        x.square().sum()
    };
    let df = grad(f).optimize(true);
    for v in [1.0f64, 2.0, 3.0] {
        df.call(&Tensor::from_vec(vec![v, v], &[2]), ());
    }
    // 2 + 4 + 6, two of them added by replays
    assert_eq!(total.get().item::<f64>(), 12.0);
    assert_eq!(df.stats().hits, 2);
    let text = df.plan_text();
    assert!(
        text.contains("= state f64[]") && text.contains("state <- %"),
        "{text}"
    );
    let dot = df.plan_dot().expect("a plan");
    assert!(
        dot.contains("shape=house") && dot.contains("shape=invhouse"),
        "{dot}"
    );
}

#[test]
fn stable_gradients_come_back_in_the_same_buffers_unless_still_held() {
    let id = |t: &Tensor| t.value().storage_id();
    // a gradient computed by a kernel, large enough (160 KB) that replays would otherwise
    // hand it to the allocator's cache
    let f = |w: &Tensor, x: &Tensor| w.matmul(x).tanh().sum();
    let df = grad(f).optimize(true).stable_gradients(true);
    let mut rng = Generator::new(41);
    let w = rand(&mut rng, &[100, 200], -1.0, 1.0);
    let mut buffers = Vec::new();
    for _ in 0..4 {
        let x = rand(&mut rng, &[200, 3], -1.0, 1.0);
        let (g, _) = df.call(&w, (&x,));
        let (want, _) = grad(f).call(&w, (&x,));
        assert!(same(&g, &want));
        buffers.push(id(&g));
    }
    assert!(
        buffers[1..].iter().all(|&b| b == buffers[1]),
        "{buffers:x?}"
    );
    // a gradient the caller keeps is never written: the next call gets a new buffer
    let x = rand(&mut rng, &[200, 3], -1.0, 1.0);
    let (held, _) = df.call(&w, (&x,));
    let copy = Tensor::new(held.value().copy());
    let (next, _) = df.call(&w, (&rand(&mut rng, &[200, 3], -1.0, 1.0),));
    assert_ne!(id(&next), id(&held));
    assert!(same(&held, &copy), "a held gradient changed");
    // a gradient that is a view of an input (the output gradient reshaped) is copied into
    // the buffer of the last call's, once the replays have learned it is a view
    let identity = grad(|x: &Tensor| x.reshape(&[2, 2]))
        .partial_grad(true)
        .optimize(true)
        .stable_gradients(true);
    let x = rand(&mut rng, &[4], -1.0, 1.0);
    let mut buffers = Vec::new();
    for _ in 0..6 {
        let og = rand(&mut rng, &[2, 2], -1.0, 1.0);
        let g = identity.run(&x, (), Some(&og)).grads.unwrap();
        assert!(same(&g, &og.reshape(&[4])));
        buffers.push(id(&g));
    }
    assert!(
        buffers[3..].iter().all(|&b| b == buffers[3]),
        "{buffers:x?}"
    );
    assert_eq!(df.stats().hits, 5);
}

/// An LSTM-like step: elementwise runs of two shapes around matmuls, broadcast biases,
/// scalar operands, a clamp and a value the backward pass reads in several places.
fn gated(p: &Mlp, x: &Tensor, y: &Tensor) -> (Tensor, Tensor) {
    let pre = x.matmul(&p.w1) + &p.b1;
    let gate = pre.sigmoid();
    let cand = (&pre * 0.5 - 0.1).tanh();
    let h = (&gate * &cand + (1.0 - &gate) * pre.clamp(Some(-1.0), Some(1.0))).relu();
    let out = h.matmul(&p.w2).log_softmax(1);
    let loss = -(&out * y).sum() * (1.0 / x.size(0) as f64) + h.square().mean() * 1e-3;
    (loss, h)
}

/// The plan's fused runs: `(values written, ops)` per run.
fn fused_runs(plan: &str) -> Vec<(usize, usize)> {
    plan.lines()
        .filter(|l| l.contains(" = fused "))
        .map(|l| {
            let outs = l.split(" = fused").next().unwrap().split(',').count();
            let ops = l
                .split("# ")
                .nth(1)
                .and_then(|c| c.split(' ').next())
                .and_then(|n| n.parse().ok())
                .expect("the op count");
            (outs, ops)
        })
        .collect()
}

#[test]
fn elementwise_runs_fuse_and_replay_bit_for_bit() {
    let mut rng = Generator::new(21);
    let fused = grad(gated).optimize(true);
    let plain = grad(gated).optimize(true).fusion(false);
    let direct = grad(gated);
    let p = mlp_params(&mut rng);
    for step in 0..4 {
        let x = rand(&mut rng, &[6, 4], -2.0, 2.0);
        let y = one_hot_rows(&mut rng, 6);
        let (g1, (l1, h1)) = fused.call(&p, (&x, &y));
        let (g2, (l2, h2)) = plain.call(&p, (&x, &y));
        let (g3, (l3, h3)) = direct.call(&p, (&x, &y));
        assert_same_trees(&g1, &g3);
        assert_same_trees(&g2, &g3);
        assert!(
            same(&l1, &l3) && same(&h1, &h3) && same(&l2, &l3) && same(&h2, &h3),
            "step {step}"
        );
    }
    let (text, plain_text) = (fused.plan_text(), plain.plan_text());
    let runs = fused_runs(&text);
    // the forward's gate arithmetic is one run, and so is its gradient
    assert!(
        runs.iter().filter(|(_, ops)| *ops >= 5).count() >= 2,
        "{text}"
    );
    // runs write fewer values than they compute
    let (outs, ops) = runs.iter().fold((0, 0), |(a, b), (o, n)| (a + o, b + n));
    assert!(
        outs < ops,
        "{outs} values written by {ops} fused ops\n{text}"
    );
    assert!(fused_runs(&plain_text).is_empty(), "{plain_text}");
    // the same ops, each once
    let count = |t: &str, op: &str| t.matches(&format!(" = {op}(")).count();
    for op in [
        "sigmoid",
        "tanh",
        "clamp",
        "relu",
        "mul",
        "add",
        "sigmoid_backward",
        "matmul",
    ] {
        assert_eq!(count(&text, op), count(&plain_text, op), "{op}\n{text}");
    }
}

/// The sum of a loss is added up inside the run that computes the loss's terms, and the
/// elementwise steps after it still join that run: a forward chain, the sum of its loss, and
/// the backward chain (which the sum does not feed) are one run that writes two values (the
/// gradient and the sum; the chain's last values never reach memory), where they were two
/// runs passing every value the backward reads through memory, and the sum a third step. A
/// step that reads the sum (the backward of a `log` of it) ends the run before it. Both
/// replay bit for bit as direct mode.
#[test]
fn a_loss_sum_joins_its_run_and_the_backward_chain_fuses_after_it() {
    let chain = |x: &Tensor| {
        let mut t = x.clone();
        for _ in 0..5 {
            t = (t.sin() * 1.01).tanh() + 0.1;
        }
        t
    };
    let summed = move |x: &Tensor| chain(x).sum();
    let logged = move |x: &Tensor| chain(x).sum().log();
    let x = Tensor::from_vec((0..7).map(|i| 0.3 * i as f64 - 0.5).collect(), &[7]);
    let (fused, direct) = (grad(summed).optimize(true), grad(summed));
    for _ in 0..2 {
        let ((g1, l1), (g2, l2)) = (fused.call(&x, ()), direct.call(&x, ()));
        assert!(same(&g1, &g2) && same(&l1, &l2));
    }
    let text = fused.plan_text();
    // 20 forward ops, the sum, and 20 backward ones (cos, tanh's gradient and two products
    // per round)
    assert_eq!(fused_runs(&text), vec![(2, 41)], "{text}");
    assert!(
        text.contains("41 ops in one pass, one of them a sum"),
        "{text}"
    );
    let (fused, direct) = (grad(logged).optimize(true), grad(logged));
    for _ in 0..2 {
        let ((g1, l1), (g2, l2)) = (fused.call(&x, ()), direct.call(&x, ()));
        assert!(same(&g1, &g2) && same(&l1, &l2));
    }
    // the forward with the sum (writing what the backward reads and the sum, not the last
    // value, which only the sum read), the log and its gradient, the backward
    let text = fused.plan_text();
    assert_eq!(fused_runs(&text), vec![(10, 21), (2, 2), (1, 20)], "{text}");
}

#[derive(Tree, Clone)]
struct Biased {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

/// A regression net whose bias gradients are column sums of 40 and of 3 elements (added as
/// whole rows, and as 16 partial sums each), over 37 rows (not whole sixteens), a loss that
/// is a mean, and a value centred on its own mean (the mean is read inside the chain it
/// sums, so that run must end before the subtraction).
fn biased(p: &Biased, x: &Tensor, y: &Tensor) -> Tensor {
    let h = (x.matmul(&p.w1) + &p.b1).tanh();
    let h = &h - h.mean() * 0.5;
    let out = h.matmul(&p.w2) + &p.b2;
    (out - y).square().mean() + h.square().sum_dim(1, false).sum() * 1e-3
}

/// Sums at the end of an elementwise run are added up as the run computes their values: the
/// bias gradients' column sums and the loss's mean join their runs (the summed values are
/// not written out unless something else reads them), a sum over the last dim does not,
/// and the replay is bit for bit direct mode's (the fused sums add in the order `sum_dim`
/// does).
#[test]
fn bias_gradient_and_loss_sums_are_added_up_inside_their_runs() {
    let mut rng = Generator::new(31);
    let p = Biased {
        w1: rand(&mut rng, &[5, 40], -0.5, 0.5),
        b1: rand(&mut rng, &[40], -0.5, 0.5),
        w2: rand(&mut rng, &[40, 3], -0.5, 0.5),
        b2: rand(&mut rng, &[3], -0.5, 0.5),
    };
    let fused = grad(biased).optimize(true);
    for call in 0..3 {
        let x = rand(&mut rng, &[37, 5], -2.0, 2.0);
        let y = rand(&mut rng, &[37, 3], -1.0, 1.0);
        let (g1, l1) = fused.call(&p, (&x, &y));
        let (g2, l2) = grad(biased).call(&p, (&x, &y));
        assert_same_trees(&g1, &g2);
        assert!(same(&l1, &l2), "call {call}");
    }
    let text = fused.plan_text();
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_none() {
        // each in the run computing its values: the two bias gradients, the loss's mean,
        // h's mean and the gradient of the subtraction of it (a sum over h's shape)
        let sums = text.matches("of them a sum").count() + text.matches("of them sums").count();
        assert!(sums >= 5, "{text}");
        let top = |op: &str| {
            (text.lines())
                .filter(|l| l.starts_with("  %") && l.contains(&format!(" = {op}(")))
                .count()
        };
        // left as steps: the sum over the last dim, and the sum of its result
        assert_eq!(top("sum_dim") + top("sum") + top("mean"), 2, "{text}");
    }
}

#[test]
fn a_fused_run_is_checked_op_by_op_under_the_debugger() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let f = |x: &Tensor| ((x * 2.0).log() + 1.0).exp().sum();
    let df = grad(f)
        .optimize(true)
        .debug_hook(move |e| seen.lock().unwrap().push(e.message()));
    df.call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    assert!(df.plan_text().contains("fused"), "{}", df.plan_text());
    df.call(&Tensor::from_vec(vec![1.0f64, -1.0], &[2]), ());
    assert_eq!(df.stats().hits, 1);
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|m| m.contains("nan in the forward of log")),
        "{events:?}"
    );
}

/// How many steps of `op` a plan runs.
/// Every element of `got` within `bound` of `want`'s.
#[track_caller]
fn assert_within(got: &Tensor, want: &Tensor, bound: f64) {
    let worst = (got - want).abs().max().item::<f64>();
    assert!(worst <= bound, "{worst:e} > {bound:e}");
}

fn steps_of(plan: &str, op: &str) -> usize {
    plan.matches(&format!(" = {op}(")).count()
}

/// Replays `f` of one tensor on three random inputs of `shape`, each equal to direct mode
/// bit for bit, and returns the plan's text.
#[track_caller]
fn replayed_plan(f: fn(&Tensor) -> Tensor, shape: &[usize], seed: u64) -> String {
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(seed);
    for _ in 0..3 {
        let x = rand(&mut rng, shape, -1.0, 1.0);
        let (g, l) = df.call(&x, ());
        let (want_g, want_l) = grad(f).call(&x, ());
        assert!(same(&g, &want_g) && same(&l, &want_l));
    }
    df.plan_text()
}

/// The pieces of a recurrence's stack: `[x_t, h_t]` for each step of `x: [4, 6, 3]`, each
/// a `cat` (or, `reshaped`, a reshape of one along another dim), and the reads of the
/// first piece after the stack (`read_late`).
fn stack_pieces(x: &Tensor, reshaped: bool) -> Vec<Tensor> {
    let mut h = x.select(1, 0).tanh();
    let mut pieces = Vec::new();
    for t in 0..6 {
        let xt = x.select(1, t);
        h = (&h * 0.9 + &xt).tanh();
        pieces.push(match reshaped {
            false => Tensor::cat(&[xt, h.clone()], 1),
            true => Tensor::cat(&[xt.unsqueeze(1), h.unsqueeze(1)], 1).reshape(&[4, 6]),
        });
    }
    pieces
}

/// A stack (a `cat` along dim 0) whose pieces are `cat`s of their own, or reshapes of one,
/// is written in place: each piece's cat writes its rows of the stack as it runs, and the
/// stack copies nothing. Results stay direct mode's bit for bit, also when a piece is read
/// after later pieces were written (the stack's buffer is then copied before the write,
/// never written under a reader); a stack with a returned piece is left a plain `cat`.
#[test]
fn stacks_of_concatenations_are_written_where_the_stack_holds_them() {
    fn stacked(x: &Tensor) -> Tensor {
        let s = Tensor::cat(&stack_pieces(x, false), 0);
        (&s * &s).sum() + s.sin().sum()
    }
    fn reshaped(x: &Tensor) -> Tensor {
        let s = Tensor::cat(&stack_pieces(x, true), 0);
        (&s * &s).sum() + s.sin().sum()
    }
    fn read_late(x: &Tensor) -> Tensor {
        let pieces = stack_pieces(x, false);
        let s = Tensor::cat(&pieces, 0);
        (&s * &s).sum() + pieces[0].exp().sum() * &s.sum()
    }
    for (f, name) in [
        (stacked as fn(&Tensor) -> Tensor, "stacked"),
        (reshaped, "reshaped"),
        (read_late, "read late"),
    ] {
        let text = replayed_plan(f, &[4, 6, 3], 48);
        if std::env::var_os("FERROGRAD_OPTIMIZE").is_none() {
            assert_eq!(steps_of(&text, "assembled"), 1, "{name}: {text}");
            assert_eq!(text.matches(" = cat_into[").count(), 6, "{name}: {text}");
        }
    }
    // a piece returned: the stack is a plain `cat`
    let f = |x: &Tensor| {
        let pieces = stack_pieces(x, false);
        (Tensor::cat(&pieces, 0).sum(), pieces[2].clone())
    };
    let compiled = compile(f);
    let mut rng = Generator::new(49);
    for _ in 0..3 {
        let x = rand(&mut rng, &[4, 6, 3], -1.0, 1.0);
        let ((l, p), (want_l, want_p)) = (compiled.call(&x, ()), f(&x));
        assert!(same(&l, &want_l) && same(&p, &want_p));
    }
    let text = compiled.plan_text();
    assert_eq!(steps_of(&text, "assembled"), 0, "{text}");
}

/// The sums over the batch of each piece of a stack (`[64, 80]` pieces, each `[x_t, h_t]`,
/// the shape of a recurrent network's per-step bias gradients), read only once the stack is
/// complete (`late`), or each read by the next step before it is (`early`).
fn piece_sums(x: &Tensor, late: bool) -> Tensor {
    let mut h = x.select(1, 0).tanh();
    let (mut pieces, mut sums) = (Vec::new(), Vec::new());
    for t in 0..6 {
        let xt = x.select(1, t);
        let carried = match (late, sums.last()) {
            (false, Some(s)) => (s as &Tensor).narrow(0, 0, 40) * 0.1,
            _ => Tensor::zeros(&[40], DType::F64),
        };
        h = (&h * 0.9 + &xt + carried).tanh();
        let piece = Tensor::cat(&[xt, h.clone()], 1);
        sums.push(piece.sum_dim(0, false));
        pieces.push(piece);
    }
    let s = Tensor::cat(&pieces, 0);
    let mut loss = (&s * &s).sum();
    for (k, v) in sums.iter().enumerate() {
        loss = loss + (v * v).sum() * (k + 1) as f64;
    }
    loss
}

/// The sums of an assembled stack's blocks of rows (a recurrent network's per-step bias
/// gradients) run as one step after the stack is complete, each the sum it replaces bit
/// for bit; a sum something reads before the stack is complete stays where it was, and so
/// does the sum of a block too small to gain (`[4, 80]`).
#[test]
fn sums_of_a_stacks_blocks_run_together_after_it() {
    let text = replayed_plan(|x| piece_sums(x, true), &[64, 6, 40], 50);
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_none() {
        assert_eq!(
            text.matches(" = block_sums[6 blocks of 64 rows](").count(),
            1,
            "{text}"
        );
    }
    let text = replayed_plan(|x| piece_sums(x, false), &[64, 6, 40], 51);
    assert_eq!(text.matches(" = block_sums[").count(), 0, "{text}");
    let text = replayed_plan(|x| piece_sums(x, true), &[4, 6, 40], 54);
    assert_eq!(text.matches(" = block_sums[").count(), 0, "{text}");
    // a recurrent network's bias gradient, one sum per step of its gate gradients (its
    // other rewrites, with fusion on, add products in the matrix kernel's order: within
    // rounding of direct mode, not bit for bit)
    let rnn = |p: &(Tensor, Tensor), x: &Tensor| {
        let nh = p.0.size(1) / 2;
        let mut h = Tensor::zeros(&[x.size(0), nh], DType::F64);
        for t in 0..x.size(1) {
            let pre = Tensor::cat(&[x.select(1, t), h.clone()], 1).matmul(&p.0) + &p.1;
            h = pre.narrow(1, 0, nh).tanh() * pre.narrow(1, nh, nh).sigmoid();
        }
        h.sum()
    };
    let mut rng = Generator::new(52);
    let (steps, batch, nx, nh) = (5, 32, 64, 128);
    let p = (
        rand(&mut rng, &[nx + nh, 2 * nh], -0.3, 0.3),
        rand(&mut rng, &[2 * nh], -0.1, 0.1),
    );
    let df = grad(rnn).optimize(true);
    for _ in 0..3 {
        let x = rand(&mut rng, &[batch, steps, nx], -1.0, 1.0);
        let ((g, l), (want_g, want_l)) = (df.call(&p, (&x,)), grad(rnn).call(&p, (&x,)));
        assert_within(&l, &want_l, 1e-12);
        assert_within(&g.0, &want_g.0, 1e-12);
        assert_within(&g.1, &want_g.1, 1e-12);
    }
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_none() {
        let text = df.plan_text();
        let joined = format!(" = block_sums[{steps} blocks of {batch} rows](");
        assert_eq!(text.matches(&joined).count(), 1, "{text}");
    }
}

/// An LSTM written as the seed suite writes it: `[x_t, h] @ w + b`, the gates a `[b, 4, h]`
/// view of it, three sigmoids at once.
fn suite_lstm(p: &(Tensor, Tensor), x: &Tensor) -> Tensor {
    let (b, nh) = (x.size(0), p.0.size(1) / 4);
    let mut h = Tensor::zeros(&[b, nh], DType::F64);
    let mut c = Tensor::zeros(&[b, nh], DType::F64);
    for t in 0..x.size(1) {
        let gates =
            (Tensor::cat(&[x.select(1, t), h.clone()], 1).matmul(&p.0) + &p.1).reshape(&[b, 4, nh]);
        let ifo = gates.narrow(1, 0, 3).sigmoid();
        c = &ifo.select(1, 1) * &c + &ifo.select(1, 0) * &gates.select(1, 3).tanh();
        h = &ifo.select(1, 2) * &c.tanh();
    }
    (&h * &h).sum() + c.sum() * 0.5
}

/// The gate programs of a recurrent network write what the weight gradient's stacks hold
/// straight into their rows: the forward's new `h` into its columns of the `[x_t, h]` rows
/// (the program copying `x_t` beside it), the backward's four gate gradients into theirs, so
/// the stacks' cats copy nothing. The same bits as a replay that runs the programs op by op
/// (under the profiler), where the cats copy every piece; within rounding of direct mode.
/// Not for a cat so small that its copy costs less (a batch of 2 here).
#[test]
fn gate_programs_write_into_the_rows_of_the_weight_gradients_stacks() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode fuses nothing
    }
    let (steps, batch, nx, nh) = (5, 32, 64, 96);
    let mut rng = Generator::new(53);
    let p = (
        rand(&mut rng, &[nx + nh, 4 * nh], -0.2, 0.2),
        rand(&mut rng, &[4 * nh], -0.1, 0.1),
    );
    let df = grad(suite_lstm).optimize(true);
    let observed = grad(suite_lstm).optimize(true).profile(true);
    for _ in 0..3 {
        let x = rand(&mut rng, &[batch, steps, nx], -1.0, 1.0);
        let (g, l) = df.call(&p, (&x,));
        let (og, ol) = observed.call(&p, (&x,));
        assert!(same(&l, &ol) && same(&g.0, &og.0) && same(&g.1, &og.1));
        let (want_g, want_l) = grad(suite_lstm).call(&p, (&x,));
        assert_within(&l, &want_l, 1e-12);
        assert_within(&g.0, &want_g.0, 1e-12);
        assert_within(&g.1, &want_g.1, 1e-12);
    }
    let text = df.plan_text();
    let into = |windows: usize| text.matches(&format!(", {windows} into %")).count();
    // each step's h but the first (a constant zero) and each step's gate gradients
    assert_eq!((into(1), into(4)), (steps - 1, steps), "{text}");
    assert_eq!(
        text.matches(", in place](").count(),
        2 * steps - 1,
        "{text}"
    );
    let x = rand(&mut rng, &[2, steps, nx], -1.0, 1.0);
    let df = grad(suite_lstm).optimize(true);
    df.call(&p, (&x,));
    let (g, l) = df.call(&p, (&x,));
    let (want_g, want_l) = grad(suite_lstm).call(&p, (&x,));
    assert_within(&l, &want_l, 1e-12);
    assert_within(&g.0, &want_g.0, 1e-12);
    let text = df.plan_text();
    assert_eq!(text.matches(" into %").count(), 0, "a batch of 2: {text}");
}

#[test]
fn steps_of_constants_fold_into_constants() {
    let f = |x: &Tensor| {
        // built from constants only: computed once, when the plan is made
        let scale = Tensor::from_vec(vec![0.5f64, 1.5, 2.5], &[3]).exp().sqrt();
        (x * &scale).sin().sum()
    };
    let text = replayed_plan(f, &[2, 3], 31);
    assert_eq!(
        (steps_of(&text, "exp"), steps_of(&text, "sqrt")),
        (0, 0),
        "{text}"
    );
    assert!(text.contains("const f64[3]"), "{text}");
}

#[test]
fn identities_are_simplified_away_exactly() {
    let f = |x: &Tensor| {
        let y = (x * 1.0).neg().neg() / 1.0;
        let y = y.t().t().reshape(&[6]).reshape(&[3, 2]).reshape(&[2, 3]);
        (y.exp() * &Tensor::ones(&[2, 3], DType::F64)).sum()
    };
    let text = replayed_plan(f, &[2, 3], 32);
    for op in [
        "mul_scalar",
        "div_scalar",
        "neg",
        "permute",
        "reshape",
        "mul",
    ] {
        assert_eq!(steps_of(&text, op), 0, "{op} left in\n{text}");
    }
    // what remains: the exp, its sum, and the gradient is the exp itself
    assert_eq!(
        (steps_of(&text, "exp"), steps_of(&text, "sum")),
        (1, 1),
        "{text}"
    );
}

/// `y @ (yᵀ y)`, whose matrix kernels follow their operands' strides.
fn gram_loss(y: &Tensor) -> Tensor {
    y.matmul(&y.t().matmul(y)).sin().sum()
}

/// A simplified step's stand-in is laid out as direct mode's result was. `x * 1` of a
/// transposed view is a row-major copy in direct mode, and a matrix product's kernel follows
/// its operands' strides (the last bit of `y @ (yᵀ y)` moved when the plan read the view
/// itself: found by the random programs), so a view stands in as a row-major copy; and a
/// reshape chain that copied does not become the view it started from. Inputs passed as
/// views too (their strides are in the signature).
#[test]
fn a_simplified_step_keeps_direct_modes_layout() {
    type Loss = fn(&Tensor) -> Tensor;
    let cases: [(&str, Loss); 5] = [
        ("x * 1 of a view made inside", |x| {
            gram_loss(&(x.contiguous().t() * 1.0))
        }),
        ("-(-x) of a view made inside", |x| gram_loss(&-(-x.t()))),
        ("x / 1 of an input view", |x| gram_loss(&(x / 1.0))),
        ("x * ones of an input view", |x| {
            gram_loss(&(x * &Tensor::ones(x.shape(), DType::F64)))
        }),
        ("a reshape chain that copies", |x| {
            gram_loss(&x.t().reshape(&[91]).reshape(&[7, 13]))
        }),
    ];
    let mut rng = Generator::new(37);
    let mut differ = Vec::new();
    for (what, f) in cases {
        let (fused, unfused) = (grad(f).optimize(true), grad(f).optimize(true).fusion(false));
        for call in 0..3 {
            // [13, 7] row-major, or its transpose's transpose: [7, 13] read column by column
            let x = if what.contains("input") {
                rand(&mut rng, &[13, 7], -1.0, 1.0).t()
            } else {
                rand(&mut rng, &[13, 7], -1.0, 1.0)
            };
            let (want_g, want_l) = grad(f).call(&x, ());
            for (df, how) in [(&fused, "fused"), (&unfused, "unfused")] {
                let (g, l) = df.call(&x, ());
                if !(same(&g, &want_g) && same(&l, &want_l)) {
                    differ.push(format!("{what}, {how}, call {call}"));
                }
            }
        }
    }
    assert!(differ.is_empty(), "differ from direct mode: {differ:#?}");
}

/// A state read in another layout than the capture's is a miss, as one of another shape
/// is: the plan's simplifications count on the recorded layout (`s * 1` is `s` itself only
/// where `s` was row-major; read as the transposed view it became, the Gram product's last
/// bits moved). Here the function writes its state back as a transposed view: it runs in
/// direct mode from the second call, with a warning that says why.
#[test]
fn a_state_read_in_another_layout_runs_in_direct_mode() {
    let f = |s: &ferrograd::State, x: &Tensor| {
        let m = s.get();
        s.set((&m + 0.01).t().detach());
        gram_loss(&(&m * 1.0)) * x.sum()
    };
    let start = rand(&mut Generator::new(39), &[7, 7], -1.0, 1.0);
    let (mine, theirs) = (
        ferrograd::State::new(start.clone()),
        ferrograd::State::new(start),
    );
    let (df, direct) = (
        grad(|x: &Tensor| f(&mine, x)).optimize(true),
        grad(|x: &Tensor| f(&theirs, x)),
    );
    let mut rng = Generator::new(40);
    for call in 0..4 {
        let x = rand(&mut rng, &[7, 7], -1.0, 1.0);
        let ((g, l), (want_g, want_l)) = (df.call(&x, ()), direct.call(&x, ()));
        assert!(
            same(&g, &want_g) && same(&l, &want_l),
            "call {call}: compiled {g} vs direct {want_g}"
        );
    }
    let s = df.stats();
    assert_eq!((s.hits, s.warnings.len()), (0, 1), "{s:?}");
    assert!(
        s.warnings[0].contains("f64[7, 7] (row-major) on one call and f64[7, 7] (a strided view)"),
        "{}",
        s.warnings[0]
    );
}

/// The output gradient of a `partial_grad` call is part of the signature, its layout too: a
/// plan made for a row-major one stands it in for `g * 1` as it is, and replayed with a
/// transposed one, the gradients' products read the view (other bits, for `[3, 5]` by
/// `[5, 5]`). Another layout is another signature.
#[test]
fn an_output_gradient_in_another_layout_is_another_signature() {
    let f = |p: &(Tensor, Tensor)| p.0.matmul(&p.1) * 1.0;
    let df = grad(f).partial_grad(true).optimize(true);
    let mut rng = Generator::new(42);
    let mut differ = Vec::new();
    for call in 0..4 {
        let p = (
            rand(&mut rng, &[3, 5], -1.0, 1.0),
            rand(&mut rng, &[5, 5], -1.0, 1.0),
        );
        // row-major, then a transposed view of the same shape, twice each
        let g = if call < 2 {
            rand(&mut rng, &[3, 5], -1.0, 1.0)
        } else {
            rand(&mut rng, &[5, 3], -1.0, 1.0).t()
        };
        let got = df.run(&p, (), Some(&g)).grads.expect("gradients");
        let want = grad(f).partial_grad(true).run(&p, (), Some(&g));
        let want = want.grads.expect("gradients");
        if !(same(&got.0, &want.0) && same(&got.1, &want.1)) {
            differ.push(call);
        }
    }
    assert!(
        differ.is_empty(),
        "calls {differ:?} differ from direct mode"
    );
    let s = df.stats();
    assert_eq!((s.captures, s.hits), (2, 2), "{s:?}");
}

/// A slice moved ahead of the pointwise op it read (the fused plan computes `sin` of the
/// slice, not a slice of `sin`) leaves a sum over its rows the same bits: reductions add by
/// shape, not by layout (a sum over the rows of the `[33, 37]` view added in another order
/// than over a row-major `[33, 37]`, and the replay differed from direct mode).
#[test]
fn a_slice_moved_ahead_leaves_the_sums_bits() {
    let f = |x: &Tensor| x.sin().narrow(1, 1, 37).sum_dim(0, false).sin().sum();
    let text = replayed_plan(f, &[33, 40], 38);
    // the slice reads the input now
    assert!(text.contains("= narrow(%0)"), "{text}");
}

/// `x * ones` where the ones are a constant expanded past the size folding makes constants
/// of (the seed of an hvp's inner gradient, expanded to a parameter's shape): simplified away
/// as well, in the forward and in its gradient.
#[test]
fn a_product_by_expanded_ones_is_simplified_away() {
    let f = |x: &Tensor| {
        let ones = Tensor::ones(&[1, 1], DType::F64).expand(&[300, 300]);
        (x.exp() * ones).sum()
    };
    let text = replayed_plan(f, &[300, 300], 35);
    assert_eq!(steps_of(&text, "mul"), 0, "{text}");
}

/// Products sharing their left operand join into one product of the joined weights where
/// the copy pays (an LSTM's gates, whose joined weights every time step shares): not two
/// products this large made once (`x @ w` and `x @ v`, [32, 100] by [100, 1000], an hvp's
/// forward), which the joined product would run no faster; two small ones are joined.
#[test]
fn products_sharing_an_operand_join_only_where_the_copy_pays() {
    let f = |p: &(Tensor, Tensor), x: &Tensor| (x.matmul(&p.0).tanh() + x.matmul(&p.1).sin()).sum();
    let mut rng = Generator::new(36);
    for (k, n, joined) in [(100, 1000, false), (100, 30, true)] {
        let p = (
            rand(&mut rng, &[k, n], -0.1, 0.1),
            rand(&mut rng, &[k, n], -0.1, 0.1),
        );
        let x = rand(&mut rng, &[32, k], -1.0, 1.0);
        let df = grad(f).optimize(true);
        for _ in 0..2 {
            let ((g, l), (want_g, want_l)) = (df.call(&p, (&x,)), grad(f).call(&p, (&x,)));
            assert_within(&l, &want_l, 1e-12);
            assert_within(&g.0, &want_g.0, 1e-12);
            assert_within(&g.1, &want_g.1, 1e-12);
        }
        if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
            continue; // check mode runs no joins
        }
        let text = df.plan_text();
        assert_eq!(steps_of(&text, "cat") > 0, joined, "[{k}, {n}]\n{text}");
    }
}

/// Products sharing their right operand join by rows where packing it once instead of once
/// per product saves more than copying the left operands into one costs: three products of
/// 8 rows by a [64, 128] weight join, three of 128 rows (a transformer's attention
/// projections' weight gradients, whose joined left operand was a transposing copy of all
/// three) stay apart.
#[test]
fn products_sharing_a_right_operand_join_only_where_the_copy_pays() {
    let f = |w: &Tensor, a: &Tensor, b: &Tensor, c: &Tensor| {
        (a.matmul(w).tanh() + b.matmul(w).sin() + c.matmul(w).exp()).sum()
    };
    let mut rng = Generator::new(37);
    let w = rand(&mut rng, &[64, 128], -0.1, 0.1);
    for (rows, joined) in [(128, false), (8, true)] {
        let c = compile(f);
        for _ in 0..2 {
            let x: Vec<Tensor> = (0..3)
                .map(|_| rand(&mut rng, &[rows, 64], -1.0, 1.0))
                .collect();
            let y = c.call(&w, (&x[0], &x[1], &x[2]));
            assert_within(&y, &f(&w, &x[0], &x[1], &x[2]), 1e-12);
        }
        if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
            continue; // check mode runs no joins
        }
        let text = c.plan_text();
        assert_eq!(steps_of(&text, "cat") > 0, joined, "{rows} rows\n{text}");
        assert_eq!(
            steps_of(&text, "matmul"),
            if joined { 1 } else { 3 },
            "{text}"
        );
    }
}

#[test]
fn adding_zero_is_kept_because_it_turns_negative_zero_positive() {
    let f = |x: &Tensor| &(x + 0.0) * 2.0;
    let c = compile(f);
    let x = Tensor::from_vec(vec![-0.0f64, 1.0], &[2]);
    for _ in 0..2 {
        let y = c.call(&x, ());
        assert_eq!(y.to_vec::<f64>()[0].to_bits(), 0.0f64.to_bits());
    }
    assert_eq!(
        steps_of(&c.plan_text(), "add_scalar"),
        1,
        "{}",
        c.plan_text()
    );
}

#[test]
fn common_subexpressions_are_computed_once() {
    let f = |x: &Tensor| {
        let a = x.exp().sum();
        let b = x.exp().sum(); // the same ops on the same value
        (&a * &b).sqrt()
    };
    let text = replayed_plan(f, &[4], 33);
    assert_eq!(steps_of(&text, "exp"), 1, "{text}");
    // the forward's sum, once; the backward's two identical contributions, once
    assert_eq!(steps_of(&text, "sum"), 1, "{text}");
}

#[test]
fn gradients_summed_over_steps_accumulate_inside_the_matrix_kernel() {
    // a weight used at each of 5 steps: its gradient is a sum of 5 matrix products
    let f = |w: &Tensor, x: &Tensor| {
        let mut h = Tensor::zeros(&[3, 4], DType::F64);
        for t in 0..5 {
            h = (x.select(0, t).matmul(w) + &h).tanh();
        }
        h.sum()
    };
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(34);
    let w = rand(&mut rng, &[6, 4], -1.0, 1.0);
    for _ in 0..3 {
        let x = rand(&mut rng, &[5, 3, 6], -1.0, 1.0);
        let (g, l) = df.call(&w, (&x,));
        let (want_g, want_l) = grad(f).call(&w, (&x,));
        assert!(same(&g, &want_g) && same(&l, &want_l));
    }
    let text = df.plan_text();
    // the first product starts the sum; the other four add into it
    assert_eq!(steps_of(&text, "matmul_acc"), 4, "{text}");
}

#[test]
fn a_sum_of_products_over_steps_becomes_one_product_within_rounding() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode compares bit for bit, so plans keep sums in their order there
    }
    // the weight's gradient sums 8 outer products, each as large as the weight: joined,
    // they are one product
    let f = |w: &Tensor, x: &Tensor| {
        let mut loss = Tensor::scalar(0.0);
        for t in 0..8 {
            loss = loss + x.select(0, t).matmul(w).tanh().sum();
        }
        loss
    };
    let fused = grad(f).optimize(true).verify(1);
    let plain = grad(f).optimize(true).fusion(false);
    let mut rng = Generator::new(35);
    let w = rand(&mut rng, &[40, 50], -0.3, 0.3);
    for _ in 0..3 {
        let x = rand(&mut rng, &[8, 1, 40], -1.0, 1.0);
        let (want, _) = grad(f).call(&w, (&x,));
        let (g, _) = fused.call(&w, (&x,));
        let (exact, _) = plain.call(&w, (&x,));
        assert!(same(&exact, &want));
        // a reordered sum of 8 terms: within a few ulp of the terms' magnitudes
        assert_within(&g, &want, 8.0 * f64::EPSILON * 8.0 * 2.0);
    }
    let (text, plain_text) = (fused.plan_text(), plain.plan_text());
    // two joins for the gradient's one product, and one for the forward's: the 8 products
    // share w, so they run as one product of the 8 stacked rows
    assert_eq!(
        (
            steps_of(&text, "cat"),
            steps_of(&text, "matmul"),
            steps_of(&text, "matmul_acc")
        ),
        (3, 2, 0),
        "{text}"
    );
    assert_eq!(steps_of(&plain_text, "matmul_acc"), 7, "{plain_text}");
    assert_eq!(fused.stats().verified, 2);
}

#[test]
fn comparisons_and_selections_fuse_as_masks_that_never_reach_memory() {
    let f = |p: &Mlp, x: &Tensor, _y: &Tensor| {
        let h = (x.matmul(&p.w1) + &p.b1).relu(); // backward: g * (h > 0)
        let e = h.matmul(&p.w2).elu(0.5); // where(x > 0, x, 0.5 (e^min(x, 0) - 1))
        (e.square().sum(), e)
    };
    let df = grad(f).optimize(true);
    let mut rng = Generator::new(36);
    let p = mlp_params(&mut rng);
    for _ in 0..3 {
        let x = rand(&mut rng, &[5, 4], -2.0, 2.0);
        let y = one_hot_rows(&mut rng, 5);
        let (g, (l, e)) = df.call(&p, (&x, &y));
        let (want_g, (want_l, want_e)) = grad(f).call(&p, (&x, &y));
        assert_same_trees(&g, &want_g);
        assert!(same(&l, &want_l) && same(&e, &want_e));
    }
    let text = df.plan_text();
    // only fused runs compare or select: no bool array is written
    let top_level = |op: &str| {
        text.lines()
            .filter(|l| l.starts_with("  %") && l.contains(&format!(" = {op}(")))
            .count()
    };
    for op in ["gt", "where", "to_dtype"] {
        assert_eq!(top_level(op), 0, "{op} outside a fused run\n{text}");
        assert!(steps_of(&text, op) > 0, "{op} is in the plan\n{text}");
    }
}

#[test]
fn a_slice_of_a_product_becomes_a_product_of_the_slice() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode keeps products whole, to compare bit for bit
    }
    // the gradient of h in cat([x, h]) @ w is a slice of g @ wᵀ: only that slice is computed
    let f = |p: &(Tensor, Tensor), x: &Tensor| {
        let (w, h) = p;
        Tensor::cat(&[x, h], 1).matmul(w).tanh().sum()
    };
    let df = grad(f).optimize(true).verify(1);
    let mut rng = Generator::new(37);
    let p = (
        rand(&mut rng, &[7, 5], -1.0, 1.0),
        rand(&mut rng, &[3, 4], -1.0, 1.0),
    );
    for _ in 0..3 {
        let x = rand(&mut rng, &[3, 3], -1.0, 1.0);
        let (g, _) = df.call(&p, (&x,));
        let (want, _) = grad(f).call(&p, (&x,));
        for (a, b) in [(&g.0, &want.0), (&g.1, &want.1)] {
            assert_within(a, b, 1e-14);
        }
    }
    let text = df.plan_text();
    // three products (forward, w's gradient, h's slice of the input gradient) and one
    // narrow, of wᵀ: the x part of the input gradient is never computed
    assert_eq!(
        (steps_of(&text, "matmul"), steps_of(&text, "narrow")),
        (3, 1),
        "{text}"
    );
    assert_eq!(df.stats().verified, 2);
}

#[test]
fn a_recurrent_cells_input_projections_run_as_one_product_within_rounding() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode keeps products as recorded, to compare bit for bit
    }
    // cat([x_t, h]) @ w at each of 6 steps: x_t @ w[..4] is ready from the start for every
    // step, so the six projections are one product of 18 rows; each step adds h @ w[4..]
    // into its block
    let f = |p: &(Tensor, Tensor), x: &Tensor| {
        let mut h = Tensor::zeros(&[3, 5], DType::F64);
        for t in 0..x.size(0) {
            h = (Tensor::cat(&[x.select(0, t), h.clone()], 1).matmul(&p.0) + &p.1).tanh();
        }
        h.square().sum()
    };
    let df = grad(f).optimize(true).verify(1);
    let mut rng = Generator::new(43);
    let p = (
        rand(&mut rng, &[9, 5], -0.5, 0.5),
        rand(&mut rng, &[5], -0.5, 0.5),
    );
    for _ in 0..3 {
        let x = rand(&mut rng, &[6, 3, 4], -1.0, 1.0);
        let ((g, l), (want_g, want_l)) = (df.call(&p, (&x,)), grad(f).call(&p, (&x,)));
        // the projections summed in another order: within a few ulp of the terms, which
        // are below 10 in magnitude
        for (a, b) in [(&g.0, &want_g.0), (&g.1, &want_g.1), (&l, &want_l)] {
            assert_within(a, b, 1e-13);
        }
    }
    let text = df.plan_text();
    // the forward's steps (the backward's are of its ops or of the gradients' sums)
    let forward = |op: &str| {
        text.lines()
            .filter(|l| l.contains(&format!(" = {op}(")) && l.contains("# matmul at"))
            .count()
    };
    // (each step's h @ w[4..] added into its rows of the projections' buffer)
    let into_rows = (text.lines())
        .filter(|l| l.contains(" = matmul_acc_rows[") && l.contains("# matmul at"))
        .count();
    assert_eq!(
        (forward("matmul"), forward("matmul_acc") + into_rows),
        (1, 6),
        "one product for the six steps' projections, and each step's h @ w[4..]\n{text}"
    );
    assert_eq!(df.stats().verified, 2);
}

#[test]
fn gates_taken_by_slices_keep_the_product_whole_so_the_projections_join() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode keeps products as recorded, to compare bit for bit
    }
    // a cell written as `chunk` writes it: the two gates are column slices of one product,
    // which together read all of it, so it stays one product (cut into one per slice, the
    // steps' products would no longer share `w` and their projections would not join)
    let f = |w: &Tensor, x: &Tensor| {
        let mut h = Tensor::zeros(&[3, 5], DType::F64);
        for t in 0..x.size(0) {
            let g = Tensor::cat(&[x.select(0, t), h.clone()], 1).matmul(w);
            h = &g.narrow(1, 0, 5).sigmoid() * &g.narrow(1, 5, 5).tanh();
        }
        h.square().sum()
    };
    let df = grad(f).optimize(true).verify(1);
    let mut rng = Generator::new(44);
    let w = rand(&mut rng, &[9, 10], -0.5, 0.5);
    for _ in 0..3 {
        let x = rand(&mut rng, &[6, 3, 4], -1.0, 1.0);
        let ((g, l), (want_g, want_l)) = (df.call(&w, (&x,)), grad(f).call(&w, (&x,)));
        assert_within(&g, &want_g, 1e-13);
        assert_within(&l, &want_l, 1e-13);
    }
    let text = df.plan_text();
    let forward = |op: &str| {
        text.lines()
            .filter(|l| l.contains(&format!(" = {op}")) && l.contains("# matmul at"))
            .count()
    };
    assert_eq!(
        (forward("matmul("), forward("matmul_acc")),
        (1, 6),
        "one product for the six steps' projections, and each step's h @ w[4..]\n{text}"
    );
    assert_eq!(df.stats().verified, 2);
}

#[test]
fn an_lstm_with_a_weight_per_gate_runs_one_product_for_all_inputs_and_one_per_step() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode keeps products as recorded, to compare bit for bit
    }
    // four gates, each x_t @ w_g + h @ u_g: the gates' products share x_t (and h), so they
    // join by columns; the joined input products of all 5 steps then join by rows
    type Gates = (Vec<Tensor>, Vec<Tensor>);
    let f = |p: &Gates, x: &Tensor| {
        let (w, u) = p;
        let (mut h, mut c) = (
            Tensor::zeros(&[8, 3], DType::F64),
            Tensor::zeros(&[8, 3], DType::F64),
        );
        for t in 0..x.size(0) {
            let xt = x.select(0, t);
            let gate = |g: usize| xt.matmul(&w[g]) + h.matmul(&u[g]);
            let (i, f, o, z) = (
                gate(0).sigmoid(),
                gate(1).sigmoid(),
                gate(2).sigmoid(),
                gate(3).tanh(),
            );
            c = &f * &c + &i * &z;
            h = &o * &c.tanh();
        }
        h.square().sum()
    };
    let df = grad(f).optimize(true).verify(1);
    let mut rng = Generator::new(45);
    let p: Gates = (
        (0..4).map(|_| rand(&mut rng, &[4, 3], -0.5, 0.5)).collect(),
        (0..4).map(|_| rand(&mut rng, &[3, 3], -0.5, 0.5)).collect(),
    );
    for _ in 0..3 {
        // 8 rows a step: 40 rows share each joined weight
        let x = rand(&mut rng, &[5, 8, 4], -1.0, 1.0);
        let ((g, l), (want_g, want_l)) = (df.call(&p, (&x,)), grad(f).call(&p, (&x,)));
        let pairs = g.0.iter().chain(&g.1).zip(want_g.0.iter().chain(&want_g.1));
        for (a, b) in pairs.chain([(&l, &want_l)]) {
            assert_within(a, b, 1e-14);
        }
    }
    let text = df.plan_text();
    // the forward's products: at a line of this file, not the backward of one
    let forward = text
        .lines()
        .filter(|l| {
            l.contains(" = matmul") && l.contains("tests/autodiff/") && !l.contains("backward of")
        })
        .count();
    // one product for the inputs of every gate and step, one per step for h
    assert_eq!(forward, 1 + 5, "{text}");
    assert_eq!(df.stats().verified, 2);
}

#[test]
fn gradients_of_slices_that_tile_a_dim_are_concatenated_not_summed() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode keeps the recorded sum, to compare bit for bit
    }
    // four slices of one value, each used on its own: its gradient is a sum of four padded
    // blocks, which the plan writes as one concatenation; two slices of it, as a padded one
    let tiled = |x: &Tensor| {
        (&x.select(1, 0).sigmoid() * &x.select(1, 1).tanh() + x.select(1, 2).exp() * x.select(1, 3))
            .sum()
    };
    let middle =
        |x: &Tensor| (&x.select(1, 1).sigmoid() * &x.narrow(1, 2, 2).sum_dim(1, false)).sum();
    let mut rng = Generator::new(44);
    for (f, cats, pads) in [
        (&tiled as &dyn Fn(&Tensor) -> Tensor, 1, 0),
        (&middle, 1, 1),
    ] {
        let df = grad(f).optimize(true);
        for _ in 0..3 {
            let x = rand(&mut rng, &[3, 4, 5], -1.0, 1.0);
            let (g, _) = df.call(&x, ());
            let (want, _) = grad(f).call(&x, ());
            // the same numbers: a slice's -0.0 may come back as -0.0 where the sum gave +0.0
            assert_eq!(g.to_vec::<f64>(), want.to_vec::<f64>());
        }
        let text = df.plan_text();
        assert_eq!(
            (steps_of(&text, "cat"), steps_of(&text, "pad_narrow")),
            (cats, pads),
            "{text}"
        );
    }
}

#[test]
fn a_product_over_one_inner_element_becomes_a_multiply_fused_with_the_update() {
    // A compiled SGD step of a linear layer on one sample: w's gradient xᵀ·g contracts over
    // one element, an outer product; it runs as a broadcast multiply inside the update's
    // pass (the product's matrix is never written), and the values are the same bits.
    let loss = |p: &(Tensor, Tensor), x: &Tensor| (x.matmul(&p.0) + &p.1).tanh().sum();
    let sgd =
        |p: &(Tensor, Tensor), g: &(Tensor, Tensor)| (&p.0 - &(&g.0 * 0.1), &p.1 - &(&g.1 * 0.1));
    let step = move |p: &(Tensor, Tensor), x: &Tensor| sgd(p, &grad(loss).call(p, (x,)).0);
    let (fused, unfused) = (compile(step), compile(step).fusion(false));
    let mut rng = Generator::new(41);
    // rows of 300: long enough for the pass (short rows keep the matrix kernel)
    let p = (
        rand(&mut rng, &[6, 300], -1.0, 1.0),
        rand(&mut rng, &[300], -1.0, 1.0),
    );
    for _ in 0..3 {
        let x = rand(&mut rng, &[1, 6], -1.0, 1.0);
        let want = step(&p, &x);
        for got in [fused.call(&p, (&x,)), unfused.call(&p, (&x,))] {
            assert!(got.0.value().bit_eq(want.0.value()) && got.1.value().bit_eq(want.1.value()));
        }
    }
    // the forward's product only; without fusion, the gradient's product too
    let products = |text: String| steps_of(&text, "matmul");
    assert_eq!(products(fused.plan_text()), 1, "{}", fused.plan_text());
    assert_eq!(products(unfused.plan_text()), 2, "{}", unfused.plan_text());
}

/// The address of a tensor's first element.
fn address(t: &Tensor) -> usize {
    t.value()
        .as_slice::<f64>()
        .expect("contiguous f64")
        .as_ptr() as usize
}

/// A copy that shares no buffer with `p`.
fn deep_copy(p: &Mlp) -> Mlp {
    let copy = |t: &Tensor| Tensor::from_vec(t.to_f64_vec(), t.shape());
    Mlp {
        w1: copy(&p.w1),
        b1: copy(&p.b1),
        w2: copy(&p.w2),
    }
}

fn sgd_step(p: &Mlp, x: &Tensor, y: &Tensor) -> Mlp {
    let g = grad(mlp).call(p, (x, y)).0;
    Mlp {
        w1: &p.w1 - &(&g.w1 * 0.1),
        b1: &p.b1 - &(&g.b1 * 0.1),
        w2: &p.w2 - &(&g.w2 * 0.1),
    }
}

/// Six calls of a training step compiled twice, by `call` from `s` and by `call_donating`
/// from `u` (equal states), each call's arguments from `args`: the same bits every call, and
/// from the third call on the donated state's leaves stay where they are (the capture and
/// the first replay return new buffers). Check mode verifies every replay against direct
/// mode on the state, so it donates nothing, and only the results are compared there.
/// Returns both states.
fn assert_donated_in_place<S: Tree, A>(
    mut s: S,
    mut u: S,
    mut args: impl FnMut() -> A,
    plain: impl Fn(&S, &A) -> S,
    donating: impl Fn(S, &A) -> S,
) -> (S, S) {
    let checking = std::env::var_os("FERROGRAD_OPTIMIZE").is_some();
    for k in 0..6 {
        let a = args();
        let before: Vec<usize> = ferrograd::leaves(&u).iter().map(address).collect();
        s = plain(&s, &a);
        u = donating(u, &a);
        assert_same_trees(&s, &u);
        let after: Vec<usize> = ferrograd::leaves(&u).iter().map(address).collect();
        if k >= 2 && !checking {
            assert_eq!(before, after, "call {k}: updated in place");
        }
    }
    (s, u)
}

/// `call_donating` writes a training step's new parameters over the old ones (the same
/// buffers, call after call), with the bits of `call`; a parameter still held elsewhere is
/// never written, and a plan that can hand the call back to a capture donates nothing.
#[test]
fn donated_parameters_are_updated_in_place_with_the_results_of_call() {
    let (plain, donating) = (compile(sgd_step), compile(sgd_step));
    let mut rng = Generator::new(21);
    let p = mlp_params(&mut rng);
    let q = deep_copy(&p);
    let batch = |rng: &mut Generator| (rand(rng, &[5, 4], -1.0, 1.0), one_hot_rows(rng, 5));
    let (mut p, mut q) = assert_donated_in_place(
        p,
        q,
        || batch(&mut rng),
        |p, (x, y)| plain.call(p, (x, y)),
        |q, (x, y)| donating.call_donating(q, (x, y)),
    );
    // held elsewhere: left as it was
    let held = q.w1.clone();
    let kept = held.to_f64_vec();
    let x = rand(&mut rng, &[5, 4], -1.0, 1.0);
    let y = one_hot_rows(&mut rng, 5);
    p = plain.call(&p, (&x, &y));
    q = donating.call_donating(q, (&x, &y));
    assert_same_trees(&p, &q);
    assert_eq!(held.to_f64_vec(), kept, "a held parameter was written");
    assert_ne!(address(&held), address(&q.w1));

    // a branch on a value: the replay may miss and capture again from the parameters
    let branchy = |p: &Mlp, x: &Tensor, y: &Tensor| {
        let next = sgd_step(p, x, y);
        if x.sum().item::<f64>() > 0.0 {
            next
        } else {
            Mlp {
                w1: &next.w1 * 0.5,
                ..next
            }
        }
    };
    let (plain, donating) = (compile(branchy), compile(branchy));
    let mut p = mlp_params(&mut rng);
    let mut q = deep_copy(&p);
    for k in 0..6 {
        let x = rand(&mut rng, &[5, 4], -1.0, 1.0);
        let y = one_hot_rows(&mut rng, 5);
        let before = address(&q.w2);
        p = plain.call(&p, (&x, &y));
        q = donating.call_donating(q, (&x, &y));
        assert_same_trees(&p, &q);
        assert_ne!(
            before,
            address(&q.w2),
            "call {k}: a plan that can miss donated"
        );
    }
}

/// A momentum step: the velocity `v' = 0.9 v + g` and the weights `p' = p - 0.1 v'`, the
/// state passed in and out as one tree.
fn momentum_step(state: &(Mlp, Mlp), x: &Tensor, y: &Tensor) -> (Mlp, Mlp) {
    let (p, v) = state;
    let g = grad(mlp).call(p, (x, y)).0;
    let v = Mlp {
        w1: &(&v.w1 * 0.9) + &g.w1,
        b1: &(&v.b1 * 0.9) + &g.b1,
        w2: &(&v.w2 * 0.9) + &g.w2,
    };
    let p = Mlp {
        w1: &p.w1 - &(&v.w1 * 0.1),
        b1: &p.b1 - &(&v.b1 * 0.1),
        w2: &p.w2 - &(&v.w2 * 0.1),
    };
    (p, v)
}

/// `call_donating` writes a momentum step's new weights and velocities over the old ones
/// (one fused program with two outputs per parameter, not the `p - g·lr` update's one loop),
/// with the bits of `call`, call after call; a velocity still held elsewhere is never
/// written.
#[test]
fn donated_weights_and_velocities_are_updated_in_place_with_the_results_of_call() {
    let (plain, donating) = (compile(momentum_step), compile(momentum_step));
    let mut rng = Generator::new(22);
    let p = mlp_params(&mut rng);
    let v = Mlp {
        w1: p.w1.zeros_like(),
        b1: p.b1.zeros_like(),
        w2: p.w2.zeros_like(),
    };
    let (s, t) = (
        (deep_copy(&p), deep_copy(&v)),
        (deep_copy(&p), deep_copy(&v)),
    );
    let batch = |rng: &mut Generator| (rand(rng, &[5, 4], -1.0, 1.0), one_hot_rows(rng, 5));
    let (mut s, mut t) = assert_donated_in_place(
        s,
        t,
        || batch(&mut rng),
        |s, (x, y)| plain.call(s, (x, y)),
        |t, (x, y)| donating.call_donating(t, (x, y)),
    );
    let held = t.1.w1.clone();
    let kept = held.to_f64_vec();
    let x = rand(&mut rng, &[5, 4], -1.0, 1.0);
    let y = one_hot_rows(&mut rng, 5);
    s = plain.call(&s, (&x, &y));
    t = donating.call_donating(t, (&x, &y));
    assert_same_trees(&s, &t);
    assert_eq!(held.to_f64_vec(), kept, "a held velocity was written");
    assert_ne!(address(&held), address(&t.1.w1));
}

/// An Adam step with bias correction: the state (weights, first and second moments) passed
/// in and out as one tree, the step count as a tensor argument.
fn adam_step(state: &(Mlp, Mlp, Mlp), x: &Tensor, y: &Tensor, t: &Tensor) -> (Mlp, Mlp, Mlp) {
    let (p, m, v) = state;
    let g = grad(mlp).call(p, (x, y)).0;
    // 1 / (1 - β^t) for β = 0.9 and 0.999
    let (c1, c2) = (
        (-(t * 0.9f64.ln()).exp() + 1.0).reciprocal(),
        (-(t * 0.999f64.ln()).exp() + 1.0).reciprocal(),
    );
    let leaf = |p: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor| {
        let m = &(m * 0.9) + &(g * 0.1);
        let v = &(v * 0.999) + &(&(g * g) * 0.001);
        let step = &(&m * &c1) / &((&v * &c2).sqrt() + 1e-8);
        (p - &(step * 0.01), m, v)
    };
    let (w1, m1, v1) = leaf(&p.w1, &m.w1, &v.w1, &g.w1);
    let (b1, mb, vb) = leaf(&p.b1, &m.b1, &v.b1, &g.b1);
    let (w2, m2, v2) = leaf(&p.w2, &m.w2, &v.w2, &g.w2);
    (
        Mlp { w1, b1, w2 },
        Mlp {
            w1: m1,
            b1: mb,
            w2: m2,
        },
        Mlp {
            w1: v1,
            b1: vb,
            w2: v2,
        },
    )
}

/// `call_donating` writes an Adam step's new weights and both moments over the old ones,
/// with the bits of `call`, call after call.
#[test]
fn donated_adam_state_is_updated_in_place_with_the_results_of_call() {
    let (plain, donating) = (compile(adam_step), compile(adam_step));
    let mut rng = Generator::new(23);
    let p = mlp_params(&mut rng);
    let zeros = || Mlp {
        w1: p.w1.zeros_like(),
        b1: p.b1.zeros_like(),
        w2: p.w2.zeros_like(),
    };
    let (s, u) = (
        (deep_copy(&p), zeros(), zeros()),
        (deep_copy(&p), zeros(), zeros()),
    );
    let mut step = 0.0;
    let batch = || {
        step += 1.0;
        let (x, y) = (
            rand(&mut rng, &[5, 4], -1.0, 1.0),
            one_hot_rows(&mut rng, 5),
        );
        (x, y, Tensor::scalar(step))
    };
    assert_donated_in_place(
        s,
        u,
        batch,
        |s, (x, y, t)| plain.call(s, (x, y, t)),
        |u, (x, y, t)| donating.call_donating(u, (x, y, t)),
    );
}

/// A replayed Adam step donated its state allocates one buffer of the weight's size at its
/// peak, the gradient's: the new weights and moments are written over the old ones, and
/// values that die inside the step (`0.999·v` in a group of its own) are written over too.
/// Called without donating, it allocates the new state and the gradient, no more.
#[test]
fn a_donated_adam_step_holds_one_new_buffer_at_its_peak() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode runs every call in direct mode as well
    }
    fn loss(p: &Tensor, x: &Tensor) -> Tensor {
        x.matmul(p).tanh().sum()
    }
    fn step(s: &(Tensor, Tensor, Tensor), x: &Tensor, t: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (p, m, v) = s;
        let g = grad(loss).call(p, (x,)).0;
        let c1 = (-(t * 0.9f64.ln()).exp() + 1.0).reciprocal();
        let c2 = (-(t * 0.999f64.ln()).exp() + 1.0).reciprocal();
        let m = &(m * 0.9) + &(&g * 0.1);
        let v = &(v * 0.999) + &(&(&g * &g) * 0.001);
        let update = &(&m * &c1) / &((&v * &c2).sqrt() + 1e-8);
        (p - &(update * 0.001), m, v)
    }
    let n = 256; // 256 KB per f32 buffer: past the size the plan keeps in its slots
    let bytes = n * n * 4;
    let mut rng = Generator::new(24);
    let x = Tensor::new(rng.normal(&[8, n], 0.0, 1.0, DType::F32));
    let mut state = || {
        let p = Tensor::new(rng.normal(&[n, n], 0.0, 0.01, DType::F32));
        (
            p,
            Tensor::zeros(&[n, n], DType::F32),
            Tensor::zeros(&[n, n], DType::F32),
        )
    };
    let (mut s, mut u) = (state(), state());
    let (plain, donating) = (compile(step), compile(step));
    for k in 0..3 {
        let t = Tensor::scalar((k + 1) as f32);
        s = plain.call(&s, (&x, &t));
        u = donating.call_donating(u, (&x, &t));
    }
    let t = Tensor::scalar(4.0f32);
    let meter = ferrograd::array::MemoryMeter::start();
    u = donating.call_donating(u, (&x, &t));
    let donated = meter.peak_bytes();
    meter.reset_peak();
    s = plain.call(&s, (&x, &t));
    let plain_peak = meter.peak_bytes();
    drop(meter);
    assert!(
        donated <= bytes + 64 * 1024,
        "donated: {donated} bytes at the peak"
    );
    assert!(
        plain_peak <= 4 * bytes + 64 * 1024,
        "call: {plain_peak} bytes at the peak"
    );
    let _ = (&s, &u);
}

/// LSTM gates written the plain way: the bias added to all four gates' block, viewed as
/// `[b, 4, h]`, three sigmoids taken at once, each gate read through a slice. `pre` holds the
/// gates' inputs for every time step, the last output is added to every gate in place of a
/// product (so every pass on it is exact).
fn lstm_gates(p: &(Tensor, Tensor), c0: &Tensor) -> (Tensor, Tensor) {
    let (pre, bias) = p;
    let (b, h) = (c0.size(0), c0.size(1));
    let (mut c, mut out) = (c0.clone(), c0.clone());
    for t in 0..pre.size(0) {
        let gates = (pre.select(0, t) + bias).reshape(&[b, 4, h]) + out.unsqueeze(1);
        let ifo = gates.narrow(1, 0, 3).sigmoid();
        c = &ifo.select(1, 1) * &c + &ifo.select(1, 0) * &gates.select(1, 3).tanh();
        out = &ifo.select(1, 2) * &c.tanh();
    }
    let loss = (&out * &out).sum() + c.sum() * 0.5;
    (loss, out)
}

/// Steps of `op` outside fused runs (a run's members are indented further).
fn unfused_steps_of(plan: &str, op: &str) -> usize {
    plan.lines()
        .filter(|l| l.starts_with("  %") && l.contains(&format!(" = {op}(")))
        .count()
}

#[test]
fn slices_and_concatenations_move_across_pointwise_ops_into_the_gates_fused_runs() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode keeps the recorded sum of padded gradients, which this reads
    }
    // Each step's bias add, 3-gate sigmoid, the gradient's 3-gate concatenation and the
    // sigmoid's derivative run over shapes of their own ([b, 4h], [b, 3, h]); moved onto
    // the per-gate slices, they join the per-gate arithmetic's fused runs.
    let mut rng = Generator::new(45);
    let (steps, b, h) = (3, 5, 7);
    let df = grad(lstm_gates).optimize(true);
    for _ in 0..3 {
        let p = (
            rand(&mut rng, &[steps, b, 4 * h], -2.0, 2.0),
            rand(&mut rng, &[4 * h], -1.0, 1.0),
        );
        let c0 = rand(&mut rng, &[b, h], -1.0, 1.0);
        let ((gp, gb), (l, out)) = df.call(&p, (&c0,));
        let ((wp, wb), (wl, wout)) = grad(lstm_gates).call(&p, (&c0,));
        assert!(same(&l, &wl) && same(&out, &wout));
        // the same numbers (a slice's -0.0 may come back where a sum of pads gave +0.0)
        assert_eq!(gp.to_vec::<f64>(), wp.to_vec::<f64>());
        assert_eq!(gb.to_vec::<f64>(), wb.to_vec::<f64>());
    }
    let text = df.plan_text();
    for op in [
        "sigmoid",
        "tanh",
        "sigmoid_backward",
        "tanh_backward",
        "add",
        "mul",
    ] {
        assert_eq!(
            unfused_steps_of(&text, op),
            0,
            "{op} runs on its own:\n{text}"
        );
    }
    // at most a forward run and a backward run per step, and the loss's and the bias's
    assert!(fused_runs(&text).len() <= 2 * steps + 2, "{text}");
    // each step's gate gradients are concatenated once ([b, 4, h], not [b, 3, h] first),
    // and the steps' gradients of `pre` once
    assert_eq!(steps_of(&text, "cat"), steps + 1, "{text}");
}

#[test]
fn a_recurrent_weight_gradient_joined_over_time_steps_folds_into_the_weight_update() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode runs no inexact rewrite, and this reads the plan
    }
    // h' = tanh([x_t, h] @ w + b + e_t) over 8 steps: w's gradient is a sum of one product
    // per step, which the plan joins into one product over the stacked steps and then adds,
    // scaled by -lr, into w itself. The offsets e_t are zero; their gradients are the
    // pre-activations' gradients, which the bound below needs.
    let (steps, batch, nx, nh) = (8, 4, 20, 30);
    let loss = |p: &(Tensor, Tensor, Vec<Tensor>), x: &Tensor| {
        let mut h = Tensor::zeros(&[batch, nh], DType::F64);
        for t in 0..steps {
            let pre = Tensor::cat(&[x.select(1, t), h], 1).matmul(&p.0) + &p.1 + &p.2[t];
            h = pre.tanh();
        }
        (&h * &h).sum()
    };
    let step = |p: &(Tensor, Tensor, Vec<Tensor>), x: &Tensor| {
        let g = grad(loss).call(p, (x,)).0;
        (&p.0 - &(&g.0 * 0.01), &p.1 - &(&g.1 * 0.01))
    };
    let mut rng = Generator::new(47);
    let compiled = compile(step);
    for donate in [false, true, true] {
        let p = (
            rand(&mut rng, &[nx + nh, nh], -0.3, 0.3),
            rand(&mut rng, &[nh], -0.3, 0.3),
            vec![Tensor::zeros(&[batch, nh], DType::F64); steps],
        );
        let x = rand(&mut rng, &[batch, steps, nx], -1.0, 1.0);
        let (want_w, want_b) = step(&p, &x);
        // Σ_t |[x_t, h_t-1]|ᵀ |d pre_t|: what the weight gradient adds up
        let d_pre = grad(loss).call(&p, (&x,)).0 .2;
        // (and the bias's: its gradient's terms may be added in another order too)
        let mut h = Tensor::zeros(&[batch, nh], DType::F64);
        let (mut size, mut bias_size) = (p.0.abs(), p.1.abs());
        for (t, d) in d_pre.iter().enumerate() {
            let input = Tensor::cat(&[x.select(1, t), h.clone()], 1);
            size = size + input.abs().t().matmul(&d.abs()) * 0.01;
            bias_size = bias_size + d.abs().sum_dim(0, false) * 0.01;
            h = (input.matmul(&p.0) + &p.1).tanh();
        }
        let (w, b) = if donate {
            compiled.call_donating(p, (&x,))
        } else {
            compiled.call(&p, (&x,))
        };
        for (got, want, size) in [(w, want_w, size), (b, want_b, bias_size)] {
            let (got, want, size) = (got.to_f64_vec(), want.to_f64_vec(), size.to_f64_vec());
            for ((g, e), m) in got.iter().zip(&want).zip(&size) {
                assert!((g - e).abs() <= 4.0 * f64::EPSILON * m, "{g} against {e}");
            }
        }
    }
    let text = compiled.plan_text();
    // one product over the stacked steps, into w (params.0)
    assert_eq!(steps_of(&text, "matmul_acc·-0.01"), 1, "{text}");
    assert!(text.contains("= matmul_acc·-0.01(%0, "), "{text}");
    // and no [50, 30] gradient written out for an update to read back
    assert!(!text.contains("fused f64[50, 30]"), "{text}");
    // each step's `h @ w_h` added into its rows of the joined input projections, in place
    assert_eq!(text.matches(" = matmul_acc_rows[").count(), steps, "{text}");
}

#[test]
fn an_sgd_update_by_a_products_gradient_accumulates_into_the_weight() {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // check mode runs no inexact rewrite, and this reads the plan
    }
    // w - lr * (xᵀ dh): the gradient's product accumulates straight into the weight
    let step = |p: &(Tensor, Tensor), x: &Tensor| {
        let loss = |p: &(Tensor, Tensor), x: &Tensor| (x.matmul(&p.0) + &p.1).tanh().sum();
        let g = grad(loss).call(p, (x,)).0;
        (&p.0 - &(&g.0 * 0.01), &p.1 - &(&g.1 * 0.01))
    };
    let mut rng = Generator::new(46);
    let compiled = compile(step);
    for donate in [false, false, true, true] {
        let p = (
            rand(&mut rng, &[20, 30], -1.0, 1.0),
            rand(&mut rng, &[30], -1.0, 1.0),
        );
        let x = rand(&mut rng, &[8, 20], -1.0, 1.0);
        let (w0, b0) = (p.0.to_f64_vec(), p.1.to_f64_vec());
        let (want_w, want_b) = step(&p, &x);
        // the weight gradient's terms, for the bound
        let dh = {
            let h = (x.matmul(&p.0) + &p.1).tanh();
            -(&h * &h) + 1.0
        };
        let magnitude = (x.abs().t().matmul(&dh.abs()) * 0.01 + p.0.abs()).to_f64_vec();
        let (w, b) = if donate {
            compiled.call_donating(p, (&x,))
        } else {
            let got = compiled.call(&p, (&x,));
            // the caller's parameters are not written
            assert_eq!((p.0.to_f64_vec(), p.1.to_f64_vec()), (w0, b0));
            got
        };
        assert!(same(&b, &want_b));
        let (w, want_w) = (w.to_f64_vec(), want_w.to_f64_vec());
        for ((g, e), m) in w.iter().zip(&want_w).zip(&magnitude) {
            // a few units in the last place of what is added up
            assert!((g - e).abs() <= 4.0 * f64::EPSILON * m, "{g} against {e}");
        }
    }
    let text = compiled.plan_text();
    // the weight gradient's product scaled by -lr and added into the weight, in the kernel
    assert_eq!(steps_of(&text, "matmul_acc·-0.01"), 1, "{text}");
    assert!(text.contains("= matmul_acc·-0.01(%0, "), "{text}");
    // the forward product remains; the weight gradient's is folded
    assert_eq!(steps_of(&text, "matmul"), 1, "{text}");

    // a weight read after its update keeps its buffer: nothing is folded into it
    let read_after = |p: &(Tensor, Tensor), x: &Tensor| {
        let (w, b) = step(p, x);
        let norm = (&p.0 * &p.0).sum();
        (w, b, norm)
    };
    let compiled = compile(read_after);
    let p = (
        rand(&mut rng, &[20, 30], -1.0, 1.0),
        rand(&mut rng, &[30], -1.0, 1.0),
    );
    let x = rand(&mut rng, &[8, 20], -1.0, 1.0);
    for _ in 0..2 {
        let (w, _, norm) = compiled.call(&p, (&x,));
        let (want_w, _, want_norm) = read_after(&p, &x);
        assert!(same(&w, &want_w) && same(&norm, &want_norm));
    }
    let text = compiled.plan_text();
    assert_eq!(steps_of(&text, "matmul_acc"), 0, "{text}");
}

/// One optimized function shared by four threads calling it at once (two cores): the
/// threads capture new signatures (batches of 3, 5 and 7) and add guard variants (a branch
/// on a value read from the data) while others replay the same plans, and replays find
/// the plan's scratch memory busy. Every call must return direct mode's bits (fusion off),
/// with and without stable gradients, and nothing may be lost from the statistics.
#[test]
fn one_optimized_function_serves_several_threads_at_once() {
    // the MLP's loss, doubled when the batch's first input is negative: a guard
    let f = |p: &Mlp, x: &Tensor, y: &Tensor| {
        let (loss, out) = mlp(p, x, y);
        let loss = if x.select(0, 0).select(0, 0).lt_scalar(0.0).item::<bool>() {
            loss * 2.0
        } else {
            loss
        };
        (loss, out)
    };
    let mut rng = Generator::new(40);
    let p = mlp_params(&mut rng);
    // 3 batch sizes x 2 signs of the first input, 4 inputs each
    let inputs: Vec<(Tensor, Tensor)> = (0..24)
        .map(|i| {
            let n = [3, 5, 7][i % 3];
            let mut x = rand(&mut rng, &[n, 4], 0.1, 2.0).to_vec::<f64>();
            if i % 6 >= 3 {
                x[0] = -x[0];
            }
            (Tensor::from_vec(x, &[n, 4]), one_hot_rows(&mut rng, n))
        })
        .collect();
    let want: Vec<_> = inputs
        .iter()
        .map(|(x, y)| grad(f).call(&p, (x, y)))
        .collect();
    for stable in [false, true] {
        let compiled = grad(f)
            .optimize(true)
            .fusion(false)
            .stable_gradients(stable);
        let (threads, rounds) = (4, 30);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (compiled, inputs, want, p) = (&compiled, &inputs, &want, &p);
                s.spawn(move || {
                    for r in 0..rounds {
                        let i = (t * 7 + r * 5) % inputs.len();
                        let (x, y) = &inputs[i];
                        let (g, (loss, out)) = compiled.call(p, (x, y));
                        let (wg, (wl, wo)) = &want[i];
                        assert_same_trees(&g, wg);
                        assert!(
                            same(&loss, wl) && same(&out, wo),
                            "stable {stable}, thread {t}, call {r}: input {i}"
                        );
                    }
                });
            }
        });
        let s = compiled.stats();
        assert_eq!(s.calls, (threads * rounds) as u64, "{s:?}");
        assert_eq!(s.hits + s.captures + s.fallbacks, s.calls, "{s:?}");
        assert!(s.plans == 3 && s.variants >= 3, "{s:?}");
    }
}

/// A replay whose data a kernel refuses (an index out of range) panics as direct mode does,
/// at the user's line (the kernel's own message named the plan's), and the plan replays
/// the next calls as before (its scratch memory, left half-written, is made anew).
#[test]
fn a_replay_that_a_kernel_refuses_panics_at_the_users_line_and_replays_after() {
    let f = |w: &Tensor, rows: &Tensor| w.index_select(0, rows).square().sum();
    let df = grad(f).optimize(true);
    let w = Tensor::from_vec((0..12).map(f64::from).collect(), &[4, 3]);
    let good = Tensor::from_vec(vec![0i64, 3, 1], &[3]);
    let bad = Tensor::from_vec(vec![0i64, 7, 1], &[3]);
    for _ in 0..2 {
        df.call(&w, (&good,));
    }
    let line = line!() - 8; // the closure's
    let message = panic_message(|| drop(df.call(&w, (&bad,))));
    assert!(
        message.contains("index_select: index 7 is out of range for dim 0 of size 4")
            && message.contains(&format!("(at {}:{line}:", file!())),
        "{message}"
    );
    assert_eq!(message, panic_message(|| drop(grad(f).call(&w, (&bad,)))));
    for _ in 0..2 {
        let (g, _) = df.call(&w, (&good,));
        assert!(same(&g, &grad(f).call(&w, (&good,)).0));
    }
    let s = df.stats();
    assert_eq!((s.captures, s.hits), (1, 3), "{s:?}");
    assert!(s.warnings.is_empty(), "{s:?}");
}
