#!/usr/bin/env python3
"""Fits the three polynomials of f64 `erfinv` (`erfinv_f64` in
crates/ferrograd-array/src/math.rs) and prints them as Rust constants, with each fit's
error bound and the worst relative error of the polynomial evaluated in doubles.

erfinv(y) = y g(w) with w = -ln(1 - y^2); g is fitted in w itself on w <= 5 (22
coefficients; in w - 2.5 its Horner steps cancelled near w = 0, 3 ulp at y = 0.008), and in
t = sqrt(w) - mid on sqrt(w) in [sqrt(5), 4] (24) and [4, 6.05] (20;
the double nearest 1 has sqrt(w) = 6.003), by Chebyshev interpolation (mpmath's chebyfit).

    python3 -m venv ~/fit && ~/fit/bin/pip install mpmath
    ~/fit/bin/python docs/fits/erfinv_f64.py
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


random.seed(0)
pieces = []
# (name, variable's range, to w, coefficients)
for name, lo, hi, square, n in (
    ("CENTRAL", mpmath.mpf(0), mpmath.mpf(5), False, 22),
    ("NEAR", mpmath.sqrt(5), mpmath.mpf(4), True, 24),
    ("FAR", mpmath.mpf(4), mpmath.mpf("6.05"), True, 20),
):
    mid = float((lo + hi) / 2) if square else 0.0
    to_w = (lambda v: v * v) if square else (lambda v: v)
    cs, bound = mpmath.chebyfit(lambda t: g(to_w(mid + t)), [lo - mid, hi - mid], n, error=True)
    worst = 0
    for _ in range(2000):
        v = random.uniform(float(lo), float(hi))
        exact = g(to_w(mpmath.mpf(v)))
        worst = max(worst, abs(horner(cs, v - mid) - exact) / exact)
    print(f"// {name}: fit bound {mpmath.nstr(bound, 3)}, in doubles worst relative "
          f"{mpmath.nstr(worst, 3)}")
    if square:
        print(f"const {name}_MID: f64 = {mid!r};")
    print(f"const {name}: [f64; {n}] = [")
    for c in cs:
        print(f"    {float(c)!r},")
    print("];")
