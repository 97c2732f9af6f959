//! Matrix decompositions and solvers on `faer`: LU (`solve`, `inverse`, `det`, `slogdet`),
//! Cholesky, triangular solves, QR, the singular value decomposition, the symmetric
//! eigendecomposition and the pseudo-inverse.
//!
//! Every function takes a batch of matrices `[.., m, n]` (any number of leading batch dims)
//! and runs `faer` on each matrix in turn, single-threaded: the matrices these ops meet in
//! models are small, and a batch of them is the caller's to spread over threads. Results are
//! row-major arrays of the input's dtype (f32 or f64; faer computes in that type).
//!
//! Numerical failures panic as shape errors do, naming the op, the matrix of the batch and
//! the caller's line: a singular matrix in `solve` and `inverse` (an exact zero pivot, as
//! LAPACK reports it), a matrix that is not positive-definite in `cholesky`, an iteration
//! that does not converge in `svd` and `eigh`.

use faer::linalg::solvers::{DenseSolveCore, Solve};
use faer::traits::RealField;
use faer::{Mat, MatRef, Par, Side};

use crate::dtype::{dispatch_float, Float};
use crate::error::fail;
use crate::layout::{fmt_shape, numel};
use crate::Array;

/// A float faer computes in (f32, f64).
trait Real: Float + RealField {}
impl<T: Float + RealField> Real for T {}

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

