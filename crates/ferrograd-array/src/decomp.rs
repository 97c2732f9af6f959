//! Matrix decompositions and solvers on `nalgebra`: LU (`solve`, `inverse`, `det`, `slogdet`),
//! Cholesky, triangular solves, QR, the singular value decomposition, the symmetric
//! eigendecomposition and the pseudo-inverse.
//!
//! Every function takes a batch of matrices `[.., m, n]` (any number of leading batch dims)
//! and factorizes each matrix in turn, single-threaded: the matrices these ops meet in
//! models are small, and a batch of them is the caller's to spread over threads. Every
//! factorization computes in f64, f32 inputs included (their results are rounded once at
//! the end, so they are at least as accurate as an f32 computation); results are row-major
//! arrays of the input's dtype. Cholesky and the triangular solves are the textbook loops
//! (the first to name the failing minor, the second to give LAPACK's infinities at a zero
//! diagonal); LU, QR, the SVD and the symmetric eigendecomposition are nalgebra's.
//!
//! Why nalgebra rather than faer (faster on large matrices): faer and the GEMM and SIMD
//! crates it brings took about 250 s of CPU of a 690 s cold build on a 2-core machine, and
//! sat on the build's critical path; nalgebra takes about 40 s.
//!
//! Numerical failures panic as shape errors do, naming the op, the matrix of the batch and
//! the caller's line: a singular matrix in `solve` and `inverse` (an exact zero pivot, as
//! LAPACK reports it), a matrix that is not positive-definite in `cholesky`, an SVD or
//! eigendecomposition that does not converge (or meets non-finite entries).

use nalgebra::DMatrix;

use crate::error::{dtype_fail, fail};
use crate::layout::{fmt_shape, numel};
use crate::{Array, DType};

/// The batch shape and matrix size of `a` (`[.., m, n]`).
#[track_caller]
fn matrix_dims(a: &Array, op: &str) -> (Vec<usize>, usize, usize) {
    if a.ndim() < 2 {
        fail(
            op,
            format_args!(
                "expects a matrix or a batch of matrices [.., m, n], got shape {}",
                fmt_shape(a.shape())
            ),
        )
    }
    let d = a.ndim();
    (
        a.shape()[..d - 2].to_vec(),
        a.shape()[d - 2],
        a.shape()[d - 1],
    )
}

/// The batch shape and size of a batch of square matrices `[.., n, n]`.
#[track_caller]
fn square_dims(a: &Array, op: &str) -> (Vec<usize>, usize) {
    let (batch, m, n) = matrix_dims(a, op);
    if m != n {
        fail(
            op,
            format_args!(
                "expects square matrices [.., n, n], got shape {}",
                fmt_shape(a.shape())
            ),
        )
    }
    (batch, n)
}

/// The batch shape, `n` and `k` of a system `A X = B`: `A` `[.., n, n]`, `B` `[.., n, k]`
/// with the same batch shape and dtype, or a panic naming `op`.
#[track_caller]
fn system_dims(a: &Array, b: &Array, op: &str) -> (Vec<usize>, usize, usize) {
    let (batch, n) = square_dims(a, op);
    let (b_batch, b_rows, k) = matrix_dims(b, op);
    if b_batch != batch || b_rows != n || b.dtype() != a.dtype() {
        fail(
            op,
            format_args!(
                "A of shape {} ({:?}) and B of shape {} ({:?}) do not match: B must be \
                 [.., n, k] with A's batch shape and dtype",
                fmt_shape(a.shape()),
                a.dtype(),
                fmt_shape(b.shape()),
                b.dtype()
            ),
        )
    }
    (batch, n, k)
}

/// `batch ++ tail`.
fn with_tail(batch: &[usize], tail: &[usize]) -> Vec<usize> {
    batch.iter().chain(tail).copied().collect()
}

/// The elements of `a` in f64, or a panic naming `op` for a dtype other than f32 and f64.
/// Every decomposition computes in f64 (f32 results are rounded from it).
#[track_caller]
fn float_values(a: &Array, op: &str) -> Vec<f64> {
    if !a.dtype().is_float() {
        dtype_fail(op, a.dtype(), "a float dtype (f32 or f64)")
    }
    if !a.device().is_cpu() {
        // (reading the elements would copy them to the host, and the result stay there)
        crate::error::no_kernel_on(op, a.device())
    }
    a.to_f64_vec()
}

