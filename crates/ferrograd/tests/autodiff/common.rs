use ferrograd::{DType, Generator, Tensor};

/// A random f64 tensor in `[low, high)`.
pub fn rand(rng: &mut Generator, shape: &[usize], low: f64, high: f64) -> Tensor {
    Tensor::new(rng.uniform(shape, low, high, DType::F64))
}

#[track_caller]
pub fn assert_close(got: &Tensor, want: &[f64], tol: f64) {
    let g = got.to_f64_vec();
    assert_eq!(
        g.len(),
        want.len(),
        "lengths differ: got {g:?}, want {want:?}"
    );
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "element {i}: got {a}, want {b} (all: {g:?})"
        );
    }
}

pub fn panic_message(f: impl FnOnce()) -> String {
    let err =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
