use ferrograd_array::{Array, DType, Generator};
use rand::Rng;

use crate::common::*;

/// Groups the values of an array of `shape` by the kept dims: one Vec per result element,
/// in result order, with the reduced elements in row-major order.
fn groups(values: &[f64], shape: &[usize], dims: &[usize]) -> (Vec<usize>, Vec<Vec<f64>>) {
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !dims.contains(d)).collect();
    let out_shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
    let mut g = vec![Vec::new(); numel(&out_shape)];
    for (i, &v) in values.iter().enumerate() {
        let idx = unravel(i, shape);
        let o: Vec<usize> = kept.iter().map(|&d| idx[d]).collect();
        g[ravel(&o, &out_shape)].push(v);
    }
    (out_shape, g)
}

fn random_dims(rng: &mut Generator, nd: usize) -> Vec<usize> {
    (0..nd).filter(|_| rng.rng().random_bool(0.5)).collect()
}

type Reduction = (
    &'static str,
    fn(&Array, &[usize], bool) -> Array,
    fn(&[f64]) -> f64,
);

fn logsumexp(x: &[f64]) -> f64 {
    let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + x.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

#[test]
fn reductions_over_random_dims_match_the_reference() {
    let cases: [Reduction; 6] = [
        ("sum", |a, d, k| a.sum_dim(d, k), |x| x.iter().sum()),
        ("prod", |a, d, k| a.prod_dim(d, k), |x| x.iter().product()),
        (
            "mean",
            |a, d, k| a.mean_dim(d, k),
            |x| x.iter().sum::<f64>() / x.len() as f64,
        ),
        (
            "amax",
            |a, d, k| a.amax_dim(d, k),
            |x| x.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        ),
        (
            "amin",
            |a, d, k| a.amin_dim(d, k),
            |x| x.iter().cloned().fold(f64::INFINITY, f64::min),
        ),
        ("logsumexp", |a, d, k| a.logsumexp_dim(d, k), logsumexp),
    ];
    let mut rng = Generator::new(20);
    for (name, op, reference) in cases {
        for dtype in [DType::F32, DType::F64] {
            for _ in 0..30 {
                let shape = random_shape(&mut rng, 4, 4, false);
                let dims = random_dims(&mut rng, shape.len());
                let keepdim = rng.rng().random_bool(0.5);
                let layout = LAYOUTS[rng.rng().random_range(0..4)];
                let c = case(&mut rng, &shape, dtype, layout, 0.5, 1.5);
                let got = op(&c.array, &dims, keepdim);
                let (out_shape, g) = groups(&c.values, &shape, &dims);
                let want_shape: Vec<usize> = if keepdim {
                    shape
                        .iter()
                        .enumerate()
                        .map(|(d, &s)| if dims.contains(&d) { 1 } else { s })
                        .collect()
                } else {
                    out_shape
                };
                assert_eq!(
                    got.shape(),
                    want_shape.as_slice(),
                    "{name} {shape:?} {dims:?}"
                );
                let want: Vec<f64> = g.iter().map(|x| reference(x)).collect();
                let (rtol, atol) = tol(dtype);
                assert_close(&got.to_f64_vec(), &want, rtol * 10.0, atol * 10.0);
            }
        }
    }
}

/// Sums and means over dims on both sides of the kept ones (a convolution's bias gradient,
/// `[N, C, H, W]` summed over N, H and W) fold the input in place; small and large enough
/// to split across threads, the same result as the reference.
#[test]
fn sums_around_kept_middle_dims_match_the_reference() {
    let mut rng = Generator::new(21);
    for (shape, dims) in [
        (vec![3, 5, 7, 9], vec![0, 2, 3]),
        (vec![4, 2, 3, 17], vec![0, 3]),
        (vec![2, 3, 4, 5, 6], vec![0, 1, 4]),
        (vec![8, 16, 80, 80], vec![0, 2, 3]),
    ] {
        for dtype in [DType::F32, DType::F64] {
            let c = case(&mut rng, &shape, dtype, Layout::Contiguous, -1.0, 1.5);
            let (_, g) = groups(&c.values, &shape, &dims);
            let (rtol, atol) = tol(dtype);
            let sums: Vec<f64> = g.iter().map(|x| x.iter().sum()).collect();
            let got = c.array.sum_dim(dims.as_slice(), false);
            assert_close(&got.to_f64_vec(), &sums, rtol * 10.0, atol * 100.0);
            let mean = |x: &Vec<f64>| x.iter().sum::<f64>() / x.len() as f64;
            let means: Vec<f64> = g.iter().map(mean).collect();
            let got = c.array.mean_dim(dims.as_slice(), true);
            assert_close(&got.to_f64_vec(), &means, rtol * 10.0, atol * 10.0);
        }
    }
}

/// A reduction adds in an order set by the shape and the reduced dims alone, so a view (a
/// slice, a transpose, a broadcast) gives the same bits as its contiguous copy: optimize
/// mode moves slices across ops, and its exact replay counts on that. A sum over the rows
/// of a slice `[33, 37]` of `[33, 40]` added its columns 16 lanes at a time (after a
/// transposed copy) while the contiguous copy added whole rows in order.
#[test]
fn reductions_give_the_same_bits_on_a_view_as_on_its_contiguous_copy() {
    type Along = fn(&Array, &[usize]) -> Array;
    let ops: [(&str, Along); 10] = [
        ("sum", |a, d| a.sum_dim(d, false)),
        ("mean", |a, d| a.mean_dim(d, true)),
        ("prod", |a, d| a.prod_dim(d, false)),
        ("logsumexp", |a, d| a.logsumexp_dim(d, false)),
        ("var", |a, d| a.var_dim(d, 1, false)),
        ("norm", |a, d| a.norm_dim(2.0, d, false)),
        ("amax", |a, d| a.amax_dim(d, false)),
        ("softmax", |a, d| a.softmax(d.first().copied().unwrap_or(0))),
        ("log_softmax", |a, d| {
            a.log_softmax(d.last().copied().unwrap_or(0))
        }),
        ("cumsum", |a, d| a.cumsum(d.first().copied().unwrap_or(0))),
    ];
    let mut rng = Generator::new(22);
    let fixed = [
        (
            Array::from_vec(
                (0..1320).map(|i| (i as f64 * 0.37).sin()).collect(),
                &[33, 40],
            )
            .narrow(1, 1, 37),
            vec![0],
        ),
        (rng.normal(&[40, 33], 0.0, 1.0, DType::F32).t(), vec![0]),
        (
            rng.normal(&[6, 20, 5], 0.0, 1.0, DType::F64)
                .permute(&[2, 1, 0]),
            vec![0, 2],
        ),
        // the kept dim outermost in memory: each kept element's elements one run
        (
            rng.normal(&[20, 5, 6], 0.0, 1.0, DType::F64)
                .permute(&[1, 0, 2]),
            vec![0, 2],
        ),
    ];
    let mut differ = Vec::new();
    for (name, op) in ops {
        for (a, dims) in &fixed {
            if !op(a, dims).bit_eq(&op(&a.contiguous(), dims)) {
                differ.push(format!("{name} {:?} over {dims:?}", a.shape()));
            }
        }
        for dtype in [DType::F32, DType::F64] {
            for _ in 0..40 {
                let shape = random_shape(&mut rng, 3, 40, false);
                let dims = random_dims(&mut rng, shape.len());
                if shape.is_empty() && ["softmax", "log_softmax", "cumsum"].contains(&name) {
                    continue; // (along a dim: none in a 0-d array)
                }
                let layout = LAYOUTS[rng.rng().random_range(1..4)];
                let c = case(&mut rng, &shape, dtype, layout, -1.0, 1.5);
                let (view, copy) = (op(&c.array, &dims), op(&c.array.contiguous(), &dims));
                if !view.bit_eq(&copy) {
                    differ.push(format!(
                        "{name} {dtype:?} {shape:?} {layout:?} over {dims:?}"
                    ));
                }
            }
        }
    }
    assert!(
        differ.is_empty(),
        "views and their copies differ: {differ:#?}"
    );
}

#[test]
fn full_reductions_and_negative_dims() {
    let a = Array::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    assert_eq!(a.sum().item::<f64>(), 21.0);
    assert_eq!(a.sum().shape(), &[] as &[usize]);
    assert_eq!(a.prod().item::<f64>(), 720.0);
    assert_eq!(a.mean().item::<f64>(), 3.5);
    assert_eq!(a.max().item::<f64>(), 6.0);
    assert_eq!(a.min().item::<f64>(), 1.0);
    assert_eq!(a.sum_dim(-1, false).to_vec::<f64>(), vec![6.0, 15.0]);
    assert_eq!(a.sum_dim([0, 1], true).shape(), &[1, 1]);
    assert_eq!(
        a.sum_dim(vec![-2], false).to_vec::<f64>(),
        vec![5.0, 7.0, 9.0]
    );
    assert_eq!(a.sum_dim(&[1usize][..], true).shape(), &[2, 1]);
}

#[test]
fn large_sums_take_the_parallel_and_leading_paths() {
    let mut rng = Generator::new(21);
    let c = case(
        &mut rng,
        &[1000, 600],
        DType::F64,
        Layout::Contiguous,
        -1.0,
        1.0,
    );
    let total: f64 = c.values.iter().sum();
    assert_close(&[c.array.sum().item::<f64>()], &[total], 1e-10, 1e-10);
    let (_, g) = groups(&c.values, &[1000, 600], &[0]);
    let want: Vec<f64> = g.iter().map(|x| x.iter().sum()).collect();
    assert_close(&c.array.sum_dim(0, false).to_f64_vec(), &want, 1e-10, 1e-10);
    let want_mean: Vec<f64> = want.iter().map(|s| s / 1000.0).collect();
    assert_close(
        &c.array.mean_dim(0, true).to_f64_vec(),
        &want_mean,
        1e-10,
        1e-12,
    );
    let (_, g) = groups(&c.values, &[1000, 600], &[1]);
    let want: Vec<f64> = g.iter().map(|x| x.iter().sum()).collect();
    assert_close(&c.array.sum_dim(1, false).to_f64_vec(), &want, 1e-10, 1e-10);
}

#[test]
fn column_sums_add_the_rows_in_order_bit_for_bit_however_the_columns_are_split() {
    // A bias gradient's column sums: each column the sum of its rows from the first on, in
    // that order, whether the columns run in halves on two cores (while the partner core is
    // awake, as it is just after a product split in halves) or on one thread.
    let mut rng = Generator::new(23);
    let (x, y) = (
        rng.normal(&[256, 256], 0.0, 1.0, DType::F32),
        rng.normal(&[256, 256], 0.0, 1.0, DType::F32),
    );
    for &(rows, cols) in &[(32usize, 800usize), (1056, 800), (17, 4099), (300, 33)] {
        let a = rng.normal(&[rows, cols], 0.0, 1.0, DType::F32);
        let v = a.to_vec::<f32>();
        let sums: Vec<f32> = (0..cols)
            .map(|j| (0..rows).fold(0.0f32, |s, i| s + v[i * cols + j]))
            .collect();
        let means: Vec<f32> = sums.iter().map(|s| s / rows as f32).collect();
        for awake in [false, true] {
            if awake {
                std::hint::black_box(x.matmul(&y));
            }
            let got = a.sum_dim(0, false).to_vec::<f32>();
            let case = format!("[{rows}, {cols}], after a product: {awake}");
            assert!(
                got.iter()
                    .zip(&sums)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
                "{case}"
            );
            let got = a.mean_dim(0, false).to_vec::<f32>();
            assert!(
                got.iter()
                    .zip(&means)
                    .all(|(g, w)| g.to_bits() == w.to_bits()),
                "{case}: mean"
            );
        }
    }
}

#[test]
fn block_sums_are_each_blocks_column_sums_bit_for_bit() {
    // `row_block_sums`: row k the sum over the block of rows from firsts[k], as that block's
    // own `sum_dim(0)` (rows added in order, checked against a scalar fold too), on one
    // thread and split over two cores, and through the blocks' own reductions where their
    // whole-row path does not apply (few columns, a strided input, integers, bools)
    let mut rng = Generator::new(29);
    let (x, y) = (
        rng.normal(&[256, 256], 0.0, 1.0, DType::F32),
        rng.normal(&[256, 256], 0.0, 1.0, DType::F32),
    );
    let every_32: Vec<usize> = (0..33).map(|k| 32 * k).collect();
    let cases: [(&[usize], usize, &[usize]); 5] = [
        (&[1056, 800], 32, &every_32),
        (&[100, 33], 7, &[93, 0, 5, 6]),
        (&[40, 8], 5, &[0, 35, 10]),
        (&[64, 20], 3, &[]),
        (&[300, 40], 16, &[0, 16, 200, 284]),
    ];
    for &(shape, rows, firsts) in &cases {
        for dtype in [DType::F32, DType::F64, DType::I64, DType::Bool] {
            let a = match dtype {
                DType::Bool => rng.normal(shape, 0.0, 1.0, DType::F32).gt_scalar(0.0),
                DType::I64 => rng
                    .uniform(shape, -50.0, 50.0, DType::F32)
                    .to_dtype(DType::I64),
                d => rng.normal(shape, 0.0, 1.0, d),
            };
            for (input, layout) in [
                (a.clone(), "contiguous"),
                (a.t().contiguous().t(), "strided"),
            ] {
                for awake in [false, true] {
                    if awake {
                        std::hint::black_box(x.matmul(&y));
                    }
                    let case = format!("{shape:?} {dtype} {layout}, after a product: {awake}");
                    let got = input.row_block_sums(firsts, rows, false);
                    assert_eq!(got.shape(), &[firsts.len(), shape[1]], "{case}");
                    for (k, &f) in firsts.iter().enumerate() {
                        let want = input.narrow(0, f, rows).sum_dim(0, false);
                        let row = got.narrow(0, k, 1).reshape(&[shape[1]]);
                        assert!(row.bit_eq(&want), "{case}: block {k}");
                        if dtype.is_float() {
                            let means = input.row_block_sums(firsts, rows, true);
                            let want = input.narrow(0, f, rows).mean_dim(0, false);
                            assert!(
                                means.narrow(0, k, 1).reshape(&[shape[1]]).bit_eq(&want),
                                "{case}: block {k}, mean"
                            );
                        }
                    }
                    if dtype == DType::F32 && layout == "contiguous" {
                        let (v, cols) = (input.to_vec::<f32>(), shape[1]);
                        let fold: Vec<f32> = (firsts.iter())
                            .flat_map(|&f| {
                                let v = &v;
                                (0..cols).map(move |j| {
                                    (f..f + rows).fold(0.0f32, |s, i| s + v[i * cols + j])
                                })
                            })
                            .collect();
                        let got = got.to_vec::<f32>();
                        assert!(
                            got.iter()
                                .zip(&fold)
                                .all(|(g, w)| g.to_bits() == w.to_bits()),
                            "{case}: against the scalar fold"
                        );
                    }
                }
            }
        }
    }
    let a = Array::zeros(&[10, 20], DType::F32);
    let message = panic_message(|| drop(a.row_block_sums(&[0, 8], 3, false)));
    assert!(
        message.contains("row_block_sums") && message.contains("3 rows from row 8"),
        "{message}"
    );
    let message =
        panic_message(|| drop(Array::zeros(&[4], DType::F32).row_block_sums(&[0], 1, false)));
    assert!(
        message.contains("takes a 2-D array, got shape [4]"),
        "{message}"
    );
}

#[test]
fn empty_reductions() {
    let e = Array::zeros(&[0, 3], DType::F64);
    assert_eq!(e.sum().item::<f64>(), 0.0);
    assert_eq!(e.sum_dim(0, false).to_vec::<f64>(), vec![0.0; 3]);
    assert_eq!(e.prod_dim(0, false).to_vec::<f64>(), vec![1.0; 3]);
    assert!(e.mean().item::<f64>().is_nan());
    assert_eq!(e.sum_dim(1, false).shape(), &[0]);
    // the max and min over a dim that is not empty, of an empty tensor: empty (they
    // refused); over an empty dim, refused, as in PyTorch
    for keepdim in [false, true] {
        let want: &[usize] = if keepdim { &[0, 1] } else { &[0] };
        assert_eq!(e.amax_dim(1, keepdim).shape(), want);
        assert_eq!(e.amin_dim(1, keepdim).shape(), want);
    }
    let message = std::panic::catch_unwind(|| e.amax_dim(0, false))
        .expect_err("an empty dim has no max")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("amax_dim: cannot take the max or min of zero elements (shape [0, 3], an empty dim reduced)"),
        "{message}"
    );
    // variance with no degrees of freedom left: NaN (0/0) or infinity, never negative
    let x = Array::from_vec(vec![1.0f64, 3.0], &[1, 2]);
    assert!(e
        .var_dim(0, 1, false)
        .to_vec::<f64>()
        .iter()
        .all(|v| v.is_nan()));
    assert_eq!(x.var_dim(1, 2, false).to_vec::<f64>(), vec![f64::INFINITY]);
    assert_eq!(x.var_dim(1, 3, false).to_vec::<f64>(), vec![f64::INFINITY]);
}

