//! Kernels that split their work across threads take a serial path when rayon's pool has one
//! thread (a one-core machine, `RAYON_NUM_THREADS=1`). Both paths must give the same values,
//! bit for bit (a sum is grouped by the sizes alone, never by the pool); each op here is
//! large enough to split in the default pool.

use ferrograd_array::{
    Array, Conv2dParams, DType, Generator, Instr, MapFn, Pool2dParams, Program, ZipFn,
};

/// Every splitting kernel on inputs past its threshold, results flattened.
fn run_all(x: &Array, w: &Array, v: &Array, a: &Array, b: &Array) -> Vec<(&'static str, Vec<f64>)> {
    let conv = Conv2dParams {
        padding: (1, 1),
        ..Default::default()
    };
    let y = x.conv2d(w, None, conv);
    let pool = Pool2dParams::square(2);
    // Overlapping windows, so the pooled output is itself past the threshold.
    let (pooled, idx) = y.max_pool2d(Pool2dParams {
        stride: (1, 1),
        ..pool
    });
    let avg = y.avg_pool2d(pool, true);
    vec![
        ("conv2d", y.to_f64_vec()),
        (
            "conv2d_backward_input",
            y.conv2d_backward_input(w, x.shape(), conv).to_f64_vec(),
        ),
        (
            "conv2d_backward_weight",
            y.conv2d_backward_weight(x, w.shape(), conv).to_f64_vec(),
        ),
        ("max_pool2d", pooled.to_f64_vec()),
        (
            "max_pool2d_backward",
            pooled.max_pool2d_backward(&idx, y.shape()).to_f64_vec(),
        ),
        ("gather_planes", y.gather_planes(&idx).to_f64_vec()),
        ("avg_pool2d", avg.to_f64_vec()),
        (
            "avg_pool2d_backward",
            avg.avg_pool2d_backward(y.shape(), pool, true).to_f64_vec(),
        ),
        ("tanh", v.tanh().to_f64_vec()),
        ("exp", v.exp().to_f64_vec()),
        ("sigmoid", v.sigmoid().to_f64_vec()),
        ("add", v.add(&v.neg()).add(v).to_f64_vec()),
        (
            "add a broadcast row",
            v.reshape(&[1200, 500])
                .add(&v.narrow(0, 0, 500))
                .to_f64_vec(),
        ),
        ("sum", v.sum().to_f64_vec()),
        (
            "sum rows",
            v.reshape(&[1200, 500]).sum_dim(1, false).to_f64_vec(),
        ),
        ("softmax", v.reshape(&[1200, 500]).softmax(1).to_f64_vec()),
        ("matmul", a.matmul(b).to_f64_vec()),
    ]
}

#[test]
fn kernels_give_the_same_values_on_a_one_thread_pool() {
    let mut rng = Generator::new(35);
    let x = rng.normal(&[8, 8, 72, 72], 0.0, 1.0, DType::F32);
    let w = rng.normal(&[16, 8, 3, 3], 0.0, 0.3, DType::F32);
    let v = rng.normal(&[600_000], 0.0, 1.0, DType::F32);
    let a = rng.normal(&[1024, 1024], 0.0, 1.0, DType::F32);
    let b = rng.normal(&[1024, 1030], 0.0, 1.0, DType::F32);
    let split = run_all(&x, &w, &v, &a, &b);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let serial = one.install(|| run_all(&x, &w, &v, &a, &b));
    for ((name, got), (_, want)) in serial.iter().zip(&split) {
        assert_eq!(got.len(), want.len(), "{name}");
        let bad = got
            .iter()
            .zip(want)
            .position(|(g, w)| g.to_bits() != w.to_bits());
        if let Some(i) = bad {
            panic!(
                "{name}: element {i} is {} on one thread, {} split",
                got[i], want[i]
            );
        }
    }
}

