use ferrograd_array::{Array, DType, Generator};
use rand::Rng;

use crate::common::*;

type Unary = (&'static str, fn(&Array) -> Array, fn(f64) -> f64, f64, f64);

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `erf` by its definition, `2/√π ∫₀ˣ e^(-t²) dt`, with Simpson's rule (error below 1e-13
/// on [-3, 3]).
fn erf(x: f64) -> f64 {
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let inner: f64 = (1..n)
        .map(|i| f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 })
        .sum();
    (f(0.0) + inner + f(x)) * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

const UNARY: &[Unary] = &[
    ("neg", Array::neg, |x| -x, -3.0, 3.0),
    ("abs", Array::abs, f64::abs, -3.0, 3.0),
    (
        "sign",
        Array::sign,
        |x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        },
        -3.0,
        3.0,
    ),
    ("exp", Array::exp, f64::exp, -3.0, 3.0),
    ("log", Array::log, f64::ln, 0.1, 5.0),
    ("log1p", Array::log1p, f64::ln_1p, -0.5, 3.0),
    ("expm1", Array::expm1, f64::exp_m1, -3.0, 3.0),
    ("sqrt", Array::sqrt, f64::sqrt, 0.0, 5.0),
    ("rsqrt", Array::rsqrt, |x| 1.0 / x.sqrt(), 0.1, 5.0),
    ("sin", Array::sin, f64::sin, -3.0, 3.0),
    ("cos", Array::cos, f64::cos, -3.0, 3.0),
    ("tan", Array::tan, f64::tan, -1.4, 1.4),
    ("sinh", Array::sinh, f64::sinh, -3.0, 3.0),
    ("cosh", Array::cosh, f64::cosh, -3.0, 3.0),
    ("asin", Array::asin, f64::asin, -1.0, 1.0),
    ("acos", Array::acos, f64::acos, -1.0, 1.0),
    ("atan", Array::atan, f64::atan, -5.0, 5.0),
    ("erf", Array::erf, erf, -3.0, 3.0),
    ("tanh", Array::tanh, f64::tanh, -3.0, 3.0),
    ("sigmoid", Array::sigmoid, sigmoid, -8.0, 8.0),
    ("gelu", Array::gelu, |x| x * normal_cdf(x), -3.0, 3.0),
    ("relu", Array::relu, |x| x.max(0.0), -3.0, 3.0),
    ("floor", Array::floor, f64::floor, -3.0, 3.0),
    ("ceil", Array::ceil, f64::ceil, -3.0, 3.0),
    ("round", Array::round, f64::round_ties_even, -3.0, 3.0),
    ("reciprocal", Array::reciprocal, |x| 1.0 / x, 0.5, 3.0),
    ("square", Array::square, |x| x * x, -3.0, 3.0),
];

#[test]
fn unary_ops_match_the_reference_on_every_layout() {
    let mut rng = Generator::new(10);
    for &(name, op, reference, low, high) in UNARY {
        for dtype in [DType::F32, DType::F64] {
            for _ in 0..6 {
                let shape = random_shape(&mut rng, 4, 5, true);
                for layout in LAYOUTS {
                    let c = case(&mut rng, &shape, dtype, layout, low, high);
                    let got = op(&c.array);
                    assert_eq!(got.shape(), shape.as_slice(), "{name}");
                    assert_eq!(got.dtype(), dtype);
                    let want: Vec<f64> = c.values.iter().map(|&x| reference(x)).collect();
                    let (rtol, atol) = tol(dtype);
                    assert_close(&got.to_f64_vec(), &want, rtol, atol);
                }
            }
        }
    }
}

