//! Shape primitives: permute, reshape, expand, narrow and its adjoint, flips, diagonals,
//! triangles, concatenation; and the views built from them (transpose, select, squeeze,
//! unsqueeze, flatten, split, chunk, stack, repeat).

use smallvec::smallvec;

use super::unbroadcast;
use crate::op::{Grads, Op};
use crate::ops::reduce::DimList;
use crate::tensor::apply;
use std::borrow::Borrow;

use crate::{Array, Dim, Dims, Position, Shape, Tensor};

/// Shape primitives: each variant's name, forward, forward into a buffer and gradient rule
/// are below, one exhaustive match each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShapeOp {
    /// Dim reordering.
    Permute(Vec<usize>),
    /// Same elements in a new shape.
    Reshape(Shape),
    /// A row-major copy of a strided tensor.
    Contiguous,
    /// Broadcast view to a shape.
    Expand(Shape),
    /// Slice along a dim.
    Narrow {
        /// The dim.
        dim: usize,
        /// First index.
        start: usize,
        /// Number of entries.
        len: usize,
    },
    /// Zeros of `size` along `dim` with the input placed at `start` (the adjoint of narrow).
    PadNarrow {
        /// The dim.
        dim: usize,
        /// Where the input goes.
        start: usize,
        /// Size of the result along `dim`.
        size: usize,
    },
    /// Reversal along dims.
    Flip(DimList),
    /// Diagonal `k` of the planes of two dims, appended as the last dim (a view).
    Diagonal {
        /// The offset (above the main diagonal when positive).
        k: i64,
        /// The rows' dim.
        dim1: usize,
        /// The columns' dim.
        dim2: usize,
    },
    /// The last dim's vectors placed on diagonal `k` of square zero matrices.
    DiagEmbed(i64),
    /// A copy of the first input with a diagonal (as [`ShapeOp::Diagonal`] reads it)
    /// replaced by the second input.
    DiagonalScatter {
        /// The offset.
        k: i64,
        /// The rows' dim.
        dim1: usize,
        /// The columns' dim.
        dim2: usize,
    },
    /// Lower (`true`) or upper triangle from diagonal `k`.
    Triangle(bool, i64),
    /// Concatenation along a dim.
    Cat(usize),
}

impl From<ShapeOp> for Op {
    fn from(op: ShapeOp) -> Op {
        Op::Shape(op)
    }
}

