#!/usr/bin/env python3
"""PyTorch eager on the workloads of `cargo bench -p ferrograd-nn --bench suite`, f32, time
per SGD step (quietest of 5 passes). The LSTM rows also run PyTorch's fused nn.LSTM."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from timing import best

torch.manual_seed(0)


def sgd_step(model, loss):
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.01 * p.grad


rows = []

xs = [torch.randn(1, 100) for _ in range(100)]
ys = [torch.randint(0, 10, (1,)) for _ in range(100)]
m = nn.Sequential(nn.Linear(100, 10), nn.LogSoftmax(1))
rows.append(("logistic", best(5, 1000, lambda i: sgd_step(m, F.nll_loss(m(xs[i % 100]), ys[i % 100])))))


def mlp(inputs):
    return nn.Sequential(nn.Linear(inputs, 1000), nn.Tanh(), nn.Linear(1000, 10), nn.LogSoftmax(1))


m = mlp(100)
rows.append(("mlp", best(5, 400, lambda i: sgd_step(m, F.nll_loss(m(xs[i % 100]), ys[i % 100])))))
for name, inputs in (("mlp batched", 100), ("mlp wide batched", 1000)):
    x, y, m = torch.randn(32, inputs), torch.randint(0, 10, (32,)), mlp(inputs)
    rows.append((name, best(5, 200, lambda i: sgd_step(m, F.nll_loss(m(x), y)))))

x, y = torch.randn(32, 3, 64, 64), torch.randint(0, 10, (32,))
m = nn.Sequential(nn.Conv2d(3, 16, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 10), nn.LogSoftmax(1))
rows.append(("cnn batched", best(5, 10, lambda i: sgd_step(m, F.nll_loss(m(x), y)))))


class Lstm(nn.Module):
    """The same cell as the Rust benchmark, step by step in eager ops."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(300, 800) * 0.07)
        self.b = nn.Parameter(torch.zeros(800))
        self.head = nn.Linear(200, 10)

    def forward(self, x):
        b = x.shape[0]
        h, c = torch.zeros(b, 200), torch.zeros(b, 200)
        for t in range(x.shape[1]):
            gates = (torch.cat([x[:, t], h], 1) @ self.w + self.b).view(b, 4, 200)
            ifo = torch.sigmoid(gates[:, :3])
            c = ifo[:, 1] * c + ifo[:, 0] * torch.tanh(gates[:, 3])
            h = ifo[:, 2] * torch.tanh(c)
        return F.log_softmax(self.head(h), 1)


class Fused(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(100, 200, batch_first=True)
        self.head = nn.Linear(200, 10)

    def forward(self, x):
        out, _ = self.lstm(x)
        return F.log_softmax(self.head(out[:, -1]), 1)


for name, batch, steps in (("lstm", 1, 40), ("lstm batched", 32, 10)):
    x, y = torch.randn(batch, 33, 100), torch.randint(0, 10, (batch,))
    m, f = Lstm(), Fused()
    rows.append((name, best(5, steps, lambda i: sgd_step(m, F.nll_loss(m(x), y)))))
    rows.append((name + " (fused nn.LSTM)", best(5, steps, lambda i: sgd_step(f, F.nll_loss(f(x), y)))))

mult = torch.rand(100)
x = torch.empty(32, 100).uniform_(-5, 5) * mult
y = torch.exp(x * 0.1)
m = nn.Sequential(nn.Linear(100, 1000), nn.ReLU(), nn.Linear(1000, 100))
rows.append(("AutoModule batched", best(5, 100, lambda i: sgd_step(m, F.mse_loss(m(x), y)))))

isa = torch.backends.cpu.get_cpu_capability().lower()
print(f"{'pytorch ' + torch.__version__ + ' eager (f32, ' + isa + ')':<30} {'step':>14}")
for name, t in rows:
    print(f"{name:<30} {t * 1e6:>11.1f} µs")
