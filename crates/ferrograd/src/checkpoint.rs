//! Gradient checkpointing (rematerialisation): a function whose intermediate values are not
//! kept for the backward pass but computed again when it needs them.
//!
//! A checkpoint is one primitive (a [`CustomOp`]) whose inputs are the float leaves of the
//! input tree and whose output packs the function's outputs. Its forward runs the function
//! on the untraced values, so nothing inside is recorded at any level; its gradient rule
//! runs the function again at a fresh level and walks that graph back, with ordinary tensor
//! operations, so a checkpoint can be differentiated again (a Hessian-vector product through
//! it). A [`Policy`] keeps some of the forward's values for the recomputation (matrix
//! products): the forward saves them in order, the recomputation takes them back in order.
//!
//! Optimize mode records the function's steps in the forward pass and again in the
//! recomputation, marked with the policy; the plan's common-subexpression pass merges a
//! recomputed step into the forward's only where the policy keeps that value, so the plan
//! computes the rest twice and frees the forward's copies after their last forward use.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::sync::{Arc, Mutex};

use crate::custom::CustomOp;
use crate::grad::{backward, next_level};
use crate::op::Op;
use crate::tree::{leaves, rebuild, Tree};
use crate::{Array, DType, Generator, Tensor};

/// The function of a checkpoint, on its input tree and an optional generator.
type Body<I, O> = dyn Fn(&I, Option<&mut Generator>) -> O + Send + Sync;

/// What a checkpoint keeps from its forward pass for the backward pass (JAX's
/// rematerialization policies).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Nothing: the backward pass runs the whole function again (the default; the least
    /// memory).
    #[default]
    Nothing,
    /// The outputs of matrix products (JAX's `dots_saveable`): the recomputation skips the
    /// products, the most expensive part of most layers, and redoes the cheap elementwise
    /// work around them.
    Matmuls,
    /// The values the function marks with [`checkpoint_name`] under one of these names
    /// (JAX's `save_only_these_names`): the recomputation takes them from the forward pass;
    /// in optimize mode the plan then drops the steps that only led to them.
    Names(&'static [&'static str]),
    /// Everything, as without the checkpoint: no recomputation.
    Everything,
}

thread_local! {
    /// Checkpoints that save values (forward) or reuse them (recomputation), innermost last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
    static SAVING: Cell<bool> = const { Cell::new(false) };
}

/// Values a checkpoint keeps, named by the position of the op that made them among the
/// ops the function ran (the recomputation runs the same ops in the same order).
enum Frame {
    /// A forward pass.
    Save {
        policy: Policy,
        /// Ops run so far.
        count: usize,
        /// The op that made each value, by handle (for [`checkpoint_name`]).
        made_by: HashMap<usize, usize>,
        /// The values kept, by op, in order.
        kept: Vec<(usize, Tensor)>,
    },
    /// A recomputation.
    Reuse {
        count: usize,
        /// Ops the forward ran.
        total: usize,
        kept: std::iter::Peekable<std::vec::IntoIter<(usize, Tensor)>>,
    },
}

/// True while a checkpoint's forward keeps values, or its recomputation reuses them.
#[inline]
pub(crate) fn saving() -> bool {
    SAVING.with(Cell::get)
}

/// An op run inside a checkpoint that keeps values: on the forward pass, `compute`d and
/// kept when the policy says so (`false`); on the recomputation, the forward's value when
/// it kept one (`true`: the very tensor the forward made, which a capture knows), else
/// `compute`d again.
pub(crate) fn kept_or(op: &Op, compute: impl FnOnce() -> Tensor) -> (Tensor, bool) {
    let reused = FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        match frames.last_mut().expect("saving() means a frame") {
            Frame::Save { count, .. } => {
                *count += 1;
                None
            }
            Frame::Reuse { count, kept, .. } => {
                let at = *count;
                *count += 1;
                kept.next_if(|(i, _)| *i == at).map(|(_, t)| t)
            }
        }
    });
    if let Some(t) = reused {
        return (t, true);
    }
    let out = compute();
    FRAMES.with(|f| {
        if let Some(Frame::Save {
            policy,
            count,
            made_by,
            kept,
        }) = f.borrow_mut().last_mut()
        {
            let at = *count - 1;
            match policy {
                Policy::Matmuls if matches!(op, Op::Matmul) => kept.push((at, out.clone())),
                Policy::Names(_) => {
                    made_by.insert(out.id(), at);
                }
                _ => {}
            }
        }
    });
    (out, false)
}

