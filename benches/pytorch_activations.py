#!/usr/bin/env python3
"""PyTorch's transcendental kernels on the shape of the `activation/` rows of `cargo bench -p
ferrograd-array --bench array -- activation` ([1024, 512] f32, the transformer benchmark's
MLP hidden layer), printed like them: time per call and GB/s moved. Run with a PyTorch from a
virtualenv outside the repository."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import best  # noqa: E402

n = 1024 * 512
gen = torch.Generator().manual_seed(0)
x = torch.randn(n, generator=gen)
g = torch.randn(n, generator=gen)
out = torch.empty(n)
positive = x.abs()
unit = x.tanh()
print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
      f"{torch.backends.cpu.get_cpu_capability()}")
rows = [
    ("exp_into", 2, lambda _: torch.exp(x, out=out)),
    ("sigmoid_into", 2, lambda _: torch.sigmoid(x, out=out)),
    ("log_into", 2, lambda _: torch.log(positive, out=out)),
    ("log1p_into", 2, lambda _: torch.log1p(positive, out=out)),
    ("pow_1.5_into", 2, lambda _: torch.pow(positive, 1.5, out=out)),
    ("pow_0.5_into", 2, lambda _: torch.pow(positive, 0.5, out=out)),
    ("pow_-0.5_into", 2, lambda _: torch.pow(positive, -0.5, out=out)),
    ("pow_3_into", 2, lambda _: torch.pow(positive, 3.0, out=out)),
    ("lgamma_into", 2, lambda _: torch.lgamma(positive, out=out)),
    ("digamma_into", 2, lambda _: torch.digamma(positive, out=out)),
    ("expm1_into", 2, lambda _: torch.expm1(x, out=out)),
    ("sinh_into", 2, lambda _: torch.sinh(x, out=out)),
    ("atan_into", 2, lambda _: torch.atan(x, out=out)),
    ("atan2_into", 3, lambda _: torch.atan2(x, g, out=out)),
    ("asin_into", 2, lambda _: torch.asin(unit, out=out)),
    ("tan_into", 2, lambda _: torch.tan(x, out=out)),
    ("erfinv_into", 2, lambda _: torch.erfinv(unit, out=out)),
    ("tanh_into", 2, lambda _: torch.tanh(x, out=out)),
    ("erf_into", 2, lambda _: torch.erf(x, out=out)),
    ("gelu_into", 2, lambda _: torch._C._nn.gelu(x, out=out)),
    ("gelu_backward_into", 3,
     lambda _: torch.ops.aten.gelu_backward.grad_input(g, x, grad_input=out)),
]
x64 = x.double()
out64 = torch.empty(n, dtype=torch.float64)
positive64 = positive.double()
g64 = g.double()
unit64 = unit.double()
rows += [
    ("f64/exp_into", 4, lambda _: torch.exp(x64, out=out64)),
    ("f64/sigmoid_into", 4, lambda _: torch.sigmoid(x64, out=out64)),
    ("f64/tanh_into", 4, lambda _: torch.tanh(x64, out=out64)),
    ("f64/log_into", 4, lambda _: torch.log(positive64, out=out64)),
    ("f64/log1p_into", 4, lambda _: torch.log1p(positive64, out=out64)),
    ("f64/pow_1.5_into", 4, lambda _: torch.pow(positive64, 1.5, out=out64)),
    ("f64/pow_0.5_into", 4, lambda _: torch.pow(positive64, 0.5, out=out64)),
    ("f64/pow_-0.5_into", 4, lambda _: torch.pow(positive64, -0.5, out=out64)),
    ("f64/pow_3_into", 4, lambda _: torch.pow(positive64, 3.0, out=out64)),
    ("f64/expm1_into", 4, lambda _: torch.expm1(x64, out=out64)),
    ("f64/sin_into", 4, lambda _: torch.sin(x64, out=out64)),
    ("f64/tan_into", 4, lambda _: torch.tan(x64, out=out64)),
    ("f64/sinh_into", 4, lambda _: torch.sinh(x64, out=out64)),
    ("f64/atan_into", 4, lambda _: torch.atan(x64, out=out64)),
    ("f64/atan2_into", 6, lambda _: torch.atan2(x64, g64, out=out64)),
    ("f64/asin_into", 4, lambda _: torch.asin(unit64, out=out64)),
    ("f64/erfinv_into", 4, lambda _: torch.erfinv(unit64, out=out64)),
    ("f64/erf_into", 4, lambda _: torch.erf(x64, out=out64)),
    ("f64/gelu_into", 4, lambda _: torch._C._nn.gelu(x64, out=out64)),
    ("f64/gelu_backward_into", 6,
     lambda _: torch.ops.aten.gelu_backward.grad_input(g64, x64, grad_input=out64)),
]
for name, arrays, f in rows:
    t = best(10, max(1, int(0.1 / 2e-4)), f)
    print(f"activation/{name}/{n:<12} {t * 1e6:9.2f} µs {arrays * 4 * n / t / 1e9:8.2f} GB/s")
