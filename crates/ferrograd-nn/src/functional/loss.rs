//! Criteria: mean squared error, class negative log-likelihood, cross-entropy, binary
//! cross-entropy; and a weighted sum of criteria over paired inputs (the seed's
//! `ParallelCriterion`). Each is written with core primitives, so its gradient is inferred
//! at any order and optimize mode sees inside it.

use ferrograd::{DType, Tensor};

/// Checks that `target` holds one class index per row of `scores`.
#[track_caller]
fn check_classes(op: &str, scores: &Tensor, target: &Tensor) {
    let rows_ok = match scores.ndim() {
        1 => target.numel() == 1,
        2 => target.ndim() == 1 && target.size(0) == scores.size(0),
        _ => false,
    };
    if target.dtype() != DType::I64 || !rows_ok {
        crate::fail!(
            "{op}: needs scores [N, C] (or [C]) and i64 class indices [N] (or one), got {:?} and {:?} {}",
            scores.shape(),
            target.shape(),
            target.dtype()
        );
    }
    super::check_index_range(op, "class index", target, scores.size(-1));
}

/// Targets as a [N, 1] index for gather, and N.
fn rows(scores: &Tensor, target: &Tensor) -> (Tensor, Tensor, usize) {
    let s = if scores.ndim() == 1 {
        scores.unsqueeze(0)
    } else {
        scores.clone()
    };
    let n = s.size(0);
    (s, target.reshape(&[n, 1]), n)
}

/// Mean squared error `mean((prediction - target)²)`.
#[track_caller]
pub fn mse(prediction: &Tensor, target: &Tensor) -> Tensor {
    if prediction.shape() != target.shape() {
        crate::fail!(
            "mse: prediction {:?} and target {:?} differ in shape",
            prediction.shape(),
            target.shape()
        );
    }
    (prediction - target).square().mean()
}

/// Mean negative log-likelihood of class `target` (i64 `[N]`) under log-probabilities
/// `log_probs` (`[N, C]`, or `[C]` with one target).
#[track_caller]
pub fn class_nll(log_probs: &Tensor, target: &Tensor) -> Tensor {
    check_classes("class_nll", log_probs, target);
    let (s, t, n) = rows(log_probs, target);
    s.gather(1, &t).sum() * (-1.0 / n as f64)
}

/// Cross-entropy of `logits` (`[N, C]`) against class `target` (i64 `[N]`): the fused
/// log-softmax primitive, then the negative log-likelihood. The gradient, `(softmax -
/// onehot) / N`, comes from the log-softmax's fused backward primitive.
#[track_caller]
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    check_classes("cross_entropy", logits, target);
    let (s, t, n) = rows(logits, target);
    s.log_softmax(1).gather(1, &t).sum() * (-1.0 / n as f64)
}

/// Binary cross-entropy `-mean(t log p + (1 - t) log(1 - p))` of probabilities `p` against
/// targets in `[0, 1]`. As in PyTorch, each log is clamped at -100, so a saturated
/// prediction (`p` of exactly 0 or 1) costs at most 100 per element instead of infinity; its
/// gradient is zero there (PyTorch's hand-written gradient is `(p - t) / max(p (1 - p),
/// 1e-12)`, huge but finite, where this one is the derivative of the clamped loss).
#[track_caller]
pub fn bce(probabilities: &Tensor, target: &Tensor) -> Tensor {
    if probabilities.shape() != target.shape() {
        crate::fail!(
            "bce: probabilities {:?} and target {:?} differ in shape",
            probabilities.shape(),
            target.shape()
        );
    }
    let p = probabilities;
    let t = target;
    // max(ln x, -100) as ln(max(x, e^-100)): the same value, and a finite gradient (zero
    // where the log is clamped) instead of 0 · ∞
    let log = |x: &Tensor| x.clamp(Some((-100.0f64).exp()), None).log();
    -(t * &log(p) + &t.rsub_scalar(1.0) * &log(&p.rsub_scalar(1.0))).mean()
}

/// Binary cross-entropy of `logits` against targets in `[0, 1]`, averaged (PyTorch's
/// `F.binary_cross_entropy_with_logits`): `mean(max(x, 0) - x t + ln(1 + e^-|x|))`, stable
/// for any logit.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![0.0f64, 1000.0], &[2]);
/// let t = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
/// assert!((F::bce_with_logits(&x, &t).item::<f64>() - 2f64.ln() / 2.0).abs() < 1e-15);
/// ```
#[track_caller]
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Tensor {
    bce_with_logits_terms(logits, target).mean()
}

