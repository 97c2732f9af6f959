//! The element loops: one loop per [`MapFn`] / [`ZipFn`] over a run of elements, chosen by a
//! `match` outside the loop so each vectorises with its function inlined.
//!
//! These tables are the only place an elementwise function meets a loop. The named ops
//! (`Array::exp`, `Array::add`, the comparisons), the fused [`Program`](crate::Program)
//! evaluator and the offset walks for strided operands all call them, so each function is
//! compiled once per element type and vector path, not once per op and caller: the array
//! crate's build spent most of its time on those copies (`cargo llvm-lines`).

use crate::dtype::{Element, Float, Number};
use crate::fused::{clamp_value, MapFn, ZipFn};
use crate::math::Trig;

/// One operand of a two-input loop over a run of elements: a slice as long as the run, or
/// one value repeated (a scalar, a broadcast row's value).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operand<'a, T> {
    /// One value per element of the run.
    Slice(&'a [T]),
    /// The same value for every element.
    Splat(T),
}

/// `dst[i] = f(x[i], y[i])` over the four forms of the operands. Inlined into each table
/// entry, so every `(function, form)` pair is its own loop.
#[inline(always)]
fn zip_loop<T: Copy, U>(dst: &mut [U], x: Operand<'_, T>, y: Operand<'_, T>, f: impl Fn(T, T) -> U)
where
    U: Copy,
{
    match (x, y) {
        (Operand::Slice(x), Operand::Slice(y)) => {
            for ((d, &x), &y) in dst.iter_mut().zip(x).zip(y) {
                *d = f(x, y)
            }
        }
        (Operand::Slice(x), Operand::Splat(y)) => {
            for (d, &x) in dst.iter_mut().zip(x) {
                *d = f(x, y)
            }
        }
        (Operand::Splat(x), Operand::Slice(y)) => {
            for (d, &y) in dst.iter_mut().zip(y) {
                *d = f(x, y)
            }
        }
        (Operand::Splat(x), Operand::Splat(y)) => dst.fill(f(x, y)),
    }
}

/// `dst[i] = x[i]` clamped into `[lo, hi]` (bounds converted to the element type once).
#[inline(always)]
fn clamp_loop<T: Number>(dst: &mut [T], x: &[T], lo: Option<f64>, hi: Option<f64>) {
    let (lo, hi) = (lo.map(T::from_f64), hi.map(T::from_f64));
    for (d, &x) in dst.iter_mut().zip(x) {
        *d = clamp_value(x, lo, hi)
    }
}

