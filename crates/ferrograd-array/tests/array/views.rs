use ferrograd_array::{Array, DType, Generator};

use crate::common::*;

#[test]
fn random_layouts_read_back_their_logical_values() {
    // The helper's values come from index arithmetic on the base buffer; `to_f64_vec` reads
    // through the view's strides: the two must agree for every layout.
    let mut rng = Generator::new(1);
    for _ in 0..200 {
        let shape = random_shape(&mut rng, 4, 4, true);
        for layout in LAYOUTS {
            let c = case(&mut rng, &shape, DType::F64, layout, -1.0, 1.0);
            assert_eq!(c.array.shape(), shape.as_slice());
            assert_eq!(c.array.to_f64_vec(), c.values, "{layout:?} {shape:?}");
        }
    }
}

#[test]
fn transpose_and_permute_share_storage() {
    let a = Array::from_vec((0..24).map(|v| v as f64).collect(), &[2, 3, 4]);
    let t = a.transpose(0, 2);
    assert!(t.shares_storage(&a));
    assert_eq!(t.shape(), &[4, 3, 2]);
    // t[i][j][k] = a[k][j][i] = k*12 + j*4 + i
    let want: Vec<f64> = (0..24)
        .map(|n| {
            let i = unravel(n, &[4, 3, 2]);
            (i[2] * 12 + i[1] * 4 + i[0]) as f64
        })
        .collect();
    assert_eq!(t.to_vec::<f64>(), want);
    let p = a.permute(&[1, 2, 0]);
    // p[i][j][k] = a[k][i][j]
    let want: Vec<f64> = (0..24)
        .map(|n| {
            let i = unravel(n, &[3, 4, 2]);
            (i[2] * 12 + i[0] * 4 + i[1]) as f64
        })
        .collect();
    assert_eq!(p.to_vec::<f64>(), want);
    assert!(!p.is_contiguous());
    assert!(p.contiguous().is_contiguous());
    assert_eq!(p.contiguous().to_vec::<f64>(), want);
}

#[test]
fn narrow_select_and_diagonal() {
    let a = Array::from_vec((0..20).map(|v| v as i64).collect(), &[4, 5]);
    assert_eq!(
        a.narrow(1, 1, 3).to_vec::<i64>(),
        vec![1, 2, 3, 6, 7, 8, 11, 12, 13, 16, 17, 18]
    );
    assert_eq!(
        a.narrow(-2, 2, 2).to_vec::<i64>(),
        (10..20).collect::<Vec<_>>()
    );
    assert_eq!(a.narrow(0, 4, 0).shape(), &[0, 5]);
    assert_eq!(a.select(1, 2).to_vec::<i64>(), vec![2, 7, 12, 17]);
    assert_eq!(a.select(0, 3).to_vec::<i64>(), vec![15, 16, 17, 18, 19]);
    assert_eq!(a.diagonal(0).to_vec::<i64>(), vec![0, 6, 12, 18]);
    assert_eq!(a.diagonal(2).to_vec::<i64>(), vec![2, 8, 14]);
    assert_eq!(a.diagonal(-1).to_vec::<i64>(), vec![5, 11, 17]);
    assert_eq!(a.diagonal(7).numel(), 0);
}

#[test]
fn expand_uses_stride_zero() {
    let a = Array::from_vec(vec![1.0f32, 2.0, 3.0], &[3, 1]);
    let e = a.expand(&[2, 3, 4]);
    assert_eq!(e.strides(), &[0, 1, 0]);
    assert!(e.shares_storage(&a));
    let want: Vec<f32> = (0..24)
        .map(|n| (unravel(n, &[2, 3, 4])[1] + 1) as f32)
        .collect();
    assert_eq!(e.to_vec::<f32>(), want);
}

