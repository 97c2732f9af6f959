//! A captured function as a tree of straight-line segments: the trace tree of a tracing JIT.
//!
//! A recording is cut at each guard (a user's read of a computed value). The segment before
//! a guard is shared by every variant; the guard's observed values key the branches after
//! it, so a function that branches on `loss.item() < 3.0` holds one path per outcome and a
//! replay runs each shared step once. A replay whose guard value matches no branch is a
//! miss: the caller captures the function again and [`Plan::insert`] hangs the new path
//! beside the old ones.
//!
//! Values are numbered in order of first appearance, so two recordings of a deterministic
//! function agree on the numbers of everything before the point where they diverge;
//! `insert` checks that they do (op by op) and refuses a recording that does not.
//!
//! Liveness runs over the whole tree: a step is kept when some path after it uses its
//! result (dead-code elimination: forward values the gradient does not need, unused
//! outputs), and each value is dropped right after its last use on the path taken.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::capture::{Entry, Guard, Meta, StateCell, StateRead, Step, StepKind, Trace, ValueId};
use super::fuse::{fuse_segment, Group, IntoStack};
use crate::Array;

/// What a finished path returns: the values of the output leaves, and the output tree they
/// fill (type-erased; the caller knows its type).
#[derive(Clone)]
pub(crate) struct Done {
    pub outputs: Vec<ValueId>,
    pub template: super::Template,
    /// When each output is final on this path, for [`Plan::run`]'s `report`: `(s, k, v)`
    /// says output `k` (value `v`, through the aliases) is ready before `exec[s]` runs
    /// (`s == exec.len()`: at the end), sorted by `s`. Set when the plan is finished.
    pub reports: Vec<(u32, u32, ValueId)>,
}

/// Told each of the first `n` outputs of a replay as soon as the plan has computed it (the
/// gradients, for [`crate::Grad::on_gradient`]).
pub(crate) type Report<'a> = (usize, &'a mut dyn FnMut(usize, &Array));

// Most slots are steps: boxing them would add a pointer chase to every replayed step.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(super) enum Slot {
    Const {
        id: ValueId,
        array: Array,
        live: bool,
    },
    Step {
        step: Step,
        keep: bool,
        /// Values whose last use on this path is this step.
        drops: SmallVec<[ValueId; 4]>,
    },
    StateRead {
        read: StateRead,
        live: bool,
    },
    StateWrite {
        id: ValueId,
        cell: StateCell,
    },
    /// Elementwise steps fused into one pass (see [`super::fuse`]).
    Fused {
        group: Box<Group>,
        keep: bool,
        drops: SmallVec<[ValueId; 4]>,
    },
}

impl Slot {
    /// A step to run.
    pub(super) fn step(step: Step) -> Slot {
        Slot::Step {
            step,
            keep: true,
            drops: SmallVec::new(),
        }
    }
}

#[derive(Clone)]
pub(super) enum End {
    Done(Done),
    Guard {
        value: ValueId,
        location: &'static Location<'static>,
        branches: Vec<(Array, Segment)>,
    },
}

#[derive(Clone)]
pub(super) struct Segment {
    /// The recording, as captured (a later recording is checked against it).
    pub(super) slots: Vec<Slot>,
    /// What a replay runs: the live slots, rewritten by the passes.
    pub(super) exec: Vec<Slot>,
    pub(super) end: End,
    /// For a branch that [`Plan::insert`] added: `(boundary, shift)`, its recording's
    /// values from `boundary` on moved to `shift` on. A later recording that takes this
    /// branch numbers its values as that one did, and is moved alike before it is compared.
    pub(super) renumber: Option<(ValueId, ValueId)>,
}

/// The compiled form of one input signature: every variant captured for it.
#[derive(Clone)]
pub(crate) struct Plan {
    root: Segment,
    n_values: usize,
    /// Each value's shape and dtype.
    metas: Vec<Meta>,
    /// Names of the inputs (`params.w`, `args.0`), for printing.
    input_names: Vec<String>,
    /// Whether elementwise steps are fused.
    fuse: bool,
    /// Whether every value lives on the host (the inputs and constants, and no step moves
    /// one to a device): the stacks' in-place assembly needs it.
    host: bool,
    /// The value that replaces each value after the passes (see [`super::passes`]); the
    /// recording's guards and returned values read through it.
    alias: Vec<ValueId>,
    /// Every value a replay may put in its slot (the inputs, and what the slots of every
    /// path write): [`Scratch::recycle`] looks at these only. A fused chain of 200 ops has
    /// 200 values and writes 2 of them.
    written: Vec<ValueId>,
}

/// A replay's working memory, kept between calls: one slot per value. A small computed
/// value's slot keeps its array after the value dies, and its step writes into it again
/// next call, saving the allocation that dominates small ops (a kernel reuses a buffer only
/// when nothing else holds it, so tensors returned to the caller are never overwritten:
/// their steps get fresh memory). Large values drop at their last use into the array
/// layer's cache of freed buffers, which hands the most recently freed one out again, as in
/// direct mode: measured on the suite's LSTM, keeping one buffer per value instead (33
/// weight-gradient accumulations of 1 MB each) made the step 1.9x slower than direct mode
/// from cache misses. Inputs, constants and views are dropped at their last use: views
/// would pin the buffers they look into.
#[derive(Default)]
pub(crate) struct Scratch {
    values: Vec<Option<Array>>,
    /// Values whose step has no `*_into` form (views), learned on their second run.
    views: Vec<bool>,
    /// Whether each value stays in its slot as a buffer, learned when first computed.
    keep: Vec<bool>,
    /// The buffers of the last call's stable outputs (the gradients, with
    /// `stable_gradients`) that are inputs or views, into which the next call copies them;
    /// a computed output instead stays in its slot, so its kernel writes the next call's
    /// result into the same buffer. A buffer the caller still holds is never written (the kernels
    /// replace shared buffers), so the caller sees a fresh one then.
    stable: Vec<Option<Array>>,
    /// A fused group's outputs while its program runs, the list kept from group to group
    /// (a `SmallVec` of four arrays here cost a compiled call on 10 elements 3% in moves).
    outs: Vec<Option<Array>>,
}

/// Below this many bytes a value keeps its own buffer between calls (the array layer
/// caches freed buffers from this size on).
const KEEP_BELOW_BYTES: usize = 64 * 1024;

/// The most rounds of [`super::slices`]' rewrites a plan gets: each round moves a slice one
/// op further up (and a concatenation one op further down), so a round without change ends
/// them much sooner; the bound only keeps a plan's build time bounded.
const SLICE_ROUNDS: usize = 16;

/// Whether a computed value keeps its buffer in its slot between calls (see
/// [`KEEP_BELOW_BYTES`]).
fn kept(a: &Array) -> bool {
    a.numel() * a.dtype().size_in_bytes() < KEEP_BELOW_BYTES
}

/// Marks each accumulating product whose accumulator is still read after it (`shared`: its
/// buffer is copied, not taken). The rewrites that make them check that the accumulator dies
/// there, but passes after them may give it a later reader: a comparison moved next to a
/// use in the backward pass, a slice moved up through a pointwise op. From the plan's final
/// liveness, so no pass order can make a replay read a taken value.
fn share_accumulators(seg: &mut Segment) {
    for slot in &mut seg.exec {
        if let Slot::Step { step, drops, .. } = slot {
            let acc = step.inputs.first().copied();
            if let (StepKind::MatmulAcc { shared, .. }, Some(acc)) = (&mut step.kind, acc) {
                *shared = !drops.contains(&acc) || step.inputs[1..].contains(&acc);
            }
        }
    }
    if let End::Guard { branches, .. } = &mut seg.end {
        for (_, b) in branches {
            share_accumulators(b);
        }
    }
}

/// The arrays of the values `ids`, which a step reads (they are live by construction).
fn live<'a>(values: &'a [Option<Array>], ids: &[ValueId]) -> SmallVec<[&'a Array; 8]> {
    ids.iter()
        .map(|&i| values[i as usize].as_ref().expect("inputs are live"))
        .collect()
}

impl Scratch {
    /// A value is dead: keep it as a buffer, or drop it.
    #[inline]
    fn release(&mut self, id: ValueId) {
        let id = id as usize;
        if !self.keep[id] || self.views[id] {
            self.values[id] = None;
        }
    }