/// Marks `x` as the value called `name`, for a checkpoint whose [`Policy::Names`] keeps it
/// (the recomputation then takes it from the forward pass instead of computing it again).
/// Returns `x`; outside such a checkpoint it does nothing.
///
/// ```
/// use ferrograd::{checkpoint_name, checkpoint_with, grad, DType, Policy, Tensor};
/// let block = |(w, x): &(Tensor, Tensor)| {
///     let h = checkpoint_name(&x.matmul(w).tanh(), "hidden");
///     h.matmul(w).tanh()
/// };
/// let f = |w: &Tensor, x: &Tensor| {
///     checkpoint_with(Policy::Names(&["hidden"]), block, &(w.clone(), x.clone())).sum()
/// };
/// let w = Tensor::eye(3, DType::F64) * 0.5;
/// let x = Tensor::ones(&[2, 3], DType::F64);
/// let (g, _) = grad(f).call(&w, (&x,));
/// let (want, _) = grad(|w: &Tensor, x: &Tensor| block(&(w.clone(), x.clone())).sum()).call(&w, (&x,));
/// assert_eq!(g.to_vec::<f64>(), want.to_vec::<f64>());
/// ```
pub fn checkpoint_name(x: &Tensor, name: &str) -> Tensor {
    if saving() {
        FRAMES.with(|f| {
            if let Some(Frame::Save {
                policy: Policy::Names(names),
                made_by,
                kept,
                ..
            }) = f.borrow_mut().last_mut()
            {
                let t = x.concrete();
                if let (true, Some(&at)) = (names.contains(&name), made_by.get(&t.id())) {
                    if let Err(k) = kept.binary_search_by_key(&at, |(i, _)| *i) {
                        kept.insert(k, (at, t.clone()));
                    }
                }
            }
        });
    }
    x.clone()
}

/// Runs `f` with `frame` innermost; returns what is left of the frame.
fn in_frame<R>(frame: Frame, f: impl FnOnce() -> R) -> (R, Frame) {
    /// Pops the frame, also when `f` panics.
    struct Pushed {
        popped: bool,
    }
    fn pop() -> Frame {
        FRAMES.with(|f| {
            let mut frames = f.borrow_mut();
            let top = frames.pop().expect("a pushed frame");
            SAVING.with(|s| s.set(!frames.is_empty()));
            top
        })
    }
    impl Drop for Pushed {
        fn drop(&mut self) {
            if !self.popped {
                pop();
            }
        }
    }
    FRAMES.with(|f| f.borrow_mut().push(frame));
    SAVING.with(|s| s.set(true));
    let mut pushed = Pushed { popped: false };
    let out = f();
    pushed.popped = true;
    (out, pop())
}

/// What a checkpoint's forward leaves for the call that made it.
struct Forward<O> {
    /// The packed outputs as the function computed them (a capture names the op's output
    /// after it).
    packed: Tensor,
    tree: O,
    metas: Vec<(Vec<usize>, DType)>,
    rng: Option<Generator>,
}

/// One checkpointed call.
struct Checkpoint<I, O> {
    f: Box<Body<I, O>>,
    /// The input tree (its leaves are replaced by the op's inputs).
    template: I,
    /// The inputs' values, untraced: the forward runs on these handles, so that a capture
    /// knows them.
    inputs: Vec<Tensor>,
    /// The generator's state when the call began (`checkpoint_with_rng`).
    rng: Option<Generator>,
    /// What the forward found: the output tree (with empty placeholder leaves), each
    /// output's shape and dtype, and the generator's state after it.
    forward: Mutex<Option<Forward<O>>>,
    policy: Policy,
    /// The values the forward kept, by op, and how many ops it ran.
    kept: Mutex<(Vec<(usize, Tensor)>, usize)>,
    location: &'static Location<'static>,
}

impl<I, O> std::fmt::Debug for Checkpoint<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint at {}", ferrograd_array::Site(self.location))
    }
}

/// The panic for a checkpoint whose output `k` depends on a traced tensor that is not one
/// of its inputs.
fn captured(k: usize, location: &'static Location<'static>) -> ! {
    panic!(
        "ferrograd: checkpoint: output {k} depends on a tensor being differentiated that is not \
         among the checkpoint's inputs (one the closure captured?); pass every parameter the \
         function uses in its inputs (at {})",
        ferrograd_array::Site(location)
    )
}

