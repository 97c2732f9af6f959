//! Indexing: gather/scatter along a dim, row selection and assignment, masks, joining and
//! splitting, repeats, flips and triangles.
//!
//! Index arrays are i64, with PyTorch's rule for negative indices: [`Index`] reads and
//! writes (`x[k]`) count them from the back, like Python indexing; the explicit-index ops
//! (`index_select`, `index_add`, `gather`, `scatter`, `scatter_add`) take positions in
//! `0..size` and refuse negatives. Anything out of range panics naming the op, the index and
//! the size.

use crate::dtype::{dispatch_any, dispatch_number, Element, Number};
use crate::elementwise::Source;
use crate::error::fail;
use crate::layout::{fmt_shape, for_each_offsets, Dim, Shape, Strides};
use crate::{Array, DType};
use smallvec::SmallVec;

/// Which rows (along dim 0) an assignment or read addresses: the forms of the seed's
/// `x[k] = v`.
#[derive(Clone, Debug)]
pub enum Index {
    /// One row (`x[k]`); the row's dim is dropped from the addressed region.
    Single(i64),
    /// Several rows by position.
    List(Vec<i64>),
    /// Several rows by a 1-d i64 array.
    Tensor(Array),
    /// A bool mask: either of the array's whole shape (elementwise), or 1-d over dim 0 (rows).
    Mask(Array),
}

/// Equal when the same form addresses the same positions: positions by value, index
/// arrays and masks by shape, dtype and elements (see [`Array::bit_eq`]).
impl PartialEq for Index {
    fn eq(&self, other: &Index) -> bool {
        match (self, other) {
            (Index::Single(a), Index::Single(b)) => a == b,
            (Index::List(a), Index::List(b)) => a == b,
            (Index::Tensor(a), Index::Tensor(b)) | (Index::Mask(a), Index::Mask(b)) => a.bit_eq(b),
            (Index::Single(_) | Index::List(_) | Index::Tensor(_) | Index::Mask(_), _) => false,
        }
    }
}

impl Eq for Index {}

/// Hashes the form and the positions, or an array's shape and dtype (equal arrays agree on
/// both, and reading every element is left to the comparison).
impl std::hash::Hash for Index {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Index::Single(k) => k.hash(state),
            Index::List(k) => k.hash(state),
            Index::Tensor(a) | Index::Mask(a) => {
                a.shape().hash(state);
                a.dtype().hash(state);
            }
        }
    }
}

impl From<i64> for Index {
    fn from(k: i64) -> Index {
        Index::Single(k)
    }
}

impl From<Vec<i64>> for Index {
    fn from(k: Vec<i64>) -> Index {
        Index::List(k)
    }
}

impl From<&[i64]> for Index {
    fn from(k: &[i64]) -> Index {
        Index::List(k.to_vec())
    }
}

impl From<&Array> for Index {
    /// An i64 array becomes [`Index::Tensor`], a bool array [`Index::Mask`].
    fn from(k: &Array) -> Index {
        if k.dtype() == DType::Bool {
            Index::Mask(k.clone())
        } else {
            Index::Tensor(k.clone())
        }
    }
}

/// Resolves a possibly negative index against `size`.
#[track_caller]
fn resolve(op: &str, i: i64, size: usize, dim: usize) -> usize {
    let n = size as i64;
    if i >= n || i < -n {
        fail(
            op,
            format_args!("index {i} is out of bounds for dim {dim} of size {size}"),
        )
    }
    (if i < 0 { i + n } else { i }) as usize
}

/// Resolves every index of a list (a plain loop, so the caller's line survives).
#[track_caller]
fn resolve_list(op: &str, list: &[i64], size: usize, dim: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(list.len());
    for &i in list {
        out.push(resolve(op, i, size, dim));
    }
    out
}

/// Checks an index of the explicit-index ops (`index_select`, `index_add`, `gather`,
/// `scatter`, `scatter_add`), which take positions in `0..size` as PyTorch's do: a negative
/// one is refused, not counted from the end (only [`Index`] reads and writes, `x[k]`, count
/// from the end, like Python indexing).
#[track_caller]
fn resolve_position(op: &str, i: i64, size: usize, dim: usize) -> usize {
    if i < 0 || i >= size as i64 {
        fail(
            op,
            format_args!(
                "index {i} is out of range for dim {dim} of size {size} (this op takes \
                 positions in 0..{size}; negative positions count from the end only in \
                 Index reads and writes)"
            ),
        )
    }
    i as usize
}

/// [`resolve_position`] over a list.
#[track_caller]
fn resolve_positions(op: &str, list: &[i64], size: usize, dim: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(list.len());
    for &i in list {
        out.push(resolve_position(op, i, size, dim));
    }
    out
}

/// Checks every element of an i64 index array against `size` (see [`resolve_position`]).
#[track_caller]
fn check_range(op: &str, index: &Array, size: usize, dim: usize) {
    // a device index is checked on a host copy (the host waits for it)
    let host = index.to_host(op);
    for &i in host.values::<i64>(op).iter() {
        resolve_position(op, i, size, dim);
    }
}

#[track_caller]
fn index_list(op: &str, index: &Array) -> Vec<i64> {
    if index.dtype() != DType::I64 {
        crate::error::dtype_fail(op, index.dtype(), "an i64 index array")
    }
    if index.ndim() != 1 {
        fail(
            op,
            format_args!(
                "expects a 1-d index array, got shape {}",
                fmt_shape(index.shape())
            ),
        )
    }
    index.to_vec::<i64>()
}

/// Sizes before, at and after `dim`.
pub(crate) fn split_at_dim(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (
        shape[..dim].iter().product(),
        shape[dim],
        shape[dim + 1..].iter().product(),
    )
}

impl Array {
    /// The entries at `index` (1-d i64) along `dim`.
    #[track_caller]
    pub fn index_select(&self, dim: impl Dim, index: &Array) -> Array {
        let d = dim.resolve(self.ndim(), "index_select");
        let idx = index_list("index_select", index);
        let mut shape: Shape = self.shape().into();
        shape[d] = idx.len();
        let mut out = Array::empty_on(&shape, self.dtype(), self.device());
        self.index_select_into(d, index, &mut out);
        out
    }

