//! 2-d max and average pooling over `[N, C, H, W]`, forward and backward.

use crate::elementwise::PARALLEL_MIN;

use crate::conv::out_size;
use crate::dtype::{dispatch_float, Float};
use crate::error::fail;
use crate::layout::fmt_shape;
use crate::{Array, DType};

/// Window size, stride and padding (each `(height, width)`) of a 2-d pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Implicit padding on each side (ignored by max, counted as zeros by average when
    /// `count_include_pad`). At most half the window, as in PyTorch.
    pub padding: (usize, usize),
}

impl Pool2dParams {
    /// Non-overlapping windows of `k`x`k` (stride `k`, no padding), the common case.
    pub fn square(k: usize) -> Pool2dParams {
        Pool2dParams {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
        }
    }
}

#[derive(Clone, Copy)]
struct Geometry {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    p: Pool2dParams,
}

impl Geometry {
    #[track_caller]
    fn new(op: &str, shape: &[usize], p: Pool2dParams) -> Geometry {
        if shape.len() != 4 {
            fail(
                op,
                format_args!("expects [N, C, H, W], got {}", fmt_shape(shape)),
            )
        }
        let (kh, kw) = p.kernel;
        if kh == 0 || kw == 0 || p.padding.0 * 2 > kh || p.padding.1 * 2 > kw {
            fail(
                op,
                format_args!(
                    "window {:?} must be non-empty with padding {:?} at most half of it",
                    p.kernel, p.padding
                ),
            )
        }
        let (h, w) = (shape[2], shape[3]);
        match (
            out_size(h, kh, p.stride.0, p.padding.0, 1),
            out_size(w, kw, p.stride.1, p.padding.1, 1),
        ) {
            (Some(oh), Some(ow)) => Geometry { h, w, oh, ow, p },
            _ => fail(
                op,
                format_args!(
                    "window {:?} with stride {:?} does not fit input {}",
                    p.kernel,
                    p.stride,
                    fmt_shape(shape)
                ),
            ),
        }
    }

    /// The input rows (`axis` 0) or columns (1) of output row or column `o`'s window that lie
    /// inside the image.
    fn clip(&self, o: usize, axis: usize) -> std::ops::Range<usize> {
        let (k, stride, pad, size) = if axis == 0 {
            (self.p.kernel.0, self.p.stride.0, self.p.padding.0, self.h)
        } else {
            (self.p.kernel.1, self.p.stride.1, self.p.padding.1, self.w)
        };
        let start = (o * stride) as isize - pad as isize;
        let end = (start + k as isize).clamp(0, size as isize) as usize;
        (start.max(0) as usize).min(end)..end
    }

    /// Calls `f(out_index, in_index)` for every input position of every window of a plane.
    fn windows(&self, mut f: impl FnMut(usize, Option<usize>)) {
        let (kh, kw) = self.p.kernel;
        for y in 0..self.oh {
            for x in 0..self.ow {
                let o = y * self.ow + x;
                for i in 0..kh {
                    for j in 0..kw {
                        let iy = (y * self.p.stride.0 + i) as isize - self.p.padding.0 as isize;
                        let ix = (x * self.p.stride.1 + j) as isize - self.p.padding.1 as isize;
                        let inside =
                            iy >= 0 && ix >= 0 && (iy as usize) < self.h && (ix as usize) < self.w;
                        f(o, inside.then(|| iy as usize * self.w + ix as usize));
                    }
                }
            }
        }
    }
}

impl Array {
    /// Max pooling; returns the pooled values and, per output, the flat index of the chosen
    /// input within its `H x W` plane (the first maximum; NaN wins), as i64.
    #[track_caller]
    pub fn max_pool2d(&self, params: Pool2dParams) -> (Array, Array) {
        let g = Geometry::new("max_pool2d", self.shape(), params);
        let shape = [self.shape()[0], self.shape()[1], g.oh, g.ow];
        let mut values = Array::empty_on(&shape, self.dtype(), self.device());
        let mut indices = Array::empty_on(&shape, DType::I64, self.device());
        self.max_pool2d_into(params, &mut values, &mut indices);
        (values, indices)
    }

