//! Elementwise fusion: runs of elementwise steps of one shape become one fused program
//! (`ferrograd_array::Program`), evaluated tile by tile in one pass over memory.
//!
//! A segment's steps are read in order. An elementwise step (unary math, scalar operands,
//! clamp, binary math with broadcasting, the fused activation gradients) joins the open group
//! of its output's shape and dtype, or opens one; its other operands (smaller broadcast
//! shapes, values computed by other steps) become the group's inputs. A group is emitted
//! where the first step that is not in it reads one of its values (a matmul reading an
//! activation, a step of another shape, the segment's end), so every step still runs after
//! everything it reads. Steps the group does not read may run before it: the group moves
//! later, never earlier. A member's value is written out only when something outside the
//! group uses it; the others live in registers only.
//!
//! A sum or mean of a member's value over leading dims (the sum of a loss, a bias gradient's
//! column sum) joins the group as its reduction: added up tile by tile as the group runs, in
//! the order direct mode adds (see `ferrograd_array::Reduction`), so the value it sums need
//! not be written out. Its result is ready when the group has run: whatever reads it ends the
//! group first.
//!
//! The fused functions are the kernels' own (see `ferrograd_array::fused`), so a fused plan
//! gives the same bits as direct mode.

use std::collections::HashMap;

use ferrograd_array::{Instr, MapFn, Program, Reduction, Window, ZipFn};
use smallvec::SmallVec;

use super::capture::{Meta, Step, StepKind, ValueId};
use super::plan::Slot;
use crate::op::Op;
use crate::ops::elementwise::{Binary, Compare, ScalarOp, Unary};
use crate::ops::nn::NnOp;
use crate::ops::reduce::Reduction as Reduce;
use crate::{DType, Shape};

/// A fused run of elementwise steps.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub program: Program,
    /// The values the program reads (its `Input(k)` is `inputs[k]`).
    pub inputs: SmallVec<[ValueId; 8]>,
    /// The values it writes, in the program's output order, then its reductions' results.
    pub outputs: SmallVec<[ValueId; 4]>,
    pub shape: Shape,
    pub dtype: DType,
    /// The steps it replaces, in order: run one by one under a debugger or profiler, which
    /// report every op.
    pub members: Vec<Step>,
    /// Outputs it writes straight into a stack's rows (see `passes::programs_into_stacks`).
    pub into: Option<Box<IntoStack>>,
}

/// Where a [`Group`] writes outputs into the rows of a stack that a `cat_into` assembles,
/// instead of arrays the `cat_into` copies: each `(output, window)` of `windows` written
/// there by the program, each `(value, window)` of `copies` (the cat's other pieces, made
/// before the group) copied there first, and the outputs' values views of their windows.
#[derive(Clone, Debug)]
pub(crate) struct IntoStack {
    pub stack: ValueId,
    /// The stack's shape.
    pub shape: Shape,
    pub windows: SmallVec<[(usize, Window); 4]>,
    pub copies: SmallVec<[(ValueId, Window); 2]>,
}

/// How an elementwise primitive is computed by a fused program.
#[derive(Clone, Copy)]
enum Elem {
    Map(MapFn),
    Zip(ZipFn),
    /// A function of the input and a number, the number on the left when `left`.
    Scalar(ZipFn, f64, bool),
    /// A comparison: a bool value, held in the program as a 1-or-0 mask. It never leaves the
    /// group (a group whose mask is read outside it is not fused).
    Compare(ZipFn),
    /// A bool mask turned into the float dtype (`to_dtype`): the mask itself.
    Mask,
    /// Logic on masks: and (their product), or (their maximum), not (`1 - m`, as
    /// `Scalar(Sub, 1, left)`). Bool values, like comparisons.
    Logic(ZipFn),
    Not,
    /// `where(cond, a, b)` on a mask.
    Select,
}

