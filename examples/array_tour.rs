//! A short tour of the array layer: creation, views, broadcasting, reductions, products.
//!
//! Run with `cargo run --release --example array-tour`.

use clap::Parser;
use ferrograd::{Array, DType, Generator};

/// A short tour of the array layer: creation, views, broadcasting, reductions, products.
/// It prints each step; it takes no options.
#[derive(Parser, Debug)]
#[command(name = "array-tour")]
struct Args {}

fn main() {
    Args::parse();
    let mut rng = Generator::new(0);
    let a = Array::arange(0.0, 6.0, 1.0, DType::F32).reshape(&[2, 3]);
    println!("a =\n{a}");
    println!("a.t() (a view, no copy) =\n{}", a.t());
    let b = rng.normal(&[3, 4], 0.0, 1.0, DType::F32);
    println!("b ~ N(0, 1) =\n{b}");
    println!("a @ b =\n{}", a.matmul(&b));
    let row = Array::from_vec(vec![10.0f32, 20.0, 30.0], &[3]);
    println!("a + row (broadcast) =\n{}", &a + &row);
    println!("sum over dim 1 = {}", a.sum_dim(1, false));
    println!("softmax(a, dim=-1) =\n{}", a.softmax(-1));
    println!("max_dim(1) = {:?}", a.max_dim(1, false));
    let big = rng.uniform(&[40, 40], -1.0, 1.0, DType::F64);
    println!("a 40x40 matrix prints summarised:\n{big}");
}