impl ShapeOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            ShapeOp::Permute(_) => "permute",
            ShapeOp::Reshape(_) => "reshape",
            ShapeOp::Contiguous => "contiguous",
            ShapeOp::Expand(_) => "expand",
            ShapeOp::Narrow { .. } => "narrow",
            ShapeOp::PadNarrow { .. } => "pad_narrow",
            ShapeOp::Flip(_) => "flip",
            ShapeOp::Diagonal { .. } => "diagonal",
            ShapeOp::DiagEmbed(_) => "diag_embed",
            ShapeOp::DiagonalScatter { .. } => "diagonal_scatter",
            ShapeOp::Triangle(true, _) => "tril",
            ShapeOp::Triangle(false, _) => "triu",
            ShapeOp::Cat(_) => "cat",
        }
    }

    #[track_caller]
    pub(crate) fn forward(&self, x: &[&Array]) -> Array {
        match self {
            ShapeOp::Permute(p) => x[0].permute(p),
            ShapeOp::Reshape(s) => x[0].reshape(s),
            ShapeOp::Contiguous => x[0].contiguous(),
            ShapeOp::Expand(s) => x[0].expand(s),
            ShapeOp::Narrow { dim, start, len } => x[0].narrow(*dim, *start, *len),
            ShapeOp::PadNarrow { dim, start, size } => x[0].pad_narrow(*dim, *start, *size),
            ShapeOp::Flip(dims) => x[0].flip(dims.as_slice()),
            ShapeOp::Diagonal { k, dim1, dim2 } => x[0].diagonal_dims(*k, *dim1, *dim2),
            ShapeOp::DiagEmbed(k) => x[0].diag_embed(*k),
            ShapeOp::DiagonalScatter { k, dim1, dim2 } => {
                x[0].diagonal_scatter(x[1], *k, *dim1, *dim2)
            }
            ShapeOp::Triangle(true, k) => x[0].tril(*k),
            ShapeOp::Triangle(false, k) => x[0].triu(*k),
            ShapeOp::Cat(d) => Array::cat(&x.iter().map(|a| (*a).clone()).collect::<Vec<_>>(), *d),
        }
    }

    /// See [`Op::forward_into`]: false for views, which allocate no data, and for the ops
    /// with no `*_into` kernel.
    #[track_caller]
    pub(crate) fn forward_into(&self, x: &[&Array], out: &mut Array) -> bool {
        match self {
            ShapeOp::Contiguous => x[0].contiguous_into(out),
            ShapeOp::Flip(dims) => x[0].flip_into(dims.as_slice(), out),
            ShapeOp::Triangle(true, k) => x[0].tril_into(*k, out),
            ShapeOp::Triangle(false, k) => x[0].triu_into(*k, out),
            ShapeOp::PadNarrow { dim, start, size } => {
                x[0].pad_narrow_into(*dim, *start, *size, out)
            }
            ShapeOp::Cat(d) => Array::cat_into(x, *d, out),
            ShapeOp::Permute(_)
            | ShapeOp::Reshape(_)
            | ShapeOp::Expand(_)
            | ShapeOp::Narrow { .. }
            | ShapeOp::Diagonal { .. }
            | ShapeOp::DiagEmbed(_)
            | ShapeOp::DiagonalScatter { .. } => return false,
        }
        true
    }

    pub(crate) fn vjp(&self, x: &[Tensor], g: &Tensor) -> Grads {
        let dx = match self {
            ShapeOp::Permute(p) => {
                let mut inverse = vec![0; p.len()];
                for (i, &d) in p.iter().enumerate() {
                    inverse[d] = i;
                }
                g.permute(&inverse)
            }
            ShapeOp::Reshape(_) => g.reshape(x[0].shape()),
            ShapeOp::Contiguous => g.clone(),
            ShapeOp::Expand(_) => unbroadcast(g, x[0].shape()),
            ShapeOp::Narrow { dim, start, .. } => apply(
                ShapeOp::PadNarrow {
                    dim: *dim,
                    start: *start,
                    size: x[0].shape()[*dim],
                },
                &[g],
            ),
            ShapeOp::PadNarrow { dim, start, .. } => g.narrow(*dim, *start, x[0].shape()[*dim]),
            ShapeOp::Flip(dims) => g.flip(dims.as_slice()),
            ShapeOp::DiagEmbed(k) => g.diagonal(*k),
            ShapeOp::Diagonal { k, dim1, dim2 } => {
                let zeros = x[0].zeros_like().to_dtype(g.dtype());
                zeros.diagonal_scatter(g, *k, *dim1, *dim2)
            }
            ShapeOp::DiagonalScatter { k, dim1, dim2 } => {
                let (k, d1, d2) = (*k, *dim1, *dim2);
                return smallvec![
                    Some(g.diagonal_scatter(&x[1].zeros_like(), k, d1, d2)),
                    Some(g.diagonal_dims(k, d1, d2)),
                ];
            }
            ShapeOp::Triangle(lower, k) => {
                if *lower {
                    g.tril(*k)
                } else {
                    g.triu(*k)
                }
            }
            ShapeOp::Cat(dim) => {
                let mut start = 0;
                return x
                    .iter()
                    .map(|xi| {
                        let n = xi.shape()[*dim];
                        let piece = g.narrow(*dim, start, n);
                        start += n;
                        Some(piece)
                    })
                    .collect();
            }
        };
        smallvec![Some(dx)]
    }
}

impl Tensor {
    /// Reorders dims: dim `i` of the result is dim `dims[i]` of `self`.
    #[track_caller]
    pub fn permute(&self, dims: &[usize]) -> Tensor {
        self.data().permute(dims); // checks, with the caller's line
        if dims.iter().enumerate().all(|(i, &d)| i == d) {
            return self.clone();
        }
        apply(ShapeOp::Permute(dims.to_vec()), &[self])
    }

