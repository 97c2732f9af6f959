//! Values and gradients of ferrograd's ops and nn functions at awkward points (zeros,
//! ties, infinities, NaN, singular matrices, impossible alignments), printed as JSON lines
//! for `benches/pytorch_parity.py`, which computes the same with PyTorch and reports every
//! difference that is not a known, explained one. Run it with `benches/pytorch-parity.sh`.
//!
//! Each case's gradient is that of `Σ w · out` with fixed weights `w = 1 + i/4`, and its
//! second order the Hessian of that along `v = 0.5 + (i mod 5) / 10` in every input.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrograd::{grad, Conv2dParams, MatrixNorm, Tensor};
use ferrograd_nn::functional::{
    self as F, AttentionMask, CrossEntropy, Interpolation, PadMode, Reduce,
};

/// `v` as JSON (Python's json reads `NaN` and `Infinity`).
fn fmt(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "Infinity".into()
    } else if v == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        format!("{v:?}")
    }
}
/// A JSON list of numbers.
fn list(v: &[f64]) -> String {
    format!(
        "[{}]",
        v.iter().map(|&x| fmt(x)).collect::<Vec<_>>().join(",")
    )
}
/// A shape as a JSON list.
fn shape(s: &[usize]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// A case: the function of its inputs.
type Fx = Box<dyn Fn(&Vec<Tensor>) -> Tensor>;

/// Prints case `name`: its inputs, output and gradients, or the error it panicked with.
fn run(name: &str, inputs: Vec<(Vec<f64>, Vec<usize>)>, f: Fx) {
    let params: Vec<Tensor> = inputs
        .iter()
        .map(|(v, s)| Tensor::from_vec(v.clone(), s))
        .collect();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let out = f(&params);
        let n = out.numel();
        let loss = |p: &Vec<Tensor>| {
            let o = f(p);
            let w = Tensor::from_vec(
                (0..n).map(|i| 1.0 + 0.25 * i as f64).collect::<Vec<f64>>(),
                o.shape(),
            );
            (o * &w).sum()
        };
        let (g, _) = grad(&loss).call(&params, ());
        // the second order: the Hessian of the loss along v = 0.5 + (i mod 5) / 10 in every
        // input (None where the second derivative panics, reported apart)
        let v: Vec<Tensor> = params
            .iter()
            .map(|p| {
                let n = p.numel();
                Tensor::from_vec(
                    (0..n).map(|i| 0.5 + (i % 5) as f64 * 0.1).collect(),
                    p.shape(),
                )
            })
            .collect();
        let hv = catch_unwind(AssertUnwindSafe(|| ferrograd::hvp(&loss, &params, (), &v))).ok();
        (out, g, hv)
    }));
    let ins: Vec<String> = inputs
        .iter()
        .map(|(v, s)| format!("{{\"v\":{},\"s\":{}}}", list(v), shape(s)))
        .collect();
    match r {
        Ok((out, g, hv)) => {
            let gs: Vec<String> = g.iter().map(|t| list(&t.to_vec::<f64>())).collect();
            let hvs = match hv {
                Some(hv) => {
                    let h: Vec<String> = hv.iter().map(|t| list(&t.to_vec::<f64>())).collect();
                    format!("[{}]", h.join(","))
                }
                None => "null".into(),
            };
            println!(
                "{{\"name\":\"{name}\",\"inputs\":[{}],\"out\":{},\"out_shape\":{},\"grads\":[{}],\"hvp\":{hvs}}}",
                ins.join(","),
                list(&out.to_dtype(ferrograd::DType::F64).to_vec::<f64>()),
                shape(out.shape()),
                gs.join(",")
            );
        }
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or(e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            println!(
                "{{\"name\":\"{name}\",\"inputs\":[{}],\"error\":{:?}}}",
                ins.join(","),
                msg.replace('"', "'")
            );
        }
    }
}

/// `n` smooth, varied values (a fixed sequence, the Python side builds the same).
fn seq(n: usize, k: f64) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 * 0.7 + k).sin() * 1.3 + 0.1 * (i % 3) as f64)
        .collect()
}

fn main() {
    // (a case's panic is reported as its error, not printed)
    std::panic::set_hook(Box::new(|_| {}));
    elementwise_and_reductions();
    losses_and_pooling();
    linear_algebra_and_indexing();
    layers();
    more_layers();
    shapes_and_products();
}

