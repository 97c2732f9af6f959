//! Matrix decompositions and solvers (the array layer runs them in f64 on `nalgebra`), with gradient
//! rules written as `Tensor` code so that every order of derivative works.
//!
//! A decomposition with several results (QR, SVD, the symmetric eigendecomposition,
//! slogdet) is one primitive whose output packs the results, flattened, into one vector;
//! the methods users call unpack it with views. Its gradient rule unpacks the output
//! gradient the same way, so a result that was not used contributes zeros. The formulas
//! follow PyTorch's `FunctionsManual.cpp` (for SVD and eigh: where two singular values or
//! eigenvalues coincide, the gradient of the vectors is infinite unless the output gradient
//! that needs the division is exactly zero, as there).

use smallvec::smallvec;

use super::scalar_like;
use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::{Array, Tensor};

/// Matrix decompositions and solvers: each variant's name, forward and gradient rule are
/// below, one exhaustive match each.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum LinalgOp {
    /// `X` with `A X = B` (inputs: A `[.., n, n]`, B `[.., n, k]`, one batch shape).
    Solve,
    /// Matrix inverse.
    Inverse,
    /// Determinant.
    Det,
    /// `det(A) A⁻ᵀ`, the cofactor matrix (the determinant's gradient; defined for singular
    /// matrices too).
    Cofactor,
    /// Sign and log-absolute-value of the determinant, packed.
    SlogDet,
    /// Lower Cholesky factor.
    Cholesky,
    /// `X` with `A X = B` for triangular A (inputs: A, B).
    SolveTriangular {
        /// Read the upper triangle (else the lower).
        upper: bool,
        /// Take the diagonal as ones.
        unit: bool,
    },
    /// Reduced QR of a matrix with at least as many rows as columns: Q and R packed.
    Qr,
    /// Reduced SVD: U, S and Vh packed.
    Svd,
    /// Singular values.
    Svdvals,
    /// Symmetric eigendecomposition: eigenvalues and eigenvectors packed.
    Eigh,
    /// Eigenvalues of a symmetric matrix.
    Eigvalsh,
    /// Moore-Penrose pseudo-inverse, singular values at or below `max(atol, rtol σ_max)`
    /// dropped.
    Pinv {
        /// Absolute tolerance.
        atol: f64,
        /// Tolerance relative to the largest singular value.
        rtol: f64,
    },
}

