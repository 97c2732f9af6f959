//! Multi-dimensional indexing (`Tensor::at`, `at_put`, `at_add`) against NumPy 2.4 on
//! `arange(120).reshape(2, 3, 4, 5)` (expected values printed by NumPy, quoted below), and
//! its gradients against finite differences.

use ferrograd::{grad, DType, Ellipsis, NewAxis, Step, Tensor};

use crate::common::*;
use crate::primitives::check;

fn x() -> Tensor {
    Tensor::from_vec((0..120).map(f64::from).collect(), &[2, 3, 4, 5])
}

fn i64s(v: &[i64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape)
}

#[track_caller]
fn same(got: Tensor, shape: &[usize], values: &[i64]) {
    assert_eq!(got.shape(), shape);
    let want: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    assert_eq!(got.to_vec::<f64>(), want);
}

#[test]
fn reads_match_numpy() {
    let x = x();
    // x[1, :, 2]
    same(
        x.at((1, .., 2)),
        &[3, 5],
        &[
            70, 71, 72, 73, 74, 90, 91, 92, 93, 94, 110, 111, 112, 113, 114,
        ],
    );
    // x[..., ::2]
    let b = x.at((Ellipsis, Step(.., 2)));
    assert_eq!(b.shape(), &[2, 3, 4, 3]);
    assert_eq!(&b.to_vec::<f64>()[..6], &[0.0, 2.0, 4.0, 5.0, 7.0, 9.0]);
    // x[None, 0, 1:3]
    let c = x.at((NewAxis, 0, 1..3));
    assert_eq!(c.shape(), &[1, 2, 4, 5]);
    assert_eq!(
        c.to_vec::<f64>(),
        (20..60).map(f64::from).collect::<Vec<_>>()
    );
    // x[:, [2, 0], 1]
    same(
        x.at((.., &i64s(&[2, 0], &[2]), 1)),
        &[2, 2, 5],
        &[
            45, 46, 47, 48, 49, 5, 6, 7, 8, 9, 105, 106, 107, 108, 109, 65, 66, 67, 68, 69,
        ],
    );
    // x[[1, 0], :, [3, 1]]: index dims first when the indexed dims are apart
    same(
        x.at((&i64s(&[1, 0], &[2]), .., &i64s(&[3, 1], &[2]))),
        &[2, 3, 5],
        &[
            75, 76, 77, 78, 79, 95, 96, 97, 98, 99, 115, 116, 117, 118, 119, 5, 6, 7, 8, 9, 25, 26,
            27, 28, 29, 45, 46, 47, 48, 49,
        ],
    );
    // x[:, [[0, 1], [2, 0]], [1, 3]]: index tensors broadcast
    same(
        x.at((.., &i64s(&[0, 1, 2, 0], &[2, 2]), &i64s(&[1, 3], &[2]))),
        &[2, 2, 2, 5],
        &[
            5, 6, 7, 8, 9, 35, 36, 37, 38, 39, 45, 46, 47, 48, 49, 15, 16, 17, 18, 19, 65, 66, 67,
            68, 69, 95, 96, 97, 98, 99, 105, 106, 107, 108, 109, 75, 76, 77, 78, 79,
        ],
    );
    // x[1, -2:, ::3, -1]
    same(
        x.at((1, -2.., Step(.., 3), -1)),
        &[2, 2],
        &[84, 99, 104, 119],
    );
    // x[..., None, 1]
    let h = x.at((Ellipsis, NewAxis, 1));
    assert_eq!(h.shape(), &[2, 3, 4, 1]);
    assert_eq!(h.to_vec::<f64>()[..4], [1.0, 6.0, 11.0, 16.0]);
    // x[1:, 1, [0, 3], 2:4]
    same(
        x.at((1.., 1, &i64s(&[0, 3], &[2]), 2..4)),
        &[1, 2, 2],
        &[82, 83, 97, 98],
    );
    // x[mask] with a mask over the first two dims
    let mask = Tensor::from_vec(vec![true, false, true, false, true, false], &[2, 3]);
    let j = x.at(&mask);
    assert_eq!(j.shape(), &[3, 4, 5]);
    let want: Vec<f64> = (0..20)
        .chain(40..60)
        .chain(80..100)
        .map(f64::from)
        .collect();
    assert_eq!(j.to_vec::<f64>(), want);
    // x[0, 1:100, -100:2]: slice ends clamp, as Python's
    let k = x.at((0, 1..100, -100..2));
    assert_eq!(k.shape(), &[2, 2, 5]);
    // negative index tensors count from the end; inclusive ranges
    same(x.at((0, 0, &i64s(&[-1], &[1]), 0..=1)), &[1, 2], &[15, 16]);
    // a single integer, and plain `..`
    assert_eq!(x.at(1).shape(), &[3, 4, 5]);
    assert_eq!(x.at(..).shape(), &[2, 3, 4, 5]);
}

