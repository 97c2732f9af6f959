//! Moving slices and concatenations across pointwise ops, so that the ops meet in one fused
//! pass.
//!
//! Plain tensor code slices a value after computing it and joins values before computing
//! on them. An LSTM step adds the bias to the block of all four gates, views it as
//! `[b, 4, h]`, takes the sigmoid of three gates at once and reads each gate through a
//! slice; its gradient joins three gates' gradients with `cat` and applies the sigmoid's
//! derivative to the joined block. Each of those ops runs over a shape of its own, so none
//! of them fuses with the per-gate arithmetic the slices feed, which runs over `[b, h]`:
//! the bias add, the sigmoid, the cat and the derivative are four more passes over memory
//! per time step. Three rewrites bring them to the per-gate shape:
//!
//! - **A slice of a pointwise op is the op of the slices**: `narrow(f(x, y))` becomes
//!   `f(narrow(x), narrow(y))`, and the same for a reshape that only splits dims or adds
//!   and removes dims of size 1 (a view of any layout, never a copy). Applied when every
//!   reader of the op's value is such a view and the views do not overlap, so no element is
//!   computed twice; an operand broadcast over leading dims (a bias) is sliced or reshaped
//!   along the dims it has.
//! - **A pointwise op of a concatenation is the concatenation of the op of its pieces**:
//!   `f(cat(a, b), y)` becomes `cat(f(a, y₁), f(b, y₂))`, the other operands sliced to
//!   match. Applied when only that op reads the concatenation (its copy is then gone); a
//!   piece that is a value with size-1 dims added (the `[b, 1, h]` view of a `[b, h]` gate
//!   gradient) is computed in that value's own shape, where it fuses with what made it.
//! - **A concatenation of a concatenation along the same dim is one concatenation**, when
//!   nothing else reads the inner one.
//!
//! Each rewrite computes every element with the same function of the same operand values,
//! so the plan's results are unchanged bit for bit (the passes run in check mode too). New
//! values get ids past the recording's, with their metas appended.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::capture::{Meta, Step, StepKind, ValueId};
use super::passes::splice;
use super::plan::{End, Segment, Slot};
use crate::op::Op;
use crate::ops::nn::NnOp;
use crate::ops::shape::ShapeOp;
use crate::Shape;

/// Concatenations of at most this many pieces are split across a pointwise op (each piece
/// becomes an op of its own).
const CAT_MAX_PIECES: usize = 8;

/// The output of `step` when it is a pointwise op on floats: each output element a function
/// of the inputs' elements at the same (broadcast) index.
fn pointwise(step: &Step, metas: &[Meta]) -> Option<ValueId> {
    let StepKind::Op(op) = &step.kind else {
        return None;
    };
    let pointwise = matches!(
        op,
        Op::Unary(_)
            | Op::Binary(_)
            | Op::Scalar(..)
            | Op::Clamp { .. }
            | Op::Nn(NnOp::TanhBackward | NnOp::SigmoidBackward | NnOp::GeluBackward)
    );
    let out = step.outputs.first().copied().flatten()?;
    let float = |v: ValueId| metas[v as usize].dtype.is_float();
    (pointwise && step.outputs.len() == 1 && float(out) && step.inputs.iter().all(|&i| float(i)))
        .then_some(out)
}

/// Whether a reshape from `s` to `t` only splits dims and adds or removes dims of size 1:
/// a view of any layout, never a copy.
fn splits_only(s: &[usize], t: &[usize]) -> bool {
    let mut t = t.iter().copied().filter(|&n| n != 1);
    for n in s.iter().copied().filter(|&n| n != 1) {
        let mut p = 1;
        while p < n {
            match t.next() {
                Some(m) => p *= m,
                None => return false,
            }
        }
        if p != n {
            return false;
        }
    }
    t.next().is_none()
}

/// The shape `view` gives a value of shape `x`.
fn viewed(x: &[usize], view: &ShapeOp) -> Shape {
    match view {
        ShapeOp::Narrow { dim, len, .. } => {
            let mut s: Shape = x.into();
            s[*dim] = *len;
            s
        }
        ShapeOp::Reshape(t) => t.clone(),
        _ => unreachable!("only slices and reshapes move across pointwise ops"),
    }
}

