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
    let l = labels.to_vec::<i64>();
    let mut v = vec![0.0; l.len() * classes];
    for (i, &c) in l.iter().enumerate() {
        if c < 0 || c as usize >= classes {
            panic!("ferrograd: one_hot: label {c} is out of range for {classes} classes");
        }
        v[i * classes + c as usize] = 1.0;
    }
    Tensor::new(Array::from_vec(v, &[l.len(), classes]).to_dtype(dtype))
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
