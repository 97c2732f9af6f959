//! 2-d convolution by im2col/col2im and GEMM, forward and both gradients.
//!
//! For each sample and group the receptive fields are unrolled into a `[C/g·kh·kw, oh·ow]`
//! column matrix; the forward pass is `W_g @ col`, the input gradient `col2im(W_gᵀ @ dY)`,
//! and the weight gradient `Σ_n dY @ colᵀ`. Samples run in parallel, each thread with its own
//! column buffer.

use rayon::prelude::*;

use crate::dtype::{dispatch_float, Float};
use crate::error::fail;
use crate::layout::fmt_shape;
use crate::linalg::{gemm_strided, Mat};
use crate::storage::Buffer;
use crate::Array;

/// Stride, padding, dilation (each `(height, width)`) and groups of a 2-d convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Step between receptive fields.
    pub stride: (usize, usize),
    /// Zeros added on each side.
    pub padding: (usize, usize),
    /// Spacing between kernel taps.
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels split into this many independent parts.
    pub groups: usize,
}

impl Default for Conv2dParams {
    /// Stride 1, no padding, no dilation, one group.
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
        }
    }
}

/// A scratch buffer from the recycling cache; every element is written before it is read.
fn scratch<T: Float>(len: usize) -> Buffer {
    Buffer::for_overwrite(T::DTYPE, len)
}

/// Output size of one spatial dim, or `None` when the kernel does not fit.
pub(crate) fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Option<usize> {
    let span = dilation * (kernel.max(1) - 1) + 1;
    let padded = input + 2 * padding;
    if padded < span || stride == 0 {
        None
    } else {
        Some((padded - span) / stride + 1)
    }
}

/// Sizes of one convolution, checked once.
#[derive(Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    p: Conv2dParams,
}

impl Geometry {
    /// The sizes as the CUDA kernels take them.
    #[cfg(feature = "cuda")]
    fn cuda(&self) -> crate::cuda::source::ConvGeom {
        let (input, taps) = ([self.n, self.c, self.h, self.w], (self.kh, self.kw));
        crate::cuda::conv::geom(&input, taps, (self.oh, self.ow), self.p)
    }

    #[track_caller]
    fn new(op: &str, input: &[usize], weight: &[usize], p: Conv2dParams) -> Geometry {
        if input.len() != 4 || weight.len() != 4 {
            fail(
                op,
                format_args!(
                    "expects input [N, C, H, W] and weight [O, C/groups, kH, kW], got {} and {}",
                    fmt_shape(input),
                    fmt_shape(weight)
                ),
            )
        }
        let (n, c, h, w) = (input[0], input[1], input[2], input[3]);
        let (o, cg, kh, kw) = (weight[0], weight[1], weight[2], weight[3]);
        let g = p.groups;
        if g == 0 || c % g != 0 || o % g != 0 || cg != c / g {
            fail(op, format_args!(
                "input {} and weight {} do not match with {g} groups (need C divisible by groups, weight dim 1 = C/groups, O divisible by groups)",
                fmt_shape(input), fmt_shape(weight)))
        }
        let oh = out_size(h, kh, p.stride.0, p.padding.0, p.dilation.0);
        let ow = out_size(w, kw, p.stride.1, p.padding.1, p.dilation.1);
        match (oh, ow) {
            (Some(oh), Some(ow)) if p.dilation.0 > 0 && p.dilation.1 > 0 => Geometry {
                n,
                c,
                h,
                w,
                o,
                kh,
                kw,
                oh,
                ow,
                p,
            },
            _ => fail(
                op,
                format_args!(
                    "kernel {kh}x{kw} with {p:?} does not fit input {}",
                    fmt_shape(input)
                ),
            ),
        }
    }

    fn cg(&self) -> usize {
        self.c / self.p.groups
    }

    fn og(&self) -> usize {
        self.o / self.p.groups
    }

