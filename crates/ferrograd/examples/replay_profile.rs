use ferrograd::{grad, DType, Generator, Tensor};
fn chain(x: &Tensor) -> Tensor {
    let mut t = x.clone();
    for _ in 0..25 {
        t = t.sin();
        t = &t * 1.01;
        t = t.tanh();
        t = &t + 0.1;
    }
    t.sum()
}
fn main() {
    let x = Tensor::new(Generator::new(0).normal(&[10], 0.0, 1.0, DType::F32));
    let df = grad(chain).optimize(true);
    for _ in 0..200000 {
        std::hint::black_box(df.call(&x, ()));
    }
    if std::env::args().count() > 1 {
        println!("{}", df.plan_text());
    }
}
