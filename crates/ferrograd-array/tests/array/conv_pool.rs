use ferrograd_array::{Array, Conv2dParams, DType, Generator, Pool2dParams};
use rand::Rng;

use crate::common::*;

/// Direct convolution by its definition.
fn naive_conv(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    p: Conv2dParams,
) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, wd] = xs;
    let [o, cg, kh, kw] = ws;
    let og = o / p.groups;
    let oh = (h + 2 * p.padding.0 - p.dilation.0 * (kh - 1) - 1) / p.stride.0 + 1;
    let ow = (wd + 2 * p.padding.1 - p.dilation.1 * (kw - 1) - 1) / p.stride.1 + 1;
    let mut y = vec![0.0; n * o * oh * ow];
    for ni in 0..n {
        for oi in 0..o {
            let g = oi / og;
            for yi in 0..oh {
                for xi in 0..ow {
                    let mut s = b.map_or(0.0, |b| b[oi]);
                    for ci in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (yi * p.stride.0 + i * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let ix = (xi * p.stride.1 + j * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let xv = x[((ni * c + g * cg + ci) * h + iy as usize) * wd
                                        + ix as usize];
                                    s += xv * w[((oi * cg + ci) * kh + i) * kw + j];
                                }
                            }
                        }
                    }
                    y[((ni * o + oi) * oh + yi) * ow + xi] = s;
                }
            }
        }
    }
    (y, [n, o, oh, ow])
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn random_conv(rng: &mut Generator) -> ([usize; 4], [usize; 4], Conv2dParams) {
    let groups = [1, 1, 2, 3][rng.rng().random_range(0..4)];
    let cg = rng.rng().random_range(1..3);
    let og = rng.rng().random_range(1..3);
    let p = Conv2dParams {
        stride: (rng.rng().random_range(1..3), rng.rng().random_range(1..3)),
        padding: (rng.rng().random_range(0..4), rng.rng().random_range(0..4)),
        dilation: (rng.rng().random_range(1..3), rng.rng().random_range(1..3)),
        groups,
    };
    let (kh, kw) = (rng.rng().random_range(1..4), rng.rng().random_range(1..4));
    let h = p.dilation.0 * (kh - 1) + 1 + rng.rng().random_range(0..4);
    let w = p.dilation.1 * (kw - 1) + 1 + rng.rng().random_range(0..4);
    let n = rng.rng().random_range(1..4);
    ([n, cg * groups, h, w], [og * groups, cg, kh, kw], p)
}

#[test]
fn conv2d_forward_matches_the_definition() {
    let mut rng = Generator::new(50);
    for dtype in [DType::F64, DType::F32] {
        for _ in 0..40 {
            let (xs, ws, p) = random_conv(&mut rng);
            let x = case_in(&mut rng, &xs, dtype, &LAYOUTS[..3], -1.0, 1.0);
            let w = case_in(&mut rng, &ws, dtype, &LAYOUTS[..3], -1.0, 1.0);
            let b = case(&mut rng, &[ws[0]], dtype, Layout::Contiguous, -1.0, 1.0);
            let got = x.array.conv2d(&w.array, Some(&b.array), p);
            let (want, shape) = naive_conv(&x.values, xs, &w.values, ws, Some(&b.values), p);
            assert_eq!(got.shape(), &shape, "{xs:?} {ws:?} {p:?}");
            let (rtol, atol) = tol(dtype);
            assert_close(&got.to_f64_vec(), &want, rtol * 10.0, atol * 10.0);
        }
    }
}