/// Views whose rows are contiguous but not the whole buffer (a narrowed or selected middle
/// dim): the row-wise vectorised path, for every unary op.
#[test]
fn unary_ops_on_row_contiguous_views() {
    let mut rng = Generator::new(11);
    for &(name, op, reference, low, high) in UNARY {
        let base = case(
            &mut rng,
            &[3, 5, 17],
            DType::F32,
            Layout::Contiguous,
            low,
            high,
        );
        for (view, (d, start, len)) in [(1usize, 1usize, 3usize), (2, 0, 16), (0, 1, 2)]
            .iter()
            .map(|&(d, s, l)| (base.array.narrow(d, s, l), (d, s, l)))
        {
            let got = op(&view);
            let want: Vec<f64> = (0..view.numel())
                .map(|i| {
                    let mut idx = unravel(i, view.shape());
                    idx[d] += start;
                    reference(base.values[ravel(&idx, &[3, 5, 17])])
                })
                .collect();
            let (rtol, atol) = tol(DType::F32);
            assert_close(&got.to_f64_vec(), &want, rtol, atol);
            assert_eq!(got.shape(), view.shape(), "{name} narrowed on {d} to {len}");
        }
    }
}

#[test]
fn large_unary_ops_take_the_parallel_path_and_stay_right() {
    let mut rng = Generator::new(11);
    let c = case(
        &mut rng,
        &[1000, 600],
        DType::F32,
        Layout::Contiguous,
        -2.0,
        2.0,
    );
    let want: Vec<f64> = c.values.iter().map(|x| x.tanh()).collect();
    assert_close(&c.array.tanh().to_f64_vec(), &want, 2e-6, 1e-6);
    let d = case(
        &mut rng,
        &[1000, 600],
        DType::F32,
        Layout::Contiguous,
        -2.0,
        2.0,
    );
    let want: Vec<f64> = c.values.iter().zip(&d.values).map(|(x, y)| x + y).collect();
    assert_close(&c.array.add(&d.array).to_f64_vec(), &want, 1e-6, 1e-6);
}

#[test]
fn rounding_halves_go_to_even() {
    let a = Array::from_vec(vec![0.5f64, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6], &[8]);
    assert_eq!(
        a.round().to_vec::<f64>(),
        vec![0.0, 2.0, 2.0, -0.0, -2.0, -2.0, 2.0, 3.0]
    );
    // and bit for bit, the sign of a zero included (-0.5 rounds to -0, as IEEE's
    // roundTiesToEven, PyTorch and CUDA's rint do)
    let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
    let want: Vec<f64> = a
        .to_vec::<f64>()
        .into_iter()
        .map(f64::round_ties_even)
        .collect();
    assert_eq!(bits(a.round().to_vec::<f64>()), bits(want.clone()));
    let single: Vec<f64> = a.to_dtype(DType::F32).round().to_f64_vec();
    assert_eq!(bits(single), bits(want));
}

#[test]
fn integer_unary_ops() {
    let a = Array::from_vec(vec![-3i64, 0, 4], &[3]);
    assert_eq!(a.neg().to_vec::<i64>(), vec![3, 0, -4]);
    assert_eq!(a.abs().to_vec::<i64>(), vec![3, 0, 4]);
    assert_eq!(a.sign().to_vec::<i64>(), vec![-1, 0, 1]);
    assert_eq!(a.relu().to_vec::<i64>(), vec![0, 0, 4]);
    assert_eq!(
        a.clamp(Some(-1.0), Some(2.0)).to_vec::<i64>(),
        vec![-1, 0, 2]
    );
}

#[test]
fn nan_propagates_through_relu_sign_clamp_maximum() {
    let a = Array::from_vec(vec![f64::NAN, 1.0], &[2]);
    assert!(a.relu().to_vec::<f64>()[0].is_nan());
    assert!(a.sign().to_vec::<f64>()[0].is_nan());
    assert!(a.clamp(Some(0.0), Some(0.5)).to_vec::<f64>()[0].is_nan());
    let b = Array::from_vec(vec![0.0, f64::NAN], &[2]);
    let m = a.maximum(&b).to_vec::<f64>();
    assert!(m[0].is_nan() && m[1].is_nan());
    assert!(a.minimum(&b).to_vec::<f64>().iter().all(|v| v.is_nan()));
}

