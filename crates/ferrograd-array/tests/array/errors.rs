//! Every panic message names the op, the values involved and the caller's line (this file).

use ferrograd_array::{Array, Conv2dParams, DType, Generator, Index, Pool2dParams};

use crate::common::panic_message;

/// Asserts the panic of `f` starts with `ferrograd: {op}:`, contains every needle, and
/// points at this test file, not at the library.
#[track_caller]
fn check(op: &str, needles: &[&str], f: impl FnOnce()) {
    let m = panic_message(f);
    assert!(
        m.starts_with(&format!("ferrograd: {op}: ")),
        "message {m:?} does not start with the op {op}"
    );
    for n in needles {
        assert!(m.contains(n), "message {m:?} lacks {n:?}");
    }
    assert!(
        m.contains("tests/array/errors.rs:"),
        "message {m:?} does not point at the caller's line"
    );
}

fn f32s(shape: &[usize]) -> Array {
    Array::zeros(shape, DType::F32)
}

#[test]
fn construction_and_extraction() {
    check("from_vec", &["3 values", "[2, 2]", "4 elements"], || {
        Array::from_vec(vec![1.0f32; 3], &[2, 2]);
    });
    check("to_vec", &["expected f64", "got f32"], || {
        f32s(&[2]).to_vec::<f64>();
    });
    check("item", &["exactly one element", "[2]"], || {
        f32s(&[2]).item::<f32>();
    });
    check("arange", &["non-zero step"], || {
        Array::arange(0.0, 1.0, 0.0, DType::F32);
    });
    check("uniform", &["low < high", "low 1", "high 0"], || {
        Generator::new(0).uniform(&[1], 1.0, 0.0, DType::F32);
    });
    check("uniform", &["bernoulli"], || {
        Generator::new(0).uniform(&[1], 0.0, 1.0, DType::Bool);
    });
    check("normal", &["std", "-1"], || {
        Generator::new(0).normal(&[1], 0.0, -1.0, DType::F32);
    });
    check("bernoulli", &["[0, 1]", "1.5"], || {
        Generator::new(0).bernoulli(&[1], 1.5, DType::F32);
    });
    check("randn", &["float dtype", "i64"], || {
        Generator::new(0).randn(&[1], DType::I64);
    });
    check("add", &["output array", "[3]", "[2]"], || {
        f32s(&[2]).add_into(&f32s(&[2]), &mut f32s(&[3]));
    });
}

#[test]
fn dims_and_views() {
    check("transpose", &["dim 2", "2 dims"], || {
        f32s(&[2, 3]).transpose(0, 2);
    });
    check("transpose", &["dim -3", "-2 to 1"], || {
        f32s(&[2, 3]).transpose(0, -3);
    });
    check("sum_dim", &["dim 1 appears twice"], || {
        f32s(&[2, 3]).sum_dim([1, -1], false);
    });
    check("t", &["at most 2 dims", "[1, 2, 3]"], || {
        f32s(&[1, 2, 3]).t();
    });
    check(
        "permute",
        &["[0, 0]", "not a permutation", "[2, 3]"],
        || {
            f32s(&[2, 3]).permute(&[0, 0]);
        },
    );
    check("narrow", &["2..5", "dim 1 of size 3", "[2, 3]"], || {
        f32s(&[2, 3]).narrow(1, 2, 3);
    });
    check("select", &["index 3", "dim 1 of size 3"], || {
        f32s(&[2, 3]).select(1, 3);
    });
    check("expand", &["[2, 3]", "[4, 3, 4]"], || {
        f32s(&[2, 3]).expand(&[4, 3, 4]);
    });
    check("reshape", &["[2, 3]", "6 elements", "[4]"], || {
        f32s(&[2, 3]).reshape(&[4]);
    });
    check("flatten", &["start dim 1 is after end dim 0"], || {
        f32s(&[2, 3]).flatten(1, 0);
    });
    check("diagonal", &["matrix", "[3]"], || {
        f32s(&[3]).diagonal(0);
    });
    check("size", &["dim 5"], || {
        f32s(&[3]).size(5);
    });
}