    /// Returns `outputs` (the values `ids`) in the last call's buffers where it can (see
    /// [`Scratch::stable`]); ids below `n_inputs` are the plan's inputs.
    fn stabilize(&mut self, ids: &[ValueId], outputs: &mut [Array], n_inputs: usize) {
        self.stable.resize(ids.len(), None);
        for ((&id, out), buffer) in ids.iter().zip(outputs).zip(&mut self.stable) {
            let id = id as usize;
            if id >= n_inputs && !self.views[id] {
                // computed: its kernel writes into this slot next call (holding a second
                // handle here would make the buffer look shared to the kernel)
                self.keep[id] = true;
                *buffer = None;
                continue;
            }
            match buffer {
                Some(b) if b.storage_id() == out.storage_id() => {}
                Some(b) if b.shape() == out.shape() && b.dtype() == out.dtype() => {
                    out.contiguous_into(b);
                    *out = b.clone();
                }
                _ => *buffer = Some(out.clone()),
            }
        }
    }

    /// Ends a call: what is not a buffer is dropped. `written` lists every slot the call
    /// may have filled (`None`: look at every slot).
    fn recycle(&mut self, written: Option<&[ValueId]>) {
        let Some(written) = written else {
            for ((v, &keep), &view) in self.values.iter_mut().zip(&self.keep).zip(&self.views) {
                if !keep || view {
                    *v = None;
                }
            }
            return;
        };
        for &id in written {
            let id = id as usize;
            if !self.keep[id] || self.views[id] {
                self.values[id] = None;
            }
        }
        debug_assert!(
            (self.values.iter().zip(&self.keep).zip(&self.views))
                .all(|((v, &keep), &view)| v.is_none() || keep && !view),
            "a replay wrote a slot its plan's `written` does not list"
        );
    }
}

/// The result of a replay.
pub(crate) enum Outcome {
    /// The outputs are in the list the inputs came in (see [`Plan::run`]).
    Done { template: super::Template },
    /// A guard saw a value no captured variant saw.
    Miss {
        location: &'static Location<'static>,
    },
}

/// Observes each step a replay runs (the debugger and the profiler).
pub(crate) trait Observer {
    /// Whether [`step`](Observer::step) is called (the fast path skips it and the clock).
    const ACTIVE: bool = true;
    /// Called after each step with its inputs and outputs and the time it took.
    fn step(&mut self, step: &Step, inputs: &[&Array], outputs: &[Option<Array>], took: Duration);
}

/// An observer that watches nothing (the fast path).
pub(crate) struct Unobserved;

impl Observer for Unobserved {
    const ACTIVE: bool = false;
    fn step(&mut self, _: &Step, _: &[&Array], _: &[Option<Array>], _: Duration) {}
}

/// Reports the outputs of `due` that are ready before slot `now`, returning the rest.
fn report_due<'d>(
    due: &'d [(u32, u32, ValueId)],
    now: u32,
    scratch: &Scratch,
    (count, tell): &mut Report<'_>,
) -> &'d [(u32, u32, ValueId)] {
    let ready = due.iter().take_while(|&&(at, ..)| at <= now).count();
    for &(_, k, id) in &due[..ready] {
        if (k as usize) < *count {
            let value = scratch.values[id as usize]
                .as_ref()
                .expect("outputs are live once computed");
            tell(k as usize, value);
        }
    }
    &due[ready..]
}

/// Whether a recording keeps to the host: no step moves a value to a device, and every
/// constant is a host array.
fn on_host(trace: &Trace) -> bool {
    trace.entries.iter().all(|e| match e {
        Entry::Const(_, a) => a.device().is_cpu(),
        Entry::Step(step) => !matches!(step.kind, StepKind::Op(crate::Op::ToDevice(_))),
        _ => true,
    })
}

/// The values a path returns or a guard reads, through the aliases.
fn read_at_ends(seg: &Segment, alias: &[ValueId], out: &mut HashSet<ValueId>) {
    match &seg.end {
        End::Done(d) => out.extend(d.outputs.iter().map(|&o| alias[o as usize])),
        End::Guard {
            value, branches, ..
        } => {
            out.insert(alias[*value as usize]);
            for (_, b) in branches {
                read_at_ends(b, alias, out);
            }
        }
    }
}

/// Pushes the values the slots of `seg` and of every path after it write to `out` (a fused
/// group's outputs; not its members', which only an observer's replay writes).
fn written_values(seg: &Segment, out: &mut Vec<ValueId>) {
    for slot in &seg.exec {
        match slot {
            Slot::Const { id, .. } => out.push(*id),
            Slot::StateRead { read, .. } => out.push(read.id),
            Slot::StateWrite { .. } => {}
            Slot::Step { step, .. } => out.extend(step.outputs.iter().flatten()),
            Slot::Fused { group, .. } => out.extend(&group.outputs),
        }
    }
    if let End::Guard { branches, .. } = &seg.end {
        for (_, b) in branches {
            written_values(b, out);
        }
    }
}

/// Fills each finished path's [`Done::reports`]: an output is ready after the slot of its
/// segment that computes it, or at the segment's start when an earlier segment (or the
/// inputs) did. A segment that reads state reports everything at its end, since a state
/// read can still miss and send the call back to direct mode, which reports again.
fn schedule_reports(seg: &mut Segment, alias: &[ValueId]) {
    match &mut seg.end {
        End::Guard { branches, .. } => {
            for (_, b) in branches {
                schedule_reports(b, alias);
            }
        }
        End::Done(d) => {
            let end = seg.exec.len() as u32;
            let reads_state = seg.exec.iter().any(|s| matches!(s, Slot::StateRead { .. }));
            let mut made_at: HashMap<ValueId, u32> = HashMap::new();
            if !reads_state {
                for (j, slot) in seg.exec.iter().enumerate() {
                    let outputs: SmallVec<[ValueId; 4]> = match slot {
                        Slot::Step {
                            step, keep: true, ..
                        } => step.outputs.iter().flatten().copied().collect(),
                        Slot::Fused {
                            group, keep: true, ..
                        } => group.outputs.clone(),
                        Slot::Const { id, live: true, .. } => SmallVec::from_slice(&[*id]),
                        _ => SmallVec::new(),
                    };
                    for o in outputs {
                        made_at.insert(o, j as u32 + 1);
                    }
                }
            }
            d.reports = d
                .outputs
                .iter()
                .enumerate()
                .map(|(k, &o)| {
                    let id = alias[o as usize];
                    let at = if reads_state {
                        end
                    } else {
                        made_at.get(&id).copied().unwrap_or(0)
                    };
                    (at, k as u32, id)
                })
                .collect();
            d.reports.sort_unstable();
        }
    }
}

/// Cuts a recording at its guards: pieces of entries, each but the last ending at a guard.
fn pieces(entries: Vec<Entry>) -> Vec<(Vec<Entry>, Option<Guard>)> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for e in entries {
        match e {
            Entry::Guard(g) => out.push((std::mem::take(&mut current), Some(g))),
            other => current.push(other),
        }
    }
    out.push((current, None));
    out
}

fn slots(entries: Vec<Entry>) -> Vec<Slot> {
    entries
        .into_iter()
        .map(|e| match e {
            Entry::Const(id, array) => Slot::Const {
                id,
                array,
                live: true,
            },
            Entry::Step(step) => Slot::step(step),
            Entry::StateRead(read) => Slot::StateRead { read, live: true },
            Entry::StateWrite { id, cell } => Slot::StateWrite { id, cell },
            Entry::Guard(_) => unreachable!("pieces end at guards"),
        })
        .collect()
}

/// The segments of the remaining pieces, nested at their guards.
fn build(mut rest: std::vec::IntoIter<(Vec<Entry>, Option<Guard>)>, done: Done) -> Segment {
    let (entries, guard) = rest.next().expect("a recording has at least one piece");
    let end = match guard {
        None => End::Done(done),
        Some(g) => End::Guard {
            value: g.value,
            location: g.location,
            branches: vec![(g.expected, build(rest, done))],
        },
    };
    Segment {
        slots: slots(entries),
        exec: Vec::new(),
        end,
        renumber: None,
    }
}

/// The number a recording's value `id` has in a plan, given the renumberings of the
/// branches its path took (increasing boundaries): moved by the last one it is past.
fn renumbered(id: ValueId, moves: &[(ValueId, ValueId)]) -> ValueId {
    match moves.iter().rev().find(|&&(boundary, _)| id >= boundary) {
        Some(&(boundary, shift)) => id - boundary + shift,
        None => id,
    }
}

