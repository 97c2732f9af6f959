//! Gradient checkpointing: the same gradients as without it (to second order, with trees
//! and dropout), clear errors, optimize mode, and the memory it saves.

use ferrograd::{
    checkpoint, checkpoint_with_rng, grad, hvp, leaves, DType, Generator, MemoryMeter, Tensor,
};

/// A deep MLP's weights: the tree the tests differentiate.
type Weights = Vec<Tensor>;

/// A deep tanh MLP: `layers` square matrices of `width`.
fn deep(layers: usize, width: usize, seed: u64) -> Weights {
    let mut g = Generator::new(seed);
    (0..layers)
        .map(|_| {
            Tensor::new(g.normal(
                &[width, width],
                0.0,
                1.0 / (width as f64).sqrt(),
                DType::F64,
            ))
        })
        .collect()
}

fn layers(ws: &[Tensor], h: &Tensor) -> Tensor {
    ws.iter().fold(h.clone(), |h, w| h.matmul(w).tanh())
}

/// The MLP's loss, its layers checkpointed in segments of `every` (0: no checkpoints).
fn deep_loss(ws: &Weights, x: &Tensor, every: usize) -> Tensor {
    let mut h = x.clone();
    if every == 0 {
        h = layers(ws, &h);
    } else {
        for seg in ws.chunks(every) {
            let seg = seg.to_vec();
            h = checkpoint(|(ws, h): &(Weights, Tensor)| layers(ws, h), &(seg, h));
        }
    }
    h.square().mean()
}

fn exact(a: &[Tensor], b: &[Tensor]) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert_eq!(x.shape(), y.shape(), "leaf {i}");
        assert_eq!(x.to_f64_vec(), y.to_f64_vec(), "leaf {i}");
    }
}

#[test]
fn checkpointed_gradients_are_the_gradients() {
    let ws = deep(6, 8, 1);
    let x = Tensor::new(Generator::new(2).normal(&[5, 8], 0.0, 1.0, DType::F64));
    let (want, y0) = grad(deep_loss).optimize(false).call(&ws, (&x, 0));
    for every in [1, 2, 4, 6] {
        let (got, y) = grad(deep_loss).optimize(false).call(&ws, (&x, every));
        assert_eq!(y.item::<f64>(), y0.item::<f64>());
        exact(&got, &want);
    }
}

/// An LSTM-style cell whose state is a tree `(h, c)`, and whose `c` is kept in f64 while
/// `h` is f32: outputs of two dtypes.
fn cell(p: &(Tensor, Tensor), state: &(Tensor, Tensor), x: &Tensor) -> (Tensor, Tensor) {
    let (w, u) = p;
    let (h, c) = state;
    let z = &x.matmul(w) + &h.matmul(u);
    let c = &(c * &z.sigmoid().to_dtype(DType::F64)) + &z.tanh().to_dtype(DType::F64);
    let h = c.tanh().to_dtype(DType::F32) * z.sigmoid();
    (h, c)
}

fn unrolled(p: &(Tensor, Tensor), xs: &Tensor, checkpointed: bool) -> Tensor {
    let (batch, hidden) = (xs.size(1), p.1.size(0));
    let mut state = (
        Tensor::zeros(&[batch, hidden], DType::F32),
        Tensor::zeros(&[batch, hidden], DType::F64),
    );
    for t in 0..xs.size(0) {
        let x = xs.select(0, t);
        state = if checkpointed {
            checkpoint(
                |(p, s, x): &((Tensor, Tensor), (Tensor, Tensor), Tensor)| cell(p, s, x),
                &(p.clone(), state, x),
            )
        } else {
            cell(p, &state, &x)
        };
    }
    &state.0.to_dtype(DType::F64).sum() + &state.1.square().sum()
}

#[test]
fn tree_inputs_and_outputs_of_two_dtypes() {
    let mut g = Generator::new(3);
    let p = (
        Tensor::new(g.normal(&[4, 4], 0.0, 0.5, DType::F32)),
        Tensor::new(g.normal(&[4, 4], 0.0, 0.5, DType::F32)),
    );
    let xs = Tensor::new(g.normal(&[5, 2, 4], 0.0, 1.0, DType::F32));
    let (want, y0) = grad(unrolled).optimize(false).call(&p, (&xs, false));
    let (got, y) = grad(unrolled).optimize(false).call(&p, (&xs, true));
    assert_eq!(y.item::<f64>(), y0.item::<f64>());
    exact(&leaves(&got), &leaves(&want));
}

