use ferrograd_array::{Array, DType, Generator, Index};
use rand::Rng;

use crate::common::*;

fn idx(v: &[i64]) -> Array {
    Array::from_vec(v.to_vec(), &[v.len()])
}

#[test]
fn index_select_along_each_dim() {
    let mut rng = Generator::new(40);
    for _ in 0..40 {
        let (shape, d) = shape_and_dim(&mut rng, 3, 4);
        let c = case_in(&mut rng, &shape, DType::F64, &LAYOUTS, -1.0, 1.0);
        let picks: Vec<i64> = (0..rng.rng().random_range(0..5))
            .map(|_| rng.rng().random_range(0..shape[d] as i64))
            .collect();
        let got = c.array.index_select(d, &idx(&picks));
        let mut out_shape = shape.clone();
        out_shape[d] = picks.len();
        assert_eq!(got.shape(), out_shape.as_slice());
        let want: Vec<f64> = (0..numel(&out_shape))
            .map(|i| {
                let mut j = unravel(i, &out_shape);
                j[d] = picks[j[d]] as usize;
                c.values[ravel(&j, &shape)]
            })
            .collect();
        assert_eq!(got.to_f64_vec(), want);
    }
}

#[test]
fn gather_and_scatter_are_inverse_along_a_dim() {
    let mut rng = Generator::new(41);
    for _ in 0..40 {
        let (shape, d) = shape_and_dim(&mut rng, 3, 4);
        let c = case_in(&mut rng, &shape, DType::F64, &LAYOUTS, -1.0, 1.0);
        // index no larger than the array outside `d`
        let ishape: Vec<usize> = shape
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                if i == d {
                    rng.rng().random_range(1..5)
                } else {
                    rng.rng().random_range(1..=s)
                }
            })
            .collect();
        let index = rng.uniform(&ishape, 0.0, shape[d] as f64, DType::I64);
        let iv = index.to_vec::<i64>();
        let got = c.array.gather(d, &index);
        let want: Vec<f64> = (0..numel(&ishape))
            .map(|i| {
                let mut j = unravel(i, &ishape);
                j[d] = iv[i] as usize;
                c.values[ravel(&j, &shape)]
            })
            .collect();
        assert_eq!(got.to_f64_vec(), want);

        // scatter_add: every source element lands at its indexed position
        let src = case(&mut rng, &ishape, DType::F64, Layout::Permuted, -1.0, 1.0);
        let added = c.array.scatter_add(d, &index, &src.array);
        let mut want = c.values.clone();
        for i in 0..numel(&ishape) {
            let mut j = unravel(i, &ishape);
            j[d] = iv[i] as usize;
            want[ravel(&j, &shape)] += src.values[i];
        }
        assert_close(&added.to_f64_vec(), &want, 1e-12, 1e-12);

        // scatter: last write wins in row-major order of the index
        let written = c.array.scatter(d, &index, &src.array);
        let mut want = c.values.clone();
        for i in 0..numel(&ishape) {
            let mut j = unravel(i, &ishape);
            j[d] = iv[i] as usize;
            want[ravel(&j, &shape)] = src.values[i];
        }
        assert_eq!(written.to_f64_vec(), want);
    }
}

#[test]
fn index_add_sums_repeated_rows() {
    let a = Array::zeros(&[3, 2], DType::F32);
    let src = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let out = a.index_add(0, &idx(&[2, 0, 2]), &src);
    assert_eq!(out.to_vec::<f32>(), vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0]);
    let out = a.t().index_add(1, &idx(&[1, 1, 2]), &src.t());
    // a.t() is [2, 3]; columns 1 and 2 get added
    assert_eq!(out.to_vec::<f32>(), vec![0.0, 4.0, 5.0, 0.0, 6.0, 6.0]);
}

