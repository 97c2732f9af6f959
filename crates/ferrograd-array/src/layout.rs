//! Shapes, strides, dim arguments, broadcasting and strided iteration.

use smallvec::SmallVec;

use crate::error::fail;

/// A shape: sizes of each dimension, stored inline up to 6 dims.
pub type Shape = SmallVec<[usize; 6]>;
/// Strides in elements (signed so that later views may walk backwards).
pub type Strides = SmallVec<[isize; 6]>;

/// Row-major (C order) strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Strides {
    let mut strides: Strides = SmallVec::from_elem(0, shape.len());
    let mut acc = 1isize;
    for (s, &n) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= n.max(1) as isize;
    }
    strides
}

/// Number of elements of a shape (1 for a 0-d shape).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A dimension argument: a `usize` counts from the front, a negative `isize`/`i32`/`i64`
/// counts from the back (`-1` is the last dim), as in PyTorch.
pub trait Dim: Copy {
    /// The dim as an index in `0..ndim`, panicking with `op`'s name when out of range.
    #[track_caller]
    fn resolve(self, ndim: usize, op: &str) -> usize;
}

impl Dim for usize {
    #[track_caller]
    fn resolve(self, ndim: usize, op: &str) -> usize {
        if self >= ndim {
            fail(
                op,
                format_args!("dim {self} is out of range for an array of {ndim} dims"),
            )
        }
        self
    }
}

macro_rules! signed_dim {
    ($($t:ty),*) => {$(
        impl Dim for $t {
            #[track_caller]
            fn resolve(self, ndim: usize, op: &str) -> usize {
                let d = self as i64;
                let n = ndim as i64;
                if d >= n || d < -n {
                    fail(op, format_args!(
                        "dim {d} is out of range for an array of {ndim} dims (valid: {} to {})",
                        -n, n - 1
                    ))
                }
                (if d < 0 { d + n } else { d }) as usize
            }
        }
    )*};
}
signed_dim!(i32, i64, isize);

/// A position along a dim: a `usize`, or a signed integer that counts from the end when
/// negative (`-1` is the last), as PyTorch's `narrow` and `select` take.
pub trait Position: Copy {
    /// The position as an index from the start, for a dim of `size`; a negative one below
    /// `-size` panics naming `op`. (A position past the end is the op's own check.)
    #[track_caller]
    fn resolve_position(self, size: usize, op: &str) -> usize;
}

impl Position for usize {
    fn resolve_position(self, _: usize, _: &str) -> usize {
        self
    }
}

macro_rules! signed_position {
    ($($t:ty),*) => {$(
        impl Position for $t {
            #[track_caller]
            fn resolve_position(self, size: usize, op: &str) -> usize {
                let p = self as i64;
                if p >= 0 {
                    return p as usize;
                }
                if p < -(size as i64) {
                    fail(op, format_args!(
                        "position {p} is out of range for a dim of size {size} (valid from {})",
                        -(size as i64)
                    ))
                }
                (p + size as i64) as usize
            }
        }
    )*};
}
signed_position!(i32, i64, isize);

/// One or several dims for reductions: a single [`Dim`], an array, a slice or a `Vec` of them.
pub trait Dims {
    /// The dims resolved, sorted and checked for repeats.
    #[track_caller]
    fn resolve_all(&self, ndim: usize, op: &str) -> SmallVec<[usize; 6]>;
}

#[track_caller]
fn resolve_list<D: Dim>(dims: &[D], ndim: usize, op: &str) -> SmallVec<[usize; 6]> {
    let mut out: SmallVec<[usize; 6]> = dims.iter().map(|d| d.resolve(ndim, op)).collect();
    out.sort_unstable();
    if out.windows(2).any(|w| w[0] == w[1]) {
        fail(op, format_args!("dim {} appears twice", out[0]))
    }
    out
}

macro_rules! dims_scalar {
    ($($t:ty),*) => {$(
        impl Dims for $t {
            #[track_caller]
            fn resolve_all(&self, ndim: usize, op: &str) -> SmallVec<[usize; 6]> {
                smallvec::smallvec![self.resolve(ndim, op)]
            }
        }
    )*};
}
dims_scalar!(usize, i32, i64, isize);