    /// [`max_pool2d`](Array::max_pool2d) into `values` and `indices` (i64).
    #[track_caller]
    pub fn max_pool2d_into(&self, params: Pool2dParams, values: &mut Array, indices: &mut Array) {
        self.max_pool2d_kernel(params, Some(values), indices)
    }

    /// The indices of [`max_pool2d`](Array::max_pool2d) alone (the values are not written):
    /// what a differentiable max-pooling records, its values then read through the indices
    /// ([`gather_planes`](Array::gather_planes)), whose adjoint routes the gradient.
    ///
    /// ```
    /// use ferrograd_array::{Array, Pool2dParams};
    /// let x = Array::from_vec(vec![1.0f32, 5.0, 2.0, 3.0], &[1, 1, 2, 2]);
    /// let idx = x.max_pool2d_indices(Pool2dParams::square(2));
    /// assert_eq!(idx.to_vec::<i64>(), vec![1]);
    /// assert!(x.gather_planes(&idx).bit_eq(&x.max_pool2d(Pool2dParams::square(2)).0));
    /// ```
    #[track_caller]
    pub fn max_pool2d_indices(&self, params: Pool2dParams) -> Array {
        let g = Geometry::new("max_pool2d", self.shape(), params);
        let shape = [self.shape()[0], self.shape()[1], g.oh, g.ow];
        let mut indices = Array::empty_on(&shape, DType::I64, self.device());
        self.max_pool2d_indices_into(params, &mut indices);
        indices
    }

    /// [`max_pool2d_indices`](Array::max_pool2d_indices) into `indices` (i64).
    #[track_caller]
    pub fn max_pool2d_indices_into(&self, params: Pool2dParams, indices: &mut Array) {
        self.max_pool2d_kernel(params, None, indices)
    }

