//! Every vector path the machine supports, by capping the level the kernels may use: the
//! elementwise kernels agree across levels (bit for bit, except f32 `exp`, `tanh`,
//! `sigmoid`, `sin`, `cos` and `erf` on the portable path, which has no fused multiply-add:
//! within a few ulp), and so do softmax and log-softmax forward and backward, on
//! each level a fused program equals its ops run one at a time, bit for bit (an update run
//! a row at a time and written in place included), and the matrix
//! products match a naive loop (those with a unit dimension on this crate's vector loops, a
//! row times long columns giving the same bits on the AVX2 and AVX-512 paths; the others on
//! the capped level's gemm kernels).
//!
//! Its own test binary: the cap is process-wide, and tests running beside it in one process
//! would see it change under them.

#[path = "shared/fused_table.rs"]
mod table;

use ferrograd_array::{
    cap_simd_level, detected_simd_level, simd_level, Array, DType, Generator, Instr, Program,
    SimdLevel, ZipFn,
};
use table::{unfused_map, unfused_zip, MAPS, ZIPS};

/// Every unfused kernel's result, and the same computed by one-op fused programs.
fn results(x: &Array, y: &Array) -> Vec<(String, Array, Array)> {
    let shape = x.shape().to_vec();
    let fused = |instrs: Vec<Instr>, inputs: &[&Array]| {
        let out = instrs.len() - 1;
        let mut outs = [None];
        Program::new(instrs, vec![out]).run(inputs, &shape, x.dtype(), &mut outs);
        outs[0].take().expect("written")
    };
    let mut out = Vec::new();
    for f in MAPS {
        let want = unfused_map(f, x);
        let got = fused(vec![Instr::Input(0), Instr::Map(f, 0)], &[x]);
        out.push((format!("{f:?}"), want, got));
    }
    for f in ZIPS {
        let want = unfused_zip(f, x, y);
        let got = fused(
            vec![Instr::Input(0), Instr::Input(1), Instr::Zip(f, 0, 1)],
            &[x, y],
        );
        out.push((format!("{f:?}"), want, got));
    }
    // softmax and log-softmax, forward and backward, along rows (vector passes over each
    // row, 100 elements: six 16-lane chunks and a tail) and along columns (lines side by side)
    // (no fused form: each stands as its own pair, compared across levels below)
    let g = x.mul_scalar(0.5).sin();
    for d in [1usize, 0] {
        let (y, ly) = (x.softmax(d), x.log_softmax(d));
        for (name, value) in [
            ("Softmax", y.clone()),
            ("SoftmaxBackward", y.softmax_backward(&g, d)),
            ("LogSoftmax", ly.clone()),
            ("LogSoftmaxBackward", ly.log_softmax_backward(&g, d)),
        ] {
            out.push((format!("{name} along {d}"), value.clone(), value));
        }
    }
    // a gradient step's update, which runs as one loop of its own
    let update = Program::new(
        vec![
            Instr::Input(0),
            Instr::Input(1),
            Instr::Zip(ZipFn::Mul, 0, 1),
            Instr::Const(0.01),
            Instr::Zip(ZipFn::Mul, 2, 3),
            Instr::Zip(ZipFn::Sub, 0, 4),
        ],
        vec![5],
    );
    assert!(update.is_one_loop());
    let want = x.sub(&x.mul(y).mul_scalar(0.01));
    let mut outs = [None];
    update.run(&[x, y], &shape, x.dtype(), &mut outs);
    out.push(("update".into(), want, outs[0].take().expect("written")));
    // an outer-product update over rows of 300 (run a row at a time, its operands a column
    // and a row broadcast over the matrix), then the same written over its input in place
    let dtype = x.dtype();
    let p = Array::arange(0.0, 1200.0, 1.0, dtype)
        .reshape(&[4, 300])
        .mul_scalar(0.001);
    let column = Array::arange(1.0, 5.0, 1.0, dtype).reshape(&[4, 1]);
    let row = Array::arange(0.0, 300.0, 1.0, dtype).mul_scalar(0.01);
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
    let want = p.sub(&column.mul(&row).mul_scalar(0.01));
    let mut outs = [None];
    outer.run(&[&p, &column, &row], &[4, 300], dtype, &mut outs);
    out.push((
        "outer update".into(),
        want.clone(),
        outs[0].take().expect("written"),
    ));
    let mut target = Array::from_vec(p.to_f64_vec(), &[4, 300]).to_dtype(dtype);
    let inputs = [None, Some(&column), Some(&row)];
    assert!(outer.run_in_place(&inputs, &mut target, &[4, 300], dtype));
    out.push(("outer update in place".into(), want, target));
    out
}

