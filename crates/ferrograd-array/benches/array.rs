//! Array-layer benchmarks: `cargo bench -p ferrograd-array`.
//!
//! Matmul reports FLOP/s as criterion's "elem/s" (2·n³ per product), elementwise ops and sum
//! report bytes moved per second. `benches/numpy_array.py` measures NumPy on the same shapes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrograd_array::{Array, Conv2dParams, DType, Generator};

fn matmul(c: &mut Criterion) {
    let mut rng = Generator::new(0);
    let mut g = c.benchmark_group("matmul");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for dtype in [DType::F32, DType::F64] {
        for n in [128usize, 512, 1024, 2048] {
            let a = rng.normal(&[n, n], 0.0, 1.0, dtype);
            let b = rng.normal(&[n, n], 0.0, 1.0, dtype);
            let mut out = Array::zeros(&[n, n], dtype);
            g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
            g.bench_with_input(BenchmarkId::new(format!("{dtype}"), n), &n, |bch, _| {
                bch.iter(|| a.matmul_into(&b, &mut out))
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
        let a = rng.normal(&[m, k], 0.0, 1.0, DType::F32);
        let b = rng.normal(&[k, n], 0.0, 1.0, DType::F32);
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        g.bench_function(BenchmarkId::new("f32-skinny", name), |bch| {
            bch.iter(|| black_box(a.matmul(&b)))
        });
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut rng = Generator::new(1);
    let mut g = c.benchmark_group("elementwise");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 1_000, 100_000, 10_000_000] {
        let a = rng.normal(&[n], 0.0, 1.0, DType::F32);
        let b = rng.normal(&[n], 0.0, 1.0, DType::F32);
        let mut out = Array::zeros(&[n], DType::F32);
        // add reads two arrays and writes one; tanh reads one and writes one.
        g.throughput(Throughput::Bytes((3 * 4 * n) as u64));
        g.bench_with_input(BenchmarkId::new("add_into", n), &n, |bch, _| {
            bch.iter(|| a.add_into(&b, &mut out))
        });
        g.bench_with_input(BenchmarkId::new("add", n), &n, |bch, _| {
            bch.iter(|| black_box(a.add(&b)))
        });
        g.throughput(Throughput::Bytes((2 * 4 * n) as u64));
        g.bench_with_input(BenchmarkId::new("tanh_into", n), &n, |bch, _| {
            bch.iter(|| a.tanh_into(&mut out))
        });
        g.throughput(Throughput::Bytes((4 * n) as u64));
        g.bench_with_input(BenchmarkId::new("sum", n), &n, |bch, _| {
            bch.iter(|| black_box(a.sum()))
        });
    }
    g.finish();
}

fn conv(c: &mut Criterion) {
    let mut rng = Generator::new(2);
    let mut g = c.benchmark_group("conv2d");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    // The seed's CNN layer: 32 images of 3x64x64, 16 filters of 5x5.
    let x = rng.normal(&[32, 3, 64, 64], 0.0, 1.0, DType::F32);
    let w = rng.normal(&[16, 3, 5, 5], 0.0, 0.1, DType::F32);
    let b = rng.normal(&[16], 0.0, 0.1, DType::F32);
    let p = Conv2dParams::default();
    let y = x.conv2d(&w, Some(&b), p);
    let dy = rng.normal(y.shape(), 0.0, 1.0, DType::F32);
    let mut out = Array::zeros(y.shape(), DType::F32);
    g.bench_function("forward 32x3x64x64 * 16x3x5x5", |bch| {
        bch.iter(|| x.conv2d_into(&w, Some(&b), p, &mut out))
    });
    g.bench_function("backward input", |bch| {
        bch.iter(|| black_box(dy.conv2d_backward_input(&w, x.shape(), p)))
    });
    g.bench_function("backward weight", |bch| {
        bch.iter(|| black_box(dy.conv2d_backward_weight(&x, w.shape(), p)))
    });
    g.finish();
}

criterion_group!(benches, matmul, elementwise, conv);
criterion_main!(benches);