#[test]
fn elementwise() {
    check("add", &["[2, 3]", "[4]", "cannot be broadcast"], || {
        f32s(&[2, 3]).add(&f32s(&[4]));
    });
    check("mul", &["dtypes differ", "f32", "f64", ".to_dtype"], || {
        f32s(&[2]).mul(&Array::zeros(&[2], DType::F64));
    });
    check("exp", &["float dtype", "got i64"], || {
        Array::zeros(&[2], DType::I64).exp();
    });
    check("neg", &["numeric dtype", "got bool"], || {
        Array::zeros(&[2], DType::Bool).neg();
    });
    check("logical_not", &["expected bool", "got f32"], || {
        f32s(&[2]).logical_not();
    });
    check("where", &["[2] (cond)", "[3]", "[4]"], || {
        Array::where_cond(&Array::zeros(&[2], DType::Bool), &f32s(&[3]), &f32s(&[4]));
    });
    check("masked_fill", &["mask of shape [2, 3]", "[3]"], || {
        f32s(&[3]).masked_fill(&Array::zeros(&[2, 3], DType::Bool), 1.0);
    });
    // operators carry the caller's line too
    check("sub", &["[2]", "[3]"], || {
        let _ = &f32s(&[2]) - &f32s(&[3]);
    });
    check("div", &["[2]", "[3]"], || {
        let _ = 1.0 / f32s(&[2]) / f32s(&[3]);
    });
    // an integer divisor of 0: refused here, not by a kernel on a worker thread
    let ints = Array::from_vec(vec![7i64, -7, 4], &[3]);
    let divisor = Array::from_vec(vec![2i64, 0, 1], &[3]);
    check("div", &["integer division by zero"], || {
        ints.div(&divisor);
    });
    check("remainder", &["integer division by zero"], || {
        ints.remainder(&divisor.narrow(0, 1, 1));
    });
    check("fmod", &["integer division by zero"], || {
        ints.fmod_scalar(0.0);
    });
    assert_eq!(ints.div_scalar(2.0).to_vec::<i64>(), vec![3, -3, 2]);
}

#[test]
fn reductions() {
    check("amax_dim", &["zero elements", "[0]"], || {
        f32s(&[0]).amax();
    });
    check("max_dim", &["empty dim 1", "[2, 0]"], || {
        f32s(&[2, 0]).max_dim(1, false);
    });
    check("norm", &["p must be >= 0", "-1"], || {
        f32s(&[2]).norm(-1.0);
    });
    check("mean", &["float dtype", "i64"], || {
        Array::zeros(&[2], DType::I64).mean();
    });
}

#[test]
fn linear_algebra() {
    check(
        "matmul",
        &["[2, 3]", "[4, 5]", "inner dims 3 and 4"],
        || {
            f32s(&[2, 3]).matmul(&f32s(&[4, 5]));
        },
    );
    check(
        "matmul",
        &["[2, 2, 3]", "[3, 3, 1]", "cannot be multiplied"],
        || {
            f32s(&[2, 2, 3]).matmul(&f32s(&[3, 3, 1]));
        },
    );
    check("matmul", &["at least 1 dim", "[]"], || {
        f32s(&[]).matmul(&f32s(&[2]));
    });
    check("mm", &["two matrices", "[3]"], || {
        f32s(&[2, 3]).mm(&f32s(&[3]));
    });
    check("mv", &["a matrix and a vector", "[3, 1]"], || {
        f32s(&[2, 3]).mv(&f32s(&[3, 1]));
    });
    check("dot", &["two vectors", "[2]", "[3]"], || {
        f32s(&[2]).dot(&f32s(&[3]));
    });
    check("outer", &["two vectors", "[2, 1]"], || {
        f32s(&[2, 1]).outer(&f32s(&[3]));
    });
    check("bmm", &["3-d", "[2, 2, 2]", "[3, 2, 2]"], || {
        f32s(&[2, 2, 2]).bmm(&f32s(&[3, 2, 2]));
    });
    check("matmul", &["float dtype", "i64"], || {
        Array::zeros(&[2, 2], DType::I64).matmul(&Array::zeros(&[2, 2], DType::I64));
    });
}

