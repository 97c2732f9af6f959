"""Two uses of one model. Without arguments: the reference values of
crates/ferrograd-nn/tests/models.rs's
`a_small_transformer_trained_with_adamw_tracks_pytorch`: a two-layer pre-norm decoder
(token and position embeddings, causal multi-head attention, a GELU MLP, a tied-free head)
on fixed tokens, eight AdamW steps in f64, with the same deterministic initial parameters.
Prints each step's loss and the sum of |gradient| over every parameter, as a Rust literal.
With --time: PyTorch eager's SGD step on the size of `cargo bench -p ferrograd-nn --bench
transformer` (width 128, 4 heads, 64 tokens x 16 sequences, 65 symbols), f32, quietest of 5
passes (benches/compare-transformer.sh alternates the two); --flush-denormals turns on
torch.set_flush_denormal.

    python benches/pytorch_transformer.py [--time]   # needs torch (a virtualenv outside
                                                     # the repository)
"""
import math
import sys

import torch
import torch.nn.functional as F

TIME = "--time" in sys.argv
if TIME:
    V, E, T, N, H, L = 65, 128, 64, 16, 4, 2
else:
    torch.set_default_dtype(torch.float64)
    V, E, T, N, H, L = 11, 16, 8, 4, 2, 2


def init(shape, k, scale):
    n = math.prod(shape)
    return torch.tensor([scale * math.sin(0.37 * i + k) for i in range(n)]).reshape(shape)


def parameters():
    s = 1 / math.sqrt(E)
    p = [init([V, E], 1.0, 0.5), init([T, E], 2.0, 0.1)]
    k = 3.0
    layer = [([E], 0.1), ([E], 0.1), ([E, E], s), ([E, E], s), ([E, E], s), ([E], 0.02),
             ([E], 0.02), ([E], 0.02), ([E, E], s), ([E], 0.02), ([E], 0.1), ([E], 0.1),
             ([4 * E, E], s), ([4 * E], 0.02), ([E, 4 * E], 0.5 * s), ([E], 0.02)]
    for _ in range(L):
        for shape, scale in layer:
            p.append(init(shape, k, scale))
            k += 1
    p += [init([E], k, 0.1), init([E], k + 1, 0.1), init([V, E], k + 2, s)]
    return [t.requires_grad_() for t in p]


idx = torch.tensor([[(3 * n + 5 * t + t * t) % V for t in range(T)] for n in range(N)])
tgt = (idx * 2 + 1) % V
causal = torch.ones(T, T, dtype=torch.bool).triu(1)


def model(p):
    x = F.embedding(idx, p[0]) + p[1]
    for l in range(L):
        q = p[2 + 16 * l: 2 + 16 * (l + 1)]
        h = F.layer_norm(x, [E], q[0] + 1, q[1], 1e-5).transpose(0, 1)
        a, _ = F.multi_head_attention_forward(
            h, h, h, E, H, torch.cat(q[2:5]), torch.cat(q[5:8]), None, None, False, 0.0,
            q[8], q[9], training=False, need_weights=False, attn_mask=causal)
        x = x + a.transpose(0, 1)
        h = F.gelu(F.linear(F.layer_norm(x, [E], q[10] + 1, q[11], 1e-5), q[12], q[13]))
        x = x + F.linear(h, q[14], q[15])
    k = 2 + 16 * L
    logits = F.linear(F.layer_norm(x, [E], p[k] + 1, p[k + 1], 1e-5), p[k + 2])
    return F.cross_entropy(logits.reshape(N * T, V), tgt.reshape(N * T))


p = parameters()
if TIME:
    from timing import best

    def sgd_step(_):
        for t in p:
            t.grad = None
        model(p).backward()
        with torch.no_grad():
            for t in p:
                t -= 0.01 * t.grad

    flush = "--flush-denormals" in sys.argv
    torch.set_flush_denormal(flush)
    isa = torch.backends.cpu.get_cpu_capability() + (", flush" if flush else "")
    print(f"{'pytorch ' + torch.__version__ + ' eager (f32, ' + isa + ')':<34} {'step':>12}")
    print(f"{'transformer batched (SGD step)':<34} {best(5, 10, sgd_step) * 1e3:>9.2f} ms")
    sys.exit()
opt = torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)
rows = []
for step in range(8):
    opt.zero_grad()
    loss = model(p)
    loss.backward()
    rows.append((loss.item(), sum(t.grad.abs().sum().item() for t in p)))
    opt.step()
print("    // (loss, Σ|gradient|) at each step, from benches/pytorch_transformer.py")
print("    let torch = [")
for loss, g in rows:
    print(f"        ({loss!r}, {g!r}),")
print("    ];")
