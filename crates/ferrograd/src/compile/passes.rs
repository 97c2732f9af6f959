//! Rewrites of a plan's live steps before fusion: constant folding, algebraic
//! simplification and common-subexpression elimination, in one walk in program order.
//!
//! Every rewrite keeps the plan's results identical, bit for bit, to direct mode's:
//! - **Constant folding**: a step whose inputs are all constants runs once, when the plan is
//!   built, with the same kernel, and becomes a constant (up to [`FOLD_MAX`] elements).
//! - **Simplification** replaces a step by a value that already holds its result (`x * 1`,
//!   `x / 1`, `x + -0.0`, `x ^ 1`, `-(-x)`, a reshape or expand to the same shape, a
//!   permutation that undoes the one before it, `x * ones`, `x - zeros`), or by a shorter
//!   step (a permutation of a permutation, a reshape of a reshape). `x + 0` is left alone:
//!   `-0.0 + 0.0` is `+0.0`, so it is not the identity bit for bit; nor is `sum(expand(x))`
//!   the same as `x * n` in floating point. Bit for bit includes the layout: an
//!   elementwise op writes a new row-major array, and a matrix product's kernel follows its
//!   operands' strides, so a value standing in for `x * 1` must be row-major too; a view
//!   (a transpose, a slice) stands in as a row-major copy (`contiguous`), and a reshape of a
//!   reshape becomes one only where the first was a view of a row-major value.
//! - **CSE**: a step that applies the same op (`Op: Eq + Hash`) to the same values as an
//!   earlier one reuses that step's result. User ops (`Op::Custom`) and random draws are
//!   never merged or folded: they may have effects.
//!
//! A replaced value is an *alias* of the value that replaces it; the plan keeps the alias
//! table so that its guards and returned values, which belong to the recording, read the
//! right value.

use std::collections::{HashMap, HashSet};

use smallvec::SmallVec;

use super::capture::{Meta, StepKind, ValueId};
use super::plan::{End, Segment, Slot};
use crate::op::Op;
use crate::ops::elementwise::{Binary, ScalarOp, Unary};
use crate::ops::reduce::Reduction;
use crate::ops::shape::ShapeOp;
use crate::Array;
use ferrograd_array::Window;

/// Constants up to this many elements are folded (a larger one would be held by the plan
/// for as long as it lives).
pub(super) const FOLD_MAX: usize = 1 << 16;

type Inputs = SmallVec<[ValueId; 4]>;

/// What the walk knows about values so far.
struct Known<'a> {
    metas: &'a [Meta],
    /// The value that replaces each value (itself when none does).
    alias: Vec<ValueId>,
    consts: HashMap<ValueId, Array>,
    /// The op and inputs that defined each computed value.
    defs: HashMap<ValueId, (Op, Inputs)>,
}

/// A step's simpler form.
enum Simpler {
    /// An existing value holds the result.
    Alias(ValueId),
    /// A shorter step computes it.
    Step(Op, Inputs),
}

/// Whether an op may be folded or merged: no user ops (they may have effects).
fn pure(op: &Op) -> bool {
    !matches!(op, Op::Custom(_) | Op::Leaf)
}

/// Rewrites the live steps of `root` and below; returns the alias table (by value id).
pub(super) fn rewrite(root: &mut Segment, metas: &[Meta], n_values: usize) -> Vec<ValueId> {
    let mut known = Known {
        metas,
        alias: (0..n_values as ValueId).collect(),
        consts: HashMap::new(),
        defs: HashMap::new(),
    };
    walk(root, &mut HashMap::new(), &mut known);
    known.alias
}

fn walk(seg: &mut Segment, seen: &mut HashMap<(Op, Inputs, bool), ValueId>, known: &mut Known<'_>) {
    let mut out = Vec::with_capacity(seg.exec.len());
    for slot in std::mem::take(&mut seg.exec) {
        match slot {
            Slot::Const { id, array, live } => {
                known.consts.insert(id, array.clone());
                out.push(Slot::Const { id, array, live });
            }
            Slot::StateWrite { id, cell } => out.push(Slot::StateWrite {
                id: known.alias[id as usize],
                cell,
            }),
            Slot::Step { mut step, .. } => {
                for i in step.inputs.iter_mut() {
                    *i = known.alias[*i as usize];
                }
                let StepKind::Op(op) = &step.kind else {
                    out.push(Slot::step(step));
                    continue;
                };
                let Some(id) = step.outputs[0].filter(|_| pure(op)) else {
                    out.push(Slot::step(step));
                    continue;
                };
                // constant folding: the same kernel, run once now
                let small = known.metas[id as usize].shape.iter().product::<usize>() <= FOLD_MAX;
                if small && step.inputs.iter().all(|i| known.consts.contains_key(i)) {
                    let array = {
                        let inputs: SmallVec<[&Array; 4]> =
                            step.inputs.iter().map(|i| &known.consts[i]).collect();
                        op.forward(&inputs)
                    };
                    known.consts.insert(id, array.clone());
                    out.push(Slot::Const {
                        id,
                        array,
                        live: true,
                    });
                    continue;
                }
                let (op, inputs) = match simpler(op, &step.inputs, id, known) {
                    Some(Simpler::Alias(v)) => {
                        known.alias[id as usize] = v;
                        continue;
                    }
                    Some(Simpler::Step(op, inputs)) => (op, inputs),
                    None => (op.clone(), step.inputs.clone()),
                };
                // common subexpressions; a checkpoint's recomputation is not merged into the
                // forward (what the checkpoint keeps, it does not recompute at all)
                let key = (op, inputs, step.origin.remat);
                if let Some(&v) = seen.get(&key) {
                    known.alias[id as usize] = v;
                    continue;
                }
                seen.insert(key.clone(), id);
                let (op, inputs, _) = key;
                if step.inputs != inputs || !matches!(&step.kind, StepKind::Op(o) if *o == op) {
                    step.operand = None; // only scalar ops carry one, and they are not rewritten
                    step.kind = StepKind::Op(op.clone());
                    step.inputs = inputs.clone();
                }
                known.defs.insert(id, (op, inputs));
                out.push(Slot::step(step));
            }
            other => out.push(other),
        }
    }
    seg.exec = out;
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            // what one branch computes is not computed on another
            walk(b, &mut seen.clone(), known);
        }
    }
}

/// Whether every element of a constant is `value`, bit for bit.
fn all_bits(a: &Array, value: f64) -> bool {
    a.dtype().is_float() && {
        let v = a.to_f64_vec();
        match a.dtype() {
            crate::DType::F32 => v
                .iter()
                .all(|&x| (x as f32).to_bits() == (value as f32).to_bits()),
            _ => v.iter().all(|&x| x.to_bits() == value.to_bits()),
        }
    }
}

/// Whether `v` is laid out row-major on every call, as recorded (a folded constant too: the
/// fold runs the kernel that made the recorded value).
fn row_major(v: ValueId, known: &Known<'_>) -> bool {
    known.metas[v as usize].row_major
}

/// The simpler form of `op` on `inputs` (whose result is `out`), if there is one.
fn simpler(op: &Op, inputs: &[ValueId], out: ValueId, known: &Known<'_>) -> Option<Simpler> {
    let meta = |v: ValueId| &known.metas[v as usize];
    let x = *inputs.first()?;
    let def = |v: ValueId| known.defs.get(&v);
    let same_as = |v: ValueId| meta(v).shape == meta(out).shape && meta(v).dtype == meta(out).dtype;
    // An elementwise op writes a new row-major array, so the value standing in for its
    // result must be laid out so too: what reads it may round by its layout (a matrix
    // product's kernel follows its operands' strides; `x @ (x * 1)` with `x` a transposed
    // view differed from direct mode in the last bit). A view stands in as a row-major copy.
    let stand_in = |v: ValueId| {
        if row_major(v, known) {
            Simpler::Alias(v)
        } else {
            Simpler::Step(Op::Shape(ShapeOp::Contiguous), SmallVec::from_slice(&[v]))
        }
    };
    match op {
        Op::Scalar(ScalarOp::Mul | ScalarOp::Div | ScalarOp::Pow, s) if *s == 1.0 => {
            Some(stand_in(x))
        }
        Op::Scalar(ScalarOp::Add, s) if s.to_bits() == (-0.0f64).to_bits() => Some(stand_in(x)),
        Op::Unary(Unary::Neg) => match def(x) {
            Some((Op::Unary(Unary::Neg), i)) => Some(stand_in(i[0])),
            _ => None,
        },
        Op::Binary(b) => {
            let y = inputs[1];
            // a constant, or a constant expanded or reshaped (a gradient seed of ones
            // expanded to a parameter's shape is too large to fold), or a row-major copy of
            // one (standing in for a product by ones)
            let is = |v: ValueId, value: f64| {
                let v = match def(v) {
                    Some((Op::Shape(ShapeOp::Contiguous), i)) => i[0],
                    _ => v,
                };
                let source = match def(v) {
                    Some((Op::Shape(ShapeOp::Expand(_) | ShapeOp::Reshape(_)), i)) => i[0],
                    _ => v,
                };
                known
                    .consts
                    .get(&source)
                    .is_some_and(|c| all_bits(c, value))
            };
            let keep = |v: ValueId| same_as(v).then(|| stand_in(v));
            match b {
                Binary::Mul if is(y, 1.0) => keep(x),
                Binary::Mul if is(x, 1.0) => keep(y),
                Binary::Div if is(y, 1.0) => keep(x),
                Binary::Sub if is(y, 0.0) => keep(x),
                Binary::Add if is(y, -0.0) => keep(x),
                Binary::Add if is(x, -0.0) => keep(y),
                _ => None,
            }
        }
        Op::Shape(ShapeOp::Permute(p)) => {
            let (source, order): (ValueId, Vec<usize>) = match def(x) {
                Some((Op::Shape(ShapeOp::Permute(q)), i)) => {
                    (i[0], p.iter().map(|&d| q[d]).collect())
                }
                _ => (x, p.clone()),
            };
            if order.iter().enumerate().all(|(i, &d)| i == d) {
                Some(Simpler::Alias(source))
            } else if source != x {
                Some(Simpler::Step(
                    Op::Shape(ShapeOp::Permute(order)),
                    SmallVec::from_slice(&[source]),
                ))
            } else {
                None
            }
        }
        Op::Shape(ShapeOp::Reshape(s)) => {
            // a reshape copies what it cannot view, so a chain of two lays out its result
            // as one reshape does only when the first is a view of a row-major value
            let source = match def(x) {
                Some((Op::Shape(ShapeOp::Reshape(_)), i)) if row_major(i[0], known) => i[0],
                _ => x,
            };
            if meta(source).shape == *s {
                Some(Simpler::Alias(source))
            } else if source != x {
                Some(Simpler::Step(op.clone(), SmallVec::from_slice(&[source])))
            } else {
                None
            }
        }
        Op::Shape(ShapeOp::Expand(s)) if meta(x).shape == *s => Some(Simpler::Alias(x)),
        Op::Shape(ShapeOp::Contiguous) => match def(x) {
            Some((Op::Shape(ShapeOp::Contiguous), _)) => Some(Simpler::Alias(x)),
            _ => None,
        },
        _ => None,
    }
}