#[test]
fn bool_and_integer_reductions() {
    let m = Array::from_vec(vec![true, false, true, true], &[2, 2]);
    assert_eq!(m.sum().item::<i64>(), 3);
    assert_eq!(m.sum_dim(1, false).to_vec::<i64>(), vec![1, 2]);
    let i = Array::from_vec(vec![3i64, -1, 4], &[3]);
    assert_eq!(i.sum().item::<i64>(), 6);
    assert_eq!(i.amax().item::<i64>(), 4);
    assert_eq!(i.argmin_all().item::<i64>(), 1);
    assert_eq!(i.cumsum(0).to_vec::<i64>(), vec![3, 2, 6]);
}

#[test]
fn max_and_min_with_indices_pick_the_first_tie() {
    let a = Array::from_vec(vec![1.0f32, 3.0, 3.0, 0.0, -1.0, -1.0], &[2, 3]);
    let (v, i) = a.max_dim(1, false);
    assert_eq!(v.to_vec::<f32>(), vec![3.0, 0.0]);
    assert_eq!(i.to_vec::<i64>(), vec![1, 0]);
    let (v, i) = a.min_dim(1, true);
    assert_eq!(v.shape(), &[2, 1]);
    assert_eq!(v.to_vec::<f32>(), vec![1.0, -1.0]);
    assert_eq!(i.to_vec::<i64>(), vec![0, 1]);
    assert_eq!(a.argmax(0, false).to_vec::<i64>(), vec![0, 0, 0]);
    assert_eq!(a.argmax_all().item::<i64>(), 1);
    assert_eq!(a.argmin_all().item::<i64>(), 4);
    let n = Array::from_vec(vec![1.0f64, f64::NAN, 5.0], &[3]);
    let (v, i) = n.max_dim(0, false);
    assert!(v.item::<f64>().is_nan());
    assert_eq!(i.item::<i64>(), 1);
    let mut values = Array::zeros(&[2], DType::F32);
    let mut indices = Array::zeros(&[2], DType::I64);
    a.max_dim_into(1, false, &mut values, &mut indices);
    assert_eq!(indices.to_vec::<i64>(), vec![1, 0]);
}

