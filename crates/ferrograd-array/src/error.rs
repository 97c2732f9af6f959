//! Panics for programmer errors (shape, dtype, dim, index). Every message names the op, the
//! values involved and the caller's source line, which `#[track_caller]` carries up from the
//! user's call through every public method.

use std::cell::RefCell;
use std::fmt::Display;
use std::panic::Location;

use crate::DType;

/// Panics with `ferrograd: {op}: {message} (at file:line:col)`; the location is the first
/// caller outside a chain of `#[track_caller]` functions, which is the user's line.
#[track_caller]
#[cold]
pub(crate) fn fail(op: &str, message: impl Display) -> ! {
    fail_at(op, message, Location::caller())
}

/// [`fail`] at a location taken earlier: a closure does not carry `#[track_caller]`, so one
/// that checks something takes the caller's location from its function.
#[track_caller]
#[cold]
pub(crate) fn fail_at(op: &str, message: impl Display, at: &'static Location<'static>) -> ! {
    panic!("ferrograd: {op}: {message} (at {})", Site(at))
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
    /// `file:line:column`; in a panic's message, then the [`Context`]s it was raised in,
    /// innermost first.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_location(f, self.0)?;
        if std::thread::panicking() {
            // (a call made on the panic's own line says nothing more)
            let here = |c: &&Context| match c {
                Context::Call { at, .. } => {
                    (at.file(), at.line(), at.column())
                        == (self.0.file(), self.0.line(), self.0.column())
                }
                Context::Layer { .. } => false,
            };
            CONTEXT.with(|c| match c.try_borrow() {
                Ok(frames) => (frames.iter().rev())
                    .filter(|c| !here(c))
                    .try_for_each(|c| write!(f, ", {c}")),
                Err(_) => Ok(()),
            })?;
        }
        Ok(())
    }
}

fn write_location(f: &mut std::fmt::Formatter<'_>, l: &Location<'_>) -> std::fmt::Result {
    write!(
        f,
        "{}:{}:{}",
        normalize_path(l.file()),
        l.line(),
        l.column()
    )
}

/// Where code runs that a panic's message should name beside its line: a layer of a
/// container, or a call the user made whose own line the panic's may not be (an error
/// inside a module's layer is raised on the layer's line, in the library; the user's line
/// is the `forward` call). See [`in_context`].
#[derive(Clone, Copy, Debug)]
pub enum Context {
    /// Layer `index` (from 0) of a container named `of`.
    Layer {
        /// The container (`a Sequential`).
        of: &'static str,
        /// The layer's position, from 0.
        index: usize,
    },
    /// A call (`forward`) made at `at`.
    Call {
        /// What was called.
        what: &'static str,
        /// The caller's line.
        at: &'static Location<'static>,
    },
}

impl Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Context::Layer { of, index } => write!(f, "in layer {index} of {of}"),
            Context::Call { what, at } => {
                write!(f, "in {what} called at ")?;
                write_location(f, at)
            }
        }
    }
}

thread_local! {
    static CONTEXT: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` in `context`: the message of a panic raised inside it (every ferrograd panic
/// names its [`Site`]) adds the context after the line, so an error inside a container's
/// layer says which layer, and where the user called it. Costs a push and a pop on a
/// thread-local stack, no allocation after the first.
///
/// ```
/// use ferrograd_array::{in_context, Array, Context, DType};
/// let at = std::panic::Location::caller();
/// let message = std::panic::catch_unwind(|| {
///     in_context(Context::Call { what: "forward", at }, || {
///         in_context(Context::Layer { of: "a Sequential", index: 1 }, || {
///             Array::zeros(&[2], DType::F32).add(&Array::zeros(&[3], DType::F32))
///         })
///     })
/// })
/// .unwrap_err()
/// .downcast::<String>()
/// .unwrap();
/// assert!(message.contains(", in layer 1 of a Sequential, in forward called at "), "{message}");
/// ```
pub fn in_context<R>(context: Context, f: impl FnOnce() -> R) -> R {
    let _entered = enter(context);
    f()
}

/// [`in_context`] without a closure (which would end a `#[track_caller]` chain): the
/// context holds until the guard drops.
pub fn enter(context: Context) -> Entered {
    CONTEXT.with(|c| c.borrow_mut().push(context));
    Entered(())
}

/// A [`Context`] entered with [`enter`]; dropping it (at the end of the scope, or while a
/// panic unwinds) leaves it.
#[must_use = "the context is left when this guard drops"]
pub struct Entered(());

impl Drop for Entered {
    fn drop(&mut self) {
        CONTEXT.with(|c| c.borrow_mut().pop());
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
