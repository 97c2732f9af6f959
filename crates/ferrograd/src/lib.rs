#![doc = include_str!("../../../README.md")]
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub use ferrograd_array::{
    broadcast_shapes, Array, Conv2dParams, DType, Device, Dim, Dims, Element, Float, Generator,
    Index, Number, Pool2dParams,
};

/// The array layer, for everything not re-exported at the top.
pub use ferrograd_array as array;
