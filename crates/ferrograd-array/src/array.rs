//! The `Array` type: shared storage plus a strided view of it.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::dtype::{dispatch_any, Element};
use crate::error::fail;
use crate::layout::{contiguous_strides, fmt_shape, numel, Shape, Strides};
use crate::storage::{Buffer, Storage};
use crate::{DType, Device};

/// An n-dimensional array with a runtime element type and device.
///
/// Cloning is cheap (the storage is shared through an `Arc`); views such as
/// [`transpose`](Array::transpose), [`narrow`](Array::narrow) and [`expand`](Array::expand)
/// share storage too and copy nothing. Every operation returns a new array: storage is never
/// written through a shared handle.
///
/// ```
/// use ferrograd_array::Array;
/// let a = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
/// let b = a.transpose(0, 1); // a view: no copy
/// assert_eq!(b.shape(), &[3, 2]);
/// assert_eq!(b.to_vec::<f32>(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
/// ```
pub struct Array {
    storage: Arc<Storage>,
    shape: Shape,
    strides: Strides,
    offset: usize,
}

impl Clone for Array {
    /// A second handle on the same storage.
    #[inline]
    fn clone(&self) -> Array {
        // (smallvec's own `clone` pushes element by element, each with a capacity check;
        // the dims are `Copy`, copied at once: a compiled call on 10 elements 3-5% faster)
        Array {
            storage: Arc::clone(&self.storage),
            shape: Shape::from_slice(&self.shape),
            strides: Strides::from_slice(&self.strides),
            offset: self.offset,
        }
    }
}

impl Array {
    // ----- construction from parts -----

    pub(crate) fn from_buffer(buffer: Buffer, shape: &[usize]) -> Array {
        debug_assert_eq!(buffer.len(), numel(shape));
        Array {
            storage: Arc::new(Storage::cpu_buffer(buffer)),
            strides: contiguous_strides(shape),
            shape: SmallVec::from_slice(shape),
            offset: 0,
        }
    }

    /// A contiguous array over a device buffer of exactly its elements (or one element, for
    /// an empty array).
    #[cfg(feature = "cuda")]
    pub(crate) fn from_cuda(buffer: crate::cuda::CudaBuffer, shape: &[usize]) -> Array {
        debug_assert!(buffer.len() == numel(shape).max(1));
        Array {
            storage: Arc::new(Storage::cuda_buffer(buffer)),
            strides: contiguous_strides(shape),
            shape: SmallVec::from_slice(shape),
            offset: 0,
        }
    }

