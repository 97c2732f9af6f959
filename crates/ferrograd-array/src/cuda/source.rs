//! CUDA C for the device kernels, generated from the op tables the CPU loops use
//! ([`MapFn`], [`ZipFn`]), and its compilation by NVRTC.
//!
//! Each kernel is one `extern "C"` function in a source of its own, named after its op and
//! element types (`map_exp_f32`, `zip_add_f64`, `cast_i64_f32`, `sum_f32`), so the cache of
//! compiled kernels is keyed by name. Parameters that vary between calls (a clamp's bounds,
//! a power's exponent, a scalar operand) are kernel arguments, not baked into the source.
//! Every kernel reads its inputs through a [`Layout`] (any strides, broadcasting included)
//! and writes a contiguous output, grid-stride.
//!
//! The element functions follow the CPU's definitions exactly where those are not a
//! library's rounding: NaN handling of `maximum`/`minimum`/`relu`/`sign`/`clamp`, rounding
//! halves to even, `remainder` with the divisor's sign, casts that saturate (NaN to 0) as
//! Rust's `as` does. Transcendental functions are CUDA's (within a few ulps of the CPU's).

use std::f64::consts::FRAC_1_SQRT_2;

use cudarc::driver::DeviceRepr;

use crate::fused::{MapFn, ZipFn, INV_SQRT_2PI};
use crate::{DType, DeviceError};

/// The most dims a kernel's [`Layout`] takes (after merging dims that are contiguous in
/// each other).
pub(crate) const MAX_DIMS: usize = 8;

/// How a kernel finds element `i` (row-major over `shape`) of an operand: `ndim < 0` means
/// contiguous from `offset`. Mirrors the `Layout` struct of [`PRELUDE`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) ndim: i64,
    pub(crate) offset: i64,
    pub(crate) shape: [i64; MAX_DIMS],
    pub(crate) strides: [i64; MAX_DIMS],
}

// SAFETY: `Layout` is `repr(C)` plain integers, laid out as the C struct of `PRELUDE`.
unsafe impl DeviceRepr for Layout {}

/// Definitions every kernel source starts with.
const PRELUDE: &str = r#"
struct Layout { long long ndim; long long offset; long long shape[8]; long long strides[8]; };

__device__ __forceinline__ long long fg_at(const Layout& l, long long i) {
    if (l.ndim < 0) return l.offset + i;
    long long off = l.offset;
    for (int d = (int)l.ndim - 1; d >= 0; --d) {
        long long s = l.shape[d];
        off += (i % s) * l.strides[d];
        i /= s;
    }
    return off;
}

template <typename T> __device__ __forceinline__ T fg_powi(T x, int n) {
    unsigned int m = n < 0 ? 0u - (unsigned int)n : (unsigned int)n;
    T r = (T)1;
    while (m) {
        if (m & 1u) r *= x;
        x *= x;
        m >>= 1;
    }
    return n < 0 ? (T)1 / r : r;
}

template <typename T> __device__ __forceinline__ T fg_clamp(T x, int flags, T lo, T hi) {
    if ((flags & 1) && x < lo) x = lo;
    if ((flags & 2) && x > hi) x = hi;
    return x;
}

// Arithmetic as the CPU's kernels do it: floats by the operators; i64 wraps around on
// overflow (on unsigned values, where C++ defines it), and i64's MIN / -1 is MIN, MIN % -1 0.
template <typename T> __device__ __forceinline__ T fg_add(T a, T b) { return a + b; }
template <typename T> __device__ __forceinline__ T fg_sub(T a, T b) { return a - b; }
template <typename T> __device__ __forceinline__ T fg_mul(T a, T b) { return a * b; }
template <typename T> __device__ __forceinline__ T fg_div(T a, T b) { return a / b; }
template <typename T> __device__ __forceinline__ T fg_neg(T a) { return -a; }
typedef unsigned long long fg_u64;
template <> __device__ __forceinline__ long long fg_add(long long a, long long b) {
    return (long long)((fg_u64)a + (fg_u64)b);
}
template <> __device__ __forceinline__ long long fg_sub(long long a, long long b) {
    return (long long)((fg_u64)a - (fg_u64)b);
}
template <> __device__ __forceinline__ long long fg_mul(long long a, long long b) {
    return (long long)((fg_u64)a * (fg_u64)b);
}
template <> __device__ __forceinline__ long long fg_neg(long long a) {
    return (long long)(0ull - (fg_u64)a);
}
template <> __device__ __forceinline__ long long fg_div(long long a, long long b) {
    return b == -1 ? fg_neg(a) : a / b;
}
__device__ __forceinline__ long long fg_irem(long long a, long long b) {
    return b == -1 ? 0 : a % b;
}

__device__ __forceinline__ long long fg_to_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return 9223372036854775807LL;
    if (v <= -9223372036854775808.0) return (-9223372036854775807LL - 1LL);
    return (long long)v;
}
"#;

/// `digamma` and `polygamma` in double, as the CPU's `special.rs` computes them.
const SPECIAL: &str = r#"
__device__ double fg_digamma(double x) {
    const double PI = 3.141592653589793238462643383279502884;
    if (x != x || x == -1.0 / 0.0) return 0.0 / 0.0;
    if (x == 0.0) return signbit(x) ? 1.0 / 0.0 : -1.0 / 0.0;
    double reflect = 0.0;
    if (x < 0.0) {
        if (x == floor(x)) return 0.0 / 0.0;
        reflect = -PI / tan(PI * x);
        x = 1.0 - x;
    }
    double shift = 0.0;
    while (x < 10.0) { shift -= 1.0 / x; x += 1.0; }
    double inv2 = 1.0 / (x * x);
    double series = inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0
        - inv2 * (1.0 / 240.0 - inv2 * (1.0 / 132.0 - inv2 * 691.0 / 32760.0)))));
    return shift + log(x) - 0.5 / x - series + reflect;
}

__device__ double fg_hurwitz_zeta(double s, double q) {
    const double FACTORS[12] = {12.0, -720.0, 30240.0, -1209600.0, 47900160.0,
        -1.8924375803183792e9, 7.47242496e10, -2.950130727918164e12, 1.1646782814350067e14,
        -4.597978722407473e15, 1.8152105401943547e17, -7.166165256175667e18};
    if (q <= 0.0 && q == floor(q)) return 1.0 / 0.0;
    double sum = pow(q, -s), a = q, term = 0.0;
    int i = 0;
    while (i < 9 || a <= 9.0) {
        i += 1; a += 1.0;
        term = pow(a, -s);
        sum += term;
        if (fabs(term / sum) < 2.220446049250313e-16) return sum;
    }
    double w = a;
    sum += term * w / (s - 1.0);
    sum -= 0.5 * term;
    double rising = 1.0, k = 0.0;
    for (int j = 0; j < 12; ++j) {
        rising *= s + k;
        term /= w;
        double t = rising * term / FACTORS[j];
        sum += t;
        if (fabs(t / sum) < 2.220446049250313e-16) break;
        k += 1.0;
        rising *= s + k;
        term /= w;
        k += 1.0;
    }
    return sum;
}

__device__ double fg_polygamma(int n, double x) {
    if (n == 0) return fg_digamma(x);
    if (x != x) return x;
    if (x < 0.0 && x != floor(x) && n <= 32) {
        // reflected, as the CPU's polygamma (special.rs)
        const double PI = 3.141592653589793;
        double r = x - round(x);
        double c = 1.0 / tan(PI * r);
        double p[34], next[34];
        for (int j = 0; j < 34; ++j) p[j] = 0.0;
        p[1] = 1.0;
        for (int k = 0; k < n; ++k) {
            for (int j = 0; j < 34; ++j) next[j] = 0.0;
            for (int j = 0; j <= k; ++j) {
                double d = (double)(j + 1) * p[j + 1];
                next[j] -= d;
                next[j + 2] -= d;
            }
            for (int j = 0; j < 34; ++j) p[j] = next[j];
        }
        double value = 0.0;
        for (int j = n + 1; j >= 0; --j) value = value * c + p[j];
        double sign = (n % 2 == 0) ? 1.0 : -1.0;
        double factorial = 1.0;
        for (int j = 2; j <= n; ++j) factorial *= (double)j;
        double fsign = (n % 2 == 1) ? 1.0 : -1.0;
        double pi_power = PI;
        for (int j = 0; j < n; ++j) pi_power *= PI;
        return sign * fsign * factorial * fg_hurwitz_zeta((double)n + 1.0, 1.0 - x)
            - pi_power * value;
    }
    double factorial = 1.0;
    for (int j = 2; j <= n; ++j) factorial *= (double)j;
    double sign = (n % 2 == 1) ? 1.0 : -1.0;
    return sign * factorial * fg_hurwitz_zeta((double)n + 1.0, x);
}
"#;

