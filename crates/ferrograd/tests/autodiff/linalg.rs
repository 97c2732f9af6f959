//! Linear algebra: decompositions and solvers against NumPy 2.4's `numpy.linalg` (values
//! printed by it, quoted below) and against their defining identities, and their gradients
//! against finite differences at first and second order (through functions that do not
//! depend on the sign of singular vectors and eigenvectors, which are not unique).

use ferrograd::{einsum, grad, DType, Generator, MatrixNorm, Tensor, Triangular};

use crate::common::*;
use crate::primitives::check;

fn t(values: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(values.to_vec(), shape)
}

/// `[[4, 1, 2], [1, 5, 3], [2, 3, 6]]`, symmetric positive-definite.
fn spd() -> Tensor {
    t(&[4., 1., 2., 1., 5., 3., 2., 3., 6.], &[3, 3])
}

/// `[[1, -2, 0.5], [3, 0, -1], [2, 1, 1]]`, determinant 12.5.
fn general() -> Tensor {
    t(&[1., -2., 0.5, 3., 0., -1., 2., 1., 1.], &[3, 3])
}

/// The largest absolute entry of `a - b`.
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().item::<f64>()
}

/// `x` made well-conditioned: `x + 3 I` (for entries drawn from [-1, 1)).
fn shifted(x: &Tensor) -> Tensor {
    let n = x.shape()[x.ndim() - 1];
    x + &Tensor::eye(n, DType::F64).mul_scalar(3.0)
}

/// `(x + xᵀ) / 2`: a symmetric matrix from any square one.
fn sym(x: &Tensor) -> Tensor {
    (x + &x.mt()).mul_scalar(0.5)
}

#[test]
fn values_against_numpy() {
    let b = general();
    assert_close(&b.det(), &[12.499999999999996], 1e-14);
    let (sign, log) = b.slogdet();
    assert_close(&sign, &[1.0], 0.0);
    assert_close(&log, &[2.525728644308255], 1e-14);
    assert_close(
        &b.inverse(),
        &[0.08, 0.2, 0.16, -0.4, 0.0, 0.2, 0.24, -0.4, 0.48],
        1e-14,
    );
    assert_close(
        &spd().cholesky(),
        &[
            2.0,
            0.0,
            0.0,
            0.5,
            2.179449471770337,
            0.0,
            1.0,
            1.1470786693528088,
            1.9194297398747862,
        ],
        1e-14,
    );
    assert_close(
        &spd().eigvalsh(),
        &[2.1943971674224088, 3.3867701566075477, 9.418832675970037],
        1e-13,
    );
    assert_close(
        &b.svdvals(),
        &[3.7444943861001283, 2.2360679774997902, 1.4929038121944174],
        1e-13,
    );
    let c = t(&[1., 2., 3., 2., 4., 6.], &[2, 3]);
    assert_close(
        &c.pinv(),
        &[
            0.014285714285714285,
            0.028571428571428574,
            0.02857142857142857,
            0.05714285714285715,
            0.04285714285714286,
            0.08571428571428572,
        ],
        1e-13,
    );
    // NumPy's (LAPACK's) Householder signs make R's diagonal [-5, -5.02]; ours is
    // non-negative, so Q's columns and R's rows are NumPy's negated
    let (q, r) = t(&[3., 1., 4., 2., 0., 5.], &[3, 2]).qr();
    assert_close(
        &q,
        &[
            0.6,
            -0.06379617782631204,
            0.8,
            0.04784713336973403,
            0.0,
            0.9968152785361247,
        ],
        1e-14,
    );
    assert_close(&r, &[5.0, 2.2, 0.0, 5.015974481593782], 1e-14);
    let norms = [
        (MatrixNorm::Frobenius, 4.6097722286464435),
        (MatrixNorm::Nuclear, 7.473466175794337),
        (MatrixNorm::One, 6.0),
        (MatrixNorm::NegOne, 2.5),
        (MatrixNorm::Two, 3.7444943861001283),
        (MatrixNorm::NegTwo, 1.4929038121944174),
        (MatrixNorm::Inf, 4.0),
        (MatrixNorm::NegInf, 3.5),
    ];
    for (ord, want) in norms {
        assert_close(&b.matrix_norm(ord), &[want], 1e-13);
    }
    let x1 = t(&[0., 1., 2., 2., 1., -1.], &[3, 2]);
    let x2 = t(&[1., 1., 0., 3.], &[2, 2]);
    let cdists: [(f64, [f64; 6]); 4] = [
        (1.0, [1.0, 2.0, 2.0, 3.0, 2.0, 5.0]),
        (
            2.0,
            [
                1.0,
                2.0,
                std::f64::consts::SQRT_2,
                2.23606797749979,
                2.0,
                4.123105625617661,
            ],
        ),
        (
            3.0,
            [
                1.0,
                2.0,
                1.2599210498948732,
                2.080083823051904,
                2.0,
                4.020725758589058,
            ],
        ),
        (f64::INFINITY, [1.0, 2.0, 1.0, 2.0, 2.0, 4.0]),
    ];
    for (p, want) in cdists {
        assert_close(&x1.cdist(&x2, p), &want, 1e-14);
    }
}