/// `values` (computed in f64) as an array of `shape` in `dtype`.
fn output(values: Vec<f64>, shape: &[usize], dtype: DType) -> Array {
    Array::from_vec(values, shape).to_dtype(dtype)
}

/// Calls `f(b, A_b)` for each matrix `A_b` (`m x n`, in f64) of the batch, in order, and
/// fails with the first error `f` returns (closures cannot carry the caller's line; this
/// can).
#[track_caller]
fn for_each_matrix(
    a: &Array,
    op: &str,
    m: usize,
    n: usize,
    mut f: impl FnMut(usize, DMatrix<f64>) -> Result<(), String>,
) {
    let values = float_values(a, op);
    let count = numel(&a.shape()[..a.ndim() - 2]);
    for b in 0..count {
        let chunk = &values[b * m * n..(b + 1) * m * n];
        if let Err(message) = f(b, DMatrix::from_row_slice(m, n, chunk)) {
            fail(op, message)
        }
    }
}

/// Appends `mat` row by row.
fn push_rows(out: &mut Vec<f64>, mat: &DMatrix<f64>) {
    for i in 0..mat.nrows() {
        out.extend(mat.row(i).iter());
    }
}

/// The LU factorization of `a` with partial pivoting, or an error when `a` (matrix `b` of
/// its batch) is singular (an exactly zero pivot, as LAPACK reports it).
fn lu_nonsingular(
    a: DMatrix<f64>,
    b: usize,
) -> Result<nalgebra::linalg::LU<f64, nalgebra::Dyn, nalgebra::Dyn>, String> {
    let lu = a.lu();
    if !lu.is_invertible() {
        let u = lu.u();
        let i = (0..u.nrows()).find(|&i| u[(i, i)] == 0.0).unwrap_or(0);
        return Err(format!(
            "matrix {b} of the batch is singular (pivot {i} of its LU factorization is \
             exactly zero)"
        ));
    }
    Ok(lu)
}

/// `det A` (1 for a 0 x 0 matrix): the permutation's sign times the product of the LU
/// pivots (exact for small integer matrices, where `exp(ln|det|)` is not).
fn det_of(a: DMatrix<f64>) -> f64 {
    if a.nrows() == 0 {
        return 1.0;
    }
    a.lu().determinant()
}

/// `ln|det A|` and `sign(det A)` (0 and -inf for a singular matrix).
fn lu_slogdet(a: DMatrix<f64>) -> (f64, f64) {
    if a.nrows() == 0 {
        return (1.0, 0.0);
    }
    let lu = a.lu();
    let mut sign = lu.p().determinant::<f64>();
    let mut log = 0.0;
    for d in lu.u().diagonal().iter().copied() {
        if d == 0.0 {
            return (0.0, f64::NEG_INFINITY);
        }
        if d < 0.0 {
            sign = -sign;
        }
        log += d.abs().ln();
    }
    (sign, log)
}

/// The SVD of `a` (matrix `b` of its batch) with the singular vectors when `vectors`,
/// singular values largest first; an error for a matrix with non-finite entries or an
/// iteration that does not converge.
fn svd_of(
    a: DMatrix<f64>,
    vectors: bool,
    b: usize,
) -> Result<nalgebra::linalg::SVD<f64, nalgebra::Dyn, nalgebra::Dyn>, String> {
    let not_converged = || format!("did not converge on matrix {b} of the batch");
    if a.iter().any(|v| !v.is_finite()) {
        return Err(format!("{} (it has non-finite entries)", not_converged()));
    }
    let iterations = 100 * (a.nrows() + a.ncols()).max(10);
    a.try_svd(vectors, vectors, f64::EPSILON, iterations)
        .ok_or_else(not_converged)
}

/// The eigenvalues (ascending) and eigenvectors (columns, in the same order) of the
/// symmetric matrix `a` (matrix `b` of its batch), reading its lower triangle; an error for
/// non-finite entries or an iteration that does not converge.
fn eigh_of(a: DMatrix<f64>, b: usize) -> Result<(Vec<f64>, DMatrix<f64>), String> {
    let not_converged = || format!("did not converge on matrix {b} of the batch");
    let n = a.nrows();
    if (0..n).any(|i| (0..=i).any(|j| !a[(i, j)].is_finite())) {
        return Err(format!("{} (it has non-finite entries)", not_converged()));
    }
    let evd = a
        .try_symmetric_eigen(f64::EPSILON, 100 * n.max(10))
        .ok_or_else(not_converged)?;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| evd.eigenvalues[i].total_cmp(&evd.eigenvalues[j]));
    let values = order.iter().map(|&i| evd.eigenvalues[i]).collect();
    let vectors = DMatrix::from_fn(n, n, |i, j| evd.eigenvectors[(i, order[j])]);
    Ok((values, vectors))
}