#[test]
fn indexing() {
    let i = |v: Vec<i64>| {
        let n = v.len();
        Array::from_vec(v, &[n])
    };
    check("index_select", &["index 5", "dim 0 of size 2"], || {
        f32s(&[2, 3]).index_select(0, &i(vec![5]));
    });
    // PyTorch's rule: the explicit-index ops take positions in 0..size, while Index reads
    // and writes (x[k]) count negatives from the end
    check(
        "index_select",
        &["index -1 is out of range", "0..2"],
        || {
            f32s(&[2, 3]).index_select(0, &i(vec![-1]));
        },
    );
    check("index_add", &["index -1 is out of range"], || {
        f32s(&[2, 3]).index_add(0, &i(vec![-1]), &f32s(&[1, 3]));
    });
    check("gather", &["index -2 is out of range", "size 3"], || {
        f32s(&[2, 3]).gather(1, &Array::full(&[2, 1], -2.0, DType::I64));
    });
    check("scatter_add", &["index -1 is out of range"], || {
        f32s(&[2, 3]).scatter_add(1, &Array::full(&[2, 1], -1.0, DType::I64), &f32s(&[2, 1]));
    });
    assert_eq!(
        Array::from_vec(vec![1.0f32, 2.0, 3.0], &[3])
            .index(Index::List(vec![-1]))
            .to_vec::<f32>(),
        vec![3.0]
    );
    check("index_select", &["index 5", "dim 0 of size 2"], || {
        f32s(&[2, 3]).index_select(0, &i(vec![5]));
    });
    check("index_select", &["i64 index array", "f32"], || {
        f32s(&[2, 3]).index_select(0, &f32s(&[1]));
    });
    check("index_select", &["1-d index array", "[1, 1]"], || {
        f32s(&[2, 3]).index_select(0, &Array::zeros(&[1, 1], DType::I64));
    });
    check(
        "gather",
        &["index of shape [3, 3]", "[2, 3]", "dim 1"],
        || {
            f32s(&[2, 3]).gather(1, &Array::zeros(&[3, 3], DType::I64));
        },
    );
    check("gather", &["index 7", "size 3"], || {
        f32s(&[2, 3]).gather(1, &Array::full(&[2, 1], 7.0, DType::I64));
    });
    check("scatter_add", &["source [1, 1]"], || {
        f32s(&[2, 3]).scatter_add(1, &Array::zeros(&[2, 2], DType::I64), &f32s(&[1, 1]));
    });
    check("index_add", &["source of shape [2, 2]", "[1, 3]"], || {
        f32s(&[2, 3]).index_add(0, &i(vec![0]), &f32s(&[2, 2]));
    });
    check("index_put", &["values of shape [4]", "[1, 3]"], || {
        f32s(&[2, 3]).index_put(&Index::List(vec![0]), &f32s(&[4]));
    });
    check("index_put", &["index -3", "size 2"], || {
        f32s(&[2, 3]).index_put(&Index::Single(-3), &f32s(&[]));
    });
    check("index_put", &["mask of shape [3]", "[2, 3]"], || {
        f32s(&[2, 3]).index_put(&Index::Mask(Array::zeros(&[3], DType::Bool)), &f32s(&[]));
    });
    check(
        "index_put",
        &["selecting 6 elements", "1 value or 6", "[2]"],
        || {
            f32s(&[2, 3]).index_put(&Index::Mask(Array::ones(&[2, 3], DType::Bool)), &f32s(&[2]));
        },
    );
    check("index", &["0-d"], || {
        f32s(&[]).index(0i64);
    });
    check("cat", &["[2, 3]", "[2, 4]", "outside dim 0"], || {
        Array::cat(&[f32s(&[2, 3]), f32s(&[2, 4])], 0);
    });
    check("cat", &["at least one"], || {
        Array::cat(&[], 0);
    });
    check("cat", &["[2, 3]", "[3, 3]", "outside dim 1"], || {
        let mut out = f32s(&[2, 6]);
        Array::cat_into(&[f32s(&[2, 3]), f32s(&[3, 3])], 1, &mut out);
    });
    check("pad_narrow", &["[2, 3]", "at 2", "size 4"], || {
        f32s(&[2, 3]).pad_narrow(1, 2, 4);
    });
    check("stack", &["[2]", "[3]", "differ"], || {
        Array::stack(&[f32s(&[2]), f32s(&[3])], 0);
    });
    check("split", &["positive"], || {
        f32s(&[2]).split(0, 0);
    });
    check("split_sizes", &["[1, 2]", "[2]"], || {
        f32s(&[2]).split_sizes(&[1, 2], 0);
    });
    check("chunk", &["positive"], || {
        f32s(&[2]).chunk(0, 0);
    });
    check("repeat", &["at least 2 repeat counts", "[3]"], || {
        f32s(&[2, 3]).repeat(&[3]);
    });
    check("diag", &["1 or 2 dims", "[1, 1, 1]"], || {
        f32s(&[1, 1, 1]).diag(0);
    });
    check("tril", &["at least 2 dims", "[3]"], || {
        f32s(&[3]).tril(0);
    });
}

