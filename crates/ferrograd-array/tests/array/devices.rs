//! Every op with a device kernel, run on each device the machine has (`Device::available`)
//! and compared with the same op on the CPU. On a machine without a GPU only the error paths
//! run (and the tests say the comparisons were skipped); CI builds and lints the CUDA code,
//! compiles every kernel with NVRTC and runs the kernels' bodies on the host (the `cuda`
//! feature's unit tests), and a GPU machine runs all of this.

use ferrograd_array::{Array, DType, Device, DeviceError, Generator, Index, MapFn, ZipFn};

/// The GPUs to compare with the CPU; prints why there are none.
fn gpus() -> Vec<Device> {
    let gpus: Vec<Device> = Device::available()
        .into_iter()
        .filter(|d| !d.is_cpu())
        .collect();
    if gpus.is_empty() {
        eprintln!(
            "skipped: no CUDA device ({}), so nothing was compared with the CPU",
            if cfg!(feature = "cuda") {
                "no driver or GPU"
            } else {
                "built without the `cuda` feature"
            }
        );
    }
    gpus
}

/// `got` (on any device) against `want` (on the CPU): same shape, dtype and device-free
/// values within `rel`, NaN where NaN.
#[track_caller]
fn assert_matches(got: &Array, want: &Array, rel: f64, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    for (i, (g, w)) in got
        .to_f64_vec()
        .into_iter()
        .zip(want.to_f64_vec())
        .enumerate()
    {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= rel * w.abs().max(1.0)
        };
        assert!(
            ok,
            "{what}: element {i} is {g} on the device, {w} on the CPU"
        );
    }
}

fn on(a: &Array, device: Device) -> Array {
    a.to_device(device).expect("moving to the device")
}

#[test]
fn moving_to_a_missing_gpu_is_a_typed_error_naming_what_is_missing() {
    let a = Array::from_vec(vec![1.0f32, 2.0], &[2]);
    let missing = Device::Cuda(Device::cuda_count());
    let e = a.to_device(missing).unwrap_err();
    if cfg!(feature = "cuda") {
        assert!(
            matches!(
                e,
                DeviceError::NoDriver { .. } | DeviceError::NoSuchDevice { .. }
            ),
            "{e:?}"
        );
    } else {
        assert_eq!(e, DeviceError::NotBuilt { device: missing });
        assert!(e.to_string().contains("`cuda` feature"), "{e}");
    }
    assert!(
        e.to_string()
            .starts_with(&format!("cuda:{}", Device::cuda_count())),
        "{e}"
    );
    // the CPU is always there, and moving to it is free
    assert_eq!(Device::available()[0], Device::Cpu);
    assert!(a.to_device(Device::Cpu).unwrap().shares_storage(&a));
}

#[test]
fn arrays_move_to_each_device_and_back_unchanged() {
    for device in gpus() {
        let mut g = Generator::new(1);
        for dtype in [DType::F32, DType::F64] {
            let a = g.normal(&[3, 4, 5], 0.0, 1.0, dtype);
            // views come back as their elements, not their storage
            for view in [
                a.clone(),
                a.permute(&[2, 0, 1]),
                a.narrow(1, 1, 2),
                Array::zeros(&[0, 3], dtype),
            ] {
                let d = on(&view, device);
                assert_eq!(d.device(), device);
                assert!(on(&d, Device::Cpu).bit_eq(&view));
            }
        }
        let ints = Array::from_vec(vec![i64::MIN, -1, 0, i64::MAX], &[4]);
        assert!(on(&on(&ints, device), Device::Cpu).bit_eq(&ints));
        let bools = Array::from_vec(vec![true, false, true], &[3]);
        assert!(on(&on(&bools, device), Device::Cpu).bit_eq(&bools));
        assert!(format!("{}", on(&bools, device)).contains(&format!("device={device}")));
    }
}