/// The lower-triangular Cholesky factor of `a` (reading its lower triangle), or the index
/// of the first pivot that is not positive (the leading minor of that order plus one is not
/// positive-definite).
fn cholesky_of(a: &DMatrix<f64>) -> Result<DMatrix<f64>, usize> {
    let n = a.nrows();
    let mut l = DMatrix::<f64>::zeros(n, n);
    for j in 0..n {
        let d = a[(j, j)] - (0..j).map(|k| l[(j, k)] * l[(j, k)]).sum::<f64>();
        // NaN is not positive either
        if d.is_nan() || d <= 0.0 {
            return Err(j);
        }
        let pivot = d.sqrt();
        l[(j, j)] = pivot;
        for i in j + 1..n {
            let s = a[(i, j)] - (0..j).map(|k| l[(i, k)] * l[(j, k)]).sum::<f64>();
            l[(i, j)] = s / pivot;
        }
    }
    Ok(l)
}

/// Solves `A X = B` in place for triangular `A` (its `upper` or lower triangle; with `unit`
/// its diagonal taken as ones) by substitution. A zero on the diagonal gives infinities, as
/// LAPACK's `trtrs` without its check.
fn substitute(a: &DMatrix<f64>, x: &mut DMatrix<f64>, upper: bool, unit: bool) {
    let n = a.nrows();
    for c in 0..x.ncols() {
        for step in 0..n {
            // upper: from the last row up; lower: from the first row down
            let i = if upper { n - 1 - step } else { step };
            let known = if upper { i + 1..n } else { 0..i };
            let mut v = x[(i, c)];
            for k in known {
                v -= a[(i, k)] * x[(k, c)];
            }
            x[(i, c)] = if unit { v } else { v / a[(i, i)] };
        }
    }
}