#[test]
fn clamp_and_pow_scalar() {
    let mut rng = Generator::new(12);
    for layout in LAYOUTS {
        let c = case(&mut rng, &[3, 4], DType::F64, layout, -3.0, 3.0);
        let want: Vec<f64> = c.values.iter().map(|x| x.clamp(-1.0, 2.0)).collect();
        assert_eq!(c.array.clamp(Some(-1.0), Some(2.0)).to_f64_vec(), want);
        let want: Vec<f64> = c.values.iter().map(|x| x.max(0.5)).collect();
        assert_eq!(c.array.clamp(Some(0.5), None).to_f64_vec(), want);
        for e in [2.0, 3.0, -1.0, 1.0] {
            let want: Vec<f64> = c.values.iter().map(|x| x.powf(e)).collect();
            assert_close(&c.array.pow_scalar(e).to_f64_vec(), &want, 1e-12, 1e-12);
        }
        let pos = c.array.abs().add_scalar(0.1);
        let want: Vec<f64> = c
            .values
            .iter()
            .map(|x| (x.abs() + 0.1).powf(0.37))
            .collect();
        assert_close(&pos.pow_scalar(0.37).to_f64_vec(), &want, 1e-12, 1e-12);
    }
}

type Binary = (
    &'static str,
    fn(&Array, &Array) -> Array,
    fn(f64, f64) -> f64,
);

const BINARY: &[Binary] = &[
    ("add", Array::add, |x, y| x + y),
    ("sub", Array::sub, |x, y| x - y),
    ("mul", Array::mul, |x, y| x * y),
    ("div", Array::div, |x, y| x / y),
    ("maximum", Array::maximum, f64::max),
    ("minimum", Array::minimum, f64::min),
    ("pow", Array::pow, f64::powf),
    ("atan2", Array::atan2, f64::atan2),
];

/// Two shapes that broadcast: `a` random, `b` a random suffix of `a` with some dims set to 1,
/// or the other way round.
fn broadcastable_pair(rng: &mut Generator) -> (Vec<usize>, Vec<usize>) {
    let a = random_shape(rng, 4, 4, true);
    let keep = rng.rng().random_range(0..=a.len());
    let b: Vec<usize> = a[a.len() - keep..]
        .iter()
        .map(|&s| if rng.rng().random_bool(0.3) { 1 } else { s })
        .collect();
    if rng.rng().random_bool(0.5) {
        (a, b)
    } else {
        (b, a)
    }
}

fn broadcast_reference(
    a: &Case,
    sa: &[usize],
    b: &Case,
    sb: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<usize>, Vec<f64>) {
    let shape = ferrograd_array::broadcast_shapes(sa, sb).unwrap().to_vec();
    let values = (0..numel(&shape))
        .map(|i| {
            let idx = unravel(i, &shape);
            f(
                broadcast_get(&a.values, sa, &idx),
                broadcast_get(&b.values, sb, &idx),
            )
        })
        .collect();
    (shape, values)
}

#[test]
fn binary_ops_broadcast_like_numpy_on_every_layout() {
    let mut rng = Generator::new(13);
    for &(name, op, reference) in BINARY {
        for dtype in [DType::F32, DType::F64] {
            for _ in 0..25 {
                let (sa, sb) = broadcastable_pair(&mut rng);
                let la = LAYOUTS[rng.rng().random_range(0..4)];
                let lb = LAYOUTS[rng.rng().random_range(0..4)];
                let a = case(&mut rng, &sa, dtype, la, 0.5, 3.0);
                let b = case(&mut rng, &sb, dtype, lb, 0.5, 3.0);
                let got = op(&a.array, &b.array);
                let (shape, want) = broadcast_reference(&a, &sa, &b, &sb, reference);
                assert_eq!(got.shape(), shape.as_slice(), "{name} {sa:?} {sb:?}");
                let (rtol, atol) = tol(dtype);
                assert_close(&got.to_f64_vec(), &want, rtol * 4.0, atol);
                // the *_into form writes the same values
                let mut out = Array::zeros(&shape, dtype);
                match name {
                    "add" => a.array.add_into(&b.array, &mut out),
                    "mul" => a.array.mul_into(&b.array, &mut out),
                    _ => out = op(&a.array, &b.array),
                }
                assert_close(&out.to_f64_vec(), &want, rtol * 4.0, atol);
            }
        }
    }
}