fn unary(u: Unary) -> MapFn {
    match u {
        Unary::Neg => MapFn::Neg,
        Unary::Abs => MapFn::Abs,
        Unary::Exp => MapFn::Exp,
        Unary::Log => MapFn::Log,
        Unary::Log1p => MapFn::Log1p,
        Unary::Expm1 => MapFn::Expm1,
        Unary::Sqrt => MapFn::Sqrt,
        Unary::Rsqrt => MapFn::Rsqrt,
        Unary::Sin => MapFn::Sin,
        Unary::Cos => MapFn::Cos,
        Unary::Tan => MapFn::Tan,
        Unary::Sinh => MapFn::Sinh,
        Unary::Cosh => MapFn::Cosh,
        Unary::Asin => MapFn::Asin,
        Unary::Acos => MapFn::Acos,
        Unary::Atan => MapFn::Atan,
        Unary::Erf => MapFn::Erf,
        Unary::Erfinv => MapFn::Erfinv,
        Unary::Gelu => MapFn::Gelu,
        Unary::Lgamma => MapFn::Lgamma,
        Unary::Digamma => MapFn::Digamma,
        Unary::Polygamma(n) => MapFn::Polygamma(n),
        Unary::Trunc => MapFn::Trunc,
        Unary::Tanh => MapFn::Tanh,
        Unary::Sigmoid => MapFn::Sigmoid,
        Unary::Relu => MapFn::Relu,
        Unary::Reciprocal => MapFn::Reciprocal,
        Unary::Square => MapFn::Square,
        Unary::Sign => MapFn::Sign,
        Unary::Floor => MapFn::Floor,
        Unary::Ceil => MapFn::Ceil,
        Unary::Round => MapFn::Round,
    }
}

fn binary(b: Binary) -> ZipFn {
    match b {
        Binary::Add => ZipFn::Add,
        Binary::Sub => ZipFn::Sub,
        Binary::Mul => ZipFn::Mul,
        Binary::Div => ZipFn::Div,
        Binary::Maximum => ZipFn::Maximum,
        Binary::Minimum => ZipFn::Minimum,
        Binary::Pow => ZipFn::Pow,
        Binary::Atan2 => ZipFn::Atan2,
        Binary::Fmod => ZipFn::Fmod,
        Binary::Remainder => ZipFn::Remainder,
    }
}

/// The fused form of `op`, when it is elementwise.
fn elementwise(op: &Op) -> Option<Elem> {
    Some(match *op {
        Op::Unary(u) => Elem::Map(unary(u)),
        Op::Binary(b) => Elem::Zip(binary(b)),
        Op::Clamp { min, max } => Elem::Map(MapFn::Clamp(min, max)),
        Op::Scalar(s, v) => match s {
            ScalarOp::Add => Elem::Scalar(ZipFn::Add, v, false),
            ScalarOp::Mul => Elem::Scalar(ZipFn::Mul, v, false),
            ScalarOp::Div => Elem::Scalar(ZipFn::Div, v, false),
            ScalarOp::Rsub => Elem::Scalar(ZipFn::Sub, v, true),
            ScalarOp::Rdiv => Elem::Scalar(ZipFn::Div, v, true),
            ScalarOp::Rpow => Elem::Scalar(ZipFn::Pow, v, true),
            ScalarOp::Pow => Elem::Map(MapFn::pow_scalar(v)),
        },
        Op::Nn(NnOp::TanhBackward) => Elem::Zip(ZipFn::TanhBackward),
        Op::Nn(NnOp::SigmoidBackward) => Elem::Zip(ZipFn::SigmoidBackward),
        Op::Nn(NnOp::GeluBackward) => Elem::Zip(ZipFn::GeluBackward),
        Op::Compare(c) => Elem::Compare(match c {
            Compare::Eq => ZipFn::Eq,
            Compare::Ne => ZipFn::Ne,
            Compare::Lt => ZipFn::Lt,
            Compare::Le => ZipFn::Le,
            Compare::Gt => ZipFn::Gt,
            Compare::Ge => ZipFn::Ge,
            Compare::And => return Some(Elem::Logic(ZipFn::Mul)),
            Compare::Or => return Some(Elem::Logic(ZipFn::Maximum)),
            Compare::Not => return Some(Elem::Not),
        }),
        Op::Cast(d) if d.is_float() => Elem::Mask,
        Op::Where => Elem::Select,
        _ => return None,
    })
}