#[test]
fn index_put_in_every_form() {
    let x = Array::from_vec((0..6).map(|v| v as f64).collect(), &[3, 2]);
    // a number: one row, values broadcast to the row
    let y = x.index_put(&Index::Single(1), &Array::scalar(9.0f64));
    assert_eq!(y.to_vec::<f64>(), vec![0.0, 1.0, 9.0, 9.0, 4.0, 5.0]);
    let y = x.index_put(
        &Index::Single(-1),
        &Array::from_vec(vec![7.0f64, 8.0], &[2]),
    );
    assert_eq!(y.to_vec::<f64>(), vec![0.0, 1.0, 2.0, 3.0, 7.0, 8.0]);
    // a list
    let y = x.index_put(
        &Index::List(vec![0, 2]),
        &Array::from_vec(vec![-1.0f64, -2.0, -3.0, -4.0], &[2, 2]),
    );
    assert_eq!(y.to_vec::<f64>(), vec![-1.0, -2.0, 2.0, 3.0, -3.0, -4.0]);
    // an i64 tensor
    let y = x.index_put(&Index::from(&idx(&[1])), &Array::scalar(0.0f64));
    assert_eq!(y.to_vec::<f64>(), vec![0.0, 1.0, 0.0, 0.0, 4.0, 5.0]);
    // an elementwise mask, one value
    let mask = x.gt_scalar(3.0);
    let y = x.index_put(&Index::from(&mask), &Array::scalar(-1.0f64));
    assert_eq!(y.to_vec::<f64>(), vec![0.0, 1.0, 2.0, 3.0, -1.0, -1.0]);
    // an elementwise mask, one value per selected element
    let y = x.index_put(
        &Index::Mask(mask.clone()),
        &Array::from_vec(vec![10.0f64, 20.0], &[2]),
    );
    assert_eq!(y.to_vec::<f64>(), vec![0.0, 1.0, 2.0, 3.0, 10.0, 20.0]);
    // a row mask
    let rows = Array::from_vec(vec![true, false, true], &[3]);
    let y = x.index_put(&Index::Mask(rows.clone()), &Array::scalar(5.0f64));
    assert_eq!(y.to_vec::<f64>(), vec![5.0, 5.0, 2.0, 3.0, 5.0, 5.0]);
    // the original is never changed
    assert_eq!(
        x.to_vec::<f64>(),
        (0..6).map(|v| v as f64).collect::<Vec<_>>()
    );
    // a repeated row: the last of its values wins
    let y = x.index_put(
        &Index::List(vec![2, 0, 2]),
        &Array::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]),
    );
    assert_eq!(y.to_vec::<f64>(), vec![3.0, 4.0, 2.0, 3.0, 5.0, 6.0]);
    // into a buffer of another layout: written through, the result contiguous
    let mut out = Array::zeros(&[2, 3], DType::F64).t();
    x.index_put_into(&Index::Single(0), &Array::scalar(-5.0f64), &mut out);
    assert_eq!(out.to_vec::<f64>(), vec![-5.0, -5.0, 2.0, 3.0, 4.0, 5.0]);
    // accumulate form sums repeats
    let y = x.index_put_add(&Index::List(vec![0, 0]), &Array::scalar(1.0f64));
    assert_eq!(y.to_vec::<f64>(), vec![2.0, 3.0, 2.0, 3.0, 4.0, 5.0]);
    // reading the same forms
    assert_eq!(x.index(1i64).to_vec::<f64>(), vec![2.0, 3.0]);
    assert_eq!(
        x.index(vec![2, 0]).to_vec::<f64>(),
        vec![4.0, 5.0, 0.0, 1.0]
    );
    assert_eq!(x.index(&mask).to_vec::<f64>(), vec![4.0, 5.0]);
    assert_eq!(x.index(&rows).shape(), &[2, 2]);
}