/// One past the largest value a piece of a recording defines (its guard's value included).
fn defined_end((entries, guard): &(Vec<Entry>, Option<Guard>)) -> ValueId {
    let mut end = guard.as_ref().map_or(0, |g| g.value + 1);
    for e in entries {
        match e {
            Entry::Const(id, _) | Entry::StateRead(StateRead { id, .. }) => end = end.max(id + 1),
            Entry::Step(st) => {
                for &o in st.outputs.iter().flatten() {
                    end = end.max(o + 1);
                }
            }
            Entry::StateWrite { .. } | Entry::Guard(_) => {}
        }
    }
    end
}

/// Renumbers every value a piece of a recording defines or reads.
fn renumber_piece(piece: &mut (Vec<Entry>, Option<Guard>), moved: impl Fn(ValueId) -> ValueId) {
    for e in piece.0.iter_mut() {
        match e {
            Entry::Const(id, _)
            | Entry::StateRead(StateRead { id, .. })
            | Entry::StateWrite { id, .. } => *id = moved(*id),
            Entry::Step(st) => {
                for i in st.inputs.iter_mut() {
                    *i = moved(*i);
                }
                for o in st.outputs.iter_mut().flatten() {
                    *o = moved(*o);
                }
            }
            Entry::Guard(_) => {}
        }
    }
    if let Some(g) = &mut piece.1 {
        g.value = moved(g.value);
    }
}

/// Why a new recording's piece cannot share a segment because a state it reads changed shape,
/// dtype or layout since the segment was recorded (a replay misses there; the plan is made
/// for one of each), if it is that.
fn state_changed(old: &[Slot], new: &[Entry]) -> Option<String> {
    let layout = |row_major: bool| {
        if row_major {
            "row-major"
        } else {
            "a strided view"
        }
    };
    old.iter().zip(new).find_map(|(o, n)| match (o, n) {
        (Slot::StateRead { read, .. }, Entry::StateRead(new))
            if Arc::ptr_eq(&read.cell, &new.cell)
                && (read.shape != new.shape
                    || read.dtype != new.dtype
                    || read.row_major != new.row_major) =>
        {
            Some(format!(
                "the state read at {} was {}{:?} ({}) on one call and {}{:?} ({}) on another; \
                 a plan reads a state of one shape, dtype and layout",
                ferrograd_array::Site(new.location),
                read.dtype,
                read.shape.as_slice(),
                layout(read.row_major),
                new.dtype,
                new.shape.as_slice(),
                layout(new.row_major),
            ))
        }
        _ => None,
    })
}

/// Whether a shared segment and a new recording's piece record the same program.
fn same_program(old: &[Slot], new: &[Entry]) -> bool {
    old.len() == new.len()
        && old.iter().zip(new).all(|(o, n)| match (o, n) {
            (Slot::Const { id, .. }, Entry::Const(nid, _)) => id == nid,
            (Slot::Step { step, .. }, Entry::Step(ns)) => {
                step.inputs == ns.inputs && step.outputs == ns.outputs && step.name() == ns.name()
            }
            (Slot::StateRead { read, .. }, Entry::StateRead(new)) => {
                read.id == new.id && Arc::ptr_eq(&read.cell, &new.cell)
            }
            (Slot::StateWrite { id, cell }, Entry::StateWrite { id: nid, cell: nc }) => {
                id == nid && Arc::ptr_eq(cell, nc)
            }
            (Slot::Fused { .. }, _) => unreachable!("recordings hold no fused slots"),
            _ => false,
        })
}

/// Whether every recorded step's inputs have smaller numbers than its outputs: true of any
/// recording, whose values are numbered as they are created (a check on `insert`'s
/// renumbering).
fn inputs_come_first(seg: &Segment) -> bool {
    seg.slots.iter().all(|slot| match slot {
        Slot::Step { step, .. } => step
            .outputs
            .iter()
            .flatten()
            .all(|&o| step.inputs.iter().all(|&i| i < o)),
        Slot::Const { .. } | Slot::StateRead { .. } | Slot::StateWrite { .. } => true,
        Slot::Fused { .. } => unreachable!("recordings hold no fused slots"),
    }) && match &seg.end {
        End::Done(_) => true,
        End::Guard { branches, .. } => branches.iter().all(|(_, b)| inputs_come_first(b)),
    }
}

/// How often each value is read in the live slots of `seg` and below: by steps, guards,
/// returned values and state writes.
pub(super) fn count_uses(seg: &Segment, uses: &mut [u32], alias: &[ValueId]) {
    for slot in &seg.exec {
        match slot {
            Slot::Step { step, .. } => {
                for &i in &step.inputs {
                    uses[i as usize] += 1;
                }
            }
            Slot::StateWrite { id, .. } => uses[*id as usize] += 1,
            Slot::Fused { group, .. } => {
                for &i in &group.inputs {
                    uses[i as usize] += 1;
                }
            }
            Slot::Const { .. } | Slot::StateRead { .. } => {}
        }
    }
    match &seg.end {
        End::Done(d) => {
            for &o in &d.outputs {
                uses[alias[o as usize] as usize] += 1;
            }
        }
        End::Guard {
            value, branches, ..
        } => {
            uses[alias[*value as usize] as usize] += 1;
            for (_, b) in branches {
                count_uses(b, uses, alias);
            }
        }
    }
}

/// Liveness over the tree, over the recorded slots (`exec` false: which to keep) or the
/// slots a replay runs (`exec` true: also where each value dies). Returns the values live on
/// entry to `seg`.
fn liveness(seg: &mut Segment, n: usize, exec: bool, alias: &[ValueId]) -> Vec<bool> {
    let mut live = vec![false; n];
    match &mut seg.end {
        End::Done(d) => {
            for &o in &d.outputs {
                live[alias[o as usize] as usize] = true;
            }
        }
        End::Guard {
            value, branches, ..
        } => {
            live[alias[*value as usize] as usize] = true;
            for (_, b) in branches {
                for (l, b) in live.iter_mut().zip(liveness(b, n, exec, alias)) {
                    *l |= b;
                }
            }
        }
    }
    let slots = if exec { &mut seg.exec } else { &mut seg.slots };
    // a step's effect on liveness: kept when an output is live (or it must run), each
    // dead output and each input read for the last time dropped after it
    fn step_live(
        live: &mut [bool],
        inputs: &[ValueId],
        outputs: &mut dyn Iterator<Item = ValueId>,
        must_run: bool,
        keep: &mut bool,
        drops: &mut SmallVec<[ValueId; 4]>,
    ) {
        drops.clear();
        let outputs: SmallVec<[ValueId; 4]> = outputs.collect();
        *keep = outputs.iter().any(|&o| live[o as usize]) || must_run;
        if !*keep {
            return;
        }
        for &o in &outputs {
            if !live[o as usize] {
                drops.push(o);
            }
            live[o as usize] = false;
        }
        for &i in inputs {
            if !live[i as usize] {
                drops.push(i);
                live[i as usize] = true;
            }
        }
    }
    // stacks whose assembly is kept: the steps that write their pieces must run
    let mut assembled: Vec<ValueId> = Vec::new();
    for slot in slots.iter_mut().rev() {
        match slot {
            Slot::Const { id, live: l, .. }
            | Slot::StateRead {
                read: StateRead { id, .. },
                live: l,
            } => {
                *l = live[*id as usize];
                live[*id as usize] = false;
            }
            // a write is an effect: always kept
            Slot::StateWrite { id, .. } => live[*id as usize] = true,
            // a draw advances its generator: it runs even when its value is dead, or the
            // draws after it would differ from direct mode's
            Slot::Step { step, keep, drops } => {
                let must_run = match &step.kind {
                    StepKind::Draw { .. } => true,
                    StepKind::CatInto { stack, .. } => assembled.contains(stack),
                    _ => false,
                };
                step_live(
                    &mut live,
                    &step.inputs,
                    &mut step.outputs.iter().flatten().copied(),
                    must_run,
                    keep,
                    drops,
                );
                if let (StepKind::Assembled, true) = (&step.kind, *keep) {
                    assembled.extend(step.outputs.iter().flatten());
                }
            }
            Slot::Fused { group, keep, drops } => step_live(
                &mut live,
                &group.inputs,
                &mut group.outputs.iter().copied(),
                false,
                keep,
                drops,
            ),
        }
    }
    live
}

