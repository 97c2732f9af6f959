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
}
