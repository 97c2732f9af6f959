//! What the bench binaries share (each includes this file with `#[path]`): timing two ways
//! of doing the same step against each other on a shared, noisy machine.

use std::time::{Duration, Instant};

/// The quietest of `passes` timings of `steps` calls of each of `a` and `b` (each given the
/// call's index), per call, after `warmup` calls of each. The two alternate pass by pass so
/// both see the same machine, and the order swaps every pass: measured on the suite's mlp
/// wide batched, whichever of two matmul-bound steps ran second in a pass came out about 5%
/// slower (its weights were cold), which a fixed order charges to one side.
pub fn best_pair(
    passes: usize,
    steps: usize,
    warmup: usize,
    mut a: impl FnMut(usize),
    mut b: impl FnMut(usize),
) -> (Duration, Duration) {
    for i in 0..warmup {
        a(i);
        b(i);
    }
    let time = |f: &mut dyn FnMut(usize)| {
        let t = Instant::now();
        for i in 0..steps {
            f(i);
        }
        t.elapsed() / steps as u32
    };
    let (mut ta, mut tb) = (Duration::MAX, Duration::MAX);
    for pass in 0..passes {
        if pass % 2 == 0 {
            ta = ta.min(time(&mut a));
            tb = tb.min(time(&mut b));
        } else {
            tb = tb.min(time(&mut b));
            ta = ta.min(time(&mut a));
        }
    }
    (ta, tb)
}
