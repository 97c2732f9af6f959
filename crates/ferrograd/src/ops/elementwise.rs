//! Elementwise primitives: unary math, scalar operands, clamp, binary math with
//! broadcasting, comparisons, `where`, casts; and the operators `+ - * /` and unary `-`.

use std::ops::{Add, Div, Mul, Neg, Sub};

use smallvec::smallvec;

use super::{mask_as, scalar_like, unbroadcast};
use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::{Array, DType, Tensor};

/// One-input elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Unary {
    Neg,
    Abs,
    Exp,
    Log,
    Log1p,
    Expm1,
    Sqrt,
    Rsqrt,
    Sin,
    Cos,
    Tan,
    Sinh,
    Cosh,
    Asin,
    Acos,
    Atan,
    Erf,
    Erfinv,
    Lgamma,
    Digamma,
    Polygamma(u32),
    Tanh,
    Sigmoid,
    Gelu,
    Relu,
    Reciprocal,
    Square,
    Sign,
    Floor,
    Ceil,
    Round,
    Trunc,
}

impl Unary {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Unary::Neg => "neg",
            Unary::Abs => "abs",
            Unary::Exp => "exp",
            Unary::Log => "log",
            Unary::Log1p => "log1p",
            Unary::Expm1 => "expm1",
            Unary::Sqrt => "sqrt",
            Unary::Rsqrt => "rsqrt",
            Unary::Sin => "sin",
            Unary::Cos => "cos",
            Unary::Tan => "tan",
            Unary::Sinh => "sinh",
            Unary::Cosh => "cosh",
            Unary::Asin => "asin",
            Unary::Acos => "acos",
            Unary::Atan => "atan",
            Unary::Erf => "erf",
            Unary::Erfinv => "erfinv",
            Unary::Lgamma => "lgamma",
            Unary::Digamma => "digamma",
            Unary::Polygamma(_) => "polygamma",
            Unary::Tanh => "tanh",
            Unary::Sigmoid => "sigmoid",
            Unary::Gelu => "gelu",
            Unary::Relu => "relu",
            Unary::Reciprocal => "reciprocal",
            Unary::Square => "square",
            Unary::Sign => "sign",
            Unary::Floor => "floor",
            Unary::Ceil => "ceil",
            Unary::Round => "round",
            Unary::Trunc => "trunc",
        }
    }

    /// Sign and rounding are flat almost everywhere: no gradient.
    pub(crate) fn is_differentiable(self) -> bool {
        !matches!(
            self,
            Unary::Sign | Unary::Floor | Unary::Ceil | Unary::Round | Unary::Trunc
        )
    }

    #[track_caller]
    pub(crate) fn forward(self, x: &Array) -> Array {
        match self {
            Unary::Neg => x.neg(),
            Unary::Abs => x.abs(),
            Unary::Exp => x.exp(),
            Unary::Log => x.log(),
            Unary::Log1p => x.log1p(),
            Unary::Expm1 => x.expm1(),
            Unary::Sqrt => x.sqrt(),
            Unary::Rsqrt => x.rsqrt(),
            Unary::Sin => x.sin(),
            Unary::Cos => x.cos(),
            Unary::Tan => x.tan(),
            Unary::Sinh => x.sinh(),
            Unary::Cosh => x.cosh(),
            Unary::Asin => x.asin(),
            Unary::Acos => x.acos(),
            Unary::Atan => x.atan(),
            Unary::Erf => x.erf(),
            Unary::Erfinv => x.erfinv(),
            Unary::Lgamma => x.lgamma(),
            Unary::Digamma => x.digamma(),
            Unary::Polygamma(n) => x.polygamma(n),
            Unary::Tanh => x.tanh(),
            Unary::Sigmoid => x.sigmoid(),
            Unary::Gelu => x.gelu(),
            Unary::Relu => x.relu(),
            Unary::Reciprocal => x.reciprocal(),
            Unary::Square => x.square(),
            Unary::Sign => x.sign(),
            Unary::Floor => x.floor(),
            Unary::Ceil => x.ceil(),
            Unary::Round => x.round(),
            Unary::Trunc => x.trunc(),
        }
    }

    /// [`forward`](Unary::forward) into `out`, a buffer of the result's shape and dtype.
    #[track_caller]
    pub(crate) fn forward_into(self, x: &Array, out: &mut Array) {
        match self {
            Unary::Neg => x.neg_into(out),
            Unary::Abs => x.abs_into(out),
            Unary::Exp => x.exp_into(out),
            Unary::Log => x.log_into(out),
            Unary::Log1p => x.log1p_into(out),
            Unary::Expm1 => x.expm1_into(out),
            Unary::Sqrt => x.sqrt_into(out),
            Unary::Rsqrt => x.rsqrt_into(out),
            Unary::Sin => x.sin_into(out),
            Unary::Cos => x.cos_into(out),
            Unary::Tan => x.tan_into(out),
            Unary::Sinh => x.sinh_into(out),
            Unary::Cosh => x.cosh_into(out),
            Unary::Asin => x.asin_into(out),
            Unary::Acos => x.acos_into(out),
            Unary::Atan => x.atan_into(out),
            Unary::Erf => x.erf_into(out),
            Unary::Erfinv => x.erfinv_into(out),
            Unary::Lgamma => x.lgamma_into(out),
            Unary::Digamma => x.digamma_into(out),
            Unary::Polygamma(n) => x.polygamma_into(n, out),
            Unary::Tanh => x.tanh_into(out),
            Unary::Sigmoid => x.sigmoid_into(out),
            Unary::Gelu => x.gelu_into(out),
            Unary::Relu => x.relu_into(out),
            Unary::Reciprocal => x.reciprocal_into(out),
            Unary::Square => x.square_into(out),
            Unary::Sign => x.sign_into(out),
            Unary::Floor => x.floor_into(out),
            Unary::Ceil => x.ceil_into(out),
            Unary::Round => x.round_into(out),
            Unary::Trunc => x.trunc_into(out),
        }
    }
}