/// The C type of a dtype.
pub(crate) fn c_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I64 => "long long",
        DType::Bool => "bool",
    }
}

/// The short name in kernel names.
pub(crate) fn short(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::I64 => "i64",
        DType::Bool => "bool",
    }
}

/// A math library function for the float type: `expf` for f32, `exp` for f64.
fn math(name: &str, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("{name}f"),
        _ => name.to_string(),
    }
}

/// A lower-case name for a function of the table (its `Debug` name).
fn fn_name(debug: &str) -> String {
    let head = debug.split('(').next().unwrap_or(debug);
    let mut out = String::new();
    for (i, c) in head.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The C expression of `f` at `v` in `dtype` (`p0`, `p1`, `flags`: the kernel's parameter
/// arguments), `None` where the function is not defined for the dtype.
pub(crate) fn map_expr(f: MapFn, dtype: DType) -> Option<String> {
    let t = c_type(dtype);
    let float = dtype.is_float();
    if dtype == DType::Bool || !float && !f.is_number() {
        return None;
    }
    let call = |name: &str| format!("{}(v)", math(name, dtype));
    Some(match f {
        MapFn::Neg => "fg_neg(v)".into(),
        MapFn::Abs => "(v < 0 ? fg_neg(v) : v)".into(),
        MapFn::Sign => format!("(v > 0 ? ({t})1 : (v < 0 ? ({t})-1 : v))"),
        MapFn::Relu => format!("(v < 0 ? ({t})0 : v)"),
        MapFn::Clamp(..) => format!("fg_clamp<{t}>(v, flags, ({t})p0, ({t})p1)"),
        MapFn::Identity => "v".into(),
        MapFn::Exp => call("exp"),
        MapFn::Log => call("log"),
        MapFn::Log1p => call("log1p"),
        MapFn::Expm1 => call("expm1"),
        MapFn::Sin => call("sin"),
        MapFn::Cos => call("cos"),
        MapFn::Tan => call("tan"),
        MapFn::Sinh => call("sinh"),
        MapFn::Cosh => call("cosh"),
        MapFn::Asin => call("asin"),
        MapFn::Acos => call("acos"),
        MapFn::Atan => call("atan"),
        MapFn::Erf => call("erf"),
        MapFn::Erfinv => call("erfinv"),
        // x Φ(x), Φ(x) = erfc(-x/√2)/2 (which keeps the negative tail, where 1 + erf(x/√2)
        // cancels); past -40 the product is -0 (where -∞ · 0 would be NaN)
        MapFn::Gelu => format!(
            "((v < ({t})-40 ? ({t})-40 : v) * ({t})0.5 * {}(v * ({t}){:?}))",
            math("erfc", dtype),
            -FRAC_1_SQRT_2
        ),
        MapFn::Lgamma => call("lgamma"),
        MapFn::Digamma => format!("({t})fg_digamma((double)v)"),
        MapFn::Polygamma(_) => format!("({t})fg_polygamma((int)p0, (double)v)"),
        MapFn::Trunc => call("trunc"),
        MapFn::Tanh => call("tanh"),
        MapFn::Sigmoid => format!("(({t})1 / (({t})1 + {}(-v)))", math("exp", dtype)),
        MapFn::Sqrt => call("sqrt"),
        MapFn::Rsqrt => format!("(({t})1 / {}(v))", math("sqrt", dtype)),
        MapFn::Floor => call("floor"),
        MapFn::Ceil => call("ceil"),
        MapFn::Round => call("rint"),
        MapFn::Reciprocal => format!("(({t})1 / v)"),
        MapFn::Square => "(v * v)".into(),
        MapFn::Powi(_) => format!("fg_powi<{t}>(v, (int)p0)"),
        MapFn::Powf(_) => format!("{}(v, ({t})p0)", math("pow", dtype)),
    })
}

/// The kernel parameters of `f`: `(p0, p1, flags)`.
pub(crate) fn map_params(f: MapFn) -> (f64, f64, i32) {
    match f {
        MapFn::Clamp(lo, hi) => (
            lo.unwrap_or(0.0),
            hi.unwrap_or(0.0),
            i32::from(lo.is_some()) | i32::from(hi.is_some()) << 1,
        ),
        MapFn::Polygamma(n) => (f64::from(n), 0.0, 0),
        MapFn::Powi(n) => (f64::from(n), 0.0, 0),
        MapFn::Powf(e) => (e, 0.0, 0),
        _ => (0.0, 0.0, 0),
    }
}

/// The name of `f`'s kernel from `dtype` to `out` (the two differ for a cast only).
pub(crate) fn map_name(f: MapFn, dtype: DType) -> String {
    format!("map_{}_{}", fn_name(&format!("{f:?}")), short(dtype))
}

/// The source of `f`'s kernel: `out[i] = f(x[at(i)])`.
pub(crate) fn map_source(f: MapFn, dtype: DType) -> Option<String> {
    let expr = map_expr(f, dtype)?;
    let t = c_type(dtype);
    let name = map_name(f, dtype);
    let special = if matches!(f, MapFn::Digamma | MapFn::Polygamma(_)) {
        SPECIAL
    } else {
        ""
    };
    Some(format!(
        "{PRELUDE}{special}
extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x, Layout lx,
        long long n, double p0, double p1, int flags) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        {t} v = x[fg_at(lx, i)];
        out[i] = {expr};
    }}
}}
"
    ))
}

/// The C expression of `f` at `(a, b)` in `dtype`, `None` where not defined for it.
pub(crate) fn zip_expr(f: ZipFn, dtype: DType) -> Option<String> {
    let t = c_type(dtype);
    if dtype == DType::Bool || !dtype.is_float() && !f.is_number() {
        return None;
    }
    let fmod = if dtype.is_float() {
        format!("{}(a, b)", math("fmod", dtype))
    } else {
        "fg_irem(a, b)".into()
    };
    let mask = |op: &str| format!("(a {op} b ? ({t})1 : ({t})0)");
    Some(match f {
        ZipFn::Add => "fg_add(a, b)".into(),
        ZipFn::Sub => "fg_sub(a, b)".into(),
        ZipFn::Mul => "fg_mul(a, b)".into(),
        ZipFn::Div => "fg_div(a, b)".into(),
        ZipFn::Maximum => "(a != a ? a : (b != b ? b : (b > a ? b : a)))".into(),
        ZipFn::Minimum => "(a != a ? a : (b != b ? b : (b < a ? b : a)))".into(),
        ZipFn::Pow => format!("{}(a, b)", math("pow", dtype)),
        ZipFn::Atan2 => format!("{}(a, b)", math("atan2", dtype)),
        ZipFn::Fmod => fmod,
        ZipFn::Remainder => format!(
            "([&]() {{ {t} r = {fmod}; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }})()"
        ),
        ZipFn::TanhBackward => format!("(b * (({t})1 - a * a))"),
        ZipFn::SigmoidBackward => format!("(b * a * (({t})1 - a))"),
        // b (Φ(a) + a φ(a)), the density's term 0 past ±40 (where ∞ · 0 would be NaN)
        ZipFn::GeluBackward => format!(
            "([&]() {{ {t} c = a < ({t})-40 ? ({t})-40 : (a > ({t})40 ? ({t})40 : a); \
             return b * (({t})0.5 * {erfc}(a * ({t}){m:?}) \
             + c * {exp}(c * c * ({t})-0.5) * ({t}){INV_SQRT_2PI:?}); }})()",
            erfc = math("erfc", dtype),
            exp = math("exp", dtype),
            m = -FRAC_1_SQRT_2,
        ),
        ZipFn::Eq => mask("=="),
        ZipFn::Ne => mask("!="),
        ZipFn::Lt => mask("<"),
        ZipFn::Le => mask("<="),
        ZipFn::Gt => mask(">"),
        ZipFn::Ge => mask(">="),
    })
}

