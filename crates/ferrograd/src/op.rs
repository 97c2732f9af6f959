//! The one enum of primitives. Every primitive has one contract: a name, a forward on
//! arrays, a forward into a given buffer (or the statement that it has none: views), and a
//! gradient rule (VJP) written with differentiable `Tensor` operations. The debugger, the
//! profiler, DOT output and the compiler all match on this enum.
//!
//! The primitives come in families (elementwise, reductions, shape, indexing, nn), each an
//! enum in `ops/<family>.rs` with its user-facing methods and one exhaustive `match` per part
//! of the contract, so a primitive added without a rule does not compile. This file names
//! the families and dispatches. Output shapes and dtypes are not a separate function: the
//! kernels check and compute them, and a compiled plan records them when it is captured.
//! `Op` is `Eq + Hash` (numbers by bits, user primitives by identity), so a plan can find
//! repeated computations.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::custom::CustomOp;
use crate::ops::{decomp, elementwise, index, linalg, nn, reduce, shape};
use crate::{Array, Tensor};

/// Gradients of a primitive's inputs, `None` where an input gets none.
pub(crate) type Grads = SmallVec<[Option<Tensor>; 3]>;

/// Computes an input's gradient only where the backward pass will use it: the engine drops
/// contributions for inputs outside the level being differentiated (constants, data), so
/// rules skip that work (`dX` of a first layer, the data side of a product).
pub(crate) fn wanted(needs: &[bool], i: usize, grad: impl FnOnce() -> Tensor) -> Option<Tensor> {
    needs.get(i).copied().unwrap_or(true).then(grad)
}

/// A primitive operation with its attributes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Op {
    /// A parameter boxed by `grad` (no inputs).
    Leaf,
    /// One-input elementwise math.
    Unary(elementwise::Unary),
    /// Elementwise math with a scalar operand.
    Scalar(elementwise::ScalarOp, f64),
    /// Clamp into `[min, max]`.
    Clamp {
        /// Lower bound.
        min: Option<f64>,
        /// Upper bound.
        max: Option<f64>,
    },
    /// Two-input elementwise math with broadcasting.
    Binary(elementwise::Binary),
    /// Comparison or logic giving bool (no gradient).
    Compare(elementwise::Compare),
    /// `cond ? a : b` (inputs: cond, a, b).
    Where,
    /// Conversion to another dtype.
    Cast(crate::DType),
    /// A copy on another device (the gradient goes back to the input's device).
    ToDevice(crate::Device),
    /// Reduction over dims.
    Reduce(reduce::Reduction, reduce::DimList, bool),
    /// Running sum along a dim.
    Cumsum(usize),
    /// Running product along a dim.
    Cumprod(usize),
    /// Index (i64) of the first largest (`largest`) or smallest value along `dim`, or of the
    /// flattened tensor when `dim` is `None` (no gradient).
    ArgExtreme {
        /// Largest (argmax) or smallest (argmin).
        largest: bool,
        /// The dim, or `None` for the flattened tensor.
        dim: Option<usize>,
        /// Keep `dim` as size 1.
        keepdim: bool,
    },
    /// The indices (i64) that sort the input along `dim`, stably (no gradient; values come
    /// from a `gather` with them, which has one).
    ArgSort {
        /// The dim.
        dim: usize,
        /// Largest first.
        descending: bool,
    },
    /// Matrix product of two arrays of at least 2 dims, batch dims broadcast.
    Matmul,
    /// Shape primitives: permute, reshape, expand, narrow, flips, diagonals, concatenation.
    Shape(shape::ShapeOp),
    /// Indexing primitives: select, gather, scatter, assignment.
    Index(index::IndexOp),
    /// Neural-network primitives: convolution, pooling, softmax and fused gradients.
    Nn(nn::NnOp),
    /// Matrix decompositions and solvers.
    Linalg(decomp::LinalgOp),
    /// A user primitive with a hand-written gradient.
    Custom(Arc<dyn CustomOp>),
}