    /// Max pooling into `indices`, and into `values` when given (else each plane's values
    /// live in a scratch buffer while it is pooled).
    #[track_caller]
    fn max_pool2d_kernel(
        &self,
        params: Pool2dParams,
        values: Option<&mut Array>,
        indices: &mut Array,
    ) {
        let g = Geometry::new("max_pool2d", self.shape(), params);
        let shape = [self.shape()[0], self.shape()[1], g.oh, g.ow];
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            let geom = crate::cuda::pool::geom(self.shape(), (g.oh, g.ow), params);
            return crate::cuda::pool::max_pool(self, geom, values, indices, "max_pool2d");
        }
        fn kernel<T: Float>(
            g: Geometry,
            x: &Array,
            shape: &[usize],
            values: Option<&mut Array>,
            indices: &mut Array,
        ) {
            let x = x.values::<T>("max_pool2d");
            let s = g.oh * g.ow;
            let values = values.map(|v| v.out_slice::<T>(shape, "max_pool2d_into"));
            let indices = indices.out_slice::<i64>(shape, "max_pool2d_into");
            if s == 0 {
                return;
            }
            let hw = g.h * g.w;
            // Output columns whose windows lie wholly inside the image's columns (a range).
            let inner_cols = (0..g.ow)
                .filter(|&xo| g.clip(xo, 1).len() == g.p.kernel.1)
                .fold(None, |r: Option<(usize, usize)>, xo| {
                    Some(r.map_or((xo, xo + 1), |(a, _)| (a, xo + 1)))
                });
            let parallel = crate::par::split(x.len(), PARALLEL_MIN);
            let pool = |p: usize, v: &mut [T], idx: &mut [i64]| {
                let plane = &x[p * hw..(p + 1) * hw];
                if g.p.padding == (0, 0) {
                    return crate::math::with_simd(
                        #[inline(always)]
                        || max_pool_inside(&g, plane, v, idx),
                    );
                }
                let (kh, kw) = g.p.kernel;
                let (sw, pw) = (g.p.stride.1, g.p.padding.1);
                for y in 0..g.oh {
                    let rows = g.clip(y, 0);
                    let (vrow, irow) = (
                        &mut v[y * g.ow..(y + 1) * g.ow],
                        &mut idx[y * g.ow..(y + 1) * g.ow],
                    );
                    let (lo, hi) = match inner_cols {
                        Some((lo, hi)) if rows.len() == kh => (lo, hi),
                        _ => (0, 0),
                    };
                    if hi > lo {
                        // Whole windows: one pass per window position over the row's
                        // outputs, so neighbouring outputs are independent work (a
                        // per-window loop is one long dependency chain of compares).
                        let (vs, is) = (&mut vrow[lo..hi], &mut irow[lo..hi]);
                        for i in 0..kh {
                            let line = (rows.start + i) * g.w;
                            for j in 0..kw {
                                let at0 = line + lo * sw + j - pw;
                                let pairs = vs.iter_mut().zip(is.iter_mut()).enumerate();
                                if i == 0 && j == 0 {
                                    for (n, (vb, ib)) in pairs {
                                        *ib = (at0 + n * sw) as i64;
                                        *vb = plane[at0 + n * sw];
                                    }
                                    continue;
                                }
                                for (n, (vb, ib)) in pairs {
                                    let at = (at0 + n * sw) as i64;
                                    // Integer arithmetic, not a select: LLVM turns
                                    // selects here back into branches, which mispredict
                                    // on half the elements of random data (measured 5x
                                    // slower).
                                    let take = better(plane[at as usize], *vb) as i64;
                                    *ib += take * (at - *ib);
                                    *vb = plane[*ib as usize];
                                }
                            }
                        }
                    }
                    for xo in (0..lo).chain(hi..g.ow) {
                        let cols = g.clip(xo, 1);
                        let (mut best, mut at) = (T::neg_infinity(), -1i64);
                        for iy in rows.clone() {
                            for ix in cols.clone() {
                                let val = plane[iy * g.w + ix];
                                if at < 0 || better(val, best) {
                                    best = val;
                                    at = (iy * g.w + ix) as i64;
                                }
                            }
                        }
                        vrow[xo] = best;
                        irow[xo] = at;
                    }
                }
            };
            match values {
                Some(values) => crate::par::chunks2(values, indices, s, parallel, &pool),
                None => crate::par::chunks(indices, s, parallel, &|p, idx| {
                    T::with_scratch(s, |v| pool(p, v, idx))
                }),
            }
        }
        dispatch_float!(self.dtype(), "max_pool2d", T => kernel::<T>(g, self, &shape, values, indices))
    }
}

/// Whether `val` beats `best` in a max-pooling window: the first maximum wins, and a NaN
/// beats every number.
#[inline(always)]
fn better<T: Float>(val: T, best: T) -> bool {
    (val > best) | (val.is_nan() & !best.is_nan())
}

/// Max pooling of one plane whose windows all lie inside it (no padding): the outputs in
/// blocks, each block's window elements read tap by tap through their flat indices, so the
/// comparisons run as vector selects over the block rather than branches (taking an
/// element is a coin flip on random data) or a walk along rows as short as the output's
/// (on 32x16x60x60 f32, 2x2 windows: 2.5 → 1.4 ms on a 2-core Xeon, `cargo bench -p
/// ferrograd-array --bench array -- pool`).
#[inline(always)]
fn max_pool_inside<T: Float>(g: &Geometry, plane: &[T], v: &mut [T], idx: &mut [i64]) {
    const BLOCK: usize = 64;
    let (kh, kw) = g.p.kernel;
    let (sh, sw) = g.p.stride;
    // the flat index of each output's window corner, for the block
    let mut corner = [0usize; BLOCK];
    let (mut y, mut x) = (0, 0);
    let last = (kh - 1) * g.w + kw - 1;
    for (vb, ib) in v.chunks_mut(BLOCK).zip(idx.chunks_mut(BLOCK)) {
        let corner = &mut corner[..vb.len()];
        for c in corner.iter_mut() {
            *c = y * sh * g.w + x * sw;
            x += 1;
            if x == g.ow {
                (x, y) = (0, y + 1);
            }
        }
        // every window lies inside the plane
        assert!(corner.last().is_none_or(|&c| c + last < plane.len()));
        for i in 0..kh {
            for j in 0..kw {
                let off = i * g.w + j;
                let taps = vb.iter_mut().zip(ib.iter_mut()).zip(corner.iter());
                if i == 0 && j == 0 {
                    for ((vb, ib), &c) in taps {
                        *vb = plane[c];
                        *ib = c as i64;
                    }
                    continue;
                }
                for ((vb, ib), &c) in taps {
                    // SAFETY: `c + off <= c + last`, inside the plane (the corners grow, and
                    // the last one's window was checked above)
                    let val = unsafe { *plane.get_unchecked(c + off) };
                    let take = better(val, *vb);
                    *vb = if take { val } else { *vb };
                    *ib = if take { (c + off) as i64 } else { *ib };
                }
            }
        }
    }
}

