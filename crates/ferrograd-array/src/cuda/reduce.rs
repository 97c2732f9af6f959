//! Reductions on a GPU: sums, means and extremes over any set of dims, one block per
//! output element.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::elementwise::{cast, go, gpu_of, kernel, pack};
use super::source::{self, Layout, Reduce, REDUCE_THREADS};
use crate::array::Array;
use crate::layout::fmt_shape;
use crate::DType;

/// `out` = the reduction `op` (`sum_dim`, `mean_dim`, `amax_dim`, `amin_dim`) of `a` over
/// `dims` (sorted, distinct), on `a`'s GPU; other reductions have no CUDA kernel yet.
#[track_caller]
pub(crate) fn reduce(a: &Array, dims: &[usize], keepdim: bool, out: &mut Array, op: &str) {
    let (r, mean) = match op {
        "sum_dim" => (Reduce::Sum, false),
        "mean_dim" => (Reduce::Sum, true),
        "amax_dim" => (Reduce::Max, false),
        "amin_dim" => (Reduce::Min, false),
        _ => crate::error::no_kernel_on(op, a.device()),
    };
    if a.dtype() == DType::Bool {
        // counted as integers, as on the host
        let mut ints = Array::empty_on(a.shape(), DType::I64, a.device());
        cast(a, DType::I64, &mut ints, op);
        return reduce(&ints, dims, keepdim, out, op);
    }
    if mean && !a.dtype().is_float() {
        crate::error::dtype_fail(op, a.dtype(), "a float dtype");
    }
    let dtype = a.dtype();
    let gpu = gpu_of(a.device(), op);
    let plan = plan(a, dims, keepdim, op);
    let (lo, lr, n_out, n_red) = (plan.lo, plan.lr, plan.n_out, plan.n_red);
    if r != Reduce::Sum && n_red == 0 && n_out > 0 {
        crate::error::fail(
            op,
            format_args!(
                "cannot reduce empty dims {dims:?} (shape {})",
                fmt_shape(a.shape())
            ),
        )
    }
    let shape = plan.shape;
    let x = a.cuda_buffer().expect("a device array").ptr(&gpu, 0);
    let dst = out.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0);
    if n_out == 0 {
        return;
    }
    let scale = if mean { 1.0 / n_red as f64 } else { 1.0 };
    let (n_out, n_red) = (n_out as i64, n_red as i64);
    let cfg = LaunchConfig {
        grid_dim: (n_out.clamp(1, 1 << 16) as u32, 1, 1),
        block_dim: (REDUCE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let k = kernel(
        &gpu,
        &source::reduce_name(r, dtype),
        || source::reduce_source(r, dtype).expect("numeric dtype checked"),
        op,
    );
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst)
        .arg(&x)
        .arg(&lo)
        .arg(&lr)
        .arg(&n_out)
        .arg(&n_red)
        .arg(&scale);
    // SAFETY: `reduce_source`'s signature; `x` holds what `lo` and `lr` address together,
    // `dst` n_out elements.
    unsafe { go(b, cfg, &gpu, op) }
}

/// How a reduction kernel walks `a`: `lo` maps an output element to its first input, `lr`
/// the reduced elements from there.
pub(crate) struct Plan {
    pub(crate) lo: Layout,
    pub(crate) lr: Layout,
    pub(crate) n_out: usize,
    pub(crate) n_red: usize,
    pub(crate) shape: Vec<usize>,
}

/// The [`Plan`] of reducing `a` over `dims`.
#[track_caller]
pub(crate) fn plan(a: &Array, dims: &[usize], keepdim: bool, op: &str) -> Plan {
    let mut shape = Vec::new();
    let (mut kept, mut reduced) = (Vec::new(), Vec::new());
    for d in 0..a.ndim() {
        let dim = (a.shape()[d], a.strides()[d] as i64);
        if dims.contains(&d) {
            reduced.push(dim);
            if keepdim {
                shape.push(1);
            }
        } else {
            kept.push(dim);
            shape.push(a.shape()[d]);
        }
    }
    Plan {
        n_out: kept.iter().map(|d| d.0).product(),
        n_red: reduced.iter().map(|d| d.0).product(),
        lo: pack(kept.into_iter(), a.offset(), op),
        lr: pack(reduced.into_iter(), 0, op),
        shape,
    }
}