impl Array {
    /// The solution `X` of `A X = B` for square `A` (`self`, `[.., n, n]`) and `B`
    /// (`[.., n, k]`, the same batch shape), by LU with partial pivoting.
    ///
    /// Panics when a matrix of `A` is singular (an exactly zero pivot).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![2.0f64, 1.0, 1.0, 3.0], &[2, 2]);
    /// let b = Array::from_vec(vec![4.0f64, 7.0], &[2, 1]);
    /// assert_eq!(a.solve(&b).to_vec::<f64>(), vec![1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn solve(&self, b: &Array) -> Array {
        let (batch, n, k) = system_dims(self, b, "solve");
        let rhs = float_values(b, "solve");
        let mut out = Vec::with_capacity(rhs.len());
        for_each_matrix(self, "solve", n, n, |i, m| {
            let lu = lu_nonsingular(m, i)?;
            let chunk = &rhs[i * n * k..(i + 1) * n * k];
            let x = lu
                .solve(&DMatrix::from_row_slice(n, k, chunk))
                .expect("an invertible LU solves");
            push_rows(&mut out, &x);
            Ok(())
        });
        output(out, &with_tail(&batch, &[n, k]), self.dtype())
    }

    /// The inverse of each square matrix of `[.., n, n]`, by LU with partial pivoting.
    ///
    /// Panics when a matrix is singular (an exactly zero pivot).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![2.0f64, 0.0, 0.0, 4.0], &[2, 2]);
    /// assert_eq!(a.inverse().to_vec::<f64>(), vec![0.5, 0.0, 0.0, 0.25]);
    /// ```
    #[track_caller]
    pub fn inverse(&self) -> Array {
        let (batch, n) = square_dims(self, "inverse");
        let mut out = Vec::with_capacity(self.numel());
        for_each_matrix(self, "inverse", n, n, |b, m| {
            let lu = lu_nonsingular(m, b)?;
            push_rows(
                &mut out,
                &lu.try_inverse().expect("an invertible LU inverts"),
            );
            Ok(())
        });
        output(out, &with_tail(&batch, &[n, n]), self.dtype())
    }

    /// The determinant of each square matrix of `[.., n, n]` (shape `[..]`), from its LU
    /// factorization; 0 for a singular matrix.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert!((a.det().to_vec::<f64>()[0] + 2.0).abs() < 1e-12);
    /// ```
    #[track_caller]
    pub fn det(&self) -> Array {
        let (batch, n) = square_dims(self, "det");
        let mut out = Vec::new();
        for_each_matrix(self, "det", n, n, |_, m| {
            out.push(det_of(m));
            Ok(())
        });
        output(out, &batch, self.dtype())
    }

    /// The cofactor matrix `det(A) A⁻ᵀ` of each square matrix of `[.., n, n]` (the
    /// transpose of the adjugate; the gradient of the determinant). From the LU
    /// factorization where `A` is invertible; where it is singular, from the SVD
    /// `A = U S Vᵀ` as `det(U) det(V) U diag(Π_{j≠i} s_j) Vᵀ`, which stays exact there.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2]);
    /// let c: Vec<f64> = a.cofactor().to_vec::<f64>().iter().map(|v| v.round()).collect();
    /// assert_eq!(c, vec![4.0, -2.0, -2.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn cofactor(&self) -> Array {
        let (batch, n) = square_dims(self, "cofactor");
        let mut out = Vec::with_capacity(self.numel());
        for_each_matrix(self, "cofactor", n, n, |b, m| {
            let lu = m.clone().lu();
            if lu.is_invertible() {
                // one factorization for both the determinant and the inverse
                let det = lu.determinant();
                let inv = lu.try_inverse().expect("an invertible LU inverts");
                push_rows(&mut out, &(inv.transpose() * det));
                return Ok(());
            }
            let svd = svd_of(m, true, b).map_err(|e| format!("the SVD {e}"))?;
            let s = &svd.singular_values;
            // Π_{j≠i} s_j without dividing: prefix and suffix products
            let mut others = vec![1.0; n];
            let mut prefix = 1.0;
            for i in 0..n {
                others[i] = prefix;
                prefix *= s[i];
            }
            let mut suffix = 1.0;
            for i in (0..n).rev() {
                others[i] *= suffix;
                suffix *= s[i];
            }
            let (u, vt) = (svd.u.expect("computed"), svd.v_t.expect("computed"));
            let scale = det_of(u.clone()) * det_of(vt.clone());
            for i in 0..n {
                for j in 0..n {
                    let c: f64 = (0..n).map(|r| u[(i, r)] * others[r] * vt[(r, j)]).sum();
                    out.push(scale * c);
                }
            }
            Ok(())
        });
        output(out, &with_tail(&batch, &[n, n]), self.dtype())
    }

    /// The sign (-1, 0 or 1) and the natural log of the absolute value of the determinant of
    /// each square matrix of `[.., n, n]` (both of shape `[..]`); `(0, -inf)` for a singular
    /// matrix. The log stays finite where the determinant itself would overflow or
    /// underflow.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]);
    /// let (sign, log) = a.slogdet();
    /// assert_eq!(sign.to_vec::<f64>(), vec![-1.0]);
    /// assert!((log.to_vec::<f64>()[0] - 6f64.ln()).abs() < 1e-12);
    /// ```
    #[track_caller]
    pub fn slogdet(&self) -> (Array, Array) {
        let (batch, n) = square_dims(self, "slogdet");
        let (mut signs, mut logs) = (Vec::new(), Vec::new());
        for_each_matrix(self, "slogdet", n, n, |_, m| {
            let (s, l) = lu_slogdet(m);
            signs.push(s);
            logs.push(l);
            Ok(())
        });
        (
            output(signs, &batch, self.dtype()),
            output(logs, &batch, self.dtype()),
        )
    }

    /// The lower-triangular Cholesky factor `L` of each symmetric positive-definite matrix
    /// of `[.., n, n]` (`A = L Lᵀ`), reading only the lower triangle of `A`.
    ///
    /// Panics when a matrix is not positive-definite, naming the failing leading minor.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![4.0f64, 2.0, 2.0, 5.0], &[2, 2]);
    /// assert_eq!(a.cholesky().to_vec::<f64>(), vec![2.0, 0.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn cholesky(&self) -> Array {
        let (batch, n) = square_dims(self, "cholesky");
        let mut out = Vec::with_capacity(self.numel());
        for_each_matrix(self, "cholesky", n, n, |b, m| match cholesky_of(&m) {
            Ok(l) => {
                push_rows(&mut out, &l);
                Ok(())
            }
            Err(index) => Err(format!(
                "matrix {b} of the batch is not positive-definite (its leading minor of order \
                 {} is not)",
                index + 1
            )),
        });
        output(out, &with_tail(&batch, &[n, n]), self.dtype())
    }

    /// The solution `X` of `A X = B` for triangular `A` (`self`, `[.., n, n]`; only the
    /// `upper` or lower triangle is read, and with `unit` its diagonal is taken as ones) and
    /// `B` (`[.., n, k]`, the same batch shape), by substitution. A zero on the diagonal
    /// gives infinities, as LAPACK's `trtrs` without its check.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let l = Array::from_vec(vec![2.0f64, 0.0, 1.0, 4.0], &[2, 2]);
    /// let b = Array::from_vec(vec![2.0f64, 9.0], &[2, 1]);
    /// assert_eq!(l.solve_triangular(&b, false, false).to_vec::<f64>(), vec![1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn solve_triangular(&self, b: &Array, upper: bool, unit: bool) -> Array {
        let (batch, n, k) = system_dims(self, b, "solve_triangular");
        let rhs = float_values(b, "solve_triangular");
        let mut out = Vec::with_capacity(rhs.len());
        for_each_matrix(self, "solve_triangular", n, n, |i, m| {
            let chunk = &rhs[i * n * k..(i + 1) * n * k];
            let mut x = DMatrix::from_row_slice(n, k, chunk);
            substitute(&m, &mut x, upper, unit);
            push_rows(&mut out, &x);
            Ok(())
        });
        output(out, &with_tail(&batch, &[n, k]), self.dtype())
    }

    /// The reduced QR decomposition of each matrix of `[.., m, n]`: `Q` (`[.., m, k]`,
    /// orthonormal columns) and `R` (`[.., k, n]`, upper triangular), `k = min(m, n)`, by
    /// Householder reflections. `R`'s diagonal is non-negative, which makes the QR of a
    /// full-rank matrix unique; LAPACK's (so NumPy's and PyTorch's) may differ from it by
    /// the sign of a column of `Q` and of the same row of `R`.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![3.0f64, 1.0, 4.0, 2.0], &[2, 2]);
    /// let (q, r) = a.qr();
    /// let back = q.matmul(&r).to_vec::<f64>();
    /// assert!(back.iter().zip([3.0, 1.0, 4.0, 2.0]).all(|(x, y)| (x - y).abs() < 1e-12));
    /// ```
    #[track_caller]
    pub fn qr(&self) -> (Array, Array) {
        let (batch, m, n) = matrix_dims(self, "qr");
        let k = m.min(n);
        let (mut qs, mut rs) = (Vec::new(), Vec::new());
        for_each_matrix(self, "qr", m, n, |_, mat| {
            let qr = mat.qr();
            push_rows(&mut qs, &qr.q());
            push_rows(&mut rs, &qr.r());
            Ok(())
        });
        (
            output(qs, &with_tail(&batch, &[m, k]), self.dtype()),
            output(rs, &with_tail(&batch, &[k, n]), self.dtype()),
        )
    }

    /// The reduced singular value decomposition `A = U diag(S) Vh` of each matrix of
    /// `[.., m, n]`: `U` `[.., m, k]`, `S` `[.., k]` (non-negative, largest first), `Vh`
    /// `[.., k, n]`, `k = min(m, n)`.
    ///
    /// Panics if the iteration does not converge.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]);
    /// let (_, s, _) = a.svd();
    /// assert_eq!(s.to_vec::<f64>(), vec![3.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn svd(&self) -> (Array, Array, Array) {
        let (batch, m, n) = matrix_dims(self, "svd");
        let k = m.min(n);
        let [mut us, mut ss, mut vhs] = [Vec::new(), Vec::new(), Vec::new()];
        for_each_matrix(self, "svd", m, n, |b, mat| {
            let svd = svd_of(mat, true, b)?;
            push_rows(&mut us, svd.u.as_ref().expect("computed"));
            ss.extend(svd.singular_values.iter());
            push_rows(&mut vhs, svd.v_t.as_ref().expect("computed"));
            Ok(())
        });
        (
            output(us, &with_tail(&batch, &[m, k]), self.dtype()),
            output(ss, &with_tail(&batch, &[k]), self.dtype()),
            output(vhs, &with_tail(&batch, &[k, n]), self.dtype()),
        )
    }

    /// The singular values of each matrix of `[.., m, n]` (`[.., min(m, n)]`, largest
    /// first), without the singular vectors.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]);
    /// assert_eq!(a.svdvals().to_vec::<f64>(), vec![3.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn svdvals(&self) -> Array {
        let (batch, m, n) = matrix_dims(self, "svdvals");
        let mut out = Vec::new();
        for_each_matrix(self, "svdvals", m, n, |b, mat| {
            out.extend(svd_of(mat, false, b)?.singular_values.iter());
            Ok(())
        });
        output(out, &with_tail(&batch, &[m.min(n)]), self.dtype())
    }

    /// The eigenvalues `L` (`[.., n]`, ascending) and orthonormal eigenvectors `V` (`[.., n,
    /// n]`, one per column) of each symmetric matrix of `[.., n, n]`, reading only its lower
    /// triangle (`A = V diag(L) Vᵀ`).
    ///
    /// Panics if the iteration does not converge.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![2.0f64, 1.0, 1.0, 2.0], &[2, 2]);
    /// let (l, _) = a.eigh();
    /// let l = l.to_vec::<f64>();
    /// assert!((l[0] - 1.0).abs() < 1e-12 && (l[1] - 3.0).abs() < 1e-12);
    /// ```
    #[track_caller]
    pub fn eigh(&self) -> (Array, Array) {
        let (batch, n) = square_dims(self, "eigh");
        let (mut ls, mut vs) = (Vec::new(), Vec::new());
        for_each_matrix(self, "eigh", n, n, |b, mat| {
            let (values, vectors) = eigh_of(mat, b)?;
            ls.extend(values);
            push_rows(&mut vs, &vectors);
            Ok(())
        });
        (
            output(ls, &with_tail(&batch, &[n]), self.dtype()),
            output(vs, &with_tail(&batch, &[n, n]), self.dtype()),
        )
    }

    /// The eigenvalues (`[.., n]`, ascending) of each symmetric matrix of `[.., n, n]`,
    /// reading only its lower triangle, without the eigenvectors.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![2.0f64, 0.0, 0.0, -1.0], &[2, 2]);
    /// assert_eq!(a.eigvalsh().to_vec::<f64>(), vec![-1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn eigvalsh(&self) -> Array {
        let (batch, n) = square_dims(self, "eigvalsh");
        let mut out = Vec::new();
        for_each_matrix(self, "eigvalsh", n, n, |b, mat| {
            out.extend(eigh_of(mat, b)?.0);
            Ok(())
        });
        output(out, &with_tail(&batch, &[n]), self.dtype())
    }

    /// The Moore-Penrose pseudo-inverse of each matrix of `[.., m, n]` (`[.., n, m]`), from
    /// its SVD: singular values at or below `max(atol, rtol · σ_max)` count as zero.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![2.0f64, 0.0, 0.0, 0.0], &[2, 2]);
    /// assert_eq!(a.pinv(0.0, 1e-12).to_vec::<f64>(), vec![0.5, 0.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn pinv(&self, atol: f64, rtol: f64) -> Array {
        let (batch, m, n) = matrix_dims(self, "pinv");
        let mut out = Vec::with_capacity(self.numel());
        for_each_matrix(self, "pinv", m, n, |b, mat| {
            let svd = svd_of(mat, true, b).map_err(|e| format!("the SVD {e}"))?;
            let s = &svd.singular_values;
            let largest = s.iter().copied().fold(0.0, f64::max);
            let cut = atol.max(rtol * largest);
            let (u, vt) = (
                svd.u.as_ref().expect("computed"),
                svd.v_t.as_ref().expect("computed"),
            );
            let mut p = DMatrix::<f64>::zeros(n, m);
            for (r, &sr) in s.iter().enumerate() {
                if sr > cut {
                    let inv = 1.0 / sr;
                    for i in 0..n {
                        let vi = vt[(r, i)] * inv;
                        for j in 0..m {
                            p[(i, j)] += vi * u[(j, r)];
                        }
                    }
                }
            }
            push_rows(&mut out, &p);
            Ok(())
        });
        output(out, &with_tail(&batch, &[n, m]), self.dtype())
    }
}
