use ferrograd_array::{Array, DType, Generator};
use rand::Rng;

use crate::common::*;

/// Naive matmul of row-major `a: [m, k]` and `b: [k, n]`.
fn naive(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
        }
    }
    c
}

#[test]
fn matrix_products_on_every_layout_and_orientation() {
    let mut rng = Generator::new(30);
    for dtype in [DType::F32, DType::F64] {
        for _ in 0..40 {
            let (m, k, n) = (
                rng.rng().random_range(1..20),
                rng.rng().random_range(0..20),
                rng.rng().random_range(1..20),
            );
            let a = case_in(&mut rng, &[m, k], dtype, &LAYOUTS, -1.0, 1.0);
            let b = case_in(&mut rng, &[k, n], dtype, &LAYOUTS, -1.0, 1.0);
            let got = a.array.matmul(&b.array);
            assert_eq!(got.shape(), &[m, n]);
            let (rtol, _) = tol(dtype);
            assert_close(
                &got.to_f64_vec(),
                &naive(&a.values, &b.values, m, k, n),
                rtol * 10.0,
                rtol * 10.0,
            );
            let mut out = Array::zeros(&[m, n], dtype);
            a.array.matmul_into(&b.array, &mut out);
            assert_eq!(out.to_f64_vec(), got.to_f64_vec());
        }
    }
}

/// Products with a unit dimension (a row times a matrix, a matrix times a column, outer
/// products), which run as vector loops instead of gemm where the layout allows: every
/// layout on either side, rows crossing the loops' blocks and windows, against a naive loop.
/// Infinities in the right operand times zeros in the left give NaN exactly where the naive
/// product does (an outer product's short rows are written as overlapping windows).
#[test]
fn products_with_a_unit_dimension_on_every_layout() {
    let mut rng = Generator::new(34);
    let shapes = [
        (1, 100, 1000),
        (1, 1000, 10),
        (1, 7, 2500),
        (1, 5, 4500),
        (1, 10, 300),
        (1, 15, 200),
        (1, 16, 200),
        (1, 3, 5),
        (1, 2, 9),
        (1, 12, 9),
        (12, 9, 1),
        (300, 1, 10),
        (5, 1, 3),
        (4, 1, 4),
        (17, 1, 15),
        (100, 1, 1000),
        (500, 10, 1),
        (700, 3, 1),
        (300, 100, 1),
        (1, 1, 1),
    ];
    for dtype in [DType::F32, DType::F64] {
        let (rtol, _) = tol(dtype);
        for &(m, k, n) in &shapes {
            for la in LAYOUTS {
                for lb in LAYOUTS {
                    let a = case(&mut rng, &[m, k], dtype, la, -1.0, 1.0);
                    let b = case(&mut rng, &[k, n], dtype, lb, -1.0, 1.0);
                    let want = naive(&a.values, &b.values, m, k, n);
                    let tol = rtol * 10.0 * (k as f64).sqrt();
                    let got = a.array.matmul(&b.array);
                    assert_eq!(got.shape(), &[m, n]);
                    assert_close(&got.to_f64_vec(), &want, tol, tol);
                    // into a used output, and with the left operand as a 1-d vector
                    let mut out = got.neg();
                    a.array.matmul_into(&b.array, &mut out);
                    assert!(out.bit_eq(&got), "{dtype} {m}x{k}x{n} {la:?} {lb:?}");
                    if m == 1 {
                        let v = a.array.reshape(&[k]).matmul(&b.array);
                        assert!(v.bit_eq(&got.reshape(&[n])));
                    }
                    // added into an accumulator, in the kernel's order
                    let start = case(&mut rng, &[m, n], dtype, Layout::Contiguous, -1.0, 1.0);
                    let mut acc = start.array.clone();
                    a.array.matmul_add_into(&b.array, &mut acc);
                    let want: Vec<f64> =
                        want.iter().zip(&start.values).map(|(p, s)| p + s).collect();
                    assert_close(&acc.to_f64_vec(), &want, tol, tol);
                    assert_eq!(
                        start.array.to_f64_vec(),
                        start.values,
                        "the shared start is kept"
                    );
                }
            }
        }
        // zeros times infinities
        let (m, n) = (40, 9);
        let mut av: Vec<f64> = (0..m).map(|i| (i % 3) as f64).collect();
        av[7] = f64::NAN;
        let mut bv: Vec<f64> = (0..n).map(|j| j as f64 - 4.0).collect();
        bv[2] = f64::INFINITY;
        let a = Array::from_vec(av.clone(), &[m, 1]).to_dtype(dtype);
        let b = Array::from_vec(bv.clone(), &[1, n]).to_dtype(dtype);
        let got = a.matmul(&b).to_f64_vec();
        for i in 0..m {
            for j in 0..n {
                let (g, w) = (got[i * n + j], av[i] * bv[j]);
                assert!(
                    g == w || (g.is_nan() && w.is_nan()),
                    "({i}, {j}): {g} vs {w}"
                );
            }
        }
    }
}