#[test]
fn decompositions_satisfy_their_identities() {
    let mut rng = Generator::new(41);
    for shape in [[2usize, 4, 4], [1, 5, 3], [3, 2, 5]] {
        let a = rand(&mut rng, &shape, -1.0, 1.0);
        let (m, n) = (shape[1], shape[2]);
        let k = m.min(n);
        let eye = |s| Tensor::eye(s, DType::F64);
        // QR: Q R = A, Qᵀ Q = I, R upper triangular
        let (q, r) = a.qr();
        assert_eq!(
            (q.shape(), r.shape()),
            (&[shape[0], m, k][..], &[shape[0], k, n][..])
        );
        assert!(max_diff(&q.matmul(&r), &a) < 1e-13);
        assert!(max_diff(&q.mt().matmul(&q), &eye(k)) < 1e-13);
        assert_eq!(max_diff(&r, &r.triu(0)), 0.0);
        // SVD: U diag(S) Vh = A, orthonormal factors, S non-negative and descending
        let (u, s, vh) = a.svd();
        assert!(max_diff(&(&u * &s.unsqueeze(-2)).matmul(&vh), &a) < 1e-13);
        assert!(max_diff(&u.mt().matmul(&u), &eye(k)) < 1e-13);
        assert!(max_diff(&vh.matmul(&vh.mt()), &eye(k)) < 1e-13);
        let sv = s.to_vec::<f64>();
        for row in sv.chunks(k) {
            assert!(
                row.windows(2).all(|w| w[0] >= w[1]) && row[k - 1] >= 0.0,
                "{row:?}"
            );
        }
        assert!(max_diff(&a.svdvals(), &s) < 1e-13);
        // pinv: the four Penrose conditions
        let p = a.pinv();
        assert!(max_diff(&a.matmul(&p).matmul(&a), &a) < 1e-12);
        assert!(max_diff(&p.matmul(&a).matmul(&p), &p) < 1e-12);
        let ap = a.matmul(&p);
        let pa = p.matmul(&a);
        assert!(max_diff(&ap, &ap.mt()) < 1e-12 && max_diff(&pa, &pa.mt()) < 1e-12);
    }
    for n in [1usize, 3, 6] {
        let x = rand(&mut rng, &[2, n, n], -1.0, 1.0);
        let a = shifted(&x);
        let eye = Tensor::eye(n, DType::F64);
        // solve and inverse
        let b = rand(&mut rng, &[2, n, 2], -1.0, 1.0);
        assert!(max_diff(&a.matmul(&a.solve(&b)), &b) < 1e-13);
        assert!(max_diff(&a.matmul(&a.inverse()), &eye) < 1e-13);
        // det and slogdet agree; the cofactor is det · A⁻ᵀ
        let (sign, log) = a.slogdet();
        assert!(max_diff(&(&sign * &log.exp()), &a.det()) < 1e-12);
        let want = &a.det().unsqueeze(-1).unsqueeze(-1) * &a.inverse().mt();
        assert!(max_diff(&a.cofactor(), &want) < 1e-12);
        // Cholesky and eigh of a symmetric positive-definite matrix
        let spd = &x.matmul(&x.mt()) + &eye;
        let l = spd.cholesky();
        assert_eq!(max_diff(&l, &l.tril(0)), 0.0);
        assert!(max_diff(&l.matmul(&l.mt()), &spd) < 1e-13);
        let (w, v) = spd.eigh();
        assert!(max_diff(&(&v * &w.unsqueeze(-2)).matmul(&v.mt()), &spd) < 1e-13);
        assert!(max_diff(&v.mt().matmul(&v), &eye) < 1e-13);
        assert!(max_diff(&spd.eigvalsh(), &w) < 1e-13);
        // triangular solves read only their triangle
        for tri in [
            Triangular::Lower,
            Triangular::Upper,
            Triangular::UnitLower,
            Triangular::UnitUpper,
        ] {
            let used = match tri {
                Triangular::Lower => a.tril(0),
                Triangular::Upper => a.triu(0),
                Triangular::UnitLower => &a.tril(-1) + &eye,
                Triangular::UnitUpper => &a.triu(1) + &eye,
            };
            let x = a.solve_triangular(&b, tri);
            assert!(max_diff(&used.matmul(&x), &b) < 1e-13, "{tri:?}");
        }
    }
}

