//! Criteria with hand-written gradients: mean squared error, class negative log-likelihood,
//! cross-entropy (log-softmax and NLL fused), binary cross-entropy; and a weighted sum of
//! criteria over paired inputs (the seed's `ParallelCriterion`).

use ferrograd::{Array, CustomOp, DType, Tensor};

use super::call;

/// Checks that `target` holds one class index per row of `scores`.
#[track_caller]
fn check_classes(op: &str, scores: &Tensor, target: &Tensor) {
    let rows_ok = match scores.ndim() {
        1 => target.numel() == 1,
        2 => target.ndim() == 1 && target.size(0) == scores.size(0),
        _ => false,
    };
    if target.dtype() != DType::I64 || !rows_ok {
        panic!(
            "ferrograd: {op}: needs scores [N, C] (or [C]) and i64 class indices [N] (or one), got {:?} and {:?} {}",
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

#[derive(Debug)]
struct Mse;

impl CustomOp for Mse {
    fn name(&self) -> &str {
        "nn.mse"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        x[0].sub(x[1]).square().mean()
    }
    // d/dp mean((p - t)²) = 2 (p - t) / n
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let d = &(&x[0] - &x[1]) * (2.0 / x[0].numel() as f64) * g;
        vec![needs[0].then(|| d.clone()), needs[1].then(|| -d)]
    }
}

/// Mean squared error `mean((prediction - target)²)`.
#[track_caller]
pub fn mse(prediction: &Tensor, target: &Tensor) -> Tensor {
    if prediction.shape() != target.shape() {
        panic!(
            "ferrograd: mse: prediction {:?} and target {:?} differ in shape",
            prediction.shape(),
            target.shape()
        );
    }
    call(Mse, &[prediction, target])
}

#[derive(Debug)]
struct ClassNll {
    fused_log_softmax: bool,
}

impl CustomOp for ClassNll {
    fn name(&self) -> &str {
        if self.fused_log_softmax {
            "nn.cross_entropy"
        } else {
            "nn.class_nll"
        }
    }
    fn forward(&self, x: &[&Array]) -> Array {
        let s = if x[0].ndim() == 1 {
            x[0].unsqueeze(0usize)
        } else {
            x[0].clone()
        };
        let n = s.shape()[0];
        let logp = if self.fused_log_softmax {
            s.log_softmax(1usize)
        } else {
            s
        };
        logp.gather(1usize, &x[1].reshape(&[n, 1]))
            .sum()
            .mul_scalar(-1.0 / n as f64)
    }
    // NLL: -1/N at each target; cross-entropy: (softmax - onehot) / N
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (s, t, n) = rows(&x[0], &x[1]);
        let picked = Tensor::full(&[n, 1], -1.0 / n as f64, s.dtype());
        let onehot_scaled = s.zeros_like().scatter(1, &t, &picked);
        let d = if self.fused_log_softmax {
            &s.softmax(1) * (1.0 / n as f64) + onehot_scaled
        } else {
            onehot_scaled
        };
        vec![Some((&d * g).reshape(x[0].shape())), None]
    }
}

/// Mean negative log-likelihood of class `target` (i64 `[N]`) under log-probabilities
/// `log_probs` (`[N, C]`, or `[C]` with one target).
#[track_caller]
pub fn class_nll(log_probs: &Tensor, target: &Tensor) -> Tensor {
    check_classes("class_nll", log_probs, target);
    call(
        ClassNll {
            fused_log_softmax: false,
        },
        &[log_probs, target],
    )
}

/// Cross-entropy of `logits` (`[N, C]`) against class `target` (i64 `[N]`): log-softmax and
/// NLL in one primitive, whose gradient is `(softmax - onehot) / N`.
#[track_caller]
pub fn cross_entropy(logits: &Tensor, target: &Tensor) -> Tensor {
    check_classes("cross_entropy", logits, target);
    call(
        ClassNll {
            fused_log_softmax: true,
        },
        &[logits, target],
    )
}

#[derive(Debug)]
struct Bce {
    eps: f64,
}

impl CustomOp for Bce {
    fn name(&self) -> &str {
        "nn.bce"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        let p = x[0].clamp(Some(self.eps), Some(1.0 - self.eps));
        let t = x[1];
        t.mul(&p.log())
            .add(&t.rsub_scalar(1.0).mul(&p.rsub_scalar(1.0).log()))
            .mean()
            .mul_scalar(-1.0)
    }
    // d/dp = (p - t) / (p (1 - p)) / n, with p clamped away from 0 and 1
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let p = x[0].clamp(Some(self.eps), Some(1.0 - self.eps));
        let t = &x[1];
        let n = x[0].numel() as f64;
        let dp = needs[0].then(|| &(&(&p - t) / &(&p * &p.rsub_scalar(1.0))) * (1.0 / n) * g);
        let dt = needs[1].then(|| &(&p.rsub_scalar(1.0).log() - &p.log()) * (1.0 / n) * g);
        vec![dp, dt]
    }
}

/// Binary cross-entropy `-mean(t log p + (1 - t) log(1 - p))` of probabilities `p` (clamped
/// into `[1e-12, 1 - 1e-12]`) against targets in `[0, 1]`.
#[track_caller]
pub fn bce(probabilities: &Tensor, target: &Tensor) -> Tensor {
    if probabilities.shape() != target.shape() {
        panic!(
            "ferrograd: bce: probabilities {:?} and target {:?} differ in shape",
            probabilities.shape(),
            target.shape()
        );
    }
    call(Bce { eps: 1e-12 }, &[probabilities, target])
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
    total.unwrap_or_else(|| panic!("ferrograd: parallel_criterion: needs at least one criterion"))
}
