//! Batch normalization (1-d `[N, C]` and 2-d `[N, C, H, W]`, with running statistics) and
//! layer normalization, with hand-written gradients.

use ferrograd::{Array, CustomOp, DType, State, Tensor};

use super::call;

/// Running mean and variance of a batch-norm layer: they move in training
/// (`running = (1 - momentum) running + momentum batch`, variance unbiased) and are used,
/// unchanged, in evaluation. They are [`State`]s, so a function that uses them replays in
/// optimize mode (each replay reads them and writes the moved statistics back).
#[derive(Debug)]
pub struct RunningStats {
    mean: State,
    var: State,
    /// Weight of the newest batch in the running averages (PyTorch's default 0.1).
    pub momentum: f64,
}

impl RunningStats {
    /// Mean 0 and variance 1 for `channels` channels.
    pub fn new(channels: usize, momentum: f64, dtype: DType) -> RunningStats {
        RunningStats {
            mean: State::new(Tensor::zeros(&[channels], dtype)),
            var: State::new(Tensor::ones(&[channels], dtype)),
            momentum,
        }
    }

    /// The current running mean and variance.
    #[track_caller]
    pub fn get(&self) -> (Array, Array) {
        (
            self.mean.get().value().clone(),
            self.var.get().value().clone(),
        )
    }

    /// Replaces the running mean and variance (when loading a checkpoint).
    pub fn set(&self, mean: Array, var: Array) {
        self.mean.set(Tensor::new(mean));
        self.var.set(Tensor::new(var));
    }
}

impl Clone for RunningStats {
    /// A copy with statistics of its own.
    fn clone(&self) -> Self {
        RunningStats {
            mean: State::new(self.mean.get()),
            var: State::new(self.var.get()),
            momentum: self.momentum,
        }
    }
}

/// The shape that broadcasts a per-channel `[C]` vector over `[N, C, ...]`.
fn channel_shape(x: &[usize]) -> Vec<usize> {
    let mut s = vec![1; x.len()];
    s[1] = x[1];
    s
}

fn reduce_dims(ndim: usize) -> Vec<usize> {
    (0..ndim).filter(|&d| d != 1).collect()
}

/// How many values each channel of `[N, C, ...]` holds (the batch statistics' count).
fn per_channel(shape: &[usize]) -> usize {
    (shape.iter().enumerate())
        .filter(|&(d, _)| d != 1)
        .map(|(_, &n)| n)
        .product()
}

/// Batch normalization (inputs: x, then weight and bias when `affine`, then the running
/// mean and variance in evaluation mode). The statistics are inputs, not attributes, so
/// optimize mode reads their current values on every call.
#[derive(Debug)]
struct BatchNorm {
    /// Evaluation mode: normalize by the running statistics (the last two inputs).
    evaluation: bool,
    eps: f64,
    affine: bool,
}

impl BatchNorm {
    /// Where the running statistics start among the inputs.
    fn stats_at(&self) -> usize {
        if self.affine {
            3
        } else {
            1
        }
    }
}

impl CustomOp for BatchNorm {
    fn name(&self) -> &str {
        "nn.batch_norm"
    }

    fn forward(&self, x: &[&Array]) -> Array {
        let cs = channel_shape(x[0].shape());
        let dims = reduce_dims(x[0].ndim());
        let (mean, var) = if self.evaluation {
            let k = self.stats_at();
            (x[k].reshape(&cs), x[k + 1].reshape(&cs))
        } else {
            (
                x[0].mean_dim(dims.as_slice(), true),
                x[0].var_dim(dims.as_slice(), 0, true),
            )
        };
        let mut y = x[0].sub(&mean).mul(&var.add_scalar(self.eps).rsqrt());
        if self.affine {
            y = y.mul(&x[1].reshape(&cs)).add(&x[2].reshape(&cs));
        }
        y
    }

