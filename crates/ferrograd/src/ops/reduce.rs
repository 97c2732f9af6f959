//! Reductions (sum, mean, prod, amax, amin, logsumexp) over dims, with `keepdim`; `max_dim`
//! and friends through `gather`; variance, standard deviation and norms as compositions;
//! cumulative sums.

use smallvec::{smallvec, SmallVec};

use super::{mask_as, on_device_of, scalar_like, zeros_like};
use crate::op::{Grads, Op};
use crate::tensor::apply;
use crate::{Array, Dim, Dims, Tensor};

/// A resolved list of dims.
pub type DimList = SmallVec<[usize; 6]>;

/// Reductions with a gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Reduction {
    Sum,
    Mean,
    Prod,
    Amax,
    Amin,
    LogSumExp,
}

impl Reduction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
            Reduction::Prod => "prod",
            Reduction::Amax => "amax",
            Reduction::Amin => "amin",
            Reduction::LogSumExp => "logsumexp",
        }
    }

    #[track_caller]
    pub(crate) fn forward(self, x: &Array, dims: &DimList, keepdim: bool) -> Array {
        let d = dims.as_slice();
        match self {
            Reduction::Sum => x.sum_dim(d, keepdim),
            Reduction::Mean => x.mean_dim(d, keepdim),
            Reduction::Prod => x.prod_dim(d, keepdim),
            Reduction::Amax => x.amax_dim(d, keepdim),
            Reduction::Amin => x.amin_dim(d, keepdim),
            Reduction::LogSumExp => x.logsumexp_dim(d, keepdim),
        }
    }

    /// [`forward`](Reduction::forward) into `out`.
    #[track_caller]
    pub(crate) fn forward_into(self, x: &Array, dims: &DimList, keepdim: bool, out: &mut Array) {
        let d = dims.as_slice();
        match self {
            Reduction::Sum => x.sum_dim_into(d, keepdim, out),
            Reduction::Mean => x.mean_dim_into(d, keepdim, out),
            Reduction::Prod => x.prod_dim_into(d, keepdim, out),
            Reduction::Amax => x.amax_dim_into(d, keepdim, out),
            Reduction::Amin => x.amin_dim_into(d, keepdim, out),
            Reduction::LogSumExp => x.logsumexp_dim_into(d, keepdim, out),
        }
    }
}

/// The shape of `shape` with `dims` kept as size 1.
fn kept_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(i, &s)| if dims.contains(&i) { 1 } else { s })
        .collect()
}

/// A reduced tensor broadcast back over the reduced dims of `shape`.
fn expand_back(t: &Tensor, shape: &[usize], dims: &[usize], keepdim: bool) -> Tensor {
    let kept = if keepdim {
        t.clone()
    } else {
        t.reshape(&kept_shape(shape, dims))
    };
    kept.expand(shape)
}

