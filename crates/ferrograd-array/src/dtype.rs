//! Element types: the runtime [`DType`] tag and the compile-time [`Element`] traits that
//! kernels are generic over.

use std::fmt;

use crate::storage::Buffer;

/// The element type of an [`Array`](crate::Array), known at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 64-bit signed integer (indices, counts). Its arithmetic wraps around on overflow in
    /// every build profile, as PyTorch's does (`i64::MAX + 1` is `i64::MIN`, and so is
    /// `i64::MIN / -1`); dividing by 0 panics, naming the op and the caller's line.
    I64,
    /// Boolean (masks, comparison results).
    Bool,
}

impl DType {
    /// True for `F32` and `F64`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Bytes one element takes.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    /// The lowercase name used in messages and `Display` (`f32`, `f64`, `i64`, `bool`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
    impl Sealed for bool {}
}

/// A Rust type that can be stored in an [`Array`](crate::Array): `f32`, `f64`, `i64`, `bool`.
pub trait Element:
    sealed::Sealed + Copy + Send + Sync + fmt::Debug + PartialOrd + Default + 'static
{
    /// The runtime tag of this type.
    const DTYPE: DType;
    /// Lossy conversion to `f64` (`true` is 1).
    fn to_f64(self) -> f64;
    /// Conversion from `f64`: floats round, integers truncate toward zero, bools test `!= 0`.
    fn from_f64(v: f64) -> Self;
    #[doc(hidden)]
    fn slice(buffer: &Buffer) -> Option<&[Self]>;
    #[doc(hidden)]
    fn slice_mut(buffer: &mut Buffer) -> Option<&mut [Self]>;
    #[doc(hidden)]
    fn into_buffer(values: Vec<Self>) -> Buffer;
    /// Runs `f` on a scratch buffer of at least `n` elements kept per thread (a fused
    /// program's registers, an elementwise op's gathered tiles), so repeated runs allocate
    /// nothing.
    #[doc(hidden)]
    fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

/// Element types with arithmetic: `f32`, `f64`, `i64`.
pub trait Number:
    Element
    + num_traits::Num
    + num_traits::NumCast
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::Neg<Output = Self>
    + std::iter::Sum
{
    /// Smallest value (negative infinity for floats).
    fn lowest() -> Self;
    /// Largest value (positive infinity for floats).
    fn highest() -> Self;
    /// NaN test (always false for integers).
    fn is_nan_value(self) -> bool;
    /// `self + y` as the kernels compute it: integers wrap around in every build profile, as
    /// PyTorch's integer tensors do (Rust's `+` panics on overflow in a debug build and wraps in
    /// a release one); floats add. Likewise the five below.
    #[doc(hidden)]
    fn wrapping_add(self, y: Self) -> Self;
    /// `self - y` (see [`wrapping_add`](Number::wrapping_add)).
    #[doc(hidden)]
    fn wrapping_sub(self, y: Self) -> Self;
    /// `self * y` (see [`wrapping_add`](Number::wrapping_add)).
    #[doc(hidden)]
    fn wrapping_mul(self, y: Self) -> Self;
    /// `self / y`, truncating for integers; `i64::MIN / -1` is `i64::MIN` (the divisor 0 is
    /// refused before a kernel runs).
    #[doc(hidden)]
    fn wrapping_div(self, y: Self) -> Self;
    /// `self % y` (C's `fmod`); `i64::MIN % -1` is 0.
    #[doc(hidden)]
    fn wrapping_rem(self, y: Self) -> Self;
    /// `-self`; `-i64::MIN` is `i64::MIN`.
    #[doc(hidden)]
    fn wrapping_neg(self) -> Self;
}

/// Floating-point element types: `f32`, `f64`.
pub trait Float: Number + num_traits::Float + num_traits::FloatConst {
    /// `tanh`, vectorisable (see `math.rs`; `FMA` fuses its multiply-adds).
    #[doc(hidden)]
    fn tanh_kernel<const FMA: bool>(self) -> Self;
    /// The logistic function, accurate in both tails.
    #[doc(hidden)]
    fn sigmoid_kernel<const FMA: bool>(self) -> Self;
    /// `exp`, vectorisable (see `math.rs`; `FMA` fuses its multiply-adds).
    #[doc(hidden)]
    fn exp_kernel<const FMA: bool>(self) -> Self;
    /// The natural logarithm, vectorisable (see `math.rs`).
    #[doc(hidden)]
    fn log_kernel<const FMA: bool>(self) -> Self;
    /// `ln(1 + x)`, vectorisable (see `math.rs`).
    #[doc(hidden)]
    fn log1p_kernel<const FMA: bool>(self) -> Self;
    /// `e^x - 1`, vectorisable (see `math.rs`).
    #[doc(hidden)]
    fn expm1_kernel<const FMA: bool>(self) -> Self;
    /// `self^p` as C's `pow` defines it: vectorisable for f32 (see `math.rs`), libm's for f64.
    #[doc(hidden)]
    fn pow_kernel<const FMA: bool>(self, p: Self) -> Self;
    /// `self^(-1/2)` as C's `pow` defines it, vectorisable (see
    /// [`pow_neg_half`](crate::math::pow_neg_half)).
    #[doc(hidden)]
    fn pow_neg_half_kernel<const FMA: bool>(self) -> Self;
    /// `sinh`, vectorisable for f32 (see `math.rs`), libm's for f64; likewise the four below.
    #[doc(hidden)]
    fn sinh_kernel<const FMA: bool>(self) -> Self;
    /// `cosh`.
    #[doc(hidden)]
    fn cosh_kernel<const FMA: bool>(self) -> Self;
    /// `asin`.
    #[doc(hidden)]
    fn asin_kernel<const FMA: bool>(self) -> Self;
    /// `acos`.
    #[doc(hidden)]
    fn acos_kernel<const FMA: bool>(self) -> Self;
    /// `atan`.
    #[doc(hidden)]
    fn atan_kernel<const FMA: bool>(self) -> Self;
    /// `atan2(self, x)` as C's defines it.
    #[doc(hidden)]
    fn atan2_kernel<const FMA: bool>(self, x: Self) -> Self;
    /// `ln |Γ(x)|`.
    #[doc(hidden)]
    fn lgamma_kernel<const FMA: bool>(self) -> Self;
    /// The digamma function.
    #[doc(hidden)]
    fn digamma_kernel<const FMA: bool>(self) -> Self;
    /// `sin`, vectorisable up to [`TRIG_NEAR`](Float::TRIG_NEAR) (see `math.rs`), libm's past
    /// it; loops take [`trig_fast`](Float::trig_fast), which keeps the branch out of the loop.
    #[doc(hidden)]
    fn sin_kernel<const FMA: bool>(self) -> Self;
    /// `cos`, as [`sin_kernel`](Float::sin_kernel).
    #[doc(hidden)]
    fn cos_kernel<const FMA: bool>(self) -> Self;
    /// `tan`, as [`sin_kernel`](Float::sin_kernel).
    #[doc(hidden)]
    fn tan_kernel<const FMA: bool>(self) -> Self;
    /// `(sin, cos)`: [`sin_kernel`](Float::sin_kernel) and [`cos_kernel`](Float::cos_kernel)
    /// bit for bit, from one reduction for f32.
    #[doc(hidden)]
    fn sin_cos_kernel<const FMA: bool>(self) -> (Self, Self);
    /// The magnitude up to which `sin`, `cos` and `tan` are their branch-free forms (their
    /// argument reduction holds to there); beyond it libm's.
    #[doc(hidden)]
    const TRIG_NEAR: Self;
    /// `sin_kernel` (`COS`: `cos_kernel`) bit for bit where `|self|` is at most
    /// [`TRIG_NEAR`](Float::TRIG_NEAR), without the branch (a value the caller replaces
    /// beyond it).
    #[doc(hidden)]
    fn sin_or_cos_near<const FMA: bool, const COS: bool>(self) -> Self;
    /// `sin_cos_kernel` bit for bit where `|self|` is at most [`TRIG_NEAR`](Float::TRIG_NEAR),
    /// as [`sin_or_cos_near`](Float::sin_or_cos_near).
    #[doc(hidden)]
    fn sin_and_cos_near<const FMA: bool>(self) -> (Self, Self);
    /// gemm's matrix-product kernel for this type at the SIMD level in use (gemm's own pick
    /// for the CPU, or the capped level's kernels: see `gemm_paths.rs`).
    #[doc(hidden)]
    fn gemm_fn() -> GemmFn<Self>;
    /// The error function, vectorisable (see `math.rs`).
    #[doc(hidden)]
    fn erf_kernel<const FMA: bool>(self) -> Self;
    /// The inverse error function, vectorisable (see `math.rs`).
    #[doc(hidden)]
    fn erfinv_kernel<const FMA: bool>(self) -> Self;
    /// GELU, `x Φ(x)`, with `Φ` from `erfc` so it keeps its precision in the negative tail:
    /// vectorisable (see `math.rs`).
    #[doc(hidden)]
    fn gelu_kernel<const FMA: bool>(self) -> Self;
    /// GELU's gradient `grad (Φ(x) + x φ(x))` at `self`.
    #[doc(hidden)]
    fn gelu_backward_kernel<const FMA: bool>(self, grad: Self) -> Self;
    /// `dst[i] = exp_kernel(src[i] - shift)` (`src` `None`: `dst`'s own elements), and 0
    /// where the difference is below `floor` (`None`: never; at least `ln` of the smallest
    /// normal), on an explicit vector path where this type has one at the level in use (f32
    /// and f64 at AVX-512, see `exp512.rs`), bit for bit the element kernel's loop; `false`,
    /// having written nothing, where it has none.
    #[doc(hidden)]
    #[inline(always)]
    fn exp_shifted_fast<const FMA: bool>(
        dst: &mut [Self],
        src: Option<&[Self]>,
        shift: Self,
        floor: Option<Self>,
    ) -> bool {
        let _ = (dst, src, shift, floor);
        false
    }
    /// `dst[i] = sigmoid_kernel(src[i])` on an explicit vector path, as
    /// [`exp_shifted_fast`](Float::exp_shifted_fast).
    #[doc(hidden)]
    #[inline(always)]
    fn sigmoid_fast<const FMA: bool>(dst: &mut [Self], src: &[Self]) -> bool {
        let _ = (dst, src);
        false
    }
    /// `dst[i] = log_kernel(src[i])` on an explicit vector path, as
    /// [`exp_shifted_fast`](Float::exp_shifted_fast).
    #[doc(hidden)]
    #[inline(always)]
    fn log_fast<const FMA: bool>(dst: &mut [Self], src: &[Self]) -> bool {
        let _ = (dst, src);
        false
    }
    /// `dst[i] = f(src[i])` by runs that skip the costly form of a branch-free kernel where
    /// no argument needs it ([`near_by_runs`](crate::elementwise::kernels::near_by_runs):
    /// f64's `erf` and GELU, f32's `erfinv`), bit for bit the element kernel's; `false`,
    /// having written nothing, where `f` has no such form.
    #[doc(hidden)]
    #[inline(always)]
    fn map_by_runs<const FMA: bool>(f: crate::MapFn, dst: &mut [Self], src: &[Self]) -> bool {
        let _ = (f, dst, src);
        false
    }
    /// [`map_by_runs`](Float::map_by_runs) for a two-input function (f64's GELU gradient,
    /// by the runs of `x`).
    #[doc(hidden)]
    #[inline(always)]
    fn zip_by_runs<const FMA: bool>(
        f: crate::ZipFn,
        dst: &mut [Self],
        x: &[Self],
        y: &[Self],
    ) -> bool {
        let _ = (f, dst, x, y);
        false
    }
    /// `dst[i] = sin_kernel(src[i])` (or `cos_kernel`, `tan_kernel`, as `f` says): the
    /// branch-free form over the run, then libm's beyond [`TRIG_NEAR`](Float::TRIG_NEAR), so
    /// the loop vectorises; bit for bit the element kernel's.
    #[doc(hidden)]
    fn trig_fast<const FMA: bool>(f: crate::math::Trig, dst: &mut [Self], src: &[Self]);
    /// `dst[i] = lgamma_kernel(src[i])` (`digamma`: `digamma_kernel`) in a form of its own
    /// (f32's skips the reflection for runs that need none), bit for bit the element
    /// kernel's; `false`, having written nothing, where there is none.
    #[doc(hidden)]
    #[inline(always)]
    fn lgamma_or_digamma_fast<const FMA: bool>(
        digamma: bool,
        dst: &mut [Self],
        src: &[Self],
    ) -> bool {
        let _ = (digamma, dst, src);
        false
    }
}

/// `Float::exp_shifted_fast` for `$t` on `exp512.rs`'s `$kernel` at AVX-512, below which
/// (`$gone`) the element kernel's exponential is 0 already.
macro_rules! explicit_exp {
    ($t:ty, $kernel:ident, $gone:expr) => {
        #[inline(always)]
        fn exp_shifted_fast<const FMA: bool>(
            dst: &mut [$t],
            src: Option<&[$t]>,
            shift: $t,
            floor: Option<$t>,
        ) -> bool {
            #[cfg(target_arch = "x86_64")]
            if explicit_avx512::<FMA>() {
                let floor = floor.unwrap_or($gone).max($gone);
                // SAFETY: the level is AVX-512 only where the CPU has AVX-512F.
                unsafe { crate::exp512::$kernel(dst, src, shift, floor) };
                return true;
            }
            let _ = (dst, src, shift, floor);
            false
        }
    };
}

/// A `Float` slice hook `$hook` for f32 on `exp512.rs`'s `$kernel` at AVX-512.
macro_rules! explicit_map {
    ($hook:ident, $kernel:ident) => {
        #[inline(always)]
        fn $hook<const FMA: bool>(dst: &mut [f32], src: &[f32]) -> bool {
            #[cfg(target_arch = "x86_64")]
            if explicit_avx512::<FMA>() {
                // SAFETY: the level is AVX-512 only where the CPU has AVX-512F.
                unsafe { crate::exp512::$kernel(dst, src) };
                return true;
            }
            let _ = (dst, src);
            false
        }
    };
}

/// Whether the explicit AVX-512 loops of `exp512.rs` stand in for the vectorised kernels: at
/// that level (which has FMA, so `FMA` is then set).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn explicit_avx512<const FMA: bool>() -> bool {
    FMA && crate::math::simd_level() == crate::SimdLevel::Avx512
}

