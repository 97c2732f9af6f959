//! The CUDA backend (the `cuda` feature): device buffers, one context and stream per GPU,
//! kernels generated as CUDA C from the same op tables as the CPU loops ([`MapFn`],
//! [`ZipFn`]) and compiled at run time by NVRTC, products on cuBLAS.
//!
//! The driver, NVRTC and cuBLAS are loaded when first used (cudarc's dynamic loading), so
//! the crate builds and its CPU paths run on machines with no CUDA at all; what is missing
//! surfaces as a [`DeviceError`].
//!
//! Every op on a device runs on that device's one stream, in order, asynchronously: the host
//! waits only when it reads elements back (`to_vec`, `item`, `to_device(Device::Cpu)`).
//! Allocations come from the driver's stream-ordered pool (`cuMemAllocAsync`), which keeps
//! freed memory for reuse instead of returning it to the device: a caching allocator whose
//! frees are ordered after the kernels that read the buffer.
//!
//! [`MapFn`]: crate::MapFn
//! [`ZipFn`]: crate::ZipFn

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod fused;
#[cfg(test)]
mod host_test;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod pool;
pub(crate) mod reduce;
pub(crate) mod softmax;
pub(crate) mod source;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DriverError,
};

use crate::array::Array;
use crate::{DType, Device, DeviceError};

/// A typed device buffer.
pub(crate) enum Slice {
    F32(CudaSlice<f32>),
    F64(CudaSlice<f64>),
    I64(CudaSlice<i64>),
    Bool(CudaSlice<bool>),
}

/// The elements of an array on a GPU.
pub(crate) struct CudaBuffer {
    pub(crate) ordinal: usize,
    pub(crate) data: Slice,
}

impl fmt::Debug for CudaBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CudaBuffer(cuda:{}, {} x {})",
            self.ordinal,
            self.len(),
            self.dtype()
        )
    }
}

/// Runs `$body` with `$s` bound to the typed slice, whatever its element type.
macro_rules! each_slice {
    ($slice:expr, $s:ident => $body:expr) => {
        match $slice {
            $crate::cuda::Slice::F32($s) => $body,
            $crate::cuda::Slice::F64($s) => $body,
            $crate::cuda::Slice::I64($s) => $body,
            $crate::cuda::Slice::Bool($s) => $body,
        }
    };
}

impl CudaBuffer {
    pub(crate) fn dtype(&self) -> DType {
        match self.data {
            Slice::F32(_) => DType::F32,
            Slice::F64(_) => DType::F64,
            Slice::I64(_) => DType::I64,
            Slice::Bool(_) => DType::Bool,
        }
    }

    pub(crate) fn len(&self) -> usize {
        each_slice!(&self.data, s => s.len())
    }

    /// Sets every element to zero (asynchronously, on the stream).
    pub(crate) fn zero(&mut self, gpu: &Gpu) -> Result<(), DeviceError> {
        each_slice!(&mut self.data, s => gpu.stream.memset_zeros(s))
            .map_err(|e| driver_error(gpu.device, "zeroing", e))
    }

    /// The device address of element `offset`, for a kernel argument. The one stream per
    /// device orders every use, so no event is recorded (event tracking is off).
    pub(crate) fn ptr(&self, gpu: &Gpu, offset: usize) -> u64 {
        let size = self.dtype().size_in_bytes() as u64;
        each_slice!(&self.data, s => {
            let (p, _sync) = s.device_ptr(&gpu.stream);
            p + offset as u64 * size
        })
    }
}

/// One GPU: its context, the stream every op runs on, cuBLAS, and the compiled kernels.
pub(crate) struct Gpu {
    pub(crate) device: Device,
    pub(crate) stream: Arc<CudaStream>,
    /// `compute_XY` of the device, what NVRTC compiles for.
    arch: &'static str,
    blas: OnceLock<Result<cudarc::cublas::CudaBlas, String>>,
    kernels: Mutex<HashMap<String, CudaFunction>>,
}

static GPUS: Mutex<Vec<Option<Arc<Gpu>>>> = Mutex::new(Vec::new());

/// Whether the driver library loads (checked once).
fn driver_present() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // SAFETY: only tries to open the library; no CUDA function is called.
    *PRESENT.get_or_init(|| unsafe { sys::is_culib_present() })
}

/// How many CUDA devices the driver reports (0 without a driver).
pub(crate) fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

