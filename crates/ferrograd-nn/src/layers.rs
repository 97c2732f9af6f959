//! The built-in modules: layers with hand-written gradients, the `Sequential` container, and
//! criteria. Each also has a functional form through [`functionalize`](crate::functionalize)
//! (see [`crate::fns`] for one-line constructors).

use std::sync::{Arc, Mutex};

use ferrograd::array::{in_context, Context};
use ferrograd::{Array, Conv2dParams, DType, Generator, Pool2dParams, Tensor};

use crate::functional as F;
use crate::module::{Criterion, Module, ModuleState};

/// Uniform in `±1/sqrt(fan_in)`, Torch's default initialization.
fn init(rng: &mut Generator, shape: &[usize], fan_in: usize, dtype: DType) -> Tensor {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Tensor::new(rng.uniform(shape, -bound, bound, dtype))
}

/// The three `Module` methods every module writes the same way.
macro_rules! module_boilerplate {
    () => {
        fn state(&self) -> &ModuleState {
            &self.state
        }
        fn state_mut(&mut self) -> &mut ModuleState {
            &mut self.state
        }
        fn box_clone(&self) -> Box<dyn Module> {
            Box::new(self.clone())
        }
    };
}
pub(crate) use module_boilerplate;

/// `y = x Wᵀ + b` with `W: [out, in]`.
#[derive(Clone)]
pub struct Linear {
    state: ModuleState,
}

impl Linear {
    /// A layer from `inputs` to `outputs` features, initialized uniformly in `±1/sqrt(inputs)`.
    pub fn new(inputs: usize, outputs: usize, rng: &mut Generator, dtype: DType) -> Linear {
        Linear::from_parameters(
            init(rng, &[outputs, inputs], inputs, dtype),
            init(rng, &[outputs], inputs, dtype),
        )
    }

    /// A layer with the given weight `[out, in]` and bias `[out]`.
    pub fn from_parameters(weight: Tensor, bias: Tensor) -> Linear {
        Linear {
            state: ModuleState::new(vec![("weight", weight), ("bias", bias)]),
        }
    }
}

impl Module for Linear {
    fn name(&self) -> String {
        let w = &self.state.params[0];
        format!("Linear({} -> {})", w.size(1), w.size(0))
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        F::linear(x, &p[0], Some(&p[1]))
    }
    module_boilerplate!();
}

/// 2-d convolution with weight `[O, C/groups, kH, kW]` and bias `[O]`.
#[derive(Clone)]
pub struct Conv2d {
    state: ModuleState,
    params: Conv2dParams,
}

impl Conv2d {
    /// A convolution from `inputs` to `outputs` channels with a `kernel`, initialized
    /// uniformly in `±1/sqrt(fan_in)`.
    pub fn new(
        inputs: usize,
        outputs: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        rng: &mut Generator,
        dtype: DType,
    ) -> Conv2d {
        let fan_in = inputs / params.groups * kernel.0 * kernel.1;
        let w = init(
            rng,
            &[outputs, inputs / params.groups, kernel.0, kernel.1],
            fan_in,
            dtype,
        );
        let b = init(rng, &[outputs], fan_in, dtype);
        Conv2d {
            state: ModuleState::new(vec![("weight", w), ("bias", b)]),
            params,
        }
    }
}

impl Module for Conv2d {
    fn name(&self) -> String {
        format!("Conv2d({:?})", self.state.params[0].shape())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        x.conv2d(&p[0], Some(&p[1]), self.params)
    }
    module_boilerplate!();
}

/// Transposed 2-d convolution (PyTorch's `ConvTranspose2d`) with weight
/// `[C_in, C_out / groups, kH, kW]` and bias `[C_out]`.
///
/// ```
/// use ferrograd::{Conv2dParams, DType, Generator, Tensor};
/// use ferrograd_nn::{layers::ConvTranspose2d, Module};
/// let p = Conv2dParams { stride: (2, 2), padding: (1, 1), ..Conv2dParams::default() };
/// let mut up = ConvTranspose2d::new(4, 2, (3, 3), p, (1, 1), &mut Generator::new(0), DType::F32);
/// let y = up.forward(&Tensor::zeros(&[1, 4, 5, 5], DType::F32));
/// assert_eq!(y.shape(), &[1, 2, 10, 10]); // twice the size
/// ```
#[derive(Clone)]
pub struct ConvTranspose2d {
    state: ModuleState,
    params: Conv2dParams,
    output_padding: (usize, usize),
}

