//! Multi-dimensional indexing, NumPy's and PyTorch's `x[i, :, a:b, None, mask, idx]`, as
//! one argument: a tuple of [`At`] items (integers, ranges, `..`, [`Step`], [`NewAxis`],
//! [`Ellipsis`], index tensors and bool masks).
//!
//! Reads ([`Tensor::at`]) are views where they can be (integers select, unit-step ranges
//! narrow, new axes unsqueeze) and gathers where they cannot (steps, index tensors); writes
//! ([`Tensor::at_put`], [`Tensor::at_add`], [`Tensor::set_at`]) address the same elements
//! by reading the positions of a position table with the same index, then scatter into the
//! flattened tensor. Every path is made of differentiable primitives, so gradients flow to
//! the tensor read and to the values written.
//!
//! Index tensors follow NumPy's advanced indexing: they broadcast together; their dims
//! replace the indexed dims where those are adjacent, and lead the result otherwise. A bool
//! mask over `k` dims counts as `k` index tensors (its true positions). Integers select
//! before that, as in PyTorch (NumPy counts an integer beside an index tensor as one more
//! index tensor, which can move the index dims to the front: `x[:, [0, 1], :, 1]` is
//! `[2, N, ...]`-shaped there and `[N, 2, ...]` here and in PyTorch).

use std::ops::{Range, RangeFrom, RangeFull, RangeInclusive, RangeTo, RangeToInclusive};

use crate::{Array, DType, Tensor};

/// One item of a multi-dimensional index (see [`Tensor::at`]).
#[derive(Clone, Debug)]
pub enum At {
    /// One position (negative counts from the end); the dim is dropped.
    Int(i64),
    /// Positions `start..end` by `step` (ends clamped, negatives from the end, as Python's
    /// slices; `step > 0`).
    Slice {
        /// First position (default 0).
        start: Option<i64>,
        /// One past the last (default: the size).
        end: Option<i64>,
        /// Stride (positive).
        step: i64,
    },
    /// A new dim of size 1.
    NewAxis,
    /// As many full slices as the other items leave dims.
    Ellipsis,
    /// An i64 index tensor (advanced indexing) or a bool mask over as many dims as it has.
    Tensor(Tensor),
}

/// A new axis of size 1 (NumPy's `None` / `np.newaxis`).
#[derive(Clone, Copy, Debug)]
pub struct NewAxis;

/// Full slices for the dims the other items leave (NumPy's `...`).
#[derive(Clone, Copy, Debug)]
pub struct Ellipsis;

/// A range with a step: `Step(1..7, 2)` is Python's `1:7:2`, `Step(.., 3)` is `::3`.
#[derive(Clone, Debug)]
pub struct Step<R>(pub R, pub i64);

macro_rules! at_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for At {
            fn from(i: $t) -> At {
                At::Int(i as i64)
            }
        }
        impl From<Range<$t>> for At {
            fn from(r: Range<$t>) -> At {
                At::Slice { start: Some(r.start as i64), end: Some(r.end as i64), step: 1 }
            }
        }
        impl From<RangeFrom<$t>> for At {
            fn from(r: RangeFrom<$t>) -> At {
                At::Slice { start: Some(r.start as i64), end: None, step: 1 }
            }
        }
        impl From<RangeTo<$t>> for At {
            fn from(r: RangeTo<$t>) -> At {
                At::Slice { start: None, end: Some(r.end as i64), step: 1 }
            }
        }
        impl From<RangeInclusive<$t>> for At {
            fn from(r: RangeInclusive<$t>) -> At {
                let end = *r.end() as i64;
                // `a..=-1` runs to the end
                let end = if end == -1 { None } else { Some(end + 1) };
                At::Slice { start: Some(*r.start() as i64), end, step: 1 }
            }
        }
        impl From<RangeToInclusive<$t>> for At {
            fn from(r: RangeToInclusive<$t>) -> At {
                let end = r.end as i64;
                let end = if end == -1 { None } else { Some(end + 1) };
                At::Slice { start: None, end, step: 1 }
            }
        }
    )*};
}

at_from_int!(i64, i32, usize);

