//! Typed element buffers and the device storage that owns them.
//!
//! `Storage` is an enum over devices; CPU kernels reach their data only through
//! `Storage::cpu`/`cpu_mut`, which return `None` for another device's buffer (the one place
//! a CPU kernel meets the device check), and CUDA kernels through `Storage::cuda`.

use crate::recycle::{self, Raw};
use crate::{DType, Device};

/// A CPU buffer of one element type.
#[derive(Clone, Debug)]
#[doc(hidden)]
pub enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl Buffer {
    pub(crate) fn dtype(&self) -> DType {
        match self {
            Buffer::F32(_) => DType::F32,
            Buffer::F64(_) => DType::F64,
            Buffer::I64(_) => DType::I64,
            Buffer::Bool(_) => DType::Bool,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Buffer::F32(v) => v.len(),
            Buffer::F64(v) => v.len(),
            Buffer::I64(v) => v.len(),
            Buffer::Bool(v) => v.len(),
        }
    }

    /// A buffer for a kernel that writes every element: a cached one of the same size as it
    /// is (old values), else a fresh zeroed one.
    pub(crate) fn for_overwrite(dtype: DType, len: usize) -> Buffer {
        match recycle::take(dtype, len) {
            Some(Raw::F32(v)) => Buffer::F32(v),
            Some(Raw::F64(v)) => Buffer::F64(v),
            Some(Raw::I64(v)) => Buffer::I64(v),
            Some(Raw::Bool(v)) => Buffer::Bool(v),
            None => Buffer::fresh_zeros(dtype, len),
        }
    }

    fn fresh_zeros(dtype: DType, len: usize) -> Buffer {
        match dtype {
            DType::F32 => Buffer::F32(vec![0.0; len]),
            DType::F64 => Buffer::F64(vec![0.0; len]),
            DType::I64 => Buffer::I64(vec![0; len]),
            DType::Bool => Buffer::Bool(vec![false; len]),
        }
    }

    /// A zero-filled buffer, reusing a cached one of the same size when there is one.
    pub(crate) fn zeros(dtype: DType, len: usize) -> Buffer {
        if let Some(raw) = recycle::take(dtype, len) {
            return match raw {
                Raw::F32(mut v) => {
                    v.fill(0.0);
                    Buffer::F32(v)
                }
                Raw::F64(mut v) => {
                    v.fill(0.0);
                    Buffer::F64(v)
                }
                Raw::I64(mut v) => {
                    v.fill(0);
                    Buffer::I64(v)
                }
                Raw::Bool(mut v) => {
                    v.fill(false);
                    Buffer::Bool(v)
                }
            };
        }
        Buffer::fresh_zeros(dtype, len)
    }
}

impl Drop for Buffer {
    /// Large buffers go back to the cache of `recycle.rs` for reuse.
    fn drop(&mut self) {
        let raw = match self {
            Buffer::F32(v) => Raw::F32(std::mem::take(v)),
            Buffer::F64(v) => Raw::F64(std::mem::take(v)),
            Buffer::I64(v) => Raw::I64(std::mem::take(v)),
            Buffer::Bool(v) => Raw::Bool(std::mem::take(v)),
        };
        recycle::give(raw);
    }
}

/// The elements of an array, on one device.
#[derive(Debug)]
pub(crate) enum Data {
    Cpu(Buffer),
    #[cfg(feature = "cuda")]
    Cuda(crate::cuda::CudaBuffer),
}

/// An array's elements, and the memory meter that counts them (see [`crate::MemoryMeter`]).
#[derive(Debug)]
pub(crate) struct Storage {
    data: Data,
    meter: Option<crate::memory::Meter>,
}

impl Storage {
    pub(crate) fn cpu_buffer(buffer: Buffer) -> Storage {
        let bytes = buffer.len() * buffer.dtype().size_in_bytes();
        Storage {
            data: Data::Cpu(buffer),
            meter: crate::memory::count(bytes),
        }
    }

    /// Device storage (no memory meter: the meter counts host memory).
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_buffer(buffer: crate::cuda::CudaBuffer) -> Storage {
        Storage {
            data: Data::Cuda(buffer),
            meter: None,
        }
    }

    pub(crate) fn device(&self) -> Device {
        match &self.data {
            Data::Cpu(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Data::Cuda(b) => Device::Cuda(b.ordinal),
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        match &self.data {
            Data::Cpu(b) => b.dtype(),
            #[cfg(feature = "cuda")]
            Data::Cuda(b) => b.dtype(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.data {
            Data::Cpu(b) => b.len(),
            #[cfg(feature = "cuda")]
            Data::Cuda(b) => b.len(),
        }
    }

    /// The host buffer, `None` when the storage is on another device.
    pub(crate) fn cpu(&self) -> Option<&Buffer> {
        match &self.data {
            Data::Cpu(b) => Some(b),
            #[cfg(feature = "cuda")]
            Data::Cuda(_) => None,
        }
    }

    pub(crate) fn cpu_mut(&mut self) -> Option<&mut Buffer> {
        match &mut self.data {
            Data::Cpu(b) => Some(b),
            #[cfg(feature = "cuda")]
            Data::Cuda(_) => None,
        }
    }

    /// The CUDA buffer, `None` when the storage is on the host.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(&self) -> Option<&crate::cuda::CudaBuffer> {
        match &self.data {
            Data::Cuda(b) => Some(b),
            Data::Cpu(_) => None,
        }
    }

    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_mut(&mut self) -> Option<&mut crate::cuda::CudaBuffer> {
        match &mut self.data {
            Data::Cuda(b) => Some(b),
            Data::Cpu(_) => None,
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(m) = self.meter.take() {
            m.release(self.len() * self.dtype().size_in_bytes());
        }
    }
}