/// Rewrites `p + a @ b` (an add whose one operand is a matrix product read nowhere else and
/// whose other operand dies there) as one step that adds the product into `p`'s buffer as
/// the matrix kernel computes it ([`Array::matmul_acc_into`], exact bit for bit). Gradients
/// summed over the time steps of a recurrent network, one weight-gradient contribution per
/// step, then build up in one buffer instead of a new temporary and a pass over memory
/// per step. `uses[v]` counts every read of `v` in the plan.
pub(super) fn accumulate_products(seg: &mut Segment, metas: &[Meta], uses: &[u32]) {
    let mut consts = HashSet::new();
    constants(seg, &mut consts);
    accumulate_in(seg, metas, uses, &consts);
}

/// Adds the constants of `seg` and of every path after it to `out` (their buffers belong to
/// the plan: a step must not take one over).
fn constants(seg: &Segment, out: &mut HashSet<ValueId>) {
    out.extend(seg.exec.iter().filter_map(|slot| match slot {
        Slot::Const { id, .. } => Some(*id),
        _ => None,
    }));
    if let End::Guard { branches, .. } = &seg.end {
        for (_, b) in branches {
            constants(b, out);
        }
    }
}

fn accumulate_in(seg: &mut Segment, metas: &[Meta], uses: &[u32], consts: &HashSet<ValueId>) {
    // the matrix products of this segment: value -> slot index
    let mut products: HashMap<ValueId, usize> = HashMap::new();
    let mut removed = vec![false; seg.exec.len()];
    for k in 0..seg.exec.len() {
        let Slot::Step { step, .. } = &seg.exec[k] else {
            continue;
        };
        match &step.kind {
            StepKind::Op(Op::Matmul) => {
                if let Some(o) = step.outputs[0] {
                    products.insert(o, k);
                }
            }
            StepKind::Op(Op::Binary(Binary::Add)) => {
                let (x, y) = (step.inputs[0], step.inputs[1]);
                let out = step.outputs[0].expect("an add has its output");
                let shape = &metas[out as usize].shape;
                let fits = metas[x as usize].shape == *shape
                    && metas[y as usize].shape == *shape
                    && metas[out as usize].dtype.is_float();
                let pick = [(y, x), (x, y)].into_iter().find(|&(q, p)| {
                    fits && p != q
                        && uses[q as usize] == 1
                        && uses[p as usize] == 1
                        // a constant's buffer belongs to the plan: it would be copied
                        && !consts.contains(&p)
                        && products.get(&q).is_some_and(|&m| !removed[m])
                });
                let Some((q, p)) = pick else { continue };
                let m = products[&q];
                let Slot::Step { step: product, .. } = &seg.exec[m] else {
                    unreachable!("products are steps")
                };
                let inputs = SmallVec::from_slice(&[p, product.inputs[0], product.inputs[1]]);
                let Slot::Step { step, .. } = &mut seg.exec[k] else {
                    unreachable!("checked above")
                };
                step.kind = StepKind::MatmulAcc {
                    exact: true,
                    scale: 1.0,
                    shared: false,
                };
                step.inputs = inputs;
                step.operand = None;
                removed[m] = true;
            }
            _ => {}
        }
    }
    let mut k = 0;
    seg.exec.retain(|_| {
        k += 1;
        !removed[k - 1]
    });
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            accumulate_in(b, metas, uses, consts);
        }
    }
}

/// Folds an update of a value by a scaled matrix product, `w - c * (a @ b)` (or `w + c *
/// (a @ b)`, the product read nowhere else, `w`'s last read), into the product: `w + (-c) ·
/// (a @ b)` accumulated into `w`'s buffer by the matrix kernel, which applies the scale to
/// each finished sum ([`Array::matmul_add_scaled_into`]). An SGD step's update of a weight
/// by its gradient then writes the weight once, where the gradient was written out by its
/// product and read back by the update (a `[1000, 1000]` f32 weight: 145 µs of a wide MLP's
/// 1.13 ms step on the 2-core Xeon). It runs after [`batch_products`], so a recurrent
/// network's weight gradient, a sum over time steps joined into one product, folds too. Only
/// in segments that end the plan (no guard after them reads `w`).
///
/// Not exact: one rounding of `w + (-c) · Σ` where direct mode rounds the product, its
/// scaling and the difference, so each element is within a few units in the last place of
/// `|w| + |c| Σ|aᵢ bᵢ|` of direct mode's; it runs only with fusion on, and never in check
/// mode. `uses[v]` counts every read of `v` in the plan.
pub(super) fn fold_updates(seg: &mut Segment, metas: &[Meta], uses: &[u32], alias: &[ValueId]) {
    let End::Done(done) = &seg.end else {
        return;
    };
    let mut consts = HashSet::new();
    constants(seg, &mut consts);
    // each value's last reading slot, and the values the plan returns
    let last_read = last_reads(seg);
    let returned: HashSet<ValueId> = done.outputs.iter().map(|&o| alias[o as usize]).collect();
    let two_d = |metas: &[Meta], v: ValueId| metas[v as usize].shape.len() == 2;
    // products and scaled values read once: value -> slot
    let mut products: HashMap<ValueId, usize> = HashMap::new();
    let mut scaled: HashMap<ValueId, (usize, ValueId, f64)> = HashMap::new();
    let mut removed = vec![false; seg.exec.len()];
    let mut replacement: HashMap<usize, Vec<Slot>> = HashMap::new();
    for k in 0..seg.exec.len() {
        let Slot::Step { step, .. } = &seg.exec[k] else {
            continue;
        };
        let Some(out) = step.outputs.first().copied().flatten() else {
            continue;
        };
        let once = |v: ValueId| uses[v as usize] == 1;
        match &step.kind {
            // (over one inner element a product is an outer product, which
            // `outer_products` fuses into the update exactly)
            StepKind::Op(Op::Matmul)
                if step.inputs.iter().all(|&v| two_d(metas, v))
                    && metas[step.inputs[0] as usize].shape[1] > 1
                    && once(out) =>
            {
                products.insert(out, k);
            }
            StepKind::Op(Op::Scalar(ScalarOp::Mul, c))
                if once(out) && products.contains_key(&step.inputs[0]) =>
            {
                scaled.insert(out, (k, step.inputs[0], *c));
            }
            StepKind::Op(Op::Binary(op @ (Binary::Add | Binary::Sub))) => {
                let (x, y) = (step.inputs[0], step.inputs[1]);
                // (w, the scaled product, its sign)
                let pick = [(x, y, 1.0), (y, x, 1.0)]
                    .into_iter()
                    .filter(|_| *op == Binary::Add)
                    .chain((*op == Binary::Sub).then_some((x, y, -1.0)))
                    .find(|&(w, m, _)| {
                        scaled.contains_key(&m)
                            && w != m
                            && metas[w as usize].shape == metas[out as usize].shape
                            && metas[m as usize].shape == metas[out as usize].shape
                            && metas[out as usize].dtype.is_float()
                            && metas[w as usize].dtype == metas[out as usize].dtype
                            && metas[m as usize].dtype == metas[out as usize].dtype
                            && !consts.contains(&w)
                            && !returned.contains(&w)
                            && last_read.get(&w) == Some(&k)
                    });
                let Some((w, m, sign)) = pick else { continue };
                let (ks, p, c) = scaled[&m];
                let kp = products[&p];
                if removed[ks] || removed[kp] {
                    continue;
                }
                let Slot::Step { step: product, .. } = &seg.exec[kp] else {
                    unreachable!("products are steps")
                };
                let (a, b) = (product.inputs[0], product.inputs[1]);
                let mut acc = step.clone();
                acc.kind = StepKind::MatmulAcc {
                    exact: false,
                    scale: sign * c,
                    shared: false,
                };
                acc.inputs = SmallVec::from_slice(&[w, a, b]);
                acc.operand = None;
                replacement.insert(k, vec![Slot::step(acc)]);
                removed[ks] = true;
                removed[kp] = true;
            }
            _ => {}
        }
    }
    splice(seg, replacement, &removed);
}

