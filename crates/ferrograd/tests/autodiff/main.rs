//! Tests of the autodiff core: every primitive against finite differences (first and second
//! order), the seed's examples, analytic derivatives, the API surface, threads and memory.

mod analytic;
mod api;
mod assign;
mod common;
mod custom;
mod debugger;
mod errors;
mod primitives;
mod seed;
mod threads;
