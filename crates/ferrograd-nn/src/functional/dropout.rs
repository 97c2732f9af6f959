//! Dropout and spatial dropout: in training, zero each element (or each channel) with
//! probability `p` and scale the rest by `1 / (1 - p)`; in evaluation, the identity.

use ferrograd::{DType, Generator, Tensor};

#[track_caller]
fn masked(x: &Tensor, p: f64, training: bool, mask_shape: &[usize], rng: &mut Generator) -> Tensor {
    if !(0.0..=1.0).contains(&p) {
        crate::fail!("dropout: p must be in [0, 1], got {p}");
    }
    if !training || p == 0.0 {
        return x.clone();
    }
    if p == 1.0 {
        // everything dropped (PyTorch's result; the scale 1 / (1 - p) would be infinite)
        return x * 0.0;
    }
    // drawn by an op, so optimize mode draws a fresh mask from `rng` on every replay
    let keep = (Tensor::rand_bernoulli(rng, mask_shape, 1.0 - p, DType::F64) * (1.0 / (1.0 - p)))
        .to_dtype(x.dtype());
    // the generator draws on the host; the mask goes where `x` is
    let keep = match keep.to_device(x.device()) {
        Ok(keep) => keep,
        Err(e) => crate::fail!("dropout: {e}"),
    };
    x * &keep
}

/// Element-wise dropout with probability `p` (identity when not `training`).
#[track_caller]
pub fn dropout(x: &Tensor, p: f64, training: bool, rng: &mut Generator) -> Tensor {
    masked(x, p, training, x.shape(), rng)
}

/// Channel-wise dropout of `[N, C, ...]`: whole feature maps are dropped together.
#[track_caller]
pub fn spatial_dropout(x: &Tensor, p: f64, training: bool, rng: &mut Generator) -> Tensor {
    if x.ndim() < 3 {
        crate::fail!(
            "spatial_dropout: expects [N, C, ...] with spatial dims, got {:?}",
            x.shape()
        );
    }
    let mut shape = vec![1; x.ndim()];
    shape[0] = x.size(0);
    shape[1] = x.size(1);
    masked(x, p, training, &shape, rng)
}