#[test]
fn reshape_is_a_view_when_contiguous_and_a_copy_otherwise() {
    let a = Array::from_vec((0..12).map(|v| v as f64).collect(), &[3, 4]);
    let r = a.reshape(&[2, 6]);
    assert!(r.shares_storage(&a));
    assert_eq!(r.to_vec::<f64>(), a.to_vec::<f64>());
    let t = a.t();
    let r = t.reshape(&[12]);
    assert!(!r.shares_storage(&a));
    assert_eq!(r.to_vec::<f64>(), t.to_vec::<f64>());
    assert_eq!(a.flatten(0, -1).shape(), &[12]);
    assert_eq!(
        Array::zeros(&[2, 3, 4], DType::F32).flatten(1, 2).shape(),
        &[2, 12]
    );
}

#[test]
fn squeeze_and_unsqueeze() {
    let a = Array::zeros(&[1, 3, 1, 2], DType::F32);
    assert_eq!(a.squeeze().shape(), &[3, 2]);
    assert_eq!(a.squeeze_dim(2).shape(), &[1, 3, 2]);
    assert_eq!(a.squeeze_dim(1).shape(), &[1, 3, 1, 2]);
    assert_eq!(a.unsqueeze(0).shape(), &[1, 1, 3, 1, 2]);
    assert_eq!(a.unsqueeze(-1).shape(), &[1, 3, 1, 2, 1]);
    assert_eq!(a.unsqueeze(4).shape(), &[1, 3, 1, 2, 1]);
    let v = Array::from_vec(vec![1i64, 2, 3], &[3]);
    assert_eq!(v.unsqueeze(1).to_vec::<i64>(), vec![1, 2, 3]);
    assert_eq!(v.unsqueeze(1).shape(), &[3, 1]);
    assert!(a.unsqueeze(2).unsqueeze(0).is_contiguous());
}

#[test]
fn views_of_views_compose() {
    let mut rng = Generator::new(2);
    for _ in 0..50 {
        let c = case(
            &mut rng,
            &[3, 4, 5],
            DType::F64,
            Layout::Permuted,
            -1.0,
            1.0,
        );
        // narrow then transpose, checked by index arithmetic on the known values
        let v = c.array.narrow(1, 1, 2).transpose(0, 2);
        assert_eq!(v.shape(), &[5, 2, 3]);
        let want: Vec<f64> = (0..30)
            .map(|n| {
                let i = unravel(n, &[5, 2, 3]);
                c.values[ravel(&[i[2], i[1] + 1, i[0]], &[3, 4, 5])]
            })
            .collect();
        assert_eq!(v.to_f64_vec(), want);
    }
}

#[test]
fn writing_into_a_shared_output_leaves_other_handles_untouched() {
    let a = Array::from_vec(vec![1.0f32, 2.0], &[2]);
    let b = Array::from_vec(vec![10.0f32, 20.0], &[2]);
    let mut out = a.clone();
    a.add_into(&b, &mut out);
    assert_eq!(out.to_vec::<f32>(), vec![11.0, 22.0]);
    assert_eq!(a.to_vec::<f32>(), vec![1.0, 2.0]);
    // An unshared output is written in place.
    let mut out = Array::zeros(&[2], DType::F32);
    let before = out.clone();
    drop(before);
    a.mul_into(&b, &mut out);
    assert_eq!(out.to_vec::<f32>(), vec![10.0, 40.0]);
}