    /// [`index_select`](Array::index_select) into `out`.
    #[track_caller]
    pub fn index_select_into(&self, dim: impl Dim, index: &Array, out: &mut Array) {
        let d = dim.resolve(self.ndim(), "index_select");
        let idx = index_list("index_select", index);
        let (outer, size, inner) = split_at_dim(self.shape(), d);
        let rows = resolve_positions("index_select", &idx, size, d);
        let mut shape: Shape = self.shape().into();
        shape[d] = idx.len();
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !index.device().is_cpu() {
            let index = crate::cuda::index::broadcast_index(index, d, &shape);
            return crate::cuda::index::gather(self, d, &index, out, "index_select_into");
        }
        fn kernel<T: Element>(
            a: &Array,
            rows: &[usize],
            shape: &[usize],
            outer: usize,
            size: usize,
            inner: usize,
            out: &mut Array,
        ) {
            let src = a.values::<T>("index_select");
            let dst = out.out_slice::<T>(shape, "index_select_into");
            let mut w = 0;
            for o in 0..outer {
                for &r in rows {
                    let s = (o * size + r) * inner;
                    dst[w..w + inner].copy_from_slice(&src[s..s + inner]);
                    w += inner;
                }
            }
        }
        dispatch_any!(self.dtype(), T => kernel::<T>(self, &rows, &shape, outer, size, inner, out))
    }

    /// `out[i][j][k] = self[index[i][j][k]][j][k]` for `dim = 0` (and likewise for other
    /// dims). `index` has as many dims as `self`, and no dim larger except `dim`.
    #[track_caller]
    pub fn gather(&self, dim: impl Dim, index: &Array) -> Array {
        let mut out = Array::empty_on(index.shape(), self.dtype(), self.device());
        self.gather_into(dim, index, &mut out);
        out
    }

    /// [`gather`](Array::gather) into `out` (shaped like `index`).
    #[track_caller]
    pub fn gather_into(&self, dim: impl Dim, index: &Array, out: &mut Array) {
        let d = dim.resolve(self.ndim(), "gather");
        check_scatter_index("gather", self, d, index, None);
        check_range("gather", index, self.shape()[d], d);
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !index.device().is_cpu() {
            return crate::cuda::index::gather(self, d, index, out, "gather_into");
        }
        fn kernel<T: Element>(a: &Array, d: usize, index: &Array, out: &mut Array) {
            let src = a.storage_slice::<T>("gather");
            let idx = index.storage_slice::<i64>("gather");
            let dst = out.out_slice::<T>(index.shape(), "gather_into");
            let mut base: Strides = a.strides().into();
            base[d] = 0;
            let stride = a.strides()[d];
            let mut w = 0;
            for_each_offsets(
                index.shape(),
                [&base, index.strides()],
                [a.offset(), index.offset()],
                |[oa, oi]| {
                    let i = idx[oi] as usize; // checked by check_range
                    dst[w] = src[(oa as isize + i as isize * stride) as usize];
                    w += 1;
                },
            );
        }
        dispatch_any!(self.dtype(), T => kernel::<T>(self, d, index, out))
    }