impl Plan {
    /// The plan of one recording.
    pub fn new(
        trace: Trace,
        template: super::Template,
        input_names: Vec<String>,
        fuse: bool,
        host_inputs: bool,
    ) -> Plan {
        let host = host_inputs && on_host(&trace);
        let done = Done {
            outputs: trace.outputs,
            template,
            reports: Vec::new(),
        };
        let mut plan = Plan {
            root: build(pieces(trace.entries).into_iter(), done),
            n_values: trace.n_values,
            metas: trace.metas,
            input_names,
            fuse,
            host,
            alias: Vec::new(),
            written: Vec::new(),
        };
        plan.analyze();
        plan
    }

    /// Adds a recording made after a miss. `Err` says why it does not fit the recordings
    /// before it (the function did not compute the same thing up to the guard that differed).
    ///
    /// Values first defined after the divergence are renumbered past the plan's, so that a
    /// value id names one value (one shape, one buffer) in the whole tree.
    pub fn insert(&mut self, trace: Trace, template: super::Template) -> Result<(), String> {
        self.host &= on_host(&trace);
        let mut pieces = pieces(trace.entries);
        // The first value the pieces so far do not define, in the recording's own numbers:
        // past the piece that diverges, values are new to the plan.
        let mut end = self.input_names.len() as ValueId;
        // Find the path (the branch taken at each guard, and the piece whose guard saw a
        // new value), renumbering each piece as the branches it passes were.
        let mut path: Vec<usize> = Vec::new();
        let mut moves: Vec<(ValueId, ValueId)> = Vec::new();
        let mut seg = &self.root;
        let mut diverged = None;
        for (k, piece) in pieces.iter_mut().enumerate() {
            end = end.max(defined_end(piece));
            moves.extend(seg.renumber);
            renumber_piece(piece, |id| renumbered(id, &moves));
            let (entries, guard) = &*piece;
            if let Some(why) = state_changed(&seg.slots, entries) {
                return Err(why);
            }
            if !same_program(&seg.slots, entries) {
                return Err(format!(
                    "the function computed something else before the same read of its data on \
                     two calls ({} recorded steps against {}); its result depends on more than \
                     its inputs",
                    seg.slots.len(),
                    entries.len()
                ));
            }
            match (&seg.end, guard) {
                (
                    End::Guard {
                        value, branches, ..
                    },
                    Some(g),
                ) if *value == g.value => {
                    match branches.iter().position(|(e, _)| e.bit_eq(&g.expected)) {
                        Some(i) => {
                            path.push(i);
                            seg = &branches[i].1;
                        }
                        None => {
                            diverged = Some(k);
                            break;
                        }
                    }
                }
                (_, g) => {
                    let at = g.as_ref().map_or("the end".to_string(), |g| {
                        ferrograd_array::Site(g.location).to_string()
                    });
                    return Err(format!(
                        "the function read its data at different points on two calls \
                         (diverging at {at}); its result depends on more than its inputs"
                    ));
                }
            }
        }
        let Some(k) = diverged else {
            return Err(
                "the function took a path already captured, then missed it on replay; \
                        its result depends on more than its inputs"
                    .into(),
            );
        };
        // Values defined up to the divergence keep the numbers the path gave them; later
        // ones move past ours.
        let (boundary, shift) = (end, self.n_values as ValueId);
        moves.push((boundary, shift));
        let moved = |id: ValueId| renumbered(id, &moves);
        let mut rest: Vec<(Vec<Entry>, Option<Guard>)> = pieces.split_off(k + 1);
        for piece in &mut rest {
            renumber_piece(piece, moved);
        }
        let done = Done {
            outputs: trace.outputs.iter().map(|&o| moved(o)).collect(),
            template,
            reports: Vec::new(),
        };
        let (_, guard) = pieces.pop().expect("the piece that diverged");
        let guard = guard.expect("it ends at a guard");
        let mut branch = build(rest.into_iter(), done);
        branch.renumber = Some((boundary, shift));
        let new_branch = (guard.expected, branch);
        let mut seg = &mut self.root;
        for i in path {
            let End::Guard { branches, .. } = &mut seg.end else {
                unreachable!("the path follows guards")
            };
            seg = &mut branches[i].1;
        }
        let End::Guard { branches, .. } = &mut seg.end else {
            unreachable!("the path ends at a guard")
        };
        branches.push(new_branch);
        self.n_values += (trace.n_values as ValueId).saturating_sub(boundary) as usize;
        self.metas.truncate(shift as usize); // the passes' own values are made again
        self.metas
            .extend(trace.metas.into_iter().skip(boundary as usize));
        debug_assert_eq!(self.metas.len(), self.n_values);
        self.analyze();
        Ok(())
    }

    /// Every state cell the plan reads (`verify` restores them before its direct run).
    pub fn state_cells(&self) -> Vec<StateCell> {
        fn visit(seg: &Segment, out: &mut Vec<StateCell>) {
            for slot in &seg.slots {
                if let Slot::StateRead { read, .. } = slot {
                    if !out.iter().any(|c| Arc::ptr_eq(c, &read.cell)) {
                        out.push(Arc::clone(&read.cell));
                    }
                }
            }
            if let End::Guard { branches, .. } = &seg.end {
                for (_, b) in branches {
                    visit(b, out);
                }
            }
        }
        let mut out = Vec::new();
        visit(&self.root, &mut out);
        out
    }

    /// The number of complete paths (variants).
    pub fn variants(&self) -> usize {
        fn count(seg: &Segment) -> usize {
            match &seg.end {
                End::Done(_) => 1,
                End::Guard { branches, .. } => branches.iter().map(|(_, s)| count(s)).sum(),
            }
        }
        count(&self.root)
    }