/// `dst[i] = f(x[i])` for a float function (`FMA`: whether the polynomial kernels fuse their
/// multiply-adds, as [`with_fma`](crate::math::with_fma) chooses).
#[inline(always)]
pub(crate) fn map_float<T: Float, const FMA: bool>(f: MapFn, dst: &mut [T], x: &[T]) {
    // the exponential's and logarithm's explicit vector loops, where the type and level
    // have them, sine, cosine and tangent in two passes, f32's lgamma, digamma and erfinv
    // and f64's erf and GELU by runs
    let n = dst.len().min(x.len());
    match f {
        MapFn::Exp if T::exp_shifted_fast::<FMA>(&mut dst[..n], Some(&x[..n]), T::zero(), None) => {
            return
        }
        MapFn::Sigmoid if T::sigmoid_fast::<FMA>(&mut dst[..n], &x[..n]) => return,
        MapFn::Log if T::log_fast::<FMA>(&mut dst[..n], &x[..n]) => return,
        MapFn::Erf | MapFn::Gelu | MapFn::Erfinv
            if T::map_by_runs::<FMA>(f, &mut dst[..n], &x[..n]) =>
        {
            return
        }
        MapFn::Sin => return T::trig_fast::<FMA>(Trig::Sin, &mut dst[..n], &x[..n]),
        MapFn::Cos => return T::trig_fast::<FMA>(Trig::Cos, &mut dst[..n], &x[..n]),
        MapFn::Tan => return T::trig_fast::<FMA>(Trig::Tan, &mut dst[..n], &x[..n]),
        MapFn::Lgamma if T::lgamma_or_digamma_fast::<FMA>(false, &mut dst[..n], &x[..n]) => return,
        MapFn::Digamma if T::lgamma_or_digamma_fast::<FMA>(true, &mut dst[..n], &x[..n]) => return,
        _ => {}
    }
    macro_rules! each {
        ($($v:ident),*; vector: $($p:ident),*) => {
            match f {
                $(MapFn::$p => chunked_loop(dst, x, #[inline(always)] |x| MapFn::$p.eval::<T, FMA>(x)),)*
                $(MapFn::$v => {
                    for (d, &x) in dst.iter_mut().zip(x) {
                        *d = MapFn::$v.eval::<T, FMA>(x)
                    }
                })*
                MapFn::Powi(n) => powi_loop(dst, x, n),
                MapFn::Clamp(lo, hi) => clamp_loop(dst, x, lo, hi),
                // (closures marked to inline: a function item passed as `impl Fn` can run
                // through a shim without the caller's vector features)
                MapFn::Powf(0.5) => chunked_loop(
                    dst,
                    x,
                    #[inline(always)]
                    |x| crate::math::pow_half(x),
                ),
                MapFn::Powf(-0.5) => chunked_loop(
                    dst,
                    x,
                    #[inline(always)]
                    |x| x.pow_neg_half_kernel::<FMA>(),
                ),
                MapFn::Powf(e) => {
                    // the exponent converted once, outside the loop, as `eval` converts it
                    let p = <T as crate::dtype::Element>::from_f64(e);
                    for (d, &x) in dst.iter_mut().zip(x) {
                        *d = x.pow_kernel::<FMA>(p)
                    }
                }
                f @ MapFn::Polygamma(_) => {
                    for (d, &x) in dst.iter_mut().zip(x) {
                        *d = f.eval::<T, FMA>(x)
                    }
                }
                MapFn::Sin | MapFn::Cos | MapFn::Tan => unreachable!("trig_fast ran it"),
            }
        };
    }
    each!(
        Neg, Abs, Sign, Relu, Trunc, Sqrt, Rsqrt, Floor, Ceil, Round, Reciprocal,
        Square, Identity;
        vector: Exp, Expm1, Log, Log1p, Tanh, Sigmoid, Erf, Gelu, Sinh, Cosh, Asin,
        Acos, Atan, Lgamma, Digamma, Erfinv
    )
}

/// `dst[i] = x[i]^n` by repeated squaring, the products of `powi` (compiler-rt's
/// `__powisf2` and `__powidf2`, which it calls for an exponent known only at run time) in
/// the same order, so the same bits: `x`, `x²`, `x⁴`, ... multiplied into the result from 1
/// where `|n|` has a bit set, its reciprocal for a negative `n`, over chunks of 32 elements
/// in vector registers: `powi` is a call per element (f32 `x^3` over `[1024, 512]` took 773
/// µs on one Zen 4 core).
#[inline(always)]
pub(crate) fn powi_loop<T: Float>(dst: &mut [T], x: &[T], n: i32) {
    const CHUNK: usize = 32;
    let n_all = dst.len().min(x.len());
    let (dst, x) = (&mut dst[..n_all], &x[..n_all]);
    let mut d = dst.chunks_exact_mut(CHUNK);
    let mut s = x.chunks_exact(CHUNK);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[T; CHUNK] = s.try_into().expect("a whole chunk");
        d.copy_from_slice(&powi_chunk(*s, n));
    }
    // the rest in a chunk of its own (its unused lanes computed and dropped)
    let (d, s) = (d.into_remainder(), s.remainder());
    if !s.is_empty() {
        let mut last = [T::one(); CHUNK];
        last[..s.len()].copy_from_slice(s);
        d.copy_from_slice(&powi_chunk(last, n)[..s.len()]);
    }
}

/// [`powi_loop`]'s products over one chunk, held in vector registers.
#[inline(always)]
fn powi_chunk<T: Float, const N: usize>(x: [T; N], n: i32) -> [T; N] {
    let mut power = x;
    let mut r = [T::one(); N];
    let mut rest = n.unsigned_abs();
    loop {
        if rest & 1 != 0 {
            for i in 0..N {
                r[i] *= power[i];
            }
        }
        rest >>= 1;
        if rest == 0 {
            break;
        }
        for p in power.iter_mut() {
            *p = *p * *p;
        }
    }
    if n < 0 {
        for v in r.iter_mut() {
            *v = T::one() / *v;
        }
    }
    r
}

/// `dst[i] = near(src[i])` over the whole run (a loop that vectorises, as [`chunked_loop`]),
/// then `far(src[i])` where `|src[i]|` is beyond `limit`: a kernel whose argument reduction
/// holds below a bound and a libm call past it (`sin`, `cos`, `tan`), bit for bit the kernel
/// with the branch, in a loop without one.
#[inline(always)]
pub(crate) fn near_then_far<T: Float>(
    dst: &mut [T],
    src: &[T],
    limit: T,
    near: impl Fn(T) -> T,
    far: impl Fn(T) -> T,
) {
    chunked_loop(dst, src, near);
    for (d, &x) in dst.iter_mut().zip(src) {
        if x.abs() > limit {
            *d = far(x);
        }
    }
}

/// Elements per run of [`near_by_runs`]: one AVX-512 vector of f64, two AVX2 ones.
const RUN: usize = 8;
/// Elements per block of [`near_by_runs`]: 2 KB of f64, in L1 while it is checked.
const BLOCK: usize = 256;

/// Whether every element of `s` is below `limit` in magnitude (NaN is not), as one loop
/// that vectorises (no early exit).
#[inline(always)]
fn all_near<T: Float>(s: &[T], limit: T) -> bool {
    s.iter().fold(true, |near, x| near & (x.abs() < limit))
}

/// `dst[i] = full(src[i])`, where `full` is a branch-free kernel made of a cheap form below
/// `limit` in magnitude and a costly one beyond (which its every lane pays for) and `near`
/// the cheap form alone, giving `full`'s values below the limit bit for bit: by blocks of
/// 256 elements, `near` over the block, then `full` over each run of eight elements with an
/// argument at the limit or beyond (so an element's value never depends on its
/// neighbours'). Each pass is a plain loop, which the compiler vectorises with the kernel's
/// selects; a run's choice inside the element loop made it unroll the run and keep the
/// selects as branches, element by element.
#[inline(always)]
pub(crate) fn near_by_runs<T: Float>(
    dst: &mut [T],
    src: &[T],
    limit: T,
    near: impl Fn(T) -> T,
    full: impl Fn(T) -> T,
) {
    let n = dst.len().min(src.len());
    for (d, s) in dst[..n].chunks_mut(BLOCK).zip(src[..n].chunks(BLOCK)) {
        for (d, &x) in d.iter_mut().zip(s) {
            *d = near(x);
        }
        if !all_near(s, limit) {
            for (d, s) in d.chunks_mut(RUN).zip(s.chunks(RUN)) {
                if !all_near(s, limit) {
                    for (d, &x) in d.iter_mut().zip(s) {
                        *d = full(x);
                    }
                }
            }
        }
    }
}

/// [`near_by_runs`] for a two-input function, the runs chosen by the first input's
/// magnitudes. (Written out beside it: `near_by_runs` as this with its input twice and the
/// second unused made f64 `erf` 8% slower, 2^18 elements on one thread.)
#[inline(always)]
pub(crate) fn near_by_runs_zip<T: Float>(
    dst: &mut [T],
    x: &[T],
    y: &[T],
    limit: T,
    near: impl Fn(T, T) -> T,
    full: impl Fn(T, T) -> T,
) {
    let n = dst.len().min(x.len()).min(y.len());
    let blocks = dst[..n]
        .chunks_mut(BLOCK)
        .zip(x[..n].chunks(BLOCK))
        .zip(y[..n].chunks(BLOCK));
    for ((d, x), y) in blocks {
        for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
            *d = near(x, y);
        }
        if !all_near(x, limit) {
            let runs = d.chunks_mut(RUN).zip(x.chunks(RUN)).zip(y.chunks(RUN));
            for ((d, x), y) in runs {
                if !all_near(x, limit) {
                    for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
                        *d = full(x, y);
                    }
                }
            }
        }
    }
}

