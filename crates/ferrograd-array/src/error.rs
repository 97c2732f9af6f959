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
    let at = Site(Location::caller());
    panic!("ferrograd: {op}: {message} (at {at})")
}

/// A source location as ferrograd's messages and graphs print it: `file:line:column`, with
/// the file's `dir/..` pairs collapsed. (Cargo names a target kept outside its package by
/// the package path and the way out: `crates/ferrograd-nn/../../examples/train.rs`, which
/// prints as `examples/train.rs`.)
///
/// ```
/// use ferrograd_array::normalize_path;
/// assert_eq!(normalize_path("crates/nn/../../examples/a.rs"), "examples/a.rs");
/// assert_eq!(normalize_path("src/lib.rs"), "src/lib.rs");
/// assert_eq!(normalize_path("../x/./y.rs"), "../x/y.rs");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Site(pub &'static Location<'static>);

impl Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = self.0;
        write!(
            f,
            "{}:{}:{}",
            normalize_path(l.file()),
            l.line(),
            l.column()
        )
    }
}

/// `path` with `.` segments dropped and each `dir/..` pair collapsed, lexically (leading
/// `..` stay).
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    let segments: Vec<&str> = path.split('/').collect();
    if !segments.iter().any(|s| *s == ".." || *s == ".") {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out: Vec<&str> = Vec::new();
    for s in segments {
        match s {
            "." => {}
            ".." if out.last().is_some_and(|l| *l != ".." && !l.is_empty()) => {
                out.pop();
            }
            _ => out.push(s),
        }
    }
    std::borrow::Cow::Owned(out.join("/"))
}

/// Panics for an op reached with an operand on a device it has no kernel for.
#[track_caller]
#[cold]
pub(crate) fn no_kernel_on(op: &str, device: crate::Device) -> ! {
    fail(
        op,
        format_args!(
            "has no kernel for {device} yet; move the operands with .to_device(Device::Cpu) \
             (and the result back) around this op"
        ),
    )
}

/// Checks that every operand of an op is on one device (a CPU array of one element, a
/// scalar, goes with any device, as in PyTorch) and returns that device.
#[track_caller]
pub(crate) fn same_device(op: &str, arrays: &[&crate::Array]) -> crate::Device {
    let mut found: Option<crate::Device> = None;
    for a in arrays {
        let d = a.device();
        if d.is_cpu() && a.ndim() == 0 {
            continue;
        }
        match found {
            Some(f) if f != d => fail(
                op,
                format_args!(
                    "operands are on different devices ({f} and {d}); move one with \
                     .to_device(..) first"
                ),
            ),
            _ => found = Some(d),
        }
    }
    found.unwrap_or_default()
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