/// Long rows on each side (contiguous, or one value repeated along the row): the row-wise
/// vectorised path, with every layout and both operand orders.
#[test]
fn row_broadcasts_match_the_reference() {
    let mut rng = Generator::new(21);
    let big = [3usize, 5, 17];
    let smalls: [&[usize]; 6] = [
        &[17],
        &[5, 1],
        &[3, 1, 17],
        &[1, 5, 17],
        &[3, 5, 1],
        &[3, 1, 1],
    ];
    for &(name, op, reference) in &BINARY[..4] {
        for small in smalls {
            for (la, lb) in LAYOUTS.iter().zip(LAYOUTS.iter().rev()) {
                for swap in [false, true] {
                    let (sa, sb) = if swap {
                        (small, &big[..])
                    } else {
                        (&big[..], small)
                    };
                    let a = case(&mut rng, sa, DType::F32, *la, 0.5, 3.0);
                    let b = case(&mut rng, sb, DType::F32, *lb, 0.5, 3.0);
                    let got = op(&a.array, &b.array);
                    let (shape, want) = broadcast_reference(&a, sa, &b, sb, reference);
                    assert_eq!(got.shape(), shape.as_slice(), "{name} {sa:?} {sb:?}");
                    assert_close(&got.to_f64_vec(), &want, 1e-6, 1e-6);
                }
            }
        }
    }
}

#[test]
fn integer_arithmetic() {
    let a = Array::from_vec(vec![7i64, -7, 3], &[3]);
    let b = Array::from_vec(vec![2i64, 2, 5], &[3]);
    assert_eq!(a.add(&b).to_vec::<i64>(), vec![9, -5, 8]);
    assert_eq!(a.mul(&b).to_vec::<i64>(), vec![14, -14, 15]);
    assert_eq!(a.div(&b).to_vec::<i64>(), vec![3, -3, 0]);
    assert_eq!(a.maximum(&b).to_vec::<i64>(), vec![7, 2, 5]);
}

#[test]
fn scalars_on_either_side() {
    let a = Array::from_vec(vec![1.0f32, 2.0, 4.0], &[3]);
    assert_eq!((&a + 1.0).to_vec::<f32>(), vec![2.0, 3.0, 5.0]);
    assert_eq!((1.0 + &a).to_vec::<f32>(), vec![2.0, 3.0, 5.0]);
    assert_eq!((&a - 1.0).to_vec::<f32>(), vec![0.0, 1.0, 3.0]);
    assert_eq!((1.0 - &a).to_vec::<f32>(), vec![0.0, -1.0, -3.0]);
    assert_eq!((&a * 2.0).to_vec::<f32>(), vec![2.0, 4.0, 8.0]);
    assert_eq!((2.0 * a.clone()).to_vec::<f32>(), vec![2.0, 4.0, 8.0]);
    assert_eq!((&a / 2.0).to_vec::<f32>(), vec![0.5, 1.0, 2.0]);
    assert_eq!((4.0 / &a).to_vec::<f32>(), vec![4.0, 2.0, 1.0]);
    assert_eq!((-&a).to_vec::<f32>(), vec![-1.0, -2.0, -4.0]);
    assert_eq!(a.rpow_scalar(2.0).to_vec::<f32>(), vec![2.0, 4.0, 16.0]);
    assert_eq!(
        a.pow_tensor_scalar(2.0).to_vec::<f32>(),
        vec![1.0, 4.0, 16.0]
    );
    assert_eq!(a.maximum_scalar(2.0).to_vec::<f32>(), vec![2.0, 2.0, 4.0]);
    let b = Array::from_vec(vec![1.0f32, 1.0, 1.0], &[3]);
    assert_eq!((&a + &b).to_vec::<f32>(), vec![2.0, 3.0, 5.0]);
    assert_eq!((a.clone() - b.clone()).to_vec::<f32>(), vec![0.0, 1.0, 3.0]);
    assert_eq!((a.clone() * &b).to_vec::<f32>(), a.to_vec::<f32>());
    assert_eq!((&a / b).to_vec::<f32>(), a.to_vec::<f32>());
}

