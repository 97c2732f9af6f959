//! Every primitive through `gradcheck` (first derivatives) and `gradgradcheck` (second
//! derivatives) in f64, on broadcast and non-contiguous inputs where the op takes them.

use ferrograd::{
    gradcheck, gradgradcheck, Conv2dParams, DType, Generator, Index, Pool2dParams, Tensor,
};

use crate::common::*;

/// Checks `f` on random parameters of `shapes` drawn from `[low, high)`: the loss is `f`'s
/// output projected on a fixed random tensor, so every output element matters.
#[track_caller]
pub(crate) fn check(
    name: &str,
    shapes: &[&[usize]],
    low: f64,
    high: f64,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    check_orders(name, shapes, low, high, true, f)
}

#[track_caller]
pub(crate) fn check_orders(
    name: &str,
    shapes: &[&[usize]],
    low: f64,
    high: f64,
    second: bool,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    let mut rng = Generator::new(
        name.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let params: Vec<Tensor> = shapes
        .iter()
        .map(|s| rand(&mut rng, s, low, high))
        .collect();
    let out_shape = f(&params).shape().to_vec();
    let proj = rand(&mut rng, &out_shape, -1.0, 1.0);
    let loss = |p: &Vec<Tensor>| (&f(p) * &proj).sum();
    let report = gradcheck(loss, &params, (), 1e-6);
    assert!(report.passed(), "{name}: {report}");
    if second {
        let report = gradgradcheck(loss, &params, (), 1e-5);
        assert!(report.passed(), "{name} (second order): {report}");
    }
}

#[test]
fn unary() {
    type U = fn(&Tensor) -> Tensor;
    let cases: [(&str, U, f64, f64); 21] = [
        ("neg", Tensor::neg, -2.0, 2.0),
        ("abs", Tensor::abs, 0.1, 2.0),
        ("exp", Tensor::exp, -2.0, 2.0),
        ("log", Tensor::log, 0.2, 3.0),
        ("log1p", Tensor::log1p, -0.5, 2.0),
        ("expm1", Tensor::expm1, -2.0, 2.0),
        ("sqrt", Tensor::sqrt, 0.2, 3.0),
        ("rsqrt", Tensor::rsqrt, 0.2, 3.0),
        ("sin", Tensor::sin, -3.0, 3.0),
        ("cos", Tensor::cos, -3.0, 3.0),
        ("tan", Tensor::tan, -1.2, 1.2),
        ("sinh", Tensor::sinh, -2.0, 2.0),
        ("cosh", Tensor::cosh, -2.0, 2.0),
        ("asin", Tensor::asin, -0.9, 0.9),
        ("acos", Tensor::acos, -0.9, 0.9),
        ("atan", Tensor::atan, -3.0, 3.0),
        ("tanh", Tensor::tanh, -2.0, 2.0),
        ("sigmoid", Tensor::sigmoid, -4.0, 4.0),
        ("relu", Tensor::relu, 0.1, 2.0),
        ("reciprocal", Tensor::reciprocal, 0.3, 2.0),
        ("square", Tensor::square, -2.0, 2.0),
    ];
    for (name, op, low, high) in cases {
        check(name, &[&[2, 3]], low, high, |p| op(&p[0]));
        // on a transposed (non-contiguous) view
        check(name, &[&[3, 2]], low, high, |p| op(&p[0].t()));
    }
    // relu and abs on negative inputs too
    check("relu-", &[&[4]], -2.0, -0.1, |p| p[0].relu());
    check("abs-", &[&[4]], -2.0, -0.1, |p| p[0].abs());
}

#[test]
fn flat_ops_pass_no_gradient() {
    // sign, floor, ceil, round are flat almost everywhere: their gradient is zero
    let x = Tensor::from_vec(vec![0.3f64, -1.7, 2.2], &[3]);
    for op in [Tensor::sign, Tensor::floor, Tensor::ceil, Tensor::round] {
        let (g, _) = ferrograd::grad(|x: &Tensor| (op(x) * x).sum()).call(&x, ());
        // d(op(x) * x)/dx = op(x)
        assert_eq!(g.to_f64_vec(), op(&x).to_f64_vec());
    }
}

#[test]
fn scalar_operands_and_clamp() {
    check("add_scalar", &[&[2, 3]], -1.0, 1.0, |p| &p[0] + 2.5);
    check("sub_scalar", &[&[2, 3]], -1.0, 1.0, |p| &p[0] - 2.5);
    check("mul_scalar", &[&[2, 3]], -1.0, 1.0, |p| &p[0] * -1.5);
    check("div_scalar", &[&[2, 3]], -1.0, 1.0, |p| &p[0] / 4.0);
    check("rsub_scalar", &[&[2, 3]], -1.0, 1.0, |p| 2.0 - &p[0]);
    check("rdiv_scalar", &[&[2, 3]], 0.5, 2.0, |p| 3.0 / &p[0]);
    check("pow_scalar", &[&[2, 3]], 0.5, 2.0, |p| p[0].pow_scalar(2.5));
    check("pow_scalar_int", &[&[2, 3]], -2.0, 2.0, |p| {
        p[0].pow_scalar(3.0)
    });
    check("rpow_scalar", &[&[2, 3]], -1.0, 1.0, |p| {
        p[0].rpow_scalar(1.7)
    });
    check("clamp", &[&[3, 4]], -1.0, 1.0, |p| {
        p[0].clamp(Some(-0.45), Some(0.55))
    });
}

#[test]
fn binary_with_broadcasting() {
    type B = fn(&Tensor, &Tensor) -> Tensor;
    let cases: [(&str, B, f64, f64); 8] = [
        ("add", Tensor::add, -1.0, 1.0),
        ("sub", Tensor::sub, -1.0, 1.0),
        ("mul", Tensor::mul, -1.0, 1.0),
        ("div", Tensor::div, 0.5, 2.0),
        ("maximum", Tensor::maximum, -1.0, 1.0),
        ("minimum", Tensor::minimum, -1.0, 1.0),
        ("pow", Tensor::pow, 0.5, 2.0),
        ("atan2", Tensor::atan2, 0.3, 2.0),
    ];
    for (name, op, low, high) in cases {
        check(name, &[&[3, 4], &[3, 4]], low, high, |p| op(&p[0], &p[1]));
        check(name, &[&[3, 4], &[4]], low, high, |p| op(&p[0], &p[1]));
        check(name, &[&[2, 1, 3], &[4, 1]], low, high, |p| {
            op(&p[0], &p[1])
        });
        check(name, &[&[4, 3], &[3, 1]], low, high, |p| {
            op(&p[0].t(), &p[1])
        });
    }
}

#[test]
fn ties_of_maximum_share_the_gradient() {
    // max(x, y) at x == y: each gets half
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let (g, _) = ferrograd::grad(|p: &Vec<Tensor>| p[0].maximum(&p[1]).sum())
        .call(&vec![x.clone(), x.clone()], ());
    assert_eq!(g[0].to_f64_vec(), vec![0.5, 0.5]);
    assert_eq!(g[1].to_f64_vec(), vec![0.5, 0.5]);
}

#[test]
fn where_and_masked_fill() {
    let mut rng = Generator::new(3);
    let cond = Tensor::new(rng.bernoulli(&[3, 4], 0.5, DType::Bool));
    check("where", &[&[3, 4], &[4]], -1.0, 1.0, |p| {
        Tensor::where_cond(&cond, &p[0], &p[1])
    });
    check("masked_fill", &[&[3, 4]], -1.0, 1.0, |p| {
        p[0].masked_fill(&cond, 2.0)
    });
}

#[test]
fn reductions() {
    for keepdim in [false, true] {
        check("sum", &[&[2, 3, 4]], -1.0, 1.0, |p| {
            p[0].sum_dim([0, 2], keepdim)
        });
        check("mean", &[&[2, 3, 4]], -1.0, 1.0, |p| {
            p[0].mean_dim(1, keepdim)
        });
        check("prod", &[&[3, 4]], 0.5, 1.5, |p| p[0].prod_dim(1, keepdim));
        check("amax", &[&[3, 4]], -1.0, 1.0, |p| p[0].amax_dim(0, keepdim));
        check("amin", &[&[3, 4]], -1.0, 1.0, |p| {
            p[0].amin_dim(-1, keepdim)
        });
        check("logsumexp", &[&[3, 4]], -2.0, 2.0, |p| {
            p[0].logsumexp_dim(1, keepdim)
        });
        check("var", &[&[3, 4]], -1.0, 1.0, |p| {
            p[0].var_dim(1, 1, keepdim)
        });
        check("std", &[&[3, 4]], -1.0, 1.0, |p| {
            p[0].std_dim(0, 0, keepdim)
        });
        for norm in [1.0, 2.0, 3.0, 0.5, -1.5, f64::INFINITY, f64::NEG_INFINITY] {
            check("norm", &[&[3, 4]], 0.2, 1.0, |p| {
                p[0].norm_dim(norm, 1, keepdim)
            });
        }
        check("max_dim", &[&[3, 4]], -1.0, 1.0, |p| {
            p[0].max_dim(1, keepdim).0
        });
        check("min_dim", &[&[3, 4]], -1.0, 1.0, |p| {
            p[0].min_dim(0, keepdim).0
        });
    }
    check("sum all", &[&[4, 3]], -1.0, 1.0, |p| p[0].t().sum());
    check("prod all", &[&[5]], 0.5, 1.5, |p| p[0].prod());
    check("cumsum", &[&[3, 4]], -1.0, 1.0, |p| p[0].cumsum(1));
    check("cumsum0", &[&[4, 3]], -1.0, 1.0, |p| p[0].t().cumsum(0));
    check("cumprod", &[&[3, 4]], -1.5, 1.5, |p| p[0].cumprod(1));
    check("cumprod0", &[&[4, 3]], -1.5, 1.5, |p| p[0].t().cumprod(0));
    // at inputs with exact zeros, one and two, where a rule dividing by x would fail
    for x in [
        vec![0.7, -1.2, 0.0, 1.3, 0.4],
        vec![0.7, 0.0, -0.6, 0.0, 1.1],
    ] {
        let params = vec![Tensor::from_vec(x.clone(), &[5])];
        let proj = Tensor::from_vec(vec![0.3, -0.8, 0.5, 0.9, -0.4], &[5]);
        let loss = |p: &Vec<Tensor>| (&p[0].cumprod(0) * &proj).sum();
        let report = gradcheck(loss, &params, (), 1e-6);
        assert!(report.passed(), "cumprod at {x:?}: {report}");
        let report = gradgradcheck(loss, &params, (), 1e-5);
        assert!(report.passed(), "cumprod at {x:?} (second order): {report}");
    }
}

/// A variance with no degrees of freedom left (`correction` at or above the count) is NaN
/// (0/0) or infinite, as the array layer's and PyTorch's are: the tensor's divided by
/// `n - correction`, giving -0 over an empty dim and a negative variance past it.
#[test]
fn variance_without_degrees_of_freedom_is_the_arrays() {
    let mut rng = Generator::new(5);
    for shape in [&[1usize, 2][..], &[3, 1], &[3, 0], &[2, 3]] {
        let x = Tensor::new(rng.normal(shape, 0.0, 1.0, DType::F64));
        for correction in 0..4 {
            let got = x.var_dim(1, correction, false).to_f64_vec();
            let want = x.value().var_dim(1, correction, false).to_f64_vec();
            let same = |a: f64, b: f64| {
                a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-12 * b.abs()
            };
            assert!(
                got.iter().zip(&want).all(|(&a, &b)| same(a, b)),
                "{shape:?}, correction {correction}: {got:?}, the array's {want:?}"
            );
            assert!(got.iter().all(|v| v.is_nan() || *v >= 0.0), "{got:?}");
        }
    }
}

#[test]
fn product_gradient_is_exact_with_zeros() {
    // d(abc)/da = bc, even when a or b is zero; with two zeros every gradient is zero.
    let f = |x: &Tensor| x.prod();
    let (g, _) = ferrograd::grad(f).call(&Tensor::from_vec(vec![0.0f64, 2.0, 3.0], &[3]), ());
    assert_eq!(g.to_f64_vec(), vec![6.0, 0.0, 0.0]);
    let (g, _) = ferrograd::grad(f).call(&Tensor::from_vec(vec![0.0f64, 0.0, 3.0], &[3]), ());
    assert_eq!(g.to_f64_vec(), vec![0.0, 0.0, 0.0]);
    let (g, _) = ferrograd::grad(f).call(&Tensor::from_vec(vec![4.0f64, 2.0, 3.0], &[3]), ());
    assert_eq!(g.to_f64_vec(), vec![6.0, 12.0, 8.0]);
}

#[test]
fn product_hessian_is_exact_with_zeros() {
    // H_ij = prod of the entries other than i and j (0 on the diagonal), at inputs with one
    // and with two zeros: the gradient rule must be right as a function, not only as values
    let f = |x: &Tensor| x.prod();
    for (x, want) in [
        (vec![3.0, 0.0], vec![0.0, 1.0, 1.0, 0.0]),
        (vec![0.0, 0.0], vec![0.0, 1.0, 1.0, 0.0]),
        (
            vec![2.0, 0.0, 5.0],
            vec![0.0, 5.0, 0.0, 5.0, 0.0, 2.0, 0.0, 2.0, 0.0],
        ),
        (
            vec![2.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 2.0, 0.0],
        ),
        (vec![0.0, 0.0, 0.0], vec![0.0; 9]),
    ] {
        let n = x.len();
        let h = ferrograd::hessian(f, &Tensor::from_vec(x.clone(), &[n]));
        assert_eq!(h.to_f64_vec(), want, "Hessian of prod at {x:?}");
    }
    // and against finite differences, along a reduced dim with zeros in some rows
    let x = Tensor::from_vec(
        vec![
            0.0f64, 1.5, -2.0, 0.0, 0.0, 0.7, 1.2, -0.4, 2.0, 0.0, 0.0, 0.0,
        ],
        &[4, 3],
    );
    let proj = Tensor::from_vec(vec![0.3f64, -1.1, 0.8, 1.7], &[4]);
    let g = |x: &Tensor| (&x.prod_dim(1, false) * &proj).sum();
    let report = gradcheck(g, &x, (), 1e-6);
    assert!(report.passed(), "{report}");
    let report = gradgradcheck(g, &x, (), 1e-5);
    assert!(report.passed(), "second order: {report}");
}

#[test]
fn amax_ties_share_and_max_dim_picks_the_first() {
    let x = Tensor::from_vec(vec![1.0f64, 3.0, 3.0], &[3]);
    let (g, _) = ferrograd::grad(|x: &Tensor| x.amax()).call(&x, ());
    assert_eq!(g.to_f64_vec(), vec![0.0, 0.5, 0.5]);
    let (g, _) = ferrograd::grad(|x: &Tensor| x.max_dim(0, false).0).call(&x, ());
    assert_eq!(g.to_f64_vec(), vec![0.0, 1.0, 0.0]);
}

#[test]
fn matrix_products() {
    check("mm", &[&[3, 4], &[4, 2]], -1.0, 1.0, |p| p[0].matmul(&p[1]));
    check("mm transposed", &[&[4, 3], &[2, 4]], -1.0, 1.0, |p| {
        p[0].t().matmul(&p[1].t())
    });
    check("mv", &[&[3, 4], &[4]], -1.0, 1.0, |p| p[0].mv(&p[1]));
    check("vm", &[&[3], &[3, 4]], -1.0, 1.0, |p| p[0].matmul(&p[1]));
    check("dot", &[&[5], &[5]], -1.0, 1.0, |p| p[0].dot(&p[1]));
    check("outer", &[&[3], &[2]], -1.0, 1.0, |p| p[0].outer(&p[1]));
    check("bmm", &[&[2, 3, 4], &[2, 4, 2]], -1.0, 1.0, |p| {
        p[0].bmm(&p[1])
    });
    check(
        "batched broadcast",
        &[&[2, 1, 3, 4], &[3, 4, 2]],
        -1.0,
        1.0,
        |p| p[0].matmul(&p[1]),
    );
    check("batched @ matrix", &[&[2, 3, 4], &[4, 2]], -1.0, 1.0, |p| {
        p[0].matmul(&p[1])
    });
    check("batched @ vector", &[&[2, 3, 4], &[4]], -1.0, 1.0, |p| {
        p[0].matmul(&p[1])
    });
    check(
        "batched @ transposed",
        &[&[2, 3, 4], &[2, 4]],
        -1.0,
        1.0,
        |p| p[0].matmul(&p[1].t()),
    );
    check(
        "transposed batch @ matrix",
        &[&[2, 4, 3], &[4, 2]],
        -1.0,
        1.0,
        |p| p[0].transpose(1, 2).matmul(&p[1]),
    );
    // A weight used transposed (`x Wᵀ`) gets its gradient back in its own, contiguous,
    // layout: an optimizer step then runs on plain memory.
    let mut rng = ferrograd::Generator::new(3);
    let (x, w) = (
        rand(&mut rng, &[5, 4], -1.0, 1.0),
        rand(&mut rng, &[3, 4], -1.0, 1.0),
    );
    let (g, _) =
        ferrograd::grad(|w: &Tensor, x: &Tensor| x.matmul(&w.t()).square().sum()).call(&w, (&x,));
    assert!(g.value().is_contiguous());
    // `contiguous` copies a transposed tensor (concrete or traced) into row-major memory.
    assert!(w.t().contiguous().value().is_contiguous());
    let (_, traced) = ferrograd::grad(|w: &Tensor| {
        let c = w.t().contiguous();
        (c.sum(), c.value().is_contiguous() as i64 as f64)
    })
    .call(&w, ());
    assert_eq!(traced.1, 1.0);
    let want = (&x.matmul(&w.t()) * 2.0).t().matmul(&x);
    assert_close(&g, &want.to_f64_vec(), 1e-12);
}

#[test]
fn views_and_shapes() {
    check("transpose", &[&[2, 3, 4]], -1.0, 1.0, |p| {
        p[0].transpose(0, 2)
    });
    check("permute", &[&[2, 3, 4]], -1.0, 1.0, |p| {
        p[0].permute(&[1, 2, 0])
    });
    check("reshape", &[&[2, 6]], -1.0, 1.0, |p| p[0].reshape(&[3, 4]));
    check("reshape strided", &[&[6, 2]], -1.0, 1.0, |p| {
        p[0].t().reshape(&[3, 4])
    });
    check("expand", &[&[3, 1]], -1.0, 1.0, |p| p[0].expand(&[2, 3, 4]));
    check("narrow", &[&[4, 5]], -1.0, 1.0, |p| p[0].narrow(1, 1, 3));
    check("select", &[&[4, 5]], -1.0, 1.0, |p| p[0].select(0, 2));
    check("squeeze/unsqueeze", &[&[3, 1, 2]], -1.0, 1.0, |p| {
        p[0].squeeze().unsqueeze(0).flatten(0, 1)
    });
    check("flip", &[&[3, 4]], -1.0, 1.0, |p| p[0].flip([0, 1]));
    check("diagonal", &[&[3, 4]], -1.0, 1.0, |p| p[0].diagonal(1));
    check("diagonal below", &[&[4, 3]], -1.0, 1.0, |p| {
        p[0].diagonal(-1)
    });
    check("diag embed", &[&[3]], -1.0, 1.0, |p| p[0].diag(1));
    check("tril", &[&[3, 3]], -1.0, 1.0, |p| p[0].tril(0));
    check("triu", &[&[2, 3, 3]], -1.0, 1.0, |p| p[0].triu(1));
    check("cat", &[&[2, 3], &[1, 3], &[4, 3]], -1.0, 1.0, |p| {
        Tensor::cat(p, 0)
    });
    check("cat dim 1", &[&[2, 3], &[2, 1]], -1.0, 1.0, |p| {
        Tensor::cat(p, 1)
    });
    check("stack", &[&[2, 3], &[2, 3]], -1.0, 1.0, |p| {
        Tensor::stack(p, 1)
    });
    check("split", &[&[5, 2]], -1.0, 1.0, |p| {
        let parts = p[0].split(2, 0);
        &parts[0].sum() * &parts[2].sum() + &parts[1]
    });
    check("chunk", &[&[2, 6]], -1.0, 1.0, |p| {
        let c = p[0].chunk(3, 1);
        &c[0] * &c[2]
    });
    check("repeat", &[&[2, 3]], -1.0, 1.0, |p| p[0].repeat(&[2, 1, 2]));
    check("contiguous", &[&[3, 2]], -1.0, 1.0, |p| {
        p[0].t().contiguous()
    });
}

fn idx(v: &[i64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()])
}