/// The step's fused form, output and group key (its shape and the float dtype the group
/// computes in), when it can join a group: an elementwise op on float values, a comparison
/// of float values, or a mask's use (`Mask`, `Select`, whose bool operand must then come
/// from the same group: see `fuse_segment`).
fn fusable(step: &Step, metas: &[Meta]) -> Option<(Elem, ValueId, Shape, DType)> {
    let StepKind::Op(op) = &step.kind else {
        return None;
    };
    let elem = elementwise(op)?;
    let out = step.outputs.first().copied().flatten()?;
    let meta = &metas[out as usize];
    let dtype = |i: usize| metas[step.inputs[i] as usize].dtype;
    let float = |d: DType| matches!(d, DType::F32 | DType::F64);
    let (arity, key) = match elem {
        Elem::Map(_) | Elem::Scalar(..) => (1, meta.dtype),
        Elem::Zip(_) => (2, meta.dtype),
        Elem::Compare(_) => (2, dtype(0)),
        Elem::Mask => (1, meta.dtype),
        Elem::Select => (3, meta.dtype),
        // bool in, bool out: the group's dtype comes from the group holding the operands
        Elem::Logic(_) => (2, DType::Bool),
        Elem::Not => (1, DType::Bool),
    };
    if step.inputs.len() != arity || !(float(key) || key == DType::Bool) {
        return None;
    }
    let fits = match elem {
        Elem::Compare(_) => dtype(1) == key,
        Elem::Mask => dtype(0) == DType::Bool,
        Elem::Select => dtype(0) == DType::Bool && dtype(1) == key && dtype(2) == key,
        Elem::Logic(_) | Elem::Not => (0..arity).all(|i| dtype(i) == DType::Bool),
        _ => (0..arity).all(|i| dtype(i) == key),
    };
    fits.then(|| (elem, out, meta.shape.clone(), key))
}

/// The largest group a reduction joins. Below it neither the group's program nor the sum in
/// direct mode splits across threads (the array layer splits a transcendental program from
/// 2¹⁸ elements, a sum from 2¹⁹), so the fused sum adds in direct mode's order and gives
/// its bits; above it the sum is a small part of the pass anyway.
const REDUCE_MAX: usize = 1 << 18;

/// A sum or mean over the leading dims (all of them, or a bias gradient's batch dim) of a
/// value: the reduction a group can end in. Returns its input, output and whether it is the
/// mean.
fn reduction(step: &Step, metas: &[Meta]) -> Option<(ValueId, ValueId, bool)> {
    let StepKind::Op(Op::Reduce(kind @ (Reduce::Sum | Reduce::Mean), dims, _)) = &step.kind else {
        return None;
    };
    let (&[input], Some(Some(out))) = (step.inputs.as_slice(), step.outputs.first()) else {
        return None;
    };
    let n: usize = metas[input as usize].shape.iter().product();
    let leading = !dims.is_empty() && dims.iter().enumerate().all(|(i, &d)| i == d);
    let same = metas[*out as usize].dtype == metas[input as usize].dtype;
    (leading && same && n > 0 && n < REDUCE_MAX).then_some((input, *out, *kind == Reduce::Mean))
}

/// A group being collected.
struct Open {
    shape: Shape,
    dtype: DType,
    members: Vec<Step>,
    /// How many slots were emitted before it opened.
    opened_at: usize,
    /// Bytes of the values emitted since it opened that its members read: the group runs
    /// after its last member, so these stay in memory until then.
    held: usize,
}

/// The most bytes a group may hold alive past their producers (see [`Open::held`]). Without
/// a bound, a sum accumulated across the time steps of a recurrent network (each step's
/// weight gradient added to the last) becomes one group that runs at the end, holding every
/// step's contribution at once: 33 × 1 MB in the suite's LSTM, which then ran 4x slower.
const HOLD_MAX: usize = 256 * 1024;

