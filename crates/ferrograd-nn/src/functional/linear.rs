//! `linear` (the seed's `nn.Linear`: `y = x Wᵀ + b`), `embedding`, and the batched product
//! of a pair (`nn.MM`).

use ferrograd::{Array, CustomOp, Tensor};

use super::call;

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
                let (g2, x2) = (
                    g.reshape(&[g.numel() / g.size(-1), g.size(-1)]),
                    input.reshape(&[input.numel() / input.size(-1), input.size(-1)]),
                );
                g2.t().matmul(&x2)
            }
        });
        let mut grads = vec![dx, dw];
        if self.bias {
            grads.push(needs[2].then(|| {
                if g.ndim() == 1 {
                    g.clone()
                } else {
                    g.reshape(&[g.numel() / g.size(-1), g.size(-1)])
                        .sum_dim(0, false)
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
        panic!(
            "ferrograd: linear: input {:?} has {} features, weight {:?} must be [out_features, {}]",
            x.shape(),
            features.map_or("no".to_string(), |f| f.to_string()),
            weight.shape(),
            features.map_or("in_features".to_string(), |f| f.to_string()),
        );
    }
    if let Some(b) = bias {
        if b.shape() != [weight.size(0)] {
            panic!(
                "ferrograd: linear: bias {:?} must be [{}] for weight {:?}",
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

/// Rows of `weight: [vocabulary, dim]` picked by the i64 `indices` (any shape); the result
/// has shape `indices.shape() ++ [dim]`. The gradient adds into the picked rows.
#[track_caller]
pub fn embedding(weight: &Tensor, indices: &Tensor) -> Tensor {
    if weight.ndim() != 2 || indices.dtype() != ferrograd::DType::I64 {
        panic!(
            "ferrograd: embedding: needs weight [vocabulary, dim] and i64 indices, got weight {:?} and indices {:?} {}",
            weight.shape(),
            indices.shape(),
            indices.dtype()
        );
    }
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
