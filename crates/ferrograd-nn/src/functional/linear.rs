//! `linear` (the seed's `nn.Linear`: `y = x Wᵀ + b`), `embedding`, and the batched product
//! of a pair (`nn.MM`).

use ferrograd::{Array, CustomOp, Tensor};

use super::{as_rows, call};

#[derive(Debug)]
struct Linear {
    bias: bool,
}

impl CustomOp for Linear {
    fn name(&self) -> &str {
        "linear"
    }

    fn forward(&self, x: &[&Array]) -> Array {
        let y = x[0].matmul(&x[1].t());
        if self.bias {
            y.add(x[2])
        } else {
            y
        }
    }

    // dx = g W, dW = gᵀ x (summed over batch rows), db = Σ_rows g
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        let (input, w) = (&x[0], &x[1]);
        // The input gradient of a first layer (data) is never used: skip it.
        let dx = needs[0].then(|| g.matmul(w));
        let dw = needs[1].then(|| {
            if input.ndim() == 1 {
                g.outer(input)
            } else {
                g.reshape(&as_rows(g))
                    .t()
                    .matmul(&input.reshape(&as_rows(input)))
            }
        });
        let mut grads = vec![dx, dw];
        if self.bias {
            grads.push(needs[2].then(|| {
                if g.ndim() == 1 {
                    g.clone()
                } else {
                    g.reshape(&as_rows(g)).sum_dim(0, false)
                }
            }));
        }
        grads
    }
}

/// `y = x Wᵀ + b` for `x: [..., in]`, `weight: [out, in]` (nn's layout), `bias: [out]`.
///
/// ```
/// use ferrograd::Tensor;
/// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[1, 2]);
/// let w = Tensor::from_vec(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]);
/// let y = ferrograd_nn::functional::linear(&x, &w, None);
/// assert_eq!(y.to_vec::<f32>(), vec![1.0, 2.0, 3.0]);
/// ```
#[track_caller]
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let features = x.shape().last().copied();
    if weight.ndim() != 2 || x.ndim() == 0 || features != Some(weight.size(1)) {
        crate::fail!(
            "linear: input {:?} has {} features, weight {:?} must be [out_features, {}]",
            x.shape(),
            features.map_or("no".to_string(), |f| f.to_string()),
            weight.shape(),
            features.map_or("in_features".to_string(), |f| f.to_string()),
        );
    }
    if let Some(b) = bias {
        if b.shape() != [weight.size(0)] {
            crate::fail!(
                "linear: bias {:?} must be [{}] for weight {:?}",
                b.shape(),
                weight.size(0),
                weight.shape()
            );
        }
    }
    match bias {
        Some(b) => call(Linear { bias: true }, &[x, weight, b]),
        None => call(Linear { bias: false }, &[x, weight]),
    }
}

/// Rows of `weight: [vocabulary, dim]` picked by the i64 `indices` (any shape), in
/// PyTorch's argument order (`F.embedding(input, weight, padding_idx)`); the result has shape
/// `indices.shape() ++ [dim]`. The gradient adds into the picked rows, except the row
/// `padding_idx`, which gets none (it stays as it is, usually zeros).
///
/// ```
/// use ferrograd::{grad, Tensor};
/// use ferrograd_nn::functional as F;
/// let w = Tensor::from_vec(vec![0.0f64, 0.0, 1.0, 2.0, 3.0, 4.0], &[3, 2]);
/// let idx = Tensor::from_vec(vec![2i64, 0, 2], &[3]);
/// assert_eq!(F::embedding(&idx, &w, Some(0)).to_vec::<f64>(), vec![3.0, 4.0, 0.0, 0.0, 3.0, 4.0]);
/// let (g, _) = grad(|w: &Tensor, idx: &Tensor| F::embedding(idx, w, Some(0)).sum()).call(&w, (&idx,));
/// assert_eq!(g.to_vec::<f64>(), vec![0.0, 0.0, 0.0, 0.0, 2.0, 2.0]);
/// ```
#[track_caller]
pub fn embedding(indices: &Tensor, weight: &Tensor, padding_idx: Option<usize>) -> Tensor {
    if weight.ndim() != 2 || indices.dtype() != ferrograd::DType::I64 {
        crate::fail!(
            "embedding: needs i64 indices and weight [vocabulary, dim] (PyTorch's \
             order), got indices {:?} {} and weight {:?}",
            indices.shape(),
            indices.dtype(),
            weight.shape(),
        );
    }
    let weight = match padding_idx {
        Some(pad) => {
            let vocabulary = weight.size(0);
            if pad >= vocabulary {
                crate::fail!(
                    "embedding: padding_idx {pad} is outside the vocabulary of \
                     {vocabulary}"
                );
            }
            // the same values; no gradient into the padding row
            let rows = Tensor::new(ferrograd::Array::arange(
                0.0,
                vocabulary as f64,
                1.0,
                ferrograd::DType::I64,
            ));
            let learned = rows.ne_scalar(pad as f64).unsqueeze(1);
            Tensor::where_cond(&learned, weight, &weight.detach())
        }
        None => weight.clone(),
    };
    let flat = indices.reshape(&[indices.numel()]);
    let mut shape = indices.shape().to_vec();
    shape.push(weight.size(1));
    weight.index_select(0, &flat).reshape(&shape)
}

/// The seed's `nn.MM`: the (batched) product of a pair, optionally transposing either
/// operand's last two dims.
#[track_caller]
pub fn bmm_pair(a: &Tensor, b: &Tensor, transpose_a: bool, transpose_b: bool) -> Tensor {
    let a = if transpose_a {
        a.transpose(-1, -2)
    } else {
        a.clone()
    };
    let b = if transpose_b {
        b.transpose(-1, -2)
    } else {
        b.clone()
    };
    a.matmul(&b)
}