/// How `view` (a narrow or reshape taking a pointwise op's value of shape `s` to shape `t`)
/// applies to one of the op's operands, of shape `x`: `None` when it cannot (an operand
/// broadcast along inner dims), `Some(None)` when the operand broadcasts as it is, else the
/// view to take of it.
fn operand_view(x: &[usize], s: &[usize], view: &ShapeOp, t: &[usize]) -> Option<Option<ShapeOp>> {
    if x == s {
        return Some(Some(view.clone()));
    }
    if x.len() > s.len() {
        return None;
    }
    let o = s.len() - x.len();
    let covers = |j: usize| {
        (o..s.len()).all(|i| {
            if i < j {
                x[i - o] == 1
            } else {
                x[i - o] == s[i]
            }
        })
    };
    if x.iter().product::<usize>() == 1 {
        return (x.len() <= t.len()).then_some(None);
    }
    match view {
        // sliced along the dims it has, broadcast as it is along the others
        ShapeOp::Narrow { dim, start, len } => {
            Some((*dim >= o && x[dim - o] != 1).then(|| ShapeOp::Narrow {
                dim: dim - o,
                start: *start,
                len: *len,
            }))
        }
        // reshaped when it has s's dims from some `j` on and 1 (or nothing) before
        ShapeOp::Reshape(_) => (o..=s.len()).filter(|&j| covers(j)).find_map(|j| {
            let (lead, tail) = (s[..j].iter().product::<usize>(), s[j..].iter().product());
            // the target's dims holding the operand's elements
            let k = (0..=t.len()).find(|&k| {
                t[..k].iter().product::<usize>() == lead && t[k..].iter().product::<usize>() == tail
            })?;
            Some((t[k..] != *x).then(|| ShapeOp::Reshape(t[k..].into())))
        }),
        _ => None,
    }
}

/// The views of a segment: those it has (reused rather than made twice) and those a pass
/// adds. Indexed by value id (dense; values a pass adds are pushed as they come).
struct Views {
    /// For each value, the views of it: (the view's value, the slot before which it is
    /// ready).
    taken: Vec<SmallVec<[(ValueId, usize); 2]>>,
    /// For each value that is a view, of what and how.
    of: Vec<Option<(ValueId, ShapeOp)>>,
}

impl Views {
    fn of(seg: &Segment, n_values: usize) -> Views {
        let mut views = Views {
            taken: vec![SmallVec::new(); n_values],
            of: vec![None; n_values],
        };
        for (k, slot) in seg.exec.iter().enumerate() {
            let Slot::Step { step, .. } = slot else {
                continue;
            };
            if let (
                StepKind::Op(Op::Shape(op @ (ShapeOp::Narrow { .. } | ShapeOp::Reshape(_)))),
                Some(out),
            ) = (&step.kind, step.outputs[0])
            {
                views.taken[step.inputs[0] as usize].push((out, k + 1));
                views.of[out as usize] = Some((step.inputs[0], op.clone()));
            }
        }
        views
    }

    /// What `v` is a view of, and how.
    fn source(&self, v: ValueId) -> Option<&(ValueId, ShapeOp)> {
        self.of.get(v as usize)?.as_ref()
    }

    /// A value no longer defined as a view (its slot rewritten).
    fn forget(&mut self, v: ValueId) {
        if let Some((x, _)) = self.of[v as usize].take() {
            self.taken[x as usize].retain(|(w, _)| *w != v);
        }
    }