#[test]
fn solve_takes_vectors_and_broadcasts_batches() {
    let mut rng = Generator::new(5);
    let a = shifted(&rand(&mut rng, &[2, 1, 3, 3], -1.0, 1.0));
    let b = rand(&mut rng, &[4, 3, 2], -1.0, 1.0);
    let x = a.solve(&b);
    assert_eq!(x.shape(), &[2, 4, 3, 2]);
    assert!(max_diff(&a.matmul(&x), &b.expand(&[2, 4, 3, 2])) < 1e-13);
    // a vector right-hand side: 1-d, or one dim fewer than A
    let v = rand(&mut rng, &[3], -1.0, 1.0);
    let m = shifted(&rand(&mut rng, &[3, 3], -1.0, 1.0));
    assert!(max_diff(&m.mv(&m.solve(&v)), &v) < 1e-13);
    let vs = rand(&mut rng, &[2, 3], -1.0, 1.0);
    let ms = shifted(&rand(&mut rng, &[2, 3, 3], -1.0, 1.0));
    let xs = ms.solve(&vs);
    assert_eq!(xs.shape(), &[2, 3]);
    assert!(max_diff(&ms.matmul(&xs.unsqueeze(-1)).squeeze_dim(-1), &vs) < 1e-13);
}

#[test]
fn determinant_gradient_is_the_cofactor_matrix_even_when_singular() {
    // cofactors computed from 2x2 minors with NumPy
    let cases = [
        (
            [1., 2., 3., 2., 4., 6., 1., 0., 1.],
            [4., 4., -4., -2., -2., 2., 0., 0., 0.],
        ),
        ([1., 2., 3., 2., 4., 6., 3., 6., 9.], [0.0; 9]),
    ];
    for (a, want) in cases {
        let a = t(&a, &[3, 3]);
        assert_eq!(a.det().item::<f64>().abs(), 0.0);
        let (g, _) = grad(|a: &Tensor| a.det()).call(&a, ());
        assert_close(&g, &want, 1e-12);
    }
    // and matches det · A⁻ᵀ on invertible ones
    let b = general();
    let (g, _) = grad(|a: &Tensor| a.det()).call(&b, ());
    let want = (&b.inverse().mt() * 12.5).to_vec::<f64>();
    assert_close(&g, &want, 1e-13);
}

#[test]
fn gradients_of_solvers() {
    check("solve", &[&[2, 3, 3], &[3, 2]], -1.0, 1.0, |p| {
        shifted(&p[0]).solve(&p[1])
    });
    check("solve (vector)", &[&[3, 3], &[3]], -1.0, 1.0, |p| {
        shifted(&p[0]).solve(&p[1])
    });
    check("inverse", &[&[2, 3, 3]], -1.0, 1.0, |p| {
        shifted(&p[0]).inverse()
    });
    check("inverse (transposed input)", &[&[3, 3]], -1.0, 1.0, |p| {
        shifted(&p[0]).mt().inverse()
    });
    check("det", &[&[2, 3, 3]], -1.0, 1.0, |p| p[0].det());
    check("logdet", &[&[3, 3]], -1.0, 1.0, |p| shifted(&p[0]).logdet());
    check("slogdet", &[&[2, 3, 3]], -1.0, 1.0, |p| p[0].slogdet().1);
    check("cofactor", &[&[3, 3]], -1.0, 1.0, |p| {
        shifted(&p[0]).cofactor()
    });
    for tri in [
        Triangular::Lower,
        Triangular::Upper,
        Triangular::UnitLower,
        Triangular::UnitUpper,
    ] {
        check(
            &format!("solve_triangular {tri:?}"),
            &[&[2, 3, 3], &[2, 3, 2]],
            -1.0,
            1.0,
            |p| shifted(&p[0]).solve_triangular(&p[1], tri),
        );
    }
    check("pinv (tall)", &[&[4, 3]], -1.0, 1.0, |p| p[0].pinv());
    check("pinv (wide)", &[&[2, 2, 4]], -1.0, 1.0, |p| p[0].pinv());
}