/// A comparison as a C operator (`None` for the other functions).
pub(crate) fn compare_op(f: ZipFn) -> Option<&'static str> {
    Some(match f {
        ZipFn::Eq => "==",
        ZipFn::Ne => "!=",
        ZipFn::Lt => "<",
        ZipFn::Le => "<=",
        ZipFn::Gt => ">",
        ZipFn::Ge => ">=",
        _ => return None,
    })
}

/// The name of a two-input kernel; `compare`: the bool-valued form of a comparison.
pub(crate) fn zip_name(f: ZipFn, dtype: DType, compare: bool) -> String {
    let kind = if compare { "cmp" } else { "zip" };
    format!("{kind}_{}_{}", fn_name(&format!("{f:?}")), short(dtype))
}

/// How a scalar operand's bits (passed as a 64-bit integer) become a value of `dtype`.
fn from_bits(bits: &str, dtype: DType) -> String {
    match dtype {
        DType::F32 => format!("__uint_as_float((unsigned int){bits})"),
        DType::F64 => format!("__longlong_as_double((long long){bits})"),
        DType::I64 => format!("(long long){bits}"),
        DType::Bool => format!("({bits} != 0ull)"),
    }
}

/// The source of a two-input kernel: `out[i] = f(x[at(i)], y[at(i)])`, either operand
/// replaced by a scalar when its bit in `splat` is set (bit 0: `x`, bit 1: `y`); the
/// bool-valued form of a comparison when `compare`.
pub(crate) fn zip_source(f: ZipFn, dtype: DType, compare: bool) -> Option<String> {
    let (out_t, expr) = if compare {
        ("bool".to_string(), format!("(a {} b)", compare_op(f)?))
    } else {
        (c_type(dtype).to_string(), zip_expr(f, dtype)?)
    };
    let t = c_type(dtype);
    let name = zip_name(f, dtype, compare);
    let (sx, sy) = (from_bits("sx", dtype), from_bits("sy", dtype));
    Some(format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({out_t}* __restrict__ out, const {t}* __restrict__ x,
        Layout lx, const {t}* __restrict__ y, Layout ly, long long n, unsigned long long sx,
        unsigned long long sy, int splat) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        {t} a = (splat & 1) ? {sx} : x[fg_at(lx, i)];
        {t} b = (splat & 2) ? {sy} : y[fg_at(ly, i)];
        out[i] = {expr};
    }}
}}
"
    ))
}

/// The name of the cast kernel from `from` to `to`.
pub(crate) fn cast_name(from: DType, to: DType) -> String {
    format!("cast_{}_{}", short(from), short(to))
}

/// The source of the cast kernel: through `f64`, as the CPU's `to_dtype` converts (floats
/// round, integers truncate toward zero and saturate, NaN becomes 0, bools test `!= 0`).
pub(crate) fn cast_source(from: DType, to: DType) -> String {
    let (ft, tt) = (c_type(from), c_type(to));
    let wide = if from == DType::Bool {
        "(v ? 1.0 : 0.0)".to_string()
    } else {
        "(double)v".to_string()
    };
    let expr = match to {
        DType::F32 => format!("(float){wide}"),
        DType::F64 => wide,
        DType::I64 => format!("fg_to_i64({wide})"),
        DType::Bool => format!("({wide} != 0.0)"),
    };
    let name = cast_name(from, to);
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({tt}* __restrict__ out, const {ft}* __restrict__ x,
        Layout lx, long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        {ft} v = x[fg_at(lx, i)];
        out[i] = {expr};
    }}
}}
"
    )
}

/// What a reduction kernel computes per output element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reduce {
    /// The sum, times the kernel's `scale` (1, or 1/n for a mean).
    Sum,
    /// The largest element; NaN if any is NaN.
    Max,
    /// The smallest element; NaN if any is NaN.
    Min,
    /// The product (1 for none).
    Prod,
}

/// The name of a reduction kernel.
pub(crate) fn reduce_name(r: Reduce, dtype: DType) -> String {
    format!("reduce_{}_{}", fn_name(&format!("{r:?}")), short(dtype))
}

/// The threads of a reduction's block (a power of two).
pub(crate) const REDUCE_THREADS: u32 = 256;

/// The source of a reduction kernel: one block per output element `o` sums (or takes the
/// extreme of) `x[at(lo, o) + at(lr, j)]` over `j < n_red`, each thread a strided share,
/// then a tree in shared memory.
pub(crate) fn reduce_source(r: Reduce, dtype: DType) -> Option<String> {
    if dtype == DType::Bool {
        return None;
    }
    let t = c_type(dtype);
    let name = reduce_name(r, dtype);
    let (init, combine) = match r {
        Reduce::Sum => ("(T)0".to_string(), "fg_add(p, q)"),
        Reduce::Max => (
            if dtype.is_float() {
                "(T)(-1.0 / 0.0)".to_string()
            } else {
                "(-9223372036854775807LL - 1LL)".to_string()
            },
            "(p != p ? p : (q != q ? q : (q > p ? q : p)))",
        ),
        Reduce::Min => (
            if dtype.is_float() {
                "(T)(1.0 / 0.0)".to_string()
            } else {
                "9223372036854775807LL".to_string()
            },
            "(p != p ? p : (q != q ? q : (q < p ? q : p)))",
        ),
        Reduce::Prod => ("(T)1".to_string(), "fg_mul(p, q)"),
    };
    let threads = REDUCE_THREADS;
    Some(format!(
        "{PRELUDE}
typedef {t} T;
__device__ __forceinline__ T fg_combine(T p, T q) {{ return {combine}; }}
extern \"C\" __global__ void {name}(T* __restrict__ out, const T* __restrict__ x, Layout lo,
        Layout lr, long long n_out, long long n_red, double scale) {{
    __shared__ T buf[{threads}];
    for (long long o = blockIdx.x; o < n_out; o += gridDim.x) {{
        long long base = fg_at(lo, o);
        T acc = {init};
        for (long long j = threadIdx.x; j < n_red; j += blockDim.x) {{
            acc = fg_combine(acc, x[base + fg_at(lr, j)]);
        }}
        buf[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {{
            if (threadIdx.x < s) buf[threadIdx.x] = fg_combine(buf[threadIdx.x], buf[threadIdx.x + s]);
            __syncthreads();
        }}
        if (threadIdx.x == 0) out[o] = scale == 1.0 ? buf[0] : (T)((double)buf[0] * scale);
        __syncthreads();
    }}
}}
"
    ))
}

/// The name of the softmax kernel (`log`: log-softmax; `backward`: its gradient).
pub(crate) fn softmax_name(dtype: DType, log: bool, backward: bool) -> String {
    let f = if log { "log_softmax" } else { "softmax" };
    let b = if backward { "_backward" } else { "" };
    format!("{f}{b}_{}", short(dtype))
}

