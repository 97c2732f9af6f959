//! Resampling layers (interpolation, adaptive pooling, unfold/fold, max pooling with every
//! option, transposed convolution): against naive loops and the identities that define
//! them (unfold times a weight matrix is a convolution; fold is unfold's adjoint;
//! transposed convolution is convolution's adjoint), and their gradients against finite
//! differences at first and second order.

mod common;

use ferrograd::{Conv2dParams, DType, Generator, Pool2dParams, Tensor};
use ferrograd_nn::functional::{self as F, Interpolation, Sliding};

fn rand(rng: &mut Generator, shape: &[usize]) -> Tensor {
    Tensor::new(rng.uniform(shape, -1.0, 1.0, DType::F64))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    (a - b).abs().max().item::<f64>()
}

/// First and second derivatives of `f` at random inputs of `shapes`, against finite
/// differences.
#[track_caller]
fn check(name: &str, shapes: &[&[usize]], second: bool, f: impl Fn(&[Tensor]) -> Tensor) {
    let mut rng = Generator::new(name.len() as u64 * 31 + 7);
    let params: Vec<Tensor> = shapes.iter().map(|s| rand(&mut rng, s)).collect();
    let proj = rand(&mut rng, f(&params).shape());
    common::against_finite_differences(name, params, &proj, second, f);
}

#[test]
fn unfold_times_weights_is_convolution_and_fold_is_its_adjoint() {
    let mut rng = Generator::new(3);
    let x = rand(&mut rng, &[2, 3, 7, 6]);
    let w = rand(&mut rng, &[4, 3, 3, 2]);
    for (stride, padding, dilation) in [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 1), (2, 1))] {
        let sliding = Sliding {
            kernel: (3, 2),
            stride,
            padding,
            dilation,
            ceil_mode: false,
        };
        let conv = x.conv2d(
            &w,
            None,
            Conv2dParams {
                stride,
                padding,
                dilation,
                groups: 1,
            },
        );
        let cols = F::unfold(&x, sliding);
        let (oh, ow) = (conv.shape()[2], conv.shape()[3]);
        assert_eq!(cols.shape(), &[2, 3 * 6, oh * ow]);
        let via = w.reshape(&[4, 18]).matmul(&cols).reshape(&[2, 4, oh, ow]);
        assert!(max_diff(&via, &conv) < 1e-12);
        // <unfold(x), y> = <x, fold(y)>
        let y = rand(&mut rng, cols.shape());
        let left = (&cols * &y).sum().item::<f64>();
        let right = (&x * &F::fold(&y, (7, 6), sliding)).sum().item::<f64>();
        assert!((left - right).abs() < 1e-12, "{left} vs {right}");
    }
    check("unfold", &[&[1, 2, 5, 4]], true, |p| {
        F::unfold(
            &p[0],
            Sliding {
                stride: (2, 1),
                padding: (1, 0),
                ..Sliding::kernel(2)
            },
        )
    });
    check("fold", &[&[1, 8, 12]], true, |p| {
        F::fold(&p[0], (4, 5), Sliding::kernel(2))
    });
}