fn bytes(meta: &Meta) -> usize {
    meta.shape.iter().product::<usize>() * meta.dtype.size_in_bytes()
}

/// A step that reads values of open groups, waiting for those groups (indices into
/// [`Fuser::open`]) to run.
struct Waiting {
    step: Step,
    groups: SmallVec<[usize; 2]>,
}

/// One segment's fusion in progress.
struct Fuser<'a> {
    metas: &'a [Meta],
    uses: &'a [u32],
    /// Values below this are the plan's inputs.
    n_inputs: usize,
    open: Vec<Option<Open>>,
    /// The open group defining each value.
    owner: HashMap<ValueId, usize>,
    /// The slots emitted so far, in order.
    out: Vec<Slot>,
    /// Steps that read values of open groups and wait for them to run (in their order), so
    /// that a group can take in the elementwise steps that come after such a reader: a
    /// training step's forward chain, the sum of its loss, and the backward chain, which the
    /// sum does not feed, are one group instead of two that pass every value the backward
    /// reads through memory. Only the library's primitives wait: a user's op, which may have
    /// effects, its backward and an accumulating product keep their place, so effects run in
    /// the order the function made them.
    waiting: Vec<Option<Waiting>>,
    /// The waiting step defining each value.
    pending: HashMap<ValueId, usize>,
    /// The open group whose reduction defines each value: it runs before the value is read.
    reduced: HashMap<ValueId, usize>,
}

impl Fuser<'_> {
    /// Emits open group `g` (if still open), then the steps that waited only for groups that
    /// have now run.
    fn close(&mut self, g: usize) {
        let Some(group) = self.open[g].take() else {
            return;
        };
        for m in &group.members {
            for o in m.outputs.iter().flatten() {
                self.owner.remove(o);
                self.reduced.remove(o);
            }
        }
        self.out
            .extend(build(group, self.metas, self.uses, self.n_inputs));
        let mut left = false;
        for w in self.waiting.iter_mut() {
            let ready = w
                .as_ref()
                .is_some_and(|w| w.groups.iter().all(|&g| self.open[g].is_none()));
            if ready {
                let Waiting { step, .. } = w.take().expect("checked");
                for o in step.outputs.iter().flatten() {
                    self.pending.remove(o);
                }
                self.out.push(Slot::step(step));
            }
            left |= w.is_some();
        }
        // (emptied once all have run, so each close scans only the steps still waiting
        // since then, not every step that ever waited in the segment)
        if !left {
            self.waiting.clear();
        }
    }

    /// Before `v` is read: when a waiting step defines it, the groups that step waits for
    /// run now, and it after them.
    fn flush(&mut self, v: ValueId) {
        if let Some(&g) = self.reduced.get(&v) {
            self.close(g);
        }
        if let Some(&w) = self.pending.get(&v) {
            let groups = self.waiting[w]
                .as_ref()
                .expect("pending steps wait")
                .groups
                .clone();
            for g in groups {
                self.close(g);
            }
        }
    }

    /// A step that no group takes as an elementwise member: the reduction a group ends in
    /// (the sum or mean of one of its values over leading dims, added up as the group runs),
    /// else emitted now when it reads no open group, else it waits for the groups it reads
    /// (a primitive), or they run first (anything else).
    fn unfused(&mut self, step: Step) {
        if let Some((input, out, _)) = reduction(&step, self.metas) {
            if let Some(&g) = self.owner.get(&input) {
                self.reduced.insert(out, g);
                self.open[g]
                    .as_mut()
                    .expect("owners are open")
                    .members
                    .push(step);
                return;
            }
        }
        let mut groups: SmallVec<[usize; 2]> = SmallVec::new();
        for i in &step.inputs {
            if let Some(&g) = self.owner.get(i) {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
        }
        if groups.is_empty() {
            self.out.push(Slot::step(step));
        } else if matches!(&step.kind, StepKind::Op(op) if !matches!(op, Op::Custom(_))) {
            for o in step.outputs.iter().flatten() {
                self.pending.insert(*o, self.waiting.len());
            }
            self.waiting.push(Some(Waiting { step, groups }));
        } else {
            for g in groups {
                self.close(g);
            }
            self.out.push(Slot::step(step));
        }
    }
}