impl Array {
    /// Gradient of [`max_pool2d`](Array::max_pool2d): `self` is the output gradient, routed
    /// to the chosen inputs (summed where windows overlap, in the outputs' order; on a GPU
    /// in no fixed order unless [`set_deterministic`](crate::set_deterministic) is on).
    #[track_caller]
    pub fn max_pool2d_backward(&self, indices: &Array, input_shape: &[usize]) -> Array {
        let mut out = Array::empty_on(input_shape, self.dtype(), self.device());
        self.max_pool2d_backward_into(indices, input_shape, &mut out);
        out
    }

    /// [`max_pool2d_backward`](Array::max_pool2d_backward) into `out` (the input's shape).
    #[track_caller]
    pub fn max_pool2d_backward_into(
        &self,
        indices: &Array,
        input_shape: &[usize],
        out: &mut Array,
    ) {
        if input_shape.len() != 4
            || self.shape() != indices.shape()
            || self.ndim() != 4
            || self.shape()[..2] != input_shape[..2]
        {
            fail(
                "max_pool2d_backward",
                format_args!(
                    "gradient {}, indices {} and input shape {} do not belong together",
                    fmt_shape(self.shape()),
                    fmt_shape(indices.shape()),
                    fmt_shape(input_shape)
                ),
            )
        }
        if indices.dtype() != DType::I64 {
            crate::error::dtype_fail("max_pool2d_backward", indices.dtype(), "i64 indices")
        }
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !indices.device().is_cpu() {
            let op = "max_pool2d_backward";
            return crate::cuda::pool::max_pool_backward(self, indices, input_shape, out, op);
        }
        let hw = input_shape[2] * input_shape[3];
        let s = self.shape()[2] * self.shape()[3];
        fn kernel<T: Float>(
            dy: &Array,
            idx: &Array,
            input_shape: &[usize],
            hw: usize,
            s: usize,
            out: &mut Array,
        ) {
            let (dy, idx) = (
                dy.values::<T>("max_pool2d_backward"),
                idx.values::<i64>("max_pool2d_backward"),
            );
            let dx = out.out_slice::<T>(input_shape, "max_pool2d_backward_into");
            if hw == 0 || s == 0 {
                dx.fill(T::zero());
            } else {
                let parallel = crate::par::split(dx.len(), PARALLEL_MIN);
                // each plane zeroed by the thread that scatters into it, while in its cache
                crate::par::chunks(dx, hw, parallel, &|p, plane| {
                    plane.fill(T::zero());
                    for (&g, &i) in dy[p * s..(p + 1) * s].iter().zip(&idx[p * s..(p + 1) * s]) {
                        if i >= 0 {
                            plane[i as usize] += g;
                        }
                    }
                });
            }
        }
        dispatch_float!(self.dtype(), "max_pool2d_backward", T => kernel::<T>(self, indices, input_shape, hw, s, out))
    }

    /// The values of `self: [N, C, H, W]` at the flat in-plane positions `indices:
    /// [N, C, H', W']` (i64, as [`max_pool2d`](Array::max_pool2d) returns them; a negative
    /// index, a window wholly in the padding, gives 0). This is the adjoint of
    /// [`max_pool2d_backward`](Array::max_pool2d_backward), and with the indices of a pooling
    /// of `self` it returns the pooled values.
    ///
    /// ```
    /// use ferrograd_array::{Array, Pool2dParams};
    /// let x = Array::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    /// let (pooled, at) = x.max_pool2d(Pool2dParams::square(2));
    /// assert_eq!(x.gather_planes(&at).to_vec::<f32>(), pooled.to_vec::<f32>());
    /// ```
    #[track_caller]
    pub fn gather_planes(&self, indices: &Array) -> Array {
        let mut out = Array::empty_on(indices.shape(), self.dtype(), self.device());
        self.gather_planes_into(indices, &mut out);
        out
    }

