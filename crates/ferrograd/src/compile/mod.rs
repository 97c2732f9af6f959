//! Optimize mode: capture a whole call once per input signature, replay it afterwards.
//!
//! # Why it is exact
//!
//! The seed's optimize mode returned stale results whenever control flow, closed-over values
//! or random masks changed between calls. Here a replay returns what direct mode would
//! return, or the function is captured again:
//!
//! - **Capture is complete.** Every computation on data goes through `apply`, including the
//!   masks and indices that gradient rules build, ops with integer or bool results, argmax
//!   and max-pool indices; each becomes a step (see `capture.rs`). What cannot be replayed
//!   (random draws, state behind a lock reported through [`side_effect`], a tensor rebuilt
//!   from computed data outside any op) makes the signature run in direct mode.
//! - **The signature is the cache key**: the parameter tree's structure and every tensor's
//!   shape, dtype, device and strides, in the parameters and in the other arguments (which
//!   are [`ArgTree`]s), the value of every plain number argument, and which argument tensors
//!   are the same tensor.
//! - **Guards.** Rust closures cannot be inspected, so the capture watches what the function
//!   reads: each read of computed data (`item`, `to_vec`, `value`, `allclose`) is recorded
//!   with the value read, and a replay compares it at the same point. A different value
//!   captures the function again and keeps the new variant beside the old (`plan.rs`).
//! - **What stays the user's promise**: tensors the closure captures are constants (Rust's
//!   borrow rules keep them unchanged; one that is also passed as an argument in the
//!   capturing call is taken for the argument); state the function reads behind a `Mutex`,
//!   a `Cell` or a global is invisible (keep it in a [`State`] instead); a capture records
//!   the ops of the calling thread, so tensor ops the function runs on other threads
//!   (inside its own rayon scope) are invisible too; custom ops must be pure functions of
//!   their inputs. [`Grad::verify`](crate::Grad::verify) re-runs direct mode every n-th
//!   call to catch what slips through.
//!
//! # Cost
//!
//! A capture runs the function in direct mode and records it (about the cost of one direct
//! call plus a few hundred nanoseconds per op). A replay checks the signature, then runs the
//! kept steps in order through the same array kernels direct mode calls, with no graph, no
//! level bookkeeping and no backward walk; values are freed right after their last use.

pub(crate) mod capture;
mod fuse;
mod passes;
mod plan;
mod slices;
pub(crate) mod state;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::panic::Location;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use capture::side_effect;
use plan::{Observer, Outcome, Plan, Scratch, Unobserved};
pub use state::State;

use crate::context::Hooks;
use crate::debug::DebugEvent;
use crate::grad::{Call, Config, Differentiable, DynOutput, Flat, Grad, GradOutput, Outputs};
use crate::tree::Tree;
use crate::{Array, Tensor};

/// The arguments after the parameters: tensors, numbers, references to them, and
/// collections of them. Optimize mode reads them to build the call's signature: tensors by
/// shape, dtype, device and layout, everything else by value.
///
/// Implemented for tensors, references, numbers, `bool`, strings, tuples (up to six),
/// `Vec`, slices, arrays, `Option`, `Box`, string-keyed maps and [`Generator`](crate::Generator)
/// (whose draws make a signature run in direct mode). `#[derive(Tree)]` implements it for
/// your structs too.
pub trait ArgTree {
    /// Calls `tensor` on each tensor leaf in order, and appends to `key` everything else the
    /// function may depend on (numbers by value, lengths, which options are set).
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>);

    /// Calls `generator` on each generator the function may draw from (`&mut Generator`
    /// arguments), in order: a replay draws from them as direct mode would.
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        let _ = generator;
    }
}

/// [`ArgTree::visit_args`] for a [`Tree`]: its leaves, then its structure.
#[doc(hidden)]
pub fn tree_args<T: Tree>(tree: &T, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
    tree.visit("", &mut |_, t| tensor(t));
    tree.structure(key);
}

impl ArgTree for Tensor {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), _key: &mut Vec<u64>) {
        tensor(self)
    }
}

impl<T: ArgTree + ?Sized> ArgTree for &T {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        (**self).visit_args(tensor, key)
    }
}

impl<T: ArgTree + ?Sized> ArgTree for &mut T {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        (**self).visit_args(tensor, key)
    }
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        (**self).generators(generator)
    }
}

impl<T: ArgTree> ArgTree for [T] {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        key.push(self.len() as u64);
        for item in self {
            item.visit_args(tensor, key);
        }
    }
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        for item in self {
            item.generators(generator);
        }
    }
}

impl<T: ArgTree> ArgTree for Vec<T> {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        self.as_slice().visit_args(tensor, key)
    }
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        self.as_mut_slice().generators(generator)
    }
}

impl<T: ArgTree, const N: usize> ArgTree for [T; N] {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        self.as_slice().visit_args(tensor, key)
    }
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        self.as_mut_slice().generators(generator)
    }
}

impl<T: ArgTree> ArgTree for Option<T> {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        key.push(self.is_some() as u64);
        if let Some(item) = self {
            item.visit_args(tensor, key);
        }
    }
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        if let Some(item) = self {
            item.generators(generator);
        }
    }
}

impl<T: ArgTree + ?Sized> ArgTree for Box<T> {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        (**self).visit_args(tensor, key)
    }
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        (**self).generators(generator)
    }
}

impl<T: ArgTree> ArgTree for BTreeMap<String, T> {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        key.push(self.len() as u64);
        for (k, v) in self {
            k.visit_args(tensor, key);
            v.visit_args(tensor, key);
        }
    }
}

impl<T: ArgTree, S: std::hash::BuildHasher> ArgTree for HashMap<String, T, S> {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        let mut keys: Vec<&String> = self.keys().collect();
        keys.sort();
        key.push(keys.len() as u64);
        for k in keys {
            k.visit_args(tensor, key);
            self[k].visit_args(tensor, key);
        }
    }
}

impl ArgTree for str {
    fn visit_args(&self, _tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        key.push(hash_of(self));
    }
}

impl ArgTree for String {
    fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
        self.as_str().visit_args(tensor, key)
    }
}

impl ArgTree for crate::Generator {
    fn visit_args(&self, _tensor: &mut dyn FnMut(&Tensor), _key: &mut Vec<u64>) {}
    fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
        generator(self)
    }
}

macro_rules! number_args {
    ($($t:ty => |$v:ident| $bits:expr),* $(,)?) => {$(
        impl ArgTree for $t {
            fn visit_args(&self, _tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
                let $v = *self;
                key.push($bits);
            }
        }
    )*};
}
number_args!(
    bool => |v| v as u64,
    char => |v| v as u64,
    u8 => |v| v as u64,
    u16 => |v| v as u64,
    u32 => |v| v as u64,
    u64 => |v| v,
    usize => |v| v as u64,
    i8 => |v| v as u64,
    i16 => |v| v as u64,
    i32 => |v| v as u64,
    i64 => |v| v as u64,
    isize => |v| v as u64,
    f32 => |v| v.to_bits() as u64,
    f64 => |v| v.to_bits(),
);