    /// `view` of `x`, needed by a step placed at slot `at`: `x` itself when the view changes
    /// nothing, an existing view ready by then, or a new view step pushed to `out` (a slice
    /// of a slice along the same dim, or a reshape of a reshape, is taken of the original).
    fn view(
        &mut self,
        metas: &mut Vec<Meta>,
        base: &Step,
        x: ValueId,
        view: ShapeOp,
        at: usize,
        out: &mut Vec<Slot>,
    ) -> ValueId {
        // (values a pass made since are no views, and have none yet)
        self.taken.resize(metas.len(), SmallVec::new());
        self.of.resize(metas.len(), None);
        let (mut x, mut view) = (x, view);
        match (&view, self.source(x)) {
            (
                ShapeOp::Narrow { dim, start, len },
                Some((
                    y,
                    ShapeOp::Narrow {
                        dim: d, start: s, ..
                    },
                )),
            ) if d == dim => {
                view = ShapeOp::Narrow {
                    dim: *dim,
                    start: s + start,
                    len: *len,
                };
                x = *y;
            }
            (ShapeOp::Reshape(_), Some((y, ShapeOp::Reshape(_)))) => x = *y,
            _ => {}
        }
        let shape = viewed(&metas[x as usize].shape, &view);
        if shape == metas[x as usize].shape {
            return x;
        }
        let existing = self.taken[x as usize].iter().find(|&&(v, ready)| {
            ready <= at
                && self.of[v as usize]
                    .as_ref()
                    .is_some_and(|(_, op)| *op == view)
        });
        if let Some(&(v, _)) = existing {
            return v;
        }
        let dtype = metas[x as usize].dtype;
        metas.push(Meta::made(shape, dtype));
        let v = (metas.len() - 1) as ValueId;
        let mut s = base.clone();
        s.kind = StepKind::Op(Op::Shape(view.clone()));
        s.inputs = SmallVec::from_slice(&[x]);
        s.outputs = SmallVec::from_slice(&[Some(v)]);
        s.operand = None;
        out.push(Slot::step(s));
        self.taken.push(SmallVec::new());
        self.of.push(None);
        self.taken[x as usize].push((v, at));
        self.of[v as usize] = Some((x, view));
        v
    }
}

/// A copy of pointwise step `base` reading `inputs` into `output`.
fn pointwise_step(base: &Step, inputs: SmallVec<[ValueId; 4]>, output: ValueId) -> Slot {
    let mut s = base.clone();
    s.inputs = inputs;
    s.outputs = SmallVec::from_slice(&[Some(output)]);
    Slot::step(s)
}

