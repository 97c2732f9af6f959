use ferrograd_array::{DType, Generator};

use crate::common::*;

fn lines(values: &[f64], shape: &[usize], d: usize) -> Vec<Vec<usize>> {
    // positions of each line along dim d
    let mut out = Vec::new();
    for i in 0..numel(shape) {
        let idx = unravel(i, shape);
        if idx[d] == 0 {
            out.push(
                (0..shape[d])
                    .map(|k| {
                        let mut j = idx.clone();
                        j[d] = k;
                        ravel(&j, shape)
                    })
                    .collect(),
            );
        }
    }
    let _ = values;
    out
}

#[test]
fn softmax_and_log_softmax_forward_and_backward() {
    let mut rng = Generator::new(60);
    for dtype in [DType::F64, DType::F32] {
        for _ in 0..40 {
            let (shape, d) = shape_and_dim(&mut rng, 3, 5);
            let c = case_in(&mut rng, &shape, dtype, &LAYOUTS, -5.0, 5.0);
            let g = case(&mut rng, &shape, dtype, Layout::Contiguous, -1.0, 1.0);
            let mut sm = vec![0.0; c.values.len()];
            let mut lsm = vec![0.0; c.values.len()];
            let mut dsm = vec![0.0; c.values.len()];
            let mut dlsm = vec![0.0; c.values.len()];
            for line in lines(&c.values, &shape, d) {
                let m = line
                    .iter()
                    .map(|&i| c.values[i])
                    .fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = line.iter().map(|&i| (c.values[i] - m).exp()).sum();
                for &i in &line {
                    sm[i] = (c.values[i] - m).exp() / z;
                    lsm[i] = c.values[i] - m - z.ln();
                }
                // d softmax: y (g - <g, y>); d log_softmax: g - softmax * sum(g)
                let gy: f64 = line.iter().map(|&i| g.values[i] * sm[i]).sum();
                let gs: f64 = line.iter().map(|&i| g.values[i]).sum();
                for &i in &line {
                    dsm[i] = sm[i] * (g.values[i] - gy);
                    dlsm[i] = g.values[i] - sm[i] * gs;
                }
            }
            let (rtol, atol) = tol(dtype);
            let y = c.array.softmax(d);
            let ly = c.array.log_softmax(d as i64 - shape.len() as i64);
            assert_close(&y.to_f64_vec(), &sm, rtol * 10.0, atol);
            assert_close(&ly.to_f64_vec(), &lsm, rtol * 10.0, atol * 10.0);
            assert_close(
                &y.softmax_backward(&g.array, d).to_f64_vec(),
                &dsm,
                rtol * 10.0,
                atol * 10.0,
            );
            assert_close(
                &ly.log_softmax_backward(&g.array, d).to_f64_vec(),
                &dlsm,
                rtol * 10.0,
                atol * 10.0,
            );
        }
    }
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    let a = ferrograd_array::Array::from_vec(vec![1000.0f32, 1000.0, f32::NEG_INFINITY], &[3]);
    assert_eq!(a.softmax(0).to_vec::<f32>(), vec![0.5, 0.5, 0.0]);
    let l = a.log_softmax(0).to_vec::<f32>();
    assert!((l[0] + 2f32.ln()).abs() < 1e-6 && l[2] == f32::NEG_INFINITY);
    // a big batch takes the parallel path
    let mut rng = Generator::new(61);
    let big = rng.normal(&[1000, 600], 0.0, 3.0, DType::F64);
    let sums = big.softmax(1).sum_dim(1, false).to_vec::<f64>();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12));
}