macro_rules! tuple_args {
    ($($name:ident $idx:tt),*) => {
        impl<$($name: ArgTree),*> ArgTree for ($($name,)*) {
            fn visit_args(&self, tensor: &mut dyn FnMut(&Tensor), key: &mut Vec<u64>) {
                let _ = (&tensor, &key);
                $(self.$idx.visit_args(tensor, key);)*
            }
            fn generators<'a>(&'a mut self, generator: &mut dyn FnMut(&'a mut crate::Generator)) {
                let _ = &generator;
                $(self.$idx.generators(generator);)*
            }
        }
    };
}
tuple_args!();
tuple_args!(A 0);
tuple_args!(A 0, B 1);
tuple_args!(A 0, B 1, C 2);
tuple_args!(A 0, B 1, C 2, D 3);
tuple_args!(A 0, B 1, C 2, D 3, E 4);
tuple_args!(A 0, B 1, C 2, D 3, E 4, G 5);

/// A device in a signature: the host 0, a GPU its ordinal + 1 (hashing it cost a small call
/// a tenth of its signature's work); any other its hash.
fn device_key(device: crate::Device) -> u64 {
    match device {
        crate::Device::Cpu => 0,
        crate::Device::Cuda(n) => n as u64 + 1,
        other => hash_of(other),
    }
}

fn hash_of(value: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// What optimize mode has done for one function so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Calls in optimize mode.
    pub calls: u64,
    /// Calls answered by replaying a plan.
    pub hits: u64,
    /// Calls that captured the function (a new signature, or a guard that saw a new value).
    pub captures: u64,
    /// Replays stopped by a guard that saw a value no variant had seen.
    pub guard_failures: u64,
    /// Calls run in direct mode: inputs traced by an enclosing `grad`, a capture running,
    /// a signature function that returned `None`, a function that cannot be replayed, or a
    /// cache that thrashed.
    pub fallbacks: u64,
    /// Replays checked against direct mode ([`Grad::verify`](crate::Grad::verify)).
    pub verified: u64,
    /// Signatures with a plan in the cache.
    pub plans: usize,
    /// Variants over all cached plans (one per combination of guard outcomes seen).
    pub variants: usize,
    /// Time spent capturing, in total.
    pub capture_time: Duration,
    /// The warnings printed (thrashing, functions that cannot be replayed), in order.
    pub warnings: Vec<String>,
}

/// A user's signature function: given the parameter and argument leaves, a key that splits
/// signatures further, or `None` to run this call in direct mode.
pub(crate) type SignatureFn = Arc<dyn Fn(&[Tensor], &[Tensor]) -> Option<u64> + Send + Sync>;

/// Optimize-mode settings and cache of one `Grad`.
pub(crate) struct Optimizer {
    pub enabled: bool,
    pub capacity: usize,
    pub verify_every: u64,
    pub signature_fn: Option<SignatureFn>,
    /// Replays write the gradients into the previous call's gradient buffers.
    pub stable_gradients: bool,
    /// Plans fuse runs of elementwise steps.
    pub fusion: bool,
    state: Mutex<CacheState>,
}

/// The default number of signatures (and of variants per signature) a cache holds.
pub const DEFAULT_CACHE_SIZE: usize = 8;

/// A plan with the scratch memory its replays reuse (a replay that finds it busy, on another
/// thread, runs in a scratch of its own).
struct CachedPlan {
    plan: Plan,
    scratch: Mutex<Scratch>,
}