    /// A copy of `self` with `src` written at the positions `index` names along `dim`
    /// (the inverse of [`gather`](Array::gather)); repeated positions keep the last write.
    #[track_caller]
    pub fn scatter(&self, dim: impl Dim, index: &Array, src: &Array) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.scatter_impl(dim, index, src, false, "scatter", &mut out);
        out
    }

    /// [`scatter`](Array::scatter) into `out` (shaped like `self`).
    #[track_caller]
    pub fn scatter_into(&self, dim: impl Dim, index: &Array, src: &Array, out: &mut Array) {
        self.scatter_impl(dim, index, src, false, "scatter", out)
    }

    /// Like [`scatter`](Array::scatter) but adds `src` into the positions, summing repeats
    /// (in the index's row-major order; on a GPU in no fixed order unless
    /// [`set_deterministic`](crate::set_deterministic) is on).
    #[track_caller]
    pub fn scatter_add(&self, dim: impl Dim, index: &Array, src: &Array) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.scatter_impl(dim, index, src, true, "scatter_add", &mut out);
        out
    }

    /// [`scatter_add`](Array::scatter_add) into `out` (shaped like `self`).
    #[track_caller]
    pub fn scatter_add_into(&self, dim: impl Dim, index: &Array, src: &Array, out: &mut Array) {
        self.scatter_impl(dim, index, src, true, "scatter_add", out)
    }

    #[track_caller]
    fn scatter_impl(
        &self,
        dim: impl Dim,
        index: &Array,
        src: &Array,
        add: bool,
        op: &str,
        out: &mut Array,
    ) {
        let d = dim.resolve(self.ndim(), op);
        crate::error::same_dtype(op, self.dtype(), src.dtype());
        check_scatter_index(op, self, d, index, Some(src));
        check_range(op, index, self.shape()[d], d);
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !index.device().is_cpu() || !src.device().is_cpu() {
            return match add {
                true => crate::cuda::index::scatter_add(self, d, index, src, out, op),
                false => crate::cuda::index::scatter(self, d, index, src, out, op),
            };
        }
        // Start from a copy of `self` in `out`, then write through the index.
        self.contiguous_into(out);
        fn kernel<T: Element>(
            out: &mut Array,
            d: usize,
            index: &Array,
            src: &Array,
            combine: impl Fn(T, T) -> T,
            op: &str,
        ) {
            let stride = out.strides()[d];
            let mut base: Strides = out.strides().into();
            base[d] = 0;
            let shape: Shape = out.shape().into();
            let s = src.storage_slice::<T>(op);
            let idx = index.storage_slice::<i64>(op);
            let dst = out.out_slice::<T>(&shape, op);
            for_each_offsets(
                index.shape(),
                [&base, index.strides(), src.strides()],
                [0, index.offset(), src.offset()],
                |[oo, oi, os]| {
                    let at = (oo as isize + idx[oi] as isize * stride) as usize;
                    dst[at] = combine(dst[at], s[os]);
                },
            );
        }
        if add {
            dispatch_number!(self.dtype(), op, T => kernel::<T>(out, d, index, src, T::wrapping_add, op))
        } else {
            dispatch_any!(self.dtype(), T => kernel::<T>(out, d, index, src, |_, b| b, op))
        }
    }

    /// A copy of `self` with `src` added at rows `index` (1-d i64) along `dim`:
    /// `out[.., index[j], ..] += src[.., j, ..]`, repeats summed in order of `j` (on a GPU in
    /// no fixed order unless [`set_deterministic`](crate::set_deterministic) is on).
    #[track_caller]
    pub fn index_add(&self, dim: impl Dim, index: &Array, src: &Array) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.index_add_into(dim, index, src, &mut out);
        out
    }

    /// [`index_add`](Array::index_add) into `out` (shaped like `self`).
    #[track_caller]
    pub fn index_add_into(&self, dim: impl Dim, index: &Array, src: &Array, out: &mut Array) {
        let d = dim.resolve(self.ndim(), "index_add");
        let idx = index_list("index_add", index);
        crate::error::same_dtype("index_add", self.dtype(), src.dtype());
        let mut expected: Shape = self.shape().into();
        expected[d] = idx.len();
        if src.shape() != expected.as_slice() {
            fail("index_add", format_args!(
                "source of shape {} does not match {} (shape {} with dim {d} set to the {} indices)",
                fmt_shape(src.shape()), fmt_shape(&expected), fmt_shape(self.shape()), idx.len()))
        }
        let (outer, size, inner) = split_at_dim(self.shape(), d);
        let rows = resolve_positions("index_add", &idx, size, d);
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !index.device().is_cpu() || !src.device().is_cpu() {
            return crate::cuda::index::index_add(self, d, index, src, out, "index_add_into");
        }
        self.contiguous_into(out);
        fn kernel<T: Number>(
            out: &mut Array,
            src: &Array,
            rows: &[usize],
            outer: usize,
            size: usize,
            inner: usize,
        ) {
            let s = src.values::<T>("index_add");
            let shape: Shape = out.shape().into();
            let dst = out.out_slice::<T>(&shape, "index_add_into");
            let mut r = 0;
            for o in 0..outer {
                for &row in rows {
                    let at = (o * size + row) * inner;
                    for (d, &v) in dst[at..at + inner].iter_mut().zip(&s[r..r + inner]) {
                        *d = d.wrapping_add(v);
                    }
                    r += inner;
                }
            }
        }
        dispatch_number!(self.dtype(), "index_add", T => kernel::<T>(out, src, &rows, outer, size, inner));
    }

    /// The row-major positions where a bool array is true (read on the host: a mask on a
    /// device is copied back, which waits for the work queued on it).
    #[track_caller]
    pub fn mask_positions(&self) -> Vec<usize> {
        self.expect_bool("mask_positions");
        self.to_host("mask_positions")
            .values::<bool>("mask_positions")
            .iter()
            .enumerate()
            .filter(|(_, &b)| b)
            .map(|(i, _)| i)
            .collect()
    }

    /// The row-major positions where a bool array is true, as a 1-d i64 array (NumPy's
    /// `flatnonzero`).
    #[track_caller]
    pub fn flat_nonzero(&self) -> Array {
        positions_on(self.device(), self.mask_positions(), "flat_nonzero")
    }

    /// The rows an [`Index`] names along dim 0, as a 1-d position list, or `None` for an
    /// elementwise mask.
    #[track_caller]
    pub fn index_rows(&self, index: &Index, op: &str) -> Option<Vec<usize>> {
        if self.ndim() == 0 {
            fail(op, "cannot index a 0-d array")
        }
        let n = self.shape()[0];
        match index {
            Index::Single(k) => Some(vec![resolve(op, *k, n, 0)]),
            Index::List(ks) => Some(resolve_list(op, ks, n, 0)),
            Index::Tensor(t) => Some(resolve_list(op, &index_list(op, t), n, 0)),
            Index::Mask(m) => {
                m.expect_bool(op);
                if m.shape() == self.shape() {
                    None
                } else if m.ndim() == 1 && m.shape()[0] == n {
                    Some(m.mask_positions())
                } else {
                    fail(op, format_args!(
                        "mask of shape {} must have the array's shape {} or be 1-d over its {} rows",
                        fmt_shape(m.shape()), fmt_shape(self.shape()), n))
                }
            }
        }
    }

    /// Reads what an [`Index`] addresses (`x[k]`): a row (dim dropped), rows, or, for an
    /// elementwise mask, the selected elements as a 1-d array.
    #[track_caller]
    pub fn index(&self, index: impl Into<Index>) -> Array {
        let index = index.into();
        match (&index, self.index_rows(&index, "index")) {
            (Index::Single(_), Some(rows)) => self.select(0usize, rows[0]),
            (_, Some(rows)) => {
                self.index_select(0usize, &positions_on(self.device(), rows, "index"))
            }
            (Index::Mask(m), None) => self
                .reshape(&[self.numel()])
                .index_select(0usize, &m.flat_nonzero()),
            _ => unreachable!("only masks address elements"),
        }
    }

    /// A copy of `self` with `values` written where `index` points (the seed's `x[k] = v`).
    /// `values` broadcasts to the addressed region (a row for [`Index::Single`], `[n, ...]`
    /// rows for lists and index arrays); for an elementwise mask it is one value or one value
    /// per selected element.
    ///
    /// ```
    /// use ferrograd_array::{Array, Index};
    /// let x = Array::zeros(&[3, 2], ferrograd_array::DType::F32);
    /// let v = Array::from_vec(vec![1.0f32, 2.0], &[2]);
    /// let y = x.index_put(&Index::List(vec![0, 2]), &v);
    /// assert_eq!(y.to_vec::<f32>(), vec![1.0, 2.0, 0.0, 0.0, 1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn index_put(&self, index: &Index, values: &Array) -> Array {
        let mut out = Array::empty(self.shape(), self.dtype());
        self.index_put_impl(index, values, false, &mut out);
        out
    }

    /// Like [`index_put`](Array::index_put) but adds `values` into the addressed places
    /// (repeated rows sum).
    #[track_caller]
    pub fn index_put_add(&self, index: &Index, values: &Array) -> Array {
        let mut out = Array::empty(self.shape(), self.dtype());
        self.index_put_impl(index, values, true, &mut out);
        out
    }

    #[track_caller]
    fn index_put_impl(&self, index: &Index, values: &Array, add: bool, out: &mut Array) {
        let op = if add { "index_put_add" } else { "index_put" };
        crate::error::same_dtype(op, self.dtype(), values.dtype());
        // The addressed positions of the flattened array, and the values for them.
        let (positions, vals): (Vec<usize>, Array) = match self.index_rows(index, op) {
            Some(rows) => {
                let mut region: Shape = self.shape().into();
                region[0] = rows.len();
                let vals = match index {
                    Index::Single(_) => {
                        broadcast_values(op, values, &self.shape()[1..]).unsqueeze(0usize)
                    }
                    _ => broadcast_values(op, values, &region),
                };
                let inner: usize = self.shape()[1..].iter().product();
                (
                    rows.iter()
                        .flat_map(|&r| r * inner..(r + 1) * inner)
                        .collect(),
                    vals,
                )
            }
            None => {
                let Index::Mask(mask) = index else {
                    unreachable!("only masks address elements")
                };
                let positions = mask.mask_positions();
                let count = positions.len();
                if values.numel() == 1 {
                    (positions, values.reshape(&[1]).expand(&[count]))
                } else if values.numel() == count {
                    (positions, values.reshape(&[count]))
                } else {
                    fail(op, format_args!(
                        "a mask selecting {count} elements needs 1 value or {count} values, got shape {}",
                        fmt_shape(values.shape())))
                }
            }
        };
        if !self.device().is_cpu() {
            return self.put_by_scatter(positions, &vals, add, op, out);
        }
        self.contiguous_into(out);
        fn kernel<T: Element>(
            out: &mut Array,
            positions: &[usize],
            vals: &Array,
            combine: impl Fn(T, T) -> T,
        ) {
            let v = vals.values::<T>("index_put");
            let shape: Shape = out.shape().into();
            let dst = out.out_slice::<T>(&shape, "index_put_into");
            // In order, so repeated positions keep the last write (or sum, when adding).
            for (&p, &x) in positions.iter().zip(v.iter()) {
                dst[p] = combine(dst[p], x);
            }
        }
        if add {
            dispatch_number!(self.dtype(), op, T => kernel::<T>(out, &positions, &vals, T::wrapping_add))
        } else {
            dispatch_any!(self.dtype(), T => kernel::<T>(out, &positions, &vals, |_, b| b))
        }
    }

    /// The write of [`index_put_impl`](Array::index_put_impl) as a device runs it: a
    /// scatter (or scatter-add) of `vals` into the flattened array at the flat `positions`
    /// (repeated positions: the last write wins, or all add up), into `out`'s buffer when
    /// it has the room. The host loop is twice as fast on the host; this form is tested
    /// against it there.
    #[track_caller]
    fn put_by_scatter(
        &self,
        positions: Vec<usize>,
        vals: &Array,
        add: bool,
        op: &str,
        out: &mut Array,
    ) {
        let (count, numel) = (positions.len(), self.numel());
        let index = positions_on(self.device(), positions, op);
        let flat = self.reshape(&[numel]);
        let vals = vals.reshape(&[count]);
        let mut written = match std::mem::replace(out, Array::empty(&[0], self.dtype())) {
            o if o.numel() == numel && o.is_contiguous() => o.reshape(&[numel]),
            _ => Array::empty_on(&[numel], self.dtype(), self.device()),
        };
        match add {
            true => flat.scatter_add_into(0usize, &index, &vals, &mut written),
            false => flat.scatter_into(0usize, &index, &vals, &mut written),
        }
        *out = written.reshape(self.shape());
    }

    /// [`index_put`](Array::index_put) into `out` (shaped like `self`).
    #[track_caller]
    pub fn index_put_into(&self, index: &Index, values: &Array, out: &mut Array) {
        self.index_put_impl(index, values, false, out)
    }

    /// [`index_put_add`](Array::index_put_add) into `out` (shaped like `self`).
    #[track_caller]
    pub fn index_put_add_into(&self, index: &Index, values: &Array, out: &mut Array) {
        self.index_put_impl(index, values, true, out)
    }

    /// Joins arrays along an existing dim; all other dims must match.
    #[track_caller]
    pub fn cat(arrays: &[Array], dim: impl Dim) -> Array {
        let Some(first) = arrays.first() else {
            fail("cat", "needs at least one array")
        };
        let d = dim.resolve(first.ndim(), "cat");
        let shape = cat_shape(arrays, d);
        let mut out = Array::empty_on(&shape, first.dtype(), first.device());
        cat_kernel(arrays, d, &shape, &mut out);
        out
    }

    /// [`cat`](Array::cat) into `out`.
    #[track_caller]
    pub fn cat_into<A: std::borrow::Borrow<Array>>(arrays: &[A], dim: impl Dim, out: &mut Array) {
        let Some(first) = arrays.first() else {
            fail("cat", "needs at least one array")
        };
        let d = dim.resolve(first.borrow().ndim(), "cat");
        cat_kernel(arrays, d, &cat_shape(arrays, d), out)
    }

    /// [`cat`](Array::cat) written into `out`'s elements from `start` on (as many as the
    /// concatenation has, in its row-major order), the rest of `out` kept: a stack built
    /// piece by piece as its pieces are made, each written into its rows. `out` is made the
    /// only handle on a contiguous buffer first (copied when it is a view or shared, as
    /// every `*_into` output is), so other arrays never see the write. Host arrays only.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType};
    /// let mut stack = Array::zeros(&[3, 2], DType::F32);
    /// let (a, b) = (
    ///     Array::from_vec(vec![1.0f32], &[1, 1]),
    ///     Array::from_vec(vec![2.0f32], &[1, 1]),
    /// );
    /// Array::cat_into_at(&[a, b], 1, &mut stack, 2); // row 1
    /// assert_eq!(stack.to_vec::<f32>(), [0.0, 0.0, 1.0, 2.0, 0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn cat_into_at<A: std::borrow::Borrow<Array>>(
        arrays: &[A],
        dim: impl Dim,
        out: &mut Array,
        start: usize,
    ) {
        let Some(first) = arrays.first() else {
            fail("cat_into_at", "needs at least one array")
        };
        let d = dim.resolve(first.borrow().ndim(), "cat_into_at");
        let shape = cat_shape(arrays, d);
        let n: usize = shape.iter().product();
        let dtype = first.borrow().dtype();
        if out.dtype() != dtype || start + n > out.numel() {
            fail(
                "cat_into_at",
                format_args!(
                    "the concatenation ({} {}) does not fit from element {start} of an output \
                     of {} {}",
                    dtype,
                    fmt_shape(&shape),
                    out.dtype(),
                    fmt_shape(out.shape())
                ),
            )
        }
        if !out.device().is_cpu() || arrays.iter().any(|a| !a.borrow().device().is_cpu()) {
            fail("cat_into_at", "takes host arrays only")
        }
        out.make_unique();
        dispatch_any!(dtype, T => {
            let all = out.unique_slice_mut::<T>();
            cat_fill::<T, A>(arrays, d, &shape, &mut all[start..start + n])
        })
    }

    /// Zeros of size `size` along `dim`, with `self` placed from `start`: the adjoint of
    /// [`narrow`](Array::narrow), and the gradient of a slice.
    ///
    /// ```
    /// # use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![1.0f32, 2.0], &[1, 2]);
    /// assert_eq!(x.pad_narrow(1, 1, 4).to_vec::<f32>(), [0.0, 1.0, 2.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn pad_narrow(&self, dim: impl Dim, start: usize, size: usize) -> Array {
        let d = dim.resolve(self.ndim(), "pad_narrow");
        let mut shape: Shape = self.shape().into();
        shape[d] = size;
        let mut out = Array::empty_on(&shape, self.dtype(), self.device());
        self.pad_narrow_into(d, start, size, &mut out);
        out
    }

    /// [`pad_narrow`](Array::pad_narrow) into `out`.
    #[track_caller]
    pub fn pad_narrow_into(&self, dim: impl Dim, start: usize, size: usize, out: &mut Array) {
        let d = dim.resolve(self.ndim(), "pad_narrow");
        let len = self.shape()[d];
        if start + len > size {
            fail(
                "pad_narrow",
                format_args!(
                    "{} placed at {start} along dim {d} does not fit in size {size}",
                    fmt_shape(self.shape())
                ),
            )
        }
        let mut shape: Shape = self.shape().into();
        shape[d] = size;
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            return crate::cuda::index::pad_narrow(self, d, start, &shape, out, "pad_narrow_into");
        }
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        fn kernel<T: Element>(
            x: &Array,
            (outer, inner, len, start, size): (usize, usize, usize, usize, usize),
            shape: &[usize],
            out: &mut Array,
        ) {
            let src = x.values::<T>("pad_narrow");
            let dst = out.out_slice::<T>(shape, "pad_narrow_into");
            let (block, row) = (len * inner, size * inner);
            for o in 0..outer {
                let r = &mut dst[o * row..(o + 1) * row];
                r[..start * inner].fill(T::default());
                r[start * inner..start * inner + block]
                    .copy_from_slice(&src[o * block..(o + 1) * block]);
                r[start * inner + block..].fill(T::default());
            }
        }
        let sizes = (outer, inner, len, start, size);
        dispatch_any!(self.dtype(), T => kernel::<T>(self, sizes, &shape, out))
    }

    /// Joins arrays of one shape along a new dim.
    #[track_caller]
    pub fn stack(arrays: &[Array], dim: impl Dim) -> Array {
        let Some(first) = arrays.first() else {
            fail("stack", "needs at least one array")
        };
        let d = dim.resolve(first.ndim() + 1, "stack");
        for a in arrays {
            if a.shape() != first.shape() {
                fail(
                    "stack",
                    format_args!(
                        "shapes {} and {} differ",
                        fmt_shape(first.shape()),
                        fmt_shape(a.shape())
                    ),
                )
            }
        }
        let parts: Vec<Array> = arrays.iter().map(|a| a.unsqueeze(d)).collect();
        Array::cat(&parts, d)
    }

    /// [`stack`](Array::stack) into `out`.
    #[track_caller]
    pub fn stack_into(arrays: &[Array], dim: impl Dim, out: &mut Array) {
        let Some(first) = arrays.first() else {
            fail("stack", "needs at least one array")
        };
        let d = dim.resolve(first.ndim() + 1, "stack");
        let parts: Vec<Array> = arrays.iter().map(|a| a.unsqueeze(d)).collect();
        Array::cat_into(&parts, d, out)
    }

    /// Views of consecutive pieces of `size` along `dim` (the last may be shorter; an empty
    /// dim gives one empty piece, as in PyTorch).
    #[track_caller]
    pub fn split(&self, size: usize, dim: impl Dim) -> Vec<Array> {
        let d = dim.resolve(self.ndim(), "split");
        if size == 0 {
            fail("split", "piece size must be positive")
        }
        let n = self.shape()[d];
        if n == 0 {
            return vec![self.narrow(d, 0, 0)];
        }
        (0..n)
            .step_by(size)
            .map(|s| self.narrow(d, s, size.min(n - s)))
            .collect()
    }

    /// Views of pieces of the given sizes along `dim`; the sizes must add up to its size.
    #[track_caller]
    pub fn split_sizes(&self, sizes: &[usize], dim: impl Dim) -> Vec<Array> {
        let d = dim.resolve(self.ndim(), "split_sizes");
        if sizes.iter().sum::<usize>() != self.shape()[d] {
            fail(
                "split_sizes",
                format_args!(
                    "sizes {sizes:?} do not add up to dim {d} of shape {}",
                    fmt_shape(self.shape())
                ),
            )
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&s| {
                let v = self.narrow(d, start, s);
                start += s;
                v
            })
            .collect()
    }

    /// `chunks` views of (nearly) equal size along `dim`, as PyTorch's `chunk` (fewer where
    /// the size does not divide so; an empty dim gives `chunks` empty pieces).
    #[track_caller]
    pub fn chunk(&self, chunks: usize, dim: impl Dim) -> Vec<Array> {
        let d = dim.resolve(self.ndim(), "chunk");
        if chunks == 0 {
            fail("chunk", "number of chunks must be positive")
        }
        if self.shape()[d] == 0 {
            return vec![self.narrow(d, 0, 0); chunks];
        }
        let size = self.shape()[d].div_ceil(chunks).max(1);
        self.split(size, d)
    }

    /// Tiles the array: dim `i` repeats `repeats[i]` times (extra leading repeats add dims).
    #[track_caller]
    pub fn repeat(&self, repeats: &[usize]) -> Array {
        self.repeat_view(repeats).copy()
    }

    /// [`repeat`](Array::repeat) into `out`.
    #[track_caller]
    pub fn repeat_into(&self, repeats: &[usize], out: &mut Array) {
        self.repeat_view(repeats).contiguous_into(out)
    }

    /// The repeated array as a (non-contiguous) view with stride-0 tiles.
    #[track_caller]
    fn repeat_view(&self, repeats: &[usize]) -> Array {
        if repeats.len() < self.ndim() {
            fail(
                "repeat",
                format_args!(
                    "needs at least {} repeat counts for shape {}, got {repeats:?}",
                    self.ndim(),
                    fmt_shape(self.shape())
                ),
            )
        }
        let lead = repeats.len() - self.ndim();
        let mut base: Shape = std::iter::repeat_n(1, lead).collect();
        base.extend_from_slice(self.shape());
        // View as [1, n0, 1, n1, ...] and expand to [r0, n0, r1, n1, ...]; merging the pairs
        // (the reshape the caller's copy does) gives the tiled array.
        let mut inter: Shape = Shape::new();
        let mut expanded: Shape = Shape::new();
        for (&n, &r) in base.iter().zip(repeats) {
            inter.extend_from_slice(&[1, n]);
            expanded.extend_from_slice(&[r, n]);
        }
        let out: Shape = base.iter().zip(repeats).map(|(&n, &r)| n * r).collect();
        self.reshape(&inter).expand(&expanded).reshape(&out)
    }

    /// Reverses the order along each of `dims` (a copy).
    #[track_caller]
    pub fn flip(&self, dims: impl crate::Dims) -> Array {
        let mut out = Array::empty_on(self.shape(), self.dtype(), self.device());
        self.flip_into(dims, &mut out);
        out
    }

    /// [`flip`](Array::flip) into `out`.
    #[track_caller]
    pub fn flip_into(&self, dims: impl crate::Dims, out: &mut Array) {
        let dims = dims.resolve_all(self.ndim(), "flip");
        let mut strides: Strides = self.strides().into();
        let mut offset = self.offset() as isize;
        for &d in &dims {
            if self.shape()[d] > 0 {
                offset += (self.shape()[d] as isize - 1) * strides[d];
            }
            strides[d] = -strides[d];
        }
        self.with_layout(self.shape().into(), strides, offset as usize)
            .contiguous_into(out)
    }

    /// For a 1-d array, the square matrix with it on diagonal `k`; for a matrix, a copy of
    /// its diagonal `k` (see [`diagonal`](Array::diagonal) for a view).
    #[track_caller]
    pub fn diag(&self, k: i64) -> Array {
        let shape = match self.ndim() {
            1 => {
                let n = self.shape()[0] + k.unsigned_abs() as usize;
                vec![n, n]
            }
            2 => vec![self.diagonal(k).numel()],
            _ => fail(
                "diag",
                format_args!("expects 1 or 2 dims, got shape {}", fmt_shape(self.shape())),
            ),
        };
        let mut out = Array::empty_on(&shape, self.dtype(), self.device());
        self.diag_into(k, &mut out);
        out
    }

    /// [`diag`](Array::diag) into `out`.
    #[track_caller]
    pub fn diag_into(&self, k: i64, out: &mut Array) {
        match self.ndim() {
            1 => {
                let n = self.shape()[0] + k.unsigned_abs() as usize;
                let (r0, c0) = if k >= 0 {
                    (0, k as usize)
                } else {
                    ((-k) as usize, 0)
                };
                #[cfg(feature = "cuda")]
                if !self.device().is_cpu() {
                    let (op, len) = ("diag", self.shape()[0]);
                    crate::cuda::index::zeros_into(&[n, n], self.dtype(), self.device(), out, op);
                    let diagonal = (r0 * n + c0, (n + 1) as isize);
                    return crate::cuda::index::write_view(
                        self,
                        out,
                        &[len],
                        &[diagonal.1],
                        diagonal.0,
                        op,
                    );
                }
                fn kernel<T: Element>(v: &Array, n: usize, r0: usize, c0: usize, out: &mut Array) {
                    let src = v.values::<T>("diag");
                    let dst = out.out_slice::<T>(&[n, n], "diag_into");
                    dst.iter_mut().for_each(|d| *d = T::default());
                    for (i, &x) in src.iter().enumerate() {
                        dst[(r0 + i) * n + c0 + i] = x;
                    }
                }
                dispatch_any!(self.dtype(), T => kernel::<T>(self, n, r0, c0, out))
            }
            2 => self.diagonal(k).contiguous_into(out),
            _ => fail(
                "diag",
                format_args!("expects 1 or 2 dims, got shape {}", fmt_shape(self.shape())),
            ),
        }
    }

    /// The vectors of the last dim `[.., len]` placed on diagonal `k` of square matrices
    /// `[.., n, n]`, `n = len + |k|`, zeros elsewhere (PyTorch's `torch.diag_embed`).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let v = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(v.diag_embed(0).to_vec::<f32>(), vec![1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 4.0]);
    /// ```
    #[track_caller]
    pub fn diag_embed(&self, k: i64) -> Array {
        if self.ndim() == 0 {
            fail("diag_embed", "expects at least 1 dim, got a 0-d array")
        }
        let len = self.shape()[self.ndim() - 1];
        let n = len + k.unsigned_abs() as usize;
        let mut shape: Vec<usize> = self.shape()[..self.ndim() - 1].to_vec();
        shape.extend([n, n]);
        let d = shape.len();
        zeros_on(&shape, self.dtype(), self.device(), "diag_embed").diagonal_scatter(
            self,
            k,
            d - 2,
            d - 1,
        )
    }

    /// A copy of `self` with diagonal `k` of dims `dim1`, `dim2` (as
    /// [`diagonal_dims`](Array::diagonal_dims) reads it) replaced by `src`, which has that
    /// diagonal's shape (PyTorch's `torch.diagonal_scatter`).
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::zeros(&[2, 3], ferrograd_array::DType::F32);
    /// let d = Array::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert_eq!(a.diagonal_scatter(&d, 1, 0usize, 1usize).to_vec::<f32>(), vec![0.0, 1.0, 0.0, 0.0, 0.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn diagonal_scatter(&self, src: &Array, k: i64, dim1: impl Dim, dim2: impl Dim) -> Array {
        let view = self.diagonal_dims(k, dim1, dim2);
        if view.shape() != src.shape() || src.dtype() != self.dtype() {
            fail(
                "diagonal_scatter",
                format_args!(
                    "src of shape {} ({:?}) does not fit the diagonal of shape {} ({:?})",
                    fmt_shape(src.shape()),
                    src.dtype(),
                    fmt_shape(view.shape()),
                    self.dtype()
                ),
            )
        }
        let mut out = self.copy();
        let (d1, d2) = (
            dim1.resolve(self.ndim(), "diagonal_scatter"),
            dim2.resolve(self.ndim(), "diagonal_scatter"),
        );
        let (vshape, vstrides, voffset) = crate::views::diagonal_layout(
            out.shape(),
            &crate::layout::contiguous_strides(out.shape()),
            0,
            k,
            d1,
            d2,
        );
        #[cfg(feature = "cuda")]
        if !out.device().is_cpu() || !src.device().is_cpu() {
            let op = "diagonal_scatter";
            crate::cuda::index::write_view(src, &mut out, &vshape, &vstrides, voffset, op);
            return out;
        }
        fn kernel<T: Element>(
            src: &Array,
            out: &mut Array,
            vshape: &[usize],
            vstrides: &[isize],
            voffset: usize,
        ) {
            let values = src.values::<T>("diagonal_scatter");
            let shape = out.shape().to_vec();
            let dst = out.out_slice::<T>(&shape, "diagonal_scatter");
            let src_strides = crate::layout::contiguous_strides(vshape);
            for_each_offsets(vshape, [&src_strides, vstrides], [0, voffset], |[i, o]| {
                dst[o] = values[i];
            });
        }
        dispatch_any!(self.dtype(), T => kernel::<T>(src, &mut out, &vshape, &vstrides, voffset));
        out
    }

    /// The lower triangle of the last two dims (on and below diagonal `k`), zeros elsewhere.
    #[track_caller]
    pub fn tril(&self, k: i64) -> Array {
        self.triangle(k, true, "tril")
    }

    /// The upper triangle of the last two dims (on and above diagonal `k`), zeros elsewhere.
    #[track_caller]
    pub fn triu(&self, k: i64) -> Array {
        self.triangle(k, false, "triu")
    }

    /// [`tril`](Array::tril) into `out`.
    #[track_caller]
    pub fn tril_into(&self, k: i64, out: &mut Array) {
        let keep = self.triangle_mask(k, true, "tril");
        Array::where_cond_into(&keep, self, &Array::zeros(&[], self.dtype()), out)
    }

    /// [`triu`](Array::triu) into `out`.
    #[track_caller]
    pub fn triu_into(&self, k: i64, out: &mut Array) {
        let keep = self.triangle_mask(k, false, "triu");
        Array::where_cond_into(&keep, self, &Array::zeros(&[], self.dtype()), out)
    }

    #[track_caller]
    fn triangle(&self, k: i64, lower: bool, op: &str) -> Array {
        let keep = self.triangle_mask(k, lower, op);
        Array::where_cond(&keep, self, &Array::zeros(&[], self.dtype()))
    }

    /// True on and below (`lower`) or on and above diagonal `k` of the last two dims.
    #[track_caller]
    fn triangle_mask(&self, k: i64, lower: bool, op: &str) -> Array {
        if self.ndim() < 2 {
            fail(
                op,
                format_args!(
                    "expects at least 2 dims, got shape {}",
                    fmt_shape(self.shape())
                ),
            )
        }
        let (r, c) = (self.shape()[self.ndim() - 2], self.shape()[self.ndim() - 1]);
        let rows = Array::arange(0.0, r as f64, 1.0, DType::I64).unsqueeze(1usize);
        let cols = Array::arange(0.0, c as f64, 1.0, DType::I64).unsqueeze(0usize);
        let diff = cols.sub(&rows); // j - i
        let mask = if lower {
            diff.le_scalar(k as f64)
        } else {
            diff.ge_scalar(k as f64)
        };
        // (built on the host, r·c bools; moved to a GPU input's device)
        mask.to_device(self.device())
            .unwrap_or_else(|e| fail(op, e))
    }
}

