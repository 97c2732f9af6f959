//! Where an array's elements live, and what can go wrong there.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Array;

/// The device that holds an array's storage.
///
/// `Device::Cuda(n)` names the `n`-th NVIDIA GPU. The variant exists in every build, so code
/// that names it compiles everywhere; moving an array there
/// ([`Array::to_device`](crate::Array::to_device)) needs the crate's `cuda` feature, a CUDA
/// driver and that GPU, and says which is missing as a [`DeviceError`].
///
/// ```
/// use ferrograd_array::Device;
/// assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
/// assert!(Device::available().contains(&Device::Cpu));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Device {
    /// Host memory.
    #[default]
    Cpu,
    /// The NVIDIA GPU of this ordinal (as `nvidia-smi` and `CUDA_VISIBLE_DEVICES` number
    /// them).
    Cuda(usize),
}

impl Device {
    /// True for [`Device::Cpu`].
    pub fn is_cpu(self) -> bool {
        self == Device::Cpu
    }

    /// The devices this process can use: the CPU, then every CUDA device the driver reports
    /// (none when the crate is built without the `cuda` feature or no driver loads). Tests
    /// run their bodies on each.
    pub fn available() -> Vec<Device> {
        let mut devices = vec![Device::Cpu];
        devices.extend((0..Device::cuda_count()).map(Device::Cuda));
        devices
    }

    /// How many CUDA devices the driver reports: 0 without the `cuda` feature, without a
    /// driver, or without a GPU.
    pub fn cuda_count() -> usize {
        #[cfg(feature = "cuda")]
        {
            crate::cuda::device_count()
        }
        #[cfg(not(feature = "cuda"))]
        {
            0
        }
    }
}

/// Whether the GPU kernels that add into repeated positions do so in a fixed order; see
/// [`set_deterministic`].
static DETERMINISTIC: AtomicBool = AtomicBool::new(false);

/// Makes the GPU's scatter-adds deterministic (`true`) or fast (`false`, the default), for the
/// whole process, and returns the previous setting: the counterpart of PyTorch's
/// `torch.use_deterministic_algorithms`.
///
/// On the CPU every op gives the same bits from run to run, on any number of threads,
/// whatever this says. On a GPU, [`Array::scatter_add`](crate::Array::scatter_add),
/// [`index_add`](crate::Array::index_add), an accumulating
/// [`index_put_add`](crate::Array::index_put_add) and
/// [`max_pool2d_backward`](crate::Array::max_pool2d_backward) (the gradients of `gather`,
/// `index_select`, an embedding, indexing and max pooling) add floats that land on one
/// position with atomic adds by default, in an order that varies from run to run, as
/// PyTorch's kernels do; the last bits of such a sum then vary. With this set they sort the
/// source elements by where they land (a stable sort on the GPU) and add each position's
/// values in the source's order, the CPU's loop, so they give the same bits on every run and
/// the CPU's bits. That costs a sort of the source positions (`log²(n)/2` passes over them),
/// several times the atomic kernels' time; `index_add` (an embedding's gradient) sorts only
/// its index's rows, not every element of them. Integer sums are exact and never sorted.
///
/// ```
/// use ferrograd_array::{deterministic, set_deterministic};
/// let before = set_deterministic(true);
/// assert!(deterministic());
/// set_deterministic(before);
/// ```
pub fn set_deterministic(on: bool) -> bool {
    DETERMINISTIC.swap(on, Ordering::Relaxed)
}

/// Whether the GPU's scatter-adds run in their deterministic form ([`set_deterministic`]).
pub fn deterministic() -> bool {
    DETERMINISTIC.load(Ordering::Relaxed)
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Why an array could not be moved to, made on, or read back from a device.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The crate was built without its `cuda` feature.
    #[error(
        "{device}: this build of ferrograd has no CUDA support; build with the `cuda` feature \
         (`cargo build --features ferrograd/cuda`)"
    )]
    NotBuilt {
        /// The device asked for.
        device: Device,
    },
    /// No CUDA driver library (`libcuda.so`) could be loaded.
    #[error(
        "{device}: no CUDA driver could be loaded (libcuda.so, from the NVIDIA driver); is \
         this a machine with an NVIDIA GPU?"
    )]
    NoDriver {
        /// The device asked for.
        device: Device,
    },
    /// The driver loaded but has no device of that ordinal.
    #[error("{device}: no such device: the CUDA driver reports {count} device(s)")]
    NoSuchDevice {
        /// The device asked for.
        device: Device,
        /// How many devices the driver reports.
        count: usize,
    },
    /// An allocation failed for want of device memory.
    #[error("{device}: out of memory allocating {bytes} bytes")]
    OutOfMemory {
        /// The device.
        device: Device,
        /// The size asked for.
        bytes: usize,
    },
    /// Any other error the CUDA driver, NVRTC or cuBLAS reported.
    #[error("{device}: {op}: {message}")]
    Cuda {
        /// The device.
        device: Device,
        /// What was being done.
        op: String,
        /// The library's own description.
        message: String,
    },
    /// No NVRTC library (`libnvrtc.so`) could be loaded to compile the kernels.
    #[error(
        "no NVRTC library could be loaded (libnvrtc.so.12, from the CUDA toolkit or the PyPI \
         package nvidia-cuda-nvrtc-cu12): put its directory on LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    /// NVRTC rejected a kernel's source (a bug in ferrograd: please report it).
    #[error("NVRTC could not compile kernel `{kernel}`:\n{log}")]
    Compile {
        /// The kernel's name.
        kernel: String,
        /// NVRTC's log.
        log: String,
    },
}

impl Array {
    /// The array on `device`: `self` (sharing storage) when it is already there, else a
    /// contiguous copy. Moving to a GPU and back is how a whole model changes device (see
    /// `ferrograd::to_device` for trees); ops take their operands on one device and give
    /// their result there.
    ///
    /// ```
    /// use ferrograd_array::{Array, Device, DeviceError};
    /// let a = Array::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert!(a.to_device(Device::Cpu).unwrap().shares_storage(&a));
    /// match a.to_device(Device::Cuda(0)) {
    ///     Ok(g) => assert_eq!(g.to_vec::<f32>(), vec![1.0, 2.0]), // read back to the host
    ///     Err(DeviceError::NotBuilt { .. } | DeviceError::NoDriver { .. }) => {} // no CUDA here
    ///     Err(e) => println!("{e}"),
    /// }
    /// ```
    pub fn to_device(&self, device: Device) -> Result<Array, DeviceError> {
        if device == self.device() {
            return Ok(self.clone());
        }
        #[cfg(feature = "cuda")]
        {
            crate::cuda::transfer(self, device)
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(DeviceError::NotBuilt { device })
        }
    }
}