#[test]
fn indexing() {
    check("index_select", &[&[4, 3]], -1.0, 1.0, |p| {
        p[0].index_select(0, &idx(&[3, 0, 3]))
    });
    check("index_select dim 1", &[&[4, 3]], -1.0, 1.0, |p| {
        p[0].index_select(1, &idx(&[2, 2]))
    });
    check("index_add", &[&[4, 3], &[3, 3]], -1.0, 1.0, |p| {
        p[0].index_add(0, &idx(&[1, 1, 3]), &p[1])
    });
    let gi = Tensor::from_vec(vec![0i64, 2, 2, 1, 0, 0], &[2, 3]);
    check("gather", &[&[2, 4]], -1.0, 1.0, |p| p[0].gather(1, &gi));
    check("scatter_add", &[&[2, 4], &[2, 3]], -1.0, 1.0, |p| {
        p[0].scatter_add(1, &gi, &p[1])
    });
    check("scatter", &[&[2, 4], &[2, 3]], -1.0, 1.0, |p| {
        p[0].scatter(1, &gi, &p[1])
    });
    check("scatter big src", &[&[2, 4], &[2, 5]], -1.0, 1.0, |p| {
        p[0].scatter_add(1, &gi, &p[1])
    });
}

#[test]
fn assignment_in_every_form() {
    // x[k] = v: the gradient of x is g with g[k] = 0, the gradient of v is g[k]
    check("put single", &[&[3, 2], &[2]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::Single(1), &p[1]) * 2.0
    });
    check("put single broadcast", &[&[3, 2], &[]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::Single(-1), &p[1]).square()
    });
    check("put list", &[&[4, 2], &[2, 2]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::List(vec![0, 3]), &p[1]).exp()
    });
    check("put list repeated", &[&[4, 2], &[3, 2]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::List(vec![1, 2, 1]), &p[1])
    });
    check("put tensor", &[&[4, 2], &[1, 2]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::Tensor(idx(&[2, 0]).value().clone()), &p[1])
    });
    let mask = Tensor::from_vec(vec![true, false, true, true, false, false], &[3, 2]);
    check("put mask scalar", &[&[3, 2], &[]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::Mask(mask.value().clone()), &p[1])
            .square()
    });
    check("put mask values", &[&[3, 2], &[3]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::Mask(mask.value().clone()), &p[1])
            .square()
    });
    let rows = ferrograd::Array::from_vec(vec![false, true, true], &[3]);
    check("put row mask", &[&[3, 2], &[2]], -1.0, 1.0, |p| {
        p[0].index_put(&Index::Mask(rows.clone()), &p[1]).square()
    });
    check("put add", &[&[4, 2], &[3, 2]], -1.0, 1.0, |p| {
        p[0].index_put_add(&Index::List(vec![1, 2, 1]), &p[1])
            .square()
    });
    check("read", &[&[4, 2]], -1.0, 1.0, |p| {
        &p[0].index(vec![3, 1]) * &p[0].index(0i64)
    });
    check("fill", &[&[4, 2]], -1.0, 1.0, |p| {
        p[0].index_fill(&Index::Single(2), 7.0).square()
    });
}