/// Zeros of `shape` on `device`.
#[track_caller]
fn zeros_on(shape: &[usize], dtype: DType, device: crate::Device, op: &str) -> Array {
    #[cfg(feature = "cuda")]
    if !device.is_cpu() {
        let mut out = Array::empty_on(shape, dtype, device);
        crate::cuda::index::zeros_into(shape, dtype, device, &mut out, op);
        return out;
    }
    let _ = (device, op);
    Array::zeros(shape, dtype)
}

/// `positions` as a 1-d i64 array on `device` (an index for the gathers and scatters that
/// [`Index`] reads and writes through).
#[track_caller]
fn positions_on(device: crate::Device, positions: Vec<usize>, op: &str) -> Array {
    let n = positions.len();
    let host = Array::from_vec(positions.into_iter().map(|p| p as i64).collect(), &[n]);
    if device.is_cpu() {
        return host;
    }
    host.to_device(device)
        .unwrap_or_else(|e| fail(op, format_args!("moving the positions to {device}: {e}")))
}

/// `values` broadcast to `shape`, with a message naming the op when it cannot be.
#[track_caller]
fn broadcast_values(op: &str, values: &Array, shape: &[usize]) -> Array {
    match crate::broadcast_shapes(values.shape(), shape) {
        Some(s) if s.as_slice() == shape => values.expand(shape),
        _ => fail(
            op,
            format_args!(
                "values of shape {} do not broadcast to the addressed shape {}",
                fmt_shape(values.shape()),
                fmt_shape(shape)
            ),
        ),
    }
}