#[test]
fn gradients_of_decompositions() {
    check("cholesky", &[&[2, 3, 3]], -1.0, 1.0, |p| {
        let n = 3;
        (&p[0].matmul(&p[0].mt()) + &Tensor::eye(n, DType::F64)).cholesky()
    });
    // through a symmetrised input, as eigh and cholesky read one triangle
    check("cholesky (symmetrised)", &[&[3, 3]], -1.0, 1.0, |p| {
        shifted(&sym(&p[0])).cholesky()
    });
    check("qr (tall)", &[&[4, 3]], -1.0, 1.0, |p| {
        let (q, r) = p[0].qr();
        Tensor::cat(&[q.reshape(&[12]), r.reshape(&[9])], 0)
    });
    check("qr (wide)", &[&[2, 3]], -1.0, 1.0, |p| {
        let (q, r) = p[0].qr();
        Tensor::cat(&[q.reshape(&[4]), r.reshape(&[6])], 0)
    });
    // sign-invariant functions of the singular vectors: squares, and U Vh
    for shape in [[2usize, 4, 3], [1, 3, 3], [1, 2, 4]] {
        check(&format!("svd {shape:?}"), &[&shape], -1.0, 1.0, |p| {
            let (u, s, vh) = p[0].svd();
            Tensor::cat(
                &[
                    u.square().flatten(0, -1),
                    s.flatten(0, -1),
                    vh.square().flatten(0, -1),
                    u.matmul(&vh).flatten(0, -1),
                ],
                0,
            )
        });
        check(
            &format!("svd, values only {shape:?}"),
            &[&shape],
            -1.0,
            1.0,
            |p| p[0].svd().1,
        );
    }
    check("svdvals", &[&[2, 3, 4]], -1.0, 1.0, |p| p[0].svdvals());
    check("eigh", &[&[2, 3, 3]], -1.0, 1.0, |p| {
        let (l, v) = sym(&p[0]).eigh();
        Tensor::cat(&[l.flatten(0, -1), v.square().flatten(0, -1)], 0)
    });
    check("eigvalsh", &[&[2, 4, 4]], -1.0, 1.0, |p| {
        sym(&p[0]).eigvalsh()
    });
    for ord in [
        MatrixNorm::Frobenius,
        MatrixNorm::Nuclear,
        MatrixNorm::Two,
        MatrixNorm::NegTwo,
        MatrixNorm::One,
        MatrixNorm::Inf,
    ] {
        check(
            &format!("matrix_norm {ord:?}"),
            &[&[2, 3, 4]],
            0.1,
            1.0,
            |p| p[0].matrix_norm(ord),
        );
    }
    check("cdist", &[&[2, 3, 4], &[5, 4]], -1.0, 1.0, |p| {
        p[0].cdist(&p[1], 2.0)
    });
    check("cdist p=3", &[&[3, 4], &[5, 4]], -1.0, 1.0, |p| {
        p[0].cdist(&p[1], 3.0)
    });
}

#[test]
fn unused_results_give_finite_gradients_at_repeated_values() {
    // The identity has every singular value and eigenvalue equal: the vectors' gradients
    // are infinite there, but a loss of the values alone must not see them.
    let eye = Tensor::eye(3, DType::F64);
    let (g, _) = grad(|a: &Tensor| a.svd().1.sum()).call(&eye, ());
    assert_close(&g, &eye.to_vec::<f64>(), 1e-14);
    let (g, _) = grad(|a: &Tensor| a.eigh().0.sum()).call(&eye, ());
    assert_close(&g, &eye.to_vec::<f64>(), 1e-14);
    let (g, _) = grad(|a: &Tensor| a.matrix_norm(MatrixNorm::Nuclear)).call(&eye, ());
    assert_close(&g, &eye.to_vec::<f64>(), 1e-14);
}