#[test]
fn convolution_pooling_softmax() {
    let p1 = Conv2dParams::default();
    let p2 = Conv2dParams {
        stride: (2, 1),
        padding: (1, 1),
        dilation: (1, 2),
        groups: 2,
    };
    check(
        "conv2d",
        &[&[2, 2, 5, 4], &[3, 2, 3, 2], &[3]],
        -1.0,
        1.0,
        |p| p[0].conv2d(&p[1], Some(&p[2]), p1),
    );
    check(
        "conv2d strided grouped",
        &[&[1, 4, 5, 6], &[2, 2, 2, 3]],
        -1.0,
        1.0,
        |p| p[0].conv2d(&p[1], None, p2),
    );
    let q = Pool2dParams {
        kernel: (2, 3),
        stride: (2, 2),
        padding: (1, 1),
    };
    check("max_pool2d", &[&[2, 2, 5, 6]], -1.0, 1.0, |p| {
        p[0].max_pool2d(q).0
    });
    check("avg_pool2d", &[&[2, 2, 5, 6]], -1.0, 1.0, |p| {
        p[0].avg_pool2d(q, true)
    });
    check("avg_pool2d no pad", &[&[1, 2, 4, 4]], -1.0, 1.0, |p| {
        p[0].avg_pool2d(q, false)
    });
    for d in [0i64, 1, -1] {
        check("softmax", &[&[3, 4, 2]], -2.0, 2.0, |p| p[0].softmax(d));
        check("log_softmax", &[&[3, 4, 2]], -2.0, 2.0, |p| {
            p[0].log_softmax(d)
        });
    }
    check("log_softmax strided", &[&[4, 3]], -2.0, 2.0, |p| {
        p[0].t().log_softmax(1)
    });
    // causal attention's weights, square, wide and tall, and of a transposed view
    for shape in [[2usize, 3, 3], [2, 2, 4], [1, 4, 2]] {
        check("causal_softmax", &[&shape], -2.0, 2.0, |p| {
            p[0].attention_softmax(0.7, true)
        });
    }
    check("causal_softmax strided", &[&[3, 4]], -2.0, 2.0, |p| {
        p[0].t().attention_softmax(1.3, true)
    });
    check("attention_softmax", &[&[2, 3, 4]], -2.0, 2.0, |p| {
        p[0].attention_softmax(0.7, false)
    });
}