    // training: dx = invstd/M (M dx̂ - Σ dx̂ - x̂ Σ dx̂ x̂), dx̂ = g γ; dγ = Σ g x̂; dβ = Σ g
    // evaluation: dx = g γ invstd
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let input = &x[0];
        let cs = channel_shape(input.shape());
        let dims = reduce_dims(input.ndim());
        let d = dims.as_slice();
        let (mean, invstd) = if self.evaluation {
            let k = self.stats_at();
            (
                x[k].detach().reshape(&cs),
                x[k + 1].detach().reshape(&cs).add_scalar(self.eps).rsqrt(),
            )
        } else {
            (
                input.mean_dim(d, true),
                input.var_dim(d, 0, true).add_scalar(self.eps).rsqrt(),
            )
        };
        let xhat = &(input - &mean) * &invstd;
        let dxhat = if self.affine {
            g * &x[1].reshape(&cs)
        } else {
            g.clone()
        };
        let dx = if self.evaluation {
            &dxhat * &invstd
        } else {
            let m = per_channel(input.shape()) as f64;
            let a = dxhat.sum_dim(d, true);
            let b = (&dxhat * &xhat).sum_dim(d, true);
            &(&invstd * (1.0 / m)) * &(&(&(&dxhat * m) - &a) - &(&xhat * &b))
        };
        let mut grads = vec![Some(dx)];
        if self.affine {
            grads.push(Some((g * &xhat).sum_dim(d, false)));
            grads.push(Some(g.sum_dim(d, false)));
        }
        if self.evaluation {
            // the running statistics are data, not parameters
            grads.extend([None, None]);
        }
        grads
    }
}

/// Batch normalization over `[N, C]`, `[N, C, L]`, `[N, C, H, W]` or `[N, C, D, H, W]`
/// (PyTorch's BatchNorm1d, 2d and 3d), per channel. In training the batch statistics
/// normalize and `stats` (when given) moves towards them; in evaluation `stats` normalizes.
/// `weight`/`bias` are the affine `[C]` parameters (either alone: the other is ones or
/// zeros, as in PyTorch).
///
/// In training each channel needs more than one value (a panic otherwise, as in PyTorch:
/// the batch variance of one value is 0); an empty batch leaves `stats` as they are.
#[track_caller]
pub fn batch_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    stats: Option<&RunningStats>,
    training: bool,
    eps: f64,
) -> Tensor {
    if !(2..=5).contains(&x.ndim()) {
        crate::fail!(
            "batch_norm: expects [N, C], [N, C, L], [N, C, H, W] or [N, C, D, H, W], \
             got {:?}",
            x.shape()
        );
    }
    let channels = x.size(1);
    for (what, t) in [("weight", weight), ("bias", bias)] {
        if let Some(t) = t {
            if t.shape() != [channels] {
                crate::fail!(
                    "batch_norm: {what} {:?} must be [{channels}] for input {:?} ({channels} channels)",
                    t.shape(),
                    x.shape()
                );
            }
        }
    }
    if let Some(s) = stats {
        let shape = s.mean.shape();
        if shape != [channels] {
            crate::fail!(
                "batch_norm: running statistics of shape {:?} for input {:?} ({channels} channels)",
                shape,
                x.shape()
            );
        }
    }
    let m = per_channel(x.shape());
    if training && m == 1 {
        // (PyTorch refuses it too: the batch variance is 0, the output all zeros)
        crate::fail!(
            "batch_norm: needs more than one value per channel in training, got input {:?} \
             (evaluate, or batch more samples)",
            x.shape()
        );
    }
    // (an empty batch leaves the running statistics as they are, as in PyTorch: its mean
    // is NaN)
    if training && m > 0 {
        if let Some(s) = stats {
            // the running averages move by tensor ops on State, so optimize mode replays them
            let dims = reduce_dims(x.ndim());
            let d = dims.as_slice();
            let data = x.detach();
            let m = m as f64;
            let batch_mean = data.mean_dim(d, false);
            let batch_var = data.var_dim(d, 0, false) * (m / (m - 1.0).max(1.0));
            let k = s.momentum;
            s.mean.set(&s.mean.get() * (1.0 - k) + &batch_mean * k);
            s.var.set(&s.var.get() * (1.0 - k) + &batch_var * k);
        }
    }
    let running = match (training, stats) {
        (true, _) => None,
        (false, Some(s)) => Some((s.mean.get(), s.var.get())),
        (false, None) => {
            crate::fail!("batch_norm: evaluation mode needs running statistics")
        }
    };
    let mut inputs: Vec<&Tensor> = vec![x];
    // (one of weight and bias alone: the other is its identity, ones or zeros, as in PyTorch)
    let ones = || super::constant_like(x, &[channels], 1.0);
    let zeros = || super::constant_like(x, &[channels], 0.0);
    let (w, b) = match (weight, bias) {
        (Some(w), None) => (Some(w.clone()), Some(zeros())),
        (None, Some(b)) => (Some(ones()), Some(b.clone())),
        (w, b) => (w.cloned(), b.cloned()),
    };
    let affine = match (&w, &b) {
        (Some(w), Some(b)) => {
            inputs.extend([w, b]);
            true
        }
        _ => false,
    };
    if let Some((m, v)) = &running {
        inputs.extend([m, v]);
    }
    let op = BatchNorm {
        evaluation: running.is_some(),
        eps,
        affine,
    };
    call(op, &inputs)
}

