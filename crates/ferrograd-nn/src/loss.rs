//! The seed's losses, batch-aware: each works per row of a batch (the seed's
//! `crossEntropy` normalized over the whole batch at once, a known bug) and is numerically
//! stable. They *sum* over the batch and take one-hot (or soft) targets, as the seed's did;
//! their names say so, because `functional`'s losses follow PyTorch (class-index targets,
//! mean over the batch): `cross_entropy_onehot_sum` here against `F::cross_entropy` there,
//! `bce_with_logits_sum` against `F::bce_with_logits`.

use ferrograd::Tensor;

/// `-Σ out ⊙ target` for log-probabilities `out` (the seed's `logMultinomialLoss`).
#[track_caller]
pub fn log_multinomial(out: &Tensor, target: &Tensor) -> Tensor {
    -(out * target).sum()
}

/// `-Σ t log(out) + (1 - t) log(1 - out)` for probabilities `out`, with `out + p` first when
/// `p` is given (the seed's `logBCELoss`).
#[track_caller]
pub fn log_bce(out: &Tensor, target: &Tensor, p: Option<f64>) -> Tensor {
    let o = match p {
        Some(p) => out + p,
        None => out.clone(),
    };
    -(target * &o.log() + &target.rsub_scalar(1.0) * &o.rsub_scalar(1.0).log()).sum()
}

/// Cross-entropy of logits `out` against one-hot (or soft) `target`, per row of the last
/// dim: returns `(-Σ log_softmax(out) ⊙ target, log_softmax(out))`.
#[track_caller]
pub fn cross_entropy_onehot_sum(out: &Tensor, target: &Tensor) -> (Tensor, Tensor) {
    let y_hat = out.log_softmax(-1);
    (-(&y_hat * target).sum(), y_hat)
}

/// Binary cross-entropy of logits `out` against targets in `[0, 1]`, summed, computed
/// stably as `Σ max(x, 0) - x t + log(1 + e^-|x|)` (the seed's `binaryCrossEntropy`);
/// returns `(loss, sigmoid(out))`.
#[track_caller]
pub fn bce_with_logits_sum(out: &Tensor, target: &Tensor) -> (Tensor, Tensor) {
    (
        crate::functional::bce_with_logits_terms(out, target).sum(),
        out.sigmoid(),
    )
}

/// `Σ (out - target)²` (no mean, as the seed's `leastSquares`); returns `(loss, out)`.
#[track_caller]
pub fn least_squares(out: &Tensor, target: &Tensor) -> (Tensor, Tensor) {
    ((out - target).square().sum(), out.clone())
}

/// Pairwise ranking hinge: `Σ_{i: t=1, j: t=0} max(0, margin - (out_i - out_j))` for a 1-d
/// `out` and 0/1 `target`; returns `(loss, out)`. Every pair is computed and the pairs
/// that are not (positive, negative) are masked out, so the shapes do not depend on the
/// targets and optimize mode replays the loss for any targets.
#[track_caller]
pub fn margin(out: &Tensor, target: &Tensor, margin: f64) -> (Tensor, Tensor) {
    let pos = target.gt_scalar(0.5).to_dtype(out.dtype());
    let neg = target.le_scalar(0.5).to_dtype(out.dtype());
    let pairs = &pos.unsqueeze(1) * &neg.unsqueeze(0);
    let diffs = &out.unsqueeze(1) - &out.unsqueeze(0);
    (
        (&diffs.rsub_scalar(margin).relu() * &pairs).sum(),
        out.clone(),
    )
}
