//! Module primitives (the seed's `src/module`): layer normalization, masked batch
//! normalization with running statistics, and soft attention. Each returns its function's
//! parameters; the functions are plain methods usable inside `grad`.

use ferrograd::{DType, State, Tensor, Tree};

use crate::functional as F;

/// Parameters of [`LayerNormalization`].
#[derive(Tree, Clone, Debug)]
pub struct GainBias {
    /// Gain `[n]` (ones).
    pub gain: Tensor,
    /// Bias `[n]` (zeros).
    pub bias: Tensor,
}

/// Layer normalization over the last dim of `[n]` or `[B, n]` inputs (biased variance).
#[derive(Clone, Debug)]
pub struct LayerNormalization {
    /// ε (1e-5).
    pub eps: f64,
}

impl LayerNormalization {
    /// The layer and its parameters for `n` features.
    pub fn new(n: usize, dtype: DType) -> (LayerNormalization, GainBias) {
        (
            LayerNormalization { eps: 1e-5 },
            GainBias {
                gain: Tensor::ones(&[n], dtype),
                bias: Tensor::zeros(&[n], dtype),
            },
        )
    }

    /// Normalized `x`.
    #[track_caller]
    pub fn forward(&self, p: &GainBias, x: &Tensor) -> Tensor {
        F::layer_norm(x, p.gain.shape(), Some(&p.gain), Some(&p.bias), self.eps)
    }
}

/// Batch normalization of `[B, n]` or `[B, T, n]` inputs over the entries a 0/1 `mask`
/// marks (padding excluded), with running mean and standard deviation that move in training
/// and stay in evaluation. Normalizes `(x - mean) / std` (the seed subtracted the running
/// std instead of the mean, a bug). The running statistics are [`State`]s, so a function
/// using the layer replays in optimize mode and the statistics move on every replay (the
/// seed's optimized mode froze them).
#[derive(Debug)]
pub struct MaskedBatchNormalization {
    /// Weight of the newest batch in the running statistics (0.1).
    pub momentum: f64,
    /// ε (1e-5).
    pub eps: f64,
    /// Training (statistics move) or evaluation (they hold).
    pub training: bool,
    mean: State,
    std: State,
}

impl MaskedBatchNormalization {
    /// The layer and its parameters (gain 0.1, bias 0, as the seed) for `n` features.
    pub fn new(n: usize, dtype: DType) -> (MaskedBatchNormalization, GainBias) {
        let layer = MaskedBatchNormalization {
            momentum: 0.1,
            eps: 1e-5,
            training: true,
            mean: State::new(Tensor::zeros(&[n], dtype)),
            std: State::new(Tensor::ones(&[n], dtype)),
        };
        (
            layer,
            GainBias {
                gain: Tensor::full(&[n], 0.1, dtype),
                bias: Tensor::zeros(&[n], dtype),
            },
        )
    }

    /// The running mean and standard deviation.
    #[track_caller]
    pub fn running(&self) -> (Tensor, Tensor) {
        (self.mean.get(), self.std.get())
    }

    /// Normalized `x` over the masked entries.
    #[track_caller]
    pub fn forward(&self, p: &GainBias, x: &Tensor, mask: &Tensor) -> Tensor {
        let rows = crate::functional::as_rows(x);
        let x2 = x.reshape(&rows);
        let m2 = mask.to_dtype(x.dtype()).reshape(&rows);
        let (mean, std) = if self.training {
            let count = m2.sum_dim(0, false).clamp(Some(1.0), None);
            let mean = (&x2 * &m2).sum_dim(0, false) / &count;
            let centred = &(&x2 - &mean) * &m2;
            let std = (centred.square().sum_dim(0, false) / &count + self.eps).sqrt();
            let k = self.momentum;
            self.mean
                .set(&self.mean.get() * (1.0 - k) + &(mean.detach() * k));
            self.std
                .set(&self.std.get() * (1.0 - k) + &(std.detach() * k));
            (mean, std)
        } else {
            self.running()
        };
        let y = &(&(&x2 - &mean) * &m2) / &std * &p.gain + &p.bias;
        y.reshape(x.shape())
    }
}

/// Parameters of [`SoftAttention`].
#[derive(Tree, Clone, Debug)]
pub struct AttentionParams {
    /// Subject weights `[subject_features]`.
    pub w_subject: Tensor,
    /// Hidden-state weights `[hidden_features, subject_choices]`.
    pub w_h: Tensor,
    /// Bias `[subject_choices]`.
    pub b: Tensor,
}

/// Soft attention over `subject: [B, features, choices]` driven by `h: [B, hidden]`: the
/// logits `w_subjectᵀ subject + h W_h + b` go through a softmax over the choices, which
/// weighs the subject. Returns `(attention [B, features], focus [B, choices])`.
#[derive(Clone, Debug)]
pub struct SoftAttention;

impl SoftAttention {
    /// The layer and its zero-initialized parameters (as the seed).
    pub fn new(
        hidden_features: usize,
        subject_features: usize,
        subject_choices: usize,
        dtype: DType,
    ) -> (SoftAttention, AttentionParams) {
        (
            SoftAttention,
            AttentionParams {
                w_subject: Tensor::zeros(&[subject_features], dtype),
                w_h: Tensor::zeros(&[hidden_features, subject_choices], dtype),
                b: Tensor::zeros(&[subject_choices], dtype),
            },
        )
    }

    /// `(attention, focus)`; unbatched inputs (`[features, choices]`, `[hidden]`) give
    /// unbatched outputs.
    #[track_caller]
    pub fn forward(&self, p: &AttentionParams, subject: &Tensor, h: &Tensor) -> (Tensor, Tensor) {
        let batched = subject.ndim() == 3;
        let (s, hh) = if batched {
            (subject.clone(), h.clone())
        } else {
            (subject.unsqueeze(0), h.unsqueeze(0))
        };
        let logits = p.w_subject.matmul(&s) + hh.matmul(&p.w_h) + &p.b;
        let focus = F::softmax(&logits, -1);
        let attention = (&s * &focus.unsqueeze(1)).sum_dim(2, false);
        if batched {
            (attention, focus)
        } else {
            (attention.squeeze_dim(0), focus.squeeze_dim(0))
        }
    }
}