#[test]
fn elementwise_ops_on_a_gpu_match_the_cpu() {
    for device in gpus() {
        let mut g = Generator::new(2);
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let a = g.normal(&[6, 5], 0.0, 2.0, dtype).t();
            let b = g.normal(&[5, 1], 0.0, 2.0, dtype);
            let (da, db) = (on(&a, device), on(&b, device));
            for f in [
                MapFn::Neg,
                MapFn::Abs,
                MapFn::Exp,
                MapFn::Log,
                MapFn::Tanh,
                MapFn::Sigmoid,
                MapFn::Sqrt,
                MapFn::Round,
                MapFn::Erf,
                MapFn::Lgamma,
                MapFn::Digamma,
                MapFn::Powi(3),
                MapFn::Clamp(Some(-1.0), Some(0.5)),
            ] {
                let got = da.map_fn(f);
                assert_eq!(got.device(), device);
                assert_matches(&got, &a.map_fn(f), rel, &format!("{f:?} {dtype}"));
            }
            for f in [
                ZipFn::Add,
                ZipFn::Sub,
                ZipFn::Mul,
                ZipFn::Div,
                ZipFn::Maximum,
                ZipFn::Pow,
                ZipFn::Remainder,
            ] {
                assert_matches(
                    &da.zip_fn(&db, f),
                    &a.zip_fn(&b, f),
                    rel,
                    &format!("{f:?} {dtype}"),
                );
            }
            // a CPU scalar goes with a device array, on either side
            assert_matches(&(&da * 2.5), &(&a * 2.5), rel, "mul_scalar");
            assert_matches(&(1.0 - &da), &(1.0 - &a), rel, "rsub_scalar");
            assert_matches(&da.lt(&db), &a.lt(&b), 0.0, "lt");
            assert_matches(
                &da.tanh_backward(&db),
                &a.tanh_backward(&b),
                rel,
                "tanh_backward",
            );
            for to in [DType::F32, DType::F64, DType::I64, DType::Bool] {
                assert_matches(
                    &da.to_dtype(to),
                    &a.to_dtype(to),
                    rel,
                    &format!("{dtype} -> {to}"),
                );
            }
            assert_matches(&da.contiguous(), &a.contiguous(), 0.0, "contiguous");
            assert_matches(
                &Array::ones_like(&da),
                &Array::ones_like(&a),
                0.0,
                "ones_like",
            );
        }
    }
}

