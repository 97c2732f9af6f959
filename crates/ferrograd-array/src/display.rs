//! `Display` in the style of PyTorch's print: nested brackets, aligned columns, four
//! decimals (scientific when the magnitudes call for it), and `...` past 1000 elements.

use std::fmt;

use crate::{Array, DType};

/// Arrays with more elements than this print only their first and last 3 entries per dim.
const SUMMARIZE_ABOVE: usize = 1000;
const EDGE: usize = 3;

fn format_values(a: &Array) -> Vec<String> {
    match a.dtype() {
        DType::Bool => a.to_vec::<bool>().iter().map(|b| b.to_string()).collect(),
        DType::I64 => a.to_vec::<i64>().iter().map(|v| v.to_string()).collect(),
        _ => {
            let v = a.to_f64_vec();
            let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
            let max = finite.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let min_nonzero = finite
                .iter()
                .filter(|x| **x != 0.0)
                .fold(f64::INFINITY, |m, x| m.min(x.abs()));
            let integral = finite.iter().all(|x| x.fract() == 0.0);
            let sci = max >= 1e8 || (min_nonzero < 1e-4 && min_nonzero.is_finite());
            v.iter()
                .map(|&x| {
                    if !x.is_finite() {
                        format!("{x}")
                    } else if sci {
                        // PyTorch's form: a signed two-digit exponent (1.0000e-06).
                        let m = format!("{x:.4e}");
                        let (mantissa, exp) = m.split_once('e').unwrap_or((&m, "0"));
                        let e: i32 = exp.parse().unwrap_or(0);
                        format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
                    } else if integral {
                        format!("{x:.0}.")
                    } else {
                        format!("{x:.4}")
                    }
                })
                .collect()
        }
    }
}

/// Which indices of a dim of size `n` to print (`None` marks the `...` gap).
fn shown(n: usize, summarize: bool) -> Vec<Option<usize>> {
    if summarize && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain([None])
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    }
}

fn write_nested(
    f: &mut fmt::Formatter<'_>,
    a: &Array,
    cells: &[String],
    width: usize,
    indent: usize,
    summarize: bool,
) -> fmt::Result {
    if a.ndim() == 0 {
        return write!(f, "{:>width$}", cells[0]);
    }
    f.write_str("[")?;
    let rows = shown(a.shape()[0], summarize);
    let mut start = 0;
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            if a.ndim() == 1 {
                f.write_str(", ")?;
            } else {
                f.write_str(",")?;
                for _ in 0..(a.ndim() - 1) {
                    f.write_str("\n")?;
                }
                write!(f, "{:indent$}", "", indent = indent + 1)?;
            }
        }
        match r {
            None => f.write_str("...")?,
            Some(r) => {
                let sub = a.select(0usize, *r);
                let n = count_shown(sub.shape(), summarize);
                write_nested(
                    f,
                    &sub,
                    &cells[start..start + n],
                    width,
                    indent + 1,
                    summarize,
                )?;
                start += n;
            }
        }
    }
    f.write_str("]")
}

fn count_shown(shape: &[usize], summarize: bool) -> usize {
    shape
        .iter()
        .map(|&n| shown(n, summarize).iter().filter(|r| r.is_some()).count())
        .product()
}

/// The printed elements, in order, of a possibly summarised array.
fn gather_shown(a: &Array, summarize: bool) -> Array {
    let mut v = a.clone();
    for d in 0..a.ndim() {
        let keep: Vec<i64> = shown(a.shape()[d], summarize)
            .into_iter()
            .flatten()
            .map(|i| i as i64)
            .collect();
        if keep.len() != a.shape()[d] {
            let n = keep.len();
            v = v.index_select(d, &Array::from_vec(keep, &[n]));
        }
    }
    v
}

impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summarize = self.numel() > SUMMARIZE_ABOVE;
        let cells = format_values(&gather_shown(&self.to_host("Display"), summarize));
        let width = cells.iter().map(|c| c.len()).max().unwrap_or(0);
        f.write_str("array(")?;
        if self.numel() == 0 {
            write!(f, "[], shape={:?}", self.shape())?;
        } else {
            write_nested(f, self, &cells, width, "array(".len(), summarize)?;
        }
        if self.dtype() != DType::F32 {
            write!(f, ", dtype={}", self.dtype())?;
        }
        if !self.device().is_cpu() {
            write!(f, ", device={}", self.device())?;
        }
        f.write_str(")")
    }
}
