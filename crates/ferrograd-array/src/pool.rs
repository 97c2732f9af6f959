//! 2-d max and average pooling over `[N, C, H, W]`, forward and backward.

use rayon::prelude::*;

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
        let mut values = Array::empty(&shape, self.dtype());
        let mut indices = Array::empty(&shape, DType::I64);
        self.max_pool2d_into(params, &mut values, &mut indices);
        (values, indices)
    }

    /// [`max_pool2d`](Array::max_pool2d) into `values` and `indices` (i64).
    #[track_caller]
    pub fn max_pool2d_into(&self, params: Pool2dParams, values: &mut Array, indices: &mut Array) {
        let g = Geometry::new("max_pool2d", self.shape(), params);
        let shape = [self.shape()[0], self.shape()[1], g.oh, g.ow];
        fn kernel<T: Float>(
            g: Geometry,
            x: &Array,
            shape: &[usize],
            values: &mut Array,
            indices: &mut Array,
        ) {
            let x = x.values::<T>("max_pool2d");
            let s = g.oh * g.ow;
            let values = values.out_slice::<T>(shape, "max_pool2d_into");
            let indices = indices.out_slice::<i64>(shape, "max_pool2d_into");
            values.iter_mut().for_each(|v| *v = T::neg_infinity());
            indices.iter_mut().for_each(|i| *i = -1);
            if s > 0 && g.h * g.w > 0 {
                values
                    .par_chunks_mut(s)
                    .zip(indices.par_chunks_mut(s))
                    .enumerate()
                    .for_each(|(p, (v, idx))| {
                        let plane = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
                        g.windows(|o, i| {
                            if let Some(i) = i {
                                let val = plane[i];
                                if idx[o] < 0 || val > v[o] || (val.is_nan() && !v[o].is_nan()) {
                                    v[o] = val;
                                    idx[o] = i as i64;
                                }
                            }
                        });
                    });
            }
        }
        dispatch_float!(self.dtype(), "max_pool2d", T => kernel::<T>(g, self, &shape, values, indices))
    }

    /// Gradient of [`max_pool2d`](Array::max_pool2d): `self` is the output gradient, routed
    /// to the chosen inputs (summed where windows overlap).
    #[track_caller]
    pub fn max_pool2d_backward(&self, indices: &Array, input_shape: &[usize]) -> Array {
        let mut out = Array::empty(input_shape, self.dtype());
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
            dx.iter_mut().for_each(|v| *v = T::zero());
            if hw > 0 && s > 0 {
                dx.par_chunks_mut(hw).enumerate().for_each(|(p, plane)| {
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

    /// Average pooling. With `count_include_pad`, padded positions count as zeros in the
    /// divisor (PyTorch's default); without, each window divides by its positions inside.
    #[track_caller]
    pub fn avg_pool2d(&self, params: Pool2dParams, count_include_pad: bool) -> Array {
        let g = Geometry::new("avg_pool2d", self.shape(), params);
        let mut out = Array::empty(
            &[self.shape()[0], self.shape()[1], g.oh, g.ow],
            self.dtype(),
        );
        self.avg_pool2d_into(params, count_include_pad, &mut out);
        out
    }

    /// [`avg_pool2d`](Array::avg_pool2d) into `out`.
    #[track_caller]
    pub fn avg_pool2d_into(&self, params: Pool2dParams, count_include_pad: bool, out: &mut Array) {
        let g = Geometry::new("avg_pool2d", self.shape(), params);
        let shape = [self.shape()[0], self.shape()[1], g.oh, g.ow];
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
                out.par_chunks_mut(s).enumerate().for_each(|(p, v)| {
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
        let mut out = Array::empty(input_shape, self.dtype());
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
                dx.par_chunks_mut(g.h * g.w)
                    .enumerate()
                    .for_each(|(p, plane)| {
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
