//! Dropout and spatial dropout: in training, zero each element (or each channel) with
//! probability `p` and scale the rest by `1 / (1 - p)`; in evaluation, the identity.

use ferrograd::{Array, CustomOp, DType, Generator, Tensor};

use super::call;

#[derive(Debug)]
struct Mask(Array);

impl CustomOp for Mask {
    fn name(&self) -> &str {
        "nn.dropout"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        x[0].mul(&self.0)
    }
    fn backward(
        &self,
        _x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        vec![Some(g * &Tensor::new(self.0.clone()))]
    }
}

#[track_caller]
fn masked(x: &Tensor, p: f64, training: bool, mask_shape: &[usize], rng: &mut Generator) -> Tensor {
    if !(0.0..1.0).contains(&p) {
        panic!("ferrograd: dropout: p must be in [0, 1), got {p}");
    }
    if !training || p == 0.0 {
        return x.clone();
    }
    let keep = rng
        .bernoulli(mask_shape, 1.0 - p, DType::F64)
        .mul_scalar(1.0 / (1.0 - p))
        .to_dtype(x.dtype());
    call(Mask(keep), &[x])
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
        panic!(
            "ferrograd: spatial_dropout: expects [N, C, ...] with spatial dims, got {:?}",
            x.shape()
        );
    }
    let mut shape = vec![1; x.ndim()];
    shape[0] = x.size(0);
    shape[1] = x.size(1);
    masked(x, p, training, &shape, rng)
}