/// Fuses one segment's slots (dead ones already removed). `uses[v]` counts every use of
/// value `v` in the whole plan (steps, guards, returned values, state writes). Returns the
/// slots in their new order, groups among them.
pub(super) fn fuse_segment(
    slots: Vec<Slot>,
    metas: &[Meta],
    uses: &[u32],
    n_inputs: usize,
) -> Vec<Slot> {
    let mut f = Fuser {
        metas,
        uses,
        n_inputs,
        open: Vec::new(),
        owner: HashMap::new(),
        out: Vec::with_capacity(slots.len()),
        waiting: Vec::new(),
        pending: HashMap::new(),
        reduced: HashMap::new(),
    };
    // where each value defined in this segment was emitted
    let mut emitted: HashMap<ValueId, usize> = HashMap::new();
    let mut scanned = 0;
    for slot in slots {
        // note where the slots emitted since the last slot define their values
        for (at, slot) in f.out.iter().enumerate().skip(scanned) {
            let defined: SmallVec<[ValueId; 4]> = match slot {
                Slot::Step { step, .. } => step.outputs.iter().flatten().copied().collect(),
                Slot::Fused { group, .. } => group.outputs.clone(),
                Slot::Const { id, .. } => SmallVec::from_slice(&[*id]),
                Slot::StateRead { read, .. } => SmallVec::from_slice(&[read.id]),
                Slot::StateWrite { .. } => SmallVec::new(),
            };
            for v in defined {
                emitted.insert(v, at);
            }
        }
        scanned = f.out.len();
        let step = match slot {
            Slot::Step { step, .. } => step,
            other => {
                if let Slot::StateWrite { id, .. } = &other {
                    f.flush(*id);
                    if let Some(&g) = f.owner.get(id) {
                        f.close(g);
                    }
                }
                f.out.push(other);
                continue;
            }
        };
        for &i in &step.inputs {
            f.flush(i);
        }
        // a mask's use joins only the group that holds the mask (logic on masks takes that
        // group's dtype)
        let in_group = |i: ValueId, shape: &Shape, dtype: Option<DType>| {
            f.owner.get(&i).and_then(|&g| {
                f.open[g]
                    .as_ref()
                    .filter(|o| o.shape == *shape && dtype.is_none_or(|d| d == o.dtype))
                    .map(|o| o.dtype)
            })
        };
        let fused = fusable(&step, metas).and_then(|(elem, id, shape, dtype)| match elem {
            Elem::Mask | Elem::Select => {
                in_group(step.inputs[0], &shape, Some(dtype)).map(|d| (elem, id, shape, d))
            }
            Elem::Logic(_) | Elem::Not => {
                let d = in_group(step.inputs[0], &shape, None)?;
                step.inputs
                    .iter()
                    .all(|&i| in_group(i, &shape, Some(d)).is_some())
                    .then_some((elem, id, shape, d))
            }
            _ => Some((elem, id, shape, dtype)),
        });
        let Some((_, id, shape, dtype)) = fused else {
            f.unfused(step);
            continue;
        };
        let meta = Meta::made(shape, dtype);
        // groups of another shape that this step reads run first
        for &i in &step.inputs {
            if let Some(&g) = f.owner.get(&i) {
                let o = f.open[g].as_ref().expect("owners are open");
                if o.shape != meta.shape || o.dtype != meta.dtype {
                    f.close(g);
                }
            }
        }
        let mut g = f.open.iter().position(|o| {
            o.as_ref()
                .is_some_and(|o| o.shape == meta.shape && o.dtype == meta.dtype)
        });
        if let Some(k) = g {
            // what joining would hold alive: operands emitted since the group opened
            let o = f.open[k].as_ref().expect("open");
            let late: usize = step
                .inputs
                .iter()
                .filter(|i| f.owner.get(i) != Some(&k))
                .filter(|i| emitted.get(i).is_some_and(|&at| at >= o.opened_at))
                .map(|&i| bytes(&metas[i as usize]))
                .sum();
            if o.held + late > HOLD_MAX {
                f.close(k);
                g = None;
            } else {
                f.open[k].as_mut().expect("open").held += late;
            }
        }
        let g = match g {
            Some(g) => g,
            None => {
                f.open.push(Some(Open {
                    shape: meta.shape.clone(),
                    dtype: meta.dtype,
                    members: Vec::new(),
                    opened_at: f.out.len(),
                    held: 0,
                }));
                f.open.len() - 1
            }
        };
        f.owner.insert(id, g);
        f.open[g].as_mut().expect("open").members.push(step);
    }
    for g in 0..f.open.len() {
        f.close(g);
    }
    debug_assert!(
        f.waiting.iter().all(Option::is_none),
        "every waiting step ran"
    );
    f.out
}

