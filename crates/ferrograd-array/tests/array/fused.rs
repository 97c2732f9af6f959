//! Fused elementwise programs against the unfused kernels, bit for bit: every function, every
//! operand layout (contiguous, permuted, narrowed, broadcast, one element), tiles and the
//! split across threads.

use ferrograd_array::{Array, DType, Generator, Instr, MapFn, Program, Reduction, Window, ZipFn};

use crate::common::{case, LAYOUTS};
#[path = "../shared/fused_table.rs"]
mod table;
use table::{unfused_map, unfused_zip, MAPS, ZIPS};

/// Runs `program` into fresh outputs.
pub fn run(program: &Program, inputs: &[&Array], shape: &[usize]) -> Vec<Array> {
    let mut outs = vec![None; program.outputs().len() + program.reductions().len()];
    program.run(inputs, shape, inputs[0].dtype(), &mut outs);
    outs.into_iter().map(|o| o.expect("written")).collect()
}

pub fn assert_bits(got: &Array, want: &Array, what: &str) {
    assert!(
        got.bit_eq(want),
        "{what}: fused {:?} != unfused {:?}",
        &got.to_f64_vec()[..got.numel().min(6)],
        &want.to_f64_vec()[..want.numel().min(6)]
    );
}

#[test]
fn every_function_matches_its_unfused_kernel_on_every_layout() {
    let mut rng = Generator::new(11);
    for dtype in [DType::F32, DType::F64] {
        // under one tile, and several tiles with a ragged end
        for shape in [vec![5, 7], vec![3, 700]] {
            for layout in LAYOUTS {
                let x = case(&mut rng, &shape, dtype, layout, -1.5, 1.5).array;
                for f in MAPS {
                    let p = Program::new(vec![Instr::Input(0), Instr::Map(f, 0)], vec![1]);
                    let what = format!("{f:?} {dtype} {shape:?} {layout:?}");
                    assert_bits(&run(&p, &[&x], &shape)[0], &unfused_map(f, &x), &what);
                }
                for y_layout in LAYOUTS {
                    let y = case(&mut rng, &shape, dtype, y_layout, 0.1, 2.0).array;
                    for f in ZIPS {
                        let p = Program::new(
                            vec![Instr::Input(0), Instr::Input(1), Instr::Zip(f, 0, 1)],
                            vec![2],
                        );
                        let what = format!("{f:?} {dtype} {shape:?} {layout:?} {y_layout:?}");
                        assert_bits(
                            &run(&p, &[&x, &y], &shape)[0],
                            &unfused_zip(f, &x, &y),
                            &what,
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn operands_broadcast_from_smaller_shapes_and_single_elements() {
    let mut rng = Generator::new(12);
    // rows shorter than a tile (gathered), and rows of 1500 and 300 f32 (runs that tiles follow:
    // read in place, or as one value along a broadcast column)
    for (r, c) in [(40, 33), (6, 1500), (9, 300)] {
        let shape = [r, c];
        let x = rng.normal(&shape, 0.0, 1.0, DType::F32);
        for y in [
            rng.normal(&[c], 0.0, 1.0, DType::F32),
            rng.normal(&[r, 1], 0.0, 1.0, DType::F32),
            rng.normal(&[], 0.0, 1.0, DType::F32),
            rng.normal(&[1, 1], 0.0, 1.0, DType::F32),
            rng.normal(&[c, r], 0.0, 1.0, DType::F32).t(),
            rng.normal(&[r, c + 5], 0.0, 1.0, DType::F32)
                .narrow(1, 3, c),
        ] {
            for f in ZIPS {
                // the broadcast operand on either side, and through a map
                let p = Program::new(
                    vec![
                        Instr::Input(0),
                        Instr::Input(1),
                        Instr::Zip(f, 1, 0),
                        Instr::Zip(f, 0, 1),
                        Instr::Map(MapFn::Neg, 1),
                    ],
                    vec![2, 3, 4],
                );
                let what = format!("{f:?} with {:?} over {shape:?}", y.shape());
                let out = run(&p, &[&x, &y], &shape);
                assert_bits(&out[0], &unfused_zip(f, &y, &x), &what);
                assert_bits(&out[1], &unfused_zip(f, &x, &y), &what);
                let neg = y.neg().expand(&shape).contiguous();
                assert_bits(&out[2], &neg, &what);
            }
        }
    }
}

#[test]
fn a_chain_with_constants_and_several_outputs_matches_op_by_op() {
    let mut rng = Generator::new(13);
    // large enough to cross many tiles and, with two threads, to be split between them
    for (n, dtype) in [(1 << 20, DType::F32), (3001, DType::F64)] {
        let x = rng.normal(&[n / 8, 8], 0.0, 1.0, dtype);
        let b = rng.normal(&[8], 0.0, 1.0, dtype);
        let g = rng.normal(&[n / 8, 8], 0.0, 1.0, dtype);
        // y = tanh(x + b); z = 0.5 * y; dy = tanh_backward(y, g) - z; out y, dy, 3
        let p = Program::new(
            vec![
                Instr::Input(0),
                Instr::Input(1),
                Instr::Input(2),
                Instr::Zip(ZipFn::Add, 0, 1),
                Instr::Map(MapFn::Tanh, 3),
                Instr::Const(0.5),
                Instr::Zip(ZipFn::Mul, 5, 4),
                Instr::Zip(ZipFn::TanhBackward, 4, 2),
                Instr::Zip(ZipFn::Sub, 7, 6),
            ],
            vec![4, 8, 3],
        );
        let shape = [n / 8, 8];
        let out = run(&p, &[&x, &b, &g], &shape);
        let h = x.add(&b);
        let y = h.tanh();
        let dy = y.tanh_backward(&g).sub(&y.mul_scalar(0.5));
        assert_bits(&out[0], &y, "y");
        assert_bits(&out[1], &dy, "dy");
        assert_bits(&out[2], &h, "x + b");
    }
}

/// Programs shorter than a tile run padded to whole vectors (their outputs computed in
/// registers and copied out) from a third of a vector up, and element by element below: at
/// every length from 1 to 40, in f32 and f64, with a broadcast operand, a transposed one, a
/// constant, an input and a value each written out twice, every output equals the ops run one
/// at a time, bit for bit.
#[test]
fn short_programs_padded_to_whole_vectors_match_op_by_op() {
    let mut rng = Generator::new(14);
    for dtype in [DType::F32, DType::F64] {
        for n in 1..=40 {
            let x = rng.normal(&[n], 0.0, 1.0, dtype);
            let b = rng.normal(&[1], 0.0, 1.0, dtype);
            let t = rng.normal(&[n, 1], 0.0, 1.0, dtype).t().reshape(&[n]);
            // s = sin(x) * 1.01 + b; y = tanh(s) - t; out y, exp(y), s, x, y
            let p = Program::new(
                vec![
                    Instr::Input(0),
                    Instr::Input(1),
                    Instr::Input(2),
                    Instr::Map(MapFn::Sin, 0),
                    Instr::Const(1.01),
                    Instr::Zip(ZipFn::Mul, 3, 4),
                    Instr::Zip(ZipFn::Add, 5, 1),
                    Instr::Map(MapFn::Tanh, 6),
                    Instr::Zip(ZipFn::Sub, 7, 2),
                    Instr::Map(MapFn::Exp, 8),
                ],
                vec![8, 9, 6, 0, 8],
            );
            let out = run(&p, &[&x, &b, &t], &[n]);
            let s = x.sin().mul_scalar(1.01).add(&b);
            let y = s.tanh().sub(&t);
            let what = format!("{dtype} [{n}]");
            for (got, want) in out.iter().zip([&y, &y.exp(), &s, &x, &y]) {
                assert_bits(got, want, &what);
            }
        }
    }
}

/// `sin`, `cos` (alone and as the pair the vector form computes in one step) and `tan` of
/// arguments beyond their reduction's bound (1.6·10⁶), where they are libm's: short programs
/// (the vector form) and long ones (tiles) give the op-by-op values bit for bit, and those
/// are libm's in f64, rounded for f32 (`sin(1e30)` in f32 once came out as +inf).
#[test]
fn sin_cos_and_tan_of_huge_arguments_are_libms_in_every_form() {
    let huge = [
        1e30,
        -7.7e20,
        2e6,
        1.600_001e6,
        3e38,
        1.234e9,
        0.5,
        -2.0,
        1e7,
    ];
    for dtype in [DType::F32, DType::F64] {
        for n in [3usize, 9, 16, 17, 40, 300] {
            let values: Vec<f64> = (0..n).map(|i| huge[i % huge.len()]).collect();
            let x = Array::from_vec(values.clone(), &[n]).to_dtype(dtype);
            // c = cos x; s = sin x; t = tan x; a = sin(2x) alone; out c, s, t, a
            let p = Program::new(
                vec![
                    Instr::Input(0),
                    Instr::Map(MapFn::Cos, 0),
                    Instr::Map(MapFn::Sin, 0),
                    Instr::Map(MapFn::Tan, 0),
                    Instr::Const(2.0),
                    Instr::Zip(ZipFn::Mul, 0, 4),
                    Instr::Map(MapFn::Sin, 5),
                ],
                vec![1, 2, 3, 6],
            );
            let out = run(&p, &[&x], &[n]);
            let twice = x.mul_scalar(2.0);
            let want = [x.cos(), x.sin(), x.tan(), twice.sin()];
            let what = format!("{dtype} [{n}]");
            for (got, want) in out.iter().zip(&want) {
                assert_bits(got, want, &what);
            }
            let exact: [fn(f64) -> f64; 3] = [f64::cos, f64::sin, f64::tan];
            let x = x.to_f64_vec();
            for (k, f) in exact.into_iter().enumerate() {
                for (got, &v) in want[k].to_f64_vec().iter().zip(&x) {
                    let libm = if dtype == DType::F32 {
                        f(v) as f32 as f64
                    } else {
                        f(v)
                    };
                    if v.abs() > 1.6e6 {
                        assert_eq!(*got, libm, "{what}: function {k} at {v:e}");
                    } else {
                        let bound = if dtype == DType::F32 { 1e-6 } else { 1e-15 };
                        assert!(
                            (got - libm).abs() <= bound * libm.abs().max(1.0),
                            "{what}: {k} at {v:e}"
                        );
                    }
                }
            }
        }
    }
}

/// Chains of every function on runs of 1 to 17 elements (see
/// [`table::check_chains_on_short_runs`]; `simd_levels` runs it on each vector path).
#[test]
fn chains_on_short_runs_match_op_by_op() {
    table::check_chains_on_short_runs(&mut Generator::new(15));
}

/// Sums and means at the end of a program (a loss's sum, a bias gradient's column sum) equal
/// `sum_dim` and `mean_dim` of the value computed op by op, bit for bit: every element or the
/// leading dims, fewer or more than 16 kept, padded short runs, one tile or many, tiles that
/// end where a strided input's rows end (so they start off a multiple of 16), the reduced
/// value written out as well or not.
#[test]
fn reductions_at_the_end_match_sum_dim_and_mean_dim_bit_for_bit() {
    let mut rng = Generator::new(15);
    let cases: [(&[usize], usize); 12] = [
        (&[7], 1),
        (&[10], 1),
        (&[33], 1),
        (&[3000], 1),
        (&[1, 10], 1),
        (&[40, 3], 1),
        (&[37, 3], 2),
        (&[2, 3, 4], 1),
        (&[5, 16], 1),
        (&[33, 40], 1),
        (&[2, 3, 20], 2),
        (&[50, 300], 1),
    ];
    for dtype in [DType::F32, DType::F64] {
        for &(shape, lead) in &cases {
            let (rows, cols) = (shape[0], shape[1..].iter().product::<usize>());
            let x = rng.normal(shape, 0.0, 1.0, dtype);
            // rows of a wider array: a strided input whose runs are its rows
            let t = rng
                .normal(&[rows, cols + 5], 0.0, 1.0, dtype)
                .narrow(1, 2, cols);
            let t = t.reshape(shape);
            let dims: Vec<usize> = (0..lead.min(shape.len())).collect();
            let all: Vec<usize> = (0..shape.len()).collect();
            let kept = |dims: &[usize]| -> ferrograd_array::Shape {
                (shape.iter().enumerate())
                    .map(|(d, &n)| if dims.contains(&d) { 1 } else { n })
                    .collect()
            };
            // v = exp(x * 0.5) - t; sums and means of v, v written out or not
            for write in [false, true] {
                let reduction = |dims: &[usize], mean| Reduction {
                    value: 4,
                    mean,
                    shape: kept(dims),
                };
                let p = Program::with_reductions(
                    vec![
                        Instr::Input(0),
                        Instr::Input(1),
                        Instr::Const(0.5),
                        Instr::Zip(ZipFn::Mul, 0, 2),
                        Instr::Map(MapFn::Exp, 3),
                        Instr::Zip(ZipFn::Sub, 4, 1),
                    ],
                    if write { vec![5] } else { vec![] },
                    vec![
                        reduction(&dims, false),
                        reduction(&dims, true),
                        reduction(&all, false),
                        Reduction {
                            value: 5,
                            ..reduction(&all, true)
                        },
                    ],
                );
                let out = run(&p, &[&x, &t], shape);
                let e = x.mul_scalar(0.5).exp();
                let v = e.sub(&t);
                let mut want = vec![
                    e.sum_dim(dims.as_slice(), true),
                    e.mean_dim(dims.as_slice(), true),
                    e.sum_dim(all.as_slice(), true),
                    v.mean_dim(all.as_slice(), true),
                ];
                if write {
                    want.insert(0, v.clone());
                }
                assert_eq!(out.len(), want.len());
                for (k, (got, want)) in out.iter().zip(&want).enumerate() {
                    assert_bits(got, want, &format!("{dtype} {shape:?} output {k}"));
                }
            }
        }
    }
}

#[test]
fn a_reduction_must_divide_the_programs_shape() {
    let p = Program::with_reductions(
        vec![Instr::Input(0), Instr::Map(MapFn::Exp, 0)],
        vec![],
        vec![Reduction {
            value: 1,
            mean: false,
            shape: [3usize].as_slice().into(),
        }],
    );
    let x = Array::from_vec(vec![1.0f32; 4], &[4]);
    let err = std::panic::catch_unwind(|| run(&p, &[&x], &[4])).unwrap_err();
    let msg = err.downcast_ref::<String>().expect("a message");
    assert!(
        msg.contains("fused program") && msg.contains("[3]") && msg.contains("[4]"),
        "{msg}"
    );
}

/// A gradient step's update, `a ∓ (b·c)·d` or `a ∓ b·d`, runs as one loop: with every
/// operand form (contiguous, a broadcast row or column read as one value along its run, one
/// element, a constant, a transposed view gathered), the operands of each product and sum in
/// either order, over rows shorter and longer than a tile (an update's longer tile too) and
/// in f32 and f64, the result
/// equals the ops run one at a time, bit for bit. Programs that only look like one (a
/// product used twice, a map inside, two outputs) run instruction by instruction.
#[test]
fn a_gradient_step_update_runs_as_one_loop_and_matches_op_by_op() {
    use Instr::{Const, Input, Zip};
    use ZipFn::{Add, Mul, Sub};
    let mut rng = Generator::new(14);
    for (r, c, dtype) in [
        (100, 1000, DType::F32),
        (40, 33, DType::F64),
        (7, 300, DType::F32),
        (3, 5000, DType::F32),
        (300, 10, DType::F64),
    ] {
        let shape = [r, c];
        let p = rng.normal(&shape, 0.0, 1.0, dtype);
        let forms = [
            rng.normal(&shape, 0.0, 1.0, dtype),
            rng.normal(&[c], 0.0, 1.0, dtype),
            rng.normal(&[r, 1], 0.0, 1.0, dtype),
            rng.normal(&[1, 1], 0.0, 1.0, dtype),
            rng.normal(&[c, r], 0.0, 1.0, dtype).t(),
        ];
        // the forms read as elements in every run: the matrix, the row broadcast down it,
        // the transposed view (gathered); the column and the one value are repeated values
        let elements = |form: usize| [0, 1, 4].contains(&form);
        for (i, x) in forms.iter().enumerate() {
            for (j, g) in forms.iter().enumerate() {
                // (instrs, output, want)
                let d = Array::scalar(0.01).to_dtype(dtype);
                let xg = x.mul(g);
                let cases: Vec<(Vec<Instr>, Array)> = vec![
                    // p - (x·g)·0.01, then with the products' operands swapped
                    (
                        vec![
                            Input(0),
                            Input(1),
                            Input(2),
                            Zip(Mul, 1, 2),
                            Const(0.01),
                            Zip(Mul, 3, 4),
                            Zip(Sub, 0, 5),
                        ],
                        p.sub(&xg.mul(&d)),
                    ),
                    (
                        vec![
                            Input(0),
                            Input(1),
                            Input(2),
                            Zip(Mul, 2, 1),
                            Const(0.01),
                            Zip(Mul, 4, 3),
                            Zip(Sub, 0, 5),
                        ],
                        p.sub(&g.mul(x).mul(&d)),
                    ),
                    // (x·g)·g + p: the third factor an input, the sum's operands swapped
                    (
                        vec![
                            Input(0),
                            Input(1),
                            Input(2),
                            Zip(Mul, 1, 2),
                            Zip(Mul, 3, 2),
                            Zip(Add, 4, 0),
                        ],
                        xg.mul(g).add(&p),
                    ),
                    // p + x·g and p - g·0.01
                    (
                        vec![Input(0), Input(1), Input(2), Zip(Mul, 1, 2), Zip(Add, 0, 3)],
                        p.add(&xg),
                    ),
                    (
                        vec![
                            Input(0),
                            Input(1),
                            Const(0.01),
                            Zip(Mul, 1, 2),
                            Zip(Sub, 0, 3),
                        ],
                        p.sub(&x.mul(&d)),
                    ),
                ];
                for (k, (instrs, want)) in cases.into_iter().enumerate() {
                    let out = instrs.len() - 1;
                    let prog = Program::new(instrs, vec![out]);
                    assert!(prog.is_one_loop(), "case {k}");
                    let what = format!(
                        "case {k}, {:?} and {:?} over {shape:?}",
                        x.shape(),
                        g.shape()
                    );
                    let got = run(&prog, &[&p, x, g], &shape);
                    let want = want.expand(&shape).contiguous();
                    assert_bits(&got[0], &want, &what);
                    // written over (a copy of) p: the same bits, whenever a factor is read as
                    // elements in every run, and p unchanged otherwise
                    assert_eq!(prog.update_input(), Some(0), "{what}");
                    let mut target = Array::from_vec(p.to_f64_vec(), &shape).to_dtype(dtype);
                    let done =
                        prog.run_in_place(&[None, Some(x), Some(g)], &mut target, &shape, dtype);
                    let one_loop = match k {
                        4 => elements(i),
                        _ => elements(i) || elements(j),
                    };
                    assert_eq!(done, one_loop, "{what}: in place");
                    assert_bits(
                        &target,
                        if done { &want } else { &p },
                        &format!("{what}, in place"),
                    );
                    // never over a buffer something else holds
                    let mut target = Array::from_vec(p.to_f64_vec(), &shape).to_dtype(dtype);
                    let held = target.clone();
                    let inputs = [None, Some(x), Some(g)];
                    assert!(
                        !prog.run_in_place(&inputs, &mut target, &shape, dtype),
                        "{what}"
                    );
                    assert_bits(&held, &p, &format!("{what}, held"));
                }
            }
        }
    }
    // look-alikes
    let not_updates = [
        // the product also written out
        (
            vec![Input(0), Input(1), Input(2), Zip(Mul, 1, 2), Zip(Sub, 0, 3)],
            vec![4, 3],
        ),
        // the product used twice
        (
            vec![Input(0), Input(1), Input(2), Zip(Mul, 1, 2), Zip(Sub, 3, 3)],
            vec![4],
        ),
        // the subtrahend first
        (
            vec![Input(0), Input(1), Input(2), Zip(Mul, 1, 2), Zip(Sub, 3, 0)],
            vec![4],
        ),
        // a map inside
        (
            vec![
                Input(0),
                Input(1),
                Instr::Map(MapFn::Exp, 1),
                Zip(Mul, 2, 1),
                Zip(Sub, 0, 3),
            ],
            vec![4],
        ),
    ];
    let x = rng.normal(&[50, 60], 0.0, 1.0, DType::F32);
    let g = rng.normal(&[60], 0.0, 1.0, DType::F32);
    let p = rng.normal(&[50, 60], 0.0, 1.0, DType::F32);
    for (k, (instrs, outputs)) in not_updates.into_iter().enumerate() {
        let prog = Program::new(instrs, outputs);
        assert!(!prog.is_one_loop(), "look-alike {k}");
        // and they still compute what they say
        let got = run(&prog, &[&p, &x, &g], &[50, 60]);
        let want = match k {
            0 => p.sub(&x.mul(&g)),
            1 => x.mul(&g).sub(&x.mul(&g)),
            2 => x.mul(&g).sub(&p),
            _ => p.sub(&x.exp().mul(&x)),
        };
        assert_bits(&got[0], &want, &format!("look-alike {k}"));
    }
}

#[test]
fn outputs_are_written_into_the_given_buffers_when_unshared() {
    let x = Array::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    let p = Program::new(vec![Instr::Input(0), Instr::Map(MapFn::Square, 0)], vec![1]);
    let buffer = Array::zeros(&[3], DType::F64);
    let id = buffer.storage_id();
    let mut outs = [Some(buffer)];
    p.run(&[&x], &[3], DType::F64, &mut outs);
    let out = outs[0].take().expect("written");
    assert_eq!(out.storage_id(), id);
    assert_eq!(out.to_f64_vec(), [1.0, 4.0, 9.0]);
    // a buffer someone else holds is left alone
    let held = out.clone();
    let mut outs = [Some(out)];
    p.run(&[&x.mul_scalar(2.0)], &[3], DType::F64, &mut outs);
    assert_eq!(held.to_f64_vec(), [1.0, 4.0, 9.0]);
    assert_eq!(
        outs[0].as_ref().expect("written").to_f64_vec(),
        [4.0, 16.0, 36.0]
    );
}

#[test]
fn bad_programs_and_operands_are_refused_with_the_reason() {
    let err = crate::common::panic_message(|| {
        Program::new(vec![Instr::Input(0), Instr::Map(MapFn::Exp, 2)], vec![1]);
    });
    assert!(
        err.contains("fused program") && err.contains("instruction 1 reads value 2"),
        "{err}"
    );
    // at the caller's line (the checks ran in a closure, which named the library's)
    let here = line!() + 2;
    let err = crate::common::panic_message(|| {
        Program::new(vec![Instr::Input(0)], vec![3]);
    });
    assert!(err.contains("output 3 is not a value"), "{err}");
    assert!(err.contains(&format!("(at {}:{here}:", file!())), "{err}");
    let p = Program::new(vec![Instr::Input(0), Instr::Map(MapFn::Exp, 0)], vec![1]);
    let err = crate::common::panic_message(|| {
        run(&p, &[&Array::zeros(&[4], DType::F32)], &[3]);
    });
    assert!(err.contains("[4]") && err.contains("[3]"), "{err}");
    let err = crate::common::panic_message(|| {
        let mut outs = [None];
        p.run(
            &[&Array::zeros(&[3], DType::F32)],
            &[3],
            DType::F64,
            &mut outs,
        );
    });
    assert!(err.contains("f32") && err.contains("f64"), "{err}");
}

#[test]
fn a_select_on_a_comparison_is_where_on_the_bool_mask() {
    let mut rng = Generator::new(14);
    for dtype in [DType::F32, DType::F64] {
        let x = rng.normal(&[7, 300], 0.0, 1.0, dtype);
        let y = rng.normal(&[300], 0.0, 1.0, dtype);
        // where(x > y, x * 2, y): a relu-like gate with a broadcast operand
        let p = Program::new(
            vec![
                Instr::Input(0),
                Instr::Input(1),
                Instr::Zip(ZipFn::Gt, 0, 1),
                Instr::Const(2.0),
                Instr::Zip(ZipFn::Mul, 0, 3),
                Instr::Select(2, 4, 1),
            ],
            vec![5],
        );
        let want = Array::where_cond(&x.gt(&y), &x.mul_scalar(2.0), &y);
        assert_bits(&run(&p, &[&x, &y], &[7, 300])[0], &want, "select");
    }
}

/// `run_over` writes outputs over inputs and gives `run`'s bits: an Adam step (`m' = 0.9 m +
/// 0.1 g`, `v' = 0.999 v + 0.001 g²`, `p' = p - 0.01 m' / (√v' + 10⁻⁸)`) with its new weights
/// and moments over the old ones, and paired crosswise (`m'` over `v`, which is read after
/// `m'` is written: every read of an input written over must see the input), at every
/// length form (one element, the vector form, padded, tiles, two halves, ranges on
/// threads), in f32 and f64, with the gradient in full or broadcast along rows. The results
/// lie in the inputs' buffers. A buffer held elsewhere is refused with nothing written, and
/// pairs that do not match the `None` inputs are refused with the reason.
#[test]
fn outputs_written_over_inputs_give_the_bits_of_a_plain_run() {
    use MapFn::Sqrt;
    use ZipFn::{Add, Div, Mul, Sub};
    let program = Program::new(
        vec![
            Instr::Input(0), // p
            Instr::Input(1), // m
            Instr::Input(2), // v
            Instr::Input(3), // g
            Instr::Const(0.9),
            Instr::Zip(Mul, 4, 1),
            Instr::Const(0.1),
            Instr::Zip(Mul, 6, 3),
            Instr::Zip(Add, 5, 7), // m'
            Instr::Const(0.999),
            Instr::Zip(Mul, 9, 2),
            Instr::Zip(Mul, 3, 3),
            Instr::Const(0.001),
            Instr::Zip(Mul, 12, 11),
            Instr::Zip(Add, 10, 13), // v'
            Instr::Map(Sqrt, 14),
            Instr::Const(1e-8),
            Instr::Zip(Add, 15, 16),
            Instr::Zip(Div, 8, 17),
            Instr::Const(0.01),
            Instr::Zip(Mul, 19, 18),
            Instr::Zip(Sub, 0, 20), // p'
        ],
        vec![21, 8, 14],
    );
    let mut rng = Generator::new(19);
    for dtype in [DType::F32, DType::F64] {
        for rows in [1usize, 2, 5, 375, 9000, 131_072] {
            let shape = [rows, 8];
            for broadcast in [false, true] {
                let g = match broadcast {
                    true => rng.normal(&[8], 0.0, 1.0, dtype),
                    false => rng.normal(&shape, 0.0, 1.0, dtype),
                };
                let p = rng.normal(&shape, 0.0, 1.0, dtype);
                let m = rng.normal(&shape, 0.0, 0.1, dtype);
                let v = rng.normal(&shape, 0.0, 0.1, dtype).abs();
                let want = run(&program, &[&p, &m, &v, &g], &shape);
                for over in [[(0, 0), (1, 1), (2, 2)], [(0, 0), (2, 1), (1, 2)]] {
                    let case = format!("{dtype} {shape:?} broadcast {broadcast} over {over:?}");
                    let (pc, mc, vc) = (p.copy(), m.copy(), v.copy());
                    let ids = [pc.storage_id(), mc.storage_id(), vc.storage_id()];
                    let mut inputs = [Some(pc), Some(mc), Some(vc)];
                    let mut outs = vec![None, None, None];
                    for &(i, j) in &over {
                        outs[j] = inputs[i].take();
                    }
                    let given = [None, None, None, Some(&g)];
                    assert!(
                        program.run_over(&given, &over, &shape, dtype, &mut outs),
                        "{case}"
                    );
                    for (j, (got, want)) in outs.iter().zip(&want).enumerate() {
                        let got = got.as_ref().expect("written");
                        assert_bits(got, want, &format!("{case}: output {j}"));
                        let i = over.iter().find(|&&(_, o)| o == j).unwrap().0;
                        assert_eq!(got.storage_id(), ids[i], "{case}: output {j} in place");
                    }
                }
            }
        }
    }
    // a held buffer is not written; pairs must match the inputs given as None
    let shape = [100];
    let x = rng.normal(&shape, 0.0, 1.0, DType::F32);
    let g = rng.normal(&shape, 0.0, 1.0, DType::F32);
    let held = x.copy();
    let mut outs = vec![Some(held.clone()), None, None];
    let given = [None, Some(&x), Some(&x), Some(&g)];
    assert!(!program.run_over(&given, &[(0, 0)], &shape, DType::F32, &mut outs));
    assert!(held.bit_eq(&x) && outs[1].is_none(), "nothing written");
    let err = crate::common::panic_message(|| {
        let mut outs = vec![Some(x.copy()), None, None];
        program.run_over(&given, &[(1, 0)], &shape, DType::F32, &mut outs);
    });
    assert!(
        err.contains("fused program") && err.contains("(1, 0)"),
        "{err}"
    );
}

/// An LSTM cell's backward-like program: four gate gradients and a carried gradient from
/// inputs read as column blocks of one `[rows, 4 cols]` block (strided), and (`sum`) the
/// sum of one of them (a program with a reduction runs on the calling thread alone).
fn gates_program(sum: bool) -> Program {
    use MapFn::Tanh;
    use ZipFn::{Add, Mul, SigmoidBackward, TanhBackward};
    Program::with_reductions(
        vec![
            Instr::Input(0), // dh
            Instr::Input(1), // i
            Instr::Input(2), // g
            Instr::Input(3), // c
            Instr::Map(Tanh, 3),
            Instr::Zip(Mul, 0, 4),
            Instr::Zip(TanhBackward, 4, 5), // dc
            Instr::Zip(Mul, 6, 2),
            Instr::Zip(SigmoidBackward, 1, 7), // di
            Instr::Zip(Mul, 6, 1),
            Instr::Zip(TanhBackward, 2, 9), // dg
            Instr::Zip(Add, 6, 0),          // carried
            Instr::Zip(Mul, 8, 10),         // a fourth
        ],
        vec![8, 10, 11, 12, 6],
        match sum {
            true => vec![Reduction {
                value: 11,
                mean: false,
                shape: [1].into_iter().collect(),
            }],
            false => vec![],
        },
    )
}

/// Outputs written into windows of a larger array (a stack's rows, each gate's block of
/// columns) are the outputs a plain run gives, bit for bit, in the windows' elements, and
/// the target's other elements are kept; on one thread, in halves on two cores and split
/// over the pool; windows whose rows are shorter than a tile, longer, and not a multiple
/// of a vector.
#[test]
fn outputs_written_into_windows_of_a_target_give_the_bits_of_a_plain_run() {
    let mut rng = Generator::new(21);
    let (x, y) = (
        rng.normal(&[256, 256], 0.0, 1.0, DType::F32),
        rng.normal(&[256, 256], 0.0, 1.0, DType::F32),
    );
    let cases = [DType::F32, DType::F64]
        .into_iter()
        .flat_map(|d| [(d, false), (d, true)]);
    for (dtype, sum) in cases {
        let program = gates_program(sum);
        let outputs = 5 + usize::from(sum);
        let shapes = [
            (32usize, 200usize),
            (33, 200),
            (3, 37),
            (64, 1000),
            (1500, 333),
            (5, 16),
        ];
        for &(rows, cols) in &shapes {
            let shape = [rows, cols];
            let block = rng.normal(&[rows, 4 * cols], 0.0, 1.0, dtype);
            let gate = |k: usize| block.narrow(1, k * cols, cols);
            let dh = rng.normal(&shape, 0.0, 1.0, dtype);
            let (i, g, c) = (gate(0).sigmoid(), gate(1).tanh(), gate(2));
            let want = run(&program, &[&dh, &i, &g, &c], &shape);
            for awake in [false, true] {
                if awake {
                    std::hint::black_box(x.matmul(&y));
                }
                let case = format!("{dtype} {shape:?} sum {sum}, after a product: {awake}");
                // the four gate gradients into their columns of rows 3.. of the stack, the
                // carried gradient into an array of its own
                let stride = 4 * cols;
                let start = 3 * stride;
                let before = rng.normal(&[rows + 5, stride], 0.0, 1.0, dtype);
                let mut stack = before.copy();
                let windows: Vec<(usize, Window)> = (0..4)
                    .map(|k| {
                        let at = start + [1, 0, 3, 2][k] * cols;
                        (
                            k,
                            Window {
                                start: at,
                                cols,
                                stride,
                            },
                        )
                    })
                    .collect();
                let mut outs = vec![None; outputs];
                program.run_into(
                    &[&dh, &i, &g, &c],
                    &shape,
                    dtype,
                    &mut outs,
                    &windows,
                    &mut stack,
                );
                for (k, (j, w)) in windows.iter().enumerate() {
                    let got = stack.narrow(0, 3, rows).narrow(1, w.start - start, cols);
                    assert_bits(&got, &want[*j], &format!("{case}: window {k}"));
                    assert!(outs[*j].is_none(), "{case}: window {k}'s slot left empty");
                }
                assert_bits(
                    outs[4].as_ref().expect("written"),
                    &want[4],
                    &format!("{case}: dc"),
                );
                if sum {
                    assert_bits(
                        outs[5].as_ref().expect("written"),
                        &want[5],
                        &format!("{case}: sum"),
                    );
                }
                let kept =
                    |a: &Array| Array::cat(&[a.narrow(0, 0, 3), a.narrow(0, 3 + rows, 2)], 0);
                assert_bits(
                    &kept(&stack),
                    &kept(&before),
                    &format!("{case}: other rows kept"),
                );
            }
        }
    }
    // a target shared with another array is copied first: the other never sees the writes
    let program = gates_program(true);
    let shape = [4, 20];
    let dh = rng.normal(&shape, 0.0, 1.0, DType::F32);
    let i = rng.normal(&shape, 0.0, 1.0, DType::F32);
    let mut stack = Array::zeros(&[4, 80], DType::F32);
    let other = stack.clone();
    let at = |output: usize, start: usize| {
        let window = Window {
            start,
            cols: 20,
            stride: 80,
        };
        (output, window)
    };
    let run = |windows: &[(usize, Window)], stack: &mut Array| {
        let mut outs = vec![None; 6];
        program.run_into(
            &[&dh, &i, &i, &i],
            &shape,
            DType::F32,
            &mut outs,
            windows,
            stack,
        );
    };
    run(&[at(0, 0)], &mut stack);
    assert!(
        other.bit_eq(&Array::zeros(&[4, 80], DType::F32)),
        "the other array kept"
    );
    // windows that do not fit, overlap, or name an output twice
    for (windows, says) in [
        (vec![at(0, 70)], "does not hold 80 elements"),
        (vec![at(0, 0), at(1, 10)], "may share elements"),
        (vec![at(0, 0), at(0, 20)], "named twice"),
    ] {
        let err = crate::common::panic_message(|| {
            run(&windows, &mut Array::zeros(&[4, 80], DType::F32));
        });
        assert!(err.contains("fused program") && err.contains(says), "{err}");
        assert!(err.contains(&format!("(at {}:", file!())), "{err}");
    }
}

/// `write_window` copies any layout of its source (contiguous, strided, broadcast) into its
/// rows of the target, the rest kept; a target shared with another array is copied first.
#[test]
fn a_window_write_copies_any_layout_into_its_rows() {
    let mut rng = Generator::new(22);
    let block = rng.normal(&[6, 9], 0.0, 1.0, DType::F64);
    let sources = [
        block.narrow(1, 2, 4),                                  // strided rows
        block.narrow(1, 0, 4).contiguous(),                     // contiguous
        rng.normal(&[4], 0.0, 1.0, DType::F64).expand(&[6, 4]), // a broadcast row
    ];
    for (k, x) in sources.iter().enumerate() {
        let before = rng.normal(&[8, 10], 0.0, 1.0, DType::F64);
        let mut target = before.copy();
        let shared = target.clone();
        x.write_window(
            &mut target,
            Window {
                start: 13,
                cols: 4,
                stride: 10,
            },
        );
        let got = target.narrow(0, 1, 6).narrow(1, 3, 4);
        assert_bits(&got, &x.contiguous(), &format!("source {k}"));
        let mask = |a: &Array| {
            let mut v = a.to_vec::<f64>();
            for r in 1..7 {
                for c in 3..7 {
                    v[r * 10 + c] = 0.0;
                }
            }
            v
        };
        assert_eq!(mask(&target), mask(&before), "source {k}: the rest kept");
        assert!(shared.bit_eq(&before), "source {k}: the sharing array kept");
    }
    let x = Array::zeros(&[3, 4], DType::F32);
    let err = crate::common::panic_message(|| {
        x.write_window(
            &mut Array::zeros(&[3, 8], DType::F32),
            Window {
                start: 5,
                cols: 4,
                stride: 8,
            },
        )
    });
    assert!(
        err.contains("write_window") && err.contains("does not hold 12 elements"),
        "{err}"
    );
    let err = crate::common::panic_message(|| {
        x.write_window(
            &mut Array::zeros(&[3, 8], DType::F64),
            Window {
                start: 0,
                cols: 4,
                stride: 8,
            },
        )
    });
    assert!(err.contains("write_window"), "{err}");
}