/// Moves every slice (or splitting reshape) of a pointwise op's value onto the op's operands
/// (the first rewrite of the module docs). `uses[v]` counts every read of `v` in the plan.
/// Returns whether anything changed.
pub(super) fn slices_through(seg: &mut Segment, metas: &mut Vec<Meta>, uses: &[u32]) -> bool {
    let mut readers: Vec<SmallVec<[usize; 2]>> = vec![SmallVec::new(); metas.len()];
    for (k, slot) in seg.exec.iter().enumerate() {
        if let Slot::Step { step, .. } = slot {
            for &i in &step.inputs {
                readers[i as usize].push(k);
            }
        }
    }
    // (made at the first rewrite: a pass that finds none costs one walk)
    let mut views: Option<Views> = None;
    let mut replacement: HashMap<usize, Vec<Slot>> = HashMap::new();
    let mut removed = vec![false; seg.exec.len()];
    for (k, slot) in seg.exec.iter().enumerate() {
        let Slot::Step { step, .. } = slot else {
            continue;
        };
        let Some(e) = pointwise(step, metas) else {
            continue;
        };
        let rs = &readers[e as usize];
        if rs.is_empty() || rs.len() as u32 != uses[e as usize] {
            continue;
        }
        let s = metas[e as usize].shape.clone();
        // every reader a view: (its slot, the view, its value)
        let reads: Option<Vec<(usize, ShapeOp, ValueId)>> = rs
            .iter()
            .map(|&r| {
                let Slot::Step { step: v, .. } = &seg.exec[r] else {
                    return None;
                };
                let StepKind::Op(Op::Shape(op)) = &v.kind else {
                    return None;
                };
                let out = v.outputs[0]?;
                // (a reshape that only adds dims of size 1 would move the op out of the
                // squeezed shape the ops around it run in)
                let fits = match op {
                    ShapeOp::Narrow { .. } => true,
                    ShapeOp::Reshape(t) => {
                        splits_only(&s, t) && (squeezed(t) != squeezed(&s) || t.len() < s.len())
                    }
                    _ => false,
                };
                fits.then(|| (r, op.clone(), out))
            })
            .collect();
        let Some(mut reads) = reads else {
            continue;
        };
        // no element computed twice: one reader, or slices of one dim that do not overlap
        if reads.len() > 1 {
            let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
            for (_, op, _) in &reads {
                let ShapeOp::Narrow { dim, start, len } = op else {
                    ranges.clear();
                    break;
                };
                ranges.push((*dim, *start, *len));
            }
            ranges.sort_unstable();
            let disjoint = ranges.len() == reads.len()
                && ranges
                    .windows(2)
                    .all(|w| w[0].0 == w[1].0 && w[0].1 + w[0].2 <= w[1].1);
            if !disjoint {
                continue;
            }
        }
        // each operand's view for each reader
        let plans: Option<Vec<Vec<Option<ShapeOp>>>> = reads
            .iter()
            .map(|(_, op, out)| {
                let t = &metas[*out as usize].shape;
                (step.inputs.iter())
                    .map(|&x| operand_view(&metas[x as usize].shape, &s, op, t))
                    .collect()
            })
            .collect();
        let Some(plans) = plans else {
            continue;
        };
        let base = step.clone();
        let views = views.get_or_insert_with(|| Views::of(seg, metas.len()));
        reads.sort_unstable_by_key(|r| r.0);
        for ((r, _, out), plan) in reads.into_iter().zip(plans) {
            views.forget(out);
            let mut new = Vec::new();
            let inputs = (base.inputs.iter().zip(plan))
                .map(|(&x, view)| match view {
                    None => x,
                    Some(view) => views.view(metas, &base, x, view, r, &mut new),
                })
                .collect();
            new.push(pointwise_step(&base, inputs, out));
            replacement.insert(r, new);
        }
        removed[k] = true;
    }
    let changed = splice(seg, replacement, &removed);
    let mut below = false;
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            below |= slices_through(b, metas, uses);
        }
    }
    changed || below
}

/// A value's shape without its dims of size 1.
fn squeezed(s: &[usize]) -> Shape {
    s.iter().copied().filter(|&n| n != 1).collect()
}

