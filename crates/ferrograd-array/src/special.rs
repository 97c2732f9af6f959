//! Special functions std and libm lack: digamma, polygamma (through the Hurwitz zeta
//! function), and the inverse error function the kernels' tests check theirs against. All
//! in f64; f32 arrays round the f64 result.

use std::f64::consts::PI;

/// The inverse of the error function on `(-1, 1)`: ±∞ at ±1, NaN outside. The reference the
/// vectorised kernels (`math::erfinv_f32`, `math::erfinv_f64`) are tested against.
///
/// M. Giles' single-precision approximation ("Approximating the erfinv function", GPU
/// Computing Gems, 2011) as the starting point, then Newton steps (each squares the relative
/// error, once close) on `erf(x) - y`, or on `erfc(x) - (1 - y)` in the tails, until a step
/// no longer moves `x`. (Two steps, as the f64 kernel once ran, fell short where `|y|` is
/// within 10⁻¹⁵ of 1, beyond the range Giles' approximation was fitted on: `erfinv(1 -
/// 2⁻⁵³)` came out as 5.364 instead of 5.864.)
#[cfg(test)]
pub(crate) fn erfinv(y: f64) -> f64 {
    if y.is_nan() || !(-1.0..=1.0).contains(&y) {
        return f64::NAN;
    }
    if y == 1.0 {
        return f64::INFINITY;
    }
    if y == -1.0 {
        return f64::NEG_INFINITY;
    }
    if y == 0.0 {
        return y;
    }
    let w = -((1.0 - y) * (1.0 + y)).ln();
    let mut x = if w < 5.0 {
        let w = w - 2.5;
        let c = [
            2.810_226_36e-08,
            3.432_739_39e-07,
            -3.523_387_7e-06,
            -4.391_506_54e-06,
            0.000_218_580_87,
            -0.001_253_725_03,
            -0.004_177_681_64,
            0.246_640_727,
            1.501_409_41,
        ];
        c.iter().fold(0.0, |p, &k| p * w + k) * y
    } else {
        let w = w.sqrt() - 3.0;
        let c = [
            -0.000_200_214_257,
            0.000_100_950_558,
            0.001_349_343_22,
            -0.003_673_428_44,
            0.005_739_507_73,
            -0.007_622_461_3,
            0.009_438_870_47,
            1.001_674_06,
            2.832_976_82,
        ];
        c.iter().fold(0.0, |p, &k| p * w + k) * y
    };
    // Newton on |y|: in the tails on erfc(x) = 1 - |y| (exact for |y| >= 0.5), which keeps
    // its relative accuracy where erf(x) - y would cancel
    let (target, sign) = (y.abs(), y.signum());
    x = x.abs();
    for _ in 0..20 {
        let slope = std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp();
        if slope == 0.0 {
            break;
        }
        let err = if target >= 0.5 {
            (1.0 - target) - libm::erfc(x)
        } else {
            libm::erf(x) - target
        };
        let step = err / slope;
        x -= step;
        if step.abs() <= 1e-17 * x {
            break;
        }
    }
    sign * x
}

