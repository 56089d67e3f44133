"""GPU kernel time by category from a torch.profiler run (shared by the benchmarks' --profile options)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

_CATEGORIES = (("attention", ("flash", "fmha", "attention", "sdpa")),
               ("gemm", ("gemm", "sm90_xmma", "cutlass", "nvjet", "matmul", "splitk")),
               ("norm", ("layer_norm", "layernorm", "rms", "norm")),
               ("optimizer", ("adam",)),
               ("triton", ("triton",)),
               ("elementwise", ("elementwise", "vectorized", "unrolled", "copy", "cat", "fill")),
               ("reduce", ("reduce",)))


def kernel_category(name: str) -> str:
    lowered = name.lower()
    for category, needles in _CATEGORIES:
        if any(n in lowered for n in needles):
            return category
    return "other"


def device_kernels(prof) -> dict[str, list[float]]:
    """Kernel name -> milliseconds of each launch (user annotations such as `Optimizer.step#AdamW.step`,
    which the profiler also lists on the device, are left out: they span kernels)."""
    kernels: dict[str, list[float]] = defaultdict(list)
    for event in prof.events():
        if (event.device_type == torch.autograd.DeviceType.CUDA and event.device_time > 0
                and not event.is_user_annotation):
            kernels[event.name].append(event.device_time / 1e3)
    return kernels


def kernel_summary(prof, title: str, top: int = 40) -> str:
    """Kernel count and milliseconds per category, then the `top` kernels by total time."""
    kernels = device_kernels(prof)
    by_category: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for name, times in kernels.items():
        entry = by_category[kernel_category(name)]
        entry[0] += len(times)
        entry[1] += sum(times)
    lines = [f"{title}: {sum(len(t) for t in kernels.values())} kernels, "
             f"{sum(sum(t) for t in kernels.values()):.3f} ms of kernel time",
             "", f"{'category':<12} {'kernels':>8} {'ms':>8}"]
    ranked = sorted(by_category.items(), key=lambda item: -item[1][1])
    lines += [f"{c:<12} {n:>8} {ms:8.3f}" for c, (n, ms) in ranked]
    lines += ["", f"{'count':>6} {'ms':>8} {'mean us':>8}  kernel"]
    for name, times in sorted(kernels.items(), key=lambda x: -sum(x[1]))[:top]:
        lines.append(f"{len(times):6d} {sum(times):8.3f} {1e3 * np.mean(times):8.1f}  {name[:150]}")
    return "\n".join(lines) + "\n"


def profile_calls(run: Callable[[], object], calls: int, title: str,
                  summary_file: Path) -> tuple[float, float]:
    """Profile `calls` calls of `run` (host and, when present, CUDA activity); the kernel summary goes to
    `summary_file` (its head printed). -> (wall ms per call under the profiler, GPU kernel ms per call):
    their gap is time the GPU waited for the host."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(calls):
            run()
        sync()
    profiled_ms = 1000 * (time.perf_counter() - start) / calls
    summary = kernel_summary(prof, f"{title}, {calls} calls")
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(summary)
    print(summary[:1500], flush=True)
    kernel_ms = sum(sum(times) for times in device_kernels(prof).values()) / calls
    return profiled_ms, kernel_ms