/// The signature of gemm's kernels: `m, n, k`, then destination, left and right operands
/// (pointer, column stride, row stride; `read_dst` before the left one), `alpha`, `beta`,
/// three conjugation flags and the parallelism.
#[doc(hidden)]
pub type GemmFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    *mut T,
    isize,
    isize,
    bool,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    T,
    bool,
    bool,
    bool,
    gemm_common::Parallelism,
);

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn slice(buffer: &Buffer) -> Option<&[Self]> {
                match buffer {
                    Buffer::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(buffer: &mut Buffer) -> Option<&mut [Self]> {
                match buffer {
                    Buffer::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn into_buffer(values: Vec<Self>) -> Buffer {
                Buffer::$variant(values)
            }
            fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                thread_local!(static SCRATCH: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) });
                scratch(&SCRATCH, n, f)
            }
        }
    };
}
element!(f32, F32);
element!(f64, F64);
element!(i64, I64);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
    fn slice(buffer: &Buffer) -> Option<&[Self]> {
        match buffer {
            Buffer::Bool(v) => Some(v),
            _ => None,
        }
    }
    fn slice_mut(buffer: &mut Buffer) -> Option<&mut [Self]> {
        match buffer {
            Buffer::Bool(v) => Some(v),
            _ => None,
        }
    }
    fn into_buffer(values: Vec<Self>) -> Buffer {
        Buffer::Bool(values)
    }
    fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
        thread_local!(static SCRATCH: std::cell::RefCell<Vec<bool>> = const { std::cell::RefCell::new(Vec::new()) });
        scratch(&SCRATCH, n, f)
    }
}