impl CachedPlan {
    fn new(plan: Plan) -> Arc<CachedPlan> {
        Arc::new(CachedPlan {
            plan,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// Runs the plan; the first `stable` outputs come back in the buffers of the last
    /// call's (see [`Scratch::stable`]).
    fn run(
        &self,
        inputs: &mut Vec<Array>,
        generators: &mut [&mut crate::Generator],
        stable: usize,
        observer: &mut impl Observer,
        report: Option<plan::Report<'_>>,
    ) -> Outcome {
        let mut scratch = match self.scratch.try_lock() {
            Ok(scratch) => scratch,
            // a replay that panicked (a kernel refused its data) left it half-written
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                let mut scratch = poisoned.into_inner();
                *scratch = Scratch::default();
                self.scratch.clear_poison();
                scratch
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                return self.plan.run(
                    inputs,
                    generators,
                    &mut Scratch::default(),
                    stable,
                    observer,
                    report,
                )
            }
        };
        self.plan
            .run(inputs, generators, &mut scratch, stable, observer, report)
    }
}

struct CacheEntry {
    key: Vec<u64>,
    /// The plan, or why this signature runs in direct mode.
    plan: Result<Arc<CachedPlan>, String>,
    last_used: u64,
    /// `name shape` of each input leaf, for messages.
    inputs: Vec<String>,
    /// Guard misses by the line of the read.
    misses: HashMap<&'static Location<'static>, u64>,
}

#[derive(Default)]
struct CacheState {
    entries: Vec<CacheEntry>,
    clock: u64,
    stats: Stats,
    evictions: usize,
    /// Why the whole function runs in direct mode (the cache thrashed).
    disabled: Option<String>,
}

impl CacheState {
    fn warn(&mut self, message: String) {
        eprintln!("ferrograd: optimize mode: {message}");
        self.stats.warnings.push(message);
    }
}

/// Whether the test suite runs every `grad` in optimize mode, checking each capture and
/// each replay against direct mode (`FERROGRAD_OPTIMIZE=check`).
pub(crate) fn check_mode() -> bool {
    static MODE: OnceLock<bool> = OnceLock::new();
    *MODE.get_or_init(|| std::env::var("FERROGRAD_OPTIMIZE").is_ok_and(|v| v == "check"))
}

impl Default for Optimizer {
    fn default() -> Optimizer {
        Optimizer {
            enabled: check_mode(),
            capacity: DEFAULT_CACHE_SIZE,
            verify_every: if check_mode() { 1 } else { 0 },
            signature_fn: None,
            stable_gradients: false,
            fusion: true,
            state: Mutex::new(CacheState::default()),
        }
    }
}

impl Optimizer {
    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // What follows is the part of a call that does not depend on the function's types: kept
    // out of `Grad<F>`'s generic methods, it is compiled once, not once per closure.

    /// Adds a cache entry, evicting the least recently used one when full; a cache that keeps
    /// evicting turns optimize mode off for this function, with one warning naming the input
    /// whose signature keeps changing. `inputs` describes each input (`params.w [3, 4]`).
    fn insert_entry(
        &self,
        state: &mut CacheState,
        key: Vec<u64>,
        plan: Result<Arc<CachedPlan>, String>,
        inputs: Vec<String>,
    ) {
        if state.entries.len() >= self.capacity {
            let (oldest, _) = state
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .expect("a full cache has entries");
            let evicted = state.entries.remove(oldest);
            state.evictions += 1;
            if state.evictions >= self.capacity {
                let newest = state.entries.iter().max_by_key(|e| e.last_used);
                let cause = newest
                    .and_then(|e| {
                        e.inputs
                            .iter()
                            .zip(&inputs)
                            .find(|(a, b)| a != b)
                            .map(|(a, b)| format!("`{a}` became `{b}`"))
                    })
                    .or_else(|| {
                        evicted
                            .inputs
                            .iter()
                            .zip(&inputs)
                            .find(|(a, b)| a != b)
                            .map(|(a, b)| format!("`{a}` became `{b}`"))
                    })
                    .unwrap_or_else(|| {
                        "a plain number argument or the tree's structure changed".into()
                    });
                let why = format!(
                    "the function was captured for more than {} different input signatures \
                     ({cause}); it now runs in direct mode. Raise cache_size, or keep the \
                     changing input's shape fixed (pad it)",
                    self.capacity
                );
                state.disabled = Some(why.clone());
                state.entries.clear();
                state.warn(why);
                return;
            }
        }
        let clock = state.clock;
        state.entries.push(CacheEntry {
            key,
            plan,
            last_used: clock,
            inputs,
            misses: HashMap::new(),
        });
    }

    /// Whether a call must run in direct mode: inside a capture the outer recording must see
    /// this call's ops, and inputs traced by an enclosing grad need the graph direct mode
    /// builds; else what the user's signature function says (with its key).
    fn must_run_direct(
        &self,
        p_leaves: &[Tensor],
        a_leaves: &[Tensor],
        output_grad: Option<&Tensor>,
    ) -> (bool, Option<u64>) {
        let traced = p_leaves
            .iter()
            .chain(a_leaves)
            .chain(output_grad)
            .any(Tensor::is_traced);
        if capture::active() || traced {
            return (true, None);
        }
        match &self.signature_fn {
            Some(f) => match f(p_leaves, a_leaves) {
                Some(k) => (false, Some(k)),
                None => (true, None),
            },
            None => (false, None),
        }
    }

    /// Counts a call; true when it must run in direct mode (`direct`, or optimize mode
    /// turned off for this function).
    fn begin_call(&self, direct: bool) -> bool {
        let mut state = self.state();
        state.stats.calls += 1;
        let fallback = direct || state.disabled.is_some();
        state.stats.fallbacks += fallback as u64;
        fallback
    }

    /// The cache entry for `key`, marked as used now.
    fn lookup(&self, key: &[u64]) -> Lookup {
        let mut state = self.state();
        state.clock += 1;
        let clock = state.clock;
        match state.entries.iter_mut().find(|e| e.key == key) {
            Some(e) => {
                e.last_used = clock;
                match &e.plan {
                    Ok(p) => Lookup::Plan(Arc::clone(p)),
                    Err(_) => Lookup::Direct,
                }
            }
            None => Lookup::New,
        }
    }

    /// A replay of `key` stopped at the guard read at `read_at`.
    fn record_miss(&self, key: &[u64], read_at: &'static Location<'static>) {
        let mut state = self.state();
        state.stats.guard_failures += 1;
        if let Some(e) = state.entries.iter_mut().find(|e| e.key == key) {
            *e.misses.entry(read_at).or_default() += 1;
        }
    }

    /// Whether this hit is one `verify` checks, and if so the state cells' values before
    /// it (the check runs from them).
    fn verify_now(&self, plan: &CachedPlan) -> Option<Vec<(capture::StateCell, Tensor)>> {
        let verifying = self.verify_every > 0
            && (self.state().stats.hits + 1).is_multiple_of(self.verify_every);
        verifying.then(|| {
            plan.plan
                .state_cells()
                .into_iter()
                .map(|c| {
                    let v = c.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    (c, v)
                })
                .collect()
        })
    }

    /// Files what a capture recorded: a new plan, a new variant of a cached one, or the
    /// reason the signature runs in direct mode (warned once). Returns the plan to check
    /// (`FERROGRAD_OPTIMIZE=check`), if any. `param_names` are the parameter tree's leaf
    /// names; `missed` the plan whose replay missed before this capture (`None`: a new
    /// signature).
    ///
    /// Calls on several threads may capture one signature, or one missed variant, at once:
    /// a recording that finds the entry changed since its call looked (another thread filed
    /// first) and does not fit the plan there is dropped, as that thread's recording of the
    /// same path already stands; its call's outputs came from direct mode all the same.
    #[allow(clippy::too_many_arguments)]
    fn file_capture(
        &self,
        trace: Result<capture::Trace, String>,
        template: Template,
        (key, missed): (Vec<u64>, Option<Arc<CachedPlan>>),
        took: Duration,
        param_names: Vec<String>,
        p_leaves: &[Tensor],
        a_leaves: &[Tensor],
        has_output_grad: bool,
        location: &'static Location<'static>,
    ) -> Option<Arc<CachedPlan>> {
        // `params.w`, `args[0]`: the plan's names of its inputs
        let mut names: Vec<String> = param_names
            .into_iter()
            .map(|n| {
                if n.is_empty() {
                    "params".into()
                } else {
                    format!("params.{n}")
                }
            })
            .collect();
        names.extend((0..a_leaves.len()).map(|i| format!("args[{i}]")));
        // with their shapes, to name what changed when the cache thrashes
        let inputs: Vec<String> = names
            .iter()
            .zip(p_leaves.iter().chain(a_leaves))
            .map(|(n, t)| format!("{n} {:?}", t.shape()))
            .collect();
        let mut state = self.state();
        state.stats.captures += 1;
        state.stats.capture_time += took;
        let clock = state.clock;
        let index = state.entries.iter().position(|e| e.key == key);
        let plan: Option<Arc<CachedPlan>> = match (trace, index) {
            (Err(why), Some(i)) => {
                state.entries[i].plan = Err(why.clone());
                state.warn(format!(
                    "the call at {site} runs in direct mode: {why}",
                    site = ferrograd_array::Site(location)
                ));
                None
            }
            (Err(why), None) => {
                self.insert_entry(&mut state, key, Err(why.clone()), inputs);
                state.warn(format!(
                    "the call at {site} runs in direct mode: {why}",
                    site = ferrograd_array::Site(location)
                ));
                None
            }
            (Ok(trace), Some(i)) => {
                let entry = &mut state.entries[i];
                let raced = match (&entry.plan, &missed) {
                    (Ok(now), Some(missed)) => !Arc::ptr_eq(now, missed),
                    (Ok(_), None) => true,
                    (Err(_), _) => false,
                };
                let result = match &entry.plan {
                    Ok(compiled) => {
                        let mut plan = compiled.plan.clone();
                        plan.insert(trace, template).map(|()| {
                            entry.plan = Ok(CachedPlan::new(plan));
                        })
                    }
                    Err(_) => Err("this signature already runs in direct mode".into()),
                };
                entry.last_used = clock;
                match result {
                    Err(_) if raced => None,
                    Err(why) => {
                        entry.plan = Err(why.clone());
                        state.warn(format!(
                            "the call at {site} runs in direct mode: {why}",
                            site = ferrograd_array::Site(location)
                        ));
                        None
                    }
                    Ok(()) => {
                        let variants = entry.plan.as_ref().map_or(0, |c| c.plan.variants());
                        if variants > self.capacity {
                            let read_at = entry
                                .misses
                                .iter()
                                .max_by_key(|(_, n)| **n)
                                .map(|(&l, _)| ferrograd_array::Site(l).to_string())
                                .unwrap_or_default();
                            let why = format!(
                                "the data read at {read_at} (item, to_vec, value) gave this \
                                 signature {variants} variants of its plan, more than \
                                 cache_size ({}); the call at {site} now runs in direct mode \
                                 for this signature. A value that changes on every call makes \
                                 a variant each time: compute with tensor ops (where_cond, \
                                 clamp, maximum) instead, or read it outside the function; a \
                                 branch with more outcomes needs a larger cache_size",
                                self.capacity,
                                site = ferrograd_array::Site(location)
                            );
                            entry.plan = Err(why.clone());
                            state.warn(why);
                            None
                        } else {
                            entry.plan.as_ref().ok().cloned()
                        }
                    }
                }
            }
            (Ok(trace), None) => {
                if has_output_grad {
                    names.push("output_grad".into());
                }
                let host = (p_leaves.iter().chain(a_leaves)).all(|t| t.device().is_cpu());
                let plan = CachedPlan::new(Plan::new(trace, template, names, self.fusion, host));
                self.insert_entry(&mut state, key, Ok(Arc::clone(&plan)), inputs);
                state.disabled.is_none().then_some(plan)
            }
        };
        plan
    }

    pub fn stats(&self) -> Stats {
        let state = self.state();
        let mut stats = state.stats.clone();
        stats.plans = state.entries.iter().filter(|e| e.plan.is_ok()).count();
        stats.variants = state
            .entries
            .iter()
            .filter_map(|e| e.plan.as_ref().ok())
            .map(|c| c.plan.variants())
            .sum();
        stats
    }

    /// Every cached plan as text, most recently used first.
    pub fn plans_text(&self) -> String {
        let state = self.state();
        let mut entries: Vec<&CacheEntry> = state.entries.iter().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        let mut s = String::new();
        for e in entries {
            s.push_str(&format!("// signature: {}\n", e.inputs.join(", ")));
            match &e.plan {
                Ok(c) => s.push_str(&c.plan.text()),
                Err(why) => s.push_str(&format!("// runs in direct mode: {why}\n")),
            }
        }
        s
    }

    /// The most recently used plan as DOT.
    pub fn plan_dot(&self) -> Option<String> {
        let state = self.state();
        state
            .entries
            .iter()
            .filter(|e| e.plan.is_ok())
            .max_by_key(|e| e.last_used)
            .and_then(|e| e.plan.as_ref().ok().map(|c| c.plan.dot()))
    }
}

/// A plan's template of the function's outputs (their structure, tensors as placeholders);
/// `None` for calls that return no outputs.
pub(crate) type Template = Option<Arc<dyn DynOutput>>;

/// The signature of a call: everything a replay assumes about its inputs (the output
/// gradient of a `partial_grad` call among them: the plan reads its layout too).
fn signature(
    params: &[Tensor],
    structure: &[u64],
    args: &[Tensor],
    args_key: &[u64],
    output_grad: Option<&Tensor>,
    key: &mut Vec<u64>,
) {
    key.reserve(8 + 8 * (params.len() + args.len()));
    let leaf = |key: &mut Vec<u64>, t: &Tensor| {
        let a = t.data();
        key.push(a.ndim() as u64);
        key.extend(a.shape().iter().map(|&n| n as u64));
        key.extend(a.strides().iter().map(|&s| s as u64));
        key.push(a.dtype() as u64);
        key.push(device_key(a.device()));
    };
    key.push(params.len() as u64);
    for t in params {
        leaf(key, t);
    }
    key.extend_from_slice(structure);
    key.push(args.len() as u64);
    for (i, t) in args.iter().enumerate() {
        leaf(key, t);
        // which earlier argument tensor this one is, if any (a capture gives both one value)
        let same = args[..i]
            .iter()
            .position(|u| u.concrete().same(t.concrete()));
        key.push(same.map_or(u64::MAX, |j| j as u64));
    }
    key.extend_from_slice(args_key);
    key.push(output_grad.is_some() as u64);
    if let Some(g) = output_grad {
        leaf(key, g);
    }
}

/// Flattens the outputs of a direct call: gradient leaves, then output leaves.
fn flatten(out: &Flat) -> Vec<Tensor> {
    let mut flat = out.grads.clone().unwrap_or_default();
    if let Some(o) = &out.output {
        flat.extend(o.leaves());
    }
    flat
}

/// Names for the flattened outputs, for messages (`params`: the parameter leaves' names,
/// which their gradients share).
fn output_names(out: &Flat, params: &[String]) -> Vec<String> {
    let mut names: Vec<String> = match out.grads {
        Some(_) => params.iter().map(|n| format!("gradient `{n}`")).collect(),
        None => Vec::new(),
    };
    if let Some(o) = &out.output {
        names.extend(o.names().into_iter().map(|n| format!("output `{n}`")));
    }
    names
}

/// The observer of a replay under a debugger or profiler. The steps of one op (a forward
/// op, or one node's gradient rule) share a group, reported as one profile entry as direct
/// mode reports them.
struct HookObserver<'a> {
    hooks: &'a Hooks,
    pending: Option<(capture::Origin, Duration)>,
}

impl HookObserver<'_> {
    fn flush(&mut self) {
        if let (Some((o, took)), Some(p)) = (self.pending.take(), &self.hooks.profile) {
            p.lock()
                .expect("profile lock")
                .add(&o.op, o.location, o.phase, took);
        }
    }
}