#[test]
fn max_dim_on_random_layouts() {
    let mut rng = Generator::new(22);
    for _ in 0..40 {
        let (shape, d) = shape_and_dim(&mut rng, 3, 5);
        let c = case_in(&mut rng, &shape, DType::F64, &LAYOUTS, -1.0, 1.0);
        let (v, i) = c.array.max_dim(d, false);
        let (_, g) = groups(&c.values, &shape, &[d]);
        for (k, grp) in g.iter().enumerate() {
            let (mut best, mut at) = (grp[0], 0);
            for (j, &x) in grp.iter().enumerate() {
                if x > best {
                    best = x;
                    at = j;
                }
            }
            assert_eq!(v.to_f64_vec()[k], best);
            assert_eq!(i.to_vec::<i64>()[k], at as i64);
        }
    }
}

#[test]
fn variance_std_and_norms() {
    let mut rng = Generator::new(23);
    for _ in 0..30 {
        let shape = random_shape(&mut rng, 3, 5, false);
        let dims = random_dims(&mut rng, shape.len());
        let c = case_in(&mut rng, &shape, DType::F64, &LAYOUTS, -2.0, 2.0);
        let (_, g) = groups(&c.values, &shape, &dims);
        for correction in [0usize, 1] {
            let want: Vec<f64> = g
                .iter()
                .map(|x| {
                    let m = x.iter().sum::<f64>() / x.len() as f64;
                    x.iter().map(|v| (v - m).powi(2)).sum::<f64>()
                        / (x.len() as f64 - correction as f64)
                })
                .collect();
            let got = c
                .array
                .var_dim(dims.as_slice(), correction, false)
                .to_f64_vec();
            assert_close(&got, &want, 1e-10, 1e-12);
            let std: Vec<f64> = want.iter().map(|v| v.sqrt()).collect();
            assert_close(
                &c.array
                    .std_dim(dims.as_slice(), correction, false)
                    .to_f64_vec(),
                &std,
                1e-10,
                1e-12,
            );
        }
        for p in [1.0, 2.0, 3.0, f64::INFINITY] {
            let want: Vec<f64> = g
                .iter()
                .map(|x| {
                    if p.is_infinite() {
                        x.iter().fold(0.0f64, |a, v| a.max(v.abs()))
                    } else {
                        x.iter().map(|v| v.abs().powf(p)).sum::<f64>().powf(1.0 / p)
                    }
                })
                .collect();
            assert_close(
                &c.array.norm_dim(p, dims.as_slice(), false).to_f64_vec(),
                &want,
                1e-10,
                1e-12,
            );
        }
    }
    let a = Array::from_vec(vec![3.0f64, 4.0], &[2]);
    assert_eq!(a.norm(2.0).item::<f64>(), 5.0);
    assert_eq!(a.var(0).item::<f64>(), 0.25);
    assert_eq!(a.std(1).item::<f64>(), 0.5f64.sqrt());
}