#[derive(Debug)]
struct LayerNorm {
    dims: Vec<usize>,
    eps: f64,
}

impl CustomOp for LayerNorm {
    fn name(&self) -> &str {
        "nn.layer_norm"
    }

    fn forward(&self, x: &[&Array]) -> Array {
        x[0].layer_norm(x[1], x[2], self.eps)
    }

    // per row over the normalized dims: dx = invstd/M (M dx̂ - Σ dx̂ - x̂ Σ dx̂ x̂), dx̂ = g γ;
    // dγ = Σ_rows g x̂; dβ = Σ_rows g
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let d = self.dims.as_slice();
        let input = &x[0];
        let rows: Vec<usize> = (0..input.ndim() - d.len()).collect();
        let over_rows = |t: Tensor| {
            if rows.is_empty() {
                t
            } else {
                t.sum_dim(rows.as_slice(), false)
            }
        };
        if !(x.iter().any(Tensor::is_traced) || g.is_traced()) {
            // Nothing differentiates this gradient again: the input's gradient in one kernel
            // ([`Array::layer_norm_backward`]) and the weight's and bias's in another
            // ([`Array::layer_norm_param_grads`]), where the composed form below runs
            // fourteen ops and more.
            let dx = call(LayerNormBackward { eps: self.eps }, &[input, &x[1], g]);
            let params = call(LayerNormParamGrads { eps: self.eps }, &[input, &x[1], g]);
            return vec![
                Some(dx),
                Some(params.select(0, 0)),
                Some(params.select(0, 1)),
            ];
        }
        let mean = input.mean_dim(d, true);
        let invstd = input.var_dim(d, 0, true).add_scalar(self.eps).rsqrt();
        let xhat = &(input - &mean) * &invstd;
        let dxhat = g * &x[1];
        let m: usize = d.iter().map(|&i| input.size(i)).product();
        let m = m as f64;
        let a = dxhat.sum_dim(d, true);
        let b = (&dxhat * &xhat).sum_dim(d, true);
        let dx = &(&invstd * (1.0 / m)) * &(&(&(&dxhat * m) - &a) - &(&xhat * &b));
        vec![
            Some(dx),
            Some(over_rows(g * &xhat)),
            Some(over_rows(g.clone())),
        ]
    }
}

/// Layer normalization's input gradient in one pass per row (inputs: x, weight, output
/// gradient). First derivatives only: [`LayerNorm`]'s backward takes it where nothing
/// differentiates the gradient again, and composes the gradient otherwise.
#[derive(Debug)]
struct LayerNormBackward {
    eps: f64,
}