/// Gradient rules of the unary functions.
pub(crate) fn unary_vjp(u: Unary, x: &Tensor, out: &Tensor, g: &Tensor) -> Grads {
    let dx = match u {
        // d(-x) = -1
        Unary::Neg => -g,
        // d|x| = sign(x)
        Unary::Abs => g * &x.sign(),
        // d e^x = e^x
        Unary::Exp => g * out,
        // d ln x = 1/x
        Unary::Log => g / x,
        // d ln(1+x) = 1/(1+x)
        Unary::Log1p => g / &(x + 1.0),
        // d (e^x - 1) = e^x
        Unary::Expm1 => g * &(out + 1.0),
        // d sqrt x = 1 / (2 sqrt x)
        Unary::Sqrt => &(g * 0.5) / out,
        // d x^-1/2 = -1/2 x^-3/2
        Unary::Rsqrt => &(g * -0.5) * &out.pow_scalar(3.0),
        // d sin = cos, d cos = -sin
        Unary::Sin => g * &x.cos(),
        Unary::Cos => -(g * &x.sin()),
        // d tan = 1 + tan²
        Unary::Tan => g * &(&out.square() + 1.0),
        // d sinh = cosh, d cosh = sinh
        Unary::Sinh => g * &x.cosh(),
        Unary::Cosh => g * &x.sinh(),
        // d asin = 1 / sqrt(1 - x²), d acos = -1 / sqrt(1 - x²)
        Unary::Asin => g * &x.square().rsub_scalar(1.0).rsqrt(),
        Unary::Acos => -(g * &x.square().rsub_scalar(1.0).rsqrt()),
        // d atan = 1 / (1 + x²)
        Unary::Atan => g / &(&x.square() + 1.0),
        // d erf = 2/√π e^(-x²)
        Unary::Erf => g * &(x.square().neg().exp() * std::f64::consts::FRAC_2_SQRT_PI),
        // d erfinv(x) = √π/2 e^(erfinv(x)²)
        Unary::Erfinv => g * &(out.square().exp() * (std::f64::consts::PI.sqrt() / 2.0)),
        // d ln Γ = ψ, d ψ⁽ⁿ⁾ = ψ⁽ⁿ⁺¹⁾
        Unary::Lgamma => g * &x.digamma(),
        Unary::Digamma => g * &x.polygamma(1),
        Unary::Polygamma(n) => g * &x.polygamma(n + 1),
        // d tanh = 1 - tanh², fused in one pass
        Unary::Tanh => out.tanh_backward(g),
        // d σ = σ (1 - σ), fused in one pass
        Unary::Sigmoid => out.sigmoid_backward(g),
        // d gelu = Φ(x) + x φ(x), fused in one pass
        Unary::Gelu => x.gelu_backward(g),
        // d relu = [x > 0]
        Unary::Relu => g * &mask_as(&x.gt_scalar(0.0), x),
        // d 1/x = -1/x²
        Unary::Reciprocal => -(g * &out.square()),
        // d x² = 2x
        Unary::Square => g * &(x * 2.0),
        Unary::Sign | Unary::Floor | Unary::Ceil | Unary::Round | Unary::Trunc => {
            return smallvec![None]
        }
    };
    smallvec![Some(dx)]
}

