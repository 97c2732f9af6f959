//! Test helpers: arrays in random layouts whose logical values are known independently of
//! the library's own strided reader, and naive n-d index arithmetic for references.

use ferrograd_array::{Array, DType, Generator};
use rand::Rng;

pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

pub fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &n)| acc * n + i)
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// An array and its row-major logical values (as f64), computed by index arithmetic.
pub struct Case {
    pub array: Array,
    pub values: Vec<f64>,
}

#[derive(Clone, Copy, Debug)]
pub enum Layout {
    Contiguous,
    Permuted,
    Narrowed,
    Broadcast,
}

pub const LAYOUTS: [Layout; 4] = [
    Layout::Contiguous,
    Layout::Permuted,
    Layout::Narrowed,
    Layout::Broadcast,
];

fn base(
    rng: &mut Generator,
    shape: &[usize],
    dtype: DType,
    low: f64,
    high: f64,
) -> (Array, Vec<f64>) {
    let a = match dtype {
        DType::Bool => rng.bernoulli(shape, 0.5, DType::Bool),
        DType::I64 => rng.uniform(shape, low.floor(), high.ceil(), DType::I64),
        _ => rng.uniform(shape, low, high, dtype),
    };
    let v = a.to_f64_vec(); // contiguous: a plain copy of the buffer
    (a, v)
}

/// A random array of `shape` laid out as `layout`, values in `[low, high)`.
pub fn case(
    rng: &mut Generator,
    shape: &[usize],
    dtype: DType,
    layout: Layout,
    low: f64,
    high: f64,
) -> Case {
    let n = numel(shape);
    match layout {
        Layout::Contiguous => {
            let (array, values) = base(rng, shape, dtype, low, high);
            Case { array, values }
        }
        Layout::Permuted => {
            let nd = shape.len();
            let q: Vec<usize> = rng
                .randperm(nd)
                .to_vec::<i64>()
                .iter()
                .map(|&v| v as usize)
                .collect();
            let mut bs = vec![0; nd];
            for i in 0..nd {
                bs[q[i]] = shape[i];
            }
            let (b, bv) = base(rng, &bs, dtype, low, high);
            let array = b.permute(&q);
            let values = (0..n)
                .map(|i| {
                    let idx = unravel(i, shape);
                    let mut bi = vec![0; nd];
                    for k in 0..nd {
                        bi[q[k]] = idx[k];
                    }
                    bv[ravel(&bi, &bs)]
                })
                .collect();
            Case { array, values }
        }
        Layout::Narrowed => {
            let extra: Vec<usize> = shape.iter().map(|_| rng.rng().random_range(0..3)).collect();
            let start: Vec<usize> = extra
                .iter()
                .map(|&e| rng.rng().random_range(0..=e))
                .collect();
            let bs: Vec<usize> = shape.iter().zip(&extra).map(|(s, e)| s + e).collect();
            let (b, bv) = base(rng, &bs, dtype, low, high);
            let mut array = b;
            for d in 0..shape.len() {
                array = array.narrow(d, start[d], shape[d]);
            }
            let values = (0..n)
                .map(|i| {
                    let idx: Vec<usize> = unravel(i, shape)
                        .iter()
                        .zip(&start)
                        .map(|(i, s)| i + s)
                        .collect();
                    bv[ravel(&idx, &bs)]
                })
                .collect();
            Case { array, values }
        }
        Layout::Broadcast => {
            let src: Vec<usize> = shape
                .iter()
                .map(|&s| if rng.rng().random_bool(0.5) { 1 } else { s })
                .collect();
            let (b, bv) = base(rng, &src, dtype, low, high);
            let array = b.expand(shape);
            let values = (0..n)
                .map(|i| {
                    let idx: Vec<usize> = unravel(i, shape)
                        .iter()
                        .zip(&src)
                        .map(|(&i, &s)| if s == 1 { 0 } else { i })
                        .collect();
                    bv[ravel(&idx, &src)]
                })
                .collect();
            Case { array, values }
        }
    }
}

/// A random array of `shape` in one of `layouts`, chosen at random.
pub fn case_in(
    rng: &mut Generator,
    shape: &[usize],
    dtype: DType,
    layouts: &[Layout],
    low: f64,
    high: f64,
) -> Case {
    let layout = layouts[rng.rng().random_range(0..layouts.len())];
    case(rng, shape, dtype, layout, low, high)
}

/// A random shape of 1 to `max_dims` dims (sizes `1..=max_size`) and one of its dims.
pub fn shape_and_dim(rng: &mut Generator, max_dims: usize, max_size: usize) -> (Vec<usize>, usize) {
    loop {
        let shape = random_shape(rng, max_dims, max_size, false);
        if !shape.is_empty() {
            let d = rng.rng().random_range(0..shape.len());
            return (shape, d);
        }
    }
}

/// A random shape of 0 to `max_dims` dims with sizes in `0..=max_size` (sizes of 0 only when
/// `allow_empty`).
pub fn random_shape(
    rng: &mut Generator,
    max_dims: usize,
    max_size: usize,
    allow_empty: bool,
) -> Vec<usize> {
    let nd = rng.rng().random_range(0..=max_dims);
    (0..nd)
        .map(|_| {
            rng.rng()
                .random_range(if allow_empty { 0 } else { 1 }..=max_size)
        })
        .collect()
}

/// Value at `out_idx` of an array of `shape` read under broadcasting to `out_idx`'s shape.
pub fn broadcast_get(values: &[f64], shape: &[usize], out_idx: &[usize]) -> f64 {
    let lead = out_idx.len() - shape.len();
    let idx: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &s)| if s == 1 { 0 } else { out_idx[lead + i] })
        .collect();
    values[ravel(&idx, shape)]
}

#[track_caller]
pub fn assert_close(got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= atol + rtol * w.abs();
        assert!(
            ok,
            "element {i}: got {g}, want {w} (all got {got:?}, want {want:?})"
        );
    }
}

/// Tolerances for a dtype: f32 results are compared in f64 with a relative 1e-5.
pub fn tol(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (2e-5, 1e-5),
        _ => (1e-12, 1e-12),
    }
}

/// The message of the panic `f` raises (fails the test if it does not panic).
pub fn panic_message(f: impl FnOnce()) -> String {
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