/// The steps of a group that cannot be fused, as they were.
fn unfused(members: Vec<Step>) -> Vec<Slot> {
    members.into_iter().map(Slot::step).collect()
}

/// The fused form of a collected group (a lone step stays a step, and so do the steps of a
/// group whose comparison is read outside it: a mask has no dtype to be written in).
/// Programs of at most this many elements (one vector: the evaluator's vector form) have
/// their transcendental maps hoisted (see [`hoist`]).
const HOIST_MAX_ELEMENTS: usize = 16;

/// Moves each transcendental map (`cos`, `exp`, ...) to just after the value it reads,
/// renumbering the values. In a short program every step waits on the one before it, and a
/// backward pass's `cos(x)` of a forward value computed at the end is on that chain; computed
/// beside the forward steps that follow `x`, the processor overlaps it with them (the 100-op
/// chain's value and gradient on 10 elements, where each `sin`'s derivative is such a map:
/// about 7% faster). Each value keeps its operands and function, so the results are the same;
/// longer programs keep their order, as a value computed early holds a tile of memory until
/// its last use.
fn hoist(instrs: &mut Vec<Instr>, outputs: &mut [usize], reductions: &mut [Reduction]) {
    let n = instrs.len();
    // hoisted[v]: the transcendental maps of value v, in order
    let mut hoisted: Vec<SmallVec<[usize; 2]>> = vec![SmallVec::new(); n];
    let mut moves = vec![false; n];
    for (k, instr) in instrs.iter().enumerate() {
        if let Instr::Map(f, a) = *instr {
            if f.is_transcendental() {
                hoisted[a].push(k);
                moves[k] = true;
            }
        }
    }
    let mut order = Vec::with_capacity(n);
    // (a value's maps latest first: the earliest, a forward step, then lies next to the step
    // that reads it, and a backward `cos(x)` lies just before the forward `sin(x)`, where the
    // evaluator computes the two from one reduction)
    fn emit(k: usize, order: &mut Vec<usize>, hoisted: &[SmallVec<[usize; 2]>]) {
        order.push(k);
        for &m in hoisted[k].iter().rev() {
            emit(m, order, hoisted);
        }
    }
    for (k, _) in moves.iter().enumerate().filter(|(_, &moved)| !moved) {
        emit(k, &mut order, &hoisted);
    }
    debug_assert_eq!(order.len(), n, "every instruction once");
    let mut new_at = vec![0; n];
    for (new, &old) in order.iter().enumerate() {
        new_at[old] = new;
    }
    let renumber = |instr: Instr| match instr {
        Instr::Map(f, a) => Instr::Map(f, new_at[a]),
        Instr::Zip(f, a, b) => Instr::Zip(f, new_at[a], new_at[b]),
        Instr::Select(c, a, b) => Instr::Select(new_at[c], new_at[a], new_at[b]),
        other => other,
    };
    *instrs = order.iter().map(|&old| renumber(instrs[old])).collect();
    for o in outputs {
        *o = new_at[*o];
    }
    for r in reductions {
        r.value = new_at[r.value];
    }
}

