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

    /// Zeros with this tensor's shape, dtype and device.
    #[track_caller]
    pub fn zeros_like(&self) -> Tensor {
        Tensor::new(Array::zeros_like(self.data()))
    }

    /// Ones with this tensor's shape, dtype and device.
    #[track_caller]
    pub fn ones_like(&self) -> Tensor {
        Tensor::new(Array::ones_like(self.data()))
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

    /// Class indices drawn from the categorical distributions in the last dim of `self`
    /// (`[C]` or `[N, C]` non-negative weights, not necessarily normalized): `num_samples`
    /// per row, i64 `[num_samples]` or `[N, num_samples]` (PyTorch's `torch.multinomial`).
    /// With `replacement` each draw inverts the cumulative distribution at a uniform number;
    /// without, the Gumbel-top-k trick picks `num_samples` distinct classes with the law of
    /// drawing one after another and renormalizing.
    ///
    /// Built from uniform draws and tensor ops, so in optimize mode a replay draws anew from
    /// `rng` for the current weights. Panics on negative weights, a row without positive
    /// weight, or (without replacement) more samples than classes with positive weight.
    ///
    /// ```
    /// use ferrograd::{Generator, Tensor};
    /// let mut rng = Generator::new(0);
    /// let p = Tensor::from_vec(vec![0.0f64, 0.2, 0.8], &[3]);
    /// let k = p.multinomial(&mut rng, 1000, true).to_vec::<i64>();
    /// assert!(!k.contains(&0)); // zero weight, never drawn
    /// let twos = k.iter().filter(|&&c| c == 2).count();
    /// assert!((700..900).contains(&twos));
    /// let all = p.multinomial(&mut rng, 2, false).to_vec::<i64>();
    /// assert!(all.contains(&1) && all.contains(&2));
    /// ```
    #[track_caller]
    pub fn multinomial(
        &self,
        rng: &mut Generator,
        num_samples: usize,
        replacement: bool,
    ) -> Tensor {
        let site = ferrograd_array::Site(std::panic::Location::caller());
        let fail = |why: String| -> ! {
            panic!(
                "ferrograd: multinomial: {why} (weights of shape {:?}) (at {site})",
                self.shape()
            )
        };
        if !(1..=2).contains(&self.ndim()) || !self.dtype().is_float() {
            fail("expects float weights [C] or [N, C]".to_string());
        }
        let weights = self.detach().to_dtype(DType::F64);
        let c = weights.size(-1);
        // checks counted with tensor ops: in optimize mode the guards are on the counts
        let count = crate::ops::count_true;
        if count(
            &weights
                .lt_scalar(0.0)
                .logical_or(&weights.isfinite().logical_not()),
        ) > 0
        {
            fail("weights must be finite and non-negative".to_string());
        }
        let positive = weights
            .gt_scalar(0.0)
            .to_dtype(DType::I64)
            .sum_dim(-1, false);
        if count(&positive.eq_scalar(0.0)) > 0 {
            fail("a row has no positive weight".to_string());
        }
        if !replacement {
            if num_samples > c {
                fail(format!(
                    "{num_samples} samples without replacement from {c} classes"
                ));
            }
            if count(&positive.lt_scalar(num_samples as f64)) > 0 {
                fail(format!(
                    "{num_samples} samples without replacement, but a row has fewer classes of \
                     positive weight"
                ));
            }
        }
        let rows = if self.ndim() == 1 { 1 } else { self.size(0) };
        let w = weights.reshape(&[rows, c]);
        let out = if replacement {
            // index = the number of cumulative probabilities at or below u
            let cdf = &w.cumsum(1) / &w.sum_dim(1, true);
            let u = Tensor::rand(rng, &[rows, num_samples, 1], DType::F64);
            let below = cdf
                .unsqueeze(1)
                .le(&u)
                .to_dtype(DType::I64)
                .sum_dim(-1, false);
            below.clamp(None, Some((c - 1) as f64))
        } else {
            // Gumbel-top-k: the classes with the largest log w - log(-log u)
            let u = Tensor::rand(rng, &[rows, c], DType::F64);
            let gumbel = -(-u.log()).log();
            let keys = &w.log() + &gumbel;
            keys.topk(num_samples, 1, true).1
        };
        if self.ndim() == 1 {
            out.reshape(&[num_samples])
        } else {
            out
        }
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