impl ConvTranspose2d {
    /// From `inputs` to `outputs` channels with a `kernel`, initialized uniformly in
    /// `±1/sqrt(fan_in)` with PyTorch's fan (`outputs / groups · kH · kW`).
    pub fn new(
        inputs: usize,
        outputs: usize,
        kernel: (usize, usize),
        params: Conv2dParams,
        output_padding: (usize, usize),
        rng: &mut Generator,
        dtype: DType,
    ) -> ConvTranspose2d {
        let fan_in = outputs / params.groups * kernel.0 * kernel.1;
        let w = init(
            rng,
            &[inputs, outputs / params.groups, kernel.0, kernel.1],
            fan_in,
            dtype,
        );
        let b = init(rng, &[outputs], fan_in, dtype);
        ConvTranspose2d {
            state: ModuleState::new(vec![("weight", w), ("bias", b)]),
            params,
            output_padding,
        }
    }
}

impl Module for ConvTranspose2d {
    fn name(&self) -> String {
        format!("ConvTranspose2d({:?})", self.state.params[0].shape())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        x.conv_transpose2d(&p[0], Some(&p[1]), self.params, self.output_padding)
    }
    module_boilerplate!();
}

/// Batch normalization over `[N, C]` or `[N, C, H, W]` with affine parameters and running
/// statistics.
#[derive(Clone)]
pub struct BatchNorm {
    state: ModuleState,
    stats: Arc<F::RunningStats>,
    eps: f64,
}

impl BatchNorm {
    /// `channels` channels; weight 1, bias 0, momentum 0.1, eps 1e-5 (PyTorch's defaults).
    pub fn new(channels: usize, dtype: DType) -> BatchNorm {
        BatchNorm {
            state: ModuleState::new(vec![
                ("weight", Tensor::ones(&[channels], dtype)),
                ("bias", Tensor::zeros(&[channels], dtype)),
            ]),
            stats: Arc::new(F::RunningStats::new(channels, 0.1, dtype)),
            eps: 1e-5,
        }
    }

    /// The running mean and variance.
    pub fn running_stats(&self) -> (Array, Array) {
        self.stats.get()
    }
}

impl Module for BatchNorm {
    fn name(&self) -> String {
        format!("BatchNorm({})", self.state.params[0].numel())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        F::batch_norm(
            x,
            Some(&p[0]),
            Some(&p[1]),
            Some(&self.stats),
            self.state.training,
            self.eps,
        )
    }
    fn box_clone(&self) -> Box<dyn Module> {
        // A clone owns its own running statistics.
        Box::new(BatchNorm {
            state: self.state.clone(),
            stats: Arc::new((*self.stats).clone()),
            eps: self.eps,
        })
    }
    fn buffers(&self) -> Vec<(String, Array)> {
        let (m, v) = self.stats.get();
        vec![("running_mean".into(), m), ("running_var".into(), v)]
    }
    fn set_buffers(&mut self, buffers: &[(String, Array)]) {
        let find = |n: &str| buffers.iter().find(|(k, _)| k == n).map(|(_, a)| a.clone());
        if let (Some(m), Some(v)) = (find("running_mean"), find("running_var")) {
            self.stats.set(m, v);
        }
    }
    fn state(&self) -> &ModuleState {
        &self.state
    }
    fn state_mut(&mut self) -> &mut ModuleState {
        &mut self.state
    }
}

/// Layer normalization over the trailing `shape` dims.
#[derive(Clone)]
pub struct LayerNorm {
    state: ModuleState,
    eps: f64,
}

impl LayerNorm {
    /// Normalizes the trailing dims of `shape`; weight 1, bias 0, eps 1e-5.
    pub fn new(shape: &[usize], dtype: DType) -> LayerNorm {
        LayerNorm {
            state: ModuleState::new(vec![
                ("weight", Tensor::ones(shape, dtype)),
                ("bias", Tensor::zeros(shape, dtype)),
            ]),
            eps: 1e-5,
        }
    }
}

impl Module for LayerNorm {
    fn name(&self) -> String {
        format!("LayerNorm({:?})", self.state.params[0].shape())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        F::layer_norm(x, p[0].shape(), Some(&p[0]), Some(&p[1]), self.eps)
    }
    module_boilerplate!();
}

/// PReLU: leaky ReLU with a learned slope, one per channel (dim 1) or one shared (the
/// seed's `nn.PReLU`; see [`F::prelu`]).
///
/// ```
/// use ferrograd::{DType, Tensor};
/// use ferrograd_nn::{layers::PReLU, Module};
/// let mut m = PReLU::new(1, DType::F64);
/// let y = m.forward(&Tensor::from_vec(vec![-2.0f64, 3.0], &[1, 2]));
/// assert_eq!(y.to_vec::<f64>(), vec![-0.5, 3.0]);
/// ```
#[derive(Clone)]
pub struct PReLU {
    state: ModuleState,
}

impl PReLU {
    /// `channels` slopes (1 for one shared slope), each starting at 0.25 as in PyTorch.
    pub fn new(channels: usize, dtype: DType) -> PReLU {
        PReLU {
            state: ModuleState::new(vec![("weight", Tensor::full(&[channels], 0.25, dtype))]),
        }
    }
}