    /// The passes: liveness over the recording removes dead steps; the live slots are
    /// rewritten (folding, simplification, CSE: [`super::passes`]), what that leaves dead is
    /// removed, the rest is fused (when on), and liveness over the result says where each
    /// value dies.
    fn analyze(&mut self) {
        debug_assert!(inputs_come_first(&self.root), "a step reads a later value");
        let n = self.n_values;
        self.metas.truncate(n);
        let identity: Vec<ValueId> = (0..n as ValueId).collect();
        liveness(&mut self.root, n, false, &identity);
        fn copy(seg: &mut Segment) {
            seg.exec = seg.slots.clone();
            if let End::Guard { branches, .. } = &mut seg.end {
                for (_, b) in branches {
                    copy(b);
                }
            }
        }
        fn prune(seg: &mut Segment) {
            seg.exec.retain(|slot| match slot {
                Slot::Const { live, .. } | Slot::StateRead { live, .. } => *live,
                Slot::Step { keep, .. } | Slot::Fused { keep, .. } => *keep,
                Slot::StateWrite { .. } => true,
            });
            if let End::Guard { branches, .. } = &mut seg.end {
                for (_, b) in branches {
                    prune(b);
                }
            }
        }
        copy(&mut self.root);
        prune(&mut self.root);
        self.alias = super::passes::rewrite(&mut self.root, &self.metas, n);
        liveness(&mut self.root, n, true, &self.alias);
        prune(&mut self.root);
        let mut uses = vec![0u32; n];
        count_uses(&self.root, &mut uses, &self.alias);
        super::passes::accumulate_products(&mut self.root, &self.metas, &uses);
        if self.fuse && !super::check_mode() {
            // new values of the passes' own are numbered past the recording's
            super::passes::batch_products(&mut self.root, &mut self.metas);
            self.alias
                .extend(self.alias.len() as ValueId..self.metas.len() as ValueId);
            let mut uses = vec![0u32; self.metas.len()];
            count_uses(&self.root, &mut uses, &self.alias);
            // (the fold moves reads from the update to its product: the counts still hold)
            super::passes::fold_updates(&mut self.root, &self.metas, &uses, &self.alias);
            super::passes::narrow_products(&mut self.root, &mut self.metas, &uses);
            super::passes::pads_to_cat(&mut self.root, &mut self.metas, &uses);
            self.alias
                .extend(self.alias.len() as ValueId..self.metas.len() as ValueId);
            // products only slices read are dead now: gone before the joins see them
            liveness(&mut self.root, self.metas.len(), true, &self.alias);
            prune(&mut self.root);
            super::passes::join_columns(&mut self.root, &mut self.metas);
            super::passes::join_products(&mut self.root, &mut self.metas);
            self.alias
                .extend(self.alias.len() as ValueId..self.metas.len() as ValueId);
        }
        if self.fuse {
            // slices and concatenations moved across pointwise ops (exact, so in check mode
            // too), until none moves; each rewrite leaves dead views for the pruning
            for _ in 0..SLICE_ROUNDS {
                let mut changed = false;
                for pass in 0..3 {
                    let mut uses = vec![0u32; self.metas.len()];
                    count_uses(&self.root, &mut uses, &self.alias);
                    let (root, metas) = (&mut self.root, &mut self.metas);
                    let moved = match pass {
                        0 => super::slices::cats_through(root, metas, &uses),
                        1 => super::slices::flatten_cats(root, &uses),
                        _ => super::slices::slices_through(root, metas, &uses),
                    };
                    if moved {
                        self.alias
                            .extend(self.alias.len() as ValueId..self.metas.len() as ValueId);
                        liveness(&mut self.root, self.metas.len(), true, &self.alias);
                        prune(&mut self.root);
                    }
                    changed |= moved;
                }
                if !changed {
                    break;
                }
            }
            super::passes::outer_products(&mut self.root, &self.metas);
            let mut uses = vec![0u32; self.metas.len()];
            count_uses(&self.root, &mut uses, &self.alias);
            super::passes::split_masks(&mut self.root, &mut self.metas, &uses);
        }
        let n = self.metas.len();
        self.alias.extend(self.alias.len() as ValueId..n as ValueId);
        if self.fuse {
            let mut uses = vec![0u32; n];
            count_uses(&self.root, &mut uses, &self.alias);
            fn fuse(seg: &mut Segment, metas: &[Meta], uses: &[u32], inputs: usize) {
                seg.exec = fuse_segment(std::mem::take(&mut seg.exec), metas, uses, inputs);
                if let End::Guard { branches, .. } = &mut seg.end {
                    for (_, b) in branches {
                        fuse(b, metas, uses, inputs);
                    }
                }
            }
            fuse(&mut self.root, &self.metas, &uses, self.input_names.len());
        }
        if self.fuse && self.host {
            let mut uses = vec![0u32; n];
            count_uses(&self.root, &mut uses, &self.alias);
            let mut outputs = HashSet::new();
            read_at_ends(&self.root, &self.alias, &mut outputs);
            super::passes::assemble_stacks(&mut self.root, &self.metas, &uses, &outputs);
            super::passes::programs_into_stacks(&mut self.root, &self.metas, &outputs);
            let mut uses = vec![0u32; n];
            count_uses(&self.root, &mut uses, &self.alias);
            super::passes::accumulate_in_rows(&mut self.root, &self.metas, &uses, &outputs);
            super::passes::sum_blocks_together(&mut self.root, &mut self.metas);
        }
        let n = self.metas.len();
        self.alias.extend(self.alias.len() as ValueId..n as ValueId);
        liveness(&mut self.root, n, true, &self.alias);
        share_accumulators(&mut self.root);
        schedule_reports(&mut self.root, &self.alias);
        let mut written: Vec<ValueId> = (0..self.input_names.len() as ValueId).collect();
        written_values(&self.root, &mut written);
        written.sort_unstable();
        written.dedup();
        self.written = written;
    }

    /// Whether a replay can stop short of its end (a guard or a state read that sees what
    /// no variant saw), handing the call back to a capture that reads the inputs again.
    pub(crate) fn can_miss(&self) -> bool {
        !matches!(self.root.end, End::Done(_))
            || (self.root.exec.iter()).any(|s| matches!(s, Slot::StateRead { .. }))
    }

    /// Runs the plan on `inputs` (the values of the input leaves, in order; taken out),
    /// in `scratch` (kept between calls for its buffers; a fresh one works too). When it
    /// is done, `inputs` holds the outputs, in order (one list kept from call to call: a
    /// list of its own cost a call on 10 elements an allocation).
    #[track_caller]
    pub fn run<O: Observer>(
        &self,
        inputs: &mut Vec<Array>,
        generators: &mut [&mut crate::Generator],
        scratch: &mut Scratch,
        stable: usize,
        observer: &mut O,
        mut report: Option<Report<'_>>,
    ) -> Outcome {
        let n = self.metas.len();
        scratch.values.resize(n, None);
        scratch.views.resize(n, false);
        scratch.keep.resize(n, false);
        for (slot, input) in scratch.values.iter_mut().zip(inputs.drain(..)) {
            *slot = Some(input);
        }
        // Last call's outputs that come back as inputs (a training step's new parameters,
        // passed back or donated): their slots let go, so that a donated one is the only
        // handle on its buffer, which a kernel may then write over (a slot that kept it would
        // only have made the next kernel take a new buffer: its reader holds it too).
        // (the inputs' buffers sorted, so a tree of many leaves costs a search per output)
        if let End::Done(done) = &self.root.end {
            let (inputs, rest) = scratch.values.split_at_mut(self.input_names.len());
            let mut buffers: SmallVec<[usize; 16]> =
                inputs.iter().flatten().map(Array::storage_id).collect();
            buffers.sort_unstable();
            for &o in &done.outputs {
                let Some(slot) =
                    rest.get_mut((self.alias[o as usize] as usize).wrapping_sub(inputs.len()))
                else {
                    continue;
                };
                if (slot.as_ref()).is_some_and(|a| buffers.binary_search(&a.storage_id()).is_ok()) {
                    *slot = None;
                }
            }
        }
        let mut seg = &self.root;
        // state writes wait for the end: a replay that misses changes nothing
        let mut writes: Vec<(&StateCell, ValueId)> = Vec::new();
        let outcome = 'run: loop {
            // outputs to report on this path: (before which slot, which output)
            let mut due: &[(u32, u32, ValueId)] = match (&seg.end, &report) {
                (End::Done(d), Some(_)) => &d.reports,
                _ => &[],
            };
            for (j, slot) in seg.exec.iter().enumerate() {
                if let (Some(&(at, ..)), Some(r)) = (due.first(), report.as_mut()) {
                    if at as usize <= j {
                        due = report_due(due, j as u32, scratch, r);
                    }
                }
                match slot {
                    Slot::Const { id, array, live } => {
                        if *live {
                            scratch.values[*id as usize] = Some(array.clone());
                        }
                    }
                    Slot::StateRead { read, live } => {
                        let value = read.cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        if value.shape() != read.shape.as_slice()
                            || value.dtype() != read.dtype
                            || value.data().is_contiguous() != read.row_major
                        {
                            // the state changed shape or layout: capture again
                            break 'run Outcome::Miss {
                                location: read.location,
                            };
                        }
                        if *live {
                            scratch.values[read.id as usize] = Some(value.data().clone());
                        }
                    }
                    Slot::StateWrite { id, cell } => writes.push((cell, *id)),
                    Slot::Step { step, keep, drops } => {
                        if *keep {
                            run_step(step, generators, scratch, observer);
                            for &d in drops {
                                scratch.release(d);
                            }
                        }
                    }
                    Slot::Fused { group, keep, drops } => {
                        if *keep {
                            let inputs = self.input_names.len();
                            run_fused(group, generators, scratch, observer, drops, inputs);
                            for &d in drops {
                                scratch.release(d);
                            }
                        }
                    }
                }
            }
            if let (false, Some(r)) = (due.is_empty(), report.as_mut()) {
                report_due(due, u32::MAX, scratch, r);
            }
            match &seg.end {
                End::Done(d) => {
                    for (cell, id) in writes {
                        let value = scratch.values[id as usize]
                            .clone()
                            .expect("written values are live");
                        *cell.lock().unwrap_or_else(|e| e.into_inner()) = crate::Tensor::new(value);
                    }
                    let ids: SmallVec<[ValueId; 8]> =
                        d.outputs.iter().map(|&o| self.alias[o as usize]).collect();
                    let outputs = &mut *inputs;
                    outputs.clear();
                    outputs.extend(ids.iter().map(|&o| {
                        scratch.values[o as usize]
                            .clone()
                            .expect("outputs are live")
                    }));
                    if stable > 0 {
                        scratch.stabilize(
                            &ids[..stable],
                            &mut outputs[..stable],
                            self.input_names.len(),
                        );
                    }
                    break 'run Outcome::Done {
                        template: d.template.clone(),
                    };
                }
                End::Guard {
                    value,
                    location,
                    branches,
                } => {
                    let seen = scratch.values[self.alias[*value as usize] as usize]
                        .as_ref()
                        .expect("guarded values are live");
                    match branches.iter().find(|(e, _)| e.bit_eq(seen)) {
                        Some((_, next)) => seg = next,
                        None => break 'run Outcome::Miss { location },
                    }
                }
            }
        };
        // (an observer's replay also writes the members of fused groups)
        scratch.recycle((!O::ACTIVE).then_some(&self.written[..]));
        outcome
    }

    /// The plan as text: one line per step, with the user's line each came from (the seed's
    /// `showCode`).
    pub fn text(&self) -> String {
        let mut s = String::new();
        let names: Vec<String> = self
            .input_names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("%{i}: {n}"))
            .collect();
        let _ = writeln!(s, "plan({}) {{", names.join(", "));
        write_segment(&mut s, &self.root, 1, &self.alias);
        s.push_str("}\n");
        s
    }

    /// The plan as Graphviz DOT: inputs, constants and steps as nodes, values as edges.
    pub fn dot(&self) -> String {
        let mut s = String::from(
            "digraph plan {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n",
        );
        for (i, n) in self.input_names.iter().enumerate() {
            let _ = writeln!(s, "  v{i} [shape=doubleoctagon, label=\"%{i}\\n{n}\"];");
        }
        let mut counter = 0usize;
        dot_segment(&mut s, &self.root, &mut counter, None, &self.alias);
        s.push_str("}\n");
        s
    }
}

