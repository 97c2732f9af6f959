//! Memory planning, measured by the allocator: after warm-up a replayed training step keeps
//! no memory but the gradients it returns, and with `stable_gradients` none at all (its
//! gradients come back in the last call's buffers); what it allocates at all is a few
//! small handles and lists (counted here, so that a new one per step shows up), a handle
//! for each intermediate of 64 KiB or more (whose buffer the array layer's cache gives
//! back) and, inside each matrix product of more than a few rows, the `gemm` crate's
//! packing workspace, which it allocates and frees within the product.
//!
//! Its own test binary: the counting allocator is global.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ferrograd::{grad, DType, Generator, Tensor};

struct Counting;

// Per thread: the counted work runs on one thread (a one-thread pool's), and what other
// threads do meanwhile (the test harness reporting another test, a finished test's pool
// shutting down) is not the plan's.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// Allocations of at least [`LARGE`] bytes while counting.
    static LARGE_COUNT: Cell<usize> = const { Cell::new(0) };
    /// The size from which [`LARGE_COUNT`] counts an allocation (none by default).
    static LARGE: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Bytes this thread allocated less those it freed, counted always.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            COUNT.with(|c| c.set(c.get() + 1));
            LARGEST.with(|l| l.set(l.get().max(size)));
            if size >= LARGE.with(Cell::get) {
                LARGE_COUNT.with(|c| c.set(c.get() + 1));
            }
        }
    });
    live(size as isize);
}

fn live(bytes: isize) {
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: the caller's layout, as received.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        live(-(l.size() as isize));
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        live(-(l.size() as isize));
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Held by each test: the array layer's cache of freed buffers is shared, so tests run one
/// at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What `f` allocated on this thread: (count, largest allocation, bytes still allocated
/// after it).
fn allocations(f: impl FnOnce()) -> (usize, usize, isize) {
    COUNT.with(|c| c.set(0));
    LARGEST.with(|l| l.set(0));
    let before = LIVE.with(Cell::get);
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    let kept = LIVE.with(Cell::get) - before;
    (COUNT.with(Cell::get), LARGEST.with(Cell::get), kept)
}

#[allow(clippy::ptr_arg)] // a Vec is the parameter tree
fn mlp(p: &Vec<Tensor>, x: &Tensor, y: &Tensor) -> Tensor {
    let h = (x.matmul(&p[0]) + &p[1]).tanh();
    let out = (h.matmul(&p[2]) + &p[3]).log_softmax(1);
    -out.gather(1, &y.reshape(&[y.numel(), 1])).mean()
}

/// The small allocations of a replayed step of `mlp`: the five tensors it returns (loss and
/// gradients) and the gradients' list (the parameter tree's `Vec`). A replay builds them in
/// the function's own types, with no erased lists or boxes on the way.
const HANDLES: usize = 6;
/// With fresh gradients: their buffers and storage handles (large buffers come from the
/// array layer's cache, their handles do not).
const FRESH_GRADIENTS: usize = 7;
/// A batched step's five matrix products through `gemm`: its packing workspace and two flag
/// lists per product (three on the Xeon of the figures; four allowed).
const GEMM: usize = 5 * 4;

/// Counted on a one-thread pool, where every kernel runs on the calling thread. With two,
/// products and elementwise ops run in halves on a partner pool thread, which keeps a
/// workspace of its own for `gemm` from its first product on and whose job is spawned when
/// it wakes: allocations whose timing depends on the scheduler (under load the partner may
/// take its first half only inside the counted steps), not on the plan counted here.
#[test]
fn a_replayed_step_keeps_no_memory_but_the_gradients_it_returns() {
    on_one_thread(replayed_steps);
}

/// Runs `f` on a one-thread pool (see above), while no other test of this binary counts.
fn on_one_thread(f: impl FnOnce() + Send) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    one.install(f);
}

fn replayed_steps() {
    let mut rng = Generator::new(0);
    for batch in [1, 32] {
        let p = vec![
            Tensor::new(rng.normal(&[100, 1000], 0.0, 0.1, DType::F32)),
            Tensor::zeros(&[1000], DType::F32),
            Tensor::new(rng.normal(&[1000, 10], 0.0, 0.1, DType::F32)),
            Tensor::zeros(&[10], DType::F32),
        ];
        let gradient_bytes: usize = p.iter().map(|t| t.numel() * 4).sum();
        let x = Tensor::new(rng.normal(&[batch, 100], 0.0, 1.0, DType::F32));
        let y = Tensor::new(rng.uniform(&[batch], 0.0, 10.0, DType::I64));
        for stable in [false, true] {
            let df = grad(mlp).optimize(true).stable_gradients(stable);
            for _ in 0..5 {
                df.call(&p, (&x, &y)); // the capture, then replays that size their buffers
            }
            let steps = 5;
            let mut held = Vec::new();
            let (count, largest, kept) = allocations(|| {
                for _ in 0..steps {
                    let (g, loss) = df.call(&p, (&x, &y));
                    if !stable {
                        // held: each call's gradients need buffers of their own
                        held.push(g);
                    }
                    drop(loss); // consumed before the next step, as a training loop does
                }
            });
            let what = format!(
                "batch {batch}, stable {stable}: {count} allocations, largest {largest} bytes, \
                 {kept} bytes kept, over {steps} steps"
            );
            if stable {
                // nothing kept, and (without a matrix kernel's workspace) nothing the size
                // of an array allocated at all
                assert_eq!(kept, 0, "{what}");
                if batch == 1 {
                    assert!(largest < 1024, "{what}");
                }
            } else {
                // the held gradients' buffers and handles, nothing more; large buffers may
                // come from the array layer's cache of freed ones (where the warm-up's
                // gradients went, and a batched step's temporaries), already counted
                assert!(kept < (steps * gradient_bytes + 4096) as isize, "{what}");
                if batch == 1 {
                    // no temporaries that large: all but the first step's are new
                    assert!(kept >= ((steps - 1) * gradient_bytes) as isize, "{what}");
                }
            }
            let per_step = HANDLES
                + if stable { 0 } else { FRESH_GRADIENTS }
                + if batch > 1 { GEMM } else { 0 };
            assert!(count <= steps * per_step, "{what}");
            drop(held);
        }
    }
}

