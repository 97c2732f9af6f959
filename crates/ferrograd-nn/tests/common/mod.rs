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