/// Rows long enough for the vector passes (16-lane chunks and their tails), causal-masked
/// rows of `-inf`, a row all `-inf` and a row with NaN, along the last dim and along a dim
/// with lines side by side; against the definition in f64, forward and backward.
#[test]
fn softmax_of_long_masked_and_strided_rows_matches_the_definition() {
    use ferrograd_array::Array;
    let inf = f64::INFINITY;
    for dtype in [DType::F32, DType::F64] {
        for (rows, n) in [
            (5usize, 1usize),
            (3, 15),
            (4, 16),
            (3, 37),
            (64, 64),
            (2, 130),
        ] {
            let mut v: Vec<f64> = (0..rows * n)
                .map(|i| ((i as f64) * 0.37).sin() * 4.0)
                .collect();
            // a causal mask: row r keeps its first (r + 1) * n / rows entries
            for r in 0..rows {
                for j in ((r + 1) * n / rows).max(1)..n {
                    v[r * n + j] = -inf;
                }
            }
            if rows > 2 {
                v[n..2 * n].iter_mut().for_each(|x| *x = -inf);
                v[2 * n] = f64::NAN;
            }
            let g: Vec<f64> = (0..rows * n).map(|i| ((i as f64) * 0.91).cos()).collect();
            // the definition along each line of `[outer, n, inner]`
            let reference = |v: &[f64], g: &[f64], outer: usize, inner: usize| {
                let (mut sm, mut lsm) = (vec![0.0; v.len()], vec![0.0; v.len()]);
                let (mut dsm, mut dlsm) = (vec![0.0; v.len()], vec![0.0; v.len()]);
                for o in 0..outer {
                    for i in 0..inner {
                        let at = |j: usize| o * n * inner + j * inner + i;
                        let m = (0..n).map(|j| v[at(j)]).fold(-inf, f64::max);
                        let m = if m == -inf { 0.0 } else { m };
                        let z: f64 = (0..n).map(|j| (v[at(j)] - m).exp()).sum();
                        for j in 0..n {
                            sm[at(j)] = (v[at(j)] - m).exp() / z;
                            lsm[at(j)] = v[at(j)] - m - z.ln();
                        }
                        let gy: f64 = (0..n).map(|j| g[at(j)] * sm[at(j)]).sum();
                        let gs: f64 = (0..n).map(|j| g[at(j)]).sum();
                        for j in 0..n {
                            dsm[at(j)] = sm[at(j)] * (g[at(j)] - gy);
                            dlsm[at(j)] = g[at(j)] - sm[at(j)] * gs;
                        }
                    }
                }
                [sm, lsm, dsm, dlsm]
            };
            let close = |got: &Array, want: &[f64], what: &str| {
                let got = got.to_f64_vec();
                for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
                    let ok = if b.is_nan() {
                        a.is_nan()
                    } else if b.is_infinite() {
                        a == b
                    } else {
                        let eps = if dtype == DType::F32 { 2e-6 } else { 1e-14 };
                        (a - b).abs() <= eps * (1.0 + b.abs())
                    };
                    assert!(ok, "{dtype} {rows}x{n} {what}[{k}]: {a} vs {b}");
                }
            };
            // along the last dim, then the same values as [rows, n, 1] and as [1, n, rows]
            // (the transpose: lines side by side)
            let check = |x: &Array, gx: &Array, d: usize, want: &[Vec<f64>; 4], what: &str| {
                let (y, ly) = (x.softmax(d), x.log_softmax(d));
                close(&y, &want[0], &format!("{what} softmax"));
                close(&ly, &want[1], &format!("{what} log_softmax"));
                close(
                    &y.softmax_backward(gx, d),
                    &want[2],
                    &format!("{what} softmax'"),
                );
                close(
                    &ly.log_softmax_backward(gx, d),
                    &want[3],
                    &format!("{what} log_softmax'"),
                );
            };
            let x = Array::from_vec(v.clone(), &[rows, n]).to_dtype(dtype);
            let gx = Array::from_vec(g.clone(), &[rows, n]).to_dtype(dtype);
            check(&x, &gx, 1, &reference(&v, &g, rows, 1), "rows");
            let xt = x.t().contiguous().reshape(&[1, n, rows]);
            let gt = gx.t().contiguous().reshape(&[1, n, rows]);
            let (vt, gtv) = (xt.to_f64_vec(), gt.to_f64_vec());
            check(&xt, &gt, 1, &reference(&vt, &gtv, 1, rows), "columns");
        }
    }
}

/// The smallest normal float of `dtype`.
fn tiny(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f64::from(f32::MIN_POSITIVE),
        _ => f64::MIN_POSITIVE,
    }
}

/// `a` with the entries of magnitude below the smallest normal float 0, and how many were
/// (subnormal or not: a composition's f64 weights reach below 1e-308 only through ones that
/// underflow in the exponential).
fn flushed(a: &ferrograd_array::Array) -> (ferrograd_array::Array, usize) {
    let small = a.abs().lt_scalar(tiny(a.dtype()));
    let count = small.logical_and(&a.ne_scalar(0.0)).to_vec::<bool>();
    let zero = ferrograd_array::Array::full(&[], 0.0, a.dtype());
    (
        small.where_cond(&zero, a),
        count.iter().filter(|&&c| c).count(),
    )
}