macro_rules! float_number {
    ($t:ty) => {
        impl Number for $t {
            fn lowest() -> Self {
                <$t>::NEG_INFINITY
            }
            fn highest() -> Self {
                <$t>::INFINITY
            }
            fn is_nan_value(self) -> bool {
                self.is_nan()
            }
            #[inline(always)]
            fn wrapping_add(self, y: Self) -> Self {
                self + y
            }
            #[inline(always)]
            fn wrapping_sub(self, y: Self) -> Self {
                self - y
            }
            #[inline(always)]
            fn wrapping_mul(self, y: Self) -> Self {
                self * y
            }
            #[inline(always)]
            fn wrapping_div(self, y: Self) -> Self {
                self / y
            }
            #[inline(always)]
            fn wrapping_rem(self, y: Self) -> Self {
                self % y
            }
            #[inline(always)]
            fn wrapping_neg(self) -> Self {
                -self
            }
        }
    };
}
float_number!(f32);
float_number!(f64);

impl Float for f32 {
    #[inline(always)]
    fn tanh_kernel<const FMA: bool>(self) -> Self {
        crate::math::tanh_f32::<FMA>(self)
    }
    #[inline(always)]
    fn sigmoid_kernel<const FMA: bool>(self) -> Self {
        // exp keeps the relative accuracy of the far tails (σ(-20) = 2e-9), which
        // log-likelihoods need; 1 + tanh(x/2) would round them to 0. With e = e^-|x|,
        // σ(|x|) = 1 / (1 + e) and σ(-|x|) = e / (1 + e); selected without a branch.
        let e = crate::math::exp_f32::<FMA>(-self.abs());
        let s = 1.0 / (1.0 + e);
        if self >= 0.0 || self.is_nan() {
            s
        } else {
            e * s
        }
    }
    #[inline(always)]
    fn exp_kernel<const FMA: bool>(self) -> Self {
        crate::math::exp_f32::<FMA>(self)
    }
    explicit_exp!(f32, exp_shifted, -104.0);
    explicit_map!(sigmoid_fast, sigmoid);
    explicit_map!(log_fast, log);
    #[inline(always)]
    fn log_kernel<const FMA: bool>(self) -> Self {
        crate::math::log_f32::<FMA>(self)
    }
    #[inline(always)]
    fn log1p_kernel<const FMA: bool>(self) -> Self {
        crate::math::log1p_kahan::<f32, FMA>(self)
    }
    #[inline(always)]
    fn expm1_kernel<const FMA: bool>(self) -> Self {
        crate::math::expm1_f32::<FMA>(self)
    }
    #[inline(always)]
    fn pow_kernel<const FMA: bool>(self, p: Self) -> Self {
        crate::math::pow_f32::<FMA>(self, p)
    }
    #[inline(always)]
    fn pow_neg_half_kernel<const FMA: bool>(self) -> Self {
        if FMA {
            crate::math::pow_neg_half(self)
        } else {
            // f64's reciprocal of f64's root (within 1.5 ulp of f64), rounded once to f32
            let y = (1.0 / ((self as f64).sqrt() + 0.0)) as f32;
            if self == f32::NEG_INFINITY {
                0.0
            } else {
                y
            }
        }
    }
    #[inline(always)]
    fn sinh_kernel<const FMA: bool>(self) -> Self {
        crate::math::sinh_f32::<FMA>(self)
    }
    #[inline(always)]
    fn cosh_kernel<const FMA: bool>(self) -> Self {
        crate::math::cosh_f32::<FMA>(self)
    }
    #[inline(always)]
    fn asin_kernel<const FMA: bool>(self) -> Self {
        crate::math::asin_or_acos_f32::<FMA, false>(self)
    }
    #[inline(always)]
    fn acos_kernel<const FMA: bool>(self) -> Self {
        crate::math::asin_or_acos_f32::<FMA, true>(self)
    }
    #[inline(always)]
    fn atan_kernel<const FMA: bool>(self) -> Self {
        crate::math::atan_f32::<FMA>(self)
    }
    #[inline(always)]
    fn atan2_kernel<const FMA: bool>(self, x: Self) -> Self {
        crate::math::atan2_f32::<FMA>(self, x)
    }
    #[inline(always)]
    fn lgamma_kernel<const FMA: bool>(self) -> Self {
        crate::math::lgamma_or_digamma_f32::<FMA, false>(self)
    }
    #[inline(always)]
    fn digamma_kernel<const FMA: bool>(self) -> Self {
        crate::math::lgamma_or_digamma_f32::<FMA, true>(self)
    }
    // (closures marked to inline for function items, as in f64's `map_by_runs`)
    #[allow(clippy::redundant_closure)]
    #[inline(always)]
    fn map_by_runs<const FMA: bool>(f: crate::MapFn, dst: &mut [Self], src: &[Self]) -> bool {
        if f != crate::MapFn::Erfinv {
            return false;
        }
        crate::elementwise::kernels::near_by_runs(
            dst,
            src,
            crate::math::ERFINV_F32_NEAR_END,
            #[inline(always)]
            |y| crate::math::erfinv_f32_near::<FMA>(y),
            #[inline(always)]
            |y| crate::math::erfinv_f32::<FMA>(y),
        );
        true
    }
    #[inline(always)]
    fn lgamma_or_digamma_fast<const FMA: bool>(
        digamma: bool,
        dst: &mut [Self],
        src: &[Self],
    ) -> bool {
        if digamma {
            crate::math::lgamma_or_digamma_f32_slice::<FMA, true>(dst, src)
        } else {
            crate::math::lgamma_or_digamma_f32_slice::<FMA, false>(dst, src)
        }
        true
    }
    #[inline(always)]
    fn sin_kernel<const FMA: bool>(self) -> Self {
        crate::math::sin_f32::<FMA>(self)
    }
    #[inline(always)]
    fn cos_kernel<const FMA: bool>(self) -> Self {
        crate::math::cos_f32::<FMA>(self)
    }
    #[inline(always)]
    fn tan_kernel<const FMA: bool>(self) -> Self {
        crate::math::tan_f32::<FMA>(self)
    }
    #[inline(always)]
    fn sin_cos_kernel<const FMA: bool>(self) -> (Self, Self) {
        crate::math::sin_and_cos_f32::<FMA>(self)
    }
    const TRIG_NEAR: f32 = crate::math::SIN_COS_F32_LIMIT;
    #[inline(always)]
    fn sin_or_cos_near<const FMA: bool, const COS: bool>(self) -> Self {
        crate::math::sin_or_cos_f32_near::<FMA, COS>(self)
    }
    #[inline(always)]
    fn sin_and_cos_near<const FMA: bool>(self) -> (Self, Self) {
        crate::math::sin_and_cos_f32_near::<FMA>(self)
    }
    #[inline(always)]
    fn trig_fast<const FMA: bool>(f: crate::math::Trig, dst: &mut [Self], src: &[Self]) {
        crate::math::trig_f32_slice::<FMA>(f, dst, src)
    }
    #[inline(always)]
    fn gemm_fn() -> GemmFn<f32> {
        crate::gemm_paths::f32_kernels()
    }
    #[inline(always)]
    fn erf_kernel<const FMA: bool>(self) -> Self {
        crate::math::erf_f32::<FMA>(self)
    }
    #[inline(always)]
    fn erfinv_kernel<const FMA: bool>(self) -> Self {
        crate::math::erfinv_f32::<FMA>(self)
    }
    #[inline(always)]
    fn gelu_kernel<const FMA: bool>(self) -> Self {
        crate::math::gelu_f32::<FMA>(self)
    }
    #[inline(always)]
    fn gelu_backward_kernel<const FMA: bool>(self, grad: Self) -> Self {
        crate::math::gelu_backward_f32::<FMA>(self, grad)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn tanh_kernel<const FMA: bool>(self) -> Self {
        crate::math::tanh_f64::<FMA>(self)
    }
    #[inline(always)]
    fn sigmoid_kernel<const FMA: bool>(self) -> Self {
        // as f32's: σ(|x|) = 1 / (1 + e), σ(-|x|) = e / (1 + e) with e = e^-|x|
        let e = crate::math::exp_f64::<FMA>(-self.abs());
        let s = 1.0 / (1.0 + e);
        if self >= 0.0 || self.is_nan() {
            s
        } else {
            e * s
        }
    }
    #[inline(always)]
    fn exp_kernel<const FMA: bool>(self) -> Self {
        crate::math::exp_f64::<FMA>(self)
    }
    explicit_exp!(f64, exp_shifted_f64, -746.0);
    #[inline(always)]
    fn log_kernel<const FMA: bool>(self) -> Self {
        crate::math::log_f64::<FMA>(self)
    }
    #[inline(always)]
    fn log1p_kernel<const FMA: bool>(self) -> Self {
        crate::math::log1p_kahan::<f64, FMA>(self)
    }
    #[inline(always)]
    fn expm1_kernel<const FMA: bool>(self) -> Self {
        crate::math::expm1_f64::<FMA>(self)
    }
    #[inline(always)]
    fn pow_kernel<const FMA: bool>(self, p: Self) -> Self {
        self.powf(p)
    }
    #[inline(always)]
    fn pow_neg_half_kernel<const FMA: bool>(self) -> Self {
        if FMA {
            crate::math::pow_neg_half(self)
        } else {
            // the reciprocal of the root, unrefined (two roundings: within 1.5 ulp)
            let y = 1.0 / (self.sqrt() + 0.0);
            if self == f64::NEG_INFINITY {
                0.0
            } else {
                y
            }
        }
    }
    #[inline(always)]
    fn sinh_kernel<const FMA: bool>(self) -> Self {
        crate::math::sinh_f64::<FMA>(self)
    }
    #[inline(always)]
    fn cosh_kernel<const FMA: bool>(self) -> Self {
        crate::math::cosh_f64::<FMA>(self)
    }
    #[inline(always)]
    fn asin_kernel<const FMA: bool>(self) -> Self {
        crate::math::asin_or_acos_f64::<FMA, false>(self)
    }
    #[inline(always)]
    fn acos_kernel<const FMA: bool>(self) -> Self {
        crate::math::asin_or_acos_f64::<FMA, true>(self)
    }
    #[inline(always)]
    fn atan_kernel<const FMA: bool>(self) -> Self {
        crate::math::atan_f64::<FMA>(self)
    }
    #[inline(always)]
    fn atan2_kernel<const FMA: bool>(self, x: Self) -> Self {
        crate::math::atan2_f64::<FMA>(self, x)
    }
    #[inline(always)]
    fn lgamma_kernel<const FMA: bool>(self) -> Self {
        crate::special::lgamma(self)
    }
    #[inline(always)]
    fn digamma_kernel<const FMA: bool>(self) -> Self {
        crate::special::digamma(self)
    }
    #[inline(always)]
    fn sin_kernel<const FMA: bool>(self) -> Self {
        crate::math::sin_f64::<FMA>(self)
    }
    #[inline(always)]
    fn cos_kernel<const FMA: bool>(self) -> Self {
        crate::math::cos_f64::<FMA>(self)
    }
    #[inline(always)]
    fn tan_kernel<const FMA: bool>(self) -> Self {
        crate::math::tan_f64::<FMA>(self)
    }
    #[inline(always)]
    fn sin_cos_kernel<const FMA: bool>(self) -> (Self, Self) {
        (
            crate::math::sin_f64::<FMA>(self),
            crate::math::cos_f64::<FMA>(self),
        )
    }
    const TRIG_NEAR: f64 = crate::math::SIN_COS_F64_LIMIT;
    #[inline(always)]
    fn sin_or_cos_near<const FMA: bool, const COS: bool>(self) -> Self {
        crate::math::sin_or_cos_f64_near::<FMA, COS>(self)
    }
    #[inline(always)]
    fn sin_and_cos_near<const FMA: bool>(self) -> (Self, Self) {
        (
            crate::math::sin_or_cos_f64_near::<FMA, false>(self),
            crate::math::sin_or_cos_f64_near::<FMA, true>(self),
        )
    }
    #[inline(always)]
    fn trig_fast<const FMA: bool>(f: crate::math::Trig, dst: &mut [Self], src: &[Self]) {
        crate::math::trig_f64_slice::<FMA>(f, dst, src)
    }
    #[inline(always)]
    fn gemm_fn() -> GemmFn<f64> {
        crate::gemm_paths::f64_kernels()
    }
    #[inline(always)]
    fn erf_kernel<const FMA: bool>(self) -> Self {
        crate::math::erf_f64::<FMA>(self)
    }
    // Closures marked to inline stand for function items here: a function item passed as
    // `impl Fn` was called through a shim the compiler kept, without the caller's vector
    // features.
    #[allow(clippy::redundant_closure)]
    #[inline(always)]
    fn map_by_runs<const FMA: bool>(f: crate::MapFn, dst: &mut [Self], src: &[Self]) -> bool {
        use crate::elementwise::kernels::near_by_runs;
        use crate::math::{erf_near_f64, ERF_NEAR_END};
        match f {
            crate::MapFn::Erf => near_by_runs(
                dst,
                src,
                ERF_NEAR_END,
                #[inline(always)]
                |x| erf_near_f64::<FMA>(x),
                #[inline(always)]
                |x| crate::math::erf_f64::<FMA>(x),
            ),
            crate::MapFn::Gelu => near_by_runs(
                dst,
                src,
                GELU_NEAR_END,
                #[inline(always)]
                |x| x * normal_cdf_near_f64::<FMA>(x),
                #[inline(always)]
                |x| x.gelu_kernel::<FMA>(),
            ),
            _ => return false,
        }
        true
    }
    // (closures marked to inline stand for function items, as in `map_by_runs`)
    #[allow(clippy::redundant_closure)]
    #[inline(always)]
    fn zip_by_runs<const FMA: bool>(
        f: crate::ZipFn,
        dst: &mut [Self],
        x: &[Self],
        y: &[Self],
    ) -> bool {
        if f != crate::ZipFn::GeluBackward {
            return false;
        }
        crate::elementwise::kernels::near_by_runs_zip(
            dst,
            x,
            y,
            GELU_NEAR_END,
            #[inline(always)]
            |x, g| gelu_backward_f64::<FMA, true>(x, g),
            #[inline(always)]
            |x, g| gelu_backward_f64::<FMA, false>(x, g),
        );
        true
    }
    #[inline(always)]
    fn erfinv_kernel<const FMA: bool>(self) -> Self {
        crate::math::erfinv_f64::<FMA>(self)
    }
    #[inline(always)]
    fn gelu_kernel<const FMA: bool>(self) -> Self {
        // past -40 the product is -0 (where -∞ · 0 would be NaN)
        (if self < -40.0 { -40.0 } else { self }) * normal_cdf_f64::<FMA>(self)
    }
    #[inline(always)]
    fn gelu_backward_kernel<const FMA: bool>(self, grad: Self) -> Self {
        gelu_backward_f64::<FMA, false>(self, grad)
    }
}

/// `Φ(x)`, the standard normal distribution, as `erfc(-x/√2)/2` (`erfc` keeps the negative
/// tail where `(1 + erf(x/√2))/2` cancels).
#[inline(always)]
fn normal_cdf_f64<const FMA: bool>(x: f64) -> f64 {
    0.5 * crate::math::erfc_f64::<FMA>(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// Below this magnitude `x/√2` is below 2.5 (at most 2.475 rounded), where
/// [`normal_cdf_near_f64`] is [`normal_cdf_f64`].
const GELU_NEAR_END: f64 = 3.5;

/// [`normal_cdf_f64`] for `|x|` below [`GELU_NEAR_END`], bit for bit: `erfc`'s form there
/// alone.
#[inline(always)]
fn normal_cdf_near_f64<const FMA: bool>(x: f64) -> f64 {
    0.5 * crate::math::erfc_near_f64::<FMA>(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// GELU's gradient for f64, `grad (Φ(x) + x φ(x))`; `NEAR`: for `|x|` below
/// [`GELU_NEAR_END`] only, the same bits there.
#[inline(always)]
fn gelu_backward_f64<const FMA: bool, const NEAR: bool>(x: f64, grad: f64) -> f64 {
    // the density's term is 0 past ±40 (where ∞ · 0 would be NaN); NaN stays NaN
    let c = x.clamp(-40.0, 40.0);
    let density = crate::math::exp_f64::<FMA>(-0.5 * c * c) * crate::fused::INV_SQRT_2PI;
    let cdf = if NEAR {
        normal_cdf_near_f64::<FMA>(x)
    } else {
        normal_cdf_f64::<FMA>(x)
    };
    grad * (cdf + c * density)
}

/// [`Element::with_scratch`] on a thread's buffer (a fresh one if it is in use).
fn scratch<T: Copy + Default + 'static, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<Vec<T>>>,
    n: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut f = Some(f);
    let done = key.with(|cell| {
        let mut buffer = cell.try_borrow_mut().ok()?;
        if buffer.len() < n {
            buffer.resize(n, T::default());
        }
        Some((f.take().expect("called once"))(&mut buffer[..n]))
    });
    match done {
        Some(r) => r,
        None => (f.take().expect("not called"))(&mut vec![T::default(); n]),
    }
}

impl Number for i64 {
    fn lowest() -> Self {
        i64::MIN
    }
    fn highest() -> Self {
        i64::MAX
    }
    fn is_nan_value(self) -> bool {
        false
    }
    #[inline(always)]
    fn wrapping_add(self, y: Self) -> Self {
        i64::wrapping_add(self, y)
    }
    #[inline(always)]
    fn wrapping_sub(self, y: Self) -> Self {
        i64::wrapping_sub(self, y)
    }
    #[inline(always)]
    fn wrapping_mul(self, y: Self) -> Self {
        i64::wrapping_mul(self, y)
    }
    #[inline(always)]
    fn wrapping_div(self, y: Self) -> Self {
        i64::wrapping_div(self, y)
    }
    #[inline(always)]
    fn wrapping_rem(self, y: Self) -> Self {
        i64::wrapping_rem(self, y)
    }
    #[inline(always)]
    fn wrapping_neg(self) -> Self {
        i64::wrapping_neg(self)
    }
}

/// Runs `$body` with `$T` bound to the element type of `$dtype`, for float dtypes only;
/// other dtypes panic naming `$op`.
macro_rules! dispatch_float {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            other => $crate::error::dtype_fail($op, other, "a float dtype (f32 or f64)"),
        }
    };
}

/// Like [`dispatch_float`] but also accepts `i64`.
macro_rules! dispatch_number {
    ($dtype:expr, $op:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            other => $crate::error::dtype_fail($op, other, "a numeric dtype (f32, f64 or i64)"),
        }
    };
}

/// Runs `$body` with `$T` bound to the element type of `$dtype`, for every dtype.
macro_rules! dispatch_any {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
            $crate::DType::I64 => {
                type $T = i64;
                $body
            }
            $crate::DType::Bool => {
                type $T = bool;
                $body
            }
        }
    };
}

pub(crate) use {dispatch_any, dispatch_float, dispatch_number};
