//! The fused functions and the unfused kernels that compute the same thing, shared by the
//! fused-program tests and the vector-path tests.

use ferrograd_array::{Array, MapFn, ZipFn};

pub const MAPS: [MapFn; 40] = [
    MapFn::Neg,
    MapFn::Abs,
    MapFn::Sign,
    MapFn::Relu,
    MapFn::Exp,
    MapFn::Log,
    MapFn::Log1p,
    MapFn::Expm1,
    MapFn::Sin,
    MapFn::Cos,
    MapFn::Tan,
    MapFn::Sinh,
    MapFn::Cosh,
    MapFn::Asin,
    MapFn::Acos,
    MapFn::Atan,
    MapFn::Erf,
    MapFn::Erfinv,
    MapFn::Gelu,
    MapFn::Lgamma,
    MapFn::Digamma,
    MapFn::Polygamma(2),
    MapFn::Trunc,
    MapFn::Tanh,
    MapFn::Sigmoid,
    MapFn::Sqrt,
    MapFn::Rsqrt,
    MapFn::Floor,
    MapFn::Ceil,
    MapFn::Round,
    MapFn::Reciprocal,
    MapFn::Square,
    MapFn::Identity,
    MapFn::Powi(3),
    MapFn::Powi(-2),
    MapFn::Powf(0.7),
    MapFn::Powf(0.5),
    MapFn::Powf(-0.5),
    MapFn::Clamp(Some(-0.5), Some(0.25)),
    MapFn::Clamp(None, Some(0.1)),
];

pub const ZIPS: [ZipFn; 19] = [
    ZipFn::Add,
    ZipFn::Sub,
    ZipFn::Mul,
    ZipFn::Div,
    ZipFn::Maximum,
    ZipFn::Minimum,
    ZipFn::Pow,
    ZipFn::Atan2,
    ZipFn::Fmod,
    ZipFn::Remainder,
    ZipFn::TanhBackward,
    ZipFn::SigmoidBackward,
    ZipFn::GeluBackward,
    ZipFn::Eq,
    ZipFn::Ne,
    ZipFn::Lt,
    ZipFn::Le,
    ZipFn::Gt,
    ZipFn::Ge,
];

/// The unfused kernel that computes `f`.
pub fn unfused_map(f: MapFn, x: &Array) -> Array {
    match f {
        MapFn::Neg => x.neg(),
        MapFn::Abs => x.abs(),
        MapFn::Sign => x.sign(),
        MapFn::Relu => x.relu(),
        MapFn::Exp => x.exp(),
        MapFn::Log => x.log(),
        MapFn::Log1p => x.log1p(),
        MapFn::Expm1 => x.expm1(),
        MapFn::Sin => x.sin(),
        MapFn::Cos => x.cos(),
        MapFn::Tan => x.tan(),
        MapFn::Sinh => x.sinh(),
        MapFn::Cosh => x.cosh(),
        MapFn::Asin => x.asin(),
        MapFn::Acos => x.acos(),
        MapFn::Atan => x.atan(),
        MapFn::Erf => x.erf(),
        MapFn::Erfinv => x.erfinv(),
        MapFn::Gelu => x.gelu(),
        MapFn::Lgamma => x.lgamma(),
        MapFn::Digamma => x.digamma(),
        MapFn::Polygamma(n) => x.polygamma(n),
        MapFn::Trunc => x.trunc(),
        MapFn::Tanh => x.tanh(),
        MapFn::Sigmoid => x.sigmoid(),
        MapFn::Sqrt => x.sqrt(),
        MapFn::Rsqrt => x.rsqrt(),
        MapFn::Floor => x.floor(),
        MapFn::Ceil => x.ceil(),
        MapFn::Round => x.round(),
        MapFn::Reciprocal => x.reciprocal(),
        MapFn::Square => x.square(),
        MapFn::Identity => x.pow_scalar(1.0),
        MapFn::Powi(n) => x.pow_scalar(n as f64),
        MapFn::Powf(e) => x.pow_scalar(e),
        MapFn::Clamp(lo, hi) => x.clamp(lo, hi),
    }
}

/// The unfused kernel that computes `f`, with broadcasting.
pub fn unfused_zip(f: ZipFn, x: &Array, y: &Array) -> Array {
    match f {
        ZipFn::Add => x.add(y),
        ZipFn::Sub => x.sub(y),
        ZipFn::Mul => x.mul(y),
        ZipFn::Div => x.div(y),
        ZipFn::Maximum => x.maximum(y),
        ZipFn::Minimum => x.minimum(y),
        ZipFn::Pow => x.pow(y),
        ZipFn::Atan2 => x.atan2(y),
        ZipFn::Fmod => x.fmod(y),
        ZipFn::Remainder => x.remainder(y),
        ZipFn::TanhBackward => x.tanh_backward(y),
        ZipFn::SigmoidBackward => x.sigmoid_backward(y),
        ZipFn::GeluBackward => x.gelu_backward(y),
        // comparisons as masks in the operands' dtype
        ZipFn::Eq => x.eq(y).to_dtype(x.dtype()),
        ZipFn::Ne => x.ne(y).to_dtype(x.dtype()),
        ZipFn::Lt => x.lt(y).to_dtype(x.dtype()),
        ZipFn::Le => x.le(y).to_dtype(x.dtype()),
        ZipFn::Gt => x.gt(y).to_dtype(x.dtype()),
        ZipFn::Ge => x.ge(y).to_dtype(x.dtype()),
    }
}

