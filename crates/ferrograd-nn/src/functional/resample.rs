//! Resampling over the spatial dims of `[N, C, H, W]` (and `[N, C, L]`): interpolation
//! (nearest, bilinear), adaptive pooling, `unfold`/`fold` (im2col and its adjoint), max
//! pooling with dilation and `ceil_mode`, and transposed convolution.
//!
//! Each is a composition of core primitives, so gradients (of any order) are inferred and
//! optimize mode sees inside: linear resampling (bilinear, adaptive average) is a product
//! with a constant interpolation matrix on each spatial dim, `H' x H` then `W' x W`, which
//! is exact because those maps are separable; nearest and max pooling gather.

use ferrograd::{Array, Conv2dParams, DType, Step, Tensor};

/// Panics naming the op, the problem, the input's shape and the caller's line.
#[track_caller]
fn fail(op: &str, x: &Tensor, message: std::fmt::Arguments<'_>) -> ! {
    crate::fail!("{op}: {message} (input of shape {:?})", x.shape())
}

/// How [`interpolate`] computes the new samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// The sample at `floor(i · in / out)` (PyTorch's `"nearest"`).
    Nearest,
    /// Linear in each spatial dim (PyTorch's `"bilinear"` for `[N, C, H, W]`, `"linear"`
    /// for `[N, C, L]`). With `align_corners` the corner samples of input and output
    /// coincide; without (PyTorch's default) the pixel centres are scaled.
    Linear {
        /// PyTorch's `align_corners`.
        align_corners: bool,
    },
}

/// The `[out, size]` matrix of linear interpolation weights along one dim.
fn linear_weights(size: usize, out: usize, align_corners: bool, dtype: DType) -> Tensor {
    let mut m = vec![0.0f64; out * size];
    for i in 0..out {
        let src = if align_corners {
            if out > 1 {
                i as f64 * (size - 1) as f64 / (out - 1) as f64
            } else {
                0.0
            }
        } else {
            ((i as f64 + 0.5) * size as f64 / out as f64 - 0.5).max(0.0)
        };
        let i0 = (src.floor() as usize).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        let lambda = src - i0 as f64;
        m[i * size + i0] += 1.0 - lambda;
        m[i * size + i1] += lambda;
    }
    Tensor::new(Array::from_vec(m, &[out, size]).to_dtype(dtype))
}