/// A row-major left operand times a column-major right one (`x Wᵀ`), short on the left:
/// the shapes that gemm runs as the transposed product, plain and batched, with layouts on
/// either side of the switch.
#[test]
fn row_major_times_transposed_on_the_training_shapes() {
    let mut rng = Generator::new(33);
    for (m, k, n) in [
        (2, 64, 3),
        (32, 100, 70),
        (5, 300, 40),
        (4, 63, 9),
        (40, 80, 30),
    ] {
        for dtype in [DType::F32, DType::F64] {
            let a = case(&mut rng, &[m, k], dtype, Layout::Contiguous, -1.0, 1.0);
            let bt = case(&mut rng, &[n, k], dtype, Layout::Contiguous, -1.0, 1.0);
            let b = bt.array.t();
            let b_values = b.to_f64_vec();
            let want = naive(&a.values, &b_values, m, k, n);
            let (rtol, _) = tol(dtype);
            assert_close(
                &a.array.matmul(&b).to_f64_vec(),
                &want,
                rtol * 50.0,
                rtol * 50.0,
            );
            // three pairs at once, and one left operand broadcast against them
            let a3 = Array::stack(&[a.array.clone(), a.array.neg(), a.array.clone()], 0);
            let b3 = Array::stack(&[bt.array.clone(), bt.array.clone(), bt.array.neg()], 0)
                .transpose(1, 2);
            let got = a3.matmul(&b3).to_f64_vec();
            let signs = [1.0, -1.0, -1.0];
            for (p, s) in signs.iter().enumerate() {
                let want: Vec<f64> = want.iter().map(|v| v * s).collect();
                assert_close(
                    &got[p * m * n..(p + 1) * m * n],
                    &want,
                    rtol * 50.0,
                    rtol * 50.0,
                );
            }
            let got = a.array.matmul(&b3).to_f64_vec();
            assert_close(&got[..m * n], &want, rtol * 50.0, rtol * 50.0);
        }
    }
}

#[test]
fn large_products_use_threads_and_stay_right() {
    let mut rng = Generator::new(31);
    let (m, k, n) = (130, 170, 150);
    let a = case(&mut rng, &[m, k], DType::F64, Layout::Contiguous, -1.0, 1.0);
    let b = case(&mut rng, &[k, n], DType::F64, Layout::Permuted, -1.0, 1.0);
    assert_close(
        &a.array.mm(&b.array).to_f64_vec(),
        &naive(&a.values, &b.values, m, k, n),
        1e-12,
        1e-12,
    );
}