/// The elementwise terms of [`bce_with_logits`].
#[track_caller]
pub(crate) fn bce_with_logits_terms(x: &Tensor, t: &Tensor) -> Tensor {
    if x.shape() != t.shape() {
        crate::fail!(
            "bce_with_logits: logits {:?} and target {:?} differ in shape",
            x.shape(),
            t.shape()
        );
    }
    // ln(1 + e^x) - x t; softplus is exact in both tails and its gradient at 0 is σ(0) =
    // 1/2 (the form max(x, 0) + ln(1 + e^-|x|) gave 0 there: the kinks of max and |x|)
    x.softplus(1.0, f64::INFINITY) - x * t
}

/// A criterion as a function of (input, target).
pub type CriterionFn<'a> = &'a dyn Fn(&Tensor, &Tensor) -> Tensor;

/// A weighted sum of criteria over paired inputs: `Σ weight_i * criterion_i(input_i,
/// target_i)` (the seed's `ParallelCriterion`).
#[track_caller]
pub fn parallel_criterion(terms: &[(f64, CriterionFn<'_>, &Tensor, &Tensor)]) -> Tensor {
    let mut total: Option<Tensor> = None;
    for (w, criterion, input, target) in terms {
        let term = criterion(input, target) * *w;
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    match total {
        Some(total) => total,
        None => crate::fail!("parallel_criterion: needs at least one criterion"),
    }
}

/// `positive` where `target` is 1, `negative` where it is -1, 0 elsewhere (PyTorch's rule
/// for the ±1-labelled embedding losses).
fn by_label(target: &Tensor, positive: &Tensor, negative: &Tensor) -> Tensor {
    let zero = Tensor::zeros(&[], positive.dtype());
    let pos = target.eq_scalar(1.0).where_cond(positive, &zero);
    let neg = target.eq_scalar(-1.0).where_cond(negative, &zero);
    &pos + &neg
}

/// How a loss reduces its elementwise terms (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduce {
    /// The mean over every element (PyTorch's default).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: the terms, in the input's shape.
    None,
    /// The sum divided by the batch size (dim 0): `kl_div`'s mathematically right mean.
    BatchMean,
}

impl Reduce {
    /// Applies the reduction to elementwise `terms`.
    pub fn apply(self, terms: &Tensor) -> Tensor {
        match self {
            Reduce::Mean => terms.mean(),
            Reduce::Sum => terms.sum(),
            Reduce::None => terms.clone(),
            Reduce::BatchMean => {
                // (an empty batch: 0/0, NaN, as the mean's and PyTorch's)
                let n = if terms.ndim() == 0 { 1 } else { terms.size(0) };
                terms.sum() * (1.0 / n as f64)
            }
        }
    }
}

/// Panics naming `op` unless `a` and `b` have one shape.
#[track_caller]
fn same_shape(op: &str, what: (&str, &str), a: &Tensor, b: &Tensor) {
    if a.shape() != b.shape() {
        crate::fail!(
            "{op}: {} {:?} and {} {:?} differ in shape",
            what.0,
            a.shape(),
            what.1,
            b.shape()
        );
    }
}

/// Mean absolute error `|prediction - target|`, reduced (PyTorch's `l1_loss`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let p = Tensor::from_vec(vec![1.0f64, -2.0], &[2]);
/// let t = Tensor::from_vec(vec![0.5f64, 0.0], &[2]);
/// assert_eq!(F::l1_loss(&p, &t, Reduce::Sum).item::<f64>(), 2.5);
/// ```
#[track_caller]
pub fn l1_loss(prediction: &Tensor, target: &Tensor, reduction: Reduce) -> Tensor {
    same_shape("l1_loss", ("prediction", "target"), prediction, target);
    reduction.apply(&(prediction - target).abs())
}

/// Squared error `(prediction - target)²`, reduced (PyTorch's `mse_loss`; [`mse`] is its
/// mean).
#[track_caller]
pub fn mse_loss(prediction: &Tensor, target: &Tensor, reduction: Reduce) -> Tensor {
    same_shape("mse_loss", ("prediction", "target"), prediction, target);
    reduction.apply(&(prediction - target).square())
}

/// Smooth L1: `0.5 d² / β` where `|d| < β`, else `|d| - 0.5 β`, for `d = prediction -
/// target` (PyTorch's `smooth_l1_loss`; `β = 0` is the L1 loss).
#[track_caller]
pub fn smooth_l1_loss(
    prediction: &Tensor,
    target: &Tensor,
    beta: f64,
    reduction: Reduce,
) -> Tensor {
    same_shape(
        "smooth_l1_loss",
        ("prediction", "target"),
        prediction,
        target,
    );
    check_positive("smooth_l1_loss", "beta", beta);
    let diff = prediction - target;
    let d = diff.abs();
    if beta == 0.0 {
        return reduction.apply(&d);
    }
    let near = d.lt_scalar(beta);
    // (the square of the signed difference, not of |d|: its second derivative is 1/β at
    // d = 0 too, where |d|'s kink gave 0)
    let terms = Tensor::where_cond(&near, &(diff.square() * (0.5 / beta)), &(&d - 0.5 * beta));
    reduction.apply(&terms)
}

/// Huber: `0.5 d²` where `|d| < δ`, else `δ (|d| - 0.5 δ)` (PyTorch's `huber_loss`;
/// smooth L1 times δ).
#[track_caller]
pub fn huber_loss(prediction: &Tensor, target: &Tensor, delta: f64, reduction: Reduce) -> Tensor {
    same_shape("huber_loss", ("prediction", "target"), prediction, target);
    check_positive("huber_loss", "delta", delta);
    let diff = prediction - target;
    let d = diff.abs();
    let near = d.lt_scalar(delta);
    let terms = Tensor::where_cond(&near, &(diff.square() * 0.5), &((&d - 0.5 * delta) * delta));
    reduction.apply(&terms)
}

/// Kullback-Leibler divergence of `target` from the distribution whose log-probabilities
/// are `input`: `t (ln t - input)`, 0 where `t = 0` (PyTorch's `kl_div`; with `log_target`
/// the target is given as log-probabilities, `eᵗ (t - input)`). Use [`Reduce::BatchMean`]
/// for the divergence per example.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let q = Tensor::from_vec(vec![0.5f64, 0.5], &[1, 2]).log();
/// let p = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]);
/// let kl = F::kl_div(&q, &p, Reduce::BatchMean, false).item::<f64>();
/// assert!((kl - 2f64.ln()).abs() < 1e-15);
/// ```
#[track_caller]
pub fn kl_div(input: &Tensor, target: &Tensor, reduction: Reduce, log_target: bool) -> Tensor {
    same_shape("kl_div", ("input", "target"), input, target);
    let terms = if log_target {
        &target.exp() * &(target - input)
    } else {
        // t ln t with 0 ln 0 = 0, and no NaN gradient through the masked branch
        let positive = target.gt_scalar(0.0);
        let safe = Tensor::where_cond(&positive, target, &target.ones_like());
        let t_log_t = target * &safe.log();
        &t_log_t - &(target * input)
    };
    reduction.apply(&terms)
}

#[track_caller]
fn check_positive(op: &str, name: &str, value: f64) {
    if !(value.is_finite() && value >= 0.0) {
        crate::fail!("{op}: {name} must be finite and >= 0, got {value}");
    }
}

/// The options of [`cross_entropy_with`], PyTorch's: class weights, an ignored target
/// value, label smoothing and the reduction.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropy<'a> {
    /// A weight per class (`[C]`): each element's term is scaled by its target's weight,
    /// and the mean divides by the sum of those weights.
    pub weight: Option<&'a Tensor>,
    /// Targets with this value contribute nothing and are left out of the mean.
    pub ignore_index: Option<i64>,
    /// ε in [0, 1]: the target distribution is `(1 - ε) onehot + ε / C`.
    pub label_smoothing: f64,
    /// How the terms are reduced (the mean by default; `BatchMean` divides the sum by N).
    pub reduction: Reduce,
}

/// Cross-entropy of `logits` `[N, C]` or `[N, C, d...]` against class indices `target`
/// (i64 `[N]` or `[N, d...]`) with PyTorch's options (`F.cross_entropy`'s `weight`,
/// `ignore_index`, `label_smoothing` and `reduction`). [`cross_entropy`] is this with the
/// defaults.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, CrossEntropy};
/// let logits = Tensor::from_vec(vec![2.0f64, 0.0, 0.0, 2.0], &[2, 2]);
/// let target = Tensor::from_vec(vec![0i64, -100], &[2]);
/// let options = CrossEntropy { ignore_index: Some(-100), ..Default::default() };
/// let loss = F::cross_entropy_with(&logits, &target, options).item::<f64>();
/// assert!((loss - (1.0 + (-2.0f64).exp()).ln()).abs() < 1e-15); // only the first row
/// ```
#[track_caller]
pub fn cross_entropy_with(logits: &Tensor, target: &Tensor, options: CrossEntropy<'_>) -> Tensor {
    let site = ferrograd::array::Site(std::panic::Location::caller());
    let (logits, target) = if logits.ndim() == 1 {
        (logits.unsqueeze(0), target.reshape(&[1]))
    } else {
        (logits.clone(), target.clone())
    };
    let mut expected = logits.shape().to_vec();
    expected.remove(1);
    if target.dtype() != DType::I64 || target.shape() != expected.as_slice() {
        panic!(
            "ferrograd: cross_entropy: needs logits [N, C, ...] and i64 class indices [N, ...], got {:?} and {:?} {} (at {site})",
            logits.shape(),
            target.shape(),
            target.dtype().name()
        );
    }
    let eps = options.label_smoothing;
    if !(0.0..=1.0).contains(&eps) {
        panic!(
            "ferrograd: cross_entropy: label_smoothing must be in [0, 1], got {eps} (at {site})"
        );
    }
    let c = logits.size(1);
    if let Some(w) = options.weight {
        if w.shape() != [c] {
            panic!(
                "ferrograd: cross_entropy: weight must be [C] = [{c}], got {:?} (at {site})",
                w.shape()
            );
        }
    }
    let kept = match options.ignore_index {
        Some(i) => target.ne_scalar(i as f64),
        None => target.ge_scalar(i64::MIN as f64), // all true
    };
    let safe = target.masked_fill(&kept.logical_not(), 0.0);
    super::check_index_range("cross_entropy", "class index", &safe, c);
    let log_p = logits.log_softmax(1);
    let picked = log_p.gather(1, &safe.unsqueeze(1)).squeeze_dim(1);
    let kept_f = kept.to_dtype(log_p.dtype());
    // each element's weight: its target's class weight, 0 where ignored
    let w_t = match options.weight {
        Some(w) => {
            let flat = safe.reshape(&[safe.numel()]);
            &w.to_dtype(log_p.dtype())
                .gather(0, &flat)
                .reshape(safe.shape())
                * &kept_f
        }
        None => kept_f.clone(),
    };
    let reduce = |terms: &Tensor| match options.reduction {
        Reduce::Mean => terms.sum() / w_t.sum(),
        other => other.apply(terms),
    };
    let nll = reduce(&-(&picked * &w_t));
    if eps == 0.0 {
        return nll;
    }
    // the uniform part: -Σ_c w_c log p_c per element, 0 where ignored
    let weighted = match options.weight {
        Some(w) => {
            let mut shape = vec![1; log_p.ndim()];
            shape[1] = c;
            &log_p * &w.to_dtype(log_p.dtype()).reshape(&shape)
        }
        None => log_p.clone(),
    };
    let smooth = reduce(&-(&weighted.sum_dim(1, false) * &kept_f));
    nll * (1.0 - eps) + smooth * (eps / c as f64)
}

/// Negative log-likelihood of class indices `target` (i64 `[N]`, or `[N, d...]`) under
/// log-probabilities `log_probs` (`[N, C]`, or `[N, C, d...]` for a class per position, as
/// in segmentation), reduced (PyTorch's `F.nll_loss`; [`class_nll`] is its mean). For
/// weights and `ignore_index` use [`cross_entropy_with`] on log-probabilities, which it
/// accepts unchanged (log-softmax of log-probabilities is the identity).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let lp = Tensor::from_vec(vec![-0.5f64, -1.0, -2.0, -0.25], &[2, 2]);
/// let t = Tensor::from_vec(vec![1i64, 0], &[2]);
/// assert_eq!(F::nll_loss(&lp, &t, Reduce::None).to_vec::<f64>(), vec![1.0, 2.0]);
/// ```
#[track_caller]
pub fn nll_loss(log_probs: &Tensor, target: &Tensor, reduction: Reduce) -> Tensor {
    if log_probs.ndim() > 2 {
        // a class per position: the term at each is the log-probability its class has
        let mut positions = log_probs.shape().to_vec();
        let c = positions.remove(1);
        if target.dtype() != DType::I64 || target.shape() != positions.as_slice() {
            crate::fail!(
                "nll_loss: needs log-probabilities [N, C, d...] and i64 class indices [N, d...], got {:?} and {:?} {}",
                log_probs.shape(),
                target.shape(),
                target.dtype().name()
            );
        }
        super::check_index_range("nll_loss", "class index", target, c);
        let terms = -log_probs.gather(1, &target.unsqueeze(1)).squeeze_dim(1);
        return reduction.apply(&terms);
    }
    check_classes("nll_loss", log_probs, target);
    let (s, t, n) = rows(log_probs, target);
    let terms = -s.gather(1, &t).reshape(&[n]);
    let terms = if log_probs.ndim() == 1 {
        terms.reshape(&[] as &[usize])
    } else {
        terms
    };
    reduction.apply(&terms)
}

/// Binary cross-entropy of probabilities against targets in `[0, 1]`, reduced (PyTorch's
/// `F.binary_cross_entropy`; each log clamped at -100 as there; [`bce`] is its mean).
///
/// The gradient is the exact derivative of this (clamped) loss. PyTorch's backward instead
/// divides by `max(p (1 - p), 1e-12)`, so the two differ only where a probability lies
/// within about 1e-12 of 0 or 1: there PyTorch's gradient is bounded by 10¹², and this one
/// is 0 where the clamp holds (a probability of exactly 0 for a target of 1, say). Prefer
/// [`binary_cross_entropy_with_logits`] on logits, which has neither edge.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let p = Tensor::from_vec(vec![0.5f64, 0.0], &[2]);
/// let t = Tensor::from_vec(vec![1.0f64, 1.0], &[2]);
/// assert_eq!(F::binary_cross_entropy(&p, &t, Reduce::None).to_vec::<f64>(), vec![2f64.ln(), 100.0]);
/// ```
#[track_caller]
pub fn binary_cross_entropy(probabilities: &Tensor, target: &Tensor, reduction: Reduce) -> Tensor {
    same_shape(
        "binary_cross_entropy",
        ("probabilities", "target"),
        probabilities,
        target,
    );
    let log = |x: &Tensor| x.clamp(Some((-100.0f64).exp()), None).log();
    let (p, t) = (probabilities, target);
    reduction.apply(&-(t * &log(p) + &t.rsub_scalar(1.0) * &log(&p.rsub_scalar(1.0))))
}

/// Binary cross-entropy of logits against targets in `[0, 1]`, reduced (PyTorch's
/// `F.binary_cross_entropy_with_logits`; [`bce_with_logits`] is its mean).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let x = Tensor::from_vec(vec![0.0f64, 0.0], &[2]);
/// let t = Tensor::from_vec(vec![1.0f64, 0.0], &[2]);
/// assert_eq!(F::binary_cross_entropy_with_logits(&x, &t, Reduce::Sum).item::<f64>(), 2.0 * 2f64.ln());
/// ```
#[track_caller]
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    target: &Tensor,
    reduction: Reduce,
) -> Tensor {
    reduction.apply(&bce_with_logits_terms(logits, target))
}

