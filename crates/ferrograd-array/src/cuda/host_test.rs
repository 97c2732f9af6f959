//! The generated CUDA kernels run on the host: every kernel source compiled by the system's
//! C++ compiler with the CUDA keywords defined away (one block of one thread, so each
//! grid-stride loop visits every element), called on host memory with the layouts and
//! arguments the backend builds, and compared with the CPU ops. This checks what the kernels
//! compute (indexing, broadcasting, scalar operands, NaN rules, casts, reductions) on any
//! machine; only the launch and the device's own math library are left to the GPU tests.

use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::elementwise::{layout, scalar_bits};
use super::source::{self, Layout, Pool, Reduce};
use crate::dtype::Element;
use crate::fused::{MapFn, ZipFn};
use crate::{Array, DType};

/// What stands in for the CUDA runtime on the host.
const HOST_PRELUDE: &str = r#"
#include <math.h>
#include <string.h>
struct fg_dim3 { unsigned int x, y, z; };
static const fg_dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0};
static const fg_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads()
static inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline double __longlong_as_double(long long u) { double f; memcpy(&f, &u, 8); return f; }
// the inverse error function (CUDA's math library has it, the C library does not):
// Newton's method on erf from Giles's single-precision approximation
static double erfinv(double y) {
    if (y != y || y < -1.0 || y > 1.0) return NAN;
    if (y == 1.0) return INFINITY;
    if (y == -1.0) return -INFINITY;
    double w = -log((1.0 - y) * (1.0 + y)), x;
    if (w < 5.0) {
        w -= 2.5;
        x = 2.81022636e-08;
        x = 3.43273939e-07 + x * w; x = -3.5233877e-06 + x * w; x = -4.39150654e-06 + x * w;
        x = 0.00021858087 + x * w; x = -0.00125372503 + x * w; x = -0.00417768164 + x * w;
        x = 0.246640727 + x * w; x = 1.50140941 + x * w;
    } else {
        w = sqrt(w) - 3.0;
        x = -0.000200214257;
        x = 0.000100950558 + x * w; x = 0.00134934322 + x * w; x = -0.00367342844 + x * w;
        x = 0.00573950773 + x * w; x = -0.0076224613 + x * w; x = 0.00943887047 + x * w;
        x = 1.00167406 + x * w; x = 2.83297682 + x * w;
    }
    x *= y;
    for (int i = 0; i < 3; ++i) x -= (erf(x) - y) / (1.1283791670955126 * exp(-x * x));
    return x;
}
static float erfinvf(float y) { return (float)erfinv((double)y); }
template <typename T> static inline T atomicAdd(T* p, T v) { T old = *p; *p += v; return old; }
template <typename T> static inline T atomicMax(T* p, T v) { T old = *p; if (v > old) *p = v; return old; }
"#;

/// The kernels compiled for the host, `None` (with the reason printed) where there is no
/// C++ compiler.
fn kernels() -> Option<&'static libloading::Library> {
    static LIB: OnceLock<Option<libloading::Library>> = OnceLock::new();
    LIB.get_or_init(|| {
        let sources: Vec<String> = source::all_sources().into_iter().map(|(_, s)| s).collect();
        host_library("kernels", &sources)
    })
    .as_ref()
}

/// `sources` compiled for the host into one library (each in a namespace of its own), `None`
/// (with the reason printed) where there is no C++ compiler.
fn host_library(tag: &str, sources: &[String]) -> Option<libloading::Library> {
    let dir = std::env::temp_dir().join(format!("ferrograd-host-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut code = String::from(HOST_PRELUDE);
    for (i, src) in sources.iter().enumerate() {
        code.push_str(&format!("namespace k{i} {{\n{src}\n}}\n"));
    }
    let cpp = dir.join("kernels.cpp");
    let lib: PathBuf = dir.join("kernels.so");
    std::fs::write(&cpp, code).expect("writing the kernels' source");
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let status = std::process::Command::new(&cxx)
        .args(["-O1", "-shared", "-fPIC", "-std=c++14", "-o"])
        .arg(&lib)
        .arg(&cpp)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{cxx} failed ({s}) on the kernels' host source {}",
            cpp.display()
        ),
        Err(e) => {
            eprintln!("skipped: no C++ compiler `{cxx}` to build the kernels for the host: {e}");
            return None;
        }
    }
    // SAFETY: the library is our own kernels, which run no code when loaded.
    Some(unsafe { libloading::Library::new(&lib) }.expect("loading the host kernels"))
}

/// The address of a host array's storage.
fn base<T: Element>(a: &Array) -> *const c_void {
    a.storage_slice::<T>("test").as_ptr().cast()
}

type MapKernel = unsafe extern "C" fn(*mut c_void, *const c_void, Layout, i64, f64, f64, i32);
type ZipKernel = unsafe extern "C" fn(
    *mut c_void,
    *const c_void,
    Layout,
    *const c_void,
    Layout,
    i64,
    u64,
    u64,
    i32,
);
type CastKernel = unsafe extern "C" fn(*mut c_void, *const c_void, Layout, i64);
type SoftmaxKernel = unsafe extern "C" fn(*mut c_void, *const c_void, i64, i64, i64);
type SoftmaxBackwardKernel =
    unsafe extern "C" fn(*mut c_void, *const c_void, *const c_void, i64, i64, i64);
type GatherKernel =
    unsafe extern "C" fn(*mut c_void, *const c_void, Layout, i64, *const c_void, Layout, i64);
type ScatterAddKernel = unsafe extern "C" fn(
    *mut c_void,
    Layout,
    i64,
    *const c_void,
    Layout,
    *const c_void,
    Layout,
    i64,
);
type ScatterClaimKernel =
    unsafe extern "C" fn(*mut c_void, Layout, i64, *const c_void, Layout, i64);
type ScatterKernel = unsafe extern "C" fn(
    *mut c_void,
    Layout,
    i64,
    *const c_void,
    Layout,
    *const c_void,
    Layout,
    *const c_void,
    i64,
);
type WhereKernel = unsafe extern "C" fn(
    *mut c_void,
    *const c_void,
    Layout,
    *const c_void,
    Layout,
    *const c_void,
    Layout,
    i64,
    u64,
    u64,
    i32,
);
type CopyKernel = unsafe extern "C" fn(*mut c_void, Layout, *const c_void, Layout, i64);
type Im2colKernel = unsafe extern "C" fn(*mut c_void, *const c_void, source::ConvGeom);
type PoolKernel4 =
    unsafe extern "C" fn(*mut c_void, *const c_void, *const c_void, source::ConvGeom);
type AvgKernel = unsafe extern "C" fn(*mut c_void, *const c_void, source::ConvGeom, i32);
type ExtremeKernel =
    unsafe extern "C" fn(*mut c_void, *mut c_void, *const c_void, Layout, Layout, i64, i64, i32);
type ScanKernel =
    unsafe extern "C" fn(*mut c_void, *const c_void, Layout, Layout, Layout, Layout, i64, i64, i32);
type ReduceKernel = unsafe extern "C" fn(*mut c_void, *const c_void, Layout, Layout, i64, i64, f64);
type FusedKernel = unsafe extern "C" fn(source::FusedArgs, i64);
type ScatterKeysKernel = unsafe extern "C" fn(*mut c_void, Layout, i64, *const c_void, Layout, i64);
type ScatterSortedKernel<T> =
    unsafe extern "C" fn(*mut T, *const i64, *const i64, *const c_void, Layout, i64);
type IndexAddSortedKernel<T> = unsafe extern "C" fn(
    *mut T,
    *const c_void,
    Layout,
    *const i64,
    *const c_void,
    Layout,
    i64,
    i64,
    i64,
    i64,
);
type ArgsortInitKernel = unsafe extern "C" fn(*mut c_void, i64, i64);
type ArgsortStepKernel =
    unsafe extern "C" fn(*mut c_void, *const c_void, Layout, i64, i64, i64, i64, i64, i32);

/// The kernel `name` from the host library.
fn symbol<F: Copy>(lib: &libloading::Library, name: &str) -> F {
    // SAFETY: every caller names the kernel's type as its generated signature declares it.
    unsafe {
        *lib.get::<F>(name.as_bytes())
            .unwrap_or_else(|e| panic!("kernel {name}: {e}"))
    }
}