/// Products large enough that gemm is called on strips of output columns shared out over
/// the threads (m, n, k ≥ 1024 with 2048 here), ragged (1100 columns), B plain or
/// transposed. A naive product would take seconds, so whole rows (every strip and its edges)
/// are checked against f64 dot products.
#[test]
fn products_cut_into_column_strips_stay_right() {
    let mut rng = Generator::new(34);
    let (m, k, n) = (2048, 1024, 1100);
    let a = case(&mut rng, &[m, k], DType::F32, Layout::Contiguous, -1.0, 1.0);
    let b = case(&mut rng, &[k, n], DType::F32, Layout::Contiguous, -1.0, 1.0);
    let bt = case(&mut rng, &[n, k], DType::F32, Layout::Contiguous, -1.0, 1.0);
    let rows: Vec<usize> = (0..10)
        .map(|_| rng.rng().random_range(0..m))
        .chain([0, m - 1])
        .collect();
    for (right, b_at) in [
        (
            b.array.clone(),
            &(|l: usize, j: usize| b.values[l * n + j]) as &dyn Fn(_, _) -> f64,
        ),
        (bt.array.t(), &|l: usize, j: usize| bt.values[j * k + l]),
    ] {
        let got = a.array.matmul(&right).to_f64_vec();
        for &i in &rows {
            for j in 0..n {
                let want: f64 = (0..k).map(|l| a.values[i * k + l] * b_at(l, j)).sum();
                let err = (got[i * n + j] - want).abs();
                assert!(err < 1e-3, "C[{i}, {j}] = {} want {want}", got[i * n + j]);
            }
        }
    }
}

#[test]
fn vector_operands_follow_pytorch() {
    let mut rng = Generator::new(32);
    let a = case(&mut rng, &[4, 3], DType::F64, Layout::Permuted, -1.0, 1.0);
    let v = case(&mut rng, &[3], DType::F64, Layout::Narrowed, -1.0, 1.0);
    let w = case(&mut rng, &[4], DType::F64, Layout::Contiguous, -1.0, 1.0);
    // matrix @ vector drops the vector dim
    let mv = a.array.mv(&v.array);
    assert_eq!(mv.shape(), &[4]);
    assert_close(
        &mv.to_f64_vec(),
        &naive(&a.values, &v.values, 4, 3, 1),
        1e-12,
        1e-12,
    );
    assert_eq!(a.array.matmul(&v.array).to_f64_vec(), mv.to_f64_vec());
    // vector @ matrix
    let vm = w.array.matmul(&a.array);
    assert_eq!(vm.shape(), &[3]);
    assert_close(
        &vm.to_f64_vec(),
        &naive(&w.values, &a.values, 1, 4, 3),
        1e-12,
        1e-12,
    );
    // vector @ vector is a 0-d dot product
    let d = v.array.matmul(&v.array);
    assert_eq!(d.shape(), &[] as &[usize]);
    let want: f64 = v.values.iter().map(|x| x * x).sum();
    assert_close(&[d.item::<f64>()], &[want], 1e-12, 1e-12);
    assert_close(
        &[v.array.dot(&v.array).item::<f64>()],
        &[want],
        1e-12,
        1e-12,
    );
    // outer
    let o = w.array.outer(&v.array);
    assert_eq!(o.shape(), &[4, 3]);
    let want: Vec<f64> = (0..12).map(|i| w.values[i / 3] * v.values[i % 3]).collect();
    assert_close(&o.to_f64_vec(), &want, 1e-12, 1e-12);
}

