//! Recording one run of a function as a straight-line program over arrays.
//!
//! `apply` is the one door every primitive passes, and every primitive ends in a computation
//! on concrete arrays at level 0: forward ops, the backward pass's gradient rules and the
//! accumulation of contributions alike. While a capture is active on this thread, each of
//! those computations is recorded as a step whose inputs and output are *values*, named by
//! the identity of the concrete tensor handle that holds them.
//!
//! A handle that no step produced and that is not an input is a constant (a literal, a
//! `zeros`, a tensor the closure holds). Three things would make a replay differ from direct
//! mode, and each is caught here rather than frozen:
//! - a constant built from computed data outside any op (`Tensor::new(x.value().clone())`,
//!   or a view of it): its storage is one a recorded step wrote, and the capture is marked
//!   as not replayable;
//! - a user's read of data (`item`, `to_vec`, `value`): recorded as a guard, checked by the
//!   replay at the same point;
//! - random draws, and effects the library reports through [`side_effect`]: the capture is
//!   marked as not replayable, so the signature runs in direct mode.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::sync::{Arc, Weak};

use smallvec::SmallVec;

use crate::custom::CustomOp;
use crate::debug::Phase;
use crate::grad::IdMap;
use crate::op::Op;
use crate::tensor::Repr;
use crate::{Array, Tensor};

/// A value of a captured program: an input, a constant or a step's result.
pub(crate) type ValueId = u32;

/// Where a step came from: the op the user applied (or whose gradient rule ran, in the
/// backward pass) and the user's source line, as direct mode reports them.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    pub op: Cow<'static, str>,
    pub location: &'static Location<'static>,
    pub phase: Phase,
    /// Steps of one forward op, or of one node's gradient rule, share a group.
    pub group: u32,
    /// A checkpoint's recomputation: never merged into the forward's steps (see
    /// [`super::passes`]; the values a checkpoint keeps are not recomputed at all).
    pub remat: bool,
}

/// A random draw: the distribution, the shape and the dtype.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Draw {
    Bernoulli(crate::Shape, f64, crate::DType),
    Uniform(crate::Shape, f64, f64, crate::DType),
    Normal(crate::Shape, f64, f64, crate::DType),
}

impl Draw {
    /// Draws from `rng` (the same call direct mode makes, so the same numbers).
    #[track_caller]
    pub fn sample(&self, rng: &mut crate::Generator) -> Array {
        match self {
            Draw::Bernoulli(s, p, d) => rng.bernoulli(s, *p, *d),
            Draw::Uniform(s, low, high, d) => rng.uniform(s, *low, *high, *d),
            Draw::Normal(s, mean, std, d) => rng.normal(s, *mean, *std, *d),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Draw::Bernoulli(..) => "rand_bernoulli",
            Draw::Uniform(..) => "rand_uniform",
            Draw::Normal(..) => "rand_normal",
        }
    }
}