fn build(open: Open, metas: &[Meta], uses: &[u32], n_inputs: usize) -> Vec<Slot> {
    let Open {
        shape,
        dtype,
        mut members,
        ..
    } = open;
    // One op stays a step, unless it reads a plan input of its shape: as a program of one
    // instruction it can write over that input when the caller donates it (`0.9·v` of a
    // momentum step, before the gradient's product is added into it).
    let over_input = |m: &Step| {
        reduction(m, metas).is_none()
            && (m.inputs.iter())
                .any(|&v| (v as usize) < n_inputs && metas[v as usize].shape[..] == shape[..])
    };
    if members.len() == 1 && !over_input(&members[0]) {
        return vec![Slot::step(members.pop().expect("one member"))];
    }
    let mut instrs: Vec<Instr> = Vec::new();
    let mut inputs: SmallVec<[ValueId; 8]> = SmallVec::new();
    // the instruction that defines each value inside the program
    let mut at: HashMap<ValueId, usize> = HashMap::new();
    let mut inner_uses: HashMap<ValueId, u32> = HashMap::new();
    for m in &members {
        for &i in &m.inputs {
            *inner_uses.entry(i).or_default() += 1;
        }
    }
    let mut operand = |v: ValueId, instrs: &mut Vec<Instr>, at: &mut HashMap<ValueId, usize>| {
        *at.entry(v).or_insert_with(|| {
            inputs.push(v);
            instrs.push(Instr::Input(inputs.len() - 1));
            instrs.len() - 1
        })
    };
    // one register per distinct number (a chain scaling by the same factor at every step
    // reads one)
    let mut numbers: HashMap<u64, usize> = HashMap::new();
    let mut constant = |v: f64, instrs: &mut Vec<Instr>| {
        *numbers.entry(v.to_bits()).or_insert_with(|| {
            instrs.push(Instr::Const(v));
            instrs.len() - 1
        })
    };
    let mut outputs: SmallVec<[ValueId; 4]> = SmallVec::new();
    let mut program_outputs = Vec::new();
    let (mut reductions, mut reduced) = (Vec::new(), SmallVec::<[ValueId; 2]>::new());
    for m in &members {
        if let Some((input, out, mean)) = reduction(m, metas) {
            reductions.push(Reduction {
                value: at[&input],
                mean,
                shape: metas[out as usize].shape.iter().copied().collect(),
            });
            reduced.push(out);
            continue;
        }
        let (elem, id, ..) = fusable(m, metas).expect("members are fusable");
        let outside = uses[id as usize] > inner_uses.get(&id).copied().unwrap_or(0);
        let boolean = matches!(elem, Elem::Compare(_) | Elem::Logic(_) | Elem::Not);
        if outside && boolean {
            return unfused(members);
        }
        let a = operand(m.inputs[0], &mut instrs, &mut at);
        let instr = match elem {
            Elem::Map(f) => Instr::Map(f, a),
            Elem::Mask => Instr::Map(MapFn::Identity, a),
            Elem::Zip(f) | Elem::Compare(f) | Elem::Logic(f) => {
                Instr::Zip(f, a, operand(m.inputs[1], &mut instrs, &mut at))
            }
            Elem::Not => Instr::Zip(ZipFn::Sub, constant(1.0, &mut instrs), a),
            Elem::Select => {
                let b = operand(m.inputs[1], &mut instrs, &mut at);
                Instr::Select(a, b, operand(m.inputs[2], &mut instrs, &mut at))
            }
            Elem::Scalar(f, v, left) => {
                let c = constant(v, &mut instrs);
                if left {
                    Instr::Zip(f, c, a)
                } else {
                    Instr::Zip(f, a, c)
                }
            }
        };
        instrs.push(instr);
        at.insert(id, instrs.len() - 1);
        if outside {
            outputs.push(id);
            program_outputs.push(instrs.len() - 1);
        }
    }
    outputs.extend(reduced);
    debug_assert!(!outputs.is_empty(), "dead steps are removed before fusion");
    if shape.iter().product::<usize>() <= HOIST_MAX_ELEMENTS {
        hoist(&mut instrs, &mut program_outputs, &mut reductions);
    }
    vec![Slot::Fused {
        group: Box::new(Group {
            program: Program::with_reductions(instrs, program_outputs, reductions),
            inputs,
            outputs,
            shape,
            dtype,
            members,
            into: None,
        }),
        keep: true,
        drops: SmallVec::new(),
    }]
}