/// Two ops are equal when they compute the same function of their inputs: same variant and
/// attributes, numbers compared bit for bit, user primitives by identity (the same
/// `Arc`). This is what common-subexpression elimination needs: equal ops on equal inputs
/// give equal outputs (randomness is never an op: draws are plan inputs).
impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        let bits = |v: &Option<f64>| v.map(f64::to_bits);
        match (self, other) {
            (Op::Leaf, Op::Leaf) | (Op::Where, Op::Where) | (Op::Matmul, Op::Matmul) => true,
            (Op::Unary(a), Op::Unary(b)) => a == b,
            (Op::Scalar(a, x), Op::Scalar(b, y)) => a == b && x.to_bits() == y.to_bits(),
            (Op::Clamp { min: a, max: b }, Op::Clamp { min: c, max: d }) => {
                bits(a) == bits(c) && bits(b) == bits(d)
            }
            (Op::Binary(a), Op::Binary(b)) => a == b,
            (Op::Compare(a), Op::Compare(b)) => a == b,
            (Op::Cast(a), Op::Cast(b)) => a == b,
            (Op::ToDevice(a), Op::ToDevice(b)) => a == b,
            (Op::Reduce(a, x, k), Op::Reduce(b, y, l)) => a == b && x == y && k == l,
            (Op::Cumsum(a), Op::Cumsum(b)) | (Op::Cumprod(a), Op::Cumprod(b)) => a == b,
            (
                Op::ArgExtreme {
                    largest: a,
                    dim: x,
                    keepdim: k,
                },
                Op::ArgExtreme {
                    largest: b,
                    dim: y,
                    keepdim: l,
                },
            ) => a == b && x == y && k == l,
            (
                Op::ArgSort {
                    dim: a,
                    descending: x,
                },
                Op::ArgSort {
                    dim: b,
                    descending: y,
                },
            ) => a == b && x == y,
            (Op::Shape(a), Op::Shape(b)) => a == b,
            (Op::Index(a), Op::Index(b)) => a == b,
            (Op::Nn(a), Op::Nn(b)) => a == b,
            (Op::Linalg(a), Op::Linalg(b)) => a == b,
            (Op::Custom(a), Op::Custom(b)) => Arc::ptr_eq(a, b),
            // different variants (listed so that a new variant must be added above)
            (
                Op::Leaf
                | Op::Unary(_)
                | Op::Scalar(..)
                | Op::Clamp { .. }
                | Op::Binary(_)
                | Op::Compare(_)
                | Op::Where
                | Op::Cast(_)
                | Op::ToDevice(_)
                | Op::Reduce(..)
                | Op::Cumsum(_)
                | Op::Cumprod(_)
                | Op::ArgExtreme { .. }
                | Op::ArgSort { .. }
                | Op::Matmul
                | Op::Shape(_)
                | Op::Index(_)
                | Op::Nn(_)
                | Op::Linalg(_)
                | Op::Custom(_),
                _,
            ) => false,
        }
    }
}

impl Eq for Op {}

impl Hash for Op {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Op::Leaf | Op::Where | Op::Matmul => {}
            Op::Unary(u) => u.hash(state),
            Op::Scalar(s, v) => (s, v.to_bits()).hash(state),
            Op::Clamp { min, max } => (min.map(f64::to_bits), max.map(f64::to_bits)).hash(state),
            Op::Binary(b) => b.hash(state),
            Op::Compare(c) => c.hash(state),
            Op::Cast(d) => d.hash(state),
            Op::ToDevice(d) => d.hash(state),
            Op::Reduce(r, dims, keepdim) => (r, dims, keepdim).hash(state),
            Op::Cumsum(d) | Op::Cumprod(d) => d.hash(state),
            Op::ArgExtreme {
                largest,
                dim,
                keepdim,
            } => (largest, dim, keepdim).hash(state),
            Op::ArgSort { dim, descending } => (dim, descending).hash(state),
            Op::Shape(s) => s.hash(state),
            Op::Index(i) => i.hash(state),
            Op::Nn(n) => n.hash(state),
            Op::Linalg(l) => l.hash(state),
            Op::Custom(c) => (Arc::as_ptr(c) as *const () as usize).hash(state),
        }
    }
}