#[test]
fn transposed_convolution_is_the_adjoint_of_convolution() {
    let mut rng = Generator::new(4);
    for (groups, stride, padding, dilation, extra) in [
        (1, (1, 1), (0, 0), (1, 1), (0, 0)),
        (1, (2, 3), (1, 0), (1, 2), (1, 2)),
        (2, (2, 2), (1, 1), (1, 1), (1, 0)),
    ] {
        let params = Conv2dParams {
            stride,
            padding,
            dilation,
            groups,
        };
        let w = rand(&mut rng, &[4, 6 / groups, 3, 2]);
        let y = rand(&mut rng, &[2, 4, 4, 3]);
        let x_like = y.conv_transpose2d(&w, None, params, extra);
        // conv2d of something of the transposed output's shape gives y's shape back
        let x = rand(&mut rng, x_like.shape());
        let cx = x.conv2d(&w, None, params);
        assert_eq!(cx.shape(), y.shape());
        let left = (&cx * &y).sum().item::<f64>();
        let right = (&x * &x_like).sum().item::<f64>();
        assert!((left - right).abs() < 1e-12, "{left} vs {right}");
    }
    // the output size formula, and the bias
    let x = Tensor::ones(&[1, 2, 3, 3], DType::F64);
    let w = Tensor::ones(&[2, 5, 3, 3], DType::F64);
    let b = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0], &[5]);
    let p = Conv2dParams {
        stride: (2, 2),
        padding: (1, 1),
        ..Conv2dParams::default()
    };
    let y = F::conv_transpose2d(&x, &w, Some(&b), p, (1, 1));
    assert_eq!(y.shape(), &[1, 5, 6, 6]); // (3 - 1) 2 - 2 + 3 + 1
    assert_eq!(y.at((0, 4, 1, 1)).item::<f64>(), 2.0 * 4.0 + 5.0);
    check(
        "conv_transpose2d",
        &[&[1, 2, 3, 3], &[2, 3, 2, 2], &[3]],
        true,
        |p| {
            p[0].conv_transpose2d(
                &p[1],
                Some(&p[2]),
                Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 0),
                    ..Conv2dParams::default()
                },
                (1, 0),
            )
        },
    );
    check("conv_transpose1d", &[&[2, 2, 4], &[2, 3, 3]], true, |p| {
        F::conv_transpose1d(
            &p[0],
            &p[1],
            None,
            Conv2dParams {
                stride: (1, 2),
                ..Conv2dParams::default()
            },
            1,
        )
    });
}

/// Max pooling by loops over the windows (padding as -inf, PyTorch's ceil_mode rule).
fn naive_max_pool(x: &Tensor, p: Sliding) -> Tensor {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let count = |size: usize, k: usize, s: usize, pad: usize, d: usize| {
        let span = d * (k - 1) + 1;
        let room = size + 2 * pad - span;
        let mut o = if p.ceil_mode {
            room.div_ceil(s) + 1
        } else {
            room / s + 1
        };
        if p.ceil_mode && (o - 1) * s >= size + pad {
            o -= 1;
        }
        o
    };
    let oh = count(h, p.kernel.0, p.stride.0, p.padding.0, p.dilation.0);
    let ow = count(w, p.kernel.1, p.stride.1, p.padding.1, p.dilation.1);
    let v = x.to_vec::<f64>();
    let mut out = Vec::new();
    for b in 0..n * c {
        for i in 0..oh {
            for j in 0..ow {
                let mut best = f64::NEG_INFINITY;
                for ki in 0..p.kernel.0 {
                    for kj in 0..p.kernel.1 {
                        let r =
                            (i * p.stride.0 + ki * p.dilation.0) as isize - p.padding.0 as isize;
                        let q =
                            (j * p.stride.1 + kj * p.dilation.1) as isize - p.padding.1 as isize;
                        if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                            best = best.max(v[b * h * w + r as usize * w + q as usize]);
                        }
                    }
                }
                out.push(best);
            }
        }
    }
    Tensor::from_vec(out, &[n, c, oh, ow])
}

#[test]
fn max_pooling_with_dilation_and_ceil_mode() {
    let mut rng = Generator::new(5);
    let x = rand(&mut rng, &[2, 3, 7, 8]);
    for p in [
        Sliding::kernel(2),
        Sliding {
            stride: (2, 2),
            ceil_mode: true,
            ..Sliding::kernel(2)
        },
        Sliding {
            stride: (2, 3),
            padding: (1, 1),
            dilation: (2, 1),
            ..Sliding::kernel(3)
        },
        Sliding {
            stride: (3, 3),
            padding: (1, 0),
            ceil_mode: true,
            ..Sliding::kernel(3)
        },
    ] {
        assert!(
            max_diff(&F::max_pool2d_with(&x, p), &naive_max_pool(&x, p)) == 0.0,
            "{p:?}"
        );
    }
    // the common case equals the fused kernel
    let fused = F::max_pool2d(
        &x,
        Pool2dParams {
            kernel: (3, 3),
            stride: (2, 2),
            padding: (1, 1),
        },
    );
    let general = F::max_pool2d_with(
        &x,
        Sliding {
            stride: (2, 2),
            padding: (1, 1),
            ..Sliding::kernel(3)
        },
    );
    assert_eq!(max_diff(&fused, &general), 0.0);
    check("max_pool2d_with", &[&[1, 2, 5, 5]], true, |p| {
        F::max_pool2d_with(
            &p[0],
            Sliding {
                stride: (2, 2),
                ceil_mode: true,
                dilation: (1, 2),
                ..Sliding::kernel(2)
            },
        )
    });
}