impl From<RangeFull> for At {
    fn from(_: RangeFull) -> At {
        At::Slice {
            start: None,
            end: None,
            step: 1,
        }
    }
}

impl From<NewAxis> for At {
    fn from(_: NewAxis) -> At {
        At::NewAxis
    }
}

impl From<Ellipsis> for At {
    fn from(_: Ellipsis) -> At {
        At::Ellipsis
    }
}

impl From<&Tensor> for At {
    fn from(t: &Tensor) -> At {
        At::Tensor(t.clone())
    }
}

impl<R: Into<At>> From<Step<R>> for At {
    fn from(s: Step<R>) -> At {
        match s.0.into() {
            At::Slice { start, end, .. } => At::Slice {
                start,
                end,
                step: s.1,
            },
            other => panic!("ferrograd: Step wraps a range, got {other:?}"),
        }
    }
}

/// A whole multi-dimensional index: one [`At`] item, or a tuple of up to 8.
#[derive(Clone, Debug)]
pub struct AtIndex(pub Vec<At>);

impl<T: Into<At>> From<T> for AtIndex {
    fn from(item: T) -> AtIndex {
        AtIndex(vec![item.into()])
    }
}

macro_rules! at_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<At>),+> From<($($name,)+)> for AtIndex {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> AtIndex {
                AtIndex(vec![$($name.into()),+])
            }
        }
    };
}

at_tuple!(A, B);
at_tuple!(A, B, C);
at_tuple!(A, B, C, D);
at_tuple!(A, B, C, D, E);
at_tuple!(A, B, C, D, E, F);
at_tuple!(A, B, C, D, E, F, G);
at_tuple!(A, B, C, D, E, F, G, H);

impl From<Vec<At>> for AtIndex {
    fn from(items: Vec<At>) -> AtIndex {
        AtIndex(items)
    }
}

/// Panics with the op, the problem, the tensor's shape and the caller's line.
#[track_caller]
fn fail(op: &str, shape: &[usize], message: std::fmt::Arguments<'_>) -> ! {
    panic!(
        "ferrograd: {op}: {message} (indexing a tensor of shape {shape:?}) (at {})",
        ferrograd_array::Site(std::panic::Location::caller())
    )
}

/// The index with bool masks replaced by their true positions (one i64 tensor per mask
/// dim) and the ellipsis (explicit or implied at the end) replaced by full slices.
#[track_caller]
fn normalize(items: Vec<At>, shape: &[usize], op: &str) -> Vec<At> {
    let mut expanded = Vec::new();
    let mut ellipses = 0;
    for item in items {
        match item {
            At::Tensor(t) if t.dtype() == DType::Bool => {
                if t.ndim() == 0 {
                    fail(op, shape, format_args!("a 0-d bool mask is not supported"));
                }
                // the true positions, one index tensor per mask dim (the mask decides the
                // result's shape, so in optimize mode reading it is a guard)
                let flat = t.value().reshape(&[t.numel()]).flat_nonzero();
                let positions = flat.to_vec::<i64>();
                let mut strides = vec![1i64; t.ndim()];
                for d in (0..t.ndim().saturating_sub(1)).rev() {
                    strides[d] = strides[d + 1] * t.shape()[d + 1] as i64;
                }
                for (d, &stride) in strides.iter().enumerate() {
                    let size = t.shape()[d] as i64;
                    let idx: Vec<i64> = positions.iter().map(|p| (p / stride) % size).collect();
                    let n = idx.len();
                    expanded.push((
                        At::Tensor(super::on_device_of(Array::from_vec(idx, &[n]), &t)),
                        Some(size),
                    ));
                }
            }
            At::Ellipsis => {
                ellipses += 1;
                expanded.push((At::Ellipsis, None));
            }
            other => expanded.push((other, None)),
        }
    }
    if ellipses > 1 {
        fail(
            op,
            shape,
            format_args!("an index can have only one ellipsis"),
        );
    }
    let consumed = expanded
        .iter()
        .filter(|(a, _)| !matches!(a, At::NewAxis | At::Ellipsis))
        .count();
    if consumed > shape.len() {
        fail(
            op,
            shape,
            format_args!("too many indices: {consumed} for {} dims", shape.len()),
        );
    }
    let fill = shape.len() - consumed;
    let mut out = Vec::new();
    let mut saw_ellipsis = false;
    for (item, mask_size) in expanded {
        if let At::Ellipsis = item {
            saw_ellipsis = true;
            out.extend((0..fill).map(|_| At::from(..)));
            continue;
        }
        // a mask dim's size must match the dim it indexes
        if let (At::Tensor(_), Some(size)) = (&item, mask_size) {
            let dim = out.iter().filter(|a| !matches!(a, At::NewAxis)).count();
            if shape[dim] as i64 != size {
                fail(
                    op,
                    shape,
                    format_args!(
                        "a bool mask of size {size} along dim {dim} does not match its size {}",
                        shape[dim]
                    ),
                );
            }
        }
        out.push(item);
    }
    if !saw_ellipsis {
        out.extend((0..fill).map(|_| At::from(..)));
    }
    out
}

