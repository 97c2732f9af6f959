//! Two halves of one kernel on two cores, handed over in well under a microsecond.
//!
//! A rayon parallel loop started from outside the pool wakes a sleeping worker and sleeps
//! until it is done (about 10 µs of wake-ups on a 2-core machine, see [`crate::par`]), which
//! is more than a 30-100 µs matrix product gains from a second core. A training step is made
//! of such products back to back (a recurrent network's `h W` per time step and its
//! gradient, a batch of 32 through a layer of 1000), so [`pair`] keeps one rayon worker
//! awake between them: the first call spawns a *partner* job on the pool, which spins for
//! [`SPIN`] after the last half it ran, waiting for the next, and runs whatever other rayon
//! work is pending meanwhile (`rayon::yield_now`), so it never holds a core the pool needs.
//! This is what OpenMP runtimes do between parallel regions (their "block time"). Shorter
//! work (elementwise ops and fused programs of a few thousand elements) is halved only while
//! the partner is awake ([`pair_if_awake`]), which in a training step is between its
//! products: measured on the 2-core Xeon, alternating in one process, that made the suite's
//! compiled mlp batched step 1.18-1.30x faster and its direct mode 1.11-1.19x.
//!
//! One half at a time is handed over (one slot for the whole process): a call that finds the
//! slot taken, or the partner busy, runs both halves on its own thread. Neither half ever
//! waits for the other to start, so nothing here can deadlock: a half the partner has not
//! claimed by the time the caller finished its own is taken back and run by the caller.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the partner waits for the next half after running one. The gaps between the
/// products of a recurrent network's step (its elementwise gates) are 20-80 µs on the 2-core
/// Xeon; OpenMP's default block time is 200 ms.
const SPIN: Duration = Duration::from_micros(200);

/// The slot's states.
const IDLE: u8 = 0;
const POSTED: u8 = 1;
const CLAIMED: u8 = 2;
const DONE: u8 = 3;
/// Done, and the half panicked (its payload in [`Slot::panic`]).
const FAILED: u8 = 4;

/// A half handed over: the caller's closure, run on one thread or the other.
type Half<'a> = &'a mut (dyn FnMut() + Send);

struct Slot {
    /// Taken by the one caller whose half is in the slot.
    owned: AtomicBool,
    state: AtomicU8,
    /// Points at the owner's [`Half`] (on its stack) while `state` is `POSTED` or `CLAIMED`.
    half: AtomicPtr<()>,
    /// The half's panic, for its owner to resume (set with state `FAILED`).
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Whether a partner job is spinning (or about to).
    partner: AtomicBool,
}

static SLOT: Slot = Slot {
    owned: AtomicBool::new(false),
    state: AtomicU8::new(IDLE),
    half: AtomicPtr::new(std::ptr::null_mut()),
    panic: Mutex::new(None),
    partner: AtomicBool::new(false),
};

/// Runs `a` and `b`, `a` on the partner when it takes it in time and `b` on the calling
/// thread, and returns when both are done; wakes the partner when it sleeps (a pool job
/// spawned, a few µs on the calling thread). A panic in either is resumed here (after both
/// have finished). Call it only when the pool has more than one thread.
pub(crate) fn pair(a: Half<'_>, b: &mut dyn FnMut()) {
    if SLOT
        .owned
        .compare_exchange(false, true, Acquire, Relaxed)
        .is_err()
    {
        // another caller's half is in the slot
        a();
        b();
        return;
    }
    let mut posted: Half<'_> = a;
    SLOT.half
        .store(&mut posted as *mut Half<'_> as *mut (), Relaxed);
    SLOT.state.store(POSTED, SeqCst);
    if !SLOT.partner.load(SeqCst)
        && SLOT
            .partner
            .compare_exchange(false, true, SeqCst, SeqCst)
            .is_ok()
    {
        rayon::spawn(partner);
    }
    let mine = catch_unwind(AssertUnwindSafe(b));
    let theirs = if SLOT
        .state
        .compare_exchange(POSTED, IDLE, Acquire, Relaxed)
        .is_ok()
    {
        // not claimed: run it here
        catch_unwind(AssertUnwindSafe(posted))
    } else {
        let end = loop {
            match SLOT.state.load(Acquire) {
                s @ (DONE | FAILED) => break s,
                _ => std::hint::spin_loop(),
            }
        };
        SLOT.state.store(IDLE, Relaxed);
        match end {
            FAILED => Err(SLOT
                .panic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .expect("a failed half leaves its panic")),
            _ => Ok(()),
        }
    };
    SLOT.owned.store(false, Release);
    if let Err(p) = mine.and(theirs) {
        resume_unwind(p)
    }
}

/// Whether the partner is awake (it ran a half within the last [`SPIN`]), so that
/// [`pair_if_awake`] would split: for work that costs more split and run on one thread.
pub(crate) fn awake() -> bool {
    SLOT.partner.load(Relaxed)
}

/// [`pair`] when the partner is awake (it ran a half within the last [`SPIN`]); else `a`
/// then `b` on the calling thread. For work too short to pay for waking it.
pub(crate) fn pair_if_awake(a: Half<'_>, b: &mut dyn FnMut()) {
    if awake() {
        pair(a, b)
    } else {
        a();
        b();
    }
}

/// `f(start, part)` over two halves of `dst` (the second from an element that is a multiple
/// of `align`), as [`pair_if_awake`] runs them.
pub(crate) fn halves_if_awake<U: Send>(
    dst: &mut [U],
    align: usize,
    f: &(dyn Fn(usize, &mut [U]) + Sync),
) {
    let half = (dst.len() / 2).next_multiple_of(align).min(dst.len());
    let (first, second) = dst.split_at_mut(half);
    pair_if_awake(&mut || f(half, second), &mut || f(0, first));
}

/// `f(start, part)` over `dst` split for the threads, for work past a kernel's parallel
/// bound: with a pool of two threads (a 2-core machine) as two halves by [`pair`], waking
/// the partner if it sleeps (the second from an element that is a multiple of `align`);
/// with more, in rayon's chunks of `chunk` elements.
///
/// Rayon's parallel loop, started outside the pool, puts the calling thread to sleep while
/// the pool's two threads wake and share the chunks, a different share on each call. In
/// halves the caller runs its own half meanwhile, and each core gets the same half on every
/// call, still in its L2 from the last. On the 2-core Xeon (model 207, AVX-512), `[1024,
/// 512]` f32, the two alternated 3 times in one process, quietest: exp 61 → 54 µs, sigmoid
/// 84 → 76 µs, tanh 70 → 66 µs; past L2 (10⁷ elements) the two are level.
pub(crate) fn halves_or_chunks<U: Send>(
    dst: &mut [U],
    align: usize,
    chunk: usize,
    f: &(dyn Fn(usize, &mut [U]) + Sync),
) {
    use rayon::prelude::*;
    if rayon::current_num_threads() == 2 {
        let half = (dst.len() / 2).next_multiple_of(align).min(dst.len());
        let (first, second) = dst.split_at_mut(half);
        pair(&mut || f(half, second), &mut || f(0, first));
    } else {
        dst.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(k, d)| f(k * chunk, d));
    }
}