/// The operand forms the elementwise drivers read differently — contiguous, one element
/// (0-d or `[1, 1]`), a broadcast row or column, a transposed or narrowed view, a scalar
/// expanded to the full shape — on either side of a binary op, as a unary op's input, and as
/// `where_cond`'s mask and values — over shapes of several gather tiles with a ragged last
/// one (rows shorter than a tile, and rows longer, whose tiles are read in place or as one
/// value where they fall inside a row): every result equals a scalar loop over the broadcast
/// values, exactly (the ops here are correctly rounded).
fn every_layout_form_matches_a_scalar_loop() {
    for (r, c) in [(37, 29), (3, 700)] {
        layout_forms_match_a_scalar_loop(r, c)
    }
}

fn layout_forms_match_a_scalar_loop(r: usize, c: usize) {
    let mut rng = Generator::new(17);
    let full = rng.uniform(&[r, c], 0.5, 2.0, DType::F64);
    let forms: Vec<(&str, Array)> = vec![
        ("contiguous", full.clone()),
        ("0-d", Array::full(&[], 1.25, DType::F64)),
        ("[1, 1]", Array::full(&[1, 1], 0.75, DType::F64)),
        ("row", rng.uniform(&[c], 0.5, 2.0, DType::F64)),
        ("column", rng.uniform(&[r, 1], 0.5, 2.0, DType::F64)),
        ("transposed", rng.uniform(&[c, r], 0.5, 2.0, DType::F64).t()),
        (
            "narrowed",
            rng.uniform(&[r, c + 3], 0.5, 2.0, DType::F64)
                .narrow(1, 2, c),
        ),
        (
            "expanded",
            Array::full(&[1], 1.5, DType::F64).expand(&[r, c]),
        ),
    ];
    let values = |a: &Array| a.expand(&[r, c]).to_vec::<f64>();
    type Zip = (
        &'static str,
        fn(&Array, &Array) -> Array,
        fn(f64, f64) -> f64,
    );
    let zips: [Zip; 5] = [
        ("add", Array::add, |x, y| x + y),
        ("sub", Array::sub, |x, y| x - y),
        ("mul", Array::mul, |x, y| x * y),
        ("div", Array::div, |x, y| x / y),
        ("maximum", Array::maximum, f64::max),
    ];
    for (na, a) in &forms {
        let av = values(a);
        let sqrt = a.sqrt().expand(&[r, c]).to_vec::<f64>();
        let want: Vec<f64> = av.iter().map(|x| x.sqrt()).collect();
        assert_eq!(sqrt, want, "sqrt of {na}");
        for (nb, b) in &forms {
            let bv = values(b);
            for (name, op, f) in zips {
                let got = op(a, b).expand(&[r, c]).to_vec::<f64>();
                let want: Vec<f64> = av.iter().zip(&bv).map(|(&x, &y)| f(x, y)).collect();
                assert_eq!(got, want, "{name} of {na} and {nb}, [{r}, {c}]");
            }
            let picked = Array::where_cond(&a.gt_scalar(1.0), a, b);
            let want: Vec<f64> = av
                .iter()
                .zip(&bv)
                .map(|(&x, &y)| if x > 1.0 { x } else { y })
                .collect();
            assert_eq!(
                picked.expand(&[r, c]).to_vec::<f64>(),
                want,
                "where of {na} and {nb}"
            );
            let lt = a.lt(b).expand(&[r, c]).to_vec::<bool>();
            let want: Vec<bool> = av.iter().zip(&bv).map(|(x, y)| x < y).collect();
            assert_eq!(lt, want, "lt of {na} and {nb}");
            let (ai, bi) = (a.mul_scalar(8.0).floor(), b.mul_scalar(8.0).floor());
            let (ai, bi) = (ai.to_dtype(DType::I64), bi.to_dtype(DType::I64));
            let got = ai.sub(&bi).expand(&[r, c]).to_vec::<i64>();
            let want: Vec<i64> = values(&ai.to_dtype(DType::F64))
                .iter()
                .zip(values(&bi.to_dtype(DType::F64)))
                .map(|(&x, y)| x as i64 - y as i64)
                .collect();
            assert_eq!(got, want, "i64 sub of {na} and {nb}");
        }
    }
}