/// Mid-sized products run as two halves on two cores (rows of the output, or its columns
/// when it is wider than long); each element must be the one-thread product's bit for bit,
/// whatever the operands' layouts and whether the product is added into an output.
#[test]
fn products_split_in_halves_equal_the_one_thread_product_bit_for_bit() {
    let mut rng = Generator::new(36);
    // (m, k, n, dtype, A stored transposed, B stored transposed)
    let cases = [
        (32, 200, 800, DType::F32, false, false),
        (32, 800, 200, DType::F32, false, true),
        (64, 500, 300, DType::F32, false, false),
        (300, 1056, 800, DType::F32, true, false),
        (128, 256, 256, DType::F32, false, false),
        (200, 64, 96, DType::F32, true, true),
        (130, 100, 90, DType::F32, false, false),
        (1000, 32, 100, DType::F32, false, false),
        (64, 300, 200, DType::F64, false, true),
        (24, 130, 700, DType::F64, true, false),
    ];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    for (m, k, n, dtype, at, bt) in cases {
        let a = match at {
            true => rng.normal(&[k, m], 0.0, 1.0, dtype).t(),
            false => rng.normal(&[m, k], 0.0, 1.0, dtype),
        };
        let b = match bt {
            true => rng.normal(&[n, k], 0.0, 1.0, dtype).t(),
            false => rng.normal(&[k, n], 0.0, 1.0, dtype),
        };
        let base = rng.normal(&[m, n], 0.0, 1.0, dtype);
        let run = || {
            let mut added = base.clone();
            a.matmul_add_into(&b, &mut added);
            let mut scaled = base.clone();
            a.matmul_add_scaled_into(&b, -0.01, &mut scaled);
            (a.matmul(&b), added, scaled)
        };
        // twice in the default pool: the first call may find the partner asleep
        let _ = run();
        let (product, added, scaled) = run();
        let (one_product, one_added, one_scaled) = one.install(run);
        let case = format!("[{m}, {k}]·[{k}, {n}] {dtype:?}");
        assert!(product.bit_eq(&one_product), "{case}: product");
        assert!(added.bit_eq(&one_added), "{case}: added into an output");
        assert!(scaled.bit_eq(&one_scaled), "{case}: scaled and added");
    }
}

/// A convolution's weight gradient sums over the samples; the sum must be grouped the same
/// way whatever the pool's size and however its threads steal the work, so that a training
/// step is the same bits from run to run (and optimize mode's exact replay equals direct
/// mode's).
#[test]
fn conv_weight_gradients_are_the_same_bits_on_any_pool_and_every_run() {
    let mut rng = Generator::new(38);
    let conv = Conv2dParams {
        padding: (1, 1),
        ..Default::default()
    };
    for (n, dtype) in [
        (250, DType::F32),
        (37, DType::F32),
        (9, DType::F64),
        (1, DType::F32),
    ] {
        let x = rng.normal(&[n, 2, 12, 12], 0.0, 1.0, dtype);
        let w = rng.normal(&[3, 2, 3, 3], 0.0, 0.3, dtype);
        let dy = rng.normal(&[n, 3, 12, 12], 0.0, 1.0, dtype);
        let run = || dy.conv2d_backward_weight(&x, w.shape(), conv);
        let want = run();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a pool");
            for round in 0..4 {
                assert!(
                    pool.install(run).bit_eq(&want),
                    "{n} samples, {dtype:?}: {threads} threads, round {round}"
                );
            }
        }
        for round in 0..8 {
            assert!(run().bit_eq(&want), "{n} samples, {dtype:?}: round {round}");
        }
    }
}