/// Checks `index` for gather/scatter: i64, same number of dims as `a`, no dim larger than
/// `a`'s (except `dim`) or `src`'s.
#[track_caller]
fn check_scatter_index(op: &str, a: &Array, dim: usize, index: &Array, src: Option<&Array>) {
    if index.dtype() != DType::I64 {
        crate::error::dtype_fail(op, index.dtype(), "an i64 index array")
    }
    let fits = index.ndim() == a.ndim()
        && (0..a.ndim()).all(|i| i == dim || index.shape()[i] <= a.shape()[i])
        && src.is_none_or(|s| {
            s.ndim() == index.ndim() && (0..s.ndim()).all(|i| index.shape()[i] <= s.shape()[i])
        });
    if !fits {
        let src_shape = src
            .map(|s| format!(", source {}", fmt_shape(s.shape())))
            .unwrap_or_default();
        fail(op, format_args!(
            "index of shape {} does not fit array {}{src_shape} along dim {dim} (same number of dims, no larger size)",
            fmt_shape(index.shape()), fmt_shape(a.shape())))
    }
}

/// [`Array::cat`] of checked `arrays` along `d` into `out` (`shape`: the joined shape).
///
/// Each part is read in place, whatever its layout (a transposed one copied by blocks
/// first), and the copy is split as an elementwise op of its size is; a small cat of
/// contiguous parts copies row by row, part by part, as it always did. The batched LSTM of
/// the seed suite, compiled, joins its gates and its steps' inputs and gradients with `cat`
/// (33 steps of [32, 300] and [32, 800] pieces, and the [1056, 800] of their gradients):
/// its step went from 11.6 to 10.5 ms on a 2-core Zen 4 (quietest of 8 alternations) when
/// the copies were split and a strided part no longer went through a copy of its own.
#[track_caller]
fn cat_kernel<A: std::borrow::Borrow<Array>>(
    arrays: &[A],
    d: usize,
    shape: &[usize],
    out: &mut Array,
) {
    #[cfg(feature = "cuda")]
    if arrays.iter().any(|a| !a.borrow().device().is_cpu()) {
        return crate::cuda::index::cat(arrays, d, shape, out, "cat");
    }
    dispatch_any!(arrays[0].borrow().dtype(), T => {
        let dst = out.out_slice::<T>(shape, "cat_into");
        cat_fill::<T, A>(arrays, d, shape, dst)
    })
}

