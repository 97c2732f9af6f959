//! Views: new layouts over the same storage, no copy. Each panics with the op name, the
//! shapes and the caller's line on a bad argument.

use crate::error::fail;
use crate::layout::{broadcast_strides, contiguous_strides, fmt_shape, numel, Dim, Shape, Strides};
use crate::Array;

impl Array {
    /// Swaps two dims.
    #[track_caller]
    pub fn transpose(&self, dim0: impl Dim, dim1: impl Dim) -> Array {
        let (a, b) = (
            dim0.resolve(self.ndim(), "transpose"),
            dim1.resolve(self.ndim(), "transpose"),
        );
        let mut shape: Shape = self.shape().into();
        let mut strides: Strides = self.strides().into();
        shape.swap(a, b);
        strides.swap(a, b);
        self.with_layout(shape, strides, self.offset())
    }

    /// The transpose of a matrix (a 0-d or 1-d array is returned as it is, like PyTorch).
    #[track_caller]
    pub fn t(&self) -> Array {
        match self.ndim() {
            0 | 1 => self.clone(),
            2 => self.transpose(0usize, 1usize),
            n => fail(
                "t",
                format_args!(
                    "expects at most 2 dims, got shape {} ({n} dims); use transpose or permute",
                    fmt_shape(self.shape())
                ),
            ),
        }
    }

    /// Reorders the dims: dim `i` of the result is dim `dims[i]` of `self`.
    #[track_caller]
    pub fn permute(&self, dims: &[usize]) -> Array {
        let n = self.ndim();
        let mut seen: smallvec::SmallVec<[bool; 8]> = smallvec::SmallVec::from_elem(false, n);
        if dims.len() != n
            || dims
                .iter()
                .any(|&d| d >= n || std::mem::replace(&mut seen[d], true))
        {
            fail(
                "permute",
                format_args!(
                    "{dims:?} is not a permutation of the {n} dims of shape {}",
                    fmt_shape(self.shape())
                ),
            )
        }
        let shape = dims.iter().map(|&d| self.shape()[d]).collect();
        let strides = dims.iter().map(|&d| self.strides()[d]).collect();
        self.with_layout(shape, strides, self.offset())
    }

    /// The slice `start..start + length` along `dim`.
    #[track_caller]
    pub fn narrow(&self, dim: impl Dim, start: usize, length: usize) -> Array {
        let d = dim.resolve(self.ndim(), "narrow");
        if start + length > self.shape()[d] {
            fail(
                "narrow",
                format_args!(
                    "range {start}..{} is out of bounds for dim {d} of size {} (shape {})",
                    start + length,
                    self.shape()[d],
                    fmt_shape(self.shape())
                ),
            )
        }
        let mut shape: Shape = self.shape().into();
        shape[d] = length;
        let offset = if length == 0 {
            self.offset()
        } else {
            (self.offset() as isize + start as isize * self.strides()[d]) as usize
        };
        self.with_layout(shape, self.strides().into(), offset)
    }

    /// Index `index` along `dim`, removing that dim.
    #[track_caller]
    pub fn select(&self, dim: impl Dim, index: usize) -> Array {
        let d = dim.resolve(self.ndim(), "select");
        if index >= self.shape()[d] {
            fail(
                "select",
                format_args!(
                    "index {index} is out of bounds for dim {d} of size {} (shape {})",
                    self.shape()[d],
                    fmt_shape(self.shape())
                ),
            )
        }
        let offset = (self.offset() as isize + index as isize * self.strides()[d]) as usize;
        let mut shape: Shape = self.shape().into();
        let mut strides: Strides = self.strides().into();
        shape.remove(d);
        strides.remove(d);
        self.with_layout(shape, strides, offset)
    }

    /// A view with the NumPy broadcast to `shape`: size-1 dims and new leading dims repeat
    /// with stride 0, nothing is copied.
    #[track_caller]
    pub fn expand(&self, shape: &[usize]) -> Array {
        let ok = shape.len() >= self.ndim()
            && self
                .shape()
                .iter()
                .zip(&shape[shape.len() - self.ndim()..])
                .all(|(&a, &b)| a == b || a == 1);
        if !ok {
            fail(
                "expand",
                format_args!(
                    "cannot broadcast shape {} to {}",
                    fmt_shape(self.shape()),
                    fmt_shape(shape)
                ),
            )
        }
        let strides = broadcast_strides(self.shape(), self.strides(), shape);
        self.with_layout(shape.into(), strides, self.offset())
    }