/// Runs a fused group: its program, or its steps one by one when observed (a debugger or
/// profiler reports every op) or on a device its program has no kernel for.
///
/// Outputs are written over plan inputs that die at the group (`drops`; the first
/// `n_inputs` values are the plan's inputs) and that nothing else holds: the parameters (and
/// optimizer state) passed to [`Compiled::call_donating`](crate::Compiled::call_donating).
/// An update `p ∓ g·lr` runs as its one loop reading `p` where it writes (see
/// [`update_in_place`]); any other program copies each tile of such an input before it
/// writes over it (a momentum or Adam step's weights and moments, see
/// [`Program::run_over`](ferrograd_array::Program::run_over)), and so over the large values
/// of the plan's own that die at the group (see [`run_over_inputs`]).
#[track_caller]
fn run_fused<O: Observer>(
    group: &Group,
    generators: &mut [&mut crate::Generator],
    scratch: &mut Scratch,
    observer: &mut O,
    drops: &[ValueId],
    n_inputs: usize,
) {
    let device = (group.inputs.iter())
        .filter_map(|&i| scratch.values[i as usize].as_ref())
        .map(|a| a.device())
        .find(|d| !d.is_cpu())
        .unwrap_or(ferrograd_array::Device::Cpu);
    if O::ACTIVE || !group.program.runs_on(device, group.dtype) {
        for step in &group.members {
            run_step(step, generators, scratch, observer);
        }
        return;
    }
    if device.is_cpu() && update_in_place(group, scratch, drops, n_inputs) {
        return;
    }
    if let (true, Some(into)) = (device.is_cpu(), &group.into) {
        return run_into_stack(group, into, scratch);
    }
    let mut outs = last_outputs(group, scratch);
    if !(device.is_cpu() && run_over_inputs(group, scratch, drops, n_inputs, &mut outs)) {
        let inputs = live(&scratch.values, &group.inputs);
        group
            .program
            .run(&inputs, &group.shape, group.dtype, &mut outs);
    }
    for (&o, out) in group.outputs.iter().zip(outs.drain(..)) {
        let out = out.expect("the program writes every output");
        let o = o as usize;
        scratch.keep[o] = kept(&out);
        scratch.views[o] = false;
        scratch.values[o] = Some(out);
    }
    scratch.outs = outs;
}

/// The group's outputs' slots, taken: last call's buffers, written in place when nothing
/// else holds them (in the scratch's list of them, kept between calls).
fn last_outputs(group: &Group, scratch: &mut Scratch) -> Vec<Option<Array>> {
    let mut outs = std::mem::take(&mut scratch.outs);
    outs.extend(
        group
            .outputs
            .iter()
            .map(|&o| scratch.values[o as usize].take()),
    );
    outs
}

/// A stack's buffer: `held`, from an earlier piece of this call (or the last call's, kept),
/// or a new one (rows not yet written hold whatever the buffer held).
fn stack_buffer(held: Option<Array>, shape: &[usize], dtype: ferrograd_array::DType) -> Array {
    match held {
        Some(b) if b.shape() == shape && b.dtype() == dtype => b,
        _ => Array::for_overwrite(shape, dtype),
    }
}

/// [`run_fused`] for a group writing outputs into a stack's rows (see
/// `passes::programs_into_stacks`): the cat's other pieces copied into theirs first, then
/// the program, each windowed output's value a view of its window.
fn run_into_stack(group: &Group, into: &IntoStack, scratch: &mut Scratch) {
    let s = into.stack as usize;
    let mut big = stack_buffer(scratch.values[s].take(), &into.shape, group.dtype);
    for &(v, w) in &into.copies {
        let piece = scratch.values[v as usize]
            .as_ref()
            .expect("inputs are live");
        piece.write_window(&mut big, w);
    }
    let mut outs = last_outputs(group, scratch);
    {
        let inputs = live(&scratch.values, &group.inputs);
        let (shape, dtype) = (&group.shape, group.dtype);
        (group.program).run_into(&inputs, shape, dtype, &mut outs, &into.windows, &mut big);
    }
    for (j, (&o, out)) in group.outputs.iter().zip(outs.drain(..)).enumerate() {
        let o = o as usize;
        let value = match into.windows.iter().find(|w| w.0 == j) {
            Some(&(_, w)) => {
                // (the pass chose windows inside rows of the stack seen as [_, stride])
                let rows = big.reshape(&[big.numel() / w.stride, w.stride]);
                let n: usize = group.shape.iter().product();
                let window = (rows.narrow(0, w.start / w.stride, n / w.cols)).narrow(
                    1,
                    w.start % w.stride,
                    w.cols,
                );
                scratch.views[o] = true;
                scratch.keep[o] = false;
                window.reshape(&group.shape)
            }
            None => {
                let out = out.expect("the program writes every output");
                scratch.keep[o] = kept(&out);
                scratch.views[o] = false;
                out
            }
        };
        scratch.values[o] = Some(value);
    }
    scratch.outs = outs;
    scratch.values[s] = Some(big);
}

/// A group's inputs, `None` for those taken out of their slots to be written over (the
/// others are live by construction).
fn left_in_slots<'a>(
    values: &'a [Option<Array>],
    ids: &[ValueId],
) -> SmallVec<[Option<&'a Array>; 8]> {
    ids.iter().map(|&i| values[i as usize].as_ref()).collect()
}

/// [`run_fused`]'s update in place: `true` when it wrote the group's output over its input.
fn update_in_place(
    group: &Group,
    scratch: &mut Scratch,
    drops: &[ValueId],
    n_inputs: usize,
) -> bool {
    let Some(k) = group.program.update_input() else {
        return false;
    };
    let v = group.inputs[k];
    let (&[o], true) = (
        &group.outputs[..],
        (v as usize) < n_inputs && drops.contains(&v),
    ) else {
        return false;
    };
    if group.inputs.iter().filter(|&&i| i == v).count() != 1 {
        return false;
    }
    // (a last call's output passed back as this input no longer holds it: `Plan::run`)
    let (o, v) = (o as usize, v as usize);
    let Some(mut target) = scratch.values[v].take() else {
        return false;
    };
    let done = {
        let inputs = left_in_slots(&scratch.values, &group.inputs);
        group
            .program
            .run_in_place(&inputs, &mut target, &group.shape, group.dtype)
    };
    if !done {
        scratch.values[v] = Some(target);
        return false;
    }
    scratch.keep[o] = kept(&target);
    scratch.views[o] = false;
    scratch.values[o] = Some(target);
    true
}

