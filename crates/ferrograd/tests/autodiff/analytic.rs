use ferrograd::{grad, hessian, hvp, jacobian, DType, Tensor};

use crate::common::*;

#[test]
fn nested_derivatives_do_not_confuse_perturbations() {
    // d/dx [ x * d/dy (x + y) ]_{y=x} = d/dx [ x * 1 ] = 1 (Siskind & Pearlmutter's test)
    let f = |x: &Tensor| {
        let inner = |y: &Tensor, x: &Tensor| (x + y).sum();
        let (dy, _) = grad(inner).call(x, (x,));
        (x * &dy).sum()
    };
    let (dx, _) = grad(f).call(&Tensor::scalar(3.0f64), ());
    assert_close(&dx, &[1.0], 1e-12);
}

#[test]
fn third_derivative_of_a_cube() {
    // f = x³: f' = 3x², f'' = 6x, f''' = 6
    let f = |x: &Tensor| x.pow_scalar(3.0).sum();
    let f1 = |x: &Tensor| grad(f).call(x, ()).0.sum();
    let f2 = |x: &Tensor| grad(f1).call(x, ()).0.sum();
    let x = Tensor::from_vec(vec![2.0f64], &[1]);
    assert_close(&grad(f).call(&x, ()).0, &[12.0], 1e-12);
    assert_close(&grad(f1).call(&x, ()).0, &[12.0], 1e-12);
    assert_close(&grad(f2).call(&x, ()).0, &[6.0], 1e-12);
}

fn rosenbrock(x: &Tensor) -> Tensor {
    // f = (1 - a)² + 100 (b - a²)²
    let a = x.select(0, 0);
    let b = x.select(0, 1);
    (a.rsub_scalar(1.0).square() + (b - a.square()).square() * 100.0).sum()
}

#[test]
fn hessian_of_rosenbrock() {
    // H = [[2 - 400 b + 1200 a², -400 a], [-400 a, 200]]
    let (a, b) = (1.5, -0.5);
    let x = Tensor::from_vec(vec![a, b], &[2]);
    let h = hessian(rosenbrock, &x);
    assert_eq!(h.shape(), &[2, 2]);
    assert_close(
        &h,
        &[
            2.0 - 400.0 * b + 1200.0 * a * a,
            -400.0 * a,
            -400.0 * a,
            200.0,
        ],
        1e-12,
    );
    // The gradient: [-2(1 - a) - 400 a (b - a²), 200 (b - a²)]
    let (g, _) = grad(rosenbrock).call(&x, ());
    assert_close(
        &g,
        &[
            -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
            200.0 * (b - a * a),
        ],
        1e-12,
    );
    // Hessian-vector product agrees with H v
    let v = Tensor::from_vec(vec![0.3, -1.1], &[2]);
    let hv = hvp(|x: &Tensor| rosenbrock(x), &x, (), &v);
    let hm = h.to_f64_vec();
    assert_close(
        &hv,
        &[hm[0] * 0.3 - hm[1] * 1.1, hm[2] * 0.3 - hm[3] * 1.1],
        1e-12,
    );
}

#[test]
fn jacobian_of_an_elementwise_map_is_diagonal() {
    // y = sin(x): J = diag(cos x)
    let x = Tensor::from_vec(vec![0.1f64, 0.5, 2.0], &[3]);
    let j = jacobian(|x| x.sin(), &x);
    let c: Vec<f64> = [0.1f64, 0.5, 2.0].iter().map(|v| v.cos()).collect();
    assert_close(&j, &[c[0], 0.0, 0.0, 0.0, c[1], 0.0, 0.0, 0.0, c[2]], 1e-12);
    // y = A x: J = A
    let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let j = jacobian(|x| a.matmul(x), &x);
    assert_eq!(j.shape(), &[2, 3]);
    assert_close(&j, &a.to_f64_vec(), 1e-12);
}

#[test]
fn gradient_of_a_quadratic_form_and_its_hessian() {
    // f = xᵀ A x: ∇f = (A + Aᵀ) x, H = A + Aᵀ
    let a = Tensor::from_vec(vec![2.0f64, 1.0, 0.0, 3.0], &[2, 2]);
    let f = |x: &Tensor| x.dot(&a.mv(x));
    let x = Tensor::from_vec(vec![1.0f64, -2.0], &[2]);
    let (g, _) = grad(f).call(&x, ());
    assert_close(&g, &[4.0 * 1.0 + 1.0 * -2.0, 1.0 * 1.0 + 6.0 * -2.0], 1e-12);
    let h = hessian(f, &x);
    assert_close(&h, &[4.0, 1.0, 1.0, 6.0], 1e-12);
    let _ = DType::F64;
}