#[test]
fn adaptive_pooling_and_interpolation() {
    let mut rng = Generator::new(6);
    let x = rand(&mut rng, &[2, 3, 6, 8]);
    // divisible sizes: plain average and max pooling
    let avg = x.avg_pool2d(
        Pool2dParams {
            kernel: (2, 4),
            stride: (2, 4),
            padding: (0, 0),
        },
        true,
    );
    assert!(max_diff(&F::adaptive_avg_pool(&x, &[3, 2]), &avg) < 1e-15);
    let max = F::max_pool2d(
        &x,
        Pool2dParams {
            kernel: (3, 2),
            stride: (3, 2),
            padding: (0, 0),
        },
    );
    assert_eq!(max_diff(&F::adaptive_max_pool(&x, &[2, 4]), &max), 0.0);
    // overlapping windows: output i covers floor(i n / o) .. ceil((i + 1) n / o)
    let v = Tensor::from_vec((1..=7).map(f64::from).collect(), &[1, 1, 7]);
    let a = F::adaptive_avg_pool(&v, &[3]).to_vec::<f64>();
    let want = [
        (1.0 + 2.0 + 3.0) / 3.0,
        (3.0 + 4.0 + 5.0) / 3.0,
        (5.0 + 6.0 + 7.0) / 3.0,
    ];
    assert!(
        a.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-15),
        "{a:?}"
    );
    assert_eq!(
        F::adaptive_max_pool(&v, &[3]).to_vec::<f64>(),
        vec![3.0, 5.0, 7.0]
    );
    // interpolation: nearest picks floor(i in / out); linear with and without aligned corners
    let s = Tensor::from_vec(vec![1.0f64, 2.0, 4.0], &[1, 1, 3]);
    assert_eq!(
        F::interpolate(&s, &[5], Interpolation::Nearest).to_vec::<f64>(),
        vec![1.0, 1.0, 2.0, 2.0, 4.0]
    );
    let aligned = F::interpolate(
        &s,
        &[5],
        Interpolation::Linear {
            align_corners: true,
        },
    );
    assert_eq!(aligned.to_vec::<f64>(), vec![1.0, 1.5, 2.0, 3.0, 4.0]);
    // half-pixel centres: src = (i + 0.5) 3/5 - 0.5 = -0.2 (clamped to 0), 0.4, 1, 1.6, 2.2
    let centred = F::interpolate(
        &s,
        &[5],
        Interpolation::Linear {
            align_corners: false,
        },
    );
    let want = [1.0, 1.4, 2.0, 2.0 + 0.6 * 2.0, 4.0];
    let got = centred.to_vec::<f64>();
    assert!(
        got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-14),
        "{got:?}"
    );
    // bilinear is linear in each dim: an input linear in both is reproduced with corners
    let ramp = Tensor::from_vec(
        (0..12).map(|k| f64::from(k / 4 * 10 + k % 4)).collect(),
        &[1, 1, 3, 4],
    );
    let up = F::interpolate(
        &ramp,
        &[5, 7],
        Interpolation::Linear {
            align_corners: true,
        },
    );
    let want: Vec<f64> = (0..35)
        .map(|k| (k / 7) as f64 * 5.0 + (k % 7) as f64 * 0.5)
        .collect();
    assert!(up
        .to_vec::<f64>()
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() < 1e-12));
    check("adaptive_avg_pool", &[&[1, 2, 5, 7]], true, |p| {
        F::adaptive_avg_pool(&p[0], &[3, 4])
    });
    check("adaptive_max_pool", &[&[1, 2, 5, 7]], true, |p| {
        F::adaptive_max_pool(&p[0], &[2, 3])
    });
    check("interpolate bilinear", &[&[1, 2, 3, 4]], true, |p| {
        F::interpolate(
            &p[0],
            &[5, 3],
            Interpolation::Linear {
                align_corners: false,
            },
        )
    });
    check("interpolate nearest", &[&[1, 2, 3, 4]], true, |p| {
        F::interpolate(&p[0], &[6, 2], Interpolation::Nearest)
    });
}