impl Op {
    /// A short name for messages, profiles and graphs.
    pub fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Op::Leaf => "leaf",
            Op::Unary(u) => u.name(),
            Op::Scalar(s, _) => s.name(),
            Op::Clamp { .. } => "clamp",
            Op::Binary(b) => b.name(),
            Op::Compare(c) => c.name(),
            Op::Where => "where",
            Op::Cast(_) => "to_dtype",
            Op::ToDevice(_) => "to_device",
            Op::Reduce(r, _, _) => r.name(),
            Op::Cumsum(_) => "cumsum",
            Op::Cumprod(_) => "cumprod",
            Op::ArgExtreme { largest: true, .. } => "argmax",
            Op::ArgExtreme { largest: false, .. } => "argmin",
            Op::ArgSort { .. } => "argsort",
            Op::Matmul => "matmul",
            Op::Shape(s) => s.name(),
            Op::Index(i) => i.name(),
            Op::Nn(n) => n.name(),
            Op::Linalg(l) => l.name(),
            Op::Custom(c) => return Cow::Owned(c.name().to_string()),
        })
    }

    /// False for ops that pass no gradient to any input (comparisons, rounding, ...).
    pub fn is_differentiable(&self) -> bool {
        match self {
            Op::Compare(_) | Op::ArgExtreme { .. } | Op::ArgSort { .. } => false,
            Op::Unary(u) => u.is_differentiable(),
            Op::Cast(d) => d.is_float(),
            Op::Nn(n) => n.is_differentiable(),
            Op::Leaf
            | Op::Scalar(..)
            | Op::Clamp { .. }
            | Op::Binary(_)
            | Op::Where
            | Op::ToDevice(_)
            | Op::Reduce(..)
            | Op::Cumsum(_)
            | Op::Cumprod(_)
            | Op::Matmul
            | Op::Shape(_)
            | Op::Index(_)
            | Op::Linalg(_)
            | Op::Custom(_) => true,
        }
    }

    /// Runs the primitive on concrete arrays.
    #[track_caller]
    pub(crate) fn forward(&self, x: &[&Array]) -> Array {
        match self {
            Op::Leaf => x[0].clone(),
            Op::Unary(u) => u.forward(x[0]),
            Op::Scalar(s, v) => s.forward(x[0], *v),
            Op::Clamp { min, max } => x[0].clamp(*min, *max),
            Op::Binary(b) => b.forward(x[0], x[1]),
            Op::Compare(c) => c.forward(x),
            Op::Where => Array::where_cond(x[0], x[1], x[2]),
            Op::Cast(d) => x[0].to_dtype(*d),
            Op::ToDevice(d) => x[0]
                .to_device(*d)
                .unwrap_or_else(|e| panic!("ferrograd: to_device: {e}")),
            Op::Reduce(r, dims, keepdim) => r.forward(x[0], dims, *keepdim),
            Op::Cumsum(d) => x[0].cumsum(*d),
            Op::Cumprod(d) => x[0].cumprod(*d),
            Op::ArgExtreme {
                largest,
                dim,
                keepdim,
            } => match (dim, largest) {
                (Some(d), true) => x[0].argmax(*d, *keepdim),
                (Some(d), false) => x[0].argmin(*d, *keepdim),
                (None, true) => x[0].argmax_all(),
                (None, false) => x[0].argmin_all(),
            },
            Op::ArgSort { dim, descending } => x[0].argsort(*dim, *descending),
            Op::Matmul => x[0].matmul(x[1]),
            Op::Shape(s) => s.forward(x),
            Op::Index(i) => i.forward(x),
            Op::Nn(n) => n.forward(x),
            Op::Linalg(l) => l.forward(x),
            Op::Custom(c) => c.forward(x),
        }
    }

    /// Runs the primitive into `out`, a buffer of the result's shape and dtype (from an
    /// earlier run of the same step), which a kernel reuses when nothing else holds it.
    /// `operand` is a scalar op's scalar as an array. Returns false, touching nothing, for
    /// primitives with no such form: views (which allocate no data) and a few rare ops.
    /// The result is bit for bit what [`forward`](Op::forward) returns: every allocating
    /// kernel is an allocation followed by its `*_into` form.
    #[track_caller]
    pub(crate) fn forward_into(
        &self,
        x: &[&Array],
        operand: Option<&Array>,
        out: &mut Array,
    ) -> bool {
        match self {
            Op::Unary(u) => u.forward_into(x[0], out),
            Op::Scalar(s, v) => s.forward_into(x[0], *v, operand, out),
            Op::Clamp { min, max } => x[0].clamp_into(*min, *max, out),
            Op::Binary(b) => b.forward_into(x[0], x[1], out),
            Op::Compare(c) => return c.forward_into(x, out),
            Op::Where => Array::where_cond_into(x[0], x[1], x[2], out),
            Op::Cast(_) => x[0].to_dtype_into(out),
            Op::Reduce(r, dims, keepdim) => r.forward_into(x[0], dims, *keepdim, out),
            Op::Cumsum(d) => x[0].cumsum_into(*d, out),
            Op::Cumprod(d) => x[0].cumprod_into(*d, out),
            Op::Matmul => x[0].matmul_into(x[1], out),
            Op::Shape(s) => return s.forward_into(x, out),
            Op::Index(i) => return i.forward_into(x, out),
            Op::Nn(n) => return n.forward_into(x, out),
            Op::Leaf
            | Op::ToDevice(_)
            | Op::ArgExtreme { .. }
            | Op::ArgSort { .. }
            | Op::Linalg(_)
            | Op::Custom(_) => return false,
        }
        true
    }

    /// The gradient rule: given the inputs' inner values, the output's inner value and the
    /// output gradient, the gradient of each input. `needs[i]` is false where input `i`'s
    /// gradient would be dropped; rules may then return `None` for it without computing it.
    pub(crate) fn vjp(&self, x: &[Tensor], out: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
        match self {
            Op::Leaf => SmallVec::new(),
            Op::Unary(u) => elementwise::unary_vjp(*u, &x[0], out, g),
            Op::Scalar(s, v) => elementwise::scalar_vjp(*s, *v, &x[0], out, g),
            Op::Clamp { min, max } => elementwise::clamp_vjp(*min, *max, &x[0], g),
            Op::Binary(b) => elementwise::binary_vjp(*b, &x[0], &x[1], out, g, needs),
            Op::Compare(_) | Op::ArgExtreme { .. } | Op::ArgSort { .. } => {
                x.iter().map(|_| None).collect()
            }
            Op::Where => elementwise::where_vjp(&x[0], &x[1], &x[2], g, needs),
            Op::Cast(_) => smallvec::smallvec![Some(g.to_dtype(x[0].dtype()))],
            Op::ToDevice(_) => smallvec::smallvec![Some(
                g.to_device(x[0].device())
                    .unwrap_or_else(|e| panic!("ferrograd: to_device's gradient: {e}"))
            )],
            Op::Reduce(r, dims, keepdim) => reduce::reduce_vjp(*r, dims, *keepdim, &x[0], out, g),
            Op::Cumsum(d) => smallvec::smallvec![Some(g.flip(*d).cumsum(*d).flip(*d))],
            Op::Cumprod(d) => smallvec::smallvec![Some(reduce::cumprod_vjp(*d, &x[0], g))],
            Op::Matmul => linalg::matmul_vjp(&x[0], &x[1], g, needs),
            Op::Shape(s) => s.vjp(x, g),
            Op::Index(i) => i.vjp(x, g, needs),
            Op::Nn(n) => n.vjp(x, out, g, needs),
            Op::Linalg(l) => l.vjp(x, out, g, needs),
            Op::Custom(c) => crate::custom::custom_vjp(c, x, out, g, needs),
        }
    }
}
