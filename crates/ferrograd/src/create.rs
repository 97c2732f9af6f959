//! Tensor constructors (concrete data), and random tensors drawn from a [`Generator`].

use crate::compile::capture::{self, Draw};
use crate::{Array, DType, Element, Generator, Tensor};

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

    /// 1 (or `true`) with probability `p`, else 0, drawn from `rng`.
    ///
    /// In optimize mode the draw is a step of the plan: a replay draws anew from the same
    /// generator, passed as an argument of the call, so the same seed gives the same numbers
    /// in direct and compiled mode. (A `Generator`'s own methods draw outside any op: a
    /// function that uses them runs in direct mode.)
    ///
    /// ```
    /// use ferrograd::{DType, Generator, Tensor};
    /// let a = Tensor::rand_bernoulli(&mut Generator::new(3), &[4], 0.5, DType::F32);
    /// let b = Tensor::rand_bernoulli(&mut Generator::new(3), &[4], 0.5, DType::F32);
    /// assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
    /// ```
    #[track_caller]
    pub fn rand_bernoulli(rng: &mut Generator, shape: &[usize], p: f64, dtype: DType) -> Tensor {
        Tensor::draw(rng, Draw::Bernoulli(shape.into(), p, dtype))
    }

    /// Uniform values in `[low, high)` drawn from `rng` (see
    /// [`rand_bernoulli`](Tensor::rand_bernoulli) for optimize mode).
    #[track_caller]
    pub fn rand_uniform(
        rng: &mut Generator,
        shape: &[usize],
        low: f64,
        high: f64,
        dtype: DType,
    ) -> Tensor {
        Tensor::draw(rng, Draw::Uniform(shape.into(), low, high, dtype))
    }

    /// Normal values with the given mean and standard deviation drawn from `rng` (see
    /// [`rand_bernoulli`](Tensor::rand_bernoulli) for optimize mode).
    #[track_caller]
    pub fn rand_normal(
        rng: &mut Generator,
        shape: &[usize],
        mean: f64,
        std: f64,
        dtype: DType,
    ) -> Tensor {
        Tensor::draw(rng, Draw::Normal(shape.into(), mean, std, dtype))
    }

    /// Standard normal values (PyTorch's `torch.randn`) drawn from `rng` (see
    /// [`rand_bernoulli`](Tensor::rand_bernoulli) for optimize mode).
    ///
    /// ```
    /// use ferrograd::{DType, Generator, Tensor};
    /// let mut rng = Generator::new(0);
    /// let w = Tensor::randn(&mut rng, &[100, 10], DType::F32) * 0.1;
    /// let u = Tensor::rand(&mut rng, &[3], DType::F64);
    /// let k = Tensor::randint(&mut rng, 0, 10, &[5]);
    /// assert_eq!((w.shape(), k.dtype()), (&[100, 10][..], DType::I64));
    /// assert!(u.to_vec::<f64>().iter().all(|&v| (0.0..1.0).contains(&v)));
    /// assert!(k.to_vec::<i64>().iter().all(|&v| (0..10).contains(&v)));
    /// ```
    #[track_caller]
    pub fn randn(rng: &mut Generator, shape: &[usize], dtype: DType) -> Tensor {
        Tensor::rand_normal(rng, shape, 0.0, 1.0, dtype)
    }

    /// Uniform values in `[0, 1)` (PyTorch's `torch.rand`) drawn from `rng`.
    #[track_caller]
    pub fn rand(rng: &mut Generator, shape: &[usize], dtype: DType) -> Tensor {
        Tensor::rand_uniform(rng, shape, 0.0, 1.0, dtype)
    }

    /// Integers in `[low, high)` (i64; PyTorch's `torch.randint`) drawn from `rng`.
    #[track_caller]
    pub fn randint(rng: &mut Generator, low: i64, high: i64, shape: &[usize]) -> Tensor {
        Tensor::rand_uniform(rng, shape, low as f64, high as f64, DType::I64)
    }

    #[track_caller]
    fn draw(rng: &mut Generator, draw: Draw) -> Tensor {
        let out = Tensor::new(draw.sample(rng));
        if capture::active() {
            capture::record_draw(rng, draw, &out, std::panic::Location::caller());
        }
        out
    }
}