type Compare = (fn(&Array, &Array) -> Array, fn(f64, f64) -> bool);

#[test]
fn comparisons_give_bool_and_broadcast() {
    let cmps: [Compare; 6] = [
        (Array::eq, |x, y| x == y),
        (Array::ne, |x, y| x != y),
        (Array::lt, |x, y| x < y),
        (Array::le, |x, y| x <= y),
        (Array::gt, |x, y| x > y),
        (Array::ge, |x, y| x >= y),
    ];
    let mut rng = Generator::new(14);
    for (op, reference) in cmps {
        for dtype in [DType::F32, DType::I64] {
            for _ in 0..10 {
                let (sa, sb) = broadcastable_pair(&mut rng);
                let a = case(&mut rng, &sa, dtype, Layout::Permuted, 0.0, 3.0);
                let b = case(&mut rng, &sb, dtype, Layout::Broadcast, 0.0, 3.0);
                let got = op(&a.array, &b.array);
                assert_eq!(got.dtype(), DType::Bool);
                let (_, want) =
                    broadcast_reference(
                        &a,
                        &sa,
                        &b,
                        &sb,
                        |x, y| if reference(x, y) { 1.0 } else { 0.0 },
                    );
                assert_eq!(got.to_f64_vec(), want);
            }
        }
    }
    let a = Array::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    assert_eq!(a.gt_scalar(1.5).to_vec::<bool>(), vec![false, true, true]);
    assert_eq!(a.eq_scalar(2.0).to_vec::<bool>(), vec![false, true, false]);
    let m = a.lt_scalar(2.5);
    assert_eq!(m.logical_not().to_vec::<bool>(), vec![false, false, true]);
    assert_eq!(
        m.logical_and(&a.gt_scalar(1.5)).to_vec::<bool>(),
        vec![false, true, false]
    );
    assert_eq!(
        m.logical_or(&a.gt_scalar(2.5)).to_vec::<bool>(),
        vec![true, true, true]
    );
}

#[test]
fn where_broadcasts_all_three() {
    let mut rng = Generator::new(15);
    for _ in 0..30 {
        let (sa, sb) = broadcastable_pair(&mut rng);
        let a = case(&mut rng, &sa, DType::F64, Layout::Narrowed, -1.0, 1.0);
        let b = case(&mut rng, &sb, DType::F64, Layout::Permuted, -1.0, 1.0);
        let shape = ferrograd_array::broadcast_shapes(&sa, &sb)
            .unwrap()
            .to_vec();
        let sc: Vec<usize> = shape
            .iter()
            .map(|&s| if rng.rng().random_bool(0.3) { 1 } else { s })
            .collect();
        let c = case(&mut rng, &sc, DType::Bool, Layout::Contiguous, 0.0, 1.0);
        let got = Array::where_cond(&c.array, &a.array, &b.array);
        let want: Vec<f64> = (0..numel(&shape))
            .map(|i| {
                let idx = unravel(i, &shape);
                if broadcast_get(&c.values, &sc, &idx) != 0.0 {
                    broadcast_get(&a.values, &sa, &idx)
                } else {
                    broadcast_get(&b.values, &sb, &idx)
                }
            })
            .collect();
        assert_eq!(got.to_f64_vec(), want);
    }
    let x = Array::from_vec(vec![1.0f32, -2.0, 3.0], &[3]);
    assert_eq!(
        x.masked_fill(&x.lt_scalar(0.0), 0.0).to_vec::<f32>(),
        vec![1.0, 0.0, 3.0]
    );
}

#[test]
fn empty_and_zero_dim_arrays() {
    let e = Array::zeros(&[0, 3], DType::F32);
    assert_eq!(e.exp().shape(), &[0, 3]);
    assert_eq!(e.add(&Array::ones(&[3], DType::F32)).shape(), &[0, 3]);
    let s = Array::scalar(2.0f64);
    let v = Array::from_vec(vec![1.0f64, 2.0], &[2]);
    assert_eq!(s.mul(&v).to_vec::<f64>(), vec![2.0, 4.0]);
    assert_eq!(s.exp().item::<f64>(), 2f64.exp());
}