#[test]
fn reductions_on_a_gpu_match_the_cpu() {
    for device in gpus() {
        let mut g = Generator::new(3);
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let a = g.normal(&[7, 300, 3], 0.0, 1.0, dtype).permute(&[1, 2, 0]);
            let d = on(&a, device);
            assert_matches(&d.sum(), &a.sum(), rel, "sum");
            assert_matches(&d.mean(), &a.mean(), rel, "mean");
            let (dp, ap) = (d.mul_scalar(0.01).exp(), a.mul_scalar(0.01).exp());
            assert_matches(&dp.prod(), &ap.prod(), rel, "prod");
            for dims in [vec![0], vec![2], vec![0, 2]] {
                let dims = dims.as_slice();
                assert_matches(
                    &d.sum_dim(dims, true),
                    &a.sum_dim(dims, true),
                    rel,
                    "sum_dim",
                );
                assert_matches(
                    &d.mean_dim(dims, false),
                    &a.mean_dim(dims, false),
                    rel,
                    "mean_dim",
                );
                assert_matches(
                    &d.amax_dim(dims, false),
                    &a.amax_dim(dims, false),
                    0.0,
                    "amax_dim",
                );
                assert_matches(
                    &d.amin_dim(dims, true),
                    &a.amin_dim(dims, true),
                    0.0,
                    "amin_dim",
                );
                // (a product of 300 normals under- or overflows: scaled towards 1 first)
                let (dp, ap) = (d.mul_scalar(0.1).exp(), a.mul_scalar(0.1).exp());
                assert_matches(
                    &dp.prod_dim(dims, true),
                    &ap.prod_dim(dims, true),
                    rel,
                    "prod_dim",
                );
                let var = (d.var_dim(dims, 1, true), a.var_dim(dims, 1, true));
                assert_matches(&var.0, &var.1, rel, "var_dim");
                let lse = (d.logsumexp_dim(dims, false), a.logsumexp_dim(dims, false));
                assert_matches(&lse.0, &lse.1, rel, "logsumexp_dim");
                for p in [0.0, 1.0, 2.0, 3.5, f64::INFINITY] {
                    let norm = (d.norm_dim(p, dims, true), a.norm_dim(p, dims, true));
                    assert_matches(&norm.0, &norm.1, rel, "norm_dim");
                }
            }
            for k in [-1, 0, 2] {
                assert_matches(&d.tril(k), &a.tril(k), 0.0, "tril");
                assert_matches(&d.triu(k), &a.triu(k), 0.0, "triu");
                // diagonals: read from a matrix, placed into zeros, written into a copy
                let (dm, m) = (d.select(1, 0), a.select(1, 0));
                assert_matches(&dm.diag(k), &m.diag(k), 0.0, "diag of a matrix");
                let (dv, v) = (dm.select(1, 3), m.select(1, 3));
                assert_matches(&dv.diag(k), &v.diag(k), 0.0, "diag of a vector");
                assert_matches(&dm.diag_embed(k), &m.diag_embed(k), 0.0, "diag_embed");
                let (ds, s) = (dm.diagonal(k).neg(), m.diagonal(k).neg());
                assert_matches(
                    &dm.diagonal_scatter(&ds, k, 0usize, 1usize),
                    &m.diagonal_scatter(&s, k, 0usize, 1usize),
                    0.0,
                    "diagonal_scatter",
                );
            }
            for dim in 0..3 {
                for descending in [false, true] {
                    // (a few ties and a NaN, besides the draws)
                    let mut v = a.to_f64_vec();
                    (v[3], v[4], v[40]) = (v[7], f64::NAN, v[7]);
                    let t = Array::from_vec(v, a.shape()).to_dtype(dtype);
                    assert_matches(
                        &on(&t, device).argsort(dim, descending),
                        &t.argsort(dim, descending),
                        0.0,
                        "argsort",
                    );
                }
                // the same additions in the same order: equal bit for bit
                assert_matches(&d.cumsum(dim), &a.cumsum(dim), 0.0, "cumsum");
                assert_matches(&d.cumprod(dim), &a.cumprod(dim), 0.0, "cumprod");
                assert_matches(&d.flip([dim]), &a.flip([dim]), 0.0, "flip");
                assert_matches(&d.argmax(dim, false), &a.argmax(dim, false), 0.0, "argmax");
                let ((dv, di), (v, i)) = (d.min_dim(dim, true), a.min_dim(dim, true));
                assert_matches(&dv, &v, 0.0, "min_dim values");
                assert_matches(&di, &i, 0.0, "min_dim indices");
            }
        }
        let mask = Array::from_vec(vec![true, false, true, true], &[2, 2]);
        assert_matches(&on(&mask, device).sum(), &mask.sum(), 0.0, "sum of bools");
    }
}