impl Module for PReLU {
    fn name(&self) -> String {
        format!("PReLU({})", self.state.params[0].numel())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        F::prelu(x, &p[0])
    }
    module_boilerplate!();
}

/// Rows of a `[vocabulary, dim]` table picked by i64 indices.
#[derive(Clone)]
pub struct Embedding {
    state: ModuleState,
}

impl Embedding {
    /// A table initialized from N(0, 1), as PyTorch does.
    pub fn new(vocabulary: usize, dim: usize, rng: &mut Generator, dtype: DType) -> Embedding {
        Embedding {
            state: ModuleState::new(vec![(
                "weight",
                Tensor::new(rng.normal(&[vocabulary, dim], 0.0, 1.0, dtype)),
            )]),
        }
    }
}

impl Module for Embedding {
    fn name(&self) -> String {
        format!("Embedding({:?})", self.state.params[0].shape())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        F::embedding(x, &p[0], None)
    }
    module_boilerplate!();
}

/// Dropout (element-wise, or channel-wise when `spatial`); the identity in evaluation.
#[derive(Clone)]
pub struct Dropout {
    state: ModuleState,
    p: f64,
    spatial: bool,
    rng: Arc<Mutex<Generator>>,
}

impl Dropout {
    /// Drops with probability `p`; masks come from a generator seeded with `seed`.
    pub fn new(p: f64, spatial: bool, seed: u64) -> Dropout {
        Dropout {
            state: ModuleState::new(vec![]),
            p,
            spatial,
            rng: Arc::new(Mutex::new(Generator::new(seed))),
        }
    }
}

impl Module for Dropout {
    fn name(&self) -> String {
        format!(
            "{}Dropout({})",
            if self.spatial { "Spatial" } else { "" },
            self.p
        )
    }
    fn forward_with(&self, _p: &[Tensor], x: &Tensor) -> Tensor {
        let mut rng = self.rng.lock().expect("dropout generator");
        if self.spatial {
            F::spatial_dropout(x, self.p, self.state.training, &mut rng)
        } else {
            F::dropout(x, self.p, self.state.training, &mut rng)
        }
    }
    fn generators(&self) -> Vec<Arc<Mutex<Generator>>> {
        vec![self.rng.clone()]
    }
    module_boilerplate!();
}

/// Multi-head self-attention over batch-first `[N, L, E]` inputs (PyTorch's
/// `nn.MultiheadAttention(batch_first=True)` called with the input as query, key and
/// value), optionally causal. Parameters: `q_weight`, `k_weight`, `v_weight` `[E, E]`
/// (Xavier-uniform), their biases (zeros), `out_weight` `[E, E]` and `out_bias`.
#[derive(Clone)]
pub struct MultiheadAttention {
    state: ModuleState,
    heads: usize,
    causal: bool,
}

impl MultiheadAttention {
    /// `heads` heads over `embed_dim` features (divisible by `heads`).
    #[track_caller]
    pub fn new(
        embed_dim: usize,
        heads: usize,
        causal: bool,
        rng: &mut Generator,
        dtype: DType,
    ) -> MultiheadAttention {
        if heads == 0 || !embed_dim.is_multiple_of(heads) {
            crate::fail!(
                "MultiheadAttention: embed_dim {embed_dim} is not divisible by {heads} heads"
            );
        }
        let e = embed_dim;
        let mut xavier = || crate::init::xavier_uniform(rng, &[e, e], 1.0, dtype);
        let (q, k, v) = (xavier(), xavier(), xavier());
        let out = init(rng, &[e, e], e, dtype);
        let zeros = || Tensor::zeros(&[e], dtype);
        MultiheadAttention {
            state: ModuleState::new(vec![
                ("q_weight", q),
                ("k_weight", k),
                ("v_weight", v),
                ("q_bias", zeros()),
                ("k_bias", zeros()),
                ("v_bias", zeros()),
                ("out_weight", out),
                ("out_bias", zeros()),
            ]),
            heads,
            causal,
        }
    }
}

impl Module for MultiheadAttention {
    fn name(&self) -> String {
        format!(
            "MultiheadAttention({}, {} heads{})",
            self.state.params[0].size(0),
            self.heads,
            if self.causal { ", causal" } else { "" }
        )
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        let params = F::AttentionParams {
            in_weights: [&p[0], &p[1], &p[2]],
            in_biases: Some([&p[3], &p[4], &p[5]]),
            out_weight: &p[6],
            out_bias: Some(&p[7]),
        };
        let mask = if self.causal {
            F::AttentionMask::Causal
        } else {
            F::AttentionMask::None
        };
        F::multi_head_attention(x, x, x, &params, self.heads, mask)
    }
    module_boilerplate!();
}