/// Writes the pieces of a stack straight into it: a `cat` along dim 0 whose every piece is
/// made by a `cat` of its own (or is a reshape of one that nothing else reads) has each of
/// those cats write into the piece's rows of the stack as it runs, its value a view of
/// them, and the stack itself is then complete, with nothing to copy. A recurrent network's
/// weight gradient reads two such stacks, its steps' `[x_t, h]` inputs and their gate
/// gradients (a `[1056, 800]` block for the seed suite's batched LSTM), which were
/// assembled at the end of the backward pass from pieces long out of cache; the pieces
/// also die at their last other read instead of living until the stack.
///
/// Exact (a copy either way). The plan runs it on host plans only (the rows are written by
/// the host kernel, [`Array::cat_into_at`]). The stack, its pieces and what the pieces are
/// reshaped from must not be returned or read by a guard (`outputs`); `uses[v]` counts
/// every read of `v`.
pub(super) fn assemble_stacks(
    seg: &mut Segment,
    metas: &[Meta],
    uses: &[u32],
    outputs: &HashSet<ValueId>,
) {
    let def = defining_slots(seg);
    let step_at = |k: usize| match &seg.exec[k] {
        Slot::Step { step, .. } => Some(step),
        _ => None,
    };
    let is_cat = |k: usize| {
        step_at(k).is_some_and(|s| matches!(s.kind, StepKind::Op(Op::Shape(ShapeOp::Cat(_)))))
    };
    // per stack, its slot and each piece's writing cat: (slot, first element)
    let mut plans: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
    let mut taken: HashSet<usize> = HashSet::new();
    for (k, step, out) in computed(seg) {
        let StepKind::Op(Op::Shape(ShapeOp::Cat(0))) = step.kind else {
            continue;
        };
        let shape = &metas[out as usize].shape;
        if outputs.contains(&out) {
            continue;
        }
        let row: usize = shape[1..].iter().product();
        let mut writers = Vec::new();
        let mut at = 0;
        let mut ok = true;
        let mut seen: HashSet<ValueId> = HashSet::new();
        for &p in &step.inputs {
            let rows = metas[p as usize].shape.first().copied().unwrap_or(0);
            let start = at * row;
            at += rows;
            // the piece's own cat, or the cat it is a reshape of (read only there)
            let writer = def.get(&p).copied().and_then(|d| {
                if is_cat(d) {
                    return Some((d, p));
                }
                let s = step_at(d)?;
                let StepKind::Op(Op::Shape(ShapeOp::Reshape(_))) = s.kind else {
                    return None;
                };
                let v = s.inputs[0];
                let dv = def.get(&v).copied()?;
                (is_cat(dv) && uses[v as usize] == 1 && !outputs.contains(&v)).then_some((dv, v))
            });
            match writer {
                Some((d, v))
                    if d < k
                        && seen.insert(p)
                        && !outputs.contains(&p)
                        && !taken.contains(&d)
                        && metas[v as usize].dtype == metas[out as usize].dtype =>
                {
                    writers.push((d, start));
                }
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && !writers.is_empty() {
            taken.extend(writers.iter().map(|w| w.0));
            plans.push((k, writers));
        }
    }
    for (k, writers) in plans {
        let Slot::Step { step, .. } = &mut seg.exec[k] else {
            unreachable!("stacks are steps")
        };
        let stack = step.outputs[0].expect("a cat has its output");
        step.kind = StepKind::Assembled;
        step.inputs.clear();
        let shape = metas[stack as usize].shape.clone();
        for (d, start) in writers {
            let Slot::Step { step, .. } = &mut seg.exec[d] else {
                unreachable!("writers are steps")
            };
            let StepKind::Op(Op::Shape(ShapeOp::Cat(dim))) = step.kind else {
                unreachable!("writers are cats")
            };
            let piece = step.outputs[0].expect("a cat has its output");
            step.kind = StepKind::CatInto {
                dim,
                stack,
                start,
                shape: shape.clone(),
                piece: metas[piece as usize].shape.clone(),
                written: None,
            };
        }
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            assemble_stacks(b, metas, uses, outputs);
        }
    }
}

/// A cat's piece that a fused group makes (through reshapes).
struct GroupPiece {
    /// Its place among the cat's pieces.
    piece: usize,
    /// The value the group makes.
    value: ValueId,
    /// The group's slot.
    group: usize,
    /// That value's place among the group's outputs.
    output: usize,
}

/// A cat whose pieces a fused group writes into the cat's stack ([`programs_into_stacks`]).
struct StackWrite {
    /// The cat's slot.
    cat: usize,
    /// The group's slot.
    group: usize,
    /// Each output of the group written into the stack, and its window there.
    windows: SmallVec<[(usize, Window); 4]>,
    /// The cat's other pieces (made before the group), copied into their windows.
    copies: SmallVec<[(ValueId, Window); 2]>,
    /// One piece the group writes (the cat's `written`).
    written: usize,
}

/// Has each fused group whose outputs are pieces of a `cat_into` (see [`assemble_stacks`])
/// write them straight into their places in the stack, with the cat's other pieces copied
/// there by the group first, so that the cat copies nothing: a recurrent network's gate
/// program writes its new `h` into its columns of the `[x_t, h]` rows of the weight
/// gradient's stack (copying `x_t` beside it), and the backward's gate program its four gate
/// gradients into their columns of the stack of gate gradients, which the cat then copied
/// from arrays of their own, a copy and a handover to the other core per time step each.
/// Exact (the same elements, written elsewhere). The outputs' values become views of their
/// places, so they must not be returned or guarded (`outputs`), and every read of them (or
/// of views of them) must come before the stack is next written, or that write would copy
/// the stack; the cat's other pieces must be made before the group. One cat per group, its
/// pieces from one group; a cat of at least [`HANDOVER_MIN`] elements (below, its copy costs
/// less than the windows' bookkeeping: the single-sequence LSTM's rows of 300 and 800).
pub(super) fn programs_into_stacks(seg: &mut Segment, metas: &[Meta], outputs: &HashSet<ValueId>) {
    let def = defining_slots(seg);
    let last_read = last_reads(seg);
    let views = views_of(seg);
    // each fused output's group slot and its index among the program's outputs
    let mut made: HashMap<ValueId, (usize, usize)> = HashMap::new();
    for (k, slot) in seg.exec.iter().enumerate() {
        if let Slot::Fused { group, .. } = slot {
            let n = group.program.outputs().len();
            for (j, &o) in group.outputs[..n].iter().enumerate() {
                made.insert(o, (k, j));
            }
        }
    }
    let mut plans: Vec<StackWrite> = Vec::new();
    // each stack's cat_intos, and the earliest slot each may write from (its group's)
    let mut writes: HashMap<ValueId, Vec<(usize, usize)>> = HashMap::new();
    for (c, step, _) in computed(seg) {
        let StepKind::CatInto {
            dim,
            stack,
            start,
            ref shape,
            ..
        } = step.kind
        else {
            continue;
        };
        let first_write = |g: Option<usize>| g.unwrap_or(c).min(c);
        let piece_shapes: Vec<&crate::Shape> = step
            .inputs
            .iter()
            .map(|&p| &metas[p as usize].shape)
            .collect();
        // the cat's rows (the dims before `dim`), each piece's columns in them, the stride
        let rows: usize = piece_shapes[0][..dim].iter().product();
        let inner: usize = piece_shapes[0][dim + 1..].iter().product();
        let widths: Vec<usize> = piece_shapes.iter().map(|s| s[dim] * inner).collect();
        let stride: usize = widths.iter().sum();
        let numel: usize = shape.iter().product();
        // the pieces a group makes (through reshapes), and that group
        let mut from_group: Vec<GroupPiece> = Vec::new();
        for (piece, &p) in step.inputs.iter().enumerate() {
            let mut v = p;
            loop {
                if let Some(&(group, output)) = made.get(&v) {
                    from_group.push(GroupPiece {
                        piece,
                        value: v,
                        group,
                        output,
                    });
                    break;
                }
                match reshaped_from(seg, &def, v) {
                    Some(w) => v = w,
                    None => break,
                }
            }
        }
        let group = from_group.first().map(|f| f.group);
        writes
            .entry(stack)
            .or_default()
            .push((c, first_write(group)));
        let Some(g) = group else { continue };
        let Slot::Fused { group: grp, .. } = &seg.exec[g] else {
            unreachable!("made by groups")
        };
        let fits = stride > 0
            && rows * stride >= HANDOVER_MIN
            && start.is_multiple_of(stride)
            && numel.is_multiple_of(stride)
            && from_group.iter().all(|f| f.group == g)
            && g < c
            && !grp.program.is_one_loop()
            && grp.into.is_none()
            && grp.dtype == metas[stack as usize].dtype
            && grp.shape.split_last().is_some_and(|(&last, rest)| {
                rest.iter().product::<usize>() == rows
                    && from_group.iter().all(|f| widths[f.piece] == last)
            })
            && !from_group.iter().any(|f| outputs.contains(&f.value))
            // (each output one piece, of some elements)
            && (from_group.iter().enumerate())
                .all(|(x, f)| from_group[..x].iter().all(|e| e.output != f.output))
            && grp.shape.iter().product::<usize>() > 0;
        if !fits {
            continue;
        }
        let window = |k: usize| Window {
            start: start + widths[..k].iter().sum::<usize>(),
            cols: widths[k],
            stride,
        };
        // the other pieces, made before the group
        let mut copies: SmallVec<[(ValueId, Window); 2]> = SmallVec::new();
        let mut early = true;
        for (k, &p) in step.inputs.iter().enumerate() {
            if from_group.iter().all(|f| f.piece != k) {
                let made_at = def.get(&p).copied().or(made.get(&p).map(|m| m.0));
                early &= made_at.is_none_or(|d| d < g);
                copies.push((p, window(k)));
            }
        }
        if early {
            plans.push(StackWrite {
                cat: c,
                group: g,
                windows: (from_group.iter())
                    .map(|f| (f.output, window(f.piece)))
                    .collect(),
                copies,
                written: from_group[0].piece,
            });
        }
    }
    // every read of a windowed output done before the stack's next write
    plans.retain(|p| {
        let StepKind::CatInto { stack, .. } = step_kind(seg, p.cat) else {
            unreachable!("cats")
        };
        let next = (writes[stack].iter())
            .filter(|w| w.0 > p.cat)
            .map(|w| w.1)
            .min()
            .unwrap_or(usize::MAX);
        let Slot::Fused { group, .. } = &seg.exec[p.group] else {
            unreachable!("groups")
        };
        (p.windows.iter()).all(|&(j, _)| last_use(group.outputs[j], &last_read, &views) < next)
    });
    // one cat per group
    let mut seen = HashSet::new();
    plans.retain(|p| seen.insert(p.group));
    for plan in plans {
        let Slot::Step { step, .. } = &mut seg.exec[plan.cat] else {
            unreachable!("cats")
        };
        let StepKind::CatInto {
            stack,
            ref shape,
            written: ref mut w,
            ..
        } = step.kind
        else {
            unreachable!("cats")
        };
        *w = Some(plan.written);
        let into = super::fuse::IntoStack {
            stack,
            shape: shape.clone(),
            windows: plan.windows,
            copies: plan.copies,
        };
        let Slot::Fused { group, .. } = &mut seg.exec[plan.group] else {
            unreachable!("groups")
        };
        group.into = Some(Box::new(into));
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            programs_into_stacks(b, metas, outputs);
        }
    }
}

/// The fewest elements of a cat whose pieces [`programs_into_stacks`] writes in place, and
/// of a block [`sum_blocks_together`] sums with the others: the size from which the array
/// layer splits a copy or a column sum over two cores (its `PAIR_MIN`), where each costs a
/// handover to the other core besides the work. Below it, the step saved costs less than
/// the bookkeeping that replaces it.
const HANDOVER_MIN: usize = 1 << 12;

/// The kind of the step at slot `k`.
fn step_kind(seg: &Segment, k: usize) -> &StepKind {
    match &seg.exec[k] {
        Slot::Step { step, .. } => &step.kind,
        _ => unreachable!("a step's slot"),
    }
}