#[test]
fn softmax_indexing_and_where_on_a_gpu_match_the_cpu() {
    for device in gpus() {
        let mut g = Generator::new(5);
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let x = g.normal(&[6, 10, 4], 0.0, 3.0, dtype).permute(&[1, 0, 2]);
            let grad = g.normal(&[10, 6, 4], 0.0, 1.0, dtype);
            let (dx, dg) = (on(&x, device), on(&grad, device));
            for d in 0..3 {
                let (y, ly) = (x.softmax(d), x.log_softmax(d));
                assert_matches(&dx.softmax(d), &y, rel, "softmax");
                assert_matches(&dx.log_softmax(d), &ly, rel, "log_softmax");
                let (dy, dly) = (on(&y, device), on(&ly, device));
                assert_matches(
                    &dy.softmax_backward(&dg, d),
                    &y.softmax_backward(&grad, d),
                    rel,
                    "softmax_backward",
                );
                assert_matches(
                    &dly.log_softmax_backward(&dg, d),
                    &ly.log_softmax_backward(&grad, d),
                    rel,
                    "log_softmax_backward",
                );
            }
            // causal attention's softmax, and layer norm with its gradients (on a GPU composed
            // from its reductions and elementwise ops)
            let loose = if dtype == DType::F32 { 1e-4 } else { 1e-10 };
            let scores = g.normal(&[2, 5, 7], 0.0, 2.0, dtype);
            assert_matches(
                &on(&scores, device).attention_softmax(0.5, true),
                &scores.attention_softmax(0.5, true),
                rel,
                "attention_softmax, causal",
            );
            assert_matches(
                &on(&scores, device).attention_softmax(0.5, false),
                &scores.attention_softmax(0.5, false),
                rel,
                "attention_softmax",
            );
            // (scores of a wide spread: weights and gradients below the normal range are 0)
            let sharp = g.normal(&[2, 5, 7], 0.0, 300.0, dtype);
            let weights = sharp.attention_softmax(0.5, true);
            let dweights = on(&sharp, device).attention_softmax(0.5, true);
            assert_matches(&dweights, &weights, rel, "attention_softmax, causal, sharp");
            let dy = g.normal(&[2, 5, 7], 0.0, 1.0, dtype);
            assert_matches(
                &dweights.attention_softmax_backward(&on(&dy, device), 0.5),
                &weights.attention_softmax_backward(&dy, 0.5),
                rel,
                "attention_softmax_backward",
            );
            let (w, b) = (
                g.normal(&[4], 1.0, 0.5, dtype),
                g.normal(&[4], 0.0, 0.5, dtype),
            );
            let rows = g.normal(&[10, 6, 4], 0.0, 2.0, dtype);
            let (drows, dw, db) = (on(&rows, device), on(&w, device), on(&b, device));
            assert_matches(
                &drows.layer_norm(&dw, &db, 1e-5),
                &rows.layer_norm(&w, &b, 1e-5),
                loose,
                "layer_norm",
            );
            assert_matches(
                &drows.layer_norm_backward(&dw, &dg, 1e-5),
                &rows.layer_norm_backward(&w, &grad, 1e-5),
                loose,
                "layer_norm_backward",
            );
            let (gw, gb) = drows.layer_norm_param_grads(&dg, &[4], 1e-5);
            let (cw, cb) = rows.layer_norm_param_grads(&grad, &[4], 1e-5);
            assert_matches(&gw, &cw, loose, "layer_norm_param_grads (weight)");
            assert_matches(&gb, &cb, loose, "layer_norm_param_grads (bias)");
            // cross-entropy's pieces: pick each row's target, add the gradient back
            let labels = Array::from_vec(vec![3i64, 0, 5, 5, 1, 2, 4, 0, 3, 5], &[10, 1]);
            let (dl, logits) = (on(&labels, device), x.narrow(2, 0, 1).reshape(&[10, 6]));
            let picked = logits.gather(1, &labels);
            assert_matches(&on(&logits, device).gather(1, &dl), &picked, 0.0, "gather");
            let back = Array::zeros(&[10, 6], dtype).scatter_add(1, &labels, &picked);
            let dback = on(&Array::zeros(&[10, 6], dtype), device).scatter_add(
                1,
                &dl,
                &on(&picked, device),
            );
            assert_matches(&dback, &back, rel, "scatter_add");
            // a scatter along dim 0 with repeated rows (labels 5, 0 and 3 twice each): the
            // last of each wins on both devices
            let rows_of = labels.reshape(&[10, 1]).expand(&[10, 6]).contiguous();
            let put = logits.scatter(0, &rows_of, &logits.neg());
            let dput =
                on(&logits, device).scatter(0, &on(&rows_of, device), &on(&logits.neg(), device));
            assert_matches(&dput, &put, 0.0, "scatter");
            let rows = Array::from_vec(vec![2i64, 0, 2, 9], &[4]);
            let drows = on(&rows, device);
            assert_matches(
                &on(&logits, device).index_select(0, &drows),
                &logits.index_select(0, &rows),
                0.0,
                "index_select",
            );
            let src = g.normal(&[4, 6], 0.0, 1.0, dtype);
            assert_matches(
                &on(&logits, device).index_add(0, &drows, &on(&src, device)),
                &logits.index_add(0, &rows, &src),
                rel,
                "index_add (a repeated row adds twice)",
            );
            // joins and the gradient of a slice
            let parts = [
                x.narrow(1, 0, 2),
                x.narrow(1, 3, 3).contiguous(),
                x.narrow(1, 5, 1),
            ];
            let dparts: Vec<Array> = parts.iter().map(|p| on(p, device)).collect();
            assert_matches(&Array::cat(&dparts, 1), &Array::cat(&parts, 1), 0.0, "cat");
            assert_matches(
                &Array::stack(&dparts[..1], 0),
                &Array::stack(&parts[..1], 0),
                0.0,
                "stack",
            );
            assert_matches(
                &dparts[1].pad_narrow(1, 2, 9),
                &parts[1].pad_narrow(1, 2, 9),
                0.0,
                "pad_narrow",
            );
            let mask = logits.gt(&Array::full(&[], 0.0, dtype));
            let zero = Array::full(&[], 0.0, dtype);
            assert_matches(
                &on(&mask, device).where_cond(&on(&logits, device), &zero),
                &mask.where_cond(&logits, &zero),
                0.0,
                "where",
            );
            // `Index` reads and writes: rows (a repeated one), an elementwise mask (on the
            // device, read back for its positions), a single row
            let dl = on(&logits, device);
            let list = Index::List(vec![2, 0, 2, -1]);
            assert_matches(
                &dl.index(list.clone()),
                &logits.index(list.clone()),
                0.0,
                "index rows",
            );
            let dmask = Index::Mask(on(&mask, device));
            let hmask = Index::Mask(mask.clone());
            assert_matches(
                &dl.index(dmask.clone()),
                &logits.index(hmask.clone()),
                0.0,
                "index mask",
            );
            let rows4 = g.normal(&[4, 6], 0.0, 1.0, dtype);
            let d4 = on(&rows4, device);
            assert_matches(
                &dl.index_put(&list, &d4),
                &logits.index_put(&list, &rows4),
                0.0,
                "index_put (the last of a repeated row wins)",
            );
            assert_matches(
                &dl.index_put_add(&list, &d4),
                &logits.index_put_add(&list, &rows4),
                rel,
                "index_put_add (a repeated row adds twice)",
            );
            let one = Array::full(&[], 7.0, dtype);
            assert_matches(
                &dl.index_put(&dmask, &on(&one, device)),
                &logits.index_put(&hmask, &one),
                0.0,
                "index_put through a mask",
            );
            let row = Array::full(&[6], -3.0, dtype);
            assert_matches(
                &dl.index_put(&Index::Single(-2), &on(&row, device)),
                &logits.index_put(&Index::Single(-2), &row),
                0.0,
                "index_put of one row",
            );
        }
    }
}