/// `max(0, margin - y x)` for labels `y` of ±1: the hinge loss, the seed's
/// `MarginCriterion`, reduced.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let x = Tensor::from_vec(vec![0.3f64, -2.0], &[2]);
/// let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2]);
/// assert_eq!(F::hinge_loss(&x, &y, 1.0, Reduce::None).to_vec::<f64>(), vec![0.7, 0.0]);
/// ```
#[track_caller]
pub fn hinge_loss(input: &Tensor, target: &Tensor, margin: f64, reduction: Reduce) -> Tensor {
    same_shape("hinge_loss", ("input", "target"), input, target);
    reduction.apply(&(input * target).rsub_scalar(margin).relu())
}

/// `max(0, -y (x₁ - x₂) + margin)` for labels `y` of ±1 (PyTorch's
/// `F.margin_ranking_loss`): `y = 1` asks for `x₁` to rank above `x₂`.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let (a, b) = (Tensor::from_vec(vec![1.0f64, 1.0], &[2]), Tensor::from_vec(vec![0.5f64, 0.5], &[2]));
/// let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2]);
/// assert_eq!(F::margin_ranking_loss(&a, &b, &y, 0.0, Reduce::None).to_vec::<f64>(), vec![0.0, 0.5]);
/// ```
#[track_caller]
pub fn margin_ranking_loss(
    input1: &Tensor,
    input2: &Tensor,
    target: &Tensor,
    margin: f64,
    reduction: Reduce,
) -> Tensor {
    same_shape("margin_ranking_loss", ("input1", "input2"), input1, input2);
    // (a target of another shape broadcast silently: [N, 1] inputs against [N] labels
    // ranked every pair)
    same_shape("margin_ranking_loss", ("input1", "target"), input1, target);
    let terms = (&-target * &(input1 - input2)).add_scalar(margin).relu();
    reduction.apply(&terms)
}