/// A recurrence whose every step's state the backward reads: `STEPS` values of one size
/// alive at once, each too large for the plan to keep in its own slot between calls (64 KiB
/// and up go back to the array layer's cache of freed buffers).
fn recurrent(p: &Tensor, x: &Tensor) -> Tensor {
    let mut h = x.clone();
    for _ in 0..STEPS {
        h = (&h * p + x).tanh();
    }
    h.sum()
}

const STEPS: usize = 40;

#[test]
fn a_replayed_step_holding_many_buffers_of_one_size_allocates_none() {
    on_one_thread(|| {
        let mut rng = Generator::new(1);
        // [32, 512] f32: 64 KiB per state
        let p = Tensor::new(rng.uniform(&[512], 0.5, 1.0, DType::F32));
        let x = Tensor::new(rng.normal(&[32, 512], 0.0, 1.0, DType::F32));
        let df = grad(recurrent).optimize(true).stable_gradients(true);
        for _ in 0..5 {
            df.call(&p, (&x,));
        }
        let steps = 5;
        let (count, largest, kept) = allocations(|| {
            for _ in 0..steps {
                drop(df.call(&p, (&x,)));
            }
        });
        let what = format!(
            "{count} allocations, largest {largest} bytes, {kept} bytes kept, over {steps} steps"
        );
        // no array's buffer: each state's comes from the cache of freed ones (a fixed bound
        // per size had 24 of the 40 allocated, zeroed and freed again at every step) ...
        assert!(largest < 64 * 1024, "{what}");
        // ... and its storage handle does not; besides, the returned loss and gradient and
        // the fused backward's list of its inputs
        assert!(count <= steps * (STEPS + HANDLES), "{what}");
        assert_eq!(kept, 0, "{what}");
    });
}

/// A gated RNN whose input projections are one product for all steps, each step adding
/// its `h @ w_h` into its rows of that product's buffer in place; its gates are views of
/// those rows.
fn rnn(p: &(Tensor, Tensor), x: &Tensor) -> Tensor {
    let nh = p.0.size(1) / 2;
    let mut h = Tensor::zeros(&[x.size(0), nh], DType::F32);
    for t in 0..x.size(1) {
        let pre = Tensor::cat(&[x.select(1, t), h.clone()], 1).matmul(&p.0) + &p.1;
        h = pre.narrow(1, 0, nh).tanh() * pre.narrow(1, nh, nh).sigmoid();
    }
    h.sum()
}

/// The first replay of a signature learns which of its steps make views; until then it kept
/// small views of the projections' buffer in their slots as if they were buffers of their
/// own, so that each step's product into its rows found the buffer shared and copied all of
/// it (the lstm batched row's second call: 62 ms, its 3.4 MB projections copied 32 times).
#[test]
fn the_first_replay_copies_no_buffer_its_views_look_into() {
    on_one_thread(|| {
        let (steps, batch, nx, nh) = (16, 32, 64, 128);
        let mut rng = Generator::new(2);
        let p = (
            Tensor::new(rng.normal(&[nx + nh, 2 * nh], 0.0, 0.1, DType::F32)),
            Tensor::zeros(&[2 * nh], DType::F32),
        );
        let x = Tensor::new(rng.normal(&[batch, steps, nx], 0.0, 1.0, DType::F32));
        let df = grad(rnn).optimize(true);
        drop(df.call(&p, (&x,))); // the capture
        let projections = steps * batch * 2 * nh * 4;
        LARGE.with(|l| l.set(projections));
        let large = |f: &mut dyn FnMut()| {
            LARGE_COUNT.with(|c| c.set(0));
            allocations(f);
            LARGE_COUNT.with(Cell::get)
        };
        let first = large(&mut || drop(df.call(&p, (&x,))));
        let later = large(&mut || drop(df.call(&p, (&x,))));
        LARGE.with(|l| l.set(usize::MAX));
        let text = df.plan_text();
        assert_eq!(text.matches(" = matmul_acc_rows[").count(), steps, "{text}");
        // the projections' buffer itself at most, not a copy per step; in the first replay
        // also the stack of gate gradients (as large here), which the backward's first gate
        // program makes, writing its gradients into it, before the buffers dying there are
        // freed for it to reuse
        assert!(
            first <= 2 && later <= 1,
            "buffers of {projections} bytes or more: {first} in the first replay, {later} in the next"
        );
    });
}
