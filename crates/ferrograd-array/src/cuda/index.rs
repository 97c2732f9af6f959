//! Indexing on a GPU: `gather` (and `index_select`, a gather with the index broadcast along
//! the other dims), `scatter` and `scatter_add` (and `index_add`). The callers check the index's shape
//! and, on a host copy, its positions, before anything is launched.

use cudarc::driver::PushKernelArg;

use super::elementwise::{base_ptr, go, gpu_of, grid, kernel, layout, pack};
use super::source;
use crate::array::Array;
use crate::error::same_device;
use crate::DType;

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
    let x = base_ptr(a, &gpu);
    let idx = base_ptr(index, &gpu);
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

/// What both scatter kernels take: `out` (a copy of `a`, contiguous, so its strides are
/// known) and the source elements that land in it.
struct Scatter {
    gpu: std::sync::Arc<super::Gpu>,
    dst: u64,
    at: Sources,
}

impl Scatter {
    #[track_caller]
    fn new(a: &Array, d: usize, index: &Array, src: &Array, out: &mut Array, op: &str) -> Self {
        let device = same_device(op, &[a, index, src]);
        let gpu = gpu_of(device, op);
        let dtype = a.dtype();
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
        Scatter {
            dst: out.cuda_out(&gpu, a.shape(), dtype, op).ptr(&gpu, 0),
            at: Sources {
                lbase,
                stride: strides[d] as i64,
                idx: base_ptr(index, &gpu),
                li: layout(index, &shape, op),
                src: base_ptr(src, &gpu),
                ls: layout(src, &shape, op),
                n: shape.iter().product::<usize>() as i64,
            },
            gpu,
        }
    }

    /// The arguments the scatter kernels share, in their order: the output, its base
    /// layout and the stride along `d`, the index and the source with their layouts.
    fn push<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        let at = &self.at;
        b.arg(&self.dst)
            .arg(&at.lbase)
            .arg(&at.stride)
            .arg(&at.idx)
            .arg(&at.li)
            .arg(&at.src)
            .arg(&at.ls);
    }
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
    let dtype = a.dtype();
    let Some(code) = source::scatter_add_source(dtype) else {
        crate::error::dtype_fail(op, dtype, "a numeric dtype")
    };
    let s = Scatter::new(a, d, index, src, out, op);
    if s.at.n == 0 {
        return;
    }
    if crate::deterministic() && dtype.is_float() {
        // SAFETY: the positions were checked against dim `d` of `out` (a's shape,
        // contiguous), `src` covers the index's shape (checked).
        return unsafe { s.at.add_sorted(&s.gpu, a.device(), dtype, s.dst, op) };
    }
    let k = kernel(&s.gpu, &source::scatter_add_name(dtype), || code, op);
    let mut b = s.gpu.stream.launch_builder(&k);
    s.push(&mut b);
    b.arg(&s.at.n);
    // SAFETY: `scatter_add_source`'s signature; the positions were checked against dim `d`
    // of `out` (a's shape, contiguous), `src` covers the index's shape (checked).
    unsafe { go(b, grid(s.at.n as usize), &s.gpu, op) }
}

