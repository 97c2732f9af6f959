//! Attention: scaled dot-product attention with masks, and multi-head attention.

use ferrograd::{DType, Generator, Tensor};

/// What a query may attend to in [`scaled_dot_product_attention`].
#[derive(Clone, Copy, Debug, Default)]
pub enum AttentionMask<'a> {
    /// Every key.
    #[default]
    None,
    /// Keys at or before the query's position (`tril`, PyTorch's `is_causal`).
    Causal,
    /// Where this bool tensor (broadcasting to `[..., L, S]`) is true.
    Allowed(&'a Tensor),
    /// This float tensor added to the scores (`-inf` masks out).
    Additive(&'a Tensor),
}

/// `softmax(q kᵀ · scale + mask) v` for queries `[..., L, E]`, keys `[..., S, E]` and values
/// `[..., S, Ev]`; `scale` defaults to `1 / √E`; with `dropout` (a probability and a
/// generator) the attention weights are dropped in training (PyTorch's
/// `scaled_dot_product_attention`). A query that may attend to no key gets NaN, as there.
/// Weights below the smallest normal float (and their gradients) are 0, as in PyTorch's CPU
/// kernels, which spares the products the cost of subnormal numbers (see
/// [`Tensor::attention_softmax`]).
///
/// ```
/// use ferrograd::{DType, Tensor};
/// use ferrograd_nn::functional::{self as F, AttentionMask};
/// let q = Tensor::ones(&[1, 2, 4], DType::F64);
/// let v = Tensor::from_vec(vec![1.0f64, 3.0], &[1, 2, 1]);
/// let y = F::scaled_dot_product_attention(&q, &q, &v, AttentionMask::Causal, None, None);
/// // the first query sees only the first value; the second, both equally
/// assert_eq!(y.to_vec::<f64>(), vec![1.0, 2.0]);
/// ```
#[track_caller]
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: AttentionMask<'_>,
    scale: Option<f64>,
    dropout: Option<(f64, &mut Generator)>,
) -> Tensor {
    let site = ferrograd::array::Site(std::panic::Location::caller());
    if q.ndim() < 2
        || k.ndim() < 2
        || v.ndim() < 2
        || q.size(-1) != k.size(-1)
        || k.size(-2) != v.size(-2)
    {
        panic!(
            "ferrograd: scaled_dot_product_attention: needs q [..., L, E], k [..., S, E] and v [..., S, Ev], got {:?}, {:?} and {:?} (at {site})",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let scale = scale.unwrap_or(1.0 / (q.size(-1) as f64).sqrt());
    let scores = q.matmul(&k.transpose(-2, -1));
    // (the scaling, the causal mask and the softmax in one pass each way)
    let weights = match mask {
        AttentionMask::None => scores.attention_softmax(scale, false),
        AttentionMask::Causal => scores.attention_softmax(scale, true),
        AttentionMask::Allowed(m) => {
            if m.dtype() != DType::Bool {
                panic!(
                    "ferrograd: scaled_dot_product_attention: an Allowed mask is bool, got {} (at {site})",
                    m.dtype().name()
                );
            }
            (scores * scale)
                .masked_fill(&m.logical_not(), f64::NEG_INFINITY)
                .attention_softmax(1.0, false)
        }
        AttentionMask::Additive(m) => (&(scores * scale) + m).attention_softmax(1.0, false),
    };
    let weights = match dropout {
        Some((p, rng)) => super::dropout(&weights, p, true, rng),
        None => weights,
    };
    weights.matmul(v)
}

/// The parameters of [`multi_head_attention`]: input projections `[E, E]` (and biases
/// `[E]`) for queries, keys and values, and the output projection.
#[derive(Clone, Debug)]
pub struct AttentionParams<'a> {
    /// `W_q`, `W_k`, `W_v`, as `linear` weights `[E, E]`.
    pub in_weights: [&'a Tensor; 3],
    /// Their biases `[E]`.
    pub in_biases: Option<[&'a Tensor; 3]>,
    /// `W_o` `[E, E]`.
    pub out_weight: &'a Tensor,
    /// Its bias `[E]`.
    pub out_bias: Option<&'a Tensor>,
}

/// Multi-head attention over batch-first `[N, L, E]` queries and `[N, S, E]` keys and
/// values: each is projected, split into `heads` heads of `E / heads`, attended
/// ([`scaled_dot_product_attention`]) and joined, then projected out (PyTorch's
/// `nn.MultiheadAttention(batch_first=True)` without dropout).
#[track_caller]
pub fn multi_head_attention(
    query: &Tensor,
    key: &Tensor,
    value: &Tensor,
    params: &AttentionParams<'_>,
    heads: usize,
    mask: AttentionMask<'_>,
) -> Tensor {
    let e = query.size(-1);
    if query.ndim() != 3 || heads == 0 || !e.is_multiple_of(heads) {
        crate::fail!(
            "multi_head_attention: needs [N, L, E] inputs with E divisible by {heads} heads, \
             got {:?}",
            query.shape()
        );
    }
    let d = e / heads;
    let project = |x: &Tensor, i: usize| {
        let b = params.in_biases.map(|b| b[i]);
        let y = super::linear(x, params.in_weights[i], b);
        // [N, T, E] -> [N, heads, T, d]
        y.reshape(&[y.size(0), y.size(1), heads, d]).transpose(1, 2)
    };
    let (q, k, v) = (project(query, 0), project(key, 1), project(value, 2));
    let attended = scaled_dot_product_attention(&q, &k, &v, mask, None, None);
    let n = attended.size(0);
    let l = attended.size(2);
    let joined = attended.transpose(1, 2).reshape(&[n, l, e]);
    super::linear(&joined, params.out_weight, params.out_bias)
}