fn elementwise_and_reductions() {
    let inf = f64::INFINITY;
    let nan = f64::NAN;
    let awk = vec![
        -2.5, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.5, inf, -inf, nan, 1e-310, 40.0, -40.0, 0.9999999,
    ];
    let s = vec![awk.len()];
    macro_rules! un {
        ($($name:ident),*) => {$(
            run(stringify!($name), vec![(awk.clone(), s.clone())], Box::new(|p: &Vec<Tensor>| p[0].$name()));
        )*};
    }
    un!(
        neg, abs, exp, log, log1p, expm1, sqrt, rsqrt, sin, cos, tan, sinh, cosh, asin, acos, atan,
        erf, erfinv, lgamma, digamma, tanh, sigmoid, relu, reciprocal, square, sign, floor, ceil,
        round, trunc, gelu, gelu_tanh, silu, selu, logsigmoid
    );
    run(
        "polygamma1",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| p[0].polygamma(1)),
    );
    run(
        "elu",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| p[0].elu(1.5)),
    );
    run(
        "leaky_relu",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| p[0].leaky_relu(0.1)),
    );
    run(
        "softplus",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| p[0].softplus(2.0, 20.0)),
    );
    run(
        "clamp",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| p[0].clamp(Some(-1.0), Some(0.5))),
    );
    run(
        "clamp_lo",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| p[0].clamp(Some(0.0), None)),
    );
    for e in [0.0, 0.5, 1.0, 2.0, 3.0, -1.0, -0.5, -2.0, 2.5] {
        run(
            &format!("pow_scalar_{e}"),
            vec![(awk.clone(), s.clone())],
            Box::new(move |p| p[0].pow_scalar(e)),
        );
        run(
            &format!("rpow_scalar_{e}"),
            vec![(awk.clone(), s.clone())],
            Box::new(move |p| p[0].rpow_scalar(e)),
        );
    }
    // binary: every pair from a small set
    let small = vec![-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, inf, -inf, nan];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for &x in &small {
        for &y in &small {
            a.push(x);
            b.push(y);
        }
    }
    let bs = vec![a.len()];
    macro_rules! bin {
        ($($name:ident),*) => {$(
            run(stringify!($name), vec![(a.clone(), bs.clone()), (b.clone(), bs.clone())], Box::new(|p: &Vec<Tensor>| p[0].$name(&p[1])));
        )*};
    }
    bin!(add, sub, mul, div, maximum, minimum, pow, atan2, fmod, remainder);
    // reductions over rows with ties, zeros, infinities, NaN
    let rows: Vec<Vec<f64>> = vec![
        vec![1.0, 3.0, 3.0, 2.0],
        vec![0.0, 0.0, 0.0, 0.0],
        vec![2.0, 0.0, 3.0, 4.0],
        vec![0.0, 0.0, 5.0, 1.0],
        vec![-inf, -inf, -inf, -inf],
        vec![-inf, 1.0, 2.0, -inf],
        vec![inf, 1.0, 2.0, 3.0],
        vec![1.0, nan, 2.0, 3.0],
        vec![-1.0, -1.0, -3.0, -2.0],
        vec![1e300, 1e300, -1e300, 5.0],
    ];
    let rv: Vec<f64> = rows.concat();
    let rs = vec![rows.len(), 4];
    run(
        "sum_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].sum_dim(1usize, false)),
    );
    run(
        "mean_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].mean_dim(1usize, false)),
    );
    run(
        "prod_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].prod_dim(1usize, false)),
    );
    run(
        "amax_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].amax_dim(1usize, false)),
    );
    run(
        "amin_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].amin_dim(1usize, false)),
    );
    run(
        "logsumexp_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].logsumexp_dim(1usize, false)),
    );
    run(
        "max_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].max_dim(1usize, false).0),
    );
    run(
        "min_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].min_dim(1usize, false).0),
    );
    run(
        "max_dim_idx",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| {
            p[0].max_dim(1usize, false)
                .1
                .to_dtype(ferrograd::DType::F64)
        }),
    );
    run(
        "argmin",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].argmin(1usize, false).to_dtype(ferrograd::DType::F64)),
    );
    run(
        "max_all",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].max()),
    );
    run(
        "amax_all",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].amax()),
    );
    run(
        "var_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].var_dim(1usize, 1, false)),
    );
    run(
        "std_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].std_dim(1usize, 1, false)),
    );
    run(
        "std_dim0",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].std_dim(1usize, 0, false)),
    );
    for pn in [0.0, 1.0, 2.0, 3.0, 0.5, inf] {
        run(
            &format!("norm_dim_{pn}"),
            vec![(rv.clone(), rs.clone())],
            Box::new(move |p| p[0].norm_dim(pn, 1usize, false)),
        );
    }
    run(
        "softmax",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].softmax(1usize)),
    );
    run(
        "log_softmax",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].log_softmax(1usize)),
    );
    run(
        "cumsum",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].cumsum(1usize)),
    );
    run(
        "cumprod",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].cumprod(1usize)),
    );
    run(
        "median_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].median_dim(1usize, false).0),
    );
    run(
        "median_dim_idx",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| {
            p[0].median_dim(1usize, false)
                .1
                .to_dtype(ferrograd::DType::F64)
        }),
    );
    run(
        "sort",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].sort(1usize, false).0),
    );
    run(
        "sort_idx",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].sort(1usize, false).1.to_dtype(ferrograd::DType::F64)),
    );
    run(
        "sort_desc_idx",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].sort(1usize, true).1.to_dtype(ferrograd::DType::F64)),
    );
    run(
        "topk",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].topk(2, 1usize, true).0),
    );
    run(
        "topk_idx",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].topk(2, 1usize, true).1.to_dtype(ferrograd::DType::F64)),
    );
    run(
        "kthvalue",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].kthvalue(2, 1usize, false).0),
    );
    run(
        "kthvalue_idx",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| {
            p[0].kthvalue(2, 1usize, false)
                .1
                .to_dtype(ferrograd::DType::F64)
        }),
    );
    run(
        "nansum_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].nansum_dim(1usize, false)),
    );
    run(
        "nanmean_dim",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].nanmean_dim(1usize, false)),
    );
    run(
        "argmax",
        vec![(rv.clone(), rs.clone())],
        Box::new(|p| p[0].argmax(1usize, false).to_dtype(ferrograd::DType::F64)),
    );
    run(
        "to_i64",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| {
            p[0].to_dtype(ferrograd::DType::I64)
                .to_dtype(ferrograd::DType::F64)
        }),
    );
    run(
        "to_f32",
        vec![(awk.clone(), s.clone())],
        Box::new(|p| {
            p[0].to_dtype(ferrograd::DType::F32)
                .to_dtype(ferrograd::DType::F64)
        }),
    );
}