#[test]
fn batched_diagonals() {
    let x = Tensor::from_vec((0..24).map(f64::from).collect(), &[2, 3, 4]);
    // the last two dims by default, any pair with diagonal_dims
    assert_eq!(
        x.diagonal(0).to_vec::<f64>(),
        vec![0., 5., 10., 12., 17., 22.]
    );
    assert_eq!(
        x.diagonal(1).to_vec::<f64>(),
        vec![1., 6., 11., 13., 18., 23.]
    );
    assert_eq!(x.diagonal(-1).to_vec::<f64>(), vec![4., 9., 16., 21.]);
    assert_eq!(x.diagonal_dims(0, 0, 2).shape(), &[3, 2]);
    assert_eq!(
        x.diagonal_dims(0, 0, 2).to_vec::<f64>(),
        vec![0., 13., 4., 17., 8., 21.]
    );
    check("diagonal", &[&[2, 3, 4]], -1.0, 1.0, |p| p[0].diagonal(1));
    check("diagonal_dims", &[&[3, 2, 4]], -1.0, 1.0, |p| {
        p[0].diagonal_dims(-1, 2, 0)
    });
    check("diag_embed", &[&[2, 3]], -1.0, 1.0, |p| p[0].diag_embed(1));
    check("diagonal_scatter", &[&[2, 3, 3], &[2, 3]], -1.0, 1.0, |p| {
        p[0].diagonal_scatter(&p[1], 0, 1, 2)
    });
}

#[test]
fn einsum_against_explicit_products() {
    let mut rng = Generator::new(9);
    let a = rand(&mut rng, &[2, 3, 4], -1.0, 1.0);
    let b = rand(&mut rng, &[2, 4, 5], -1.0, 1.0);
    let m = rand(&mut rng, &[4, 4], -1.0, 1.0);
    let v = rand(&mut rng, &[4], -1.0, 1.0);
    let w = rand(&mut rng, &[5], -1.0, 1.0);
    assert!(max_diff(&einsum("bij,bjk->bik", &[&a, &b]), &a.matmul(&b)) < 1e-14);
    assert!(max_diff(&einsum("...ij,...jk", &[&a, &b]), &a.matmul(&b)) < 1e-14);
    assert!(max_diff(&einsum("bij->bji", &[&a]), &a.mt()) < 1e-14);
    assert!(max_diff(&einsum("ii->i", &[&m]), &m.diagonal(0)) < 1e-14);
    assert!(max_diff(&einsum("ii", &[&m]), &m.trace()) < 1e-14);
    assert!(max_diff(&einsum("i,i->", &[&v, &v]), &v.dot(&v)) < 1e-14);
    assert!(max_diff(&einsum("i,j->ij", &[&v, &w]), &v.outer(&w)) < 1e-14);
    assert!(max_diff(&einsum("bij->j", &[&a]), &a.sum_dim([0, 1], false)) < 1e-14);
    // three operands, one contraction chain: Σ_j Σ_k a[b,i,j] b[b,j,k] w[k]
    let chain = einsum("bij,bjk,k->bi", &[&a, &b, &w]);
    assert!(max_diff(&chain, &a.matmul(&b).matmul(&w)) < 1e-14);
    // broadcasting `...` of different lengths, and a label kept for the output (batch)
    let c = rand(&mut rng, &[3, 4], -1.0, 1.0);
    assert!(
        max_diff(
            &einsum("...ij,...ij->...i", &[&a, &c]),
            &(&a * &c).sum_dim(-1, false)
        ) < 1e-14
    );
    check("einsum", &[&[2, 3, 4], &[4, 5], &[5]], -1.0, 1.0, |p| {
        einsum("bij,jk,k->bi", &[&p[0], &p[1], &p[2]])
    });
    check("einsum diagonal", &[&[3, 3, 2]], -1.0, 1.0, |p| {
        einsum("iij->j", &[&p[0]])
    });
}