impl Drop for HookObserver<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl Observer for HookObserver<'_> {
    fn step(
        &mut self,
        step: &capture::Step,
        inputs: &[&Array],
        outputs: &[Option<Array>],
        took: Duration,
    ) {
        let o = &step.origin;
        match &mut self.pending {
            Some((p, t)) if p.group == o.group => *t += took,
            _ => {
                self.flush();
                self.pending = Some(((**o).clone(), took));
            }
        }
        if let Some(hook) = &self.hooks.debug {
            for out in outputs.iter().flatten() {
                if let Some(what) = crate::debug::nonfinite(out) {
                    let event = DebugEvent::new(
                        o.op.to_string(),
                        o.location,
                        o.phase,
                        what,
                        inputs.iter().map(|&a| Tensor::new(a.clone())).collect(),
                        Tensor::new(out.clone()),
                        self.hooks,
                    );
                    hook(&event);
                    break;
                }
            }
        }
    }
}

/// The call's generator arguments, in order.
fn generators_of(args: &mut dyn ArgTree) -> Vec<&mut crate::Generator> {
    let mut out = Vec::new();
    args.generators(&mut |g| out.push(g));
    out
}

/// The state of the call's generators (a replay that misses, or a check, starts over from it).
fn snapshot(args: &mut dyn ArgTree) -> Vec<crate::Generator> {
    generators_of(args).into_iter().map(|g| g.clone()).collect()
}