/// A parameterless module from a function of the input.
#[derive(Clone)]
pub struct Function {
    state: ModuleState,
    name: String,
    f: Arc<dyn Fn(&Tensor) -> Tensor + Send + Sync>,
}

impl Function {
    /// Wraps `f` under `name`.
    pub fn new(name: &str, f: impl Fn(&Tensor) -> Tensor + Send + Sync + 'static) -> Function {
        Function {
            state: ModuleState::new(vec![]),
            name: name.to_string(),
            f: Arc::new(f),
        }
    }
}

impl Module for Function {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn forward_with(&self, _p: &[Tensor], x: &Tensor) -> Tensor {
        (self.f)(x)
    }
    module_boilerplate!();
}

/// `Tanh` module.
pub fn tanh() -> Function {
    Function::new("Tanh", F::tanh)
}

/// `ReLU` module.
pub fn relu() -> Function {
    Function::new("ReLU", F::relu)
}

/// `Sigmoid` module.
pub fn sigmoid() -> Function {
    Function::new("Sigmoid", F::sigmoid)
}

/// `GELU` module (exact, or the tanh approximation when `tanh`).
pub fn gelu(tanh: bool) -> Function {
    Function::new("GELU", move |x| F::gelu(x, tanh))
}

/// `SiLU` module.
pub fn silu() -> Function {
    Function::new("SiLU", F::silu)
}

/// `ELU(alpha)` module.
pub fn elu(alpha: f64) -> Function {
    Function::new("ELU", move |x| F::elu(x, alpha))
}

/// `SELU` module.
pub fn selu() -> Function {
    Function::new("SELU", F::selu)
}

/// `LeakyReLU(negative_slope)` module.
pub fn leaky_relu(negative_slope: f64) -> Function {
    Function::new("LeakyReLU", move |x| F::leaky_relu(x, negative_slope))
}

/// `SoftPlus(beta, threshold)` module.
pub fn softplus(beta: f64, threshold: f64) -> Function {
    Function::new("SoftPlus", move |x| F::softplus(x, beta, threshold))
}

/// `LogSigmoid` module.
pub fn log_sigmoid() -> Function {
    Function::new("LogSigmoid", F::logsigmoid)
}

/// `Threshold(threshold, value)` module.
pub fn threshold(threshold: f64, value: f64) -> Function {
    Function::new("Threshold", move |x| F::threshold(x, threshold, value))
}

/// `SoftMax` over the last dim.
pub fn softmax() -> Function {
    Function::new("SoftMax", |x| F::softmax(x, -1))
}

/// `LogSoftMax` over the last dim.
pub fn log_softmax() -> Function {
    Function::new("LogSoftMax", |x| F::log_softmax(x, -1))
}

/// Max pooling (values only).
pub fn max_pool2d(params: Pool2dParams) -> Function {
    Function::new("MaxPool2d", move |x| x.max_pool2d(params).0)
}

/// Average pooling.
pub fn avg_pool2d(params: Pool2dParams, count_include_pad: bool) -> Function {
    Function::new("AvgPool2d", move |x| {
        x.avg_pool2d(params, count_include_pad)
    })
}

/// `Upsample` module: [`F::interpolate`] to a fixed spatial `size`.
pub fn upsample(size: &[usize], mode: F::Interpolation) -> Function {
    let size = size.to_vec();
    Function::new("Upsample", move |x| F::interpolate(x, &size, mode))
}

/// `AdaptiveAvgPool` module (1-d or 2-d by the length of `size`).
pub fn adaptive_avg_pool(size: &[usize]) -> Function {
    let size = size.to_vec();
    Function::new("AdaptiveAvgPool", move |x| F::adaptive_avg_pool(x, &size))
}

/// `AdaptiveMaxPool` module (1-d or 2-d by the length of `size`).
pub fn adaptive_max_pool(size: &[usize]) -> Function {
    let size = size.to_vec();
    Function::new("AdaptiveMaxPool", move |x| F::adaptive_max_pool(x, &size))
}

/// `MaxPool2d` with dilation and `ceil_mode` ([`F::max_pool2d_with`]).
pub fn max_pool2d_with(params: F::Sliding) -> Function {
    Function::new("MaxPool2d", move |x| F::max_pool2d_with(x, params))
}

/// `Unfold` module ([`F::unfold`]).
pub fn unfold(params: F::Sliding) -> Function {
    Function::new("Unfold", move |x| F::unfold(x, params))
}

/// `Fold` module ([`F::fold`]) to `output_size`.
pub fn fold(output_size: (usize, usize), params: F::Sliding) -> Function {
    Function::new("Fold", move |x| F::fold(x, output_size, params))
}