/// The GPU of `ordinal`, its context made on first use.
pub(crate) fn gpu(ordinal: usize) -> Result<Arc<Gpu>, DeviceError> {
    let device = Device::Cuda(ordinal);
    let mut gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Some(g)) = gpus.get(ordinal) {
        return Ok(Arc::clone(g));
    }
    if !driver_present() {
        return Err(DeviceError::NoDriver { device });
    }
    let count = device_count();
    if ordinal >= count {
        return Err(DeviceError::NoSuchDevice { device, count });
    }
    let ctx =
        CudaContext::new(ordinal).map_err(|e| driver_error(device, "creating a context", e))?;
    // SAFETY: every op on this context runs on its one default stream, in order, so the
    // events cudarc would record to order several streams are not needed.
    unsafe { ctx.disable_event_tracking() };
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| driver_error(device, "reading the compute capability", e))?;
    let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
    if ctx.has_async_alloc() {
        pool_attribute(&ctx, PoolSetting::KeepFreed)
            .map_err(|e| driver_error(device, "configuring the memory pool", e))?;
    }
    let g = Arc::new(Gpu {
        device,
        stream: ctx.default_stream(),
        arch,
        blas: OnceLock::new(),
        kernels: Mutex::new(HashMap::new()),
    });
    if gpus.len() <= ordinal {
        gpus.resize(ordinal + 1, None);
    }
    gpus[ordinal] = Some(Arc::clone(&g));
    Ok(g)
}

/// What to do with a device's stream-ordered memory pool.
#[derive(Clone, Copy)]
enum PoolSetting {
    /// Keep freed memory for reuse (the driver's default returns it at every
    /// synchronisation, and an allocation after that costs a call into the driver).
    KeepFreed,
    /// Give back everything not in use.
    Trim,
}

/// Applies `setting` to the default memory pool of `ctx`'s device.
fn pool_attribute(ctx: &CudaContext, setting: PoolSetting) -> Result<(), DriverError> {
    ctx.bind_to_thread()?;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: `pool` is a valid place for the handle and the device is the context's own;
    // the threshold is a u64, as CU_MEMPOOL_ATTR_RELEASE_THRESHOLD takes.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()).result()?;
        match setting {
            PoolSetting::KeepFreed => {
                let mut threshold = u64::MAX;
                sys::cuMemPoolSetAttribute(
                    pool,
                    sys::CUmemPool_attribute_enum::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    (&mut threshold as *mut u64).cast(),
                )
                .result()
            }
            PoolSetting::Trim => sys::cuMemPoolTrimTo(pool, 0).result(),
        }
    }
}

/// Gives the memory the pools of every GPU in use keep for reuse back to the devices (what
/// `release_cached_memory` does for GPUs).
pub(crate) fn release_pools() {
    let gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    for g in gpus.iter().flatten() {
        let ctx = g.stream.context();
        // freed buffers return to the pool once the stream has passed their frees
        if g.stream.synchronize().is_ok() && ctx.has_async_alloc() {
            let _ = pool_attribute(ctx, PoolSetting::Trim);
        }
    }
}

/// A driver error as a [`DeviceError`] (out of memory gets its own variant where the size
/// is known: see [`alloc`]).
pub(crate) fn driver_error(device: Device, op: &str, e: DriverError) -> DeviceError {
    DeviceError::Cuda {
        device,
        op: op.to_string(),
        message: e.to_string(),
    }
}

/// Panics with a device error inside an op (ops return arrays, not `Result`s).
#[track_caller]
pub(crate) fn fail(op: &str, e: DeviceError) -> ! {
    crate::error::fail(op, e)
}

