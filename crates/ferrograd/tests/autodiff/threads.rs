use ferrograd::{grad, Tensor};

use crate::common::*;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn tensors_are_send_and_sync() {
    assert_send_sync::<Tensor>();
    assert_send_sync::<ferrograd::Grad<fn(&Tensor) -> Tensor>>();
}

#[test]
fn grads_on_two_threads_at_once() {
    // f(x) = Σ x³ / 3 on one thread, g(x) = Σ e^x on another, 200 times each, interleaved.
    let f = |x: &Tensor| (x.pow_scalar(3.0) / 3.0).sum();
    let g = |x: &Tensor| x.exp().sum();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..200 {
                    let v = 0.01 * i as f64 + t as f64;
                    let x = Tensor::from_vec(vec![v, -v], &[2]);
                    if t == 0 {
                        let (d, _) = grad(f).call(&x, ());
                        assert_close(&d, &[v * v, v * v], 1e-12);
                    } else {
                        let (d, _) = grad(g).call(&x, ());
                        assert_close(&d, &[v.exp(), (-v).exp()], 1e-12);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_traced_tensor_moves_between_threads() {
    // The inner computation runs on another thread while the outer grad traces it.
    let f = |x: &Tensor| {
        let x2 = x.clone();
        std::thread::spawn(move || (&x2 * &x2).sum())
            .join()
            .unwrap()
    };
    let (d, _) = grad(f).call(&Tensor::from_vec(vec![3.0f64], &[1]), ());
    assert_eq!(d.to_f64_vec(), vec![6.0]);
}

#[test]
fn graphs_are_freed_when_their_tensors_drop() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let mut y = &x * 2.0;
    let weak = std::sync::Mutex::new(None);
    let f = |x: &Tensor| {
        let h = x.exp();
        (h.sum(), h)
    };
    let (_, (loss, h)) = grad(f).call(&x, ());
    // outputs come back untraced: nothing of the graph is reachable from them
    assert!(!loss.is_traced() && !h.is_traced());
    // a graph built inside an outer trace lives while its result does, and no longer
    let outer = |x: &Tensor| {
        let mut t = x.clone();
        for _ in 0..10 {
            t = t.sin();
        }
        let w = t.downgrade();
        (t.sum(), w)
    };
    let out = grad(|x: &Tensor| {
        let (s, w) = outer(x);
        *weak.lock().unwrap() = Some(w);
        s
    })
    .call(&x, ());
    drop(out);
    let w = weak.lock().unwrap().take().unwrap();
    assert!(w.upgrade().is_none(), "the graph outlived its tensors");
    y = &y + 1.0;
    assert_eq!(y.to_f64_vec(), vec![3.0, 5.0]);
}

#[test]
fn long_chains_drop_without_overflowing_the_stack() {
    // 200 000 nodes: a recursive drop would overflow the default 2 MiB test thread stack.
    let f = |x: &Tensor| {
        let mut t = x.clone();
        for _ in 0..200_000 {
            t = &t * 1.0;
        }
        t.sum()
    };
    let (d, _) = grad(f).call(&Tensor::from_vec(vec![1.0f64], &[1]), ());
    assert_eq!(d.to_f64_vec(), vec![1.0]);
}