#[test]
fn batch_norm_runs_on_sequences() {
    // [N, C, L]: per-channel statistics over N and L
    let mut rng = Generator::new(8);
    let x = rand(&mut rng, &[4, 3, 5]);
    let y = F::batch_norm(&x, None, None, None, true, 1e-5);
    let mean = x.mean_dim([0, 2], true);
    let var = x.var_dim([0, 2], 0, true);
    let want = &(&x - &mean) / &var.add_scalar(1e-5).sqrt();
    assert!(max_diff(&y, &want) < 1e-12);
}

#[test]
fn errors_name_the_problem() {
    let x = Tensor::zeros(&[1, 1, 3, 3], DType::F64);
    for (msg, want) in [
        (
            panic_message(|| drop(F::unfold(&x, Sliding::kernel(4)))),
            "no window of",
        ),
        (
            panic_message(|| drop(F::interpolate(&x, &[2], Interpolation::Nearest))),
            "one output size per spatial dim",
        ),
        (
            panic_message(|| {
                drop(F::max_pool2d_with(
                    &x,
                    Sliding {
                        padding: (2, 2),
                        ..Sliding::kernel(3)
                    },
                ))
            }),
            "at most half the kernel",
        ),
    ] {
        assert!(
            msg.contains(want) && msg.contains("tests/resample.rs"),
            "{msg}"
        );
    }
}

fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("a panic");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