#[test]
fn batched_products_broadcast_their_batch_dims() {
    let mut rng = Generator::new(33);
    for _ in 0..20 {
        let (m, k, n) = (
            rng.rng().random_range(1..6),
            rng.rng().random_range(1..6),
            rng.rng().random_range(1..6),
        );
        let ba: Vec<usize> = vec![rng.rng().random_range(1..4), 1];
        let bb: Vec<usize> = vec![rng.rng().random_range(2..4)];
        let sa: Vec<usize> = ba.iter().copied().chain([m, k]).collect();
        let sb: Vec<usize> = bb.iter().copied().chain([k, n]).collect();
        let a = case_in(&mut rng, &sa, DType::F64, &LAYOUTS, -1.0, 1.0);
        let b = case_in(&mut rng, &sb, DType::F64, &LAYOUTS, -1.0, 1.0);
        let got = a.array.matmul(&b.array);
        let batch = ferrograd_array::broadcast_shapes(&ba, &bb)
            .unwrap()
            .to_vec();
        assert_eq!(
            got.shape(),
            batch
                .iter()
                .copied()
                .chain([m, n])
                .collect::<Vec<_>>()
                .as_slice()
        );
        let mut want = Vec::new();
        for bi in 0..numel(&batch) {
            let idx = unravel(bi, &batch);
            let ia: Vec<usize> = ba
                .iter()
                .zip(&idx[idx.len() - ba.len()..])
                .map(|(&s, &i)| if s == 1 { 0 } else { i })
                .collect();
            let ib: Vec<usize> = bb
                .iter()
                .zip(&idx[idx.len() - bb.len()..])
                .map(|(&s, &i)| if s == 1 { 0 } else { i })
                .collect();
            let (oa, ob) = (ravel(&ia, &ba) * m * k, ravel(&ib, &bb) * k * n);
            want.extend(naive(
                &a.values[oa..oa + m * k],
                &b.values[ob..ob + k * n],
                m,
                k,
                n,
            ));
        }
        assert_close(&got.to_f64_vec(), &want, 1e-12, 1e-12);
    }
    // bmm: many small products run in parallel over the batch
    let a = case(
        &mut rng,
        &[64, 20, 30],
        DType::F32,
        Layout::Contiguous,
        -1.0,
        1.0,
    );
    let b = case(
        &mut rng,
        &[64, 30, 10],
        DType::F32,
        Layout::Permuted,
        -1.0,
        1.0,
    );
    let got = a.array.bmm(&b.array).to_f64_vec();
    for i in 0..64 {
        let want = naive(
            &a.values[i * 600..(i + 1) * 600],
            &b.values[i * 300..(i + 1) * 300],
            20,
            30,
            10,
        );
        assert_close(&got[i * 200..(i + 1) * 200], &want, 1e-4, 1e-4);
    }
}

#[test]
fn an_operand_broadcast_inside_the_matrix_is_copied_first() {
    let row = Array::from_vec(vec![1.0f64, 2.0, 3.0], &[1, 3]);
    let a = row.expand(&[2, 3]); // strides [0, 1]
    let col = Array::from_vec(vec![1.0f64, 1.0, 1.0], &[3, 1]).expand(&[3, 2]); // strides [1, 0]
    assert_eq!(a.matmul(&col).to_vec::<f64>(), vec![6.0; 4]);
    let z = Array::scalar(2.0f64).expand(&[2, 2]); // strides [0, 0]
    assert_eq!(z.matmul(&z).to_vec::<f64>(), vec![8.0; 4]);
}

/// `out += s · a @ b` with the scale applied in the kernel: within a few units in the last
/// place of `|out| + |s| Σ|aᵢ bᵢ|` of the exact value, on every path a product can take (the
/// thin kernels, which take no scale and leave it to gemm; the transposed-scratch path; the
/// two-core halves; gemm's own split of a large product), with both operand layouts.
#[test]
fn scaled_products_added_into_an_output_are_within_a_few_ulp_of_the_exact_value() {
    let mut rng = Generator::new(78);
    let shapes = [
        (1, 64, 200),
        (64, 200, 1),
        (300, 1, 80),
        (32, 100, 1000),
        (32, 800, 200),
        (300, 1056, 800),
        (17, 3, 33),
    ];
    for dtype in [DType::F32, DType::F64] {
        let eps = match dtype {
            DType::F32 => f32::EPSILON as f64,
            _ => f64::EPSILON,
        };
        for &(m, k, n) in &shapes {
            for (at, bt) in [(false, false), (true, false), (false, true)] {
                let a = case(&mut rng, &[m, k], dtype, Layout::Contiguous, -1.0, 1.0);
                let b = case(&mut rng, &[k, n], dtype, Layout::Contiguous, -1.0, 1.0);
                // the same values, stored transposed where asked
                let (av, bv) = (
                    match at {
                        true => a.array.t().contiguous().t(),
                        false => a.array.clone(),
                    },
                    match bt {
                        true => b.array.t().contiguous().t(),
                        false => b.array.clone(),
                    },
                );
                let start = case(&mut rng, &[m, n], dtype, Layout::Contiguous, -1.0, 1.0);
                let scale = -0.37;
                let mut acc = start.array.clone();
                av.matmul_add_scaled_into(&bv, scale, &mut acc);
                let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                let exact = naive(&a.values, &b.values, m, k, n);
                let size = naive(&abs(&a.values), &abs(&b.values), m, k, n);
                let got = acc.to_f64_vec();
                for (i, g) in got.iter().enumerate() {
                    let want = start.values[i] + scale * exact[i];
                    let bound = 4.0 * eps * (start.values[i].abs() + scale.abs() * size[i]);
                    assert!(
                        (g - want).abs() <= bound,
                        "{dtype} {m}x{k}x{n} ({at}, {bt}) element {i}: {g} against {want}"
                    );
                }
                assert_eq!(
                    start.array.to_f64_vec(),
                    start.values,
                    "the shared start is kept"
                );
            }
        }
    }
    let err = panic_message(|| {
        let mut acc = Array::zeros(&[2, 2], DType::F32);
        let (a, b) = (
            Array::zeros(&[2, 3], DType::F32),
            Array::zeros(&[3, 4], DType::F32),
        );
        a.matmul_add_scaled_into(&b, 2.0, &mut acc);
    });
    assert!(
        err.contains("matmul_add_scaled_into") && err.contains("[2, 2]") && err.contains("[2, 4]"),
        "{err}"
    );
}

