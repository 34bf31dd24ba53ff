"""Throughput timing shared by the benchmark scripts."""

import time
from collections.abc import Callable

import torch


def images_per_second(step: Callable[[torch.Tensor], object], batch: torch.Tensor, device: torch.device,
                      seconds: float) -> float:  # fmt: skip
    """Run ``step(batch)`` repeatedly for about ``seconds`` after a warm-up; images per second."""
    step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(batch)
        done += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - started)
