//! Initial weights, as PyTorch's `nn.init`: Xavier (Glorot) and Kaiming (He) uniform and
//! normal, truncated normal, and the gains of the common nonlinearities. Fans follow
//! PyTorch: for a weight `[out, in, k...]`, `fan_in = in · Πk` and `fan_out = out · Πk`.

use ferrograd::{DType, Generator, Tensor};

/// A nonlinearity, for [`gain`] and the Kaiming initializers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Nonlinearity {
    /// Linear layers, convolutions, sigmoid: gain 1.
    Linear,
    /// tanh: gain 5/3.
    Tanh,
    /// ReLU: gain √2.
    Relu,
    /// Leaky ReLU with this negative slope: gain √(2 / (1 + slope²)).
    LeakyRelu(f64),
    /// SELU: gain 3/4.
    Selu,
}

/// The recommended gain for `nonlinearity` (PyTorch's `calculate_gain`).
pub fn gain(nonlinearity: Nonlinearity) -> f64 {
    match nonlinearity {
        Nonlinearity::Linear => 1.0,
        Nonlinearity::Tanh => 5.0 / 3.0,
        Nonlinearity::Relu => 2f64.sqrt(),
        Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
        Nonlinearity::Selu => 0.75,
    }
}

/// `(fan_in, fan_out)` of a weight of `shape` (at least 2 dims).
#[track_caller]
pub fn fans(shape: &[usize]) -> (usize, usize) {
    if shape.len() < 2 {
        crate::fail!(
            "init: fan in and fan out need a weight of at least 2 dims, got shape {shape:?}"
        );
    }
    let receptive: usize = shape[2..].iter().product();
    (shape[1] * receptive, shape[0] * receptive)
}

/// Which fan the Kaiming initializers keep the variance of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fan {
    /// The forward pass's (PyTorch's default).
    In,
    /// The backward pass's.
    Out,
}

fn fan(shape: &[usize], mode: Fan) -> usize {
    let (i, o) = fans(shape);
    match mode {
        Fan::In => i,
        Fan::Out => o,
    }
}

/// Uniform in `±gain · √(6 / (fan_in + fan_out))` (Glorot & Bengio).
///
/// ```
/// use ferrograd::{DType, Generator};
/// use ferrograd_nn::init::{gain, xavier_uniform, Nonlinearity};
/// let w = xavier_uniform(&mut Generator::new(0), &[30, 20], gain(Nonlinearity::Tanh), DType::F32);
/// let bound = 5.0 / 3.0 * (6.0f32 / 50.0).sqrt();
/// assert!(w.to_vec::<f32>().iter().all(|v| v.abs() <= bound));
/// ```
#[track_caller]
pub fn xavier_uniform(rng: &mut Generator, shape: &[usize], gain: f64, dtype: DType) -> Tensor {
    let (i, o) = fans(shape);
    let bound = gain * (6.0 / (i + o) as f64).sqrt();
    Tensor::new(rng.uniform(shape, -bound, bound, dtype))
}

/// Normal with standard deviation `gain · √(2 / (fan_in + fan_out))` (Glorot & Bengio).
#[track_caller]
pub fn xavier_normal(rng: &mut Generator, shape: &[usize], gain: f64, dtype: DType) -> Tensor {
    let (i, o) = fans(shape);
    let std = gain * (2.0 / (i + o) as f64).sqrt();
    Tensor::new(rng.normal(shape, 0.0, std, dtype))
}

/// Uniform in `±gain · √(3 / fan)` (He et al.; PyTorch's `kaiming_uniform_` with
/// `Nonlinearity::Relu`, `Fan::In` by default there).
#[track_caller]
pub fn kaiming_uniform(
    rng: &mut Generator,
    shape: &[usize],
    nonlinearity: Nonlinearity,
    mode: Fan,
    dtype: DType,
) -> Tensor {
    let bound = gain(nonlinearity) * (3.0 / fan(shape, mode) as f64).sqrt();
    Tensor::new(rng.uniform(shape, -bound, bound, dtype))
}

/// Normal with standard deviation `gain / √fan` (He et al.).
#[track_caller]
pub fn kaiming_normal(
    rng: &mut Generator,
    shape: &[usize],
    nonlinearity: Nonlinearity,
    mode: Fan,
    dtype: DType,
) -> Tensor {
    let std = gain(nonlinearity) / (fan(shape, mode) as f64).sqrt();
    Tensor::new(rng.normal(shape, 0.0, std, dtype))
}

/// Normal(`mean`, `std`) restricted to `[low, high]`: values outside are drawn again
/// (PyTorch's `trunc_normal_`, whose defaults are `low = -2`, `high = 2`).
#[track_caller]
pub fn trunc_normal(
    rng: &mut Generator,
    shape: &[usize],
    mean: f64,
    std: f64,
    (low, high): (f64, f64),
    dtype: DType,
) -> Tensor {
    let site = ferrograd::array::Site(std::panic::Location::caller());
    // at least ~1% of draws must land inside, or redrawing would not end
    let reachable = low < high && std > 0.0 && mean + 3.0 * std >= low && mean - 3.0 * std <= high;
    if !reachable {
        panic!(
            "ferrograd: trunc_normal: [{low}, {high}] must be an interval that Normal({mean}, {std}) reaches (at {site})"
        );
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let draws = rng.normal(&[(n - out.len()).max(16)], mean, std, DType::F64);
        out.extend(
            draws
                .to_vec::<f64>()
                .into_iter()
                .filter(|v| (low..=high).contains(v))
                .take(n - out.len()),
        );
    }
    Tensor::from_vec(out, shape).to_dtype(dtype)
}

/// A (semi-)orthogonal matrix times `gain` (Saxe et al.; PyTorch's `orthogonal_`): the
/// weight flattened to `[shape[0], rest]`, the Q of the QR decomposition of a standard
/// normal draw (rows orthonormal when there are fewer rows than columns, columns otherwise),
/// with signs fixed by R's diagonal so the result is uniform over orthogonal matrices.
///
/// ```
/// use ferrograd::{DType, Generator, Tensor};
/// use ferrograd_nn::init;
/// let w = init::orthogonal(&mut Generator::new(0), &[3, 5], 1.0, DType::F64);
/// let rows = w.matmul(&w.t()); // W Wᵀ = I
/// assert!((&rows - &Tensor::eye(3, DType::F64)).abs().max().item::<f64>() < 1e-12);
/// ```
#[track_caller]
pub fn orthogonal(rng: &mut Generator, shape: &[usize], gain: f64, dtype: DType) -> Tensor {
    if shape.len() < 2 {
        crate::fail!("init: orthogonal needs a weight of at least 2 dims, got shape {shape:?}");
    }
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    let draw = Tensor::new(rng.normal(&[rows, cols], 0.0, 1.0, DType::F64));
    let tall = if rows < cols { draw.t() } else { draw };
    let (q, r) = tall.qr();
    let signs = r.diagonal(0).sign();
    let q = &q * &signs.unsqueeze(0);
    let q = if rows < cols { q.t() } else { q };
    (q * gain)
        .contiguous()
        .reshape(shape)
        .to_dtype(dtype)
        .detach()
}