/// The digamma function `ψ(x) = Γ'(x)/Γ(x)`: -∞ at 0 (as PyTorch), NaN at the negative
/// integers; the reflection formula below 0 (its cotangent of `π` times `x` less its nearest
/// integer, which is exact, so that it keeps its precision near the poles and far from 0),
/// the recurrence `ψ(x) = ψ(x+1) - 1/x` up to 10, then the asymptotic series.
pub(crate) fn digamma(x: f64) -> f64 {
    if x.is_nan() || x == f64::NEG_INFINITY {
        return f64::NAN;
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    if x < 0.0 {
        if x == x.floor() {
            return f64::NAN;
        }
        // ψ(1 - x) - ψ(x) = π cot(πx), and cot has period π: π x rounded would lose the
        // distance to the nearest pole, π (x - round(x)) keeps it
        return digamma(1.0 - x) - PI / (PI * (x - x.round())).tan();
    }
    let mut x = x;
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let inv2 = 1.0 / (x * x);
    // Σ B_2k / (2k x^2k) for k = 1..6
    let series = inv2
        * (1.0 / 12.0
            - inv2
                * (1.0 / 120.0
                    - inv2
                        * (1.0 / 252.0
                            - inv2
                                * (1.0 / 240.0 - inv2 * (1.0 / 132.0 - inv2 * 691.0 / 32760.0)))));
    shift + x.ln() - 0.5 / x - series
}

/// The Hurwitz zeta function `ζ(s, q) = Σ_k (q + k)^-s` for `s > 1`, by Euler-Maclaurin
/// summation: the first terms directly until `q + k > 9`, then the integral and the
/// Bernoulli-number corrections of the tail.
fn hurwitz_zeta(s: f64, q: f64) -> f64 {
    // (2k)! / B_2k for k = 1..12
    const FACTORS: [f64; 12] = [
        12.0,
        -720.0,
        30240.0,
        -1_209_600.0,
        47_900_160.0,
        -1.892_437_580_318_379_2e9,
        7.472_424_96e10,
        -2.950_130_727_918_164e12,
        1.164_678_281_435_006_7e14,
        -4.597_978_722_407_473e15,
        1.815_210_540_194_354_7e17,
        -7.166_165_256_175_667e18,
    ];
    if q <= 0.0 && q == q.floor() {
        return f64::INFINITY;
    }
    let mut sum = q.powf(-s);
    let mut a = q;
    let mut term = 0.0;
    let mut i = 0;
    while i < 9 || a <= 9.0 {
        i += 1;
        a += 1.0;
        term = a.powf(-s);
        sum += term;
        if (term / sum).abs() < f64::EPSILON {
            return sum;
        }
    }
    let w = a;
    sum += term * w / (s - 1.0);
    sum -= 0.5 * term;
    let mut rising = 1.0;
    let mut k = 0.0;
    for factor in FACTORS {
        rising *= s + k;
        term /= w;
        let t = rising * term / factor;
        sum += t;
        if (t / sum).abs() < f64::EPSILON {
            break;
        }
        k += 1.0;
        rising *= s + k;
        term /= w;
        k += 1.0;
    }
    sum
}

/// The largest order whose polygamma is reflected for negative arguments (see
/// [`polygamma`]); beyond it the series runs from `x` itself, one term per unit up to 9.
pub(crate) const REFLECT_MAX_ORDER: u32 = 32;

/// The polygamma function `ψ⁽ⁿ⁾(x)`, the `n`-th derivative of digamma (`n = 0` is digamma):
/// `(-1)ⁿ⁺¹ n! ζ(n + 1, x)` for `n ≥ 1`. A negative non-integer `x` is reflected,
/// `ψ⁽ⁿ⁾(x) = (-1)ⁿ ψ⁽ⁿ⁾(1 - x) - π dⁿ/dxⁿ cot(πx)`, with the derivative a polynomial in
/// `cot(πx)` (`Pₖ₊₁(c) = -(1 + c²) Pₖ'(c)`, `P₀(c) = c`, times `πⁿ`): the Hurwitz series
/// from `x` itself takes one term per unit between `x` and 9 (at -3·10⁹, minutes, and an
/// overflow of its counter).
pub(crate) fn polygamma(n: u32, x: f64) -> f64 {
    if n == 0 {
        return digamma(x);
    }
    if x.is_nan() {
        return x;
    }
    if x < 0.0 && x != x.floor() && n <= REFLECT_MAX_ORDER {
        // cot has period 1: reduced exactly, so that π r keeps its accuracy at large |x|
        let r = x - x.round();
        let c = 1.0 / (PI * r).tan();
        let mut p = [0.0f64; REFLECT_MAX_ORDER as usize + 2];
        p[1] = 1.0;
        for k in 0..n as usize {
            // Pₖ has degree k + 1; Pₖ₊₁ = -(1 + c²) Pₖ'
            let mut next = [0.0f64; REFLECT_MAX_ORDER as usize + 2];
            for j in 0..=k {
                let d = (j + 1) as f64 * p[j + 1];
                next[j] -= d;
                next[j + 2] -= d;
            }
            p = next;
        }
        let value = p[..n as usize + 2]
            .iter()
            .rev()
            .fold(0.0, |acc, &a| acc * c + a);
        let sign = if n.is_multiple_of(2) { 1.0 } else { -1.0 };
        let pi_power = (0..n).fold(PI, |a, _| a * PI);
        return sign * polygamma(n, 1.0 - x) - pi_power * value;
    }
    let factorial: f64 = (1..=n).map(f64::from).product();
    let sign = if n % 2 == 1 { 1.0 } else { -1.0 };
    sign * factorial * hurwitz_zeta(f64::from(n) + 1.0, x)
}

/// `ln |Γ(x)|` (libm's).
pub(crate) fn lgamma(x: f64) -> f64 {
    libm::lgamma(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digamma_keeps_its_precision_near_the_negative_poles() {
        // ψ(x) = ψ(x + 1) - 1/x, with x + 1 exact and in (0, 1), where no reflection runs:
        // near -1 (the distance to the pole a power of two, so x is exact) and far out
        for k in [3, 10, 20, 30, 40] {
            let d = 2f64.powi(-k);
            for x in [-1.0 + d, -1.0 - d, -2.0 + d, -40.0 - d] {
                let want = digamma(x + 1.0) - 1.0 / x;
                let got = digamma(x);
                let rel = ((got - want) / want).abs();
                assert!(
                    rel < 1e-14,
                    "digamma({x:e}) = {got:e}, want {want:e} ({rel:e})"
                );
            }
        }
        for x in [-710.2, -0.5, -3.25, -1e6 - 0.5] {
            let want = digamma(x + 1.0) - 1.0 / x;
            let rel = ((digamma(x) - want) / want).abs();
            assert!(rel < 1e-13, "digamma({x:e}): {rel:e}");
        }
        assert!(digamma(-3.0).is_nan() && digamma(f64::NEG_INFINITY).is_nan());
        assert_eq!(digamma(0.0), f64::NEG_INFINITY);
    }
}