/// `f(a)` by the host-compiled kernel, as the backend launches it.
fn run_map<T: Element>(lib: &libloading::Library, f: MapFn, a: &Array) -> Array {
    let k: MapKernel = symbol(lib, &source::map_name(f, a.dtype()));
    let mut out = vec![T::default(); a.numel()];
    let (p0, p1, flags) = source::map_params(f);
    // SAFETY: the kernel's signature; `a`'s storage holds what its layout addresses.
    unsafe {
        k(
            out.as_mut_ptr().cast(),
            base::<T>(a),
            layout(a, a.shape(), "test"),
            a.numel() as i64,
            p0,
            p1,
            flags,
        )
    };
    Array::from_vec(out, a.shape())
}

/// `f(a, b)` (a 0-d operand as a scalar argument) by the host-compiled kernel.
fn run_zip<T: Element, U: Element>(
    lib: &libloading::Library,
    f: ZipFn,
    a: &Array,
    b: &Array,
    compare: bool,
) -> Array {
    let shape = crate::elementwise::broadcast_pair("test", a.shape(), b.shape());
    let k: ZipKernel = symbol(lib, &source::zip_name(f, a.dtype(), compare));
    let n: usize = shape.iter().product();
    let mut out = vec![U::default(); n];
    let operand = |x: &Array| {
        if x.ndim() == 0 {
            (std::ptr::null(), scalar_bits(x), 1)
        } else {
            (base::<T>(x), 0, 0)
        }
    };
    let ((px, sx, fx), (py, sy, fy)) = (operand(a), operand(b));
    // SAFETY: the kernel's signature; each operand's storage holds what its layout
    // addresses, and a scalar's null pointer is never read.
    unsafe {
        k(
            out.as_mut_ptr().cast(),
            px,
            layout(a, &shape, "test"),
            py,
            layout(b, &shape, "test"),
            n as i64,
            sx,
            sy,
            fx | fy << 1,
        )
    };
    Array::from_vec(out, &shape)
}

/// True when `got` is `want` within `rel` (relative, or absolute below 1), NaN matching
/// NaN and infinities matching exactly.
fn close(got: &Array, want: &Array, rel: f64) -> Result<(), String> {
    assert_eq!(got.shape(), want.shape());
    for (i, (g, w)) in got
        .to_f64_vec()
        .into_iter()
        .zip(want.to_f64_vec())
        .enumerate()
    {
        let ok = if w.is_nan() || g.is_nan() {
            w.is_nan() && g.is_nan()
        } else if w.is_infinite() || g.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= rel * w.abs().max(1.0)
        };
        if !ok {
            return Err(format!("element {i}: kernel {g}, CPU {w}"));
        }
    }
    Ok(())
}

/// A non-contiguous float operand: a transposed view over values that include the awkward
/// ones (NaN, ±∞, ±0, halves for rounding, values near and past each function's domain).
fn awkward(dtype: DType) -> Array {
    let v = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -0.0,
        0.5,
        -0.5,
        1.5,
        2.5,
        -2.5,
        0.999,
        -0.999,
        1e-4,
        -1e-4,
        3.25,
        -3.25,
        0.3,
        -0.7,
        7.0,
        -7.5,
        20.0,
        -20.0,
        1.0,
        -1.0,
    ];
    Array::from_vec(v.to_vec(), &[4, 6])
        .to_dtype(dtype)
        .transpose(0, 1)
}

