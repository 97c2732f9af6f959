//! Model primitives, each returning a model and its parameters, with the seed's options:
//! [`neural_network`], [`spatial_network`], [`alexnet`] (built from modules, so they carry
//! batch-norm statistics and dropout, with `train`/`evaluate`), and the recurrent networks
//! [`RecurrentNetwork`] (plain, LSTM, GRU, fast weights), which take and return their state
//! and output the last step or all steps.

use ferrograd::{DType, Generator, Pool2dParams, Tensor, Tree};

use crate::functional as F;
use crate::layers::{self, BatchNorm, Conv2d, Dropout, Linear, Sequential};
use crate::module::Module;

/// Activation between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// max(x, 0)
    Relu,
    /// tanh
    Tanh,
    /// logistic
    Sigmoid,
}

fn activation(a: Activation) -> layers::Function {
    match a {
        Activation::Relu => layers::relu(),
        Activation::Tanh => layers::tanh(),
        Activation::Sigmoid => layers::sigmoid(),
    }
}

/// A model built from modules: call it with explicit parameters inside `grad`.
#[derive(Clone)]
pub struct Model {
    net: Sequential,
}

impl Model {
    /// The output for `input` under `params` (in [`parameters`](Model::parameters) order).
    #[track_caller]
    pub fn forward(&self, params: &[Tensor], input: &Tensor) -> Tensor {
        self.net.forward_with(params, input)
    }

    /// The initial parameters.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.net.parameters()
    }

    /// The parameters' names (`1.weight`, ...).
    pub fn parameter_names(&self) -> Vec<String> {
        self.net.parameter_names()
    }

    /// Training mode (dropout, batch statistics).
    pub fn train(&mut self) {
        self.net.train()
    }

    /// Evaluation mode (no dropout, running statistics).
    pub fn evaluate(&mut self) {
        self.net.evaluate()
    }

    /// The modules.
    pub fn modules(&self) -> &Sequential {
        &self.net
    }
}

/// Options of [`neural_network`] (defaults: the seed's).
#[derive(Clone, Debug)]
pub struct NeuralNetworkOptions {
    /// Features of each input (10).
    pub input_features: usize,
    /// Units per layer ([100, 2]).
    pub hidden_features: Vec<usize>,
    /// Between layers (ReLU).
    pub activations: Activation,
    /// No activation or batch norm after the last layer (false).
    pub classifier: bool,
    /// Dropout before each layer (none).
    pub dropout_probs: Vec<f64>,
    /// Batch norm after each linear layer (false).
    pub batch_normalization: bool,
    /// Element type (f32).
    pub dtype: DType,
}

impl Default for NeuralNetworkOptions {
    fn default() -> Self {
        NeuralNetworkOptions {
            input_features: 10,
            hidden_features: vec![100, 2],
            activations: Activation::Relu,
            classifier: false,
            dropout_probs: vec![],
            batch_normalization: false,
            dtype: DType::F32,
        }
    }
}

fn mlp_into(net: &mut Sequential, opt: &NeuralNetworkOptions, rng: &mut Generator) {
    net.push(Box::new(layers::reshape(&[opt.input_features])));
    let mut inputs = opt.input_features;
    let n = opt.hidden_features.len();
    for (i, &h) in opt.hidden_features.iter().enumerate() {
        let p = opt.dropout_probs.get(i).copied().unwrap_or(0.0);
        if p > 0.0 {
            net.push(Box::new(Dropout::new(
                p,
                false,
                rng.uniform(&[1], 0.0, 1e9, DType::F64).item::<f64>() as u64,
            )));
        }
        net.push(Box::new(Linear::new(inputs, h, rng, opt.dtype)));
        let last = i + 1 == n && opt.classifier;
        if opt.batch_normalization && !last {
            net.push(Box::new(BatchNorm::new(h, opt.dtype)));
        }
        if !last {
            net.push(Box::new(activation(opt.activations)));
        }
        inputs = h;
    }
}

/// A multi-layer perceptron: per layer `[dropout] linear [batch norm] [activation]`.
pub fn neural_network(opt: &NeuralNetworkOptions, rng: &mut Generator) -> (Model, Vec<Tensor>) {
    let mut net = Sequential::new();
    mlp_into(&mut net, opt, rng);
    let model = Model { net };
    let params = model.parameters();
    (model, params)
}