    /// Swaps two dims.
    #[track_caller]
    pub fn transpose(&self, dim0: impl Dim, dim1: impl Dim) -> Tensor {
        let (a, b) = (
            dim0.resolve(self.ndim(), "transpose"),
            dim1.resolve(self.ndim(), "transpose"),
        );
        let mut p: Vec<usize> = (0..self.ndim()).collect();
        p.swap(a, b);
        self.permute(&p)
    }

    /// The transpose of a matrix (0-d and 1-d tensors are returned as they are).
    #[track_caller]
    pub fn t(&self) -> Tensor {
        self.data().t();
        if self.ndim() < 2 {
            self.clone()
        } else {
            self.transpose(0, 1)
        }
    }

    /// The same elements in another shape; one size may be -1, inferred from the others
    /// (as PyTorch's `reshape` and `view`). A view when the layout allows, else a copy.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec((0..12).map(f64::from).collect(), &[3, 4]);
    /// assert_eq!(x.reshape(&[2, 6]).shape(), &[2, 6]);
    /// assert_eq!(x.reshape(&[-1, 2]).shape(), &[6, 2]);
    /// assert_eq!(x.reshape(&[-1]).shape(), &[12]);
    /// ```
    #[track_caller]
    pub fn reshape(&self, shape: impl ShapeSpec) -> Tensor {
        let shape = resolve_reshape(&shape.sizes(), self.shape(), "reshape");
        if shape.as_slice() == self.shape() {
            return self.clone();
        }
        apply(ShapeOp::Reshape(shape), &[self])
    }

    /// Same as [`reshape`](Tensor::reshape) (PyTorch's `view`; ferrograd copies only when
    /// the layout needs it, and the gradient is the same either way).
    #[track_caller]
    pub fn view(&self, shape: impl ShapeSpec) -> Tensor {
        self.reshape(shape)
    }

    /// Merges dims `start..=end` into one.
    #[track_caller]
    pub fn flatten(&self, start: impl Dim, end: impl Dim) -> Tensor {
        let shape = self.data().flatten(start, end).shape().to_vec();
        self.reshape(&shape)
    }

    /// Removes every dim of size 1.
    #[track_caller]
    pub fn squeeze(&self) -> Tensor {
        let shape = self.data().squeeze().shape().to_vec();
        self.reshape(&shape)
    }

    /// Removes `dim` if it has size 1.
    #[track_caller]
    pub fn squeeze_dim(&self, dim: impl Dim) -> Tensor {
        let shape = self.data().squeeze_dim(dim).shape().to_vec();
        self.reshape(&shape)
    }

    /// Inserts a dim of size 1.
    #[track_caller]
    pub fn unsqueeze(&self, dim: impl Dim) -> Tensor {
        let shape = self.data().unsqueeze(dim).shape().to_vec();
        self.reshape(&shape)
    }

    /// A contiguous copy when the data is strided, else the tensor itself.
    #[track_caller]
    pub fn contiguous(&self) -> Tensor {
        if self.data().is_contiguous() {
            self.clone()
        } else {
            apply(ShapeOp::Contiguous, &[self])
        }
    }

    /// Broadcast to `shape` (size-1 and new leading dims repeat); -1 keeps a dim's size,
    /// as in PyTorch. The gradient sums back.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3, 1]);
    /// assert_eq!(x.expand(&[3, 4]).shape(), &[3, 4]);
    /// assert_eq!(x.expand(&[2, -1, 4]).shape(), &[2, 3, 4]);
    /// ```
    #[track_caller]
    pub fn expand(&self, shape: impl ShapeSpec) -> Tensor {
        let shape = resolve_expand(&shape.sizes(), self.shape());
        if shape.as_slice() == self.shape() {
            return self.clone();
        }
        apply(ShapeOp::Expand(shape), &[self])
    }

    /// Same as [`expand`](Tensor::expand).
    #[track_caller]
    pub fn broadcast_to(&self, shape: impl ShapeSpec) -> Tensor {
        self.expand(shape)
    }