fn restore(args: &mut dyn ArgTree, states: &[crate::Generator]) {
    for (g, s) in generators_of(args).into_iter().zip(states) {
        *g = s.clone();
    }
}

/// Puts state cells back to the values they had.
fn restore_state(values: &[(capture::StateCell, Tensor)]) {
    for (cell, value) in values {
        *cell.lock().unwrap_or_else(|e| e.into_inner()) = value.clone();
    }
}

/// What the cache holds for a signature.
enum Lookup {
    Plan(Arc<CachedPlan>),
    Direct,
    New,
}

/// Whether two results agree: bit for bit when `exact` (a NaN matching any NaN: which NaN
/// an operation on two passes on, and so its sign and payload, is the hardware's choice,
/// `x + y` on x86 passes on `x`'s, and an exact rewrite may swap the operands of an add),
/// else up to rounding: every element within `tol` of the largest magnitude in `b` (1e-4
/// for f32, 1e-10 for f64; a plan's reordered sums differ from direct mode's by a few units
/// in the last place, and a function that reads stale state differs by far more).
fn agrees(a: &Array, b: &Array, exact: bool) -> bool {
    if a.bit_eq(b) || a.shape() != b.shape() || a.dtype() != b.dtype() || !a.dtype().is_float() {
        return a.bit_eq(b);
    }
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let nan_or_same = |p: f64, q: f64| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan());
    if exact {
        // (f32 to f64 is exact, so the same f64 bits are the same f32 bits)
        return x.iter().zip(&y).all(|(&p, &q)| nan_or_same(p, q));
    }
    let tol = if a.dtype() == crate::DType::F32 {
        1e-4
    } else {
        1e-10
    };
    let scale = y.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
    x.iter()
        .zip(&y)
        .all(|(&p, &q)| (p - q).abs() <= tol * scale || nan_or_same(p, q))
}

/// Why two runs of the same call disagree (see [`agrees`]), or `None`.
fn first_difference(a: &[Tensor], b: &[Tensor], names: &[String], exact: bool) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} outputs against {}", a.len(), b.len()));
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if !agrees(x.data(), y.data(), exact) {
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("output {i}"));
            return Some(format!(
                "{name} differs: compiled {:?} {}, direct {:?} {}",
                x.shape(),
                summary(x.data()),
                y.shape(),
                summary(y.data())
            ));
        }
    }
    None
}

fn summary(a: &Array) -> String {
    let v = a.to_f64_vec();
    if v.len() <= 6 {
        format!("{v:?}")
    } else {
        format!("[{}, {}, {}, ...]", v[0], v[1], v[2])
    }
}

/// The debugger and profiler of a `Grad`, for the parts of a call that do not depend on its
/// function's type.
#[derive(Clone, Copy)]
struct Observers<'a> {
    debug: Option<&'a crate::debug::DebugHook>,
    profile: Option<&'a Arc<Mutex<crate::profile::Profile>>>,
}

/// Runs a plan, under the debugger and profiler when the `Grad` has them.
fn replay(
    observers: Observers<'_>,
    plan: &CachedPlan,
    inputs: &mut Vec<Array>,
    generators: &mut [&mut crate::Generator],
    stable: usize,
    report: Option<plan::Report<'_>>,
) -> Outcome {
    if observers.debug.is_none() && observers.profile.is_none() {
        return plan.run(inputs, generators, stable, &mut Unobserved, report);
    }
    if let Some(p) = observers.profile {
        p.lock().expect("profile lock").count_call();
    }
    let hooks = Hooks {
        id: 0,
        debug: observers.debug.cloned(),
        profile: observers.profile.cloned(),
        leaf_names: Mutex::new(Vec::new()),
    };
    let mut observer = HookObserver {
        hooks: &hooks,
        pending: None,
    };
    let outcome = plan.run(inputs, generators, stable, &mut observer, report);
    observer.flush();
    outcome
}

