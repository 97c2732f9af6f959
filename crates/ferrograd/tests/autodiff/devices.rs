//! Gradients on each device the machine has, against the CPU's: a parameter tree moved with
//! `to_device`, the same user function, gradients that come back on the parameters' device.
//! Without a GPU only the error paths run (the comparisons say they were skipped).

use ferrograd::{grad, to_device, DType, Device, DeviceError, Generator, Tensor, Tree};

#[derive(Tree, Clone)]
struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
}

/// A two-layer network's loss: a squared error on a sigmoid output plus a cross-entropy of
/// the hidden layer's first 3 units as logits against `labels`, and a running sum of the
/// hidden units and of its two largest, so that products, bias broadcasts, tanh, sigmoid,
/// log-softmax, gather, cumsum (its gradient a flipped cumsum), top-k (a sort, its gradient
/// a scatter) and means all take part.
fn loss(p: &Mlp, x: &Tensor, labels: &Tensor) -> Tensor {
    let h = (x.matmul(&p.w1) + &p.b1).tanh();
    let y = h.matmul(&p.w2).sigmoid();
    let logits = h.narrow(1, 0, 3);
    let nll = -logits.log_softmax(1).gather(1, labels).mean();
    let top = h.topk(2, 1, true).0.mean();
    (y * 2.0 - 1.0).square().mean() + nll + h.cumsum(1).square().mean() * 0.1 + top
}

/// The GPUs the machine has (none without one; then `skipped` says what was not compared).
fn gpus(skipped: &str) -> Vec<Device> {
    let gpus: Vec<Device> = Device::available()
        .into_iter()
        .filter(|d| !d.is_cpu())
        .collect();
    if gpus.is_empty() {
        eprintln!("skipped: no CUDA device {skipped}");
    }
    gpus
}

#[test]
fn a_tree_moves_whole_or_not_at_all() {
    let mut g = Generator::new(5);
    let p = Mlp {
        w1: Tensor::new(g.normal(&[4, 8], 0.0, 0.5, DType::F32)),
        b1: Tensor::zeros(&[8], DType::F32),
        w2: Tensor::new(g.normal(&[8, 1], 0.0, 0.5, DType::F32)),
    };
    let missing = Device::Cuda(Device::cuda_count());
    match to_device(&p, missing) {
        Err(DeviceError::NotBuilt { device } | DeviceError::NoDriver { device })
        | Err(DeviceError::NoSuchDevice { device, .. }) => assert_eq!(device, missing),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("{missing} does not exist but the tree moved there"),
    }
    let same = to_device(&p, Device::Cpu).unwrap();
    assert!(same.w1.value().shares_storage(p.w1.value()));
}