/// The matrix products with a unit dimension run as vector loops of their own (a row times
/// row-major or short column-major columns, a matrix times a column, outer products with
/// short and long rows): on this level, within rounding of a naive f64 loop.
fn unit_dimension_products_match_a_naive_loop(dtype: DType) {
    let mut rng = Generator::new(23);
    for (m, k, n, transposed) in [
        (1, 100, 1000, false),
        (1, 1001, 10, false),
        (1, 10, 300, true),
        (300, 1, 10, false),
        (30, 1, 1000, false),
        (500, 10, 1, false),
        // long columns: whole windows of 16 and a tail, groups of four columns and a rest
        (1, 100, 301, true),
        (1, 16, 50, true),
        (1, 37, 7, true),
        (1, 800, 45, true),
        (400, 40, 1, false),
    ] {
        let a = rng.uniform(&[m, k], -1.0, 1.0, dtype);
        let b = if transposed {
            rng.uniform(&[n, k], -1.0, 1.0, dtype).t()
        } else {
            rng.uniform(&[k, n], -1.0, 1.0, dtype)
        };
        assert_naive_product(&a, &b, None, &a.matmul(&b));
    }
}

/// Asserts that `got` is `start + a @ b` (`a @ b` without a start) within rounding of a
/// naive f64 loop, on the level in use.
fn assert_naive_product(a: &Array, b: &Array, start: Option<&Array>, got: &Array) {
    let (m, k, n, dtype) = (a.shape()[0], a.shape()[1], b.shape()[1], a.dtype());
    let (av, bv, gv) = (a.to_f64_vec(), b.to_f64_vec(), got.to_f64_vec());
    let sv = start.map(Array::to_f64_vec);
    let tol = if dtype == DType::F32 { 1e-5 } else { 1e-13 } * (k as f64).sqrt();
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|l| av[i * k + l] * bv[l * n + j]).sum();
            let want = sv.as_ref().map_or(0.0, |s| s[i * n + j]) + dot;
            let g = gv[i * n + j];
            assert!(
                (g - want).abs() <= tol * (1.0 + want.abs()),
                "{:?} {dtype} {m}x{k}x{n} ({i}, {j}): {g} vs {want}",
                simd_level()
            );
        }
    }
}

/// Products through gemm's blocked kernels, which a cap also reaches (gemm's AVX2 or
/// portable kernels run in place of the CPU's own): plain and with a transposed right
/// operand, added into an output, deeper than one of gemm's depth blocks, and large enough
/// to run as two halves on two cores: on this level, within rounding of a naive f64 loop.
/// Returns the first product, for the caller to compare across levels.
fn blocked_products_match_a_naive_loop(dtype: DType) -> Array {
    let mut rng = Generator::new(31);
    let mut first = None;
    for (m, k, n, transposed, add) in [
        (37, 129, 45, false, false),
        (37, 129, 45, true, false),
        (20, 700, 33, false, true),
        (64, 300, 130, true, false),
    ] {
        let a = rng.uniform(&[m, k], -1.0, 1.0, dtype);
        let b = if transposed {
            rng.uniform(&[n, k], -1.0, 1.0, dtype).t()
        } else {
            rng.uniform(&[k, n], -1.0, 1.0, dtype)
        };
        let start = rng.uniform(&[m, n], -1.0, 1.0, dtype);
        let got = if add {
            let mut out = start.clone();
            a.matmul_add_into(&b, &mut out);
            out
        } else {
            a.matmul(&b)
        };
        assert_naive_product(&a, &b, add.then_some(&start), &got);
        first.get_or_insert(got);
    }
    first.expect("a product")
}