/// [`run_fused`]'s outputs written over the group's inputs of their shape that die there and
/// that nothing else holds: plan inputs (donated), and values of the plan's own not kept in
/// their slots between calls (from 64 KB; a kept one would make its producer take a new
/// buffer next call). `true` when the program ran so, its results in `outs` (which holds
/// last call's buffers on entry).
fn run_over_inputs(
    group: &Group,
    scratch: &mut Scratch,
    drops: &[ValueId],
    n_inputs: usize,
    outs: &mut [Option<Array>],
) -> bool {
    let reads = |v: ValueId| group.inputs.iter().filter(|&&i| i == v).count();
    // (input position, output position): each elementwise output over its own input
    let mut over: SmallVec<[(usize, usize); 4]> = SmallVec::new();
    for (k, &v) in group.inputs.iter().enumerate() {
        let j = over.len();
        // (the only handle: a last call's output passed back as this input no longer holds
        // it, `Plan::run`, so a value the caller still holds is not taken out and put back)
        let fits = |a: &Array| {
            a.shape() == &group.shape[..] && a.dtype() == group.dtype && a.is_unique_buffer()
        };
        // a plan input (donated), or a value of the plan's own that is not kept in its slot
        // between calls (a large one, whose buffer would go back to the array layer's cache
        // here anyway)
        let own = (v as usize) < n_inputs || !scratch.keep[v as usize];
        if j < group.program.outputs().len()
            && own
            && drops.contains(&v)
            && reads(v) == 1
            && scratch.values[v as usize].as_ref().is_some_and(fits)
        {
            over.push((k, j));
        }
    }
    if over.is_empty() {
        return false;
    }
    let mut held: SmallVec<[Option<Array>; 4]> = SmallVec::new();
    for &(k, j) in &over {
        let target = scratch.values[group.inputs[k] as usize].take();
        held.push(std::mem::replace(&mut outs[j], target));
    }
    let done = {
        let inputs = left_in_slots(&scratch.values, &group.inputs);
        group
            .program
            .run_over(&inputs, &over, &group.shape, group.dtype, outs)
    };
    if !done {
        // (nothing was written: the inputs go back, and last call's buffers with them)
        for (&(k, j), buffer) in over.iter().zip(held) {
            scratch.values[group.inputs[k] as usize] = std::mem::replace(&mut outs[j], buffer);
        }
    }
    done
}

#[track_caller]
fn run_step<O: Observer>(
    step: &Step,
    generators: &mut [&mut crate::Generator],
    scratch: &mut Scratch,
    observer: &mut O,
) {
    let start = O::ACTIVE.then(Instant::now);
    let Scratch {
        values,
        views,
        keep,
        stable: _,
        outs: _,
    } = scratch;
    match &step.kind {
        StepKind::Op(op) => {
            let id = step.outputs[0].expect("an op has its output") as usize;
            // The output's slot holds last call's array to write into; it is taken out while
            // the inputs are borrowed (a step never reads its own output).
            let mut out = values[id].take();
            let slot = &mut out;
            let inputs = live(values, &step.inputs);
            let written = match slot {
                Some(buffer) if !views[id] => {
                    let written = op.forward_into(&inputs, step.operand.as_deref(), buffer);
                    views[id] = !written;
                    written
                }
                _ => false,
            };
            if !written {
                let result = op.forward(&inputs);
                // A view of an input is no buffer to keep: kept in its slot (before its
                // second run shows it has no `*_into` form) it would pin the buffer it looks
                // into, and a kernel writing that buffer in place would have to copy it (the
                // lstm batched row's first replay copied its 3.4 MB projections 32 times).
                if inputs.iter().any(|i| i.storage_id() == result.storage_id()) {
                    views[id] = true;
                }
                keep[id] = kept(&result);
                *slot = Some(result);
            }
            if let Some(start) = start {
                observer.step(step, &inputs, std::slice::from_ref(slot), start.elapsed());
            }
            drop(inputs);
            values[id] = out;
        }
        StepKind::MatmulAcc {
            exact,
            scale,
            shared,
        } => {
            let id = step.outputs[0].expect("a product has its output") as usize;
            // the accumulator's buffer becomes the result: taken where it dies here, copied
            // where it is a view (a joined product's block) or still read after (`shared`)
            let acc = &mut values[step.inputs[0] as usize];
            let mut acc = if *shared { acc.clone() } else { acc.take() }.expect("inputs are live");
            {
                let operands = live(values, &step.inputs[1..]);
                if *exact {
                    operands[0].matmul_acc_into(operands[1], &mut acc);
                } else {
                    operands[0].matmul_add_scaled_into(operands[1], *scale, &mut acc);
                }
                if let Some(start) = start {
                    observer.step(step, &operands, &[Some(acc.clone())], start.elapsed());
                }
            }
            keep[id] = kept(&acc);
            views[id] = false;
            values[id] = Some(acc);
        }
        StepKind::CatInto {
            dim,
            stack,
            start: first,
            shape,
            piece,
            written,
        } => {
            let id = step.outputs[0].expect("a cat has its output") as usize;
            let s = *stack as usize;
            let held = values[s].take();
            let inputs = live(values, &step.inputs);
            let mut big = stack_buffer(held, shape, inputs[0].dtype());
            // (a group wrote every piece, unless it ran op by op)
            let done = written.is_some_and(|k| inputs[k].storage_id() == big.storage_id());
            if !done {
                Array::cat_into_at(&inputs, *dim, &mut big, *first);
            }
            // the piece: a view of its rows
            let n = piece.iter().product();
            let piece = big
                .reshape(&[big.numel()])
                .narrow(0, *first, n)
                .reshape(piece);
            if let Some(start) = start {
                observer.step(step, &inputs, &[Some(piece.clone())], start.elapsed());
            }
            drop(inputs);
            views[id] = true;
            values[id] = Some(piece);
            values[s] = Some(big);
        }
        StepKind::MatmulAccRows { first_row } => {
            let id = step.outputs[0].expect("a product has its output") as usize;
            let x = step.inputs[0] as usize;
            // the rows' buffer is written in place: nothing else holds it by now (the rows
            // written before were read and dropped), else `matmul_add_into_rows` copies it
            let mut base = values[x].take().expect("inputs are live");
            let rows = {
                let operands = live(values, &step.inputs[1..]);
                operands[0].matmul_add_into_rows(operands[1], &mut base, *first_row);
                operands[0].shape()[0]
            };
            let block = base.narrow(0, *first_row, rows);
            if let Some(start) = start {
                let operands = live(values, &step.inputs[1..]);
                observer.step(step, &operands, &[Some(block.clone())], start.elapsed());
            }
            views[id] = true;
            values[id] = Some(block);
            values[x] = Some(base);
        }
        StepKind::BlockSums { firsts, rows, mean } => {
            let id = step.outputs[0].expect("block sums have their output") as usize;
            // into last call's buffer when the slot kept it
            let mut out = values[id].take();
            {
                let stack = live(values, &step.inputs);
                match &mut out {
                    Some(buffer) => stack[0].row_block_sums_into(firsts, *rows, *mean, buffer),
                    None => out = Some(stack[0].row_block_sums(firsts, *rows, *mean)),
                }
                if let Some(start) = start {
                    observer.step(step, &stack, std::slice::from_ref(&out), start.elapsed());
                }
            }
            keep[id] = kept(out.as_ref().expect("computed above"));
            views[id] = false;
            values[id] = out;
        }
        StepKind::Assembled => {
            let id = step.outputs[0].expect("a stack has its output") as usize;
            let stack = values[id]
                .as_ref()
                .expect("a stack's pieces are written before it is read");
            keep[id] = kept(stack);
            views[id] = false;
            if let Some(start) = start {
                observer.step(step, &[], &[Some(stack.clone())], start.elapsed());
            }
        }
        StepKind::Draw { generator, draw } => {
            let id = step.outputs[0].expect("a draw has its output") as usize;
            let result = draw.sample(generators[*generator]);
            if let Some(start) = start {
                observer.step(step, &[], &[Some(result.clone())], start.elapsed());
            }
            views[id] = true; // fresh every call: not a buffer to reuse
            values[id] = Some(result);
        }
        StepKind::CustomBackward { op, needs } => {
            let outputs = {
                let inputs = live(values, &step.inputs);
                let n = inputs.len() - 2;
                let grads = op.backward_array(&inputs[..n], inputs[n], inputs[n + 1], needs);
                let outputs: SmallVec<[Option<Array>; 2]> = step
                    .outputs
                    .iter()
                    .zip(grads.into_iter().chain(std::iter::repeat(None)))
                    .map(|(want, got)| match (want, got) {
                        (Some(_), Some(g)) => Some(g),
                        (Some(_), None) => panic!(
                            "ferrograd: optimize mode: custom op `{}` returned no gradient for an \
                         input it gave one when captured; its backward must depend on its \
                         inputs only",
                            op.name()
                        ),
                        (None, _) => None,
                    })
                    .collect();
                if let Some(start) = start {
                    observer.step(step, &inputs, &outputs, start.elapsed());
                }
                outputs
            };
            for (id, out) in step.outputs.iter().zip(outputs) {
                if let (Some(id), Some(out)) = (id, out) {
                    views[*id as usize] = true; // an opaque result: not a buffer to reuse
                    values[*id as usize] = Some(out);
                }
            }
        }
    }
}

