//! What the bench binaries share (each includes this file with `#[path]`): timing two ways
//! of doing the same step against each other on a shared, noisy machine.

use std::time::{Duration, Instant};

/// The quietest of `passes` timings of `steps` calls of each of `a` and `b` (each given the
/// call's index), per call, after `warmup` calls of each. The two alternate pass by pass so
/// both see the same machine, and the order swaps every pass: measured on the suite's mlp
/// wide batched, whichever of two matmul-bound steps ran second in a pass came out about 5%
/// slower (its weights were cold), which a fixed order charges to one side.
#[allow(dead_code)] // not every bench binary that includes this file uses both
pub fn best_pair(
    passes: usize,
    steps: usize,
    warmup: usize,
    mut a: impl FnMut(usize),
    mut b: impl FnMut(usize),
) -> (Duration, Duration) {
    let t = best_each(passes, steps, warmup, &mut [&mut a, &mut b]);
    (t[0], t[1])
}

/// [`best_pair`] for any number of ways: each pass runs them all, in an order rotated pass
/// by pass, so each way runs first, second, ... equally often.
#[allow(dead_code)]
pub fn best_each(
    passes: usize,
    steps: usize,
    warmup: usize,
    ways: &mut [&mut dyn FnMut(usize)],
) -> Vec<Duration> {
    for i in 0..warmup {
        for f in ways.iter_mut() {
            f(i);
        }
    }
    let time = |f: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        for i in 0..steps {
            f(i);
        }
        t.elapsed() / steps as u32
    };
    let n = ways.len();
    let mut best = vec![Duration::MAX; n];
    for pass in 0..passes {
        for k in 0..n {
            let w = (k + pass) % n;
            best[w] = best[w].min(time(&mut *ways[w]));
        }
    }
    best
}
