//! The coverage of torch-autograd's operations, checked: every row of
//! `docs/seed-coverage.md` names a seed operation and the ferrograd call that replaces it;
//! this test runs each of those calls (and checks each differentiable one's gradient
//! against finite differences), and fails when the file's rows and this table differ.

use std::collections::BTreeMap;

mod common;

use ferrograd::{Conv2dParams, DType, Generator, Index, Pool2dParams, Tensor};
use ferrograd_nn::functional::{self as F, Interpolation, PadMode, Reduce};
use ferrograd_nn::optim::{self, Optimizer};
use ferrograd_nn::{layers, loss, util, Criterion, Module};

fn rand(seed: u64, shape: &[usize], low: f64, high: f64) -> Tensor {
    Tensor::new(Generator::new(seed).uniform(shape, low, high, DType::F64))
}

/// The gradient of `f` at random inputs of `shapes` in `[low, high)` against finite
/// differences.
#[track_caller]
fn grads(shapes: &[&[usize]], low: f64, high: f64, f: impl Fn(&[Tensor]) -> Tensor) {
    let params: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| rand(i as u64 + 1, s, low, high))
        .collect();
    let proj = rand(99, f(&params).shape(), -1.0, 1.0);
    common::against_finite_differences("row", params, &proj, false, f);
}

fn unary(f: impl Fn(&Tensor) -> Tensor, low: f64, high: f64) {
    grads(&[&[3, 4]], low, high, |p| f(&p[0]))
}

fn binary(f: impl Fn(&Tensor, &Tensor) -> Tensor, low: f64, high: f64) {
    grads(&[&[3, 4], &[3, 4]], low, high, |p| f(&p[0], &p[1]))
}

/// An optimizer reduces Σ x² in 20 steps.
fn descends(mut opt: impl Optimizer) {
    let mut x = Tensor::from_vec(vec![1.0f64, -2.0, 0.5], &[3]);
    let start = x.square().sum().item::<f64>();
    for _ in 0..20 {
        let g = &x * 2.0;
        x = opt.step(&x, &g);
    }
    assert!(x.square().sum().item::<f64>() < start);
}

fn class_targets() -> Tensor {
    Tensor::from_vec(vec![2i64, 0, 1], &[3])
}