#[test]
fn casts_keep_the_gradient_between_floats() {
    let f = |x: &Tensor| x.to_dtype(DType::F32).square().sum().to_dtype(DType::F64);
    let (g, _) = ferrograd::grad(f).call(&Tensor::from_vec(vec![1.5f64, -2.0], &[2]), ());
    assert_eq!(g.dtype(), DType::F64);
    assert_close(&g, &[3.0, -4.0], 1e-6);
}

#[test]
fn ops_are_equal_when_they_compute_the_same_function() {
    use ferrograd::{Array, CustomOp, IndexOp, NnOp, Op, ScalarOp, ShapeOp, Unary};
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::sync::Arc;

    fn hash(op: &Op) -> u64 {
        let mut h = DefaultHasher::new();
        op.hash(&mut h);
        h.finish()
    }
    #[track_caller]
    fn same(a: Op, b: Op) {
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b), "{a:?}");
    }
    #[track_caller]
    fn differ(a: Op, b: Op) {
        assert_ne!(a, b);
    }
    #[derive(Debug)]
    struct Twice;
    impl CustomOp for Twice {
        fn name(&self) -> &str {
            "twice"
        }
        fn forward(&self, x: &[&Array]) -> Array {
            x[0].mul_scalar(2.0)
        }
        fn backward(
            &self,
            _: &[Tensor],
            _: &Tensor,
            g: &Tensor,
            _: &[bool],
        ) -> Vec<Option<Tensor>> {
            vec![Some(g * 2.0)]
        }
    }

    same(
        Op::Scalar(ScalarOp::Mul, 2.0),
        Op::Scalar(ScalarOp::Mul, 2.0),
    );
    differ(
        Op::Scalar(ScalarOp::Mul, 2.0),
        Op::Scalar(ScalarOp::Mul, 2.5),
    );
    differ(
        Op::Scalar(ScalarOp::Mul, 2.0),
        Op::Scalar(ScalarOp::Add, 2.0),
    );
    // numbers by bits: one NaN is itself, and the two zeros differ (x / 0.0 and x / -0.0)
    same(
        Op::Scalar(ScalarOp::Div, f64::NAN),
        Op::Scalar(ScalarOp::Div, f64::NAN),
    );
    differ(
        Op::Scalar(ScalarOp::Div, 0.0),
        Op::Scalar(ScalarOp::Div, -0.0),
    );
    same(
        Op::Clamp {
            min: Some(0.0),
            max: None,
        },
        Op::Clamp {
            min: Some(0.0),
            max: None,
        },
    );
    differ(
        Op::Clamp {
            min: Some(0.0),
            max: None,
        },
        Op::Clamp {
            min: None,
            max: Some(0.0),
        },
    );
    same(Op::Unary(Unary::Exp), Op::Unary(Unary::Exp));
    differ(Op::Unary(Unary::Exp), Op::Unary(Unary::Log));
    same(
        Op::Shape(ShapeOp::Permute(vec![1, 0])),
        Op::Shape(ShapeOp::Permute(vec![1, 0])),
    );
    differ(Op::Shape(ShapeOp::Cat(0)), Op::Shape(ShapeOp::Cat(1)));
    differ(Op::Nn(NnOp::Softmax(1)), Op::Nn(NnOp::LogSoftmax(1)));
    // an index array by its elements, not its storage
    let mask = |v: Vec<bool>| Index::Mask(Array::from_vec(v, &[3]));
    same(
        Op::Index(IndexOp::IndexPut(mask(vec![true, false, true]), false)),
        Op::Index(IndexOp::IndexPut(mask(vec![true, false, true]), false)),
    );
    differ(
        Op::Index(IndexOp::IndexPut(mask(vec![true, false, true]), false)),
        Op::Index(IndexOp::IndexPut(mask(vec![true, true, true]), false)),
    );
    differ(
        Op::Index(IndexOp::IndexPut(mask(vec![true, false, true]), false)),
        Op::Index(IndexOp::IndexPut(mask(vec![true, false, true]), true)),
    );
    // a user primitive by identity: two instances may hold different state
    let twice: Arc<dyn CustomOp> = Arc::new(Twice);
    same(Op::Custom(twice.clone()), Op::Custom(twice));
    differ(Op::Custom(Arc::new(Twice)), Op::Custom(Arc::new(Twice)));
    differ(Op::Leaf, Op::Matmul);
}