    /// [`gather_planes`](Array::gather_planes) into `out` (the indices' shape).
    #[track_caller]
    pub fn gather_planes_into(&self, indices: &Array, out: &mut Array) {
        if self.ndim() != 4 || indices.ndim() != 4 || self.shape()[..2] != indices.shape()[..2] {
            fail(
                "gather_planes",
                format_args!(
                    "input {} and indices {} must be [N, C, H, W] and [N, C, H', W']",
                    fmt_shape(self.shape()),
                    fmt_shape(indices.shape())
                ),
            )
        }
        if indices.dtype() != DType::I64 {
            crate::error::dtype_fail("gather_planes", indices.dtype(), "i64 indices")
        }
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !indices.device().is_cpu() {
            return crate::cuda::pool::gather_planes(self, indices, out, "gather_planes");
        }
        let hw = self.shape()[2] * self.shape()[3];
        let s = indices.shape()[2] * indices.shape()[3];
        /// The values, or the first index past a plane.
        fn kernel<T: Float>(
            x: &Array,
            idx: &Array,
            hw: usize,
            s: usize,
            out: &mut Array,
        ) -> Option<i64> {
            let shape = idx.shape().to_vec();
            let (x, idx) = (
                x.values::<T>("gather_planes"),
                idx.values::<i64>("gather_planes"),
            );
            let dst = out.out_slice::<T>(&shape, "gather_planes_into");
            if s == 0 {
                return None;
            }
            // indices past the plane are noted as the values are read, and refused after
            let past = std::sync::atomic::AtomicBool::new(false);
            let pick = |p: usize, d: &mut [T]| {
                let plane = &x[p * hw..(p + 1) * hw];
                let mut bad = false;
                for (d, &i) in d.iter_mut().zip(&idx[p * s..(p + 1) * s]) {
                    bad |= i >= hw as i64;
                    // (a negative index, a window wholly in the padding, reads as 0)
                    *d = plane.get(i as usize).copied().unwrap_or(T::zero());
                }
                if bad {
                    past.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            };
            let parallel = crate::par::split(x.len().max(dst.len()), PARALLEL_MIN);
            crate::par::chunks(dst, s, parallel, &pick);
            let past = past.into_inner();
            past.then(|| *idx.iter().find(|&&i| i >= hw as i64).expect("noted"))
        }
        let past = dispatch_float!(self.dtype(), "gather_planes", T => kernel::<T>(self, indices, hw, s, out));
        if let Some(bad) = past {
            fail(
                "gather_planes",
                format_args!("index {bad} is out of range for planes of {hw} elements"),
            )
        }
    }

    /// Average pooling. With `count_include_pad`, padded positions count as zeros in the
    /// divisor (PyTorch's default); without, each window divides by its positions inside.
    #[track_caller]
    pub fn avg_pool2d(&self, params: Pool2dParams, count_include_pad: bool) -> Array {
        let g = Geometry::new("avg_pool2d", self.shape(), params);
        let mut out = Array::empty_on(
            &[self.shape()[0], self.shape()[1], g.oh, g.ow],
            self.dtype(),
            self.device(),
        );
        self.avg_pool2d_into(params, count_include_pad, &mut out);
        out
    }

    /// [`avg_pool2d`](Array::avg_pool2d) into `out`.
    #[track_caller]
    pub fn avg_pool2d_into(&self, params: Pool2dParams, count_include_pad: bool, out: &mut Array) {
        let g = Geometry::new("avg_pool2d", self.shape(), params);
        let shape = [self.shape()[0], self.shape()[1], g.oh, g.ow];
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            let geom = crate::cuda::pool::geom(self.shape(), (g.oh, g.ow), params);
            let op = "avg_pool2d";
            return crate::cuda::pool::avg_pool(self, geom, count_include_pad, false, out, op);
        }
        fn kernel<T: Float>(
            g: Geometry,
            x: &Array,
            shape: &[usize],
            include: bool,
            out: &mut Array,
        ) {
            let x = x.values::<T>("avg_pool2d");
            let s = g.oh * g.ow;
            let out = out.out_slice::<T>(shape, "avg_pool2d_into");
            out.iter_mut().for_each(|v| *v = T::zero());
            let divisors = divisors(&g, include);
            if s > 0 && g.h * g.w > 0 {
                let parallel = crate::par::split(x.len(), PARALLEL_MIN);
                crate::par::chunks(out, s, parallel, &|p, v| {
                    let plane = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
                    g.windows(|o, i| {
                        if let Some(i) = i {
                            v[o] += plane[i];
                        }
                    });
                    v.iter_mut()
                        .zip(&divisors)
                        .for_each(|(v, &d)| *v = *v / T::from(d).unwrap());
                });
            }
        }
        dispatch_float!(self.dtype(), "avg_pool2d", T => kernel::<T>(g, self, &shape, count_include_pad, out))
    }

