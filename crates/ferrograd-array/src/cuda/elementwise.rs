//! Elementwise kernels on a GPU: one-input functions, two-input functions with
//! broadcasting (a CPU scalar operand travels as a kernel argument), comparisons, casts and
//! strided copies.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::source::{self, Layout, MAX_DIMS};
use super::{fail, gpu, Gpu};
use crate::array::Array;
use crate::error::same_device;
use crate::fused::{MapFn, ZipFn};
use crate::{DType, Device};

/// Threads per block of the elementwise kernels.
const THREADS: u32 = 256;

/// A grid covering `n` elements, at most 65536 blocks (the kernels loop, grid-stride).
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 16) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// How a kernel reads `a` as an operand of a result of `shape` (broadcast: dims `a` lacks
/// or has as 1 read with stride 0), with dims merged where they are contiguous in each
/// other and size-1 dims dropped.
#[track_caller]
pub(crate) fn layout(a: &Array, shape: &[usize], op: &str) -> Layout {
    let lead = shape.len() - a.ndim();
    let dims = shape.iter().enumerate().map(|(d, &size)| {
        let stride = if d < lead || a.shape()[d - lead] == 1 {
            0
        } else {
            a.strides()[d - lead] as i64
        };
        (size, stride)
    });
    pack(dims, a.offset(), op)
}

/// The [`Layout`] of row-major dims `(size, stride)` from `offset`: size-1 dims dropped,
/// dims merged where they are contiguous in each other, contiguous as a whole marked so.
#[track_caller]
pub(crate) fn pack(dims: impl Iterator<Item = (usize, i64)>, offset: usize, op: &str) -> Layout {
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (size, stride) in dims.filter(|&(size, _)| size != 1) {
        let size = size as i64;
        match merged.last_mut() {
            Some((s, st)) if *st == stride * size => {
                *s *= size;
                *st = stride;
            }
            _ => merged.push((size, stride)),
        }
    }
    let mut l = Layout {
        ndim: merged.len() as i64,
        offset: offset as i64,
        shape: [1; MAX_DIMS],
        strides: [0; MAX_DIMS],
    };
    if merged.is_empty() || merged.len() == 1 && merged[0].1 == 1 {
        l.ndim = -1;
        return l;
    }
    if merged.len() > MAX_DIMS {
        crate::error::fail(
            op,
            format_args!(
                "CUDA kernels take at most {MAX_DIMS} dims after merging contiguous ones; \
                 this operand has {} (make it contiguous first)",
                merged.len()
            ),
        )
    }
    for (d, (size, stride)) in merged.into_iter().enumerate() {
        l.shape[d] = size;
        l.strides[d] = stride;
    }
    l
}

/// The GPU of a device array.
#[track_caller]
pub(crate) fn gpu_of(device: Device, op: &str) -> std::sync::Arc<Gpu> {
    match device {
        Device::Cuda(n) => gpu(n).unwrap_or_else(|e| fail(op, e)),
        Device::Cpu => unreachable!("{op}: a CUDA kernel called for host arrays"),
    }
}

/// The device address of `a`'s storage, for a kernel that reads it through a [`Layout`]
/// (which holds the view's offset).
pub(crate) fn base_ptr(a: &Array, gpu: &Gpu) -> u64 {
    a.cuda_buffer().expect("a device array").ptr(gpu, 0)
}

/// The device address of `a`'s first element, for a kernel that reads it contiguously.
pub(crate) fn first_ptr(a: &Array, gpu: &Gpu) -> u64 {
    a.cuda_buffer()
        .expect("a device array")
        .ptr(gpu, a.offset())
}

/// The kernel `name` (compiled from `source` on first use), panicking (naming `op`) when it
/// cannot be had.
#[track_caller]
pub(crate) fn kernel(
    gpu: &Gpu,
    name: &str,
    source: impl FnOnce() -> String,
    op: &str,
) -> cudarc::driver::CudaFunction {
    gpu.kernel(name, source).unwrap_or_else(|e| fail(op, e))
}