/// A product added into a block of rows of a larger matrix is the same sum as the product
/// added into that block alone, bit for bit; the other rows are kept and a handle held
/// elsewhere is never written.
#[test]
fn products_added_into_rows_equal_adding_into_the_block() {
    let mut rng = Generator::new(79);
    for dtype in [DType::F32, DType::F64] {
        // (m, k, n, rows, first, B transposed): recurrent steps' products, split between
        // two cores by rows (48 rows: 32 and 16), small ones, an empty inner dim
        for &(m, k, n, rows, first, transposed) in &[
            (32, 200, 800, 96, 32, true),
            (32, 200, 800, 96, 64, false),
            (48, 300, 400, 144, 48, false),
            (4, 30, 30, 32, 28, true),
            (3, 0, 5, 9, 2, true),
            (7, 130, 9, 7, 0, true),
        ] {
            let a = rng.normal(&[m, k], 0.0, 1.0, dtype);
            let b = match transposed {
                true => rng.normal(&[n, k], 0.0, 1.0, dtype).t(),
                false => rng.normal(&[k, n], 0.0, 1.0, dtype),
            };
            let mut out = rng.normal(&[rows, n], 0.0, 1.0, dtype);
            let held = out.clone();
            let mut block = out.narrow(0, first, m).contiguous();
            a.matmul_add_into(&b, &mut block);
            a.matmul_add_into_rows(&b, &mut out, first);
            let case = format!("{dtype} {m}x{k}x{n} into rows {first}.. of {rows}");
            assert!(out.narrow(0, first, m).bit_eq(&block), "{case}");
            for (r, same) in [(0, first), (first + m, rows - first - m)] {
                assert!(
                    out.narrow(0, r, same).bit_eq(&held.narrow(0, r, same)),
                    "{case}"
                );
            }
            assert!(
                held.storage_id() != out.storage_id(),
                "{case}: a held handle written"
            );
        }
    }
    let err = panic_message(|| {
        let (a, b) = (
            Array::zeros(&[3, 2], DType::F32),
            Array::zeros(&[2, 4], DType::F32),
        );
        a.matmul_add_into_rows(&b, &mut Array::zeros(&[4, 4], DType::F32), 2);
    });
    assert!(
        err.contains("matmul_add_into_rows") && err.contains("[3, 2]") && err.contains("[4, 4]"),
        "{err}"
    );
}