/// Elementwise math with a scalar `s` on one side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarOp {
    /// `x + s`
    Add,
    /// `x * s`
    Mul,
    /// `x / s`
    Div,
    /// `s - x`
    Rsub,
    /// `s / x`
    Rdiv,
    /// `x ^ s`
    Pow,
    /// `s ^ x`
    Rpow,
}

impl ScalarOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ScalarOp::Add => "add_scalar",
            ScalarOp::Mul => "mul_scalar",
            ScalarOp::Div => "div_scalar",
            ScalarOp::Rsub => "rsub_scalar",
            ScalarOp::Rdiv => "rdiv_scalar",
            ScalarOp::Pow => "pow_scalar",
            ScalarOp::Rpow => "rpow_scalar",
        }
    }

    #[track_caller]
    pub(crate) fn forward(self, x: &Array, s: f64) -> Array {
        match self {
            ScalarOp::Add => x.add_scalar(s),
            ScalarOp::Mul => x.mul_scalar(s),
            ScalarOp::Div => x.div_scalar(s),
            ScalarOp::Rsub => x.rsub_scalar(s),
            ScalarOp::Rdiv => x.rdiv_scalar(s),
            ScalarOp::Pow => x.pow_scalar(s),
            ScalarOp::Rpow => x.rpow_scalar(s),
        }
    }

    /// The scalar as the 0-d array the kernels take (none for `Pow`, which has its own).
    pub(crate) fn operand(self, s: f64, dtype: DType) -> Option<Array> {
        (self != ScalarOp::Pow).then(|| Array::full(&[], s, dtype))
    }

    /// [`forward`](ScalarOp::forward) into `out`, with the scalar already an array
    /// ([`operand`](ScalarOp::operand)).
    #[track_caller]
    pub(crate) fn forward_into(self, x: &Array, s: f64, operand: Option<&Array>, out: &mut Array) {
        let c = || operand.expect("scalar ops other than pow carry their operand");
        match self {
            ScalarOp::Add => x.add_into(c(), out),
            ScalarOp::Mul => x.mul_into(c(), out),
            ScalarOp::Div => x.div_into(c(), out),
            ScalarOp::Rsub => c().sub_into(x, out),
            ScalarOp::Rdiv => c().div_into(x, out),
            ScalarOp::Pow => x.pow_scalar_into(s, out),
            ScalarOp::Rpow => c().pow_into(x, out),
        }
    }
}

pub(crate) fn scalar_vjp(op: ScalarOp, s: f64, x: &Tensor, out: &Tensor, g: &Tensor) -> Grads {
    let dx = match op {
        ScalarOp::Add => g.clone(),
        ScalarOp::Mul => g * s,
        ScalarOp::Div => g / s,
        ScalarOp::Rsub => -g,
        // d (s/x) = -s/x² = -out/x
        ScalarOp::Rdiv => -(g * &(out / x)),
        // d x^s = s x^(s-1)
        ScalarOp::Pow if s == 0.0 => return smallvec![None],
        ScalarOp::Pow => g * &(x.pow_scalar(s - 1.0) * s),
        // d s^x = s^x ln s; 0 where s = 0 and x >= 0 (0^x is flat there), as in PyTorch
        ScalarOp::Rpow if s == 0.0 => {
            let flat = x.ge_scalar(0.0);
            Tensor::where_cond(&flat, &scalar_like(0.0, x), &(g * &(out * s.ln())))
        }
        ScalarOp::Rpow => g * &(out * s.ln()),
    };
    smallvec![Some(dx)]
}

pub(crate) fn clamp_vjp(min: Option<f64>, max: Option<f64>, x: &Tensor, g: &Tensor) -> Grads {
    // The gradient passes where min <= x <= max.
    let keep = x
        .ge_scalar(min.unwrap_or(f64::NEG_INFINITY))
        .logical_and(&x.le_scalar(max.unwrap_or(f64::INFINITY)));
    smallvec![Some(g * &mask_as(&keep, x))]
}

/// Two-input elementwise functions with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    Pow,
    Atan2,
    Fmod,
    Remainder,
}

