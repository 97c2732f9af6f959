//! Fused elementwise programs: a chain of elementwise functions over operands broadcast to
//! one shape, run as one pass over memory.
//!
//! A [`Program`] is plain data (functions, operands, which values to write out), so the same
//! description can drive this CPU evaluator and, later, a generated GPU kernel. The CPU
//! evaluator runs it tile by tile: each instruction is one vectorised loop over a tile of a
//! few hundred elements that stays in L1, so choosing the function costs once per tile, not
//! per element, and values that are not outputs never reach memory. Each instruction is
//! still a pass over its tile in L1, which at in-cache sizes costs about what the unfused op
//! would; so the commonest program of a compiled training step, the parameter update
//! `p ∓ (b·c)·d`, is recognised and run as one loop with its values in registers (see
//! [`Program::is_one_loop`]).
//!
//! The functions are the ones the unfused kernels compute: `Array::exp`, `Array::add` and the
//! rest call the same [`MapFn`] and [`ZipFn`] evaluations on the same vector paths, so a fused
//! program's outputs are bit for bit those of its ops run one at a time.

use rayon::prelude::*;
use smallvec::SmallVec;

use crate::dtype::{dispatch_float, Float, Number};
use crate::elementwise::kernels::{map_float, zip_float};
use crate::elementwise::{parallel_min, tile, Operand, Source};
use crate::error::fail;
use crate::layout::{fmt_shape, numel, same_shape, Shape};
use crate::math::{with_fma, with_simd};
use crate::{Array, DType};

/// `1/√(2π)`, the standard normal density's factor.
pub(crate) const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// One-input elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum MapFn {
    Neg,
    Abs,
    /// -1, 0 or 1 (NaN stays NaN).
    Sign,
    /// `max(x, 0)` (NaN stays NaN).
    Relu,
    Exp,
    Log,
    Log1p,
    Expm1,
    Sin,
    Cos,
    Tan,
    Sinh,
    Cosh,
    Asin,
    Acos,
    Atan,
    /// The error function.
    Erf,
    /// The inverse error function.
    Erfinv,
    /// GELU, exact: `x Φ(x)`, `Φ` from `erfc` (see [`Array::gelu`]).
    Gelu,
    /// `ln |Γ(x)|`.
    Lgamma,
    /// `Γ'(x) / Γ(x)`.
    Digamma,
    /// The `n`-th derivative of digamma.
    Polygamma(u32),
    /// Round toward zero.
    Trunc,
    Tanh,
    Sigmoid,
    Sqrt,
    Rsqrt,
    Floor,
    Ceil,
    /// Halves to even.
    Round,
    Reciprocal,
    Square,
    /// `x` itself.
    Identity,
    /// `x^n` by repeated multiplication.
    Powi(i32),
    /// `x^e`.
    Powf(f64),
    /// Into `[min, max]`, either bound optional (NaN stays NaN).
    Clamp(Option<f64>, Option<f64>),
}

impl MapFn {
    /// The function `Array::pow_scalar` computes for `exponent`: a square, the identity or
    /// repeated multiplication for small integers, `powf` otherwise.
    pub fn pow_scalar(exponent: f64) -> MapFn {
        if exponent == 2.0 {
            MapFn::Square
        } else if exponent == 1.0 {
            MapFn::Identity
        } else if exponent.fract() == 0.0 && exponent.abs() <= 64.0 {
            MapFn::Powi(exponent as i32)
        } else {
            MapFn::Powf(exponent)
        }
    }

    /// Whether the function is also defined for integers (`Neg`, `Abs`, `Sign`, `Relu`,
    /// `Clamp`).
    pub fn is_number(self) -> bool {
        matches!(
            self,
            MapFn::Neg | MapFn::Abs | MapFn::Sign | MapFn::Relu | MapFn::Clamp(..)
        )
    }

    /// Whether the function costs like `exp` rather than like an add (it decides from how
    /// many elements work is split across threads).
    pub fn is_transcendental(self) -> bool {
        !matches!(
            self,
            MapFn::Neg
                | MapFn::Abs
                | MapFn::Sign
                | MapFn::Relu
                | MapFn::Sqrt
                | MapFn::Rsqrt
                | MapFn::Floor
                | MapFn::Ceil
                | MapFn::Round
                | MapFn::Trunc
                | MapFn::Reciprocal
                | MapFn::Square
                | MapFn::Identity
                | MapFn::Clamp(..)
        )
    }

    /// The value at `x` (`FMA`: whether the polynomial kernels fuse their multiply-adds, as
    /// [`with_fma`] chooses).
    #[inline(always)]
    pub(crate) fn eval<T: Float, const FMA: bool>(self, x: T) -> T {
        match self {
            MapFn::Neg | MapFn::Abs | MapFn::Sign | MapFn::Relu | MapFn::Clamp(..) => {
                self.eval_number(x)
            }
            MapFn::Exp => x.exp_kernel::<FMA>(),
            MapFn::Log => x.log_kernel::<FMA>(),
            MapFn::Log1p => x.log1p_kernel::<FMA>(),
            MapFn::Expm1 => x.expm1_kernel::<FMA>(),
            MapFn::Sin => x.sin_kernel::<FMA>(),
            MapFn::Cos => x.cos_kernel::<FMA>(),
            MapFn::Tan => x.tan_kernel::<FMA>(),
            MapFn::Sinh => x.sinh_kernel::<FMA>(),
            MapFn::Cosh => x.cosh_kernel::<FMA>(),
            MapFn::Asin => x.asin_kernel::<FMA>(),
            MapFn::Acos => x.acos_kernel::<FMA>(),
            MapFn::Atan => x.atan_kernel::<FMA>(),
            MapFn::Erf => x.erf_kernel::<FMA>(),
            MapFn::Erfinv => x.erfinv_kernel::<FMA>(),
            MapFn::Gelu => x.gelu_kernel::<FMA>(),
            MapFn::Lgamma => x.lgamma_kernel::<FMA>(),
            MapFn::Digamma => x.digamma_kernel::<FMA>(),
            MapFn::Polygamma(n) => T::from_f64(crate::special::polygamma(n, x.to_f64())),
            MapFn::Trunc => x.trunc(),
            MapFn::Tanh => x.tanh_kernel::<FMA>(),
            MapFn::Sigmoid => x.sigmoid_kernel::<FMA>(),
            MapFn::Sqrt => x.sqrt(),
            MapFn::Rsqrt => x.sqrt().recip(),
            MapFn::Floor => x.floor(),
            MapFn::Ceil => x.ceil(),
            MapFn::Round => {
                let r = x.round();
                let half = T::from(0.5).expect("0.5 is a float");
                let two = T::from(2.0).expect("2 is a float");
                if (x - x.trunc()).abs() == half && (r / two).fract() != T::zero() {
                    // toward even; -0.5 rounds to -0, as in IEEE's roundTiesToEven
                    (r - x.signum()).copysign(x)
                } else {
                    r
                }
            }
            MapFn::Reciprocal => x.recip(),
            MapFn::Square => x * x,
            MapFn::Identity => x,
            MapFn::Powi(n) => x.powi(n),
            MapFn::Powf(e) => crate::math::pow_scalar::<T, FMA>(x, e),
        }
    }

    /// The functions also defined for integers (`Neg`, `Abs`, `Sign`, `Relu`, `Clamp`).
    #[inline(always)]
    pub(crate) fn eval_number<T: Number>(self, x: T) -> T {
        match self {
            MapFn::Neg => x.wrapping_neg(),
            MapFn::Abs if x < T::zero() => x.wrapping_neg(),
            MapFn::Abs => x,
            MapFn::Sign if x > T::zero() => T::one(),
            MapFn::Sign if x < T::zero() => -T::one(),
            MapFn::Sign => x,
            MapFn::Relu if x < T::zero() => T::zero(),
            MapFn::Relu => x,
            MapFn::Clamp(lo, hi) => clamp_value(x, lo.map(T::from_f64), hi.map(T::from_f64)),
            other => unreachable!("{other:?} is defined for floats only"),
        }
    }
}

/// `x` clamped into `[lo, hi]` (either bound optional; NaN stays NaN).
#[inline(always)]
pub(crate) fn clamp_value<T: Number>(x: T, lo: Option<T>, hi: Option<T>) -> T {
    let x = match lo {
        Some(l) if x < l => l,
        _ => x,
    };
    match hi {
        Some(h) if x > h => h,
        _ => x,
    }
}

/// Two-input elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ZipFn {
    Add,
    Sub,
    Mul,
    Div,
    /// NaN if either is NaN.
    Maximum,
    /// NaN if either is NaN.
    Minimum,
    Pow,
    Atan2,
    /// `x - trunc(x / y) y`, the sign of `x` (C's `fmod`, Rust's `%`).
    Fmod,
    /// `x - floor(x / y) y`, the sign of `y` (Python's `%`).
    Remainder,
    /// `tanh`'s gradient from its output `y` and the output gradient `g`: `g (1 - y²)`.
    TanhBackward,
    /// `sigmoid`'s gradient from its output `y` and the output gradient `g`: `g y (1 - y)`.
    SigmoidBackward,
    /// GELU's gradient from its input `x` and the output gradient `g`: `g (Φ(x) + x φ(x))`,
    /// `Φ` and `φ` the standard normal's distribution and density.
    GeluBackward,
    /// `x == y` as 1 or 0 (a mask in the program's dtype; see [`Instr::Select`]).
    Eq,
    /// `x != y` as 1 or 0.
    Ne,
    /// `x < y` as 1 or 0.
    Lt,
    /// `x <= y` as 1 or 0.
    Le,
    /// `x > y` as 1 or 0.
    Gt,
    /// `x >= y` as 1 or 0.
    Ge,
}

impl ZipFn {
    /// Whether the function costs like `exp` rather than like an add.
    pub fn is_transcendental(self) -> bool {
        matches!(self, ZipFn::Pow | ZipFn::Atan2 | ZipFn::GeluBackward)
    }

    /// Whether the function is also defined for integers (the four operators, `Maximum`,
    /// `Minimum`, `Fmod`, `Remainder`).
    pub fn is_number(self) -> bool {
        matches!(
            self,
            ZipFn::Add
                | ZipFn::Sub
                | ZipFn::Mul
                | ZipFn::Div
                | ZipFn::Maximum
                | ZipFn::Minimum
                | ZipFn::Fmod
                | ZipFn::Remainder
        )
    }

    /// The value at `(x, y)` (`FMA`: whether the polynomial kernels fuse their multiply-adds,
    /// as [`with_fma`] chooses).
    #[inline(always)]
    pub(crate) fn eval<T: Float, const FMA: bool>(self, x: T, y: T) -> T {
        match self {
            ZipFn::Pow => x.pow_kernel::<FMA>(y),
            ZipFn::Atan2 => x.atan2_kernel::<FMA>(y),
            ZipFn::TanhBackward => y * (T::one() - x * x),
            ZipFn::SigmoidBackward => y * x * (T::one() - x),
            ZipFn::GeluBackward => x.gelu_backward_kernel::<FMA>(y),
            ZipFn::Eq => mask(x == y),
            ZipFn::Ne => mask(x != y),
            ZipFn::Lt => mask(x < y),
            ZipFn::Le => mask(x <= y),
            ZipFn::Gt => mask(x > y),
            ZipFn::Ge => mask(x >= y),
            _ => self.eval_number(x, y),
        }
    }

    /// The functions also defined for integers (the four operators, `Maximum`, `Minimum`).
    #[inline(always)]
    pub(crate) fn eval_number<T: Number>(self, x: T, y: T) -> T {
        match self {
            ZipFn::Add => x.wrapping_add(y),
            ZipFn::Sub => x.wrapping_sub(y),
            ZipFn::Mul => x.wrapping_mul(y),
            ZipFn::Div => x.wrapping_div(y),
            ZipFn::Fmod => x.wrapping_rem(y),
            ZipFn::Remainder => {
                let r = x.wrapping_rem(y);
                if r != T::zero() && ((r < T::zero()) != (y < T::zero())) {
                    r + y
                } else {
                    r
                }
            }
            ZipFn::Maximum | ZipFn::Minimum if x.is_nan_value() => x,
            ZipFn::Maximum | ZipFn::Minimum if y.is_nan_value() => y,
            ZipFn::Maximum if y > x => y,
            ZipFn::Minimum if y < x => y,
            ZipFn::Maximum | ZipFn::Minimum => x,
            other => unreachable!("{other:?} is defined for floats only"),
        }
    }
}

/// A comparison's result as 1 or 0.
#[inline(always)]
fn mask<T: Float>(holds: bool) -> T {
    if holds {
        T::one()
    } else {
        T::zero()
    }
}