impl Tensor {
    /// Reads with a multi-dimensional index: NumPy's and PyTorch's `x[...]` (see the
    /// [`At`] items). A tuple names one item per dim; missing trailing dims are whole.
    ///
    /// ```
    /// use ferrograd::{Ellipsis, NewAxis, Step, Tensor};
    /// let x = Tensor::from_vec((0..24).map(f64::from).collect(), &[2, 3, 4]);
    /// assert_eq!(x.at((1, .., 2)).to_vec::<f64>(), vec![14.0, 18.0, 22.0]); // x[1, :, 2]
    /// assert_eq!(x.at((0, 1..3, -1)).to_vec::<f64>(), vec![7.0, 11.0]); // x[0, 1:3, -1]
    /// assert_eq!(x.at((Ellipsis, Step(.., 2))).shape(), &[2, 3, 2]); // x[..., ::2]
    /// assert_eq!(x.at((NewAxis, 0)).shape(), &[1, 3, 4]); // x[None, 0]
    /// let rows = Tensor::from_vec(vec![2i64, 0], &[2]);
    /// assert_eq!(x.at((0, &rows, 1)).to_vec::<f64>(), vec![9.0, 1.0]); // x[0, [2, 0], 1]
    /// let mask = x.at((0, .., 0)).gt_scalar(3.0);
    /// assert_eq!(x.at((0, &mask, 3)).to_vec::<f64>(), vec![7.0, 11.0]); // x[0, m, 3]
    /// ```
    #[track_caller]
    pub fn at(&self, index: impl Into<AtIndex>) -> Tensor {
        let items = normalize(index.into().0, self.shape(), "at");
        read(self, items, "at")
    }