/// Numbers compared bit for bit (see [`Op`]'s equality).
impl PartialEq for LinalgOp {
    fn eq(&self, other: &LinalgOp) -> bool {
        use LinalgOp::*;
        match (self, other) {
            (SolveTriangular { upper: a, unit: b }, SolveTriangular { upper: c, unit: d }) => {
                a == c && b == d
            }
            (Pinv { atol: a, rtol: b }, Pinv { atol: c, rtol: d }) => {
                a.to_bits() == c.to_bits() && b.to_bits() == d.to_bits()
            }
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for LinalgOp {}

impl std::hash::Hash for LinalgOp {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            LinalgOp::SolveTriangular { upper, unit } => (upper, unit).hash(state),
            LinalgOp::Pinv { atol, rtol } => (atol.to_bits(), rtol.to_bits()).hash(state),
            _ => {}
        }
    }
}

impl From<LinalgOp> for Op {
    fn from(op: LinalgOp) -> Op {
        Op::Linalg(op)
    }
}

/// Flattens `parts` into one vector, in order.
fn pack(parts: &[Array]) -> Array {
    let flat: Vec<Array> = parts.iter().map(|p| p.reshape(&[p.numel()])).collect();
    Array::cat(&flat, 0)
}

/// The parts of a packed vector, given their shapes (views).
fn unpack(packed: &Tensor, shapes: &[Vec<usize>]) -> Vec<Tensor> {
    let mut start = 0;
    shapes
        .iter()
        .map(|s| {
            let n: usize = s.iter().product();
            let part = packed.narrow(0, start, n).reshape(s);
            start += n;
            part
        })
        .collect()
}

/// The results of a packed decomposition of `a`. The forward runs first, so a bad shape
/// panics there, with the caller's line, before `shapes` reads the shape.
#[track_caller]
fn decompose(a: &Tensor, op: LinalgOp, shapes: fn(&[usize]) -> Vec<Vec<usize>>) -> Vec<Tensor> {
    let packed = apply(op, &[a]);
    unpack(&packed, &shapes(a.shape()))
}

/// `shape[..-2] ++ tail`.
fn batch_with(shape: &[usize], tail: &[usize]) -> Vec<usize> {
    let d = shape.len();
    shape[..d - 2].iter().chain(tail).copied().collect()
}

/// The shapes of a packed QR of `[.., m, n]` (`m >= n`): Q, R.
fn qr_shapes(a: &[usize]) -> Vec<Vec<usize>> {
    let (m, n) = (a[a.len() - 2], a[a.len() - 1]);
    vec![batch_with(a, &[m, n]), batch_with(a, &[n, n])]
}

/// The shapes of a packed SVD of `[.., m, n]`: U, S, Vh.
fn svd_shapes(a: &[usize]) -> Vec<Vec<usize>> {
    let (m, n) = (a[a.len() - 2], a[a.len() - 1]);
    let k = m.min(n);
    vec![
        batch_with(a, &[m, k]),
        batch_with(a, &[k]),
        batch_with(a, &[k, n]),
    ]
}

/// The shapes of a packed eigendecomposition of `[.., n, n]`: L, V.
fn eigh_shapes(a: &[usize]) -> Vec<Vec<usize>> {
    let n = a[a.len() - 1];
    vec![batch_with(a, &[n]), batch_with(a, &[n, n])]
}

/// The shapes of a packed slogdet of `[.., n, n]`: sign, log|det|.
fn slogdet_shapes(a: &[usize]) -> Vec<Vec<usize>> {
    let batch = a[..a.len() - 2].to_vec();
    vec![batch.clone(), batch]
}

/// `A⁻ᵀ` (the gradient of `ln|det A|`) from `A` and its packed `slogdet` `out`, as
/// `cofactor(B) / det(B) / c` (the cofactor matrix is `det(B) B⁻ᵀ`) for `B = A / c` with `c = |det A|^(1/n)`: `|det B| = 1`, so
/// neither overflows where `det A` would. At a singular `A` (`c` taken as 1) it is
/// `cofactor(A) / 0`, the infinite or NaN gradient PyTorch gives, where an inverse would
/// refuse the matrix in the middle of a backward pass. (`c` is a constant: the result is
/// `A⁻ᵀ` whatever it is, at every order.)
fn inverse_transposed_or_infinite(a: &Tensor, out: &Tensor) -> Tensor {
    let n = a.shape()[a.ndim() - 1];
    let log = unpack(out, &slogdet_shapes(a.shape()))[1].detach();
    let c = (&log * (1.0 / n.max(1) as f64)).exp();
    let c = Tensor::where_cond(&log.isfinite(), &c, &scalar_like(1.0, &c))
        .unsqueeze(-1)
        .unsqueeze(-1);
    let b = a / &c;
    &(&b.cofactor() / &b.det().unsqueeze(-1).unsqueeze(-1)) / &c
}

/// `num / den`, but 0 where `num` is exactly 0 (a result nobody used sends exact zeros,
/// which must not turn into NaN where `den` is 0).
fn div_where_nonzero(num: &Tensor, den: &Tensor) -> Tensor {
    let zero = Tensor::new(Array::zeros(&[], num.dtype()));
    Tensor::where_cond(&num.eq_scalar(0.0), &zero, &(num / den))
}

/// The identity of size `n` in `like`'s dtype, on its device.
fn eye_like(n: usize, like: &Tensor) -> Tensor {
    super::on_device_of(Array::eye(n, like.dtype()), like)
}

/// `[.., n, n]` with `E[i, j] = v[j] - v[i]` off the diagonal and ones on it.
fn gaps(v: &Tensor) -> Tensor {
    let n = v.shape()[v.ndim() - 1];
    &(&v.unsqueeze(-2) - &v.unsqueeze(-1)) + &eye_like(n, v)
}

impl LinalgOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            LinalgOp::Solve => "solve",
            LinalgOp::Inverse => "inverse",
            LinalgOp::Det => "det",
            LinalgOp::Cofactor => "cofactor",
            LinalgOp::SlogDet => "slogdet",
            LinalgOp::Cholesky => "cholesky",
            LinalgOp::SolveTriangular { .. } => "solve_triangular",
            LinalgOp::Qr => "qr",
            LinalgOp::Svd => "svd",
            LinalgOp::Svdvals => "svdvals",
            LinalgOp::Eigh => "eigh",
            LinalgOp::Eigvalsh => "eigvalsh",
            LinalgOp::Pinv { .. } => "pinv",
        }
    }

    #[track_caller]
    pub(crate) fn forward(&self, x: &[&Array]) -> Array {
        match self {
            LinalgOp::Solve => x[0].solve(x[1]),
            LinalgOp::Inverse => x[0].inverse(),
            LinalgOp::Det => x[0].det(),
            LinalgOp::Cofactor => x[0].cofactor(),
            LinalgOp::SlogDet => {
                let (sign, log) = x[0].slogdet();
                pack(&[sign, log])
            }
            LinalgOp::Cholesky => x[0].cholesky(),
            LinalgOp::SolveTriangular { upper, unit } => x[0].solve_triangular(x[1], *upper, *unit),
            LinalgOp::Qr => {
                let (q, r) = x[0].qr();
                pack(&[q, r])
            }
            LinalgOp::Svd => {
                let (u, s, vh) = x[0].svd();
                pack(&[u, s, vh])
            }
            LinalgOp::Svdvals => x[0].svdvals(),
            LinalgOp::Eigh => {
                let (l, v) = x[0].eigh();
                pack(&[l, v])
            }
            LinalgOp::Eigvalsh => x[0].eigvalsh(),
            LinalgOp::Pinv { atol, rtol } => x[0].pinv(*atol, *rtol),
        }
    }

    pub(crate) fn vjp(&self, x: &[Tensor], out: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
        let a = &x[0];
        match self {
            LinalgOp::Solve => {
                // X = A⁻¹ B: dB = A⁻ᵀ G, dA = -dB Xᵀ
                let gb = a.mt().solve(g);
                let ga = wanted(needs, 0, || -gb.matmul(&out.mt()));
                smallvec![ga, Some(gb)]
            }
            LinalgOp::Inverse => {
                let t = out.mt();
                smallvec![Some(-t.matmul(g).matmul(&t))]
            }
            LinalgOp::Det => {
                smallvec![Some(&g.unsqueeze(-1).unsqueeze(-1) * &a.cofactor())]
            }
            LinalgOp::Cofactor => {
                // C = det(A) A⁻ᵀ; with A⁻ᵀ = C / det: dA = (<G, C> C - C Gᵀ C) / det
                let det = a.det().unsqueeze(-1).unsqueeze(-1);
                let inner = (g * out).sum_dim([-2, -1], true);
                let ga = &(&(&inner * out) - &out.matmul(&g.mt()).matmul(out)) / &det;
                smallvec![Some(ga)]
            }
            LinalgOp::SlogDet => {
                let parts = unpack(g, &slogdet_shapes(a.shape()));
                let scale = parts[1].unsqueeze(-1).unsqueeze(-1);
                smallvec![Some(&scale * &inverse_transposed_or_infinite(a, out))]
            }
            LinalgOp::Cholesky => {
                // Murray (2016): Φ = tril(Lᵀ G) symmetrised, dA = L⁻ᵀ Φ L⁻¹
                let l = out;
                let phi = l.mt().matmul(g).tril(0);
                let phi = (&phi + &phi.tril(-1).mt()) * 0.5;
                let left = l.mt().solve_triangular(&phi, crate::Triangular::Upper);
                let ga = l
                    .mt()
                    .solve_triangular(&left.mt(), crate::Triangular::Upper)
                    .mt();
                smallvec![Some(ga)]
            }
            LinalgOp::SolveTriangular { upper, unit } => {
                // dB = A⁻ᵀ G (the other triangle), dA = -dB Xᵀ on A's triangle
                let transposed = crate::Triangular::from_flags(!upper, *unit);
                let gb = a.mt().solve_triangular(g, transposed);
                let ga = wanted(needs, 0, || {
                    let full = -gb.matmul(&out.mt());
                    let skip = i64::from(*unit);
                    if *upper {
                        full.triu(skip)
                    } else {
                        full.tril(-skip)
                    }
                });
                smallvec![ga, Some(gb)]
            }
            LinalgOp::Qr => {
                let shapes = qr_shapes(a.shape());
                let parts = unpack(out, &shapes);
                let (q, r) = (&parts[0], &parts[1]);
                let grads = unpack(g, &shapes);
                let (gq, gr) = (&grads[0], &grads[1]);
                // M = gR Rᵀ - Qᵀ gQ; dA = (gQ + Q syminvadj(triu(M))) R⁻ᵀ
                let m = &gr.matmul(&r.mt()) - &q.mt().matmul(gq);
                let upper = m.triu(0);
                let sym = &upper + &upper.triu(1).mt();
                let b = &q.matmul(&sym) + gq;
                // X Rᵀ = B  <=>  R Xᵀ = Bᵀ
                let ga = r.solve_triangular(&b.mt(), crate::Triangular::Upper).mt();
                smallvec![Some(ga)]
            }
            LinalgOp::Svd => {
                let shapes = svd_shapes(a.shape());
                let parts = unpack(out, &shapes);
                let (u, s, vh) = (&parts[0], &parts[1], &parts[2]);
                let grads = unpack(g, &shapes);
                let (gu, gs, gvh) = (&grads[0], &grads[1], &grads[2]);
                let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
                let skew = |x: &Tensor| x - &x.mt();
                let uhgu = skew(&u.mt().matmul(gu));
                let vhgv = skew(&vh.matmul(&gvh.mt()));
                let e = gaps(&s.square());
                let num = &(&uhgu * &s.unsqueeze(-2)) + &(&s.unsqueeze(-1) * &vhgv);
                let core = &div_where_nonzero(&num, &e) + &gs.diag_embed(0);
                let ga = if m > n {
                    // [U core + (I - U Uᵀ) gU S⁻¹] Vh
                    let gus = gu / &s.unsqueeze(-2);
                    let inner = &(&u.matmul(&core) + &gus) - &u.matmul(&u.mt().matmul(&gus));
                    inner.matmul(vh)
                } else if m < n {
                    // U [core Vh + S⁻¹ gVh (I - V Vh)]
                    let sgv = gvh / &s.unsqueeze(-1);
                    let inner = &(&core.matmul(vh) + &sgv) - &sgv.matmul(&vh.mt()).matmul(vh);
                    u.matmul(&inner)
                } else {
                    u.matmul(&core).matmul(vh)
                };
                smallvec![Some(ga)]
            }
            LinalgOp::Svdvals => {
                let (u, _, vh) = a.svd();
                smallvec![Some((&u * &g.unsqueeze(-2)).matmul(&vh))]
            }
            LinalgOp::Eigh => {
                let shapes = eigh_shapes(a.shape());
                let parts = unpack(out, &shapes);
                let (l, v) = (&parts[0], &parts[1]);
                let grads = unpack(g, &shapes);
                let (gl, gv) = (&grads[0], &grads[1]);
                // dA = V (skew(Vᵀ gV)/2 / E + diag(gL)) Vᵀ
                let vhgv = v.mt().matmul(gv);
                let skew = (&vhgv - &vhgv.mt()) * 0.5;
                let core = &div_where_nonzero(&skew, &gaps(l)) + &gl.diag_embed(0);
                smallvec![Some(v.matmul(&core).matmul(&v.mt()))]
            }
            LinalgOp::Eigvalsh => {
                let (_, v) = a.eigh();
                smallvec![Some((&v * &g.unsqueeze(-2)).matmul(&v.mt()))]
            }
            LinalgOp::Pinv { .. } => {
                // Golub & Pereyra (1973), for a constant rank:
                // dA = -Pᵀ G Pᵀ + (I - A P) Gᵀ P Pᵀ + Pᵀ P Gᵀ (I - P A)
                let p = out;
                let (m, n) = (a.shape()[a.ndim() - 2], a.shape()[a.ndim() - 1]);
                let pt = p.mt();
                let first = -pt.matmul(g).matmul(&pt);
                let left = &eye_like(m, a) - &a.matmul(p);
                let right = &eye_like(n, a) - &p.matmul(a);
                let gt = g.mt();
                let second = left.matmul(&gt).matmul(p).matmul(&pt);
                let third = pt.matmul(p).matmul(&gt).matmul(&right);
                smallvec![Some(&(&first + &second) + &third)]
            }
        }
    }
}

