//! Tests of the autodiff core: every primitive against finite differences (first and second
//! order), the seed's examples, analytic derivatives, the API surface, threads and memory.

mod analytic;
mod api;
mod assign;
mod checkpoint;
mod common;
mod custom;
mod debugger;
mod devices;
mod errors;
mod indexing;
mod linalg;
mod optimize;
mod primitives;
mod programs;
mod seed;
mod special;
mod threads;

/// Every test above again, with every `grad` in optimize mode and each replay checked bit
/// for bit against direct mode.
#[test]
fn the_suite_passes_in_optimize_check_mode() {
    ferrograd::rerun_tests_in_check_mode("the_suite_passes_in_optimize_check_mode");
}