/// Adds each `acc + a @ b` whose accumulator is a block of rows of a larger value `x` into
/// those rows of `x`'s own buffer (`StepKind::MatmulAccRows`), where the accumulator was a
/// copy of them first: the input projections of every step of a recurrent network, one
/// product, have each step's `h @ W_h` added into that step's rows (a `[32, 800]` block a
/// step for the seed suite's batched LSTM). Applied when `x` is read only through such
/// blocks, none read twice or overlapping, and each block's result (and the views of it)
/// is read for the last time before the next block is written, so the buffer is never
/// written under a reader; `x` must not be returned or guarded (`outputs`). Summed as the
/// accumulation it replaces (the same kernel call), so the results are the same bits.
pub(super) fn accumulate_in_rows(
    seg: &mut Segment,
    metas: &[Meta],
    uses: &[u32],
    outputs: &HashSet<ValueId>,
) {
    let def = defining_slots(seg);
    // each value's last reading slot, and the views defined from each value
    let last_read = last_reads(seg);
    let views = views_of(seg);
    // candidate blocks by their base: (accumulating slot, first row, rows, result)
    let mut blocks: HashMap<ValueId, Vec<(usize, usize, usize, ValueId)>> = HashMap::new();
    for (k, step, out) in computed(seg) {
        let StepKind::MatmulAcc {
            exact: false,
            scale,
            ..
        } = step.kind
        else {
            continue;
        };
        let acc = step.inputs[0];
        let Some(Slot::Step { step: view, .. }) = def.get(&acc).map(|&d| &seg.exec[d]) else {
            continue;
        };
        let StepKind::Op(Op::Shape(ShapeOp::Narrow { dim: 0, start, len })) = view.kind else {
            continue;
        };
        let x = view.inputs[0];
        let two_d = metas[x as usize].shape.len() == 2;
        if scale == 1.0 && two_d && uses[acc as usize] == 1 && def.contains_key(&x) {
            blocks.entry(x).or_default().push((k, start, len, out));
        }
    }
    let mut rewrites: Vec<(usize, ValueId, usize)> = Vec::new();
    for (x, mut list) in blocks {
        // x read through these blocks alone, not returned, the blocks disjoint, each
        // block's result done with before the next block is written
        if outputs.contains(&x) || uses[x as usize] as usize != list.len() {
            continue;
        }
        list.sort_unstable();
        let disjoint = {
            let mut rows: Vec<(usize, usize)> = list.iter().map(|b| (b.1, b.2)).collect();
            rows.sort_unstable();
            rows.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0)
        };
        let in_turn = list
            .windows(2)
            .all(|w| last_use(w[0].3, &last_read, &views) < w[1].0);
        if disjoint && in_turn {
            rewrites.extend(list.iter().map(|b| (b.0, x, b.1)));
        }
    }
    for (k, x, first_row) in rewrites {
        let Slot::Step { step, .. } = &mut seg.exec[k] else {
            unreachable!("products are steps")
        };
        step.kind = StepKind::MatmulAccRows { first_row };
        step.inputs[0] = x;
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            accumulate_in_rows(b, metas, uses, outputs);
        }
    }
}

/// Sums blocks of an assembled stack's rows in one step after the stack is complete: each
/// `sum(0)` or `mean(0)` of a 2-D value that is whole rows of a stack a [`assemble_stacks`]
/// wrote piece by piece (a `cat_into` piece, or a reshape of one), two or more of them over
/// one stack, becomes a row of one [`StepKind::BlockSums`] placed right after the stack's
/// assembly, and each sum's value a view of its row. A recurrent network's bias gradient is
/// one such sum per time step, of its gate gradients (33 of `[32, 800]` for the seed suite's
/// batched LSTM): each was a call, and a handover to the other core, between the backward
/// pass's products; the step reads the same rows once, after them. Exact: each row is the
/// sum it replaces, bit for bit. A sum joins only when nothing but ops of it alone (its
/// reshape, say, which move with it) reads it before the assembly, and when its block holds
/// at least [`HANDOVER_MIN`] elements (a single sequence's `[1, 800]` sums cost less than
/// the row views that would replace them). New values get ids past every value so far,
/// with their metas appended.
pub(super) fn sum_blocks_together(seg: &mut Segment, metas: &mut Vec<Meta>) {
    let def = defining_slots(seg);
    // the stacks: where each is assembled, and the pieces written into it
    let mut assembled: HashMap<ValueId, usize> = HashMap::new();
    let mut pieces: HashMap<ValueId, (ValueId, usize)> = HashMap::new();
    for (k, step, out) in computed(seg) {
        match step.kind {
            StepKind::Assembled => drop(assembled.insert(out, k)),
            StepKind::CatInto { stack, start, .. } => drop(pieces.insert(out, (stack, start))),
            _ => {}
        }
    }
    // the sums of whole rows of a stack, by stack, rows, kind and dtype: (slot, first row)
    type Key = (ValueId, usize, bool, crate::DType);
    let mut groups: HashMap<Key, Vec<(usize, usize)>> = HashMap::new();
    for (k, step, out) in computed(seg) {
        let StepKind::Op(Op::Reduce(r @ (Reduction::Sum | Reduction::Mean), ref dims, _)) =
            step.kind
        else {
            continue;
        };
        let input = &metas[step.inputs[0] as usize];
        let [rows, columns] = input.shape[..] else {
            continue;
        };
        if dims[..] != [0] || metas[out as usize].dtype != input.dtype {
            continue;
        }
        let mut v = step.inputs[0];
        while let Some(w) = reshaped_from(seg, &def, v) {
            v = w;
        }
        let Some(&(stack, start)) = pieces.get(&v) else {
            continue;
        };
        let whole = &metas[stack as usize];
        if whole.shape.len() == 2
            && rows * columns >= HANDOVER_MIN
            && whole.shape[1] == columns
            && whole.dtype == input.dtype
            && start.is_multiple_of(columns.max(1))
            && assembled.contains_key(&stack)
        {
            let key = (stack, rows, r == Reduction::Mean, input.dtype);
            groups
                .entry(key)
                .or_default()
                .push((k, start / columns.max(1)));
        }
    }
    // each slot's reads, to find who reads a sum before its stack is assembled
    let mut readers: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for (k, slot) in seg.exec.iter().enumerate() {
        let inputs: &[ValueId] = match slot {
            Slot::Step { step, .. } => &step.inputs,
            Slot::Fused { group, .. } => &group.inputs,
            Slot::StateWrite { id, .. } => std::slice::from_ref(id),
            _ => continue,
        };
        for &i in inputs {
            readers.entry(i).or_default().push(k);
        }
    }
    /// The steps before slot `at` that read `v` (a sum), and those reading them, found
    /// into `moved` (they move after the sum): `None` when one of them is not an op of
    /// these values alone (a pure function of buffers nothing else writes: a reshape of the
    /// sum, say), or is read before `at` by anything else.
    fn moving(
        seg: &Segment,
        readers: &HashMap<ValueId, Vec<usize>>,
        v: ValueId,
        at: usize,
        moved: &mut Vec<(usize, ValueId)>,
    ) -> Option<()> {
        for &r in readers.get(&v).into_iter().flatten().filter(|&&r| r < at) {
            let Slot::Step { step, .. } = &seg.exec[r] else {
                return None;
            };
            let ours = |i: &ValueId| moved.iter().any(|m| m.1 == *i);
            if !matches!(step.kind, StepKind::Op(_)) || !step.inputs.iter().all(ours) {
                return None;
            }
            let out = step.outputs[0]?;
            if !moved.iter().any(|m| m.0 == r) {
                moved.push((r, out));
                moving(seg, readers, out, at, moved)?;
            }
        }
        Some(())
    }
    let mut replacement: HashMap<usize, Vec<Slot>> = HashMap::new();
    let mut removed = vec![false; seg.exec.len()];
    let mut groups: Vec<(Key, Vec<(usize, usize)>)> = groups.into_iter().collect();
    groups.sort_unstable_by_key(|(_, sums)| sums[0].0);
    for ((stack, rows, mean, dtype), sums) in groups {
        let at = assembled[&stack];
        let mut joined = Vec::new();
        for (k, first) in sums {
            let Some(Slot::Step { step, .. }) = seg.exec.get(k) else {
                continue;
            };
            let out = step.outputs[0].expect("a sum has its output");
            // (the sum itself first: its value is one of those the moved steps may read)
            let mut moved = vec![(k, out)];
            if moving(seg, &readers, out, at, &mut moved).is_some() {
                let mut moved: Vec<usize> = moved[1..].iter().map(|m| m.0).collect();
                moved.sort_unstable();
                joined.push((k, first, out, moved));
            }
        }
        if joined.len() < 2 {
            continue;
        }
        let columns = metas[stack as usize].shape[1];
        let firsts: Vec<usize> = joined.iter().map(|j| j.1).collect();
        let block = new_value(
            metas,
            Meta::made([firsts.len(), columns].into_iter().collect(), dtype),
        );
        let Some(Slot::Step { step: base, .. }) = seg.exec.get(joined[0].0) else {
            unreachable!("sums are steps")
        };
        let mut sums_step = base.clone();
        sums_step.kind = StepKind::BlockSums { firsts, rows, mean };
        sums_step.inputs = SmallVec::from_slice(&[stack]);
        sums_step.outputs = SmallVec::from_slice(&[Some(block)]);
        sums_step.operand = None;
        // (the assembly stays first)
        let mut new_slots = vec![seg.exec[at].clone(), Slot::step(sums_step)];
        let mut moved_all = Vec::new();
        for (j, (k, _, out, moved)) in joined.into_iter().enumerate() {
            let Slot::Step { step: sum, .. } = &seg.exec[k] else {
                unreachable!("sums are steps")
            };
            let narrow = ShapeOp::Narrow {
                dim: 0,
                start: j,
                len: 1,
            };
            let shape = metas[out as usize].shape.clone();
            if shape.len() == 2 {
                // keepdim: the row itself
                new_slots.push(shape_step(sum, narrow, &[block], out));
            } else {
                let row = new_value(metas, Meta::made([1, columns].into_iter().collect(), dtype));
                let reshape = ShapeOp::Reshape(shape);
                new_slots.push(shape_step(sum, narrow, &[block], row));
                new_slots.push(shape_step(sum, reshape, &[row], out));
            }
            removed[k] = true;
            moved_all.extend(moved);
        }
        moved_all.sort_unstable();
        moved_all.dedup();
        for r in moved_all {
            new_slots.push(seg.exec[r].clone());
            removed[r] = true;
        }
        replacement.insert(at, new_slots);
    }
    splice(seg, replacement, &removed);
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            sum_blocks_together(b, metas);
        }
    }
}