/// Which triangle [`Tensor::solve_triangular`] reads, and whether its diagonal is taken as
/// ones (`Unit*`) rather than read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Triangular {
    /// The lower triangle, diagonal included.
    Lower,
    /// The upper triangle, diagonal included.
    Upper,
    /// The strict lower triangle, with ones on the diagonal.
    UnitLower,
    /// The strict upper triangle, with ones on the diagonal.
    UnitUpper,
}

impl Triangular {
    fn from_flags(upper: bool, unit: bool) -> Triangular {
        match (upper, unit) {
            (false, false) => Triangular::Lower,
            (true, false) => Triangular::Upper,
            (false, true) => Triangular::UnitLower,
            (true, true) => Triangular::UnitUpper,
        }
    }

    fn flags(self) -> (bool, bool) {
        match self {
            Triangular::Lower => (false, false),
            Triangular::Upper => (true, false),
            Triangular::UnitLower => (false, true),
            Triangular::UnitUpper => (true, true),
        }
    }
}

/// `a` and `b` (a matrix batch `[.., n, k]`, or a vector batch `[.., n]` when `b` is 1-d or
/// has `a`'s shape without its last dim) with their batch dims broadcast; true when `b` was a vector.
#[track_caller]
fn broadcast_system(a: &Tensor, b: &Tensor, op: &str) -> (Tensor, Tensor, bool) {
    if a.ndim() < 2 || b.ndim() == 0 {
        panic!(
            "ferrograd: {op}: expects A [.., n, n] and B [.., n, k] or [.., n], got shapes \
             {:?} and {:?} (at {})",
            a.shape(),
            b.shape(),
            ferrograd_array::Site(std::panic::Location::caller())
        );
    }
    // PyTorch's rule: a vector when 1-d, or when B is A's shape without its last dim
    let vector = b.ndim() == 1 || b.shape() == &a.shape()[..a.ndim() - 1];
    let b = if vector { b.unsqueeze(-1) } else { b.clone() };
    let (da, db) = (a.ndim(), b.ndim());
    let batch = crate::broadcast_shapes(&a.shape()[..da - 2], &b.shape()[..db - 2]);
    let Some(batch) = batch else {
        panic!(
            "ferrograd: {op}: the batch dims of A {:?} and B {:?} do not broadcast (at {})",
            a.shape(),
            b.shape(),
            ferrograd_array::Site(std::panic::Location::caller())
        );
    };
    let full = |t: &Tensor| {
        let d = t.ndim();
        let mut s = batch.to_vec();
        s.extend_from_slice(&t.shape()[d - 2..]);
        if s == t.shape() {
            t.clone()
        } else {
            t.expand(&s)
        }
    };
    (full(a), full(&b), vector)
}