// PyTorch 2.15 on x = arange(24).reshape(1, 2, 3, 4) * 0.37 % 1.3 (and the inputs below)
const BILINEAR: [f64; 30] = [
    0.061666666666666654,
    0.5549999999999999,
    1.0483333333333331,
    0.13366666666666663,
    0.6269999999999999,
    1.1203333333333332,
    0.2416666666666666,
    0.7349999999999999,
    1.228333333333333,
    0.3496666666666665,
    0.843,
    0.6863333333333337,
    0.4216666666666666,
    0.915,
    0.3250000000000004,
    0.601666666666666,
    1.0949999999999995,
    0.5049999999999999,
    0.6736666666666663,
    0.9069999999999998,
    0.49033333333333323,
    0.7816666666666664,
    0.6249999999999999,
    0.46833333333333327,
    0.8896666666666666,
    0.7329999999999999,
    0.576333333333333,
    0.9616666666666667,
    0.8049999999999999,
    0.6483333333333329,
];
const BILINEAR_SHAPE: [usize; 4] = [1, 2, 5, 3];
const BILINEAR_ALIGNED: [f64; 30] = [
    0.0,
    0.5549999999999999,
    1.1099999999999999,
    0.08999999999999997,
    0.6449999999999999,
    1.1999999999999997,
    0.17999999999999994,
    0.7349999999999999,
    1.2899999999999998,
    0.2699999999999999,
    0.825,
    0.73,
    0.3599999999999999,
    0.915,
    0.17000000000000015,
    0.5399999999999994,
    1.0949999999999995,
    0.34999999999999964,
    0.6299999999999996,
    0.8599999999999997,
    0.43999999999999984,
    0.7199999999999998,
    0.6249999999999999,
    0.53,
    0.8099999999999999,
    0.7149999999999999,
    0.6199999999999998,
    0.9000000000000001,
    0.8049999999999998,
    0.7099999999999995,
];
const BILINEAR_ALIGNED_SHAPE: [usize; 4] = [1, 2, 5, 3];
const NEAREST: [f64; 70] = [
    0.0,
    0.0,
    0.37,
    0.37,
    0.74,
    0.74,
    1.1099999999999999,
    0.0,
    0.0,
    0.37,
    0.37,
    0.74,
    0.74,
    1.1099999999999999,
    0.17999999999999994,
    0.17999999999999994,
    0.55,
    0.55,
    0.9199999999999997,
    0.9199999999999997,
    1.2899999999999998,
    0.17999999999999994,
    0.17999999999999994,
    0.55,
    0.55,
    0.9199999999999997,
    0.9199999999999997,
    1.2899999999999998,
    0.3599999999999999,
    0.3599999999999999,
    0.73,
    0.73,
    1.1,
    1.1,
    0.17000000000000015,
    0.5399999999999994,
    0.5399999999999994,
    0.9099999999999995,
    0.9099999999999995,
    1.2799999999999996,
    1.2799999999999996,
    0.34999999999999964,
    0.5399999999999994,
    0.5399999999999994,
    0.9099999999999995,
    0.9099999999999995,
    1.2799999999999996,
    1.2799999999999996,
    0.34999999999999964,
    0.7199999999999998,
    0.7199999999999998,
    1.0899999999999999,
    1.0899999999999999,
    0.15999999999999992,
    0.15999999999999992,
    0.53,
    0.7199999999999998,
    0.7199999999999998,
    1.0899999999999999,
    1.0899999999999999,
    0.15999999999999992,
    0.15999999999999992,
    0.53,
    0.9000000000000001,
    0.9000000000000001,
    1.2699999999999994,
    1.2699999999999994,
    0.3400000000000003,
    0.3400000000000003,
    0.7099999999999995,
];
const NEAREST_SHAPE: [usize; 4] = [1, 2, 5, 7];
const ADAPTIVE_AVG: [f64; 12] = [
    0.275,
    0.6449999999999999,
    1.015,
    0.45499999999999996,
    0.825,
    0.8699999999999999,
    0.8149999999999996,
    0.8599999999999997,
    0.5799999999999998,
    0.9949999999999999,
    0.7149999999999999,
    0.43499999999999994,
];
const ADAPTIVE_AVG_SHAPE: [usize; 4] = [1, 2, 2, 3];
const ADAPTIVE_MAX: [f64; 12] = [
    0.55,
    0.9199999999999997,
    1.2899999999999998,
    0.73,
    1.1,
    1.2899999999999998,
    1.0899999999999999,
    1.2799999999999996,
    1.2799999999999996,
    1.2699999999999994,
    1.2699999999999994,
    0.7099999999999995,
];
const ADAPTIVE_MAX_SHAPE: [usize; 4] = [1, 2, 2, 3];
const LINEAR_1D: [f64; 7] = [
    0.15,
    0.4428571428571428,
    0.9714285714285709,
    0.3999999999999997,
    0.8499999999999993,
    0.3571428571428561,
    0.6499999999999998,
];
const LINEAR_1D_SHAPE: [usize; 3] = [1, 1, 7];
const MAX_POOL_CEIL: [f64; 12] = [
    0.0,
    0.74,
    1.1099999999999999,
    0.3599999999999999,
    1.1,
    1.2899999999999998,
    0.5399999999999994,
    1.2799999999999996,
    0.34999999999999964,
    0.9000000000000001,
    1.2699999999999994,
    0.7099999999999995,
];
const MAX_POOL_CEIL_SHAPE: [usize; 4] = [1, 2, 2, 3];
const MAX_POOL_DILATED: [f64; 9] = [
    1.1,
    1.1,
    1.1,
    1.1,
    1.1,
    1.1,
    1.0799999999999987,
    1.0799999999999987,
    1.0799999999999987,
];
const MAX_POOL_DILATED_SHAPE: [usize; 4] = [1, 1, 3, 3];
const UNFOLD: [f64; 48] = [
    0.0,
    0.0,
    0.17999999999999994,
    0.55,
    0.0,
    0.0,
    0.55,
    0.9199999999999997,
    0.0,
    0.0,
    0.9199999999999997,
    1.2899999999999998,
    0.0,
    0.37,
    0.3599999999999999,
    0.73,
    0.37,
    0.74,
    0.73,
    1.1,
    0.74,
    1.1099999999999999,
    1.1,
    0.17000000000000015,
    0.0,
    0.0,
    0.7199999999999998,
    1.0899999999999999,
    0.0,
    0.0,
    1.0899999999999999,
    0.15999999999999992,
    0.0,
    0.0,
    0.15999999999999992,
    0.53,
    0.5399999999999994,
    0.9099999999999995,
    0.9000000000000001,
    1.2699999999999994,
    0.9099999999999995,
    1.2799999999999996,
    1.2699999999999994,
    0.3400000000000003,
    1.2799999999999996,
    0.34999999999999964,
    0.3400000000000003,
    0.7099999999999995,
];
const UNFOLD_SHAPE: [usize; 3] = [1, 12, 4];
const CONV_T: [f64; 90] = [
    0.3267999999999998,
    0.5783999999999999,
    1.1269999999999998,
    1.1804,
    1.0926000000000002,
    0.7253999999999998,
    0.21520000000000006,
    0.27440000000000014,
    0.3577999999999999,
    0.5724000000000001,
    0.26599999999999996,
    0.4214,
    0.44920000000000004,
    0.7008000000000001,
    0.8725999999999999,
    1.4720000000000004,
    0.5468,
    0.8946000000000002,
    0.24400000000000016,
    0.3032000000000001,
    0.46220000000000017,
    0.6767999999999998,
    0.3416000000000001,
    0.3279999999999999,
    0.5716000000000002,
    0.8231999999999999,
    1.1642000000000006,
    1.4256,
    0.7160000000000003,
    0.5568,
    -0.07040000000000016,
    0.047999999999999876,
    0.3661999999999999,
    0.38720000000000016,
    0.4290000000000003,
    0.16260000000000002,
    0.38319999999999993,
    0.8272000000000002,
    0.5833999999999999,
    1.3086000000000004,
    0.4155999999999999,
    0.6967999999999999,
    -0.012800000000000061,
    0.10559999999999997,
    0.21620000000000011,
    0.5492000000000004,
    0.0524,
    0.26700000000000024,
    0.5992000000000002,
    1.0432,
    0.9362000000000004,
    0.9854,
    0.5524000000000002,
    -0.01139999999999991,
    0.044800000000000034,
    0.16319999999999985,
    0.3782000000000005,
    0.6072000000000002,
    0.15680000000000033,
    0.0984000000000001,
    0.33240000000000025,
    0.5766000000000004,
    0.9234000000000009,
    1.1710000000000005,
    0.5654000000000006,
    0.3998000000000003,
    0.7212000000000001,
    1.0320000000000003,
    1.2309999999999999,
    1.9488000000000003,
    0.8331999999999997,
    1.2402,
    0.4512000000000003,
    0.6954000000000006,
    1.0038000000000002,
    1.3294000000000008,
    0.35800000000000026,
    0.4394000000000005,
    0.8724000000000003,
    1.1832,
    1.5802000000000005,
    1.8559999999999999,
    1.0312000000000003,
    0.8271999999999999,
    0.5700000000000004,
    0.8142000000000007,
    1.1622000000000008,
    0.7078000000000009,
    0.39760000000000045,
    0.4400000000000002,
];
const CONV_T_SHAPE: [usize; 4] = [1, 3, 5, 6];