#[test]
fn logsumexp_is_stable() {
    let a = Array::from_vec(vec![1000.0f32, 1000.0], &[2]);
    assert_close(
        &[a.logsumexp().item_f64()],
        &[1000.0 + 2f64.ln()],
        1e-6,
        0.0,
    );
    let b = Array::from_vec(vec![f64::NEG_INFINITY, f64::NEG_INFINITY], &[2]);
    assert_eq!(b.logsumexp().item::<f64>(), f64::NEG_INFINITY);
}

#[test]
fn cumsum_along_every_dim() {
    let mut rng = Generator::new(24);
    for _ in 0..30 {
        let shape = random_shape(&mut rng, 3, 4, true);
        if shape.is_empty() {
            continue;
        }
        let d = rng.rng().random_range(0..shape.len());
        let c = case_in(&mut rng, &shape, DType::F64, &LAYOUTS, -1.0, 1.0);
        let want: Vec<f64> = (0..numel(&shape))
            .map(|i| {
                let idx = unravel(i, &shape);
                (0..=idx[d])
                    .map(|k| {
                        let mut j = idx.clone();
                        j[d] = k;
                        c.values[ravel(&j, &shape)]
                    })
                    .sum()
            })
            .collect();
        assert_close(&c.array.cumsum(d).to_f64_vec(), &want, 1e-12, 1e-12);
    }
}

