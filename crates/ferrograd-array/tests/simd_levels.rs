//! Every vector path the machine supports, by capping the level the kernels may use: the
//! elementwise kernels agree across levels (bit for bit, except f32 `exp`, `tanh` and
//! `sigmoid` on the portable path, which has no fused multiply-add: within a few ulp), and
//! on each level a fused program equals its ops run one at a time, bit for bit.
//!
//! Its own test binary: the cap is process-wide, and tests running beside it in one process
//! would see it change under them.

#[path = "shared/fused_table.rs"]
mod table;

use ferrograd_array::{
    cap_simd_level, detected_simd_level, simd_level, Array, DType, Generator, Instr, Program,
    SimdLevel,
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
    out
}

/// Units in the last place of f32 between `a` and `b`.
fn ulps(a: f32, b: f32) -> u32 {
    if a == b || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
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
        for level in SimdLevel::ALL.into_iter().filter(|&l| l <= best) {
            cap_simd_level(Some(level));
            assert_eq!(simd_level(), level);
            for ((name, want, got), (_, top, _)) in results(&x, &y).iter().zip(&reference) {
                assert!(
                    got.bit_eq(want),
                    "{level:?} {dtype} {name}: fused != unfused"
                );
                let loose = level == SimdLevel::Portable
                    && dtype == DType::F32
                    && ["Exp", "Tanh", "Sigmoid", "Sin", "Cos"].contains(&name.as_str());
                if loose {
                    let worst = want
                        .to_vec::<f32>()
                        .iter()
                        .zip(top.to_vec::<f32>())
                        .map(|(&a, b)| ulps(a, b))
                        .max()
                        .unwrap_or(0);
                    assert!(worst <= 4, "{level:?} {name}: {worst} ulp from {best:?}");
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