/// The dtype the outputs are packed in: theirs when they share one, else f64 (which holds
/// f32 values exactly).
fn pack_dtype(outs: &[Tensor]) -> DType {
    let first = outs[0].dtype();
    if outs.iter().all(|t| t.dtype() == first) {
        first
    } else {
        DType::F64
    }
}

/// The outputs as one tensor: the output itself when there is one, else their flattened
/// values concatenated in [`pack_dtype`].
fn pack(outs: &[Tensor]) -> Tensor {
    if let [one] = outs {
        return one.clone();
    }
    let dtype = pack_dtype(outs);
    let flat: Vec<Tensor> = outs
        .iter()
        .map(|t| {
            let t = t.reshape(&[t.numel()]);
            if t.dtype() == dtype {
                t
            } else {
                t.to_dtype(dtype)
            }
        })
        .collect();
    Tensor::cat(&flat, 0)
}

/// The outputs (of these shapes and dtypes) cut back out of `packed`.
fn unpack(packed: &Tensor, metas: &[(Vec<usize>, DType)]) -> Vec<Tensor> {
    if metas.len() == 1 {
        return vec![packed.clone()];
    }
    let mut offset = 0;
    metas
        .iter()
        .map(|(shape, dtype)| {
            let n = shape.iter().product();
            let part = packed.narrow(0, offset, n).reshape(shape);
            offset += n;
            if part.dtype() == *dtype {
                part
            } else {
                part.to_dtype(*dtype)
            }
        })
        .collect()
}

impl<I, O> Checkpoint<I, O>
where
    I: Tree + Send + Sync + 'static,
    O: Tree + Send + Sync + 'static,
{
    /// Runs the function on the op's inputs (as leaves of the input tree) with the
    /// generator as it was when the call began.
    fn call(&self, inputs: Vec<Tensor>) -> (O, Option<Generator>) {
        let tree = rebuild(&self.template, inputs);
        let mut rng = self.rng.clone();
        let out = (self.f)(&tree, rng.as_mut());
        (out, rng)
    }
}

impl<I, O> CustomOp for Checkpoint<I, O>
where
    I: Tree + Send + Sync + 'static,
    O: Tree + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        "checkpoint"
    }

    fn recorded_as(&self) -> Option<Tensor> {
        let forward = self.forward.lock().unwrap_or_else(|e| e.into_inner());
        forward.as_ref().map(|f| f.packed.clone())
    }

    fn forward(&self, inputs: &[&Array]) -> Array {
        // A capture records the function's own steps (and then names this op's output after
        // the packed outputs rather than recording the op): the plan's passes see the
        // forward and the recomputation as ordinary steps, and the policy decides which
        // recomputed values the forward's replace.
        debug_assert_eq!(inputs.len(), self.inputs.len());
        let inputs = self.inputs.clone();
        let (out, rng) = match self.policy {
            Policy::Nothing | Policy::Everything => self.call(inputs),
            policy => {
                let frame = Frame::Save {
                    policy,
                    count: 0,
                    made_by: HashMap::new(),
                    kept: Vec::new(),
                };
                let (out, frame) = in_frame(frame, || self.call(inputs));
                if let Frame::Save { kept, count, .. } = frame {
                    *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = (kept, count);
                }
                out
            }
        };
        let outs = leaves(&out);
        let site = ferrograd_array::Site(self.location);
        if outs.is_empty() {
            panic!("ferrograd: checkpoint: the function returned no tensor (at {site})");
        }
        for (k, t) in outs.iter().enumerate() {
            if t.is_traced() {
                captured(k, self.location);
            }
            if !t.dtype().is_float() {
                panic!(
                    "ferrograd: checkpoint: output {k} is {}; a checkpoint returns float tensors \
                     only (compute integer and bool results outside it) (at {site})",
                    t.dtype().name()
                );
            }
        }
        let packed_tensor = pack(&outs);
        let packed = packed_tensor.data().clone();
        let placeholders = outs
            .iter()
            .map(|t| Tensor::zeros(&[0], t.dtype()))
            .collect();
        *self.forward.lock().unwrap_or_else(|e| e.into_inner()) = Some(Forward {
            packed: packed_tensor,
            tree: rebuild(&out, placeholders),
            metas: outs
                .iter()
                .map(|t| (t.shape().to_vec(), t.dtype()))
                .collect(),
            rng,
        });
        packed
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        _output: &Tensor,
        grad: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        // the forward again, at a level of its own, from the inputs it needs gradients for
        let level = next_level();
        let boxed: Vec<Tensor> = inputs
            .iter()
            .zip(needs)
            .map(|(t, &n)| {
                if n && t.dtype().is_float() {
                    Tensor::node(
                        level,
                        t.clone(),
                        Op::Leaf,
                        Default::default(),
                        self.location,
                    )
                } else {
                    t.clone()
                }
            })
            .collect();
        let _recomputing = crate::compile::capture::remat_scope();
        let (out, _) = match self.policy {
            Policy::Nothing | Policy::Everything => self.call(boxed.clone()),
            _ => {
                let (kept, total) = self.kept.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let frame = Frame::Reuse {
                    count: 0,
                    total,
                    kept: kept.into_iter().peekable(),
                };
                let (out, rest) = in_frame(frame, || self.call(boxed.clone()));
                if let Frame::Reuse { count, total, .. } = rest {
                    if count != total {
                        panic!(
                            "ferrograd: checkpoint: the function ran {count} operations when \
                             recomputed and {total} on its forward pass; it must compute the \
                             same way both times (at {})",
                            ferrograd_array::Site(self.location)
                        );
                    }
                }
                out
            }
        };
        let root = pack(&leaves(&out));
        let grads = backward(level, &root, grad.clone(), None, None);
        boxed
            .iter()
            .zip(inputs)
            .zip(needs)
            .map(|((b, x), &n)| {
                (n && x.dtype().is_float()).then(|| {
                    grads
                        .get(&b.id())
                        .cloned()
                        .unwrap_or_else(|| x.zeros_like())
                })
            })
            .collect()
    }
}

