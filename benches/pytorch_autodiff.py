#!/usr/bin/env python3
"""PyTorch eager on the programs of `cargo bench -p ferrograd --bench autodiff`: the
100-op elementwise chain on 10 elements (per primitive) and the seed's logistic step.
Single-threaded as the comparison needs no threads at these sizes; quietest of 7 passes."""
import time

import torch

torch.manual_seed(0)


def best(passes, iters, f):
    for _ in range(iters // 10 + 1):
        f()
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        for _ in range(iters):
            f()
        times.append((time.perf_counter() - t) / iters)
    return min(times)


x = torch.randn(10, requires_grad=True)


def chain_step():
    t = x
    for _ in range(25):
        t = torch.sin(t)
        t = t * 1.01
        t = torch.tanh(t)
        t = t + 0.1
    loss = t.sum()
    (g,) = torch.autograd.grad(loss, [x])
    return g


w = (torch.randn(10, 100) * 0.1).requires_grad_()
b = torch.zeros(10, requires_grad=True)
xs = [torch.randn(100) for _ in range(100)]
state = {"i": 0}


def logistic_step():
    i = state["i"]
    y_hat = torch.log_softmax(w @ xs[i % 100] + b, 0)
    loss = -y_hat.narrow(0, i % 10, 1).sum()
    gw, gb = torch.autograd.grad(loss, [w, b])
    with torch.no_grad():
        w.sub_(gw * 0.01)
        b.sub_(gb * 0.01)
    state["i"] = i + 1


t_chain = best(7, 2000, chain_step)
t_log = best(7, 2000, logistic_step)
isa = torch.backends.cpu.get_cpu_capability().lower()
print(f"{'pytorch ' + torch.__version__ + ' eager (f32, ' + isa + ', quietest pass)':<46} {'time':>12}")
print(f"{'chain of 100 elementwise ops, per primitive':<46} {t_chain * 1e6 / 100:>9.3f} µs")
print(f"{'chain of 100 elementwise ops, whole step':<46} {t_chain * 1e6:>9.3f} µs")
print(f"{'logistic step (10x100, 1 sample, + SGD)':<46} {t_log * 1e6:>9.3f} µs")