#[test]
fn errors_name_the_op_and_the_problem() {
    let singular = t(&[1., 2., 2., 4.], &[2, 2]);
    let zero = t(&[0., 0., 0., 0.], &[2, 2]);
    let msg = panic_message(|| {
        zero.inverse();
    });
    assert!(msg.contains("inverse") && msg.contains("singular"), "{msg}");
    let msg = panic_message(|| {
        zero.solve(&t(&[1., 1.], &[2]));
    });
    assert!(
        msg.contains("solve") && msg.contains("singular") && msg.contains("linalg.rs"),
        "{msg}"
    );
    let msg = panic_message(|| {
        t(&[1., 2., 2., 1.], &[2, 2]).cholesky();
    });
    assert!(
        msg.contains("cholesky")
            && msg.contains("not positive-definite")
            && msg.contains("order 2"),
        "{msg}"
    );
    let msg = panic_message(|| {
        t(&[1., 2., 3., 4., 5., 6.], &[2, 3]).det();
    });
    assert!(
        msg.contains("det") && msg.contains("square") && msg.contains("[2, 3]"),
        "{msg}"
    );
    let msg = panic_message(|| {
        singular.solve(&t(&[1., 1., 1.], &[3]));
    });
    assert!(msg.contains("solve") && msg.contains("[2, 2]"), "{msg}");
    let msg = panic_message(|| {
        einsum("ij,jk->ik", &[&singular, &t(&[1., 2., 3.], &[3, 1])]);
    });
    assert!(
        msg.contains("einsum") && msg.contains("label 'j' has sizes 2 and 3"),
        "{msg}"
    );
    let msg = panic_message(|| {
        einsum("ij->k", &[&singular]);
    });
    assert!(msg.contains("output label 'k' is in no operand"), "{msg}");
    // iterative decompositions refuse non-finite entries (rather than iterating forever),
    // naming the matrix of the batch
    let batch = t(&[1., 0., 0., 1., 1., 0., f64::NAN, 1.], &[2, 2, 2]);
    for (op, run) in [
        ("svd", Box::new(|| drop(batch.svd())) as Box<dyn Fn()>),
        ("eigh", Box::new(|| drop(batch.eigh()))),
        ("pinv", Box::new(|| drop(batch.pinv()))),
    ] {
        let msg = panic_message(run);
        assert!(
            msg.contains(op) && msg.contains("matrix 1 of the batch") && msg.contains("non-finite"),
            "{msg}"
        );
    }
}

#[test]
fn f32_matrices_decompose_in_f64_and_return_f32() {
    let a = spd().to_dtype(DType::F32);
    let b = general().to_dtype(DType::F32);
    // computed in f64 from the f32 values, rounded once
    let in_f64 = b.to_dtype(DType::F64);
    assert_eq!(
        b.inverse().to_vec::<f32>(),
        in_f64.inverse().to_dtype(DType::F32).to_vec::<f32>()
    );
    assert_eq!(
        b.svdvals().to_vec::<f32>(),
        in_f64.svdvals().to_dtype(DType::F32).to_vec::<f32>()
    );
    let close = |x: &Tensor, y: &Tensor| max_diff(&x.to_dtype(DType::F64), &y.to_dtype(DType::F64));
    let l = a.cholesky();
    assert_eq!(l.dtype(), DType::F32);
    assert!(close(&l.matmul(&l.mt()), &a) < 1e-5);
    assert!(close(&b.matmul(&b.inverse()), &Tensor::eye(3, DType::F32)) < 1e-5);
    assert!((b.det().item::<f32>() - 12.5).abs() < 1e-4);
    let (u, s, vh) = b.svd();
    assert_eq!(s.dtype(), DType::F32);
    assert!(close(&(&u * &s.unsqueeze(-2)).matmul(&vh), &b) < 1e-5);
    let (w, v) = a.eigh();
    assert!(close(&(&v * &w.unsqueeze(-2)).matmul(&v.mt()), &a) < 1e-5);
    let (g, _) = grad(|m: &Tensor| m.logdet()).call(&a, ());
    assert_eq!(g.dtype(), DType::F32);
    assert!(close(&g, &a.inverse().mt()) < 1e-5);
}