    /// `self` with `values` written at the elements `index` addresses (as [`at`](Tensor::at)
    /// reads them), `values` broadcasting to that region: PyTorch's `x[...] = values` out of
    /// place. Gradients flow to `self` (not at the overwritten places) and to `values`.
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 3], DType::F64);
    /// let y = x.at_put((.., 1), &Tensor::from_vec(vec![5.0f64, 6.0], &[2]));
    /// assert_eq!(y.to_vec::<f64>(), vec![0.0, 5.0, 0.0, 0.0, 6.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn at_put(&self, index: impl Into<AtIndex>, values: &Tensor) -> Tensor {
        write(self, index.into(), values, false, "at_put")
    }

    /// `self` with `values` added at the elements `index` addresses; repeated positions
    /// accumulate (PyTorch's `index_put_(..., accumulate=True)`).
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// let x = Tensor::zeros(&[3], DType::F64);
    /// let i = Tensor::from_vec(vec![0i64, 2, 0], &[3]);
    /// let y = x.at_add(&i, &Tensor::scalar(1.0f64));
    /// assert_eq!(y.to_vec::<f64>(), vec![2.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn at_add(&self, index: impl Into<AtIndex>, values: &Tensor) -> Tensor {
        write(self, index.into(), values, true, "at_add")
    }

    /// `self` with `src` written at positions `start..end` by `step` along `dim` (PyTorch's
    /// `torch.slice_scatter`; `None` ends are the dim's ends, negatives count from the end);
    /// `src` has exactly the slice's shape. The adjoint of slicing: both inputs get
    /// gradients.
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// let x = Tensor::zeros(&[2, 4], DType::F64);
    /// let src = Tensor::ones(&[2, 2], DType::F64);
    /// let y = x.slice_scatter(&src, 1, Some(0), None, 2);
    /// assert_eq!(y.to_vec::<f64>(), vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn slice_scatter(
        &self,
        src: &Tensor,
        dim: impl crate::Dim,
        start: Option<i64>,
        end: Option<i64>,
        step: i64,
    ) -> Tensor {
        let d = dim.resolve(self.ndim(), "slice_scatter");
        let mut items: Vec<At> = (0..d).map(|_| At::from(..)).collect();
        items.push(At::Slice { start, end, step });
        let mut region = self.shape().to_vec();
        let (s, e) = slice_bounds(region[d] as i64, start, end);
        region[d] = ((e - s) as usize).div_ceil(step.max(1) as usize);
        if region != src.shape() {
            fail(
                "slice_scatter",
                self.shape(),
                format_args!(
                    "src of shape {:?} is not the slice's shape {:?}",
                    src.shape(),
                    region
                ),
            );
        }
        write(self, AtIndex(items), src, false, "slice_scatter")
    }

    /// Assigns in place of the handle: `x.set_at(idx, &v)` is `x = x.at_put(idx, &v)`.
    #[track_caller]
    pub fn set_at(&mut self, index: impl Into<AtIndex>, values: &Tensor) {
        *self = self.at_put(index, values);
    }
}

/// Python's slice bounds: negatives from the end, both clamped into `0..=size`, `end` at
/// least `start`.
fn slice_bounds(size: i64, start: Option<i64>, end: Option<i64>) -> (i64, i64) {
    let clamp = |v: i64| {
        let v = if v < 0 { v + size } else { v };
        v.clamp(0, size)
    };
    let s = start.map_or(0, clamp);
    (s, end.map_or(size, clamp).max(s))
}

