//! Softmax and log-softmax on a GPU, and their gradients: one block per line along the dim.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::elementwise::{first_ptr, go, gpu_of, kernel};
use super::source::{self, REDUCE_THREADS};
use crate::array::Array;
use crate::error::same_device;

/// `(outer, n, inner)` of `shape` around dim `d`.
fn split(shape: &[usize], d: usize) -> (usize, usize, usize) {
    (
        shape[..d].iter().product(),
        shape[d],
        shape[d + 1..].iter().product(),
    )
}

/// `out = softmax(a)` (or log-softmax) along `d`; with `grad`, the gradient from the output
/// `a` and the output gradient `grad`.
#[track_caller]
pub(crate) fn softmax(
    a: &Array,
    grad: Option<&Array>,
    d: usize,
    log: bool,
    out: &mut Array,
    op: &str,
) {
    let mut operands = vec![a];
    operands.extend(grad);
    let device = same_device(op, &operands);
    let gpu = gpu_of(device, op);
    let dtype = a.dtype();
    let backward = grad.is_some();
    let Some(code) = source::softmax_source(dtype, log, backward) else {
        crate::error::dtype_fail(op, dtype, "f32 or f64")
    };
    if let Some(g) = grad {
        crate::error::same_dtype(op, dtype, g.dtype());
        if g.shape() != a.shape() {
            crate::error::fail(
                op,
                format_args!(
                    "gradient of shape {:?} for an output of {:?}",
                    g.shape(),
                    a.shape()
                ),
            )
        }
    }
    let (outer, n, inner) = split(a.shape(), d);
    // the kernel reads lines of contiguous input
    let x = a.contiguous();
    let g = grad.map(Array::contiguous);
    let px = first_ptr(&x, &gpu);
    let pg = g.as_ref().map(|g| first_ptr(g, &gpu));
    let dst = out.cuda_out(&gpu, a.shape(), dtype, op).ptr(&gpu, 0);
    let rows = outer * inner;
    if rows == 0 || n == 0 {
        return;
    }
    let (rows, n, inner) = (rows as i64, n as i64, inner as i64);
    let cfg = LaunchConfig {
        grid_dim: (rows.clamp(1, 1 << 16) as u32, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let k = kernel(
        &gpu,
        &source::softmax_name(dtype, log, backward),
        || code,
        op,
    );
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&px);
    if let Some(pg) = &pg {
        b.arg(pg);
    }
    b.arg(&rows).arg(&n).arg(&inner);
    // SAFETY: `softmax_source`'s signature (the gradient's pointer only in the backward
    // kernel); every operand is contiguous with rows · n elements.
    unsafe { go(b, cfg, &gpu, op) }
}