#[test]
fn predicates_and_lerp() {
    let x = Tensor::from_vec(
        vec![1.0f64, f64::NAN, f64::INFINITY, -f64::INFINITY, 0.0, -2.5],
        &[6],
    );
    assert_eq!(
        x.isnan().to_vec::<bool>(),
        vec![false, true, false, false, false, false]
    );
    assert_eq!(
        x.isinf().to_vec::<bool>(),
        vec![false, false, true, true, false, false]
    );
    assert_eq!(
        x.isfinite().to_vec::<bool>(),
        vec![true, false, false, false, true, true]
    );
    let i = Tensor::from_vec(vec![0i64, 3, -1], &[3]);
    assert_eq!(i.isnan().to_vec::<bool>(), vec![false; 3]);
    assert_eq!(i.isinf().to_vec::<bool>(), vec![false; 3]);
    // all/any over everything, along a dim, and on bool tensors
    let m = Tensor::from_vec(vec![1.0f64, 0.0, 2.0, 3.0, 0.0, 0.0], &[3, 2]);
    assert_eq!(
        (m.all().item::<bool>(), m.any().item::<bool>()),
        (false, true)
    );
    assert_eq!(
        m.all_dim(1, false).to_vec::<bool>(),
        vec![false, true, false]
    );
    assert_eq!(
        m.any_dim(1, false).to_vec::<bool>(),
        vec![true, true, false]
    );
    assert_eq!(m.any_dim(0, true).shape(), &[1, 2]);
    let b = m.gt_scalar(-1.0);
    assert!(b.all().item::<bool>());
    assert!(!Tensor::zeros(&[0], DType::F64).any().item::<bool>());
    assert!(Tensor::zeros(&[0], DType::F64).all().item::<bool>());
    // lerp = a + w (b - a), differentiable in all three
    check("lerp", &[&[2, 3], &[2, 3], &[3]], -1.0, 1.0, |p| {
        p[0].lerp(&p[1], &p[2])
    });
    check("lerp_scalar", &[&[2, 3], &[3]], -1.0, 1.0, |p| {
        p[0].lerp_scalar(&p[1], 0.25)
    });
    // made of recorded ops: a compiled predicate follows the data with no new capture
    let has_nan = ferrograd::compile(|x: &Tensor| x.isnan().any());
    let clean = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    assert!(!has_nan.call(&clean, ()).item::<bool>());
    assert!(has_nan.call(&x.narrow(0, 0, 2), ()).item::<bool>());
    assert!(!has_nan.call(&clean, ()).item::<bool>());
    let s = has_nan.stats();
    assert_eq!((s.captures, s.hits), (1, 2), "{s:?}");
}