type Row = (&'static str, Box<dyn Fn()>);

fn rows() -> Vec<Row> {
    let signs = || {
        Tensor::from_vec(
            vec![
                1.0f64, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0,
            ],
            &[3, 4],
        )
    };
    vec![
        ("+ (operator)", Box::new(|| binary(|a, b| a + b, -1.0, 1.0))),
        ("- (operator)", Box::new(|| binary(|a, b| a - b, -1.0, 1.0))),
        (
            "* (operator, matrix product)",
            Box::new(|| grads(&[&[3, 4], &[4, 2]], -1.0, 1.0, |p| p[0].matmul(&p[1]))),
        ),
        ("/ (operator)", Box::new(|| binary(|a, b| a / b, 0.5, 2.0))),
        (
            "^ (operator)",
            Box::new(|| binary(|a, b| a.pow(b), 0.5, 2.0)),
        ),
        ("unary -", Box::new(|| unary(|a| -a, -1.0, 1.0))),
        ("torch.add", Box::new(|| binary(|a, b| a.add(b), -1.0, 1.0))),
        (
            "torch.cmul",
            Box::new(|| binary(|a, b| a.mul(b), -1.0, 1.0)),
        ),
        (
            "torch.mul",
            Box::new(|| unary(|a| a.mul_scalar(3.0), -1.0, 1.0)),
        ),
        (
            "torch.div / torch.cdiv",
            Box::new(|| binary(|a, b| a.div(b), 0.5, 2.0)),
        ),
        ("torch.pow", Box::new(|| binary(|a, b| a.pow(b), 0.5, 2.0))),
        (
            "torch.cmin",
            Box::new(|| binary(|a, b| a.minimum(b), -1.0, 1.0)),
        ),
        (
            "torch.cmax",
            Box::new(|| binary(|a, b| a.maximum(b), -1.0, 1.0)),
        ),
        ("torch.exp", Box::new(|| unary(Tensor::exp, -1.0, 1.0))),
        ("torch.tanh", Box::new(|| unary(Tensor::tanh, -1.0, 1.0))),
        ("torch.sinh", Box::new(|| unary(Tensor::sinh, -1.0, 1.0))),
        ("torch.cosh", Box::new(|| unary(Tensor::cosh, -1.0, 1.0))),
        ("torch.sin", Box::new(|| unary(Tensor::sin, -1.0, 1.0))),
        ("torch.cos", Box::new(|| unary(Tensor::cos, -1.0, 1.0))),
        ("torch.tan", Box::new(|| unary(Tensor::tan, -1.0, 1.0))),
        ("torch.sqrt", Box::new(|| unary(Tensor::sqrt, 0.5, 2.0))),
        ("torch.log", Box::new(|| unary(Tensor::log, 0.5, 2.0))),
        ("torch.log1p", Box::new(|| unary(Tensor::log1p, 0.0, 2.0))),
        (
            "torch.sigmoid",
            Box::new(|| unary(Tensor::sigmoid, -1.0, 1.0)),
        ),
        ("torch.abs", Box::new(|| unary(Tensor::abs, 0.2, 1.0))),
        (
            "torch.clamp",
            Box::new(|| unary(|a| a.clamp(Some(-0.5), Some(0.5)), -1.0, 1.0)),
        ),
        (
            "torch.sum",
            Box::new(|| unary(|a| a.sum_dim(1, false), -1.0, 1.0)),
        ),
        (
            "torch.mean",
            Box::new(|| unary(|a| a.mean_dim(0, true), -1.0, 1.0)),
        ),
        (
            "torch.min",
            Box::new(|| unary(|a| a.min_dim(1, false).0, -1.0, 1.0)),
        ),
        (
            "torch.max",
            Box::new(|| unary(|a| a.max_dim(1, false).0, -1.0, 1.0)),
        ),
        (
            "torch.view",
            Box::new(|| unary(|a| a.view(&[2, -1]), -1.0, 1.0)),
        ),
        (
            "torch.viewAs",
            Box::new(|| unary(|a| a.reshape(&[4, 3]), -1.0, 1.0)),
        ),
        (
            "torch.reshape",
            Box::new(|| unary(|a| a.reshape(&[12]), -1.0, 1.0)),
        ),
        (
            "torch.expand",
            Box::new(|| unary(|a| a.unsqueeze(0).expand(&[2, -1, -1]), -1.0, 1.0)),
        ),
        (
            "torch.expandAs",
            Box::new(|| {
                grads(&[&[3, 1], &[3, 4]], -1.0, 1.0, |p| {
                    p[0].expand(p[1].shape())
                })
            }),
        ),
        (
            "torch.squeeze",
            Box::new(|| unary(|a| a.unsqueeze(1).squeeze(), -1.0, 1.0)),
        ),
        (
            "torch.transpose",
            Box::new(|| unary(|a| a.transpose(0, 1), -1.0, 1.0)),
        ),
        ("torch.t", Box::new(|| unary(Tensor::t, -1.0, 1.0))),
        (
            "torch.contiguous",
            Box::new(|| unary(|a| a.t().contiguous(), -1.0, 1.0)),
        ),
        ("torch.clone", Box::new(|| unary(|a| a.clone(), -1.0, 1.0))),
        (
            "torch.copy",
            Box::new(|| binary(|a, b| a.at_put(.., b), -1.0, 1.0)),
        ),
        (
            "torch.repeatTensor",
            Box::new(|| unary(|a| a.repeat(&[2, 1]), -1.0, 1.0)),
        ),
        (
            "torch.cat",
            Box::new(|| binary(|a, b| Tensor::cat(&[a, b], 1), -1.0, 1.0)),
        ),
        (
            "torch.long",
            Box::new(|| {
                let x = Tensor::from_vec(vec![1.7f64, -2.2], &[2]);
                assert_eq!(x.to_dtype(DType::I64).to_vec::<i64>(), vec![1, -2]);
            }),
        ),
        (
            "torch.typeAs",
            Box::new(|| {
                // the gradient of a cast is cast back (the f32 rounding would fool finite
                // differences, so it is checked directly)
                let like = Tensor::zeros(&[1], DType::F32);
                let x = Tensor::from_vec(vec![0.5f64, 2.0], &[2]);
                let (g, _) = ferrograd::grad(|x: &Tensor| (x.to_dtype(like.dtype()) * 3.0).sum())
                    .call(&x, ());
                assert_eq!((g.dtype(), g.to_vec::<f64>()), (DType::F64, vec![3.0, 3.0]));
            }),
        ),
        (
            "torch.select",
            Box::new(|| unary(|a| a.select(1, -1), -1.0, 1.0)),
        ),
        (
            "torch.index",
            Box::new(|| {
                unary(
                    |a| a.index_select(0, &Tensor::from_vec(vec![2i64, 0, 2], &[3])),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "torch.narrow",
            Box::new(|| unary(|a| a.narrow(1, 1, 2), -1.0, 1.0)),
        ),
        (
            "torch.gather",
            Box::new(|| {
                unary(
                    |a| a.gather(1, &Tensor::from_vec(vec![0i64, 3, 1], &[3, 1])),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "torch.scatter",
            Box::new(|| {
                grads(&[&[3, 4], &[3, 1]], -1.0, 1.0, |p| {
                    p[0].scatter(1, &Tensor::from_vec(vec![0i64, 3, 1], &[3, 1]), &p[1])
                })
            }),
        ),
        (
            "torch.ger",
            Box::new(|| grads(&[&[3], &[4]], -1.0, 1.0, |p| p[0].outer(&p[1]))),
        ),
        (
            "torch.inverse",
            Box::new(|| {
                grads(&[&[3, 3]], -0.3, 0.3, |p| {
                    (&p[0] + &Tensor::eye(3, DType::F64)).inverse()
                })
            }),
        ),
        (
            "torch.bmm",
            Box::new(|| grads(&[&[2, 3, 4], &[2, 4, 2]], -1.0, 1.0, |p| p[0].bmm(&p[1]))),
        ),
        (
            "torch.baddbmm",
            Box::new(|| {
                grads(&[&[2, 3, 2], &[2, 3, 4], &[2, 4, 2], &[]], -1.0, 1.0, |p| {
                    p[0].baddbmm(&p[1], &p[2], &p[3], 0.5)
                })
            }),
        ),
        (
            "torch.lt / le / gt / ge / eq / ne",
            Box::new(|| {
                let (a, b) = (
                    Tensor::from_vec(vec![1.0f64, 2.0], &[2]),
                    Tensor::from_vec(vec![2.0f64, 2.0], &[2]),
                );
                let got: Vec<Vec<bool>> =
                    [a.lt(&b), a.le(&b), a.gt(&b), a.ge(&b), a.eq(&b), a.ne(&b)]
                        .iter()
                        .map(|t| t.to_vec::<bool>())
                        .collect();
                assert_eq!(
                    got,
                    vec![
                        vec![true, false],
                        vec![true, true],
                        vec![false, false],
                        vec![false, true],
                        vec![false, true],
                        vec![true, false]
                    ]
                );
            }),
        ),
        (
            "torch.all / torch.any",
            Box::new(|| {
                let m = Tensor::from_vec(vec![true, false], &[2]);
                assert!(!m.all().item::<bool>() && m.any().item::<bool>());
            }),
        ),
        (
            "torch.floor / ceil / round / sign",
            Box::new(|| {
                let x = Tensor::from_vec(vec![-1.5f64, 2.5], &[2]);
                assert_eq!(
                    [x.floor(), x.ceil(), x.round(), x.sign()]
                        .iter()
                        .map(|t| t.to_vec::<f64>())
                        .collect::<Vec<_>>(),
                    vec![
                        vec![-2.0, 2.0],
                        vec![-1.0, 3.0],
                        vec![-2.0, 2.0],
                        vec![-1.0, 1.0]
                    ]
                );
            }),
        ),
        (
            "torch.bernoulli",
            Box::new(|| {
                let b = Tensor::rand_bernoulli(&mut Generator::new(1), &[100], 0.5, DType::F64);
                assert!(b.to_vec::<f64>().iter().all(|&v| v == 0.0 || v == 1.0));
            }),
        ),
        (
            "torch.uniform / torch.rand",
            Box::new(|| {
                let u = Tensor::rand_uniform(&mut Generator::new(1), &[100], 2.0, 3.0, DType::F64);
                assert!(u.to_vec::<f64>().iter().all(|&v| (2.0..3.0).contains(&v)));
            }),
        ),
        (
            "torch.normal / torch.randn",
            Box::new(|| {
                let n = Tensor::randn(&mut Generator::new(1), &[10_000], DType::F64);
                assert!(n.mean().item::<f64>().abs() < 0.05);
            }),
        ),
        (
            "torch.random",
            Box::new(|| {
                let k = Tensor::randint(&mut Generator::new(1), 3, 7, &[100]);
                assert!(k.to_vec::<i64>().iter().all(|&v| (3..7).contains(&v)));
            }),
        ),
        (
            "torch.multinomial",
            Box::new(|| {
                let p = Tensor::from_vec(vec![0.0f64, 1.0], &[2]);
                assert_eq!(
                    p.multinomial(&mut Generator::new(1), 3, true)
                        .to_vec::<i64>(),
                    vec![1, 1, 1]
                );
            }),
        ),
        (
            "torch.zeros / zero / ones / eye",
            Box::new(|| {
                let z = Tensor::zeros(&[2], DType::F64);
                assert_eq!(
                    z.to_vec::<f64>(),
                    Tensor::ones(&[2], DType::F64).zeros_like().to_vec::<f64>()
                );
                assert_eq!(Tensor::eye(2, DType::F64).sum().item::<f64>(), 2.0);
            }),
        ),
        (
            "torch.size / nDimension / nElement",
            Box::new(|| {
                let x = Tensor::zeros(&[2, 3], DType::F64);
                assert_eq!((x.shape(), x.ndim(), x.numel()), (&[2, 3][..], 2, 6));
            }),
        ),
        (
            "torch.split",
            Box::new(|| unary(|a| a.split(2, 1)[1].clone(), -1.0, 1.0)),
        ),
        (
            "x[k] (read)",
            Box::new(|| unary(|a| &a.index(1) + &a.at((.., 2)).sum(), -1.0, 1.0)),
        ),
        (
            "x[k] = v (write)",
            Box::new(|| {
                binary(
                    |a, b| {
                        let mut y = a.clone();
                        y.set(Index::Single(0), &b.select(0, 1));
                        y.at_put((1, 1..3), &b.at((2, 0..2)))
                    },
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.fill",
            Box::new(|| {
                assert_eq!(
                    Tensor::full(&[2], 7.0, DType::F64).to_vec::<f64>(),
                    vec![7.0, 7.0]
                )
            }),
        ),
        (
            "util.selectSliceCopy",
            Box::new(|| {
                binary(
                    |a, b| a.slice_scatter(&b.narrow(1, 0, 1), 1, Some(2), Some(3), 1),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.narrowSliceCopy",
            Box::new(|| {
                binary(
                    |a, b| a.slice_scatter(&b.narrow(1, 0, 2), 1, Some(1), Some(3), 1),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.indexAdd",
            Box::new(|| {
                binary(
                    |a, b| a.index_add(0, &Tensor::from_vec(vec![2i64, 2, 0], &[3]), b),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.oneHot",
            Box::new(|| {
                let h = util::one_hot(&Tensor::from_vec(vec![1i64, 0], &[2]), 3, DType::F64);
                assert_eq!(h.to_vec::<f64>(), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
            }),
        ),
        (
            "util.logSumExp",
            Box::new(|| {
                unary(
                    |a| &util::log_sum_exp(a) + &a.logsumexp_dim(1, false).sum(),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.logSoftMax",
            Box::new(|| {
                unary(
                    |a| &util::log_softmax(a).sum() + &a.log_softmax(1),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.lookup",
            Box::new(|| {
                unary(
                    |a| util::lookup(a, &Tensor::from_vec(vec![2i64, 0], &[2])),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "util.dropout",
            Box::new(|| {
                let y = util::dropout(
                    &Tensor::ones(&[1000], DType::F64),
                    0.5,
                    &mut Generator::new(2),
                );
                assert!(y.to_vec::<f64>().iter().all(|&v| v == 0.0 || v == 2.0));
                let z = F::dropout(
                    &Tensor::ones(&[10], DType::F64),
                    0.5,
                    false,
                    &mut Generator::new(2),
                );
                assert_eq!(z.sum().item::<f64>(), 10.0);
            }),
        ),
        (
            "util.cat",
            Box::new(|| binary(|a, b| Tensor::cat(&[a, b], 0), -1.0, 1.0)),
        ),
        (
            "loss.logMultinomialLoss",
            Box::new(|| {
                binary(
                    |a, b| loss::log_multinomial(&a.log_softmax(1), b),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "loss.logBCELoss",
            Box::new(|| binary(|a, b| loss::log_bce(a, b, None), 0.2, 0.8)),
        ),
        (
            "loss.crossEntropy",
            Box::new(|| {
                binary(
                    |a, b| loss::cross_entropy_onehot_sum(a, &b.softmax(1)).0,
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "loss.binaryCrossEntropy",
            Box::new(|| binary(|a, b| loss::bce_with_logits_sum(a, b).0, -1.0, 1.0)),
        ),
        (
            "loss.leastSquares",
            Box::new(|| binary(|a, b| loss::least_squares(a, b).0, -1.0, 1.0)),
        ),
        (
            "loss.margin",
            Box::new(|| {
                grads(&[&[4]], -1.0, 1.0, |p| {
                    loss::margin(
                        &p[0],
                        &Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 0.0], &[4]),
                        1.0,
                    )
                    .0
                })
            }),
        ),
        (
            "nn.Linear",
            Box::new(|| {
                let mut l = layers::Linear::new(4, 2, &mut Generator::new(3), DType::F64);
                assert_eq!(
                    l.forward(&Tensor::zeros(&[3, 4], DType::F64)).shape(),
                    &[3, 2]
                );
                grads(&[&[3, 4], &[2, 4], &[2]], -1.0, 1.0, |p| {
                    F::linear(&p[0], &p[1], Some(&p[2]))
                });
            }),
        ),
        (
            "nn.Tanh / ReLU / Sigmoid",
            Box::new(|| unary(|a| &(&F::tanh(a) + &F::relu(a)) + &F::sigmoid(a), 0.1, 1.0)),
        ),
        (
            "nn.SoftMax / LogSoftMax",
            Box::new(|| unary(|a| &F::softmax(a, 1) + &F::log_softmax(a, 1), -1.0, 1.0)),
        ),
        ("nn.ELU", Box::new(|| unary(|a| F::elu(a, 1.0), 0.1, 1.0))),
        (
            "nn.LeakyReLU",
            Box::new(|| unary(|a| F::leaky_relu(a, 0.1), 0.1, 1.0)),
        ),
        (
            "nn.PReLU",
            Box::new(|| grads(&[&[2, 3, 2], &[3]], 0.1, 1.0, |p| F::prelu(&-&p[0], &p[1]))),
        ),
        (
            "nn.SoftPlus",
            Box::new(|| unary(|a| F::softplus(a, 1.0, 20.0), -1.0, 1.0)),
        ),
        (
            "nn.LogSigmoid",
            Box::new(|| unary(F::logsigmoid, -1.0, 1.0)),
        ),
        (
            "nn.Threshold",
            Box::new(|| unary(|a| F::threshold(a, 0.0, -1.0), 0.1, 1.0)),
        ),
        (
            "nn.TemporalConvolution",
            Box::new(|| {
                grads(&[&[1, 2, 5], &[3, 2, 2]], -1.0, 1.0, |p| {
                    F::conv1d(&p[0], &p[1], None, Conv2dParams::default())
                })
            }),
        ),
        (
            "nn.SpatialConvolution(MM)",
            Box::new(|| {
                grads(&[&[1, 2, 4, 4], &[3, 2, 2, 2], &[3]], -1.0, 1.0, |p| {
                    F::conv2d(&p[0], &p[1], Some(&p[2]), Conv2dParams::default())
                })
            }),
        ),
        (
            "nn.SpatialFullConvolution",
            Box::new(|| {
                grads(&[&[1, 2, 3, 3], &[2, 3, 2, 2]], -1.0, 1.0, |p| {
                    F::conv_transpose2d(&p[0], &p[1], None, Conv2dParams::default(), (0, 0))
                })
            }),
        ),
        (
            "nn.SpatialMaxPooling",
            Box::new(|| {
                grads(&[&[1, 2, 4, 4]], -1.0, 1.0, |p| {
                    F::max_pool2d(&p[0], Pool2dParams::square(2))
                })
            }),
        ),
        (
            "nn.SpatialAveragePooling",
            Box::new(|| {
                grads(&[&[1, 2, 4, 4]], -1.0, 1.0, |p| {
                    F::avg_pool2d(&p[0], Pool2dParams::square(2), true)
                })
            }),
        ),
        (
            "nn.SpatialUpSamplingNearest / Bilinear",
            Box::new(|| {
                grads(&[&[1, 1, 2, 3]], -1.0, 1.0, |p| {
                    &F::interpolate(&p[0], &[4, 6], Interpolation::Nearest)
                        + &F::interpolate(
                            &p[0],
                            &[4, 6],
                            Interpolation::Linear {
                                align_corners: true,
                            },
                        )
                })
            }),
        ),
        (
            "nn.SpatialZeroPadding / ReflectionPadding / ReplicationPadding",
            Box::new(|| {
                grads(&[&[1, 1, 3, 3]], -1.0, 1.0, |p| {
                    let pads = [(1, 1), (2, 1)];
                    &(&F::pad(&p[0], &pads, PadMode::Constant(0.0))
                        + &F::pad(&p[0], &pads, PadMode::Reflect))
                        + &F::pad(&p[0], &pads, PadMode::Replicate)
                })
            }),
        ),
        (
            "nn.BatchNormalization / SpatialBatchNormalization",
            Box::new(|| {
                grads(&[&[4, 3, 2], &[3], &[3]], -1.0, 1.0, |p| {
                    F::batch_norm(&p[0], Some(&p[1]), Some(&p[2]), None, true, 1e-5)
                })
            }),
        ),
        (
            "nn.Dropout",
            Box::new(|| {
                let mut d = layers::Dropout::new(0.5, false, 4);
                let y = d.forward(&Tensor::ones(&[100], DType::F64));
                assert!(y.to_vec::<f64>().iter().all(|&v| v == 0.0 || v == 2.0));
            }),
        ),
        (
            "nn.LookupTable",
            Box::new(|| {
                grads(&[&[5, 3]], -1.0, 1.0, |p| {
                    F::embedding(&Tensor::from_vec(vec![4i64, 0, 4], &[3]), &p[0], None)
                })
            }),
        ),
        (
            "nn.MSECriterion",
            Box::new(|| {
                binary(
                    |a, b| {
                        &F::mse_loss(a, b, Reduce::Sum)
                            + &layers::MseCriterion::default().loss(a, b)
                    },
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.AbsCriterion",
            Box::new(|| binary(|a, b| layers::AbsCriterion::default().loss(a, b), -1.0, 1.0)),
        ),
        (
            "nn.SmoothL1Criterion",
            Box::new(|| {
                binary(
                    |a, b| layers::SmoothL1Criterion::default().loss(a, b),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.DistKLDivCriterion",
            Box::new(|| {
                binary(
                    |a, b| layers::KlDivCriterion::default().loss(&a.log_softmax(1), &b.softmax(1)),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.ClassNLLCriterion",
            Box::new(|| {
                unary(
                    |a| {
                        &F::nll_loss(&a.log_softmax(1), &class_targets(), Reduce::Sum)
                            + &layers::ClassNllCriterion::default()
                                .loss(&a.log_softmax(1), &class_targets())
                    },
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.CrossEntropyCriterion",
            Box::new(|| {
                unary(
                    |a| layers::CrossEntropyCriterion::default().loss(a, &class_targets()),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.BCECriterion",
            Box::new(|| binary(|a, b| layers::BceCriterion::default().loss(a, b), 0.2, 0.8)),
        ),
        (
            "nn.MarginCriterion",
            Box::new(move || {
                unary(
                    |a| layers::MarginCriterion::default().loss(a, &signs()),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.MultiMarginCriterion",
            Box::new(|| {
                unary(
                    |a| layers::MultiMarginCriterion::default().loss(a, &class_targets()),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.HingeEmbeddingCriterion",
            Box::new(move || {
                unary(
                    |a| layers::HingeEmbeddingCriterion::default().loss(a, &signs()),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.CosineEmbeddingCriterion",
            Box::new(|| {
                binary(
                    |a, b| {
                        layers::CosineEmbeddingCriterion::default().loss(
                            &Tensor::stack(&[a, b], 0),
                            &Tensor::from_vec(vec![1.0f64, -1.0, 1.0], &[3]),
                        )
                    },
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.MarginRankingCriterion",
            Box::new(|| {
                grads(&[&[2, 4]], -1.0, 1.0, |p| {
                    layers::MarginRankingCriterion::default().loss(
                        &p[0],
                        &Tensor::from_vec(vec![1.0f64, -1.0, 1.0, -1.0], &[4]),
                    )
                })
            }),
        ),
        (
            "nn.SoftMarginCriterion",
            Box::new(move || {
                unary(
                    |a| layers::SoftMarginCriterion::default().loss(a, &signs()),
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "nn.MultiLabelSoftMarginCriterion",
            Box::new(move || {
                unary(
                    |a| {
                        layers::MultiLabelSoftMarginCriterion::default()
                            .loss(a, &signs().gt_scalar(0.0).to_dtype(DType::F64))
                    },
                    -1.0,
                    1.0,
                )
            }),
        ),
        (
            "optim.sgd / nag",
            Box::new(|| descends(optim::Sgd::new(0.1).momentum(0.9).nesterov(true))),
        ),
        ("optim.adam", Box::new(|| descends(optim::Adam::new(0.1)))),
        (
            "optim.adagrad",
            Box::new(|| descends(optim::AdaGrad::new(0.1))),
        ),
        (
            "optim.rmsprop",
            Box::new(|| descends(optim::RmsProp::new(0.01))),
        ),
        (
            "optim.adadelta",
            Box::new(|| descends(optim::Adadelta::new(1.0))),
        ),
        (
            "optim.adamax",
            Box::new(|| descends(optim::Adamax::new(0.1))),
        ),
        (
            "optim.rprop",
            Box::new(|| descends(optim::Rprop::new(0.01))),
        ),
        ("optim.asgd", Box::new(|| descends(optim::Asgd::new(0.1)))),
        (
            "optim.lbfgs",
            Box::new(|| {
                let mut opt = optim::Lbfgs::new(1.0).line_search(optim::LineSearch::StrongWolfe);
                let x = opt.minimize(&Tensor::from_vec(vec![1.0f64, -2.0], &[2]), |x| {
                    (x.square().sum().item::<f64>(), x * 2.0)
                });
                assert!(x.abs().max().item::<f64>() < 1e-6);
            }),
        ),
    ]
}

#[test]
fn every_seed_operation_runs_under_its_documented_ferrograd_name() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/seed-coverage.md"
    ))
    .expect("docs/seed-coverage.md");
    let documented: Vec<String> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.split('`')
                .nth(1)
                .expect("a name in backquotes")
                .to_string()
        })
        .collect();
    let rows = rows();
    let tested: Vec<&str> = rows.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        documented, tested,
        "docs/seed-coverage.md and this table list different rows"
    );
    let mut failures = BTreeMap::new();
    for (name, run) in rows {
        if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.insert(name, msg);
        }
    }
    assert!(failures.is_empty(), "rows that fail: {failures:#?}");
}