#[test]
fn convolution_and_pooling() {
    let p = Conv2dParams::default();
    check("conv2d", &["[N, C, H, W]", "[1, 3, 4]"], || {
        f32s(&[1, 3, 4]).conv2d(&f32s(&[1, 3, 1, 1]), None, p);
    });
    check(
        "conv2d",
        &["[1, 4, 4, 4]", "[2, 3, 1, 1]", "2 groups"],
        || {
            f32s(&[1, 4, 4, 4]).conv2d(&f32s(&[2, 3, 1, 1]), None, Conv2dParams { groups: 2, ..p });
        },
    );
    check("conv2d", &["kernel 5x5", "[1, 1, 4, 4]"], || {
        f32s(&[1, 1, 4, 4]).conv2d(&f32s(&[1, 1, 5, 5]), None, p);
    });
    check("conv2d", &["bias must have shape [2]", "[3]"], || {
        f32s(&[1, 1, 4, 4]).conv2d(&f32s(&[2, 1, 1, 1]), Some(&f32s(&[3])), p);
    });
    check(
        "conv2d_backward_input",
        &["gradient has shape [1, 1, 2, 2]", "[1, 1, 4, 4]"],
        || {
            f32s(&[1, 1, 2, 2]).conv2d_backward_input(&f32s(&[1, 1, 1, 1]), &[1, 1, 4, 4], p);
        },
    );
    let q = Pool2dParams::square(2);
    check("max_pool2d", &["[N, C, H, W]", "[4, 4]"], || {
        f32s(&[4, 4]).max_pool2d(q);
    });
    check("max_pool2d", &["padding"], || {
        f32s(&[1, 1, 4, 4]).max_pool2d(Pool2dParams {
            padding: (2, 2),
            ..q
        });
    });
    check("gather_planes", &["[1, 2, 4, 4]", "[1, 1, 2, 2]"], || {
        f32s(&[1, 2, 4, 4]).gather_planes(&Array::zeros(&[1, 1, 2, 2], DType::I64));
    });
    check("gather_planes", &["i64 indices", "f32"], || {
        f32s(&[1, 1, 4, 4]).gather_planes(&f32s(&[1, 1, 2, 2]));
    });
    check("gather_planes", &["index 16", "16 elements"], || {
        f32s(&[1, 1, 4, 4]).gather_planes(&Array::full(&[1, 1, 2, 2], 16.0, DType::I64));
    });
    check("avg_pool2d", &["does not fit", "[1, 1, 1, 1]"], || {
        f32s(&[1, 1, 1, 1]).avg_pool2d(q, true);
    });
    check(
        "max_pool2d_backward",
        &["[1, 1, 2, 2]", "[1, 1, 3, 3]", "do not belong together"],
        || {
            f32s(&[1, 1, 2, 2])
                .max_pool2d_backward(&Array::zeros(&[1, 1, 3, 3], DType::I64), &[1, 1, 4, 4]);
        },
    );
    check("max_pool2d_backward", &["i64 indices"], || {
        f32s(&[1, 1, 2, 2]).max_pool2d_backward(&f32s(&[1, 1, 2, 2]), &[1, 1, 4, 4]);
    });
    check(
        "avg_pool2d_backward",
        &["[1, 1, 3, 3]", "[1, 1, 2, 2]"],
        || {
            f32s(&[1, 1, 3, 3]).avg_pool2d_backward(&[1, 1, 4, 4], q, true);
        },
    );
    check("softmax_backward", &["[2]", "[3]"], || {
        f32s(&[3]).softmax_backward(&f32s(&[2]), 0);
    });
    check("softmax", &["dim 1", "1 dims"], || {
        f32s(&[3]).softmax(1);
    });
}

