use ferrograd_array::{DType, Generator};

use crate::common::*;

fn lines(values: &[f64], shape: &[usize], d: usize) -> Vec<Vec<usize>> {
    // positions of each line along dim d
    let mut out = Vec::new();
    for i in 0..numel(shape) {
        let idx = unravel(i, shape);
        if idx[d] == 0 {
            out.push(
                (0..shape[d])
                    .map(|k| {
                        let mut j = idx.clone();
                        j[d] = k;
                        ravel(&j, shape)
                    })
                    .collect(),
            );
        }
    }
    let _ = values;
    out
}

#[test]
fn softmax_and_log_softmax_forward_and_backward() {
    let mut rng = Generator::new(60);
    for dtype in [DType::F64, DType::F32] {
        for _ in 0..40 {
            let (shape, d) = shape_and_dim(&mut rng, 3, 5);
            let c = case_in(&mut rng, &shape, dtype, &LAYOUTS, -5.0, 5.0);
            let g = case(&mut rng, &shape, dtype, Layout::Contiguous, -1.0, 1.0);
            let mut sm = vec![0.0; c.values.len()];
            let mut lsm = vec![0.0; c.values.len()];
            let mut dsm = vec![0.0; c.values.len()];
            let mut dlsm = vec![0.0; c.values.len()];
            for line in lines(&c.values, &shape, d) {
                let m = line
                    .iter()
                    .map(|&i| c.values[i])
                    .fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = line.iter().map(|&i| (c.values[i] - m).exp()).sum();
                for &i in &line {
                    sm[i] = (c.values[i] - m).exp() / z;
                    lsm[i] = c.values[i] - m - z.ln();
                }
                // d softmax: y (g - <g, y>); d log_softmax: g - softmax * sum(g)
                let gy: f64 = line.iter().map(|&i| g.values[i] * sm[i]).sum();
                let gs: f64 = line.iter().map(|&i| g.values[i]).sum();
                for &i in &line {
                    dsm[i] = sm[i] * (g.values[i] - gy);
                    dlsm[i] = g.values[i] - sm[i] * gs;
                }
            }
            let (rtol, atol) = tol(dtype);
            let y = c.array.softmax(d);
            let ly = c.array.log_softmax(d as i64 - shape.len() as i64);
            assert_close(&y.to_f64_vec(), &sm, rtol * 10.0, atol);
            assert_close(&ly.to_f64_vec(), &lsm, rtol * 10.0, atol * 10.0);
            assert_close(
                &y.softmax_backward(&g.array, d).to_f64_vec(),
                &dsm,
                rtol * 10.0,
                atol * 10.0,
            );
            assert_close(
                &ly.log_softmax_backward(&g.array, d).to_f64_vec(),
                &dlsm,
                rtol * 10.0,
                atol * 10.0,
            );
        }
    }
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    let a = ferrograd_array::Array::from_vec(vec![1000.0f32, 1000.0, f32::NEG_INFINITY], &[3]);
    assert_eq!(a.softmax(0).to_vec::<f32>(), vec![0.5, 0.5, 0.0]);
    let l = a.log_softmax(0).to_vec::<f32>();
    assert!((l[0] + 2f32.ln()).abs() < 1e-6 && l[2] == f32::NEG_INFINITY);
    // a big batch takes the parallel path
    let mut rng = Generator::new(61);
    let big = rng.normal(&[1000, 600], 0.0, 3.0, DType::F64);
    let sums = big.softmax(1).sum_dim(1, false).to_vec::<f64>();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-12));
}