    /// The slice `start..start + length` along `dim`; a negative `start` counts from the
    /// end, as in PyTorch.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert_eq!(x.narrow(0, -2, 2).to_vec::<f64>(), vec![3.0, 4.0]);
    /// assert_eq!(x.select(0, -1).item::<f64>(), 4.0);
    /// ```
    #[track_caller]
    pub fn narrow(&self, dim: impl Dim, start: impl Position, length: usize) -> Tensor {
        let d = dim.resolve(self.ndim(), "narrow");
        let start = start.resolve_position(self.shape()[d], "narrow");
        self.data().narrow(d, start, length);
        if start == 0 && length == self.shape()[d] {
            return self.clone();
        }
        apply(
            ShapeOp::Narrow {
                dim: d,
                start,
                len: length,
            },
            &[self],
        )
    }

    /// Index `index` along `dim` (negative counts from the end), removing that dim.
    #[track_caller]
    pub fn select(&self, dim: impl Dim, index: impl Position) -> Tensor {
        let d = dim.resolve(self.ndim(), "select");
        let index = index.resolve_position(self.shape()[d], "select");
        self.data().select(d, index);
        self.narrow(d, index, 1).squeeze_dim(d)
    }

    /// Reverses the order along each of `dims`.
    #[track_caller]
    pub fn flip(&self, dims: impl Dims) -> Tensor {
        let dims: DimList = dims.resolve_all(self.ndim(), "flip");
        apply(ShapeOp::Flip(dims), &[self])
    }