/// The source of a softmax kernel over contiguous input viewed as `[outer, n, inner]`: one
/// block per line (`rows = outer · inner` of them), the line's maximum and sum of
/// exponentials (or, backward, its `Σ g y` or `Σ g`) reduced in shared memory.
/// Forward: `out = exp(x - max) / Σ` or `x - max - log Σ`. Backward from the output `y` and
/// its gradient `g`: `y (g - Σ g y)` or `g - exp(y) Σ g`.
pub(crate) fn softmax_source(dtype: DType, log: bool, backward: bool) -> Option<String> {
    if !dtype.is_float() {
        return None;
    }
    let t = c_type(dtype);
    let name = softmax_name(dtype, log, backward);
    let exp = math("exp", dtype);
    let lg = math("log", dtype);
    let threads = REDUCE_THREADS;
    let body = if backward {
        let (term, write) = if log {
            ("g[at]".to_string(), format!("g[at] - {exp}(y[at]) * total"))
        } else {
            (
                "g[at] * y[at]".to_string(),
                "y[at] * (g[at] - total)".to_string(),
            )
        };
        format!(
            "extern \"C\" __global__ void {name}(T* __restrict__ out, const T* __restrict__ y,
        const T* __restrict__ g, long long rows, long long n, long long inner) {{
    __shared__ T buf[{threads}];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {{
        long long base = (r / inner) * n * inner + r % inner;
        T acc = (T)0;
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {{
            long long at = base + j * inner;
            acc += {term};
        }}
        T total = fg_block_sum(buf, acc);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {{
            long long at = base + j * inner;
            out[at] = {write};
        }}
        __syncthreads();
    }}
}}"
        )
    } else {
        let write = if log {
            format!("x[at] - m - {lg}(total)")
        } else {
            format!("{exp}(x[at] - m) / total")
        };
        format!(
            "extern \"C\" __global__ void {name}(T* __restrict__ out, const T* __restrict__ x,
        long long rows, long long n, long long inner) {{
    __shared__ T buf[{threads}];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {{
        long long base = (r / inner) * n * inner + r % inner;
        T m = (T)(-1.0 / 0.0);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {{
            T v = x[base + j * inner];
            m = (v != v || v > m) ? v : m;
        }}
        m = fg_block_max(buf, m);
        T acc = (T)0;
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {{
            acc += {exp}(x[base + j * inner] - m);
        }}
        T total = fg_block_sum(buf, acc);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) {{
            long long at = base + j * inner;
            out[at] = {write};
        }}
        __syncthreads();
    }}
}}"
        )
    };
    Some(format!(
        "{PRELUDE}
typedef {t} T;
// the block's sum (or maximum, NaN winning) of each thread's `v`, for every thread
__device__ T fg_block_sum(T* buf, T v) {{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {{
        if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
        __syncthreads();
    }}
    T total = buf[0];
    __syncthreads();
    return total;
}}
__device__ T fg_block_max(T* buf, T v) {{
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {{
        if (threadIdx.x < s) {{
            T p = buf[threadIdx.x], q = buf[threadIdx.x + s];
            buf[threadIdx.x] = p != p ? p : (q != q ? q : (q > p ? q : p));
        }}
        __syncthreads();
    }}
    T total = buf[0];
    __syncthreads();
    return total;
}}
{body}
"
    ))
}

/// The name of the gather kernel.
pub(crate) fn gather_name(dtype: DType) -> String {
    format!("gather_{}", short(dtype))
}

/// The source of the gather kernel: `out[i] = x[at(lbase, i) + idx[at(li, i)] · stride]`
/// (positions checked on the host before the launch). With the index broadcast along the
/// other dims it is `index_select`.
pub(crate) fn gather_source(dtype: DType) -> String {
    let t = c_type(dtype);
    let name = gather_name(dtype);
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x,
        Layout lbase, long long stride, const long long* __restrict__ idx, Layout li,
        long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        out[i] = x[fg_at(lbase, i) + idx[fg_at(li, i)] * stride];
    }}
}}
"
    )
}

/// The name of the scatter-add kernel.
pub(crate) fn scatter_add_name(dtype: DType) -> String {
    format!("scatter_add_{}", short(dtype))
}

/// The source of the scatter-add kernel: `out[at(lbase, i) + idx[at(li, i)] · stride] +=
/// src[at(ls, i)]` with atomic adds (repeated positions add up; in floating point, in an
/// order that varies from run to run, as in PyTorch; [`scatter_add_sorted_source`] is the
/// deterministic form).
pub(crate) fn scatter_add_source(dtype: DType) -> Option<String> {
    let t = c_type(dtype);
    let name = scatter_add_name(dtype);
    let add = match dtype {
        DType::F32 | DType::F64 => "atomicAdd(&out[at], v)",
        DType::I64 => "atomicAdd((unsigned long long*)&out[at], (unsigned long long)v)",
        DType::Bool => return None,
    };
    Some(format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* out, Layout lbase, long long stride,
        const long long* __restrict__ idx, Layout li, const {t}* __restrict__ src, Layout ls,
        long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        long long at = fg_at(lbase, i) + idx[fg_at(li, i)] * stride;
        {t} v = src[fg_at(ls, i)];
        {add};
    }}
}}
"
    ))
}

/// The name of the kernel that finds, for each position a scatter writes, the last source
/// element written there.
pub(crate) const SCATTER_CLAIM: &str = "scatter_claim";

/// The source of [`SCATTER_CLAIM`]: `winner[at] = max(winner[at], i + 1)` over the source
/// elements `i` (zeros in `winner` beforehand), `at` as in the scatter-add. With the
/// placement kernel ([`scatter_source`]) it makes a scatter with repeated positions keep
/// the last element in the index's row-major order, as the CPU's does, on every run
/// (PyTorch leaves that order undefined on a GPU).
pub(crate) fn scatter_claim_source() -> String {
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {SCATTER_CLAIM}(unsigned long long* winner, Layout lbase,
        long long stride, const long long* __restrict__ idx, Layout li, long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        long long at = fg_at(lbase, i) + idx[fg_at(li, i)] * stride;
        atomicMax(&winner[at], (unsigned long long)(i + 1));
    }}
}}
"
    )
}

/// The name of a scatter's placement kernel.
pub(crate) fn scatter_name(dtype: DType) -> String {
    format!("scatter_{}", short(dtype))
}

/// The source of a scatter's placement kernel: `out[at] = src[at(ls, i)]` for the source
/// element `i` that [`scatter_claim_source`] picked for `at`.
pub(crate) fn scatter_source(dtype: DType) -> String {
    let t = c_type(dtype);
    let name = scatter_name(dtype);
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* out, Layout lbase, long long stride,
        const long long* __restrict__ idx, Layout li, const {t}* __restrict__ src, Layout ls,
        const unsigned long long* __restrict__ winner, long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        long long at = fg_at(lbase, i) + idx[fg_at(li, i)] * stride;
        if (winner[at] == (unsigned long long)(i + 1)) out[at] = src[fg_at(ls, i)];
    }}
}}
"
    )
}

/// The name of the kernel that writes down where each source element of a scatter-add
/// lands, for the deterministic form ([`crate::set_deterministic`]).
pub(crate) const SCATTER_KEYS: &str = "scatter_keys";

/// The source of [`SCATTER_KEYS`]: `keys[i] = at(lbase, i) + idx[at(li, i)] · stride`, the
/// position the scatter-add writes source element `i` to, or -1 where the index is negative
/// (a max pooling's window that chose nothing; a scatter's positions are checked before).
pub(crate) fn scatter_keys_source() -> String {
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {SCATTER_KEYS}(long long* __restrict__ keys, Layout lbase,
        long long stride, const long long* __restrict__ idx, Layout li, long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        long long v = idx[fg_at(li, i)];
        keys[i] = v < 0 ? -1 : fg_at(lbase, i) + v * stride;
    }}
}}
"
    )
}

/// The name of the deterministic scatter-add's summing kernel.
pub(crate) fn scatter_add_sorted_name(dtype: DType) -> String {
    format!("scatter_add_sorted_{}", short(dtype))
}

/// The source of the deterministic scatter-add's summing kernel: given each source element's
/// position (`keys`, from [`scatter_keys_source`]) and the source elements stably sorted by
/// it (`order`), the first element of each run of one position adds the run's values to
/// `out` one after another, in the source's row-major order: the CPU's loop, so the same
/// bits on every run and as on the CPU. Keys below 0 are skipped.
pub(crate) fn scatter_add_sorted_source(dtype: DType) -> Option<String> {
    if !dtype.is_float() {
        return None;
    }
    let t = c_type(dtype);
    let name = scatter_add_sorted_name(dtype);
    Some(format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* out, const long long* __restrict__ keys,
        const long long* __restrict__ order, const {t}* __restrict__ src, Layout ls,
        long long n) {{
    for (long long j = blockIdx.x * (long long)blockDim.x + threadIdx.x; j < n;
            j += (long long)gridDim.x * blockDim.x) {{
        long long at = keys[order[j]];
        if (at < 0 || (j > 0 && keys[order[j - 1]] == at)) continue;
        {t} acc = out[at];
        for (long long m = j; m < n && keys[order[m]] == at; ++m) acc += src[fg_at(ls, order[m])];
        out[at] = acc;
    }}
}}
"
    ))
}

/// The name of the deterministic `index_add`'s kernel.
pub(crate) fn index_add_sorted_name(dtype: DType) -> String {
    format!("index_add_sorted_{}", short(dtype))
}