/// The concatenation of `arrays` along `d` (of shape `shape`) into `dst`, its elements in
/// row-major order: contiguous parts copied as slices, others read through their layout;
/// split over the pool when large, in halves on the partner core when it is awake (between
/// the products of a training step).
fn cat_fill<T: Element, A: std::borrow::Borrow<Array>>(
    arrays: &[A],
    d: usize,
    shape: &[usize],
    dst: &mut [T],
) {
    /// The output's elements from `start` on, into `dst`, rows of `total`: a part's `block`
    /// elements (those from dim `d` on) per index of the dims before `d`, read by
    /// `read(part, first element, into)`.
    #[inline(always)]
    fn fill_from<T: Element>(
        blocks: &[usize],
        total: usize,
        start: usize,
        dst: &mut [T],
        read: impl Fn(usize, usize, &mut [T]),
    ) {
        let (mut row, mut at) = match start {
            0 => (0, 0),
            _ => (start / total, start % total),
        };
        // part `p` starts at position `first` of a row
        let (mut p, mut first) = (0, 0);
        let mut i = 0;
        while i < dst.len() {
            // on to the part holding position `at` of the row (past empty parts)
            while first + blocks[p] <= at {
                first += blocks[p];
                p += 1;
            }
            let run = (first + blocks[p] - at).min(dst.len() - i);
            read(p, row * blocks[p] + at - first, &mut dst[i..i + run]);
            i += run;
            at += run;
            if at == total {
                (row, at, p, first) = (row + 1, 0, 0, 0);
            }
        }
    }
    /// `fill(start, into)` over all of `dst`, split as an elementwise op of its size is.
    fn split<T: Element>(dst: &mut [T], fill: &(dyn Fn(usize, &mut [T]) + Sync)) {
        let n = dst.len();
        if crate::par::split(n, crate::elementwise::PARALLEL_MIN) {
            use rayon::prelude::*;
            let chunk = crate::elementwise::CHUNK;
            (dst.par_chunks_mut(chunk).enumerate()).for_each(|(c, d)| fill(c * chunk, d));
        } else if crate::par::split(n, crate::elementwise::PAIR_MIN) {
            crate::partner::halves_if_awake(dst, 16, fill);
        } else {
            fill(0, dst);
        }
    }
    let total: usize = shape[d..].iter().product();
    // contiguous parts (the common case) as slices, with no reader set up per part
    let mut blocks: SmallVec<[usize; 8]> = SmallVec::new();
    let mut slices: SmallVec<[&[T]; 8]> = SmallVec::new();
    for a in arrays {
        let a = a.borrow();
        blocks.push(a.shape()[d..].iter().product());
        if let Some(s) = a.contiguous_slice::<T>("cat") {
            slices.push(s);
        }
    }
    if slices.len() == arrays.len() {
        if dst.len() < crate::elementwise::PAIR_MIN {
            // not split: row by row, part by part (a small cat's fixed cost is most of it)
            let mut w = 0;
            for o in 0..dst.len().checked_div(total).unwrap_or(0) {
                for (s, &b) in slices.iter().zip(&blocks) {
                    dst[w..w + b].copy_from_slice(&s[o * b..(o + 1) * b]);
                    w += b;
                }
            }
        } else {
            split(dst, &|start, dst| {
                fill_from(&blocks, total, start, dst, |p, from, to| {
                    to.copy_from_slice(&slices[p][from..from + to.len()])
                })
            });
        }
        return;
    }
    // others read in place through their layout (a transposed part copied first by
    // blocks: read run by run, its runs are one element long)
    let copies: Vec<Option<Array>> = (arrays.iter())
        .map(|a| {
            let a = a.borrow();
            a.is_transposed_block().then(|| a.copy())
        })
        .collect();
    let sources: Vec<Source<'_, T>> = (arrays.iter().zip(&copies))
        .map(|(a, c)| {
            let a = c.as_ref().unwrap_or(a.borrow());
            Source::of(a, a.shape(), a.numel(), "cat")
        })
        .collect();
    if !dst.is_empty() {
        split(dst, &|start, dst| {
            fill_from(&blocks, total, start, dst, |p, from, to| {
                sources[p].fill(from, to)
            })
        });
    }
}