    /// Diagonal `k` (`k > 0` above, `k < 0` below) of the matrices in the last two dims,
    /// as `[.., len]` (PyTorch's `torch.linalg.diagonal`; for a matrix, its diagonal as a
    /// vector). A view; its gradient lands on the diagonal.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let m = Tensor::from_vec((0..8).map(f64::from).collect(), &[2, 2, 2]);
    /// assert_eq!(m.diagonal(0).to_vec::<f64>(), vec![0.0, 3.0, 4.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn diagonal(&self, k: i64) -> Tensor {
        self.data().diagonal(k); // checks, with the caller's line
        let d = self.ndim();
        apply(
            ShapeOp::Diagonal {
                k,
                dim1: d - 2,
                dim2: d - 1,
            },
            &[self],
        )
    }

    /// Diagonal `k` of the planes spanned by `dim1` and `dim2`: those dims are removed and
    /// the diagonal appended as the last dim (PyTorch's `torch.diagonal`).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let m = Tensor::from_vec((0..8).map(f64::from).collect(), &[2, 2, 2]);
    /// assert_eq!(m.diagonal_dims(0, 0, 2).to_vec::<f64>(), vec![0.0, 5.0, 2.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn diagonal_dims(&self, k: i64, dim1: impl Dim, dim2: impl Dim) -> Tensor {
        let (d1, d2) = (
            dim1.resolve(self.ndim(), "diagonal"),
            dim2.resolve(self.ndim(), "diagonal"),
        );
        self.data().diagonal_dims(k, d1, d2); // checks, with the caller's line
        apply(
            ShapeOp::Diagonal {
                k,
                dim1: d1,
                dim2: d2,
            },
            &[self],
        )
    }

    /// The last dim's vectors placed on diagonal `k` of square zero matrices `[.., n, n]`,
    /// `n = len + |k|` (PyTorch's `torch.diag_embed`).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let v = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 2]);
    /// assert_eq!(v.diag_embed(0).to_vec::<f64>(), vec![1.0, 0.0, 0.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn diag_embed(&self, k: i64) -> Tensor {
        if self.ndim() == 0 {
            self.data().diag_embed(k); // panics, with the caller's line
        }
        apply(ShapeOp::DiagEmbed(k), &[self])
    }

    /// A copy of `self` with diagonal `k` of dims `dim1`, `dim2` (as
    /// [`diagonal_dims`](Tensor::diagonal_dims) reads it) replaced by `src` (PyTorch's
    /// `torch.diagonal_scatter`). Both get gradients.
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// let z = Tensor::zeros(&[2, 2], DType::F64);
    /// let d = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// assert_eq!(z.diagonal_scatter(&d, 0, 0, 1).to_vec::<f64>(), vec![1.0, 0.0, 0.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn diagonal_scatter(&self, src: &Tensor, k: i64, dim1: impl Dim, dim2: impl Dim) -> Tensor {
        let (d1, d2) = (
            dim1.resolve(self.ndim(), "diagonal_scatter"),
            dim2.resolve(self.ndim(), "diagonal_scatter"),
        );
        let view = self.data().diagonal_dims(k, d1, d2);
        if view.shape() != src.shape() || src.dtype() != self.dtype() {
            self.data().diagonal_scatter(src.data(), k, d1, d2); // panics, with the caller's line
        }
        apply(
            ShapeOp::DiagonalScatter {
                k,
                dim1: d1,
                dim2: d2,
            },
            &[self, src],
        )
    }

    /// The sum of a matrix's diagonal (PyTorch's `torch.trace`; the gradient is the identity
    /// matrix times the output gradient).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let m = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(m.trace().item::<f64>(), 5.0);
    /// ```
    #[track_caller]
    pub fn trace(&self) -> Tensor {
        if self.ndim() != 2 {
            panic!(
                "ferrograd: trace: expects a matrix, got shape {:?} (at {})",
                self.shape(),
                ferrograd_array::Site(std::panic::Location::caller())
            );
        }
        self.diagonal(0).sum()
    }

    /// For a vector, the square matrix with it on diagonal `k`; for a matrix, its diagonal `k`.
    #[track_caller]
    pub fn diag(&self, k: i64) -> Tensor {
        match self.ndim() {
            1 => apply(ShapeOp::DiagEmbed(k), &[self]),
            2 => self.diagonal(k),
            _ => {
                self.data().diag(k);
                unreachable!()
            }
        }
    }

    /// The lower triangle of the last two dims from diagonal `k`, zeros elsewhere.
    #[track_caller]
    pub fn tril(&self, k: i64) -> Tensor {
        apply(ShapeOp::Triangle(true, k), &[self])
    }

    /// The upper triangle of the last two dims from diagonal `k`, zeros elsewhere.
    #[track_caller]
    pub fn triu(&self, k: i64) -> Tensor {
        apply(ShapeOp::Triangle(false, k), &[self])
    }

    /// Joins tensors along an existing dim. Takes a slice of tensors or of references to
    /// them, so joining tensors held elsewhere needs no clones.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let (a, b) = (Tensor::ones(&[1, 2], ferrograd::DType::F32), Tensor::zeros(&[1, 2], ferrograd::DType::F32));
    /// assert_eq!(Tensor::cat(&[&a, &b], 0).shape(), &[2, 2]);
    /// assert_eq!(Tensor::stack(&[a, b], 0).shape(), &[2, 1, 2]);
    /// ```
    #[track_caller]
    pub fn cat<T: Borrow<Tensor>>(tensors: &[T], dim: impl Dim) -> Tensor {
        let Some(first) = tensors.first() else {
            Array::cat(&[], 0);
            unreachable!()
        };
        let d = dim.resolve(first.borrow().ndim(), "cat");
        let refs: Vec<&Tensor> = tensors.iter().map(Borrow::borrow).collect();
        apply(ShapeOp::Cat(d), &refs)
    }

    /// Joins tensors of one shape along a new dim.
    #[track_caller]
    pub fn stack<T: Borrow<Tensor>>(tensors: &[T], dim: impl Dim) -> Tensor {
        let Some(first) = tensors.first().map(Borrow::borrow) else {
            Array::stack(&[], 0);
            unreachable!()
        };
        let d = dim.resolve(first.ndim() + 1, "stack");
        for t in tensors.iter().map(Borrow::borrow) {
            if t.shape() != first.shape() {
                Array::stack(&[first.data().clone(), t.data().clone()], d);
            }
        }
        let parts: Vec<Tensor> = tensors.iter().map(|t| t.borrow().unsqueeze(d)).collect();
        Tensor::cat(&parts, d)
    }

    /// The slices of `self` along `dim`, that dim removed (PyTorch's `unbind`).
    #[track_caller]
    pub fn unbind(&self, dim: impl Dim) -> Vec<Tensor> {
        let d = dim.resolve(self.ndim(), "unbind");
        (0..self.shape()[d]).map(|i| self.select(d, i)).collect()
    }

    /// `self` shifted by `shift` places along `dim`, the elements that leave one end coming
    /// back at the other (PyTorch's `roll`; a negative shift rolls the other way).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[4]);
    /// assert_eq!(x.roll(1, 0).to_vec::<f64>(), vec![4.0, 1.0, 2.0, 3.0]);
    /// assert_eq!(x.roll(-1, 0).to_vec::<f64>(), vec![2.0, 3.0, 4.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn roll(&self, shift: i64, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "roll");
        let n = self.shape()[d] as i64;
        if n == 0 {
            return self.clone();
        }
        let s = shift.rem_euclid(n) as usize;
        if s == 0 {
            return self.clone();
        }
        let n = n as usize;
        Tensor::cat(&[self.narrow(d, n - s, s), self.narrow(d, 0, n - s)], d)
    }

    /// Consecutive pieces of `size` along `dim` (the last may be shorter).
    #[track_caller]
    pub fn split(&self, size: usize, dim: impl Dim) -> Vec<Tensor> {
        let d = dim.resolve(self.ndim(), "split");
        let sizes: Vec<usize> = self
            .data()
            .split(size, d)
            .iter()
            .map(|p| p.shape()[d])
            .collect();
        self.split_sizes(&sizes, d)
    }

    /// Pieces of the given sizes along `dim`.
    #[track_caller]
    pub fn split_sizes(&self, sizes: &[usize], dim: impl Dim) -> Vec<Tensor> {
        let d = dim.resolve(self.ndim(), "split_sizes");
        self.data().split_sizes(sizes, d);
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            out.push(self.narrow(d, start, s));
            start += s;
        }
        out
    }

    /// `chunks` pieces of (nearly) equal size along `dim`.
    #[track_caller]
    pub fn chunk(&self, chunks: usize, dim: impl Dim) -> Vec<Tensor> {
        let d = dim.resolve(self.ndim(), "chunk");
        let sizes: Vec<usize> = self
            .data()
            .chunk(chunks, d)
            .iter()
            .map(|p| p.shape()[d])
            .collect();
        self.split_sizes(&sizes, d)
    }

    /// Tiles the tensor: dim `i` repeats `repeats[i]` times (the gradient sums the tiles).
    #[track_caller]
    pub fn repeat(&self, repeats: &[usize]) -> Tensor {
        let out_shape = self.data().repeat(repeats).shape().to_vec();
        let lead = repeats.len() - self.ndim();
        let mut base = vec![1; lead];
        base.extend_from_slice(self.shape());
        let mut inter = Vec::new();
        let mut expanded = Vec::new();
        for (&n, &r) in base.iter().zip(repeats) {
            inter.extend_from_slice(&[1, n]);
            expanded.extend_from_slice(&[r, n]);
        }
        self.reshape(&inter).expand(&expanded).reshape(&out_shape)
    }

    /// Repeats each entry along `dim` `repeats` times in place (PyTorch's
    /// `repeat_interleave` with a number): `[a, b]` gives `[a, a, b, b]` for 2. The gradient
    /// sums each entry's copies.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
    /// let y = x.repeat_interleave(2, 1);
    /// assert_eq!(y.to_vec::<f64>(), vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn repeat_interleave(&self, repeats: usize, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "repeat_interleave");
        // [.., n, ..] -> [.., n, 1, ..] -> [.., n, r, ..] -> [.., n·r, ..]
        let mut inter = self.shape().to_vec();
        inter.insert(d + 1, 1);
        let mut expanded = inter.clone();
        expanded[d + 1] = repeats;
        let mut out = self.shape().to_vec();
        out[d] *= repeats;
        self.reshape(&inter).expand(&expanded).reshape(&out)
    }

    /// Coordinate grids of 1-d tensors, with PyTorch's `indexing="ij"`: the `i`-th result
    /// has shape `[len₀, len₁, ...]` and varies along dim `i`.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2]);
    /// let y = Tensor::from_vec(vec![10.0f64, 20.0, 30.0], &[3]);
    /// let g = Tensor::meshgrid(&[&x, &y]);
    /// assert_eq!(g[0].to_vec::<f64>(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    /// assert_eq!(g[1].to_vec::<f64>(), vec![10.0, 20.0, 30.0, 10.0, 20.0, 30.0]);
    /// ```
    #[track_caller]
    pub fn meshgrid<T: std::borrow::Borrow<Tensor>>(tensors: &[T]) -> Vec<Tensor> {
        let site = ferrograd_array::Site(std::panic::Location::caller());
        let shape: Vec<usize> = tensors.iter().map(|t| t.borrow().numel()).collect();
        tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let t = t.borrow();
                if t.ndim() != 1 {
                    panic!(
                        "ferrograd: meshgrid: expects 1-d tensors, got shape {:?} at position {i} (at {site})",
                        t.shape()
                    );
                }
                let mut view = vec![1; shape.len()];
                view[i] = shape[i];
                t.reshape(&view).expand(&shape)
            })
            .collect()
    }
}