/// What a step computes.
#[derive(Clone, Debug)]
pub(crate) enum StepKind {
    /// A random draw from the call's `generator`-th generator argument (no inputs).
    Draw { generator: usize, draw: Draw },
    /// A primitive with one output.
    Op(Op),
    /// A user op's array-level backward (inputs: the op's inputs, its output, the output
    /// gradient), one output per input that gets a gradient.
    CustomBackward {
        op: Arc<dyn CustomOp>,
        needs: Vec<bool>,
    },
    /// `acc + a @ b` computed into `acc`'s buffer (inputs: acc, a, b), which dies here: a
    /// plan's rewrite of an add of a matrix product (see `passes::accumulate_products`).
    /// `exact`: rounded as the add of the product, bit for bit
    /// ([`Array::matmul_acc_into`](crate::Array::matmul_acc_into)); else summed in the
    /// kernel's order ([`Array::matmul_add_into`](crate::Array::matmul_add_into)), for the
    /// rewrites that run with fusion on. `scale`: the product is `scale · a @ b`, scaled in
    /// the kernel ([`Array::matmul_add_scaled_into`](crate::Array::matmul_add_scaled_into);
    /// 1 when `exact`), an SGD update folded into its weight gradient's product (see
    /// `passes::fold_updates`). `shared`: the accumulator is read again after all (a pass
    /// after the rewrite gave it a later reader, or it is an operand too): its buffer is
    /// copied instead of taken (see `plan::share_accumulators`).
    MatmulAcc {
        exact: bool,
        scale: f64,
        shared: bool,
    },
    /// A `cat` along `dim` written straight into the rows of a stack it is a piece of
    /// (`stack`, of `shape`, from element `start`; see `passes::assemble_stacks`): the
    /// inputs are the cat's, the output a view of those rows, of shape `piece`. `written`:
    /// a piece a fused group writes into its place in the stack, with the others (see
    /// `passes::programs_into_stacks`); when that piece is found in the stack's buffer the
    /// group did (it does not when run op by op), and there is nothing to copy.
    CatInto {
        dim: usize,
        stack: ValueId,
        start: usize,
        shape: crate::Shape,
        piece: crate::Shape,
        written: Option<usize>,
    },
    /// The stack whose pieces `CatInto` steps wrote where it holds them: no inputs, nothing
    /// left to copy.
    Assembled,
    /// `x[first_row..] + a @ b` added into those rows of `x`'s own buffer (inputs: x, a, b),
    /// the output a view of them: a recurrent step's `h @ W_h` added into its rows of the
    /// input projections of every step, each row block read once (see
    /// `passes::accumulate_in_rows`). Summed as `MatmulAcc { exact: false }` sums.
    MatmulAccRows { first_row: usize },
    /// The sums (or means, `mean`) over blocks of `rows` rows of a 2-D stack (the input),
    /// block `k` from row `firsts[k]`, as the rows of one `[blocks, columns]` output: the
    /// per-step bias gradients of a recurrent network, summed from the stack of its gate
    /// gradients in one pass (see `passes::sum_blocks_together`), each the sum it replaces
    /// bit for bit ([`Array::row_block_sums`](crate::Array::row_block_sums)).
    BlockSums {
        firsts: Vec<usize>,
        rows: usize,
        mean: bool,
    },
}

/// One recorded computation.
#[derive(Clone, Debug)]
pub(crate) struct Step {
    pub kind: StepKind,
    pub inputs: SmallVec<[ValueId; 4]>,
    pub outputs: SmallVec<[Option<ValueId>; 2]>,
    /// Boxed, like `operand`: a replay reads neither on its fast path, and a smaller step
    /// keeps more of a plan in cache (the 100-op chain replayed 10% faster).
    pub origin: Box<Origin>,
    /// A scalar op's scalar as the 0-d array its kernel takes, made once at capture.
    pub operand: Option<Box<Array>>,
}

impl Step {
    /// The name shown in plans and profiles.
    pub fn name(&self) -> Cow<'static, str> {
        match &self.kind {
            StepKind::Op(op) => op.name(),
            StepKind::CustomBackward { op, .. } => Cow::Owned(format!("{}.backward", op.name())),
            StepKind::Draw { draw, .. } => Cow::Borrowed(draw.name()),
            StepKind::MatmulAcc { scale, .. } if *scale != 1.0 => {
                Cow::Owned(format!("matmul_acc·{scale}"))
            }
            StepKind::MatmulAcc { .. } => Cow::Borrowed("matmul_acc"),
            StepKind::CatInto {
                stack,
                written: None,
                ..
            } => Cow::Owned(format!("cat_into[%{stack}]")),
            // (its pieces written there by the group that makes them)
            StepKind::CatInto { stack, .. } => Cow::Owned(format!("cat_into[%{stack}, in place]")),
            StepKind::Assembled => Cow::Borrowed("assembled"),
            StepKind::MatmulAccRows { first_row } => {
                Cow::Owned(format!("matmul_acc_rows[{first_row}..]"))
            }
            StepKind::BlockSums { firsts, rows, mean } => Cow::Owned(format!(
                "{}[{} blocks of {rows} rows]",
                if *mean { "block_means" } else { "block_sums" },
                firsts.len()
            )),
        }
    }
}

/// A user's read of a computed value, with the data read.
#[derive(Clone, Debug)]
pub(crate) struct Guard {
    pub value: ValueId,
    pub expected: Array,
    pub location: &'static Location<'static>,
}

/// A [`State`](super::state::State)'s cell.
pub(crate) type StateCell = Arc<std::sync::Mutex<Tensor>>;

/// A state read: the cell's value (of this shape, dtype and layout) becomes `id`.
#[derive(Clone, Debug)]
pub(crate) struct StateRead {
    pub id: ValueId,
    pub cell: StateCell,
    pub shape: crate::Shape,
    pub dtype: crate::DType,
    /// Whether it was row-major (the plan's simplifications count on it, see [`Meta`]).
    pub row_major: bool,
    pub location: &'static Location<'static>,
}