#[test]
fn a_hessian_vector_product_through_checkpoints() {
    let ws = deep(4, 5, 4);
    let x = Tensor::new(Generator::new(5).normal(&[3, 5], 0.0, 1.0, DType::F64));
    let v = deep(4, 5, 6);
    let want = hvp(deep_loss, &ws, (&x, 0), &v);
    for every in [1, 2] {
        let got = hvp(deep_loss, &ws, (&x, every), &v);
        for (a, b) in got.iter().zip(&want) {
            for (p, q) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{p} vs {q}");
            }
        }
    }
}

fn dropped(w: &Tensor, x: &Tensor, rng: &mut Generator, checkpointed: bool) -> Tensor {
    let body = |(w, x): &(Tensor, Tensor), rng: &mut Generator| {
        let h = x.matmul(w).tanh();
        let keep = Tensor::rand_bernoulli(rng, h.shape(), 0.6, DType::F64);
        &h * &keep * (1.0 / 0.6)
    };
    let inputs = (w.clone(), x.clone());
    let h = if checkpointed {
        checkpoint_with_rng(body, &inputs, rng)
    } else {
        body(&inputs, rng)
    };
    // a second draw after the checkpoint: the generator must be where the forward left it
    let noise = Tensor::rand_normal(rng, h.shape(), 0.0, 1.0, DType::F64);
    (&h * &noise).sum()
}

#[test]
fn dropout_in_a_checkpoint_sees_the_same_masks_when_recomputed() {
    let w = deep(1, 6, 7).remove(0);
    let x = Tensor::new(Generator::new(8).normal(&[4, 6], 0.0, 1.0, DType::F64));
    let mut r1 = Generator::new(9);
    let mut r2 = Generator::new(9);
    let (want, y0) = grad(dropped).call(&w, (&x, &mut r1, false));
    let (got, y) = grad(dropped).call(&w, (&x, &mut r2, true));
    assert_eq!(y.item::<f64>(), y0.item::<f64>());
    assert_eq!(got.to_f64_vec(), want.to_f64_vec());
    // and the generators end in the same state
    let a = Tensor::rand_normal(&mut r1, &[3], 0.0, 1.0, DType::F64);
    let b = Tensor::rand_normal(&mut r2, &[3], 0.0, 1.0, DType::F64);
    assert_eq!(a.to_f64_vec(), b.to_f64_vec());
}

#[test]
fn a_parameter_captured_by_the_closure_is_an_error() {
    let w = Tensor::ones(&[2, 2], DType::F64);
    let x = Tensor::ones(&[1, 2], DType::F64);
    let msg = crate::common::panic_message(|| {
        grad(|w: &Tensor, x: &Tensor| {
            let w = w.clone();
            checkpoint(move |x: &Tensor| x.matmul(&w), x).sum()
        })
        .optimize(false)
        .call(&w, (&x,));
    });
    assert!(
        msg.contains("checkpoint: output 0 depends on a tensor being differentiated"),
        "{msg}"
    );
    assert!(
        msg.contains("checkpoint.rs"),
        "names the caller's line: {msg}"
    );

    let msg = crate::common::panic_message(|| {
        grad(|w: &Tensor| checkpoint(|w: &Tensor| (w.sum(), w.argmax(0, false)), w).0)
            .optimize(false)
            .call(&w, ());
    });
    assert!(msg.contains("output 1 is i64"), "{msg}");
}