/// A row times long contiguous columns (`x·Wᵀ`, a matrix times a column) gives each column
/// the same bits whatever columns run beside it and on every vector path, and
/// `matmul_add_into` adds the product to what the output held (`out + x·Wᵀ`, bit for bit).
/// (The portable path leaves these products to gemm, whose sums depend on the shape and
/// which adds into the output as it goes: nothing is checked there.)
fn long_columns_agree_across_paths_and_positions(best: &[Array]) -> Vec<Array> {
    let mut rng = Generator::new(29);
    let mut got = Vec::new();
    let ours = simd_level() != SimdLevel::Portable;
    for (k, n) in [(100, 301), (37, 7), (16, 9)] {
        let x = rng.uniform(&[1, k], -1.0, 1.0, DType::F32);
        let w = rng.uniform(&[n, k], -1.0, 1.0, DType::F32);
        let all = x.matmul(&w.t());
        // each column alone, and the columns from the third on (another grouping)
        for j in [0, n / 2, n - 1].into_iter().filter(|_| ours) {
            let one = x.matmul(&w.narrow(0, j, 1).t());
            assert!(
                one.bit_eq(&all.narrow(1, j, 1)),
                "{:?} {k}x{n}: column {j} alone differs",
                simd_level()
            );
        }
        assert!(
            !ours
                || x.matmul(&w.narrow(0, 2, n - 2).t())
                    .bit_eq(&all.narrow(1, 2, n - 2)),
            "{:?} {k}x{n}: columns regrouped differ",
            simd_level()
        );
        let start = rng.uniform(&[1, n], -1.0, 1.0, DType::F32);
        let mut out = start.clone();
        x.matmul_add_into(&w.t(), &mut out);
        assert!(
            !ours || out.bit_eq(&start.add(&all)),
            "{:?} {k}x{n}: accumulated != out + product",
            simd_level()
        );
        if let (true, Some(b)) = (ours, best.get(got.len())) {
            assert!(
                all.bit_eq(b),
                "{:?} {k}x{n}: differs from the best path",
                simd_level()
            );
        }
        got.push(all);
    }
    got
}

/// Units in the last place of f32 between `a` and `b`.
fn ulps(a: f32, b: f32) -> u32 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
}

