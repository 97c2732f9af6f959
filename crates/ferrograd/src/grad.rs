//! `grad` and its relatives: the builder, the backward pass, and the helpers built on it
//! (`value_and_grad`, `vjp`, `jacobian`, `hvp`, `hessian`).

use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use crate::compile::{ArgTree, Optimizer, Stats};
use crate::context::{self, Hooks};
use crate::debug::{DebugEvent, DebugHook};
use crate::op::Op;
use crate::profile::Profile;
use crate::tree::{leaf_names, leaves, leaves_into, rebuild, rebuild_from, Tree};
use crate::{Array, Tensor};

/// Levels only grow, so a level never meets a stale box of an earlier call.
static NEXT_LEVEL: AtomicU64 = AtomicU64::new(1);

/// A fresh autodiff level, above every level in use.
pub(crate) fn next_level() -> u64 {
    NEXT_LEVEL.fetch_add(1, Ordering::Relaxed)
}

/// Hashes node addresses (already unique) without SipHash's cost.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_usize(&mut self, n: usize) {
        // Addresses are 8-aligned; mix so the low bits vary.
        self.0 = (n as u64 >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdMap<V> = HashMap<usize, V, BuildHasherDefault<IdHasher>>;

/// Told each leaf (the boxed leaf tensor) and its gradient, if any, when the gradient is
/// final.
pub(crate) type LeafReady<'a> = dyn FnMut(&Tensor, Option<&Tensor>) + 'a;

/// Runs the backward pass of `level` from `root` with output gradient `seed`, returning the
/// gradient of every node of that level that received one, by node id.
pub(crate) fn backward(
    level: u64,
    root: &Tensor,
    seed: Tensor,
    hooks: Option<&Hooks>,
    mut ready: Option<&mut LeafReady<'_>>,
) -> IdMap<Tensor> {
    // Nodes of this level reachable from the root, in reverse creation order (a reverse
    // topological order: inputs are always created before their consumers).
    let mut nodes: Vec<Tensor> = Vec::new();
    let mut seen: IdMap<()> = IdMap::default();
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.pop() {
        let Some(n) = t.node_at(level) else { continue };
        if seen.insert(t.id(), ()).is_some() {
            continue;
        }
        for input in &n.inputs {
            if input.node_at(level).is_some() && !seen.contains_key(&input.id()) {
                stack.push(input.clone());
            }
        }
        nodes.push(t);
    }
    nodes.sort_unstable_by_key(|t| std::cmp::Reverse(t.as_node().map_or(0, |n| n.seq)));
    // With a `ready` callback: how many edges into each leaf are still to be walked; the
    // leaf's gradient is final when its count reaches zero.
    let mut pending: IdMap<usize> = IdMap::default();
    if ready.is_some() {
        for t in &nodes {
            let n = t.as_node().expect("collected nodes are traced");
            for input in &n.inputs {
                if input
                    .node_at(level)
                    .is_some_and(|m| matches!(m.op, Op::Leaf))
                {
                    *pending.entry(input.id()).or_insert(0) += 1;
                }
            }
        }
    }

    let mut grads: IdMap<Tensor> = IdMap::default();
    grads.insert(root.id(), seed);
    let _scope = hooks.map(context::backward_scope);
    for t in &nodes {
        let n = t.as_node().expect("collected nodes are traced");
        if matches!(n.op, Op::Leaf) {
            continue;
        }
        let Some(g) = grads.remove(&t.id()) else {
            continue;
        };
        let inner: Vec<Tensor> = n.inputs.iter().map(|x| x.unbox(level)).collect();
        let start = hooks.map(|_| std::time::Instant::now());
        let needs: SmallVec<[bool; 4]> = n
            .inputs
            .iter()
            .map(|x| x.node_at(level).is_some())
            .collect();
        let contributions = {
            let _origin = crate::compile::capture::backward_origin(&n.op, n.location);
            n.op.vjp(&inner, &n.value, &g, &needs)
        };
        if let (Some(h), Some(start)) = (hooks, start) {
            context::record_backward(h, &n.op, n.location, start.elapsed(), &contributions, root);
        }
        for (input, c) in n.inputs.iter().zip(contributions) {
            let (Some(c), Some(_)) = (c, input.node_at(level)) else {
                continue;
            };
            debug_assert_eq!(
                c.shape(),
                input.shape(),
                "gradient of {} has the wrong shape",
                n.op.name()
            );
            match grads.remove(&input.id()) {
                // Accumulate out of place: a contribution may be shared with another node.
                Some(prev) => grads.insert(input.id(), &prev + &c),
                None => grads.insert(input.id(), c),
            };
        }
        if let Some(ready) = ready.as_mut() {
            for input in &n.inputs {
                let Some(count) = pending.get_mut(&input.id()) else {
                    continue;
                };
                *count -= 1;
                if *count == 0 {
                    ready(input, grads.get(&input.id()));
                }
            }
        }
    }
    grads
}

/// Every float leaf boxed as a leaf node of `level`; other leaves (integers, masks) stay
/// constants.
pub(crate) fn box_leaves(
    originals: &[Tensor],
    level: u64,
    location: &'static Location<'static>,
) -> Vec<Tensor> {
    originals
        .iter()
        .map(|t| {
            if t.dtype().is_float() {
                Tensor::node(level, t.clone(), Op::Leaf, Default::default(), location)
            } else {
                t.clone()
            }
        })
        .collect()
}

/// [`backward`] and [`leaf_grads`], telling `hook` each leaf's gradient as soon as it is
/// final and the rest when the pass ends.
fn backward_reporting(
    level: u64,
    loss: &Tensor,
    seed: Tensor,
    hooks: Option<&Hooks>,
    boxed: &[Tensor],
    originals: &[Tensor],
    hook: &GradientHook,
) -> Vec<Tensor> {
    let index: IdMap<usize> = boxed.iter().enumerate().map(|(i, b)| (b.id(), i)).collect();
    let mut reported = vec![false; boxed.len()];
    // the hook watches the call: what it reads is not part of a capture
    let mut ready = |leaf: &Tensor, g: Option<&Tensor>| {
        if let (Some(&i), Some(g)) = (index.get(&leaf.id()), g) {
            reported[i] = true;
            let _watching = crate::compile::capture::pause();
            hook(i, g);
        }
    };
    let grads = backward(level, loss, seed, hooks, Some(&mut ready));
    let result = leaf_grads(&grads, boxed, originals);
    let _watching = crate::compile::capture::pause();
    for (i, g) in result.iter().enumerate() {
        if !reported[i] {
            hook(i, g);
        }
    }
    result
}

/// The gradient of each boxed leaf, zeros where the backward pass never reached it.
fn leaf_grads(grads: &IdMap<Tensor>, boxed: &[Tensor], originals: &[Tensor]) -> Vec<Tensor> {
    boxed
        .iter()
        .zip(originals)
        .map(|(b, o)| {
            grads
                .get(&b.id())
                .cloned()
                .unwrap_or_else(|| o.zeros_like())
        })
        .collect()
}

/// `Σ_leaves sum(a ⊙ b)` over two trees of one structure (float leaves only).
pub(crate) fn tree_dot<P: Tree>(a: &P, b: &[Tensor]) -> Tensor {
    leaves(a)
        .iter()
        .zip(b)
        .filter(|(t, _)| t.dtype().is_float())
        .map(|(x, y)| (x * y).sum())
        .reduce(|x, y| &x + &y)
        .unwrap_or_else(|| Tensor::scalar(0.0f64))
}

/// A function that `grad` can differentiate: `Fn(&P, A, B, ...) -> Out`, called with the
/// parameters and a tuple of the other arguments. Implemented for closures and functions of
/// up to six further arguments.
pub trait Differentiable<P, Args> {
    /// What the function returns.
    type Output;
    /// Calls the function.
    fn invoke(&self, params: &P, args: Args) -> Self::Output;
}

macro_rules! differentiable {
    ($($arg:ident),*) => {
        impl<Func, P, Out, $($arg),*> Differentiable<P, ($($arg,)*)> for Func
        where
            Func: Fn(&P, $($arg),*) -> Out,
        {
            type Output = Out;
            #[allow(non_snake_case)]
            fn invoke(&self, params: &P, ($($arg,)*): ($($arg,)*)) -> Out {
                self(params, $($arg),*)
            }
        }
    };
}
differentiable!();
differentiable!(A);
differentiable!(A, B);
differentiable!(A, B, C);
differentiable!(A, B, C, D);
differentiable!(A, B, C, D, E);
differentiable!(A, B, C, D, E, G);

/// What a differentiated function returns: a loss, or a loss with auxiliary outputs (any
/// [`Tree`]: tensors, numbers, tuples of them), which come back untouched beside the
/// gradient. Outputs are trees that own their data (`Send + Sync + 'static`), so optimize
/// mode can keep their shape in a plan.
pub trait GradOutput: Tree + Send + Sync + Sized + 'static {
    /// The tensor being differentiated.
    fn loss(&self) -> &Tensor;
    /// The same outputs with every tensor taken out of `grad`'s level.
    #[doc(hidden)]
    fn unbox(&self, level: u64) -> Self;
}

