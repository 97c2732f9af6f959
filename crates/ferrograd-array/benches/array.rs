//! Array-layer benchmarks: `cargo bench -p ferrograd-array --bench array [-- FILTER]`, where
//! FILTER keeps the rows whose name contains one of its `|`-separated words (`matmul|sum`);
//! `--simd avx2` (or `portable`) caps every kernel at that level, matrix products included.
//!
//! One line per case: the median time of one call over ten samples (each sample enough calls
//! to last about 0.1 s), and its throughput: matmul in GFLOP/s (2·m·n·k per product),
//! elementwise ops and sum in GB/s of memory moved. `benches/numpy_array.py` measures NumPy on
//! the same shapes and prints the same columns; `benches/compare-numpy.sh` alternates the two.

#[path = "../../../benches/simd_arg.rs"]
mod simd_arg;

use std::hint::black_box;
use std::time::{Duration, Instant};

use ferrograd_array::{
    cap_simd_level, detected_simd_level, Array, Conv2dParams, DType, Generator, Instr, MapFn,
    Pool2dParams, Program, SimdLevel, ZipFn,
};

/// What one call moves or computes, for the throughput column.
enum Work {
    Flops(f64),
    Bytes(f64),
    Nothing,
}

/// The median time of one call of `f`.
fn median_call(f: &mut dyn FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let t = Instant::now();
    f();
    let once = t.elapsed().max(Duration::from_nanos(1));
    let calls = (Duration::from_millis(100).as_secs_f64() / once.as_secs_f64()).ceil() as u32;
    let calls = calls.clamp(1, 1_000_000);
    let mut samples: Vec<Duration> = (0..10)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                f();
            }
            t.elapsed() / calls
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

struct Bench {
    filter: Vec<String>,
}

impl Bench {
    fn wants(&self, name: &str) -> bool {
        self.filter.is_empty() || self.filter.iter().any(|w| name.contains(w.as_str()))
    }

    fn run(&self, name: &str, work: Work, mut f: impl FnMut()) {
        if !self.wants(name) {
            return;
        }
        let t = median_call(&mut f);
        let secs = t.as_secs_f64();
        let time = time(t);
        let rate = match work {
            Work::Flops(n) => format!("{:.1} GFLOP/s", n / secs / 1e9),
            Work::Bytes(n) => format!("{:.2} GB/s", n / secs / 1e9),
            Work::Nothing => String::new(),
        };
        println!("{name:<48} {time:>12} {rate:>16}");
    }

    /// A row of the time per step of a call that runs `steps` like steps.
    fn run_per_step(&self, name: &str, steps: u32, mut f: impl FnMut()) {
        if self.wants(name) {
            let ns = median_call(&mut f).as_secs_f64() * 1e9 / f64::from(steps);
            println!("{name:<48} {:>9.2} ns", ns);
        }
    }
}

