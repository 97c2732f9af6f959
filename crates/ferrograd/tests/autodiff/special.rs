//! Special functions (erfinv, lgamma, digamma, polygamma) and the two remainders (fmod,
//! remainder) against SciPy 1.16 / NumPy 2.4 (values printed by them, quoted below), and
//! their gradients against finite differences at first and second order.

use ferrograd::{DType, Tensor};

use crate::common::*;
use crate::primitives::check;

#[test]
fn values_against_scipy() {
    let t = |v: &[f64]| Tensor::from_vec(v.to_vec(), &[v.len()]);
    let ys = t(&[-0.999, -0.5, 0.0, 0.3, 0.9, 0.99999]);
    let erfinv = [
        -2.326753765513524,
        -0.4769362762044699,
        0.0,
        0.2724627147267544,
        1.1630871536766743,
        3.123413274341571,
    ];
    assert_close(&ys.erfinv(), &erfinv, 1e-14);
    assert_close(&ys.erfinv().erf(), &ys.to_vec::<f64>(), 1e-15);
    let edges = t(&[1.0, -1.0, 1.5, f64::NAN]).erfinv().to_vec::<f64>();
    assert_eq!(edges[..2], [f64::INFINITY, f64::NEG_INFINITY]);
    assert!(edges[2].is_nan() && edges[3].is_nan());

    let xs = t(&[-2.5, -0.5, 0.1, 0.5, 1.0, 3.7, 25.0, 150.0]);
    let lgamma = [
        -0.05624371649767401,
        1.2655121234846454,
        2.252712651734206,
        0.5723649429247,
        0.0,
        1.428072326665388,
        54.78472939811232,
        600.0094705553274,
    ];
    assert_close(&xs.lgamma(), &lgamma, 1e-14);
    let digamma = [
        1.1031566406452433,
        0.03648997397857651,
        -10.423754940411076,
        -1.9635100260214235,
        -0.5772156649015329,
        1.1671535393615113,
        3.198742512851974,
        5.007298257075679,
    ];
    assert_close(&xs.digamma(), &digamma, 1e-13);
    let polygammas: [(u32, [f64; 8]); 3] = [
        (
            1,
            [
                9.539246644989124,
                8.934802200544679,
                101.43329915079275,
                4.93480220054468,
                1.6449340668482266,
                0.31003785767003833,
                0.04081066325722558,
                0.006688938271165996,
            ],
        ),
        (
            2,
            [
                -0.1082040516417282,
                -0.82879664423432,
                -2001.8614573783439,
                -16.828796644234316,
                -2.404113806319188,
                -0.09539530872855405,
                -0.0016652793184224685,
                -4.4741728380430464e-05,
            ],
        ),
        (
            3,
            [
                194.74787621918756,
                193.40909103400242,
                60004.512876790235,
                97.40909103400242,
                6.493939402266829,
                0.05827921795656364,
                0.0001358846365082737,
                5.985448553818361e-07,
            ],
        ),
    ];
    for (n, want) in polygammas {
        assert_close(&xs.polygamma(n), &want, 1e-12);
    }
    // Negative arguments are reflected (the series from x itself would take a term per
    // unit up to 9: minutes at -3e9); values from mpmath 1.3 at 30 digits.
    let far = t(&[-2.3, -12345.25]);
    let reflected: [(u32, [f64; 2]); 3] = [
        (1, [14.725912160961279, 19.73912780264451]),
        (2, [68.71379252927017, 124.02510671463835]),
        (3, [768.9350646661405, 1558.545456544038]),
    ];
    for (n, want) in reflected {
        assert_close(&far.polygamma(n), &want, 1e-12);
    }
    // at x = -N - 1/2, cot(πx) = 0, so ψ''(x) = ψ''(1 - x) (-1.1e-19), up to the rounding
    // of cot(π/2) in f64 (6e-17, times the derivative's 2π³)
    let x = t(&[-3e9 - 0.5]).polygamma(2).to_vec::<f64>()[0];
    let mirror = t(&[3e9 + 1.5]).polygamma(2).to_vec::<f64>()[0];
    assert!((x - mirror).abs() <= 1e-14, "{x} vs {mirror}");
    // poles: PyTorch's digamma(0) = -inf; negative integers are NaN
    let poles = t(&[0.0, -2.0]).digamma().to_vec::<f64>();
    assert!(poles[0] == f64::NEG_INFINITY && poles[1].is_nan());
    // f32 rounds the f64 result
    let x32 = xs.to_dtype(DType::F32).digamma();
    assert_eq!(x32.dtype(), DType::F32);
    assert_close(&x32.to_dtype(DType::F64), &digamma, 1e-6);

    let a = t(&[5.5, -5.5, 5.5, -5.5, 7.0, -3.0]);
    let b = t(&[2.0, 2.0, -2.0, -2.0, 2.5, 1.5]);
    assert_close(&a.fmod(&b), &[1.5, -1.5, 1.5, -1.5, 2.0, -0.0], 0.0);
    assert_close(&a.remainder(&b), &[1.5, 0.5, -0.5, -1.5, 2.0, 0.0], 0.0);
    assert_eq!(t(&[-3.7, 3.7]).trunc().to_vec::<f64>(), vec![-3.0, 3.0]);
    let ia = Tensor::from_vec(vec![7i64, -7], &[2]);
    let ib = Tensor::from_vec(vec![3i64, 3], &[2]);
    assert_eq!(ia.fmod(&ib).to_vec::<i64>(), vec![1, -1]);
    assert_eq!(ia.remainder(&ib).to_vec::<i64>(), vec![1, 2]);
}

#[test]
fn gradients() {
    check("erfinv", &[&[3, 4]], -0.9, 0.9, |p| p[0].erfinv());
    check("lgamma", &[&[3, 4]], 0.3, 4.0, |p| p[0].lgamma());
    check("lgamma (negative)", &[&[5]], -0.9, -0.1, |p| p[0].lgamma());
    check("digamma", &[&[3, 4]], 0.3, 4.0, |p| p[0].digamma());
    check("polygamma 2", &[&[3, 4]], 0.3, 4.0, |p| p[0].polygamma(2));
    // quotients in (1.4, 2): trunc and floor are 1 around every sample
    check("fmod", &[&[2, 3], &[3]], 2.2, 2.5, |p| {
        p[0].fmod(&(&p[1] * 0.0 + &(&p[1] - 2.2) * (0.2 / 0.3)).add_scalar(1.3))
    });
    check("remainder", &[&[2, 3], &[3]], 2.2, 2.5, |p| {
        p[0].remainder(&(&(&p[1] - 2.2) * (0.2 / 0.3)).add_scalar(1.3))
    });
}