/// `x` where `y = 1` and `max(0, margin - x)` where `y = -1` (PyTorch's
/// `F.hinge_embedding_loss`; `x` usually a distance).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let d = Tensor::from_vec(vec![0.3f64, 0.3], &[2]);
/// let y = Tensor::from_vec(vec![1.0f64, -1.0], &[2]);
/// assert_eq!(F::hinge_embedding_loss(&d, &y, 1.0, Reduce::None).to_vec::<f64>(), vec![0.3, 0.7]);
/// ```
#[track_caller]
pub fn hinge_embedding_loss(
    input: &Tensor,
    target: &Tensor,
    margin: f64,
    reduction: Reduce,
) -> Tensor {
    same_shape("hinge_embedding_loss", ("input", "target"), input, target);
    let terms = by_label(target, input, &input.rsub_scalar(margin).relu());
    reduction.apply(&terms)
}

/// `ln(1 + e^(-y x))` for labels `y` of ±1, computed stably (PyTorch's
/// `F.soft_margin_loss`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let x = Tensor::from_vec(vec![0.0f64], &[1]);
/// let y = Tensor::from_vec(vec![1.0f64], &[1]);
/// assert_eq!(F::soft_margin_loss(&x, &y, Reduce::Mean).item::<f64>(), 2f64.ln());
/// ```
#[track_caller]
pub fn soft_margin_loss(input: &Tensor, target: &Tensor, reduction: Reduce) -> Tensor {
    same_shape("soft_margin_loss", ("input", "target"), input, target);
    // ln(1 + e^z), exact in both tails, with the gradient σ(z) at z = 0 too
    let z = -(input * target);
    reduction.apply(&z.softplus(1.0, f64::INFINITY))
}