#[test]
fn allclose() {
    let a = Array::from_vec(vec![1.0f64, 2.0], &[2]);
    assert!(a.allclose(&a.add_scalar(1e-9), 1e-6, 0.0));
    assert!(!a.allclose(&a.add_scalar(1e-3), 1e-6, 0.0));
}

#[test]
fn fused_activation_gradients() {
    let mut rng = Generator::new(16);
    for layout in LAYOUTS {
        let y = case(&mut rng, &[3, 4], DType::F64, layout, -1.0, 1.0);
        let g = case(&mut rng, &[3, 4], DType::F64, Layout::Permuted, -1.0, 1.0);
        // tanh: g (1 - y²); sigmoid: g y (1 - y)
        let want: Vec<f64> = y
            .values
            .iter()
            .zip(&g.values)
            .map(|(y, g)| g * (1.0 - y * y))
            .collect();
        assert_close(
            &y.array.tanh_backward(&g.array).to_f64_vec(),
            &want,
            1e-12,
            1e-12,
        );
        let want: Vec<f64> = y
            .values
            .iter()
            .zip(&g.values)
            .map(|(y, g)| g * y * (1.0 - y))
            .collect();
        let mut out = Array::zeros(&[3, 4], DType::F64);
        y.array.sigmoid_backward_into(&g.array, &mut out);
        assert_close(&out.to_f64_vec(), &want, 1e-12, 1e-12);
    }
}

/// `Φ(x)`, the standard normal distribution, by its definition: Simpson's rule on the density
/// over `[x - 10, x]` for `x <= 0` (relative error below 1e-11 down to x = -9), `1 - Φ(-x)`
/// above.
fn normal_cdf(x: f64) -> f64 {
    if x > 0.0 {
        return 1.0 - normal_cdf(-x);
    }
    let n = 8000;
    let h = 10.0 / n as f64;
    let f = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let inner: f64 = (1..n)
        .map(|i| f(x - 10.0 + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 })
        .sum();
    (f(x - 10.0) + inner + f(x)) * h / 3.0
}

/// GELU is `x Φ(x)` within a few ulp (f32) and 1e-10 relatively (f64), the negative tail
/// included, where the textbook `x (1 + erf(x/√2)) / 2` cancels to nothing (from x = -5.5 in
/// f32, -8.3 in f64); its gradient is `Φ(x) + x φ(x)` times the output gradient, within a few
/// roundings of its terms.
#[test]
fn gelu_is_x_times_the_normal_distribution_and_its_gradient_adds_the_density() {
    let mut rng = Generator::new(17);
    // 4099 elements: the vector loops, their tails and the split across threads
    let x32 = rng.uniform(&[4099], -9.0, 4.0, DType::F32);
    let g32 = rng.uniform(&[4099], -2.0, 2.0, DType::F32);
    let xs = x32.to_f64_vec();
    let cdf: Vec<f64> = xs.iter().map(|&x| normal_cdf(x)).collect();
    for (dtype, rtol) in [
        (DType::F32, 8.0 * f32::EPSILON as f64 / 2.0),
        (DType::F64, 1e-10),
    ] {
        let (x, g) = (x32.to_dtype(dtype), g32.to_dtype(dtype));
        let got = x.gelu().to_f64_vec();
        for ((&x, &cdf), got) in xs.iter().zip(&cdf).zip(got) {
            let want = x * cdf;
            assert!(
                (got - want).abs() <= rtol * want.abs(),
                "{dtype}: gelu({x}) = {got}, want {want}"
            );
        }
        let got = x.gelu_backward(&g).to_f64_vec();
        for (((&x, &cdf), g), got) in xs.iter().zip(&cdf).zip(g.to_f64_vec()).zip(got) {
            let density = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let want = g * (cdf + x * density);
            // the gradient crosses 0 near x = -0.75: measured against its terms' size
            let bound = rtol * g.abs() * (cdf + (x * density).abs());
            assert!(
                (got - want).abs() <= bound,
                "{dtype}: gelu_backward({x}) = {got}, want {want}"
            );
        }
    }
}