impl GradOutput for Tensor {
    fn loss(&self) -> &Tensor {
        self
    }
    fn unbox(&self, level: u64) -> Self {
        Tensor::unbox(self, level)
    }
}

impl<T: Tree + Send + Sync + 'static> GradOutput for (Tensor, T) {
    fn loss(&self) -> &Tensor {
        &self.0
    }
    fn unbox(&self, level: u64) -> Self {
        (self.0.unbox(level), self.1.map(&mut |t| t.unbox(level)))
    }
}

/// What [`Grad::run`] computed, as its flags asked.
#[derive(Debug)]
pub struct Outputs<P, O> {
    /// The gradient tree (when `with_gradients`).
    pub grads: Option<P>,
    /// The function's outputs (when `with_forward`).
    pub output: Option<O>,
}

/// The gradient of a function, built by [`grad`]; call it as often as you like.
pub struct Grad<F> {
    f: F,
    config: Config,
}

/// Everything of a [`Grad`] but its function: the engine (direct and optimize mode) is
/// written against this and [`Call`], so it is compiled once, not once per closure.
pub(crate) struct Config {
    pub(crate) with_forward: bool,
    pub(crate) with_gradients: bool,
    partial_grad: bool,
    pub(crate) debug: Option<DebugHook>,
    pub(crate) profile: Option<Arc<Mutex<Profile>>>,
    pub(crate) optimizer: Optimizer,
    pub(crate) on_gradient: Option<GradientHook>,
}

/// A callback told each parameter's gradient as soon as it is final: see
/// [`Grad::on_gradient`].
pub type GradientHook = Arc<dyn Fn(usize, &Tensor) + Send + Sync>;

