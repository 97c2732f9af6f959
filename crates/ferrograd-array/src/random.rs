//! Seedable random fills. A [`Generator`] is a ChaCha8 stream: the same seed gives the same
//! numbers on every machine and every run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};

use crate::dtype::{dispatch_any, dispatch_float, Element};
use crate::error::fail;
use crate::layout::numel;
use crate::{Array, DType};

thread_local! {
    static DRAWS: std::cell::Cell<(u64, Option<&'static std::panic::Location<'static>>)> =
        const { std::cell::Cell::new((0, None)) };
}

/// How many random arrays [`Generator`]s have drawn on this thread, and the source line of
/// the latest draw. Optimize mode compares it before and after capturing a function: a
/// draw it did not see would be frozen into the plan, so the function then runs in direct
/// mode instead.
#[doc(hidden)]
pub fn draws_on_this_thread() -> (u64, Option<&'static std::panic::Location<'static>>) {
    DRAWS.with(|d| d.get())
}

#[track_caller]
fn count_draw() {
    let here = std::panic::Location::caller();
    DRAWS.with(|d| d.set((d.get().0 + 1, Some(here))));
}

/// A reproducible source of random arrays.
///
/// ```
/// use ferrograd_array::{DType, Generator};
/// let a = Generator::new(7).normal(&[2, 3], 0.0, 1.0, DType::F32);
/// let b = Generator::new(7).normal(&[2, 3], 0.0, 1.0, DType::F32);
/// assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
/// ```
#[derive(Clone, Debug)]
pub struct Generator {
    rng: ChaCha8Rng,
}

impl Generator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The underlying `rand` generator, for draws this type does not offer.
    #[track_caller]
    pub fn rng(&mut self) -> &mut impl Rng {
        count_draw();
        &mut self.rng
    }

    /// Uniform values in `[low, high)` (integers: `low..high`).
    #[track_caller]
    pub fn uniform(&mut self, shape: &[usize], low: f64, high: f64, dtype: DType) -> Array {
        count_draw();
        if low.partial_cmp(&high) != Some(std::cmp::Ordering::Less) {
            fail(
                "uniform",
                format_args!("needs low < high, got low {low}, high {high}"),
            )
        }
        let n = numel(shape);
        match dtype {
            DType::I64 => {
                let (lo, hi) = (low.ceil() as i64, high.ceil() as i64);
                Array::from_vec(
                    (0..n).map(|_| self.rng.random_range(lo..hi)).collect(),
                    shape,
                )
            }
            DType::Bool => fail("uniform", "bool arrays have no uniform fill; use bernoulli"),
            _ => dispatch_float!(dtype, "uniform", T => {
                let v: Vec<T> = (0..n)
                    .map(|_| T::from_f64(low + (high - low) * self.rng.random::<f64>()))
                    .map(|x| if x.to_f64() >= high { T::from_f64(low) } else { x })
                    .collect();
                Array::from_vec(v, shape)
            }),
        }
    }

    /// Normal values with the given mean and standard deviation.
    #[track_caller]
    pub fn normal(&mut self, shape: &[usize], mean: f64, std: f64, dtype: DType) -> Array {
        count_draw();
        let dist = match Normal::new(mean, std) {
            Ok(d) if std >= 0.0 => d,
            _ => fail(
                "normal",
                format_args!("std must be finite and >= 0, got {std}"),
            ),
        };
        let n = numel(shape);
        dispatch_float!(dtype, "normal", T => Array::from_vec(
            (0..n).map(|_| T::from_f64(dist.sample(&mut self.rng))).collect::<Vec<T>>(), shape))
    }

    /// Standard normal values (mean 0, std 1).
    #[track_caller]
    pub fn randn(&mut self, shape: &[usize], dtype: DType) -> Array {
        count_draw();
        let n = numel(shape);
        dispatch_float!(dtype, "randn", T => Array::from_vec(
            (0..n).map(|_| T::from_f64(StandardNormal.sample(&mut self.rng))).collect::<Vec<T>>(), shape))
    }

    /// 1 (or `true`) with probability `p`, else 0.
    #[track_caller]
    pub fn bernoulli(&mut self, shape: &[usize], p: f64, dtype: DType) -> Array {
        count_draw();
        if !(0.0..=1.0).contains(&p) {
            fail("bernoulli", format_args!("p must be in [0, 1], got {p}"))
        }
        let n = numel(shape);
        dispatch_any!(dtype, T => Array::from_vec(
            (0..n).map(|_| T::from_f64(if self.rng.random::<f64>() < p { 1.0 } else { 0.0 })).collect::<Vec<T>>(), shape))
    }

    /// A random permutation of `0..n`, as i64.
    #[track_caller]
    pub fn randperm(&mut self, n: usize) -> Array {
        count_draw();
        use rand::seq::SliceRandom;
        let mut v: Vec<i64> = (0..n as i64).collect();
        v.shuffle(&mut self.rng);
        Array::from_vec(v, &[n])
    }
}
