#![doc = include_str!("../../../README.md")]
//! ---
//!
//! # ferrograd-nn
//!
//! The part of ferrograd that trains models. nn layers bring fast hand-written gradients,
//! autodiff brings everything else, and both meet in one function:
//!
//! - [`functional`]: layers and criteria as differentiable functions with hand-written
//!   gradient kernels;
//! - [`Module`] and [`Criterion`]: the stateful API of Torch's nn (`forward`, `backward`,
//!   `grad_parameters`, `train`/`evaluate`, save/load), with the built-ins in [`layers`],
//!   [`Sequential`](layers::Sequential), and [`AutoModule`]/[`AutoCriterion`] built from any
//!   differentiable function;
//! - [`functionalize`]: any module as a plain function of (parameters, input) for `grad`;
//! - [`models`] and [`primitives`]: the seed's model and module primitives; [`loss`]: its
//!   losses, batch-aware; [`util`]: casts, one-hot, lookups;
//! - [`optim`]: optimizers over parameter trees and learning-rate schedules; [`init`]:
//!   initial weights; [`checkpoint`]: safetensors files.
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

/// Panics with `ferrograd: `, the message, and the caller's line. Used inside
/// `#[track_caller]` functions (not closures), where `Location::caller()` is the user's
/// call.
macro_rules! fail {
    ($($arg:tt)+) => {
        panic!(
            "ferrograd: {} (at {})",
            format_args!($($arg)+),
            ferrograd::array::Site(std::panic::Location::caller())
        )
    };
}
pub(crate) use fail;

mod auto;
pub mod checkpoint;
pub mod data;
pub mod fns;
pub mod functional;
pub mod init;
pub mod layers;
pub mod loss;
pub mod models;
mod module;
pub mod optim;
pub mod primitives;
pub mod util;

pub use auto::{AutoCriterion, AutoModule};
pub use module::{functionalize, functionalize_criterion, Criterion, Module, ModuleState};
