//! Indexing primitives: `index_select`/`index_add`, `gather`/`scatter_add`, `scatter`, and
//! assignment (`index_put`, the seed's `x[k] = v`); reading by the same index forms.
//!
//! Each pair is adjoint: the gradient of `index_select` is an `index_add` into zeros and vice
//! versa, likewise `gather` and `scatter_add`, so gradients of gradients stay in the family.
//! Where a write overwrites (`scatter`, `index_put`) and positions repeat, only the write
//! that lands last receives the gradient, exactly as only it reaches the output.

use smallvec::smallvec;

use super::shape::ShapeOp;
use super::{on_device_of, scalar_like, unbroadcast, zeros_like};
use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::{Array, DType, Dim, Index, Tensor};

/// Row positions as a 1-d i64 index tensor on `like`'s device.
fn positions(rows: &[usize], like: &Tensor) -> Tensor {
    let rows = rows.iter().map(|&r| r as i64).collect::<Vec<_>>();
    let n = rows.len();
    on_device_of(Array::from_vec(rows, &[n]), like)
}

/// Zero-pads `t` at the end of each dim up to `shape` (src arrays may be larger than their
/// index).
fn pad_to(t: Tensor, shape: &[usize]) -> Tensor {
    let mut t = t;
    for (d, &n) in shape.iter().enumerate() {
        if t.shape()[d] != n {
            t = apply(
                ShapeOp::PadNarrow {
                    dim: d,
                    start: 0,
                    size: n,
                },
                &[&t],
            );
        }
    }
    t
}

/// 1.0 where a scatter's source element is the last write to its position, else 0.0.
fn scatter_winners(x: &Tensor, dim: usize, index: &Tensor, dtype: DType) -> Tensor {
    let ids = on_device_of(
        Array::arange(0.0, index.numel() as f64, 1.0, DType::I64).reshape(index.shape()),
        index,
    );
    let owner = on_device_of(Array::full(x.shape(), -1.0, DType::I64), x).scatter(dim, index, &ids);
    owner.gather(dim, index).eq(&ids).to_dtype(dtype)
}

/// Indexing primitives: each variant's name, forward, forward into a buffer and gradient
/// rule are below, one exhaustive match each.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IndexOp {
    /// Entries at indices along a dim (inputs: x, i64 index).
    IndexSelect(usize),
    /// `x` with `src` added at indices along a dim (inputs: x, index, src).
    IndexAdd(usize),
    /// Gather along a dim (inputs: x, index).
    Gather(usize),
    /// Scatter-add along a dim (inputs: x, index, src).
    ScatterAdd(usize),
    /// Scatter (overwrite) along a dim (inputs: x, index, src).
    Scatter(usize),
    /// Assignment `x[index] = v` (`accumulate`: `+=`) (inputs: x, v).
    IndexPut(Index, bool),
}

impl From<IndexOp> for Op {
    fn from(op: IndexOp) -> Op {
        Op::Index(op)
    }
}

impl IndexOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            IndexOp::IndexSelect(_) => "index_select",
            IndexOp::IndexAdd(_) => "index_add",
            IndexOp::Gather(_) => "gather",
            IndexOp::ScatterAdd(_) => "scatter_add",
            IndexOp::Scatter(_) => "scatter",
            IndexOp::IndexPut(_, false) => "index_put",
            IndexOp::IndexPut(_, true) => "index_put_add",
        }
    }

    #[track_caller]
    pub(crate) fn forward(&self, x: &[&Array]) -> Array {
        match self {
            IndexOp::IndexSelect(d) => x[0].index_select(*d, x[1]),
            IndexOp::IndexAdd(d) => x[0].index_add(*d, x[1], x[2]),
            IndexOp::Gather(d) => x[0].gather(*d, x[1]),
            IndexOp::ScatterAdd(d) => x[0].scatter_add(*d, x[1], x[2]),
            IndexOp::Scatter(d) => x[0].scatter(*d, x[1], x[2]),
            IndexOp::IndexPut(i, false) => x[0].index_put(i, x[1]),
            IndexOp::IndexPut(i, true) => x[0].index_put_add(i, x[1]),
        }
    }

    /// See [`Op::forward_into`].
    #[track_caller]
    pub(crate) fn forward_into(&self, x: &[&Array], out: &mut Array) -> bool {
        match self {
            IndexOp::IndexSelect(d) => x[0].index_select_into(*d, x[1], out),
            IndexOp::IndexAdd(d) => x[0].index_add_into(*d, x[1], x[2], out),
            IndexOp::Gather(d) => x[0].gather_into(*d, x[1], out),
            IndexOp::ScatterAdd(d) => x[0].scatter_add_into(*d, x[1], x[2], out),
            IndexOp::Scatter(d) => x[0].scatter_into(*d, x[1], x[2], out),
            IndexOp::IndexPut(i, false) => x[0].index_put_into(i, x[1], out),
            IndexOp::IndexPut(i, true) => x[0].index_put_add_into(i, x[1], out),
        }
        true
    }

    pub(crate) fn vjp(&self, x: &[Tensor], g: &Tensor, needs: &[bool]) -> Grads {
        index_vjp(self, x, g, needs)
    }
}

