#!/usr/bin/env python3
"""Fits the polynomials of f64 `erf` and `erfc` below 2.5 (`erf_near_f64` and `erfc_near_f64`
in crates/ferrograd-array/src/math.rs) and prints them as Rust constants, with each fit's error
bound and the worst error of the kernel's arithmetic (fused multiply-adds, emulated exactly)
in ulps of the exact value, over random arguments of its range.

By Chebyshev interpolation (mpmath's chebyfit):
- below 0.84375 (fdlibm's first range): erf(x) = x + x R(x^2), R fitted in t = x^2 to
  erf(x)/x - 1 (12 coefficients);
- from 0.84375 to 2.5: erf(x) itself in u = x - mid (23 coefficients), the constant term in
  two parts so that its rounding (half an ulp of the result) joins the sum last;
- for erfc (`erfc_near_f64`) on the same range: ln(erfcx(x)) + 1 in u (18 coefficients;
  erfcx(x) = e^(x^2) erfc(x)), which the kernel adds to -x^2 - 1 inside one exponential;
  its worst error is the polynomial's absolute error, erfc's relative error from it.

    python3 -m venv ~/fit && ~/fit/bin/pip install mpmath
    ~/fit/bin/python docs/fits/erf.py
"""
import math
import random

import mpmath

mpmath.mp.dps = 50
M = mpmath.mpf
NEAR_END, MID_END = 0.84375, 2.5
MID = (NEAR_END + MID_END) / 2


def fma(a, b, c):
    return float(M(a) * M(b) + M(c))


def horner(coefficients, t):
    v = float(coefficients[0])
    for c in coefficients[1:]:
        v = fma(v, t, float(c))
    return v


def r_of_t(t):
    """erf(x)/x - 1 at t = x^2."""
    x = mpmath.sqrt(t)
    return (mpmath.erf(x) / x if t > 0 else 2 / mpmath.sqrt(mpmath.pi)) - 1


near, near_bound = mpmath.chebyfit(r_of_t, [0, NEAR_END**2], 12, error=True)
mid, mid_bound = mpmath.chebyfit(lambda u: mpmath.erf(u + MID), [NEAR_END - MID, MID_END - MID],
                                 23, error=True)


def log_erfcx(x):
    return mpmath.log(mpmath.erfc(x)) + x * x + 1


erfcx, erfcx_bound = mpmath.chebyfit(lambda u: log_erfcx(u + MID),
                                     [NEAR_END - MID, MID_END - MID], 18, error=True)
hi = float(mid[-1])
lo = float(mid[-1] - M(hi))


def kernel(x):
    if x < NEAR_END:
        return fma(x, horner(near, x * x), x)
    u = x - MID
    return fma(u, horner(mid[:-1], u), lo) + hi


random.seed(0)
for name, bound, (a, b) in (("ERF_NEAR", near_bound, (0, NEAR_END)),
                            ("ERF_MID", mid_bound, (NEAR_END, MID_END))):
    worst = 0
    for _ in range(20000):
        x = random.uniform(a, b)
        exact = mpmath.erf(M(x))
        worst = max(worst, float(abs(M(kernel(x)) - exact)) / math.ulp(float(exact)))
    print(f"// {name}: fit bound {mpmath.nstr(bound, 3)}, worst {worst:.3f} ulp")
worst = 0
for _ in range(20000):
    x = random.uniform(NEAR_END, MID_END)
    worst = max(worst, float(abs(M(horner(erfcx, x - MID)) - log_erfcx(M(x)))))
print(f"// ERFC_MID_LOG: fit bound {mpmath.nstr(erfcx_bound, 3)}, worst {worst:.3g} absolutely")
print(f"const ERF_MID_POINT: f64 = {MID!r};")
print(f"const ERF_MID_LO: f64 = {lo!r};")
for name, cs in (("ERF_NEAR", near), ("ERF_MID", mid[:-1] + [M(hi)]), ("ERFC_MID_LOG", erfcx)):
    print(f"const {name}: [f64; {len(cs)}] = [")
    for c in cs:
        print(f"    {float(c)!r},")
    print("];")
