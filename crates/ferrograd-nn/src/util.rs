//! Utilities over tensors and trees: casts, one-hot, per-row log-sum-exp and log-softmax,
//! embedding lookup, dropout.

use ferrograd::{Array, DType, Generator, Tensor, Tree};

/// The tree with every float leaf converted to `dtype` (the seed's `util.cast`; devices come
/// with CUDA).
pub fn cast<T: Tree>(tree: &T, dtype: DType) -> T {
    tree.map(&mut |t| {
        if t.dtype().is_float() {
            t.to_dtype(dtype)
        } else {
            t.clone()
        }
    })
}

/// `[labels.len(), classes]` with a 1 at each label (0-based).
#[track_caller]
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Tensor {
    let flat = labels.reshape(&[labels.numel()]).to_dtype(DType::I64);
    crate::functional::check_index_range("one_hot", "label", &flat, classes);
    let columns = Tensor::new(Array::arange(0.0, classes as f64, 1.0, DType::I64));
    flat.unsqueeze(1).eq(&columns.unsqueeze(0)).to_dtype(dtype)
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
    crate::functional::embedding(table, indices)
}

/// Dropout with probability `p` in training.
#[track_caller]
pub fn dropout(x: &Tensor, p: f64, rng: &mut Generator) -> Tensor {
    crate::functional::dropout(x, p, true, rng)
}