/// One value of a [`Program`]; values are numbered by their instruction's position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Instr {
    /// The `n`-th input array, broadcast to the program's shape.
    Input(usize),
    /// A number in the program's dtype (converted as `Array::full` converts it).
    Const(f64),
    /// A function of an earlier value.
    Map(MapFn, usize),
    /// A function of two earlier values.
    Zip(ZipFn, usize, usize),
    /// `b` where the mask `c` (a comparison's 1 or 0) is nonzero, else `e`: `Select(c, b, e)`.
    Select(usize, usize, usize),
}

/// A reduction at the end of a [`Program`]: the sum or mean of one of its values, written to
/// an output of its own. The value, in the program's shape, is read as `[rows, kept]` (row
/// major): `kept` 1 reduces every element (the sum of a loss), a larger `kept` reduces the
/// leading dims and keeps the trailing ones (a bias gradient's column sum, `sum_dim(0)` of a
/// `[batch, features]` value).
///
/// The additions are made in the order [`Array::sum_dim`] and [`Array::mean_dim`] make them
/// on a contiguous input below the size where they split across threads: 16 partial sums per
/// kept element when fewer than 16 are kept, whole rows added in order otherwise. So the
/// result is theirs bit for bit. A program with a reduction runs on the calling thread.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduction {
    /// The value reduced.
    pub value: usize,
    /// The mean rather than the sum.
    pub mean: bool,
    /// The result's shape; it holds `kept` elements, which must divide the program's.
    pub shape: Shape,
}

impl Reduction {
    /// Elements kept.
    pub(crate) fn kept(&self) -> usize {
        numel(&self.shape)
    }
}

/// Where a value lives while a tile is evaluated.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Home {
    /// An input read in place, or gathered into register `r` when it is not contiguous.
    Input { n: usize, reg: usize },
    /// A register, filled once per run (constants) or per tile.
    Reg(usize),
    /// The `j`-th output, written in place (later instructions read it back from there).
    Out(usize),
}

/// One instruction as the tile loop runs it: its operands and result as places, the
/// registers numbered first and then the outputs (output `j` is place `registers + j`); an
/// input's place is its register, pointed at the input's elements when they can be read in
/// place. Resolved once when the program is built, so a tile reads each operand's place with
/// one index instead of matching on where the value lives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Run {
    /// `dst = f(x)`.
    Map(MapFn, usize, usize),
    /// `dst = f(x, y)`.
    Zip(ZipFn, usize, usize, usize),
    /// `dst = if c != 0 { x } else { y }`: `Select(dst, c, x, y)`.
    Select(usize, usize, usize, usize),
    /// An output that is not computed in place (an input, a constant, a value written out
    /// twice), copied from its value's place: `Copy(from, to)`.
    Copy(usize, usize),
}

/// Where a value lies over the current tile: `m` elements from `ptr` (a register, an
/// output's elements or an input's, read in place), and `one` when they are one value
/// repeated (a constant, a one-element input, an input constant along its run), which the
/// binary functions take as one value.
#[derive(Clone, Copy)]
struct Place<T> {
    ptr: *mut T,
    one: Option<T>,
}

/// A fused elementwise program: instructions in order (each defines one value, numbered by
/// its position; operands refer to earlier values) and the values written out.
///
/// ```
/// use ferrograd_array::{Array, DType, Instr, MapFn, Program, ZipFn};
/// // tanh(x + b) with b broadcast over the rows, in one pass
/// let program = Program::new(
///     vec![
///         Instr::Input(0),
///         Instr::Input(1),
///         Instr::Zip(ZipFn::Add, 0, 1),
///         Instr::Map(MapFn::Tanh, 2),
///     ],
///     vec![3],
/// );
/// let x = Array::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], &[2, 2]);
/// let b = Array::from_vec(vec![0.5f32, 1.0], &[2]);
/// let mut out = [None];
/// program.run(&[&x, &b], &[2, 2], DType::F32, &mut out);
/// assert!(out[0].as_ref().unwrap().bit_eq(&x.add(&b).tanh()));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    instrs: Vec<Instr>,
    outputs: Vec<usize>,
    /// What a tile runs, in order, over places (see [`Run`]).
    runs: Vec<Run>,
    /// The same in vector form: one step per run, or one per `cos`-`sin` pair of runs
    /// ([`VectorStep::all`]).
    vector_steps: Vec<VectorStep>,
    /// `(input, place)` per input instruction: where its elements are found for each tile.
    reads: Vec<(usize, usize)>,
    /// `(place, number)` per constant: a register filled once per run.
    consts: Vec<(usize, f64)>,
    reductions: Vec<Reduction>,
    /// The place of each reduction's value.
    folds: Vec<usize>,
    /// Partial sums the reductions keep while they run (16 per kept element of those
    /// keeping fewer than 16).
    partials: usize,
    registers: usize,
    inputs: usize,
    transcendental: bool,
    /// The program as a gradient step's update, run as one loop (see [`Update`]).
    update: Option<Update>,
    #[cfg(feature = "cuda")]
    gpu: GpuKernel,
}

/// A program's generated GPU kernel, made on first use (not part of what the program is:
/// equal programs compare equal whatever their caches hold).
#[cfg(feature = "cuda")]
#[derive(Clone, Debug, Default)]
struct GpuKernel(std::sync::OnceLock<(DType, Option<(String, String)>)>);

#[cfg(feature = "cuda")]
impl PartialEq for GpuKernel {
    fn eq(&self, _: &GpuKernel) -> bool {
        true
    }
}

/// A program the evaluator runs as one loop with every value in vector registers, instead of
/// one loop per instruction through L1: the update of a gradient step, `a ∓ (b·c)·d` or `a ∓
/// b·d` (`p - g·lr`, or `p - (x·δ)·lr` once a batch-1 weight gradient became a multiply),
/// each operand an input or a constant. Recognised when the program is built; the same
/// roundings in the same order as the instructions, so the same result bit for bit (see
/// [`Program::is_one_loop`] for the speed).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Update {
    /// `a - …` rather than `a + …`.
    sub: bool,
    /// The input `a` is, when it is one (not a constant): the input an update in place
    /// writes over (see [`Program::run_in_place`]).
    input: Option<usize>,
    a: usize,
    b: usize,
    c: Option<usize>,
    d: usize,
}

impl Update {
    /// The update `instrs` computes into its one output, if it is one.
    fn recognise(instrs: &[Instr], outputs: &[usize]) -> Option<Update> {
        let &[out] = outputs else { return None };
        let leaf = |v: usize| matches!(instrs[v], Instr::Input(_) | Instr::Const(_));
        let mut uses = vec![0usize; instrs.len()];
        for instr in instrs {
            match *instr {
                Instr::Zip(_, x, y) => {
                    uses[x] += 1;
                    uses[y] += 1;
                }
                Instr::Map(..) | Instr::Select(..) => return None,
                Instr::Input(_) | Instr::Const(_) => {}
            }
        }
        let once = |v: usize| !leaf(v) && uses[v] == 1;
        let (sub, a, t) = match instrs[out] {
            Instr::Zip(ZipFn::Sub, a, t) if leaf(a) && once(t) => (true, a, t),
            Instr::Zip(ZipFn::Add, a, t) | Instr::Zip(ZipFn::Add, t, a) if leaf(a) && once(t) => {
                (false, a, t)
            }
            _ => return None,
        };
        // products are commutative bit for bit: either order of each pair
        let Instr::Zip(ZipFn::Mul, x, y) = instrs[t] else {
            return None;
        };
        let (u, d) = if leaf(x) { (y, x) } else { (x, y) };
        if !leaf(d) {
            return None;
        }
        let (b, c) = if leaf(u) {
            (u, None)
        } else {
            match instrs[u] {
                Instr::Zip(ZipFn::Mul, b, c) if once(u) && leaf(b) && leaf(c) => (b, Some(c)),
                _ => return None,
            }
        };
        // nothing else computed
        let computed = instrs
            .iter()
            .filter(|i| matches!(i, Instr::Zip(..)))
            .count();
        let input = match instrs[a] {
            Instr::Input(n) => Some(n),
            _ => None,
        };
        (computed == 2 + usize::from(c.is_some())).then_some(Update {
            sub,
            input,
            a,
            b,
            c,
            d,
        })
    }
}

impl Program {
    /// A program over `instrs` writing out the values `outputs`.
    ///
    /// Panics when an operand is not an earlier value or an output is not a value.
    #[track_caller]
    pub fn new(instrs: Vec<Instr>, outputs: Vec<usize>) -> Program {
        Program::with_reductions(instrs, outputs, Vec::new())
    }

    /// A program over `instrs` writing out the values `outputs`, then the results of
    /// `reductions`, each a sum or mean of a value computed in the same pass (see
    /// [`Reduction`]).
    ///
    /// ```
    /// use ferrograd_array::{Array, DType, Instr, MapFn, Program, Reduction, Shape, ZipFn};
    /// // the sum of (x - y)² without writing the squares out
    /// let program = Program::with_reductions(
    ///     vec![
    ///         Instr::Input(0),
    ///         Instr::Input(1),
    ///         Instr::Zip(ZipFn::Sub, 0, 1),
    ///         Instr::Map(MapFn::Square, 2),
    ///     ],
    ///     vec![],
    ///     vec![Reduction { value: 3, mean: false, shape: Shape::new() }],
    /// );
    /// let x = Array::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    /// let y = Array::from_vec(vec![0.5f64, 2.5, 1.0], &[3]);
    /// let mut out = [None];
    /// program.run(&[&x, &y], &[3], DType::F64, &mut out);
    /// assert!(out[0].as_ref().unwrap().bit_eq(&x.sub(&y).square().sum()));
    /// ```
    ///
    /// Panics as [`new`](Program::new) does, and when a reduction's value is not a value.
    #[track_caller]
    pub fn with_reductions(
        instrs: Vec<Instr>,
        outputs: Vec<usize>,
        reductions: Vec<Reduction>,
    ) -> Program {
        let n = instrs.len();
        let at = std::panic::Location::caller();
        let bad = |what: String| -> ! { crate::error::fail_at("fused program", what, at) };
        let mut last_use = vec![0usize; n];
        for (k, instr) in instrs.iter().enumerate() {
            let operands: &[usize] = match instr {
                Instr::Map(_, a) => std::slice::from_ref(a),
                Instr::Zip(_, a, b) => &[*a, *b][..],
                Instr::Select(c, a, b) => &[*c, *a, *b][..],
                Instr::Input(_) | Instr::Const(_) => &[],
            };
            for &a in operands {
                if a >= k {
                    bad(format!(
                        "instruction {k} reads value {a}, which is not an earlier one"
                    ));
                }
                last_use[a] = k;
            }
        }
        for &o in &outputs {
            if o >= n {
                bad(format!("output {o} is not a value (the program has {n})"));
            }
            // written out as soon as it is computed: its register is free after its uses
            last_use[o] = last_use[o].max(o);
        }
        for r in &reductions {
            if r.value >= n {
                bad(format!(
                    "a reduction reads value {}, which is not one (the program has {n})",
                    r.value
                ));
            }
            // folded at the end of each tile: its register lives to the end
            last_use[r.value] = n;
        }
        // Inputs and constants keep their registers; computed values share registers once
        // their last use has passed (a result never shares its operands' register).
        let mut homes = Vec::with_capacity(n);
        let mut free: Vec<usize> = Vec::new();
        let mut registers = 0;
        let mut new_register = || {
            registers += 1;
            registers - 1
        };
        let mut releases: Vec<Vec<usize>> = vec![Vec::new(); n + 1];
        let mut inputs = 0;
        for (k, instr) in instrs.iter().enumerate() {
            let home = match *instr {
                Instr::Input(i) => {
                    inputs = inputs.max(i + 1);
                    Home::Input {
                        n: i,
                        reg: new_register(),
                    }
                }
                Instr::Const(_) => Home::Reg(new_register()),
                Instr::Map(..) | Instr::Zip(..) | Instr::Select(..) => {
                    match outputs.iter().position(|&o| o == k) {
                        Some(j) => Home::Out(j),
                        None => Home::Reg(free.pop().unwrap_or_else(&mut new_register)),
                    }
                }
            };
            if let Home::Reg(r) = home {
                if matches!(instr, Instr::Map(..) | Instr::Zip(..) | Instr::Select(..)) {
                    releases[last_use[k].max(k)].push(r);
                }
            }
            homes.push(home);
            // operands whose last use is this instruction free their registers after it
            free.append(&mut releases[k]);
        }
        let transcendental = instrs.iter().any(|i| match i {
            Instr::Map(f, _) => f.is_transcendental(),
            Instr::Zip(f, ..) => f.is_transcendental(),
            _ => false,
        });
        let place = |v: usize| match homes[v] {
            Home::Input { reg, .. } | Home::Reg(reg) => reg,
            Home::Out(j) => registers + j,
        };
        let (mut runs, mut reads, mut consts) = (Vec::new(), Vec::new(), Vec::new());
        for (k, instr) in instrs.iter().enumerate() {
            let dst = place(k);
            match *instr {
                Instr::Input(n) => reads.push((n, dst)),
                Instr::Const(c) => consts.push((dst, c)),
                Instr::Map(f, a) => runs.push(Run::Map(f, dst, place(a))),
                Instr::Zip(f, a, b) => runs.push(Run::Zip(f, dst, place(a), place(b))),
                Instr::Select(c, a, b) => runs.push(Run::Select(dst, place(c), place(a), place(b))),
            }
            // outputs not computed in place are copied right after their value
            for (j, &o) in outputs.iter().enumerate() {
                if o == k && homes[o] != Home::Out(j) {
                    runs.push(Run::Copy(dst, registers + j));
                }
            }
        }
        let folds = reductions.iter().map(|r| place(r.value)).collect();
        let partials = reductions.iter().map(|r| partial_sums(r.kept())).sum();
        let update = match reductions.is_empty() {
            true => Update::recognise(&instrs, &outputs),
            false => None,
        };
        let update = update.map(|u| Update {
            a: place(u.a),
            b: place(u.b),
            c: u.c.map(place),
            d: place(u.d),
            ..u
        });
        Program {
            vector_steps: VectorStep::all(&runs),
            runs,
            reads,
            consts,
            reductions,
            folds,
            partials,
            registers,
            inputs,
            transcendental,
            update,
            instrs,
            outputs,
            #[cfg(feature = "cuda")]
            gpu: GpuKernel::default(),
        }
    }