impl Config {
    /// A call in optimize mode (see the module docs): its outputs, or `None` from a replay
    /// that left them in the call ([`Call::keep`]).
    pub(crate) fn run_optimized(
        &self,
        call: &mut dyn Call,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
    ) -> Option<Flat> {
        let opt = &self.optimizer;
        // the lists of the last call on this thread, emptied: a replay allocates none
        let mut lists = CallLists::take();
        let CallLists {
            p_leaves,
            a_leaves,
            args_key,
            structure,
            key,
            inputs,
        } = &mut *lists;
        call.param_leaves_into(p_leaves);
        call.args()
            .visit_args(&mut |t| a_leaves.push(t.clone()), args_key);
        let (direct, user_key) = opt.must_run_direct(p_leaves, a_leaves, output_grad);
        if opt.begin_call(direct) {
            lists.give_back();
            return Some(self.run_direct(call, None, output_grad, location));
        }
        call.param_structure(structure);
        signature(p_leaves, structure, a_leaves, args_key, output_grad, key);
        key.push(generators_of(call.args()).len() as u64);
        key.extend(user_key);

        let lookup = opt.lookup(key);
        // the plan this call missed, if any: a capture filed by another thread meanwhile
        // replaces it (see `file_capture`)
        let mut missed = None;
        match lookup {
            Lookup::Direct => {
                opt.state().stats.fallbacks += 1;
                lists.give_back();
                return Some(self.run_direct(call, None, output_grad, location));
            }
            Lookup::Plan(plan) => {
                let states = snapshot(call.args());
                let verifying = opt.verify_now(&plan);
                let stable = if opt.stable_gradients && self.with_gradients {
                    p_leaves.len()
                } else {
                    0
                };
                let mut tell = |i: usize, g: &Array| {
                    if let Some(hook) = &self.on_gradient {
                        hook(i, &Tensor::new(g.clone()));
                    }
                };
                let report = (self.on_gradient.is_some() && self.with_gradients)
                    .then_some((p_leaves.len(), &mut tell as &mut dyn FnMut(usize, &Array)));
                plan_inputs(p_leaves, a_leaves, output_grad, inputs);
                let n_params = p_leaves.len();
                // Donated parameters (`call_donating`): once the plan's inputs hold them, the
                // call lets go of its own handles, so an update may write over them. Not
                // when the replay could hand the call back to a capture (which reads them
                // again) or is verified against direct mode (which runs on them).
                let donated = verifying.is_none() && !plan.plan.can_miss() && call.release_params();
                if donated {
                    p_leaves.clear();
                }
                // (a kernel's refusal inside names the plan's line; this names the call's)
                let _replaying = ferrograd_array::enter(ferrograd_array::Context::Call {
                    what: if donated {
                        "an optimize-mode replay (on donated parameters) of the function"
                    } else {
                        "an optimize-mode replay (run again in direct mode, which names the \
                         line) of the function"
                    },
                    at: location,
                });
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    replay(
                        self.observers(),
                        &plan,
                        inputs,
                        &mut generators_of(call.args()),
                        stable,
                        report,
                    )
                }));
                let outcome = match outcome {
                    Ok(outcome) => {
                        drop(_replaying);
                        outcome
                    }
                    // A kernel refused the data (an index out of range, say): its message
                    // names the plan's line, not the user's. Direct mode on the same inputs
                    // refuses it at the user's line (the state is unwritten: writes wait for
                    // the end); donated parameters are gone, so that replay's panic stands.
                    Err(panic) if donated => std::panic::resume_unwind(panic),
                    Err(panic) => {
                        drop(_replaying);
                        restore(call.args(), &states);
                        lists.give_back();
                        let result = self.run_direct(call, None, output_grad, location);
                        let message = panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("a panic");
                        opt.state().warn(format!(
                            "internal: a replay of the call at {site} panicked where direct \
                             mode did not ({message}); the call ran in direct mode. Please \
                             report it",
                            site = ferrograd_array::Site(location)
                        ));
                        return Some(result);
                    }
                };
                match outcome {
                    Outcome::Done { template } => {
                        opt.state().stats.hits += 1;
                        if let Some(state_before) = verifying {
                            let result = self.assemble(n_params, inputs, &template);
                            lists.give_back();
                            restore_state(&state_before);
                            self.verify_replay(call, output_grad, location, &states, &result);
                            return Some(result);
                        }
                        let template = self.with_forward.then(|| {
                            (template.as_deref())
                                .expect("a plan of a call with outputs has their template")
                        });
                        call.keep(
                            self.with_gradients,
                            template,
                            &mut inputs.drain(..).map(Tensor::new),
                        );
                        lists.give_back();
                        return None;
                    }
                    Outcome::Miss { location: read_at } => {
                        assert!(
                            !donated,
                            "ferrograd: internal: a replay that cannot miss missed"
                        );
                        opt.record_miss(key, read_at);
                        // the replay may have drawn from the generators before it missed
                        restore(call.args(), &states);
                        missed = Some(plan);
                    }
                }
            }
            Lookup::New => {}
        }
        // a new signature, or a guard that saw a value no variant had seen
        plan_inputs(p_leaves, a_leaves, output_grad, inputs);
        let (key, inputs) = (std::mem::take(key), std::mem::take(inputs));
        let (p_leaves, a_leaves) = (p_leaves.to_vec(), a_leaves.to_vec());
        lists.give_back();
        Some(self.capture(
            call,
            output_grad,
            location,
            &p_leaves,
            &a_leaves,
            (key, missed),
            inputs,
        ))
    }

    /// `verify`: the call again in direct mode, from the generators' state before the
    /// replay, must give the replay's outputs bit for bit.
    fn verify_replay(
        &self,
        call: &mut dyn Call,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
        states: &[crate::Generator],
        result: &Flat,
    ) {
        // the reference run draws from the same state and leaves the generators where one
        // call does
        restore(call.args(), states);
        let reference = self.run_direct_observed(call, None, output_grad, location, false);
        if let Some(diff) = first_difference(
            &flatten(result),
            &flatten(&reference),
            &output_names(&reference, &call.param_names()),
            false,
        ) {
            panic!(
                "ferrograd: optimize mode: verify found the compiled call at {site} differs \
                 from direct mode: {diff}. The function reads something that is not an input \
                 (a tensor behind a Mutex, a Cell or a global, or a tensor the closure captured \
                 that is also passed as an argument); pass it as an argument, or call \
                 ferrograd::side_effect in the function",
                site = ferrograd_array::Site(location)
            );
        }
        self.optimizer.state().stats.verified += 1;
    }

    /// The debugger and profiler a replay reports to.
    fn observers(&self) -> Observers<'_> {
        Observers {
            debug: self.debug.as_ref(),
            profile: self.profile.as_ref(),
        }
    }

    /// The outputs of a replay as a direct call returns them. `n_grads` is the number of
    /// parameter leaves (one gradient each).
    fn assemble(&self, n_grads: usize, outputs: &mut Vec<Array>, template: &Template) -> Flat {
        let mut it = outputs.drain(..).map(Tensor::new);
        let grads = self
            .with_gradients
            .then(|| it.by_ref().take(n_grads).collect());
        let output = self.with_forward.then(|| {
            template
                .as_ref()
                .expect("a plan of a call with outputs has their template")
                .rebuild(it.collect())
        });
        Outputs { grads, output }
    }

    /// Runs the function in direct mode while recording it, and caches what it recorded.
    #[allow(clippy::too_many_arguments)]
    fn capture(
        &self,
        call: &mut dyn Call,
        output_grad: Option<&Tensor>,
        location: &'static Location<'static>,
        p_leaves: &[Tensor],
        a_leaves: &[Tensor],
        (key, missed): (Vec<u64>, Option<Arc<CachedPlan>>),
        inputs: Vec<Array>,
    ) -> Flat {
        let opt = &self.optimizer;
        let start = Instant::now();
        // Fresh handles for the parameters: a tensor the closure holds that is also a
        // parameter stays a constant, as it is in direct mode.
        let (fresh, recorded) = fresh_inputs(p_leaves, a_leaves, output_grad);
        let generators = generator_ids(&generators_of(call.args()));
        let states = if check_mode() {
            snapshot(call.args())
        } else {
            Vec::new()
        };
        let names = call.param_names();
        let scope = capture::start(&recorded, generators);
        let out = self.run_direct(call, Some(fresh), output_grad, location);
        let flat = flatten(&out);
        let mut trace = capture::finish(scope, &flat);
        let state_read = take_state_read(&mut trace);
        let took = start.elapsed();
        let template: Template = out.output.as_ref().map(|o| o.template());
        let output_names = output_names(&out, &names);

        let plan = opt.file_capture(
            trace,
            template,
            (key, missed),
            took,
            names,
            p_leaves,
            a_leaves,
            output_grad.is_some(),
            location,
        );
        if check_mode() {
            if let Some(plan) = plan {
                check_capture(
                    &plan,
                    inputs,
                    states,
                    &state_read,
                    &flat,
                    &output_names,
                    location,
                );
            }
        }
        out
    }
}