#[test]
fn fused_programs_on_a_gpu_match_the_cpu() {
    use ferrograd_array::{Instr, Program, Reduction};
    for device in gpus() {
        let mut g = Generator::new(9);
        // an LSTM cell's forward (sigmoids, tanhs, products; a broadcast bias and a host
        // scalar among the inputs) and a column sum of one of its values
        let program = Program::with_reductions(
            vec![
                Instr::Input(0),
                Instr::Input(1),
                Instr::Input(2),
                Instr::Input(3),
                Instr::Zip(ZipFn::Add, 0, 1),
                Instr::Map(MapFn::Sigmoid, 4),
                Instr::Map(MapFn::Tanh, 2),
                Instr::Zip(ZipFn::Mul, 5, 6),
                Instr::Zip(ZipFn::Mul, 7, 3),
                Instr::Map(MapFn::Tanh, 8),
            ],
            vec![9, 8],
            vec![Reduction {
                value: 7,
                mean: false,
                shape: [5].as_slice().into(),
            }],
        );
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let x = g.normal(&[5, 7], 0.0, 1.0, dtype).t();
            let b = g.normal(&[5], 0.0, 1.0, dtype);
            let u = g.normal(&[7, 5], 0.0, 1.0, dtype);
            let s = Array::full(&[], 0.75, dtype);
            let mut want = [None, None, None];
            program.run(&[&x, &b, &u, &s], &[7, 5], dtype, &mut want);
            assert!(program.runs_on(device, dtype));
            let on_gpu = [on(&x, device), on(&b, device), on(&u, device)];
            let mut got = [None, None, None];
            let inputs = [&on_gpu[0], &on_gpu[1], &on_gpu[2], &s];
            program.run(&inputs, &[7, 5], dtype, &mut got);
            for (g, w) in got.iter().zip(&want) {
                let (g, w) = (g.as_ref().unwrap(), w.as_ref().unwrap());
                assert_eq!(g.device(), device);
                assert_matches(g, w, rel, "fused program");
            }
        }
    }
}