/// Launches a kernel whose arguments `args` holds, panicking (naming `op`) on an error.
///
/// # Safety
/// The arguments must be those of the kernel's generated signature (`source.rs`), in order
/// and type, with pointers into live buffers of the sizes its layouts address.
#[track_caller]
pub(crate) unsafe fn go(
    mut args: cudarc::driver::LaunchArgs<'_>,
    cfg: LaunchConfig,
    gpu: &Gpu,
    op: &str,
) {
    // SAFETY: as the caller guarantees.
    if let Err(e) = unsafe { args.launch(cfg) } {
        fail(op, super::driver_error(gpu.device, "launching a kernel", e))
    }
}

/// `out = f(a)` on `a`'s GPU.
#[track_caller]
pub(crate) fn map(a: &Array, f: MapFn, out: &mut Array, op: &str) {
    let dtype = a.dtype();
    let Some(src) = source::map_source(f, dtype) else {
        crate::elementwise::unsupported_dtype(op, dtype, f.is_number())
    };
    let gpu = gpu_of(a.device(), op);
    let n = a.numel();
    let lx = layout(a, a.shape(), op);
    let x = base_ptr(a, &gpu);
    let dst = out.cuda_out(&gpu, a.shape(), dtype, op).ptr(&gpu, 0);
    if n == 0 {
        return;
    }
    let (p0, p1, flags) = source::map_params(f);
    let n = n as i64;
    let k = kernel(&gpu, &source::map_name(f, dtype), || src, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst)
        .arg(&x)
        .arg(&lx)
        .arg(&n)
        .arg(&p0)
        .arg(&p1)
        .arg(&flags);
    // SAFETY: `map_source`'s signature; `x` holds what `lx` addresses, `dst` n elements.
    unsafe { go(b, grid(n as usize), &gpu, op) }
}

/// A CPU scalar's bits as a kernel argument.
pub(crate) fn scalar_bits(a: &Array) -> u64 {
    match a.dtype() {
        DType::F32 => u64::from(a.item::<f32>().to_bits()),
        DType::F64 => a.item::<f64>().to_bits(),
        DType::I64 => a.item::<i64>() as u64,
        DType::Bool => u64::from(a.item::<bool>()),
    }
}

/// `out = f(a, b)` with broadcasting on the operands' GPU (either may be a CPU scalar);
/// `compare`: a comparison's bool-valued form.
#[track_caller]
pub(crate) fn zip(a: &Array, b: &Array, f: ZipFn, out: &mut Array, op: &str, compare: bool) {
    let device = same_device(op, &[a, b]);
    crate::error::same_dtype(op, a.dtype(), b.dtype());
    let dtype = a.dtype();
    let Some(src) = source::zip_source(f, dtype, compare) else {
        crate::elementwise::unsupported_dtype(op, dtype, f.is_number())
    };
    let shape = crate::elementwise::broadcast_pair(op, a.shape(), b.shape());
    let gpu = gpu_of(device, op);
    let operand = |x: &Array| -> (u64, Layout, u64, i32) {
        match x.cuda_buffer() {
            Some(buf) => (buf.ptr(&gpu, 0), layout(x, &shape, op), 0, 0),
            None => (0, layout(x, &shape, op), scalar_bits(x), 1),
        }
    };
    let (mut px, lx, sx, splat_x) = operand(a);
    let (mut py, ly, sy, splat_y) = operand(b);
    // a scalar's pointer is never read; give it the other operand's, a valid address
    if splat_x == 1 {
        px = py;
    }
    if splat_y == 1 {
        py = px;
    }
    let splat = splat_x | splat_y << 1;
    let out_dtype = if compare { DType::Bool } else { dtype };
    let dst = out.cuda_out(&gpu, &shape, out_dtype, op).ptr(&gpu, 0);
    let n = shape.iter().product::<usize>();
    if n == 0 {
        return;
    }
    let n = n as i64;
    let k = kernel(&gpu, &source::zip_name(f, dtype, compare), || src, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&px).arg(&lx).arg(&py).arg(&ly).arg(&n);
    b.arg(&sx).arg(&sy).arg(&splat);
    // SAFETY: `zip_source`'s signature; each pointer holds what its layout addresses (a
    // splat operand's is never read), `dst` n elements.
    unsafe { go(b, grid(n as usize), &gpu, op) }
}