#[test]
fn roll_and_unbind() {
    let x = Tensor::from_vec((0..6).map(|v| v as f64).collect(), &[2, 3]);
    assert_eq!(
        x.roll(1, 1).to_vec::<f64>(),
        vec![2.0, 0.0, 1.0, 5.0, 3.0, 4.0]
    );
    assert_eq!(x.roll(-4, 1).to_vec::<f64>(), x.roll(2, 1).to_vec::<f64>());
    assert_eq!(x.roll(3, 1).to_vec::<f64>(), x.to_vec::<f64>());
    assert_eq!(
        x.roll(1, 0).to_vec::<f64>(),
        vec![3.0, 4.0, 5.0, 0.0, 1.0, 2.0]
    );
    let rows = x.unbind(0);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].to_vec::<f64>(), vec![3.0, 4.0, 5.0]);
    let cols = x.unbind(-1);
    assert_eq!(cols[2].to_vec::<f64>(), vec![2.0, 5.0]);
    // references join without clones, and the gradient reaches each part
    assert_eq!(
        Tensor::stack(&cols.iter().collect::<Vec<_>>(), 1).to_vec::<f64>(),
        x.to_vec::<f64>()
    );
    check("roll", &[&[3, 4]], -1.0, 1.0, |p| p[0].roll(-3, 1));
    check("unbind", &[&[3, 2]], -1.0, 1.0, |p| {
        let parts = p[0].unbind(0);
        Tensor::cat(&[&parts[2], &parts[0]], 0)
    });
}

#[test]
fn erf_and_the_activations() {
    type U = fn(&Tensor) -> Tensor;
    let cases: [(&str, U, f64, f64); 10] = [
        ("erf", Tensor::erf, -2.0, 2.0),
        ("gelu", Tensor::gelu, -3.0, 3.0),
        ("gelu_tanh", Tensor::gelu_tanh, -3.0, 3.0),
        ("silu", Tensor::silu, -3.0, 3.0),
        ("elu", |x| x.elu(0.7), -2.0, 2.0),
        ("selu", Tensor::selu, -2.0, 2.0),
        ("leaky_relu", |x| x.leaky_relu(0.1), -2.0, 2.0),
        ("softplus", |x| x.softplus(1.0, 20.0), -3.0, 3.0),
        ("softplus_beta", |x| x.softplus(2.5, 4.0), -3.0, 3.0),
        ("logsigmoid", Tensor::logsigmoid, -3.0, 3.0),
    ];
    for (name, op, low, high) in cases {
        check(name, &[&[2, 3]], low, high, |p| op(&p[0]));
        check(name, &[&[3, 2]], low, high, |p| op(&p[0].t()));
    }
    // GELU's gradient is a primitive of its own: in both its inputs, to second order (a
    // third derivative of GELU), the gradient broadcast
    check("gelu_backward", &[&[2, 3], &[3]], -3.0, 3.0, |p| {
        p[0].gelu_backward(&p[1])
    });
    // values against the textbook formulas, in f64
    let xs = [-4.0, -1.3, -0.2, 0.0, 0.4, 1.7, 5.0];
    let x = Tensor::from_vec(xs.to_vec(), &[7]);
    type R = fn(f64) -> f64;
    let want: [(&str, Tensor, R); 6] = [
        ("gelu_tanh", x.gelu_tanh(), |v| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
        }),
        ("silu", x.silu(), |v| v / (1.0 + (-v).exp())),
        ("elu", x.elu(1.0), |v| if v > 0.0 { v } else { v.exp_m1() }),
        ("leaky_relu", x.leaky_relu(0.01), |v| {
            if v > 0.0 {
                v
            } else {
                0.01 * v
            }
        }),
        ("softplus", x.softplus(1.0, 20.0), |v| v.exp().ln_1p()),
        ("logsigmoid", x.logsigmoid(), |v| {
            (1.0 / (1.0 + (-v).exp())).ln()
        }),
    ];
    for (name, got, f) in want {
        for (g, &v) in got.to_vec::<f64>().iter().zip(&xs) {
            assert!((g - f(v)).abs() < 1e-14, "{name}({v}) = {g}, want {}", f(v));
        }
    }
    // no overflow at the extremes, and PyTorch's gradients at the kinks
    let big = Tensor::from_vec(vec![-1000.0f64, 1000.0], &[2]);
    for y in [
        big.softplus(1.0, 20.0),
        big.logsigmoid(),
        big.elu(1.0),
        big.selu(),
    ] {
        assert!(y.to_vec::<f64>().iter().all(|v| v.is_finite()), "{y}");
    }
    let zero = Tensor::from_vec(vec![0.0f64], &[1]);
    let at_zero = |f: fn(&Tensor) -> Tensor| {
        ferrograd::grad(move |x: &Tensor| f(x).sum())
            .call(&zero, ())
            .0
            .item::<f64>()
    };
    assert_eq!(at_zero(|x| x.elu(0.5)), 0.5);
    assert_eq!(at_zero(|x| x.leaky_relu(0.1)), 0.1);
    assert_eq!(at_zero(|x| x.softplus(1.0, 20.0)), 0.5);
    assert_eq!(at_zero(Tensor::silu), 0.5);
    let (g, _) = ferrograd::grad(|x: &Tensor| x.softplus(1.0, 20.0).sum()).call(&big, ());
    assert_eq!(g.to_vec::<f64>(), vec![0.0, 1.0]);
}

#[test]
fn norms_follow_pytorch_at_zero_and_for_every_p() {
    let x = Tensor::from_vec(vec![3.0f64, -4.0, 0.0, 0.0, 1.0, -2.0], &[3, 2]);
    let rows = |p: f64| x.norm_dim(p, 1, false).to_vec::<f64>();
    assert_eq!(rows(2.0), vec![5.0, 0.0, 5f64.sqrt()]);
    assert_eq!(rows(f64::NEG_INFINITY), vec![3.0, 0.0, 1.0]);
    assert_eq!(rows(0.0), vec![2.0, 0.0, 2.0]);
    // negative p: (Σ|x|^p)^(1/p); a zero entry gives 0
    let want = (3f64.powf(-1.5) + 4f64.powf(-1.5)).powf(-1.0 / 1.5);
    assert!((rows(-1.5)[0] - want).abs() < 1e-14 && rows(-1.5)[1] == 0.0);
    // an all-zero row has a zero gradient (not NaN), at first and second order (for p < 1
    // the derivative of |x|^p is itself infinite at 0)
    for p in [2.0, 3.0, 1.5, 0.5] {
        let f = move |x: &Tensor| x.norm_dim(p, 1, false).sum();
        let (g, _) = ferrograd::grad(f).call(&x, ());
        let g = g.to_vec::<f64>();
        assert_eq!(&g[2..4], &[0.0, 0.0], "p = {p}");
        assert!(g.iter().all(|v| v.is_finite()), "p = {p}: {g:?}");
        if p >= 2.0 {
            // (|x|^p)'' is infinite at 0 for p < 2
            let h = ferrograd::hessian(f, &x);
            assert!(h.to_vec::<f64>().iter().all(|v| v.is_finite()), "p = {p}");
        }
    }
}

