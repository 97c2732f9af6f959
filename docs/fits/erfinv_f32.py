#!/usr/bin/env python3
"""Fits the two polynomials of f32 `erfinv` (`erfinv_f32` in
crates/ferrograd-array/src/math.rs) and prints them as Rust constants, with each fit's
error bound and the worst relative error of the polynomial evaluated in doubles.

erfinv(y) = y g(w) with w = -ln((1 - y)(1 + y)); g is fitted in t = w - 2.5 on w <= 5
(degree 11) and in t = (w - 10.5)/5.5 on w in [5, 16] (the f32 nearest 1 has w = 15.9;
degree 13), by Chebyshev interpolation (mpmath's chebyfit). (In sqrt(w) the tail needs
degree 11 only, but a square root per element shares the divider with the logarithm's
division: the kernel ran at 700 µs a [1024, 512] call that way.)

    python3 -m venv ~/fit && ~/fit/bin/pip install mpmath
    ~/fit/bin/python docs/fits/erfinv_f32.py
"""
import random

import mpmath

mpmath.mp.dps = 40
N = 12  # coefficients


def g(w):
    """erfinv(y)/y at w = -ln(1 - y^2)."""
    y = mpmath.sqrt(-mpmath.expm1(-w))
    return mpmath.sqrt(mpmath.pi) / 2 if y == 0 else mpmath.erfinv(y) / y


def horner(coefficients, t):
    v = 0.0
    for c in coefficients:
        v = v * t + float(c)
    return v


central, e1 = mpmath.chebyfit(lambda t: g(t + 2.5), [-2.5, 2.5], N, error=True)
tail, e2 = mpmath.chebyfit(lambda t: g(10.5 + 5.5 * t), [-1, 1], N + 2, error=True)
random.seed(0)
worst_central = max(
    abs(horner(central, w - 2.5) - g(w)) / g(w) for w in (random.uniform(0, 5) for _ in range(3000))
)
worst_tail = max(
    abs(horner(tail, (w - 10.5) * (1 / 5.5)) - g(w)) / g(w) for w in (random.uniform(5, 16) for _ in range(3000))
)
print(f"// fit error bounds {mpmath.nstr(e1, 3)} and {mpmath.nstr(e2, 3)}; in doubles, worst "
      f"relative {mpmath.nstr(worst_central, 3)} and {mpmath.nstr(worst_tail, 3)}")
for name, cs in (("CENTRAL", central), ("TAIL", tail)):
    print(f"const {name}: [f64; {len(cs)}] = [")
    for c in cs:
        print(f"    {float(c)!r},")
    print("];")