/// The layer norm tests' inputs: (shape, normalized trailing dims, offset of the values).
const LAYER_NORM_CASES: [(&[usize], usize, f64); 6] = [
    (&[3, 1], 1, 0.0),
    (&[5, 15], 1, 0.0),
    (&[4, 16], 1, 0.0),
    (&[2, 3, 37], 1, 1000.0),
    (&[2, 6, 5], 2, 0.0),
    (&[3000, 200], 1, -3.0),
];

/// One of [`LAYER_NORM_CASES`]: the input and an output gradient (a transposed view of a
/// `[m, rows]` array), with the rows' length `m` and their count.
fn layer_norm_case(
    rng: &mut Generator,
    dtype: DType,
    shape: &[usize],
    k: usize,
    offset: f64,
) -> (Array, Array, usize, usize) {
    let x = rng.normal(shape, offset, 2.0, dtype);
    let m: usize = shape[shape.len() - k..].iter().product();
    let rows = x.numel() / m;
    let g = rng
        .normal(&[m, rows], 0.0, 1.0, dtype)
        .transpose(0, 1)
        .reshape(shape);
    (x, g, m, rows)
}

/// Layer normalization's input gradient against the textbook form in f64, `dx = (G -
/// mean(G) - x̂ mean(G x̂)) / σ` with `G = g w`, on the forward test's shapes and a
/// transposed output gradient; and that form against central differences of the forward.
#[test]
fn layer_norm_backward_matches_the_gradient_of_its_definition() {
    let mut rng = Generator::new(72);
    for dtype in [DType::F32, DType::F64] {
        for (shape, k, offset) in LAYER_NORM_CASES {
            let (x, g, m, rows) = layer_norm_case(&mut rng, dtype, shape, k, offset);
            let w = rng.normal(&shape[shape.len() - k..], 1.0, 0.5, dtype);
            let got = x.layer_norm_backward(&w, &g, 1e-5).to_f64_vec();
            let (xs, ws, gs) = (x.to_f64_vec(), w.to_f64_vec(), g.to_f64_vec());
            for r in 0..rows {
                let want = textbook_dx(&xs[r * m..][..m], &gs[r * m..][..m], &ws, 1e-5);
                let scale = want
                    .iter()
                    .chain(&gs[r * m..][..m])
                    .fold(1.0f64, |a, v| a.max(v.abs()));
                let tol = if dtype == DType::F32 { 1e-4 } else { 1e-11 };
                for j in 0..m {
                    assert!(
                        (got[r * m + j] - want[j]).abs() <= tol * scale,
                        "{dtype} {shape:?} row {r} [{j}]: {} vs {}",
                        got[r * m + j],
                        want[j]
                    );
                }
            }
        }
    }
    // the textbook form is the forward's gradient: central differences of Σ g · layer_norm
    let (xs, gs, ws) = (
        [0.3, -1.2, 2.0, 0.7, 0.1],
        [0.5, -0.25, 1.0, 2.0, -1.5],
        [1.5, 0.5, -1.0, 2.0, 1.0],
    );
    let f = |x: &[f64]| -> f64 {
        let mean = x.iter().sum::<f64>() / 5.0;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 5.0;
        (0..5)
            .map(|j| gs[j] * (x[j] - mean) / (var + 1e-5).sqrt() * ws[j])
            .sum()
    };
    let dx = textbook_dx(&xs, &gs, &ws, 1e-5);
    for j in 0..5 {
        let (mut hi, mut lo) = (xs, xs);
        hi[j] += 1e-6;
        lo[j] -= 1e-6;
        let numeric = (f(&hi) - f(&lo)) / 2e-6;
        assert!(
            (numeric - dx[j]).abs() < 1e-8,
            "[{j}]: {numeric} vs {}",
            dx[j]
        );
    }
    let x = Array::zeros(&[2, 3], DType::F32);
    let msg = panic_message(|| {
        x.layer_norm_backward(
            &Array::ones(&[3], DType::F32),
            &Array::zeros(&[3, 2], DType::F32),
            1e-5,
        );
    });
    assert!(
        msg.contains("layer_norm_backward") && msg.contains("[3, 2]") && msg.contains("[2, 3]"),
        "{msg}"
    );
}