/// `arange(n) * step % modulus`, as the PyTorch reference builds its inputs.
fn ramp(shape: &[usize], step: f64, modulus: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|k| (k as f64 * step) % modulus).collect(), shape)
}

#[track_caller]
fn matches(got: &Tensor, shape: &[usize], want: &[f64]) {
    assert_eq!(got.shape(), shape);
    for (i, (a, b)) in got.to_vec::<f64>().iter().zip(want).enumerate() {
        assert!((a - b).abs() < 1e-12, "element {i}: {a} vs PyTorch {b}");
    }
}

#[test]
fn values_against_pytorch() {
    let x = ramp(&[1, 2, 3, 4], 0.37, 1.3);
    let linear = |align_corners| Interpolation::Linear { align_corners };
    matches(
        &F::interpolate(&x, &[5, 3], linear(false)),
        &BILINEAR_SHAPE,
        &BILINEAR,
    );
    matches(
        &F::interpolate(&x, &[5, 3], linear(true)),
        &BILINEAR_ALIGNED_SHAPE,
        &BILINEAR_ALIGNED,
    );
    matches(
        &F::interpolate(&x, &[5, 7], Interpolation::Nearest),
        &NEAREST_SHAPE,
        &NEAREST,
    );
    matches(
        &F::adaptive_avg_pool(&x, &[2, 3]),
        &ADAPTIVE_AVG_SHAPE,
        &ADAPTIVE_AVG,
    );
    matches(
        &F::adaptive_max_pool(&x, &[2, 3]),
        &ADAPTIVE_MAX_SHAPE,
        &ADAPTIVE_MAX,
    );
    let y = ramp(&[1, 1, 10], 0.7, 1.1);
    matches(
        &F::interpolate(&y, &[7], linear(false)),
        &LINEAR_1D_SHAPE,
        &LINEAR_1D,
    );
    let ceil = Sliding {
        stride: (2, 2),
        padding: (1, 1),
        ceil_mode: true,
        ..Sliding::kernel(2)
    };
    matches(
        &F::max_pool2d_with(&x, ceil),
        &MAX_POOL_CEIL_SHAPE,
        &MAX_POOL_CEIL,
    );
    let x7 = ramp(&[1, 1, 7, 7], 0.37, 1.3);
    let dilated = Sliding {
        stride: (2, 2),
        padding: (1, 1),
        dilation: (2, 2),
        ceil_mode: true,
        ..Sliding::kernel(3)
    };
    matches(
        &F::max_pool2d_with(&x7, dilated),
        &MAX_POOL_DILATED_SHAPE,
        &MAX_POOL_DILATED,
    );
    let unfold = Sliding {
        kernel: (2, 3),
        stride: (2, 1),
        padding: (1, 0),
        ..Sliding::kernel(1)
    };
    matches(&F::unfold(&x, unfold), &UNFOLD_SHAPE, &UNFOLD);
    let w = ramp(&[2, 3, 2, 2], 0.13, 0.7);
    let b = Tensor::from_vec(vec![0.1f64, -0.2, 0.3], &[3]);
    let p = Conv2dParams {
        stride: (2, 1),
        padding: (1, 0),
        dilation: (1, 2),
        groups: 1,
    };
    matches(
        &F::conv_transpose2d(&x, &w, Some(&b), p, (1, 0)),
        &CONV_T_SHAPE,
        &CONV_T,
    );
}