fn losses_and_pooling() {
    let inf = f64::INFINITY;
    let v1 = |v: Vec<f64>| {
        let n = v.len();
        (v, vec![n])
    };
    let diffs = vec![-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 1e-9, -1e-9];
    let zeros = |n: usize| Tensor::from_vec(vec![0.0f64; n], &[n]);
    let n = diffs.len();
    run(
        "smooth_l1",
        vec![v1(diffs.clone())],
        Box::new(move |p| F::smooth_l1_loss(&p[0], &zeros(n), 1.0, Reduce::None)),
    );
    run(
        "smooth_l1_b0",
        vec![v1(diffs.clone())],
        Box::new(move |p| F::smooth_l1_loss(&p[0], &zeros(n), 0.0, Reduce::None)),
    );
    run(
        "huber",
        vec![v1(diffs.clone())],
        Box::new(move |p| F::huber_loss(&p[0], &zeros(n), 1.0, Reduce::None)),
    );
    run(
        "l1",
        vec![v1(diffs.clone())],
        Box::new(move |p| F::l1_loss(&p[0], &zeros(n), Reduce::None)),
    );
    run(
        "mse",
        vec![v1(diffs.clone())],
        Box::new(move |p| F::mse_loss(&p[0], &zeros(n), Reduce::Mean)),
    );
    let probs = vec![0.0, 1.0, 0.5, 1e-30, 1.0 - 1e-16, 0.25, 0.0, 1.0];
    let targ = vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let t2 = targ.clone();
    run(
        "bce",
        vec![v1(probs.clone())],
        Box::new(move |p| {
            F::binary_cross_entropy(&p[0], &Tensor::from_vec(t2.clone(), &[8]), Reduce::None)
        }),
    );
    let logits = vec![-1000.0, 1000.0, -100.0, 100.0, 0.0, -30.0, 30.0, 1e-3];
    let t3 = targ.clone();
    run(
        "bce_logits",
        vec![v1(logits.clone())],
        Box::new(move |p| {
            F::binary_cross_entropy_with_logits(
                &p[0],
                &Tensor::from_vec(t3.clone(), &[8]),
                Reduce::None,
            )
        }),
    );
    let kt = vec![0.0, 0.5, 0.25, 0.25, 0.0, 1.0, 0.0, 0.0];
    let kt2 = kt.clone();
    run(
        "kl_div",
        vec![v1(vec![-1.0, -0.5, -2.0, -inf, -3.0, 0.0, -inf, 0.0])],
        Box::new(move |p| {
            F::kl_div(
                &p[0],
                &Tensor::from_vec(kt2.clone(), &[8]),
                Reduce::None,
                false,
            )
        }),
    );
    // cross entropy: [4, 3] logits with -inf and big values
    let ce = vec![
        1.0, 2.0, 3.0, -inf, 0.0, 1.0, 1000.0, -1000.0, 0.0, 0.5, 0.5, 0.5,
    ];
    let tgt = || Tensor::from_vec(vec![2i64, 1, 0, -100], &[4]);
    run(
        "ce_ignore",
        vec![(ce.clone(), vec![4, 3])],
        Box::new(move |p| {
            F::cross_entropy_with(
                &p[0],
                &tgt(),
                CrossEntropy {
                    ignore_index: Some(-100),
                    ..Default::default()
                },
            )
        }),
    );
    run(
        "ce_smooth",
        vec![(ce.clone(), vec![4, 3])],
        Box::new(move |p| {
            F::cross_entropy_with(
                &p[0],
                &tgt(),
                CrossEntropy {
                    ignore_index: Some(-100),
                    label_smoothing: 0.2,
                    ..Default::default()
                },
            )
        }),
    );
    run(
        "ce_none",
        vec![(ce.clone(), vec![4, 3])],
        Box::new(move |p| {
            F::cross_entropy_with(
                &p[0],
                &tgt(),
                CrossEntropy {
                    ignore_index: Some(-100),
                    reduction: Reduce::None,
                    ..Default::default()
                },
            )
        }),
    );
    let w = || Tensor::from_vec(vec![1.0f64, 2.0, 0.5], &[3]);
    run(
        "ce_weight",
        vec![(ce.clone(), vec![4, 3])],
        Box::new(move |p| {
            let w = w();
            F::cross_entropy_with(
                &p[0],
                &tgt(),
                CrossEntropy {
                    ignore_index: Some(-100),
                    weight: Some(&w),
                    ..Default::default()
                },
            )
        }),
    );
    run(
        "ce_weight_smooth",
        vec![(ce.clone(), vec![4, 3])],
        Box::new(move |p| {
            let w = w();
            F::cross_entropy_with(
                &p[0],
                &tgt(),
                CrossEntropy {
                    ignore_index: Some(-100),
                    weight: Some(&w),
                    label_smoothing: 0.3,
                    ..Default::default()
                },
            )
        }),
    );
    let he_t = || Tensor::from_vec(vec![1.0f64, -1.0, -1.0, -1.0, 1.0, -1.0], &[6]);
    run(
        "hinge_emb",
        vec![v1(vec![0.5, 0.5, 1.0, 2.0, -1.0, 0.0])],
        Box::new(move |p| F::hinge_embedding_loss(&p[0], &he_t(), 1.0, Reduce::None)),
    );
    run(
        "soft_margin",
        vec![v1(vec![-1000.0, 1000.0, 0.0, 30.0])],
        Box::new(move |p| {
            F::soft_margin_loss(
                &p[0],
                &Tensor::from_vec(vec![1.0f64, -1.0, 1.0, 1.0], &[4]),
                Reduce::None,
            )
        }),
    );
    // rows: zero vectors and ordinary ones
    let cs = vec![0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 1e-9, 0.0, 0.0, 3.0, 0.0, 4.0];
    let other = || {
        Tensor::from_vec(
            vec![
                1.0f64, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 3.0, 0.0, 4.0,
            ],
            &[4, 3],
        )
    };
    run(
        "cosine_sim",
        vec![(cs.clone(), vec![4, 3])],
        Box::new(move |p| F::cosine_similarity(&p[0], &other(), 1, 1e-8)),
    );
    run(
        "normalize",
        vec![(cs.clone(), vec![4, 3])],
        Box::new(move |p| F::normalize(&p[0], 2.0, 1, 1e-12)),
    );
    run(
        "layer_norm",
        vec![(
            vec![1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 0.0, 0.0, 1e-3],
            vec![3, 3],
        )],
        Box::new(|p| F::layer_norm(&p[0], &[3], None, None, 1e-5)),
    );
    run(
        "rms_norm",
        vec![(
            vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 1e-3],
            vec![3, 3],
        )],
        Box::new(|p| F::rms_norm(&p[0], &[3], None, 1e-6)),
    );
    // pooling with ties, NaN, padding
    let img = vec![
        1.0, 1.0, 0.0, 2.0, 1.0, 1.0, 2.0, 2.0, 0.0, 3.0, 3.0, 0.0, 5.0, 5.0, 5.0, 5.0,
    ];
    let pp = |k: usize, s: usize, pad: usize| ferrograd::Pool2dParams {
        kernel: (k, k),
        stride: (s, s),
        padding: (pad, pad),
    };
    run(
        "max_pool_ties",
        vec![(img.clone(), vec![1, 1, 4, 4])],
        Box::new(move |p| F::max_pool2d(&p[0], pp(2, 2, 0))),
    );
    run(
        "max_pool_overlap",
        vec![(img.clone(), vec![1, 1, 4, 4])],
        Box::new(move |p| F::max_pool2d(&p[0], pp(3, 1, 1))),
    );
    let mut nimg = img.clone();
    nimg[5] = f64::NAN;
    run(
        "max_pool_nan",
        vec![(nimg, vec![1, 1, 4, 4])],
        Box::new(move |p| F::max_pool2d(&p[0], pp(2, 2, 0))),
    );
    run(
        "avg_pool_pad",
        vec![(img.clone(), vec![1, 1, 4, 4])],
        Box::new(move |p| F::avg_pool2d(&p[0], pp(3, 2, 1), true)),
    );
    run(
        "avg_pool_nopad",
        vec![(img.clone(), vec![1, 1, 4, 4])],
        Box::new(move |p| F::avg_pool2d(&p[0], pp(3, 2, 1), false)),
    );
    run(
        "adaptive_max",
        vec![(img.clone(), vec![1, 1, 4, 4])],
        Box::new(|p| F::adaptive_max_pool(&p[0], &[3, 3])),
    );
    run(
        "adaptive_avg",
        vec![(img.clone(), vec![1, 1, 4, 4])],
        Box::new(|p| F::adaptive_avg_pool(&p[0], &[3, 3])),
    );
    run(
        "prelu",
        vec![v1(diffs.clone())],
        Box::new(|p| F::prelu(&p[0], &Tensor::from_vec(vec![0.25f64], &[1]))),
    );
    run(
        "threshold",
        vec![v1(diffs.clone())],
        Box::new(|p| F::threshold(&p[0], 0.5, -7.0)),
    );
    run(
        "margin_rank",
        vec![v1(vec![1.0, 0.0, 2.0, -1.0])],
        Box::new(|p| {
            F::margin_ranking_loss(
                &p[0],
                &Tensor::from_vec(vec![0.0f64, 0.0, 1.0, 0.0], &[4]),
                &Tensor::from_vec(vec![1.0f64, 1.0, 1.0, -1.0], &[4]),
                1.0,
                Reduce::None,
            )
        }),
    );
    run(
        "multi_margin",
        vec![(vec![1.0, 2.0, 3.0, 0.0, 1.0, 0.0], vec![2, 3])],
        Box::new(|p| {
            F::multi_margin_loss(
                &p[0],
                &Tensor::from_vec(vec![1i64, 1], &[2]),
                1,
                1.0,
                None,
                Reduce::None,
            )
        }),
    );
    run(
        "cos_emb",
        vec![(cs.clone(), vec![4, 3])],
        Box::new(move |p| {
            F::cosine_embedding_loss(
                &p[0],
                &other(),
                &Tensor::from_vec(vec![1.0f64, -1.0, 1.0, -1.0], &[4]),
                0.0,
                Reduce::None,
            )
        }),
    );
}

