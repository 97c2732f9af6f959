//! 2-d convolution on a GPU, one group: the input unfolded into columns (im2col), one
//! batched cuBLAS product with the weight, and for the gradients the product's adjoints with
//! the columns folded back (col2im, gathered rather than added atomically, so the input
//! gradient is the same from run to run).

use cudarc::driver::PushKernelArg;

use super::elementwise::{first_ptr, go, gpu_of, grid, kernel};
use super::source::{self, ConvGeom};
use crate::array::Array;
use crate::error::same_device;
use crate::Conv2dParams;

/// The kernels' sizes of a convolution of `[n, c, h, w]` by `[o, c, kh, kw]` to `oh × ow`.
pub(crate) fn geom(
    input: &[usize],
    kernel: (usize, usize),
    out: (usize, usize),
    p: Conv2dParams,
) -> ConvGeom {
    let i = |v: usize| v as i64;
    ConvGeom {
        n: i(input[0]),
        c: i(input[1]),
        h: i(input[2]),
        w: i(input[3]),
        kh: i(kernel.0),
        kw: i(kernel.1),
        oh: i(out.0),
        ow: i(out.1),
        sh: i(p.stride.0),
        sw: i(p.stride.1),
        ph: i(p.padding.0),
        pw: i(p.padding.1),
        dh: i(p.dilation.0),
        dw: i(p.dilation.1),
    }
}

/// Panics unless the convolution has one group (the only kind with a CUDA path so far).
#[track_caller]
fn one_group(p: Conv2dParams, op: &str, device: crate::Device) {
    if p.groups != 1 {
        crate::error::fail(
            op,
            format_args!(
                "has no kernel for {device} with {} groups yet (one group only)",
                p.groups
            ),
        )
    }
}

/// `x` (`[N, C, H, W]`, on a GPU) unfolded to columns `[N, C·kh·kw, oh·ow]`.
#[track_caller]
fn im2col(x: &Array, g: ConvGeom, op: &str) -> Array {
    let gpu = gpu_of(x.device(), op);
    let x = x.contiguous();
    let dtype = x.dtype();
    let shape = [
        g.n as usize,
        (g.c * g.kh * g.kw) as usize,
        (g.oh * g.ow) as usize,
    ];
    let mut col = Array::empty_on(&shape, dtype, x.device());
    let dst = col.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0);
    let px = first_ptr(&x, &gpu);
    let n: usize = shape.iter().product();
    if n > 0 {
        let code = source::im2col_source(dtype, false).expect("a float dtype");
        let k = kernel(&gpu, &source::im2col_name(dtype, false), || code, op);
        let mut b = gpu.stream.launch_builder(&k);
        b.arg(&dst).arg(&px).arg(&g);
        // SAFETY: `im2col_source`'s signature; `x` is contiguous [N, C, H, W] and `col`
        // [N, C·kh·kw, oh·ow], as `g` says.
        unsafe { go(b, grid(n), &gpu, op) }
    }
    col
}

/// `y = conv2d(x, w) + bias` on the operands' GPU (shapes checked by the caller).
#[track_caller]
pub(crate) fn forward(
    x: &Array,
    w: &Array,
    bias: Option<&Array>,
    g: ConvGeom,
    p: Conv2dParams,
    out: &mut Array,
    op: &str,
) {
    let mut all = vec![x, w];
    all.extend(bias);
    let device = same_device(op, &all);
    one_group(p, op, device);
    let col = im2col(x, g, op);
    let (o, ck) = (w.shape()[0], (g.c * g.kh * g.kw) as usize);
    // [O, CK] · [N, CK, L]: one strided-batched product, the weight shared
    let y = w.reshape(&[o, ck]).matmul(&col);
    let shape = [g.n as usize, o, g.oh as usize, g.ow as usize];
    let y = y.reshape(&shape);
    match bias {
        Some(b) => y.add_into(&b.reshape(&[1, o, 1, 1]), out),
        None => y.contiguous_into(out),
    }
}

/// The input gradient of a convolution from the output gradient `dy` on its GPU.
#[track_caller]
pub(crate) fn backward_input(
    dy: &Array,
    w: &Array,
    g: ConvGeom,
    p: Conv2dParams,
    out: &mut Array,
    op: &str,
) {
    let device = same_device(op, &[dy, w]);
    one_group(p, op, device);
    let gpu = gpu_of(device, op);
    let dtype = dy.dtype();
    let (o, ck, l) = (
        w.shape()[0],
        (g.c * g.kh * g.kw) as usize,
        (g.oh * g.ow) as usize,
    );
    // the columns' gradient [N, CK, L] = Wᵀ [CK, O] · dy [N, O, L]
    let dcol = w
        .reshape(&[o, ck])
        .t()
        .matmul(&dy.reshape(&[g.n as usize, o, l]))
        .contiguous();
    let shape = [g.n as usize, g.c as usize, g.h as usize, g.w as usize];
    let dst = out.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0);
    let pc = first_ptr(&dcol, &gpu);
    let n: usize = shape.iter().product();
    if n == 0 {
        return;
    }
    let code = source::im2col_source(dtype, true).expect("a float dtype");
    let k = kernel(&gpu, &source::im2col_name(dtype, true), || code, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&pc).arg(&g);
    // SAFETY: `im2col_source`'s backward signature; `dcol` is contiguous
    // [N, C·kh·kw, oh·ow] and `out` [N, C, H, W], as `g` says.
    unsafe { go(b, grid(n), &gpu, op) }
}

/// The weight gradient of a convolution from the output gradient `dy` and the input `x`.
#[track_caller]
pub(crate) fn backward_weight(
    dy: &Array,
    x: &Array,
    weight_shape: &[usize],
    g: ConvGeom,
    p: Conv2dParams,
    out: &mut Array,
    op: &str,
) {
    let device = same_device(op, &[dy, x]);
    one_group(p, op, device);
    let col = im2col(x, g, op);
    let (o, l) = (weight_shape[0], (g.oh * g.ow) as usize);
    // Σₙ dy[n] [O, L] · col[n]ᵀ [L, CK]
    let per_sample = dy
        .reshape(&[g.n as usize, o, l])
        .matmul(&col.transpose(1, 2));
    *out = per_sample.sum_dim(0usize, false).reshape(weight_shape);
}
