//! 2-d convolution on a GPU: the input unfolded into columns (im2col), one batched cuBLAS
//! product with the weight, and for the gradients the product's adjoints with the columns
//! folded back (col2im, gathered rather than added atomically, so the input gradient is the
//! same from run to run). With groups the columns' rows of each group are one block
//! (`[N, C·kh·kw, L]` is `[N, G, C/G·kh·kw, L]`), so the products are batched over the
//! groups as well as the samples.

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

/// The groups of a convolution of `g`'s input by a weight `[O, C/G, kh, kw]`: `(G, O/G,
/// C/G·kh·kw)`, the batch and sizes of each group's product.
fn groups(g: ConvGeom, p: Conv2dParams, o: usize) -> (usize, usize, usize) {
    let groups = p.groups;
    let cgk = (g.c * g.kh * g.kw) as usize / groups;
    (groups, o / groups, cgk)
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

/// The convolution `[N, O, oh, ow]` from the input's columns `col` (`[N, C·kh·kw, L]`): for
/// each group, `[O/G, C/G·kh·kw] · [C/G·kh·kw, L]`, batched over samples and groups (the
/// weight shared). Array ops only, on whichever device the operands are.
pub(crate) fn columns_product(w: &Array, col: &Array, g: ConvGeom, p: Conv2dParams) -> Array {
    let o = w.shape()[0];
    let (groups, og, cgk) = groups(g, p, o);
    let (n, l) = (g.n as usize, (g.oh * g.ow) as usize);
    w.reshape(&[groups, og, cgk])
        .matmul(&col.reshape(&[n, groups, cgk, l]))
        .reshape(&[n, o, g.oh as usize, g.ow as usize])
}

/// The gradient of the columns (`[N, C·kh·kw, L]`, contiguous) from the output gradient
/// `dy`: `W_gᵀ [C/G·kh·kw, O/G] · dy[n, g] [O/G, L]` for each sample and group.
pub(crate) fn columns_grad(w: &Array, dy: &Array, g: ConvGeom, p: Conv2dParams) -> Array {
    let (o, l) = (w.shape()[0], (g.oh * g.ow) as usize);
    let (groups, og, cgk) = groups(g, p, o);
    w.reshape(&[groups, og, cgk])
        .transpose(1, 2)
        .matmul(&dy.reshape(&[g.n as usize, groups, og, l]))
        .reshape(&[g.n as usize, groups * cgk, l])
        .contiguous()
}

/// The weight gradient (`weight_shape`) from the output gradient `dy` and the input's
/// columns `col`: `Σₙ dy[n, g] [O/G, L] · col[n, g]ᵀ [L, C/G·kh·kw]` for each group.
pub(crate) fn weight_grad(
    dy: &Array,
    col: &Array,
    weight_shape: &[usize],
    g: ConvGeom,
    p: Conv2dParams,
) -> Array {
    let (o, l, n) = (weight_shape[0], (g.oh * g.ow) as usize, g.n as usize);
    let (groups, og, cgk) = groups(g, p, o);
    dy.reshape(&[n, groups, og, l])
        .matmul(&col.reshape(&[n, groups, cgk, l]).transpose(2, 3))
        .sum_dim(0usize, false)
        .reshape(weight_shape)
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
    same_device(op, &all);
    let col = im2col(x, g, op);
    let y = columns_product(w, &col, g, p);
    let o = w.shape()[0];
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
    let gpu = gpu_of(device, op);
    let dtype = dy.dtype();
    let dcol = columns_grad(w, dy, g, p);
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
    same_device(op, &[dy, x]);
    let col = im2col(x, g, op);
    *out = weight_grad(dy, &col, weight_shape, g, p);
}
