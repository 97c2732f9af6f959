//! A small transformer language model's SGD step (two pre-norm decoder layers of causal
//! multi-head attention and a GELU MLP, width 128, 4 heads, MLP 512, 64 tokens x 16
//! sequences, 65 symbols), f32: ferrograd's direct mode, optimize mode and the whole step
//! compiled, alternating pass by pass, quietest pass of each. `benches/pytorch_transformer.py
//! --time` runs the same model in PyTorch eager; `benches/compare-transformer.sh` alternates
//! the two. `-- --simd avx2` caps the vector path as in the suite; `-- --flush-denormals`
//! turns on `ferrograd::flush_denormals` (and the script PyTorch's `set_flush_denormal`).

use std::hint::black_box;

use ferrograd::{compile, grad, simd_level, DType, Tensor};

#[path = "../../../benches/alternate.rs"]
mod alternate;
#[path = "../../../benches/simd_arg.rs"]
mod simd_arg;
#[path = "shared/transformer.rs"]
mod transformer;

use transformer::Gpt;

const GPT: Gpt = Gpt {
    vocab: 65,
    width: 128,
    len: 64,
    batch: 16,
    heads: 4,
    layers: 2,
    dtype: DType::F32,
};

fn sgd(p: &[Tensor], g: &[Tensor]) -> Vec<Tensor> {
    p.iter().zip(g).map(|(p, g)| p - &(g * 0.01)).collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    ferrograd::cap_simd_level(simd_arg::simd_arg().map(|(_, level)| level));
    let flush = std::env::args().any(|a| a == "--flush-denormals");
    ferrograd::flush_denormals(flush);
    let (passes, steps) = if quick { (1, 2) } else { (5, 10) };
    let (idx, tgt) = GPT.tokens();
    let model = |p: &Vec<Tensor>, idx: &Tensor, tgt: &Tensor| GPT.loss(p, idx, tgt);
    let (df, dq) = (grad(model), grad(model).optimize(true));
    let whole = compile(move |p: &Vec<Tensor>, idx: &Tensor, tgt: &Tensor| {
        sgd(p, &grad(model).call(p, (idx, tgt)).0)
    });
    let (mut p, mut q) = (GPT.parameters(), GPT.parameters());
    let mut r = Some(GPT.parameters());
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
}