/// The partner job: runs posted halves until none has come for [`SPIN`], and pending rayon
/// work in between.
fn partner() {
    let mut since = Instant::now();
    let mut spins = 0u32;
    loop {
        if SLOT
            .state
            .compare_exchange(POSTED, CLAIMED, Acquire, Relaxed)
            .is_ok()
        {
            let half = SLOT.half.load(Relaxed) as *mut Half<'_>;
            // SAFETY: a POSTED slot's pointer is the owner's `Half`, which lives on the
            // owner's stack, untouched by the owner, until the owner sees DONE (set below,
            // after the last use); claiming it made this thread its only user.
            let end = match catch_unwind(AssertUnwindSafe(|| unsafe { (*half)() })) {
                Ok(()) => DONE,
                Err(p) => {
                    *SLOT.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
                    FAILED
                }
            };
            SLOT.state.store(end, Release);
            since = Instant::now();
            continue;
        }
        if let Some(rayon::Yield::Executed) = rayon::yield_now() {
            since = Instant::now();
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(64) && since.elapsed() > SPIN {
            SLOT.partner.store(false, SeqCst);
            // a half posted before the store above may have seen `partner` still set and
            // spawned no one: stay for it, unless a new partner is already coming
            let waiting = SLOT.state.load(SeqCst) == POSTED;
            if !(waiting
                && SLOT
                    .partner
                    .compare_exchange(false, true, SeqCst, SeqCst)
                    .is_ok())
            {
                return;
            }
            since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn both_halves_run_once_from_many_callers_at_once() {
        // four callers contend for the one slot, two hundred pairs each: every half runs
        // exactly once, and each caller sees both of its halves done when `pair` returns
        let ran = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for caller in 0..4 {
                let ran = &ran;
                s.spawn(move || {
                    for i in 0..200 {
                        let (a, b) = (AtomicUsize::new(0), AtomicUsize::new(0));
                        pair(
                            &mut || {
                                a.fetch_add(caller * 1000 + i, Relaxed);
                            },
                            &mut || {
                                b.fetch_add(1, Relaxed);
                            },
                        );
                        assert_eq!(a.load(Relaxed), caller * 1000 + i);
                        assert_eq!(b.load(Relaxed), 1);
                        ran.fetch_add(1, Relaxed);
                    }
                });
            }
        });
        assert_eq!(ran.load(Relaxed), 800);
    }

    #[test]
    fn the_partner_takes_halves_on_another_thread() {
        if rayon::current_num_threads() < 2 {
            return;
        }
        // the caller's own half lasts 50 µs, time for the partner to claim the other; on a
        // loaded machine it may take a while to be scheduled, so try for up to 5 s
        let me = std::thread::current().id();
        let start = Instant::now();
        let mut taken = false;
        while !taken && start.elapsed() < Duration::from_secs(5) {
            let elsewhere = AtomicBool::new(false);
            pair(
                &mut || elsewhere.store(std::thread::current().id() != me, Relaxed),
                &mut || {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(50) {
                        std::hint::spin_loop();
                    }
                },
            );
            taken = elsewhere.load(Relaxed);
        }
        assert!(taken, "no half ran on the partner in 5 s");
    }

    #[test]
    fn a_panic_in_either_half_reaches_the_caller_after_both_finish() {
        for panicking in 0..2 {
            let other_done = AtomicUsize::new(0);
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut boom = || panic!("half {panicking} failed");
                let mut fine = || {
                    // long enough for the partner to claim its half
                    std::thread::sleep(Duration::from_millis(2));
                    other_done.fetch_add(1, Relaxed);
                };
                if panicking == 0 {
                    pair(&mut boom, &mut fine)
                } else {
                    pair(&mut fine, &mut boom)
                }
            }));
            let message = result.expect_err("the panic is resumed");
            let text = message.downcast_ref::<String>().expect("a formatted panic");
            assert_eq!(text, &format!("half {panicking} failed"));
            assert_eq!(other_done.load(Relaxed), 1, "the other half ran to its end");
            // and the slot is free again
            let x = AtomicUsize::new(0);
            let add = || {
                x.fetch_add(1, Relaxed);
            };
            pair(&mut { add }, &mut { add });
            assert_eq!(x.load(Relaxed), 2);
        }
    }
}
