//! # ferrograd
//!
//! Automatic differentiation of plain Rust tensor code: write an ordinary function of a
//! parameter tree and some inputs, with loops and `if`s, and [`grad`] returns the gradient
//! of its result with respect to every tensor in the tree, in a tree of the same type.
//!
//! ```
//! use ferrograd::{grad, Tensor};
//! // y = Σ x², dy/dx = 2x
//! let f = |x: &Tensor| (x * x).sum();
//! let (dx, _) = grad(f).call(&Tensor::from_vec(vec![1.0f64, -2.0], &[2]), ());
//! assert_eq!(dx.to_vec::<f64>(), vec![2.0, -4.0]);
//! ```
//!
//! The repository's README (its examples are compiled and run as the doc-tests of
//! `ferrograd-nn`) tours parameter trees, gradients of gradients, assignment, custom ops,
//! the debugger and the profiler.
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod checkpoint;
mod compile;
mod context;
mod create;
mod custom;
mod debug;
mod grad;
mod gradcheck;
mod op;
mod ops;
mod profile;
mod tensor;
mod tree;

pub use checkpoint::{checkpoint, checkpoint_name, checkpoint_with, checkpoint_with_rng, Policy};
pub use compile::{
    compile, rerun_tests_in_check_mode, side_effect, tree_args, ArgTree, Compiled, State, Stats,
    DEFAULT_CACHE_SIZE,
};
pub use custom::CustomOp;
pub use debug::{graph as dot_graph, render_svg, DebugError, DebugEvent, DebugHook, Phase};
pub use ferrograd_array::{
    broadcast_shapes, cap_simd_level, flush_denormals, simd_level, Array, Conv2dParams, DType,
    Device, DeviceError, Dim, Dims, Element, Float, Generator, Index, MemoryMeter, Number,
    ParseSimdLevelError, Pool2dParams, Position, Shape, SimdLevel,
};
pub use ferrograd_derive::Tree;
pub use grad::{
    grad, hessian, hvp, jacobian, record, value_and_grad, vjp, Differentiable, Grad, GradOutput,
    GradientHook, Outputs, Traced,
};
pub use gradcheck::{gradcheck, gradgradcheck, GradcheckReport, LeafCheck};
pub use op::Op;
pub use ops::at::{At, AtIndex, Ellipsis, NewAxis, Step};
pub use ops::decomp::{LinalgOp, Triangular};
pub use ops::elementwise::{Binary, Compare, ScalarOp, Unary};
pub use ops::index::IndexOp;
pub use ops::linalg::{einsum, Coefficient, MatrixNorm};
pub use ops::nn::NnOp;
pub use ops::reduce::{DimList, Reduction};
pub use ops::shape::{ShapeOp, ShapeSpec};
pub use profile::Profile;
pub use tensor::Tensor;
pub use tree::{join_name, leaf_names, leaves, rebuild, to_device, visit_child, Tree};

/// The array layer, for everything not re-exported at the top.
pub use ferrograd_array as array;
