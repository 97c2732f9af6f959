//! Indexing on a GPU: `gather` (and `index_select`, a gather with the index broadcast along
//! the other dims) and `scatter_add` (and `index_add`). The callers check the index's shape
//! and, on a host copy, its positions, before anything is launched.

use cudarc::driver::PushKernelArg;

use super::elementwise::{go, gpu_of, grid, kernel, layout, pack};
use super::source;
use crate::array::Array;
use crate::error::same_device;

/// `out = a.gather(d, index)` on the operands' GPU.
#[track_caller]
pub(crate) fn gather(a: &Array, d: usize, index: &Array, out: &mut Array, op: &str) {
    let device = same_device(op, &[a, index]);
    let gpu = gpu_of(device, op);
    let shape = index.shape().to_vec();
    let dtype = a.dtype();
    // `a`'s offset for each output element but along `d`, where the index says
    let lbase = pack(
        shape
            .iter()
            .enumerate()
            .map(|(k, &s)| (s, if k == d { 0 } else { a.strides()[k] as i64 })),
        a.offset(),
        op,
    );
    let stride = a.strides()[d] as i64;
    let li = layout(index, &shape, op);
    let x = a.cuda_buffer().expect("a device array").ptr(&gpu, 0);
    let idx = index.cuda_buffer().expect("a device array").ptr(&gpu, 0);
    let dst = out.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0);
    let n = shape.iter().product::<usize>();
    if n == 0 {
        return;
    }
    let n = n as i64;
    let k = kernel(
        &gpu,
        &source::gather_name(dtype),
        || source::gather_source(dtype),
        op,
    );
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst)
        .arg(&x)
        .arg(&lbase)
        .arg(&stride)
        .arg(&idx)
        .arg(&li)
        .arg(&n);
    // SAFETY: `gather_source`'s signature; the positions were checked against `a`'s dim
    // `d`, so every read is inside `a`'s storage; `dst` has n elements.
    unsafe { go(b, grid(n as usize), &gpu, op) }
}

/// `out = a` with `src` added at the positions `index` names along `d`, on the operands'
/// GPU.
#[track_caller]
pub(crate) fn scatter_add(
    a: &Array,
    d: usize,
    index: &Array,
    src: &Array,
    out: &mut Array,
    op: &str,
) {
    let device = same_device(op, &[a, index, src]);
    let gpu = gpu_of(device, op);
    let dtype = a.dtype();
    let Some(code) = source::scatter_add_source(dtype) else {
        crate::error::dtype_fail(op, dtype, "a numeric dtype")
    };
    // a copy of `a` to add into (contiguous, so its strides are known)
    super::elementwise::cast(a, dtype, out, op);
    let shape = index.shape().to_vec();
    let strides = crate::layout::contiguous_strides(a.shape());
    let lbase = pack(
        shape
            .iter()
            .enumerate()
            .map(|(k, &s)| (s, if k == d { 0 } else { strides[k] as i64 })),
        0,
        op,
    );
    let stride = strides[d] as i64;
    let li = layout(index, &shape, op);
    let ls = layout(src, &shape, op);
    let idx = index.cuda_buffer().expect("a device array").ptr(&gpu, 0);
    let s = src.cuda_buffer().expect("a device array").ptr(&gpu, 0);
    let dst = out.cuda_out(&gpu, a.shape(), dtype, op).ptr(&gpu, 0);
    let n = shape.iter().product::<usize>();
    if n == 0 {
        return;
    }
    let n = n as i64;
    let k = kernel(&gpu, &source::scatter_add_name(dtype), || code, op);
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst)
        .arg(&lbase)
        .arg(&stride)
        .arg(&idx)
        .arg(&li)
        .arg(&s)
        .arg(&ls)
        .arg(&n);
    // SAFETY: `scatter_add_source`'s signature; the positions were checked against dim `d`
    // of `out` (a's shape, contiguous), `src` covers the index's shape (checked).
    unsafe { go(b, grid(n as usize), &gpu, op) }
}

/// `index` (1-d, `k` positions) as the index of a gather or scatter along `d` whose index
/// shape is `shape` (with `k` at `d`): broadcast along every other dim.
pub(crate) fn broadcast_index(index: &Array, d: usize, shape: &[usize]) -> Array {
    let mut view = vec![1; shape.len()];
    view[d] = index.numel();
    index.reshape(&view).expand(shape)
}