/// Rewrites each sum of matrix products that [`accumulate_products`] made (`p1 = a1 @ b1`,
/// `p2 = p1 + a2 @ b2`, ...) as one product over the joined operands, `[a1 a2 ...] @ [b1;
/// b2; ...]`, when the result is large against the operands (so joining them costs less than
/// a pass over the result per term). A recurrent network's weight gradient is such a sum,
/// one term per time step: one product writes the gradient once instead of once per step.
///
/// This one is not exact: the matrix kernel adds the terms in its own order, so each
/// element may differ from the sum taken term by term by a few units in the last place of
/// the sum of the terms' magnitudes (the usual bound for a reordered sum of n terms,
/// n · ε · Σ|aᵢ bᵢ|). It runs only with fusion on, and never in check mode, which compares
/// replays with direct mode bit for bit. New values (the joined operands) get ids past the
/// recording's, with their metas appended.
pub(super) fn batch_products(seg: &mut Segment, metas: &mut Vec<Meta>) {
    struct Chain {
        /// Slot indices of its steps, first to last.
        steps: Vec<usize>,
        a: Vec<ValueId>,
        b: Vec<ValueId>,
    }
    let two_d = |metas: &[Meta], v: ValueId| metas[v as usize].shape.len() == 2;
    // open chains by the value their last step defines
    let mut chains: HashMap<ValueId, Chain> = HashMap::new();
    let mut done: Vec<Chain> = Vec::new();
    // matrices defined here as transposes, with what they transpose
    let mut transposed: HashMap<ValueId, ValueId> = HashMap::new();
    for (k, step, out) in computed(seg) {
        match &step.kind {
            StepKind::Op(Op::Shape(ShapeOp::Permute(p))) if p == &[1, 0] => {
                transposed.insert(out, step.inputs[0]);
            }
            StepKind::Op(Op::Matmul) if step.inputs.iter().all(|&v| two_d(metas, v)) => {
                chains.insert(
                    out,
                    Chain {
                        steps: vec![k],
                        a: vec![step.inputs[0]],
                        b: vec![step.inputs[1]],
                    },
                );
            }
            StepKind::MatmulAcc { scale, .. } if *scale == 1.0 => {
                let (p, a, b) = (step.inputs[0], step.inputs[1], step.inputs[2]);
                match chains.remove(&p) {
                    Some(mut c) if two_d(metas, a) && two_d(metas, b) => {
                        c.steps.push(k);
                        c.a.push(a);
                        c.b.push(b);
                        chains.insert(out, c);
                    }
                    Some(c) => done.push(c),
                    None => {}
                }
            }
            _ => {}
        }
    }
    done.extend(chains.into_values());
    let mut removed = vec![false; seg.exec.len()];
    let mut replacement: HashMap<usize, Vec<Slot>> = HashMap::new();
    for c in done.into_iter().filter(|c| c.steps.len() > 1) {
        let shape = |v: ValueId| metas[v as usize].shape.clone();
        let (m, n) = (shape(c.a[0])[0], shape(c.b[0])[1]);
        let depth: usize = c.a.iter().map(|&a| shape(a)[1]).sum();
        // joining copies the operands once; the terms' adds pass over the result per term
        if (m + n) * depth > m * n * c.steps.len() / 2 {
            continue;
        }
        let last = *c.steps.last().expect("a chain has steps");
        let Slot::Step { step, .. } = &seg.exec[last] else {
            unreachable!("chains are steps")
        };
        let out = step.outputs[0].expect("a product has its output");
        let dtype = metas[out as usize].dtype;
        let mut new = |shape: crate::Shape| new_value(metas, Meta::made(shape, dtype));
        let joined_a = new(SmallVec::from_slice(&[m, depth]));
        let joined_b = new(SmallVec::from_slice(&[depth, n]));
        let make = |op: Op, inputs: &[ValueId], output: ValueId| derived(step, op, inputs, output);
        // Transposed left operands (a weight gradient's `xᵀ`) join as the transpose of
        // their row-major originals joined by rows: whole rows copied, not a strided gather
        // (0.74 -> 0.32 ms for an LSTM's 33 [300, 32] terms).
        let originals: Option<Vec<ValueId>> =
            c.a.iter().map(|a| transposed.get(a).copied()).collect();
        let join_a = match originals {
            Some(rows) => {
                let stacked = new(SmallVec::from_slice(&[depth, m]));
                vec![
                    make(Op::Shape(ShapeOp::Cat(0)), &rows, stacked),
                    make(
                        Op::Shape(ShapeOp::Permute(vec![1, 0])),
                        &[stacked],
                        joined_a,
                    ),
                ]
            }
            None => vec![make(Op::Shape(ShapeOp::Cat(1)), &c.a, joined_a)],
        };
        let mut new_steps = join_a;
        new_steps.extend([
            make(Op::Shape(ShapeOp::Cat(0)), &c.b, joined_b),
            make(Op::Matmul, &[joined_a, joined_b], out),
        ]);
        replacement.insert(last, new_steps);
        for &k in &c.steps {
            removed[k] = true;
        }
    }
    splice(seg, replacement, &removed);
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            batch_products(b, metas);
        }
    }
}

/// Each value's last reading slot in `seg`.
fn last_reads(seg: &Segment) -> HashMap<ValueId, usize> {
    let mut last_read = HashMap::new();
    for (k, slot) in seg.exec.iter().enumerate() {
        let inputs = match slot {
            Slot::Step { step, .. } => &step.inputs[..],
            Slot::Fused { group, .. } => &group.inputs[..],
            _ => continue,
        };
        for &i in inputs {
            last_read.insert(i, k);
        }
    }
    last_read
}

/// The views each value of `seg` has defined from it (by shape ops that copy nothing).
fn views_of(seg: &Segment) -> HashMap<ValueId, Vec<ValueId>> {
    let mut views: HashMap<ValueId, Vec<ValueId>> = HashMap::new();
    for (_, step, o) in computed(seg) {
        if let StepKind::Op(Op::Shape(op)) = &step.kind {
            if !matches!(
                op,
                ShapeOp::Contiguous | ShapeOp::Cat(_) | ShapeOp::PadNarrow { .. }
            ) {
                views.entry(step.inputs[0]).or_default().push(o);
            }
        }
    }
    views
}

/// The last slot reading `v` or any view of it (see [`last_reads`], [`views_of`]).
fn last_use(
    v: ValueId,
    last_read: &HashMap<ValueId, usize>,
    views: &HashMap<ValueId, Vec<ValueId>>,
) -> usize {
    let own = last_read.get(&v).copied().unwrap_or(0);
    (views.get(&v).into_iter().flatten())
        .map(|&w| last_use(w, last_read, views))
        .fold(own, usize::max)
}

/// The steps of `seg` with a first output: (slot index, step, that output).
fn computed(seg: &Segment) -> impl Iterator<Item = (usize, &super::capture::Step, ValueId)> {
    seg.exec
        .iter()
        .enumerate()
        .filter_map(|(k, slot)| match slot {
            Slot::Step { step, .. } => Some((k, step, step.outputs.first().copied().flatten()?)),
            _ => None,
        })
}

/// Rewrites `seg`'s slots: each slot in `replacement` by its new slots, the `removed` ones
/// dropped. Returns whether anything changed.
pub(super) fn splice(
    seg: &mut Segment,
    mut replacement: HashMap<usize, Vec<Slot>>,
    removed: &[bool],
) -> bool {
    if replacement.is_empty() && !removed.contains(&true) {
        return false;
    }
    let old = std::mem::take(&mut seg.exec);
    for (k, slot) in old.into_iter().enumerate() {
        match replacement.remove(&k) {
            Some(new) => seg.exec.extend(new),
            None if removed[k] => {}
            None => seg.exec.push(slot),
        }
    }
    true
}

/// Gives each use of a comparison by a selection or a mask conversion (`where(x > 0, ..)`,
/// `(x > 0).to_dtype(..)`: relu's, clamp's and `where`'s gradients) its own copy of the
/// comparison, computed right before it. Fusion keeps a comparison inside one fused run,
/// as a mask that never reaches memory; shared by steps that land in different runs (the
/// forward's and the backward's), it would otherwise have to be written out as a bool array,
/// which a run cannot do, and its runs would not fuse. A comparison is cheaper to repeat
/// than to store and load. New values get ids past the recording's, with their metas
/// appended. `uses[v]` counts every read of `v` in the plan.
pub(super) fn split_masks(seg: &mut Segment, metas: &mut Vec<Meta>, uses: &[u32]) {
    let is_mask_use = |kind: &StepKind, inputs: &[ValueId], v: ValueId| match kind {
        StepKind::Op(Op::Where) => inputs[0] == v && inputs[1] != v && inputs[2] != v,
        StepKind::Op(Op::Cast(d)) => d.is_float() && inputs[0] == v,
        _ => false,
    };
    // values a step takes the buffer of (the accumulators the rewrites before this one
    // chose where they were last read): a copy of a comparison moved past that step would
    // read the value after it, and the step would then copy its accumulator instead of
    // taking it (`plan::share_accumulators`), a pass over memory to save a comparison
    let taken: HashSet<ValueId> = (seg.exec.iter())
        .filter_map(|slot| match slot {
            Slot::Step { step, .. } if matches!(step.kind, StepKind::MatmulAcc { .. }) => {
                Some(step.inputs[0])
            }
            _ => None,
        })
        .collect();
    // the comparisons of this segment read more than once, by slot index
    let mut compares: HashMap<ValueId, usize> = HashMap::new();
    for (k, slot) in seg.exec.iter().enumerate() {
        if let Slot::Step { step, .. } = slot {
            if let (StepKind::Op(Op::Compare(c)), Some(out)) = (&step.kind, step.outputs[0]) {
                let float = metas[step.inputs[0] as usize].dtype.is_float();
                let kept = !step.inputs.iter().any(|i| taken.contains(i));
                if float && kept && uses[out as usize] > 1 && c.is_comparison() {
                    compares.insert(out, k);
                }
            }
        }
    }
    // drop those read by anything else, or from another segment
    let mut local_uses: HashMap<ValueId, u32> = HashMap::new();
    for slot in &seg.exec {
        if let Slot::Step { step, .. } = slot {
            for &i in &step.inputs {
                if compares.contains_key(&i) {
                    *local_uses.entry(i).or_default() += 1;
                    if !is_mask_use(&step.kind, &step.inputs, i) {
                        compares.remove(&i);
                    }
                }
            }
        }
    }
    compares.retain(|v, _| local_uses.get(v) == Some(&uses[*v as usize]));
    if !compares.is_empty() {
        let old = std::mem::take(&mut seg.exec);
        let originals: HashMap<ValueId, Slot> = compares
            .iter()
            .map(|(&v, &k)| (v, old[k].clone()))
            .collect();
        for (k, slot) in old.into_iter().enumerate() {
            match slot {
                Slot::Step { step, .. } if compares.values().any(|&c| c == k) => drop(step),
                Slot::Step { mut step, .. } => {
                    let copied = step
                        .inputs
                        .first()
                        .copied()
                        .filter(|i| compares.contains_key(i));
                    if let Some(v) = copied {
                        let Slot::Step { step: original, .. } = &originals[&v] else {
                            unreachable!("comparisons are steps")
                        };
                        let id = new_value(metas, metas[v as usize].clone());
                        let mut copy = original.clone();
                        copy.outputs = SmallVec::from_slice(&[Some(id)]);
                        seg.exec.push(Slot::step(copy));
                        step.inputs[0] = id;
                    }
                    seg.exec.push(Slot::step(step));
                }
                other => seg.exec.push(other),
            }
        }
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            split_masks(b, metas, uses);
        }
    }
}