/// `out = a` with the rows of `src` added at the rows `index` (1-d) names along `d`, on the
/// operands' GPU: a scatter-add of the index broadcast over the other dims, or, in
/// deterministic mode for floats, the index's rows stably sorted and each row's run added in
/// order ([`index_add_sorted_source`](source::index_add_sorted_source)), the CPU's bits.
#[track_caller]
pub(crate) fn index_add(
    a: &Array,
    d: usize,
    index: &Array,
    src: &Array,
    out: &mut Array,
    op: &str,
) {
    let dtype = a.dtype();
    if !(crate::deterministic() && dtype.is_float()) {
        let index = broadcast_index(index, d, src.shape());
        return scatter_add(a, d, &index, src, out, op);
    }
    let device = same_device(op, &[a, index, src]);
    let gpu = gpu_of(device, op);
    super::elementwise::cast(a, dtype, out, op);
    let dst = out.cuda_out(&gpu, a.shape(), dtype, op).ptr(&gpu, 0);
    let (outer, size, inner) = crate::index::split_at_dim(a.shape(), d);
    let k = index.numel();
    let n = outer * k * inner;
    if n == 0 {
        return;
    }
    let order = super::reduce::argsort(index, 0, false, op);
    let po = super::elementwise::first_ptr(&order, &gpu);
    let (idx, li) = (base_ptr(index, &gpu), layout(index, index.shape(), op));
    let (x, ls) = (base_ptr(src, &gpu), layout(src, src.shape(), op));
    let name = source::index_add_sorted_name(dtype);
    let code = || source::index_add_sorted_source(dtype).expect("a float dtype");
    let kern = kernel(&gpu, &name, code, op);
    let (k, size, inner, count) = (k as i64, size as i64, inner as i64, n as i64);
    let mut b = gpu.stream.launch_builder(&kern);
    b.arg(&dst)
        .arg(&idx)
        .arg(&li)
        .arg(&po)
        .arg(&x)
        .arg(&ls)
        .arg(&k)
        .arg(&size)
        .arg(&inner)
        .arg(&count);
    // SAFETY: `index_add_sorted_source`'s signature; `out` is `a`'s shape, contiguous, the
    // index's positions were checked against its dim `d` (on a host copy), `src` is `a`'s
    // shape with `k` at `d` (checked) and `order` holds `k` positions of the index (freed in
    // the stream's order).
    unsafe { go(b, grid(n), &gpu, op) }
}

/// The source elements of a scatter: element `i` (of `n`) is `src[at(ls, i)]` and lands at
/// `at(lbase, i) + idx[at(li, i)] · stride` (nowhere where the index is negative, in
/// [`add_sorted`](Sources::add_sorted)).
pub(crate) struct Sources {
    pub(crate) lbase: source::Layout,
    pub(crate) stride: i64,
    pub(crate) idx: u64,
    pub(crate) li: source::Layout,
    pub(crate) src: u64,
    pub(crate) ls: source::Layout,
    pub(crate) n: i64,
}

impl Sources {
    /// The deterministic scatter-add ([`crate::set_deterministic`]): adds into `dst`
    /// (`dtype`, a float) on `gpu`, each element's position written down,
    /// the elements stably sorted by it ([`argsort`](super::reduce::argsort)), and each
    /// position's run added in order by one thread, as the CPU's loop does.
    ///
    /// # Safety
    /// Every position must lie inside `dst`'s buffer, and `idx` and `src` must hold what
    /// their layouts address for `n` elements.
    #[track_caller]
    pub(crate) unsafe fn add_sorted(
        &self,
        gpu: &std::sync::Arc<super::Gpu>,
        device: crate::Device,
        dtype: DType,
        dst: u64,
        op: &str,
    ) {
        let count = self.n as usize;
        let mut keys = Array::empty_on(&[count], DType::I64, device);
        let pk = keys.cuda_out(gpu, &[count], DType::I64, op).ptr(gpu, 0);
        let k = kernel(gpu, source::SCATTER_KEYS, source::scatter_keys_source, op);
        let mut b = gpu.stream.launch_builder(&k);
        b.arg(&pk)
            .arg(&self.lbase)
            .arg(&self.stride)
            .arg(&self.idx)
            .arg(&self.li)
            .arg(&self.n);
        // SAFETY: `scatter_keys_source`'s signature; `keys` holds n elements, the index
        // what `li` addresses (the caller's promise).
        unsafe { go(b, grid(count), gpu, op) }
        let order = super::reduce::argsort(&keys, 0, false, op);
        let po = super::elementwise::first_ptr(&order, gpu);
        let code = source::scatter_add_sorted_source(dtype)
            .unwrap_or_else(|| crate::error::dtype_fail(op, dtype, "f32 or f64"));
        let name = source::scatter_add_sorted_name(dtype);
        let k = kernel(gpu, &name, || code, op);
        let mut b = gpu.stream.launch_builder(&k);
        b.arg(&dst)
            .arg(&pk)
            .arg(&po)
            .arg(&self.src)
            .arg(&self.ls)
            .arg(&self.n);
        // SAFETY: `scatter_add_sorted_source`'s signature; `keys` and `order` hold n
        // elements (contiguous), every key is -1 or inside `dst` and `src` holds what `ls`
        // addresses (the caller's promise); both are freed in the stream's order.
        unsafe { go(b, grid(count), gpu, op) }
    }
}