#[test]
fn gradients_on_a_gpu_match_the_cpu() {
    for device in gpus("so no gradient was compared with the CPU's") {
        let mut g = Generator::new(6);
        for dtype in [DType::F32, DType::F64] {
            let p = Mlp {
                w1: Tensor::new(g.normal(&[4, 8], 0.0, 0.5, dtype)),
                b1: Tensor::new(g.normal(&[8], 0.0, 0.1, dtype)),
                w2: Tensor::new(g.normal(&[8, 1], 0.0, 0.5, dtype)),
            };
            let x = Tensor::new(g.normal(&[16, 4], 0.0, 1.0, dtype));
            let labels = Tensor::from_vec((0..16).map(|i| i % 3).collect::<Vec<i64>>(), &[16, 1]);
            let (want, want_loss) = grad(loss).call(&p, (&x, &labels));
            let (pd, xd) = (to_device(&p, device).unwrap(), x.to_device(device).unwrap());
            let ld = labels.to_device(device).unwrap();
            let (got, got_loss) = grad(loss).call(&pd, (&xd, &ld));
            assert_eq!(got_loss.device(), device);
            let rel = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
            let close = |a: &Tensor, b: &Tensor| {
                assert_eq!(a.device(), device);
                let (a, b) = (a.to_device(Device::Cpu).unwrap(), b);
                assert!(
                    a.value().allclose(b.value(), rel, rel),
                    "{} vs {}",
                    a.value(),
                    b.value()
                );
            };
            close(&got_loss, &want_loss);
            close(&got.w1, &want.w1);
            close(&got.b1, &want.b1);
            close(&got.w2, &want.w2);
            // optimize mode compiles device signatures (their steps one by one, each on the
            // device), with the same results
            let compiled = grad(loss).optimize(true);
            for _ in 0..3 {
                let (again, again_loss) = compiled.call(&pd, (&xd, &ld));
                assert_eq!(again.w1.device(), device);
                close(&again_loss, &want_loss);
                close(&again.w1, &want.w1);
                close(&again.b1, &want.b1);
                close(&again.w2, &want.w2);
            }
            assert_eq!(compiled.stats().hits, 2, "{}", compiled.plan_text());
            // the gradient of a move goes back to where the tensor came from
            let (dx, _) =
                grad(|x: &Tensor| x.to_device(device).unwrap().square().sum()).call(&x, ());
            assert_eq!(dx.device(), Device::Cpu);
            assert!(dx.value().allclose((&x * 2.0).value(), rel, rel));
        }
    }
}

/// Ops whose forward or gradient builds a constant on the host (an index from a step slice
/// or a list of rows, a mask's positions, a scatter's owner table, cumprod's triangles, an
/// identity for eigh's gradient, a Jacobian's seeds) give a GPU input's results on the GPU,
/// the CPU's values: each constant is moved to its data's device (the ops refuse operands
/// on two devices).
#[test]
fn host_built_constants_follow_the_data_to_a_gpu() {
    use ferrograd::{Index, Step};
    let f = |x: &Tensor| {
        let rows = Tensor::from_vec(vec![2i64, 0, 2], &[3]);
        let mask = x.at((.., 0)).gt_scalar(0.0);
        let stepped = x.at((Step(.., 2), ..)).sum();
        let listed = x.index(Index::List(vec![1, 3])).square().sum();
        let masked = x.at((&mask, 1)).sum();
        let put = x.at_put((&rows, 1), &Tensor::scalar(2.0f64)).square().sum();
        let scattered = x
            .scatter(
                1,
                &Tensor::from_vec(vec![0i64, 0, 1, 1, 2, 2, 0, 1], &[4, 2]),
                &x.narrow(1, 0, 2),
            )
            .sum();
        let products = x.cumprod(1).sum();
        let s = x.narrow(0, 0, 3).matmul(&x.narrow(0, 0, 3).mt());
        let (w, _) = (&s + &Tensor::eye(3, DType::F64).to_device(x.device()).unwrap()).eigh();
        stepped + listed + masked + put + scattered + products + w.sum()
    };
    let x = Tensor::from_vec(
        (0..12)
            .map(|i| ((i * 5 % 7) as f64 - 3.0) * 0.3)
            .collect::<Vec<_>>(),
        &[4, 3],
    );
    let (want, want_value) = grad(f).call(&x, ());
    let want_jacobian = ferrograd::jacobian(|x: &Tensor| x.cumprod(1), &x);
    for device in gpus("(the CPU ran the same function above)") {
        let xd = x.to_device(device).unwrap();
        let (got, value) = grad(f).call(&xd, ());
        let jacobian = ferrograd::jacobian(|x: &Tensor| x.cumprod(1), &xd);
        for (g, w) in [
            (&got, &want),
            (&value, &want_value),
            (&jacobian, &want_jacobian),
        ] {
            assert_eq!(g.device(), device);
            let g = g.to_device(Device::Cpu).unwrap();
            assert!(
                g.value().allclose(w.value(), 1e-10, 1e-10),
                "{} vs {}",
                g.value(),
                w.value()
            );
        }
    }
}