/// The shape of `arrays` joined along `d`; fails unless they agree in dtype and in every
/// other dim.
#[track_caller]
fn cat_shape<A: std::borrow::Borrow<Array>>(arrays: &[A], d: usize) -> Shape {
    let first = arrays[0].borrow();
    let mut shape: Shape = first.shape().into();
    shape[d] = 0;
    for a in arrays {
        let a = a.borrow();
        crate::error::same_dtype("cat", first.dtype(), a.dtype());
        let same = a.ndim() == first.ndim()
            && (0..a.ndim()).all(|i| i == d || a.shape()[i] == first.shape()[i]);
        if !same {
            fail(
                "cat",
                format_args!(
                    "shapes {} and {} differ outside dim {d}",
                    fmt_shape(first.shape()),
                    fmt_shape(a.shape())
                ),
            )
        }
        shape[d] += a.shape()[d];
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device form of `index_put` (a scatter into the flattened array), run here on the
    /// host, against the host loop: repeated rows (the last wins, or they add up), a strided
    /// array, and into an `out` of another layout.
    #[test]
    fn puts_by_scatter_equal_the_host_loop() {
        let mut g = crate::Generator::new(4);
        for dtype in [DType::F32, DType::F64, DType::I64] {
            let x = g.normal(&[2, 6], 0.0, 5.0, DType::F64).to_dtype(dtype).t();
            let rows = vec![2i64, 0, 5, 2, 1, 0];
            let vals = g.normal(&[6, 2], 0.0, 5.0, DType::F64).to_dtype(dtype);
            let positions: Vec<usize> = rows
                .iter()
                .flat_map(|&r| r as usize * 2..r as usize * 2 + 2)
                .collect();
            for add in [false, true] {
                let index = Index::List(rows.clone());
                let want = match add {
                    true => x.index_put_add(&index, &vals),
                    false => x.index_put(&index, &vals),
                };
                let mut got = Array::zeros(&[2, 6], dtype).t();
                x.put_by_scatter(positions.clone(), &vals, add, "test", &mut got);
                assert!(got.bit_eq(&want), "add {add} {dtype}: {got} vs {want}");
            }
        }
    }
}