/// A padding module over the trailing dims (PyTorch's `ZeroPad2d`, `ConstantPad1d/2d/3d`,
/// `ReflectionPad1d/2d`, `ReplicationPad1d/2d/3d`): `pads[i] = (before, after)` for the
/// `i`-th of the last `pads.len()` dims, in dim order.
///
/// ```
/// use ferrograd::{DType, Tensor};
/// use ferrograd_nn::functional::PadMode;
/// use ferrograd_nn::{layers, Module};
/// let mut reflect = layers::pad(&[(1, 1), (2, 0)], PadMode::Reflect);
/// assert_eq!(reflect.forward(&Tensor::zeros(&[1, 1, 3, 3], DType::F64)).shape(), &[1, 1, 5, 5]);
/// ```
pub fn pad(pads: &[(usize, usize)], mode: F::PadMode) -> Function {
    let pads = pads.to_vec();
    let name = match mode {
        F::PadMode::Constant(0.0) => "ZeroPad",
        F::PadMode::Constant(_) => "ConstantPad",
        F::PadMode::Reflect => "ReflectionPad",
        F::PadMode::Replicate => "ReplicationPad",
    };
    Function::new(name, move |x| F::pad(x, &pads, mode))
}

/// Reshape each sample (the batch dim is kept): `[N, ...] -> [N, shape...]`.
pub fn reshape(shape: &[usize]) -> Function {
    let shape = shape.to_vec();
    Function::new("Reshape", move |x| {
        let mut s = vec![x.size(0)];
        s.extend_from_slice(&shape);
        x.reshape(&s)
    })
}

/// Modules applied one after another.
#[derive(Clone)]
pub struct Sequential {
    state: ModuleState,
    children: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Sequential {
        Sequential {
            state: ModuleState::new(vec![]),
            children: Vec::new(),
        }
    }

    /// Appends a module.
    #[allow(clippy::should_implement_trait)] // Torch's name for appending a layer
    pub fn add(mut self, m: impl Module + 'static) -> Sequential {
        self.push(Box::new(m));
        self
    }

    /// Appends a boxed module.
    pub fn push(&mut self, m: Box<dyn Module>) {
        let mut params = self.state.params.clone();
        let mut names = self.state.names.clone();
        for (n, p) in m.parameter_names().into_iter().zip(m.parameters()) {
            names.push(format!("{}.{n}", self.children.len()));
            params.push(p);
        }
        self.children.push(m);
        let training = self.state.training;
        self.state = ModuleState::new(names.iter().map(|n| n.as_str()).zip(params).collect());
        self.state.training = training;
    }

    /// The modules, in order.
    pub fn children(&self) -> &[Box<dyn Module>] {
        &self.children
    }

    /// The same modules in `segments` consecutive groups of about equal length, each
    /// [`Checkpointed`] (PyTorch's `checkpoint_sequential`): a training step then keeps only
    /// the segments' outputs and recomputes one segment's activations at a time during the
    /// backward pass, for one more forward pass. Parameters are named
    /// `{segment}.{child}.{name}`.
    ///
    /// ```
    /// use ferrograd::{DType, Generator, Tensor};
    /// use ferrograd_nn::layers::{tanh, Linear, Sequential};
    /// use ferrograd_nn::Module;
    /// let mut rng = Generator::new(0);
    /// let mut net = Sequential::new();
    /// for _ in 0..6 {
    ///     net = net.add(Linear::new(8, 8, &mut rng, DType::F64)).add(tanh());
    /// }
    /// let x = Tensor::ones(&[2, 8], DType::F64);
    /// let plain = net.forward_with(&net.parameters(), &x);
    /// let net = net.checkpoint_sequential(3);
    /// assert_eq!(net.children().len(), 3);
    /// assert_eq!(net.forward_with(&net.parameters(), &x).to_vec::<f64>(), plain.to_vec::<f64>());
    /// ```
    pub fn checkpoint_sequential(self, segments: usize) -> Sequential {
        let n = self.children.len();
        let segments = segments.clamp(1, n.max(1));
        let training = self.state.training;
        let mut children = self.children.into_iter();
        let mut out = Sequential::new();
        for k in 0..segments {
            let len = (n * (k + 1)) / segments - (n * k) / segments;
            let mut seg = Sequential::new();
            for c in children.by_ref().take(len) {
                seg.push(c);
            }
            out.push(Box::new(Checkpointed::new(seg)));
        }
        out.state.training = training;
        out
    }
}