/// A panic raised inside a context names it after its line (innermost first), and only
/// there: a context left, normally or by a caught panic, is gone, and a site formatted
/// outside a panic is the bare line.
#[test]
fn contexts_follow_the_line_in_panic_messages_only() {
    use ferrograd_array::{enter, in_context, Context, Site};
    let at = std::panic::Location::caller();
    let bad = || {
        f32s(&[2]).add(&f32s(&[3]));
    };
    let m = panic_message(|| {
        in_context(
            Context::Call {
                what: "forward",
                at,
            },
            || {
                let _layer = enter(Context::Layer {
                    of: "a Sequential",
                    index: 2,
                });
                bad()
            },
        )
    });
    let called = format!("in forward called at {}:{}:", file!(), at.line());
    assert!(
        m.contains(&format!(", in layer 2 of a Sequential, {called}")),
        "{m}"
    );
    // left after the caught panic: the next message is bare
    let m = panic_message(bad);
    assert!(!m.contains(", in "), "{m}");
    // a call whose line is the panic's own (a `#[track_caller]` chain) is not repeated
    #[track_caller]
    fn forward() {
        let at = std::panic::Location::caller();
        let _called = enter(Context::Call {
            what: "forward",
            at,
        });
        f32s(&[2]).add(&f32s(&[3]));
    }
    let m = panic_message(|| forward());
    assert!(!m.contains("in forward called at"), "{m}");
    assert!(m.contains("tests/array/errors.rs:"), "{m}");
    let _outer = enter(Context::Call {
        what: "forward",
        at,
    });
    let shown = Site(at).to_string();
    assert_eq!(shown, format!("{}:{}:{}", file!(), at.line(), at.column()));
}

/// The panic itself (what the default hook prints as "panicked at", and what a debugger
/// stops on) is raised at the caller's line too, not inside the library's error helper.
#[test]
fn the_panic_is_raised_at_the_callers_line() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (hook_seen, this_thread) = (seen.clone(), std::thread::current().id());
    let previous = std::panic::take_hook();
    // (other tests panic on their own threads meanwhile)
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() == this_thread {
            *hook_seen.lock().unwrap() = info.location().map(|l| (l.file().to_string(), l.line()));
        }
    }));
    let line = line!() + 1;
    let caught = std::panic::catch_unwind(|| f32s(&[2, 3]).matmul(&f32s(&[4, 5])));
    std::panic::set_hook(previous);
    assert!(caught.is_err());
    let (file, at) = seen.lock().unwrap().clone().expect("a location");
    assert!(
        file.ends_with("tests/array/errors.rs") && at == line,
        "{file}:{at}"
    );
}