fn linear_algebra_and_indexing() {
    let m = |v: Vec<f64>, r: usize, c: usize| (v, vec![r, c]);
    let eye3 = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let sing = vec![1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 1.0, 0.0, 1.0]; // rank 2
    let rank1 = vec![1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 3.0, 6.0, 9.0];
    let gen = vec![2.0, -1.0, 0.5, 1.0, 3.0, -2.0, 0.0, 1.0, 4.0];
    let zero = vec![0.0; 9];
    let spd = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
    let rep = vec![2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 5.0]; // repeated eigenvalue
    for (tag, a) in [
        ("eye", &eye3),
        ("sing", &sing),
        ("rank1", &rank1),
        ("gen", &gen),
        ("zero", &zero),
        ("spd", &spd),
        ("rep", &rep),
    ] {
        let a = a.clone();
        run(
            &format!("det_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| p[0].det()),
        );
        run(
            &format!("slogdet_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| p[0].slogdet().1),
        );
        run(
            &format!("svdvals_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| p[0].svdvals()),
        );
        run(
            &format!("pinv_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| p[0].pinv()),
        );
        for (k, ord) in [
            ("fro", MatrixNorm::Frobenius),
            ("nuc", MatrixNorm::Nuclear),
            ("one", MatrixNorm::One),
            ("two", MatrixNorm::Two),
            ("inf", MatrixNorm::Inf),
            ("negtwo", MatrixNorm::NegTwo),
        ] {
            run(
                &format!("mnorm_{k}_{tag}"),
                vec![m(a.clone(), 3, 3)],
                Box::new(move |p| p[0].matrix_norm(ord)),
            );
        }
        run(
            &format!("eigvalsh_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| {
                let s = (&p[0] + &p[0].t()) * 0.5;
                s.eigvalsh()
            }),
        );
        run(
            &format!("inverse_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| p[0].inverse()),
        );
        run(
            &format!("trace_{tag}"),
            vec![m(a.clone(), 3, 3)],
            Box::new(|p| p[0].trace()),
        );
    }
    run(
        "cholesky_spd",
        vec![m(spd.clone(), 3, 3)],
        Box::new(|p| {
            let s = (&p[0] + &p[0].t()) * 0.5;
            s.cholesky()
        }),
    );
    // cdist with coincident points
    let pts = vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0, 4.0];
    for pn in [0.0, 1.0, 2.0, 3.0, 0.5, f64::INFINITY] {
        run(
            &format!("cdist_{pn}"),
            vec![m(pts.clone(), 4, 2)],
            Box::new(move |p| p[0].cdist(&p[0], pn)),
        );
    }
    // indexing with repeats
    let x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    run(
        "gather_rep",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| p[0].gather(1, &Tensor::from_vec(vec![0i64, 0, 2, 1, 1, 1], &[2, 3]))),
    );
    run(
        "index_select_rep",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| p[0].index_select(1, &Tensor::from_vec(vec![2i64, 2, 0], &[3]))),
    );
    run(
        "scatter_rep",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| {
            Tensor::zeros(&[2, 3], ferrograd::DType::F64).scatter(
                1,
                &Tensor::from_vec(vec![0i64, 0, 2, 1, 1, 1], &[2, 3]),
                &p[0],
            )
        }),
    );
    run(
        "scatter_add_rep",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| {
            Tensor::zeros(&[2, 3], ferrograd::DType::F64).scatter_add(
                1,
                &Tensor::from_vec(vec![0i64, 0, 2, 1, 1, 1], &[2, 3]),
                &p[0],
            )
        }),
    );
    run(
        "scatter_self_rep",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| {
            p[0].scatter(
                1,
                &Tensor::from_vec(vec![0i64, 0], &[2, 1]),
                &Tensor::from_vec(vec![9.0f64, 8.0], &[2, 1]),
            )
        }),
    );
    run(
        "index_add_rep",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| p[0].index_add(1, &Tensor::from_vec(vec![1i64, 1, 0], &[3]), &(&p[0] * 2.0))),
    );
    run(
        "roll",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| p[0].roll(-4, 1usize)),
    );
    run(
        "repeat_interleave",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| p[0].repeat_interleave(2, 0usize)),
    );
    run(
        "lerp",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| {
            p[0].lerp(
                &(&p[0] * &p[0]),
                &Tensor::from_vec(vec![0.0f64, 0.5, 1.0, 1.5, -0.5, 0.25], &[2, 3]),
            )
        }),
    );
    run(
        "masked_fill",
        vec![m(x.clone(), 2, 3)],
        Box::new(|p| p[0].masked_fill(&p[0].gt_scalar(2.5), f64::NAN)),
    );
}