/// A module whose activations are not kept for the backward pass but recomputed by it
/// (gradient checkpointing, see [`ferrograd::checkpoint`]): memory for one more forward
/// pass. Dropout inside draws the same masks when recomputed, and batch normalization's
/// running statistics are updated once, by the forward pass.
///
/// ```
/// use ferrograd::{grad, DType, Generator, Tensor};
/// use ferrograd_nn::layers::{Checkpointed, Linear};
/// use ferrograd_nn::Module;
/// let layer = Linear::new(3, 2, &mut Generator::new(0), DType::F64);
/// let wrapped = Checkpointed::new(layer.clone());
/// let x = Tensor::ones(&[4, 3], DType::F64);
/// let plain = |p: &Vec<Tensor>, x: &Tensor| layer.forward_with(p, x).tanh().sum();
/// let checkpointed = |p: &Vec<Tensor>, x: &Tensor| wrapped.forward_with(p, x).tanh().sum();
/// let (want, _) = grad(plain).call(&layer.parameters(), (&x,));
/// let (got, _) = grad(checkpointed).call(&wrapped.parameters(), (&x,));
/// assert_eq!(got[0].to_vec::<f64>(), want[0].to_vec::<f64>());
/// ```
pub struct Checkpointed {
    state: ModuleState,
    inner: Arc<Mutex<Box<dyn Module>>>,
    policy: ferrograd::Policy,
}

impl Checkpointed {
    /// Wraps `module`.
    pub fn new(module: impl Module + 'static) -> Checkpointed {
        Checkpointed::boxed(Box::new(module))
    }

    /// Wraps a boxed module.
    pub fn boxed(module: Box<dyn Module>) -> Checkpointed {
        let mut state = ModuleState::new(
            module
                .parameter_names()
                .iter()
                .map(|n| n.as_str())
                .zip(module.parameters())
                .collect(),
        );
        state.training = module.is_training();
        Checkpointed {
            state,
            inner: Arc::new(Mutex::new(module)),
            policy: ferrograd::Policy::Nothing,
        }
    }

