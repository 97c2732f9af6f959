#!/usr/bin/env python3
"""JAX jit on the programs of `cargo bench -p ferrograd --bench autodiff`, f32 on the CPU:
the 100-op elementwise chain (value and gradient) and a Hessian-vector product of the mlp
batched loss (forward-over-reverse, `jax.jvp` of `jax.grad`), quietest of 5 passes."""
import os
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_platforms", "cpu")


def best(f, *args, steps=2000, passes=5):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(passes):
        t = time.perf_counter()
        for _ in range(steps):
            r = f(*args)
        jax.block_until_ready(r)
        times.append((time.perf_counter() - t) / steps)
    return min(times)


def chain(x):
    t = x
    for _ in range(25):
        t = jnp.tanh(jnp.sin(t) * 1.01) + 0.1
    return t.sum()


x = jnp.full((10,), 0.1, jnp.float32)
t_chain = best(jax.jit(jax.value_and_grad(chain)), x)


def mlp(p, x, y):
    h = jnp.tanh(x @ p[0] + p[1])
    out = jax.nn.log_softmax(h @ p[2] + p[3], 1)
    return -jnp.mean(jnp.take_along_axis(out, y[:, None], 1))


k = jax.random.split(jax.random.PRNGKey(0), 10)
p = [jax.random.normal(k[0], (100, 1000)) * 0.03, jax.random.normal(k[1], (1000,)) * 0.03,
     jax.random.normal(k[2], (1000, 10)) * 0.03, jax.random.normal(k[3], (10,)) * 0.03]
v = [jax.random.normal(k[4 + i], a.shape) for i, a in enumerate(p)]
x = jax.random.normal(k[8], (32, 100))
y = jax.random.randint(k[9], (32,), 0, 10)
hvp = jax.jit(lambda p, v, x, y: jax.jvp(lambda p: jax.grad(mlp)(p, x, y), (p,), (v,))[1])
t_hvp = best(hvp, p, v, x, y, steps=200)

isa = "avx2" if "xla_cpu_max_isa=AVX2" in os.environ.get("XLA_FLAGS", "") else "best isa"
print(f"{'jax ' + jax.__version__ + ' jit (f32, ' + isa + ')':<46} {'step':>12}")
print(f"{'chain of 100 elementwise ops, per primitive':<46} {t_chain * 1e6 / 100:>9.3f} µs")
print(f"{'chain of 100 elementwise ops, whole step':<46} {t_chain * 1e6:>9.3f} µs")
print(f"{'Hessian-vector product, mlp batched loss':<46} {t_hvp * 1e6:>9.3f} µs")