fn layers() {
    let img = seq(2 * 2 * 5 * 4, 0.3);
    let s4 = vec![2, 2, 5, 4];
    for (tag, size) in [
        ("up", [7usize, 9]),
        ("down", [3, 2]),
        ("same", [5, 4]),
        ("one", [1, 1]),
    ] {
        run(
            &format!("nearest_{tag}"),
            vec![(img.clone(), s4.clone())],
            Box::new(move |p| F::interpolate(&p[0], &size, Interpolation::Nearest)),
        );
        run(
            &format!("linear_ac_{tag}"),
            vec![(img.clone(), s4.clone())],
            Box::new(move |p| {
                F::interpolate(
                    &p[0],
                    &size,
                    Interpolation::Linear {
                        align_corners: true,
                    },
                )
            }),
        );
        run(
            &format!("linear_{tag}"),
            vec![(img.clone(), s4.clone())],
            Box::new(move |p| {
                F::interpolate(
                    &p[0],
                    &size,
                    Interpolation::Linear {
                        align_corners: false,
                    },
                )
            }),
        );
    }
    for (tag, mode) in [
        ("const", PadMode::Constant(-1.5)),
        ("reflect", PadMode::Reflect),
        ("replicate", PadMode::Replicate),
    ] {
        run(
            &format!("pad_{tag}"),
            vec![(img.clone(), s4.clone())],
            Box::new(move |p| F::pad(&p[0], &[(2, 1), (0, 3)], mode)),
        );
    }
    run(
        "group_norm",
        vec![(img.clone(), s4.clone())],
        Box::new(|p| {
            F::group_norm(
                &p[0],
                2,
                Some(&Tensor::from_vec(vec![1.5f64, -0.5], &[2])),
                Some(&Tensor::from_vec(vec![0.1f64, 0.2], &[2])),
                1e-5,
            )
        }),
    );
    run(
        "instance_norm",
        vec![(img.clone(), s4.clone())],
        Box::new(|p| F::instance_norm(&p[0], None, None, 1e-5)),
    );
    run(
        "batch_norm_train",
        vec![(img.clone(), s4.clone())],
        Box::new(|p| {
            F::batch_norm(
                &p[0],
                Some(&Tensor::from_vec(vec![1.5f64, -0.5], &[2])),
                None,
                None,
                true,
                1e-5,
            )
        }),
    );
    run(
        "layer_norm_affine",
        vec![(img.clone(), s4.clone())],
        Box::new(|p| {
            F::layer_norm(
                &p[0],
                &[5, 4],
                Some(&Tensor::from_vec(seq(20, 1.0), &[5, 4])),
                Some(&Tensor::from_vec(seq(20, 2.0), &[5, 4])),
                1e-5,
            )
        }),
    );
    let w = seq(3 * 2 * 3 * 2, 0.9);
    run(
        "conv_dil",
        vec![(img.clone(), s4.clone())],
        Box::new(move |p| {
            F::conv2d(
                &p[0],
                &Tensor::from_vec(w.clone(), &[3, 2, 3, 2]),
                Some(&Tensor::from_vec(vec![0.1f64, -0.2, 0.3], &[3])),
                Conv2dParams {
                    stride: (2, 1),
                    padding: (1, 2),
                    dilation: (1, 2),
                    groups: 1,
                },
            )
        }),
    );
    let wg = seq(16, 1.9);
    run(
        "conv_groups",
        vec![(img.clone(), s4.clone())],
        Box::new(move |p| {
            F::conv2d(
                &p[0],
                &Tensor::from_vec(wg.clone(), &[4, 1, 2, 2]),
                None,
                Conv2dParams {
                    stride: (1, 2),
                    padding: (0, 1),
                    dilation: (1, 1),
                    groups: 2,
                },
            )
        }),
    );
    let wt = seq(2 * 3 * 3 * 3, 0.4);
    run(
        "conv_t",
        vec![(img.clone(), s4.clone())],
        Box::new(move |p| {
            F::conv_transpose2d(
                &p[0],
                &Tensor::from_vec(wt.clone(), &[2, 3, 3, 3]),
                None,
                Conv2dParams {
                    stride: (2, 2),
                    padding: (1, 0),
                    dilation: (1, 1),
                    groups: 1,
                },
                (1, 0),
            )
        }),
    );
    // attention: [2, 3, 4] queries against [2, 5, 4] keys and values
    let q = seq(24, 0.1);
    let kv = seq(40, 1.1);
    let kv2 = kv.clone();
    run(
        "sdpa",
        vec![(q.clone(), vec![2, 3, 4])],
        Box::new(move |p| {
            let k = Tensor::from_vec(kv.clone(), &[2, 5, 4]);
            F::scaled_dot_product_attention(&p[0], &k, &(&k * 0.5), AttentionMask::None, None, None)
        }),
    );
    let qs = seq(40, 0.2);
    run(
        "sdpa_causal",
        vec![(qs.clone(), vec![2, 5, 4])],
        Box::new(move |p| {
            let k = Tensor::from_vec(kv2.clone(), &[2, 5, 4]);
            F::scaled_dot_product_attention(&p[0], &k, &k, AttentionMask::Causal, Some(0.7), None)
        }),
    );
    // embedding with a padding row
    let table = seq(5 * 3, 0.5);
    run(
        "embedding_pad",
        vec![(table.clone(), vec![5, 3])],
        Box::new(|p| {
            F::embedding(
                &Tensor::from_vec(vec![0i64, 2, 2, 4, 1, 2], &[2, 3]),
                &p[0],
                Some(2),
            )
        }),
    );
    // CTC: T = 6, N = 3, C = 4
    let lp = seq(6 * 3 * 4, 0.8);
    let targets = || Tensor::from_vec(vec![1i64, 2, 3, 3, 3, 0, 1, 1, 2], &[3, 3]);
    for (tag, red, zi) in [
        ("mean", Reduce::Mean, false),
        ("sum", Reduce::Sum, false),
        ("none", Reduce::None, false),
        ("none_zi", Reduce::None, true),
        ("mean_zi", Reduce::Mean, true),
    ] {
        run(
            &format!("ctc_{tag}"),
            vec![(lp.clone(), vec![6, 3, 4])],
            Box::new(move |p| {
                F::ctc_loss(
                    &p[0].log_softmax(2),
                    &targets(),
                    &[6, 5, 3],
                    &[3, 2, 3],
                    0,
                    red,
                    zi,
                )
            }),
        );
    }
}