/// The gradient of `f` with respect to its first argument (a [`Tree`] of tensors).
///
/// Float leaves are the parameters. Integer and bool leaves of the tree are data, not
/// parameters: they pass through untraced and their gradients come back as zeros of their
/// own dtype (PyTorch refuses `requires_grad` on them instead); pass such data in the
/// arguments after the parameters where you can.
///
/// ```
/// use ferrograd::{grad, Tensor};
/// // y = Σ x², dy/dx = 2x
/// let f = |x: &Tensor| (x * x).sum();
/// let (dx, y) = grad(f).call(&Tensor::from_vec(vec![1.0f64, -2.0], &[2]), ());
/// assert_eq!(dx.to_vec::<f64>(), vec![2.0, -4.0]);
/// assert_eq!(y.item::<f64>(), 5.0);
/// ```
pub fn grad<F>(f: F) -> Grad<F> {
    Grad {
        f,
        config: Config {
            with_forward: true,
            with_gradients: true,
            partial_grad: false,
            debug: None,
            profile: None,
            optimizer: Optimizer::default(),
            on_gradient: None,
        },
    }
}

/// Same as [`grad`]: [`Grad::call`] returns the value with the gradient.
pub fn value_and_grad<F>(f: F) -> Grad<F> {
    grad(f)
}

impl<F> Grad<F> {
    /// Whether [`run`](Grad::run) returns the function's outputs (default true).
    pub fn with_forward(mut self, on: bool) -> Self {
        self.config.with_forward = on;
        self
    }

    /// Whether [`run`](Grad::run) computes gradients (default true). Without gradients the
    /// function simply runs.
    pub fn with_gradients(mut self, on: bool) -> Self {
        self.config.with_gradients = on;
        self
    }

    /// Whether the function may return a tensor of any shape, whose output gradient is then
    /// passed to [`run`](Grad::run) (default false: the output must have one element).
    pub fn partial_grad(mut self, on: bool) -> Self {
        self.config.partial_grad = on;
        self
    }

    /// Calls `hook(i, gradient)` for each leaf of the parameter tree as soon as its gradient
    /// is final, while the backward pass goes on: `i` is the leaf's position in
    /// [`leaves`](crate::leaves) order. Data-parallel training starts averaging a bucket of
    /// gradients across processes the moment its last gradient is ready, hiding the
    /// communication behind the rest of the backward pass; the hook is also the place for
    /// per-parameter gradient logging or clipping statistics.
    ///
    /// Each leaf is reported exactly once per call: in direct mode when the last node that
    /// uses it has been walked (the output layer's parameters first), leaves the loss does not
    /// reach (and integer leaves) with their zero gradient when the pass ends. A replay in
    /// optimize mode reports each gradient as soon as the plan has computed it (gradients
    /// that are constants first). Nested calls report only their own parameters, and a
    /// `verify` run reports nothing.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use ferrograd::{grad, DType, Tensor};
    /// let order = Arc::new(Mutex::new(Vec::new()));
    /// let seen = order.clone();
    /// let f = |p: &(Tensor, Tensor)| p.1.tanh().matmul(&p.0).sum();
    /// let params = (Tensor::ones(&[3, 2], DType::F64), Tensor::ones(&[1, 3], DType::F64));
    /// grad(f)
    ///     .on_gradient(move |i, g| seen.lock().unwrap().push((i, g.shape().to_vec())))
    ///     .call(&params, ());
    /// // the matrix (used last) is final first
    /// assert_eq!(*order.lock().unwrap(), vec![(0, vec![3, 2]), (1, vec![1, 3])]);
    /// ```
    pub fn on_gradient(mut self, hook: impl Fn(usize, &Tensor) + Send + Sync + 'static) -> Self {
        self.config.on_gradient = Some(Arc::new(hook));
        self
    }

    /// Checks every forward op and backward step for NaN and infinity, calling `hook` on each
    /// detection with the op, the user's line and the graph.
    ///
    /// The checks run on the thread that calls `grad`: tensor ops the function runs on other
    /// threads (inside its own rayon scope, say) are not checked, so a NaN born there is
    /// reported at the first op on the calling thread that uses it.
    pub fn debug_hook(mut self, hook: impl Fn(&DebugEvent) + Send + Sync + 'static) -> Self {
        self.config.debug = Some(Arc::new(hook));
        self
    }

    /// Times every op, forward and backward; read the table with
    /// [`profile_report`](Grad::profile_report).
    pub fn profile(mut self, on: bool) -> Self {
        self.config.profile = on.then(|| Arc::new(Mutex::new(Profile::default())));
        self
    }

    /// Optimize mode (default off): the first call for each input signature runs in direct
    /// mode while it is recorded, and later calls replay the recording, without building a
    /// graph. A replay returns exactly what direct mode would (bit for bit: the same kernels
    /// run in the same order), or the function is captured again:
    ///
    /// - the signature is the parameter tree's structure, every tensor's shape, dtype,
    ///   device and strides (parameters and arguments), and the value of every plain number
    ///   argument (like JAX's static arguments);
    /// - every read of computed data in the function (`item`, `to_vec`, `value`,
    ///   `allclose`) is a guard: a replay that reads another value captures the function
    ///   again, so a function that branches on `loss.item() < 3.0` gets one plan per branch;
    /// - random draws and state kept behind locks (batch normalization's running statistics;
    ///   your own through [`side_effect`](crate::side_effect)) make the signature run in
    ///   direct mode, with a warning;
    /// - tensors the closure captures are constants. State the function reads through a
    ///   `Mutex`, a `Cell` or a global is invisible to the capture: [`verify`](Grad::verify)
    ///   catches it.
    ///
    /// Calls whose inputs are traced by an enclosing `grad` (`grad` of this function), and
    /// calls made while another function is being captured, run in direct mode, so nesting
    /// is always correct. See [`stats`](Grad::stats) for what happened.
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// // y = Σ x³, dy/dx = 3x²
    /// let f = |x: &Tensor| x.pow_scalar(3.0).sum();
    /// let df = grad(f).optimize(true);
    /// for v in [1.0f64, 2.0, 3.0] {
    ///     let (dx, _) = df.call(&Tensor::from_vec(vec![v], &[1]), ());
    ///     assert_eq!(dx.to_vec::<f64>(), vec![3.0 * v * v]);
    /// }
    /// let stats = df.stats();
    /// assert_eq!((stats.captures, stats.hits), (1, 2));
    /// ```
    pub fn optimize(mut self, on: bool) -> Self {
        self.config.optimizer.enabled = on;
        self
    }

