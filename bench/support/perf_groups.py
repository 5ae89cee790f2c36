#!/usr/bin/env python3
"""Shares of a `perf record -e cpu-clock` profile of a bench_workload binary, grouped by engine part.

    perf_groups.py PERF.data

Samples of LibTorch's loading (ld.so, libtorch, c10) are left out, so the shares are of the timed steps.
"""
import collections
import re
import subprocess
import sys

data = sys.argv[1]
out = subprocess.run(["perf","report","-i",data,"--no-children","--sort","dso,symbol","--stdio","-g","none","--percent-limit","0"],capture_output=True,text=True).stdout
rows=[]
for line in out.splitlines():
    m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if m: rows.append((float(m.group(1)), m.group(2), m.group(4).strip()))
skip = lambda dso, sym: dso.startswith("ld-linux") or dso.startswith("libtorch") or dso.startswith("libc10") or dso.startswith("libgdcm") or "c10::" in sym
kept = [(p,d,s) for p,d,s in rows if not skip(d,s)]
tot = sum(p for p,_,_ in kept)
def group(d,s):
    if d.startswith("libopenblas"):
        return "BLAS: sgemm kernel" if "sgemm_kernel" in s else "BLAS: packing, small kernels, gemv/ger"
    if d.startswith("[kernel"): return "kernel (page faults of fresh memory, scheduling)"
    if "lstm_" in s: return "fused LSTM kernels (fwd + bwd)"
    if re.search(r"tapegrad::(add|tanh|where|mul|sub)\b|sum_to_accumulate|BackwardCtx::accumulate|tapegrad::sigmoid", s): return "elementwise ops + gradient accumulation (add, tanh, where, sum-to)"
    if "memmove" in s or "memset" in s or "permute" in s or "concat" in s or "stack" in s: return "copies and zero fills (memmove, memset, permute)"
    if "Adam" in s or "gather" in s or "clip" in s or "SquaredNorm" in s: return "Adam + clip_grad_norm"
    return "other"
g = collections.Counter()
for p,d,s in kept: g[group(d,s)] += p
print(f"(samples from LibTorch's loading excluded: {100-tot:.1f}% of all)")
for k,v in g.most_common(): print(f"{100*v/tot:5.1f}%  {k}")