/// The source of the deterministic `index_add` ([`crate::set_deterministic`]) along a dim of
/// `size` of a contiguous `out` seen as `[outer, size, inner]`: with the index's `k`
/// positions (`idx`, laid out by `li`) stably sorted (`order`), element `e` of the
/// `outer · k · inner` threads, `(o, m, i)`, adds the run of sorted positions equal to the
/// one at `m` when `m` starts that run: the source rows `src[o, order[m..], i]` one after
/// another, from `out`'s value, as the CPU's loop does. Only the `k` rows are sorted, not
/// every source element (an embedding's gradient: `k` tokens of `inner` features).
pub(crate) fn index_add_sorted_source(dtype: DType) -> Option<String> {
    if !dtype.is_float() {
        return None;
    }
    let t = c_type(dtype);
    let name = index_add_sorted_name(dtype);
    Some(format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* out, const long long* __restrict__ idx, Layout li,
        const long long* __restrict__ order, const {t}* __restrict__ src, Layout ls,
        long long k, long long size, long long inner, long long n) {{
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
            e += (long long)gridDim.x * blockDim.x) {{
        long long i = e % inner, m = (e / inner) % k, o = e / (inner * k);
        long long row = idx[fg_at(li, order[m])];
        if (m > 0 && idx[fg_at(li, order[m - 1])] == row) continue;
        long long at = (o * size + row) * inner + i;
        {t} acc = out[at];
        for (long long j = m; j < k && idx[fg_at(li, order[j])] == row; ++j)
            acc += src[fg_at(ls, (o * k + order[j]) * inner + i)];
        out[at] = acc;
    }}
}}
"
    ))
}

/// The name of the strided copy kernel.
pub(crate) fn copy_name(dtype: DType) -> String {
    format!("copy_{}", short(dtype))
}

/// The source of the strided copy: `out[at(lo, i)] = x[at(lx, i)]`, writing into a view of
/// a larger output (a slice of a concatenation, the placed block of a padding).
pub(crate) fn copy_source(dtype: DType) -> String {
    let t = c_type(dtype);
    let name = copy_name(dtype);
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* __restrict__ out, Layout lo, const {t}* __restrict__ x,
        Layout lx, long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        out[fg_at(lo, i)] = x[fg_at(lx, i)];
    }}
}}
"
    )
}

/// A convolution's sizes as the im2col and col2im kernels take them. Mirrors `ConvGeom`
/// in their sources.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    pub(crate) n: i64,
    pub(crate) c: i64,
    pub(crate) h: i64,
    pub(crate) w: i64,
    pub(crate) kh: i64,
    pub(crate) kw: i64,
    pub(crate) oh: i64,
    pub(crate) ow: i64,
    pub(crate) sh: i64,
    pub(crate) sw: i64,
    pub(crate) ph: i64,
    pub(crate) pw: i64,
    pub(crate) dh: i64,
    pub(crate) dw: i64,
}

// SAFETY: `ConvGeom` is `repr(C)` plain integers, laid out as the C struct of its kernels.
unsafe impl DeviceRepr for ConvGeom {}

const CONV_GEOM: &str =
    "struct ConvGeom { long long n, c, h, w, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw; };";

/// The name of the im2col kernel (`backward`: col2im, its adjoint).
pub(crate) fn im2col_name(dtype: DType, backward: bool) -> String {
    format!(
        "{}_{}",
        if backward { "col2im" } else { "im2col" },
        short(dtype)
    )
}

/// The source of im2col (`col[n, (c, i, j), (y, x)]` = the input under kernel tap `(i, j)`
/// of output position `(y, x)`, zero in the padding) or, `backward`, of col2im (each input
/// element the sum of the columns' entries it was copied to, gathered, so no atomics).
/// Both over contiguous `[N, C, H, W]` images and `[N, C·kh·kw, oh·ow]` columns.
pub(crate) fn im2col_source(dtype: DType, backward: bool) -> Option<String> {
    if !dtype.is_float() {
        return None;
    }
    let t = c_type(dtype);
    let name = im2col_name(dtype, backward);
    let body = if backward {
        format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ x, const {t}* __restrict__ col,
        ConvGeom g) {{
    long long total = g.n * g.c * g.h * g.w, taps = g.kh * g.kw, l = g.oh * g.ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
            i += (long long)gridDim.x * blockDim.x) {{
        long long xx = i % g.w, y = (i / g.w) % g.h, c = (i / (g.w * g.h)) % g.c;
        long long n = i / (g.w * g.h * g.c);
        {t} acc = ({t})0;
        for (long long ki = 0; ki < g.kh; ++ki) {{
            long long ty = y + g.ph - ki * g.dh;
            if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
            for (long long kj = 0; kj < g.kw; ++kj) {{
                long long tx = xx + g.pw - kj * g.dw;
                if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
                long long row = (n * g.c + c) * taps + ki * g.kw + kj;
                acc += col[row * l + (ty / g.sh) * g.ow + tx / g.sw];
            }}
        }}
        x[i] = acc;
    }}
}}"
        )
    } else {
        format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ col, const {t}* __restrict__ x,
        ConvGeom g) {{
    long long taps = g.kh * g.kw, l = g.oh * g.ow, total = g.n * g.c * taps * l;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
            i += (long long)gridDim.x * blockDim.x) {{
        long long p = i % l, row = i / l;
        long long tap = row % taps, c = (row / taps) % g.c, n = row / (taps * g.c);
        long long y = (p / g.ow) * g.sh - g.ph + (tap / g.kw) * g.dh;
        long long xx = (p % g.ow) * g.sw - g.pw + (tap % g.kw) * g.dw;
        bool inside = y >= 0 && y < g.h && xx >= 0 && xx < g.w;
        col[i] = inside ? x[((n * g.c + c) * g.h + y) * g.w + xx] : ({t})0;
    }}
}}"
        )
    };
    Some(format!("{PRELUDE}\n{CONV_GEOM}\n{body}\n"))
}

/// The pooling kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Per output: the flat in-plane index of the window's first maximum (NaN wins), and its
    /// value when `values` is not null.
    Max,
    /// Per output: its gradient added (atomically: windows may overlap) at the chosen input
    /// (the deterministic form is the sorted scatter-add instead).
    MaxBackward,
    /// Per output: the input at a flat in-plane index (0 for a negative one).
    GatherPlanes,
    /// Per output: the window's mean (over `kh·kw`, or the positions inside the image).
    Avg,
    /// Per input: the sum of the gradients of the windows that cover it over their divisors
    /// (gathered: no atomics).
    AvgBackward,
}

/// The name of a pooling kernel.
pub(crate) fn pool_name(kind: Pool, dtype: DType) -> String {
    let k = match kind {
        Pool::Max => "max_pool",
        Pool::MaxBackward => "max_pool_backward",
        Pool::GatherPlanes => "gather_planes",
        Pool::Avg => "avg_pool",
        Pool::AvgBackward => "avg_pool_backward",
    };
    format!("{k}_{}", short(dtype))
}