#[test]
fn accumulating_products_equal_adding_the_product_bit_for_bit() {
    let mut rng = Generator::new(77);
    // (m, k, n): outer products (a recurrent weight gradient), training shapes, the
    // transposed-scratch path, matrix-vector products, the strip path, an empty inner dim
    let mut shapes = vec![
        (300, 1, 800),
        (32, 100, 1000),
        (100, 32, 1000),
        (1, 64, 200),
        (64, 200, 1),
        (1100, 1100, 1100),
        (4, 0, 6),
    ];
    for m in [2, 3, 17, 64] {
        for n in [2, 5, 33] {
            for k in [1, 2, 3, 8, 128, 129] {
                shapes.push((m, k, n));
            }
        }
    }
    let mut failed = Vec::new();
    for dtype in [DType::F32, DType::F64] {
        for &(m, k, n) in &shapes {
            for transposed in [false, true] {
                let a = if transposed {
                    rng.normal(&[k, m], 0.0, 1.0, dtype).t()
                } else {
                    rng.normal(&[m, k], 0.0, 1.0, dtype)
                };
                let b = rng.normal(&[k, n], 0.0, 1.0, dtype);
                // a negative zero, which an add of +0 turns positive
                let mut start = rng.normal(&[m * n], 0.0, 1.0, DType::F64).to_vec::<f64>();
                start[0] = -0.0;
                let mut acc = Array::from_vec(start, &[m, n]).to_dtype(dtype);
                let want = acc.add(&a.matmul(&b));
                let held = acc.clone();
                a.matmul_acc_into(&b, &mut acc);
                if !acc.bit_eq(&want) {
                    failed.push(format!("{dtype} {m}x{k}x{n} transposed {transposed}"));
                }
                // a shared accumulator is copied, not written through
                assert_ne!(held.storage_id(), acc.storage_id());
            }
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
    let err = panic_message(|| {
        let mut acc = Array::zeros(&[2, 2], DType::F32);
        let (a, b) = (
            Array::zeros(&[2, 3], DType::F32),
            Array::zeros(&[3, 4], DType::F32),
        );
        a.matmul_acc_into(&b, &mut acc);
    });
    assert!(
        err.contains("matmul_acc_into") && err.contains("[2, 2]") && err.contains("[2, 4]"),
        "{err}"
    );
}

/// With the `openblas` feature, products from 8·10⁶ m·n·k run on OpenBLAS: `matmul` gives
/// the bits of `cblas_sgemm`/`cblas_dgemm` called on the same memory, with each operand
/// row-major, the transpose of a row-major matrix, or a narrowed view (a leading dimension
/// past its columns), and the result added into an accumulator gives `out + a @ b`.
#[cfg(feature = "openblas")]
#[test]
fn products_run_on_openblas_on_every_layout_it_takes() {
    use cblas_sys::{cblas_dgemm, cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};
    /// An operand: the array, its row-major storage, and (transposed, leading dimension).
    struct Operand {
        array: Array,
        data: Vec<f64>,
        trans: bool,
        ld: usize,
    }
    fn operand(
        rng: &mut Generator,
        rows: usize,
        cols: usize,
        form: usize,
        dtype: DType,
    ) -> Operand {
        let (array, trans, ld, stored) = match form {
            0 => {
                let a = rng.normal(&[rows, cols], 0.0, 1.0, dtype);
                (a.clone(), false, cols, a)
            }
            1 => {
                let a = rng.normal(&[cols, rows], 0.0, 1.0, dtype);
                (a.t(), true, rows, a)
            }
            _ => {
                let a = rng.normal(&[rows, cols + 3], 0.0, 1.0, dtype);
                (a.narrow(1, 0, cols), false, cols + 3, a)
            }
        };
        Operand {
            array,
            data: stored.to_f64_vec(),
            trans,
            ld,
        }
    }
    let t = |trans: bool| {
        if trans {
            CBLAS_TRANSPOSE::CblasTrans
        } else {
            CBLAS_TRANSPOSE::CblasNoTrans
        }
    };
    let mut rng = Generator::new(78);
    for dtype in [DType::F32, DType::F64] {
        for &(m, k, n) in &[
            (64, 200, 800),
            (1056, 100, 800),
            (600, 64, 257),
            (129, 257, 257),
        ] {
            for fa in 0..3 {
                for fb in 0..3 {
                    let a = operand(&mut rng, m, k, fa, dtype);
                    let b = operand(&mut rng, k, n, fb, dtype);
                    let got = a.array.matmul(&b.array);
                    let (mi, ni, ki) = (m as i32, n as i32, k as i32);
                    let (lda, ldb) = (a.ld as i32, b.ld as i32);
                    // OpenBLAS's routine for `$t` on the same operands
                    macro_rules! cblas {
                        ($routine:ident, $t:ty) => {{
                            let av: Vec<$t> = a.data.iter().map(|&v| v as $t).collect();
                            let bv: Vec<$t> = b.data.iter().map(|&v| v as $t).collect();
                            let mut c: Vec<$t> = vec![0.0; m * n];
                            // SAFETY: row-major buffers of the sizes the dims and leading
                            // dimensions describe.
                            unsafe {
                                $routine(
                                    CBLAS_LAYOUT::CblasRowMajor,
                                    t(a.trans),
                                    t(b.trans),
                                    mi,
                                    ni,
                                    ki,
                                    1.0,
                                    av.as_ptr(),
                                    lda,
                                    bv.as_ptr(),
                                    ldb,
                                    0.0,
                                    c.as_mut_ptr(),
                                    ni,
                                )
                            };
                            Array::from_vec(c, &[m, n])
                        }};
                    }
                    let want = match dtype {
                        DType::F32 => cblas!(cblas_sgemm, f32),
                        _ => cblas!(cblas_dgemm, f64),
                    };
                    let case = format!("{dtype} {m}x{k}x{n} forms {fa} {fb}");
                    assert!(got.bit_eq(&want), "{case}");
                    // the same product on the naive loop, within rounding
                    let (rtol, _) = tol(dtype);
                    let exact = naive(&a.array.to_f64_vec(), &b.array.to_f64_vec(), m, k, n);
                    let bound = rtol * 10.0 * (k as f64).sqrt();
                    assert_close(&got.to_f64_vec(), &exact, bound, bound);
                    let mut acc = rng.normal(&[m, n], 0.0, 1.0, dtype);
                    let sum = acc.add(&got);
                    a.array.matmul_acc_into(&b.array, &mut acc);
                    assert!(acc.bit_eq(&sum), "accumulated: {case}");
                }
            }
        }
    }
}

/// A batched left operand times one right matrix (a linear layer over a sequence, `[B, T,
/// k] @ [k, n]`), which runs as one tall product where the batches stack into rows of one
/// strided matrix and as separate products where they do not: every layout of each operand
/// (permuted, narrowed, broadcast over the batch), a right matrix with unit batch dims, and
/// the product added into an output; against a naive loop.
#[test]
fn products_sharing_one_right_matrix_match_a_naive_loop() {
    let mut rng = Generator::new(34);
    for dtype in [DType::F64, DType::F32] {
        for _ in 0..40 {
            let (m, k, n) = (
                rng.rng().random_range(1..40),
                rng.rng().random_range(1..40),
                rng.rng().random_range(1..40),
            );
            let batch = vec![rng.rng().random_range(1..5), rng.rng().random_range(2..5)];
            let sa: Vec<usize> = batch.iter().copied().chain([m, k]).collect();
            let a = case_in(&mut rng, &sa, dtype, &LAYOUTS, -1.0, 1.0);
            let b = case_in(&mut rng, &[k, n], dtype, &LAYOUTS[..3], -1.0, 1.0);
            let b_array = if rng.rng().random_bool(0.5) {
                b.array.reshape(&[1, k, n])
            } else {
                b.array.clone()
            };
            let mut want = Vec::new();
            for i in 0..numel(&batch) {
                want.extend(naive(
                    &a.values[i * m * k..(i + 1) * m * k],
                    &b.values,
                    m,
                    k,
                    n,
                ));
            }
            let (rtol, atol) = if dtype == DType::F32 {
                (1e-5, 1e-5)
            } else {
                (1e-12, 1e-12)
            };
            let got = a.array.matmul(&b_array);
            assert_eq!(got.shape(), &[batch[0], batch[1], m, n]);
            assert_close(&got.to_f64_vec(), &want, rtol, atol);
            // added into an output holding ones, scaled by 2
            let mut out = Array::ones(&[batch[0], batch[1], m, n], dtype);
            a.array.matmul_add_scaled_into(&b_array, 2.0, &mut out);
            let twice: Vec<f64> = want.iter().map(|w| 1.0 + 2.0 * w).collect();
            assert_close(&out.to_f64_vec(), &twice, rtol, atol);
        }
    }
}