/// Splits each pointwise op of a concatenation into the concatenation of the op of its
/// pieces (the second rewrite of the module docs). `uses[v]` counts every read of `v` in the
/// plan. Returns whether anything changed.
pub(super) fn cats_through(seg: &mut Segment, metas: &mut Vec<Meta>, uses: &[u32]) -> bool {
    // the slot defining each concatenation
    let mut cats: Vec<Option<usize>> = vec![None; metas.len()];
    for (k, slot) in seg.exec.iter().enumerate() {
        if let Slot::Step { step, .. } = slot {
            if let (StepKind::Op(Op::Shape(ShapeOp::Cat(_))), Some(out)) =
                (&step.kind, step.outputs[0])
            {
                cats[out as usize] = Some(k);
            }
        }
    }
    let mut views: Option<Views> = None;
    let mut replacement: HashMap<usize, Vec<Slot>> = HashMap::new();
    let mut removed = vec![false; seg.exec.len()];
    for k in 0..seg.exec.len() {
        let Slot::Step { step, .. } = &seg.exec[k] else {
            continue;
        };
        let Some(e) = pointwise(step, metas) else {
            continue;
        };
        let s = metas[e as usize].shape.clone();
        // the first operand that is a concatenation of the op's shape read only here
        let found = step.inputs.iter().enumerate().find_map(|(i, &x)| {
            let c = cats[x as usize]?;
            let Slot::Step { step: cat, .. } = &seg.exec[c] else {
                return None;
            };
            let StepKind::Op(Op::Shape(ShapeOp::Cat(d))) = cat.kind else {
                return None;
            };
            let n = cat.inputs.len();
            let fits = uses[x as usize] == 1
                && metas[x as usize].shape == s
                && (2..=CAT_MAX_PIECES).contains(&n);
            fits.then(|| (i, c, d, cat.clone()))
        });
        let Some((ci, c, d, cat)) = found else {
            continue;
        };
        let views = views.get_or_insert_with(|| Views::of(seg, metas.len()));
        // per piece: its start, its shape, the shape its op runs in (a looked-through value's
        // when it has one), and each other operand's views
        struct Piece {
            value: ValueId,
            shape: Shape,
            views: Vec<Vec<ShapeOp>>,
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut start = 0;
        for &p in &cat.inputs {
            let t = metas[p as usize].shape.clone();
            let len = t[d];
            let narrow = ShapeOp::Narrow { dim: d, start, len };
            start += len;
            let sliced: Option<Vec<Vec<ShapeOp>>> = (step.inputs.iter().enumerate())
                .map(|(j, &x)| {
                    if j == ci {
                        return Some(Vec::new());
                    }
                    let view = operand_view(&metas[x as usize].shape, &s, &narrow, &t)?;
                    Some(view.into_iter().collect())
                })
                .collect();
            let Some(sliced) = sliced else {
                pieces.clear();
                break;
            };
            // a piece that is a value with size-1 dims added runs in that value's shape
            let inner = views.source(p).and_then(|(w, op)| {
                let ws = &metas[*w as usize].shape;
                if !matches!(op, ShapeOp::Reshape(_)) || squeezed(ws) != squeezed(&t) {
                    return None;
                }
                let reshape = ShapeOp::Reshape(ws.clone());
                let views: Option<Vec<Vec<ShapeOp>>> = (sliced.iter().enumerate())
                    .map(|(j, vs)| {
                        if j == ci {
                            return Some(Vec::new());
                        }
                        let x = &metas[step.inputs[j] as usize].shape;
                        let x = vs.last().map_or_else(|| x.clone(), |v| viewed(x, v));
                        let more = operand_view(&x, &t, &reshape, ws)?;
                        Some(vs.iter().cloned().chain(more).collect())
                    })
                    .collect();
                Some(Piece {
                    value: *w,
                    shape: ws.clone(),
                    views: views?,
                })
            });
            pieces.push(inner.unwrap_or(Piece {
                value: p,
                shape: t,
                views: sliced,
            }));
        }
        if pieces.is_empty() {
            continue;
        }
        let base = step.clone();
        let mut new = Vec::new();
        let mut parts = Vec::new();
        for (piece, &p) in pieces.into_iter().zip(&cat.inputs) {
            let inputs = (base.inputs.iter().enumerate())
                .map(|(j, &x)| {
                    if j == ci {
                        return piece.value;
                    }
                    let mut x = x;
                    for view in &piece.views[j] {
                        x = views.view(metas, &base, x, view.clone(), k, &mut new);
                    }
                    x
                })
                .collect();
            let dtype = metas[e as usize].dtype;
            metas.push(Meta::made(piece.shape.clone(), dtype));
            let q = (metas.len() - 1) as ValueId;
            new.push(pointwise_step(&base, inputs, q));
            let t = metas[p as usize].shape.clone();
            parts.push(if piece.shape == t {
                q
            } else {
                views.view(metas, &base, q, ShapeOp::Reshape(t), k, &mut new)
            });
        }
        let mut joined = cat.clone();
        joined.inputs = parts.into_iter().collect();
        joined.outputs = SmallVec::from_slice(&[Some(e)]);
        new.push(Slot::step(joined));
        replacement.insert(k, new);
        removed[c] = true;
    }
    let changed = splice(seg, replacement, &removed);
    let mut below = false;
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            below |= cats_through(b, metas, uses);
        }
    }
    changed || below
}