/// The source of a pooling kernel over contiguous `[N, C, H, W]` inputs and `[N, C, oh, ow]`
/// outputs, sizes in a [`ConvGeom`] (no dilation).
pub(crate) fn pool_source(kind: Pool, dtype: DType) -> Option<String> {
    if !dtype.is_float() {
        return None;
    }
    let t = c_type(dtype);
    let name = pool_name(kind, dtype);
    let loop_outputs = "long long planes = g.n * g.c, s = g.oh * g.ow, hw = g.h * g.w;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < planes * s;
            i += (long long)gridDim.x * blockDim.x) {
        long long plane = i / s, oy = (i % s) / g.ow, ox = i % g.ow;";
    let body = match kind {
        Pool::Max => format!(
            "extern \"C\" __global__ void {name}({t}* values, long long* __restrict__ idx,
        const {t}* __restrict__ x, ConvGeom g) {{
    {loop_outputs}
        {t} best = ({t})0;
        long long at = -1;
        for (long long ki = 0; ki < g.kh; ++ki) {{
            long long iy = oy * g.sh - g.ph + ki;
            if (iy < 0 || iy >= g.h) continue;
            for (long long kj = 0; kj < g.kw; ++kj) {{
                long long ix = ox * g.sw - g.pw + kj;
                if (ix < 0 || ix >= g.w) continue;
                {t} v = x[plane * hw + iy * g.w + ix];
                if (at < 0 || (best == best && (v != v || v > best))) {{
                    best = v;
                    at = iy * g.w + ix;
                }}
            }}
        }}
        idx[i] = at;
        if (values) values[i] = best;
    }}
}}"
        ),
        Pool::MaxBackward => format!(
            "extern \"C\" __global__ void {name}({t}* dx, const {t}* __restrict__ dy,
        const long long* __restrict__ idx, ConvGeom g) {{
    {loop_outputs}
        (void)oy; (void)ox;
        if (idx[i] >= 0) atomicAdd(&dx[plane * hw + idx[i]], dy[i]);
    }}
}}"
        ),
        Pool::GatherPlanes => format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x,
        const long long* __restrict__ idx, ConvGeom g) {{
    {loop_outputs}
        (void)oy; (void)ox;
        out[i] = idx[i] >= 0 ? x[plane * hw + idx[i]] : ({t})0;
    }}
}}"
        ),
        Pool::Avg => format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x,
        ConvGeom g, int include) {{
    {loop_outputs}
        {t} acc = ({t})0;
        long long count = 0;
        for (long long ki = 0; ki < g.kh; ++ki) {{
            long long iy = oy * g.sh - g.ph + ki;
            for (long long kj = 0; kj < g.kw; ++kj) {{
                long long ix = ox * g.sw - g.pw + kj;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                acc += x[plane * hw + iy * g.w + ix];
                count += 1;
            }}
        }}
        out[i] = acc / ({t})(include ? g.kh * g.kw : count);
    }}
}}"
        ),
        Pool::AvgBackward => format!(
            "extern \"C\" __global__ void {name}({t}* __restrict__ dx, const {t}* __restrict__ dy,
        ConvGeom g, int include) {{
    long long hw = g.h * g.w, s = g.oh * g.ow;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < g.n * g.c * hw;
            i += (long long)gridDim.x * blockDim.x) {{
        long long plane = i / hw, iy = (i % hw) / g.w, ix = i % g.w;
        {t} acc = ({t})0;
        // the windows that cover (iy, ix): oy·sh - ph <= iy < oy·sh - ph + kh
        long long ty = iy + g.ph, tx = ix + g.pw;
        long long oy_lo = ty < g.kh ? 0 : (ty - g.kh) / g.sh + 1;
        long long oy_hi = ty / g.sh < g.oh - 1 ? ty / g.sh : g.oh - 1;
        long long ox_lo = tx < g.kw ? 0 : (tx - g.kw) / g.sw + 1;
        long long ox_hi = tx / g.sw < g.ow - 1 ? tx / g.sw : g.ow - 1;
        for (long long oy = oy_lo; oy <= oy_hi; ++oy) {{
            long long y0 = oy * g.sh - g.ph;
            if (iy < y0 || iy >= y0 + g.kh) continue;
            for (long long ox = ox_lo; ox <= ox_hi; ++ox) {{
                long long x0 = ox * g.sw - g.pw;
                if (ix < x0 || ix >= x0 + g.kw) continue;
                long long count = g.kh * g.kw;
                if (!include) {{
                    long long ry = (y0 + g.kh < g.h ? y0 + g.kh : g.h) - (y0 > 0 ? y0 : 0);
                    long long rx = (x0 + g.kw < g.w ? x0 + g.kw : g.w) - (x0 > 0 ? x0 : 0);
                    count = ry * rx;
                }}
                acc += dy[plane * s + oy * g.ow + ox] / ({t})count;
            }}
        }}
        dx[i] = acc;
    }}
}}"
        ),
    };
    Some(format!("{PRELUDE}\n{CONV_GEOM}\n{body}\n"))
}

/// The name of the arg-extreme kernel.
/// The most inputs a fused program's kernel takes ([`FusedArgs`]).
pub(crate) const FUSED_INPUTS: usize = 12;
/// The most outputs (values written out, reductions' values included) it writes.
pub(crate) const FUSED_OUTPUTS: usize = 8;

/// A fused program kernel's operands, passed by value: the outputs' and inputs' device
/// addresses, the inputs' layouts over the program's shape, and the values of inputs that
/// are host scalars (their layout's `ndim` is [`SPLAT`]): a scalar rides in the launch's
/// arguments instead of a copy to the device per call. Mirrors the C struct of
/// [`program_source`].
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct FusedArgs {
    pub(crate) outs: [u64; FUSED_OUTPUTS],
    pub(crate) ins: [u64; FUSED_INPUTS],
    pub(crate) layouts: [Layout; FUSED_INPUTS],
    pub(crate) splats: [f64; FUSED_INPUTS],
}

/// A fused kernel input's `Layout::ndim` when the input is the value in
/// [`FusedArgs::splats`] (every f32 and f64 is exact as a double).
pub(crate) const SPLAT: i64 = -2;

// SAFETY: `FusedArgs` is `repr(C)` plain integers, `Layout`s and doubles, laid out as the C
// struct.
unsafe impl DeviceRepr for FusedArgs {}

/// A C literal of `v` as a double.
fn c_double(v: f64) -> String {
    if v.is_nan() {
        "(0.0 / 0.0)".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "(1.0 / 0.0)"
        } else {
            "(-1.0 / 0.0)"
        }
        .into()
    } else {
        // the shortest text that reads back as `v`, always with a decimal point or exponent
        let t = format!("{v:?}");
        if t.contains(['.', 'e', 'E']) {
            t
        } else {
            format!("{t}.0")
        }
    }
}

/// The kernel of a fused program in `dtype`: its name and source, or `None` when it has
/// more operands than [`FusedArgs`] holds or a function without a C expression. One thread
/// per element evaluates the instructions in order into locals, each with the expression of
/// its function's own kernel (`map_expr`, `zip_expr`), and writes the outputs, then the
/// values the reductions add up (reduced after, by the reduction kernel). The kernels are
/// compiled without contracting multiplies and adds into FMAs, so each value is rounded as
/// the op-by-op kernels round it: a fused program gives their bits.
pub(crate) fn program_source(p: &crate::Program, dtype: DType) -> Option<(String, String)> {
    let instrs = p.instrs();
    let inputs = instrs
        .iter()
        .filter_map(|i| match *i {
            crate::fused::Instr::Input(n) => Some(n + 1),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let written: Vec<usize> = (p.outputs().iter().copied())
        .chain(p.reductions().iter().map(|r| r.value))
        .collect();
    if inputs > FUSED_INPUTS || written.len() > FUSED_OUTPUTS || !dtype.is_float() {
        return None;
    }
    let t = c_type(dtype);
    let mut body = String::new();
    let mut special = false;
    for (k, instr) in instrs.iter().enumerate() {
        use crate::fused::Instr;
        let line = match *instr {
            Instr::Input(n) => {
                format!(
                    "T v{k} = args.layouts[{n}].ndim == {SPLAT} ? (T)args.splats[{n}] \
                     : ((const T*)args.ins[{n}])[fg_at(args.layouts[{n}], i)];"
                )
            }
            Instr::Const(c) => format!("T v{k} = (T){};", c_double(c)),
            Instr::Map(f, x) => {
                special |= matches!(f, MapFn::Digamma | MapFn::Polygamma(_));
                let (p0, p1, flags) = map_params(f);
                format!(
                    "T v{k}; {{ const double p0 = {}, p1 = {}; const int flags = {flags}; \
                     (void)p0; (void)p1; (void)flags; T v = v{x}; v{k} = {}; }}",
                    c_double(p0),
                    c_double(p1),
                    map_expr(f, dtype)?
                )
            }
            Instr::Zip(f, x, y) => {
                format!(
                    "T v{k}; {{ T a = v{x}; T b = v{y}; v{k} = {}; }}",
                    zip_expr(f, dtype)?
                )
            }
            Instr::Select(c, x, y) => format!("T v{k} = v{c} != (T)0 ? v{x} : v{y};"),
        };
        body.push_str("        ");
        body.push_str(&line);
        body.push('\n');
    }
    for (j, v) in written.iter().enumerate() {
        body.push_str(&format!("        ((T*)args.outs[{j}])[i] = v{v};\n"));
    }
    let special = if special { SPECIAL } else { "" };
    let head = format!(
        "struct FusedArgs {{ unsigned long long outs[{FUSED_OUTPUTS}]; \
         unsigned long long ins[{FUSED_INPUTS}]; Layout layouts[{FUSED_INPUTS}]; \
         double splats[{FUSED_INPUTS}]; }};\ntypedef {t} T;"
    );
    // named by the text it runs, so equal programs share one compiled kernel
    let hash = body.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let name = format!("fused_{}_{hash:016x}", short(dtype));
    let source = format!(
        "{PRELUDE}{special}
{head}
extern \"C\" __global__ void {name}(FusedArgs args, long long n) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
{body}    }}
}}
"
    );
    Some((name, source))
}