/// Joins matrix products that share their right operand and whose left operands are all
/// ready before the first of them into one product of the left operands stacked by rows,
/// `cat([a1, a2, ...], 0) @ w`, each original product becoming a block of its rows (a view).
/// A product of a concatenation by columns, `cat([a, h], 1) @ w`, counts as the sum of its
/// pieces' products `a @ w[..k] + h @ w[k..]`: an LSTM step's `cat([x_t, h]) @ W` has its
/// input projection `x_t @ W[..k]` ready from the start, so the projections of all time
/// steps run as one product with rows for every step, and each step multiplies only `h`
/// (the accumulation `acc + h @ w` in the kernel, [`Array::matmul_add_into`]). Left operands
/// ready late only through views (the `x[:, t]` of a loop over time) have those views moved
/// ahead of the joined product.
///
/// Joining pays off for short products (at most [`JOIN_MAX_ROWS`] rows each), whose
/// kernel calls are dominated by packing the shared operand. Not exact (the split and the
/// kernel's blocking reorder sums), so it runs with fusion on and never in check mode. New
/// values get ids past the recording's, with their metas appended.
pub(super) fn join_products(seg: &mut Segment, metas: &mut Vec<Meta>) {
    struct Product {
        slot: usize,
        out: ValueId,
        w: ValueId,
        /// The left operand's column blocks: (value, first column, width).
        pieces: Vec<(ValueId, usize, usize)>,
        /// The piece a joined product supplies, and that product's block: (piece, joined
        /// product's index, first row).
        joined: Option<(usize, usize, usize)>,
    }
    let two_d = |metas: &[Meta], v: ValueId| metas[v as usize].shape.len() == 2;
    let def = defining_slots(seg);
    let step_at = |k: usize| match &seg.exec[k] {
        Slot::Step { step, .. } => Some(step),
        _ => None,
    };
    let mut products: Vec<Product> = Vec::new();
    for (k, step, out) in computed(seg) {
        let StepKind::Op(Op::Matmul) = step.kind else {
            continue;
        };
        let (c, w) = (step.inputs[0], step.inputs[1]);
        if !two_d(metas, c) || !two_d(metas, w) || metas[c as usize].shape[0] > JOIN_MAX_ROWS {
            continue;
        }
        let cat = def.get(&c).and_then(|&d| step_at(d)).filter(|s| {
            matches!(s.kind, StepKind::Op(Op::Shape(ShapeOp::Cat(1))))
                && s.inputs.iter().all(|&v| two_d(metas, v))
        });
        let parts: Vec<ValueId> = match cat {
            Some(s) => s.inputs.to_vec(),
            None => vec![c],
        };
        let mut at = 0;
        let pieces = parts
            .into_iter()
            .map(|v| {
                let width = metas[v as usize].shape[1];
                at += width;
                (v, at - width, width)
            })
            .collect();
        products.push(Product {
            slot: k,
            out,
            w,
            pieces,
            joined: None,
        });
    }
    let chain = |v: ValueId, before: usize| view_chain(seg, &def, v, before);
    // groups of pieces by the rows of `w` they multiply
    let mut groups: HashMap<(ValueId, usize, usize), Vec<(usize, usize)>> = HashMap::new();
    let mut order = Vec::new();
    for (i, p) in products.iter().enumerate() {
        for (j, &(_, start, width)) in p.pieces.iter().enumerate() {
            let key = (p.w, start, width);
            let members = groups.entry(key).or_default();
            if members.is_empty() {
                order.push(key);
            }
            members.push((i, j));
        }
    }
    // joined products: (slot before which it runs, view steps to move ahead, its step)
    struct Joined {
        first: usize,
        hoisted: Vec<usize>,
        w: ValueId,
        rows_of_w: (usize, usize),
        left: Vec<ValueId>,
        out: ValueId,
    }
    let mut joins: Vec<Joined> = Vec::new();
    for key in order {
        let members = &groups[&key];
        let first = products[members[0].0].slot;
        let mut hoisted = Vec::new();
        let mut left = Vec::new();
        let mut rows = 0;
        let mut chosen = Vec::new();
        for &(i, j) in members {
            if products[i].joined.is_some() || chosen.iter().any(|&(c, _, _)| c == i) {
                continue;
            }
            let a = products[i].pieces[j].0;
            if let Some(steps) = chain(a, first) {
                hoisted.extend(steps);
                left.push(a);
                chosen.push((i, j, rows));
                rows += metas[a as usize].shape[0];
            }
        }
        let (w, start, width) = key;
        let n = metas[w as usize].shape[1];
        // Joining copies the left operands (rows × depth elements in all) to make one kernel
        // call, packing `w` (depth × n) once, instead of one per product: worth it while the
        // copy costs less than half the packing and the calls it saves. Three attention
        // projections' weight gradients, `[128, 1024] @ [1024, 128]` each, are not (their
        // joined left operand cost a transposing copy the size of all three).
        let saved = (chosen.len().saturating_sub(1)) * (width * n / 2 + CALL_ELEMENTS);
        if chosen.len() < 2 || rows * width > saved {
            continue;
        }
        let dtype = metas[w as usize].dtype;
        let shape = SmallVec::from_slice(&[rows, n]);
        let out = new_value(metas, Meta::made(shape, dtype));
        for &(i, j, row) in &chosen {
            products[i].joined = Some((j, joins.len(), row));
        }
        hoisted.sort_unstable();
        hoisted.dedup();
        joins.push(Joined {
            first,
            hoisted,
            w,
            rows_of_w: (start, width),
            left,
            out,
        });
    }
    if joins.is_empty() {
        return recurse_join(seg, metas);
    }
    let by_slot: HashMap<usize, usize> = products
        .iter()
        .enumerate()
        .filter(|(_, p)| p.joined.is_some())
        .map(|(i, p)| (p.slot, i))
        .collect();
    let old = std::mem::take(&mut seg.exec);
    let template = |k: usize| match &old[k] {
        Slot::Step { step, .. } => step.clone(),
        _ => unreachable!("products are steps"),
    };
    let mut out: Vec<Slot> = Vec::with_capacity(old.len() + 4 * joins.len());
    // views moved ahead so far (two joins may need the same one)
    let mut moved: HashSet<usize> = HashSet::new();
    // slices of weights made so far: (w, first row, rows) -> value
    let mut rows_made: HashMap<(ValueId, usize, usize), ValueId> = HashMap::new();
    let mut rows_of = |w: ValueId,
                       (start, len): (usize, usize),
                       base: &super::capture::Step,
                       out: &mut Vec<Slot>,
                       metas: &mut Vec<Meta>| {
        if start == 0 && len == metas[w as usize].shape[0] {
            return w;
        }
        *rows_made.entry((w, start, len)).or_insert_with(|| {
            let mut meta = metas[w as usize].clone();
            meta.shape[0] = len;
            let id = new_value(metas, meta);
            out.push(shape_step(
                base,
                ShapeOp::Narrow { dim: 0, start, len },
                &[w],
                id,
            ));
            id
        })
    };
    for (k, slot) in old.iter().enumerate() {
        for j in joins.iter().filter(|j| j.first == k) {
            move_ahead(&j.hoisted, &old, &mut moved, &mut out);
            let base = template(k);
            let w = rows_of(j.w, j.rows_of_w, &base, &mut out, metas);
            let mut meta = metas[j.out as usize].clone();
            meta.shape[1] = metas[j.left[0] as usize].shape[1];
            let stacked = new_value(metas, meta);
            out.push(shape_step(&base, ShapeOp::Cat(0), &j.left, stacked));
            out.push(derived(&base, Op::Matmul, &[stacked, w], j.out));
        }
        if moved.contains(&k) {
            continue;
        }
        let Some(&i) = by_slot.get(&k) else {
            out.push(slot.clone());
            continue;
        };
        let p = &products[i];
        let (piece, join, row) = p.joined.expect("joined products only");
        let base = template(k);
        let rows = metas[p.pieces[piece].0 as usize].shape[0];
        let others: Vec<_> = p
            .pieces
            .iter()
            .enumerate()
            .filter(|&(q, _)| q != piece)
            .collect();
        let mut acc = if others.is_empty() {
            p.out
        } else {
            new_value(metas, metas[p.out as usize].clone())
        };
        let block = ShapeOp::Narrow {
            dim: 0,
            start: row,
            len: rows,
        };
        out.push(shape_step(&base, block, &[joins[join].out], acc));
        for (q, &(a, start, width)) in &others {
            let w = rows_of(p.w, (start, width), &base, &mut out, metas);
            let sum = if others.last().is_some_and(|l| l.0 == *q) {
                p.out
            } else {
                new_value(metas, metas[p.out as usize].clone())
            };
            let mut step = base.clone();
            step.kind = StepKind::MatmulAcc {
                exact: false,
                scale: 1.0,
                shared: false,
            };
            step.inputs = SmallVec::from_slice(&[acc, a, w]);
            step.outputs = SmallVec::from_slice(&[Some(sum)]);
            out.push(Slot::step(step));
            acc = sum;
        }
    }
    seg.exec = out;
    recurse_join(seg, metas)
}

/// Appends the view steps `hoisted` (slot indices of `old`) to `out`, each once: a join runs
/// them ahead of itself, and their own slots are skipped later.
fn move_ahead(hoisted: &[usize], old: &[Slot], moved: &mut HashSet<usize>, out: &mut Vec<Slot>) {
    for &h in hoisted {
        if moved.insert(h) {
            out.push(old[h].clone());
        }
    }
}

/// The value `v` is a reshape of, when a reshape step defines it (`def`: the defining
/// slots, [`defining_slots`]).
fn reshaped_from(seg: &Segment, def: &HashMap<ValueId, usize>, v: ValueId) -> Option<ValueId> {
    let Slot::Step { step, .. } = &seg.exec[*def.get(&v)?] else {
        return None;
    };
    matches!(step.kind, StepKind::Op(Op::Shape(ShapeOp::Reshape(_)))).then(|| step.inputs[0])
}