fn more_layers() {
    use ferrograd_nn::functional::{AttentionParams, Sliding};
    // multi-head attention, batch-first [2, 3, 4] against [2, 5, 4], two heads, biases
    let q = seq(24, 0.15);
    let kv = seq(40, 1.2);
    run(
        "mha",
        vec![(q, vec![2, 3, 4])],
        Box::new(move |p| {
            let kv = Tensor::from_vec(kv.clone(), &[2, 5, 4]);
            let w: Vec<Tensor> = (0..4)
                .map(|i| Tensor::from_vec(seq(16, 0.3 * i as f64 + 0.05), &[4, 4]) * 0.5)
                .collect();
            let b: Vec<Tensor> = (0..4)
                .map(|i| Tensor::from_vec(seq(4, 2.0 + i as f64), &[4]) * 0.1)
                .collect();
            let params = AttentionParams {
                in_weights: [&w[0], &w[1], &w[2]],
                in_biases: Some([&b[0], &b[1], &b[2]]),
                out_weight: &w[3],
                out_bias: Some(&b[3]),
            };
            F::multi_head_attention(&p[0], &kv, &(&kv * 0.7), &params, 2, AttentionMask::None)
        }),
    );
    let img = seq(2 * 2 * 6 * 5, 0.6);
    let s4 = vec![2, 2, 6, 5];
    let sliding = Sliding {
        kernel: (3, 2),
        stride: (2, 2),
        padding: (1, 1),
        dilation: (2, 1),
        ceil_mode: true,
    };
    run(
        "max_pool_with",
        vec![(img.clone(), s4.clone())],
        Box::new(move |p| F::max_pool2d_with(&p[0], sliding)),
    );
    let plain = Sliding {
        ceil_mode: false,
        ..sliding
    };
    run(
        "unfold",
        vec![(img.clone(), s4.clone())],
        Box::new(move |p| F::unfold(&p[0], plain)),
    );
    run(
        "fold",
        vec![(seq(2 * 12 * 9, 0.8), vec![2, 12, 9])],
        Box::new(move |p| {
            let folded = Sliding {
                kernel: (2, 3),
                stride: (1, 2),
                padding: (0, 1),
                dilation: (1, 1),
                ceil_mode: false,
            };
            F::fold(&p[0], (4, 5), folded)
        }),
    );
    let line = seq(2 * 4 * 9, 0.25);
    let s3 = vec![2, 4, 9];
    run(
        "conv1d",
        vec![(line.clone(), s3.clone())],
        Box::new(|p| {
            let params = Conv2dParams {
                stride: (1, 2),
                padding: (0, 1),
                dilation: (1, 2),
                groups: 2,
            };
            F::conv1d(
                &p[0],
                &Tensor::from_vec(seq(6 * 2 * 3, 0.45), &[6, 2, 3]),
                None,
                params,
            )
        }),
    );
    run(
        "conv_t1d",
        vec![(line.clone(), s3.clone())],
        Box::new(|p| {
            let params = Conv2dParams {
                stride: (1, 2),
                padding: (0, 1),
                dilation: (1, 1),
                groups: 1,
            };
            let w = Tensor::from_vec(seq(4 * 3 * 3, 0.55), &[4, 3, 3]);
            F::conv_transpose1d(
                &p[0],
                &w,
                Some(&Tensor::from_vec(vec![0.1f64, 0.2, 0.3], &[3])),
                params,
                1,
            )
        }),
    );
    for (tag, size) in [("up", 13usize), ("down", 4)] {
        run(
            &format!("linear1d_{tag}"),
            vec![(line.clone(), s3.clone())],
            Box::new(move |p| {
                F::interpolate(
                    &p[0],
                    &[size],
                    Interpolation::Linear {
                        align_corners: false,
                    },
                )
            }),
        );
        run(
            &format!("nearest1d_{tag}"),
            vec![(line.clone(), s3.clone())],
            Box::new(move |p| F::interpolate(&p[0], &[size], Interpolation::Nearest)),
        );
        run(
            &format!("adaptive_avg1d_{tag}"),
            vec![(line.clone(), s3.clone())],
            Box::new(move |p| F::adaptive_avg_pool(&p[0], &[size.min(9)])),
        );
        run(
            &format!("adaptive_max1d_{tag}"),
            vec![(line.clone(), s3.clone())],
            Box::new(move |p| F::adaptive_max_pool(&p[0], &[size.min(9)])),
        );
    }
    // losses over [N, C, d] and with log targets
    let logits = seq(2 * 3 * 4, 0.35);
    let targets = || Tensor::from_vec(vec![0i64, 2, 1, 1, 2, 0, 0, 1], &[2, 4]);
    run(
        "ce_spatial",
        vec![(logits.clone(), vec![2, 3, 4])],
        Box::new(move |p| {
            F::cross_entropy_with(
                &p[0],
                &targets(),
                CrossEntropy {
                    label_smoothing: 0.1,
                    ..Default::default()
                },
            )
        }),
    );
    run(
        "nll_spatial",
        vec![(logits.clone(), vec![2, 3, 4])],
        Box::new(move |p| F::nll_loss(&p[0].log_softmax(1), &targets(), Reduce::Sum)),
    );
    run(
        "kl_div_log_target",
        vec![(logits.clone(), vec![2, 3, 4])],
        Box::new(|p| {
            let t = Tensor::from_vec(seq(24, 3.0), &[2, 3, 4]).log_softmax(1);
            F::kl_div(&p[0].log_softmax(1), &t, Reduce::BatchMean, true)
        }),
    );
    run(
        "einsum",
        vec![(logits.clone(), vec![2, 3, 4])],
        Box::new(|p| ferrograd::einsum("bij,bkj->bik", &[&p[0], &(&p[0] * &p[0])])),
    );
}

