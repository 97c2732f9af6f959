#![allow(clippy::needless_range_loop)] // index arithmetic reads clearer with explicit positions

//! Tests of the array layer: each kernel against a naive reference on random shapes and
//! layouts (contiguous, permuted, narrowed, broadcast), including empty and size-1 dims.

mod common;
mod conv_pool;
mod create;
mod devices;
mod display;
mod elementwise;
mod errors;
mod fused;
mod index;
mod linalg;
mod reduce;
mod softmax;
mod threads;
mod views;
