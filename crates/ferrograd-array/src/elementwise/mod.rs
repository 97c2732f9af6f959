//! Elementwise kernels with NumPy broadcasting.
//!
//! Two paths: contiguous operands (or a one-element operand) run as straight loops over
//! slices that the compiler vectorises, split across threads when large; everything else
//! (strided views, broadcasts) walks offsets with `for_each_offsets`.

mod binary;
mod ops;
mod ternary;
mod unary;

use rayon::prelude::*;

use crate::dtype::Element;
use crate::error::fail;
use crate::layout::{
    broadcast_shapes, broadcast_strides, fmt_shape, for_each_offsets, for_each_row_offsets,
    same_shape, Shape, Strides,
};
use crate::math::with_simd;
use crate::Array;

/// Work below this many elements never leaves the calling thread.
///
/// Timed alone, an op splits profitably from about 2·10⁵ elements on 2 cores (a 3·10⁵-element
/// `sub`: 37 µs on one thread, 27 µs split), but that counts only the op. Inside a training
/// step each split also wakes the pool's threads, which then spin for a while beside the
/// calling thread's serial work that follows. The seed suite's LSTM (its 240k-element weight
/// gradient is accumulated 33 times per step and updated by SGD) took 3.7-4.4 ms per step
/// with splits from 131k elements and 2.6 ms from 512k, on one thread also 2.6 ms; the batched
/// LSTM 11.9-12.2 → 10.0-10.3 ms; the CNN and wide MLP rows, whose big ops are past 512k,
/// stayed level (`cargo bench -p ferrograd-nn --bench suite`, 3 alternating passes).
pub(crate) const PARALLEL_MIN: usize = 1 << 19;
const CHUNK: usize = 1 << 14;

/// Transcendental functions (exp, log, tanh, sigmoid, sin, ...) cost 0.15-5 ns per element,
/// so splitting pays off sooner: timed alone on 10⁵ f32 elements with AVX-512, exp took 24 µs
/// on one thread and 18-19 µs split, tanh 17.5 and 15-19 µs (waking the second thread costs
/// about 10 µs). Within a step the same costs as for [`PARALLEL_MIN`] apply, so the bound is
/// half of that one rather than the alone-measured crossover.
pub(crate) const PARALLEL_MIN_TRANSCENDENTAL: usize = 1 << 18;

/// Runs `run` on matching chunks of `dst` and `src` across threads. The kernel comes as a
/// `dyn` (called once per chunk of [`CHUNK`] elements), so rayon's machinery is compiled once
/// per element type rather than once per kernel: most of this crate's LLVM IR was copies of
/// it (`cargo llvm-lines`).
fn par_map<T: Element, U: Element>(
    dst: &mut [U],
    src: &[T],
    run: &(dyn Fn(&mut [U], &[T]) + Sync),
) {
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| run(d, s));
}

/// A kernel over one chunk of an output and two inputs.
type ZipChunk<'a, T, U> = dyn Fn(&mut [U], &[T], &[T]) + Sync + 'a;

/// [`par_map`] with two sources.
fn par_zip<T: Element, U: Element>(dst: &mut [U], x: &[T], y: &[T], run: &ZipChunk<'_, T, U>) {
    dst.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK)))
        .for_each(|(d, (x, y))| run(d, x, y));
}

/// `out[i] = f(a[i])`, `out` already shaped like `a`; contiguous inputs of at least
/// `parallel_min` elements are split across threads.
#[track_caller]
pub(crate) fn map_into<T: Element, U: Element>(
    a: &Array,
    out: &mut Array,
    op: &str,
    parallel_min: usize,
    f: impl Fn(T) -> U + Sync,
) {
    if a.is_transposed_block() {
        // A tiled copy first, then the vectorised path: far faster than a strided walk.
        return map_into(&a.copy(), out, op, parallel_min, f);
    }
    let dst = out.out_slice::<U>(a.shape(), op);
    if let Some(src) = a.contiguous_slice::<T>(op) {
        let run =
            |d: &mut [U], s: &[T]| with_simd(|| d.iter_mut().zip(s).for_each(|(d, &s)| *d = f(s)));
        if crate::par::split(src.len(), parallel_min) {
            par_map(dst, src, &run);
        } else {
            run(dst, src);
        }
    } else {
        let data = a.storage_slice::<T>(op);
        let (shape, [st]) = coalesce(a.shape(), [a.strides()]);
        let nd = shape.len();
        if nd > 1 && st[nd - 1] == 1 && shape[nd - 1] >= 8 {
            // Contiguous rows (a narrowed or selected view): a vectorised loop per row.
            let inner = shape[nd - 1];
            let mut rows = dst.chunks_exact_mut(inner);
            for_each_offsets(&shape[..nd - 1], [&st[..nd - 1]], [a.offset()], |[o]| {
                let d = rows.next().expect("one output row per outer index");
                with_simd(|| {
                    for (d, &s) in d.iter_mut().zip(&data[o..o + inner]) {
                        *d = f(s)
                    }
                })
            });
            return;
        }
        // each row under `with_simd`: the vector path's features (FMA above all, which the
        // polynomial kernels use) reach only code compiled inside it
        let mut rows = dst.iter_mut();
        for_each_row_offsets(&shape, [&st], [a.offset()], |[o], len, [s]| {
            with_simd(|| {
                for (j, d) in rows.by_ref().take(len).enumerate() {
                    *d = f(data[(o + j as isize * s) as usize]);
                }
            })
        });
    }
}