#[cfg(test)]
mod tests {
    use ferrograd_array::{Array, DType, Generator, Instr, MapFn, Program, Reduction, ZipFn};

    use super::hoist;

    /// Hoisting moves each transcendental map right after the value it reads (a map of a
    /// map right after that), keeps every other instruction in order, and the program
    /// computes the same outputs and reductions bit for bit.
    #[test]
    fn hoisted_maps_follow_their_operand_and_compute_the_same() {
        let instrs = vec![
            Instr::Input(0),
            Instr::Input(1),
            Instr::Map(MapFn::Sin, 0),      // 2
            Instr::Zip(ZipFn::Mul, 2, 1),   // 3
            Instr::Map(MapFn::Tanh, 3),     // 4
            Instr::Const(0.5),              // 5
            Instr::Zip(ZipFn::Add, 4, 5),   // 6
            Instr::Map(MapFn::Cos, 0),      // 7: of an input
            Instr::Map(MapFn::Exp, 7),      // 8: of a hoisted map
            Instr::Zip(ZipFn::Mul, 6, 8),   // 9
            Instr::Map(MapFn::Neg, 3),      // 10: cheap, stays
            Instr::Map(MapFn::Sigmoid, 3),  // 11
            Instr::Zip(ZipFn::Sub, 9, 11),  // 12
            Instr::Zip(ZipFn::Add, 12, 10), // 13
        ];
        let outputs = vec![13, 8, 6];
        let reductions = vec![Reduction {
            value: 11,
            mean: false,
            shape: Default::default(),
        }];
        let (mut h_instrs, mut h_outputs, mut h_reductions) =
            (instrs.clone(), outputs.clone(), reductions.clone());
        hoist(&mut h_instrs, &mut h_outputs, &mut h_reductions);
        let name = |i: &Instr| format!("{i:?}").split('(').next().unwrap_or("").to_string();
        let functions = |is: &[Instr]| {
            let mut f: Vec<String> = is
                .iter()
                .map(|i| match i {
                    Instr::Map(f, _) => format!("{f:?}"),
                    Instr::Zip(f, ..) => format!("{f:?}"),
                    other => name(other),
                })
                .collect();
            f.sort();
            f
        };
        assert_eq!(
            functions(&h_instrs),
            functions(&instrs),
            "the same instructions"
        );
        for (k, i) in h_instrs.iter().enumerate() {
            match *i {
                Instr::Map(f, a) if f.is_transcendental() => {
                    // right after its operand, or after a sibling map of the same operand
                    let between = &h_instrs[a + 1..k];
                    assert!(
                        between.iter().all(|b| matches!(b, Instr::Map(g, x)
                            if g.is_transcendental() && *x >= a)),
                        "{f:?} at {k} does not follow its operand {a}: {h_instrs:?}"
                    );
                }
                Instr::Map(_, a) => assert!(a < k),
                Instr::Zip(_, a, b) => assert!(a < k && b < k),
                _ => {}
            }
        }
        let mut g = Generator::new(3);
        let x = g.normal(&[10], 0.0, 1.0, DType::F32);
        let y = g.normal(&[10], 0.0, 1.0, DType::F32);
        let run = |p: Program| {
            let mut outs = vec![None; 4];
            p.run(&[&x, &y], &[10], DType::F32, &mut outs);
            outs.into_iter()
                .map(|o| o.expect("written"))
                .collect::<Vec<Array>>()
        };
        let want = run(Program::with_reductions(instrs, outputs, reductions));
        let got = run(Program::with_reductions(h_instrs, h_outputs, h_reductions));
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.bit_eq(w), "output {k}: {g} vs {w}");
        }
    }
}