impl Binary {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
            Binary::Maximum => "maximum",
            Binary::Minimum => "minimum",
            Binary::Pow => "pow",
            Binary::Atan2 => "atan2",
            Binary::Fmod => "fmod",
            Binary::Remainder => "remainder",
        }
    }

    #[track_caller]
    pub(crate) fn forward(self, a: &Array, b: &Array) -> Array {
        match self {
            Binary::Add => a.add(b),
            Binary::Sub => a.sub(b),
            Binary::Mul => a.mul(b),
            Binary::Div => a.div(b),
            Binary::Maximum => a.maximum(b),
            Binary::Minimum => a.minimum(b),
            Binary::Pow => a.pow(b),
            Binary::Atan2 => a.atan2(b),
            Binary::Fmod => a.fmod(b),
            Binary::Remainder => a.remainder(b),
        }
    }

    /// [`forward`](Binary::forward) into `out`.
    #[track_caller]
    pub(crate) fn forward_into(self, a: &Array, b: &Array, out: &mut Array) {
        match self {
            Binary::Add => a.add_into(b, out),
            Binary::Sub => a.sub_into(b, out),
            Binary::Mul => a.mul_into(b, out),
            Binary::Div => a.div_into(b, out),
            Binary::Maximum => a.maximum_into(b, out),
            Binary::Minimum => a.minimum_into(b, out),
            Binary::Pow => a.pow_into(b, out),
            Binary::Atan2 => a.atan2_into(b, out),
            Binary::Fmod => a.fmod_into(b, out),
            Binary::Remainder => a.remainder_into(b, out),
        }
    }
}

pub(crate) fn binary_vjp(
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Grads {
    // Each side's gradient before unbroadcasting; only the sides the pass uses are computed.
    let side = |i: usize| -> Tensor {
        let first = i == 0;
        match op {
            Binary::Add => g.clone(),
            Binary::Sub if first => g.clone(),
            Binary::Sub => -g,
            Binary::Mul => g * if first { b } else { a },
            // d(a/b)/da = 1/b, d(a/b)/db = -a/b² = -out/b
            Binary::Div if first => g / b,
            Binary::Div => -(g * &(out / b)),
            // ties split the gradient evenly, as PyTorch does
            Binary::Maximum | Binary::Minimum => {
                let wins = match (op == Binary::Maximum, first) {
                    (true, true) => a.gt(b),
                    (true, false) => b.gt(a),
                    (false, true) => a.lt(b),
                    (false, false) => b.lt(a),
                };
                let share = &mask_as(&wins, g) + &(mask_as(&a.eq(b), g) * 0.5);
                g * &share
            }
            // d a^b / da = b a^(b-1), 0 where b = 0 (not 0 · 0^-1 = NaN at a = 0);
            // d a^b / db = a^b ln a, 0 where a = 0 and b >= 0 (flat there; for b < 0 the
            // infinity of ∞ · ln 0), as in PyTorch
            Binary::Pow if first => {
                let d = g * &(b * &a.pow(&(b - 1.0)));
                Tensor::where_cond(&b.eq_scalar(0.0), &scalar_like(0.0, &d), &d)
            }
            Binary::Pow => {
                let flat = a.eq_scalar(0.0).logical_and(&b.ge_scalar(0.0));
                let d = g * &(out * &a.log());
                Tensor::where_cond(&flat, &scalar_like(0.0, &d), &d)
            }
            // d atan2(a, b) = (b da - a db) / (a² + b²); 0 at a = b = 0, as in PyTorch
            Binary::Atan2 => {
                let r = &a.square() + &b.square();
                let origin = r.eq_scalar(0.0);
                let safe = Tensor::where_cond(&origin, &scalar_like(1.0, &r), &r);
                let d = if first {
                    g * &(b / &safe)
                } else {
                    -(g * &(a / &safe))
                };
                Tensor::where_cond(&origin, &scalar_like(0.0, &d), &d)
            }
            // a - q b with q = trunc(a/b) (fmod) or floor(a/b) (remainder), flat in a and b
            Binary::Fmod | Binary::Remainder if first => g.clone(),
            Binary::Fmod => -(g * &(a / b).trunc()),
            Binary::Remainder => -(g * &(a / b).floor()),
        }
    };
    smallvec![
        wanted(needs, 0, || unbroadcast(&side(0), a.shape())),
        wanted(needs, 1, || unbroadcast(&side(1), b.shape())),
    ]
}

/// Comparisons and logic: bool results, no gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
    Not,
}