/// A shape argument of [`Tensor::reshape`], [`Tensor::expand`] and their relatives: a
/// borrowed slice, array or `Vec` of sizes, `usize` or signed (where -1 asks for a size to
/// be inferred or kept), so `x.reshape(&[2, -1])` and `x.reshape(y.shape())` both read
/// naturally. (Only borrowed forms, so every call reads the same way.) An empty literal
/// has no element type to infer: a 0-d shape is `&[] as &[usize]` (or use
/// [`squeeze`](Tensor::squeeze)).
pub trait ShapeSpec {
    /// The sizes, -1 included.
    fn sizes(&self) -> smallvec::SmallVec<[i64; 6]>;
}

macro_rules! shape_spec {
    ($($t:ty),*) => {$(
        impl ShapeSpec for &[$t] {
            fn sizes(&self) -> smallvec::SmallVec<[i64; 6]> {
                self.iter().map(|&s| s as i64).collect()
            }
        }
        impl<const N: usize> ShapeSpec for &[$t; N] {
            fn sizes(&self) -> smallvec::SmallVec<[i64; 6]> {
                self.iter().map(|&s| s as i64).collect()
            }
        }
        impl ShapeSpec for &Vec<$t> {
            fn sizes(&self) -> smallvec::SmallVec<[i64; 6]> {
                self.iter().map(|&s| s as i64).collect()
            }
        }
    )*};
}

