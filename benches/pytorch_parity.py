"""Checks the cases printed by the pytorch-parity bench (JSON lines: name, inputs, output,
gradients of sum(w * out) with w = 1 + i/4) against PyTorch. Prints each difference;
exits 1 if any is not in KNOWN (case name -> why ferrograd differs there)."""
import json
import math
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
T = torch.tensor
L = torch.linalg
inf = math.inf

KNOWN = {
    "sign": "sign(NaN) is NaN (IEEE propagation); PyTorch gives 0",
    "abs": "abs's gradient at NaN is NaN; PyTorch gives 0",
    "relu": "relu's gradient at NaN is 0; PyTorch passes it",
    "elu": "gradient at NaN is NaN (PyTorch passes it); at -40 ferrograd's 0 is PyTorch's 3e-17",
    "selu": "as elu",
    "digamma": "digamma's gradient at its poles is inf (PyTorch: a finite roundoff value), NaN at +inf",
    "polygamma1": "polygamma at its poles is inf (PyTorch: a finite roundoff value)",
    "clamp": "the gradient passes at the bounds (PyTorch 1.x-2.x's rule); PyTorch 2.15 stops it there",
    "clamp_lo": "as clamp",
    "pow_scalar_0.5": "C's pow(-inf, 0.5) = inf and pow(-0, 0.5) = 0 (PyTorch: sqrt's NaN and -0)",
    "pow_scalar_-0.5": "C's pow at -inf and -0 (PyTorch: 1/sqrt)",
    "maximum": "with a NaN operand the gradient is 0 to both; PyTorch passes it to both",
    "minimum": "as maximum",
    "remainder": "the divisor's gradient where an operand is infinite (PyTorch: floor of NaN/inf quotients)",
    "prod_dim": "the gradient of a product holding an infinity (PyTorch divides, ferrograd multiplies the others)",
    "max_all": "max() is amax(): a NaN maximum gives NaN everywhere, as PyTorch's amax; PyTorch's max() gives 1 at the NaN",
    "var_dim": "the gradient of a variance holding infinities",
    "norm_dim_1": "the gradient with a NaN in the row",
    "norm_dim_inf": "the gradient with a NaN in the row (PyTorch: 0 to the other entries)",
    "cumprod": "the gradient of a running product holding an infinity or overflowing",
    "topk": "which of tied values is taken (unspecified in PyTorch)",
    "topk_idx": "as topk",
    "kthvalue": "as topk",
    "kthvalue_idx": "as topk",
    "to_i64": "inf and NaN convert by Rust's saturating rule; PyTorch's result is undefined (i64::MIN)",
    "bce": "the gradient within 1e-12 of probability 0 or 1 (documented on binary_cross_entropy)",
    "soft_margin": "ferrograd is exact at |x| = 1000; PyTorch overflows to inf and NaN",
    "cosine_sim": "the gradient where a norm is clamped at eps",
    "cos_emb": "as cosine_sim, and rounding at 1e-9 relative",
    "scatter_rep": "repeated positions: only the element written last gets a gradient; PyTorch gives every one",
    "cdist_inf": "ties in the largest coordinate share the gradient; PyTorch gives each tie all of it",
    "ctc_mean": "an impossible alignment without zero_infinity: gradient 0 (PyTorch NaN); the loss is inf in both",
    "ctc_sum": "as ctc_mean",
    "ctc_none": "as ctc_mean",
    "gelu": "at ±inf the limits (-0; gradients 1 at +inf, 0 at -inf) where PyTorch's x (1 + erf(x/√2))/2 gives NaN",
}
# second order only (the Hessian along v): where PyTorch's is NaN and ferrograd's finite
# (0 at the kinks its first order already took as PyTorch does), or ferrograd's gap
KNOWN_SECOND = {
    name: "PyTorch's second derivative is NaN there (0 · ∞ at a zero norm, the origin, 0^x); ferrograd's is finite"
    for name in ["rpow_scalar_0", "pow", "atan2", "norm_dim_2", "norm_dim_0.5", "normalize",
                 "mnorm_nuc_eye", "mnorm_two_eye", "mnorm_negtwo_eye", "svdvals_zero",
                 "mnorm_fro_zero", "mnorm_nuc_zero", "mnorm_two_zero", "mnorm_negtwo_zero"]
}
KNOWN_SECOND["lgamma"] = "at its poles: inf (PyTorch: a finite roundoff value)"
KNOWN_SECOND["pow_scalar_2.5"] = "at -inf: C's pow (PyTorch: NaN)"
for tag in ["sing", "rank1"]:
    KNOWN_SECOND[f"det_{tag}"] = "det's Hessian at a singular matrix is NaN/inf (the cofactor's gradient divides by det); PyTorch's goes through the SVD: left open"