impl Tensor {
    /// The transpose of the last two dims (PyTorch's `.mT`).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let m = Tensor::zeros(&[4, 2, 3], ferrograd::DType::F32);
    /// assert_eq!(m.mt().shape(), &[4, 3, 2]);
    /// ```
    #[track_caller]
    pub fn mt(&self) -> Tensor {
        self.transpose(-2, -1)
    }

    /// The solution `X` of `A X = B` (PyTorch's `torch.linalg.solve`), by LU with partial
    /// pivoting. `self` is `A`, square matrices `[.., n, n]`; `b` is `[.., n, k]`, or a
    /// vector: 1-d, or of `A`'s shape without its last dim (PyTorch's rule); batch dims
    /// broadcast.
    ///
    /// Panics when a matrix of `A` is singular (an exactly zero pivot).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 3.0], &[2, 2]);
    /// let b = Tensor::from_vec(vec![4.0f64, 7.0], &[2]);
    /// assert_eq!(a.solve(&b).to_vec::<f64>(), vec![1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn solve(&self, b: &Tensor) -> Tensor {
        let (a, b, vector) = broadcast_system(self, b, "solve");
        let x = apply(LinalgOp::Solve, &[&a, &b]);
        if vector {
            x.squeeze_dim(-1)
        } else {
            x
        }
    }

    /// The solution `X` of `A X = B` for triangular `A` (`self`), reading only the
    /// `triangle` (PyTorch's `torch.linalg.solve_triangular` with `left=True`; for `X A = B`
    /// solve `Aᵀ Xᵀ = Bᵀ`). `b` and the batch dims as in [`solve`](Tensor::solve).
    ///
    /// ```
    /// use ferrograd::{Tensor, Triangular};
    /// let l = Tensor::from_vec(vec![2.0f64, 0.0, 1.0, 4.0], &[2, 2]);
    /// let b = Tensor::from_vec(vec![2.0f64, 9.0], &[2]);
    /// assert_eq!(l.solve_triangular(&b, Triangular::Lower).to_vec::<f64>(), vec![1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn solve_triangular(&self, b: &Tensor, triangle: Triangular) -> Tensor {
        let (a, b, vector) = broadcast_system(self, b, "solve_triangular");
        let (upper, unit) = triangle.flags();
        a.data().solve_triangular(b.data(), upper, unit).numel(); // shape checks first
        let x = apply(LinalgOp::SolveTriangular { upper, unit }, &[&a, &b]);
        if vector {
            x.squeeze_dim(-1)
        } else {
            x
        }
    }

    /// The inverse of each square matrix of `[.., n, n]` (PyTorch's `torch.linalg.inv`).
    ///
    /// Panics when a matrix is singular (an exactly zero pivot).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![2.0f64, 0.0, 0.0, 4.0], &[2, 2]);
    /// assert_eq!(a.inverse().to_vec::<f64>(), vec![0.5, 0.0, 0.0, 0.25]);
    /// ```
    #[track_caller]
    pub fn inverse(&self) -> Tensor {
        apply(LinalgOp::Inverse, &[self])
    }

    /// The determinant of each square matrix of `[.., n, n]` (shape `[..]`). Its gradient
    /// is the cofactor matrix, exact at singular matrices too; second derivatives need
    /// the inverse and are not finite at singular matrices.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(a.det().item::<f64>(), -2.0);
    /// ```
    #[track_caller]
    pub fn det(&self) -> Tensor {
        apply(LinalgOp::Det, &[self])
    }

    /// The cofactor matrix `det(A) A⁻ᵀ` of each square matrix of `[.., n, n]` (the
    /// gradient of [`det`](Tensor::det); the transpose of the adjugate), computed through
    /// the SVD where `A` is singular.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2]);
    /// assert_eq!(a.cofactor().to_vec::<f64>().iter().map(|v| v.round()).collect::<Vec<_>>(), vec![4.0, -2.0, -2.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn cofactor(&self) -> Tensor {
        apply(LinalgOp::Cofactor, &[self])
    }

    /// The sign (-1, 0, 1; no gradient) and the log of the absolute value of the
    /// determinant of each square matrix of `[.., n, n]` (PyTorch's `torch.linalg.slogdet`),
    /// finite where the determinant itself would overflow. The gradient of the log is
    /// `A⁻ᵀ`, also where the determinant overflows; a singular matrix (log -∞) gets an
    /// infinite or NaN gradient, as in PyTorch (the nan/inf debugger points at it).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]);
    /// let (sign, logabsdet) = a.slogdet();
    /// assert_eq!(sign.item::<f64>(), -1.0);
    /// assert!((logabsdet.item::<f64>() - 6f64.ln()).abs() < 1e-12);
    /// ```
    #[track_caller]
    pub fn slogdet(&self) -> (Tensor, Tensor) {
        let parts = decompose(self, LinalgOp::SlogDet, slogdet_shapes);
        (parts[0].detach(), parts[1].clone())
    }

    /// `ln det(A)`: NaN where the determinant is negative (with a zero gradient there, as
    /// PyTorch's), -∞ where it is zero (PyTorch's `torch.logdet`). Its gradient is `A⁻ᵀ`.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![2.0f64, 0.0, 0.0, 3.0], &[2, 2]);
    /// assert!((a.logdet().item::<f64>() - 6f64.ln()).abs() < 1e-15);
    /// ```
    #[track_caller]
    pub fn logdet(&self) -> Tensor {
        let (sign, log) = self.slogdet();
        // NaN where det < 0, with no gradient there (as PyTorch), not log|det|'s A⁻ᵀ
        let negative = sign.lt_scalar(0.0);
        Tensor::where_cond(&negative, &scalar_like(f64::NAN, &log), &log)
    }

    /// The lower-triangular Cholesky factor `L` (`A = L Lᵀ`) of each symmetric
    /// positive-definite matrix of `[.., n, n]`, reading only the lower triangle (PyTorch's
    /// `torch.linalg.cholesky`; the upper factor is `L.mt()`). The gradient is symmetric.
    ///
    /// Panics when a matrix is not positive-definite.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![4.0f64, 2.0, 2.0, 5.0], &[2, 2]);
    /// assert_eq!(a.cholesky().to_vec::<f64>(), vec![2.0, 0.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn cholesky(&self) -> Tensor {
        apply(LinalgOp::Cholesky, &[self])
    }

    /// The reduced QR decomposition of each matrix of `[.., m, n]`: `Q` (`[.., m, k]`,
    /// orthonormal columns) and upper-triangular `R` (`[.., k, n]`), `k = min(m, n)`, by
    /// Householder reflections (PyTorch's `torch.linalg.qr`, mode "reduced"). `R`'s diagonal
    /// is non-negative, which makes the QR of a full-rank matrix unique; LAPACK's (so
    /// PyTorch's and NumPy's) may differ from it by the sign of a column of `Q` and of the
    /// same row of `R`.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![3.0f64, 1.0, 4.0, 2.0, 0.0, 5.0], &[3, 2]);
    /// let (q, r) = a.qr();
    /// assert_eq!((q.shape(), r.shape()), (&[3, 2][..], &[2, 2][..]));
    /// assert!(q.matmul(&r).sub(&a).abs().max().item::<f64>() < 1e-12);
    /// ```
    #[track_caller]
    pub fn qr(&self) -> (Tensor, Tensor) {
        if self.ndim() < 2 {
            self.data().qr(); // panics, with the caller's line
        }
        let (m, n) = (self.shape()[self.ndim() - 2], self.shape()[self.ndim() - 1]);
        if m < n {
            // A = [X Y] with X square: X = Q R_x, so R = [R_x  Qᵀ Y]
            let (q, rx) = self.narrow(-1, 0, m).qr();
            let ry = q.mt().matmul(&self.narrow(-1, m, n - m));
            return (q, Tensor::cat(&[&rx, &ry], -1));
        }
        let parts = decompose(self, LinalgOp::Qr, qr_shapes);
        (parts[0].clone(), parts[1].clone())
    }

    /// The reduced singular value decomposition `A = U diag(S) Vh` of each matrix of
    /// `[.., m, n]`: `U` `[.., m, k]`, `S` `[.., k]` (largest first), `Vh` `[.., k, n]`,
    /// `k = min(m, n)` (PyTorch's `torch.linalg.svd` with `full_matrices=False`).
    ///
    /// The singular vectors are unique only up to sign, so only functions that do not
    /// depend on the signs (`U Vh`, `S`, squares of entries...) have well-defined gradients;
    /// where two singular values coincide the gradient of the vectors is infinite.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]);
    /// let (u, s, vh) = a.svd();
    /// assert_eq!(s.to_vec::<f64>(), vec![3.0, 2.0]);
    /// assert!((&(&u * &s.unsqueeze(0)).matmul(&vh) - &a).abs().max().item::<f64>() < 1e-12);
    /// ```
    #[track_caller]
    pub fn svd(&self) -> (Tensor, Tensor, Tensor) {
        let parts = decompose(self, LinalgOp::Svd, svd_shapes);
        (parts[0].clone(), parts[1].clone(), parts[2].clone())
    }

    /// The singular values of each matrix of `[.., m, n]` (`[.., min(m, n)]`, largest
    /// first; PyTorch's `torch.linalg.svdvals`). Their gradient stays finite where singular
    /// values coincide.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![0.0f64, 2.0, 3.0, 0.0], &[2, 2]);
    /// assert_eq!(a.svdvals().to_vec::<f64>(), vec![3.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn svdvals(&self) -> Tensor {
        apply(LinalgOp::Svdvals, &[self])
    }

    /// The eigenvalues `L` (`[.., n]`, ascending) and orthonormal eigenvectors `V`
    /// (`[.., n, n]`, one per column) of each symmetric matrix of `[.., n, n]`, reading only
    /// its lower triangle (PyTorch's `torch.linalg.eigh`). Eigenvectors are unique only up
    /// to sign; where two eigenvalues coincide their gradient is infinite.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![2.0f64, 1.0, 1.0, 2.0], &[2, 2]);
    /// let (l, v) = a.eigh();
    /// assert!((&l - &Tensor::from_vec(vec![1.0f64, 3.0], &[2])).abs().max().item::<f64>() < 1e-12);
    /// assert!((&(&v * &l.unsqueeze(0)).matmul(&v.mt()) - &a).abs().max().item::<f64>() < 1e-12);
    /// ```
    #[track_caller]
    pub fn eigh(&self) -> (Tensor, Tensor) {
        let parts = decompose(self, LinalgOp::Eigh, eigh_shapes);
        (parts[0].clone(), parts[1].clone())
    }

    /// The eigenvalues (`[.., n]`, ascending) of each symmetric matrix of `[.., n, n]`,
    /// reading its lower triangle (PyTorch's `torch.linalg.eigvalsh`).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![2.0f64, 0.0, 0.0, -1.0], &[2, 2]);
    /// assert_eq!(a.eigvalsh().to_vec::<f64>(), vec![-1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn eigvalsh(&self) -> Tensor {
        apply(LinalgOp::Eigvalsh, &[self])
    }

    /// The Moore-Penrose pseudo-inverse of each matrix of `[.., m, n]` (`[.., n, m]`), with
    /// PyTorch's default tolerance: singular values at or below `max(m, n) · ε · σ_max`
    /// count as zero (`ε` the dtype's machine epsilon).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 2.0, 4.0], &[2, 2]);
    /// let p = a.pinv();
    /// assert!((&a.matmul(&p).matmul(&a) - &a).abs().max().item::<f64>() < 1e-12);
    /// ```
    #[track_caller]
    pub fn pinv(&self) -> Tensor {
        if self.ndim() < 2 {
            self.data().pinv(0.0, 0.0); // panics, with the caller's line
        }
        let (m, n) = (self.shape()[self.ndim() - 2], self.shape()[self.ndim() - 1]);
        let eps = match self.dtype() {
            crate::DType::F32 => f64::from(f32::EPSILON),
            _ => f64::EPSILON,
        };
        self.pinv_with(0.0, m.max(n) as f64 * eps)
    }

    /// [`pinv`](Tensor::pinv) with explicit tolerances: singular values at or below
    /// `max(atol, rtol · σ_max)` count as zero (PyTorch's `torch.linalg.pinv(A, atol=,
    /// rtol=)`). The gradient assumes the rank stays the same nearby.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1e-9], &[2, 2]);
    /// // 1e-9 is below the cut of 1e-6 · 1: treated as zero
    /// assert_eq!(a.pinv_with(0.0, 1e-6).to_vec::<f64>(), vec![1.0, 0.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn pinv_with(&self, atol: f64, rtol: f64) -> Tensor {
        apply(LinalgOp::Pinv { atol, rtol }, &[self])
    }
}