#[test]
fn conv2d_gradients_are_the_adjoints_of_the_forward() {
    // For a linear map y = A x: <A x, dy> = <x, Aᵀ dy>. The input gradient is Aᵀ for the
    // input, the weight gradient is the adjoint in the weight.
    let mut rng = Generator::new(51);
    // Random small geometries, then larger ones whose products take gemm's other paths (a
    // weight gradient with fewer taps than output channels over 100 positions).
    let fixed = [
        ([2, 2, 10, 10], [8, 2, 1, 1], Conv2dParams::default()),
        (
            [2, 4, 12, 12],
            [12, 2, 1, 2],
            Conv2dParams {
                groups: 2,
                ..Default::default()
            },
        ),
    ];
    for i in 0..40 + fixed.len() {
        let (xs, ws, p) = fixed
            .get(i.wrapping_sub(40))
            .copied()
            .unwrap_or_else(|| random_conv(&mut rng));
        let x = case(&mut rng, &xs, DType::F64, Layout::Contiguous, -1.0, 1.0);
        let w = case(&mut rng, &ws, DType::F64, Layout::Contiguous, -1.0, 1.0);
        let y = x.array.conv2d(&w.array, None, p);
        let dy = case(&mut rng, y.shape(), DType::F64, Layout::Permuted, -1.0, 1.0);
        let dx = dy.array.conv2d_backward_input(&w.array, &xs, p);
        let dw = dy.array.conv2d_backward_weight(&x.array, &ws, p);
        assert_eq!(dx.shape(), &xs);
        assert_eq!(dw.shape(), &ws);
        let lhs = dot(&y.to_f64_vec(), &dy.values);
        assert_close(&[dot(&x.values, &dx.to_f64_vec())], &[lhs], 1e-10, 1e-10);
        assert_close(&[dot(&w.values, &dw.to_f64_vec())], &[lhs], 1e-10, 1e-10);
    }
}

#[test]
fn conv2d_into_writes_the_same_result() {
    let mut rng = Generator::new(52);
    let x = rng.normal(&[2, 3, 8, 8], 0.0, 1.0, DType::F32);
    let w = rng.normal(&[4, 3, 3, 3], 0.0, 1.0, DType::F32);
    let p = Conv2dParams {
        padding: (1, 1),
        ..Default::default()
    };
    let mut out = Array::zeros(&[2, 4, 8, 8], DType::F32);
    x.conv2d_into(&w, None, p, &mut out);
    assert_eq!(out.to_vec::<f32>(), x.conv2d(&w, None, p).to_vec::<f32>());
}

fn random_pool(rng: &mut Generator) -> ([usize; 4], Pool2dParams) {
    let k = (rng.rng().random_range(1..4), rng.rng().random_range(1..4));
    let p = Pool2dParams {
        kernel: k,
        stride: (rng.rng().random_range(1..4), rng.rng().random_range(1..4)),
        padding: (
            rng.rng().random_range(0..=k.0 / 2),
            rng.rng().random_range(0..=k.1 / 2),
        ),
    };
    let h = k.0 + rng.rng().random_range(0..5);
    let w = k.1 + rng.rng().random_range(0..5);
    (
        [
            rng.rng().random_range(1..3),
            rng.rng().random_range(1..3),
            h,
            w,
        ],
        p,
    )
}

/// Per output position of each plane, the in-bounds input positions of its window.
fn windows(xs: [usize; 4], p: Pool2dParams) -> (usize, usize, Vec<Vec<usize>>, Vec<usize>) {
    let [_, _, h, w] = xs;
    let oh = (h + 2 * p.padding.0 - p.kernel.0) / p.stride.0 + 1;
    let ow = (w + 2 * p.padding.1 - p.kernel.1) / p.stride.1 + 1;
    let mut win = Vec::new();
    let mut full = Vec::new();
    for y in 0..oh {
        for x in 0..ow {
            let mut v = Vec::new();
            for i in 0..p.kernel.0 {
                for j in 0..p.kernel.1 {
                    let iy = (y * p.stride.0 + i) as isize - p.padding.0 as isize;
                    let ix = (x * p.stride.1 + j) as isize - p.padding.1 as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        v.push(iy as usize * w + ix as usize);
                    }
                }
            }
            win.push(v);
            full.push(p.kernel.0 * p.kernel.1);
        }
    }
    (oh, ow, win, full)
}