/// One entry of a recording, in program order.
// Most entries are steps: boxing them would allocate once per recorded op for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Const(ValueId, Array),
    Step(Step),
    Guard(Guard),
    StateRead(StateRead),
    /// A state write of value `id`, applied when the call completes.
    StateWrite {
        id: ValueId,
        cell: StateCell,
    },
}

/// The shape and dtype of a value, as captured (a plan is specialised to them).
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub shape: crate::Shape,
    pub dtype: crate::DType,
    /// Whether the recorded array was laid out row-major (contiguous strides): the same on
    /// every call of the signature, whose key holds the inputs' strides, since each op lays
    /// out its result by its operands' layouts alone (a state read whose layout changes is
    /// a miss, as one whose shape changes). False where not known: the values the plan's
    /// passes make (after the simplifications that read this).
    pub row_major: bool,
}

impl Meta {
    fn of(t: &Tensor) -> Meta {
        Meta {
            shape: t.shape().into(),
            dtype: t.dtype(),
            row_major: t.data().is_contiguous(),
        }
    }

    /// A value made by a pass, its layout not recorded.
    pub(super) fn made(shape: crate::Shape, dtype: crate::DType) -> Meta {
        Meta {
            shape,
            dtype,
            row_major: false,
        }
    }
}

/// A finished recording.
pub(crate) struct Trace {
    pub entries: Vec<Entry>,
    pub outputs: Vec<ValueId>,
    pub n_values: usize,
    /// Each value's shape and dtype, by id.
    pub metas: Vec<Meta>,
    /// The state the capture read, cell by cell (a check replays from it).
    pub state_read: Vec<(StateCell, Tensor)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Input,
    Const,
    Computed,
}

struct Recorder {
    /// Value of each known handle, by handle identity.
    ids: IdMap<ValueId>,
    kinds: Vec<Kind>,
    metas: Vec<Meta>,
    /// Keep the handles' addresses unique while recording (they do not keep the data).
    handles: Vec<Weak<Repr>>,
    /// Storages written by recorded steps (weak, for the same reason).
    computed: HashMap<usize, ferrograd_array::StorageRef>,
    entries: Vec<Entry>,
    poisoned: Option<String>,
    /// The draw counter when the capture started, and the draws recorded as steps since.
    draws: u64,
    recorded_draws: u64,
    /// The generator arguments, by address.
    generators: Vec<usize>,
    /// The user op whose backward is running (to record an array-level backward).
    custom: Option<Arc<dyn CustomOp>>,
    /// The node whose gradient rule is running.
    origin: Option<Origin>,
    /// `Some` while a checkpoint is being recomputed.
    remat: Option<()>,
    /// The last group number given out.
    groups: u32,
    /// The state read, cell by cell.
    state_read: Vec<(StateCell, Tensor)>,
}

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// True while a capture records on this thread.
#[inline]
pub(crate) fn active() -> bool {
    ACTIVE.with(Cell::get)
}

/// While the returned value lives, nothing is recorded on this thread: for code that
/// watches the function rather than being part of it (an `on_gradient` hook reading a
/// gradient must not become a guard of the plan).
pub(crate) fn pause() -> Paused {
    Paused(ACTIVE.with(|a| a.replace(false)))
}

/// Resumes recording when dropped (see [`pause`]).
pub(crate) struct Paused(bool);

impl Drop for Paused {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.0));
    }
}

fn with<R>(f: impl FnOnce(&mut Recorder) -> R) -> Option<R> {
    RECORDER.with(|r| r.borrow_mut().as_mut().map(f))
}

/// Ends the capture when dropped (also when the function panics).
pub(crate) struct CaptureScope(());

impl Drop for CaptureScope {
    fn drop(&mut self) {
        RECORDER.with(|r| r.borrow_mut().take());
        ACTIVE.with(|a| a.set(false));
    }
}

