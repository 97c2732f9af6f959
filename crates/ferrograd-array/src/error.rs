//! Panics for programmer errors (shape, dtype, dim, index). Every message names the op, the
//! values involved and the caller's source line, which `#[track_caller]` carries up from the
//! user's call through every public method.

use std::fmt::Display;
use std::panic::Location;

use crate::DType;

/// Panics with `ferrograd: {op}: {message} (at file:line:col)`; the location is the first
/// caller outside a chain of `#[track_caller]` functions, which is the user's line.
#[track_caller]
#[cold]
pub(crate) fn fail(op: &str, message: impl Display) -> ! {
    let at = Location::caller();
    panic!("ferrograd: {op}: {message} (at {at})")
}

#[track_caller]
#[cold]
pub(crate) fn dtype_fail(op: &str, got: DType, expected: &str) -> ! {
    fail(
        op,
        format_args!("expected {expected}, got {got}; convert with .to_dtype(..) first"),
    )
}

/// Checks that two arrays have the same dtype.
#[track_caller]
pub(crate) fn same_dtype(op: &str, a: DType, b: DType) {
    if a != b {
        fail(
            op,
            format_args!(
                "dtypes differ ({a} and {b}); ferrograd never promotes silently: convert one \
                 with .to_dtype(..)"
            ),
        )
    }
}