#[test]
fn checkpoints_replay_in_optimize_mode() {
    let ws = deep(4, 6, 10);
    let g = grad(deep_loss).optimize(true);
    let d = grad(deep_loss).optimize(false);
    for i in 0..3 {
        let x = Tensor::new(Generator::new(20 + i).normal(&[3, 6], 0.0, 1.0, DType::F64));
        let (got, _) = g.call(&ws, (&x, 2));
        let (want, _) = d.call(&ws, (&x, 2));
        exact(&got, &want);
    }
    assert!(g.stats().hits >= 2, "{:?}", g.stats());

    // with a generator the call runs in direct mode, and stays right
    let w = deep(1, 6, 7).remove(0);
    let x = Tensor::new(Generator::new(8).normal(&[4, 6], 0.0, 1.0, DType::F64));
    let g = grad(dropped).optimize(true);
    let (mut r1, mut r2) = (Generator::new(1), Generator::new(1));
    for _ in 0..3 {
        let (got, _) = g.call(&w, (&x, &mut r1, true));
        let (want, _) = grad(dropped).optimize(false).call(&w, (&x, &mut r2, false));
        assert_eq!(got.to_f64_vec(), want.to_f64_vec());
    }
    assert_eq!(g.stats().hits, 0, "{:?}", g.stats());
}

#[test]
fn checkpointing_a_deep_mlp_lowers_its_peak_memory_3x() {
    // activations (256 x 64 per layer) dominate the weights (64 x 64)
    let ws = deep(64, 64, 11);
    let x = Tensor::new(Generator::new(12).normal(&[256, 64], 0.0, 1.0, DType::F64));
    let peak = |every: usize| {
        let meter = MemoryMeter::start();
        let (g, _) = grad(deep_loss).optimize(false).call(&ws, (&x, every));
        drop(g);
        meter.peak_bytes()
    };
    let plain = peak(0);
    // segments of 8 layers: 8 kept boundaries and one segment's activations at a time
    let checkpointed = peak(8);
    assert!(
        plain >= 3 * checkpointed,
        "peak {plain} bytes without checkpoints, {checkpointed} with"
    );
}

#[test]
fn policies_keep_the_gradients_and_trade_memory() {
    use ferrograd::{checkpoint_with, Policy};
    let ws = deep(16, 32, 13);
    let x = Tensor::new(Generator::new(14).normal(&[128, 32], 0.0, 1.0, DType::F64));
    let loss = |ws: &Weights, x: &Tensor, policy: Policy| {
        let mut h = x.clone();
        for seg in ws.chunks(4) {
            let seg = seg.to_vec();
            h = checkpoint_with(
                policy,
                |(ws, h): &(Weights, Tensor)| layers(ws, h),
                &(seg, h),
            );
        }
        h.square().mean()
    };
    let run = |policy: Policy| {
        let meter = MemoryMeter::start();
        let f = move |ws: &Weights, x: &Tensor| loss(ws, x, policy);
        let (g, _) = grad(f).optimize(false).call(&ws, (&x,));
        (g, meter.peak_bytes())
    };
    let (want, everything) = run(Policy::Everything);
    let (matmuls, saving) = run(Policy::Matmuls);
    let (nothing, least) = run(Policy::Nothing);
    exact(&matmuls, &want);
    exact(&nothing, &want);
    // matrix products kept: more than nothing, less than everything
    assert!(
        least < saving && saving < everything,
        "{least} {saving} {everything}"
    );
}

#[test]
fn a_function_that_computes_differently_when_recomputed_is_an_error() {
    use ferrograd::{checkpoint_with, Policy};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let calls = Arc::new(AtomicUsize::new(0));
    let w = Tensor::ones(&[2, 2], DType::F64);
    let msg = crate::common::panic_message(|| {
        let calls = calls.clone();
        grad(move |w: &Tensor| {
            let calls = calls.clone();
            let f = move |w: &Tensor| {
                // two products on the forward pass, one when recomputed
                let n = if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                    2
                } else {
                    1
                };
                (0..n).fold(w.clone(), |h, _| h.matmul(w))
            };
            checkpoint_with(Policy::Matmuls, f, w).sum()
        })
        .optimize(false)
        .call(&w, ());
    });
    assert!(
        msg.contains("ran 1 operations when recomputed and 2 on its forward pass"),
        "{msg}"
    );
}