/// The multi-label one-versus-all loss of logits `[N, C]` against 0/1 targets `[N, C]`:
/// per sample `-mean_c(y log σ(x) + (1 - y) log σ(-x))`, then reduced over the batch
/// (PyTorch's `F.multilabel_soft_margin_loss`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let x = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]);
/// let y = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]);
/// assert_eq!(F::multilabel_soft_margin_loss(&x, &y, Reduce::Mean).item::<f64>(), 2f64.ln());
/// ```
#[track_caller]
pub fn multilabel_soft_margin_loss(input: &Tensor, target: &Tensor, reduction: Reduce) -> Tensor {
    same_shape(
        "multilabel_soft_margin_loss",
        ("input", "target"),
        input,
        target,
    );
    let per_class = bce_with_logits_terms(input, target);
    let per_sample = if input.ndim() == 0 {
        per_class
    } else {
        per_class.mean_dim(-1, false)
    };
    reduction.apply(&per_sample)
}

/// `1 - cos(x₁, x₂)` where `y = 1` and `max(0, cos(x₁, x₂) - margin)` where `y = -1`, the
/// cosine over dim 1 of `[N, D]` inputs (or of `[D]` vectors) with PyTorch's 1e-12 guard in
/// the norms (PyTorch's `F.cosine_embedding_loss`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let a = Tensor::from_vec(vec![1.0f64, 0.0], &[1, 2]);
/// let b = Tensor::from_vec(vec![0.0f64, 2.0], &[1, 2]);
/// let y = Tensor::from_vec(vec![1.0f64], &[1]);
/// assert_eq!(F::cosine_embedding_loss(&a, &b, &y, 0.0, Reduce::Sum).item::<f64>(), 1.0); // cos = 0
/// ```
#[track_caller]
pub fn cosine_embedding_loss(
    input1: &Tensor,
    input2: &Tensor,
    target: &Tensor,
    margin: f64,
    reduction: Reduce,
) -> Tensor {
    same_shape(
        "cosine_embedding_loss",
        ("input1", "input2"),
        input1,
        input2,
    );
    let dim = input1.ndim().saturating_sub(1);
    let pairs = &input1.shape()[..dim];
    if target.shape() != pairs {
        crate::fail!(
            "cosine_embedding_loss: target {:?} must have one label per pair of inputs {:?}: {:?}",
            target.shape(),
            input1.shape(),
            pairs
        );
    }
    let dot = (input1 * input2).sum_dim(dim, false);
    let m1 = input1.square().sum_dim(dim, false).add_scalar(1e-12);
    let m2 = input2.square().sum_dim(dim, false).add_scalar(1e-12);
    let cos = &dot / &(&m1 * &m2).sqrt();
    let terms = by_label(
        target,
        &cos.rsub_scalar(1.0),
        &cos.add_scalar(-margin).relu(),
    );
    reduction.apply(&terms)
}

