//! # ferrograd-nn
//!
//! The part of ferrograd that trains models: functional layers with hand-written gradients
//! ([`functional`]) that mix freely with inferred ones inside `grad`.
#![warn(missing_docs)]

pub mod functional;