/// Options of [`spatial_network`] (defaults: the seed's).
#[derive(Clone, Debug)]
pub struct SpatialNetworkOptions {
    /// Square kernel size (5).
    pub kernel_size: usize,
    /// Padding (None: `(kernel_size - 1) / 2`).
    pub padding: Option<usize>,
    /// Input channels (3).
    pub input_features: usize,
    /// Channels per layer ([16, 32, 64]).
    pub hidden_features: Vec<usize>,
    /// Max pooling size after each layer (1: none).
    pub poolings: Vec<usize>,
    /// Stride of the first layer (1).
    pub input_stride: usize,
    /// Between layers (ReLU).
    pub activations: Activation,
    /// Spatial dropout before each layer (none).
    pub dropout_probs: Vec<f64>,
    /// Batch norm after each convolution (false).
    pub batch_normalization: bool,
    /// Element type (f32).
    pub dtype: DType,
}

impl Default for SpatialNetworkOptions {
    fn default() -> Self {
        SpatialNetworkOptions {
            kernel_size: 5,
            padding: None,
            input_features: 3,
            hidden_features: vec![16, 32, 64],
            poolings: vec![1, 1, 1],
            input_stride: 1,
            activations: Activation::Relu,
            dropout_probs: vec![],
            batch_normalization: false,
            dtype: DType::F32,
        }
    }
}

fn conv_into(net: &mut Sequential, opt: &SpatialNetworkOptions, rng: &mut Generator) {
    let k = opt.kernel_size;
    let pad = opt.padding.unwrap_or((k - 1) / 2);
    let mut inputs = opt.input_features;
    for (i, &h) in opt.hidden_features.iter().enumerate() {
        let p = opt.dropout_probs.get(i).copied().unwrap_or(0.0);
        if p > 0.0 {
            net.push(Box::new(Dropout::new(p, true, i as u64)));
        }
        let stride = if i == 0 { opt.input_stride } else { 1 };
        let params = ferrograd::Conv2dParams {
            stride: (stride, stride),
            padding: (pad, pad),
            ..Default::default()
        };
        net.push(Box::new(Conv2d::new(
            inputs,
            h,
            (k, k),
            params,
            rng,
            opt.dtype,
        )));
        if opt.batch_normalization {
            net.push(Box::new(BatchNorm::new(h, opt.dtype)));
        }
        net.push(Box::new(activation(opt.activations)));
        let pool = opt.poolings.get(i).copied().unwrap_or(1);
        if pool > 1 {
            net.push(Box::new(layers::max_pool2d(Pool2dParams::square(pool))));
        }
        inputs = h;
    }
}

/// A convolutional stack: per layer `[spatial dropout] conv [batch norm] activation
/// [max pool]`.
pub fn spatial_network(opt: &SpatialNetworkOptions, rng: &mut Generator) -> (Model, Vec<Tensor>) {
    let mut net = Sequential::new();
    conv_into(&mut net, opt, rng);
    let model = Model { net };
    let params = model.parameters();
    (model, params)
}

/// A convolutional stack followed by a classifier MLP for images of `depth x height x
/// width`; the MLP's input size is found by running a zero image through the convolutions.
pub fn alexnet(
    depth: usize,
    height: usize,
    width: usize,
    conv: &SpatialNetworkOptions,
    mlp: &NeuralNetworkOptions,
    rng: &mut Generator,
) -> (Model, Vec<Tensor>) {
    let conv = SpatialNetworkOptions {
        input_features: depth,
        ..conv.clone()
    };
    let mut net = Sequential::new();
    conv_into(&mut net, &conv, rng);
    let probe = net.forward_with(
        &net.parameters(),
        &Tensor::zeros(&[1, depth, height, width], conv.dtype),
    );
    let mlp = NeuralNetworkOptions {
        input_features: probe.numel(),
        classifier: true,
        ..mlp.clone()
    };
    mlp_into(&mut net, &mlp, rng);
    let model = Model { net };
    let params = model.parameters();
    (model, params)
}

/// Which recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// `h = tanh([x, h] W + b)`.
    Plain,
    /// Long short-term memory (gates i, f, o and candidate g).
    Lstm,
    /// Gated recurrent unit.
    Gru,
    /// Fast weights (Ba et al.): `A ← λA + η h hᵀ`, then `S + 1` inner steps of
    /// `h_s = relu(layer_norm([x, h] W + b + A h_s))`.
    FastWeights {
        /// Decay λ (0.9).
        lambda: f64,
        /// Learning rate η (0.5).
        eta: f64,
        /// Inner steps minus one (1).
        s: usize,
    },
}

