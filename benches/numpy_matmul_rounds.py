#!/usr/bin/env python3
"""NumPy's half of benches/compare-numpy-rounds.sh: one round of 10 f32 products per size
(argv, default 1024 2048), fastest and median, printed like ferrograd's matmul_rounds."""
import sys
import time

import numpy as np

REPS = 10
rng = np.random.default_rng(0)
for n in [int(a) for a in sys.argv[1:]] or [1024, 2048]:
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    np.matmul(a, b, out=out)
    ms = []
    for _ in range(REPS):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    print(f"numpy     f32 {n:>5}: min {ms[0]:7.2f} ms  median {ms[REPS // 2]:7.2f} ms  ({2 * n**3 / 1e6 / ms[0]:.0f} GFLOP/s at min)")