    /// The GPU kernel's name and source in `dtype` (see `cuda::source::program_source`),
    /// generated once per program.
    #[cfg(feature = "cuda")]
    pub(crate) fn gpu_kernel(&self, dtype: DType) -> Option<&(String, String)> {
        let (d, kernel) = self
            .gpu
            .0
            .get_or_init(|| (dtype, crate::cuda::source::program_source(self, dtype)));
        match *d == dtype {
            true => kernel.as_ref(),
            // (a program runs in the dtype it was first asked for; another is not cached)
            false => None,
        }
    }

    /// Whether the program runs on `device` in `dtype`: always on the host; on a GPU when
    /// its kernel can be generated (at most 12 inputs and 8 values written, reductions'
    /// included). An optimize-mode plan runs a group whose program does not as its steps.
    pub fn runs_on(&self, device: crate::Device, dtype: DType) -> bool {
        if device.is_cpu() {
            return true;
        }
        #[cfg(feature = "cuda")]
        return crate::cuda::fused::runs(self, dtype);
        #[cfg(not(feature = "cuda"))]
        {
            let _ = dtype;
            false
        }
    }

    /// The instructions.
    pub fn instrs(&self) -> &[Instr] {
        &self.instrs
    }

    /// The values written out, in order.
    pub fn outputs(&self) -> &[usize] {
        &self.outputs
    }

    /// The reductions, whose results follow the outputs.
    pub fn reductions(&self) -> &[Reduction] {
        &self.reductions
    }

    /// Whether the evaluator runs the program as one loop with its values in vector
    /// registers, as it does for a gradient step's update `a ∓ (b·c)·d` or `a ∓ b·d` (each
    /// operand an input or a constant), rather than one loop per instruction over L1 tiles.
    /// The results are the same bit for bit either way; only the speed differs (on a 2-core
    /// Xeon, `p - (x·g)·0.01` over [100, 1000] f32: 42 → 19 µs, `cargo bench -p
    /// ferrograd-array --bench array -- fused/outer`).
    ///
    /// ```
    /// use ferrograd_array::{Instr, Program, ZipFn};
    /// // p - g * 0.01
    /// let sgd = Program::new(
    ///     vec![
    ///         Instr::Input(0),
    ///         Instr::Input(1),
    ///         Instr::Const(0.01),
    ///         Instr::Zip(ZipFn::Mul, 1, 2),
    ///         Instr::Zip(ZipFn::Sub, 0, 3),
    ///     ],
    ///     vec![4],
    /// );
    /// assert!(sgd.is_one_loop());
    /// ```
    pub fn is_one_loop(&self) -> bool {
        self.update.is_some()
    }

    /// Runs the program over `shape` in `dtype` (f32 or f64): every input broadcast to
    /// `shape`, the outputs written into `outs` (one per output, then one per reduction; a
    /// slot holding an unshared contiguous array of the shape is written in place, anything
    /// else is replaced by a new array).
    #[track_caller]
    pub fn run(
        &self,
        inputs: &[&Array],
        shape: &[usize],
        dtype: DType,
        outs: &mut [Option<Array>],
    ) {
        self.check_arity(inputs.len(), outs.len());
        for a in inputs {
            check_input(a, shape, dtype);
        }
        self.prepare_outputs(shape, dtype, outs, &[]);
        #[cfg(feature = "cuda")]
        if inputs.iter().any(|a| !a.device().is_cpu()) {
            return crate::cuda::fused::run(self, inputs, shape, dtype, outs);
        }
        let op = "fused program";
        let inputs = inputs.iter().map(|&a| Some(a));
        with_fma!(FMA => dispatch_float!(dtype, op, T => self.run_typed::<T, FMA>(inputs, &[], shape, outs)))
    }

    /// Runs the program as [`run`](Program::run) does, with outputs written over inputs: each
    /// pair `(i, j)` of `over` writes output `j` over input `i`, which the caller passes as
    /// `outs[j]` (moved in: the only handle on it) with `inputs[i]` `None`. Every tile's
    /// elements of such an input are copied into its register before any step runs, so the
    /// result is [`run`](Program::run)'s bit for bit, whatever reads the input after an
    /// output is written: a momentum or Adam step's new weights and moments written over the
    /// old ones, which a compiled step given them by
    /// [`call_donating`](../ferrograd/struct.Compiled.html#method.call_donating) no longer
    /// needs. Returns `false`, having changed nothing, when an `outs[j]` of a pair is not the
    /// only handle on a contiguous host buffer of `shape` and `dtype`; the caller then runs
    /// [`run`](Program::run) with buffers of its own.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType, Instr, Program, ZipFn};
    /// // momentum SGD: v' = 0.9·v + g, p' = p - 0.1·v'
    /// let program = Program::new(
    ///     vec![
    ///         Instr::Input(0), // p
    ///         Instr::Input(1), // v
    ///         Instr::Input(2), // g
    ///         Instr::Const(0.9),
    ///         Instr::Const(0.1),
    ///         Instr::Zip(ZipFn::Mul, 3, 1),
    ///         Instr::Zip(ZipFn::Add, 5, 2),
    ///         Instr::Zip(ZipFn::Mul, 4, 6),
    ///         Instr::Zip(ZipFn::Sub, 0, 7),
    ///     ],
    ///     vec![8, 6],
    /// );
    /// let g = Array::from_vec(vec![1.0f32; 1000], &[1000]);
    /// let p = Array::from_vec(vec![2.0f32; 1000], &[1000]);
    /// let v = Array::from_vec(vec![0.5f32; 1000], &[1000]);
    /// let (p_at, v_at) = (p.storage_id(), v.storage_id());
    /// let mut outs = [Some(p), Some(v)];
    /// assert!(program.run_over(&[None, None, Some(&g)], &[(0, 0), (1, 1)], &[1000], DType::F32, &mut outs));
    /// let [Some(p), Some(v)] = outs else { unreachable!() };
    /// assert_eq!((p.storage_id(), v.storage_id()), (p_at, v_at));
    /// assert_eq!(v.to_vec::<f32>(), vec![0.9f32 * 0.5 + 1.0; 1000]);
    /// assert_eq!(p.to_vec::<f32>(), vec![2.0f32 - 0.1 * (0.9 * 0.5 + 1.0); 1000]);
    /// ```
    #[track_caller]
    pub fn run_over(
        &self,
        inputs: &[Option<&Array>],
        over: &[(usize, usize)],
        shape: &[usize],
        dtype: DType,
        outs: &mut [Option<Array>],
    ) -> bool {
        let op = "fused program";
        self.check_arity(inputs.len(), outs.len());
        let paired = |i: usize| over.iter().any(|&(k, _)| k == i);
        let valid = (over.iter().enumerate()).all(|(x, &(i, j))| {
            i < inputs.len()
                && j < self.outputs.len()
                && over[..x].iter().all(|&(k, l)| k != i && l != j)
        }) && (inputs.iter().enumerate()).all(|(i, a)| a.is_none() == paired(i));
        if !valid {
            fail(
                op,
                format_args!(
                    "writing over inputs takes distinct (input, output) pairs, each input \
                     `None` exactly when paired, got {over:?} over {} inputs",
                    inputs.len()
                ),
            )
        }
        let fits = (over.iter())
            .all(|&(_, j)| (outs[j].as_ref()).is_some_and(|o| writable(o, shape, dtype)));
        if !fits {
            return false;
        }
        for a in inputs.iter().flatten() {
            check_input(a, shape, dtype);
        }
        self.prepare_outputs(shape, dtype, outs, &[]);
        let inputs = inputs.iter().copied();
        with_fma!(FMA => dispatch_float!(dtype, op, T => self.run_typed::<T, FMA>(inputs, over, shape, outs)));
        true
    }