fn index_vjp(op: &IndexOp, x: &[Tensor], g: &Tensor, needs: &[bool]) -> Grads {
    match op {
        IndexOp::IndexSelect(d) => smallvec![Some(zeros_like(&x[0]).index_add(*d, &x[1], g)), None],
        IndexOp::IndexAdd(d) => smallvec![
            wanted(needs, 0, || g.clone()),
            None,
            wanted(needs, 2, || g.index_select(*d, &x[1]))
        ],
        IndexOp::Gather(d) => smallvec![Some(zeros_like(&x[0]).scatter_add(*d, &x[1], g)), None],
        IndexOp::ScatterAdd(d) => smallvec![
            wanted(needs, 0, || g.clone()),
            None,
            wanted(needs, 2, || pad_to(g.gather(*d, &x[1]), x[2].shape()))
        ],
        IndexOp::Scatter(d) => {
            let kept = wanted(needs, 0, || {
                g.scatter(*d, &x[1], &x[1].zeros_like().to_dtype(g.dtype()))
            });
            let src = wanted(needs, 2, || {
                let winners = scatter_winners(&x[0], *d, &x[1], g.dtype());
                pad_to(&g.gather(*d, &x[1]) * &winners, x[2].shape())
            });
            smallvec![kept, None, src]
        }
        IndexOp::IndexPut(index, accumulate) => {
            let (base, v) = (&x[0], &x[1]);
            let dx = wanted(needs, 0, || {
                if *accumulate {
                    g.clone()
                } else {
                    g.index_put(index, &scalar_like(0.0, g))
                }
            });
            let dv = wanted(needs, 1, || {
                match base.data().index_rows(index, "index_put") {
                    Some(rows) => {
                        let idx = positions(&rows, g);
                        let mut region = g.index_select(0, &idx);
                        if !*accumulate {
                            // Of repeated rows only the last write survives.
                            let last: Vec<f64> = (0..rows.len())
                                .map(|j| {
                                    if rows[j + 1..].contains(&rows[j]) {
                                        0.0
                                    } else {
                                        1.0
                                    }
                                })
                                .collect();
                            if last.contains(&0.0) {
                                let mut shape = vec![1; region.ndim()];
                                shape[0] = rows.len();
                                let mask = on_device_of(
                                    Array::from_vec(last, &[rows.len()])
                                        .to_dtype(g.dtype())
                                        .reshape(&shape),
                                    g,
                                );
                                region = &region * &mask;
                            }
                        }
                        if matches!(index, Index::Single(_)) {
                            region = region.squeeze_dim(0);
                        }
                        unbroadcast(&region, v.shape())
                    }
                    None => {
                        let Index::Mask(mask) = index else {
                            unreachable!("only masks address elements")
                        };
                        if v.numel() == 1 {
                            (g * &Tensor::new(mask.to_dtype(g.dtype())))
                                .sum()
                                .reshape(v.shape())
                        } else {
                            g.reshape(&[g.numel()])
                                .index_select(0, &Tensor::new(mask.flat_nonzero()))
                                .reshape(v.shape())
                        }
                    }
                }
            });
            smallvec![dx, dv]
        }
    }
}

