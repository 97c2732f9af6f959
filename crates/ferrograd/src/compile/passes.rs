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
//!   the same as `x * n` in floating point.
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
use crate::ops::shape::ShapeOp;
use crate::Array;

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

/// The simpler form of `op` on `inputs` (whose result is `out`), if there is one.
fn simpler(op: &Op, inputs: &[ValueId], out: ValueId, known: &Known<'_>) -> Option<Simpler> {
    let meta = |v: ValueId| &known.metas[v as usize];
    let x = *inputs.first()?;
    let def = |v: ValueId| known.defs.get(&v);
    let same_as = |v: ValueId| meta(v).shape == meta(out).shape && meta(v).dtype == meta(out).dtype;
    match op {
        Op::Scalar(ScalarOp::Mul | ScalarOp::Div | ScalarOp::Pow, s) if *s == 1.0 => {
            Some(Simpler::Alias(x))
        }
        Op::Scalar(ScalarOp::Add, s) if s.to_bits() == (-0.0f64).to_bits() => {
            Some(Simpler::Alias(x))
        }
        Op::Unary(Unary::Neg) => match def(x) {
            Some((Op::Unary(Unary::Neg), i)) => Some(Simpler::Alias(i[0])),
            _ => None,
        },
        Op::Binary(b) => {
            let y = inputs[1];
            let is =
                |v: ValueId, value: f64| known.consts.get(&v).is_some_and(|c| all_bits(c, value));
            let keep = |v: ValueId| same_as(v).then_some(Simpler::Alias(v));
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
            let source = match def(x) {
                Some((Op::Shape(ShapeOp::Reshape(_)), i)) => i[0],
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
    let mut consts = HashSet::new();
    constants(seg, &mut consts);
    accumulate_in(seg, metas, uses, &consts);
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
                step.kind = StepKind::MatmulAcc;
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
    for (k, slot) in seg.exec.iter().enumerate() {
        let Slot::Step { step, .. } = slot else {
            continue;
        };
        let Some(out) = step.outputs.first().copied().flatten() else {
            continue;
        };
        match &step.kind {
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
            StepKind::MatmulAcc => {
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
        let mut new = |shape: crate::Shape| {
            metas.push(Meta { shape, dtype });
            (metas.len() - 1) as ValueId
        };
        let joined_a = new(SmallVec::from_slice(&[m, depth]));
        let joined_b = new(SmallVec::from_slice(&[depth, n]));
        let make = |op: Op, inputs: &[ValueId], output: ValueId| {
            let mut s = step.clone();
            s.kind = StepKind::Op(op);
            s.inputs = SmallVec::from_slice(inputs);
            s.outputs = SmallVec::from_slice(&[Some(output)]);
            s.operand = None;
            Slot::step(s)
        };
        replacement.insert(
            last,
            vec![
                make(Op::Shape(ShapeOp::Cat(1)), &c.a, joined_a),
                make(Op::Shape(ShapeOp::Cat(0)), &c.b, joined_b),
                make(Op::Matmul, &[joined_a, joined_b], out),
            ],
        );
        for &k in &c.steps {
            removed[k] = true;
        }
    }
    if !replacement.is_empty() {
        let old = std::mem::take(&mut seg.exec);
        for (k, slot) in old.into_iter().enumerate() {
            match replacement.remove(&k) {
                Some(new) => seg.exec.extend(new),
                None if removed[k] => {}
                None => seg.exec.push(slot),
            }
        }
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            batch_products(b, metas);
        }
    }
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
    // the comparisons of this segment read more than once, by slot index
    let mut compares: HashMap<ValueId, usize> = HashMap::new();
    for (k, slot) in seg.exec.iter().enumerate() {
        if let Slot::Step { step, .. } = slot {
            if let (StepKind::Op(Op::Compare(c)), Some(out)) = (&step.kind, step.outputs[0]) {
                let float = metas[step.inputs[0] as usize].dtype.is_float();
                if float && uses[out as usize] > 1 && c.is_comparison() {
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
                        metas.push(metas[v as usize].clone());
                        let id = (metas.len() - 1) as ValueId;
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

/// Rewrites a slice of a matrix product's columns (or rows) as the product of the sliced
/// operand: `narrow(a @ b, 1, s, n)` as `a @ narrow(b, 1, s, n)`, `narrow(a @ b, 0, s, n)`
/// as `narrow(a, 0, s, n) @ b`. The gradient of a concatenation is such a slice: an LSTM's
/// `cat([x_t, h]) @ W` needs the gradient of `h` only, so its backward computes two thirds
/// of the product instead of all of it (the product itself dies when only slices read it).
/// Not exact: the matrix kernel may block a narrower product's sums differently, so like
/// [`batch_products`] it runs with fusion on and never in check mode. New values get ids
/// past the recording's, with their metas appended.
pub(super) fn narrow_products(seg: &mut Segment, metas: &mut Vec<Meta>, uses: &[u32]) {
    // products read by slices only (else the product would be computed twice over)
    let mut sliced_reads: HashMap<ValueId, u32> = HashMap::new();
    for slot in &seg.exec {
        if let Slot::Step { step, .. } = slot {
            if let StepKind::Op(Op::Shape(ShapeOp::Narrow { .. })) = &step.kind {
                *sliced_reads.entry(step.inputs[0]).or_default() += 1;
            }
        }
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
                    if sliced_reads.get(&o) == Some(&uses[o as usize]) {
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
                    metas.push(Meta { shape, dtype });
                    let part = (metas.len() - 1) as ValueId;
                    let mut narrow = step.clone();
                    narrow.kind = StepKind::Op(Op::Shape(ShapeOp::Narrow {
                        dim: axis,
                        start,
                        len,
                    }));
                    narrow.inputs = SmallVec::from_slice(&[sliced]);
                    narrow.outputs = SmallVec::from_slice(&[Some(part)]);
                    let mut product = step.clone();
                    product.kind = StepKind::Op(Op::Matmul);
                    product.inputs = if dim == 1 {
                        SmallVec::from_slice(&[a, part])
                    } else {
                        SmallVec::from_slice(&[part, b])
                    };
                    product.outputs = SmallVec::from_slice(&[Some(out_id)]);
                    out.push(Slot::step(narrow));
                    out.push(Slot::step(product));
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
