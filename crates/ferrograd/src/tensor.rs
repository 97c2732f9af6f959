//! The user's `Tensor`: a cheap-clone handle that is either concrete (an [`Array`]) or a
//! node of the graph of one autodiff level.
//!
//! # Levels
//!
//! Differentiation uses levels (the design of HIPS autograd and JAX), which is what keeps
//! gradients of gradients right at any depth. Each call of `grad` opens a fresh level (a
//! global counter that only grows) and boxes the parameters as leaf nodes of that level.
//! Applying a primitive takes the highest level among its inputs, unboxes the inputs of that
//! level, applies the primitive to the inner values (which recurses into lower levels), and
//! boxes the result as a node of that level holding the op and its inputs. Gradient rules are
//! written with differentiable `Tensor` operations, so the backward pass of an inner level is
//! itself recorded by every outer level.
//!
//! A node *is* its box: one `Arc` holds the level, the inner value, the op and the input
//! handles. Nodes point only to their inputs, never forward, so dropping the last handle of a
//! result frees its graph (iteratively, so long chains cannot overflow the stack).

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;

use crate::op::Op;
use crate::Array;

/// Inputs of one node (most ops take one or two).
pub(crate) type Inputs = SmallVec<[Tensor; 2]>;

/// A tensor: concrete data, or a value being differentiated by an enclosing `grad`.
///
/// Cloning is cheap (one reference count). Operations are functional: each returns a new
/// tensor and none changes its inputs.
///
/// ```
/// use ferrograd::Tensor;
/// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
/// let y = (&x * &x + 1.0).sum();
/// assert_eq!(y.item::<f64>(), 17.0);
/// ```
#[derive(Clone)]
pub struct Tensor {
    pub(crate) repr: Arc<Repr>,
}

pub(crate) enum Repr {
    Concrete(Array),
    Traced(Node),
}

/// A node of one level's graph; also the traced tensor itself.
pub(crate) struct Node {
    pub level: u64,
    /// Creation order: inputs always have smaller numbers, so sorting by it is a topological
    /// order.
    pub seq: u64,
    /// The inner value (concrete, or traced at a lower level).
    pub value: Tensor,
    pub op: Op,
    pub inputs: Inputs,
    /// The user's source line that created this node.
    pub location: &'static Location<'static>,
}

static NEXT_SEQ: AtomicU64 = AtomicU64::new(1);

impl Drop for Node {
    fn drop(&mut self) {
        // Free long chains iteratively: take the inputs we solely own and drain them here
        // instead of letting each drop recurse into the next.
        let mut stack: Vec<Tensor> = std::mem::take(&mut self.inputs).into_vec();
        stack.push(std::mem::replace(&mut self.value, Tensor::placeholder()));
        while let Some(t) = stack.pop() {
            if let Ok(Repr::Traced(mut node)) = Arc::try_unwrap(t.repr) {
                stack.extend(std::mem::take(&mut node.inputs));
                stack.push(std::mem::replace(&mut node.value, Tensor::placeholder()));
            }
        }
    }
}

impl Tensor {
    /// A shared empty tensor swapped in while a node is torn down.
    pub(crate) fn placeholder() -> Tensor {
        static PLACEHOLDER: std::sync::OnceLock<Tensor> = std::sync::OnceLock::new();
        PLACEHOLDER
            .get_or_init(|| Tensor::new(Array::zeros(&[], crate::DType::F32)))
            .clone()
    }

    /// A concrete tensor holding `array`.
    pub fn new(array: Array) -> Tensor {
        Tensor {
            repr: Arc::new(Repr::Concrete(array)),
        }
    }

    pub(crate) fn node(
        level: u64,
        value: Tensor,
        op: Op,
        inputs: Inputs,
        location: &'static Location<'static>,
    ) -> Tensor {
        Tensor {
            repr: Arc::new(Repr::Traced(Node {
                level,
                seq: NEXT_SEQ.fetch_add(1, Ordering::Relaxed),
                value,
                op,
                inputs,
                location,
            })),
        }
    }

    /// The level this tensor is traced at (0 for concrete data).
    pub(crate) fn level(&self) -> u64 {
        match &*self.repr {
            Repr::Concrete(_) => 0,
            Repr::Traced(n) => n.level,
        }
    }

    pub(crate) fn as_node(&self) -> Option<&Node> {
        match &*self.repr {
            Repr::Concrete(_) => None,
            Repr::Traced(n) => Some(n),
        }
    }

    /// The node of `level`, if this tensor is traced at exactly that level.
    pub(crate) fn node_at(&self, level: u64) -> Option<&Node> {
        self.as_node().filter(|n| n.level == level)
    }

    /// The value one level down when traced at `level`, else the tensor itself.
    pub(crate) fn unbox(&self, level: u64) -> Tensor {
        match self.node_at(level) {
            Some(n) => n.value.clone(),
            None => self.clone(),
        }
    }