/// The slot that defines each value of `seg` (values from outside it are absent).
fn defining_slots(seg: &Segment) -> HashMap<ValueId, usize> {
    let mut def: HashMap<ValueId, usize> = HashMap::new();
    for (k, slot) in seg.exec.iter().enumerate() {
        match slot {
            Slot::Step { step, .. } => def.extend(step.outputs.iter().flatten().map(|&o| (o, k))),
            Slot::Const { id, .. } => drop(def.insert(*id, k)),
            Slot::StateRead { read, .. } => drop(def.insert(read.id, k)),
            Slot::StateWrite { .. } | Slot::Fused { .. } => {}
        }
    }
    def
}

/// The view steps (slot indices, in order) that lead to `v` from a value defined before slot
/// `before`, or None when something else computes it late: what a join moves ahead.
fn view_chain(
    seg: &Segment,
    def: &HashMap<ValueId, usize>,
    v: ValueId,
    before: usize,
) -> Option<Vec<usize>> {
    let mut steps = Vec::new();
    let mut v = v;
    while let Some(&k) = def.get(&v).filter(|&&k| k >= before) {
        let Slot::Step { step, .. } = &seg.exec[k] else {
            return None;
        };
        let is_view = matches!(
            &step.kind,
            StepKind::Op(Op::Shape(
                ShapeOp::Narrow { .. }
                    | ShapeOp::Reshape(_)
                    | ShapeOp::Permute(_)
                    | ShapeOp::Expand(_)
            ))
        );
        if !is_view {
            return None;
        }
        steps.push(k);
        v = step.inputs[0];
    }
    steps.reverse();
    Some(steps)
}

/// Joins matrix products that share their left operand, `a @ w1`, `a @ w2`, ..., with right
/// operands all ready before the first of them (parameters, typically), into one product
/// `a @ cat([w1, w2, ...], 1)`, each original product becoming a block of its columns (a
/// view; a product added into an accumulator, `acc + a @ w`, becomes the add of its block):
/// the four gate products of an LSTM written with a weight per gate are one product per
/// step. The joined weights are made once per call and shared by every group of the
/// same weights (every time step), where [`join_products`] then joins the steps' products
/// by rows as well. Joining copies the weights, so it runs only where the copy is shared by
/// at least [`JOIN_MIN_ROWS`] rows of products in all. Not exact (the kernel blocks a
/// wider product differently): with fusion on, never in check mode. New values get ids past
/// the recording's, with their metas appended.
pub(super) fn join_columns(seg: &mut Segment, metas: &mut Vec<Meta>) {
    let def = defining_slots(seg);
    let two_d = |v: ValueId| metas[v as usize].shape.len() == 2;
    // products (and products added into an accumulator) by their left operand, in program
    // order: (slot, right operand, output)
    let mut by_left: HashMap<ValueId, Vec<(usize, ValueId, ValueId)>> = HashMap::new();
    let mut order = Vec::new();
    for (k, step, out) in computed(seg) {
        let (a, w) = match step.kind {
            StepKind::Op(Op::Matmul) => (step.inputs[0], step.inputs[1]),
            // (a scaled one is an update folded into its product: left alone)
            StepKind::MatmulAcc { scale: 1.0, .. } => (step.inputs[1], step.inputs[2]),
            _ => continue,
        };
        if two_d(a) && two_d(w) && metas[a as usize].shape[0] <= JOIN_MAX_ROWS {
            let members = by_left.entry(a).or_default();
            if members.is_empty() {
                order.push(a);
            }
            if members.iter().all(|m| m.1 != w) {
                members.push((k, w, out));
            }
        }
    }
    // each group: (first slot, view steps to move ahead, left operand, members); the joined
    // weights by the weights they join, with the rows of products sharing them
    struct Group {
        first: usize,
        hoisted: Vec<usize>,
        a: ValueId,
        members: Vec<(usize, ValueId, ValueId)>,
    }
    let mut groups = Vec::new();
    // per joined weights: the rows of products sharing them, how many groups share them,
    // and whether any member product is small
    let mut uses_of_weights: HashMap<Vec<ValueId>, (usize, usize, bool)> = HashMap::new();
    for a in order {
        let members = &by_left[&a];
        let first = members[0].0;
        let mut hoisted = Vec::new();
        let ready: Vec<_> = members
            .iter()
            .filter(|m| match view_chain(seg, &def, m.1, first) {
                Some(steps) => {
                    hoisted.extend(steps);
                    true
                }
                None => false,
            })
            .copied()
            .collect();
        if ready.len() < 2 {
            continue;
        }
        let work = |m: &(usize, ValueId, ValueId)| {
            let (a, w) = (&metas[a as usize].shape, &metas[m.1 as usize].shape);
            a[0] * a[1] * w[1]
        };
        let weights: Vec<ValueId> = ready.iter().map(|m| m.1).collect();
        let uses = uses_of_weights.entry(weights).or_default();
        uses.0 += metas[a as usize].shape[0];
        uses.1 += 1;
        uses.2 |= ready.iter().any(|m| work(m) < JOIN_MAX_WORK);
        hoisted.sort_unstable();
        hoisted.dedup();
        groups.push(Group {
            first,
            hoisted,
            a,
            members: ready,
        });
    }
    groups.retain(|g| {
        let weights: Vec<ValueId> = g.members.iter().map(|m| m.1).collect();
        // Products this large already run near the kernel's peak: joining them once would
        // only add the copy (an hvp's `x @ W` and `x @ V`, [32, 100] by [100, 1000], 7%
        // slower on the whole hvp). Shared by several groups (an LSTM's time steps), the
        // copy is made once and every group saves its separate products.
        let (rows, groups, small) = uses_of_weights[&weights];
        rows >= JOIN_MIN_ROWS && (groups > 1 || small)
    });
    if groups.is_empty() {
        return recurse_columns(seg, metas);
    }
    // every member product's slot: (its group, its first column)
    let mut member_at: HashMap<usize, (usize, usize)> = HashMap::new();
    for (gi, g) in groups.iter().enumerate() {
        let mut at = 0;
        for m in &g.members {
            member_at.insert(m.0, (gi, at));
            at += metas[m.1 as usize].shape[1];
        }
    }
    let old = std::mem::take(&mut seg.exec);
    let mut out: Vec<Slot> = Vec::with_capacity(old.len() + 3 * groups.len());
    let mut joined_weights: HashMap<Vec<ValueId>, ValueId> = HashMap::new();
    let mut products = vec![0 as ValueId; groups.len()];
    let mut moved: HashSet<usize> = HashSet::new();
    for (k, slot) in old.iter().enumerate() {
        for (gi, g) in groups.iter().enumerate().filter(|(_, g)| g.first == k) {
            let Slot::Step { step: base, .. } = &old[k] else {
                unreachable!("products are steps")
            };
            move_ahead(&g.hoisted, &old, &mut moved, &mut out);
            let weights: Vec<ValueId> = g.members.iter().map(|m| m.1).collect();
            let w = *joined_weights.entry(weights).or_insert_with_key(|weights| {
                let mut meta = metas[weights[0] as usize].clone();
                meta.shape[1] = weights.iter().map(|&w| metas[w as usize].shape[1]).sum();
                let id = new_value(metas, meta);
                out.push(shape_step(base, ShapeOp::Cat(1), weights, id));
                id
            });
            let mut meta = metas[g.a as usize].clone();
            meta.shape[1] = metas[w as usize].shape[1];
            products[gi] = new_value(metas, meta);
            out.push(derived(base, Op::Matmul, &[g.a, w], products[gi]));
        }
        if moved.contains(&k) {
            continue;
        }
        match member_at.get(&k) {
            Some(&(gi, start)) => {
                let Slot::Step { step, .. } = slot else {
                    unreachable!("products are steps")
                };
                let product = step.outputs[0].expect("a product has its output");
                let len = metas[product as usize].shape[1];
                let block = ShapeOp::Narrow { dim: 1, start, len };
                if let StepKind::MatmulAcc { .. } = step.kind {
                    // `acc + a @ w`: the block added to the accumulator, an elementwise add
                    // that fuses with what reads it
                    let part = new_value(metas, metas[product as usize].clone());
                    out.push(shape_step(step, block, &[products[gi]], part));
                    let add = Op::Binary(Binary::Add);
                    out.push(derived(step, add, &[step.inputs[0], part], product));
                } else {
                    out.push(shape_step(step, block, &[products[gi]], product));
                }
            }
            None => out.push(slot.clone()),
        }
    }
    seg.exec = out;
    recurse_columns(seg, metas)
}

/// Joined weights serve at least this many rows of products in all (see [`join_columns`]):
/// joining copies the weights, one element per `2 · rows` flops of the products, so a few
/// rows would spend on the copy what the joined product saves (an LSTM's per-step gate
/// products share their joined weights over every step, 33 rows at batch 1).
const JOIN_MIN_ROWS: usize = 32;

/// Products of at least this many multiply-adds each are joined by [`join_columns`] only
/// where the joined weights are shared.
const JOIN_MAX_WORK: usize = 1 << 20;

fn recurse_columns(seg: &mut Segment, metas: &mut Vec<Meta>) {
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            join_columns(b, metas);
        }
    }
}

/// Products of at most this many rows are joined by [`join_products`].
const JOIN_MAX_ROWS: usize = 128;

/// What one matrix kernel call costs beyond its arithmetic, in elements copied (its
/// dispatch and setup, about a microsecond): [`join_products`] weighs the calls a join saves
/// against the copy it makes.
const CALL_ELEMENTS: usize = 4096;

fn recurse_join(seg: &mut Segment, metas: &mut Vec<Meta>) {
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            join_products(b, metas);
        }
    }
}

/// A step like `base` (its origin) computing `op` of `inputs` into `output`.
fn derived(base: &super::capture::Step, op: Op, inputs: &[ValueId], output: ValueId) -> Slot {
    let mut s = base.clone();
    s.kind = StepKind::Op(op);
    s.inputs = SmallVec::from_slice(inputs);
    s.outputs = SmallVec::from_slice(&[Some(output)]);
    s.operand = None;
    Slot::step(s)
}

/// [`derived`] for a shape op.
fn shape_step(
    base: &super::capture::Step,
    op: ShapeOp,
    inputs: &[ValueId],
    output: ValueId,
) -> Slot {
    derived(base, Op::Shape(op), inputs, output)
}

/// A new value of a pass's own, numbered past every value so far.
fn new_value(metas: &mut Vec<Meta>, meta: Meta) -> ValueId {
    metas.push(meta);
    (metas.len() - 1) as ValueId
}