    /// What the forward pass keeps for the backward pass (see [`ferrograd::Policy`]; by
    /// default nothing).
    pub fn policy(mut self, policy: ferrograd::Policy) -> Checkpointed {
        self.policy = policy;
        self
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Box<dyn Module>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clone for Checkpointed {
    fn clone(&self) -> Self {
        Checkpointed {
            state: self.state.clone(),
            inner: Arc::new(Mutex::new(self.inner().box_clone())),
            policy: self.policy,
        }
    }
}

impl Module for Checkpointed {
    fn name(&self) -> String {
        format!("Checkpointed({})", self.inner().name())
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        let inner = Arc::clone(&self.inner);
        let generators = self.inner().generators();
        let start: Vec<Generator> = generators
            .iter()
            .map(|g| g.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect();
        let first = std::sync::atomic::AtomicBool::new(true);
        let body = move |(p, x): &(Vec<Tensor>, Tensor)| {
            let mut m = inner.lock().unwrap_or_else(|e| e.into_inner());
            if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
                return m.forward_with(p, x);
            }
            // a recomputation: the generators as the forward found them, and the buffers
            // (running statistics) left as the forward left them
            let lock =
                |g: &Arc<Mutex<Generator>>| g.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let now: Vec<Generator> = generators.iter().map(lock).collect();
            for (g, s) in generators.iter().zip(&start) {
                *g.lock().unwrap_or_else(|e| e.into_inner()) = s.clone();
            }
            let buffers = m.buffers();
            let out = m.forward_with(p, x);
            m.set_buffers(&buffers);
            for (g, s) in generators.iter().zip(now) {
                *g.lock().unwrap_or_else(|e| e.into_inner()) = s;
            }
            out
        };
        ferrograd::checkpoint_with(self.policy, body, &(p.to_vec(), x.clone()))
    }
    fn on_mode(&mut self, training: bool) {
        let mut m = self.inner();
        if training {
            m.train()
        } else {
            m.evaluate()
        }
    }
    fn set_parameters(&mut self, params: Vec<Tensor>) {
        self.inner().set_parameters(params.clone());
        self.state.replace_params(params);
    }
    fn buffers(&self) -> Vec<(String, Array)> {
        self.inner().buffers()
    }
    fn set_buffers(&mut self, buffers: &[(String, Array)]) {
        self.inner().set_buffers(buffers)
    }
    fn generators(&self) -> Vec<Arc<Mutex<Generator>>> {
        self.inner().generators()
    }
    module_boilerplate!();
}

impl Default for Sequential {
    fn default() -> Self {
        Sequential::new()
    }
}

impl Module for Sequential {
    fn name(&self) -> String {
        format!(
            "Sequential[{}]",
            self.children
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
    fn forward_with(&self, p: &[Tensor], x: &Tensor) -> Tensor {
        let mut h = x.clone();
        let mut at = 0;
        for (index, c) in self.children.iter().enumerate() {
            let n = c.state().params.len();
            let layer = Context::Layer {
                of: "a Sequential",
                index,
            };
            h = in_context(layer, || c.forward_with(&p[at..at + n], &h));
            at += n;
        }
        h
    }
    fn on_mode(&mut self, training: bool) {
        for c in &mut self.children {
            if training {
                c.train()
            } else {
                c.evaluate()
            }
        }
    }
    fn set_parameters(&mut self, params: Vec<Tensor>) {
        let mut at = 0;
        for c in &mut self.children {
            let n = c.state().params.len();
            c.set_parameters(params[at..at + n].to_vec());
            at += n;
        }
        self.state.replace_params(params);
    }
    fn buffers(&self) -> Vec<(String, Array)> {
        self.children
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.buffers()
                    .into_iter()
                    .map(move |(n, a)| (format!("{i}.{n}"), a))
            })
            .collect()
    }
    fn generators(&self) -> Vec<Arc<Mutex<Generator>>> {
        self.children.iter().flat_map(|c| c.generators()).collect()
    }
    fn set_buffers(&mut self, buffers: &[(String, Array)]) {
        for (i, c) in self.children.iter_mut().enumerate() {
            let prefix = format!("{i}.");
            let mine: Vec<(String, Array)> = buffers
                .iter()
                .filter_map(|(n, a)| n.strip_prefix(&prefix).map(|s| (s.to_string(), a.clone())))
                .collect();
            c.set_buffers(&mine);
        }
    }
    module_boilerplate!();
}

/// A weighted sum of criteria over paired inputs (the seed's `ParallelCriterion`): input
/// and target are split along dim 0 into as many parts as there are criteria.
#[derive(Clone, Default)]
pub struct ParallelCriterion {
    parts: Vec<(f64, Arc<dyn Criterion>)>,
}

impl ParallelCriterion {
    /// No criteria yet.
    pub fn new() -> ParallelCriterion {
        ParallelCriterion::default()
    }

    /// Adds a criterion with a weight.
    pub fn add(mut self, criterion: impl Criterion + 'static, weight: f64) -> ParallelCriterion {
        self.parts.push((weight, Arc::new(criterion)));
        self
    }

    /// The weighted sum over explicit pairs.
    #[track_caller]
    pub fn loss_pairs(&self, inputs: &[Tensor], targets: &[Tensor]) -> Tensor {
        if inputs.len() != self.parts.len() || targets.len() != self.parts.len() {
            crate::fail!(
                "ParallelCriterion: {} criteria need as many inputs and targets, got {} and {}",
                self.parts.len(),
                inputs.len(),
                targets.len()
            );
        }
        let mut total: Option<Tensor> = None;
        let pairs = self.parts.iter().zip(inputs.iter().zip(targets));
        for (index, ((w, c), (x, t))) in pairs.enumerate() {
            let part = Context::Layer {
                of: "a ParallelCriterion",
                index,
            };
            let term = in_context(part, || c.loss(x, t)) * *w;
            total = Some(match total {
                Some(acc) => acc + term,
                None => term,
            });
        }
        match total {
            Some(total) => total,
            None => crate::fail!("ParallelCriterion: no criteria"),
        }
    }
}

impl Criterion for ParallelCriterion {
    fn loss(&self, input: &Tensor, target: &Tensor) -> Tensor {
        let k = self.parts.len();
        let inputs = input.chunk(k, 0);
        let targets = target.chunk(k, 0);
        self.loss_pairs(&inputs, &targets)
    }
}

/// A criterion from a loss function of (input, target) with a name, for the losses below.
macro_rules! reduced_criterion {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty = $default:expr),* } => |$s:ident, $x:ident, $t:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $(#[doc = concat!("PyTorch's `", stringify!($field), "`.")] pub $field: $ty,)*
            /// How the terms are reduced (the mean by default).
            pub reduction: F::Reduce,
        }

        impl Default for $name {
            fn default() -> $name {
                $name { $($field: $default,)* reduction: F::Reduce::Mean }
            }
        }

        impl Criterion for $name {
            fn loss(&self, $x: &Tensor, $t: &Tensor) -> Tensor {
                let $s = self;
                $body
            }
        }
    };
}

/// The pair inputs of the two-input criteria, stacked along dim 0 (`[2, ...]`).
#[track_caller]
fn pair(name: &str, input: &Tensor) -> (Tensor, Tensor) {
    if input.ndim() == 0 || input.size(0) != 2 {
        crate::fail!(
            "{name}: expects its two inputs stacked along dim 0 ([2, ...]), got {:?}",
            input.shape()
        );
    }
    (input.select(0, 0), input.select(0, 1))
}

reduced_criterion! {
    /// `|input - target|` (the seed's `AbsCriterion`, PyTorch's `L1Loss`).
    AbsCriterion {} => |s, x, t| F::l1_loss(x, t, s.reduction)
}