/// Joins each concatenation of a concatenation along the same dim, read only there, into
/// one (the third rewrite of the module docs). Returns whether anything changed.
pub(super) fn flatten_cats(seg: &mut Segment, uses: &[u32]) -> bool {
    // each concatenation's dim and slot
    let mut cats: Vec<Option<(usize, usize)>> = vec![None; uses.len()];
    let mut removed = vec![false; seg.exec.len()];
    for k in 0..seg.exec.len() {
        let Slot::Step { step, .. } = &seg.exec[k] else {
            continue;
        };
        let (StepKind::Op(Op::Shape(ShapeOp::Cat(d))), Some(out)) = (&step.kind, step.outputs[0])
        else {
            continue;
        };
        let d = *d;
        let inner: Vec<(usize, usize)> = (step.inputs.iter().enumerate())
            .filter_map(|(i, x)| {
                let (dim, c) = cats[*x as usize]?;
                (dim == d && uses[*x as usize] == 1).then_some((i, c))
            })
            .collect();
        if !inner.is_empty() {
            let mut inputs = SmallVec::new();
            for (i, &x) in step.inputs.iter().enumerate() {
                match inner.iter().find(|&&(j, _)| j == i) {
                    Some(&(_, c)) => {
                        let Slot::Step { step: cat, .. } = &seg.exec[c] else {
                            unreachable!("concatenations are steps")
                        };
                        inputs.extend(cat.inputs.iter().copied());
                        removed[c] = true;
                    }
                    None => inputs.push(x),
                }
            }
            let Slot::Step { step, .. } = &mut seg.exec[k] else {
                unreachable!("checked above")
            };
            step.inputs = inputs;
        }
        cats[out as usize] = Some((d, k));
    }
    let changed = splice(seg, HashMap::new(), &removed);
    let mut below = false;
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            below |= flatten_cats(b, uses);
        }
    }
    changed || below
}

#[cfg(test)]
mod tests {
    use super::{operand_view, splits_only};
    use crate::ops::shape::ShapeOp;

    #[test]
    fn reshapes_that_only_split_are_views_of_any_layout() {
        assert!(splits_only(&[32, 800], &[32, 4, 200]));
        assert!(splits_only(&[32, 1, 200], &[32, 200]));
        assert!(splits_only(&[32, 200], &[1, 32, 1, 200, 1]));
        assert!(!splits_only(&[32, 3, 200], &[32, 600]), "merges dims");
        assert!(!splits_only(&[6, 4], &[4, 6]));
        assert!(!splits_only(&[0, 4], &[0, 4]), "no elements");
    }

    #[test]
    fn a_bias_is_sliced_and_reshaped_along_its_own_dims() {
        let narrow = |dim, start, len| ShapeOp::Narrow { dim, start, len };
        let reshape = |s: &[usize]| ShapeOp::Reshape(s.into());
        let (s, t) = (&[32, 800][..], &[32, 4, 200][..]);
        // the full-shape operand takes the view as it is
        assert_eq!(operand_view(s, s, &reshape(t), t), Some(Some(reshape(t))));
        // a bias [800] becomes [4, 200]; a scalar stays
        assert_eq!(
            operand_view(&[800], s, &reshape(t), t),
            Some(Some(reshape(&[4, 200])))
        );
        assert_eq!(operand_view(&[1, 1], s, &reshape(t), t), Some(None));
        // a column [32, 1] broadcast along the split dim cannot follow the reshape
        assert_eq!(operand_view(&[32, 1], s, &reshape(t), t), None);
        // slicing [32, 4, 200] along dim 1: the bias [4, 200] is sliced along its dim 0;
        // slicing along dim 0, the bias stays
        let s = &[32, 4, 200][..];
        assert_eq!(
            operand_view(&[4, 200], s, &narrow(1, 3, 1), &[32, 1, 200]),
            Some(Some(narrow(0, 3, 1)))
        );
        assert_eq!(
            operand_view(&[4, 200], s, &narrow(0, 8, 8), &[8, 4, 200]),
            Some(None)
        );
        assert_eq!(
            operand_view(&[1, 4, 200], s, &narrow(0, 8, 8), &[8, 4, 200]),
            Some(None)
        );
        // an operand broadcast along the sliced dim stays; along another it is sliced
        assert_eq!(
            operand_view(&[32, 1, 200], s, &narrow(1, 3, 1), &[32, 1, 200]),
            Some(None)
        );
        assert_eq!(
            operand_view(&[32, 1, 200], s, &narrow(2, 0, 100), &[32, 4, 100]),
            Some(Some(narrow(2, 0, 100)))
        );
    }
}