impl<D: Dim, const N: usize> Dims for [D; N] {
    #[track_caller]
    fn resolve_all(&self, ndim: usize, op: &str) -> SmallVec<[usize; 6]> {
        resolve_list(self, ndim, op)
    }
}
impl<D: Dim> Dims for &[D] {
    #[track_caller]
    fn resolve_all(&self, ndim: usize, op: &str) -> SmallVec<[usize; 6]> {
        resolve_list(self, ndim, op)
    }
}
impl<D: Dim> Dims for Vec<D> {
    #[track_caller]
    fn resolve_all(&self, ndim: usize, op: &str) -> SmallVec<[usize; 6]> {
        resolve_list(self, ndim, op)
    }
}

/// Whether two shapes are equal, compared inline: shapes have a handful of dims, for which
/// slice equality's call into `memcmp` cost more than the comparison (7% of a replayed chain
/// of 10-element ops).
#[inline]
pub(crate) fn same_shape(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The NumPy broadcast of two shapes, or `None` when they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Shape> {
    // the common cases: equal shapes, and a 0-d operand (a scalar)
    if same_shape(a, b) || b.is_empty() {
        return Some(SmallVec::from_slice(a));
    }
    if a.is_empty() {
        return Some(SmallVec::from_slice(b));
    }
    let n = a.len().max(b.len());
    let mut out: Shape = SmallVec::from_elem(0, n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides that read an array of `shape`/`strides` as if it had the (broadcast) shape `to`:
/// new leading dims and size-1 dims get stride 0. The caller has checked compatibility.
pub(crate) fn broadcast_strides(shape: &[usize], strides: &[isize], to: &[usize]) -> Strides {
    let lead = to.len() - shape.len();
    let mut out: Strides = SmallVec::from_elem(0, to.len());
    for i in 0..shape.len() {
        out[lead + i] = if shape[i] == 1 && to[lead + i] != 1 {
            0
        } else {
            strides[i]
        };
    }
    out
}

/// Calls `f` with the element offsets of `N` arrays that share the iteration `shape`, in
/// row-major order of `shape`. Each array is given by its strides (already broadcast to
/// `shape`) and base offset. The innermost dim runs as a plain loop, compiled with `f` for
/// each caller; the walk over the outer dims ([`for_each_row`]) is compiled once per `N`
/// (it was the largest item of this crate's LLVM IR, one copy per kernel closure).
#[inline]
pub(crate) fn for_each_offsets<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
    offsets: [usize; N],
    mut f: impl FnMut([usize; N]),
) {
    for_each_row_offsets(shape, strides, offsets, |base, len, inner_strides| {
        for i in 0..len as isize {
            let mut at = [0usize; N];
            for k in 0..N {
                at[k] = (base[k] + i * inner_strides[k]) as usize;
            }
            f(at);
        }
    });
}

/// Calls `row(base, len, strides)` for each innermost row of `shape`, in row-major order:
/// the base offset of each array, the row's length and each array's stride along it. For
/// kernels that run each row under [`with_simd`](crate::math::with_simd): code called
/// through the row walker is not compiled with the vector path's features otherwise.
pub(crate) fn for_each_row_offsets<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
    offsets: [usize; N],
    mut row: impl FnMut([isize; N], usize, [isize; N]),
) {
    if shape.contains(&0) {
        return;
    }
    let nd = shape.len();
    if nd == 0 {
        row(offsets.map(|o| o as isize), 1, [0; N]);
        return;
    }
    let inner = shape[nd - 1];
    let mut inner_strides = [0isize; N];
    for k in 0..N {
        inner_strides[k] = strides[k][nd - 1];
    }
    // the row's length and strides reach `row` as arguments, so its loop keeps them in
    // registers while it writes through its captures
    for_each_row(shape, strides, offsets, &mut move |base| {
        row(base, inner, inner_strides)
    });
}

/// Calls `row` with the base offsets of each innermost row of `shape` (non-empty, no zero
/// sizes), in row-major order: the odometer of [`for_each_offsets`].
#[inline(never)]
fn for_each_row<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
    offsets: [usize; N],
    row: &mut dyn FnMut([isize; N]),
) {
    let nd = shape.len();
    let mut base = [0isize; N];
    for k in 0..N {
        base[k] = offsets[k] as isize;
    }
    let mut index: SmallVec<[usize; 6]> = SmallVec::from_elem(0, nd - 1);
    loop {
        row(base);
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            for k in 0..N {
                base[k] += strides[k][d];
            }
            if index[d] < shape[d] {
                break;
            }
            for k in 0..N {
                base[k] -= strides[k][d] * shape[d] as isize;
            }
            index[d] = 0;
        }
    }
}

/// Formats a shape as `[2, 3]`.
pub(crate) fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}
