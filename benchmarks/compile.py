"""Does torch.compile pay off for the workflow's jobs? Eager against compiled, measured in one run.

    python benchmarks/compile.py                  # simple_cnn, CPU or CUDA, whichever torch picks
    python benchmarks/compile.py --arch resnet18

For the audit's forward pass (inference) and for a training step (forward, backward,
AdamW step), prints images/s eager and compiled (``models.compiled``, what
``train.compile`` and ``audit.compile`` use), the compile time a job pays on its first
run (an empty inductor cache), and the number of images one job must process before
compiling has paid for itself.

Like the workflow's jobs, every measurement is a fresh process, one step and one
mode each: once a process has compiled, its eager code runs slower (about 18% here
on a CPU), and a second compile in it would reuse the first one's set-up. Rounds
alternate eager and compiled processes; the best round is kept.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from timing import images_per_second  # noqa: E402

from saliency_audit.model.checkpoint import describe_device, select_device  # noqa: E402
from saliency_audit.model.factory import build_model, compiled  # noqa: E402

STEPS = {"audit forward": 256, "training step": 128}  # batch sizes: audit.batch_size's and train.batch_size's defaults


def first_call_seconds(step: Callable[[torch.Tensor], None], x: torch.Tensor, device: torch.device) -> float:
    """Wall time of the first call: for a compiled module, tracing and code generation."""
    started = time.perf_counter()
    step(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def inference_step(model: nn.Module) -> Callable[[torch.Tensor], None]:
    def step(x: torch.Tensor) -> None:
        with torch.inference_mode():
            model(x)

    return step


def training_step(model: nn.Module, y: torch.Tensor) -> Callable[[torch.Tensor], None]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(x: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def measure(arch: str, size: int, name: str, compile: bool, seconds: float) -> dict[str, float]:
    """In this process: first-call seconds and images/s of one step, eager or compiled."""
    device = select_device("auto")
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    batch_size = STEPS[name]
    torch.manual_seed(0)
    model = build_model(arch, 2).to(device).train(name == "training step")
    network = compiled(model) if compile else model  # as train.compile and audit.compile do
    x = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    y = torch.randint(0, 2, (batch_size,), generator=generator).to(device)
    step = inference_step(network) if name == "audit forward" else training_step(network, y)
    first = first_call_seconds(step, x, device)
    return {"first_call": first, "rate": images_per_second(step, x, device, seconds)}


def in_fresh_process(args: argparse.Namespace, name: str, compile: bool, cache: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--arch", args.arch, "--size", str(args.size), "--seconds",
               str(args.seconds), "--measure", name, "--mode", "compiled" if compile else "eager"]  # fmt: skip
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="simple_cnn", choices=["simple_cnn", "resnet18"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing window of each step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", choices=list(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["eager", "compiled"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.arch, args.size, args.measure, args.mode == "compiled", args.seconds)))
        return

    device = select_device("auto")
    print(f"{describe_device(device)}, torch {torch.__version__}, {args.arch}, {args.size} px\n")
    print(f"{'':<15} {'eager':>8} {'compiled':>9} {'ratio':>6} {'compile s':>10} {'break-even':>12}")
    for name in STEPS:
        with tempfile.TemporaryDirectory() as cache:  # empty: the first compiled process compiles from scratch
            rounds = [[in_fresh_process(args, name, compile, cache) for compile in (False, True)]
                      for _ in range(args.rounds)]  # fmt: skip
        eager_rate = max(r[0]["rate"] for r in rounds)
        compiled_rate = max(r[1]["rate"] for r in rounds)
        compile_seconds = rounds[0][1]["first_call"] - rounds[0][0]["first_call"]
        saved_per_image = 1 / eager_rate - 1 / compiled_rate
        break_even = f"{compile_seconds / saved_per_image:,.0f}" if saved_per_image > 0 else "never"
        rates = f"{eager_rate:>8.0f} {compiled_rate:>9.0f} {compiled_rate / eager_rate:>6.2f}"
        print(f"{name:<15} {rates} {compile_seconds:>10.1f} {break_even:>12}")
    print(
        "(images/s; compile s: the first run's, empty cache; break-even: images one job must process "
        "before compiling has paid for itself)"
    )


if __name__ == "__main__":
    main()