impl Compare {
    /// Whether this compares two values (not a logic op on bools).
    pub(crate) fn is_comparison(self) -> bool {
        !matches!(self, Compare::And | Compare::Or | Compare::Not)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Compare::Eq => "eq",
            Compare::Ne => "ne",
            Compare::Lt => "lt",
            Compare::Le => "le",
            Compare::Gt => "gt",
            Compare::Ge => "ge",
            Compare::And => "logical_and",
            Compare::Or => "logical_or",
            Compare::Not => "logical_not",
        }
    }

    #[track_caller]
    pub(crate) fn forward(self, x: &[&Array]) -> Array {
        match self {
            Compare::Eq => x[0].eq(x[1]),
            Compare::Ne => x[0].ne(x[1]),
            Compare::Lt => x[0].lt(x[1]),
            Compare::Le => x[0].le(x[1]),
            Compare::Gt => x[0].gt(x[1]),
            Compare::Ge => x[0].ge(x[1]),
            Compare::And => x[0].logical_and(x[1]),
            Compare::Or => x[0].logical_or(x[1]),
            Compare::Not => x[0].logical_not(),
        }
    }

    /// [`forward`](Compare::forward) into `out`; false for the logic ops, which have no
    /// such form.
    #[track_caller]
    pub(crate) fn forward_into(self, x: &[&Array], out: &mut Array) -> bool {
        match self {
            Compare::Eq => x[0].eq_into(x[1], out),
            Compare::Ne => x[0].ne_into(x[1], out),
            Compare::Lt => x[0].lt_into(x[1], out),
            Compare::Le => x[0].le_into(x[1], out),
            Compare::Gt => x[0].gt_into(x[1], out),
            Compare::Ge => x[0].ge_into(x[1], out),
            Compare::And | Compare::Or | Compare::Not => return false,
        }
        true
    }
}

pub(crate) fn where_vjp(
    cond: &Tensor,
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Grads {
    let zero = scalar_like(0.0, g);
    smallvec![
        None,
        wanted(needs, 1, || unbroadcast(
            &Tensor::where_cond(cond, g, &zero),
            a.shape()
        )),
        wanted(needs, 2, || unbroadcast(
            &Tensor::where_cond(cond, &zero, g),
            b.shape()
        )),
    ]
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $variant:ident;)*) => {
        impl Tensor {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self) -> Tensor {
                apply(Op::Unary(Unary::$variant), &[self])
            }
        )*}
    };
}

unary_methods! {
    /// `-x`.
    neg => Neg;
    /// `|x|` (gradient `sign(x)`, 0 at 0).
    abs => Abs;
    /// `e^x`.
    exp => Exp;
    /// Natural logarithm.
    log => Log;
    /// `ln(1 + x)`.
    log1p => Log1p;
    /// `e^x - 1`.
    expm1 => Expm1;
    /// Square root.
    sqrt => Sqrt;
    /// `1 / sqrt(x)`.
    rsqrt => Rsqrt;
    /// Sine.
    sin => Sin;
    /// Cosine.
    cos => Cos;
    /// Tangent.
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// // d tan(x) / dx = 1 + tan²(x): 2 at π/4
    /// let (g, _) = grad(|x: &Tensor| x.tan().sum()).call(&Tensor::scalar(std::f64::consts::FRAC_PI_4), ());
    /// assert!((g.item::<f64>() - 2.0).abs() < 1e-12);
    /// ```
    tan => Tan;
    /// Hyperbolic sine.
    sinh => Sinh;
    /// Hyperbolic cosine.
    cosh => Cosh;
    /// Arcsine (NaN outside `[-1, 1]`; gradient `1 / sqrt(1 - x²)`).
    asin => Asin;
    /// Arccosine (NaN outside `[-1, 1]`; gradient `-1 / sqrt(1 - x²)`).
    acos => Acos;
    /// Arctangent (gradient `1 / (1 + x²)`).
    atan => Atan;
    /// The error function `2/√π ∫₀ˣ e^(-t²) dt` (gradient `2/√π e^(-x²)`).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![0.0f64, 1.0, -1.0], &[3]);
    /// let y = x.erf().to_vec::<f64>();
    /// assert!(y[0] == 0.0 && (y[1] - 0.8427007929497149).abs() < 1e-15 && y[2] == -y[1]);
    /// ```
    erf => Erf;
    /// Hyperbolic tangent.
    tanh => Tanh;
    /// The logistic function.
    sigmoid => Sigmoid;
    /// `max(x, 0)` (gradient 0 at 0).
    relu => Relu;
    /// `1 / x`.
    reciprocal => Reciprocal;
    /// `x²`.
    square => Square;
    /// -1, 0 or 1 (no gradient).
    sign => Sign;
    /// Round down (no gradient).
    floor => Floor;
    /// Round up (no gradient).
    ceil => Ceil;
    /// Round half to even (no gradient).
    round => Round;
    /// Round toward zero (no gradient).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![-1.5f64, 2.7], &[2]);
    /// assert_eq!(x.trunc().to_vec::<f64>(), vec![-1.0, 2.0]);
    /// ```
    trunc => Trunc;
    /// The inverse error function on `(-1, 1)` (±∞ at ±1, NaN outside).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let y = Tensor::from_vec(vec![-0.5f64, 0.0, 0.9], &[3]);
    /// let back = y.erfinv().erf().to_vec::<f64>();
    /// assert!(back.iter().zip([-0.5, 0.0, 0.9]).all(|(a, b)| (a - b).abs() < 1e-15));
    /// ```
    erfinv => Erfinv;
    /// `ln |Γ(x)|`, PyTorch's `lgamma` (+∞ at 0 and the negative integers).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![5.0f64], &[1]);
    /// assert!((x.lgamma().item::<f64>() - 24f64.ln()).abs() < 1e-14); // Γ(5) = 4!
    /// ```
    lgamma => Lgamma;
    /// The digamma function `ψ(x) = Γ'(x) / Γ(x)`, the derivative of `lgamma` (-∞ at 0,
    /// NaN at the negative integers).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64], &[1]);
    /// assert!((x.digamma().item::<f64>() + 0.5772156649015329).abs() < 1e-14); // -γ
    /// ```
    digamma => Digamma;
}

