//! `where_cond`: choose between two arrays by a bool mask, all three broadcast.

use rayon::prelude::*;

use super::{stretch, tile, Operand, Source, CHUNK, PARALLEL_MIN};
use crate::dtype::{dispatch_any, Element};
use crate::error::fail;
use crate::layout::{broadcast_shapes, fmt_shape};
use crate::Array;

/// `dst[i] = c[i] ? a[i] : b[i]`, one loop per form of the operands.
fn select<T: Copy>(dst: &mut [T], c: &[bool], a: Operand<'_, T>, b: Operand<'_, T>) {
    let pick = |c: bool, a: T, b: T| if c { a } else { b };
    match (a, b) {
        (Operand::Slice(a), Operand::Slice(b)) => {
            for (((d, &c), &a), &b) in dst.iter_mut().zip(c).zip(a).zip(b) {
                *d = pick(c, a, b)
            }
        }
        (Operand::Slice(a), Operand::Splat(b)) => {
            for ((d, &c), &a) in dst.iter_mut().zip(c).zip(a) {
                *d = pick(c, a, b)
            }
        }
        (Operand::Splat(a), Operand::Slice(b)) => {
            for ((d, &c), &b) in dst.iter_mut().zip(c).zip(b) {
                *d = pick(c, a, b)
            }
        }
        (Operand::Splat(a), Operand::Splat(b)) => {
            for (d, &c) in dst.iter_mut().zip(c) {
                *d = pick(c, a, b)
            }
        }
    }
}

impl Array {
    /// `cond ? a : b` elementwise (PyTorch's `torch.where(cond, a, b)`); `self` is the bool
    /// condition, `a` and `b` share a dtype, all three broadcast together. Called as a
    /// method (`cond.where_cond(&a, &b)`) or as `Array::where_cond(&cond, &a, &b)`.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![-1.0f64, 2.0, -3.0], &[3]);
    /// let y = Array::where_cond(&x.gt_scalar(0.0), &x, &x.neg());
    /// assert_eq!(y.to_vec::<f64>(), vec![1.0, 2.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn where_cond(&self, a: &Array, b: &Array) -> Array {
        let cond = self;
        let shape = Array::where_shape(cond, a, b);
        let device = crate::error::same_device("where", &[cond, a, b]);
        let mut out = Array::empty_on(&shape, a.dtype(), device);
        Array::where_cond_into(cond, a, b, &mut out);
        out
    }

    #[track_caller]
    fn where_shape(cond: &Array, a: &Array, b: &Array) -> crate::layout::Shape {
        cond.expect_bool("where");
        crate::error::same_dtype("where", a.dtype(), b.dtype());
        match broadcast_shapes(a.shape(), b.shape())
            .and_then(|s| broadcast_shapes(&s, cond.shape()))
        {
            Some(s) => s,
            None => fail(
                "where",
                format_args!(
                    "shapes {} (cond), {} and {} cannot be broadcast together",
                    fmt_shape(cond.shape()),
                    fmt_shape(a.shape()),
                    fmt_shape(b.shape())
                ),
            ),
        }
    }

    /// [`where_cond`](Array::where_cond) into `out`.
    #[track_caller]
    pub fn where_cond_into(&self, a: &Array, b: &Array, out: &mut Array) {
        let cond = self;
        let shape = Array::where_shape(cond, a, b);
        #[cfg(feature = "cuda")]
        if [cond, a, b].iter().any(|x| !x.device().is_cpu()) {
            return crate::cuda::elementwise::select(cond, a, b, &shape, out, "where_cond");
        }
        #[track_caller]
        fn kernel<T: Element>(shape: &[usize], c: &Array, a: &Array, b: &Array, out: &mut Array) {
            let op = "where_cond";
            let dst = out.out_slice::<T>(shape, op);
            let n = dst.len();
            let (sc, sa, sb) = (
                Source::<bool>::of(c, shape, n, op),
                Source::<T>::of(a, shape, n, op),
                Source::<T>::of(b, shape, n, op),
            );
            // tile by tile, as `zip_into` runs: the mask and the strided operands gathered
            let range = |start: usize, dst: &mut [T]| {
                let tile = tile::<T>().min(dst.len()).max(1);
                // buffers only for what is gathered (a splat mask is filled once per tile)
                let (mut bc, mut ba, mut bb) = (
                    vec![
                        false;
                        if matches!(sc, Source::Slice(_)) {
                            0
                        } else {
                            tile
                        }
                    ],
                    vec![T::default(); if sa.is_strided() { tile } else { 0 }],
                    vec![T::default(); if sb.is_strided() { tile } else { 0 }],
                );
                let mut at = 0;
                while at < dst.len() {
                    let (from, rest) = (start + at, dst.len() - at);
                    let direct = sc
                        .direct(from, rest, false)
                        .min(sa.direct(from, rest, true))
                        .min(sb.direct(from, rest, true));
                    let m = stretch(direct, rest, tile);
                    let c = sc.read(from, m, &mut bc);
                    let (a, b) = (sa.operand(from, m, &mut ba), sb.operand(from, m, &mut bb));
                    select(&mut dst[at..at + m], c, a, b);
                    at += m;
                }
            };
            if crate::par::split(n, PARALLEL_MIN) {
                dst.par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(k, d)| range(k * CHUNK, d));
            } else {
                range(0, dst);
            }
        }
        dispatch_any!(a.dtype(), T => kernel::<T>(&shape, cond, a, b, out))
    }

    /// [`masked_fill`](Array::masked_fill) into `out`.
    #[track_caller]
    pub fn masked_fill_into(&self, mask: &Array, value: f64, out: &mut Array) {
        let filler = Array::full(&[], value, self.dtype());
        Array::where_cond_into(mask, &filler, self, out)
    }

    /// `value` where `mask` is true, `self` elsewhere (`mask` broadcasts to `self`).
    #[track_caller]
    pub fn masked_fill(&self, mask: &Array, value: f64) -> Array {
        let filler = Array::full(&[], value, self.dtype());
        let out = Array::where_cond(mask, &filler, self);
        if out.shape() != self.shape() {
            fail(
                "masked_fill",
                format_args!(
                    "mask of shape {} does not broadcast to {}",
                    fmt_shape(mask.shape()),
                    fmt_shape(self.shape())
                ),
            )
        }
        out
    }
}