/// `out = a` with `src` written at the positions `index` names along `d`, on the operands'
/// GPU: where positions repeat, the last source element in the index's row-major order
/// wins, as on the CPU (two kernels: one picks each position's last writer, one places).
#[track_caller]
pub(crate) fn scatter(a: &Array, d: usize, index: &Array, src: &Array, out: &mut Array, op: &str) {
    let s = Scatter::new(a, d, index, src, out, op);
    if s.at.n == 0 {
        return;
    }
    let (gpu, at) = (&s.gpu, &s.at);
    // each output position's winner, as 1 + the source element's flat position (0: none)
    let mut winner = gpu
        .alloc(DType::I64, a.numel())
        .unwrap_or_else(|e| super::fail(op, e));
    winner.zero(gpu).unwrap_or_else(|e| super::fail(op, e));
    let win = winner.ptr(gpu, 0);
    let claim = kernel(gpu, source::SCATTER_CLAIM, source::scatter_claim_source, op);
    let mut b = gpu.stream.launch_builder(&claim);
    b.arg(&win)
        .arg(&at.lbase)
        .arg(&at.stride)
        .arg(&at.idx)
        .arg(&at.li)
        .arg(&at.n);
    // SAFETY: `scatter_claim_source`'s signature; the positions were checked against dim
    // `d` of `a`'s shape, which `winner` has (contiguous).
    unsafe { go(b, grid(at.n as usize), gpu, op) }
    let dtype = a.dtype();
    let place = kernel(
        gpu,
        &source::scatter_name(dtype),
        || source::scatter_source(dtype),
        op,
    );
    let mut b = gpu.stream.launch_builder(&place);
    s.push(&mut b);
    b.arg(&win).arg(&at.n);
    // SAFETY: `scatter_source`'s signature; positions as above, `src` covers the index's
    // shape (checked), `winner` as filled above (it is freed in the stream's order, after
    // both kernels have run).
    unsafe { go(b, grid(at.n as usize), gpu, op) }
}

/// `index` (1-d, `k` positions) as the index of a gather or scatter along `d` whose index
/// shape is `shape` (with `k` at `d`): broadcast along every other dim.
pub(crate) fn broadcast_index(index: &Array, d: usize, shape: &[usize]) -> Array {
    let mut view = vec![1; shape.len()];
    view[d] = index.numel();
    index.reshape(&view).expand(shape)
}

/// The [`Layout`](super::source::Layout) of the block of a contiguous `out_shape` array that
/// starts at `start` along `d` and has `shape`.
pub(crate) fn block(
    out_shape: &[usize],
    shape: &[usize],
    d: usize,
    start: usize,
    op: &str,
) -> super::source::Layout {
    let strides = crate::layout::contiguous_strides(out_shape);
    pack(
        shape
            .iter()
            .zip(strides.iter())
            .map(|(&s, &st)| (s, st as i64)),
        start * strides[d] as usize,
        op,
    )
}

/// Writes `x` (of shape `view`) into the elements of `out` (contiguous, on `x`'s GPU) that a
/// view of `view`'s shape with `strides` from element `offset` addresses (a diagonal), the
/// rest of `out` unchanged.
#[track_caller]
pub(crate) fn write_view(
    x: &Array,
    out: &mut Array,
    view: &[usize],
    strides: &[isize],
    offset: usize,
    op: &str,
) {
    let device = same_device(op, &[x, out]);
    let gpu = gpu_of(device, op);
    let n = x.numel();
    let (shape, dtype) = (out.shape().to_vec(), out.dtype());
    let lo = pack(
        view.iter().zip(strides).map(|(&s, &st)| (s, st as i64)),
        offset,
        op,
    );
    let lx = layout(x, view, op);
    let px = base_ptr(x, &gpu);
    // (a contiguous copy of `out` first when it is a view or shared: the elements outside
    // the view stay)
    out.make_unique();
    let dst = out.cuda_out(&gpu, &shape, dtype, op).ptr(&gpu, 0);
    // SAFETY: the view lies inside `out` (its layout comes from `out`'s own shape, checked
    // by the caller), `x` holds what `lx` addresses.
    unsafe { copy(&gpu, dtype, (dst, lo), (px, lx), n, op) }
}