/// Runs `f` on `inputs` without keeping what it computes inside for the backward pass: the
/// backward pass runs `f` again to get those values (gradient checkpointing, PyTorch's
/// `torch.utils.checkpoint`, JAX's `jax.checkpoint`). Memory for a deep network drops from
/// its every activation to the checkpoints' outputs plus one segment's activations, for one
/// more forward pass of each checkpointed function.
///
/// `inputs` and the result are trees (a tensor, a tuple like an LSTM's `(h, c)`, a
/// parameter struct); every tensor `f` differentiates through must come in through `inputs`
/// (a checkpoint whose output depends on a traced tensor the closure captured panics, as
/// its gradient would otherwise be lost). Outputs are float tensors. Gradients are the same
/// as without the checkpoint, to any order (a Hessian-vector product through a checkpoint
/// recomputes it inside the recomputation). `f` must compute the same values when run
/// again: for dropout, use [`checkpoint_with_rng`]. In optimize mode the plan computes the
/// function twice, freeing the forward's intermediate values after their last forward use.
///
/// ```
/// use ferrograd::{checkpoint, grad, DType, Tensor};
/// let f = |p: &(Tensor, Tensor)| {
///     let (w, x) = p;
///     // the tanh's output is not kept: the backward pass computes it again
///     let h = checkpoint(|(w, x): &(Tensor, Tensor)| x.matmul(w).tanh(), &(w.clone(), x.clone()));
///     h.sum()
/// };
/// let p = (Tensor::ones(&[3, 2], DType::F64), Tensor::ones(&[1, 3], DType::F64));
/// let plain = |p: &(Tensor, Tensor)| p.1.matmul(&p.0).tanh().sum();
/// let (g, _) = grad(f).call(&p, ());
/// let (want, _) = grad(plain).call(&p, ());
/// assert_eq!(g.0.to_vec::<f64>(), want.0.to_vec::<f64>());
/// ```
#[track_caller]
pub fn checkpoint<I, O>(f: impl Fn(&I) -> O + Send + Sync + 'static, inputs: &I) -> O
where
    I: Tree + Clone + Send + Sync + 'static,
    O: Tree + Send + Sync + 'static,
{
    checkpoint_with(Policy::Nothing, f, inputs)
}

/// [`checkpoint`] keeping what `policy` says from the forward pass: with
/// [`Policy::Matmuls`] the recomputation reuses the forward's matrix products (more memory,
/// less time); [`Policy::Everything`] is the function without a checkpoint. Optimize mode
/// follows the policy too: its plan keeps the values the policy keeps alive until the
/// backward pass and computes the others again.
///
/// ```
/// use ferrograd::{checkpoint_with, grad, DType, Policy, Tensor};
/// let layer = |(w, x): &(Tensor, Tensor)| x.matmul(w).tanh().matmul(w).tanh();
/// let f = |w: &Tensor, x: &Tensor| {
///     checkpoint_with(Policy::Matmuls, layer, &(w.clone(), x.clone())).sum()
/// };
/// let w = Tensor::eye(3, DType::F64) * 0.5;
/// let x = Tensor::ones(&[2, 3], DType::F64);
/// let (g, _) = grad(f).call(&w, (&x,));
/// let (want, _) = grad(|w: &Tensor, x: &Tensor| layer(&(w.clone(), x.clone())).sum()).call(&w, (&x,));
/// assert_eq!(g.to_vec::<f64>(), want.to_vec::<f64>());
/// ```
#[track_caller]
pub fn checkpoint_with<I, O>(
    policy: Policy,
    f: impl Fn(&I) -> O + Send + Sync + 'static,
    inputs: &I,
) -> O
where
    I: Tree + Clone + Send + Sync + 'static,
    O: Tree + Send + Sync + 'static,
{
    if policy == Policy::Everything {
        return f(inputs);
    }
    run(
        Box::new(move |i, _| f(i)),
        inputs,
        None,
        policy,
        Location::caller(),
    )
    .0
}

/// [`checkpoint`] for a function that draws random numbers (dropout): `f` draws from a
/// generator that starts, on the forward pass and again on the recomputation, from `rng`'s
/// state, so both see the same masks; `rng` is left where the forward left it.
///
/// A plan cannot replay the generator of a checkpoint, so in optimize mode a call that
/// checkpoints with a generator runs in direct mode (with a warning).
///
/// ```
/// use ferrograd::{checkpoint_with_rng, grad, DType, Generator, Tensor};
/// let mut rng = Generator::new(0);
/// let x = Tensor::ones(&[100], DType::F64);
/// let f = |x: &Tensor, rng: &mut Generator| {
///     let drop = |x: &Tensor, rng: &mut Generator| {
///         let keep = Tensor::rand_bernoulli(rng, x.shape(), 0.5, DType::F64);
///         x * &keep * 2.0
///     };
///     checkpoint_with_rng(drop, x, rng).sum()
/// };
/// let (g, y) = grad(f).call(&x, (&mut rng,));
/// // the gradient is the mask the forward drew, times 2
/// assert_eq!(g.sum().item::<f64>(), y.item::<f64>());
/// ```
#[track_caller]
pub fn checkpoint_with_rng<I, O>(
    f: impl Fn(&I, &mut Generator) -> O + Send + Sync + 'static,
    inputs: &I,
    rng: &mut Generator,
) -> O
where
    I: Tree + Clone + Send + Sync + 'static,
    O: Tree + Send + Sync + 'static,
{
    let location = Location::caller();
    if crate::compile::capture::active() {
        crate::compile::capture::poison(format!(
            "checkpoint_with_rng at {} draws from a generator a plan cannot replay",
            ferrograd_array::Site(location)
        ));
    }
    let body = move |i: &I, g: Option<&mut Generator>| {
        f(i, g.expect("checkpoint_with_rng passes its generator"))
    };
    let (out, after) = run(
        Box::new(body),
        inputs,
        Some(rng.clone()),
        Policy::Nothing,
        location,
    );
    if let Some(after) = after {
        *rng = after;
    }
    out
}

#[track_caller]
fn run<I, O>(
    f: Box<Body<I, O>>,
    inputs: &I,
    rng: Option<Generator>,
    policy: Policy,
    location: &'static Location<'static>,
) -> (O, Option<Generator>)
where
    I: Tree + Clone + Send + Sync + 'static,
    O: Tree + Send + Sync + 'static,
{
    let xs = leaves(inputs);
    if !xs.iter().any(Tensor::is_traced) {
        // nothing to differentiate: just the function
        let mut rng = rng;
        let out = f(inputs, rng.as_mut());
        if let Some(k) = leaves(&out).iter().position(Tensor::is_traced) {
            captured(k, location);
        }
        return (out, rng);
    }
    let op = Arc::new(Checkpoint {
        f,
        template: inputs.clone(),
        inputs: xs.iter().map(Tensor::detach).collect(),
        rng,
        forward: Mutex::new(None),
        policy,
        kept: Mutex::new((Vec::new(), 0)),
        location,
    });
    let refs: Vec<&Tensor> = xs.iter().collect();
    let packed = crate::tensor::apply(Op::Custom(op.clone() as Arc<dyn CustomOp>), &refs);
    let forward = op
        .forward
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .expect("the forward ran");
    let outs = unpack(&packed, &forward.metas);
    (rebuild(&forward.tree, outs), forward.rng)
}
