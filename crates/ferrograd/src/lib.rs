#![doc = include_str!("../../../README.md")]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

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

pub use custom::CustomOp;
pub use debug::{render_svg, DebugError, DebugEvent, DebugHook, Phase};
pub use ferrograd_array::{
    broadcast_shapes, Array, Conv2dParams, DType, Device, Dim, Dims, Element, Float, Generator,
    Index, Number, Pool2dParams, Shape,
};
pub use ferrograd_derive::Tree;
pub use grad::{
    grad, hessian, hvp, jacobian, trace, value_and_grad, vjp, Differentiable, Grad, GradOutput,
    Outputs, Traced,
};
pub use gradcheck::{gradcheck, gradgradcheck, GradcheckReport, LeafCheck};
pub use op::Op;
pub use ops::elementwise::{Binary, Compare, ScalarOp, Unary};
pub use ops::reduce::{DimList, Reduction};
pub use profile::Profile;
pub use tensor::Tensor;
pub use tree::{join_name, leaf_names, leaves, rebuild, Tree};

/// The array layer, for everything not re-exported at the top.
pub use ferrograd_array as array;