impl CustomOp for LayerNormBackward {
    fn name(&self) -> &str {
        "nn.layer_norm_backward"
    }

    fn forward(&self, x: &[&Array]) -> Array {
        x[0].layer_norm_backward(x[1], x[2], self.eps)
    }

    fn backward_array(&self, _: &[&Array], _: &Array, _: &Array, _: &[bool]) -> Vec<Option<Array>> {
        unreachable!("layer_norm composes its gradient where it is differentiated again")
    }
}

/// Layer normalization's weight and bias gradients in one pass over the rows (inputs: x,
/// weight, for its shape, and the output gradient), stacked as `[2, ...weight's shape]`.
/// First derivatives only, as [`LayerNormBackward`].
#[derive(Debug)]
struct LayerNormParamGrads {
    eps: f64,
}

impl CustomOp for LayerNormParamGrads {
    fn name(&self) -> &str {
        "nn.layer_norm_param_grads"
    }

    fn forward(&self, x: &[&Array]) -> Array {
        let (dw, db) = x[0].layer_norm_param_grads(x[2], x[1].shape(), self.eps);
        Array::cat(&[dw.unsqueeze(0), db.unsqueeze(0)], 0)
    }

    fn backward_array(&self, _: &[&Array], _: &Array, _: &Array, _: &[bool]) -> Vec<Option<Array>> {
        unreachable!("layer_norm composes its gradient where it is differentiated again")
    }
}

/// Layer normalization over the trailing dims `normalized_shape` of `x` (PyTorch's
/// `F.layer_norm`), with an optional affine `weight` (default ones) and `bias` (default
/// zeros) of that shape.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![1.0f64, 3.0, 10.0, 30.0], &[2, 2]);
/// let y = F::layer_norm(&x, &[2], None, None, 0.0);
/// assert_eq!(y.to_vec::<f64>(), vec![-1.0, 1.0, -1.0, 1.0]);
/// ```
#[track_caller]
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Tensor {
    let k = normalized_shape.len();
    let fits = |t: Option<&Tensor>| t.is_none_or(|t| t.shape() == normalized_shape);
    if k == 0
        || k > x.ndim()
        || x.shape()[x.ndim() - k..] != *normalized_shape
        || !fits(weight)
        || !fits(bias)
    {
        let shape =
            |t: Option<&Tensor>| t.map_or("none".to_string(), |t| format!("{:?}", t.shape()));
        crate::fail!(
            "layer_norm: normalized shape {normalized_shape:?}, weight {} and bias {} \
             must match the trailing dims of {:?}",
            shape(weight),
            shape(bias),
            x.shape()
        );
    }
    let ones = || super::constant_like(x, normalized_shape, 1.0);
    let zeros = || super::constant_like(x, normalized_shape, 0.0);
    let weight = weight.cloned().unwrap_or_else(ones);
    let bias = bias.cloned().unwrap_or_else(zeros);
    let dims: Vec<usize> = (x.ndim() - k..x.ndim()).collect();
    call(LayerNorm { dims, eps }, &[x, &weight, &bias])
}

/// The optional per-channel affine of the group and instance norms: `x · w + b` with `[C]`
/// parameters broadcast over `[N, C, ...]`.
#[track_caller]
fn channel_affine(op: &str, y: Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>) -> Tensor {
    let c = y.size(1);
    let mut shape = vec![1; y.ndim()];
    shape[1] = c;
    // checked here, not in the closure below, which would name this line, not the caller's
    for t in weight.into_iter().chain(bias) {
        if t.shape() != [c] {
            crate::fail!(
                "{op}: weight and bias must be [C] = [{c}], got {:?}",
                t.shape()
            );
        }
    }
    let fit = |t: &Tensor| t.reshape(&shape);
    let y = match weight {
        Some(w) => &y * &fit(w),
        None => y,
    };
    match bias {
        Some(b) => &y + &fit(b),
        None => y,
    }
}