/// `out = a` converted to `out`'s dtype (a strided copy when the dtypes agree), on `a`'s
/// GPU.
#[track_caller]
pub(crate) fn cast(a: &Array, to: DType, out: &mut Array, op: &str) {
    let from = a.dtype();
    let gpu = gpu_of(a.device(), op);
    let n = a.numel();
    let lx = layout(a, a.shape(), op);
    let x = base_ptr(a, &gpu);
    let dst = out.cuda_out(&gpu, a.shape(), to, op).ptr(&gpu, 0);
    if n == 0 {
        return;
    }
    let n = n as i64;
    let k = kernel(
        &gpu,
        &source::cast_name(from, to),
        || source::cast_source(from, to),
        op,
    );
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&x).arg(&lx).arg(&n);
    // SAFETY: `cast_source`'s signature; `x` holds what `lx` addresses, `dst` n elements.
    unsafe { go(b, grid(n as usize), &gpu, op) }
}

/// `out = cond ? a : b` with broadcasting on the operands' GPU (`a` or `b` may be a CPU
/// scalar).
#[track_caller]
pub(crate) fn select(
    cond: &Array,
    a: &Array,
    b: &Array,
    shape: &[usize],
    out: &mut Array,
    op: &str,
) {
    let device = same_device(op, &[cond, a, b]);
    let gpu = gpu_of(device, op);
    let dtype = a.dtype();
    let operand = |x: &Array| -> (u64, Layout, u64, i32) {
        match x.cuda_buffer() {
            Some(buf) => (buf.ptr(&gpu, 0), layout(x, shape, op), 0, 0),
            None => (0, layout(x, shape, op), scalar_bits(x), 1),
        }
    };
    let (pc, lc) = match cond.cuda_buffer() {
        Some(buf) => (buf.ptr(&gpu, 0), layout(cond, shape, op)),
        // a CPU scalar condition picks one side everywhere
        None => {
            let side = if cond.item::<bool>() { a } else { b };
            if side.device().is_cpu() {
                let like = Array::empty_on(shape, dtype, device);
                *out = Array::full_like(&like, side.item_f64());
            } else {
                side.expand(shape).contiguous_into(out);
            }
            return;
        }
    };
    let (mut pa, la, sa, fa) = operand(a);
    let (mut pb, lb, sb, fb) = operand(b);
    if fa == 1 {
        pa = pc;
    }
    if fb == 1 {
        pb = pc;
    }
    let splat = fa | fb << 1;
    let dst = out.cuda_out(&gpu, shape, dtype, op).ptr(&gpu, 0);
    let n = shape.iter().product::<usize>();
    if n == 0 {
        return;
    }
    let n = n as i64;
    let k = kernel(
        &gpu,
        &source::where_name(dtype),
        || source::where_source(dtype),
        op,
    );
    let mut bld = gpu.stream.launch_builder(&k);
    bld.arg(&dst)
        .arg(&pc)
        .arg(&lc)
        .arg(&pa)
        .arg(&la)
        .arg(&pb)
        .arg(&lb)
        .arg(&n);
    bld.arg(&sa).arg(&sb).arg(&splat);
    // SAFETY: `where_source`'s signature; each pointer holds what its layout addresses (a
    // splat operand's is never read), `dst` n elements.
    unsafe { go(bld, grid(n as usize), &gpu, op) }
}