/// Ties inside a window: the gradient goes to the first maximum in row-major order, as
/// `max_pool2d`'s and PyTorch's do (the separable pooling once chose the first column
/// holding the maximum, found against PyTorch 2.15), with windows that tile the input and
/// with overlapping ones.
#[test]
fn adaptive_max_pooling_gives_ties_gradient_in_row_major_order() {
    let img = vec![
        1.0f64, 1.0, 0.0, 2.0, 1.0, 1.0, 2.0, 2.0, 0.0, 3.0, 3.0, 0.0, 5.0, 5.0, 5.0, 5.0,
    ];
    let x = Tensor::from_vec(img, &[1, 1, 4, 4]);
    let weights = |n: usize| Tensor::from_vec((1..=n).map(|i| i as f64).collect(), &[1, 1, n]);
    let grad_of = |f: &dyn Fn(&Tensor) -> Tensor, n: usize| {
        let w = weights(n * n).reshape(&[1, 1, n, n]);
        let (g, _) = ferrograd::grad(|x: &Tensor| (f(x) * &w).sum()).call(&x, ());
        g.to_vec::<f64>()
    };
    // 2x2 windows that tile: the same as max_pool2d
    let tiled = grad_of(&|x| F::adaptive_max_pool(x, &[2, 2]), 2);
    let params = Pool2dParams {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    assert_eq!(tiled, grad_of(&|x| F::max_pool2d(x, params), 2));
    // overlapping 2x2 windows (4 -> 3): window (0, 2) holds 2 at (0, 3), (1, 2), (1, 3)
    let overlapping = grad_of(&|x| F::adaptive_max_pool(x, &[3, 3]), 3);
    let mut want = vec![0.0; 16];
    // each window's first maximum in row-major order, by hand
    for (window, at) in [
        (0, 0),
        (1, 6),
        (2, 3),
        (3, 9),
        (4, 9),
        (5, 10),
        (6, 12),
        (7, 13),
        (8, 14),
    ] {
        want[at] += (window + 1) as f64;
    }
    assert_eq!(overlapping, want);
}