/// The name of the kernel that starts an argsort: each padded row holds `0, 1, ..., P-1`.
pub(crate) const ARGSORT_INIT: &str = "argsort_init";

/// The source of [`ARGSORT_INIT`].
pub(crate) fn argsort_init_source() -> String {
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {ARGSORT_INIT}(long long* __restrict__ idx, long long n,
        long long padded) {{
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
            t += (long long)gridDim.x * blockDim.x) {{
        idx[t] = t % padded;
    }}
}}
"
    )
}

/// The name of one stage of the argsort's bitonic network.
pub(crate) fn argsort_step_name(dtype: DType) -> String {
    format!("argsort_step_{}", short(dtype))
}

/// The source of one stage `(k, j)` of a bitonic sorting network over rows of `padded` (a
/// power of two) indices, compared by the elements they name in the row of `len` that
/// `x`'s layout reads from `r·len`: NaN after every number (before, descending), equal
/// elements by index, and the padding's indices (from `len`) after everything, so the
/// network's one ordering is the CPU's stable sort. One thread per pair.
pub(crate) fn argsort_step_source(dtype: DType) -> String {
    let t = c_type(dtype);
    let name = argsort_step_name(dtype);
    format!(
        "{PRELUDE}
typedef {t} T;
// -1, 0 or 1 as a sorts before, with or after b (NaN after every number)
__device__ __forceinline__ int fg_order(T a, T b) {{
    bool na = a != a, nb = b != b;
    if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
    return a < b ? -1 : (b < a ? 1 : 0);
}}
extern \"C\" __global__ void {name}(long long* __restrict__ idx, const T* __restrict__ x,
        Layout lx, long long rows, long long len, long long padded, long long k, long long j,
        int descending) {{
    long long n = rows * padded;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n;
            t += (long long)gridDim.x * blockDim.x) {{
        long long i = t % padded, l = i ^ j;
        if (l <= i) continue;
        long long r = t - i;
        long long p = idx[r + i], q = idx[r + l];
        long long base = (t / padded) * len;
        // whether q belongs before p
        bool q_first;
        if (q >= len) q_first = false;
        else if (p >= len) q_first = true;
        else {{
            int o = fg_order(x[fg_at(lx, base + q)], x[fg_at(lx, base + p)]);
            if (descending) o = -o;
            q_first = o < 0 || (o == 0 && q < p);
        }}
        // ascending runs where bit k of i is clear, descending runs where it is set
        if (((i & k) == 0) == q_first) {{
            idx[r + i] = q;
            idx[r + l] = p;
        }}
    }}
}}
"
    )
}

pub(crate) fn extreme_name(dtype: DType) -> String {
    format!("extreme_{}", short(dtype))
}

/// The source of the arg-extreme kernel: per output `o`, the first index `j < n_red` of the
/// largest (`largest`) or smallest `x[at(lo, o) + at(lr, j)]`, a NaN winning, and its value
/// when `values` is not null. One thread per output.
pub(crate) fn extreme_source(dtype: DType) -> Option<String> {
    if dtype == DType::Bool {
        return None;
    }
    let t = c_type(dtype);
    let name = extreme_name(dtype);
    Some(format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}(long long* __restrict__ idx, {t}* values,
        const {t}* __restrict__ x, Layout lo, Layout lr, long long n_out, long long n_red,
        int largest) {{
    for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < n_out;
            o += (long long)gridDim.x * blockDim.x) {{
        long long base = fg_at(lo, o), at = 0;
        {t} best = x[base + fg_at(lr, 0)];
        for (long long j = 1; j < n_red && best == best; ++j) {{
            {t} v = x[base + fg_at(lr, j)];
            if (v != v || (largest ? v > best : v < best)) {{
                best = v;
                at = j;
            }}
        }}
        idx[o] = at;
        if (values) values[o] = best;
    }}
}}
"
    ))
}

/// The name of the running sum/product kernel (`cumsum`, `cumprod`).
pub(crate) fn scan_name(dtype: DType) -> String {
    format!("scan_{}", short(dtype))
}

/// The source of `cumsum` and `cumprod`: per line `o` (every index but along the scanned dim),
/// `out[at(oo, o) + at(or, j)]` = the sum (`product`: the product) of `x[at(lo, o) +
/// at(lr, k)]` over `k <= j`, added in order as the CPU adds them. One thread per line.
pub(crate) fn scan_source(dtype: DType) -> Option<String> {
    if dtype == DType::Bool {
        return None;
    }
    let t = c_type(dtype);
    let name = scan_name(dtype);
    Some(format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* __restrict__ out, const {t}* __restrict__ x,
        Layout lo, Layout lr, Layout oo, Layout orr, long long n_out, long long n,
        int product) {{
    for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < n_out;
            o += (long long)gridDim.x * blockDim.x) {{
        long long bx = fg_at(lo, o), bo = fg_at(oo, o);
        {t} acc = product ? ({t})1 : ({t})0;
        for (long long j = 0; j < n; ++j) {{
            {t} v = x[bx + fg_at(lr, j)];
            acc = product ? fg_mul(acc, v) : fg_add(acc, v);
            out[bo + fg_at(orr, j)] = acc;
        }}
    }}
}}
"
    ))
}

/// The name of the select kernel (`where`).
pub(crate) fn where_name(dtype: DType) -> String {
    format!("where_{}", short(dtype))
}

/// The source of `where`: `out[i] = c[at(lc, i)] ? a : b`, `a` or `b` a scalar argument
/// when its bit in `splat` is set.
pub(crate) fn where_source(dtype: DType) -> String {
    let t = c_type(dtype);
    let name = where_name(dtype);
    let (sa, sb) = (from_bits("sa", dtype), from_bits("sb", dtype));
    format!(
        "{PRELUDE}
extern \"C\" __global__ void {name}({t}* __restrict__ out, const bool* __restrict__ c,
        Layout lc, const {t}* __restrict__ a, Layout la, const {t}* __restrict__ b, Layout lb,
        long long n, unsigned long long sa, unsigned long long sb, int splat) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
            i += (long long)gridDim.x * blockDim.x) {{
        out[i] = c[fg_at(lc, i)] ? ((splat & 1) ? {sa} : a[fg_at(la, i)])
                                 : ((splat & 2) ? {sb} : b[fg_at(lb, i)]);
    }}
}}
"
    )
}

/// Every one-input function of the table (with sample parameters), for the kernel tests.
#[cfg(test)]
pub(crate) const MAPS: [MapFn; 36] = [
    MapFn::Neg,
    MapFn::Abs,
    MapFn::Sign,
    MapFn::Relu,
    MapFn::Exp,
    MapFn::Log,
    MapFn::Log1p,
    MapFn::Expm1,
    MapFn::Sin,
    MapFn::Cos,
    MapFn::Tan,
    MapFn::Sinh,
    MapFn::Cosh,
    MapFn::Asin,
    MapFn::Acos,
    MapFn::Atan,
    MapFn::Erf,
    MapFn::Erfinv,
    MapFn::Gelu,
    MapFn::Lgamma,
    MapFn::Digamma,
    MapFn::Polygamma(1),
    MapFn::Trunc,
    MapFn::Tanh,
    MapFn::Sigmoid,
    MapFn::Sqrt,
    MapFn::Rsqrt,
    MapFn::Floor,
    MapFn::Ceil,
    MapFn::Round,
    MapFn::Reciprocal,
    MapFn::Square,
    MapFn::Identity,
    MapFn::Powi(3),
    MapFn::Powf(0.5),
    MapFn::Clamp(Some(0.0), None),
];