/// Starts recording on this thread with `inputs` as values `0..inputs.len()`, and the
/// generators at `generators` (addresses) as the call's generator arguments.
pub(crate) fn start(inputs: &[Tensor], generators: Vec<usize>) -> CaptureScope {
    let mut rec = Recorder {
        ids: IdMap::default(),
        kinds: Vec::new(),
        metas: Vec::new(),
        handles: Vec::new(),
        computed: HashMap::new(),
        entries: Vec::new(),
        poisoned: None,
        draws: ferrograd_array::draws_on_this_thread().0,
        recorded_draws: 0,
        generators,
        custom: None,
        origin: None,
        remat: None,
        groups: 0,
        state_read: Vec::new(),
    };
    for t in inputs {
        // The same handle twice names the later input; the signature records the aliasing,
        // so a replay gets the same tensor in both places.
        let t = t.concrete();
        rec.ids.insert(t.id(), rec.kinds.len() as ValueId);
        rec.handles.push(Arc::downgrade(&t.repr));
        rec.kinds.push(Kind::Input);
        rec.metas.push(Meta::of(t));
    }
    RECORDER.with(|r| *r.borrow_mut() = Some(rec));
    ACTIVE.with(|a| a.set(true));
    CaptureScope(())
}

impl Recorder {
    fn new_value(&mut self, t: &Tensor, kind: Kind) -> ValueId {
        let id = self.kinds.len() as ValueId;
        self.kinds.push(kind);
        self.metas.push(Meta::of(t));
        self.ids.insert(t.id(), id);
        self.handles.push(Arc::downgrade(&t.repr));
        id
    }

    /// The value of a concrete handle, making it a constant when it is new. `used_at`: the
    /// user's line that uses it, `None` when the function returns it.
    fn value_of(&mut self, t: &Tensor, used_at: Option<&'static Location<'static>>) -> ValueId {
        if let Some(&id) = self.ids.get(&t.id()) {
            return id;
        }
        let array = t.data();
        if self.computed.contains_key(&array.storage_id()) && self.poisoned.is_none() {
            let used = match used_at {
                Some(l) => format!("before its use at {}", ferrograd_array::Site(l)),
                None => "and returned".into(),
            };
            self.poisoned = Some(format!(
                "a value computed inside the function was turned into a new tensor outside any \
                 op {used} (for example `Tensor::new(x.value().clone())`); use tensor \
                 operations (or `detach()`) instead"
            ));
        }
        let id = self.new_value(t, Kind::Const);
        self.entries.push(Entry::Const(id, array.clone()));
        id
    }

    fn origin(&mut self, op: &Op, location: &'static Location<'static>) -> Origin {
        if let Some(o) = &self.origin {
            return o.clone();
        }
        self.groups += 1;
        Origin {
            op: op.name(),
            location,
            phase: Phase::Forward,
            group: self.groups,
            remat: false,
        }
    }

    fn mark_computed(&mut self, out: &Tensor, inputs: &[ValueId], input_storages: &[usize]) {
        let sid = out.data().storage_id();
        // A view of a constant stays a view of a constant.
        let of_const = inputs
            .iter()
            .zip(input_storages)
            .any(|(&i, &s)| s == sid && self.kinds[i as usize] == Kind::Const);
        if !of_const {
            self.computed.insert(sid, out.data().storage_ref());
        }
    }
}

/// Records one level-0 computation: `op` applied to concrete `inputs` gave `out`.
pub(crate) fn record_op(
    op: &Op,
    inputs: &[&Tensor],
    out: &Tensor,
    location: &'static Location<'static>,
) {
    with(|rec| {
        let ids: SmallVec<[ValueId; 4]> = inputs
            .iter()
            .map(|t| rec.value_of(t, Some(location)))
            .collect();
        let storages: SmallVec<[usize; 4]> = inputs.iter().map(|t| t.data().storage_id()).collect();
        let mut origin = rec.origin(op, location);
        origin.remat = rec.remat.is_some();
        let id = rec.new_value(out, Kind::Computed);
        rec.mark_computed(out, &ids, &storages);
        let operand = match op {
            Op::Scalar(s, v) => s.operand(*v, inputs[0].data().dtype()).map(Box::new),
            _ => None,
        };
        rec.entries.push(Entry::Step(Step {
            kind: StepKind::Op(op.clone()),
            inputs: ids,
            outputs: smallvec::smallvec![Some(id)],
            origin: Box::new(origin),
            operand,
        }));
    });
}

