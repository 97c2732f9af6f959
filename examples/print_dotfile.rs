//! Writes the graph of an MLP's loss as Graphviz DOT, and as SVG when `dot` is installed
//! (the seed's `print-dotfile`).
//!
//! `cargo run --release --example print-dotfile -- --help`

use std::path::PathBuf;

use clap::Parser;
use ferrograd::{record, render_svg, DType, DebugError, Generator, Tensor, Tree};

/// Write the computation graph of a small MLP.
#[derive(Parser, Debug)]
struct Args {
    /// Where the DOT text goes.
    #[arg(long, default_value = "target/plots/mlp.dot")]
    dot: PathBuf,
    /// Where the SVG goes (needs Graphviz's `dot`).
    #[arg(long, default_value = "target/plots/mlp.svg")]
    svg: PathBuf,
}

#[derive(Tree, Clone)]
struct Mlp {
    w: Vec<Tensor>,
    b: Vec<Tensor>,
}

fn main() {
    run(Args::parse());
}

/// Writes the graph; returns the DOT text.
fn run(args: Args) -> String {
    let mut rng = Generator::new(0);
    let params = Mlp {
        w: vec![
            Tensor::new(rng.normal(&[10, 20], 0.0, 0.1, DType::F32)),
            Tensor::new(rng.normal(&[20, 3], 0.0, 0.1, DType::F32)),
        ],
        b: vec![
            Tensor::zeros(&[20], DType::F32),
            Tensor::zeros(&[3], DType::F32),
        ],
    };
    let x = Tensor::new(rng.randn(&[4, 10], DType::F32));
    let y = Tensor::from_vec(vec![0i64, 2, 1, 1], &[4]);
    let traced = record(&params, |p| {
        let h = (x.matmul(&p.w[0]) + &p.b[0]).tanh();
        let logits = h.matmul(&p.w[1]) + &p.b[1];
        -logits.log_softmax(1).gather(1, &y.unsqueeze(1)).mean()
    });
    let dot = traced.dot();
    if let Some(dir) = args.dot.parent() {
        std::fs::create_dir_all(dir).expect("create the output folder");
    }
    std::fs::write(&args.dot, &dot)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", args.dot.display()));
    println!(
        "loss {:.4}; graph of {} ops written to {}",
        traced.output().item::<f32>(),
        dot.matches("_op [").count(),
        args.dot.display()
    );
    match render_svg(&dot, &args.svg) {
        Ok(()) => println!("rendered to {}", args.svg.display()),
        Err(e @ DebugError::GraphvizMissing { .. }) => println!("{e}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    dot
}

#[test]
fn the_graph_names_parameters_and_ops() {
    let dir = std::env::temp_dir().join(format!("ferrograd-dotfile-{}", std::process::id()));
    let (dot, svg) = (dir.join("mlp.dot"), dir.join("mlp.svg"));
    let text = run(Args::parse_from([
        "print-dotfile",
        "--dot",
        dot.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(&dot).unwrap(), text);
    for needle in [
        "digraph",
        "\"w.0\\n[10, 20]",
        "\"b.1\\n[3]",
        "tanh",
        "log_softmax",
        "gather",
        "matmul",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
