#!/usr/bin/env python3
"""NumPy on the shapes of `cargo bench -p ferrograd-array --bench array`, printed like it:
median time and throughput (matmul in GFLOP/s, elementwise in
GB/s). Run with a NumPy from a virtualenv outside the repository."""
import time

import numpy as np


def median_time(f, min_time=1.0, min_runs=5):
    f()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def fmt(t):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if t >= scale:
            return f"{t / scale:.4g} {unit}"
    return f"{t / 1e-9:.4g} ns"


try:
    from threadpoolctl import threadpool_info

    for lib in threadpool_info():
        print(f"# {lib.get('internal_api')} {lib.get('version')} kernel {lib.get('architecture')} threads {lib.get('num_threads')}")
except ImportError:
    pass

rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    for n in (128, 512, 1024, 2048):
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        out = np.empty((n, n), dtype)
        t = median_time(lambda: np.matmul(a, b, out=out))
        print(f"{'numpy matmul/' + np.dtype(dtype).name + '/' + str(n):<48} {fmt(t):>12} {2 * n**3 / t / 1e9:>10.1f} GFLOP/s")
for name, m, k, n in (("32x1000@1000x10", 32, 1000, 10), ("1000x100@100", 1000, 100, 1), ("1x100@100x10", 1, 100, 10), ("32x100@100x1000", 32, 100, 1000)):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n) if n > 1 else (k,)).astype(np.float32)
    t = median_time(lambda: a @ b)
    print(f"{'numpy matmul/f32-skinny/' + name:<48} {fmt(t):>12} {2 * m * n * k / t / 1e9:>10.1f} GFLOP/s")
for n in (10, 1000, 100_000, 10_000_000):
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    out = np.empty(n, np.float32)
    for name, f, nbytes in (
        ("add_into", lambda: np.add(a, b, out=out), 12 * n),
        ("add", lambda: a + b, 12 * n),
        ("tanh_into", lambda: np.tanh(a, out=out), 8 * n),
        ("sum", lambda: a.sum(), 4 * n),
    ):
        t = median_time(f)
        print(f"{'numpy elementwise/' + name + '/' + str(n):<48} {fmt(t):>12} {nbytes / t / 2**30:>10.2f} GiB/s")
