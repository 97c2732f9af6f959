//! The seed's `x[k] = v` inside differentiated code, in its Rust form.

use ferrograd::{grad, Index, Tensor};

use crate::common::*;

#[test]
fn assignment_by_number_list_tensor_and_mask() {
    // f(x, v) = sum((x with x[k] = v)²): d/dx = 2x except at k, d/dv = 2v (per row written)
    let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
    let v = Tensor::from_vec(vec![10.0f64, 20.0], &[2]);
    let forms: Vec<(Index, Vec<f64>, Vec<f64>)> = vec![
        (
            Index::Single(1),
            vec![2.0, 4.0, 0.0, 0.0, 10.0, 12.0],
            vec![20.0, 40.0],
        ),
        (
            Index::List(vec![0, 2]),
            vec![0.0, 0.0, 6.0, 8.0, 0.0, 0.0],
            vec![40.0, 80.0],
        ),
        (
            Index::Tensor(ferrograd::Array::from_vec(vec![2i64], &[1])),
            vec![2.0, 4.0, 6.0, 8.0, 0.0, 0.0],
            vec![20.0, 40.0],
        ),
        (
            Index::Mask(ferrograd::Array::from_vec(vec![true, false, false], &[3])),
            vec![0.0, 0.0, 6.0, 8.0, 10.0, 12.0],
            vec![20.0, 40.0],
        ),
    ];
    for (index, dx, dv) in forms {
        let f = |p: &(Tensor, Tensor)| {
            let mut y = p.0.clone();
            y.set(index.clone(), &p.1);
            y.square().sum()
        };
        let (g, _) = grad(f).call(&(x.clone(), v.clone()), ());
        assert_close(&g.0, &dx, 1e-12);
        assert_close(&g.1, &dv, 1e-12);
    }
}

#[test]
fn a_number_assigned_cuts_the_gradient_there() {
    let f = |x: &Tensor| {
        let mut y = x * 3.0;
        y.set_value(0i64, 0.0);
        y.sum()
    };
    let (g, _) = grad(f).call(&Tensor::from_vec(vec![1.0f64, 1.0, 1.0], &[3]), ());
    assert_eq!(g.to_f64_vec(), vec![0.0, 3.0, 3.0]);
}

#[test]
fn reads_before_a_write_see_the_old_value_and_reads_after_see_the_new() {
    // y = x; a = y[0]; y[0] = 2 a; b = y[0]; loss = a + b = x0 + 2 x0, d/dx0 = 3
    let f = |x: &Tensor| {
        let mut y = x.clone();
        let a = y.index(0i64);
        y.set(0i64, &(&a * 2.0));
        let b = y.index(0i64);
        (a + b).sum()
    };
    let (g, _) = grad(f).call(&Tensor::from_vec(vec![1.5f64, 7.0], &[2]), ());
    assert_eq!(g.to_f64_vec(), vec![3.0, 0.0]);
}

#[test]
fn assigning_into_a_parameter_leaves_the_callers_tensor_unchanged() {
    let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    let f = |x: &Tensor| {
        let mut y = x.clone();
        y.set_value(1i64, 9.0);
        (&y * x).sum()
    };
    // y = [x0, 9]; loss = x0² + 9 x1; d = [2 x0, 9]
    let (g, loss) = grad(f).call(&x, ());
    assert_eq!(g.to_f64_vec(), vec![2.0, 9.0]);
    assert_eq!(loss.item::<f64>(), 1.0 + 18.0);
    assert_eq!(x.to_f64_vec(), vec![1.0, 2.0]);
}
