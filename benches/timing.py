"""The timing loop the Python references share: the quietest of `passes` timings of
`steps` calls, per call, after a warm-up of up to 3 calls."""
import time


def best(passes, steps, step):
    for i in range(min(steps, 3)):
        step(i)
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        for i in range(steps):
            step(i)
        times.append((time.perf_counter() - t) / steps)
    return min(times)