#[test]
fn writes_match_numpy() {
    let y = Tensor::zeros(&[3, 4], DType::F64);
    // y[1:, ::2] = [1, 2]
    let put = y.at_put(
        (1.., Step(.., 2)),
        &Tensor::from_vec(vec![1.0f64, 2.0], &[2]),
    );
    assert_eq!(
        put.to_vec::<f64>(),
        vec![0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 2.0, 0.0]
    );
    // np.add.at(y, ([0, 2, 0], [1, 1, 1]), 1)
    let add = y.at_add(
        (&i64s(&[0, 2, 0], &[3]), &i64s(&[1, 1, 1], &[3])),
        &Tensor::scalar(1.0f64),
    );
    assert_eq!(
        add.to_vec::<f64>(),
        vec![0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    );
    // set_at replaces the handle; a mask write
    let mut z = Tensor::from_vec(vec![1.0f64, -2.0, 3.0, -4.0], &[2, 2]);
    let negative = z.lt_scalar(0.0);
    z.set_at(&negative, &Tensor::scalar(0.0f64));
    assert_eq!(z.to_vec::<f64>(), vec![1.0, 0.0, 3.0, 0.0]);
}

#[test]
fn gradients_flow_to_the_tensor_and_the_values() {
    let rows = i64s(&[2, 0, 2], &[3]);
    check("at: slices, steps, ints", &[&[3, 4, 5]], -1.0, 1.0, |p| {
        p[0].at((1.., Step(.., 2), -1))
    });
    check("at: index tensors", &[&[3, 4, 5]], -1.0, 1.0, |p| {
        p[0].at((&rows, .., &i64s(&[1, 4, 0], &[3])))
    });
    check("at_put", &[&[3, 4], &[2]], -1.0, 1.0, |p| {
        p[0].at_put((1.., 2), &p[1])
    });
    check("at_add with repeats", &[&[4, 2], &[3, 2]], -1.0, 1.0, |p| {
        p[0].at_add(&rows, &p[1])
    });
    check("slice_scatter", &[&[3, 5], &[3, 2]], -1.0, 1.0, |p| {
        p[0].slice_scatter(&p[1], -1, Some(1), Some(-1), 2)
    });
    let msg = panic_message(|| {
        let src = Tensor::ones(&[3, 2], DType::F64);
        Tensor::zeros(&[3, 5], DType::F64).slice_scatter(&src, 1, None, None, 2);
    });
    assert!(
        msg.contains("src of shape [3, 2] is not the slice's shape [3, 3]"),
        "{msg}"
    );
    // the overwritten places get no gradient
    let x = Tensor::ones(&[2, 2], DType::F64);
    let (g, _) = grad(|x: &Tensor| x.at_put(0, &Tensor::scalar(5.0f64)).sum()).call(&x, ());
    assert_eq!(g.to_vec::<f64>(), vec![0.0, 0.0, 1.0, 1.0]);
}

#[test]
fn errors_name_the_problem_and_the_line() {
    let x = x();
    type Case<'a> = (Box<dyn Fn() + 'a>, &'static str);
    let cases: Vec<Case> = vec![
        (
            Box::new(|| drop(x.at((0, 0, 0, 0, 0)))),
            "too many indices: 5 for 4 dims",
        ),
        (
            Box::new(|| drop(x.at((0, 3)))),
            "index 3 is out of range for a dim of size 3",
        ),
        (
            Box::new(|| drop(x.at((0, &i64s(&[0, 7], &[2]))))),
            "index 7 is out of range for a dim of size 3",
        ),
        (
            Box::new(|| drop(x.at((Ellipsis, 0, Ellipsis)))),
            "only one ellipsis",
        ),
        (
            Box::new(|| drop(x.at(Step(.., 0)))),
            "a slice step must be positive",
        ),
        (
            Box::new(|| drop(x.at((&i64s(&[0, 1], &[2]), &i64s(&[0, 1, 2], &[3]))))),
            "do not broadcast",
        ),
        (
            Box::new(|| drop(x.at(&Tensor::from_vec(vec![true, false], &[2, 1])))),
            "a bool mask of size 1 along dim 1 does not match its size 3",
        ),
        (
            Box::new(|| drop(x.at_put(0, &Tensor::ones(&[4], DType::F64)))),
            "values of shape [4] do not broadcast to the addressed region [3, 4, 5]",
        ),
    ];
    for (f, want) in cases {
        let msg = panic_message(f);
        assert!(msg.contains(want) && msg.contains("[2, 3, 4, 5]"), "{msg}");
        assert!(msg.contains("indexing.rs"), "{msg}");
    }
}

#[test]
fn optimize_mode_replays_never_reuse_a_stale_mask_or_index() {
    // the mask decides the result's shape: a replay with another mask captures again
    let f = |x: &Tensor| x.at(&x.gt_scalar(0.0)).square().sum();
    let df = grad(f).optimize(true);
    for v in [
        vec![1.0f64, -2.0, 3.0],
        vec![-1.0, 2.0, 3.0],
        vec![1.0, -2.0, 3.0],
    ] {
        let x = Tensor::from_vec(v.clone(), &[3]);
        let (g, _) = df.call(&x, ());
        let want: Vec<f64> = v
            .iter()
            .map(|&a| if a > 0.0 { 2.0 * a } else { 0.0 })
            .collect();
        assert_eq!(g.to_vec::<f64>(), want);
    }
    let stats = df.stats();
    assert_eq!((stats.captures, stats.hits), (2, 1));
    // index tensors computed in the function are graph values: one plan for any indices
    let h = |x: &Tensor| x.at(&x.argmax_all().reshape(&[1])).sum();
    let dh = grad(h).optimize(true);
    for v in [
        vec![1.0f64, 5.0, 3.0],
        vec![7.0, 5.0, 3.0],
        vec![1.0, 5.0, 9.0],
    ] {
        let x = Tensor::from_vec(v.clone(), &[3]);
        let (g, _) = dh.call(&x, ());
        let best = v
            .iter()
            .enumerate()
            .fold(0, |b, (i, &a)| if a > v[b] { i } else { b });
        let want: Vec<f64> = (0..3).map(|i| if i == best { 1.0 } else { 0.0 }).collect();
        assert_eq!(g.to_vec::<f64>(), want);
    }
    assert_eq!(dh.stats().captures, 1);
}
