//! The model, data and comparison the data-parallel tests share.
#![allow(dead_code)]

use ferrograd::{DType, Generator, Tensor};
use ferrograd_nn::functional as F;

/// The MLP's parameters: the tree `grad` differentiates.
pub type Params = Vec<Tensor>;

/// A two-layer MLP's parameters (f32 weights, an f64 output bias so that buckets of two
/// dtypes are exercised), drawn from `seed`.
pub fn mlp(seed: u64) -> Params {
    let mut g = Generator::new(seed);
    vec![
        Tensor::new(g.normal(&[16, 8], 0.0, 0.3, DType::F32)),
        Tensor::new(g.normal(&[16], 0.0, 0.1, DType::F32)),
        Tensor::new(g.normal(&[4, 16], 0.0, 0.3, DType::F32)),
        Tensor::new(g.normal(&[4], 0.0, 0.1, DType::F64)),
    ]
}

/// The mean cross-entropy of the MLP on a batch.
pub fn mlp_loss(p: &Params, x: &Tensor, y: &Tensor) -> Tensor {
    let h = F::relu(&F::linear(x, &p[0], Some(&p[1])));
    let logits = F::linear(&h, &p[2], None) + p[3].to_dtype(DType::F32);
    F::cross_entropy(&logits, y)
}

/// A batch of `n` examples: inputs `[n, 8]`, labels in 0..4.
pub fn batch(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut g = Generator::new(seed);
    let x = Tensor::new(g.normal(&[n, 8], 0.0, 1.0, DType::F32));
    let y = Tensor::randint(&mut g, 0, 4, &[n]);
    (x, y)
}

/// The largest absolute difference between two lists of tensors.
pub fn max_diff(a: &[Tensor], b: &[Tensor]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            x.to_f64_vec()
                .iter()
                .zip(y.to_f64_vec())
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}