#[test]
fn new_ops_on_strided_and_broadcast_inputs() {
    // transposed (non-contiguous) operands and broadcast batch dims, first and second order
    check(
        "solve, transposed A, broadcast B",
        &[&[3, 3], &[2, 3, 2]],
        -1.0,
        1.0,
        |p| shifted(&p[0]).mt().solve(&p[1]),
    );
    check("svd of a transposed matrix", &[&[4, 3]], -1.0, 1.0, |p| {
        let (u, s, vh) = p[0].mt().svd();
        Tensor::cat(&[u.matmul(&vh).flatten(0, -1), s], 0)
    });
    check("eigh of a permuted batch", &[&[3, 2, 3]], -1.0, 1.0, |p| {
        sym(&p[0].permute(&[1, 0, 2])).eigvalsh()
    });
    check(
        "cholesky of a transposed product",
        &[&[3, 3]],
        -1.0,
        1.0,
        |p| (&p[0].mt().matmul(&p[0]) + &Tensor::eye(3, DType::F64)).cholesky(),
    );
    check(
        "einsum on transposed operands",
        &[&[4, 3], &[5, 4]],
        -1.0,
        1.0,
        |p| einsum("ij,jk->ik", &[&p[0].t(), &p[1].t()]),
    );
    check("at on a transposed tensor", &[&[4, 3]], -1.0, 1.0, |p| {
        p[0].t().at((
            ferrograd::Step(.., 2),
            &Tensor::from_vec(vec![3i64, 0], &[2]),
        ))
    });
    check(
        "special functions on a transposed tensor",
        &[&[3, 4]],
        0.3,
        0.9,
        |p| {
            let t = p[0].t();
            &(&t.erfinv() + &t.lgamma()) + &t.digamma()
        },
    );
    check("fmod, broadcast divisor", &[&[2, 3], &[3]], 2.2, 2.5, |p| {
        p[0].t()
            .fmod(&(&(&p[1] - 2.2) * (0.2 / 0.3)).add_scalar(1.3).unsqueeze(1))
    });
    check(
        "cumprod along a transposed dim",
        &[&[4, 3]],
        -1.5,
        1.5,
        |p| p[0].t().cumprod(1),
    );
}

/// `slogdet`'s gradient `A⁻ᵀ`: at an exactly singular matrix it is infinite or NaN, as in
/// PyTorch, where it once refused the matrix inside the backward pass ("inverse: matrix 0
/// of the batch is singular", at the library's line); it stays exact where `det A` itself
/// overflows, and on a matrix that is not symmetric.
#[test]
fn slogdet_gradient_at_singular_huge_and_unsymmetric_matrices() {
    let d = |m: &Tensor| {
        let (g, _) = grad(|m: &Tensor| m.slogdet().1).call(m, ());
        g
    };
    let singular = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2]);
    assert_eq!(singular.slogdet().1.item::<f64>(), f64::NEG_INFINITY);
    assert!(d(&singular).to_vec::<f64>().iter().all(|v| !v.is_finite()));
    assert!(d(&Tensor::zeros(&[3, 3], DType::F64))
        .to_vec::<f64>()
        .iter()
        .all(|v| !v.is_finite()));
    // det = 10^400 overflows; ln|det| and A⁻ᵀ do not
    let n = 400;
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 10.0;
    }
    v[1] = 3.0;
    let huge = Tensor::from_vec(v, &[n, n]);
    assert_eq!(huge.det().item::<f64>(), f64::INFINITY);
    assert!(max_diff(&d(&huge), &huge.inverse().mt()) < 1e-15);
    let a = Tensor::from_vec(
        vec![2.0f64, -1.0, 0.5, 1.0, 3.0, -2.0, 0.0, 1.0, 4.0],
        &[3, 3],
    );
    assert!(max_diff(&d(&a), &a.inverse().mt()) < 1e-15);
}

/// `logdet` of a matrix with a negative determinant is NaN with a zero gradient, as in
/// PyTorch (it was log|det|'s `A⁻ᵀ`, found against PyTorch 2.15), and `A⁻ᵀ` where positive.
#[test]
fn logdet_of_a_negative_determinant_has_no_gradient() {
    let negative = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 1.0], &[2, 2]);
    assert!(negative.logdet().item::<f64>().is_nan());
    let (g, _) = grad(|m: &Tensor| m.logdet()).call(&negative, ());
    assert_eq!(g.to_vec::<f64>(), [0.0; 4]);
    let positive = Tensor::from_vec(vec![2.0f64, 1.0, 0.5, 3.0], &[2, 2]);
    let (g, _) = grad(|m: &Tensor| m.logdet()).call(&positive, ());
    assert!(max_diff(&g, &positive.inverse().mt()) < 1e-15);
}