/// Every two-input function of the table, for the kernel tests.
#[cfg(test)]
pub(crate) const ZIPS: [ZipFn; 19] = [
    ZipFn::Add,
    ZipFn::Sub,
    ZipFn::Mul,
    ZipFn::Div,
    ZipFn::Maximum,
    ZipFn::Minimum,
    ZipFn::Pow,
    ZipFn::Atan2,
    ZipFn::Fmod,
    ZipFn::Remainder,
    ZipFn::TanhBackward,
    ZipFn::SigmoidBackward,
    ZipFn::GeluBackward,
    ZipFn::Eq,
    ZipFn::Ne,
    ZipFn::Lt,
    ZipFn::Le,
    ZipFn::Gt,
    ZipFn::Ge,
];

/// Every kernel source the backend can generate, `(name, source)`: what the NVRTC test
/// compiles.
#[cfg(test)]
pub(crate) fn all_sources() -> Vec<(String, String)> {
    let dtypes = [DType::F32, DType::F64, DType::I64, DType::Bool];
    let mut out = Vec::new();
    for d in dtypes {
        for f in MAPS {
            if let Some(s) = map_source(f, d) {
                out.push((map_name(f, d), s));
            }
        }
        for f in ZIPS {
            for compare in [false, true] {
                if let Some(s) = zip_source(f, d, compare) {
                    out.push((zip_name(f, d, compare), s));
                }
            }
        }
        for to in dtypes {
            out.push((cast_name(d, to), cast_source(d, to)));
        }
        for r in [Reduce::Sum, Reduce::Max, Reduce::Min, Reduce::Prod] {
            if let Some(s) = reduce_source(r, d) {
                out.push((reduce_name(r, d), s));
            }
        }
        for (log, backward) in [(false, false), (true, false), (false, true), (true, true)] {
            if let Some(s) = softmax_source(d, log, backward) {
                out.push((softmax_name(d, log, backward), s));
            }
        }
        out.push((gather_name(d), gather_source(d)));
        if let Some(s) = scatter_add_source(d) {
            out.push((scatter_add_name(d), s));
        }
        if let Some(s) = scatter_add_sorted_source(d) {
            out.push((scatter_add_sorted_name(d), s));
        }
        if let Some(s) = index_add_sorted_source(d) {
            out.push((index_add_sorted_name(d), s));
        }
        out.push((scatter_name(d), scatter_source(d)));
        out.push((where_name(d), where_source(d)));
        out.push((argsort_step_name(d), argsort_step_source(d)));
        out.push((copy_name(d), copy_source(d)));
        if let Some(s) = extreme_source(d) {
            out.push((extreme_name(d), s));
        }
        if let Some(s) = scan_source(d) {
            out.push((scan_name(d), s));
        }
        for backward in [false, true] {
            if let Some(s) = im2col_source(d, backward) {
                out.push((im2col_name(d, backward), s));
            }
        }
        for kind in [
            Pool::Max,
            Pool::MaxBackward,
            Pool::GatherPlanes,
            Pool::Avg,
            Pool::AvgBackward,
        ] {
            if let Some(s) = pool_source(kind, d) {
                out.push((pool_name(kind, d), s));
            }
        }
    }
    out.push((SCATTER_CLAIM.to_string(), scatter_claim_source()));
    out.push((SCATTER_KEYS.to_string(), scatter_keys_source()));
    out.push((ARGSORT_INIT.to_string(), argsort_init_source()));
    out
}

/// Whether the NVRTC library loads (checked once).
pub(crate) fn nvrtc_present() -> bool {
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    // SAFETY: only tries to open the library; no NVRTC function is called.
    *PRESENT.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// `source` compiled to PTX for `arch` (`compute_XY`).
pub(crate) fn compile(
    name: &str,
    source: &str,
    arch: &'static str,
) -> Result<cudarc::nvrtc::Ptx, DeviceError> {
    if !nvrtc_present() {
        return Err(DeviceError::NoNvrtc);
    }
    let options = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        name: Some(format!("{name}.cu")),
        // each op rounds as written (a fused program then gives the op-by-op kernels' bits)
        options: vec!["--std=c++14".into(), "--fmad=false".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| DeviceError::Compile {
        kernel: name.to_string(),
        log: match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                log.to_string_lossy().into_owned()
            }
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every generated kernel compiles with NVRTC. Needs only the NVRTC library, no GPU:
    /// CI installs it (PyPI's nvidia-cuda-nvrtc-cu12) and sets `FERROGRAD_REQUIRE_NVRTC`, so
    /// there the test fails rather than skips when the library does not load.
    #[test]
    fn every_kernel_source_compiles_with_nvrtc() {
        if !nvrtc_present() {
            assert!(
                std::env::var_os("FERROGRAD_REQUIRE_NVRTC").is_none(),
                "FERROGRAD_REQUIRE_NVRTC is set but libnvrtc does not load: {}",
                DeviceError::NoNvrtc
            );
            eprintln!(
                "skipped: {} (the kernels were not compiled)",
                DeviceError::NoNvrtc
            );
            return;
        }
        let sources = all_sources();
        // per float dtype 36 functions, 19 two-input functions and 6 bool comparisons, 4
        // casts, 4 reductions, 4 softmax kernels, gather, scatter-add and its sorted form,
        // index_add's sorted form, scatter, where, copy, an argsort stage; i64 the 5 integer functions, 8 + 6, 4, 4,
        // gather, scatter-add, scatter, where, copy, argsort; bool 6 + 4, gather, scatter,
        // where, copy, argsort; arg-extreme and scan (not bool); im2col, col2im and 5
        // pooling kernels for floats; the scatter's claim and keys kernels and the
        // argsort's first
        assert_eq!(sources.len(), 2 * 90 + 35 + 15 + 3);
        let mut names = std::collections::HashSet::new();
        for (name, source) in &sources {
            assert!(names.insert(name.clone()), "two kernels named {name}");
            assert!(
                source.contains(&format!("void {name}(")),
                "{name} defines another name"
            );
            // sm_80 (A100) is the oldest architecture the CI check compiles for
            if let Err(e) = compile(name, source, "compute_80") {
                panic!("{e}\n--- source ---\n{source}");
            }
        }
        // a fused program's generated kernel: every kind of instruction, special functions
        // (their definitions included), a reduction's value written out
        use crate::fused::{Instr, Program, Reduction};
        let program = Program::with_reductions(
            vec![
                Instr::Input(0),
                Instr::Input(1),
                Instr::Const(f64::NAN),
                Instr::Map(MapFn::Digamma, 0),
                Instr::Map(MapFn::Clamp(None, Some(2.5)), 3),
                Instr::Zip(ZipFn::Le, 4, 1),
                Instr::Select(5, 4, 2),
                Instr::Map(MapFn::Polygamma(1), 6),
                Instr::Zip(ZipFn::Atan2, 7, 1),
            ],
            vec![8, 6],
            vec![Reduction {
                value: 7,
                mean: false,
                shape: [].as_slice().into(),
            }],
        );
        for dtype in [DType::F32, DType::F64] {
            let (name, source) = program_source(&program, dtype).expect("a kernel");
            assert!(source.contains(&format!("void {name}(")));
            if let Err(e) = compile(&name, &source, "compute_80") {
                panic!("{e}\n--- source ---\n{source}");
            }
        }
    }

    #[test]
    fn kernel_names_follow_the_tables() {
        assert_eq!(map_name(MapFn::Exp, DType::F32), "map_exp_f32");
        assert_eq!(
            map_name(MapFn::Clamp(None, Some(1.0)), DType::I64),
            "map_clamp_i64"
        );
        assert_eq!(
            zip_name(ZipFn::SigmoidBackward, DType::F64, false),
            "zip_sigmoid_backward_f64"
        );
        assert_eq!(zip_name(ZipFn::Lt, DType::I64, true), "cmp_lt_i64");
        assert!(map_source(MapFn::Exp, DType::I64).is_none());
        assert!(map_source(MapFn::Abs, DType::I64).is_some());
        assert!(zip_source(ZipFn::Pow, DType::I64, false).is_none());
        assert!(zip_source(ZipFn::Lt, DType::Bool, true).is_some());
        assert_eq!(map_params(MapFn::Clamp(None, Some(2.0))), (0.0, 2.0, 2));
    }
}