/// Where a formula's gradient is `0 · ∞` (NaN) at a point, the gradient is PyTorch's: 0 for
/// a standard deviation of equal values, a `p < 1` norm's zero entry, `atan2` at the origin,
/// `a^b` in `a` where `b = 0` and in `b` where `a = 0 ≤ b`, and `0^x` for `x ≥ 0` (each NaN
/// before, found against PyTorch).
#[test]
fn gradients_at_the_kinks_follow_pytorch() {
    let grad_of = |f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor| -> Vec<f64> {
        let (g, _) = ferrograd::grad(|x: &Tensor| f(x).sum()).call(x, ());
        g.to_vec::<f64>()
    };
    // std: (x - mean) / ((n - c) std) on a spread row, 0 on a row of equal values
    let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0], &[2, 2]);
    let g = grad_of(&|x| x.std_dim(1, 1, false), &x);
    let s = 0.5f64.sqrt();
    assert!(
        (g[0] + s).abs() < 1e-15 && (g[1] - s).abs() < 1e-15,
        "{g:?}"
    );
    assert_eq!(g[2..], [0.0, 0.0]);
    let flat = Tensor::from_vec(vec![2.0f64; 3], &[3]);
    assert_eq!(grad_of(&|x| x.std(0), &flat), [0.0; 3]);
    assert_eq!(grad_of(&|x| x.std_dim(0, 1, true), &flat), [0.0; 3]);
    // a p = 1/2 norm, (Σ √|x|)²: Σ/√|x| sign x, 0 at a zero entry
    let x = Tensor::from_vec(vec![0.0f64, 2.0, 1.0, -4.0], &[2, 2]);
    let g = grad_of(&|x| x.norm_dim(0.5, 1, false), &x);
    let want = [0.0, 1.0, 3.0, -1.5];
    assert!(
        g.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-14),
        "{g:?}"
    );
    // atan2(a, b): (b, -a) / (a² + b²), 0 at the origin
    let pairs = |a: Vec<f64>, b: Vec<f64>| {
        let n = a.len();
        vec![Tensor::from_vec(a, &[n]), Tensor::from_vec(b, &[n])]
    };
    let both = |f: fn(&Tensor, &Tensor) -> Tensor, p: &Vec<Tensor>| {
        let (g, _) = ferrograd::grad(move |p: &Vec<Tensor>| f(&p[0], &p[1]).sum()).call(p, ());
        (g[0].to_vec::<f64>(), g[1].to_vec::<f64>())
    };
    let p = pairs(vec![0.0, -0.0, 1.0], vec![0.0, 0.0, 0.0]);
    assert_eq!(
        both(Tensor::atan2, &p),
        (vec![0.0, 0.0, 0.0], vec![0.0, 0.0, -1.0])
    );
    // a^b: b a^(b-1) in a (0 where b = 0), a^b ln a in b (0 where a = 0 ≤ b; -∞ where
    // a = 0 > b)
    let p = pairs(vec![0.0, 0.0, 0.0, 2.0], vec![0.0, 2.0, -1.0, 0.0]);
    let (ga, gb) = both(Tensor::pow, &p);
    assert_eq!(ga[..2], [0.0, 0.0]);
    assert_eq!(ga[3], 0.0);
    assert_eq!(gb, [0.0, 0.0, f64::NEG_INFINITY, 2f64.ln()]);
    // 0^x: flat for x ≥ 0 (0 at x > 0, 1 at x = 0); ∞ · ln 0 below
    let x = Tensor::from_vec(vec![0.0f64, 1.5, -1.0], &[3]);
    assert_eq!(
        grad_of(&|x| x.rpow_scalar(0.0), &x),
        [0.0, 0.0, f64::NEG_INFINITY]
    );
}

#[test]
fn repeat_interleave_meshgrid_and_nan_reductions() {
    check("repeat_interleave", &[&[2, 3]], -1.0, 1.0, |p| {
        p[0].repeat_interleave(3, 1)
    });
    check("repeat_interleave0", &[&[3, 2]], -1.0, 1.0, |p| {
        p[0].t().repeat_interleave(2, 0)
    });
    check("meshgrid", &[&[2], &[3]], -1.0, 1.0, |p| {
        let g = Tensor::meshgrid(&[&p[0], &p[1]]);
        &g[0] * &g[1]
    });
    // values against index arithmetic
    let x = Tensor::from_vec((0..6).map(f64::from).collect(), &[2, 3]);
    let y = x.repeat_interleave(2, 0).to_vec::<f64>();
    for (k, v) in y.iter().enumerate() {
        let (i, j) = (k / 3, k % 3);
        assert_eq!(*v, x.to_vec::<f64>()[(i / 2) * 3 + j]);
    }
    // NaN entries are skipped, and get no gradient
    let x = Tensor::from_vec(vec![1.0f64, f64::NAN, 3.0, f64::NAN], &[2, 2]);
    assert_eq!(x.nansum().item::<f64>(), 4.0);
    assert_eq!(x.nanmean_dim(0, false).to_vec::<f64>()[0], 2.0);
    assert!(x.nanmean_dim(0, false).to_vec::<f64>()[1].is_nan()); // no entries: 0 / 0
    let (g, _) = ferrograd::grad(|x: &Tensor| x.nansum()).call(&x, ());
    assert_eq!(g.to_vec::<f64>(), vec![1.0, 0.0, 1.0, 0.0]);
    check("nanmean", &[&[3, 4]], -1.0, 1.0, |p| {
        p[0].nanmean_dim(1, true)
    });
}

