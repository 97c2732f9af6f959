//! Constructors: filled arrays, ranges, identity.

use crate::dtype::{dispatch_any, dispatch_number, Element};
use crate::error::fail;
use crate::layout::numel;
use crate::{Array, DType};

impl Array {
    /// An array of `shape` filled with zeros (`false` for bool).
    pub fn zeros(shape: &[usize], dtype: DType) -> Array {
        Array::from_buffer(crate::storage::Buffer::zeros(dtype, numel(shape)), shape)
    }

    /// An array of `shape` filled with ones (`true` for bool).
    pub fn ones(shape: &[usize], dtype: DType) -> Array {
        Array::full(shape, 1.0, dtype)
    }

    /// An array of `shape` filled with `value` (converted to `dtype`).
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Array {
        dispatch_any!(dtype, T => Array::from_vec(vec![T::from_f64(value); numel(shape)], shape))
    }

    /// Zeros with the shape, dtype and device of `other`.
    #[track_caller]
    pub fn zeros_like(other: &Array) -> Array {
        Array::full_like(other, 0.0)
    }

    /// Ones with the shape, dtype and device of `other`.
    #[track_caller]
    pub fn ones_like(other: &Array) -> Array {
        Array::full_like(other, 1.0)
    }

    /// `value` with the shape, dtype and device of `other`.
    #[track_caller]
    pub fn full_like(other: &Array, value: f64) -> Array {
        let device = other.device();
        if device.is_cpu() {
            return Array::full(other.shape(), value, other.dtype());
        }
        // one element moved, then broadcast into place on the device
        match Array::full(&[], value, other.dtype()).to_device(device) {
            Ok(one) => one.expand(other.shape()).contiguous(),
            Err(e) => crate::error::fail("full_like", e),
        }
    }

    /// The 1-d array `start, start + step, ...` up to but excluding `end`.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType};
    /// assert_eq!(Array::arange(0.0, 5.0, 2.0, DType::I64).to_vec::<i64>(), vec![0, 2, 4]);
    /// ```
    #[track_caller]
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Array {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            fail(
                "arange",
                format_args!("needs finite bounds and a non-zero step, got start {start}, end {end}, step {step}"),
            )
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        dispatch_number!(dtype, "arange", T => Array::from_vec(
            (0..n).map(|i| T::from_f64(start + i as f64 * step)).collect(), &[n]))
    }

    /// `steps` evenly spaced values from `start` to `end`, both included.
    #[track_caller]
    pub fn linspace(start: f64, end: f64, steps: usize, dtype: DType) -> Array {
        let step = if steps > 1 {
            (end - start) / (steps - 1) as f64
        } else {
            0.0
        };
        dispatch_number!(dtype, "linspace", T => Array::from_vec(
            (0..steps).map(|i| {
                // The last value is `end` exactly, not `start + (steps-1)*step` rounded.
                T::from_f64(if i + 1 == steps && steps > 1 { end } else { start + i as f64 * step })
            }).collect(), &[steps]))
    }

    /// The `n`x`n` identity matrix.
    pub fn eye(n: usize, dtype: DType) -> Array {
        dispatch_any!(dtype, T => {
            let mut v = vec![T::from_f64(0.0); n * n];
            for i in 0..n {
                v[i * n + i] = T::from_f64(1.0);
            }
            Array::from_vec(v, &[n, n])
        })
    }

    /// Converts the elements to another dtype (floats to integers truncate toward zero;
    /// anything non-zero becomes `true`). Returns `self` unchanged when the dtype matches.
    pub fn to_dtype(&self, dtype: DType) -> Array {
        if dtype == self.dtype() {
            return self.clone();
        }
        let mut out = Array::empty_on(self.shape(), dtype, self.device());
        self.to_dtype_into(&mut out);
        out
    }

    /// [`to_dtype`](Array::to_dtype) into `out`, whose dtype picks the target type.
    #[track_caller]
    pub fn to_dtype_into(&self, out: &mut Array) {
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            return crate::cuda::elementwise::cast(self, out.dtype(), out, "to_dtype_into");
        }
        fn cast<S: Element, D: Element>(a: &Array, out: &mut Array) {
            let src = a.values::<S>("to_dtype");
            let dst = out.out_slice::<D>(a.shape(), "to_dtype_into");
            for (d, s) in dst.iter_mut().zip(src.iter()) {
                *d = D::from_f64(s.to_f64());
            }
        }
        dispatch_any!(self.dtype(), S => dispatch_any!(out.dtype(), D => cast::<S, D>(self, out)))
    }
}
