//! One-line functional constructors, like the seed's `grad.nn.Linear(100, 50)`: each
//! returns the layer as a plain function of (parameters, input) and its initial parameters,
//! ready for `grad`.
//!
//! ```
//! use ferrograd::{grad, DType, Generator, Tensor};
//! let mut rng = Generator::new(0);
//! let (linear1, p1) = ferrograd_nn::fns::linear(4, 3, &mut rng, DType::F64);
//! let (linear2, p2) = ferrograd_nn::fns::linear(3, 2, &mut rng, DType::F64);
//! let f = |p: &(Vec<Tensor>, Vec<Tensor>), x: &Tensor| linear2(&p.1, &ferrograd_nn::functional::tanh(&linear1(&p.0, x))).sum();
//! let (g, _) = grad(f).call(&(p1, p2), (&Tensor::ones(&[5, 4], DType::F64),));
//! assert_eq!(g.0[0].shape(), &[3, 4]);
//! ```

use ferrograd::{Conv2dParams, DType, Generator, Tensor};

use crate::layers::{BatchNorm, Conv2d, Embedding, LayerNorm, Linear};
use crate::module::functionalize;

/// A functional layer.
pub type LayerFn = Box<dyn Fn(&Vec<Tensor>, &Tensor) -> Tensor + Send + Sync>;

fn boxed(
    f: impl Fn(&Vec<Tensor>, &Tensor) -> Tensor + Send + Sync + 'static,
    p: Vec<Tensor>,
) -> (LayerFn, Vec<Tensor>) {
    (Box::new(f), p)
}

/// `y = x Wᵀ + b`; parameters `[weight [out, in], bias [out]]`.
pub fn linear(
    inputs: usize,
    outputs: usize,
    rng: &mut Generator,
    dtype: DType,
) -> (LayerFn, Vec<Tensor>) {
    let (f, p) = functionalize(&Linear::new(inputs, outputs, rng, dtype));
    boxed(f, p)
}

/// 2-d convolution; parameters `[weight, bias]`.
pub fn conv2d(
    inputs: usize,
    outputs: usize,
    kernel: (usize, usize),
    params: Conv2dParams,
    rng: &mut Generator,
    dtype: DType,
) -> (LayerFn, Vec<Tensor>) {
    let (f, p) = functionalize(&Conv2d::new(inputs, outputs, kernel, params, rng, dtype));
    boxed(f, p)
}

/// Batch normalization in training mode with its own running statistics; parameters
/// `[weight, bias]`.
pub fn batch_norm(channels: usize, dtype: DType) -> (LayerFn, Vec<Tensor>) {
    let (f, p) = functionalize(&BatchNorm::new(channels, dtype));
    boxed(f, p)
}

/// Layer normalization over trailing `shape`; parameters `[weight, bias]`.
pub fn layer_norm(shape: &[usize], dtype: DType) -> (LayerFn, Vec<Tensor>) {
    let (f, p) = functionalize(&LayerNorm::new(shape, dtype));
    boxed(f, p)
}

/// Embedding lookup; parameters `[weight [vocabulary, dim]]`.
pub fn embedding(
    vocabulary: usize,
    dim: usize,
    rng: &mut Generator,
    dtype: DType,
) -> (LayerFn, Vec<Tensor>) {
    let (f, p) = functionalize(&Embedding::new(vocabulary, dim, rng, dtype));
    boxed(f, p)
}