/// Records a random draw from `rng` that gave `out`; `false` when `rng` is not one of the
/// call's generator arguments (the capture is then not replayable).
pub(crate) fn record_draw(
    rng: &crate::Generator,
    draw: Draw,
    out: &Tensor,
    location: &'static Location<'static>,
) {
    with(|rec| {
        let address = rng as *const crate::Generator as usize;
        let Some(generator) = rec.generators.iter().position(|&g| g == address) else {
            rec.poisoned.get_or_insert_with(|| {
                format!(
                    "the random draw at {site} uses a generator that is not an argument of \
                     the call; pass the Generator as an argument (`&mut Generator`) so that a \
                     replay draws from it",
                    site = ferrograd_array::Site(location)
                )
            });
            return;
        };
        rec.recorded_draws += 1;
        let group = rec.origin(&Op::Leaf, location).group;
        let id = rec.new_value(out, Kind::Computed);
        rec.mark_computed(out, &[], &[]);
        rec.entries.push(Entry::Step(Step {
            kind: StepKind::Draw {
                generator,
                draw: draw.clone(),
            },
            inputs: SmallVec::new(),
            outputs: smallvec::smallvec![Some(id)],
            origin: Box::new(Origin {
                op: Cow::Borrowed(draw.name()),
                location,
                phase: Phase::Forward,
                group,
                remat: false,
            }),
            operand: None,
        }));
    });
}

/// Records a read of state `cell` that gave `value`. A value the capture already knows (one
/// the call wrote before) needs no read.
pub(crate) fn record_state_read(
    cell: &StateCell,
    value: &Tensor,
    location: &'static Location<'static>,
) {
    with(|rec| {
        if rec.ids.contains_key(&value.id()) {
            return;
        }
        let id = rec.new_value(value, Kind::Input);
        rec.state_read.push((Arc::clone(cell), value.clone()));
        rec.entries.push(Entry::StateRead(StateRead {
            id,
            cell: Arc::clone(cell),
            shape: value.shape().into(),
            dtype: value.dtype(),
            row_major: value.data().is_contiguous(),
            location,
        }));
    });
}

/// Records a write of `value` to state `cell`.
pub(crate) fn record_state_write(
    cell: &StateCell,
    value: &Tensor,
    location: &'static Location<'static>,
) {
    with(|rec| {
        let id = rec.value_of(value.concrete(), Some(location));
        rec.entries.push(Entry::StateWrite {
            id,
            cell: Arc::clone(cell),
        });
    });
}

/// Records a user op's array-level backward, which ran on `inputs`, `output` and `grad` and
/// gave `grads`.
pub(crate) fn record_custom_backward(
    inputs: &[Tensor],
    output: &Tensor,
    grad: &Tensor,
    needs: &[bool],
    grads: &[Option<Tensor>],
) {
    with(|rec| {
        let Some(op) = rec.custom.clone() else {
            rec.poisoned.get_or_insert_with(|| {
                "a custom op's array-level backward ran outside the backward pass".into()
            });
            return;
        };
        let location = rec
            .origin
            .as_ref()
            .map_or(Location::caller(), |o| o.location);
        let all: Vec<&Tensor> = inputs
            .iter()
            .chain([output, grad])
            .map(Tensor::concrete)
            .collect();
        let ids: SmallVec<[ValueId; 4]> = all
            .iter()
            .map(|t| rec.value_of(t, Some(location)))
            .collect();
        let storages: SmallVec<[usize; 4]> = all.iter().map(|t| t.data().storage_id()).collect();
        let origin = rec.origin.clone().unwrap_or_else(|| Origin {
            op: Cow::Owned(op.name().to_string()),
            location,
            phase: Phase::Backward,
            group: 0,
            remat: false,
        });
        let mut outputs = SmallVec::new();
        for g in grads {
            outputs.push(g.as_ref().map(|g| {
                let id = rec.new_value(g, Kind::Computed);
                rec.mark_computed(g, &ids, &storages);
                id
            }));
        }
        rec.entries.push(Entry::Step(Step {
            kind: StepKind::CustomBackward {
                op,
                needs: needs.to_vec(),
            },
            inputs: ids,
            outputs,
            origin: Box::new(origin),
            operand: None,
        }));
    });
}

/// Restores the previous value of a recorder field when dropped.
pub(crate) struct Restore<T: 'static> {
    previous: Option<T>,
    field: fn(&mut Recorder) -> &mut Option<T>,
    armed: bool,
}

impl<T> Drop for Restore<T> {
    fn drop(&mut self) {
        if self.armed {
            let previous = self.previous.take();
            let field = self.field;
            with(|rec| *field(rec) = previous);
        }
    }
}

fn scoped<T: 'static>(value: Option<T>, field: fn(&mut Recorder) -> &mut Option<T>) -> Restore<T> {
    let Some(value) = value.filter(|_| active()) else {
        return Restore {
            previous: None,
            field,
            armed: false,
        };
    };
    let previous = with(|rec| field(rec).replace(value)).flatten();
    Restore {
        previous,
        field,
        armed: true,
    }
}