/// The largest distance in ulps between two arrays' elements, f32 or f64.
fn worst_ulps(a: &Array, b: &Array) -> u64 {
    if a.dtype() == DType::F32 {
        let (a, b) = (a.to_vec::<f32>(), b.to_vec::<f32>());
        return a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| ulps(x, y) as u64)
            .max()
            .unwrap_or(0);
    }
    let (a, b) = (a.to_vec::<f64>(), b.to_vec::<f64>());
    a.iter()
        .zip(&b)
        .map(|(&x, &y)| {
            if x == y || (x.is_nan() && y.is_nan()) {
                0
            } else {
                (x.to_bits() as i128 - y.to_bits() as i128).unsigned_abs() as u64
            }
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn every_supported_vector_path_agrees_and_fuses_exactly() {
    let best = detected_simd_level();
    let mut rng = Generator::new(5);
    for dtype in [DType::F32, DType::F64] {
        // 1000 elements: the vector loops and their scalar tails
        let x = rng.uniform(&[10, 100], -3.0, 3.0, dtype);
        let y = rng.uniform(&[100], 0.1, 2.0, dtype);
        cap_simd_level(None);
        let reference = results(&x, &y);
        let long_columns = long_columns_agree_across_paths_and_positions(&[]);
        let blocked = blocked_products_match_a_naive_loop(dtype);
        for level in SimdLevel::ALL.into_iter().filter(|&l| l <= best) {
            cap_simd_level(Some(level));
            assert_eq!(simd_level(), level);
            every_layout_form_matches_a_scalar_loop();
            table::check_chains_on_short_runs(&mut rng);
            unit_dimension_products_match_a_naive_loop(dtype);
            long_columns_agree_across_paths_and_positions(&long_columns);
            let product = blocked_products_match_a_naive_loop(dtype);
            // the cap reaches gemm: its portable kernels multiply and add apart, so their
            // sums round differently from the fused multiply-adds of every vector path
            if level == SimdLevel::Portable && best != SimdLevel::Portable {
                assert!(
                    !product.bit_eq(&blocked),
                    "{dtype}: the portable cap left the products on {best:?} kernels"
                );
            }
            for ((name, want, got), (_, top, _)) in results(&x, &y).iter().zip(&reference) {
                assert!(
                    got.bit_eq(want),
                    "{level:?} {dtype} {name}: fused != unfused"
                );
                // the polynomial kernels unfused on the baseline: f32's (pow's through f64's
                // log and exp, rounded to f32), and f64's exp, log, tanh and their kin
                let polynomial = match dtype {
                    DType::F32 => &[
                        "Exp",
                        "Expm1",
                        "Log",
                        "Log1p",
                        "Tanh",
                        "Sigmoid",
                        "Sin",
                        "Cos",
                        "Tan",
                        "Erf",
                        "Gelu",
                        "Pow",
                        "Powf(0.7)",
                        "Powf(-0.5)",
                        "Sinh",
                        "Cosh",
                        "Asin",
                        "Acos",
                        "Atan",
                        "Atan2",
                        "Lgamma",
                        "Digamma",
                        "Erfinv",
                    ][..],
                    _ => &[
                        "Exp",
                        "Expm1",
                        "Log",
                        "Log1p",
                        "Tanh",
                        "Sigmoid",
                        "Erf",
                        "Gelu",
                        "Sin",
                        "Cos",
                        "Tan",
                        "Sinh",
                        "Cosh",
                        "Asin",
                        "Acos",
                        "Atan",
                        "Atan2",
                        "Erfinv",
                        "Powf(-0.5)",
                    ][..],
                };
                let loose = level == SimdLevel::Portable && polynomial.contains(&name.as_str());
                if level == SimdLevel::Portable && name.contains("Softmax") {
                    // the unfused exp's ulp, through sums and differences of values near 1
                    // (read as f64 either way)
                    let worst = want
                        .to_f64_vec()
                        .iter()
                        .zip(top.to_f64_vec())
                        .map(|(&a, b)| (a - b).abs())
                        .fold(0.0f64, f64::max);
                    let bound = if dtype == DType::F32 { 1e-6 } else { 1e-14 };
                    assert!(worst <= bound, "{level:?} {name}: {worst} from {best:?}");
                } else if level == SimdLevel::Portable && name == "GeluBackward" {
                    // Φ(x) + x φ(x) cancels near its zero (x ≈ -0.75), so its few ulps of
                    // erf and exp are measured against the result's scale, not each element
                    let (want, top) = (want.to_f64_vec(), top.to_f64_vec());
                    let scale = top.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                    let worst = (want.iter().zip(&top))
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f64, f64::max);
                    let epsilon = if dtype == DType::F32 {
                        f32::EPSILON as f64
                    } else {
                        f64::EPSILON
                    };
                    assert!(
                        worst <= 4.0 * epsilon * scale,
                        "{level:?} {name}: {worst} from {best:?}, scale {scale}"
                    );
                } else if loose {
                    let worst = worst_ulps(want, top);
                    // (GELU's forms are each within 8 ulp of the exact value)
                    let bound = if name == "Gelu" { 16 } else { 4 };
                    assert!(
                        worst <= bound,
                        "{level:?} {name}: {worst} ulp from {best:?}"
                    );
                } else {
                    assert!(
                        want.bit_eq(top),
                        "{level:?} {dtype} {name} differs from {best:?}"
                    );
                }
            }
        }
        cap_simd_level(None);
    }
    // a cap above the machine's level leaves it at the machine's
    cap_simd_level(Some(SimdLevel::Avx512));
    assert_eq!(simd_level(), best);
    cap_simd_level(None);
}
