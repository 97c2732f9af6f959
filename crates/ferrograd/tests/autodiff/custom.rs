use std::sync::Arc;

use ferrograd::{grad, gradcheck, gradgradcheck, Array, CustomOp, Tensor};

use crate::common::*;

/// softplus(x) = ln(1 + e^x), with its derivative σ(x) written with Tensor ops, so it can
/// be differentiated again.
#[derive(Debug)]
struct Softplus;

impl CustomOp for Softplus {
    fn name(&self) -> &str {
        "softplus"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        x[0].exp().log1p()
    }
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        _needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        vec![Some(g * &x[0].sigmoid())]
    }
}

/// y = a * b with a hand-written array kernel for the gradient (first order only).
#[derive(Debug)]
struct FastMul;

impl CustomOp for FastMul {
    fn name(&self) -> &str {
        "fast_mul"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        x[0].mul(x[1])
    }
    fn backward_array(
        &self,
        x: &[&Array],
        _out: &Array,
        g: &Array,
        _needs: &[bool],
    ) -> Vec<Option<Array>> {
        vec![Some(g.mul(x[1])), Some(g.mul(x[0]))]
    }
}

#[test]
fn custom_ops_mix_with_inferred_ones() {
    let sp: Arc<dyn CustomOp> = Arc::new(Softplus);
    let fm: Arc<dyn CustomOp> = Arc::new(FastMul);
    // loss = sum(softplus(w x) ⊙ tanh(w))
    let f = |p: &Vec<Tensor>| {
        let wx = Tensor::custom(fm.clone(), &[&p[0], &p[1]]);
        (&Tensor::custom(sp.clone(), &[&wx]) * &p[0].tanh()).sum()
    };
    let mut rng = ferrograd::Generator::new(5);
    let params = vec![
        rand(&mut rng, &[3, 2], -1.0, 1.0),
        rand(&mut rng, &[3, 2], -1.0, 1.0),
    ];
    let report = gradcheck(f, &params, (), 1e-6);
    assert!(report.passed(), "{report}");
    // the Tensor-level backward is differentiable again
    let g = |p: &Vec<Tensor>| (Tensor::custom(sp.clone(), &[&p[0]]) * &p[1]).sum();
    let report = gradgradcheck(g, &params, (), 1e-5);
    assert!(report.passed(), "{report}");
}

#[test]
fn an_array_level_backward_refuses_second_derivatives_loudly() {
    let fm: Arc<dyn CustomOp> = Arc::new(FastMul);
    let f = |x: &Tensor| Tensor::custom(fm.clone(), &[x, x]).sum();
    let (g, _) = grad(f).call(&Tensor::from_vec(vec![3.0f64], &[1]), ());
    assert_eq!(g.to_f64_vec(), vec![6.0]);
    let second = |x: &Tensor| grad(f).call(x, ()).0.sum();
    let msg = panic_message(|| {
        grad(second).call(&Tensor::from_vec(vec![3.0f64], &[1]), ());
    });
    assert!(
        msg.contains("fast_mul") && msg.contains("cannot be differentiated twice"),
        "{msg}"
    );
}

/// y = a * b that records which input gradients each backward call was asked for, and
/// computes only those.
#[derive(Debug, Default)]
struct RecordingMul(std::sync::Mutex<Vec<Vec<bool>>>);

impl CustomOp for RecordingMul {
    fn name(&self) -> &str {
        "recording_mul"
    }
    fn forward(&self, x: &[&Array]) -> Array {
        x[0].mul(x[1])
    }
    fn backward(
        &self,
        x: &[Tensor],
        _out: &Tensor,
        g: &Tensor,
        needs: &[bool],
    ) -> Vec<Option<Tensor>> {
        self.0.lock().unwrap().push(needs.to_vec());
        vec![needs[0].then(|| g * &x[1]), needs[1].then(|| g * &x[0])]
    }
}

#[test]
fn backward_is_told_which_inputs_need_a_gradient() {
    let op = Arc::new(RecordingMul::default());
    let dyn_op: Arc<dyn CustomOp> = op.clone();
    let data = Tensor::from_vec(vec![1.0f64, 2.0, 3.0], &[3]);
    let w = Tensor::from_vec(vec![0.5f64, -1.0, 2.0], &[3]);
    // Parameter first, data second: only the parameter's gradient is wanted.
    let f = |w: &Tensor, x: &Tensor| Tensor::custom(dyn_op.clone(), &[w, x]).square().sum();
    let (g, _) = grad(f).call(&w, (&data,));
    // d/dw sum((w x)²) = 2 w x²
    assert_close(&g, &[1.0, -8.0, 36.0], 1e-12);
    assert_eq!(op.0.lock().unwrap().pop(), Some(vec![true, false]));
    // Both inputs as parameters: both wanted.
    let f = |p: &(Tensor, Tensor)| Tensor::custom(dyn_op.clone(), &[&p.0, &p.1]).sum();
    let (g, _) = grad(f).call(&(w.clone(), data.clone()), ());
    assert_close(&g.0, &[1.0, 2.0, 3.0], 1e-12);
    assert_close(&g.1, &[0.5, -1.0, 2.0], 1e-12);
    assert_eq!(op.0.lock().unwrap().pop(), Some(vec![true, true]));
    // The same input on both sides.
    let f = |w: &Tensor| Tensor::custom(dyn_op.clone(), &[w, w]).sum();
    let (g, _) = grad(f).call(&w, ());
    assert_close(&g, &[1.0, -2.0, 4.0], 1e-12);
    assert_eq!(op.0.lock().unwrap().pop(), Some(vec![true, true]));
}