#[test]
fn convolutions_and_their_gradients_on_a_gpu_match_the_cpu() {
    use ferrograd_array::Conv2dParams;
    for device in gpus() {
        let mut g = Generator::new(6);
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-4 } else { 1e-11 };
            // one group, then 2 (4 input channels and 6 output channels in 2 groups)
            for (c, o, groups) in [(2, 5, 1), (4, 6, 2)] {
                let p = Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 1),
                    groups,
                    ..Default::default()
                };
                let x = g.normal(&[3, c, 9, 7], 0.0, 1.0, dtype);
                let w = g.normal(&[o, c / groups, 3, 3], 0.0, 1.0, dtype);
                let b = g.normal(&[o], 0.0, 1.0, dtype);
                let y = x.conv2d(&w, Some(&b), p);
                let (dx_, dw_, db_) = (on(&x, device), on(&w, device), on(&b, device));
                assert_matches(&dx_.conv2d(&dw_, Some(&db_), p), &y, rel, "conv2d");
                let dy = g.normal(y.shape(), 0.0, 1.0, dtype);
                let ddy = on(&dy, device);
                assert_matches(
                    &ddy.conv2d_backward_input(&dw_, x.shape(), p),
                    &dy.conv2d_backward_input(&w, x.shape(), p),
                    rel,
                    "conv2d_backward_input",
                );
                assert_matches(
                    &ddy.conv2d_backward_weight(&dx_, w.shape(), p),
                    &dy.conv2d_backward_weight(&x, w.shape(), p),
                    rel,
                    "conv2d_backward_weight",
                );
            }
        }
    }
}

#[test]
fn pooling_and_its_gradients_on_a_gpu_match_the_cpu() {
    use ferrograd_array::Pool2dParams;
    for device in gpus() {
        let mut g = Generator::new(7);
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            let p = Pool2dParams {
                kernel: (3, 3),
                stride: (2, 2),
                padding: (1, 1),
            };
            let x = g.normal(&[2, 3, 9, 8], 0.0, 1.0, dtype);
            let dx = on(&x, device);
            let (v, i) = x.max_pool2d(p);
            let (dv, di) = dx.max_pool2d(p);
            assert_matches(&dv, &v, 0.0, "max_pool2d values");
            assert_matches(&di, &i, 0.0, "max_pool2d indices");
            let dy = g.normal(v.shape(), 0.0, 1.0, dtype);
            let ddy = on(&dy, device);
            assert_matches(
                &ddy.max_pool2d_backward(&di, x.shape()),
                &dy.max_pool2d_backward(&i, x.shape()),
                rel,
                "max_pool2d_backward",
            );
            assert_matches(
                &dx.gather_planes(&di),
                &x.gather_planes(&i),
                0.0,
                "gather_planes",
            );
            for include in [false, true] {
                assert_matches(
                    &dx.avg_pool2d(p, include),
                    &x.avg_pool2d(p, include),
                    rel,
                    "avg_pool2d",
                );
                assert_matches(
                    &ddy.avg_pool2d_backward(x.shape(), p, include),
                    &dy.avg_pool2d_backward(x.shape(), p, include),
                    rel,
                    "avg_pool2d_backward",
                );
            }
        }
    }
}