    /// An identity for the node behind this handle (the `Arc`'s address).
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.repr) as *const u8 as usize
    }

    /// The concrete data under every level of tracing, read by the user.
    ///
    /// Reading values out of a traced tensor is allowed (to print, to drive an `if`), but
    /// whatever is computed from the returned array is a constant to every `grad`. In
    /// optimize mode the read is a guard: a replay recomputes the value at this point and
    /// captures the function again when it differs (see [`Grad::optimize`](crate::Grad::optimize)).
    #[track_caller]
    pub fn value(&self) -> &Array {
        crate::compile::capture::read(self.concrete(), std::panic::Location::caller());
        self.data()
    }

    /// The concrete data, for the library's own reads of shape, dtype and layout: not a guard.
    pub(crate) fn data(&self) -> &Array {
        match &*self.concrete().repr {
            Repr::Concrete(a) => a,
            Repr::Traced(_) => unreachable!("concrete() ends at concrete data"),
        }
    }

    /// The concrete handle under every level of tracing (its identity names the value in a
    /// capture, so it is kept rather than rewrapped).
    pub(crate) fn concrete(&self) -> &Tensor {
        let mut t = self;
        while let Repr::Traced(n) = &*t.repr {
            t = &n.value;
        }
        t
    }

    /// A concrete tensor with the same value, cut off from every enclosing `grad`.
    pub fn detach(&self) -> Tensor {
        self.concrete().clone()
    }

    /// True when some enclosing `grad` is differentiating this tensor.
    pub fn is_traced(&self) -> bool {
        self.level() > 0
    }

    /// The size of each dimension.
    pub fn shape(&self) -> &[usize] {
        self.data().shape()
    }

    /// Size of one dimension (negative dims count from the back).
    #[track_caller]
    pub fn size(&self, dim: impl crate::Dim) -> usize {
        self.data().size(dim)
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.data().ndim()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data().numel()
    }

    /// The element type.
    pub fn dtype(&self) -> crate::DType {
        self.data().dtype()
    }

    /// The device holding the data.
    pub fn device(&self) -> crate::Device {
        self.data().device()
    }

    /// The single element of a one-element tensor.
    #[track_caller]
    pub fn item<T: crate::Element>(&self) -> T {
        self.value().item::<T>()
    }

    /// The single element as `f64`, whatever the dtype.
    #[track_caller]
    pub fn item_f64(&self) -> f64 {
        self.value().item_f64()
    }

    /// The elements in row-major order.
    #[track_caller]
    pub fn to_vec<T: crate::Element>(&self) -> Vec<T> {
        self.value().to_vec::<T>()
    }

    /// The elements converted to `f64`.
    #[track_caller]
    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.value().to_f64_vec()
    }

    /// True when both handles point at the same tensor (not merely equal values).
    pub fn same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.repr, &other.repr)
    }

    /// A weak handle to this tensor's node, to observe when its graph is freed.
    #[doc(hidden)]
    pub fn downgrade(&self) -> std::sync::Weak<impl Sized> {
        Arc::downgrade(&self.repr)
    }
}

impl From<Array> for Tensor {
    fn from(array: Array) -> Tensor {
        Tensor::new(array)
    }
}

impl From<&Array> for Tensor {
    fn from(array: &Array) -> Tensor {
        Tensor::new(array.clone())
    }
}

impl std::fmt::Display for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.data().to_string();
        let body = text.strip_prefix("array").unwrap_or(&text);
        write!(f, "tensor{body}")?;
        if self.is_traced() {
            write!(f, " (traced at level {})", self.level())?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Applies a primitive to its inputs through every level of tracing (see the module docs),
/// reporting to the debugger and profiler of any enclosing `grad` that has them.
///
/// Every function from the user's call down to the array kernel is `#[track_caller]`, so a
/// shape error raised by the kernel names the user's line.
#[track_caller]
pub(crate) fn apply(op: impl Into<Op>, inputs: &[&Tensor]) -> Tensor {
    let op = op.into();
    if !crate::context::active() {
        return apply_at(op, inputs);
    }
    let start = std::time::Instant::now();
    let out = apply_at(op.clone(), inputs);
    crate::context::record(&op, Location::caller(), start.elapsed(), inputs, &out);
    out
}

#[track_caller]
fn apply_at(op: Op, inputs: &[&Tensor]) -> Tensor {
    let mut level = 0;
    for t in inputs {
        level = level.max(t.level());
    }
    if level == 0 || !op.is_differentiable() {
        // Concrete data, or an op with no gradient: compute on the values under all levels.
        let mut arrays: SmallVec<[&Array; 4]> = SmallVec::new();
        for t in inputs {
            arrays.push(t.data());
        }
        let out = if crate::checkpoint::saving() {
            match crate::checkpoint::kept_or(&op, || Tensor::new(op.forward(&arrays))) {
                // a checkpoint's recomputation: the forward's value (a capture knows it)
                (out, true) => return out,
                (out, false) => out,
            }
        } else {
            Tensor::new(op.forward(&arrays))
        };
        if crate::compile::capture::active() {
            if let Op::Custom(c) = &op {
                if let Some(inner) = c.recorded_as() {
                    crate::compile::capture::alias(&out, &inner);
                    return out;
                }
            }
            let concrete: SmallVec<[&Tensor; 4]> = inputs.iter().map(|t| t.concrete()).collect();
            crate::compile::capture::record_op(&op, &concrete, &out, Location::caller());
        }
        return out;
    }
    let mut inner: SmallVec<[Tensor; 4]> = SmallVec::new();
    for t in inputs {
        inner.push(t.unbox(level));
    }
    let mut refs: SmallVec<[&Tensor; 4]> = SmallVec::new();
    for t in &inner {
        refs.push(t);
    }
    let value = apply_at(op.clone(), &refs);
    if !value.data().dtype().is_float() {
        return value;
    }
    let mut held = Inputs::new();
    for &t in inputs {
        held.push(t.clone());
    }
    Tensor::node(level, value, op, held, Location::caller())
}