/// A plan's inputs: the parameter leaves, the argument tensors, the output gradient.
fn plan_inputs(
    p_leaves: &[Tensor],
    a_leaves: &[Tensor],
    output_grad: Option<&Tensor>,
    inputs: &mut Vec<Array>,
) {
    inputs.clear();
    inputs.extend(
        p_leaves
            .iter()
            .chain(a_leaves)
            .chain(output_grad)
            .map(|t| t.data().clone()),
    );
}

/// The lists an optimized call builds (the leaves, the signature, the plan's inputs), kept
/// per thread between calls, emptied, so that a replay allocates none of them. A call made
/// inside another's function (a nested `grad`) takes a fresh set.
#[derive(Default)]
struct CallLists {
    p_leaves: Vec<Tensor>,
    a_leaves: Vec<Tensor>,
    args_key: Vec<u64>,
    structure: Vec<u64>,
    key: Vec<u64>,
    inputs: Vec<Array>,
}

thread_local! {
    static CALL_LISTS: std::cell::Cell<Option<Box<CallLists>>> = const { std::cell::Cell::new(None) };
}

impl CallLists {
    fn take() -> Box<CallLists> {
        CALL_LISTS
            .try_with(|c| c.take())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Empties the lists (dropping the handles they hold) and keeps them for the next call.
    fn give_back(mut self: Box<Self>) {
        self.p_leaves.clear();
        self.a_leaves.clear();
        self.args_key.clear();
        self.structure.clear();
        self.key.clear();
        self.inputs.clear();
        let _ = CALL_LISTS.try_with(|c| c.set(Some(self)));
    }
}

/// Fresh handles for the parameter leaves (a tensor the closure holds that is also a
/// parameter stays a constant, as it is in direct mode), and every input a capture records:
/// those, the argument tensors, the output gradient.
fn fresh_inputs(
    p_leaves: &[Tensor],
    a_leaves: &[Tensor],
    output_grad: Option<&Tensor>,
) -> (Vec<Tensor>, Vec<Tensor>) {
    let fresh: Vec<Tensor> = p_leaves
        .iter()
        .map(|t| Tensor::new(t.data().clone()))
        .collect();
    let mut recorded = fresh.clone();
    recorded.extend(a_leaves.iter().cloned());
    recorded.extend(output_grad.cloned());
    (fresh, recorded)
}

/// The identities of the generator arguments (a capture tells their draws from others').
fn generator_ids(generators: &[&mut crate::Generator]) -> Vec<usize> {
    generators
        .iter()
        .map(|g| &**g as *const crate::Generator as usize)
        .collect()
}

/// The state cells a recording read, with the values it read.
fn take_state_read(
    trace: &mut Result<capture::Trace, String>,
) -> Vec<(capture::StateCell, Tensor)> {
    trace
        .as_mut()
        .map(|t| std::mem::take(&mut t.state_read))
        .unwrap_or_default()
}

/// `FERROGRAD_OPTIMIZE=check`: the plan just captured replays the same call exactly, from the
/// state the capture read (`state_read`; it has written since), and writes the same state
/// (`direct`: the call's outputs flattened, gradients first, in the order the plan returns
/// them).
fn check_capture(
    plan: &CachedPlan,
    inputs: Vec<Array>,
    generators: Vec<crate::Generator>,
    state_read: &[(capture::StateCell, Tensor)],
    direct: &[Tensor],
    names: &[String],
    location: &'static Location<'static>,
) {
    let after: Vec<(capture::StateCell, Tensor)> = state_read
        .iter()
        .map(|(c, _)| {
            (
                Arc::clone(c),
                c.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            )
        })
        .collect();
    restore_state(state_read);
    check_replay(plan, inputs, generators, direct, names, location);
    for (c, want) in &after {
        let got = c.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if !want.data().bit_eq(got.data()) {
            panic!(
                "ferrograd: optimize mode check: replaying the capture of the call at {site} \
                 wrote different state",
                site = ferrograd_array::Site(location)
            );
        }
    }
}

/// [`check_capture`]'s replay and comparison.
fn check_replay(
    plan: &CachedPlan,
    inputs: Vec<Array>,
    mut generators: Vec<crate::Generator>,
    direct: &[Tensor],
    names: &[String],
    location: &'static Location<'static>,
) {
    let mut refs: Vec<&mut crate::Generator> = generators.iter_mut().collect();
    let mut values = inputs;
    match plan.run(&mut values, &mut refs, 0, &mut Unobserved, None) {
        Outcome::Done { .. } => {
            let replayed: Vec<Tensor> = values.into_iter().map(Tensor::new).collect();
            if let Some(diff) = first_difference(&replayed, direct, names, true) {
                panic!(
                    "ferrograd: optimize mode check: replaying the capture of the call at \
                     {site} differs from direct mode: {diff}",
                    site = ferrograd_array::Site(location)
                );
            }
        }
        Outcome::Miss { location: at } => panic!(
            "ferrograd: optimize mode check: replaying the capture of the call at \
             {site} missed its own guard at {}",
            ferrograd_array::Site(at),
            site = ferrograd_array::Site(location)
        ),
    }
}

/// A function compiled per input signature, with no gradient: inference, or a function that
/// takes its own gradients inside (`hvp`, `grad` of `grad`). Made by [`compile`].
pub struct Compiled<F> {
    inner: Grad<Forward<F>>,
}

/// The user's function, returning its output in a [`GradOutput`] that is never
/// differentiated.
#[doc(hidden)]
pub struct Forward<F>(F);

/// An output that `compile` returns as it is.
#[doc(hidden)]
pub struct Plain<O>(O);

impl<O: Tree> Tree for Plain<O> {
    fn visit<'a>(&'a self, prefix: &str, f: &mut dyn FnMut(&str, &'a Tensor)) {
        self.0.visit(prefix, f)
    }
    fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        Plain(self.0.map(f))
    }
    fn structure(&self, key: &mut Vec<u64>) {
        self.0.structure(key)
    }
}

impl<O: Tree + Send + Sync + 'static> GradOutput for Plain<O> {
    fn loss(&self) -> &Tensor {
        unreachable!("compile never differentiates its function")
    }
    fn unbox(&self, level: u64) -> Self {
        self.map(&mut |t| t.unbox(level))
    }
}

impl<F, P, Args> Differentiable<P, Args> for Forward<F>
where
    F: Differentiable<P, Args>,
    F::Output: Tree + Send + Sync + 'static,
{
    type Output = Plain<F::Output>;
    fn invoke(&self, params: &P, args: Args) -> Self::Output {
        Plain(self.0.invoke(params, args))
    }
}