    /// The device buffer, `None` for a host array.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_buffer(&self) -> Option<&crate::cuda::CudaBuffer> {
        self.storage.cuda()
    }

    /// [`out_slice`](Array::out_slice) for a device kernel: makes `self` a contiguous,
    /// unshared buffer of `shape` and `dtype` on `gpu` (allocating one unless it already
    /// is one) and returns it for writing.
    #[cfg(feature = "cuda")]
    #[track_caller]
    pub(crate) fn cuda_out(
        &mut self,
        gpu: &crate::cuda::Gpu,
        shape: &[usize],
        dtype: DType,
        op: &str,
    ) -> &mut crate::cuda::CudaBuffer {
        if !crate::layout::same_shape(&self.shape, shape) || self.dtype() != dtype {
            fail(
                op,
                format_args!(
                    "output array has shape {} and dtype {}, the result needs shape {} and \
                     dtype {}",
                    fmt_shape(&self.shape),
                    self.dtype(),
                    fmt_shape(shape),
                    dtype
                ),
            )
        }
        let n = self.numel();
        let whole = self.offset == 0 && self.is_contiguous() && self.storage.len() == n.max(1);
        let unshared = Arc::strong_count(&self.storage) == 1 && Arc::weak_count(&self.storage) == 0;
        if !whole || !unshared || self.device() != gpu.device {
            let buffer = gpu
                .alloc(dtype, n)
                .unwrap_or_else(|e| crate::cuda::fail(op, e));
            *self = Array::from_cuda(buffer, shape);
        }
        let storage = Arc::get_mut(&mut self.storage).expect("unshared, checked or fresh");
        storage.cuda_mut().expect("on the device, checked or fresh")
    }

    /// A view of the same storage with another layout. The caller guarantees the layout stays
    /// inside the storage.
    pub(crate) fn with_layout(&self, shape: Shape, strides: Strides, offset: usize) -> Array {
        Array {
            storage: Arc::clone(&self.storage),
            shape,
            strides,
            offset,
        }
    }

    /// An array that owns `values`, laid out row-major in `shape`.
    ///
    /// Panics when `values.len()` differs from the number of elements of `shape`.
    #[track_caller]
    pub fn from_vec<T: Element>(values: Vec<T>, shape: &[usize]) -> Array {
        if values.len() != numel(shape) {
            fail(
                "from_vec",
                format_args!(
                    "{} values cannot fill shape {} ({} elements)",
                    values.len(),
                    fmt_shape(shape),
                    numel(shape)
                ),
            )
        }
        Array::from_buffer(T::into_buffer(values), shape)
    }

    /// An array copied from `values`, laid out row-major in `shape`.
    #[track_caller]
    pub fn from_slice<T: Element>(values: &[T], shape: &[usize]) -> Array {
        Array::from_vec(values.to_vec(), shape)
    }

    /// A 0-d array holding one value.
    pub fn scalar<T: Element>(value: T) -> Array {
        Array::from_buffer(T::into_buffer(vec![value]), &[])
    }

    // ----- metadata -----

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The stride of each dimension, in elements.
    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    /// Offset of the first element in the storage, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Size of one dimension (negative dims count from the back).
    #[track_caller]
    pub fn size(&self, dim: impl crate::Dim) -> usize {
        self.shape[dim.resolve(self.ndim(), "size")]
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// The device holding the storage.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// A handle naming this array's storage that does not keep the data alive, but keeps the
    /// identity unique while it lives (no later storage gets the same
    /// [`StorageRef::id`]). Optimize mode uses it to tell values computed inside a capture
    /// from constants.
    #[doc(hidden)]
    pub fn storage_ref(&self) -> StorageRef {
        StorageRef(Arc::downgrade(&self.storage))
    }

    /// The identity of this array's storage (shared by every view of it).
    #[doc(hidden)]
    pub fn storage_id(&self) -> usize {
        Arc::as_ptr(&self.storage) as usize
    }

    /// True when the elements are laid out row-major without gaps (offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1isize;
        for (&n, &s) in self.shape.iter().zip(&self.strides).rev() {
            if n != 1 && s != expected {
                return false;
            }
            expected *= n as isize;
        }
        true
    }

    /// True when two arrays share storage (one may be a view of the other).
    pub fn shares_storage(&self, other: &Array) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    // ----- element access -----

    /// The whole storage as a typed slice. Panics (naming `op`) on a dtype mismatch.
    #[track_caller]
    pub(crate) fn storage_slice<T: Element>(&self, op: &str) -> &[T] {
        let Some(buffer) = self.storage.cpu() else {
            crate::error::no_kernel_on(op, self.device())
        };
        match T::slice(buffer) {
            Some(s) => s,
            None => crate::error::dtype_fail(op, self.dtype(), T::DTYPE.name()),
        }
    }

    /// The elements as one slice when the array is contiguous.
    #[track_caller]
    pub(crate) fn contiguous_slice<T: Element>(&self, op: &str) -> Option<&[T]> {
        if self.numel() == 0 {
            Some(&self.storage_slice::<T>(op)[..0])
        } else if self.is_contiguous() {
            Some(&self.storage_slice::<T>(op)[self.offset..self.offset + self.numel()])
        } else {
            None
        }
    }

    /// The elements as one slice in row-major order when the array is contiguous, `None`
    /// otherwise (a transposed or broadcast view: [`to_vec`](Array::to_vec) copies those).
    /// Panics when `T` is not the array's dtype.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// assert_eq!(a.as_slice::<f32>(), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    /// assert_eq!(a.transpose(0, 1).as_slice::<f32>(), None);
    /// ```
    #[track_caller]
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        self.contiguous_slice("as_slice")
    }

    /// The elements in row-major order, borrowed when contiguous, copied otherwise.
    #[track_caller]
    pub(crate) fn values<T: Element>(&self, op: &str) -> std::borrow::Cow<'_, [T]> {
        match self.contiguous_slice::<T>(op) {
            Some(s) => std::borrow::Cow::Borrowed(s),
            None => {
                let mut out = vec![T::default(); self.numel()];
                self.copy_to_slice(self.storage_slice::<T>(op), &mut out);
                std::borrow::Cow::Owned(out)
            }
        }
    }

    /// True when the last two dims are a transposed (column-major) block: the layout a
    /// `.t()` view or a transposed gradient has, which a plain element walk reads with a
    /// cache miss per element.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType};
    /// let a = Array::zeros(&[3, 4], DType::F32);
    /// assert!(!a.is_transposed_block());
    /// assert!(a.t().is_transposed_block());
    /// ```
    pub fn is_transposed_block(&self) -> bool {
        let n = self.ndim();
        n >= 2
            && self.strides[n - 2] == 1
            && self.strides[n - 1] != 1
            && self.shape[n - 1] > 1
            && self.shape[n - 2] > 1
    }

    /// Copies the elements, row-major, from `data` (this array's storage) into `dst`.
    /// Transposed blocks go through 32x32 tiles so both sides stay in cache.
    pub(crate) fn copy_to_slice<T: Element>(&self, data: &[T], dst: &mut [T]) {
        if dst.is_empty() {
            // (an empty view may start past its storage's end: a column of `[0, 2]`)
            return;
        }
        if self.is_contiguous() {
            dst.copy_from_slice(&data[self.offset..self.offset + dst.len()]);
            return;
        }
        let n = self.ndim();
        if self.is_transposed_block() {
            const TILE: usize = 32;
            let (r, c) = (self.shape[n - 2], self.shape[n - 1]);
            let (sr, sc) = (self.strides[n - 2], self.strides[n - 1]);
            let mut block = 0;
            crate::layout::for_each_offsets(
                &self.shape[..n - 2],
                [&self.strides[..n - 2]],
                [self.offset],
                |[base]| {
                    let out = &mut dst[block * r * c..(block + 1) * r * c];
                    if sr == 1 && sc == r as isize {
                        // A whole column-major block (the `.t()` of a row-major matrix):
                        // the `transpose` crate's cache-blocked copy.
                        transpose::transpose(&data[base..base + r * c], out, r, c);
                        block += 1;
                        return;
                    }
                    for i0 in (0..r).step_by(TILE) {
                        for j0 in (0..c).step_by(TILE) {
                            for i in i0..(i0 + TILE).min(r) {
                                for j in j0..(j0 + TILE).min(c) {
                                    out[i * c + j] =
                                        data[(base as isize + i as isize * sr + j as isize * sc)
                                            as usize];
                                }
                            }
                        }
                    }
                    block += 1;
                },
            );
            return;
        }
        if n >= 1 && self.strides[n - 1] == 1 && self.shape[n - 1] > 1 {
            // contiguous rows (a slice across rows, a narrowed row): copied a row at a time
            // (33 rows of [32, 100] sliced from [32, 33, 100]: 350 -> 40 µs)
            let len = self.shape[n - 1];
            let mut i = 0;
            crate::layout::for_each_offsets(
                &self.shape[..n - 1],
                [&self.strides[..n - 1]],
                [self.offset],
                |[o]| {
                    dst[i..i + len].copy_from_slice(&data[o..o + len]);
                    i += len;
                },
            );
            return;
        }
        let mut i = 0;
        crate::layout::for_each_offsets(&self.shape, [&self.strides], [self.offset], |[o]| {
            dst[i] = data[o];
            i += 1;
        });
    }

    /// The elements in row-major order, as a `Vec` of the array's element type.
    ///
    /// Panics when `T` is not the array's dtype.
    #[track_caller]
    pub fn to_vec<T: Element>(&self) -> Vec<T> {
        self.to_host("to_vec").values::<T>("to_vec").into_owned()
    }

    /// `self` when on the host, else a host copy: how the reads that hand elements to the
    /// caller (`to_vec`, `item`, `Display`) reach a device array. Kernels never use it, so an
    /// op without a kernel for a device fails instead of moving its operands silently.
    #[track_caller]
    pub(crate) fn to_host(&self, op: &str) -> std::borrow::Cow<'_, Array> {
        if self.device().is_cpu() {
            return std::borrow::Cow::Borrowed(self);
        }
        match self.to_device(Device::Cpu) {
            Ok(a) => std::borrow::Cow::Owned(a),
            Err(e) => fail(op, format_args!("reading the array back to the host: {e}")),
        }
    }

    /// True when both arrays have the same shape, dtype and elements bit for bit (so NaNs
    /// with the same payload are equal, and `0.0` differs from `-0.0`). Layout is ignored.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let a = Array::from_vec(vec![1.0f64, f64::NAN], &[2]);
    /// assert!(a.bit_eq(&a.clone()));
    /// assert!(!a.bit_eq(&Array::from_vec(vec![1.0f64, 2.0], &[2])));
    /// ```
    pub fn bit_eq(&self, other: &Array) -> bool {
        if self.shape() != other.shape() || self.dtype() != other.dtype() {
            return false;
        }
        if self.storage_id() == other.storage_id()
            && self.offset == other.offset
            && self.strides == other.strides
        {
            return true;
        }
        let (this, other) = (self.to_host("bit_eq"), other.to_host("bit_eq"));
        let this = this.as_ref();
        match this.dtype() {
            DType::F32 => {
                let (x, y) = (this.values::<f32>("bit_eq"), other.values::<f32>("bit_eq"));
                x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits())
            }
            DType::F64 => {
                let (x, y) = (this.values::<f64>("bit_eq"), other.values::<f64>("bit_eq"));
                x.iter()
                    .zip(y.iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits())
            }
            DType::I64 => this.values::<i64>("bit_eq") == other.values::<i64>("bit_eq"),
            DType::Bool => this.values::<bool>("bit_eq") == other.values::<bool>("bit_eq"),
        }
    }

    /// The elements converted to `f64`, whatever the dtype.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let host = self.to_host("to_f64_vec");
        dispatch_any!(self.dtype(), T => host.values::<T>("to_f64_vec").iter().map(|v| v.to_f64()).collect())
    }

    /// The single element of a one-element array.
    ///
    /// Panics when the array has more or fewer than one element, or `T` is not its dtype.
    #[track_caller]
    pub fn item<T: Element>(&self) -> T {
        if self.numel() != 1 {
            fail(
                "item",
                format_args!(
                    "needs exactly one element, the array has shape {} ({} elements)",
                    fmt_shape(self.shape()),
                    self.numel()
                ),
            )
        }
        let host = self.to_host("item");
        host.storage_slice::<T>("item")[host.offset]
    }

    /// The single element as `f64`, whatever the dtype.
    #[track_caller]
    pub fn item_f64(&self) -> f64 {
        dispatch_any!(self.dtype(), T => self.item::<T>().to_f64())
    }

    // ----- output buffers -----

    /// Makes `self` a contiguous, unshared buffer of `shape` and `dtype` and returns its
    /// elements for writing. This is how every `*_into` kernel receives its output:
    /// `out` must already have the result's shape and dtype; when its storage is shared with
    /// other arrays (or it is a view), it gets a fresh buffer so the others never change.
    #[track_caller]
    pub(crate) fn out_slice<T: Element>(&mut self, shape: &[usize], op: &str) -> &mut [T] {
        if !crate::layout::same_shape(&self.shape, shape) || self.dtype() != T::DTYPE {
            fail(
                op,
                format_args!(
                    "output array has shape {} and dtype {}, the result needs shape {} and \
                     dtype {}",
                    fmt_shape(&self.shape),
                    self.dtype(),
                    fmt_shape(shape),
                    T::DTYPE
                ),
            )
        }
        let n = self.numel();
        let whole = self.offset == 0 && self.is_contiguous() && self.storage.len() == n;
        // The counts are plain loads; `get_mut` (an atomic read-modify-write, a good part of
        // a small op's time) then runs once. With `&mut self` holding the only strong handle
        // and no weak one, nothing can share the storage between the test and `get_mut`.
        let unshared = Arc::strong_count(&self.storage) == 1 && Arc::weak_count(&self.storage) == 0;
        if !whole || !unshared || !self.device().is_cpu() {
            *self = Array::from_buffer(Buffer::for_overwrite(T::DTYPE, n), shape);
        }
        let storage = Arc::get_mut(&mut self.storage).expect("unshared, checked or fresh");
        let buffer = storage.cpu_mut().expect("on the host, checked or fresh");
        T::slice_mut(buffer).expect("dtype checked above")
    }

    /// Whether `self` is the only handle on a contiguous host buffer of exactly its elements
    /// (so a kernel may write its result over it, as
    /// [`Program::run_over`](crate::Program::run_over) does).
    ///
    /// ```
    /// use ferrograd_array::{Array, DType};
    /// let a = Array::zeros(&[3, 4], DType::F32);
    /// assert!(a.is_unique_buffer());
    /// let b = a.clone();
    /// assert!(!a.is_unique_buffer() && !b.t().is_unique_buffer());
    /// ```
    pub fn is_unique_buffer(&self) -> bool {
        self.offset == 0
            && self.is_contiguous()
            && self.storage.len() == self.numel()
            && Arc::strong_count(&self.storage) == 1
            && Arc::weak_count(&self.storage) == 0
            && self.device().is_cpu()
    }

    /// Makes `self` the only handle on a contiguous buffer of exactly its elements (copying
    /// when it is a view or shared), so a kernel may update it in place.
    pub(crate) fn make_unique(&mut self) {
        let n = self.numel();
        let whole = self.offset == 0 && self.is_contiguous() && self.storage.len() == n;
        if !whole || Arc::get_mut(&mut self.storage).is_none() {
            *self = self.copy();
        }
    }

    /// All the elements of a host array that [`make_unique`](Array::make_unique) made the
    /// only handle on its contiguous buffer, for writing.
    pub(crate) fn unique_slice_mut<T: Element>(&mut self) -> &mut [T] {
        let storage = Arc::get_mut(&mut self.storage).expect("made unique first");
        let buffer = storage.cpu_mut().expect("a host array");
        T::slice_mut(buffer).expect("the array's own dtype")
    }

    /// A contiguous host array whose elements are all about to be written: a freed buffer
    /// of its size from the cache of freed buffers, with whatever values it holds, or a
    /// fresh zeroed one. For a buffer filled piece by piece (see
    /// [`cat_into_at`](Array::cat_into_at)), where zeroing it first would cost a pass.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType};
    /// let mut a = Array::for_overwrite(&[2, 3], DType::F32);
    /// let row = Array::from_vec(vec![1.0f32, 2.0, 3.0], &[1, 3]);
    /// Array::cat_into_at(&[&row, &row], 0, &mut a, 0);
    /// assert_eq!(a.to_vec::<f32>(), [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
    /// ```
    pub fn for_overwrite(shape: &[usize], dtype: DType) -> Array {
        Array::empty(shape, dtype)
    }

    /// A contiguous array for a kernel to fill: every element must be written (its contents
    /// may be a reused buffer's old values).
    pub(crate) fn empty(shape: &[usize], dtype: DType) -> Array {
        Array::from_buffer(Buffer::for_overwrite(dtype, numel(shape)), shape)
    }

    /// [`empty`](Array::empty) on `device`.
    #[track_caller]
    pub(crate) fn empty_on(shape: &[usize], dtype: DType, device: Device) -> Array {
        match device {
            Device::Cpu => Array::empty(shape, dtype),
            #[cfg(feature = "cuda")]
            Device::Cuda(n) => {
                let buffer = crate::cuda::gpu(n)
                    .and_then(|g| g.alloc(dtype, numel(shape)))
                    .unwrap_or_else(|e| crate::cuda::fail("allocating", e));
                Array::from_cuda(buffer, shape)
            }
            #[cfg(not(feature = "cuda"))]
            Device::Cuda(_) => unreachable!("no device arrays without the cuda feature"),
        }
    }

    /// A contiguous copy (or `self` when already contiguous with offset 0 over its storage).
    pub fn contiguous(&self) -> Array {
        if self.is_contiguous() {
            return self.clone();
        }
        let mut out = Array::empty_on(&self.shape, self.dtype(), self.device());
        self.contiguous_into(&mut out);
        out
    }

    /// Copies the elements into `out` (same shape and dtype), row-major.
    #[track_caller]
    pub fn contiguous_into(&self, out: &mut Array) {
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            return crate::cuda::elementwise::cast(self, self.dtype(), out, "contiguous_into");
        }
        dispatch_any!(self.dtype(), T => {
            let data = self.storage_slice::<T>("contiguous");
            let dst = out.out_slice::<T>(&self.shape, "contiguous_into");
            self.copy_to_slice(data, dst);
        })
    }

    /// A row-major copy that owns fresh storage, whatever the layout of `self`.
    pub fn copy(&self) -> Array {
        let mut out = Array::empty_on(&self.shape, self.dtype(), self.device());
        self.contiguous_into(&mut out);
        out
    }
}

/// A weak handle to an array's storage (see [`Array::storage_ref`]).
#[doc(hidden)]
#[derive(Clone)]
pub struct StorageRef(std::sync::Weak<Storage>);

impl StorageRef {
    /// The identity, equal to [`Array::storage_id`] of the arrays sharing the storage.
    pub fn id(&self) -> usize {
        std::sync::Weak::as_ptr(&self.0) as usize
    }
}

impl std::fmt::Debug for Array {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