    /// Runs the program as [`run`](Program::run) does, with each output `j` of a pair `(j,
    /// window)` of `windows` written into that [`Window`] of `target` instead of an array of
    /// its own (its slot in `outs` is left as it is): a recurrent network's gate gradients
    /// written straight into their columns of the rows of the stack that its weight
    /// gradient reads, with no copy after. `target` is first made the only handle on a
    /// contiguous buffer (copied when it is a view or shared, as every `*_into` output is),
    /// so other arrays never see the writes. The results are [`run`](Program::run)'s, bit
    /// for bit. Host arrays only.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType, Instr, MapFn, Program, Window};
    /// // tanh(x) and exp(x), written side by side into the rows of a [2, 4] array
    /// let program = Program::new(
    ///     vec![Instr::Input(0), Instr::Map(MapFn::Tanh, 0), Instr::Map(MapFn::Exp, 0)],
    ///     vec![1, 2],
    /// );
    /// let x = Array::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], &[2, 2]);
    /// let mut rows = Array::zeros(&[2, 4], DType::F32);
    /// let windows = [
    ///     (0, Window { start: 0, cols: 2, stride: 4 }),
    ///     (1, Window { start: 2, cols: 2, stride: 4 }),
    /// ];
    /// program.run_into(&[&x], &[2, 2], DType::F32, &mut [None, None], &windows, &mut rows);
    /// assert!(rows.bit_eq(&Array::cat(&[x.tanh(), x.exp()], 1)));
    /// ```
    ///
    /// Panics when a window does not fit in `target`, two share an element, an output is
    /// named twice, or the program is an update run as one loop
    /// ([`is_one_loop`](Program::is_one_loop)), besides [`run`](Program::run)'s panics.
    #[track_caller]
    pub fn run_into(
        &self,
        inputs: &[&Array],
        shape: &[usize],
        dtype: DType,
        outs: &mut [Option<Array>],
        windows: &[(usize, Window)],
        target: &mut Array,
    ) {
        let op = "fused program";
        self.check_arity(inputs.len(), outs.len());
        for a in inputs {
            check_input(a, shape, dtype);
        }
        self.check_windows(numel(shape), windows, target, dtype);
        if !target.device().is_cpu() || inputs.iter().any(|a| !a.device().is_cpu()) {
            fail(op, "writes into windows of host arrays only")
        }
        self.prepare_outputs(shape, dtype, outs, windows);
        target.make_unique();
        with_fma!(FMA => dispatch_float!(dtype, op, T => {
            let sources: SmallVec<[Source<'_, T>; 8]> =
                inputs.iter().map(|a| source(a, shape, numel(shape), op)).collect();
            let base = target.unique_slice_mut::<T>().as_mut_ptr();
            self.run_dests::<T, FMA>(&sources, shape, outs, windows, base, &[])
        }))
    }

    /// The program over `sources` into `outs`, or into `windows` of the target whose first
    /// element is `base` ([`run_into`](Program::run_into)), the outputs of `over` read as
    /// inputs too.
    fn run_dests<T: Float, const FMA: bool>(
        &self,
        sources: &[Source<'_, T>],
        shape: &[usize],
        outs: &mut [Option<Array>],
        windows: &[(usize, Window)],
        base: *mut T,
        over: &[(usize, usize)],
    ) {
        let op = "fused program";
        let (outs, reduced) = outs.split_at_mut(self.outputs.len());
        // (sized at once: a program of many outputs grows it once, not once per doubling)
        let mut dests: Dests<'_, T> = SmallVec::with_capacity(outs.len());
        for (j, o) in outs.iter_mut().enumerate() {
            dests.push(match windows.iter().find(|w| w.0 == j) {
                // SAFETY: `check_windows` found each window inside the target, `base` its
                // first element, the windows sharing no element; the target is unique and
                // no output's array of its own shares its buffer.
                Some(&(_, w)) => unsafe { Dest::window(base, w) },
                None => {
                    Dest::contiguous(o.as_mut().expect("filled above").out_slice::<T>(shape, op))
                }
            });
        }
        let sums: SmallVec<[&mut [T]; 2]> = (reduced.iter_mut().zip(&self.reductions))
            .map(|(o, r)| {
                o.as_mut()
                    .expect("filled above")
                    .out_slice::<T>(&r.shape, op)
            })
            .collect();
        self.run_split::<T, FMA>(sources, dests, sums, numel(shape), false, over);
    }

    /// Panics unless each window of `windows` holds an output of `n` elements inside
    /// `target` (of `dtype`), no two share an element, and no output is named twice.
    #[track_caller]
    fn check_windows(&self, n: usize, windows: &[(usize, Window)], target: &Array, dtype: DType) {
        let at = std::panic::Location::caller();
        let bad = |what: String| -> ! { crate::error::fail_at("fused program", what, at) };
        if self.update.is_some() && !windows.is_empty() {
            bad("an update run as one loop writes no window".into())
        }
        if target.dtype() != dtype {
            bad(format!(
                "the target is {}, the program {dtype}",
                target.dtype()
            ))
        }
        // each window's rows and columns within a row of its stride
        let span = |w: &Window| {
            let rows = n / w.cols.max(1);
            (
                w.start / w.stride.max(1),
                rows,
                w.start % w.stride.max(1),
                w.cols,
            )
        };
        for (x, &(j, w)) in windows.iter().enumerate() {
            if j >= self.outputs.len() || windows[..x].iter().any(|v| v.0 == j) {
                bad(format!(
                    "window {x} names output {j}: not one, or named twice"
                ))
            }
            if !w.holds(n, target.numel()) {
                bad(format!(
                    "{w:?} does not hold {n} elements in rows inside a target of {}",
                    target.numel()
                ))
            }
            for &(_, v) in &windows[..x] {
                let ((r0, rn, c0, cn), (s0, sn, d0, dn)) = (span(&w), span(&v));
                let apart = |a: usize, m: usize, b: usize, k: usize| a + m <= b || b + k <= a;
                // (columns apart only for windows within their rows)
                let within = c0 + cn <= w.stride && d0 + dn <= w.stride;
                let disjoint = v.stride == w.stride
                    && (apart(r0, rn, s0, sn) || within && apart(c0, cn, d0, dn));
                if !disjoint && n > 0 {
                    bad(format!("{w:?} and {v:?} may share elements"))
                }
            }
        }
    }

    /// Panics unless `inputs` and `outs` counts suit the program.
    #[track_caller]
    fn check_arity(&self, inputs: usize, outs: usize) {
        let wanted = self.outputs.len() + self.reductions.len();
        if inputs < self.inputs || outs != wanted {
            fail(
                "fused program",
                format_args!(
                    "it takes {} inputs and {wanted} outputs, got {inputs} and {outs}",
                    self.inputs,
                ),
            )
        }
    }

    /// Checks that the reductions divide `shape`, and gives each output slot that does not
    /// hold an array of its shape and `dtype` a new one (not those written into `windows`).
    #[track_caller]
    fn prepare_outputs(
        &self,
        shape: &[usize],
        dtype: DType,
        outs: &mut [Option<Array>],
        windows: &[(usize, Window)],
    ) {
        let op = "fused program";
        for r in &self.reductions {
            let kept = r.kept();
            if kept == 0 || !numel(shape).is_multiple_of(kept) {
                fail(
                    op,
                    format_args!(
                        "a reduction to {} does not divide the program's shape {}",
                        fmt_shape(&r.shape),
                        fmt_shape(shape)
                    ),
                )
            }
        }
        let shapes = (self.outputs.iter().map(|_| shape))
            .chain(self.reductions.iter().map(|r| &r.shape[..]));
        for (j, (out, shape)) in outs.iter_mut().zip(shapes).enumerate() {
            if windows.iter().any(|w| w.0 == j) {
                continue;
            }
            let fits = out
                .as_ref()
                .is_some_and(|o| same_shape(o.shape(), shape) && o.dtype() == dtype);
            if !fits {
                *out = Some(Array::empty(shape, dtype));
            }
        }
    }

    /// The input an update program (see [`is_one_loop`](Program::is_one_loop)) updates, when
    /// it updates an input (`p` in `p - g·lr`): the one [`run_in_place`](Program::run_in_place)
    /// can write over.
    pub fn update_input(&self) -> Option<usize> {
        self.update.and_then(|u| u.input)
    }

    /// Runs an update program with the input it updates ([`update_input`](Program::update_input))
    /// given as `target`, and writes the result over it: a gradient step's new weights in the
    /// old ones' buffer, which the one loop reads element by element just before writing each.
    /// `inputs` are the program's inputs with that one `None`. Returns `false`, having changed
    /// nothing, when the program updates no input, when `target` is not the only handle on a
    /// contiguous host buffer of `shape` and `dtype`, or when an operand's layout could leave
    /// a tile to the instruction-by-instruction path; the caller then runs
    /// [`run`](Program::run) with a buffer of its own. The result is [`run`](Program::run)'s,
    /// bit for bit.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType, Instr, Program, ZipFn};
    /// // p - g·0.01, written over p
    /// let program = Program::new(
    ///     vec![
    ///         Instr::Input(0),
    ///         Instr::Input(1),
    ///         Instr::Const(0.01),
    ///         Instr::Zip(ZipFn::Mul, 1, 2),
    ///         Instr::Zip(ZipFn::Sub, 0, 3),
    ///     ],
    ///     vec![4],
    /// );
    /// assert_eq!(program.update_input(), Some(0));
    /// let g = Array::from_vec(vec![1.0f32; 1000], &[1000]);
    /// let mut p = Array::from_vec(vec![2.0f32; 1000], &[1000]);
    /// assert!(program.run_in_place(&[None, Some(&g)], &mut p, &[1000], DType::F32));
    /// assert_eq!(p.to_vec::<f32>(), vec![2.0f32 - 0.01; 1000]);
    /// ```
    #[track_caller]
    pub fn run_in_place(
        &self,
        inputs: &[Option<&Array>],
        target: &mut Array,
        shape: &[usize],
        dtype: DType,
    ) -> bool {
        let op = "fused program";
        let Some(k) = self.update_input() else {
            return false;
        };
        if !writable(target, shape, dtype) {
            return false;
        }
        if inputs.len() < self.inputs
            || inputs
                .iter()
                .enumerate()
                .any(|(i, a)| a.is_none() != (i == k))
        {
            fail(
                op,
                format_args!(
                    "an update in place takes {} inputs, all but input {k} (the target) given",
                    self.inputs
                ),
            )
        }
        for a in inputs.iter().flatten() {
            check_input(a, shape, dtype);
        }
        with_fma!(FMA => dispatch_float!(dtype, op, T => self.run_in_place_typed::<T, FMA>(k, inputs, target, shape)))
    }

    fn run_in_place_typed<T: Float, const FMA: bool>(
        &self,
        k: usize,
        inputs: &[Option<&Array>],
        target: &mut Array,
        shape: &[usize],
    ) -> bool {
        let op = "fused program";
        let n = numel(shape);
        let u = self.update.expect("an update");
        // (a program of more inputs spills once, not once per doubling)
        let mut sources: SmallVec<[Source<'_, T>; 8]> = SmallVec::with_capacity(inputs.len());
        for a in inputs {
            sources.push(match a {
                Some(a) => source(a, shape, n, op),
                // (read from the target: the tiles point this input's place at it)
                None => Source::Splat(T::zero()),
            });
        }
        // every tile must run as the one loop (a factor read as elements in each), and the
        // target must be read as `a` alone
        let elements = |p: usize| {
            self.input_at(p)
                .is_some_and(|i| sources[i].always_elements())
        };
        let one_loop = match u.c {
            Some(c) => elements(u.b) || elements(c),
            None => elements(u.b) || elements(u.d),
        };
        let read_once = (self.reads.iter()).all(|&(i, p)| i != k || p == u.a)
            && ![Some(u.b), u.c, Some(u.d)].contains(&Some(u.a));
        if !one_loop || !read_once {
            return false;
        }
        let out = Dest::contiguous(target.out_slice::<T>(shape, op));
        self.run_split::<T, FMA>(
            &sources,
            smallvec::smallvec![out],
            SmallVec::new(),
            n,
            true,
            &[],
        );
        true
    }

    /// [`run`](Program::run) and [`run_over`](Program::run_over) on one element type: each
    /// input an array, or `None` for one written over (see `run_over`'s `over`).
    fn run_typed<'a, T: Float, const FMA: bool>(
        &self,
        inputs: impl IntoIterator<Item = Option<&'a Array>>,
        over: &[(usize, usize)],
        shape: &[usize],
        outs: &mut [Option<Array>],
    ) {
        let op = "fused program";
        let n = numel(shape);
        // (pushed, not collected: eight inline sources are over a kilobyte, which a collect
        // builds and then copies)
        let inputs = inputs.into_iter();
        let mut sources: SmallVec<[Source<'_, T>; 8]> = SmallVec::new();
        // (a program of more inputs spills once, not once per doubling)
        sources.reserve(inputs.size_hint().0);
        for a in inputs {
            sources.push(match a {
                Some(a) => source(a, shape, n, op),
                // (an input written over is read from its output: the tiles copy it)
                None => Source::Slice(&[]),
            });
        }
        self.run_dests::<T, FMA>(&sources, shape, outs, &[], std::ptr::null_mut(), over);
    }

    /// The elements of every output (`slices`) and the reductions (`sums`) of `sources`, in
    /// ranges on several threads when it pays. `alias`: the update's value `a` is read from
    /// its output (see [`Program::run_in_place`]); `over`: the (input, output) pairs whose
    /// output is written over its input (see [`Program::run_over`]).
    fn run_split<T: Float, const FMA: bool>(
        &self,
        sources: &[Source<'_, T>],
        mut slices: Dests<'_, T>,
        mut sums: SmallVec<[&mut [T]; 2]>,
        n: usize,
        alias: bool,
        over: &[(usize, usize)],
    ) {
        let min = parallel_min(self.transcendental);
        // ranges split at whole tiles, or at whole rows for an update run a row at a time,
        // and at whole rows of the windows written (see `Dest`)
        let rows = (slices.iter()).fold(1, |a, d| d.window.map_or(a, |(c, _)| lcm(a, c)));
        let row = self.update_row(sources);
        let unit = row.unwrap_or(tile::<T>()).next_multiple_of(rows);
        if sums.is_empty() && crate::par::split(n, min) {
            // one range of whole tiles per thread, each with its own registers
            let parts = rayon::current_num_threads();
            let per = n.div_ceil(parts).div_ceil(unit) * unit;
            let mut ranges: Vec<(usize, usize, Dests<'_, T>)> = Vec::new();
            let mut start = 0;
            while start < n {
                let len = per.min(n - start);
                let mut mine = SmallVec::new();
                for s in slices.iter_mut() {
                    let (head, tail) = s.take().split_at(len);
                    mine.push(head);
                    *s = tail;
                }
                ranges.push((start, len, mine));
                start += len;
            }
            ranges.into_par_iter().for_each(|(start, len, mut outs)| {
                let range = start..start + len;
                self.run_range::<T, FMA>(sources, range, &mut outs, &mut [], alias, over);
            });
        } else if sums.is_empty() && crate::par::split(n, crate::elementwise::PAIR_MIN) {
            // Two halves, one on the partner core when it is awake, split at a whole vector
            // (or row, for an update run by rows) from the middle: at a whole tile, a
            // [32, 200] gate program split 3584 + 2816, and the first core waited.
            let half = (n / 2)
                .next_multiple_of(lcm(row.unwrap_or(16), rows))
                .min(n);
            let mut tails: Dests<'_, T> = SmallVec::new();
            for s in slices.iter_mut() {
                let (head, tail) = s.take().split_at(half);
                *s = head;
                tails.push(tail);
            }
            crate::partner::pair_if_awake(
                &mut || {
                    self.run_range::<T, FMA>(sources, half..n, &mut tails, &mut [], alias, over)
                },
                &mut || {
                    self.run_range::<T, FMA>(sources, 0..half, &mut slices, &mut [], alias, over)
                },
            );
        } else {
            self.run_range::<T, FMA>(sources, 0..n, &mut slices, &mut sums, alias, over);
        }
    }

    /// An update program's range run a row at a time, when a strided operand makes the
    /// program's shape `[rows, cols]` with rows of at least [`UPDATE_ROW_MIN`] and every
    /// operand reads each row as one run (a weight, the row and column factors of an outer
    /// product, the rate): each row is then one loop whose operands are found by a
    /// multiplication, where the tile loop paid for each strided operand's place by division
    /// and bookkeeping per tile (the [100, 1000] outer-product update of a batch-1 mlp,
    /// compiled: 21.4 → 15.2 µs on a 2-core Zen 4, with the halves run on two cores split at
    /// a row). `false`, having written nothing, for other programs and layouts.
    #[inline(always)]
    fn update_rows<'a, T: Float>(
        &self,
        sources: &[Source<'a, T>],
        cols: usize,
        start: usize,
        out: &mut [T],
        alias: bool,
    ) -> bool {
        let Some(u) = self.update else { return false };
        if !start.is_multiple_of(cols) || !out.len().is_multiple_of(cols) {
            return false;
        }
        let rows = |p: usize| match self.input_at(p) {
            Some(n) => sources[n].rows(cols),
            None => (self.consts.iter().find(|&&(q, _)| q == p))
                .map(|&(_, c)| crate::elementwise::Rows::Splat(T::from_f64(c))),
        };
        let (Some(a), Some(b), Some(d)) = (rows(u.a), rows(u.b), rows(u.d)) else {
            return false;
        };
        let c = match u.c.map(rows) {
            Some(None) => return false,
            c => c.flatten(),
        };
        let first = start / cols;
        for (i, out) in out.chunks_exact_mut(cols).enumerate() {
            let r = first + i;
            let row = |x: crate::elementwise::Rows<'a, T>| x.row(r, cols);
            // (the operands' forms are the same in every row: the first decides)
            // (aliased, `a` is the row being written: its operand, a placeholder, unread)
            if !update_operands(u.sub, alias, row(a), row(b), c.map(row), row(d), out) {
                debug_assert_eq!(i, 0, "every row has the first's forms");
                return false;
            }
        }
        true
    }

    /// The row length an update program runs a row at a time over (see
    /// [`update_rows`](Program::update_rows)): a strided operand's, when at least
    /// [`UPDATE_ROW_MIN`]. Ranges on several threads split at its rows.
    fn update_row<T: Float>(&self, sources: &[Source<'_, T>]) -> Option<usize> {
        self.update?;
        (sources.iter().find_map(|s| s.strided_row())).filter(|&c| c >= UPDATE_ROW_MIN)
    }

    /// The input read into place `p`, if one is.
    fn input_at(&self, p: usize) -> Option<usize> {
        (self.reads.iter().find(|&&(_, q)| q == p)).map(|&(n, _)| n)
    }

    /// Evaluates the elements of `range` into `outs` and, when the range is all of them, the
    /// reductions into `sums`.
    fn run_range<T: Float, const FMA: bool>(
        &self,
        sources: &[Source<'_, T>],
        range: std::ops::Range<usize>,
        outs: &mut [Dest<'_, T>],
        sums: &mut [&mut [T]],
        alias: bool,
        over: &[(usize, usize)],
    ) {
        let (start, len) = (range.start, range.len());
        // (the row loop reads every operand in place: not with inputs written over)
        let row = self.update_row(sources).filter(|_| over.is_empty());
        if let (Some(cols), [out]) = (row, &mut *outs) {
            let out = out.run(0, len);
            if with_simd(
                #[inline(always)]
                || self.update_rows::<T>(sources, cols, start, out, alias),
            ) {
                return;
            }
        }
        // A range shorter than a tile whose length is not a whole number of vectors runs
        // padded: its values (outputs included) live in registers of whole vectors, the
        // inputs copied in and the outputs copied out, so the polynomial kernels run their
        // vector loop and not their element-by-element tail (the 100-op chain on 10 elements:
        // 5.3 → 4.1 µs on a 2-core Xeon). The padding's values are computed and never read
        // out. Below a third of a vector the element loop is the faster (1 element: 3.0
        // against 4.0 µs).
        let lanes = 64 / std::mem::size_of::<T>();
        // Up to one vector's worth of elements (16), the steps run on whole vectors held
        // in registers (see `vector_step`).
        let vector = self.update.is_none() && len <= VECTOR && 3 * len >= lanes;
        // (an update in place reads and writes its output's elements alone: never padded)
        let padded =
            vector || !alias && len < tile::<T>() && !len.is_multiple_of(lanes) && 3 * len >= lanes;
        let (tile, registers) = match (vector, padded) {
            (true, _) => (VECTOR, self.registers + outs.len()),
            (false, true) => (len.next_multiple_of(lanes), self.registers + outs.len()),
            // (an update reads its operands in place and writes the output directly, so its
            // tiles need not fit registers in L1: longer ones pay the per-tile work less often)
            (false, false) if self.update.is_some() => {
                ((UPDATE_TILES * tile::<T>()).min(len.max(1)), self.registers)
            }
            (false, false) => (tile::<T>().min(len.max(1)), self.registers),
        };
        let tiling = Tiling {
            len,
            tile,
            padded,
            vector,
            alias,
            over,
        };
        T::with_scratch(registers * tile + self.partials, |file| {
            self.run_in::<T, FMA>(sources, start, outs, sums, tiling, file)
        });
    }

    /// [`run_range`](Program::run_range) with `file` for its registers, then the reductions'
    /// partial sums.
    fn run_in<T: Float, const FMA: bool>(
        &self,
        sources: &[Source<'_, T>],
        start: usize,
        outs: &mut [Dest<'_, T>],
        sums: &mut [&mut [T]],
        tiling: Tiling<'_>,
        file: &mut [T],
    ) {
        // The tile loop runs inside the vector path's target-feature function: a call out of
        // it to code compiled without those features would make each fused multiply-add a
        // library call.
        with_simd(
            #[inline(always)]
            || self.tiles::<T, FMA>(sources, start, tiling, file, outs, sums),
        );
    }

    /// The tile loop of [`run_range`](Program::run_range).
    #[inline(always)]
    fn tiles<T: Float, const FMA: bool>(
        &self,
        sources: &[Source<'_, T>],
        start: usize,
        Tiling {
            len,
            tile,
            padded,
            vector,
            alias,
            over,
        }: Tiling<'_>,
        file: &mut [T],
        outs: &mut [Dest<'_, T>],
        sums: &mut [&mut [T]],
    ) {
        let registers = self.registers;
        debug_assert!(
            sums.is_empty() || start == 0,
            "reductions run over every element"
        );
        let (file, mut partials) = file.split_at_mut(file.len() - self.partials);
        let mut folds: SmallVec<[Fold<'_, T>; 2]> = SmallVec::new();
        for (r, sum) in self.reductions.iter().zip(sums.iter_mut()) {
            let (mine, rest) = std::mem::take(&mut partials).split_at_mut(partial_sums(r.kept()));
            partials = rest;
            folds.push(Fold::new(len / r.kept(), r.mean, sum, mine));
        }
        // (padded: one tile, the outputs in registers after the program's own)
        debug_assert!(file.len() >= (registers + if padded { outs.len() } else { 0 }) * tile);
        debug_assert!(outs.iter().all(|o| o.holds(len)) && (!padded || len <= tile));
        let file = file.as_mut_ptr();
        // (64 inline: the 100-op chain's value and gradient has over 32 places, and a list on
        // the heap, allocated and freed per call, cost that call 4%)
        let mut places: SmallVec<[Place<T>; 64]> = SmallVec::new();
        for r in 0..registers + outs.len() {
            places.push(Place {
                // SAFETY: register `r` is `file[r * tile..(r + 1) * tile]`, inside the file
                // (the outputs' places are pointed at their elements below unless padded)
                ptr: if r < registers || padded {
                    unsafe { file.add(r * tile) }
                } else {
                    std::ptr::null_mut()
                },
                one: None,
            });
        }
        // constants and one-element inputs: one value, their registers filled once
        let splats = self.consts.iter().map(|&(p, c)| (p, T::from_f64(c)));
        let inputs = self.reads.iter().filter_map(|&(n, p)| match sources[n] {
            Source::Splat(v) => Some((p, v)),
            _ => None,
        });
        for (p, v) in splats.chain(inputs) {
            // SAFETY: register `p` of the file, as above
            unsafe { std::slice::from_raw_parts_mut(file.add(p * tile), tile) }.fill(v);
            places[p].one = Some(v);
        }
        let strided = self.reads.iter().any(|&(n, _)| sources[n].is_strided());
        let mut at = 0;
        while at < len {
            let first = start + at;
            let rest = len - at;
            // Tiles follow the strided inputs' runs when those are at least a quarter of the
            // usual tile long (an update's tiles are longer): a tile that would straddle the
            // end of a run stops there, so the next starts a run and every tile lies inside
            // one (rows of 1000 in tiles of 512: 512, 488, 512, ...). Shorter runs are
            // gathered whatever the tiles.
            let left = match strided {
                true => sources.iter().filter_map(|s| s.run_left(first)).min(),
                false => None,
            };
            let m = match left {
                Some(r) if r < tile && r >= crate::elementwise::tile::<T>() / 4 => r.min(rest),
                _ => tile.min(rest),
            };
            // and never past the end of a row of a window written (see `Dest`)
            let m = (outs.iter().filter_map(|o| o.row_left(at))).fold(m, usize::min);
            // the elements the steps run over: the tile, or the whole padded registers
            let width = if padded { tile } else { m };
            // the inputs' elements over the tile: in place, one value, or gathered into their
            // registers
            let mut unfilled: SmallVec<[usize; 4]> = SmallVec::new();
            for &(n, p) in &self.reads {
                // SAFETY: register `p` of the file, as above; `m <= tile`.
                let reg = unsafe { std::slice::from_raw_parts_mut(file.add(p * tile), m) };
                if vector {
                    // (the padding's lanes hold zeros, not whatever the scratch held: a
                    // denormal or NaN there would cost the same as anywhere)
                    // SAFETY: register `p` is `tile` elements, as above
                    unsafe { std::slice::from_raw_parts_mut(file.add(p * tile + m), tile - m) }
                        .fill(T::zero());
                }
                if let Some(&(_, j)) = over.iter().find(|&&(i, _)| i == n) {
                    // an input written over: its elements are the output's until a step
                    // writes them, so every read of it is from this copy
                    reg.copy_from_slice(outs[j].run(at, m));
                    places[p] = Place {
                        ptr: reg.as_mut_ptr(),
                        one: None,
                    };
                    continue;
                }
                match &sources[n] {
                    Source::Slice(s) if padded => reg.copy_from_slice(&s[first..first + m]),
                    Source::Slice(s) => places[p].ptr = s[first..first + m].as_ptr().cast_mut(),
                    Source::Splat(_) => {}
                    src => {
                        places[p] = match src.run_operand(first, m) {
                            Some(Operand::Slice(run)) if padded => {
                                reg.copy_from_slice(run);
                                Place {
                                    ptr: reg.as_mut_ptr(),
                                    one: None,
                                }
                            }
                            Some(Operand::Slice(run)) => Place {
                                ptr: run.as_ptr().cast_mut(),
                                one: None,
                            },
                            Some(Operand::Splat(v)) => {
                                // filled only if a step reads it as elements (below)
                                unfilled.push(p);
                                Place {
                                    ptr: reg.as_mut_ptr(),
                                    one: Some(v),
                                }
                            }
                            None => {
                                src.fill(first, reg);
                                Place {
                                    ptr: reg.as_mut_ptr(),
                                    one: None,
                                }
                            }
                        }
                    }
                }
            }
            if !padded {
                for (j, o) in outs.iter_mut().enumerate() {
                    places[registers + j].ptr = o.run(at, m).as_mut_ptr();
                }
            }
            if let (true, Some(u)) = (alias, self.update) {
                // the updated value is read where the result is written
                places[u.a] = places[registers];
            }
            // SAFETY (both calls): every place holds `width` elements from its `ptr` (a
            // register's first `width`, an output's tile, an input's elements from the tile's
            // first, all checked above; padded, every place is a register); the places are
            // disjoint, apart from two reads of one input, and a step's result never shares
            // its operands' place (`Program::new`); inputs are only read (a result is never
            // an input's place).
            let done = match self.update {
                Some(u) => unsafe { update_tile(u, &places, registers, width) },
                None => false,
            };
            // (`run_in_place` checked that every tile's operands allow the one loop)
            assert!(done || !alias, "an update in place runs as one loop");
            if !done {
                // A run that repeats one value (a row's factor in an outer product) is one
                // value to the update, which reads it so; the steps read its elements.
                for &p in &unfilled {
                    // SAFETY: register `p` of the file, `m <= tile` elements, as above
                    unsafe { std::slice::from_raw_parts_mut(places[p].ptr, m) }
                        .fill(places[p].one.expect("a one-value run"));
                }
                // (a plain slice: indexing the SmallVec checks where it lives at every step)
                let places: &[Place<T>] = &places;
                if vector {
                    // (every place is a register of `VECTOR` elements)
                    let registers = file.cast::<[T; VECTOR]>();
                    // the previous step's result, in vector registers (see `vector_step`)
                    let mut last = [T::zero(); VECTOR];
                    for &lane in &self.vector_steps {
                        if !unsafe { vector_step::<T, FMA>(lane, registers, &mut last) } {
                            let runs = &self.runs[lane.runs()];
                            for &run in runs {
                                unsafe { step::<T, FMA>(run, places, width) };
                            }
                            let dst = runs.last().expect("a step runs one or two runs").dst();
                            // SAFETY: the last run's result, a register of the file
                            last = unsafe { *registers.add(dst) };
                        }
                    }
                } else {
                    for run in &self.runs {
                        unsafe { step::<T, FMA>(*run, places, width) };
                    }
                }
            }
            if padded {
                for (j, o) in outs.iter_mut().enumerate() {
                    // SAFETY: output `j`'s register, `tile >= m` elements, no longer written
                    let reg = unsafe { read(&places, registers + j, m) };
                    o.run(at, m).copy_from_slice(reg);
                }
            }
            for (fold, &p) in folds.iter_mut().zip(&self.folds) {
                // SAFETY: the value's place holds the tile's `m` elements (its register lives
                // to the end of the tile: `Program::with_reductions`), no longer written
                fold.add(unsafe { read(&places, p, m) }, first);
            }
            at += m;
        }
        for fold in &mut folds {
            fold.finish();
        }
    }
}

/// How a program reads input `a`: as [`Source::of`] does, but one element repeated (an
/// expanded scalar: a sum's gradient) is one value, its register filled once per run, not a
/// strided source found tile by tile.
#[track_caller]
fn source<'a, T: Float>(a: &'a Array, shape: &[usize], n: usize, op: &str) -> Source<'a, T> {
    if a.numel() > 1 && a.strides().iter().all(|&s| s == 0) {
        Source::Splat(a.storage_slice::<T>(op)[a.offset()])
    } else {
        Source::of(a, shape, n, op)
    }
}

/// Whether a program may write its result over `a`: the only handle on a contiguous host
/// buffer of `shape` and `dtype` (see [`Program::run_in_place`], [`Program::run_over`]).
fn writable(a: &Array, shape: &[usize], dtype: DType) -> bool {
    a.dtype() == dtype && same_shape(a.shape(), shape) && a.is_unique_buffer()
}

/// Panics unless `a` is of `dtype` and broadcasts to `shape` (a fused program's input).
#[track_caller]
fn check_input(a: &Array, shape: &[usize], dtype: DType) {
    let op = "fused program";
    if a.dtype() != dtype {
        crate::error::dtype_fail(op, a.dtype(), dtype.name());
    }
    let from = a.shape();
    let fits = from.len() <= shape.len()
        && (from.iter().rev().zip(shape.iter().rev())).all(|(&f, &t)| f == t || f == 1);
    if !fits {
        fail(
            op,
            format_args!(
                "input of shape {} does not broadcast to {}",
                fmt_shape(from),
                fmt_shape(shape)
            ),
        )
    }
}

/// How many partial sums a reduction keeping `kept` elements needs while it runs (16 per
/// kept element below 16 kept, as `sum_row` keeps them; none from 16, which add whole rows).
fn partial_sums(kept: usize) -> usize {
    if kept < 16 {
        kept * 16
    } else {
        0
    }
}

/// A [`Reduction`] in progress: its additions in the order `Array::sum_dim` makes them, the
/// result accumulated in its output `sum` (`kept` elements).
struct Fold<'a, T> {
    sum: &'a mut [T],
    mean: bool,
    kept: usize,
    rows: usize,
    /// Rows summed into the 16 partial sums of each kept element (fewer than 16 kept); the
    /// rows after them are added one by one to the sum of the partial sums.
    whole: usize,
    /// The partial sums, 16 per kept element (fewer than 16 kept).
    partial: &'a mut [T],
    /// Whether the partial sums have been summed into the output.
    summed: bool,
}

impl<'a, T: Float> Fold<'a, T> {
    fn new(rows: usize, mean: bool, sum: &'a mut [T], partial: &'a mut [T]) -> Fold<'a, T> {
        sum.fill(T::zero());
        partial.fill(T::zero());
        Fold {
            kept: sum.len(),
            sum,
            mean,
            rows,
            whole: rows - rows % 16,
            partial,
            summed: false,
        }
    }

    /// Adds the elements `x` of the value from element `first` on.
    #[inline(always)]
    fn add(&mut self, x: &[T], first: usize) {
        let kept = self.kept;
        if kept >= 16 {
            // whole rows added in order (`Array::sum_dim` over leading dims)
            let (mut i, mut c) = (0, first % kept);
            while i < x.len() {
                let k = (kept - c).min(x.len() - i);
                for (d, &v) in self.sum[c..c + k].iter_mut().zip(&x[i..i + k]) {
                    *d += v;
                }
                i += k;
                c = 0;
            }
            return;
        }
        // 16 partial sums per kept element, then the rest (`sum_row`)
        let mut i = 0;
        while i < x.len() {
            let g = first + i;
            let (r, c) = (g / kept, g % kept);
            if r >= self.whole {
                self.sum_partials();
                if kept == 1 {
                    // the rest, in order, in a register: through `sum[0]` each addition
                    // waited for the last one's store (a fifth of a 10-element program's
                    // tile loop)
                    let mut sum = self.sum[0];
                    for &v in &x[i..] {
                        sum += v;
                    }
                    self.sum[0] = sum;
                    break;
                }
                self.sum[c] += x[i];
                i += 1;
            } else if kept == 1 && r % 16 == 0 && i + 16 <= x.len() && r + 16 <= self.whole {
                for (a, &v) in self.partial[..16].iter_mut().zip(&x[i..i + 16]) {
                    *a += v;
                }
                i += 16;
            } else {
                self.partial[c * 16 + r % 16] += x[i];
                i += 1;
            }
        }
    }

    fn sum_partials(&mut self) {
        if !self.summed && self.kept < 16 {
            for (c, s) in self.sum.iter_mut().enumerate() {
                for &a in &self.partial[c * 16..c * 16 + 16] {
                    *s += a;
                }
            }
        }
        self.summed = true;
    }

    fn finish(&mut self) {
        self.sum_partials();
        if self.mean {
            let n = T::from(self.rows).expect("a count");
            self.sum.iter_mut().for_each(|s| *s = *s / n);
        }
    }
}

/// The elements a program runs over in vector form: every value one vector of this many
/// elements in a register of the file (one AVX-512 vector of f32, two of f64), each step
/// loading its operands and storing its result whole. A run of at most this many elements
/// (and at least a third of a vector; fewer run element by element) is padded to it.
const VECTOR: usize = 16;

/// One step of a program in vector form (see [`vector_step`]): its function flattened into
/// one list with the operands' places beside it, so a step is one jump on `f`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct VectorStep {
    f: Fast,
    d: u32,
    x: u32,
    /// The second operand; for [`Fast::CosSin`], the place the sine is written.
    y: u32,
    /// Which operands are the previous step's result ([`CHAIN_X`], [`CHAIN_Y`]): read from
    /// the copy the loop keeps in vector registers, not loaded back from the file.
    chain: u8,
    /// The index of the step's (first) run, which [`step`] runs when [`vector_step`] does
    /// not.
    run: u32,
}

/// [`VectorStep::chain`]: the first operand is the previous step's result.
const CHAIN_X: u8 = 1;
/// [`VectorStep::chain`]: the second operand is the previous step's result.
const CHAIN_Y: u8 = 2;

impl VectorStep {
    /// The vector form of `runs`, one step each, but that a `cos` followed by a `sin` of
    /// the same value (where `hoist`, in the compiler's fusion, puts a backward pass's
    /// `cos(x)`: just before the forward `sin(x)`) is one [`Fast::CosSin`] step, computing
    /// both from one reduction: the bits are those of the two functions alone
    /// (`sin_and_cos_f32`). The 100-op chain's value and gradient on 10 elements, whose 25
    /// `sin`s each have such a `cos`: 2.23 → 2.07 µs per call on a 2-core Zen 4 (AVX-512),
    /// quietest of 4 alternations (and 1.80 → 1.78 µs, 4 alternations, once the `sin`'s run
    /// no longer had a step of its own that did nothing).
    fn all(runs: &[Run]) -> Vec<VectorStep> {
        let mut steps: Vec<VectorStep> = Vec::with_capacity(runs.len());
        let mut k = 0;
        while k < runs.len() {
            let mut step = VectorStep::of(runs[k], k.checked_sub(1).map(|p| runs[p]), k);
            if let (Run::Map(MapFn::Cos, c, x), Some(&Run::Map(MapFn::Sin, s, x2))) =
                (runs[k], runs.get(k + 1))
            {
                // (the sine is written with the cosine, so its place must be neither the
                // operand's nor the cosine's; it is not, as no step writes over an operand
                // and two live values never share a place)
                if x == x2 && s != c && s != x {
                    step.f = Fast::CosSin;
                    step.y = s as u32;
                    step.chain &= CHAIN_X;
                    k += 1;
                }
            }
            steps.push(step);
            k += 1;
        }
        steps
    }

    /// The indices of the runs the step computes (see [`VectorStep::all`]).
    fn runs(self) -> std::ops::Range<usize> {
        let first = self.run as usize;
        first..first + if self.f == Fast::CosSin { 2 } else { 1 }
    }
}

impl Run {
    /// The place the step writes.
    fn dst(self) -> usize {
        match self {
            Run::Map(_, d, _) | Run::Zip(_, d, _, _) | Run::Select(d, ..) | Run::Copy(_, d) => d,
        }
    }
}

macro_rules! fast_functions {
    (
        maps: $($m:ident),*;
        f32 maps: $($p:ident),*;
        trig: $($t:ident),*;
        zips: $($z:ident),*;
        f32 zips: $($q:ident),*
    ) => {
        /// The functions [`vector_step`] computes, and `Slow` for those [`step`] runs.
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Fast {
            $($m,)*
            $($p,)*
            $($t,)*
            $($z,)*
            $($q,)*
            /// f32's `cos` of `x` into `d` and its `sin` into `y` (see [`VectorStep::all`]);
            /// other types run the two runs.
            CosSin,
            Slow,
        }

        impl VectorStep {
            /// The step `run`, run `index` of its program, in vector form.
            fn of(run: Run, previous: Option<Run>, index: usize) -> VectorStep {
                let last = previous.map(Run::dst);
                let lane = |f, d: usize, x: usize, y: usize| VectorStep {
                    f,
                    d: d as u32,
                    x: x as u32,
                    y: y as u32,
                    chain: u8::from(last == Some(x)) * CHAIN_X
                        + u8::from(last == Some(y)) * CHAIN_Y,
                    run: index as u32,
                };
                match run {
                    $(Run::Map(MapFn::$m, d, x) => lane(Fast::$m, d, x, 0),)*
                    $(Run::Map(MapFn::$p, d, x) => lane(Fast::$p, d, x, 0),)*
                    $(Run::Map(MapFn::$t, d, x) => lane(Fast::$t, d, x, 0),)*
                    $(Run::Zip(ZipFn::$z, d, x, y) => lane(Fast::$z, d, x, y),)*
                    $(Run::Zip(ZipFn::$q, d, x, y) => lane(Fast::$q, d, x, y),)*
                    _ => lane(Fast::Slow, 0, 0, 0),
                }
            }
        }

        /// One step of a program in vector form, when its function is one of those computed
        /// here (the four operators, the vectorised polynomial kernels of f32 and the cheap
        /// maps; `false`, having done nothing, for the others, which [`step`] runs). The
        /// result is the same as [`step`]'s bit for bit: the same function of each element.
        ///
        /// Each function's arm stores its own result: with one result variable shared by
        /// the arms, the compiler met the arms' sixteen lanes in a join it did not vectorise,
        /// and several arms (the product among them) ran lane by lane and were reassembled
        /// with sixteen inserts.
        ///
        /// Each arm also leaves its result in `last`, which the loop keeps in vector
        /// registers from step to step, and reads an operand that is the previous step's
        /// result from there ([`VectorStep::chain`]): loaded back from the file, it waited
        /// for the store to be forwarded to the load. On a 2-core Zen 4 a chain of products
        /// and sums took 4.9 ns per step through the file and 2.0 ns from `last` on AVX-512
        /// (4.3 and 2.1 on AVX2; the array bench's `per step` rows); the 100-op chain's call
        /// went from 2.5-3.2 to 2.2-2.3 µs. A second held value (the result two steps back,
        /// which a transcendental map placed beside the chain leaves there) gained 5% more
        /// on AVX-512 but was kept on the stack on AVX2, losing all of it there; a held
        /// value that only steps read by the next step replace (a conditional update) was
        /// kept on the stack on both.
        ///
        /// # Safety
        /// `registers` points at a register file holding every place `lane` names, the
        /// result's disjoint from the operands'; `last` holds the previous step's result.
        #[inline(always)]
        unsafe fn vector_step<T: Float, const FMA: bool>(
            lane: VectorStep,
            registers: *mut [T; VECTOR],
            last: &mut [T; VECTOR],
        ) -> bool {
            // SAFETY (all): the caller's promise
            let get = |p: u32, bit: u8| if lane.chain & bit != 0 {
                *last
            } else {
                unsafe { *registers.add(p as usize) }
            };
            let d = unsafe { &mut *registers.add(lane.d as usize) };
            match lane.f {
                $(Fast::$m => {
                    let x = get(lane.x, CHAIN_X);
                    let mut r = x;
                    for i in 0..VECTOR {
                        r[i] = MapFn::$m.eval::<T, FMA>(x[i]);
                    }
                    *d = r;
                    *last = r;
                })*
                // (f64's are libm's, one call per element: `step` runs them)
                $(Fast::$p if std::mem::size_of::<T>() == 4 => {
                    let x = get(lane.x, CHAIN_X);
                    let mut r = x;
                    for i in 0..VECTOR {
                        r[i] = MapFn::$p.eval::<T, FMA>(x[i]);
                    }
                    *d = r;
                    *last = r;
                })*
                $(Fast::$z => {
                    let (x, y) = (get(lane.x, CHAIN_X), get(lane.y, CHAIN_Y));
                    let mut r = x;
                    for i in 0..VECTOR {
                        r[i] = ZipFn::$z.eval::<T, FMA>(x[i], y[i]);
                    }
                    *d = r;
                    *last = r;
                })*
                $(Fast::$q if std::mem::size_of::<T>() == 4 => {
                    let (x, y) = (get(lane.x, CHAIN_X), get(lane.y, CHAIN_Y));
                    let mut r = x;
                    for i in 0..VECTOR {
                        r[i] = ZipFn::$q.eval::<T, FMA>(x[i], y[i]);
                    }
                    *d = r;
                    *last = r;
                })*
                Fast::Sin if std::mem::size_of::<T>() == 4 => {
                    let r = sin_or_cos_vector::<T, FMA, false>(get(lane.x, CHAIN_X));
                    *d = r;
                    *last = r;
                }
                Fast::Cos if std::mem::size_of::<T>() == 4 => {
                    let r = sin_or_cos_vector::<T, FMA, true>(get(lane.x, CHAIN_X));
                    *d = r;
                    *last = r;
                }
                Fast::CosSin if std::mem::size_of::<T>() == 4 => {
                    let x = get(lane.x, CHAIN_X);
                    let (mut sin, mut cos) = (x, x);
                    for i in 0..VECTOR {
                        (sin[i], cos[i]) = x[i].sin_and_cos_near::<FMA>();
                    }
                    if beyond_trig_near(&x) {
                        for i in 0..VECTOR {
                            (sin[i], cos[i]) = x[i].sin_cos_kernel::<FMA>();
                        }
                    }
                    *d = cos;
                    // SAFETY: the caller's promise; the sine's place is a register apart
                    // from the operand's and the cosine's (`VectorStep::all`)
                    unsafe { *registers.add(lane.y as usize) = sin };
                    // (the pair's second step leaves its result here, as `step` would)
                    *last = sin;
                }
                _ => return false,
            }
            true
        }
    };
}

/// Whether any lane of `x` is beyond [`Float::TRIG_NEAR`] (NaN is not).
#[inline(always)]
fn beyond_trig_near<T: Float>(x: &[T; VECTOR]) -> bool {
    x.iter()
        .fold(false, |beyond, v| beyond | (v.abs() > T::TRIG_NEAR))
}

/// `sin` (`COS`: `cos`) of every lane, `step`'s values bit for bit: the branch-free form in
/// every lane, then, only if a lane is beyond [`Float::TRIG_NEAR`], the kernel with its
/// branch in all of them.
#[inline(always)]
fn sin_or_cos_vector<T: Float, const FMA: bool, const COS: bool>(x: [T; VECTOR]) -> [T; VECTOR] {
    let mut r = x;
    for i in 0..VECTOR {
        r[i] = x[i].sin_or_cos_near::<FMA, COS>();
    }
    if beyond_trig_near(&x) {
        for i in 0..VECTOR {
            r[i] = if COS {
                x[i].cos_kernel::<FMA>()
            } else {
                x[i].sin_kernel::<FMA>()
            };
        }
    }
    r
}

fast_functions!(
    maps: Neg, Abs, Relu, Sqrt, Reciprocal, Square, Identity;
    f32 maps: Exp, Expm1, Log, Log1p, Tanh, Sigmoid, Erf, Gelu;
    trig: Sin, Cos;
    zips: Add, Sub, Mul, Div, Maximum, Minimum, TanhBackward, SigmoidBackward;
    f32 zips: GeluBackward
);

/// Where [`Program::run_into`] writes an output inside a larger array: the output's
/// elements in row-major order as rows of `cols`, the first row from element `start` of the
/// array and each row `stride` elements after the last (a block of columns of a matrix's
/// rows: `start` the block's first column, `stride` the matrix's row length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The array's element where the first row begins.
    pub start: usize,
    /// Elements per row.
    pub cols: usize,
    /// Elements from one row's start to the next's.
    pub stride: usize,
}

impl Array {
    /// Copies the elements of `self`, in row-major order, into `window` of `out` (see
    /// [`Window`]), the rest of `out` kept: a piece of a stack of rows that a compiled plan
    /// writes into its columns of the rows while a fused program writes the others
    /// ([`Program::run_into`]). `out` is first made the only handle on a contiguous buffer
    /// (copied when it is a view or shared, as every `*_into` output is). Host arrays only.
    ///
    /// ```
    /// use ferrograd_array::{Array, DType, Window};
    /// let x = Array::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    /// let mut rows = Array::zeros(&[2, 3], DType::F32);
    /// x.write_window(&mut rows, Window { start: 1, cols: 2, stride: 3 });
    /// assert_eq!(rows.to_vec::<f32>(), [0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
    /// ```
    ///
    /// Panics when the dtypes differ, or the window does not hold `self`'s elements in rows
    /// inside `out`.
    #[track_caller]
    pub fn write_window(&self, out: &mut Array, window: Window) {
        let op = "write_window";
        let (
            n,
            Window {
                start,
                cols,
                stride,
            },
        ) = (self.numel(), window);
        if self.dtype() != out.dtype() {
            crate::error::dtype_fail(op, self.dtype(), out.dtype().name());
        }
        if !window.holds(n, out.numel()) {
            fail(
                op,
                format_args!(
                    "{window:?} does not hold {n} elements in rows inside {}",
                    fmt_shape(out.shape())
                ),
            )
        }
        if !self.device().is_cpu() || !out.device().is_cpu() {
            fail(op, "takes host arrays only")
        }
        out.make_unique();
        crate::dtype::dispatch_any!(self.dtype(), T => {
            let src = Source::<T>::of(self, self.shape(), n, op);
            let dst = out.unique_slice_mut::<T>();
            for (r, first) in (0..n).step_by(cols.max(1)).enumerate() {
                let row = &mut dst[start + r * stride..][..cols];
                match src.run_operand(first, cols) {
                    Some(Operand::Slice(run)) => row.copy_from_slice(run),
                    Some(Operand::Splat(v)) => row.fill(v),
                    None => src.fill(first, row),
                }
            }
        })
    }
}

impl Window {
    /// Whether it holds `n` elements in whole rows that do not overlap, inside an array of
    /// `len` elements.
    fn holds(&self, n: usize, len: usize) -> bool {
        self.cols > 0
            && n.is_multiple_of(self.cols)
            && self.cols <= self.stride
            && (n == 0 || self.start + (n / self.cols - 1) * self.stride + self.cols <= len)
    }
}

/// An output's elements as the tile loop writes them: contiguous, or a window of a larger
/// array (`window: Some((cols, stride))`): rows of `cols` elements, each `stride` after the
/// last, the output's elements in row-major order (see [`Program::run_into`]). Indices are
/// from the first element of the range the loop runs; tiles never straddle a window's row.
/// Held as a pointer and a length: the windows of one array interleave (the column blocks of
/// the same rows), so they cannot be disjoint slices, though their elements are disjoint.
struct Dest<'a, T> {
    ptr: *mut T,
    len: usize,
    window: Option<(usize, usize)>,
    _elements: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: a `Dest` is the only handle on its elements, as the `&mut [T]` it is made from
// (`contiguous`) or a window of an array no other `Dest` shares an element of (`window`).
unsafe impl<T: Send> Send for Dest<'_, T> {}

impl<'a, T> Dest<'a, T> {
    fn contiguous(data: &'a mut [T]) -> Dest<'a, T> {
        Dest {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            window: None,
            _elements: std::marker::PhantomData,
        }
    }

    /// A window of `data` (see [`Window`]), of `n` elements in rows of `w.cols`.
    ///
    /// # Safety
    /// The window lies inside `data` and shares no element with another `Dest` of it made
    /// while this one lives.
    unsafe fn window(data: *mut T, w: Window) -> Dest<'a, T> {
        Dest {
            // SAFETY: inside `data`, the caller's promise.
            ptr: unsafe { data.add(w.start) },
            len: usize::MAX,
            window: Some((w.cols, w.stride)),
            _elements: std::marker::PhantomData,
        }
    }

    /// Where element `i` is, from `ptr`.
    #[inline(always)]
    fn offset(&self, i: usize) -> usize {
        match self.window {
            None => i,
            Some((cols, stride)) => i / cols * stride + i % cols,
        }
    }

    /// Elements `i..i + m`, inside one row.
    #[inline(always)]
    fn run(&mut self, i: usize, m: usize) -> &mut [T] {
        let o = self.offset(i);
        debug_assert!(self.window.is_none_or(|(cols, _)| i % cols + m <= cols));
        assert!(
            self.window.is_some() || o + m <= self.len,
            "inside the output"
        );
        // SAFETY: a contiguous output's elements are checked just above; a window's are
        // inside its array (`Dest::window`'s promise), and the loop runs no tile past its
        // range or across a row.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(o), m) }
    }

    /// Elements left in element `i`'s row, for a window.
    #[inline(always)]
    fn row_left(&self, i: usize) -> Option<usize> {
        self.window.map(|(cols, _)| cols - i % cols)
    }

    /// Whether it holds `n` elements.
    fn holds(&self, n: usize) -> bool {
        self.window.is_some() || n <= self.len
    }

    /// Its elements before element `i` (a whole number of a window's rows) and from it.
    fn split_at(self, i: usize) -> (Dest<'a, T>, Dest<'a, T>) {
        let at = match self.window {
            None => {
                assert!(i <= self.len, "inside the output");
                i
            }
            Some((cols, stride)) => {
                debug_assert!(i.is_multiple_of(cols), "windows split at whole rows");
                i / cols * stride
            }
        };
        let tail = Dest {
            // SAFETY: a contiguous output's `i` is checked above; a window's rows from `i`
            // on start there (a pointer one past the window's last row is never read).
            ptr: unsafe { self.ptr.add(at) },
            len: self.len.saturating_sub(at),
            ..self
        };
        (
            Dest {
                len: self.len.min(at),
                ..self
            },
            tail,
        )
    }

    /// Itself, leaving an empty one.
    fn take(&mut self) -> Dest<'a, T> {
        let len = std::mem::take(&mut self.len);
        Dest { len, ..*self }
    }
}

/// A program's outputs as the tile loop writes them (a few inline).
type Dests<'a, T> = SmallVec<[Dest<'a, T>; 4]>;

/// The least common multiple.
fn lcm(a: usize, b: usize) -> usize {
    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    a / gcd(a, b) * b
}

/// How a range is cut into tiles: `len` elements in tiles of `tile`, or (`padded`) one tile
/// of `len` elements run over `tile`, its whole vectors (see [`Program::run_range`]).
#[derive(Clone, Copy)]
struct Tiling<'o> {
    len: usize,
    tile: usize,
    padded: bool,
    /// Padded to one [`VECTOR`], run in vector form.
    vector: bool,
    /// The update's value `a` is read from its output (see [`Program::run_in_place`]).
    alias: bool,
    /// (input, output) pairs: the output is written over the input, whose elements each
    /// tile copies into its register before any step runs (see [`Program::run_over`]).
    over: &'o [(usize, usize)],
}

/// Tiles of an update program are this many times the usual tile (see `run_range`).
const UPDATE_TILES: usize = 4;

/// Rows at least this long run an update program a row at a time (see
/// [`Program::update_rows`]); shorter ones are gathered by the tile loop.
const UPDATE_ROW_MIN: usize = 256;

/// Place `p`'s elements over a tile of `m`.
///
/// # Safety
/// `places[p]` holds `m` elements, not written while the slice lives.
#[inline(always)]
unsafe fn read<'a, T>(places: &[Place<T>], p: usize, m: usize) -> &'a [T] {
    // SAFETY: the caller's promise.
    unsafe { std::slice::from_raw_parts(places[p].ptr, m) }
}

/// Place `p` over a tile as a binary function's operand: its one value, or its elements.
///
/// # Safety
/// As [`read`].
#[inline(always)]
unsafe fn operand<'a, T: Copy>(places: &[Place<T>], p: usize, m: usize) -> Operand<'a, T> {
    match places[p].one {
        Some(v) => Operand::Splat(v),
        // SAFETY: the caller's promise.
        None => Operand::Slice(unsafe { read(places, p, m) }),
    }
}

/// One step of the tile loop.
///
/// # Safety
/// Every place `run` names holds `m` elements; its result's place is disjoint from its
/// operands' and not otherwise borrowed.
#[inline(always)]
unsafe fn step<T: Float, const FMA: bool>(run: Run, places: &[Place<T>], m: usize) {
    // SAFETY (all): the caller's promise.
    let dst = |p: usize| unsafe { std::slice::from_raw_parts_mut(places[p].ptr, m) };
    unsafe {
        match run {
            Run::Map(f, d, x) => map_float::<T, FMA>(f, dst(d), read(places, x, m)),
            Run::Zip(f, d, x, y) => {
                zip_float::<T, FMA>(f, dst(d), operand(places, x, m), operand(places, y, m))
            }
            Run::Select(d, c, x, y) => {
                let (c, x, y) = (read(places, c, m), read(places, x, m), read(places, y, m));
                for (((d, &c), &x), &y) in dst(d).iter_mut().zip(c).zip(x).zip(y) {
                    *d = if c != T::zero() { x } else { y };
                }
            }
            Run::Copy(from, to) => dst(to).copy_from_slice(read(places, from, m)),
        }
    }
}

/// The program's [`Update`] over a tile in one loop, when its operands allow (the updated
/// value and the first factor read as elements, the other two as elements or one value);
/// `false`, having written nothing, when they do not. Its one output is place `registers`.
///
/// # Safety
/// As [`step`].
#[inline(always)]
unsafe fn update_tile<T: Float>(
    u: Update,
    places: &[Place<T>],
    registers: usize,
    m: usize,
) -> bool {
    // SAFETY (all): the caller's promise.
    let operand = |p| unsafe { operand(places, p, m) };
    // in place, `a` is read through the output's slice alone
    let in_place = places[u.a].ptr == places[registers].ptr;
    let a = match in_place {
        true => Operand::Splat(T::zero()),
        false => operand(u.a),
    };
    let (b, c, d) = (operand(u.b), u.c.map(operand), operand(u.d));
    let out = unsafe { std::slice::from_raw_parts_mut(places[registers].ptr, m) };
    update_operands(u.sub, in_place, a, b, c, d, out)
}

/// `out = a ∓ (b·c)·d` over one run (see [`update_tile`]), when the operands allow: `a` and
/// one of `b`, `c` as elements; `false`, having written nothing, when they do not. `in_place`:
/// `a` is `out`'s own elements (`a` unread), each read before it is written.
#[inline(always)]
fn update_operands<'a, T: Float>(
    sub: bool,
    in_place: bool,
    a: Operand<'a, T>,
    mut b: Operand<'a, T>,
    mut c: Option<Operand<'a, T>>,
    mut d: Operand<'a, T>,
    out: &mut [T],
) -> bool {
    if let (Operand::Splat(_), Some(Operand::Slice(_))) = (b, c) {
        std::mem::swap(&mut b, c.as_mut().expect("matched"));
    }
    // `a ∓ b·d` is `a ∓ d·b` bit for bit (`p - 0.01·g` as `p - g·0.01`)
    if let (Operand::Splat(_), None, Operand::Slice(_)) = (b, c, d) {
        std::mem::swap(&mut b, &mut d);
    }
    let a = match (in_place, a) {
        (true, _) => &[][..],
        (false, Operand::Slice(a)) => a,
        (false, Operand::Splat(_)) => return false,
    };
    let Operand::Slice(b) = b else { return false };
    use Operand::{Slice as E, Splat as S};
    macro_rules! run {
        ($c:expr, $d:expr, $has_c:literal) => {
            match (sub, in_place) {
                (true, false) => update_loop::<T, _, _, true, $has_c, false>(out, a, b, $c, $d),
                (false, false) => update_loop::<T, _, _, false, $has_c, false>(out, a, b, $c, $d),
                (true, true) => update_loop::<T, _, _, true, $has_c, true>(out, a, b, $c, $d),
                (false, true) => update_loop::<T, _, _, false, $has_c, true>(out, a, b, $c, $d),
            }
        };
    }
    match (c, d) {
        (Some(E(c)), E(d)) => run!(Elems(c), Elems(d), true),
        (Some(E(c)), S(d)) => run!(Elems(c), d, true),
        (Some(S(c)), E(d)) => run!(c, Elems(d), true),
        (Some(S(c)), S(d)) => run!(c, d, true),
        (None, E(d)) => run!(T::one(), Elems(d), false),
        (None, S(d)) => run!(T::one(), d, false),
    }
    true
}

/// An operand of [`update_loop`]: elements, or one value (`T` itself).
trait Lane<T>: Copy {
    fn at(self, i: usize) -> T;
}

/// Elements, as many as the loop runs over.
#[derive(Clone, Copy)]
struct Elems<'a, T>(&'a [T]);

impl<T: Copy> Lane<T> for Elems<'_, T> {
    #[inline(always)]
    fn at(self, i: usize) -> T {
        self.0[i]
    }
}

impl<T: Float> Lane<T> for T {
    #[inline(always)]
    fn at(self, _: usize) -> T {
        self
    }
}

/// `out = a ∓ (b·c)·d` (`a ∓ b·d` without `HAS_C`), each product rounded, then the sum;
/// `IN_PLACE`: `a` is `out` itself (and the slice `a` unread).
#[inline(always)]
fn update_loop<
    T: Float,
    C: Lane<T>,
    D: Lane<T>,
    const SUB: bool,
    const HAS_C: bool,
    const IN_PLACE: bool,
>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    c: C,
    d: D,
) {
    let n = out.len();
    let a = if IN_PLACE { a } else { &a[..n] };
    let b = &b[..n];
    for i in 0..n {
        let p = if HAS_C { b[i] * c.at(i) } else { b[i] };
        let t = p * d.at(i);
        let v = if IN_PLACE { out[i] } else { a[i] };
        out[i] = if SUB { v - t } else { v + t };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elementwise::gather;
    use crate::layout::broadcast_strides;

    #[test]
    fn gather_walks_broadcast_and_strided_layouts_from_any_start() {
        // a [3, 4] transposed view of a [4, 3] array, and a row broadcast to [3, 4]
        let base: Vec<f64> = (0..12).map(f64::from).collect();
        let t = Array::from_vec(base.clone(), &[4, 3]).t();
        let want = t.to_f64_vec();
        let st = broadcast_strides(t.shape(), t.strides(), &[3, 4]);
        for start in 0..12 {
            for len in 0..=12 - start {
                let mut dst = vec![0.0; len];
                gather(&base, &[3, 4], &st, 0, start, &mut dst);
                assert_eq!(dst, want[start..start + len], "start {start} len {len}");
            }
        }
        let row = [7.0, 8.0, 9.0, 10.0];
        let mut dst = vec![0.0; 9];
        gather(&row, &[3, 4], &[0, 1], 0, 2, &mut dst);
        assert_eq!(dst, [9.0, 10.0, 7.0, 8.0, 9.0, 10.0, 7.0, 8.0, 9.0]);
    }

    /// Short runs are written as overlapping windows (see `copy_run`): every layout of runs
    /// shorter and longer than a window, from every start, to every end, against the
    /// elements addressed one by one. The data is exactly as long as the layout needs, so the
    /// last runs' windows would read past it.
    #[test]
    fn a_strided_operand_gives_any_run_in_place_or_as_its_one_value() {
        // three-dim layouts the coalescing keeps (inner runs contiguous, or one value
        // repeated, under outer dims that do not merge), and two-dim ones
        let base = Array::arange(0.0, 24.0, 1.0, DType::F64);
        let layouts = [
            (base.reshape(&[3, 2, 4]).permute(&[1, 0, 2]), vec![2, 3, 4]),
            (base.narrow(0, 0, 8).reshape(&[2, 1, 4]), vec![2, 3, 4]),
            (
                base.narrow(0, 0, 6).reshape(&[3, 2, 1]).permute(&[1, 0, 2]),
                vec![2, 3, 5],
            ),
            (base.narrow(0, 0, 5).reshape(&[1, 5]), vec![4, 5]),
            (base.narrow(0, 0, 4).reshape(&[4, 1]), vec![4, 6]),
        ];
        for (a, shape) in layouts {
            let want = a.expand(&shape).contiguous().to_f64_vec();
            let n = want.len();
            let source = Source::<f64>::of(&a, &shape, n, "test");
            assert!(source.is_strided(), "{:?} to {shape:?}", a.shape());
            let inner = shape[shape.len() - 1];
            for start in 0..n {
                for len in 1..=inner - start % inner {
                    let what = format!("{:?} to {shape:?}, {start}..+{len}", a.shape());
                    let elems = &want[start..start + len];
                    match source.run_operand(start, len) {
                        Some(Operand::Slice(s)) => assert_eq!(s, elems, "{what}"),
                        Some(Operand::Splat(v)) => assert!(elems.iter().all(|&e| e == v), "{what}"),
                        None => panic!("{what}: no run"),
                    }
                }
            }
        }
    }

    #[test]
    fn gather_of_short_runs_gives_each_element_whatever_the_window() {
        for inner in [1usize, 3, 10, 15, 16, 17] {
            let rows = 7;
            // (shape, strides, data length): a row broadcast down, a column broadcast
            // along, rows back to back, every other element, a 3-d view
            let layouts: [(Vec<usize>, Vec<isize>, usize); 5] = [
                (vec![rows, inner], vec![0, 1], inner),
                (vec![rows, inner], vec![1, 0], rows),
                (vec![rows, inner], vec![inner as isize, 1], rows * inner),
                (
                    vec![rows, inner],
                    vec![2 * inner as isize, 2],
                    2 * rows * inner - 1,
                ),
                (
                    vec![2, rows, inner],
                    vec![0, inner as isize, 1],
                    rows * inner,
                ),
            ];
            for (shape, strides, len) in layouts {
                let data: Vec<f64> = (0..len).map(|i| i as f64 + 0.5).collect();
                let n: usize = shape.iter().product();
                let at = |e: usize| {
                    let (mut rest, mut pos) = (e, 0isize);
                    for d in (0..shape.len()).rev() {
                        pos += (rest % shape[d]) as isize * strides[d];
                        rest /= shape[d];
                    }
                    data[pos as usize]
                };
                for start in 0..n {
                    for end in [start, start + 1, (start + 21).min(n), n] {
                        let mut dst = vec![-1.0; end - start];
                        gather(&data, &shape, &strides, 0, start, &mut dst);
                        let want: Vec<f64> = (start..end).map(at).collect();
                        assert_eq!(dst, want, "{shape:?} {strides:?} from {start} to {end}");
                    }
                }
            }
        }
    }

    #[test]
    fn registers_are_shared_once_values_die() {
        // a chain of ten maps needs two registers besides the input's
        let mut instrs = vec![Instr::Input(0)];
        for k in 0..10 {
            instrs.push(Instr::Map(MapFn::Exp, k));
        }
        let p = Program::new(instrs, vec![10]);
        assert_eq!(p.registers, 3);
    }
}
