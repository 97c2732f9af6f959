//! # ferrograd-array
//!
//! The n-d array layer of ferrograd: strided arrays with a runtime element type
//! ([`DType`]) and device ([`Device`]), cheap views, and the CPU kernels that autodiff is
//! built on (elementwise with broadcasting, reductions, matrix products on the `gemm` crate,
//! indexing, convolution, pooling, softmax). It knows nothing of gradients.
//!
//! Every kernel that allocates its result has an `*_into` form that writes into an array
//! the caller owns, so a compiled plan can run without allocating.
//!
//! Large kernels split their work over rayon's global pool (one thread per core by
//! default): elementwise ops, reductions and pooling from 512k elements (256k for exp, tanh
//! and the like), matrix products from 8·10⁶ m·n·k, convolutions by sample. Smaller work
//! stays on the calling thread, since waking the pool costs more than it saves inside a
//! training step. Matrix products from 10⁶ m·n·k run as two halves, one handed to a pool
//! thread kept awake between products (it spins for 200 µs after each, running any other
//! pool work meanwhile), so a step made of 30-100 µs products still uses two cores; while
//! that thread is awake, elementwise ops and fused programs from 4096 elements are halved
//! the same way. Halves give the same results bit for bit as one pass. With
//! one thread (`RAYON_NUM_THREADS=1`, say, to run several jobs side by side) nothing is
//! handed to the pool at all.
//!
//! The `openblas` feature runs the matrix products on the system's OpenBLAS instead of
//! `gemm` (Debian: `libopenblas-dev`), for machines where its kernels are faster; the
//! default build is pure Rust.
//!
//! Programmer errors (shape, dtype, dim and index mismatches) panic with a message that
//! names the op, the shapes and the caller's source line:
//!
//! ```should_panic
//! use ferrograd_array::{Array, DType};
//! let a = Array::zeros(&[2, 3], DType::F32);
//! let b = Array::zeros(&[4, 5], DType::F32);
//! let _ = a.matmul(&b); // panics: "ferrograd: matmul: ... [2, 3] and [4, 5] ... (at src/main.rs:..)"
//! ```
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod array;
#[cfg(feature = "openblas")]
mod blas;
mod conv;
mod create;
#[cfg(feature = "cuda")]
mod cuda;
mod decomp;
mod denormal;
mod device;
mod display;
mod dtype;
mod elementwise;
mod error;
#[cfg(target_arch = "x86_64")]
mod exp512;
mod fused;
mod gemm_paths;
mod index;
mod layout;
mod linalg;
mod math;
mod memory;
mod norm;
mod par;
mod partner;
mod pool;
mod random;
mod recycle;
mod reduce;
mod softmax;
mod special;
mod storage;
mod thin;
mod views;

pub use array::{Array, StorageRef};
pub use conv::Conv2dParams;
pub use denormal::flush_denormals;
pub use device::{deterministic, set_deterministic, Device, DeviceError};
pub use dtype::{DType, Element, Float, Number};
pub use error::{enter, in_context, normalize_path, Context, Entered, Site};
pub use fused::{Instr, MapFn, Program, Reduction, Window, ZipFn};
pub use index::Index;
pub use layout::{broadcast_shapes, contiguous_strides, Dim, Dims, Position, Shape, Strides};
pub use math::{cap_simd_level, detected_simd_level, simd_level, ParseSimdLevelError, SimdLevel};
pub use memory::MemoryMeter;
pub use pool::Pool2dParams;
pub use random::{draws_on_this_thread, Generator};
pub use recycle::{cached_bytes, release_cached_memory};