/// The multi-class hinge loss of scores `[N, C]` against class indices (i64 `[N]`): per
/// sample `Σ_{i ≠ y} w_y max(0, margin - x_y + x_i)^p / C` with `p` 1 or 2 and optional
/// class weights `w` (PyTorch's `F.multi_margin_loss`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// let x = Tensor::from_vec(vec![0.1f64, 0.2, 0.4, 0.8], &[1, 4]);
/// let y = Tensor::from_vec(vec![3i64], &[1]);
/// // (max(0, 1 - 0.8 + 0.1) + max(0, 1 - 0.8 + 0.2) + max(0, 1 - 0.8 + 0.4)) / 4
/// let loss = F::multi_margin_loss(&x, &y, 1, 1.0, None, Reduce::Mean).item::<f64>();
/// assert!((loss - 0.325).abs() < 1e-15);
/// ```
#[track_caller]
pub fn multi_margin_loss(
    input: &Tensor,
    target: &Tensor,
    p: u32,
    margin: f64,
    weight: Option<&Tensor>,
    reduction: Reduce,
) -> Tensor {
    check_classes("multi_margin_loss", input, target);
    if p != 1 && p != 2 {
        crate::fail!("multi_margin_loss: p must be 1 or 2, got {p}");
    }
    let (s, t, n) = rows(input, target);
    let c = s.size(1);
    let picked = s.gather(1, &t);
    let mut terms = (&s - &picked).add_scalar(margin).relu();
    if p == 2 {
        terms = terms.square();
    }
    // not the target class itself
    let classes = super::on_device_of(
        Tensor::arange(0.0, c as f64, 1.0, DType::I64).reshape(&[1, c]),
        input,
    );
    let others = classes.ne(&t).to_dtype(s.dtype());
    terms = &terms * &others;
    if let Some(w) = weight {
        terms = &terms * &w.index_select(0, &t.reshape(&[n])).reshape(&[n, 1]);
    }
    let per_sample = terms.sum_dim(1, false) * (1.0 / c as f64);
    let per_sample = if input.ndim() == 1 {
        per_sample.reshape(&[] as &[usize])
    } else {
        per_sample
    };
    reduction.apply(&per_sample)
}