impl Tensor {
    /// The polygamma function `ψ⁽ⁿ⁾(x)`, the `n`-th derivative of
    /// [`digamma`](Tensor::digamma) (`n = 0` is digamma; PyTorch's `torch.polygamma(n, x)`).
    /// Differentiable to any order (each derivative is the next polygamma).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64], &[1]);
    /// let trigamma = x.polygamma(1).to_vec::<f64>()[0]; // π²/6
    /// assert!((trigamma - std::f64::consts::PI.powi(2) / 6.0).abs() < 1e-14);
    /// ```
    #[track_caller]
    pub fn polygamma(&self, n: u32) -> Tensor {
        if n == 0 {
            return self.digamma();
        }
        apply(Op::Unary(Unary::Polygamma(n)), &[self])
    }
}

macro_rules! scalar_methods {
    ($($(#[$doc:meta])* $name:ident => $variant:ident;)*) => {
        impl Tensor {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, value: f64) -> Tensor {
                apply(Op::Scalar(ScalarOp::$variant, value), &[self])
            }
        )*}
    };
}

scalar_methods! {
    /// `x + value`.
    add_scalar => Add;
    /// `x * value`.
    mul_scalar => Mul;
    /// `x / value`.
    div_scalar => Div;
    /// `value - x`.
    rsub_scalar => Rsub;
    /// `value / x`.
    rdiv_scalar => Rdiv;
    /// `x ^ value`, with C's `pow` at the edges; what each exponent computes (repeated
    /// squaring for integers, the square root and its reciprocal for ±0.5) is on
    /// [`Array::pow_scalar`](ferrograd_array::Array::pow_scalar). Its gradient is
    /// `value x^(value - 1)`.
    pow_scalar => Pow;
    /// `value ^ x`.
    rpow_scalar => Rpow;
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $variant:ident;)*) => {
        impl Tensor {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, other: &Tensor) -> Tensor {
                apply(Op::Binary(Binary::$variant), &[self, other])
            }
        )*}
    };
}

binary_methods! {
    /// `a + b` with broadcasting.
    add => Add;
    /// `a - b` with broadcasting.
    sub => Sub;
    /// `a * b` with broadcasting.
    mul => Mul;
    /// `a / b` with broadcasting.
    div => Div;
    /// Elementwise maximum (ties share the gradient evenly).
    maximum => Maximum;
    /// Elementwise minimum (ties share the gradient evenly).
    minimum => Minimum;
    /// `a ^ b` elementwise.
    pow => Pow;
    /// `atan2(a, b)` elementwise.
    atan2 => Atan2;
    /// `a - trunc(a / b) b`, with the sign of `a` (C's `fmod`, PyTorch's `torch.fmod`).
    /// The gradient is 1 for `a` and `-trunc(a / b)` for `b`.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![5.5f64, -5.5], &[2]);
    /// let b = Tensor::from_vec(vec![2.0f64, 2.0], &[2]);
    /// assert_eq!(a.fmod(&b).to_vec::<f64>(), vec![1.5, -1.5]);
    /// assert_eq!(a.remainder(&b).to_vec::<f64>(), vec![1.5, 0.5]);
    /// ```
    fmod => Fmod;
    /// `a - floor(a / b) b`, with the sign of `b` (Python's `%`, PyTorch's
    /// `torch.remainder`). The gradient is 1 for `a` and `-floor(a / b)` for `b`.
    remainder => Remainder;
}

