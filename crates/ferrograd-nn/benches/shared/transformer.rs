//! The small transformer language model of the `transformer` bench and of
//! `tests/models.rs`'s comparison with PyTorch (each includes this file with `#[path]`;
//! `benches/pytorch_transformer.py` builds the same): token and position embeddings, pre-norm
//! decoder layers of causal multi-head attention and a GELU MLP, a final layer norm, a
//! linear head and cross-entropy, its parameters a deterministic function of the sizes.

use ferrograd::{DType, Tensor};
use ferrograd_nn::functional::{self as F, AttentionMask, AttentionParams};

/// The model's sizes and element type.
#[derive(Clone, Copy, Debug)]
pub struct Gpt {
    pub vocab: usize,
    pub width: usize,
    pub len: usize,
    pub batch: usize,
    pub heads: usize,
    pub layers: usize,
    pub dtype: DType,
}

/// Parameters per decoder layer.
const PER_LAYER: usize = 16;

impl Gpt {
    /// `shape`'s elements `scale · sin(0.37 i + k)`.
    fn init(&self, shape: &[usize], k: f64, scale: f64) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec(
            (0..n)
                .map(|i| scale * (0.37 * i as f64 + k).sin())
                .collect::<Vec<f64>>(),
            shape,
        )
        .to_dtype(self.dtype)
    }

    /// The embeddings, each layer's 16 (two norms, the attention's projections and biases,
    /// the MLP's), the final norm and the head.
    pub fn parameters(&self) -> Vec<Tensor> {
        let (v, e) = (self.vocab, self.width);
        let s = 1.0 / (e as f64).sqrt();
        let mut p = vec![
            self.init(&[v, e], 1.0, 0.5),
            self.init(&[self.len, e], 2.0, 0.1),
        ];
        let mut k = 3.0;
        let layer: [(&[usize], f64); PER_LAYER] = [
            (&[e], 0.1),
            (&[e], 0.1),
            (&[e, e], s),
            (&[e, e], s),
            (&[e, e], s),
            (&[e], 0.02),
            (&[e], 0.02),
            (&[e], 0.02),
            (&[e, e], s),
            (&[e], 0.02),
            (&[e], 0.1),
            (&[e], 0.1),
            (&[4 * e, e], s),
            (&[4 * e], 0.02),
            (&[e, 4 * e], 0.5 * s),
            (&[e], 0.02),
        ];
        for _ in 0..self.layers {
            for (shape, scale) in layer {
                p.push(self.init(shape, k, scale));
                k += 1.0;
            }
        }
        p.extend([
            self.init(&[e], k, 0.1),
            self.init(&[e], k + 1.0, 0.1),
            self.init(&[v, e], k + 2.0, s),
        ]);
        p
    }

    /// Fixed tokens `[batch, len]` and each one's target symbol.
    pub fn tokens(&self) -> (Tensor, Tensor) {
        let (t, v) = (self.len, self.vocab);
        let tokens: Vec<i64> = (0..self.batch * t)
            .map(|i| ((3 * (i / t) + 5 * (i % t) + (i % t) * (i % t)) % v) as i64)
            .collect();
        let targets: Vec<i64> = tokens.iter().map(|&x| (2 * x + 1) % v as i64).collect();
        (
            Tensor::from_vec(tokens, &[self.batch, t]),
            Tensor::from_vec(targets, &[self.batch, t]),
        )
    }

    /// The mean cross-entropy of the next symbols.
    #[allow(clippy::ptr_arg)] // grad differentiates its first argument as a tree: a Vec
    pub fn loss(&self, p: &Vec<Tensor>, idx: &Tensor, tgt: &Tensor) -> Tensor {
        let e = self.width;
        // the norms' weights are stored as offsets from 1
        let norm = |x: &Tensor, w: &Tensor, b: &Tensor| {
            F::layer_norm(x, &[e], Some(&(w + 1.0)), Some(b), 1e-5)
        };
        let mut x = &F::embedding(idx, &p[0], None) + &p[1];
        for q in p[2..2 + PER_LAYER * self.layers].chunks(PER_LAYER) {
            let h = norm(&x, &q[0], &q[1]);
            let attention = AttentionParams {
                in_weights: [&q[2], &q[3], &q[4]],
                in_biases: Some([&q[5], &q[6], &q[7]]),
                out_weight: &q[8],
                out_bias: Some(&q[9]),
            };
            x = &x
                + &F::multi_head_attention(
                    &h,
                    &h,
                    &h,
                    &attention,
                    self.heads,
                    AttentionMask::Causal,
                );
            let h = F::gelu(
                &F::linear(&norm(&x, &q[10], &q[11]), &q[12], Some(&q[13])),
                false,
            );
            x = &x + &F::linear(&h, &q[14], Some(&q[15]));
        }
        let k = 2 + PER_LAYER * self.layers;
        let logits = F::linear(&norm(&x, &p[k], &p[k + 1]), &p[k + 2], None);
        let rows = self.batch * self.len;
        F::cross_entropy(&logits.reshape(&[rows, self.vocab]), &tgt.reshape(&[rows]))
    }
}