    /// Gradient of [`avg_pool2d`](Array::avg_pool2d): `self` is the output gradient.
    #[track_caller]
    pub fn avg_pool2d_backward(
        &self,
        input_shape: &[usize],
        params: Pool2dParams,
        count_include_pad: bool,
    ) -> Array {
        let mut out = Array::empty_on(input_shape, self.dtype(), self.device());
        self.avg_pool2d_backward_into(input_shape, params, count_include_pad, &mut out);
        out
    }

    /// [`avg_pool2d_backward`](Array::avg_pool2d_backward) into `out` (the input's shape).
    #[track_caller]
    pub fn avg_pool2d_backward_into(
        &self,
        input_shape: &[usize],
        params: Pool2dParams,
        count_include_pad: bool,
        out: &mut Array,
    ) {
        let g = Geometry::new("avg_pool2d_backward", input_shape, params);
        if self.shape() != [input_shape[0], input_shape[1], g.oh, g.ow] {
            fail(
                "avg_pool2d_backward",
                format_args!(
                    "gradient has shape {}, the pooling's output has [{}, {}, {}, {}]",
                    fmt_shape(self.shape()),
                    input_shape[0],
                    input_shape[1],
                    g.oh,
                    g.ow
                ),
            )
        }
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() {
            let geom = crate::cuda::pool::geom(input_shape, (g.oh, g.ow), params);
            let (op, include) = ("avg_pool2d_backward", count_include_pad);
            return crate::cuda::pool::avg_pool(self, geom, include, true, out, op);
        }
        fn kernel<T: Float>(
            g: Geometry,
            dy: &Array,
            input_shape: &[usize],
            include: bool,
            out: &mut Array,
        ) {
            let dy = dy.values::<T>("avg_pool2d_backward");
            let s = g.oh * g.ow;
            let divisors = divisors(&g, include);
            let dx = out.out_slice::<T>(input_shape, "avg_pool2d_backward_into");
            dx.iter_mut().for_each(|v| *v = T::zero());
            if s > 0 && g.h * g.w > 0 {
                let parallel = crate::par::split(dx.len(), PARALLEL_MIN);
                crate::par::chunks(dx, g.h * g.w, parallel, &|p, plane| {
                    let d = &dy[p * s..(p + 1) * s];
                    g.windows(|o, i| {
                        if let Some(i) = i {
                            plane[i] += d[o] / T::from(divisors[o]).unwrap();
                        }
                    });
                });
            }
        }
        dispatch_float!(self.dtype(), "avg_pool2d_backward", T => kernel::<T>(g, self, input_shape, count_include_pad, out))
    }
}

/// The divisor of each output position of a plane.
fn divisors(g: &Geometry, include_pad: bool) -> Vec<usize> {
    let mut d = vec![0usize; g.oh * g.ow];
    g.windows(|o, i| {
        if include_pad || i.is_some() {
            d[o] += 1;
        }
    });
    d
}