/// Layer normalization's weight and bias gradients, `Σ g x̂` and `Σ g` over the rows, against
/// those sums in f64 on the forward test's shapes (3000 rows: parts across threads) and a
/// transposed output gradient.
#[test]
fn layer_norm_param_grads_are_the_row_sums_of_their_definition() {
    let mut rng = Generator::new(73);
    for dtype in [DType::F32, DType::F64] {
        for (shape, k, offset) in LAYER_NORM_CASES {
            let (x, g, m, rows) = layer_norm_case(&mut rng, dtype, shape, k, offset);
            let trailing = &shape[shape.len() - k..];
            let (dw, db) = x.layer_norm_param_grads(&g, trailing, 1e-5);
            assert_eq!((dw.shape(), db.shape()), (trailing, trailing));
            let (xs, gs) = (x.to_f64_vec(), g.to_f64_vec());
            let (mut want_w, mut want_b, mut scale) = (vec![0.0; m], vec![0.0; m], vec![0.0; m]);
            for r in 0..rows {
                let row = &xs[r * m..][..m];
                let mean = row.iter().sum::<f64>() / m as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
                for j in 0..m {
                    let xhat = (row[j] - mean) / (var + 1e-5).sqrt();
                    want_w[j] += gs[r * m + j] * xhat;
                    want_b[j] += gs[r * m + j];
                    scale[j] += gs[r * m + j].abs() * (1.0 + xhat.abs());
                }
            }
            // (the forward's bound: rows around 1000 lose digits to the mean in f32)
            let tol = if dtype == DType::F32 { 1e-4 } else { 1e-11 };
            for (got, want) in [(dw.to_f64_vec(), &want_w), (db.to_f64_vec(), &want_b)] {
                for j in 0..m {
                    assert!(
                        (got[j] - want[j]).abs() <= tol * scale[j],
                        "{dtype} {shape:?} [{j}]: {} vs {}",
                        got[j],
                        want[j]
                    );
                }
            }
        }
    }
    let x = Array::zeros(&[2, 3], DType::F32);
    let msg = panic_message(|| {
        x.layer_norm_param_grads(&Array::zeros(&[2, 3], DType::F32), &[2], 1e-5);
    });
    assert!(
        msg.contains("layer_norm_param_grads") && msg.contains("[2]") && msg.contains("[2, 3]"),
        "{msg}"
    );
}