fn describe(a: &Array) -> String {
    format!("{}{:?}", a.dtype(), a.shape())
}

fn write_step(s: &mut String, pad: &str, step: &Step) {
    let outs: Vec<String> = step
        .outputs
        .iter()
        .map(|o| o.map_or("_".into(), |o| format!("%{o}")))
        .collect();
    let ins: Vec<String> = step.inputs.iter().map(|i| format!("%{i}")).collect();
    let phase = match step.origin.phase {
        crate::Phase::Forward => "",
        crate::Phase::Backward => "backward of ",
    };
    let _ = writeln!(
        s,
        "{pad}{} = {}({})    # {phase}{} at {}",
        outs.join(", "),
        step.name(),
        ins.join(", "),
        step.origin.op,
        ferrograd_array::Site(step.origin.location)
    );
}

fn write_segment(s: &mut String, seg: &Segment, depth: usize, alias: &[ValueId]) {
    let pad = "  ".repeat(depth);
    for slot in &seg.exec {
        match slot {
            Slot::Const { id, array, live } if *live => {
                let value = if array.numel() == 1 {
                    format!(" = {}", array.to_f64_vec()[0])
                } else {
                    String::new()
                };
                let _ = writeln!(s, "{pad}%{id} = const {}{value}", describe(array));
            }
            Slot::StateRead {
                read:
                    StateRead {
                        id,
                        shape,
                        dtype,
                        location,
                        ..
                    },
                live: true,
            } => {
                let _ = writeln!(
                    s,
                    "{pad}%{id} = state {dtype}{shape:?}    # read at {site}",
                    site = ferrograd_array::Site(location)
                );
            }
            Slot::StateWrite { id, .. } => {
                let _ = writeln!(
                    s,
                    "{pad}state <- %{id}    # written when the call completes"
                );
            }
            Slot::Step {
                step, keep: true, ..
            } => write_step(s, &pad, step),
            Slot::Fused {
                group, keep: true, ..
            } => {
                let outs: Vec<String> = group.outputs.iter().map(|o| format!("%{o}")).collect();
                let (ops, sums) = (group.members.len(), group.program.reductions().len());
                let what = match sums {
                    // (one op reading an input of its shape, which it may write over)
                    0 if ops == 1 => "elementwise op, as a program".to_string(),
                    0 => "elementwise ops in one pass".to_string(),
                    1 => "ops in one pass, one of them a sum".to_string(),
                    k => format!("ops in one pass, {k} of them sums"),
                };
                let into = match &group.into {
                    Some(into) => format!(", {} into %{}", into.windows.len(), into.stack),
                    None => String::new(),
                };
                let _ = writeln!(
                    s,
                    "{pad}{} = fused {}{:?} {{    # {ops} {what}{into}",
                    outs.join(", "),
                    group.dtype,
                    group.shape,
                );
                for step in &group.members {
                    write_step(s, &format!("{pad}  "), step);
                }
                let _ = writeln!(s, "{pad}}}");
            }
            _ => {}
        }
    }
    match &seg.end {
        End::Done(d) => {
            let outs: Vec<String> = d
                .outputs
                .iter()
                .map(|&o| format!("%{}", alias[o as usize]))
                .collect();
            let _ = writeln!(s, "{pad}return {}", outs.join(", "));
        }
        End::Guard {
            value,
            location,
            branches,
        } => {
            let _ = writeln!(
                s,
                "{pad}guard %{value} (read at {site}) {{",
                value = alias[*value as usize],
                site = ferrograd_array::Site(location)
            );
            for (expected, b) in branches {
                let shown = if expected.numel() <= 4 {
                    format!("{:?}", expected.to_f64_vec())
                } else {
                    describe(expected)
                };
                let _ = writeln!(s, "{pad}  == {shown}:");
                write_segment(s, b, depth + 2, alias);
            }
            let _ = writeln!(s, "{pad}}}");
        }
    }
}

fn dot_segment(
    s: &mut String,
    seg: &Segment,
    counter: &mut usize,
    from: Option<String>,
    alias: &[ValueId],
) {
    let escape = |t: &str| t.replace('\\', "\\\\").replace('"', "\\\"");
    let mut last = from;
    for slot in &seg.exec {
        match slot {
            Slot::Const { id, array, live } if *live => {
                let _ = writeln!(
                    s,
                    "  v{id} [shape=ellipse, style=dashed, label=\"%{id} const\\n{}\"];",
                    describe(array)
                );
            }
            Slot::StateRead {
                read: StateRead {
                    id, shape, dtype, ..
                },
                live: true,
            } => {
                let _ = writeln!(
                    s,
                    "  v{id} [shape=house, label=\"%{id} state\\n{dtype}{shape:?}\"];"
                );
            }
            Slot::StateWrite { id, .. } => {
                *counter += 1;
                let _ = writeln!(
                    s,
                    "  w{counter} [shape=invhouse, label=\"state <- %{id}\"];\n  v{id} -> w{counter};"
                );
            }
            Slot::Step {
                step, keep: true, ..
            } => {
                *counter += 1;
                let node = format!("s{counter}");
                let color = match step.origin.phase {
                    crate::Phase::Forward => "black",
                    crate::Phase::Backward => "blue",
                };
                let _ = writeln!(
                    s,
                    "  {node} [shape=box, color={color}, label=\"{}\\n{}:{}\"];",
                    escape(&step.name()),
                    escape(&ferrograd_array::normalize_path(
                        step.origin.location.file()
                    )),
                    step.origin.location.line()
                );
                for i in &step.inputs {
                    let _ = writeln!(s, "  v{i} -> {node};");
                }
                for o in step.outputs.iter().flatten() {
                    let _ = writeln!(s, "  v{o} [shape=point];\n  {node} -> v{o};");
                }
                last = Some(node);
            }
            Slot::Fused {
                group, keep: true, ..
            } => {
                *counter += 1;
                let node = format!("s{counter}");
                let names: Vec<String> = group.members.iter().map(|m| m.name().into()).collect();
                let _ = writeln!(
                    s,
                    "  {node} [shape=box, style=rounded, color=darkgreen, label=\"fused\\n{}\"];",
                    escape(&names.join(" ")),
                );
                for i in &group.inputs {
                    let _ = writeln!(s, "  v{i} -> {node};");
                }
                for o in &group.outputs {
                    let _ = writeln!(s, "  v{o} [shape=point];\n  {node} -> v{o};");
                }
                last = Some(node);
            }
            _ => {}
        }
    }
    match &seg.end {
        End::Done(d) => {
            *counter += 1;
            let node = format!("r{counter}");
            let _ = writeln!(s, "  {node} [shape=doublecircle, label=\"return\"];");
            for &o in &d.outputs {
                let _ = writeln!(s, "  v{} -> {node};", alias[o as usize]);
            }
        }
        End::Guard {
            value,
            location,
            branches,
        } => {
            *counter += 1;
            let node = format!("g{counter}");
            let value = alias[*value as usize];
            let _ = writeln!(
                s,
                "  {node} [shape=diamond, color=red, label=\"guard %{value}\\n{}:{}\"];",
                escape(&ferrograd_array::normalize_path(location.file())),
                location.line()
            );
            let _ = writeln!(s, "  v{value} -> {node};");
            if let Some(l) = &last {
                let _ = writeln!(s, "  {l} -> {node} [style=dotted];");
            }
            for (i, (_, b)) in branches.iter().enumerate() {
                *counter += 1;
                let branch = format!("b{counter}");
                let _ = writeln!(
                    s,
                    "  {branch} [shape=plaintext, label=\"variant {}\"];",
                    i + 1
                );
                let _ = writeln!(s, "  {node} -> {branch} [color=red];");
                dot_segment(s, b, counter, Some(branch), alias);
            }
        }
    }
}