macro_rules! compare_methods {
    ($($(#[$doc:meta])* $name:ident, $scalar:ident => $variant:ident;)*) => {
        impl Tensor {$(
            $(#[$doc])*
            #[track_caller]
            pub fn $name(&self, other: &Tensor) -> Tensor {
                apply(Op::Compare(Compare::$variant), &[self, other])
            }

            #[doc = concat!("[`", stringify!($name), "`](Tensor::", stringify!($name), ") against a scalar.")]
            #[track_caller]
            pub fn $scalar(&self, value: f64) -> Tensor {
                apply(Op::Compare(Compare::$variant), &[self, &scalar_like(value, self)])
            }
        )*}
    };
}

compare_methods! {
    /// `a == b` as bool (no gradient).
    eq, eq_scalar => Eq;
    /// `a != b` as bool (no gradient).
    ne, ne_scalar => Ne;
    /// `a < b` as bool (no gradient).
    lt, lt_scalar => Lt;
    /// `a <= b` as bool (no gradient).
    le, le_scalar => Le;
    /// `a > b` as bool (no gradient).
    gt, gt_scalar => Gt;
    /// `a >= b` as bool (no gradient).
    ge, ge_scalar => Ge;
}

impl Tensor {
    /// True where `self` is NaN (bool, no gradient; all false for integer tensors).
    #[track_caller]
    pub fn isnan(&self) -> Tensor {
        self.ne(self)
    }

    /// True where `self` is +∞ or -∞ (bool, no gradient; all false for integer tensors).
    #[track_caller]
    pub fn isinf(&self) -> Tensor {
        if !self.dtype().is_float() {
            return self.ne(self);
        }
        self.abs().eq_scalar(f64::INFINITY)
    }

    /// True where `self` is neither NaN nor infinite (bool, no gradient).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f64, f64::NAN, f64::NEG_INFINITY], &[3]);
    /// assert_eq!(x.isfinite().to_vec::<bool>(), vec![true, false, false]);
    /// assert_eq!(x.isnan().any().item::<bool>(), true);
    /// ```
    #[track_caller]
    pub fn isfinite(&self) -> Tensor {
        self.isnan().logical_or(&self.isinf()).logical_not()
    }

    /// `self + weight (end - self)`, all three broadcast (differentiable in each).
    #[track_caller]
    pub fn lerp(&self, end: &Tensor, weight: &Tensor) -> Tensor {
        self + &(weight * &(end - self))
    }

    /// [`lerp`](Tensor::lerp) with a number as the weight.
    #[track_caller]
    pub fn lerp_scalar(&self, end: &Tensor, weight: f64) -> Tensor {
        self + &((end - self) * weight)
    }

    /// Elementwise AND of bool tensors.
    #[track_caller]
    pub fn logical_and(&self, other: &Tensor) -> Tensor {
        apply(Op::Compare(Compare::And), &[self, other])
    }

    /// Elementwise OR of bool tensors.
    #[track_caller]
    pub fn logical_or(&self, other: &Tensor) -> Tensor {
        apply(Op::Compare(Compare::Or), &[self, other])
    }

    /// Elementwise NOT of a bool tensor.
    #[track_caller]
    pub fn logical_not(&self) -> Tensor {
        apply(Op::Compare(Compare::Not), &[self])
    }

    /// The gradient of `tanh` given its output `self` and the output gradient:
    /// `grad (1 - y²)` in one pass (differentiable again).
    #[track_caller]
    pub fn tanh_backward(&self, grad: &Tensor) -> Tensor {
        apply(super::nn::NnOp::TanhBackward, &[self, grad])
    }

    /// The gradient of `sigmoid` given its output `self` and the output gradient:
    /// `grad y (1 - y)` in one pass (differentiable again).
    #[track_caller]
    pub fn sigmoid_backward(&self, grad: &Tensor) -> Tensor {
        apply(super::nn::NnOp::SigmoidBackward, &[self, grad])
    }

    /// The gradient of [`gelu`](Tensor::gelu) given its input `self` and the output
    /// gradient: `grad (Φ(x) + x φ(x))` in one pass, `Φ` and `φ` the standard normal's
    /// distribution and density (differentiable again).
    ///
    /// ```
    /// use ferrograd::{grad, Tensor};
    /// let x = Tensor::from_vec(vec![-1.0f64, 0.5, 3.0], &[3]);
    /// let (g, _) = grad(|x: &Tensor| x.gelu().sum()).call(&x, ());
    /// assert!(g.allclose(&x.gelu_backward(&Tensor::ones(&[3], ferrograd::DType::F64)), 0.0, 0.0));
    /// ```
    #[track_caller]
    pub fn gelu_backward(&self, grad: &Tensor) -> Tensor {
        apply(super::nn::NnOp::GeluBackward, &[self, grad])
    }

    /// Clamps into `[min, max]` (either may be absent); the gradient passes inside the range.
    #[track_caller]
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Tensor {
        apply(Op::Clamp { min, max }, &[self])
    }

    /// `cond ? a : b` elementwise, all three broadcast (PyTorch's `torch.where(cond, a, b)`;
    /// not in place, so not `where_`). `self` is the bool condition: call it as a method,
    /// `cond.where_cond(&a, &b)`, or as `Tensor::where_cond(&cond, &a, &b)`. The gradient
    /// flows to `a` where the condition holds and to `b` elsewhere.
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let x = Tensor::from_vec(vec![-1.0f64, 2.0], &[2]);
    /// assert_eq!(x.gt_scalar(0.0).where_cond(&x, &x.neg()).to_vec::<f64>(), vec![1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn where_cond(&self, a: &Tensor, b: &Tensor) -> Tensor {
        apply(Op::Where, &[self, a, b])
    }

    /// `value` where `mask` is true, `self` elsewhere.
    #[track_caller]
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Tensor {
        Tensor::where_cond(mask, &scalar_like(value, self), self)
    }

    /// Converts to another dtype (the gradient flows between float dtypes).
    #[track_caller]
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        apply(Op::Cast(dtype), &[self])
    }

    /// The tensor on `device`: `self` when already there, else a copy whose gradient flows
    /// back to this tensor's device (the seed's `util.cast` to a CUDA type). Moving a whole
    /// parameter tree: [`to_device`](crate::to_device).
    ///
    /// ```
    /// use ferrograd::{Device, DeviceError, Tensor};
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0], &[2]);
    /// assert_eq!(x.to_device(Device::Cpu).unwrap().to_vec::<f32>(), vec![1.0, 2.0]);
    /// if let Err(e) = x.to_device(Device::Cuda(0)) {
    ///     // no `cuda` feature, driver or GPU here: the error says which
    ///     assert!(matches!(e, DeviceError::NotBuilt { .. } | DeviceError::NoDriver { .. }
    ///         | DeviceError::NoSuchDevice { .. }));
    /// }
    /// ```
    pub fn to_device(&self, device: crate::Device) -> Result<Tensor, crate::DeviceError> {
        if device == self.device() {
            return Ok(self.clone());
        }
        // the move itself can fail (no driver, no such GPU): try it on one element first, so
        // the op below (which cannot return an error) fails only on what cannot be foreseen
        Array::zeros(&[], self.dtype())
            .to_device(device)
            .and_then(|probe| probe.to_device(crate::Device::Cpu))?;
        Ok(apply(Op::ToDevice(device), &[self]))
    }
}