KNOWN["det_sing"] = ("rank n-1: the gradient is the cofactor matrix, not 0; PyTorch's is 0 where its LU "
                     "finds det exactly 0 (seen on a Zen 4 with PyTorch 2.15; the Xeons' det was tiny, not 0, "
                     "and their gradients agreed)")
for tag in ["sing", "rank1", "zero"]:
    KNOWN[f"slogdet_{tag}"] = "singular: inf/NaN gradient; PyTorch's LU sees a tiny pivot, not zero"
for tag in ["sing", "rank1", "rep"]:
    for op in ["svdvals", "mnorm_nuc", "mnorm_negtwo", "mnorm_two", "eigvalsh", "pinv"]:
        KNOWN[f"{op}_{tag}"] = "repeated or zero singular/eigen values: the gradient is not unique"
for tag in ["sing", "rank1", "zero"]:
    KNOWN[f"inverse_{tag}"] = "both refuse a singular matrix"


def un(f):
    return lambda p: f(p[0])


def seq(n, k):
    return T([math.sin(i * 0.7 + k) * 1.3 + 0.1 * (i % 3) for i in range(n)])


def reference(name):
    """PyTorch's computation of case `name` from its inputs `p`."""
    simple = "neg abs exp log log1p expm1 sqrt rsqrt sin cos tan sinh cosh asin acos atan erf erfinv lgamma digamma tanh sigmoid relu reciprocal square sign floor ceil round trunc"
    if name in simple.split():
        return un(getattr(torch, name))
    binary = "add sub mul div maximum minimum pow atan2 fmod remainder"
    if name in binary.split():
        return lambda p: getattr(torch, name)(p[0], p[1])
    for prefix, f in [
        ("pow_scalar_", lambda e: un(lambda x: torch.pow(x, e))),
        ("rpow_scalar_", lambda e: un(lambda x: torch.pow(e, x))),
        ("norm_dim_", lambda e: un(lambda x: L.vector_norm(x, e, dim=1))),
        ("cdist_", lambda e: lambda p: torch.cdist(p[0], p[0], p=e)),
    ]:
        if name.startswith(prefix):
            return f(float(name[len(prefix):]))
    op, _, tag = name.rpartition("_")
    matrix = {
        "det": L.det, "svdvals": L.svdvals, "pinv": L.pinv, "inverse": L.inv, "trace": torch.trace,
        "slogdet": lambda a: L.slogdet(a)[1], "eigvalsh": lambda a: L.eigvalsh((a + a.T) * 0.5),
    }
    if op in matrix:
        return un(matrix[op])
    if name.startswith("mnorm_"):
        ordm = {"fro": "fro", "nuc": "nuc", "one": 1, "two": 2, "inf": inf, "negtwo": -2}[name.split("_")[1]]
        return un(lambda a: L.matrix_norm(a, ord=ordm))
    sizes = {"up": (7, 9), "down": (3, 2), "same": (5, 4), "one": (1, 1)}
    if tag in sizes and op in ("nearest", "linear", "linear_ac"):
        mode = "nearest" if op == "nearest" else "bilinear"
        kw = {} if op == "nearest" else {"align_corners": op == "linear_ac"}
        return un(lambda x: F.interpolate(x, size=sizes[tag], mode=mode, **kw))
    if name.startswith("pad_"):
        mode = {"const": "constant", "reflect": "reflect", "replicate": "replicate"}[name[4:]]
        kw = {"value": -1.5} if mode == "constant" else {}
        return un(lambda x: F.pad(x, (0, 3, 2, 1), mode=mode, **kw))
    if name.startswith("ctc_"):
        red = name[4:].removesuffix("_zi")
        targets, lengths = T([[1, 2, 3], [3, 3, 0], [1, 1, 2]]), (T([6, 5, 3]), T([3, 2, 3]))
        return un(lambda x: F.ctc_loss(x.log_softmax(2), targets, *lengths, blank=0, reduction=red, zero_infinity=name.endswith("_zi")))
    for tag, size in [("up", 13), ("down", 4)]:
        if name == f"linear1d_{tag}":
            return un(lambda x: F.interpolate(x, size=size, mode="linear", align_corners=False))
        if name == f"nearest1d_{tag}":
            return un(lambda x: F.interpolate(x, size=size, mode="nearest"))
        if name == f"adaptive_avg1d_{tag}":
            return un(lambda x: F.adaptive_avg_pool1d(x, min(size, 9)))
        if name == f"adaptive_max1d_{tag}":
            return un(lambda x: F.adaptive_max_pool1d(x, min(size, 9)))
    if name == "mha":
        def mha(q):
            w = [seq(16, 0.3 * i + 0.05).reshape(4, 4) * 0.5 for i in range(4)]
            b = [seq(4, 2.0 + i) * 0.1 for i in range(4)]
            kv = seq(40, 1.2).reshape(2, 5, 4)
            out, _ = F.multi_head_attention_forward(
                q.transpose(0, 1), kv.transpose(0, 1), (kv * 0.7).transpose(0, 1), 4, 2,
                torch.cat(w[:3]), torch.cat(b[:3]), None, None, False, 0.0, w[3], b[3],
                training=False, need_weights=False)
            return out.transpose(0, 1)
        return un(mha)
    spatial_targets = T([[0, 2, 1, 1], [2, 0, 0, 1]])
    targ = T([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    tgt = T([2, 1, 0, -100])
    w = T([1.0, 2.0, 0.5])
    other = T([1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 3.0, 0.0, 4.0]).reshape(4, 3)
    kv = seq(40, 1.1).reshape(2, 5, 4)
    g = T([[0, 0, 2], [1, 1, 1]])
    zeros = torch.zeros_like
    cases = {
        "gelu": un(F.gelu), "gelu_tanh": un(lambda x: F.gelu(x, approximate="tanh")),
        "silu": un(F.silu), "selu": un(F.selu), "logsigmoid": un(F.logsigmoid),
        "polygamma1": un(lambda x: torch.polygamma(1, x)), "elu": un(lambda x: F.elu(x, 1.5)),
        "leaky_relu": un(lambda x: F.leaky_relu(x, 0.1)), "softplus": un(lambda x: F.softplus(x, 2.0, 20.0)),
        "clamp": un(lambda x: x.clamp(-1.0, 0.5)), "clamp_lo": un(lambda x: x.clamp(min=0.0)),
        "sum_dim": un(lambda x: x.sum(1)), "mean_dim": un(lambda x: x.mean(1)), "prod_dim": un(lambda x: x.prod(1)),
        "amax_dim": un(lambda x: x.amax(1)), "amin_dim": un(lambda x: x.amin(1)),
        "logsumexp_dim": un(lambda x: x.logsumexp(1)), "max_dim": un(lambda x: x.max(1)[0]),
        "min_dim": un(lambda x: x.min(1)[0]), "max_dim_idx": un(lambda x: x.max(1)[1].double()),
        "argmin": un(lambda x: x.argmin(1).double()), "argmax": un(lambda x: x.argmax(1).double()),
        "max_all": un(lambda x: x.max()), "amax_all": un(lambda x: x.amax()),
        "var_dim": un(lambda x: x.var(1)), "std_dim": un(lambda x: x.std(1)),
        "std_dim0": un(lambda x: x.std(1, correction=0)),
        "softmax": un(lambda x: x.softmax(1)), "log_softmax": un(lambda x: x.log_softmax(1)),
        "cumsum": un(lambda x: x.cumsum(1)), "cumprod": un(lambda x: x.cumprod(1)),
        "median_dim": un(lambda x: x.median(1)[0]), "median_dim_idx": un(lambda x: x.median(1)[1].double()),
        "sort": un(lambda x: torch.sort(x, dim=1, stable=True)[0]),
        "sort_idx": un(lambda x: torch.sort(x, dim=1, stable=True)[1].double()),
        "sort_desc_idx": un(lambda x: torch.sort(x, dim=1, descending=True, stable=True)[1].double()),
        "topk": un(lambda x: x.topk(2, 1)[0]), "topk_idx": un(lambda x: x.topk(2, 1)[1].double()),
        "kthvalue": un(lambda x: x.kthvalue(2, 1)[0]), "kthvalue_idx": un(lambda x: x.kthvalue(2, 1)[1].double()),
        "nansum_dim": un(lambda x: x.nansum(1)), "nanmean_dim": un(lambda x: x.nanmean(1)),
        "to_i64": un(lambda x: x.to(torch.int64).double()), "to_f32": un(lambda x: x.float().double()),
        "smooth_l1": un(lambda x: F.smooth_l1_loss(x, zeros(x), beta=1.0, reduction="none")),
        "smooth_l1_b0": un(lambda x: F.smooth_l1_loss(x, zeros(x), beta=0.0, reduction="none")),
        "huber": un(lambda x: F.huber_loss(x, zeros(x), delta=1.0, reduction="none")),
        "l1": un(lambda x: F.l1_loss(x, zeros(x), reduction="none")),
        "mse": un(lambda x: F.mse_loss(x, zeros(x))),
        "bce": un(lambda x: F.binary_cross_entropy(x, targ, reduction="none")),
        "bce_logits": un(lambda x: F.binary_cross_entropy_with_logits(x, targ, reduction="none")),
        "kl_div": un(lambda x: F.kl_div(x, T([0.0, 0.5, 0.25, 0.25, 0.0, 1.0, 0.0, 0.0]), reduction="none")),
        "ce_ignore": un(lambda x: F.cross_entropy(x, tgt, ignore_index=-100)),
        "ce_smooth": un(lambda x: F.cross_entropy(x, tgt, ignore_index=-100, label_smoothing=0.2)),
        "ce_none": un(lambda x: F.cross_entropy(x, tgt, ignore_index=-100, reduction="none")),
        "ce_weight": un(lambda x: F.cross_entropy(x, tgt, ignore_index=-100, weight=w)),
        "ce_weight_smooth": un(lambda x: F.cross_entropy(x, tgt, ignore_index=-100, weight=w, label_smoothing=0.3)),
        "hinge_emb": un(lambda x: F.hinge_embedding_loss(x, T([1.0, -1.0, -1.0, -1.0, 1.0, -1.0]), margin=1.0, reduction="none")),
        "soft_margin": un(lambda x: F.soft_margin_loss(x, T([1.0, -1.0, 1.0, 1.0]), reduction="none")),
        "cosine_sim": un(lambda x: F.cosine_similarity(x, other, dim=1, eps=1e-8)),
        "normalize": un(lambda x: F.normalize(x, 2.0, 1, 1e-12)),
        "layer_norm": un(lambda x: F.layer_norm(x, [3], eps=1e-5)),
        "rms_norm": un(lambda x: F.rms_norm(x, [3], eps=1e-6)),
        "max_pool_ties": un(lambda x: F.max_pool2d(x, 2, 2, 0)),
        "max_pool_overlap": un(lambda x: F.max_pool2d(x, 3, 1, 1)),
        "max_pool_nan": un(lambda x: F.max_pool2d(x, 2, 2, 0)),
        "avg_pool_pad": un(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)),
        "avg_pool_nopad": un(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
        "adaptive_max": un(lambda x: F.adaptive_max_pool2d(x, (3, 3))),
        "adaptive_avg": un(lambda x: F.adaptive_avg_pool2d(x, (3, 3))),
        "prelu": un(lambda x: F.prelu(x, T([0.25]))),
        "threshold": un(lambda x: F.threshold(x, 0.5, -7.0)),
        "margin_rank": un(lambda x: F.margin_ranking_loss(x, T([0.0, 0.0, 1.0, 0.0]), T([1.0, 1.0, 1.0, -1.0]), margin=1.0, reduction="none")),
        "multi_margin": un(lambda x: F.multi_margin_loss(x, T([1, 1]), p=1, margin=1.0, reduction="none")),
        "cos_emb": un(lambda x: F.cosine_embedding_loss(x, other, T([1.0, -1.0, 1.0, -1.0]), margin=0.0, reduction="none")),
        "cholesky_spd": un(lambda a: L.cholesky((a + a.T) * 0.5)),
        "gather_rep": un(lambda x: x.gather(1, g)),
        "index_select_rep": un(lambda x: x.index_select(1, T([2, 2, 0]))),
        "scatter_rep": un(lambda x: torch.zeros(2, 3).scatter(1, g, x)),
        "scatter_add_rep": un(lambda x: torch.zeros(2, 3).scatter_add(1, g, x)),
        "scatter_self_rep": un(lambda x: x.scatter(1, T([[0], [0]]), T([[9.0], [8.0]]))),
        "index_add_rep": un(lambda x: x.index_add(1, T([1, 1, 0]), x * 2.0)),
        "roll": un(lambda x: x.roll(-4, 1)),
        "repeat_interleave": un(lambda x: x.repeat_interleave(2, 0)),
        "lerp": un(lambda x: torch.lerp(x, x * x, T([[0.0, 0.5, 1.0], [1.5, -0.5, 0.25]]))),
        "masked_fill": un(lambda x: x.masked_fill(x > 2.5, math.nan)),
        "group_norm": un(lambda x: F.group_norm(x, 2, T([1.5, -0.5]), T([0.1, 0.2]), 1e-5)),
        "instance_norm": un(lambda x: F.instance_norm(x, eps=1e-5)),
        "batch_norm_train": un(lambda x: F.batch_norm(x, None, None, T([1.5, -0.5]), T([0.0, 0.0]), training=True, eps=1e-5)),
        "layer_norm_affine": un(lambda x: F.layer_norm(x, [5, 4], seq(20, 1.0).reshape(5, 4), seq(20, 2.0).reshape(5, 4), 1e-5)),
        "conv_dil": un(lambda x: F.conv2d(x, seq(36, 0.9).reshape(3, 2, 3, 2), T([0.1, -0.2, 0.3]), stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
        "conv_groups": un(lambda x: F.conv2d(x, seq(16, 1.9).reshape(4, 1, 2, 2), None, stride=(1, 2), padding=(0, 1), groups=2)),
        "conv_t": un(lambda x: F.conv_transpose2d(x, seq(54, 0.4).reshape(2, 3, 3, 3), None, stride=(2, 2), padding=(1, 0), output_padding=(1, 0))),
        "sdpa": un(lambda q: F.scaled_dot_product_attention(q, kv, kv * 0.5)),
        "sdpa_causal": un(lambda q: F.scaled_dot_product_attention(q, kv, kv, is_causal=True, scale=0.7)),
        "embedding_pad": un(lambda t: F.embedding(T([[0, 2, 2], [4, 1, 2]]), t, padding_idx=2)),
        "max_pool_with": un(lambda x: F.max_pool2d(x, (3, 2), (2, 2), (1, 1), (2, 1), ceil_mode=True)),
        "unfold": un(lambda x: F.unfold(x, (3, 2), (2, 1), (1, 1), (2, 2))),
        "fold": un(lambda c: F.fold(c, (4, 5), (2, 3), 1, (0, 1), (1, 2))),
        "conv1d": un(lambda x: F.conv1d(x, seq(36, 0.45).reshape(6, 2, 3), None, stride=2, padding=1, dilation=2, groups=2)),
        "conv_t1d": un(lambda x: F.conv_transpose1d(x, seq(36, 0.55).reshape(4, 3, 3), T([0.1, 0.2, 0.3]), stride=2, padding=1, output_padding=1)),
        "ce_spatial": un(lambda x: F.cross_entropy(x, spatial_targets, label_smoothing=0.1)),
        "nll_spatial": un(lambda x: F.nll_loss(x.log_softmax(1), spatial_targets, reduction="sum")),
        "kl_div_log_target": un(lambda x: F.kl_div(x.log_softmax(1), seq(24, 3.0).reshape(2, 3, 4).log_softmax(1), reduction="batchmean", log_target=True)),
        "einsum": un(lambda x: torch.einsum("bij,bkj->bik", x, x * x)),
        "tril": un(lambda x: x.tril(-1)), "triu": un(lambda x: x.triu(1)),
        "flip": un(lambda x: x.flip([0, 1])), "diagonal": un(lambda x: x.diagonal(1)),
        "diag_embed": un(lambda x: torch.diag_embed(x[0:1].reshape(4), offset=-1)),
        "repeat": un(lambda x: x.repeat(2, 1, 3)), "expand": un(lambda x: x[1:2].expand(2, 3, 4)),
        "where": un(lambda x: torch.where(x > 0, x * x, x[0:1])),
        "index_fill": un(lambda x: x.index_fill(0, T([2, 0]), -1.5)),
        "slice_scatter": un(lambda x: torch.slice_scatter(x, x[:, 0:2] ** 2, dim=1, start=1, step=2)),
        "diagonal_scatter": un(lambda x: torch.diagonal_scatter(x, x[:, :3].diagonal(0).exp(), offset=1, dim1=0, dim2=1)),
        "lerp_scalar": un(lambda x: torch.lerp(x, x.exp(), 0.3)),
        "addmm": un(lambda x: torch.addmm(x[:, :3], x, x.T, beta=0.5, alpha=2.0)),
        "addmv": un(lambda x: torch.addmv(x[:, 0], x, x[0], beta=1.5, alpha=-0.5)),
        "addr": un(lambda x: torch.addr(x, x[:, 0], x[1], beta=1.0, alpha=0.25)),
        "bmm": un(lambda x: torch.bmm(x.reshape(2, 2, 3), x.reshape(2, 3, 2))),
        "baddbmm": un(lambda x: torch.baddbmm(x.reshape(2, 3, 2)[:, :2], x.reshape(2, 2, 3), x.reshape(2, 3, 2), beta=0.5, alpha=1.5)),
        "addbmm": un(lambda x: torch.addbmm(x.reshape(2, 2, 3)[0][:, :2], x.reshape(2, 2, 3), x.reshape(2, 3, 2), beta=2.0, alpha=1.0)),
        "solve_lower": un(lambda x: L.solve_triangular(x[:, :3].tril() + 3 * torch.eye(3), x, upper=False)),
        "solve_unit_upper": un(lambda x: L.solve_triangular(x[:, :3], x, upper=True, unitriangular=True)),
        "solve": un(lambda x: L.solve(x[:, :3] + 3 * torch.eye(3), x)),
        "logdet_negative": un(lambda x: torch.logdet(x[:, :3] - 3 * torch.eye(3))),
        "cat_stack": un(lambda x: torch.stack([torch.cat([x, x * x], 1), torch.cat([x.exp(), x], 1)], 0)),
    }
    return cases[name]


def same(a, b, rel=1e-9):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    # (an absolute 1e-12 for roundoff around zero: the cases' values are of order 1)
    return abs(a - b) <= rel * max(abs(a), abs(b)) or abs(a - b) < 1e-12


def second_order(name, c, inputs):
    """The Hessian of sum(w * out) along v = 0.5 + (i mod 5) / 10, against ferrograd's."""
    ps = [p.detach().clone().requires_grad_(True) for p in inputs]
    out = reference(name)(ps)
    wt = T([1.0 + 0.25 * i for i in range(out.numel())]).reshape(out.shape)
    vs = [T([0.5 + (i % 5) * 0.1 for i in range(p.numel())]).reshape(p.shape) for p in ps]
    try:
        gs = torch.autograd.grad((out * wt).sum(), ps, create_graph=True, allow_unused=True)
        dot = sum((g * v).sum() for g, v in zip(gs, vs) if g is not None and g.requires_grad)
        if isinstance(dot, torch.Tensor) and dot.requires_grad:
            hv = torch.autograd.grad(dot, ps, allow_unused=True)
        else:
            hv = [None] * len(ps)
    except Exception as e:  # PyTorch has no second derivative here
        return [] if c.get("hvp") is None else []
    if c.get("hvp") is None:
        return ["ferrograd's second derivative panics where PyTorch's is computed"]
    problems = []
    for j, (h, p) in enumerate(zip(hv, ps)):
        try:
            h = h.flatten().tolist() if h is not None else [0.0] * p.numel()
        except RuntimeError:  # a gradient PyTorch never materialized (a zero)
            h = [0.0] * p.numel()
        bad = [k for k, (a, b) in enumerate(zip(c["hvp"][j], h)) if not same(a, b, 1e-7)]
        if bad:
            k = bad[0]
            problems.append(f"{len(bad)} second-order entries of input {j} differ, e.g. [{k}]: {c['hvp'][j][k]} against {h[k]}")
    return problems


def main(path):
    known, unknown, cases = 0, 0, 0
    for line in open(path):
        c = json.loads(line)
        name = c["name"]
        cases += 1
        ps = [T(i["v"]).reshape(i["s"]).requires_grad_(True) for i in c["inputs"]]
        problems = []
        try:
            out = reference(name)(ps)
        except Exception as e:  # PyTorch refuses: so must ferrograd
            if "error" not in c:
                problems.append(f"PyTorch refuses ({str(e)[:80]}), ferrograd computes")
            out = None
        if out is not None:
            if "error" in c:
                problems.append(f"ferrograd refuses: {c['error'][:160]}")
            elif list(out.shape) != c["out_shape"]:
                problems.append(f"shape {c['out_shape']} against PyTorch's {list(out.shape)}")
            else:
                rel = 1e-6 if name == "to_f32" else 1e-9
                o = out.detach().flatten().tolist()
                bad = [k for k, (a, b) in enumerate(zip(c["out"], o)) if not same(a, b, rel)]
                if bad:
                    k = bad[0]
                    problems.append(f"{len(bad)} values differ, e.g. [{k}]: {c['out'][k]} against {o[k]}")
                if out.requires_grad:
                    second = second_order(name, c, ps)
                    if name in KNOWN_SECOND:
                        known += len(second)
                        for problem in second:
                            print(f"known    {name}: {problem} ({KNOWN_SECOND[name]})")
                    else:
                        problems += second
                    wt = T([1.0 + 0.25 * i for i in range(out.numel())]).reshape(out.shape)
                    grads = torch.autograd.grad((out * wt).sum(), ps, allow_unused=True)
                    for j, (g, p) in enumerate(zip(grads, ps)):
                        g = g.flatten().tolist() if g is not None else [0.0] * p.numel()
                        bad = [k for k, (a, b) in enumerate(zip(c["grads"][j], g)) if not same(a, b)]
                        if bad:
                            k = bad[0]
                            problems.append(f"{len(bad)} gradients of input {j} differ, e.g. [{k}]: {c['grads'][j][k]} against {g[k]}")
        for problem in problems:
            if name in KNOWN:
                known += 1
                print(f"known    {name}: {problem} ({KNOWN[name]})")
            else:
                unknown += 1
                print(f"DIFFERS  {name}: {problem}")
    print(f"{cases} cases against PyTorch {torch.__version__}: {unknown} unexplained differences, {known} known")
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