reduced_criterion! {
    /// Smooth L1 (the seed's `SmoothL1Criterion`, PyTorch's `SmoothL1Loss`).
    SmoothL1Criterion { beta: f64 = 1.0 } => |s, x, t| F::smooth_l1_loss(x, t, s.beta, s.reduction)
}

reduced_criterion! {
    /// KL divergence of log-probabilities `input` from `target` (the seed's
    /// `DistKLDivCriterion`, PyTorch's `KLDivLoss`).
    KlDivCriterion { log_target: bool = false } => |s, x, t| F::kl_div(x, t, s.reduction, s.log_target)
}

reduced_criterion! {
    /// The hinge loss `max(0, margin - y x)` (the seed's `MarginCriterion`).
    MarginCriterion { margin: f64 = 1.0 } => |s, x, t| F::hinge_loss(x, t, s.margin, s.reduction)
}

reduced_criterion! {
    /// The multi-class hinge loss against class indices (the seed's
    /// `MultiMarginCriterion`, PyTorch's `MultiMarginLoss`; `p` 1 or 2).
    MultiMarginCriterion { p: u32 = 1, margin: f64 = 1.0 } => |s, x, t| F::multi_margin_loss(x, t, s.p, s.margin, None, s.reduction)
}

reduced_criterion! {
    /// `x` for `y = 1`, `max(0, margin - x)` for `y = -1` (the seed's
    /// `HingeEmbeddingCriterion`).
    HingeEmbeddingCriterion { margin: f64 = 1.0 } => |s, x, t| F::hinge_embedding_loss(x, t, s.margin, s.reduction)
}

reduced_criterion! {
    /// The cosine embedding loss of two inputs stacked as `[2, N, D]` against ±1 labels
    /// (the seed's `CosineEmbeddingCriterion`, whose input was the pair).
    CosineEmbeddingCriterion { margin: f64 = 0.0 } => |s, x, t| {
        let (a, b) = pair("CosineEmbeddingCriterion", x);
        F::cosine_embedding_loss(&a, &b, t, s.margin, s.reduction)
    }
}

reduced_criterion! {
    /// The ranking loss of two inputs stacked as `[2, N]` against ±1 labels (the seed's
    /// `MarginRankingCriterion`).
    MarginRankingCriterion { margin: f64 = 0.0 } => |s, x, t| {
        let (a, b) = pair("MarginRankingCriterion", x);
        F::margin_ranking_loss(&a, &b, t, s.margin, s.reduction)
    }
}

reduced_criterion! {
    /// `ln(1 + e^(-y x))` (the seed's `SoftMarginCriterion`).
    SoftMarginCriterion {} => |s, x, t| F::soft_margin_loss(x, t, s.reduction)
}

reduced_criterion! {
    /// The multi-label one-versus-all loss (the seed's `MultiLabelSoftMarginCriterion`).
    MultiLabelSoftMarginCriterion {} => |s, x, t| F::multilabel_soft_margin_loss(x, t, s.reduction)
}

reduced_criterion! {
    /// Squared error (the seed's `MSECriterion`, PyTorch's `MSELoss`).
    MseCriterion {} => |s, x, t| match s.reduction {
        F::Reduce::Mean => F::mse(x, t),
        r => F::mse_loss(x, t, r),
    }
}

reduced_criterion! {
    /// Negative log-likelihood of i64 class targets under log-probabilities (the seed's
    /// `ClassNLLCriterion`, PyTorch's `NLLLoss`).
    ClassNllCriterion {} => |s, x, t| match s.reduction {
        F::Reduce::Mean => F::class_nll(x, t),
        r => F::nll_loss(x, t, r),
    }
}

reduced_criterion! {
    /// Cross-entropy of logits against i64 class targets (PyTorch's `CrossEntropyLoss`),
    /// with label smoothing and an ignored target value ([`F::cross_entropy_with`] also takes
    /// class weights).
    CrossEntropyCriterion { label_smoothing: f64 = 0.0, ignore_index: Option<i64> = None } => |s, x, t| {
        match (s.reduction, s.label_smoothing, s.ignore_index) {
            (F::Reduce::Mean, 0.0, None) => F::cross_entropy(x, t),
            (reduction, label_smoothing, ignore_index) => F::cross_entropy_with(
                x,
                t,
                F::CrossEntropy {
                    reduction,
                    label_smoothing,
                    ignore_index,
                    ..Default::default()
                },
            ),
        }
    }
}

reduced_criterion! {
    /// Binary cross-entropy of probabilities against targets in `[0, 1]` (the seed's
    /// `BCECriterion`, PyTorch's `BCELoss`).
    BceCriterion {} => |s, x, t| match s.reduction {
        F::Reduce::Mean => F::bce(x, t),
        r => F::binary_cross_entropy(x, t, r),
    }
}
