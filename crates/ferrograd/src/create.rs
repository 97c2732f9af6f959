//! Tensor constructors (concrete data).

use crate::{Array, DType, Element, Tensor};

impl Tensor {
    /// A tensor owning `values`, laid out row-major in `shape`.
    #[track_caller]
    pub fn from_vec<T: Element>(values: Vec<T>, shape: &[usize]) -> Tensor {
        Tensor::new(Array::from_vec(values, shape))
    }

    /// A tensor copied from `values`, laid out row-major in `shape`.
    #[track_caller]
    pub fn from_slice<T: Element>(values: &[T], shape: &[usize]) -> Tensor {
        Tensor::new(Array::from_slice(values, shape))
    }

    /// A 0-d tensor holding one value.
    pub fn scalar<T: Element>(value: T) -> Tensor {
        Tensor::new(Array::scalar(value))
    }

    /// Zeros of `shape`.
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::new(Array::zeros(shape, dtype))
    }

    /// Ones of `shape`.
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Tensor::new(Array::ones(shape, dtype))
    }

    /// `value` everywhere in `shape`.
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        Tensor::new(Array::full(shape, value, dtype))
    }

    /// Zeros with this tensor's shape and dtype.
    pub fn zeros_like(&self) -> Tensor {
        Tensor::zeros(self.shape(), self.dtype())
    }

    /// Ones with this tensor's shape and dtype.
    pub fn ones_like(&self) -> Tensor {
        Tensor::ones(self.shape(), self.dtype())
    }

    /// `start, start + step, ...` below `end`.
    #[track_caller]
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Tensor {
        Tensor::new(Array::arange(start, end, step, dtype))
    }

    /// `steps` evenly spaced values from `start` to `end`.
    #[track_caller]
    pub fn linspace(start: f64, end: f64, steps: usize, dtype: DType) -> Tensor {
        Tensor::new(Array::linspace(start, end, steps, dtype))
    }

    /// The identity matrix.
    pub fn eye(n: usize, dtype: DType) -> Tensor {
        Tensor::new(Array::eye(n, dtype))
    }
}