/// `shape` with size-1 dims dropped and neighbouring dims merged where every operand steps
/// through them as through one dim (its outer stride is the inner stride times the inner
/// size), so the innermost run is as long as the layouts allow. Offsets are unchanged.
pub(crate) fn coalesce<const N: usize>(
    shape: &[usize],
    strides: [&[isize]; N],
) -> (Shape, [Strides; N]) {
    let mut out_shape = Shape::new();
    let mut out: [Strides; N] = std::array::from_fn(|_| Strides::new());
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let merge = match out_shape.last() {
            Some(&last_size) => {
                (0..N).all(|k| {
                    let last = *out[k].last().expect("same length as the shape");
                    last == strides[k][d] * shape[d] as isize
                }) && last_size > 0
            }
            None => false,
        };
        if merge {
            *out_shape.last_mut().expect("checked") *= shape[d];
            for k in 0..N {
                *out[k].last_mut().expect("checked") = strides[k][d];
            }
        } else {
            out_shape.push(shape[d]);
            for k in 0..N {
                out[k].push(strides[k][d]);
            }
        }
    }
    (out_shape, out)
}

/// The broadcast shape of `a` and `b`, panicking with both shapes when incompatible.
#[track_caller]
pub(crate) fn broadcast_pair(op: &str, a: &[usize], b: &[usize]) -> Shape {
    match broadcast_shapes(a, b) {
        Some(s) => s,
        None => fail(
            op,
            format_args!(
                "shapes {} and {} cannot be broadcast together",
                fmt_shape(a),
                fmt_shape(b)
            ),
        ),
    }
}

/// `out[i] = f(a[i], b[i])` with broadcasting; `out` already has the broadcast shape.
#[track_caller]
pub(crate) fn zip_into<T: Element, U: Element>(
    a: &Array,
    b: &Array,
    out: &mut Array,
    op: &str,
    f: impl Fn(T, T) -> U + Sync,
) {
    crate::error::same_dtype(op, a.dtype(), b.dtype());
    let shape = broadcast_pair(op, a.shape(), b.shape());
    // Full-size transposed operands: a tiled copy first, then the vectorised path.
    if a.is_transposed_block() && same_shape(a.shape(), &shape) {
        return zip_into(&a.copy(), b, out, op, f);
    }
    if b.is_transposed_block() && same_shape(b.shape(), &shape) {
        return zip_into(a, &b.copy(), out, op, f);
    }
    let dst = out.out_slice::<U>(&shape, op);
    let (sa, sb) = (a.contiguous_slice::<T>(op), b.contiguous_slice::<T>(op));
    match (sa, sb) {
        (Some(x), Some(y)) if x.len() == dst.len() && y.len() == dst.len() => {
            let run = |d: &mut [U], x: &[T], y: &[T]| {
                with_simd(|| {
                    for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
                        *d = f(x, y)
                    }
                })
            };
            if crate::par::split(dst.len(), PARALLEL_MIN) {
                par_zip(dst, x, y, &run);
            } else {
                run(dst, x, y);
            }
        }
        (Some(x), Some(y)) if y.len() == 1 && x.len() == dst.len() => {
            let y = y[0];
            with_simd(|| dst.iter_mut().zip(x).for_each(|(d, &x)| *d = f(x, y)));
        }
        (Some(x), Some(y)) if x.len() == 1 && y.len() == dst.len() => {
            let x = x[0];
            with_simd(|| dst.iter_mut().zip(y).for_each(|(d, &y)| *d = f(x, y)));
        }
        _ => {
            let (da, db) = (a.storage_slice::<T>(op), b.storage_slice::<T>(op));
            let st_a = broadcast_strides(a.shape(), a.strides(), &shape);
            let st_b = broadcast_strides(b.shape(), b.strides(), &shape);
            let (shape, st) = coalesce(&shape, [&st_a, &st_b]);
            let [st_a, st_b] = &st;
            let nd = shape.len();
            let inner = shape.last().copied().unwrap_or(1);
            let unit = |s: &[isize]| nd > 0 && (s[nd - 1] == 0 || s[nd - 1] == 1);
            if inner >= 8 && unit(st_a) && unit(st_b) {
                // Rows that are contiguous or one repeated value on each side (a bias row, a
                // per-channel scale): a vectorised loop per row instead of an offset walk.
                let (a_row, b_row) = (st_a[nd - 1] == 1, st_b[nd - 1] == 1);
                let mut rows = dst.chunks_exact_mut(inner);
                for_each_offsets(
                    &shape[..nd - 1],
                    [&st_a[..nd - 1], &st_b[..nd - 1]],
                    [a.offset(), b.offset()],
                    |[oa, ob]| {
                        let d = rows.next().expect("one output row per outer index");
                        with_simd(|| match (a_row, b_row) {
                            (true, true) => {
                                let (x, y) = (&da[oa..oa + inner], &db[ob..ob + inner]);
                                for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
                                    *d = f(x, y)
                                }
                            }
                            (true, false) => {
                                let y = db[ob];
                                for (d, &x) in d.iter_mut().zip(&da[oa..oa + inner]) {
                                    *d = f(x, y)
                                }
                            }
                            (false, true) => {
                                let x = da[oa];
                                for (d, &y) in d.iter_mut().zip(&db[ob..ob + inner]) {
                                    *d = f(x, y)
                                }
                            }
                            (false, false) => d.fill(f(da[oa], db[ob])),
                        })
                    },
                );
                return;
            }
            // each row under `with_simd`, as in `map_into`
            let mut out = dst.iter_mut();
            for_each_row_offsets(
                &shape,
                [st_a, st_b],
                [a.offset(), b.offset()],
                |[oa, ob], len, [sa, sb]| {
                    with_simd(|| {
                        for (j, d) in out.by_ref().take(len).enumerate() {
                            let j = j as isize;
                            *d = f(da[(oa + j * sa) as usize], db[(ob + j * sb) as usize]);
                        }
                    })
                },
            );
        }
    }
}
