#!/usr/bin/env python3
"""Fits the polynomials of f32 and f64 `erfinv` (`erfinv_f32` and `erfinv_f64` in
crates/ferrograd-array/src/math.rs) and prints them as Rust constants, with each fit's error
bound and the worst relative error of the polynomial evaluated in doubles.

erfinv(y) = y g(w) with w = -ln(1 - y^2), g fitted piece by piece by Chebyshev interpolation
(mpmath's chebyfit):
- f32: in t = w - 2.5 on w <= 5 (12 coefficients) and in t = (w - 10.5)/5.5 on w in [5, 16]
  (14; the f32 nearest 1 has w = 15.9). In sqrt(w) the tail needs 12 only, but a square root
  per element shares the divider with the logarithm's division: the kernel ran at 700 µs a
  [1024, 512] call that way, 630 in w.
- f64: in w itself on w <= 5 (22; in w - 2.5 its Horner steps cancelled near w = 0, 3 ulp at
  y = 0.008), and in t = sqrt(w) - mid on sqrt(w) in [sqrt(5), 4] (24) and [4, 6.05] (20; the
  double nearest 1 has sqrt(w) = 6.003).

    python3 -m venv ~/fit && ~/fit/bin/pip install mpmath
    ~/fit/bin/python docs/fits/erfinv.py
"""
import random

import mpmath

mpmath.mp.dps = 50


def g(w):
    """erfinv(y)/y at w = -ln(1 - y^2)."""
    y = mpmath.sqrt(-mpmath.expm1(-w))
    return mpmath.sqrt(mpmath.pi) / 2 if y == 0 else mpmath.erfinv(y) / y


def horner(coefficients, t):
    v = 0.0
    for c in coefficients:
        v = v * t + float(c)
    return v


SQRT5 = mpmath.sqrt(5)
NEAR_MID = float((SQRT5 + 4) / 2)
FAR_MID = float((4 + mpmath.mpf("6.05")) / 2)
# (type, name, coefficients, w of t, t's range, t of a double w, w's range, a printed mid)
PIECES = (
    ("f32", "CENTRAL", 12, lambda t: t + 2.5, (-2.5, 2.5), lambda w: w - 2.5, (0, 5), None),
    ("f32", "TAIL", 14, lambda t: 10.5 + 5.5 * t, (-1, 1), lambda w: (w - 10.5) * (1 / 5.5), (5, 16), None),
    ("f64", "CENTRAL", 22, lambda t: t, (0, 5), lambda w: w, (0, 5), None),
    ("f64", "NEAR", 24, lambda t: (t + NEAR_MID) ** 2, (SQRT5 - NEAR_MID, 4 - NEAR_MID),
     lambda w: w ** 0.5 - NEAR_MID, (5, 16), NEAR_MID),
    ("f64", "FAR", 20, lambda t: (t + FAR_MID) ** 2, (4 - FAR_MID, mpmath.mpf("6.05") - FAR_MID),
     lambda w: w ** 0.5 - FAR_MID, (16, 36.6), FAR_MID),
)

random.seed(0)
for dtype, name, n, w_of, span, t_of, w_range, mid in PIECES:
    mpmath.mp.dps = 40 if dtype == "f32" else 50
    cs, bound = mpmath.chebyfit(lambda t: g(w_of(t)), list(span), n, error=True)
    worst = 0
    for _ in range(2000 if dtype == "f64" else 3000):
        w = random.uniform(*w_range)
        exact = g(mpmath.mpf(w))
        worst = max(worst, abs(horner(cs, t_of(w)) - exact) / exact)
    print(f"// {dtype} {name}: fit bound {mpmath.nstr(bound, 3)}, in doubles worst relative "
          f"{mpmath.nstr(worst, 3)}")
    if mid is not None:
        print(f"const {name}_MID: f64 = {mid!r};")
    print(f"const {name}: [f64; {n}] = [")
    for c in cs:
        print(f"    {float(c)!r},")
    print("];")
