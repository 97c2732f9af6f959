//! Programmer errors panic with the op, the shapes and the caller's line.

use ferrograd::{grad, DType, Tensor};

use crate::common::panic_message;

#[track_caller]
fn check(f: impl FnOnce(), needles: &[&str]) {
    let m = panic_message(f);
    for n in needles {
        assert!(m.contains(n), "message {m:?} lacks {n:?}");
    }
    assert!(
        m.contains("tests/autodiff/errors.rs:"),
        "message {m:?} does not point at the caller's line"
    );
}

#[test]
fn shape_errors_inside_differentiated_code_point_at_the_user() {
    let f = |w: &Tensor| w.matmul(&Tensor::zeros(&[5, 2], DType::F64)).sum();
    check(
        || {
            grad(f).call(&Tensor::zeros(&[3, 4], DType::F64), ());
        },
        &["ferrograd: matmul", "[3, 4]", "[5, 2]"],
    );
    let g = |w: &Tensor| (w + &Tensor::zeros(&[3], DType::F64)).sum();
    check(
        || {
            grad(g).call(&Tensor::zeros(&[2], DType::F64), ());
        },
        &["ferrograd: add", "[2]", "[3]", "cannot be broadcast"],
    );
    check(
        || {
            Tensor::zeros(&[2], DType::F64).index_select(0, &Tensor::from_vec(vec![3i64], &[1]));
        },
        &["index_select", "index 3", "size 2"],
    );
    check(
        || {
            Tensor::zeros(&[2, 3], DType::F64).reshape(&[4]);
        },
        &["reshape", "[2, 3]", "[4]"],
    );
    check(
        || {
            Tensor::zeros(&[2, 3], DType::F64).narrow(1, 2, 2);
        },
        &["narrow", "2..4"],
    );
    check(
        || {
            Tensor::zeros(&[2], DType::F64)
                .exp()
                .mul(&Tensor::zeros(&[2], DType::F32));
        },
        &["mul", "dtypes differ"],
    );
    check(
        || {
            Tensor::cat(
                &[
                    Tensor::zeros(&[2, 3], DType::F64),
                    Tensor::zeros(&[2, 2], DType::F64),
                ],
                0,
            );
        },
        &["cat", "[2, 3]", "[2, 2]"],
    );
    check(
        || {
            Tensor::zeros(&[2, 3], DType::F64).conv2d(
                &Tensor::zeros(&[1, 1, 1, 1], DType::F64),
                None,
                Default::default(),
            );
        },
        &["conv2d", "[2, 3]"],
    );
}

#[test]
fn a_non_scalar_loss_is_refused_with_the_way_out() {
    check(
        || {
            grad(|w: &Tensor| w * 2.0).call(&Tensor::zeros(&[2], DType::F64), ());
        },
        &["one-element loss", "[2]", "partial_grad", "vjp"],
    );
    check(
        || {
            grad(|w: &Tensor| w * 2.0).partial_grad(true).run(
                &Tensor::zeros(&[2], DType::F64),
                (),
                Some(&Tensor::zeros(&[3], DType::F64)),
            );
        },
        &["output gradient has shape [3]", "[2]"],
    );
}

#[test]
fn misused_calls_and_tree_rebuilds_point_at_the_user() {
    let w = Tensor::zeros(&[2], DType::F64);
    check(
        || {
            grad(|w: &Tensor| w.sum()).partial_grad(true).call(&w, ());
        },
        &["grad: call returns gradients and outputs", "use run"],
    );
    check(
        || {
            grad(|w: &Tensor| w.sum()).run(&w, (), Some(&w));
        },
        &["an output gradient must be passed to run exactly when"],
    );
    check(
        || {
            ferrograd::rebuild(&vec![w.clone()], vec![]);
        },
        &["rebuild: the tree has 1 leaves, got 0 tensors"],
    );
    check(
        || {
            w.trace();
        },
        &["trace: expects a matrix", "[2]"],
    );
    check(
        || {
            Tensor::meshgrid(&[w.clone(), Tensor::zeros(&[2, 2], DType::F64)]);
        },
        &["meshgrid: expects 1-d tensors", "[2, 2] at position 1"],
    );
}