/// Connectionist temporal classification (Graves et al., 2006; PyTorch's `F.ctc_loss`):
/// the negative log-likelihood of each target sequence summed over every alignment of it
/// with the input frames, blanks and repeats allowed.
///
/// `log_probs` is `[T, N, C]` (log-softmax over the classes), `targets` `[N, S]` i64 class
/// indices padded to the longest target (values past each `target_lengths[n]` are
/// ignored), `input_lengths` and `target_lengths` one per batch element, `blank` the blank
/// class. `Reduce::Mean` divides each loss by its target length, then averages (PyTorch's
/// mean); `zero_infinity` turns the infinite losses of impossible alignments (inputs too
/// short for their targets) into zeros with zero gradient.
///
/// The forward recursion over alignment states is written with tensor ops in log space
/// (unreachable states hold -1e30, not -∞, so no NaN reaches the gradient), and autodiff
/// gives the gradient at any order.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Reduce};
/// // two frames, classes {blank, a}: the target "a" is aligned as "a a", "a _" or "_ a"
/// let p = Tensor::from_vec(vec![0.5f64, 0.5, 0.5, 0.5], &[2, 1, 2]).log();
/// let targets = Tensor::from_vec(vec![1i64], &[1, 1]);
/// let loss = F::ctc_loss(&p, &targets, &[2], &[1], 0, Reduce::Sum, false);
/// assert!((loss.item::<f64>() + 0.75f64.ln()).abs() < 1e-12);
/// ```
#[allow(clippy::too_many_arguments)] // PyTorch's argument list
#[track_caller]
pub fn ctc_loss(
    log_probs: &Tensor,
    targets: &Tensor,
    input_lengths: &[usize],
    target_lengths: &[usize],
    blank: usize,
    reduction: Reduce,
    zero_infinity: bool,
) -> Tensor {
    const NEG: f64 = -1e30;
    let site = ferrograd::array::Site(std::panic::Location::caller());
    let fail = |why: String| -> ! {
        panic!(
            "ferrograd: ctc_loss: {why} (log_probs {:?}, targets {:?}) (at {site})",
            log_probs.shape(),
            targets.shape()
        )
    };
    if log_probs.ndim() != 3 || targets.ndim() != 2 || targets.dtype() != DType::I64 {
        fail("expects log_probs [T, N, C] and i64 targets [N, S]".to_string());
    }
    let (t_max, n, c) = (log_probs.size(0), log_probs.size(1), log_probs.size(2));
    let s_max = targets.size(1);
    if targets.size(0) != n || input_lengths.len() != n || target_lengths.len() != n {
        fail(format!(
            "{n} batch elements need {n} target rows and lengths, got {} rows, {} input \
             lengths, {} target lengths",
            targets.size(0),
            input_lengths.len(),
            target_lengths.len()
        ));
    }
    if let Some(&bad) = input_lengths.iter().find(|&&l| l > t_max || l == 0) {
        fail(format!("input length {bad} is not in 1..={t_max}"));
    }
    if let Some(&bad) = target_lengths.iter().find(|&&l| l > s_max) {
        fail(format!(
            "target length {bad} exceeds the padded length {s_max}"
        ));
    }
    if blank >= c {
        fail(format!("blank {blank} is not one of the {c} classes"));
    }
    let dtype = log_probs.dtype();
    let mask = |f: &dyn Fn(usize, usize) -> bool, cols: usize| -> Tensor {
        let v: Vec<bool> = (0..n * cols).map(|i| f(i / cols, i % cols)).collect();
        super::on_device_of(Tensor::from_vec(v, &[n, cols]), log_probs)
    };
    // (the host constants below go where log_probs is)
    let here = |t: Tensor| super::on_device_of(t, log_probs);
    // the extended targets: blank, l1, blank, l2, ..., blank (padding read as blank)
    let in_target = mask(&|b, k| k < target_lengths[b], s_max);
    let blank_t = here(Tensor::full(&[n, s_max], blank as f64, DType::I64));
    let labels = in_target.where_cond(targets, &blank_t);
    super::check_index_range("ctc_loss", "target", &labels, c);
    let l = 2 * s_max + 1;
    let ext = Tensor::cat(
        &[
            Tensor::stack(&[&blank_t, &labels], 2).reshape(&[n, 2 * s_max]),
            here(Tensor::full(&[n, 1], blank as f64, DType::I64)),
        ],
        1,
    );
    // a skip from s - 2 is allowed onto a label that differs from the label two back
    let two_back = Tensor::cat(
        &[
            here(Tensor::full(&[n, 2.min(l)], -1.0, DType::I64)),
            ext.narrow(1, 0, l.saturating_sub(2)),
        ],
        1,
    );
    let skip = ext.ne_scalar(blank as f64).logical_and(&ext.ne(&two_back));
    let neg = Tensor::full(&[], NEG, dtype);
    let lp = log_probs.clamp(Some(NEG), None);
    let shift = |a: &Tensor, k: usize| {
        Tensor::cat(
            &[
                here(Tensor::full(&[n, k.min(l)], NEG, dtype)),
                a.narrow(1, 0, l.saturating_sub(k)),
            ],
            1,
        )
    };
    let emit = |t: usize| lp.select(0, t).gather(1, &ext);
    let first_two = mask(&|_, s| s < 2, l);
    let mut alpha = first_two.where_cond(&emit(0), &neg);
    for t in 1..t_max {
        let stay = &alpha;
        let step = shift(&alpha, 1);
        let jump = skip.where_cond(&shift(&alpha, 2), &neg);
        let next = &emit(t) + &Tensor::stack(&[stay, &step, &jump], 0).logsumexp_dim(0, false);
        let running = mask(&|b, _| t < input_lengths[b], 1);
        alpha = running.where_cond(&next, &alpha);
    }
    // end in the last label or the blank after it
    let ends: Vec<i64> = target_lengths.iter().map(|&s| 2 * s as i64).collect();
    let before: Vec<i64> = target_lengths
        .iter()
        .map(|&s| (2 * s as i64 - 1).max(0))
        .collect();
    let last = alpha.gather(1, &here(Tensor::from_vec(ends, &[n, 1])));
    let has_label = mask(&|b, _| target_lengths[b] > 0, 1);
    let prev = has_label.where_cond(
        &alpha.gather(1, &here(Tensor::from_vec(before, &[n, 1]))),
        &neg,
    );
    let ll = Tensor::cat(&[last, prev], 1).logsumexp_dim(1, false);
    let impossible = ll.lt_scalar(NEG / 2.0);
    let losses = impossible.where_cond(
        &Tensor::full(&[], if zero_infinity { 0.0 } else { f64::INFINITY }, dtype),
        &-&ll,
    );
    match reduction {
        Reduce::Mean => {
            let lengths: Vec<f64> = target_lengths.iter().map(|&s| s.max(1) as f64).collect();
            (&losses / &here(Tensor::from_vec(lengths, &[n]).to_dtype(dtype))).mean()
        }
        other => other.apply(&losses),
    }
}