    /// How many input signatures optimize mode keeps plans for, and how many variants (guard
    /// outcomes) per signature (default 8). Past that it warns once, naming the input or the
    /// read that keeps changing, and runs the function in direct mode.
    pub fn cache_size(mut self, entries: usize) -> Self {
        self.config.optimizer.capacity = entries.max(1);
        self
    }

    /// Checks every `every`-th replay against direct mode and panics, naming the output that
    /// differs, when they disagree beyond rounding (default 0: never). This catches a
    /// function that reads state the capture cannot see, such as a tensor behind a `Mutex`.
    /// "Beyond rounding": within 1e-4 (f32) or 1e-10 (f64) of the output's largest
    /// magnitude, the room [`fusion`](Grad::fusion)'s reordered sums need; with fusion off a
    /// replay equals direct mode bit for bit.
    pub fn verify(mut self, every: u64) -> Self {
        self.config.optimizer.verify_every = every;
        self
    }

    /// Returns each replay's gradients in the buffers of the previous call's (the seed's
    /// `stableGradients`; default false). A training loop that consumes its gradients
    /// before the next call then gets the same memory every step, with no buffer allocated
    /// and stable addresses (for buffers registered with a communication library, say); the
    /// replay allocates only the returned tensors' handles and the tree's own containers. A
    /// gradient the caller still holds is never overwritten: tensors are immutable, so that
    /// call's gradient comes back in a new buffer, which the next calls reuse. Captures and
    /// direct-mode calls return fresh gradients.
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let df = grad(|w: &Tensor, x: &Tensor| w.matmul(x).square().sum())
    ///     .optimize(true)
    ///     .stable_gradients(true);
    /// let mut w = Tensor::from_vec(vec![0.5f64; 4], &[2, 2]);
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0], &[2, 1]);
    /// let mut buffers = Vec::new();
    /// for _ in 0..4 {
    ///     let (g, _) = df.call(&w, (&x,));
    ///     buffers.push(g.value().storage_id());
    ///     w = &w - &(&g * 0.01); // g is dropped here
    /// }
    /// // the capture's gradient is fresh; every replay reuses one buffer
    /// assert!(buffers[1..].iter().all(|&b| b == buffers[1]));
    /// ```
    pub fn stable_gradients(mut self, on: bool) -> Self {
        self.config.optimizer.stable_gradients = on;
        self
    }

    /// Whether plans fuse work across ops (default true):
    /// - runs of elementwise ops become one pass over memory, computing each element with the
    ///   same functions in the same order as the ops one at a time (identical bit for bit);
    ///   values used only inside a run never reach memory;
    /// - a sum of matrix products (a recurrent network's weight gradient, one term per time
    ///   step) becomes one product over the joined operands. The matrix kernel then adds the
    ///   terms in its own order, so each element may differ from direct mode's term-by-term
    ///   sum by a few units in the last place of `Σ|aᵢ bᵢ|` (n · ε · Σ|aᵢ bᵢ| at most, for n
    ///   terms);
    /// - a slice of a matrix product (the gradient of one operand of a concatenation, such
    ///   as an LSTM's `cat([x, h]) @ W`) becomes the product of the sliced operand, whose
    ///   sums the kernel may block differently (the same bound);
    /// - a product over one inner element with rows of at least 256 (`xᵀ @ g` for one
    ///   sample: a linear layer's weight gradient) becomes the broadcast multiply it is,
    ///   which fuses with what uses it, such as a compiled SGD update (identical bit for bit:
    ///   one rounded product per element either way).
    ///
    /// With fusion off a replay equals direct mode bit for bit. Under a debugger or profiler
    /// a plan runs the elementwise ops one at a time, so each is checked and timed on its
    /// own. Turning fusion off also shows the plan op by op (`plan_text`) and measures what
    /// fusion buys.
    ///
    /// ```
    /// use ferrograd::{grad, DType, Generator, Tensor};
    /// let f = |w: &Tensor, x: &Tensor| (x.matmul(w) + 1.0).tanh().square().sum();
    /// let mut rng = Generator::new(0);
    /// let w = Tensor::new(rng.normal(&[3, 4], 0.0, 1.0, DType::F32));
    /// let x = Tensor::new(rng.normal(&[2, 3], 0.0, 1.0, DType::F32));
    /// let fused = grad(f).optimize(true);
    /// let plain = grad(f).optimize(true).fusion(false);
    /// for _ in 0..2 {
    ///     let (a, b) = (fused.call(&w, (&x,)).0, plain.call(&w, (&x,)).0);
    ///     assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>());
    /// }
    /// assert!(fused.plan_text().contains("fused"));
    /// assert!(!plain.plan_text().contains("fused"));
    /// ```
    pub fn fusion(mut self, on: bool) -> Self {
        self.config.optimizer.fusion = on;
        self
    }

    /// Replaces nothing but refines the signature (the seed's `signatureFn`): `key` gets the
    /// parameter leaves and the argument tensors of a call and returns a number that splits
    /// signatures further, or `None` to run that call in direct mode. Calls whose shapes
    /// differ never share a plan, whatever `key` says.
    pub fn signature_fn(
        mut self,
        key: impl Fn(&[Tensor], &[Tensor]) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.config.optimizer.signature_fn = Some(Arc::new(key));
        self
    }

    /// What optimize mode has done so far: hits, captures, guard failures, fallbacks.
    pub fn stats(&self) -> Stats {
        self.config.optimizer.stats()
    }

    /// The cached plans as text, one line per step with the op, its inputs and the user's
    /// source line it came from (the seed's `showCode`); guards show their variants.
    pub fn plan_text(&self) -> String {
        self.config.optimizer.plans_text()
    }

    /// The most recently used plan as Graphviz DOT (render it with
    /// [`render_svg`](crate::render_svg)); `None` before the first capture.
    pub fn plan_dot(&self) -> Option<String> {
        self.config.optimizer.plan_dot()
    }

    /// The profiler's table (empty when profiling is off).
    pub fn profile_report(&self) -> String {
        self.config
            .profile
            .as_ref()
            .map(|p| p.lock().expect("profile lock").report())
            .unwrap_or_default()
    }

    /// Runs `visit` on the profile data (when profiling is on).
    pub fn with_profile<R>(&self, visit: impl FnOnce(&Profile) -> R) -> Option<R> {
        self.config
            .profile
            .as_ref()
            .map(|p| visit(&p.lock().expect("profile lock")))
    }

    /// The gradient of the function at `params` (same type), with its outputs.
    ///
    /// Panics when the function's loss has more than one element (use
    /// [`partial_grad`](Grad::partial_grad) with [`run`](Grad::run), or [`vjp`]).
    #[track_caller]
    pub fn call<P, Args>(&self, params: &P, args: Args) -> (P, F::Output)
    where
        P: Tree,
        Args: ArgTree,
        F: Differentiable<P, Args>,
        F::Output: GradOutput,
    {
        let c = &self.config;
        if !c.with_forward || !c.with_gradients || c.partial_grad {
            panic!(
                "ferrograd: grad: call returns gradients and outputs; with with_forward(false), \
                 with_gradients(false) or partial_grad(true) set, use run (at {})",
                ferrograd_array::Site(Location::caller())
            );
        }
        let out = self.run_inner(params, args, None, Location::caller());
        (
            out.grads.expect("gradients on"),
            out.output.expect("forward on"),
        )
    }

    /// Computes what the flags ask for. `output_grad` is the gradient of the function's
    /// output when [`partial_grad`](Grad::partial_grad) is on (it must be `None` otherwise).
    #[track_caller]
    pub fn run<P, Args>(
        &self,
        params: &P,
        args: Args,
        output_grad: Option<&Tensor>,
    ) -> Outputs<P, F::Output>
    where
        P: Tree,
        Args: ArgTree,
        F: Differentiable<P, Args>,
        F::Output: GradOutput,
    {
        if self.config.partial_grad != output_grad.is_some() {
            panic!(
                "ferrograd: grad: an output gradient must be passed to run exactly when \
                 partial_grad(true) is set (at {})",
                ferrograd_array::Site(Location::caller())
            );
        }
        self.run_inner(params, args, output_grad, Location::caller())
    }

    /// A call with the parameters moved in (see
    /// [`Compiled::call_donating`](crate::Compiled::call_donating)): the function's output
    /// (no gradients).
    #[track_caller]
    pub(crate) fn run_donating<P, Args>(&self, params: P, args: Args) -> F::Output
    where
        P: Tree,
        Args: ArgTree,
        F: Differentiable<P, Args>,
        F::Output: GradOutput,
    {
        assert!(
            !self.config.with_gradients,
            "ferrograd: internal: donated calls return no gradients"
        );
        let mut call = Typed {
            f: &self.f,
            params: Params::Donated(Some(params)),
            args: Some(args),
            kept: None,
        };
        match self.config.run(&mut call, None, Location::caller()) {
            Some(out) => *out
                .output
                .expect("forward on")
                .into_any()
                .downcast::<F::Output>()
                .expect("the engine returns the function's output"),
            None => call.kept.and_then(|k| k.output).expect("forward on"),
        }
    }

    /// The one generic step of a call: erase the types, run the engine, restore the types.
    fn run_inner<P, Args>(
        &self,
        params: &P,
        args: Args,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
    ) -> Outputs<P, F::Output>
    where
        P: Tree,
        Args: ArgTree,
        F: Differentiable<P, Args>,
        F::Output: GradOutput,
    {
        let mut call = Typed {
            f: &self.f,
            params: Params::Borrowed(params),
            args: Some(args),
            kept: None,
        };
        let Some(out) = self.config.run(&mut call, output_grad, location) else {
            return call.kept.expect("a replay keeps its outputs in the call");
        };
        Outputs {
            grads: out.grads.map(|g| rebuild(params, g)),
            output: out.output.map(|o| {
                *o.into_any()
                    .downcast::<F::Output>()
                    .expect("the engine returns the function's output")
            }),
        }
    }
}