#[test]
fn trace_is_the_sum_of_the_diagonal() {
    check("trace", &[&[3, 3]], -1.0, 1.0, |p| p[0].trace());
    check("trace_t", &[&[4, 3]], -1.0, 1.0, |p| p[0].t().trace());
    let (g, _) =
        ferrograd::grad(|m: &Tensor| m.trace()).call(&Tensor::zeros(&[2, 3], DType::F64), ());
    assert_eq!(g.to_vec::<f64>(), vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn negative_positions_count_from_the_end() {
    check("narrow-", &[&[3, 5]], -1.0, 1.0, |p| p[0].narrow(1, -3, 2));
    check("select-", &[&[3, 5]], -1.0, 1.0, |p| p[0].select(0, -1));
    let x = Tensor::from_vec((0..5).map(f64::from).collect(), &[5]);
    assert_eq!(
        x.narrow(0, -3, 3).to_vec::<f64>(),
        x.narrow(0, 2usize, 3).to_vec::<f64>()
    );
    let err = panic_message(|| drop(x.select(0, -6)));
    assert!(
        err.contains("select") && err.contains("position -6") && err.contains("size 5"),
        "{err}"
    );
}

#[test]
fn sorting() {
    for keepdim in [false, true] {
        check("kthvalue", &[&[3, 5]], -1.0, 1.0, |p| {
            p[0].kthvalue(2, 1, keepdim).0
        });
        check("median_dim", &[&[4, 3]], -1.0, 1.0, |p| {
            p[0].median_dim(0, keepdim).0
        });
    }
    check("sort", &[&[3, 4]], -1.0, 1.0, |p| p[0].sort(1, false).0);
    check("sort desc", &[&[4, 3]], -1.0, 1.0, |p| {
        p[0].t().sort(0, true).0
    });
    check("topk", &[&[3, 5]], -1.0, 1.0, |p| p[0].topk(2, -1, true).0);
    check("topk smallest", &[&[5, 2]], -1.0, 1.0, |p| {
        p[0].topk(3, 0, false).0
    });
    check("median", &[&[2, 3]], -1.0, 1.0, |p| p[0].median());
}

#[test]
fn sorting_values_against_a_reference() {
    let x = Tensor::from_vec(vec![2.0f64, f64::NAN, -1.0, 2.0, 0.5, -3.0], &[2, 3]);
    // rows [2, NaN, -1] and [2, 0.5, -3]; NaN sorts last, equal values keep their order
    let (v, i) = x.sort(1, false);
    assert_eq!(i.to_vec::<i64>(), vec![2, 0, 1, 2, 1, 0]);
    assert_eq!(v.to_vec::<f64>()[..2], [-1.0, 2.0]);
    assert!(v.to_vec::<f64>()[2].is_nan());
    // columns [2, 2] (a tie), [NaN, 0.5] (NaN is the largest), [-1, -3]
    let (_, i) = x.sort(0, true);
    assert_eq!(i.to_vec::<i64>(), vec![0, 0, 0, 1, 1, 1]);
    let ties = Tensor::from_vec(vec![1i64, 0, 1, 0], &[4]);
    assert_eq!(ties.argsort(0, false).to_vec::<i64>(), vec![1, 3, 0, 2]);
    assert_eq!(ties.argsort(0, true).to_vec::<i64>(), vec![0, 2, 1, 3]);
    let (v, i) = Tensor::from_vec(vec![5.0f32, 1.0, 4.0, 2.0, 3.0], &[5]).topk(3, 0, false);
    assert_eq!(
        (v.to_vec::<f32>(), i.to_vec::<i64>()),
        (vec![1.0, 2.0, 3.0], vec![1, 3, 4])
    );
    let m = Tensor::from_vec(vec![4.0f64, 1.0, 3.0, 2.0], &[4]);
    assert_eq!(m.median_dim(0, false).1.item::<i64>(), 3); // lower middle: 2.0
                                                           // a NaN makes the median NaN, at the first NaN, as in PyTorch (the middle of the sorted
                                                           // values skipped it: rows [2, NaN, -1] gave 2); the gradient goes to it
    let (v, i) = x.median_dim(1, true);
    assert!(v.to_vec::<f64>()[0].is_nan());
    assert_eq!((v.shape(), v.to_vec::<f64>()[1]), (&[2, 1][..], 0.5));
    assert_eq!(i.to_vec::<i64>(), vec![1, 1]);
    let twice = Tensor::from_vec(vec![1.0f64, f64::NAN, 0.0, f64::NAN], &[4]);
    assert_eq!(twice.median_dim(0, false).1.item::<i64>(), 1);
    assert!(x.median().item::<f64>().is_nan());
    let (g, _) = ferrograd::grad(|x: &Tensor| x.median_dim(1, false).0.sum()).call(&x, ());
    assert_eq!(g.to_vec::<f64>(), vec![0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
    let msg = panic_message(|| {
        m.topk(5, 0, true);
    });
    assert!(
        msg.contains("topk: k = 5 is larger than dim 0 of shape [4] (4)"),
        "{msg}"
    );
    assert!(msg.contains("primitives.rs"), "{msg}");
    let msg = panic_message(|| {
        m.kthvalue(0, 0, true);
    });
    assert!(msg.contains("kthvalue: k = 0 must be in 1..=4"), "{msg}");
}

#[test]
fn products_with_an_added_term() {
    // numbers as coefficients, and tensors (which then get gradients)
    check("addmm", &[&[3], &[3, 4], &[4, 3]], -1.0, 1.0, |p| {
        p[0].addmm(&p[1], &p[2], 0.5, -2.0)
    });
    check(
        "addmm tensor coefficients",
        &[&[3, 3], &[3, 4], &[4, 3], &[], &[1]],
        -1.0,
        1.0,
        |p| p[0].addmm(&p[1], &p[2], &p[3], &p[4]),
    );
    check("addmv", &[&[3], &[3, 4], &[4], &[]], -1.0, 1.0, |p| {
        p[0].addmv(&p[1], &p[2], 1.0, &p[3])
    });
    check("addr", &[&[3, 4], &[3], &[4]], -1.0, 1.0, |p| {
        p[0].addr(&p[1], &p[2], 2.0, 1.0)
    });
    check(
        "baddbmm",
        &[&[2, 3, 2], &[2, 3, 4], &[2, 4, 2]],
        -1.0,
        1.0,
        |p| p[0].baddbmm(&p[1], &p[2], 0.3, 0.7),
    );
    check(
        "addbmm",
        &[&[3, 2], &[2, 3, 4], &[2, 4, 2], &[]],
        -1.0,
        1.0,
        |p| p[0].addbmm(&p[1], &p[2], &p[3], 1.5),
    );
}

#[test]
fn products_with_an_added_term_against_a_reference() {
    let c = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    // 0.5 c + 2 (a @ a): a @ a = [[7, 10], [15, 22]]
    assert_eq!(
        c.addmm(&a, &a, 0.5, 2.0).to_vec::<f64>(),
        vec![14.5, 21.0, 30.5, 45.0]
    );
    // β = 0 ignores the input, NaN included (PyTorch's rule)
    let nan = Tensor::from_vec(vec![f64::NAN, 0.0], &[2]);
    assert_eq!(
        nan.addmm(&a, &a, 0.0, 1.0).to_vec::<f64>(),
        vec![7.0, 10.0, 15.0, 22.0]
    );
    // addbmm sums the batch: two copies of a
    let b = Tensor::stack(&[&a, &a], 0);
    assert_eq!(
        c.addbmm(&b, &b, 1.0, 1.0).to_vec::<f64>(),
        vec![15.0, 22.0, 31.0, 46.0]
    );
    let msg = panic_message(|| {
        Tensor::ones(&[3], DType::F64).addmm(&a, &a, 1.0, 1.0);
    });
    assert!(
        msg.contains("input of shape [3] does not broadcast to the product's shape [2, 2]"),
        "{msg}"
    );
    assert!(msg.contains("primitives.rs"), "{msg}");
}
