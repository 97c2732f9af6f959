//! Live-bytes accounting: how much array memory a computation holds at its peak.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    live: AtomicUsize,
    peak: AtomicUsize,
}

/// The counters an array's storage is charged to (released when the storage goes).
#[derive(Debug)]
pub(crate) struct Meter(Arc<Counters>);

impl Meter {
    pub(crate) fn release(self, bytes: usize) {
        self.0.live.fetch_sub(bytes, Ordering::Relaxed);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Counters>>> = const { RefCell::new(None) };
}

/// Charges a new storage of `bytes` to this thread's meter, if one is running.
#[inline]
pub(crate) fn count(bytes: usize) -> Option<Meter> {
    CURRENT.with(|c| {
        let c = c.borrow();
        let counters = c.as_ref()?;
        let live = counters.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        counters.peak.fetch_max(live, Ordering::Relaxed);
        Some(Meter(Arc::clone(counters)))
    })
}

/// Measures the array memory a computation holds: while it lives, every array allocated on
/// this thread is counted until it is freed (on any thread), and the high-water mark of the
/// bytes so counted is kept. Arrays that existed before it started are not counted, nor
/// buffers kept for reuse; a meter started inside another replaces it until it ends.
///
/// ```
/// use ferrograd_array::{Array, DType, MemoryMeter};
/// let meter = MemoryMeter::start();
/// let a = Array::zeros(&[1000], DType::F64);
/// let b = a.add(&a);
/// drop(a);
/// assert_eq!(meter.live_bytes(), 8000);
/// assert_eq!(meter.peak_bytes(), 16000);
/// drop(b);
/// assert_eq!(meter.live_bytes(), 0);
/// ```
#[derive(Debug)]
pub struct MemoryMeter {
    counters: Arc<Counters>,
    previous: Option<Arc<Counters>>,
    /// Bound to the thread it counts on.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl MemoryMeter {
    /// Starts counting on this thread.
    pub fn start() -> MemoryMeter {
        let counters = Arc::new(Counters::default());
        let previous = CURRENT.with(|c| c.borrow_mut().replace(Arc::clone(&counters)));
        MemoryMeter {
            counters,
            previous,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Bytes of the counted arrays alive now.
    pub fn live_bytes(&self) -> usize {
        self.counters.live.load(Ordering::Relaxed)
    }

    /// The most bytes of counted arrays alive at once since the meter started (or since
    /// [`reset_peak`](MemoryMeter::reset_peak)).
    pub fn peak_bytes(&self) -> usize {
        self.counters.peak.load(Ordering::Relaxed)
    }

    /// Starts the high-water mark again from the bytes alive now.
    pub fn reset_peak(&self) {
        self.counters
            .peak
            .store(self.live_bytes(), Ordering::Relaxed);
    }
}

impl Drop for MemoryMeter {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}