#[test]
fn strided_views_compute_bit_for_bit_as_their_contiguous_copies() {
    // rows of 3 of every 4 elements: the offset walk, each row under the vector path (whose
    // FMA the f32 polynomial kernels use), against the contiguous kernels on the same values
    let mut rng = Generator::new(11);
    let x = rng.normal(&[257, 4], 0.0, 2.0, DType::F32);
    let y = rng.normal(&[257, 4], 0.0, 2.0, DType::F32);
    let (xv, yv) = (x.narrow(1, 0, 3), y.narrow(1, 1, 3));
    let (xc, yc) = (xv.copy(), yv.copy());
    type Op = fn(&Array) -> Array;
    let unary: [(&str, Op); 4] = [
        ("tanh", Array::tanh),
        ("exp", Array::exp),
        ("sin", Array::sin),
        ("sigmoid", Array::sigmoid),
    ];
    for (name, f) in unary {
        assert!(f(&xv).bit_eq(&f(&xc)), "{name}");
    }
    assert!(xv.mul(&yv).bit_eq(&xc.mul(&yc)));
    assert!(xv.tanh_backward(&yv).bit_eq(&xc.tanh_backward(&yc)));
}

/// `n` integers over the whole i64 range (a fixed sequence, so a failure repeats).
fn wide_ints(n: usize, seed: u64) -> Vec<i64> {
    let mut state = seed;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match i % 7 {
                0 => i64::MAX - (state >> 60) as i64,
                1 => i64::MIN + (state >> 60) as i64,
                2 => -1,
                _ => (state >> 1) as i64 ^ -((state & 1) as i64),
            }
        })
        .collect()
}