/// The strided copy kernel over `n` elements: `dst[at(lo, i)] = src[at(ls, i)]` (nothing
/// for none).
///
/// # Safety
/// `dst` and `src` are device addresses of `dtype` elements on `gpu` holding every element
/// their layouts address for `i < n`, and the written elements are distinct.
#[track_caller]
pub(crate) unsafe fn copy(
    gpu: &super::Gpu,
    dtype: DType,
    (dst, lo): (u64, super::source::Layout),
    (src, ls): (u64, super::source::Layout),
    n: usize,
    op: &str,
) {
    if n == 0 {
        return;
    }
    let k = kernel(
        gpu,
        &source::copy_name(dtype),
        || source::copy_source(dtype),
        op,
    );
    let n = n as i64;
    let mut b = gpu.stream.launch_builder(&k);
    b.arg(&dst).arg(&lo).arg(&src).arg(&ls).arg(&n);
    // SAFETY: `copy_source`'s signature, with operands as the caller guarantees.
    unsafe { go(b, grid(n as usize), gpu, op) }
}

/// `out` = zeros of `shape` on `device`'s GPU.
#[track_caller]
pub(crate) fn zeros_into(
    shape: &[usize],
    dtype: DType,
    device: crate::Device,
    out: &mut Array,
    op: &str,
) {
    let gpu = gpu_of(device, op);
    out.cuda_out(&gpu, shape, dtype, op)
        .zero(&gpu)
        .unwrap_or_else(|e| super::fail(op, e));
}

/// Copies `x` into the block of `dst` (a contiguous array of `out_shape` on `gpu`) that
/// starts at `start` along `d`.
#[track_caller]
fn copy_block(
    x: &Array,
    dst: u64,
    out_shape: &[usize],
    d: usize,
    start: usize,
    gpu: &super::Gpu,
    op: &str,
) {
    if x.numel() == 0 {
        return;
    }
    let lo = block(out_shape, x.shape(), d, start, op);
    let lx = layout(x, x.shape(), op);
    let px = base_ptr(x, gpu);
    // SAFETY: the block lies inside `dst` (its shape fits `out_shape` from `start`, checked
    // by the caller), `x` holds what `lx` addresses.
    unsafe { copy(gpu, x.dtype(), (dst, lo), (px, lx), x.numel(), op) }
}

/// `out = cat(arrays, d)` (shapes checked, `shape` the result's) on their GPU.
#[track_caller]
pub(crate) fn cat<A: std::borrow::Borrow<Array>>(
    arrays: &[A],
    d: usize,
    shape: &[usize],
    out: &mut Array,
    op: &str,
) {
    let all: Vec<&Array> = arrays.iter().map(|a| a.borrow()).collect();
    let device = same_device(op, &all);
    let gpu = gpu_of(device, op);
    let dtype = all[0].dtype();
    for a in &all {
        crate::error::same_dtype(op, dtype, a.dtype());
    }
    let dst = out.cuda_out(&gpu, shape, dtype, op).ptr(&gpu, 0);
    let mut start = 0;
    for a in all {
        copy_block(a, dst, shape, d, start, &gpu, op);
        start += a.shape()[d];
    }
}

/// `out` = zeros of `shape` with `a` placed from `start` along `d` (checked), on its GPU.
#[track_caller]
pub(crate) fn pad_narrow(
    a: &Array,
    d: usize,
    start: usize,
    shape: &[usize],
    out: &mut Array,
    op: &str,
) {
    let gpu = gpu_of(a.device(), op);
    let buffer = out.cuda_out(&gpu, shape, a.dtype(), op);
    buffer.zero(&gpu).unwrap_or_else(|e| super::fail(op, e));
    let dst = buffer.ptr(&gpu, 0);
    copy_block(a, dst, shape, d, start, &gpu, op);
}