pub(crate) fn reduce_vjp(
    r: Reduction,
    dims: &DimList,
    keepdim: bool,
    x: &Tensor,
    out: &Tensor,
    g: &Tensor,
) -> Grads {
    let shape = x.shape();
    let ge = expand_back(g, shape, dims, keepdim);
    let dx = match r {
        // d sum = 1
        Reduction::Sum => ge,
        // d mean = 1/n
        Reduction::Mean => {
            let n: usize = dims.iter().map(|&d| shape[d]).product();
            ge * (1.0 / n as f64)
        }
        // d prod / dx_i = prod of the others, written so that it stays exact as a function
        // of x (its own derivatives are right) where a row holds zeros. With P the product of
        // the row's non-zero entries and e1, e2 the elementary symmetric sums of its zero
        // entries' values (0 as values, not as functions):
        // - no zero: prod / x_i;
        // - one zero (at k): P at k, e1 P / x_i elsewhere (e1 = x_k);
        // - two zeros (k, l): (e1 - x_i) P at each (the other zero), e2 P / x_i elsewhere;
        // - three or more: zero, whose derivative (0 as well) is exact at second order.
        Reduction::Prod => {
            let d_ = dims.as_slice();
            let back = |t: &Tensor| expand_back(t, shape, dims, true);
            let is_zero = x.eq_scalar(0.0);
            let zero_mask = mask_as(&is_zero, x);
            let zeros = back(&zero_mask.sum_dim(d_, true));
            let nonzero = Tensor::where_cond(&is_zero, &scalar_like(1.0, x), x);
            let p = back(&nonzero.prod_dim(d_, true));
            let e1 = back(&(x * &zero_mask).sum_dim(d_, true));
            let sum_sq = back(&(&x.square() * &zero_mask).sum_dim(d_, true));
            let e2 = (&e1.square() - &sum_sq) * 0.5;
            let none = &expand_back(out, shape, dims, keepdim) / &nonzero;
            let one = Tensor::where_cond(&is_zero, &p, &(&(&e1 * &p) / &nonzero));
            let two = Tensor::where_cond(&is_zero, &(&(&e1 - x) * &p), &(&(&e2 * &p) / &nonzero));
            let d = Tensor::where_cond(
                &zeros.eq_scalar(0.0),
                &none,
                &Tensor::where_cond(
                    &zeros.eq_scalar(1.0),
                    &one,
                    &Tensor::where_cond(&zeros.eq_scalar(2.0), &two, &zeros_like(x)),
                ),
            );
            ge * d
        }
        // every tied extreme gets an even share
        Reduction::Amax | Reduction::Amin => {
            let hit = x.eq(&expand_back(out, shape, dims, keepdim));
            let count = mask_as(&hit, x).sum_dim(dims.as_slice(), true);
            &(ge * &mask_as(&hit, x)) / &count.expand(shape)
        }
        // d logsumexp = softmax
        Reduction::LogSumExp => ge * &(x - &expand_back(out, shape, dims, keepdim)).exp(),
    };
    smallvec![Some(dx)]
}

impl Tensor {
    /// True (a 0-d bool tensor) when every element is non-zero, or true for bool tensors; no
    /// gradient. Computed with tensor ops, so optimize mode replays it for any data.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, 0.0, 2.0, 3.0], &[2, 2]);
    /// assert!(!x.all().item::<bool>() && x.any().item::<bool>());
    /// assert_eq!(x.all_dim(1, false).to_vec::<bool>(), vec![false, true]);
    /// ```
    #[track_caller]
    pub fn all(&self) -> Tensor {
        self.nonzero_count_dims(None, false)
            .eq_scalar(self.numel() as f64)
    }

    /// True (a 0-d bool tensor) when some element is non-zero; no gradient.
    #[track_caller]
    pub fn any(&self) -> Tensor {
        self.nonzero_count_dims(None, false).gt_scalar(0.0)
    }

    /// [`all`](Tensor::all) along `dim` (kept as size 1 with `keepdim`).
    #[track_caller]
    pub fn all_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let d = dim.resolve(self.ndim(), "all_dim");
        self.nonzero_count_dims(Some(d), keepdim)
            .eq_scalar(self.shape()[d] as f64)
    }

    /// [`any`](Tensor::any) along `dim` (kept as size 1 with `keepdim`).
    #[track_caller]
    pub fn any_dim(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let d = dim.resolve(self.ndim(), "any_dim");
        self.nonzero_count_dims(Some(d), keepdim).gt_scalar(0.0)
    }

    /// The number of non-zero elements (i64), over everything or along `dim`.
    #[track_caller]
    fn nonzero_count_dims(&self, dim: Option<usize>, keepdim: bool) -> Tensor {
        let counts = self.ne_scalar(0.0).to_dtype(crate::DType::I64);
        match dim {
            Some(d) => counts.sum_dim(d, keepdim),
            None => counts.sum(),
        }
    }
}