#[test]
fn a_plan_frees_what_a_checkpoint_recomputes_and_keeps_what_its_policy_saves() {
    use ferrograd::{checkpoint_with, Policy};
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return; // measures plans' first replays; check mode replays in between
    }
    let ws = deep(32, 64, 15);
    let x = Tensor::new(Generator::new(16).normal(&[256, 64], 0.0, 1.0, DType::F64));
    let (want, _) = grad(deep_loss).optimize(false).call(&ws, (&x, 0));
    let loss = |ws: &Weights, x: &Tensor, policy: Option<Policy>| {
        let mut h = x.clone();
        for seg in ws.chunks(8) {
            let seg = seg.to_vec();
            let f = |(ws, h): &(Weights, Tensor)| layers(ws, h);
            h = match policy {
                Some(p) => checkpoint_with(p, f, &(seg, h)),
                None => f(&(seg, h)),
            };
        }
        h.square().mean()
    };
    // the peak of a plan's first replay (the second call), and its gradient
    let replay = |policy: Option<Policy>| {
        let g = grad(move |ws: &Weights, x: &Tensor| loss(ws, x, policy)).optimize(true);
        g.call(&ws, (&x,));
        let meter = MemoryMeter::start();
        let (grads, _) = g.call(&ws, (&x,));
        assert_eq!(g.stats().hits, 1, "{:?}", g.stats());
        (grads, meter.peak_bytes())
    };
    // the matrix products in the plan
    let products = |policy: Option<Policy>| {
        let g = grad(move |ws: &Weights, x: &Tensor| loss(ws, x, policy)).optimize(true);
        g.call(&ws, (&x,));
        g.plan_text().matches("matmul").count()
    };
    let (plain_g, plain) = replay(None);
    let (nothing_g, nothing) = replay(Some(Policy::Nothing));
    let (matmuls_g, matmuls) = replay(Some(Policy::Matmuls));
    for g in [&plain_g, &nothing_g, &matmuls_g] {
        exact(g, &want);
    }
    assert!(
        plain >= 2 * nothing,
        "plain {plain}, recompute everything {nothing}"
    );
    // the products stay alive until the backward pass (in this tanh net, where the backward
    // needs only the tanh outputs, more than without checkpoints)
    assert!(nothing < matmuls, "{nothing} {matmuls} {plain}");
    // and are not computed again: 32 fewer products in the plan
    assert_eq!(products(None) - products(Some(Policy::Matmuls)), 0);
    assert_eq!(
        products(Some(Policy::Nothing)) - products(Some(Policy::Matmuls)),
        32
    );
}

#[test]
fn named_values_are_taken_from_the_forward_pass() {
    use ferrograd::{checkpoint_name, checkpoint_with, Policy};
    let ws = deep(8, 16, 17);
    let x = Tensor::new(Generator::new(18).normal(&[32, 16], 0.0, 1.0, DType::F64));
    // two layers per checkpoint; the first layer's output is named
    let block = |(ws, h): &(Weights, Tensor)| {
        let h = checkpoint_name(&h.matmul(&ws[0]).tanh(), "mid");
        h.matmul(&ws[1]).tanh()
    };
    let loss = move |ws: &Weights, x: &Tensor, policy: Policy| {
        let mut h = x.clone();
        for seg in ws.chunks(2) {
            h = checkpoint_with(policy, block, &(seg.to_vec(), h));
        }
        h.square().mean()
    };
    let (want, _) = grad(move |ws: &Weights, x: &Tensor| loss(ws, x, Policy::Everything))
        .optimize(false)
        .call(&ws, (&x,));
    let products = |policy: Policy| {
        let g = grad(move |ws: &Weights, x: &Tensor| loss(ws, x, policy)).optimize(true);
        let (direct, _) = g.call(&ws, (&x,));
        let (replayed, _) = g.call(&ws, (&x,));
        exact(&direct, &want);
        exact(&replayed, &want);
        g.plan_text().matches("matmul").count()
    };
    for names in [&["mid"][..], &["other"][..]] {
        let f = move |ws: &Weights, x: &Tensor| loss(ws, x, Policy::Names(names));
        let (got, _) = grad(f).optimize(false).call(&ws, (&x,));
        exact(&got, &want);
    }
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_none() {
        // the kept value's own product is not recomputed: one fewer per checkpoint
        let nothing = products(Policy::Nothing);
        assert_eq!(nothing - products(Policy::Names(&["mid"])), 4);
        assert_eq!(nothing, products(Policy::Names(&["other"])));
    }
}