/// A call's outputs with their types erased: the gradient leaves, the function's outputs.
pub(crate) type Flat = Outputs<Vec<Tensor>, Box<dyn DynOutput>>;

/// What the engine needs of one call's function, parameters and arguments, with their
/// types erased.
pub(crate) trait Call {
    /// The leaves of the parameter tree.
    fn param_leaves(&self) -> Vec<Tensor> {
        let mut out = Vec::new();
        self.param_leaves_into(&mut out);
        out
    }
    /// The leaves of the parameter tree, pushed onto `out`.
    fn param_leaves_into(&self, out: &mut Vec<Tensor>);
    /// Their names.
    fn param_names(&self) -> Vec<String>;
    /// The parameter tree's structure, for the signature.
    fn param_structure(&self, key: &mut Vec<u64>);
    /// The arguments, until [`invoke`](Call::invoke) uses them up.
    fn args(&mut self) -> &mut dyn ArgTree;
    /// Calls the function on the parameter tree rebuilt from `leaves` (the caller's own
    /// tree when `None`), using up the arguments.
    fn invoke(&mut self, leaves: Option<Vec<Tensor>>) -> Box<dyn DynOutput>;
    /// For parameters moved into the call (donated): drops them, so that the engine's
    /// copies are their only handles, and says so; after it the call must not read them.
    /// Borrowed parameters stay (`false`).
    fn release_params(&mut self) -> bool {
        false
    }
    /// Keeps a replay's outputs in the function's own types, for the typed caller (so a
    /// replay builds no erased lists or boxes; a tiny compiled call: 3 of its 5 allocations):
    /// the gradients when `grads`, then the outputs in `template`'s structure when there is
    /// one, taking every one of `leaves` in order.
    fn keep(
        &mut self,
        grads: bool,
        template: Option<&dyn DynOutput>,
        leaves: &mut dyn Iterator<Item = Tensor>,
    );
}