/// The `[out, size]` matrix of adaptive average pooling along one dim: row `i` averages
/// `floor(i · size / out) .. ceil((i + 1) · size / out)`.
fn adaptive_weights(size: usize, out: usize, dtype: DType) -> Tensor {
    let mut m = vec![0.0f64; out * size];
    for (i, (start, end)) in adaptive_windows(size, out).into_iter().enumerate() {
        for j in start..end {
            m[i * size + j] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::new(Array::from_vec(m, &[out, size]).to_dtype(dtype))
}

/// The windows of adaptive pooling along a dim of `size` to `out` outputs (PyTorch's).
fn adaptive_windows(size: usize, out: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|i| ((i * size) / out, ((i + 1) * size).div_ceil(out)))
        .collect()
}

/// The spatial dims of `x` (`[N, C, L]` or `[N, C, H, W]`) checked against `out`'s length.
#[track_caller]
fn spatial(op: &str, x: &Tensor, out: &[usize]) -> Vec<usize> {
    if !(3..=4).contains(&x.ndim()) || out.len() != x.ndim() - 2 {
        fail(
            op,
            x,
            format_args!(
                "expects [N, C, L] or [N, C, H, W] and one output size per spatial dim, got {} \
                 output sizes",
                out.len()
            ),
        );
    }
    if out.contains(&0) || x.shape()[2..].contains(&0) {
        fail(
            op,
            x,
            format_args!("sizes must be positive, got output {out:?}"),
        );
    }
    x.shape()[2..].to_vec()
}

/// Applies `[out, size]` matrices along each spatial dim: `y = M_H x M_Wᵀ`.
fn separable(x: &Tensor, matrices: &[Tensor]) -> Tensor {
    match matrices {
        [m] => x.matmul(&m.mt()),
        [mh, mw] => mh.matmul(x).matmul(&mw.mt()),
        _ => unreachable!("one or two spatial dims"),
    }
}

/// Resizes the spatial dims of `[N, C, L]` or `[N, C, H, W]` to `size` (PyTorch's
/// `F.interpolate(x, size=..., mode=...)`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Interpolation};
/// let x = Tensor::from_vec(vec![1.0f64, 3.0], &[1, 1, 2]);
/// let near = F::interpolate(&x, &[4], Interpolation::Nearest);
/// assert_eq!(near.to_vec::<f64>(), vec![1.0, 1.0, 3.0, 3.0]);
/// let lin = F::interpolate(&x, &[4], Interpolation::Linear { align_corners: false });
/// assert_eq!(lin.to_vec::<f64>(), vec![1.0, 1.5, 2.5, 3.0]);
/// ```
#[track_caller]
pub fn interpolate(x: &Tensor, size: &[usize], mode: Interpolation) -> Tensor {
    let sizes = spatial("interpolate", x, size);
    match mode {
        Interpolation::Nearest => {
            let mut y = x.clone();
            for (k, (&n, &o)) in sizes.iter().zip(size).enumerate() {
                let picks: Vec<i64> = (0..o)
                    .map(|i| (((i * n) as f64 / o as f64).floor() as usize).min(n - 1) as i64)
                    .collect();
                y = y.index_select(2 + k, &Tensor::from_vec(picks, &[o]));
            }
            y
        }
        Interpolation::Linear { align_corners } => {
            let m: Vec<Tensor> = sizes
                .iter()
                .zip(size)
                .map(|(&n, &o)| linear_weights(n, o, align_corners, x.dtype()))
                .collect();
            separable(x, &m)
        }
    }
}

/// Adaptive average pooling of `[N, C, L]` or `[N, C, H, W]` to the spatial `size`
/// (PyTorch's `adaptive_avg_pool1d` / `2d`): output `i` averages the input window
/// `floor(i · n / out) .. ceil((i + 1) · n / out)`.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0, 5.0], &[1, 1, 5]);
/// assert_eq!(F::adaptive_avg_pool(&x, &[2]).to_vec::<f64>(), vec![2.0, 4.0]);
/// ```
#[track_caller]
pub fn adaptive_avg_pool(x: &Tensor, size: &[usize]) -> Tensor {
    let sizes = spatial("adaptive_avg_pool", x, size);
    let m: Vec<Tensor> = sizes
        .iter()
        .zip(size)
        .map(|(&n, &o)| adaptive_weights(n, o, x.dtype()))
        .collect();
    separable(x, &m)
}

/// Adaptive max pooling of `[N, C, L]` or `[N, C, H, W]` to the spatial `size` (PyTorch's
/// `adaptive_max_pool1d` / `2d`), with the windows of [`adaptive_avg_pool`]; the maximum
/// of a rectangle is the maximum of its rows' maxima, so it pools one dim at a time, the
/// last first. The gradient goes to the first maximum of each window in row-major order, as
/// in PyTorch and [`max_pool2d`](crate::functional::max_pool2d).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![1.0f64, 5.0, 3.0, 4.0, 2.0], &[1, 1, 5]);
/// assert_eq!(F::adaptive_max_pool(&x, &[2]).to_vec::<f64>(), vec![5.0, 4.0]);
/// ```
#[track_caller]
pub fn adaptive_max_pool(x: &Tensor, size: &[usize]) -> Tensor {
    let sizes = spatial("adaptive_max_pool", x, size);
    let mut y = x.clone();
    // (each row's first maximum, then the first row holding the window's: row-major order)
    for (k, (&n, &o)) in sizes.iter().zip(size).enumerate().rev() {
        let dim = 2 + k;
        let pieces: Vec<Tensor> = adaptive_windows(n, o)
            .into_iter()
            .map(|(s, e)| y.narrow(dim, s, e - s).max_dim(dim, true).0)
            .collect();
        y = Tensor::cat(&pieces, dim);
    }
    y
}

/// The geometry of a sliding window along one dim.
#[derive(Clone, Copy, Debug)]
struct Window {
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl Window {
    /// The number of windows over `n` (rounding up with `ceil_mode`, as PyTorch: the last
    /// window must start inside the input or its left padding).
    fn count(self, n: usize, ceil_mode: bool) -> Option<usize> {
        let span = self.dilation * (self.kernel - 1) + 1;
        let room = (n + 2 * self.padding).checked_sub(span)?;
        let mut out = if ceil_mode {
            room.div_ceil(self.stride) + 1
        } else {
            room / self.stride + 1
        };
        if ceil_mode && (out - 1) * self.stride >= n + self.padding {
            out -= 1;
        }
        Some(out)
    }
}

/// `[N, C, kH·kW, H', W']`: the window taps of a padded `[N, C, H, W]` (`fill` in the
/// padding), tap `(i, j)` a strided slice.
fn taps(x: &Tensor, win: [Window; 2], out: [usize; 2], fill: f64) -> Tensor {
    let [wh, ww] = win;
    // pad (and extend on the right for ceil_mode's last windows)
    let need = |w: Window, o: usize| (o - 1) * w.stride + w.dilation * (w.kernel - 1) + 1;
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let ph = need(wh, out[0]).max(h + 2 * wh.padding);
    let pw = need(ww, out[1]).max(w + 2 * ww.padding);
    let padded = Tensor::full(&[n, c, ph, pw], fill, x.dtype()).at_put(
        (
            ..,
            ..,
            wh.padding..wh.padding + h,
            ww.padding..ww.padding + w,
        ),
        x,
    );
    let mut all = Vec::with_capacity(wh.kernel * ww.kernel);
    for i in 0..wh.kernel {
        for j in 0..ww.kernel {
            let (r0, c0) = (i * wh.dilation, j * ww.dilation);
            let rows = Step(r0..r0 + (out[0] - 1) * wh.stride + 1, wh.stride as i64);
            let cols = Step(c0..c0 + (out[1] - 1) * ww.stride + 1, ww.stride as i64);
            all.push(padded.at((.., .., rows, cols)));
        }
    }
    Tensor::stack(&all, 2)
}

/// Sliding-window parameters of [`unfold`], [`fold`] and [`max_pool2d_with`]: kernel,
/// stride, padding and dilation per spatial dim, and PyTorch's `ceil_mode` for pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Implicit padding on each side.
    pub padding: (usize, usize),
    /// Spacing between taps.
    pub dilation: (usize, usize),
    /// Count a last, partial window (pooling only).
    pub ceil_mode: bool,
}

impl Sliding {
    /// `k x k` windows at stride 1, no padding or dilation.
    pub fn kernel(k: usize) -> Sliding {
        Sliding {
            kernel: (k, k),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
        }
    }

    fn windows(self) -> [Window; 2] {
        [
            Window {
                kernel: self.kernel.0,
                stride: self.stride.0,
                padding: self.padding.0,
                dilation: self.dilation.0,
            },
            Window {
                kernel: self.kernel.1,
                stride: self.stride.1,
                padding: self.padding.1,
                dilation: self.dilation.1,
            },
        ]
    }

    /// The output size over `[h, w]`, or a panic naming the op.
    #[track_caller]
    fn out(self, op: &str, x: &Tensor, h: usize, w: usize) -> [usize; 2] {
        let [wh, ww] = self.windows();
        let positive = [wh, ww]
            .iter()
            .all(|w| w.kernel > 0 && w.stride > 0 && w.dilation > 0);
        match (
            positive,
            wh.count(h, self.ceil_mode),
            ww.count(w, self.ceil_mode),
        ) {
            (true, Some(a), Some(b)) => [a, b],
            _ => fail(
                op,
                x,
                format_args!("no window of {self:?} fits a {h}x{w} input"),
            ),
        }
    }
}

/// im2col: the sliding `kH x kW` windows of `[N, C, H, W]` as columns, `[N, C·kH·kW, L]`
/// with `L` the number of windows (PyTorch's `F.unfold`; channel-major, then kernel row,
/// then kernel column, as there).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Sliding};
/// let x = Tensor::from_vec((0..9).map(f64::from).collect(), &[1, 1, 3, 3]);
/// let cols = F::unfold(&x, Sliding::kernel(2));
/// assert_eq!(cols.shape(), &[1, 4, 4]);
/// assert_eq!(cols.to_vec::<f64>()[..4], [0.0, 1.0, 3.0, 4.0]); // top-left tap of each window
/// ```
#[track_caller]
pub fn unfold(x: &Tensor, params: Sliding) -> Tensor {
    if x.ndim() != 4 {
        fail("unfold", x, format_args!("expects [N, C, H, W]"));
    }
    let params = Sliding {
        ceil_mode: false,
        ..params
    };
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let out = params.out("unfold", x, h, w);
    let t = taps(x, params.windows(), out, 0.0);
    let k = params.kernel.0 * params.kernel.1;
    t.reshape(&[n, c * k, out[0] * out[1]])
}

/// col2im, the adjoint of [`unfold`]: sums the columns `[N, C·kH·kW, L]` back into
/// `[N, C, H, W]` (`output_size = (H, W)`), overlapping taps adding up (PyTorch's
/// `F.fold`).
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Sliding};
/// let x = Tensor::ones(&[1, 1, 3, 3], ferrograd::DType::F64);
/// let counts = F::fold(&F::unfold(&x, Sliding::kernel(2)), (3, 3), Sliding::kernel(2));
/// assert_eq!(counts.to_vec::<f64>(), vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
/// ```
#[track_caller]
pub fn fold(columns: &Tensor, output_size: (usize, usize), params: Sliding) -> Tensor {
    let params = Sliding {
        ceil_mode: false,
        ..params
    };
    let (h, w) = output_size;
    let k = params.kernel.0 * params.kernel.1;
    if columns.ndim() != 3 || k == 0 || !columns.shape()[1].is_multiple_of(k) {
        fail(
            "fold",
            columns,
            format_args!(
                "expects [N, C·kH·kW, L] for a kernel of {:?}",
                params.kernel
            ),
        );
    }
    let out = params.out("fold", columns, h, w);
    let (n, c) = (columns.shape()[0], columns.shape()[1] / k);
    if columns.shape()[2] != out[0] * out[1] {
        fail(
            "fold",
            columns,
            format_args!(
                "{} columns, but {:?} windows fit the output size {output_size:?}",
                columns.shape()[2],
                out
            ),
        );
    }
    let [wh, ww] = params.windows();
    let cols = columns.reshape(&[n, c, params.kernel.0, params.kernel.1, out[0], out[1]]);
    let (ph, pw) = (h + 2 * wh.padding, w + 2 * ww.padding);
    let mut padded = super::constant_like(columns, &[n, c, ph, pw], 0.0);
    for i in 0..wh.kernel {
        for j in 0..ww.kernel {
            let (r0, c0) = (i * wh.dilation, j * ww.dilation);
            let rows = Step(r0..r0 + (out[0] - 1) * wh.stride + 1, wh.stride as i64);
            let cols_at = Step(c0..c0 + (out[1] - 1) * ww.stride + 1, ww.stride as i64);
            padded = padded.at_add((.., .., rows, cols_at), &cols.at((.., .., i, j)));
        }
    }
    padded.at((
        ..,
        ..,
        wh.padding..wh.padding + h,
        ww.padding..ww.padding + w,
    ))
}

