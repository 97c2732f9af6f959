//! When a kernel splits its work across rayon's threads.
//!
//! A parallel loop started outside the pool hands its work to the pool's threads and sleeps
//! until they are done: about 10 µs of wake-ups on a 2-core machine, and about 30 µs with a
//! one-thread pool, where nothing runs in parallel at all (f32 tanh on 10⁵ elements: 17 µs
//! on the calling thread, 51 µs through a one-thread pool). So a kernel splits only when its
//! work is large enough *and* a second thread can take a share. With one thread (a one-core
//! machine, or `RAYON_NUM_THREADS=1` to run several jobs side by side) every kernel runs on
//! the calling thread.

use crate::elementwise::{CHUNK, PAIR_MIN, PARALLEL_MIN_TRANSCENDENTAL};
use crate::partner::halves_if_awake;

/// Whether `work` (elements, samples, or m·n·k, as the caller counts it) is worth splitting
/// across threads: at least `min` of it, and more than one thread in rayon's pool.
pub(crate) fn split(work: usize, min: usize) -> bool {
    work >= min && rayon::current_num_threads() > 1
}

/// `f(i, chunk)` for each `size`-long chunk of `data` (the last may be shorter), spread over
/// the threads when `parallel`, else in order on the calling thread. `f` is a `dyn` (called
/// once per chunk), so rayon's machinery is compiled once per element type, not per caller.
pub(crate) fn chunks<T: Send>(
    data: &mut [T],
    size: usize,
    parallel: bool,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    use rayon::prelude::*;
    if parallel {
        data.par_chunks_mut(size)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// The work of [`chunks2`] on the `i`-th chunks of its two slices.
pub(crate) type Chunks2Fn<'a, A, B> = dyn Fn(usize, &mut [A], &mut [B]) + Sync + 'a;

/// [`chunks`] over two slices in step: `f(i, a_chunk, b_chunk)`.
pub(crate) fn chunks2<A: Send, B: Send>(
    a: &mut [A],
    b: &mut [B],
    size: usize,
    parallel: bool,
    f: &Chunks2Fn<'_, A, B>,
) {
    use rayon::prelude::*;
    if parallel {
        a.par_chunks_mut(size)
            .zip(b.par_chunks_mut(size))
            .enumerate()
            .for_each(|(i, (a, b))| f(i, a, b));
    } else {
        a.chunks_mut(size)
            .zip(b.chunks_mut(size))
            .enumerate()
            .for_each(|(i, (a, b))| f(i, a, b));
    }
}

/// Runs `f(start, part)` over the whole blocks of `dst` (blocks of `block` elements, `part`
/// starting at element `start`): split across the threads from
/// [`PARALLEL_MIN_TRANSCENDENTAL`] elements, in two halves on the partner core from
/// [`PAIR_MIN`] when it is awake (between a step's matrix products), else in one call.
pub(crate) fn for_blocks<T: Send>(
    block: usize,
    dst: &mut [T],
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    if block == 0 || dst.is_empty() {
        return;
    }
    let blocks = dst.len() / block;
    if split(dst.len(), PARALLEL_MIN_TRANSCENDENTAL) && blocks > 1 {
        let per = (CHUNK / block).max(1) * block;
        use rayon::prelude::*;
        dst.par_chunks_mut(per)
            .enumerate()
            .for_each(|(i, part)| f(i * per, part));
    } else if split(dst.len(), PAIR_MIN) && blocks > 1 {
        halves_if_awake(dst, block, f);
    } else {
        f(0, dst);
    }
}