/// With `set_deterministic(true)` the GPU's scatter-adds sort their source elements and add
/// each position's values in the source's order: the CPU's bits, on every run. Sums over
/// many repeats (100k source elements onto 700 positions, magnitudes 1 to 10¹⁸, so the order
/// shows in the bits), an embedding's gradient (`index_add` of rows), an accumulating
/// `index_put_add` and max pooling's gradient with overlapping windows.
#[test]
fn deterministic_scatter_adds_on_a_gpu_give_the_cpus_bits() {
    use ferrograd_array::{set_deterministic, Pool2dParams};
    for device in gpus() {
        let before = set_deterministic(true);
        let mut g = Generator::new(9);
        for dtype in [DType::F32, DType::F64] {
            let spread = |n: usize, shape: &[usize]| {
                let v = (0..n)
                    .map(|i| ((i * 37 % 11) as f64 - 5.0) * 10f64.powi(6 * (i % 4) as i32))
                    .collect();
                Array::from_vec(v, shape).to_dtype(dtype)
            };
            let same = |got: &Array, want: &Array, what: &str| {
                let got = got.to_device(Device::Cpu).expect("reading back");
                assert!(got.bit_eq(want), "{what} {dtype}: {got} vs {want}");
            };
            // scatter_add along dim 1: 100 rows of 1000 sources onto 7 positions each
            let x = g.normal(&[100, 7], 0.0, 1.0, dtype);
            let index = Array::from_vec(
                (0..100_000i64).map(|i| (i * 13 + i / 7) % 7).collect(),
                &[100, 1000],
            );
            let src = spread(100_000, &[100, 1000]);
            let (dx, di, ds) = (on(&x, device), on(&index, device), on(&src, device));
            let want = x.scatter_add(1, &index, &src);
            for _ in 0..2 {
                same(&dx.scatter_add(1, &di, &ds), &want, "scatter_add");
            }
            // an embedding's gradient: 3000 rows of 64 onto a table of 50
            let table = Array::zeros(&[50, 64], dtype);
            let rows = Array::from_vec((0..3000i64).map(|i| i * i % 50).collect(), &[3000]);
            let grads = spread(3000 * 64, &[3000, 64]);
            let (dt, dr, dg) = (on(&table, device), on(&rows, device), on(&grads, device));
            same(
                &dt.index_add(0, &dr, &dg),
                &table.index_add(0, &rows, &grads),
                "index_add",
            );
            let list = Index::List((0..3000).map(|i| i * i % 50).collect());
            same(
                &dt.index_put_add(&list, &dg),
                &table.index_put_add(&list, &grads),
                "index_put_add",
            );
            // max pooling's gradient, stride-1 windows sharing their maxima
            let p = Pool2dParams {
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
            };
            let x = g.normal(&[4, 3, 20, 20], 0.0, 1.0, dtype);
            let (v, i) = x.max_pool2d(p);
            let dy = spread(v.numel(), v.shape());
            let want = dy.max_pool2d_backward(&i, x.shape());
            let (ddy, di) = (on(&dy, device), on(&i, device));
            for _ in 0..2 {
                same(
                    &ddy.max_pool2d_backward(&di, x.shape()),
                    &want,
                    "max_pool2d_backward",
                );
            }
        }
        set_deterministic(before);
    }
}

#[test]
fn matrix_products_on_a_gpu_match_the_cpu() {
    for device in gpus() {
        let mut g = Generator::new(4);
        for dtype in [DType::F32, DType::F64] {
            let rel = if dtype == DType::F32 { 1e-4 } else { 1e-11 };
            let n = |shape: &[usize], g: &mut Generator| g.normal(shape, 0.0, 1.0, dtype);
            let cases = [
                (n(&[33, 70], &mut g), n(&[70, 17], &mut g)),
                (n(&[70, 33], &mut g).t(), n(&[70, 17], &mut g)),
                (n(&[33, 70], &mut g), n(&[17, 70], &mut g).t()),
                (n(&[4, 9, 8], &mut g), n(&[4, 8, 5], &mut g)),
                (n(&[4, 9, 8], &mut g), n(&[8, 5], &mut g)),
                (
                    n(&[2, 1, 9, 8], &mut g),
                    n(&[3, 8, 5], &mut g).transpose(1, 2).transpose(1, 2),
                ),
                (n(&[8], &mut g), n(&[8, 5], &mut g)),
                (n(&[9, 8], &mut g), n(&[8], &mut g)),
                (n(&[8], &mut g), n(&[8], &mut g)),
                (n(&[3, 0], &mut g), n(&[0, 4], &mut g)),
            ];
            for (a, b) in &cases {
                let got = on(a, device).matmul(&on(b, device));
                let what = format!("{dtype} {:?}·{:?}", a.shape(), b.shape());
                assert_matches(&got, &a.matmul(b), rel, &what);
            }
        }
    }
}

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let e = std::panic::catch_unwind(f).expect_err("the op should panic");
    e.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn mixing_devices_in_one_op_is_refused() {
    for device in gpus() {
        let a = Array::ones(&[2], DType::F32);
        let d = on(&a, device);
        let msg = panic_message(|| drop(d.add(&a)));
        assert!(
            msg.contains(&format!("different devices ({device} and cpu)")),
            "{msg}"
        );
        let msg = panic_message(|| drop(a.matmul(&on(&Array::ones(&[2, 2], DType::F32), device))));
        assert!(msg.contains("different devices"), "{msg}");
    }
}

#[test]
fn ops_without_a_device_kernel_say_so() {
    for device in gpus() {
        let a = on(&Array::ones(&[2, 2], DType::F32), device);
        // (it reads its elements on the host: refused rather than leaving the result there)
        let msg = panic_message(|| drop(a.det()));
        assert!(msg.contains(&format!("no kernel for {device}")), "{msg}");
    }
}