/// Max pooling of `[N, C, H, W]` with dilation and `ceil_mode` (PyTorch's `F.max_pool2d`
/// with every option; padding counts as -∞). The gradient goes to each window's first
/// maximum. [`max_pool2d`](crate::functional::max_pool2d) is the fused kernel for the
/// common case.
///
/// ```
/// use ferrograd::Tensor;
/// use ferrograd_nn::functional::{self as F, Sliding};
/// let x = Tensor::from_vec((0..25).map(f64::from).collect(), &[1, 1, 5, 5]);
/// let p = Sliding { stride: (2, 2), ceil_mode: true, ..Sliding::kernel(2) };
/// assert_eq!(F::max_pool2d_with(&x, p).to_vec::<f64>(), vec![6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0]);
/// ```
#[track_caller]
pub fn max_pool2d_with(x: &Tensor, params: Sliding) -> Tensor {
    if x.ndim() != 4 {
        fail("max_pool2d", x, format_args!("expects [N, C, H, W]"));
    }
    if params.padding.0 * 2 > params.kernel.0 || params.padding.1 * 2 > params.kernel.1 {
        fail(
            "max_pool2d",
            x,
            format_args!(
                "padding {:?} must be at most half the kernel {:?}",
                params.padding, params.kernel
            ),
        );
    }
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let out = params.out("max_pool2d", x, h, w);
    let t = taps(x, params.windows(), out, f64::NEG_INFINITY);
    t.max_dim(2, false).0
}