/// Programs over 1 to 17 elements (element by element below a third of a vector, in vector
/// form up to 16, padded above), in f32 and f64, with every function in a chain: a step reading
/// the previous step's result as its first operand, as its second, after a step the vector
/// form does not compute (a select, `Powf`, `Lgamma`: the chain restarts from memory), with a
/// transposed input, a one-element input and an input written out. Every output equals the
/// ops run one at a time, bit for bit.
pub fn check_chains_on_short_runs(rng: &mut ferrograd_array::Generator) {
    use ferrograd_array::{DType, Instr, Program};
    let run = |p: &Program, inputs: &[&Array], n: usize| -> Vec<Array> {
        let mut outs = vec![None; p.outputs().len()];
        p.run(inputs, &[n], inputs[0].dtype(), &mut outs);
        outs.into_iter().map(|o| o.expect("written")).collect()
    };
    let check = |got: &[Array], want: &[Array], what: &str| {
        for (k, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                g.bit_eq(w),
                "{what}, output {k}: fused {:?} != unfused {:?}",
                g.to_f64_vec(),
                w.to_f64_vec()
            );
        }
    };
    for dtype in [DType::F32, DType::F64] {
        for n in 1..=17 {
            let x = rng.uniform(&[n, 1], -1.5, 1.5, dtype).t().reshape(&[n]);
            let y = rng.uniform(&[n], 0.1, 2.0, dtype);
            let b = rng.uniform(&[1], 0.5, 1.5, dtype);
            let (i0, i1, i2) = (Instr::Input(0), Instr::Input(1), Instr::Input(2));
            for f in MAPS {
                // v = f(x); w = v + y; u = y * w; z = f(u); s = u < b ? u : v; r = f(s) ^ 0.7
                let p = Program::new(
                    vec![
                        i0,
                        i1,
                        i2,
                        Instr::Map(f, 0),
                        Instr::Zip(ZipFn::Add, 3, 1),
                        Instr::Zip(ZipFn::Mul, 1, 4),
                        Instr::Map(f, 5),
                        Instr::Zip(ZipFn::Lt, 5, 2),
                        Instr::Select(7, 5, 3),
                        Instr::Map(f, 8),
                        Instr::Map(MapFn::Powf(0.7), 9),
                        Instr::Map(MapFn::Tanh, 10),
                    ],
                    vec![3, 5, 6, 11, 1],
                );
                let v = unfused_map(f, &x);
                let u = y.mul(&v.add(&y));
                let s = Array::where_cond(&u.lt(&b), &u, &v);
                let r = unfused_map(MapFn::Powf(0.7), &unfused_map(f, &s)).tanh();
                let want = [v, u.clone(), unfused_map(f, &u), r, y.clone()];
                check(
                    &run(&p, &[&x, &y, &b], n),
                    &want,
                    &format!("{f:?} {dtype} [{n}]"),
                );
            }
            for f in ZIPS {
                // a = f(x, y); c = f(a, b); d = f(y, c); e = lgamma(d); g = f(e, c)
                let p = Program::new(
                    vec![
                        i0,
                        i1,
                        i2,
                        Instr::Zip(f, 0, 1),
                        Instr::Zip(f, 3, 2),
                        Instr::Zip(f, 1, 4),
                        Instr::Map(MapFn::Lgamma, 5),
                        Instr::Zip(f, 6, 4),
                    ],
                    vec![3, 5, 7],
                );
                let a = unfused_zip(f, &x, &y);
                let c = unfused_zip(f, &a, &b);
                let d = unfused_zip(f, &y, &c);
                let g = unfused_zip(f, &d.lgamma(), &c);
                check(
                    &run(&p, &[&x, &y, &b], n),
                    &[a, d, g],
                    &format!("{f:?} {dtype} [{n}]"),
                );
            }
            // `cos` then `sin` of one value, which the vector form computes in one step: of a
            // product, of the previous step's result (the pair's sine), with the sine read
            // next and the cosine later, both written out; `sin` then `cos` stay apart.
            // v = x * y; c = cos v; s = sin v; w = s + b; c2 = cos w; s2 = sin w;
            // q = s2 * c2 - c; h = sin x + cos x; and `cos y` then `sin x`, which stay apart:
            // k = sin x - cos y
            let p = Program::new(
                vec![
                    i0,
                    i1,
                    i2,
                    Instr::Zip(ZipFn::Mul, 0, 1),
                    Instr::Map(MapFn::Cos, 3),
                    Instr::Map(MapFn::Sin, 3),
                    Instr::Zip(ZipFn::Add, 5, 2),
                    Instr::Map(MapFn::Cos, 6),
                    Instr::Map(MapFn::Sin, 6),
                    Instr::Zip(ZipFn::Mul, 8, 7),
                    Instr::Zip(ZipFn::Sub, 9, 4),
                    Instr::Map(MapFn::Sin, 0),
                    Instr::Map(MapFn::Cos, 0),
                    Instr::Zip(ZipFn::Add, 11, 12),
                    Instr::Map(MapFn::Cos, 1),
                    Instr::Map(MapFn::Sin, 0),
                    Instr::Zip(ZipFn::Sub, 15, 14),
                ],
                vec![5, 10, 7, 13, 4, 16],
            );
            let v = x.mul(&y);
            let w = v.sin().add(&b);
            let q = w.sin().mul(&w.cos()).sub(&v.cos());
            let want = [
                v.sin(),
                q,
                w.cos(),
                x.sin().add(&x.cos()),
                v.cos(),
                x.sin().sub(&y.cos()),
            ];
            check(
                &run(&p, &[&x, &y, &b], n),
                &want,
                &format!("cos and sin {dtype} [{n}]"),
            );
        }
    }
}