/// The [`Call`] of a function `F` of parameters `P` and arguments `Args`.
struct Typed<'a, F: Differentiable<P, Args>, P, Args> {
    f: &'a F,
    params: Params<'a, P>,
    args: Option<Args>,
    /// A replay's outputs ([`Call::keep`]).
    kept: Option<Outputs<P, F::Output>>,
}

/// A call's parameter tree: the caller's, or moved into the call (donated, see
/// [`Grad::run_donating`]) until [`release_params`](Call::release_params).
enum Params<'a, P> {
    Borrowed(&'a P),
    Donated(Option<P>),
}

impl<F: Differentiable<P, Args>, P, Args> Typed<'_, F, P, Args> {
    fn params(&self) -> &P {
        match &self.params {
            Params::Borrowed(p) => p,
            Params::Donated(p) => p
                .as_ref()
                .expect("parameters are read before they are released"),
        }
    }
}

impl<F, P, Args> Call for Typed<'_, F, P, Args>
where
    P: Tree,
    Args: ArgTree,
    F: Differentiable<P, Args>,
    F::Output: GradOutput,
{
    fn param_leaves_into(&self, out: &mut Vec<Tensor>) {
        leaves_into(self.params(), out);
    }
    fn param_names(&self) -> Vec<String> {
        leaf_names(self.params())
    }
    fn param_structure(&self, key: &mut Vec<u64>) {
        self.params().structure(key);
    }
    fn args(&mut self) -> &mut dyn ArgTree {
        self.args.as_mut().expect("the arguments are used once")
    }
    fn invoke(&mut self, leaves: Option<Vec<Tensor>>) -> Box<dyn DynOutput> {
        let args = self.args.take().expect("the arguments are used once");
        Box::new(match leaves {
            None => self.f.invoke(self.params(), args),
            Some(l) => self.f.invoke(&rebuild(self.params(), l), args),
        })
    }
    fn release_params(&mut self) -> bool {
        match &mut self.params {
            Params::Borrowed(_) => false,
            Params::Donated(p) => {
                *p = None;
                true
            }
        }
    }
    fn keep(
        &mut self,
        grads: bool,
        template: Option<&dyn DynOutput>,
        leaves: &mut dyn Iterator<Item = Tensor>,
    ) {
        let grads = grads.then(|| rebuild_from(self.params(), leaves));
        let output = template.map(|t| {
            let t = (t.as_any().downcast_ref::<F::Output>())
                .expect("a plan's template has the function's output type");
            rebuild_from(t, leaves)
        });
        assert!(
            leaves.next().is_none(),
            "ferrograd: internal: a replay returned more tensors than its outputs hold"
        );
        self.kept = Some(Outputs { grads, output });
    }
}

/// A function's outputs ([`GradOutput`]) with their type erased.
pub(crate) trait DynOutput: Send + Sync {
    /// The tensor being differentiated.
    fn loss(&self) -> &Tensor;
    /// The outputs with every tensor taken out of `level`.
    fn unbox(&self, level: u64) -> Box<dyn DynOutput>;
    /// The output leaves.
    fn leaves(&self) -> Vec<Tensor>;
    /// Their names.
    fn names(&self) -> Vec<String>;
    /// The outputs' structure, with placeholders for tensors (a plan's template).
    fn template(&self) -> Arc<dyn DynOutput>;
    /// Outputs of this structure holding `leaves`.
    fn rebuild(&self, leaves: Vec<Tensor>) -> Box<dyn DynOutput>;
    /// For the downcast back to the function's output type.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// For a template's downcast to the function's output type.
    fn as_any(&self) -> &dyn Any;
}

