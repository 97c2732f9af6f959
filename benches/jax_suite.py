#!/usr/bin/env python3
"""JAX jit on the workloads of `cargo bench -p ferrograd-nn --bench suite`, f32 on the CPU:
the whole SGD step (loss, gradient, update) compiled with `jax.jit`, time per step (quietest
of 5 passes), and the compile time of the first call. The LSTM rows run the cell once as a
Python loop unrolled into the jitted step (as the Rust code and PyTorch eager write it) and
once with `lax.scan`."""
import os
import time
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from timing import best

jax.config.update("jax_platforms", "cpu")
key = jax.random.PRNGKey(0)


def keys(n):
    global key
    key, *ks = jax.random.split(key, n + 1)
    return ks


def randn(shape, scale=1.0):
    return jax.random.normal(keys(1)[0], shape, jnp.float32) * scale


def labels(n):
    return jax.random.randint(keys(1)[0], (n,), 0, 10)


def sgd(loss):
    """One jitted SGD step of `loss(params, x, y)`."""

    # (the parameters donated: XLA writes the update over them, as ferrograd's compiled step
    # with `call_donating` and PyTorch's in-place SGD do)
    @partial(jax.jit, donate_argnums=0)
    def step(params, x, y):
        g = jax.grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, g)

    return step


def run(name, loss, params, data, steps):
    """Times `steps` SGD steps on `data(i)`; returns (name, step time, compile time)."""
    step = sgd(loss)
    x, y = data(0)
    params = jax.tree_util.tree_map(jnp.copy, params)  # (donated: the caller's stay usable)
    t = time.perf_counter()
    state = {"p": jax.block_until_ready(step(params, x, y))}
    compile_time = time.perf_counter() - t

    def one(i):
        x, y = data(i)
        state["p"] = jax.block_until_ready(step(state["p"], x, y))

    return name, best(5, steps, one), compile_time


def nll(logits, y):
    out = jax.nn.log_softmax(logits, 1)
    return -jnp.mean(jnp.take_along_axis(out, y[:, None], 1))


rows = []
xs = [randn((1, 100)) for _ in range(100)]
ys = [labels(1) for _ in range(100)]
per_sample = lambda i: (xs[i % 100], ys[i % 100])

rows.append(run("logistic", lambda p, x, y: nll(x @ p[0] + p[1], y),
                [randn((100, 10), 0.1), jnp.zeros(10)], per_sample, 1000))


def mlp(p, x, y):
    h = jnp.tanh(x @ p[0] + p[1])
    return nll(h @ p[2] + p[3], y)


def mlp_params(inputs):
    return [randn((inputs, 1000), 0.03), jnp.zeros(1000), randn((1000, 10), 0.03), jnp.zeros(10)]


rows.append(run("mlp", mlp, mlp_params(100), per_sample, 400))
for name, inputs in (("mlp batched", 100), ("mlp wide batched", 1000)):
    x, y = randn((32, inputs)), labels(32)
    rows.append(run(name, mlp, mlp_params(inputs), lambda i: (x, y), 200))


def conv(x, w, b):
    out = lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return out + b[None, :, None, None]


def pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")


def cnn(p, x, y):
    h = pool(jnp.tanh(conv(x, p[0], p[1])))
    h = pool(jnp.tanh(conv(h, p[2], p[3])))
    return nll(h.reshape(32, 5408) @ p[4] + p[5], y)


x, y = randn((32, 3, 64, 64)), labels(32)
rows.append(run("cnn batched", cnn,
                [randn((16, 3, 5, 5), 0.1), jnp.zeros(16), randn((32, 16, 5, 5), 0.05), jnp.zeros(32),
                 randn((5408, 10), 0.01), jnp.zeros(10)], lambda i: (x, y), 10))


def cell(p, h, c, xt):
    b = xt.shape[0]
    gates = (jnp.concatenate([xt, h], 1) @ p[0] + p[1]).reshape(b, 4, 200)
    ifo = jax.nn.sigmoid(gates[:, :3])
    c = ifo[:, 1] * c + ifo[:, 0] * jnp.tanh(gates[:, 3])
    h = ifo[:, 2] * jnp.tanh(c)
    return h, c


def lstm_loop(p, x, y):
    b = x.shape[0]
    h = c = jnp.zeros((b, 200))
    for t in range(x.shape[1]):
        h, c = cell(p, h, c, x[:, t])
    return nll(h @ p[2] + p[3], y)


def lstm_scan(p, x, y):
    b = x.shape[0]

    def body(hc, xt):
        return cell(p, *hc, xt), None

    (h, _), _ = lax.scan(body, (jnp.zeros((b, 200)), jnp.zeros((b, 200))), jnp.swapaxes(x, 0, 1))
    return nll(h @ p[2] + p[3], y)


for name, batch, steps in (("lstm", 1, 40), ("lstm batched", 32, 10)):
    x, y = randn((batch, 33, 100)), labels(batch)
    params = [randn((300, 800), 0.07), jnp.zeros(800), randn((200, 10), 0.07), jnp.zeros(10)]
    rows.append(run(name, lstm_loop, params, lambda i: (x, y), steps))
    rows.append(run(name + " (lax.scan)", lstm_scan, params, lambda i: (x, y), steps))

mult = jax.random.uniform(keys(1)[0], (100,))
x = jax.random.uniform(keys(1)[0], (32, 100), minval=-5, maxval=5) * mult
y = jnp.exp(x * 0.1)


def auto(p, x, y):
    h = jax.nn.relu(x @ p[0].T + p[1])
    return jnp.mean((h @ p[2].T + p[3] - y) ** 2)


rows.append(run("AutoModule batched", auto,
                [randn((1000, 100), 0.1), jnp.zeros(1000), randn((100, 1000), 0.03), jnp.zeros(100)],
                lambda i: (x, y), 100))

isa = "avx2" if "xla_cpu_max_isa=AVX2" in os.environ.get("XLA_FLAGS", "") else "best isa"
print(f"{'jax ' + jax.__version__ + ' jit (f32, ' + isa + ')':<30} {'step':>14} {'compile':>10}")
for name, t, c in rows:
    print(f"{name:<30} {t * 1e6:>11.1f} µs {c * 1e3:>7.0f} ms")
