use ferrograd_array::{Array, DType, Generator};

#[test]
fn filled_arrays() {
    assert_eq!(
        Array::zeros(&[2, 2], DType::F64).to_vec::<f64>(),
        vec![0.0; 4]
    );
    assert_eq!(Array::ones(&[3], DType::I64).to_vec::<i64>(), vec![1; 3]);
    assert_eq!(
        Array::ones(&[2], DType::Bool).to_vec::<bool>(),
        vec![true; 2]
    );
    assert_eq!(
        Array::full(&[2], 2.5, DType::F32).to_vec::<f32>(),
        vec![2.5; 2]
    );
    let a = Array::full(&[2, 1], 7.0, DType::F64);
    assert_eq!(Array::zeros_like(&a).shape(), &[2, 1]);
    assert_eq!(Array::ones_like(&a).to_vec::<f64>(), vec![1.0; 2]);
    assert_eq!(Array::full_like(&a, 3.0).dtype(), DType::F64);
    assert_eq!(Array::scalar(4i64).shape(), &[] as &[usize]);
    assert_eq!(Array::scalar(4i64).item::<i64>(), 4);
    assert_eq!(
        Array::from_slice(&[1.0f32, 2.0], &[2, 1]).item_f64_at0(),
        1.0
    );
}

trait First {
    fn item_f64_at0(&self) -> f64;
}
impl First for Array {
    fn item_f64_at0(&self) -> f64 {
        self.to_f64_vec()[0]
    }
}

#[test]
fn ranges_and_identity() {
    // arange excludes the end; a fractional step rounds the count up
    assert_eq!(
        Array::arange(0.0, 1.0, 0.25, DType::F64).to_vec::<f64>(),
        vec![0.0, 0.25, 0.5, 0.75]
    );
    assert_eq!(
        Array::arange(5.0, 0.0, -2.0, DType::I64).to_vec::<i64>(),
        vec![5, 3, 1]
    );
    assert_eq!(Array::arange(0.0, 0.0, 1.0, DType::F32).numel(), 0);
    assert_eq!(
        Array::linspace(0.0, 1.0, 5, DType::F64).to_vec::<f64>(),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(
        Array::linspace(2.0, 3.0, 1, DType::F64).to_vec::<f64>(),
        vec![2.0]
    );
    assert_eq!(
        Array::eye(3, DType::I64).to_vec::<i64>(),
        vec![1, 0, 0, 0, 1, 0, 0, 0, 1]
    );
}

#[test]
fn casts() {
    let a = Array::from_vec(vec![-1.7f64, 0.0, 2.9], &[3]);
    assert_eq!(a.to_dtype(DType::I64).to_vec::<i64>(), vec![-1, 0, 2]);
    assert_eq!(
        a.to_dtype(DType::Bool).to_vec::<bool>(),
        vec![true, false, true]
    );
    assert_eq!(
        a.to_dtype(DType::F32).to_vec::<f32>(),
        vec![-1.7f32, 0.0, 2.9]
    );
    let b = Array::from_vec(vec![true, false], &[2]);
    assert_eq!(b.to_dtype(DType::F64).to_vec::<f64>(), vec![1.0, 0.0]);
    // non-contiguous source
    let m = Array::from_vec(vec![1i64, 2, 3, 4], &[2, 2]).t();
    assert_eq!(
        m.to_dtype(DType::F32).to_vec::<f32>(),
        vec![1.0, 3.0, 2.0, 4.0]
    );
}

#[test]
fn random_fills_are_reproducible_and_have_the_right_moments() {
    let a = Generator::new(3)
        .uniform(&[10000], -2.0, 4.0, DType::F64)
        .to_vec::<f64>();
    let b = Generator::new(3)
        .uniform(&[10000], -2.0, 4.0, DType::F64)
        .to_vec::<f64>();
    assert_eq!(a, b);
    assert!(a.iter().all(|&x| (-2.0..4.0).contains(&x)));
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    assert!((mean - 1.0).abs() < 0.06, "uniform mean {mean}");
    let c = Generator::new(4)
        .uniform(&[10000], -2.0, 4.0, DType::F64)
        .to_vec::<f64>();
    assert_ne!(a, c);

    let n = Generator::new(5)
        .normal(&[20000], 3.0, 2.0, DType::F32)
        .to_vec::<f32>();
    let mean = n.iter().map(|&x| x as f64).sum::<f64>() / n.len() as f64;
    let var = n.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n.len() as f64;
    assert!(
        (mean - 3.0).abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
        "normal mean {mean} std {}",
        var.sqrt()
    );
    let z = Generator::new(5)
        .randn(&[20000], DType::F64)
        .to_vec::<f64>();
    let m = z.iter().sum::<f64>() / z.len() as f64;
    assert!(m.abs() < 0.03);

    let bern = Generator::new(6)
        .bernoulli(&[10000], 0.3, DType::F32)
        .to_vec::<f32>();
    assert!(bern.iter().all(|&x| x == 0.0 || x == 1.0));
    let p = bern.iter().sum::<f32>() / 10000.0;
    assert!((p - 0.3).abs() < 0.02, "bernoulli p {p}");

    let mut perm = Generator::new(7).randperm(50).to_vec::<i64>();
    assert_ne!(perm, (0..50).collect::<Vec<_>>());
    perm.sort();
    assert_eq!(perm, (0..50).collect::<Vec<_>>());

    let ints = Generator::new(8)
        .uniform(&[1000], 0.0, 3.0, DType::I64)
        .to_vec::<i64>();
    assert!(ints.iter().all(|&x| (0..3).contains(&x)));
    assert!((0..3).all(|v| ints.contains(&v)));
}