impl Cell {
    /// How many `[H]` blocks the cell's joint product `[x, h] W` has: the LSTM's four gates,
    /// the GRU's reset and update gates, one for the others.
    fn blocks(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 2,
            Cell::Plain | Cell::FastWeights { .. } => 1,
        }
    }
}

/// What a recurrent network outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The last hidden state `[B, H]`.
    Last,
    /// Every hidden state `[B, T, H]`.
    All,
}

/// Parameters of a recurrent network (unused ones are empty).
#[derive(Tree, Clone, Debug)]
pub struct RecurrentParams {
    /// Input-and-hidden weights `[in + H, k H]`.
    pub w: Tensor,
    /// Bias `[k H]`.
    pub b: Tensor,
    /// GRU candidate weights `[in + H, H]`.
    pub v: Option<Tensor>,
    /// GRU candidate bias `[H]`.
    pub c: Option<Tensor>,
    /// Batch-normalized LSTM: gain and bias of the gate normalization `[4H]` (0.1 and 0, as
    /// the seed) and of the cell normalization `[H]`.
    pub batch_norm: Option<LstmNormParams>,
}

/// The shared affine parameters of a batch-normalized LSTM.
#[derive(Tree, Clone, Debug)]
pub struct LstmNormParams {
    /// Gate gain `[4H]`.
    pub gate_gain: Tensor,
    /// Gate bias `[4H]`.
    pub gate_bias: Tensor,
    /// Cell gain `[H]`.
    pub cell_gain: Tensor,
    /// Cell bias `[H]`.
    pub cell_bias: Tensor,
}

/// Per-time-step running statistics of a batch-normalized LSTM (steps past the last layer
/// reuse it, as the seed's `maxBatchNormalizationLayers`).
#[derive(Debug)]
pub struct LstmNormState {
    gates: Vec<crate::functional::RunningStats>,
    cells: Vec<crate::functional::RunningStats>,
}

/// The state carried between calls: hidden state, LSTM cell, fast-weight matrix.
#[derive(Tree, Clone, Debug, Default)]
pub struct RecurrentState {
    /// Hidden state `[B, H]`.
    pub h: Option<Tensor>,
    /// LSTM cell `[B, H]`.
    pub c: Option<Tensor>,
    /// Fast weights `[B, H, H]`.
    pub a: Option<Tensor>,
}

/// A recurrent network over `[B, T, F]` (or `[T, F]`) inputs.
#[derive(Clone, Debug)]
pub struct RecurrentNetwork {
    /// The cell.
    pub cell: Cell,
    /// Input features.
    pub input_features: usize,
    /// Hidden units.
    pub hidden_features: usize,
    /// Last step or all steps.
    pub output: Output,
    /// Batch-normalization statistics of a batch-normalized LSTM.
    pub batch_norm: Option<std::sync::Arc<LstmNormState>>,
    /// Training mode (batch statistics, moving running statistics) or evaluation.
    pub training: bool,
}

impl RecurrentNetwork {
    /// A network and its parameters, initialized uniformly in `±1/sqrt(H)` (the seed's zero
    /// initialization would keep every hidden unit identical).
    pub fn new(
        cell: Cell,
        input_features: usize,
        hidden_features: usize,
        output: Output,
        rng: &mut Generator,
        dtype: DType,
    ) -> (RecurrentNetwork, RecurrentParams) {
        let k = cell.blocks();
        let bound = 1.0 / (hidden_features as f64).sqrt();
        let mut u = |shape: &[usize]| Tensor::new(rng.uniform(shape, -bound, bound, dtype));
        let w = u(&[input_features + hidden_features, k * hidden_features]);
        let b = u(&[k * hidden_features]);
        let (v, c) = if cell == Cell::Gru {
            (
                Some(u(&[input_features + hidden_features, hidden_features])),
                Some(u(&[hidden_features])),
            )
        } else {
            (None, None)
        };
        (
            RecurrentNetwork {
                cell,
                input_features,
                hidden_features,
                output,
                batch_norm: None,
                training: true,
            },
            RecurrentParams {
                w,
                b,
                v,
                c,
                batch_norm: None,
            },
        )
    }