/// Compiles `f` (a function of a parameter tree and further arguments, like those [`grad`](crate::grad())
/// takes) per input signature, with the guards and the cache of
/// [`Grad::optimize`](crate::Grad::optimize).
///
/// ```
/// use ferrograd::{compile, grad, Tensor};
/// // the gradient of Σ x³ computed inside a compiled function: 3x²
/// let f = compile(|x: &Tensor| grad(|x: &Tensor| x.pow_scalar(3.0).sum()).call(x, ()).0);
/// for v in [1.0f64, 2.0] {
///     assert_eq!(f.call(&Tensor::from_vec(vec![v], &[1]), ()).to_vec::<f64>(), vec![3.0 * v * v]);
/// }
/// assert_eq!(f.stats().hits, 1);
/// ```
pub fn compile<F>(f: F) -> Compiled<F> {
    Compiled {
        inner: crate::grad(Forward(f)).with_gradients(false).optimize(true),
    }
}

impl<F> Compiled<F> {
    /// Calls the function: a replay when a plan for this signature exists, else a capture.
    #[track_caller]
    pub fn call<P, Args>(&self, params: &P, args: Args) -> F::Output
    where
        P: Tree,
        Args: ArgTree,
        F: Differentiable<P, Args>,
        F::Output: Tree + Send + Sync + 'static,
    {
        let out = self.inner.run(params, args, None);
        out.output.expect("forward on").0
    }

    /// Calls the function with the parameters moved in (donated, in JAX's word): a buffer
    /// of theirs that nothing else holds may be written over by the call. A training step
    /// that returns the new parameters (`p - g·lr`) then writes them in place of the old
    /// ones, as an in-place optimizer does, instead of into a second buffer per parameter:
    /// half the memory, and a faster update (see the README's figures). So does optimizer
    /// state passed in and out beside them (a momentum step's velocities, Adam's moments).
    /// Results are those of [`call`](Compiled::call), bit for bit.
    ///
    /// ```
    /// use ferrograd::{compile, grad, Tensor};
    /// let loss = |p: &Tensor, x: &Tensor| (p * x).sum();
    /// let step = compile(move |p: &Tensor, x: &Tensor| p - &(grad(loss).call(p, (x,)).0 * 0.1));
    /// let x = Tensor::from_vec(vec![1.0f32; 1000], &[1000]);
    /// let mut p = Tensor::from_vec(vec![0.5f32; 1000], &[1000]);
    /// for _ in 0..3 {
    ///     p = step.call_donating(p, (&x,));
    /// }
    /// assert_eq!(p.to_vec::<f32>()[0], 0.5 - 0.1 - 0.1 - 0.1);
    /// ```
    ///
    /// Donation needs a plan, so the first call of a signature (the capture), calls that
    /// [`verify`](Compiled::verify) checks, and plans with a branch on a value or a state
    /// read run as [`call`](Compiled::call) does; so does a parameter the caller still holds
    /// elsewhere (a clone, an optimizer's state), which is never written.
    #[track_caller]
    pub fn call_donating<P, Args>(&self, params: P, args: Args) -> F::Output
    where
        P: Tree,
        Args: ArgTree,
        F: Differentiable<P, Args>,
        F::Output: Tree + Send + Sync + 'static,
    {
        self.inner.run_donating(params, args).0
    }

    /// See [`Grad::cache_size`](crate::Grad::cache_size).
    pub fn cache_size(self, entries: usize) -> Self {
        Compiled {
            inner: self.inner.cache_size(entries),
        }
    }

    /// See [`Grad::verify`](crate::Grad::verify).
    pub fn verify(self, every: u64) -> Self {
        Compiled {
            inner: self.inner.verify(every),
        }
    }

    /// See [`Grad::fusion`](crate::Grad::fusion).
    pub fn fusion(self, on: bool) -> Self {
        Compiled {
            inner: self.inner.fusion(on),
        }
    }

    /// See [`Grad::signature_fn`](crate::Grad::signature_fn).
    pub fn signature_fn(
        self,
        key: impl Fn(&[Tensor], &[Tensor]) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        Compiled {
            inner: self.inner.signature_fn(key),
        }
    }

    /// See [`Grad::stats`](crate::Grad::stats).
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// See [`Grad::plan_text`](crate::Grad::plan_text).
    pub fn plan_text(&self) -> String {
        self.inner.plan_text()
    }

    /// See [`Grad::plan_dot`](crate::Grad::plan_dot).
    pub fn plan_dot(&self) -> Option<String> {
        self.inner.plan_dot()
    }
}

/// Runs the calling test binary again with `FERROGRAD_OPTIMIZE=check` (every `grad` in
/// optimize mode, each capture replayed at once and every replay verified bit for bit
/// against direct mode), skipping the test named `this_test`, and panics with the output's
/// tail when anything fails. Put one such test in each test binary that calls `grad`, so
/// that plain `cargo test` runs the suite in both modes.
#[doc(hidden)]
pub fn rerun_tests_in_check_mode(this_test: &str) {
    if std::env::var_os("FERROGRAD_OPTIMIZE").is_some() {
        return;
    }
    let exe = std::env::current_exe().expect("the running test binary");
    let out = std::process::Command::new(&exe)
        .env("FERROGRAD_OPTIMIZE", "check")
        .args(["--skip", this_test, "--test-threads", "2"])
        .output()
        .expect("the test binary runs again");
    if !out.status.success() {
        let tail = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        panic!(
            "the tests of {} fail with every grad in optimize mode (FERROGRAD_OPTIMIZE=check):\n{}\n{}",
            exe.display(),
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::agrees;
    use crate::Array;

    /// A check (and `verify`) compares bit for bit, but any NaN matches any NaN: its sign and
    /// payload are the hardware's pick of an operand (a replay in check mode once panicked
    /// on `[NaN]` against `[NaN]`).
    #[test]
    fn an_exact_check_matches_any_nan_and_nothing_else() {
        let nan = f64::NAN;
        let a = Array::from_vec(vec![1.0f64, nan, -0.0], &[3]);
        let b = Array::from_vec(vec![1.0f64, -nan, -0.0], &[3]);
        assert!(agrees(&a, &b, true));
        let f32s = |v: Vec<f32>| Array::from_vec(v, &[2]);
        assert!(agrees(
            &f32s(vec![f32::NAN, 2.0]),
            &f32s(vec![-f32::NAN, 2.0]),
            true
        ));
        // a zero's sign and the last bit still count
        let plus_zero = Array::from_vec(vec![1.0f64, nan, 0.0], &[3]);
        assert!(!agrees(&a, &plus_zero, true));
        let next = Array::from_vec(vec![f64::from_bits(1.0f64.to_bits() + 1), nan, -0.0], &[3]);
        assert!(!agrees(&a, &next, true));
        assert!(agrees(&a, &next, false));
    }
}
