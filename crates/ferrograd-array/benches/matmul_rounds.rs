//! Large f32 matmul in short rounds, for alternating with NumPy: `benches/compare-numpy-rounds.sh`.
//!
//! One round times `REPS` products of each size given on the command line (default 1024 and
//! 2048) and prints the fastest and the median. The array bench's passes take minutes, across which
//! this shared machine's load drifts by more than the 1-3% that separate two good GEMMs;
//! rounds of a second or two, alternated with the same rounds in NumPy, see the same load.
//! `--simd avx2` (or `portable`) caps the kernels at that level (gemm's AVX2 kernels on any
//! machine).

#[path = "../../../benches/simd_arg.rs"]
mod simd_arg;

use std::time::Instant;

use ferrograd_array::{cap_simd_level, Array, DType, Generator, SimdLevel};

const REPS: usize = 10;

fn main() {
    cap_simd_level(simd_arg::simd_arg::<SimdLevel>().map(|(_, level)| level));
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1024, 2048]
    } else {
        sizes
    };
    let mut rng = Generator::new(0);
    for n in sizes {
        let a = rng.normal(&[n, n], 0.0, 1.0, DType::F32);
        let b = rng.normal(&[n, n], 0.0, 1.0, DType::F32);
        let mut out = Array::zeros(&[n, n], DType::F32);
        a.matmul_into(&b, &mut out);
        let mut ms: Vec<f64> = (0..REPS)
            .map(|_| {
                let t = Instant::now();
                a.matmul_into(&b, &mut out);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let gflops = 2.0 * (n * n * n) as f64 / 1e6 / ms[0];
        println!(
            "ferrograd f32 {n:>5}: min {:7.2} ms  median {:7.2} ms  ({gflops:.0} GFLOP/s at min)",
            ms[0],
            ms[REPS / 2]
        );
    }
}