/// Rewrites a sum of zero-padded slices that tile a dim (`pad(a, 1, 0..3) + pad(b, 1, 3..4)`)
/// as the concatenation of the slices (`cat([a, b], 1)`). The gradient of a value read
/// through several slices is such a sum, one padded term per slice: an LSTM's gates, read
/// as four slices of one product, get their gradient as four padded blocks added up, three
/// passes over the whole block where one copy of each slice does. A sum that covers one
/// contiguous range and not the whole dim becomes the padded concatenation.
///
/// Not exact for one value: a slice's `-0.0` comes out as `-0.0`, where the sum's
/// `-0.0 + 0.0` gave `+0.0` (equal as numbers). So like [`batch_products`] it runs with
/// fusion on and never in check mode. The padded terms and partial sums must have no other
/// reader (`uses[v]` counts every read of `v` in the plan). New values get ids past the
/// recording's, with their metas appended.
pub(super) fn pads_to_cat(seg: &mut Segment, metas: &mut Vec<Meta>, uses: &[u32]) {
    /// Zero-padded slices summed: along `dim` of size `size`, `(start, len, value)` pieces.
    struct Pads {
        dim: usize,
        size: usize,
        pieces: Vec<(usize, usize, ValueId)>,
        /// Slot indices of the pads and the adds that built it.
        steps: Vec<usize>,
    }
    let mut sums: HashMap<ValueId, Pads> = HashMap::new();
    // sums a later add took in, by value
    let mut absorbed: HashSet<ValueId> = HashSet::new();
    for (k, step, out) in computed(seg) {
        match &step.kind {
            StepKind::Op(Op::Shape(ShapeOp::PadNarrow { dim, start, size })) => {
                let len = metas[step.inputs[0] as usize].shape[*dim];
                sums.insert(
                    out,
                    Pads {
                        dim: *dim,
                        size: *size,
                        pieces: vec![(*start, len, step.inputs[0])],
                        steps: vec![k],
                    },
                );
            }
            StepKind::Op(Op::Binary(Binary::Add)) => {
                let (x, y) = (step.inputs[0], step.inputs[1]);
                let (Some(a), Some(b)) = (sums.get(&x), sums.get(&y)) else {
                    continue;
                };
                let disjoint = a
                    .pieces
                    .iter()
                    .all(|&(s, l, _)| b.pieces.iter().all(|&(t, m, _)| s + l <= t || t + m <= s));
                let same = x != y
                    && a.dim == b.dim
                    && a.size == b.size
                    && metas[x as usize].shape == metas[y as usize].shape
                    && metas[x as usize].dtype == metas[y as usize].dtype
                    && uses.get(x as usize) == Some(&1)
                    && uses.get(y as usize) == Some(&1);
                if !(same && disjoint) {
                    continue;
                }
                let mut pieces = [a.pieces.as_slice(), b.pieces.as_slice()].concat();
                pieces.sort_unstable();
                let mut steps = [a.steps.as_slice(), b.steps.as_slice(), &[k]].concat();
                steps.sort_unstable();
                let merged = Pads {
                    dim: a.dim,
                    size: a.size,
                    pieces,
                    steps,
                };
                absorbed.insert(x);
                absorbed.insert(y);
                sums.insert(out, merged);
            }
            _ => {}
        }
    }
    // the largest sums: each replaces its last add with a concatenation (and a pad)
    let mut removed = vec![false; seg.exec.len()];
    let mut replacement: HashMap<usize, Vec<Slot>> = HashMap::new();
    for (&out, sum) in &sums {
        let contiguous = sum.pieces.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0);
        if absorbed.contains(&out) || sum.pieces.len() < 2 || !contiguous {
            continue;
        }
        let last = *sum.steps.last().expect("a sum has steps");
        let Slot::Step { step, .. } = &seg.exec[last] else {
            unreachable!("sums are steps")
        };
        let make =
            |op: ShapeOp, inputs: &[ValueId], output: ValueId| shape_step(step, op, inputs, output);
        let sources: Vec<ValueId> = sum.pieces.iter().map(|p| p.2).collect();
        let start = sum.pieces[0].0;
        let covered: usize = sum.pieces.iter().map(|p| p.1).sum();
        let new = if covered == sum.size {
            vec![make(ShapeOp::Cat(sum.dim), &sources, out)]
        } else {
            let mut meta = metas[out as usize].clone();
            meta.shape[sum.dim] = covered;
            let joined = new_value(metas, meta);
            let pad = ShapeOp::PadNarrow {
                dim: sum.dim,
                start,
                size: sum.size,
            };
            vec![
                make(ShapeOp::Cat(sum.dim), &sources, joined),
                make(pad, &[joined], out),
            ]
        };
        replacement.insert(last, new);
        for &k in &sum.steps {
            removed[k] = true;
        }
    }
    splice(seg, replacement, &removed);
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            pads_to_cat(b, metas, uses);
        }
    }
}

/// Rewrites a slice of a matrix product's columns (or rows) as the product of the sliced
/// operand: `narrow(a @ b, 1, s, n)` as `a @ narrow(b, 1, s, n)`, `narrow(a @ b, 0, s, n)`
/// as `narrow(a, 0, s, n) @ b`. The gradient of a concatenation is such a slice: an LSTM's
/// `cat([x_t, h]) @ W` needs the gradient of `h` only, so its backward computes two thirds
/// of the product instead of all of it (the product itself dies when only slices read it).
/// A product whose slices along one dim read all of it stays whole: cutting it saves nothing,
/// and a recurrent cell's gates taken by slices of `cat([x_t, h]) @ W` (`g.narrow(1, ..)`, as
/// `chunk` does) would lose the shared `W` that joins the input projections of every step
/// into one product ([`join_columns`]). Not exact: the matrix kernel may block a narrower
/// product's sums differently, so like [`batch_products`] it runs with fusion on and never in
/// check mode. New values get ids
/// past the recording's, with their metas appended.
pub(super) fn narrow_products(seg: &mut Segment, metas: &mut Vec<Meta>, uses: &[u32]) {
    // products read by slices only (else the product would be computed twice over), with
    // the slices: (dim, start, len)
    let mut slices: HashMap<ValueId, Vec<(usize, usize, usize)>> = HashMap::new();
    for slot in &seg.exec {
        if let Slot::Step { step, .. } = slot {
            if let StepKind::Op(Op::Shape(ShapeOp::Narrow { dim, start, len })) = &step.kind {
                slices
                    .entry(step.inputs[0])
                    .or_default()
                    .push((*dim, *start, *len));
            }
        }
    }
    // whether slices (dim, start, len) of a value of `shape`, all along one dim, read all of it
    fn whole(cuts: &[(usize, usize, usize)], shape: &[usize]) -> bool {
        let dim = cuts[0].0;
        let mut spans: Vec<(usize, usize)> = cuts.iter().map(|c| (c.1, c.1 + c.2)).collect();
        spans.sort_unstable();
        let mut reached = 0;
        for (start, end) in spans {
            if start > reached {
                return false;
            }
            reached = reached.max(end);
        }
        cuts.iter().all(|c| c.0 == dim) && reached == shape[dim]
    }
    let mut products: HashMap<ValueId, (ValueId, ValueId)> = HashMap::new();
    let mut out = Vec::with_capacity(seg.exec.len());
    for slot in std::mem::take(&mut seg.exec) {
        let Slot::Step { step, .. } = &slot else {
            out.push(slot);
            continue;
        };
        let two_d = |v: ValueId| metas[v as usize].shape.len() == 2;
        match &step.kind {
            StepKind::Op(Op::Matmul) if step.inputs.iter().all(|&v| two_d(v)) => {
                if let Some(o) = step.outputs[0] {
                    let cuts = slices.get(&o).map_or(&[][..], Vec::as_slice);
                    if !cuts.is_empty()
                        && cuts.len() == uses[o as usize] as usize
                        && !whole(cuts, &metas[o as usize].shape)
                    {
                        products.insert(o, (step.inputs[0], step.inputs[1]));
                    }
                }
            }
            StepKind::Op(Op::Shape(ShapeOp::Narrow { dim, start, len })) => {
                if let Some(&(a, b)) = products.get(&step.inputs[0]) {
                    let (dim, start, len) = (*dim, *start, *len);
                    let out_id = step.outputs[0].expect("a narrow has its output");
                    // the operand to slice: b's columns, or a's rows
                    let (sliced, axis) = if dim == 1 { (b, 1) } else { (a, 0) };
                    let mut shape = metas[sliced as usize].shape.clone();
                    shape[axis] = len;
                    let dtype = metas[sliced as usize].dtype;
                    let part = new_value(metas, Meta::made(shape, dtype));
                    let narrow = ShapeOp::Narrow {
                        dim: axis,
                        start,
                        len,
                    };
                    out.push(shape_step(step, narrow, &[sliced], part));
                    let operands = if dim == 1 { [a, part] } else { [part, b] };
                    out.push(derived(step, Op::Matmul, &operands, out_id));
                    continue;
                }
            }
            _ => {}
        }
        out.push(slot);
    }
    seg.exec = out;
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            narrow_products(b, metas, uses);
        }
    }
}

/// Products whose inner (contracted) dim has size 1 — `a[.., m, 1] @ b[.., 1, n]`, the weight
/// gradient of a linear layer on one sample — become the broadcast multiply they are
/// (`out[i, j] = a[i] b[j]`). Each element is one rounded product either way, so the values
/// are the same bits; what changes is that the multiply is elementwise, so the fusion that
/// follows runs it in the same pass as what uses it (the SGD update `w - lr · g` of a compiled
/// training step reads `w` and writes the new `w` once, instead of the product writing `g`
/// and the update reading it back). Runs with fusion on.
pub(super) fn outer_products(seg: &mut Segment, metas: &[Meta]) {
    const OUTER_MIN_ROW: usize = 256;
    for slot in seg.exec.iter_mut() {
        let Slot::Step { step, .. } = slot else {
            continue;
        };
        if !matches!(step.kind, StepKind::Op(Op::Matmul)) {
            continue;
        }
        let (a, b) = (
            &metas[step.inputs[0] as usize].shape,
            &metas[step.inputs[1] as usize].shape,
        );
        // Both at least matrices with the same batch dims: broadcasting the multiply then
        // gives exactly the product's shape. Rows of at least `OUTER_MIN_ROW`: a fused pass
        // reads `a`'s value and `b`'s row in place along each row, but gathers short rows
        // element by element, slower than the matrix kernel writing the product (an mlp's
        // [1000, 10] output-layer gradient: 7% slower per step as a multiply).
        let outer = a.len() >= 2
            && a.len() == b.len()
            && a[a.len() - 1] == 1
            && b[b.len() - 2] == 1
            && b[b.len() - 1] >= OUTER_MIN_ROW
            && a[..a.len() - 2] == b[..b.len() - 2];
        if outer {
            step.kind = StepKind::Op(Op::Binary(Binary::Mul));
        }
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            outer_products(b, metas);
        }
    }
}
