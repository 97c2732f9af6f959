//! Gradient checking: autodiff against central finite differences, leaf by leaf.

use std::fmt;

use crate::grad::{grad, Differentiable, GradOutput};
use crate::tree::{leaf_names, leaves, rebuild, Tree};
use crate::{Array, DType, Generator, Tensor};

/// The worst disagreement found in one leaf.
#[derive(Clone, Debug)]
pub struct LeafCheck {
    /// The leaf's name in the tree.
    pub name: String,
    /// Largest `|autodiff - finite difference|`.
    pub max_abs_error: f64,
    /// Largest error relative to `max(1, |finite difference|)`.
    pub max_error: f64,
    /// Flat index of the element with the largest error.
    pub worst_index: usize,
    /// The gradients compared at that element (autodiff, finite difference).
    pub worst: (f64, f64),
}

/// The outcome of [`gradcheck`].
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// One entry per float leaf.
    pub leaves: Vec<LeafCheck>,
    /// The tolerance used.
    pub tolerance: f64,
}

impl GradcheckReport {
    /// True when every leaf's error is within the tolerance.
    pub fn passed(&self) -> bool {
        self.leaves.iter().all(|l| l.max_error <= self.tolerance)
    }

    /// The largest error over all leaves.
    pub fn max_error(&self) -> f64 {
        self.leaves.iter().map(|l| l.max_error).fold(0.0, f64::max)
    }
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gradcheck ({}, tolerance {:e}):",
            if self.passed() { "passed" } else { "FAILED" },
            self.tolerance
        )?;
        for l in &self.leaves {
            writeln!(
                f,
                "  {:<24} max error {:.3e} (abs {:.3e}) at element {}: autodiff {:.8e}, finite difference {:.8e}",
                if l.name.is_empty() { "(tensor)" } else { &l.name },
                l.max_error,
                l.max_abs_error,
                l.worst_index,
                l.worst.0,
                l.worst.1
            )?;
        }
        Ok(())
    }
}

fn loss_value<F, P, Args>(f: &F, params: &P, args: Args) -> f64
where
    F: Differentiable<P, Args>,
    F::Output: GradOutput,
{
    f.invoke(params, args).loss().item_f64()
}

/// Compares the gradient of a scalar function with central finite differences on every
/// element of every float leaf of `params`. Use f64 parameters and inputs: the step is
/// `1e-6` in f64 (`1e-3` in f32), and `tolerance` bounds
/// `|autodiff - fd| / max(1, |fd|)`.
///
/// ```
/// use ferrograd::{gradcheck, Tensor};
/// let f = |x: &Tensor| x.sin().prod();
/// let report = gradcheck(f, &Tensor::from_vec(vec![0.3f64, 1.2, -0.7], &[3]), (), 1e-6);
/// assert!(report.passed(), "{report}");
/// ```
#[track_caller]
pub fn gradcheck<F, P, Args>(f: F, params: &P, args: Args, tolerance: f64) -> GradcheckReport
where
    P: Tree,
    Args: crate::ArgTree + Clone,
    F: Differentiable<P, Args>,
    F::Output: GradOutput,
{
    let (analytic, _) = grad(&|p: &P, a: Args| f.invoke(p, a)).call(params, (args.clone(),));
    compare_leaves(
        &leaves(params),
        leaf_names(params),
        &leaves(&analytic),
        tolerance,
        &mut |moved| loss_value(&f, &rebuild(params, moved), args.clone()),
    )
}

/// The body of [`gradcheck`], compiled once: each float leaf's gradient `analytic` against
/// central differences of `loss` (the function at the leaves given).
fn compare_leaves(
    originals: &[Tensor],
    names: Vec<String>,
    analytic: &[Tensor],
    tolerance: f64,
    loss: &mut dyn FnMut(Vec<Tensor>) -> f64,
) -> GradcheckReport {
    let mut report = GradcheckReport {
        leaves: Vec::new(),
        tolerance,
    };
    for (i, leaf) in originals.iter().enumerate() {
        if !leaf.dtype().is_float() {
            continue;
        }
        let eps = if leaf.dtype() == DType::F64 {
            1e-6
        } else {
            1e-3
        };
        let base = leaf.data().contiguous().to_f64_vec();
        let got = analytic[i].to_f64_vec();
        let mut check = LeafCheck {
            name: names[i].clone(),
            max_abs_error: 0.0,
            max_error: 0.0,
            worst_index: 0,
            worst: (0.0, 0.0),
        };
        for k in 0..base.len() {
            let mut at = |delta: f64| {
                let mut v = base.clone();
                v[k] += delta;
                let moved = Tensor::new(Array::from_vec(v, leaf.shape()).to_dtype(leaf.dtype()));
                let mut new_leaves = originals.to_vec();
                new_leaves[i] = moved;
                loss(new_leaves)
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            let abs = (got[k] - fd).abs();
            let rel = abs / fd.abs().max(1.0);
            if rel > check.max_error || (rel.is_nan() && !check.max_error.is_nan()) {
                check.max_error = rel;
                check.worst_index = k;
                check.worst = (got[k], fd);
            }
            check.max_abs_error = check.max_abs_error.max(abs);
        }
        report.leaves.push(check);
    }
    report
}

/// Checks second derivatives: [`gradcheck`] of `p ↦ <∇f(p), v>` for a random direction `v`
/// (seeded, so the check is reproducible), which compares Hessian-vector products with
/// finite differences of the gradient.
#[track_caller]
pub fn gradgradcheck<F, P, Args>(f: F, params: &P, args: Args, tolerance: f64) -> GradcheckReport
where
    P: Tree,
    Args: crate::ArgTree + Clone,
    F: Differentiable<P, Args>,
    F::Output: GradOutput,
{
    let mut rng = Generator::new(0x5eed);
    let directions: Vec<Tensor> = leaves(params)
        .iter()
        .map(|t| {
            Tensor::new(
                rng.uniform(t.shape(), -1.0, 1.0, DType::F64)
                    .to_dtype(t.dtype()),
            )
        })
        .collect();
    let call_f = |p: &P, a: Args| f.invoke(p, a);
    let directional = |p: &P, a: Args| {
        let (g, _) = grad(&call_f).call(p, (a,));
        crate::grad::tree_dot(&g, &directions)
    };
    gradcheck(directional, params, (args,), tolerance)
}