    /// Same as [`expand`](Array::expand) (NumPy's name).
    #[track_caller]
    pub fn broadcast_to(&self, shape: &[usize]) -> Array {
        self.expand(shape)
    }

    /// The same elements in another shape: a view whenever the layout allows one (always
    /// when contiguous; also for a narrowed, selected or broadcast array whose regrouped dims
    /// keep a single stride, as PyTorch's `view` decides), a copy otherwise.
    #[track_caller]
    pub fn reshape(&self, shape: &[usize]) -> Array {
        if numel(shape) != self.numel() {
            fail(
                "reshape",
                format_args!(
                    "cannot reshape {} ({} elements) to {} ({} elements)",
                    fmt_shape(self.shape()),
                    self.numel(),
                    fmt_shape(shape),
                    numel(shape)
                ),
            )
        }
        if let Some(strides) = view_strides(self.shape(), self.strides(), shape) {
            return self.with_layout(shape.into(), strides, self.offset());
        }
        let base = self.copy();
        base.with_layout(shape.into(), contiguous_strides(shape), base.offset())
    }

    /// Merges dims `start..=end` into one.
    #[track_caller]
    pub fn flatten(&self, start: impl Dim, end: impl Dim) -> Array {
        if self.ndim() == 0 {
            return self.reshape(&[1]);
        }
        let (s, e) = (
            start.resolve(self.ndim(), "flatten"),
            end.resolve(self.ndim(), "flatten"),
        );
        if s > e {
            fail(
                "flatten",
                format_args!("start dim {s} is after end dim {e}"),
            )
        }
        let mut shape: Shape = self.shape()[..s].into();
        shape.push(self.shape()[s..=e].iter().product());
        shape.extend_from_slice(&self.shape()[e + 1..]);
        self.reshape(&shape)
    }

    /// Removes every dim of size 1.
    pub fn squeeze(&self) -> Array {
        let (shape, strides): (Shape, Strides) = self
            .shape()
            .iter()
            .zip(self.strides())
            .filter(|(&n, _)| n != 1)
            .map(|(&n, &s)| (n, s))
            .unzip();
        self.with_layout(shape, strides, self.offset())
    }

    /// Removes `dim` if it has size 1 (otherwise returns the array unchanged, like PyTorch).
    #[track_caller]
    pub fn squeeze_dim(&self, dim: impl Dim) -> Array {
        let d = dim.resolve(self.ndim(), "squeeze_dim");
        if self.shape()[d] != 1 {
            return self.clone();
        }
        let mut shape: Shape = self.shape().into();
        let mut strides: Strides = self.strides().into();
        shape.remove(d);
        strides.remove(d);
        self.with_layout(shape, strides, self.offset())
    }

    /// Inserts a dim of size 1 at `dim` (which may equal `ndim`, or be negative counting
    /// from the back of the result).
    #[track_caller]
    pub fn unsqueeze(&self, dim: impl Dim) -> Array {
        let d = dim.resolve(self.ndim() + 1, "unsqueeze");
        let mut shape: Shape = self.shape().into();
        let mut strides: Strides = self.strides().into();
        let stride = if d < self.ndim() {
            self.strides()[d] * self.shape()[d] as isize
        } else {
            1
        };
        shape.insert(d, 1);
        strides.insert(d, stride);
        self.with_layout(shape, strides, self.offset())
    }

