"""CPU-side cost per call of the Triton ops against PyTorch's (BERT-base shapes, bf16): issue = the host's time to
issue a call, total = until the GPU is done."""
import time
import torch
from uer_ds import kernels
from uer_ds.kernels import reference

def per_call(fn, n=300):
    for _ in range(20): fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n): fn()
    issue = (time.perf_counter() - t) / n * 1e6
    torch.cuda.synchronize()
    total = (time.perf_counter() - t) / n * 1e6
    return issue, total

dev = "cuda"
x = torch.randn(64 * 128, 768, device=dev, dtype=torch.bfloat16, requires_grad=True)
w = torch.ones(768, device=dev, dtype=torch.bfloat16, requires_grad=True)
b = torch.zeros(768, device=dev, dtype=torch.bfloat16, requires_grad=True)
g = torch.randn_like(x)
for name, f in (("triton", kernels.layer_norm), ("torch", reference.layer_norm)):
    with torch.no_grad():
        print(f"layer_norm {name:6s} fwd no_grad   issue/total us per call: %.1f / %.1f" % per_call(lambda: f(x, w, b, 1e-12)))
    print(f"layer_norm {name:6s} fwd+bwd       issue/total us per call: %.1f / %.1f" % per_call(lambda: f(x, w, b, 1e-12).backward(g)))
q, k, v = (torch.randn(64, 12, 128, 64, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
lengths = torch.randint(64, 129, (64,)); lengths[0] = 128
kpm = (torch.arange(128)[None, :] >= lengths[:, None]).to(dev)
go = torch.randn_like(q)
for name, f in (("triton", kernels.attention), ("sdpa", reference.attention)):
    for pad in (None, kpm):
        tag = "padded" if pad is not None else "full"
        with torch.no_grad():
            print(f"attention {name:6s} {tag:6s} fwd no_grad  issue/total us: %.1f / %.1f" % per_call(lambda: f(q, k, v, key_padding_mask=pad)))
        print(f"attention {name:6s} {tag:6s} fwd+bwd      issue/total us: %.1f / %.1f" % per_call(lambda: f(q, k, v, key_padding_mask=pad).backward(go)))
# the unpadded path's ops (issue 16): varlen attention on BERT-base's heads with book_review-like lengths,
# and the fused post-LN sublayer close (bias + dropout 0.1 + residual + LayerNorm) on the packed tokens
import numpy as np
from uer_ds.kernels import lengths as length_tables
lens = length_tables.sample("book_review", 128, 64, np.random.default_rng(0))
cu = torch.tensor([0] + np.cumsum(lens).tolist(), dtype=torch.int32, device=dev)
n = int(sum(lens))
qp, kp, vp = (torch.randn(n, 12, 64, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
gp = torch.randn_like(qp)
for drop in (0.0, 0.1):
    with torch.no_grad():
        print(f"varlen_attention triton {n} tokens dropout {drop} fwd no_grad  issue/total us: %.1f / %.1f"
              % per_call(lambda: kernels.varlen_attention(qp, kp, vp, cu, max(lens), dropout_p=drop)))
    print(f"varlen_attention triton {n} tokens dropout {drop} fwd+bwd      issue/total us: %.1f / %.1f"
          % per_call(lambda: kernels.varlen_attention(qp, kp, vp, cu, max(lens), dropout_p=drop).backward(gp)))
xs, rs = (torch.randn(n, 768, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
bias = torch.zeros(768, device=dev, dtype=torch.bfloat16, requires_grad=True)
gs = torch.randn_like(xs)
for name, f in (("triton", kernels.bias_dropout_add_layer_norm), ("torch", reference.bias_dropout_add_layer_norm)):
    print(f"sublayer close {name:6s} {n} x 768 fwd+bwd  issue/total us: %.1f / %.1f"
          % per_call(lambda: f(xs, bias, rs, w, b, 1e-12, 0.1).backward(gs)))
