//! What several of the nn test files share.

#![allow(dead_code)] // each test file uses part of this

use ferrograd::{gradcheck, gradgradcheck, Tensor};

/// The gradient (and with `second` the second derivative along random directions) of
/// `Σ f(params) ⊙ proj` against finite differences, panicking with `name` and the report.
#[track_caller]
pub fn against_finite_differences(
    name: &str,
    params: Vec<Tensor>,
    proj: &Tensor,
    second: bool,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    let loss = |p: &Vec<Tensor>| (&f(p) * proj).sum();
    let report = gradcheck(loss, &params, (), 1e-6);
    assert!(report.passed(), "{name}: {report}");
    if second {
        let report = gradgradcheck(loss, &params, (), 1e-5);
        assert!(report.passed(), "{name} (second order): {report}");
    }
}

/// The GPUs the machine has (none without one; then `skipped` says what was not compared).
pub fn gpus(skipped: &str) -> Vec<ferrograd::Device> {
    let gpus: Vec<ferrograd::Device> = ferrograd::Device::available()
        .into_iter()
        .filter(|d| !d.is_cpu())
        .collect();
    if gpus.is_empty() {
        eprintln!("skipped: no CUDA device {skipped}");
    }
    gpus
}