impl Tensor {
    /// The entries at `index` (1-d i64) along `dim`.
    #[track_caller]
    pub fn index_select(&self, dim: impl Dim, index: &Tensor) -> Tensor {
        let d = dim.resolve(self.ndim(), "index_select");
        apply(IndexOp::IndexSelect(d), &[self, index])
    }

    /// `self` with `src` added at rows `index` (1-d i64) along `dim`.
    #[track_caller]
    pub fn index_add(&self, dim: impl Dim, index: &Tensor, src: &Tensor) -> Tensor {
        let d = dim.resolve(self.ndim(), "index_add");
        apply(IndexOp::IndexAdd(d), &[self, index, src])
    }

    /// Entries picked along `dim` by an i64 index of the same number of dims.
    #[track_caller]
    pub fn gather(&self, dim: impl Dim, index: &Tensor) -> Tensor {
        let d = dim.resolve(self.ndim(), "gather");
        apply(IndexOp::Gather(d), &[self, index])
    }

    /// `self` with `src` added at the positions `index` names along `dim`.
    #[track_caller]
    pub fn scatter_add(&self, dim: impl Dim, index: &Tensor, src: &Tensor) -> Tensor {
        let d = dim.resolve(self.ndim(), "scatter_add");
        apply(IndexOp::ScatterAdd(d), &[self, index, src])
    }

    /// `self` with `src` written at the positions `index` names along `dim`.
    #[track_caller]
    pub fn scatter(&self, dim: impl Dim, index: &Tensor, src: &Tensor) -> Tensor {
        let d = dim.resolve(self.ndim(), "scatter");
        apply(IndexOp::Scatter(d), &[self, index, src])
    }

    /// `self` with `values` written where `index` points (the seed's `x[k] = v`): a row, rows
    /// by a list or an i64 tensor, or a mask. `values` broadcasts to the addressed region.
    ///
    /// ```
    /// use ferrograd::{Index, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// let y = x.index_put(&Index::Single(1), &Tensor::scalar(0.0f64));
    /// assert_eq!(y.to_vec::<f64>(), vec![1.0, 0.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn index_put(&self, index: &Index, values: &Tensor) -> Tensor {
        apply(IndexOp::IndexPut(index.clone(), false), &[self, values])
    }

    /// Like [`index_put`](Tensor::index_put) but adds into the addressed places.
    #[track_caller]
    pub fn index_put_add(&self, index: &Index, values: &Tensor) -> Tensor {
        apply(IndexOp::IndexPut(index.clone(), true), &[self, values])
    }

    /// `self` with the number `value` written where `index` points.
    #[track_caller]
    pub fn index_fill(&self, index: &Index, value: f64) -> Tensor {
        self.index_put(index, &scalar_like(value, self))
    }

    /// Assigns in place of the handle: `x.set(k, &v)` is `x = x.index_put(k, v)`, so later
    /// reads see the new value and the gradient flows to both the old `x` and `v`.
    #[track_caller]
    pub fn set(&mut self, index: impl Into<Index>, values: &Tensor) {
        *self = self.index_put(&index.into(), values);
    }

    /// Assigns a number in place of the handle (see [`set`](Tensor::set)).
    #[track_caller]
    pub fn set_value(&mut self, index: impl Into<Index>, value: f64) {
        *self = self.index_fill(&index.into(), value);
    }

    /// Reads what an [`Index`] addresses: a row (dim dropped), rows, or the elements a mask
    /// selects (1-d).
    #[track_caller]
    pub fn index(&self, index: impl Into<Index>) -> Tensor {
        let index = index.into();
        match (&index, self.data().index_rows(&index, "index")) {
            (Index::Single(_), Some(rows)) => self.select(0, rows[0]),
            (_, Some(rows)) => self.index_select(0, &positions(&rows, self)),
            (Index::Mask(m), None) => self
                .reshape(&[self.numel()])
                .index_select(0, &on_device_of(m.flat_nonzero(), self)),
            _ => unreachable!("only masks address elements"),
        }
    }
}