fn shapes_and_products() {
    use ferrograd::{Index, Triangular};
    let m = seq(12, 0.4);
    let cases: Vec<(&str, Fx)> = vec![
        ("tril", Box::new(|p| p[0].tril(-1))),
        ("triu", Box::new(|p| p[0].triu(1))),
        ("flip", Box::new(|p| p[0].flip([0, 1]))),
        ("diagonal", Box::new(|p| p[0].diagonal(1))),
        (
            "diag_embed",
            Box::new(|p| p[0].narrow(0, 0, 1).reshape(&[4]).diag_embed(-1)),
        ),
        ("repeat", Box::new(|p| p[0].repeat(&[2, 1, 3]))),
        (
            "expand",
            Box::new(|p| p[0].narrow(0, 1, 1).expand(&[2, 3, 4])),
        ),
        (
            "where",
            Box::new(|p| {
                Tensor::where_cond(&p[0].gt_scalar(0.0), &p[0].square(), &p[0].narrow(0, 0, 1))
            }),
        ),
        (
            "index_fill",
            Box::new(|p| p[0].index_fill(&Index::List(vec![2, 0]), -1.5)),
        ),
        (
            "slice_scatter",
            Box::new(|p| p[0].slice_scatter(&p[0].narrow(1, 0, 2).square(), 1, Some(1), None, 2)),
        ),
        (
            "diagonal_scatter",
            Box::new(|p| p[0].diagonal_scatter(&p[0].narrow(1, 0, 3).diagonal(0).exp(), 1, 0, 1)),
        ),
        (
            "lerp_scalar",
            Box::new(|p| p[0].lerp_scalar(&p[0].exp(), 0.3)),
        ),
        (
            "addmm",
            Box::new(|p| p[0].narrow(1, 0, 3).addmm(&p[0], &p[0].t(), 0.5, 2.0)),
        ),
        (
            "addmv",
            Box::new(|p| {
                p[0].narrow(1, 0, 1).reshape(&[3]).addmv(
                    &p[0],
                    &p[0].narrow(0, 0, 1).reshape(&[4]),
                    1.5,
                    -0.5,
                )
            }),
        ),
        (
            "addr",
            Box::new(|p| {
                p[0].addr(
                    &p[0].narrow(1, 0, 1).reshape(&[3]),
                    &p[0].narrow(0, 1, 1).reshape(&[4]),
                    1.0,
                    0.25,
                )
            }),
        ),
        (
            "bmm",
            Box::new(|p| p[0].reshape(&[2, 2, 3]).bmm(&p[0].reshape(&[2, 3, 2]))),
        ),
        (
            "baddbmm",
            Box::new(|p| {
                p[0].reshape(&[2, 3, 2]).narrow(1, 0, 2).baddbmm(
                    &p[0].reshape(&[2, 2, 3]),
                    &p[0].reshape(&[2, 3, 2]),
                    0.5,
                    1.5,
                )
            }),
        ),
        (
            "addbmm",
            Box::new(|p| {
                p[0].reshape(&[2, 2, 3])
                    .select(0, 0)
                    .narrow(1, 0, 2)
                    .addbmm(
                        &p[0].reshape(&[2, 2, 3]),
                        &p[0].reshape(&[2, 3, 2]),
                        2.0,
                        1.0,
                    )
            }),
        ),
        (
            "solve_lower",
            Box::new(|p| {
                let a = &p[0].narrow(1, 0, 3).tril(0)
                    + &Tensor::eye(3, ferrograd::DType::F64).mul_scalar(3.0);
                a.solve_triangular(&p[0], Triangular::Lower)
            }),
        ),
        (
            "solve_unit_upper",
            Box::new(|p| {
                p[0].narrow(1, 0, 3)
                    .solve_triangular(&p[0], Triangular::UnitUpper)
            }),
        ),
        (
            "solve",
            Box::new(|p| {
                let a =
                    &p[0].narrow(1, 0, 3) + &Tensor::eye(3, ferrograd::DType::F64).mul_scalar(3.0);
                a.solve(&p[0])
            }),
        ),
        (
            "logdet_negative",
            Box::new(|p| {
                let a =
                    &p[0].narrow(1, 0, 3) + &Tensor::eye(3, ferrograd::DType::F64).mul_scalar(-3.0);
                a.logdet()
            }),
        ),
        (
            "cat_stack",
            Box::new(|p| {
                Tensor::stack(
                    &[
                        Tensor::cat(&[p[0].clone(), p[0].square()], 1),
                        Tensor::cat(&[p[0].exp(), p[0].clone()], 1),
                    ],
                    0,
                )
            }),
        ),
    ];
    for (name, f) in cases {
        run(name, vec![(m.clone(), vec![3, 4])], f);
    }
}