    /// Rows of a column matrix: C/g·kh·kw.
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }

    fn spatial(&self) -> usize {
        self.oh * self.ow
    }

    /// The output columns `x` whose input column `x·sw + j·dw - pw` lies inside the image,
    /// for kernel column `j`: a range, since the input column grows with `x`.
    fn valid_columns(&self, j: usize) -> std::ops::Range<usize> {
        let (sw, dw, pw) = (self.p.stride.1, self.p.dilation.1, self.p.padding.1);
        let shift = j * dw;
        // first x with x·sw + shift >= pw
        let lo = pw.saturating_sub(shift).div_ceil(sw);
        // first x with x·sw + shift >= pw + w
        let hi = (pw + self.w).saturating_sub(shift).div_ceil(sw);
        lo.min(self.ow)..hi.min(self.ow).max(lo.min(self.ow))
    }

    /// Unrolls channels `c0..c0+C/g` of one sample image `x` ([C, H, W]) into `col`
    /// ([C/g·kh·kw, oh·ow]): inside the image each output row is a slice copy (stride 1) or a
    /// strided gather, with zeros only where the field hangs over the padding.
    fn im2col<T: Float>(&self, x: &[T], c0: usize, col: &mut [T]) {
        let (sh, sw) = self.p.stride;
        let ph = self.p.padding.0;
        let (dh, dw) = self.p.dilation;
        let pw = self.p.padding.1;
        let s = self.spatial();
        for c in 0..self.cg() {
            let plane = &x[(c0 + c) * self.h * self.w..(c0 + c + 1) * self.h * self.w];
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let valid = self.valid_columns(j);
                    let row = &mut col[((c * self.kh + i) * self.kw + j) * s..][..s];
                    for y in 0..self.oh {
                        let iy = (y * sh + i * dh) as isize - ph as isize;
                        let dst = &mut row[y * self.ow..(y + 1) * self.ow];
                        if iy < 0 || iy >= self.h as isize {
                            dst.fill(T::zero());
                            continue;
                        }
                        let src = &plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        dst[..valid.start].fill(T::zero());
                        dst[valid.end..].fill(T::zero());
                        if valid.is_empty() {
                            continue;
                        }
                        // input column of output column `valid.start`
                        let first = valid.start * sw + j * dw - pw;
                        let inside = &mut dst[valid.clone()];
                        if sw == 1 {
                            inside.copy_from_slice(&src[first..first + inside.len()]);
                        } else {
                            for (d, &v) in inside.iter_mut().zip(src[first..].iter().step_by(sw)) {
                                *d = v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds a column matrix back into channels `c0..` of one sample's image gradient.
    fn col2im<T: Float>(&self, col: &[T], c0: usize, dx: &mut [T]) {
        let (sh, sw) = self.p.stride;
        let ph = self.p.padding.0;
        let (dh, dw) = self.p.dilation;
        let pw = self.p.padding.1;
        let s = self.spatial();
        for c in 0..self.cg() {
            let plane = &mut dx[(c0 + c) * self.h * self.w..(c0 + c + 1) * self.h * self.w];
            for i in 0..self.kh {
                for j in 0..self.kw {
                    let valid = self.valid_columns(j);
                    if valid.is_empty() {
                        continue;
                    }
                    let first = valid.start * sw + j * dw - pw;
                    let row = &col[((c * self.kh + i) * self.kw + j) * s..][..s];
                    for y in 0..self.oh {
                        let iy = (y * sh + i * dh) as isize - ph as isize;
                        if iy < 0 || iy >= self.h as isize {
                            continue;
                        }
                        let dst = &mut plane[iy as usize * self.w..(iy as usize + 1) * self.w];
                        let src = &row[y * self.ow..(y + 1) * self.ow][valid.clone()];
                        if sw == 1 {
                            for (d, &v) in dst[first..first + src.len()].iter_mut().zip(src) {
                                *d += v;
                            }
                        } else {
                            for (d, &v) in dst[first..].iter_mut().step_by(sw).zip(src) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Array {
    /// 2-d convolution (cross-correlation, as in every deep-learning library) of
    /// `self: [N, C, H, W]` with `weight: [O, C/groups, kH, kW]`, plus an optional `bias: [O]`;
    /// the result is `[N, O, H', W']`.
    ///
    /// ```
    /// use ferrograd_array::{Array, Conv2dParams};
    /// let x = Array::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    /// let w = Array::from_vec(vec![1.0f32; 4], &[1, 1, 2, 2]);
    /// let y = x.conv2d(&w, None, Conv2dParams { stride: (2, 2), ..Default::default() });
    /// assert_eq!(y.to_vec::<f32>(), vec![10.0, 18.0, 42.0, 50.0]);
    /// ```
    #[track_caller]
    pub fn conv2d(&self, weight: &Array, bias: Option<&Array>, params: Conv2dParams) -> Array {
        let g = Geometry::new("conv2d", self.shape(), weight.shape(), params);
        let mut out = Array::empty_on(&[g.n, g.o, g.oh, g.ow], self.dtype(), self.device());
        self.conv2d_into(weight, bias, params, &mut out);
        out
    }

    /// [`conv2d`](Array::conv2d) into `out`.
    #[track_caller]
    pub fn conv2d_into(
        &self,
        weight: &Array,
        bias: Option<&Array>,
        params: Conv2dParams,
        out: &mut Array,
    ) {
        let g = Geometry::new("conv2d", self.shape(), weight.shape(), params);
        crate::error::same_dtype("conv2d", self.dtype(), weight.dtype());
        if let Some(b) = bias {
            crate::error::same_dtype("conv2d", self.dtype(), b.dtype());
            if b.shape() != [g.o] {
                fail(
                    "conv2d",
                    format_args!(
                        "bias must have shape [{}], got {}",
                        g.o,
                        fmt_shape(b.shape())
                    ),
                )
            }
        }
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !weight.device().is_cpu() {
            return crate::cuda::conv::forward(self, weight, bias, g.cuda(), params, out, "conv2d");
        }
        fn kernel<T: Float>(
            g: Geometry,
            x: &Array,
            w: &Array,
            bias: Option<&Array>,
            out: &mut Array,
        ) {
            let (x, w) = (x.values::<T>("conv2d"), w.values::<T>("conv2d"));
            let bias = bias.map(|b| b.values::<T>("conv2d").into_owned());
            let dst = out.out_slice::<T>(&[g.n, g.o, g.oh, g.ow], "conv2d_into");
            let (k, s, chw) = (g.k(), g.spatial(), g.c * g.h * g.w);
            // Samples go to threads; one sample (or one thread) lets gemm thread instead.
            let split_samples = crate::par::split(g.n, 2);
            let sample = |n: usize, y: &mut [T]| {
                let mut col_buffer = scratch::<T>(k * s);
                let col = T::slice_mut(&mut col_buffer).expect("scratch of T");
                for grp in 0..g.p.groups {
                    g.im2col(&x[n * chw..(n + 1) * chw], grp * g.cg(), col);
                    let yg = &mut y[grp * g.og() * s..(grp + 1) * g.og() * s];
                    // SAFETY: `yg` is an exclusive [Og, S] block, `w` holds group `grp`'s
                    // [Og, K] weights at the offset used, and `col` is a [K, S] buffer.
                    unsafe {
                        gemm_strided(
                            g.og(),
                            s,
                            k,
                            Mat {
                                ptr: yg.as_mut_ptr(),
                                rs: s as isize,
                                cs: 1,
                            },
                            Mat {
                                ptr: w.as_ptr().add(grp * g.og() * k),
                                rs: k as isize,
                                cs: 1,
                            },
                            Mat {
                                ptr: col.as_ptr(),
                                rs: s as isize,
                                cs: 1,
                            },
                            false,
                            !split_samples,
                        );
                    }
                }
                if let Some(b) = &bias {
                    for (o, plane) in y.chunks_mut(s).enumerate() {
                        plane.iter_mut().for_each(|v| *v += b[o]);
                    }
                }
            };
            if g.o * s == 0 {
                return;
            }
            crate::par::chunks(dst, g.o * s, split_samples, &sample);
        }
        dispatch_float!(self.dtype(), "conv2d", T => kernel::<T>(g, self, weight, bias, out))
    }

    /// Gradient of [`conv2d`](Array::conv2d) with respect to its input, given the output
    /// gradient `self: [N, O, H', W']`, the `weight` and the input's shape.
    #[track_caller]
    pub fn conv2d_backward_input(
        &self,
        weight: &Array,
        input_shape: &[usize],
        params: Conv2dParams,
    ) -> Array {
        let mut out = Array::empty_on(input_shape, self.dtype(), self.device());
        self.conv2d_backward_input_into(weight, input_shape, params, &mut out);
        out
    }

    /// [`conv2d_backward_input`](Array::conv2d_backward_input) into `out` (the input's shape).
    #[track_caller]
    pub fn conv2d_backward_input_into(
        &self,
        weight: &Array,
        input_shape: &[usize],
        params: Conv2dParams,
        out: &mut Array,
    ) {
        let g = Geometry::new("conv2d_backward_input", input_shape, weight.shape(), params);
        check_grad_shape("conv2d_backward_input", self, &g);
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !weight.device().is_cpu() {
            let op = "conv2d_backward_input";
            return crate::cuda::conv::backward_input(self, weight, g.cuda(), params, out, op);
        }
        fn kernel<T: Float>(g: Geometry, dy: &Array, w: &Array, out: &mut Array) {
            let (dy, w) = (
                dy.values::<T>("conv2d_backward_input"),
                w.values::<T>("conv2d_backward_input"),
            );
            let dx = out.out_slice::<T>(&[g.n, g.c, g.h, g.w], "conv2d_backward_input_into");
            dx.iter_mut().for_each(|v| *v = T::zero());
            let (k, s, chw) = (g.k(), g.spatial(), g.c * g.h * g.w);
            let split_samples = crate::par::split(g.n, 2);
            let sample = |n: usize, dxn: &mut [T]| {
                let mut col_buffer = scratch::<T>(k * s);
                let col = T::slice_mut(&mut col_buffer).expect("scratch of T");
                for grp in 0..g.p.groups {
                    let dyg = &dy[(n * g.o + grp * g.og()) * s..];
                    // SAFETY: `col` is an exclusive [K, S] buffer; `w`'s group block is
                    // read as the transpose [K, Og] (row stride 1, column stride K); `dyg`
                    // is the [Og, S] gradient block of sample n, group grp.
                    unsafe {
                        gemm_strided(
                            k,
                            s,
                            g.og(),
                            Mat {
                                ptr: col.as_mut_ptr(),
                                rs: s as isize,
                                cs: 1,
                            },
                            Mat {
                                ptr: w.as_ptr().add(grp * g.og() * k),
                                rs: 1,
                                cs: k as isize,
                            },
                            Mat {
                                ptr: dyg.as_ptr(),
                                rs: s as isize,
                                cs: 1,
                            },
                            false,
                            !split_samples,
                        );
                    }
                    g.col2im(col, grp * g.cg(), dxn);
                }
            };
            if chw == 0 || s == 0 {
                return;
            }
            crate::par::chunks(dx, chw, split_samples, &sample);
        }
        dispatch_float!(self.dtype(), "conv2d_backward_input", T => kernel::<T>(g, self, weight, out))
    }

    /// Gradient of [`conv2d`](Array::conv2d) with respect to its weight, given the output
    /// gradient `self`, the `input` and the weight's shape.
    #[track_caller]
    pub fn conv2d_backward_weight(
        &self,
        input: &Array,
        weight_shape: &[usize],
        params: Conv2dParams,
    ) -> Array {
        let mut out = Array::empty_on(weight_shape, self.dtype(), self.device());
        self.conv2d_backward_weight_into(input, weight_shape, params, &mut out);
        out
    }

    /// [`conv2d_backward_weight`](Array::conv2d_backward_weight) into `out` (the weight's
    /// shape). The samples are summed in a fixed grouping, the same on any number of threads
    /// and from run to run: up to eight contiguous runs of samples, each accumulated in order
    /// into a partial gradient (the threads take the runs), then the partials added in order.
    /// The partials are the only scratch.
    #[track_caller]
    pub fn conv2d_backward_weight_into(
        &self,
        input: &Array,
        weight_shape: &[usize],
        params: Conv2dParams,
        out: &mut Array,
    ) {
        let g = Geometry::new(
            "conv2d_backward_weight",
            input.shape(),
            weight_shape,
            params,
        );
        check_grad_shape("conv2d_backward_weight", self, &g);
        #[cfg(feature = "cuda")]
        if !self.device().is_cpu() || !input.device().is_cpu() {
            let (op, g) = ("conv2d_backward_weight", g.cuda());
            return crate::cuda::conv::backward_weight(
                self,
                input,
                weight_shape,
                g,
                params,
                out,
                op,
            );
        }
        fn kernel<T: Float>(g: Geometry, dy: &Array, x: &Array, out: &mut Array) {
            let (dy, x) = (
                dy.values::<T>("conv2d_backward_weight"),
                x.values::<T>("conv2d_backward_weight"),
            );
            let (k, s, chw) = (g.k(), g.spatial(), g.c * g.h * g.w);
            let (og, size) = (g.og(), g.o * k);
            // Each group's gradient is accumulated transposed, dWᵀ [K, Og] += col [K, S] ·
            // dYᵀ [S, Og]: `gemm` runs this orientation 1.2-3x faster than dY · colᵀ on the
            // seed's CNN layers (a tall product with a short inner dim instead of a wide one).
            let parts = g.n.min(WEIGHT_GRAD_PARTS);
            // one run of samples: gemm may split it across the threads itself
            let gemm_parallel = parts == 1;
            let partial = |part: usize| {
                let (mut dw_t, mut col_buffer) = (vec![T::zero(); size], scratch::<T>(k * s));
                let col = T::slice_mut(&mut col_buffer).expect("scratch of T");
                for n in part * g.n / parts..(part + 1) * g.n / parts {
                    for grp in 0..g.p.groups {
                        g.im2col(&x[n * chw..(n + 1) * chw], grp * g.cg(), col);
                        let dyg = &dy[(n * g.o + grp * og) * s..];
                        // SAFETY: `dw_t`'s group block is an exclusive [K, Og] matrix;
                        // `col` is [K, S]; `dyg` is [Og, S], read transposed as [S, Og].
                        unsafe {
                            gemm_strided(
                                k,
                                og,
                                s,
                                Mat {
                                    ptr: dw_t.as_mut_ptr().add(grp * og * k),
                                    rs: og as isize,
                                    cs: 1,
                                },
                                Mat {
                                    ptr: col.as_ptr(),
                                    rs: s as isize,
                                    cs: 1,
                                },
                                Mat {
                                    ptr: dyg.as_ptr(),
                                    rs: 1,
                                    cs: s as isize,
                                },
                                true,
                                gemm_parallel,
                            );
                        }
                    }
                }
                dw_t
            };
            let partials: Vec<Vec<T>> = if crate::par::split(parts, 2) {
                (0..parts).into_par_iter().map(partial).collect()
            } else {
                (0..parts).map(partial).collect()
            };
            let mut partials = partials.into_iter();
            let mut dw_t = partials.next().unwrap_or_else(|| vec![T::zero(); size]);
            for more in partials {
                dw_t.iter_mut().zip(&more).for_each(|(a, &b)| *a += b);
            }
            let dw = out.out_slice::<T>(&[g.o, g.cg(), g.kh, g.kw], "conv2d_backward_weight_into");
            if size > 0 {
                for (src, dst) in dw_t.chunks(og * k).zip(dw.chunks_mut(og * k)) {
                    transpose::transpose(src, dst, og, k);
                }
            }
        }
        dispatch_float!(self.dtype(), "conv2d_backward_weight", T => kernel::<T>(g, self, input, out))
    }
}

/// The most runs of samples [`Array::conv2d_backward_weight_into`] sums apart: a fixed
/// number, not the pool's thread count, so that the gradient's bits do not depend on it
/// (eight runs keep eight cores busy, and cost seven additions of a weight-sized partial).
const WEIGHT_GRAD_PARTS: usize = 8;

#[track_caller]
fn check_grad_shape(op: &str, dy: &Array, g: &Geometry) {
    if dy.shape() != [g.n, g.o, g.oh, g.ow] {
        fail(
            op,
            format_args!(
                "output gradient has shape {}, the convolution's output has [{}, {}, {}, {}]",
                fmt_shape(dy.shape()),
                g.n,
                g.o,
                g.oh,
                g.ow
            ),
        )
    }
}
