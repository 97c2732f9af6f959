//! Reductions on a GPU: sums, means and extremes over any set of dims, one block per
//! output element.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::elementwise::{base_ptr, cast, go, gpu_of, grid, kernel, layout, pack};
use super::source::{self, Layout, Reduce, REDUCE_THREADS};
use crate::array::Array;
use crate::layout::fmt_shape;
use crate::DType;

/// `out` = the reduction `op` (`sum_dim`, `mean_dim`, `amax_dim`, `amin_dim`, `prod_dim`,
/// `logsumexp_dim`) of `a` over `dims` (sorted, distinct), on `a`'s GPU.
#[track_caller]
pub(crate) fn reduce(a: &Array, dims: &[usize], keepdim: bool, out: &mut Array, op: &str) {
    let (r, mean) = match op {
        "sum_dim" => (Reduce::Sum, false),
        "mean_dim" => (Reduce::Sum, true),
        "amax_dim" => (Reduce::Max, false),
        "amin_dim" => (Reduce::Min, false),
        "prod_dim" => (Reduce::Prod, false),
        "logsumexp_dim" => return logsumexp(a, dims, keepdim, out),
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
    // (as on the host: a product of nothing is 1; the max or min of nothing is refused,
    // even where there is no output)
    if matches!(r, Reduce::Max | Reduce::Min) && n_red == 0 {
        crate::error::fail(
            op,
            format_args!(
                "cannot take the max or min of zero elements: empty dims {dims:?} (shape {})",
                fmt_shape(a.shape())
            ),
        )
    }
    let shape = plan.shape;
    let x = base_ptr(a, &gpu);
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

/// `log Σ exp(a)` over `dims`, stably, from the device's max, exp, sum and log kernels: the
/// maximum is subtracted first (0 where it is infinite, so a row of -∞ gives -∞).
#[track_caller]
fn logsumexp(a: &Array, dims: &[usize], keepdim: bool, out: &mut Array) {
    let m = a.amax_dim(dims, true);
    let finite = m.abs().lt(&Array::full(&[], f64::INFINITY, m.dtype()));
    let m = finite.where_cond(&m, &Array::full(&[], 0.0, m.dtype()));
    let total = a.sub(&m).exp().sum_dim(dims, true).log().add(&m);
    if keepdim {
        total.contiguous_into(out)
    } else {
        let shape: Vec<usize> = (0..a.ndim())
            .filter(|d| !dims.contains(d))
            .map(|d| a.shape()[d])
            .collect();
        total.reshape(&shape).contiguous_into(out)
    }
}

/// The `p`-norm over `dims` from the device's elementwise and sum kernels.
#[track_caller]
pub(crate) fn norm(a: &Array, p: f64, dims: &[usize], keepdim: bool, out: &mut Array) {
    let x = a.abs();
    let r = if p == 2.0 {
        x.square().sum_dim(dims, keepdim).sqrt()
    } else if p == 1.0 {
        x.sum_dim(dims, keepdim)
    } else if p == f64::INFINITY {
        x.amax_dim(dims, keepdim)
    } else if p == 0.0 {
        x.ne(&Array::full(&[], 0.0, x.dtype()))
            .to_dtype(x.dtype())
            .sum_dim(dims, keepdim)
    } else {
        x.pow_scalar(p).sum_dim(dims, keepdim).pow_scalar(1.0 / p)
    };
    r.contiguous_into(out)
}

/// The largest (or smallest) element along one dim and its first index (NaN wins), one
/// thread per output, on `a`'s GPU.
#[track_caller]
pub(crate) fn extreme(
    a: &Array,
    d: usize,
    keepdim: bool,
    largest: bool,
    values: Option<&mut Array>,
    indices: &mut Array,
    op: &str,
) {
    let gpu = gpu_of(a.device(), op);
    let dtype = a.dtype();
    let Some(code) = source::extreme_source(dtype) else {
        crate::error::dtype_fail(op, dtype, "a numeric dtype")
    };
    let plan = plan(a, &[d], keepdim, op);
    if plan.n_red == 0 && plan.n_out > 0 {
        crate::error::fail(
            op,
            format_args!(
                "cannot reduce an empty dim {d} (shape {})",
                fmt_shape(a.shape())
            ),
        )
    }
    let x = base_ptr(a, &gpu);
    let pi = indices
        .cuda_out(&gpu, &plan.shape, DType::I64, op)
        .ptr(&gpu, 0);
    let pv = match values {
        Some(v) => v.cuda_out(&gpu, &plan.shape, dtype, op).ptr(&gpu, 0),
        None => 0,
    };
    if plan.n_out == 0 {
        return;
    }
    let (n_out, n_red, largest) = (plan.n_out as i64, plan.n_red as i64, i32::from(largest));
    let k = kernel(&gpu, &source::extreme_name(dtype), || code, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&pi)
        .arg(&pv)
        .arg(&x)
        .arg(&plan.lo)
        .arg(&plan.lr)
        .arg(&n_out)
        .arg(&n_red)
        .arg(&largest);
    // SAFETY: `extreme_source`'s signature; `x` holds what the plan's layouts address, the
    // outputs n_out elements (values null when not wanted).
    unsafe { go(b, super::elementwise::grid(plan.n_out), &gpu, op) }
}

/// `cumsum` (`product`: `cumprod`) of `a` along `d` into `out`, on `a`'s GPU: one thread per
/// line, adding in order as the CPU does.
#[track_caller]
pub(crate) fn scan(a: &Array, d: usize, product: bool, out: &mut Array, op: &str) {
    let gpu = gpu_of(a.device(), op);
    let dtype = a.dtype();
    let Some(code) = source::scan_source(dtype) else {
        crate::error::dtype_fail(op, dtype, "a numeric dtype")
    };
    let x = base_ptr(a, &gpu);
    let dst = out.cuda_out(&gpu, a.shape(), dtype, op).ptr(&gpu, 0);
    let (input, output) = (plan(a, &[d], true, op), plan(out, &[d], true, op));
    if input.n_out == 0 || input.n_red == 0 {
        return;
    }
    let (n_out, n, product) = (input.n_out as i64, input.n_red as i64, i32::from(product));
    let k = kernel(&gpu, &source::scan_name(dtype), || code, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst)
        .arg(&x)
        .arg(&input.lo)
        .arg(&input.lr)
        .arg(&output.lo)
        .arg(&output.lr)
        .arg(&n_out)
        .arg(&n)
        .arg(&product);
    // SAFETY: `scan_source`'s signature; `x` holds what the input plan's layouts address,
    // `dst` (`a`'s shape, contiguous) what the output plan's address.
    unsafe { go(b, super::elementwise::grid(input.n_out), &gpu, op) }
}

/// The indices (i64, `a`'s shape) that sort `a` along `d` on its GPU: stable, NaN last (first
/// when `descending`), as the CPU's `argsort`. Each row is padded to a power of two and run
/// through a bitonic sorting network, one launch per stage, comparing indices by the
/// elements they name (ties by index, which makes the one order the network can reach the
/// stable one); the first `len` indices of each padded row are the result.
#[track_caller]
pub(crate) fn argsort(a: &Array, d: usize, descending: bool, op: &str) -> Array {
    let gpu = gpu_of(a.device(), op);
    let last = a.ndim() - 1;
    let moved = a.transpose(d, last);
    let (len, n) = (moved.shape()[last], moved.numel());
    let mut sorted = Array::empty_on(moved.shape(), DType::I64, a.device());
    if n > 0 {
        let rows = n / len;
        let padded = len.next_power_of_two();
        let scratch = gpu
            .alloc(DType::I64, rows * padded)
            .unwrap_or_else(|e| super::fail(op, e));
        let idx = scratch.ptr(&gpu, 0);
        let (total, padded_i) = ((rows * padded) as i64, padded as i64);
        let init = kernel(&gpu, source::ARGSORT_INIT, source::argsort_init_source, op);
        let mut b = gpu.stream.launch_builder(&init);
        b.arg(&idx).arg(&total).arg(&padded_i);
        // SAFETY: `argsort_init_source`'s signature; `idx` holds `total` elements.
        unsafe { go(b, grid(total as usize), &gpu, op) }
        let step = kernel(
            &gpu,
            &source::argsort_step_name(a.dtype()),
            || source::argsort_step_source(a.dtype()),
            op,
        );
        let (x, lx) = (base_ptr(&moved, &gpu), layout(&moved, moved.shape(), op));
        let (rows, len, descending) = (rows as i64, len as i64, i32::from(descending));
        let mut k = 2i64;
        while k <= padded_i {
            let mut j = k / 2;
            while j > 0 {
                let mut b = gpu.stream.launch_builder(&step);
                b.arg(&idx)
                    .arg(&x)
                    .arg(&lx)
                    .arg(&rows)
                    .arg(&len)
                    .arg(&padded_i)
                    .arg(&k)
                    .arg(&j)
                    .arg(&descending);
                // SAFETY: `argsort_step_source`'s signature; `idx` holds `rows` padded rows,
                // each index below `len` naming an element `lx` addresses in `x`.
                unsafe { go(b, grid(total as usize), &gpu, op) }
                j /= 2;
            }
            k *= 2;
        }
        // the first `len` of each padded row, into the result (contiguous)
        let dst = sorted
            .cuda_out(&gpu, moved.shape(), DType::I64, op)
            .ptr(&gpu, 0);
        let lo = pack(std::iter::once((n, 1)), 0, op);
        let ls = pack(
            [(rows as usize, padded as i64), (len as usize, 1)].into_iter(),
            0,
            op,
        );
        // SAFETY: `dst` holds n elements, `ls` addresses the first `len` of each of the
        // scratch's rows (`scratch` is freed in the stream's order, after this copy).
        unsafe { super::index::copy(&gpu, DType::I64, (dst, lo), (idx, ls), n, op) }
    }
    sorted.transpose(d, last).contiguous()
}