#[test]
fn max_pool_forward_and_backward() {
    let mut rng = Generator::new(53);
    for _ in 0..40 {
        let (xs, p) = random_pool(&mut rng);
        let x = case_in(&mut rng, &xs, DType::F64, &LAYOUTS[..3], -1.0, 1.0);
        let (y, idx) = x.array.max_pool2d(p);
        // the indices alone (values in scratch) are the same
        assert!(x.array.max_pool2d_indices(p).bit_eq(&idx), "{p:?} {xs:?}");
        let (oh, ow, win, _) = windows(xs, p);
        assert_eq!(y.shape(), &[xs[0], xs[1], oh, ow]);
        let (yv, iv) = (y.to_f64_vec(), idx.to_vec::<i64>());
        let hw = xs[2] * xs[3];
        for plane in 0..xs[0] * xs[1] {
            for (o, wv) in win.iter().enumerate() {
                let vals: Vec<f64> = wv.iter().map(|&i| x.values[plane * hw + i]).collect();
                let best = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let first = wv[vals.iter().position(|&v| v == best).unwrap()];
                assert_eq!(yv[plane * oh * ow + o], best);
                assert_eq!(iv[plane * oh * ow + o], first as i64);
            }
        }
        // backward routes each output gradient to its chosen input, summing overlaps
        let dy = case(
            &mut rng,
            y.shape(),
            DType::F64,
            Layout::Contiguous,
            -1.0,
            1.0,
        );
        let dx = dy.array.max_pool2d_backward(&idx, &xs);
        let mut want = vec![0.0; x.values.len()];
        for (k, &i) in iv.iter().enumerate() {
            want[(k / (oh * ow)) * hw + i as usize] += dy.values[k];
        }
        assert_close(&dx.to_f64_vec(), &want, 1e-12, 1e-12);
    }
}

#[test]
fn avg_pool_forward_and_backward() {
    let mut rng = Generator::new(54);
    for _ in 0..40 {
        let (xs, p) = random_pool(&mut rng);
        let include = rng.rng().random_bool(0.5);
        let x = case_in(&mut rng, &xs, DType::F64, &LAYOUTS[..3], -1.0, 1.0);
        let y = x.array.avg_pool2d(p, include);
        let (oh, ow, win, full) = windows(xs, p);
        let hw = xs[2] * xs[3];
        let mut want = Vec::new();
        for plane in 0..xs[0] * xs[1] {
            for (o, wv) in win.iter().enumerate() {
                let s: f64 = wv.iter().map(|&i| x.values[plane * hw + i]).sum();
                want.push(s / if include { full[o] } else { wv.len() } as f64);
            }
        }
        assert_eq!(y.shape(), &[xs[0], xs[1], oh, ow]);
        assert_close(&y.to_f64_vec(), &want, 1e-12, 1e-12);
        // avg pooling is linear: its backward is its adjoint
        let dy = case(
            &mut rng,
            y.shape(),
            DType::F64,
            Layout::Contiguous,
            -1.0,
            1.0,
        );
        let dx = dy.array.avg_pool2d_backward(&xs, p, include);
        assert_close(
            &[dot(&x.values, &dx.to_f64_vec())],
            &[dot(&want, &dy.values)],
            1e-10,
            1e-10,
        );
    }
}

/// Ties go to the first maximum in window order and a NaN beats every number, inside the
/// image and at its padded edges; `gather_planes` with the indices returns the pooled values.
#[test]
fn max_pool_ties_and_nans() {
    let mut rng = Generator::new(54);
    for _ in 0..40 {
        let (mut xs, p) = random_pool(&mut rng);
        xs[2] += rng.rng().random_range(0..9);
        xs[3] += rng.rng().random_range(0..9);
        let n: usize = xs.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| match rng.rng().random_range(0..10) {
                0 => f32::NAN,
                k => (k % 3) as f32,
            })
            .collect();
        let x = Array::from_vec(values.clone(), &xs);
        let (y, idx) = x.max_pool2d(p);
        assert!(x.max_pool2d_indices(p).bit_eq(&idx), "{p:?} {xs:?}");
        let (oh, ow, win, _) = windows(xs, p);
        let (yv, iv) = (y.to_vec::<f32>(), idx.to_vec::<i64>());
        let hw = xs[2] * xs[3];
        for plane in 0..xs[0] * xs[1] {
            for (o, wv) in win.iter().enumerate() {
                let at = |i: usize| values[plane * hw + i];
                let want = match wv.iter().find(|&&i| at(i).is_nan()) {
                    Some(&i) => i,
                    None => {
                        let best = wv.iter().map(|&i| at(i)).fold(f32::NEG_INFINITY, f32::max);
                        *wv.iter().find(|&&i| at(i) == best).unwrap()
                    }
                };
                let k = plane * oh * ow + o;
                assert_eq!(iv[k], want as i64, "{p:?} {xs:?} output {o}");
                assert_eq!(yv[k].to_bits(), at(want).to_bits());
            }
        }
        let picked = x.gather_planes(&idx).to_vec::<f32>();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&picked), bits(&yv));
    }
}