macro_rules! reductions {
    ($($(#[$doc:meta])* $all:ident, $dim:ident => $variant:ident;)*) => {
        impl Tensor {$(
            $(#[$doc])*
            /// This form reduces every element to a 0-d tensor.
            #[track_caller]
            pub fn $all(&self) -> Tensor {
                let dims: DimList = (0..self.ndim()).collect();
                apply(Op::Reduce(Reduction::$variant, dims, false), &[self])
            }

            $(#[$doc])*
            /// This form reduces the given dims, keeping them as size 1 when `keepdim`.
            #[track_caller]
            pub fn $dim(&self, dims: impl Dims, keepdim: bool) -> Tensor {
                let dims = dims.resolve_all(self.ndim(), stringify!($dim));
                apply(Op::Reduce(Reduction::$variant, dims, keepdim), &[self])
            }
        )*}
    };
}

reductions! {
    /// Sum of elements.
    sum, sum_dim => Sum;
    /// Mean of elements.
    mean, mean_dim => Mean;
    /// Product of elements (gradient exact with zeros present).
    prod, prod_dim => Prod;
    /// Largest element; tied maxima share the gradient evenly.
    amax, amax_dim => Amax;
    /// Smallest element; tied minima share the gradient evenly.
    amin, amin_dim => Amin;
    /// `log(sum(exp(x)))`, stable.
    logsumexp, logsumexp_dim => LogSumExp;
}

impl Tensor {
    /// Sum over `dims` treating NaN as zero (PyTorch's `nansum`); NaN entries get a zero
    /// gradient.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, f64::NAN, 2.0, 4.0], &[2, 2]);
    /// assert_eq!(x.nansum_dim(1, false).to_vec::<f64>(), vec![1.0, 6.0]);
    /// assert_eq!(x.nanmean_dim(1, false).to_vec::<f64>(), vec![1.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn nansum_dim(&self, dims: impl Dims, keepdim: bool) -> Tensor {
        let dims = dims.resolve_all(self.ndim(), "nansum_dim");
        let kept = Tensor::where_cond(&self.isnan(), &scalar_like(0.0, self), self);
        kept.sum_dim(dims.as_slice(), keepdim)
    }

    /// Mean over `dims` of the entries that are not NaN (PyTorch's `nanmean`).
    #[track_caller]
    pub fn nanmean_dim(&self, dims: impl Dims, keepdim: bool) -> Tensor {
        let dims = dims.resolve_all(self.ndim(), "nanmean_dim");
        let count = mask_as(&self.isnan().logical_not(), self).sum_dim(dims.as_slice(), keepdim);
        &self.nansum_dim(dims.as_slice(), keepdim) / &count
    }

    /// [`nansum_dim`](Tensor::nansum_dim) over every element.
    #[track_caller]
    pub fn nansum(&self) -> Tensor {
        let dims: DimList = (0..self.ndim()).collect();
        self.nansum_dim(dims.as_slice(), false)
    }

    /// [`nanmean_dim`](Tensor::nanmean_dim) over every element.
    #[track_caller]
    pub fn nanmean(&self) -> Tensor {
        let dims: DimList = (0..self.ndim()).collect();
        self.nanmean_dim(dims.as_slice(), false)
    }

    /// Largest element as a 0-d tensor (same as [`amax`](Tensor::amax)).
    #[track_caller]
    pub fn max(&self) -> Tensor {
        self.amax()
    }

    /// Smallest element as a 0-d tensor (same as [`amin`](Tensor::amin)).
    #[track_caller]
    pub fn min(&self) -> Tensor {
        self.amin()
    }

    /// The largest value along `dim` and its first index; the gradient goes to that index.
    #[track_caller]
    pub fn max_dim(&self, dim: impl Dim, keepdim: bool) -> (Tensor, Tensor) {
        let d = dim.resolve(self.ndim(), "max_dim");
        let idx = self.arg_extreme(true, Some(d), true);
        self.pick(d, idx, keepdim)
    }

    /// The smallest value along `dim` and its first index; the gradient goes to that index.
    #[track_caller]
    pub fn min_dim(&self, dim: impl Dim, keepdim: bool) -> (Tensor, Tensor) {
        let d = dim.resolve(self.ndim(), "min_dim");
        let idx = self.arg_extreme(false, Some(d), true);
        self.pick(d, idx, keepdim)
    }

    #[track_caller]
    fn arg_extreme(&self, largest: bool, dim: Option<usize>, keepdim: bool) -> Tensor {
        apply(
            Op::ArgExtreme {
                largest,
                dim,
                keepdim,
            },
            &[self],
        )
    }

    #[track_caller]
    fn pick(&self, d: usize, idx: Tensor, keepdim: bool) -> (Tensor, Tensor) {
        let values = self.gather(d, &idx);
        if keepdim {
            (values, idx)
        } else {
            (values.squeeze_dim(d), idx.squeeze_dim(d))
        }
    }

    /// Index of the first largest value along `dim` (i64, no gradient).
    #[track_caller]
    pub fn argmax(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let d = dim.resolve(self.ndim(), "argmax");
        self.arg_extreme(true, Some(d), keepdim)
    }

    /// The indices (i64, no gradient) that sort the tensor along `dim`, ascending or
    /// `descending`; stable (equal values keep their order), NaN last (PyTorch's
    /// `argsort(stable=True)`).
    #[track_caller]
    pub fn argsort(&self, dim: impl Dim, descending: bool) -> Tensor {
        let dim = dim.resolve(self.ndim().max(1), "argsort");
        apply(Op::ArgSort { dim, descending }, &[self])
    }

    /// The values sorted along `dim` and the indices they came from (PyTorch's
    /// `sort(stable=True)`); the gradient of the values goes back to where each came from.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 1.0, 2.0], &[3]);
    /// let (v, i) = x.sort(0, true);
    /// assert_eq!(v.to_vec::<f64>(), vec![3.0, 2.0, 1.0]);
    /// assert_eq!(i.to_vec::<i64>(), vec![0, 2, 1]);
    /// ```
    #[track_caller]
    pub fn sort(&self, dim: impl Dim, descending: bool) -> (Tensor, Tensor) {
        if self.ndim() == 0 {
            return (self.clone(), self.argsort(0usize, descending));
        }
        let d = dim.resolve(self.ndim(), "sort");
        let idx = self.argsort(d, descending);
        (self.gather(d, &idx), idx)
    }

    /// The `k` largest (or, with `largest` false, smallest) values along `dim`, in order,
    /// and their indices (PyTorch's `topk(sorted=True)`). Panics when `k` exceeds the dim.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 5.0, 3.0, 4.0], &[2, 2]);
    /// let (v, i) = x.topk(1, 1, true);
    /// assert_eq!(v.to_vec::<f32>(), vec![5.0, 4.0]);
    /// assert_eq!(i.to_vec::<i64>(), vec![1, 1]);
    /// ```
    #[track_caller]
    pub fn topk(&self, k: usize, dim: impl Dim, largest: bool) -> (Tensor, Tensor) {
        let d = dim.resolve(self.ndim().max(1), "topk");
        let n = if self.ndim() == 0 { 1 } else { self.size(d) };
        if k > n {
            panic!(
                "ferrograd: topk: k = {k} is larger than dim {d} of shape {:?} ({n}) (at {})",
                self.shape(),
                ferrograd_array::Site(std::panic::Location::caller())
            );
        }
        if self.ndim() == 0 {
            return self.sort(0usize, largest);
        }
        let idx = self.argsort(d, largest).narrow(d, 0, k);
        (self.gather(d, &idx), idx)
    }

    /// The `k`-th smallest value along `dim` (`k` from 1, as PyTorch's `kthvalue`) and its
    /// index; `keepdim` keeps `dim` as size 1.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![3.0f64, 1.0, 2.0], &[3]);
    /// let (v, i) = x.kthvalue(2, 0, false);
    /// assert_eq!((v.item::<f64>(), i.item::<i64>()), (2.0, 2));
    /// ```
    #[track_caller]
    pub fn kthvalue(&self, k: usize, dim: impl Dim, keepdim: bool) -> (Tensor, Tensor) {
        let d = dim.resolve(self.ndim().max(1), "kthvalue");
        let n = if self.ndim() == 0 { 1 } else { self.size(d) };
        if k == 0 || k > n {
            panic!(
                "ferrograd: kthvalue: k = {k} must be in 1..={n} for dim {d} of shape {:?} (at {})",
                self.shape(),
                ferrograd_array::Site(std::panic::Location::caller())
            );
        }
        if self.ndim() == 0 {
            return self.sort(0usize, false);
        }
        let idx = self.argsort(d, false).narrow(d, k - 1, 1);
        self.pick(d, idx, keepdim)
    }

    /// The median along `dim` and its index: the lower of the two middle values for an even
    /// count, and NaN (the first) where the values hold one, as PyTorch's `median(dim)`;
    /// the gradient goes to that element.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![4.0f64, 1.0, 3.0, 2.0, f64::NAN, 5.0], &[2, 3]);
    /// let (v, i) = x.median_dim(1, false);
    /// assert_eq!(v.to_vec::<f64>()[0], 3.0);
    /// assert!(v.to_vec::<f64>()[1].is_nan());
    /// assert_eq!(i.to_vec::<i64>(), vec![2, 1]);
    /// ```
    #[track_caller]
    pub fn median_dim(&self, dim: impl Dim, keepdim: bool) -> (Tensor, Tensor) {
        let d = dim.resolve(self.ndim().max(1), "median_dim");
        let n = if self.ndim() == 0 { 1 } else { self.size(d) };
        if n == 0 {
            panic!(
                "ferrograd: median_dim: dim {d} of shape {:?} is empty (at {})",
                self.shape(),
                ferrograd_array::Site(std::panic::Location::caller())
            );
        }
        if self.ndim() == 0 || !self.dtype().is_float() {
            return self.kthvalue(n.div_ceil(2), d, keepdim);
        }
        // (the sort puts NaNs last, so the middle value alone would skip them; with tensor
        // ops, not a read of the data, so optimize mode replays it)
        let middle = self.argsort(d, false).narrow(d, n.div_ceil(2) - 1, 1);
        let nan = self.isnan().to_dtype(self.dtype());
        let first_nan = nan.argmax(d, true);
        let idx = nan
            .amax_dim(d, true)
            .gt_scalar(0.0)
            .where_cond(&first_nan, &middle);
        self.pick(d, idx, keepdim)
    }

    /// The median of all elements (the lower middle value for an even count; NaN if any is
    /// NaN), 0-d.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![4.0f64, 1.0, 3.0, 2.0], &[2, 2]);
    /// assert_eq!(x.median().item::<f64>(), 2.0);
    /// ```
    #[track_caller]
    pub fn median(&self) -> Tensor {
        self.reshape(&[self.numel()]).median_dim(0usize, false).0
    }

    /// Index of the first largest value of the flattened tensor, 0-d i64 (no gradient).
    #[track_caller]
    pub fn argmax_all(&self) -> Tensor {
        self.arg_extreme(true, None, false)
    }

    /// Index of the first smallest value of the flattened tensor, 0-d i64 (no gradient).
    #[track_caller]
    pub fn argmin_all(&self) -> Tensor {
        self.arg_extreme(false, None, false)
    }

    /// True when every pair of values is within `atol + rtol * |other|` (shapes broadcast).
    #[track_caller]
    pub fn allclose(&self, other: &Tensor, rtol: f64, atol: f64) -> bool {
        self.value().allclose(other.value(), rtol, atol)
    }

    /// Index of the first smallest value along `dim` (i64, no gradient).
    #[track_caller]
    pub fn argmin(&self, dim: impl Dim, keepdim: bool) -> Tensor {
        let d = dim.resolve(self.ndim(), "argmin");
        self.arg_extreme(false, Some(d), keepdim)
    }

    /// Variance over `dims`, with `correction` subtracted from the count (1: unbiased).
    /// With no degrees of freedom left (`correction` at or above the count) it is NaN where
    /// the values are all equal (or there are none) and infinite elsewhere, as in PyTorch.
    #[track_caller]
    pub fn var_dim(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Tensor {
        let dims = dims.resolve_all(self.ndim(), "var_dim");
        let n: usize = dims.iter().map(|&d| self.shape()[d]).product();
        let centred = self - &self.mean_dim(dims.as_slice(), true);
        // (no degrees of freedom left: NaN or infinity, as in PyTorch, never a negative
        // variance)
        let dof = (n as f64 - correction as f64).max(0.0);
        centred.square().sum_dim(dims.as_slice(), keepdim) * (1.0 / dof)
    }

    /// Variance of all elements.
    #[track_caller]
    pub fn var(&self, correction: usize) -> Tensor {
        let dims: DimList = (0..self.ndim()).collect();
        self.var_dim(dims.as_slice(), correction, false)
    }

    /// Standard deviation over `dims`. Its gradient where the values are all equal (a
    /// standard deviation of 0) is 0, as in PyTorch, not the NaN of `0 · ∞`.
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 3.0, 2.0, 2.0], &[2, 2]);
    /// let (g, _) = grad(|x: &Tensor| x.std_dim(1, 1, false).sum()).call(&x, ());
    /// let g = g.to_vec::<f64>(); // (x - mean) / ((n - 1) std) on the first row, 0 on the second
    /// assert!((g[0] + 0.5f64.sqrt()).abs() < 1e-15 && g[2..] == [0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn std_dim(&self, dims: impl Dims, correction: usize, keepdim: bool) -> Tensor {
        root_flat_at_zero(self.var_dim(dims, correction, keepdim), &|v| v.sqrt())
    }

    /// Standard deviation of all elements (see [`std_dim`](Tensor::std_dim)).
    #[track_caller]
    pub fn std(&self, correction: usize) -> Tensor {
        root_flat_at_zero(self.var(correction), &|v| v.sqrt())
    }

    /// The `p`-norm over `dims`, as PyTorch's `vector_norm`: `(Σ|x|^p)^(1/p)` for any `p`
    /// (negative too), `max |x|` for `p = ∞`, `min |x|` for `p = -∞`, and the number of
    /// nonzero entries for `p = 0` (no gradient). The gradient at an all-zero slice, and for
    /// `0 < p < 1` at each zero entry, is 0, not the NaN of `0 · ∞` (as in PyTorch).
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let x = Tensor::from_vec(vec![6.0f64, -8.0, 0.0, 0.0], &[2, 2]);
    /// assert_eq!(x.norm_dim(2.0, 1, false).to_vec::<f64>(), vec![10.0, 0.0]);
    /// let (g, _) = grad(|x: &Tensor| x.norm_dim(2.0, 1, false).sum()).call(&x, ());
    /// let g = g.to_vec::<f64>(); // x / ‖x‖ on the first row, 0 on the zero row
    /// assert!((g[0] - 0.6).abs() < 1e-15 && (g[1] + 0.8).abs() < 1e-15 && g[2..] == [0.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn norm_dim(&self, p: f64, dims: impl Dims, keepdim: bool) -> Tensor {
        let dims = dims.resolve_all(self.ndim(), "norm_dim");
        let d = dims.as_slice();
        let root = root_flat_at_zero;
        if p == 2.0 {
            root(self.square().sum_dim(d, keepdim), &|s| s.sqrt())
        } else if p == 1.0 {
            self.abs().sum_dim(d, keepdim)
        } else if p == f64::INFINITY {
            self.abs().amax_dim(d, keepdim)
        } else if p == f64::NEG_INFINITY {
            self.abs().amin_dim(d, keepdim)
        } else if p == 0.0 {
            // the number of non-zero entries (no gradient)
            mask_as(&self.ne_scalar(0.0), self)
                .sum_dim(d, keepdim)
                .detach()
        } else if p.is_nan() {
            Tensor::new(self.data().norm_dim(p, d, keepdim)) // fails, naming p
        } else if p > 0.0 {
            // |x|^p with a zero gradient at x = 0 (infinite for p < 1)
            let s = root(self.abs(), &|a| a.pow_scalar(p)).sum_dim(d, keepdim);
            root(s, &|s| s.pow_scalar(1.0 / p))
        } else {
            // a zero entry makes the sum infinite and the norm 0
            self.abs()
                .pow_scalar(p)
                .sum_dim(d, keepdim)
                .pow_scalar(1.0 / p)
        }
    }

    /// The `p`-norm of all elements.
    #[track_caller]
    pub fn norm(&self, p: f64) -> Tensor {
        let dims: DimList = (0..self.ndim()).collect();
        self.norm_dim(p, dims.as_slice(), false)
    }

    /// Running sum along `dim`.
    #[track_caller]
    pub fn cumsum(&self, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "cumsum");
        apply(Op::Cumsum(d), &[self])
    }

    /// Running product along `dim` (PyTorch's `torch.cumprod`). The gradient is exact where
    /// entries are zero too (no division); it costs `O(n²)` in the length `n` of `dim`.
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let x = Tensor::from_vec(vec![2.0f64, 0.0, 3.0], &[3]);
    /// assert_eq!(x.cumprod(0).to_vec::<f64>(), vec![2.0, 0.0, 0.0]);
    /// let (g, _) = grad(|x: &Tensor| x.cumprod(0).sum()).call(&x, ());
    /// assert_eq!(g.to_vec::<f64>(), vec![1.0, 8.0, 0.0]); // d/dx₁ (x₀ + x₀x₁ + x₀x₁x₂)
    /// ```
    #[track_caller]
    pub fn cumprod(&self, dim: impl Dim) -> Tensor {
        let d = dim.resolve(self.ndim(), "cumprod");
        apply(Op::Cumprod(d), &[self])
    }
}