/// Integer arithmetic wraps around in every build profile, as PyTorch's integer tensors do,
/// where Rust's operators panic on overflow in a debug build (the tests' profile) and wrap in
/// a release one: every kernel that adds, subtracts, multiplies or divides i64 values, on
/// inputs large enough for the parallel paths, against Rust's wrapping arithmetic.
#[test]
fn integer_arithmetic_wraps_around_in_every_build_profile() {
    let (rows, cols) = (800, 700); // past the parallel threshold
    let xs = wide_ints(rows * cols, 1);
    let ys = wide_ints(rows * cols, 2);
    let x = Array::from_vec(xs.clone(), &[rows, cols]);
    let y = Array::from_vec(ys.clone(), &[rows, cols]);
    let zip = |f: fn(i64, i64) -> i64| {
        xs.iter()
            .zip(&ys)
            .map(|(&a, &b)| f(a, b))
            .collect::<Vec<_>>()
    };
    let remainder = |a: i64, b: i64| {
        let r = a.wrapping_rem(b);
        if r != 0 && (r < 0) != (b < 0) {
            r + b
        } else {
            r
        }
    };
    let nonzero = ys.iter().all(|&b| b != 0);
    assert!(nonzero && ys.contains(&-1) && xs.contains(&i64::MIN));
    assert_eq!(x.add(&y).to_vec::<i64>(), zip(i64::wrapping_add));
    assert_eq!(x.sub(&y).to_vec::<i64>(), zip(i64::wrapping_sub));
    assert_eq!(x.mul(&y).to_vec::<i64>(), zip(i64::wrapping_mul));
    assert_eq!(x.div(&y).to_vec::<i64>(), zip(i64::wrapping_div));
    assert_eq!(x.fmod(&y).to_vec::<i64>(), zip(i64::wrapping_rem));
    assert_eq!(x.remainder(&y).to_vec::<i64>(), zip(remainder));
    // a broadcast row, and a scalar
    let row = y.narrow(0, 0, 1);
    let by_row: Vec<i64> = (0..rows * cols)
        .map(|i| xs[i].wrapping_mul(ys[i % cols]))
        .collect();
    assert_eq!(x.mul(&row).to_vec::<i64>(), by_row);
    let tripled: Vec<i64> = xs.iter().map(|a| a.wrapping_mul(3)).collect();
    assert_eq!(x.mul_scalar(3.0).to_vec::<i64>(), tripled);
    let negated: Vec<i64> = xs.iter().map(|a| a.wrapping_neg()).collect();
    assert_eq!(x.neg().to_vec::<i64>(), negated);
    let magnitudes: Vec<i64> = xs.iter().map(|a| a.wrapping_abs()).collect();
    assert_eq!(x.abs().to_vec::<i64>(), magnitudes);
    assert_eq!(
        Array::from_vec(vec![i64::MIN], &[1])
            .div_scalar(-1.0)
            .to_vec::<i64>(),
        [i64::MIN]
    );

    // reductions: every element, along rows, along columns, running sums and products
    let fold = |v: &mut dyn Iterator<Item = i64>, product: bool| {
        v.fold(i64::from(product), |s, a| {
            if product {
                s.wrapping_mul(a)
            } else {
                s.wrapping_add(a)
            }
        })
    };
    let row_fold = |product: bool| -> Vec<i64> {
        (0..rows)
            .map(|r| fold(&mut xs[r * cols..][..cols].iter().copied(), product))
            .collect()
    };
    let column_fold = |product: bool| -> Vec<i64> {
        (0..cols)
            .map(|c| fold(&mut (0..rows).map(|r| xs[r * cols + c]), product))
            .collect()
    };
    assert_eq!(
        x.sum().to_vec::<i64>(),
        [fold(&mut xs.iter().copied(), false)]
    );
    assert_eq!(
        x.prod().to_vec::<i64>(),
        [fold(&mut xs.iter().copied(), true)]
    );
    assert_eq!(x.sum_dim(1, false).to_vec::<i64>(), row_fold(false));
    assert_eq!(x.sum_dim(0, false).to_vec::<i64>(), column_fold(false));
    assert_eq!(x.prod_dim(1, false).to_vec::<i64>(), row_fold(true));
    assert_eq!(x.prod_dim(0, false).to_vec::<i64>(), column_fold(true));
    let small = x.narrow(0, 0, 3); // the one-row path of small inputs
    assert_eq!(
        small.sum().to_vec::<i64>(),
        [fold(&mut xs[..3 * cols].iter().copied(), false)]
    );
    let running = |product: bool| -> Vec<i64> {
        let mut out = xs.clone();
        for r in 0..rows {
            for c in 1..cols {
                let (prev, here) = (out[r * cols + c - 1], out[r * cols + c]);
                out[r * cols + c] = if product {
                    prev.wrapping_mul(here)
                } else {
                    prev.wrapping_add(here)
                };
            }
        }
        out
    };
    assert_eq!(x.cumsum(1).to_vec::<i64>(), running(false));
    assert_eq!(x.cumprod(1).to_vec::<i64>(), running(true));
    let blocks = x.row_block_sums(&[0, 400], 400, false).to_vec::<i64>();
    let block =
        |first: usize, c: usize| fold(&mut (first..first + 400).map(|r| xs[r * cols + c]), false);
    let expected: Vec<i64> = [0, 400]
        .iter()
        .flat_map(|&first| (0..cols).map(move |c| (first, c)))
        .map(|(first, c)| block(first, c))
        .collect();
    assert_eq!(blocks, expected);

    // sums into places: every source row onto a few rows, where the totals overflow
    let targets: Vec<i64> = (0..rows as i64).map(|r| r % 3).collect();
    let index = Array::from_vec(targets.clone(), &[rows]);
    let base = Array::from_vec(ys[..3 * cols].to_vec(), &[3, cols]);
    let mut into_rows = ys[..3 * cols].to_vec();
    for (r, &t) in targets.iter().enumerate() {
        for c in 0..cols {
            let d = &mut into_rows[t as usize * cols + c];
            *d = d.wrapping_add(xs[r * cols + c]);
        }
    }
    assert_eq!(base.index_add(0, &index, &x).to_vec::<i64>(), into_rows);
    let scatter_index = index.unsqueeze(1usize).expand(&[rows, cols]).contiguous();
    assert_eq!(
        base.scatter_add(0, &scatter_index, &x).to_vec::<i64>(),
        into_rows
    );
    let put = base.index_put_add(&ferrograd_array::Index::Tensor(index), &x);
    assert_eq!(put.to_vec::<i64>(), into_rows);
}