fn time(t: Duration) -> String {
    let secs = t.as_secs_f64();
    if secs < 1e-6 {
        format!("{:.1} ns", secs * 1e9)
    } else if secs < 1e-3 {
        format!("{:.2} µs", secs * 1e6)
    } else {
        format!("{:.3} ms", secs * 1e3)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `--simd avx2` (or `portable`) caps the kernels, matrix
    // products included; anything else is the filter
    let simd = simd_arg::simd_arg::<SimdLevel>();
    let cap = simd.as_ref().map(|&(_, level)| level);
    cap_simd_level(cap);
    let filter: Vec<String> = (std::env::args().enumerate().skip(1))
        .filter(|(i, a)| !a.starts_with("--") && simd.as_ref().is_none_or(|s| *i != s.0))
        .flat_map(|(_, a)| a.split('|').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let b = Bench { filter };
    let mut rng = Generator::new(0);

    for dtype in [DType::F32, DType::F64] {
        for n in [128usize, 512, 1024, 2048] {
            let x = rng.normal(&[n, n], 0.0, 1.0, dtype);
            let y = rng.normal(&[n, n], 0.0, 1.0, dtype);
            let mut out = Array::zeros(&[n, n], dtype);
            let flops = 2.0 * (n * n * n) as f64;
            b.run(&format!("matmul/{dtype}/{n}"), Work::Flops(flops), || {
                x.matmul_into(&y, &mut out)
            });
        }
    }
    // The seed's skinny training shapes, where the gemm orientation matters.
    for (name, m, k, n) in [
        ("32x1000@1000x10", 32, 1000, 10),
        ("1000x100@100", 1000, 100, 1),
        ("1x100@100x10", 1, 100, 10),
        ("32x100@100x1000", 32, 100, 1000),
    ] {
        let x = rng.normal(&[m, k], 0.0, 1.0, DType::F32);
        let y = rng.normal(&[k, n], 0.0, 1.0, DType::F32);
        let flops = 2.0 * (m * n * k) as f64;
        b.run(
            &format!("matmul/f32-skinny/{name}"),
            Work::Flops(flops),
            || {
                black_box(x.matmul(&y));
            },
        );
    }
    // An f32 [m, k] and [k, n] (that one a transposed view of an [n, k] when `transposed`).
    let operands = |rng: &mut Generator, m: usize, k: usize, n: usize, transposed: bool| {
        let x = rng.normal(&[m, k], 0.0, 1.0, DType::F32);
        let y = match transposed {
            true => rng.normal(&[n, k], 0.0, 1.0, DType::F32).t(),
            false => rng.normal(&[k, n], 0.0, 1.0, DType::F32),
        };
        (x, y)
    };
    // Mid-sized products, run as two halves on two cores (the LSTM rows' per-step `h W` and
    // its gradient, a batch of 32 through a layer of 1000), beside the same product on a
    // one-thread pool.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    for (name, m, k, n, transposed) in [
        ("32x200@200x800", 32, 200, 800, false),
        ("32x800@(200x800)T", 32, 800, 200, true),
        ("64x500@500x300", 64, 500, 300, false),
        ("32x1000@1000x1000", 32, 1000, 1000, false),
    ] {
        let (x, y) = operands(&mut rng, m, k, n, transposed);
        let mut out = x.matmul(&y);
        let flops = 2.0 * (m * n * k) as f64;
        b.run(
            &format!("matmul/f32-halves/{name}"),
            Work::Flops(flops),
            || x.matmul_into(&y, &mut out),
        );
        // the whole timing loop inside the pool: its calls run on the pool's one thread
        one.install(|| {
            b.run(
                &format!("matmul/f32-one-thread/{name}"),
                Work::Flops(flops),
                || x.matmul_into(&y, &mut out),
            )
        });
    }
    // The matrix products of one training step of the suite's lstm batched row (batch 32,
    // 33 steps, 100 -> 200 hidden), as its compiled plan runs them: the input projections of
    // all steps as one product, then per step `h W_h` forward and `dgates W_hᵀ` backward
    // (32 of them: the first step's `h` is zeros), and the weight gradient of all steps as
    // one product. Their sum is a floor under the step's time (the suite's `step compiled`):
    // the elementwise gates and everything else come on top.
    if b.wants("matmul/f32-lstm-batched-step") {
        let (xs, wx) = operands(&mut rng, 33 * 32, 100, 800, false);
        let (h, wh) = operands(&mut rng, 32, 200, 800, false);
        let (dg, wht) = operands(&mut rng, 32, 800, 200, true);
        let (cat, dgs) = operands(&mut rng, 300, 33 * 32, 800, false);
        let flops = 2.0 * ((33 * 32 * 100 * 800) + 33 * (32 * 200 * 800)) as f64
            + 2.0 * (32 * (32 * 800 * 200) + 300 * 33 * 32 * 800) as f64;
        b.run(
            "matmul/f32-lstm-batched-step (all products)",
            Work::Flops(flops),
            || {
                black_box(xs.matmul(&wx));
                for _ in 0..33 {
                    black_box(h.matmul(&wh));
                }
                for _ in 0..32 {
                    black_box(dg.matmul(&wht));
                }
                black_box(cat.matmul(&dgs));
            },
        );
    }
    // A per-sample step's products (the suite's mlp row): a row times a matrix, its
    // backward through the transposed weight, and the weight gradients (outer products).
    for (name, m, k, n, transposed) in [
        ("1x100@100x1000", 1, 100, 1000, false),
        ("1x1000@1000x10", 1, 1000, 10, false),
        ("1x10@(1000x10)T", 1, 10, 1000, true),
        ("1x100@(1000x100)T", 1, 100, 1000, true),
        ("1x800@(200x800)T", 1, 800, 200, true),
        ("1000x100@100x1", 1000, 100, 1, false),
        ("1000x1@1x10", 1000, 1, 10, false),
        ("100x1@1x1000", 100, 1, 1000, false),
    ] {
        let (x, y) = operands(&mut rng, m, k, n, transposed);
        let mut out = x.matmul(&y);
        let flops = 2.0 * (m * n * k) as f64;
        b.run(
            &format!("matmul/f32-vector/{name}"),
            Work::Flops(flops),
            || x.matmul_into(&y, &mut out),
        );
    }
    // the same long-column products in f64
    for (name, m, k, n, transposed) in [
        ("1x100@(1000x100)T", 1, 100, 1000, true),
        ("1x800@(200x800)T", 1, 800, 200, true),
        ("1000x100@100x1", 1000, 100, 1, false),
    ] {
        let (x, y) = operands(&mut rng, m, k, n, transposed);
        let (x, y) = (x.to_dtype(DType::F64), y.to_dtype(DType::F64));
        let mut out = x.matmul(&y);
        b.run(
            &format!("matmul/f64-vector/{name}"),
            Work::Flops(2.0 * (m * n * k) as f64),
            || x.matmul_into(&y, &mut out),
        );
    }

    // Column sums: a bias gradient, here of the lstm batched row's gates, one step's and all
    // 33 steps' at once.
    for rows in [32usize, 33 * 32] {
        let x = rng.normal(&[rows, 800], 0.0, 1.0, DType::F32);
        let mut sums = Array::zeros(&[800], DType::F32);
        b.run(
            &format!("reduce/f32-column-sums/{rows}x800"),
            Work::Bytes((rows * 800 * 4) as f64),
            || x.sum_dim_into([0usize].as_slice(), false, &mut sums),
        );
    }

    // the transcendental kernels at a transformer MLP's hidden size ([1024, 512]), where they
    // are compute-bound (`benches/pytorch_activations.py` times PyTorch's on the same shape)
    {
        let n = 1024 * 512;
        let x = rng.normal(&[n], 0.0, 1.0, DType::F32);
        let g = rng.normal(&[n], 0.0, 1.0, DType::F32);
        let mut out = Array::zeros(&[n], DType::F32);
        let bytes = |arrays: usize| Work::Bytes((arrays * 4 * n) as f64);
        b.run(&format!("activation/exp_into/{n}"), bytes(2), || {
            x.exp_into(&mut out)
        });
        b.run(&format!("activation/sigmoid_into/{n}"), bytes(2), || {
            x.sigmoid_into(&mut out)
        });
        let positive = x.abs();
        b.run(&format!("activation/log_into/{n}"), bytes(2), || {
            positive.log_into(&mut out)
        });
        b.run(&format!("activation/log1p_into/{n}"), bytes(2), || {
            positive.log1p_into(&mut out)
        });
        b.run(&format!("activation/pow_1.5_into/{n}"), bytes(2), || {
            positive.pow_scalar_into(1.5, &mut out)
        });
        for e in [0.5, -0.5, 3.0] {
            b.run(&format!("activation/pow_{e}_into/{n}"), bytes(2), || {
                positive.pow_scalar_into(e, &mut out)
            });
        }
        b.run(&format!("activation/lgamma_into/{n}"), bytes(2), || {
            positive.lgamma_into(&mut out)
        });
        b.run(&format!("activation/digamma_into/{n}"), bytes(2), || {
            positive.digamma_into(&mut out)
        });
        b.run(&format!("activation/expm1_into/{n}"), bytes(2), || {
            x.expm1_into(&mut out)
        });
        b.run(&format!("activation/sinh_into/{n}"), bytes(2), || {
            x.sinh_into(&mut out)
        });
        b.run(&format!("activation/atan_into/{n}"), bytes(2), || {
            x.atan_into(&mut out)
        });
        b.run(&format!("activation/atan2_into/{n}"), bytes(3), || {
            x.atan2_into(&g, &mut out)
        });
        let unit = x.tanh();
        b.run(&format!("activation/asin_into/{n}"), bytes(2), || {
            unit.asin_into(&mut out)
        });
        b.run(&format!("activation/tan_into/{n}"), bytes(2), || {
            x.tan_into(&mut out)
        });
        b.run(&format!("activation/erfinv_into/{n}"), bytes(2), || {
            unit.erfinv_into(&mut out)
        });
        b.run(&format!("activation/tanh_into/{n}"), bytes(2), || {
            x.tanh_into(&mut out)
        });
        b.run(&format!("activation/erf_into/{n}"), bytes(2), || {
            x.erf_into(&mut out)
        });
        b.run(&format!("activation/gelu_into/{n}"), bytes(2), || {
            x.gelu_into(&mut out)
        });
        b.run(
            &format!("activation/gelu_backward_into/{n}"),
            bytes(3),
            || x.gelu_backward_into(&g, &mut out),
        );
        // f64, where the exponential, tanh and logarithm and their kin are vectorised too
        let (x, g, unit) = (
            x.to_dtype(DType::F64),
            g.to_dtype(DType::F64),
            unit.to_dtype(DType::F64),
        );
        let mut out = Array::zeros(&[n], DType::F64);
        b.run(&format!("activation/f64/exp_into/{n}"), bytes(4), || {
            x.exp_into(&mut out)
        });
        b.run(
            &format!("activation/f64/sigmoid_into/{n}"),
            bytes(4),
            || x.sigmoid_into(&mut out),
        );
        b.run(&format!("activation/f64/tanh_into/{n}"), bytes(4), || {
            x.tanh_into(&mut out)
        });
        let positive = x.abs();
        b.run(&format!("activation/f64/log_into/{n}"), bytes(4), || {
            positive.log_into(&mut out)
        });
        b.run(&format!("activation/f64/log1p_into/{n}"), bytes(4), || {
            positive.log1p_into(&mut out)
        });
        for e in [1.5, 0.5, -0.5, 3.0] {
            b.run(
                &format!("activation/f64/pow_{e}_into/{n}"),
                bytes(4),
                || positive.pow_scalar_into(e, &mut out),
            );
        }
        b.run(&format!("activation/f64/expm1_into/{n}"), bytes(4), || {
            x.expm1_into(&mut out)
        });
        b.run(&format!("activation/f64/sin_into/{n}"), bytes(4), || {
            x.sin_into(&mut out)
        });
        b.run(&format!("activation/f64/tan_into/{n}"), bytes(4), || {
            x.tan_into(&mut out)
        });
        b.run(&format!("activation/f64/sinh_into/{n}"), bytes(4), || {
            x.sinh_into(&mut out)
        });
        b.run(&format!("activation/f64/atan_into/{n}"), bytes(4), || {
            x.atan_into(&mut out)
        });
        b.run(&format!("activation/f64/atan2_into/{n}"), bytes(6), || {
            x.atan2_into(&g, &mut out)
        });
        b.run(&format!("activation/f64/asin_into/{n}"), bytes(4), || {
            unit.asin_into(&mut out)
        });
        b.run(&format!("activation/f64/erfinv_into/{n}"), bytes(4), || {
            unit.erfinv_into(&mut out)
        });
        b.run(&format!("activation/f64/erf_into/{n}"), bytes(4), || {
            x.erf_into(&mut out)
        });
        b.run(&format!("activation/f64/gelu_into/{n}"), bytes(4), || {
            x.gelu_into(&mut out)
        });
        let g = g.to_dtype(DType::F64);
        b.run(
            &format!("activation/f64/gelu_backward_into/{n}"),
            bytes(6),
            || x.gelu_backward_into(&g, &mut out),
        );
    }

    // a causal attention's scores, [batch, heads, l, l] (the transformer benchmark's)
    {
        let shape = [16, 4, 64, 64];
        let n: usize = shape.iter().product();
        let x = rng.normal(&shape, 0.0, 1.0, DType::F32);
        let g = rng.normal(&shape, 0.0, 1.0, DType::F32);
        let mut out = Array::zeros(&shape, DType::F32);
        let bytes = |arrays: usize| Work::Bytes((arrays * 4 * n) as f64);
        b.run("attention/softmax_into/16x4x64x64", bytes(2), || {
            x.softmax_into(-1, &mut out)
        });
        b.run(
            "attention/attention_softmax_into/causal/16x4x64x64",
            bytes(2),
            || x.attention_softmax_into(0.125, true, &mut out),
        );
        let y = x.attention_softmax(0.125, true);
        b.run("attention/softmax_backward/16x4x64x64", bytes(3), || {
            black_box(y.softmax_backward(&g, -1));
        });
        b.run(
            "attention/attention_softmax_backward_into/16x4x64x64",
            bytes(3),
            || y.attention_softmax_backward_into(&g, 0.125, &mut out),
        );
        // a sharp attention's: scaled scores spread over hundreds, so many exponentials
        // underflow below the normal range (weights of 0, not subnormal numbers), and the
        // product of the weights with the values that follows
        let sharp = rng.normal(&shape, 0.0, 800.0, DType::F32);
        b.run(
            "attention/attention_softmax_into/causal/16x4x64x64/sharp",
            bytes(2),
            || sharp.attention_softmax_into(0.125, true, &mut out),
        );
        let weights = sharp.attention_softmax(0.125, true);
        let values = rng.normal(&[16, 4, 64, 32], 0.0, 1.0, DType::F32);
        b.run(
            "attention/weights_matmul_values/16x4x64x64/sharp",
            Work::Flops(2.0 * (n * 32) as f64),
            || {
                black_box(weights.matmul(&values));
            },
        );
    }

    // layer norm over a transformer's rows, [16·64, 128], and its backward's parts
    {
        let shape = [1024, 128];
        let n: usize = shape.iter().product();
        let x = rng.normal(&shape, 0.0, 1.0, DType::F32);
        let g = rng.normal(&shape, 0.0, 1.0, DType::F32);
        let w = rng.normal(&[128], 1.0, 0.1, DType::F32);
        let bias = rng.normal(&[128], 0.0, 0.1, DType::F32);
        let bytes = |arrays: usize| Work::Bytes((arrays * 4 * n) as f64);
        b.run("norm/layer_norm/1024x128", bytes(2), || {
            black_box(x.layer_norm(&w, &bias, 1e-5));
        });
        b.run("norm/layer_norm_backward/1024x128", bytes(3), || {
            black_box(x.layer_norm_backward(&w, &g, 1e-5));
        });
        b.run("norm/layer_norm_param_grads/1024x128", bytes(2), || {
            black_box(x.layer_norm_param_grads(&g, &[128], 1e-5));
        });
        b.run("norm/mul/1024x128", bytes(3), || {
            black_box(x.mul(&g));
        });
        b.run("norm/sum_rows/1024x128", bytes(1), || {
            black_box(g.sum_dim(0, false));
        });
    }

    for n in [10usize, 1_000, 100_000, 10_000_000] {
        let x = rng.normal(&[n], 0.0, 1.0, DType::F32);
        let y = rng.normal(&[n], 0.0, 1.0, DType::F32);
        let mut out = Array::zeros(&[n], DType::F32);
        // add reads two arrays and writes one; tanh reads one and writes one.
        let bytes = |arrays: usize| Work::Bytes((arrays * 4 * n) as f64);
        b.run(&format!("elementwise/add_into/{n}"), bytes(3), || {
            x.add_into(&y, &mut out)
        });
        b.run(&format!("elementwise/add/{n}"), bytes(3), || {
            black_box(x.add(&y));
        });
        b.run(&format!("elementwise/tanh_into/{n}"), bytes(2), || {
            x.tanh_into(&mut out)
        });
        b.run(&format!("elementwise/sum/{n}"), bytes(1), || {
            black_box(x.sum());
        });
        // strided views walked by offsets: rows of 3 of every 4 elements (short rows, the
        // offset walk's worst case) and every other element
        let rows = x
            .narrow(0, 0, n / 4 * 4)
            .reshape(&[n / 4, 4])
            .narrow(1, 0, 3);
        b.run(&format!("elementwise/tanh_rows_of_3/{n}"), bytes(2), || {
            black_box(rows.tanh());
        });
        let every_other = x
            .narrow(0, 0, n / 2 * 2)
            .reshape(&[n / 2, 2])
            .narrow(1, 0, 1);
        b.run(
            &format!("elementwise/add_every_other/{n}"),
            bytes(3),
            || {
                black_box(every_other.add(&every_other));
            },
        );
        // a scalar operand, a bias row over rows of 64, and a per-row value (a column)
        b.run(
            &format!("elementwise/mul_scalar_into/{n}"),
            bytes(2),
            || x.mul_into(&Array::full(&[], 0.5, DType::F32), &mut out),
        );
        if n >= 64 {
            let m = n / 64 * 64;
            let (xm, bias) = (x.narrow(0, 0, m).reshape(&[m / 64, 64]), y.narrow(0, 0, 64));
            let col = y.narrow(0, 0, m / 64).reshape(&[m / 64, 1]);
            b.run(&format!("elementwise/add_bias_row/{n}"), bytes(3), || {
                black_box(xm.add(&bias));
            });
            b.run(&format!("elementwise/mul_column/{n}"), bytes(3), || {
                black_box(xm.mul(&col));
            });
        }
        if n >= 4096 {
            // a value per row of 4096 (a CNN's per-channel bias over its pixels)
            let m = n / 4096 * 4096;
            let xm = x.narrow(0, 0, m).reshape(&[m / 4096, 4096]);
            let col = y.narrow(0, 0, m / 4096).reshape(&[m / 4096, 1]);
            b.run(
                &format!("elementwise/add_long_column/{n}"),
                bytes(3),
                || {
                    black_box(xm.add(&col));
                },
            );
        }
        // sin: ours (vectorised), and std's scalar sinf over the same data, what it replaced
        b.run(&format!("elementwise/sin_into/{n}"), bytes(2), || {
            x.sin_into(&mut out)
        });
        let xs = x.to_vec::<f32>();
        let mut ys = vec![0.0f32; n];
        b.run(&format!("elementwise/sin_std_loop/{n}"), bytes(2), || {
            for (y, &v) in ys.iter_mut().zip(&xs) {
                *y = v.sin();
            }
            black_box(&ys);
        });
    }

    // Fused programs with broadcast inputs over [100, 1000] f32: an SGD update by an outer
    // product, p - (x·g)·0.01 with x a column and g a row (a batch-1 weight gradient), and
    // tanh(p + b) with b a row (a bias)
    {
        let p = rng.normal(&[100, 1000], 0.0, 1.0, DType::F32);
        let x = rng.normal(&[100, 1], 0.0, 1.0, DType::F32);
        let g = rng.normal(&[1, 1000], 0.0, 1.0, DType::F32);
        let bias = rng.normal(&[1000], 0.0, 1.0, DType::F32);
        let outer = Program::new(
            vec![
                Instr::Input(0),
                Instr::Input(1),
                Instr::Input(2),
                Instr::Zip(ZipFn::Mul, 1, 2),
                Instr::Const(0.01),
                Instr::Zip(ZipFn::Mul, 3, 4),
                Instr::Zip(ZipFn::Sub, 0, 5),
            ],
            vec![6],
        );
        let biased = Program::new(
            vec![
                Instr::Input(0),
                Instr::Input(1),
                Instr::Zip(ZipFn::Add, 0, 1),
                Instr::Map(MapFn::Tanh, 2),
            ],
            vec![3],
        );
        let mut out = [None];
        // each reads p and writes the result
        let bytes = || Work::Bytes((2 * 4 * 100_000) as f64);
        b.run("fused/outer-product update 100x1000", bytes(), || {
            outer.run(&[&p, &x, &g], &[100, 1000], DType::F32, &mut out)
        });
        b.run("fused/tanh of a bias add 100x1000", bytes(), || {
            biased.run(&[&p, &bias], &[100, 1000], DType::F32, &mut out)
        });
    }

    // Short programs in the evaluator's vector form: 200 steps on 10 f32 elements, each step
    // reading the one before it (per step: the latency of one step to the next), on every
    // vector path this machine has (up to `--simd`'s cap)
    for level in SimdLevel::ALL
        .into_iter()
        .filter(|&l| l <= detected_simd_level() && cap.is_none_or(|c| l <= c))
    {
        cap_simd_level(Some(level));
        let x = rng.normal(&[10], 0.0, 1.0, DType::F32);
        let chain = |step: &dyn Fn(usize, usize) -> Instr| {
            let mut instrs = vec![Instr::Input(0), Instr::Const(1.01), Instr::Const(0.1)];
            for k in 0..200 {
                instrs.push(step(k, instrs.len() - 1));
            }
            Program::new(instrs, vec![202])
        };
        let sums = chain(&|k, last| match k % 2 {
            0 => Instr::Zip(ZipFn::Mul, last, 1),
            _ => Instr::Zip(ZipFn::Add, last, 2),
        });
        let maps = chain(&|k, last| match k % 2 {
            0 => Instr::Map(MapFn::Sin, last),
            _ => Instr::Map(MapFn::Tanh, last),
        });
        let mut out = [None];
        for (what, program) in [("products and sums", &sums), ("sin and tanh", &maps)] {
            let name = format!("fused/200 {what} on 10, per step ({level:?})");
            b.run_per_step(&name, 200, || {
                program.run(&[&x], &[10], DType::F32, &mut out)
            });
        }
        cap_simd_level(cap);
    }

    // The seed's CNN layer: 32 images of 3x64x64, 16 filters of 5x5.
    let x = rng.normal(&[32, 3, 64, 64], 0.0, 1.0, DType::F32);
    let w = rng.normal(&[16, 3, 5, 5], 0.0, 0.1, DType::F32);
    let bias = rng.normal(&[16], 0.0, 0.1, DType::F32);
    let p = Conv2dParams::default();
    let y = x.conv2d(&w, Some(&bias), p);
    let dy = rng.normal(y.shape(), 0.0, 1.0, DType::F32);
    let mut out = Array::zeros(y.shape(), DType::F32);
    b.run(
        "conv2d/forward 32x3x64x64 * 16x3x5x5",
        Work::Nothing,
        || x.conv2d_into(&w, Some(&bias), p, &mut out),
    );
    b.run("conv2d/backward input", Work::Nothing, || {
        black_box(dy.conv2d_backward_input(&w, x.shape(), p));
    });
    b.run("conv2d/backward weight", Work::Nothing, || {
        black_box(dy.conv2d_backward_weight(&x, w.shape(), p));
    });

    // Its bias gradient: the output gradient summed over all but the channels.
    let mut db = Array::zeros(&[16], DType::F32);
    b.run(
        "reduce/conv bias gradient 32x16x60x60",
        Work::Nothing,
        || dy.sum_dim_into([0usize, 2, 3].as_slice(), false, &mut db),
    );

    // The 2x2 max-pool after it, forward (values and indices) and backward.
    let pool = Pool2dParams::square(2);
    let (mut values, mut indices) = y.max_pool2d(pool);
    b.run("pool/max 2x2 forward 32x16x60x60", Work::Nothing, || {
        y.max_pool2d_into(pool, &mut values, &mut indices)
    });
    b.run("pool/max 2x2 indices alone", Work::Nothing, || {
        y.max_pool2d_indices_into(pool, &mut indices)
    });
    b.run("pool/gather the pooled values", Work::Nothing, || {
        y.gather_planes_into(&indices, &mut values)
    });
    let dv = rng.normal(values.shape(), 0.0, 1.0, DType::F32);
    let mut dx = Array::zeros(y.shape(), DType::F32);
    b.run("pool/max 2x2 backward", Work::Nothing, || {
        dv.max_pool2d_backward_into(&indices, y.shape(), &mut dx)
    });
}