    /// Diagonal `k` (`k > 0` above, `k < 0` below) of the matrices in the last two dims, as
    /// a view `[.., len]` (PyTorch's `torch.linalg.diagonal`; for a matrix, its diagonal as
    /// a vector).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec((0..8).map(|v| v as f32).collect(), &[2, 2, 2]);
    /// assert_eq!(a.diagonal(0).to_vec::<f32>(), vec![0.0, 3.0, 4.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn diagonal(&self, k: i64) -> Array {
        if self.ndim() < 2 {
            fail(
                "diagonal",
                format_args!(
                    "expects a matrix or a batch of matrices, got shape {}",
                    fmt_shape(self.shape())
                ),
            )
        }
        self.diagonal_dims(k, self.ndim() - 2, self.ndim() - 1)
    }

    /// Diagonal `k` of the planes spanned by dims `dim1` and `dim2`, as a view: those two
    /// dims are removed and the diagonal appended as the last dim (PyTorch's
    /// `torch.diagonal`).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec((0..8).map(|v| v as f32).collect(), &[2, 2, 2]);
    /// assert_eq!(a.diagonal_dims(0, 0usize, 2usize).to_vec::<f32>(), vec![0.0, 5.0, 2.0, 7.0]);
    /// ```
    #[track_caller]
    pub fn diagonal_dims(&self, k: i64, dim1: impl Dim, dim2: impl Dim) -> Array {
        let (d1, d2) = (
            dim1.resolve(self.ndim(), "diagonal"),
            dim2.resolve(self.ndim(), "diagonal"),
        );
        if d1 == d2 {
            fail(
                "diagonal",
                format_args!("dim1 and dim2 are the same dim ({d1})"),
            )
        }
        let (shape, strides, offset) =
            diagonal_layout(self.shape(), self.strides(), self.offset(), k, d1, d2);
        self.with_layout(shape, strides, offset)
    }
}

/// The layout of diagonal `k` of dims `d1`, `d2` of an array laid out as `shape`, `strides`,
/// `offset`: the other dims in order, then the diagonal.
pub(crate) fn diagonal_layout(
    shape: &[usize],
    strides: &[isize],
    offset: usize,
    k: i64,
    d1: usize,
    d2: usize,
) -> (Shape, Strides, usize) {
    let (r, c) = (shape[d1] as i64, shape[d2] as i64);
    let len = if k >= 0 { r.min(c - k) } else { (r + k).min(c) }.max(0) as usize;
    let (row, col) = if k >= 0 { (0, k) } else { (-k, 0) };
    let offset = if len == 0 {
        offset
    } else {
        (offset as isize + row as isize * strides[d1] + col as isize * strides[d2]) as usize
    };
    let keep = (0..shape.len()).filter(|&d| d != d1 && d != d2);
    let mut out_shape: Shape = keep.clone().map(|d| shape[d]).collect();
    let mut out_strides: Strides = keep.map(|d| strides[d]).collect();
    out_shape.push(len);
    out_strides.push(strides[d1] + strides[d2]);
    (out_shape, out_strides, offset)
}

/// Strides that read an array of `shape`/`strides` in row-major order as `new_shape` (same
/// element count), or `None` when some group of dims that `new_shape` splits or merges does
/// not step through memory with one stride. Walks the old dims from the innermost, cutting
/// them into chunks of dims that are contiguous with each other, and fits new dims into each
/// chunk (the algorithm of PyTorch's `computeStride`).
fn view_strides(shape: &[usize], strides: &[isize], new_shape: &[usize]) -> Option<Strides> {
    if shape.contains(&0) || shape.is_empty() {
        return Some(contiguous_strides(new_shape));
    }
    let mut out: Strides = smallvec::SmallVec::from_elem(0, new_shape.len());
    let mut view_d = new_shape.len() as isize - 1;
    let mut chunk_stride = *strides.last().expect("at least one dim");
    let (mut old_numel, mut new_numel) = (1usize, 1usize);
    for d in (0..shape.len()).rev() {
        old_numel *= shape[d];
        let chunk_ends =
            d == 0 || (shape[d - 1] != 1 && strides[d - 1] != old_numel as isize * chunk_stride);
        if chunk_ends {
            while view_d >= 0 && (new_numel < old_numel || new_shape[view_d as usize] == 1) {
                out[view_d as usize] = new_numel as isize * chunk_stride;
                new_numel *= new_shape[view_d as usize];
                view_d -= 1;
            }
            if new_numel != old_numel {
                return None;
            }
            if d > 0 {
                chunk_stride = strides[d - 1];
                old_numel = 1;
                new_numel = 1;
            }
        }
    }
    (view_d == -1).then_some(out)
}
