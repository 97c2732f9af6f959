//! The profiler: per-op (and per source line) counts and time, forward and backward,
//! printed as a table. Turn it on with [`Grad::profile`](crate::Grad::profile).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::panic::Location;
use std::time::Duration;

use crate::debug::Phase;

#[derive(Default, Clone, Copy)]
struct Row {
    forward_calls: u64,
    forward_time: Duration,
    backward_calls: u64,
    backward_time: Duration,
}

/// Accumulated timings of the ops run under one profiled `grad`.
#[derive(Default)]
pub struct Profile {
    rows: HashMap<(String, &'static Location<'static>), Row>,
    calls: u64,
}

impl Profile {
    pub(crate) fn add(
        &mut self,
        op: &str,
        location: &'static Location<'static>,
        phase: Phase,
        elapsed: Duration,
    ) {
        let row = self.rows.entry((op.to_string(), location)).or_default();
        match phase {
            Phase::Forward => {
                row.forward_calls += 1;
                row.forward_time += elapsed;
            }
            Phase::Backward => {
                row.backward_calls += 1;
                row.backward_time += elapsed;
            }
        }
    }

    pub(crate) fn count_call(&mut self) {
        self.calls += 1;
    }

    /// Number of profiled `grad` calls.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Total (forward, backward) time per op name, summed over source lines.
    pub fn totals(&self) -> Vec<(String, u64, Duration, u64, Duration)> {
        let mut by_op: HashMap<&str, Row> = HashMap::new();
        for ((op, _), r) in &self.rows {
            let e = by_op.entry(op).or_default();
            e.forward_calls += r.forward_calls;
            e.forward_time += r.forward_time;
            e.backward_calls += r.backward_calls;
            e.backward_time += r.backward_time;
        }
        let mut out: Vec<_> = by_op
            .into_iter()
            .map(|(op, r)| {
                (
                    op.to_string(),
                    r.forward_calls,
                    r.forward_time,
                    r.backward_calls,
                    r.backward_time,
                )
            })
            .collect();
        out.sort_by(|a, b| (b.2 + b.4).cmp(&(a.2 + a.4)).then(a.0.cmp(&b.0)));
        out
    }

    /// The table: one row per op and source line, slowest first, with the share of the
    /// total time.
    pub fn report(&self) -> String {
        let mut rows: Vec<_> = self.rows.iter().collect();
        rows.sort_by(|a, b| {
            (b.1.forward_time + b.1.backward_time)
                .cmp(&(a.1.forward_time + a.1.backward_time))
                .then(a.0 .0.cmp(&b.0 .0))
        });
        let total: Duration = rows
            .iter()
            .map(|(_, r)| r.forward_time + r.backward_time)
            .sum();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ferrograd profile over {} call(s): {:.3} ms in ops",
            self.calls,
            total.as_secs_f64() * 1e3
        );
        let _ = writeln!(
            s,
            "{:<22} {:>8} {:>12} {:>8} {:>12} {:>7}  line",
            "op", "fwd n", "fwd time", "bwd n", "bwd time", "share"
        );
        for ((op, loc), r) in rows {
            let t = r.forward_time + r.backward_time;
            let share = if total.is_zero() {
                0.0
            } else {
                100.0 * t.as_secs_f64() / total.as_secs_f64()
            };
            let _ = writeln!(
                s,
                "{:<22} {:>8} {:>9.1} µs {:>8} {:>9.1} µs {:>6.1}%  {}:{}",
                op,
                r.forward_calls,
                r.forward_time.as_secs_f64() * 1e6,
                r.backward_calls,
                r.backward_time.as_secs_f64() * 1e6,
                share,
                ferrograd_array::normalize_path(loc.file()),
                loc.line()
            );
        }
        s
    }
}