#[test]
fn cat_stack_split_chunk() {
    let mut rng = Generator::new(42);
    for _ in 0..20 {
        let (shape, d) = shape_and_dim(&mut rng, 3, 3);
        let parts: Vec<Case> = (0..3)
            .map(|_| {
                let mut s = shape.clone();
                s[d] = rng.rng().random_range(0..3);
                case_in(&mut rng, &s, DType::F64, &LAYOUTS, -1.0, 1.0)
            })
            .collect();
        let arrays: Vec<Array> = parts.iter().map(|c| c.array.clone()).collect();
        let got = Array::cat(&arrays, d);
        // splitting back at the part sizes gives the parts
        let sizes: Vec<usize> = arrays.iter().map(|a| a.shape()[d]).collect();
        for (piece, part) in got.split_sizes(&sizes, d).iter().zip(&parts) {
            assert_eq!(piece.to_f64_vec(), part.values);
        }
        // into a used output, from borrowed parts
        let mut out = got.neg();
        let borrowed: Vec<&Array> = arrays.iter().collect();
        Array::cat_into(&borrowed, d, &mut out);
        assert!(out.bit_eq(&got));
        // into rows of a larger array, whose other elements are kept, and never through a
        // handle someone else holds
        let n = got.numel();
        let (before, after) = (rng.rng().random_range(0..5), rng.rng().random_range(0..5));
        let mut big = Array::full(&[before + n + after], 7.0, DType::F64);
        let held = big.clone();
        Array::cat_into_at(&arrays, d, &mut big, before);
        let mut want = vec![7.0; before];
        want.extend(got.to_f64_vec());
        want.extend(vec![7.0; after]);
        assert_eq!(big.to_f64_vec(), want);
        assert_eq!(held.to_f64_vec(), vec![7.0; before + n + after]);
        // padding a part with zeros is the cat of it with zeros
        let (before, after) = (rng.rng().random_range(0..3), rng.rng().random_range(0..3));
        let part = &parts[0];
        let len = part.array.shape()[d];
        let zeros = |n: usize| {
            let mut s = part.array.shape().to_vec();
            s[d] = n;
            Array::zeros(&s, DType::F64)
        };
        let want = Array::cat(&[zeros(before), part.array.clone(), zeros(after)], d);
        let padded = part.array.pad_narrow(d, before, before + len + after);
        assert!(padded.bit_eq(&want));
        let mut out = want.neg();
        part.array
            .pad_narrow_into(d, before, before + len + after, &mut out);
        assert!(out.bit_eq(&want));
    }
    let a = Array::from_vec(vec![1i64, 2], &[2]);
    let b = Array::from_vec(vec![3i64, 4], &[2]);
    let s = Array::stack(&[a.clone(), b.clone()], 1);
    assert_eq!(s.shape(), &[2, 2]);
    assert_eq!(s.to_vec::<i64>(), vec![1, 3, 2, 4]);
    assert_eq!(Array::stack(&[a, b], 0).to_vec::<i64>(), vec![1, 2, 3, 4]);
    let r = Array::arange(0.0, 7.0, 1.0, DType::I64);
    let pieces: Vec<Vec<i64>> = r.split(3, 0).iter().map(|p| p.to_vec::<i64>()).collect();
    assert_eq!(pieces, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    let chunks: Vec<usize> = r.chunk(3, 0).iter().map(|p| p.numel()).collect();
    assert_eq!(chunks, vec![3, 3, 1]);
    // an empty dim: one empty piece from split, `chunks` from chunk, as in PyTorch (there
    // were none, and a cat of them back refused)
    let e = Array::zeros(&[0, 4], DType::F32);
    let shapes = |v: Vec<Array>| v.iter().map(|p| p.shape().to_vec()).collect::<Vec<_>>();
    assert_eq!(shapes(e.split(2, 0)), vec![vec![0, 4]]);
    assert_eq!(shapes(e.chunk(3, 0)), vec![vec![0, 4]; 3]);
    assert_eq!(Array::cat(&e.split(1, 0), 0).shape(), &[0, 4]);
}

#[test]
fn cat_into_at_refuses_what_does_not_fit() {
    let parts = [
        Array::zeros(&[2, 3], DType::F32),
        Array::zeros(&[2, 1], DType::F32),
    ];
    let err = panic_message(|| {
        let mut out = Array::zeros(&[3, 3], DType::F32);
        Array::cat_into_at(&parts, 1, &mut out, 2);
    });
    assert!(
        err.contains("cat_into_at") && err.contains("[2, 4]") && err.contains("[3, 3]"),
        "{err}"
    );
    let err = panic_message(|| {
        let mut out = Array::zeros(&[8], DType::F64);
        Array::cat_into_at(&parts, 1, &mut out, 0);
    });
    assert!(err.contains("cat_into_at") && err.contains("f64"), "{err}");
}

#[test]
fn repeat_flip_diag_triangles() {
    let a = Array::from_vec(vec![1i64, 2, 3, 4], &[2, 2]);
    assert_eq!(
        a.repeat(&[1, 2]).to_vec::<i64>(),
        vec![1, 2, 1, 2, 3, 4, 3, 4]
    );
    assert_eq!(
        a.repeat(&[2, 1]).to_vec::<i64>(),
        vec![1, 2, 3, 4, 1, 2, 3, 4]
    );
    assert_eq!(a.repeat(&[2, 1, 1]).shape(), &[2, 2, 2]);
    assert_eq!(a.flip(0).to_vec::<i64>(), vec![3, 4, 1, 2]);
    assert_eq!(a.flip([0, 1]).to_vec::<i64>(), vec![4, 3, 2, 1]);
    assert_eq!(a.t().flip(-1).to_vec::<i64>(), vec![3, 1, 4, 2]);
    let v = Array::from_vec(vec![1.0f32, 2.0], &[2]);
    assert_eq!(v.diag(0).to_vec::<f32>(), vec![1.0, 0.0, 0.0, 2.0]);
    assert_eq!(
        v.diag(1).to_vec::<f32>(),
        vec![0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        v.diag(-1).to_vec::<f32>(),
        vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0]
    );
    assert_eq!(a.diag(0).to_vec::<i64>(), vec![1, 4]);
    let m = Array::from_vec((1..=9).map(|v| v as f64).collect(), &[3, 3]);
    assert_eq!(
        m.tril(0).to_vec::<f64>(),
        vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0, 9.0]
    );
    assert_eq!(
        m.triu(1).to_vec::<f64>(),
        vec![0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        m.tril(-1).to_vec::<f64>(),
        vec![0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 7.0, 8.0, 0.0]
    );
}
