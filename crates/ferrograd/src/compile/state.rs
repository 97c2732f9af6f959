//! State kept between calls: running statistics, counters, anything a function reads and
//! replaces behind a lock.
//!
//! A capture cannot see through a plain `Mutex`, so state kept that way makes optimize mode
//! run the function in direct mode. A [`State`] is visible: a capture records where the
//! function reads it (`get`) and where it writes it (`set`); a replay reads the cell's
//! current tensor at the same point and writes the new value back when the call completes
//! (a replay that misses a guard writes nothing, so the capture that follows starts from the
//! same state).

use std::panic::Location;
use std::sync::{Arc, Mutex};

use super::capture;
use crate::Tensor;

/// A tensor kept between calls behind a lock, that optimize mode treats as an input read
/// where the function reads it and an output written back after the call.
///
/// ```
/// use ferrograd::{grad, State, Tensor};
/// // an exponential moving average of the loss, kept between steps
/// let average = State::new(Tensor::scalar(0.0f64));
/// let f = |x: &Tensor| {
///     let loss = x.square().sum();
///     average.set(&average.get() * 0.9 + &loss.detach() * 0.1);
///     loss
/// };
/// let df = grad(f).optimize(true);
/// for _ in 0..3 {
///     df.call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
/// }
/// // 5 (1 - 0.9³), computed by replays too
/// assert!((average.get().item::<f64>() - 1.355).abs() < 1e-12);
/// assert_eq!(df.stats().hits, 2);
/// ```
pub struct State {
    cell: Arc<Mutex<Tensor>>,
}

impl State {
    /// A cell holding `value` (detached from any `grad`).
    pub fn new(value: Tensor) -> State {
        State {
            cell: Arc::new(Mutex::new(value.detach())),
        }
    }

    /// The current value.
    #[track_caller]
    pub fn get(&self) -> Tensor {
        let value = self.cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if capture::active() {
            capture::record_state_read(&self.cell, &value, Location::caller());
        }
        value
    }

    /// The current value's shape. Unlike [`get`](State::get) this is not a read a capture
    /// records (a replay checks the shape of every state it reads anyway), so argument
    /// checks can use it freely.
    pub fn shape(&self) -> Vec<usize> {
        self.cell
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shape()
            .to_vec()
    }

    /// Replaces the value (detached from any `grad`: the state keeps data, not a graph).
    #[track_caller]
    pub fn set(&self, value: Tensor) {
        let value = value.detach();
        if capture::active() {
            capture::record_state_write(&self.cell, &value, Location::caller());
        }
        *self.cell.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.cell.lock().unwrap_or_else(|e| e.into_inner());
        write!(f, "State({:?} {})", value.shape(), value.dtype())
    }
}
