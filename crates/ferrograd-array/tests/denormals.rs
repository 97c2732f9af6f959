//! `flush_denormals`: subnormal results and operands become zero on the calling thread and
//! on the pool's threads, and gradual underflow comes back when it is turned off.
//!
//! Its own test binary: the setting reaches every thread of the pool, which other tests in
//! one process would share.

use ferrograd_array::{flush_denormals, Array, DType};

/// Elements enough for an op to split across the pool's threads.
const BIG: usize = 1 << 21;

/// How many of `a`'s elements are subnormal, and how many are zero.
fn census(a: &Array) -> (usize, usize) {
    let v = a.to_f64_vec();
    let sub = v
        .iter()
        .filter(|&&x| x != 0.0 && (x as f32).abs() < f32::MIN_POSITIVE)
        .count();
    (sub, v.iter().filter(|&&x| x == 0.0).count())
}

#[test]
fn flushing_turns_subnormals_into_zeros_on_every_thread_and_back() {
    let tiny = Array::full(&[BIG], 1e-30, DType::F32);
    let subnormal = Array::full(&[BIG], 1e-40, DType::F32);
    let (a, b) = (
        Array::full(&[64, 64], 1e-20, DType::F32),
        Array::full(&[64, 64], 1e-21, DType::F32),
    );
    // off (the default): gradual underflow everywhere
    assert!(!flush_denormals(false));
    assert_eq!(census(&tiny.mul_scalar(1e-10)), (BIG, 0));
    assert_eq!(census(&subnormal.mul_scalar(1e5)).1, 0);
    assert_eq!(census(&a.matmul(&b)), (64 * 64, 0));
    // on: subnormal results are zeros (FTZ), subnormal operands read as zeros (DAZ), in
    // the halves of an op that the pool's threads run as in the calling thread's
    assert!(!flush_denormals(true));
    assert_eq!(census(&tiny.mul_scalar(1e-10)), (0, BIG));
    assert_eq!(census(&subnormal.mul_scalar(1e5)), (0, BIG));
    assert_eq!(census(&a.matmul(&b)), (0, 64 * 64));
    assert_eq!(
        census(&Array::full(&[BIG], -95.0, DType::F32).exp()),
        (0, BIG)
    );
    // normal values are untouched
    let normal = Array::full(&[BIG], 1e-20, DType::F32).mul_scalar(1e-10);
    assert!(normal.to_vec::<f32>().iter().all(|&x| x == 1e-30));
    // and off again
    assert!(flush_denormals(false));
    assert_eq!(census(&tiny.mul_scalar(1e-10)), (BIG, 0));
    assert_eq!(census(&a.matmul(&b)), (64 * 64, 0));
}