/// Fused programs and single elementwise ops from 4096 elements run as two halves (on two
/// cores when the partner is awake, else one after the other); each element must come out
/// as it does from one pass over all of them, with strided and broadcast inputs whose runs
/// the halves cut.
#[test]
fn programs_split_in_halves_equal_one_pass_bit_for_bit() {
    let mut rng = Generator::new(37);
    let program = Program::new(
        vec![
            Instr::Input(0),
            Instr::Input(1),
            Instr::Input(2),
            Instr::Zip(ZipFn::Mul, 0, 1),
            Instr::Map(MapFn::Tanh, 3),
            Instr::Map(MapFn::Sigmoid, 2),
            Instr::Zip(ZipFn::Add, 4, 5),
            Instr::Map(MapFn::Exp, 0),
            Instr::Zip(ZipFn::Sub, 6, 7),
        ],
        vec![4, 8],
    );
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    for (rows, cols, dtype) in [
        (32, 200, DType::F32),
        (37, 211, DType::F32),
        (64, 1000, DType::F32),
        (33, 129, DType::F64),
    ] {
        let shape = [rows, cols];
        // a strided input (a transposed view), a row broadcast down the rows, a plain one
        let a = rng.normal(&[cols, rows], 0.0, 1.0, dtype).t();
        let b = rng.normal(&[cols], 0.0, 1.0, dtype);
        let c = rng.normal(&shape, 0.0, 1.0, dtype);
        let run = || {
            let mut outs = [None, None];
            program.run(&[&a, &b, &c], &shape, dtype, &mut outs);
            outs.map(|o| o.expect("written"))
        };
        // a product split in halves first wakes the partner, which may then take a half
        let _ = rng_product();
        let split = run();
        let whole = one.install(run);
        for (k, (s, w)) in split.iter().zip(&whole).enumerate() {
            assert!(s.bit_eq(w), "[{rows}, {cols}] {dtype:?}: output {k}");
        }
        // single ops split the same way: contiguous, strided and broadcast operands
        let ops = || {
            let _ = rng_product();
            vec![
                ("tanh", c.tanh()),
                ("exp of a strided view", a.exp()),
                ("sigmoid of a slice", c.narrow(1, 1, cols - 2).sigmoid()),
                ("add a broadcast row", c.add(&b)),
                ("mul", c.mul(&c)),
                ("sub a strided view", c.sub(&a)),
            ]
        };
        let split = ops();
        for ((name, s), (_, w)) in split.iter().zip(one.install(ops)) {
            assert!(s.bit_eq(&w), "[{rows}, {cols}] {dtype:?}: {name}");
        }
    }
}

/// A product that runs in halves, so the partner is awake for what follows.
fn rng_product() -> Array {
    let a = Array::full(&[32, 200], 0.5, DType::F32);
    a.matmul(&Array::full(&[200, 800], 0.25, DType::F32))
}

/// `cat` splits its copy as an elementwise op of its size splits (over the pool from 2¹⁹
/// elements, in halves on the partner core from 2¹² while it is awake) and reads strided,
/// transposed, broadcast and empty parts in place; every piece of the result must be its
/// part's values, on two threads as on one.
#[test]
fn cats_split_across_threads_give_each_part_back() {
    let mut rng = Generator::new(37);
    let n = |rng: &mut Generator, s: &[usize], dtype: DType| rng.normal(s, 0.0, 1.0, dtype);
    let x = n(&mut rng, &[32, 33, 100], DType::F32);
    // (parts, dim): a recurrent network's gate and input cats, its 33 steps' gradients
    // joined for the weight gradient (with a transposed, a narrowed and a broadcast part),
    // and an f64 and an i64 cat with an empty part
    let mut steps: Vec<Array> = (0..30)
        .map(|_| n(&mut rng, &[32, 800], DType::F32))
        .collect();
    steps.push(n(&mut rng, &[800, 32], DType::F32).t());
    steps.push(n(&mut rng, &[32, 900], DType::F32).narrow(1, 50, 800));
    steps.push(n(&mut rng, &[1, 800], DType::F32).expand(&[32, 800]));
    let ints = Array::arange(0.0, 64.0 * 70.0, 1.0, DType::I64).reshape(&[64, 70]);
    let cases: Vec<(Vec<Array>, usize)> = vec![
        (
            vec![
                n(&mut rng, &[32, 3, 200], DType::F32),
                n(&mut rng, &[32, 1, 200], DType::F32),
            ],
            1,
        ),
        (vec![x.select(1, 5), n(&mut rng, &[32, 200], DType::F32)], 1),
        (steps, 0),
        (
            vec![
                n(&mut rng, &[64, 0], DType::F64),
                n(&mut rng, &[70, 64], DType::F64).t(),
                n(&mut rng, &[64, 1], DType::F64),
            ],
            1,
        ),
        (
            vec![
                ints.clone(),
                Array::zeros(&[64, 0], DType::I64),
                ints.t().t(),
            ],
            1,
        ),
    ];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a two-thread pool");
    for (k, (parts, d)) in cases.iter().enumerate() {
        let sizes: Vec<usize> = parts.iter().map(|a| a.shape()[*d]).collect();
        let serial = one.install(|| Array::cat(parts, *d));
        let split = two.install(|| {
            let _ = rng_product();
            Array::cat(parts, *d)
        });
        assert!(split.bit_eq(&serial), "case {k}: two threads against one");
        for (i, (piece, part)) in split.split_sizes(&sizes, *d).iter().zip(parts).enumerate() {
            assert_eq!(piece.to_f64_vec(), part.to_f64_vec(), "case {k}, part {i}");
        }
    }
}
