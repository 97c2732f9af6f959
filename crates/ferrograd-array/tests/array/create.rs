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

/// Every `*_into` form writes exactly what its allocating form returns, into an output the
/// caller owns (and, when that output is not shared, without replacing its buffer).
#[test]
fn into_forms_match_allocating_forms() {
    use ferrograd_array::{Conv2dParams, Index, Pool2dParams};
    let mut rng = Generator::new(99);
    let x = rng.normal(&[2, 3, 6, 5], 0.0, 1.0, DType::F64);
    let w = rng.normal(&[4, 3, 3, 2], 0.0, 1.0, DType::F64);
    let p = Conv2dParams {
        padding: (1, 0),
        ..Default::default()
    };
    let q = Pool2dParams {
        kernel: (2, 2),
        stride: (2, 1),
        padding: (1, 0),
    };
    #[track_caller]
    fn same(want: &Array, write: impl FnOnce(&mut Array)) {
        let mut out = Array::zeros(want.shape(), want.dtype());
        write(&mut out);
        assert_eq!(out.to_f64_vec(), want.to_f64_vec());
    }
    let y = x.conv2d(&w, None, p);
    let dy = rng.normal(y.shape(), 0.0, 1.0, DType::F64);
    same(&y, |o| x.conv2d_into(&w, None, p, o));
    same(&dy.conv2d_backward_input(&w, x.shape(), p), |o| {
        dy.conv2d_backward_input_into(&w, x.shape(), p, o)
    });
    same(&dy.conv2d_backward_weight(&x, w.shape(), p), |o| {
        dy.conv2d_backward_weight_into(&x, w.shape(), p, o)
    });
    let (v, i) = x.max_pool2d(q);
    let (mut vo, mut io) = (
        Array::zeros(v.shape(), DType::F64),
        Array::zeros(i.shape(), DType::I64),
    );
    x.max_pool2d_into(q, &mut vo, &mut io);
    assert_eq!(
        (vo.to_f64_vec(), io.to_vec::<i64>()),
        (v.to_f64_vec(), i.to_vec::<i64>())
    );
    same(&v.max_pool2d_backward(&i, x.shape()), |o| {
        v.max_pool2d_backward_into(&i, x.shape(), o)
    });
    let a = x.avg_pool2d(q, false);
    same(&a, |o| x.avg_pool2d_into(q, false, o));
    same(&a.avg_pool2d_backward(x.shape(), q, false), |o| {
        a.avg_pool2d_backward_into(x.shape(), q, false, o)
    });
    let s = x.softmax(1);
    same(&s.softmax_backward(&x, 1), |o| {
        s.softmax_backward_into(&x, 1, o)
    });
    same(&s.log_softmax_backward(&x, 1), |o| {
        s.log_softmax_backward_into(&x, 1, o)
    });
    let m = rng.normal(&[4, 3], 0.0, 1.0, DType::F64);
    let idx = Array::from_vec(vec![2i64, 0, 2], &[3]);
    let src = rng.normal(&[3, 3], 0.0, 1.0, DType::F64);
    same(&m.index_add(0, &idx, &src), |o| {
        m.index_add_into(0, &idx, &src, o)
    });
    let gi = Array::from_vec(vec![1i64, 0, 1, 3, 3, 2], &[2, 3]);
    same(&m.scatter(0, &gi, &src), |o| {
        m.scatter_into(0, &gi, &src, o)
    });
    same(&m.scatter_add(0, &gi, &src), |o| {
        m.scatter_add_into(0, &gi, &src, o)
    });
    let rows = Index::List(vec![3, 1, 3]);
    same(&m.index_put(&rows, &src), |o| {
        m.index_put_into(&rows, &src, o)
    });
    same(&m.index_put_add(&rows, &src), |o| {
        m.index_put_add_into(&rows, &src, o)
    });
    let mask = m.gt_scalar(0.0);
    same(&m.masked_fill(&mask, 7.0), |o| {
        m.masked_fill_into(&mask, 7.0, o)
    });
    same(&m.flip([0, 1]), |o| m.flip_into([0, 1], o));
    same(&m.repeat(&[2, 1, 3]), |o| m.repeat_into(&[2, 1, 3], o));
    same(&m.tril(0), |o| m.tril_into(0, o));
    same(&m.triu(-1), |o| m.triu_into(-1, o));
    same(&m.diag(1), |o| m.diag_into(1, o));
    let v1 = Array::from_vec(vec![1.0f64, 2.0], &[2]);
    same(&v1.diag(-1), |o| v1.diag_into(-1, o));
    same(&Array::stack(&[m.clone(), m.clone()], 1), |o| {
        Array::stack_into(&[m.clone(), m.clone()], 1, o)
    });
    // an unshared output keeps its buffer
    let mut out = Array::zeros(&[4, 3], DType::F64);
    let alias = out.clone();
    drop(alias);
    m.exp_into(&mut out);
    let mut out2 = out.clone();
    m.exp_into(&mut out2); // shared with `out`: gets a fresh buffer, `out` is untouched
    assert!(!out2.shares_storage(&out));
}