/// `tensor ∘ s` for the four operators (subtraction becomes `+ (-s)`).
#[track_caller]
fn scalar_right(t: &Tensor, op: char, s: f64) -> Tensor {
    match op {
        '+' => t.add_scalar(s),
        '-' => t.add_scalar(-s),
        '*' => t.mul_scalar(s),
        _ => t.div_scalar(s),
    }
}

/// `s ∘ tensor` for the four operators.
#[track_caller]
fn scalar_left(s: f64, op: char, t: &Tensor) -> Tensor {
    match op {
        '+' => t.add_scalar(s),
        '-' => t.rsub_scalar(s),
        '*' => t.mul_scalar(s),
        _ => t.rdiv_scalar(s),
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident, $tensor_fn:ident, $symbol:literal) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$tensor_fn(self, rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$tensor_fn(&self, &rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$tensor_fn(&self, rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                Tensor::$tensor_fn(self, &rhs)
            }
        }
        // f64 only: a second scalar type would make every float literal (`x * 2.0`)
        // ambiguous. An f32 variable goes in as `f64::from(s)`.
        operator!(@scalar $trait, $method, $symbol, f64);
    };
    (@scalar $trait:ident, $method:ident, $symbol:literal, $t:ty) => {
        impl $trait<$t> for &Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $t) -> Tensor {
                scalar_right(self, $symbol, rhs as f64)
            }
        }
        impl $trait<$t> for Tensor {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: $t) -> Tensor {
                scalar_right(&self, $symbol, rhs as f64)
            }
        }
        impl $trait<&Tensor> for $t {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: &Tensor) -> Tensor {
                scalar_left(self as f64, $symbol, rhs)
            }
        }
        impl $trait<Tensor> for $t {
            type Output = Tensor;
            #[track_caller]
            fn $method(self, rhs: Tensor) -> Tensor {
                scalar_left(self as f64, $symbol, &rhs)
            }
        }
    };
}

operator!(Add, add, add, '+');
operator!(Sub, sub, sub, '-');
operator!(Mul, mul, mul, '*');
operator!(Div, div, div, '/');

impl Neg for &Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl Neg for Tensor {
    type Output = Tensor;
    #[track_caller]
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