    /// A batch-normalized LSTM (Cooijmans et al.; the seed's `batchNormalization` option):
    /// the gate pre-activations and the cell are normalized per time step with their own
    /// running statistics (steps past `max_layers` share the last), and shared gains (0.1)
    /// and biases (0). Needs batches of more than one sequence in training.
    pub fn lstm_with_batch_norm(
        input_features: usize,
        hidden_features: usize,
        output: Output,
        max_layers: usize,
        rng: &mut Generator,
        dtype: DType,
    ) -> (RecurrentNetwork, RecurrentParams) {
        let (mut net, mut params) = RecurrentNetwork::new(
            Cell::Lstm,
            input_features,
            hidden_features,
            output,
            rng,
            dtype,
        );
        let h = hidden_features;
        let layers = max_layers.max(1);
        net.batch_norm = Some(std::sync::Arc::new(LstmNormState {
            gates: (0..layers)
                .map(|_| crate::functional::RunningStats::new(4 * h, 0.1, dtype))
                .collect(),
            cells: (0..layers)
                .map(|_| crate::functional::RunningStats::new(h, 0.1, dtype))
                .collect(),
        }));
        params.batch_norm = Some(LstmNormParams {
            gate_gain: Tensor::full(&[4 * h], 0.1, dtype),
            gate_bias: Tensor::zeros(&[4 * h], dtype),
            cell_gain: Tensor::full(&[h], 0.1, dtype),
            cell_bias: Tensor::zeros(&[h], dtype),
        });
        (net, params)
    }

    /// Panics, naming the caller's line, unless `p` has the shapes of this network's
    /// parameters and `state` those of a batch of `bsz` (a state carried over from a batch
    /// of another size, or parameters of another network, failed inside a `cat` or a
    /// `matmul`).
    #[track_caller]
    fn check(&self, p: &RecurrentParams, state: &RecurrentState, bsz: usize) {
        let (f, h) = (self.input_features, self.hidden_features);
        let normed = self.batch_norm.is_some();
        let k = self.cell.blocks();
        let name = match self.cell {
            Cell::Lstm if normed => "a batch-normalized LSTM",
            Cell::Lstm => "an LSTM",
            Cell::Gru => "a GRU",
            Cell::Plain => "a plain RNN",
            Cell::FastWeights { .. } => "a fast-weights RNN",
        };
        if p.batch_norm.is_some() && !normed {
            crate::fail!(
                "RecurrentNetwork: params.batch_norm is given for {name}, which has no batch \
                 normalization (RecurrentNetwork::lstm_with_batch_norm makes one)"
            );
        }
        let gru = self.cell == Cell::Gru;
        let bn = p.batch_norm.as_ref();
        // (its name, the tensor if given, whether it must be, its shape); the parameters'
        // shapes follow from the network's, the state's from the batch's
        let params: [(&str, Option<&Tensor>, bool, &[usize]); 8] = [
            ("params.w", Some(&p.w), true, &[f + h, k * h]),
            ("params.b", Some(&p.b), true, &[k * h]),
            ("params.v", p.v.as_ref(), gru, &[f + h, h]),
            ("params.c", p.c.as_ref(), gru, &[h]),
            (
                "params.batch_norm.gate_gain",
                bn.map(|b| &b.gate_gain),
                normed,
                &[4 * h],
            ),
            (
                "params.batch_norm.gate_bias",
                bn.map(|b| &b.gate_bias),
                normed,
                &[4 * h],
            ),
            (
                "params.batch_norm.cell_gain",
                bn.map(|b| &b.cell_gain),
                normed,
                &[h],
            ),
            (
                "params.batch_norm.cell_bias",
                bn.map(|b| &b.cell_bias),
                normed,
                &[h],
            ),
        ];
        let states: [(&str, Option<&Tensor>, bool, &[usize]); 3] = [
            ("state.h", state.h.as_ref(), false, &[bsz, h]),
            ("state.c", state.c.as_ref(), false, &[bsz, h]),
            ("state.a", state.a.as_ref(), false, &[bsz, h, h]),
        ];
        for (i, (what, t, required, shape)) in params.into_iter().chain(states).enumerate() {
            let got = match t {
                None if required => "none".to_string(),
                Some(t) if t.shape() != shape => format!("{:?}", t.shape()),
                _ => continue,
            };
            let of = if i < params.len() {
                format!("{name} of {f} input and {h} hidden features")
            } else {
                format!("a batch of {bsz} (is it the state of a batch of another size?)")
            };
            crate::fail!("RecurrentNetwork: {what} must be {shape:?} for {of}, got {got}");
        }
    }

