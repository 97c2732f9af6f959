//! `where_cond`: choose between two arrays by a bool mask, all three broadcast.

use crate::dtype::{dispatch_any, Element};
use crate::error::fail;
use crate::layout::{broadcast_shapes, broadcast_strides, fmt_shape, for_each_offsets};
use crate::Array;

impl Array {
    /// `cond ? a : b` elementwise (PyTorch's `torch.where(cond, a, b)`); `self` is the bool
    /// condition, `a` and `b` share a dtype, all three broadcast together. Called as a
    /// method (`cond.where_cond(&a, &b)`) or as `Array::where_cond(&cond, &a, &b)`.
    ///
    /// ```
    /// use ferrograd_array::Array;
    /// let x = Array::from_vec(vec![-1.0f64, 2.0, -3.0], &[3]);
    /// let y = Array::where_cond(&x.gt_scalar(0.0), &x, &x.neg());
    /// assert_eq!(y.to_vec::<f64>(), vec![1.0, 2.0, 3.0]);
    /// ```
    #[track_caller]
    pub fn where_cond(&self, a: &Array, b: &Array) -> Array {
        let cond = self;
        let shape = Array::where_shape(cond, a, b);
        let mut out = Array::empty(&shape, a.dtype());
        Array::where_cond_into(cond, a, b, &mut out);
        out
    }

    #[track_caller]
    fn where_shape(cond: &Array, a: &Array, b: &Array) -> crate::layout::Shape {
        cond.expect_bool("where");
        crate::error::same_dtype("where", a.dtype(), b.dtype());
        match broadcast_shapes(a.shape(), b.shape())
            .and_then(|s| broadcast_shapes(&s, cond.shape()))
        {
            Some(s) => s,
            None => fail(
                "where",
                format_args!(
                    "shapes {} (cond), {} and {} cannot be broadcast together",
                    fmt_shape(cond.shape()),
                    fmt_shape(a.shape()),
                    fmt_shape(b.shape())
                ),
            ),
        }
    }

    /// [`where_cond`](Array::where_cond) into `out`.
    #[track_caller]
    pub fn where_cond_into(&self, a: &Array, b: &Array, out: &mut Array) {
        let cond = self;
        let shape = Array::where_shape(cond, a, b);
        fn kernel<T: Element>(shape: &[usize], c: &Array, a: &Array, b: &Array, out: &mut Array) {
            let dst = out.out_slice::<T>(shape, "where_cond_into");
            let (dc, da, db) = (
                c.storage_slice::<bool>("where"),
                a.storage_slice::<T>("where"),
                b.storage_slice::<T>("where"),
            );
            let sc = broadcast_strides(c.shape(), c.strides(), shape);
            let sa = broadcast_strides(a.shape(), a.strides(), shape);
            let sb = broadcast_strides(b.shape(), b.strides(), shape);
            let mut i = 0;
            for_each_offsets(
                shape,
                [&sc, &sa, &sb],
                [c.offset(), a.offset(), b.offset()],
                |[oc, oa, ob]| {
                    dst[i] = if dc[oc] { da[oa] } else { db[ob] };
                    i += 1;
                },
            );
        }
        dispatch_any!(a.dtype(), T => kernel::<T>(&shape, cond, a, b, out))
    }

    /// [`masked_fill`](Array::masked_fill) into `out`.
    #[track_caller]
    pub fn masked_fill_into(&self, mask: &Array, value: f64, out: &mut Array) {
        let filler = Array::full(&[], value, self.dtype());
        Array::where_cond_into(mask, &filler, self, out)
    }

    /// `value` where `mask` is true, `self` elsewhere (`mask` broadcasts to `self`).
    #[track_caller]
    pub fn masked_fill(&self, mask: &Array, value: f64) -> Array {
        let filler = Array::full(&[], value, self.dtype());
        let out = Array::where_cond(mask, &filler, self);
        if out.shape() != self.shape() {
            fail(
                "masked_fill",
                format_args!(
                    "mask of shape {} does not broadcast to {}",
                    fmt_shape(mask.shape()),
                    fmt_shape(self.shape())
                ),
            )
        }
        out
    }
}