/// Group normalization (Wu & He): the `C` channels of `x` `[N, C, ...]` in `groups` groups,
/// each normalized over its channels and positions (biased variance), then the optional
/// per-channel affine (PyTorch's `group_norm`).
///
/// ```
/// use ferrograd::{DType, Tensor};
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![1.0f64, 3.0, 10.0, 30.0], &[1, 2, 2]);
/// let y = F::group_norm(&x, 2, None, None, 0.0);
/// assert_eq!(y.to_vec::<f64>(), vec![-1.0, 1.0, -1.0, 1.0]);
/// ```
#[track_caller]
pub fn group_norm(
    x: &Tensor,
    groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Tensor {
    if x.ndim() < 2 || groups == 0 || !x.size(1).is_multiple_of(groups) {
        crate::fail!(
            "group_norm: needs [N, C, ...] with C divisible by {groups} groups, got {:?}",
            x.shape()
        );
    }
    grouped_norm("group_norm", x, groups, weight, bias, eps)
}

/// [`group_norm`] of a checked input, `op` naming the caller's function in errors.
#[track_caller]
fn grouped_norm(
    op: &str,
    x: &Tensor,
    groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Tensor {
    let n = x.size(0);
    let grouped = x.reshape(&[n, groups, x.numel() / (n * groups).max(1)]);
    let mean = grouped.mean_dim(2, true);
    let var = grouped.var_dim(2, 0, true);
    let y = (&(&grouped - &mean) / &(var + eps).sqrt()).reshape(x.shape());
    channel_affine(op, y, weight, bias)
}

/// Instance normalization: each channel of each example normalized over its positions,
/// then the optional affine (PyTorch's `instance_norm` without running statistics; group
/// norm with one group per channel).
#[track_caller]
pub fn instance_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Tensor {
    if x.ndim() < 3 {
        crate::fail!(
            "instance_norm: needs [N, C, ...] with positions, got {:?}",
            x.shape()
        );
    }
    if x.size(1) == 0 {
        // no channels, so no groups: the empty input, through the affine's shape checks
        return channel_affine("instance_norm", x * 1.0, weight, bias);
    }
    grouped_norm("instance_norm", x, x.size(1), weight, bias, eps)
}

/// RMS normalization (Zhang & Sennrich): `x / sqrt(mean(x²) + ε) · weight` over the trailing
/// dims `normalized_shape` (PyTorch's `rms_norm`).
#[track_caller]
pub fn rms_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    eps: f64,
) -> Tensor {
    let k = normalized_shape.len();
    if k == 0
        || k > x.ndim()
        || x.shape()[x.ndim() - k..] != *normalized_shape
        || weight.is_some_and(|w| w.shape() != normalized_shape)
    {
        crate::fail!(
            "rms_norm: normalized shape {normalized_shape:?} (and the weight, {:?}) must match \
             the trailing dims of {:?}",
            weight.map(|w| w.shape().to_vec()),
            x.shape()
        );
    }
    let dims: Vec<usize> = (x.ndim() - k..x.ndim()).collect();
    let y = x * &(x.square().mean_dim(dims.as_slice(), true) + eps).rsqrt();
    match weight {
        Some(w) => &y * w,
        None => y,
    }
}

/// `x / max(‖x‖_p, ε)` along `dim` (PyTorch's `normalize`).
#[track_caller]
pub fn normalize(x: &Tensor, p: f64, dim: isize, eps: f64) -> Tensor {
    x / &x.norm_dim(p, dim, true).clamp(Some(eps), None)
}

/// The cosine of the angle between `a` and `b` along `dim`, each norm clamped below at ε
/// (PyTorch's `cosine_similarity`: 0 for a zero vector).
#[track_caller]
pub fn cosine_similarity(a: &Tensor, b: &Tensor, dim: isize, eps: f64) -> Tensor {
    let unit = |t: &Tensor| t / &t.norm_dim(2.0, dim, true).clamp(Some(eps), None);
    (&unit(a) * &unit(b)).sum_dim(dim, false)
}