/// Calls `f(b, A_b)` for each matrix `A_b` (`m x n`) of the batch, in order, and fails
/// with the first error `f` returns (closures cannot carry the caller's line; this can).
#[track_caller]
fn for_each_matrix<T: Real>(
    a: &Array,
    op: &str,
    m: usize,
    n: usize,
    mut f: impl FnMut(usize, MatRef<'_, T>) -> Result<(), String>,
) {
    let values = a.values::<T>(op);
    let count = numel(&a.shape()[..a.ndim() - 2]);
    for b in 0..count {
        let chunk = &values[b * m * n..(b + 1) * m * n];
        if let Err(message) = f(b, MatRef::from_row_major_slice(chunk, m, n)) {
            fail(op, message)
        }
    }
}

/// Appends `mat` row by row.
fn push_rows<T: Real>(out: &mut Vec<T>, mat: MatRef<'_, T>) {
    for i in 0..mat.nrows() {
        for j in 0..mat.ncols() {
            out.push(mat[(i, j)]);
        }
    }
}

/// The sign of a permutation given as the image of each position.
fn permutation_sign(forward: &[usize]) -> f64 {
    let mut seen = vec![false; forward.len()];
    let mut sign = 1.0;
    for start in 0..forward.len() {
        let mut len = 0;
        let mut i = start;
        while !seen[i] {
            seen[i] = true;
            i = forward[i];
            len += 1;
        }
        if len > 0 && len % 2 == 0 {
            sign = -sign;
        }
    }
    sign
}

/// The LU factorization of `a` with partial pivoting, or an error when `a` (matrix `b` of
/// its batch) is singular.
fn lu_nonsingular<T: Real>(
    a: MatRef<'_, T>,
    b: usize,
) -> Result<faer::linalg::solvers::PartialPivLu<T>, String> {
    let lu = a.partial_piv_lu();
    let u = lu.U();
    if let Some(i) = (0..u.nrows()).find(|&i| u[(i, i)] == T::zero()) {
        return Err(format!(
            "matrix {b} of the batch is singular (pivot {i} of its LU factorization is \
             exactly zero)"
        ));
    }
    Ok(lu)
}

/// `det A` from its LU factorization: the permutation's sign times the product of the
/// pivots (exact for small integer matrices, where `exp(ln|det|)` is not).
fn lu_det<T: Real>(lu: &faer::linalg::solvers::PartialPivLu<T>) -> T {
    let u = lu.U();
    let mut d = T::from_f64(permutation_sign(lu.P().arrays().0));
    for i in 0..u.nrows() {
        d *= u[(i, i)];
    }
    d
}

/// `det A` (1 for a 0 x 0 matrix).
fn det_of<T: Real>(a: MatRef<'_, T>) -> T {
    if a.nrows() == 0 {
        return T::one();
    }
    lu_det(&a.partial_piv_lu())
}

/// `ln|det A|` and `sign(det A)` (0 and -inf for a singular matrix).
fn lu_slogdet<T: Real>(a: MatRef<'_, T>) -> (T, T) {
    if a.nrows() == 0 {
        return (T::one(), T::zero());
    }
    let lu = a.partial_piv_lu();
    let u = lu.U();
    let mut sign = T::from_f64(permutation_sign(lu.P().arrays().0));
    let mut log = T::zero();
    for i in 0..u.nrows() {
        let d = u[(i, i)];
        if d == T::zero() {
            return (T::zero(), T::neg_infinity());
        }
        if d < T::zero() {
            sign = -sign;
        }
        log += num_traits::Float::abs(d).ln();
    }
    (sign, log)
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, rhs: &Array, n: usize, k: usize) -> Vec<T> {
            let rhs_values = rhs.values::<T>("solve");
            let mut out = Vec::with_capacity(rhs_values.len());
            for_each_matrix::<T>(a, "solve", n, n, |b, m| {
                let lu = lu_nonsingular(m, b)?;
                let chunk = &rhs_values[b * n * k..(b + 1) * n * k];
                let x = lu.solve(MatRef::from_row_major_slice(chunk, n, k));
                push_rows(&mut out, x.as_ref());
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[n, k]);
        dispatch_float!(self.dtype(), "solve", T => Array::from_vec(kernel::<T>(self, b, n, k), &shape))
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(a.numel());
            for_each_matrix::<T>(a, "inverse", n, n, |b, m| {
                let lu = lu_nonsingular(m, b)?;
                push_rows(&mut out, lu.inverse().as_ref());
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[n, n]);
        dispatch_float!(self.dtype(), "inverse", T => Array::from_vec(kernel::<T>(self, n), &shape))
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> Vec<T> {
            let mut out = Vec::new();
            for_each_matrix::<T>(a, "det", n, n, |_, m| {
                out.push(det_of(m));
                Ok(())
            });
            out
        }
        dispatch_float!(self.dtype(), "det", T => Array::from_vec(kernel::<T>(self, n), &batch))
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(a.numel());
            for_each_matrix::<T>(a, "cofactor", n, n, |b, m| {
                let lu = m.partial_piv_lu();
                let u = lu.U();
                let singular = (0..n).any(|i| u[(i, i)] == T::zero());
                if !singular {
                    // one factorization for both the determinant and the inverse
                    let det = lu_det(&lu);
                    let inv = lu.inverse();
                    for i in 0..n {
                        for j in 0..n {
                            out.push(det * inv[(j, i)]);
                        }
                    }
                    return Ok(());
                }
                let svd = m
                    .svd()
                    .map_err(|_| format!("the SVD did not converge on matrix {b} of the batch"))?;
                let s: Vec<T> = svd.S().column_vector().iter().copied().collect();
                // Π_{j≠i} s_j without dividing: prefix and suffix products
                let mut others = vec![T::one(); n];
                let mut prefix = T::one();
                for i in 0..n {
                    others[i] = prefix;
                    prefix *= s[i];
                }
                let mut suffix = T::one();
                for i in (0..n).rev() {
                    others[i] *= suffix;
                    suffix *= s[i];
                }
                let scale = det_of(svd.U()) * det_of(svd.V());
                let (uu, vv) = (svd.U(), svd.V());
                for i in 0..n {
                    for j in 0..n {
                        let mut c = T::zero();
                        for r in 0..n {
                            c += uu[(i, r)] * others[r] * vv[(j, r)];
                        }
                        out.push(scale * c);
                    }
                }
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[n, n]);
        dispatch_float!(self.dtype(), "cofactor", T => Array::from_vec(kernel::<T>(self, n), &shape))
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> (Vec<T>, Vec<T>) {
            let (mut signs, mut logs) = (Vec::new(), Vec::new());
            for_each_matrix::<T>(a, "slogdet", n, n, |_, m| {
                let (s, l) = lu_slogdet(m);
                signs.push(s);
                logs.push(l);
                Ok(())
            });
            (signs, logs)
        }
        dispatch_float!(self.dtype(), "slogdet", T => {
            let (s, l) = kernel::<T>(self, n);
            (Array::from_vec(s, &batch), Array::from_vec(l, &batch))
        })
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(a.numel());
            for_each_matrix::<T>(a, "cholesky", n, n, |b, m| match m.llt(Side::Lower) {
                Ok(llt) => {
                    push_rows(&mut out, llt.L());
                    Ok(())
                }
                Err(faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }) => {
                    Err(format!(
                        "matrix {b} of the batch is not positive-definite (its leading minor of \
                     order {} is not)",
                        index + 1
                    ))
                }
            });
            out
        }
        let shape = with_tail(&batch, &[n, n]);
        dispatch_float!(self.dtype(), "cholesky", T => Array::from_vec(kernel::<T>(self, n), &shape))
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
        #[track_caller]
        fn kernel<T: Real>(
            a: &Array,
            rhs: &Array,
            n: usize,
            k: usize,
            upper: bool,
            unit: bool,
        ) -> Vec<T> {
            use faer::linalg::triangular_solve as ts;
            let rhs_values = rhs.values::<T>("solve_triangular");
            let mut out = Vec::with_capacity(rhs_values.len());
            for_each_matrix::<T>(a, "solve_triangular", n, n, |b, m| {
                let chunk = &rhs_values[b * n * k..(b + 1) * n * k];
                let mut x = MatRef::from_row_major_slice(chunk, n, k).to_owned();
                match (upper, unit) {
                    (false, false) => ts::solve_lower_triangular_in_place(m, x.as_mut(), Par::Seq),
                    (false, true) => {
                        ts::solve_unit_lower_triangular_in_place(m, x.as_mut(), Par::Seq)
                    }
                    (true, false) => ts::solve_upper_triangular_in_place(m, x.as_mut(), Par::Seq),
                    (true, true) => {
                        ts::solve_unit_upper_triangular_in_place(m, x.as_mut(), Par::Seq)
                    }
                }
                push_rows(&mut out, x.as_ref());
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[n, k]);
        dispatch_float!(self.dtype(), "solve_triangular", T => {
            Array::from_vec(kernel::<T>(self, b, n, k, upper, unit), &shape)
        })
    }

    /// The reduced QR decomposition of each matrix of `[.., m, n]`: `Q` (`[.., m, k]`,
    /// orthonormal columns) and `R` (`[.., k, n]`, upper triangular), `k = min(m, n)`, by
    /// Householder reflections (R's diagonal may be negative, as LAPACK's).
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, m: usize, n: usize) -> (Vec<T>, Vec<T>) {
            let (mut qs, mut rs) = (Vec::new(), Vec::new());
            for_each_matrix::<T>(a, "qr", m, n, |_, mat| {
                let qr = mat.qr();
                push_rows(&mut qs, qr.compute_thin_Q().as_ref());
                push_rows(&mut rs, qr.thin_R());
                Ok(())
            });
            (qs, rs)
        }
        dispatch_float!(self.dtype(), "qr", T => {
            let (q, r) = kernel::<T>(self, m, n);
            (
                Array::from_vec(q, &with_tail(&batch, &[m, k])),
                Array::from_vec(r, &with_tail(&batch, &[k, n])),
            )
        })
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, m: usize, n: usize) -> [Vec<T>; 3] {
            let [mut us, mut ss, mut vhs] = [Vec::new(), Vec::new(), Vec::new()];
            for_each_matrix::<T>(a, "svd", m, n, |b, mat| {
                let svd = mat
                    .thin_svd()
                    .map_err(|_| format!("did not converge on matrix {b} of the batch"))?;
                push_rows(&mut us, svd.U());
                ss.extend(svd.S().column_vector().iter().copied());
                push_rows(&mut vhs, svd.V().transpose());
                Ok(())
            });
            [us, ss, vhs]
        }
        dispatch_float!(self.dtype(), "svd", T => {
            let [u, s, vh] = kernel::<T>(self, m, n);
            (
                Array::from_vec(u, &with_tail(&batch, &[m, k])),
                Array::from_vec(s, &with_tail(&batch, &[k])),
                Array::from_vec(vh, &with_tail(&batch, &[k, n])),
            )
        })
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, m: usize, n: usize) -> Vec<T> {
            let mut out = Vec::new();
            for_each_matrix::<T>(a, "svdvals", m, n, |b, mat| {
                let s = mat
                    .singular_values()
                    .map_err(|_| format!("did not converge on matrix {b} of the batch"))?;
                out.extend(s);
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[m.min(n)]);
        dispatch_float!(self.dtype(), "svdvals", T => Array::from_vec(kernel::<T>(self, m, n), &shape))
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> (Vec<T>, Vec<T>) {
            let (mut ls, mut vs) = (Vec::new(), Vec::new());
            for_each_matrix::<T>(a, "eigh", n, n, |b, mat| {
                let evd = mat
                    .self_adjoint_eigen(Side::Lower)
                    .map_err(|_| format!("did not converge on matrix {b} of the batch"))?;
                ls.extend(evd.S().column_vector().iter().copied());
                push_rows(&mut vs, evd.U());
                Ok(())
            });
            (ls, vs)
        }
        dispatch_float!(self.dtype(), "eigh", T => {
            let (l, v) = kernel::<T>(self, n);
            (
                Array::from_vec(l, &with_tail(&batch, &[n])),
                Array::from_vec(v, &with_tail(&batch, &[n, n])),
            )
        })
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, n: usize) -> Vec<T> {
            let mut out = Vec::new();
            for_each_matrix::<T>(a, "eigvalsh", n, n, |b, mat| {
                let l = mat
                    .self_adjoint_eigenvalues(Side::Lower)
                    .map_err(|_| format!("did not converge on matrix {b} of the batch"))?;
                out.extend(l);
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[n]);
        dispatch_float!(self.dtype(), "eigvalsh", T => Array::from_vec(kernel::<T>(self, n), &shape))
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
        #[track_caller]
        fn kernel<T: Real>(a: &Array, m: usize, n: usize, atol: f64, rtol: f64) -> Vec<T> {
            let mut out = Vec::with_capacity(a.numel());
            for_each_matrix::<T>(a, "pinv", m, n, |b, mat| {
                let svd = mat
                    .thin_svd()
                    .map_err(|_| format!("the SVD did not converge on matrix {b} of the batch"))?;
                let s = svd.S().column_vector();
                let largest = s.iter().copied().fold(T::zero(), T::max);
                let cut = T::from_f64(atol).max(T::from_f64(rtol) * largest);
                let (u, v) = (svd.U(), svd.V());
                let mut p = Mat::<T>::zeros(n, m);
                for (r, &sr) in s.iter().enumerate() {
                    if sr > cut {
                        let inv = T::one() / sr;
                        for i in 0..n {
                            let vi = v[(i, r)] * inv;
                            for j in 0..m {
                                p[(i, j)] += vi * u[(j, r)];
                            }
                        }
                    }
                }
                push_rows(&mut out, p.as_ref());
                Ok(())
            });
            out
        }
        let shape = with_tail(&batch, &[n, m]);
        dispatch_float!(self.dtype(), "pinv", T => {
            Array::from_vec(kernel::<T>(self, m, n, atol, rtol), &shape)
        })
    }
}
