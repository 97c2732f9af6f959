//! 2-d pooling on a GPU: max pooling (indices, values, the gradient routed through the
//! indices, the values read back through them) and average pooling with its gradient.

use cudarc::driver::PushKernelArg;

use super::elementwise::{first_ptr, go, gpu_of, grid, kernel};
use super::source::{self, ConvGeom, Pool};
use crate::array::Array;
use crate::error::same_device;
use crate::{DType, Pool2dParams};

/// The kernels' sizes of pooling `[n, c, h, w]` to `oh × ow`.
pub(crate) fn geom(input: &[usize], out: (usize, usize), p: Pool2dParams) -> ConvGeom {
    super::conv::geom(
        input,
        p.kernel,
        out,
        crate::Conv2dParams {
            stride: p.stride,
            padding: p.padding,
            dilation: (1, 1),
            groups: 1,
        },
    )
}

/// The source of `kind` for `dtype`, or a dtype error.
#[track_caller]
fn code(kind: Pool, dtype: DType, op: &str) -> String {
    source::pool_source(kind, dtype)
        .unwrap_or_else(|| crate::error::dtype_fail(op, dtype, "f32 or f64"))
}

/// Max pooling of `x` on its GPU: `indices` always, `values` when given.
#[track_caller]
pub(crate) fn max_pool(
    x: &Array,
    g: ConvGeom,
    values: Option<&mut Array>,
    indices: &mut Array,
    op: &str,
) {
    let gpu = gpu_of(x.device(), op);
    let dtype = x.dtype();
    let code = code(Pool::Max, dtype, op);
    let x = x.contiguous();
    let shape = [g.n as usize, g.c as usize, g.oh as usize, g.ow as usize];
    let px = first_ptr(&x, &gpu);
    let pi = indices.cuda_out(&gpu, &shape, DType::I64, op).ptr(&gpu, 0);
    let pv = match values {
        Some(v) => v.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0),
        None => 0,
    };
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let k = kernel(&gpu, &source::pool_name(Pool::Max, dtype), || code, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&pv).arg(&pi).arg(&px).arg(&g);
    // SAFETY: the kernel's signature; `x` contiguous [N, C, H, W], the outputs [N, C, oh,
    // ow] (values null when not wanted), as `g` says.
    unsafe { go(b, grid(n), &gpu, op) }
}

/// The gradient of max pooling: `dy` added at the inputs `indices` chose.
#[track_caller]
pub(crate) fn max_pool_backward(
    dy: &Array,
    indices: &Array,
    input_shape: &[usize],
    out: &mut Array,
    op: &str,
) {
    let device = same_device(op, &[dy, indices]);
    let gpu = gpu_of(device, op);
    let dtype = dy.dtype();
    let code = code(Pool::MaxBackward, dtype, op);
    let (dy, indices) = (dy.contiguous(), indices.contiguous());
    let g = geom(
        input_shape,
        (dy.shape()[2], dy.shape()[3]),
        Pool2dParams::square(1),
    );
    let buffer = out.cuda_out(&gpu, input_shape, dtype, op);
    buffer.zero(&gpu).unwrap_or_else(|e| super::fail(op, e));
    let dst = buffer.ptr(&gpu, 0);
    let n = dy.numel();
    if n == 0 {
        return;
    }
    let pg = first_ptr(&dy, &gpu);
    let pi = first_ptr(&indices, &gpu);
    if crate::deterministic() {
        // element i of plane p (of s = oh·ow) lands at p·hw + indices[i]
        let (planes, s) = ((g.n * g.c) as usize, (g.oh * g.ow) as usize);
        let flat = super::elementwise::pack(std::iter::once((n, 1)), 0, op);
        let sum = super::index::Sources {
            lbase: super::elementwise::pack([(planes, g.h * g.w), (s, 0)].into_iter(), 0, op),
            stride: 1,
            idx: pi,
            li: flat,
            src: pg,
            ls: flat,
            n: n as i64,
        };
        // SAFETY: the indices lie inside each H·W plane of `out` (they come from a pooling
        // of that shape), `dy` and `indices` are contiguous with n elements.
        return unsafe { sum.add_sorted(&gpu, device, dtype, dst, op) };
    }
    let k = kernel(
        &gpu,
        &source::pool_name(Pool::MaxBackward, dtype),
        || code,
        op,
    );
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&pg).arg(&pi).arg(&g);
    // SAFETY: the kernel's signature; `dy` and `indices` contiguous [N, C, oh, ow], the
    // indices inside each H·W plane of `out` (they come from a pooling of that shape).
    unsafe { go(b, grid(n), &gpu, op) }
}

/// `x`'s values at the flat in-plane `indices`.
#[track_caller]
pub(crate) fn gather_planes(x: &Array, indices: &Array, out: &mut Array, op: &str) {
    let device = same_device(op, &[x, indices]);
    let gpu = gpu_of(device, op);
    let dtype = x.dtype();
    let code = code(Pool::GatherPlanes, dtype, op);
    let (x, indices) = (x.contiguous(), indices.contiguous());
    let g = geom(
        x.shape(),
        (indices.shape()[2], indices.shape()[3]),
        Pool2dParams::square(1),
    );
    let dst = out.cuda_out(&gpu, indices.shape(), dtype, op).ptr(&gpu, 0);
    let n = indices.numel();
    if n == 0 {
        return;
    }
    let px = first_ptr(&x, &gpu);
    let pi = first_ptr(&indices, &gpu);
    let k = kernel(
        &gpu,
        &source::pool_name(Pool::GatherPlanes, dtype),
        || code,
        op,
    );
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&px).arg(&pi).arg(&g);
    // SAFETY: the kernel's signature; the indices were made by a pooling of planes of
    // `x`'s size (the caller checked the shapes).
    unsafe { go(b, grid(n), &gpu, op) }
}

/// Average pooling (`backward`: its gradient from `x` = the output gradient) on the GPU.
#[track_caller]
pub(crate) fn avg_pool(
    x: &Array,
    g: ConvGeom,
    include: bool,
    backward: bool,
    out: &mut Array,
    op: &str,
) {
    let gpu = gpu_of(x.device(), op);
    let dtype = x.dtype();
    let kind = if backward {
        Pool::AvgBackward
    } else {
        Pool::Avg
    };
    let code = code(kind, dtype, op);
    let x = x.contiguous();
    let shape = if backward {
        [g.n as usize, g.c as usize, g.h as usize, g.w as usize]
    } else {
        [g.n as usize, g.c as usize, g.oh as usize, g.ow as usize]
    };
    let dst = out.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0);
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let px = first_ptr(&x, &gpu);
    let include = i32::from(include);
    let k = kernel(&gpu, &source::pool_name(kind, dtype), || code, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&px).arg(&g).arg(&include);
    // SAFETY: the kernel's signature; contiguous operands of the sizes `g` says.
    unsafe { go(b, grid(n), &gpu, op) }
}
