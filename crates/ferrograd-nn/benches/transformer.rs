//! A small transformer language model's SGD step (two pre-norm decoder layers of causal
//! multi-head attention and a GELU MLP, width 128, 4 heads, MLP 512, 64 tokens x 16
//! sequences, 65 symbols), f32: ferrograd's direct mode, optimize mode and the whole step
//! compiled, alternating pass by pass, quietest pass of each. `benches/pytorch_transformer.py
//! --time` runs the same model in PyTorch eager; `benches/compare-transformer.sh` alternates
//! the two. `-- --simd avx2` caps the vector path as in the suite; `-- --flush-denormals`
//! turns on `ferrograd::flush_denormals` (and the script PyTorch's `set_flush_denormal`).

use std::hint::black_box;

use ferrograd::{compile, grad, simd_level, DType, Tensor};
use ferrograd_nn::functional::{self as F, AttentionMask, AttentionParams};

#[path = "../../../benches/alternate.rs"]
mod alternate;
#[path = "../../../benches/simd_arg.rs"]
mod simd_arg;

const V: usize = 65;
const E: usize = 128;
const T: usize = 64;
const N: usize = 16;
const HEADS: usize = 4;
const LAYERS: usize = 2;

/// `shape`'s elements `scale · sin(0.37 i + k)`, as `benches/pytorch_transformer.py` makes
/// them.
fn init(shape: &[usize], k: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        (0..n)
            .map(|i| (scale * (0.37 * i as f64 + k).sin()) as f32)
            .collect::<Vec<f32>>(),
        shape,
    )
}

fn parameters() -> Vec<Tensor> {
    let s = 1.0 / (E as f64).sqrt();
    let mut p = vec![init(&[V, E], 1.0, 0.5), init(&[T, E], 2.0, 0.1)];
    let mut k = 3.0;
    for _ in 0..LAYERS {
        for (shape, scale) in [
            (vec![E], 0.1),
            (vec![E], 0.1),
            (vec![E, E], s),
            (vec![E, E], s),
            (vec![E, E], s),
            (vec![E], 0.02),
            (vec![E], 0.02),
            (vec![E], 0.02),
            (vec![E, E], s),
            (vec![E], 0.02),
            (vec![E], 0.1),
            (vec![E], 0.1),
            (vec![4 * E, E], s),
            (vec![4 * E], 0.02),
            (vec![E, 4 * E], 0.5 * s),
            (vec![E], 0.02),
        ] {
            p.push(init(&shape, k, scale));
            k += 1.0;
        }
    }
    p.extend([
        init(&[E], k, 0.1),
        init(&[E], k + 1.0, 0.1),
        init(&[V, E], k + 2.0, s),
    ]);
    p
}

#[allow(clippy::ptr_arg)] // grad differentiates its first argument as a tree: a Vec
fn model(p: &Vec<Tensor>, idx: &Tensor, tgt: &Tensor) -> Tensor {
    let norm = |x: &Tensor, w: &Tensor, b: &Tensor| {
        F::layer_norm(x, &[E], Some(&(w + 1.0)), Some(b), 1e-5)
    };
    let mut x = &F::embedding(idx, &p[0], None) + &p[1];
    for q in p[2..2 + 16 * LAYERS].chunks(16) {
        let h = norm(&x, &q[0], &q[1]);
        let attention = AttentionParams {
            in_weights: [&q[2], &q[3], &q[4]],
            in_biases: Some([&q[5], &q[6], &q[7]]),
            out_weight: &q[8],
            out_bias: Some(&q[9]),
        };
        x = &x + &F::multi_head_attention(&h, &h, &h, &attention, HEADS, AttentionMask::Causal);
        let h = F::gelu(
            &F::linear(&norm(&x, &q[10], &q[11]), &q[12], Some(&q[13])),
            false,
        );
        x = &x + &F::linear(&h, &q[14], Some(&q[15]));
    }
    let k = 2 + 16 * LAYERS;
    let logits = F::linear(&norm(&x, &p[k], &p[k + 1]), &p[k + 2], None);
    F::cross_entropy(&logits.reshape(&[N * T, V]), &tgt.reshape(&[N * T]))
}

fn sgd(p: &[Tensor], g: &[Tensor]) -> Vec<Tensor> {
    p.iter().zip(g).map(|(p, g)| p - &(g * 0.01)).collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    ferrograd::cap_simd_level(simd_arg::simd_arg().map(|(_, level)| level));
    let flush = std::env::args().any(|a| a == "--flush-denormals");
    ferrograd::flush_denormals(flush);
    let (passes, steps) = if quick { (1, 2) } else { (5, 10) };
    let tokens: Vec<i64> = (0..N * T)
        .map(|i| ((3 * (i / T) + 5 * (i % T) + (i % T) * (i % T)) % V) as i64)
        .collect();
    let targets: Vec<i64> = tokens.iter().map(|&v| (2 * v + 1) % V as i64).collect();
    let idx = Tensor::from_vec(tokens, &[N, T]);
    let tgt = Tensor::from_vec(targets, &[N, T]);
    let (df, dq) = (grad(model), grad(model).optimize(true));
    let whole = compile(|p: &Vec<Tensor>, idx: &Tensor, tgt: &Tensor| {
        sgd(p, &grad(model).call(p, (idx, tgt)).0)
    });
    let (mut p, mut q) = (parameters(), parameters());
    let mut r = Some(parameters());
    let t = std::time::Instant::now();
    black_box(dq.call(&q, (&idx, &tgt)));
    let capture = t.elapsed();
    let t = std::time::Instant::now();
    r = Some(whole.call_donating(r.take().expect("parameters"), (&idx, &tgt)));
    let capture_whole = t.elapsed();
    let times = alternate::best_each(
        passes,
        steps,
        2,
        &mut [
            &mut |_| p = sgd(&p, &df.call(&p, (&idx, &tgt)).0),
            &mut |_| q = sgd(&q, &dq.call(&q, (&idx, &tgt)).0),
            &mut |_| r = Some(whole.call_donating(r.take().expect("parameters"), (&idx, &tgt))),
        ],
    );
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "{:<34} {:>12} {:>12} {:>10} {:>14} {:>10}",
        format!(
            "ferrograd (f32, {}{})",
            simd_level(),
            if flush { ", flush" } else { "" }
        ),
        "direct",
        "optimize",
        "capture",
        "step compiled",
        "capture"
    );
    println!(
        "{:<34} {:>9.2} ms {:>9.2} ms {:>7.1} ms {:>11.2} ms {:>7.1} ms",
        "transformer batched (SGD step)",
        ms(times[0]),
        ms(times[1]),
        ms(capture),
        ms(times[2]),
        ms(capture_whole)
    );
    let _ = DType::F32;
}