#[test]
fn one_input_kernels_compute_what_the_cpu_ops_do() {
    let Some(lib) = kernels() else { return };
    // the table, and more parameters of the parametrised functions
    let extra = [
        MapFn::Polygamma(2),
        MapFn::Powi(-2),
        MapFn::Powf(-1.5),
        MapFn::Clamp(Some(-1.0), Some(2.0)),
        MapFn::Clamp(None, Some(0.25)),
    ];
    let functions: Vec<MapFn> = source::MAPS.iter().chain(&extra).copied().collect();
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::F64] {
        let x = awkward(dtype);
        // f32 functions are computed by different polynomials on each side
        let rel = if dtype == DType::F32 { 2e-5 } else { 1e-12 };
        for &f in &functions {
            let got = match dtype {
                DType::F32 => run_map::<f32>(lib, f, &x),
                _ => run_map::<f64>(lib, f, &x),
            };
            // the exact functions must agree bit for bit (NaN rules, signs of zero, halves)
            let exact = !f.is_transcendental() && !matches!(f, MapFn::Powi(_) | MapFn::Powf(_));
            let want = x.map_fn(f);
            let verdict = if exact {
                if got.bit_eq(&want) {
                    Ok(())
                } else {
                    Err(format!("{:?} vs {:?}", got.to_f64_vec(), want.to_f64_vec()))
                }
            } else {
                close(&got, &want, rel)
            };
            if let Err(e) = verdict {
                failures.push(format!("{f:?} {dtype}: {e}"));
            }
        }
    }
    // (i64::MIN: its negation and magnitude wrap around to itself, as on the CPU)
    let ints = Array::from_vec(vec![-7i64, -1, 0, 1, 5, i64::MAX, i64::MIN, 3], &[2, 4]).t();
    for f in [
        MapFn::Neg,
        MapFn::Abs,
        MapFn::Sign,
        MapFn::Relu,
        MapFn::Clamp(Some(-2.0), Some(4.0)),
    ] {
        let got = run_map::<i64>(lib, f, &ints);
        if got.to_vec::<i64>() != ints.map_fn(f).to_vec::<i64>() {
            failures.push(format!("{f:?} i64: {:?}", got.to_vec::<i64>()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn two_input_kernels_broadcast_and_take_scalars_as_the_cpu_ops_do() {
    let Some(lib) = kernels() else { return };
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::F64] {
        let rel = if dtype == DType::F32 { 2e-5 } else { 1e-12 };
        // [4, 1, 6] against a transposed [6] row broadcast, and each against a scalar
        let a = awkward(dtype).reshape(&[6, 1, 4]).transpose(0, 2);
        let b = Array::from_vec(vec![2.0, -0.5, f64::NAN, 0.0, -3.0, 1.5], &[6]).to_dtype(dtype);
        let s = Array::full(&[], -1.25, dtype);
        for f in source::ZIPS {
            for (x, y) in [(&a, &b), (&b, &a), (&a, &s), (&s, &b)] {
                let got = match dtype {
                    DType::F32 => run_zip::<f32, f32>(lib, f, x, y, false),
                    _ => run_zip::<f64, f64>(lib, f, x, y, false),
                };
                if let Err(e) = close(&got, &x.zip_fn(y, f), rel) {
                    failures.push(format!(
                        "{f:?} {dtype} {:?}·{:?}: {e}",
                        x.shape(),
                        y.shape()
                    ));
                }
                if source::compare_op(f).is_some() {
                    let got = match dtype {
                        DType::F32 => run_zip::<f32, bool>(lib, f, x, y, true),
                        _ => run_zip::<f64, bool>(lib, f, x, y, true),
                    };
                    let want = x.zip_fn(y, f).ne(&Array::full(&[], 0.0, dtype));
                    if !got.bit_eq(&want) {
                        failures.push(format!("{f:?} {dtype} as bool"));
                    }
                }
            }
        }
    }
    // sums, differences and products past i64's range wrap around, and i64::MIN / -1 is
    // i64::MIN, as on the CPU
    let (min, max) = (i64::MIN, i64::MAX);
    let a = Array::from_vec(
        vec![-7i64, 9, 4, -3, 10, 0, min, max, min + 1, max - 2],
        &[5, 2],
    )
    .t();
    let b = Array::from_vec(vec![3i64, -2, 5, -1, max], &[5]);
    let s = Array::full(&[], -4.0, DType::I64);
    let minus_one = Array::full(&[], -1.0, DType::I64);
    // the functions also defined on integers
    for f in source::ZIPS.into_iter().filter(|f| f.is_number()) {
        for (x, y) in [(&a, &b), (&a, &s), (&a, &minus_one)] {
            let got = run_zip::<i64, i64>(lib, f, x, y, false);
            if got.to_vec::<i64>() != x.zip_fn(y, f).to_vec::<i64>() {
                failures.push(format!("{f:?} i64: {:?}", got.to_vec::<i64>()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cast_kernels_convert_as_to_dtype_does() {
    let Some(lib) = kernels() else { return };
    let v = [
        f64::NAN,
        f64::INFINITY,
        -1e20,
        2.7,
        -2.7,
        0.0,
        -0.0,
        1.0,
        1e20,
        f64::NEG_INFINITY,
    ];
    let dtypes = [DType::F32, DType::F64, DType::I64, DType::Bool];
    for from in dtypes {
        let x = Array::from_vec(v.to_vec(), &[2, 5]).to_dtype(from).t();
        for to in dtypes {
            let k: CastKernel = symbol(lib, &source::cast_name(from, to));
            let want = x.to_dtype(to);
            let mut out = Array::zeros(x.shape(), to);
            macro_rules! run {
                ($s:ty, $d:ty) => {{
                    let dst = out
                        .out_slice::<$d>(&x.shape().to_vec(), "test")
                        .as_mut_ptr();
                    // SAFETY: the kernel's signature; `x`'s storage holds what its layout
                    // addresses, `dst` 10 elements.
                    unsafe {
                        k(
                            dst.cast(),
                            base::<$s>(&x),
                            layout(&x, x.shape(), "test"),
                            10,
                        )
                    }
                }};
            }
            crate::dtype::dispatch_any!(from, S => crate::dtype::dispatch_any!(to, D => run!(S, D)));
            assert!(out.bit_eq(&want), "{from} -> {to}: {} vs {}", out, want);
        }
    }
}

/// `flip` on a GPU is the copy kernel over a view with negative strides (`flip_into`).
#[test]
fn the_copy_kernel_reads_flipped_views_as_flip_does() {
    let Some(lib) = kernels() else { return };
    let v: Vec<f64> = (0..24).map(|i| i as f64 * 0.5 - 3.0).collect();
    for dtype in [DType::F32, DType::F64, DType::I64] {
        let x = Array::from_vec(v.clone(), &[2, 3, 4])
            .to_dtype(dtype)
            .permute(&[2, 0, 1]);
        let k: CastKernel = symbol(lib, &source::cast_name(dtype, dtype));
        for dims in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
            // the view `flip_into` copies
            let mut strides: crate::layout::Strides = x.strides().into();
            let mut offset = x.offset() as isize;
            for &d in &dims {
                offset += (x.shape()[d] as isize - 1) * strides[d];
                strides[d] = -strides[d];
            }
            let view = x.with_layout(x.shape().into(), strides, offset as usize);
            let mut out = Array::zeros(x.shape(), dtype);
            macro_rules! run {
                ($t:ty) => {{
                    let dst = out.out_slice::<$t>(x.shape(), "test").as_mut_ptr();
                    // SAFETY: the kernel's signature; the view's layout stays inside `x`'s
                    // storage, `dst` 24 elements.
                    unsafe {
                        k(
                            dst.cast(),
                            base::<$t>(&view),
                            layout(&view, x.shape(), "test"),
                            24,
                        )
                    }
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                DType::F64 => run!(f64),
                _ => run!(i64),
            }
            let want = x.flip(dims.as_slice());
            assert!(out.bit_eq(&want), "{dtype} flip {dims:?}: {out} vs {want}");
        }
    }
}

/// `cumsum` and `cumprod` along each dim of a permuted view, with a NaN and an infinity in
/// An i64 array's values spread over the whole range (so sums and products wrap around, as
/// on the CPU); a float array as it is.
fn wide_if_integer(x: Array) -> Array {
    if x.dtype() != DType::I64 {
        return x;
    }
    let wide = x
        .to_vec::<i64>()
        .iter()
        .map(|v| v.wrapping_mul(0x1234_5678_9abc_def1))
        .collect();
    Array::from_vec(wide, x.shape())
}

/// the float cases: the same numbers as the CPU's, bit for bit (the same additions in the
/// same order).
#[test]
fn scan_kernels_add_and_multiply_in_order_as_the_cpu_does() {
    let Some(lib) = kernels() else { return };
    let v: Vec<f64> = (0..60)
        .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.13)
        .collect();
    for dtype in [DType::F32, DType::F64, DType::I64] {
        let mut v = v.clone();
        if dtype.is_float() {
            v[17] = f64::NAN;
            v[41] = f64::INFINITY;
        }
        let x = wide_if_integer(Array::from_vec(v, &[3, 4, 5]).to_dtype(dtype)).permute(&[2, 0, 1]);
        let k: ScanKernel = symbol(lib, &source::scan_name(dtype));
        for d in 0..3 {
            for product in [false, true] {
                let want = if product { x.cumprod(d) } else { x.cumsum(d) };
                let mut out = Array::zeros(x.shape(), dtype);
                let input = super::reduce::plan(&x, &[d], true, "test");
                let output = super::reduce::plan(&out, &[d], true, "test");
                macro_rules! run {
                    ($t:ty) => {{
                        let dst = out.out_slice::<$t>(x.shape(), "test").as_mut_ptr();
                        // SAFETY: the kernel's signature; `x` holds what the input plan
                        // addresses, `dst` what the output plan addresses.
                        unsafe {
                            k(
                                dst.cast(),
                                base::<$t>(&x),
                                input.lo,
                                input.lr,
                                output.lo,
                                output.lr,
                                input.n_out as i64,
                                input.n_red as i64,
                                i32::from(product),
                            )
                        }
                    }};
                }
                match dtype {
                    DType::F32 => run!(f32),
                    DType::F64 => run!(f64),
                    _ => run!(i64),
                }
                assert!(
                    out.bit_eq(&want),
                    "{dtype} dim {d} product {product}: {out} vs {want}"
                );
            }
        }
    }
}

#[test]
fn reduction_kernels_sum_multiply_and_pick_extremes_over_any_dims() {
    let Some(lib) = kernels() else { return };
    let values: Vec<f64> = (0..60)
        .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.25)
        .collect();
    for dtype in [DType::F32, DType::F64, DType::I64] {
        let mut v = values.clone();
        if dtype.is_float() {
            v[17] = f64::NAN;
        }
        // a permuted view: no dim is contiguous with its neighbour
        let x = wide_if_integer(Array::from_vec(v, &[3, 4, 5]).to_dtype(dtype)).permute(&[2, 0, 1]);
        for dims in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
            for (r, mean) in [
                (Reduce::Sum, false),
                (Reduce::Sum, true),
                (Reduce::Max, false),
                (Reduce::Min, false),
                (Reduce::Prod, false),
            ] {
                if mean && !dtype.is_float() {
                    continue;
                }
                let op = match (r, mean) {
                    (Reduce::Sum, false) => "sum_dim",
                    (Reduce::Sum, true) => "mean_dim",
                    (Reduce::Max, _) => "amax_dim",
                    (Reduce::Min, _) => "amin_dim",
                    (Reduce::Prod, _) => "prod_dim",
                };
                let want = match op {
                    "sum_dim" => x.sum_dim(dims.as_slice(), true),
                    "mean_dim" => x.mean_dim(dims.as_slice(), true),
                    "amax_dim" => x.amax_dim(dims.as_slice(), true),
                    "amin_dim" => x.amin_dim(dims.as_slice(), true),
                    _ => x.prod_dim(dims.as_slice(), true),
                };
                let plan = super::reduce::plan(&x, &dims, true, op);
                assert_eq!(plan.shape, want.shape());
                let k: ReduceKernel = symbol(lib, &source::reduce_name(r, dtype));
                let scale = if mean { 1.0 / plan.n_red as f64 } else { 1.0 };
                let mut out = Array::zeros(&plan.shape, dtype);
                macro_rules! run {
                    ($t:ty) => {{
                        let dst = out.out_slice::<$t>(&plan.shape, "test").as_mut_ptr();
                        // SAFETY: the kernel's signature; `x`'s storage holds what the
                        // plan's layouts address, `dst` n_out elements.
                        unsafe {
                            k(
                                dst.cast(),
                                base::<$t>(&x),
                                plan.lo,
                                plan.lr,
                                plan.n_out as i64,
                                plan.n_red as i64,
                                scale,
                            )
                        }
                    }};
                }
                match dtype {
                    DType::F32 => run!(f32),
                    DType::F64 => run!(f64),
                    _ => run!(i64),
                }
                // (a product of up to 60 factors, multiplied in another order)
                let rel = match (dtype, r) {
                    (DType::F32, Reduce::Prod) => 1e-5,
                    (DType::F32, _) => 1e-6,
                    (_, Reduce::Prod) => 1e-13,
                    _ => 1e-14,
                };
                if dtype == DType::I64 {
                    assert!(out.bit_eq(&want), "{op} i64 over {dims:?}: {out} vs {want}");
                } else if let Err(e) = close(&out, &want, rel) {
                    panic!("{op} {dtype} over {dims:?}: {e}");
                }
            }
        }
    }
}

#[test]
fn softmax_kernels_and_their_gradients_compute_what_the_cpu_does() {
    let Some(lib) = kernels() else { return };
    let mut g = crate::Generator::new(7);
    for dtype in [DType::F32, DType::F64] {
        let rel = if dtype == DType::F32 { 1e-5 } else { 1e-13 };
        let mut x = g.normal(&[3, 4, 5], 0.0, 3.0, dtype).to_f64_vec();
        x[7] = f64::NEG_INFINITY; // a masked entry
        let x = Array::from_vec(x, &[3, 4, 5]).to_dtype(dtype);
        let grad = g.normal(&[3, 4, 5], 0.0, 1.0, dtype);
        for d in 0..3 {
            let (outer, n, inner): (usize, usize, usize) = (
                x.shape()[..d].iter().product(),
                x.shape()[d],
                x.shape()[d + 1..].iter().product(),
            );
            let rows = (outer * inner) as i64;
            for log in [false, true] {
                let y = if log { x.log_softmax(d) } else { x.softmax(d) };
                let fwd: SoftmaxKernel = symbol(lib, &source::softmax_name(dtype, log, false));
                let bwd: SoftmaxBackwardKernel =
                    symbol(lib, &source::softmax_name(dtype, log, true));
                let mut out = Array::zeros(x.shape(), dtype);
                let mut dx = Array::zeros(x.shape(), dtype);
                macro_rules! run {
                    ($t:ty) => {{
                        let o = out.out_slice::<$t>(&[3, 4, 5], "test").as_mut_ptr();
                        // SAFETY: the kernel's signature; contiguous operands of 60 elements.
                        unsafe { fwd(o.cast(), base::<$t>(&x), rows, n as i64, inner as i64) };
                        let o = dx.out_slice::<$t>(&[3, 4, 5], "test").as_mut_ptr();
                        // SAFETY: as above.
                        unsafe {
                            bwd(
                                o.cast(),
                                base::<$t>(&y),
                                base::<$t>(&grad),
                                rows,
                                n as i64,
                                inner as i64,
                            )
                        };
                    }};
                }
                match dtype {
                    DType::F32 => run!(f32),
                    _ => run!(f64),
                }
                let want_dx = if log {
                    y.log_softmax_backward(&grad, d)
                } else {
                    y.softmax_backward(&grad, d)
                };
                let what = if log { "log_softmax" } else { "softmax" };
                close(&out, &y, rel).unwrap_or_else(|e| panic!("{what} {dtype} dim {d}: {e}"));
                close(&dx, &want_dx, rel)
                    .unwrap_or_else(|e| panic!("{what} backward {dtype} dim {d}: {e}"));
            }
        }
    }
}

#[test]
fn gather_scatter_and_where_kernels_compute_what_the_cpu_does() {
    let Some(lib) = kernels() else { return };
    let mut g = crate::Generator::new(8);
    for dtype in [DType::F32, DType::F64, DType::I64] {
        // [6, 4, 3], strided (integers: the normal draws truncated)
        let x = g
            .normal(&[4, 6, 3], 0.0, 5.0, DType::F64)
            .to_dtype(dtype)
            .permute(&[1, 0, 2]);
        // a strided index with repeats, along each dim
        for d in 0..3 {
            let size = x.shape()[d] as i64;
            let mut ishape = [5, 4, 3];
            ishape[1] = 2; // smaller than x along a dim that is not d
            if d == 1 {
                ishape = [5, 4, 2];
            }
            let n: usize = ishape.iter().product();
            let idx: Vec<i64> = (0..n as i64).map(|i| (i * 7 + 3) % size).collect();
            let index =
                Array::from_vec(idx, &[ishape[2], ishape[1], ishape[0]]).permute(&[2, 1, 0]);
            let want = x.gather(d, &index);
            let k: GatherKernel = symbol(lib, &source::gather_name(dtype));
            let lbase = super::elementwise::pack(
                index
                    .shape()
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| (s, if k == d { 0 } else { x.strides()[k] as i64 })),
                x.offset(),
                "test",
            );
            let li = layout(&index, index.shape(), "test");
            let mut out = Array::zeros(index.shape(), dtype);
            // scatter-add the gathered values back into zeros: repeats add up
            let zeros = Array::zeros(x.shape(), dtype);
            let sum_back = zeros.scatter_add(d, &index, &want);
            let sk: ScatterAddKernel = symbol(lib, &source::scatter_add_name(dtype));
            let mut acc = Array::zeros(x.shape(), dtype);
            let strides = crate::layout::contiguous_strides(x.shape());
            let lout = super::elementwise::pack(
                index
                    .shape()
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| (s, if k == d { 0 } else { strides[k] as i64 })),
                0,
                "test",
            );
            macro_rules! run {
                ($t:ty) => {{
                    let o = out.out_slice::<$t>(index.shape(), "test").as_mut_ptr();
                    // SAFETY: the kernel's signature; positions inside dim d of `x`.
                    unsafe {
                        k(
                            o.cast(),
                            base::<$t>(&x),
                            lbase,
                            x.strides()[d] as i64,
                            base::<i64>(&index),
                            li,
                            n as i64,
                        )
                    };
                    let w = want.contiguous();
                    let o = acc.out_slice::<$t>(x.shape(), "test").as_mut_ptr();
                    // SAFETY: the kernel's signature; `acc` contiguous with x's shape.
                    unsafe {
                        sk(
                            o.cast(),
                            lout,
                            strides[d] as i64,
                            base::<i64>(&index),
                            li,
                            base::<$t>(&w),
                            layout(&w, index.shape(), "test"),
                            n as i64,
                        )
                    };
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                DType::F64 => run!(f64),
                _ => run!(i64),
            }
            assert!(out.bit_eq(&want), "gather {dtype} dim {d}: {out} vs {want}");
            close(&acc, &sum_back, 1e-6)
                .unwrap_or_else(|e| panic!("scatter_add {dtype} dim {d}: {e}"));
            // scatter distinct values into x: where positions repeat, the last one wins
            let src = Array::from_vec((0..n).map(|i| i as f64 + 0.5).collect(), index.shape())
                .to_dtype(dtype);
            let want_scatter = x.scatter(d, &index, &src);
            let claim: ScatterClaimKernel = symbol(lib, source::SCATTER_CLAIM);
            let place: ScatterKernel = symbol(lib, &source::scatter_name(dtype));
            let mut placed = x.contiguous();
            let mut winner = vec![0u64; x.numel()];
            macro_rules! scatter {
                ($t:ty) => {{
                    let o = placed.out_slice::<$t>(x.shape(), "test").as_mut_ptr();
                    // SAFETY: the kernels' signatures; positions inside dim d of `x`, whose
                    // elements `winner` and `placed` hold (contiguous).
                    unsafe {
                        claim(
                            winner.as_mut_ptr().cast(),
                            lout,
                            strides[d] as i64,
                            base::<i64>(&index),
                            li,
                            n as i64,
                        );
                        place(
                            o.cast(),
                            lout,
                            strides[d] as i64,
                            base::<i64>(&index),
                            li,
                            base::<$t>(&src),
                            layout(&src, index.shape(), "test"),
                            winner.as_ptr().cast(),
                            n as i64,
                        )
                    };
                }};
            }
            match dtype {
                DType::F32 => scatter!(f32),
                DType::F64 => scatter!(f64),
                _ => scatter!(i64),
            }
            assert!(
                placed.bit_eq(&want_scatter),
                "scatter {dtype} dim {d}: {placed} vs {want_scatter}"
            );
            // index_select is the gather of the broadcast 1-d index
            let list = Array::from_vec(vec![size - 1, 0, 1 % size, size - 1], &[4]);
            let mut shape = x.shape().to_vec();
            shape[d] = 4;
            let wide = super::index::broadcast_index(&list, d, &shape);
            assert!(x.gather(d, &wide).bit_eq(&x.index_select(d, &list)));
        }
        // where, with a strided condition and a scalar on either side
        let c = Array::from_vec((0..12).map(|i| i % 3 == 0).collect::<Vec<_>>(), &[3, 4]).t();
        let a = g.normal(&[4, 1], 0.0, 9.0, DType::F64).to_dtype(dtype);
        let b = Array::full(&[], -2.0, dtype);
        let wk: WhereKernel = symbol(lib, &source::where_name(dtype));
        for (p, q) in [(&a, &b), (&b, &a)] {
            let want = c.where_cond(p, q);
            let shape = want.shape().to_vec();
            let mut out = Array::zeros(&shape, dtype);
            macro_rules! run {
                ($t:ty) => {{
                    let op = |v: &Array| -> (*const c_void, u64, i32) {
                        if v.ndim() == 0 {
                            (std::ptr::null(), scalar_bits(v), 1)
                        } else {
                            (base::<$t>(v), 0, 0)
                        }
                    };
                    let ((pa, sa, fa), (pb, sb, fb)) = (op(p), op(q));
                    let o = out.out_slice::<$t>(&shape, "test").as_mut_ptr();
                    // SAFETY: the kernel's signature; each operand's storage holds what its
                    // layout addresses, a scalar's null pointer is never read.
                    unsafe {
                        wk(
                            o.cast(),
                            base::<bool>(&c),
                            layout(&c, &shape, "test"),
                            pa,
                            layout(p, &shape, "test"),
                            pb,
                            layout(q, &shape, "test"),
                            want.numel() as i64,
                            sa,
                            sb,
                            fa | fb << 1,
                        )
                    };
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                DType::F64 => run!(f64),
                _ => run!(i64),
            }
            assert!(out.bit_eq(&want), "where {dtype}: {out} vs {want}");
        }
    }
}

#[test]
fn copy_kernels_place_blocks_as_cat_and_pad_narrow_do() {
    let Some(lib) = kernels() else { return };
    let mut g = crate::Generator::new(9);
    for dtype in [DType::F32, DType::I64] {
        let k: CopyKernel = symbol(lib, &source::copy_name(dtype));
        for d in 0..3 {
            // three strided parts of different sizes along d
            let parts: Vec<Array> = [2usize, 1, 3]
                .iter()
                .map(|&s| {
                    let mut shape = [4usize, 3, 5];
                    shape[d] = s;
                    let mut rev = shape;
                    rev.reverse();
                    g.normal(&rev, 0.0, 4.0, DType::F64)
                        .to_dtype(dtype)
                        .permute(&[2, 1, 0])
                })
                .collect();
            let want = Array::cat(&parts, d);
            let shape = want.shape().to_vec();
            let mut out = Array::zeros(&shape, dtype);
            let mut start = 0;
            for p in &parts {
                let lo = super::index::block(&shape, p.shape(), d, start, "test");
                macro_rules! run {
                    ($t:ty) => {{
                        let o = out.out_slice::<$t>(&shape, "test").as_mut_ptr();
                        // SAFETY: the kernel's signature; the block lies inside `out`.
                        unsafe {
                            k(
                                o.cast(),
                                lo,
                                base::<$t>(p),
                                layout(p, p.shape(), "test"),
                                p.numel() as i64,
                            )
                        }
                    }};
                }
                match dtype {
                    DType::F32 => run!(f32),
                    _ => run!(i64),
                }
                start += p.shape()[d];
            }
            assert!(out.bit_eq(&want), "cat {dtype} dim {d}: {out} vs {want}");
            // pad_narrow: the middle part placed in zeros
            let padded = parts[2].pad_narrow(d, 1, parts[2].shape()[d] + 2);
            let pshape = padded.shape().to_vec();
            let mut out = Array::zeros(&pshape, dtype);
            let lo = super::index::block(&pshape, parts[2].shape(), d, 1, "test");
            let p = &parts[2];
            macro_rules! run {
                ($t:ty) => {{
                    let o = out.out_slice::<$t>(&pshape, "test");
                    o.fill(<$t>::default());
                    // SAFETY: as above.
                    unsafe {
                        k(
                            o.as_mut_ptr().cast(),
                            lo,
                            base::<$t>(p),
                            layout(p, p.shape(), "test"),
                            p.numel() as i64,
                        )
                    }
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                _ => run!(i64),
            }
            assert!(out.bit_eq(&padded), "pad_narrow {dtype} dim {d}");
        }
    }
}

#[test]
fn im2col_and_col2im_kernels_give_the_cpu_convolution_and_its_gradients() {
    let Some(lib) = kernels() else { return };
    let mut g = crate::Generator::new(10);
    let p = |stride, padding, dilation, groups| crate::Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    };
    // (params, input channels, output channels)
    let geometries = [
        (crate::Conv2dParams::default(), 3, 4),
        (p((2, 1), (1, 2), (1, 2), 1), 3, 4),
        (p((3, 2), (2, 0), (2, 1), 1), 3, 4),
        (p((2, 1), (1, 2), (1, 2), 2), 4, 6),
        (p((1, 1), (1, 1), (1, 1), 4), 4, 4),
    ];
    for dtype in [DType::F32, DType::F64] {
        let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        for (p, c, o) in geometries {
            let x = g.normal(&[2, c, 9, 8], 0.0, 1.0, dtype);
            let w = g.normal(&[o, c / p.groups, 3, 2], 0.0, 1.0, dtype);
            let y = x.conv2d(&w, None, p);
            let (oh, ow) = (y.shape()[2], y.shape()[3]);
            let geom = super::conv::geom(x.shape(), (3, 2), (oh, ow), p);
            let (ck, l) = (c * 3 * 2, oh * ow);
            let mut col = Array::zeros(&[2, ck, l], dtype);
            let im2col: Im2colKernel = symbol(lib, &source::im2col_name(dtype, false));
            let col2im: Im2colKernel = symbol(lib, &source::im2col_name(dtype, true));
            let dy = g.normal(y.shape(), 0.0, 1.0, dtype);
            let dcol = super::conv::columns_grad(&w, &dy, geom, p);
            let mut dx = Array::zeros(x.shape(), dtype);
            macro_rules! run {
                ($t:ty) => {{
                    let cp = col.out_slice::<$t>(&[2, ck, l], "test").as_mut_ptr();
                    // SAFETY: the kernel's signature; contiguous operands of the sizes `geom`
                    // says.
                    unsafe { im2col(cp.cast(), base::<$t>(&x), geom) };
                    let d = dx.out_slice::<$t>(&[2, c, 9, 8], "test").as_mut_ptr();
                    // SAFETY: as above.
                    unsafe { col2im(d.cast(), base::<$t>(&dcol), geom) };
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                _ => run!(f64),
            }
            // the backend's products over the columns, here on the host
            let via_columns = super::conv::columns_product(&w, &col, geom, p);
            close(&via_columns, &y, rel).unwrap_or_else(|e| panic!("conv2d {dtype} {p:?}: {e}"));
            let want = dy.conv2d_backward_input(&w, x.shape(), p);
            close(&dx, &want, rel)
                .unwrap_or_else(|e| panic!("conv2d input gradient {dtype} {p:?}: {e}"));
            let dw = super::conv::weight_grad(&dy, &col, w.shape(), geom, p);
            let want = dy.conv2d_backward_weight(&x, w.shape(), p);
            close(&dw, &want, rel)
                .unwrap_or_else(|e| panic!("conv2d weight gradient {dtype} {p:?}: {e}"));
        }
    }
}

#[test]
fn pooling_kernels_compute_what_the_cpu_does() {
    let Some(lib) = kernels() else { return };
    let mut g = crate::Generator::new(11);
    let settings = [
        crate::Pool2dParams::square(2),
        crate::Pool2dParams {
            kernel: (3, 2),
            stride: (2, 1),
            padding: (1, 1),
        },
        crate::Pool2dParams {
            kernel: (3, 3),
            stride: (1, 2),
            padding: (1, 0),
        },
    ];
    for dtype in [DType::F32, DType::F64] {
        let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        for p in settings {
            let mut v = g.normal(&[2, 3, 7, 6], 0.0, 1.0, DType::F64).to_f64_vec();
            v[5] = f64::NAN; // NaN wins its windows
            v[40] = v[41]; // a tie: the first maximum
            let x = Array::from_vec(v, &[2, 3, 7, 6]).to_dtype(dtype);
            let (values, indices) = x.max_pool2d(p);
            let (oh, ow) = (values.shape()[2], values.shape()[3]);
            let geom = super::pool::geom(x.shape(), (oh, ow), p);
            let oshape = values.shape().to_vec();
            let dy = g.normal(&oshape, 0.0, 1.0, dtype);
            let (mut got_v, mut got_i) = (
                Array::zeros(&oshape, dtype),
                Array::zeros(&oshape, DType::I64),
            );
            let (mut dx, mut picked) =
                (Array::zeros(x.shape(), dtype), Array::zeros(&oshape, dtype));
            let (mut avg, mut avg_in) =
                (Array::zeros(&oshape, dtype), Array::zeros(&oshape, dtype));
            let (mut davg, mut davg_in) = (
                Array::zeros(x.shape(), dtype),
                Array::zeros(x.shape(), dtype),
            );
            let name = |k| source::pool_name(k, dtype);
            let max: PoolKernel4 = symbol(lib, &name(Pool::Max));
            let max_back: PoolKernel4 = symbol(lib, &name(Pool::MaxBackward));
            let gather: PoolKernel4 = symbol(lib, &name(Pool::GatherPlanes));
            let avg_k: AvgKernel = symbol(lib, &name(Pool::Avg));
            let avg_back: AvgKernel = symbol(lib, &name(Pool::AvgBackward));
            macro_rules! run {
                ($t:ty) => {{
                    let xs = x.shape().to_vec();
                    let pv = got_v.out_slice::<$t>(&oshape, "test").as_mut_ptr();
                    let pi = got_i.out_slice::<i64>(&oshape, "test").as_mut_ptr();
                    // SAFETY (each call): the kernel's signature; contiguous operands of the
                    // sizes `geom` says.
                    unsafe { max(pv.cast(), pi.cast(), base::<$t>(&x), geom) };
                    let pd = dx.out_slice::<$t>(&xs, "test").as_mut_ptr();
                    unsafe { max_back(pd.cast(), base::<$t>(&dy), base::<i64>(&indices), geom) };
                    let pp = picked.out_slice::<$t>(&oshape, "test").as_mut_ptr();
                    unsafe { gather(pp.cast(), base::<$t>(&x), base::<i64>(&indices), geom) };
                    let pa = avg.out_slice::<$t>(&oshape, "test").as_mut_ptr();
                    unsafe { avg_k(pa.cast(), base::<$t>(&x), geom, 0) };
                    let pa = avg_in.out_slice::<$t>(&oshape, "test").as_mut_ptr();
                    unsafe { avg_k(pa.cast(), base::<$t>(&x), geom, 1) };
                    let pa = davg.out_slice::<$t>(&xs, "test").as_mut_ptr();
                    unsafe { avg_back(pa.cast(), base::<$t>(&dy), geom, 0) };
                    let pa = davg_in.out_slice::<$t>(&xs, "test").as_mut_ptr();
                    unsafe { avg_back(pa.cast(), base::<$t>(&dy), geom, 1) };
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                _ => run!(f64),
            }
            let what = format!("{dtype} {p:?}");
            assert!(got_i.bit_eq(&indices), "max_pool2d indices {what}");
            assert!(got_v.bit_eq(&values), "max_pool2d values {what}");
            close(&dx, &dy.max_pool2d_backward(&indices, x.shape()), rel)
                .unwrap_or_else(|e| panic!("max_pool2d_backward {what}: {e}"));
            assert!(
                picked.bit_eq(&x.gather_planes(&indices)),
                "gather_planes {what}"
            );
            close(&avg, &x.avg_pool2d(p, false), rel)
                .unwrap_or_else(|e| panic!("avg_pool2d {what}: {e}"));
            close(&avg_in, &x.avg_pool2d(p, true), rel)
                .unwrap_or_else(|e| panic!("avg_pool2d counting the padding {what}: {e}"));
            close(&davg, &dy.avg_pool2d_backward(x.shape(), p, false), rel)
                .unwrap_or_else(|e| panic!("avg_pool2d_backward {what}: {e}"));
            close(&davg_in, &dy.avg_pool2d_backward(x.shape(), p, true), rel)
                .unwrap_or_else(|e| panic!("avg_pool2d_backward counting the padding {what}: {e}"));
        }
    }
}

#[test]
fn arg_extreme_kernels_pick_the_first_extreme_as_the_cpu_does() {
    let Some(lib) = kernels() else { return };
    for dtype in [DType::F32, DType::F64, DType::I64] {
        // ties everywhere (values from a small set), a NaN in the float cases
        let mut v: Vec<f64> = (0..60).map(|i| ((i * 37 % 23) % 5) as f64).collect();
        if dtype.is_float() {
            v[17] = f64::NAN;
            v[44] = f64::NAN;
        }
        let x = Array::from_vec(v, &[3, 4, 5])
            .to_dtype(dtype)
            .permute(&[2, 0, 1]);
        let k: ExtremeKernel = symbol(lib, &source::extreme_name(dtype));
        for d in 0..3 {
            for largest in [true, false] {
                let (want_v, want_i) = if largest {
                    x.max_dim(d, false)
                } else {
                    x.min_dim(d, false)
                };
                let plan = super::reduce::plan(&x, &[d], false, "test");
                let mut got_v = Array::zeros(&plan.shape, dtype);
                let mut got_i = Array::zeros(&plan.shape, DType::I64);
                macro_rules! run {
                    ($t:ty) => {{
                        let pv = got_v.out_slice::<$t>(&plan.shape, "test").as_mut_ptr();
                        let pi = got_i.out_slice::<i64>(&plan.shape, "test").as_mut_ptr();
                        // SAFETY: the kernel's signature; `x` holds what the plan addresses.
                        unsafe {
                            k(
                                pi.cast(),
                                pv.cast(),
                                base::<$t>(&x),
                                plan.lo,
                                plan.lr,
                                plan.n_out as i64,
                                plan.n_red as i64,
                                i32::from(largest),
                            )
                        }
                    }};
                }
                match dtype {
                    DType::F32 => run!(f32),
                    DType::F64 => run!(f64),
                    _ => run!(i64),
                }
                assert!(
                    got_i.bit_eq(&want_i),
                    "{dtype} dim {d} largest {largest}: {got_i} vs {want_i}"
                );
                assert!(
                    got_v.bit_eq(&want_v),
                    "{dtype} dim {d} largest {largest}: {got_v} vs {want_v}"
                );
            }
        }
    }
}

/// `argsort` along each dim of a permuted view, ascending and descending, with ties, NaNs
/// and a row length that is not a power of two: the bitonic network's stages, run in turn
/// as the backend launches them, give the CPU's stable order.
#[test]
fn the_argsort_network_orders_rows_as_the_cpus_stable_sort() {
    let Some(lib) = kernels() else { return };
    // values with repeats (i % 7) and, for floats, NaNs
    let values: Vec<f64> = (0..60).map(|i| ((i * 37 % 23) % 7) as f64 - 3.0).collect();
    for dtype in [DType::F32, DType::F64, DType::I64, DType::Bool] {
        let mut v = values.clone();
        if dtype.is_float() {
            (v[5], v[17], v[18]) = (f64::NAN, f64::NAN, f64::NEG_INFINITY);
        }
        let x = Array::from_vec(v, &[3, 4, 5])
            .to_dtype(dtype)
            .permute(&[2, 0, 1]);
        for d in 0..3 {
            for descending in [false, true] {
                let want = x.argsort(d, descending);
                let moved = x.transpose(d, 2);
                let got = Array::from_vec(network_argsort(lib, &moved, descending), moved.shape())
                    .transpose(d, 2);
                assert!(
                    got.bit_eq(&want),
                    "{dtype} dim {d} descending {descending}: {got} vs {want}"
                );
            }
        }
    }
}

/// The indices that sort each row (the last dim) of `x`, by the argsort network's kernels
/// launched as the backend launches them, row after row.
fn network_argsort(lib: &libloading::Library, x: &Array, descending: bool) -> Vec<i64> {
    let init: ArgsortInitKernel = symbol(lib, source::ARGSORT_INIT);
    let step: ArgsortStepKernel = symbol(lib, &source::argsort_step_name(x.dtype()));
    let (len, n) = (x.shape()[x.ndim() - 1], x.numel());
    let (rows, padded) = (n / len, len.next_power_of_two());
    let mut idx = vec![0i64; rows * padded];
    let lx = layout(x, x.shape(), "test");
    let x_ptr = match x.dtype() {
        DType::F32 => base::<f32>(x),
        DType::F64 => base::<f64>(x),
        DType::I64 => base::<i64>(x),
        DType::Bool => base::<bool>(x),
    };
    // SAFETY: the kernels' signatures; `idx` holds `rows` padded rows, each index below
    // `len` naming an element of `x` that `lx` addresses.
    unsafe {
        init(idx.as_mut_ptr().cast(), idx.len() as i64, padded as i64);
        let mut k = 2;
        while k <= padded as i64 {
            let mut j = k / 2;
            while j > 0 {
                step(
                    idx.as_mut_ptr().cast(),
                    x_ptr,
                    lx,
                    rows as i64,
                    len as i64,
                    padded as i64,
                    k,
                    j,
                    i32::from(descending),
                );
                j /= 2;
            }
            k *= 2;
        }
    }
    idx.chunks(padded)
        .flat_map(|row| row[..len].to_vec())
        .collect()
}

/// The deterministic scatter-add ([`crate::set_deterministic`]) as the backend runs it:
/// positions written down, sorted by the argsort network, runs added in order. Values of
/// magnitudes 1 to 10¹⁸, so a sum's bits depend on its order (checked: the reversed order
/// gives other bits), must give the CPU's bits exactly: `scatter_add` and `index_add` along
/// each dim of a strided array with repeats, and max pooling's gradient with overlapping windows and
/// windows that chose nothing.
#[test]
fn deterministic_scatter_adds_give_the_cpus_bits() {
    let Some(lib) = kernels() else { return };
    let keys_k: ScatterKeysKernel = symbol(lib, source::SCATTER_KEYS);
    // src[i]: (i·37 mod 11 - 5) · 10^(6 (i mod 4))
    let spread = |n: usize, shape: &[usize], dtype: DType| {
        let v = (0..n)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 10f64.powi(6 * (i % 4) as i32))
            .collect();
        Array::from_vec(v, shape).to_dtype(dtype)
    };
    // the deterministic add of `src` (contiguous, n) into `out` at the keys that `lbase`,
    // `stride` and `index` (contiguous, n) give
    let add = |out: &mut Array, lbase: Layout, stride: i64, index: &Array, src: &Array| {
        let n = index.numel();
        let flat = super::elementwise::pack(std::iter::once((n, 1)), 0, "test");
        let mut keys = vec![0i64; n];
        // SAFETY: the kernel's signature; `keys` and the contiguous `index` hold n elements.
        unsafe {
            keys_k(
                keys.as_mut_ptr().cast(),
                lbase,
                stride,
                base::<i64>(index),
                flat,
                n as i64,
            )
        };
        let order = network_argsort(lib, &Array::from_vec(keys.clone(), &[n]), false);
        let dtype = out.dtype();
        let shape = out.shape().to_vec();
        macro_rules! run {
            ($t:ty) => {{
                let k: ScatterSortedKernel<$t> =
                    symbol(lib, &source::scatter_add_sorted_name(dtype));
                let o = out.out_slice::<$t>(&shape, "test").as_mut_ptr();
                // SAFETY: the kernel's signature; every key is -1 or inside `out`
                // (contiguous), `src` contiguous with n elements.
                unsafe {
                    k(
                        o,
                        keys.as_ptr(),
                        order.as_ptr(),
                        base::<$t>(src).cast(),
                        flat,
                        n as i64,
                    )
                };
            }};
        }
        match dtype {
            DType::F32 => run!(f32),
            _ => run!(f64),
        }
    };
    let mut g = crate::Generator::new(12);
    for dtype in [DType::F32, DType::F64] {
        let mut order_matters = false;
        let x = g
            .normal(&[4, 6, 3], 0.0, 5.0, DType::F64)
            .to_dtype(dtype)
            .permute(&[1, 0, 2]);
        let strides = crate::layout::contiguous_strides(x.shape());
        for d in 0..3 {
            let size = x.shape()[d] as i64;
            let ishape = if d == 1 { [5, 4, 2] } else { [5, 2, 3] };
            let n: usize = ishape.iter().product();
            let index =
                Array::from_vec((0..n as i64).map(|i| (i * 7 + 3) % size).collect(), &ishape);
            let src = spread(n, &ishape, dtype);
            let want = x.scatter_add(d, &index, &src);
            let reversed = x.scatter_add(d, &index.flip([0, 1, 2]), &src.flip([0, 1, 2]));
            order_matters |= !reversed.bit_eq(&want);
            let lbase = super::elementwise::pack(
                ishape
                    .iter()
                    .enumerate()
                    .map(|(k, &s)| (s, if k == d { 0 } else { strides[k] as i64 })),
                0,
                "test",
            );
            let mut got = x.contiguous();
            add(&mut got, lbase, strides[d] as i64, &index, &src);
            assert!(
                got.bit_eq(&want),
                "scatter_add {dtype} dim {d}: {got} vs {want}"
            );
        }
        // index_add along each dim, by its own kernel (the index's rows sorted, not every
        // source element): repeated rows, a strided index and a strided source
        for d in 0..3 {
            let size = x.shape()[d];
            let k = 9;
            let index = Array::from_vec(
                (0..2 * k as i64)
                    .map(|j| (j * 5 + 2) % size as i64)
                    .collect(),
                &[2 * k],
            )
            .narrow(0, 0, k)
            .flip([0]);
            let mut sshape = x.shape().to_vec();
            sshape[d] = k;
            let n: usize = sshape.iter().product();
            sshape.reverse();
            let src = spread(n, &sshape, dtype).permute(&[2, 1, 0]);
            let want = x.index_add(d, &index, &src);
            let reversed = x.index_add(d, &index.flip([0]), &src.flip([d]));
            order_matters |= !reversed.bit_eq(&want);
            let order = network_argsort(lib, &index, false);
            let shape = x.shape();
            let (outer, inner) = (
                shape[..d].iter().product::<usize>(),
                shape[d + 1..].iter().product::<usize>(),
            );
            let (li, ls) = (
                layout(&index, index.shape(), "test"),
                layout(&src, src.shape(), "test"),
            );
            let mut got = x.contiguous();
            macro_rules! run {
                ($t:ty) => {{
                    let kern: IndexAddSortedKernel<$t> =
                        symbol(lib, &source::index_add_sorted_name(dtype));
                    let o = got.out_slice::<$t>(shape, "test").as_mut_ptr();
                    // SAFETY: the kernel's signature; `got` contiguous in `x`'s shape, the
                    // index's positions inside dim `d`, `src` `x`'s shape with `k` at `d`,
                    // `order` k positions.
                    unsafe {
                        kern(
                            o,
                            base::<i64>(&index),
                            li,
                            order.as_ptr(),
                            base::<$t>(&src),
                            ls,
                            k as i64,
                            size as i64,
                            inner as i64,
                            (outer * k * inner) as i64,
                        )
                    };
                }};
            }
            match dtype {
                DType::F32 => run!(f32),
                _ => run!(f64),
            }
            assert!(
                got.bit_eq(&want),
                "index_add {dtype} dim {d}: {got} vs {want}"
            );
        }
        // max pooling's gradient: stride 1 windows of 3 share their maxima
        let x = g.normal(&[2, 3, 7, 6], 0.0, 1.0, dtype);
        let (values, indices) = x.max_pool2d(crate::Pool2dParams {
            kernel: (3, 3),
            stride: (1, 1),
            padding: (1, 1),
        });
        let mut at = indices.to_vec::<i64>();
        (at[0], at[9]) = (-1, -1); // windows that chose nothing
        let indices = Array::from_vec(at, indices.shape());
        let dy = spread(values.numel(), values.shape(), dtype);
        let want = dy.max_pool2d_backward(&indices, x.shape());
        let reversed = dy
            .flip([2, 3])
            .max_pool2d_backward(&indices.flip([2, 3]), x.shape());
        order_matters |= !reversed.bit_eq(&want);
        let (planes, s, hw) = (6, values.numel() / 6, 7 * 6);
        let lbase = super::elementwise::pack([(planes, hw as i64), (s, 0)].into_iter(), 0, "test");
        let mut got = Array::zeros(x.shape(), dtype);
        add(&mut got, lbase, 1, &indices, &dy);
        assert!(
            got.bit_eq(&want),
            "max_pool2d_backward {dtype}: {got} vs {want}"
        );
        assert!(order_matters, "{dtype}: no sum above depends on its order");
    }
}

/// Fused programs' generated kernels, run on the host, against the CPU evaluator: inputs
/// broadcast, strided and of one element, constants (a NaN and an infinity among them),
/// parameterised functions, a select on a comparison, several outputs and both kinds of
/// reduction (their values written out and summed as the backend sums them).
#[test]
fn fused_program_kernels_compute_what_the_cpu_evaluator_does() {
    use crate::fused::{Instr, Program, Reduction};
    let mut g = crate::Generator::new(12);
    let programs: Vec<(Program, usize)> = vec![
        // tanh(x + b), b a broadcast row
        (
            Program::new(
                vec![
                    Instr::Input(0),
                    Instr::Input(1),
                    Instr::Zip(ZipFn::Add, 0, 1),
                    Instr::Map(MapFn::Tanh, 2),
                ],
                vec![3],
            ),
            2,
        ),
        // an LSTM cell: c' = σ(f)·c + σ(i)·tanh(u), h = σ(o)·tanh(c')
        (
            Program::new(
                vec![
                    Instr::Input(0),
                    Instr::Input(1),
                    Instr::Input(2),
                    Instr::Input(3),
                    Instr::Input(4),
                    Instr::Map(MapFn::Sigmoid, 0),
                    Instr::Map(MapFn::Sigmoid, 1),
                    Instr::Map(MapFn::Tanh, 2),
                    Instr::Map(MapFn::Sigmoid, 3),
                    Instr::Zip(ZipFn::Mul, 6, 4),
                    Instr::Zip(ZipFn::Mul, 5, 7),
                    Instr::Zip(ZipFn::Add, 9, 10),
                    Instr::Map(MapFn::Tanh, 11),
                    Instr::Zip(ZipFn::Mul, 8, 12),
                ],
                vec![13, 11],
            ),
            5,
        ),
        // leaky relu by a select, clamps, powers, a reciprocal, NaN and ∞ constants
        (
            Program::new(
                vec![
                    Instr::Input(0),
                    Instr::Const(0.0),
                    Instr::Zip(ZipFn::Gt, 0, 1),
                    Instr::Const(0.1),
                    Instr::Zip(ZipFn::Mul, 0, 3),
                    Instr::Select(2, 0, 4),
                    Instr::Map(MapFn::Clamp(Some(-0.25), None), 5),
                    Instr::Map(MapFn::Powi(3), 6),
                    Instr::Map(MapFn::pow_scalar(1.5), 0),
                    Instr::Const(f64::INFINITY),
                    Instr::Zip(ZipFn::Minimum, 8, 9),
                    Instr::Const(f64::NAN),
                    Instr::Zip(ZipFn::Maximum, 0, 11),
                    Instr::Map(MapFn::Reciprocal, 7),
                    Instr::Input(1),
                    Instr::Zip(ZipFn::TanhBackward, 14, 0),
                ],
                vec![7, 10, 12, 13, 15],
            ),
            2,
        ),
        // a loss's sum and a bias gradient's column sum
        (
            Program::with_reductions(
                vec![
                    Instr::Input(0),
                    Instr::Input(1),
                    Instr::Zip(ZipFn::Sub, 0, 1),
                    Instr::Map(MapFn::Square, 2),
                ],
                vec![2],
                vec![
                    Reduction {
                        value: 3,
                        mean: true,
                        shape: [].as_slice().into(),
                    },
                    Reduction {
                        value: 2,
                        mean: false,
                        shape: [6].as_slice().into(),
                    },
                ],
            ),
            2,
        ),
    ];
    for dtype in [DType::F32, DType::F64] {
        let rel = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
        let kernels: Vec<(String, String)> = programs
            .iter()
            .map(|(p, _)| source::program_source(p, dtype).expect("a kernel"))
            .collect();
        let sources: Vec<String> = kernels.iter().map(|(_, s)| s.clone()).collect();
        let Some(lib) = host_library(&format!("fused-{dtype}"), &sources) else {
            return;
        };
        for ((program, inputs), (name, _)) in programs.iter().zip(&kernels) {
            let shape = [4, 6];
            // input 0 transposed, input 1 a broadcast row, the rest plain; for the select
            // program input 1 is one element
            let ins: Vec<Array> = (0..*inputs)
                .map(|k| match k {
                    0 => g.normal(&[6, 4], 0.0, 1.0, dtype).t(),
                    1 if *inputs == 2 && program.outputs().len() == 5 => {
                        g.normal(&[1], 0.0, 1.0, dtype)
                    }
                    1 => g.normal(&[6], 0.0, 1.0, dtype),
                    _ => g.normal(&shape, 0.0, 1.0, dtype),
                })
                .collect();
            let refs: Vec<&Array> = ins.iter().collect();
            let written = program.outputs().len() + program.reductions().len();
            let mut want: Vec<Option<Array>> = vec![None; written];
            program.run(&refs, &shape, dtype, &mut want);
            let mut args = source::FusedArgs {
                outs: [0; source::FUSED_OUTPUTS],
                ins: [0; source::FUSED_INPUTS],
                layouts: [layout(&ins[0], &shape, "test"); source::FUSED_INPUTS],
                splats: [0.0; source::FUSED_INPUTS],
            };
            let mut outs: Vec<Array> = (0..written).map(|_| Array::zeros(&shape, dtype)).collect();
            for (k, a) in ins.iter().enumerate() {
                args.ins[k] = match dtype {
                    DType::F32 => base::<f32>(a),
                    _ => base::<f64>(a),
                } as u64;
                args.layouts[k] = layout(a, &shape, "test");
            }
            for (k, o) in outs.iter_mut().enumerate() {
                args.outs[k] = match dtype {
                    DType::F32 => o.out_slice::<f32>(&shape, "test").as_mut_ptr() as u64,
                    _ => o.out_slice::<f64>(&shape, "test").as_mut_ptr() as u64,
                };
            }
            let k_fn: FusedKernel = symbol(&lib, name);
            // SAFETY: the kernel's signature; every input's storage holds what its layout
            // addresses over `shape`, every output 24 elements.
            unsafe { k_fn(args, 24) };
            let values = program.outputs().len();
            let mut got: Vec<Option<Array>> = outs[..values].iter().cloned().map(Some).collect();
            got.resize(written, None);
            super::fused::reduce(program, outs[values..].to_vec(), &mut got[values..]);
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                let (g, w) = (g.as_ref().expect("written"), w.as_ref().expect("written"));
                close(g, w, rel).unwrap_or_else(|e| panic!("{name} output {j}: {e}"));
            }
            // a one-element input passed by value (as a host scalar is), not by address:
            // the same bits
            for (k, a) in ins.iter().enumerate().filter(|(_, a)| a.numel() == 1) {
                let mut by_value = args;
                by_value.ins[k] = 0;
                by_value.layouts[k].ndim = source::SPLAT;
                by_value.splats[k] = a.item_f64();
                let mut again: Vec<Array> =
                    (0..written).map(|_| Array::zeros(&shape, dtype)).collect();
                for (j, o) in again.iter_mut().enumerate() {
                    by_value.outs[j] = match dtype {
                        DType::F32 => o.out_slice::<f32>(&shape, "test").as_mut_ptr() as u64,
                        _ => o.out_slice::<f64>(&shape, "test").as_mut_ptr() as u64,
                    };
                }
                // SAFETY: as above; input k is read from `splats`, its address unused.
                unsafe { k_fn(by_value, 24) };
                for (j, (a, b)) in again.iter().zip(&outs).enumerate() {
                    assert!(a.bit_eq(b), "{name} output {j} with input {k} by value");
                }
            }
        }
    }
}