/// Attention's weights in one pass equal the scores scaled, masked with `-inf` above the
/// diagonal (with the causal mask) and put through `softmax`, bit for bit, except that
/// weights below the smallest normal float are 0 (scores of a wide spread make many: the
/// test counts them): square, wide (`l < s`) and tall score matrices, a row holding NaN, a
/// transposed view, and enough matrices to split across threads; the masked entries are
/// exactly 0 and each row sums to 1.
#[test]
fn attention_softmax_is_the_softmax_of_the_scaled_scores_masked_or_not() {
    use ferrograd_array::Array;
    let mut rng = Generator::new(61);
    let mut flushes = [0usize; 4];
    for (d, dtype) in [DType::F32, DType::F64].into_iter().enumerate() {
        for (shape, spread) in [
            (vec![1usize, 1], 3.0),
            (vec![3, 5, 5], 3.0),
            (vec![2, 4, 7], 3.0),
            (vec![2, 7, 3], 3.0),
            (vec![2, 3, 20, 37], 3.0),
            (vec![16, 4, 64, 64], 3.0),
            // exponents from 0 down to past the subnormals' end
            (vec![4, 40, 40], 400.0),
            (vec![2, 33, 33], 3000.0),
        ] {
            let (l, s) = (shape[shape.len() - 2], shape[shape.len() - 1]);
            // (f64's exponentials underflow 8x further out)
            let spread = if dtype == DType::F64 {
                8.0 * spread
            } else {
                spread
            };
            let mut x = rng.normal(&shape, 0.0, spread, dtype);
            if shape == [3, 5, 5] {
                let mut v = x.to_f64_vec();
                v[2 * 25 + 3 * 5 + 1] = f64::NAN;
                x = Array::from_vec(v, &shape).to_dtype(dtype);
            }
            for (scores, causal) in [
                (x.clone(), true),
                (x.transpose(-2, -1).contiguous().transpose(-2, -1), true),
                (x.clone(), false),
            ] {
                let got = scores.attention_softmax(0.3, causal);
                let allowed = Array::ones(&[l, s], dtype)
                    .tril(if causal { 0 } else { s as i64 })
                    .gt_scalar(0.0);
                let minus_inf = Array::full(&[], f64::NEG_INFINITY, dtype);
                let (want, flushed) = flushed(
                    &allowed
                        .where_cond(&scores.mul_scalar(0.3), &minus_inf)
                        .softmax(-1),
                );
                flushes[2 * d + usize::from(causal)] += flushed;
                assert!(got.bit_eq(&want), "{dtype} {shape:?} causal {causal}");
                let values = got.to_f64_vec();
                // (a row holding NaN is NaN throughout, as softmax's)
                for (r, row) in values.chunks(s).enumerate() {
                    if row.iter().any(|v| v.is_nan()) {
                        assert!(row.iter().all(|v| v.is_nan()), "{shape:?} row {r}");
                        continue;
                    }
                    let i = if causal { r % l } else { s };
                    assert!(
                        row[(i + 1).min(s)..].iter().all(|&v| v == 0.0),
                        "{shape:?} row {r}"
                    );
                    let sum: f64 = row.iter().sum();
                    assert!((sum - 1.0).abs() < 1e-5, "{shape:?} row {r}: {sum}");
                }
            }
        }
    }
    assert!(flushes.iter().all(|&n| n >= 20), "{flushes:?} flushed");
    let msg = panic_message(|| {
        Array::zeros(&[4], DType::F32).attention_softmax(1.0, true);
    });
    assert!(
        msg.contains("attention_softmax") && msg.contains("[..., l, s]") && msg.contains("[4]"),
        "{msg}"
    );
}

/// Its gradient in one pass equals `softmax_backward` then the scaling, bit for bit, except
/// that results of magnitude below the smallest normal float are 0 (weights of a wide
/// spread make many), on matrices split across threads or not, with NaN passed through.
#[test]
fn attention_softmax_backward_is_the_scaled_softmax_gradient() {
    use ferrograd_array::Array;
    let mut rng = Generator::new(62);
    let mut flushes = [0usize; 2];
    for (d, dtype) in [DType::F32, DType::F64].into_iter().enumerate() {
        for (shape, spread) in [
            (vec![1usize, 1], 3.0),
            (vec![3, 5, 5], 3.0),
            (vec![2, 7, 3], 3.0),
            (vec![16, 4, 64, 64], 3.0),
            (vec![4, 40, 40], 60.0),
            (vec![2, 33, 33], 600.0),
        ] {
            let (spread, g_spread) = match (dtype, spread > 3.0) {
                (DType::F64, true) => (8.0 * spread, 1e-3),
                (_, true) => (spread, 1e-3),
                _ => (spread, 1.0),
            };
            let y = rng
                .normal(&shape, 0.0, spread, dtype)
                .attention_softmax(1.0, true);
            let mut g = rng.normal(&shape, 0.0, g_spread, dtype);
            if shape == [3, 5, 5] {
                let mut v = g.to_f64_vec();
                v[2 * 25 + 3 * 5 + 1] = f64::NAN;
                g = Array::from_vec(v, &shape).to_dtype(dtype);
            }
            let got = y.attention_softmax_backward(&g, 0.7);
            let (want, flushed) = flushed(&y.softmax_backward(&g, -1).mul_scalar(0.7));
            flushes[d] += flushed;
            assert!(got.bit_eq(&want), "{dtype} {shape:?}");
            if shape == [3, 5, 5] {
                let v = got.to_f64_vec();
                assert!(v[2 * 25 + 3 * 5..][..5].iter().all(|v| v.is_nan()));
            }
        }
    }
    assert!(flushes.iter().all(|&n| n >= 10), "{flushes:?} flushed");
    let y = Array::zeros(&[2, 3], DType::F32);
    for (g, want) in [
        (Array::zeros(&[3, 2], DType::F32), "[2, 3] and [3, 2]"),
        (Array::zeros(&[2, 3], DType::F64), "f64"),
    ] {
        let msg = panic_message(|| {
            y.attention_softmax_backward(&g, 1.0);
        });
        assert!(
            msg.contains("attention_softmax_backward") && msg.contains(want),
            "{msg}"
        );
    }
}
