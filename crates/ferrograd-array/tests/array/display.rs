use ferrograd_array::{Array, DType};

#[test]
fn prints_like_pytorch() {
    let a = Array::from_vec(vec![1.0f32, 2.5, -3.25, 4.0], &[2, 2]);
    assert_eq!(
        a.to_string(),
        "array([[ 1.0000,  2.5000],\n       [-3.2500,  4.0000]])"
    );
    let i = Array::from_vec(vec![1i64, 20, 300], &[3]);
    assert_eq!(i.to_string(), "array([  1,  20, 300], dtype=i64)");
    let w = Array::from_vec(vec![1.0f64, 2.0], &[2]);
    assert_eq!(w.to_string(), "array([1., 2.], dtype=f64)");
    assert_eq!(Array::scalar(0.5f32).to_string(), "array(0.5000)");
    assert_eq!(
        Array::from_vec(vec![true, false], &[2]).to_string(),
        "array([ true, false], dtype=bool)"
    );
    assert_eq!(
        Array::zeros(&[0, 2], DType::F32).to_string(),
        "array([], shape=[0, 2])"
    );
    let s = Array::from_vec(vec![1e-6f64, 1.0], &[2]);
    assert_eq!(s.to_string(), "array([1.0000e-06, 1.0000e+00], dtype=f64)");
    let t = Array::from_vec((0..8).map(|v| v as f32).collect(), &[2, 2, 2]);
    assert_eq!(
        t.to_string(),
        "array([[[0., 1.],\n        [2., 3.]],\n\n       [[4., 5.],\n        [6., 7.]]])"
    );
}

#[test]
fn large_arrays_are_summarised() {
    let a = Array::arange(0.0, 2000.0, 1.0, DType::I64);
    assert_eq!(
        a.to_string(),
        "array([   0,    1,    2, ..., 1997, 1998, 1999], dtype=i64)"
    );
    let m = Array::arange(0.0, 2500.0, 1.0, DType::I64).reshape(&[50, 50]);
    let s = m.to_string();
    assert!(s.starts_with("array([[   0,    1,    2, ...,   47,   48,   49],\n       [  50,"));
    assert!(s.contains("       ...,\n"));
    assert!(s.ends_with("2497, 2498, 2499]], dtype=i64)"));
}