/// The read itself, on a normalized index.
#[track_caller]
fn read(x: &Tensor, items: Vec<At>, op: &str) -> Tensor {
    let shape = x.shape().to_vec();
    let mut y = x.clone();
    let mut dim = 0; // the dim of `y` the next item indexes
    let mut advanced: Vec<(usize, Tensor)> = Vec::new(); // (dim of y, index)
    for item in items {
        match item {
            At::NewAxis => {
                y = y.unsqueeze(dim);
                dim += 1;
            }
            At::Int(i) => {
                let size = y.shape()[dim] as i64;
                if i < -size || i >= size {
                    fail(
                        op,
                        &shape,
                        format_args!("index {i} is out of range for a dim of size {size}"),
                    );
                }
                y = y.select(dim, i);
            }
            At::Slice { start, end, step } => {
                if step <= 0 {
                    fail(
                        op,
                        &shape,
                        format_args!("a slice step must be positive, got {step}"),
                    );
                }
                let size = y.shape()[dim] as i64;
                let (s, e) = slice_bounds(size, start, end);
                if s != 0 || e != size {
                    y = y.narrow(dim, s as usize, (e - s) as usize);
                }
                if step > 1 {
                    let picks = Array::arange(0.0, (e - s) as f64, step as f64, DType::I64);
                    y = y.index_select(dim, &super::on_device_of(picks, &y));
                }
                dim += 1;
            }
            At::Tensor(t) => {
                if t.dtype() != DType::I64 {
                    fail(
                        op,
                        &shape,
                        format_args!(
                            "an index tensor must be i64 (or a bool mask), got {:?}",
                            t.dtype()
                        ),
                    );
                }
                advanced.push((dim, t));
                dim += 1;
            }
            At::Ellipsis => unreachable!("expanded by normalize"),
        }
    }
    if advanced.is_empty() {
        return y;
    }
    // Advanced indexing: the indexed dims to the front, one flat position per element of
    // the broadcast index, a gather, then the index's dims where NumPy puts them.
    let dims: Vec<usize> = advanced.iter().map(|(d, _)| *d).collect();
    let adjacent = dims.windows(2).all(|w| w[1] == w[0] + 1);
    let broadcast = advanced
        .iter()
        .try_fold(ferrograd_array::Shape::new(), |acc, (_, t)| {
            crate::broadcast_shapes(&acc, t.shape())
        });
    let Some(index_shape) = broadcast else {
        let shapes: Vec<&[usize]> = advanced.iter().map(|(_, t)| t.shape()).collect();
        fail(
            op,
            &shape,
            format_args!("index tensors of shapes {shapes:?} do not broadcast"),
        )
    };
    let rest: Vec<usize> = (0..y.ndim()).filter(|d| !dims.contains(d)).collect();
    let order: Vec<usize> = dims.iter().chain(&rest).copied().collect();
    let moved = y.permute(&order);
    let sizes: Vec<usize> = dims.iter().map(|&d| y.shape()[d]).collect();
    let mut flat: Option<Tensor> = None;
    let mut stride = 1i64;
    for ((_, t), &size) in advanced.iter().zip(&sizes).rev() {
        // bounds, counted with tensor ops so that in optimize mode the guard is on the
        // count alone (it holds while the indices are valid, whatever they are); then
        // negatives from the end
        let outside = t
            .lt_scalar(-(size as f64))
            .logical_or(&t.ge_scalar(size as f64));
        if super::count_true(&outside) > 0 {
            let values = t.data().to_vec::<i64>();
            let bad = values
                .into_iter()
                .find(|&v| v < -(size as i64) || v >= size as i64)
                .expect("an index out of range");
            fail(
                op,
                &shape,
                format_args!("index {bad} is out of range for a dim of size {size}"),
            );
        }
        let wrapped = &(t.lt_scalar(0.0).to_dtype(DType::I64) * size as f64) + t;
        let term = &wrapped * stride as f64;
        flat = Some(match flat {
            None => term,
            Some(f) => &f + &term,
        });
        stride *= size as i64;
    }
    let flat = flat
        .expect("at least one index")
        .expand(&index_shape)
        .reshape(&[-1]);
    let rest_shape: Vec<usize> = rest.iter().map(|&d| y.shape()[d]).collect();
    let mut gathered_shape = vec![stride as usize];
    gathered_shape.extend(&rest_shape);
    let gathered = moved.reshape(&gathered_shape).index_select(0, &flat);
    let mut out_shape: Vec<usize> = index_shape.to_vec();
    out_shape.extend(&rest_shape);
    let out = gathered.reshape(&out_shape);
    let first = dims[0];
    if !adjacent || first == 0 {
        return out;
    }
    // the index dims go where the indexed dims were
    let k = index_shape.len();
    let mut perm: Vec<usize> = (k..k + first).collect();
    perm.extend(0..k);
    perm.extend(k + first..out.ndim());
    out.permute(&perm)
}

/// Writes (or adds) `values` where `index` points, through the positions a position
/// table reads at `index`.
#[track_caller]
fn write(x: &Tensor, index: AtIndex, values: &Tensor, add: bool, op: &str) -> Tensor {
    let numel = x.numel();
    let table = super::on_device_of(
        Array::arange(0.0, numel as f64, 1.0, DType::I64).reshape(x.shape()),
        x,
    );
    let items = normalize(index.0, x.shape(), op);
    let positions = read(&table, items, op);
    let region = positions.shape().to_vec();
    if crate::broadcast_shapes(values.shape(), &region).as_deref() != Some(region.as_slice()) {
        fail(
            op,
            x.shape(),
            format_args!(
                "values of shape {:?} do not broadcast to the addressed region {region:?}",
                values.shape()
            ),
        );
    }
    let flat_positions = positions.reshape(&[-1]);
    let flat_values = values.to_dtype(x.dtype()).expand(&region).reshape(&[-1]);
    let flat = x.reshape(&[-1]);
    let out = if add {
        flat.scatter_add(0, &flat_positions, &flat_values)
    } else {
        flat.scatter(0, &flat_positions, &flat_values)
    };
    out.reshape(x.shape())
}