/// Transposed 2-d convolution (PyTorch's `F.conv_transpose2d`): see
/// [`Tensor::conv_transpose2d`].
#[track_caller]
pub fn conv_transpose2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    output_padding: (usize, usize),
) -> Tensor {
    x.conv_transpose2d(weight, bias, params, output_padding)
}

/// Transposed 1-d convolution of `[N, C_in, L]` with `[C_in, C_out / groups, K]`
/// (PyTorch's `F.conv_transpose1d`; the second components of `params` and
/// `output_padding` apply), as a transposed 2-d convolution of height 1.
///
/// ```
/// use ferrograd::{Conv2dParams, Tensor};
/// use ferrograd_nn::functional as F;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[1, 1, 2]);
/// let w = Tensor::from_vec(vec![1.0f64, 10.0], &[1, 1, 2]);
/// let p = Conv2dParams { stride: (1, 2), ..Conv2dParams::default() };
/// assert_eq!(F::conv_transpose1d(&x, &w, None, p, 0).to_vec::<f64>(), vec![1.0, 10.0, 2.0, 20.0]);
/// ```
#[track_caller]
pub fn conv_transpose1d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    params: Conv2dParams,
    output_padding: usize,
) -> Tensor {
    if x.ndim() != 3 || weight.ndim() != 3 {
        fail(
            "conv_transpose1d",
            x,
            format_args!(
                "needs input [N, C_in, L] and weight [C_in, C_out/groups, K], got weight {:?}",
                weight.shape()
            ),
        );
    }
    let params = super::conv::height_one(params);
    x.unsqueeze(2)
        .conv_transpose2d(&weight.unsqueeze(2), bias, params, (0, output_padding))
        .squeeze_dim(2)
}