impl<O: GradOutput> DynOutput for O {
    fn loss(&self) -> &Tensor {
        GradOutput::loss(self)
    }
    fn unbox(&self, level: u64) -> Box<dyn DynOutput> {
        Box::new(GradOutput::unbox(self, level))
    }
    fn leaves(&self) -> Vec<Tensor> {
        leaves(self)
    }
    fn names(&self) -> Vec<String> {
        leaf_names(self)
    }
    fn template(&self) -> Arc<dyn DynOutput> {
        Arc::new(self.map(&mut |_| Tensor::placeholder()))
    }
    fn rebuild(&self, leaves: Vec<Tensor>) -> Box<dyn DynOutput> {
        Box::new(rebuild(self, leaves))
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Config {
    /// A call in optimize or direct mode: its outputs, or `None` from a replay that left
    /// them in the call ([`Call::keep`]).
    fn run(
        &self,
        call: &mut dyn Call,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
    ) -> Option<Flat> {
        if self.optimizer.enabled {
            self.run_optimized(call, output_grad, location)
        } else {
            Some(self.run_direct(call, None, output_grad, location))
        }
    }

    /// A call in direct mode: run the function, building the graph, and walk it back.
    /// `leaves` replaces the parameter leaves (a capture's fresh handles).
    pub(crate) fn run_direct(
        &self,
        call: &mut dyn Call,
        leaves: Option<Vec<Tensor>>,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
    ) -> Flat {
        self.run_direct_observed(call, leaves, output_grad, location, true)
    }

    /// [`run_direct`](Config::run_direct), with the debugger and profiler when `observed`.
    pub(crate) fn run_direct_observed(
        &self,
        call: &mut dyn Call,
        leaves: Option<Vec<Tensor>>,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
        observed: bool,
    ) -> Flat {
        let level = NEXT_LEVEL.fetch_add(1, Ordering::Relaxed);
        let hooks = call_hooks(level, observed, self.debug.as_ref(), self.profile.as_ref());
        let _guard = hooks.clone().map(context::push);
        if !self.with_gradients {
            let output = call.invoke(leaves);
            return Outputs {
                grads: None,
                output: self.with_forward.then_some(output),
            };
        }
        // Box every float leaf as a node of this level.
        let originals = leaves.unwrap_or_else(|| call.param_leaves());
        let boxed = box_leaves(&originals, level, location);
        if let Some(h) = &hooks {
            name_leaves(h, &boxed, call.param_names());
        }
        let output = call.invoke(Some(boxed.clone()));
        let loss = output.loss();
        let seed = seed_of(loss, output_grad, location);
        let result = match self.on_gradient.as_ref().filter(|_| observed) {
            None => {
                let grads = backward(level, loss, seed, hooks.as_deref(), None);
                leaf_grads(&grads, &boxed, &originals)
            }
            Some(hook) => backward_reporting(
                level,
                loss,
                seed,
                hooks.as_deref(),
                &boxed,
                &originals,
                hook,
            ),
        };
        Outputs {
            grads: Some(result),
            output: self.with_forward.then(|| output.unbox(level)),
        }
    }
}

// The parts of a direct call that do not depend on the function's types, compiled once
// rather than once per closure.

/// The hooks of a call with a debugger or profiler (`observed`), counting the call.
fn call_hooks(
    level: u64,
    observed: bool,
    debug: Option<&DebugHook>,
    profile: Option<&Arc<Mutex<Profile>>>,
) -> Option<Arc<Hooks>> {
    if !observed {
        return None;
    }
    if let Some(p) = profile {
        p.lock().expect("profile lock").count_call();
    }
    (debug.is_some() || profile.is_some()).then(|| {
        Arc::new(Hooks {
            id: level,
            debug: debug.cloned(),
            profile: profile.cloned(),
            leaf_names: Mutex::new(Vec::new()),
        })
    })
}

/// Tells the debugger the parameter names of the boxed leaves.
fn name_leaves(hooks: &Hooks, boxed: &[Tensor], names: Vec<String>) {
    *hooks.leaf_names.lock().expect("leaf names") = boxed
        .iter()
        .zip(names)
        .map(|(t, n)| (t.id(), if n.is_empty() { "param".into() } else { n }))
        .collect();
}

/// The gradient the backward pass starts from: the output gradient given (of the loss's
/// shape), or 1 for a one-element loss.
#[track_caller]
fn seed_of(
    loss: &Tensor,
    output_grad: Option<&Tensor>,
    location: &'static Location<'static>,
) -> Tensor {
    let site = ferrograd_array::Site(location);
    match output_grad {
        Some(g) => {
            if g.shape() != loss.shape() {
                panic!(
                    "ferrograd: grad: the output gradient has shape {:?}, the output has {:?} (at {site})",
                    g.shape(),
                    loss.shape()
                );
            }
            g.clone()
        }
        None => {
            if loss.numel() != 1 {
                panic!(
                    "ferrograd: grad: the function must return a one-element loss, got shape {:?}; \
                     for other outputs use partial_grad(true) with run, or vjp (at {site})",
                    loss.shape()
                );
            }
            loss.ones_like()
        }
    }
}

/// The vector-Jacobian product: the gradient of `<f(params, args), output_grad>` with respect
/// to `params`, with `f`'s outputs.
#[track_caller]
pub fn vjp<F, P, Args>(f: F, params: &P, args: Args, output_grad: &Tensor) -> (P, F::Output)
where
    P: Tree,
    Args: ArgTree,
    F: Differentiable<P, Args>,
    F::Output: GradOutput,
{
    let out = grad(f)
        .partial_grad(true)
        .run(params, args, Some(output_grad));
    (
        out.grads.expect("gradients on"),
        out.output.expect("forward on"),
    )
}

/// The Jacobian of `f` at `x`: shape `f(x).shape() ++ x.shape()`. One forward pass, one
/// backward pass per output element.
#[track_caller]
pub fn jacobian(f: impl Fn(&Tensor) -> Tensor, x: &Tensor) -> Tensor {
    let level = NEXT_LEVEL.fetch_add(1, Ordering::Relaxed);
    let boxed = Tensor::node(
        level,
        x.clone(),
        Op::Leaf,
        Default::default(),
        Location::caller(),
    );
    let y = f(&boxed);
    let m = y.numel();
    let mut rows = Vec::with_capacity(m);
    for j in 0..m {
        let mut seed = vec![0.0; m];
        seed[j] = 1.0;
        let seed =
            crate::ops::on_device_of(Array::from_vec(seed, y.shape()).to_dtype(y.dtype()), &y);
        let grads = backward(level, &y, seed, None, None);
        rows.push(
            grads
                .get(&boxed.id())
                .cloned()
                .unwrap_or_else(|| x.zeros_like())
                .reshape(&[x.numel()]),
        );
    }
    let mut shape = y.shape().to_vec();
    shape.extend_from_slice(x.shape());
    if rows.is_empty() {
        return crate::ops::on_device_of(Array::zeros(&shape, x.dtype()), x);
    }
    Tensor::stack(&rows, 0).reshape(&shape)
}

/// The Hessian-vector product `H v` of a scalar function at `params`, where `v` has the
/// parameters' structure: the gradient of `<∇f, v>`.
#[track_caller]
pub fn hvp<F, P, Args>(f: F, params: &P, args: Args, v: &P) -> P
where
    P: Tree,
    Args: ArgTree + Clone,
    F: Differentiable<P, Args>,
    F::Output: GradOutput,
{
    let call_f = |p: &P, a: Args| f.invoke(p, a);
    let inner = |p: &P| {
        let (g, _) = grad(&call_f).call(p, (args.clone(),));
        tree_dot(&g, &leaves(v))
    };
    grad(inner).call(params, ()).0
}

/// The Hessian of a scalar function of one tensor: shape `x.shape() ++ x.shape()`.
#[track_caller]
pub fn hessian<F>(f: F, x: &Tensor) -> Tensor
where
    F: Fn(&Tensor) -> Tensor,
{
    jacobian(|x| grad(&f).call(x, ()).0, x)
}

/// A function evaluated with its parameters traced, kept so that its backward pass can run
/// later (and more than once): what the stateful Module API needs, where `forward` and
/// `backward` are separate calls. Made by [`record`].
pub struct Traced<P, O> {
    level: u64,
    params: P,
    boxed: Vec<Tensor>,
    output: O,
}

/// Evaluates `f` at `params` with every float leaf traced, recording its graph, and returns
/// the recorded result; call [`Traced::backward`] for gradients (with any output gradient:
/// JAX's `vjp`, or PyTorch's forward-then-`backward`). Named `record`, not `trace`, because
/// [`Tensor::trace`] is the sum of a matrix's diagonal, as in PyTorch.
///
/// ```
/// use ferrograd::{record, Tensor};
/// let x = Tensor::from_vec(vec![3.0f64], &[1]);
/// let t = record(&x, |x| x.square());
/// assert_eq!(t.output().to_vec::<f64>(), vec![9.0]);
/// let dx = t.backward(&Tensor::from_vec(vec![1.0f64], &[1]));
/// assert_eq!(dx.to_vec::<f64>(), vec![6.0]);
/// ```
#[track_caller]
pub fn record<P: Tree, O: GradOutput>(params: &P, f: impl FnOnce(&P) -> O) -> Traced<P, O> {
    let level = NEXT_LEVEL.fetch_add(1, Ordering::Relaxed);
    let location = Location::caller();
    let boxed = box_leaves(&leaves(params), level, location);
    let boxed_params = rebuild(params, boxed.clone());
    let output = f(&boxed_params);
    Traced {
        level,
        params: params.map(&mut |t| t.clone()),
        boxed,
        output,
    }
}

impl<P: Tree, O: GradOutput> Traced<P, O> {
    /// The function's outputs, outside this trace.
    pub fn output(&self) -> O {
        self.output.unbox(self.level)
    }

    /// The traced graph of the loss as Graphviz DOT, parameters named by their leaf names
    /// (render it with `dot -Tsvg`, or [`render_svg`](crate::render_svg)).
    pub fn dot(&self) -> String {
        let pairs: Vec<(Tensor, String)> = self
            .boxed
            .iter()
            .cloned()
            .zip(leaf_names(&self.params))
            .collect();
        crate::debug::graph(self.output.loss(), &pairs)
    }

    /// The gradient of `<loss, output_grad>` with respect to the parameters (same type).
    #[track_caller]
    pub fn backward(&self, output_grad: &Tensor) -> P {
        let loss = self.output.loss();
        if output_grad.shape() != loss.shape() {
            panic!(
                "ferrograd: backward: the output gradient has shape {:?}, the output has {:?} (at {})",
                output_grad.shape(),
                loss.shape(),
                ferrograd_array::Site(Location::caller())
            );
        }
        let grads = backward(self.level, loss, output_grad.clone(), None, None);
        let result = leaf_grads(&grads, &self.boxed, &leaves(&self.params));
        rebuild(&self.params, result)
    }
}