/// Reshaping any layout to any regrouping of its elements reads the same row-major values,
/// and narrowed, selected and broadcast arrays reshape as views where one stride per
/// regrouped block exists.
#[test]
fn reshape_views_follow_the_strides() {
    use rand::Rng;
    let mut rng = Generator::new(5);
    for _ in 0..300 {
        let shape = random_shape(&mut rng, 4, 4, true);
        let layout = LAYOUTS[rng.rng().random_range(0..4)];
        let a = case(&mut rng, &shape, DType::F64, layout, -1.0, 1.0);
        let mut new = Vec::new();
        let mut rest = numel(&shape);
        if rest == 0 {
            new = vec![0, rng.rng().random_range(1..4)];
        }
        while rest > 1 {
            let divisors: Vec<usize> = (2..=rest).filter(|d| rest.is_multiple_of(*d)).collect();
            let d = divisors[rng.rng().random_range(0..divisors.len())];
            new.push(d);
            rest /= d;
            if rng.rng().random_bool(0.3) {
                new.push(1);
            }
        }
        let r = a.array.reshape(&new);
        assert_eq!(r.shape(), new.as_slice());
        assert_eq!(r.to_f64_vec(), a.values, "{layout:?} {shape:?} -> {new:?}");
    }
    let a = Array::from_vec((0..60).map(|v| v as f64).collect(), &[4, 3, 5]);
    let viewed = |v: &Array, shape: &[usize], view: bool| {
        let r = v.reshape(shape);
        assert_eq!(r.shares_storage(&a), view, "{:?} -> {shape:?}", v.shape());
        assert_eq!(r.to_vec::<f64>(), v.to_vec::<f64>());
    };
    viewed(&a.narrow(1, 0, 2), &[4, 10], true);
    viewed(&a.narrow(1, 0, 2), &[8, 5], false);
    viewed(&a.select(1, 1), &[4, 1, 5], true);
    viewed(&a.select(1, 1), &[20], false);
    viewed(&a.narrow(2, 1, 3).unsqueeze(0), &[12, 3], true);
    viewed(&a.transpose(0, 2), &[5, 12], false);
    let row = Array::from_vec(vec![1.0, 2.0, 3.0], &[3]);
    let e = row.expand(&[4, 3]);
    assert!(e.reshape(&[2, 2, 3]).shares_storage(&row));
    assert_eq!(e.reshape(&[2, 2, 3]).to_vec::<f64>(), e.to_vec::<f64>());
}

#[test]
fn reshape_round_trips() {
    // every shape of up to 4 dims of sizes 1..5, and the 0-d shape
    let mut shapes: Vec<Vec<usize>> = vec![vec![]];
    for _ in 0..4 {
        let longer: Vec<Vec<usize>> = shapes
            .iter()
            .filter(|s| s.len() == shapes.last().map_or(0, Vec::len))
            .flat_map(|s| {
                (1..5).map(move |d| {
                    let mut t = s.clone();
                    t.push(d);
                    t
                })
            })
            .collect();
        shapes.extend(longer);
    }
    for dims in shapes {
        let n: usize = dims.iter().product();
        let a = Array::from_vec((0..n as i64).collect(), &dims);
        let flat = a.reshape(&[n]);
        assert_eq!(
            flat.reshape(&dims).to_vec::<i64>(),
            a.to_vec::<i64>(),
            "{dims:?}"
        );
        assert_eq!(flat.to_vec::<i64>(), (0..n as i64).collect::<Vec<_>>());
    }
}

#[test]
fn double_transpose_is_identity() {
    for r in 1..6 {
        for c in 1..6 {
            let a = Array::from_vec((0..(r * c) as i64).collect(), &[r, c]);
            assert_eq!(a.t().t().to_vec::<i64>(), a.to_vec::<i64>());
        }
    }
}

/// An empty view may start past its storage's end (the second column of `[0, 2]` starts at
/// 1 of 0 elements, and its reshape is contiguous): copying it is empty, not a slice index
/// out of range (a gradient through a narrow of an empty batch panicked so).
#[test]
fn empty_views_past_their_storage_copy_as_empty() {
    let e = Array::zeros(&[0, 2], DType::F64).add_scalar(1.0);
    for v in [
        e.narrow(1, 1, 1).reshape(&[0]),
        e.narrow(1, 1, 1).flatten(0, 1),
        e.select(1, 1),
        e.t().narrow(0, 1, 1),
    ] {
        assert_eq!(v.copy().shape(), v.shape());
        assert_eq!(v.contiguous().shape(), v.shape());
        assert_eq!(v.to_vec::<f64>(), Vec::<f64>::new());
        assert_eq!(v.add_scalar(1.0).shape(), v.shape());
    }
}