/// `dst[i] = f(x[i])` for a polynomial kernel (`exp`, `sin`, `tanh`, ...). A loop of fewer
/// than 64 elements runs in chunks of 16 (one AVX-512 vector, two AVX2 ones): the compiler's
/// own loop handles 64 at a time, unrolled, and leaves anything shorter to its element-by-
/// element tail, where a polynomial costs several times what it does in a vector (a fused
/// program over 10 elements pads them to 16 for this).
#[inline(always)]
fn chunked_loop<T: Float>(dst: &mut [T], x: &[T], f: impl Fn(T) -> T) {
    const LANES: usize = 16;
    let n = dst.len().min(x.len());
    let (dst, x) = (&mut dst[..n], &x[..n]);
    if n >= 4 * LANES {
        for (d, &x) in dst.iter_mut().zip(x) {
            *d = f(x)
        }
        return;
    }
    let mut d = dst.chunks_exact_mut(LANES);
    let mut s = x.chunks_exact(LANES);
    for (d, s) in (&mut d).zip(&mut s) {
        for i in 0..LANES {
            d[i] = f(s[i]);
        }
    }
    for (d, &x) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = f(x)
    }
}

/// `dst[i] = f(x[i])` for the functions also defined on integers (`Neg`, `Abs`, `Sign`,
/// `Relu`, `Clamp`, `Identity`); the caller has checked `f` is one of them.
#[inline(always)]
pub(crate) fn map_number<T: Number>(f: MapFn, dst: &mut [T], x: &[T]) {
    macro_rules! each {
        ($($v:ident),*) => {
            match f {
                $(MapFn::$v => {
                    for (d, &x) in dst.iter_mut().zip(x) {
                        *d = MapFn::$v.eval_number(x)
                    }
                })*
                MapFn::Clamp(lo, hi) => clamp_loop(dst, x, lo, hi),
                MapFn::Identity => dst.copy_from_slice(x),
                other => unreachable!("{other:?} is defined for floats only"),
            }
        };
    }
    each!(Neg, Abs, Sign, Relu)
}

