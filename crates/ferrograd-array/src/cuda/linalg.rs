//! Matrix products on a GPU, on cuBLAS: one strided-batched call per product (a plain
//! product is a batch of one), operands read in place when each matrix is row- or
//! column-major and the batch has one stride.

use cudarc::cublas::{result as blas, sys as blas_sys};

use super::elementwise::{first_ptr, gpu_of};
use super::{fail, Gpu};
use crate::array::Array;
use crate::error::same_device;
use crate::layout::broadcast_shapes;
use crate::{DType, DeviceError};

/// How cuBLAS reads one operand: its device address, whether it is transposed (column-major
/// in row-major terms), its leading dimension and its batch stride.
struct Operand {
    ptr: u64,
    transposed: bool,
    ld: i64,
    batch_stride: i64,
}

/// `a` (a batch of matrices, batch dims broadcast to `batch`) as cuBLAS reads it; copied to
/// a contiguous array first when its layout is neither (`keep` holds the copy alive).
fn operand(a: &Array, batch: &[usize], gpu: &Gpu, keep: &mut Vec<Array>) -> Operand {
    let nd = a.ndim();
    let (r, c) = (a.shape()[nd - 2], a.shape()[nd - 1]);
    let mut shape = batch.to_vec();
    shape.extend([r, c]);
    let expanded = a.expand(&shape);
    let (s0, s1) = (
        expanded.strides()[shape.len() - 2],
        expanded.strides()[shape.len() - 1],
    );
    let row_major = (c <= 1 || s1 == 1) && (r <= 1 || s0 >= c as isize);
    let col_major = (r <= 1 || s0 == 1) && (c <= 1 || s1 >= r as isize);
    // the batch dims as one stride
    let mut batch_stride = None;
    let mut ok = true;
    for d in (0..batch.len()).rev() {
        if batch[d] == 1 {
            continue;
        }
        let st = expanded.strides()[d] as i64;
        match batch_stride {
            None => batch_stride = Some((st, batch[d] as i64)),
            Some((inner, count)) if st == inner * count => {
                batch_stride = Some((inner, count * batch[d] as i64))
            }
            Some(_) => ok = false,
        }
    }
    if !(ok && (row_major || col_major)) {
        let copy = expanded.contiguous();
        let op = operand(&copy, batch, gpu, keep);
        keep.push(copy);
        return op;
    }
    let ptr = first_ptr(&expanded, gpu);
    // cuBLAS wants a leading dimension of at least 1 even for an empty matrix
    let (transposed, ld) = if row_major {
        (false, if r <= 1 { c as i64 } else { s0 as i64 })
    } else {
        (true, if c <= 1 { r as i64 } else { s1 as i64 })
    };
    let ld = ld.max(1);
    Operand {
        ptr,
        transposed,
        ld,
        batch_stride: batch_stride.map_or(0, |(s, _)| s),
    }
}

/// `out = a @ b` (operands with at least 2 dims; the caller has checked the shapes and
/// dtypes, and `shape` is the product's) on the operands' GPU.
#[track_caller]
pub(crate) fn matmul(a: &Array, b: &Array, shape: &[usize], out: &mut Array, op: &str) {
    let device = same_device(op, &[a, b]);
    let gpu = gpu_of(device, op);
    let (a, b) = crate::linalg::as_matrices(a, b);
    let (m, k, n) = (
        a.shape()[a.ndim() - 2],
        a.shape()[a.ndim() - 1],
        b.shape()[b.ndim() - 1],
    );
    let batch = broadcast_shapes(&a.shape()[..a.ndim() - 2], &b.shape()[..b.ndim() - 2])
        .expect("batch dims checked by the caller");
    let count: usize = batch.iter().product();
    let mut keep = Vec::new();
    let (pa, pb) = (
        operand(&a, &batch, &gpu, &mut keep),
        operand(&b, &batch, &gpu, &mut keep),
    );
    let dtype = a.dtype();
    if k == 0 {
        // a sum of no products: zeros (cuBLAS is not asked to fill with nothing)
        let zeros = Array::full_like(&Array::empty_on(shape, dtype, device), 0.0);
        out.cuda_out(&gpu, shape, dtype, op);
        *out = zeros;
        return;
    }
    let dst = out.cuda_out(&gpu, shape, dtype, op).ptr(&gpu, 0);
    if m == 0 || n == 0 || count == 0 {
        return;
    }
    let too_big = |x: usize| i32::try_from(x).is_err();
    if too_big(m) || too_big(n) || too_big(k) || too_big(count) {
        crate::error::fail(
            op,
            format_args!("dims past 2^31 ({m}x{k}x{n}, batch {count})"),
        )
    }
    // Row-major C = A B is column-major Cᵀ = Bᵀ Aᵀ: cuBLAS's first operand is B.
    let t = |o: &Operand| {
        if o.transposed {
            blas_sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            blas_sys::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let run = || -> Result<(), DeviceError> {
        let handle = *gpu.blas()?.handle();
        gpu.stream
            .context()
            .bind_to_thread()
            .map_err(|e| super::driver_error(gpu.device, "binding the context", e))?;
        let (mi, ni, ki, ci) = (n as i32, m as i32, k as i32, count as i32);
        let stride_c = (m * n) as i64;
        // SAFETY: the pointers address live device buffers that hold `count` matrices at
        // the strides given, laid out as the leading dimensions say (checked above), and the
        // output has m·n·count elements; cuBLAS runs on this GPU's stream.
        let r = unsafe {
            match dtype {
                DType::F32 => blas::sgemm_strided_batched(
                    handle,
                    t(&pb),
                    t(&pa),
                    mi,
                    ni,
                    ki,
                    &1.0f32,
                    pb.ptr as *const f32,
                    pb.ld as i32,
                    pb.batch_stride,
                    pa.ptr as *const f32,
                    pa.ld as i32,
                    pa.batch_stride,
                    &0.0f32,
                    dst as *mut f32,
                    n as i32,
                    stride_c,
                    ci,
                ),
                DType::F64 => blas::dgemm_strided_batched(
                    handle,
                    t(&pb),
                    t(&pa),
                    mi,
                    ni,
                    ki,
                    &1.0f64,
                    pb.ptr as *const f64,
                    pb.ld as i32,
                    pb.batch_stride,
                    pa.ptr as *const f64,
                    pa.ld as i32,
                    pa.batch_stride,
                    &0.0f64,
                    dst as *mut f64,
                    n as i32,
                    stride_c,
                    ci,
                ),
                other => crate::error::dtype_fail(op, other, "f32 or f64"),
            }
        };
        r.map_err(|e| DeviceError::Cuda {
            device: gpu.device,
            op: "cuBLAS gemm".into(),
            message: format!("{e:?}"),
        })
    };
    if let Err(e) = run() {
        fail(op, e)
    }
    drop(keep);
}
