//! Utilities over tensors and trees: casts, one-hot, per-row log-sum-exp and log-softmax,
//! embedding lookup, dropout.

use ferrograd::{Array, DType, Generator, Tensor, Tree};

/// The tree with every float leaf converted to `dtype` (the seed's `util.cast`; for its
/// move to a CUDA type, see [`ferrograd::to_device`]).
pub fn cast<T: Tree>(tree: &T, dtype: DType) -> T {
    tree.map(&mut |t| {
        if t.dtype().is_float() {
            t.to_dtype(dtype)
        } else {
            t.clone()
        }
    })
}

/// One-hot rows: labels of shape `[...]` (0-based class indices) give `[..., classes]`, with
/// a 1 at each label (as PyTorch's `F.one_hot`).
///
/// ```
/// use ferrograd::{DType, Tensor};
/// let labels = Tensor::from_vec(vec![2i64, 0, 1, 1], &[2, 2]);
/// let y = ferrograd_nn::util::one_hot(&labels, 3, DType::F32);
/// assert_eq!(y.shape(), &[2, 2, 3]);
/// assert_eq!(y.to_vec::<f32>()[..6], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
/// ```
#[track_caller]
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Tensor {
    let flat = labels.reshape(&[labels.numel()]).to_dtype(DType::I64);
    crate::functional::check_index_range("one_hot", "label", &flat, classes);
    let columns = Tensor::new(Array::arange(0.0, classes as f64, 1.0, DType::I64));
    let mut shape = labels.shape().to_vec();
    shape.push(classes);
    flat.unsqueeze(1)
        .eq(&columns.unsqueeze(0))
        .to_dtype(dtype)
        .reshape(&shape)
}

/// `log Σ exp` over the last dim, per row, stable.
#[track_caller]
pub fn log_sum_exp(x: &Tensor) -> Tensor {
    x.logsumexp_dim(-1, false)
}

/// Log-softmax over the last dim, per row.
#[track_caller]
pub fn log_softmax(x: &Tensor) -> Tensor {
    x.log_softmax(-1)
}

/// Rows of `table` picked by `indices` (the seed's `util.lookup`).
#[track_caller]
pub fn lookup(table: &Tensor, indices: &Tensor) -> Tensor {
    crate::functional::embedding(indices, table, None)
}

/// Dropout with probability `p` in training.
#[track_caller]
pub fn dropout(x: &Tensor, p: f64, rng: &mut Generator) -> Tensor {
    crate::functional::dropout(x, p, true, rng)
}