impl Gpu {
    /// cuBLAS on this GPU's stream, made on first use.
    pub(crate) fn blas(&self) -> Result<&cudarc::cublas::CudaBlas, DeviceError> {
        self.blas
            .get_or_init(|| {
                cudarc::cublas::CudaBlas::new(Arc::clone(&self.stream)).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| DeviceError::Cuda {
                device: self.device,
                op: "loading cuBLAS".into(),
                message: message.clone(),
            })
    }

    /// The kernel `name` from `source` (generated by [`source`]), compiled by NVRTC on first
    /// use and cached for the process.
    pub(crate) fn kernel(
        &self,
        name: &str,
        source: impl FnOnce() -> String,
    ) -> Result<CudaFunction, DeviceError> {
        let mut kernels = self.kernels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = kernels.get(name) {
            return Ok(f.clone());
        }
        let ptx = source::compile(name, &source(), self.arch)?;
        let module = self
            .stream
            .context()
            .load_module(ptx)
            .map_err(|e| DeviceError::Cuda {
                device: self.device,
                op: format!("loading kernel `{name}`"),
                message: format!(
                    "{e} (PTX from an NVRTC newer than the driver does not load: use the NVRTC \
                     of the driver's CUDA version)"
                ),
            })?;
        let f = module
            .load_function(name)
            .map_err(|e| driver_error(self.device, "loading a kernel", e))?;
        kernels.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// An uninitialised buffer of `len` elements (every kernel that takes one writes it
    /// whole).
    pub(crate) fn alloc(&self, dtype: DType, len: usize) -> Result<CudaBuffer, DeviceError> {
        let oom = |e: DriverError| {
            if e.0 == sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY {
                DeviceError::OutOfMemory {
                    device: self.device,
                    bytes: len * dtype.size_in_bytes(),
                }
            } else {
                driver_error(self.device, "allocating", e)
            }
        };
        let len = len.max(1);
        // SAFETY: the buffer is handed only to kernels that write every element before
        // anything reads it.
        let data = unsafe {
            match dtype {
                DType::F32 => Slice::F32(self.stream.alloc::<f32>(len).map_err(oom)?),
                DType::F64 => Slice::F64(self.stream.alloc::<f64>(len).map_err(oom)?),
                DType::I64 => Slice::I64(self.stream.alloc::<i64>(len).map_err(oom)?),
                DType::Bool => Slice::Bool(self.stream.alloc::<bool>(len).map_err(oom)?),
            }
        };
        Ok(CudaBuffer {
            ordinal: self.ordinal(),
            data,
        })
    }

    fn ordinal(&self) -> usize {
        match self.device {
            Device::Cuda(n) => n,
            Device::Cpu => unreachable!("a Gpu is a CUDA device"),
        }
    }
}

/// `array` moved to `device` (at least one of the two is a GPU).
pub(crate) fn transfer(array: &Array, device: Device) -> Result<Array, DeviceError> {
    match (array.device(), device) {
        (Device::Cpu, Device::Cuda(n)) => upload(array, &*gpu(n)?),
        (Device::Cuda(_), Device::Cpu) => download(array),
        (Device::Cuda(_), Device::Cuda(_)) => transfer(&download(array)?, device),
        (Device::Cpu, Device::Cpu) => Ok(array.clone()),
    }
}

/// A host array's elements (row-major) copied into a new buffer on `gpu`.
fn upload(array: &Array, gpu: &Gpu) -> Result<Array, DeviceError> {
    if array.numel() == 0 {
        return Ok(Array::from_cuda(
            gpu.alloc(array.dtype(), 0)?,
            array.shape(),
        ));
    }
    let err = |e| driver_error(gpu.device, "copying to the device", e);
    let data = match array.dtype() {
        DType::F32 => Slice::F32(
            gpu.stream
                .clone_htod(&*array.values::<f32>("to_device"))
                .map_err(err)?,
        ),
        DType::F64 => Slice::F64(
            gpu.stream
                .clone_htod(&*array.values::<f64>("to_device"))
                .map_err(err)?,
        ),
        DType::I64 => Slice::I64(
            gpu.stream
                .clone_htod(&*array.values::<i64>("to_device"))
                .map_err(err)?,
        ),
        DType::Bool => Slice::Bool(
            gpu.stream
                .clone_htod(&*array.values::<bool>("to_device"))
                .map_err(err)?,
        ),
    };
    Ok(Array::from_cuda(
        CudaBuffer {
            ordinal: gpu.ordinal(),
            data,
        },
        array.shape(),
    ))
}

/// A device array copied to the host: the whole storage comes back, then the view's layout
/// picks its elements.
fn download(array: &Array) -> Result<Array, DeviceError> {
    let buffer = array.cuda_buffer().expect("a device array");
    let gpu = gpu(buffer.ordinal)?;
    let err = |e| driver_error(gpu.device, "copying to the host", e);
    let host = each_slice!(&buffer.data, s => {
        crate::dtype::Element::into_buffer(gpu.stream.clone_dtoh(s).map_err(err)?)
    });
    let whole = Array::from_buffer(host, &[buffer.len()]);
    Ok(whole
        .with_layout(array.shape().into(), array.strides().into(), array.offset())
        .contiguous())
}