    /// Runs the sequence from `state` (zeros when absent); returns the output and the new
    /// state.
    #[track_caller]
    pub fn forward(
        &self,
        p: &RecurrentParams,
        x: &Tensor,
        state: &RecurrentState,
    ) -> (Tensor, RecurrentState) {
        let x = if x.ndim() == 2 {
            x.unsqueeze(0)
        } else {
            x.clone()
        };
        if x.ndim() != 3 || x.size(2) != self.input_features {
            crate::fail!(
                "RecurrentNetwork: expects [B, T, {}] or [T, {}], got {:?}",
                self.input_features,
                self.input_features,
                x.shape()
            );
        }
        let (bsz, steps, hsz) = (x.size(0), x.size(1), self.hidden_features);
        self.check(p, state, bsz);
        let zeros = crate::functional::constant_like(&x, &[bsz, hsz], 0.0);
        let mut h = state.h.clone().unwrap_or_else(|| zeros.clone());
        let mut c = state.c.clone().unwrap_or_else(|| zeros.clone());
        let mut a = state
            .a
            .clone()
            .unwrap_or_else(|| crate::functional::constant_like(&x, &[bsz, hsz, hsz], 0.0));
        let mut outputs = Vec::new();
        for t in 0..steps {
            let xt = x.select(1, t);
            let xh = Tensor::cat(&[xt.clone(), h.clone()], 1);
            match self.cell {
                Cell::Plain => h = F::tanh(&F::linear(&xh, &p.w.t(), Some(&p.b))),
                Cell::Lstm => {
                    let norm = match (&self.batch_norm, &p.batch_norm) {
                        (Some(state), Some(np)) => Some((state, np, t.min(state.gates.len() - 1))),
                        _ => None,
                    };
                    let dots = match norm {
                        Some((state, np, layer)) => F::batch_norm(
                            &xh.matmul(&p.w),
                            Some(&np.gate_gain),
                            Some(&np.gate_bias),
                            Some(&state.gates[layer]),
                            self.training,
                            1e-5,
                        ),
                        None => xh.matmul(&p.w) + &p.b,
                    };
                    let gates = dots.reshape(&[bsz, 4, hsz]);
                    let ifo = F::sigmoid(&gates.narrow(1, 0, 3));
                    let g = F::tanh(&gates.select(1, 3));
                    c = &ifo.select(1, 1) * &c + &ifo.select(1, 0) * &g;
                    let cell_out = match norm {
                        Some((state, np, layer)) => F::batch_norm(
                            &c,
                            Some(&np.cell_gain),
                            Some(&np.cell_bias),
                            Some(&state.cells[layer]),
                            self.training,
                            1e-5,
                        ),
                        None => c.clone(),
                    };
                    h = &ifo.select(1, 2) * &F::tanh(&cell_out);
                }
                Cell::Gru => {
                    let gates = F::sigmoid(&(xh.matmul(&p.w) + &p.b)).reshape(&[bsz, 2, hsz]);
                    let (r, z) = (gates.select(1, 0), gates.select(1, 1));
                    let (v, cb) = (
                        p.v.as_ref().expect("GRU weights"),
                        p.c.as_ref().expect("GRU bias"),
                    );
                    let candidate = F::tanh(&(Tensor::cat(&[xt, &h * &r], 1).matmul(v) + cb));
                    h = &z.rsub_scalar(1.0) * &h + &z * &candidate;
                }
                Cell::FastWeights { lambda, eta, s } => {
                    a = &a * lambda + &(&h.unsqueeze(2).matmul(&h.unsqueeze(1)) * eta);
                    let dot = xh.matmul(&p.w) + &p.b;
                    let mut hs = zeros.clone();
                    for _ in 0..=s {
                        let pre = &dot + &a.matmul(&hs.unsqueeze(2)).squeeze_dim(2);
                        hs = F::relu(&F::layer_norm(&pre, &[hsz], None, None, 1e-5));
                    }
                    h = hs;
                }
            }
            if self.output == Output::All {
                outputs.push(h.unsqueeze(1));
            }
        }
        let out = match self.output {
            Output::Last => h.clone(),
            Output::All => Tensor::cat(&outputs, 1),
        };
        let new_state = RecurrentState {
            h: Some(h),
            c: (self.cell == Cell::Lstm).then_some(c),
            a: matches!(self.cell, Cell::FastWeights { .. }).then_some(a),
        };
        (out, new_state)
    }
}