shape_spec!(usize, i64, i32);

impl ShapeSpec for &Shape {
    fn sizes(&self) -> smallvec::SmallVec<[i64; 6]> {
        self.iter().map(|&s| s as i64).collect()
    }
}

/// `sizes` with its one -1 inferred so that the element count is `from`'s.
#[track_caller]
fn resolve_reshape(sizes: &[i64], from: &[usize], op: &str) -> Shape {
    let numel: usize = from.iter().product();
    let site = ferrograd_array::Site(std::panic::Location::caller());
    let fail = |why: &str| -> ! {
        panic!(
            "ferrograd: {op}: cannot reshape {from:?} ({numel} elements) to {sizes:?}: {why} \
             (at {site})"
        )
    };
    let inferred: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] == -1).collect();
    if inferred.len() > 1 {
        fail("only one size may be -1");
    }
    if sizes.iter().any(|&s| s < -1) {
        fail("sizes must be non-negative, or -1 for one inferred size");
    }
    let known: usize = sizes
        .iter()
        .filter(|&&s| s >= 0)
        .map(|&s| s as usize)
        .product();
    let mut out: Shape = sizes.iter().map(|&s| s.max(0) as usize).collect();
    if let Some(&i) = inferred.first() {
        if known == 0 || !numel.is_multiple_of(known) {
            fail("the other sizes do not divide the element count");
        }
        out[i] = numel / known;
    } else if known != numel {
        fail("the element counts differ");
    }
    out
}

/// `sizes` with each -1 replaced by the size of the matching dim of `from` (aligned from
/// the right, as broadcasting aligns them). Other checks are the array layer's.
#[track_caller]
fn resolve_expand(sizes: &[i64], from: &[usize]) -> Shape {
    let lead = sizes.len() as isize - from.len() as isize;
    let site = ferrograd_array::Site(std::panic::Location::caller());
    sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let j = i as isize - lead;
            match s {
                -1 if j >= 0 => from[j as usize],
                s if s >= 0 => s as usize,
                _ => panic!(
                    "ferrograd: expand: cannot expand {from:?} to {sizes:?}: -1 (keep the \
                     size) is only valid for existing dims, and other sizes must be \
                     non-negative (at {site})"
                ),
            }
        })
        .collect()
}
