//! Matrix products. One primitive, `Matmul` on operands of at least 2 dims with broadcast
//! batch dims; vectors are lifted to matrices around it, as PyTorch's `matmul` does.

use smallvec::smallvec;

use super::unbroadcast;
use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::Tensor;

/// `dA = G Bᵀ`, `dB = Aᵀ G`, summed over broadcast batch dims.
///
/// Each gradient comes out in its operand's layout: for a transposed operand (`x.matmul(&w.t())`)
/// the product is formed transposed, `dB = (Gᵀ A)ᵀ`, so the gradient that reaches `w` through
/// the transpose is contiguous rather than a transposed view every later update would copy.
pub(crate) fn matmul_vjp(a: &Tensor, b: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
    let t = |x: &Tensor| x.transpose(-1, -2);
    smallvec![
        wanted(needs, 0, || {
            let da = if a.data().is_transposed_block() {
                t(&b.matmul(&t(g)))
            } else {
                g.matmul(&t(b))
            };
            unbroadcast(&da, a.shape())
        }),
        wanted(needs, 1, || {
            let db = if b.data().is_transposed_block() {
                t(&t(g).matmul(a))
            } else {
                t(a).matmul(g)
            };
            unbroadcast(&db, b.shape())
        }),
    ]
}

impl Tensor {
    /// Matrix product with PyTorch's rules: vector·vector is a dot product, a vector on the
    /// left is a row and on the right a column (dropped from the result), leading dims
    /// broadcast as batch dims.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        if self.ndim() >= 2 && other.ndim() >= 2 {
            return apply(Op::Matmul, &[self, other]);
        }
        // Shape errors come from the array layer, with the caller's line.
        if self.ndim() == 0 || other.ndim() == 0 {
            self.data().matmul(other.data());
        }
        let a = if self.ndim() == 1 {
            self.unsqueeze(0)
        } else {
            self.clone()
        };
        let b = if other.ndim() == 1 {
            other.unsqueeze(-1)
        } else {
            other.clone()
        };
        let k_a = a.shape()[a.ndim() - 1];
        let k_b = b.shape()[b.ndim() - 2];
        if k_a != k_b {
            self.data().matmul(other.data());
        }
        let mut out = apply(Op::Matmul, &[&a, &b]);
        if other.ndim() == 1 {
            out = out.squeeze_dim(-1);
        }
        if self.ndim() == 1 {
            out = out.squeeze_dim(if other.ndim() == 1 { -1 } else { -2 });
        }
        out
    }

    /// Product of two matrices.
    #[track_caller]
    pub fn mm(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 2 || other.ndim() != 2 {
            self.data().mm(other.data());
        }
        self.matmul(other)
    }

    /// Matrix times vector.
    #[track_caller]
    pub fn mv(&self, vector: &Tensor) -> Tensor {
        if self.ndim() != 2 || vector.ndim() != 1 {
            self.data().mv(vector.data());
        }
        self.matmul(vector)
    }

    /// Inner product of two vectors, as a 0-d tensor.
    #[track_caller]
    pub fn dot(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 1 || other.ndim() != 1 || self.numel() != other.numel() {
            self.data().dot(other.data());
        }
        (self * other).sum()
    }

    /// Outer product of two vectors.
    #[track_caller]
    pub fn outer(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 1 || other.ndim() != 1 {
            self.data().outer(other.data());
        }
        &self.unsqueeze(1) * &other.unsqueeze(0)
    }

    /// Batched product of two 3-d tensors with one batch size.
    #[track_caller]
    pub fn bmm(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 3 || other.ndim() != 3 || self.shape()[0] != other.shape()[0] {
            self.data().bmm(other.data());
        }
        self.matmul(other)
    }

    /// `β · self + α · (m1 @ m2)` for matrices (PyTorch's `addmm`); `self` broadcasts to the
    /// product's shape. `β` and `α` are numbers or tensors (then they get gradients too).
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// let c = Tensor::ones(&[2, 2], DType::F64);
    /// let a = Tensor::eye(2, DType::F64);
    /// let y = c.addmm(&a, &a, 0.5, 2.0);
    /// assert_eq!(y.to_vec::<f64>(), vec![2.5, 0.5, 0.5, 2.5]);
    /// ```
    #[track_caller]
    pub fn addmm(
        &self,
        m1: &Tensor,
        m2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &m1.mm(m2), alpha)
    }

    /// `β · self + α · (matrix @ vector)` (PyTorch's `addmv`).
    #[track_caller]
    pub fn addmv(
        &self,
        matrix: &Tensor,
        vector: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &matrix.mv(vector), alpha)
    }

    /// `β · self + α · (v1 ⊗ v2)` (PyTorch's `addr`).
    #[track_caller]
    pub fn addr(
        &self,
        v1: &Tensor,
        v2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &v1.outer(v2), alpha)
    }

    /// `β · self + α · (b1 @ b2)` for batches of matrices `[B, n, m]` and `[B, m, p]`
    /// (PyTorch's `baddbmm`).
    #[track_caller]
    pub fn baddbmm(
        &self,
        b1: &Tensor,
        b2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &b1.bmm(b2), alpha)
    }

    /// `β · self + α · Σ_b (b1[b] @ b2[b])`: the batch's products summed (PyTorch's
    /// `addbmm`).
    #[track_caller]
    pub fn addbmm(
        &self,
        b1: &Tensor,
        b2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &b1.bmm(b2).sum_dim(0, false), alpha)
    }
}

/// A scale factor of [`Tensor::addmm`] and its relatives: a number, or a tensor (one
/// element, or broadcasting) that is differentiated like any other.
pub trait Coefficient {
    /// `self · t`.
    fn scale(self, t: &Tensor) -> Tensor;
    /// True for the number 1 (no multiplication needed).
    fn is_one(&self) -> bool {
        false
    }
    /// True for the number 0 (the term is dropped, as PyTorch ignores `input` when β = 0,
    /// NaN and infinity included).
    fn is_zero(&self) -> bool {
        false
    }
}

impl Coefficient for f64 {
    fn scale(self, t: &Tensor) -> Tensor {
        t * self
    }
    fn is_one(&self) -> bool {
        *self == 1.0
    }
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

impl Coefficient for &Tensor {
    fn scale(self, t: &Tensor) -> Tensor {
        t * self
    }
}

/// `β · input + α · product`, `input` broadcast to the product's shape.
#[track_caller]
fn add_scaled(
    input: &Tensor,
    beta: impl Coefficient,
    product: &Tensor,
    alpha: impl Coefficient,
) -> Tensor {
    if crate::broadcast_shapes(input.shape(), product.shape()).as_deref() != Some(product.shape()) {
        panic!(
            "ferrograd: addmm and its relatives: input of shape {:?} does not broadcast to the \
             product's shape {:?} (at {})",
            input.shape(),
            product.shape(),
            ferrograd_array::Site(std::panic::Location::caller())
        );
    }
    let p = if alpha.is_one() {
        product.clone()
    } else {
        alpha.scale(product)
    };
    if beta.is_zero() {
        return p;
    }
    let i = if beta.is_one() {
        input.clone()
    } else {
        beta.scale(input)
    };
    &i + &p
}