/// The gradient of a running product along `dim`, without dividing by `x` (so zeros are
/// exact): `dx_i = E_i Σ_{j≥i} g_j Π_{i<k≤j} x_k` with `E_i = Π_{k<i} x_k`, the inner
/// products as a running product over an `n x n` table (`n` the length of `dim`).
pub(crate) fn cumprod_vjp(dim: usize, x: &Tensor, g: &Tensor) -> Tensor {
    if x.ndim() == 0 {
        return g.clone();
    }
    let last = x.ndim() - 1;
    let (xl, gl) = (x.transpose(dim, last), g.transpose(dim, last));
    let n = xl.shape()[last];
    if n == 0 {
        return g.clone();
    }
    let dtype = x.dtype();
    // strict upper ones: U[i, j] = [j > i]
    let upper = on_device_of(Array::ones(&[n, n], dtype), &xl).triu(1);
    let table = &(&xl.unsqueeze(-2) * &upper) + &upper.rsub_scalar(1.0);
    // M[i, j] = Π_{i<k≤j} x_k for j ≥ i, 0 below the diagonal
    let m = &table.cumprod(-1) * &on_device_of(Array::ones(&[n, n], dtype), &xl).triu(0);
    let s = (&m * &gl.unsqueeze(-2)).sum_dim(-1, false);
    let mut ones_shape = xl.shape().to_vec();
    ones_shape[last] = 1;
    let shifted = Tensor::cat(
        &[
            on_device_of(Array::ones(&ones_shape, dtype), &xl),
            xl.narrow(-1, 0, n - 1),
        ],
        -1,
    );
    let exclusive = shifted.cumprod(-1);
    (&exclusive * &s).transpose(dim, last)
}

/// `r(s)` (a root or power, 0 at `s = 0`) with a zero gradient where `s = 0`: `r` of a safe 1
/// there, replaced by 0, so neither branch's gradient is infinite (a norm's or a standard
/// deviation's gradient at 0 is 0, not the NaN of `0 · ∞`, as in PyTorch).
fn root_flat_at_zero(s: Tensor, r: &dyn Fn(&Tensor) -> Tensor) -> Tensor {
    let zero = s.eq_scalar(0.0);
    let safe = Tensor::where_cond(&zero, &scalar_like(1.0, &s), &s);
    Tensor::where_cond(&zero, &scalar_like(0.0, &s), &r(&safe))
}