/// `dst[i] = f(x[i], y[i])` for a float function (`FMA` as for [`map_float`]).
#[inline(always)]
pub(crate) fn zip_float<T: Float, const FMA: bool>(
    f: ZipFn,
    dst: &mut [T],
    x: Operand<'_, T>,
    y: Operand<'_, T>,
) {
    // f64's GELU gradient by runs
    if let (ZipFn::GeluBackward, Operand::Slice(xs), Operand::Slice(ys)) = (f, x, y) {
        if T::zip_by_runs::<FMA>(f, dst, xs, ys) {
            return;
        }
    }
    macro_rules! each {
        ($($v:ident),*) => {
            match f {
                $(ZipFn::$v => zip_loop(dst, x, y, #[inline(always)] |x, y| ZipFn::$v.eval::<T, FMA>(x, y)),)*
            }
        };
    }
    each!(
        Add,
        Sub,
        Mul,
        Div,
        Maximum,
        Minimum,
        Pow,
        Atan2,
        Fmod,
        Remainder,
        TanhBackward,
        SigmoidBackward,
        GeluBackward,
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge
    )
}

/// `dst[i] = f(x[i], y[i])` for the functions also defined on integers (the four operators,
/// `Maximum`, `Minimum`, `Fmod`, `Remainder`); the caller has checked `f` is one of them.
#[inline(always)]
pub(crate) fn zip_number<T: Number>(f: ZipFn, dst: &mut [T], x: Operand<'_, T>, y: Operand<'_, T>) {
    macro_rules! each {
        ($($v:ident),*) => {
            match f {
                $(ZipFn::$v => zip_loop(dst, x, y, |x, y| ZipFn::$v.eval_number(x, y)),)*
                other => unreachable!("{other:?} is defined for floats only"),
            }
        };
    }
    each!(Add, Sub, Mul, Div, Maximum, Minimum, Fmod, Remainder)
}

/// `dst[i] = x[i] ⋈ y[i]` as bool, for the comparisons (`Eq` ... `Ge`); the caller has
/// checked `f` is one.
#[inline(always)]
pub(crate) fn compare<T: Element>(
    f: ZipFn,
    dst: &mut [bool],
    x: Operand<'_, T>,
    y: Operand<'_, T>,
) {
    match f {
        ZipFn::Eq => zip_loop(dst, x, y, |x, y| x == y),
        ZipFn::Ne => zip_loop(dst, x, y, |x, y| x != y),
        ZipFn::Lt => zip_loop(dst, x, y, |x, y| x < y),
        ZipFn::Le => zip_loop(dst, x, y, |x, y| x <= y),
        ZipFn::Gt => zip_loop(dst, x, y, |x, y| x > y),
        ZipFn::Ge => zip_loop(dst, x, y, |x, y| x >= y),
        other => unreachable!("{other:?} is not a comparison"),
    }
}

/// The two-input functions of bool arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Logic {
    And,
    Or,
}

/// `dst[i] = x[i] ∧ y[i]` or `x[i] ∨ y[i]`.
#[inline(always)]
pub(crate) fn logic(f: Logic, dst: &mut [bool], x: Operand<'_, bool>, y: Operand<'_, bool>) {
    match f {
        Logic::And => zip_loop(dst, x, y, |x, y| x && y),
        Logic::Or => zip_loop(dst, x, y, |x, y| x || y),
    }
}

/// `dst[i] = ¬x[i]`.
pub(crate) fn map_bool(dst: &mut [bool], x: &[bool]) {
    for (d, &x) in dst.iter_mut().zip(x) {
        *d = !x
    }
}