/// While the returned value lives, an array-level backward that runs belongs to `op`.
pub(crate) fn custom_op_scope(op: &Arc<dyn CustomOp>) -> Restore<Arc<dyn CustomOp>> {
    scoped(active().then(|| Arc::clone(op)), |rec| &mut rec.custom)
}

/// While the returned value lives, recorded steps are the backward of `op` at `location`.
pub(crate) fn backward_origin(op: &Op, location: &'static Location<'static>) -> Restore<Origin> {
    let origin = active().then(|| Origin {
        op: op.name(),
        location,
        phase: Phase::Backward,
        group: with(|rec| {
            rec.groups += 1;
            rec.groups
        })
        .unwrap_or_default(),
        remat: false,
    });
    scoped(origin, |rec| &mut rec.origin)
}

/// While the returned value lives, recorded steps recompute a checkpoint.
pub(crate) fn remat_scope() -> Restore<()> {
    scoped(Some(()), |rec| &mut rec.remat)
}

/// Records that `new` (a fresh handle) holds the value `existing` holds: the output of a
/// checkpoint, whose function's own steps were recorded.
#[track_caller]
pub(crate) fn alias(new: &Tensor, existing: &Tensor) {
    let location = Location::caller();
    with(|rec| {
        let id = rec.value_of(existing.concrete(), Some(location));
        rec.ids.insert(new.id(), id);
        rec.handles.push(Arc::downgrade(&new.repr));
    });
}

/// A user's read of `t`'s data at `location`: a guard when `t` is computed from the inputs.
pub(crate) fn read(t: &Tensor, location: &'static Location<'static>) {
    if !active() {
        return;
    }
    with(|rec| {
        let Some(&id) = rec.ids.get(&t.id()) else {
            return;
        };
        if rec.kinds[id as usize] == Kind::Const {
            return;
        }
        rec.entries.push(Entry::Guard(Guard {
            value: id,
            expected: t.data().copy(),
            location,
        }));
    });
}

/// Marks the running capture as not replayable, with the reason.
pub(crate) fn poison(reason: String) {
    with(|rec| {
        rec.poisoned.get_or_insert(reason);
    });
}

/// Tells optimize mode that the running function has an effect a replay would skip or a
/// state it reads that is not an input (a statistic kept behind a lock, a counter). When it
/// runs during a capture, that input signature runs in direct mode from then on.
///
/// The library calls it where it keeps such state (batch normalization's running
/// statistics); call it in your own functions likewise.
#[track_caller]
pub fn side_effect(what: &str) {
    if active() {
        poison(format!(
            "{what} (at {})",
            ferrograd_array::Site(Location::caller())
        ));
    }
}

/// Ends the recording, naming the returned values. `Err` gives the reason the function
/// cannot be replayed.
pub(crate) fn finish(scope: CaptureScope, outputs: &[Tensor]) -> Result<Trace, String> {
    let result = with(|rec| {
        let (draws, last) = ferrograd_array::draws_on_this_thread();
        if draws != rec.draws + rec.recorded_draws {
            let at = last.map_or(String::new(), |l| {
                format!(" (the latest at {})", ferrograd_array::Site(l))
            });
            return Err(format!(
                "the function draws random numbers outside the tensor ops{at} (a Generator's \
                 own methods); a replay would repeat the first call's draws. Draw with \
                 Tensor::rand_bernoulli, rand_uniform or rand_normal from a generator passed as \
                 an argument"
            ));
        }
        if let Some(reason) = rec.poisoned.take() {
            return Err(reason);
        }
        let mut ids = Vec::with_capacity(outputs.len());
        for t in outputs {
            if t.is_traced() {
                return Err("the function returned a tensor traced by an enclosing grad".into());
            }
            ids.push(rec.value_of(t.concrete(), None));
        }
        if let Some(reason) = rec.poisoned.take() {
            return Err(reason);
        }
        Ok(Trace {
            entries: std::mem::take(&mut rec.entries),
            outputs: ids,
            n_values: rec.kinds.len(),
            metas: std::mem::take(&mut rec.metas),
            state_read: std::mem::take(&mut rec.state_read),
        })
    })
    .unwrap_or_else(|| Err("no capture was active".into()));
    drop(scope);
    result
}