/// `(G - mean(G) - x̂ mean(G x̂)) / σ` for one row, `G = g w`, in f64.
fn textbook_dx(x: &[f64], g: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let m = x.len() as f64;
    let mean = x.iter().sum::<f64>() / m;
    let sigma = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m + eps).sqrt();
    let xhat: Vec<f64> = x.iter().map(|v| (v - mean) / sigma).collect();
    let big_g: Vec<f64> = g.iter().zip(w).map(|(g, w)| g * w).collect();
    let mean_g = big_g.iter().sum::<f64>() / m;
    let mean_gx = big_g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / m;
    (0..x.len())
        .map(|j| (big_g[j] - mean_g - xhat[j] * mean_gx) / sigma)
        .collect()
}

/// Layer normalization against its definition in f64: rows of 1 to 200 elements (vector
/// running sums and their tails), two trailing dims, rows far from zero (the variance of
/// values around 1000), and enough rows to split across threads.
#[test]
fn layer_norm_matches_its_definition() {
    let mut rng = Generator::new(71);
    for dtype in [DType::F32, DType::F64] {
        for (shape, k, offset) in LAYER_NORM_CASES {
            let x = rng.normal(shape, offset, 2.0, dtype);
            let trailing = &shape[shape.len() - k..];
            let w = rng.normal(trailing, 1.0, 0.5, dtype);
            let b = rng.normal(trailing, 0.0, 0.5, dtype);
            let got = x.layer_norm(&w, &b, 1e-5).to_f64_vec();
            let (xs, ws, bs) = (x.to_f64_vec(), w.to_f64_vec(), b.to_f64_vec());
            let m = ws.len();
            for (r, row) in xs.chunks(m).enumerate() {
                let mean = row.iter().sum::<f64>() / m as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
                for j in 0..m {
                    let want = (row[j] - mean) / (var + 1e-5).sqrt() * ws[j] + bs[j];
                    let tol = if dtype == DType::F32 { 1e-4 } else { 1e-11 };
                    assert!(
                        (got[r * m + j] - want).abs() <= tol * (1.0 + want.abs()),
                        "{dtype} {shape:?} row {r} [{j}]: {} vs {want}",
                        got[r * m + j]
                    );
                }
            }
        }
    }
    let x = Array::zeros(&[2, 3], DType::F32);
    let msg = panic_message(|| {
        x.layer_norm(
            &Array::ones(&[2], DType::F32),
            &Array::zeros(&[2], DType::F32),
            1e-5,
        );
    });
    assert!(
        msg.contains("layer_norm") && msg.contains("[2]") && msg.contains("[2, 3]"),
        "{msg}"
    );
}
